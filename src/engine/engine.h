/*
 * The engine: runs the items of many jobs at once against their LLM
 * servers, on the process's event loop. `longhaul run` gives it one job;
 * `longhaul serve` many. It owns the LLM client and the commit thread.
 *
 * Items flow:
 *   store --claim--> a job's ready queue --dispatch--> in flight --answer--> staged op
 *         <----------------------------- group commit ------------------------'
 * An item counts as finished only once the transaction that holds its
 * result has committed.
 *
 * Dispatch order: strict by job priority (higher first); among jobs of the
 * same priority, round robin, so equal jobs progress at similar rates. Each
 * job has its own cap (its concurrency) and each lane (base URL + model)
 * adapts its own: a 429 halves it, successes add it back.
 *
 * Job state changes the engine itself makes (completed, timed_out, paused by
 * an early stop) go through lh_job_transition on the control store handle,
 * after the commit that makes them true.
 */
#ifndef LH_ENGINE_ENGINE_H
#define LH_ENGINE_ENGINE_H

#include <stdint.h>
#include "engine/committer.h"
#include "engine/retry.h"
#include "llm/llm.h"
#include "loop/loop.h"
#include "store/store.h"

struct lh_engine;

/* How a job left the engine. */
enum lh_job_end {
	LH_END_COMPLETED, /* every item done or dead; the job is now completed */
	LH_END_STOPPED,   /* early stop: every request failed the same permanent way; job paused */
	LH_END_TIMED_OUT, /* its time limit passed; job timed_out */
	LH_END_DROPPED,   /* paused, cancelled or deleted from outside, and drained */
	LH_END_SHUTDOWN   /* the engine shut down with the job unfinished */
};

/* What the engine needs to run a job's items. Strings are copied. */
struct lh_job_conf {
	const char *url;          /* full chat completions URL */
	const char *api_key;      /* may be NULL; kept in memory only */
	const char *model;        /* spec jobs: added to every body; batch jobs: override, or NULL */
	int model_prefix;         /* 1: stored bodies lack "model" (spec jobs) */
	int stream;               /* 1: every request streams */
	long concurrency;         /* this job's cap on requests in flight; <= 0 = the global cap */
	struct lh_retry_policy retry;
	double time_limit;        /* seconds of running, across restarts; 0 = none */
	double item_timeout;      /* seconds for all steps and retries of one item (a pipeline's
				   * timeouts.item); 0 = none */
	double request_timeout;   /* seconds per request; 0 = the engine's default */
	double first_token_timeout; /* seconds to the first streamed token; 0 = the engine's default */
	double connect_timeout;   /* seconds to connect; 0 = the engine's default */
	const char *overrides;    /* JSON object of fields set into every body as it is sent
				   * (a changed max_tokens; null removes the field), or NULL */
	/* Seconds to wait for a server that cannot be reached when the job
	 * starts (it may still be starting: `ollama serve`, `vllm serve`).
	 * While waiting, failed connects use up no attempt, fail no item and
	 * count towards no early stop; the job probes the server with one
	 * request at a time, backing off from 0.25 s to 5 s. After this long
	 * without an answer the usual early stop applies (a few more refused
	 * connects stop the job, LH_END_STOPPED). 0 = no wait: the early stop
	 * applies from the first request. Once a request of the lane has
	 * succeeded, a later outage is a pause of the lane, never a stop. */
	double wait_for_server;
};

