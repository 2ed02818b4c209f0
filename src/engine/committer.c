/*
 * engine layer: the group-commit thread (see committer.h).
 *
 * Hand-off protocol, guarded by one mutex:
 *   staged   (main thread fills it freely; not shared)
 *   work     (handed to the thread: state WORKING)
 *   result   (the thread's answer: state READY, until main takes it)
 * Main hands new work only when the state is IDLE, so at most one
 * transaction is in flight and the results come back in order.
 */
#include "engine/committer.h"
#include "util/mem.h"
#include "util/time.h"

#include <pthread.h>
#include <string.h>

enum { ST_IDLE, ST_WORKING, ST_READY };

struct lh_committer {
	struct lh_store *st;
	int64_t job;
	char *owner;
	double lease_secs;
	double last_renew;
	struct lh_wake *wake;

	/* main thread only */
	struct lh_opvec staged;
	size_t want_claim;
	double runtime;

	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int state;
	int quit;
	struct lh_opvec work;
	size_t work_claim;
	double work_runtime;
	struct lh_commit_result result;
	struct lh_commit_stats stats;
};

void lh_commit_op_release(struct lh_commit_op *op)
{
	lh_free(op->key);
	lh_free(op->error);
	lh_free(op->event_type);
	lh_free(op->event_data);
	lh_free(op->response);
	lh_free(op->request_id);
	memset(op, 0, sizeof *op);
}

void lh_opvec_release(struct lh_opvec *ov)
{
	for (size_t i = 0; i < ov->n; i++)
		lh_commit_op_release(&ov->v[i]);
	lh_free(ov->v);
	ov->v = NULL;
	ov->n = ov->cap = 0;
}

void lh_commit_result_release(struct lh_commit_result *r)
{
	lh_opvec_release(&r->ops);
	for (size_t i = 0; i < r->nclaimed; i++)
		lh_claimed_release(&r->claimed[i]);
	lh_free(r->claimed);
	memset(r, 0, sizeof *r);
}

static int apply_op(struct lh_committer *c, struct lh_commit_op *op, int64_t d[5], struct lh_err *e)
{
	int rc = 0;
	switch (op->kind) {
	case LH_OP_DONE: {
		struct lh_step_rec s = {
			.step = 0,
			.attempt = op->attempts,
			.request_hash = op->request_hash,
			.status = op->status,
			.request_id = op->request_id,
			.response = op->response,
			.response_len = op->response_len,
			.prompt_tokens = op->prompt_tokens,
			.completion_tokens = op->completion_tokens,
			.started_at = op->started_at,
			.first_byte_at = op->first_byte_at,
			.ended_at = op->ended_at,
		};
		rc = lh_store_item_done(c->st, c->job, op->seq, op->fence, op->attempts, &s, e);
		if (!rc) {
			d[0]++;
			if (op->prompt_tokens > 0)
				d[3] += op->prompt_tokens;
			if (op->completion_tokens > 0)
				d[4] += op->completion_tokens;
		}
		break;
	}
	case LH_OP_RETRY:
		rc = lh_store_item_retry(c->st, c->job, op->seq, op->fence, op->attempts, op->next_try,
					 op->status, op->error, e);
		if (!rc)
			d[2]++;
		break;
	case LH_OP_DEAD:
		rc = lh_store_item_dead(c->st, c->job, op->seq, op->fence, op->attempts, op->status,
					op->error, e);
		if (!rc)
			d[1]++;
		break;
	case LH_OP_RELEASE:
		rc = lh_store_item_release(c->st, c->job, op->seq, op->fence, e);
		break;
	case LH_OP_EVENT:
		break;
	}
	if (rc == LH_EFENCED) {
		/* Another worker owns the item now: its result wins, ours is dropped. */
		op->result = LH_EFENCED;
		return 0;
	}
	if (rc)
		return rc;
	if (op->event_type)
		rc = lh_store_event_add(c->st, c->job, lh_wall(), op->event_type, op->key, op->event_data,
					NULL, e);
	return rc;
}

static void run_transaction(struct lh_committer *c, struct lh_commit_result *r)
{
	int64_t d[5] = { 0, 0, 0, 0, 0 };
	double t0 = lh_wall(), now;
	int rc;

	r->claim_asked = c->work_claim > 0;
	r->claim_max = c->work_claim;
	rc = lh_store_begin(c->st, &r->err);
	for (size_t i = 0; !rc && i < r->ops.n; i++)
		rc = apply_op(c, &r->ops.v[i], d, &r->err);
	if (!rc && (d[0] || d[1] || d[2] || d[3] || d[4] || c->work_runtime > 0))
		rc = lh_store_job_add(c->st, c->job, d[0], d[1], d[2], d[3], d[4], c->work_runtime, &r->err);
	now = lh_wall();
	if (!rc && now - c->last_renew > c->lease_secs / 3) {
		rc = lh_store_renew(c->st, c->job, c->owner, now + c->lease_secs, &r->err);
		c->last_renew = now;
	}
	if (!rc && c->work_claim)
		rc = lh_store_claim(c->st, c->job, c->owner, now, c->lease_secs, c->work_claim, &r->claimed,
				    &r->nclaimed, &r->err);
	if (!rc && c->work_claim && r->nclaimed < c->work_claim) {
		rc = lh_store_next_due(c->st, c->job, &r->next_due, &r->err);
		if (rc == LH_ENOTFOUND) {
			r->next_due = 0;
			rc = 0;
			lh_err_clear(&r->err);
		}
	}
	if (!rc)
		rc = lh_store_commit(c->st, &r->err);
	if (rc) {
		lh_store_rollback(c->st);
		for (size_t i = 0; i < r->nclaimed; i++)
			lh_claimed_release(&r->claimed[i]);
		lh_free(r->claimed);
		r->claimed = NULL;
		r->nclaimed = 0;
	}
	r->rc = rc;
	c->stats.commits++;
	c->stats.items += r->ops.n;
	lh_hist_add(&c->stats.commit_lat, lh_wall() - t0);
}

