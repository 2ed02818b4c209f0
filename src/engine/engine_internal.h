/*
 * engine layer: what the dispatcher (engine.c), the pipeline runner
 * (pipeline.c) and the reduce (reduce.c) share. Not an interface: the
 * three are one module split by role, and nothing else includes this.
 */
#ifndef LH_ENGINE_ENGINE_INTERNAL_H
#define LH_ENGINE_ENGINE_INTERNAL_H

#include <jansson.h>
#include "engine/checkpointer.h"
#include "engine/engine.h"
#include "engine/lane.h"
#include "engine/progress.h"
#include "steps/steps.h"
#include "util/buf.h"
#include "util/hash.h"
#include "util/rand.h"

#define EARLY_STOP_N 10

struct pitem;
struct lh_reduce_run;

struct ejob;

struct inflight {
	struct ejob *job;
	struct lh_claimed item; /* owned */
	struct lh_buf body;     /* request body when it differs from item.input */
	char hash[LH_SHA256_HEX];
	struct lh_llm_req *req;
	struct inflight *prev, *next;
	struct pitem *pi;       /* a pipeline item's call: the item is lent to it */
	int reduce;             /* a reduce call: no item (reduce.c) */
	int level, index;       /* the reduce call's place */
};

struct held {
	struct lh_claimed item;
	int status;
	char *error; /* JSON */
	char *code, *message;
};

enum { J_RUNNING, J_DRAINING, J_GONE };

struct ejob {
	struct lh_engine *eng;
	int64_t id;
	int priority;
	int mode;
	enum lh_job_end end_how;
	char *end_msg;
	char *url, *api_key, *model, *prefix;
	size_t prefix_len;
	json_t *overrides;     /* fields set into every body (a changed max_tokens), or NULL */
	int stream;
	long cap;
	long timeout_ms, ftt_ms, connect_ms; /* 0: the client's defaults */
	struct lh_retry_policy retry;
	double time_limit;
	struct lh_lane *lane;
	/* Waiting for a server never reached (lh_job_conf.wait_for_server). */
	double wait_for_server;
	double wait_started;    /* mono seconds; 0 = has not waited */
	double wait_backoff;    /* seconds of the last pause between probes */
	int wait_over;          /* the server answered, or the window passed: never wait again */

	struct lh_claimed *ready;
	size_t rcap, rhead, rlen;
	int claim_outstanding, claim_dry;
	size_t claim_batch;
	struct lh_timer *t_retry;
	double retry_due;

	struct inflight *inflight;
	size_t n_inflight;

	int64_t total, done, dead, retries, ptok, ctok;
	double run_secs_base, started, last_rate_write, run_secs_written;
	struct lh_rate rate_items, rate_tokens;

	long pending_ops;   /* staged or committing ops of this job */
	struct held held[EARLY_STOP_N];
	int nheld;
	char held_sig[128];
	int64_t successes;

	/* Pipelines (pipeline.c): NULL for one-request jobs. */
	struct lh_pipeline *pipe;
	char *pipe_model;       /* the job's default model for llm steps */
	int64_t *steps_done;    /* per step: items past it (progress) */
	double *step_cost;      /* per step: its expected LLM turns (1; a loop: the mean of its
				 * loops finished in this run, for the ETA) */
	int64_t *loop_turns, *loops_ended; /* per step: turns of the loops that ended, and how many */
	const char **step_ids;  /* per step: its id (borrowed from pipe) */
	struct pitem *pitems;   /* items running their steps */
	struct pitem *exec_wait_head, *exec_wait_tail; /* waiting for an exec slot */
	long exec_running, exec_cap;
	int64_t waiting;        /* items waiting for a person */
	struct lh_reduce_run *reduce; /* the reduce, once every item has ended */
	int reduced;            /* 1: the reduce has run (or there is none) */
	char *reduce_msg;       /* why the reduce failed, or NULL */
	int idle_told;          /* on_job_idle was called for the items waiting now */
	double last_wait_check; /* mono: when the waiting items were last counted */

