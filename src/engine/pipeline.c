/*
 * engine layer: the pipeline runner. A claimed item of a pipeline job runs
 * its steps in order; each finished step (each loop turn) is staged as a
 * journal row and committed with the item's step pointer, and the next
 * step starts at once from the output in memory.
 *
 * Replay: when an item starts (first claim, a retry, a restart, an edited
 * spec), its journal is read, and each step renders the request it would
 * send now. A row at the same place with the same request hash is that
 * step's answer: it is reused, never sent again. So after a crash only
 * what was in flight runs again, and after an edit only the steps whose
 * requests changed (and the ones that read their outputs).
 *
 * Slots: an item holds one of its job's slots (concurrency) from its start
 * until it leaves (done, dead, retry, released, or waiting for a person).
 * Commands additionally take one of the job's exec slots
 * (exec_concurrency); items wait for those in a queue.
 *
 * Attempts count per step: a step that commits resets them, so
 * max_attempts bounds each step's tries, not the item's.
 */
#include "engine/engine_internal.h"
#include "loop/proc.h"
#include "util/log.h"
#include "util/mem.h"
#include "util/time.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern char **environ;

struct jrow {
	int step, turn, status, attempt;
	char hash[LH_SHA256_HEX];
	char *response, *delta, *model;
	size_t len;
	int64_t pt, ct;
	double started, ended;
};

struct pitem {
	struct ejob *job;
	struct lh_claimed item;
	int lent;                /* the item is lent to an llm call */
	json_t *ctx;
	size_t k;                /* the step it is at */
	int turn;
	struct jrow *rows;
	size_t nrows;
	json_t *steps_out;       /* {ID: {output, usage, attempts, latency_ms, model}} */
	int64_t ptok, ctok;      /* totals over every step */
	int64_t new_ptok, new_ctok; /* of the steps run now (not replayed) */
	double first_started;    /* wall: the item's first step */
	double step_started;     /* wall */
	int64_t step_pt, step_ct; /* a loop's usage so far */
	const char *model;       /* the current llm step's */
	char *finish;            /* the last step's finish_reason (an llm step's), or NULL */
	char hash[LH_SHA256_HEX];
	/* a loop */
	json_t *messages;
	struct lh_answer ans;
	json_t *delta;
	size_t tool_i;
	char *raw;               /* the turn's answer, for the row's re-puts */
	size_t raw_len;
	int raw_status;
	double raw_started, raw_ended;
	/* a command or tool */
	struct lh_proc *proc;
	char **argv;
	struct lh_buf in;
	double timeout;
	int is_tool;
	const char *tool_id;
	int queued;
	struct pitem *prev, *next, *qnext;
};

enum { STEP_NEXT, STEP_ASYNC, STEP_GONE, STEP_TURN };

static void advance(struct pitem *pi);
static int loop_turns(struct pitem *pi);
static void exec_start(struct pitem *pi);

static const struct lh_step_def *cur(const struct pitem *pi)
{
	return &pi->job->pipe->steps[pi->k];
}

/* ---- life of a pipeline item ---- */

static void pi_free(struct pitem *pi)
{
	struct ejob *j = pi->job;
	if (pi->prev)
		pi->prev->next = pi->next;
	else
		j->pitems = pi->next;
	if (pi->next)
		pi->next->prev = pi->prev;
	j->n_inflight--;
	j->eng->n_inflight--;
	for (size_t i = 0; i < pi->nrows; i++) {
		lh_free(pi->rows[i].response);
		lh_free(pi->rows[i].delta);
		lh_free(pi->rows[i].model);
	}
	lh_free(pi->rows);
	json_decref(pi->ctx);
	json_decref(pi->steps_out);
	json_decref(pi->messages);
	json_decref(pi->delta);
	lh_answer_release(&pi->ans);
	lh_free(pi->raw);
	lh_free(pi->finish);
	lh_argv_free(pi->argv);
	lh_buf_release(&pi->in);
	lh_claimed_release(&pi->item);
	lh_free(pi);
}

/* The item leaves with nothing staged (the caller staged its fate). */
void pipe_left(struct pitem *pi)
{
	memset(&pi->item, 0, sizeof pi->item);
	pi_free(pi);
}

static void release(struct pitem *pi)
{
	eng_stage_release(pi->job, &pi->item);
	pi_free(pi);
}

void pipe_error_step(struct pitem *pi, json_t *error)
{
	if (json_is_object(error) && pi->k < pi->job->pipe->n)
		json_object_set_new(error, "step", json_string(cur(pi)->id));
}

/* The item dies at its current step with code and message. */
static void fail(struct pitem *pi, const char *code, const char *msg, int status)
{
	json_t *o = json_pack("{s:s,s:s}", "code", code, "message", msg);
	char *err;
	pipe_error_step(pi, o);
	if (status > 0)
		json_object_set_new(o, "status", json_integer(status));
	err = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	eng_stage_dead(pi->job, &pi->item, pi->item.attempts + 1, status, err ? err : lh_xstrdup("{}"), code, msg);
	pi_free(pi);
}

