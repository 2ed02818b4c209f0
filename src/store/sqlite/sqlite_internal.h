/*
 * store layer: what the SQLite backend's files share (sqlite.c: open,
 * migrations, jobs, items, events; journal.c: the journal, approvals,
 * re-runs, reduce and verification). Nothing outside src/store/sqlite/
 * includes it.
 *
 * Helpers keep the contracts they had as statics of sqlite.c: a statement
 * is bound, stepped, then sq_finish'ed before the function returns, so
 * SQLITE_STATIC bindings never outlive the caller's buffers.
 */
#ifndef LH_STORE_SQLITE_SQLITE_INTERNAL_H
#define LH_STORE_SQLITE_SQLITE_INTERNAL_H

#include "store/sqlite/sqlite.h"
#include "store/store_impl.h"
#include "util/mem.h"
#include "util/vec.h"

#include <sqlite3.h>
#include <stdint.h>

/* ---- statements: every one the backend runs, prepared once at open ---- */

#define JOB_COLS "id, ref, name, kind, spec, source_sig, state, priority, ingest_done, created_at," \
	" started_at, finished_at, updated_at, run_secs, n_total, n_done, n_dead, n_retries," \
	" prompt_tokens, completion_tokens, time_limit, rate_items, rate_tokens, last_error," \
	" next_event_seq - 1, pause_reason, waiting, in_flight"

#define EVENT_COLS "gseq, job_id, seq, ts, type, item_key, data"

/* Columns 14..17 (the row's request hash, delta, checksum and turn) are
 * read to verify step 0's row before the view is handed on. */
#define ITEM_VIEW_COLS "i.seq, i.key, i.state, i.attempts, i.last_status, i.last_error, s.response," \
	" s.status, s.request_id, s.prompt_tokens, s.completion_tokens, s.started_at," \
	" s.first_byte_at, s.ended_at, s.request_hash, s.delta, s.checksum, s.step" \
	" FROM items i LEFT JOIN steps s" \
	" ON s.job_id = i.job_id AND s.item_seq = i.seq AND s.step = 0 AND s.turn = 0"

/* Parameters ?1..?19 of the journal writes, bound by sq_bind_step (?3,
 * the fence, is used only by Q_STEP_PUT's guard). */
#define STEP_COLS "job_id, item_seq, step, attempt, request_hash, status, request_id, response," \
	" prompt_tokens, completion_tokens, started_at, first_byte_at, ended_at, turn, kind, model, delta," \
	" checksum"
#define STEP_VALS "?1, ?2, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19"

/* Columns of a journal read, in the order sq_read_step takes them. */
#define STEP_READ_COLS "step, turn, attempt, request_hash, status, request_id, response, prompt_tokens," \
	" completion_tokens, started_at, first_byte_at, ended_at, kind, model, delta, checksum, rowid"

