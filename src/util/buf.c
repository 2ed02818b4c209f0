/*
 * util layer: bounded growable buffer (see buf.h).
 */
#include "util/buf.h"
#include "util/mem.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void lh_buf_init(struct lh_buf *b, size_t max)
{
	b->data = NULL;
	b->len = b->cap = 0;
	b->max = max;
}

void lh_buf_release(struct lh_buf *b)
{
	lh_free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

void lh_buf_clear(struct lh_buf *b)
{
	b->len = 0;
	if (b->data)
		b->data[0] = '\0';
}

static int reserve(struct lh_buf *b, size_t extra)
{
	size_t need = b->len + extra + 1, ncap;
	char *p;
	if (b->max && b->len + extra > b->max)
		return LH_ETOOBIG;
	if (need <= b->cap)
		return 0;
	ncap = b->cap ? b->cap : 256;
	while (ncap < need)
		ncap *= 2;
	p = lh_xrealloc(b->data, ncap);
	b->data = p;
	b->cap = ncap;
	return 0;
}

int lh_buf_append(struct lh_buf *b, const void *p, size_t n)
{
	int rc = reserve(b, n);
	if (rc)
		return rc;
	if (n)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
	return 0;
}

int lh_buf_puts(struct lh_buf *b, const char *s)
{
	return lh_buf_append(b, s, strlen(s));
}

int lh_buf_putc(struct lh_buf *b, char c)
{
	return lh_buf_append(b, &c, 1);
}

int lh_buf_printf(struct lh_buf *b, const char *fmt, ...)
{
	va_list ap;
	int n, rc;
	char small[256];
	va_start(ap, fmt);
	n = vsnprintf(small, sizeof small, fmt, ap);
	va_end(ap);
	if (n < 0)
		return LH_EINTERNAL;
	if ((size_t)n < sizeof small)
		return lh_buf_append(b, small, (size_t)n);
	rc = reserve(b, (size_t)n);
	if (rc)
		return rc;
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
	return 0;
}

int lh_buf_json_str(struct lh_buf *b, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	size_t i, start = 0;
	int rc = lh_buf_putc(b, '"');
	for (i = 0; i < n && !rc; i++) {
		unsigned char c = (unsigned char)s[i];
		char esc[7];
		const char *rep = NULL;
		size_t rlen = 2;
		switch (c) {
		case '"': rep = "\\\""; break;
		case '\\': rep = "\\\\"; break;
		case '\n': rep = "\\n"; break;
		case '\r': rep = "\\r"; break;
		case '\t': rep = "\\t"; break;
		case '\b': rep = "\\b"; break;
		case '\f': rep = "\\f"; break;
		default:
			if (c < 0x20) {
				esc[0] = '\\'; esc[1] = 'u'; esc[2] = '0'; esc[3] = '0';
				esc[4] = hex[c >> 4]; esc[5] = hex[c & 15]; esc[6] = 0;
				rep = esc;
				rlen = 6;
			}
		}
		if (rep) {
			rc = lh_buf_append(b, s + start, i - start);
			if (!rc)
				rc = lh_buf_append(b, rep, rlen);
			start = i + 1;
		}
	}
	if (!rc)
		rc = lh_buf_append(b, s + start, n - start);
	if (!rc)
		rc = lh_buf_putc(b, '"');
	return rc;
}

char *lh_buf_steal(struct lh_buf *b)
{
	char *p = b->data;
	if (!p)
		p = lh_xstrdup("");
	b->data = NULL;
	b->len = b->cap = 0;
	return p;
}
