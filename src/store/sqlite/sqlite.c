/*
 * store layer: the SQLite backend (the default, embedded store).
 *
 * One file in WAL mode. The schema is versioned with PRAGMA user_version and
 * built by an ordered list of forward migrations, applied in one transaction
 * at open; PRAGMA application_id marks the file as longhaul's so that a
 * stranger's database is refused rather than written into.
 *
 * Every statement is prepared once at open and kept in the handle: the engine
 * commits tens of thousands of items a second, and preparing costs more than
 * running the small statements it uses. Caller buffers are bound with
 * SQLITE_STATIC, which is safe because each statement is stepped and reset
 * before the function returns.
 *
 * Why the indexes are what they are (see docs/store.md):
 *   items_state (job_id, state, seq)      pending items in seq order, counts,
 *                                         listing one state in order
 *   items_retry (job_id, next_try, seq)   partial, state = 3: retry items
 *                                         that are due, and the next due time
 *   items_lease (job_id, lease_deadline, seq) partial, state = 1: expired
 *                                         leases, renewals, releases
 *   jobs_state (state)                    jobs of one state by id, counts
 *   jobs_schedule (state, priority DESC, id) the queue in start order
 *   events UNIQUE (job_id, seq)           one job's events; the rowid gseq
 *                                         orders the all-jobs stream
 *   steps PRIMARY KEY (job_id, item_seq, step, turn)
 *                                         the journal: one item's rows in
 *                                         (step, turn) order, a job's rows
 *                                         (pseudo items of a reduce too)
 *                                         deleted with it
 * The partial indexes hold only the few items in those states, so keeping
 * them costs little however large the job.
 *
 * Several handles may be open on one file (the daemon's commit, control and
 * API threads): each waits up to 5 s for another's write transaction (the
 * busy timeout set at open), and every write takes the write lock when its
 * transaction starts, so that waits go through the busy handler.
 *
 * SQLite rewrites a whole row on every UPDATE, so an item's input, written
 * once and read at each claim, lives in item_inputs, apart from the small row
 * whose state changes. In each table the small, often-read columns come
 * before the large ones (last_error, response): SQLite must walk a row's
 * overflow pages to reach a column that lies beyond a large one.
 */
#include "store/sqlite/sqlite_internal.h"
#include "util/time.h"

#include <errno.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

/* ---- schema ---- */

static const char schema_v1[] =
	"CREATE TABLE jobs ("
	" id INTEGER PRIMARY KEY,"
	" ref TEXT NOT NULL UNIQUE,"
	" name TEXT,"
	" kind TEXT,"
	" state TEXT NOT NULL,"
	" priority INTEGER NOT NULL DEFAULT 0,"
	" ingest_done INTEGER NOT NULL DEFAULT 0,"
	" created_at REAL NOT NULL DEFAULT 0,"
	" started_at REAL NOT NULL DEFAULT 0,"
	" finished_at REAL NOT NULL DEFAULT 0,"
	" updated_at REAL NOT NULL DEFAULT 0,"
	" run_secs REAL NOT NULL DEFAULT 0,"
	" n_total INTEGER NOT NULL DEFAULT 0,"
	" n_done INTEGER NOT NULL DEFAULT 0,"
	" n_dead INTEGER NOT NULL DEFAULT 0,"
	" n_retries INTEGER NOT NULL DEFAULT 0,"
	" prompt_tokens INTEGER NOT NULL DEFAULT 0,"
	" completion_tokens INTEGER NOT NULL DEFAULT 0,"
	" next_event_seq INTEGER NOT NULL DEFAULT 1,"
	" source_sig TEXT,"
	" spec TEXT"
	");"
	"CREATE TABLE items ("
	" id INTEGER PRIMARY KEY,"
	" job_id INTEGER NOT NULL,"
	" seq INTEGER NOT NULL,"
	" state INTEGER NOT NULL DEFAULT 0,"
	" attempts INTEGER NOT NULL DEFAULT 0,"
	" fence INTEGER NOT NULL DEFAULT 0,"
	" lease_deadline REAL NOT NULL DEFAULT 0,"
	" next_try REAL NOT NULL DEFAULT 0,"
	" last_status INTEGER NOT NULL DEFAULT 0,"
	" updated_at REAL NOT NULL DEFAULT 0,"
	" lease_owner TEXT,"
	" key TEXT NOT NULL,"
	" last_error TEXT,"
	" UNIQUE (job_id, seq),"
	" UNIQUE (job_id, key)"
	");"
	/* Inputs live apart from the items' state: SQLite rewrites a whole
	 * row on every UPDATE, and an item changes state several times while
	 * its input, often kilobytes, is written once. */
	"CREATE TABLE item_inputs ("
	" item_id INTEGER PRIMARY KEY,"
	" input TEXT NOT NULL"
	");"
	"CREATE INDEX items_state ON items (job_id, state, seq);"
	"CREATE INDEX items_retry ON items (job_id, next_try, seq) WHERE state = 3;"
	"CREATE INDEX items_lease ON items (job_id, lease_deadline, seq) WHERE state = 1;"
	"CREATE TABLE steps ("
	" job_id INTEGER NOT NULL,"
	" item_seq INTEGER NOT NULL,"
	" step INTEGER NOT NULL,"
	" attempt INTEGER NOT NULL,"
	" status INTEGER NOT NULL,"
	" prompt_tokens INTEGER NOT NULL DEFAULT 0,"
	" completion_tokens INTEGER NOT NULL DEFAULT 0,"
	" started_at REAL NOT NULL DEFAULT 0,"
	" first_byte_at REAL NOT NULL DEFAULT 0,"
	" ended_at REAL NOT NULL DEFAULT 0,"
	" request_hash TEXT,"
	" request_id TEXT,"
	" response TEXT,"
	" PRIMARY KEY (job_id, item_seq, step)"
	");"
	/* Events are small and written as often as items finish: without a
	 * rowid each costs one b-tree insert instead of two. */
	"CREATE TABLE events ("
	" job_id INTEGER NOT NULL,"
	" seq INTEGER NOT NULL,"
	" ts REAL NOT NULL,"
	" type TEXT NOT NULL,"
	" item_key TEXT,"
	" data TEXT,"
	" PRIMARY KEY (job_id, seq)"
	") WITHOUT ROWID;"
	"CREATE TABLE workers ("
	" id TEXT PRIMARY KEY,"
	" host TEXT NOT NULL,"
	" pid INTEGER NOT NULL,"
	" heartbeat REAL NOT NULL"
	");";

/* Version 2, for the daemon: many jobs listed, filtered and scheduled, and
 * one stream of every job's events.
 *
 * jobs is rebuilt rather than ALTERed, since ADD COLUMN appends and the new
 * small columns (time_limit, the rates) would land behind spec, which may
 * be kilobytes; the table holds one small row per job, so copying it is
 * cheap. Its id becomes AUTOINCREMENT: the API hands job ids out, and a
 * deleted job's id must not come back as another job. Two indexes:
 *   jobs_state (state)                     one state, by id either way
 *                                          (an index holds the rowid), counts
 *   jobs_schedule (state, priority DESC, id) the queue in the order jobs run
 * Neither changes when the counters do, so the engine's frequent job_add
 * updates do not touch them.
 *
 * events gains a global number, gseq, which the all-jobs stream resumes
 * from. AUTOINCREMENT keeps it from being reused after the newest events are
 * deleted with their job, which would make a resuming client skip the new
 * ones. Existing events are numbered in time order, except that each job's
 * own order is kept (max ts so far within the job as the key). */
static const char schema_v2[] =
	"CREATE TABLE jobs_v2 ("
	" id INTEGER PRIMARY KEY AUTOINCREMENT,"
	" ref TEXT NOT NULL UNIQUE,"
	" name TEXT,"
	" kind TEXT,"
	" state TEXT NOT NULL,"
	" priority INTEGER NOT NULL DEFAULT 0,"
	" ingest_done INTEGER NOT NULL DEFAULT 0,"
	" created_at REAL NOT NULL DEFAULT 0,"
	" started_at REAL NOT NULL DEFAULT 0,"
	" finished_at REAL NOT NULL DEFAULT 0,"
	" updated_at REAL NOT NULL DEFAULT 0,"
	" run_secs REAL NOT NULL DEFAULT 0,"
	" time_limit REAL NOT NULL DEFAULT 0,"
	" rate_items REAL NOT NULL DEFAULT 0,"
	" rate_tokens REAL NOT NULL DEFAULT 0,"
	" n_total INTEGER NOT NULL DEFAULT 0,"
	" n_done INTEGER NOT NULL DEFAULT 0,"
	" n_dead INTEGER NOT NULL DEFAULT 0,"
	" n_retries INTEGER NOT NULL DEFAULT 0,"
	" prompt_tokens INTEGER NOT NULL DEFAULT 0,"
	" completion_tokens INTEGER NOT NULL DEFAULT 0,"
	" next_event_seq INTEGER NOT NULL DEFAULT 1,"
	" source_sig TEXT,"
	" last_error TEXT,"
	" spec TEXT"
	");"
	"INSERT INTO jobs_v2 (id, ref, name, kind, state, priority, ingest_done, created_at, started_at,"
	" finished_at, updated_at, run_secs, n_total, n_done, n_dead, n_retries, prompt_tokens,"
	" completion_tokens, next_event_seq, source_sig, spec)"
	" SELECT id, ref, name, kind, state, priority, ingest_done, created_at, started_at,"
	" finished_at, updated_at, run_secs, n_total, n_done, n_dead, n_retries, prompt_tokens,"
	" completion_tokens, next_event_seq, source_sig, spec FROM jobs ORDER BY id;"
	"DROP TABLE jobs;"
	"ALTER TABLE jobs_v2 RENAME TO jobs;"
	"CREATE INDEX jobs_state ON jobs (state);"
	"CREATE INDEX jobs_schedule ON jobs (state, priority DESC, id);"
	"CREATE TABLE events_v2 ("
	" gseq INTEGER PRIMARY KEY AUTOINCREMENT,"
	" job_id INTEGER NOT NULL,"
	" seq INTEGER NOT NULL,"
	" ts REAL NOT NULL,"
	" type TEXT NOT NULL,"
	" item_key TEXT,"
	" data TEXT,"
	" UNIQUE (job_id, seq)"
	");"
	"INSERT INTO events_v2 (job_id, seq, ts, type, item_key, data)"
	" SELECT job_id, seq, ts, type, item_key, data FROM events"
	" ORDER BY max(ts) OVER (PARTITION BY job_id ORDER BY seq), job_id, seq;"
	"DROP TABLE events;"
	"ALTER TABLE events_v2 RENAME TO events;";

