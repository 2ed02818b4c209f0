/*
 * The store interface. Every backend (sqlite/, postgres/) implements
 * the same table of operations, and one conformance suite (tests/store/) runs
 * against each, as SQLite's VFS does for file systems.
 *
 * Threading: a store handle is used by one thread at a time. The engine opens
 * it on the main thread, reads the job and recovers leases, then hands it to
 * its commit thread, which does every write from then on. Other threads (the
 * daemon's API, its control thread) open handles of their own on the same
 * store: writers on different handles take turns, a write waiting up to 5 s
 * for another handle's transaction to end before it gives LH_EBUSY.
 *
 * Ownership: strings passed in are borrowed for the call. Records filled by
 * the store own their strings; release them with the matching *_release.
 *
 * Transactions: lh_store_begin/commit/rollback bracket a group of writes
 * (the engine's group commit, and ingest). Calls made outside a transaction
 * commit on their own.
 */
#ifndef LH_STORE_STORE_H
#define LH_STORE_STORE_H

#include <stddef.h>
#include <stdint.h>
#include "io/item.h"
#include "util/err.h"
#include "util/hash.h"

struct lh_store;

enum lh_item_state {
	LH_ITEM_PENDING = 0,
	LH_ITEM_LEASED = 1,
	LH_ITEM_DONE = 2,
	LH_ITEM_RETRY = 3,
	LH_ITEM_DEAD = 4,
	LH_ITEM_WAITING = 5  /* waiting for a person's decision (an approve step); holds no lease */
};
#define LH_ITEM_NSTATES 6
const char *lh_item_state_name(int state);

struct lh_store_opts {
	const char *path;  /* SQLite file path, or a postgresql:// or postgres:// URL
			    * (libpq's syntax; the password only from PGPASSWORD or
			    * ~/.pgpass: a URL holding one is refused) */
	int sync_full;     /* SQLite: 1: synchronous=FULL (survives power loss); 0: NORMAL */
	int create;        /* 1: create the file (the schema) when missing; 0: it must exist */
	int manual_checkpoint; /* 1: this handle never checkpoints on commit; someone
			        * calls lh_store_checkpoint (the engine's checkpointer) */
};

/* Opens (and creates or migrates) a store. Errors: LH_ECORRUPT when the file
 * or database is not a longhaul store or is damaged, LH_EBUSY when it is
 * locked, LH_ENOTFOUND when there is none and o->create is 0, LH_ESTORE
 * otherwise (a server that cannot be reached); e names the path, or the URL
 * with any password masked. Options that only SQLite has (sync_full,
 * manual_checkpoint) are ignored by PostgreSQL. */
int lh_store_open(const struct lh_store_opts *o, struct lh_store **out, struct lh_err *e) LH_WUR;
void lh_store_close(struct lh_store *st);

/* Copies committed pages from the write-ahead log back into the database
 * without blocking writers (SQLite's PASSIVE checkpoint). *log_pages and
 * *copied (may be NULL) get the log's size and how much of it is now in
 * the database. Backends without such a log return 0 at once. */
int lh_store_checkpoint(struct lh_store *st, int *log_pages, int *copied, struct lh_err *e) LH_WUR;

int lh_store_begin(struct lh_store *st, struct lh_err *e) LH_WUR;
int lh_store_commit(struct lh_store *st, struct lh_err *e) LH_WUR;
void lh_store_rollback(struct lh_store *st);

/* ---- jobs ---- */