/* A transient failure of the current step: retry the item later (its
 * finished steps are journaled), or let it die when its attempts are
 * spent. */
static void transient(struct pitem *pi, const char *code, const char *msg)
{
	struct ejob *j = pi->job;
	int attempts = pi->item.attempts + 1;
	json_t *o;
	char *err;
	if (attempts >= j->retry.max_attempts) {
		fail(pi, code, msg, 0);
		return;
	}
	if (j->mode != J_RUNNING) {
		release(pi);
		return;
	}
	o = json_pack("{s:s,s:s}", "code", code, "message", msg);
	pipe_error_step(pi, o);
	err = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	eng_stage_retry(j, &pi->item, attempts, 0, err ? err : lh_xstrdup("{}"), code, msg,
			lh_retry_delay(&j->retry, attempts, -1, &j->eng->rnd));
	pi_free(pi);
}

static int load_row(const struct lh_step_rec *s, void *arg)
{
	struct pitem *pi = arg;
	struct jrow *r;
	pi->rows = lh_xrealloc(pi->rows, (pi->nrows + 1) * sizeof *pi->rows);
	r = &pi->rows[pi->nrows++];
	memset(r, 0, sizeof *r);
	r->step = s->step;
	r->turn = s->turn;
	r->status = s->status;
	r->attempt = s->attempt;
	snprintf(r->hash, sizeof r->hash, "%s", s->request_hash ? s->request_hash : "");
	r->response = lh_xstrndup(s->response ? s->response : "", s->response_len);
	r->len = s->response_len;
	r->delta = s->delta ? lh_xstrndup(s->delta, s->delta_len) : NULL;
	r->model = s->model ? lh_xstrdup(s->model) : NULL;
	r->pt = s->prompt_tokens;
	r->ct = s->completion_tokens;
	r->started = s->started_at;
	r->ended = s->ended_at;
	/* The item's time runs from its first step; waiting for a person does
	 * not count against timeouts.item. */
	if (s->started_at > 0 && !(s->kind && !strcmp(s->kind, "approve")) &&
	    (pi->first_started <= 0 || s->started_at < pi->first_started))
		pi->first_started = s->started_at;
	return 0;
}

static struct jrow *find_row(struct pitem *pi, int step, int turn, const char *hash)
{
	for (size_t i = 0; i < pi->nrows; i++)
		if (pi->rows[i].step == step && pi->rows[i].turn == turn)
			return hash && strcmp(pi->rows[i].hash, hash) ? NULL : &pi->rows[i];
	return NULL;
}

void pipe_start(struct ejob *j, struct lh_claimed *c)
{
	struct lh_engine *eng = j->eng;
	struct pitem *pi = lh_xcalloc(1, sizeof *pi);
	struct lh_err e;
	int rc;
	pi->job = j;
	pi->item = *c;
	lh_buf_init(&pi->in, LH_PROC_STDIN_MAX);
	pi->next = j->pitems;
	if (j->pitems)
		j->pitems->prev = pi;
	j->pitems = pi;
	j->n_inflight++;
	eng->n_inflight++;
	pi->steps_out = json_object();
	rc = lh_store_steps_each(eng->o.control, j->id, c->seq, load_row, pi, &e);
	if (rc) {
		/* A damaged journal is never passed on, nor quietly re-run. */
		lh_err_prefix(&e, "job %lld, item %s", (long long)j->id, c->key);
		release(pi);
		eng_fatal(eng, &e);
		return;
	}
	if (lh_step_ctx_new(c->input, c->input_len, c->key, &pi->ctx, &e)) {
		fail(pi, "invalid_record", e.msg, 0);
		return;
	}
	if (pi->first_started <= 0)
		pi->first_started = lh_wall();
	advance(pi);
}

/* Records a finished step's output in the context and the result. */
static void step_done(struct pitem *pi, const char *out, size_t len, int64_t pt, int64_t ct, int attempts,
		      double started, double ended, const char *model, const char *finish)
{
	const struct lh_step_def *d = cur(pi);
	json_t *s;
	lh_free(pi->finish);
	pi->finish = finish ? lh_xstrdup(finish) : NULL;
	lh_step_ctx_set(pi->job->pipe, pi->k, pi->ctx, out, len);
	s = json_pack("{s:O,s:{s:I,s:I},s:i}", "output", json_object_get(pi->ctx, "output"), "usage",
		      "prompt_tokens", (json_int_t)(pt > 0 ? pt : 0), "completion_tokens",
		      (json_int_t)(ct > 0 ? ct : 0), "attempts", attempts);
	json_object_set_new(s, "latency_ms",
			    started > 0 && ended >= started ? json_integer((json_int_t)((ended - started) * 1000 + 0.5)) :
			    json_null());
	json_object_set_new(s, "model", model ? json_string(model) : json_null());
	json_object_set_new(pi->steps_out, d->id, s);
	if (pt > 0)
		pi->ptok += pt;
	if (ct > 0)
		pi->ctok += ct;
	pi->k++;
	pi->turn = 0;
	pi->step_pt = pi->step_ct = 0;
	json_decref(pi->messages);
	pi->messages = NULL;
}

