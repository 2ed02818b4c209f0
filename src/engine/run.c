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
#include "util/fdlimit.h"
#include "util/log.h"
#include "util/file.h"
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
	struct lh_rate rate_items, rate_tokens, rate_steps, rate_units;
	struct lh_progress_view final_view;
	int64_t job_start_finished; /* done + dead when this run started */
	/* The input the readers open: the file, or standard input spooled to
	 * an unnamed file ("/proc/self/fd/N"), named "<stdin>" in messages. */
	const char *input;
	char input_buf[64];
	int stdin_fd;
	char stdin_hash[LH_SHA256_HEX];
	struct lh_report_files files; /* what finish_outputs wrote */
	int outputs_done;
	/* Waiting for a server that is not up yet (engine callbacks). */
	int waiting;
	double wait_since;       /* mono seconds */
	char wait_why[128];
	int64_t approvals;       /* items waiting for a person when the run ended (exit 8) */
	int reduce_written;      /* the reduce output file was written */
	char reduce_msg[1024];   /* why a reduce did not run to its end, or "" */
	size_t nsteps;           /* a pipeline's steps: their ids and items past each (copies) */
	char **step_ids;
	int64_t *steps_done;
	double *step_cost;
};

static double now_mono(void)
{
	return lh_mono();
}

/* The command that resumes this run, for the hints, with extra words
 * (or ""), and a newline. */
static void print_cmd(FILE *out, const struct run *r, const char *extra)
{
	if (r->o->resume_cmd)
		fputs(r->o->resume_cmd, out);
	else
		fprintf(out, "longhaul run %s", r->o->file);
	fputs(extra, out);
	if (r->o->from_stdin)
		fputs(" (with the same input on standard input)", out);
	fputc('\n', out);
}

/* The engine's figures for the job; a pipeline's per-step counts are
 * copied, since the engine's go with the job when it leaves. */
static void refresh_stats(struct run *r)
{
	if (r->ended || !r->eng || lh_engine_job_stats(r->eng, r->job.id, &r->last) != 0)
		return;
	if (r->last.nsteps && !r->step_ids) {
		r->nsteps = r->last.nsteps;
		r->steps_done = lh_xcalloc(r->nsteps, sizeof *r->steps_done);
		r->step_cost = lh_xcalloc(r->nsteps, sizeof *r->step_cost);
		r->step_ids = lh_xcalloc(r->nsteps, sizeof *r->step_ids);
		for (size_t i = 0; i < r->nsteps; i++)
			r->step_ids[i] = lh_xstrdup(r->last.step_ids[i]);
	}
	if (r->last.nsteps == r->nsteps && r->nsteps) {
		memcpy(r->steps_done, r->last.steps_done, r->nsteps * sizeof *r->steps_done);
		memcpy(r->step_cost, r->last.step_cost, r->nsteps * sizeof *r->step_cost);
	}
	r->last.steps_done = r->steps_done;
	r->last.step_ids = (const char *const *)r->step_ids;
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
	if (msg && how == LH_END_COMPLETED)
		snprintf(r->reduce_msg, sizeof r->reduce_msg, "%s", msg);
	if (!r->signalled && !r->store_failed) {
		if (how == LH_END_COMPLETED)
			r->exit_code = r->last.dead ? LH_EXIT_FAILED_ITEMS : LH_EXIT_OK;
		else if (how == LH_END_STOPPED)
			r->exit_code = LH_EXIT_STOPPED;
		else if (how == LH_END_TIMED_OUT)
			r->exit_code = LH_EXIT_TIMED_OUT;
		else
			r->exit_code = LH_EXIT_INTERNAL;
	}
	lh_engine_shutdown(r->eng, 0);
}

/* Only items that wait for a person are left: the run ends, saying how
 * to decide (the job stays resumable). */
