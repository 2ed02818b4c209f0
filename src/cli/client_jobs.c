/*
 * cli layer: the client commands that submit, list, show and steer jobs:
 * submit, ls, status, pause, resume, cancel, retry (docs/cli.md). Each
 * checks its usage, makes one or a few requests through client.c, and
 * prints the answer as text or, with --json, as the API's JSON.
 */
#include "cli/cli.h"
#include "cli/client.h"
#include "engine/jobstate.h"
#include "engine/run.h"
#include "io/input.h"
#include "util/log.h"
#include "util/mem.h"
#include "util/time.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- submit ---- */

static void submit_usage(FILE *out)
{
	fprintf(out,
		"usage: longhaul submit FILE [options]\n"
		"\n"
		"Sends FILE to the daemon as a new job: an OpenAI Batch API file (told by\n"
		"content, streamed from disk), or a job spec (.yaml/.yml as YAML, else JSON).\n"
		"Prints the job's id and state.\n"
		"\n"
		"options:\n"
		"  --name N          the job's name\n"
		"  --priority P      an integer; higher runs first (default 0)\n"
		"  --time-limit S    seconds the job may run before it times out\n"
		"  --model M         model for every line of a batch file\n"
		"  --wait            follow the job until it ends; exit with its outcome\n"
		"  --json            print the API's job JSON (with --wait, the final job)\n"
		"  --url URL         the daemon (default $LONGHAUL_URL, else " CLI_DEFAULT_URL ")\n"
		"\n"
		"The token, when the daemon needs one, is read from $LONGHAUL_TOKEN.\n"
		"\n"
		"exit codes: 0 submitted (with --wait: completed, no item failed), 1 error\n"
		"(with --wait: the job failed, was cancelled or timed out), 2 usage, 3 the\n"
		"daemon refused the file, 4 (--wait) completed with failed items, 69 no\n"
		"daemon, 77 token missing or wrong, 130/143 interrupted\n");
}

static const char *spec_type(const char *path)
{
	const char *dot = strrchr(path, '.');
	if (dot && (!strcasecmp(dot, ".yaml") || !strcasecmp(dot, ".yml")))
		return "application/yaml";
	return "application/json";
}

/* A pipeline submitted again under its name is the same job, edited. */
static void print_resubmitted(json_t *job)
{
	json_t *rs = json_object_get(job, "resubmitted");
	if (!json_is_object(rs))
		return;
	if (json_is_true(json_object_get(rs, "changed")))
		printf("the spec changed: %lld finished item%s run again from their first step whose request "
		       "changed (the steps before it come from the journal)\n",
		       (long long)cli_jnum(rs, "reopened", 0), cli_jnum(rs, "reopened", 0) == 1 ? "" : "s");
	else
		printf("the same spec as job %lld's: nothing to run again (give it another name to run it as a "
		       "new job)\n", (long long)cli_jnum(job, "id", 0));
}