/* Version 3: why a job is paused (user, early_stop, ...), what a running
 * job is waiting for (a server that cannot be reached yet), both shown to
 * people, and its requests in flight (fewer than its leases). ADD COLUMN puts them behind spec and last_error, which costs
 * nothing here: every job read (JOB_COLS) reads the whole row anyway. */
static const char schema_v3[] =
	"ALTER TABLE jobs ADD COLUMN pause_reason TEXT;"
	"ALTER TABLE jobs ADD COLUMN waiting TEXT;"
	"ALTER TABLE jobs ADD COLUMN in_flight INTEGER NOT NULL DEFAULT 0;";

/* Version 4: the journal for pipelines (docs/store.md, "The journal").
 *
 * steps is rebuilt: its key becomes (job_id, item_seq, step, turn), a
 * loop's turns being rows of one step, and each row gains its kind, model,
 * delta (a loop turn's new messages) and checksum. The checksums of the
 * rows already there are computed in C, by the SQL function
 * lh_step_checksum (journal.c), which every handle registers at open so
 * that this migration can run in whichever opens the file first. The small
 * columns come first, then checksum and request_hash (64 bytes each), then
 * the large ones: response, delta.
 *
 * items gains its step pointer. ADD COLUMN puts it behind last_error,
 * which costs little: last_error is a small JSON text, and only the
 * pipeline's progress query (one GROUP BY) and item_find read step. */
static const char schema_v4[] =
	"CREATE TABLE steps_v4 ("
	" job_id INTEGER NOT NULL,"
	" item_seq INTEGER NOT NULL,"
	" step INTEGER NOT NULL,"
	" turn INTEGER NOT NULL DEFAULT 0,"
	" attempt INTEGER NOT NULL,"
	" status INTEGER NOT NULL,"
	" prompt_tokens INTEGER NOT NULL DEFAULT 0,"
	" completion_tokens INTEGER NOT NULL DEFAULT 0,"
	" started_at REAL NOT NULL DEFAULT 0,"
	" first_byte_at REAL NOT NULL DEFAULT 0,"
	" ended_at REAL NOT NULL DEFAULT 0,"
	" kind TEXT,"
	" model TEXT,"
	" checksum TEXT NOT NULL,"
	" request_hash TEXT,"
	" request_id TEXT,"
	" response TEXT,"
	" delta TEXT,"
	" PRIMARY KEY (job_id, item_seq, step, turn)"
	");"
	"INSERT INTO steps_v4 (job_id, item_seq, step, turn, attempt, status, prompt_tokens, completion_tokens,"
	" started_at, first_byte_at, ended_at, checksum, request_hash, request_id, response)"
	" SELECT job_id, item_seq, step, 0, attempt, status, prompt_tokens, completion_tokens,"
	" started_at, first_byte_at, ended_at, lh_step_checksum(request_hash, response, NULL), request_hash,"
	" request_id, response FROM steps ORDER BY job_id, item_seq, step;"
	"DROP TABLE steps;"
	"ALTER TABLE steps_v4 RENAME TO steps;"
	"ALTER TABLE items ADD COLUMN step INTEGER NOT NULL DEFAULT 0;";

/* Forward migrations in order: migration i takes the schema from version
 * i to version i + 1. Add to the end; never edit one that has shipped. */
static const char *const migrations[] = {
	schema_v1,
	schema_v2,
	schema_v3,
	schema_v4,
};

_Static_assert(sizeof migrations / sizeof migrations[0] == STORE_SQLITE_SCHEMA,
	       "one migration per schema version");

/* ---- statements (the table is in sqlite_internal.h) ---- */

#define SQ_TEXT(id, sql) [id] = sql,
static const char *const sq_sql[Q_COUNT] = { SQ_STATEMENTS(SQ_TEXT) };
#undef SQ_TEXT

/* ---- errors ---- */

int sq_code_of(int rc)
{
	switch (rc & 0xff) {
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return LH_EBUSY;
	case SQLITE_CORRUPT:
	case SQLITE_NOTADB:
		return LH_ECORRUPT;
	case SQLITE_FULL:
		return LH_EFULL;
	case SQLITE_NOMEM:
		return LH_ENOMEM;
	case SQLITE_TOOBIG:
		return LH_ETOOBIG;
	default:
		return LH_ESTORE;
	}
}

/* Records "could not <what>: <sqlite's reason>" and returns the code for rc.
 * A damaged file is named, since the user must find it to repair it. */
int sq_fail(struct sq_store *s, struct lh_err *e, int rc, const char *fmt, ...)
{
	char what[256];
	va_list ap;
	int code = sq_code_of(rc);

	va_start(ap, fmt);
	vsnprintf(what, sizeof what, fmt, ap);
	va_end(ap);
	if (code == LH_ECORRUPT)
		return lh_err_set(e, code, "could not %s: store \"%s\" is damaged: %s", what, s->path,
				  sqlite3_errmsg(s->db));
	return lh_err_set(e, code, "could not %s: %s", what, sqlite3_errmsg(s->db));
}

/* Runs a statement that returns no rows; *changes (may be NULL) gets the
 * number of rows it changed. */
int sq_run(struct sq_store *s, sqlite3_stmt *q, int brc, int *changes, struct lh_err *e, const char *what)
{
	int rc = brc == SQLITE_OK ? sqlite3_step(q) : brc;

	if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
		rc = sq_fail(s, e, rc, "%s", what);
		sq_finish(q);
		return rc;
	}
	if (changes)
		*changes = sqlite3_changes(s->db);
	sq_finish(q);
	return 0;
}

/* ---- transactions ---- */

static int sq_begin(struct lh_store *st, struct lh_err *e)
{
	struct sq_store *s = sq(st);

	if (!sqlite3_get_autocommit(s->db))
		return lh_err_set(e, LH_EINTERNAL, "could not begin a transaction: one is already open");
	return sq_run(s, sq_stmt(s, Q_BEGIN), SQLITE_OK, NULL, e, "begin a transaction");
}

static int sq_commit(struct lh_store *st, struct lh_err *e)
{
	struct sq_store *s = sq(st);

	return sq_run(s, sq_stmt(s, Q_COMMIT), SQLITE_OK, NULL, e, "commit");
}

static void sq_rollback(struct lh_store *st)
{
	struct sq_store *s = sq(st);

	/* SQLite may already have rolled back on its own (a full disk, an
	 * I/O error); then there is nothing left to undo. */
	if (sqlite3_get_autocommit(s->db))
		return;
	sqlite3_step(sq_stmt(s, Q_ROLLBACK));
	sq_finish(sq_stmt(s, Q_ROLLBACK));
}

/* Functions made of several statements run them in the caller's transaction,
 * or in one of their own when there is none, so that they stay atomic. */
int sq_tx_enter(struct sq_store *s, int *own, struct lh_err *e)
{
	int rc;

	*own = 0;
	if (!sqlite3_get_autocommit(s->db))
		return 0;
	rc = sq_begin(&s->base, e);
	if (rc == 0)
		*own = 1;
	return rc;
}

int sq_tx_leave(struct sq_store *s, int own, int rc, struct lh_err *e)
{
	if (!own)
		return rc;
	if (rc == 0) {
		rc = sq_commit(&s->base, e);
		if (rc == 0)
			return 0;
	}
	sq_rollback(&s->base);
	return rc;
}

/* ---- jobs ---- */

static void copy_state(char dst[16], const char *src, size_t n)
{
	if (!src)
		n = 0;
	if (n > 15)
		n = 15;
	if (n)
		memcpy(dst, src, n);
	dst[n] = '\0';
}

