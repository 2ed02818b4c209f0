/*
 * store layer: what the PostgreSQL backend's files share (postgres.c: the
 * connection, schema and migrations, statements, errors and jobs; events.c:
 * events; items.c: items, claims, the journal, approvals, re-runs, reduce rows and
 * verification). Nothing outside src/store/postgres/ includes it.
 *
 * Every statement is prepared once per connection (PQprepare) and run with
 * PQexecPrepared and text parameters, except an item's input, which goes in
 * and out as bytea (it may hold any byte, NUL included). A result is read
 * whole before a callback runs, so callbacks may use the handle again.
 */
#ifndef LH_STORE_POSTGRES_POSTGRES_INTERNAL_H
#define LH_STORE_POSTGRES_POSTGRES_INTERNAL_H

#include "store/postgres/postgres.h"
#include "store/store_impl.h"
#include "util/mem.h"

#include <libpq-fe.h>
#include <stdint.h>

#define PG_JOB_COLS "id, ref, name, kind, spec, source_sig, state, priority, ingest_done, created_at," \
	" started_at, finished_at, updated_at, run_secs, n_total, n_done, n_dead, n_retries," \
	" prompt_tokens, completion_tokens, time_limit, rate_items, rate_tokens, last_error," \
	" next_event_seq - 1, pause_reason, waiting, in_flight"

#define PG_EVENT_COLS "gseq, job_id, seq, ts, type, item_key, data"

#define PG_ITEM_VIEW_COLS "i.seq, i.key, i.state, i.attempts, i.last_status, i.last_error, s.response," \
	" s.status, s.request_id, s.prompt_tokens, s.completion_tokens, s.started_at," \
	" s.first_byte_at, s.ended_at, s.request_hash, s.delta, s.checksum, s.step" \
	" FROM items i LEFT JOIN steps s" \
	" ON s.job_id = i.job_id AND s.item_seq = i.seq AND s.step = 0 AND s.turn = 0"

/* Parameters $1..$18 of a journal write (pg_step_args); $19, the fence,
 * only in Q_STEP_PUT's guard. */
#define PG_STEP_COLS "job_id, item_seq, step, attempt, request_hash, status, request_id, response," \
	" prompt_tokens, completion_tokens, started_at, first_byte_at, ended_at, turn, kind, model, delta," \
	" checksum"
#define PG_STEP_VALS "$1::bigint, $2::bigint, $3::int, $4::int, $5::text, $6::int, $7::text, $8::text," \
	" $9::bigint, $10::bigint, $11::float8, $12::float8, $13::float8, $14::int, $15::text, $16::text," \
	" $17::text, $18::text"
#define PG_STEP_UPSERT " ON CONFLICT (job_id, item_seq, step, turn) DO UPDATE SET attempt = EXCLUDED.attempt," \
	" request_hash = EXCLUDED.request_hash, status = EXCLUDED.status, request_id = EXCLUDED.request_id," \
	" response = EXCLUDED.response, prompt_tokens = EXCLUDED.prompt_tokens," \
	" completion_tokens = EXCLUDED.completion_tokens, started_at = EXCLUDED.started_at," \
	" first_byte_at = EXCLUDED.first_byte_at, ended_at = EXCLUDED.ended_at, kind = EXCLUDED.kind," \
	" model = EXCLUDED.model, delta = EXCLUDED.delta, checksum = EXCLUDED.checksum," \
	" row_seq = nextval('steps_row_seq')"

#define PG_STEP_READ_COLS "step, turn, attempt, request_hash, status, request_id, response, prompt_tokens," \
	" completion_tokens, started_at, first_byte_at, ended_at, kind, model, delta, checksum, row_seq"

#define PG_ITEM_FENCE " WHERE job_id = $1 AND seq = $2 AND fence = $3 AND state = 1"

