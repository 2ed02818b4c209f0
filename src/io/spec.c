/*
 * io layer: the job spec loader. A spec is YAML or JSON (libfyaml reads
 * both); the document tree is walked by hand against tables of known fields
 * so that every mistake (an unknown or misspelt field, a wrong type, a value
 * out of range, a missing input) is reported with its line and field before
 * anything is written.
 */
#include "io/input.h"
#include "io/io_internal.h"
#include "util/fdlimit.h"
#include "util/mem.h"
#include "util/url.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <libfyaml.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum kind {
	K_STR,      /* char *, nonempty */
	K_PATH,     /* char *, resolved against the spec's directory */
	K_URL,      /* char *, http:// or https:// */
	K_ENVNAME,  /* char *, the name of an environment variable */
	K_LONG,     /* long in [min, max] */
	K_INT,      /* int in [min, max] */
	K_NUM,      /* double in [min, max], or (min, max] when excl */
	K_BOOL,     /* int 0/1 */
	K_MAP,      /* a nested mapping of sub fields */
	K_INPUT,    /* the input: a path or a mapping, handled on its own */
	K_STEPS,    /* steps: a list, read by spec_steps.c */
	K_REDUCE    /* reduce: a mapping, read by spec_steps.c */
};

struct fdef {
	const char *name;
	enum kind kind;
	size_t off;               /* offset in struct lh_spec */
	double min, max;
	int excl;                 /* min itself is not allowed */
	const struct fdef *sub;   /* K_MAP */
};

#define OFF(f) offsetof(struct lh_spec, f)
#define TIME_LIMIT_MAX (366.0 * 86400) /* a year, as the API's time_limit */

static const struct fdef retry_fields[] = {
	{ "max_attempts", K_INT, OFF(max_attempts), 1, 1000, 0, NULL },
	{ "base", K_NUM, OFF(retry_base), 0, 86400, 0, NULL },
	{ "factor", K_NUM, OFF(retry_factor), 0, 100, 0, NULL },
	{ "cap", K_NUM, OFF(retry_cap), 0, 86400, 0, NULL },
	{ "jitter", K_NUM, OFF(retry_jitter), 0, 1, 0, NULL },
	{ NULL, 0, 0, 0, 0, 0, NULL }
};

static const struct fdef timeout_fields[] = {
	{ "connect", K_NUM, OFF(connect_timeout), 0, 604800, 1, NULL },
	{ "request", K_NUM, OFF(request_timeout), 0, 604800, 1, NULL },
	{ "first_token", K_NUM, OFF(first_token_timeout), 0, 604800, 1, NULL },
	{ "item", K_NUM, OFF(item_timeout), 0, TIME_LIMIT_MAX, 1, NULL },
	{ NULL, 0, 0, 0, 0, 0, NULL }
};

/* The order of the top fields is the order the hint lists them in. */
enum { F_INPUT = 1, F_KEY = 2, F_PROMPT = 3, F_STEPS = 4, NTOP = 20 };
static const struct fdef top_fields[NTOP + 1] = {
	{ "name", K_STR, OFF(name), 0, 0, 0, NULL },
	{ "input", K_INPUT, 0, 0, 0, 0, NULL },
	{ "key", K_STR, OFF(key_field), 0, 0, 0, NULL },
	{ "prompt", K_STR, OFF(prompt), 0, 0, 0, NULL },
	{ "steps", K_STEPS, OFF(steps), 0, 0, 0, NULL },
	{ "reduce", K_REDUCE, OFF(reduce), 0, 0, 0, NULL },
	{ "system", K_STR, OFF(system), 0, 0, 0, NULL },
	{ "model", K_STR, OFF(model), 0, 0, 0, NULL },
	{ "base_url", K_URL, OFF(base_url), 0, 0, 0, NULL },
	{ "api_key_env", K_ENVNAME, OFF(api_key_env), 0, 0, 0, NULL },
	{ "max_tokens", K_LONG, OFF(max_tokens), 1, INT_MAX, 0, NULL },
	{ "temperature", K_NUM, OFF(temperature), 0, 2, 0, NULL },
	{ "stream", K_BOOL, OFF(stream), 0, 0, 0, NULL },
	{ "concurrency", K_LONG, OFF(concurrency), 1, LH_CONCURRENCY_MAX, 0, NULL },
	{ "exec_concurrency", K_LONG, OFF(exec_concurrency), 1, 4096, 0, NULL },
	{ "retry", K_MAP, 0, 0, 0, 0, retry_fields },
	{ "timeouts", K_MAP, 0, 0, 0, 0, timeout_fields },
	{ "time_limit", K_NUM, OFF(time_limit), 0, TIME_LIMIT_MAX, 1, NULL },
	{ "output", K_PATH, OFF(output), 0, 0, 0, NULL },
	{ "errors", K_PATH, OFF(errors), 0, 0, 0, NULL },
	{ NULL, 0, 0, 0, 0, 0, NULL }
};

struct ctx {
	const char *file;     /* the spec's absolute path, for errors */
	char *dir;            /* its directory */
	struct lh_spec *s;
	struct lh_err *e;
	long lines[NTOP];     /* line of each top field, 0 when absent */
	char *in_key;         /* input.key, when the input is a mapping */
	long in_key_line;
};

