/* Unit tests: approvals (engine/approval.c) against a real SQLite store. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/approval.h"
#include "store/store.h"
#include "util/hash.h"
#include "util/mem.h"

static char dir[64], path[128];
static struct lh_store *st;
static struct lh_err E;

#define OK(x) cr_assert_eq((x), 0, "%s", E.msg)

static void setup(void)
{
	struct lh_store_opts o = { 0 };
	strcpy(dir, "/tmp/lh-appr-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	snprintf(path, sizeof path, "%s/s.db", dir);
	o.path = path;
	o.create = 1;
	OK(lh_store_open(&o, &st, &E));
}

static void teardown(void)
{
	char cmd[160];
	lh_store_close(st);
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	cr_assert_eq(system(cmd), 0);
}

TestSuite(approval, .init = setup, .fini = teardown);

/* A pipeline job of n items (k0, k1, ...), each waiting at spec step 1
 * ("check", an approve step) with its pending row at journal step 2. */
static int64_t waiting_job(int n)
{
	struct lh_job_rec j;
	struct lh_claimed *c;
	struct lh_step_rec r;
	char hash[LH_SHA256_HEX];
	size_t nc;
	int i;
	memset(&j, 0, sizeof j);
	j.ref = "t";
	j.name = "t";
	j.kind = "spec";
	j.spec = "{\"steps\":[{\"id\":\"draft\",\"kind\":\"llm\"},{\"id\":\"check\",\"kind\":\"approve\"},"
		 "{\"id\":\"final\",\"kind\":\"llm\"}]}";
	j.source_sig = "";
	strcpy(j.state, "running");
	OK(lh_store_job_create(st, &j, &E));
	for (i = 0; i < n; i++) {
		char key[16];
		snprintf(key, sizeof key, "k%d", i);
		OK(lh_store_item_add(st, j.id, i, key, strlen(key), "{}", 2, NULL, &E));
	}
	OK(lh_store_job_set_ingested(st, j.id, n, &E));
	OK(lh_store_claim(st, j.id, "me", 1000, 60, (size_t)n, &c, &nc, &E));
	cr_assert_eq(nc, (size_t)n);
	lh_sha256_hex("approve-q", 9, hash);
	memset(&r, 0, sizeof r);
	r.step = 2;
	r.attempt = 1;
	r.kind = "approve";
	r.request_hash = hash;
	r.response = "{\"question\":\"Publish?\",\"decision\":null}";
	r.response_len = strlen(r.response);
	r.started_at = 1000;
	for (size_t k = 0; k < nc; k++) {
		OK(lh_store_item_wait(st, j.id, c[k].seq, c[k].fence, 1, &r, &E));
		lh_claimed_release(&c[k]);
	}
	lh_free(c);
	return j.id;
}

struct rows {
	int n;
	char hash[LH_SHA256_HEX];
	json_t *resp;
	int status;
	char kind[16];
};

static int take_row(const struct lh_step_rec *s, void *arg)
{
	struct rows *r = arg;
	r->n++;
	if (s->step == 2) {
		snprintf(r->hash, sizeof r->hash, "%s", s->request_hash);
		json_decref(r->resp);
		r->resp = json_loadb(s->response, s->response_len, 0, NULL);
		r->status = s->status;
		snprintf(r->kind, sizeof r->kind, "%s", s->kind ? s->kind : "");
	}
	return 0;
}

static struct rows rows_of(int64_t job, int64_t seq)
{
	struct rows r;
	memset(&r, 0, sizeof r);
	OK(lh_store_steps_each(st, job, seq, take_row, &r, &E));
	return r;
}

static int state_of(int64_t job, const char *key)
{
	struct lh_item_info i;
	int s;
	OK(lh_store_item_find(st, job, key, &i, &E));
	s = i.state;
	lh_item_info_release(&i);
	return s;
}

struct evs {
	int n;
	char type[32], key[16];
	json_t *data;
};

static int take_event(const struct lh_event_view *v, void *arg)
{
	struct evs *x = arg;
	if (strncmp(v->type, "item.approved", 13) && strncmp(v->type, "item.rejected", 13))
		return 0;
	x->n++;
	snprintf(x->type, sizeof x->type, "%s", v->type);
	snprintf(x->key, sizeof x->key, "%s", v->item_key ? v->item_key : "");
	json_decref(x->data);
	x->data = v->data ? json_loads(v->data, 0, NULL) : NULL;
	return 0;
}

static struct evs events_of(int64_t job)
{
	struct evs x;
	memset(&x, 0, sizeof x);
	OK(lh_store_events_each(st, job, 0, 0, take_event, &x, &E));
	return x;
}

static char *hash_of(void)
{
	static char h[LH_SHA256_HEX];
	lh_sha256_hex("approve-q", 9, h);
	return h;
}

