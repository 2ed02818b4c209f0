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
#include "util/vec.h"

#include <pthread.h>
#include <string.h>

enum { ST_IDLE, ST_WORKING, ST_READY };

/* Per-job sums of one transaction, written once per job. */
struct jobsum {
	int64_t job;
	int64_t d[5]; /* done, dead, retries, prompt tokens, completion tokens */
	const char *last_error;
};

struct leased_job {
	int64_t job;
	double last_claim;
};

struct lh_committer {
	struct lh_store *st;
	char *owner;
	double lease_secs;
	double last_renew;
	struct lh_wake *wake;

	/* main thread only */
	struct lh_opvec staged;
	LH_VEC(struct lh_claim) want;

	/* commit thread only */
	LH_VEC(struct jobsum) sums;
	LH_VEC(struct leased_job) leased;

	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int state;
	int quit;
	struct lh_opvec work;
	struct lh_claim *work_claims;
	size_t work_nclaims;
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
	lh_free(op->row_kind);
	lh_free(op->model);
	lh_free(op->delta);
	memset(op, 0, sizeof *op);
}

void lh_opvec_release(struct lh_opvec *ov)
{
	for (size_t i = 0; i < ov->n; i++)
		lh_commit_op_release(&ov->v[i]);
	lh_vec_release(ov);
}

static void claims_release(struct lh_claim *cl, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		for (size_t k = 0; k < cl[i].n; k++)
			lh_claimed_release(&cl[i].items[k]);
		lh_free(cl[i].items);
	}
	lh_free(cl);
}

void lh_commit_result_release(struct lh_commit_result *r)
{
	lh_opvec_release(&r->ops);
	claims_release(r->claims, r->nclaims);
	memset(r, 0, sizeof *r);
}

static struct jobsum *sum_for(struct lh_committer *c, int64_t job)
{
	struct jobsum *s;
	for (size_t i = 0; i < c->sums.n; i++)
		if (c->sums.v[i].job == job)
			return &c->sums.v[i];
	s = lh_vec_push(&c->sums);
	s->job = job;
	return s;
}

static void note_leased(struct lh_committer *c, int64_t job, double now)
{
	struct leased_job *l;
	for (size_t i = 0; i < c->leased.n; i++)
		if (c->leased.v[i].job == job) {
			c->leased.v[i].last_claim = now;
			return;
		}
	l = lh_vec_push(&c->leased);
	l->job = job;
	l->last_claim = now;
}

/* The journal row an op carries. */
static void row_of(const struct lh_commit_op *op, struct lh_step_rec *r)
{
	memset(r, 0, sizeof *r);
	r->step = op->step;
	r->turn = op->turn;
	r->attempt = op->attempts;
	r->request_hash = op->request_hash;
	r->status = op->status;
	r->request_id = op->request_id;
	r->response = op->response;
	r->response_len = op->response_len;
	r->prompt_tokens = op->prompt_tokens;
	r->completion_tokens = op->completion_tokens;
	r->started_at = op->started_at;
	r->first_byte_at = op->first_byte_at;
	r->ended_at = op->ended_at;
	r->kind = op->row_kind;
	r->model = op->model;
	r->delta = op->delta;
	r->delta_len = op->delta_len;
}

