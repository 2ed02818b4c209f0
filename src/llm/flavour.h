/*
 * The seam between the HTTP transport (transport.c) and an API flavour
 * (openai.c; Ollama's /api/chat next). The transport moves bytes: it owns
 * the easy-handle pool, curl multi on the loop, timeouts, the capped body
 * buffer, Retry-After and the raw outcome of a transfer. A flavour knows
 * one API: its request headers, whether a body asks to stream, how a
 * streamed answer is framed and read, which response headers matter, and
 * how a raw answer becomes an lh_llm_result (with classify.c).
 *
 * A flavour is a table of operations, as a store backend is: a new one
 * plugs in here and nowhere else. Internal to src/llm/.
 */
#ifndef LH_LLM_FLAVOUR_H
#define LH_LLM_FLAVOUR_H

#include <stddef.h>
#include "llm/llm.h"

/* Why a transfer ended early, as far as the transport knows. */
enum llm_abort {
	LLM_ABORT_NONE = 0,
	LLM_ABORT_TOO_LARGE,   /* a body, a stream event or assembled text passed max_response_bytes */
	LLM_ABORT_FIRST_TOKEN, /* streaming: no data within the first-token timeout */
	LLM_ABORT_CANCELLED,   /* lh_llm_cancel or lh_llm_free */
	LLM_ABORT_START,       /* curl refused the handle */
	LLM_ABORT_FLAVOUR      /* the flavour's feed stopped the stream; it knows why */
};

/* What the transport saw of one request, handed to the flavour's result
 * operation. Every pointer is borrowed for the duration of that call. */
struct llm_raw {
	enum llm_abort abort;
	int status;         /* HTTP status of the final response, 0 if none */
	int curl_code;      /* a CURLcode; 0 = the transfer completed */
	int streamed;       /* the body went to feed, not to body */
	const char *body;   /* the non-streamed body as received, "" when none */
	size_t body_len;
	const char *transport_message; /* "transport error: ..." for a failed transfer, else "" */
};

/* An API flavour. The strings are data; st is the flavour's per-request
 * state, pooled with the request (state_new once, state_reset before each
 * use, state_trim after it, state_free with the handle). */
struct llm_flavour {
	const char *name;          /* "openai" */
	const char *auth_prefix;   /* header line the key is appended to ("Authorization: Bearer "); NULL: never sent */
	const char *accept;        /* Accept header line for a plain answer */
	const char *accept_stream; /* Accept header line for a streamed answer */

	/* Whether body[0..len) asks the server to stream its answer. Pure. */
	int (*wants_stream)(const char *body, size_t len);

	/* New per-request state; bodies it buffers are capped at max bytes. */
	void *(*state_new)(size_t max);
	void (*state_reset)(void *st);
	void (*state_trim)(void *st);
	void (*state_free)(void *st);

	/* A response begins (a status line): forget earlier headers. */
	void (*response_start)(void *st);
	/* One response header, name and value trimmed, not NUL-terminated. */
	void (*header)(void *st, const char *name, size_t nl, const char *value, size_t vl);
	/* Bytes of a streamed answer (a 2xx to a streaming request that is
	 * not application/json). Returns 0, LH_ETOOBIG, or a positive code of
	 * the flavour's own that stops the transfer (LLM_ABORT_FLAVOUR). */
	int (*feed)(void *st, const char *p, size_t n);
	/* Whether the stream has delivered its first data (stops the
	 * first-token timer). */
	int (*has_data)(const void *st);
	/* Fills res from raw and the state. The transport has already set
	 * status, os_errno, retry_after, timings and, for its own aborts,
	 * outcome and error_code; the flavour sets the rest (request id,
	 * rate limits, and for LLM_ABORT_NONE / LLM_ABORT_FLAVOUR the outcome,
	 * code, body and usage). msg (msgsz bytes) holds error_message. */
	void (*result)(void *st, const struct llm_raw *raw, struct lh_llm_result *res, char *msg, size_t msgsz);
};

/* OpenAI-compatible chat completions (openai.c). */
extern const struct llm_flavour llm_openai;

#endif
