/*
 * store layer, for backends only: the table of operations behind store.h.
 *
 * A backend allocates its own handle with struct lh_store as the first
 * member, points it at a static const struct lh_store_ops, and returns it
 * from its open function. store.c checks arguments that every backend would
 * check alike and then calls through the table; nothing outside src/store/
 * includes this header.
 *
 * Each operation has the contract of the public function of the same name in
 * store.h. Errors are recorded in e (which may be NULL) and returned.
 */
#ifndef LH_STORE_STORE_IMPL_H
#define LH_STORE_STORE_IMPL_H

#include "store/store.h"

struct lh_store_ops {
	const char *name; /* "sqlite", "postgres": for messages */

	void (*close)(struct lh_store *st);
	int (*begin)(struct lh_store *st, struct lh_err *e);
	int (*commit)(struct lh_store *st, struct lh_err *e);
	void (*rollback)(struct lh_store *st);

	int (*job_find)(struct lh_store *st, const char *ref, struct lh_job_rec *out, struct lh_err *e);
	int (*job_get)(struct lh_store *st, int64_t id, struct lh_job_rec *out, struct lh_err *e);
	int (*job_create)(struct lh_store *st, struct lh_job_rec *j, struct lh_err *e);
	int (*job_delete)(struct lh_store *st, int64_t id, struct lh_err *e);
	int (*job_set_state)(struct lh_store *st, int64_t id, const char *state, double started_at,
			     double finished_at, struct lh_err *e);
	int (*job_set_ingested)(struct lh_store *st, int64_t id, int64_t n_total, struct lh_err *e);
	int (*job_add)(struct lh_store *st, int64_t id, int64_t d_done, int64_t d_dead, int64_t d_retries,
		       int64_t d_prompt, int64_t d_completion, double d_run_secs, struct lh_err *e);
	int (*job_set_priority)(struct lh_store *st, int64_t id, int priority, struct lh_err *e);
	int (*job_set_rates)(struct lh_store *st, int64_t id, double items_per_sec, double tokens_per_sec,
			     double d_run_secs, int64_t in_flight, struct lh_err *e);
	int (*job_set_error)(struct lh_store *st, int64_t id, const char *error_json, struct lh_err *e);
	int (*job_set_text)(struct lh_store *st, int64_t id, enum lh_job_text which, const char *value,
			    struct lh_err *e);
	int (*jobs_each)(struct lh_store *st, const struct lh_job_filter *f, lh_job_fn fn, void *arg,
			 struct lh_err *e);
	int (*jobs_count)(struct lh_store *st, const char *state, int64_t *n, struct lh_err *e);

	int (*item_add)(struct lh_store *st, int64_t job, int64_t seq, const char *key, size_t key_len,
			const char *input, size_t input_len, int64_t *dup_seq, struct lh_err *e);
	int (*claim)(struct lh_store *st, int64_t job, const char *owner, double now, double lease_secs,
		     size_t max, struct lh_claimed **out, size_t *n, struct lh_err *e);
	int (*renew)(struct lh_store *st, int64_t job, const char *owner, double deadline, struct lh_err *e);
	int (*release_leases)(struct lh_store *st, int64_t job, const char *owner, int64_t *n,
			      struct lh_err *e);
	int (*next_due)(struct lh_store *st, int64_t job, double *when, struct lh_err *e);
	int (*item_done)(struct lh_store *st, int64_t job, int64_t seq, int64_t fence, int attempts,
			 const struct lh_step_rec *step, struct lh_err *e);
	int (*item_retry)(struct lh_store *st, int64_t job, int64_t seq, int64_t fence, int attempts,
			  double next_try, int status, const char *error, struct lh_err *e);
	int (*item_dead)(struct lh_store *st, int64_t job, int64_t seq, int64_t fence, int attempts,
			 int status, const char *error, struct lh_err *e);
	int (*item_release)(struct lh_store *st, int64_t job, int64_t seq, int64_t fence, struct lh_err *e);
	int (*item_counts)(struct lh_store *st, int64_t job, int64_t counts[LH_ITEM_NSTATES], struct lh_err *e);
	int (*items_each)(struct lh_store *st, int64_t job, unsigned state_mask, lh_item_fn fn, void *arg,
			  struct lh_err *e);
	int (*items_page)(struct lh_store *st, int64_t job, unsigned state_mask, int64_t after_seq, size_t limit,
			  lh_item_fn fn, void *arg, struct lh_err *e);
	int (*items_retry_dead)(struct lh_store *st, int64_t job, const char *const *keys, size_t nkeys,
				int64_t *n, struct lh_err *e);

	int (*step_put)(struct lh_store *st, int64_t job, int64_t seq, int64_t fence,
			const struct lh_step_rec *step, struct lh_err *e);
	int (*steps_each)(struct lh_store *st, int64_t job, int64_t seq, lh_step_fn fn, void *arg,
			  struct lh_err *e);

	/* Pipelines (journal.c in the SQLite backend). */
	int (*item_set_step)(struct lh_store *st, int64_t job, int64_t seq, int64_t fence, int step,
			     struct lh_err *e);
	int (*item_wait)(struct lh_store *st, int64_t job, int64_t seq, int64_t fence, int step,
			 const struct lh_step_rec *pending, struct lh_err *e);
	int (*item_find)(struct lh_store *st, int64_t job, const char *key, struct lh_item_info *out,
			 struct lh_err *e);
	int (*item_decide)(struct lh_store *st, int64_t job, int64_t seq, int approve,
			   const struct lh_step_rec *row, const char *error, struct lh_err *e);
	int (*items_reopen)(struct lh_store *st, int64_t job, int64_t *n, struct lh_err *e);
	int (*reduce_put)(struct lh_store *st, int64_t job, int level, int index, const struct lh_step_rec *row,
			  struct lh_err *e);
	int (*item_steps_done)(struct lh_store *st, int64_t job, int64_t *per_step, size_t nsteps,
			       int64_t *waiting, struct lh_err *e);
	int (*verify)(struct lh_store *st, void (*on_bad)(void *arg, const char *what), void *arg,
		      struct lh_verify_report *out, struct lh_err *e);

	int (*event_add)(struct lh_store *st, int64_t job, double ts, const char *type, const char *item_key,
			 const char *data, int64_t *seq, struct lh_err *e);
	int (*events_each)(struct lh_store *st, int64_t job, int64_t after, size_t limit, lh_event_fn fn,
			   void *arg, struct lh_err *e);
	int (*events_all_each)(struct lh_store *st, int64_t after_gseq, size_t limit, lh_event_fn fn, void *arg,
			       struct lh_err *e);
	int (*checkpoint)(struct lh_store *st, int *log_pages, int *copied, struct lh_err *e);
};

/* The common head of every backend's handle. */
struct lh_store {
	const struct lh_store_ops *ops;
};

/* For backends, so that every one names and checks journal rows alike. */
/* "job 3, item 17 (doc-17), step 2, turn 0": a journal row as people name
 * it (a reduce's rows by their level; key may be NULL). */
void lh_step_describe(char *out, size_t n, int64_t job, int64_t seq, const char *key, int step, int turn);
/* 1 when stored (may be NULL: 0) is the checksum (lh_step_checksum) of the
 * row's request hash, response and delta. */
int lh_step_checksum_ok(const char *request_hash, const char *response, size_t response_len, const char *delta,
			size_t delta_len, const char *stored);

#endif
