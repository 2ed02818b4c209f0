/*
 * api layer: one item (GET /v1/jobs/{id}/items/{key}) with its journal, a
 * person's decision on an item waiting at an approve step (POST
 * .../approve and .../reject, engine/approval.c), and a pipeline's reduce
 * text (GET /v1/jobs/{id}/reduce). A decision commits first, then the
 * engine is told (LH_CMD_DECIDED) so that the daemon runs the approved
 * items.
 */
#include "api/api_internal.h"
#include "engine/approval.h"
#include "engine/report.h"
#include "steps/steps.h"
#include "util/log.h"
#include "util/mem.h"

#include <stdio.h>
#include <string.h>

#define ALL_STATES ((1u << LH_ITEM_NSTATES) - 1)

/* ---- the item's JSON ---- */

/* The journal rows as JSON, with the settings' steps for their ids. */
struct walk {
	json_t *steps;        /* the settings' "steps" array (borrowed), or NULL: a one-request job */
	json_t *rows;         /* the answer's "steps" */
	json_t *pending;      /* the pending approval's question and step, or NULL */
	int pending_step;     /* journal step of the pending approval; -1 when the item is not waiting */
};

static json_t *step_id(const struct walk *w, int jstep)
{
	json_t *id;
	if (jstep == 0)
		return w->steps ? json_string("result") : json_null();
	id = json_object_get(json_array_get(w->steps, (size_t)jstep - 1), "id");
	return id ? json_incref(id) : json_null();
}

/* The row's bytes as a JSON string (they may hold NULs or bad UTF-8). */
static json_t *text_of(const char *p, size_t n)
{
	char *s = lh_xstrndup(p ? p : "", n);
	json_t *j = api_json_str(s);
	lh_free(s);
	return j;
}

static json_t *parsed(const char *p, size_t n)
{
	json_t *j = json_loadb(p ? p : "", n, JSON_DECODE_ANY, NULL);
	return j ? j : text_of(p, n);
}

/* A chat answer's content; a loop turn's also its tool calls and new
 * messages. */
static json_t *answer_out(const struct lh_step_rec *s, int loop)
{
	struct lh_answer a;
	struct lh_err e;
	json_t *o;
	memset(&a, 0, sizeof a);
	if (lh_answer_read(s->response ? s->response : "", s->response_len, loop, &a, &e)) {
		lh_answer_release(&a);
		return text_of(s->response, s->response_len);
	}
	o = loop ? json_object() : api_json_str(a.content);
	if (loop) {
		json_object_set_new(o, "content", api_json_str(a.content));
		if (a.tool_calls && json_array_size(a.tool_calls))
			json_object_set(o, "tool_calls", a.tool_calls);
		json_object_set_new(o, "delta", s->delta ? parsed(s->delta, s->delta_len) : json_null());
	}
	lh_answer_release(&a);
	return o;
}

static int walk_row(const struct lh_step_rec *s, void *arg)
{
	struct walk *w = arg;
	const char *kind = s->kind ? s->kind : "llm";
	json_t *out, *row;
	if (!strcmp(kind, "exec"))
		out = text_of(s->response, s->response_len);
	else if (!strcmp(kind, "approve") || !strcmp(kind, "result"))
		out = parsed(s->response, s->response_len);
	else
		out = answer_out(s, !strcmp(kind, "loop"));
	if (s->step == w->pending_step && s->turn == 0 && !strcmp(kind, "approve")) {
		json_decref(w->pending);
		w->pending = json_pack("{s:O?,s:o}", "question", json_object_get(out, "question"), "step",
				       step_id(w, s->step));
	}
	row = json_pack("{s:o,s:s,s:i,s:i,s:o,s:{s:I,s:I},s:o,s:o,s:o}", "step", step_id(w, s->step), "kind", kind,
			"turn", s->turn, "status", s->status, "model", api_json_str(s->model), "usage",
			"prompt_tokens", (json_int_t)s->prompt_tokens, "completion_tokens",
			(json_int_t)s->completion_tokens, "started_at", api_json_time(s->started_at), "ended_at",
			api_json_time(s->ended_at), "output", out ? out : json_null());
	json_array_append_new(w->rows, row);
	return 0;
}

