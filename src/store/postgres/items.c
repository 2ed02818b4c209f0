/*
 * store layer: the PostgreSQL backend's items, claims, journal, approvals,
 * re-runs, reduce rows and verification (the statements are in
 * postgres_internal.h; the semantics are sqlite.c's and journal.c's).
 *
 * A claim is one statement (Q_CLAIM): three index-ordered picks (due
 * retries, expired leases, pending items), each LIMIT n FOR UPDATE SKIP
 * LOCKED so that workers never wait for each other, merged in that order
 * and cut to n, then one UPDATE ... RETURNING that leases them and bumps
 * their fence. Every fenced write names (seq, fence, state = leased) in its
 * WHERE: an UPDATE that finds the row locked waits, then re-checks the
 * fence on the newest row version, so a stale lease changes nothing.
 */
#include "store/postgres/postgres_internal.h"
#include "util/time.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- items ---- */

int pg_item_add(struct lh_store *st, int64_t job, int64_t seq, const char *key, size_t key_len,
		const char *input, size_t input_len, int64_t *dup_seq, struct lh_err *e)
{
	struct pg_store *s = pgs(st);
	struct pg_args a;
	PGresult *r;
	int64_t changes = 0, other = -1;
	int rc;

	/* One statement: the item and its input, or nothing on a conflict, so
	 * that the caller's transaction (an ingest) goes on past a duplicate. */
	pg_args_init(&a);
	pg_arg_i64(&a, job);
	pg_arg_i64(&a, seq);
	pg_arg_sn(&a, key, key_len);
	pg_arg_f(&a, lh_wall());
	pg_arg_bin(&a, input ? input : "", input ? input_len : 0);
	rc = pg_run(s, Q_ITEM_ADD, &a, NULL, &changes, e, "add an item");
	if (rc || changes == 1)
		return rc;
	pg_args_init(&a);
	pg_arg_i64(&a, job);
	pg_arg_sn(&a, key, key_len);
	rc = pg_run(s, Q_ITEM_BY_KEY, &a, &r, NULL, e, "look up an item key");
	if (rc)
		return rc;
	if (PQntuples(r) == 1)
		other = pg_i64(r, 0, 0);
	PQclear(r);
	if (dup_seq)
		*dup_seq = other;
	if (other >= 0)
		return lh_err_set(e, LH_EINPUT, "duplicate key \"%.*s\": item %lld has it already",
				  (int)(key_len > 200 ? 200 : key_len), key, (long long)other);
	return lh_err_set(e, LH_EINPUT, "could not add item %lld to job %lld: that seq is taken by another key",
			  (long long)seq, (long long)job);
}

struct pick {
	struct lh_claimed c;
	int k;
	double t;
};

static int pick_cmp(const void *pa, const void *pb)
{
	const struct pick *a = pa, *b = pb;

	if (a->k != b->k)
		return a->k < b->k ? -1 : 1;
	if (a->t != b->t)
		return a->t < b->t ? -1 : 1;
	return a->c.seq < b->c.seq ? -1 : a->c.seq > b->c.seq;
}

/* Copies a bytea column (hex text) into a new NUL-terminated buffer. */
static char *unescape_input(const PGresult *r, int row, int col, size_t *n)
{
	unsigned char *raw = PQunescapeBytea((const unsigned char *)PQgetvalue(r, row, col), n);
	char *out;

	if (!raw)
		abort(); /* out of memory, as lh_xmalloc */
	out = lh_xmalloc(*n + 1);
	if (*n)
		memcpy(out, raw, *n);
	out[*n] = '\0';
	PQfreemem(raw);
	return out;
}

int pg_claim(struct lh_store *st, int64_t job, const char *owner, double now, double lease_secs, size_t max,
	     struct lh_claimed **out, size_t *n, struct lh_err *e)
{
	struct pg_store *s = pgs(st);
	struct pg_args a;
	struct pick *p;
	PGresult *r;
	int i, k, rc;

