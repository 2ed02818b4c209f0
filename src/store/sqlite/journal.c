/*
 * store layer: the SQLite backend's journal (the steps table) and what
 * pipelines do with it: journal rows with their checksums, the step
 * pointer, approvals (waiting items and a person's decision), re-running
 * done items, a reduce's rows, progress per step, and the whole-store
 * verification behind `longhaul verify`.
 *
 * Every row is written with its checksum (lh_step_checksum, store.c, the
 * same for every backend) and every read checks it before the row goes
 * anywhere: a damaged row is reported with its job, item, step and turn,
 * never handed on as a result (design.md, guarantee 5).
 */
#include "store/sqlite/sqlite_internal.h"
#include "util/time.h"

#include <stdio.h>
#include <string.h>

/* ---- checksums ---- */

static void sql_step_checksum(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
	struct lh_step_rec r;
	char sum[LH_SHA256_HEX];

	memset(&r, 0, sizeof r);
	r.request_hash = (const char *)sqlite3_value_text(argv[0]);
	r.response = (const char *)sqlite3_value_text(argv[1]);
	r.response_len = (size_t)sqlite3_value_bytes(argv[1]);
	r.delta = (const char *)sqlite3_value_text(argv[2]);
	r.delta_len = (size_t)sqlite3_value_bytes(argv[2]);
	lh_step_checksum(&r, sum);
	sqlite3_result_text(ctx, sum, LH_SHA256_HEX - 1, SQLITE_TRANSIENT);
}

int sq_register_functions(struct sq_store *s)
{
	return sqlite3_create_function(s->db, "lh_step_checksum", 3,
				       SQLITE_UTF8 | SQLITE_DETERMINISTIC | SQLITE_DIRECTONLY, NULL,
				       sql_step_checksum, NULL, NULL);
}

int sq_check_row(struct sq_store *s, int64_t job, int64_t seq, const char *key, int step, int turn,
		 const char *request_hash, const char *response, size_t response_len, const char *delta,
		 size_t delta_len, const char *stored, struct lh_err *e)
{
	char where[320];

	if (lh_step_checksum_ok(request_hash, response, response_len, delta, delta_len, stored))
		return 0;
	lh_step_describe(where, sizeof where, job, seq, key, step, turn);
	return lh_err_set(e, LH_ECORRUPT, "journal row damaged: %s: checksum mismatch in store \"%s\"", where,
			  s->path);
}

/* ---- writes ---- */

int sq_bind_step(sqlite3_stmt *q, int64_t job, int64_t seq, int64_t fence, const struct lh_step_rec *r,
		 char sum[LH_SHA256_HEX])
{
	struct lh_step_rec c = *r;
	int brc = 0;

	/* A delta given without its length is a C string. */
	if (c.delta && !c.delta_len)
		c.delta_len = strlen(c.delta);
	lh_step_checksum(&c, sum);
	brc |= sqlite3_bind_int64(q, 1, job);
	brc |= sqlite3_bind_int64(q, 2, seq);
	brc |= sqlite3_bind_int64(q, 3, fence);
	brc |= sqlite3_bind_int(q, 4, c.step);
	brc |= sqlite3_bind_int(q, 5, c.attempt);
	brc |= sq_bind_str(q, 6, c.request_hash);
	brc |= sqlite3_bind_int(q, 7, c.status);
	brc |= sq_bind_str(q, 8, c.request_id);
	brc |= sq_bind_text_n(q, 9, c.response, c.response_len);
	brc |= sqlite3_bind_int64(q, 10, c.prompt_tokens);
	brc |= sqlite3_bind_int64(q, 11, c.completion_tokens);
	brc |= sqlite3_bind_double(q, 12, c.started_at);
	brc |= sqlite3_bind_double(q, 13, c.first_byte_at);
	brc |= sqlite3_bind_double(q, 14, c.ended_at);
	brc |= sqlite3_bind_int(q, 15, c.turn);
	brc |= sq_bind_str(q, 16, c.kind ? c.kind : "llm");
	brc |= sq_bind_str(q, 17, c.model);
	brc |= sq_bind_text_n(q, 18, c.delta, c.delta_len);
	brc |= sqlite3_bind_text(q, 19, sum, LH_SHA256_HEX - 1, SQLITE_STATIC);
	return brc;
}

