/*
 * cli layer: `longhaul run INPUT [options]`. Parses flags, tells what the
 * input is (a batch file, a spec, records with --prompt, standard input),
 * loads the spec, merges flags > spec > environment > defaults, checks
 * what the command line alone decides (the base URL, the model), and hands
 * over to the engine (engine/run.c), which validates the input and the
 * output paths before anything is written.
 */
#include "cli/cli.h"
#include "engine/jobconf.h"
#include "engine/run.h"
#include "io/input.h"
#include "llm/llm.h"
#include "util/buf.h"
#include "util/fdlimit.h"
#include "util/log.h"
#include "util/mem.h"
#include "util/url.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DEFAULT_WAIT_FOR_SERVER 120.0

static void run_usage(FILE *out)
{
	fprintf(out,
		"usage: longhaul run FILE [options]\n"
		"       longhaul run INPUT --prompt TEMPLATE --model NAME [--system TEXT] [options]\n"
		"       longhaul run - --store PATH [options] < batch.jsonl\n"
		"\n"
		"FILE is an OpenAI Batch API input file (.jsonl) or a job spec (YAML or JSON).\n"
		"INPUT with --prompt is a JSONL file of records, a directory or a glob: the\n"
		"template ({{field}}, or {{text}} and {{path}} for files) is sent for each.\n"
		"\"-\" reads a batch file from standard input (the store keeps its items).\n"
		"Running the same command again resumes the job where it stopped.\n"
		"\n"
		"options:\n"
		"  --base-url URL            OpenAI-compatible server (default $OPENAI_BASE_URL,\n"
		"                            else http://127.0.0.1:11434/v1)\n"
		"  --api-key-env NAME        read the API key from $NAME (default $OPENAI_API_KEY)\n"
		"  --model NAME              model to use (overrides the batch lines and the spec)\n"
		"  --prompt TEMPLATE         run this prompt over the records or files of INPUT\n"
		"  --system TEXT             with --prompt: the system message\n"
		"  --concurrency N           requests in flight (default 8, at most 65536; the open\n"
		"                            files limit is raised to match, up to the hard limit)\n"
		"  --store PATH              store file (default FILE.longhaul.db)\n"
		"  --output PATH             results (default FILE.out.jsonl)\n"
		"  --errors PATH             failed items, written only when some failed\n"
		"                            (default FILE.errors.jsonl)\n"
		"  --progress-file PATH      progress figures (default FILE.progress.json)\n"
		"  --max-attempts N          attempts per item (default 5)\n"
		"  --connect-timeout S       seconds to connect (default 10)\n"
		"  --request-timeout S       seconds for a whole request (default 600)\n"
		"  --first-token-timeout S   seconds to the first streamed token (default 60)\n"
		"  --wait-for-server S       wait up to S seconds for a server that is not up yet\n"
		"                            (default 120; 0: stop at once)\n"
		"  --grace S                 seconds to let requests finish on SIGINT/SIGTERM (default 30)\n"
		"  --time-limit S            stop after S seconds of running, across runs (exit 9;\n"
		"                            the job is timed_out; default: the spec's time_limit)\n"
		"  --reduce-output PATH      a pipeline's reduce result (default FILE.reduce.md, or\n"
		"                            the spec's reduce.output)\n"
		"  --sync normal|full        normal survives crashes; full survives power loss\n"
		"  --retry-failed            run the failed items again (attempts reset); successes are kept\n"
		"  --restart                 discard everything of this job and start over\n"
		"  --quiet                   no progress output\n"
		"\n"
		"exit codes: 0 all succeeded, 2 usage, 3 bad input, 4 some items failed,\n"
		"5 stopped early (every request failed the same permanent way, or the server\n"
		"could not be reached), 6 store error or damaged journal, 7 store in use by\n"
		"another process, 8 only items waiting for approval are left (longhaul approve,\n"
		"then run again), 9 time limit reached, 130/143 interrupted (run again to resume)\n");
}

/* Every flag of `run`, with whether it takes a value: one table for the
 * parser and for the resume command. */