	pg_args_init(&a);
	pg_arg_i64(&a, job);
	pg_arg_f(&a, now);
	pg_arg_i64(&a, max > (size_t)INT64_MAX ? INT64_MAX : (int64_t)max);
	pg_arg_s(&a, owner);
	pg_arg_f(&a, now + lease_secs);
	rc = pg_run(s, Q_CLAIM, &a, &r, NULL, e, "claim items");
	if (rc)
		return rc;
	k = PQntuples(r);
	if (k == 0) {
		PQclear(r);
		return 0;
	}
	/* RETURNING has no order: the rows come back sorted here. */
	p = lh_xcalloc((size_t)k, sizeof *p);
	for (i = 0; i < k; i++) {
		p[i].c.seq = pg_i64(r, i, 0);
		p[i].c.key = pg_dup(r, i, 1);
		p[i].c.attempts = (int)pg_i64(r, i, 2);
		p[i].c.fence = pg_i64(r, i, 3);
		p[i].c.input = unescape_input(r, i, 4, &p[i].c.input_len);
		p[i].k = (int)pg_i64(r, i, 5);
		p[i].t = pg_f(r, i, 6);
	}
	PQclear(r);
	qsort(p, (size_t)k, sizeof *p, pick_cmp);
	*out = lh_xcalloc((size_t)k, sizeof **out);
	for (i = 0; i < k; i++)
		(*out)[i] = p[i].c;
	lh_free(p);
	*n = (size_t)k;
	return 0;
}

int pg_renew(struct lh_store *st, int64_t job, const char *owner, double deadline, struct lh_err *e)
{
	struct pg_args a;

	pg_args_init(&a);
	pg_arg_i64(&a, job);
	pg_arg_s(&a, owner);
	pg_arg_f(&a, deadline);
	return pg_run(pgs(st), Q_RENEW, &a, NULL, NULL, e, "renew leases");
}

int pg_release_leases(struct lh_store *st, int64_t job, const char *owner, int64_t *n, struct lh_err *e)
{
	struct pg_args a;

	pg_args_init(&a);
	pg_arg_i64(&a, job);
	if (owner)
		pg_arg_s(&a, owner);
	pg_arg_f(&a, lh_wall());
	return pg_run(pgs(st), owner ? Q_RELEASE_OWNER : Q_RELEASE_ALL, &a, NULL, n, e, "release leases");
}

int pg_next_due(struct lh_store *st, int64_t job, double *when, struct lh_err *e)
{
	struct pg_args a;
	PGresult *r;
	int rc;

	pg_args_init(&a);
	pg_arg_i64(&a, job);
	rc = pg_run(pgs(st), Q_NEXT_DUE, &a, &r, NULL, e, "find the next retry time");
	if (rc)
		return rc;
	if (PQntuples(r) == 1 && !PQgetisnull(r, 0, 0))
		*when = pg_f(r, 0, 0);
	else
		rc = lh_err_set(e, LH_ENOTFOUND, "job %lld has no item waiting to retry", (long long)job);
	PQclear(r);
	return rc;
}

static void fence_args(struct pg_args *a, int64_t job, int64_t seq, int64_t fence)
{
	pg_args_init(a);
	pg_arg_i64(a, job);
	pg_arg_i64(a, seq);
	pg_arg_i64(a, fence);
}

/* Parameters $1..$18 of a journal row (PG_STEP_VALS). sum must live until
 * the statement ran. */
static void step_args(struct pg_args *a, int64_t job, int64_t seq, const struct lh_step_rec *r,
		      char sum[LH_SHA256_HEX])
{
	struct lh_step_rec c = *r;

	if (c.delta && !c.delta_len)
		c.delta_len = strlen(c.delta);
	lh_step_checksum(&c, sum);
	pg_args_init(a);
	pg_arg_i64(a, job);
	pg_arg_i64(a, seq);
	pg_arg_i64(a, c.step);
	pg_arg_i64(a, c.attempt);
	pg_arg_s(a, c.request_hash);
	pg_arg_i64(a, c.status);
	pg_arg_s(a, c.request_id);
	pg_arg_sn(a, c.response, c.response_len);
	pg_arg_i64(a, c.prompt_tokens);
	pg_arg_i64(a, c.completion_tokens);
	pg_arg_f(a, c.started_at);
	pg_arg_f(a, c.first_byte_at);
	pg_arg_f(a, c.ended_at);
	pg_arg_i64(a, c.turn);
	pg_arg_s(a, c.kind ? c.kind : "llm");
	pg_arg_s(a, c.model);
	pg_arg_sn(a, c.delta, c.delta_len);
	pg_arg_s(a, sum);
}

