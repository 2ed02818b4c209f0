/*
 * engine layer: `longhaul run` (see run.h).
 *
 * One thread drives everything through the event loop: the LLM client's
 * sockets and timers, signals, progress, and wake-ups from the commit
 * thread. Items flow:
 *
 *   store --claim--> ready queue --send--> in flight --answer--> staged op
 *         <--------------------- group commit ----------------------'
 *
 * An item is counted as finished only when the transaction holding its
 * result has committed (handle_results), never when the answer arrives.
 */
#include "engine/run.h"
#include "engine/engine.h"
#include "engine/ingest.h"
#include "engine/jobstate.h"
#include "engine/progress.h"
#include "engine/report.h"
#include "llm/llm.h"
#include "loop/loop.h"
#include "store/store.h"
#include "util/buf.h"
#include "util/log.h"
#include "util/hash.h"
#include "util/mem.h"
#include "util/time.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

struct run {
	const struct lh_run_opts *o;
	struct lh_loop *loop;
	struct lh_engine *eng;
	struct lh_store *st;
	struct lh_job_rec job;
	struct lh_engine_job_stats last; /* the job's figures, kept when it leaves the engine */
	int ended;               /* the job left the engine */
	enum lh_job_end how;
	char stop_msg[1024];
	int exit_code;
	int signalled;
	int sigint_count;
	int store_failed;
	struct lh_err store_err;
	double run_started;
	double last_line, last_json;
	int drawn;
	struct lh_timer *t_progress;
	struct lh_rate rate_items, rate_tokens;
	struct lh_progress_view final_view;
	int64_t job_start_finished; /* done + dead when this run started */
};

static double now_mono(void)
{
	return lh_mono();
}

static void refresh_stats(struct run *r)
{
	if (!r->ended && r->eng)
		lh_engine_job_stats(r->eng, r->job.id, &r->last);
}

/* ---- engine callbacks ---- */

static void on_job_end(void *arg, int64_t job, enum lh_job_end how, const char *msg)
{
	struct run *r = arg;
	(void)job;
	refresh_stats(r);
	r->ended = 1;
	r->how = how;
	if (msg)
		snprintf(r->stop_msg, sizeof r->stop_msg, "%s", msg);
	if (!r->signalled) {
		if (how == LH_END_COMPLETED)
			r->exit_code = r->last.dead ? LH_EXIT_FAILED_ITEMS : LH_EXIT_OK;
		else if (how == LH_END_STOPPED)
			r->exit_code = LH_EXIT_STOPPED;
		else
			r->exit_code = LH_EXIT_INTERNAL;
	}
	lh_engine_shutdown(r->eng, 0);
}

static void on_fatal(void *arg, const struct lh_err *e)
{
	struct run *r = arg;
	if (!r->store_failed) {
		r->store_failed = 1;
		r->store_err = *e;
		r->exit_code = LH_EXIT_STORE;
	}
}

static void on_drained(void *arg)
{
	struct run *r = arg;
	lh_loop_stop(r->loop);
}

static void on_signal(struct lh_loop *loop, int signo, void *arg)
{
	struct run *r = arg;
	(void)loop;
	if (signo == SIGINT)
		r->sigint_count++;
	if (!r->signalled && !lh_engine_stopping(r->eng)) {
		size_t n = lh_engine_in_flight(r->eng);
		r->signalled = 1;
		r->exit_code = signo == SIGINT ? LH_EXIT_SIGINT : LH_EXIT_SIGTERM;
		if (n && !r->o->quiet)
			fprintf(stderr, "\nlonghaul: stopping: waiting up to %.0fs for %zu requests in flight "
					"(Ctrl-C again to abort them)\n",
				r->o->grace, n);
		lh_engine_shutdown(r->eng, r->o->grace);
	} else if (signo == SIGINT && r->sigint_count >= 2) {
		lh_engine_abort(r->eng);
	}
}

/* ---- progress ---- */

