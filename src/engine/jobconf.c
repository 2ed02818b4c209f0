/*
 * engine layer: a job's stored settings to engine settings, and the checked
 * changes to them (see jobconf.h).
 */
#include "engine/jobconf.h"
#include "llm/llm.h"
#include "util/buf.h"
#include "util/fdlimit.h"
#include "util/mem.h"
#include "util/url.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MODEL_MAX 256
#define URL_MAX 2048
#define SECS_MAX (7 * 86400.0)

/* ---- load ---- */

static double num(json_t *o, const char *k, double def)
{
	json_t *v = json_object_get(o, k);
	return json_is_number(v) ? json_number_value(v) : def;
}

/* The settings of an object s (not NULL) into jc: what the engine needs
 * besides the server, the key and the model. */
static void read_settings(json_t *s, struct lh_job_conf *jc)
{
	json_t *r;
	lh_retry_policy_default(&jc->retry);
	jc->stream = json_is_true(json_object_get(s, "stream"));
	if (json_is_integer(json_object_get(s, "concurrency")))
		jc->concurrency = (long)json_integer_value(json_object_get(s, "concurrency"));
	r = json_object_get(s, "retry");
	jc->retry.max_attempts = (int)num(r, "max_attempts", jc->retry.max_attempts);
	jc->retry.max_attempts = (int)num(s, "max_attempts", jc->retry.max_attempts);
	jc->retry.base = num(r, "base", jc->retry.base);
	jc->retry.factor = num(r, "factor", jc->retry.factor);
	jc->retry.cap = num(r, "cap", jc->retry.cap);
	jc->retry.jitter = num(r, "jitter", jc->retry.jitter);
	r = json_object_get(s, "timeouts");
	jc->connect_timeout = num(r, "connect", 0);
	jc->request_timeout = num(r, "request", 0);
	jc->first_token_timeout = num(r, "first_token", 0);
	jc->item_timeout = num(r, "item", 0);
}

void lh_jobconf_settings(const char *settings_json, struct lh_job_conf *jc)
{
	json_t *s = json_loads(settings_json ? settings_json : "{}", 0, NULL);
	memset(jc, 0, sizeof *jc);
	read_settings(json_is_object(s) ? s : NULL, jc);
	json_decref(s);
}

int lh_jobconf_load(const struct lh_job_rec *j, const struct lh_jobconf_defaults *d, struct lh_jobconf *c,
		    struct lh_err *e)
{
	json_t *s = json_loads(j->spec ? j->spec : "{}", 0, NULL), *ov;
	struct lh_job_conf *jc = &c->conf;
	const char *base = NULL, *key_env = NULL, *model = NULL;
	struct lh_buf u;
	int rc = 0;

	memset(c, 0, sizeof *c);
	if (!json_is_object(s)) {
		json_decref(s);
		s = json_object();
	}
	base = json_string_value(json_object_get(s, "base_url"));
	key_env = json_string_value(json_object_get(s, "api_key_env"));
	model = json_string_value(json_object_get(s, "model"));
	read_settings(s, jc);
	ov = json_object_get(s, "overrides");
	if (json_is_object(ov) && json_object_size(ov)) {
		char *t = json_dumps(ov, JSON_COMPACT | JSON_REAL_PRECISION(17));
		c->overrides = lh_xstrdup(t);
		free(t);
		jc->overrides = c->overrides;
	}

	lh_buf_init(&u, 0);
	if (lh_llm_resolve_url(base ? base : d->base_url, "/v1/chat/completions", &u) != 0) {
		rc = lh_err_at(e, LH_EUSAGE, NULL, 0, "base_url", "could not build the request url from \"%s\"",
			       base ? base : d->base_url);
		lh_buf_release(&u);
	} else {
		c->url = lh_buf_steal(&u);
	}
	jc->url = c->url;
	jc->api_key = key_env ? getenv(key_env) : d->api_key;
	if (jc->api_key && !*jc->api_key)
		jc->api_key = NULL;
	jc->model_prefix = j->kind && !strcmp(j->kind, "spec");
	c->model = model ? lh_xstrdup(model) : NULL;
	jc->model = c->model;
	jc->time_limit = j->time_limit;
	json_decref(s);
	return rc;
}

void lh_jobconf_release(struct lh_jobconf *c)
{
	lh_free(c->url);
	lh_free(c->model);
	lh_free(c->overrides);
	memset(c, 0, sizeof *c);
}

/* ---- patch ---- */

const char *const lh_jobconf_fields[] = { "model", "base_url", "api_key_env", "concurrency", "max_tokens",
					   "temperature", "timeouts", "retry", "max_attempts", "priority",
					   "connect_timeout", "request_timeout", "first_token_timeout", NULL };