/* Writes a row with no guard (the caller checked the item in this
 * transaction, or the row belongs to no item). */
static int insert_row(struct pg_store *s, int64_t job, int64_t seq, const struct lh_step_rec *r, struct lh_err *e)
{
	char sum[LH_SHA256_HEX];
	struct pg_args a;

	step_args(&a, job, seq, r, sum);
	return pg_run(s, Q_STEP_INSERT, &a, NULL, NULL, e, "journal a step");
}

int pg_item_done(struct lh_store *st, int64_t job, int64_t seq, int64_t fence, int attempts,
		 const struct lh_step_rec *step, struct lh_err *e)
{
	struct pg_store *s = pgs(st);
	struct pg_args a;
	int own, rc;

	rc = pg_tx_enter(s, &own, e);
	if (rc)
		return rc;
	fence_args(&a, job, seq, fence);
	pg_arg_i64(&a, attempts);
	pg_arg_f(&a, lh_wall());
	rc = pg_fenced(s, Q_ITEM_DONE, &a, job, seq, fence, e, "done");
	/* The state changed first, so a fenced item never reaches the journal. */
	if (rc == 0 && step)
		rc = insert_row(s, job, seq, step, e);
	return pg_tx_leave(s, own, rc, e);
}

int pg_item_retry(struct lh_store *st, int64_t job, int64_t seq, int64_t fence, int attempts, double next_try,
		  int status, const char *error, struct lh_err *e)
{
	struct pg_args a;

	fence_args(&a, job, seq, fence);
	pg_arg_i64(&a, attempts);
	pg_arg_f(&a, next_try);
	pg_arg_i64(&a, status);
	pg_arg_s(&a, error);
	pg_arg_f(&a, lh_wall());
	return pg_fenced(pgs(st), Q_ITEM_RETRY, &a, job, seq, fence, e, "for retry");
}

int pg_item_dead(struct lh_store *st, int64_t job, int64_t seq, int64_t fence, int attempts, int status,
		 const char *error, struct lh_err *e)
{
	struct pg_args a;

	fence_args(&a, job, seq, fence);
	pg_arg_i64(&a, attempts);
	pg_arg_i64(&a, status);
	pg_arg_s(&a, error);
	pg_arg_f(&a, lh_wall());
	return pg_fenced(pgs(st), Q_ITEM_DEAD, &a, job, seq, fence, e, "dead");
}

int pg_item_release(struct lh_store *st, int64_t job, int64_t seq, int64_t fence, struct lh_err *e)
{
	struct pg_args a;

	fence_args(&a, job, seq, fence);
	pg_arg_f(&a, lh_wall());
	return pg_fenced(pgs(st), Q_ITEM_RELEASE, &a, job, seq, fence, e, "pending");
}

int pg_item_counts(struct lh_store *st, int64_t job, int64_t counts[LH_ITEM_NSTATES], struct lh_err *e)
{
	struct pg_args a;
	PGresult *r;
	char what[64];
	int i, rc;

	snprintf(what, sizeof what, "count the items of job %lld", (long long)job);
	pg_args_init(&a);
	pg_arg_i64(&a, job);
	rc = pg_run(pgs(st), Q_ITEM_COUNTS, &a, &r, NULL, e, what);
	if (rc)
		return rc;
	for (i = 0; i < PQntuples(r); i++) {
		int64_t state = pg_i64(r, i, 0);
		if (state >= LH_ITEM_PENDING && state < LH_ITEM_NSTATES)
			counts[state] = pg_i64(r, i, 1);
	}
	PQclear(r);
	return 0;
}

