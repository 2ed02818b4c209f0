/*
 * io layer: reading a completion (see completion.h) with the
 * zero-allocation scanner (util/jscan.h). The answer is validated once;
 * only the strings handed out are allocated.
 */
#include "io/completion.h"
#include "util/mem.h"

#include <string.h>

void lh_completion_usage(const struct jscan_v *j, int64_t *pt, int64_t *ct)
{
	struct jscan_v u, v;
	if (jscan_get(j, "usage", &u) == 0 && u.type == 'o') {
		*pt = jscan_get(&u, "prompt_tokens", &v) == 0 ? jscan_int(&v) : -1;
		*ct = jscan_get(&u, "completion_tokens", &v) == 0 ? jscan_int(&v) : -1;
	} else {
		/* Ollama's native answers count tokens at the top level. */
		*pt = jscan_get(j, "prompt_eval_count", &v) == 0 ? jscan_int(&v) : -1;
		*ct = jscan_get(j, "eval_count", &v) == 0 ? jscan_int(&v) : -1;
	}
}

/* Content is a string, or (newer APIs) an array of parts with "text". */
static char *content_string(const struct jscan_v *v)
{
	struct lh_buf b;
	struct jscan_v part, t;
	size_t pos = 0;
	if (v->type != 's' && v->type != 'a')
		return NULL;
	lh_buf_init(&b, 0);
	if (v->type == 's') {
		if (jscan_str(v, &b) != 0)
			lh_buf_clear(&b);
	} else {
		while (jscan_next(v, &pos, &part))
			if (jscan_get(&part, "text", &t) == 0 && jscan_str(&t, &b) != 0)
				break;
	}
	return lh_buf_steal(&b);
}

static char *new_string(const struct jscan_v *v)
{
	struct lh_buf b;
	if (v->type != 's')
		return NULL;
	lh_buf_init(&b, 0);
	if (jscan_str(v, &b) != 0)
		lh_buf_clear(&b);
	return lh_buf_steal(&b);
}

int lh_completion_parse(const char *body, size_t len, struct lh_completion *out)
{
	struct jscan_v j, choices, c0, msg, v;
	size_t pos = 0;
	memset(out, 0, sizeof *out);
	out->prompt_tokens = out->completion_tokens = -1;
	if (jscan_parse(body, len, &j) != 0 || jscan_get(&j, "choices", &choices) != 0 || choices.type != 'a')
		return -1;
	if (jscan_next(&choices, &pos, &c0)) {
		out->has_choice = c0.type == 'o';
		if (jscan_get(&c0, "message", &msg) == 0)
			jscan_get(&msg, "content", &v);
		else
			jscan_get(&c0, "text", &v);
		out->content = content_string(&v);
		if (jscan_get(&c0, "finish_reason", &v) == 0)
			out->finish_reason = new_string(&v);
	}
	lh_completion_usage(&j, &out->prompt_tokens, &out->completion_tokens);
	return 0;
}

void lh_completion_release(struct lh_completion *c)
{
	lh_free(c->content);
	lh_free(c->finish_reason);
	c->content = c->finish_reason = NULL;
}
