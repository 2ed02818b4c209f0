/*
 * cli layer: a small blocking HTTP client for the commands that talk to the
 * daemon (docs/api.md). One request at a time per client; the answer's
 * status and body (bounded) come back in struct lh_http_resp. Two extra
 * modes: a chunk callback that receives a 2xx body as it arrives (JSONL
 * downloads, server-sent events), and a tick callback that turns the
 * request into a "stream": the transfer then runs in a loop that calls tick
 * every ~100 ms outside libcurl, so that tick may make other requests on
 * the same client (the stream has its own connection).
 */
#ifndef LH_CLI_HTTPC_H
#define LH_CLI_HTTPC_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include "util/buf.h"
#include "util/err.h"

struct lh_httpc;

/* Receives n bytes of a 2xx body (borrowed for the call). Runs inside
 * libcurl: it must not call lh_httpc_request. Return 0 to go on, non-zero
 * to stop the transfer (resp->fail = LH_HTTP_STOPPED, resp->stop = value). */
typedef int (*lh_http_chunk_fn)(const char *p, size_t n, void *arg);
/* Called about every 100 ms while a stream runs, outside libcurl; status is
 * the answer's status once its head has arrived, else 0. May make requests
 * on the same client. Non-zero stops the stream as above. */
typedef int (*lh_http_tick_fn)(long status, void *arg);

enum lh_http_fail {
	LH_HTTP_OK = 0,        /* an answer arrived and was read in full */
	LH_HTTP_CONNECT,       /* could not connect (refused, unreachable, no such host) */
	LH_HTTP_TIMEOUT,       /* the request timed out, or stayed idle too long */
	LH_HTTP_STOPPED,       /* a callback stopped the transfer */
	LH_HTTP_CANCELLED,     /* the cancel flag was raised (a signal) */
	LH_HTTP_TOOBIG,        /* the body passed its cap */
	LH_HTTP_TRANSPORT      /* any other transport failure (reset, bad answer, file read) */
};

struct lh_http_req {
	const char *method;        /* "GET", "POST", "PATCH", "DELETE" */
	const char *path;          /* "/v1/jobs?limit=5", appended to the base URL; borrowed */
	const char *content_type;  /* of the body, or NULL */
	const char *body;          /* a body in memory (borrowed), or NULL */
	size_t body_len;
	FILE *body_fp;             /* or a body streamed from this file (borrowed) */
	int64_t body_size;         /* its size in bytes */
	const char *last_event_id; /* sent as Last-Event-ID, or NULL */
	double timeout;            /* seconds for the whole request; 0 = none */
	double idle_timeout;       /* seconds without a byte received before giving up; 0 = none */
	size_t max_body;           /* cap on resp->body; 0 = 16 MiB */
	lh_http_chunk_fn on_chunk; /* 2xx bodies go here instead of resp->body */
	lh_http_tick_fn on_tick;   /* run as a stream (see above) */
	void *arg;                 /* for both callbacks */
};

struct lh_http_resp {
	long status;               /* 0 when no answer arrived */
	enum lh_http_fail fail;
	int stop;                  /* the callback's value when fail == LH_HTTP_STOPPED */
	struct lh_buf body;        /* the body (non-2xx ones too when on_chunk is set) */
	char detail[256];          /* libcurl's message on a transport failure */
};

/* A client for base_url (e.g. "http://127.0.0.1:8421"; a trailing "/" is
 * dropped) sending "Authorization: Bearer token" when token is non-NULL and
 * non-empty. Both strings are copied. cancel (borrowed, may be NULL) is a
 * flag a signal handler raises: every transfer then ends with
 * LH_HTTP_CANCELLED (within ~100 ms for a stream, at most about a second
 * otherwise). Returns a new client to free with lh_httpc_free, or NULL when
 * libcurl cannot start. Not thread-safe: one thread per client. */
struct lh_httpc *lh_httpc_new(const char *base_url, const char *token, volatile sig_atomic_t *cancel);
void lh_httpc_free(struct lh_httpc *c);

void lh_http_resp_init(struct lh_http_resp *r);
void lh_http_resp_release(struct lh_http_resp *r);

/* Performs rq and fills resp (which the caller has initialised; it is
 * cleared first). Returns 0 when an answer arrived, whatever its status;
 * LH_EIO otherwise, with resp->fail telling why and e holding a message.
 * A non-2xx body always goes to resp->body (capped at 64 KiB when on_chunk
 * is set). */
int lh_httpc_request(struct lh_httpc *c, const struct lh_http_req *rq, struct lh_http_resp *resp,
		     struct lh_err *e) LH_WUR;

#endif
