/*
 * engine layer: the multi-job engine (see engine.h).
 */
#include "engine/engine.h"
#include "engine/engine_internal.h"
#include "engine/checkpointer.h"
#include "engine/jobstate.h"
#include "engine/lane.h"
#include "engine/progress.h"
#include "util/buf.h"
#include "util/hash.h"
#include "util/log.h"
#include "util/mem.h"
#include "util/rand.h"
#include "util/time.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Run-level permanent errors (a wrong key, a wrong model, no quota): the
 * first EARLY_STOP_N of them before any success stop the job instead of
 * failing every item. */
#define RATE_EVERY 1.0 /* seconds between rate writes to the store */
/* Probes of a server that a job waits for: the first after 0.25 s, each
 * next twice as late, at most 5 s apart, so a server that comes up is
 * found within seconds without a storm of connects meanwhile. */
#define WAIT_BACKOFF_MIN 0.25
#define WAIT_BACKOFF_MAX 5.0

static void check_job_end(struct ejob *j);

/* ---- small helpers ---- */

double eng_mono(void)
{
	return lh_mono();
}

static struct ejob *find_job(struct lh_engine *eng, int64_t id)
{
	for (struct ejob *j = eng->jobs; j; j = j->next)
		if (j->id == id)
			return j;
	return NULL;
}

static void ready_push(struct ejob *j, struct lh_claimed *c)
{
	if (j->rlen == j->rcap) {
		size_t ncap = j->rcap ? j->rcap * 2 : 64;
		struct lh_claimed *n = lh_xmalloc(ncap * sizeof *n);
		for (size_t i = 0; i < j->rlen; i++)
			n[i] = j->ready[(j->rhead + i) % j->rcap];
		lh_free(j->ready);
		j->ready = n;
		j->rcap = ncap;
		j->rhead = 0;
	}
	j->ready[(j->rhead + j->rlen) % j->rcap] = *c;
	j->rlen++;
}

static int ready_pop(struct ejob *j, struct lh_claimed *out)
{
	if (!j->rlen)
		return 0;
	*out = j->ready[j->rhead];
	j->rhead = (j->rhead + 1) % j->rcap;
	j->rlen--;
	return 1;
}

char *eng_error_json(const char *code, const char *message, int status, const char *body, size_t body_len)
{
	json_t *o = json_object(), *b = NULL;
	char *s;
	json_object_set_new(o, "code", json_string(code ? code : "error"));
	json_object_set_new(o, "message", json_string(message ? message : ""));
	if (status > 0)
		json_object_set_new(o, "status", json_integer(status));
	if (body && body_len) {
		b = json_loadb(body, body_len, 0, NULL);
		if (!b)
			b = json_stringn(body, body_len > 4096 ? 4096 : body_len);
		if (b)
			json_object_set_new(o, "body", b);
	}
	s = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	return s ? s : lh_xstrdup("{}");
}

/* ---- staging ---- */

/* Every op of a job is counted until its transaction comes back, so that a
 * job leaves only after its last result is durable. */
struct lh_commit_op *eng_new_op(struct ejob *j)
{
	struct lh_commit_op *op = lh_committer_op(j->eng->com);
	op->job = j->id;
	j->pending_ops++;
	return op;
}

void eng_stage_release(struct ejob *j, struct lh_claimed *c)
{
	struct lh_commit_op *op = eng_new_op(j);
	op->kind = LH_OP_RELEASE;
	op->job = j->id;
	op->seq = c->seq;
	op->fence = c->fence;
	lh_claimed_release(c);
}

void eng_stage_dead(struct ejob *j, struct lh_claimed *c, int attempts, int status, char *error,
		       const char *code, const char *message)
{
	struct lh_commit_op *op = eng_new_op(j);
	json_t *d;
	op->kind = LH_OP_DEAD;
	op->job = j->id;
	op->seq = c->seq;
	op->fence = c->fence;
	op->attempts = attempts;
	op->status = status;
	op->error = error;
	op->key = lh_xstrdup(c->key);
	op->event_type = lh_xstrdup("item.failed");
	d = json_pack("{s:i, s:s, s:s, s:i}", "attempts", attempts, "code", code ? code : "error", "message",
		      message ? message : "", "status", status);
	op->event_data = d ? json_dumps(d, JSON_COMPACT) : NULL;
	json_decref(d);
	lh_claimed_release(c);
}

static void flush_held(struct ejob *j, int as_dead)
{
	for (int i = 0; i < j->nheld; i++) {
		struct held *h = &j->held[i];
		/* A server that could not be reached failed nothing: retry those. */
		if (as_dead && !(h->code && !strcmp(h->code, "connect_error")))
			eng_stage_dead(j, &h->item, h->item.attempts + 1, h->status, h->error, h->code, h->message);
		else {
			eng_stage_release(j, &h->item);
			lh_free(h->error);
		}
		lh_free(h->code);
		lh_free(h->message);
		memset(h, 0, sizeof *h);
	}
	j->nheld = 0;
}

static void release_ready(struct ejob *j)
{
	struct lh_claimed c;
	while (ready_pop(j, &c))
		eng_stage_release(j, &c);
}

static void cancel_job_inflight(struct ejob *j)
{
	/* Each cancel runs its callback, which unlinks the entry. */
	while (j->inflight)
		lh_llm_cancel(j->inflight->req);
	if (j->pipe)
		pipe_cancel_job(j);
}

/* Moves a job to draining: no more dispatch; it leaves once nothing of it
 * is in flight and its last ops are committed. */
void eng_drain_job(struct ejob *j, enum lh_job_end how, const char *msg)
{
	if (j->mode != J_RUNNING)
		return;
	j->mode = J_DRAINING;
	j->end_how = how;
	lh_free(j->end_msg);
	j->end_msg = msg ? lh_xstrdup(msg) : NULL;
	release_ready(j);
	if (j->nheld)
		flush_held(j, how == LH_END_STOPPED ? 0 : 1);
}

/* ---- dispatch ---- */

static void on_answer(struct lh_llm_req *req, const struct lh_llm_result *res, void *arg);

void eng_arm_retry(struct ejob *j, double delay)
{
	double due = eng_mono() + (delay > 0 ? delay : 0);
	if (lh_timer_active(j->t_retry) && j->retry_due <= due)
		return;
	j->retry_due = due;
	lh_timer_start(j->t_retry, (int64_t)((delay > 0 ? delay : 0) * 1000) + 1);
}