/* Stages a journal row of the current step (a turn of it when turn >= 0
 * with a loop) with the item's step pointer. */
static void stage_row(struct pitem *pi, const char *kind, const char *resp, size_t len, int status, int64_t pt,
		      int64_t ct, double started, double first_byte, double ended, const char *delta, int finished)
{
	struct lh_commit_op *op = eng_new_op(pi->job);
	op->kind = LH_OP_STEP;
	op->seq = pi->item.seq;
	op->fence = pi->item.fence;
	op->attempts = pi->item.attempts + 1;
	op->status = status;
	op->response = lh_xstrndup(resp ? resp : "", len);
	op->response_len = len;
	memcpy(op->request_hash, pi->hash, sizeof op->request_hash);
	op->prompt_tokens = pt;
	op->completion_tokens = ct;
	op->started_at = started;
	op->first_byte_at = first_byte;
	op->ended_at = ended;
	op->step = (int)pi->k + 1;
	op->turn = pi->turn;
	op->pointer = (int)pi->k + (finished ? 1 : 0);
	op->row_kind = lh_xstrdup(kind);
	op->model = pi->model ? lh_xstrdup(pi->model) : NULL;
	if (delta) {
		op->delta = lh_xstrdup(delta);
		op->delta_len = strlen(delta);
	}
}

void pipe_committed(struct ejob *j, const struct lh_commit_op *op)
{
	if (op->kind == LH_OP_WAIT) {
		j->waiting++;
		return;
	}
	/* A step finished when the pointer moved past it. */
	if (op->pointer == op->step && op->step >= 1 && (size_t)op->step <= j->pipe->n) {
		size_t k = (size_t)op->step - 1;
		j->steps_done[k]++;
		if (j->pipe->steps[k].kind == LH_STEP_LOOP) {
			/* What the loops took so far is what the rest will take. */
			j->loop_turns[k] += op->turn + 1;
			j->loops_ended[k]++;
			j->step_cost[k] = (double)j->loop_turns[k] / (double)j->loops_ended[k];
		}
	}
}

/* ---- the end of an item ---- */

static void finish(struct pitem *pi)
{
	struct ejob *j = pi->job;
	struct lh_commit_op *op;
	json_t *r;
	char *text;
	double now = lh_wall();
	r = json_pack("{s:s,s:O,s:s?,s:O,s:{s:I,s:I}}", "object", "longhaul.pipeline_result", "output",
		      json_object_get(pi->ctx, "output"), "finish_reason", pi->finish, "steps", pi->steps_out, "usage",
		      "prompt_tokens", (json_int_t)pi->ptok, "completion_tokens", (json_int_t)pi->ctok);
	text = r ? json_dumps(r, JSON_COMPACT) : NULL;
	json_decref(r);
	if (!text) {
		fail(pi, "internal", "could not compose the item's result", 0);
		return;
	}
	op = eng_new_op(j);
	op->kind = LH_OP_DONE;
	op->seq = pi->item.seq;
	op->fence = pi->item.fence;
	op->attempts = pi->item.attempts > 0 ? pi->item.attempts : 1;
	op->status = 200;
	op->response_len = strlen(text);
	op->response = text;
	lh_sha256_hex(text, op->response_len, op->request_hash);
	op->prompt_tokens = pi->new_ptok;
	op->completion_tokens = pi->new_ctok;
	op->started_at = pi->first_started;
	op->ended_at = now;
	op->row_kind = lh_xstrdup("result");
	pi_free(pi);
}

/* ---- llm steps ---- */

static int send(struct pitem *pi, struct lh_buf *body)
{
	struct ejob *j = pi->job;
	const struct lh_step_def *d = cur(pi);
	struct inflight *f = lh_xcalloc(1, sizeof *f);
	const char *url = j->url, *key = j->api_key;
	char *url_own = NULL, *key_own = NULL;
	int stream = d->kind == LH_STEP_LLM && (d->stream >= 0 ? d->stream : j->stream);
	if (j->mode != J_RUNNING || j->eng->stopping) {
		/* Stopping: what finished is staged; the rest waits for a resume. */
		lh_free(f);
		lh_buf_release(body);
		release(pi);
		return STEP_GONE;
	}
	f->pi = pi;
	f->item = pi->item;
	f->body = *body;
	lh_buf_init(body, 0);
	memcpy(f->hash, pi->hash, sizeof f->hash);
	if (d->base_url) {
		struct lh_buf u;
		lh_buf_init(&u, 0);
		if (lh_llm_resolve_url(d->base_url, "/v1/chat/completions", &u) == 0)
			url = url_own = lh_buf_steal(&u);
		lh_buf_release(&u);
	}
	if (d->api_key_env) {
		const char *v = getenv(d->api_key_env);
		key_own = v ? lh_xstrdup(v) : NULL;
		key = key_own;
	}
	pi->lent = 1;
	pi->step_started = pi->step_started > 0 ? pi->step_started : lh_wall();
	if (eng_send(j, f, url, key, f->body.data, f->body.len, stream) != 0) {
		pi->lent = 0;
		lh_buf_release(&f->body);
		lh_free(f);
		lh_free(url_own);
		lh_free(key_own);
		release(pi);
		return STEP_GONE;
	}
	lh_free(url_own);
	lh_free(key_own);
	return STEP_ASYNC;
}