int cli_submit(int argc, char **argv)
{
	const char *name = NULL, *prio = NULL, *tlimit = NULL, *model = NULL;
	int wait = 0, rc;
	struct cli_opt opts[] = {
		{ "--name", &name, NULL },   { "--priority", &prio, NULL }, { "--time-limit", &tlimit, NULL },
		{ "--model", &model, NULL }, { "--wait", NULL, &wait },     { NULL, NULL, NULL },
	};
	struct cli_args a;
	struct cli_ctx x;
	struct lh_buf path;
	struct lh_http_resp r;
	struct lh_http_req rq = { .method = "POST", .idle_timeout = CLI_CALL_TIMEOUT };
	struct lh_err e;
	struct stat st;
	enum lh_input_kind kind;
	json_t *job = NULL;
	long long p = 0;
	double tl = 0;
	char sep = '?';
	FILE *fp;

	rc = cli_parse(argc, argv, opts, submit_usage, &a);
	if (rc)
		return rc > 0 ? LH_EXIT_OK : LH_EXIT_USAGE;
	if (a.npos != 1) {
		fprintf(stderr, "longhaul: error: submit takes one FILE (see longhaul submit --help)\n");
		return LH_EXIT_USAGE;
	}
	if (prio && cli_parse_int("submit", "--priority", prio, -1000000000LL, 1000000000LL, &p))
		return LH_EXIT_USAGE;
	if (tlimit) {
		char *end;
		errno = 0;
		tl = strtod(tlimit, &end);
		if (errno || end == tlimit || *end || !isfinite(tl) || tl <= 0) {
			fprintf(stderr, "longhaul: error: submit: --time-limit: expected a number of seconds > 0, got \"%s\"\n",
				tlimit);
			return LH_EXIT_USAGE;
		}
	}
	lh_err_clear(&e);
	if (stat(a.pos[0], &st) == 0 && S_ISDIR(st.st_mode)) {
		fprintf(stderr, "longhaul: error: %s is a directory: submit a batch file or a job spec (a spec's "
				"input may be a directory of files)\n", a.pos[0]);
		return LH_EXIT_INPUT;
	}
	if (lh_input_detect(a.pos[0], &kind, &e) != 0) {
		lh_log_err(&e);
		return LH_EXIT_INPUT;
	}
	if (kind == LH_INPUT_RECORDS) {
		fprintf(stderr,
			"longhaul: error: %s looks like a JSONL file of records, not an OpenAI batch file or a job "
			"spec.\nSubmit a job spec that names it as its input, say job.yaml:\n"
			"  input: %s\n  prompt: \"Summarise: {{text}}\"\n  model: MODEL\n"
			"then: longhaul submit job.yaml\n", a.pos[0], a.pos[0]);
		return LH_EXIT_INPUT;
	}
	fp = fopen(a.pos[0], "rb");
	if (!fp || fstat(fileno(fp), &st) != 0 || !S_ISREG(st.st_mode)) {
		fprintf(stderr, "longhaul: error: could not read %s: %s\n", a.pos[0],
			fp ? "not a regular file" : strerror(errno));
		if (fp)
			fclose(fp);
		return LH_EXIT_INPUT;
	}

	lh_buf_init(&path, 0);
	rc = lh_buf_puts(&path, "/v1/jobs");
	if (name) {
		rc |= lh_buf_printf(&path, "%cname=", sep);
		rc |= cli_escape(&path, name);
		sep = '&';
	}
	if (prio) {
		rc |= lh_buf_printf(&path, "%cpriority=%lld", sep, p);
		sep = '&';
	}
	if (tlimit) {
		rc |= lh_buf_printf(&path, "%ctime_limit=%s", sep, tlimit);
		sep = '&';
	}
	if (model) {
		rc |= lh_buf_printf(&path, "%cmodel=", sep);
		rc |= cli_escape(&path, model);
		sep = '&';
	}
	if (kind != LH_INPUT_BATCH) {
		/* The spec's relative paths mean "next to the spec file". */
		char *abs = realpath(a.pos[0], NULL), *slash = abs ? strrchr(abs, '/') : NULL;
		if (slash) {
			*slash = '\0';
			rc |= lh_buf_printf(&path, "%cbase_dir=", sep);
			rc |= cli_escape(&path, abs[0] ? abs : "/");
		}
		free(abs);
	}
	if (rc) {
		fclose(fp);
		lh_buf_release(&path);
		return LH_EXIT_INTERNAL;
	}

	rc = cli_connect(&x, "submit", &a);
	if (rc) {
		fclose(fp);
		lh_buf_release(&path);
		return rc;
	}
	x.input = a.pos[0];
	lh_http_resp_init(&r);
	rq.path = path.data;
	rq.content_type = kind == LH_INPUT_BATCH ? "application/jsonl" : spec_type(a.pos[0]);
	rq.body_fp = fp;
	rq.body_size = (int64_t)st.st_size;
	if (lh_httpc_request(x.http, &rq, &r, NULL) != 0 || r.status < 200 || r.status >= 300) {
		rc = cli_fail(&x, &r, NULL);
		goto out;
	}
	job = json_loadb(r.body.data ? r.body.data : "", r.body.len, 0, NULL);
	if (!json_is_object(job)) {
		fprintf(stderr, "longhaul: error: the daemon's answer to submit is not a job\n");
		rc = LH_EXIT_INTERNAL;
		goto out;
	}
	if (!wait) {
		if (x.json)
			cli_print_body(&r.body);
		else
			printf("submitted job %lld (%s)\n", (long long)cli_jnum(job, "id", 0),
			       cli_jstr(job, "state") ? cli_jstr(job, "state") : "?");
		if (!x.json)
			print_resubmitted(job);
	} else {
		struct cli_follow_opts fo = { .progress_out = stderr, .stop_on_final = 1 };
		char id[32];
		snprintf(id, sizeof id, "%lld", (long long)cli_jnum(job, "id", 0));
		fprintf(x.json ? stderr : stdout, "submitted job %s (%s)\n", id,
			cli_jstr(job, "state") ? cli_jstr(job, "state") : "?");
		if (!x.json)
			print_resubmitted(job);
		fflush(stdout);
		fo.progress = isatty(STDERR_FILENO) ? CLI_PROGRESS_BAR : CLI_PROGRESS_LINES;
		json_decref(job);
		job = NULL;
		fo.final_job = &job;
		rc = cli_follow(&x, id, &fo);
		if (cli_interrupted()) {
			fprintf(stderr, "longhaul: stopped waiting; job %s goes on in the daemon (longhaul watch %s)\n",
				id, id);
		} else if (job && cli_job_stopped(job)) {
			if (x.json) {
				char *s = json_dumps(job, JSON_COMPACT);
				printf("%s\n", s ? s : "{}");
				free(s);
			}
			cli_job_stop_report(job);
		} else if (job && cli_job_final(job)) {
			if (x.json) {
				char *s = json_dumps(job, JSON_COMPACT);
				printf("%s\n", s ? s : "{}");
				free(s);
			} else {
				cli_job_summary(stdout, job);
			}
		}
	}
out:
	json_decref(job);
	fclose(fp);
	lh_http_resp_release(&r);
	lh_buf_release(&path);
	cli_close(&x);
	return rc;
}

