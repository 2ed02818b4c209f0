/*
 * The job state machine. Every job transition goes through
 * lh_job_transition, which rejects illegal ones and appends the event.
 * The diagram lives in docs/states.md.
 */
#ifndef LH_ENGINE_JOBSTATE_H
#define LH_ENGINE_JOBSTATE_H

#include "store/store.h"

/* 1 when from -> to is allowed. Unknown names are never allowed. */
int lh_job_transition_ok(const char *from, const char *to);
/* 1 for completed, failed, cancelled, timed_out. */
int lh_job_state_final(const char *state);

/* Moves job j from its current state (j->state) to `to`: checks the
 * transition (LH_ESTATE with "cannot go from X to Y" otherwise), writes the
 * state and timestamps, appends a "job.<to>" event with data (JSON or NULL),
 * and updates j->state. Runs in the caller's transaction, if any. */
int lh_job_transition(struct lh_store *st, struct lh_job_rec *j, const char *to, const char *data,
		      struct lh_err *e) LH_WUR;

/* Why a job is paused (the job's pause_reason). */
#define LH_PAUSE_USER "user"             /* a person (API, client, Ctrl-C of run) */
#define LH_PAUSE_EARLY_STOP "early_stop" /* every request failed the same permanent way */

/* lh_job_transition with the reason of a pause (reason NULL: "user"; it is
 * ignored for other states). Leaving paused clears the reason, and any
 * transition clears what the job was waiting for. */
int lh_job_transition_why(struct lh_store *st, struct lh_job_rec *j, const char *to, const char *reason,
			  const char *data, struct lh_err *e) LH_WUR;

#endif
