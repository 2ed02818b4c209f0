/*
 * io layer: prompt templates. "Summarise {{ title }}: {{body.text}}" is
 * compiled once into literal runs and placeholders, then rendered per
 * record. There is no logic in a template (no conditions, no loops): a
 * prompt that needs them belongs in the records.
 */
#include "io/input.h"
#include "io/io_internal.h"
#include "util/mem.h"
#include "util/vec.h"

#include <jansson.h>
#include <string.h>

struct part {
	char *text;     /* literal text, or the placeholder's dotted name */
	size_t len;
	char **segs;    /* placeholder: the name split at dots; NULL for text */
	size_t nsegs;
};

struct lh_template {
	LH_VEC(struct part) parts;
};

void lh_template_free(struct lh_template *t)
{
	size_t i, j;
	if (!t)
		return;
	for (i = 0; i < t->parts.n; i++) {
		for (j = 0; j < t->parts.v[i].nsegs; j++)
			lh_free(t->parts.v[i].segs[j]);
		lh_free(t->parts.v[i].segs);
		lh_free(t->parts.v[i].text);
	}
	lh_vec_release(&t->parts);
	lh_free(t);
}

static struct part *add_part(struct lh_template *t, const char *text, size_t len)
{
	struct part *p;
	p = lh_vec_push(&t->parts);
	p->text = lh_xstrndup(text, len);
	p->len = len;
	p->segs = NULL;
	p->nsegs = 0;
	return p;
}

static int name_char_ok(char c)
{
	return c != '{' && c != '}' && c != ' ' && c != '\t' && c != '\n' && c != '\r';
}

/* Splits a trimmed placeholder name at dots into p->segs; every segment
 * must be nonempty and free of spaces and braces. */
static int split_name(struct part *p, struct lh_err *e)
{
	const char *s = p->text;
	size_t i, start = 0;
	if (p->len == 0)
		return lh_err_set(e, LH_EINPUT, "template has an empty placeholder \"{{}}\"");
	p->segs = lh_xcalloc(p->len + 1, sizeof *p->segs);
	for (i = 0; i <= p->len; i++) {
		if (i < p->len && s[i] != '.') {
			if (!name_char_ok(s[i]))
				return lh_err_set(e, LH_EINPUT, "template placeholder \"{{%.100s}}\" "
						  "is not a valid field name", s);
			continue;
		}
		if (i == start)
			return lh_err_set(e, LH_EINPUT,
					  "template placeholder \"{{%.100s}}\" is not a valid field name", s);
		p->segs[p->nsegs++] = lh_xstrndup(s + start, i - start);
		start = i + 1;
	}
	return 0;
}

/* Adds the placeholder whose inside is src[0..n), spaces trimmed. */
static int add_placeholder(struct lh_template *t, const char *src, size_t n, struct lh_err *e)
{
	while (n && (*src == ' ' || *src == '\t')) {
		src++;
		n--;
	}
	while (n && (src[n - 1] == ' ' || src[n - 1] == '\t'))
		n--;
	return split_name(add_part(t, src, n), e);
}

int lh_template_compile(const char *src, struct lh_template **out, struct lh_err *e)
{
	struct lh_template *t = lh_xcalloc(1, sizeof *t);
	const char *p = src;
	int rc = 0;
	while (*p && !rc) {
		const char *open = strstr(p, "{{"), *close;
		if (!open) {
			add_part(t, p, strlen(p));
			break;
		}
		if (open > p)
			add_part(t, p, (size_t)(open - p));
		close = strstr(open + 2, "}}");
		if (!close) {
			rc = lh_err_set(e, LH_EINPUT, "template has an unclosed \"{{\" at byte %zu",
					(size_t)(open - src) + 1);
			break;
		}
		rc = add_placeholder(t, open + 2, (size_t)(close - open - 2), e);
		p = close + 2;
	}
	if (rc) {
		lh_template_free(t);
		return rc;
	}
	*out = t;
	return 0;
}

/* Finds the value a placeholder names, walking nested objects; NULL when
 * any step is missing or is not an object. */
static const json_t *lookup(const struct part *p, const json_t *record)
{
	const json_t *v = record;
	size_t i;
	for (i = 0; i < p->nsegs && v; i++)
		v = json_is_object(v) ? json_object_get(v, p->segs[i]) : NULL;
	return v;
}

int lh_template_render(const struct lh_template *t, const void *record, struct lh_buf *out, struct lh_err *e)
{
	size_t i;
	int rc = 0;
	for (i = 0; i < t->parts.n && !rc; i++) {
		const struct part *p = &t->parts.v[i];
		const json_t *v;
		if (!p->segs) {
			rc = lh_buf_append(out, p->text, p->len);
			continue;
		}
		v = lookup(p, record);
		if (!v)
			return lh_err_at(e, LH_EINPUT, NULL, 0, p->text,
					 "template placeholder \"{{%.100s}}\" has no value in this record",
					 p->text);
		if (json_is_string(v))
			rc = lh_buf_append(out, json_string_value(v), json_string_length(v));
		else
			rc = io_json_dump(v, out, 0);
	}
	if (rc)
		return lh_err_set(e, rc, "rendered prompt is longer than %zu bytes", out->max);
	return 0;
}

int lh_template_each_name(const struct lh_template *t, int (*fn)(const char *name, void *arg), void *arg)
{
	size_t i;
	int rc = 0;
	for (i = 0; i < t->parts.n && !rc; i++)
		if (t->parts.v[i].segs)
			rc = fn(t->parts.v[i].text, arg);
	return rc;
}
