/*
 * The store conformance suite. Everything in suite "store" is written
 * against store.h alone, so that it runs unchanged against every backend:
 * only backend_opts() knows where a store lives. Suite "store_sqlite", at
 * the end, checks what only the SQLite backend can (its file format).
 *
 * Each test gets its own temporary directory and store. Built with
 * LH_TEST_PG (test_store_pg.c), suite "store" becomes "store_pg" and each
 * test gets its own PostgreSQL database instead (pg_db.h); the SQLite-only
 * tests are left out.
 */
#include <criterion/criterion.h>

#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "store/store.h"
#include "store/sqlite/sqlite.h" /* suite store_sqlite only: store_sqlite_create_at */
#include "util/mem.h"

/* ---- fixture ---- */

static char dir[64];
static char path[128];

#include "sqlite_file.h"
static struct lh_store *st;
static struct lh_err E;

#ifdef LH_TEST_PG
#include "pg_db.h"
#define SUITE store_pg
#else
#define SUITE store
#endif

/* The one backend-specific piece: where the store for a test lives. */
static void backend_opts(struct lh_store_opts *o, int create)
{
	memset(o, 0, sizeof *o);
#ifdef LH_TEST_PG
	o->path = pg_url;
#else
	o->path = path;
#endif
	o->create = create;
	o->sync_full = 0;
}

static int open_store(int create, struct lh_store **out)
{
	struct lh_store_opts o;

	backend_opts(&o, create);
	return lh_store_open(&o, out, &E);
}

#define OK(call) do { \
	int rc_ = (call); \
	cr_assert_eq(rc_, 0, "%s failed: %d %s", #call, rc_, E.msg); \
} while (0)

