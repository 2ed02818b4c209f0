/*
 * cli layer: following a job's event stream (GET /v1/jobs/ID/events/stream,
 * server-sent events) for `watch`, `logs --follow` and `submit --wait`,
 * and the `watch` and `logs` commands themselves.
 *
 * The stream runs as an httpc stream: events are parsed (llm/sse.h) and
 * printed inside libcurl's write callback, which only notes what needs
 * doing; the tick, outside libcurl, refreshes the job (GET /v1/jobs/ID) on
 * an event or a keep-alive at most ten times a second, and once a second
 * while a progress display is shown, because finished items send no
 * events. A stream that ends or goes quiet is reopened with Last-Event-ID,
 * so no event is missed or printed twice.
 */
#include "cli/cli.h"
#include "cli/client.h"
#include "engine/run.h"
#include "llm/sse.h"
#include "util/mem.h"
#include "util/time.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define FOLLOW_MAX_EVENT (16u << 20) /* largest event we accept */
#define FOLLOW_IDLE 45.0             /* seconds of silence (3 keep-alives) before reconnecting */
#define FOLLOW_DOWN_MAX 30.0         /* seconds to keep retrying a daemon that went away */
#define FOLLOW_MIN_REFRESH 0.1       /* at most ten job refreshes a second */
#define FOLLOW_PROGRESS_REFRESH 1.0  /* while a progress display is shown */
#define FOLLOW_LINE_EVERY 5.0        /* plain progress lines, seconds apart */
#define EVENTS_PAGE 1000

struct follow {
	struct cli_ctx *x;
	const char *id;
	const struct cli_follow_opts *o;
	struct lh_sse sse;
	char last_id[128];     /* the last event number received ("" = none) */
	json_t *job;           /* the latest job, owned */
	double last_refresh, last_line;
	int dirty;             /* bytes arrived since the last refresh */
	int check_final;       /* an event said the job reached a final state */
	int opened;            /* the current connection answered 2xx */
	int open_seen;         /* the tick has seen it open */
	int bar_drawn;
	int finished, result;  /* the exit code, once finished */
	char shown_state[32];
	char shown_waiting[512];
};

static int is_final_event(const char *type)
{
	return type && (!strcmp(type, "job.completed") || !strcmp(type, "job.failed") ||
			!strcmp(type, "job.cancelled") || !strcmp(type, "job.timed_out"));
}

/* Events after which the job is worth a look: it may have ended, stopped
 * early, or begun or stopped waiting. */
static int is_state_event(const char *type)
{
	return is_final_event(type) || (type && (!strcmp(type, "job.paused") || !strcmp(type, "job.waiting") ||
						 !strcmp(type, "job.running")));
}

void cli_print_event(json_t *ev, enum cli_events how)
{
	if (how == CLI_EVENTS_JSON) {
		char *s = json_dumps(ev, JSON_COMPACT);
		if (s)
			printf("%s\n", s);
		free(s);
	} else if (how == CLI_EVENTS_TEXT) {
		const char *t = cli_jstr(ev, "time"), *type = cli_jstr(ev, "type"), *item = cli_jstr(ev, "item");
		json_t *data = json_object_get(ev, "data");
		char *d = NULL;
		/* The data in full: an error's cause is often at its end. */
		if (data && !json_is_null(data))
			d = json_dumps(data, JSON_COMPACT | JSON_ENCODE_ANY);
		printf("%-24s  %-14s  %s%s%s\n", t ? t : "-", type ? type : "?", item ? item : "-", d ? "  " : "",
		       d ? d : "");
		free(d);
	}
	fflush(stdout);
}

static void end_bar(struct follow *f)
{
	if (f->bar_drawn) {
		fputc('\n', f->o->progress_out);
		fflush(f->o->progress_out);
		f->bar_drawn = 0;
	}
}

static void finish(struct follow *f, int result)
{
	f->finished = 1;
	f->result = result;
}

