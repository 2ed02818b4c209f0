/*
 * steps layer: compiling a job's pipeline from its stored settings (see
 * steps.h). The spec loader has checked everything a person could get
 * wrong, with lines; this only compiles what it wrote, and refuses
 * (LH_EINPUT, naming the field) settings that were stored by something
 * else.
 */
#include "steps/steps.h"
#include "util/mem.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

const char *lh_step_kind_name(enum lh_step_kind k)
{
	switch (k) {
	case LH_STEP_LLM: return "llm";
	case LH_STEP_LOOP: return "loop";
	case LH_STEP_EXEC: return "exec";
	case LH_STEP_APPROVE: return "approve";
	}
	return "?";
}

static void argv_def_free(struct lh_argv_def *a)
{
	for (size_t i = 0; i < a->argc; i++)
		lh_template_free(a->argv[i]);
	lh_free(a->argv);
	memset(a, 0, sizeof *a);
}

static void step_free(struct lh_step_def *d)
{
	lh_free(d->id);
	lh_template_free(d->prompt);
	lh_template_free(d->system);
	lh_free(d->model);
	json_decref(d->params);
	lh_free(d->base_url);
	lh_free(d->api_key_env);
	json_decref(d->tools_json);
	for (size_t i = 0; i < d->ntools; i++) {
		lh_free(d->tools[i].name);
		argv_def_free(&d->tools[i].cmd);
	}
	lh_free(d->tools);
	lh_free(d->until);
	lh_free(d->next);
	argv_def_free(&d->cmd);
	lh_template_free(d->stdin_t);
	lh_template_free(d->question);
	lh_free(d->json_refs);
}

void lh_pipeline_free(struct lh_pipeline *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->n; i++)
		step_free(&p->steps[i]);
	lh_free(p->steps);
	if (p->reduce) {
		lh_template_free(p->reduce->prompt);
		lh_template_free(p->reduce->system);
		lh_free(p->reduce->model);
		json_decref(p->reduce->params);
		lh_free(p->reduce->output);
		lh_free(p->reduce);
	}
	lh_free(p->model);
	lh_free(p->dir);
	json_decref(p->defaults);
	lh_template_free(p->system);
	lh_free(p);
}

int lh_pipeline_find(const struct lh_pipeline *p, const char *id)
{
	for (size_t i = 0; i < p->n; i++)
		if (!strcmp(p->steps[i].id, id))
			return (int)i;
	return -1;
}

static const char *str(const json_t *o, const char *k)
{
	return json_string_value(json_object_get(o, k));
}

static char *dup_str(const json_t *o, const char *k)
{
	const char *s = str(o, k);
	return s ? lh_xstrdup(s) : NULL;
}

static int compile(const json_t *o, const char *k, const char *field, struct lh_template **out,
		   struct lh_err *e)
{
	const char *s = str(o, k);
	*out = NULL;
	if (!s)
		return 0;
	if (lh_template_compile(s, out, e))
		return lh_err_at(e, LH_EINPUT, NULL, 0, field, "%s", e->msg);
	return 0;
}

static int compile_argv(const json_t *a, const char *field, struct lh_argv_def *d, struct lh_err *e)
{
	size_t i;
	json_t *v;
	if (!json_is_array(a) || !json_array_size(a))
		return lh_err_at(e, LH_EINPUT, NULL, 0, field, "expected a non-empty list of strings");
	d->argc = json_array_size(a);
	d->argv = lh_xcalloc(d->argc, sizeof *d->argv);
	json_array_foreach(a, i, v) {
		if (!json_is_string(v) || lh_template_compile(json_string_value(v), &d->argv[i], e))
			return lh_err_at(e, LH_EINPUT, NULL, 0, field, "element %zu is not a valid template", i);
	}
	return 0;
}

/* Appends to d->json_refs the steps that the template text src reads as
 * JSON: "{{ steps.ID.json...}}". */
static void scan_json_refs(const struct lh_pipeline *p, size_t upto, struct lh_step_def *d, const char *src)
{
	const char *s = src;
	while (src && (s = strstr(s, "{{")) != NULL) {
		const char *id, *dot;
		char name[80];
		int k;
		s += 2;
		while (isspace((unsigned char)*s))
			s++;
		if (strncmp(s, "steps.", 6))
			continue;
		id = s + 6;
		dot = strchr(id, '.');
		if (!dot || (size_t)(dot - id) >= sizeof name || strncmp(dot, ".json", 5) ||
		    (dot[5] != '.' && dot[5] != '}' && !isspace((unsigned char)dot[5])))
			continue;
		memcpy(name, id, (size_t)(dot - id));
		name[dot - id] = 0;
		for (k = 0; k < (int)upto; k++)
			if (!strcmp(p->steps[k].id, name))
				break;
		if (k == (int)upto)
			continue;
		for (size_t i = 0; i < d->njson_refs; i++)
			if (d->json_refs[i] == (size_t)k)
				goto next;
		d->json_refs = lh_xrealloc(d->json_refs, (d->njson_refs + 1) * sizeof *d->json_refs);
		d->json_refs[d->njson_refs++] = (size_t)k;
next:;
	}
}

