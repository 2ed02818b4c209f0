/*
 * api layer: POST /v1/jobs. A batch file streams to a temporary file in
 * upload_dir as it arrives (never whole in memory); a spec (JSON or YAML,
 * at most max_body) is kept in memory. Then one transaction creates the
 * job, appends "job.queued", ingests every item and marks the job ingested;
 * any bad line rolls it all back, so a 400 leaves nothing stored. The
 * temporary file goes when the request ends, whatever happened.
 */
#include "api/api_internal.h"
#include "engine/ingest.h"
#include "engine/jobstate.h"
#include "util/file.h"
#include "util/log.h"
#include "util/mem.h"
#include "util/time.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <unistd.h>

#define NAME_MAX_LEN 256
#define TIME_LIMIT_MAX (366.0 * 86400) /* a year */

enum api_submit_kind api_submit_kind(const char *ct)
{
	static const struct { const char *type; enum api_submit_kind kind; } types[] = {
		{ "application/jsonl", SUBMIT_BATCH },     { "application/x-ndjson", SUBMIT_BATCH },
		{ "application/json", SUBMIT_SPEC_JSON },  { "application/yaml", SUBMIT_SPEC_YAML },
		{ "application/x-yaml", SUBMIT_SPEC_YAML }, { "text/yaml", SUBMIT_SPEC_YAML },
	};
	size_t n;
	if (!ct)
		return SUBMIT_NONE;
	while (*ct == ' ')
		ct++;
	/* The media type without parameters ("; charset=utf-8"). */
	for (n = 0; ct[n] && ct[n] != ';' && ct[n] != ' '; n++)
		;
	for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
		if (strlen(types[i].type) == n && !strncasecmp(ct, types[i].type, n))
			return types[i].kind;
	return SUBMIT_NONE;
}

/* ---- query ---- */

struct submit_q {
	const char *name;     /* NULL = the spec's name, or "batch" */
	int64_t priority;
	double time_limit;    /* 0 = none */
	const char *model;    /* NULL = the batch lines' own, or the spec's */
	const char *base_dir; /* spec only: where its relative paths start; NULL = the daemon's cwd */
};

static json_t *bad_param(const char *field, const char *msg)
{
	return api_error_body("bad_input", json_pack("{s:s}", "field", field), "query parameter \"%s\": %s", field,
			      msg);
}

/* 1 when s is a name fit to store: 1 to NAME_MAX_LEN bytes of UTF-8
 * without control characters. */
static int good_name(const char *s)
{
	json_t *j;
	size_t n = strlen(s);
	if (n == 0 || n > NAME_MAX_LEN)
		return 0;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return 0;
	j = json_string(s); /* jansson checks UTF-8 */
	json_decref(j);
	return j != NULL;
}

/* Reads the query into q; NULL, or the error body (new) to answer. */
static json_t *read_query(struct api_req *r, struct submit_q *q)
{
	const char *s;
	char *end;
	memset(q, 0, sizeof *q);
	q->name = api_query(r, "name");
	if (q->name && !good_name(q->name))
		return bad_param("name", "expected 1 to 256 bytes of UTF-8 text");
	s = api_query(r, "priority");
	if (s && (api_parse_i64(s, &q->priority) || q->priority < -1000000 || q->priority > 1000000))
		return bad_param("priority", "expected an integer from -1000000 to 1000000");
	s = api_query(r, "time_limit");
	if (s) {
		errno = 0;
		q->time_limit = strtod(s, &end);
		if (!*s || *end || errno || !isfinite(q->time_limit) || q->time_limit <= 0 ||
		    q->time_limit > TIME_LIMIT_MAX || strpbrk(s, "xX"))
			return bad_param("time_limit", "expected a number of seconds greater than 0");
	}
	q->model = api_query(r, "model");
	if (q->model && !good_name(q->model))
		return bad_param("model", "expected 1 to 256 bytes of UTF-8 text");
	/* A client on the same machine submits a spec file with relative
	 * paths meant from the file's own directory: it says which. */
	q->base_dir = api_query(r, "base_dir");
	if (q->base_dir && (q->base_dir[0] != '/' || strlen(q->base_dir) >= 4096))
		return bad_param("base_dir", "expected an absolute directory path");
	return NULL;
}

