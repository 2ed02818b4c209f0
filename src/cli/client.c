/*
 * cli layer: what every client command of the daemon shares (docs/cli.md):
 * options, the connection (with a job named by its id or its name), error
 * reporting, and a job's figures. Each command is a thin client of the HTTP
 * API (docs/api.md). The commands live beside it: submit, ls, status,
 * pause, resume, cancel and retry in client_jobs.c; watch and logs in
 * client_follow.c; results and failures in client_results.c; set and rm in
 * client_set.c.
 */
#include "cli/cli.h"
#include "cli/client.h"
#include "engine/jobstate.h"
#include "engine/run.h"
#include "util/log.h"
#include "util/mem.h"
#include "util/time.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>


static volatile sig_atomic_t cli_signal;

static void on_signal(int sig)
{
	cli_signal = sig;
}

int cli_interrupted(void)
{
	return cli_signal ? 128 + cli_signal : 0;
}

/* ---- options ---- */

int cli_parse(int argc, char **argv, const struct cli_opt *opts, void (*usage)(FILE *), struct cli_args *a)
{
	const char *cmd = argv[0];
	int only_pos = 0;
	memset(a, 0, sizeof *a);
	for (int i = 1; i < argc; i++) {
		const char *s = argv[i], *v = NULL, *eq;
		const struct cli_opt *o;
		char name[64];
		if (only_pos || s[0] != '-' || !strcmp(s, "-")) {
			if (a->npos >= CLI_MAX_POS) {
				fprintf(stderr, "longhaul: error: %s: too many arguments (at most %d)\n", cmd, CLI_MAX_POS);
				return -1;
			}
			a->pos[a->npos++] = s;
			continue;
		}
		if (!strcmp(s, "--")) {
			only_pos = 1;
			continue;
		}
		if (!strcmp(s, "--help") || !strcmp(s, "-h")) {
			usage(stdout);
			return 1;
		}
		eq = strchr(s, '=');
		snprintf(name, sizeof name, "%.*s", eq ? (int)(eq - s) : (int)strlen(s), s);
		if (eq)
			v = eq + 1;
		if (!strcmp(name, "--token")) {
			fprintf(stderr, "longhaul: error: --token is not accepted: tokens on the command line leak into "
					"process lists and shell history; set LONGHAUL_TOKEN instead\n");
			return -1;
		}
		if (!strcmp(name, "--json")) {
			if (v) {
				fprintf(stderr, "longhaul: error: %s: --json takes no value\n", cmd);
				return -1;
			}
			a->json = 1;
			continue;
		}
		for (o = opts; o && o->name; o++)
			if (!strcmp(o->name, name))
				break;
		if (strcmp(name, "--url") && (!o || !o->name)) {
			fprintf(stderr, "longhaul: error: %s: unknown option \"%s\" (see longhaul %s --help)\n", cmd, name, cmd);
			return -1;
		}
		if (o && o->name && o->flag) {
			if (v) {
				fprintf(stderr, "longhaul: error: %s: %s takes no value\n", cmd, name);
				return -1;
			}
			*o->flag = 1;
			continue;
		}
		if (!v) {
			if (i + 1 >= argc) {
				fprintf(stderr, "longhaul: error: %s: %s needs a value\n", cmd, name);
				return -1;
			}
			v = argv[++i];
		}
		if (!strcmp(name, "--url"))
			a->url = v;
		else
			*o->value = v;
	}
	return 0;
}

/* 1 when s is a job id: a positive integer without a leading zero. */
static int is_job_id(const char *s)
{
	if (!*s || s[0] == '0' || strlen(s) > 18)
		return 0;
	for (const char *p = s; *p; p++)
		if (*p < '0' || *p > '9')
			return 0;
	return 1;
}

int cli_check_id(const char *cmd, const char *s)
{
	/* A job is named by its id or by its name (resolved by cli_connect_job). */
	if (!*s || strlen(s) > 256) {
		fprintf(stderr, "longhaul: error: %s: \"%s\" is not a job id or name\n", cmd, s);
		return -1;
	}
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		if (*p < 0x20 || *p == 0x7f) {
			fprintf(stderr, "longhaul: error: %s: a job id or name has no control characters\n", cmd);
			return -1;
		}
	return 0;
}

