/*
 * The job state machine. Every job transition goes through
 * lh_job_transition, which rejects illegal ones and appends the event.
 * States are an enum here; the store, the API and the events spell them
 * with lh_job_state_name. The diagram lives in docs/states.md.
 */
#ifndef LH_ENGINE_JOBSTATE_H
#define LH_ENGINE_JOBSTATE_H

#include "store/store.h"

/* A job's state. The store keeps its name (a TEXT column, struct
 * lh_job_rec's state), and so do the API's JSON and the events: the names
 * are lh_job_state_name's, "queued" ... "timed_out". */
enum lh_job_state {
	LH_JOB_UNKNOWN = -1, /* a name longhaul does not know: never final, no transition from or to it */
	LH_JOB_QUEUED,
	LH_JOB_RUNNING,
	LH_JOB_PAUSED,
	LH_JOB_COMPLETED,
	LH_JOB_FAILED,
	LH_JOB_CANCELLED,
	LH_JOB_TIMED_OUT,
	LH_JOB_NSTATES /* how many states there are, not one of them */
};

/* The state's name (static storage); "unknown" for LH_JOB_UNKNOWN or a
 * value out of range. */
const char *lh_job_state_name(enum lh_job_state s);
/* The state a name spells; LH_JOB_UNKNOWN for NULL or any other name. */
enum lh_job_state lh_job_state_of(const char *name);

/* 1 when from -> to is allowed. Nothing leads from or to LH_JOB_UNKNOWN. */
int lh_job_transition_ok(enum lh_job_state from, enum lh_job_state to);
/* 1 for completed, failed, cancelled, timed_out. */
int lh_job_state_final(enum lh_job_state s);

/* Moves job j from its current state (j->state) to `to`: checks the
 * transition (LH_ESTATE with "cannot go from X to Y" otherwise), writes the
 * state and timestamps, appends a "job.<to>" event with data (JSON or NULL),
 * and updates j->state. Runs in the caller's transaction, if any. */
int lh_job_transition(struct lh_store *st, struct lh_job_rec *j, enum lh_job_state to, const char *data,
		      struct lh_err *e) LH_WUR;

/* Why a job is paused (the job's pause_reason). */
#define LH_PAUSE_USER "user"             /* a person (API, client, Ctrl-C of run) */
#define LH_PAUSE_EARLY_STOP "early_stop" /* every request failed the same permanent way */

/* lh_job_transition with the reason of a pause (reason NULL: "user"; it is
 * ignored for other states). Leaving paused clears the reason, and any
 * transition clears what the job was waiting for. */
int lh_job_transition_why(struct lh_store *st, struct lh_job_rec *j, enum lh_job_state to, const char *reason,
			  const char *data, struct lh_err *e) LH_WUR;

/* Sends the job's dead items back to pending (those with the given keys,
 * or all of them when nkeys == 0; see lh_store_items_retry_dead) and, when
 * any went back, appends "job.retry" {"retried": N} and re-opens a
 * completed or failed job (-> queued). *n (may be NULL) gets N. A cancelled
 * or timed-out job stays final: LH_ESTATE, nothing written. Runs in the
 * caller's transaction; `run --retry-failed` and the API's retry share it. */
int lh_job_retry_failed(struct lh_store *st, struct lh_job_rec *j, const char *const *keys, size_t nkeys,
			int64_t *n, struct lh_err *e) LH_WUR;

/* An edited pipeline spec, run again (`run`, or a resubmit): when what
 * decides its requests changed (not merely where outputs go), the job's
 * settings become spec_json, its done items go back to pending with their
 * journal kept (each step whose request is unchanged is taken from the
 * journal, the others run), and a finished job is queued again.
 * *reopened gets the number of items re-opened, or -1 when nothing
 * changed. A cancelled or timed_out job refuses (LH_ESTATE). Call inside a
 * transaction. */
int lh_job_respec(struct lh_store *st, struct lh_job_rec *j, const char *spec_json, int64_t *reopened,
		  struct lh_err *e) LH_WUR;

#endif