static void read_job(sqlite3_stmt *q, struct lh_job_rec *j)
{
	j->id = sqlite3_column_int64(q, 0);
	j->ref = sq_col_dup(q, 1);
	j->name = sq_col_dup(q, 2);
	j->kind = sq_col_dup(q, 3);
	j->spec = sq_col_dup(q, 4);
	j->source_sig = sq_col_dup(q, 5);
	copy_state(j->state, (const char *)sqlite3_column_text(q, 6), (size_t)sqlite3_column_bytes(q, 6));
	j->priority = sqlite3_column_int(q, 7);
	j->ingest_done = sqlite3_column_int(q, 8);
	j->created_at = sqlite3_column_double(q, 9);
	j->started_at = sqlite3_column_double(q, 10);
	j->finished_at = sqlite3_column_double(q, 11);
	j->updated_at = sqlite3_column_double(q, 12);
	j->run_secs = sqlite3_column_double(q, 13);
	j->n_total = sqlite3_column_int64(q, 14);
	j->n_done = sqlite3_column_int64(q, 15);
	j->n_dead = sqlite3_column_int64(q, 16);
	j->n_retries = sqlite3_column_int64(q, 17);
	j->prompt_tokens = sqlite3_column_int64(q, 18);
	j->completion_tokens = sqlite3_column_int64(q, 19);
	j->time_limit = sqlite3_column_double(q, 20);
	j->rate_items = sqlite3_column_double(q, 21);
	j->rate_tokens = sqlite3_column_double(q, 22);
	j->last_error = sq_col_dup(q, 23);
	j->last_event_seq = sqlite3_column_int64(q, 24);
	copy_state(j->pause_reason, (const char *)sqlite3_column_text(q, 25), (size_t)sqlite3_column_bytes(q, 25));
	j->waiting = sq_col_dup(q, 26);
	j->in_flight = sqlite3_column_int64(q, 27);
}

/* Steps a bound job query: fills out from its one row, or LH_ENOTFOUND. */
static int fetch_job(struct sq_store *s, sqlite3_stmt *q, int brc, struct lh_job_rec *out, struct lh_err *e,
		     const char *what)
{
	int rc = brc == SQLITE_OK ? sqlite3_step(q) : brc;

	if (rc == SQLITE_ROW) {
		read_job(q, out);
		rc = 0;
	} else if (rc == SQLITE_DONE) {
		rc = lh_err_set(e, LH_ENOTFOUND, "could not %s: no such job", what);
	} else {
		rc = sq_fail(s, e, rc, "%s", what);
	}
	sq_finish(q);
	return rc;
}

static int sq_job_find(struct lh_store *st, const char *ref, struct lh_job_rec *out, struct lh_err *e)
{
	struct sq_store *s = sq(st);
	sqlite3_stmt *q = sq_stmt(s, Q_JOB_FIND);
	char what[256];

	snprintf(what, sizeof what, "find job \"%s\"", ref);
	return fetch_job(s, q, sq_bind_str(q, 1, ref), out, e, what);
}

static int sq_job_get(struct lh_store *st, int64_t id, struct lh_job_rec *out, struct lh_err *e)
{
	struct sq_store *s = sq(st);
	sqlite3_stmt *q = sq_stmt(s, Q_JOB_GET);
	char what[64];

	snprintf(what, sizeof what, "read job %lld", (long long)id);
	return fetch_job(s, q, sqlite3_bind_int64(q, 1, id), out, e, what);
}

static int sq_job_create(struct lh_store *st, struct lh_job_rec *j, struct lh_err *e)
{
	struct sq_store *s = sq(st);
	sqlite3_stmt *q = sq_stmt(s, Q_JOB_CREATE);
	double now = lh_wall();
	int brc = 0, changes = 0, rc;
	char what[256];

	brc |= sq_bind_str(q, 1, j->ref);
	brc |= sq_bind_str(q, 2, j->name);
	brc |= sq_bind_str(q, 3, j->kind);
	brc |= sq_bind_str(q, 4, j->spec);
	brc |= sq_bind_str(q, 5, j->source_sig);
	brc |= sq_bind_str(q, 6, j->state[0] ? j->state : "queued");
	brc |= sqlite3_bind_int(q, 7, j->priority);
	brc |= sqlite3_bind_double(q, 8, now);
	brc |= sqlite3_bind_double(q, 9, j->time_limit > 0 ? j->time_limit : 0);
	snprintf(what, sizeof what, "create job \"%s\"", j->ref);
	rc = sq_run(s, q, brc, &changes, e, what);
	if (rc)
		return rc;
	if (changes != 1)
		return lh_err_set(e, LH_EINPUT, "could not %s: a job with that ref already exists", what);
	j->id = sqlite3_last_insert_rowid(s->db);
	j->created_at = j->updated_at = now;
	if (!j->state[0])
		copy_state(j->state, "queued", 6);
	return 0;
}

static int sq_job_delete(struct lh_store *st, int64_t id, struct lh_err *e)
{
	static const enum sq_query order[] = { Q_JOB_DEL_STEPS, Q_JOB_DEL_EVENTS, Q_JOB_DEL_INPUTS, Q_JOB_DEL_ITEMS,
					       Q_JOB_DEL };
	struct sq_store *s = sq(st);
	char what[64];
	int own, rc, changes = 0;
	size_t i;

	snprintf(what, sizeof what, "delete job %lld", (long long)id);
	rc = sq_tx_enter(s, &own, e);
	for (i = 0; rc == 0 && i < sizeof order / sizeof order[0]; i++) {
		sqlite3_stmt *q = sq_stmt(s, order[i]);
		rc = sq_run(s, q, sqlite3_bind_int64(q, 1, id), &changes, e, what);
	}
	/* The last statement deletes the job itself. */
	if (rc == 0 && changes == 0)
		rc = lh_err_set(e, LH_ENOTFOUND, "could not %s: no such job", what);
	return sq_tx_leave(s, own, rc, e);
}

/* Runs a bound UPDATE of one job; LH_ENOTFOUND when it matched none. */
static int update_job(struct sq_store *s, sqlite3_stmt *q, int brc, int64_t id, struct lh_err *e,
		      const char *what)
{
	int changes = 0;
	int rc = sq_run(s, q, brc, &changes, e, what);

	if (rc == 0 && changes == 0)
		rc = lh_err_set(e, LH_ENOTFOUND, "could not %s: no job %lld", what, (long long)id);
	return rc;
}

static int sq_job_set_state(struct lh_store *st, int64_t id, const char *state, double started_at,
			    double finished_at, struct lh_err *e)
{
	struct sq_store *s = sq(st);
	sqlite3_stmt *q = sq_stmt(s, Q_JOB_SET_STATE);
	int brc = 0;

	brc |= sqlite3_bind_int64(q, 1, id);
	brc |= sq_bind_str(q, 2, state);
	brc |= sqlite3_bind_double(q, 3, lh_wall());
	brc |= sqlite3_bind_double(q, 4, started_at);
	brc |= sqlite3_bind_double(q, 5, finished_at);
	return update_job(s, q, brc, id, e, "set a job's state");
}

static int sq_job_set_ingested(struct lh_store *st, int64_t id, int64_t n_total, struct lh_err *e)
{
	struct sq_store *s = sq(st);
	sqlite3_stmt *q = sq_stmt(s, Q_JOB_SET_INGESTED);
	int brc = 0;

	brc |= sqlite3_bind_int64(q, 1, id);
	brc |= sqlite3_bind_int64(q, 2, n_total);
	brc |= sqlite3_bind_double(q, 3, lh_wall());
	return update_job(s, q, brc, id, e, "mark a job ingested");
}

static int sq_job_add(struct lh_store *st, int64_t id, int64_t d_done, int64_t d_dead, int64_t d_retries,
		      int64_t d_prompt, int64_t d_completion, double d_run_secs, struct lh_err *e)
{
	struct sq_store *s = sq(st);
	sqlite3_stmt *q = sq_stmt(s, Q_JOB_ADD);
	int brc = 0;

	brc |= sqlite3_bind_int64(q, 1, id);
	brc |= sqlite3_bind_int64(q, 2, d_done);
	brc |= sqlite3_bind_int64(q, 3, d_dead);
	brc |= sqlite3_bind_int64(q, 4, d_retries);
	brc |= sqlite3_bind_int64(q, 5, d_prompt);
	brc |= sqlite3_bind_int64(q, 6, d_completion);
	brc |= sqlite3_bind_double(q, 7, d_run_secs);
	brc |= sqlite3_bind_double(q, 8, lh_wall());
	return update_job(s, q, brc, id, e, "update a job's counters");
}

static int sq_job_set_priority(struct lh_store *st, int64_t id, int priority, struct lh_err *e)
{
	struct sq_store *s = sq(st);
	sqlite3_stmt *q = sq_stmt(s, Q_JOB_SET_PRIORITY);
	int brc = 0;

	brc |= sqlite3_bind_int64(q, 1, id);
	brc |= sqlite3_bind_int(q, 2, priority);
	brc |= sqlite3_bind_double(q, 3, lh_wall());
	return update_job(s, q, brc, id, e, "set a job's priority");
}

static int sq_job_set_rates(struct lh_store *st, int64_t id, double items_per_sec, double tokens_per_sec,
			    double d_run_secs, int64_t in_flight, struct lh_err *e)
{
	struct sq_store *s = sq(st);
	sqlite3_stmt *q = sq_stmt(s, Q_JOB_SET_RATES);
	int brc = 0;

	brc |= sqlite3_bind_int64(q, 1, id);
	brc |= sqlite3_bind_double(q, 2, items_per_sec);
	brc |= sqlite3_bind_double(q, 3, tokens_per_sec);
	brc |= sqlite3_bind_double(q, 4, d_run_secs);
	brc |= sqlite3_bind_double(q, 5, lh_wall());
	brc |= sqlite3_bind_int64(q, 6, in_flight);
	return update_job(s, q, brc, id, e, "set a job's rates");
}