int cli_parse_int(const char *cmd, const char *name, const char *v, long long min, long long max, long long *out)
{
	char *end;
	long long x;
	errno = 0;
	x = strtoll(v, &end, 10);
	if (errno || end == v || *end || x < min || x > max) {
		fprintf(stderr, "longhaul: error: %s: %s: expected an integer from %lld to %lld, got \"%s\"\n", cmd, name,
			min, max, v);
		return -1;
	}
	*out = x;
	return 0;
}

/* ---- the connection ---- */

int cli_connect(struct cli_ctx *x, const char *cmd, const struct cli_args *a)
{
	const char *url = a->url ? a->url : getenv("LONGHAUL_URL");
	const char *token = getenv("LONGHAUL_TOKEN");
	struct sigaction sa;

	memset(x, 0, sizeof *x);
	x->cmd = cmd;
	x->json = a->json;
	if (!url || !*url)
		url = CLI_DEFAULT_URL;
	if (strncmp(url, "http://", 7) && strncmp(url, "https://", 8)) {
		fprintf(stderr, "longhaul: error: %s: the daemon's URL must start with http:// or https://, got \"%s\"\n",
			cmd, url);
		return LH_EXIT_USAGE;
	}
	if (strlen(url) >= sizeof x->url) {
		fprintf(stderr, "longhaul: error: %s: the daemon's URL is too long\n", cmd);
		return LH_EXIT_USAGE;
	}
	snprintf(x->url, sizeof x->url, "%s", url);
	for (size_t n = strlen(x->url); n > 0 && x->url[n - 1] == '/'; n--)
		x->url[n - 1] = '\0';
	x->has_token = token && *token;
	x->http = lh_httpc_new(x->url, token, &cli_signal);
	if (!x->http) {
		fprintf(stderr, "longhaul: error: could not start libcurl\n");
		return LH_EXIT_INTERNAL;
	}
	/* The first Ctrl-C ends the request in progress cleanly (a partial
	 * download is removed); a second one kills at once. */
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sa.sa_flags = SA_RESETHAND;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	return 0;
}

/* Finds the ids of the jobs named name; one page of the list at a time. */
static int jobs_named(struct cli_ctx *x, const char *name, json_t *ids)
{
	char *cursor = NULL;
	int rc = 0;
	for (;;) {
		struct lh_buf path;
		json_t *page = NULL, *jobs, *j, *next;
		size_t i;
		lh_buf_init(&path, 0);
		rc = lh_buf_puts(&path, "/v1/jobs?limit=1000");
		if (cursor) {
			rc |= lh_buf_puts(&path, "&cursor=");
			rc |= cli_escape(&path, cursor);
		}
		if (!rc)
			rc = cli_call(x, "GET", path.data, NULL, NULL, &page, NULL);
		lh_buf_release(&path);
		if (rc)
			break;
		jobs = json_object_get(page, "jobs");
		json_array_foreach (jobs, i, j) {
			const char *n = cli_jstr(j, "name");
			if (n && !strcmp(n, name))
				json_array_append_new(ids, json_integer((json_int_t)cli_jnum(j, "id", 0)));
		}
		next = json_object_get(page, "next_cursor");
		lh_free(cursor);
		cursor = json_is_string(next) && json_array_size(jobs) ? lh_xstrdup(json_string_value(next)) : NULL;
		json_decref(page);
		if (!cursor)
			break;
	}
	lh_free(cursor);
	return rc;
}