/* The flat names of the timeouts (as `set` and `run` spell the flags) and
 * where they live in the settings. */
static const char *timeout_key(const char *flat)
{
	if (!strcmp(flat, "connect_timeout"))
		return "connect";
	if (!strcmp(flat, "request_timeout"))
		return "request";
	if (!strcmp(flat, "first_token_timeout"))
		return "first_token";
	return NULL;
}

static int bad(struct lh_err *e, const char *field, const char *msg)
{
	return lh_err_at(e, LH_EINPUT, NULL, 0, field, "%s", msg);
}

/* A checked integer in [lo, hi]. */
static int get_int(json_t *v, const char *field, long long lo, long long hi, long long *out, struct lh_err *e)
{
	char msg[96];
	if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi) {
		snprintf(msg, sizeof msg, "expected an integer from %lld to %lld", lo, hi);
		return bad(e, field, msg);
	}
	*out = json_integer_value(v);
	return 0;
}

/* A checked number in [lo, hi] (lo excluded when open_lo). */
static int get_num(json_t *v, const char *field, double lo, double hi, int open_lo, struct lh_err *e)
{
	char msg[96];
	double x = json_is_number(v) ? json_number_value(v) : NAN;
	if (!isfinite(x) || x < lo || (open_lo && x == lo) || x > hi) {
		snprintf(msg, sizeof msg, "expected a number %s %g and at most %g", open_lo ? ">" : ">=", lo, hi);
		return bad(e, field, msg);
	}
	return 0;
}

static int check_base_url(const char *u, struct lh_err *e)
{
	struct lh_err why;
	if (lh_url_check_base(u, &why) != 0)
		return bad(e, "base_url", why.msg);
	return 0;
}

static int check_env_name(const char *s, struct lh_err *e)
{
	char msg[256];
	size_t n = strlen(s);
	if (n == 0 || n > 128 || !(isalpha((unsigned char)s[0]) || s[0] == '_'))
		return bad(e, "api_key_env", "expected the name of an environment variable");
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '_')
			return bad(e, "api_key_env", "expected the name of an environment variable");
	if (!getenv(s) || !*getenv(s)) {
		snprintf(msg, sizeof msg, "the environment of this process has no %s (set it where the daemon starts)",
			 s);
		return bad(e, "api_key_env", msg);
	}
	return 0;
}

static int check_string(json_t *v, const char *field, size_t max, struct lh_err *e)
{
	char msg[64];
	if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > max) {
		snprintf(msg, sizeof msg, "expected a string of 1 to %zu bytes", max);
		return bad(e, field, msg);
	}
	return 0;
}

/* Checks a sub-object's fields against names and ranges. */
struct sub_field {
	const char *name;
	double lo, hi;
	int integer, open_lo;
};

static int check_sub(json_t *v, const char *field, const struct sub_field *f, struct lh_err *e)
{
	const char *k;
	json_t *x;
	char name[96];
	if (!json_is_object(v))
		return bad(e, field, "expected a mapping");
	json_object_foreach(v, k, x) {
		const struct sub_field *p;
		long long ll;
		int rc;
		for (p = f; p->name && strcmp(p->name, k); p++)
			;
		snprintf(name, sizeof name, "%s.%s", field, k);
		if (!p->name)
			return bad(e, name, "unknown field");
		rc = p->integer ? get_int(x, name, (long long)p->lo, (long long)p->hi, &ll, e) :
				  get_num(x, name, p->lo, p->hi, p->open_lo, e);
		if (rc)
			return rc;
	}
	return 0;
}

static const struct sub_field retry_fields[] = {
	{ "max_attempts", 1, 1000, 1, 0 }, { "base", 0, 86400, 0, 0 }, { "factor", 0, 100, 0, 0 },
	{ "cap", 0, 86400, 0, 0 },         { "jitter", 0, 1, 0, 0 },   { NULL, 0, 0, 0, 0 },
};
static const struct sub_field timeout_fields[] = {
	{ "connect", 0, SECS_MAX, 0, 1 },
	{ "request", 0, SECS_MAX, 0, 1 },
	{ "first_token", 0, SECS_MAX, 0, 1 },
	{ NULL, 0, 0, 0, 0 },
};