/* ---- ls ---- */

static void ls_usage(FILE *out)
{
	fprintf(out,
		"usage: longhaul ls [options]\n"
		"\n"
		"Lists the daemon's jobs, newest first: id, name, state, priority, progress,\n"
		"done/total, items/s and ETA.\n"
		"\n"
		"options:\n"
		"  --state S    only jobs in state S (queued, running, paused, completed,\n"
		"               failed, cancelled, timed_out)\n"
		"  --limit N    at most N jobs (default 100)\n"
		"  --json       print the API's JSON: {\"jobs\": [...], \"next_cursor\": ...}\n"
		"  --url URL    the daemon (default $LONGHAUL_URL, else " CLI_DEFAULT_URL ")\n"
		"\n"
		"exit codes: 0 listed, 1 error, 2 usage, 69 no daemon, 77 token missing or wrong\n");
}

static void print_jobs_table(json_t *jobs)
{
	size_t i;
	json_t *j;
	if (json_array_size(jobs) == 0) {
		printf("no jobs\n");
		return;
	}
	printf("%6s  %-24s  %-19s  %4s  %8s  %15s  %8s  %8s\n", "ID", "NAME", "STATE", "PRI", "PROGRESS",
	       "DONE/TOTAL", "ITEMS/S", "ETA");
	json_array_foreach (jobs, i, j) {
		struct lh_progress_view v;
		const char *name = cli_jstr(j, "name"), *why = cli_jstr(j, "pause_reason");
		char dt[48], eta[32], state[40];
		cli_job_view(j, &v);
		snprintf(state, sizeof state, "%s%s%s%s", v.state ? v.state : "?", why ? " (" : "", why ? why : "",
			 why ? ")" : "");
		snprintf(dt, sizeof dt, "%lld/%lld", (long long)(v.done + v.dead), (long long)v.total);
		if (cli_job_final(j))
			snprintf(eta, sizeof eta, "-");
		else
			lh_time_human(v.eta, eta, sizeof eta);
		printf("%6lld  %-24.24s  %-19s  %4lld  %7.1f%%  %15s  %8.1f  %8s\n", (long long)cli_jnum(j, "id", 0),
		       name && *name ? name : "-", state, (long long)cli_jnum(j, "priority", 0),
		       cli_jnum(j, "percent", lh_progress_percent(&v)), dt, v.items_per_sec, eta);
	}
}

