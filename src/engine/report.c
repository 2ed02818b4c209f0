/*
 * engine layer: progress display, progress file, outputs and the failure
 * report (see report.h).
 */
#include "engine/report.h"
#include "io/output.h"
#include "util/buf.h"
#include "util/file.h"
#include "util/log.h"
#include "util/mem.h"
#include "util/time.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

double lh_progress_percent(const struct lh_progress_view *p)
{
	if (p->total <= 0)
		return 100.0;
	return 100.0 * (double)(p->done + p->dead) / (double)p->total;
}

static void fmt_count(double v, char *out, size_t n)
{
	if (v >= 1e6)
		snprintf(out, n, "%.1fM", v / 1e6);
	else if (v >= 1e4)
		snprintf(out, n, "%.1fk", v / 1e3);
	else
		snprintf(out, n, "%.1f", v);
}

void lh_report_bar(FILE *out, const struct lh_progress_view *p)
{
	static const int width = 24;
	double pct = lh_progress_percent(p);
	int fill = (int)(pct / 100.0 * width + 0.5), color = getenv("NO_COLOR") == NULL;
	char bar[64], eta[32], el[32], ips[32], tps[32];
	for (int i = 0; i < width; i++)
		bar[i] = i < fill ? '#' : '.';
	bar[width] = '\0';
	lh_time_human(p->eta, eta, sizeof eta);
	lh_time_human(p->elapsed, el, sizeof el);
	fmt_count(p->items_per_sec, ips, sizeof ips);
	fmt_count(p->tokens_per_sec, tps, sizeof tps);
	fprintf(out, "\r\033[K%s[%s]%s %lld/%lld %5.1f%% | %s it/s | %s tok/s | ETA %s | retries %lld | failed %s%lld%s | %s",
		color ? "\033[36m" : "", bar, color ? "\033[0m" : "", (long long)(p->done + p->dead),
		(long long)p->total, pct, ips, tps, eta, (long long)p->retries,
		color && p->dead ? "\033[31m" : "", (long long)p->dead, color && p->dead ? "\033[0m" : "", el);
	if (p->nsteps) {
		int64_t sum = 0;
		for (size_t i = 0; i < p->nsteps; i++)
			sum += p->steps_done[i];
		fprintf(out, " | steps %lld/%lld", (long long)sum, (long long)(p->total * (int64_t)p->nsteps));
		if (p->waiting)
			fprintf(out, " | waiting %lld", (long long)p->waiting);
		if (p->reducing)
			fprintf(out, " | reduce %lld/%lld", (long long)p->reduce_done, (long long)p->reduce_calls);
	}
	fflush(out);
}

void lh_report_line(FILE *out, const struct lh_progress_view *p)
{
	char eta[32], el[32];
	lh_time_human(p->eta, eta, sizeof eta);
	lh_time_human(p->elapsed, el, sizeof el);
	fprintf(out, "progress: %lld/%lld (%.1f%%) %.1f items/s %.1f tokens/s eta %s retries %lld failed %lld elapsed %s\n",
		(long long)(p->done + p->dead), (long long)p->total, lh_progress_percent(p), p->items_per_sec,
		p->tokens_per_sec, eta, (long long)p->retries, (long long)p->dead, el);
	if (p->nsteps) {
		fprintf(out, "  steps:");
		for (size_t i = 0; i < p->nsteps; i++)
			fprintf(out, " %s %lld/%lld", p->step_ids[i], (long long)p->steps_done[i], (long long)p->total);
		if (p->waiting)
			fprintf(out, "; waiting for approval %lld", (long long)p->waiting);
		if (p->reducing)
			fprintf(out, "; reduce %lld/%lld calls", (long long)p->reduce_done, (long long)p->reduce_calls);
		fputc('\n', out);
	}
	fflush(out);
}