enum flag_id {
	F_BASE_URL, F_KEY_ENV, F_MODEL, F_PROMPT, F_SYSTEM, F_CONCURRENCY, F_STORE, F_OUTPUT, F_ERRORS,
	F_PROGRESS, F_MAX_ATTEMPTS, F_CONNECT_T, F_REQUEST_T, F_FIRST_T, F_WAIT, F_GRACE, F_SYNC, F_RETRY_FAILED,
	F_RESTART, F_QUIET, F_HELP, F_API_KEY, F_TIME_LIMIT, F_REDUCE_OUT, F_N
};

static const struct flagdef {
	const char *name, *alias;
	int value;
} flag_defs[F_N] = {
	[F_BASE_URL] = { "--base-url", NULL, 1 },
	[F_KEY_ENV] = { "--api-key-env", NULL, 1 },
	[F_MODEL] = { "--model", NULL, 1 },
	[F_PROMPT] = { "--prompt", NULL, 1 },
	[F_SYSTEM] = { "--system", NULL, 1 },
	[F_CONCURRENCY] = { "--concurrency", NULL, 1 },
	[F_STORE] = { "--store", NULL, 1 },
	[F_OUTPUT] = { "--output", NULL, 1 },
	[F_ERRORS] = { "--errors", NULL, 1 },
	[F_PROGRESS] = { "--progress-file", NULL, 1 },
	[F_MAX_ATTEMPTS] = { "--max-attempts", NULL, 1 },
	[F_CONNECT_T] = { "--connect-timeout", NULL, 1 },
	[F_REQUEST_T] = { "--request-timeout", NULL, 1 },
	[F_FIRST_T] = { "--first-token-timeout", NULL, 1 },
	[F_WAIT] = { "--wait-for-server", NULL, 1 },
	[F_GRACE] = { "--grace", NULL, 1 },
	[F_SYNC] = { "--sync", NULL, 1 },
	[F_RETRY_FAILED] = { "--retry-failed", NULL, 0 },
	[F_RESTART] = { "--restart", NULL, 0 },
	[F_QUIET] = { "--quiet", "-q", 0 },
	[F_HELP] = { "--help", "-h", 0 },
	[F_API_KEY] = { "--api-key", NULL, 1 },
	[F_TIME_LIMIT] = { "--time-limit", NULL, 1 },
	[F_REDUCE_OUT] = { "--reduce-output", NULL, 1 },
};

static int flag_of(const char *name)
{
	for (int i = 0; i < F_N; i++)
		if (!strcmp(name, flag_defs[i].name) || (flag_defs[i].alias && !strcmp(name, flag_defs[i].alias)))
			return i;
	return -1;
}

struct flags {
	const char *file;
	const char *val[F_N];       /* the value of each flag given, NULL when absent */
	int on[F_N];                /* boolean flags */
	long concurrency, max_attempts;
	double connect_t, request_t, first_t, grace, wait, time_limit;
};

static int parse_long(const char *name, const char *v, long min, long max, long *out)
{
	char *end;
	long x;
	errno = 0;
	x = strtol(v, &end, 10);
	if (errno || end == v || *end || x < min || x > max) {
		fprintf(stderr, "longhaul: error: %s: expected an integer from %ld to %ld, got \"%s\"\n", name, min,
			max, v);
		return -1;
	}
	*out = x;
	return 0;
}

/* Seconds: a finite number > 0, or >= 0 when zero_ok. */
static int parse_secs(const char *name, const char *v, int zero_ok, double *out)
{
	char *end;
	double x;
	errno = 0;
	x = strtod(v, &end);
	if (errno || end == v || *end || !isfinite(x) || x < 0 || (x == 0 && !zero_ok) || x > 604800) {
		fprintf(stderr, "longhaul: error: %s: expected a number of seconds %s 0 (at most a week), got \"%s\"\n",
			name, zero_ok ? ">=" : ">", v);
		return -1;
	}
	*out = x;
	return 0;
}

/* Splits argv[*i] into a known flag and its value. Returns the flag, or -1
 * having reported an unknown flag or a missing value. */