/* Sets the job's per-body fields (a batch job's model override, changed
 * max_tokens or temperature) into the JSON text in[0..n) and writes the
 * result into out. Only jobs whose settings say so pay for the parse. */
static int apply_fields(struct ejob *j, const char *in, size_t n, struct lh_buf *out)
{
	json_t *o = json_loadb(in, n, 0, NULL), *v;
	const char *k;
	char *s;
	int rc = 0;
	if (!json_is_object(o)) {
		json_decref(o);
		return LH_EINPUT;
	}
	if (j->model)
		json_object_set_new(o, "model", json_string(j->model));
	json_object_foreach(j->overrides, k, v) {
		if (json_is_null(v))
			json_object_del(o, k);
		else
			json_object_set(o, k, v);
	}
	s = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(17));
	json_decref(o);
	if (!s)
		return LH_ENOMEM;
	lh_buf_clear(out);
	if (lh_buf_puts(out, s))
		rc = LH_ETOOBIG;
	free(s);
	return rc;
}

static int build_body(struct ejob *j, struct inflight *f, const char **body, size_t *len)
{
	const struct lh_claimed *c = &f->item;
	int rc;
	if (j->prefix) {
		if (c->input_len < 2 || c->input[0] != '{')
			return LH_EINPUT;
		lh_buf_clear(&f->body);
		if (lh_buf_append(&f->body, j->prefix, j->prefix_len) ||
		    lh_buf_append(&f->body, c->input + 1, c->input_len - 1))
			return LH_ETOOBIG;
		if (j->overrides) {
			struct lh_buf t = f->body;
			lh_buf_init(&f->body, 0);
			rc = apply_fields(j, t.data, t.len, &f->body);
			lh_buf_release(&t);
			if (rc)
				return rc;
		}
	} else if (j->model || j->overrides) {
		rc = apply_fields(j, c->input, c->input_len, &f->body);
		if (rc)
			return rc;
	} else {
		*body = c->input;
		*len = c->input_len;
		return 0;
	}
	*body = f->body.data;
	*len = f->body.len;
	return 0;
}

void eng_unlink(struct ejob *j, struct inflight *f)
{
	if (f->prev)
		f->prev->next = f->next;
	else
		j->inflight = f->next;
	if (f->next)
		f->next->prev = f->prev;
	f->prev = f->next = NULL;
}

int eng_send(struct ejob *j, struct inflight *f, const char *url, const char *api_key, const char *body,
	     size_t len, int stream)
{
	struct lh_engine *eng = j->eng;
	struct lh_llm_call call;
	struct lh_err e;
	memset(&call, 0, sizeof call);
	call.url = url;
	call.api_key = api_key;
	call.body = body;
	call.body_len = len;
	call.stream = stream; /* the flavour also reads the body */
	call.request_timeout_ms = j->timeout_ms;
	call.first_token_timeout_ms = j->ftt_ms;
	call.connect_timeout_ms = j->connect_ms;
	f->job = j;
	f->prev = NULL;
	f->next = j->inflight;
	if (j->inflight)
		j->inflight->prev = f;
	j->inflight = f;
	j->lane->in_flight++;
	/* A pipeline item holds its job's slot for all its steps (pipeline.c). */
	if (!f->pi) {
		j->n_inflight++;
		eng->n_inflight++;
	}
	f->req = lh_llm_send(eng->llm, &call, on_answer, f, &e);
	if (!f->req) {
		eng_unlink(j, f);
		j->lane->in_flight--;
		if (!f->pi) {
			j->n_inflight--;
			eng->n_inflight--;
		}
		lh_log_err(&e);
		return -1;
	}
	return 0;
}

static void send_one(struct ejob *j, struct lh_claimed *c)
{
	struct inflight *f = lh_xcalloc(1, sizeof *f);
	const char *body;
	size_t len;
	f->job = j;
	f->item = *c;
	lh_buf_init(&f->body, 0);
	if (build_body(j, f, &body, &len) != 0) {
		const char *m = "the stored request body is not valid JSON";
		eng_stage_dead(j, &f->item, f->item.attempts + 1, 0, eng_error_json("invalid_body", m, 0, NULL, 0),
			   "invalid_body", m);
		lh_buf_release(&f->body);
		lh_free(f);
		return;
	}
	lh_sha256_hex(body, len, f->hash);
	if (eng_send(j, f, j->url, j->api_key, body, len, j->stream) != 0) {
		eng_stage_release(j, &f->item);
		lh_buf_release(&f->body);
		lh_free(f);
	}
}

static int job_can_send(struct ejob *j, double now)
{
	long cap = j->cap > 0 ? j->cap : j->eng->o.concurrency;
	return j->mode == J_RUNNING && j->rlen && (long)j->n_inflight < cap && lh_lane_open(j->lane, now);
}

static void want_claims(struct lh_engine *eng)
{
	for (struct ejob *j = eng->jobs; j; j = j->next) {
		if (j->mode != J_RUNNING || j->claim_outstanding || j->claim_dry || j->rlen >= j->claim_batch * 3 / 4)
			continue;
		lh_committer_want_claim(eng->com, j->id, j->claim_batch - j->rlen);
		j->claim_outstanding = 1;
	}
}

/* Picks the next job to send for: the highest priority that can send;
 * among equals, the next one after the last served (round robin). */
static struct ejob *pick(struct lh_engine *eng, double now)
{
	struct ejob *best = NULL;
	size_t i = 0, best_dist = (size_t)-1;
	for (struct ejob *j = eng->jobs; j; j = j->next, i++) {
		size_t dist;
		if (!job_can_send(j, now))
			continue;
		dist = (i + eng->njobs - eng->rr) % (eng->njobs ? eng->njobs : 1);
		if (!best || j->priority > best->priority || (j->priority == best->priority && dist < best_dist)) {
			best = j;
			best_dist = dist;
		}
	}
	return best;
}

static size_t job_index(struct lh_engine *eng, struct ejob *t)
{
	size_t i = 0;
	for (struct ejob *j = eng->jobs; j; j = j->next, i++)
		if (j == t)
			return i;
	return 0;
}