char *lh_report_progress_to_json(const char *job_name, const struct lh_progress_view *p)
{
	char now[40];
	json_t *o;
	char *s;
	lh_time_iso(lh_wall(), now, sizeof now);
	o = json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:f, s:f, s:I, s:I, s:f, s:s}",
		      "job", job_name ? job_name : "", "state", p->state ? p->state : "running", "total",
		      (json_int_t)p->total, "done", (json_int_t)(p->done + p->dead), "succeeded", (json_int_t)p->done,
		      "failed", (json_int_t)p->dead, "pending", (json_int_t)(p->total - p->done - p->dead),
		      "in_flight", (json_int_t)p->in_flight, "retries", (json_int_t)p->retries, "percent",
		      lh_progress_percent(p), "items_per_sec", p->items_per_sec, "output_tokens_per_sec",
		      p->tokens_per_sec, "prompt_tokens", (json_int_t)p->prompt_tokens, "completion_tokens",
		      (json_int_t)p->completion_tokens, "elapsed_sec", p->elapsed, "updated_at", now);
	if (!o)
		return lh_xstrdup("{}");
	json_object_set_new(o, "eta_sec", p->eta >= 0 ? json_real(p->eta) : json_null());
	if (p->nsteps) {
		json_t *st = json_object();
		for (size_t i = 0; i < p->nsteps; i++)
			json_object_set_new(st, p->step_ids[i], json_integer((json_int_t)p->steps_done[i]));
		json_object_set_new(o, "steps", st);
		json_object_set_new(o, "steps_per_sec", json_real(p->steps_per_sec));
		json_object_set_new(o, "waiting", json_integer((json_int_t)p->waiting));
		json_object_set_new(o, "reduce", p->reduce_calls ? json_pack("{s:b,s:I,s:I}", "running", p->reducing,
									  "calls", (json_int_t)p->reduce_calls, "done",
									  (json_int_t)p->reduce_done) : json_null());
	}
	json_object_set_new(o, "store", json_pack("{s:I, s:f, s:f, s:f}", "commits", (json_int_t)p->commits,
						  "items_per_commit", p->items_per_commit, "commit_p50_ms",
						  p->commit_p50 * 1000, "commit_p99_ms", p->commit_p99 * 1000));
	s = json_dumps(o, JSON_INDENT(2));
	json_decref(o);
	return s ? s : lh_xstrdup("{}");
}

void lh_report_progress_json(const char *path, const char *job_name, const struct lh_progress_view *p)
{
	char *s = lh_report_progress_to_json(job_name, p), tmp[4200];
	FILE *f;
	if (!path) {
		free(s);
		return;
	}
	/* Atomic (rename) but not fsynced: progress is advisory, and an fsync a
	 * second would cost more than it is worth. */
	snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
	f = fopen(tmp, "w");
	if (!f || fputs(s, f) < 0 || fputc('\n', f) < 0 || fclose(f) != 0 || rename(tmp, path) != 0) {
		static int warned;
		if (!warned++)
			lh_warn("could not write %s: %s", path, strerror(errno));
		unlink(tmp);
	}
	free(s);
}

struct writer {
	FILE *fp;
	int batch;
	int ok; /* writing done items */
	struct lh_buf line;
	int werr;
	int64_t n; /* lines written */
};

static int write_item(const struct lh_item_view *v, void *arg)
{
	struct writer *w = arg;
	int rc;
	lh_buf_clear(&w->line);
	if (w->batch)
		rc = w->ok ? lh_out_batch_ok(v, &w->line) : lh_out_batch_err(v, &w->line);
	else
		rc = w->ok ? lh_out_spec_ok(v, &w->line) : lh_out_spec_err(v, &w->line);
	if (rc)
		return rc;
	if (fwrite(w->line.data, 1, w->line.len, w->fp) != w->line.len) {
		w->werr = errno;
		return LH_EIO;
	}
	w->n++;
	return 0;
}

/* Writes one file of the job's items (done or dead) atomically. An
 * errors file without a line is not left behind (nor an old one from an
 * earlier run): no file means nothing failed. *written is set when the
 * file now holds this run's lines. */
static int write_one(struct lh_store *st, const struct lh_job_rec *job, const char *path, int ok, int *written,
		     struct lh_err *e)
{
	struct lh_afile f;
	struct writer w;
	int rc = lh_afile_open(&f, path, e);
	*written = 0;
	if (rc)
		return rc;
	memset(&w, 0, sizeof w);
	w.fp = f.fp;
	w.batch = !strcmp(job->kind, "batch");
	w.ok = ok;
	lh_buf_init(&w.line, 0);
	rc = lh_store_items_each(st, job->id, ok ? 1u << LH_ITEM_DONE : 1u << LH_ITEM_DEAD, write_item, &w, e);
	lh_buf_release(&w.line);
	if (rc) {
		lh_afile_abort(&f);
		if (w.werr)
			return lh_err_at(e, w.werr == ENOSPC ? LH_EFULL : LH_EIO, path, 0, NULL, "could not write: %s",
					 strerror(w.werr));
		return rc;
	}
	if (!ok && w.n == 0) {
		lh_afile_abort(&f);
		if (unlink(path) != 0 && errno != ENOENT)
			return lh_err_at(e, LH_EIO, path, 0, NULL, "could not remove the old errors file: %s",
					 strerror(errno));
		return 0;
	}
	rc = lh_afile_commit(&f, e);
	*written = rc == 0;
	return rc;
}

