/*
 * The store conformance suite, part two: the journal of schema v4 and what
 * pipelines do with it (turns, the step pointer, approvals, re-runs, reduce
 * rows, per-step progress, checksums, verify). Suite "store_journal" is
 * written against store.h alone, like suite "store" in test_store.c; suite
 * "store_journal_sqlite" checks what only the SQLite backend can: damage
 * made by hand in the file, and the migration from schema v3.
 *
 * Each test gets its own temporary directory and store. Built with
 * LH_TEST_PG (test_journal_pg.c), suite "store_journal" becomes
 * "store_journal_pg", each test gets its own PostgreSQL database (pg_db.h),
 * and the damage tests corrupt rows through libpq.
 */
#include <criterion/criterion.h>

#include <dirent.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/store.h"
#include "store/sqlite/sqlite.h" /* suite store_journal_sqlite only */
#include "util/mem.h"

/* ---- fixture ---- */

static char dir[64];
static char path[128];

#include "sqlite_file.h"
static struct lh_store *st;
static struct lh_err E;

#ifdef LH_TEST_PG
#include "pg_db.h"
#define SUITE store_journal_pg
#else
#define SUITE store_journal
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

#define HAS(s, sub) cr_assert_not_null(strstr((s), (sub)), "\"%s\" lacks \"%s\"", (s), (sub))