void eng_dispatch(struct lh_engine *eng)
{
	double now = eng_mono(), soonest = 0;
	struct lh_claimed c;
	if (eng->in_dispatch)
		return;
	eng->in_dispatch = 1;
	while (!eng->stopping && (long)eng->n_inflight < eng->o.concurrency) {
		struct ejob *j = pick(eng, now);
		if (!j || !ready_pop(j, &c))
			break;
		eng->rr = (job_index(eng, j) + 1) % (eng->njobs ? eng->njobs : 1);
		if (j->pipe)
			pipe_start(j, &c);
		else
			send_one(j, &c);
	}
	if (!eng->stopping) {
		want_claims(eng);
		/* A paused lane with work waiting: come back when it reopens. */
		for (struct ejob *j = eng->jobs; j; j = j->next)
			if (j->mode == J_RUNNING && j->rlen && now < j->lane->paused_until &&
			    (!soonest || j->lane->paused_until < soonest))
				soonest = j->lane->paused_until;
		if (soonest && !lh_timer_active(eng->t_lane))
			lh_timer_start(eng->t_lane, (int64_t)((soonest - now) * 1000) + 1);
	}
	eng->in_dispatch = 0;
}

static int is_connect_error(const struct lh_llm_result *res)
{
	return res->outcome == LH_LLM_TRANSIENT && res->error_code && !strcmp(res->error_code, "connect_error");
}

/* A short reason why a server could not be reached, for people:
 * "connection refused", "could not resolve the host name", ... */
static void unreachable_why(const struct lh_llm_result *res, char *out, size_t n)
{
	if (res->os_errno > 0)
		snprintf(out, n, "%s", strerror(res->os_errno));
	else if (res->error_message && strcasestr(res->error_message, "resolve"))
		snprintf(out, n, "could not resolve the host name");
	else
		snprintf(out, n, "%s", res->error_code ? res->error_code : "could not connect");
	if (out[0] >= 'A' && out[0] <= 'Z')
		out[0] = (char)(out[0] - 'A' + 'a');
}

static int job_waiting(const struct ejob *j)
{
	return j->wait_started > 0 && !j->wait_over;
}

/* Whether a failed connect of a job that never reached its server should
 * wait for it (it may still be starting) instead of counting towards an
 * early stop. The wait starts at the first such failure and lasts
 * wait_for_server seconds. */
static int wait_for_server(struct ejob *j, const struct lh_llm_result *res)
{
	struct lh_engine *eng = j->eng;
	double now = eng_mono();
	char why[128];
	if (j->wait_for_server <= 0 || j->wait_over)
		return 0;
	if (!j->wait_started) {
		j->wait_started = now;
		unreachable_why(res, why, sizeof why);
		if (eng->o.on_job_waiting)
			eng->o.on_job_waiting(eng->o.arg, j->id, j->url, why, 0);
	}
	if (now - j->wait_started < j->wait_for_server)
		return 1;
	/* The window passed: the early stop decides now. Its remaining
	 * probes go out side by side, so that the stop takes one round trip
	 * rather than ten in a row. */
	j->wait_over = 1;
	lh_lane_reopen(j->lane);
	return 0;
}

/* Puts a request that could not connect back in the job's queue (still
 * leased: no store write, no attempt used) and pauses the lane until the
 * next probe; one request at a time probes until the server answers. */
static void wait_again(struct ejob *j, struct inflight *f, const struct lh_llm_result *res)
{
	struct lh_engine *eng = j->eng;
	struct lh_lane *l = j->lane;
	double now = eng_mono(), left = j->wait_started + j->wait_for_server - now;
	char why[128];
	int first = j->wait_backoff <= 0;
	ready_push(j, &f->item);
	memset(&f->item, 0, sizeof f->item);
	if (now < l->paused_until)
		return; /* requests sent side by side before the first failure */
	j->wait_backoff = first ? WAIT_BACKOFF_MIN : j->wait_backoff * 2;
	if (j->wait_backoff > WAIT_BACKOFF_MAX)
		j->wait_backoff = WAIT_BACKOFF_MAX;
	l->paused_until = now + (j->wait_backoff < left ? j->wait_backoff : left);
	l->limit = 1;
	l->successes = 0;
	if (eng->o.on_job_waiting && !first) {
		unreachable_why(res, why, sizeof why);
		eng->o.on_job_waiting(eng->o.arg, j->id, j->url, why, now - j->wait_started);
	}
}

/* The server of a waiting job answered: back to full width at once (it
 * is up; the adaptive limit narrows the lane again if it must). */
static void server_reached(struct ejob *j)
{
	struct lh_engine *eng = j->eng;
	double waited = eng_mono() - j->wait_started;
	j->wait_over = 1;
	lh_lane_reopen(j->lane);
	j->lane->conn_fails = 0;
	if (eng->o.on_job_reached)
		eng->o.on_job_reached(eng->o.arg, j->id, j->url, waited);
}

static int run_level_error(const struct lh_llm_result *res)
{
	const char *c = res->error_code ? res->error_code : "";
	return res->status == 401 || res->status == 403 || res->status == 404 || !strcmp(c, "model_not_found") ||
	       !strcmp(c, "insufficient_quota") || !strcmp(c, "invalid_api_key");
}

static void hold_or_fail(struct ejob *j, struct inflight *f, const struct lh_llm_result *res, char *err)
{
	char sig[128], msg[1024];
	const char *first, *plural;
	struct held *h;
	snprintf(sig, sizeof sig, "%d:%s", res->status, res->error_code ? res->error_code : "");
	if (j->nheld && strcmp(sig, j->held_sig) != 0)
		flush_held(j, 1);
	snprintf(j->held_sig, sizeof j->held_sig, "%s", sig);
	h = &j->held[j->nheld++];
	h->item = f->item;
	h->status = res->status;
	h->error = err;
	h->code = lh_xstrdup(res->error_code);
	h->message = lh_xstrdup(res->error_message);
	memset(&f->item, 0, sizeof f->item);
	if (j->nheld < EARLY_STOP_N && j->nheld < j->total - j->done - j->dead)
		return;
	first = j->nheld == 1 ? "the only " : "the first ";
	plural = j->nheld == 1 ? "" : "s all";
	if (res->status > 0)
		snprintf(msg, sizeof msg,
			 "stopped early: %s%d request%s failed the same way (HTTP %d %s: %s); no item "
			 "was marked failed; fix the cause, then resume",
			 first, j->nheld, plural, res->status, res->error_code ? res->error_code : "error",
			 res->error_message ? res->error_message : "");
	else if (j->wait_started > 0)
		snprintf(msg, sizeof msg,
			 "stopped early: could not reach the server at %s within %g s of waiting (%s: %s); no "
			 "item was marked failed; start the server or fix the URL, then resume",
			 j->url, j->wait_for_server, res->error_code ? res->error_code : "error",
			 res->error_message ? res->error_message : "");
	else
		snprintf(msg, sizeof msg,
			 "stopped early: %s%d request%s failed the same way (%s: %s, at %s); no item "
			 "was marked failed; start the server or fix the URL, then resume",
			 first, j->nheld, plural, res->error_code ? res->error_code : "error",
			 res->error_message ? res->error_message : "", j->url);
	eng_drain_job(j, LH_END_STOPPED, msg);
	cancel_job_inflight(j);
}