/* ---- nodes ---- */

/* 1-based line of a scalar node, 0 when it has none (mappings and lists
 * carry no token; their key's line is used instead). */
static long node_line(struct fy_node *n)
{
	struct fy_token *t;
	const struct fy_mark *m;
	if (!n || !fy_node_is_scalar(n) || fy_node_is_alias(n))
		return 0;
	t = fy_node_get_scalar_token(n);
	m = t ? fy_token_start_mark(t) : NULL;
	return m ? m->line + 1 : 0;
}

static int is_plain(struct fy_node *n)
{
	return fy_node_get_style(n) == FYNS_PLAIN;
}

/* YAML's null: a missing value, "~", "null" or an empty plain scalar. */
static int is_null(struct fy_node *n)
{
	size_t len;
	const char *s;
	if (!n)
		return 1;
	if (!fy_node_is_scalar(n) || fy_node_is_alias(n) || !is_plain(n))
		return 0;
	s = fy_node_get_scalar(n, &len);
	return len == 0 || (len == 1 && s[0] == '~') ||
	       (len == 4 && (!memcmp(s, "null", 4) || !memcmp(s, "Null", 4) || !memcmp(s, "NULL", 4)));
}

/* What a node is, for "expected X, not Y" messages. Plain scalars are
 * named by what YAML (or JSON) would take them for. */
static const char *node_type_name(struct fy_node *n)
{
	char buf[64], *end;
	const char *s;
	size_t len;
	if (is_null(n))
		return "null";
	if (fy_node_is_mapping(n))
		return "a mapping";
	if (fy_node_is_sequence(n))
		return "a list";
	if (!fy_node_is_scalar(n) || fy_node_is_alias(n) || !is_plain(n))
		return "a string";
	s = fy_node_get_scalar(n, &len);
	if (!s || len >= sizeof buf)
		return "a string";
	memcpy(buf, s, len);
	buf[len] = '\0';
	if (!strcmp(buf, "true") || !strcmp(buf, "false") || !strcmp(buf, "True") || !strcmp(buf, "False") ||
	    !strcmp(buf, "TRUE") || !strcmp(buf, "FALSE"))
		return "a boolean";
	(void)strtod(buf, &end);
	return end != buf && !*end ? "a number" : "a string";
}

/* ---- scalar values ---- */

static int bad(struct ctx *c, long line, const char *field, const char *what, struct fy_node *v)
{
	return lh_err_at(c->e, LH_EINPUT, c->file, line, field, "expected %s, not %s", what,
			 node_type_name(v));
}

/* The scalar text of v; errors for aliases, mappings and lists. */
static int scalar(struct ctx *c, long line, const char *field, const char *what, struct fy_node *v,
		  const char **s, size_t *len)
{
	if (fy_node_is_alias(v))
		return lh_err_at(c->e, LH_EINPUT, c->file, line, field, "aliases are not supported");
	if (!fy_node_is_scalar(v))
		return bad(c, line, field, what, v);
	*s = fy_node_get_scalar(v, len);
	if (!*s) {
		*s = "";
		*len = 0;
	}
	return 0;
}

/* A nonempty string without NUL bytes; *out (owned by the spec) is set,
 * or left alone when v is null. */
static int read_str(struct ctx *c, long line, const char *field, struct fy_node *v, char **out)
{
	const char *s;
	size_t len;
	int rc;
	if (is_null(v))
		return 0;
	rc = scalar(c, line, field, "a string", v, &s, &len);
	if (rc)
		return rc;
	if (len == 0)
		return lh_err_at(c->e, LH_EINPUT, c->file, line, field,
				 "must not be empty (leave the field out instead)");
	if (memchr(s, '\0', len))
		return lh_err_at(c->e, LH_EINPUT, c->file, line, field, "must not contain a NUL character");
	lh_free(*out);
	*out = lh_xstrndup(s, len);
	return 0;
}

/* Numbers must be plain scalars: a quoted "5" is a string, in YAML as in JSON. */
static int plain_text(struct ctx *c, long line, const char *field, const char *what, struct fy_node *v,
		      char *buf, size_t bufsz)
{
	const char *s;
	size_t len;
	int rc = scalar(c, line, field, what, v, &s, &len);
	if (rc)
		return rc;
	if (!is_plain(v) || len >= bufsz)
		return bad(c, line, field, what, v);
	memcpy(buf, s, len);
	buf[len] = '\0';
	return 0;
}

static int range_error(struct ctx *c, long line, const char *field, const struct fdef *f, double d)
{
	if (d < f->min || (f->excl && d <= f->min))
		return lh_err_at(c->e, LH_EINPUT, c->file, line, field, f->excl ? "must be greater than %g" :
				 "must be at least %g", f->min);
	if (d > f->max)
		return lh_err_at(c->e, LH_EINPUT, c->file, line, field, "must be at most %g", f->max);
	return 0;
}

static int read_long(struct ctx *c, long line, const char *field, const struct fdef *f, struct fy_node *v,
		     long *out)
{
	char buf[64], *end;
	long long n;
	int rc = plain_text(c, line, field, "an integer", v, buf, sizeof buf);
	if (rc)
		return rc;
	errno = 0;
	n = strtoll(buf, &end, 10);
	if (end == buf || *end || errno == ERANGE)
		return lh_err_at(c->e, LH_EINPUT, c->file, line, field, "expected an integer, not \"%s\"",
				 buf);
	rc = range_error(c, line, field, f, (double)n);
	if (!rc)
		*out = (long)n;
	return rc;
}