/* Writes a row with no guard (the caller checked the item in this
 * transaction, or the row belongs to no item). */
static int insert_row(struct sq_store *s, int64_t job, int64_t seq, const struct lh_step_rec *r, struct lh_err *e)
{
	sqlite3_stmt *q = sq_stmt(s, Q_STEP_INSERT);
	char sum[LH_SHA256_HEX];

	return sq_run(s, q, sq_bind_step(q, job, seq, 0, r, sum), NULL, e, "journal a step");
}

int sq_step_put(struct lh_store *st, int64_t job, int64_t seq, int64_t fence, const struct lh_step_rec *step,
		struct lh_err *e)
{
	struct sq_store *s = sq(st);
	sqlite3_stmt *q = sq_stmt(s, Q_STEP_PUT);
	char sum[LH_SHA256_HEX];
	int changes = 0, rc;

	/* One statement copies the row only while the lease is held. */
	rc = sq_run(s, q, sq_bind_step(q, job, seq, fence, step, sum), &changes, e, "journal a step");
	if (rc == 0 && changes != 1)
		rc = lh_err_set(e, LH_EFENCED,
				"could not journal step %d, turn %d of item %lld of job %lld: its lease with fence %lld"
				" is no longer held", step->step, step->turn, (long long)seq, (long long)job,
				(long long)fence);
	return rc;
}

int sq_item_set_step(struct lh_store *st, int64_t job, int64_t seq, int64_t fence, int step, struct lh_err *e)
{
	struct sq_store *s = sq(st);
	sqlite3_stmt *q = sq_stmt(s, Q_ITEM_SET_STEP);
	int brc = 0;

	brc |= sqlite3_bind_int64(q, 1, job);
	brc |= sqlite3_bind_int64(q, 2, seq);
	brc |= sqlite3_bind_int64(q, 3, fence);
	brc |= sqlite3_bind_int(q, 4, step);
	brc |= sqlite3_bind_double(q, 5, lh_wall());
	return sq_fenced(s, q, brc, job, seq, fence, e, "at a new step");
}

int sq_item_wait(struct lh_store *st, int64_t job, int64_t seq, int64_t fence, int step,
		 const struct lh_step_rec *pending, struct lh_err *e)
{
	struct sq_store *s = sq(st);
	sqlite3_stmt *q = sq_stmt(s, Q_ITEM_WAIT);
	int own, brc = 0, rc;

	rc = sq_tx_enter(s, &own, e);
	if (rc)
		return rc;
	brc |= sqlite3_bind_int64(q, 1, job);
	brc |= sqlite3_bind_int64(q, 2, seq);
	brc |= sqlite3_bind_int64(q, 3, fence);
	brc |= sqlite3_bind_int(q, 4, step);
	brc |= sqlite3_bind_double(q, 5, lh_wall());
	rc = sq_fenced(s, q, brc, job, seq, fence, e, "waiting");
	/* The state changed first, so a fenced item never reaches the journal. */
	if (rc == 0)
		rc = insert_row(s, job, seq, pending, e);
	return sq_tx_leave(s, own, rc, e);
}

int sq_item_find(struct lh_store *st, int64_t job, const char *key, struct lh_item_info *out, struct lh_err *e)
{
	struct sq_store *s = sq(st);
	sqlite3_stmt *q = sq_stmt(s, Q_ITEM_FIND);
	int brc = 0, rc;

	brc |= sqlite3_bind_int64(q, 1, job);
	brc |= sq_bind_str(q, 2, key);
	rc = brc == SQLITE_OK ? sqlite3_step(q) : brc;
	if (rc == SQLITE_ROW) {
		out->seq = sqlite3_column_int64(q, 0);
		out->state = sqlite3_column_int(q, 1);
		out->step = sqlite3_column_int(q, 2);
		out->attempts = sqlite3_column_int(q, 3);
		out->key = sq_col_dup(q, 4);
		rc = 0;
	} else if (rc == SQLITE_DONE) {
		rc = lh_err_set(e, LH_ENOTFOUND, "job %lld has no item \"%.200s\"", (long long)job, key);
	} else {
		rc = sq_fail(s, e, rc, "look up item key \"%.200s\"", key);
	}
	sq_finish(q);
	return rc;
}

