/*
 * cli layer: `longhaul run FILE [options]`. Parses flags, loads the spec,
 * merges flags > spec > environment > defaults, and hands over to the
 * engine. Only usage is checked here; the engine validates the input.
 */
#include "cli/cli.h"
#include "engine/run.h"
#include "io/input.h"
#include "util/log.h"
#include "util/mem.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void run_usage(FILE *out)
{
	fprintf(out,
		"usage: longhaul run FILE [options]\n"
		"\n"
		"FILE is an OpenAI Batch API input file (.jsonl) or a job spec (YAML or JSON).\n"
		"Running the same command again resumes the job where it stopped.\n"
		"\n"
		"options:\n"
		"  --base-url URL            OpenAI-compatible server (default $OPENAI_BASE_URL,\n"
		"                            else http://127.0.0.1:11434/v1)\n"
		"  --api-key-env NAME        read the API key from $NAME (default $OPENAI_API_KEY)\n"
		"  --model NAME              model to use (overrides the batch lines and the spec)\n"
		"  --concurrency N           requests in flight (default 8)\n"
		"  --store PATH              store file (default FILE.longhaul.db)\n"
		"  --output PATH             results (default FILE.out.jsonl)\n"
		"  --errors PATH             failed items (default FILE.errors.jsonl)\n"
		"  --progress-file PATH      progress figures (default FILE.progress.json)\n"
		"  --max-attempts N          attempts per item (default 5)\n"
		"  --connect-timeout S       seconds to connect (default 10)\n"
		"  --request-timeout S       seconds for a whole request (default 600)\n"
		"  --first-token-timeout S   seconds to the first streamed token (default 60)\n"
		"  --grace S                 seconds to let requests finish on SIGINT/SIGTERM (default 30)\n"
		"  --sync normal|full        normal survives crashes; full survives power loss\n"
		"  --restart                 discard earlier progress of this job and start over\n"
		"  --quiet                   no progress output\n"
		"\n"
		"exit codes: 0 all succeeded, 2 usage, 3 bad input, 4 some items failed,\n"
		"5 stopped early (every request failed the same permanent way), 6 store error,\n"
		"7 store in use by another process, 130/143 interrupted (run again to resume)\n");
}

struct flags {
	const char *file, *base_url, *key_env, *model, *store, *output, *errors, *progress_file, *sync;
	long concurrency, max_attempts;
	double connect_t, request_t, first_t, grace;
	int restart, quiet;
};

static int parse_long(const char *name, const char *v, long min, long *out)
{
	char *end;
	long x;
	errno = 0;
	x = strtol(v, &end, 10);
	if (errno || end == v || *end || x < min) {
		fprintf(stderr, "longhaul: %s: expected an integer >= %ld, got \"%s\"\n", name, min, v);
		return -1;
	}
	*out = x;
	return 0;
}

static int parse_secs(const char *name, const char *v, double *out)
{
	char *end;
	double x;
	errno = 0;
	x = strtod(v, &end);
	if (errno || end == v || *end || !isfinite(x) || x <= 0) {
		fprintf(stderr, "longhaul: %s: expected a number of seconds > 0, got \"%s\"\n", name, v);
		return -1;
	}
	*out = x;
	return 0;
}

static int parse_flags(int argc, char **argv, struct flags *f)
{
	memset(f, 0, sizeof *f);
	f->concurrency = f->max_attempts = -1;
	f->connect_t = f->request_t = f->first_t = f->grace = -1;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = NULL, *eq;
		char name[64];
		if (a[0] != '-' || !strcmp(a, "-")) {
			if (f->file) {
				fprintf(stderr, "longhaul: run takes one FILE, got \"%s\" and \"%s\"\n", f->file, a);
				return -1;
			}
			f->file = a;
			continue;
		}
		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			run_usage(stdout);
			return 1;
		}
		if (!strcmp(a, "--restart")) {
			f->restart = 1;
			continue;
		}
		if (!strcmp(a, "--quiet") || !strcmp(a, "-q")) {
			f->quiet = 1;
			continue;
		}
		eq = strchr(a, '=');
		if (eq) {
			snprintf(name, sizeof name, "%.*s", (int)(eq - a), a);
			v = eq + 1;
		} else {
			snprintf(name, sizeof name, "%s", a);
			if (i + 1 >= argc) {
				fprintf(stderr, "longhaul: %s needs a value\n", name);
				return -1;
			}
			v = argv[++i];
		}
		if (!strcmp(name, "--base-url"))
			f->base_url = v;
		else if (!strcmp(name, "--api-key-env"))
			f->key_env = v;
		else if (!strcmp(name, "--model"))
			f->model = v;
		else if (!strcmp(name, "--store"))
			f->store = v;
		else if (!strcmp(name, "--output"))
			f->output = v;
		else if (!strcmp(name, "--errors"))
			f->errors = v;
		else if (!strcmp(name, "--progress-file"))
			f->progress_file = v;
		else if (!strcmp(name, "--sync"))
			f->sync = v;
		else if (!strcmp(name, "--concurrency")) {
			if (parse_long(name, v, 1, &f->concurrency))
				return -1;
		} else if (!strcmp(name, "--max-attempts")) {
			if (parse_long(name, v, 1, &f->max_attempts))
				return -1;
		} else if (!strcmp(name, "--connect-timeout")) {
			if (parse_secs(name, v, &f->connect_t))
				return -1;
		} else if (!strcmp(name, "--request-timeout")) {
			if (parse_secs(name, v, &f->request_t))
				return -1;
		} else if (!strcmp(name, "--first-token-timeout")) {
			if (parse_secs(name, v, &f->first_t))
				return -1;
		} else if (!strcmp(name, "--grace")) {
			if (parse_secs(name, v, &f->grace))
				return -1;
		} else if (!strcmp(name, "--api-key")) {
			fprintf(stderr, "longhaul: --api-key is not accepted: keys on the command line leak into "
					"process lists and shell history; put the key in an environment variable and "
					"pass --api-key-env NAME\n");
			return -1;
		} else {
			fprintf(stderr, "longhaul: unknown option \"%s\" (see longhaul run --help)\n", name);
			return -1;
		}
	}
	if (!f->file) {
		fprintf(stderr, "longhaul: run needs a FILE (see longhaul run --help)\n");
		return -1;
	}
	if (f->sync && strcmp(f->sync, "normal") && strcmp(f->sync, "full")) {
		fprintf(stderr, "longhaul: --sync: expected \"normal\" or \"full\", got \"%s\"\n", f->sync);
		return -1;
	}
	if (f->concurrency > 4096) {
		fprintf(stderr, "longhaul: --concurrency: at most 4096\n");
		return -1;
	}
	return 0;
}