void eng_stage_retry(struct ejob *j, struct lh_claimed *c, int attempts, int status, char *error,
		     const char *code, const char *message, double delay)
{
	struct lh_commit_op *op = eng_new_op(j);
	json_t *d;
	op->kind = LH_OP_RETRY;
	op->job = j->id;
	op->seq = c->seq;
	op->fence = c->fence;
	op->attempts = attempts;
	op->status = status;
	op->next_try = lh_wall() + delay;
	op->error = error;
	op->key = lh_xstrdup(c->key);
	op->event_type = lh_xstrdup("item.retry");
	d = json_pack("{s:i, s:s, s:s, s:i, s:f}", "attempt", attempts, "code", code ? code : "error", "message",
		      message ? message : "", "status", status, "delay", delay);
	op->event_data = d ? json_dumps(d, JSON_COMPACT) : NULL;
	json_decref(d);
	lh_claimed_release(c);
	eng_arm_retry(j, delay);
}

static void on_answer(struct lh_llm_req *req, const struct lh_llm_result *res, void *arg)
{
	struct inflight *f = arg;
	struct ejob *j = f->job;
	struct lh_engine *eng = j->eng;
	int attempts = f->item.attempts + 1;
	(void)req;

	eng_unlink(j, f);
	j->lane->in_flight--;
	if (!f->pi) {
		j->n_inflight--;
		eng->n_inflight--;
	}

	if (job_waiting(j) && res->outcome != LH_LLM_CANCELLED && !is_connect_error(res))
		server_reached(j);
	if (f->reduce) {
		reduce_answer(f, res);
		lh_buf_release(&f->body);
		lh_free(f);
		eng_dispatch(eng);
		return;
	}
	if (f->pi && pipe_answer(f, res)) {
		/* The pipeline took the answer (and the item back). */
		if (res->outcome == LH_LLM_OK) {
			j->successes++;
			if (j->nheld)
				flush_held(j, 1);
			lh_lane_success(j->lane);
		}
	} else if (res->outcome == LH_LLM_CANCELLED) {
		eng_stage_release(j, &f->item);
	} else if (res->outcome == LH_LLM_OK) {
		struct lh_commit_op *op = eng_new_op(j);
		op->kind = LH_OP_DONE;
		op->job = j->id;
		op->seq = f->item.seq;
		op->fence = f->item.fence;
		op->attempts = attempts;
		op->status = res->status;
		op->response = lh_xstrndup(res->body, res->body_len);
		op->response_len = res->body_len;
		op->request_id = lh_xstrdup(res->request_id);
		memcpy(op->request_hash, f->hash, sizeof op->request_hash);
		op->prompt_tokens = res->prompt_tokens;
		op->completion_tokens = res->completion_tokens;
		op->started_at = res->started_at;
		op->first_byte_at = res->first_byte_at;
		op->ended_at = res->ended_at;
		lh_claimed_release(&f->item);
		j->successes++;
		if (j->nheld)
			flush_held(j, 1);
		lh_lane_success(j->lane);
	} else {
		char *err = eng_error_json(res->error_code, res->error_message, res->status, res->body, res->body_len);
		int transient = res->outcome == LH_LLM_TRANSIENT;
		int unreachable = is_connect_error(res);
		double wait = -1;
		if (f->pi) {
			/* Name the step that failed in the item's error. */
			json_t *o = json_loads(err, 0, NULL);
			pipe_error_step(f->pi, o);
			lh_free(err);
			err = json_dumps(o, JSON_COMPACT);
			json_decref(o);
			if (!err)
				err = lh_xstrdup("{}");
		}
		if (res->status == 429 || res->ratelimit_remaining_requests == 0)
			lh_lane_backoff(j->lane, res, eng_mono());
		if (unreachable && j->mode == J_RUNNING && (j->successes > 0 || j->lane->ever_ok)) {
			/* Down after working: wait for it, without using up attempts. */
			wait = lh_lane_unreachable(j->lane, j->url, eng_mono());
			attempts = f->item.attempts;
		}
		if (unreachable && j->mode == J_RUNNING && wait < 0 && wait_for_server(j, res)) {
			/* Never reached yet, and it may still be starting: wait for it. */
			lh_free(err);
			wait_again(j, f, res);
		} else if (unreachable && j->mode == J_RUNNING && wait < 0) {
			/* Never reached at all: like a wrong key, ten in a row stop the job. */
			hold_or_fail(j, f, res, err);
		} else if (transient && (attempts < j->retry.max_attempts || wait >= 0) && j->mode == J_RUNNING) {
			double delay = wait >= 0 ? wait : lh_retry_delay(&j->retry, attempts, res->retry_after, &eng->rnd);
			eng_stage_retry(j, &f->item, attempts, res->status, err, res->error_code, res->error_message,
					delay);
		} else if (transient && j->mode != J_RUNNING) {
			/* Draining: the item is not failed, only unfinished. */
			lh_free(err);
			eng_stage_release(j, &f->item);
		} else if (!transient && j->successes == 0 && run_level_error(res) && j->mode == J_RUNNING) {
			hold_or_fail(j, f, res, err);
		} else {
			eng_stage_dead(j, &f->item, attempts, res->status, err, res->error_code, res->error_message);
		}
		if (f->pi)
			pipe_left(f->pi);
	}
	lh_buf_release(&f->body);
	lh_free(f);
	eng_dispatch(eng);
}

/* ---- commit results ---- */