static int read_int(struct ctx *c, long line, const char *field, const struct fdef *f, struct fy_node *v,
		    int *out)
{
	long n;
	int rc = read_long(c, line, field, f, v, &n);
	if (!rc)
		*out = (int)n; /* the field's range fits an int */
	return rc;
}

static int read_num(struct ctx *c, long line, const char *field, const struct fdef *f, struct fy_node *v,
		    double *out)
{
	char buf[64], *end;
	double d;
	int rc = plain_text(c, line, field, "a number", v, buf, sizeof buf);
	if (rc)
		return rc;
	d = strtod(buf, &end);
	/* strtod also takes "inf", "nan" and hex floats, which JSON has not. */
	if (end == buf || *end || !isfinite(d) || strpbrk(buf, "xX"))
		return lh_err_at(c->e, LH_EINPUT, c->file, line, field, "expected a number, not \"%s\"", buf);
	rc = range_error(c, line, field, f, d);
	if (!rc)
		*out = d;
	return rc;
}

static int read_bool(struct ctx *c, long line, const char *field, struct fy_node *v, int *out)
{
	char buf[8];
	int rc = plain_text(c, line, field, "true or false", v, buf, sizeof buf);
	if (rc)
		return rc;
	if (!strcmp(buf, "true") || !strcmp(buf, "True") || !strcmp(buf, "TRUE"))
		*out = 1;
	else if (!strcmp(buf, "false") || !strcmp(buf, "False") || !strcmp(buf, "FALSE"))
		*out = 0;
	else
		return lh_err_at(c->e, LH_EINPUT, c->file, line, field, "expected true or false, not \"%s\"",
				 buf);
	return 0;
}

/* ---- strings with a shape ---- */

static int read_url(struct ctx *c, long line, const char *field, struct fy_node *v, char **out)
{
	struct lh_err why;
	int rc = read_str(c, line, field, v, out);
	if (rc || !*out)
		return rc;
	if (lh_url_check_base(*out, &why) != 0)
		return lh_err_at(c->e, LH_EINPUT, c->file, line, field, "%s", why.msg);
	return 0;
}

/* The value is stored in the job's record, so it must be a name and can
 * never be the key itself pasted in by mistake. */