#define SQ_STATEMENTS(X) \
	X(Q_BEGIN, "BEGIN IMMEDIATE") \
	X(Q_COMMIT, "COMMIT") \
	X(Q_ROLLBACK, "ROLLBACK") \
	X(Q_JOB_FIND, "SELECT " JOB_COLS " FROM jobs WHERE ref = ?1") \
	X(Q_JOB_GET, "SELECT " JOB_COLS " FROM jobs WHERE id = ?1") \
	X(Q_JOB_CREATE, "INSERT INTO jobs (ref, name, kind, spec, source_sig, state, priority," \
	  " created_at, updated_at, time_limit) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, ?9)" \
	  " ON CONFLICT (ref) DO NOTHING") \
	X(Q_JOB_EXISTS, "SELECT 1 FROM jobs WHERE id = ?1") \
	X(Q_JOB_DEL_STEPS, "DELETE FROM steps WHERE job_id = ?1") \
	X(Q_JOB_DEL_EVENTS, "DELETE FROM events WHERE job_id = ?1") \
	X(Q_JOB_DEL_INPUTS, "DELETE FROM item_inputs WHERE item_id IN (SELECT id FROM items WHERE job_id = ?1)") \
	X(Q_JOB_DEL_ITEMS, "DELETE FROM items WHERE job_id = ?1") \
	X(Q_JOB_DEL, "DELETE FROM jobs WHERE id = ?1") \
	X(Q_JOB_SET_STATE, "UPDATE jobs SET state = ?2, updated_at = ?3," \
	  " started_at = CASE WHEN ?4 > 0 THEN ?4 ELSE started_at END," \
	  " finished_at = CASE WHEN ?5 > 0 THEN ?5 ELSE finished_at END WHERE id = ?1") \
	X(Q_JOB_SET_INGESTED, "UPDATE jobs SET ingest_done = 1, n_total = ?2, updated_at = ?3 WHERE id = ?1") \
	X(Q_JOB_ADD, "UPDATE jobs SET n_done = n_done + ?2, n_dead = n_dead + ?3," \
	  " n_retries = n_retries + ?4, prompt_tokens = prompt_tokens + ?5," \
	  " completion_tokens = completion_tokens + ?6, run_secs = run_secs + ?7, updated_at = ?8" \
	  " WHERE id = ?1") \
	X(Q_JOB_SET_PRIORITY, "UPDATE jobs SET priority = ?2, updated_at = ?3 WHERE id = ?1") \
	X(Q_JOB_SET_RATES, "UPDATE jobs SET rate_items = ?2, rate_tokens = ?3, run_secs = run_secs + ?4," \
	  " updated_at = ?5, in_flight = ?6 WHERE id = ?1") \
	X(Q_JOB_SET_ERROR, "UPDATE jobs SET last_error = ?2, updated_at = ?3 WHERE id = ?1") \
	X(Q_JOB_SET_SPEC, "UPDATE jobs SET spec = ?2, updated_at = ?3 WHERE id = ?1") \
	X(Q_JOB_SET_PAUSE_REASON, "UPDATE jobs SET pause_reason = ?2, updated_at = ?3 WHERE id = ?1") \
	X(Q_JOB_SET_WAITING, "UPDATE jobs SET waiting = ?2, updated_at = ?3 WHERE id = ?1") \
	X(Q_JOB_SUB_DEAD, "UPDATE jobs SET n_dead = max(n_dead - ?2, 0), updated_at = ?3 WHERE id = ?1") \
	X(Q_JOBS_NEWEST, "SELECT " JOB_COLS " FROM jobs WHERE id < ?2 ORDER BY id DESC LIMIT ?3 OFFSET ?4") \
	X(Q_JOBS_NEWEST_STATE, "SELECT " JOB_COLS " FROM jobs" \
	  " WHERE state = ?1 AND id < ?2 ORDER BY id DESC LIMIT ?3 OFFSET ?4") \
	X(Q_JOBS_OLDEST, "SELECT " JOB_COLS " FROM jobs WHERE id > ?2 ORDER BY id LIMIT ?3 OFFSET ?4") \
	X(Q_JOBS_OLDEST_STATE, "SELECT " JOB_COLS " FROM jobs" \
	  " WHERE state = ?1 AND id > ?2 ORDER BY id LIMIT ?3 OFFSET ?4") \
	X(Q_JOBS_SCHEDULE, "SELECT " JOB_COLS " FROM jobs" \
	  " ORDER BY priority DESC, id LIMIT ?3 OFFSET ?4") \
	X(Q_JOBS_SCHEDULE_STATE, "SELECT " JOB_COLS " FROM jobs" \
	  " WHERE state = ?1 ORDER BY priority DESC, id LIMIT ?3 OFFSET ?4") \
	X(Q_JOBS_COUNT, "SELECT count(*) FROM jobs") \
	X(Q_JOBS_COUNT_STATE, "SELECT count(*) FROM jobs WHERE state = ?1") \
	X(Q_ITEM_ADD, "INSERT INTO items (job_id, seq, key, updated_at)" \
	  " VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING") \
	X(Q_INPUT_ADD, "INSERT INTO item_inputs (item_id, input) VALUES (?1, ?2)") \
	X(Q_ITEM_BY_KEY, "SELECT seq FROM items WHERE job_id = ?1 AND key = ?2") \
	X(Q_CLAIM_RETRY, "SELECT id FROM items WHERE job_id = ?1 AND state = 3 AND next_try <= ?2" \
	  " ORDER BY next_try, seq LIMIT ?3") \
	X(Q_CLAIM_EXPIRED, "SELECT id FROM items WHERE job_id = ?1 AND state = 1 AND lease_deadline <= ?2" \
	  " ORDER BY lease_deadline, seq LIMIT ?3") \
	X(Q_CLAIM_PENDING, "SELECT id FROM items WHERE job_id = ?1 AND state = 0 ORDER BY seq LIMIT ?3") \
	X(Q_CLAIM_TAKE, "UPDATE items SET state = 1, lease_owner = ?2, lease_deadline = ?3," \
	  " fence = fence + 1, next_try = 0, updated_at = ?4 WHERE id = ?1") \
	X(Q_CLAIM_READ, "SELECT i.seq, i.key, i.attempts, i.fence, n.input FROM items i" \
	  " JOIN item_inputs n ON n.item_id = i.id WHERE i.id = ?1") \
	X(Q_RENEW, "UPDATE items SET lease_deadline = ?3 WHERE job_id = ?1 AND state = 1 AND lease_owner = ?2") \
	X(Q_RELEASE_OWNER, "UPDATE items SET state = 0, lease_owner = NULL, lease_deadline = 0, updated_at = ?3" \
	  " WHERE job_id = ?1 AND state = 1 AND lease_owner = ?2") \
	X(Q_RELEASE_ALL, "UPDATE items SET state = 0, lease_owner = NULL, lease_deadline = 0, updated_at = ?3" \
	  " WHERE job_id = ?1 AND state = 1") \
	X(Q_NEXT_DUE, "SELECT min(next_try) FROM items WHERE job_id = ?1 AND state = 3") \
	X(Q_ITEM_DONE, "UPDATE items SET state = 2, attempts = ?4, lease_owner = NULL, lease_deadline = 0," \
	  " updated_at = ?5 WHERE job_id = ?1 AND seq = ?2 AND fence = ?3 AND state = 1") \
	X(Q_ITEM_RETRY, "UPDATE items SET state = 3, attempts = ?4, next_try = ?5, last_status = ?6," \
	  " last_error = ?7, lease_owner = NULL, lease_deadline = 0, updated_at = ?8" \
	  " WHERE job_id = ?1 AND seq = ?2 AND fence = ?3 AND state = 1") \
	X(Q_ITEM_DEAD, "UPDATE items SET state = 4, attempts = ?4, last_status = ?5, last_error = ?6," \
	  " lease_owner = NULL, lease_deadline = 0, updated_at = ?7" \
	  " WHERE job_id = ?1 AND seq = ?2 AND fence = ?3 AND state = 1") \
	X(Q_ITEM_RELEASE, "UPDATE items SET state = 0, lease_owner = NULL, lease_deadline = 0, updated_at = ?4" \
	  " WHERE job_id = ?1 AND seq = ?2 AND fence = ?3 AND state = 1") \
	X(Q_STEP_INSERT, "INSERT OR REPLACE INTO steps (" STEP_COLS ") VALUES (" STEP_VALS ")") \
	X(Q_STEP_PUT, "INSERT OR REPLACE INTO steps (" STEP_COLS ") SELECT " STEP_VALS " FROM items" \
	  " WHERE job_id = ?1 AND seq = ?2 AND fence = ?3 AND state = 1") \
	X(Q_STEPS_EACH, "SELECT " STEP_READ_COLS " FROM steps" \
	  " WHERE job_id = ?1 AND item_seq = ?2 ORDER BY step, turn") \
	X(Q_ITEM_SET_STEP, "UPDATE items SET attempts = CASE WHEN ?4 > step THEN 0 ELSE attempts END," \
	  " step = ?4, updated_at = ?5" \
	  " WHERE job_id = ?1 AND seq = ?2 AND fence = ?3 AND state = 1") \
	X(Q_ITEM_WAIT, "UPDATE items SET state = 5, step = ?4, lease_owner = NULL, lease_deadline = 0," \
	  " updated_at = ?5 WHERE job_id = ?1 AND seq = ?2 AND fence = ?3 AND state = 1") \
	X(Q_ITEM_FIND, "SELECT seq, state, step, attempts, key FROM items WHERE job_id = ?1 AND key = ?2") \
	X(Q_ITEM_STATE, "SELECT state FROM items WHERE job_id = ?1 AND seq = ?2") \
	X(Q_ITEM_KEY, "SELECT key FROM items WHERE job_id = ?1 AND seq = ?2") \
	X(Q_ITEM_APPROVE, "UPDATE items SET state = 0, attempts = 0, next_try = 0, updated_at = ?3" \
	  " WHERE job_id = ?1 AND seq = ?2 AND state = 5") \
	X(Q_ITEM_REJECT, "UPDATE items SET state = 4, last_status = 0, last_error = ?3, updated_at = ?4" \
	  " WHERE job_id = ?1 AND seq = ?2 AND state = 5") \
	X(Q_ITEMS_REOPEN, "UPDATE items SET state = 0, attempts = 0, step = 0, next_try = 0, updated_at = ?2" \
	  " WHERE job_id = ?1 AND state = 2") \
	X(Q_JOB_SUB_DONE, "UPDATE jobs SET n_done = max(n_done - ?2, 0), updated_at = ?3 WHERE id = ?1") \
	X(Q_STEPS_DONE, "SELECT state, step, count(*) FROM items WHERE job_id = ?1 GROUP BY state, step") \
	X(Q_VERIFY_ROWS, "SELECT s.job_id, s.item_seq, s.step, s.turn, s.request_hash, s.response, s.delta," \
	  " s.checksum, i.key FROM steps s LEFT JOIN items i ON i.job_id = s.job_id AND i.seq = s.item_seq") \
	X(Q_ITEMS_COUNT_ALL, "SELECT count(*) FROM items") \
	X(Q_ITEM_COUNTS, "SELECT state, count(*) FROM items WHERE job_id = ?1 GROUP BY state") \
	X(Q_ITEMS_MASK, "SELECT " ITEM_VIEW_COLS " WHERE i.job_id = ?1 AND ((1 << i.state) & ?2) != 0" \
	  " ORDER BY i.seq") \
	X(Q_ITEMS_STATE, "SELECT " ITEM_VIEW_COLS " WHERE i.job_id = ?1 AND i.state = ?2 ORDER BY i.seq") \
	X(Q_ITEMS_PAGE_MASK, "SELECT " ITEM_VIEW_COLS " WHERE i.job_id = ?1 AND i.seq > ?3" \
	  " AND ((1 << i.state) & ?2) != 0 ORDER BY i.seq LIMIT ?4") \
	X(Q_ITEMS_PAGE_STATE, "SELECT " ITEM_VIEW_COLS " WHERE i.job_id = ?1 AND i.state = ?2 AND i.seq > ?3" \
	  " ORDER BY i.seq LIMIT ?4") \
	X(Q_RETRY_DEAD_ALL, "UPDATE items SET state = 0, attempts = 0, next_try = 0, updated_at = ?2" \
	  " WHERE job_id = ?1 AND state = 4") \
	X(Q_RETRY_DEAD_KEY, "UPDATE items SET state = 0, attempts = 0, next_try = 0, updated_at = ?2" \
	  " WHERE job_id = ?1 AND key = ?3 AND state = 4") \
	X(Q_EVENT_NEXT, "SELECT next_event_seq FROM jobs WHERE id = ?1") \
	X(Q_EVENT_BUMP, "UPDATE jobs SET next_event_seq = ?2 + 1 WHERE id = ?1") \
	X(Q_EVENT_ADD, "INSERT INTO events (job_id, seq, ts, type, item_key, data)" \
	  " VALUES (?1, ?2, ?3, ?4, ?5, ?6)") \
	X(Q_EVENTS_EACH, "SELECT " EVENT_COLS " FROM events WHERE job_id = ?1 AND seq > ?2" \
	  " ORDER BY seq LIMIT ?3") \
	X(Q_EVENTS_ALL, "SELECT " EVENT_COLS " FROM events WHERE gseq > ?1 ORDER BY gseq LIMIT ?2")