static void draw(struct follow *f)
{
	struct lh_progress_view v;
	FILE *out = f->o->progress_out;
	double now = lh_mono();
	const char *waiting;
	int changed;
	if (f->o->progress == CLI_PROGRESS_NONE || !f->job)
		return;
	cli_job_view(f->job, &v);
	if (f->o->progress == CLI_PROGRESS_BAR) {
		lh_report_bar(out, &v);
		f->bar_drawn = 1;
		return;
	}
	changed = v.state && strcmp(v.state, f->shown_state);
	if (changed) {
		const char *why = cli_jstr(f->job, "pause_reason");
		snprintf(f->shown_state, sizeof f->shown_state, "%s", v.state);
		fprintf(out, "job %s %s%s%s%s\n", f->id, v.state, why ? " (" : "", why ? why : "", why ? ")" : "");
	}
	waiting = cli_jstr(f->job, "waiting");
	if (waiting && strcmp(waiting, f->shown_waiting)) {
		fprintf(out, "job %s waiting for %s\n", f->id, waiting);
		changed = 1;
	}
	snprintf(f->shown_waiting, sizeof f->shown_waiting, "%s", waiting ? waiting : "");
	if (changed || now - f->last_line >= FOLLOW_LINE_EVERY) {
		lh_report_line(out, &v);
		f->last_line = now;
	}
}

/* Prints the events after f->last_id through the paged list; returns 0 or
 * an exit code after reporting. */
static int drain(struct follow *f)
{
	for (;;) {
		char path[256];
		json_t *page = NULL, *evs, *ev;
		size_t i;
		long long next;
		int rc;
		snprintf(path, sizeof path, "/v1/jobs/%s/events?after=%s&limit=%d", f->id,
			 f->last_id[0] ? f->last_id : "0", EVENTS_PAGE);
		rc = cli_call(f->x, "GET", path, NULL, f->id, &page, NULL);
		if (rc)
			return rc;
		evs = json_object_get(page, "events");
		json_array_foreach (evs, i, ev)
			cli_print_event(ev, f->o->events);
		next = (long long)cli_jnum(page, "next_after", -1);
		if (json_array_size(evs) == 0 || next <= atoll(f->last_id[0] ? f->last_id : "0")) {
			json_decref(page);
			return 0;
		}
		snprintf(f->last_id, sizeof f->last_id, "%lld", next);
		json_decref(page);
	}
}

/* Fetches the job, redraws, and finishes when it is final and we stop
 * there. Returns 0 or an exit code after reporting. */
static int refresh(struct follow *f)
{
	struct lh_http_resp r;
	struct lh_http_req rq = { .method = "GET", .timeout = 60 };
	char path[64];
	json_t *job;
	int rc = 0;
	snprintf(path, sizeof path, "/v1/jobs/%s", f->id);
	rq.path = path;
	lh_http_resp_init(&r);
	if (lh_httpc_request(f->x->http, &rq, &r, NULL) != 0 || r.status != 200) {
		end_bar(f);
		rc = cli_fail(f->x, &r, f->id);
		lh_http_resp_release(&r);
		return rc;
	}
	job = json_loadb(r.body.data, r.body.len, 0, NULL);
	lh_http_resp_release(&r);
	if (!json_is_object(job)) {
		end_bar(f);
		fprintf(stderr, "longhaul: error: the daemon's answer for job %s is not a job\n", f->id);
		json_decref(job);
		return LH_EXIT_INTERNAL;
	}
	json_decref(f->job);
	f->job = job;
	f->last_refresh = lh_mono();
	f->dirty = 0;
	f->check_final = 0;
	draw(f);
	/* A job that stopped early waits for a person: following it further
	 * would hang. So does a final one, for good. */
	if (f->o->stop_on_final && (cli_job_final(job) || cli_job_stopped(job))) {
		if (f->o->events != CLI_EVENTS_NONE) {
			rc = drain(f);
			if (rc)
				return rc;
		}
		end_bar(f);
		finish(f, cli_job_stopped(job) ? LH_EXIT_STOPPED : cli_job_exit(job));
	}
	return 0;
}

