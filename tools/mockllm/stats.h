/*
 * Process-wide counters behind GET /stats, and the set of request-body
 * hashes that detects duplicate requests. Thread-safe; every function may
 * be called from any worker.
 */
#ifndef MOCKLLM_STATS_H
#define MOCKLLM_STATS_H

#include <stdint.h>

#include "buf.h"

/* How one POST /v1/chat/completions request was answered (or not). */
enum outcome {
	OC_OK,
	OC_429,
	OC_500,
	OC_503,
	OC_HANG,
	OC_RESET,
	OC_TRUNCATE,
	OC_BADJSON,
	OC_401,
	OC_404,
	OC_400,
	OC_OTHER,
	OC_COUNT
};

/* Sets up the counters and the hash set. Returns 0, or -1 when out of memory. */
int stats_init(void);

/* Frees the hash set. No worker may be running. */
void stats_release(void);

/* Counts one chat request whose body hashed to body_hash: total, and duplicate or unique. */
void stats_request(uint64_t body_hash);

/* Counts the outcome decided for a chat request. */
void stats_outcome(enum outcome oc);

/* Counts one answer that calls tools (its outcome is counted apart, as ok). */
void stats_tool_answer(void);

/* Adds delta (+1 or -1) to the number of chat requests not yet answered. */
void stats_in_flight(int delta);

/* Zeroes every counter but in_flight (a gauge) and empties the hash set. */
void stats_reset(void);

/* Appends the /stats JSON object to out. */
void stats_json(struct buf *out);

#endif
