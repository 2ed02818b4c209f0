/*
 * Fuzz target: the server-sent events parser (llm/sse.c). The input is a
 * response body. Besides memory safety it checks what sse.h promises:
 *   - the events and the result do not depend on how the network splits
 *     the stream (whole, byte by byte, in pseudo-random pieces);
 *   - the cap holds: no event carries more than max bytes of data;
 *   - data is NUL-terminated at len and holds no CR; event and id fit;
 *   - a callback's non-zero value stops parsing and is returned;
 *   - after lh_sse_reset a parser behaves like a new one.
 */
#include "fuzz.h"

#include <string.h>

#include "llm/sse.h"
#include "util/buf.h"

struct log {
	struct lh_buf out; /* every event as "event|id|len|data\n" */
	size_t max;
	int n, stop_at;
};

static int on_event(const char *event, const char *data, size_t len, const char *id, void *arg)
{
	struct log *l = arg;
	FUZZ_CHECK(data[len] == '\0', "data is not NUL-terminated at len %zu", len);
	FUZZ_CHECK(!memchr(data, '\r', len), "data holds a CR");
	FUZZ_CHECK(!l->max || len <= l->max, "event of %zu bytes passed the cap %zu", len, l->max);
	FUZZ_CHECK(strlen(event) > 0 && strlen(event) < 64, "event name of %zu bytes", strlen(event));
	FUZZ_CHECK(strlen(id) < 128, "id of %zu bytes", strlen(id));
	if (lh_buf_puts(&l->out, event) || lh_buf_putc(&l->out, '|') || lh_buf_puts(&l->out, id) ||
	    lh_buf_printf(&l->out, "|%zu|", len) || lh_buf_append(&l->out, data, len) ||
	    lh_buf_putc(&l->out, '\n'))
		abort();
	l->n++;
	return l->stop_at && l->n == l->stop_at ? 7 : 0;
}

/* Feeds buf in pieces: step 0 = whole, 1 = byte by byte, else pieces of
 * 1..step bytes chosen by a generator seeded from the input. */
static int feed(struct lh_sse *p, const char *buf, size_t n, size_t step)
{
	uint32_t x = 2166136261u;
	size_t i = 0;
	int rc = 0;
	for (size_t k = 0; k < n && k < 64; k++)
		x = (x ^ (unsigned char)buf[k]) * 16777619u;
	if (!step)
		return lh_sse_feed(p, buf, n);
	while (i < n && !rc) {
		size_t piece = 1;
		if (step > 1) {
			x ^= x << 13;
			x ^= x >> 17;
			x ^= x << 5;
			piece = 1 + x % step;
		}
		if (piece > n - i)
			piece = n - i;
		rc = lh_sse_feed(p, buf + i, piece);
		i += piece;
	}
	return rc;
}

static void run(const char *buf, size_t n, size_t max, int stop_at)
{
	static const size_t steps[] = { 1, 3, 17 };
	struct lh_sse p;
	struct log whole = { .max = max, .stop_at = stop_at }, l;
	int rc_whole, rc;
	lh_buf_init(&whole.out, 0);
	lh_sse_init(&p, max, on_event, &whole);
	rc_whole = feed(&p, buf, n, 0);
	FUZZ_CHECK(rc_whole == 0 || rc_whole == LH_ETOOBIG || (stop_at && rc_whole == 7), "lh_sse_feed returned %d",
		   rc_whole);
	FUZZ_CHECK((rc_whole == 7) == (stop_at && whole.n == stop_at), "stop value %d after %d events", rc_whole,
		   whole.n);
	lh_sse_release(&p);

	for (size_t s = 0; s <= sizeof steps / sizeof steps[0]; s++) {
		l = (struct log){ .max = max, .stop_at = stop_at };
		lh_buf_init(&l.out, 0);
		lh_sse_init(&p, max, on_event, &l);
		if (s == sizeof steps / sizeof steps[0]) {
			/* Reuse after a reset: dirty the parser with the input cut
			 * short first (a partial line, event, id and CR). */
			struct log junk = { .max = max };
			lh_buf_init(&junk.out, 0);
			p.arg = &junk;
			(void)feed(&p, buf, n / 2, 0);
			lh_sse_reset(&p);
			p.arg = &l;
			lh_buf_release(&junk.out);
			rc = feed(&p, buf, n, 0);
		} else {
			rc = feed(&p, buf, n, steps[s]);
		}
		FUZZ_CHECK(rc == rc_whole, "split %zu: result %d, whole: %d", s, rc, rc_whole);
		FUZZ_CHECK(l.out.len == whole.out.len &&
			   (!l.out.len || memcmp(l.out.data, whole.out.data, l.out.len) == 0),
			   "split %zu (max %zu) gave other events:\n--- whole:\n%.2000s\n--- split:\n%.2000s", s, max,
			   whole.out.data ? whole.out.data : "", l.out.data ? l.out.data : "");
		lh_sse_release(&p);
		lh_buf_release(&l.out);
	}
	lh_buf_release(&whole.out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *buf = (const char *)data;
	run(buf, size, 0, 0);
	run(buf, size, 40, 0);
	run(buf, size, 1 << 20, 2);
	return 0;
}
