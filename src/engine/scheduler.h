/*
 * engine layer: the daemon's scheduler. It decides which jobs run: queued
 * jobs start in priority order (then oldest first) within max_jobs, a job
 * that outranks every running one starts even when full, and jobs left
 * running by an earlier process resume at start. It turns the news of the
 * control plane (a job paused, resumed, retried, changed, deleted: written
 * to the store by the API) into changes of the engine's memory, and records
 * what the engine reports back (a job waiting for a server, a job's end)
 * where people see it. All on the loop thread, through one store handle.
 *
 *   API thread: write the change, commit --news--> lh_scheduler_news
 *   engine: on_job_end / on_job_waiting -------> lh_scheduler_job_* (loop)
 *   before sleeping: lh_scheduler_before_sleep starts what may start
 */
#ifndef LH_ENGINE_SCHEDULER_H
#define LH_ENGINE_SCHEDULER_H

#include <stdint.h>
#include "engine/engine.h"
#include "engine/jobconf.h"

/* The news of a job that the control plane changed in the store. */
enum lh_job_news {
	LH_CMD_SUBMITTED,  /* a new job is queued */
	LH_CMD_PAUSED,     /* paused: stop dispatching, let requests in flight finish */
	LH_CMD_PAUSED_NOW, /* paused: also abort requests in flight (items back to pending) */
	LH_CMD_RESUMED,    /* paused -> running/queued */
	LH_CMD_CANCELLED,  /* abort requests in flight; keep results */
	LH_CMD_DELETED,    /* the job's rows are gone: drop it from memory */
	LH_CMD_PRIORITY,   /* its priority changed */
	LH_CMD_RETRIED,    /* dead items went back to pending; the job may have re-opened */
	LH_CMD_SETTINGS,   /* its settings changed: a running job restarts with them */
	LH_CMD_DECIDED     /* a person decided on waiting items: count them again, run the approved */
};

struct lh_scheduler_opts {
	struct lh_engine *eng;        /* borrowed */
	struct lh_store *st;          /* borrowed: the loop thread's handle */
	long max_jobs;                /* jobs running at once */
	double wait_for_server;       /* seconds a job waits for a server not reached yet */
	struct lh_jobconf_defaults defaults; /* strings borrowed for the scheduler's life */
	void *arg;
	/* New events are in the store (wake the event streams); may be NULL. */
	void (*changed)(void *arg);
};

struct lh_scheduler;

/* new object; free with lh_scheduler_free. */
struct lh_scheduler *lh_scheduler_new(const struct lh_scheduler_opts *o);
void lh_scheduler_free(struct lh_scheduler *s);

/* Jobs left running by the last process go on (a job.recovered event
 * each); then the queue fills the free slots. */
int lh_scheduler_start(struct lh_scheduler *s, struct lh_err *e) LH_WUR;
/* No job starts any more (the daemon is stopping). */
void lh_scheduler_stop(struct lh_scheduler *s);
/* The news of one job, committed by the control plane. */
void lh_scheduler_news(struct lh_scheduler *s, int64_t job, enum lh_job_news news);
/* Forwarded from the engine's callbacks of the same names. */
void lh_scheduler_job_ended(struct lh_scheduler *s, int64_t job, enum lh_job_end how, const char *msg);
void lh_scheduler_job_waiting(struct lh_scheduler *s, int64_t job, const char *url, const char *why,
			      double waited);
void lh_scheduler_job_reached(struct lh_scheduler *s, int64_t job, const char *url, double waited);
/* Starts what may start now: jobs resumed while they drained, and queued
 * jobs for slots freed in this loop iteration. Call before the loop sleeps. */
/* The engine's on_job_idle: only items waiting for a person are left
 * (waiting > 0; the job stays running, and says so in its `waiting` line
 * and a job.idle event), or no longer (0: job.active). */
void lh_scheduler_job_idle(struct lh_scheduler *s, int64_t job, int64_t waiting);
void lh_scheduler_before_sleep(struct lh_scheduler *s);

#endif