static void scan_step_refs(const struct lh_pipeline *p, size_t k, const json_t *o)
{
	struct lh_step_def *d = &p->steps[k];
	const char *keys[] = { "prompt", "system", "stdin", "approve" };
	size_t i, t;
	json_t *v, *tool, *w;
	for (i = 0; i < sizeof keys / sizeof *keys; i++)
		scan_json_refs(p, k, d, str(o, keys[i]));
	json_array_foreach(json_object_get(o, "exec"), i, v)
		scan_json_refs(p, k, d, json_string_value(v));
	json_array_foreach(json_object_get(o, "tools"), t, tool)
		json_array_foreach(json_object_get(tool, "exec"), i, w)
			scan_json_refs(p, k, d, json_string_value(w));
}

static json_t *params_of(const json_t *o)
{
	json_t *p = json_object(), *v;
	if ((v = json_object_get(o, "max_tokens")) && json_is_integer(v))
		json_object_set(p, "max_tokens", v);
	if ((v = json_object_get(o, "temperature")) && json_is_number(v))
		json_object_set(p, "temperature", v);
	return p;
}

static int load_tools(struct lh_step_def *d, const json_t *tools, char *field, size_t fsz, struct lh_err *e)
{
	size_t i;
	json_t *t;
	d->tools_json = json_array();
	d->ntools = json_array_size(tools);
	d->tools = lh_xcalloc(d->ntools ? d->ntools : 1, sizeof *d->tools);
	json_array_foreach(tools, i, t) {
		json_t *fn = json_object(), *params = json_object_get(t, "parameters");
		const char *name = str(t, "name"), *desc = str(t, "description");
		double to = json_number_value(json_object_get(t, "timeout"));
		if (!name)
			return lh_err_at(e, LH_EINPUT, NULL, 0, field, "tool %zu has no name", i);
		d->tools[i].name = lh_xstrdup(name);
		d->tools[i].timeout = to > 0 ? to : LH_STEP_EXEC_TIMEOUT;
		snprintf(field + strlen(field), fsz - strlen(field), "[%zu].exec", i);
		if (compile_argv(json_object_get(t, "exec"), field, &d->tools[i].cmd, e)) {
			json_decref(fn);
			return LH_EINPUT;
		}
		json_object_set_new(fn, "name", json_string(name));
		if (desc)
			json_object_set_new(fn, "description", json_string(desc));
		json_object_set_new(fn, "parameters",
				    json_is_object(params) ? json_incref(params) :
				    json_pack("{s:s,s:{}}", "type", "object", "properties"));
		json_array_append_new(d->tools_json, json_pack("{s:s,s:o}", "type", "function", "function", fn));
	}
	return 0;
}

