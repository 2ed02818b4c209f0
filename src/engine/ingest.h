/*
 * Ingest: streams an input into the store as pending items, inside the
 * caller's transaction, so that a bad line anywhere leaves nothing behind
 * (the caller rolls back). Memory stays bounded by the largest record.
 */
#ifndef LH_ENGINE_INGEST_H
#define LH_ENGINE_INGEST_H

#include <stdint.h>
#include "io/input.h"
#include "store/store.h"

/* Batch file: one item per line, key = custom_id, input = the body,
 * seq = line number - 1. *n gets the item count. */
int lh_ingest_batch(struct lh_store *st, int64_t job, const char *path, int require_model, int64_t *n,
		    struct lh_err *e) LH_WUR;
/* Spec: one item per record or file; input = the request body WITHOUT
 * "model" (it is added at dispatch, so a corrected model applies on resume).
 * A pipeline (s->steps): input = the record itself as compact JSON, with
 * "key" added when it has none (lh_spec_item_input). */
int lh_ingest_spec(struct lh_store *st, int64_t job, const struct lh_spec *s, int64_t *n,
		   struct lh_err *e) LH_WUR;

/* Creates job j (ref, name, kind, spec, source_sig, state, priority,
 * time_limit; j->id is set) with its "job.queued" event and ingests every
 * item, in one transaction of its own: from the batch file at batch_path,
 * or else from spec. Any bad line rolls everything back, so a refused input
 * leaves the store as it was. A batch file without a request line is
 * LH_EINPUT. *n gets the item count. This is the one place a job is born,
 * for `run` and the daemon alike. */
int lh_ingest_job(struct lh_store *st, struct lh_job_rec *j, const char *batch_path, int require_model,
		  const struct lh_spec *spec, int64_t *n, struct lh_err *e) LH_WUR;

#endif