#define SQ_ENUM(id, sql) id,
enum sq_query { SQ_STATEMENTS(SQ_ENUM) Q_COUNT };
#undef SQ_ENUM


/* ---- the handle ---- */

struct sq_store {
	struct lh_store base;   /* first: the handle store.c sees */
	sqlite3 *db;
	char *path;             /* owned, for messages */
	sqlite3_stmt *q[Q_COUNT];
	/* Scratch for the rowids lh_store_claim chooses, kept so that claims
	 * do not allocate for it each time. */
	LH_VEC(int64_t) ids;
};

static inline struct sq_store *sq(struct lh_store *st)
{
	return (struct sq_store *)st;
}

/* ---- statement helpers ---- */

/* Returns a statement ready to bind. */
static inline sqlite3_stmt *sq_stmt(struct sq_store *s, enum sq_query id)
{
	return s->q[id];
}

/* Makes a statement reusable, and drops the SQLITE_STATIC pointers to the
 * caller's buffers so that none outlives the call. */
static inline void sq_finish(sqlite3_stmt *q)
{
	sqlite3_reset(q);
	sqlite3_clear_bindings(q);
}

static inline int sq_bind_str(sqlite3_stmt *q, int i, const char *v)
{
	if (!v)
		return sqlite3_bind_null(q, i);
	return sqlite3_bind_text(q, i, v, -1, SQLITE_STATIC);
}