/* The state of item seq of job: LH_ENOTFOUND when there is no such item. */
static int item_state(struct sq_store *s, int64_t job, int64_t seq, int *state, struct lh_err *e)
{
	sqlite3_stmt *q = sq_stmt(s, Q_ITEM_STATE);
	int brc = 0, rc;

	brc |= sqlite3_bind_int64(q, 1, job);
	brc |= sqlite3_bind_int64(q, 2, seq);
	rc = brc == SQLITE_OK ? sqlite3_step(q) : brc;
	if (rc == SQLITE_ROW) {
		*state = sqlite3_column_int(q, 0);
		rc = 0;
	} else if (rc == SQLITE_DONE) {
		rc = lh_err_set(e, LH_ENOTFOUND, "job %lld has no item %lld", (long long)job, (long long)seq);
	} else {
		rc = sq_fail(s, e, rc, "read the state of item %lld of job %lld", (long long)seq, (long long)job);
	}
	sq_finish(q);
	return rc;
}

/* Moves a waiting item on after the decision: to pending, or to dead with
 * the job's n_dead counted. */
static int apply_decision(struct sq_store *s, int64_t job, int64_t seq, int approve, const char *error,
			  struct lh_err *e)
{
	double now = lh_wall();
	sqlite3_stmt *q;
	int brc = 0, rc;

	q = sq_stmt(s, approve ? Q_ITEM_APPROVE : Q_ITEM_REJECT);
	brc |= sqlite3_bind_int64(q, 1, job);
	brc |= sqlite3_bind_int64(q, 2, seq);
	if (approve) {
		brc |= sqlite3_bind_double(q, 3, now);
	} else {
		brc |= sq_bind_str(q, 3, error);
		brc |= sqlite3_bind_double(q, 4, now);
	}
	rc = sq_run(s, q, brc, NULL, e, approve ? "approve an item" : "reject an item");
	if (rc || approve)
		return rc;
	q = sq_stmt(s, Q_JOB_ADD);
	brc = sqlite3_bind_int64(q, 1, job);
	brc |= sqlite3_bind_int64(q, 2, 0);
	brc |= sqlite3_bind_int64(q, 3, 1);
	brc |= sqlite3_bind_int64(q, 4, 0);
	brc |= sqlite3_bind_int64(q, 5, 0);
	brc |= sqlite3_bind_int64(q, 6, 0);
	brc |= sqlite3_bind_double(q, 7, 0);
	brc |= sqlite3_bind_double(q, 8, now);
	return sq_run(s, q, brc, NULL, e, "count a rejected item");
}

int sq_item_decide(struct lh_store *st, int64_t job, int64_t seq, int approve, const struct lh_step_rec *row,
		   const char *error, struct lh_err *e)
{
	struct sq_store *s = sq(st);
	int own, state = 0, rc;

	/* Read and written under the write lock (BEGIN IMMEDIATE): two people
	 * deciding at once are served one after the other, the second finding
	 * the item no longer waiting. */
	rc = sq_tx_enter(s, &own, e);
	if (rc)
		return rc;
	rc = item_state(s, job, seq, &state, e);
	if (rc == 0 && state != LH_ITEM_WAITING)
		rc = lh_err_set(e, LH_ESTATE, "could not %s item %lld of job %lld: it is %s, not waiting",
				approve ? "approve" : "reject", (long long)seq, (long long)job,
				lh_item_state_name(state));
	if (rc == 0)
		rc = insert_row(s, job, seq, row, e);
	if (rc == 0)
		rc = apply_decision(s, job, seq, approve, error, e);
	return sq_tx_leave(s, own, rc, e);
}

