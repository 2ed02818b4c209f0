/* Unit tests: the group-commit thread against a real SQLite store. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/committer.h"
#include "loop/loop.h"
#include "store/store.h"
#include "util/mem.h"
#include "util/time.h"

struct fix {
	char dir[64];
	char path[128];
	struct lh_store *st;
	struct lh_loop *loop;
	struct lh_committer *com;
	struct lh_commit_result last;
	int got;
	int64_t job;
};

static void on_ready(struct lh_loop *loop, void *arg)
{
	struct fix *f = arg;
	if (lh_committer_take(f->com, &f->last)) {
		f->got = 1;
		lh_loop_stop(loop);
	}
}

static void flush_hook(struct lh_loop *loop, void *arg)
{
	struct fix *f = arg;
	(void)loop;
	lh_committer_flush(f->com);
}

static void setup_fix(struct fix *f, int nitems)
{
	struct lh_store_opts o = { 0 };
	struct lh_job_rec j;
	struct lh_err e;
	memset(f, 0, sizeof *f);
	strcpy(f->dir, "/tmp/lh-com-XXXXXX");
	cr_assert_not_null(mkdtemp(f->dir));
	snprintf(f->path, sizeof f->path, "%s/s.db", f->dir);
	o.path = f->path;
	o.create = 1;
	cr_assert_eq(lh_store_open(&o, &f->st, &e), 0, "%s", e.msg);
	memset(&j, 0, sizeof j);
	j.ref = "t";
	j.name = "t";
	j.kind = "batch";
	j.spec = "{}";
	j.source_sig = "";
	strcpy(j.state, "running");
	cr_assert_eq(lh_store_job_create(f->st, &j, &e), 0, "%s", e.msg);
	f->job = j.id;
	cr_assert_eq(lh_store_begin(f->st, &e), 0);
	for (int i = 0; i < nitems; i++) {
		char key[32], body[64];
		snprintf(key, sizeof key, "k%d", i);
		snprintf(body, sizeof body, "{\"i\":%d}", i);
		cr_assert_eq(lh_store_item_add(f->st, f->job, i, key, strlen(key), body, strlen(body), NULL, &e), 0);
	}
	cr_assert_eq(lh_store_job_set_ingested(f->st, f->job, nitems, &e), 0);
	cr_assert_eq(lh_store_commit(f->st, &e), 0);
	f->loop = lh_loop_new(&e);
	f->com = lh_committer_new(f->st, "me", 60, f->loop, on_ready, f, &e);
	cr_assert_not_null(f->com);
	cr_assert_eq(lh_loop_add_hook(f->loop, flush_hook, f), 0);
}

static void run_once(struct fix *f)
{
	f->got = 0;
	cr_assert_eq(lh_loop_run(f->loop), 0);
	cr_assert(f->got);
	cr_assert_eq(f->last.rc, 0, "%s", f->last.err.msg);
}

static void teardown_fix(struct fix *f)
{
	char cmd[160];
	lh_committer_free(f->com);
	lh_loop_free(f->loop);
	lh_store_close(f->st);
	snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
	cr_assert_eq(system(cmd), 0);
}

Test(committer, claim_then_commit_results_in_one_transaction)
{
	struct fix f;
	struct lh_err e;
	struct lh_claimed c[3];
	struct lh_job_rec j;
	int64_t counts[LH_ITEM_NSTATES];
	setup_fix(&f, 5);

	lh_committer_want_claim(f.com, f.job, 3);
	run_once(&f);
	cr_assert_eq(f.last.nclaims, 1);
	cr_assert_eq(f.last.claims[0].job, f.job);
	cr_assert_eq(f.last.claims[0].n, 3);
	cr_assert_eq(f.last.claims[0].items[0].seq, 0);
	memcpy(c, f.last.claims[0].items, sizeof c);
	f.last.claims[0].n = 0;
	lh_commit_result_release(&f.last);

	struct lh_commit_op *op = lh_committer_op(f.com);
	op->kind = LH_OP_DONE;
	op->job = f.job;
	op->seq = c[0].seq;
	op->fence = c[0].fence;
	op->attempts = 1;
	op->status = 200;
	op->response = lh_xstrdup("{\"ok\":true}");
	op->response_len = 11;
	op->prompt_tokens = 3;
	op->completion_tokens = 4;
	op = lh_committer_op(f.com);
	op->kind = LH_OP_DEAD;
	op->job = f.job;
	op->seq = c[1].seq;
	op->fence = c[1].fence;
	op->attempts = 1;
	op->status = 400;
	op->error = lh_xstrdup("{\"code\":\"bad\",\"message\":\"m\"}");
	op->key = lh_xstrdup(c[1].key);
	op->event_type = lh_xstrdup("item.failed");
	/* A stale fence: the commit must drop this op, not fail the transaction. */
	op = lh_committer_op(f.com);
	op->kind = LH_OP_DONE;
	op->job = f.job;
	op->seq = c[2].seq;
	op->fence = c[2].fence + 7;
	op->attempts = 1;
	op->response = lh_xstrdup("{}");
	op->response_len = 2;
	run_once(&f);
	cr_assert_eq(f.last.ops.n, 3);
	cr_assert_eq(f.last.ops.v[0].result, 0);
	cr_assert_eq(f.last.ops.v[1].result, 0);
	cr_assert_eq(f.last.ops.v[2].result, LH_EFENCED);
	lh_commit_result_release(&f.last);
	for (int i = 0; i < 3; i++)
		lh_claimed_release(&c[i]);

	/* The committed counters and states are in the store. */
	lh_committer_free(f.com);
	f.com = NULL;
	cr_assert_eq(lh_store_job_get(f.st, f.job, &j, &e), 0);
	cr_assert_eq(j.n_done, 1);
	cr_assert_eq(j.n_dead, 1);
	cr_assert_eq(j.prompt_tokens, 3);
	cr_assert_eq(j.completion_tokens, 4);
	lh_job_rec_release(&j);
	cr_assert_eq(lh_store_item_counts(f.st, f.job, counts, &e), 0);
	cr_assert_eq(counts[LH_ITEM_DONE], 1);
	cr_assert_eq(counts[LH_ITEM_DEAD], 1);
	cr_assert_eq(counts[LH_ITEM_LEASED], 1);
	cr_assert_eq(counts[LH_ITEM_PENDING], 2);
	f.com = lh_committer_new(f.st, "me", 60, f.loop, on_ready, &f, &e);
	teardown_fix(&f);
}

Test(committer, short_claim_reports_next_retry_time)
{
	struct fix f;
	struct lh_claimed c;
	double due = lh_wall() + 100;
	setup_fix(&f, 1);
	lh_committer_want_claim(f.com, f.job, 4);
	run_once(&f);
	cr_assert_eq(f.last.claims[0].n, 1);
	c = f.last.claims[0].items[0];
	f.last.claims[0].n = 0;
	lh_commit_result_release(&f.last);

	struct lh_commit_op *op = lh_committer_op(f.com);
	op->kind = LH_OP_RETRY;
	op->job = f.job;
	op->seq = c.seq;
	op->fence = c.fence;
	op->attempts = 1;
	op->status = 503;
	op->next_try = due;
	op->error = lh_xstrdup("{\"code\":\"http_503\",\"message\":\"x\"}");
	lh_committer_want_claim(f.com, f.job, 4);
	run_once(&f);
	cr_assert_eq(f.last.claims[0].n, 0);
	cr_assert_float_eq(f.last.claims[0].next_due, due, 0.001);
	lh_commit_result_release(&f.last);
	lh_claimed_release(&c);
	teardown_fix(&f);
}
