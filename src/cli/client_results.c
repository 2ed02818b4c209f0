/*
 * cli layer: `longhaul results` and `longhaul failures`, the two JSONL
 * downloads (GET /v1/jobs/ID/results and /errors). Both stream: the body
 * goes to stdout or to the output file as it arrives, never held whole.
 * A file is written atomically (util/file.h): a download that breaks off
 * leaves the previous file, if any, untouched.
 */
#include "cli/cli.h"
#include "cli/client.h"
#include "engine/run.h"
#include "util/file.h"
#include "util/log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ERROR_LINE (32u << 20) /* longest error line we parse for the readable list */
#define DL_IDLE 120.0              /* seconds without a byte before giving up */

struct dl {
	FILE *fp;
	long long lines;
	int werr;              /* errno of a failed write, or 0 */
	/* readable failures only */
	int readable;
	struct lh_buf line;    /* a line split across chunks */
	int toolong;
};

static void print_failure(struct dl *d, const char *s, size_t n)
{
	json_t *o = json_loadb(s, n, 0, NULL), *resp, *err, *body, *st;
	const char *key, *code = NULL, *msg = NULL;
	char status[16] = "-", clean[201];
	size_t k = 0;
	if (!json_is_object(o)) {
		json_decref(o);
		return;
	}
	key = cli_jstr(o, "custom_id");
	if (!key)
		key = cli_jstr(o, "key");
	resp = json_object_get(o, "response");
	body = json_object_get(resp, "body");
	st = json_is_object(resp) ? json_object_get(resp, "status_code") : json_object_get(o, "status");
	if (json_is_integer(st))
		snprintf(status, sizeof status, "%lld", (long long)json_integer_value(st));
	err = json_object_get(o, "error");
	if (!json_is_object(err))
		err = json_object_get(body, "error");
	if (json_is_object(err)) {
		code = cli_jstr(err, "code");
		if (!code)
			code = cli_jstr(err, "type");
		msg = cli_jstr(err, "message");
	} else if (json_is_string(body)) {
		msg = json_string_value(body);
	}
	/* One line per item, whatever the message holds. */
	for (const char *p = msg ? msg : "-"; *p && k < sizeof clean - 1; p++)
		clean[k++] = (*p == '\n' || *p == '\r' || *p == '\t') ? ' ' : *p;
	clean[k] = '\0';
	if (d->lines == 0)
		printf("%-24s  %-6s  %-24s  %s\n", "KEY", "STATUS", "CODE", "MESSAGE");
	printf("%-24s  %-6s  %-24s  %s\n", key ? key : "?", status, code ? code : "-", clean);
	d->lines++;
	json_decref(o);
}

static int dl_chunk(const char *p, size_t n, void *arg)
{
	struct dl *d = arg;
	if (!d->readable) {
		if (fwrite(p, 1, n, d->fp) != n) {
			d->werr = errno ? errno : EIO;
			return 1;
		}
		for (size_t i = 0; i < n; i++)
			d->lines += p[i] == '\n';
		return 0;
	}
	while (n) {
		const char *nl = memchr(p, '\n', n);
		size_t k = nl ? (size_t)(nl - p) : n;
		if (lh_buf_append(&d->line, p, k) != 0) {
			d->toolong = 1;
			return 1;
		}
		if (!nl)
			break;
		if (d->line.len)
			print_failure(d, d->line.data, d->line.len);
		lh_buf_clear(&d->line);
		p += k + 1;
		n -= k + 1;
	}
	return 0;
}

/* GET path into d; returns 0 or an exit code after reporting. */
static int download(struct cli_ctx *x, const char *path, const char *id, struct dl *d)
{
	struct lh_http_resp r;
	struct lh_http_req rq = { .method = "GET", .path = path, .idle_timeout = DL_IDLE, .on_chunk = dl_chunk,
				  .arg = d };
	int rc = 0;
	lh_http_resp_init(&r);
	if (lh_httpc_request(x->http, &rq, &r, NULL) != 0 || r.status < 200 || r.status >= 300) {
		if (d->werr)
			fprintf(stderr, "longhaul: error: could not write: %s\n", strerror(d->werr));
		else if (d->toolong)
			fprintf(stderr, "longhaul: error: a line of the failures is over %u bytes\n", MAX_ERROR_LINE);
		rc = d->werr || d->toolong ? LH_EXIT_INTERNAL : cli_fail(x, &r, id);
	} else if (d->readable && d->line.len) {
		print_failure(d, d->line.data, d->line.len);
	}
	lh_http_resp_release(&r);
	return rc;
}

static int check_id_arg(const char *cmd, const struct cli_args *a)
{
	if (a->npos != 1) {
		fprintf(stderr, "longhaul: error: %s takes one job ID (see longhaul %s --help)\n", cmd, cmd);
		return -1;
	}
	return cli_check_id(cmd, a->pos[0]);
}

static int finish_stdout(int rc)
{
	if (fflush(stdout) != 0 && !rc) {
		fprintf(stderr, "longhaul: error: could not write to stdout: %s\n", strerror(errno));
		return LH_EXIT_INTERNAL;
	}
	return rc;
}

