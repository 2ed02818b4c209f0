/*
 * steps layer: an item's rendering context, llm requests and their
 * answers, commands' argv, and the loop's decisions (see steps.h).
 *
 * Request bodies are serialised by jansson in insertion order, compactly,
 * so the same step, record and earlier outputs always give the same bytes,
 * hence the same request hash: that is what lets a resumed or edited run
 * find its finished steps in the journal.
 */
#include "steps/steps.h"
#include "io/completion.h"
#include "util/mem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RENDER_MAX ((size_t)LH_MAX_LINE + (1u << 20))

int lh_step_ctx_new(const char *input, size_t len, const char *key, json_t **out, struct lh_err *e)
{
	json_t *o = json_loadb(input, len, 0, NULL);
	*out = NULL;
	if (!json_is_object(o)) {
		json_decref(o);
		return lh_err_set(e, LH_EINPUT, "the stored record of item %s is not a JSON object", key);
	}
	if (!json_object_get(o, "key"))
		json_object_set_new(o, "key", json_string(key));
	json_object_set_new(o, "steps", json_object());
	*out = o;
	return 0;
}

void lh_step_ctx_set(const struct lh_pipeline *p, size_t k, json_t *ctx, const char *out, size_t len)
{
	json_t *s = json_stringn(out ? out : "", out ? len : 0);
	if (!s) /* not UTF-8: the runner refuses such outputs before; be safe */
		s = json_string("");
	json_object_set_new(json_object_get(ctx, "steps"), p->steps[k].id, json_pack("{s:O}", "output", s));
	json_object_set_new(ctx, "output", s);
}

static int parse_refs(const struct lh_pipeline *p, size_t k, json_t *ctx, struct lh_err *e)
{
	const struct lh_step_def *d = &p->steps[k];
	json_t *steps = json_object_get(ctx, "steps");
	for (size_t i = 0; i < d->njson_refs; i++) {
		const char *id = p->steps[d->json_refs[i]].id;
		json_t *s = json_object_get(steps, id), *out = json_object_get(s, "output"), *v;
		json_error_t je;
		if (!s || json_object_get(s, "json"))
			continue;
		v = json_loadb(json_string_value(out), json_string_length(out), JSON_DECODE_ANY, &je);
		if (!v) {
			char field[96];
			snprintf(field, sizeof field, "steps.%s.json", id);
			return lh_err_at(e, LH_EINPUT, NULL, 0, field,
					 "step %s reads {{steps.%s.json...}} but the output of step %s is not JSON (%s)",
					 d->id, id, id, je.text);
		}
		json_object_set_new(s, "json", v);
	}
	return 0;
}

int lh_step_render(const struct lh_pipeline *p, size_t k, json_t *ctx, const struct lh_template *t,
		   struct lh_buf *out, struct lh_err *e)
{
	int rc = parse_refs(p, k, ctx, e);
	if (rc)
		return rc;
	lh_buf_clear(out);
	return lh_template_render(t, ctx, out, e);
}

static int render_str(const struct lh_pipeline *p, size_t k, json_t *ctx, const struct lh_template *t,
		      json_t **s, struct lh_err *e)
{
	struct lh_buf b;
	int rc;
	lh_buf_init(&b, RENDER_MAX);
	rc = lh_step_render(p, k, ctx, t, &b, e);
	*s = rc ? NULL : json_stringn(b.data ? b.data : "", b.len);
	lh_buf_release(&b);
	if (!rc && !*s)
		rc = lh_err_set(e, LH_EINPUT, "step %s: the rendered text is not valid UTF-8", p->steps[k].id);
	return rc;
}

int lh_step_messages(const struct lh_pipeline *p, size_t k, json_t *ctx, json_t **out, struct lh_err *e)
{
	const struct lh_step_def *d = &p->steps[k];
	const struct lh_template *sys = d->system ? d->system : p->system;
	json_t *m = json_array(), *s;
	*out = NULL;
	if (sys) {
		if (render_str(p, k, ctx, sys, &s, e)) {
			json_decref(m);
			return LH_EINPUT;
		}
		json_array_append_new(m, json_pack("{s:s,s:o}", "role", "system", "content", s));
	}
	if (render_str(p, k, ctx, d->prompt, &s, e)) {
		json_decref(m);
		return LH_EINPUT;
	}
	json_array_append_new(m, json_pack("{s:s,s:o}", "role", "user", "content", s));
	*out = m;
	return 0;
}

const char *lh_step_model(const struct lh_pipeline *p, size_t k, const char *job_model)
{
	if (k < p->n && p->steps[k].model)
		return p->steps[k].model;
	return job_model ? job_model : p->model;
}

static int dump(json_t *o, struct lh_buf *out)
{
	char *s = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(17));
	int rc;
	if (!s)
		return LH_ENOMEM;
	lh_buf_clear(out);
	rc = lh_buf_puts(out, s) ? LH_ETOOBIG : 0;
	free(s);
	return rc;
}

static void set_params(json_t *o, const json_t *params)
{
	const char *k;
	json_t *v;
	json_object_foreach((json_t *)params, k, v)
		json_object_set(o, k, v);
}

int lh_step_body(const struct lh_pipeline *p, size_t k, const char *model, int stream, const json_t *messages,
		 struct lh_buf *out)
{
	const struct lh_step_def *d = &p->steps[k];
	json_t *o = json_object();
	int rc;
	if (model)
		json_object_set_new(o, "model", json_string(model));
	json_object_set(o, "messages", (json_t *)messages);
	if (d->tools_json)
		json_object_set(o, "tools", d->tools_json);
	set_params(o, p->defaults);
	set_params(o, d->params);
	if (d->stream >= 0)
		stream = d->stream;
	if (stream && d->kind == LH_STEP_LLM) {
		json_object_set_new(o, "stream", json_true());
		json_object_set_new(o, "stream_options", json_pack("{s:b}", "include_usage", 1));
	}
	rc = dump(o, out);
	json_decref(o);
	return rc;
}