static int row_damaged(struct pg_store *s, int64_t job, int64_t seq, const char *key, int step, int turn,
		       struct lh_err *e)
{
	char where[320];

	lh_step_describe(where, sizeof where, job, seq, key, step, turn);
	return lh_err_set(e, LH_ECORRUPT, "journal row damaged: %s: checksum mismatch in store \"%s\"", where,
			  s->where);
}

static size_t len_of(const PGresult *r, int row, int col)
{
	return PQgetisnull(r, row, col) ? 0 : (size_t)PQgetlength(r, row, col);
}

static int walk_items(struct pg_store *s, enum pg_query id, struct pg_args *a, int64_t job, lh_item_fn fn,
		      void *arg, struct lh_err *e)
{
	PGresult *r;
	char what[64];
	int i, rc, ret = 0;

	snprintf(what, sizeof what, "list the items of job %lld", (long long)job);
	rc = pg_run(s, id, a, &r, NULL, e, what);
	if (rc)
		return rc;
	for (i = 0; i < PQntuples(r) && ret == 0; i++) {
		struct lh_item_view v;

		memset(&v, 0, sizeof v);
		v.seq = pg_i64(r, i, 0);
		v.key = pg_s(r, i, 1);
		v.state = (int)pg_i64(r, i, 2);
		v.attempts = (int)pg_i64(r, i, 3);
		v.last_status = (int)pg_i64(r, i, 4);
		v.last_error = pg_s(r, i, 5);
		v.response = pg_s(r, i, 6);
		v.response_len = len_of(r, i, 6);
		v.status = (int)pg_i64(r, i, 7);
		v.request_id = pg_s(r, i, 8);
		v.prompt_tokens = pg_i64(r, i, 9);
		v.completion_tokens = pg_i64(r, i, 10);
		v.started_at = pg_f(r, i, 11);
		v.first_byte_at = pg_f(r, i, 12);
		v.ended_at = pg_f(r, i, 13);
		if (!PQgetisnull(r, i, 17) &&
		    !lh_step_checksum_ok(pg_s(r, i, 14), v.response, v.response_len, pg_s(r, i, 15), len_of(r, i, 15), pg_s(r, i, 16)))
			ret = row_damaged(s, job, v.seq, v.key, 0, 0, e);
		if (ret == 0)
			ret = fn(&v, arg);
	}
	PQclear(r);
	return ret;
}

int pg_items_page(struct lh_store *st, int64_t job, unsigned state_mask, int64_t after_seq, size_t limit,
		  lh_item_fn fn, void *arg, struct lh_err *e)
{
	int one = __builtin_popcount(state_mask) == 1;
	struct pg_args a;

	pg_args_init(&a);
	pg_arg_i64(&a, job);
	pg_arg_i64(&a, one ? __builtin_ctz(state_mask) : (int64_t)state_mask);
	pg_arg_i64(&a, after_seq);
	if (limit)
		pg_arg_i64(&a, limit > (size_t)INT64_MAX ? INT64_MAX : (int64_t)limit);
	else
		pg_arg_s(&a, NULL);
	return walk_items(pgs(st), one ? Q_ITEMS_STATE : Q_ITEMS_MASK, &a, job, fn, arg, e);
}

int pg_items_each(struct lh_store *st, int64_t job, unsigned state_mask, lh_item_fn fn, void *arg,
		  struct lh_err *e)
{
	return pg_items_page(st, job, state_mask, INT64_MIN, 0, fn, arg, e);
}

int pg_items_retry_dead(struct lh_store *st, int64_t job, const char *const *keys, size_t nkeys, int64_t *n,
			struct lh_err *e)
{
	struct pg_store *s = pgs(st);
	double now = lh_wall();
	struct pg_args a;
	int64_t total = 0, changes;
	char what[64];
	int own, rc;
	size_t i;