static int read_envname(struct ctx *c, long line, const char *field, struct fy_node *v, char **out)
{
	const char *p;
	int rc = read_str(c, line, field, v, out);
	if (rc || !*out)
		return rc;
	for (p = *out; *p; p++) {
		if (!(*p == '_' || (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
		      (p > *out && *p >= '0' && *p <= '9')) || p - *out >= 128) {
			lh_free(*out);
			*out = NULL;
			return lh_err_at(c->e, LH_EINPUT, c->file, line, field,
					 "expected the name of an environment variable "
					 "(such as OPENAI_API_KEY), not the key itself");
		}
	}
	return 0;
}

static int read_path(struct ctx *c, long line, const char *field, struct fy_node *v, char **out)
{
	char *raw = NULL;
	int rc = read_str(c, line, field, v, &raw);
	if (rc || !raw)
		return rc;
	lh_free(*out);
	*out = io_path_join(c->dir, raw);
	lh_free(raw);
	return 0;
}

/* ---- the input ---- */

static int has_glob(const char *s)
{
	return strpbrk(s, "*?[") != NULL;
}

/* Resolves one input path and checks that it exists with the right type.
 * want: 'r' a records file, 'f' a directory or glob, 0 either (decided by
 * what the path is). */
static int set_input(struct ctx *c, long line, const char *field, const char *raw, int want)
{
	char *abs = io_path_join(c->dir, raw);
	struct stat st;
	int rc = 0;
	/* Only ever called once per spec: the input field appears once. */
	if (want != 'r' && has_glob(raw)) {
		c->s->input_files = abs;
		return 0;
	}
	if (stat(abs, &st) != 0) {
		if (errno == ENOENT)
			rc = lh_err_at(c->e, LH_EINPUT, c->file, line, field, "no such file or directory: %s",
				       abs);
		else
			rc = lh_err_at(c->e, LH_EINPUT, c->file, line, field, "could not read %s: %s", abs,
				       strerror(errno));
	} else if (S_ISDIR(st.st_mode) && want != 'r') {
		c->s->input_files = abs;
	} else if (S_ISREG(st.st_mode) && want != 'f') {
		c->s->input_records = abs;
	} else {
		rc = lh_err_at(c->e, LH_EINPUT, c->file, line, field, "expected %s: %s", want == 'r' ?
			       "a file of JSON records" : want == 'f' ? "a directory or a glob pattern" :
			       "a file, a directory or a glob pattern", abs);
	}
	if (rc)
		lh_free(abs);
	return rc;
}

static int unknown(struct ctx *c, long line, const char *field, const char *valid)
{
	return lh_err_at(c->e, LH_EINPUT, c->file, line, field, "unknown field (valid fields: %s)", valid);
}

/* The input as a mapping: {records: PATH, key: FIELD} or {files: PATH}. */
struct input_map {
	char *path;
	int which;            /* 'r' records, 'f' files, 0 not yet seen */
	long path_line;
};

static int input_field(struct ctx *c, long line, const char *name, struct fy_node *v, struct input_map *m)
{
	char field[64];
	snprintf(field, sizeof field, "input.%.50s", name);
	if (!strcmp(name, "key")) {
		c->in_key_line = line;
		return read_str(c, line, field, v, &c->in_key);
	}
	if (strcmp(name, "records") && strcmp(name, "files"))
		return unknown(c, line, field, "records, files, key");
	if (m->which)
		return lh_err_at(c->e, LH_EINPUT, c->file, line, field,
				 "set either \"records\" or \"files\", not both");
	if (is_null(v))
		return bad(c, line, field, "a path", v);
	m->which = name[0];
	m->path_line = line;
	return read_str(c, line, field, v, &m->path);
}

static int read_input_map(struct ctx *c, long line, struct fy_node *v)
{
	void *it = NULL;
	struct fy_node_pair *p;
	struct input_map m = { NULL, 0, 0 };
	int rc = 0;
	while (!rc && (p = fy_node_mapping_iterate(v, &it))) {
		struct fy_node *k = fy_node_pair_key(p);
		long kline = node_line(k);
		const char *name;
		size_t len;
		char buf[64];
		rc = scalar(c, kline, "input", "a field name", k, &name, &len);
		if (rc)
			break;
		snprintf(buf, sizeof buf, "%.*s", (int)(len < 50 ? len : 50), name);
		rc = input_field(c, kline, buf, fy_node_pair_value(p), &m);
	}
	if (!rc && !m.which)
		rc = lh_err_at(c->e, LH_EINPUT, c->file, line, "input", "expected \"records\" or \"files\"");
	if (!rc)
		rc = set_input(c, m.path_line, m.which == 'r' ? "input.records" : "input.files", m.path,
			       m.which);
	lh_free(m.path);
	return rc;
}

static int read_input(struct ctx *c, long line, struct fy_node *v)
{
	char *raw = NULL;
	int rc;
	if (is_null(v))
		return 0;
	if (fy_node_is_mapping(v))
		return read_input_map(c, line, v);
	if (fy_node_is_sequence(v))
		return bad(c, line, "input", "a path or a mapping", v);
	rc = read_str(c, line, "input", v, &raw);
	if (!rc && raw)
		rc = set_input(c, line, "input", raw, 0);
	lh_free(raw);
	return rc;
}

/* ---- mappings ---- */

static int walk_map(struct ctx *c, struct fy_node *map, const struct fdef *fields, const char *prefix);

static int read_field(struct ctx *c, long line, const char *field, const struct fdef *f, struct fy_node *v)
{
	char *base = (char *)c->s;
	switch (f->kind) {
	case K_STR: return read_str(c, line, field, v, (char **)(base + f->off));
	case K_PATH: return read_path(c, line, field, v, (char **)(base + f->off));
	case K_URL: return read_url(c, line, field, v, (char **)(base + f->off));
	case K_ENVNAME: return read_envname(c, line, field, v, (char **)(base + f->off));
	case K_LONG: return is_null(v) ? 0 : read_long(c, line, field, f, v, (long *)(base + f->off));
	case K_INT: return is_null(v) ? 0 : read_int(c, line, field, f, v, (int *)(base + f->off));
	case K_NUM: return is_null(v) ? 0 : read_num(c, line, field, f, v, (double *)(base + f->off));
	case K_BOOL: return is_null(v) ? 0 : read_bool(c, line, field, v, (int *)(base + f->off));
	case K_MAP:
		if (is_null(v))
			return 0;
		if (fy_node_is_alias(v) || !fy_node_is_mapping(v))
			return bad(c, line, field, "a mapping", v);
		return walk_map(c, v, f->sub, field);
	case K_INPUT: return read_input(c, line, v);
	case K_STEPS:
	case K_REDUCE: {
		struct io_spec_rd rd = { c->file, c->dir, c->e };
		json_t **out = (json_t **)(base + f->off);
		json_decref(*out);
		*out = NULL;
		if (is_null(v))
			return 0;
		return f->kind == K_STEPS ? io_spec_read_steps(&rd, line, v, out) :
					    io_spec_read_reduce(&rd, line, v, out);
	}
	}
	return LH_EINTERNAL;
}

static void field_list(const struct fdef *fields, char *out, size_t outsz)
{
	size_t n = 0, i;
	out[0] = '\0';
	for (i = 0; fields[i].name && n < outsz; i++)
		n += (size_t)snprintf(out + n, outsz - n, "%s%s", i ? ", " : "", fields[i].name);
}

static int one_field(struct ctx *c, struct fy_node_pair *p, const struct fdef *fields, const char *prefix)
{
	struct fy_node *k = fy_node_pair_key(p);
	long line = node_line(k);
	char field[128], valid[512];
	const char *name;
	size_t len, i;
	int rc = scalar(c, line, prefix[0] ? prefix : NULL, "a field name", k, &name, &len);
	if (rc)
		return rc;
	snprintf(field, sizeof field, "%s%s%.*s", prefix, prefix[0] ? "." : "", (int)(len < 100 ? len : 100),
		 name);
	for (i = 0; fields[i].name; i++)
		if (strlen(fields[i].name) == len && !memcmp(fields[i].name, name, len))
			break;
	if (fields[i].name) {
		if (fields == top_fields)
			c->lines[i] = line;
		return read_field(c, line, field, &fields[i], fy_node_pair_value(p));
	}
	if (fields == top_fields && len == 7 && !memcmp(name, "api_key", 7))
		return lh_err_at(c->e, LH_EINPUT, c->file, line, field,
				 "api keys are never read from a spec: put the key in an "
				 "environment variable and set \"api_key_env\" to its name");
	field_list(fields, valid, sizeof valid);
	return unknown(c, line, field, valid);
}

static int walk_map(struct ctx *c, struct fy_node *map, const struct fdef *fields, const char *prefix)
{
	void *it = NULL;
	struct fy_node_pair *p;
	int rc = 0;
	while (!rc && (p = fy_node_mapping_iterate(map, &it)))
		rc = one_field(c, p, fields, prefix);
	return rc;
}

/* ---- checks across fields ---- */

static char *default_name(const char *path)
{
	const char *base = strrchr(path, '/'), *dot;
	base = base ? base + 1 : path;
	dot = strrchr(base, '.');
	return lh_xstrndup(base, dot && dot > base ? (size_t)(dot - base) : strlen(base));
}

static int check_key(struct ctx *c)
{
	struct lh_spec *s = c->s;
	const char *field = "key";
	long line = c->lines[F_KEY];
	if (c->in_key && s->key_field)
		return lh_err_at(c->e, LH_EINPUT, c->file, line, field,
				 "set either \"key\" or \"input.key\", not both");
	if (c->in_key) {
		s->key_field = c->in_key;
		c->in_key = NULL;
		field = "input.key";
		line = c->in_key_line;
	}
	if (s->key_field && s->input_files)
		return lh_err_at(c->e, LH_EINPUT, c->file, line, field,
				 "applies only to an input of JSON records (files are keyed by their path)");
	if (!s->key_field && s->input_records)
		s->key_field = lh_xstrdup("id");
	return 0;
}

static int finish_spec(struct ctx *c)
{
	int rc = check_key(c);
	if (!rc && !c->s->name)
		c->s->name = default_name(c->s->path);
	return rc;
}

static int check_spec(struct ctx *c)
{
	struct lh_spec *s = c->s;
	struct lh_template *t;
	int rc;
	if (!s->input_records && !s->input_files)
		return lh_err_at(c->e, LH_EINPUT, c->file, c->lines[F_INPUT], "input",
				 "required field is missing");
	if (s->prompt && s->steps)
		return lh_err_at(c->e, LH_EINPUT, c->file, c->lines[F_PROMPT], "prompt",
				 "set either \"prompt\" (one llm call per item) or \"steps\" (a pipeline), not both");
	if (s->steps)
		return finish_spec(c);
	if (!s->prompt)
		return lh_err_at(c->e, LH_EINPUT, c->file, c->lines[F_PROMPT], "prompt",
				 "required field is missing (or \"steps\" for a pipeline)");
	rc = lh_template_compile(s->prompt, &t, c->e);
	if (rc) {
		char msg[sizeof c->e->msg];
		memcpy(msg, c->e->msg, sizeof msg);
		return lh_err_at(c->e, rc, c->file, c->lines[F_PROMPT], "prompt", "%s", msg);
	}
	lh_template_free(t);
	if (s->reduce) {
		/* One prompt is one llm step named "main": with a reduce, the
		 * spec runs as that one-step pipeline (its outputs are reduced). */
		json_t *steps = json_array();
		json_array_append_new(steps, json_pack("{s:s,s:s,s:s}", "id", "main", "kind", "llm", "prompt", s->prompt));
		s->steps = steps;
		lh_free(s->prompt);
		s->prompt = NULL;
	}
	return finish_spec(c);
}

/* ---- loading ---- */

static struct lh_spec *spec_new(void)
{
	struct lh_spec *s = lh_xcalloc(1, sizeof *s);
	s->max_tokens = -1;
	s->temperature = -1;
	s->concurrency = -1;
	s->max_attempts = -1;
	s->retry_base = s->retry_factor = s->retry_cap = s->retry_jitter = -1;
	s->connect_timeout = s->request_timeout = s->first_token_timeout = -1;
	s->exec_concurrency = -1;
	s->item_timeout = s->time_limit = -1;
	return s;
}

void lh_spec_free(struct lh_spec *s)
{
	if (!s)
		return;
	lh_free(s->path);
	lh_free(s->dir);
	lh_free(s->name);
	lh_free(s->input_records);
	lh_free(s->input_files);
	lh_free(s->key_field);
	lh_free(s->prompt);
	lh_free(s->system);
	lh_free(s->model);
	lh_free(s->base_url);
	lh_free(s->api_key_env);
	lh_free(s->output);
	lh_free(s->errors);
	json_decref(s->steps);
	json_decref(s->reduce);
	lh_free(s);
}

/* Reads the whole file, refusing more than LH_MAX_SPEC bytes. */
static int read_all(const char *path, struct lh_buf *b, struct lh_err *e)
{
	char chunk[8192];
	int fd = open(path, O_RDONLY | O_CLOEXEC), rc = 0;
	if (fd < 0)
		return lh_err_at(e, LH_EIO, path, 0, NULL, "could not open: %s", strerror(errno));
	for (;;) {
		ssize_t n = read(fd, chunk, sizeof chunk);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = lh_err_at(e, LH_EIO, path, 0, NULL, "could not read: %s", strerror(errno));
			break;
		}
		if (n == 0)
			break;
		if (lh_buf_append(b, chunk, (size_t)n)) {
			rc = lh_err_at(e, LH_ETOOBIG, path, 0, NULL, "spec is larger than %u bytes",
				       LH_MAX_SPEC);
			break;
		}
	}
	close(fd);
	return rc;
}