static void make_dir(void)
{
	snprintf(dir, sizeof dir, "/tmp/lh-store-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	snprintf(path, sizeof path, "%s/store.db", dir);
}

static void remove_dir(void)
{
	DIR *d = opendir(dir);
	struct dirent *ent;
	char p[512];

	if (!d)
		return;
	while ((ent = readdir(d))) {
		if (ent->d_name[0] == '.')
			continue;
		snprintf(p, sizeof p, "%s/%s", dir, ent->d_name);
		unlink(p);
	}
	closedir(d);
	rmdir(dir);
}

static void setup(void)
{
	make_dir();
#ifdef LH_TEST_PG
	pg_db_create();
#endif
	lh_err_clear(&E);
	OK(open_store(1, &st));
}

static void teardown(void)
{
	lh_store_close(st);
	st = NULL;
#ifdef LH_TEST_PG
	pg_db_drop_all();
#endif
	remove_dir();
}

static void reopen(void)
{
	lh_store_close(st);
	st = NULL;
	OK(open_store(0, &st));
}

TestSuite(SUITE, .init = setup, .fini = teardown);

/* ---- helpers ---- */

static int64_t make_job(const char *ref)
{
	struct lh_job_rec j;

	memset(&j, 0, sizeof j);
	j.ref = (char *)ref;
	j.name = (char *)"test job";
	j.kind = (char *)"batch";
	j.spec = (char *)"{\"model\":\"m\"}";
	j.source_sig = (char *)"sig";
	snprintf(j.state, sizeof j.state, "queued");
	OK(lh_store_job_create(st, &j, &E));
	cr_assert_gt(j.id, 0);
	return j.id;
}

/* Adds items 0..n-1 with keys "k<seq>" and inputs "in<seq>". */
static void add_items(int64_t job, int n)
{
	char key[32], in[32];
	int i;

	OK(lh_store_begin(st, &E));
	for (i = 0; i < n; i++) {
		int kl = snprintf(key, sizeof key, "k%d", i);
		int il = snprintf(in, sizeof in, "in%d", i);
		OK(lh_store_item_add(st, job, i, key, (size_t)kl, in, (size_t)il, NULL, &E));
	}
	OK(lh_store_commit(st, &E));
}

struct claim {
	struct lh_claimed *c;
	size_t n;
};

static struct claim claim(int64_t job, const char *owner, double now, double lease, size_t max)
{
	struct claim r;

	OK(lh_store_claim(st, job, owner, now, lease, max, &r.c, &r.n, &E));
	return r;
}

static void claim_free(struct claim *r)
{
	size_t i;

	for (i = 0; i < r->n; i++)
		lh_claimed_release(&r->c[i]);
	lh_free(r->c);
	r->c = NULL;
	r->n = 0;
}

static void counts(int64_t job, int64_t want_pending, int64_t want_leased, int64_t want_done,
		   int64_t want_retry, int64_t want_dead)
{
	int64_t c[LH_ITEM_NSTATES];

	OK(lh_store_item_counts(st, job, c, &E));
	cr_assert_eq(c[LH_ITEM_PENDING], want_pending, "pending %lld", (long long)c[0]);
	cr_assert_eq(c[LH_ITEM_LEASED], want_leased, "leased %lld", (long long)c[1]);
	cr_assert_eq(c[LH_ITEM_DONE], want_done, "done %lld", (long long)c[2]);
	cr_assert_eq(c[LH_ITEM_RETRY], want_retry, "retry %lld", (long long)c[3]);
	cr_assert_eq(c[LH_ITEM_DEAD], want_dead, "dead %lld", (long long)c[4]);
}

static struct lh_step_rec step0(const char *response)
{
	struct lh_step_rec s;

	memset(&s, 0, sizeof s);
	s.step = 0;
	s.attempt = 1;
	s.request_hash = "abc123";
	s.status = 200;
	s.request_id = "req-1";
	s.response = response;
	s.response_len = strlen(response);
	s.prompt_tokens = 11;
	s.completion_tokens = 22;
	s.started_at = 100.5;
	s.first_byte_at = 101.25;
	s.ended_at = 102.75;
	return s;
}

/* Collects items_each output. */
struct seen_item {
	int64_t seq;
	char key[32];
	int state, attempts, last_status, status;
	char last_error[128];
	char response[128];
	size_t response_len;
	char request_id[32];
	int64_t prompt_tokens, completion_tokens;
	double started_at, first_byte_at, ended_at;
	int has_error, has_response;
};

struct seen_items {
	struct seen_item v[64];
	int n;
	int stop_after; /* 0: never */
};

static void copy_bounded(char *dst, size_t dstsz, const char *src)
{
	snprintf(dst, dstsz, "%s", src ? src : "");
}

static int collect_item(const struct lh_item_view *v, void *arg)
{
	struct seen_items *s = arg;
	struct seen_item *x;

	cr_assert_lt(s->n, 64);
	x = &s->v[s->n++];
	x->seq = v->seq;
	copy_bounded(x->key, sizeof x->key, v->key);
	x->state = v->state;
	x->attempts = v->attempts;
	x->last_status = v->last_status;
	x->has_error = v->last_error != NULL;
	copy_bounded(x->last_error, sizeof x->last_error, v->last_error);
	x->has_response = v->response != NULL;
	copy_bounded(x->response, sizeof x->response, v->response);
	x->response_len = v->response_len;
	x->status = v->status;
	copy_bounded(x->request_id, sizeof x->request_id, v->request_id);
	x->prompt_tokens = v->prompt_tokens;
	x->completion_tokens = v->completion_tokens;
	x->started_at = v->started_at;
	x->first_byte_at = v->first_byte_at;
	x->ended_at = v->ended_at;
	if (s->stop_after && s->n == s->stop_after)
		return 42;
	return 0;
}

struct seen_events {
	int64_t gseq[64];
	int64_t seq[64];
	int64_t job[64];
	double ts[64];
	char type[64][32];
	char key[64][32];
	char data[64][64];
	int has_key[64], has_data[64];
	int n;
};

static int collect_event(const struct lh_event_view *v, void *arg)
{
	struct seen_events *s = arg;

	cr_assert_lt(s->n, 64);
	s->gseq[s->n] = v->gseq;
	s->seq[s->n] = v->seq;
	s->job[s->n] = v->job;
	s->ts[s->n] = v->ts;
	copy_bounded(s->type[s->n], sizeof s->type[0], v->type);
	s->has_key[s->n] = v->item_key != NULL;
	copy_bounded(s->key[s->n], sizeof s->key[0], v->item_key);
	s->has_data[s->n] = v->data != NULL;
	copy_bounded(s->data[s->n], sizeof s->data[0], v->data);
	s->n++;
	return 0;
}

struct seen_steps {
	int step[16];
	int attempt[16];
	char response[16][64];
	int n;
};

static int collect_step(const struct lh_step_rec *r, void *arg)
{
	struct seen_steps *s = arg;

	cr_assert_lt(s->n, 16);
	s->step[s->n] = r->step;
	s->attempt[s->n] = r->attempt;
	cr_assert_eq(strlen(r->response ? r->response : ""), r->response_len);
	copy_bounded(s->response[s->n], sizeof s->response[0], r->response);
	s->n++;
	return 0;
}

static int count_steps(int64_t job, int64_t seq)
{
	struct seen_steps s = { .n = 0 };

	OK(lh_store_steps_each(st, job, seq, collect_step, &s, &E));
	return s.n;
}

/* ---- open ---- */

Test(SUITE, state_names)
{
	cr_assert_str_eq(lh_item_state_name(LH_ITEM_PENDING), "pending");
	cr_assert_str_eq(lh_item_state_name(LH_ITEM_LEASED), "leased");
	cr_assert_str_eq(lh_item_state_name(LH_ITEM_DONE), "done");
	cr_assert_str_eq(lh_item_state_name(LH_ITEM_RETRY), "retry");
	cr_assert_str_eq(lh_item_state_name(LH_ITEM_DEAD), "dead");
	cr_assert_str_eq(lh_item_state_name(LH_ITEM_WAITING), "waiting");
	cr_assert_str_eq(lh_item_state_name(9), "unknown");
}

Test(SUITE, reopen_keeps_data)
{
	struct lh_job_rec j;
	int64_t id = make_job("run:/data/a.jsonl");

	add_items(id, 3);
	reopen();
	OK(lh_store_job_find(st, "run:/data/a.jsonl", &j, &E));
	cr_assert_eq(j.id, id);
	cr_assert_str_eq(j.name, "test job");
	lh_job_rec_release(&j);
	counts(id, 3, 0, 0, 0, 0);
	/* Opening an existing store with create set is just an open. */
	lh_store_close(st);
	OK(open_store(1, &st));
	counts(id, 3, 0, 0, 0, 0);
}

#ifdef LH_TEST_PG
Test(SUITE, missing_without_create)
{
	struct lh_store *other = (struct lh_store *)&E; /* must be reset to NULL */

	/* A database without a longhaul store, opened without create. */
	pg_db_create();
	cr_assert_eq(open_store(0, &other), LH_ENOTFOUND);
	cr_assert_null(other);
	cr_assert_eq(E.code, LH_ENOTFOUND);
	cr_assert_not_null(strstr(E.msg, pg_dbs[pg_ndb - 1]), "message names the database: %s", E.msg);
	cr_assert_eq(pg_int("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"), 0, "nothing was created");
}

Test(SUITE, password_in_url_is_refused_and_masked)
{
	struct lh_store_opts o;
	struct lh_store *other = NULL;

	memset(&o, 0, sizeof o);
	o.path = "postgresql://someone:s3cret@127.0.0.1:1/x";
	cr_assert_eq(lh_store_open(&o, &other, &E), LH_EUSAGE);
	cr_assert_null(other);
	cr_assert_null(strstr(E.msg, "s3cret"), "%s", E.msg);
	cr_assert_not_null(strstr(E.msg, "someone:***@127.0.0.1"), "%s", E.msg);
	o.path = "postgres://127.0.0.1:1/x?user=a&password=s3cret";
	cr_assert_eq(lh_store_open(&o, &other, &E), LH_EUSAGE);
	cr_assert_null(strstr(E.msg, "s3cret"), "%s", E.msg);
	/* No server there: a clear error, still without the password. */
	o.path = "postgresql://nobody@127.0.0.1:1/x?connect_timeout=2";
	cr_assert_eq(lh_store_open(&o, &other, &E), LH_ESTORE);
	cr_assert_not_null(strstr(E.msg, "could not connect to store"), "%s", E.msg);
}

/* A statement that fails inside a transaction aborts all of it on
 * PostgreSQL (here: a key that is not UTF-8): the commit says so rather
 * than pass the rollback off as a commit, and the handle goes on. */
Test(SUITE, commit_after_a_failed_statement_reports_the_rollback)
{
	int64_t id = make_job("j");

	OK(lh_store_begin(st, &E));
	OK(lh_store_item_add(st, id, 0, "a", 1, "x", 1, NULL, &E));
	cr_assert_eq(lh_store_item_add(st, id, 1, "\xff\xfe", 2, "x", 1, NULL, &E), LH_ESTORE);
	cr_assert_eq(lh_store_commit(st, &E), LH_ESTORE);
	cr_assert_not_null(strstr(E.msg, "rolled it back"), "%s", E.msg);
	counts(id, 0, 0, 0, 0, 0);
	OK(lh_store_item_add(st, id, 0, "a", 1, "x", 1, NULL, &E));
	counts(id, 1, 0, 0, 0, 0);
}

/* Claims on two connections: the second skips the rows the first holds
 * locked in its open transaction instead of waiting for them. */
Test(SUITE, claims_on_two_handles_skip_locked_rows)
{
	int64_t id = make_job("j");
	struct lh_store *h2;
	struct lh_claimed *c2;
	struct claim c1;
	size_t n2, i;

	add_items(id, 6);
	OK(open_store(0, &h2));
	OK(lh_store_begin(st, &E));
	c1 = claim(id, "w1", 100, 60, 3);
	cr_assert_eq(c1.n, 3);
	OK(lh_store_claim(h2, id, "w2", 100, 60, 10, &c2, &n2, &E));
	cr_assert_eq(n2, 3, "the second handle took the rows the first did not lock");
	for (i = 0; i < n2; i++)
		cr_assert_eq(c2[i].seq, (int64_t)(3 + i));
	OK(lh_store_commit(st, &E));
	counts(id, 0, 6, 0, 0, 0);
	for (i = 0; i < n2; i++)
		lh_claimed_release(&c2[i]);
	lh_free(c2);
	claim_free(&c1);
	lh_store_close(h2);
}

/* A worker whose lease expired and was taken over on another connection
 * is fenced off: neither its result nor its journal row is written. */
Test(SUITE, stale_worker_on_another_handle_is_fenced_off)
{
	int64_t id = make_job("j");
	struct lh_step_rec r = step0("{\"late\":true}");
	struct lh_store *h2;
	struct lh_claimed *c2;
	struct claim c1;
	size_t n2;

	add_items(id, 1);
	OK(open_store(0, &h2));
	c1 = claim(id, "w1", 100, 5, 1);
	OK(lh_store_claim(h2, id, "w2", 200, 60, 1, &c2, &n2, &E));
	cr_assert_eq(n2, 1);
	cr_assert_eq(c2[0].fence, c1.c[0].fence + 1);
	cr_assert_eq(lh_store_item_done(st, id, 0, c1.c[0].fence, 1, &r, &E), LH_EFENCED);
	cr_assert_eq(lh_store_step_put(st, id, 0, c1.c[0].fence, &r, &E), LH_EFENCED);
	cr_assert_eq(count_steps(id, 0), 0);
	counts(id, 0, 1, 0, 0, 0);
	OK(lh_store_item_done(h2, id, 0, c2[0].fence, 1, &r, &E));
	cr_assert_eq(count_steps(id, 0), 1);
	counts(id, 0, 0, 1, 0, 0);
	lh_claimed_release(&c2[0]);
	lh_free(c2);
	claim_free(&c1);
	lh_store_close(h2);
}
#else
Test(SUITE, missing_without_create)
{
	struct lh_store *other = (struct lh_store *)&E; /* must be reset to NULL */
	char saved[128];

	memcpy(saved, path, sizeof saved);
	snprintf(path, sizeof path, "%s/absent.db", dir);
	cr_assert_eq(open_store(0, &other), LH_ENOTFOUND);
	cr_assert_null(other);
	cr_assert_eq(E.code, LH_ENOTFOUND);
	cr_assert_not_null(strstr(E.msg, "absent.db"), "message names the path: %s", E.msg);
	cr_assert_eq(access(path, F_OK), -1, "nothing was created");
	memcpy(path, saved, sizeof saved);
}

#endif

/* ---- jobs ---- */

Test(SUITE, job_create_find_get)
{
	struct lh_job_rec j, g;
	double before = 0;

	memset(&j, 0, sizeof j);
	j.ref = (char *)"daemon:42";
	j.name = (char *)"summaries";
	j.kind = (char *)"spec";
	j.spec = (char *)"{\"steps\":[]}";
	j.source_sig = (char *)"123:456:abcd";
	j.priority = 7;
	snprintf(j.state, sizeof j.state, "queued");
	OK(lh_store_job_create(st, &j, &E));
	cr_assert_gt(j.id, 0);
	cr_assert_gt(j.created_at, 1.6e9, "created_at is wall time: %f", j.created_at);
	before = j.created_at;

	OK(lh_store_job_find(st, "daemon:42", &g, &E));
	cr_assert_eq(g.id, j.id);
	cr_assert_str_eq(g.ref, "daemon:42");
	cr_assert_str_eq(g.name, "summaries");
	cr_assert_str_eq(g.kind, "spec");
	cr_assert_str_eq(g.spec, "{\"steps\":[]}");
	cr_assert_str_eq(g.source_sig, "123:456:abcd");
	cr_assert_str_eq(g.state, "queued");
	cr_assert_eq(g.priority, 7);
	cr_assert_eq(g.ingest_done, 0);
	cr_assert_eq(g.created_at, before);
	cr_assert_eq(g.started_at, 0);
	cr_assert_eq(g.finished_at, 0);
	cr_assert_eq(g.n_total, 0);
	cr_assert_eq(g.n_done, 0);
	lh_job_rec_release(&g);
	cr_assert_null(g.ref);

	OK(lh_store_job_get(st, j.id, &g, &E));
	cr_assert_str_eq(g.ref, "daemon:42");
	lh_job_rec_release(&g);

	cr_assert_eq(lh_store_job_find(st, "daemon:43", &g, &E), LH_ENOTFOUND);
	cr_assert_eq(lh_store_job_get(st, j.id + 100, &g, &E), LH_ENOTFOUND);
	/* A second job with the same ref is refused. */
	j.id = 0;
	cr_assert_eq(lh_store_job_create(st, &j, &E), LH_EINPUT);
	cr_assert_eq(j.id, 0);
}

Test(SUITE, job_state_and_counters)
{
	struct lh_job_rec g;
	int64_t id = make_job("j");

	OK(lh_store_job_set_state(st, id, "running", 1000.5, 0, &E));
	OK(lh_store_job_get(st, id, &g, &E));
	cr_assert_str_eq(g.state, "running");
	cr_assert_eq(g.started_at, 1000.5);
	cr_assert_eq(g.finished_at, 0);
	cr_assert_gt(g.updated_at, 1.6e9);
	lh_job_rec_release(&g);

	/* A later call without times keeps those already set. */
	OK(lh_store_job_set_state(st, id, "paused", 0, 0, &E));
	OK(lh_store_job_set_state(st, id, "completed", 0, 2000.25, &E));
	OK(lh_store_job_set_ingested(st, id, 12345, &E));
	OK(lh_store_job_add(st, id, 10, 2, 3, 400, 500, 1.5, &E));
	OK(lh_store_job_add(st, id, 1, 1, 1, 1, 1, 0.25, &E));
	OK(lh_store_job_get(st, id, &g, &E));
	cr_assert_str_eq(g.state, "completed");
	cr_assert_eq(g.started_at, 1000.5);
	cr_assert_eq(g.finished_at, 2000.25);
	cr_assert_eq(g.ingest_done, 1);
	cr_assert_eq(g.n_total, 12345);
	cr_assert_eq(g.n_done, 11);
	cr_assert_eq(g.n_dead, 3);
	cr_assert_eq(g.n_retries, 4);
	cr_assert_eq(g.prompt_tokens, 401);
	cr_assert_eq(g.completion_tokens, 501);
	cr_assert_float_eq(g.run_secs, 1.75, 1e-9);
	lh_job_rec_release(&g);

	cr_assert_eq(lh_store_job_set_state(st, id + 1, "running", 0, 0, &E), LH_ENOTFOUND);
	cr_assert_eq(lh_store_job_add(st, id + 1, 1, 0, 0, 0, 0, 0, &E), LH_ENOTFOUND);
	cr_assert_eq(lh_store_job_set_ingested(st, id + 1, 1, &E), LH_ENOTFOUND);
	cr_assert_eq(lh_store_job_set_state(st, id, "a_state_far_too_long", 0, 0, &E), LH_EINPUT);
}

Test(SUITE, job_delete_cascades)
{
	int64_t a = make_job("a"), b = make_job("b");
	struct lh_step_rec s = step0("{\"ok\":1}");
	struct seen_events ev = { .n = 0 };
	struct lh_job_rec g;
	struct claim c;

	add_items(a, 5);
	add_items(b, 5);
	c = claim(a, "w", 10, 60, 2);
	cr_assert_eq(c.n, 2);
	OK(lh_store_item_done(st, a, c.c[0].seq, c.c[0].fence, 1, &s, &E));
	claim_free(&c);
	c = claim(b, "w", 10, 60, 1);
	OK(lh_store_item_done(st, b, c.c[0].seq, c.c[0].fence, 1, &s, &E));
	claim_free(&c);
	OK(lh_store_event_add(st, a, 1, "job.created", NULL, NULL, NULL, &E));
	OK(lh_store_event_add(st, b, 1, "job.created", NULL, NULL, NULL, &E));

	OK(lh_store_job_delete(st, a, &E));
	cr_assert_eq(lh_store_job_get(st, a, &g, &E), LH_ENOTFOUND);
	counts(a, 0, 0, 0, 0, 0);
	cr_assert_eq(count_steps(a, 0), 0);
	OK(lh_store_events_each(st, a, 0, 0, collect_event, &ev, &E));
	cr_assert_eq(ev.n, 0);
	cr_assert_eq(lh_store_job_delete(st, a, &E), LH_ENOTFOUND);

	/* The other job is untouched. */
	counts(b, 4, 0, 1, 0, 0);
	cr_assert_eq(count_steps(b, 0), 1);
	OK(lh_store_events_each(st, b, 0, 0, collect_event, &ev, &E));
	cr_assert_eq(ev.n, 1);
	/* The ref is free again. */
	cr_assert_gt(make_job("a"), 0);
}

/* ---- items ---- */

Test(SUITE, item_add_duplicates)
{
	int64_t id = make_job("j"), dup = 99;

	OK(lh_store_item_add(st, id, 0, "alpha", 5, "x", 1, &dup, &E));
	OK(lh_store_item_add(st, id, 1, "beta", 4, "y", 1, &dup, &E));
	/* The same key again, at a new seq: a duplicate custom_id. */
	cr_assert_eq(lh_store_item_add(st, id, 2, "alpha", 5, "z", 1, &dup, &E), LH_EINPUT);
	cr_assert_eq(dup, 0);
	cr_assert_not_null(strstr(E.msg, "alpha"), "%s", E.msg);
	/* The same key at the same seq: ingest resumed after a crash. */
	cr_assert_eq(lh_store_item_add(st, id, 1, "beta", 4, "y", 1, &dup, &E), LH_EINPUT);
	cr_assert_eq(dup, 1);
	/* A taken seq with a new key. */
	dup = 99;
	cr_assert_eq(lh_store_item_add(st, id, 1, "gamma", 5, "y", 1, &dup, &E), LH_EINPUT);
	cr_assert_eq(dup, -1);
	/* dup_seq may be NULL. */
	cr_assert_eq(lh_store_item_add(st, id, 5, "alpha", 5, "z", 1, NULL, &E), LH_EINPUT);
	/* Keys are per job. */
	OK(lh_store_item_add(st, make_job("other"), 0, "alpha", 5, "x", 1, &dup, &E));
	counts(id, 2, 0, 0, 0, 0);
}

Test(SUITE, item_add_inside_transaction_survives_duplicate)
{
	int64_t id = make_job("j"), dup = 0;

	OK(lh_store_begin(st, &E));
	OK(lh_store_item_add(st, id, 0, "a", 1, "1", 1, &dup, &E));
	cr_assert_eq(lh_store_item_add(st, id, 1, "a", 1, "2", 1, &dup, &E), LH_EINPUT);
	OK(lh_store_item_add(st, id, 2, "b", 1, "3", 1, &dup, &E));
	OK(lh_store_commit(st, &E));
	counts(id, 2, 0, 0, 0, 0);
}

Test(SUITE, input_bytes_round_trip)
{
	int64_t id = make_job("j");
	static const char in[] = "{\"a\":\"\xc3\xa9\"}\0tail";
	struct claim c;

	/* The key is not NUL-terminated: only key_len bytes count. */
	OK(lh_store_item_add(st, id, 0, "key-1XXXX", 5, in, sizeof in - 1, NULL, &E));
	OK(lh_store_item_add(st, id, 1, "empty", 5, "", 0, NULL, &E));
	c = claim(id, "w", 1, 60, 10);
	cr_assert_eq(c.n, 2);
	cr_assert_str_eq(c.c[0].key, "key-1");
	cr_assert_eq(c.c[0].input_len, sizeof in - 1);
	cr_assert_eq(memcmp(c.c[0].input, in, sizeof in - 1), 0);
	cr_assert_eq(c.c[0].input[c.c[0].input_len], '\0');
	cr_assert_str_eq(c.c[1].key, "empty");
	cr_assert_eq(c.c[1].input_len, 0);
	cr_assert_str_eq(c.c[1].input, "");
	claim_free(&c);
}

/* ---- claims and leases ---- */

Test(SUITE, claim_pending_in_seq_order_with_limit)
{
	int64_t id = make_job("j");
	struct claim c;
	size_t i;

	add_items(id, 10);
	c = claim(id, "w1", 100, 30, 4);
	cr_assert_eq(c.n, 4);
	for (i = 0; i < 4; i++) {
		char key[8];
		snprintf(key, sizeof key, "k%zu", i);
		cr_assert_eq(c.c[i].seq, (int64_t)i);
		cr_assert_str_eq(c.c[i].key, key);
		cr_assert_eq(c.c[i].attempts, 0);
		cr_assert_eq(c.c[i].fence, 1);
	}
	claim_free(&c);
	counts(id, 6, 4, 0, 0, 0);
	c = claim(id, "w2", 100, 30, 100);
	cr_assert_eq(c.n, 6);
	cr_assert_eq(c.c[0].seq, 4);
	cr_assert_eq(c.c[5].seq, 9);
	cr_assert_str_eq(c.c[5].input, "in9");
	claim_free(&c);
	/* Nothing left, and leases are not expired yet. */
	c = claim(id, "w3", 129, 30, 100);
	cr_assert_eq(c.n, 0);
	cr_assert_null(c.c);
	/* max = 0 claims nothing. */
	c = claim(id, "w3", 1000, 30, 0);
	cr_assert_eq(c.n, 0);
	counts(id, 0, 10, 0, 0, 0);
}

Test(SUITE, claim_order_retry_then_expired_then_pending)
{
	int64_t id = make_job("j");
	struct claim c;

	add_items(id, 10);
	c = claim(id, "w1", 100, 1000, 3); /* seqs 0, 1, 2 */
	cr_assert_eq(c.n, 3);
	/* 1 waits until 150, 2 until 120: 2 is due first. */
	OK(lh_store_item_retry(st, id, 1, c.c[1].fence, 1, 150, 503, "{\"e\":1}", &E));
	OK(lh_store_item_retry(st, id, 2, c.c[2].fence, 2, 120, 429, "{\"e\":2}", &E));
	claim_free(&c);
	c = claim(id, "w2", 100, 10, 1); /* seq 3, lease until 110 */
	cr_assert_eq(c.c[0].seq, 3);
	claim_free(&c);

	/* At 130: retry 2 is due, retry 1 is not; lease 3 has expired, lease 0 has not. */
	c = claim(id, "w3", 130, 10, 4);
	cr_assert_eq(c.n, 4);
	cr_assert_eq(c.c[0].seq, 2);
	cr_assert_eq(c.c[0].attempts, 2);
	cr_assert_eq(c.c[0].fence, 2);
	cr_assert_eq(c.c[1].seq, 3);
	cr_assert_eq(c.c[1].fence, 2);
	cr_assert_eq(c.c[2].seq, 4);
	cr_assert_eq(c.c[2].fence, 1);
	cr_assert_eq(c.c[3].seq, 5);
	claim_free(&c);

	/* At 200: retry 1 comes first, before any pending item. */
	c = claim(id, "w3", 200, 10, 1);
	cr_assert_eq(c.n, 1);
	cr_assert_eq(c.c[0].seq, 1);
	cr_assert_eq(c.c[0].attempts, 1);
	claim_free(&c);
}

Test(SUITE, due_retries_by_time_then_expired_by_deadline)
{
	int64_t id = make_job("j");
	struct claim c;

	add_items(id, 6);
	c = claim(id, "w", 100, 1000, 3);
	OK(lh_store_item_retry(st, id, 0, c.c[0].fence, 1, 300, 503, NULL, &E));
	OK(lh_store_item_retry(st, id, 1, c.c[1].fence, 1, 100, 503, NULL, &E));
	OK(lh_store_item_retry(st, id, 2, c.c[2].fence, 1, 200, 503, NULL, &E));
	claim_free(&c);
	/* Leases of 3, 4, 5 end at 150, 130, 140 (claimed before any retry is due). */
	c = claim(id, "w", 50, 100, 1);
	cr_assert_eq(c.c[0].seq, 3);
	claim_free(&c);
	c = claim(id, "w", 50, 80, 1);
	cr_assert_eq(c.c[0].seq, 4);
	claim_free(&c);
	c = claim(id, "w", 50, 90, 1);
	cr_assert_eq(c.c[0].seq, 5);
	claim_free(&c);

	c = claim(id, "w", 1000, 60, 6);
	cr_assert_eq(c.n, 6);
	cr_assert_eq(c.c[0].seq, 1);
	cr_assert_eq(c.c[1].seq, 2);
	cr_assert_eq(c.c[2].seq, 0);
	cr_assert_eq(c.c[3].seq, 4);
	cr_assert_eq(c.c[4].seq, 5);
	cr_assert_eq(c.c[5].seq, 3);
	claim_free(&c);
}

Test(SUITE, fence_grows_with_each_claim)
{
	int64_t id = make_job("j");
	int64_t last = 0;
	int i;

	add_items(id, 1);
	for (i = 0; i < 5; i++) {
		/* Each claim comes after the previous lease ran out. */
		struct claim c = claim(id, i % 2 ? "a" : "b", 100 + 10 * i, 5, 1);
		cr_assert_eq(c.n, 1);
		cr_assert_eq(c.c[0].seq, 0);
		cr_assert_gt(c.c[0].fence, last);
		last = c.c[0].fence;
		claim_free(&c);
	}
	cr_assert_eq(last, 5);
}

Test(SUITE, expired_lease_is_fenced_off)
{
	int64_t id = make_job("j");
	struct lh_step_rec s = step0("{\"late\":true}");
	struct seen_items seen = { .n = 0 };
	struct claim old, neu;

	add_items(id, 2);
	old = claim(id, "old", 100, 1, 2);
	cr_assert_eq(old.n, 2);
	/* Not yet expired: nothing to reclaim. */
	neu = claim(id, "new", 100.5, 60, 2);
	cr_assert_eq(neu.n, 0);
	neu = claim(id, "new", 102, 60, 2);
	cr_assert_eq(neu.n, 2);
	cr_assert_eq(neu.c[0].fence, old.c[0].fence + 1);

	/* The presumed-dead worker comes back: every write is refused and
	 * nothing reaches the journal. */
	cr_assert_eq(lh_store_item_done(st, id, 0, old.c[0].fence, 1, &s, &E), LH_EFENCED);
	cr_assert_eq(E.code, LH_EFENCED);
	cr_assert_eq(count_steps(id, 0), 0);
	cr_assert_eq(lh_store_item_retry(st, id, 1, old.c[1].fence, 1, 200, 500, "{}", &E), LH_EFENCED);
	cr_assert_eq(lh_store_item_dead(st, id, 1, old.c[1].fence, 1, 400, "{}", &E), LH_EFENCED);
	cr_assert_eq(lh_store_item_release(st, id, 1, old.c[1].fence, &E), LH_EFENCED);
	cr_assert_eq(lh_store_step_put(st, id, 1, old.c[1].fence, &s, &E), LH_EFENCED);
	cr_assert_eq(count_steps(id, 1), 0);
	counts(id, 0, 2, 0, 0, 0);
	OK(lh_store_items_each(st, id, 1u << LH_ITEM_LEASED, collect_item, &seen, &E));
	cr_assert_eq(seen.n, 2);
	cr_assert_eq(seen.v[0].attempts, 0);
	cr_assert_eq(seen.v[1].last_status, 0);
	cr_assert_eq(seen.v[1].has_error, 0);

	/* The new holder's writes go through. */
	OK(lh_store_item_done(st, id, 0, neu.c[0].fence, 1, &s, &E));
	cr_assert_eq(count_steps(id, 0), 1);
	/* Done is final: the same fence cannot finish it twice. */
	cr_assert_eq(lh_store_item_done(st, id, 0, neu.c[0].fence, 1, &s, &E), LH_EFENCED);
	counts(id, 0, 1, 1, 0, 0);
	claim_free(&old);
	claim_free(&neu);
}

Test(SUITE, transitions_and_counts)
{
	int64_t id = make_job("j");
	struct lh_step_rec s = step0("{\"choices\":[]}");
	struct seen_items seen = { .n = 0 };
	struct claim c;

	add_items(id, 5);
	c = claim(id, "w", 100, 60, 4);
	cr_assert_eq(c.n, 4);
	OK(lh_store_item_done(st, id, 0, c.c[0].fence, 1, &s, &E));
	OK(lh_store_item_retry(st, id, 1, c.c[1].fence, 1, 130, 503, "{\"code\":\"overloaded\"}", &E));
	OK(lh_store_item_dead(st, id, 2, c.c[2].fence, 3, 400, "{\"code\":\"bad_request\"}", &E));
	OK(lh_store_item_release(st, id, 3, c.c[3].fence, &E));
	counts(id, 2, 0, 1, 1, 1);
	claim_free(&c);

	OK(lh_store_items_each(st, id, 0x1f, collect_item, &seen, &E));
	cr_assert_eq(seen.n, 5);
	cr_assert_eq(seen.v[0].state, LH_ITEM_DONE);
	cr_assert_eq(seen.v[0].attempts, 1);
	cr_assert_eq(seen.v[1].state, LH_ITEM_RETRY);
	cr_assert_eq(seen.v[1].attempts, 1);
	cr_assert_eq(seen.v[1].last_status, 503);
	cr_assert_str_eq(seen.v[1].last_error, "{\"code\":\"overloaded\"}");
	cr_assert_eq(seen.v[2].state, LH_ITEM_DEAD);
	cr_assert_eq(seen.v[2].attempts, 3);
	cr_assert_eq(seen.v[2].last_status, 400);
	cr_assert_str_eq(seen.v[2].last_error, "{\"code\":\"bad_request\"}");
	cr_assert_eq(seen.v[3].state, LH_ITEM_PENDING);
	cr_assert_eq(seen.v[3].attempts, 0, "release keeps attempts");
	cr_assert_eq(seen.v[4].state, LH_ITEM_PENDING);

	/* Released and pending items come back in seq order; the retry is not due. */
	c = claim(id, "w", 110, 60, 10);
	cr_assert_eq(c.n, 2);
	cr_assert_eq(c.c[0].seq, 3);
	cr_assert_eq(c.c[0].fence, 2);
	cr_assert_eq(c.c[1].seq, 4);
	/* A dead or done item cannot move again. */
	cr_assert_eq(lh_store_item_release(st, id, 2, 1, &E), LH_EFENCED);
	claim_free(&c);
	counts(id, 0, 2, 1, 1, 1);
}

Test(SUITE, next_due)
{
	int64_t id = make_job("j");
	double when = -1;
	struct claim c;

	cr_assert_eq(lh_store_next_due(st, id, &when, &E), LH_ENOTFOUND);
	add_items(id, 3);
	c = claim(id, "w", 100, 60, 3);
	OK(lh_store_item_retry(st, id, 0, c.c[0].fence, 1, 500.5, 503, NULL, &E));
	OK(lh_store_item_retry(st, id, 1, c.c[1].fence, 1, 300.25, 503, NULL, &E));
	claim_free(&c);
	OK(lh_store_next_due(st, id, &when, &E));
	cr_assert_eq(when, 300.25);
	/* Once the earliest is claimed again, the next one is due next. */
	c = claim(id, "w", 400, 60, 1);
	cr_assert_eq(c.c[0].seq, 1);
	claim_free(&c);
	OK(lh_store_next_due(st, id, &when, &E));
	cr_assert_eq(when, 500.5);
	cr_assert_eq(lh_store_next_due(st, id + 1, &when, &E), LH_ENOTFOUND);
}

Test(SUITE, renew_extends_only_own_leases)
{
	int64_t id = make_job("j");
	struct claim a, b, late;

	add_items(id, 4);
	a = claim(id, "a", 100, 10, 2);
	b = claim(id, "b", 100, 10, 2);
	OK(lh_store_renew(st, id, "a", 200, &E));
	/* At 150 only b's leases (deadline 110) have expired. */
	late = claim(id, "c", 150, 10, 10);
	cr_assert_eq(late.n, 2);
	cr_assert_eq(late.c[0].seq, b.c[0].seq);
	cr_assert_eq(late.c[1].seq, b.c[1].seq);
	claim_free(&late);
	/* a's fences still hold. */
	OK(lh_store_item_done(st, id, a.c[0].seq, a.c[0].fence, 1, NULL, &E));
	claim_free(&a);
	claim_free(&b);
}

Test(SUITE, release_leases_by_owner_and_all)
{
	int64_t id = make_job("j"), n = -1;
	struct claim a, b, again;

	add_items(id, 5);
	a = claim(id, "a", 100, 60, 2);
	b = claim(id, "b", 100, 60, 3);
	OK(lh_store_release_leases(st, id, "a", &n, &E));
	cr_assert_eq(n, 2);
	counts(id, 2, 3, 0, 0, 0);
	OK(lh_store_release_leases(st, id, "nobody", &n, &E));
	cr_assert_eq(n, 0);
	OK(lh_store_release_leases(st, id, NULL, &n, &E));
	cr_assert_eq(n, 3);
	counts(id, 5, 0, 0, 0, 0);
	OK(lh_store_release_leases(st, id, NULL, NULL, &E));
	/* Released items come back with a new fence; the old ones are void. */
	again = claim(id, "c", 101, 60, 5);
	cr_assert_eq(again.n, 5);
	cr_assert_eq(again.c[0].seq, 0);
	cr_assert_eq(again.c[0].fence, 2);
	cr_assert_eq(lh_store_item_done(st, id, 0, a.c[0].fence, 1, NULL, &E), LH_EFENCED);
	claim_free(&a);
	claim_free(&b);
	claim_free(&again);
}

Test(SUITE, claim_inside_transaction_rolls_back)
{
	int64_t id = make_job("j");
	struct claim c;

	add_items(id, 3);
	OK(lh_store_begin(st, &E));
	c = claim(id, "w", 100, 60, 3);
	cr_assert_eq(c.n, 3);
	claim_free(&c);
	lh_store_rollback(st);
	counts(id, 3, 0, 0, 0, 0);
	c = claim(id, "w", 100, 60, 3);
	cr_assert_eq(c.c[0].fence, 1, "the rolled-back claim left no trace");
	claim_free(&c);
}

/* ---- listing and the journal ---- */

Test(SUITE, items_each_order_mask_and_journal)
{
	int64_t id = make_job("j");
	struct lh_step_rec s = step0("{\"answer\":42}");
	struct seen_items seen = { .n = 0 };
	struct claim c;
	int i;

	/* Added out of order: listing follows seq, not insertion. */
	OK(lh_store_item_add(st, id, 3, "d", 1, "3", 1, NULL, &E));
	OK(lh_store_item_add(st, id, 0, "a", 1, "0", 1, NULL, &E));
	OK(lh_store_item_add(st, id, 2, "c", 1, "2", 1, NULL, &E));
	OK(lh_store_item_add(st, id, 1, "b", 1, "1", 1, NULL, &E));
	c = claim(id, "w", 100, 60, 4);
	OK(lh_store_item_done(st, id, 0, c.c[0].fence, 1, &s, &E));
	OK(lh_store_item_dead(st, id, 1, c.c[1].fence, 2, 422, "{\"code\":\"x\"}", &E));
	s.response = "{\"answer\":43}";
	s.response_len = strlen(s.response);
	s.request_id = NULL;
	s.status = 201;
	OK(lh_store_item_done(st, id, 3, c.c[3].fence, 2, &s, &E));
	claim_free(&c);

	OK(lh_store_items_each(st, id, 0x1f, collect_item, &seen, &E));
	cr_assert_eq(seen.n, 4);
	for (i = 0; i < 4; i++)
		cr_assert_eq(seen.v[i].seq, i);
	cr_assert_str_eq(seen.v[0].key, "a");
	cr_assert_str_eq(seen.v[0].response, "{\"answer\":42}");
	cr_assert_eq(seen.v[0].response_len, strlen("{\"answer\":42}"));
	cr_assert_eq(seen.v[0].status, 200);
	cr_assert_str_eq(seen.v[0].request_id, "req-1");
	cr_assert_eq(seen.v[0].prompt_tokens, 11);
	cr_assert_eq(seen.v[0].completion_tokens, 22);
	cr_assert_eq(seen.v[0].started_at, 100.5);
	cr_assert_eq(seen.v[0].first_byte_at, 101.25);
	cr_assert_eq(seen.v[0].ended_at, 102.75);
	cr_assert_eq(seen.v[1].has_response, 0);
	cr_assert_eq(seen.v[1].status, 0);
	cr_assert_eq(seen.v[1].prompt_tokens, 0);
	cr_assert_str_eq(seen.v[1].last_error, "{\"code\":\"x\"}");
	cr_assert_eq(seen.v[2].state, LH_ITEM_LEASED);
	cr_assert_eq(seen.v[3].status, 201);
	cr_assert_eq(seen.v[3].attempts, 2);

	/* One state. */
	seen.n = 0;
	OK(lh_store_items_each(st, id, 1u << LH_ITEM_DONE, collect_item, &seen, &E));
	cr_assert_eq(seen.n, 2);
	cr_assert_eq(seen.v[0].seq, 0);
	cr_assert_eq(seen.v[1].seq, 3);
	cr_assert_str_eq(seen.v[1].response, "{\"answer\":43}");
	/* Several states. */
	seen.n = 0;
	OK(lh_store_items_each(st, id, (1u << LH_ITEM_DEAD) | (1u << LH_ITEM_LEASED), collect_item, &seen, &E));
	cr_assert_eq(seen.n, 2);
	cr_assert_eq(seen.v[0].seq, 1);
	cr_assert_eq(seen.v[1].seq, 2);
	/* No state. */
	seen.n = 0;
	OK(lh_store_items_each(st, id, 1u << LH_ITEM_RETRY, collect_item, &seen, &E));
	cr_assert_eq(seen.n, 0);
	/* A non-zero return stops the walk and is returned. */
	seen.n = 0;
	seen.stop_after = 2;
	cr_assert_eq(lh_store_items_each(st, id, 0x1f, collect_item, &seen, &E), 42);
	cr_assert_eq(seen.n, 2);
	/* The statement was reset: a new walk starts from the beginning. */
	seen.n = 0;
	seen.stop_after = 0;
	OK(lh_store_items_each(st, id, 0x1f, collect_item, &seen, &E));
	cr_assert_eq(seen.n, 4);
}

Test(SUITE, step_put_and_replay)
{
	int64_t id = make_job("j");
	struct lh_step_rec s = step0("first");
	struct seen_steps seen = { .n = 0 };
	struct seen_items items = { .n = 0 };
	struct claim c;

	add_items(id, 1);
	c = claim(id, "w", 100, 60, 1);
	s.step = 1;
	s.response = "second";
	s.response_len = 6;
	OK(lh_store_step_put(st, id, 0, c.c[0].fence, &s, &E));
	s.step = 0;
	s.response = "draft";
	s.response_len = 5;
	OK(lh_store_step_put(st, id, 0, c.c[0].fence, &s, &E));
	/* A step journaled again replaces its row. */
	s.attempt = 2;
	s.response = "first";
	s.response_len = 5;
	OK(lh_store_step_put(st, id, 0, c.c[0].fence, &s, &E));
	OK(lh_store_steps_each(st, id, 0, collect_step, &seen, &E));
	cr_assert_eq(seen.n, 2);
	cr_assert_eq(seen.step[0], 0);
	cr_assert_eq(seen.attempt[0], 2);
	cr_assert_str_eq(seen.response[0], "first");
	cr_assert_eq(seen.step[1], 1);
	cr_assert_str_eq(seen.response[1], "second");

	/* Finishing without a step keeps the journal as it is. */
	OK(lh_store_item_done(st, id, 0, c.c[0].fence, 2, NULL, &E));
	cr_assert_eq(count_steps(id, 0), 2);
	OK(lh_store_items_each(st, id, 1u << LH_ITEM_DONE, collect_item, &items, &E));
	cr_assert_eq(items.n, 1);
	cr_assert_str_eq(items.v[0].response, "first");
	claim_free(&c);
}

Test(SUITE, large_response_round_trip)
{
	int64_t id = make_job("j");
	size_t len = 16u << 20;
	char *big = lh_xmalloc(len + 1);
	struct lh_step_rec s = step0("");
	struct claim c;
	size_t i;

	for (i = 0; i < len; i++)
		big[i] = (char)('a' + i % 26);
	big[len] = '\0';
	OK(lh_store_item_add(st, id, 0, "big", 3, big, len, NULL, &E));
	c = claim(id, "w", 100, 60, 1);
	cr_assert_eq(c.c[0].input_len, len);
	cr_assert_eq(memcmp(c.c[0].input, big, len), 0);
	s.response = big;
	s.response_len = len;
	OK(lh_store_item_done(st, id, 0, c.c[0].fence, 1, &s, &E));
	claim_free(&c);
	lh_free(big);
	{
		struct seen_steps seen = { .n = 0 };
		OK(lh_store_steps_each(st, id, 0, collect_step, &seen, &E));
		cr_assert_eq(seen.n, 1);
		cr_assert_eq(strncmp(seen.response[0], "abcdefghijklmnopqrstuvwxyzabc", 29), 0);
	}
}

/* ---- events ---- */

Test(SUITE, events_numbered_per_job)
{
	int64_t a = make_job("a"), b = make_job("b"), seq = 0;
	struct seen_events ev = { .n = 0 };
	int i;

	for (i = 1; i <= 5; i++) {
		char data[32];
		snprintf(data, sizeof data, "{\"i\":%d}", i);
		OK(lh_store_event_add(st, a, 1000 + i, "item.done", "k", data, &seq, &E));
		cr_assert_eq(seq, i);
	}
	OK(lh_store_event_add(st, b, 2000, "job.created", NULL, NULL, &seq, &E));
	cr_assert_eq(seq, 1, "numbers are per job");
	OK(lh_store_event_add(st, a, 1006, "job.completed", NULL, NULL, &seq, &E));
	cr_assert_eq(seq, 6);
	OK(lh_store_event_add(st, a, 1007, "job.note", NULL, NULL, NULL, &E));
	cr_assert_eq(lh_store_event_add(st, b + 100, 1, "x", NULL, NULL, &seq, &E), LH_ENOTFOUND);

	OK(lh_store_events_each(st, a, 0, 0, collect_event, &ev, &E));
	cr_assert_eq(ev.n, 7);
	for (i = 0; i < 7; i++) {
		cr_assert_eq(ev.seq[i], i + 1);
		cr_assert_eq(ev.job[i], a);
		cr_assert_eq(ev.ts[i], 1001 + i);
	}
	cr_assert_str_eq(ev.type[0], "item.done");
	cr_assert_str_eq(ev.key[0], "k");
	cr_assert_str_eq(ev.data[2], "{\"i\":3}");
	cr_assert_str_eq(ev.type[5], "job.completed");
	cr_assert_eq(ev.has_key[5], 0);
	cr_assert_eq(ev.has_data[5], 0);

	ev.n = 0;
	OK(lh_store_events_each(st, a, 3, 2, collect_event, &ev, &E));
	cr_assert_eq(ev.n, 2);
	cr_assert_eq(ev.seq[0], 4);
	cr_assert_eq(ev.seq[1], 5);
	ev.n = 0;
	OK(lh_store_events_each(st, a, 7, 0, collect_event, &ev, &E));
	cr_assert_eq(ev.n, 0);
	ev.n = 0;
	OK(lh_store_events_each(st, b, 0, 10, collect_event, &ev, &E));
	cr_assert_eq(ev.n, 1);
	cr_assert_str_eq(ev.type[0], "job.created");
}

Test(SUITE, event_numbers_survive_rollback_and_reopen)
{
	int64_t a = make_job("a"), seq = 0;

	OK(lh_store_event_add(st, a, 1, "one", NULL, NULL, &seq, &E));
	OK(lh_store_begin(st, &E));
	OK(lh_store_event_add(st, a, 2, "two", NULL, NULL, &seq, &E));
	cr_assert_eq(seq, 2);
	lh_store_rollback(st);
	/* The rolled-back number is handed out again: no gap. */
	OK(lh_store_event_add(st, a, 2, "two", NULL, NULL, &seq, &E));
	cr_assert_eq(seq, 2);
	reopen();
	OK(lh_store_event_add(st, a, 3, "three", NULL, NULL, &seq, &E));
	cr_assert_eq(seq, 3);
}

/* ---- transactions and crashes ---- */

Test(SUITE, rollback_discards_commit_persists)
{
	struct lh_job_rec g;
	int64_t id;

	OK(lh_store_begin(st, &E));
	id = make_job("gone");
	lh_store_rollback(st);
	cr_assert_eq(lh_store_job_find(st, "gone", &g, &E), LH_ENOTFOUND);
	cr_assert_eq(lh_store_job_get(st, id, &g, &E), LH_ENOTFOUND);

	OK(lh_store_begin(st, &E));
	cr_assert_neq(lh_store_begin(st, &E), 0, "a transaction does not nest");
	id = make_job("kept");
	OK(lh_store_item_add(st, id, 0, "a", 1, "x", 1, NULL, &E));
	OK(lh_store_event_add(st, id, 1, "job.created", NULL, NULL, NULL, &E));
	OK(lh_store_commit(st, &E));
	reopen();
	OK(lh_store_job_find(st, "kept", &g, &E));
	cr_assert_eq(g.id, id);
	lh_job_rec_release(&g);
	counts(id, 1, 0, 0, 0, 0);
	/* Rolling back with no transaction open does nothing. */
	lh_store_rollback(st);
	counts(id, 1, 0, 0, 0, 0);
}

Test(SUITE, killed_writer_loses_only_uncommitted_work)
{
	int64_t id = make_job("j");
	struct claim c;
	pid_t pid;
	int status;

	add_items(id, 4);
	lh_store_close(st);
	st = NULL;
	pid = fork();
	cr_assert_neq(pid, -1);
	if (pid == 0) {
		struct lh_store *s2;
		struct lh_claimed *cl;
		size_t n;

		if (open_store(0, &s2) ||
		    lh_store_claim(s2, id, "w", 100, 60, 2, &cl, &n, &E) || n != 2 ||
		    lh_store_item_done(s2, id, 0, cl[0].fence, 1, NULL, &E) ||
		    lh_store_begin(s2, &E) ||
		    lh_store_item_done(s2, id, 1, cl[1].fence, 1, NULL, &E))
			_exit(1);
		/* Dies inside a transaction, with the WAL not checkpointed. */
		kill(getpid(), SIGKILL);
		_exit(2);
	}
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "child status %d", status);
	OK(open_store(0, &st));
	counts(id, 2, 1, 1, 0, 0);
	/* Recovery: a single-process run returns every lease. */
	OK(lh_store_release_leases(st, id, NULL, NULL, &E));
	c = claim(id, "w2", 200, 60, 10);
	cr_assert_eq(c.n, 3);
	cr_assert_eq(c.c[0].seq, 1);
	cr_assert_eq(c.c[0].fence, 2);
	claim_free(&c);
}

