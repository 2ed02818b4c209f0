/*
 * cli layer: `longhaul approve`, a person's decision on items waiting at an
 * approve step. Against the daemon it calls POST
 * /v1/jobs/{id}/items/{key}/approve (or /reject) per item; with --store it
 * decides in the store of a `longhaul run` (engine/approval.c), whether
 * the run is going or not: SQLite takes the two writers in turn, and a
 * running run finds the decided items within a second (the engine recounts
 * a job's waiting items while it has some).
 */
#include "cli/cli.h"
#include "cli/client.h"
#include "engine/approval.h"
#include "engine/run.h"
#include "store/store.h"
#include "util/buf.h"
#include "util/mem.h"
#include "util/vec.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define NOTE_MAX 4096

static void approve_usage(FILE *out)
{
	fprintf(out,
		"usage: longhaul approve JOB KEY... [--all] [--reject] [--note TEXT] [--json] [--url URL]\n"
		"       longhaul approve --store PATH [--job ID] KEY... [--all] [--reject] [--note TEXT]\n"
		"\n"
		"Decides on items waiting at an approve step of a pipeline: approved items go\n"
		"on with the next step (the approve step's output is the note, or \"approved\");\n"
		"rejected items fail with the error code \"rejected\".\n"
		"\n"
		"The first form talks to the daemon: JOB is the job's id or its name, and the\n"
		"daemon runs the approved items at once. The second decides in the store of a\n"
		"`longhaul run` (no daemon): a run that is going takes the decisions up within a\n"
		"second; after a run that exited 8, run the same command again to go on.\n"
		"\n"
		"options:\n"
		"  --all          every item that waits (instead of KEYs)\n"
		"  --reject       reject instead of approve\n"
		"  --note TEXT    kept with the decision (at most 4096 bytes)\n"
		"  --store PATH   the store of a `longhaul run`\n"
		"  --job ID       with --store: the job, when the store holds several\n"
		"\n"
		"Prints `approved KEY` or `rejected KEY` per item; with --json, one JSON object:\n"
		"{\"job\", \"decision\", \"keys\": [...], \"errors\": [{\"key\", \"message\"}]}.\n"
		"\n"
		"exit codes: 0 every decision was made, 1 some key failed (unknown, or not\n"
		"waiting), 2 usage, 3 no such store, 6 the store could not be read or written,\n"
		"7 the store stayed busy, 69 no daemon, 77 token missing or wrong\n");
}

typedef LH_VEC(char *) key_vec;

struct outcome {
	json_t *keys;       /* decided */
	json_t *errors;     /* [{key, message}] */
};

static void outcome_init(struct outcome *o)
{
	o->keys = json_array();
	o->errors = json_array();
}

static void decided(struct outcome *o, int json, int approve, const char *key)
{
	json_array_append_new(o->keys, json_string(key));
	if (!json)
		printf("%s %s\n", approve ? "approved" : "rejected", key);
}

static void failed(struct outcome *o, const char *key, const char *msg)
{
	json_array_append_new(o->errors, json_pack("{s:s,s:s}", "key", key, "message", msg));
	fprintf(stderr, "longhaul: error: %s\n", msg);
}

static void print_json(struct outcome *o, json_t *job, int approve)
{
	json_t *out = json_pack("{s:O,s:s,s:O,s:O}", "job", job, "decision", approve ? "approved" : "rejected",
				"keys", o->keys, "errors", o->errors);
	char *s = out ? json_dumps(out, JSON_COMPACT) : NULL;
	if (s)
		printf("%s\n", s);
	free(s);
	json_decref(out);
}

static void outcome_release(struct outcome *o)
{
	json_decref(o->keys);
	json_decref(o->errors);
}

/* ---- against the daemon ---- */

