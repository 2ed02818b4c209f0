/*
 * io layer: a job spec's pipeline, `steps:` and `reduce:`. spec.c hands
 * each of the two fields' YAML node here; they are walked by hand, as
 * spec.c walks the top level, and come out as normalized JSON that the
 * engine reads (the shape is in input.h, at lh_spec_load).
 *
 * The rules, each mistake reported with file, line and field
 * ("steps[2].exec[1]", "steps[1].tools[0].name", "reduce.prompt"):
 * - steps is a list of 1 to 100 mappings; each has an "id" matching
 *   [a-z][a-z0-9_]* (at most 64 bytes), unique, and exactly one kind key:
 *   "prompt" (llm), "exec" (exec) or "approve" (approve).
 * - an llm step with "tools" or "next" is a loop; "until", "max_turns"
 *   and "max_context_bytes" belong to loops only.
 * - every template compiles; {{steps.ID.output}} and {{steps.ID.json...}}
 *   name an earlier step, {{output}} (the previous step's output) is not
 *   in the first step, other {{steps...}} forms are errors. Other names
 *   are the record's fields, known only at run time.
 * - the reduce prompt has {{outputs}} and nothing else.
 */
#include "io/input.h"
#include "io/io_internal.h"
#include "util/mem.h"

#include <errno.h>
#include <libfyaml.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_STEPS 100
#define MAX_ID 64
#define MAX_TOOL_NAME 64
#define MAX_DEPTH 64
#define SECS_MAX 604800.0            /* a week: exec and tool timeouts */
#define CPU_MAX (366.0 * 86400)
#define DEFAULT_TIMEOUT 600.0
#define DEFAULT_TURNS 10
#define DEFAULT_CONTEXT 1048576
#define DEFAULT_FAN_IN 20

#define ERR(rd, line, field, ...) lh_err_at((rd)->e, LH_EINPUT, (rd)->file, line, field, __VA_ARGS__)

/* The steps being read: what a template may refer to. */
struct pipe {
	const struct io_spec_rd *rd;
	char **ids;          /* every step's id as written (NULL when missing), for references */
	size_t n;
	size_t cur;          /* the step being read */
};

/* One template being checked. */
struct tref {
	const struct io_spec_rd *rd;
	const struct pipe *p; /* NULL: the reduce's */
	const char *field;
	long line;
	int has_outputs;
};

/* A field's name for errors: a bounded format, cut short when too long
 * (an error record keeps 127 bytes of it anyway). */
static void LH_PRINTF(3, 4) fieldf(char *out, size_t outsz, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(out, outsz, fmt, ap);
	va_end(ap);
}

static int key_is(const char *name, size_t len, const char *want)
{
	return strlen(want) == len && !memcmp(want, name, len);
}

/* "expected WHAT, not ..." for a node of the wrong shape. */
static int want(const struct io_spec_rd *rd, long line, const char *field, const char *what, struct fy_node *v)
{
	if (fy_node_is_alias(v))
		return ERR(rd, line, field, "aliases are not supported");
	return io_spec_bad(rd, line, field, what, v);
}

/* The line where a node starts: scalars carry it, collections take their
 * first entry's; def when there is none. */
static long first_line(struct fy_node *n, long def, int depth)
{
	void *it = NULL;
	long l;
	if (!n || depth > MAX_DEPTH || fy_node_is_alias(n))
		return def;
	if (fy_node_is_scalar(n))
		return (l = io_spec_line(n)) ? l : def;
	if (fy_node_is_mapping(n)) {
		struct fy_node_pair *pr = fy_node_mapping_iterate(n, &it);
		return pr ? first_line(fy_node_pair_key(pr), def, depth + 1) : def;
	}
	if (fy_node_is_sequence(n))
		return first_line(fy_node_sequence_iterate(n, &it), def, depth + 1);
	return def;
}

/* The key of a mapping entry as text (borrowed) and its line (def when
 * it has none). */
static int entry_key(const struct io_spec_rd *rd, long def, const char *field, struct fy_node_pair *pr,
		     const char **name, size_t *len, long *line)
{
	struct fy_node *k = fy_node_pair_key(pr);
	*line = io_spec_line(k);
	if (!*line)
		*line = def;
	return io_spec_scalar(rd, *line, field, "a field name", k, name, len);
}

/* ---- templates and their references ---- */