int cli_ls(int argc, char **argv)
{
	const char *state = NULL, *limit_s = NULL, *cursor = NULL;
	struct cli_opt opts[] = { { "--state", &state, NULL }, { "--limit", &limit_s, NULL }, { NULL, NULL, NULL } };
	struct cli_args a;
	struct cli_ctx x;
	long long limit = 100;
	json_t *all = json_array(), *next = json_null(), *page = NULL;
	char *cur = NULL;
	int rc;

	rc = cli_parse(argc, argv, opts, ls_usage, &a);
	if (rc) {
		json_decref(all);
		return rc > 0 ? LH_EXIT_OK : LH_EXIT_USAGE;
	}
	if (a.npos) {
		fprintf(stderr, "longhaul: error: ls takes no arguments, got \"%s\" (see longhaul ls --help)\n", a.pos[0]);
		json_decref(all);
		return LH_EXIT_USAGE;
	}
	if (limit_s && cli_parse_int("ls", "--limit", limit_s, 1, 1000000, &limit)) {
		json_decref(all);
		return LH_EXIT_USAGE;
	}
	if (state && lh_job_state_of(state) == LH_JOB_UNKNOWN) {
		fprintf(stderr, "longhaul: error: ls: --state: expected one of queued, running, paused, completed, "
				"failed, cancelled, timed_out, got \"%s\"\n", state);
		json_decref(all);
		return LH_EXIT_USAGE;
	}
	rc = cli_connect(&x, "ls", &a);
	if (rc) {
		json_decref(all);
		return rc;
	}
	while ((long long)json_array_size(all) < limit) {
		struct lh_buf path;
		long long want = limit - (long long)json_array_size(all);
		json_t *jobs;
		lh_buf_init(&path, 0);
		rc = lh_buf_printf(&path, "/v1/jobs?limit=%lld", want > 1000 ? 1000 : want);
		if (state)
			rc |= lh_buf_printf(&path, "&state=%s", state);
		if (cursor) {
			rc |= lh_buf_puts(&path, "&cursor=");
			rc |= cli_escape(&path, cursor);
		}
		if (!rc)
			rc = cli_call(&x, "GET", path.data, NULL, NULL, &page, NULL);
		lh_buf_release(&path);
		if (rc)
			goto out;
		jobs = json_object_get(page, "jobs");
		if (!json_is_array(jobs)) {
			fprintf(stderr, "longhaul: error: the daemon's job list has no \"jobs\" array\n");
			rc = LH_EXIT_INTERNAL;
			goto out;
		}
		json_array_extend(all, jobs);
		json_decref(next);
		next = json_incref(json_object_get(page, "next_cursor"));
		if (!next)
			next = json_null();
		json_decref(page);
		page = NULL;
		if (!json_is_string(next) || json_array_size(jobs) == 0)
			break;
		lh_free(cur);
		cur = lh_xstrdup(json_string_value(next));
		cursor = cur;
	}
	if (x.json) {
		json_t *o = json_pack("{s:O, s:O}", "jobs", all, "next_cursor", next);
		char *s = o ? json_dumps(o, JSON_INDENT(2)) : NULL;
		printf("%s\n", s ? s : "{}");
		free(s);
		json_decref(o);
	} else {
		print_jobs_table(all);
		if (json_is_string(next))
			printf("(more jobs: use --limit)\n");
	}
out:
	lh_free(cur);
	json_decref(page);
	json_decref(next);
	json_decref(all);
	cli_close(&x);
	return rc;
}

/* ---- status ---- */

