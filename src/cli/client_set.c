/*
 * cli layer: the client commands that change or remove a job as a whole:
 * `set` (PATCH /v1/jobs/{id}: the settings that leave the items alone) and
 * `rm` (DELETE /v1/jobs/{id}). Thin: the daemon checks every value
 * (engine/jobconf.c); here only numbers are parsed so that a typo is a usage
 * error before anything is sent.
 */
#include "cli/cli.h"
#include "cli/client.h"
#include "engine/run.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- set ---- */

static void set_usage(FILE *out)
{
	fprintf(out,
		"usage: longhaul set ID [options] [--json] [--url URL]\n"
		"\n"
		"Changes the settings of job ID that leave its items alone, for the items\n"
		"still to run. The typical use: a job stopped early (a wrong model, a dead\n"
		"server, a wrong key) is paused; fix it here, then `longhaul resume ID`.\n"
		"A running job finishes its requests in flight and goes on with the new\n"
		"settings. ID is the job's id or its name.\n"
		"\n"
		"options:\n"
		"  --model M                 the model\n"
		"  --base-url URL            the server (http:// or https://)\n"
		"  --api-key-env NAME        the variable that holds the API key (in the\n"
		"                            daemon's environment)\n"
		"  --concurrency N           requests in flight (1 .. 4096)\n"
		"  --max-tokens N            the answer's token limit (\"none\": not sent)\n"
		"  --temperature T           sampling temperature, 0 .. 2 (\"none\": not sent)\n"
		"  --connect-timeout S, --request-timeout S, --first-token-timeout S\n"
		"                            seconds\n"
		"  --max-attempts N          attempts per item, the first included\n"
		"  --priority P              an integer; higher runs first\n"
		"\n"
		"Prints the job's settings as changed; with --json, the API's job JSON.\n"
		"\n"
		"exit codes: 0 changed, 1 error, no such job, or the job has ended, 2 usage,\n"
		"3 the daemon refused a value, 69 no daemon, 77 token missing or wrong\n");
}

/* Parses a number option into the patch; reports and returns -1 when it is
 * not one. none_ok: "none" sets null (the field is no longer sent). */
static int put_num(json_t *patch, json_t *sub, const char *flag, const char *key, const char *v, int integer,
		   int none_ok)
{
	char *end;
	json_t *dst = sub ? sub : patch;
	if (none_ok && !strcmp(v, "none")) {
		json_object_set_new(dst, key, json_null());
		return 0;
	}
	errno = 0;
	if (integer) {
		long long x = strtoll(v, &end, 10);
		if (!errno && end != v && !*end) {
			json_object_set_new(dst, key, json_integer(x));
			return 0;
		}
	} else {
		double x = strtod(v, &end);
		if (!errno && end != v && !*end && isfinite(x)) {
			json_object_set_new(dst, key, json_real(x));
			return 0;
		}
	}
	fprintf(stderr, "longhaul: error: set: %s: expected %s%s, got \"%s\"\n", flag,
		integer ? "an integer" : "a number", none_ok ? " or \"none\"" : "", v);
	return -1;
}