int sq_items_reopen(struct lh_store *st, int64_t job, int64_t *n, struct lh_err *e)
{
	struct sq_store *s = sq(st);
	double now = lh_wall();
	sqlite3_stmt *q;
	char what[64];
	int own, brc, changes = 0, rc;

	snprintf(what, sizeof what, "re-open the done items of job %lld", (long long)job);
	rc = sq_tx_enter(s, &own, e);
	if (rc == 0)
		rc = sq_job_exists(s, job, e, what);
	if (rc == 0) {
		/* One range of items_state (job, 2). */
		q = sq_stmt(s, Q_ITEMS_REOPEN);
		brc = sqlite3_bind_int64(q, 1, job);
		brc |= sqlite3_bind_double(q, 2, now);
		rc = sq_run(s, q, brc, &changes, e, what);
	}
	if (rc == 0 && changes > 0) {
		q = sq_stmt(s, Q_JOB_SUB_DONE);
		brc = sqlite3_bind_int64(q, 1, job);
		brc |= sqlite3_bind_int64(q, 2, changes);
		brc |= sqlite3_bind_double(q, 3, now);
		rc = sq_run(s, q, brc, NULL, e, what);
	}
	rc = sq_tx_leave(s, own, rc, e);
	*n = rc ? 0 : changes;
	return rc;
}

int sq_reduce_put(struct lh_store *st, int64_t job, int level, int index, const struct lh_step_rec *row,
		  struct lh_err *e)
{
	struct sq_store *s = sq(st);
	struct lh_step_rec r = *row;
	char what[80];
	int own, rc;

	snprintf(what, sizeof what, "journal a reduce call of job %lld", (long long)job);
	r.step = index;
	r.turn = 0;
	rc = sq_tx_enter(s, &own, e);
	if (rc == 0)
		rc = sq_job_exists(s, job, e, what);
	if (rc == 0)
		rc = insert_row(s, job, -1 - (int64_t)level, &r, e);
	return sq_tx_leave(s, own, rc, e);
}

/* ---- reads ---- */

/* Fills r from a row of STEP_READ_COLS; strings borrowed from q. */
static void read_step(sqlite3_stmt *q, struct lh_step_rec *r)
{
	const char *kind, *sum;

	memset(r, 0, sizeof *r);
	r->step = sqlite3_column_int(q, 0);
	r->turn = sqlite3_column_int(q, 1);
	r->attempt = sqlite3_column_int(q, 2);
	r->request_hash = (const char *)sqlite3_column_text(q, 3);
	r->status = sqlite3_column_int(q, 4);
	r->request_id = (const char *)sqlite3_column_text(q, 5);
	r->response = (const char *)sqlite3_column_text(q, 6);
	r->response_len = (size_t)sqlite3_column_bytes(q, 6);
	r->prompt_tokens = sqlite3_column_int64(q, 7);
	r->completion_tokens = sqlite3_column_int64(q, 8);
	r->started_at = sqlite3_column_double(q, 9);
	r->first_byte_at = sqlite3_column_double(q, 10);
	r->ended_at = sqlite3_column_double(q, 11);
	kind = (const char *)sqlite3_column_text(q, 12);
	/* Rows from before schema v4 have no kind: they were LLM calls. */
	r->kind = kind ? kind : "llm";
	r->model = (const char *)sqlite3_column_text(q, 13);
	r->delta = (const char *)sqlite3_column_text(q, 14);
	r->delta_len = (size_t)sqlite3_column_bytes(q, 14);
	sum = (const char *)sqlite3_column_text(q, 15);
	if (sum)
		snprintf(r->checksum, sizeof r->checksum, "%s", sum);
	r->seq = sqlite3_column_int64(q, 16);
}

/* The key of item seq, for a message (new string), or NULL. */
static char *item_key(struct sq_store *s, int64_t job, int64_t seq)
{
	sqlite3_stmt *q = sq_stmt(s, Q_ITEM_KEY);
	char *key = NULL;
	int brc = 0;

	brc |= sqlite3_bind_int64(q, 1, job);
	brc |= sqlite3_bind_int64(q, 2, seq);
	if (brc == SQLITE_OK && sqlite3_step(q) == SQLITE_ROW)
		key = sq_col_dup(q, 0);
	sq_finish(q);
	return key;
}

static int check_step(struct sq_store *s, int64_t job, int64_t seq, const struct lh_step_rec *r,
		      struct lh_err *e)
{
	char *key;
	int rc;