int api_submit_check(struct api_req *r)
{
	struct submit_q q;
	json_t *err = read_query(r, &q);
	if (!err)
		return 0;
	r->err_status = MHD_HTTP_BAD_REQUEST;
	r->err_body = err;
	return -1;
}

int api_submit_open_upload(struct api_req *r)
{
	unsigned char rnd[12];
	char path[4096];
	size_t i;
	int n;
	if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd)
		memset(rnd, 0, sizeof rnd);
	n = snprintf(path, sizeof path, "%s/longhaul-upload-%d-", r->api->upload_dir, (int)getpid());
	for (i = 0; i < sizeof rnd && n > 0 && (size_t)n + 3 < sizeof path; i++)
		n += snprintf(path + n, sizeof path - (size_t)n, "%02x", rnd[i]);
	r->upload_fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (r->upload_fd < 0) {
		lh_error("api: could not create the upload file %s: %s", path, strerror(errno));
		r->err_status = MHD_HTTP_INTERNAL_SERVER_ERROR;
		r->err_body = api_error_body("internal", NULL, "could not store the upload: %s", strerror(errno));
		return -1;
	}
	r->upload_path = lh_xstrdup(path);
	return 0;
}

/* ---- the job ---- */

/* "api:" and 32 random hex digits: unique without asking the store. */
static void new_ref(char out[40])
{
	unsigned char rnd[16];
	if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd) {
		/* Practically never; time and pid still make a collision unlikely,
		 * and the store refuses a duplicate ref. */
		double t = lh_wall();
		memcpy(rnd, &t, sizeof t);
		memset(rnd + 8, 0, 8);
		memcpy(rnd + 8, &(int){ getpid() }, sizeof(int));
	}
	memcpy(out, "api:", 4);
	for (size_t i = 0; i < sizeof rnd; i++)
		snprintf(out + 4 + 2 * i, 3, "%02x", rnd[i]);
}

/* The batch job's settings, as its spec column holds them. */
static char *batch_settings(const struct submit_q *q, const char *name)
{
	json_t *o = json_pack("{s:s,s:I}", "name", name, "priority", (json_int_t)q->priority);
	char *text, *out;
	if (q->model)
		json_object_set_new(o, "model", json_string(q->model));
	if (q->time_limit > 0)
		json_object_set_new(o, "time_limit", json_real(q->time_limit));
	text = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(17));
	json_decref(o);
	out = lh_xstrdup(text);
	free(text);
	return out;
}

/* A spec's output path (may be NULL) that the daemon will write: its
 * directory must take a new file now. LH_EINPUT naming the field otherwise. */
static int check_spec_path(const char *path, const char *field, const char *name, struct lh_err *e)
{
	struct lh_err why;
	if (!path || lh_file_check_writable(path, field, &why) == 0)
		return 0;
	return lh_err_at(e, LH_EINPUT, name, 0, field, "%s (the daemon writes this file when the job ends)",
			 why.msg);
}

/* Creates and ingests the job in one transaction; *id on success. On a bad
 * input, e names the place (the upload is called "upload"). */
static int create(struct lh_api *a, struct lh_job_rec *j, const char *upload, int require_model,
		  const struct lh_spec *spec, int64_t *id, struct lh_err *e)
{
	struct lh_store *st = api_store_get(a, e);
	int64_t n = 0;
	int rc;
	if (!st)
		return e->code;
	rc = lh_ingest_job(st, j, upload, require_model, spec, &n, e);
	api_store_put(a, st);
	if (rc && upload && !strcmp(e->file, upload))
		snprintf(e->file, sizeof e->file, "upload");
	if (!rc)
		*id = j->id;
	return rc;
}

