/*
 * api layer: the job routes (list, get, pause, resume, cancel, retry,
 * priority, delete) and the job's JSON shape. Every change runs in one
 * transaction on a pooled store handle: begin, read the job, check and
 * write (state changes through lh_job_transition), commit; only then is the
 * engine told (hooks.notify) and the event streams woken.
 */
#include "api/api_internal.h"
#include "engine/jobconf.h"
#include "engine/jobstate.h"
#include "engine/report.h"
#include "util/log.h"
#include "util/mem.h"
#include "util/time.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* ---- JSON ---- */

json_t *api_json_text(const char *text)
{
	json_t *j;
	if (!text)
		return json_null();
	j = json_loads(text, JSON_DECODE_ANY, NULL);
	return j ? j : json_string(text);
}

json_t *api_json_time(double wall)
{
	char iso[40];
	if (wall <= 0)
		return json_null();
	lh_time_iso(wall, iso, sizeof iso);
	return json_string(iso);
}

static double round1(double d)
{
	return round(d * 10) / 10;
}

/* Seconds as an integer when whole (3600, not 3600.0). */
static json_t *json_secs(double s)
{
	if (s <= 0)
		return json_null();
	if (s == floor(s) && s < 9e15)
		return json_integer((json_int_t)s);
	return json_real(s);
}

static json_t *job_json_core(const struct lh_job_rec *j, const int64_t *counts)
{
	struct lh_progress_view pv;
	int64_t remaining = j->n_total - j->n_done - j->n_dead;
	int64_t pending, running = 0, retrying = 0, waiting = 0;
	json_t *eta;
	if (remaining < 0)
		remaining = 0;
	/* "running" is requests in flight, as the engine last wrote them: the
	 * engine leases items ahead of sending them, and those are waiting. */
	if (counts) {
		running = j->in_flight < counts[LH_ITEM_LEASED] ? j->in_flight : counts[LH_ITEM_LEASED];
		pending = counts[LH_ITEM_PENDING] + counts[LH_ITEM_LEASED] - running;
		retrying = counts[LH_ITEM_RETRY];
		waiting = counts[LH_ITEM_WAITING];
	} else {
		running = lh_job_state_of(j->state) == LH_JOB_RUNNING && j->in_flight < remaining ? j->in_flight : 0;
		pending = remaining - running;
	}
	memset(&pv, 0, sizeof pv);
	pv.total = j->n_total;
	pv.done = j->n_done;
	pv.dead = j->n_dead;
	if (lh_job_state_final(lh_job_state_of(j->state)) || remaining == 0)
		eta = json_real(0);
	else if (j->rate_items > 0)
		eta = json_real(round1((double)remaining / j->rate_items));
	else
		eta = json_null();
	return json_pack("{s:I,s:o,s:s?,s:s,s:i,s:o,s:o,s:o,"
			 "s:{s:I,s:I,s:I,s:I,s:I,s:I,s:I},s:f,s:f,s:f,s:o,s:{s:I,s:I},s:o,s:o}",
			 "id", (json_int_t)j->id, "name", api_json_str(j->name), "kind", j->kind, "state", j->state,
			 "priority", j->priority, "created_at", api_json_time(j->created_at),
			 "started_at", api_json_time(j->started_at), "finished_at", api_json_time(j->finished_at),
			 "counts", "total", (json_int_t)j->n_total, "pending", (json_int_t)pending,
			 "running", (json_int_t)running, "retrying", (json_int_t)retrying, "waiting", (json_int_t)waiting,
			 "succeeded", (json_int_t)j->n_done, "failed", (json_int_t)j->n_dead,
			 "percent", round1(lh_progress_percent(&pv)), "items_per_sec", j->rate_items,
			 "tokens_per_sec", j->rate_tokens, "eta_sec", eta,
			 "usage", "prompt_tokens", (json_int_t)j->prompt_tokens,
			 "completion_tokens", (json_int_t)j->completion_tokens,
			 "time_limit_sec", json_secs(j->time_limit), "last_error", api_json_text(j->last_error));
}