	if (lh_step_checksum_ok(r->request_hash, r->response, r->response_len, r->delta, r->delta_len,
		   r->checksum[0] ? r->checksum : NULL))
		return 0;
	key = seq >= 0 ? item_key(s, job, seq) : NULL;
	rc = sq_check_row(s, job, seq, key, r->step, r->turn, r->request_hash, r->response, r->response_len,
			  r->delta, r->delta_len, r->checksum[0] ? r->checksum : NULL, e);
	lh_free(key);
	return rc;
}

int sq_steps_each(struct lh_store *st, int64_t job, int64_t seq, lh_step_fn fn, void *arg, struct lh_err *e)
{
	struct sq_store *s = sq(st);
	sqlite3_stmt *q = sq_stmt(s, Q_STEPS_EACH);
	int brc = 0, rc, ret = 0;

	rc = sq_check_idle(q, e, "read the journal");
	if (rc)
		return rc;
	brc |= sqlite3_bind_int64(q, 1, job);
	brc |= sqlite3_bind_int64(q, 2, seq);
	rc = brc == SQLITE_OK ? sqlite3_step(q) : brc;
	while (rc == SQLITE_ROW) {
		struct lh_step_rec r;

		read_step(q, &r);
		ret = check_step(s, job, seq, &r, e);
		if (ret == 0)
			ret = fn(&r, arg);
		if (ret)
			break;
		rc = sqlite3_step(q);
	}
	if (ret == 0 && rc != SQLITE_DONE)
		ret = sq_fail(s, e, rc, "read the journal of item %lld of job %lld", (long long)seq, (long long)job);
	sq_finish(q);
	return ret;
}

/* Adds n items at step pointer step (clamped to nsteps) to the steps they
 * have finished: done items every step, the others those before step. */
static void count_steps(int64_t *per_step, size_t nsteps, int state, int step, int64_t n)
{
	size_t upto = state == LH_ITEM_DONE ? nsteps : step < 0 ? 0 : (size_t)step;
	size_t i;

	if (upto > nsteps)
		upto = nsteps;
	for (i = 0; i < upto; i++)
		per_step[i] += n;
}

int sq_item_steps_done(struct lh_store *st, int64_t job, int64_t *per_step, size_t nsteps, int64_t *waiting,
		       struct lh_err *e)
{
	struct sq_store *s = sq(st);
	sqlite3_stmt *q = sq_stmt(s, Q_STEPS_DONE);
	int brc = sqlite3_bind_int64(q, 1, job);
	int rc = brc == SQLITE_OK ? sqlite3_step(q) : brc;

	/* One pass over the job's items, grouped by (state, step): a handful
	 * of groups however many items there are. */
	while (rc == SQLITE_ROW) {
		int state = sqlite3_column_int(q, 0);
		int step = sqlite3_column_int(q, 1);
		int64_t n = sqlite3_column_int64(q, 2);

		if (state == LH_ITEM_WAITING)
			*waiting += n;
		count_steps(per_step, nsteps, state, step, n);
		rc = sqlite3_step(q);
	}
	rc = rc == SQLITE_DONE ? 0 : sq_fail(s, e, rc, "count the finished steps of job %lld", (long long)job);
	sq_finish(q);
	return rc;
}

/* ---- verification ---- */

struct verify {
	struct lh_verify_report *out;
	void (*on_bad)(void *arg, const char *what);
	void *arg;
};

static void problem(struct verify *v, const char *what)
{
	size_t n = strlen(what);

	/* Cut to fit: a long line stays whole in on_bad. */
	if (!v->out->first_problem[0]) {
		if (n >= sizeof v->out->first_problem)
			n = sizeof v->out->first_problem - 1;
		memcpy(v->out->first_problem, what, n);
		v->out->first_problem[n] = '\0';
	}
	if (v->on_bad)
		v->on_bad(v->arg, what);
}

/* SQLite's own check of the file: b-trees, indexes, free pages. A file too
 * damaged to check counts as not ok. */