/* 201 with the job (as GET shows it at creation) and its Location. */
static enum MHD_Result answer_created(struct api_req *r, int64_t id)
{
	struct lh_job_rec j;
	struct lh_err e;
	struct lh_store *st;
	int64_t counts[LH_ITEM_NSTATES];
	json_t *out = NULL;
	char loc[48];
	int rc;
	/* Read the job before telling the engine, so the answer shows it as
	 * created (queued), not whatever the scheduler made of it a moment later. */
	st = api_store_get(r->api, &e);
	rc = st ? lh_store_job_get(st, id, &j, &e) : e.code;
	if (!rc) {
		rc = lh_store_item_counts(st, id, counts, &e);
		if (!rc)
			out = api_job_json(&j, counts);
		lh_job_rec_release(&j);
	}
	api_store_put(r->api, st);
	api_notify(r->api, id, LH_CMD_SUBMITTED);
	if (rc)
		return api_send_err(r, rc, &e);
	snprintf(loc, sizeof loc, "/v1/jobs/%lld", (long long)id);
	return api_send_json_hdr(r, MHD_HTTP_CREATED, out, MHD_HTTP_HEADER_LOCATION, loc);
}

/* ---- an edited pipeline, submitted again ---- */

struct same_job {
	const char *name;
	json_t *input;      /* the new spec's "input" and "base_dir" */
	json_t *base_dir;
	int64_t id;
};

static int match_job(const struct lh_job_rec *j, void *arg)
{
	struct same_job *m = arg;
	json_t *s;
	int same;
	if (!j->kind || strcmp(j->kind, "spec") || !j->name || strcmp(j->name, m->name))
		return 0;
	s = json_loads(j->spec ? j->spec : "{}", 0, NULL);
	same = json_is_array(json_object_get(s, "steps")) && json_equal(json_object_get(s, "input"), m->input) &&
	       ((!json_object_get(s, "base_dir") && !m->base_dir) ||
		json_equal(json_object_get(s, "base_dir"), m->base_dir));
	json_decref(s);
	if (!same)
		return 0;
	m->id = j->id;
	return 1;
}

/* A pipeline submitted again under the name of an earlier job over the same
 * input is that job, edited (lh_job_respec): only the steps whose requests
 * changed run again. *id gets the job (0: none such; create a new one),
 * *reopened the items re-opened (-1: the spec is unchanged), *cmd what to
 * tell the scheduler. A cancelled or timed_out job is final: a new job is
 * made instead. */
static int resubmit(struct lh_api *a, const char *settings, int64_t *id, int64_t *reopened,
		    enum lh_job_news *cmd, struct lh_err *e)
{
	struct lh_store *st = api_store_get(a, e);
	json_t *s = json_loads(settings, 0, NULL);
	struct same_job m = { json_string_value(json_object_get(s, "name")), json_object_get(s, "input"),
			      json_object_get(s, "base_dir"), 0 };
	struct lh_job_filter f;
	struct lh_job_rec j;
	enum lh_job_state was;
	int rc;
	*id = 0;
	*reopened = -1;
	*cmd = LH_CMD_RETRIED;
	if (!st) {
		json_decref(s);
		return e->code;
	}
	memset(&f, 0, sizeof f);
	f.order = LH_JOBS_NEWEST;
	rc = m.name ? lh_store_jobs_each(st, &f, match_job, &m, e) : 0;
	json_decref(s);
	if (rc == 1)
		rc = 0;
	if (rc || !m.id || (rc = lh_store_job_get(st, m.id, &j, e)) != 0) {
		api_store_put(a, st);
		return rc;
	}
	was = lh_job_state_of(j.state);
	if (was == LH_JOB_CANCELLED || was == LH_JOB_TIMED_OUT) {
		lh_job_rec_release(&j);
		api_store_put(a, st);
		return 0;
	}
	rc = lh_store_begin(st, e);
	if (!rc)
		rc = lh_job_respec(st, &j, settings, reopened, e);
	if (!rc)
		rc = lh_store_commit(st, e);
	if (rc)
		lh_store_rollback(st);
	else
		*id = m.id;
	/* A finished job re-opened is queued again; a running one restarts
	 * with its new steps. */
	*cmd = was == LH_JOB_RUNNING ? LH_CMD_SETTINGS : LH_CMD_RETRIED;
	lh_job_rec_release(&j);
	api_store_put(a, st);
	return rc;
}