static void fill_progress(struct run *r, struct lh_progress_view *p)
{
	struct lh_commit_stats cs;
	double now = now_mono();
	refresh_stats(r);
	memset(p, 0, sizeof *p);
	p->state = r->ended ? "finishing" : lh_engine_stopping(r->eng) ? "stopping" : "running";
	p->total = r->last.total;
	p->done = r->last.done;
	p->dead = r->last.dead;
	p->retries = r->last.retries;
	p->in_flight = r->last.in_flight;
	p->prompt_tokens = r->last.prompt_tokens;
	p->completion_tokens = r->last.completion_tokens;
	p->elapsed = r->job.run_secs + (now - r->run_started);
	lh_rate_add(&r->rate_items, now, (double)(p->done + p->dead));
	lh_rate_add(&r->rate_tokens, now, (double)p->completion_tokens);
	p->items_per_sec = lh_rate_per_sec(&r->rate_items);
	p->tokens_per_sec = lh_rate_per_sec(&r->rate_tokens);
	p->eta = lh_eta((double)(p->total - p->done - p->dead), p->items_per_sec);
	lh_engine_commit_stats(r->eng, &cs);
	p->commits = cs.commits;
	p->items_per_commit = cs.commits ? (double)cs.items / (double)cs.commits : 0;
	p->commit_p50 = lh_hist_quantile(&cs.commit_lat, 0.5);
	p->commit_p99 = lh_hist_quantile(&cs.commit_lat, 0.99);
}

static void on_progress(struct lh_loop *loop, struct lh_timer *t, void *arg)
{
	struct run *r = arg;
	struct lh_progress_view p;
	double now = now_mono();
	(void)loop;
	fill_progress(r, &p);
	if (!r->o->quiet) {
		if (r->o->progress) {
			lh_report_bar(stderr, &p);
			r->drawn = 1;
		} else if (now - r->last_line >= r->o->progress_every) {
			lh_report_line(stderr, &p);
			r->last_line = now;
		}
	}
	if (now - r->last_json >= 1.0) {
		lh_report_progress_json(r->o->progress_path, r->job.name, &p);
		r->last_json = now;
	}
	lh_timer_start(t, r->o->progress ? 100 : 250);
}

/* ---- setup ---- */

static int file_sig(const char *path, struct lh_buf *out)
{
	struct stat sb;
	if (stat(path, &sb) != 0)
		return -1;
	return lh_buf_printf(out, "%lld:%lld.%09ld", (long long)sb.st_size, (long long)sb.st_mtim.tv_sec,
			     sb.st_mtim.tv_nsec);
}

static char *source_sig(const struct lh_run_opts *o)
{
	struct lh_buf b;
	lh_buf_init(&b, 0);
	if (o->kind == LH_INPUT_SPEC) {
		const struct lh_spec *s = o->spec;
		char h[LH_SHA256_HEX];
		struct lh_buf k;
		lh_buf_init(&k, 0);
		if (lh_buf_printf(&k, "%s\n%s\n%s\n%s\n%s\n%ld\n%g\n%d", s->prompt ? s->prompt : "",
				  s->system ? s->system : "", s->input_records ? s->input_records : "",
				  s->input_files ? s->input_files : "", s->key_field ? s->key_field : "", s->max_tokens,
				  s->temperature, s->stream) == 0)
			lh_sha256_hex(k.data, k.len, h);
		else
			h[0] = '\0';
		lh_buf_release(&k);
		if (lh_buf_printf(&b, "spec:%.16s;", h) != 0 ||
		    (s->input_records && file_sig(s->input_records, &b) != 0)) {
			/* an unreadable input is reported by ingest */
		}
	} else if (file_sig(o->file, &b) != 0) {
		/* reported by ingest */
	}
	return lh_buf_steal(&b);
}

static int exit_for(int rc)
{
	switch (rc) {
	case LH_EINPUT:
	case LH_EIO:
	case LH_ETOOBIG:
		return LH_EXIT_INPUT;
	case LH_EBUSY:
		return LH_EXIT_LOCKED;
	case LH_ESTORE:
	case LH_ECORRUPT:
	case LH_EFULL:
		return LH_EXIT_STORE;
	case LH_EUSAGE:
		return LH_EXIT_USAGE;
	default:
		return LH_EXIT_INTERNAL;
	}
}

static void remove_store_files(const char *path)
{
	static const char *suffix[] = { "", "-wal", "-shm", "-journal" };
	char p[4096];
	for (size_t i = 0; i < sizeof suffix / sizeof suffix[0]; i++) {
		snprintf(p, sizeof p, "%s%s", path, suffix[i]);
		unlink(p);
	}
}

/* Holds an exclusive flock on the store file for the life of the process:
 * a second `longhaul run` on the same store is refused instead of racing. */
static int lock_store(const char *path, int *fd, struct lh_err *e)
{
	*fd = open(path, O_RDWR | O_CLOEXEC);
	if (*fd < 0)
		return lh_err_at(e, LH_ESTORE, path, 0, NULL, "could not open store: %s", strerror(errno));
	if (flock(*fd, LOCK_EX | LOCK_NB) != 0) {
		close(*fd);
		*fd = -1;
		return lh_err_at(e, LH_EBUSY, path, 0, NULL,
				 "another longhaul process is running this store; wait for it or stop it first");
	}
	return 0;
}