static int ref_step(struct tref *t, const char *name)
{
	const struct pipe *p = t->p;
	const char *id, *dot, *rest;
	size_t idlen, j;
	if (strncmp(name, "steps.", 6))
		goto form;
	id = name + 6;
	dot = strchr(id, '.');
	if (!dot || dot == id)
		goto form;
	rest = dot + 1;
	if (strcmp(rest, "output") && strcmp(rest, "json") && strncmp(rest, "json.", 5))
		goto form;
	idlen = (size_t)(dot - id);
	for (j = 0; j < p->n; j++)
		if (p->ids[j] && strlen(p->ids[j]) == idlen && !memcmp(p->ids[j], id, idlen))
			break;
	if (j == p->n)
		return ERR(t->rd, t->line, t->field, "{{%.200s}}: there is no step with the id \"%.*s\"", name,
			   (int)(idlen < MAX_ID ? idlen : MAX_ID), id);
	if (j == p->cur)
		return ERR(t->rd, t->line, t->field, "{{%.200s}}: a step cannot use its own output", name);
	if (j > p->cur)
		return ERR(t->rd, t->line, t->field,
			   "{{%.200s}}: step \"%s\" (steps[%zu]) runs later, so its output is not known yet", name,
			   p->ids[j], j);
	return 0;
form:
	return ERR(t->rd, t->line, t->field,
		   "{{%.200s}}: expected {{steps.ID.output}} or {{steps.ID.json}} (or a path below json)", name);
}

static int ref_check(const char *name, void *arg)
{
	struct tref *t = arg;
	if (!t->p) {
		if (!strcmp(name, "outputs")) {
			t->has_outputs = 1;
			return 0;
		}
		return ERR(t->rd, t->line, t->field,
			   "{{%.200s}}: the only placeholder of a reduce is {{outputs}} (the results it merges)", name);
	}
	if (!strcmp(name, "output")) {
		if (t->p->cur == 0)
			return ERR(t->rd, t->line, t->field,
				   "{{output}} is the previous step's output, and the first step has none");
		return 0;
	}
	if (!strncmp(name, "steps", 5) && (name[5] == '\0' || name[5] == '.'))
		return ref_step(t, name);
	return 0;
}

/* Compiles text and checks the steps it refers to. */
static int check_template(struct tref *t, const char *text)
{
	struct lh_template *tpl;
	struct lh_err e2;
	int rc;
	lh_err_clear(&e2);
	rc = lh_template_compile(text, &tpl, &e2);
	if (rc)
		return lh_err_at(t->rd->e, rc, t->rd->file, t->line, t->field, "%s", e2.msg);
	rc = lh_template_each_name(tpl, ref_check, t);
	lh_template_free(tpl);
	return rc;
}

/* A nonempty template string into *out (a new json string). */
static int read_template(struct tref *t, struct fy_node *v, json_t **out)
{
	char *s = NULL;
	int rc = io_spec_str(t->rd, t->line, t->field, v, &s);
	if (!rc && s)
		rc = check_template(t, s);
	if (!rc && s)
		*out = json_string(s);
	lh_free(s);
	return rc;
}

/* A list of argument templates: no shell, so each element is one argument
 * (only the program may not be empty). */
static int read_argv(const struct io_spec_rd *rd, const struct pipe *p, long line, const char *field,
		     struct fy_node *v, json_t **out)
{
	void *it = NULL;
	struct fy_node *el;
	json_t *a;
	size_t j = 0;
	int rc = 0;
	if (fy_node_is_alias(v) || !fy_node_is_sequence(v))
		return want(rd, line, field, "a list of arguments (no shell)", v);
	if (fy_node_sequence_item_count(v) == 0)
		return ERR(rd, line, field, "must not be empty: the first argument is the program");
	a = json_array();
	while (!rc && (el = fy_node_sequence_iterate(v, &it))) {
		char ef[256];
		long eline = io_spec_line(el) ? io_spec_line(el) : line;
		const char *s;
		size_t len;
		char *text;
		struct tref t = { rd, p, ef, eline, 0 };
		fieldf(ef, sizeof ef, "%s[%zu]", field, j);
		if (io_spec_null(el)) {
			rc = want(rd, eline, ef, "a string", el);
			break;
		}
		rc = io_spec_scalar(rd, eline, ef, "a string", el, &s, &len);
		if (rc)
			break;
		if (j == 0 && len == 0)
			rc = ERR(rd, eline, ef, "the program must not be empty");
		else if (memchr(s, '\0', len))
			rc = ERR(rd, eline, ef, "must not contain a NUL character");
		if (rc)
			break;
		text = lh_xstrndup(s, len);
		rc = check_template(&t, text);
		if (!rc)
			json_array_append_new(a, json_string(text));
		lh_free(text);
		j++;
	}
	if (rc)
		json_decref(a);
	else
		*out = a;
	return rc;
}

/* ---- YAML to JSON (tool parameters) ---- */

static json_t *plain_json(const char *s, size_t len)
{
	char buf[64], *end;
	long long n;
	double d;
	if (len == 0 || key_is(s, len, "~") || key_is(s, len, "null") || key_is(s, len, "Null") ||
	    key_is(s, len, "NULL"))
		return json_null();
	if (key_is(s, len, "true") || key_is(s, len, "True") || key_is(s, len, "TRUE"))
		return json_true();
	if (key_is(s, len, "false") || key_is(s, len, "False") || key_is(s, len, "FALSE"))
		return json_false();
	if (len < sizeof buf && !memchr(s, '\0', len)) {
		memcpy(buf, s, len);
		buf[len] = '\0';
		/* Not hex, inf or nan: JSON has none of them. */
		if (!strpbrk(buf, "xXiInN")) {
			errno = 0;
			n = strtoll(buf, &end, 10);
			if (end != buf && !*end && errno != ERANGE)
				return json_integer(n);
			d = strtod(buf, &end);
			if (end != buf && !*end && isfinite(d))
				return json_real(d);
		}
	}
	return json_stringn(s, len);
}

