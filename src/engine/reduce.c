/*
 * engine layer: a pipeline job's reduce (steps/reduce.c says what it
 * computes). It starts once every item has ended and its last result has
 * committed, and runs level by level: the chunks of a level go out side by
 * side (within the job's concurrency), each answer is journaled as a row
 * of the level's pseudo item (item_seq -1 - level, step = chunk index), and
 * when a level is complete its results are chunked into the next. A chunk
 * whose journal row holds the same request hash is not sent again, so a
 * crash during the reduce, or a resume after an edit that left the outputs
 * alone, repeats no finished call. The final text is journaled at level
 * LH_REDUCE_FINAL, where the outputs (engine/report.c) and the API read it.
 */
#include "engine/engine_internal.h"
#include "util/log.h"
#include "util/mem.h"
#include "util/time.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct rchunk {
	char *first, *last;       /* the keys it covers */
	struct lh_buf blocks;     /* its {{outputs}} */
	char hash[LH_SHA256_HEX];
	char *output;
	size_t nblocks;
	int state;                /* 0 to send, 1 in flight, 2 done */
	int attempts;
};

struct lh_reduce_run {
	int level;
	struct rchunk *c;
	size_t n, ndone;
	int64_t calls_total, calls_done;
	long in_flight;
	int over;
	struct lh_timer *t_retry;
};

static void chunks_free(struct lh_reduce_run *r)
{
	for (size_t i = 0; i < r->n; i++) {
		lh_free(r->c[i].first);
		lh_free(r->c[i].last);
		lh_buf_release(&r->c[i].blocks);
		lh_free(r->c[i].output);
	}
	lh_free(r->c);
	r->c = NULL;
	r->n = r->ndone = 0;
}

void reduce_free(struct ejob *j)
{
	if (!j->reduce)
		return;
	chunks_free(j->reduce);
	lh_timer_free(j->reduce->t_retry);
	lh_free(j->reduce);
	j->reduce = NULL;
}

void reduce_stats(struct ejob *j, int *running, int64_t *calls, int64_t *done)
{
	struct lh_reduce_run *r = j->reduce;
	*running = r && !r->over;
	*calls = r ? r->calls_total : 0;
	*done = r ? r->calls_done : 0;
}

static void over(struct ejob *j, const char *fmt, const char *a, const char *b)
{
	char msg[3000];
	j->reduce->over = 1;
	if (fmt) {
		snprintf(msg, sizeof msg, fmt, a, b);
		lh_free(j->reduce_msg);
		j->reduce_msg = lh_xstrdup(msg);
		lh_warn("job %lld: %s", (long long)j->id, msg);
	}
}

/* A store that failed to read, or a damaged row, stops the engine (never
 * a reduce over damaged bytes); anything else ends the reduce with why. */
static void damaged_or_over(struct ejob *j, struct lh_err *e)
{
	over(j, "reduce failed: %s%s", e->msg, "");
	if (e->code == LH_ECORRUPT || e->code == LH_ESTORE)
		eng_fatal(j->eng, e);
}

static struct rchunk *add_chunk(struct lh_reduce_run *r)
{
	struct rchunk *c;
	r->c = lh_xrealloc(r->c, (r->n + 1) * sizeof *r->c);
	c = &r->c[r->n++];
	memset(c, 0, sizeof *c);
	lh_buf_init(&c->blocks, 0);
	return c;
}

/* Level 0: the outputs of the succeeded items, in input order. */
struct level0 {
	struct ejob *j;
	struct lh_reduce_run *r;
	int rc;
	struct lh_err *e;
};

static int add_output(const struct lh_item_view *v, void *arg)
{
	struct level0 *l = arg;
	struct lh_reduce_run *r = l->r;
	struct rchunk *c = r->n ? &r->c[r->n - 1] : NULL;
	json_t *res = v->response ? json_loadb(v->response, v->response_len, 0, NULL) : NULL;
	json_t *out = json_object_get(res, "output");
	const char *text = json_is_string(out) ? json_string_value(out) : "";
	size_t len = json_is_string(out) ? json_string_length(out) : 0;
	if (!c || c->nblocks >= (size_t)l->j->pipe->reduce->fan_in) {
		c = add_chunk(r);
		c->first = lh_xstrdup(v->key);
	}
	c->nblocks++;
	lh_free(c->last);
	c->last = lh_xstrdup(v->key);
	if (lh_reduce_block(&c->blocks, v->key, NULL, text, len))
		l->rc = LH_ETOOBIG;
	json_decref(res);
	return l->rc;
}