static int llm_step(struct pitem *pi)
{
	struct ejob *j = pi->job;
	json_t *msgs;
	struct lh_buf body;
	struct lh_answer a;
	struct jrow *row;
	struct lh_err e;
	pi->model = lh_step_model(j->pipe, pi->k, j->pipe_model);
	if (lh_step_messages(j->pipe, pi->k, pi->ctx, &msgs, &e)) {
		fail(pi, "template_error", e.msg, 0);
		return STEP_GONE;
	}
	lh_buf_init(&body, 0);
	if (lh_step_body(j->pipe, pi->k, pi->model, j->stream, msgs, &body)) {
		json_decref(msgs);
		lh_buf_release(&body);
		fail(pi, "request_too_large", "the step's request is too large", 0);
		return STEP_GONE;
	}
	json_decref(msgs);
	lh_sha256_hex(body.data, body.len, pi->hash);
	row = find_row(pi, (int)pi->k + 1, 0, pi->hash);
	if (row && lh_answer_read(row->response, row->len, 0, &a, &e) == 0) {
		lh_buf_release(&body);
		step_done(pi, a.content ? a.content : "", a.content ? strlen(a.content) : 0, row->pt, row->ct,
			  row->attempt, row->started, row->ended, row->model, a.finish_reason);
		lh_answer_release(&a);
		return STEP_NEXT;
	}
	pi->step_started = 0;
	return send(pi, &body);
}

/* ---- loops ---- */

static size_t messages_bytes(const json_t *m)
{
	char *s = json_dumps(m, JSON_COMPACT);
	size_t n = s ? strlen(s) : 0;
	free(s);
	return n;
}

/* Appends the current answer's tool results so far and runs the next
 * tool, or ends the turn. */
static int tools_next(struct pitem *pi)
{
	const struct lh_step_def *d = cur(pi);
	while (pi->tool_i < json_array_size(pi->ans.tool_calls)) {
		json_t *call = json_array_get(pi->ans.tool_calls, pi->tool_i);
		const char *args, *id;
		int t = lh_loop_tool(d, call, &args, &id);
		struct lh_err e;
		char msg[256];
		if (t < 0) {
			const char *name = json_string_value(json_object_get(json_object_get(call, "function"), "name"));
			snprintf(msg, sizeof msg, "error: there is no tool named \"%.100s\"", name ? name : "");
			json_array_append_new(pi->delta, lh_loop_tool_message(id, msg, strlen(msg)));
			pi->tool_i++;
			continue;
		}
		lh_argv_free(pi->argv);
		pi->argv = NULL;
		if (lh_step_argv(pi->job->pipe, pi->k, pi->ctx, &d->tools[t].cmd, &pi->argv, &e)) {
			snprintf(msg, sizeof msg, "error: %.200s", e.msg);
			json_array_append_new(pi->delta, lh_loop_tool_message(id, msg, strlen(msg)));
			pi->tool_i++;
			continue;
		}
		lh_buf_clear(&pi->in);
		if (lh_buf_puts(&pi->in, args)) {
			snprintf(msg, sizeof msg, "error: the call's arguments are too large");
			json_array_append_new(pi->delta, lh_loop_tool_message(id, msg, strlen(msg)));
			pi->tool_i++;
			continue;
		}
		pi->is_tool = 1;
		pi->tool_id = id;
		pi->timeout = d->tools[t].timeout;
		exec_start(pi);
		return STEP_ASYNC;
	}
	return STEP_TURN;
}

/* Stages the current turn's row with the delta so far. */
static void stage_turn(struct pitem *pi, int finished)
{
	char *delta = pi->delta ? json_dumps(pi->delta, JSON_COMPACT) : NULL;
	stage_row(pi, "loop", pi->raw, pi->raw_len, pi->raw_status, pi->ans.prompt_tokens, pi->ans.completion_tokens,
		  pi->raw_started, 0, pi->raw_ended, delta, finished);
	free(delta);
}

/* After a turn's answer (fresh: just received; else replayed with its
 * stored delta). */