static int node_json(const struct io_spec_rd *rd, long line, const char *field, struct fy_node *v, int depth,
		     json_t **out)
{
	void *it = NULL;
	int rc = 0;
	if (depth > MAX_DEPTH)
		return ERR(rd, line, field, "nested more than %d levels deep", MAX_DEPTH);
	if (fy_node_is_alias(v))
		return ERR(rd, line, field, "aliases are not supported");
	if (fy_node_is_mapping(v)) {
		struct fy_node_pair *pr;
		json_t *o = json_object();
		while (!rc && (pr = fy_node_mapping_iterate(v, &it))) {
			const char *k;
			size_t klen;
			long kline;
			json_t *val = NULL;
			rc = entry_key(rd, line, field, pr, &k, &klen, &kline);
			if (!rc)
				rc = node_json(rd, kline, field, fy_node_pair_value(pr), depth + 1, &val);
			if (!rc && json_object_setn_new(o, k, klen, val))
				rc = ERR(rd, kline, field, "field names must be UTF-8 without NUL characters");
		}
		if (rc)
			json_decref(o);
		else
			*out = o;
		return rc;
	}
	if (fy_node_is_sequence(v)) {
		struct fy_node *el;
		json_t *a = json_array();
		while (!rc && (el = fy_node_sequence_iterate(v, &it))) {
			json_t *val = NULL;
			rc = node_json(rd, io_spec_line(el) ? io_spec_line(el) : line, field, el, depth + 1, &val);
			if (!rc)
				json_array_append_new(a, val);
		}
		if (rc)
			json_decref(a);
		else
			*out = a;
		return rc;
	}
	{
		const char *s;
		size_t len;
		rc = io_spec_scalar(rd, line, field, "a value", v, &s, &len);
		if (rc)
			return rc;
		*out = fy_node_get_style(v) == FYNS_PLAIN ? plain_json(s, len) : json_stringn(s, len);
		if (!*out)
			return ERR(rd, line, field, "must be UTF-8 without NUL characters");
	}
	return 0;
}

/* ---- sizes ---- */

static const struct {
	const char *unit;
	double mult;
} units[] = { { "B", 1 }, { "KB", 1e3 }, { "MB", 1e6 }, { "GB", 1e9 }, { "TB", 1e12 },
	      { "KiB", 1024.0 }, { "MiB", 1048576.0 }, { "GiB", 1073741824.0 }, { "TiB", 1099511627776.0 } };

/* "2GiB", "1.5 GB", "1048576": bytes into *out, or -1. */
static int parse_size(const char *s, size_t len, double *out)
{
	char buf[64], *p;
	double d;
	size_t i;
	if (len == 0 || len >= sizeof buf || memchr(s, '\0', len))
		return -1;
	memcpy(buf, s, len);
	buf[len] = '\0';
	for (p = buf; *p == ' '; p++)
		;
	if (!(*p >= '0' && *p <= '9'))
		return -1;
	d = strtod(p, &p);
	if (strpbrk(buf, "xXeE") && strcspn(buf, "xXeE") < (size_t)(p - buf))
		return -1;
	while (*p == ' ')
		p++;
	if (!*p) {
		*out = d;
		return d == floor(d) ? 0 : -1;
	}
	for (i = 0; i < sizeof units / sizeof units[0]; i++) {
		if (!strcmp(p, units[i].unit)) {
			*out = floor(d * units[i].mult);
			return 0;
		}
	}
	return -1;
}

static int read_memory(const struct io_spec_rd *rd, long line, const char *field, struct fy_node *v, json_t **out)
{
	const char *s;
	size_t len;
	double d;
	int rc = io_spec_scalar(rd, line, field, "a size", v, &s, &len);
	if (rc)
		return rc;
	if (parse_size(s, len, &d))
		return ERR(rd, line, field,
			   "expected a size: a number of bytes, or a number with B, KB, MB, GB, TB, KiB, MiB, "
			   "GiB or TiB (such as 2GiB), not \"%.*s\"", (int)(len < 64 ? len : 64), s);
	if (d < 1048576.0)
		return ERR(rd, line, field, "must be at least 1MiB");
	if (d > 1125899906842624.0)
		return ERR(rd, line, field, "must be at most 1024TiB");
	*out = json_integer((json_int_t)d);
	return 0;
}

