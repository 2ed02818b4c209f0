/*
 * engine layer: `longhaul run` (see run.h).
 *
 * One thread drives everything through the event loop: the LLM client's
 * sockets and timers, signals, progress, and wake-ups from the commit
 * thread. Items flow:
 *
 *   store --claim--> ready queue --send--> in flight --answer--> staged op
 *         <--------------------- group commit ----------------------'
 *
 * An item is counted as finished only when the transaction holding its
 * result has committed (handle_results), never when the answer arrives.
 */
#include "engine/run.h"
#include "engine/committer.h"
#include "engine/ingest.h"
#include "engine/jobstate.h"
#include "engine/progress.h"
#include "engine/report.h"
#include "llm/llm.h"
#include "loop/loop.h"
#include "store/store.h"
#include "util/buf.h"
#include "util/hash.h"
#include "util/log.h"
#include "util/mem.h"
#include "util/rand.h"
#include "util/time.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

/* Run-level permanent errors: the same answer for every item (a wrong key, a
 * wrong model, no quota). The first EARLY_STOP_N of them, before any
 * success, stop the run instead of failing a million items. */
#define EARLY_STOP_N 10

struct run;

struct inflight {
	struct run *run;
	struct lh_claimed item; /* owned */
	struct lh_buf body;     /* request body when it differs from item.input */
	char hash[LH_SHA256_HEX];
	struct lh_llm_req *req;
	struct inflight *prev, *next;
};

struct held {
	struct lh_claimed item;
	int status;
	char *error; /* JSON */
};

struct run {
	const struct lh_run_opts *o;
	struct lh_loop *loop;
	struct lh_llm *llm;
	struct lh_store *st;
	struct lh_committer *com;
	struct lh_job_rec job;
	struct lh_rand rnd;
	char owner[96];
	char *url;
	char *model_prefix; /* spec jobs: "{\"model\":\"X\"," */
	size_t model_prefix_len;
	int stream;

	/* ready queue: a ring of claimed items */
	struct lh_claimed *ready;
	size_t rcap, rhead, rlen;
	int claim_outstanding;
	int claim_dry;           /* the last claim came back short */
	size_t claim_batch;

	struct inflight *inflight; /* list */
	size_t n_inflight;

	/* lane: adaptive concurrency and pauses */
	long limit, limit_max;
	double paused_until;     /* mono seconds */
	double last_halve;
	long successes_since_halve;

	/* counters from committed transactions (include earlier runs) */
	int64_t total, done, dead, retries, prompt_tokens, completion_tokens;
	int64_t retries_this_run;
	double run_started;      /* mono */
	double prev_run_secs;

	/* early stop */
	struct held held[EARLY_STOP_N];
	int nheld;
	char held_sig[128];
	int64_t successes;

	/* shutdown */
	int stopping;            /* 1: no more dispatch */
	int exit_code;
	int sigint_count;
	int store_failed;
	struct lh_err store_err;
	char stop_msg[1024];

	struct lh_timer *t_progress, *t_retry, *t_grace, *t_lane;
	double retry_due;        /* mono seconds the retry timer fires at */
	struct lh_commit_stats final_stats; /* kept once the committer is gone */
	double last_draw, last_line;
	int drawn;
	struct lh_rate rate_items, rate_tokens;
};

/* ---- helpers ---- */

static void ready_push(struct run *r, struct lh_claimed *c)
{
	if (r->rlen == r->rcap) {
		size_t ncap = r->rcap ? r->rcap * 2 : 256;
		struct lh_claimed *n = lh_xmalloc(ncap * sizeof *n);
		for (size_t i = 0; i < r->rlen; i++)
			n[i] = r->ready[(r->rhead + i) % r->rcap];
		lh_free(r->ready);
		r->ready = n;
		r->rcap = ncap;
		r->rhead = 0;
	}
	r->ready[(r->rhead + r->rlen) % r->rcap] = *c;
	r->rlen++;
}

static int ready_pop(struct run *r, struct lh_claimed *out)
{
	if (!r->rlen)
		return 0;
	*out = r->ready[r->rhead];
	r->rhead = (r->rhead + 1) % r->rcap;
	r->rlen--;
	return 1;
}

static char *error_json(const char *code, const char *message, int status, const char *body, size_t body_len)
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
			b = json_stringn_nocheck(body, body_len > 4096 ? 4096 : body_len);
		if (b)
			json_object_set_new(o, "body", b);
	}
	s = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	return s ? s : lh_xstrdup("{}");
}

static double now_mono(void)
{
	return lh_mono();
}

/* ---- staging ops ---- */

static void stage_release(struct run *r, struct lh_claimed *c)
{
	struct lh_commit_op *op = lh_committer_op(r->com);
	op->kind = LH_OP_RELEASE;
	op->seq = c->seq;
	op->fence = c->fence;
	lh_claimed_release(c);
}