#define PG_STATEMENTS(X) \
	X(Q_BEGIN, "BEGIN") \
	X(Q_COMMIT, "COMMIT") \
	X(Q_ROLLBACK, "ROLLBACK") \
	X(Q_EVENT_ORDER, "SELECT pg_advisory_xact_lock(1279817068)") \
	X(Q_JOB_FIND, "SELECT " PG_JOB_COLS " FROM jobs WHERE ref = $1") \
	X(Q_JOB_GET, "SELECT " PG_JOB_COLS " FROM jobs WHERE id = $1") \
	X(Q_JOB_CREATE, "INSERT INTO jobs (ref, name, kind, spec, source_sig, state, priority," \
	  " created_at, updated_at, time_limit) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9)" \
	  " ON CONFLICT (ref) DO NOTHING RETURNING id") \
	X(Q_JOB_EXISTS, "SELECT 1 FROM jobs WHERE id = $1") \
	X(Q_JOB_DEL_STEPS, "DELETE FROM steps WHERE job_id = $1") \
	X(Q_JOB_DEL_EVENTS, "DELETE FROM events WHERE job_id = $1") \
	X(Q_JOB_DEL_INPUTS, "DELETE FROM item_inputs n USING items i WHERE i.job_id = $1 AND n.item_id = i.id") \
	X(Q_JOB_DEL_ITEMS, "DELETE FROM items WHERE job_id = $1") \
	X(Q_JOB_DEL, "DELETE FROM jobs WHERE id = $1") \
	X(Q_JOB_SET_STATE, "UPDATE jobs SET state = $2, updated_at = $3," \
	  " started_at = CASE WHEN $4::float8 > 0 THEN $4::float8 ELSE started_at END," \
	  " finished_at = CASE WHEN $5::float8 > 0 THEN $5::float8 ELSE finished_at END WHERE id = $1") \
	X(Q_JOB_SET_INGESTED, "UPDATE jobs SET ingest_done = 1, n_total = $2, updated_at = $3 WHERE id = $1") \
	X(Q_JOB_ADD, "UPDATE jobs SET n_done = n_done + $2, n_dead = n_dead + $3," \
	  " n_retries = n_retries + $4, prompt_tokens = prompt_tokens + $5," \
	  " completion_tokens = completion_tokens + $6, run_secs = run_secs + $7, updated_at = $8" \
	  " WHERE id = $1") \
	X(Q_JOB_SET_PRIORITY, "UPDATE jobs SET priority = $2, updated_at = $3 WHERE id = $1") \
	X(Q_JOB_SET_RATES, "UPDATE jobs SET rate_items = $2, rate_tokens = $3, run_secs = run_secs + $4," \
	  " updated_at = $5, in_flight = $6 WHERE id = $1") \
	X(Q_JOB_SET_ERROR, "UPDATE jobs SET last_error = $2, updated_at = $3 WHERE id = $1") \
	X(Q_JOB_SET_SPEC, "UPDATE jobs SET spec = $2, updated_at = $3 WHERE id = $1") \
	X(Q_JOB_SET_PAUSE_REASON, "UPDATE jobs SET pause_reason = $2, updated_at = $3 WHERE id = $1") \
	X(Q_JOB_SET_WAITING, "UPDATE jobs SET waiting = $2, updated_at = $3 WHERE id = $1") \
	X(Q_JOB_SUB_DEAD, "UPDATE jobs SET n_dead = greatest(n_dead - $2, 0), updated_at = $3 WHERE id = $1") \
	X(Q_JOB_SUB_DONE, "UPDATE jobs SET n_done = greatest(n_done - $2, 0), updated_at = $3 WHERE id = $1") \
	X(Q_JOBS_NEWEST, "SELECT " PG_JOB_COLS " FROM jobs WHERE id < $3 ORDER BY id DESC LIMIT $1 OFFSET $2") \
	X(Q_JOBS_NEWEST_STATE, "SELECT " PG_JOB_COLS " FROM jobs" \
	  " WHERE state = $4 AND id < $3 ORDER BY id DESC LIMIT $1 OFFSET $2") \
	X(Q_JOBS_OLDEST, "SELECT " PG_JOB_COLS " FROM jobs WHERE id > $3 ORDER BY id LIMIT $1 OFFSET $2") \
	X(Q_JOBS_OLDEST_STATE, "SELECT " PG_JOB_COLS " FROM jobs" \
	  " WHERE state = $4 AND id > $3 ORDER BY id LIMIT $1 OFFSET $2") \
	X(Q_JOBS_SCHEDULE, "SELECT " PG_JOB_COLS " FROM jobs ORDER BY priority DESC, id LIMIT $1 OFFSET $2") \
	X(Q_JOBS_SCHEDULE_STATE, "SELECT " PG_JOB_COLS " FROM jobs" \
	  " WHERE state = $3 ORDER BY priority DESC, id LIMIT $1 OFFSET $2") \
	X(Q_JOBS_COUNT, "SELECT count(*) FROM jobs") \
	X(Q_JOBS_COUNT_STATE, "SELECT count(*) FROM jobs WHERE state = $1") \
	X(Q_ITEM_ADD, "WITH i AS (INSERT INTO items (job_id, seq, key, updated_at) VALUES ($1, $2, $3, $4)" \
	  " ON CONFLICT DO NOTHING RETURNING id)" \
	  " INSERT INTO item_inputs (item_id, input) SELECT id, $5::bytea FROM i") \
	X(Q_ITEM_BY_KEY, "SELECT seq FROM items WHERE job_id = $1 AND key = $2") \
	X(Q_CLAIM, "WITH r AS (SELECT id, 0 AS k, next_try AS t, seq FROM items" \
	  " WHERE job_id = $1 AND state = 3 AND next_try <= $2" \
	  " ORDER BY next_try, seq LIMIT $3 FOR UPDATE SKIP LOCKED)," \
	  " x AS (SELECT id, 1 AS k, lease_deadline AS t, seq FROM items" \
	  " WHERE job_id = $1 AND state = 1 AND lease_deadline <= $2" \
	  " ORDER BY lease_deadline, seq LIMIT $3 FOR UPDATE SKIP LOCKED)," \
	  " p AS (SELECT id, 2 AS k, 0::float8 AS t, seq FROM items" \
	  " WHERE job_id = $1 AND state = 0 ORDER BY seq LIMIT $3 FOR UPDATE SKIP LOCKED)," \
	  " picked AS (SELECT id, k, t FROM (SELECT * FROM r UNION ALL SELECT * FROM x UNION ALL SELECT * FROM p) u" \
	  " ORDER BY k, t, seq LIMIT $3)" \
	  " UPDATE items i SET state = 1, lease_owner = $4, lease_deadline = $5, fence = i.fence + 1," \
	  " next_try = 0, updated_at = $2 FROM picked p, item_inputs n WHERE i.id = p.id AND n.item_id = i.id" \
	  " RETURNING i.seq, i.key, i.attempts, i.fence, n.input, p.k, p.t") \
	X(Q_RENEW, "UPDATE items SET lease_deadline = $3 WHERE job_id = $1 AND state = 1 AND lease_owner = $2") \
	X(Q_RELEASE_OWNER, "UPDATE items SET state = 0, lease_owner = NULL, lease_deadline = 0, updated_at = $3" \
	  " WHERE job_id = $1 AND state = 1 AND lease_owner = $2") \
	X(Q_RELEASE_ALL, "UPDATE items SET state = 0, lease_owner = NULL, lease_deadline = 0, updated_at = $2" \
	  " WHERE job_id = $1 AND state = 1") \
	X(Q_NEXT_DUE, "SELECT min(next_try) FROM items WHERE job_id = $1 AND state = 3") \
	X(Q_ITEM_DONE, "UPDATE items SET state = 2, attempts = $4, lease_owner = NULL, lease_deadline = 0," \
	  " updated_at = $5" PG_ITEM_FENCE) \
	X(Q_ITEM_RETRY, "UPDATE items SET state = 3, attempts = $4, next_try = $5, last_status = $6," \
	  " last_error = $7, lease_owner = NULL, lease_deadline = 0, updated_at = $8" PG_ITEM_FENCE) \
	X(Q_ITEM_DEAD, "UPDATE items SET state = 4, attempts = $4, last_status = $5, last_error = $6," \
	  " lease_owner = NULL, lease_deadline = 0, updated_at = $7" PG_ITEM_FENCE) \
	X(Q_ITEM_RELEASE, "UPDATE items SET state = 0, lease_owner = NULL, lease_deadline = 0, updated_at = $4" \
	  PG_ITEM_FENCE) \
	X(Q_STEP_INSERT, "INSERT INTO steps (" PG_STEP_COLS ") VALUES (" PG_STEP_VALS ")" PG_STEP_UPSERT) \
	X(Q_STEP_PUT, "INSERT INTO steps (" PG_STEP_COLS ") SELECT " PG_STEP_VALS " FROM items" \
	  " WHERE job_id = $1 AND seq = $2 AND fence = $19 AND state = 1 FOR SHARE" PG_STEP_UPSERT) \
	X(Q_STEPS_EACH, "SELECT " PG_STEP_READ_COLS " FROM steps" \
	  " WHERE job_id = $1 AND item_seq = $2 ORDER BY step, turn") \
	X(Q_ITEM_SET_STEP, "UPDATE items SET attempts = CASE WHEN $4::int > step THEN 0 ELSE attempts END," \
	  " step = $4, updated_at = $5" PG_ITEM_FENCE) \
	X(Q_ITEM_WAIT, "UPDATE items SET state = 5, step = $4, lease_owner = NULL, lease_deadline = 0," \
	  " updated_at = $5" PG_ITEM_FENCE) \
	X(Q_ITEM_FIND, "SELECT seq, state, step, attempts, key FROM items WHERE job_id = $1 AND key = $2") \
	X(Q_ITEM_STATE_LOCK, "SELECT state FROM items WHERE job_id = $1 AND seq = $2 FOR UPDATE") \
	X(Q_ITEM_KEY, "SELECT key FROM items WHERE job_id = $1 AND seq = $2") \
	X(Q_ITEM_APPROVE, "UPDATE items SET state = 0, attempts = 0, next_try = 0, updated_at = $3" \
	  " WHERE job_id = $1 AND seq = $2 AND state = 5") \
	X(Q_ITEM_REJECT, "UPDATE items SET state = 4, last_status = 0, last_error = $3, updated_at = $4" \
	  " WHERE job_id = $1 AND seq = $2 AND state = 5") \
	X(Q_ITEMS_REOPEN, "UPDATE items SET state = 0, attempts = 0, step = 0, next_try = 0, updated_at = $2" \
	  " WHERE job_id = $1 AND state = 2") \
	X(Q_STEPS_DONE, "SELECT state, step, count(*) FROM items WHERE job_id = $1 GROUP BY state, step") \
	X(Q_VERIFY_ROWS, "SELECT s.job_id, s.item_seq, s.step, s.turn, s.request_hash, s.response, s.delta," \
	  " s.checksum, i.key FROM steps s LEFT JOIN items i ON i.job_id = s.job_id AND i.seq = s.item_seq" \
	  " WHERE (s.job_id, s.item_seq, s.step, s.turn) > ($1::bigint, $2::bigint, $3::int, $4::int)" \
	  " ORDER BY s.job_id, s.item_seq, s.step, s.turn LIMIT 1000") \
	X(Q_ITEMS_COUNT_ALL, "SELECT count(*) FROM items") \
	X(Q_ITEM_COUNTS, "SELECT state, count(*) FROM items WHERE job_id = $1 GROUP BY state") \
	X(Q_ITEMS_MASK, "SELECT " PG_ITEM_VIEW_COLS " WHERE i.job_id = $1 AND ((1 << i.state) & $2::int) <> 0" \
	  " AND i.seq > $3 ORDER BY i.seq LIMIT $4") \
	X(Q_ITEMS_STATE, "SELECT " PG_ITEM_VIEW_COLS " WHERE i.job_id = $1 AND i.state = $2 AND i.seq > $3" \
	  " ORDER BY i.seq LIMIT $4") \
	X(Q_RETRY_DEAD_ALL, "UPDATE items SET state = 0, attempts = 0, next_try = 0, updated_at = $2" \
	  " WHERE job_id = $1 AND state = 4") \
	X(Q_RETRY_DEAD_KEY, "UPDATE items SET state = 0, attempts = 0, next_try = 0, updated_at = $2" \
	  " WHERE job_id = $1 AND key = $3 AND state = 4") \
	X(Q_EVENT_ADD, "WITH j AS (UPDATE jobs SET next_event_seq = next_event_seq + 1 WHERE id = $1" \
	  " RETURNING next_event_seq - 1 AS n)" \
	  " INSERT INTO events (job_id, seq, ts, type, item_key, data)" \
	  " SELECT $1, n, $2, $3, $4, $5 FROM j RETURNING seq") \
	X(Q_EVENTS_EACH, "SELECT " PG_EVENT_COLS " FROM events WHERE job_id = $1 AND seq > $2" \
	  " ORDER BY seq LIMIT $3") \
	X(Q_EVENTS_ALL, "SELECT " PG_EVENT_COLS " FROM events WHERE gseq > $1 ORDER BY gseq LIMIT $2")