Test(approval, approve_sends_the_item_on_with_the_decided_row)
{
	int64_t job = waiting_job(2);
	struct rows r;
	struct evs ev;
	OK(lh_approval_decide(st, job, "k1", 1, "looks good", &E));
	cr_assert_eq(state_of(job, "k1"), LH_ITEM_PENDING);
	cr_assert_eq(state_of(job, "k0"), LH_ITEM_WAITING);
	r = rows_of(job, 1);
	cr_assert_eq(r.n, 1);
	cr_assert_str_eq(r.hash, hash_of());
	cr_assert_str_eq(r.kind, "approve");
	cr_assert_eq(r.status, 200);
	cr_assert_str_eq(json_string_value(json_object_get(r.resp, "question")), "Publish?");
	cr_assert_str_eq(json_string_value(json_object_get(r.resp, "decision")), "approved");
	cr_assert_str_eq(json_string_value(json_object_get(r.resp, "note")), "looks good");
	cr_assert_not_null(json_string_value(json_object_get(r.resp, "decided_at")));
	json_decref(r.resp);
	ev = events_of(job);
	cr_assert_eq(ev.n, 1);
	cr_assert_str_eq(ev.type, "item.approved");
	cr_assert_str_eq(ev.key, "k1");
	cr_assert_str_eq(json_string_value(json_object_get(ev.data, "step")), "check");
	json_decref(ev.data);
}

Test(approval, approve_without_a_note_keeps_null)
{
	int64_t job = waiting_job(1);
	struct rows r;
	OK(lh_approval_decide(st, job, "k0", 1, NULL, &E));
	r = rows_of(job, 0);
	cr_assert(json_is_null(json_object_get(r.resp, "note")));
	json_decref(r.resp);
}

Test(approval, reject_kills_the_item_with_the_step_named)
{
	int64_t job = waiting_job(2);
	struct lh_job_rec j;
	struct rows r;
	struct evs ev;
	json_t *err;
	OK(lh_approval_decide(st, job, "k0", 0, "no", &E));
	cr_assert_eq(state_of(job, "k0"), LH_ITEM_DEAD);
	OK(lh_store_job_get(st, job, &j, &E));
	cr_assert_eq(j.n_dead, 1);
	lh_job_rec_release(&j);
	r = rows_of(job, 0);
	cr_assert_eq(r.status, 0);
	cr_assert_str_eq(json_string_value(json_object_get(r.resp, "decision")), "rejected");
	json_decref(r.resp);
	ev = events_of(job);
	cr_assert_str_eq(ev.type, "item.rejected");
	json_decref(ev.data);
	/* The job's latest error is the rejection. */
	OK(lh_store_job_get(st, job, &j, &E));
	err = json_loads(j.last_error, 0, NULL);
	lh_job_rec_release(&j);
	cr_assert_str_eq(json_string_value(json_object_get(err, "message")), "no");
	json_decref(err);
}

static int take_error(const struct lh_item_view *v, void *arg)
{
	json_t **out = arg;
	*out = v->last_error ? json_loads(v->last_error, 0, NULL) : NULL;
	return 1;
}

Test(approval, reject_error_names_code_message_and_step)
{
	int64_t job = waiting_job(1);
	json_t *err = NULL;
	OK(lh_approval_decide(st, job, "k0", 0, NULL, &E));
	cr_assert_eq(lh_store_items_each(st, job, 1u << LH_ITEM_DEAD, take_error, &err, &E), 1);
	cr_assert_str_eq(json_string_value(json_object_get(err, "code")), "rejected");
	cr_assert_str_eq(json_string_value(json_object_get(err, "message")), "rejected by a person");
	cr_assert_str_eq(json_string_value(json_object_get(err, "step")), "check");
	json_decref(err);
}

Test(approval, unknown_key_and_not_waiting_are_errors_that_write_nothing)
{
	int64_t job = waiting_job(1);
	struct evs ev;
	cr_assert_eq(lh_approval_decide(st, job, "nope", 1, NULL, &E), LH_ENOTFOUND);
	cr_assert(strstr(E.msg, "nope"), "%s", E.msg);
	OK(lh_approval_decide(st, job, "k0", 1, NULL, &E));
	cr_assert_eq(lh_approval_decide(st, job, "k0", 0, NULL, &E), LH_ESTATE);
	cr_assert(strstr(E.msg, "not waiting") && strstr(E.msg, "pending"), "%s", E.msg);
	cr_assert_eq(state_of(job, "k0"), LH_ITEM_PENDING);
	ev = events_of(job);
	cr_assert_eq(ev.n, 1);
	json_decref(ev.data);
}

Test(approval, decide_all_takes_every_waiting_item)
{
	int64_t job = waiting_job(3), n = -1;
	struct lh_job_rec j;
	OK(lh_approval_decide(st, job, "k1", 1, NULL, &E));
	OK(lh_approval_decide_all(st, job, 0, "bulk", &n, &E));
	cr_assert_eq(n, 2);
	cr_assert_eq(state_of(job, "k0"), LH_ITEM_DEAD);
	cr_assert_eq(state_of(job, "k1"), LH_ITEM_PENDING);
	cr_assert_eq(state_of(job, "k2"), LH_ITEM_DEAD);
	OK(lh_store_job_get(st, job, &j, &E));
	cr_assert_eq(j.n_dead, 2);
	lh_job_rec_release(&j);
	OK(lh_approval_decide_all(st, job, 1, NULL, &n, &E));
	cr_assert_eq(n, 0);
}

Test(approval, step_id_reads_the_settings)
{
	char *id = lh_approval_step_id("{\"steps\":[{\"id\":\"a\"},{\"id\":\"b\"}]}", 1);
	cr_assert_str_eq(id, "b");
	lh_free(id);
	cr_assert_null(lh_approval_step_id("{\"steps\":[]}", 0));
	cr_assert_null(lh_approval_step_id("{}", 0));
	cr_assert_null(lh_approval_step_id("not json", 0));
}