	snprintf(what, sizeof what, "retry the dead items of job %lld", (long long)job);
	rc = pg_tx_enter(s, &own, e);
	if (rc == 0)
		rc = pg_job_exists(s, job, e, what);
	if (rc == 0 && nkeys == 0) {
		pg_args_init(&a);
		pg_arg_i64(&a, job);
		pg_arg_f(&a, now);
		rc = pg_run(s, Q_RETRY_DEAD_ALL, &a, NULL, &total, e, what);
	}
	for (i = 0; rc == 0 && i < nkeys; i++) {
		pg_args_init(&a);
		pg_arg_i64(&a, job);
		pg_arg_f(&a, now);
		pg_arg_s(&a, keys[i]);
		rc = pg_run(s, Q_RETRY_DEAD_KEY, &a, NULL, &changes, e, what);
		total += changes;
		if (rc == 0 && changes == 0) {
			struct lh_item_info info;
			rc = pg_item_find(st, job, keys[i], &info, e);
			lh_item_info_release(&info);
		}
	}
	if (rc == 0 && total > 0) {
		pg_args_init(&a);
		pg_arg_i64(&a, job);
		pg_arg_i64(&a, total);
		pg_arg_f(&a, now);
		rc = pg_run(s, Q_JOB_SUB_DEAD, &a, NULL, NULL, e, what);
	}
	rc = pg_tx_leave(s, own, rc, e);
	*n = rc ? 0 : total;
	return rc;
}

/* ---- the journal ---- */

int pg_step_put(struct lh_store *st, int64_t job, int64_t seq, int64_t fence, const struct lh_step_rec *step,
		struct lh_err *e)
{
	char sum[LH_SHA256_HEX];
	struct pg_args a;
	int64_t changes = 0;
	int rc;

	/* One statement copies the row only while the lease is held (FOR
	 * SHARE keeps a claim from moving the fence under it). */
	step_args(&a, job, seq, step, sum);
	pg_arg_i64(&a, fence);
	rc = pg_run(pgs(st), Q_STEP_PUT, &a, NULL, &changes, e, "journal a step");
	if (rc == 0 && changes != 1)
		rc = lh_err_set(e, LH_EFENCED,
				"could not journal step %d, turn %d of item %lld of job %lld: its lease with fence %lld"
				" is no longer held", step->step, step->turn, (long long)seq, (long long)job,
				(long long)fence);
	return rc;
}

int pg_item_set_step(struct lh_store *st, int64_t job, int64_t seq, int64_t fence, int step, struct lh_err *e)
{
	struct pg_args a;

	fence_args(&a, job, seq, fence);
	pg_arg_i64(&a, step);
	pg_arg_f(&a, lh_wall());
	return pg_fenced(pgs(st), Q_ITEM_SET_STEP, &a, job, seq, fence, e, "at a new step");
}

int pg_item_wait(struct lh_store *st, int64_t job, int64_t seq, int64_t fence, int step,
		 const struct lh_step_rec *pending, struct lh_err *e)
{
	struct pg_store *s = pgs(st);
	struct pg_args a;
	int own, rc;

	rc = pg_tx_enter(s, &own, e);
	if (rc)
		return rc;
	fence_args(&a, job, seq, fence);
	pg_arg_i64(&a, step);
	pg_arg_f(&a, lh_wall());
	rc = pg_fenced(s, Q_ITEM_WAIT, &a, job, seq, fence, e, "waiting");
	if (rc == 0)
		rc = insert_row(s, job, seq, pending, e);
	return pg_tx_leave(s, own, rc, e);
}

int pg_item_find(struct lh_store *st, int64_t job, const char *key, struct lh_item_info *out, struct lh_err *e)
{
	struct pg_args a;
	PGresult *r;
	int rc;

	memset(out, 0, sizeof *out);
	pg_args_init(&a);
	pg_arg_i64(&a, job);
	pg_arg_s(&a, key);
	rc = pg_run(pgs(st), Q_ITEM_FIND, &a, &r, NULL, e, "look up an item key");
	if (rc)
		return rc;
	if (PQntuples(r) == 1) {
		out->seq = pg_i64(r, 0, 0);
		out->state = (int)pg_i64(r, 0, 1);
		out->step = (int)pg_i64(r, 0, 2);
		out->attempts = (int)pg_i64(r, 0, 3);
		out->key = pg_dup(r, 0, 4);
	} else {
		rc = lh_err_set(e, LH_ENOTFOUND, "job %lld has no item \"%.200s\"", (long long)job, key);
	}
	PQclear(r);
	return rc;
}