static int ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);
	return n >= m && strcmp(s + n - m, suffix) == 0;
}

static int has_errors(struct fy_diag *diag)
{
	void *it = NULL;
	struct fy_diag_error *de;
	while ((de = fy_diag_errors_iterate(diag, &it)))
		if (de->type >= FYET_ERROR)
			return 1;
	return 0;
}

static int parse_error(struct fy_diag *diag, const char *path, int json, struct lh_err *e)
{
	void *it = NULL;
	struct fy_diag_error *de;
	while ((de = fy_diag_errors_iterate(diag, &it)))
		if (de->type >= FYET_ERROR)
			return lh_err_at(e, LH_EINPUT, path, de->line, NULL, "invalid %s: %s at column %d",
					 json ? "JSON" : "YAML", de->msg, de->column);
	return lh_err_at(e, LH_EINPUT, path, 0, NULL, "invalid %s", json ? "JSON" : "YAML");
}

/* libfyaml stops quietly at a NUL byte and lets other control characters
 * through, so the text is checked first: UTF-8, no control characters
 * but tab, newline and carriage return. */
static int check_text(struct ctx *c, const char *text, size_t len)
{
	size_t i, bad = len, line = 1, col;
	if (!io_utf8_valid(text, len, &bad))
		bad = bad < len ? bad : len;
	for (i = 0; i < bad; i++) {
		unsigned char ch = (unsigned char)text[i];
		if ((ch < 0x20 && ch != '\t' && ch != '\n' && ch != '\r') || ch == 0x7f) {
			bad = i;
			break;
		}
	}
	if (bad == len)
		return 0;
	for (i = 0, col = 1; i < bad; i++, col++) {
		if (text[i] == '\n') {
			line++;
			col = 0;
		}
	}
	if (io_utf8_valid(text + bad, 1, NULL))
		return lh_err_at(c->e, LH_EINPUT, c->file, (long)line, NULL,
				 "control character 0x%02x at column %zu", (unsigned char)text[bad], col);
	return lh_err_at(c->e, LH_EINPUT, c->file, (long)line, NULL, "not UTF-8 text (bad byte at column %zu)",
			 col);
}

