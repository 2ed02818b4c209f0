/*
 * Incremental server-sent events parser (WHATWG rules: "data:" lines joined
 * with "\n", an empty line ends an event, ":" lines are comments, CR, LF and
 * CRLF all end lines). Bounded: an event larger than max bytes is an error.
 */
#ifndef LH_LLM_SSE_H
#define LH_LLM_SSE_H

#include <stddef.h>
#include "util/buf.h"

/* Called for each complete event; data is NUL-terminated (borrowed).
 * Return non-zero to stop parsing (lh_sse_feed then returns that value). */
typedef int (*lh_sse_cb)(const char *event, const char *data, size_t len, const char *id, void *arg);

struct lh_sse {
	struct lh_buf line;
	struct lh_buf data;
	char event[64];
	char id[128];
	int saw_cr;
	size_t max;
	lh_sse_cb cb;
	void *arg;
};

void lh_sse_init(struct lh_sse *p, size_t max, lh_sse_cb cb, void *arg);
void lh_sse_release(struct lh_sse *p);
/* Forgets any partial line, event and last event id, keeping the memory
 * (for reusing one parser across responses). */
void lh_sse_reset(struct lh_sse *p);
/* Feeds bytes; returns 0, LH_ETOOBIG, or the callback's non-zero value. */
int lh_sse_feed(struct lh_sse *p, const char *buf, size_t n);

#endif