static int turn_answer(struct pitem *pi, int fresh, const char *stored_delta)
{
	const struct lh_step_def *d = cur(pi);
	enum lh_loop_next next = lh_loop_decide(d, &pi->ans);
	json_t *stored = stored_delta ? json_loads(stored_delta, 0, NULL) : NULL;
	int att = pi->item.attempts + 1;
	size_t i;
	json_t *m;
	if (pi->ans.prompt_tokens > 0)
		pi->step_pt += pi->ans.prompt_tokens;
	if (pi->ans.completion_tokens > 0)
		pi->step_ct += pi->ans.completion_tokens;
	if (pi->ans.message)
		json_array_append(pi->messages, pi->ans.message);
	else
		json_array_append_new(pi->messages, json_pack("{s:s,s:s}", "role", "assistant", "content", ""));
	json_decref(pi->delta);
	pi->delta = json_array();
	if (next == LH_LOOP_DONE) {
		const char *c = pi->ans.content ? pi->ans.content : "";
		json_decref(stored);
		if (fresh) {
			stage_turn(pi, 1);
			pi->item.attempts = 0;
		}
		step_done(pi, c, strlen(c), pi->step_pt, pi->step_ct, att, pi->step_started, lh_wall(), pi->model,
			  pi->ans.finish_reason);
		return STEP_NEXT;
	}
	if (next == LH_LOOP_CONTINUE) {
		json_decref(stored);
		json_array_append_new(pi->delta, json_pack("{s:s,s:s}", "role", "user", "content", d->next));
		if (fresh) {
			stage_turn(pi, 0);
			pi->item.attempts = 0;
		}
		return STEP_TURN; /* turn_end adds the delta to the conversation */
	}
	/* Tools: those already answered (a replayed turn) are taken as they are. */
	if (json_is_array(stored))
		json_array_foreach(stored, i, m)
			if (i < json_array_size(pi->ans.tool_calls))
				json_array_append(pi->delta, m);
	json_decref(stored);
	pi->tool_i = json_array_size(pi->delta);
	if (fresh) {
		stage_turn(pi, 0);
		pi->item.attempts = 0;
	}
	return tools_next(pi);
}

/* The turn's tools have all answered: their messages join the context. */
static void turn_end(struct pitem *pi)
{
	size_t i;
	json_t *m;
	json_array_foreach(pi->delta, i, m)
		json_array_append(pi->messages, m);
}

static int loop_turns(struct pitem *pi)
{
	struct ejob *j = pi->job;
	const struct lh_step_def *d = cur(pi);
	struct lh_err e;
	for (;;) {
		struct lh_buf body;
		struct jrow *row;
		int r;
		char msg[256];
		if (pi->turn >= d->max_turns) {
			snprintf(msg, sizeof msg, "loop step %s reached max_turns (%d) without ending", d->id,
				 d->max_turns);
			fail(pi, "max_turns_exceeded", msg, 0);
			return STEP_GONE;
		}
		lh_buf_init(&body, 0);
		if (lh_step_body(j->pipe, pi->k, pi->model, 0, pi->messages, &body) ||
		    body.len > d->max_context_bytes) {
			snprintf(msg, sizeof msg,
				 "loop step %s: the conversation at turn %d is %zu bytes, over max_context_bytes (%zu)",
				 d->id, pi->turn + 1, body.len > d->max_context_bytes ? body.len : messages_bytes(pi->messages),
				 d->max_context_bytes);
			lh_buf_release(&body);
			fail(pi, "context_too_large", msg, 0);
			return STEP_GONE;
		}
		lh_sha256_hex(body.data, body.len, pi->hash);
		row = find_row(pi, (int)pi->k + 1, pi->turn, pi->hash);
		if (!row)
			return send(pi, &body);
		lh_answer_release(&pi->ans);
		if (lh_answer_read(row->response, row->len, 1, &pi->ans, &e))
			return send(pi, &body); /* not an answer after all: ask again */
		lh_buf_release(&body);
		lh_free(pi->raw);
		pi->raw = lh_xstrndup(row->response, row->len);
		pi->raw_len = row->len;
		pi->raw_status = row->status;
		pi->raw_started = row->started;
		pi->raw_ended = row->ended;
		if (pi->turn == 0 && row->started > 0)
			pi->step_started = row->started;
		r = turn_answer(pi, 0, row->delta);
		if (r != STEP_TURN)
			return r;
		turn_end(pi);
		pi->turn++;
	}
}

static int loop_step(struct pitem *pi)
{
	struct ejob *j = pi->job;
	struct lh_err e;
	pi->model = lh_step_model(j->pipe, pi->k, j->pipe_model);
	json_decref(pi->messages);
	if (lh_step_messages(j->pipe, pi->k, pi->ctx, &pi->messages, &e)) {
		pi->messages = NULL;
		fail(pi, "template_error", e.msg, 0);
		return STEP_GONE;
	}
	pi->turn = 0;
	pi->step_pt = pi->step_ct = 0;
	pi->step_started = lh_wall();
	return loop_turns(pi);
}