	struct ejob *next;
};

struct lh_engine {
	struct lh_engine_opts o;
	char *owner;
	char *store_path;
	struct lh_loop *loop;
	struct lh_llm *llm;
	struct lh_store *cstore;      /* the commit thread's handle */
	struct lh_committer *com;
	struct lh_checkpointer *ckpt;
	struct lh_rand rnd;
	struct ejob *jobs;
	size_t njobs;
	struct lh_lane *lanes;
	size_t n_inflight;
	size_t rr;                    /* round-robin cursor */
	int stopping, drained_called, fatal;
	struct lh_timer *t_grace, *t_tick, *t_lane;
	struct lh_commit_stats final_stats;
	int in_dispatch;
};


/* ---- the dispatcher's helpers (engine.c) ---- */
double eng_mono(void);
void eng_dispatch(struct lh_engine *eng);
/* A new op of job j, counted until its transaction comes back. */
struct lh_commit_op *eng_new_op(struct ejob *j);
/* Stage the item's release (leased -> pending) or death; both take c. */
void eng_stage_release(struct ejob *j, struct lh_claimed *c);
void eng_stage_dead(struct ejob *j, struct lh_claimed *c, int attempts, int status, char *error,
		    const char *code, const char *message);
/* leased -> retry after delay seconds; takes c and error. */
void eng_stage_retry(struct ejob *j, struct lh_claimed *c, int attempts, int status, char *error,
		     const char *code, const char *message, double delay);
char *eng_error_json(const char *code, const char *message, int status, const char *body, size_t body_len);
void eng_arm_retry(struct ejob *j, double delay);
/* Sends a call for job j; f is filled by the caller (job, item or pi,
 * hash) and linked here. Returns 0, or -1 when it could not be sent (f
 * is unlinked and left to the caller). */
int eng_send(struct ejob *j, struct inflight *f, const char *url, const char *api_key, const char *body,
	     size_t len, int stream);
/* Unlinks f from its job's calls. */
void eng_unlink(struct ejob *j, struct inflight *f);
/* The store failed (or lied: a damaged journal row): stop everything. */
void eng_fatal(struct lh_engine *eng, const struct lh_err *err);
/* The job's drain with an end: stops dispatch, releases what is ready. */
void eng_drain_job(struct ejob *j, enum lh_job_end how, const char *msg);

/* ---- the pipeline runner (pipeline.c) ---- */
/* Starts a claimed item of a pipeline job (takes c). */
void pipe_start(struct ejob *j, struct lh_claimed *c);
/* The answer to a pipeline item's call; returns 1 when it took the
 * result (success, cancel), 0 when the dispatcher's error handling
 * applies to f->item (the item then left: pipe_left must follow). */
int pipe_answer(struct inflight *f, const struct lh_llm_result *res);
/* Adds "step": the failing step's id to an item's error object. */
void pipe_error_step(struct pitem *pi, json_t *error);
/* The item lent to a failed call was staged by the dispatcher. */
void pipe_left(struct pitem *pi);
/* Stops every item of the job (cancel: kill commands). */
void pipe_cancel_job(struct ejob *j);
/* Frees the job's pipeline state (after its last item left). */
void pipe_job_free(struct ejob *j);
/* Ops that came back committed. */
void pipe_committed(struct ejob *j, const struct lh_commit_op *op);

/* ---- the reduce (reduce.c) ---- */
/* Runs (or goes on with) the job's reduce; 1 while it runs, 0 when it is
 * over (then the job may end). */
int reduce_step(struct ejob *j);
int reduce_answer(struct inflight *f, const struct lh_llm_result *res);
void reduce_free(struct ejob *j);
void reduce_stats(struct ejob *j, int *running, int64_t *calls, int64_t *done);

#endif
