/*
 * Fuzz target: the zero-allocation JSON scanner (util/jscan.c), checked
 * against jansson. jscan.h promises that validation agrees with jansson's
 * defaults (apart from numbers too large for jansson), so:
 *   - whatever jscan accepts must load in jansson, and the reverse;
 *   - the readers over an accepted text (jscan_get, jscan_next,
 *     jscan_str, jscan_int) must see the values jansson sees.
 * Members are compared only when the text has no duplicate keys (jscan
 * returns the first, jansson the last), only for keys without a backslash,
 * and a key is allowed to be missing only when the object's text has an
 * escape (keys match as written).
 */
#include "fuzz.h"

#include <ctype.h>
#include <jansson.h>
#include <math.h>
#include <string.h>

#include "util/jscan.h"
#include "util/buf.h"

static int is_ws(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static void compare(const struct jscan_v *v, json_t *j, int members, int depth)
{
	struct jscan_v m;
	struct lh_buf b;
	size_t pos = 0, i = 0;
	const char *key;
	json_t *val;
	int64_t x;
	FUZZ_CHECK(v->n > 0 && !is_ws(v->p[0]) && !is_ws(v->p[v->n - 1]), "value has no text or untrimmed text");
	switch (json_typeof(j)) {
	case JSON_OBJECT:
		FUZZ_CHECK(v->type == 'o', "jansson has an object, jscan type '%c'", v->type);
		FUZZ_CHECK(jscan_next(v, &pos, &m) == 0, "jscan_next iterated an object");
		if (!members)
			break;
		json_object_foreach(j, key, val) {
			/* A key with a backslash can match another key's escaped
			 * spelling (the lookup compares text as written); callers
			 * only look up plain names. */
			if (strchr(key, '\\'))
				continue;
			if (jscan_get(v, key, &m) == 0)
				compare(&m, val, members, depth + 1);
			else
				FUZZ_CHECK(memchr(v->p, '\\', v->n), "member \"%s\" not found by jscan_get", key);
		}
		break;
	case JSON_ARRAY:
		FUZZ_CHECK(v->type == 'a', "jansson has an array, jscan type '%c'", v->type);
		FUZZ_CHECK(jscan_get(v, "a", &m) == -1 && m.type == 0, "jscan_get found a member in an array");
		while (jscan_next(v, &pos, &m)) {
			FUZZ_CHECK(i < json_array_size(j), "jscan_next gave more than %zu elements",
				   json_array_size(j));
			compare(&m, json_array_get(j, i), members, depth + 1);
			i++;
		}
		FUZZ_CHECK(i == json_array_size(j), "jscan_next gave %zu elements, jansson has %zu", i,
			   json_array_size(j));
		break;
	case JSON_STRING:
		FUZZ_CHECK(v->type == 's', "jansson has a string, jscan type '%c'", v->type);
		lh_buf_init(&b, 0);
		FUZZ_CHECK(jscan_str(v, &b) == 0, "jscan_str failed");
		FUZZ_CHECK(b.len == json_string_length(j) &&
			   (b.len == 0 || memcmp(b.data, json_string_value(j), b.len) == 0),
			   "jscan_str gave %zu bytes \"%.100s\", jansson %zu bytes \"%.100s\"", b.len,
			   b.data ? b.data : "", json_string_length(j), json_string_value(j));
		lh_buf_release(&b);
		break;
	case JSON_INTEGER:
		FUZZ_CHECK(v->type == 'n', "jansson has an integer, jscan type '%c'", v->type);
		x = jscan_int(v);
		/* jscan reads only non-negative plain integers (token counts);
		 * -1 otherwise, and it may give up a little before INT64_MAX. */
		FUZZ_CHECK(x == -1 || x == json_integer_value(j), "jscan_int %lld, jansson %lld", (long long)x,
			   (long long)json_integer_value(j));
		if (json_integer_value(j) >= 0 && json_integer_value(j) < 1000000000000000000LL)
			FUZZ_CHECK(x == json_integer_value(j), "jscan_int %lld, jansson %lld", (long long)x,
				   (long long)json_integer_value(j));
		if (json_integer_value(j) < 0)
			FUZZ_CHECK(x == -1, "jscan_int %lld for a negative number", (long long)x);
		break;
	case JSON_REAL:
		FUZZ_CHECK(v->type == 'n', "jansson has a real, jscan type '%c'", v->type);
		x = jscan_int(v);
		/* A fraction or an exponent is not a plain integer: absent. */
		FUZZ_CHECK(x == -1, "jscan_int %lld of real %.17g", (long long)x, json_real_value(j));
		break;
	case JSON_TRUE:
		FUZZ_CHECK(v->type == 't', "jansson has true, jscan type '%c'", v->type);
		break;
	case JSON_FALSE:
		FUZZ_CHECK(v->type == 'f', "jansson has false, jscan type '%c'", v->type);
		break;
	case JSON_NULL:
		FUZZ_CHECK(v->type == 'z', "jansson has null, jscan type '%c'", v->type);
		break;
	}
	if (v->type != 'o') {
		FUZZ_CHECK(jscan_get(v, "a", &m) == -1, "jscan_get on a non-object");
	}
}

/* Whether the text is JSON once each NUL byte that follows a number or a
 * literal (a digit or a letter) is dropped. jansson reads such a NUL one
 * byte too far and "ungets" it into its stream buffer, where a NUL means
 * "refill", so the byte is lost. */
static int nul_after_number(const char *s, size_t n)
{
	char *t = malloc(n ? n : 1);
	size_t k = 0;
	struct jscan_v v;
	int ok;
	for (size_t i = 0; i < n; i++)
		if (!(s[i] == '\0' && i > 0 && isalnum((unsigned char)s[i - 1])))
			t[k++] = s[i];
	ok = k < n && jscan_parse(t, k, &v) == 0;
	free(t);
	return ok;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *s = (const char *)data;
	struct jscan_v root;
	json_error_t err;
	int ok = jscan_parse(s, size, &root) == 0;
	json_t *j = json_loadb(s, size, JSON_DECODE_ANY, &err), *nodup;
	if (ok && !j) {
		/* The one documented difference: numbers jansson cannot hold. */
		FUZZ_CHECK(json_error_code(&err) == json_error_numeric_overflow,
			   "jscan accepts what jansson rejects: %s (line %d, column %d, position %d)", err.text,
			   err.line, err.column, err.position);
		return 0;
	}
	/* jansson 2.14 skips a NUL byte right after a number or a literal
	 * ("[10", NUL, "]" loads as [10]): its quirk, not jscan's; see
	 * docs/fuzzing.md. */
	if (!ok && j && nul_after_number(s, size)) {
		json_decref(j);
		return 0;
	}
	FUZZ_CHECK(ok || !j, "jansson accepts what jscan rejects");
	if (!ok) {
		FUZZ_CHECK(root.type == 0, "rejected text with a root type");
		return 0;
	}
	nodup = json_loadb(s, size, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, NULL);
	compare(&root, j, nodup != NULL, 0);
	json_decref(nodup);
	json_decref(j);
	return 0;
}