int cli_connect_job(struct cli_ctx *x, const char *cmd, struct cli_args *a)
{
	json_t *ids;
	size_t n;
	int rc = cli_connect(x, cmd, a);
	if (rc || a->npos < 1 || is_job_id(a->pos[0]))
		return rc;
	ids = json_array();
	rc = jobs_named(x, a->pos[0], ids);
	n = json_array_size(ids);
	if (!rc && n == 1) {
		snprintf(x->job_id, sizeof x->job_id, "%lld", (long long)json_integer_value(json_array_get(ids, 0)));
		a->pos[0] = x->job_id;
	} else if (!rc && n == 0) {
		fprintf(stderr, "longhaul: error: no job %s (neither an id nor the name of a job; see longhaul ls)\n",
			a->pos[0]);
		rc = LH_EXIT_INTERNAL;
	} else if (!rc) {
		size_t i;
		json_t *v;
		fprintf(stderr, "longhaul: error: %zu jobs are named \"%s\" (ids", n, a->pos[0]);
		json_array_foreach (ids, i, v)
			fprintf(stderr, "%s %lld", i ? "," : "", (long long)json_integer_value(v));
		fprintf(stderr, "); name one by its id\n");
		rc = LH_EXIT_INTERNAL;
	}
	json_decref(ids);
	if (rc)
		cli_close(x);
	return rc;
}

void cli_close(struct cli_ctx *x)
{
	lh_httpc_free(x->http);
	x->http = NULL;
}

/* ---- errors ---- */

int cli_fail(struct cli_ctx *x, const struct lh_http_resp *r, const char *job)
{
	json_t *root = NULL, *err, *detail;
	const char *msg = NULL;
	char place[256] = "";
	int rc;

	switch (r->fail) {
	case LH_HTTP_OK:
		break;
	case LH_HTTP_CANCELLED:
		return cli_interrupted() ? cli_interrupted() : LH_EXIT_SIGINT;
	case LH_HTTP_CONNECT:
		fprintf(stderr, "longhaul: error: no daemon at %s (start one with: longhaul serve)\n", x->url);
		return CLI_EXIT_UNAVAILABLE;
	case LH_HTTP_TIMEOUT:
		fprintf(stderr, "longhaul: error: the daemon at %s did not answer in time\n", x->url);
		return CLI_EXIT_UNAVAILABLE;
	case LH_HTTP_TOOBIG:
		fprintf(stderr, "longhaul: error: the daemon's answer is too large\n");
		return LH_EXIT_INTERNAL;
	case LH_HTTP_STOPPED:
	case LH_HTTP_TRANSPORT:
		if (r->status == 0)
			fprintf(stderr, "longhaul: error: could not reach the daemon at %s: %s\n", x->url, r->detail);
		else
			fprintf(stderr, "longhaul: error: the connection to the daemon at %s broke: %s\n", x->url, r->detail);
		return CLI_EXIT_UNAVAILABLE;
	}

	if (r->body.len)
		root = json_loadb(r->body.data, r->body.len, 0, NULL);
	err = json_object_get(root, "error");
	msg = cli_jstr(err, "message");
	detail = json_object_get(err, "detail");
	if (json_is_object(detail)) {
		json_t *line = json_object_get(detail, "line");
		const char *field = cli_jstr(detail, "field");
		if (json_is_integer(line) && field)
			snprintf(place, sizeof place, " (line %lld, field \"%s\")", (long long)json_integer_value(line),
				 field);
		else if (json_is_integer(line))
			snprintf(place, sizeof place, " (line %lld)", (long long)json_integer_value(line));
		else if (field)
			snprintf(place, sizeof place, " (field \"%s\")", field);
	}
	switch (r->status) {
	case 401:
		if (x->has_token)
			fprintf(stderr, "longhaul: error: the daemon at %s refused the token in LONGHAUL_TOKEN\n", x->url);
		else
			fprintf(stderr, "longhaul: error: the daemon at %s needs a token: set LONGHAUL_TOKEN\n", x->url);
		rc = CLI_EXIT_NOPERM;
		break;
	case 404:
		if (job)
			fprintf(stderr, "longhaul: error: no job %s\n", job);
		else
			fprintf(stderr, "longhaul: error: %s\n", msg ? msg : "not found");
		rc = LH_EXIT_INTERNAL;
		break;
	case 409:
		if (job && msg && strncmp(msg, "job ", 4))
			fprintf(stderr, "longhaul: error: job %s %s\n", job, msg);
		else
			fprintf(stderr, "longhaul: error: %s\n", msg ? msg : "conflict");
		rc = LH_EXIT_INTERNAL;
		break;
	case 400:
	case 413:
	case 415:
		if (x->input) {
			/* The house format of input errors: file:line: field "f": message. */
			json_t *line = json_object_get(detail, "line");
			const char *field = cli_jstr(detail, "field");
			fprintf(stderr, "longhaul: error: %s", x->input);
			if (json_is_integer(line))
				fprintf(stderr, ":%lld", (long long)json_integer_value(line));
			fprintf(stderr, ": ");
			if (field)
				fprintf(stderr, "field \"%s\": ", field);
			fprintf(stderr, "%s\n", msg ? msg : "the daemon refused the file");
		} else {
			fprintf(stderr, "longhaul: error: %s%s\n", msg ? msg : "the daemon refused the request", place);
		}
		rc = LH_EXIT_INPUT;
		break;
	case 503:
		fprintf(stderr, "longhaul: error: the daemon at %s is not ready%s%s\n", x->url, msg ? ": " : "",
			msg ? msg : "");
		rc = CLI_EXIT_UNAVAILABLE;
		break;
	default:
		fprintf(stderr, "longhaul: error: the daemon answered %ld: %s\n", r->status,
			msg ? msg : r->body.len && r->body.len < 200 ? r->body.data : "(no message)");
		rc = LH_EXIT_INTERNAL;
		break;
	}
	json_decref(root);
	return rc;
}