static int sq_job_set_error(struct lh_store *st, int64_t id, const char *error_json, struct lh_err *e)
{
	struct sq_store *s = sq(st);
	sqlite3_stmt *q = sq_stmt(s, Q_JOB_SET_ERROR);
	int brc = 0;

	brc |= sqlite3_bind_int64(q, 1, id);
	brc |= sq_bind_str(q, 2, error_json);
	brc |= sqlite3_bind_double(q, 3, lh_wall());
	return update_job(s, q, brc, id, e, "set a job's last error");
}

static int sq_job_set_text(struct lh_store *st, int64_t id, enum lh_job_text which, const char *value,
			   struct lh_err *e)
{
	static const int stmts[] = { [LH_JOB_SPEC] = Q_JOB_SET_SPEC, [LH_JOB_PAUSE_REASON] = Q_JOB_SET_PAUSE_REASON,
				     [LH_JOB_WAITING] = Q_JOB_SET_WAITING };
	struct sq_store *s = sq(st);
	sqlite3_stmt *q = sq_stmt(s, stmts[which]);
	int brc = 0;

	brc |= sqlite3_bind_int64(q, 1, id);
	brc |= sq_bind_str(q, 2, value);
	brc |= sqlite3_bind_double(q, 3, lh_wall());
	return update_job(s, q, brc, id, e, "set a job's text field");
}

/* Guards the iterators, whose statement stays open while the callback runs. */
int sq_check_idle(sqlite3_stmt *q, struct lh_err *e, const char *what)
{
	if (sqlite3_stmt_busy(q))
		return lh_err_set(e, LH_EINTERNAL, "could not %s: called again from its own callback", what);
	return 0;
}

static int sq_jobs_each(struct lh_store *st, const struct lh_job_filter *f, lh_job_fn fn, void *arg,
			struct lh_err *e)
{
	static const enum sq_query by_order[3][2] = {
		[LH_JOBS_NEWEST] = { Q_JOBS_NEWEST, Q_JOBS_NEWEST_STATE },
		[LH_JOBS_OLDEST] = { Q_JOBS_OLDEST, Q_JOBS_OLDEST_STATE },
		[LH_JOBS_SCHEDULE] = { Q_JOBS_SCHEDULE, Q_JOBS_SCHEDULE_STATE },
	};
	struct sq_store *s = sq(st);
	sqlite3_stmt *q = sq_stmt(s, by_order[f->order][f->state != NULL]);
	int64_t after = f->after_id;
	int brc = 0, rc, ret = 0;

	rc = sq_check_idle(q, e, "list jobs");
	if (rc)
		return rc;
	/* No cursor: from the newest, or from the oldest. */
	if (f->order == LH_JOBS_NEWEST && after == 0)
		after = INT64_MAX;
	if (f->state)
		brc |= sq_bind_str(q, 1, f->state);
	brc |= sqlite3_bind_int64(q, 2, after);
	brc |= sqlite3_bind_int64(q, 3, f->limit ? sq_limit_of(f->limit) : -1);
	brc |= sqlite3_bind_int64(q, 4, sq_limit_of(f->offset));
	rc = brc == SQLITE_OK ? sqlite3_step(q) : brc;
	while (rc == SQLITE_ROW) {
		struct lh_job_rec j;

		memset(&j, 0, sizeof j);
		read_job(q, &j);
		ret = fn(&j, arg);
		lh_job_rec_release(&j);
		if (ret)
			break;
		rc = sqlite3_step(q);
	}
	if (ret == 0 && rc != SQLITE_DONE)
		ret = sq_fail(s, e, rc, "list jobs");
	sq_finish(q);
	return ret;
}

static int sq_jobs_count(struct lh_store *st, const char *state, int64_t *n, struct lh_err *e)
{
	struct sq_store *s = sq(st);
	sqlite3_stmt *q = sq_stmt(s, state ? Q_JOBS_COUNT_STATE : Q_JOBS_COUNT);
	int brc = state ? sq_bind_str(q, 1, state) : SQLITE_OK;
	int rc = brc == SQLITE_OK ? sqlite3_step(q) : brc;

	if (rc == SQLITE_ROW) {
		*n = sqlite3_column_int64(q, 0);
		rc = 0;
	} else {
		rc = sq_fail(s, e, rc, "count jobs");
	}
	sq_finish(q);
	return rc;
}

/* ---- items ---- */

/* After an insert that changed nothing: tells which earlier item holds the
 * key (the usual case: a duplicate custom_id, or ingest resumed after a
 * crash, where dup_seq == seq) or, failing that, the seq. */
static int item_conflict(struct sq_store *s, int64_t job, int64_t seq, const char *key, size_t key_len,
			 int64_t *dup_seq, struct lh_err *e)
{
	sqlite3_stmt *q = sq_stmt(s, Q_ITEM_BY_KEY);
	int brc = 0, rc;
	int64_t other = -1;

	brc |= sqlite3_bind_int64(q, 1, job);
	brc |= sq_bind_text_n(q, 2, key, key_len);
	rc = brc == SQLITE_OK ? sqlite3_step(q) : brc;
	if (rc == SQLITE_ROW)
		other = sqlite3_column_int64(q, 0);
	else if (rc != SQLITE_DONE)
		rc = sq_fail(s, e, rc, "look up item key \"%.*s\"", (int)(key_len > 200 ? 200 : key_len), key);
	sq_finish(q);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return rc;
	if (dup_seq)
		*dup_seq = other;
	if (other >= 0)
		return lh_err_set(e, LH_EINPUT, "duplicate key \"%.*s\": item %lld has it already",
				  (int)(key_len > 200 ? 200 : key_len), key, (long long)other);
	return lh_err_set(e, LH_EINPUT, "could not add item %lld to job %lld: that seq is taken by another key",
			  (long long)seq, (long long)job);
}

static int sq_item_add(struct lh_store *st, int64_t job, int64_t seq, const char *key, size_t key_len,
		       const char *input, size_t input_len, int64_t *dup_seq, struct lh_err *e)
{
	struct sq_store *s = sq(st);
	sqlite3_stmt *q = sq_stmt(s, Q_ITEM_ADD);
	int own, brc = 0, changes = 0, rc;

	rc = sq_tx_enter(s, &own, e);
	if (rc)
		return rc;
	brc |= sqlite3_bind_int64(q, 1, job);
	brc |= sqlite3_bind_int64(q, 2, seq);
	brc |= sqlite3_bind_text64(q, 3, key, key_len, SQLITE_STATIC, SQLITE_UTF8);
	brc |= sqlite3_bind_double(q, 4, lh_wall());
	rc = sq_run(s, q, brc, &changes, e, "add an item");
	if (rc == 0 && changes != 1)
		rc = item_conflict(s, job, seq, key, key_len, dup_seq, e);
	if (rc == 0) {
		q = sq_stmt(s, Q_INPUT_ADD);
		brc = sqlite3_bind_int64(q, 1, sqlite3_last_insert_rowid(s->db));
		/* An empty input is still an input: bind "" rather than NULL. */
		brc |= sqlite3_bind_text64(q, 2, input ? input : "", input ? input_len : 0, SQLITE_STATIC,
					   SQLITE_UTF8);
		rc = sq_run(s, q, brc, NULL, e, "add an item's input");
	}
	/* A duplicate wrote nothing, so the caller's transaction (an ingest)
	 * can go on past it. */
	return sq_tx_leave(s, own, rc, e);
}

/* Appends the rowids of up to max items chosen by one of the claim queries
 * to s->ids. */
static int collect(struct sq_store *s, enum sq_query id, int64_t job, double now, size_t max, struct lh_err *e)
{
	sqlite3_stmt *q = sq_stmt(s, id);
	int brc = 0, rc;

	brc |= sqlite3_bind_int64(q, 1, job);
	brc |= sqlite3_bind_double(q, 2, now);
	brc |= sqlite3_bind_int64(q, 3, sq_limit_of(max));
	rc = brc == SQLITE_OK ? sqlite3_step(q) : brc;
	while (rc == SQLITE_ROW) {
		*lh_vec_push_from(&s->ids, 256) = sqlite3_column_int64(q, 0);
		rc = sqlite3_step(q);
	}
	if (rc != SQLITE_DONE)
		rc = sq_fail(s, e, rc, "choose items of job %lld to claim", (long long)job);
	else
		rc = 0;
	sq_finish(q);
	return rc;
}

/* Leases one chosen item (by rowid, which the claim queries read from their
 * index for free) and copies what the worker needs into c. Two plain
 * statements: UPDATE ... RETURNING costs more than both together, since
 * SQLite buffers the returned rows in a temporary table. */
static int take(struct sq_store *s, int64_t id, const char *owner, double now, double deadline,
		struct lh_claimed *c, int *taken, struct lh_err *e)
{
	sqlite3_stmt *q = sq_stmt(s, Q_CLAIM_TAKE);
	int brc = 0, changes = 0, rc;