static int load_step(struct lh_pipeline *p, size_t k, const json_t *o, struct lh_err *e)
{
	struct lh_step_def *d = &p->steps[k];
	const char *kind = str(o, "kind");
	char field[96];
	json_t *v;
	snprintf(field, sizeof field, "steps[%zu]", k);
	if (!json_is_object(o) || !str(o, "id") || !kind)
		return lh_err_at(e, LH_EINPUT, NULL, 0, field, "a step needs an id and a kind");
	d->id = lh_xstrdup(str(o, "id"));
	d->stream = -1;
	d->timeout = LH_STEP_EXEC_TIMEOUT;
	if (!strcmp(kind, "llm") || !strcmp(kind, "loop")) {
		d->kind = !strcmp(kind, "loop") ? LH_STEP_LOOP : LH_STEP_LLM;
		snprintf(field, sizeof field, "steps[%zu].prompt", k);
		if (!str(o, "prompt"))
			return lh_err_at(e, LH_EINPUT, NULL, 0, field, "an llm step needs a prompt");
		if (compile(o, "prompt", field, &d->prompt, e))
			return LH_EINPUT;
		snprintf(field, sizeof field, "steps[%zu].system", k);
		if (compile(o, "system", field, &d->system, e))
			return LH_EINPUT;
		d->model = dup_str(o, "model");
		d->base_url = dup_str(o, "base_url");
		d->api_key_env = dup_str(o, "api_key_env");
		d->params = params_of(o);
		if ((v = json_object_get(o, "stream")) && json_is_boolean(v))
			d->stream = json_is_true(v);
		if (d->kind == LH_STEP_LOOP) {
			json_int_t mt = json_integer_value(json_object_get(o, "max_turns"));
			json_int_t mc = json_integer_value(json_object_get(o, "max_context_bytes"));
			d->max_turns = mt > 0 ? (int)mt : LH_STEP_MAX_TURNS;
			d->max_context_bytes = mc > 0 ? (size_t)mc : LH_STEP_MAX_CONTEXT;
			d->until = dup_str(o, "until");
			d->next = dup_str(o, "next");
			snprintf(field, sizeof field, "steps[%zu].tools", k);
			if ((v = json_object_get(o, "tools")) && json_array_size(v) &&
			    load_tools(d, v, field, sizeof field, e))
				return LH_EINPUT;
		}
	} else if (!strcmp(kind, "exec")) {
		double to = json_number_value(json_object_get(o, "timeout"));
		json_t *lim = json_object_get(o, "limits");
		d->kind = LH_STEP_EXEC;
		snprintf(field, sizeof field, "steps[%zu].exec", k);
		if (compile_argv(json_object_get(o, "exec"), field, &d->cmd, e))
			return LH_EINPUT;
		snprintf(field, sizeof field, "steps[%zu].stdin", k);
		if (compile(o, "stdin", field, &d->stdin_t, e))
			return LH_EINPUT;
		if (to > 0)
			d->timeout = to;
		d->mem_limit = (uint64_t)json_integer_value(json_object_get(lim, "memory"));
		d->cpu_limit = (uint64_t)json_integer_value(json_object_get(lim, "cpu_seconds"));
		d->files_limit = (uint64_t)json_integer_value(json_object_get(lim, "open_files"));
	} else if (!strcmp(kind, "approve")) {
		d->kind = LH_STEP_APPROVE;
		snprintf(field, sizeof field, "steps[%zu].approve", k);
		if (!str(o, "approve") || compile(o, "approve", field, &d->question, e))
			return lh_err_at(e, LH_EINPUT, NULL, 0, field, "an approve step needs its question");
	} else {
		snprintf(field, sizeof field, "steps[%zu].kind", k);
		return lh_err_at(e, LH_EINPUT, NULL, 0, field, "unknown step kind \"%s\"", kind);
	}
	scan_step_refs(p, k, o);
	return 0;
}

static int load_reduce(struct lh_pipeline *p, const json_t *r, struct lh_err *e)
{
	struct lh_reduce_def *d = lh_xcalloc(1, sizeof *d);
	json_int_t f = json_integer_value(json_object_get(r, "fan_in"));
	p->reduce = d;
	if (!str(r, "prompt"))
		return lh_err_at(e, LH_EINPUT, NULL, 0, "reduce.prompt", "a reduce needs a prompt");
	if (compile(r, "prompt", "reduce.prompt", &d->prompt, e) || compile(r, "system", "reduce.system", &d->system, e))
		return LH_EINPUT;
	d->model = dup_str(r, "model");
	d->params = params_of(r);
	d->fan_in = f >= 2 ? (int)f : LH_STEP_FAN_IN;
	d->output = dup_str(r, "output");
	return 0;
}

int lh_pipeline_new(const char *settings, struct lh_pipeline **out, struct lh_err *e)
{
	json_error_t je;
	json_t *s = settings ? json_loads(settings, 0, &je) : NULL, *steps, *v, *r;
	struct lh_pipeline *p;
	size_t i;
	int rc = 0;
	*out = NULL;
	steps = json_object_get(s, "steps");
	if (!json_is_array(steps) || !json_array_size(steps)) {
		json_decref(s);
		return LH_ENOTFOUND;
	}
	p = lh_xcalloc(1, sizeof *p);
	p->n = json_array_size(steps);
	p->steps = lh_xcalloc(p->n, sizeof *p->steps);
	p->model = dup_str(s, "model");
	p->dir = dup_str(s, "base_dir");
	p->stream = json_is_true(json_object_get(s, "stream"));
	p->exec_concurrency = (long)json_integer_value(json_object_get(s, "exec_concurrency"));
	p->item_timeout = json_number_value(json_object_get(json_object_get(s, "timeouts"), "item"));
	p->defaults = params_of(s);
	if (compile(s, "system", "system", &p->system, e)) {
		json_decref(s);
		lh_pipeline_free(p);
		return LH_EINPUT;
	}
	json_array_foreach(steps, i, v) {
		/* Later steps are looked up by earlier ones' ids: fill in order. */
		if ((rc = load_step(p, i, v, e)) != 0)
			break;
	}
	if (!rc && (r = json_object_get(s, "reduce")) && json_is_object(r))
		rc = load_reduce(p, r, e);
	json_decref(s);
	if (rc) {
		lh_pipeline_free(p);
		return rc;
	}
	*out = p;
	return 0;
}