static void remove_job(struct lh_engine *eng, struct ejob *j)
{
	struct ejob **p;
	for (p = &eng->jobs; *p; p = &(*p)->next)
		if (*p == j) {
			*p = j->next;
			break;
		}
	eng->njobs--;
	if (eng->rr >= eng->njobs)
		eng->rr = 0;
	lh_timer_free(j->t_retry);
	if (j->pipe) {
		reduce_free(j);
		pipe_job_free(j);
	}
	lh_lane_put(&eng->lanes, j->lane);
	lh_free(j->ready);
	lh_free(j->url);
	lh_free(j->api_key);
	lh_free(j->model);
	lh_free(j->prefix);
	lh_free(j->end_msg);
	json_decref(j->overrides);
	lh_free(j);
}

static void write_rates(struct ejob *j, int force)
{
	struct lh_engine *eng = j->eng;
	double now = eng_mono(), run;
	struct lh_err e;
	if (!force && now - j->last_rate_write < RATE_EVERY)
		return;
	j->last_rate_write = now;
	lh_rate_add(&j->rate_items, now, (double)(j->done + j->dead));
	lh_rate_add(&j->rate_tokens, now, (double)j->ctok);
	run = now - j->started;
	if (lh_store_job_set_rates(eng->o.control, j->id, lh_rate_per_sec(&j->rate_items),
				   lh_rate_per_sec(&j->rate_tokens), run - j->run_secs_written,
				   (int64_t)j->n_inflight, &e) == 0)
		j->run_secs_written = run;
}

/* Ends a job whose last work is committed: makes the engine's own
 * transition, tells the owner, forgets it. */
static void finish_job(struct ejob *j)
{
	struct lh_engine *eng = j->eng;
	struct lh_job_rec rec;
	struct lh_err e;
	enum lh_job_state to = LH_JOB_UNKNOWN;
	enum lh_job_end how = j->end_how;
	char *msg = j->end_msg ? lh_xstrdup(j->end_msg) : NULL;
	int64_t id = j->id;

	write_rates(j, 1);
	if (how == LH_END_COMPLETED)
		to = LH_JOB_COMPLETED;
	else if (how == LH_END_TIMED_OUT)
		to = LH_JOB_TIMED_OUT;
	else if (how == LH_END_STOPPED)
		to = LH_JOB_PAUSED;
	if (to != LH_JOB_UNKNOWN && lh_store_job_get(eng->o.control, id, &rec, &e) == 0) {
		char *data = NULL;
		if (msg) {
			json_t *d = how == LH_END_STOPPED ?
				json_pack("{s:s,s:s}", "reason", LH_PAUSE_EARLY_STOP, "message", msg) :
				json_pack("{s:s}", "message", msg);
			data = d ? json_dumps(d, JSON_COMPACT) : NULL;
			json_decref(d);
		}
		if (lh_store_begin(eng->o.control, &e) == 0) {
			int rc = lh_job_transition_why(eng->o.control, &rec, to,
						       how == LH_END_STOPPED ? LH_PAUSE_EARLY_STOP : NULL, data, &e);
			if (rc == 0 && msg)
				rc = lh_store_job_set_error(eng->o.control, id, data, &e);
			if (rc == 0)
				rc = lh_store_commit(eng->o.control, &e);
			if (rc) {
				lh_store_rollback(eng->o.control);
				/* Illegal now (paused or cancelled from outside meanwhile): theirs stands. */
				if (rc != LH_ESTATE)
					lh_log_err(&e);
			}
		}
		free(data);
		lh_job_rec_release(&rec);
	}
	/* The owner may still read the job's figures from inside on_job_end. */
	if (eng->o.on_job_end)
		eng->o.on_job_end(eng->o.arg, id, how, msg);
	remove_job(eng, j);
	if (eng->o.on_commit)
		eng->o.on_commit(eng->o.arg);
	lh_free(msg);
}

static void check_job_end(struct ejob *j)
{
	/* After a store failure nothing is declared finished. */
	if (j->eng->fatal)
		return;
	if (j->mode == J_RUNNING && j->done + j->dead + j->waiting >= j->total && !j->n_inflight && !j->rlen &&
	    !j->nheld) {
		if (j->waiting > 0) {
			/* Only items waiting for a person are left: the job idles
			 * (the daemon) or the run ends, saying so (run). */
			if (!j->idle_told && j->eng->o.on_job_idle) {
				j->idle_told = 1;
				j->eng->o.on_job_idle(j->eng->o.arg, j->id, j->waiting);
			}
		} else if (!j->reduced && j->pipe && j->pipe->reduce) {
			/* After the last item's commit: the reduce reads the store. */
			if (j->pending_ops)
				return;
			if (!reduce_step(j))
				j->reduced = 1;
			if (j->reduced)
				eng_drain_job(j, LH_END_COMPLETED, j->reduce_msg);
		} else {
			eng_drain_job(j, LH_END_COMPLETED, NULL);
		}
	}
	if (j->mode == J_DRAINING && !j->n_inflight)
		j->mode = J_GONE; /* finish once its last staged ops have committed */
}

static void maybe_drained(struct lh_engine *eng)
{
	if (eng->stopping && !eng->n_inflight && !lh_committer_busy(eng->com) && !eng->drained_called) {
		eng->drained_called = 1;
		if (eng->o.on_drained)
			eng->o.on_drained(eng->o.arg);
	}
}

void eng_fatal(struct lh_engine *eng, const struct lh_err *err)
{
	if (eng->fatal)
		return;
	eng->fatal = 1;
	if (eng->o.on_fatal)
		eng->o.on_fatal(eng->o.arg, err);
	lh_engine_shutdown(eng, 0);
	lh_engine_abort(eng);
}