int pipe_answer(struct inflight *f, const struct lh_llm_result *res)
{
	struct pitem *pi = f->pi;
	const struct lh_step_def *d;
	struct lh_err e;
	int r;
	if (res->outcome != LH_LLM_OK && res->outcome != LH_LLM_CANCELLED)
		return 0; /* the dispatcher's error handling takes f->item */
	pi->item = f->item;
	memset(&f->item, 0, sizeof f->item);
	pi->lent = 0;
	if (res->outcome == LH_LLM_CANCELLED) {
		release(pi);
		return 1;
	}
	d = cur(pi);
	lh_answer_release(&pi->ans);
	if (lh_answer_read(res->body, res->body_len, d->kind == LH_STEP_LOOP, &pi->ans, &e)) {
		fail(pi, "invalid_answer", e.msg, res->status);
		return 1;
	}
	if (pi->ans.prompt_tokens < 0)
		pi->ans.prompt_tokens = res->prompt_tokens;
	if (pi->ans.completion_tokens < 0)
		pi->ans.completion_tokens = res->completion_tokens;
	if (pi->ans.prompt_tokens > 0)
		pi->new_ptok += pi->ans.prompt_tokens;
	if (pi->ans.completion_tokens > 0)
		pi->new_ctok += pi->ans.completion_tokens;
	if (d->kind == LH_STEP_LLM) {
		const char *c = pi->ans.content ? pi->ans.content : "";
		stage_row(pi, "llm", res->body, res->body_len, res->status, pi->ans.prompt_tokens,
			  pi->ans.completion_tokens, res->started_at, res->first_byte_at, res->ended_at, NULL, 1);
		step_done(pi, c, strlen(c), pi->ans.prompt_tokens, pi->ans.completion_tokens, pi->item.attempts + 1,
			  res->started_at, res->ended_at, pi->model, pi->ans.finish_reason);
		pi->item.attempts = 0;
		advance(pi);
		return 1;
	}
	lh_free(pi->raw);
	pi->raw = lh_xstrndup(res->body, res->body_len);
	pi->raw_len = res->body_len;
	pi->raw_status = res->status;
	pi->raw_started = res->started_at;
	pi->raw_ended = res->ended_at;
	r = turn_answer(pi, 1, NULL);
	if (r == STEP_TURN) {
		turn_end(pi);
		pi->turn++;
		r = loop_turns(pi);
	}
	if (r == STEP_NEXT)
		advance(pi);
	return 1;
}

/* ---- commands and tools ---- */

static int is_secret(const char *entry, const char *key)
{
	const char *eq = strchr(entry, '=');
	if (!eq)
		return 0;
	if (key && *key && !strcmp(eq + 1, key))
		return 1;
	return !strncmp(entry, "OPENAI_API_KEY=", 15) || !strncmp(entry, "LONGHAUL_API_KEY=", 17) ||
	       !strncmp(entry, "ANTHROPIC_API_KEY=", 18) || !strncmp(entry, "LONGHAUL_TOKEN=", 15);
}

static void on_exec(struct lh_proc *p, const struct lh_proc_result *r, void *arg);

static void exec_slot_free(struct ejob *j)
{
	j->exec_running--;
	while (j->exec_wait_head && j->exec_running < j->exec_cap) {
		struct pitem *q = j->exec_wait_head;
		j->exec_wait_head = q->qnext;
		if (!j->exec_wait_head)
			j->exec_wait_tail = NULL;
		q->qnext = NULL;
		q->queued = 0;
		exec_start(q);
	}
}

/* Spawns pi->argv with pi->in on stdin, or queues it for an exec slot. */
static void exec_start(struct pitem *pi)
{
	struct ejob *j = pi->job;
	const struct lh_step_def *d = cur(pi);
	struct lh_proc_opts o;
	struct lh_err e;
	const char **drop;
	char env_job[48], env_item[LH_MAX_KEY + 16], env_step[96], env_att[48];
	const char *add[5];
	size_t n = 0, nd = 0;
	if (j->mode != J_RUNNING || j->eng->stopping) {
		release(pi); /* stopping: nothing new starts */
		return;
	}
	if (j->exec_running >= j->exec_cap) {
		pi->queued = 1;
		if (j->exec_wait_tail)
			j->exec_wait_tail->qnext = pi;
		else
			j->exec_wait_head = pi;
		j->exec_wait_tail = pi;
		return;
	}
	for (char **en = environ; en && *en; en++)
		n++;
	drop = lh_xcalloc(n + 1, sizeof *drop);
	for (char **en = environ; en && *en; en++)
		if (is_secret(*en, j->api_key))
			drop[nd++] = lh_xstrndup(*en, (size_t)(strchr(*en, '=') - *en));
	snprintf(env_job, sizeof env_job, "LONGHAUL_JOB=%lld", (long long)j->id);
	snprintf(env_item, sizeof env_item, "LONGHAUL_ITEM=%s", pi->item.key);
	snprintf(env_step, sizeof env_step, "LONGHAUL_STEP=%s", d->id);
	snprintf(env_att, sizeof env_att, "LONGHAUL_ATTEMPT=%d", pi->item.attempts + 1);
	add[0] = env_job;
	add[1] = env_item;
	add[2] = env_step;
	add[3] = env_att;
	add[4] = NULL;
	memset(&o, 0, sizeof o);
	o.argv = (const char *const *)pi->argv;
	o.env_drop = drop;
	o.env_add = add;
	o.cwd = j->pipe->dir;
	o.stdin_data = pi->in.data;
	o.stdin_len = pi->in.len;
	o.timeout = pi->timeout;
	if (!pi->is_tool) {
		o.limits.memory = d->mem_limit;
		o.limits.cpu_seconds = d->cpu_limit;
		o.limits.open_files = d->files_limit;
	}
	j->exec_running++;
	pi->step_started = pi->is_tool ? pi->step_started : lh_wall();
	pi->proc = lh_proc_spawn(j->eng->loop, &o, on_exec, pi, &e);
	for (size_t i = 0; i < nd; i++)
		lh_free((char *)drop[i]);
	lh_free(drop);
	if (!pi->proc) {
		exec_slot_free(j);
		fail(pi, "exec_failed", e.msg, 0);
		eng_dispatch(j->eng);
	}
}