/* Parses text and walks its single document into c->s. */
static int parse_spec(struct ctx *c, const char *text, size_t len)
{
	struct fy_diag_cfg dcfg;
	struct fy_parse_cfg pcfg;
	struct fy_diag *diag;
	struct fy_parser *fyp = NULL;
	struct fy_document *doc = NULL, *more;
	int json = ends_with(c->file, ".json"), rc;
	fy_diag_cfg_default(&dcfg);
	dcfg.fp = NULL;
	diag = fy_diag_create(&dcfg);
	if (!diag)
		return lh_err_set(c->e, LH_ENOMEM, "could not create the YAML parser");
	fy_diag_set_collect_errors(diag, true);
	memset(&pcfg, 0, sizeof pcfg);
	/* JSON mode for .json files: stricter than reading JSON as YAML flow
	 * (no trailing commas, no unquoted strings). */
	pcfg.flags = FYPCF_QUIET | (json ? FYPCF_JSON_FORCE : FYPCF_JSON_NONE);
	pcfg.diag = diag;
	fyp = fy_parser_create(&pcfg);
	if (!fyp || fy_parser_set_string(fyp, text, len) != 0) {
		rc = lh_err_set(c->e, LH_ENOMEM, "could not create the YAML parser");
		goto out;
	}
	doc = fy_parse_load_document(fyp);
	if (!doc) {
		rc = fy_parser_get_stream_error(fyp) || has_errors(diag) ? parse_error(diag, c->file, json, c->e) :
			lh_err_at(c->e, LH_EINPUT, c->file, 0, NULL, "empty spec");
		goto out;
	}
	more = fy_parse_load_document(fyp);
	if (more || fy_parser_get_stream_error(fyp) || has_errors(diag)) {
		rc = more ? lh_err_at(c->e, LH_EINPUT, c->file, 0, NULL,
				      "expected one document, found more") :
			parse_error(diag, c->file, json, c->e);
		fy_parse_document_destroy(fyp, more);
		goto out;
	}
	if (!fy_document_root(doc))
		rc = lh_err_at(c->e, LH_EINPUT, c->file, 0, NULL, "empty spec");
	else if (!fy_node_is_mapping(fy_document_root(doc)) || fy_node_is_alias(fy_document_root(doc)))
		rc = lh_err_at(c->e, LH_EINPUT, c->file, 1, NULL,
			       "expected a mapping of settings at the top level");
	else
		rc = walk_map(c, fy_document_root(doc), top_fields, "");
out:
	if (doc)
		fy_parse_document_destroy(fyp, doc);
	if (fyp)
		fy_parser_destroy(fyp);
	fy_diag_destroy(diag);
	return rc;
}