/* Appends the keys of the job's waiting items to keys (a JSON array). */
static int waiting_keys(struct cli_ctx *x, const char *id, json_t *keys)
{
	char cursor[32] = "";
	for (;;) {
		char path[128];
		json_t *page = NULL, *items, *it, *next;
		size_t i;
		int rc;
		snprintf(path, sizeof path, "/v1/jobs/%s/items?state=waiting&limit=1000%s%s", id,
			 cursor[0] ? "&cursor=" : "", cursor);
		rc = cli_call(x, "GET", path, NULL, id, &page, NULL);
		if (rc)
			return rc;
		items = json_object_get(page, "items");
		json_array_foreach(items, i, it)
			if (cli_jstr(it, "key"))
				json_array_append_new(keys, json_string(cli_jstr(it, "key")));
		next = json_object_get(page, "next_cursor");
		if (!json_is_string(next)) {
			json_decref(page);
			return 0;
		}
		snprintf(cursor, sizeof cursor, "%s", json_string_value(next));
		json_decref(page);
	}
}

/* The error message of a failed call, for the errors list; new string. */
static char *call_error(const struct lh_http_resp *r)
{
	json_t *root = r->body.len ? json_loadb(r->body.data, r->body.len, 0, NULL) : NULL;
	const char *m = cli_jstr(json_object_get(root, "error"), "message");
	char *s = lh_xstrdup(m ? m : "the daemon refused the decision");
	json_decref(root);
	return s;
}

static int decide_daemon(struct cli_args *a, int all, int approve, const char *note)
{
	struct cli_ctx x;
	struct outcome o;
	json_t *keys = json_array(), *k;
	char *body = NULL;
	size_t i;
	int rc, bad = 0;
	rc = cli_connect_job(&x, "approve", a);
	if (rc) {
		json_decref(keys);
		return rc;
	}
	for (int p = 1; p < a->npos; p++)
		json_array_append_new(keys, json_string(a->pos[p]));
	if (all && (rc = waiting_keys(&x, a->pos[0], keys)) != 0) {
		json_decref(keys);
		cli_close(&x);
		return rc;
	}
	if (note) {
		json_t *b = json_pack("{s:s}", "note", note);
		body = b ? json_dumps(b, JSON_COMPACT) : NULL;
		json_decref(b);
	}
	outcome_init(&o);
	json_array_foreach(keys, i, k) {
		struct lh_buf path;
		struct lh_http_resp r;
		const char *key = json_string_value(k);
		lh_buf_init(&path, 0);
		lh_http_resp_init(&r);
		if (lh_buf_printf(&path, "/v1/jobs/%s/items/", a->pos[0]) || cli_escape(&path, key) ||
		    lh_buf_printf(&path, "/%s", approve ? "approve" : "reject")) {
			rc = LH_EXIT_INTERNAL;
		} else {
			rc = cli_call(&x, "POST", path.data, body, NULL, NULL, &r);
		}
		if (!rc) {
			decided(&o, x.json, approve, key);
		} else if (r.status == 404 || r.status == 409) {
			/* Reported by cli_call; the rest go on. */
			char *m = call_error(&r);
			json_array_append_new(o.errors, json_pack("{s:s,s:s}", "key", key, "message", m));
			lh_free(m);
			bad = 1;
			rc = 0;
		}
		lh_buf_release(&path);
		lh_http_resp_release(&r);
		if (rc)
			break;
	}
	if (!rc) {
		json_t *jid = json_string(a->pos[0]);
		if (x.json) {
			print_json(&o, jid, approve);
		} else if (json_array_size(o.keys) == 0 && !bad) {
			printf("no item of job %s waits for approval\n", a->pos[0]);
		} else if (json_array_size(o.keys)) {
			if (approve)
				printf("the daemon runs the approved items now (follow with: longhaul watch %s)\n", a->pos[0]);
			else
				printf("the rejected items failed (see: longhaul failures %s)\n", a->pos[0]);
		}
		json_decref(jid);
		rc = bad ? LH_EXIT_INTERNAL : LH_EXIT_OK;
	}
	outcome_release(&o);
	free(body);
	json_decref(keys);
	cli_close(&x);
	return rc;
}

/* ---- a run's store ---- */

struct jobs {
	int64_t ids[16];
	char names[16][64];
	size_t n, total;
};

static int take_job(const struct lh_job_rec *j, void *arg)
{
	struct jobs *js = arg;
	if (js->n < 16) {
		js->ids[js->n] = j->id;
		snprintf(js->names[js->n], sizeof js->names[0], "%s", j->name ? j->name : "");
		js->n++;
	}
	js->total++;
	return 0;
}