/* Checks every field of the patch; nothing is applied until all pass. */
static int check_patch(json_t *p, struct lh_err *e)
{
	const char *k;
	json_t *v;
	long long ll;
	int rc = 0;
	if (!json_is_object(p) || json_object_size(p) == 0)
		return bad(e, NULL, "expected a JSON object with at least one of: model, base_url, api_key_env, "
				    "concurrency, max_tokens, temperature, timeouts, retry, max_attempts, priority");
	json_object_foreach(p, k, v) {
		size_t i;
		for (i = 0; lh_jobconf_fields[i] && strcmp(lh_jobconf_fields[i], k); i++)
			;
		if (!lh_jobconf_fields[i])
			return lh_err_at(e, LH_EINPUT, NULL, 0, k,
					 "unknown field, or one that cannot change after submission (these can: model, "
					 "base_url, api_key_env, concurrency, max_tokens, temperature, timeouts, retry, "
					 "max_attempts, priority)");
		if (!strcmp(k, "model"))
			rc = check_string(v, k, MODEL_MAX, e);
		else if (!strcmp(k, "base_url"))
			rc = check_string(v, k, URL_MAX, e) ? e->code : check_base_url(json_string_value(v), e);
		else if (!strcmp(k, "api_key_env"))
			rc = check_string(v, k, 128, e) ? e->code : check_env_name(json_string_value(v), e);
		else if (!strcmp(k, "concurrency"))
			rc = get_int(v, k, 1, LH_CONCURRENCY_MAX, &ll, e);
		else if (!strcmp(k, "max_tokens"))
			rc = json_is_null(v) ? 0 : get_int(v, k, 1, 2147483647LL, &ll, e);
		else if (!strcmp(k, "temperature"))
			rc = json_is_null(v) ? 0 : get_num(v, k, 0, 2, 0, e);
		else if (!strcmp(k, "timeouts"))
			rc = check_sub(v, k, timeout_fields, e);
		else if (!strcmp(k, "retry"))
			rc = check_sub(v, k, retry_fields, e);
		else if (!strcmp(k, "max_attempts"))
			rc = get_int(v, k, 1, 1000, &ll, e);
		else if (timeout_key(k))
			rc = get_num(v, k, 0, SECS_MAX, 1, e);
		else if (!strcmp(k, "priority"))
			rc = get_int(v, k, -1000000, 1000000, &ll, e);
		if (rc)
			return rc;
	}
	return 0;
}

/* Sets field k of object o's sub-object sub to v (borrowed), making sub. */
static void merge_sub(json_t *o, const char *sub, json_t *v)
{
	json_t *t = json_object_get(o, sub);
	if (!json_is_object(t)) {
		t = json_object();
		json_object_set_new(o, sub, t);
	}
	json_object_update(t, v);
}

int lh_jobconf_patch(const char *spec_json, json_t *patch, char **out, int *priority, int *has_priority,
		     struct lh_err *e)
{
	json_t *s, *v;
	const char *k;
	int changed = 0, rc;
	char *t;

	*out = NULL;
	*has_priority = 0;
	rc = check_patch(patch, e);
	if (rc)
		return rc;
	s = json_loads(spec_json ? spec_json : "{}", 0, NULL);
	if (!json_is_object(s)) {
		json_decref(s);
		s = json_object();
	}
	json_object_foreach(patch, k, v) {
		if (!strcmp(k, "priority")) {
			*priority = (int)json_integer_value(v);
			*has_priority = 1;
			continue;
		}
		changed = 1;
		if (!strcmp(k, "timeouts") || !strcmp(k, "retry")) {
			merge_sub(s, k, v);
		} else if (timeout_key(k)) {
			json_t *m = json_pack("{s:O}", timeout_key(k), v);
			merge_sub(s, "timeouts", m);
			json_decref(m);
		} else if (!strcmp(k, "max_attempts")) {
			/* One place for it: retry.max_attempts wins over a top-level one. */
			json_t *m = json_pack("{s:O}", "max_attempts", v);
			json_object_del(s, "max_attempts");
			merge_sub(s, "retry", m);
			json_decref(m);
		} else if (!strcmp(k, "max_tokens") || !strcmp(k, "temperature")) {
			/* The stored bodies carry the old value: the engine sets the new
			 * one into each body as it goes (null: remove it). */
			json_t *ov = json_object_get(s, "overrides");
			if (!json_is_object(ov)) {
				ov = json_object();
				json_object_set_new(s, "overrides", ov);
			}
			json_object_set(ov, k, v);
			if (json_is_null(v))
				json_object_del(s, k);
			else
				json_object_set(s, k, v);
		} else {
			json_object_set(s, k, v);
		}
	}
	if (changed) {
		t = json_dumps(s, JSON_COMPACT | JSON_REAL_PRECISION(17));
		*out = t ? lh_xstrdup(t) : NULL;
		free(t);
		if (!*out)
			rc = lh_err_set(e, LH_ENOMEM, "could not write the job's settings");
	}
	json_decref(s);
	return rc;
}