int lh_report_write_outputs(struct lh_store *st, const struct lh_job_rec *job, const char *out_path,
			    const char *err_path, struct lh_report_files *files, struct lh_err *e)
{
	int rc;
	memset(files, 0, sizeof *files);
	rc = write_one(st, job, out_path, 1, &files->output, e);
	if (!rc)
		rc = write_one(st, job, err_path, 0, &files->errors, e);
	return rc;
}

struct failures {
	FILE *out;
	int max, shown;
	int64_t more;
};

static int show_failure(const struct lh_item_view *v, void *arg)
{
	struct failures *f = arg;
	if (f->shown < f->max) {
		char code[128], msg[512];
		lh_out_failure(v->last_error, code, sizeof code, msg, sizeof msg);
		if (v->last_status > 0)
			fprintf(f->out, "  %s: HTTP %d %s: %s (after %d attempt%s)\n", v->key, v->last_status, code, msg,
				v->attempts, v->attempts == 1 ? "" : "s");
		else
			fprintf(f->out, "  %s: %s: %s (after %d attempt%s)\n", v->key, code, msg, v->attempts,
				v->attempts == 1 ? "" : "s");
		f->shown++;
	} else {
		f->more++;
	}
	return 0;
}

int lh_report_failures(struct lh_store *st, int64_t job, FILE *out, int max, struct lh_err *e)
{
	struct failures f = { .out = out, .max = max };
	int rc;
	fprintf(out, "failed items:\n");
	rc = lh_store_items_each(st, job, 1u << LH_ITEM_DEAD, show_failure, &f, e);
	if (!rc && f.more)
		fprintf(out, "  ... and %lld more (see the errors file)\n", (long long)f.more);
	return rc;
}

int lh_report_spec_outputs(struct lh_store *st, int64_t id, int *wrote, struct lh_err *e)
{
	struct lh_job_rec j;
	json_t *s = NULL;
	const char *out, *err;
	int w_out = 0, w_err = 0, rc = lh_store_job_get(st, id, &j, e);
	*wrote = 0;
	if (rc)
		return rc;
	if (j.kind && !strcmp(j.kind, "spec"))
		s = json_loads(j.spec ? j.spec : "{}", 0, NULL);
	out = json_string_value(json_object_get(s, "output"));
	err = json_string_value(json_object_get(s, "errors"));
	if (out)
		rc = write_one(st, &j, out, 1, &w_out, e);
	if (!rc && err)
		rc = write_one(st, &j, err, 0, &w_err, e);
	if (!rc && json_is_string(json_object_get(json_object_get(s, "reduce"), "output"))) {
		int w_red = 0;
		rc = lh_report_reduce_write(st, id, json_string_value(json_object_get(json_object_get(s, "reduce"),
										       "output")), &w_red, e);
		w_out |= w_red;
	}
	if (!rc)
		*wrote = w_out || w_err;
	json_decref(s);
	lh_job_rec_release(&j);
	return rc;
}

struct final_text {
	char *text;
	size_t len;
};

static int take_final(const struct lh_step_rec *r, void *arg)
{
	struct final_text *f = arg;
	if (r->step != 0)
		return 0;
	lh_free(f->text);
	f->text = lh_xstrndup(r->response ? r->response : "", r->response_len);
	f->len = r->response_len;
	return 0;
}

int lh_report_reduce_text(struct lh_store *st, int64_t job, char **text, size_t *len, struct lh_err *e)
{
	struct final_text f = { NULL, 0 };
	int rc = lh_store_steps_each(st, job, -1 - (int64_t)LH_REDUCE_FINAL, take_final, &f, e);
	*text = NULL;
	*len = 0;
	if (rc) {
		lh_free(f.text);
		return rc;
	}
	if (!f.text)
		return lh_err_set(e, LH_ENOTFOUND, "job %lld has no reduce output (yet)", (long long)job);
	*text = f.text;
	*len = f.len;
	return 0;
}

int lh_report_reduce_write(struct lh_store *st, int64_t job, const char *path, int *wrote, struct lh_err *e)
{
	char *text;
	size_t len;
	int rc = lh_report_reduce_text(st, job, &text, &len, e);
	*wrote = 0;
	if (rc == LH_ENOTFOUND) {
		lh_err_clear(e);
		return 0;
	}
	if (rc)
		return rc;
	rc = lh_write_file_atomic(path, text, len, e);
	lh_free(text);
	*wrote = rc == 0;
	return rc;
}