static int take_key(const struct lh_item_view *v, void *arg)
{
	key_vec *keys = arg;
	*lh_vec_push(keys) = lh_xstrdup(v->key);
	return 0;
}

/* The command that resumes the job: its spec's path, when known. */
static void print_resume(struct lh_store *st, int64_t job)
{
	struct lh_job_rec j;
	struct lh_err e;
	json_t *s = NULL;
	const char *path = NULL;
	if (lh_store_job_get(st, job, &j, &e) == 0) {
		s = j.spec ? json_loads(j.spec, 0, NULL) : NULL;
		path = json_string_value(json_object_get(s, "path"));
		if (!path && j.ref && !strncmp(j.ref, "run:", 4))
			path = j.ref + 4;
		if (path)
			printf("resume with: longhaul run %s\n", path);
		else
			printf("resume: run the same command again\n");
		json_decref(s);
		lh_job_rec_release(&j);
	}
}

/* Finds the job: --job, else the store's only one. */
static int pick_job(struct lh_store *st, const char *store, const char *job_opt, int64_t *job)
{
	struct lh_job_filter f = { .order = LH_JOBS_OLDEST };
	struct jobs js;
	struct lh_err e;
	long long id;
	if (job_opt) {
		struct lh_job_rec j;
		if (cli_parse_int("approve", "--job", job_opt, 1, INT64_MAX, &id))
			return LH_EXIT_USAGE;
		if (lh_store_job_get(st, id, &j, &e)) {
			fprintf(stderr, "longhaul: error: no job %lld in %s\n", id, store);
			return LH_EXIT_INTERNAL;
		}
		lh_job_rec_release(&j);
		*job = id;
		return 0;
	}
	memset(&js, 0, sizeof js);
	if (lh_store_jobs_each(st, &f, take_job, &js, &e)) {
		fprintf(stderr, "longhaul: error: %s\n", e.msg);
		return LH_EXIT_STORE;
	}
	if (js.total == 1) {
		*job = js.ids[0];
		return 0;
	}
	if (js.total == 0) {
		fprintf(stderr, "longhaul: error: the store %s holds no job\n", store);
		return LH_EXIT_INTERNAL;
	}
	fprintf(stderr, "longhaul: error: the store %s holds %zu jobs; name one with --job ID:\n", store, js.total);
	for (size_t i = 0; i < js.n; i++)
		fprintf(stderr, "  %lld  %s\n", (long long)js.ids[i], js.names[i]);
	return LH_EXIT_USAGE;
}

static int decide_store(struct cli_args *a, const char *store, const char *job_opt, int all, int approve,
			const char *note)
{
	struct lh_store_opts so = { .path = store, .sync_full = 1, .create = 0 };
	struct lh_store *st = NULL;
	struct lh_err e;
	struct outcome o;
	struct stat sb;
	key_vec keys;
	int64_t job = 0, n;
	int lockfd = -1, rc, bad = 0, running = 0;
	lh_vec_init(&keys);
	if (stat(store, &sb) != 0) {
		fprintf(stderr, "longhaul: error: no store at %s: %s\n", store, strerror(errno));
		return LH_EXIT_INPUT;
	}
	/* A run holds the store's lock while it runs: then it is going, and
	 * picks the decisions up itself. */
	if (lh_run_lock_store(store, &lockfd, &e)) {
		if (e.code != LH_EBUSY) {
			fprintf(stderr, "longhaul: error: %s: %s\n", store, e.msg);
			return LH_EXIT_STORE;
		}
		running = 1;
	}
	if (lh_store_open(&so, &st, &e)) {
		fprintf(stderr, "longhaul: error: %s\n", e.msg);
		if (lockfd >= 0)
			close(lockfd);
		return e.code == LH_EBUSY ? LH_EXIT_LOCKED : LH_EXIT_STORE;
	}
	rc = pick_job(st, store, job_opt, &job);
	if (rc)
		goto out;
	outcome_init(&o);
	if (all) {
		rc = lh_store_items_each(st, job, 1u << LH_ITEM_WAITING, take_key, &keys, &e);
		if (!rc)
			rc = lh_approval_decide_all(st, job, approve, note, &n, &e);
		if (rc) {
			fprintf(stderr, "longhaul: error: %s\n", e.msg);
			rc = LH_EXIT_STORE;
			outcome_release(&o);
			goto out;
		}
		for (size_t i = 0; i < keys.n; i++)
			decided(&o, a->json, approve, keys.v[i]);
	}
	for (int p = 0; p < a->npos; p++) {
		rc = lh_approval_decide(st, job, a->pos[p], approve, note, &e);
		if (rc == LH_ENOTFOUND || rc == LH_ESTATE) {
			failed(&o, a->pos[p], e.msg);
			bad = 1;
		} else if (rc) {
			fprintf(stderr, "longhaul: error: %s\n", e.msg);
			rc = LH_EXIT_STORE;
			outcome_release(&o);
			goto out;
		} else {
			decided(&o, a->json, approve, a->pos[p]);
		}
	}
	if (a->json) {
		json_t *jid = json_integer(job);
		print_json(&o, jid, approve);
		json_decref(jid);
	} else if (json_array_size(o.keys) == 0 && !bad) {
		printf("no item of job %lld waits for approval\n", (long long)job);
	} else if (json_array_size(o.keys) && running) {
		printf("the longhaul run going on this store takes the decisions up now\n");
	} else if (json_array_size(o.keys)) {
		print_resume(st, job);
	}
	outcome_release(&o);
	rc = bad ? LH_EXIT_INTERNAL : LH_EXIT_OK;
out:
	for (size_t i = 0; i < keys.n; i++)
		lh_free(keys.v[i]);
	lh_vec_release(&keys);
	lh_store_close(st);
	if (lockfd >= 0)
		close(lockfd);
	return rc;
}

