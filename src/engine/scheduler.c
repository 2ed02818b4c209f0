/*
 * engine layer: the daemon's scheduler (see scheduler.h). Moved here from
 * cli/serve.c, which now only composes the daemon.
 */
#include "engine/scheduler.h"
#include "engine/jobstate.h"
#include "engine/report.h"
#include "util/log.h"
#include "util/mem.h"
#include "util/time.h"
#include "util/vec.h"

#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PAGE 256

struct lh_scheduler {
	struct lh_scheduler_opts o;
	int stopping;
	int dirty;         /* a slot may have freed: look at the queue before sleeping */
	LH_VEC(int64_t) recheck; /* jobs that left the engine while draining: resumed meanwhile? */
};

static void changed(struct lh_scheduler *s)
{
	if (s->o.changed)
		s->o.changed(s->o.arg);
}

struct lh_scheduler *lh_scheduler_new(const struct lh_scheduler_opts *o)
{
	struct lh_scheduler *s = lh_xcalloc(1, sizeof *s);
	s->o = *o;
	return s;
}

void lh_scheduler_free(struct lh_scheduler *s)
{
	if (!s)
		return;
	lh_vec_release(&s->recheck);
	lh_free(s);
}

void lh_scheduler_stop(struct lh_scheduler *s)
{
	s->stopping = 1;
}

/* Starts job id (in state `queued` or `running` in the store). */
static int activate(struct lh_scheduler *s, int64_t id)
{
	struct lh_store *st = s->o.st;
	struct lh_job_rec j;
	struct lh_jobconf jc;
	struct lh_err e;
	enum lh_job_state now;
	int rc;
	if (lh_engine_has_job(s->o.eng, id))
		return 0;
	rc = lh_store_begin(st, &e);
	if (!rc)
		rc = lh_store_job_get(st, id, &j, &e);
	if (rc) {
		lh_store_rollback(st);
		return rc;
	}
	now = lh_job_state_of(j.state);
	if (now == LH_JOB_QUEUED)
		rc = lh_job_transition(st, &j, LH_JOB_RUNNING, NULL, &e);
	else if (now != LH_JOB_RUNNING)
		rc = LH_ESTATE; /* paused or cancelled meanwhile */
	if (!rc)
		rc = lh_store_commit(st, &e);
	else
		lh_store_rollback(st);
	if (!rc) {
		rc = lh_jobconf_load(&j, &s->o.defaults, &jc, &e);
		jc.conf.wait_for_server = s->o.wait_for_server;
		if (!rc)
			rc = lh_engine_add_job(s->o.eng, id, &jc.conf, &e);
		if (rc)
			lh_log_err(&e);
		lh_jobconf_release(&jc);
	}
	lh_job_rec_release(&j);
	changed(s);
	return rc;
}

/* Starts job id again when the store says it runs (a resume, a retry). */
static void activate_if_running(struct lh_scheduler *s, int64_t id)
{
	struct lh_job_rec j;
	struct lh_err e;
	if (lh_store_job_get(s->o.st, id, &j, &e) != 0)
		return;
	if (lh_job_state_of(j.state) == LH_JOB_RUNNING)
		(void)activate(s, id);
	lh_job_rec_release(&j);
}

struct pick_ctx {
	int64_t id;
	int priority;
};

static int first_job(const struct lh_job_rec *j, void *arg)
{
	struct pick_ctx *p = arg;
	p->id = j->id;
	p->priority = j->priority;
	return 1;
}

struct collect {
	int64_t ids[PAGE];
	int prios[PAGE];
	size_t n;
};

static int collect_job(const struct lh_job_rec *j, void *arg)
{
	struct collect *c = arg;
	c->ids[c->n] = j->id;
	c->prios[c->n] = j->priority;
	c->n++;
	return 0;
}

/* Lowest priority among the jobs the engine runs (they are few: max_jobs). */
static int min_active_priority(struct lh_scheduler *s, int *out)
{
	struct lh_err e;
	struct collect c;
	int found = 0, lowest = INT_MAX;
	for (size_t off = 0;; off += PAGE) {
		struct lh_job_filter f = { .state = lh_job_state_name(LH_JOB_RUNNING), .order = LH_JOBS_SCHEDULE,
					   .limit = PAGE, .offset = off };
		c.n = 0;
		if (lh_store_jobs_each(s->o.st, &f, collect_job, &c, &e) != 0)
			break;
		for (size_t i = 0; i < c.n; i++)
			if (lh_engine_has_job(s->o.eng, c.ids[i]) && c.prios[i] < lowest) {
				lowest = c.prios[i];
				found = 1;
			}
		if (c.n < PAGE)
			break;
	}
	*out = lowest;
	return found;
}