Test(SUITE, close_discards_open_transaction)
{
	struct lh_job_rec g;

	OK(lh_store_begin(st, &E));
	make_job("half");
	lh_store_close(st);
	st = NULL;
	OK(open_store(0, &st));
	cr_assert_eq(lh_store_job_find(st, "half", &g, &E), LH_ENOTFOUND);
}

Test(SUITE, second_handle_reads_beside_writer)
{
	struct lh_store *reader;
	int64_t id = make_job("j");

	OK(open_store(0, &reader));
	OK(lh_store_begin(st, &E));
	OK(lh_store_item_add(st, id, 0, "a", 1, "x", 1, NULL, &E));
	/* The reader is not blocked and sees only what was committed. */
	{
		int64_t c[LH_ITEM_NSTATES];
		OK(lh_store_item_counts(reader, id, c, &E));
		cr_assert_eq(c[LH_ITEM_PENDING], 0);
	}
	OK(lh_store_commit(st, &E));
	{
		int64_t c[LH_ITEM_NSTATES];
		OK(lh_store_item_counts(reader, id, c, &E));
		cr_assert_eq(c[LH_ITEM_PENDING], 1);
	}
	lh_store_close(reader);
}

/* ---- the daemon's additions (schema v2) ---- */

static int64_t make_job_with(const char *ref, const char *state, int priority, double time_limit)
{
	struct lh_job_rec j;

	memset(&j, 0, sizeof j);
	j.ref = (char *)ref;
	j.name = (char *)"n";
	j.kind = (char *)"batch";
	j.spec = (char *)"{}";
	j.source_sig = (char *)"s";
	snprintf(j.state, sizeof j.state, "%s", state);
	j.priority = priority;
	j.time_limit = time_limit;
	OK(lh_store_job_create(st, &j, &E));
	cr_assert_gt(j.id, 0);
	return j.id;
}