int cli_set(int argc, char **argv)
{
	const char *model = NULL, *base = NULL, *key_env = NULL, *conc = NULL, *max_tok = NULL, *temp = NULL,
		   *ct = NULL, *rt = NULL, *ft = NULL, *attempts = NULL, *prio = NULL;
	struct cli_opt opts[] = {
		{ "--model", &model, NULL },	     { "--base-url", &base, NULL },
		{ "--api-key-env", &key_env, NULL }, { "--concurrency", &conc, NULL },
		{ "--max-tokens", &max_tok, NULL },  { "--temperature", &temp, NULL },
		{ "--connect-timeout", &ct, NULL },  { "--request-timeout", &rt, NULL },
		{ "--first-token-timeout", &ft, NULL }, { "--max-attempts", &attempts, NULL },
		{ "--priority", &prio, NULL },	     { NULL, NULL, NULL },
	};
	struct cli_args a;
	struct cli_ctx x;
	struct lh_http_resp r;
	json_t *patch, *timeouts, *job = NULL;
	char path[64], *body = NULL;
	int rc = cli_parse(argc, argv, opts, set_usage, &a);
	if (rc)
		return rc > 0 ? LH_EXIT_OK : LH_EXIT_USAGE;
	if (a.npos != 1) {
		fprintf(stderr, "longhaul: error: set takes one job ID and options (see longhaul set --help)\n");
		return LH_EXIT_USAGE;
	}
	if (cli_check_id("set", a.pos[0]))
		return LH_EXIT_USAGE;
	patch = json_object();
	timeouts = json_object();
	if (model)
		json_object_set_new(patch, "model", json_string(model));
	if (base)
		json_object_set_new(patch, "base_url", json_string(base));
	if (key_env)
		json_object_set_new(patch, "api_key_env", json_string(key_env));
	if ((conc && put_num(patch, NULL, "--concurrency", "concurrency", conc, 1, 0)) ||
	    (max_tok && put_num(patch, NULL, "--max-tokens", "max_tokens", max_tok, 1, 1)) ||
	    (temp && put_num(patch, NULL, "--temperature", "temperature", temp, 0, 1)) ||
	    (ct && put_num(patch, timeouts, "--connect-timeout", "connect", ct, 0, 0)) ||
	    (rt && put_num(patch, timeouts, "--request-timeout", "request", rt, 0, 0)) ||
	    (ft && put_num(patch, timeouts, "--first-token-timeout", "first_token", ft, 0, 0)) ||
	    (attempts && put_num(patch, NULL, "--max-attempts", "max_attempts", attempts, 1, 0)) ||
	    (prio && put_num(patch, NULL, "--priority", "priority", prio, 1, 0))) {
		json_decref(timeouts);
		json_decref(patch);
		return LH_EXIT_USAGE;
	}
	if (json_object_size(timeouts))
		json_object_set(patch, "timeouts", timeouts);
	json_decref(timeouts);
	/* json_string refuses text that is not UTF-8: the field is then missing. */
	if ((model && !json_object_get(patch, "model")) || (base && !json_object_get(patch, "base_url")) ||
	    (key_env && !json_object_get(patch, "api_key_env"))) {
		fprintf(stderr, "longhaul: error: set: the values must be UTF-8 text\n");
		json_decref(patch);
		return LH_EXIT_USAGE;
	}
	if (json_object_size(patch) == 0) {
		fprintf(stderr, "longhaul: error: set: nothing to change (see longhaul set --help)\n");
		json_decref(patch);
		return LH_EXIT_USAGE;
	}
	body = json_dumps(patch, JSON_COMPACT);
	json_decref(patch);
	if (!body)
		return LH_EXIT_INTERNAL;
	rc = cli_connect_job(&x, "set", &a);
	if (rc) {
		free(body);
		return rc;
	}
	lh_http_resp_init(&r);
	snprintf(path, sizeof path, "/v1/jobs/%s", a.pos[0]);
	rc = cli_call(&x, "PATCH", path, body, a.pos[0], &job, &r);
	if (!rc) {
		if (x.json) {
			cli_print_body(&r.body);
		} else {
			const char *st = cli_jstr(job, "state");
			printf("job %s: settings changed (%s)", a.pos[0], body);
			if (st && !strcmp(st, "paused"))
				printf("; the job is paused: longhaul resume %s runs the rest with them", a.pos[0]);
			else if (st)
				printf("; the job is %s", st);
			printf("\n");
		}
	}
	json_decref(job);
	free(body);
	lh_http_resp_release(&r);
	cli_close(&x);
	return rc;
}

/* ---- rm ---- */

static void rm_usage(FILE *out)
{
	fprintf(out,
		"usage: longhaul rm ID [--json] [--url URL]\n"
		"\n"
		"Deletes job ID with its items, results and events (DELETE /v1/jobs/ID).\n"
		"Requests in flight are aborted. ID is the job's id or its name. Nothing\n"
		"of the job can be recovered afterwards: download what you need first\n"
		"(longhaul results ID -o FILE).\n"
		"\n"
		"exit codes: 0 deleted, 1 error or no such job, 2 usage, 69 no daemon,\n"
		"77 token missing or wrong\n");
}

int cli_rm(int argc, char **argv)
{
	struct cli_args a;
	struct cli_ctx x;
	char path[64];
	int rc = cli_parse(argc, argv, NULL, rm_usage, &a);
	if (rc)
		return rc > 0 ? LH_EXIT_OK : LH_EXIT_USAGE;
	if (a.npos != 1) {
		fprintf(stderr, "longhaul: error: rm takes one job ID (see longhaul rm --help)\n");
		return LH_EXIT_USAGE;
	}
	if (cli_check_id("rm", a.pos[0]))
		return LH_EXIT_USAGE;
	rc = cli_connect_job(&x, "rm", &a);
	if (rc)
		return rc;
	snprintf(path, sizeof path, "/v1/jobs/%s", a.pos[0]);
	rc = cli_call(&x, "DELETE", path, NULL, a.pos[0], NULL, NULL);
	if (!rc) {
		if (x.json)
			printf("{\"id\":%s,\"deleted\":true}\n", a.pos[0]);
		else
			printf("job %s deleted\n", a.pos[0]);
	}
	cli_close(&x);
	return rc;
}