/* Inside libcurl: print and note, never request. */
static int on_event(const char *event, const char *data, size_t len, const char *id, void *arg)
{
	struct follow *f = arg;
	json_t *ev;
	const char *type;
	if (id && *id)
		snprintf(f->last_id, sizeof f->last_id, "%s", id);
	ev = json_loadb(data, len, 0, NULL);
	if (!json_is_object(ev)) {
		json_decref(ev);
		return 0; /* not an event of ours; nothing to show */
	}
	type = cli_jstr(ev, "type");
	if (!type)
		type = event;
	cli_print_event(ev, f->o->events);
	if (is_state_event(type))
		f->check_final = 1;
	if (f->o->end_on_final && is_final_event(type))
		finish(f, LH_EXIT_OK);
	if (type && !strcmp(type, "job.deleted")) {
		end_bar(f);
		if (f->o->stop_on_final) {
			fprintf(stderr, "longhaul: error: job %s was deleted\n", f->id);
			finish(f, LH_EXIT_INTERNAL);
		} else {
			finish(f, LH_EXIT_OK);
		}
	}
	json_decref(ev);
	return f->finished;
}

static int on_chunk(const char *p, size_t n, void *arg)
{
	struct follow *f = arg;
	int rc;
	f->opened = 1;
	f->dirty = 1; /* an event or a keep-alive */
	rc = lh_sse_feed(&f->sse, p, n);
	if (rc == LH_ETOOBIG) {
		end_bar(f);
		fprintf(stderr, "longhaul: error: an event of job %s is over %u bytes\n", f->id, FOLLOW_MAX_EVENT);
		finish(f, LH_EXIT_INTERNAL);
		return 1;
	}
	return rc;
}

static int on_tick(long status, void *arg)
{
	struct follow *f = arg;
	double now = lh_mono();
	int need = 0, rc;
	if (f->finished)
		return 1;
	if (status < 200 || status >= 300)
		return 0; /* no head yet, or an error body still arriving */
	f->opened = 1;
	if (!f->open_seen) {
		f->open_seen = 1;
		/* What happened while the stream was closed shows in the job (and
		 * refresh prints the events a final job left behind). */
		if (f->o->stop_on_final)
			need = 1;
	}
	/* Only a follower that shows the job or stops with it needs to read it. */
	if (f->check_final && (f->o->stop_on_final || f->o->progress != CLI_PROGRESS_NONE))
		need = 1;
	if (f->o->progress != CLI_PROGRESS_NONE) {
		if (f->dirty && now - f->last_refresh >= FOLLOW_MIN_REFRESH)
			need = 1;
		if (now - f->last_refresh >= FOLLOW_PROGRESS_REFRESH)
			need = 1;
	}
	if (!need)
		return 0;
	rc = refresh(f);
	if (rc)
		finish(f, rc);
	return f->finished;
}

/* Sleeps s seconds unless a signal arrives; returns 1 when one did. */
static int nap(double s)
{
	struct timespec ts = { 0, 50 * 1000 * 1000 };
	for (double t = 0; t < s; t += 0.05) {
		if (cli_interrupted())
			return 1;
		nanosleep(&ts, NULL);
	}
	return cli_interrupted() != 0;
}

