/*
 * util layer: a zero-allocation JSON scanner (see jscan.h). It lives
 * below io/ and llm/ because both read answers with it: io/completion.c
 * (the one completion parser) and the llm flavours (stream chunks).
 *
 * jscan_parse validates the whole text once; the readers after it walk
 * text already known to be valid, so they only find boundaries (the end
 * of a string, the matching bracket) and never re-check grammar.
 */
#include "util/jscan.h"

#include <string.h>

#define MAX_DEPTH 2048 /* jansson's JSON_PARSER_MAX_DEPTH */

static const char *skip_ws(const char *p, const char *e)
{
	while (p < e && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
		p++;
	return p;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Reads the four hex digits after "\u" at p (p points at 'u'). */
static long hex4(const char *p, const char *e)
{
	long v = 0;
	if (e - p < 5)
		return -1;
	for (int i = 1; i <= 4; i++) {
		int h = hexval(p[i]);
		if (h < 0)
			return -1;
		v = v * 16 + h;
	}
	return v;
}

/* Length of the UTF-8 sequence at p, 0 when it is not valid. */
static size_t utf8_len(const unsigned char *p, const unsigned char *e)
{
	unsigned char c = p[0];
	size_t n;
	unsigned char lo = 0x80, hi = 0xbf;
	if (c >= 0xc2 && c <= 0xdf)
		n = 2;
	else if (c >= 0xe0 && c <= 0xef)
		n = 3;
	else if (c >= 0xf0 && c <= 0xf4)
		n = 4;
	else
		return 0;
	if ((size_t)(e - p) < n)
		return 0;
	/* The second byte's range rules out overlong forms and surrogates. */
	if (c == 0xe0)
		lo = 0xa0;
	else if (c == 0xed)
		hi = 0x9f;
	else if (c == 0xf0)
		lo = 0x90;
	else if (c == 0xf4)
		hi = 0x8f;
	if (p[1] < lo || p[1] > hi)
		return 0;
	for (size_t i = 2; i < n; i++)
		if (p[i] < 0x80 || p[i] > 0xbf)
			return 0;
	return n;
}

/* Validates one escape at p (p points after the backslash); returns the
 * position after it, or NULL. */
static const char *check_escape(const char *p, const char *e)
{
	long cp, lo;
	if (p >= e)
		return NULL;
	switch (*p) {
	case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
		return p + 1;
	case 'u':
		break;
	default:
		return NULL;
	}
	cp = hex4(p, e);
	if (cp <= 0 || (cp >= 0xdc00 && cp <= 0xdfff))
		return NULL; /* "\u0000", bad hex, or a lone low surrogate */
	p += 5;
	if (cp < 0xd800 || cp > 0xdbff)
		return p;
	if (e - p < 2 || p[0] != '\\' || p[1] != 'u')
		return NULL;
	lo = hex4(p + 1, e);
	if (lo < 0xdc00 || lo > 0xdfff)
		return NULL;
	return p + 6;
}

/* Validates a string body at p (after the opening quote); returns the
 * position after the closing quote, or NULL. */
static const char *check_string(const char *p, const char *e)
{
	while (p < e) {
		unsigned char c = (unsigned char)*p;
		if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
			p++;
		} else if (c == '"') {
			return p + 1;
		} else if (c == '\\') {
			if (!(p = check_escape(p + 1, e)))
				return NULL;
		} else if (c >= 0x80) {
			size_t n = utf8_len((const unsigned char *)p, (const unsigned char *)e);
			if (!n)
				return NULL;
			p += n;
		} else {
			return NULL; /* a control character */
		}
	}
	return NULL;
}

static int is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static const char *check_number(const char *p, const char *e)
{
	if (p < e && *p == '-')
		p++;
	if (p >= e)
		return NULL;
	if (*p == '0')
		p++;
	else if (*p >= '1' && *p <= '9')
		while (p < e && is_digit(*p))
			p++;
	else
		return NULL;
	if (p < e && *p == '.') {
		p++;
		if (p >= e || !is_digit(*p))
			return NULL;
		while (p < e && is_digit(*p))
			p++;
	}
	if (p < e && (*p == 'e' || *p == 'E')) {
		p++;
		if (p < e && (*p == '+' || *p == '-'))
			p++;
		if (p >= e || !is_digit(*p))
			return NULL;
		while (p < e && is_digit(*p))
			p++;
	}
	return p;
}

static const char *check_literal(const char *p, const char *e, const char *lit, size_t n)
{
	return (size_t)(e - p) >= n && memcmp(p, lit, n) == 0 ? p + n : NULL;
}

static const char *check_scalar(const char *p, const char *e)
{
	switch (*p) {
	case '"': return check_string(p + 1, e);
	case 't': return check_literal(p, e, "true", 4);
	case 'f': return check_literal(p, e, "false", 5);
	case 'n': return check_literal(p, e, "null", 4);
	default: return check_number(p, e);
	}
}

static char type_of(char c)
{
	switch (c) {
	case '{': return 'o';
	case '[': return 'a';
	case '"': return 's';
	case 't': return 't';
	case 'f': return 'f';
	case 'n': return 'z';
	default: return 'n';
	}
}

enum want { WANT_VALUE, WANT_KEY, AFTER_VALUE };

/* One step of the validator at a container opening: pushes it unless it
 * is empty. Returns the next state, or -1. */
static int open_container(const char **pp, const char *e, char *stack, int *depth)
{
	const char *p = *pp;
	char open = *p, close = open == '{' ? '}' : ']';
	p = skip_ws(p + 1, e);
	if (p < e && *p == close) {
		*pp = p + 1;
		return AFTER_VALUE;
	}
	if (*depth == MAX_DEPTH)
		return -1;
	stack[(*depth)++] = open;
	*pp = p;
	return open == '{' ? WANT_KEY : WANT_VALUE;
}

static int validate(const char *p, const char *e)
{
	char stack[MAX_DEPTH];
	int depth = 0, st = WANT_VALUE;
	for (;;) {
		p = skip_ws(p, e);
		if (st == AFTER_VALUE && !depth)
			return p == e ? 0 : -1;
		if (p >= e || (st == WANT_VALUE && depth == MAX_DEPTH)) /* jansson counts every value */
			return -1;
		if (st == WANT_VALUE) {
			if (*p == '{' || *p == '[') {
				st = open_container(&p, e, stack, &depth);
				if (st < 0)
					return -1;
			} else {
				if (!(p = check_scalar(p, e)))
					return -1;
				st = AFTER_VALUE;
			}
		} else if (st == WANT_KEY) {
			if (*p != '"' || !(p = check_string(p + 1, e)))
				return -1;
			p = skip_ws(p, e);
			if (p >= e || *p != ':')
				return -1;
			p++;
			st = WANT_VALUE;
		} else if (*p == ',') {
			p++;
			st = stack[depth - 1] == '{' ? WANT_KEY : WANT_VALUE;
		} else if (*p == (stack[depth - 1] == '{' ? '}' : ']')) {
			p++;
			depth--;
		} else {
			return -1;
		}
	}
}

int jscan_parse(const char *s, size_t n, struct jscan_v *root)
{
	const char *e = s ? s + n : NULL, *b, *t; /* s + n is undefined for s NULL */
	root->type = 0;
	root->p = NULL;
	root->n = 0;
	if (!s || validate(s, e) != 0)
		return -1;
	b = skip_ws(s, e);
	t = e;
	while (t > b && (t[-1] == ' ' || t[-1] == '\t' || t[-1] == '\n' || t[-1] == '\r'))
		t--;
	root->p = b;
	root->n = (size_t)(t - b);
	root->type = type_of(*b);
	return 0;
}

/* ---- walking validated text ---- */

/* p points after an opening quote; returns the position after the closing
 * one. */
static const char *skip_string(const char *p, const char *e)
{
	while (p < e) {
		const char *q = memchr(p, '"', (size_t)(e - p));
		const char *bs;
		size_t n;
		if (!q)
			return e;
		/* The quote is escaped when an odd number of backslashes precede it. */
		for (bs = q, n = 0; bs > p && bs[-1] == '\\'; bs--)
			n++;
		if (n % 2 == 0)
			return q + 1;
		p = q + 1;
	}
	return e;
}

static const char *skip_value(const char *p, const char *e)
{
	int depth = 0;
	do {
		switch (*p) {
		case '"':
			p = skip_string(p + 1, e);
			break;
		case '{':
		case '[':
			depth++;
			p++;
			break;
		case '}':
		case ']':
			depth--;
			p++;
			break;
		default:
			if (!depth) {
				while (p < e && *p != ',' && *p != '}' && *p != ']' && *p != ' ' && *p != '\t' &&
				       *p != '\n' && *p != '\r')
					p++;
				return p;
			}
			p++;
		}
	} while (depth > 0 && p < e);
	return p;
}

static void set_jv(struct jscan_v *v, const char *b, const char *end)
{
	v->p = b;
	v->n = (size_t)(end - b);
	v->type = type_of(*b);
}

static void clear_jv(struct jscan_v *v)
{
	v->p = NULL;
	v->n = 0;
	v->type = 0;
}

int jscan_get(const struct jscan_v *o, const char *key, struct jscan_v *out)
{
	const char *p, *e;
	size_t kl = strlen(key);
	clear_jv(out);
	if (!o || o->type != 'o')
		return -1;
	p = o->p + 1;
	e = o->p + o->n - 1; /* the closing brace */
	for (;;) {
		const char *ks, *ke, *vs;
		p = skip_ws(p, e);
		if (p >= e || *p != '"')
			return -1;
		ks = p + 1;
		ke = skip_string(ks, e);
		p = skip_ws(ke, e) + 1; /* past ':' */
		vs = skip_ws(p, e);
		p = skip_value(vs, e);
		if ((size_t)(ke - 1 - ks) == kl && memcmp(ks, key, kl) == 0) {
			set_jv(out, vs, p);
			return 0;
		}
		p = skip_ws(p, e);
		if (p >= e || *p != ',')
			return -1;
		p++;
	}
}

int jscan_next(const struct jscan_v *a, size_t *pos, struct jscan_v *out)
{
	const char *p, *e, *vs;
	clear_jv(out);
	if (!a || a->type != 'a')
		return 0;
	e = a->p + a->n - 1; /* the closing bracket */
	p = skip_ws(a->p + (*pos ? *pos : 1), e);
	if (p < e && *p == ',')
		p = skip_ws(p + 1, e);
	if (p >= e)
		return 0;
	vs = p;
	p = skip_value(vs, e);
	set_jv(out, vs, p);
	*pos = (size_t)(p - a->p);
	return 1;
}

int64_t jscan_int(const struct jscan_v *v)
{
	const char *p, *e;
	int64_t r = 0;
	int neg = 0;
	if (!v || v->type != 'n')
		return -1;
	p = v->p;
	e = p + v->n;
	if (*p == '-') {
		neg = 1;
		p++;
	}
	for (; p < e && is_digit(*p); p++) {
		if (r > (INT64_MAX - 9) / 10)
			return -1;
		r = r * 10 + (*p - '0');
	}
	/* Only a plain integer counts: "1.5e3" or "1e3" is not one to
	 * jansson's users, and token counts are never negative, so anything
	 * else reads as absent (-1) rather than as a wrong number. */
	if (p < e || (neg && r != 0))
		return -1;
	return r;
}

static int put_utf8(struct lh_buf *b, unsigned long cp)
{
	char u[4];
	size_t n;
	if (cp < 0x80) {
		u[0] = (char)cp;
		n = 1;
	} else if (cp < 0x800) {
		u[0] = (char)(0xc0 | (cp >> 6));
		u[1] = (char)(0x80 | (cp & 0x3f));
		n = 2;
	} else if (cp < 0x10000) {
		u[0] = (char)(0xe0 | (cp >> 12));
		u[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		u[2] = (char)(0x80 | (cp & 0x3f));
		n = 3;
	} else {
		u[0] = (char)(0xf0 | (cp >> 18));
		u[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
		u[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
		u[3] = (char)(0x80 | (cp & 0x3f));
		n = 4;
	}
	return lh_buf_append(b, u, n);
}

/* Decodes the escape after a backslash at p; returns the bytes used. */
static size_t unescape(const char *p, const char *e, struct lh_buf *b, int *rc)
{
	static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
	const char *k = memchr(from, *p, sizeof from - 1);
	unsigned long cp;
	if (k) {
		*rc = lh_buf_putc(b, to[k - from]);
		return 1;
	}
	cp = (unsigned long)hex4(p, e);
	if (cp >= 0xd800 && cp <= 0xdbff) {
		unsigned long lo = (unsigned long)hex4(p + 6, e);
		*rc = put_utf8(b, 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00));
		return 11;
	}
	*rc = put_utf8(b, cp);
	return 5;
}

int jscan_str(const struct jscan_v *v, struct lh_buf *b)
{
	const char *p, *e;
	int rc = 0;
	if (!v || v->type != 's')
		return LH_EINPUT;
	p = v->p + 1;
	e = v->p + v->n - 1;
	while (p < e && !rc) {
		const char *bs = memchr(p, '\\', (size_t)(e - p));
		const char *run_end = bs ? bs : e;
		rc = lh_buf_append(b, p, (size_t)(run_end - p));
		p = run_end;
		if (bs && !rc)
			p = bs + 1 + unescape(bs + 1, e, b, &rc);
	}
	return rc;
}

int jscan_str_is(const struct jscan_v *v, const char *s)
{
	size_t n = strlen(s);
	return v && v->type == 's' && v->n == n + 2 && memcmp(v->p + 1, s, n) == 0;
}

int jscan_str_starts(const struct jscan_v *v, const char *s)
{
	size_t n = strlen(s);
	return v && v->type == 's' && v->n >= n + 2 && memcmp(v->p + 1, s, n) == 0;
}