#define PG_ENUM(id, sql) id,
enum pg_query { PG_STATEMENTS(PG_ENUM) PG_Q_COUNT };
#undef PG_ENUM

struct pg_store {
	struct lh_store base;   /* first: the handle store.c sees */
	PGconn *conn;
	char *where;            /* owned: the URL with any password masked, for messages */
	int in_tx;              /* inside lh_store_begin .. commit/rollback */
};

static inline struct pg_store *pgs(struct lh_store *st)
{
	return (struct pg_store *)st;
}

/* Text parameters of one statement. NULL values are SQL NULLs. */
#define PG_MAXP 20
struct pg_args {
	int n;
	const char *v[PG_MAXP];
	int len[PG_MAXP];
	int fmt[PG_MAXP];
	char num[PG_MAXP][32];
	char *owned[PG_MAXP];
};

void pg_args_init(struct pg_args *a);
void pg_args_release(struct pg_args *a);
void pg_arg_i64(struct pg_args *a, int64_t v);
void pg_arg_f(struct pg_args *a, double v);
void pg_arg_s(struct pg_args *a, const char *v);          /* borrowed until the statement ran */
void pg_arg_sn(struct pg_args *a, const char *v, size_t n); /* copied; NULL stays NULL */
void pg_arg_bin(struct pg_args *a, const void *v, size_t n); /* bytea, binary; borrowed */