static int prepare_job(struct run *r, struct lh_err *e)
{
	const struct lh_run_opts *o = r->o;
	char ref[4200], *abs = realpath(o->file, NULL);
	char *sig = source_sig(o);
	int rc;
	snprintf(ref, sizeof ref, "run:%s", abs ? abs : o->file);
	free(abs);
	rc = lh_store_job_find(r->st, ref, &r->job, e);
	if (rc == 0 && o->restart) {
		rc = lh_store_job_delete(r->st, r->job.id, e);
		lh_job_rec_release(&r->job);
		if (rc) {
			lh_free(sig);
			return rc;
		}
		rc = LH_ENOTFOUND;
	}
	if (rc == 0) {
		if (strcmp(r->job.source_sig ? r->job.source_sig : "", sig) != 0) {
			rc = lh_err_at(e, LH_EINPUT, o->file, 0, NULL,
				       "the input changed since this job started; run with --restart to start over "
				       "(earlier results are discarded)");
		}
		lh_free(sig);
		return rc;
	}
	if (rc != LH_ENOTFOUND) {
		lh_free(sig);
		return rc;
	}
	lh_err_clear(e);
	/* New job: create and ingest in one transaction, so bad input anywhere
	 * leaves the store as it was. */
	{
		struct lh_job_rec j;
		const char *base = strrchr(o->file, '/');
		int64_t n = 0;
		char *spec_json = o->spec ? lh_spec_to_json(o->spec) : NULL;
		memset(&j, 0, sizeof j);
		j.ref = ref;
		j.name = o->spec && o->spec->name ? o->spec->name : (char *)(base ? base + 1 : o->file);
		j.kind = o->kind == LH_INPUT_BATCH ? "batch" : "spec";
		j.spec = spec_json ? spec_json : "{}";
		j.source_sig = sig;
		snprintf(j.state, sizeof j.state, "queued");
		rc = lh_store_begin(r->st, e);
		if (!rc)
			rc = lh_store_job_create(r->st, &j, e);
		if (!rc)
			rc = lh_store_event_add(r->st, j.id, lh_wall(), "job.queued", NULL, NULL, NULL, e);
		if (!rc) {
			if (o->kind == LH_INPUT_BATCH)
				rc = lh_ingest_batch(r->st, j.id, o->file, o->model == NULL, &n, e);
			else
				rc = lh_ingest_spec(r->st, j.id, o->spec, &n, e);
		}
		if (!rc)
			rc = lh_store_job_set_ingested(r->st, j.id, n, e);
		if (!rc)
			rc = lh_store_commit(r->st, e);
		if (rc)
			lh_store_rollback(r->st);
		free(spec_json);
		if (!rc)
			rc = lh_store_job_get(r->st, j.id, &r->job, e);
	}
	lh_free(sig);
	return rc;
}

static void print_summary(struct run *r)
{
	const struct lh_run_opts *o = r->o;
	const struct lh_engine_job_stats *t = &r->last;
	char el[32];
	lh_time_human(t->run_secs, el, sizeof el);
	if (r->store_failed) {
		lh_log_err(&r->store_err);
		fprintf(stderr, "longhaul: stopped: the store could not be written; finished work up to the "
				"last commit is kept; free space or fix the store, then run the same command again\n");
		return;
	}
	if (r->exit_code == LH_EXIT_SIGINT || r->exit_code == LH_EXIT_SIGTERM) {
		printf("interrupted: %lld of %lld items finished (%lld failed); nothing finished is lost\n"
		       "resume with the same command: longhaul run %s\n",
		       (long long)(t->done + t->dead), (long long)t->total, (long long)t->dead, o->file);
		return;
	}
	if (r->exit_code == LH_EXIT_STOPPED) {
		fprintf(stderr, "longhaul: %s\n", r->stop_msg);
		return;
	}
	printf("completed: %lld items, %lld succeeded, %lld failed, %lld retries, %lld prompt + %lld completion "
	       "tokens, %s\n",
	       (long long)t->total, (long long)t->done, (long long)t->dead, (long long)t->retries,
	       (long long)t->prompt_tokens, (long long)t->completion_tokens, el);
	printf("results: %s\n", o->output_path);
	if (t->dead)
		printf("failures: %s\n", o->errors_path);
}