struct lh_job_rec {
	int64_t id;
	char *ref;          /* unique reference: "run:" + absolute input path, or a daemon id */
	char *name;
	char *kind;         /* "batch" or "spec" */
	char *spec;         /* JSON text of the job's settings; never holds secrets */
	char *source_sig;   /* input fingerprint (size, mtime, head hash) */
	char state[16];     /* queued, running, paused, completed, failed, cancelled, timed_out */
	int priority;
	int ingest_done;    /* 1 once every input item is in the store */
	double created_at, started_at, finished_at, updated_at; /* wall seconds; 0 = unset */
	double run_secs;    /* time spent running, summed across runs */
	int64_t n_total, n_done, n_dead, n_retries;
	int64_t prompt_tokens, completion_tokens;
	/* Schema v2 (the daemon). */
	double time_limit;  /* seconds of running allowed; 0 = none */
	double rate_items, rate_tokens; /* recent items/s and output tokens/s (lh_store_job_set_rates) */
	char *last_error;   /* JSON text of the job's most recent item error, or NULL */
	int64_t last_event_seq; /* number of the job's newest event; 0 when it has none */
	/* Schema v3. */
	char pause_reason[16]; /* why a paused job is paused: "user", "early_stop", ...; "" otherwise */
	char *waiting;         /* what a running job waits for (a person-readable line), or NULL */
	int64_t in_flight;     /* requests in flight at the last set_rates */
};
/* Frees the record's strings (ref, name, kind, spec, source_sig, last_error,
 * waiting) and sets them to NULL. */
void lh_job_rec_release(struct lh_job_rec *j);

/* Finds a job by ref. Returns 0 and fills out, or LH_ENOTFOUND. */
int lh_store_job_find(struct lh_store *st, const char *ref, struct lh_job_rec *out, struct lh_err *e) LH_WUR;
int lh_store_job_get(struct lh_store *st, int64_t id, struct lh_job_rec *out, struct lh_err *e) LH_WUR;
/* Inserts a job from j (ref, name, kind, spec, source_sig, state, priority,
 * time_limit); sets j->id and created_at. Job ids are never reused, even
 * after the newest job is deleted. */
int lh_store_job_create(struct lh_store *st, struct lh_job_rec *j, struct lh_err *e) LH_WUR;
/* Deletes a job with its items, journal and events. */
int lh_store_job_delete(struct lh_store *st, int64_t id, struct lh_err *e) LH_WUR;
/* Sets state (no transition check here: the engine's state machine does
 * that), updated_at, and started_at/finished_at when given (> 0). */
int lh_store_job_set_state(struct lh_store *st, int64_t id, const char *state, double started_at,
			   double finished_at, struct lh_err *e) LH_WUR;
int lh_store_job_set_ingested(struct lh_store *st, int64_t id, int64_t n_total, struct lh_err *e) LH_WUR;
/* Adds deltas to the job's counters and run time. LH_ENOTFOUND, having
 * written nothing, when there is no such job (the engine may race with a
 * delete). */
int lh_store_job_add(struct lh_store *st, int64_t id, int64_t d_done, int64_t d_dead, int64_t d_retries,
		     int64_t d_prompt, int64_t d_completion, double d_run_secs, struct lh_err *e) LH_WUR;
/* Set one field of a job (and updated_at). Each gives LH_ENOTFOUND, having
 * written nothing, when there is no such job. set_rates also adds
 * d_run_secs to run_secs and records the requests in flight (the engine's
 * figure, which the leases overstate: items are claimed ahead); set_error
 * takes JSON text, or NULL to clear. */
int lh_store_job_set_priority(struct lh_store *st, int64_t id, int priority, struct lh_err *e) LH_WUR;
int lh_store_job_set_rates(struct lh_store *st, int64_t id, double items_per_sec, double tokens_per_sec,
			   double d_run_secs, int64_t in_flight, struct lh_err *e) LH_WUR;
int lh_store_job_set_error(struct lh_store *st, int64_t id, const char *error_json, struct lh_err *e) LH_WUR;
/* The job's text fields that change after creation. */
enum lh_job_text {
	LH_JOB_SPEC,         /* the settings JSON (PATCH changes the settings that leave items alone) */
	LH_JOB_PAUSE_REASON, /* at most 15 bytes; NULL clears */
	LH_JOB_WAITING       /* NULL clears */
};
/* Sets one of them (value borrowed; NULL clears it) and updated_at. */
int lh_store_job_set_text(struct lh_store *st, int64_t id, enum lh_job_text which, const char *value,
			  struct lh_err *e) LH_WUR;