	*taken = 0;
	brc |= sqlite3_bind_int64(q, 1, id);
	brc |= sq_bind_str(q, 2, owner);
	brc |= sqlite3_bind_double(q, 3, deadline);
	brc |= sqlite3_bind_double(q, 4, now);
	rc = sq_run(s, q, brc, &changes, e, "lease an item");
	if (rc || changes == 0)
		return rc;

	q = sq_stmt(s, Q_CLAIM_READ);
	brc = sqlite3_bind_int64(q, 1, id);
	rc = brc == SQLITE_OK ? sqlite3_step(q) : brc;
	if (rc == SQLITE_ROW) {
		const char *in = (const char *)sqlite3_column_text(q, 4);
		size_t n = (size_t)sqlite3_column_bytes(q, 4);

		c->seq = sqlite3_column_int64(q, 0);
		c->key = sq_col_dup(q, 1);
		c->attempts = sqlite3_column_int(q, 2);
		c->fence = sqlite3_column_int64(q, 3);
		c->input = lh_xmalloc(n + 1);
		if (n)
			memcpy(c->input, in, n);
		c->input[n] = '\0';
		c->input_len = n;
		*taken = 1;
		rc = 0;
	} else if (rc == SQLITE_DONE) {
		rc = lh_err_set(e, LH_ECORRUPT, "could not lease an item: store \"%s\" is damaged: an input is"
				" missing", s->path);
	} else {
		rc = sq_fail(s, e, rc, "lease an item");
	}
	sq_finish(q);
	return rc;
}

static void free_claimed(struct lh_claimed *c, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		lh_claimed_release(&c[i]);
	lh_free(c);
}

static int sq_claim(struct lh_store *st, int64_t job, const char *owner, double now, double lease_secs,
		    size_t max, struct lh_claimed **out, size_t *n, struct lh_err *e)
{
	struct sq_store *s = sq(st);
	struct lh_claimed *c = NULL;
	size_t k = 0, i;
	int own, rc;

	rc = sq_tx_enter(s, &own, e);
	if (rc)
		return rc;
	s->ids.n = 0;
	rc = collect(s, Q_CLAIM_RETRY, job, now, max, e);
	if (rc == 0 && s->ids.n < max)
		rc = collect(s, Q_CLAIM_EXPIRED, job, now, max - s->ids.n, e);
	if (rc == 0 && s->ids.n < max)
		rc = collect(s, Q_CLAIM_PENDING, job, now, max - s->ids.n, e);
	if (rc == 0 && s->ids.n > 0) {
		c = lh_xcalloc(s->ids.n, sizeof *c);
		for (i = 0; rc == 0 && i < s->ids.n; i++) {
			int taken;
			rc = take(s, s->ids.v[i], owner, now, now + lease_secs, &c[k], &taken, e);
			k += (size_t)taken;
		}
	}
	rc = sq_tx_leave(s, own, rc, e);
	if (rc) {
		free_claimed(c, k);
		return rc;
	}
	if (k == 0) {
		lh_free(c);
		c = NULL;
	}
	*out = c;
	*n = k;
	return 0;
}

static int sq_renew(struct lh_store *st, int64_t job, const char *owner, double deadline, struct lh_err *e)
{
	struct sq_store *s = sq(st);
	sqlite3_stmt *q = sq_stmt(s, Q_RENEW);
	int brc = 0;

	brc |= sqlite3_bind_int64(q, 1, job);
	brc |= sq_bind_str(q, 2, owner);
	brc |= sqlite3_bind_double(q, 3, deadline);
	return sq_run(s, q, brc, NULL, e, "renew leases");
}

static int sq_release_leases(struct lh_store *st, int64_t job, const char *owner, int64_t *n, struct lh_err *e)
{
	struct sq_store *s = sq(st);
	sqlite3_stmt *q = sq_stmt(s, owner ? Q_RELEASE_OWNER : Q_RELEASE_ALL);
	int brc = 0, changes = 0, rc;

	brc |= sqlite3_bind_int64(q, 1, job);
	if (owner)
		brc |= sq_bind_str(q, 2, owner);
	brc |= sqlite3_bind_double(q, 3, lh_wall());
	rc = sq_run(s, q, brc, &changes, e, "release leases");
	*n = rc ? 0 : changes;
	return rc;
}

static int sq_next_due(struct lh_store *st, int64_t job, double *when, struct lh_err *e)
{
	struct sq_store *s = sq(st);
	sqlite3_stmt *q = sq_stmt(s, Q_NEXT_DUE);
	int brc = sqlite3_bind_int64(q, 1, job);
	int rc = brc == SQLITE_OK ? sqlite3_step(q) : brc;

	if (rc == SQLITE_ROW && sqlite3_column_type(q, 0) != SQLITE_NULL) {
		*when = sqlite3_column_double(q, 0);
		rc = 0;
	} else if (rc == SQLITE_ROW || rc == SQLITE_DONE) {
		rc = lh_err_set(e, LH_ENOTFOUND, "job %lld has no item waiting to retry", (long long)job);
	} else {
		rc = sq_fail(s, e, rc, "find the next retry time");
	}
	sq_finish(q);
	return rc;
}

/* Runs a bound transition guarded by (fence, state = leased): LH_EFENCED,
 * having changed nothing, when the lease has moved on. */
int sq_fenced(struct sq_store *s, sqlite3_stmt *q, int brc, int64_t job, int64_t seq, int64_t fence,
		  struct lh_err *e, const char *what)
{
	int changes = 0;
	char msg[128];
	int rc;

	snprintf(msg, sizeof msg, "mark item %lld of job %lld %s", (long long)seq, (long long)job, what);
	rc = sq_run(s, q, brc, &changes, e, msg);
	if (rc == 0 && changes != 1)
		rc = lh_err_set(e, LH_EFENCED, "could not %s: its lease with fence %lld is no longer held", msg,
				(long long)fence);
	return rc;
}

static int sq_item_done(struct lh_store *st, int64_t job, int64_t seq, int64_t fence, int attempts,
			const struct lh_step_rec *step, struct lh_err *e)
{
	struct sq_store *s = sq(st);
	sqlite3_stmt *q = sq_stmt(s, Q_ITEM_DONE);
	int own, brc = 0, rc;

	rc = sq_tx_enter(s, &own, e);
	if (rc)
		return rc;
	brc |= sqlite3_bind_int64(q, 1, job);
	brc |= sqlite3_bind_int64(q, 2, seq);
	brc |= sqlite3_bind_int64(q, 3, fence);
	brc |= sqlite3_bind_int(q, 4, attempts);
	brc |= sqlite3_bind_double(q, 5, lh_wall());
	rc = sq_fenced(s, q, brc, job, seq, fence, e, "done");
	/* The state changed first, so a fenced item never reaches the journal. */
	if (rc == 0 && step) {
		q = sq_stmt(s, Q_STEP_INSERT);
		char sum[LH_SHA256_HEX];
		rc = sq_run(s, q, sq_bind_step(q, job, seq, fence, step, sum), NULL, e, "journal a step");
	}
	return sq_tx_leave(s, own, rc, e);
}

static int sq_item_retry(struct lh_store *st, int64_t job, int64_t seq, int64_t fence, int attempts,
			 double next_try, int status, const char *error, struct lh_err *e)
{
	struct sq_store *s = sq(st);
	sqlite3_stmt *q = sq_stmt(s, Q_ITEM_RETRY);
	int brc = 0;

	brc |= sqlite3_bind_int64(q, 1, job);
	brc |= sqlite3_bind_int64(q, 2, seq);
	brc |= sqlite3_bind_int64(q, 3, fence);
	brc |= sqlite3_bind_int(q, 4, attempts);
	brc |= sqlite3_bind_double(q, 5, next_try);
	brc |= sqlite3_bind_int(q, 6, status);
	brc |= sq_bind_str(q, 7, error);
	brc |= sqlite3_bind_double(q, 8, lh_wall());
	return sq_fenced(s, q, brc, job, seq, fence, e, "for retry");
}

static int sq_item_dead(struct lh_store *st, int64_t job, int64_t seq, int64_t fence, int attempts, int status,
			const char *error, struct lh_err *e)
{
	struct sq_store *s = sq(st);
	sqlite3_stmt *q = sq_stmt(s, Q_ITEM_DEAD);
	int brc = 0;

	brc |= sqlite3_bind_int64(q, 1, job);
	brc |= sqlite3_bind_int64(q, 2, seq);
	brc |= sqlite3_bind_int64(q, 3, fence);
	brc |= sqlite3_bind_int(q, 4, attempts);
	brc |= sqlite3_bind_int(q, 5, status);
	brc |= sq_bind_str(q, 6, error);
	brc |= sqlite3_bind_double(q, 7, lh_wall());
	return sq_fenced(s, q, brc, job, seq, fence, e, "dead");
}

static int sq_item_release(struct lh_store *st, int64_t job, int64_t seq, int64_t fence, struct lh_err *e)
{
	struct sq_store *s = sq(st);
	sqlite3_stmt *q = sq_stmt(s, Q_ITEM_RELEASE);
	int brc = 0;

	brc |= sqlite3_bind_int64(q, 1, job);
	brc |= sqlite3_bind_int64(q, 2, seq);
	brc |= sqlite3_bind_int64(q, 3, fence);
	brc |= sqlite3_bind_double(q, 4, lh_wall());
	return sq_fenced(s, q, brc, job, seq, fence, e, "pending");
}