static int apply_decision(struct pg_store *s, int64_t job, int64_t seq, int approve, const char *error,
			  struct lh_err *e)
{
	double now = lh_wall();
	struct pg_args a;
	int rc;

	pg_args_init(&a);
	pg_arg_i64(&a, job);
	pg_arg_i64(&a, seq);
	if (!approve)
		pg_arg_s(&a, error);
	pg_arg_f(&a, now);
	rc = pg_run(s, approve ? Q_ITEM_APPROVE : Q_ITEM_REJECT, &a, NULL, NULL, e,
		    approve ? "approve an item" : "reject an item");
	if (rc || approve)
		return rc;
	pg_args_init(&a);
	pg_arg_i64(&a, job);
	pg_arg_i64(&a, 0);
	pg_arg_i64(&a, 1);
	pg_arg_i64(&a, 0);
	pg_arg_i64(&a, 0);
	pg_arg_i64(&a, 0);
	pg_arg_f(&a, 0);
	pg_arg_f(&a, now);
	return pg_run(s, Q_JOB_ADD, &a, NULL, NULL, e, "count a rejected item");
}

int pg_item_decide(struct lh_store *st, int64_t job, int64_t seq, int approve, const struct lh_step_rec *row,
		   const char *error, struct lh_err *e)
{
	struct pg_store *s = pgs(st);
	struct pg_args a;
	PGresult *r = NULL;
	int own, state = 0, rc;

	/* The item's row is locked (FOR UPDATE) while it is read: two people
	 * deciding at once are served one after the other. */
	rc = pg_tx_enter(s, &own, e);
	if (rc)
		return rc;
	pg_args_init(&a);
	pg_arg_i64(&a, job);
	pg_arg_i64(&a, seq);
	rc = pg_run(s, Q_ITEM_STATE_LOCK, &a, &r, NULL, e, "read the state of an item");
	if (rc == 0 && PQntuples(r) != 1)
		rc = lh_err_set(e, LH_ENOTFOUND, "job %lld has no item %lld", (long long)job, (long long)seq);
	if (rc == 0)
		state = (int)pg_i64(r, 0, 0);
	PQclear(r);
	if (rc == 0 && state != LH_ITEM_WAITING)
		rc = lh_err_set(e, LH_ESTATE, "could not %s item %lld of job %lld: it is %s, not waiting",
				approve ? "approve" : "reject", (long long)seq, (long long)job,
				lh_item_state_name(state));
	if (rc == 0)
		rc = insert_row(s, job, seq, row, e);
	if (rc == 0)
		rc = apply_decision(s, job, seq, approve, error, e);
	return pg_tx_leave(s, own, rc, e);
}

int pg_items_reopen(struct lh_store *st, int64_t job, int64_t *n, struct lh_err *e)
{
	struct pg_store *s = pgs(st);
	double now = lh_wall();
	struct pg_args a;
	int64_t changes = 0;
	char what[64];
	int own, rc;

	snprintf(what, sizeof what, "re-open the done items of job %lld", (long long)job);
	rc = pg_tx_enter(s, &own, e);
	if (rc == 0)
		rc = pg_job_exists(s, job, e, what);
	if (rc == 0) {
		pg_args_init(&a);
		pg_arg_i64(&a, job);
		pg_arg_f(&a, now);
		rc = pg_run(s, Q_ITEMS_REOPEN, &a, NULL, &changes, e, what);
	}
	if (rc == 0 && changes > 0) {
		pg_args_init(&a);
		pg_arg_i64(&a, job);
		pg_arg_i64(&a, changes);
		pg_arg_f(&a, now);
		rc = pg_run(s, Q_JOB_SUB_DONE, &a, NULL, NULL, e, what);
	}
	rc = pg_tx_leave(s, own, rc, e);
	*n = rc ? 0 : changes;
	return rc;
}