/* Orders of lh_store_jobs_each. */
enum {
	LH_JOBS_NEWEST = 0,   /* id descending */
	LH_JOBS_OLDEST = 1,   /* id ascending */
	LH_JOBS_SCHEDULE = 2  /* priority descending, then id ascending: the order jobs run in */
};

/* Which jobs lh_store_jobs_each lists. A zeroed filter lists every job,
 * newest first. */
struct lh_job_filter {
	const char *state;  /* only jobs in this state; NULL = any (borrowed) */
	int order;          /* LH_JOBS_NEWEST, LH_JOBS_OLDEST or LH_JOBS_SCHEDULE */
	int64_t after_id;   /* cursor for NEWEST (ids < after_id) and OLDEST (ids > after_id);
			     * 0 = from the start; ignored by SCHEDULE */
	size_t limit;       /* at most this many; 0 = no limit */
	size_t offset;      /* skip this many first (after the cursor) */
};
/* The record is borrowed for the call. */
typedef int (*lh_job_fn)(const struct lh_job_rec *j, void *arg);
/* Calls fn for each job the filter selects, in its order; a non-zero return
 * from fn stops the walk and is returned. An unknown order gives
 * LH_EUSAGE. fn should not write through the same handle. */
int lh_store_jobs_each(struct lh_store *st, const struct lh_job_filter *f, lh_job_fn fn, void *arg,
		       struct lh_err *e) LH_WUR;
/* Counts the jobs in state (NULL = all jobs) into *n. */
int lh_store_jobs_count(struct lh_store *st, const char *state, int64_t *n, struct lh_err *e) LH_WUR;

/* ---- items ---- */

/* Adds an item (state pending). A key already present in the job gives
 * LH_EINPUT and sets *dup_seq to the earlier item's seq (when dup_seq is
 * not NULL). seq is the input order (0-based line/record number). */
int lh_store_item_add(struct lh_store *st, int64_t job, int64_t seq, const char *key, size_t key_len,
		      const char *input, size_t input_len, int64_t *dup_seq, struct lh_err *e) LH_WUR;

struct lh_claimed {
	int64_t seq;
	char *key;          /* owned */
	char *input;        /* owned, NUL-terminated */
	size_t input_len;
	int attempts;       /* attempts made before this claim */
	int64_t fence;      /* fencing token of this lease */
};
void lh_claimed_release(struct lh_claimed *c);

/* Leases up to max items to owner until now + lease_secs, bumping each
 * item's fencing token: first retry items whose time has come (by
 * next_try), then expired leases, then pending items in seq order.
 * *out is a new array of *n records (release each, then free the array). */
int lh_store_claim(struct lh_store *st, int64_t job, const char *owner, double now, double lease_secs,
		   size_t max, struct lh_claimed **out, size_t *n, struct lh_err *e) LH_WUR;
/* Extends every lease owner holds in job. */
int lh_store_renew(struct lh_store *st, int64_t job, const char *owner, double deadline, struct lh_err *e) LH_WUR;
/* Returns leased items to pending: those of owner, or every lease when
 * owner is NULL (a single-process run recovering after a crash).
 * *n (may be NULL) gets how many. */
int lh_store_release_leases(struct lh_store *st, int64_t job, const char *owner, int64_t *n, struct lh_err *e) LH_WUR;
/* Earliest next_try among retry items: 0 with *when set, or LH_ENOTFOUND. */
int lh_store_next_due(struct lh_store *st, int64_t job, double *when, struct lh_err *e) LH_WUR;

#define LH_REDUCE_FINAL 999999