static void on_committed(struct lh_loop *loop, void *arg)
{
	struct lh_engine *eng = arg;
	struct lh_commit_result res;
	int notify = 0;
	(void)loop;
	if (!lh_committer_take(eng->com, &res))
		return;
	if (res.rc) {
		/* Nothing of this transaction was written: its items run again next time. */
		eng_fatal(eng, &res.err);
		for (size_t i = 0; i < res.ops.n; i++) {
			struct ejob *j = find_job(eng, res.ops.v[i].job);
			if (j)
				j->pending_ops--;
		}
		lh_commit_result_release(&res);
		maybe_drained(eng);
		return;
	}
	for (size_t i = 0; i < res.ops.n; i++) {
		struct lh_commit_op *op = &res.ops.v[i];
		struct ejob *j = find_job(eng, op->job);
		if (j)
			j->pending_ops--;
		if (op->result || !j)
			continue;
		if (op->event_type)
			notify = 1;
		switch (op->kind) {
		case LH_OP_DONE:
			j->done++;
			notify = 1;
			if (op->prompt_tokens > 0)
				j->ptok += op->prompt_tokens;
			if (op->completion_tokens > 0)
				j->ctok += op->completion_tokens;
			break;
		case LH_OP_DEAD:
			j->dead++;
			break;
		case LH_OP_RETRY:
			j->retries++;
			break;
		case LH_OP_STEP:
		case LH_OP_WAIT:
			pipe_committed(j, op);
			notify = 1;
			break;
		case LH_OP_REDUCE:
			if (op->prompt_tokens > 0)
				j->ptok += op->prompt_tokens;
			if (op->completion_tokens > 0)
				j->ctok += op->completion_tokens;
			notify = 1;
			break;
		default:
			break;
		}
	}
	for (size_t i = 0; i < res.nclaims; i++) {
		struct lh_claim *cl = &res.claims[i];
		struct ejob *j = find_job(eng, cl->job);
		if (!j) {
			continue; /* dropped meanwhile: its claims are released below */
		}
		j->claim_outstanding = 0;
		for (size_t k = 0; k < cl->n; k++) {
			if (j->mode != J_RUNNING || eng->stopping)
				eng_stage_release(j, &cl->items[k]);
			else
				ready_push(j, &cl->items[k]);
		}
		lh_free(cl->items);
		cl->items = NULL;
		if (cl->n < cl->max) {
			/* Nothing more claimable now; come back when a retry is due. */
			j->claim_dry = 1;
			if (cl->next_due > 0)
				eng_arm_retry(j, cl->next_due - lh_wall());
		}
		cl->n = 0;
	}
	/* Claims of jobs that left: give the items back. */
	for (size_t i = 0; i < res.nclaims; i++) {
		struct lh_claim *cl = &res.claims[i];
		for (size_t k = 0; k < cl->n; k++) {
			struct lh_commit_op *op = lh_committer_op(eng->com);
			op->kind = LH_OP_RELEASE;
			op->job = cl->job;
			op->seq = cl->items[k].seq;
			op->fence = cl->items[k].fence;
		}
	}
	lh_commit_result_release(&res);
	if (notify && eng->o.on_commit)
		eng->o.on_commit(eng->o.arg);
	/* Jobs whose last work just committed leave now. */
	for (struct ejob *j = eng->jobs, *next; j; j = next) {
		next = j->next;
		check_job_end(j);
		if (j->mode == J_GONE && !j->pending_ops)
			finish_job(j);
	}
	eng_dispatch(eng);
	maybe_drained(eng);
}

static void before_sleep(struct lh_loop *loop, void *arg)
{
	struct lh_engine *eng = arg;
	(void)loop;
	for (struct ejob *j = eng->jobs; j; j = j->next)
		check_job_end(j);
	/* A job gone with nothing left to commit (e.g. drained with no ops). */
	for (struct ejob *j = eng->jobs, *next; j; j = next) {
		next = j->next;
		if (j->mode == J_GONE && !j->pending_ops)
			finish_job(j);
	}
	lh_committer_flush(eng->com);
	maybe_drained(eng);
}

/* ---- timers ---- */

static void on_retry_due(struct lh_loop *loop, struct lh_timer *t, void *arg)
{
	struct ejob *j = arg;
	(void)loop;
	(void)t;
	j->claim_dry = 0;
	eng_dispatch(j->eng);
}

static void on_lane(struct lh_loop *loop, struct lh_timer *t, void *arg)
{
	(void)loop;
	(void)t;
	eng_dispatch(arg);
}

static void on_grace(struct lh_loop *loop, struct lh_timer *t, void *arg)
{
	struct lh_engine *eng = arg;
	(void)loop;
	(void)t;
	if (eng->n_inflight)
		lh_warn("grace period over: aborting %zu request%s in flight (they are sent again on resume)",
			eng->n_inflight, eng->n_inflight == 1 ? "" : "s");
	lh_engine_abort(eng);
}

static int64_t count_waiting(struct lh_engine *eng, int64_t id);

static void on_tick(struct lh_loop *loop, struct lh_timer *t, void *arg)
{
	struct lh_engine *eng = arg;
	double now = eng_mono();
	(void)loop;
	for (struct ejob *j = eng->jobs; j; j = j->next) {
		if (j->mode != J_RUNNING)
			continue;
		write_rates(j, 0);
		/* Decisions made from outside (longhaul approve --store beside a
		 * run) show in the store only: while items wait, count them again
		 * about once a second. */
		if (j->pipe && j->waiting > 0 && now - j->last_wait_check >= 1.0) {
			j->last_wait_check = now;
			if (count_waiting(eng, j->id) < j->waiting)
				lh_engine_reload_job(eng, j->id);
		}
		if (j->time_limit > 0 && j->run_secs_base + (now - j->started) >= j->time_limit) {
			char msg[128];
			snprintf(msg, sizeof msg, "time limit of %.0f s reached", j->time_limit);
			eng_drain_job(j, LH_END_TIMED_OUT, msg);
			cancel_job_inflight(j);
		}
	}
	lh_timer_start(t, 250);
}

/* ---- public ---- */

static void on_committed_wake(struct lh_loop *loop, void *arg)
{
	on_committed(loop, arg);
}