struct lh_engine_opts {
	long concurrency;          /* requests in flight over all jobs */
	double lease_secs;
	const char *owner;         /* lease owner name */
	const char *store_path;    /* the engine opens its own handle for the commit thread */
	int sync_full;
	struct lh_store *control;  /* borrowed: the loop thread's handle, for job reads and transitions */
	struct lh_llm_opts llm;
	int release_all_leases;    /* 1: the caller holds the store alone (run): any lease is stale */
	void *arg;
	/* A job left the engine (after its final commit); msg explains a stop. */
	void (*on_job_end)(void *arg, int64_t job, enum lh_job_end how, const char *msg);
	/* A job could not reach its server and waits for it (conf
	 * wait_for_server): called when the wait starts (waited == 0) and after
	 * each probe that finds the server still unreachable (waited = seconds
	 * since the wait started). url is the job's request URL, why a short
	 * reason ("connection refused"); both borrowed for the call. May be
	 * NULL. */
	void (*on_job_waiting)(void *arg, int64_t job, const char *url, const char *why, double waited);
	/* The server of a waiting job answered (anything but a failed connect):
	 * the job runs on at full speed. Not called for jobs that never waited.
	 * May be NULL. */
	void (*on_job_reached)(void *arg, int64_t job, const char *url, double waited);
	/* Every item of a pipeline job has ended but `waiting` of them, which
	 * wait for a person's approval (lh_store_item_decide). The job stays
	 * in the engine, idle: lh_engine_reload_job after a decision runs the
	 * approved ones; the callback then comes again with waiting == 0 (the
	 * job is no longer idle). May be NULL. */
	void (*on_job_idle)(void *arg, int64_t job, int64_t waiting);
	/* A transaction with events or finished items committed (wake event streams). */
	void (*on_commit)(void *arg);
	/* The store failed; the engine has begun shutting down. */
	void (*on_fatal)(void *arg, const struct lh_err *e);
	/* Shutdown finished: nothing in flight, everything committed. */
	void (*on_drained)(void *arg);
};

struct lh_engine *lh_engine_new(struct lh_loop *loop, const struct lh_engine_opts *o, struct lh_err *e);
/* Frees the engine; call after on_drained (or it drains first, blocking). */
void lh_engine_free(struct lh_engine *eng);

/* Starts running a job that is `running` in the store. Its leases from a dead
 * owner are recovered first when release_all_leases is set. */
int lh_engine_add_job(struct lh_engine *eng, int64_t job, const struct lh_job_conf *conf, struct lh_err *e) LH_WUR;
int lh_engine_has_job(struct lh_engine *eng, int64_t job);
size_t lh_engine_job_count(struct lh_engine *eng);
/* Stops dispatching the job; now = 1 also aborts its requests in flight.
 * The job leaves the engine (LH_END_DROPPED) once nothing of it is in flight. */
void lh_engine_drop_job(struct lh_engine *eng, int64_t job, int now);
void lh_engine_set_priority(struct lh_engine *eng, int64_t job, int priority);
/* Re-reads the job's counters from the store (after dead items were retried). */
void lh_engine_reload_job(struct lh_engine *eng, int64_t job);

struct lh_engine_job_stats {
	int64_t total, done, dead, retries, in_flight;
	int64_t prompt_tokens, completion_tokens;
	double items_per_sec, tokens_per_sec, run_secs;
	int waiting;            /* 1 while the job waits for its server (see wait_for_server) */
	int64_t approvals;      /* items waiting for a person */
	int64_t *steps_done;    /* pipelines: items past each step (nsteps of them; borrowed until the
				 * job leaves the engine), or NULL */
	const char *const *step_ids; /* the steps' ids (borrowed likewise) */
	const double *step_cost; /* each step's expected turns: 1, or for a loop the mean turns of
				  * the loops that ended so far (borrowed likewise) */
	size_t nsteps;
	int reducing;           /* the reduce runs */
	int64_t reduce_calls, reduce_done; /* its calls in all, and finished */
	double waited;          /* seconds it has waited so far, when waiting */
};
int lh_engine_job_stats(struct lh_engine *eng, int64_t job, struct lh_engine_job_stats *out);
void lh_engine_commit_stats(struct lh_engine *eng, struct lh_commit_stats *out);
size_t lh_engine_in_flight(struct lh_engine *eng);

/* Stops dispatching everything; requests in flight finish within grace
 * seconds (then are aborted), everything is committed, then on_drained. */
void lh_engine_shutdown(struct lh_engine *eng, double grace);
/* Aborts every request in flight now (a second Ctrl-C). */
void lh_engine_abort(struct lh_engine *eng);
int lh_engine_stopping(struct lh_engine *eng);

#endif
