/*
 * cli layer: what the daemon's client commands (client*.c) share: option
 * parsing, the connection to the daemon, reporting the API's errors as one
 * line and an exit code, and following a job's event stream. Not used by
 * `run`, which needs no daemon.
 */
#ifndef LH_CLI_CLIENT_H
#define LH_CLI_CLIENT_H

#include <jansson.h>
#include <stdio.h>
#include "cli/httpc.h"
#include "engine/report.h"

/* Exit codes of the client commands besides LH_EXIT_* (engine/run.h);
 * docs/cli.md lists them all. The values are the sysexits.h ones. */
#define CLI_EXIT_UNAVAILABLE 69 /* no daemon at the URL, or it could not be reached */
#define CLI_EXIT_NOPERM 77      /* the daemon wants a token (LONGHAUL_TOKEN) */

#define CLI_DEFAULT_URL "http://127.0.0.1:8421"
#define CLI_CALL_TIMEOUT 300.0 /* seconds for one control request */
#define CLI_MAX_POS 256

/* One command-specific option: a flag (value == NULL, *flag set to 1) or an
 * option with a value (*value set, borrowed from argv). */
struct cli_opt {
	const char *name;
	const char **value;
	int *flag;
};

struct cli_args {
	int json;
	const char *url;               /* --url, or NULL */
	const char *pos[CLI_MAX_POS];  /* positional arguments, borrowed from argv */
	int npos;
};

/* The connection and output mode of one command. */
struct cli_ctx {
	const char *cmd;     /* "ls", "status", ... for messages */
	struct lh_httpc *http;
	char url[512];       /* the daemon's base URL */
	int json;
	int has_token;
	const char *input;   /* the file a 400 is about (submit), or NULL */
	char job_id[24];     /* the job a name resolved to (cli_connect_job) */
};

/* Parses argv (argv[0] is the command) into a: --json, --url URL, --help
 * and the given options; everything else is positional. Returns 0, 1 after
 * printing help (exit 0), or -1 after printing a usage error (exit 2). */
int cli_parse(int argc, char **argv, const struct cli_opt *opts, void (*usage)(FILE *), struct cli_args *a);
/* Opens the connection (URL from --url, LONGHAUL_URL or the default; token
 * from LONGHAUL_TOKEN) and installs the SIGINT/SIGTERM handlers. Returns 0,
 * or an exit code after reporting. */
int cli_connect(struct cli_ctx *x, const char *cmd, const struct cli_args *a);
/* cli_connect, then a->pos[0], a job's id or its name, becomes the job's id
 * (a->pos[0] then points into x). A name must belong to exactly one job:
 * none, or several (listed by id), is reported and gives exit 1, with the
 * connection closed. */
int cli_connect_job(struct cli_ctx *x, const char *cmd, struct cli_args *a);
void cli_close(struct cli_ctx *x);
/* Checks that s can name a job (an id, or a name: 1 to 256 bytes, no
 * control characters); reports and returns -1 otherwise. */
int cli_check_id(const char *cmd, const char *s);
/* Parses the integer value v of option name into *out, within [min, max];
 * reports (naming cmd and name) and returns -1 otherwise. */
int cli_parse_int(const char *cmd, const char *name, const char *v, long long min, long long max, long long *out);

/* Reports a failed request (transport failure, or an answer outside 2xx)
 * as one line on stderr and returns the exit code. job (may be NULL) names
 * the job the request was about. */
int cli_fail(struct cli_ctx *x, const struct lh_http_resp *r, const char *job);
/* Performs method path with an optional JSON body; on a 2xx answer returns
 * 0 and, when out is non-NULL, the parsed body in *out (new reference; an
 * answer that is not JSON is reported, exit 1). Otherwise reports the
 * failure and returns the exit code. raw (may be NULL) receives the answer
 * as sent (the caller initialises and releases it). */
int cli_call(struct cli_ctx *x, const char *method, const char *path, const char *body, const char *job,
	     json_t **out, struct lh_http_resp *raw);
/* Writes a body to stdout, adding a final newline when it lacks one. */
void cli_print_body(const struct lh_buf *b);
/* 128 + the signal that interrupted the command, or 0. */
int cli_interrupted(void);

/* Appends s to out, percent-encoded for a query string. */
int cli_escape(struct lh_buf *out, const char *s) LH_WUR;

/* Borrowed string member, or NULL. */
const char *cli_jstr(json_t *o, const char *key);
/* Number member (integer or real), or def. */
double cli_jnum(json_t *o, const char *key, double def);
/* "counts" member of a job. */
double cli_jcount(json_t *job, const char *key);
/* A job's figures for lh_report_bar and friends; the state is borrowed
 * from job. */
void cli_job_view(json_t *job, struct lh_progress_view *v);
/* The job's last error for a person: "code: message" in full, from any of
 * the shapes it comes in; new string, or NULL when there is none. */
char *cli_job_error(json_t *job);
/* 1 when the job stopped early: paused with the reason early_stop. */
int cli_job_stopped(json_t *job);
/* Reports on stderr why the job stopped early, in full, and how to go on. */
void cli_job_stop_report(json_t *job);
/* 1 when the job is in a final state. */
int cli_job_final(json_t *job);
/* The exit code of a finished job: 0 completed without failures, 4
 * completed with failures, 1 failed, cancelled or timed out. */
int cli_job_exit(json_t *job);
/* "job 12 completed: 990 succeeded, 10 failed of 1000 in 12s" with a newline. */
void cli_job_summary(FILE *out, json_t *job);
/* Seconds since the epoch from "2026-11-22T05:00:01.000Z"; -1 when s is
 * NULL or malformed. */
double cli_parse_time(const char *s);

/* Following a job's event stream (client_follow.c). */
enum cli_progress { CLI_PROGRESS_NONE, CLI_PROGRESS_BAR, CLI_PROGRESS_LINES };
enum cli_events { CLI_EVENTS_NONE, CLI_EVENTS_TEXT, CLI_EVENTS_JSON };
struct cli_follow_opts {
	enum cli_progress progress;
	FILE *progress_out;
	enum cli_events events;     /* printed on stdout */
	int stop_on_final;          /* end when the job reaches a final state or stops early */
	int end_on_final;           /* end (exit 0) after printing a final state's event */
	const char *after;          /* resume after this event number, or NULL */
	json_t **final_job;         /* receives the last job seen (new reference), or NULL */
};
/* Follows job id until it is final (stop_on_final) or deleted, or forever.
 * Returns the exit code: cli_job_exit of the final job, 0 when a followed
 * log ends with the job's deletion, or an error's code after reporting. */
int cli_follow(struct cli_ctx *x, const char *id, const struct cli_follow_opts *o);
/* Prints one event as a log line or a JSON line. */
void cli_print_event(json_t *ev, enum cli_events how);

#endif