int cli_call(struct cli_ctx *x, const char *method, const char *path, const char *body, const char *job,
	     json_t **out, struct lh_http_resp *raw)
{
	struct lh_http_resp own, *r = raw ? raw : &own;
	struct lh_http_req rq = { .method = method, .path = path, .timeout = CLI_CALL_TIMEOUT };
	json_error_t jerr;
	int rc = 0;

	if (out)
		*out = NULL;
	if (!raw)
		lh_http_resp_init(&own);
	if (body) {
		rq.body = body;
		rq.body_len = strlen(body);
		rq.content_type = "application/json";
	}
	if (lh_httpc_request(x->http, &rq, r, NULL) != 0 || r->status < 200 || r->status >= 300) {
		rc = cli_fail(x, r, job);
		goto out;
	}
	if (out) {
		*out = json_loadb(r->body.data ? r->body.data : "", r->body.len, 0, &jerr);
		if (!*out) {
			fprintf(stderr, "longhaul: error: the daemon's answer to %s %s is not JSON: %s\n", method, path,
				jerr.text);
			rc = LH_EXIT_INTERNAL;
		}
	}
out:
	if (!raw)
		lh_http_resp_release(&own);
	return rc;
}

void cli_print_body(const struct lh_buf *b)
{
	if (b->len)
		fwrite(b->data, 1, b->len, stdout);
	if (!b->len || b->data[b->len - 1] != '\n')
		fputc('\n', stdout);
	fflush(stdout);
}

int cli_escape(struct lh_buf *out, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		int rc;
		if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
		    strchr("-._~", *p))
			rc = lh_buf_putc(out, (char)*p);
		else
			rc = lh_buf_printf(out, "%%%c%c", hex[*p >> 4], hex[*p & 15]);
		if (rc)
			return rc;
	}
	return 0;
}

/* ---- job figures ---- */

const char *cli_jstr(json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key));
}

double cli_jnum(json_t *o, const char *key, double def)
{
	json_t *v = json_object_get(o, key);
	return json_is_number(v) ? json_number_value(v) : def;
}

double cli_jcount(json_t *job, const char *key)
{
	return cli_jnum(json_object_get(job, "counts"), key, 0);
}

double cli_parse_time(const char *s)
{
	struct tm tm;
	const char *rest;
	double frac = 0;
	time_t t;
	if (!s)
		return -1;
	memset(&tm, 0, sizeof tm);
	rest = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
	if (!rest)
		return -1;
	if (*rest == '.') {
		double scale = 0.1;
		for (rest++; *rest >= '0' && *rest <= '9'; rest++, scale /= 10)
			frac += (*rest - '0') * scale;
	}
	t = timegm(&tm);
	return t == (time_t)-1 ? -1 : (double)t + frac;
}