struct seen_jobs {
	int64_t id[64];
	int priority[64];
	char state[64][16];
	char ref[64][16];
	int n;
	int stop_after; /* 0: never */
};

static int collect_job(const struct lh_job_rec *j, void *arg)
{
	struct seen_jobs *s = arg;

	cr_assert_lt(s->n, 64);
	s->id[s->n] = j->id;
	s->priority[s->n] = j->priority;
	copy_bounded(s->state[s->n], sizeof s->state[0], j->state);
	copy_bounded(s->ref[s->n], sizeof s->ref[0], j->ref);
	s->n++;
	if (s->stop_after && s->n == s->stop_after)
		return 42;
	return 0;
}

static struct seen_jobs list_jobs(const char *state, int order, int64_t after, size_t limit, size_t offset)
{
	struct lh_job_filter f = { .state = state, .order = order, .after_id = after, .limit = limit,
				   .offset = offset };
	struct seen_jobs s;

	memset(&s, 0, sizeof s);
	OK(lh_store_jobs_each(st, &f, collect_job, &s, &E));
	return s;
}

/* Checks that a listing gave exactly the jobs named by refs, in order. */
static void want_refs(const struct seen_jobs *s, const char *refs)
{
	char got[256] = "";
	int i;

	for (i = 0; i < s->n; i++) {
		strncat(got, s->ref[i], sizeof got - strlen(got) - 1);
		strncat(got, i + 1 < s->n ? " " : "", sizeof got - strlen(got) - 1);
	}
	cr_assert_str_eq(got, refs);
}