static void status_usage(FILE *out)
{
	fprintf(out,
		"usage: longhaul status ID [--json] [--url URL]\n"
		"\n"
		"Shows job ID: state, progress, rates, ETA, token usage, times, last error.\n"
		"With --json, the API's job JSON.\n"
		"\n"
		"exit codes: 0 shown, 1 error or no such job, 2 usage, 69 no daemon,\n"
		"77 token missing or wrong\n");
}

static void print_time_row(const char *label, const char *iso)
{
	printf("  %-11s %s\n", label, iso ? iso : "-");
}

static void print_job_block(json_t *j)
{
	struct lh_progress_view v;
	const char *name = cli_jstr(j, "name"), *why = cli_jstr(j, "pause_reason"), *waiting = cli_jstr(j, "waiting");
	char *err = cli_job_error(j);
	double created = cli_parse_time(cli_jstr(j, "created_at"));
	char eta[32], el[32], age[32];
	double tl = cli_jnum(j, "time_limit_sec", -1);
	cli_job_view(j, &v);
	lh_time_human(v.eta, eta, sizeof eta);
	lh_time_human(v.elapsed, el, sizeof el);
	printf("job %lld", (long long)cli_jnum(j, "id", 0));
	if (name && *name)
		printf(" \"%s\"", name);
	printf(" (%s)\n", cli_jstr(j, "kind") ? cli_jstr(j, "kind") : "?");
	printf("  %-11s %s%s%s%s\n", "state", v.state ? v.state : "?", why ? " (" : "", why ? why : "", why ? ")" : "");
	if (waiting)
		printf("  %-11s %s\n", "waiting", waiting);
	printf("  %-11s %lld\n", "priority", (long long)cli_jnum(j, "priority", 0));
	printf("  %-11s %.1f%%, %lld/%lld done\n", "progress", cli_jnum(j, "percent", lh_progress_percent(&v)),
	       (long long)(v.done + v.dead), (long long)v.total);
	printf("  %-11s %lld succeeded, %lld failed, %lld running, %lld retrying, %lld pending", "items",
	       (long long)v.done, (long long)v.dead, (long long)v.in_flight, (long long)v.retries,
	       (long long)cli_jcount(j, "pending"));
	/* Only pipelines with an approve step have items waiting for a person. */
	if (cli_jcount(j, "waiting") > 0)
		printf(", %lld waiting for approval", (long long)cli_jcount(j, "waiting"));
	printf("\n");
	/* A pipeline: items past each step. */
	if (json_array_size(json_object_get(j, "steps"))) {
		size_t i;
		json_t *st;
		printf("  %-11s", "steps");
		json_array_foreach(json_object_get(j, "steps"), i, st)
			printf("%s %s %lld/%lld", i ? "," : "", cli_jstr(st, "id") ? cli_jstr(st, "id") : "?",
			       (long long)cli_jnum(st, "done", 0), (long long)v.total);
		printf("\n");
	}
	if (json_is_object(json_object_get(j, "reduce")))
		printf("  %-11s %s\n", "reduce",
		       json_is_true(json_object_get(json_object_get(j, "reduce"), "done")) ?
			       "done (longhaul results ID --reduce)" :
			       "after every item has ended");
	printf("  %-11s %.1f items/s, %.1f tokens/s\n", "rate", v.items_per_sec, v.tokens_per_sec);
	printf("  %-11s %s\n", "eta", cli_job_final(j) ? "-" : eta);
	printf("  %-11s %lld prompt, %lld completion\n", "tokens", (long long)v.prompt_tokens,
	       (long long)v.completion_tokens);
	print_time_row("created", cli_jstr(j, "created_at"));
	print_time_row("started", cli_jstr(j, "started_at"));
	print_time_row("finished", cli_jstr(j, "finished_at"));
	printf("  %-11s %s\n", "elapsed", cli_jstr(j, "started_at") ? el : "-");
	lh_time_human(created > 0 ? fmax(0, lh_wall() - created) : 0, age, sizeof age);
	printf("  %-11s %s\n", "age", created > 0 ? age : "-");
	if (tl > 0)
		printf("  %-11s %gs\n", "time limit", tl);
	else
		printf("  %-11s none\n", "time limit");
	printf("  %-11s %s\n", "last error", err && *err ? err : "-");
	if (cli_job_stopped(j))
		printf("  %-11s fix the cause (longhaul set %lld --model M --base-url URL ...), then longhaul resume %lld\n",
		       "next", (long long)cli_jnum(j, "id", 0), (long long)cli_jnum(j, "id", 0));
	lh_free(err);
}

