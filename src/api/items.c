/*
 * api layer: a job's items. The listing pages by seq (the cursor is the last
 * seq of a page); results and errors stream as JSONL, read from the store a
 * page at a time by MHD's content reader, so memory holds one page however
 * large the job (the formats are io/output.h's, the same as the files of
 * `longhaul run`).
 */
#include "api/api_internal.h"
#include "engine/jobstate.h"
#include "engine/report.h"
#include "io/output.h"
#include "util/log.h"
#include "util/mem.h"

#include <stdio.h>
#include <string.h>

#define EXPORT_PAGE 64                 /* items per store read */
#define EXPORT_HIGH (256u << 10)       /* stop a page early once this much is formatted */

#define ALL_STATES ((1u << LH_ITEM_NSTATES) - 1)

/* A state name (or alias) as a mask; 0 when unknown. */
static unsigned state_mask(const char *s)
{
	static const struct { const char *name; int state; } names[] = {
		{ "pending", LH_ITEM_PENDING }, { "leased", LH_ITEM_LEASED }, { "done", LH_ITEM_DONE },
		{ "retry", LH_ITEM_RETRY },     { "dead", LH_ITEM_DEAD },     { "running", LH_ITEM_LEASED },
		{ "succeeded", LH_ITEM_DONE },  { "retrying", LH_ITEM_RETRY }, { "failed", LH_ITEM_DEAD },
		{ "waiting", LH_ITEM_WAITING },
	};
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
		if (!strcmp(s, names[i].name))
			return 1u << names[i].state;
	return 0;
}

/* Reads the job (404 when missing); 0 with *j filled (release it), or -1
 * having answered. */
static int read_job(struct api_req *r, struct lh_job_rec *j, enum MHD_Result *ret)
{
	struct lh_err e;
	struct lh_store *st = api_store_get(r->api, &e);
	int rc = st ? lh_store_job_get(st, r->job, j, &e) : e.code;
	api_store_put(r->api, st);
	if (rc) {
		*ret = api_send_err(r, rc, &e);
		return -1;
	}
	return 0;
}

/* ---- GET /v1/jobs/{id}/items ---- */

struct page {
	json_t *items;
	size_t limit, n;
	int64_t last;
	int more;
};

static int page_one(const struct lh_item_view *v, void *arg)
{
	struct page *p = arg;
	if (p->n == p->limit) {
		p->more = 1;
		return 1;
	}
	json_array_append_new(p->items, json_pack("{s:o,s:s,s:i,s:o,s:o}", "key", api_json_str(v->key), "state",
						  lh_item_state_name(v->state), "attempts", v->attempts,
						  "last_status", v->last_status ? json_integer(v->last_status) :
						  json_null(), "last_error", api_json_text(v->last_error)));
	p->n++;
	p->last = v->seq;
	return 0;
}

enum MHD_Result api_items_list(struct api_req *r)
{
	struct lh_job_rec j;
	struct lh_err e;
	struct page p;
	struct lh_store *st;
	enum MHD_Result ret = MHD_NO;
	const char *state = api_query(r, "state");
	int64_t limit, after;
	unsigned mask = ALL_STATES;
	char next[24];
	int rc;
	if (api_query_int(r, "limit", 1, API_PAGE_MAX, API_PAGE_DEFAULT, &limit, &ret) ||
	    api_query_int(r, "cursor", 0, INT64_MAX, -1, &after, &ret))
		return ret;
	if (state && !(mask = state_mask(state)))
		return api_send_error(r, MHD_HTTP_BAD_REQUEST, "bad_input", json_pack("{s:s}", "field", "state"),
				      "unknown item state \"%s\" (pending, leased, done, retry, dead; or running, "
				      "succeeded, retrying, failed)", state);
	if (read_job(r, &j, &ret))
		return ret;
	lh_job_rec_release(&j);
	memset(&p, 0, sizeof p);
	p.items = json_array();
	p.limit = (size_t)limit;
	st = api_store_get(r->api, &e);
	rc = st ? lh_store_items_page(st, r->job, mask, after, (size_t)limit + 1, page_one, &p, &e) : e.code;
	api_store_put(r->api, st);
	if (rc < 0) {
		json_decref(p.items);
		return api_send_err(r, rc, &e);
	}
	snprintf(next, sizeof next, "%lld", (long long)p.last);
	return api_send_json(r, MHD_HTTP_OK, json_pack("{s:o,s:s?}", "items", p.items, "next_cursor",
						      p.more ? next : NULL));
}