static int sq_item_counts(struct lh_store *st, int64_t job, int64_t counts[LH_ITEM_NSTATES], struct lh_err *e)
{
	struct sq_store *s = sq(st);
	sqlite3_stmt *q = sq_stmt(s, Q_ITEM_COUNTS);
	int brc = sqlite3_bind_int64(q, 1, job);
	int rc = brc == SQLITE_OK ? sqlite3_step(q) : brc;

	while (rc == SQLITE_ROW) {
		int state = sqlite3_column_int(q, 0);
		if (state >= LH_ITEM_PENDING && state < LH_ITEM_NSTATES)
			counts[state] = sqlite3_column_int64(q, 1);
		rc = sqlite3_step(q);
	}
	rc = rc == SQLITE_DONE ? 0 : sq_fail(s, e, rc, "count the items of job %lld", (long long)job);
	sq_finish(q);
	return rc;
}

static void read_item_view(sqlite3_stmt *q, struct lh_item_view *v)
{
	v->seq = sqlite3_column_int64(q, 0);
	v->key = (const char *)sqlite3_column_text(q, 1);
	v->state = sqlite3_column_int(q, 2);
	v->attempts = sqlite3_column_int(q, 3);
	v->last_status = sqlite3_column_int(q, 4);
	v->last_error = (const char *)sqlite3_column_text(q, 5);
	v->response = (const char *)sqlite3_column_text(q, 6);
	v->response_len = (size_t)sqlite3_column_bytes(q, 6);
	v->status = sqlite3_column_int(q, 7);
	v->request_id = (const char *)sqlite3_column_text(q, 8);
	v->prompt_tokens = sqlite3_column_int64(q, 9);
	v->completion_tokens = sqlite3_column_int64(q, 10);
	v->started_at = sqlite3_column_double(q, 11);
	v->first_byte_at = sqlite3_column_double(q, 12);
	v->ended_at = sqlite3_column_double(q, 13);
}

/* Verifies the step 0 row a view carries (none: nothing to check). */
static int check_view(struct sq_store *s, sqlite3_stmt *q, int64_t job, const struct lh_item_view *v,
		      struct lh_err *e)
{
	const char *sum = (const char *)sqlite3_column_text(q, 16);

	if (sqlite3_column_type(q, 17) == SQLITE_NULL)
		return 0;
	return sq_check_row(s, job, v->seq, v->key, 0, 0, (const char *)sqlite3_column_text(q, 14), v->response,
			    v->response_len, (const char *)sqlite3_column_text(q, 15),
			    (size_t)sqlite3_column_bytes(q, 15), sum, e);
}

/* Steps a bound item listing, calling fn per row; a non-zero fn result stops
 * and is returned. A damaged journal row stops it with LH_ECORRUPT before fn
 * sees the item. */
static int walk_items(struct sq_store *s, sqlite3_stmt *q, int brc, int64_t job, lh_item_fn fn, void *arg,
		      struct lh_err *e)
{
	int rc = brc == SQLITE_OK ? sqlite3_step(q) : brc, ret = 0;
	while (rc == SQLITE_ROW) {
		struct lh_item_view v;

		read_item_view(q, &v);
		ret = check_view(s, q, job, &v, e);
		if (ret == 0)
			ret = fn(&v, arg);
		if (ret)
			break;
		rc = sqlite3_step(q);
	}
	if (ret == 0 && rc != SQLITE_DONE)
		ret = sq_fail(s, e, rc, "list the items of job %lld", (long long)job);
	sq_finish(q);
	return ret;
}

static int sq_items_each(struct lh_store *st, int64_t job, unsigned state_mask, lh_item_fn fn, void *arg,
			 struct lh_err *e)
{
	struct sq_store *s = sq(st);
	/* One state walks its slice of items_state in seq order; several walk
	 * the primary key and filter, which keeps seq order without a sort
	 * (a sort of a million rows would sit in memory). */
	int one = __builtin_popcount(state_mask) == 1;
	sqlite3_stmt *q = sq_stmt(s, one ? Q_ITEMS_STATE : Q_ITEMS_MASK);
	int brc = 0, rc;

	rc = sq_check_idle(q, e, "list items");
	if (rc)
		return rc;
	brc |= sqlite3_bind_int64(q, 1, job);
	brc |= sqlite3_bind_int(q, 2, one ? __builtin_ctz(state_mask) : (int)state_mask);
	return walk_items(s, q, brc, job, fn, arg, e);
}

static int sq_items_page(struct lh_store *st, int64_t job, unsigned state_mask, int64_t after_seq, size_t limit,
			 lh_item_fn fn, void *arg, struct lh_err *e)
{
	struct sq_store *s = sq(st);
	/* As items_each: one state is a range of items_state starting at
	 * (job, state, after_seq); several walk the (job_id, seq) key from
	 * after_seq and skip the other states. */
	int one = __builtin_popcount(state_mask) == 1;
	sqlite3_stmt *q = sq_stmt(s, one ? Q_ITEMS_PAGE_STATE : Q_ITEMS_PAGE_MASK);
	int brc = 0, rc;

	rc = sq_check_idle(q, e, "list items");
	if (rc)
		return rc;
	brc |= sqlite3_bind_int64(q, 1, job);
	brc |= sqlite3_bind_int(q, 2, one ? __builtin_ctz(state_mask) : (int)state_mask);
	brc |= sqlite3_bind_int64(q, 3, after_seq);
	brc |= sqlite3_bind_int64(q, 4, limit ? sq_limit_of(limit) : -1);
	return walk_items(s, q, brc, job, fn, arg, e);
}

/* LH_ENOTFOUND when there is no job id. */
int sq_job_exists(struct sq_store *s, int64_t id, struct lh_err *e, const char *what)
{
	sqlite3_stmt *q = sq_stmt(s, Q_JOB_EXISTS);
	int brc = sqlite3_bind_int64(q, 1, id);
	int rc = brc == SQLITE_OK ? sqlite3_step(q) : brc;

	if (rc == SQLITE_ROW)
		rc = 0;
	else if (rc == SQLITE_DONE)
		rc = lh_err_set(e, LH_ENOTFOUND, "could not %s: no job %lld", what, (long long)id);
	else
		rc = sq_fail(s, e, rc, "%s", what);
	sq_finish(q);
	return rc;
}

/* LH_ENOTFOUND unless job has an item with key. */
int sq_key_known(struct sq_store *s, int64_t job, const char *key, struct lh_err *e)
{
	sqlite3_stmt *q = sq_stmt(s, Q_ITEM_BY_KEY);
	int brc = 0, rc;

	brc |= sqlite3_bind_int64(q, 1, job);
	brc |= sq_bind_str(q, 2, key);
	rc = brc == SQLITE_OK ? sqlite3_step(q) : brc;
	sq_finish(q);
	if (rc == SQLITE_ROW)
		return 0;
	if (rc == SQLITE_DONE)
		return lh_err_set(e, LH_ENOTFOUND, "job %lld has no item \"%.200s\"", (long long)job, key);
	return sq_fail(s, e, rc, "look up item key \"%.200s\"", key);
}

static int sq_items_retry_dead(struct lh_store *st, int64_t job, const char *const *keys, size_t nkeys,
			       int64_t *n, struct lh_err *e)
{
	struct sq_store *s = sq(st);
	sqlite3_stmt *q;
	double now = lh_wall();
	int64_t total = 0;
	char what[64];
	int own, brc, changes, rc;
	size_t i;

	snprintf(what, sizeof what, "retry the dead items of job %lld", (long long)job);
	rc = sq_tx_enter(s, &own, e);
	if (rc == 0)
		rc = sq_job_exists(s, job, e, what);
	if (rc == 0 && nkeys == 0) {
		/* One statement: a range of items_state (job, 4) however many
		 * items are dead. */
		q = sq_stmt(s, Q_RETRY_DEAD_ALL);
		brc = sqlite3_bind_int64(q, 1, job);
		brc |= sqlite3_bind_double(q, 2, now);
		changes = 0;
		rc = sq_run(s, q, brc, &changes, e, what);
		total = changes;
	}
	/* By key: one prepared statement stepped per key, each a lookup in
	 * the (job_id, key) index, all in one transaction. SQLite runs in
	 * this process, so a step costs a few microseconds, not a round
	 * trip. */
	for (i = 0; rc == 0 && i < nkeys; i++) {
		q = sq_stmt(s, Q_RETRY_DEAD_KEY);
		brc = sqlite3_bind_int64(q, 1, job);
		brc |= sqlite3_bind_double(q, 2, now);
		brc |= sq_bind_str(q, 3, keys[i]);
		changes = 0;
		rc = sq_run(s, q, brc, &changes, e, what);
		total += changes;
		if (rc == 0 && changes == 0)
			rc = sq_key_known(s, job, keys[i], e);
	}
	if (rc == 0 && total > 0) {
		q = sq_stmt(s, Q_JOB_SUB_DEAD);
		brc = sqlite3_bind_int64(q, 1, job);
		brc |= sqlite3_bind_int64(q, 2, total);
		brc |= sqlite3_bind_double(q, 3, now);
		rc = sq_run(s, q, brc, NULL, e, what);
	}
	rc = sq_tx_leave(s, own, rc, e);
	*n = rc ? 0 : total;
	return rc;
}