int pg_reduce_put(struct lh_store *st, int64_t job, int level, int index, const struct lh_step_rec *row,
		  struct lh_err *e)
{
	struct pg_store *s = pgs(st);
	struct lh_step_rec r = *row;
	char what[80];
	int own, rc;

	snprintf(what, sizeof what, "journal a reduce call of job %lld", (long long)job);
	r.step = index;
	r.turn = 0;
	rc = pg_tx_enter(s, &own, e);
	if (rc == 0)
		rc = pg_job_exists(s, job, e, what);
	if (rc == 0)
		rc = insert_row(s, job, -1 - (int64_t)level, &r, e);
	return pg_tx_leave(s, own, rc, e);
}

/* The key of item seq, for a message (new string), or NULL. */
static char *item_key(struct pg_store *s, int64_t job, int64_t seq)
{
	struct pg_args a;
	PGresult *r;
	char *key = NULL;

	pg_args_init(&a);
	pg_arg_i64(&a, job);
	pg_arg_i64(&a, seq);
	if (pg_run(s, Q_ITEM_KEY, &a, &r, NULL, NULL, "read an item's key") == 0) {
		if (PQntuples(r) == 1)
			key = pg_dup(r, 0, 0);
		PQclear(r);
	}
	return key;
}

int pg_steps_each(struct lh_store *st, int64_t job, int64_t seq, lh_step_fn fn, void *arg, struct lh_err *e)
{
	struct pg_store *s = pgs(st);
	struct pg_args a;
	PGresult *r;
	char what[80];
	int i, rc, ret = 0;

	snprintf(what, sizeof what, "read the journal of item %lld of job %lld", (long long)seq, (long long)job);
	pg_args_init(&a);
	pg_arg_i64(&a, job);
	pg_arg_i64(&a, seq);
	rc = pg_run(s, Q_STEPS_EACH, &a, &r, NULL, e, what);
	if (rc)
		return rc;
	for (i = 0; i < PQntuples(r) && ret == 0; i++) {
		struct lh_step_rec x;
		const char *kind = pg_s(r, i, 12), *sum = pg_s(r, i, 15);

		memset(&x, 0, sizeof x);
		x.step = (int)pg_i64(r, i, 0);
		x.turn = (int)pg_i64(r, i, 1);
		x.attempt = (int)pg_i64(r, i, 2);
		x.request_hash = pg_s(r, i, 3);
		x.status = (int)pg_i64(r, i, 4);
		x.request_id = pg_s(r, i, 5);
		x.response = pg_s(r, i, 6);
		x.response_len = len_of(r, i, 6);
		x.prompt_tokens = pg_i64(r, i, 7);
		x.completion_tokens = pg_i64(r, i, 8);
		x.started_at = pg_f(r, i, 9);
		x.first_byte_at = pg_f(r, i, 10);
		x.ended_at = pg_f(r, i, 11);
		x.kind = kind ? kind : "llm";
		x.model = pg_s(r, i, 13);
		x.delta = pg_s(r, i, 14);
		x.delta_len = len_of(r, i, 14);
		if (sum)
			snprintf(x.checksum, sizeof x.checksum, "%s", sum);
		x.seq = pg_i64(r, i, 16);
		if (!lh_step_checksum_ok(x.request_hash, x.response, x.response_len, x.delta, x.delta_len, sum)) {
			char *key = seq >= 0 ? item_key(s, job, seq) : NULL;
			ret = row_damaged(s, job, seq, key, x.step, x.turn, e);
			lh_free(key);
			break;
		}
		ret = fn(&x, arg);
	}
	PQclear(r);
	return ret;
}

/* Adds n items at step pointer step (clamped to nsteps) to the steps they
 * have finished: done items every step, the others those before step. */
