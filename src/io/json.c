/*
 * io layer: a compact JSON writer over jansson values. jansson's own dump
 * prints reals with 17 significant digits, so a request's "temperature":
 * 0.7 would go out as 0.69999999999999996; prompts and outputs are read by
 * people, so reals here take the shortest form that reads back exactly.
 */
#include "io/io_internal.h"
#include "util/mem.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void io_fmt_real(double d, char *out, size_t outsz)
{
	int prec;
	if (!isfinite(d)) {
		/* JSON has no infinities; jansson never produces them from text. */
		snprintf(out, outsz, "null");
		return;
	}
	for (prec = 15; prec <= 17; prec++) {
		snprintf(out, outsz, "%.*g", prec, d);
		if (strtod(out, NULL) == d)
			break;
	}
	if (!strpbrk(out, ".eE")) {
		size_t n = strlen(out);
		if (n + 3 <= outsz)
			memcpy(out + n, ".0", 3);
	}
}

const char *io_json_type_name(const json_t *j)
{
	switch (json_typeof(j)) {
	case JSON_OBJECT: return "an object";
	case JSON_ARRAY: return "an array";
	case JSON_STRING: return "a string";
	case JSON_INTEGER: return "an integer";
	case JSON_REAL: return "a number";
	case JSON_TRUE:
	case JSON_FALSE: return "a boolean";
	default: return "null";
	}
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int dump_member(const char *key, const json_t *v, struct lh_buf *b, int sort_keys, int first)
{
	int rc = first ? 0 : lh_buf_putc(b, ',');
	if (!rc)
		rc = lh_buf_json_str(b, key, strlen(key));
	if (!rc)
		rc = lh_buf_putc(b, ':');
	if (!rc)
		rc = io_json_dump(v, b, sort_keys);
	return rc;
}

static int dump_object(const json_t *j, struct lh_buf *b, int sort_keys)
{
	const char *key;
	json_t *v;
	size_t n = json_object_size(j), i = 0;
	int rc = lh_buf_putc(b, '{');
	if (rc)
		return rc;
	if (sort_keys && n > 1) {
		const char **keys = lh_xmalloc(n * sizeof *keys);
		json_object_foreach((json_t *)j, key, v)
			keys[i++] = key;
		qsort(keys, n, sizeof *keys, cmp_str);
		for (i = 0; i < n && !rc; i++)
			rc = dump_member(keys[i], json_object_get(j, keys[i]), b, sort_keys, i == 0);
		lh_free(keys);
	} else {
		json_object_foreach((json_t *)j, key, v) {
			rc = dump_member(key, v, b, sort_keys, i++ == 0);
			if (rc)
				break;
		}
	}
	return rc ? rc : lh_buf_putc(b, '}');
}

static int dump_array(const json_t *j, struct lh_buf *b, int sort_keys)
{
	size_t i, n = json_array_size(j);
	int rc = lh_buf_putc(b, '[');
	for (i = 0; i < n && !rc; i++) {
		if (i)
			rc = lh_buf_putc(b, ',');
		if (!rc)
			rc = io_json_dump(json_array_get(j, i), b, sort_keys);
	}
	return rc ? rc : lh_buf_putc(b, ']');
}

int io_json_dump(const json_t *j, struct lh_buf *b, int sort_keys)
{
	char num[40];
	switch (json_typeof(j)) {
	case JSON_OBJECT:
		return dump_object(j, b, sort_keys);
	case JSON_ARRAY:
		return dump_array(j, b, sort_keys);
	case JSON_STRING:
		return lh_buf_json_str(b, json_string_value(j), json_string_length(j));
	case JSON_INTEGER:
		return lh_buf_printf(b, "%" JSON_INTEGER_FORMAT, json_integer_value(j));
	case JSON_REAL:
		io_fmt_real(json_real_value(j), num, sizeof num);
		return lh_buf_puts(b, num);
	case JSON_TRUE:
		return lh_buf_puts(b, "true");
	case JSON_FALSE:
		return lh_buf_puts(b, "false");
	default:
		return lh_buf_puts(b, "null");
	}
}