/* One row of the journal (schema v4). Its key is (job, item seq, step,
 * turn):
 *   step 0         the item's result: a one-request job's single request,
 *                  or a pipeline's composed result, written when the item
 *                  is done
 *   step i + 1     pipeline step i (0-based in the spec)
 *   turn 0, 1, ... the turns of a loop step; 0 for any other step
 * A reduce's calls are rows of pseudo items: item seq -1 - level, step =
 * chunk index, turn 0 (lh_store_reduce_put); the reduce's final text is
 * the row of level LH_REDUCE_FINAL, step 0.
 *
 * Every row carries a checksum (lh_step_checksum) which the store computes
 * when it writes the row and verifies whenever it reads it: a row whose
 * bytes changed gives LH_ECORRUPT naming job, item, step and turn, and is
 * never handed to a callback. */
struct lh_step_rec {
	int step;              /* journal step index (see above) */
	int attempt;           /* 1-based attempt that produced it */
	const char *request_hash; /* hex SHA-256 of the request body */
	int status;            /* HTTP status */
	const char *request_id;   /* may be NULL */
	const char *response;  /* raw response body (an approval: JSON text of the question or the decision) */
	size_t response_len;
	int64_t prompt_tokens, completion_tokens;
	double started_at, first_byte_at, ended_at; /* wall seconds */
	/* Schema v4. */
	int turn;              /* a loop's turn; 0 otherwise */
	const char *kind;      /* llm, loop, exec, approve, result, reduce; NULL = llm */
	const char *model;     /* may be NULL */
	const char *delta;     /* JSON text: a loop turn's new messages after the answer; NULL otherwise */
	size_t delta_len;      /* on write, 0 with delta set: strlen(delta) */
	char checksum[LH_SHA256_HEX]; /* filled on read with the stored value; ignored on write */
	int64_t seq;           /* filled on read: the row's number in the store, larger for later
				* writes; ignored on write */
};

/* The journal row's checksum, the same for every backend: the lowercase hex
 * SHA-256 of
 *     request_hash || 0x00 || response[0..response_len) || 0x00 || delta[0..delta_len)
 * where a NULL field counts as empty. Only those three fields are covered:
 * they are what a replay hands on (the request it stands for, the answer,
 * a loop's new messages). */
void lh_step_checksum(const struct lh_step_rec *r, char out[LH_SHA256_HEX]);

/* The lease identified by (seq, fence) must still be held, else LH_EFENCED
 * and nothing is written. */
/* leased -> done, with the journal row for its step (step may be NULL when
 * the journal already holds it, see lh_store_step_put). */
int lh_store_item_done(struct lh_store *st, int64_t job, int64_t seq, int64_t fence, int attempts,
		       const struct lh_step_rec *step, struct lh_err *e) LH_WUR;
/* leased -> retry until next_try; status and error (JSON text) kept as the last error. */
int lh_store_item_retry(struct lh_store *st, int64_t job, int64_t seq, int64_t fence, int attempts,
			double next_try, int status, const char *error, struct lh_err *e) LH_WUR;
/* leased -> dead; error is JSON text (an OpenAI error body or {code, message}). */
int lh_store_item_dead(struct lh_store *st, int64_t job, int64_t seq, int64_t fence, int attempts,
		       int status, const char *error, struct lh_err *e) LH_WUR;
/* leased -> pending, attempts unchanged (shutdown, abort, early stop). */
int lh_store_item_release(struct lh_store *st, int64_t job, int64_t seq, int64_t fence, struct lh_err *e) LH_WUR;
/* Journals one finished step of a leased item without finishing the item
 * (a multi-step pipeline, or a raw response saved before it is parsed).
 * Fenced like item_done; a row for the same (step, turn) is replaced. */
int lh_store_step_put(struct lh_store *st, int64_t job, int64_t seq, int64_t fence,
		      const struct lh_step_rec *step, struct lh_err *e) LH_WUR;
/* Calls fn for each journaled row of one item (or of a reduce level's
 * pseudo item, seq -1 - level), in (step, turn) order, so that a restarted
 * item replays finished steps instead of requesting them again. The record's
 * strings are borrowed for the callback; a non-zero return from fn stops and
 * is returned. Each row's checksum is verified before fn sees it: a damaged
 * row stops the walk with LH_ECORRUPT naming job, item, step and turn. */