static int apply_op(struct lh_committer *c, struct lh_commit_op *op, struct lh_err *e)
{
	struct jobsum *s = sum_for(c, op->job);
	struct lh_step_rec row;
	int rc = 0;
	switch (op->kind) {
	case LH_OP_STEP:
		row_of(op, &row);
		rc = lh_store_step_put(c->st, op->job, op->seq, op->fence, &row, e);
		if (!rc)
			rc = lh_store_item_set_step(c->st, op->job, op->seq, op->fence, op->pointer, e);
		break;
	case LH_OP_WAIT:
		row_of(op, &row);
		rc = lh_store_item_wait(c->st, op->job, op->seq, op->fence, op->pointer, &row, e);
		break;
	case LH_OP_REDUCE:
		row_of(op, &row);
		rc = lh_store_reduce_put(c->st, op->job, op->level, op->step, &row, e);
		if (!rc) {
			if (op->prompt_tokens > 0)
				s->d[3] += op->prompt_tokens;
			if (op->completion_tokens > 0)
				s->d[4] += op->completion_tokens;
		}
		break;
	case LH_OP_DONE: {
		struct lh_step_rec st = {
			.step = 0,
			.kind = op->row_kind,
			.model = op->model,
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
		rc = lh_store_item_done(c->st, op->job, op->seq, op->fence, op->attempts, &st, e);
		if (!rc) {
			s->d[0]++;
			if (op->prompt_tokens > 0)
				s->d[3] += op->prompt_tokens;
			if (op->completion_tokens > 0)
				s->d[4] += op->completion_tokens;
		}
		break;
	}
	case LH_OP_RETRY:
		rc = lh_store_item_retry(c->st, op->job, op->seq, op->fence, op->attempts, op->next_try, op->status,
					 op->error, e);
		if (!rc)
			s->d[2]++;
		break;
	case LH_OP_DEAD:
		rc = lh_store_item_dead(c->st, op->job, op->seq, op->fence, op->attempts, op->status, op->error, e);
		if (!rc) {
			s->d[1]++;
			s->last_error = op->error;
		}
		break;
	case LH_OP_RELEASE:
		rc = lh_store_item_release(c->st, op->job, op->seq, op->fence, e);
		break;
	case LH_OP_EVENT:
		break;
	}
	if (rc == LH_EFENCED || rc == LH_ENOTFOUND) {
		/* Another worker owns the item now (its result wins), or the job
		 * was deleted: either way ours is dropped, the rest commits. */
		op->result = rc;
		lh_err_clear(e);
		return 0;
	}
	if (rc)
		return rc;
	if (op->event_type) {
		rc = lh_store_event_add(c->st, op->job, lh_wall(), op->event_type, op->key, op->event_data, NULL, e);
		if (rc == LH_ENOTFOUND) {
			lh_err_clear(e);
			rc = 0;
		}
	}
	return rc;
}

static int apply_sums(struct lh_committer *c, struct lh_err *e)
{
	for (size_t i = 0; i < c->sums.n; i++) {
		struct jobsum *s = &c->sums.v[i];
		int rc = 0;
		if (s->d[0] || s->d[1] || s->d[2] || s->d[3] || s->d[4])
			rc = lh_store_job_add(c->st, s->job, s->d[0], s->d[1], s->d[2], s->d[3], s->d[4], 0, e);
		if (!rc && s->last_error)
			rc = lh_store_job_set_error(c->st, s->job, s->last_error, e);
		if (rc == LH_ENOTFOUND) {
			lh_err_clear(e);
			rc = 0;
		}
		if (rc)
			return rc;
	}
	return 0;
}

static int renew_leases(struct lh_committer *c, double now, struct lh_err *e)
{
	size_t k = 0;
	for (size_t i = 0; i < c->leased.n; i++) {
		int rc;
		/* A job not claimed for over a lease period holds no lease of ours. */
		if (now - c->leased.v[i].last_claim > c->lease_secs)
			continue;
		rc = lh_store_renew(c->st, c->leased.v[i].job, c->owner, now + c->lease_secs, e);
		if (rc && rc != LH_ENOTFOUND)
			return rc;
		c->leased.v[k++] = c->leased.v[i];
	}
	c->leased.n = k;
	return 0;
}

static int try_transaction(struct lh_committer *c, struct lh_commit_result *r);

static void run_transaction(struct lh_committer *c, struct lh_commit_result *r)
{
	double t0 = lh_wall();
	int rc;
	/* Another connection (the API ingesting a large upload) may hold the
	 * write lock past SQLite's busy timeout: that is a wait, not a failure.
	 * The rolled-back transaction is simply tried again. */
	for (int tries = 0;; tries++) {
		rc = try_transaction(c, r);
		if (rc != LH_EBUSY || tries >= 60)
			break;
		for (size_t i = 0; i < r->ops.n; i++)
			r->ops.v[i].result = 0;
		lh_err_clear(&r->err);
	}
	r->rc = rc;
	c->stats.commits++;
	c->stats.items += r->ops.n;
	lh_hist_add(&c->stats.commit_lat, lh_wall() - t0);
}

static int try_transaction(struct lh_committer *c, struct lh_commit_result *r)
{
	double now;
	int rc;

	c->sums.n = 0;
	rc = lh_store_begin(c->st, &r->err);
	for (size_t i = 0; !rc && i < r->ops.n; i++)
		rc = apply_op(c, &r->ops.v[i], &r->err);
	if (!rc)
		rc = apply_sums(c, &r->err);
	now = lh_wall();
	if (!rc && now - c->last_renew > c->lease_secs / 3) {
		rc = renew_leases(c, now, &r->err);
		c->last_renew = now;
	}
	for (size_t i = 0; !rc && i < r->nclaims; i++) {
		struct lh_claim *cl = &r->claims[i];
		rc = lh_store_claim(c->st, cl->job, c->owner, now, c->lease_secs, cl->max, &cl->items, &cl->n, &r->err);
		if (rc == LH_ENOTFOUND) {
			lh_err_clear(&r->err);
			rc = 0;
		}
		if (!rc && cl->n)
			note_leased(c, cl->job, now);
		if (!rc && cl->n < cl->max) {
			rc = lh_store_next_due(c->st, cl->job, &cl->next_due, &r->err);
			if (rc == LH_ENOTFOUND) {
				cl->next_due = 0;
				rc = 0;
				lh_err_clear(&r->err);
			}
		}
	}
	if (!rc)
		rc = lh_store_commit(c->st, &r->err);
	if (rc) {
		lh_store_rollback(c->st);
		for (size_t i = 0; i < r->nclaims; i++) {
			for (size_t k = 0; k < r->claims[i].n; k++)
				lh_claimed_release(&r->claims[i].items[k]);
			lh_free(r->claims[i].items);
			r->claims[i].items = NULL;
			r->claims[i].n = 0;
		}
	}
	return rc;
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
		r.claims = c->work_claims;
		r.nclaims = c->work_nclaims;
		memset(&c->work, 0, sizeof c->work);
		c->work_claims = NULL;
		c->work_nclaims = 0;
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

struct lh_committer *lh_committer_new(struct lh_store *st, const char *owner, double lease_secs,
				      struct lh_loop *loop, lh_wake_cb on_ready, void *arg, struct lh_err *e)
{
	struct lh_committer *c = lh_xcalloc(1, sizeof *c);
	c->st = st;
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
	return lh_vec_push_from(&c->staged, 256);
}

void lh_committer_want_claim(struct lh_committer *c, int64_t job, size_t n)
{
	struct lh_claim *w;
	for (size_t i = 0; i < c->want.n; i++)
		if (c->want.v[i].job == job) {
			if (n > c->want.v[i].max)
				c->want.v[i].max = n;
			return;
		}
	w = lh_vec_push(&c->want);
	w->job = job;
	w->max = n;
}

void lh_committer_flush(struct lh_committer *c)
{
	if (!c->staged.n && !c->want.n)
		return;
	pthread_mutex_lock(&c->mu);
	if (c->state == ST_IDLE) {
		c->work = c->staged;
		c->work_claims = c->want.v;
		c->work_nclaims = c->want.n;
		lh_vec_init(&c->staged);
		lh_vec_init(&c->want);
		c->state = ST_WORKING;
		pthread_cond_broadcast(&c->cv);
	}
	pthread_mutex_unlock(&c->mu);
}

int lh_committer_busy(struct lh_committer *c)
{
	int busy;
	pthread_mutex_lock(&c->mu);
	busy = c->state != ST_IDLE || c->staged.n || c->want.n;
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
	/* Drain: wait for the transaction in flight, then commit what is staged
	 * (claims are dropped: nobody is left to use them). */
	claims_release(c->want.v, c->want.n);
	lh_vec_init(&c->want);
	for (;;) {
		pthread_mutex_lock(&c->mu);
		while (c->state == ST_WORKING)
			pthread_cond_wait(&c->cv, &c->mu);
		pthread_mutex_unlock(&c->mu);
		if (lh_committer_take(c, &r))
			lh_commit_result_release(&r);
		if (!c->staged.n)
			break;
		lh_committer_flush(c);
	}
	pthread_mutex_lock(&c->mu);
	c->quit = 1;
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->mu);
	pthread_join(c->thread, NULL);
	lh_wake_free(c->wake);
	lh_opvec_release(&c->staged);
	lh_vec_release(&c->sums);
	lh_vec_release(&c->leased);
	pthread_mutex_destroy(&c->mu);
	pthread_cond_destroy(&c->cv);
	lh_free(c->owner);
	lh_free(c);
}