static int read_limits(const struct io_spec_rd *rd, long line, const char *field, struct fy_node *v,
		       json_t **out)
{
	static const char *const names[] = { "memory", "cpu_seconds", "open_files" };
	json_t *got[3] = { NULL, NULL, NULL }, *o;
	void *it = NULL;
	struct fy_node_pair *pr;
	int rc = 0;
	size_t i;
	if (fy_node_is_alias(v) || !fy_node_is_mapping(v))
		return want(rd, line, field, "a mapping", v);
	while (!rc && (pr = fy_node_mapping_iterate(v, &it))) {
		struct fy_node *val = fy_node_pair_value(pr);
		const char *k;
		size_t klen;
		long kline, n;
		char sf[256];
		rc = entry_key(rd, line, field, pr, &k, &klen, &kline);
		if (rc)
			break;
		fieldf(sf, sizeof sf, "%s.%.*s", field, (int)(klen < 64 ? klen : 64), k);
		for (i = 0; i < 3 && !key_is(k, klen, names[i]); i++)
			;
		if (i == 3) {
			rc = io_spec_unknown(rd, kline, sf, "memory, cpu_seconds, open_files");
			break;
		}
		if (io_spec_null(val))
			continue;
		json_decref(got[i]);
		got[i] = NULL;
		if (i == 0)
			rc = read_memory(rd, kline, sf, val, &got[0]);
		else if (!(rc = io_spec_long(rd, kline, sf, 1, i == 1 ? CPU_MAX : 1048576, val, &n)))
			got[i] = json_integer(n);
	}
	o = json_object();
	for (i = 0; i < 3; i++)
		if (got[i])
			json_object_set_new(o, names[i], got[i]);
	if (rc || json_object_size(o) == 0)
		json_decref(o);
	else
		*out = o;
	return rc;
}

/* ---- tools ---- */

static int tool_name_ok(const char *s)
{
	size_t n = strlen(s), i;
	if (n == 0 || n > MAX_TOOL_NAME)
		return 0;
	for (i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9') ||
		      s[i] == '_' || s[i] == '-'))
			return 0;
	return 1;
}

enum { T_NAME, T_DESCRIPTION, T_PARAMETERS, T_EXEC, T_TIMEOUT, NT };
static const char *const tool_fields[NT] = { "name", "description", "parameters", "exec", "timeout" };

static int tool_field(const struct pipe *p, long line, const char *field, int f, struct fy_node *v, json_t **out)
{
	const struct io_spec_rd *rd = p->rd;
	char *s = NULL;
	double d;
	int rc;
	switch (f) {
	case T_NAME:
	case T_DESCRIPTION:
		rc = io_spec_str(rd, line, field, v, &s);
		if (!rc && f == T_NAME && !tool_name_ok(s))
			rc = ERR(rd, line, field, "expected a name of 1 to %d letters, digits, \"_\" or \"-\", not \"%.80s\"",
				 MAX_TOOL_NAME, s);
		if (!rc)
			*out = json_string(s);
		lh_free(s);
		return rc;
	case T_PARAMETERS:
		if (fy_node_is_alias(v) || !fy_node_is_mapping(v))
			return want(rd, line, field, "a mapping (a JSON schema object)", v);
		return node_json(rd, line, field, v, 0, out);
	case T_EXEC:
		return read_argv(rd, p, line, field, v, out);
	case T_TIMEOUT:
		rc = io_spec_num(rd, line, field, 0, SECS_MAX, 1, v, &d);
		if (!rc)
			*out = json_real(d);
		return rc;
	}
	return LH_EINTERNAL;
}

static int read_tool(const struct pipe *p, long def, const char *field, struct fy_node *v, json_t *names,
		     json_t **out)
{
	const struct io_spec_rd *rd = p->rd;
	json_t *got[NT] = { NULL }, *o;
	void *it = NULL;
	struct fy_node_pair *pr;
	long line = first_line(v, def, 0);
	char sf[256];
	int rc = 0, i;
	if (fy_node_is_alias(v) || !fy_node_is_mapping(v))
		return want(rd, line, field, "a mapping (a tool)", v);
	while (!rc && (pr = fy_node_mapping_iterate(v, &it))) {
		struct fy_node *val = fy_node_pair_value(pr);
		const char *k;
		size_t klen;
		long kline;
		rc = entry_key(rd, line, field, pr, &k, &klen, &kline);
		if (rc)
			break;
		fieldf(sf, sizeof sf, "%s.%.*s", field, (int)(klen < 64 ? klen : 64), k);
		for (i = 0; i < NT && !key_is(k, klen, tool_fields[i]); i++)
			;
		if (i == NT) {
			rc = io_spec_unknown(rd, kline, sf, "name, description, parameters, exec, timeout");
			break;
		}
		if (io_spec_null(val))
			continue;
		json_decref(got[i]);
		got[i] = NULL;
		rc = tool_field(p, kline, sf, i, val, &got[i]);
		if (!rc && i == T_NAME) {
			if (json_object_get(names, json_string_value(got[i])))
				rc = ERR(rd, kline, sf, "duplicate tool name \"%s\" in this step",
					 json_string_value(got[i]));
			else
				json_object_set_new(names, json_string_value(got[i]), json_true());
		}
	}
	for (i = 0; !rc && i < NT; i++) {
		if (got[i] || (i != T_NAME && i != T_EXEC))
			continue;
		fieldf(sf, sizeof sf, "%s.%s", field, tool_fields[i]);
		rc = ERR(rd, line, sf, "required field is missing%s",
			 i == T_EXEC ? " (the command that runs the tool, as a list of arguments)" : "");
	}
	if (!rc) {
		if (!got[T_PARAMETERS])
			got[T_PARAMETERS] = json_pack("{s:s,s:{}}", "type", "object", "properties");
		o = json_object();
		for (i = 0; i < NT; i++)
			if (got[i]) {
				json_object_set_new(o, tool_fields[i], got[i]);
				got[i] = NULL;
			}
		*out = o;
	}
	for (i = 0; i < NT; i++)
		json_decref(got[i]);
	return rc;
}