static int next_flag(int argc, char **argv, int *i, const char **value)
{
	const char *a = argv[*i], *eq = strchr(a, '=');
	char name[64];
	int id;
	snprintf(name, sizeof name, "%.*s", eq ? (int)(eq - a) : (int)strlen(a), a);
	id = flag_of(name);
	/* Unknown first: "--quite" at the end of the line is a typo, not a
	 * flag short of its value. */
	if (id < 0) {
		fprintf(stderr, "longhaul: error: unknown option \"%s\" (see longhaul run --help)\n", name);
		return -1;
	}
	*value = NULL;
	if (!flag_defs[id].value) {
		if (eq) {
			fprintf(stderr, "longhaul: error: %s takes no value\n", name);
			return -1;
		}
		return id;
	}
	if (eq) {
		*value = eq + 1;
	} else if (*i + 1 < argc) {
		*value = argv[++*i];
	} else if (id != F_API_KEY) {
		fprintf(stderr, "longhaul: error: %s needs a value\n", name);
		return -1;
	}
	return id;
}

static int check_flags(struct flags *f)
{
	const char **v = f->val;
	if (v[F_CONCURRENCY] && parse_long("--concurrency", v[F_CONCURRENCY], 1, LH_CONCURRENCY_MAX, &f->concurrency))
		return -1;
	if (v[F_MAX_ATTEMPTS] && parse_long("--max-attempts", v[F_MAX_ATTEMPTS], 1, 1000, &f->max_attempts))
		return -1;
	if ((v[F_CONNECT_T] && parse_secs("--connect-timeout", v[F_CONNECT_T], 0, &f->connect_t)) ||
	    (v[F_REQUEST_T] && parse_secs("--request-timeout", v[F_REQUEST_T], 0, &f->request_t)) ||
	    (v[F_FIRST_T] && parse_secs("--first-token-timeout", v[F_FIRST_T], 0, &f->first_t)) ||
	    (v[F_GRACE] && parse_secs("--grace", v[F_GRACE], 0, &f->grace)) ||
	    (v[F_WAIT] && parse_secs("--wait-for-server", v[F_WAIT], 1, &f->wait)) ||
	    (v[F_TIME_LIMIT] && parse_secs("--time-limit", v[F_TIME_LIMIT], 0, &f->time_limit)))
		return -1;
	if (v[F_SYNC] && strcmp(v[F_SYNC], "normal") && strcmp(v[F_SYNC], "full")) {
		fprintf(stderr, "longhaul: error: --sync: expected \"normal\" or \"full\", got \"%s\"\n", v[F_SYNC]);
		return -1;
	}
	if (f->on[F_RESTART] && f->on[F_RETRY_FAILED]) {
		fprintf(stderr, "longhaul: error: --restart discards every result and --retry-failed keeps the "
				"successes: pass one of them\n");
		return -1;
	}
	if (v[F_SYSTEM] && !v[F_PROMPT]) {
		fprintf(stderr, "longhaul: error: --system goes with --prompt (a spec has its own \"system\")\n");
		return -1;
	}
	return 0;
}

static int parse_flags(int argc, char **argv, struct flags *f)
{
	memset(f, 0, sizeof *f);
	f->concurrency = f->max_attempts = -1;
	f->connect_t = f->request_t = f->first_t = f->grace = f->wait = -1;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v;
		int id;
		if (a[0] != '-' || !strcmp(a, "-")) {
			if (f->file) {
				fprintf(stderr, "longhaul: error: run takes one input, got \"%s\" and \"%s\"\n", f->file,
					a);
				return -1;
			}
			f->file = a;
			continue;
		}
		id = next_flag(argc, argv, &i, &v);
		if (id < 0)
			return -1;
		if (id == F_HELP) {
			run_usage(stdout);
			return 1;
		}
		if (id == F_API_KEY) {
			fprintf(stderr, "longhaul: error: --api-key is not accepted: keys on the command line leak "
					"into process lists and shell history; put the key in an environment variable "
					"and pass --api-key-env NAME\n");
			return -1;
		}
		if (flag_defs[id].value)
			f->val[id] = v;
		else
			f->on[id] = 1;
	}
	if (!f->file) {
		fprintf(stderr, "longhaul: error: run needs an input file (see longhaul run --help)\n");
		return -1;
	}
	return check_flags(f);
}

/* ---- the resume command ---- */

static int shell_safe(const char *s)
{
	if (!*s)
		return 0;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
		      strchr("_@%+=:,./-", *s)))
			return 0;
	return 1;
}