struct lh_engine *lh_engine_new(struct lh_loop *loop, const struct lh_engine_opts *o, struct lh_err *e)
{
	struct lh_engine *eng = lh_xcalloc(1, sizeof *eng);
	struct lh_store_opts so;
	eng->o = *o;
	eng->loop = loop;
	eng->owner = lh_xstrdup(o->owner);
	eng->store_path = lh_xstrdup(o->store_path);
	eng->o.owner = eng->owner;
	eng->o.store_path = eng->store_path;
	if (eng->o.concurrency < 1)
		eng->o.concurrency = 1;
	lh_rand_seed(&eng->rnd, 0);
	memset(&so, 0, sizeof so);
	so.path = o->store_path;
	so.sync_full = o->sync_full;
	so.create = 0;
	so.manual_checkpoint = 1; /* the checkpointer thread does it, off the commit path */
	if (lh_store_open(&so, &eng->cstore, e) != 0)
		goto fail;
	eng->ckpt = lh_checkpointer_new(o->store_path, o->sync_full, 100, e);
	if (!eng->ckpt)
		goto fail;
	eng->llm = lh_llm_new(loop, &o->llm, e);
	if (!eng->llm)
		goto fail;
	eng->com = lh_committer_new(eng->cstore, eng->owner, o->lease_secs, loop, on_committed_wake, eng, e);
	if (!eng->com)
		goto fail;
	eng->t_grace = lh_timer_new(loop, on_grace, eng);
	eng->t_tick = lh_timer_new(loop, on_tick, eng);
	eng->t_lane = lh_timer_new(loop, on_lane, eng);
	if (lh_loop_add_hook(loop, before_sleep, eng) != 0) {
		lh_err_set(e, LH_EINTERNAL, "could not add the engine's loop hook");
		goto fail;
	}
	lh_timer_start(eng->t_tick, 250);
	return eng;
fail:
	lh_timer_free(eng->t_grace);
	lh_timer_free(eng->t_tick);
	lh_timer_free(eng->t_lane);
	if (eng->com)
		lh_committer_free(eng->com);
	if (eng->llm)
		lh_llm_free(eng->llm);
	if (eng->cstore)
		lh_store_close(eng->cstore);
	lh_checkpointer_free(eng->ckpt);
	lh_free(eng->owner);
	lh_free(eng->store_path);
	lh_free(eng);
	return NULL;
}

static long ncpu(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? n : 1;
}

static int64_t count_waiting(struct lh_engine *eng, int64_t id)
{
	int64_t counts[LH_ITEM_NSTATES];
	struct lh_err e;
	if (lh_store_item_counts(eng->o.control, id, counts, &e) != 0)
		return 0;
	return counts[LH_ITEM_WAITING];
}

int lh_engine_add_job(struct lh_engine *eng, int64_t id, const struct lh_job_conf *conf, struct lh_err *e)
{
	struct lh_job_rec rec;
	struct ejob *j;
	int64_t released = 0;
	int rc;
	if (find_job(eng, id))
		return 0;
	if (eng->stopping)
		return lh_err_set(e, LH_ESTATE, "the engine is shutting down");
	if (eng->o.release_all_leases) {
		/* The caller holds the store alone: any lease belongs to a dead process. */
		rc = lh_store_release_leases(eng->o.control, id, NULL, &released, e);
		if (rc)
			return rc;
	}
	rc = lh_store_job_get(eng->o.control, id, &rec, e);
	if (rc)
		return rc;
	j = lh_xcalloc(1, sizeof *j);
	j->eng = eng;
	j->id = id;
	j->priority = rec.priority;
	j->mode = J_RUNNING;
	j->url = lh_xstrdup(conf->url);
	j->api_key = lh_xstrdup(conf->api_key);
	j->stream = conf->stream;
	j->cap = conf->concurrency;
	j->timeout_ms = conf->request_timeout > 0 ? (long)(conf->request_timeout * 1000) : 0;
	j->ftt_ms = conf->first_token_timeout > 0 ? (long)(conf->first_token_timeout * 1000) : 0;
	j->connect_ms = conf->connect_timeout > 0 ? (long)(conf->connect_timeout * 1000) : 0;
	if (conf->overrides) {
		j->overrides = json_loads(conf->overrides, 0, NULL);
		if (!json_is_object(j->overrides) || !json_object_size(j->overrides)) {
			json_decref(j->overrides);
			j->overrides = NULL;
		}
	}
	j->retry = conf->retry;
	j->time_limit = conf->time_limit > 0 ? conf->time_limit : rec.time_limit;
	j->wait_for_server = conf->wait_for_server > 0 ? conf->wait_for_server : 0;
	if (conf->model && conf->model_prefix) {
		struct lh_buf p;
		lh_buf_init(&p, 0);
		if (lh_buf_puts(&p, "{\"model\":") || lh_buf_json_str(&p, conf->model, strlen(conf->model)) ||
		    lh_buf_putc(&p, ',')) {
			lh_buf_release(&p);
			lh_job_rec_release(&rec);
			json_decref(j->overrides);
			lh_free(j->url);
			lh_free(j->api_key);
			lh_free(j);
			return lh_err_set(e, LH_ETOOBIG, "model name too long");
		}
		j->prefix_len = p.len;
		j->prefix = lh_buf_steal(&p);
	} else if (conf->model) {
		j->model = lh_xstrdup(conf->model);
	}
	j->lane = lh_lane_get(&eng->lanes, conf->url, conf->model, eng->o.concurrency);
	{
		long cap = j->cap > 0 ? j->cap : eng->o.concurrency;
		/* Claims ride in commit transactions: keep several commits' worth ready
		 * so that dispatch never waits for one. */
		j->claim_batch = (size_t)(cap * 8 < 256 ? 256 : cap * 8);
		if (j->claim_batch > 4096)
			j->claim_batch = 4096;
	}
	if (rec.spec) {
		rc = lh_pipeline_new(rec.spec, &j->pipe, e);
		if (rc && rc != LH_ENOTFOUND) {
			lh_job_rec_release(&rec);
			json_decref(j->overrides);
			lh_free(j->url);
			lh_free(j->api_key);
			lh_free(j->model);
			lh_free(j->prefix);
			lh_lane_put(&eng->lanes, j->lane);
			lh_free(j);
			return rc;
		}
		lh_err_clear(e);
	}
	if (j->pipe) {
		j->pipe_model = conf->model ? lh_xstrdup(conf->model) : NULL;
		j->exec_cap = j->pipe->exec_concurrency > 0 ? j->pipe->exec_concurrency : ncpu();
		j->steps_done = lh_xcalloc(j->pipe->n, sizeof *j->steps_done);
		j->step_cost = lh_xcalloc(j->pipe->n, sizeof *j->step_cost);
		j->loop_turns = lh_xcalloc(j->pipe->n, sizeof *j->loop_turns);
		j->loops_ended = lh_xcalloc(j->pipe->n, sizeof *j->loops_ended);
		for (size_t i = 0; i < j->pipe->n; i++)
			j->step_cost[i] = 1;
		j->step_ids = lh_xcalloc(j->pipe->n, sizeof *j->step_ids);
		for (size_t i = 0; i < j->pipe->n; i++)
			j->step_ids[i] = j->pipe->steps[i].id;
		j->waiting = count_waiting(eng, id);
		if (lh_store_item_steps_done(eng->o.control, id, j->steps_done, j->pipe->n, NULL, e) != 0)
			lh_err_clear(e);
	}
	j->t_retry = lh_timer_new(eng->loop, on_retry_due, j);
	j->total = rec.n_total;
	j->done = rec.n_done;
	j->dead = rec.n_dead;
	j->retries = rec.n_retries;
	j->ptok = rec.prompt_tokens;
	j->ctok = rec.completion_tokens;
	j->run_secs_base = rec.run_secs;
	j->started = eng_mono();
	lh_rate_init(&j->rate_items, 10.0);
	lh_rate_init(&j->rate_tokens, 10.0);
	lh_rate_add(&j->rate_items, j->started, (double)(j->done + j->dead));
	lh_rate_add(&j->rate_tokens, j->started, (double)j->ctok);
	j->last_rate_write = j->started;
	lh_job_rec_release(&rec);
	/* Retries scheduled by an earlier run: wake for the first. */
	{
		double due;
		if (lh_store_next_due(eng->o.control, id, &due, e) == 0)
			eng_arm_retry(j, due - lh_wall());
		lh_err_clear(e);
	}
	if (released)
		lh_info("job %lld: took back %lld item%s leased by a process that stopped; those of them that "
			"were in flight are sent again", (long long)id, (long long)released, released == 1 ? "" : "s");
	j->next = eng->jobs;
	eng->jobs = j;
	eng->njobs++;
	eng_dispatch(eng);
	return 0;
}

