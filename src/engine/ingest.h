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
 * "model" (it is added at dispatch, so a corrected model applies on resume). */
int lh_ingest_spec(struct lh_store *st, int64_t job, const struct lh_spec *s, int64_t *n,
		   struct lh_err *e) LH_WUR;

#endif