static int put_word(struct lh_buf *b, const char *s)
{
	int rc = lh_buf_putc(b, ' ');
	if (shell_safe(s))
		return rc | lh_buf_puts(b, s);
	rc |= lh_buf_putc(b, '\'');
	for (; *s && !rc; s++)
		rc = *s == '\'' ? lh_buf_puts(b, "'\\''") : lh_buf_putc(b, *s);
	return rc | lh_buf_putc(b, '\'');
}

/* The command that resumes this run: the same words, shell-quoted where
 * needed, without --restart and --retry-failed (repeating them would
 * discard or redo work) and without any secret (a key is never a flag,
 * and a base URL never holds a password: lh_url_check_base). New
 * string. */
static char *resume_command(int argc, char **argv)
{
	struct lh_buf b;
	int rc;
	lh_buf_init(&b, 0);
	rc = lh_buf_puts(&b, "longhaul run");
	for (int i = 1; i < argc && !rc; i++) {
		const char *a = argv[i], *v = NULL;
		int id, j = i;
		if (a[0] != '-' || !strcmp(a, "-")) {
			rc = put_word(&b, a);
			continue;
		}
		id = next_flag(argc, argv, &j, &v); /* argv was checked: no message here */
		if (id == F_RESTART || id == F_RETRY_FAILED) {
			i = j;
			continue;
		}
		for (int k = i; k <= j && !rc; k++)
			rc = put_word(&b, argv[k]);
		i = j;
	}
	if (rc) {
		lh_buf_release(&b);
		return NULL;
	}
	return lh_buf_steal(&b);
}

/* ---- the input ---- */

static char *beside(const char *file, const char *suffix)
{
	size_t n = strlen(file) + strlen(suffix) + 1;
	char *p = lh_xmalloc(n);
	snprintf(p, n, "%s%s", file, suffix);
	return p;
}

static int has_glob(const char *s)
{
	return strpbrk(s, "*?[") != NULL;
}

/* What the default files of records are named after: the input without a
 * trailing slash; for a glob, its literal directory; "run" (in the current
 * directory) when that leaves nothing to name them after. New string. */
static char *records_base(const char *input)
{
	char *s = lh_xstrdup(input);
	size_t n;
	if (has_glob(s)) {
		char *w = strpbrk(s, "*?["), *slash;
		*w = '\0';
		slash = strrchr(s, '/');
		if (slash)
			*slash = '\0';
		else
			s[0] = '\0';
	}
	n = strlen(s);
	while (n > 1 && s[n - 1] == '/')
		s[--n] = '\0';
	if (!n || !strcmp(s, ".") || !strcmp(s, "..") || !strcmp(s, "/") || (n >= 3 && !strcmp(s + n - 3, "/..")) ||
	    (n >= 2 && !strcmp(s + n - 2, "/."))) {
		lh_free(s);
		return lh_xstrdup("run");
	}
	return s;
}

static void records_hint(const char *file)
{
	fprintf(stderr,
		"longhaul: error: %s looks like a JSONL file of records, not an OpenAI batch file or a job spec.\n"
		"Run a prompt over its records ({{field}} takes a record's field):\n"
		"  longhaul run %s --prompt \"Summarise: {{text}}\" --model MODEL\n"
		"or write a job spec, say job.yaml, and run longhaul run job.yaml:\n"
		"  input: %s\n"
		"  prompt: \"Summarise: {{text}}\"\n"
		"  model: MODEL\n",
		file, file, file);
}

/* Tells what f->file is and loads the spec when there is one; returns 0 or
 * an exit code, having reported. */