int lh_engine_has_job(struct lh_engine *eng, int64_t job)
{
	return find_job(eng, job) != NULL;
}

size_t lh_engine_job_count(struct lh_engine *eng)
{
	return eng->njobs;
}

void lh_engine_drop_job(struct lh_engine *eng, int64_t id, int now)
{
	struct ejob *j = find_job(eng, id);
	if (!j)
		return;
	eng_drain_job(j, LH_END_DROPPED, NULL);
	if (now)
		cancel_job_inflight(j);
}

void lh_engine_set_priority(struct lh_engine *eng, int64_t id, int priority)
{
	struct ejob *j = find_job(eng, id);
	if (j) {
		j->priority = priority;
		eng_dispatch(eng);
	}
}

void lh_engine_reload_job(struct lh_engine *eng, int64_t id)
{
	struct ejob *j = find_job(eng, id);
	struct lh_job_rec rec;
	struct lh_err e;
	if (!j || lh_store_job_get(eng->o.control, id, &rec, &e) != 0)
		return;
	j->dead = rec.n_dead;
	j->total = rec.n_total;
	j->claim_dry = 0;
	lh_job_rec_release(&rec);
	if (j->pipe) {
		/* A decision moved waiting items on: count them again. */
		j->waiting = count_waiting(eng, id);
		if (j->idle_told && eng->o.on_job_idle)
			eng->o.on_job_idle(eng->o.arg, j->id, 0); /* no longer idle */
		j->idle_told = 0;
	}
	eng_dispatch(eng);
}

int lh_engine_job_stats(struct lh_engine *eng, int64_t id, struct lh_engine_job_stats *out)
{
	struct ejob *j = find_job(eng, id);
	double now = eng_mono();
	memset(out, 0, sizeof *out);
	if (!j)
		return LH_ENOTFOUND;
	out->total = j->total;
	out->done = j->done;
	out->dead = j->dead;
	out->retries = j->retries;
	out->in_flight = (int64_t)j->n_inflight;
	out->prompt_tokens = j->ptok;
	out->completion_tokens = j->ctok;
	lh_rate_add(&j->rate_items, now, (double)(j->done + j->dead));
	lh_rate_add(&j->rate_tokens, now, (double)j->ctok);
	out->items_per_sec = lh_rate_per_sec(&j->rate_items);
	out->tokens_per_sec = lh_rate_per_sec(&j->rate_tokens);
	out->run_secs = j->run_secs_base + (now - j->started);
	out->waiting = job_waiting(j);
	out->waited = out->waiting ? now - j->wait_started : 0;
	out->approvals = j->waiting;
	if (j->pipe) {
		out->steps_done = j->steps_done;
		out->step_cost = j->step_cost;
		out->step_ids = j->step_ids;
		out->nsteps = j->pipe->n;
		reduce_stats(j, &out->reducing, &out->reduce_calls, &out->reduce_done);
	}
	return 0;
}

void lh_engine_commit_stats(struct lh_engine *eng, struct lh_commit_stats *out)
{
	if (eng->com)
		lh_committer_stats(eng->com, out);
	else
		*out = eng->final_stats;
}

size_t lh_engine_in_flight(struct lh_engine *eng)
{
	return eng->n_inflight;
}

void lh_engine_shutdown(struct lh_engine *eng, double grace)
{
	if (eng->stopping)
		return;
	eng->stopping = 1;
	for (struct ejob *j = eng->jobs; j; j = j->next) {
		release_ready(j);
		if (j->nheld)
			flush_held(j, 0);
	}
	if (eng->n_inflight)
		lh_timer_start(eng->t_grace, (int64_t)(grace * 1000));
	maybe_drained(eng);
}

void lh_engine_abort(struct lh_engine *eng)
{
	for (struct ejob *j = eng->jobs; j; j = j->next)
		cancel_job_inflight(j);
	maybe_drained(eng);
}

int lh_engine_stopping(struct lh_engine *eng)
{
	return eng->stopping;
}

void lh_engine_free(struct lh_engine *eng)
{
	if (!eng)
		return;
	lh_engine_shutdown(eng, 0);
	lh_engine_abort(eng);
	for (struct ejob *j = eng->jobs; j; j = j->next)
		write_rates(j, 1);
	while (eng->jobs)
		remove_job(eng, eng->jobs);
	lh_committer_flush(eng->com);
	lh_committer_stats(eng->com, &eng->final_stats);
	lh_committer_free(eng->com);
	eng->com = NULL;
	lh_llm_free(eng->llm);
	lh_loop_remove_hook(eng->loop, before_sleep, eng);
	lh_timer_free(eng->t_grace);
	lh_timer_free(eng->t_tick);
	lh_timer_free(eng->t_lane);
	lh_store_close(eng->cstore);
	lh_checkpointer_free(eng->ckpt);
	lh_free(eng->owner);
	lh_free(eng->store_path);
	lh_free(eng);
}