json_t *api_job_json(const struct lh_job_rec *j, const int64_t *counts)
{
	json_t *o = job_json_core(j, counts);
	if (!o)
		return NULL;
	json_object_set_new(o, "pause_reason",
			    j->pause_reason[0] && lh_job_state_of(j->state) == LH_JOB_PAUSED ?
				    json_string(j->pause_reason) :
				    json_null());
	json_object_set_new(o, "waiting", api_json_str(j->waiting));
	/* Running time, summed over runs; it stops while the job is paused. */
	json_object_set_new(o, "elapsed_sec", json_real(round1(j->run_secs)));
	return o;
}

/* ---- helpers ---- */

/* A pipeline job's progress by step: {"steps": [{"id", "kind", "done"}]},
 * items past each step. One pass over the job's items: for the detail
 * view only, not for lists. */
static int add_steps(struct lh_store *st, const struct lh_job_rec *j, json_t *o, struct lh_err *e)
{
	json_t *spec = j->spec ? json_loads(j->spec, 0, NULL) : NULL, *steps = json_object_get(spec, "steps"), *a, *d;
	size_t n = json_array_size(steps), i;
	int64_t *done;
	int rc;
	if (!n) {
		json_decref(spec);
		return 0;
	}
	done = lh_xcalloc(n, sizeof *done);
	rc = lh_store_item_steps_done(st, j->id, done, n, NULL, e);
	if (!rc) {
		a = json_array();
		json_array_foreach(steps, i, d)
			json_array_append_new(a, json_pack("{s:O?,s:O?,s:I}", "id", json_object_get(d, "id"), "kind",
							   json_object_get(d, "kind"), "done", (json_int_t)done[i]));
		json_object_set_new(o, "steps", a);
	}
	if (!rc && json_is_object(json_object_get(spec, "reduce"))) {
		char *text = NULL, url[64];
		size_t len;
		int has = lh_report_reduce_text(st, j->id, &text, &len, e);
		lh_free(text);
		if (has != 0 && has != LH_ENOTFOUND)
			rc = has;
		lh_err_clear(e);
		snprintf(url, sizeof url, "/v1/jobs/%lld/reduce", (long long)j->id);
		if (!rc)
			json_object_set_new(o, "reduce", json_pack("{s:b,s:s}", "done", has == 0, "url", url));
	}
	lh_free(done);
	json_decref(spec);
	return rc;
}

/* Reads job r->job with its item counts as JSON. */
static int job_json_full(struct lh_store *st, int64_t id, json_t **out, struct lh_err *e)
{
	struct lh_job_rec j;
	int64_t counts[LH_ITEM_NSTATES];
	int rc = lh_store_job_get(st, id, &j, e);
	if (rc)
		return rc;
	rc = lh_store_item_counts(st, id, counts, e);
	if (!rc)
		*out = api_job_json(&j, counts);
	if (!rc && *out)
		rc = add_steps(st, &j, *out, e);
	lh_job_rec_release(&j);
	return rc;
}

/* Parses the request body as a JSON object, or answers 400. An empty body
 * gives *out = NULL when allow_empty. */