/* Runs a prepared statement with a's parameters. 0, with *res (may be
 * NULL: cleared) the result and *changes (may be NULL) the rows it changed;
 * or an LH_E code recorded as "could not <what>: <reason>". a is released. */
int pg_run(struct pg_store *s, enum pg_query id, struct pg_args *a, PGresult **res, int64_t *changes,
	   struct lh_err *e, const char *what);
/* Several statements in the caller's transaction, or in one of their own. */
int pg_tx_enter(struct pg_store *s, int *own, struct lh_err *e);
int pg_tx_leave(struct pg_store *s, int own, int rc, struct lh_err *e);
/* Column accessors: NULL reads as 0 or NULL. */
int64_t pg_i64(const PGresult *r, int row, int col);
double pg_f(const PGresult *r, int row, int col);
const char *pg_s(const PGresult *r, int row, int col);  /* borrowed from r, NULL for SQL NULL */
char *pg_dup(const PGresult *r, int row, int col);      /* new, or NULL */
/* Runs a bound fenced transition: LH_EFENCED, having changed nothing, when
 * the lease moved on. */
int pg_fenced(struct pg_store *s, enum pg_query id, struct pg_args *a, int64_t job, int64_t seq, int64_t fence,
	      struct lh_err *e, const char *what);
int pg_job_exists(struct pg_store *s, int64_t id, struct lh_err *e, const char *what);