/* ---- results ---- */

static void results_usage(FILE *out)
{
	fprintf(out,
		"usage: longhaul results ID [-o FILE] [--reduce] [--json] [--url URL]\n"
		"\n"
		"Writes the finished results of job ID as JSONL, in input order: the OpenAI\n"
		"batch output format for batch jobs, the spec's output format for spec jobs.\n"
		"\n"
		"options:\n"
		"  --reduce            the pipeline's reduce report (markdown) instead\n"
		"  -o, --output FILE   write to FILE atomically (a complete file or none)\n"
		"                      instead of stdout, and print how many results\n"
		"  --json              with -o, print {\"file\": ..., \"results\": N}\n"
		"  --url URL           the daemon (default $LONGHAUL_URL, else " CLI_DEFAULT_URL ")\n"
		"\n"
		"exit codes: 0 written, 1 error, no such job, or FILE could not be written,\n"
		"2 usage, 69 no daemon, 77 token missing or wrong, 130/143 interrupted\n");
}

int cli_results(int argc, char **argv)
{
	const char *out = NULL;
	int reduce = 0;
	struct cli_opt opts[] = { { "-o", &out, NULL }, { "--output", &out, NULL }, { "--reduce", NULL, &reduce },
				  { NULL, NULL, NULL } };
	struct cli_args a;
	struct cli_ctx x;
	struct dl d;
	struct lh_afile af;
	struct lh_err e;
	char path[96];
	int rc = cli_parse(argc, argv, opts, results_usage, &a);
	if (rc)
		return rc > 0 ? LH_EXIT_OK : LH_EXIT_USAGE;
	if (check_id_arg("results", &a))
		return LH_EXIT_USAGE;
	rc = cli_connect_job(&x, "results", &a);
	if (rc)
		return rc;
	memset(&d, 0, sizeof d);
	lh_err_clear(&e);
	snprintf(path, sizeof path, "/v1/jobs/%s/%s", a.pos[0], reduce ? "reduce" : "results");
	if (!out) {
		d.fp = stdout;
		rc = finish_stdout(download(&x, path, a.pos[0], &d));
		goto done;
	}
	/* Before the download: a directory or a missing one is said plainly. */
	if (lh_file_check_writable(out, "results file", &e) != 0 || lh_afile_open(&af, out, &e) != 0) {
		lh_log_err(&e);
		rc = LH_EXIT_INTERNAL;
		goto done;
	}
	d.fp = af.fp;
	rc = download(&x, path, a.pos[0], &d);
	if (rc) {
		lh_afile_abort(&af);
		goto done;
	}
	if (lh_afile_commit(&af, &e) != 0) {
		lh_log_err(&e);
		rc = LH_EXIT_INTERNAL;
		goto done;
	}
	if (x.json) {
		json_t *o = json_pack("{s:s, s:I}", "file", out, "results", (json_int_t)d.lines);
		char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
		printf("%s\n", s ? s : "{}");
		free(s);
		json_decref(o);
	} else if (reduce) {
		printf("wrote the reduce report to %s\n", out);
	} else {
		printf("wrote %lld result%s to %s\n", d.lines, d.lines == 1 ? "" : "s", out);
	}
	rc = finish_stdout(0);
done:
	cli_close(&x);
	return rc;
}

/* ---- failures ---- */

static void failures_usage(FILE *out)
{
	fprintf(out,
		"usage: longhaul failures ID [--json] [--url URL]\n"
		"\n"
		"Lists the failed items of job ID: key, HTTP status, error code and message.\n"
		"With --json, the error file itself as JSONL (the OpenAI batch error format for\n"
		"batch jobs, the spec's error format for spec jobs).\n"
		"\n"
		"exit codes: 0 listed (also when none failed), 1 error or no such job,\n"
		"2 usage, 69 no daemon, 77 token missing or wrong, 130/143 interrupted\n");
}

int cli_failures(int argc, char **argv)
{
	struct cli_args a;
	struct cli_ctx x;
	struct dl d;
	char path[96];
	int rc = cli_parse(argc, argv, NULL, failures_usage, &a);
	if (rc)
		return rc > 0 ? LH_EXIT_OK : LH_EXIT_USAGE;
	if (check_id_arg("failures", &a))
		return LH_EXIT_USAGE;
	rc = cli_connect_job(&x, "failures", &a);
	if (rc)
		return rc;
	memset(&d, 0, sizeof d);
	d.fp = stdout;
	d.readable = !x.json;
	lh_buf_init(&d.line, MAX_ERROR_LINE);
	snprintf(path, sizeof path, "/v1/jobs/%s/errors", a.pos[0]);
	rc = download(&x, path, a.pos[0], &d);
	if (!rc && d.readable)
	{
		if (d.lines)
			printf("%lld failed item%s\n", d.lines, d.lines == 1 ? "" : "s");
		else
			printf("no failed items\n");
	}
	rc = finish_stdout(rc);
	lh_buf_release(&d.line);
	cli_close(&x);
	return rc;
}