/* 200 with the existing job an edited pipeline re-opened. */
static enum MHD_Result answer_resubmitted(struct api_req *r, int64_t id, int64_t reopened, enum lh_job_news cmd)
{
	struct lh_job_rec j;
	struct lh_err e;
	struct lh_store *st = api_store_get(r->api, &e);
	int64_t counts[LH_ITEM_NSTATES];
	json_t *out = NULL;
	int rc = st ? lh_store_job_get(st, id, &j, &e) : e.code;
	if (!rc) {
		rc = lh_store_item_counts(st, id, counts, &e);
		if (!rc)
			out = api_job_json(&j, counts);
		lh_job_rec_release(&j);
	}
	api_store_put(r->api, st);
	if (reopened >= 0)
		api_notify(r->api, id, cmd);
	if (rc)
		return api_send_err(r, rc, &e);
	json_object_set_new(out, "resubmitted", json_pack("{s:b,s:I}", "changed", reopened >= 0, "reopened",
							  (json_int_t)(reopened > 0 ? reopened : 0)));
	return api_send_json(r, MHD_HTTP_OK, out);
}

enum MHD_Result api_submit(struct api_req *r)
{
	struct submit_q q;
	struct lh_job_rec j;
	struct lh_spec *spec = NULL;
	struct lh_err e;
	char ref[40], *settings = NULL;
	int64_t id = 0;
	json_t *err = read_query(r, &q);
	int rc;
	if (err)
		return api_send_json(r, MHD_HTTP_BAD_REQUEST, err);
	lh_err_clear(&e);
	new_ref(ref);
	memset(&j, 0, sizeof j);
	j.ref = ref;
	snprintf(j.state, sizeof j.state, "queued");
	j.priority = (int)q.priority;
	j.time_limit = q.time_limit;
	if (r->submit == SUBMIT_BATCH) {
		if (!r->upload_path) {
			/* No body at all: an empty batch is an error, as for `longhaul run`. */
			return api_send_error(r, MHD_HTTP_BAD_REQUEST, "bad_input",
					      json_pack("{s:s}", "file", "upload"), "the batch file is empty");
		}
		j.name = (char *)(q.name ? q.name : "batch");
		j.kind = "batch";
		j.spec = settings = batch_settings(&q, j.name);
		rc = create(r->api, &j, r->upload_path, q.model == NULL, NULL, &id, &e);
		/* Gone before the answer, not when MHD gets round to ending the request. */
		unlink(r->upload_path);
		lh_free(r->upload_path);
		r->upload_path = NULL;
	} else {
		const char *name = r->submit == SUBMIT_SPEC_JSON ? "spec.json" : "spec.yaml";
		rc = lh_spec_load_buf(r->body.data ? r->body.data : "", r->body.len, name,
				      q.base_dir ? q.base_dir : r->api->cwd, &spec, &e);
		if (!rc && q.model) {
			/* As `run --model` does: the query wins over the spec. */
			lh_free(spec->model);
			spec->model = lh_xstrdup(q.model);
		}
		if (!rc && lh_spec_needs_model(spec))
			rc = lh_err_at(&e, LH_EINPUT, name, 0, "model",
				       "required field is missing (set it in the spec or pass --model)");
		/* The query's time_limit wins over the spec's. */
		if (!rc && j.time_limit <= 0 && spec->time_limit > 0)
			j.time_limit = spec->time_limit;
		/* The daemon writes a spec's output files when the job ends: where
		 * it cannot, say so now rather than after every request is paid. */
		if (!rc)
			rc = check_spec_path(spec->output, "output", name, &e);
		if (!rc)
			rc = check_spec_path(spec->errors, "errors", name, &e);
		if (!rc) {
			if (q.name) {
				lh_free(spec->name);
				spec->name = lh_xstrdup(q.name);
			}
			j.name = spec->name;
			j.kind = "spec";
			j.spec = settings = lh_spec_to_json(spec);
			if (spec->steps) {
				int64_t reopened;
				enum lh_job_news cmd;
				rc = resubmit(r->api, settings, &id, &reopened, &cmd, &e);
				if (!rc && id) {
					lh_spec_free(spec);
					lh_free(settings);
					return answer_resubmitted(r, id, reopened, cmd);
				}
			}
			if (!rc)
				rc = create(r->api, &j, NULL, 0, spec, &id, &e);
		}
		lh_spec_free(spec);
	}
	lh_free(settings);
	if (rc)
		return api_send_err(r, rc, &e);
	return answer_created(r, id);
}
