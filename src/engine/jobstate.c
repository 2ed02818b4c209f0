/*
 * engine layer: job state machine (see jobstate.h and docs/states.md).
 *
 *   queued ──> running ──> completed | failed | cancelled | timed_out
 *     │  │       │  ^
 *     │  │       v  │
 *     │  └───> paused ──> cancelled | timed_out
 *     └──> cancelled
 *
 * A final state is left only by an explicit retry of dead items
 * (completed|failed -> queued), which re-opens the job.
 */
#include "engine/jobstate.h"
#include "util/mem.h"
#include "util/time.h"

#include <stdio.h>
#include <jansson.h>
#include <string.h>

/* Names as the store, the API and the events spell them, and which
 * states are final. */
static const struct {
	const char *name;
	int final;
} states[] = {
	[LH_JOB_QUEUED] = { "queued", 0 },       [LH_JOB_RUNNING] = { "running", 0 },
	[LH_JOB_PAUSED] = { "paused", 0 },       [LH_JOB_COMPLETED] = { "completed", 1 },
	[LH_JOB_FAILED] = { "failed", 1 },       [LH_JOB_CANCELLED] = { "cancelled", 1 },
	[LH_JOB_TIMED_OUT] = { "timed_out", 1 },
};
_Static_assert(sizeof states / sizeof states[0] == LH_JOB_NSTATES, "a job state without a name");

static const struct {
	enum lh_job_state from, to;
} allowed[] = {
	{ LH_JOB_QUEUED, LH_JOB_RUNNING },     { LH_JOB_QUEUED, LH_JOB_PAUSED },
	{ LH_JOB_QUEUED, LH_JOB_CANCELLED },   { LH_JOB_RUNNING, LH_JOB_PAUSED },
	{ LH_JOB_RUNNING, LH_JOB_COMPLETED },  { LH_JOB_RUNNING, LH_JOB_FAILED },
	{ LH_JOB_RUNNING, LH_JOB_CANCELLED },  { LH_JOB_RUNNING, LH_JOB_TIMED_OUT },
	{ LH_JOB_RUNNING, LH_JOB_QUEUED },     { LH_JOB_PAUSED, LH_JOB_RUNNING },
	{ LH_JOB_PAUSED, LH_JOB_QUEUED },      { LH_JOB_PAUSED, LH_JOB_CANCELLED },
	{ LH_JOB_PAUSED, LH_JOB_TIMED_OUT },   { LH_JOB_COMPLETED, LH_JOB_QUEUED },
	{ LH_JOB_FAILED, LH_JOB_QUEUED },
};

static int known(enum lh_job_state s)
{
	return (int)s >= 0 && (int)s < LH_JOB_NSTATES;
}

const char *lh_job_state_name(enum lh_job_state s)
{
	return known(s) ? states[s].name : "unknown";
}

enum lh_job_state lh_job_state_of(const char *name)
{
	if (name)
		for (int i = 0; i < LH_JOB_NSTATES; i++)
			if (!strcmp(states[i].name, name))
				return (enum lh_job_state)i;
	return LH_JOB_UNKNOWN;
}

int lh_job_transition_ok(enum lh_job_state from, enum lh_job_state to)
{
	for (size_t i = 0; i < sizeof allowed / sizeof allowed[0]; i++)
		if (allowed[i].from == from && allowed[i].to == to)
			return 1;
	return 0;
}

int lh_job_state_final(enum lh_job_state s)
{
	return known(s) && states[s].final;
}

int lh_job_transition(struct lh_store *st, struct lh_job_rec *j, enum lh_job_state to, const char *data,
		      struct lh_err *e)
{
	return lh_job_transition_why(st, j, to, NULL, data, e);
}

int lh_job_transition_why(struct lh_store *st, struct lh_job_rec *j, enum lh_job_state to, const char *reason,
			  const char *data, struct lh_err *e)
{
	double now = lh_wall(), started = 0, finished = 0;
	const char *name = lh_job_state_name(to);
	int paused = to == LH_JOB_PAUSED;
	char type[32];
	int rc;
	if (paused && !reason)
		reason = LH_PAUSE_USER;
	if (!lh_job_transition_ok(lh_job_state_of(j->state), to))
		return lh_err_set(e, LH_ESTATE, "job %lld cannot go from %s to %s", (long long)j->id, j->state,
				  name);
	if (to == LH_JOB_RUNNING && j->started_at <= 0)
		started = now;
	if (lh_job_state_final(to))
		finished = now;
	rc = lh_store_job_set_state(st, j->id, name, started, finished, e);
	/* A reason belongs to one pause; what a job waited for, to one run. */
	if (!rc && (paused || j->pause_reason[0]))
		rc = lh_store_job_set_text(st, j->id, LH_JOB_PAUSE_REASON, paused ? reason : NULL, e);
	if (!rc && j->waiting)
		rc = lh_store_job_set_text(st, j->id, LH_JOB_WAITING, NULL, e);
	if (rc)
		return rc;
	snprintf(type, sizeof type, "job.%s", name);
	rc = lh_store_event_add(st, j->id, now, type, NULL, data, NULL, e);
	if (rc)
		return rc;
	snprintf(j->state, sizeof j->state, "%s", name);
	snprintf(j->pause_reason, sizeof j->pause_reason, "%s", paused ? reason : "");
	lh_free(j->waiting);
	j->waiting = NULL;
	if (started > 0)
		j->started_at = started;
	if (finished > 0)
		j->finished_at = finished;
	return 0;
}

