/*
 * engine layer: approvals. An approve step leaves its item waiting with a
 * pending journal row (the question, "decision": null) at journal step
 * k + 1, its step pointer at k (engine/pipeline.c). A decision replaces that
 * row with the decided one and moves the item on through
 * lh_store_item_decide, with an event, in one transaction; the pipeline
 * runner reads the decision back when it claims the item again.
 */
#include "engine/approval.h"
#include "util/mem.h"
#include "util/time.h"
#include "util/vec.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

char *lh_approval_step_id(const char *settings, int step)
{
	json_t *s = settings ? json_loads(settings, 0, NULL) : NULL;
	const char *id = json_string_value(json_object_get(json_array_get(json_object_get(s, "steps"),
									    (size_t)step), "id"));
	char *out = step >= 0 && id ? lh_xstrdup(id) : NULL;
	json_decref(s);
	return out;
}

/* The pending approval row, copied out of the store's callback. */
struct pending {
	int step;
	int found;
	char hash[LH_SHA256_HEX];
	char *question;
	double started_at;
};

static int find_pending(const struct lh_step_rec *s, void *arg)
{
	struct pending *p = arg;
	json_t *r;
	if (s->step != p->step || s->turn != 0 || !s->kind || strcmp(s->kind, "approve"))
		return 0;
	p->found = 1;
	snprintf(p->hash, sizeof p->hash, "%s", s->request_hash ? s->request_hash : "");
	r = json_loadb(s->response ? s->response : "", s->response_len, 0, NULL);
	p->question = lh_xstrdup(json_string_value(json_object_get(r, "question")));
	json_decref(r);
	p->started_at = s->started_at;
	return 1;
}

/* The decided row's response and, for a reject, the item's error. */
static int compose(const struct pending *p, int approve, const char *note, const char *step_id, char **resp,
		   char **error)
{
	char iso[40], msg[1024];
	json_t *o;
	lh_time_iso(lh_wall(), iso, sizeof iso);
	o = json_pack("{s:s?,s:s,s:s?,s:s}", "question", p->question, "decision", approve ? "approved" : "rejected",
		      "note", note, "decided_at", iso);
	*resp = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	*error = NULL;
	if (!approve) {
		if (note && *note)
			snprintf(msg, sizeof msg, "%s", note); /* the code already says "rejected" */
		else
			snprintf(msg, sizeof msg, "rejected by a person");
		o = json_pack("{s:s,s:s,s:s?}", "code", "rejected", "message", msg, "step", step_id);
		*error = o ? json_dumps(o, JSON_COMPACT) : NULL;
		json_decref(o);
	}
	return *resp && (approve || *error) ? 0 : -1;
}

/* One decision inside the caller's transaction. */
static int decide_one(struct lh_store *st, int64_t job, const char *settings, const char *key, int approve,
		      const char *note, struct lh_err *e)
{
	struct lh_item_info info;
	struct pending p;
	struct lh_step_rec row;
	char *resp = NULL, *error = NULL, *step_id = NULL, *data = NULL;
	json_t *d;
	int rc;
	memset(&p, 0, sizeof p);
	memset(&info, 0, sizeof info);
	rc = lh_store_item_find(st, job, key, &info, e);
	if (rc)
		return rc;
	if (info.state != LH_ITEM_WAITING) {
		rc = lh_err_set(e, LH_ESTATE, "item \"%s\" is not waiting for approval (it is %s)", key,
				lh_item_state_name(info.state));
		goto out;
	}
	p.step = info.step + 1;
	rc = lh_store_steps_each(st, job, info.seq, find_pending, &p, e);
	if (rc < 0)
		goto out;
	if (!p.found) {
		rc = lh_err_set(e, LH_EINTERNAL, "item \"%s\" waits but has no pending approval at step %d", key,
				info.step);
		goto out;
	}
	step_id = lh_approval_step_id(settings, info.step);
	if (compose(&p, approve, note, step_id, &resp, &error)) {
		rc = lh_err_set(e, LH_ENOMEM, "could not compose the decision on item \"%s\"", key);
		goto out;
	}
	memset(&row, 0, sizeof row);
	row.step = p.step;
	row.turn = 0;
	row.attempt = 1;
	row.kind = "approve";
	row.request_hash = p.hash;
	row.status = approve ? 200 : 0;
	row.response = resp;
	row.response_len = strlen(resp);
	row.started_at = p.started_at;
	row.ended_at = lh_wall();
	rc = lh_store_item_decide(st, job, info.seq, approve, &row, error, e);
	/* A rejected item is the job's latest failure, as a dead one is. */
	if (!rc && !approve)
		rc = lh_store_job_set_error(st, job, error, e);
	if (rc)
		goto out;
	d = json_pack("{s:s?,s:s?}", "step", step_id, "note", note);
	data = d ? json_dumps(d, JSON_COMPACT) : NULL;
	json_decref(d);
	rc = lh_store_event_add(st, job, lh_wall(), approve ? "item.approved" : "item.rejected", key, data, NULL, e);
out:
	free(data);
	free(resp);
	free(error);
	lh_free(step_id);
	lh_free(p.question);
	lh_item_info_release(&info);
	return rc;
}

/* Reads the job's settings (new string) for the step ids. */
static int settings_of(struct lh_store *st, int64_t job, char **out, struct lh_err *e)
{
	struct lh_job_rec j;
	int rc = lh_store_job_get(st, job, &j, e);
	if (rc)
		return rc;
	*out = j.spec;
	j.spec = NULL;
	lh_job_rec_release(&j);
	return 0;
}

int lh_approval_decide(struct lh_store *st, int64_t job, const char *key, int approve, const char *note,
		       struct lh_err *e)
{
	char *settings = NULL;
	int rc = lh_store_begin(st, e);
	if (rc)
		return rc;
	rc = settings_of(st, job, &settings, e);
	if (!rc)
		rc = decide_one(st, job, settings, key, approve, note, e);
	if (!rc)
		rc = lh_store_commit(st, e);
	if (rc)
		lh_store_rollback(st);
	lh_free(settings);
	return rc;
}

typedef LH_VEC(char *) key_vec;

static int collect_key(const struct lh_item_view *v, void *arg)
{
	key_vec *keys = arg;
	*lh_vec_push(keys) = lh_xstrdup(v->key);
	return 0;
}

int lh_approval_decide_all(struct lh_store *st, int64_t job, int approve, const char *note, int64_t *n,
			   struct lh_err *e)
{
	key_vec keys;
	char *settings = NULL;
	size_t i;
	int rc;
	lh_vec_init(&keys);
	if (n)
		*n = 0;
	rc = lh_store_begin(st, e);
	if (rc)
		return rc;
	rc = settings_of(st, job, &settings, e);
	if (!rc)
		rc = lh_store_items_each(st, job, 1u << LH_ITEM_WAITING, collect_key, &keys, e);
	for (i = 0; !rc && i < keys.n; i++)
		rc = decide_one(st, job, settings, keys.v[i], approve, note, e);
	if (!rc)
		rc = lh_store_commit(st, e);
	if (rc)
		lh_store_rollback(st);
	else if (n)
		*n = (int64_t)keys.n;
	for (i = 0; i < keys.n; i++)
		lh_free(keys.v[i]);
	lh_vec_release(&keys);
	lh_free(settings);
	return rc;
}