static void stage_dead(struct run *r, struct lh_claimed *c, int attempts, int status, char *error,
		       const char *code, const char *message)
{
	struct lh_commit_op *op = lh_committer_op(r->com);
	json_t *d;
	op->kind = LH_OP_DEAD;
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

static void flush_held(struct run *r, int as_dead)
{
	for (int i = 0; i < r->nheld; i++) {
		struct held *h = &r->held[i];
		if (as_dead) {
			json_t *err = json_loads(h->error, 0, NULL);
			const char *code = err ? json_string_value(json_object_get(err, "code")) : NULL;
			const char *msg = err ? json_string_value(json_object_get(err, "message")) : NULL;
			char *c = lh_xstrdup(code), *m = lh_xstrdup(msg);
			json_decref(err);
			stage_dead(r, &h->item, h->item.attempts + 1, h->status, h->error, c, m);
			lh_free(c);
			lh_free(m);
		} else {
			stage_release(r, &h->item);
			lh_free(h->error);
		}
		h->error = NULL;
	}
	r->nheld = 0;
}

/* ---- shutdown ---- */

static void cancel_inflight(struct run *r)
{
	/* Each cancel runs its callback, which unlinks the entry. */
	while (r->inflight)
		lh_llm_cancel(r->inflight->req);
}

static void begin_stop(struct run *r, int code, const char *msg)
{
	if (!r->stopping) {
		r->stopping = 1;
		r->exit_code = code;
		if (msg)
			snprintf(r->stop_msg, sizeof r->stop_msg, "%s", msg);
		/* Items claimed but never sent go back to pending now. */
		struct lh_claimed c;
		while (ready_pop(r, &c))
			stage_release(r, &c);
	}
}

static void maybe_finish(struct run *r)
{
	if (!r->stopping && r->done + r->dead >= r->total && !r->n_inflight && !r->rlen)
		begin_stop(r, r->dead ? LH_EXIT_FAILED_ITEMS : LH_EXIT_OK, NULL);
	if (r->stopping && !r->n_inflight && !lh_committer_busy(r->com))
		lh_loop_stop(r->loop);
}

/* ---- dispatch ---- */

static void on_answer(struct lh_llm_req *req, const struct lh_llm_result *res, void *arg);

/* Arms the retry timer for `delay` seconds from now unless it already fires sooner. */
static void arm_retry(struct run *r, double delay)
{
	double due = now_mono() + (delay > 0 ? delay : 0);
	if (lh_timer_active(r->t_retry) && r->retry_due <= due)
		return;
	r->retry_due = due;
	lh_timer_start(r->t_retry, (int64_t)((delay > 0 ? delay : 0) * 1000) + 1);
}

static int build_body(struct run *r, struct inflight *f, const char **body, size_t *len)
{
	const struct lh_claimed *c = &f->item;
	if (r->model_prefix) {
		lh_buf_clear(&f->body);
		if (lh_buf_append(&f->body, r->model_prefix, r->model_prefix_len) ||
		    lh_buf_append(&f->body, c->input + 1, c->input_len - 1))
			return LH_ETOOBIG;
		*body = f->body.data;
		*len = f->body.len;
	} else if (r->o->model) {
		json_t *o = json_loadb(c->input, c->input_len, 0, NULL);
		char *s;
		if (!o)
			return LH_EINPUT;
		json_object_set_new(o, "model", json_string(r->o->model));
		s = json_dumps(o, JSON_COMPACT);
		json_decref(o);
		if (!s)
			return LH_ENOMEM;
		lh_buf_clear(&f->body);
		if (lh_buf_puts(&f->body, s)) {
			free(s);
			return LH_ETOOBIG;
		}
		free(s);
		*body = f->body.data;
		*len = f->body.len;
	} else {
		*body = c->input;
		*len = c->input_len;
	}
	return 0;
}

static void send_one(struct run *r, struct lh_claimed *c)
{
	struct inflight *f = lh_xcalloc(1, sizeof *f);
	struct lh_llm_call call;
	struct lh_err e;
	const char *body;
	size_t len;
	f->run = r;
	f->item = *c;
	lh_buf_init(&f->body, 0);
	if (build_body(r, f, &body, &len) != 0) {
		stage_dead(r, &f->item, f->item.attempts + 1, 0,
			   error_json("invalid_body", "the stored request body is not valid JSON", 0, NULL, 0),
			   "invalid_body", "the stored request body is not valid JSON");
		lh_buf_release(&f->body);
		lh_free(f);
		return;
	}
	lh_sha256_hex(body, len, f->hash);
	memset(&call, 0, sizeof call);
	call.url = r->url;
	call.api_key = r->o->api_key;
	call.body = body;
	call.body_len = len;
	call.stream = r->stream || (memmem(body, len, "\"stream\":true", 13) != NULL);
	f->next = r->inflight;
	if (r->inflight)
		r->inflight->prev = f;
	r->inflight = f;
	r->n_inflight++;
	f->req = lh_llm_send(r->llm, &call, on_answer, f, &e);
	if (!f->req) {
		/* Could not even start: treat as a transient failure of this attempt. */
		r->inflight = f->next;
		if (f->next)
			f->next->prev = NULL;
		r->n_inflight--;
		lh_log_err(&e);
		stage_release(r, &f->item);
		lh_buf_release(&f->body);
		lh_free(f);
		begin_stop(r, LH_EXIT_INTERNAL, "could not start requests");
	}
}

static void dispatch(struct run *r)
{
	double now = now_mono();
	struct lh_claimed c;
	if (r->stopping)
		return;
	if (now < r->paused_until) {
		if (!lh_timer_active(r->t_lane))
			lh_timer_start(r->t_lane, (int64_t)((r->paused_until - now) * 1000) + 1);
	} else {
		while ((long)r->n_inflight < r->limit && ready_pop(r, &c))
			send_one(r, &c);
	}
	if (!r->stopping && !r->claim_outstanding && !r->claim_dry && r->rlen < r->claim_batch / 2) {
		lh_committer_want_claim(r->com, r->claim_batch - r->rlen);
		r->claim_outstanding = 1;
	}
}

static void lane_backoff(struct run *r, const struct lh_llm_result *res)
{
	double now = now_mono();
	/* Multiplicative decrease, at most once a second so that one burst of
	 * 429s does not collapse the lane to 1. */
	if (now - r->last_halve >= 1.0 && r->limit > 1) {
		r->limit = r->limit / 2;
		if (r->limit < 1)
			r->limit = 1;
		r->last_halve = now;
		r->successes_since_halve = 0;
	}
	/* A server that says the lane's quota is spent pauses the whole lane. */
	if (res->ratelimit_remaining_requests == 0 && res->ratelimit_reset_requests > 0) {
		double until = now + res->ratelimit_reset_requests;
		if (until > r->paused_until)
			r->paused_until = until;
	}
}

static void lane_success(struct run *r)
{
	/* Additive increase back to the configured concurrency. */
	if (r->limit < r->limit_max && ++r->successes_since_halve >= r->limit / 4 + 1) {
		r->limit++;
		r->successes_since_halve = 0;
	}
}

static int run_level_error(const struct lh_llm_result *res)
{
	const char *c = res->error_code ? res->error_code : "";
	return res->status == 401 || res->status == 403 || !strcmp(c, "model_not_found") ||
	       !strcmp(c, "insufficient_quota") || (res->status == 404 && strcmp(c, "http_404") != 0) ||
	       res->status == 404;
}

static void on_answer(struct lh_llm_req *req, const struct lh_llm_result *res, void *arg)
{
	struct inflight *f = arg;
	struct run *r = f->run;
	int attempts = f->item.attempts + 1;
	(void)req;

	if (f->prev)
		f->prev->next = f->next;
	else
		r->inflight = f->next;
	if (f->next)
		f->next->prev = f->prev;
	r->n_inflight--;

	if (res->outcome == LH_LLM_CANCELLED) {
		stage_release(r, &f->item);
	} else if (res->outcome == LH_LLM_OK) {
		struct lh_commit_op *op = lh_committer_op(r->com);
		op->kind = LH_OP_DONE;
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
		r->successes++;
		if (r->nheld)
			flush_held(r, 1);
		lane_success(r);
	} else {
		char *err = error_json(res->error_code, res->error_message, res->status, res->body, res->body_len);
		int transient = res->outcome == LH_LLM_TRANSIENT;
		if (res->status == 429 || res->ratelimit_remaining_requests == 0)
			lane_backoff(r, res);
		if (transient && attempts < r->o->retry.max_attempts) {
			struct lh_commit_op *op = lh_committer_op(r->com);
			double delay = lh_retry_delay(&r->o->retry, attempts, res->retry_after, &r->rnd);
			json_t *d;
			op->kind = LH_OP_RETRY;
			op->seq = f->item.seq;
			op->fence = f->item.fence;
			op->attempts = attempts;
			op->status = res->status;
			op->next_try = lh_wall() + delay;
			op->error = err;
			op->key = lh_xstrdup(f->item.key);
			op->event_type = lh_xstrdup("item.retry");
			d = json_pack("{s:i, s:s, s:s, s:i, s:f}", "attempt", attempts, "code",
				      res->error_code ? res->error_code : "error", "message",
				      res->error_message ? res->error_message : "", "status", res->status, "delay",
				      delay);
			op->event_data = d ? json_dumps(d, JSON_COMPACT) : NULL;
			json_decref(d);
			lh_claimed_release(&f->item);
			r->retries_this_run++;
			/* Wake up for it when it is due (the claim picks due retries first). */
			arm_retry(r, delay);
		} else if (!transient && r->successes == 0 && run_level_error(res)) {
			char sig[128];
			snprintf(sig, sizeof sig, "%d:%s", res->status, res->error_code ? res->error_code : "");
			if (r->nheld && strcmp(sig, r->held_sig) != 0)
				flush_held(r, 1);
			snprintf(r->held_sig, sizeof r->held_sig, "%s", sig);
			r->held[r->nheld].item = f->item;
			r->held[r->nheld].status = res->status;
			r->held[r->nheld].error = err;
			r->nheld++;
			memset(&f->item, 0, sizeof f->item);
			if (r->nheld >= EARLY_STOP_N || r->nheld >= r->total - r->done - r->dead) {
				char msg[1024];
				snprintf(msg, sizeof msg,
					 "stopped early: the first %d requests all failed the same way (HTTP %d %s: %s); "
					 "no item was marked failed; fix the cause and run the same command again",
					 r->nheld, res->status, res->error_code ? res->error_code : "error",
					 res->error_message ? res->error_message : "");
				flush_held(r, 0);
				begin_stop(r, LH_EXIT_STOPPED, msg);
				cancel_inflight(r);
			}
		} else {
			stage_dead(r, &f->item, attempts, res->status, err, res->error_code, res->error_message);
		}
	}
	lh_buf_release(&f->body);
	lh_free(f);
	if (!r->stopping)
		dispatch(r);
}

/* ---- commit results ---- */

static void on_committed(struct lh_loop *loop, void *arg)
{
	struct run *r = arg;
	struct lh_commit_result res;
	(void)loop;
	if (!lh_committer_take(r->com, &res))
		return;
	if (res.rc) {
		/* Nothing of this transaction was written: its items run again next time. */
		if (!r->store_failed) {
			r->store_failed = 1;
			r->store_err = res.err;
			begin_stop(r, LH_EXIT_STORE, NULL);
			cancel_inflight(r);
		}
		lh_commit_result_release(&res);
		maybe_finish(r);
		return;
	}
	for (size_t i = 0; i < res.ops.n; i++) {
		struct lh_commit_op *op = &res.ops.v[i];
		if (op->result)
			continue;
		switch (op->kind) {
		case LH_OP_DONE:
			r->done++;
			if (op->prompt_tokens > 0)
				r->prompt_tokens += op->prompt_tokens;
			if (op->completion_tokens > 0)
				r->completion_tokens += op->completion_tokens;
			break;
		case LH_OP_DEAD:
			r->dead++;
			break;
		case LH_OP_RETRY:
			r->retries++;
			break;
		default:
			break;
		}
	}
	if (res.claim_asked) {
		r->claim_outstanding = 0;
		for (size_t i = 0; i < res.nclaimed; i++) {
			if (r->stopping) {
				stage_release(r, &res.claimed[i]);
				continue;
			}
			ready_push(r, &res.claimed[i]);
		}
		if (res.nclaimed < res.claim_max) {
			/* Nothing more is claimable now; come back when a retry is due. */
			r->claim_dry = 1;
			if (res.next_due > 0)
				arm_retry(r, res.next_due - lh_wall());
		}
		/* Ownership moved into the ready queue. */
		lh_free(res.claimed);
		res.claimed = NULL;
		res.nclaimed = 0;
	}
	lh_commit_result_release(&res);
	dispatch(r);
	maybe_finish(r);
}

static void before_sleep(struct lh_loop *loop, void *arg)
{
	struct run *r = arg;
	(void)loop;
	lh_committer_flush(r->com);
	maybe_finish(r);
}

/* ---- timers and signals ---- */

static void on_retry_due(struct lh_loop *loop, struct lh_timer *t, void *arg)
{
	struct run *r = arg;
	(void)loop;
	(void)t;
	r->claim_dry = 0;
	dispatch(r);
}

static void on_lane(struct lh_loop *loop, struct lh_timer *t, void *arg)
{
	(void)loop;
	(void)t;
	dispatch(arg);
}

static void on_grace(struct lh_loop *loop, struct lh_timer *t, void *arg)
{
	struct run *r = arg;
	(void)loop;
	(void)t;
	if (r->n_inflight)
		lh_warn("grace period over: aborting %zu requests in flight (they will be sent again on resume)",
			r->n_inflight);
	cancel_inflight(r);
	maybe_finish(r);
}

static void on_signal(struct lh_loop *loop, int signo, void *arg)
{
	struct run *r = arg;
	(void)loop;
	if (signo == SIGINT)
		r->sigint_count++;
	if (!r->stopping) {
		begin_stop(r, signo == SIGINT ? LH_EXIT_SIGINT : LH_EXIT_SIGTERM, NULL);
		if (r->n_inflight) {
			if (!r->o->quiet)
				fprintf(stderr, "\nlonghaul: stopping: waiting up to %.0fs for %zu requests in flight "
						"(Ctrl-C again to abort them)\n",
					r->o->grace, r->n_inflight);
			lh_timer_start(r->t_grace, (int64_t)(r->o->grace * 1000));
		}
	} else if (signo == SIGINT && r->sigint_count >= 2) {
		cancel_inflight(r);
	}
	maybe_finish(r);
}

/* ---- progress ---- */

static void fill_progress(struct run *r, struct lh_progress_view *p)
{
	double now = now_mono();
	memset(p, 0, sizeof *p);
	p->state = r->stopping ? "stopping" : "running";
	p->total = r->total;
	p->done = r->done;
	p->dead = r->dead;
	p->retries = r->retries;
	p->in_flight = (int64_t)r->n_inflight;
	p->prompt_tokens = r->prompt_tokens;
	p->completion_tokens = r->completion_tokens;
	p->elapsed = r->prev_run_secs + (now - r->run_started);
	lh_rate_add(&r->rate_items, now, (double)(r->done + r->dead));
	lh_rate_add(&r->rate_tokens, now, (double)r->completion_tokens);
	p->items_per_sec = lh_rate_per_sec(&r->rate_items);
	p->tokens_per_sec = lh_rate_per_sec(&r->rate_tokens);
	p->eta = lh_eta((double)(r->total - r->done - r->dead), p->items_per_sec);
	{
		struct lh_commit_stats cs = r->final_stats;
		if (r->com)
			lh_committer_stats(r->com, &cs);
		p->commits = cs.commits;
		p->items_per_commit = cs.commits ? (double)cs.items / (double)cs.commits : 0;
		p->commit_p50 = lh_hist_quantile(&cs.commit_lat, 0.5);
		p->commit_p99 = lh_hist_quantile(&cs.commit_lat, 0.99);
	}
}

static void on_progress(struct lh_loop *loop, struct lh_timer *t, void *arg)
{
	struct run *r = arg;
	struct lh_progress_view p;
	double now = now_mono();
	(void)loop;
	fill_progress(r, &p);
	if (!r->o->quiet) {
		if (r->o->progress) {
			lh_report_bar(stderr, &p);
			r->drawn = 1;
		} else if (now - r->last_line >= r->o->progress_every) {
			lh_report_line(stderr, &p);
			r->last_line = now;
		}
	}
	if (now - r->last_draw >= 1.0) {
		lh_report_progress_json(r->o->progress_path, r->job.name, &p);
		r->last_draw = now;
	}
	lh_timer_start(t, r->o->progress ? 100 : 250);
}

/* ---- setup ---- */

static int file_sig(const char *path, struct lh_buf *out)
{
	struct stat sb;
	if (stat(path, &sb) != 0)
		return -1;
	return lh_buf_printf(out, "%lld:%lld.%09ld", (long long)sb.st_size, (long long)sb.st_mtim.tv_sec,
			     sb.st_mtim.tv_nsec);
}

static char *source_sig(const struct lh_run_opts *o)
{
	struct lh_buf b;
	lh_buf_init(&b, 0);
	if (o->kind == LH_INPUT_SPEC) {
		const struct lh_spec *s = o->spec;
		char h[LH_SHA256_HEX];
		struct lh_buf k;
		lh_buf_init(&k, 0);
		if (lh_buf_printf(&k, "%s\n%s\n%s\n%s\n%s\n%ld\n%g\n%d", s->prompt ? s->prompt : "",
				  s->system ? s->system : "", s->input_records ? s->input_records : "",
				  s->input_files ? s->input_files : "", s->key_field ? s->key_field : "", s->max_tokens,
				  s->temperature, s->stream) == 0)
			lh_sha256_hex(k.data, k.len, h);
		else
			h[0] = '\0';
		lh_buf_release(&k);
		if (lh_buf_printf(&b, "spec:%.16s;", h) != 0 ||
		    (s->input_records && file_sig(s->input_records, &b) != 0)) {
			/* an unreadable input is reported by ingest */
		}
	} else if (file_sig(o->file, &b) != 0) {
		/* reported by ingest */
	}
	return lh_buf_steal(&b);
}

static int exit_for(int rc)
{
	switch (rc) {
	case LH_EINPUT:
	case LH_EIO:
	case LH_ETOOBIG:
		return LH_EXIT_INPUT;
	case LH_EBUSY:
		return LH_EXIT_LOCKED;
	case LH_ESTORE:
	case LH_ECORRUPT:
	case LH_EFULL:
		return LH_EXIT_STORE;
	case LH_EUSAGE:
		return LH_EXIT_USAGE;
	default:
		return LH_EXIT_INTERNAL;
	}
}

static void remove_store_files(const char *path)
{
	static const char *suffix[] = { "", "-wal", "-shm", "-journal" };
	char p[4096];
	for (size_t i = 0; i < sizeof suffix / sizeof suffix[0]; i++) {
		snprintf(p, sizeof p, "%s%s", path, suffix[i]);
		unlink(p);
	}
}

/* Holds an exclusive flock on the store file for the life of the process:
 * a second `longhaul run` on the same store is refused instead of racing. */
static int lock_store(const char *path, int *fd, struct lh_err *e)
{
	*fd = open(path, O_RDWR | O_CLOEXEC);
	if (*fd < 0)
		return lh_err_at(e, LH_ESTORE, path, 0, NULL, "could not open store: %s", strerror(errno));
	if (flock(*fd, LOCK_EX | LOCK_NB) != 0) {
		close(*fd);
		*fd = -1;
		return lh_err_at(e, LH_EBUSY, path, 0, NULL,
				 "another longhaul process is running this store; wait for it or stop it first");
	}
	return 0;
}

static int prepare_job(struct run *r, int created, struct lh_err *e)
{
	const struct lh_run_opts *o = r->o;
	char ref[4200], *abs = realpath(o->file, NULL);
	char *sig = source_sig(o);
	int rc;
	snprintf(ref, sizeof ref, "run:%s", abs ? abs : o->file);
	free(abs);
	rc = lh_store_job_find(r->st, ref, &r->job, e);
	if (rc == 0 && o->restart) {
		rc = lh_store_job_delete(r->st, r->job.id, e);
		lh_job_rec_release(&r->job);
		if (rc) {
			lh_free(sig);
			return rc;
		}
		rc = LH_ENOTFOUND;
	}
	if (rc == 0) {
		if (strcmp(r->job.source_sig ? r->job.source_sig : "", sig) != 0) {
			rc = lh_err_at(e, LH_EINPUT, o->file, 0, NULL,
				       "the input changed since this job started; run with --restart to start over "
				       "(earlier results are discarded)");
		}
		lh_free(sig);
		return rc;
	}
	if (rc != LH_ENOTFOUND) {
		lh_free(sig);
		return rc;
	}
	lh_err_clear(e);
	/* New job: create and ingest in one transaction, so bad input anywhere
	 * leaves the store as it was. */
	{
		struct lh_job_rec j;
		const char *base = strrchr(o->file, '/');
		int64_t n = 0;
		char *spec_json = o->spec ? lh_spec_to_json(o->spec) : NULL;
		memset(&j, 0, sizeof j);
		j.ref = ref;
		j.name = o->spec && o->spec->name ? o->spec->name : (char *)(base ? base + 1 : o->file);
		j.kind = o->kind == LH_INPUT_BATCH ? "batch" : "spec";
		j.spec = spec_json ? spec_json : "{}";
		j.source_sig = sig;
		snprintf(j.state, sizeof j.state, "queued");
		rc = lh_store_begin(r->st, e);
		if (!rc)
			rc = lh_store_job_create(r->st, &j, e);
		if (!rc)
			rc = lh_store_event_add(r->st, j.id, lh_wall(), "job.queued", NULL, NULL, NULL, e);
		if (!rc) {
			if (o->kind == LH_INPUT_BATCH)
				rc = lh_ingest_batch(r->st, j.id, o->file, o->model == NULL, &n, e);
			else
				rc = lh_ingest_spec(r->st, j.id, o->spec, &n, e);
		}
		if (!rc)
			rc = lh_store_job_set_ingested(r->st, j.id, n, e);
		if (!rc)
			rc = lh_store_commit(r->st, e);
		if (rc)
			lh_store_rollback(r->st);
		free(spec_json);
		if (!rc)
			rc = lh_store_job_get(r->st, j.id, &r->job, e);
	}
	(void)created;
	lh_free(sig);
	return rc;
}

static void print_summary(struct run *r)
{
	const struct lh_run_opts *o = r->o;
	char el[32];
	double secs = r->prev_run_secs + (r->run_started > 0 ? now_mono() - r->run_started : 0);
	lh_time_human(secs, el, sizeof el);
	if (r->exit_code == LH_EXIT_SIGINT || r->exit_code == LH_EXIT_SIGTERM) {
		printf("interrupted: %lld of %lld items finished (%lld failed); nothing finished is lost\n"
		       "resume with the same command: longhaul run %s\n",
		       (long long)(r->done + r->dead), (long long)r->total, (long long)r->dead, o->file);
		return;
	}
	if (r->exit_code == LH_EXIT_STOPPED) {
		fprintf(stderr, "longhaul: %s\n", r->stop_msg);
		return;
	}
	if (r->store_failed) {
		lh_log_err(&r->store_err);
		fprintf(stderr, "longhaul: stopped: the store could not be written; finished work up to the "
				"last commit is kept; free space or fix the store, then run the same command again\n");
		return;
	}
	printf("completed: %lld items, %lld succeeded, %lld failed, %lld retries, %lld prompt + %lld completion "
	       "tokens, %s\n",
	       (long long)r->total, (long long)r->done, (long long)r->dead, (long long)r->retries,
	       (long long)r->prompt_tokens, (long long)r->completion_tokens, el);
	printf("results: %s\n", o->output_path);
	if (r->dead)
		printf("failures: %s\n", o->errors_path);
}

static int finish_outputs(struct run *r, struct lh_err *e)
{
	int rc = lh_report_write_outputs(r->st, &r->job, r->o->output_path, r->o->errors_path, e);
	if (!rc && r->dead && !r->o->quiet)
		rc = lh_report_failures(r->st, r->job.id, stderr, 10, e);
	return rc;
}

int lh_run(const struct lh_run_opts *o)
{
	struct run R, *r = &R;
	struct lh_err e;
	struct lh_store_opts so = { .path = o->store_path, .sync_full = o->sync_full, .create = 1 };
	struct lh_llm_opts lo;
	struct stat sb;
	int created, lockfd = -1, rc;
	int64_t released = 0;
	double next_due = 0;

	memset(r, 0, sizeof *r);
	lh_err_clear(&e);
	r->o = o;
	lh_rand_seed(&r->rnd, 0);
	snprintf(r->owner, sizeof r->owner, "run:%ld", (long)getpid());

	created = stat(o->store_path, &sb) != 0;
	rc = lh_store_open(&so, &r->st, &e);
	if (rc) {
		lh_log_err(&e);
		if (created)
			remove_store_files(o->store_path);
		return exit_for(rc);
	}
	rc = lock_store(o->store_path, &lockfd, &e);
	if (!rc)
		rc = prepare_job(r, created, &e);
	if (rc) {
		lh_log_err(&e);
		lh_store_close(r->st);
		if (created)
			remove_store_files(o->store_path);
		if (lockfd >= 0)
			close(lockfd);
		return exit_for(rc);
	}

	r->total = r->job.n_total;
	r->done = r->job.n_done;
	r->dead = r->job.n_dead;
	r->retries = r->job.n_retries;
	r->prompt_tokens = r->job.prompt_tokens;
	r->completion_tokens = r->job.completion_tokens;
	r->prev_run_secs = r->job.run_secs;

	if (lh_job_state_final(r->job.state)) {
		/* Finished before: no requests, the same outputs again. */
		r->exit_code = r->dead ? LH_EXIT_FAILED_ITEMS : LH_EXIT_OK;
		rc = finish_outputs(r, &e);
		if (rc) {
			lh_log_err(&e);
			r->exit_code = exit_for(rc);
		} else if (!o->quiet) {
			printf("already finished; outputs rewritten from the store\n");
			print_summary(r);
		}
		lh_job_rec_release(&r->job);
		lh_store_close(r->st);
		close(lockfd);
		return r->exit_code;
	}

	/* We hold the store exclusively: any lease left in it belongs to a
	 * process that died. Give those items back now, not at lease expiry. */
	rc = lh_store_begin(r->st, &e);
	if (!rc)
		rc = lh_store_release_leases(r->st, r->job.id, NULL, &released, &e);
	if (!rc) {
		rc = lh_store_next_due(r->st, r->job.id, &next_due, &e);
		if (rc == LH_ENOTFOUND) {
			next_due = 0;
			rc = 0;
			lh_err_clear(&e);
		}
	}
	if (!rc && !strcmp(r->job.state, "running"))
		/* The last run died without a word: not a transition, but worth a line in the log. */
		rc = lh_store_event_add(r->st, r->job.id, lh_wall(), "job.recovered", NULL, NULL, NULL, &e);
	else if (!rc)
		rc = lh_job_transition(r->st, &r->job, "running", NULL, &e);
	if (!rc)
		rc = lh_store_commit(r->st, &e);
	if (rc) {
		lh_store_rollback(r->st);
		lh_log_err(&e);
		lh_job_rec_release(&r->job);
		lh_store_close(r->st);
		close(lockfd);
		return exit_for(rc);
	}

	/* The loop, its signals (blocked before the commit thread starts so
	 * that it inherits the mask), the LLM client and the commit thread. */
	r->loop = lh_loop_new(&e);
	if (!r->loop || lh_loop_signal(r->loop, SIGINT, on_signal, r) || lh_loop_signal(r->loop, SIGTERM, on_signal, r)) {
		lh_log(LH_LOG_ERROR, "could not set up the event loop");
		return LH_EXIT_INTERNAL;
	}
	signal(SIGPIPE, SIG_IGN);
	memset(&lo, 0, sizeof lo);
	lo.max_connections = o->concurrency;
	lo.connect_timeout_ms = (long)(o->connect_timeout * 1000);
	lo.request_timeout_ms = (long)(o->request_timeout * 1000);
	lo.first_token_timeout_ms = (long)(o->first_token_timeout * 1000);
	lo.max_response_bytes = 16u << 20;
	lo.user_agent = "longhaul/0.1";
	r->llm = lh_llm_new(r->loop, &lo, &e);
	r->com = lh_committer_new(r->st, r->job.id, r->owner, o->lease_secs, r->loop, on_committed, r, &e);
	if (!r->llm || !r->com) {
		lh_log_err(&e);
		return LH_EXIT_INTERNAL;
	}
	{
		struct lh_buf u;
		lh_buf_init(&u, 0);
		if (lh_llm_resolve_url(o->base_url, "/v1/chat/completions", &u) != 0) {
			lh_log(LH_LOG_ERROR, "could not build the request url from %s", o->base_url);
			return LH_EXIT_USAGE;
		}
		r->url = lh_buf_steal(&u);
	}
	if (o->kind == LH_INPUT_SPEC) {
		const char *model = o->model ? o->model : o->spec->model;
		struct lh_buf p;
		lh_buf_init(&p, 0);
		if (lh_buf_puts(&p, "{\"model\":") || lh_buf_json_str(&p, model, strlen(model)) || lh_buf_putc(&p, ','))
			return LH_EXIT_INTERNAL;
		r->model_prefix_len = p.len;
		r->model_prefix = lh_buf_steal(&p);
		r->stream = o->spec->stream;
	}
	r->limit = r->limit_max = o->concurrency;
	r->claim_batch = (size_t)(o->concurrency * 2 < 256 ? 256 : o->concurrency * 2);
	if (r->claim_batch > 4096)
		r->claim_batch = 4096;
	r->t_progress = lh_timer_new(r->loop, on_progress, r);
	r->t_retry = lh_timer_new(r->loop, on_retry_due, r);
	r->t_grace = lh_timer_new(r->loop, on_grace, r);
	r->t_lane = lh_timer_new(r->loop, on_lane, r);
	lh_rate_init(&r->rate_items, 10.0);
	lh_rate_init(&r->rate_tokens, 10.0);
	r->run_started = now_mono();
	r->last_line = r->run_started;
	if (lh_loop_add_hook(r->loop, before_sleep, r))
		return LH_EXIT_INTERNAL;
	lh_timer_start(r->t_progress, 0);
	if (next_due > 0)
		arm_retry(r, next_due - lh_wall());
	if (released && !o->quiet)
		fprintf(stderr, "longhaul: resuming: %lld requests were in flight at the last stop and will be sent again\n",
			(long long)released);
	dispatch(r);
	maybe_finish(r);

	if (lh_loop_run(r->loop) != 0)
		lh_log(LH_LOG_ERROR, "the event loop failed: %s", strerror(errno));

	/* Drained: nothing in flight, nothing staged. */
	lh_committer_add_runtime(r->com, now_mono() - r->run_started);
	{
		struct lh_claimed c;
		while (ready_pop(r, &c))
			stage_release(r, &c);
	}
	if (r->nheld)
		flush_held(r, 0);
	lh_committer_flush(r->com);
	lh_committer_stats(r->com, &r->final_stats);
	lh_committer_free(r->com);
	r->com = NULL;
	if (r->drawn && !o->quiet)
		fputc('\n', stderr);

	{
		struct lh_progress_view p;
		const char *to = NULL;
		fill_progress(r, &p);
		if (r->exit_code == LH_EXIT_OK || r->exit_code == LH_EXIT_FAILED_ITEMS)
			to = "completed";
		else if (!r->store_failed)
			to = "paused";
		if (to && !lh_job_transition(r->st, &r->job, to, NULL, &e) && !strcmp(to, "completed"))
			p.state = "completed";
		else
			p.state = to ? to : "stopped";
		lh_report_progress_json(o->progress_path, r->job.name, &p);
	}
	if (!r->store_failed) {
		rc = finish_outputs(r, &e);
		if (rc) {
			lh_log_err(&e);
			if (r->exit_code == LH_EXIT_OK || r->exit_code == LH_EXIT_FAILED_ITEMS)
				r->exit_code = exit_for(rc);
		}
	}
	if (!o->quiet || r->exit_code != LH_EXIT_OK)
		print_summary(r);

	lh_timer_free(r->t_progress);
	lh_timer_free(r->t_retry);
	lh_timer_free(r->t_grace);
	lh_timer_free(r->t_lane);
	lh_llm_free(r->llm);
	lh_loop_free(r->loop);
	lh_free(r->url);
	lh_free(r->model_prefix);
	lh_free(r->ready);
	lh_job_rec_release(&r->job);
	lh_store_close(r->st);
	close(lockfd);
	return r->exit_code;
}