int lh_job_retry_failed(struct lh_store *st, struct lh_job_rec *j, const char *const *keys, size_t nkeys,
			int64_t *n, struct lh_err *e)
{
	enum lh_job_state now = lh_job_state_of(j->state);
	int64_t got = 0;
	char data[64];
	int rc;
	if (n)
		*n = 0;
	/* cancelled and timed_out stay final (docs/states.md). */
	if (now == LH_JOB_CANCELLED || now == LH_JOB_TIMED_OUT)
		return lh_err_set(e, LH_ESTATE, "job %lld cannot go from %s to queued", (long long)j->id, j->state);
	rc = lh_store_items_retry_dead(st, j->id, keys, nkeys, &got, e);
	if (rc || got == 0)
		return rc;
	snprintf(data, sizeof data, "{\"retried\":%lld}", (long long)got);
	rc = lh_store_event_add(st, j->id, lh_wall(), "job.retry", NULL, data, NULL, e);
	if (!rc && (now == LH_JOB_COMPLETED || now == LH_JOB_FAILED))
		rc = lh_job_transition(st, j, LH_JOB_QUEUED, NULL, e);
	if (!rc && n)
		*n = got;
	return rc;
}

/* What decides a pipeline's requests: everything but where the outputs
 * go and the job's name. */
static int same_work(const json_t *a, const json_t *b)
{
	static const char *const ignore[] = { "output", "errors", "name", "path", "concurrency", "retry",
					       "timeouts", "exec_concurrency", "time_limit", "priority", NULL };
	json_t *x = json_deep_copy(a), *y = json_deep_copy(b);
	int same;
	for (int i = 0; ignore[i]; i++) {
		json_object_del(x, ignore[i]);
		json_object_del(y, ignore[i]);
	}
	if (json_is_object(json_object_get(x, "reduce")))
		json_object_del(json_object_get(x, "reduce"), "output");
	if (json_is_object(json_object_get(y, "reduce")))
		json_object_del(json_object_get(y, "reduce"), "output");
	same = json_equal(x, y);
	json_decref(x);
	json_decref(y);
	return same;
}

int lh_job_respec(struct lh_store *st, struct lh_job_rec *j, const char *spec_json, int64_t *reopened,
		  struct lh_err *e)
{
	enum lh_job_state now = lh_job_state_of(j->state);
	json_t *old = json_loads(j->spec ? j->spec : "{}", 0, NULL), *neu = json_loads(spec_json, 0, NULL);
	int64_t n = 0;
	char data[96];
	int rc = 0, same;
	*reopened = -1;
	if (!json_is_object(neu)) {
		json_decref(old);
		json_decref(neu);
		return lh_err_set(e, LH_EINPUT, "the new spec is not a JSON object");
	}
	same = json_is_object(old) && same_work(old, neu);
	json_decref(old);
	json_decref(neu);
	if (same || !strcmp(j->spec ? j->spec : "", spec_json))
		return 0;
	if (now == LH_JOB_CANCELLED || now == LH_JOB_TIMED_OUT)
		return lh_err_set(e, LH_ESTATE, "job %lld is %s: its spec cannot change; run with --restart to start over",
				  (long long)j->id, j->state);
	rc = lh_store_job_set_text(st, j->id, LH_JOB_SPEC, spec_json, e);
	if (!rc)
		rc = lh_store_items_reopen(st, j->id, &n, e);
	if (!rc) {
		snprintf(data, sizeof data, "{\"reopened\":%lld}", (long long)n);
		rc = lh_store_event_add(st, j->id, lh_wall(), "job.spec_changed", NULL, data, NULL, e);
	}
	if (!rc && (now == LH_JOB_COMPLETED || now == LH_JOB_FAILED))
		rc = lh_job_transition(st, j, LH_JOB_QUEUED, NULL, e);
	if (!rc)
		*reopened = n;
	return rc;
}