static int integrity(struct sq_store *s, struct verify *v, struct lh_err *e)
{
	sqlite3_stmt *q = NULL;
	char line[600];
	int rc = sqlite3_prepare_v2(s->db, "PRAGMA integrity_check", -1, &q, NULL);

	if (rc == SQLITE_OK)
		rc = sqlite3_step(q);
	v->out->integrity_ok = 1;
	while (rc == SQLITE_ROW) {
		const char *msg = (const char *)sqlite3_column_text(q, 0);

		if (msg && strcmp(msg, "ok") != 0) {
			v->out->integrity_ok = 0;
			snprintf(line, sizeof line, "integrity_check: %.500s", msg);
			problem(v, line);
		}
		rc = sqlite3_step(q);
	}
	sqlite3_finalize(q);
	if (rc == SQLITE_DONE || sq_code_of(rc) == LH_ECORRUPT) {
		if (rc != SQLITE_DONE) {
			v->out->integrity_ok = 0;
			snprintf(line, sizeof line, "integrity_check: %.500s", sqlite3_errmsg(s->db));
			problem(v, line);
		}
		return 0;
	}
	return sq_fail(s, e, rc, "check store \"%s\"", s->path);
}

static int count_rows(struct sq_store *s, enum sq_query id, int64_t *n, struct lh_err *e)
{
	sqlite3_stmt *q = sq_stmt(s, id);
	int rc = sqlite3_step(q);

	if (rc == SQLITE_ROW) {
		*n = sqlite3_column_int64(q, 0);
		rc = 0;
	} else {
		rc = sq_fail(s, e, rc, "count the rows of store \"%s\"", s->path);
	}
	sq_finish(q);
	return rc;
}

/* Checks every journal row's checksum. */
static int journal_rows(struct sq_store *s, struct verify *v, struct lh_err *e)
{
	sqlite3_stmt *q = sq_stmt(s, Q_VERIFY_ROWS);
	char where[320], line[400];
	int rc;

	rc = sq_check_idle(q, e, "verify the journal");
	if (rc)
		return rc;
	rc = sqlite3_step(q);
	while (rc == SQLITE_ROW) {
		int64_t job = sqlite3_column_int64(q, 0), seq = sqlite3_column_int64(q, 1);
		int step = sqlite3_column_int(q, 2), turn = sqlite3_column_int(q, 3);

		v->out->rows++;
		if (!lh_step_checksum_ok((const char *)sqlite3_column_text(q, 4), (const char *)sqlite3_column_text(q, 5),
			    (size_t)sqlite3_column_bytes(q, 5), (const char *)sqlite3_column_text(q, 6),
			    (size_t)sqlite3_column_bytes(q, 6), (const char *)sqlite3_column_text(q, 7))) {
			v->out->bad_rows++;
			lh_step_describe(where, sizeof where, job, seq, (const char *)sqlite3_column_text(q, 8), step, turn);
			snprintf(line, sizeof line, "journal row damaged: %s: checksum mismatch", where);
			problem(v, line);
		}
		rc = sqlite3_step(q);
	}
	sq_finish(q);
	if (rc == SQLITE_DONE)
		return 0;
	/* Pages too damaged to read: a finding, not a failure to check. */
	if (sq_code_of(rc) == LH_ECORRUPT) {
		snprintf(line, sizeof line, "journal unreadable: %.300s", sqlite3_errmsg(s->db));
		v->out->integrity_ok = 0;
		problem(v, line);
		return 0;
	}
	return sq_fail(s, e, rc, "verify the journal of store \"%s\"", s->path);
}

int sq_verify(struct lh_store *st, void (*on_bad)(void *arg, const char *what), void *arg,
	      struct lh_verify_report *out, struct lh_err *e)
{
	struct sq_store *s = sq(st);
	struct verify v = { .out = out, .on_bad = on_bad, .arg = arg };
	int rc;

	rc = integrity(s, &v, e);
	if (rc == 0)
		rc = count_rows(s, Q_JOBS_COUNT, &out->jobs, e);
	if (rc == 0)
		rc = count_rows(s, Q_ITEMS_COUNT_ALL, &out->items, e);
	if (rc == 0)
		rc = journal_rows(s, &v, e);
	return rc;
}