static int read_tools(const struct pipe *p, long line, const char *field, struct fy_node *v, json_t **out)
{
	const struct io_spec_rd *rd = p->rd;
	void *it = NULL;
	struct fy_node *el;
	json_t *a, *names;
	size_t k = 0;
	int rc = 0;
	if (fy_node_is_alias(v) || !fy_node_is_sequence(v))
		return want(rd, line, field, "a list of tools", v);
	if (fy_node_sequence_item_count(v) == 0)
		return ERR(rd, line, field, "must not be empty (leave the field out instead)");
	a = json_array();
	names = json_object();
	while (!rc && (el = fy_node_sequence_iterate(v, &it))) {
		char tf[256];
		json_t *t = NULL;
		fieldf(tf, sizeof tf, "%s[%zu]", field, k++);
		rc = read_tool(p, line, tf, el, names, &t);
		if (!rc)
			json_array_append_new(a, t);
	}
	json_decref(names);
	if (rc)
		json_decref(a);
	else
		*out = a;
	return rc;
}

/* ---- steps ---- */

enum { KL = 1, KE = 2, KA = 4 }; /* llm, exec, approve */

enum sf {
	S_ID, S_PROMPT, S_SYSTEM, S_MODEL, S_MAX_TOKENS, S_TEMPERATURE, S_STREAM, S_BASE_URL, S_API_KEY_ENV,
	S_TOOLS, S_MAX_TURNS, S_UNTIL, S_NEXT, S_MAX_CONTEXT, S_EXEC, S_STDIN, S_TIMEOUT, S_LIMITS, S_APPROVE, NSF
};

/* In the order the normalized step has its keys (and hints list them). */
static const struct {
	const char *name;
	int kinds;
} sfields[NSF] = {
	{ "id", KL | KE | KA }, { "prompt", KL }, { "system", KL }, { "model", KL }, { "max_tokens", KL },
	{ "temperature", KL }, { "stream", KL }, { "base_url", KL }, { "api_key_env", KL }, { "tools", KL },
	{ "max_turns", KL }, { "until", KL }, { "next", KL }, { "max_context_bytes", KL }, { "exec", KE },
	{ "stdin", KE }, { "timeout", KE }, { "limits", KE }, { "approve", KA },
};

static int find_sfield(const char *name, size_t len)
{
	int i;
	for (i = 0; i < NSF; i++)
		if (key_is(name, len, sfields[i].name))
			return i;
	return -1;
}

static const char *kind_name(int kind)
{
	return kind == KL ? "an llm step" : kind == KE ? "an exec step" : kind == KA ? "an approve step" : "a step";
}

static void valid_list(int kind, char *out, size_t outsz)
{
	size_t n = 0;
	int i;
	out[0] = '\0';
	for (i = 0; i < NSF && n < outsz; i++)
		if (sfields[i].kinds & kind)
			n += (size_t)snprintf(out + n, outsz - n, "%s%s", n ? ", " : "", sfields[i].name);
}