static void on_job_idle(void *arg, int64_t job, int64_t waiting)
{
	struct run *r = arg;
	(void)job;
	refresh_stats(r);
	r->approvals = waiting;
	if (!r->signalled)
		r->exit_code = LH_EXIT_WAITING;
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

static void on_job_waiting(void *arg, int64_t job, const char *url, const char *why, double waited)
{
	struct run *r = arg;
	(void)job;
	(void)url; /* the request URL; people know the base URL they gave */
	snprintf(r->wait_why, sizeof r->wait_why, "%s", why);
	if (r->waiting)
		return; /* the progress timer keeps the line up to date */
	r->waiting = 1;
	r->wait_since = now_mono() - waited;
	if (!r->o->quiet && !r->o->progress)
		fprintf(stderr, "longhaul: waiting for the server at %s (%s) for up to %g s ...\n", r->o->base_url,
			why, r->o->wait_for_server);
}

static void on_job_reached(void *arg, int64_t job, const char *url, double waited)
{
	struct run *r = arg;
	char w[32];
	(void)job;
	(void)url;
	r->waiting = 0;
	if (r->o->quiet)
		return;
	lh_time_human(waited, w, sizeof w);
	fprintf(stderr, "%slonghaul: the server at %s answered after %s of waiting\n", r->o->progress ? "\r\033[K" : "",
		r->o->base_url, w);
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
			fprintf(stderr, "\nlonghaul: stopping: waiting up to %.0f s for %zu request%s in flight "
					"(Ctrl-C again to abort them)\n",
				r->o->grace, n, n == 1 ? "" : "s");
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
	if (r->last.nsteps) {
		/* A pipeline's unit of work is a step: the ETA comes from the
		 * recent rate of steps over the steps left. */
		int64_t sum = 0;
		double units, left;
		for (size_t i = 0; i < r->last.nsteps; i++)
			sum += r->last.steps_done[i];
		/* Weighted by each step's expected turns, so that a loop of
		 * eight turns counts as eight requests ahead. */
		lh_pipeline_work(p->total, p->dead, r->last.nsteps, r->last.steps_done, r->step_cost, &units, &left);
		lh_rate_add(&r->rate_units, now, units);
		p->nsteps = r->last.nsteps;
		p->step_ids = r->last.step_ids;
		p->steps_done = r->last.steps_done;
		lh_rate_add(&r->rate_steps, now, (double)sum);
		p->steps_per_sec = lh_rate_per_sec(&r->rate_steps);
		p->eta = left > 0 ? lh_eta(left, lh_rate_per_sec(&r->rate_units)) : 0;
		p->waiting = r->last.approvals;
		p->reducing = r->last.reducing;
		p->reduce_calls = r->last.reduce_calls;
		p->reduce_done = r->last.reduce_done;
	}
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
	/* The engine's figures say whether the job still waits (it may have
	 * stopped waiting without reaching the server: the window passed). */
	if (!r->o->quiet && r->waiting && r->last.waiting && !r->ended) {
		/* Nothing moves while the server is away: say what is awaited. */
		char w[32];
		lh_time_human(now - r->wait_since, w, sizeof w);
		if (r->o->progress) {
			fprintf(stderr, "\r\033[Klonghaul: waiting for the server at %s (%s) ... %s of up to %g s",
				r->o->base_url, r->wait_why, w, r->o->wait_for_server);
			fflush(stderr);
			r->drawn = 1;
		} else if (now - r->last_line >= r->o->progress_every) {
			fprintf(stderr, "longhaul: still waiting for the server at %s (%s): %s of up to %g s\n",
				r->o->base_url, r->wait_why, w, r->o->wait_for_server);
			r->last_line = now;
		}
	} else if (!r->o->quiet) {
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

static void spec_hash(const struct lh_spec *s, char h[LH_SHA256_HEX])
{
	struct lh_buf k;
	lh_buf_init(&k, 0);
	if (lh_buf_printf(&k, "%s\n%s\n%s\n%s\n%s\n%ld\n%g\n%d", s->prompt ? s->prompt : "", s->system ? s->system : "",
			  s->input_records ? s->input_records : "", s->input_files ? s->input_files : "",
			  s->key_field ? s->key_field : "", s->max_tokens, s->temperature, s->stream) == 0)
		lh_sha256_hex(k.data, k.len, h);
	else
		h[0] = '\0';
	lh_buf_release(&k);
}

/* The input's fingerprint: a job found again with another one was started
 * from a different input (or spec), which the store's items do not match. */
static char *source_sig(const struct run *r)
{
	const struct lh_run_opts *o = r->o;
	struct lh_buf b;
	lh_buf_init(&b, 0);
	if (o->from_stdin) {
		if (lh_buf_printf(&b, "stdin:%s", r->stdin_hash) != 0)
			lh_buf_clear(&b);
	} else if (o->spec) {
		char h[LH_SHA256_HEX];
		spec_hash(o->spec, h);
		if (lh_buf_printf(&b, "spec:%.16s;", h) != 0 ||
		    (o->spec->input_records && file_sig(o->spec->input_records, &b) != 0)) {
			/* an unreadable input is reported by ingest */
		}
	} else if (file_sig(r->input, &b) != 0) {
		/* reported by ingest */
	}
	return lh_buf_steal(&b);
}

/* The job's identity in the store (run.h, lh_run): what running the same
 * command again finds. */
static void job_ref(const struct run *r, char *ref, size_t n)
{
	const struct lh_run_opts *o = r->o;
	char *abs;
	if (o->from_stdin) {
		snprintf(ref, n, "run:stdin:%s", r->stdin_hash);
		return;
	}
	abs = realpath(o->file, NULL);
	if (o->kind == LH_INPUT_RECORDS && o->spec) {
		/* A glob has no real path: its absolute pattern names it. */
		const char *in = o->spec->input_records ? o->spec->input_records : o->spec->input_files;
		char h[LH_SHA256_HEX];
		struct lh_buf t;
		lh_buf_init(&t, 0);
		if (lh_buf_printf(&t, "%s\n%s", o->spec->prompt ? o->spec->prompt : "",
				  o->spec->system ? o->spec->system : "") == 0)
			lh_sha256_hex(t.data, t.len, h);
		else
			h[0] = '\0';
		lh_buf_release(&t);
		snprintf(ref, n, "run:%s?prompt=%.16s", in ? in : o->file, h);
	} else {
		snprintf(ref, n, "run:%s", abs ? abs : o->file);
	}
	free(abs); /* realpath's memory comes from malloc */
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
int lh_run_lock_store(const char *path, int *fd, struct lh_err *e)
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

/* --retry-failed: the job's dead items go back to pending with their
 * attempts reset, and a finished job is re-opened, in one transaction;
 * every success is kept. */
static int retry_failed(struct run *r, struct lh_err *e)
{
	int64_t n = 0;
	int rc = lh_store_begin(r->st, e);
	if (!rc)
		rc = lh_job_retry_failed(r->st, &r->job, NULL, 0, &n, e);
	if (!rc)
		rc = lh_store_commit(r->st, e);
	if (rc) {
		lh_store_rollback(r->st);
		return rc;
	}
	if (!r->o->quiet && n)
		fprintf(stderr, "longhaul: retrying %lld failed item%s (attempts start again; successes are kept)\n",
			(long long)n, n == 1 ? "" : "s");
	else if (!r->o->quiet)
		fprintf(stderr, "longhaul: no failed items to retry\n");
	if (n > 0) {
		struct lh_job_rec j;
		rc = lh_store_job_get(r->st, r->job.id, &j, e);
		if (!rc) {
			lh_job_rec_release(&r->job);
			r->job = j;
		}
	}
	return rc;
}

/* A pipeline spec edited since the job started: its changed steps run
 * again (lh_job_respec). */
static int respec(struct run *r, struct lh_err *e)
{
	const struct lh_run_opts *o = r->o;
	char *json;
	int64_t n = -1;
	int rc;
	if (!o->spec || !o->spec->steps)
		return 0;
	json = lh_spec_to_json(o->spec);
	rc = lh_store_begin(r->st, e);
	if (!rc)
		rc = lh_job_respec(r->st, &r->job, json, &n, e);
	if (!rc)
		rc = lh_store_commit(r->st, e);
	if (rc)
		lh_store_rollback(r->st);
	free(json);
	if (!rc && n >= 0) {
		int64_t id = r->job.id;
		lh_job_rec_release(&r->job);
		rc = lh_store_job_get(r->st, id, &r->job, e);
		if (!o->quiet)
			printf("the spec changed: %lld finished item%s run again, each from its first step whose "
			       "request changed (finished steps are taken from the journal)\n",
			       (long long)n, n == 1 ? "" : "s");
	}
	return rc;
}

static int prepare_job(struct run *r, struct lh_err *e)
{
	const struct lh_run_opts *o = r->o;
	char ref[4200];
	char *sig = source_sig(r);
	int rc;
	job_ref(r, ref, sizeof ref);
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
		} else {
			rc = respec(r, e);
			if (!rc && o->retry_failed)
				rc = retry_failed(r, e);
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
		j.name = o->spec && o->spec->name ? o->spec->name :
			 o->from_stdin ? (char *)"stdin" : (char *)(base ? base + 1 : o->file);
		j.kind = o->spec ? "spec" : "batch";
		j.spec = spec_json ? spec_json : "{}";
		j.source_sig = sig;
		/* The spec's limit is the job's from the start; the row is where
		 * the engine and `status` read it. */
		if (o->spec && o->spec->time_limit > 0)
			j.time_limit = o->spec->time_limit;
		if (o->time_limit > 0)
			j.time_limit = o->time_limit;
		snprintf(j.state, sizeof j.state, "queued");
		rc = lh_ingest_job(r->st, &j, o->spec ? NULL : r->input, o->model == NULL, o->spec, &n, e);
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
	if (r->store_failed && r->store_err.code == LH_ECORRUPT) {
		lh_log_err(&r->store_err);
		fprintf(stderr, "longhaul: error: stopped: a stored result is damaged and was not used; nothing "
				"damaged was written to the outputs; check the whole store with: longhaul verify %s\n",
			o->store_path);
		return;
	}
	if (r->store_failed) {
		lh_log_err(&r->store_err);
		fprintf(stderr, "longhaul: error: stopped: the store could not be written; finished work up to the "
				"last commit is kept; free space or fix the store, then resume with: ");
		print_cmd(stderr, r, "");
		return;
	}
	if (r->exit_code == LH_EXIT_SIGINT || r->exit_code == LH_EXIT_SIGTERM) {
		printf("interrupted: %lld of %lld items finished (%lld failed); nothing finished is lost\n"
		       "resume with: ",
		       (long long)(t->done + t->dead), (long long)t->total, (long long)t->dead);
		print_cmd(stdout, r, "");
		return;
	}
	if (r->exit_code == LH_EXIT_TIMED_OUT) {
		fprintf(stderr, "longhaul: error: %s: %lld of %lld items finished (%lld failed); the job is timed_out "
				"and its results so far are in the output files\n",
			r->stop_msg, (long long)(t->done + t->dead), (long long)t->total, (long long)t->dead);
		if (r->files.output)
			fprintf(stderr, "results: %s\n", o->output_path);
		return;
	}
	if (r->exit_code == LH_EXIT_WAITING) {
		printf("waiting: %lld item%s wait%s for approval; %lld of %lld items finished (%lld failed)\n"
		       "decide with: longhaul approve --store %s KEY... (or --all; --reject to refuse)\n"
		       "then resume with: ",
		       (long long)r->approvals, r->approvals == 1 ? "" : "s", r->approvals == 1 ? "s" : "",
		       (long long)(t->done + t->dead), (long long)t->total, (long long)t->dead, o->store_path);
		print_cmd(stdout, r, "");
		return;
	}
	if (r->exit_code == LH_EXIT_STOPPED) {
		fprintf(stderr, "longhaul: error: %s\nonce fixed, resume with: ", r->stop_msg);
		print_cmd(stderr, r, "");
		return;
	}
	printf("completed: %lld item%s, %lld succeeded, %lld failed, %lld retries, %lld prompt + %lld completion "
	       "tokens, %s\n",
	       (long long)t->total, t->total == 1 ? "" : "s", (long long)t->done, (long long)t->dead, (long long)t->retries,
	       (long long)t->prompt_tokens, (long long)t->completion_tokens, el);
	/* Only files that are there: an output that could not be written was
	 * reported as an error above. */
	if (r->files.output)
		printf("results: %s\n", o->output_path);
	if (r->files.errors)
		printf("failures: %s\n", o->errors_path);
	if (r->reduce_written)
		printf("reduce: %s\n", o->reduce_path);
	if (r->reduce_msg[0])
		printf("%s\n", r->reduce_msg);
	if (t->dead && r->outputs_done) {
		printf("retry the %lld failed item%s with: ", (long long)t->dead, t->dead == 1 ? "" : "s");
		print_cmd(stdout, r, " --retry-failed");
	}
}

static int finish_outputs(struct run *r, struct lh_err *e)
{
	int rc = lh_report_write_outputs(r->st, &r->job, r->o->output_path, r->o->errors_path, &r->files, e);
	if (!rc && r->o->reduce_path)
		rc = lh_report_reduce_write(r->st, r->job.id, r->o->reduce_path, &r->reduce_written, e);
	r->outputs_done = rc == 0;
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
	eo.on_job_idle = on_job_idle;
	eo.on_fatal = on_fatal;
	eo.on_drained = on_drained;
	eo.on_job_waiting = on_job_waiting;
	eo.on_job_reached = on_job_reached;
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
	if (o->spec) {
		jc.model = o->model ? o->model : o->spec->model;
		jc.model_prefix = 1;
		jc.stream = o->spec->stream;
	} else {
		jc.model = o->model;
	}
	jc.concurrency = o->concurrency;
	jc.retry = o->retry;
	jc.wait_for_server = o->wait_for_server;
	jc.time_limit = o->time_limit;
	rc = lh_engine_add_job(r->eng, r->job.id, &jc, e);
	lh_buf_release(&u);
	return rc;
}

/* Checks what can be checked before anything is written or sent: the
 * output and errors files can be created where they are to go (exit 3),
 * and so can a new store (exit 6). */
static int check_paths(const struct lh_run_opts *o, struct lh_err *e)
{
	struct stat sb;
	int rc = lh_file_check_writable(o->output_path, "output file", e);
	if (!rc)
		rc = lh_file_check_writable(o->errors_path, "errors file", e);
	if (!rc && stat(o->store_path, &sb) != 0 && lh_file_check_writable(o->store_path, "store", e) != 0)
		rc = e->code = LH_ESTORE;
	return rc;
}

/* `run -`: standard input is spooled to an unnamed file beside the store
 * and hashed (its hash is the job's identity); the readers then open that
 * file. Only batch files are taken from standard input. */
static int take_stdin(struct run *r, struct lh_err *e)
{
	char *copy, *slash;
	enum lh_input_kind kind;
	int rc;
	if (isatty(STDIN_FILENO))
		return lh_err_set(e, LH_EUSAGE, "run - reads an OpenAI batch file from standard input, which is a "
				  "terminal: pipe or redirect the file (longhaul run - --store S < batch.jsonl)");
	copy = lh_xstrdup(r->o->store_path);
	slash = strrchr(copy, '/');
	if (slash)
		slash[slash == copy ? 1 : 0] = '\0';
	rc = lh_input_spool(STDIN_FILENO, slash ? copy : ".", &r->stdin_fd, r->stdin_hash, e);
	lh_free(copy);
	if (rc)
		return rc;
	snprintf(r->input_buf, sizeof r->input_buf, "/proc/self/fd/%d", r->stdin_fd);
	r->input = r->input_buf;
	rc = lh_input_detect(r->input, &kind, e);
	if (!rc && kind != LH_INPUT_BATCH)
		rc = lh_err_at(e, LH_EINPUT, r->input, 0, NULL,
			       "this looks like %s, not an OpenAI batch file; run - reads batch files only: save it "
			       "to a file and run that file", kind == LH_INPUT_RECORDS ? "a JSONL file of records" :
			       "a job spec");
	return rc;
}

/* Errors about the spooled standard input name it as people know it. */
static void log_err(const struct run *r, struct lh_err *e)
{
	if (r->stdin_fd >= 0 && !strcmp(e->file, r->input_buf))
		snprintf(e->file, sizeof e->file, "<stdin>");
	lh_log_err(e);
	/* Damage is never passed on as output (exit 6); the whole store can
	 * be checked for more of it. */
	if (e->code == LH_ECORRUPT && r->o->store_path)
		fprintf(stderr, "longhaul: hint: `longhaul verify %s` checks every journal row of the store\n",
			r->o->store_path);
}

/* Running again: a job that crashed while running stays running (not a
 * transition, but worth a line in the log); others move to running. */
static int mark_running(struct run *r, struct lh_err *e)
{
	int rc = lh_store_begin(r->st, e);
	if (!rc && !strcmp(r->job.state, "running"))
		rc = lh_store_event_add(r->st, r->job.id, lh_wall(), "job.recovered", NULL, NULL, NULL, e);
	else if (!rc)
		rc = lh_job_transition(r->st, &r->job, LH_JOB_RUNNING, NULL, e);
	if (!rc)
		rc = lh_store_commit(r->st, e);
	if (rc)
		lh_store_rollback(r->st);
	return rc;
}

/* After the loop: the job as the engine left it, a paused state for an
 * unfinished one, the final progress file. */
static void after_loop(struct run *r)
{
	const struct lh_run_opts *o = r->o;
	struct lh_progress_view p;
	struct lh_job_rec j;
	struct lh_err e;
	double run = now_mono() - r->run_started;
	lh_err_clear(&e);
	if (lh_store_job_get(r->st, r->job.id, &j, &e) == 0) {
		lh_job_rec_release(&r->job);
		r->job = j;
		stats_from_rec(r);
	}
	if (!strcmp(r->job.state, "running") && !r->store_failed &&
	    lh_job_transition(r->st, &r->job, LH_JOB_PAUSED, NULL, &e) != 0)
		log_err(r, &e);
	p = r->final_view;
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

int lh_run(const struct lh_run_opts *o)
{
	struct run R, *r = &R;
	struct lh_err e;
	struct lh_store_opts so = { .path = o->store_path, .sync_full = o->sync_full, .create = 1 };
	struct stat sb;
	int remove_store = 0, lockfd = -1, rc;

	memset(r, 0, sizeof *r);
	lh_err_clear(&e);
	r->o = o;
	r->input = o->file;
	r->stdin_fd = -1;
	r->exit_code = LH_EXIT_INTERNAL;

	{
		/* A socket per request in flight: make room now, or say why not. */
		char what[64];
		snprintf(what, sizeof what, "--concurrency %ld", o->concurrency);
		rc = lh_fd_reserve(o->concurrency + LH_FD_BASE, what, NULL, &e);
	}
	if (!rc)
		rc = check_paths(o, &e);
	if (!rc && o->from_stdin)
		rc = take_stdin(r, &e);
	if (rc)
		goto fail;
	remove_store = stat(o->store_path, &sb) != 0;
	rc = lh_store_open(&so, &r->st, &e);
	if (!rc)
		rc = lh_run_lock_store(o->store_path, &lockfd, &e);
	if (!rc)
		rc = prepare_job(r, &e);
	if (rc)
		goto fail;
	remove_store = 0;
	stats_from_rec(r);
	r->job_start_finished = r->last.done + r->last.dead;

	if (lh_job_state_final(lh_job_state_of(r->job.state))) {
		/* Finished before: no requests, no server needed, the same outputs again. */
		r->exit_code = r->last.dead ? LH_EXIT_FAILED_ITEMS : LH_EXIT_OK;
		if (lh_job_state_of(r->job.state) == LH_JOB_TIMED_OUT) {
			/* Its time is spent: it stays as it ended. */
			r->exit_code = LH_EXIT_TIMED_OUT;
			snprintf(r->stop_msg, sizeof r->stop_msg, "the job ran out of its time limit in an earlier run");
		}
		rc = finish_outputs(r, &e);
		if (rc) {
			log_err(r, &e);
			r->exit_code = exit_for(rc);
		} else if (r->exit_code == LH_EXIT_TIMED_OUT) {
			print_summary(r);
			fprintf(stderr, "to run the rest, start over with --restart (results so far are discarded) or "
					"give the items a new job\n");
		} else if (!o->quiet) {
			printf("already finished; outputs rewritten from the store\n");
			print_summary(r);
		}
		goto out;
	}
	rc = mark_running(r, &e);
	if (rc)
		goto fail;

	/* Signals are blocked before the engine starts its commit thread, so
	 * that the thread inherits the mask and they arrive in the loop. */
	r->loop = lh_loop_new(&e);
	if (!r->loop || lh_loop_signal(r->loop, SIGINT, on_signal, r) || lh_loop_signal(r->loop, SIGTERM, on_signal, r)) {
		rc = lh_err_set(&e, LH_EINTERNAL, "could not set up the event loop");
		goto fail;
	}
	signal(SIGPIPE, SIG_IGN);
	rc = start_engine(r, &e);
	if (rc)
		goto fail;
	r->run_started = now_mono();
	r->last_line = r->run_started;
	lh_rate_init(&r->rate_items, 10.0);
	lh_rate_init(&r->rate_tokens, 10.0);
	lh_rate_init(&r->rate_steps, 10.0);
	lh_rate_init(&r->rate_units, 10.0);
	r->t_progress = lh_timer_new(r->loop, on_progress, r);
	lh_timer_start(r->t_progress, 0);

	if (lh_loop_run(r->loop) != 0)
		lh_log(LH_LOG_ERROR, "the event loop failed: %s", strerror(errno));

	refresh_stats(r);
	/* The commit figures outlive the engine: the final progress file keeps them. */
	fill_progress(r, &r->final_view);
	lh_timer_free(r->t_progress);
	r->t_progress = NULL;
	lh_engine_free(r->eng);
	r->eng = NULL;
	if (r->drawn && !o->quiet)
		fputc('\n', stderr);
	after_loop(r);
	if (!r->store_failed) {
		rc = finish_outputs(r, &e);
		if (rc) {
			log_err(r, &e);
			if (r->exit_code == LH_EXIT_OK || r->exit_code == LH_EXIT_FAILED_ITEMS)
				r->exit_code = exit_for(rc);
		}
	}
	if (!o->quiet || r->exit_code != LH_EXIT_OK)
		print_summary(r);
	goto out;

fail:
	log_err(r, &e);
	r->exit_code = exit_for(rc);
out:
	lh_timer_free(r->t_progress);
	if (r->eng)
		lh_engine_free(r->eng);
	if (r->loop)
		lh_loop_free(r->loop);
	lh_job_rec_release(&r->job);
	for (size_t i = 0; i < r->nsteps; i++)
		lh_free(r->step_ids[i]);
	lh_free(r->step_ids);
	lh_free(r->steps_done);
	lh_free(r->step_cost);
	if (r->st)
		lh_store_close(r->st);
	/* A store made by this run for a job that was never created (bad
	 * input, a locked store) goes again: nothing was written. */
	if (remove_store)
		remove_store_files(o->store_path);
	if (lockfd >= 0)
		close(lockfd);
	if (r->stdin_fd >= 0)
		close(r->stdin_fd);
	return r->exit_code;
}