/* Validates text (the spec named file, relative paths against dir) into
 * c->s; shared by the file and the memory loaders. Takes c->s: it is freed
 * on error and stored in *out on success. */
static int load_text(struct ctx *c, const char *text, size_t len, struct lh_spec **out)
{
	int rc = check_text(c, text, len);
	if (!rc)
		rc = parse_spec(c, text, len);
	if (!rc)
		rc = check_spec(c);
	if (!rc && c->dir)
		c->s->dir = lh_xstrdup(c->dir);
	lh_free(c->dir);
	lh_free(c->in_key);
	if (rc) {
		lh_spec_free(c->s);
		return rc;
	}
	*out = c->s;
	return 0;
}

int lh_spec_load(const char *path, struct lh_spec **out, struct lh_err *e)
{
	struct ctx c;
	struct lh_buf text;
	char *abs = realpath(path, NULL), *slash;
	int rc;
	if (!abs)
		return lh_err_at(e, LH_EIO, path, 0, NULL, "could not open: %s", strerror(errno));
	memset(&c, 0, sizeof c);
	c.s = spec_new();
	c.s->path = lh_xstrdup(abs);
	free(abs); /* realpath's memory comes from malloc, not lh_malloc */
	c.file = c.s->path;
	c.e = e;
	c.dir = lh_xstrdup(c.s->path);
	slash = strrchr(c.dir, '/');
	slash[slash == c.dir ? 1 : 0] = '\0';
	lh_buf_init(&text, LH_MAX_SPEC);
	rc = read_all(c.file, &text, e);
	if (rc) {
		lh_buf_release(&text);
		lh_free(c.dir);
		lh_spec_free(c.s);
		return rc;
	}
	rc = load_text(&c, text.data ? text.data : "", text.len, out);
	lh_buf_release(&text);
	return rc;
}

int lh_spec_load_buf(const char *buf, size_t len, const char *name, const char *base_dir, struct lh_spec **out,
		     struct lh_err *e)
{
	struct ctx c;
	if (len > LH_MAX_SPEC)
		return lh_err_at(e, LH_ETOOBIG, name, 0, NULL, "spec is larger than %u bytes", LH_MAX_SPEC);
	memset(&c, 0, sizeof c);
	c.s = spec_new();
	c.s->path = lh_xstrdup(name);
	c.file = c.s->path;
	c.e = e;
	c.dir = lh_xstrdup(base_dir);
	return load_text(&c, len ? buf : "", len, out);
}

int io_spec_has_field(const char *name)
{
	for (size_t i = 0; top_fields[i].name; i++)
		if (!strcmp(top_fields[i].name, name))
			return 1;
	return 0;
}

/* ---- the readers, for spec_steps.c ---- */

static struct ctx rd_ctx(const struct io_spec_rd *rd)
{
	struct ctx c;
	memset(&c, 0, sizeof c);
	c.file = rd->file;
	c.dir = (char *)rd->dir; /* only read */
	c.e = rd->e;
	return c;
}

long io_spec_line(struct fy_node *n)
{
	return node_line(n);
}

int io_spec_null(struct fy_node *n)
{
	return is_null(n);
}

int io_spec_bad(const struct io_spec_rd *rd, long line, const char *field, const char *what, struct fy_node *v)
{
	struct ctx c = rd_ctx(rd);
	return bad(&c, line, field, what, v);
}

int io_spec_unknown(const struct io_spec_rd *rd, long line, const char *field, const char *valid)
{
	struct ctx c = rd_ctx(rd);
	return unknown(&c, line, field, valid);
}

int io_spec_scalar(const struct io_spec_rd *rd, long line, const char *field, const char *what, struct fy_node *v,
		   const char **s, size_t *len)
{
	struct ctx c = rd_ctx(rd);
	return scalar(&c, line, field, what, v, s, len);
}

int io_spec_str(const struct io_spec_rd *rd, long line, const char *field, struct fy_node *v, char **out)
{
	struct ctx c = rd_ctx(rd);
	return read_str(&c, line, field, v, out);
}

int io_spec_path(const struct io_spec_rd *rd, long line, const char *field, struct fy_node *v, char **out)
{
	struct ctx c = rd_ctx(rd);
	return read_path(&c, line, field, v, out);
}

int io_spec_url(const struct io_spec_rd *rd, long line, const char *field, struct fy_node *v, char **out)
{
	struct ctx c = rd_ctx(rd);
	return read_url(&c, line, field, v, out);
}

int io_spec_envname(const struct io_spec_rd *rd, long line, const char *field, struct fy_node *v, char **out)
{
	struct ctx c = rd_ctx(rd);
	return read_envname(&c, line, field, v, out);
}

int io_spec_long(const struct io_spec_rd *rd, long line, const char *field, double min, double max,
		 struct fy_node *v, long *out)
{
	struct ctx c = rd_ctx(rd);
	struct fdef f = { field, K_LONG, 0, min, max, 0, NULL };
	return read_long(&c, line, field, &f, v, out);
}