/* Fills free slots with queued jobs, highest priority (then oldest) first.
 * A queued job that outranks every running one starts even when full. */
static void fill(struct lh_scheduler *s)
{
	struct lh_err e;
	if (s->stopping)
		return;
	for (int guard = 0; guard < 1000; guard++) {
		struct lh_job_filter f = { .state = lh_job_state_name(LH_JOB_QUEUED), .order = LH_JOBS_SCHEDULE,
					   .limit = 1 };
		struct pick_ctx p = { 0, 0 };
		int lowest;
		if (lh_store_jobs_each(s->o.st, &f, first_job, &p, &e) < 0 || !p.id)
			return;
		if ((long)lh_engine_job_count(s->o.eng) >= s->o.max_jobs &&
		    (!min_active_priority(s, &lowest) || p.priority <= lowest))
			return;
		if (activate(s, p.id) != 0 && lh_engine_has_job(s->o.eng, p.id) == 0) {
			/* Could not start it (a race with pause or delete): look again. */
			continue;
		}
	}
}

int lh_scheduler_start(struct lh_scheduler *s, struct lh_err *e)
{
	struct collect c;
	int64_t after = 0;
	for (;;) {
		struct lh_job_filter f = { .state = lh_job_state_name(LH_JOB_RUNNING), .order = LH_JOBS_OLDEST,
					   .after_id = after, .limit = PAGE };
		c.n = 0;
		if (lh_store_jobs_each(s->o.st, &f, collect_job, &c, e) != 0)
			return e->code;
		for (size_t i = 0; i < c.n; i++) {
			struct lh_err ee;
			if (lh_store_event_add(s->o.st, c.ids[i], lh_wall(), "job.recovered", NULL, NULL, NULL, &ee) != 0)
				lh_log_err(&ee);
			(void)activate(s, c.ids[i]);
			after = c.ids[i];
		}
		if (c.n < PAGE)
			break;
	}
	fill(s);
	return 0;
}

/* A spec's output: and errors: files, written when its job ends (as run
 * writes them); a failure is logged, the job's results stay in the store. */
static void spec_outputs(struct lh_scheduler *s, int64_t id)
{
	struct lh_job_rec j;
	struct lh_err e;
	int wrote = 0, final;
	if (lh_store_job_get(s->o.st, id, &j, &e) != 0)
		return;
	final = lh_job_state_final(lh_job_state_of(j.state));
	lh_job_rec_release(&j);
	if (!final)
		return;
	if (lh_report_spec_outputs(s->o.st, id, &wrote, &e) != 0) {
		lh_err_prefix(&e, "job %lld: could not write the spec's outputs: ", (long long)id);
		lh_log_err(&e);
	} else if (wrote) {
		lh_info("job %lld: wrote the outputs its spec names", (long long)id);
	}
}

void lh_scheduler_news(struct lh_scheduler *s, int64_t id, enum lh_job_news news)
{
	struct lh_engine *eng = s->o.eng;
	struct lh_job_rec j;
	struct lh_err e;
	switch (news) {
	case LH_CMD_PAUSED:
		lh_engine_drop_job(eng, id, 0);
		break;
	case LH_CMD_PAUSED_NOW:
	case LH_CMD_DELETED:
		lh_engine_drop_job(eng, id, 1);
		break;
	case LH_CMD_CANCELLED:
		/* A job in the engine writes its outputs when it has left it. */
		if (lh_engine_has_job(eng, id))
			lh_engine_drop_job(eng, id, 1);
		else
			spec_outputs(s, id);
		break;
	case LH_CMD_PRIORITY:
		if (lh_store_job_get(s->o.st, id, &j, &e) == 0) {
			lh_engine_set_priority(eng, id, j.priority);
			lh_job_rec_release(&j);
		}
		break;
	case LH_CMD_RESUMED:
		activate_if_running(s, id);
		break;
	case LH_CMD_RETRIED:
	case LH_CMD_DECIDED:
		if (lh_engine_has_job(eng, id))
			lh_engine_reload_job(eng, id);
		else
			activate_if_running(s, id);
		break;
	case LH_CMD_SETTINGS:
		/* A running job leaves the engine once its requests in flight end
		 * and comes back with the new settings (job_ended, before_sleep). */
		if (lh_engine_has_job(eng, id))
			lh_engine_drop_job(eng, id, 0);
		break;
	case LH_CMD_SUBMITTED:
		break;
	}
	fill(s);
}

