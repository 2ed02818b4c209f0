/*
 * What the simulator answers to POST /v1/chat/completions: validation,
 * per-prompt triggers, random faults, and the deterministic reply with its
 * usage (an echo, tool calls asked for by [[tool:...]] markers, or the text
 * after tool results), as a whole JSON response or as server-sent events. Knows
 * nothing of sockets or timers: server.c decides when bytes go out.
 */
#ifndef MOCKLLM_REPLY_H
#define MOCKLLM_REPLY_H

#include <stdbool.h>
#include <stdint.h>

#include "buf.h"
#include "stats.h"

enum reply_kind {
	RK_OK,        /* the echo completion */
	RK_ERROR,     /* a status with an OpenAI error body (in content) */
	RK_HANG,      /* never answer */
	RK_RESET,     /* close with RST */
	RK_TRUNCATE,  /* send half, then close */
	RK_BADJSON,   /* 200 whose body is not JSON */
};

/* Parallel tool calls in one answer; markers beyond this are ignored. */
#define REPLY_MAX_CALLS 64

/* One tool call of an answer: its name and compact arguments inside reply.calls. */
struct reply_call {
	uint32_t name_off, name_len;
	uint32_t args_off, args_len;
};

struct reply {
	enum reply_kind kind;
	int status;
	bool retry_after;     /* add Retry-After to an error */
	bool stream;
	bool include_usage;
	bool length_cut;      /* max_tokens cut the content: finish_reason "length" */
	uint64_t delay_ns;    /* latency + jitter + [[sleep]] before the answer */
	long long prompt_tokens;
	long long completion_tokens;
	long long created;
	char id[17];          /* hex of the body hash */
	struct buf content;   /* assistant text; for RK_ERROR the error body */
	struct buf model;     /* the model, as a JSON string with its quotes */
	long long turn;       /* this answer's assistant turn: assistant messages + 1 */
	size_t ncalls;        /* tool calls in this answer; 0 for a text answer */
	struct buf calls;     /* names and arguments of the calls, see call[] */
	struct reply_call call[REPLY_MAX_CALLS];
	/*
	 * Streaming progress: segments are words with their leading space, or
	 * for tool calls two per call (its head, then its arguments).
	 */
	size_t pos;
	size_t seg_sent;
	size_t seg_total;
	size_t seg_limit;     /* segments to send before stopping (truncate sends half) */
};

/* Lifecycle of the reusable buffers inside a reply. */
void reply_init(struct reply *r);
void reply_release(struct reply *r);

/*
 * Decides the answer to one chat request from its exact body bytes. auth_ok
 * says whether the Authorization header matched --require-key; body_hash is
 * hash64 of the body; rng is the calling worker's generator (faults and
 * jitter). Fills r (reusing its buffers) and returns the outcome to count.
 */
enum outcome reply_decide(struct reply *r, const char *body, size_t len,
			  bool auth_ok, uint64_t body_hash, uint64_t *rng);

/* How the response is framed for this connection. */
struct reply_meta {
	bool keep_alive;
	int minor;            /* HTTP/1.x */
	const char *reqid;    /* x-request-id value */
};

/*
 * Appends a complete response for every case that is not a stream of words:
 * errors, bad JSON (as JSON, or as one bad event when streaming), and the
 * non-streaming completion (RK_TRUNCATE sends the full Content-Length but
 * half the body). scratch is a work buffer.
 */
void reply_write(struct reply *r, struct buf *out, struct buf *scratch,
		 const struct reply_meta *m);

/* Appends the head of a streamed response and resets the stream progress. */
void reply_stream_head(struct reply *r, struct buf *out, const struct reply_meta *m);

/*
 * Appends the next server-sent event (one word); after the last word, also
 * the final events and the end of the body. Returns true when the stream is
 * over (for RK_TRUNCATE: after half the words, with no end).
 */
bool reply_stream_step(struct reply *r, struct buf *out, struct buf *scratch, bool chunked);

#endif