/* The item's row as the listing shows it. */
static int take_view(const struct lh_item_view *v, void *arg)
{
	json_t **o = arg;
	*o = json_pack("{s:o,s:s,s:i,s:o,s:o}", "key", api_json_str(v->key), "state", lh_item_state_name(v->state),
		       "attempts", v->attempts, "last_status", v->last_status ? json_integer(v->last_status) :
		       json_null(), "last_error", api_json_text(v->last_error));
	return 1;
}

/* The item key of job as JSON (new in *out): the listing's fields, "job",
 * "step" (the id of the spec step it is at, for pipelines), "steps" (its
 * journal) and "approval" (what it waits for, or null). */
static int item_json(struct lh_store *st, int64_t job, const char *key, json_t **out, struct lh_err *e)
{
	struct lh_job_rec j;
	struct lh_item_info info;
	struct walk w;
	json_t *settings = NULL, *o = NULL;
	int rc;
	memset(&w, 0, sizeof w);
	memset(&info, 0, sizeof info);
	rc = lh_store_job_get(st, job, &j, e);
	if (rc)
		return rc;
	settings = j.spec ? json_loads(j.spec, 0, NULL) : NULL;
	lh_job_rec_release(&j);
	w.steps = json_object_get(settings, "steps");
	if (!json_is_array(w.steps))
		w.steps = NULL;
	rc = lh_store_item_find(st, job, key, &info, e);
	if (rc)
		goto out;
	rc = lh_store_items_page(st, job, ALL_STATES, info.seq - 1, 1, take_view, &o, e);
	if (rc < 0)
		goto out;
	if (!o) {
		rc = lh_err_set(e, LH_ENOTFOUND, "no item \"%s\" in job %lld", key, (long long)job);
		goto out;
	}
	w.rows = json_array();
	w.pending_step = info.state == LH_ITEM_WAITING ? info.step + 1 : -1;
	rc = lh_store_steps_each(st, job, info.seq, walk_row, &w, e);
	if (rc < 0)
		goto out;
	rc = 0;
	json_object_set_new(o, "job", json_integer((json_int_t)job));
	json_object_set_new(o, "seq", json_integer((json_int_t)info.seq));
	json_object_set_new(o, "step", w.steps ? step_id(&w, info.step + 1) : json_null());
	json_object_set(o, "steps", w.rows);
	json_object_set(o, "approval", w.pending ? w.pending : json_null());
	*out = o;
	o = NULL;
out:
	json_decref(o);
	json_decref(w.rows);
	json_decref(w.pending);
	json_decref(settings);
	lh_item_info_release(&info);
	return rc;
}

enum MHD_Result api_item_get(struct api_req *r)
{
	struct lh_err e;
	json_t *o = NULL;
	struct lh_store *st = api_store_get(r->api, &e);
	int rc = st ? item_json(st, r->job, r->key, &o, &e) : e.code;
	api_store_put(r->api, st);
	if (rc)
		return api_send_err(r, rc, &e);
	return api_send_json(r, MHD_HTTP_OK, o);
}

/* ---- approve, reject ---- */

/* The note of the body {"note": "..."} (borrowed from body), or NULL; -1
 * having answered 400. */
static int note_of(struct api_req *r, json_t *body, const char **note, enum MHD_Result *ret)
{
	static const char *const known[] = { "note", NULL };
	json_t *n;
	*note = NULL;
	if (!body)
		return 0;
	if (api_only_fields(r, body, known, ret))
		return -1;
	n = json_object_get(body, "note");
	if (!n || json_is_null(n))
		return 0;
	if (!json_is_string(n)) {
		*ret = api_send_error(r, MHD_HTTP_BAD_REQUEST, "bad_input", json_pack("{s:s}", "field", "note"),
				      "expected the note as a string");
		return -1;
	}
	if (json_string_length(n) > API_NOTE_MAX || strlen(json_string_value(n)) != json_string_length(n)) {
		*ret = api_send_error(r, MHD_HTTP_BAD_REQUEST, "bad_input", json_pack("{s:s}", "field", "note"),
				      "the note must be text of at most %d bytes", API_NOTE_MAX);
		return -1;
	}
	*note = json_string_value(n);
	return 0;
}