static int finish_outputs(struct run *r, struct lh_err *e)
{
	int rc = lh_report_write_outputs(r->st, &r->job, r->o->output_path, r->o->errors_path, e);
	if (!rc && r->last.dead && !r->o->quiet)
		rc = lh_report_failures(r->st, r->job.id, stderr, 10, e);
	return rc;
}

static void stats_from_rec(struct run *r)
{
	memset(&r->last, 0, sizeof r->last);
	r->last.total = r->job.n_total;
	r->last.done = r->job.n_done;
	r->last.dead = r->job.n_dead;
	r->last.retries = r->job.n_retries;
	r->last.prompt_tokens = r->job.prompt_tokens;
	r->last.completion_tokens = r->job.completion_tokens;
	r->last.run_secs = r->job.run_secs;
}

static int start_engine(struct run *r, struct lh_err *e)
{
	const struct lh_run_opts *o = r->o;
	struct lh_engine_opts eo;
	struct lh_job_conf jc;
	struct lh_buf u;
	char owner[64];
	int rc;

	memset(&eo, 0, sizeof eo);
	snprintf(owner, sizeof owner, "run:%ld", (long)getpid());
	eo.concurrency = o->concurrency;
	eo.lease_secs = o->lease_secs;
	eo.owner = owner;
	eo.store_path = o->store_path;
	eo.sync_full = o->sync_full;
	eo.control = r->st;
	eo.llm.max_connections = o->concurrency;
	eo.llm.connect_timeout_ms = (long)(o->connect_timeout * 1000);
	eo.llm.request_timeout_ms = (long)(o->request_timeout * 1000);
	eo.llm.first_token_timeout_ms = (long)(o->first_token_timeout * 1000);
	eo.llm.max_response_bytes = 16u << 20;
	eo.llm.user_agent = "longhaul/0.1";
	eo.release_all_leases = 1;
	eo.arg = r;
	eo.on_job_end = on_job_end;
	eo.on_fatal = on_fatal;
	eo.on_drained = on_drained;
	r->eng = lh_engine_new(r->loop, &eo, e);
	if (!r->eng)
		return e->code ? e->code : LH_EINTERNAL;

	lh_buf_init(&u, 0);
	if (lh_llm_resolve_url(o->base_url, "/v1/chat/completions", &u) != 0) {
		lh_buf_release(&u);
		return lh_err_set(e, LH_EUSAGE, "could not build the request url from \"%s\"", o->base_url);
	}
	memset(&jc, 0, sizeof jc);
	jc.url = u.data;
	jc.api_key = o->api_key;
	if (o->kind == LH_INPUT_SPEC) {
		jc.model = o->model ? o->model : o->spec->model;
		jc.model_prefix = 1;
		jc.stream = o->spec->stream;
	} else {
		jc.model = o->model;
	}
	jc.concurrency = o->concurrency;
	jc.retry = o->retry;
	rc = lh_engine_add_job(r->eng, r->job.id, &jc, e);
	lh_buf_release(&u);
	return rc;
}