static char *beside(const char *file, const char *suffix)
{
	size_t n = strlen(file) + strlen(suffix) + 1;
	char *p = lh_xmalloc(n);
	snprintf(p, n, "%s%s", file, suffix);
	return p;
}

static double pick(double flag, double spec, double def)
{
	return flag > 0 ? flag : spec > 0 ? spec : def;
}

int cli_run(int argc, char **argv)
{
	struct flags f;
	struct lh_run_opts o;
	struct lh_spec *spec = NULL;
	struct lh_err e;
	char *store = NULL, *out = NULL, *err = NULL, *prog = NULL;
	const char *key_env;
	int rc;

	rc = parse_flags(argc, argv, &f);
	if (rc)
		return rc > 0 ? 0 : LH_EXIT_USAGE;
	memset(&o, 0, sizeof o);
	lh_err_clear(&e);
	o.file = f.file;
	if (lh_input_detect(f.file, &o.kind, &e) != 0) {
		lh_log_err(&e);
		return LH_EXIT_INPUT;
	}
	if (o.kind == LH_INPUT_SPEC && lh_spec_load(f.file, &spec, &e) != 0) {
		lh_log_err(&e);
		return LH_EXIT_INPUT;
	}
	o.spec = spec;

	o.base_url = f.base_url ? f.base_url : spec && spec->base_url ? spec->base_url : getenv("OPENAI_BASE_URL");
	if (!o.base_url || !*o.base_url)
		o.base_url = "http://127.0.0.1:11434/v1";
	key_env = f.key_env ? f.key_env : spec && spec->api_key_env ? spec->api_key_env : NULL;
	if (key_env) {
		o.api_key = getenv(key_env);
		if (!o.api_key || !*o.api_key) {
			fprintf(stderr, "longhaul: the API key variable %s is not set in the environment\n", key_env);
			lh_spec_free(spec);
			return LH_EXIT_USAGE;
		}
	} else {
		o.api_key = getenv("OPENAI_API_KEY");
		if (o.api_key && !*o.api_key)
			o.api_key = NULL;
	}
	o.model = f.model;
	if (spec && !spec->model && !f.model) {
		fprintf(stderr, "longhaul: %s: no model: set \"model\" in the spec or pass --model\n", f.file);
		lh_spec_free(spec);
		return LH_EXIT_USAGE;
	}
	o.concurrency = f.concurrency > 0 ? f.concurrency : spec && spec->concurrency > 0 ? spec->concurrency : 8;
	lh_retry_policy_default(&o.retry);
	if (spec) {
		if (spec->max_attempts > 0)
			o.retry.max_attempts = spec->max_attempts;
		if (spec->retry_base >= 0)
			o.retry.base = spec->retry_base;
		if (spec->retry_factor >= 0)
			o.retry.factor = spec->retry_factor;
		if (spec->retry_cap >= 0)
			o.retry.cap = spec->retry_cap;
		if (spec->retry_jitter >= 0)
			o.retry.jitter = spec->retry_jitter;
	}
	if (f.max_attempts > 0)
		o.retry.max_attempts = (int)f.max_attempts;
	o.connect_timeout = pick(f.connect_t, spec ? spec->connect_timeout : -1, 10);
	o.request_timeout = pick(f.request_t, spec ? spec->request_timeout : -1, 600);
	o.first_token_timeout = pick(f.first_t, spec ? spec->first_token_timeout : -1, 60);
	o.grace = f.grace > 0 ? f.grace : 30;
	o.sync_full = f.sync && !strcmp(f.sync, "full");
	o.restart = f.restart;
	o.quiet = f.quiet;
	o.progress = isatty(STDERR_FILENO);
	o.progress_every = 5;
	o.lease_secs = 600;

	store = f.store ? lh_xstrdup(f.store) : beside(f.file, ".longhaul.db");
	out = f.output ? lh_xstrdup(f.output) : spec && spec->output ? lh_xstrdup(spec->output) : beside(f.file, ".out.jsonl");
	err = f.errors ? lh_xstrdup(f.errors) : spec && spec->errors ? lh_xstrdup(spec->errors) : beside(f.file, ".errors.jsonl");
	prog = f.progress_file ? lh_xstrdup(f.progress_file) : beside(f.file, ".progress.json");
	o.store_path = store;
	o.output_path = out;
	o.errors_path = err;
	o.progress_path = prog;

	rc = lh_run(&o);

	lh_free(store);
	lh_free(out);
	lh_free(err);
	lh_free(prog);
	lh_spec_free(spec);
	return rc;
}