int cli_follow(struct cli_ctx *x, const char *id, const struct cli_follow_opts *o)
{
	struct follow f;
	struct lh_http_resp r;
	double backoff = 0.2, down_since = -1;
	char path[96];
	int rc, ever_opened = 0;

	memset(&f, 0, sizeof f);
	f.x = x;
	f.id = id;
	f.o = o;
	f.last_line = -1e9;
	if (o->after)
		snprintf(f.last_id, sizeof f.last_id, "%s", o->after);
	lh_sse_init(&f.sse, FOLLOW_MAX_EVENT, on_event, &f);
	lh_http_resp_init(&r);
	if (o->stop_on_final || o->progress != CLI_PROGRESS_NONE) {
		/* A job already final is shown (its events printed) at once. */
		rc = refresh(&f);
		if (rc)
			finish(&f, rc);
	}
	while (!f.finished) {
		struct lh_http_req rq = { .method = "GET", .idle_timeout = FOLLOW_IDLE, .on_chunk = on_chunk,
					  .on_tick = on_tick, .arg = &f };
		/* A first connection that prints events replays them from the
		 * start; later ones resume after the last one received. */
		snprintf(path, sizeof path, "/v1/jobs/%s/events/stream%s", id,
			 !f.last_id[0] && o->events != CLI_EVENTS_NONE ? "?after=0" : "");
		rq.path = path;
		rq.last_event_id = f.last_id[0] ? f.last_id : NULL;
		lh_sse_reset(&f.sse);
		f.opened = f.open_seen = 0;
		rc = lh_httpc_request(x->http, &rq, &r, NULL);
		if (f.finished)
			break;
		if (r.fail == LH_HTTP_CANCELLED || cli_interrupted()) {
			end_bar(&f);
			finish(&f, cli_interrupted() ? cli_interrupted() : LH_EXIT_SIGINT);
			break;
		}
		if (r.status == 404 && ever_opened) {
			/* The daemon ends a job's stream when the job is deleted. */
			end_bar(&f);
			if (o->stop_on_final) {
				fprintf(stderr, "longhaul: error: job %s was deleted\n", id);
				finish(&f, LH_EXIT_INTERNAL);
			} else {
				finish(&f, LH_EXIT_OK);
			}
			break;
		}
		/* A daemon that is starting answers 503 until it is ready: that is
		 * "down for now", retried below like a refused connection. */
		if (r.status && r.status != 503 && (r.status < 200 || r.status >= 300)) {
			end_bar(&f);
			finish(&f, cli_fail(x, &r, id));
			break;
		}
		/* rc == 0: a 2xx stream that the daemon ended. */
		ever_opened |= f.opened || rc == 0;
		if (f.opened || rc == 0) {
			backoff = 0.2;
			down_since = -1;
		} else {
			if (down_since < 0)
				down_since = lh_mono();
			if (lh_mono() - down_since > FOLLOW_DOWN_MAX) {
				end_bar(&f);
				finish(&f, cli_fail(x, &r, id));
				break;
			}
		}
		/* The stream ended (closed, went quiet, or the daemon went away):
		 * reopen it after a pause that grows while nothing answers. */
		if (nap(backoff)) {
			end_bar(&f);
			finish(&f, cli_interrupted());
			break;
		}
		backoff = backoff * 2 > 5 ? 5 : backoff * 2;
	}
	end_bar(&f);
	if (o->final_job)
		*o->final_job = f.job ? json_incref(f.job) : NULL;
	json_decref(f.job);
	lh_sse_release(&f.sse);
	lh_http_resp_release(&r);
	return f.result;
}

/* ---- watch ---- */

static void watch_usage(FILE *out)
{
	fprintf(out,
		"usage: longhaul watch ID [--json] [--url URL]\n"
		"\n"
		"Follows job ID until it ends: a progress bar on a terminal, plain lines\n"
		"otherwise, then a summary. With --json, every event of the job from the first,\n"
		"one JSON object per line, ending with the event of its final state.\n"
		"\n"
		"ID is the job's id or its name (when no other job has it).\n"
		"\n"
		"exit codes: 0 completed with no failed item, 1 error, no such job, or the job\n"
		"failed, was cancelled or timed out, 2 usage, 4 completed with failed items,\n"
		"5 the job stopped early (every request failed the same permanent way; it is\n"
		"paused: fix it with longhaul set, then longhaul resume), 69 no daemon,\n"
		"77 token missing or wrong, 130/143 interrupted\n");
}

int cli_watch(int argc, char **argv)
{
	struct cli_args a;
	struct cli_ctx x;
	struct cli_follow_opts fo = { .progress_out = stdout, .stop_on_final = 1 };
	json_t *job = NULL;
	int rc = cli_parse(argc, argv, NULL, watch_usage, &a);
	if (rc)
		return rc > 0 ? LH_EXIT_OK : LH_EXIT_USAGE;
	if (a.npos != 1) {
		fprintf(stderr, "longhaul: error: watch takes one job ID (see longhaul watch --help)\n");
		return LH_EXIT_USAGE;
	}
	if (cli_check_id("watch", a.pos[0]))
		return LH_EXIT_USAGE;
	rc = cli_connect_job(&x, "watch", &a);
	if (rc)
		return rc;
	if (x.json)
		fo.events = CLI_EVENTS_JSON;
	else
		fo.progress = isatty(STDOUT_FILENO) ? CLI_PROGRESS_BAR : CLI_PROGRESS_LINES;
	fo.final_job = &job;
	rc = cli_follow(&x, a.pos[0], &fo);
	if (cli_interrupted())
		fprintf(stderr, "longhaul: stopped watching; job %s goes on in the daemon\n", a.pos[0]);
	else if (job && cli_job_stopped(job))
		cli_job_stop_report(job);
	else if (!x.json && job && cli_job_final(job))
		cli_job_summary(stdout, job);
	json_decref(job);
	cli_close(&x);
	return rc;
}

