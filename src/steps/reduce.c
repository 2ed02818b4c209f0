/*
 * steps layer: the job's reduce. After every item has ended, the outputs of
 * the succeeded items, in input order, are cut into chunks of fan_in; each
 * chunk is one LLM call whose {{outputs}} is the chunk's blocks ("## KEY"
 * then the output). The results are chunked again ("## FIRST .. LAST", the
 * keys a result covers) until one remains: that is the job's reduce output.
 */
#include "steps/steps.h"
#include "util/mem.h"

#include <stdlib.h>
#include <string.h>

size_t lh_reduce_calls(size_t n, int fan_in)
{
	size_t total = 0, f = fan_in >= 2 ? (size_t)fan_in : LH_STEP_FAN_IN;
	if (!n)
		return 0;
	do {
		n = (n + f - 1) / f;
		total += n;
	} while (n > 1);
	return total;
}

int lh_reduce_block(struct lh_buf *b, const char *first, const char *last, const char *text, size_t len)
{
	int rc = 0;
	if (b->len)
		rc = lh_buf_puts(b, "\n\n");
	if (!rc)
		rc = lh_buf_puts(b, "## ");
	if (!rc)
		rc = lh_buf_puts(b, first);
	if (!rc && last && strcmp(first, last)) {
		rc = lh_buf_puts(b, " .. ");
		if (!rc)
			rc = lh_buf_puts(b, last);
	}
	if (!rc)
		rc = lh_buf_putc(b, '\n');
	if (!rc && len)
		rc = lh_buf_append(b, text, len);
	return rc;
}

int lh_reduce_body(const struct lh_pipeline *p, const char *model, const char *outputs, size_t len,
		   struct lh_buf *out, struct lh_err *e)
{
	const struct lh_reduce_def *r = p->reduce;
	json_t *ctx = json_object(), *msgs = json_array(), *o, *s;
	struct lh_buf b;
	const char *k;
	json_t *v;
	char *text;
	int rc = 0;
	s = json_stringn(outputs, len);
	if (!s) {
		json_decref(ctx);
		json_decref(msgs);
		return lh_err_set(e, LH_EINPUT, "the reduce's input is not valid UTF-8");
	}
	json_object_set_new(ctx, "outputs", s);
	lh_buf_init(&b, 0);
	if (r->system) {
		rc = lh_template_render(r->system, ctx, &b, e);
		if (!rc)
			json_array_append_new(msgs, json_pack("{s:s,s:s%}", "role", "system", "content",
							      b.data ? b.data : "", b.len));
	}
	lh_buf_clear(&b);
	if (!rc)
		rc = lh_template_render(r->prompt, ctx, &b, e);
	if (!rc)
		json_array_append_new(msgs, json_pack("{s:s,s:s%}", "role", "user", "content", b.data ? b.data : "",
						      b.len));
	lh_buf_release(&b);
	json_decref(ctx);
	if (rc) {
		json_decref(msgs);
		return rc;
	}
	o = json_object();
	if (r->model || model)
		json_object_set_new(o, "model", json_string(r->model ? r->model : model));
	json_object_set_new(o, "messages", msgs);
	json_object_foreach(p->defaults, k, v)
		json_object_set(o, k, v);
	json_object_foreach(r->params, k, v)
		json_object_set(o, k, v);
	text = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(17));
	json_decref(o);
	if (!text)
		return lh_err_set(e, LH_ENOMEM, "out of memory");
	lh_buf_clear(out);
	rc = lh_buf_puts(out, text) ? lh_err_set(e, LH_ETOOBIG, "the reduce request is too large") : 0;
	free(text);
	return rc;
}