int io_spec_num(const struct io_spec_rd *rd, long line, const char *field, double min, double max, int excl,
		struct fy_node *v, double *out)
{
	struct ctx c = rd_ctx(rd);
	struct fdef f = { field, K_NUM, 0, min, max, excl, NULL };
	return read_num(&c, line, field, &f, v, out);
}

int io_spec_bool(const struct io_spec_rd *rd, long line, const char *field, struct fy_node *v, int *out)
{
	struct ctx c = rd_ctx(rd);
	return read_bool(&c, line, field, v, out);
}

/* The input's base name without a trailing slash, for the job's name. */
static char *input_name(const char *input)
{
	size_t n = strlen(input);
	const char *base;
	while (n > 1 && input[n - 1] == '/')
		n--;
	base = input + n;
	while (base > input && base[-1] != '/')
		base--;
	return lh_xstrndup(base, (size_t)(input + n - base));
}

int lh_spec_for_records(const char *input, const char *prompt, const char *system, const char *model,
			struct lh_spec **out, struct lh_err *e)
{
	struct ctx c;
	struct lh_template *t;
	char *cwd = getcwd(NULL, 0);
	int rc;
	if (!cwd)
		return lh_err_set(e, LH_EIO, "could not read the current directory: %s", strerror(errno));
	memset(&c, 0, sizeof c);
	c.s = spec_new();
	c.e = e;
	c.dir = lh_xstrdup(cwd);
	free(cwd); /* getcwd's memory comes from malloc */
	rc = lh_template_compile(prompt, &t, e);
	if (rc) {
		char msg[sizeof e->msg];
		memcpy(msg, e->msg, sizeof msg);
		rc = lh_err_set(e, LH_EUSAGE, "--prompt: %s", msg);
	} else {
		lh_template_free(t);
		rc = set_input(&c, 0, NULL, input, 0);
	}
	if (!rc) {
		struct lh_spec *s = c.s;
		s->path = lh_xstrdup(s->input_records ? s->input_records : s->input_files);
		s->name = input_name(input);
		s->prompt = lh_xstrdup(prompt);
		s->system = system ? lh_xstrdup(system) : NULL;
		s->model = model ? lh_xstrdup(model) : NULL;
		if (s->input_records)
			s->key_field = lh_xstrdup("id");
		*out = s;
	} else {
		lh_spec_free(c.s);
	}
	lh_free(c.dir);
	return rc;
}

/* ---- settings as JSON ---- */

static void set_str(json_t *o, const char *k, const char *v)
{
	if (v)
		json_object_set_new(o, k, json_string(v));
}

static void set_num(json_t *o, const char *k, double v)
{
	if (v >= 0)
		json_object_set_new(o, k, json_real(v));
}

static json_t *input_json(const struct lh_spec *s)
{
	json_t *in = json_object();
	if (s->input_records) {
		set_str(in, "records", s->input_records);
		set_str(in, "key", s->key_field);
	} else {
		set_str(in, "files", s->input_files);
	}
	return in;
}

static json_t *sub_json(const struct lh_spec *s, int retry)
{
	json_t *o = json_object();
	if (retry) {
		if (s->max_attempts >= 0)
			json_object_set_new(o, "max_attempts", json_integer(s->max_attempts));
		set_num(o, "base", s->retry_base);
		set_num(o, "factor", s->retry_factor);
		set_num(o, "cap", s->retry_cap);
		set_num(o, "jitter", s->retry_jitter);
	} else {
		set_num(o, "connect", s->connect_timeout);
		set_num(o, "request", s->request_timeout);
		set_num(o, "first_token", s->first_token_timeout);
		set_num(o, "item", s->item_timeout);
	}
	return o;
}

char *lh_spec_to_json(const struct lh_spec *s)
{
	json_t *o = json_object(), *sub;
	struct lh_buf b;
	set_str(o, "path", s->path);
	set_str(o, "base_dir", s->dir);
	set_str(o, "name", s->name);
	json_object_set_new(o, "input", input_json(s));
	set_str(o, "prompt", s->prompt);
	set_str(o, "system", s->system);
	set_str(o, "model", s->model);
	set_str(o, "base_url", s->base_url);
	set_str(o, "api_key_env", s->api_key_env);
	if (s->max_tokens >= 0)
		json_object_set_new(o, "max_tokens", json_integer(s->max_tokens));
	set_num(o, "temperature", s->temperature);
	json_object_set_new(o, "stream", json_boolean(s->stream));
	if (s->concurrency >= 0)
		json_object_set_new(o, "concurrency", json_integer(s->concurrency));
	sub = sub_json(s, 1);
	json_object_set_new(o, "retry", sub);
	sub = sub_json(s, 0);
	json_object_set_new(o, "timeouts", sub);
	set_str(o, "output", s->output);
	set_str(o, "errors", s->errors);
	if (s->steps)
		json_object_set(o, "steps", s->steps);
	if (s->reduce)
		json_object_set(o, "reduce", s->reduce);
	if (s->exec_concurrency >= 0)
		json_object_set_new(o, "exec_concurrency", json_integer(s->exec_concurrency));
	set_num(o, "time_limit", s->time_limit);
	lh_buf_init(&b, 0);
	/* No cap, so the dump cannot fail. */
	if (io_json_dump(o, &b, 0))
		lh_buf_clear(&b);
	json_decref(o);
	return lh_buf_steal(&b);
}