static inline int sq_bind_text_n(sqlite3_stmt *q, int i, const char *v, size_t n)
{
	if (!v)
		return sqlite3_bind_null(q, i);
	return sqlite3_bind_text64(q, i, v, n, SQLITE_STATIC, SQLITE_UTF8);
}

/* SQLite counts LIMIT in int64; a negative one means no limit. */
static inline int64_t sq_limit_of(size_t n)
{
	return n > (size_t)INT64_MAX ? INT64_MAX : (int64_t)n;
}

/* A new copy of a text column, or NULL. */
static inline char *sq_col_dup(sqlite3_stmt *q, int i)
{
	const char *t = (const char *)sqlite3_column_text(q, i);

	if (!t)
		return NULL;
	return lh_xstrndup(t, (size_t)sqlite3_column_bytes(q, i));
}

/* ---- sqlite.c ---- */

/* The LH_E code for a SQLite result code. */
int sq_code_of(int rc);
/* Records "could not <what>: <sqlite's reason>" and returns the code for rc. */
int sq_fail(struct sq_store *s, struct lh_err *e, int rc, const char *fmt, ...) LH_PRINTF(4, 5);
/* Runs a statement that returns no rows; *changes (may be NULL) gets the
 * number of rows it changed. */
int sq_run(struct sq_store *s, sqlite3_stmt *q, int brc, int *changes, struct lh_err *e, const char *what);
/* Several statements in the caller's transaction, or in one of their own. */
int sq_tx_enter(struct sq_store *s, int *own, struct lh_err *e);
int sq_tx_leave(struct sq_store *s, int own, int rc, struct lh_err *e);
/* Guards the iterators, whose statement stays open while the callback runs. */
int sq_check_idle(sqlite3_stmt *q, struct lh_err *e, const char *what);
/* Runs a bound transition guarded by (fence, state = leased): LH_EFENCED,
 * having changed nothing, when the lease has moved on. */