static int take_input(const struct flags *f, struct lh_run_opts *o, struct lh_spec **spec)
{
	const char *prompt = f->val[F_PROMPT], *file = f->file;
	struct lh_err e;
	struct stat sb;
	int rc;
	lh_err_clear(&e);
	if (!strcmp(file, "-")) {
		if (!f->val[F_STORE]) {
			fprintf(stderr, "longhaul: error: run - needs --store PATH: the store keeps the items of "
					"standard input, so that the same command can resume\n");
			return LH_EXIT_USAGE;
		}
		if (prompt) {
			fprintf(stderr, "longhaul: error: run - reads an OpenAI batch file; for records with "
					"--prompt, save them to a file and run that file\n");
			return LH_EXIT_USAGE;
		}
		o->from_stdin = 1;
		o->kind = LH_INPUT_BATCH;
		return 0;
	}
	if (prompt && !f->val[F_MODEL]) {
		fprintf(stderr, "longhaul: error: --prompt needs --model NAME (the model to send each record to)\n");
		return LH_EXIT_USAGE;
	}
	if (stat(file, &sb) == 0 && S_ISDIR(sb.st_mode) && !prompt) {
		fprintf(stderr, "longhaul: error: %s is a directory: to run a prompt over its files, pass --prompt "
				"TEMPLATE --model NAME ({{text}} and {{path}} take each file's text and path); "
				"otherwise name a batch file or a job spec\n", file);
		return LH_EXIT_INPUT;
	}
	if (stat(file, &sb) != 0 && errno == ENOENT && has_glob(file) && !prompt) {
		fprintf(stderr, "longhaul: error: %s: no such file; to run a prompt over the files this glob "
				"matches, pass --prompt TEMPLATE --model NAME\n", file);
		return LH_EXIT_INPUT;
	}
	if (!prompt || (stat(file, &sb) == 0 && S_ISREG(sb.st_mode))) {
		if (lh_input_detect(file, &o->kind, &e) != 0) {
			lh_log_err(&e);
			return LH_EXIT_INPUT;
		}
		if (prompt && o->kind == LH_INPUT_BATCH) {
			fprintf(stderr, "longhaul: error: --prompt is for records; %s is an OpenAI batch file, which "
					"carries its own requests: run it without --prompt\n", file);
			return LH_EXIT_USAGE;
		}
		if (!prompt && o->kind == LH_INPUT_RECORDS) {
			records_hint(file);
			return LH_EXIT_USAGE;
		}
	}
	if (prompt) {
		/* Whatever the first line looked like: --prompt says records. */
		o->kind = LH_INPUT_RECORDS;
		rc = lh_spec_for_records(file, prompt, f->val[F_SYSTEM], f->val[F_MODEL], spec, &e);
	} else if (o->kind == LH_INPUT_SPEC) {
		rc = lh_spec_load(file, spec, &e);
	} else {
		rc = 0;
	}
	if (rc) {
		lh_log_err(&e);
		return rc == LH_EUSAGE ? LH_EXIT_USAGE : LH_EXIT_INPUT;
	}
	return 0;
}

/* The base URL in use, checked; its source is named when it is wrong. */
static int take_base_url(const struct flags *f, const struct lh_spec *spec, struct lh_run_opts *o)
{
	const char *env = getenv("OPENAI_BASE_URL");
	char where[600];
	struct lh_err e;
	lh_err_clear(&e);
	if (f->val[F_BASE_URL]) {
		o->base_url = f->val[F_BASE_URL];
		snprintf(where, sizeof where, "--base-url");
	} else if (spec && spec->base_url) {
		o->base_url = spec->base_url;
		snprintf(where, sizeof where, "%s: field \"base_url\"", spec->path);
	} else if (env && *env) {
		o->base_url = env;
		snprintf(where, sizeof where, "OPENAI_BASE_URL");
	} else {
		o->base_url = "http://127.0.0.1:11434/v1";
		return 0;
	}
	if (lh_url_check_base(o->base_url, &e) != 0) {
		fprintf(stderr, "longhaul: error: %s: %s\n", where, e.msg);
		return LH_EXIT_USAGE;
	}
	return 0;
}

static double pick(double flag, double spec, double def)
{
	return flag > 0 ? flag : spec > 0 ? spec : def;
}

/* Flags > the spec > the defaults. The spec's settings are read as the
 * daemon reads a stored spec (engine/jobconf.c), so both agree. */