int cli_status(int argc, char **argv)
{
	struct cli_args a;
	struct cli_ctx x;
	struct lh_http_resp r;
	char path[64];
	json_t *job = NULL;
	int rc = cli_parse(argc, argv, NULL, status_usage, &a);
	if (rc)
		return rc > 0 ? LH_EXIT_OK : LH_EXIT_USAGE;
	if (a.npos != 1) {
		fprintf(stderr, "longhaul: error: status takes one job ID (see longhaul status --help)\n");
		return LH_EXIT_USAGE;
	}
	if (cli_check_id("status", a.pos[0]))
		return LH_EXIT_USAGE;
	rc = cli_connect_job(&x, "status", &a);
	if (rc)
		return rc;
	lh_http_resp_init(&r);
	snprintf(path, sizeof path, "/v1/jobs/%s", a.pos[0]);
	rc = cli_call(&x, "GET", path, NULL, a.pos[0], &job, &r);
	if (!rc) {
		if (x.json)
			cli_print_body(&r.body);
		else
			print_job_block(job);
	}
	json_decref(job);
	lh_http_resp_release(&r);
	cli_close(&x);
	return rc;
}

/* ---- pause, resume, cancel ---- */

static void pause_usage(FILE *out)
{
	fprintf(out,
		"usage: longhaul pause ID [--now] [--json] [--url URL]\n"
		"\n"
		"Pauses job ID (queued or running): no new requests are sent; requests in\n"
		"flight finish, or with --now are aborted and their items go back to pending.\n"
		"Prints the new state; with --json, the API's job JSON.\n"
		"\n"
		"exit codes: 0 paused, 1 error, no such job, or the job cannot be paused (it\n"
		"has ended), 2 usage, 69 no daemon, 77 token missing or wrong\n");
}

static void resume_usage(FILE *out)
{
	fprintf(out,
		"usage: longhaul resume ID [--json] [--url URL]\n"
		"\n"
		"Resumes a paused job ID (running again, or queued when it never started).\n"
		"Prints the new state; with --json, the API's job JSON.\n"
		"\n"
		"exit codes: 0 resumed, 1 error, no such job, or the job is not paused,\n"
		"2 usage, 69 no daemon, 77 token missing or wrong\n");
}

static void cancel_usage(FILE *out)
{
	fprintf(out,
		"usage: longhaul cancel ID [--json] [--url URL]\n"
		"\n"
		"Cancels job ID (queued, running or paused): requests in flight are aborted;\n"
		"finished results are kept. Prints the new state; with --json, the API's job JSON.\n"
		"\n"
		"exit codes: 0 cancelled, 1 error, no such job, or the job has already ended,\n"
		"2 usage, 69 no daemon, 77 token missing or wrong\n");
}