static int64_t count_jobs(const char *state)
{
	int64_t n = -1;

	OK(lh_store_jobs_count(st, state, &n, &E));
	return n;
}

Test(SUITE, job_v2_fields)
{
	int64_t id = make_job_with("t", "queued", 3, 3600.5), seq = 0;
	struct lh_job_rec g;

	OK(lh_store_job_get(st, id, &g, &E));
	cr_assert_eq(g.priority, 3);
	cr_assert_eq(g.time_limit, 3600.5);
	cr_assert_eq(g.rate_items, 0);
	cr_assert_eq(g.rate_tokens, 0);
	cr_assert_null(g.last_error);
	cr_assert_eq(g.last_event_seq, 0);
	lh_job_rec_release(&g);

	OK(lh_store_job_set_priority(st, id, -2, &E));
	OK(lh_store_job_set_rates(st, id, 12.5, 800.25, 1.5, 3, &E));
	OK(lh_store_job_set_rates(st, id, 10, 700, 2.0, 2, &E));
	OK(lh_store_job_add(st, id, 0, 0, 0, 0, 0, 0.5, &E));
	OK(lh_store_job_set_error(st, id, "{\"code\":\"x\"}", &E));
	OK(lh_store_event_add(st, id, 1, "job.running", NULL, NULL, &seq, &E));
	OK(lh_store_event_add(st, id, 2, "item.failed", "k", NULL, &seq, &E));
	OK(lh_store_job_find(st, "t", &g, &E));
	cr_assert_eq(g.priority, -2);
	cr_assert_eq(g.rate_items, 10);
	cr_assert_eq(g.rate_tokens, 700);
	cr_assert_float_eq(g.run_secs, 4.0, 1e-9, "set_rates adds to run_secs: %f", g.run_secs);
	cr_assert_eq(g.in_flight, 2, "set_rates records the requests in flight: %lld", (long long)g.in_flight);
	cr_assert_str_eq(g.last_error, "{\"code\":\"x\"}");
	cr_assert_eq(g.last_event_seq, 2);
	cr_assert_eq(g.time_limit, 3600.5);
	cr_assert_gt(g.updated_at, 1.6e9);
	lh_job_rec_release(&g);
	cr_assert_null(g.last_error);

	/* NULL clears the error; a second release is harmless. */
	OK(lh_store_job_set_error(st, id, NULL, &E));
	OK(lh_store_job_get(st, id, &g, &E));
	cr_assert_null(g.last_error);
	lh_job_rec_release(&g);
	lh_job_rec_release(&g);

	/* The text fields: settings, pause reason, what it waits for. */
	cr_assert_eq(g.pause_reason[0], '\0');
	cr_assert_null(g.waiting);
	OK(lh_store_job_set_text(st, id, LH_JOB_SPEC, "{\"model\":\"m2\"}", &E));
	OK(lh_store_job_set_text(st, id, LH_JOB_PAUSE_REASON, "early_stop", &E));
	OK(lh_store_job_set_text(st, id, LH_JOB_WAITING, "the server at http://x (connection refused)", &E));
	OK(lh_store_job_get(st, id, &g, &E));
	cr_assert_str_eq(g.spec, "{\"model\":\"m2\"}");
	cr_assert_str_eq(g.pause_reason, "early_stop");
	cr_assert_str_eq(g.waiting, "the server at http://x (connection refused)");
	lh_job_rec_release(&g);
	cr_assert_null(g.waiting);
	OK(lh_store_job_set_text(st, id, LH_JOB_PAUSE_REASON, NULL, &E));
	OK(lh_store_job_set_text(st, id, LH_JOB_WAITING, NULL, &E));
	OK(lh_store_job_get(st, id, &g, &E));
	cr_assert_eq(g.pause_reason[0], '\0');
	cr_assert_null(g.waiting);
	lh_job_rec_release(&g);
	/* A reason too long to read back, and settings of NULL, are refused. */
	cr_assert_eq(lh_store_job_set_text(st, id, LH_JOB_PAUSE_REASON, "a_reason_far_too_long", &E), LH_EINPUT);
	cr_assert_eq(lh_store_job_set_text(st, id, LH_JOB_SPEC, NULL, &E), LH_EINPUT);
	cr_assert_eq(lh_store_job_set_text(st, id + 1, LH_JOB_WAITING, "x", &E), LH_ENOTFOUND);

	cr_assert_eq(lh_store_job_set_priority(st, id + 1, 1, &E), LH_ENOTFOUND);
	cr_assert_eq(lh_store_job_set_rates(st, id + 1, 1, 1, 1, 0, &E), LH_ENOTFOUND);
	cr_assert_eq(lh_store_job_set_error(st, id + 1, "{}", &E), LH_ENOTFOUND);

	/* A negative time limit means none. */
	id = make_job_with("u", "queued", 0, -5);
	OK(lh_store_job_get(st, id, &g, &E));
	cr_assert_eq(g.time_limit, 0);
	lh_job_rec_release(&g);
}

/* a..g with (state, priority): a queued 0, b running 5, c queued 5,
 * d queued 1, e completed 9, f queued 5, g paused 0. */
static void make_seven(int64_t ids[7])
{
	static const char *const states[] = { "queued", "running", "queued", "queued", "completed", "queued",
					      "paused" };
	static const int prio[] = { 0, 5, 5, 1, 9, 5, 0 };
	int i;

	for (i = 0; i < 7; i++) {
		char ref[2] = { (char)('a' + i), 0 };
		ids[i] = make_job_with(ref, states[i], prio[i], 0);
		if (i)
			cr_assert_gt(ids[i], ids[i - 1]);
	}
}

Test(SUITE, jobs_each_orders_and_filters)
{
	struct seen_jobs s;
	int64_t ids[7];

	make_seven(ids);
	want_refs((s = list_jobs(NULL, LH_JOBS_NEWEST, 0, 0, 0), &s), "g f e d c b a");
	want_refs((s = list_jobs(NULL, LH_JOBS_OLDEST, 0, 0, 0), &s), "a b c d e f g");
	want_refs((s = list_jobs(NULL, LH_JOBS_SCHEDULE, 0, 0, 0), &s), "e b c f d a g");
	want_refs((s = list_jobs("queued", LH_JOBS_NEWEST, 0, 0, 0), &s), "f d c a");
	want_refs((s = list_jobs("queued", LH_JOBS_OLDEST, 0, 0, 0), &s), "a c d f");
	want_refs((s = list_jobs("queued", LH_JOBS_SCHEDULE, 0, 0, 0), &s), "c f d a");
	want_refs((s = list_jobs("cancelled", LH_JOBS_NEWEST, 0, 0, 0), &s), "");
	/* The record is whole. */
	s = list_jobs("completed", LH_JOBS_SCHEDULE, 0, 0, 0);
	cr_assert_eq(s.n, 1);
	cr_assert_eq(s.id[0], ids[4]);
	cr_assert_eq(s.priority[0], 9);
	cr_assert_str_eq(s.state[0], "completed");

	/* A NULL filter lists every job, newest first. */
	memset(&s, 0, sizeof s);
	OK(lh_store_jobs_each(st, NULL, collect_job, &s, &E));
	want_refs(&s, "g f e d c b a");
	/* A non-zero return stops the walk and is returned; the next starts afresh. */
	memset(&s, 0, sizeof s);
	s.stop_after = 2;
	cr_assert_eq(lh_store_jobs_each(st, NULL, collect_job, &s, &E), 42);
	want_refs(&s, "g f");
	want_refs((s = list_jobs(NULL, LH_JOBS_NEWEST, 0, 0, 0), &s), "g f e d c b a");
	{
		struct lh_job_filter f = { .order = 7 };
		cr_assert_eq(lh_store_jobs_each(st, &f, collect_job, &s, &E), LH_EUSAGE);
		f.order = LH_JOBS_OLDEST;
		f.after_id = -1;
		cr_assert_eq(lh_store_jobs_each(st, &f, collect_job, &s, &E), LH_EUSAGE);
	}
}

Test(SUITE, jobs_each_paging_and_cursor)
{
	struct seen_jobs s;
	int64_t ids[7];

	make_seven(ids);
	/* Newest first, three at a time, each page after the last id seen. */
	want_refs((s = list_jobs(NULL, LH_JOBS_NEWEST, 0, 3, 0), &s), "g f e");
	want_refs((s = list_jobs(NULL, LH_JOBS_NEWEST, s.id[2], 3, 0), &s), "d c b");
	want_refs((s = list_jobs(NULL, LH_JOBS_NEWEST, s.id[2], 3, 0), &s), "a");
	want_refs((s = list_jobs(NULL, LH_JOBS_NEWEST, s.id[0], 3, 0), &s), "");
	/* Oldest first within a state. */
	want_refs((s = list_jobs("queued", LH_JOBS_OLDEST, 0, 2, 0), &s), "a c");
	want_refs((s = list_jobs("queued", LH_JOBS_OLDEST, s.id[1], 2, 0), &s), "d f");
	want_refs((s = list_jobs("queued", LH_JOBS_OLDEST, s.id[1], 2, 0), &s), "");
	want_refs((s = list_jobs("queued", LH_JOBS_NEWEST, ids[3], 0, 0), &s), "c a");
	/* A cursor on a deleted job still works: it is only a bound. */
	OK(lh_store_job_delete(st, ids[3], &E));
	want_refs((s = list_jobs(NULL, LH_JOBS_NEWEST, ids[3], 0, 0), &s), "c b a");
	want_refs((s = list_jobs(NULL, LH_JOBS_OLDEST, ids[3], 0, 0), &s), "e f g");
	/* Offsets. */
	want_refs((s = list_jobs("queued", LH_JOBS_SCHEDULE, 0, 2, 1), &s), "f a");
	want_refs((s = list_jobs(NULL, LH_JOBS_NEWEST, 0, 0, 4), &s), "b a");
	want_refs((s = list_jobs(NULL, LH_JOBS_NEWEST, ids[5], 1, 1), &s), "c");
	want_refs((s = list_jobs(NULL, LH_JOBS_OLDEST, 0, 10, 6), &s), "");
	/* SCHEDULE has no cursor: after_id is ignored. */
	want_refs((s = list_jobs("queued", LH_JOBS_SCHEDULE, ids[2], 0, 0), &s), "c f a");
}