static void take_settings(const struct flags *f, const struct lh_spec *spec, struct lh_run_opts *o)
{
	struct lh_job_conf sc;
	char *json = spec ? lh_spec_to_json(spec) : NULL;
	lh_jobconf_settings(json, &sc);
	lh_free(json);
	o->model = f->val[F_MODEL];
	o->concurrency = f->concurrency > 0 ? f->concurrency : sc.concurrency > 0 ? sc.concurrency : 8;
	o->retry = sc.retry;
	if (f->max_attempts > 0)
		o->retry.max_attempts = (int)f->max_attempts;
	o->connect_timeout = pick(f->connect_t, sc.connect_timeout, 10);
	o->request_timeout = pick(f->request_t, sc.request_timeout, 600);
	o->first_token_timeout = pick(f->first_t, sc.first_token_timeout, 60);
	o->grace = f->grace > 0 ? f->grace : 30;
	o->wait_for_server = f->wait >= 0 ? f->wait : DEFAULT_WAIT_FOR_SERVER;
	o->time_limit = f->time_limit > 0 ? f->time_limit : 0;
	o->sync_full = f->val[F_SYNC] && !strcmp(f->val[F_SYNC], "full");
	o->restart = f->on[F_RESTART];
	o->retry_failed = f->on[F_RETRY_FAILED];
	o->quiet = f->on[F_QUIET];
	o->progress = isatty(STDERR_FILENO);
	o->progress_every = 5;
	o->lease_secs = 600;
}

int cli_run(int argc, char **argv)
{
	struct flags f;
	struct lh_run_opts o;
	struct lh_spec *spec = NULL;
	char *store = NULL, *out = NULL, *err = NULL, *prog = NULL, *base = NULL, *cmd = NULL, *red = NULL;
	const char *key_env;
	int rc;

	rc = parse_flags(argc, argv, &f);
	if (rc)
		return rc > 0 ? 0 : LH_EXIT_USAGE;
	memset(&o, 0, sizeof o);
	o.file = f.file;
	rc = take_input(&f, &o, &spec);
	if (rc)
		goto out;
	o.spec = spec;
	rc = take_base_url(&f, spec, &o);
	if (rc)
		goto out;
	key_env = f.val[F_KEY_ENV] ? f.val[F_KEY_ENV] : spec && spec->api_key_env ? spec->api_key_env : NULL;
	if (key_env) {
		o.api_key = getenv(key_env);
		if (!o.api_key || !*o.api_key) {
			fprintf(stderr, "longhaul: error: the API key variable %s is not set in the environment\n",
				key_env);
			rc = LH_EXIT_USAGE;
			goto out;
		}
	} else {
		o.api_key = getenv("OPENAI_API_KEY");
		if (o.api_key && !*o.api_key)
			o.api_key = NULL;
	}
	if (spec && lh_spec_needs_model(spec) && !f.val[F_MODEL]) {
		fprintf(stderr, "longhaul: error: %s: no model: set \"model\" in the spec or pass --model\n", f.file);
		rc = LH_EXIT_USAGE;
		goto out;
	}
	take_settings(&f, spec, &o);

	/* Default files: beside the input; for standard input, beside the
	 * store; for records, named after the input (records_base). */
	base = o.from_stdin ? lh_xstrdup(f.val[F_STORE]) : o.kind == LH_INPUT_RECORDS ? records_base(f.file) :
	       lh_xstrdup(f.file);
	store = f.val[F_STORE] ? lh_xstrdup(f.val[F_STORE]) : beside(base, ".longhaul.db");
	out = f.val[F_OUTPUT] ? lh_xstrdup(f.val[F_OUTPUT]) :
	      spec && spec->output ? lh_xstrdup(spec->output) : beside(base, ".out.jsonl");
	err = f.val[F_ERRORS] ? lh_xstrdup(f.val[F_ERRORS]) :
	      spec && spec->errors ? lh_xstrdup(spec->errors) : beside(base, ".errors.jsonl");
	prog = f.val[F_PROGRESS] ? lh_xstrdup(f.val[F_PROGRESS]) : beside(base, ".progress.json");
	o.store_path = store;
	o.output_path = out;
	o.errors_path = err;
	o.progress_path = prog;
	if (spec && spec->reduce) {
		const char *ro = json_string_value(json_object_get((json_t *)spec->reduce, "output"));
		red = f.val[F_REDUCE_OUT] ? lh_xstrdup(f.val[F_REDUCE_OUT]) : ro ? lh_xstrdup(ro) :
		      beside(base, ".reduce.md");
		o.reduce_path = red;
	}
	cmd = resume_command(argc, argv);
	o.resume_cmd = cmd;

	rc = lh_run(&o);
out:
	lh_free(cmd);
	lh_free(base);
	lh_free(store);
	lh_free(out);
	lh_free(err);
	lh_free(prog);
	lh_free(red);
	lh_spec_free(spec);
	return rc;
}