void lh_scheduler_job_ended(struct lh_scheduler *s, int64_t job, enum lh_job_end how, const char *msg)
{
	if (how == LH_END_STOPPED && msg)
		lh_warn("job %lld: %s", (long long)job, msg);
	/* A slot is free: the next queued job may start (before sleeping). */
	s->dirty = 1;
	if (how == LH_END_COMPLETED || how == LH_END_TIMED_OUT || how == LH_END_DROPPED)
		spec_outputs(s, job);
	/* A job paused and resumed before it had drained left the engine just
	 * now while the store says running: it must start again. */
	if (how == LH_END_DROPPED)
		*lh_vec_push(&s->recheck) = job;
}

/* Sets what job waits for (NULL: nothing) and appends an event, in one
 * transaction; a job deleted meanwhile is no error. */
static void set_waiting(struct lh_scheduler *s, int64_t job, const char *what, const char *type, const char *data)
{
	struct lh_store *st = s->o.st;
	struct lh_err e;
	int rc = lh_store_begin(st, &e);
	if (rc) {
		lh_log_err(&e);
		return;
	}
	rc = lh_store_job_set_text(st, job, LH_JOB_WAITING, what, &e);
	if (!rc)
		rc = lh_store_event_add(st, job, lh_wall(), type, NULL, data, NULL, &e);
	if (!rc)
		rc = lh_store_commit(st, &e);
	if (rc) {
		lh_store_rollback(st);
		if (rc != LH_ENOTFOUND)
			lh_log_err(&e);
	}
	changed(s);
}

void lh_scheduler_job_waiting(struct lh_scheduler *s, int64_t job, const char *url, const char *why,
			      double waited)
{
	char line[1024], *data;
	json_t *o;
	if (waited > 0)
		return; /* said once, when the wait began */
	snprintf(line, sizeof line, "the server at %s (%s); waiting up to %.0fs for it", url, why,
		 s->o.wait_for_server);
	o = json_pack("{s:s,s:s,s:f}", "url", url, "reason", why, "wait_for_server", s->o.wait_for_server);
	data = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	set_waiting(s, job, line, "job.waiting", data);
	free(data);
	lh_warn("job %lld: waiting for the server at %s (%s), up to %.0fs", (long long)job, url, why,
		s->o.wait_for_server);
}

void lh_scheduler_job_reached(struct lh_scheduler *s, int64_t job, const char *url, double waited)
{
	char data[96];
	snprintf(data, sizeof data, "{\"waited\":%.1f}", waited);
	set_waiting(s, job, NULL, "job.server_reached", data);
	lh_info("job %lld: reached the server at %s after %.1fs", (long long)job, url, waited);
}

void lh_scheduler_job_idle(struct lh_scheduler *s, int64_t job, int64_t waiting)
{
	char line[256], data[64];
	if (waiting <= 0) {
		set_waiting(s, job, NULL, "job.active", NULL);
		return;
	}
	snprintf(line, sizeof line, "%lld item%s waiting for approval (longhaul approve %lld KEY..., or --all)",
		 (long long)waiting, waiting == 1 ? "" : "s", (long long)job);
	snprintf(data, sizeof data, "{\"waiting\":%lld}", (long long)waiting);
	set_waiting(s, job, line, "job.idle", data);
	lh_info("job %lld: %s", (long long)job, line);
}

void lh_scheduler_before_sleep(struct lh_scheduler *s)
{
	while (s->recheck.n && !s->stopping) {
		int64_t id = s->recheck.v[--s->recheck.n];
		if (!lh_engine_has_job(s->o.eng, id))
			activate_if_running(s, id);
	}
	/* Slots freed by jobs that ended in this iteration. */
	if (s->dirty && !s->stopping) {
		s->dirty = 0;
		fill(s);
	}
}
