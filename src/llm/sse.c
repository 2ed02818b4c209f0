/*
 * llm layer: incremental server-sent events parser (see sse.h).
 *
 * Bytes arrive in arbitrary pieces, so a line may be split anywhere, even
 * between the CR and LF of a CRLF. A line found whole inside one piece is
 * processed in place; only a line that spans pieces is copied into p->line.
 * The caps are checked on both paths, so the limit does not depend on how
 * the network happened to split the stream.
 */
#include "llm/sse.h"

#include <string.h>

/* Room for a field name and its colon on top of the data a line carries. */
#define LINE_SLACK 64

void lh_sse_init(struct lh_sse *p, size_t max, lh_sse_cb cb, void *arg)
{
	lh_buf_init(&p->line, max ? max + LINE_SLACK : 0);
	/* The joined data keeps a trailing "\n" until dispatch. */
	lh_buf_init(&p->data, max ? max + 1 : 0);
	p->event[0] = '\0';
	p->id[0] = '\0';
	p->saw_cr = 0;
	p->max = max;
	p->cb = cb;
	p->arg = arg;
}

void lh_sse_release(struct lh_sse *p)
{
	lh_buf_release(&p->line);
	lh_buf_release(&p->data);
}

void lh_sse_reset(struct lh_sse *p)
{
	lh_buf_clear(&p->line);
	lh_buf_clear(&p->data);
	p->event[0] = '\0';
	p->id[0] = '\0';
	p->saw_cr = 0;
}

static void copy_field(char *dst, size_t dstsz, const char *v, size_t n)
{
	if (n >= dstsz)
		n = dstsz - 1;
	memcpy(dst, v, n);
	dst[n] = '\0';
}

static int dispatch(struct lh_sse *p)
{
	int rc;
	/* WHATWG: an empty data buffer dispatches nothing but still resets
	 * the event type. */
	if (!p->data.len) {
		p->event[0] = '\0';
		return 0;
	}
	p->data.data[--p->data.len] = '\0';
	rc = p->cb(p->event[0] ? p->event : "message", p->data.data, p->data.len, p->id, p->arg);
	lh_buf_clear(&p->data);
	p->event[0] = '\0';
	return rc;
}

static int field_is(const char *name, size_t n, const char *want)
{
	return strlen(want) == n && memcmp(name, want, n) == 0;
}

static int process_line(struct lh_sse *p, const char *s, size_t n)
{
	const char *colon, *v;
	size_t nn, vn;
	if (!n)
		return dispatch(p);
	if (s[0] == ':')
		return 0;
	colon = memchr(s, ':', n);
	nn = colon ? (size_t)(colon - s) : n;
	v = colon ? colon + 1 : s + n;
	vn = n - nn - (colon ? 1 : 0);
	if (vn && v[0] == ' ') {
		v++;
		vn--;
	}
	if (field_is(s, nn, "data")) {
		if (lh_buf_append(&p->data, v, vn) || lh_buf_putc(&p->data, '\n'))
			return LH_ETOOBIG;
	} else if (field_is(s, nn, "event")) {
		copy_field(p->event, sizeof p->event, v, vn);
	} else if (field_is(s, nn, "id")) {
		/* An id with a NUL is ignored, as browsers do. */
		if (!memchr(v, '\0', vn))
			copy_field(p->id, sizeof p->id, v, vn);
	}
	/* "retry" and unknown fields are ignored: reconnection is not ours. */
	return 0;
}

static size_t line_end(const char *s, size_t n)
{
	size_t k = 0;
	while (k < n && s[k] != '\n' && s[k] != '\r')
		k++;
	return k;
}

int lh_sse_feed(struct lh_sse *p, const char *buf, size_t n)
{
	size_t i = 0;
	while (i < n) {
		size_t k;
		int rc;
		if (p->saw_cr) {
			p->saw_cr = 0;
			if (buf[i] == '\n') {
				i++;
				continue;
			}
		}
		k = line_end(buf + i, n - i);
		if (i + k == n) {
			/* No end of line yet: keep the piece for the next feed. */
			return lh_buf_append(&p->line, buf + i, k) ? LH_ETOOBIG : 0;
		}
		p->saw_cr = buf[i + k] == '\r';
		if (p->line.len) {
			if (lh_buf_append(&p->line, buf + i, k))
				return LH_ETOOBIG;
			rc = process_line(p, p->line.data, p->line.len);
			lh_buf_clear(&p->line);
		} else if (p->line.max && k > p->line.max) {
			return LH_ETOOBIG;
		} else {
			rc = process_line(p, buf + i, k);
		}
		if (rc)
			return rc;
		i += k + 1;
	}
	return 0;
}