static int match_row(const struct lh_step_rec *s, void *arg)
{
	struct lh_reduce_run *r = arg;
	struct lh_answer a;
	struct lh_err e;
	struct rchunk *c;
	if (s->step < 0 || (size_t)s->step >= r->n)
		return 0;
	c = &r->c[s->step];
	if (c->state == 2 || !s->request_hash || strcmp(s->request_hash, c->hash))
		return 0;
	if (lh_answer_read(s->response, s->response_len, 0, &a, &e) != 0)
		return 0;
	c->output = lh_xstrdup(a.content ? a.content : "");
	c->state = 2;
	r->ndone++;
	r->calls_done++;
	lh_answer_release(&a);
	return 0;
}

/* Computes each chunk's request and takes the answers the journal holds. */
static int prepare_level(struct ejob *j, struct lh_err *e)
{
	struct lh_reduce_run *r = j->reduce;
	struct lh_buf body;
	int rc = 0;
	lh_buf_init(&body, 0);
	for (size_t i = 0; i < r->n && !rc; i++) {
		r->c[i].attempts = 0;
		rc = lh_reduce_body(j->pipe, j->pipe_model, r->c[i].blocks.data ? r->c[i].blocks.data : "",
				    r->c[i].blocks.len, &body, e);
		if (!rc)
			lh_sha256_hex(body.data, body.len, r->c[i].hash);
	}
	lh_buf_release(&body);
	if (!rc)
		rc = lh_store_steps_each(j->eng->o.control, j->id, -1 - (int64_t)r->level, match_row, r, e);
	return rc;
}

static void stage_final(struct ejob *j, const char *text)
{
	struct lh_commit_op *op = eng_new_op(j);
	op->kind = LH_OP_REDUCE;
	op->level = LH_REDUCE_FINAL;
	op->step = 0;
	op->status = 200;
	op->response = lh_xstrdup(text);
	op->response_len = strlen(text);
	lh_sha256_hex(text, op->response_len, op->request_hash);
	op->ended_at = lh_wall();
	op->row_kind = lh_xstrdup("reduce");
}

static void pump(struct ejob *j);

/* A level is complete: its results become the next level, or the end. */
static void next_level(struct ejob *j)
{
	struct lh_reduce_run *r = j->reduce;
	struct rchunk *old = r->c;
	size_t n = r->n, f = (size_t)j->pipe->reduce->fan_in;
	struct lh_err e;
	if (n == 1) {
		stage_final(j, old[0].output ? old[0].output : "");
		over(j, NULL, NULL, NULL);
		return;
	}
	r->c = NULL;
	r->n = r->ndone = 0;
	r->level++;
	for (size_t i = 0; i < n; i++) {
		struct rchunk *c = (i % f == 0) ? add_chunk(r) : &r->c[r->n - 1];
		if (!c->first)
			c->first = lh_xstrdup(old[i].first);
		lh_free(c->last);
		c->last = lh_xstrdup(old[i].last);
		if (lh_reduce_block(&c->blocks, old[i].first, old[i].last, old[i].output ? old[i].output : "",
				    old[i].output ? strlen(old[i].output) : 0)) {
			over(j, "reduce failed: level %s%s is too large", "", "");
			break;
		}
	}
	for (size_t i = 0; i < n; i++) {
		lh_free(old[i].first);
		lh_free(old[i].last);
		lh_buf_release(&old[i].blocks);
		lh_free(old[i].output);
	}
	lh_free(old);
	if (r->over)
		return;
	if (prepare_level(j, &e)) {
		damaged_or_over(j, &e);
		return;
	}
	pump(j);
}

static void send_chunk(struct ejob *j, size_t i)
{
	struct lh_reduce_run *r = j->reduce;
	struct rchunk *c = &r->c[i];
	struct inflight *f = lh_xcalloc(1, sizeof *f);
	struct lh_err e;
	f->reduce = 1;
	f->level = r->level;
	f->index = (int)i;
	lh_buf_init(&f->body, 0);
	if (lh_reduce_body(j->pipe, j->pipe_model, c->blocks.data ? c->blocks.data : "", c->blocks.len, &f->body,
			   &e)) {
		lh_buf_release(&f->body);
		lh_free(f);
		over(j, "reduce failed: %s%s", e.msg, "");
		return;
	}
	memcpy(f->hash, c->hash, sizeof f->hash);
	c->state = 1;
	r->in_flight++;
	if (eng_send(j, f, j->url, j->api_key, f->body.data, f->body.len, 0) != 0) {
		c->state = 0;
		r->in_flight--;
		lh_buf_release(&f->body);
		lh_free(f);
	}
}