static void describe_end(const struct lh_proc_result *r, double timeout, char *msg, size_t n)
{
	int len;
	if (r->timed_out)
		len = snprintf(msg, n, "timed out after %g s", timeout);
	else if (r->too_much_output)
		len = snprintf(msg, n, "wrote more than %zu bytes to stdout", (size_t)LH_PROC_STDOUT_DEFAULT);
	else if (r->spawn_failed)
		len = snprintf(msg, n, "could not run (%s: %s)", r->failed_at ? r->failed_at : "exec",
			       strerror(r->err_no));
	else if (r->signo)
		len = snprintf(msg, n, "killed by signal %d", r->signo);
	else
		len = snprintf(msg, n, "exited with status %d", r->status);
	if (len > 0 && (size_t)len < n && r->err_len)
		snprintf(msg + len, n - (size_t)len, ": %.*s", (int)r->err_len, r->err_tail);
}

static void tool_done(struct pitem *pi, const struct lh_proc_result *r)
{
	char msg[4200];
	int rc;
	if (r->exited && r->status == 0 && !r->too_much_output) {
		json_array_append_new(pi->delta, lh_loop_tool_message(pi->tool_id, r->out, r->out_len));
	} else {
		int len = snprintf(msg, sizeof msg, "error: the tool ");
		describe_end(r, pi->timeout, msg + len, sizeof msg - (size_t)len);
		json_array_append_new(pi->delta, lh_loop_tool_message(pi->tool_id, msg, strlen(msg)));
	}
	pi->tool_i++;
	stage_turn(pi, 0);
	rc = tools_next(pi);
	if (rc == STEP_TURN) {
		turn_end(pi);
		pi->turn++;
		rc = loop_turns(pi);
	}
	if (rc == STEP_NEXT)
		advance(pi);
}

static void on_exec(struct lh_proc *p, const struct lh_proc_result *r, void *arg)
{
	struct pitem *pi = arg;
	struct ejob *j = pi->job;
	struct lh_engine *eng = j->eng;
	char msg[4400], code[32];
	(void)p;
	pi->proc = NULL;
	exec_slot_free(j);
	/* A command that ended on its own while the job stops still counts:
	 * its result is journaled, and the item stops after it (advance). */
	if (r->killed) {
		release(pi);
	} else if (pi->is_tool) {
		/* A tool's failure is the model's to read, never the item's. */
		tool_done(pi, r);
	} else if (r->exited && r->status == 0 && !r->too_much_output) {
		json_t *s = json_stringn(r->out, r->out_len);
		if (!s) {
			fail(pi, "invalid_output", "the command's output is not UTF-8 text", 0);
		} else {
			json_decref(s);
			stage_row(pi, "exec", r->out, r->out_len, 0, 0, 0, pi->step_started, 0, lh_wall(), NULL, 1);
			step_done(pi, r->out, r->out_len, 0, 0, pi->item.attempts + 1, pi->step_started, lh_wall(), NULL,
				  NULL);
			pi->item.attempts = 0;
			advance(pi);
		}
	} else {
		describe_end(r, pi->timeout, msg, sizeof msg);
		if (r->timed_out || (r->exited && r->status == 75)) {
			transient(pi, r->timed_out ? "exec_timeout" : "exec_tempfail", msg);
		} else {
			if (r->too_much_output)
				snprintf(code, sizeof code, "output_too_large");
			else if (r->spawn_failed)
				snprintf(code, sizeof code, "exec_failed");
			else if (r->signo)
				snprintf(code, sizeof code, "exec_signal");
			else
				snprintf(code, sizeof code, "exit_%d", r->status);
			fail(pi, code, msg, 0);
		}
	}
	eng_dispatch(eng);
}

static int exec_step(struct pitem *pi)
{
	struct ejob *j = pi->job;
	const struct lh_step_def *d = cur(pi);
	struct lh_err e;
	struct jrow *row;
	lh_argv_free(pi->argv);
	pi->argv = NULL;
	lh_buf_clear(&pi->in);
	pi->is_tool = 0;
	pi->timeout = d->timeout;
	pi->model = NULL;
	if (lh_step_argv(j->pipe, pi->k, pi->ctx, &d->cmd, &pi->argv, &e) ||
	    (d->stdin_t && lh_step_render(j->pipe, pi->k, pi->ctx, d->stdin_t, &pi->in, &e))) {
		fail(pi, "template_error", e.msg, 0);
		return STEP_GONE;
	}
	lh_step_exec_hash(d, pi->argv, pi->in.data, pi->in.len, pi->hash);
	row = find_row(pi, (int)pi->k + 1, 0, pi->hash);
	if (row) {
		step_done(pi, row->response, row->len, 0, 0, row->attempt, row->started, row->ended, NULL, NULL);
		return STEP_NEXT;
	}
	exec_start(pi);
	return STEP_ASYNC;
}