/* ---- logs ---- */

static void logs_usage(FILE *out)
{
	fprintf(out,
		"usage: longhaul logs ID [--follow] [--after N] [--json] [--url URL]\n"
		"\n"
		"Prints the events of job ID, one line each: time, type, item, data.\n"
		"\n"
		"options:\n"
		"  --after N    only the events after event number N (default 0: all)\n"
		"  --follow     then keep printing new events as they happen, until the job\n"
		"               reaches a final state (completed, failed, cancelled, timed_out),\n"
		"               is deleted, or you press Ctrl-C; reconnects without losing any\n"
		"  --json       one JSON event per line, each with its \"id\"\n"
		"  --url URL    the daemon (default $LONGHAUL_URL, else " CLI_DEFAULT_URL ")\n"
		"\n"
		"exit codes: 0 printed, 1 error or no such job, 2 usage, 69 no daemon,\n"
		"77 token missing or wrong, 130/143 interrupted (--follow)\n");
}

int cli_logs(int argc, char **argv)
{
	const char *after_s = NULL;
	int follow = 0, was_final = 0, rc;
	struct cli_opt opts[] = { { "--follow", NULL, &follow }, { "-f", NULL, &follow }, { "--after", &after_s, NULL },
				  { NULL, NULL, NULL } };
	struct cli_args a;
	struct cli_ctx x;
	enum cli_events how;
	long long after = 0;
	char after_buf[32];

	rc = cli_parse(argc, argv, opts, logs_usage, &a);
	if (rc)
		return rc > 0 ? LH_EXIT_OK : LH_EXIT_USAGE;
	if (a.npos != 1) {
		fprintf(stderr, "longhaul: error: logs takes one job ID (see longhaul logs --help)\n");
		return LH_EXIT_USAGE;
	}
	if (cli_check_id("logs", a.pos[0]))
		return LH_EXIT_USAGE;
	if (after_s) {
		char *end;
		errno = 0;
		after = strtoll(after_s, &end, 10);
		if (errno || end == after_s || *end || after < 0) {
			fprintf(stderr, "longhaul: error: logs: --after: expected an event number >= 0, got \"%s\"\n", after_s);
			return LH_EXIT_USAGE;
		}
	}
	rc = cli_connect_job(&x, "logs", &a);
	if (rc)
		return rc;
	how = x.json ? CLI_EVENTS_JSON : CLI_EVENTS_TEXT;
	if (follow) {
		/* Looked at before the listing: a job that had ended by then has
		 * all its events in it (its final state's last), and nothing to
		 * follow; one that ends later sends its final event on the stream. */
		json_t *job = NULL;
		char path[64];
		snprintf(path, sizeof path, "/v1/jobs/%s", a.pos[0]);
		rc = cli_call(&x, "GET", path, NULL, a.pos[0], &job, NULL);
		was_final = !rc && cli_job_final(job);
		json_decref(job);
		if (rc)
			goto out;
	}
	for (;;) {
		char path[256];
		json_t *page = NULL, *evs, *ev;
		size_t i, n;
		long long next;
		snprintf(path, sizeof path, "/v1/jobs/%s/events?after=%lld&limit=%d", a.pos[0], after, EVENTS_PAGE);
		rc = cli_call(&x, "GET", path, NULL, a.pos[0], &page, NULL);
		if (rc)
			goto out;
		evs = json_object_get(page, "events");
		json_array_foreach (evs, i, ev)
			cli_print_event(ev, how);
		next = (long long)cli_jnum(page, "next_after", -1);
		n = json_array_size(evs);
		json_decref(page);
		if (n == 0 || next <= after)
			break;
		after = next;
	}
	if (follow && !was_final) {
		struct cli_follow_opts fo = { .events = how, .after = after_buf, .end_on_final = 1 };
		snprintf(after_buf, sizeof after_buf, "%lld", after);
		rc = cli_follow(&x, a.pos[0], &fo);
	}
out:
	cli_close(&x);
	return rc;
}
