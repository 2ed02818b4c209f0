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
#include <string.h>

static const struct { const char *from, *to; } allowed[] = {
	{ "queued", "running" },    { "queued", "paused" },     { "queued", "cancelled" },
	{ "running", "paused" },    { "running", "completed" }, { "running", "failed" },
	{ "running", "cancelled" }, { "running", "timed_out" }, { "running", "queued" },
	{ "paused", "running" },    { "paused", "queued" },     { "paused", "cancelled" },
	{ "paused", "timed_out" },  { "completed", "queued" },  { "failed", "queued" },
};

int lh_job_transition_ok(const char *from, const char *to)
{
	for (size_t i = 0; i < sizeof allowed / sizeof allowed[0]; i++)
		if (!strcmp(allowed[i].from, from) && !strcmp(allowed[i].to, to))
			return 1;
	return 0;
}

int lh_job_state_final(const char *state)
{
	return !strcmp(state, "completed") || !strcmp(state, "failed") || !strcmp(state, "cancelled") ||
	       !strcmp(state, "timed_out");
}

int lh_job_transition(struct lh_store *st, struct lh_job_rec *j, const char *to, const char *data,
		      struct lh_err *e)
{
	return lh_job_transition_why(st, j, to, NULL, data, e);
}

int lh_job_transition_why(struct lh_store *st, struct lh_job_rec *j, const char *to, const char *reason,
			  const char *data, struct lh_err *e)
{
	double now = lh_wall(), started = 0, finished = 0;
	int paused = !strcmp(to, "paused");
	char type[32];
	int rc;
	if (paused && !reason)
		reason = LH_PAUSE_USER;
	if (!lh_job_transition_ok(j->state, to))
		return lh_err_set(e, LH_ESTATE, "job %lld cannot go from %s to %s", (long long)j->id, j->state,
				  to);
	if (!strcmp(to, "running") && j->started_at <= 0)
		started = now;
	if (lh_job_state_final(to))
		finished = now;
	rc = lh_store_job_set_state(st, j->id, to, started, finished, e);
	/* A reason belongs to one pause; what a job waited for, to one run. */
	if (!rc && (paused || j->pause_reason[0]))
		rc = lh_store_job_set_text(st, j->id, LH_JOB_PAUSE_REASON, paused ? reason : NULL, e);
	if (!rc && j->waiting)
		rc = lh_store_job_set_text(st, j->id, LH_JOB_WAITING, NULL, e);
	if (rc)
		return rc;
	snprintf(type, sizeof type, "job.%s", to);
	rc = lh_store_event_add(st, j->id, now, type, NULL, data, NULL, e);
	if (rc)
		return rc;
	snprintf(j->state, sizeof j->state, "%s", to);
	snprintf(j->pause_reason, sizeof j->pause_reason, "%s", paused ? reason : "");
	lh_free(j->waiting);
	j->waiting = NULL;
	if (started > 0)
		j->started_at = started;
	if (finished > 0)
		j->finished_at = finished;
	return 0;
}