Test(SUITE, jobs_count_by_state)
{
	int64_t ids[7];

	cr_assert_eq(count_jobs(NULL), 0);
	make_seven(ids);
	cr_assert_eq(count_jobs(NULL), 7);
	cr_assert_eq(count_jobs("queued"), 4);
	cr_assert_eq(count_jobs("running"), 1);
	cr_assert_eq(count_jobs("cancelled"), 0);
	OK(lh_store_job_set_state(st, ids[0], "running", 1, 0, &E));
	OK(lh_store_job_delete(st, ids[2], &E));
	cr_assert_eq(count_jobs(NULL), 6);
	cr_assert_eq(count_jobs("queued"), 2);
	cr_assert_eq(count_jobs("running"), 2);
}

Test(SUITE, job_ids_are_not_reused)
{
	int64_t a = make_job("a"), b = make_job("b"), c;

	/* The newest job goes: its id must not name the next one. */
	OK(lh_store_job_delete(st, b, &E));
	c = make_job("c");
	cr_assert_gt(c, b);
	reopen();
	OK(lh_store_job_delete(st, c, &E));
	cr_assert_gt(make_job("d"), c);
	cr_assert_lt(a, b);
}

/* Ten items: done 0 3 6 9 (with a journal row), dead 1 4 7, retry 2 8,
 * pending 5. */
static int64_t make_mixed_items(void)
{
	int64_t id = make_job("j");
	struct lh_step_rec s = step0("{\"r\":1}");
	struct claim c;
	int i;

	add_items(id, 10);
	c = claim(id, "w", 10, 1000, 10);
	cr_assert_eq(c.n, 10);
	for (i = 0; i < 10; i++) {
		int64_t f = c.c[i].fence;
		switch (i) {
		case 0: case 3: case 6: case 9:
			OK(lh_store_item_done(st, id, i, f, 1, &s, &E));
			break;
		case 1: case 4: case 7:
			OK(lh_store_item_dead(st, id, i, f, 3, 422, "{\"code\":\"bad\"}", &E));
			break;
		case 2: case 8:
			OK(lh_store_item_retry(st, id, i, f, 1, 500, 503, "{\"code\":\"busy\"}", &E));
			break;
		default:
			OK(lh_store_item_release(st, id, i, f, &E));
		}
	}
	claim_free(&c);
	OK(lh_store_job_add(st, id, 4, 3, 2, 0, 0, 0, &E));
	return id;
}

static struct seen_items page(int64_t job, unsigned mask, int64_t after, size_t limit)
{
	struct seen_items s;

	memset(&s, 0, sizeof s);
	OK(lh_store_items_page(st, job, mask, after, limit, collect_item, &s, &E));
	return s;
}

static void want_seqs(const struct seen_items *s, const char *seqs)
{
	char got[256] = "";
	int i;

	for (i = 0; i < s->n; i++)
		snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", i ? " " : "",
			 (long long)s->v[i].seq);
	cr_assert_str_eq(got, seqs);
}

Test(SUITE, items_page_by_state_and_cursor)
{
	int64_t id = make_mixed_items();
	const unsigned done = 1u << LH_ITEM_DONE, dead = 1u << LH_ITEM_DEAD, retry = 1u << LH_ITEM_RETRY;
	struct seen_items s;

	/* One state, two at a time. */
	want_seqs((s = page(id, done, -1, 2), &s), "0 3");
	cr_assert_str_eq(s.v[0].response, "{\"r\":1}");
	cr_assert_eq(s.v[0].state, LH_ITEM_DONE);
	want_seqs((s = page(id, done, s.v[1].seq, 2), &s), "6 9");
	want_seqs((s = page(id, done, s.v[1].seq, 2), &s), "");
	/* Several states, three at a time. */
	want_seqs((s = page(id, dead | retry, -1, 3), &s), "1 2 4");
	cr_assert_str_eq(s.v[0].last_error, "{\"code\":\"bad\"}");
	cr_assert_eq(s.v[0].last_status, 422);
	cr_assert_eq(s.v[0].attempts, 3);
	cr_assert_eq(s.v[1].state, LH_ITEM_RETRY);
	want_seqs((s = page(id, dead | retry, s.v[2].seq, 3), &s), "7 8");
	want_seqs((s = page(id, dead | retry, 8, 3), &s), "");
	/* limit 0: the rest; a cursor between items; every state. */
	want_seqs((s = page(id, 0x1f, 4, 0), &s), "5 6 7 8 9");
	want_seqs((s = page(id, 0x1f, -1, 4), &s), "0 1 2 3");
	want_seqs((s = page(id, 1u << LH_ITEM_PENDING, -1, 0), &s), "5");
	want_seqs((s = page(id, dead, 2, 1), &s), "4");
	want_seqs((s = page(id, 1u << LH_ITEM_LEASED, -1, 10), &s), "");
	want_seqs((s = page(id, 0, -1, 10), &s), "");
	want_seqs((s = page(id + 1, 0x1f, -1, 10), &s), "");
	/* A non-zero return stops the walk and is returned. */
	memset(&s, 0, sizeof s);
	s.stop_after = 2;
	cr_assert_eq(lh_store_items_page(st, id, 0x1f, -1, 0, collect_item, &s, &E), 42);
	want_seqs(&s, "0 1");
}

static struct lh_job_rec get_job(int64_t id)
{
	struct lh_job_rec g;

	OK(lh_store_job_get(st, id, &g, &E));
	return g;
}

Test(SUITE, retry_dead_all)
{
	int64_t id = make_mixed_items(), n = -1;
	struct lh_job_rec g;
	struct seen_items s;
	struct claim c;
	double when = 0;

	counts(id, 1, 0, 4, 2, 3);
	OK(lh_store_items_retry_dead(st, id, NULL, 0, &n, &E));
	cr_assert_eq(n, 3);
	counts(id, 4, 0, 4, 2, 0);
	g = get_job(id);
	cr_assert_eq(g.n_dead, 0);
	cr_assert_eq(g.n_done, 4, "other counters are left alone");
	cr_assert_eq(g.n_retries, 2);
	lh_job_rec_release(&g);
	/* Attempts start again; the last error stays for the record. */
	want_seqs((s = page(id, 1u << LH_ITEM_PENDING, -1, 0), &s), "1 4 5 7");
	cr_assert_eq(s.v[0].attempts, 0);
	cr_assert_eq(s.v[0].last_status, 422);
	cr_assert_str_eq(s.v[0].last_error, "{\"code\":\"bad\"}");
	/* Retry items are not dead: untouched, still due at 500. */
	OK(lh_store_next_due(st, id, &when, &E));
	cr_assert_eq(when, 500);
	/* The revived items are claimed again, in seq order, with fresh attempts. */
	c = claim(id, "w2", 100, 60, 10);
	cr_assert_eq(c.n, 4);
	cr_assert_eq(c.c[0].seq, 1);
	cr_assert_eq(c.c[0].attempts, 0);
	cr_assert_eq(c.c[0].fence, 2);
	cr_assert_eq(c.c[3].seq, 7);
	claim_free(&c);
	/* Nothing dead left: nothing changes. */
	OK(lh_store_items_retry_dead(st, id, NULL, 0, &n, &E));
	cr_assert_eq(n, 0);
	OK(lh_store_items_retry_dead(st, id, NULL, 0, NULL, &E));
	n = -1;
	cr_assert_eq(lh_store_items_retry_dead(st, id + 1, NULL, 0, &n, &E), LH_ENOTFOUND);
	cr_assert_eq(n, 0);
}

Test(SUITE, retry_dead_by_keys)
{
	int64_t id = make_job("j"), other = make_job("other"), n = -1;
	const char *keys[] = { "k1", "k3", "k5", "k1" };
	const char *typo[] = { "k1", "nope" };
	const char *one[] = { "k0" }, *two[] = { "k2" }, *four[] = { "k4" };
	struct lh_job_rec g;
	struct claim c;
	int i;

	add_items(id, 6);
	c = claim(id, "w", 10, 60, 6);
	for (i = 0; i < 5; i++)
		OK(lh_store_item_dead(st, id, i, c.c[i].fence, 2, 400, "{}", &E));
	OK(lh_store_item_done(st, id, 5, c.c[5].fence, 1, NULL, &E));
	claim_free(&c);
	OK(lh_store_job_add(st, id, 1, 5, 0, 0, 0, 0, &E));
	/* k4 is dead in the other job too. */
	OK(lh_store_item_add(st, other, 0, "k4", 2, "x", 1, NULL, &E));
	c = claim(other, "w", 10, 60, 1);
	OK(lh_store_item_dead(st, other, 0, c.c[0].fence, 1, 400, "{}", &E));
	claim_free(&c);

	/* An unknown key is an error, and nothing is retried. */
	cr_assert_eq(lh_store_items_retry_dead(st, id, typo, 2, &n, &E), LH_ENOTFOUND);
	cr_assert_not_null(strstr(E.msg, "\"nope\""), "%s", E.msg);
	counts(id, 0, 0, 1, 0, 5);
	/* A done item and a repeated key are skipped. */
	OK(lh_store_items_retry_dead(st, id, keys, 4, &n, &E));
	cr_assert_eq(n, 2);
	counts(id, 2, 0, 1, 0, 3);
	g = get_job(id);
	cr_assert_eq(g.n_dead, 3);
	lh_job_rec_release(&g);
	OK(lh_store_items_retry_dead(st, id, one, 1, NULL, &E));
	counts(id, 3, 0, 1, 0, 2);
	/* Keys are per job. */
	OK(lh_store_items_retry_dead(st, id, four, 1, &n, &E));
	cr_assert_eq(n, 1);
	counts(other, 0, 0, 0, 0, 1);
	counts(id, 4, 0, 1, 0, 1);
	/* Inside the caller's transaction: undone by its rollback. */
	OK(lh_store_begin(st, &E));
	OK(lh_store_items_retry_dead(st, id, two, 1, &n, &E));
	cr_assert_eq(n, 1);
	lh_store_rollback(st);
	counts(id, 4, 0, 1, 0, 1);
	g = get_job(id);
	cr_assert_eq(g.n_dead, 1);
	lh_job_rec_release(&g);

	cr_assert_eq(lh_store_items_retry_dead(st, id, NULL, 2, &n, &E), LH_EUSAGE);
	cr_assert_eq(lh_store_items_retry_dead(st, other + 1, two, 1, &n, &E), LH_ENOTFOUND);
	cr_assert_eq(n, 0);
}

Test(SUITE, events_all_jobs_in_one_order)
{
	int64_t a = make_job("a"), b = make_job("b"), c = make_job("c"), seq;
	struct seen_events ev = { .n = 0 }, per = { .n = 0 };
	static const char *const order = "abacba";
	int64_t ids[3];
	int64_t top;
	int i;

	ids[0] = a;
	ids[1] = b;
	ids[2] = c;
	for (i = 0; order[i]; i++) {
		char type[16];
		snprintf(type, sizeof type, "t%d", i);
		OK(lh_store_event_add(st, ids[order[i] - 'a'], 100 + i, type, NULL, "{}", &seq, &E));
	}
	OK(lh_store_events_all_each(st, 0, 0, collect_event, &ev, &E));
	cr_assert_eq(ev.n, 6);
	for (i = 0; i < 6; i++) {
		char type[16];
		snprintf(type, sizeof type, "t%d", i);
		cr_assert_eq(ev.job[i], ids[order[i] - 'a'], "event %d", i);
		cr_assert_str_eq(ev.type[i], type);
		cr_assert_eq(ev.ts[i], 100 + i);
		cr_assert_str_eq(ev.data[i], "{}");
		if (i)
			cr_assert_gt(ev.gseq[i], ev.gseq[i - 1]);
		else
			cr_assert_gt(ev.gseq[0], 0);
	}
	/* Per-job numbers are kept: a's events are 1, 2, 3. */
	cr_assert_eq(ev.seq[0], 1);
	cr_assert_eq(ev.seq[2], 2);
	cr_assert_eq(ev.seq[5], 3);
	cr_assert_eq(ev.seq[4], 2, "b's second");
	/* A job's own listing carries the same global numbers. */
	OK(lh_store_events_each(st, a, 0, 0, collect_event, &per, &E));
	cr_assert_eq(per.n, 3);
	cr_assert_eq(per.gseq[0], ev.gseq[0]);
	cr_assert_eq(per.gseq[1], ev.gseq[2]);
	cr_assert_eq(per.gseq[2], ev.gseq[5]);

	/* Pages by gseq. */
	{
		struct seen_events pg = { .n = 0 };
		OK(lh_store_events_all_each(st, ev.gseq[1], 2, collect_event, &pg, &E));
		cr_assert_eq(pg.n, 2);
		cr_assert_eq(pg.gseq[0], ev.gseq[2]);
		cr_assert_eq(pg.gseq[1], ev.gseq[3]);
		pg.n = 0;
		OK(lh_store_events_all_each(st, ev.gseq[5], 0, collect_event, &pg, &E));
		cr_assert_eq(pg.n, 0);
	}

	/* A deleted job's events leave the stream; the others keep their numbers. */
	top = ev.gseq[5];
	OK(lh_store_job_delete(st, b, &E));
	per.n = 0;
	OK(lh_store_events_all_each(st, 0, 0, collect_event, &per, &E));
	cr_assert_eq(per.n, 4);
	cr_assert_eq(per.gseq[1], ev.gseq[2]);
	cr_assert_eq(per.gseq[3], top);
	/* The newest events go with their job: their numbers are not handed
	 * out again, or a client resuming after them would miss new ones. */
	OK(lh_store_job_delete(st, a, &E));
	reopen();
	OK(lh_store_event_add(st, c, 200, "late", NULL, NULL, &seq, &E));
	cr_assert_eq(seq, 2);
	per.n = 0;
	OK(lh_store_events_all_each(st, top, 0, collect_event, &per, &E));
	cr_assert_eq(per.n, 1);
	cr_assert_gt(per.gseq[0], top);
	cr_assert_str_eq(per.type[0], "late");
}