int lh_run(const struct lh_run_opts *o)
{
	struct run R, *r = &R;
	struct lh_err e;
	struct lh_store_opts so = { .path = o->store_path, .sync_full = o->sync_full, .create = 1 };
	struct stat sb;
	int created, lockfd = -1, rc;

	memset(r, 0, sizeof *r);
	lh_err_clear(&e);
	r->o = o;

	created = stat(o->store_path, &sb) != 0;
	rc = lh_store_open(&so, &r->st, &e);
	if (rc) {
		lh_log_err(&e);
		if (created)
			remove_store_files(o->store_path);
		return exit_for(rc);
	}
	rc = lock_store(o->store_path, &lockfd, &e);
	if (!rc)
		rc = prepare_job(r, &e);
	if (rc) {
		lh_log_err(&e);
		lh_job_rec_release(&r->job);
		lh_store_close(r->st);
		if (created)
			remove_store_files(o->store_path);
		if (lockfd >= 0)
			close(lockfd);
		return exit_for(rc);
	}
	stats_from_rec(r);
	r->job_start_finished = r->last.done + r->last.dead;

	if (lh_job_state_final(r->job.state)) {
		/* Finished before: no requests, the same outputs again. */
		r->exit_code = r->last.dead ? LH_EXIT_FAILED_ITEMS : LH_EXIT_OK;
		rc = finish_outputs(r, &e);
		if (rc) {
			lh_log_err(&e);
			r->exit_code = exit_for(rc);
		} else if (!o->quiet) {
			printf("already finished; outputs rewritten from the store\n");
			print_summary(r);
		}
		lh_job_rec_release(&r->job);
		lh_store_close(r->st);
		close(lockfd);
		return r->exit_code;
	}

	/* running again: a job that crashed while running stays running (not a
	 * transition, but worth a line in the log); others move to running. */
	rc = lh_store_begin(r->st, &e);
	if (!rc && !strcmp(r->job.state, "running"))
		rc = lh_store_event_add(r->st, r->job.id, lh_wall(), "job.recovered", NULL, NULL, NULL, &e);
	else if (!rc)
		rc = lh_job_transition(r->st, &r->job, "running", NULL, &e);
	if (!rc)
		rc = lh_store_commit(r->st, &e);
	if (rc) {
		lh_store_rollback(r->st);
		lh_log_err(&e);
		lh_job_rec_release(&r->job);
		lh_store_close(r->st);
		close(lockfd);
		return exit_for(rc);
	}

	/* Signals are blocked before the engine starts its commit thread, so
	 * that the thread inherits the mask and they arrive in the loop. */
	r->loop = lh_loop_new(&e);
	if (!r->loop || lh_loop_signal(r->loop, SIGINT, on_signal, r) || lh_loop_signal(r->loop, SIGTERM, on_signal, r)) {
		lh_log(LH_LOG_ERROR, "could not set up the event loop");
		return LH_EXIT_INTERNAL;
	}
	signal(SIGPIPE, SIG_IGN);
	r->exit_code = LH_EXIT_INTERNAL;
	rc = start_engine(r, &e);
	if (rc) {
		lh_log_err(&e);
		if (r->eng)
			lh_engine_free(r->eng);
		lh_loop_free(r->loop);
		lh_job_rec_release(&r->job);
		lh_store_close(r->st);
		close(lockfd);
		return exit_for(rc);
	}
	r->run_started = now_mono();
	r->last_line = r->run_started;
	lh_rate_init(&r->rate_items, 10.0);
	lh_rate_init(&r->rate_tokens, 10.0);
	r->t_progress = lh_timer_new(r->loop, on_progress, r);
	lh_timer_start(r->t_progress, 0);

	if (lh_loop_run(r->loop) != 0)
		lh_log(LH_LOG_ERROR, "the event loop failed: %s", strerror(errno));

	refresh_stats(r);
	{
		/* The commit figures outlive the engine: the final progress file keeps them. */
		struct lh_progress_view p;
		fill_progress(r, &p);
		r->final_view = p;
	}
	lh_timer_free(r->t_progress);
	lh_engine_free(r->eng);
	r->eng = NULL;
	if (r->drawn && !o->quiet)
		fputc('\n', stderr);

	/* Re-read the job: the engine may have moved it (completed, paused). */
	{
		struct lh_job_rec j;
		if (lh_store_job_get(r->st, r->job.id, &j, &e) == 0) {
			lh_job_rec_release(&r->job);
			r->job = j;
			stats_from_rec(r);
		}
		if (!strcmp(r->job.state, "running") && !r->store_failed &&
		    lh_job_transition(r->st, &r->job, "paused", NULL, &e) != 0)
			lh_log_err(&e);
	}
	{
		struct lh_progress_view p = r->final_view;
		double run = now_mono() - r->run_started;
		p.state = r->job.state;
		p.total = r->last.total;
		p.done = r->last.done;
		p.dead = r->last.dead;
		p.retries = r->last.retries;
		p.in_flight = 0;
		p.prompt_tokens = r->last.prompt_tokens;
		p.completion_tokens = r->last.completion_tokens;
		p.elapsed = r->last.run_secs;
		/* At the end, the rate of this run as a whole (the window may be empty). */
		if (p.items_per_sec <= 0 && run > 0)
			p.items_per_sec = (double)(p.done + p.dead - (r->job_start_finished)) / run;
		p.eta = lh_eta((double)(p.total - p.done - p.dead), p.items_per_sec);
		lh_report_progress_json(o->progress_path, r->job.name, &p);
	}
	if (!r->store_failed) {
		rc = finish_outputs(r, &e);
		if (rc) {
			lh_log_err(&e);
			if (r->exit_code == LH_EXIT_OK || r->exit_code == LH_EXIT_FAILED_ITEMS)
				r->exit_code = exit_for(rc);
		}
	}
	if (!o->quiet || r->exit_code != LH_EXIT_OK)
		print_summary(r);

	lh_loop_free(r->loop);
	lh_job_rec_release(&r->job);
	lh_store_close(r->st);
	close(lockfd);
	return r->exit_code;
}