/* 409 for an item that is not waiting, naming its state. */
static enum MHD_Result not_waiting(struct api_req *r, struct lh_store *st, const struct lh_err *e)
{
	struct lh_item_info info;
	struct lh_err e2;
	const char *state = "unknown";
	enum MHD_Result ret;
	memset(&info, 0, sizeof info);
	if (st && lh_store_item_find(st, r->job, r->key, &info, &e2) == 0)
		state = lh_item_state_name(info.state);
	ret = api_send_error(r, MHD_HTTP_CONFLICT, "not_waiting", json_pack("{s:s,s:s}", "key", r->key, "state", state),
			     "%s", e->msg);
	lh_item_info_release(&info);
	return ret;
}

enum MHD_Result api_item_decide(struct api_req *r)
{
	struct lh_err e;
	struct lh_store *st;
	enum MHD_Result ret = MHD_NO;
	json_t *body = NULL, *o = NULL;
	const char *note;
	int approve = r->route == R_ITEM_APPROVE, rc;
	if (api_body_object(r, 1, &body, &ret))
		return ret;
	if (note_of(r, body, &note, &ret)) {
		json_decref(body);
		return ret;
	}
	st = api_store_get(r->api, &e);
	rc = st ? lh_approval_decide(st, r->job, r->key, approve, note, &e) : e.code;
	json_decref(body);
	if (rc == LH_ESTATE) {
		ret = not_waiting(r, st, &e);
		api_store_put(r->api, st);
		return ret;
	}
	if (!rc && item_json(st, r->job, r->key, &o, &e))
		lh_warn("api: could not read item \"%s\" of job %lld back: %s", r->key, (long long)r->job, e.msg);
	api_store_put(r->api, st);
	if (rc)
		return api_send_err(r, rc, &e);
	api_notify(r->api, r->job, LH_CMD_DECIDED);
	if (!o)
		return api_send_error(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal", NULL,
				      "the decision was made but the item could not be read back");
	return api_send_json(r, MHD_HTTP_OK, o);
}

/* ---- GET /v1/jobs/{id}/reduce ---- */

enum MHD_Result api_job_reduce(struct api_req *r)
{
	struct lh_job_rec j;
	struct lh_err e;
	char *text = NULL;
	size_t len = 0;
	const char *fmt = api_query(r, "format");
	enum MHD_Result ret;
	struct lh_store *st;
	int rc;
	if (fmt && strcmp(fmt, "json") && strcmp(fmt, "markdown"))
		return api_send_error(r, MHD_HTTP_BAD_REQUEST, "bad_input", json_pack("{s:s}", "field", "format"),
				      "unknown format \"%s\" (markdown or json)", fmt);
	st = api_store_get(r->api, &e);
	rc = st ? lh_store_job_get(st, r->job, &j, &e) : e.code;
	if (!rc) {
		lh_job_rec_release(&j);
		rc = lh_report_reduce_text(st, r->job, &text, &len, &e);
		if (rc == LH_ENOTFOUND)
			lh_err_set(&e, LH_ENOTFOUND, "job %lld has no reduce output (yet): its spec has no reduce, or "
				   "the reduce has not finished", (long long)r->job);
	}
	api_store_put(r->api, st);
	if (rc)
		return api_send_err(r, rc, &e);
	if (fmt && !strcmp(fmt, "json")) {
		char *s = lh_xstrndup(text, len);
		ret = api_send_json(r, MHD_HTTP_OK, json_pack("{s:I,s:o}", "job", (json_int_t)r->job, "output",
							      api_json_str(s)));
		lh_free(s);
	} else {
		ret = api_send_text(r, MHD_HTTP_OK, "text/markdown; charset=utf-8", text ? text : "", len);
	}
	lh_free(text);
	return ret;
}