/* ---- events.c ---- */
int pg_event_add(struct lh_store *st, int64_t job, double ts, const char *type, const char *item_key,
		 const char *data, int64_t *seq, struct lh_err *e);
int pg_events_each(struct lh_store *st, int64_t job, int64_t after, size_t limit, lh_event_fn fn, void *arg,
		   struct lh_err *e);
int pg_events_all_each(struct lh_store *st, int64_t after_gseq, size_t limit, lh_event_fn fn, void *arg,
		       struct lh_err *e);

/* ---- items.c ---- */
int pg_item_add(struct lh_store *st, int64_t job, int64_t seq, const char *key, size_t key_len,
		const char *input, size_t input_len, int64_t *dup_seq, struct lh_err *e);
int pg_claim(struct lh_store *st, int64_t job, const char *owner, double now, double lease_secs, size_t max,
	     struct lh_claimed **out, size_t *n, struct lh_err *e);
int pg_renew(struct lh_store *st, int64_t job, const char *owner, double deadline, struct lh_err *e);
int pg_release_leases(struct lh_store *st, int64_t job, const char *owner, int64_t *n, struct lh_err *e);
int pg_next_due(struct lh_store *st, int64_t job, double *when, struct lh_err *e);
int pg_item_done(struct lh_store *st, int64_t job, int64_t seq, int64_t fence, int attempts,
		 const struct lh_step_rec *step, struct lh_err *e);