/* ---- GET /v1/jobs/{id}/results and /errors ---- */

struct export {
	struct lh_api *api;
	int64_t job;
	int batch;            /* OpenAI batch formats; else the spec formats */
	int errors;           /* dead items; else done items */
	int64_t after;        /* last seq formatted */
	size_t n_page;        /* items formatted by the current read */
	int end;              /* the store has no more */
	struct lh_buf out;    /* formatted, not yet handed to MHD */
	size_t off;           /* bytes of out already handed over */
	int failed;           /* a formatter failed */
};

static int export_one(const struct lh_item_view *v, void *arg)
{
	struct export *x = arg;
	int rc;
	if (x->batch)
		rc = x->errors ? lh_out_batch_err(v, &x->out) : lh_out_batch_ok(v, &x->out);
	else
		rc = x->errors ? lh_out_spec_err(v, &x->out) : lh_out_spec_ok(v, &x->out);
	if (rc) {
		x->failed = 1;
		return 1;
	}
	x->after = v->seq;
	x->n_page++;
	return x->out.len >= EXPORT_HIGH ? 2 : 0;
}

/* Formats the next page into x->out (emptied first). */
static int export_fill(struct export *x)
{
	struct lh_err e;
	struct lh_store *st;
	int rc;
	lh_buf_clear(&x->out);
	x->off = 0;
	x->n_page = 0;
	st = api_store_get(x->api, &e);
	if (!st) {
		lh_log_err(&e);
		return -1;
	}
	rc = lh_store_items_page(st, x->job, 1u << (x->errors ? LH_ITEM_DEAD : LH_ITEM_DONE), x->after,
				 EXPORT_PAGE, export_one, x, &e);
	api_store_put(x->api, st);
	if (rc < 0) {
		lh_error("api: could not export job %lld: %s", (long long)x->job, e.msg);
		return -1;
	}
	if (x->failed) {
		lh_error("api: could not format an item of job %lld", (long long)x->job);
		return -1;
	}
	/* A short page without an early stop is the last one. */
	if (rc == 0 && x->n_page < EXPORT_PAGE)
		x->end = 1;
	return 0;
}

static ssize_t export_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct export *x = cls;
	size_t n;
	while (x->off == x->out.len) {
		if (x->end)
			return MHD_CONTENT_READER_END_OF_STREAM;
		if (api_stopping(x->api) || export_fill(x))
			return MHD_CONTENT_READER_END_WITH_ERROR;
	}
	n = x->out.len - x->off;
	if (n > max)
		n = max;
	memcpy(buf, x->out.data + x->off, n);
	x->off += n;
	return (ssize_t)n;
}

static void export_free(void *cls)
{
	struct export *x = cls;
	lh_buf_release(&x->out);
	lh_free(x);
}

/* A finished spec job's `output:` and `errors:` files are written again
 * whenever its results are asked for (as `run` rewrites its outputs when
 * run again): a file removed or damaged since is back. A failure is only
 * logged: the answer is the results, which come from the store. */
static void refresh_spec_outputs(struct lh_api *a, int64_t job)
{
	struct lh_err e;
	struct lh_store *st = api_store_get(a, &e);
	int wrote = 0;
	if (st && lh_report_spec_outputs(st, job, &wrote, &e) != 0)
		lh_warn("api: job %lld: could not write the spec's outputs: %s", (long long)job, e.msg);
	else if (!st)
		lh_log_err(&e);
	api_store_put(a, st);
}

enum MHD_Result api_items_export(struct api_req *r)
{
	struct lh_job_rec j;
	struct export *x;
	enum MHD_Result ret = MHD_NO;
	if (read_job(r, &j, &ret))
		return ret;
	if (r->route == R_JOB_RESULTS && j.kind && !strcmp(j.kind, "spec") && lh_job_state_final(lh_job_state_of(j.state)))
		refresh_spec_outputs(r->api, r->job);
	x = lh_xcalloc(1, sizeof *x);
	x->api = r->api;
	x->job = r->job;
	x->batch = j.kind && !strcmp(j.kind, "batch");
	x->errors = r->route == R_JOB_ERRORS;
	x->after = -1;
	lh_buf_init(&x->out, 0);
	lh_job_rec_release(&j);
	return api_send_stream(r, "application/x-ndjson", export_read, x, export_free);
}
