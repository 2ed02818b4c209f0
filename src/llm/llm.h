/*
 * The LLM client: an HTTP transport over libcurl's multi socket interface,
 * driven by the process's event loop (transport.c), with an API flavour on
 * top (flavour.h; OpenAI-compatible chat completions, openai.c). Only this
 * module includes curl.h.
 *
 * A request is a one-shot object: lh_llm_send starts it, its callback runs
 * exactly once (success, failure or cancellation), and the request is freed
 * by the client right after the callback returns.
 */
#ifndef LH_LLM_LLM_H
#define LH_LLM_LLM_H

#include <stddef.h>
#include <stdint.h>
#include "loop/loop.h"
#include "util/buf.h"
#include "util/err.h"

struct lh_llm;
struct lh_llm_req;

struct lh_llm_opts {
	long max_connections;        /* total connections (>= concurrency) */
	long connect_timeout_ms;     /* default 10000 */
	long request_timeout_ms;     /* whole request; default 600000 */
	long first_token_timeout_ms; /* streaming: until the first content chunk; default 60000 */
	size_t max_response_bytes;   /* default 16 MiB; more is a permanent "response_too_large" */
	const char *user_agent;      /* may be NULL */
};

enum lh_llm_outcome {
	LH_LLM_OK = 0,
	LH_LLM_TRANSIENT = 1,  /* retry may succeed */
	LH_LLM_PERMANENT = 2,  /* retrying the same request will not help */
	LH_LLM_CANCELLED = 3   /* lh_llm_cancel was called */
};

struct lh_llm_call {
	const char *url;        /* full URL, e.g. http://127.0.0.1:11434/v1/chat/completions */
	const char *api_key;    /* may be NULL: no Authorization header */
	const char *body;       /* request JSON, borrowed until the callback */
	size_t body_len;
	int stream;             /* 1: stream even if the body does not ask (the flavour reads the body: OpenAI's "stream": true) */
	long request_timeout_ms;     /* this request's whole-request timeout; 0 = the client's */
	long first_token_timeout_ms; /* this request's first-token timeout; 0 = the client's */
	long connect_timeout_ms;     /* this request's connect timeout; 0 = the client's */
};

struct lh_llm_result {
	enum lh_llm_outcome outcome;
	int status;                 /* HTTP status, 0 if none was received */
	const char *error_code;     /* short code: "timeout", "connect_error", "first_token_timeout",
				     * "invalid_json", "truncated", "http_429", "insufficient_quota",
				     * "context_length_exceeded", "invalid_api_key", "model_not_found", ... ;
				     * NULL on success */
	const char *error_message;  /* human-readable, NULL on success */
	int os_errno;               /* transport failures: the system's errno (ECONNREFUSED...), 0 when unknown */
	double retry_after;         /* seconds from Retry-After (seconds or HTTP-date), -1 if absent */
	const char *request_id;     /* x-request-id header, or NULL */
	/* The response body: for non-streaming requests the raw body; for
	 * streaming ones a chat.completion object assembled from the chunks.
	 * On HTTP errors, the error body. Borrowed: valid during the callback. */
	const char *body;
	size_t body_len;
	int64_t prompt_tokens, completion_tokens; /* from "usage", -1 if absent */
	double started_at, first_byte_at, ended_at; /* wall seconds; first_byte_at 0 if none */
	/* x-ratelimit-* headers, -1 when absent */
	double ratelimit_remaining_requests, ratelimit_remaining_tokens;
	double ratelimit_reset_requests, ratelimit_reset_tokens; /* seconds */
};

typedef void (*lh_llm_cb)(struct lh_llm_req *req, const struct lh_llm_result *res, void *arg);

struct lh_llm *lh_llm_new(struct lh_loop *loop, const struct lh_llm_opts *o, struct lh_err *e);
/* Cancels every request in flight (their callbacks run with CANCELLED), then frees. */
void lh_llm_free(struct lh_llm *c);

/* Starts a request; cb runs once, later, on the loop's thread (never from
 * inside lh_llm_send). Returns the request (borrowed; valid until its
 * callback returns) or NULL with e set. */
struct lh_llm_req *lh_llm_send(struct lh_llm *c, const struct lh_llm_call *call, lh_llm_cb cb, void *arg,
			       struct lh_err *e);
/* Aborts a request in flight; its callback runs with LH_LLM_CANCELLED
 * before this returns. */
void lh_llm_cancel(struct lh_llm_req *req);
/* Requests in flight. */
size_t lh_llm_in_flight(const struct lh_llm *c);

/* ---- pure helpers, unit-tested on their own ---- */

/* Classifies an HTTP answer or a transport failure. curl_code is a CURLcode
 * (0 = the transfer completed). body may be NULL. Sets *code to a static
 * short code (see error_code above). */
enum lh_llm_outcome lh_llm_classify(int status, int curl_code, const char *body, size_t body_len,
				    const char **code);

/* Parses a Retry-After value: delay-seconds or an HTTP-date. now is wall
 * seconds. Returns 0 and *secs (>= 0), or -1 when the value is not valid. */
int lh_retry_after_parse(const char *value, double now, double *secs);

/* Resolves a batch line's url against base: base "http://h:p/v1" with
 * "/v1/chat/completions" gives "http://h:p/v1/chat/completions" (the
 * duplicated "/v1" is folded, as OpenAI's clients do); base "http://h:p"
 * gives "http://h:p/v1/chat/completions". Writes into out. */
int lh_llm_resolve_url(const char *base, const char *path, struct lh_buf *out) LH_WUR;


/* Parses an x-ratelimit-reset-* duration: "1s", "6m0s", "20ms",
 * "1h2m3.5s", or plain seconds ("0.5"). n is the length of s (no NUL
 * needed). Returns 0 and *secs, or -1 when the value is not valid. */
int lh_llm_parse_duration(const char *s, size_t n, double *secs);

/* The full verdict on an answer, from one parse of the body: what
 * lh_llm_classify returns, plus a message for people and the token usage
 * of a successful answer. The client uses it; lh_llm_classify wraps it. */
struct lh_llm_verdict {
	enum lh_llm_outcome outcome;
	const char *code;          /* static; NULL when OK */
	char message[512];         /* "" when OK; the server's words when it gave any */
	int64_t prompt_tokens, completion_tokens; /* -1 when absent */
};

void lh_llm_judge(int status, int curl_code, const char *body, size_t body_len,
		  struct lh_llm_verdict *v);

struct lh_libver;
/* Fills v with libcurl's version: the headers' and the library's (util/libver.h). */
void lh_llm_lib_version(struct lh_libver *v);

#endif