static int id_ok(const char *s)
{
	size_t n = strlen(s), i;
	if (n == 0 || n > MAX_ID || !(s[0] >= 'a' && s[0] <= 'z'))
		return 0;
	for (i = 1; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
			return 0;
	return 1;
}

/* One field of step p->cur into *out. */
static int step_field(const struct pipe *p, long line, const char *field, int f, struct fy_node *v, json_t **out)
{
	const struct io_spec_rd *rd = p->rd;
	struct tref t = { rd, p, field, line, 0 };
	char *s = NULL;
	long n;
	double d;
	int b, rc = 0;
	size_t j;
	switch (f) {
	case S_ID:
		rc = io_spec_str(rd, line, field, v, &s);
		if (!rc && !id_ok(s))
			rc = ERR(rd, line, field, "expected an id of lowercase letters, digits and \"_\", starting "
				 "with a letter, at most %d bytes, not \"%.80s\"", MAX_ID, s);
		for (j = 0; !rc && j < p->cur; j++)
			if (p->ids[j] && !strcmp(p->ids[j], s))
				rc = ERR(rd, line, field, "duplicate step id \"%s\" (steps[%zu] has it too)", s, j);
		break;
	case S_PROMPT:
	case S_SYSTEM:
	case S_STDIN:
	case S_APPROVE:
		return read_template(&t, v, out);
	case S_MODEL:
	case S_UNTIL:
	case S_NEXT:
		rc = io_spec_str(rd, line, field, v, &s);
		break;
	case S_BASE_URL:
		rc = io_spec_url(rd, line, field, v, &s);
		break;
	case S_API_KEY_ENV:
		rc = io_spec_envname(rd, line, field, v, &s);
		break;
	case S_MAX_TOKENS:
	case S_MAX_TURNS:
	case S_MAX_CONTEXT:
		rc = f == S_MAX_TOKENS ? io_spec_long(rd, line, field, 1, INT_MAX, v, &n) :
		     f == S_MAX_TURNS ? io_spec_long(rd, line, field, 1, 10000, v, &n) :
		     io_spec_long(rd, line, field, 1024, 1 << 30, v, &n);
		if (!rc)
			*out = json_integer(n);
		return rc;
	case S_TEMPERATURE:
	case S_TIMEOUT:
		rc = f == S_TEMPERATURE ? io_spec_num(rd, line, field, 0, 2, 0, v, &d) :
		     io_spec_num(rd, line, field, 0, SECS_MAX, 1, v, &d);
		if (!rc)
			*out = json_real(d);
		return rc;
	case S_STREAM:
		rc = io_spec_bool(rd, line, field, v, &b);
		if (!rc)
			*out = json_boolean(b);
		return rc;
	case S_TOOLS:
		return read_tools(p, line, field, v, out);
	case S_EXEC:
		return read_argv(rd, p, line, field, v, out);
	case S_LIMITS:
		return read_limits(rd, line, field, v, out);
	}
	if (!rc && s)
		*out = json_string(s);
	lh_free(s);
	return rc;
}

/* The step's kind from its keys: exactly one of prompt, exec, approve. */
static int step_kind(const struct pipe *p, long line, const char *prefix, struct fy_node *m, int *kind)
{
	const struct io_spec_rd *rd = p->rd;
	void *it = NULL;
	struct fy_node_pair *pr;
	const char *first = NULL, *k;
	size_t klen;
	long kline, uline = 0;
	char unknown[80] = "", valid[400], sf[256];
	int rc = 0, f;
	*kind = 0;
	while (!rc && (pr = fy_node_mapping_iterate(m, &it))) {
		rc = entry_key(rd, line, prefix, pr, &k, &klen, &kline);
		if (rc)
			return rc;
		f = find_sfield(k, klen);
		if (f < 0 && !unknown[0]) {
			snprintf(unknown, sizeof unknown, "%.*s", (int)(klen < 64 ? klen : 64), k);
			uline = kline;
		}
		if ((f != S_PROMPT && f != S_EXEC && f != S_APPROVE) || io_spec_null(fy_node_pair_value(pr)))
			continue;
		if (*kind)
			return ERR(rd, kline, prefix, "a step has one kind: set only one of \"prompt\" (llm), "
				   "\"exec\" (a command) or \"approve\" (a person's approval), not \"%s\" and \"%s\"",
				   first, sfields[f].name);
		*kind = sfields[f].kinds;
		first = sfields[f].name;
	}
	if (*kind)
		return 0;
	if (unknown[0]) {
		fieldf(sf, sizeof sf, "%s.%s", prefix, unknown);
		valid_list(KL | KE | KA, valid, sizeof valid);
		return io_spec_unknown(rd, uline, sf, valid);
	}
	return ERR(rd, line, prefix, "a step needs one of \"prompt\" (llm), \"exec\" (a command) or \"approve\" "
		   "(a person's approval)");
}

static int read_step(struct pipe *p, long def, struct fy_node *m, json_t **out)
{
	const struct io_spec_rd *rd = p->rd;
	json_t *got[NSF] = { NULL }, *o;
	long lines[NSF] = { 0 };
	void *it = NULL;
	struct fy_node_pair *pr;
	long line = first_line(m, def, 0);
	char prefix[64], sf[256], valid[400];
	int rc, kind, loop, i;
	fieldf(prefix, sizeof prefix, "steps[%zu]", p->cur);
	if (fy_node_is_alias(m) || !fy_node_is_mapping(m))
		return want(rd, line, prefix, "a mapping (a step)", m);
	rc = step_kind(p, line, prefix, m, &kind);
	while (!rc && (pr = fy_node_mapping_iterate(m, &it))) {
		struct fy_node *val = fy_node_pair_value(pr);
		const char *k;
		size_t klen;
		long kline;
		rc = entry_key(rd, line, prefix, pr, &k, &klen, &kline);
		if (rc)
			break;
		fieldf(sf, sizeof sf, "%s.%.*s", prefix, (int)(klen < 64 ? klen : 64), k);
		i = find_sfield(k, klen);
		if (i < 0 && kind == KL && key_is(k, klen, "api_key")) {
			rc = ERR(rd, kline, sf, "api keys are never read from a spec: put the key in an environment "
				 "variable and set \"api_key_env\" to its name");
			break;
		}
		if (i < 0 || !(sfields[i].kinds & kind)) {
			valid_list(kind, valid, sizeof valid);
			rc = ERR(rd, kline, sf, "unknown field for %s (valid fields: %s)", kind_name(kind), valid);
			break;
		}
		if (io_spec_null(val))
			continue;
		json_decref(got[i]);
		got[i] = NULL;
		lines[i] = kline;
		rc = step_field(p, kline, sf, i, val, &got[i]);
	}
	if (!rc && !got[S_ID]) {
		fieldf(sf, sizeof sf, "%s.id", prefix);
		rc = ERR(rd, line, sf, "required field is missing (a name for the step, such as \"summary\")");
	}
	loop = kind == KL && (got[S_TOOLS] || got[S_NEXT]);
	for (i = S_MAX_TURNS; !rc && kind == KL && !loop && i <= S_MAX_CONTEXT; i++) {
		if (i == S_NEXT || !got[i])
			continue;
		fieldf(sf, sizeof sf, "%s.%s", prefix, sfields[i].name);
		rc = ERR(rd, lines[i], sf, "only for a loop: an llm step with \"tools\" or \"next\"");
	}
	if (!rc) {
		if (loop && !got[S_MAX_TURNS])
			got[S_MAX_TURNS] = json_integer(DEFAULT_TURNS);
		if (loop && !got[S_MAX_CONTEXT])
			got[S_MAX_CONTEXT] = json_integer(DEFAULT_CONTEXT);
		if (kind == KE && !got[S_TIMEOUT])
			got[S_TIMEOUT] = json_real(DEFAULT_TIMEOUT);
		o = json_object();
		json_object_set_new(o, "id", got[S_ID]);
		got[S_ID] = NULL;
		json_object_set_new(o, "kind", json_string(loop ? "loop" : kind == KL ? "llm" : kind == KE ? "exec" :
							   "approve"));
		for (i = 1; i < NSF; i++)
			if (got[i]) {
				json_object_set_new(o, sfields[i].name, got[i]);
				got[i] = NULL;
			}
		*out = o;
	}
	for (i = 0; i < NSF; i++)
		json_decref(got[i]);
	return rc;
}

/* Every step's id as written, before the steps are checked, so that a
 * reference to a later step can be told from one to no step at all. */
static void collect_ids(struct fy_node *v, struct pipe *p)
{
	void *it = NULL;
	struct fy_node *m;
	size_t i = 0;
	p->n = (size_t)fy_node_sequence_item_count(v);
	p->ids = lh_xcalloc(p->n + 1, sizeof *p->ids);
	while ((m = fy_node_sequence_iterate(v, &it)) && i < p->n) {
		struct fy_node *id = fy_node_is_mapping(m) && !fy_node_is_alias(m) ?
			fy_node_mapping_lookup_by_string(m, "id", 2) : NULL;
		const char *s;
		size_t len;
		if (id && fy_node_is_scalar(id) && !fy_node_is_alias(id) && (s = fy_node_get_scalar(id, &len)))
			p->ids[i] = lh_xstrndup(s, len);
		i++;
	}
}

int io_spec_read_steps(const struct io_spec_rd *rd, long line, struct fy_node *v, json_t **out)
{
	struct pipe p = { rd, NULL, 0, 0 };
	void *it = NULL;
	struct fy_node *m;
	json_t *a;
	int rc = 0;
	size_t i;
	if (fy_node_is_alias(v) || !fy_node_is_sequence(v))
		return want(rd, line, "steps", "a list of steps", v);
	if (fy_node_sequence_item_count(v) == 0)
		return ERR(rd, line, "steps", "must not be empty (or use \"prompt\" for one llm call per item)");
	if (fy_node_sequence_item_count(v) > MAX_STEPS)
		return ERR(rd, line, "steps", "at most %d steps, not %d", MAX_STEPS, fy_node_sequence_item_count(v));
	collect_ids(v, &p);
	a = json_array();
	while (!rc && (m = fy_node_sequence_iterate(v, &it))) {
		json_t *st = NULL;
		rc = read_step(&p, line, m, &st);
		if (!rc)
			json_array_append_new(a, st);
		p.cur++;
	}
	for (i = 0; i < p.n; i++)
		lh_free(p.ids[i]);
	lh_free(p.ids);
	if (rc)
		json_decref(a);
	else
		*out = a;
	return rc;
}

/* ---- reduce ---- */

enum { R_PROMPT, R_SYSTEM, R_MODEL, R_MAX_TOKENS, R_TEMPERATURE, R_FAN_IN, R_OUTPUT, NR };
static const char *const reduce_fields[NR] = { "prompt", "system", "model", "max_tokens", "temperature",
					       "fan_in", "output" };

static int reduce_field(const struct io_spec_rd *rd, long line, const char *field, int f, struct fy_node *v,
			json_t **out)
{
	struct tref t = { rd, NULL, field, line, 0 };
	char *s = NULL;
	long n;
	double d;
	int rc = 0;
	switch (f) {
	case R_PROMPT:
	case R_SYSTEM:
		rc = read_template(&t, v, out);
		if (!rc && f == R_PROMPT && !t.has_outputs)
			rc = ERR(rd, line, field, "must contain {{outputs}}, where the results to merge go");
		return rc;
	case R_MODEL:
		rc = io_spec_str(rd, line, field, v, &s);
		break;
	case R_OUTPUT:
		rc = io_spec_path(rd, line, field, v, &s);
		break;
	case R_MAX_TOKENS:
	case R_FAN_IN:
		rc = f == R_FAN_IN ? io_spec_long(rd, line, field, 2, 1000, v, &n) :
		     io_spec_long(rd, line, field, 1, INT_MAX, v, &n);
		if (!rc)
			*out = json_integer(n);
		return rc;
	case R_TEMPERATURE:
		rc = io_spec_num(rd, line, field, 0, 2, 0, v, &d);
		if (!rc)
			*out = json_real(d);
		return rc;
	}
	if (!rc && s)
		*out = json_string(s);
	lh_free(s);
	return rc;
}

int io_spec_read_reduce(const struct io_spec_rd *rd, long line, struct fy_node *v, json_t **out)
{
	json_t *got[NR] = { NULL }, *o;
	void *it = NULL;
	struct fy_node_pair *pr;
	char sf[256];
	int rc = 0, i;
	if (fy_node_is_alias(v) || !fy_node_is_mapping(v))
		return want(rd, line, "reduce", "a mapping", v);
	while (!rc && (pr = fy_node_mapping_iterate(v, &it))) {
		struct fy_node *val = fy_node_pair_value(pr);
		const char *k;
		size_t klen;
		long kline;
		rc = entry_key(rd, line, "reduce", pr, &k, &klen, &kline);
		if (rc)
			break;
		fieldf(sf, sizeof sf, "reduce.%.*s", (int)(klen < 64 ? klen : 64), k);
		for (i = 0; i < NR && !key_is(k, klen, reduce_fields[i]); i++)
			;
		if (i == NR) {
			rc = io_spec_unknown(rd, kline, sf,
					     "prompt, system, model, max_tokens, temperature, fan_in, output");
			break;
		}
		if (io_spec_null(val))
			continue;
		json_decref(got[i]);
		got[i] = NULL;
		rc = reduce_field(rd, kline, sf, i, val, &got[i]);
	}
	if (!rc && !got[R_PROMPT])
		rc = ERR(rd, line, "reduce.prompt", "required field is missing (a template with {{outputs}})");
	if (!rc) {
		if (!got[R_FAN_IN])
			got[R_FAN_IN] = json_integer(DEFAULT_FAN_IN);
		o = json_object();
		for (i = 0; i < NR; i++)
			if (got[i]) {
				json_object_set_new(o, reduce_fields[i], got[i]);
				got[i] = NULL;
			}
		*out = o;
	}
	for (i = 0; i < NR; i++)
		json_decref(got[i]);
	return rc;
}

/* ---- for the callers ---- */

int lh_spec_needs_model(const struct lh_spec *s)
{
	json_t *st;
	size_t i;
	if (s->model)
		return 0;
	if (!s->steps)
		return 1;
	json_array_foreach((json_t *)s->steps, i, st) {
		const char *kind = json_string_value(json_object_get(st, "kind"));
		if (kind && (!strcmp(kind, "llm") || !strcmp(kind, "loop")) && !json_object_get(st, "model"))
			return 1;
	}
	return s->reduce && !json_object_get(s->reduce, "model");
}

int lh_spec_item_input(const struct lh_spec *s, const struct lh_record *r, struct lh_buf *out, struct lh_err *e)
{
	json_t *rec = r->json, *o;
	int rc;
	o = json_copy(rec);
	if (!json_object_get(rec, "key"))
		json_object_set_new(o, "key", json_stringn(r->key, r->key_len));
	/* A file's path as the pipeline's commands see it: they run in the
	 * spec's directory, so the path is relative to it when the file is
	 * inside, else absolute. The key stays relative to the input. */
	if (s->input_files && r->line == 0 && r->where && s->dir) {
		size_t n = strlen(s->dir);
		const char *p = r->where;
		if (!strncmp(p, s->dir, n) && (p[n] == '/' || (n && s->dir[n - 1] == '/')))
			p += n + (p[n] == '/');
		json_object_set_new(o, "path", json_string(p));
	}
	rc = io_json_dump(o, out, 0);
	json_decref(o);
	if (rc)
		return lh_err_at(e, rc, r->where, r->line, NULL, "the item's input is larger than %zu bytes", out->max);
	return 0;
}
