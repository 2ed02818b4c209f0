/*
 * What the user sees: the progress bar or lines, FILE.progress.json, the
 * output and error files (written from the store, atomically), and the
 * failure report.
 */
#ifndef LH_ENGINE_REPORT_H
#define LH_ENGINE_REPORT_H

#include <stdint.h>
#include <stdio.h>
#include "store/store.h"

struct lh_progress_view {
	const char *state;
	int64_t total, done, dead, retries, in_flight;
	int64_t prompt_tokens, completion_tokens;
	double items_per_sec, tokens_per_sec;
	double elapsed, eta;         /* seconds; eta < 0 = unknown */
	uint64_t commits;
	double items_per_commit, commit_p50, commit_p99; /* seconds */
	/* Pipelines (nsteps > 0): items past each step, items waiting for a
	 * person, the reduce's calls. Borrowed. */
	size_t nsteps;
	const char *const *step_ids;
	const int64_t *steps_done;
	double steps_per_sec;
	int64_t waiting;
	int reducing;
	int64_t reduce_calls, reduce_done;
};

/* Percent finished (done + dead) of total; 100 when total is 0. */
double lh_progress_percent(const struct lh_progress_view *p);
/* One redrawn line ("\r" + erase) for a terminal, colour unless NO_COLOR. */
void lh_report_bar(FILE *out, const struct lh_progress_view *p);
/* One plain line with a newline, for logs. */
void lh_report_line(FILE *out, const struct lh_progress_view *p);
/* The figures as a JSON object (new string). */
char *lh_report_progress_to_json(const char *job_name, const struct lh_progress_view *p);
/* Replaces path atomically with the JSON above; errors are only warned
 * about (progress is advisory; the store is the truth). */
void lh_report_progress_json(const char *path, const char *job_name, const struct lh_progress_view *p);

/* Which files lh_report_write_outputs wrote. */
struct lh_report_files {
	int output;  /* 1: the output file holds this run's results */
	int errors;  /* 1: the errors file was written; 0: nothing failed, and no errors file is left */
};

/* Writes the output file (done items) and the error file (dead items) in
 * input order, each atomically. Batch jobs get the OpenAI batch formats;
 * spec jobs the spec formats (io/output.h). When no item failed, no
 * errors file is written and one left by an earlier run is removed.
 * *files says what was written, so that nobody is told of a file that is
 * not there. */
int lh_report_write_outputs(struct lh_store *st, const struct lh_job_rec *job, const char *out_path,
			    const char *err_path, struct lh_report_files *files, struct lh_err *e) LH_WUR;
/* The daemon's side of a spec's `output:` and `errors:`: writes the files
 * the job's stored spec names (each atomically, as run does, and no errors
 * file when nothing failed), when it names any. *wrote is 1 when a file was
 * written. Batch jobs have none. */
int lh_report_spec_outputs(struct lh_store *st, int64_t id, int *wrote, struct lh_err *e) LH_WUR;
/* Prints the first `max` failed keys with their errors, and how many more. */
int lh_report_failures(struct lh_store *st, int64_t job, FILE *out, int max, struct lh_err *e) LH_WUR;

/* The final text of a pipeline job's reduce: 0 with *text (new, *len
 * bytes), or LH_ENOTFOUND when the job has none (yet). */
int lh_report_reduce_text(struct lh_store *st, int64_t job, char **text, size_t *len, struct lh_err *e) LH_WUR;
/* Writes it atomically to path; *wrote = 0 (and 0 returned) when there is
 * none. */
int lh_report_reduce_write(struct lh_store *st, int64_t job, const char *path, int *wrote, struct lh_err *e) LH_WUR;

#endif