void cli_job_view(json_t *job, struct lh_progress_view *v)
{
	json_t *usage = json_object_get(job, "usage");
	memset(v, 0, sizeof *v);
	v->state = cli_jstr(job, "state");
	v->total = (int64_t)cli_jcount(job, "total");
	v->done = (int64_t)cli_jcount(job, "succeeded");
	v->dead = (int64_t)cli_jcount(job, "failed");
	v->retries = (int64_t)cli_jcount(job, "retrying");
	v->in_flight = (int64_t)cli_jcount(job, "running");
	v->prompt_tokens = (int64_t)cli_jnum(usage, "prompt_tokens", 0);
	v->completion_tokens = (int64_t)cli_jnum(usage, "completion_tokens", 0);
	v->items_per_sec = cli_jnum(job, "items_per_sec", 0);
	v->tokens_per_sec = cli_jnum(job, "tokens_per_sec", 0);
	v->eta = cli_jnum(job, "eta_sec", -1);
	v->elapsed = cli_jnum(job, "elapsed_sec", 0);
}

char *cli_job_error(json_t *job)
{
	json_t *le = json_object_get(job, "last_error"), *inner;
	const char *code, *msg;
	struct lh_buf b;
	int rc;
	if (json_is_string(le))
		return json_string_length(le) ? lh_xstrdup(json_string_value(le)) : NULL;
	if (!json_is_object(le))
		return NULL;
	/* Ours: {"code", "message", ...}; an OpenAI error body: {"error": {...}}. */
	inner = json_object_get(le, "error");
	if (json_is_object(inner) && !cli_jstr(le, "message"))
		le = inner;
	code = cli_jstr(le, "code");
	msg = cli_jstr(le, "message");
	lh_buf_init(&b, 0);
	if (code && msg && strstr(msg, code) != msg)
		rc = lh_buf_printf(&b, "%s: %s", code, msg);
	else if (msg || code)
		rc = lh_buf_puts(&b, msg ? msg : code);
	else {
		char *s = json_dumps(le, JSON_COMPACT);
		rc = lh_buf_puts(&b, s ? s : "");
		free(s);
	}
	if (rc) {
		lh_buf_release(&b);
		return NULL;
	}
	return lh_buf_steal(&b);
}

void cli_job_stop_report(json_t *job)
{
	long long id = (long long)cli_jnum(job, "id", 0);
	char *err = cli_job_error(job);
	fprintf(stderr, "longhaul: error: job %lld stopped early and is paused: %s\n", id,
		err ? err : "(no message)");
	fprintf(stderr, "longhaul: hint: fix the cause with longhaul set %lld (--model M, --base-url URL, "
			"--api-key-env NAME, ...), then longhaul resume %lld\n", id, id);
	lh_free(err);
}

int cli_job_stopped(json_t *job)
{
	const char *s = cli_jstr(job, "state"), *why = cli_jstr(job, "pause_reason");
	return lh_job_state_of(s) == LH_JOB_PAUSED && why && !strcmp(why, LH_PAUSE_EARLY_STOP);
}

int cli_job_final(json_t *job)
{
	const char *s = cli_jstr(job, "state");
	return lh_job_state_final(lh_job_state_of(s));
}

int cli_job_exit(json_t *job)
{
	if (lh_job_state_of(cli_jstr(job, "state")) == LH_JOB_COMPLETED)
		return cli_jcount(job, "failed") > 0 ? LH_EXIT_FAILED_ITEMS : LH_EXIT_OK;
	return LH_EXIT_INTERNAL;
}

void cli_job_summary(FILE *out, json_t *job)
{
	struct lh_progress_view v;
	char *err = cli_job_error(job);
	char el[32];
	cli_job_view(job, &v);
	lh_time_human(v.elapsed, el, sizeof el);
	fprintf(out, "job %lld %s: %lld succeeded, %lld failed of %lld in %s",
		(long long)cli_jnum(job, "id", 0), v.state ? v.state : "?", (long long)v.done, (long long)v.dead,
		(long long)v.total, el);
	if (err && *err && v.state && lh_job_state_of(v.state) != LH_JOB_COMPLETED)
		fprintf(out, " (last error: %s)", err);
	fputc('\n', out);
	fflush(out);
	lh_free(err);
}