typedef int (*lh_step_fn)(const struct lh_step_rec *s, void *arg);
int lh_store_steps_each(struct lh_store *st, int64_t job, int64_t seq, lh_step_fn fn, void *arg,
			struct lh_err *e) LH_WUR;
/* Counts items per state: counts[LH_ITEM_PENDING..LH_ITEM_WAITING]. */
int lh_store_item_counts(struct lh_store *st, int64_t job, int64_t counts[LH_ITEM_NSTATES],
			 struct lh_err *e) LH_WUR;

/* One item as the output writers see it: struct lh_item_view, io/item.h
 * (borrowed for the callback). */
typedef int (*lh_item_fn)(const struct lh_item_view *v, void *arg);
/* Calls fn for every item of job in seq order whose state is in the mask
 * (1 << state); a non-zero return from fn stops and is returned. The view
 * carries the item's step 0 journal row, whose checksum is verified first
 * (LH_ECORRUPT as for lh_store_steps_each). */
int lh_store_items_each(struct lh_store *st, int64_t job, unsigned state_mask, lh_item_fn fn, void *arg,
			struct lh_err *e) LH_WUR;
/* One page of items_each: items with seq > after_seq (-1 for the start), at
 * most limit of them (0 = no limit), in seq order. The next page starts
 * after the last seq seen. */
int lh_store_items_page(struct lh_store *st, int64_t job, unsigned state_mask, int64_t after_seq, size_t limit,
			lh_item_fn fn, void *arg, struct lh_err *e) LH_WUR;
/* Dead items back to pending, for another round of attempts: those with the
 * given keys (borrowed, NUL-terminated), or every dead item of the job when
 * nkeys == 0. attempts goes back to 0 and next_try is cleared; last_status
 * and last_error are kept. Keys of items that are not dead are skipped.
 * The job's n_dead goes down by the number changed, which *n (may be NULL)
 * gets. LH_ENOTFOUND, having written nothing, when there is no such job,
 * or when a key is not an item of the job (a typo must not pass for "not
 * dead"; e names the key).
 * The job's state is left alone: re-opening it is the caller's move. */
int lh_store_items_retry_dead(struct lh_store *st, int64_t job, const char *const *keys, size_t nkeys,
			      int64_t *n, struct lh_err *e) LH_WUR;

/* ---- pipelines: step pointer, approvals, re-runs, reduce ---- */

/* Sets the item's step pointer (the index of the spec step it is at,
 * 0-based). Moving it forward resets the item's attempts: they count the
 * tries of the step it is at. Fenced like item_done. */
int lh_store_item_set_step(struct lh_store *st, int64_t job, int64_t seq, int64_t fence, int step,
			   struct lh_err *e) LH_WUR;
/* leased -> waiting (for a person): the lease is cleared, the step pointer
 * set to step, and the journal row pending (the pending approval, whose
 * response is JSON text with the question) put as lh_store_step_put does.
 * Fenced: LH_EFENCED, having written nothing, when the lease moved on. */
int lh_store_item_wait(struct lh_store *st, int64_t job, int64_t seq, int64_t fence, int step,
		       const struct lh_step_rec *pending, struct lh_err *e) LH_WUR;

/* One item, found by key. */
struct lh_item_info {
	int64_t seq;
	int state;      /* enum lh_item_state */
	int step;       /* step pointer */
	int attempts;
	char *key;      /* owned */
};
void lh_item_info_release(struct lh_item_info *i);
/* Fills out with the item of job whose key is key (borrowed); LH_ENOTFOUND,
 * naming the key, when there is none. */
int lh_store_item_find(struct lh_store *st, int64_t job, const char *key, struct lh_item_info *out,
		       struct lh_err *e) LH_WUR;
/* A person's decision on a waiting item: puts row (the decided approval,
 * which replaces the pending one at the same step and turn), then approve:
 * waiting -> pending (attempts 0, next_try cleared); reject: waiting ->
 * dead with last_error = error (JSON text), last_status 0, and the job's
 * n_dead + 1. Not fenced: a waiting item has no lease. LH_ESTATE, naming
 * the item's state, when it is not waiting; LH_ENOTFOUND when there is no
 * such item. */