int lh_answer_read(const char *body, size_t len, int want_message, struct lh_answer *a, struct lh_err *e)
{
	struct lh_completion c;
	json_t *r, *msg, *tc;
	memset(a, 0, sizeof *a);
	a->prompt_tokens = a->completion_tokens = -1;
	/* The text, the finish and the usage come from the one completion
	 * parser (io/completion.c), without building a tree. */
	if (lh_completion_parse(body, len, &c) != 0 || !c.has_choice) {
		lh_completion_release(&c);
		return lh_err_set(e, LH_EINPUT, "the answer is not a chat completion (no choices)");
	}
	a->content = c.content;
	a->finish_reason = c.finish_reason;
	a->prompt_tokens = c.prompt_tokens;
	a->completion_tokens = c.completion_tokens;
	if (!want_message)
		return 0;
	/* A loop keeps the assistant's message, tool calls and all, for the
	 * conversation. */
	r = json_loadb(body, len, 0, NULL);
	msg = json_object_get(json_array_get(json_object_get(r, "choices"), 0), "message");
	if (json_is_object(msg)) {
		a->message = json_deep_copy(msg);
		tc = json_object_get(a->message, "tool_calls");
		if (json_is_array(tc) && json_array_size(tc))
			a->tool_calls = tc;
		/* The conversation keeps what the model said, not how it thought. */
		json_object_del(a->message, "reasoning_content");
		json_object_del(a->message, "reasoning");
		if (!json_object_get(a->message, "role"))
			json_object_set_new(a->message, "role", json_string("assistant"));
	}
	json_decref(r);
	return 0;
}

void lh_answer_release(struct lh_answer *a)
{
	lh_free(a->content);
	lh_free(a->finish_reason);
	json_decref(a->message);
	memset(a, 0, sizeof *a);
}

enum lh_loop_next lh_loop_decide(const struct lh_step_def *d, const struct lh_answer *a)
{
	if (d->until && a->content && strstr(a->content, d->until))
		return LH_LOOP_DONE;
	if (a->tool_calls)
		return LH_LOOP_TOOLS;
	if (d->next)
		return LH_LOOP_CONTINUE;
	return LH_LOOP_DONE;
}

int lh_loop_tool(const struct lh_step_def *d, const json_t *call, const char **args, const char **id)
{
	const json_t *fn = json_object_get(call, "function");
	const char *name = json_string_value(json_object_get(fn, "name"));
	*args = json_string_value(json_object_get(fn, "arguments"));
	*id = json_string_value(json_object_get(call, "id"));
	if (!*args)
		*args = "{}";
	if (!*id)
		*id = "";
	for (size_t i = 0; name && i < d->ntools; i++)
		if (!strcmp(d->tools[i].name, name))
			return (int)i;
	return -1;
}

json_t *lh_loop_tool_message(const char *id, const char *text, size_t len)
{
	json_t *s = json_stringn(text, len);
	if (!s)
		s = json_string("(the tool's output is not valid UTF-8)");
	return json_pack("{s:s,s:s,s:o}", "role", "tool", "tool_call_id", id, "content", s);
}

/* ---- commands ---- */

void lh_argv_free(char **argv)
{
	for (size_t i = 0; argv && argv[i]; i++)
		lh_free(argv[i]);
	lh_free(argv);
}

int lh_step_argv(const struct lh_pipeline *p, size_t k, json_t *ctx, const struct lh_argv_def *d, char ***out,
		 struct lh_err *e)
{
	char **argv = lh_xcalloc(d->argc + 1, sizeof *argv);
	struct lh_buf b;
	int rc = 0;
	lh_buf_init(&b, RENDER_MAX);
	for (size_t i = 0; i < d->argc && !rc; i++) {
		rc = lh_step_render(p, k, ctx, d->argv[i], &b, e);
		if (!rc && memchr(b.data ? b.data : "", 0, b.len))
			rc = lh_err_set(e, LH_EINPUT, "argument %zu of step %s holds a NUL byte", i, p->steps[k].id);
		if (!rc)
			argv[i] = lh_xstrndup(b.data ? b.data : "", b.len);
	}
	lh_buf_release(&b);
	if (rc) {
		lh_argv_free(argv);
		argv = NULL;
	}
	*out = argv;
	return rc;
}

void lh_step_exec_hash(const struct lh_step_def *d, char *const *argv, const char *in, size_t in_len,
		       char out[LH_SHA256_HEX])
{
	struct lh_sha256_ctx c;
	char lim[160];
	lh_sha256_init(&c);
	lh_sha256_update(&c, "exec", 5);
	for (size_t i = 0; argv[i]; i++)
		lh_sha256_update(&c, argv[i], strlen(argv[i]) + 1);
	snprintf(lim, sizeof lim, "\1%zu\1%.17g %llu %llu %llu", in_len, d->timeout,
		 (unsigned long long)d->mem_limit, (unsigned long long)d->cpu_limit,
		 (unsigned long long)d->files_limit);
	lh_sha256_update(&c, lim, strlen(lim) + 1);
	if (in_len)
		lh_sha256_update(&c, in, in_len);
	lh_sha256_final_hex(&c, out);
}
