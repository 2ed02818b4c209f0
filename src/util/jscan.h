/*
 * util layer: a zero-allocation JSON scanner for the hot paths: checking
 * that an LLM answer is valid JSON and reading a few members of it (usage,
 * choices, stream deltas) without building a tree. jansson reads byte by
 * byte through a stream layer and allocates every node, which costs about
 * 20 ns per byte: more than curl's whole request for a 2 KB answer.
 *
 * Validation is strict RFC 8259 and agrees with jansson's defaults (UTF-8
 * checked, "\u0000" and lone surrogates rejected, depth at most 2048), so
 * a body that passes here also loads with jansson elsewhere, except for
 * numbers too large for jansson's integers and doubles.
 */
#ifndef LH_UTIL_JSCAN_H
#define LH_UTIL_JSCAN_H

#include <stddef.h>
#include <stdint.h>
#include "util/buf.h"

/* A value inside a validated buffer: its text is [p, p + n). */
struct jscan_v {
	const char *p;
	size_t n;
	char type; /* 'o' object, 'a' array, 's' string, 'n' number, 't' true, 'f' false, 'z' null; 0 = none */
};

/* Validates s[0..n) as one JSON value with optional surrounding white
 * space and sets *root to it. Returns 0, or -1 when the text is not JSON
 * (root->type is then 0). */
int jscan_parse(const char *s, size_t n, struct jscan_v *root);

/* Member key of object o (keys compared as written: a key spelled with
 * escapes does not match). Returns 0, or -1 (out->type 0) when o is not an
 * object or has no such member. o must come from jscan_parse. */
int jscan_get(const struct jscan_v *o, const char *key, struct jscan_v *out);

/* Iterates array a: *pos starts at 0; returns 1 and the next element, or
 * 0 at the end (or when a is not an array). */
int jscan_next(const struct jscan_v *a, size_t *pos, struct jscan_v *out);

/* A non-negative integer written plainly ("42"), as "usage" fields are;
 * -1 for anything else (not a number, negative, a fraction, an exponent,
 * out of range). */
int64_t jscan_int(const struct jscan_v *v);

/* Appends string v, unescaped, to b. Returns 0, LH_ETOOBIG at b's cap,
 * or LH_EINPUT when v is not a string. */
int jscan_str(const struct jscan_v *v, struct lh_buf *b);

/* Whether v is a string whose text as written equals s. */
int jscan_str_is(const struct jscan_v *v, const char *s);

/* Whether v is a string whose text as written begins with s. */
int jscan_str_starts(const struct jscan_v *v, const char *s);

#endif