Test(SUITE, writes_to_a_missing_job_write_nothing)
{
	int64_t a = make_job("a"), gone = make_job("gone"), seq = 0;
	struct seen_events ev = { .n = 0 };
	struct lh_job_rec g;

	OK(lh_store_job_delete(st, gone, &E));
	/* The engine may race with a delete: inside its group commit the
	 * failed writes leave the rest of the transaction intact. */
	OK(lh_store_begin(st, &E));
	OK(lh_store_event_add(st, a, 1, "one", NULL, NULL, &seq, &E));
	cr_assert_eq(lh_store_event_add(st, gone, 1, "x", NULL, NULL, &seq, &E), LH_ENOTFOUND);
	cr_assert_eq(seq, 0);
	cr_assert_eq(lh_store_job_add(st, gone, 1, 0, 0, 0, 0, 0, &E), LH_ENOTFOUND);
	cr_assert_eq(lh_store_job_set_rates(st, gone, 1, 1, 1, 0, &E), LH_ENOTFOUND);
	cr_assert_eq(lh_store_job_set_error(st, gone, "{}", &E), LH_ENOTFOUND);
	OK(lh_store_event_add(st, a, 2, "two", NULL, NULL, &seq, &E));
	cr_assert_eq(seq, 2);
	OK(lh_store_commit(st, &E));
	OK(lh_store_events_all_each(st, 0, 0, collect_event, &ev, &E));
	cr_assert_eq(ev.n, 2);
	cr_assert_eq(ev.job[0], a);
	cr_assert_eq(ev.job[1], a);
	cr_assert_eq(lh_store_job_get(st, gone, &g, &E), LH_ENOTFOUND);
	/* Outside a transaction too. */
	cr_assert_eq(lh_store_event_add(st, gone, 1, "x", NULL, NULL, NULL, &E), LH_ENOTFOUND);
	ev.n = 0;
	OK(lh_store_events_all_each(st, 0, 0, collect_event, &ev, &E));
	cr_assert_eq(ev.n, 2);
}

/* ---- several handles on one store ---- */

static double mono(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void pause_ms(int ms)
{
	struct timespec t = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L };

	nanosleep(&t, NULL);
}

Test(SUITE, two_handles_write_alternately)
{
	struct lh_store *h2, *h[2];
	int64_t id = make_job("j"), seq = 0, c[LH_ITEM_NSTATES];
	struct seen_events ev = { .n = 0 };
	struct lh_job_rec g;
	int i;

	OK(open_store(0, &h2));
	h[0] = st;
	h[1] = h2;
	for (i = 0; i < 20; i++) {
		struct lh_store *x = h[i % 2];
		char key[16];
		int kl = snprintf(key, sizeof key, "k%d", i);

		/* An event on its own, and an item inside a transaction. */
		OK(lh_store_event_add(x, id, i, "tick", NULL, NULL, &seq, &E));
		cr_assert_eq(seq, i + 1);
		OK(lh_store_begin(x, &E));
		OK(lh_store_item_add(x, id, i, key, (size_t)kl, "in", 2, NULL, &E));
		OK(lh_store_job_add(x, id, 0, 0, 0, 1, 0, 0, &E));
		OK(lh_store_commit(x, &E));
	}
	OK(lh_store_job_set_priority(h2, id, 9, &E));
	g = get_job(id);
	cr_assert_eq(g.priority, 9);
	cr_assert_eq(g.prompt_tokens, 20);
	cr_assert_eq(g.last_event_seq, 20);
	lh_job_rec_release(&g);
	OK(lh_store_item_counts(h2, id, c, &E));
	cr_assert_eq(c[LH_ITEM_PENDING], 20);
	OK(lh_store_events_all_each(h2, 0, 0, collect_event, &ev, &E));
	cr_assert_eq(ev.n, 20);
	for (i = 1; i < 20; i++) {
		cr_assert_gt(ev.gseq[i], ev.gseq[i - 1]);
		cr_assert_eq(ev.seq[i], i + 1);
	}
	lh_store_close(h2);
}

struct waiter {
	struct lh_store *h;
	int64_t job, seq;
	int rc, started, done;
	double t_end;
	struct lh_err e;
};

static void *waiter_main(void *arg)
{
	struct waiter *w = arg;

	__atomic_store_n(&w->started, 1, __ATOMIC_SEQ_CST);
	w->rc = lh_store_event_add(w->h, w->job, 2, "from.thread", NULL, NULL, &w->seq, &w->e);
	w->t_end = mono();
	__atomic_store_n(&w->done, 1, __ATOMIC_SEQ_CST);
	return NULL;
}

Test(SUITE, writer_waits_for_another_handles_transaction)
{
	struct waiter w;
	pthread_t t;
	double t_commit;
	int64_t seq = 0;

	memset(&w, 0, sizeof w);
	w.job = make_job("j");
	/* The first handle holds the write lock... */
	OK(lh_store_begin(st, &E));
	OK(lh_store_event_add(st, w.job, 1, "from.main", NULL, NULL, &seq, &E));
	cr_assert_eq(seq, 1);
	/* ...which does not stop a second handle from opening: the schema is
	 * current, so opening takes no write lock. Had it needed one, it would
	 * wait here, on the thread that holds the lock, until the busy timeout
	 * and fail: no stopwatch needed. */
	OK(open_store(0, &w.h));

	/* The second handle's write waits for the first to commit, then succeeds. */
	cr_assert_eq(pthread_create(&t, NULL, waiter_main, &w), 0);
	while (!__atomic_load_n(&w.started, __ATOMIC_SEQ_CST))
		pause_ms(1);
	/* Not a synchronisation: nothing below depends on how long this lasts
	 * (the write cannot end before the commit, however long we wait, short
	 * of the 5 s busy timeout). It only gives a write that would not wait
	 * the time to show it. */
	pause_ms(300);
	cr_assert_eq(__atomic_load_n(&w.done, __ATOMIC_SEQ_CST), 0, "the write did not wait: rc %d %s", w.rc,
		     w.e.msg);
	t_commit = mono();
	OK(lh_store_commit(st, &E));
	cr_assert_eq(pthread_join(t, NULL), 0);
	cr_assert_eq(w.rc, 0, "%d %s", w.rc, w.e.msg);
	cr_assert_eq(w.seq, 2, "numbered after the first handle's event");
	cr_assert_geq(w.t_end, t_commit);
	lh_store_close(w.h);
	{
		struct seen_events ev = { .n = 0 };
		OK(lh_store_events_all_each(st, 0, 0, collect_event, &ev, &E));
		cr_assert_eq(ev.n, 2);
		cr_assert_str_eq(ev.type[0], "from.main");
		cr_assert_str_eq(ev.type[1], "from.thread");
	}
}

#ifndef LH_TEST_PG
/* ---- SQLite only: the file format ---- */

static void write_file(const char *p, const char *text)
{
	FILE *f = fopen(p, "w");

	cr_assert_not_null(f);
	fputs(text, f);
	fclose(f);
}

static void sqlite_setup(void)
{
	make_dir();
	lh_err_clear(&E);
	st = NULL;
}

TestSuite(store_sqlite, .init = sqlite_setup, .fini = teardown);

Test(store_sqlite, new_store_is_stamped_and_in_wal_mode)
{
	OK(open_store(1, &st));
	lh_store_close(st);
	st = NULL;
	cr_assert_eq(sqlite_int("PRAGMA user_version"), STORE_SQLITE_SCHEMA);
	cr_assert_eq(sqlite_int("PRAGMA application_id"), 0x4c48756c);
	cr_assert_eq(sqlite_int("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN"
				" ('jobs', 'items', 'steps', 'events', 'workers')"), 5);
	cr_assert_eq(sqlite_int("SELECT journal_mode = 'wal' FROM pragma_journal_mode"), 1);
	OK(open_store(0, &st));
}

Test(store_sqlite, text_file_is_not_a_store)
{
	write_file(path, "this is a plain text file, long enough to fill a SQLite header and then some more\n");
	cr_assert_eq(open_store(1, &st), LH_ECORRUPT);
	cr_assert_null(st);
	cr_assert_not_null(strstr(E.msg, path), "%s", E.msg);
	cr_assert_not_null(strstr(E.msg, "is not a longhaul store"), "%s", E.msg);
}

Test(store_sqlite, foreign_database_is_refused_untouched)
{
	sqlite_exec("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT); INSERT INTO notes VALUES (1, 'x')");
	cr_assert_eq(open_store(1, &st), LH_ECORRUPT);
	cr_assert_not_null(strstr(E.msg, "is not a longhaul store"), "%s", E.msg);
	cr_assert_not_null(strstr(E.msg, path), "%s", E.msg);
	/* Nothing was written: no tables of ours, no stamp, no WAL switch. */
	cr_assert_eq(sqlite_int("SELECT count(*) FROM sqlite_master"), 1);
	cr_assert_eq(sqlite_int("PRAGMA user_version"), 0);
	cr_assert_eq(sqlite_int("SELECT journal_mode = 'delete' FROM pragma_journal_mode"), 1);
}

Test(store_sqlite, other_application_is_refused)
{
	sqlite_exec("PRAGMA application_id = 1234");
	cr_assert_eq(open_store(1, &st), LH_ECORRUPT);
	cr_assert_not_null(strstr(E.msg, "another application"), "%s", E.msg);
}

Test(store_sqlite, newer_schema_is_refused)
{
	OK(open_store(1, &st));
	lh_store_close(st);
	st = NULL;
	sqlite_exec("PRAGMA user_version = 99");
	cr_assert_eq(open_store(0, &st), LH_ECORRUPT);
	cr_assert_not_null(strstr(E.msg, "newer longhaul"), "%s", E.msg);
	cr_assert_not_null(strstr(E.msg, "schema 99"), "%s", E.msg);
	cr_assert_not_null(strstr(E.msg, path), "%s", E.msg);
}

Test(store_sqlite, missing_table_is_damage)
{
	OK(open_store(1, &st));
	lh_store_close(st);
	st = NULL;
	sqlite_exec("DROP TABLE events");
	cr_assert_eq(open_store(0, &st), LH_ECORRUPT);
	cr_assert_not_null(strstr(E.msg, "damaged"), "%s", E.msg);
}

/* Overwrites the file's pages after the first (the schema) with garbage. */
static void damage_pages(void)
{
	FILE *f = fopen(path, "r+b");
	char junk[4096];
	long size;

	cr_assert_not_null(f);
	fseek(f, 0, SEEK_END);
	size = ftell(f);
	cr_assert_gt(size, 3 * 4096L, "store is %ld bytes", size);
	memset(junk, 0x5a, sizeof junk);
	fseek(f, 4096, SEEK_SET);
	while (ftell(f) + (long)sizeof junk <= size)
		cr_assert_eq(fwrite(junk, 1, sizeof junk, f), sizeof junk);
	fclose(f);
}

static int count_item(const struct lh_item_view *v, void *arg)
{
	(*(int *)arg)++;
	return 0;
}

Test(store_sqlite, damaged_pages_give_corrupt)
{
	int seen = 0;
	int64_t id;
	int rc;

	OK(open_store(1, &st));
	id = make_job("j");
	add_items(id, 2000);
	lh_store_close(st);
	st = NULL;
	damage_pages();
	rc = open_store(0, &st);
	if (rc == 0)
		rc = lh_store_items_each(st, id, 0x1f, count_item, &seen, &E);
	cr_assert_eq(rc, LH_ECORRUPT, "rc %d: %s", rc, E.msg);
	cr_assert_not_null(strstr(E.msg, path), "%s", E.msg);
}

Test(store_sqlite, job_delete_leaves_no_rows)
{
	struct lh_step_rec s = step0("{}");
	int64_t a, b;
	struct claim c;

	OK(open_store(1, &st));
	a = make_job("a");
	b = make_job("b");
	add_items(a, 3);
	add_items(b, 2);
	c = claim(a, "w", 1, 60, 1);
	OK(lh_store_item_done(st, a, 0, c.c[0].fence, 1, &s, &E));
	claim_free(&c);
	OK(lh_store_event_add(st, a, 1, "x", NULL, NULL, NULL, &E));
	OK(lh_store_job_delete(st, a, &E));
	lh_store_close(st);
	st = NULL;
	cr_assert_eq(sqlite_int("SELECT count(*) FROM items"), 2);
	cr_assert_eq(sqlite_int("SELECT count(*) FROM item_inputs"), 2);
	cr_assert_eq(sqlite_int("SELECT count(*) FROM steps"), 0);
	cr_assert_eq(sqlite_int("SELECT count(*) FROM events"), 0);
	cr_assert_eq(sqlite_int("SELECT count(*) FROM jobs"), 1);
}