static int state_cmd(int argc, char **argv, const char *verb, void (*usage)(FILE *))
{
	int now = 0, rc;
	struct cli_opt pause_opts[] = { { "--now", NULL, &now }, { NULL, NULL, NULL } };
	struct cli_args a;
	struct cli_ctx x;
	struct lh_http_resp r;
	char path[96];
	json_t *job = NULL;
	rc = cli_parse(argc, argv, !strcmp(verb, "pause") ? pause_opts : NULL, usage, &a);
	if (rc)
		return rc > 0 ? LH_EXIT_OK : LH_EXIT_USAGE;
	if (a.npos != 1) {
		fprintf(stderr, "longhaul: error: %s takes one job ID (see longhaul %s --help)\n", verb, verb);
		return LH_EXIT_USAGE;
	}
	if (cli_check_id(verb, a.pos[0]))
		return LH_EXIT_USAGE;
	rc = cli_connect_job(&x, verb, &a);
	if (rc)
		return rc;
	lh_http_resp_init(&r);
	snprintf(path, sizeof path, "/v1/jobs/%s/%s%s", a.pos[0], verb, now ? "?now=1" : "");
	rc = cli_call(&x, "POST", path, NULL, a.pos[0], &job, &r);
	if (!rc) {
		if (x.json)
			cli_print_body(&r.body);
		else
			printf("job %s %s\n", a.pos[0], cli_jstr(job, "state") ? cli_jstr(job, "state") : "?");
	}
	json_decref(job);
	lh_http_resp_release(&r);
	cli_close(&x);
	return rc;
}

int cli_pause(int argc, char **argv)
{
	return state_cmd(argc, argv, "pause", pause_usage);
}

int cli_resume(int argc, char **argv)
{
	return state_cmd(argc, argv, "resume", resume_usage);
}

int cli_cancel(int argc, char **argv)
{
	return state_cmd(argc, argv, "cancel", cancel_usage);
}

/* ---- retry ---- */

static void retry_usage(FILE *out)
{
	fprintf(out,
		"usage: longhaul retry ID [KEY...] [--json] [--url URL]\n"
		"\n"
		"Sends the failed items of job ID back to pending: those with the given keys\n"
		"(custom_id or record key), or every failed item. A completed or failed job\n"
		"re-opens. Prints how many items went back; with --json, the API's JSON\n"
		"{\"retried\": N, \"job\": {...}}.\n"
		"\n"
		"exit codes: 0 done (even when no item was failed), 1 error, no such job or\n"
		"key, 2 usage, 69 no daemon, 77 token missing or wrong\n");
}

int cli_retry(int argc, char **argv)
{
	struct cli_args a;
	struct cli_ctx x;
	struct lh_http_resp r;
	char path[96], *body = NULL;
	json_t *ans = NULL, *job;
	long long n;
	int rc = cli_parse(argc, argv, NULL, retry_usage, &a);
	if (rc)
		return rc > 0 ? LH_EXIT_OK : LH_EXIT_USAGE;
	if (a.npos < 1) {
		fprintf(stderr, "longhaul: error: retry takes a job ID and optional keys (see longhaul retry --help)\n");
		return LH_EXIT_USAGE;
	}
	if (cli_check_id("retry", a.pos[0]))
		return LH_EXIT_USAGE;
	if (a.npos > 1) {
		json_t *keys = json_array(), *o;
		for (int i = 1; i < a.npos; i++)
			json_array_append_new(keys, json_string(a.pos[i]));
		o = json_pack("{s:o}", "keys", keys);
		body = o ? json_dumps(o, JSON_COMPACT) : NULL;
		json_decref(o);
		if (!body) {
			fprintf(stderr, "longhaul: error: retry: the keys must be UTF-8\n");
			return LH_EXIT_USAGE;
		}
	}
	rc = cli_connect_job(&x, "retry", &a);
	if (rc) {
		free(body);
		return rc;
	}
	lh_http_resp_init(&r);
	snprintf(path, sizeof path, "/v1/jobs/%s/retry", a.pos[0]);
	/* With keys, a 404 may name a key rather than the job: show the API's message. */
	rc = cli_call(&x, "POST", path, body, body ? NULL : a.pos[0], &ans, &r);
	if (!rc) {
		if (x.json) {
			cli_print_body(&r.body);
		} else {
			n = (long long)cli_jnum(ans, "retried", 0);
			job = json_object_get(ans, "job");
			printf("%lld item%s of job %s went back to pending", n, n == 1 ? "" : "s", a.pos[0]);
			if (cli_jstr(job, "state"))
				printf("; the job is %s", cli_jstr(job, "state"));
			printf("\n");
		}
	}
	json_decref(ans);
	free(body);
	lh_http_resp_release(&r);
	cli_close(&x);
	return rc;
}