/* ---- approvals ---- */

static int approve_step(struct pitem *pi)
{
	struct ejob *j = pi->job;
	const struct lh_step_def *d = cur(pi);
	struct lh_buf q;
	struct lh_err e;
	struct lh_sha256_ctx h;
	struct jrow *row;
	struct lh_commit_op *op;
	json_t *resp, *dec;
	lh_buf_init(&q, 0);
	if (lh_step_render(j->pipe, pi->k, pi->ctx, d->question, &q, &e)) {
		lh_buf_release(&q);
		fail(pi, "template_error", e.msg, 0);
		return STEP_GONE;
	}
	lh_sha256_init(&h);
	lh_sha256_update(&h, "approve", 8);
	lh_sha256_update(&h, q.data ? q.data : "", q.len);
	lh_sha256_final_hex(&h, pi->hash);
	row = find_row(pi, (int)pi->k + 1, 0, pi->hash);
	resp = row ? json_loadb(row->response, row->len, 0, NULL) : NULL;
	dec = json_object_get(resp, "decision");
	if (json_is_string(dec) && !strcmp(json_string_value(dec), "approved")) {
		const char *note = json_string_value(json_object_get(resp, "note"));
		const char *out = note && *note ? note : "approved";
		step_done(pi, out, strlen(out), 0, 0, 1, row->started, row->ended, NULL, NULL);
		json_decref(resp);
		lh_buf_release(&q);
		return STEP_NEXT;
	}
	json_decref(resp);
	/* Ask: the item waits, holding no lease and no slot. */
	resp = json_pack("{s:s%,s:n}", "question", q.data ? q.data : "", q.len, "decision");
	op = eng_new_op(j);
	op->kind = LH_OP_WAIT;
	op->seq = pi->item.seq;
	op->fence = pi->item.fence;
	op->attempts = 1;
	op->response = json_dumps(resp, JSON_COMPACT);
	op->response_len = op->response ? strlen(op->response) : 0;
	memcpy(op->request_hash, pi->hash, sizeof op->request_hash);
	op->started_at = lh_wall();
	op->step = (int)pi->k + 1;
	op->pointer = (int)pi->k;
	op->row_kind = lh_xstrdup("approve");
	op->key = lh_xstrdup(pi->item.key);
	op->event_type = lh_xstrdup("item.waiting");
	json_decref(resp);
	resp = json_pack("{s:s,s:s%}", "step", d->id, "question", q.data ? q.data : "", q.len);
	op->event_data = json_dumps(resp, JSON_COMPACT);
	json_decref(resp);
	lh_buf_release(&q);
	pi_free(pi);
	return STEP_GONE;
}

/* ---- the walk ---- */

static void advance(struct pitem *pi)
{
	struct ejob *j = pi->job;
	for (;;) {
		int r = STEP_GONE;
		if (j->mode != J_RUNNING || j->eng->stopping) {
			release(pi);
			return;
		}
		if (pi->k >= j->pipe->n) {
			finish(pi);
			return;
		}
		if (j->pipe->item_timeout > 0 && lh_wall() - pi->first_started > j->pipe->item_timeout) {
			char msg[160];
			snprintf(msg, sizeof msg, "the item ran out of its time (timeouts.item: %g s)", j->pipe->item_timeout);
			fail(pi, "item_timeout", msg, 0);
			return;
		}
		switch (cur(pi)->kind) {
		case LH_STEP_LLM:
			r = llm_step(pi);
			break;
		case LH_STEP_LOOP:
			r = loop_step(pi);
			break;
		case LH_STEP_EXEC:
			r = exec_step(pi);
			break;
		case LH_STEP_APPROVE:
			r = approve_step(pi);
			break;
		}
		if (r != STEP_NEXT)
			return;
	}
}

void pipe_cancel_job(struct ejob *j)
{
	struct pitem *pi = j->pitems, *next;
	/* Queued for an exec slot: they leave now. */
	while (j->exec_wait_head) {
		struct pitem *q = j->exec_wait_head;
		j->exec_wait_head = q->qnext;
		q->queued = 0;
		release(q);
	}
	j->exec_wait_tail = NULL;
	for (; pi; pi = next) {
		next = pi->next;
		if (pi->proc)
			lh_proc_kill(pi->proc); /* on_exec releases it */
	}
}

void pipe_job_free(struct ejob *j)
{
	lh_pipeline_free(j->pipe);
	j->pipe = NULL;
	lh_free(j->pipe_model);
	lh_free(j->steps_done);
	lh_free(j->step_cost);
	lh_free(j->loop_turns);
	lh_free(j->loops_ended);
	lh_free(j->step_ids);
}