/* ---- events ---- */

/* Reads the job's next event number; LH_ENOTFOUND when there is no job. */
static int event_number(struct sq_store *s, int64_t job, int64_t *n, struct lh_err *e)
{
	sqlite3_stmt *q = sq_stmt(s, Q_EVENT_NEXT);
	int brc = sqlite3_bind_int64(q, 1, job);
	int rc = brc == SQLITE_OK ? sqlite3_step(q) : brc;

	if (rc == SQLITE_ROW) {
		*n = sqlite3_column_int64(q, 0);
		rc = 0;
	} else if (rc == SQLITE_DONE) {
		rc = lh_err_set(e, LH_ENOTFOUND, "could not add an event: no job %lld", (long long)job);
	} else {
		rc = sq_fail(s, e, rc, "number an event of job %lld", (long long)job);
	}
	sq_finish(q);
	return rc;
}

static int sq_event_add(struct lh_store *st, int64_t job, double ts, const char *type, const char *item_key,
			const char *data, int64_t *seq, struct lh_err *e)
{
	struct sq_store *s = sq(st);
	sqlite3_stmt *q;
	int64_t n = 0;
	int own, brc = 0, rc;

	/* The counter lives in the job's row, so numbers never repeat even
	 * after old events are expired. Reading it and moving it on in the
	 * same write transaction (BEGIN IMMEDIATE holds the write lock) keeps
	 * the numbers free of gaps and duplicates. */
	rc = sq_tx_enter(s, &own, e);
	if (rc == 0)
		rc = event_number(s, job, &n, e);
	if (rc == 0) {
		q = sq_stmt(s, Q_EVENT_ADD);
		brc |= sqlite3_bind_int64(q, 1, job);
		brc |= sqlite3_bind_int64(q, 2, n);
		brc |= sqlite3_bind_double(q, 3, ts);
		brc |= sq_bind_str(q, 4, type);
		brc |= sq_bind_str(q, 5, item_key);
		brc |= sq_bind_str(q, 6, data);
		rc = sq_run(s, q, brc, NULL, e, "add an event");
	}
	if (rc == 0) {
		q = sq_stmt(s, Q_EVENT_BUMP);
		brc = sqlite3_bind_int64(q, 1, job);
		brc |= sqlite3_bind_int64(q, 2, n);
		rc = sq_run(s, q, brc, NULL, e, "number an event");
	}
	rc = sq_tx_leave(s, own, rc, e);
	*seq = rc ? 0 : n;
	return rc;
}

/* Steps a bound query of EVENT_COLS and calls fn for each row. */
static int walk_events(struct sq_store *s, sqlite3_stmt *q, int brc, lh_event_fn fn, void *arg,
		       struct lh_err *e, const char *what)
{
	int rc = brc == SQLITE_OK ? sqlite3_step(q) : brc, ret = 0;

	while (rc == SQLITE_ROW) {
		struct lh_event_view v;

		v.gseq = sqlite3_column_int64(q, 0);
		v.job = sqlite3_column_int64(q, 1);
		v.seq = sqlite3_column_int64(q, 2);
		v.ts = sqlite3_column_double(q, 3);
		v.type = (const char *)sqlite3_column_text(q, 4);
		v.item_key = (const char *)sqlite3_column_text(q, 5);
		v.data = (const char *)sqlite3_column_text(q, 6);
		ret = fn(&v, arg);
		if (ret)
			break;
		rc = sqlite3_step(q);
	}
	if (ret == 0 && rc != SQLITE_DONE)
		ret = sq_fail(s, e, rc, "%s", what);
	sq_finish(q);
	return ret;
}

static int sq_events_each(struct lh_store *st, int64_t job, int64_t after, size_t limit, lh_event_fn fn,
			  void *arg, struct lh_err *e)
{
	struct sq_store *s = sq(st);
	sqlite3_stmt *q = sq_stmt(s, Q_EVENTS_EACH);
	char what[64];
	int brc = 0, rc;

	rc = sq_check_idle(q, e, "list events");
	if (rc)
		return rc;
	snprintf(what, sizeof what, "list the events of job %lld", (long long)job);
	brc |= sqlite3_bind_int64(q, 1, job);
	brc |= sqlite3_bind_int64(q, 2, after);
	brc |= sqlite3_bind_int64(q, 3, limit ? sq_limit_of(limit) : -1);
	return walk_events(s, q, brc, fn, arg, e, what);
}

static int sq_events_all_each(struct lh_store *st, int64_t after_gseq, size_t limit, lh_event_fn fn, void *arg,
			      struct lh_err *e)
{
	struct sq_store *s = sq(st);
	sqlite3_stmt *q = sq_stmt(s, Q_EVENTS_ALL);
	int brc = 0, rc;

	rc = sq_check_idle(q, e, "list events");
	if (rc)
		return rc;
	brc |= sqlite3_bind_int64(q, 1, after_gseq);
	brc |= sqlite3_bind_int64(q, 2, limit ? sq_limit_of(limit) : -1);
	return walk_events(s, q, brc, fn, arg, e, "list the events of every job");
}

/* ---- open, check, migrate, close ---- */

static void sq_close(struct lh_store *st)
{
	struct sq_store *s = sq(st);
	size_t i;

	for (i = 0; i < Q_COUNT; i++)
		sqlite3_finalize(s->q[i]);
	/* Closing rolls back an open transaction; the WAL needs no clean
	 * shutdown, since the next open recovers it. */
	sqlite3_close(s->db);
	lh_vec_release(&s->ids);
	lh_free(s->path);
	lh_free(s);
}

/* Reads one integer from a one-off query (a PRAGMA at open). Returns
 * SQLite's code, since the caller tells a stranger's file from a damaged one. */
static int query_int(struct sq_store *s, const char *sql, int64_t *v)
{
	sqlite3_stmt *q = NULL;
	int rc = sqlite3_prepare_v2(s->db, sql, -1, &q, NULL);

	*v = 0;
	if (rc == SQLITE_OK)
		rc = sqlite3_step(q);
	if (rc == SQLITE_ROW) {
		*v = sqlite3_column_int64(q, 0);
		rc = SQLITE_OK;
	} else if (rc == SQLITE_DONE) {
		rc = SQLITE_OK;
	}
	sqlite3_finalize(q);
	return rc;
}

/* Records an error met while opening: every message names the store. */
static int open_fail(struct sq_store *s, struct lh_err *e, int rc, const char *doing)
{
	int code = sq_code_of(rc);

	if (code == LH_ECORRUPT)
		return lh_err_set(e, code, "store \"%s\" is damaged: %s", s->path, sqlite3_errmsg(s->db));
	return lh_err_set(e, code, "could not open store \"%s\" (%s): %s", s->path, doing, sqlite3_errmsg(s->db));
}

/* Runs fixed SQL at open (pragmas, migrations). It has no parameters, so
 * there is nothing to prepare for reuse. */
static int exec(struct sq_store *s, const char *sql, struct lh_err *e, const char *doing)
{
	int rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL);

	if (rc != SQLITE_OK)
		return open_fail(s, e, rc, doing);
	return 0;
}

/* Refuses a file that is not a longhaul store, or one from a newer build,
 * before anything is written to it. */
static int check_owner(struct sq_store *s, int64_t *version, struct lh_err *e)
{
	int64_t app = 0, tables = 0;
	int rc;

	/* The first read of the file: this is where SQLite finds out what
	 * the file holds. */
	rc = query_int(s, "PRAGMA user_version", version);
	if ((rc & 0xff) == SQLITE_NOTADB)
		return lh_err_set(e, LH_ECORRUPT, "\"%s\" is not a longhaul store: it is not a SQLite database",
				  s->path);
	if (rc == SQLITE_OK)
		rc = query_int(s, "PRAGMA application_id", &app);
	if (rc == SQLITE_OK)
		rc = query_int(s, "SELECT count(*) FROM sqlite_master WHERE name NOT LIKE 'sqlite\\_%' ESCAPE '\\'",
			       &tables);
	if (rc != SQLITE_OK)
		return open_fail(s, e, rc, "reading its schema");
	if (app != 0 && app != STORE_SQLITE_APP_ID)
		return lh_err_set(e, LH_ECORRUPT, "\"%s\" is not a longhaul store: it belongs to another"
				  " application (application_id 0x%llx)", s->path, (unsigned long long)app);
	if ((*version == 0 && tables > 0) || (*version > 0 && app != STORE_SQLITE_APP_ID))
		return lh_err_set(e, LH_ECORRUPT, "\"%s\" is not a longhaul store: it holds other tables", s->path);
	if (*version > STORE_SQLITE_SCHEMA)
		return lh_err_set(e, LH_ECORRUPT, "\"%s\" was written by a newer longhaul (schema %lld; this"
				  " build knows up to %d)", s->path, (long long)*version, STORE_SQLITE_SCHEMA);
	return 0;
}

/* Applies the migrations up to version target in one transaction, checking
 * the version again under the write lock: another process, or another
 * handle in this one, may have migrated since. */