static void pump(struct ejob *j)
{
	struct lh_reduce_run *r = j->reduce;
	long cap = j->cap > 0 ? j->cap : j->eng->o.concurrency;
	if (r->over)
		return;
	if (r->ndone == r->n) {
		next_level(j);
		return;
	}
	if (j->mode != J_RUNNING || j->eng->stopping)
		return;
	for (size_t i = 0; i < r->n && r->in_flight < cap; i++)
		if (r->c[i].state == 0 && !(r->t_retry && lh_timer_active(r->t_retry)))
			send_chunk(j, i);
}

static void on_reduce_retry(struct lh_loop *loop, struct lh_timer *t, void *arg)
{
	(void)loop;
	(void)t;
	pump(arg);
}

int reduce_step(struct ejob *j)
{
	struct lh_reduce_run *r = j->reduce;
	struct level0 l;
	struct lh_err e;
	if (r)
		return !r->over;
	r = j->reduce = lh_xcalloc(1, sizeof *r);
	r->t_retry = lh_timer_new(j->eng->loop, on_reduce_retry, j);
	memset(&l, 0, sizeof l);
	l.j = j;
	l.r = r;
	l.e = &e;
	if (lh_store_items_each(j->eng->o.control, j->id, 1u << LH_ITEM_DONE, add_output, &l, &e) || l.rc) {
		if (l.rc)
			lh_err_set(&e, l.rc, "the outputs are too large");
		damaged_or_over(j, &e);
		return 0;
	}
	if (!r->n) {
		over(j, "reduce skipped: no item succeeded%s%s", "", "");
		return 0;
	}
	{
		size_t items = 0;
		for (size_t i = 0; i < r->n; i++)
			items += r->c[i].nblocks;
		r->calls_total = (int64_t)lh_reduce_calls(items, j->pipe->reduce->fan_in);
	}
	if (prepare_level(j, &e)) {
		damaged_or_over(j, &e);
		return 0;
	}
	lh_info("job %lld: every item has ended; the reduce runs (%lld call%s)", (long long)j->id,
		(long long)r->calls_total, r->calls_total == 1 ? "" : "s");
	pump(j);
	return !r->over;
}

int reduce_answer(struct inflight *f, const struct lh_llm_result *res)
{
	struct ejob *j = f->job;
	struct lh_reduce_run *r = j->reduce;
	struct rchunk *c;
	if (!r || f->level != r->level || (size_t)f->index >= r->n)
		return 1;
	c = &r->c[f->index];
	r->in_flight--;
	c->state = 0;
	if (res->outcome == LH_LLM_OK) {
		struct lh_answer a;
		struct lh_err e;
		struct lh_commit_op *op;
		if (lh_answer_read(res->body, res->body_len, 0, &a, &e)) {
			over(j, "reduce failed: %s%s", e.msg, "");
			return 1;
		}
		op = eng_new_op(j);
		op->kind = LH_OP_REDUCE;
		op->level = r->level;
		op->step = f->index;
		op->status = res->status;
		op->response = lh_xstrndup(res->body, res->body_len);
		op->response_len = res->body_len;
		memcpy(op->request_hash, f->hash, sizeof op->request_hash);
		op->prompt_tokens = a.prompt_tokens >= 0 ? a.prompt_tokens : res->prompt_tokens;
		op->completion_tokens = a.completion_tokens >= 0 ? a.completion_tokens : res->completion_tokens;
		op->started_at = res->started_at;
		op->first_byte_at = res->first_byte_at;
		op->ended_at = res->ended_at;
		op->row_kind = lh_xstrdup("reduce");
		c->output = lh_xstrdup(a.content ? a.content : "");
		lh_answer_release(&a);
		c->state = 2;
		r->ndone++;
		r->calls_done++;
		lh_lane_success(j->lane);
		pump(j);
		return 1;
	}
	if (res->outcome == LH_LLM_CANCELLED || j->mode != J_RUNNING)
		return 1; /* the job left; a resume repeats no finished call */
	if (res->outcome == LH_LLM_TRANSIENT && ++c->attempts < j->retry.max_attempts) {
		double d = lh_retry_delay(&j->retry, c->attempts, res->retry_after, &j->eng->rnd);
		if (res->status == 429)
			lh_lane_backoff(j->lane, res, eng_mono());
		lh_timer_start(r->t_retry, (int64_t)(d * 1000) + 1);
		return 1;
	}
	{
		char where[64];
		snprintf(where, sizeof where, "level %d, call %d", r->level + 1, f->index + 1);
		over(j, "reduce failed at %s: %s", where, res->error_message ? res->error_message : "error");
	}
	return 1;
}