static void count_steps(int64_t *per_step, size_t nsteps, int state, int64_t step, int64_t n)
{
	size_t upto = state == LH_ITEM_DONE ? nsteps : step < 0 ? 0 : (size_t)step;
	size_t i;

	if (upto > nsteps)
		upto = nsteps;
	for (i = 0; i < upto; i++)
		per_step[i] += n;
}

int pg_item_steps_done(struct lh_store *st, int64_t job, int64_t *per_step, size_t nsteps, int64_t *waiting,
		       struct lh_err *e)
{
	struct pg_args a;
	PGresult *r;
	char what[64];
	int i, rc;

	snprintf(what, sizeof what, "count the finished steps of job %lld", (long long)job);
	pg_args_init(&a);
	pg_arg_i64(&a, job);
	rc = pg_run(pgs(st), Q_STEPS_DONE, &a, &r, NULL, e, what);
	if (rc)
		return rc;
	for (i = 0; i < PQntuples(r); i++) {
		int state = (int)pg_i64(r, i, 0);
		int64_t n = pg_i64(r, i, 2);

		if (state == LH_ITEM_WAITING)
			*waiting += n;
		count_steps(per_step, nsteps, state, pg_i64(r, i, 1), n);
	}
	PQclear(r);
	return 0;
}

/* ---- verification ---- */

static void problem(struct lh_verify_report *out, void (*on_bad)(void *arg, const char *what), void *arg,
		    const char *what)
{
	if (!out->first_problem[0])
		snprintf(out->first_problem, sizeof out->first_problem, "%s", what);
	if (on_bad)
		on_bad(arg, what);
}

static int count_all(struct pg_store *s, enum pg_query id, int64_t *n, struct lh_err *e)
{
	PGresult *r;
	int rc = pg_run(s, id, NULL, &r, NULL, e, "count the rows of the store");

	if (rc)
		return rc;
	*n = pg_i64(r, 0, 0);
	PQclear(r);
	return 0;
}

int pg_verify(struct lh_store *st, void (*on_bad)(void *arg, const char *what), void *arg,
	      struct lh_verify_report *out, struct lh_err *e)
{
	struct pg_store *s = pgs(st);
	int64_t job = INT64_MIN, seq = INT64_MIN, step = INT32_MIN, turn = INT32_MIN;
	char where[320], line[400];
	int rc, i, k;

	/* PostgreSQL checks its own pages (checksums, when the cluster has
	 * them, and amcheck are the operator's); here, every journal row. */
	out->integrity_ok = 1;
	rc = count_all(s, Q_JOBS_COUNT, &out->jobs, e);
	if (rc == 0)
		rc = count_all(s, Q_ITEMS_COUNT_ALL, &out->items, e);
	/* In pages of 1000 rows by key, so that memory stays bounded. */
	do {
		struct pg_args a;
		PGresult *r;

		if (rc)
			break;
		pg_args_init(&a);
		pg_arg_i64(&a, job);
		pg_arg_i64(&a, seq);
		pg_arg_i64(&a, step);
		pg_arg_i64(&a, turn);
		rc = pg_run(s, Q_VERIFY_ROWS, &a, &r, NULL, e, "verify the journal");
		if (rc)
			break;
		k = PQntuples(r);
		for (i = 0; i < k; i++) {
			job = pg_i64(r, i, 0);
			seq = pg_i64(r, i, 1);
			step = pg_i64(r, i, 2);
			turn = pg_i64(r, i, 3);
			out->rows++;
			if (lh_step_checksum_ok(pg_s(r, i, 4), pg_s(r, i, 5), len_of(r, i, 5), pg_s(r, i, 6), len_of(r, i, 6),
				   pg_s(r, i, 7)))
				continue;
			out->bad_rows++;
			lh_step_describe(where, sizeof where, job, seq, pg_s(r, i, 8), (int)step, (int)turn);
			snprintf(line, sizeof line, "journal row damaged: %s: checksum mismatch", where);
			problem(out, on_bad, arg, line);
		}
		PQclear(r);
	} while (k == 1000);
	return rc;
}
