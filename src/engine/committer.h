/*
 * Group commit. The engine stages finished work (ops) on its own thread; a
 * before-sleep hook hands everything staged to the commit thread, which
 * applies it in ONE store transaction, then hands the results back through
 * a loop wake-up. While a transaction commits, new work piles up and goes
 * into the next one, so the number of items per commit grows with the load
 * and fsyncs stay few. An item counts as finished (progress, outputs,
 * events) only once its transaction has committed.
 *
 * The commit thread also serves claims (leasing new items), lease renewal,
 * and job counter updates, so every store write happens on that one thread.
 */
#ifndef LH_ENGINE_COMMITTER_H
#define LH_ENGINE_COMMITTER_H

#include <stddef.h>
#include <stdint.h>
#include "loop/loop.h"
#include "store/store.h"
#include "util/hist.h"

enum lh_op_kind {
	LH_OP_DONE,     /* leased -> done, with the journal row */
	LH_OP_RETRY,    /* leased -> retry until next_try */
	LH_OP_DEAD,     /* leased -> dead */
	LH_OP_RELEASE,  /* leased -> pending */
	LH_OP_EVENT,    /* an event only */
	/* Pipelines (engine/pipeline.c): */
	LH_OP_STEP,     /* a finished step (or loop turn): its journal row, and the item's step pointer */
	LH_OP_WAIT,     /* leased -> waiting for a person, with the pending approval's row */
	LH_OP_REDUCE    /* a finished reduce call: its journal row (no item) */
};

struct lh_commit_op {
	enum lh_op_kind kind;
	int64_t job;
	int64_t seq, fence;
	int attempts;
	int status;
	double next_try;
	char *key;          /* owned; for events */
	char *error;        /* owned JSON text (retry, dead) */
	char *event_type;   /* owned; when set, an event is appended with this op */
	char *event_data;   /* owned JSON text or NULL */
	/* done: the journal row; response and request_id are owned */
	char *response;
	size_t response_len;
	char *request_id;
	char request_hash[65];
	int64_t prompt_tokens, completion_tokens;
	double started_at, first_byte_at, ended_at;
	/* step, wait, reduce: the journal row's place and kind (done: kind
	 * "result" for a pipeline's composed result, NULL for a request) */
	int step, turn;     /* journal step (spec step + 1; the reduce: call index) and turn */
	int pointer;        /* step, wait: the item's step pointer after this op */
	int level;          /* reduce: its level */
	char *row_kind;     /* owned, or NULL */
	char *model;        /* owned, or NULL */
	char *delta;        /* owned JSON text, or NULL */
	size_t delta_len;
	int result;         /* set by the commit thread: 0 or LH_EFENCED */
};
void lh_commit_op_release(struct lh_commit_op *op);

struct lh_opvec { /* a vector (util/vec.h) */
	struct lh_commit_op *v;
	size_t n, cap;
};
void lh_opvec_release(struct lh_opvec *ov); /* releases every op and the array */

struct lh_commit_stats {
	uint64_t commits, items;
	struct lh_hist commit_lat; /* BEGIN..COMMIT wall time of each transaction */
};

struct lh_committer;

/* Starts the commit thread. The committer borrows st (nobody else may use it
 * until lh_committer_free returns) and calls on_ready on the loop's thread
 * whenever results are waiting. Leases are taken for owner, renewed every
 * lease_secs / 3 for every job it has claimed for. */
struct lh_committer *lh_committer_new(struct lh_store *st, const char *owner, double lease_secs,
				      struct lh_loop *loop, lh_wake_cb on_ready, void *arg, struct lh_err *e);
/* Stages a new zeroed op and returns it (borrowed; fill it in before the
 * next flush). */
struct lh_commit_op *lh_committer_op(struct lh_committer *c);
/* Asks the next transaction to lease up to n items of job. */
void lh_committer_want_claim(struct lh_committer *c, int64_t job, size_t n);
/* Hands staged work to the thread when it is idle (call from a before-sleep hook). */
void lh_committer_flush(struct lh_committer *c);
/* 1 while anything is staged, being committed, or waiting to be taken. */
int lh_committer_busy(struct lh_committer *c);

/* One job's claim in a transaction. */
struct lh_claim {
	int64_t job;
	size_t max;                 /* asked for */
	struct lh_claimed *items;   /* new array, or NULL */
	size_t n;
	double next_due;            /* after a short claim: earliest retry time (wall), 0 if none */
};

struct lh_commit_result {
	struct lh_opvec ops;        /* the committed ops (result set per op) */
	struct lh_claim *claims;    /* one per job that asked */
	size_t nclaims;
	int rc;                     /* 0, or the store error (then nothing was committed) */
	struct lh_err err;
};
/* Takes the finished transaction's results, if any: returns 1 and fills r
 * (owned by the caller: lh_commit_result_release), or 0. */
int lh_committer_take(struct lh_committer *c, struct lh_commit_result *r);
void lh_commit_result_release(struct lh_commit_result *r);
/* Snapshot of the commit statistics. */
void lh_committer_stats(struct lh_committer *c, struct lh_commit_stats *out);
/* Stops the thread after it finishes what it was given; staged work that
 * was never flushed is committed too. Returns the store to the caller. */
void lh_committer_free(struct lh_committer *c);

#endif