int lh_store_item_decide(struct lh_store *st, int64_t job, int64_t seq, int approve, const struct lh_step_rec *row,
			 const char *error, struct lh_err *e) LH_WUR;
/* Every done item of job back to pending (attempts 0, step pointer 0,
 * next_try cleared), the job's n_done down by their number, which *n (may
 * be NULL) gets. The journal is kept: an edited spec re-runs only what
 * changed, the engine replaying rows by request hash. LH_ENOTFOUND when
 * there is no such job. */
int lh_store_items_reopen(struct lh_store *st, int64_t job, int64_t *n, struct lh_err *e) LH_WUR;
/* Journals one reduce call: the row of pseudo item -1 - level, step index,
 * turn 0 (a row already there is replaced). Unfenced: the reduce runs once
 * the items are done. Read back with lh_store_steps_each(st, job, -1 - level,
 * ...). LH_ENOTFOUND when there is no such job. */
int lh_store_reduce_put(struct lh_store *st, int64_t job, int level, int index, const struct lh_step_rec *row,
			struct lh_err *e) LH_WUR;
/* Progress of a pipeline: per_step[i] (i < nsteps) gets the number of
 * items that have finished spec step i: done items count for every step,
 * the others for the steps before their step pointer. *waiting (may be
 * NULL) gets the number of items waiting for a person. */
int lh_store_item_steps_done(struct lh_store *st, int64_t job, int64_t *per_step, size_t nsteps,
			     int64_t *waiting, struct lh_err *e) LH_WUR;

/* ---- verification ---- */

struct lh_verify_report {
	int64_t jobs, items, rows, bad_rows;
	int integrity_ok;          /* 1 when the backend's own check found nothing */
	char first_problem[512];   /* the first problem met, or "" */
};
/* Checks the whole store: the backend's own consistency check (SQLite's
 * PRAGMA integrity_check) and every journal row's checksum. on_bad (may be
 * NULL) gets one line per problem, naming job, item seq and key when there
 * is one, step and turn. Returns 0 when the store could be checked, whether
 * or not problems were found (out says); an error when it could not. */
int lh_store_verify(struct lh_store *st, void (*on_bad)(void *arg, const char *what), void *arg,
		    struct lh_verify_report *out, struct lh_err *e) LH_WUR;

/* ---- events: numbered per job and globally, append-only ---- */

/* Appends an event; *seq (may be NULL) gets its number in the job (1, 2,
 * ...). It also gets the next global number (lh_event_view.gseq). data is
 * JSON text or NULL. LH_ENOTFOUND, having written nothing, when there is no
 * such job (the engine may race with a delete). */
int lh_store_event_add(struct lh_store *st, int64_t job, double ts, const char *type, const char *item_key,
		       const char *data, int64_t *seq, struct lh_err *e) LH_WUR;

struct lh_event_view {
	int64_t job, seq;
	double ts;
	const char *type, *item_key, *data;
	int64_t gseq;       /* global number: increases across all jobs, never reused */
};
typedef int (*lh_event_fn)(const struct lh_event_view *v, void *arg);
/* Events of job with seq > after, in order, at most limit (0 = all). */
int lh_store_events_each(struct lh_store *st, int64_t job, int64_t after, size_t limit, lh_event_fn fn,
			 void *arg, struct lh_err *e) LH_WUR;
/* Events of every job with gseq > after_gseq, in gseq order, at most limit
 * (0 = all): the one stream of the daemon. A committed event never appears
 * after one with a higher gseq. */
int lh_store_events_all_each(struct lh_store *st, int64_t after_gseq, size_t limit, lh_event_fn fn, void *arg,
			     struct lh_err *e) LH_WUR;

struct lh_libver;
/* Fills v with the version of the store's library, SQLite: the headers' and
 * the library's (util/libver.h). */
void lh_store_lib_version(struct lh_libver *v);

#endif