static int migrate(struct sq_store *s, int64_t target, struct lh_err *e)
{
	char pragma[96];
	int64_t version = 0;
	int rc;

	rc = exec(s, "BEGIN IMMEDIATE", e, "taking the write lock to migrate");
	if (rc)
		return rc;
	rc = check_owner(s, &version, e);
	/* Already there: the transaction wrote nothing, so ending it is all. */
	if (rc == 0 && version >= target)
		return exec(s, "COMMIT", e, "ending the check of its schema");
	while (rc == 0 && version < target) {
		rc = exec(s, migrations[version], e, "migrating its schema");
		version++;
	}
	if (rc == 0) {
		snprintf(pragma, sizeof pragma, "PRAGMA user_version = %lld; PRAGMA application_id = %d",
			 (long long)version, STORE_SQLITE_APP_ID);
		rc = exec(s, pragma, e, "stamping its schema version");
	}
	if (rc == 0)
		rc = exec(s, "COMMIT", e, "committing the migration");
	if (rc)
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
	return rc;
}

static int set_pragmas(struct sq_store *s, const struct lh_store_opts *o, struct lh_err *e)
{
	sqlite3_stmt *q = NULL;
	int rc, wal = 0;

	/* WAL lets readers (the API) run beside the writer, and commits
	 * cost one append instead of a journal and a rewrite. */
	rc = sqlite3_prepare_v2(s->db, "PRAGMA journal_mode = WAL", -1, &q, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(q);
	if (rc == SQLITE_ROW) {
		const char *mode = (const char *)sqlite3_column_text(q, 0);
		wal = mode && strcmp(mode, "wal") == 0;
		rc = SQLITE_OK;
	}
	if (rc != SQLITE_OK)
		rc = open_fail(s, e, rc, "switching to WAL mode");
	else if (!wal)
		rc = lh_err_set(e, LH_ESTORE, "could not switch store \"%s\" to WAL mode (is it on a network file"
				" system?)", s->path);
	sqlite3_finalize(q);
	if (rc)
		return rc;
	/* NORMAL survives a crashed process (the WAL is on disk); FULL also
	 * survives power loss by syncing the WAL at each commit. */
	rc = exec(s, o->sync_full ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL", e,
		  "configuring it");
	if (rc == 0)
		rc = exec(s, "PRAGMA temp_store = MEMORY;"
			  "PRAGMA cache_size = -8192;"           /* KiB: 8 MiB of pages per handle (RSS stays bounded; WAL appends need little) */
			  "PRAGMA journal_size_limit = 67108864;" /* truncate the WAL back to 64 MiB */
			  "PRAGMA wal_autocheckpoint = 4000;",    /* pages: checkpoint every ~16 MiB */
			  e, "configuring it");
	/* A commit that also checkpoints takes tens of milliseconds; a handle
	 * on the hot path leaves that to a background checkpointer. */
	if (rc == 0 && o->manual_checkpoint)
		rc = exec(s, "PRAGMA wal_autocheckpoint = 0;", e, "configuring it");
	return rc;
}

static int prepare_all(struct sq_store *s, struct lh_err *e)
{
	size_t i;

	for (i = 0; i < Q_COUNT; i++) {
		int rc = sqlite3_prepare_v3(s->db, sq_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &s->q[i], NULL);
		if (rc != SQLITE_OK) {
			/* The schema was stamped as ours but a table is missing
			 * or different: someone changed the file by hand. */
			if ((rc & 0xff) == SQLITE_ERROR)
				return lh_err_set(e, LH_ECORRUPT, "store \"%s\" is damaged: %s", s->path,
						  sqlite3_errmsg(s->db));
			return open_fail(s, e, rc, "preparing statements");
		}
	}
	return 0;
}

static int open_db(struct sq_store *s, const struct lh_store_opts *o, struct lh_err *e)
{
	int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX;
	struct stat sb;
	int rc;

	/* Checked here, not left to SQLite, so that a missing file is told
	 * apart from one that cannot be opened. */
	if (!o->create && stat(o->path, &sb) != 0 && errno == ENOENT)
		return lh_err_set(e, LH_ENOTFOUND, "could not open store \"%s\": no such file", o->path);
	if (o->create)
		flags |= SQLITE_OPEN_CREATE;
	rc = sqlite3_open_v2(o->path, &s->db, flags, NULL);
	if (rc != SQLITE_OK) {
		int err = s->db ? sqlite3_system_errno(s->db) : 0;
		return lh_err_set(e, sq_code_of(rc), "could not open store \"%s\": %s%s%s", o->path,
				  s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc), err ? ": " : "",
				  err ? strerror(err) : "");
	}
	sqlite3_extended_result_codes(s->db, 1);
	rc = sq_register_functions(s);
	if (rc != SQLITE_OK)
		return lh_err_set(e, sq_code_of(rc), "could not open store \"%s\": %s", o->path,
				  sqlite3_errmsg(s->db));
	/* Another process (an API reader, a second worker) may hold the lock
	 * for a moment; wait rather than fail. */
	sqlite3_busy_timeout(s->db, 5000);
	return 0;
}

static int sq_checkpoint(struct lh_store *st, int *log_pages, int *copied, struct lh_err *e)
{
	struct sq_store *s = sq(st);
	int logn = 0, ckpt = 0;
	int rc = sqlite3_wal_checkpoint_v2(s->db, NULL, SQLITE_CHECKPOINT_PASSIVE, &logn, &ckpt);
	if (log_pages)
		*log_pages = logn;
	if (copied)
		*copied = ckpt;
	/* BUSY: another checkpoint runs; not an error for a passive one. */
	if (rc == SQLITE_OK || rc == SQLITE_BUSY)
		return 0;
	return sq_fail(s, e, rc, "checkpoint the write-ahead log");
}

static const struct lh_store_ops sqlite_ops = {
	.name = "sqlite",
	.close = sq_close,
	.begin = sq_begin,
	.commit = sq_commit,
	.rollback = sq_rollback,
	.job_find = sq_job_find,
	.job_get = sq_job_get,
	.job_create = sq_job_create,
	.job_delete = sq_job_delete,
	.job_set_state = sq_job_set_state,
	.job_set_ingested = sq_job_set_ingested,
	.job_add = sq_job_add,
	.job_set_priority = sq_job_set_priority,
	.job_set_rates = sq_job_set_rates,
	.job_set_error = sq_job_set_error,
	.job_set_text = sq_job_set_text,
	.jobs_each = sq_jobs_each,
	.jobs_count = sq_jobs_count,
	.item_add = sq_item_add,
	.claim = sq_claim,
	.renew = sq_renew,
	.release_leases = sq_release_leases,
	.next_due = sq_next_due,
	.item_done = sq_item_done,
	.item_retry = sq_item_retry,
	.item_dead = sq_item_dead,
	.item_release = sq_item_release,
	.item_counts = sq_item_counts,
	.items_each = sq_items_each,
	.items_page = sq_items_page,
	.items_retry_dead = sq_items_retry_dead,
	.step_put = sq_step_put,
	.steps_each = sq_steps_each,
	.item_set_step = sq_item_set_step,
	.item_wait = sq_item_wait,
	.item_find = sq_item_find,
	.item_decide = sq_item_decide,
	.items_reopen = sq_items_reopen,
	.reduce_put = sq_reduce_put,
	.item_steps_done = sq_item_steps_done,
	.verify = sq_verify,
	.event_add = sq_event_add,
	.events_each = sq_events_each,
	.events_all_each = sq_events_all_each,
	.checkpoint = sq_checkpoint,
};

int store_sqlite_open(const struct lh_store_opts *o, struct lh_store **out, struct lh_err *e)
{
	struct sq_store *s = lh_xcalloc(1, sizeof *s);
	int64_t version = 0;
	int rc;

	s->base.ops = &sqlite_ops;
	s->path = lh_xstrdup(o->path);
	*out = NULL;
	rc = open_db(s, o, e);
	if (rc == 0)
		rc = check_owner(s, &version, e);
	if (rc == 0)
		rc = set_pragmas(s, o, e);
	/* Taking the write lock only when there is something to migrate keeps
	 * opening cheap while another process writes. */
	if (rc == 0 && version < STORE_SQLITE_SCHEMA)
		rc = migrate(s, STORE_SQLITE_SCHEMA, e);
	if (rc == 0)
		rc = prepare_all(s, e);
	if (rc) {
		sq_close(&s->base);
		return rc;
	}
	*out = &s->base;
	return 0;
}

int store_sqlite_create_at(const char *path, int version, struct lh_err *e)
{
	struct lh_store_opts o = { .path = path, .sync_full = 0, .create = 1 };
	struct sq_store *s;
	int64_t have = 0;
	int rc;

	if (version < 1 || version > STORE_SQLITE_SCHEMA)
		return lh_err_set(e, LH_EUSAGE, "could not create store \"%s\": no schema version %d", path, version);
	s = lh_xcalloc(1, sizeof *s);
	s->base.ops = &sqlite_ops;
	s->path = lh_xstrdup(path);
	rc = open_db(s, &o, e);
	if (rc == 0)
		rc = check_owner(s, &have, e);
	if (rc == 0)
		rc = set_pragmas(s, &o, e);
	if (rc == 0)
		rc = migrate(s, version, e);
	sq_close(&s->base);
	return rc;
}
