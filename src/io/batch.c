/*
 * io layer: the OpenAI Batch API input reader. Each line is checked the way
 * OpenAI checks it at upload (custom_id, method, url, body), so that a bad
 * line is reported with its place before anything is written, instead of
 * failing hours later as a dead item.
 */
#include "io/input.h"
#include "io/io_internal.h"
#include "util/mem.h"

#include <jansson.h>
#include <string.h>

struct lh_batch_reader {
	char *path;
	struct io_lines lines;
	json_t *cur;           /* the current line's JSON, kept for the borrowed strings */
	struct lh_buf body;    /* the current body, re-serialised */
};

int lh_batch_open(const char *path, struct lh_batch_reader **out, struct lh_err *e)
{
	struct lh_batch_reader *r = lh_xcalloc(1, sizeof *r);
	int rc;
	r->path = lh_xstrdup(path);
	rc = io_lines_open(&r->lines, r->path, LH_MAX_LINE, e);
	if (rc) {
		lh_free(r->path);
		lh_free(r);
		return rc;
	}
	/* No cap of its own: the body comes from a line of at most
	 * LH_MAX_LINE bytes, and re-serialising can at most lengthen numbers
	 * written with exponents ("1e14"), a few times over. */
	lh_buf_init(&r->body, 0);
	*out = r;
	return 0;
}

void lh_batch_close(struct lh_batch_reader *r)
{
	if (!r)
		return;
	io_lines_close(&r->lines);
	json_decref(r->cur);
	lh_buf_release(&r->body);
	lh_free(r->path);
	lh_free(r);
}

/* A required string member: missing, wrong type and (when nonempty is set)
 * empty are errors naming the member. */
static int get_str(struct lh_batch_reader *r, json_t *obj, const char *name, int nonempty, const char **out,
		   struct lh_err *e)
{
	json_t *v = json_object_get(obj, name);
	long line = r->lines.lineno;
	if (!v)
		return lh_err_at(e, LH_EINPUT, r->path, line, name, "required field is missing");
	if (!json_is_string(v))
		return lh_err_at(e, LH_EINPUT, r->path, line, name, "expected a string, not %s",
				 io_json_type_name(v));
	if (nonempty && json_string_length(v) == 0)
		return lh_err_at(e, LH_EINPUT, r->path, line, name, "must not be empty");
	*out = json_string_value(v);
	return 0;
}

static int check_url(struct lh_batch_reader *r, const char *url, struct lh_err *e)
{
	if (strcmp(url, "/v1/chat/completions") == 0 || strcmp(url, "/chat/completions") == 0)
		return 0;
	return lh_err_at(e, LH_EINPUT, r->path, r->lines.lineno, "url",
			 "unsupported url \"%.200s\": expected \"/v1/chat/completions\"", url);
}

static int check_body(struct lh_batch_reader *r, json_t *body, int require_model, struct lh_err *e)
{
	long line = r->lines.lineno;
	json_t *v;
	if (!body)
		return lh_err_at(e, LH_EINPUT, r->path, line, "body", "required field is missing");
	if (!json_is_object(body))
		return lh_err_at(e, LH_EINPUT, r->path, line, "body", "expected an object, not %s",
				 io_json_type_name(body));
	v = json_object_get(body, "messages");
	if (!v)
		return lh_err_at(e, LH_EINPUT, r->path, line, "body.messages", "required field is missing");
	if (!json_is_array(v))
		return lh_err_at(e, LH_EINPUT, r->path, line, "body.messages", "expected an array, not %s",
				 io_json_type_name(v));
	v = json_object_get(body, "model");
	if (require_model && !v)
		return lh_err_at(e, LH_EINPUT, r->path, line, "body.model",
				 "required field is missing (or pass --model)");
	if (v && !json_is_string(v))
		return lh_err_at(e, LH_EINPUT, r->path, line, "body.model", "expected a string, not %s",
				 io_json_type_name(v));
	return 0;
}

/* Validates one non-blank line held in r->cur and fills l. */
static int check_line(struct lh_batch_reader *r, int require_model, struct lh_batch_line *l,
		      struct lh_err *e)
{
	const char *id, *method, *url;
	json_t *body;
	int rc = get_str(r, r->cur, "custom_id", 1, &id, e);
	if (!rc && json_string_length(json_object_get(r->cur, "custom_id")) > LH_MAX_KEY)
		rc = lh_err_at(e, LH_EINPUT, r->path, r->lines.lineno, "custom_id", "longer than %d bytes",
			       LH_MAX_KEY);
	if (!rc)
		rc = get_str(r, r->cur, "method", 0, &method, e);
	if (!rc && strcmp(method, "POST") != 0)
		rc = lh_err_at(e, LH_EINPUT, r->path, r->lines.lineno, "method",
			       "unsupported method \"%.20s\": expected \"POST\"", method);
	if (!rc)
		rc = get_str(r, r->cur, "url", 0, &url, e);
	if (!rc)
		rc = check_url(r, url, e);
	body = json_object_get(r->cur, "body");
	if (!rc)
		rc = check_body(r, body, require_model, e);
	if (rc)
		return rc;
	lh_buf_clear(&r->body);
	rc = io_json_dump(body, &r->body, 0);
	if (rc)
		return lh_err_at(e, rc, r->path, r->lines.lineno, "body", "body is too large");
	l->line = r->lines.lineno;
	l->custom_id = id;
	l->custom_id_len = json_string_length(json_object_get(r->cur, "custom_id"));
	l->url = url;
	l->body = r->body.data;
	l->body_len = r->body.len;
	l->stream = json_is_true(json_object_get(body, "stream"));
	return 0;
}

int lh_batch_next(struct lh_batch_reader *r, int require_model, struct lh_batch_line *l, struct lh_err *e)
{
	char *line;
	size_t len;
	json_error_t jerr;
	int rc;
	json_decref(r->cur);
	r->cur = NULL;
	while ((rc = io_lines_next(&r->lines, &line, &len, e)) == 1) {
		if (!io_blank(line, len))
			break;
	}
	if (rc <= 0)
		return rc;
	r->cur = json_loadb(line, len, 0, &jerr);
	if (!r->cur)
		return lh_err_at(e, LH_EINPUT, r->path, r->lines.lineno, NULL,
				 "invalid JSON: %s at column %d", jerr.text, jerr.column);
	if (!json_is_object(r->cur))
		return lh_err_at(e, LH_EINPUT, r->path, r->lines.lineno, NULL,
				 "expected a JSON object, not %s", io_json_type_name(r->cur));
	rc = check_line(r, require_model, l, e);
	return rc ? rc : 1;
}