static void *thread_main(void *arg)
{
	struct lh_committer *c = arg;
	pthread_mutex_lock(&c->mu);
	for (;;) {
		while (c->state != ST_WORKING && !c->quit)
			pthread_cond_wait(&c->cv, &c->mu);
		if (c->state != ST_WORKING)
			break;
		pthread_mutex_unlock(&c->mu);

		struct lh_commit_result r;
		memset(&r, 0, sizeof r);
		r.ops = c->work;
		memset(&c->work, 0, sizeof c->work);
		run_transaction(c, &r);

		pthread_mutex_lock(&c->mu);
		c->result = r;
		c->state = ST_READY;
		pthread_cond_broadcast(&c->cv);
		if (c->wake)
			lh_wake_signal(c->wake);
	}
	pthread_mutex_unlock(&c->mu);
	return NULL;
}

struct lh_committer *lh_committer_new(struct lh_store *st, int64_t job, const char *owner, double lease_secs,
				      struct lh_loop *loop, lh_wake_cb on_ready, void *arg, struct lh_err *e)
{
	struct lh_committer *c = lh_xcalloc(1, sizeof *c);
	c->st = st;
	c->job = job;
	c->owner = lh_xstrdup(owner);
	c->lease_secs = lease_secs;
	c->last_renew = lh_wall();
	lh_hist_init(&c->stats.commit_lat);
	pthread_mutex_init(&c->mu, NULL);
	pthread_cond_init(&c->cv, NULL);
	c->wake = lh_wake_new(loop, on_ready, arg, e);
	if (!c->wake || pthread_create(&c->thread, NULL, thread_main, c) != 0) {
		if (c->wake)
			lh_err_set(e, LH_EINTERNAL, "could not start the commit thread");
		lh_wake_free(c->wake);
		pthread_mutex_destroy(&c->mu);
		pthread_cond_destroy(&c->cv);
		lh_free(c->owner);
		lh_free(c);
		return NULL;
	}
	return c;
}

struct lh_commit_op *lh_committer_op(struct lh_committer *c)
{
	struct lh_opvec *v = &c->staged;
	if (v->n == v->cap) {
		v->cap = v->cap ? v->cap * 2 : 256;
		v->v = lh_xrealloc(v->v, v->cap * sizeof *v->v);
	}
	memset(&v->v[v->n], 0, sizeof v->v[0]);
	return &v->v[v->n++];
}

void lh_committer_want_claim(struct lh_committer *c, size_t n)
{
	if (n > c->want_claim)
		c->want_claim = n;
}

void lh_committer_add_runtime(struct lh_committer *c, double secs)
{
	c->runtime += secs;
}

void lh_committer_flush(struct lh_committer *c)
{
	if (!c->staged.n && !c->want_claim)
		return;
	pthread_mutex_lock(&c->mu);
	if (c->state == ST_IDLE) {
		c->work = c->staged;
		c->work_claim = c->want_claim;
		c->work_runtime = c->runtime;
		memset(&c->staged, 0, sizeof c->staged);
		c->want_claim = 0;
		c->runtime = 0;
		c->state = ST_WORKING;
		pthread_cond_broadcast(&c->cv);
	}
	pthread_mutex_unlock(&c->mu);
}

int lh_committer_busy(struct lh_committer *c)
{
	int busy;
	pthread_mutex_lock(&c->mu);
	busy = c->state != ST_IDLE || c->staged.n || c->want_claim;
	pthread_mutex_unlock(&c->mu);
	return busy;
}

int lh_committer_take(struct lh_committer *c, struct lh_commit_result *r)
{
	int got = 0;
	pthread_mutex_lock(&c->mu);
	if (c->state == ST_READY) {
		*r = c->result;
		memset(&c->result, 0, sizeof c->result);
		c->state = ST_IDLE;
		got = 1;
	}
	pthread_mutex_unlock(&c->mu);
	return got;
}

void lh_committer_stats(struct lh_committer *c, struct lh_commit_stats *out)
{
	pthread_mutex_lock(&c->mu);
	*out = c->stats;
	pthread_mutex_unlock(&c->mu);
}

void lh_committer_free(struct lh_committer *c)
{
	struct lh_commit_result r;
	if (!c)
		return;
	/* Drain: wait for the transaction in flight, then commit what is staged. */
	for (;;) {
		pthread_mutex_lock(&c->mu);
		while (c->state == ST_WORKING)
			pthread_cond_wait(&c->cv, &c->mu);
		pthread_mutex_unlock(&c->mu);
		if (lh_committer_take(c, &r))
			lh_commit_result_release(&r);
		if (!c->staged.n)
			break;
		c->want_claim = 0;
		lh_committer_flush(c);
	}
	pthread_mutex_lock(&c->mu);
	c->quit = 1;
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->mu);
	pthread_join(c->thread, NULL);
	lh_wake_free(c->wake);
	lh_opvec_release(&c->staged);
	pthread_mutex_destroy(&c->mu);
	pthread_cond_destroy(&c->cv);
	lh_free(c->owner);
	lh_free(c);
}