int api_body_object(struct api_req *r, int allow_empty, json_t **out, enum MHD_Result *ret)
{
	json_error_t jerr;
	const char *p = r->body.data ? r->body.data : "";
	size_t n = r->body.len, i;
	*out = NULL;
	for (i = 0; i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\r' || p[i] == '\n'); i++)
		;
	if (i == n) {
		if (allow_empty)
			return 0;
		*ret = api_send_error(r, MHD_HTTP_BAD_REQUEST, "bad_input", NULL, "expected a JSON object body");
		return -1;
	}
	*out = json_loadb(p, n, JSON_REJECT_DUPLICATES, &jerr);
	if (!*out) {
		*ret = api_send_error(r, MHD_HTTP_BAD_REQUEST, "bad_input", json_pack("{s:i}", "line", jerr.line),
				      "invalid JSON: %s", jerr.text);
		return -1;
	}
	if (!json_is_object(*out)) {
		json_decref(*out);
		*out = NULL;
		*ret = api_send_error(r, MHD_HTTP_BAD_REQUEST, "bad_input", NULL, "expected a JSON object body");
		return -1;
	}
	return 0;
}

/* Answers 400 for the first field of o not in known (NULL-terminated). */
int api_only_fields(struct api_req *r, json_t *o, const char *const *known, enum MHD_Result *ret)
{
	const char *k;
	json_t *v;
	json_object_foreach(o, k, v) {
		size_t i;
		for (i = 0; known[i] && strcmp(known[i], k); i++)
			;
		if (!known[i]) {
			*ret = api_send_error(r, MHD_HTTP_BAD_REQUEST, "bad_input", json_pack("{s:s}", "field", k),
					      "unknown field \"%s\"", k);
			return -1;
		}
	}
	return 0;
}

/* ---- GET /v1/jobs ---- */

struct list_ctx {
	json_t *jobs;
	size_t limit, n;
	int64_t last_id;
	int more;
};

static int list_one(const struct lh_job_rec *j, void *arg)
{
	struct list_ctx *l = arg;
	if (l->n == l->limit) {
		l->more = 1;
		return 1;
	}
	json_array_append_new(l->jobs, api_job_json(j, NULL));
	l->n++;
	l->last_id = j->id;
	return 0;
}

enum MHD_Result api_jobs_list(struct api_req *r)
{
	struct lh_job_filter f;
	struct list_ctx l;
	struct lh_store *st;
	struct lh_err e;
	enum MHD_Result ret = MHD_NO;
	const char *state = api_query(r, "state"), *cursor = api_query(r, "cursor");
	int64_t limit, after = 0;
	char next[24];
	int rc;
	if (api_query_int(r, "limit", 1, API_PAGE_MAX, API_PAGE_DEFAULT, &limit, &ret))
		return ret;
	if (state && lh_job_state_of(state) == LH_JOB_UNKNOWN)
		return api_send_error(r, MHD_HTTP_BAD_REQUEST, "bad_input", json_pack("{s:s}", "field", "state"),
				      "unknown state \"%s\" (queued, running, paused, completed, failed, "
				      "cancelled, timed_out)", state);
	if (cursor && (api_parse_i64(cursor, &after) || after < 1))
		return api_send_error(r, MHD_HTTP_BAD_REQUEST, "bad_input", json_pack("{s:s}", "field", "cursor"),
				      "bad cursor (use next_cursor from the previous page)");
	memset(&f, 0, sizeof f);
	f.state = state;
	f.order = LH_JOBS_NEWEST;
	f.after_id = after;
	f.limit = (size_t)limit + 1;
	memset(&l, 0, sizeof l);
	l.jobs = json_array();
	l.limit = (size_t)limit;
	st = api_store_get(r->api, &e);
	rc = st ? lh_store_jobs_each(st, &f, list_one, &l, &e) : e.code;
	api_store_put(r->api, st);
	if (rc < 0) {
		json_decref(l.jobs);
		return api_send_err(r, rc, &e);
	}
	snprintf(next, sizeof next, "%lld", (long long)l.last_id);
	return api_send_json(r, MHD_HTTP_OK, json_pack("{s:o,s:s?}", "jobs", l.jobs, "next_cursor",
						      l.more ? next : NULL));
}

/* ---- GET /v1/jobs/{id} ---- */

enum MHD_Result api_job_get(struct api_req *r)
{
	struct lh_err e;
	json_t *j = NULL;
	struct lh_store *st = api_store_get(r->api, &e);
	int rc = st ? job_json_full(st, r->job, &j, &e) : e.code;
	api_store_put(r->api, st);
	if (rc)
		return api_send_err(r, rc, &e);
	return api_send_json(r, MHD_HTTP_OK, j);
}

/* ---- changes ---- */

/* What a change tells the caller. */
struct chg {
	enum lh_job_news cmd;  /* the news for the engine */
	int notify;           /* 1: tell the engine once committed */
	enum MHD_Result ret;  /* when the change answered on its own */
};

/* One change in one transaction. fn runs with the job read (inside the
 * transaction) and returns 0 to commit, a negative code to roll back and
 * answer it, or 1 to roll back when it has answered itself (409, 400). */
typedef int (*change_fn)(struct api_req *r, struct lh_store *st, struct lh_job_rec *j, void *arg,
			 struct chg *c, struct lh_err *e);
/* Builds the answer after the commit, on the same handle; NULL is a 500. */
typedef json_t *(*answer_fn)(struct lh_store *st, struct api_req *r, void *arg);

static enum MHD_Result change(struct api_req *r, change_fn fn, void *arg, unsigned status, answer_fn answer)
{
	struct chg c = { LH_CMD_SUBMITTED, 0, MHD_NO };
	struct lh_job_rec j;
	struct lh_err e;
	struct lh_store *st = api_store_get(r->api, &e);
	json_t *out = NULL;
	int rc;
	memset(&j, 0, sizeof j);
	if (!st)
		return api_send_err(r, e.code, &e);
	rc = lh_store_begin(st, &e);
	if (!rc) {
		rc = lh_store_job_get(st, r->job, &j, &e);
		if (!rc)
			rc = fn(r, st, &j, arg, &c, &e);
		if (!rc)
			rc = lh_store_commit(st, &e);
		if (rc)
			lh_store_rollback(st);
	}
	lh_job_rec_release(&j);
	if (!rc && answer)
		out = answer(st, r, arg);
	api_store_put(r->api, st);
	if (rc == 1)
		return c.ret;
	if (rc)
		return api_send_err(r, rc, &e);
	if (c.notify)
		api_notify(r->api, r->job, c.cmd);
	if (status == MHD_HTTP_NO_CONTENT) {
		struct MHD_Response *resp = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
		enum MHD_Result ret;
		if (!resp)
			return MHD_NO;
		r->answered = 1;
		ret = MHD_queue_response(r->c, status, resp);
		MHD_destroy_response(resp);
		return ret;
	}
	if (!out)
		return api_send_error(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal", NULL,
				      "the change was made but the job could not be read back");
	return api_send_json(r, status, out);
}

/* The job as GET shows it. The change is committed by now, so a failure
 * here is logged and answered 500 without undoing anything. */
static json_t *answer_job(struct lh_store *st, struct api_req *r, void *arg)
{
	struct lh_err e;
	json_t *j = NULL;
	if (job_json_full(st, r->job, &j, &e)) {
		lh_warn("api: could not read job %lld back: %s", (long long)r->job, e.msg);
		return NULL;
	}
	return j;
}

static int state_error(struct api_req *r, const char *from, enum lh_job_state to, struct chg *c)
{
	c->ret = api_send_state_error(r, from, lh_job_state_name(to));
	return 1;
}

/* Runs the transition; LH_ESTATE is answered 409 with {from, to}. */
static int transition(struct api_req *r, struct lh_store *st, struct lh_job_rec *j, enum lh_job_state to,
		      const char *data, struct chg *c, struct lh_err *e)
{
	char from[sizeof j->state];
	int rc;
	memcpy(from, j->state, sizeof from);
	rc = lh_job_transition(st, j, to, data, e);
	if (rc == LH_ESTATE)
		return state_error(r, from, to, c);
	return rc;
}

/* ---- pause, resume, cancel ---- */

static int do_control(struct api_req *r, struct lh_store *st, struct lh_job_rec *j, void *arg, struct chg *c,
		      struct lh_err *e)
{
	const char *now;
	c->notify = 1;
	switch (r->route) {
	case R_JOB_PAUSE:
		now = api_query(r, "now");
		c->cmd = now && (!strcmp(now, "1") || !strcmp(now, "true")) ? LH_CMD_PAUSED_NOW : LH_CMD_PAUSED;
		/* paused -> paused is no transition: 409 like any other. */
		return transition(r, st, j, LH_JOB_PAUSED, NULL, c, e);
	case R_JOB_RESUME:
		c->cmd = LH_CMD_RESUMED;
		if (lh_job_state_of(j->state) != LH_JOB_PAUSED)
			return state_error(r, j->state, LH_JOB_RUNNING, c);
		/* A job paused before it ever ran goes back in line. */
		return transition(r, st, j, j->started_at > 0 ? LH_JOB_RUNNING : LH_JOB_QUEUED, NULL, c, e);
	default:
		c->cmd = LH_CMD_CANCELLED;
		return transition(r, st, j, LH_JOB_CANCELLED, NULL, c, e);
	}
}

enum MHD_Result api_job_control(struct api_req *r)
{
	return change(r, do_control, NULL, MHD_HTTP_OK, answer_job);
}

/* ---- retry ---- */

struct retry {
	const char **keys;   /* borrowed from the body */
	size_t nkeys;        /* 0 = every dead item */
	int none;            /* the body listed no keys: retry nothing */
	int64_t n;           /* items retried */
};

static int do_retry(struct api_req *r, struct lh_store *st, struct lh_job_rec *j, void *arg, struct chg *c,
		    struct lh_err *e)
{
	struct retry *t = arg;
	enum lh_job_state now = lh_job_state_of(j->state);
	int rc;
	/* cancelled and timed_out stay final (docs/states.md): 409 {from, to}. */
	if (now == LH_JOB_CANCELLED || now == LH_JOB_TIMED_OUT)
		return state_error(r, j->state, LH_JOB_QUEUED, c);
	if (t->none)
		return 0;
	rc = lh_job_retry_failed(st, j, t->keys, t->nkeys, &t->n, e);
	if (!rc && t->n) {
		c->cmd = LH_CMD_RETRIED;
		c->notify = 1;
	}
	return rc;
}

static json_t *answer_retry(struct lh_store *st, struct api_req *r, void *arg)
{
	struct retry *t = arg;
	json_t *j = answer_job(st, r, NULL);
	return j ? json_pack("{s:I,s:o}", "retried", (json_int_t)t->n, "job", j) : NULL;
}

/* Fills t from the body {"keys": [...]}; 0, or -1 having answered 400. */
static int retry_keys(struct api_req *r, json_t *body, struct retry *t, enum MHD_Result *ret)
{
	static const char *const known[] = { "keys", NULL };
	json_t *keys;
	size_t i;
	if (!body)
		return 0;
	if (api_only_fields(r, body, known, ret))
		return -1;
	keys = json_object_get(body, "keys");
	if (!keys)
		return 0;
	if (!json_is_array(keys)) {
		*ret = api_send_error(r, MHD_HTTP_BAD_REQUEST, "bad_input", json_pack("{s:s}", "field", "keys"),
				      "expected a list of item keys");
		return -1;
	}
	if (json_array_size(keys) > API_MAX_KEYS) {
		*ret = api_send_error(r, MHD_HTTP_BAD_REQUEST, "bad_input", json_pack("{s:s}", "field", "keys"),
				      "at most %d keys at a time", API_MAX_KEYS);
		return -1;
	}
	t->nkeys = json_array_size(keys);
	t->none = t->nkeys == 0;
	if (t->none)
		return 0;
	t->keys = lh_xcalloc(t->nkeys, sizeof *t->keys);
	for (i = 0; i < t->nkeys; i++) {
		json_t *k = json_array_get(keys, i);
		if (!json_is_string(k)) {
			*ret = api_send_error(r, MHD_HTTP_BAD_REQUEST, "bad_input", json_pack("{s:s}", "field", "keys"),
					      "keys[%zu]: expected a string", i);
			return -1;
		}
		t->keys[i] = json_string_value(k);
	}
	return 0;
}

enum MHD_Result api_job_retry(struct api_req *r)
{
	struct retry t;
	enum MHD_Result ret = MHD_NO;
	json_t *body;
	memset(&t, 0, sizeof t);
	if (api_body_object(r, 1, &body, &ret))
		return ret;
	if (!retry_keys(r, body, &t, &ret))
		ret = change(r, do_retry, &t, MHD_HTTP_OK, answer_retry);
	lh_free(t.keys);
	json_decref(body);
	return ret;
}

/* ---- PATCH ---- */

struct patch {
	json_t *body;      /* borrowed */
	char *settings;    /* the new settings JSON (new), or NULL when only the priority changes */
	int priority, has_priority;
};

/* The settings that leave the items alone change in any state but a final
 * one; a running job restarts with them once its requests in flight end. */
static int do_patch(struct api_req *r, struct lh_store *st, struct lh_job_rec *j, void *arg, struct chg *c,
		    struct lh_err *e)
{
	struct patch *p = arg;
	json_t *d;
	char *data;
	int rc;
	rc = lh_jobconf_patch(j->spec, p->body, &p->settings, &p->priority, &p->has_priority, e);
	if (rc == LH_EINPUT) {
		c->ret = api_send_error(r, MHD_HTTP_BAD_REQUEST, "bad_input",
					e->field[0] ? json_pack("{s:s}", "field", e->field) : NULL, "%s", e->msg);
		return 1;
	}
	if (rc)
		return rc;
	if (p->settings && lh_job_state_final(lh_job_state_of(j->state))) {
		c->ret = api_send_error(r, MHD_HTTP_CONFLICT, "conflict",
					json_pack("{s:s}", "state", j->state),
					"job %lld is %s: its settings can change only before it ends (retry its failed "
					"items first)", (long long)j->id, j->state);
		return 1;
	}
	c->notify = 1;
	c->cmd = p->settings ? LH_CMD_SETTINGS : LH_CMD_PRIORITY;
	if (p->has_priority)
		rc = lh_store_job_set_priority(st, j->id, p->priority, e);
	if (!rc && p->settings)
		rc = lh_store_job_set_text(st, j->id, LH_JOB_SPEC, p->settings, e);
	if (rc)
		return rc;
	/* The event says what changed; the values are settings, never secrets
	 * (api_key_env is a variable's name). */
	d = json_deep_copy(p->body);
	data = d ? json_dumps(d, JSON_COMPACT) : NULL;
	json_decref(d);
	rc = lh_store_event_add(st, j->id, lh_wall(), p->settings ? "job.settings" : "job.priority", NULL, data,
				NULL, e);
	free(data);
	return rc;
}

enum MHD_Result api_job_patch(struct api_req *r)
{
	struct patch p;
	enum MHD_Result ret = MHD_NO;
	memset(&p, 0, sizeof p);
	if (api_body_object(r, 0, &p.body, &ret))
		return ret;
	ret = change(r, do_patch, &p, MHD_HTTP_OK, answer_job);
	lh_free(p.settings);
	json_decref(p.body);
	return ret;
}

/* ---- DELETE ---- */

static int do_delete(struct api_req *r, struct lh_store *st, struct lh_job_rec *j, void *arg, struct chg *c,
		     struct lh_err *e)
{
	c->cmd = LH_CMD_DELETED;
	c->notify = 1;
	return lh_store_job_delete(st, j->id, e);
}

enum MHD_Result api_job_delete(struct api_req *r)
{
	return change(r, do_delete, NULL, MHD_HTTP_NO_CONTENT, NULL);
}