static void setup(void)
{
	snprintf(dir, sizeof dir, "/tmp/lh-journal-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	snprintf(path, sizeof path, "%s/store.db", dir);
#ifdef LH_TEST_PG
	pg_db_create();
#endif
	lh_err_clear(&E);
	OK(open_store(1, &st));
}

static void teardown(void)
{
	DIR *d;
	struct dirent *ent;
	char p[512];

	lh_store_close(st);
	st = NULL;
#ifdef LH_TEST_PG
	pg_db_drop_all();
#endif
	d = opendir(dir);
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

TestSuite(SUITE, .init = setup, .fini = teardown);

/* ---- helpers ---- */

static int64_t make_job(const char *ref)
{
	struct lh_job_rec j;

	memset(&j, 0, sizeof j);
	j.ref = (char *)ref;
	j.kind = (char *)"spec";
	snprintf(j.state, sizeof j.state, "queued");
	OK(lh_store_job_create(st, &j, &E));
	return j.id;
}

/* Items 0..n-1 with keys "doc-<seq>". */
static void add_items(int64_t job, int n)
{
	char key[32];
	int i;

	OK(lh_store_begin(st, &E));
	for (i = 0; i < n; i++) {
		int kl = snprintf(key, sizeof key, "doc-%d", i);
		OK(lh_store_item_add(st, job, i, key, (size_t)kl, "in", 2, NULL, &E));
	}
	OK(lh_store_commit(st, &E));
}

/* Claims up to n items; returns their fences by seq (fence[seq]). */
static void claim(int64_t job, size_t n, int64_t *fence)
{
	struct lh_claimed *c;
	size_t got, i;

	OK(lh_store_claim(st, job, "w", 100, 60, n, &c, &got, &E));
	for (i = 0; i < got; i++) {
		fence[c[i].seq] = c[i].fence;
		lh_claimed_release(&c[i]);
	}
	lh_free(c);
}

static struct lh_step_rec row(int step, int turn, const char *kind, const char *response)
{
	struct lh_step_rec r;

	memset(&r, 0, sizeof r);
	r.step = step;
	r.turn = turn;
	r.kind = kind;
	r.attempt = 1;
	r.request_hash = "hash";
	r.status = 200;
	r.response = response;
	r.response_len = strlen(response);
	r.model = "m1";
	return r;
}

struct rows {
	int step[32], turn[32];
	char kind[32][16], model[32][16], response[32][64], delta[32][64];
	char checksum[32][LH_SHA256_HEX];
	int n;
};

static int collect(const struct lh_step_rec *r, void *arg)
{
	struct rows *s = arg;

	cr_assert_lt(s->n, 32);
	s->step[s->n] = r->step;
	s->turn[s->n] = r->turn;
	snprintf(s->kind[s->n], sizeof s->kind[0], "%s", r->kind ? r->kind : "(null)");
	snprintf(s->model[s->n], sizeof s->model[0], "%s", r->model ? r->model : "");
	snprintf(s->response[s->n], sizeof s->response[0], "%.*s", (int)r->response_len, r->response);
	snprintf(s->delta[s->n], sizeof s->delta[0], "%.*s", (int)r->delta_len, r->delta ? r->delta : "");
	snprintf(s->checksum[s->n], sizeof s->checksum[0], "%s", r->checksum);
	cr_assert_gt(r->seq, 0);
	s->n++;
	return 0;
}

static struct rows rows_of(int64_t job, int64_t seq)
{
	struct rows r;

	memset(&r, 0, sizeof r);
	OK(lh_store_steps_each(st, job, seq, collect, &r, &E));
	return r;
}

static void counts(int64_t job, int64_t *c)
{
	OK(lh_store_item_counts(st, job, c, &E));
}

static struct lh_item_info find(int64_t job, const char *key)
{
	struct lh_item_info i;

	OK(lh_store_item_find(st, job, key, &i, &E));
	return i;
}

/* ---- checksums ---- */

Test(SUITE, checksum_definition)
{
	struct lh_step_rec r = row(0, 0, NULL, "resp");
	char got[LH_SHA256_HEX], want[LH_SHA256_HEX];
	static const char bytes[] = "hash\0resp\0{\"d\":1}";

	r.delta = "{\"d\":1}";
	r.delta_len = 7;
	lh_step_checksum(&r, got);
	lh_sha256_hex(bytes, sizeof bytes - 1, want);
	cr_assert_str_eq(got, want);
	/* NULL fields count as empty. */
	memset(&r, 0, sizeof r);
	lh_step_checksum(&r, got);
	lh_sha256_hex("\0\0", 2, want);
	cr_assert_str_eq(got, want);
}

/* ---- journal rows: turns, order, replacement ---- */

Test(SUITE, steps_each_in_step_turn_order_and_turns_replaced)
{
	int64_t id = make_job("j"), fence[4];
	struct lh_step_rec r;
	struct rows s;
	char want[LH_SHA256_HEX];

	add_items(id, 1);
	claim(id, 1, fence);
	/* Written out of order: step 2 turns 1 and 0, then step 1. */
	r = row(2, 1, "loop", "t1");
	r.delta = "[{\"role\":\"tool\"}]";
	OK(lh_store_step_put(st, id, 0, fence[0], &r, &E));
	r = row(2, 0, "loop", "t0");
	OK(lh_store_step_put(st, id, 0, fence[0], &r, &E));
	r = row(1, 0, NULL, "s1");
	OK(lh_store_step_put(st, id, 0, fence[0], &r, &E));
	/* The same (step, turn) again replaces the row. */
	r = row(2, 1, "loop", "t1 again");
	r.delta = "[]";
	r.delta_len = 2;
	OK(lh_store_step_put(st, id, 0, fence[0], &r, &E));

	s = rows_of(id, 0);
	cr_assert_eq(s.n, 3);
	cr_assert(s.step[0] == 1 && s.turn[0] == 0);
	cr_assert(s.step[1] == 2 && s.turn[1] == 0);
	cr_assert(s.step[2] == 2 && s.turn[2] == 1);
	cr_assert_str_eq(s.kind[0], "llm");
	cr_assert_str_eq(s.kind[1], "loop");
	cr_assert_str_eq(s.model[1], "m1");
	cr_assert_str_eq(s.response[2], "t1 again");
	cr_assert_str_eq(s.delta[2], "[]");
	cr_assert_str_eq(s.delta[1], "");
	/* The stored checksum comes back with the row. */
	lh_step_checksum(&r, want);
	cr_assert_str_eq(s.checksum[2], want);
}

Test(SUITE, item_done_writes_a_checked_result_row)
{
	int64_t id = make_job("j"), fence[2];
	struct lh_step_rec r = row(0, 0, "result", "{\"answer\":42}");
	struct rows s;

	add_items(id, 1);
	claim(id, 1, fence);
	OK(lh_store_item_done(st, id, 0, fence[0], 1, &r, &E));
	s = rows_of(id, 0);
	cr_assert_eq(s.n, 1);
	cr_assert_str_eq(s.kind[0], "result");
	cr_assert_str_eq(s.response[0], "{\"answer\":42}");
	cr_assert_eq(strlen(s.checksum[0]), 64);
}

/* ---- step pointer and fencing ---- */

Test(SUITE, set_step_and_wait_are_fenced)
{
	int64_t id = make_job("j"), fence[2], c[LH_ITEM_NSTATES];
	struct lh_step_rec r = row(3, 0, "approve", "{\"question\":\"ok?\"}");
	struct lh_item_info i;

	add_items(id, 1);
	claim(id, 1, fence);
	OK(lh_store_item_set_step(st, id, 0, fence[0], 1, &E));
	cr_assert_eq(lh_store_item_set_step(st, id, 0, fence[0] + 1, 2, &E), LH_EFENCED);
	cr_assert_eq(lh_store_item_wait(st, id, 0, fence[0] - 1, 2, &r, &E), LH_EFENCED);
	HAS(E.msg, "no longer held");
	/* Nothing written by the stale fences. */
	i = find(id, "doc-0");
	cr_assert_eq(i.step, 1);
	cr_assert_eq(i.state, LH_ITEM_LEASED);
	lh_item_info_release(&i);
	cr_assert_eq(rows_of(id, 0).n, 0);

	OK(lh_store_item_wait(st, id, 0, fence[0], 2, &r, &E));
	i = find(id, "doc-0");
	cr_assert_eq(i.state, LH_ITEM_WAITING);
	cr_assert_eq(i.step, 2);
	cr_assert_str_eq(i.key, "doc-0");
	lh_item_info_release(&i);
	cr_assert_eq(rows_of(id, 0).n, 1);
	counts(id, c);
	cr_assert_eq(c[LH_ITEM_WAITING], 1);
	cr_assert_eq(c[LH_ITEM_LEASED], 0);
	/* A waiting item holds no lease: its old fence is dead, and a claim
	 * passes it by. */
	cr_assert_eq(lh_store_item_set_step(st, id, 0, fence[0], 3, &E), LH_EFENCED);
	fence[0] = -1;
	claim(id, 1, fence);
	cr_assert_eq(fence[0], -1);
}

/* ---- approvals ---- */

/* Brings item 0 (and 1) of a new job to waiting at spec step 1, with
 * its pending approval journaled at step 2. */
static int64_t waiting_job(int n)
{
	int64_t id = make_job("j"), fence[4];
	struct lh_step_rec r = row(2, 0, "approve", "{\"question\":\"publish?\"}");
	int i;

	add_items(id, n);
	claim(id, (size_t)n, fence);
	for (i = 0; i < n; i++)
		OK(lh_store_item_wait(st, id, i, fence[i], 1, &r, &E));
	return id;
}

Test(SUITE, approve_sends_the_item_back_to_pending)
{
	int64_t id = waiting_job(1), c[LH_ITEM_NSTATES], fence[2];
	struct lh_step_rec r = row(2, 0, "approve", "{\"approved\":true,\"by\":\"ann\"}");
	struct lh_item_info i = find(id, "doc-0");
	struct rows s;

	OK(lh_store_item_decide(st, id, i.seq, 1, &r, NULL, &E));
	lh_item_info_release(&i);
	i = find(id, "doc-0");
	cr_assert_eq(i.state, LH_ITEM_PENDING);
	cr_assert_eq(i.attempts, 0);
	cr_assert_eq(i.step, 1);
	lh_item_info_release(&i);
	/* The decided row replaced the pending one. */
	s = rows_of(id, 0);
	cr_assert_eq(s.n, 1);
	cr_assert_str_eq(s.response[0], "{\"approved\":true,\"by\":\"ann\"}");
	counts(id, c);
	cr_assert_eq(c[LH_ITEM_PENDING], 1);
	cr_assert_eq(c[LH_ITEM_WAITING], 0);
	claim(id, 1, fence);
	/* Deciding again: the item is no longer waiting. */
	cr_assert_eq(lh_store_item_decide(st, id, 0, 1, &r, NULL, &E), LH_ESTATE);
	HAS(E.msg, "it is leased, not waiting");
}

Test(SUITE, reject_kills_the_item_and_counts_it)
{
	int64_t id = waiting_job(2), c[LH_ITEM_NSTATES];
	struct lh_step_rec r = row(2, 0, "approve", "{\"approved\":false}");
	struct lh_job_rec j;
	struct lh_item_info i;

	OK(lh_store_item_decide(st, id, 1, 0, &r, "{\"code\":\"rejected\",\"message\":\"no\"}", &E));
	i = find(id, "doc-1");
	cr_assert_eq(i.state, LH_ITEM_DEAD);
	lh_item_info_release(&i);
	OK(lh_store_job_get(st, id, &j, &E));
	cr_assert_eq(j.n_dead, 1);
	lh_job_rec_release(&j);
	counts(id, c);
	cr_assert_eq(c[LH_ITEM_DEAD], 1);
	cr_assert_eq(c[LH_ITEM_WAITING], 1);
	cr_assert_eq(lh_store_item_decide(st, id, 1, 0, &r, NULL, &E), LH_ESTATE);
	HAS(E.msg, "it is dead, not waiting");
	cr_assert_eq(lh_store_item_decide(st, id, 7, 1, &r, NULL, &E), LH_ENOTFOUND);
}

static int keep_error(const struct lh_item_view *v, void *arg)
{
	char *out = arg;

	snprintf(out, 128, "%s", v->last_error ? v->last_error : "(none)");
	cr_assert_eq(v->last_status, 0);
	return 0;
}

Test(SUITE, rejected_item_keeps_its_error)
{
	int64_t id = waiting_job(1);
	struct lh_step_rec r = row(2, 0, "approve", "{\"approved\":false}");
	char last_error[128] = "";

	OK(lh_store_item_decide(st, id, 0, 0, &r, "{\"code\":\"rejected\"}", &E));
	OK(lh_store_items_each(st, id, 1u << LH_ITEM_DEAD, keep_error, last_error, &E));
	cr_assert_str_eq(last_error, "{\"code\":\"rejected\"}");
}

Test(SUITE, find_unknown_key)
{
	int64_t id = make_job("j");
	struct lh_item_info i;

	add_items(id, 1);
	cr_assert_eq(lh_store_item_find(st, id, "nope", &i, &E), LH_ENOTFOUND);
	HAS(E.msg, "\"nope\"");
	cr_assert_null(i.key);
}

/* ---- re-runs ---- */

Test(SUITE, reopen_sends_done_items_back_and_keeps_the_journal)
{
	int64_t id = make_job("j"), fence[4], n = -1, c[LH_ITEM_NSTATES];
	struct lh_step_rec r = row(0, 0, "result", "done");
	struct lh_job_rec j;
	struct lh_item_info i;

	add_items(id, 3);
	claim(id, 3, fence);
	OK(lh_store_item_set_step(st, id, 0, fence[0], 2, &E));
	OK(lh_store_item_done(st, id, 0, fence[0], 2, &r, &E));
	OK(lh_store_item_done(st, id, 1, fence[1], 1, &r, &E));
	OK(lh_store_item_dead(st, id, 2, fence[2], 1, 500, "{}", &E));
	OK(lh_store_job_add(st, id, 2, 1, 0, 0, 0, 0, &E));

	OK(lh_store_items_reopen(st, id, &n, &E));
	cr_assert_eq(n, 2);
	counts(id, c);
	cr_assert_eq(c[LH_ITEM_PENDING], 2);
	cr_assert_eq(c[LH_ITEM_DEAD], 1);
	cr_assert_eq(c[LH_ITEM_DONE], 0);
	OK(lh_store_job_get(st, id, &j, &E));
	cr_assert_eq(j.n_done, 0);
	cr_assert_eq(j.n_dead, 1);
	lh_job_rec_release(&j);
	i = find(id, "doc-0");
	cr_assert_eq(i.step, 0);
	cr_assert_eq(i.attempts, 0);
	lh_item_info_release(&i);
	cr_assert_eq(rows_of(id, 0).n, 1);
	OK(lh_store_items_reopen(st, id, &n, &E));
	cr_assert_eq(n, 0);
	cr_assert_eq(lh_store_items_reopen(st, id + 100, &n, &E), LH_ENOTFOUND);
}

/* ---- reduce ---- */

Test(SUITE, reduce_rows_live_on_pseudo_items)
{
	int64_t id = make_job("j"), other = make_job("k");
	struct lh_step_rec r = row(99, 7, "reduce", "chunk");
	struct rows s;

	OK(lh_store_reduce_put(st, id, 0, 1, &r, &E));
	r.response = "chunk0";
	r.response_len = 6;
	OK(lh_store_reduce_put(st, id, 0, 0, &r, &E));
	r.response = "top";
	r.response_len = 3;
	OK(lh_store_reduce_put(st, id, 1, 0, &r, &E));
	/* Put again: replaced. */
	r.response = "top2";
	r.response_len = 4;
	OK(lh_store_reduce_put(st, id, 1, 0, &r, &E));
	s = rows_of(id, -1);
	cr_assert_eq(s.n, 2);
	cr_assert(s.step[0] == 0 && s.turn[0] == 0);
	cr_assert_str_eq(s.response[0], "chunk0");
	cr_assert(s.step[1] == 1 && s.turn[1] == 0);
	cr_assert_str_eq(s.kind[1], "reduce");
	s = rows_of(id, -2);
	cr_assert_eq(s.n, 1);
	cr_assert_str_eq(s.response[0], "top2");
	cr_assert_eq(rows_of(other, -1).n, 0);
	cr_assert_eq(lh_store_reduce_put(st, id + 100, 0, 0, &r, &E), LH_ENOTFOUND);

	/* Deleting the job takes its pseudo items' rows too. */
	OK(lh_store_job_delete(st, id, &E));
	cr_assert_eq(rows_of(id, -1).n, 0);
	cr_assert_eq(rows_of(id, -2).n, 0);
}

/* ---- progress ---- */

Test(SUITE, steps_done_counts)
{
	int64_t id = make_job("j"), fence[8], per[3], waiting = -1;
	struct lh_step_rec r = row(0, 0, "result", "x");
	struct lh_step_rec a = row(3, 0, "approve", "{}");

	add_items(id, 6);
	claim(id, 6, fence);
	/* 0: done; 1: at step 1; 2: at step 2; 3: waiting at step 2; 4: at
	 * step 0; 5: pending again after a release, at step 1. */
	OK(lh_store_item_done(st, id, 0, fence[0], 1, &r, &E));
	OK(lh_store_item_set_step(st, id, 1, fence[1], 1, &E));
	OK(lh_store_item_set_step(st, id, 2, fence[2], 2, &E));
	OK(lh_store_item_wait(st, id, 3, fence[3], 2, &a, &E));
	OK(lh_store_item_set_step(st, id, 5, fence[5], 1, &E));
	OK(lh_store_item_release(st, id, 5, fence[5], &E));
	OK(lh_store_item_steps_done(st, id, per, 3, &waiting, &E));
	cr_assert_eq(per[0], 5, "%lld", (long long)per[0]); /* 0, 1, 2, 3, 5 */
	cr_assert_eq(per[1], 3, "%lld", (long long)per[1]); /* 0, 2, 3 */
	cr_assert_eq(per[2], 1, "%lld", (long long)per[2]); /* 0 */
	cr_assert_eq(waiting, 1);
	OK(lh_store_item_steps_done(st, id, NULL, 0, NULL, &E));
}

/* ---- checksums on read: damage made behind the store's back (in the
 * SQLite file, or through libpq in the PostgreSQL database) ---- */

#ifdef LH_TEST_PG
#define DAMAGE_SUITE store_journal_pg_damage
#define damage_exec(sql) pg_exec(sql)
#else
#define DAMAGE_SUITE store_journal_sqlite
#define damage_exec(sql) sqlite_exec(sql)
#endif

static void sqlite_setup(void)
{
	snprintf(dir, sizeof dir, "/tmp/lh-journal-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	snprintf(path, sizeof path, "%s/store.db", dir);
#ifdef LH_TEST_PG
	pg_db_create();
#endif
	lh_err_clear(&E);
	st = NULL;
}

TestSuite(DAMAGE_SUITE, .init = sqlite_setup, .fini = teardown);

static int never(const struct lh_item_view *v, void *arg)
{
	(void)v;
	(*(int *)arg)++;
	return 0;
}

static int never_step(const struct lh_step_rec *r, void *arg)
{
	(*(int *)arg)++;
	return 0;
}

struct bad_lines {
	char line[8][256];
	int n;
};

static void on_bad(void *arg, const char *what)
{
	struct bad_lines *b = arg;

	if (b->n < 8)
		snprintf(b->line[b->n], sizeof b->line[0], "%s", what);
	b->n++;
}

Test(DAMAGE_SUITE, flipped_byte_is_caught_on_every_read)
{
	int64_t id, fence[20];
	struct lh_step_rec r = row(0, 0, NULL, "{\"answer\":\"yes\"}");
	struct lh_verify_report rep;
	struct bad_lines bad = { .n = 0 };
	int seen = 0;
	int i;

	OK(open_store(1, &st));
	id = make_job("j");
	add_items(id, 20);
	claim(id, 20, fence);
	for (i = 0; i < 20; i++)
		OK(lh_store_item_done(st, id, i, fence[i], 1, &r, &E));
	OK(lh_store_verify(st, on_bad, &bad, &rep, &E));
	cr_assert_eq(rep.bad_rows, 0);
	cr_assert_eq(rep.rows, 20);
	cr_assert_eq(rep.items, 20);
	cr_assert_eq(rep.jobs, 1);
	cr_assert_eq(rep.integrity_ok, 1);
	cr_assert_eq(bad.n, 0);
	lh_store_close(st);
	st = NULL;

	/* One byte of item 17's stored response changes: "yes" -> "yet". */
	damage_exec("UPDATE steps SET response = replace(response, 'yes', 'yet') WHERE item_seq = 17");
	OK(open_store(0, &st));
	cr_assert_eq(lh_store_steps_each(st, id, 17, never_step, &seen, &E), LH_ECORRUPT);
	cr_assert_eq(seen, 0);
	HAS(E.msg, "journal row damaged: job 1, item 17 (doc-17), step 0, turn 0: checksum mismatch");
	OK(lh_store_steps_each(st, id, 16, never_step, &seen, &E));
	cr_assert_eq(seen, 1);
	seen = 0;
	cr_assert_eq(lh_store_items_each(st, id, 1u << LH_ITEM_DONE, never, &seen, &E), LH_ECORRUPT);
	/* Items before the damaged one went out; the damaged one did not. */
	cr_assert_eq(seen, 17);
	HAS(E.msg, "item 17 (doc-17), step 0, turn 0");
	seen = 0;
	cr_assert_eq(lh_store_items_page(st, id, 0x3f, 10, 100, never, &seen, &E), LH_ECORRUPT);
	cr_assert_eq(seen, 6);

	OK(lh_store_verify(st, on_bad, &bad, &rep, &E));
	cr_assert_eq(rep.bad_rows, 1);
	cr_assert_eq(rep.rows, 20);
	cr_assert_eq(rep.integrity_ok, 1);
	cr_assert_eq(bad.n, 1);
	HAS(bad.line[0], "job 1, item 17 (doc-17), step 0, turn 0");
	HAS(rep.first_problem, "item 17");
}

Test(DAMAGE_SUITE, damaged_delta_and_reduce_rows_are_named)
{
	int64_t id, fence[2];
	struct lh_step_rec r = row(1, 2, "loop", "answer");
	struct lh_verify_report rep;
	struct bad_lines bad = { .n = 0 };
	int seen = 0;

	OK(open_store(1, &st));
	id = make_job("j");
	add_items(id, 1);
	claim(id, 1, fence);
	r.delta = "[{\"role\":\"tool\",\"content\":\"x\"}]";
	OK(lh_store_step_put(st, id, 0, fence[0], &r, &E));
	r = row(0, 0, "reduce", "sum");
	OK(lh_store_reduce_put(st, id, 0, 3, &r, &E));
	lh_store_close(st);
	st = NULL;
	damage_exec("UPDATE steps SET delta = '[]' WHERE item_seq = 0;"
		    "UPDATE steps SET request_hash = 'other' WHERE item_seq = -1");
	OK(open_store(0, &st));
	cr_assert_eq(lh_store_steps_each(st, id, 0, never_step, &seen, &E), LH_ECORRUPT);
	HAS(E.msg, "item 0 (doc-0), step 1, turn 2");
	cr_assert_eq(lh_store_steps_each(st, id, -1, never_step, &seen, &E), LH_ECORRUPT);
	HAS(E.msg, "reduce level 0 (item -1), step 3, turn 0");
	cr_assert_eq(seen, 0);
	OK(lh_store_verify(st, on_bad, &bad, &rep, &E));
	cr_assert_eq(rep.bad_rows, 2);
	cr_assert_eq(bad.n, 2);
}

/* ---- migration from schema v3 ---- */

#ifndef LH_TEST_PG

Test(store_journal_sqlite, v3_store_is_migrated_with_its_journal)
{
	struct lh_step_rec want = row(0, 0, NULL, "{\"old\":true}");
	struct lh_verify_report rep;
	struct lh_item_info i;
	struct rows s;
	int64_t per[1], waiting, fence[4];
	char sum[LH_SHA256_HEX];

	OK(store_sqlite_create_at(path, 3, &E));
	cr_assert_eq(sqlite_int("PRAGMA user_version"), 3);
	cr_assert_eq(sqlite_int("SELECT count(*) FROM pragma_table_info('steps') WHERE name = 'turn'"), 0);
	/* As the v3 build wrote them: a job, two done items with step 0 rows,
	 * one with a second step, and a pending item. */
	sqlite_exec("INSERT INTO jobs (id, ref, name, kind, state, n_total, n_done) VALUES"
		    " (1, 'run:/a', 'a', 'batch', 'completed', 3, 2);"
		    "INSERT INTO items (id, job_id, seq, state, attempts, key) VALUES"
		    " (1, 1, 0, 2, 1, 'x'), (2, 1, 1, 2, 2, 'y'), (3, 1, 2, 0, 0, 'z');"
		    "INSERT INTO item_inputs VALUES (1, 'in-x'), (2, 'in-y'), (3, 'in-z');"
		    "INSERT INTO steps (job_id, item_seq, step, attempt, status, prompt_tokens, completion_tokens,"
		    " started_at, first_byte_at, ended_at, request_hash, request_id, response) VALUES"
		    " (1, 0, 0, 1, 200, 5, 6, 1, 2, 3, 'hash', 'r-0', '{\"old\":true}'),"
		    " (1, 1, 0, 2, 200, 7, 8, 4, 5, 6, NULL, NULL, NULL),"
		    " (1, 1, 1, 2, 200, 0, 0, 0, 0, 0, 'h1', NULL, 'second');");

	OK(open_store(0, &st));
	cr_assert_eq(sqlite_int("PRAGMA user_version"), STORE_SQLITE_SCHEMA);
	cr_assert_eq(sqlite_int("SELECT count(*) FROM pragma_table_info('steps') WHERE name IN"
				" ('turn', 'kind', 'model', 'delta', 'checksum')"), 5);
	cr_assert_eq(sqlite_int("SELECT count(*) FROM pragma_table_info('items') WHERE name = 'step'"), 1);
	cr_assert_eq(sqlite_int("SELECT count(*) FROM sqlite_master WHERE name = 'steps_v4'"), 0);
	cr_assert_eq(sqlite_int("SELECT count(*) FROM steps WHERE checksum IS NULL OR length(checksum) != 64"), 0);

	/* Rows intact, their checksums computed as this build computes them. */
	s = rows_of(1, 0);
	cr_assert_eq(s.n, 1);
	cr_assert_str_eq(s.response[0], "{\"old\":true}");
	cr_assert_str_eq(s.kind[0], "llm");
	want.model = NULL;
	lh_step_checksum(&want, sum);
	cr_assert_str_eq(s.checksum[0], sum);
	s = rows_of(1, 1);
	cr_assert_eq(s.n, 2);
	cr_assert_str_eq(s.response[1], "second");
	OK(lh_store_verify(st, NULL, NULL, &rep, &E));
	cr_assert_eq(rep.rows, 3);
	cr_assert_eq(rep.bad_rows, 0);
	cr_assert_eq(rep.integrity_ok, 1);

	/* Items start at step 0; the new operations work on them. */
	i = find(1, "y");
	cr_assert_eq(i.state, LH_ITEM_DONE);
	cr_assert_eq(i.step, 0);
	cr_assert_eq(i.attempts, 2);
	lh_item_info_release(&i);
	OK(lh_store_item_steps_done(st, 1, per, 1, &waiting, &E));
	cr_assert_eq(per[0], 2);
	claim(1, 1, fence);
	OK(lh_store_item_set_step(st, 1, 2, fence[2], 1, &E));

	/* A second open finds it current. */
	lh_store_close(st);
	st = NULL;
	OK(open_store(0, &st));
	cr_assert_eq(rows_of(1, 1).n, 2);
}
#endif
