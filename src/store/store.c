/*
 * store layer: the public functions of store.h, dispatched through each
 * backend's table of operations (store_impl.h), as SQLite dispatches file
 * access through its VFS. Checks that every backend would make alike live
 * here once; the backends do the rest.
 */
#include "store/store.h"
#include "store/store_impl.h"
#include "store/postgres/postgres.h"
#include "store/sqlite/sqlite.h"
#include "util/hash.h"
#include "util/mem.h"

#include <stdio.h>
#include <string.h>

const char *lh_item_state_name(int state)
{
	static const char *const names[] = { "pending", "leased", "done", "retry", "dead", "waiting" };

	_Static_assert(sizeof names / sizeof names[0] == LH_ITEM_NSTATES, "a name per item state");

	if (state < 0 || state >= (int)(sizeof names / sizeof names[0]))
		return "unknown";
	return names[state];
}

static int has_prefix(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

int lh_store_open(const struct lh_store_opts *o, struct lh_store **out, struct lh_err *e)
{
	*out = NULL;
	if (!o || !o->path || !o->path[0])
		return lh_err_set(e, LH_EUSAGE, "could not open store: no path given");
	/* A URL names a server backend; anything else is a SQLite file. */
	if (has_prefix(o->path, "postgres://") || has_prefix(o->path, "postgresql://"))
		return store_pg_open(o, out, e);
	return store_sqlite_open(o, out, e);
}

void lh_store_close(struct lh_store *st)
{
	if (st)
		st->ops->close(st);
}

int lh_store_begin(struct lh_store *st, struct lh_err *e)
{
	return st->ops->begin(st, e);
}

int lh_store_commit(struct lh_store *st, struct lh_err *e)
{
	return st->ops->commit(st, e);
}

void lh_store_rollback(struct lh_store *st)
{
	st->ops->rollback(st);
}

void lh_job_rec_release(struct lh_job_rec *j)
{
	if (!j)
		return;
	lh_free(j->ref);
	lh_free(j->name);
	lh_free(j->kind);
	lh_free(j->spec);
	lh_free(j->source_sig);
	lh_free(j->last_error);
	lh_free(j->waiting);
	j->ref = j->name = j->kind = j->spec = j->source_sig = j->last_error = j->waiting = NULL;
}

int lh_store_job_find(struct lh_store *st, const char *ref, struct lh_job_rec *out, struct lh_err *e)
{
	memset(out, 0, sizeof *out);
	return st->ops->job_find(st, ref, out, e);
}

int lh_store_job_get(struct lh_store *st, int64_t id, struct lh_job_rec *out, struct lh_err *e)
{
	memset(out, 0, sizeof *out);
	return st->ops->job_get(st, id, out, e);
}

int lh_store_job_create(struct lh_store *st, struct lh_job_rec *j, struct lh_err *e)
{
	if (!j->ref || !j->ref[0])
		return lh_err_set(e, LH_EINPUT, "could not create job: it has no ref");
	if (strnlen(j->state, sizeof j->state) == sizeof j->state)
		return lh_err_set(e, LH_EINPUT, "could not create job \"%s\": its state is not terminated", j->ref);
	return st->ops->job_create(st, j, e);
}

int lh_store_job_delete(struct lh_store *st, int64_t id, struct lh_err *e)
{
	return st->ops->job_delete(st, id, e);
}

int lh_store_job_set_state(struct lh_store *st, int64_t id, const char *state, double started_at,
			   double finished_at, struct lh_err *e)
{
	/* The record holds a state in 16 bytes; a longer one could not be read back. */
	if (!state || strlen(state) >= sizeof ((struct lh_job_rec *)0)->state)
		return lh_err_set(e, LH_EINPUT, "could not set the state of job %lld: bad state \"%s\"",
				  (long long)id, state ? state : "(null)");
	return st->ops->job_set_state(st, id, state, started_at, finished_at, e);
}

int lh_store_job_set_ingested(struct lh_store *st, int64_t id, int64_t n_total, struct lh_err *e)
{
	return st->ops->job_set_ingested(st, id, n_total, e);
}

int lh_store_job_add(struct lh_store *st, int64_t id, int64_t d_done, int64_t d_dead, int64_t d_retries,
		     int64_t d_prompt, int64_t d_completion, double d_run_secs, struct lh_err *e)
{
	return st->ops->job_add(st, id, d_done, d_dead, d_retries, d_prompt, d_completion, d_run_secs, e);
}

int lh_store_job_set_priority(struct lh_store *st, int64_t id, int priority, struct lh_err *e)
{
	return st->ops->job_set_priority(st, id, priority, e);
}

int lh_store_job_set_rates(struct lh_store *st, int64_t id, double items_per_sec, double tokens_per_sec,
			   double d_run_secs, int64_t in_flight, struct lh_err *e)
{
	return st->ops->job_set_rates(st, id, items_per_sec, tokens_per_sec, d_run_secs, in_flight, e);
}

int lh_store_job_set_error(struct lh_store *st, int64_t id, const char *error_json, struct lh_err *e)
{
	return st->ops->job_set_error(st, id, error_json, e);
}

int lh_store_job_set_text(struct lh_store *st, int64_t id, enum lh_job_text which, const char *value,
			  struct lh_err *e)
{
	if ((unsigned)which > LH_JOB_WAITING)
		return lh_err_set(e, LH_EUSAGE, "could not set a field of job %lld: unknown field %d", (long long)id,
				  (int)which);
	/* The record holds a pause reason in 16 bytes; a longer one could not be read back. */
	if (which == LH_JOB_PAUSE_REASON && value && strlen(value) >= sizeof ((struct lh_job_rec *)0)->pause_reason)
		return lh_err_set(e, LH_EINPUT, "could not set the pause reason of job %lld: \"%s\" is too long",
				  (long long)id, value);
	if (which == LH_JOB_SPEC && !value)
		return lh_err_set(e, LH_EINPUT, "could not set the settings of job %lld: none given", (long long)id);
	return st->ops->job_set_text(st, id, which, value, e);
}

int lh_store_jobs_each(struct lh_store *st, const struct lh_job_filter *f, lh_job_fn fn, void *arg,
		       struct lh_err *e)
{
	static const struct lh_job_filter all;

	if (!f)
		f = &all;
	if (f->order != LH_JOBS_NEWEST && f->order != LH_JOBS_OLDEST && f->order != LH_JOBS_SCHEDULE)
		return lh_err_set(e, LH_EUSAGE, "could not list jobs: unknown order %d", f->order);
	if (f->after_id < 0)
		return lh_err_set(e, LH_EUSAGE, "could not list jobs: bad cursor %lld", (long long)f->after_id);
	return st->ops->jobs_each(st, f, fn, arg, e);
}

int lh_store_jobs_count(struct lh_store *st, const char *state, int64_t *n, struct lh_err *e)
{
	*n = 0;
	return st->ops->jobs_count(st, state, n, e);
}

int lh_store_item_add(struct lh_store *st, int64_t job, int64_t seq, const char *key, size_t key_len,
		      const char *input, size_t input_len, int64_t *dup_seq, struct lh_err *e)
{
	return st->ops->item_add(st, job, seq, key, key_len, input, input_len, dup_seq, e);
}

void lh_claimed_release(struct lh_claimed *c)
{
	if (!c)
		return;
	lh_free(c->key);
	lh_free(c->input);
	c->key = c->input = NULL;
	c->input_len = 0;
}

int lh_store_claim(struct lh_store *st, int64_t job, const char *owner, double now, double lease_secs,
		   size_t max, struct lh_claimed **out, size_t *n, struct lh_err *e)
{
	*out = NULL;
	*n = 0;
	if (!owner || !owner[0])
		return lh_err_set(e, LH_EUSAGE, "could not claim items of job %lld: no owner given", (long long)job);
	if (max == 0)
		return 0;
	return st->ops->claim(st, job, owner, now, lease_secs, max, out, n, e);
}

int lh_store_renew(struct lh_store *st, int64_t job, const char *owner, double deadline, struct lh_err *e)
{
	if (!owner)
		return lh_err_set(e, LH_EUSAGE, "could not renew leases of job %lld: no owner given", (long long)job);
	return st->ops->renew(st, job, owner, deadline, e);
}

int lh_store_release_leases(struct lh_store *st, int64_t job, const char *owner, int64_t *n, struct lh_err *e)
{
	int64_t dummy;

	return st->ops->release_leases(st, job, owner, n ? n : &dummy, e);
}

int lh_store_next_due(struct lh_store *st, int64_t job, double *when, struct lh_err *e)
{
	return st->ops->next_due(st, job, when, e);
}

int lh_store_item_done(struct lh_store *st, int64_t job, int64_t seq, int64_t fence, int attempts,
		       const struct lh_step_rec *step, struct lh_err *e)
{
	return st->ops->item_done(st, job, seq, fence, attempts, step, e);
}

int lh_store_item_retry(struct lh_store *st, int64_t job, int64_t seq, int64_t fence, int attempts,
			double next_try, int status, const char *error, struct lh_err *e)
{
	return st->ops->item_retry(st, job, seq, fence, attempts, next_try, status, error, e);
}

int lh_store_item_dead(struct lh_store *st, int64_t job, int64_t seq, int64_t fence, int attempts,
		       int status, const char *error, struct lh_err *e)
{
	return st->ops->item_dead(st, job, seq, fence, attempts, status, error, e);
}

int lh_store_item_release(struct lh_store *st, int64_t job, int64_t seq, int64_t fence, struct lh_err *e)
{
	return st->ops->item_release(st, job, seq, fence, e);
}

int lh_store_step_put(struct lh_store *st, int64_t job, int64_t seq, int64_t fence,
		      const struct lh_step_rec *step, struct lh_err *e)
{
	if (!step)
		return lh_err_set(e, LH_EUSAGE, "could not journal a step of item %lld: no step given", (long long)seq);
	return st->ops->step_put(st, job, seq, fence, step, e);
}

int lh_store_steps_each(struct lh_store *st, int64_t job, int64_t seq, lh_step_fn fn, void *arg,
			struct lh_err *e)
{
	return st->ops->steps_each(st, job, seq, fn, arg, e);
}

int lh_store_item_counts(struct lh_store *st, int64_t job, int64_t counts[LH_ITEM_NSTATES], struct lh_err *e)
{
	memset(counts, 0, LH_ITEM_NSTATES * sizeof counts[0]);
	return st->ops->item_counts(st, job, counts, e);
}

int lh_store_items_each(struct lh_store *st, int64_t job, unsigned state_mask, lh_item_fn fn, void *arg,
			struct lh_err *e)
{
	/* Only LH_ITEM_NSTATES states exist; a mask without any of them matches nothing. */
	state_mask &= (1u << LH_ITEM_NSTATES) - 1;
	if (!state_mask)
		return 0;
	return st->ops->items_each(st, job, state_mask, fn, arg, e);
}

int lh_store_items_page(struct lh_store *st, int64_t job, unsigned state_mask, int64_t after_seq, size_t limit,
			lh_item_fn fn, void *arg, struct lh_err *e)
{
	state_mask &= (1u << LH_ITEM_NSTATES) - 1;
	if (!state_mask)
		return 0;
	return st->ops->items_page(st, job, state_mask, after_seq, limit, fn, arg, e);
}

int lh_store_items_retry_dead(struct lh_store *st, int64_t job, const char *const *keys, size_t nkeys,
			      int64_t *n, struct lh_err *e)
{
	int64_t dummy;
	size_t i;

	if (!n)
		n = &dummy;
	*n = 0;
	if (nkeys && !keys)
		return lh_err_set(e, LH_EUSAGE, "could not retry dead items of job %lld: no keys given",
				  (long long)job);
	for (i = 0; i < nkeys; i++)
		if (!keys[i])
			return lh_err_set(e, LH_EUSAGE, "could not retry dead items of job %lld: key %zu is NULL",
					  (long long)job, i);
	return st->ops->items_retry_dead(st, job, keys, nkeys, n, e);
}

void lh_step_checksum(const struct lh_step_rec *r, char out[LH_SHA256_HEX])
{
	static const char sep = 0;
	struct lh_sha256_ctx c;

	lh_sha256_init(&c);
	if (r->request_hash)
		lh_sha256_update(&c, r->request_hash, strlen(r->request_hash));
	lh_sha256_update(&c, &sep, 1);
	if (r->response && r->response_len)
		lh_sha256_update(&c, r->response, r->response_len);
	lh_sha256_update(&c, &sep, 1);
	if (r->delta && r->delta_len)
		lh_sha256_update(&c, r->delta, r->delta_len);
	lh_sha256_final_hex(&c, out);
}

int lh_store_item_set_step(struct lh_store *st, int64_t job, int64_t seq, int64_t fence, int step,
			   struct lh_err *e)
{
	if (step < 0)
		return lh_err_set(e, LH_EUSAGE, "could not set the step of item %lld of job %lld: bad step %d",
				  (long long)seq, (long long)job, step);
	return st->ops->item_set_step(st, job, seq, fence, step, e);
}

int lh_store_item_wait(struct lh_store *st, int64_t job, int64_t seq, int64_t fence, int step,
		       const struct lh_step_rec *pending, struct lh_err *e)
{
	if (step < 0 || !pending)
		return lh_err_set(e, LH_EUSAGE, "could not make item %lld of job %lld wait: %s", (long long)seq,
				  (long long)job, pending ? "bad step" : "no approval row given");
	return st->ops->item_wait(st, job, seq, fence, step, pending, e);
}

void lh_item_info_release(struct lh_item_info *i)
{
	if (!i)
		return;
	lh_free(i->key);
	i->key = NULL;
}

int lh_store_item_find(struct lh_store *st, int64_t job, const char *key, struct lh_item_info *out,
		       struct lh_err *e)
{
	memset(out, 0, sizeof *out);
	if (!key)
		return lh_err_set(e, LH_EUSAGE, "could not find an item of job %lld: no key given", (long long)job);
	return st->ops->item_find(st, job, key, out, e);
}

int lh_store_item_decide(struct lh_store *st, int64_t job, int64_t seq, int approve, const struct lh_step_rec *row,
			 const char *error, struct lh_err *e)
{
	if (!row)
		return lh_err_set(e, LH_EUSAGE, "could not decide on item %lld of job %lld: no approval row given",
				  (long long)seq, (long long)job);
	return st->ops->item_decide(st, job, seq, approve != 0, row, error, e);
}

int lh_store_items_reopen(struct lh_store *st, int64_t job, int64_t *n, struct lh_err *e)
{
	int64_t dummy;

	if (!n)
		n = &dummy;
	*n = 0;
	return st->ops->items_reopen(st, job, n, e);
}

int lh_store_reduce_put(struct lh_store *st, int64_t job, int level, int index, const struct lh_step_rec *row,
			struct lh_err *e)
{
	if (!row || level < 0 || index < 0)
		return lh_err_set(e, LH_EUSAGE, "could not journal a reduce call of job %lld: %s", (long long)job,
				  row ? "bad level or index" : "no row given");
	return st->ops->reduce_put(st, job, level, index, row, e);
}

int lh_store_item_steps_done(struct lh_store *st, int64_t job, int64_t *per_step, size_t nsteps,
			     int64_t *waiting, struct lh_err *e)
{
	int64_t dummy;

	if (!waiting)
		waiting = &dummy;
	*waiting = 0;
	if (nsteps && !per_step)
		return lh_err_set(e, LH_EUSAGE, "could not count the steps of job %lld: no array given",
				  (long long)job);
	if (nsteps)
		memset(per_step, 0, nsteps * sizeof per_step[0]);
	return st->ops->item_steps_done(st, job, per_step, nsteps, waiting, e);
}

int lh_store_verify(struct lh_store *st, void (*on_bad)(void *arg, const char *what), void *arg,
		    struct lh_verify_report *out, struct lh_err *e)
{
	memset(out, 0, sizeof *out);
	return st->ops->verify(st, on_bad, arg, out, e);
}

int lh_store_event_add(struct lh_store *st, int64_t job, double ts, const char *type, const char *item_key,
		       const char *data, int64_t *seq, struct lh_err *e)
{
	int64_t dummy;

	if (!type || !type[0])
		return lh_err_set(e, LH_EUSAGE, "could not add an event to job %lld: no type given", (long long)job);
	return st->ops->event_add(st, job, ts, type, item_key, data, seq ? seq : &dummy, e);
}

int lh_store_events_each(struct lh_store *st, int64_t job, int64_t after, size_t limit, lh_event_fn fn,
			 void *arg, struct lh_err *e)
{
	return st->ops->events_each(st, job, after, limit, fn, arg, e);
}

int lh_store_events_all_each(struct lh_store *st, int64_t after_gseq, size_t limit, lh_event_fn fn, void *arg,
			     struct lh_err *e)
{
	return st->ops->events_all_each(st, after_gseq, limit, fn, arg, e);
}

int lh_store_checkpoint(struct lh_store *st, int *log_pages, int *copied, struct lh_err *e)
{
	if (log_pages)
		*log_pages = 0;
	if (copied)
		*copied = 0;
	if (!st->ops->checkpoint)
		return 0;
	return st->ops->checkpoint(st, log_pages, copied, e);
}

void lh_step_describe(char *out, size_t n, int64_t job, int64_t seq, const char *key, int step, int turn)
{
	if (seq < 0)
		snprintf(out, n, "job %lld, reduce level %lld (item %lld), step %d, turn %d", (long long)job,
			 (long long)(-1 - seq), (long long)seq, step, turn);
	else if (key)
		snprintf(out, n, "job %lld, item %lld (%.200s), step %d, turn %d", (long long)job, (long long)seq, key,
			 step, turn);
	else
		snprintf(out, n, "job %lld, item %lld, step %d, turn %d", (long long)job, (long long)seq, step, turn);
}

int lh_step_checksum_ok(const char *request_hash, const char *response, size_t response_len, const char *delta,
			size_t delta_len, const char *stored)
{
	struct lh_step_rec r;
	char sum[LH_SHA256_HEX];

	if (!stored)
		return 0;
	memset(&r, 0, sizeof r);
	r.request_hash = request_hash;
	r.response = response;
	r.response_len = response_len;
	r.delta = delta;
	r.delta_len = delta_len;
	lh_step_checksum(&r, sum);
	return strcmp(sum, stored) == 0;
}