/* 1 when s is UTF-8 (jansson takes it as a string). */
static int utf8(const char *s)
{
	json_t *t = json_string(s);
	json_decref(t);
	return t != NULL;
}

int cli_approve(int argc, char **argv)
{
	const char *note = NULL, *store = NULL, *job = NULL;
	int all = 0, reject = 0;
	struct cli_opt opts[] = {
		{ "--all", NULL, &all },     { "--reject", NULL, &reject }, { "--note", &note, NULL },
		{ "--store", &store, NULL }, { "--job", &job, NULL },       { NULL, NULL, NULL },
	};
	struct cli_args a;
	int rc = cli_parse(argc, argv, opts, approve_usage, &a);
	int nkeys;
	if (rc)
		return rc > 0 ? LH_EXIT_OK : LH_EXIT_USAGE;
	nkeys = store ? a.npos : a.npos - 1;
	if (!store && a.npos < 1) {
		fprintf(stderr, "longhaul: error: approve takes a job and keys, or --store PATH and keys "
				"(see longhaul approve --help)\n");
		return LH_EXIT_USAGE;
	}
	if (nkeys < 1 && !all) {
		fprintf(stderr, "longhaul: error: approve: name the items (KEY...) or give --all\n");
		return LH_EXIT_USAGE;
	}
	if (nkeys > 0 && all) {
		fprintf(stderr, "longhaul: error: approve: give either keys or --all, not both\n");
		return LH_EXIT_USAGE;
	}
	if (job && !store) {
		fprintf(stderr, "longhaul: error: approve: --job goes with --store (against the daemon, name the job "
				"first)\n");
		return LH_EXIT_USAGE;
	}
	if (note && strlen(note) > NOTE_MAX) {
		fprintf(stderr, "longhaul: error: approve: --note is longer than %d bytes\n", NOTE_MAX);
		return LH_EXIT_USAGE;
	}
	for (int p = store ? 0 : 1; p < a.npos; p++)
		if (!*a.pos[p] || !utf8(a.pos[p])) {
			fprintf(stderr, "longhaul: error: approve: a key must be non-empty UTF-8 text\n");
			return LH_EXIT_USAGE;
		}
	if (note && !utf8(note)) {
		fprintf(stderr, "longhaul: error: approve: --note must be UTF-8 text\n");
		return LH_EXIT_USAGE;
	}
	if (store)
		return decide_store(&a, store, job, all, !reject, note);
	if (cli_check_id("approve", a.pos[0]))
		return LH_EXIT_USAGE;
	return decide_daemon(&a, all, !reject, note);
}