int sq_fenced(struct sq_store *s, sqlite3_stmt *q, int brc, int64_t job, int64_t seq, int64_t fence,
	      struct lh_err *e, const char *what);
/* LH_ENOTFOUND when there is no job id. */
int sq_job_exists(struct sq_store *s, int64_t id, struct lh_err *e, const char *what);
/* LH_ENOTFOUND unless job has an item with key. */
int sq_key_known(struct sq_store *s, int64_t job, const char *key, struct lh_err *e);

/* ---- journal.c ---- */

/* Binds ?1..?19 of Q_STEP_INSERT / Q_STEP_PUT, with the row's checksum
 * computed into sum (which must live until the statement is finished). */
int sq_bind_step(sqlite3_stmt *q, int64_t job, int64_t seq, int64_t fence, const struct lh_step_rec *r,
		 char sum[LH_SHA256_HEX]);
/* Verifies a row read back: LH_ECORRUPT naming job, item (and its key when
 * key is not NULL), step and turn when stored differs from the checksum of
 * (request_hash, response, delta). */
int sq_check_row(struct sq_store *s, int64_t job, int64_t seq, const char *key, int step, int turn,
		 const char *request_hash, const char *response, size_t response_len, const char *delta,
		 size_t delta_len, const char *stored, struct lh_err *e);
/* Registers the SQL function lh_step_checksum(request_hash, response,
 * delta) on the connection: migration v4 fills the checksums of existing
 * rows with it. */
int sq_register_functions(struct sq_store *s);

int sq_step_put(struct lh_store *st, int64_t job, int64_t seq, int64_t fence, const struct lh_step_rec *step,
		struct lh_err *e);
int sq_steps_each(struct lh_store *st, int64_t job, int64_t seq, lh_step_fn fn, void *arg, struct lh_err *e);
int sq_item_set_step(struct lh_store *st, int64_t job, int64_t seq, int64_t fence, int step, struct lh_err *e);
int sq_item_wait(struct lh_store *st, int64_t job, int64_t seq, int64_t fence, int step,
		 const struct lh_step_rec *pending, struct lh_err *e);
int sq_item_find(struct lh_store *st, int64_t job, const char *key, struct lh_item_info *out, struct lh_err *e);
int sq_item_decide(struct lh_store *st, int64_t job, int64_t seq, int approve, const struct lh_step_rec *row,
		   const char *error, struct lh_err *e);
int sq_items_reopen(struct lh_store *st, int64_t job, int64_t *n, struct lh_err *e);
int sq_reduce_put(struct lh_store *st, int64_t job, int level, int index, const struct lh_step_rec *row,
		  struct lh_err *e);
int sq_item_steps_done(struct lh_store *st, int64_t job, int64_t *per_step, size_t nsteps, int64_t *waiting,
		       struct lh_err *e);
int sq_verify(struct lh_store *st, void (*on_bad)(void *arg, const char *what), void *arg,
	      struct lh_verify_report *out, struct lh_err *e);

#endif
