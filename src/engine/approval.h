/*
 * engine layer: a person's decision on items waiting at an approve step
 * (docs/states.md, "waiting"). Used by the daemon's API and by
 * `longhaul approve --store`; the engine picks the approved items up when
 * it claims again (lh_engine_reload_job in the daemon, the next `run`).
 */
#ifndef LH_ENGINE_APPROVAL_H
#define LH_ENGINE_APPROVAL_H

#include <stddef.h>
#include <stdint.h>
#include "store/store.h"
#include "util/err.h"

/* Decides item key (borrowed) of job in one transaction: its pending
 * approval row becomes the decided one ({"question", "decision":
 * "approved"|"rejected", "note", "decided_at"}), then approve: waiting ->
 * pending; reject: waiting -> dead with the error {"code": "rejected",
 * "message", "step"}; and an item.approved / item.rejected event. note
 * (borrowed, may be NULL) is kept with the decision. Errors: LH_ENOTFOUND
 * naming the key, LH_ESTATE naming the item's state when it is not waiting,
 * LH_ECORRUPT when its pending row is damaged; nothing is written then. */
int lh_approval_decide(struct lh_store *st, int64_t job, const char *key, int approve, const char *note,
		       struct lh_err *e) LH_WUR;
/* The same for every waiting item of job, in one transaction; *n (may be
 * NULL) gets how many were decided (0 when none waits). */
int lh_approval_decide_all(struct lh_store *st, int64_t job, int approve, const char *note, int64_t *n,
			   struct lh_err *e) LH_WUR;
/* The id of the spec step at index step (0-based) in a job's settings JSON,
 * as a new string; NULL when there is none. */
char *lh_approval_step_id(const char *settings, int step);

#endif