/* ---- SQLite only: schema v1 -> v2 ---- */

/* Fills a v1 store as the v1 build would have: two jobs (ids 1 and 3; 2
 * was deleted), three items, four events. Job 1's third event has an
 * earlier ts than its second (the clock was set back). */
static void fill_v1(void)
{
	sqlite_exec("INSERT INTO jobs (id, ref, name, kind, state, priority, created_at, run_secs, n_total,"
		    " n_done, n_dead, prompt_tokens, next_event_seq, source_sig, spec) VALUES"
		    " (1, 'run:/a', 'a', 'batch', 'completed', 2, 100, 7.5, 3, 1, 1, 40, 4, 'sig-a',"
		    "  '{\"model\":\"m\"}'),"
		    " (3, 'run:/b', 'b', 'spec', 'queued', 0, 200, 0, 0, 0, 0, 0, 2, NULL, '{}');"
		    "INSERT INTO items (id, job_id, seq, state, attempts, key, last_status, last_error) VALUES"
		    " (1, 1, 0, 2, 1, 'x', 0, NULL), (2, 1, 1, 4, 3, 'y', 422, '{\"e\":1}'),"
		    " (3, 1, 2, 0, 0, 'z', 0, NULL);"
		    "INSERT INTO item_inputs VALUES (1, 'in-x'), (2, 'in-y'), (3, 'in-z');"
		    "INSERT INTO events (job_id, seq, ts, type, item_key, data) VALUES"
		    " (1, 1, 10, 'job.queued', NULL, NULL), (1, 2, 30, 'job.running', NULL, '{\"n\":1}'),"
		    " (1, 3, 5, 'item.failed', 'y', NULL), (3, 1, 20, 'job.queued', NULL, NULL);");
}

Test(store_sqlite, create_at_writes_an_old_version)
{
	OK(store_sqlite_create_at(path, 1, &E));
	cr_assert_eq(sqlite_int("PRAGMA user_version"), 1);
	cr_assert_eq(sqlite_int("PRAGMA application_id"), 0x4c48756c);
	cr_assert_eq(sqlite_int("SELECT count(*) FROM pragma_table_info('events') WHERE name = 'gseq'"), 0);
	cr_assert_eq(sqlite_int("SELECT count(*) FROM pragma_table_info('jobs') WHERE name = 'time_limit'"), 0);
	cr_assert_eq(store_sqlite_create_at(path, 0, &E), LH_EUSAGE);
	cr_assert_eq(store_sqlite_create_at(path, 99, &E), LH_EUSAGE);
}

Test(store_sqlite, v1_store_is_migrated_to_the_newest)
{
	struct seen_events ev = { .n = 0 };
	struct seen_items items = { .n = 0 };
	struct lh_job_rec g;
	struct seen_jobs s;
	int64_t seq = 0, n = 0, id;
	struct claim c;

	OK(store_sqlite_create_at(path, 1, &E));
	fill_v1();
	OK(open_store(0, &st));
	cr_assert_eq(sqlite_int("PRAGMA user_version"), STORE_SQLITE_SCHEMA);
	cr_assert_eq(sqlite_int("SELECT count(*) FROM pragma_table_info('jobs') WHERE name IN ('pause_reason', "
				"'waiting', 'in_flight')"), 3);
	cr_assert_eq(sqlite_int("SELECT count(*) FROM sqlite_master WHERE name IN ('jobs_state', 'jobs_schedule')"),
		     2);
	cr_assert_eq(sqlite_int("SELECT count(*) FROM sqlite_master WHERE name LIKE '%\\_v2' ESCAPE '\\'"), 0);

	/* Jobs keep every field; the new ones start empty. */
	OK(lh_store_job_find(st, "run:/a", &g, &E));
	cr_assert_eq(g.id, 1);
	cr_assert_str_eq(g.name, "a");
	cr_assert_str_eq(g.kind, "batch");
	cr_assert_str_eq(g.state, "completed");
	cr_assert_str_eq(g.spec, "{\"model\":\"m\"}");
	cr_assert_str_eq(g.source_sig, "sig-a");
	cr_assert_eq(g.priority, 2);
	cr_assert_eq(g.created_at, 100);
	cr_assert_eq(g.run_secs, 7.5);
	cr_assert_eq(g.n_total, 3);
	cr_assert_eq(g.n_dead, 1);
	cr_assert_eq(g.prompt_tokens, 40);
	cr_assert_eq(g.time_limit, 0);
	cr_assert_eq(g.rate_items, 0);
	cr_assert_null(g.last_error);
	cr_assert_eq(g.last_event_seq, 3);
	lh_job_rec_release(&g);
	s = list_jobs(NULL, LH_JOBS_NEWEST, 0, 0, 0);
	want_refs(&s, "run:/b run:/a");
	cr_assert_eq(s.id[0], 3);

	/* Events are numbered in time order, each job's own order kept. */
	OK(lh_store_events_all_each(st, 0, 0, collect_event, &ev, &E));
	cr_assert_eq(ev.n, 4);
	cr_assert(ev.job[0] == 1 && ev.seq[0] == 1 && ev.gseq[0] == 1);
	cr_assert(ev.job[1] == 3 && ev.seq[1] == 1 && ev.gseq[1] == 2);
	cr_assert(ev.job[2] == 1 && ev.seq[2] == 2 && ev.gseq[2] == 3);
	cr_assert(ev.job[3] == 1 && ev.seq[3] == 3 && ev.gseq[3] == 4);
	cr_assert_str_eq(ev.data[2], "{\"n\":1}");
	cr_assert_str_eq(ev.key[3], "y");
	OK(lh_store_event_add(st, 3, 300, "job.running", NULL, NULL, &seq, &E));
	cr_assert_eq(seq, 2);
	ev.n = 0;
	OK(lh_store_events_all_each(st, 4, 0, collect_event, &ev, &E));
	cr_assert_eq(ev.n, 1);
	cr_assert_eq(ev.gseq[0], 5);

	/* Items work as before, and the new operations on them. */
	OK(lh_store_items_each(st, 1, 0x1f, collect_item, &items, &E));
	cr_assert_eq(items.n, 3);
	cr_assert_str_eq(items.v[1].last_error, "{\"e\":1}");
	OK(lh_store_items_retry_dead(st, 1, NULL, 0, &n, &E));
	cr_assert_eq(n, 1);
	c = claim(1, "w", 1, 60, 10);
	cr_assert_eq(c.n, 2);
	cr_assert_str_eq(c.c[0].input, "in-y");
	claim_free(&c);

	/* New jobs continue after the highest id, and ids are not reused. */
	id = make_job("new");
	cr_assert_eq(id, 4);
	OK(lh_store_job_delete(st, id, &E));
	cr_assert_eq(make_job("newer"), 5);

	/* A second open finds it current and leaves it alone. */
	lh_store_close(st);
	st = NULL;
	OK(open_store(0, &st));
	cr_assert_eq(sqlite_int("PRAGMA user_version"), STORE_SQLITE_SCHEMA);
	cr_assert_eq(count_jobs(NULL), 3);
}

Test(store_sqlite, failed_migration_leaves_v1_intact)
{
	OK(store_sqlite_create_at(path, 1, &E));
	fill_v1();
	/* A table in the way of the migration's: it fails halfway. */
	sqlite_exec("CREATE TABLE events_v2 (x); INSERT INTO events_v2 VALUES (42)");
	cr_assert_eq(open_store(0, &st), LH_ESTORE);
	cr_assert_null(st);
	cr_assert_not_null(strstr(E.msg, "migrating"), "%s", E.msg);
	cr_assert_not_null(strstr(E.msg, path), "%s", E.msg);
	cr_assert_eq(sqlite_int("PRAGMA user_version"), 1);
	cr_assert_eq(sqlite_int("SELECT count(*) FROM sqlite_master WHERE name = 'jobs_v2'"), 0);
	cr_assert_eq(sqlite_int("SELECT count(*) FROM pragma_table_info('jobs') WHERE name = 'time_limit'"), 0);
	cr_assert_eq(sqlite_int("SELECT count(*) FROM jobs"), 2);
	cr_assert_eq(sqlite_int("SELECT count(*) FROM events"), 4);
	cr_assert_eq(sqlite_int("SELECT x FROM events_v2"), 42);
	/* Once the obstacle is gone, the migration goes through. */
	sqlite_exec("DROP TABLE events_v2");
	OK(open_store(0, &st));
	cr_assert_eq(sqlite_int("PRAGMA user_version"), STORE_SQLITE_SCHEMA);
	cr_assert_eq(count_jobs(NULL), 2);
}

/* The plan SQLite chooses for sql, one line per step. */
static void sqlite_plan(const char *sql, char *out, size_t outsz)
{
	char eqp[512];
	sqlite3 *db;
	sqlite3_stmt *q;

	snprintf(eqp, sizeof eqp, "EXPLAIN QUERY PLAN %s", sql);
	out[0] = '\0';
	cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
	cr_assert_eq(sqlite3_prepare_v2(db, eqp, -1, &q, NULL), SQLITE_OK, "%s", sqlite3_errmsg(db));
	while (sqlite3_step(q) == SQLITE_ROW)
		snprintf(out + strlen(out), outsz - strlen(out), "%s\n", (const char *)sqlite3_column_text(q, 3));
	sqlite3_finalize(q);
	sqlite3_close(db);
}

Test(store_sqlite, job_listing_is_an_index_scan)
{
	static const char *const sql[] = {
		"SELECT id FROM jobs WHERE state = 'queued' ORDER BY priority DESC, id LIMIT 10 OFFSET 0",
		"SELECT id FROM jobs WHERE state = 'queued' AND id < 5000 ORDER BY id DESC LIMIT 10 OFFSET 0",
		"SELECT id FROM jobs WHERE state = 'queued' AND id > 5000 ORDER BY id LIMIT 10 OFFSET 0",
		"SELECT id FROM jobs WHERE id < 5000 ORDER BY id DESC LIMIT 10 OFFSET 0",
		"SELECT count(*) FROM jobs WHERE state = 'queued'",
		"SELECT gseq FROM events WHERE gseq > 5 ORDER BY gseq LIMIT 10",
		"UPDATE items SET state = 0 WHERE job_id = 1 AND state = 4",
	};
	struct seen_jobs s;
	char plan[1024];
	size_t i;
	int k;

	OK(open_store(1, &st));
	OK(lh_store_begin(st, &E));
	for (k = 0; k < 12000; k++) {
		char ref[16];
		snprintf(ref, sizeof ref, "r%d", k);
		make_job_with(ref, k % 3 ? "completed" : "queued", k % 7, 0);
	}
	OK(lh_store_commit(st, &E));
	for (i = 0; i < sizeof sql / sizeof sql[0]; i++) {
		sqlite_plan(sql[i], plan, sizeof plan);
		cr_assert_null(strstr(plan, "TEMP B-TREE"), "%s sorts:\n%s", sql[i], plan);
		cr_assert_null(strstr(plan, "SCAN"), "%s scans:\n%s", sql[i], plan);
	}
	/* Highest priority first, oldest first among equals. */
	s = list_jobs("queued", LH_JOBS_SCHEDULE, 0, 3, 0);
	want_refs(&s, "r6 r27 r48");
	cr_assert_eq(count_jobs("queued"), 4000);
}

#endif

#ifndef LH_TEST_PG
/* A handle opened with manual_checkpoint leaves the log to grow; an explicit
 * checkpoint from another handle copies all of it back. */
Test(SUITE, manual_checkpoint_and_explicit_checkpoint)
{
	struct lh_store_opts o;
	struct lh_store *writer, *ckpt;
	int log_pages = -1, copied = -1;
	int64_t job;
	backend_opts(&o, 0);
	o.manual_checkpoint = 1;
	OK(lh_store_open(&o, &writer, &E));
	backend_opts(&o, 0);
	OK(lh_store_open(&o, &ckpt, &E));
	lh_store_close(st);
	st = writer;
	job = make_job("ck");
	/* One commit per item: well past the 4000-page automatic threshold. */
	for (int i = 0; i < 1500; i++) {
		char key[32], body[300];
		snprintf(key, sizeof key, "k%d", i);
		memset(body, 'x', sizeof body - 1);
		body[sizeof body - 1] = '\0';
		OK(lh_store_item_add(st, job, i, key, strlen(key), body, strlen(body), NULL, &E));
	}
	OK(lh_store_checkpoint(ckpt, &log_pages, &copied, &E));
	cr_assert_gt(log_pages, 4000, "the log kept every write (no automatic checkpoint): %d pages", log_pages);
	cr_assert_eq(copied, log_pages, "a passive checkpoint with no reader copies everything");
	OK(lh_store_checkpoint(ckpt, NULL, NULL, &E));
	lh_store_close(ckpt);
}
#else
/* PostgreSQL has no log to copy back: a checkpoint is a no-op. */
Test(SUITE, checkpoint_is_a_no_op)
{
	int log_pages = -1, copied = -1;

	OK(lh_store_checkpoint(st, &log_pages, &copied, &E));
	cr_assert_eq(log_pages, 0);
	cr_assert_eq(copied, 0);
}
#endif