int pg_item_retry(struct lh_store *st, int64_t job, int64_t seq, int64_t fence, int attempts, double next_try,
		  int status, const char *error, struct lh_err *e);
int pg_item_dead(struct lh_store *st, int64_t job, int64_t seq, int64_t fence, int attempts, int status,
		 const char *error, struct lh_err *e);
int pg_item_release(struct lh_store *st, int64_t job, int64_t seq, int64_t fence, struct lh_err *e);
int pg_item_counts(struct lh_store *st, int64_t job, int64_t counts[LH_ITEM_NSTATES], struct lh_err *e);
int pg_items_each(struct lh_store *st, int64_t job, unsigned state_mask, lh_item_fn fn, void *arg,
		  struct lh_err *e);
int pg_items_page(struct lh_store *st, int64_t job, unsigned state_mask, int64_t after_seq, size_t limit,
		  lh_item_fn fn, void *arg, struct lh_err *e);
int pg_items_retry_dead(struct lh_store *st, int64_t job, const char *const *keys, size_t nkeys, int64_t *n,
			struct lh_err *e);
int pg_step_put(struct lh_store *st, int64_t job, int64_t seq, int64_t fence, const struct lh_step_rec *step,
		struct lh_err *e);
int pg_steps_each(struct lh_store *st, int64_t job, int64_t seq, lh_step_fn fn, void *arg, struct lh_err *e);
int pg_item_set_step(struct lh_store *st, int64_t job, int64_t seq, int64_t fence, int step, struct lh_err *e);
int pg_item_wait(struct lh_store *st, int64_t job, int64_t seq, int64_t fence, int step,
		 const struct lh_step_rec *pending, struct lh_err *e);
int pg_item_find(struct lh_store *st, int64_t job, const char *key, struct lh_item_info *out, struct lh_err *e);
int pg_item_decide(struct lh_store *st, int64_t job, int64_t seq, int approve, const struct lh_step_rec *row,
		   const char *error, struct lh_err *e);
int pg_items_reopen(struct lh_store *st, int64_t job, int64_t *n, struct lh_err *e);
int pg_reduce_put(struct lh_store *st, int64_t job, int level, int index, const struct lh_step_rec *row,
		  struct lh_err *e);
int pg_item_steps_done(struct lh_store *st, int64_t job, int64_t *per_step, size_t nsteps, int64_t *waiting,
		       struct lh_err *e);
int pg_verify(struct lh_store *st, void (*on_bad)(void *arg, const char *what), void *arg,
	      struct lh_verify_report *out, struct lh_err *e);

#endif
