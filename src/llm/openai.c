/*
 * llm layer: the OpenAI flavour (flavour.h) over the HTTP transport
 * (transport.c). What is OpenAI's: the Authorization: Bearer header,
 * "stream": true in a request body, chat.completion.chunk events in a
 * server-sent event stream (content, reasoning, finish_reason, usage, id),
 * the x-request-id and x-ratelimit-* headers, and turning an answer or an
 * error body into a verdict (classify.c).
 *
 * A streamed answer is assembled into a chat.completion body, so that the
 * engine and the journal see one shape whether the call streamed or not.
 * Chunks are read with the zero-allocation scanner (util/jscan.h); only an
 * error inside a stream, the rare path, goes through jansson.
 */
#include "llm/flavour.h"
#include "llm/sse.h"
#include "util/jscan.h"
#include "util/mem.h"
#include "util/time.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* Why the stream handlers stopped the SSE parser (feed's positive codes). */
enum oa_abort {
	OA_BAD_CHUNK = 1,
	OA_STREAM_ERROR = 2,
	OA_TOO_LARGE = 3
};

/* One request's state: the headers that matter and what a streamed
 * answer has said so far. */
struct oa_state {
	struct lh_sse sse;
	struct lh_buf content;
	struct lh_buf reasoning;
	struct lh_buf out; /* the assembled chat.completion */
	char id[128], model[128], finish[32];
	int64_t created;
	int64_t prompt_tokens, completion_tokens;
	int saw_data, saw_done;
	enum oa_abort why;
	char message[512]; /* an error sent inside the stream */
	char request_id[128];
	double rl_rem_req, rl_rem_tok, rl_reset_req, rl_reset_tok;
};

/* ---- requests ---- */

static int oa_wants_stream(const char *body, size_t len)
{
	struct jscan_v j, v;
	return jscan_parse(body, len, &j) == 0 && jscan_get(&j, "stream", &v) == 0 && v.type == 't';
}

/* ---- headers ---- */

static int hdr_is(const char *name, size_t n, const char *want)
{
	return strlen(want) == n && strncasecmp(name, want, n) == 0;
}

static double number_or_absent(const char *v, size_t n)
{
	double secs;
	return lh_llm_parse_duration(v, n, &secs) == 0 ? secs : -1;
}

/* A reset given as a Unix time rather than a duration (some gateways). */
static double reset_secs(const char *v, size_t n)
{
	double secs = number_or_absent(v, n), now;
	if (secs > 1e9) {
		now = lh_wall();
		secs = secs > now ? secs - now : 0;
	}
	return secs;
}

static void oa_response_start(void *arg)
{
	struct oa_state *st = arg;
	st->rl_rem_req = st->rl_rem_tok = st->rl_reset_req = st->rl_reset_tok = -1;
	st->request_id[0] = '\0';
}

static void oa_header(void *arg, const char *name, size_t nl, const char *v, size_t vl)
{
	struct oa_state *st = arg;
	if (hdr_is(name, nl, "x-request-id")) {
		size_t n = vl < sizeof st->request_id - 1 ? vl : sizeof st->request_id - 1;
		memcpy(st->request_id, v, n);
		st->request_id[n] = '\0';
	} else if (hdr_is(name, nl, "x-ratelimit-remaining-requests")) {
		st->rl_rem_req = number_or_absent(v, vl);
	} else if (hdr_is(name, nl, "x-ratelimit-remaining-tokens")) {
		st->rl_rem_tok = number_or_absent(v, vl);
	} else if (hdr_is(name, nl, "x-ratelimit-reset-requests")) {
		st->rl_reset_req = reset_secs(v, vl);
	} else if (hdr_is(name, nl, "x-ratelimit-reset-tokens")) {
		st->rl_reset_tok = reset_secs(v, vl);
	}
}

/* ---- streamed chunks ---- */

/* Copies a short string member (id, model, finish_reason), cut to fit. */
static void copy_str(char *dst, size_t dstsz, const struct jscan_v *v)
{
	struct lh_buf b;
	size_t n;
	if (v->type != 's')
		return;
	n = v->n - 2;
	if (!memchr(v->p + 1, '\\', n)) {
		/* The usual case: nothing to unescape, nothing to allocate. */
		if (n >= dstsz) {
			/* Cut at a character boundary: the text goes back into JSON. */
			n = dstsz - 1;
			while (n && ((unsigned char)v->p[1 + n] & 0xc0) == 0x80)
				n--;
		}
		memcpy(dst, v->p + 1, n);
		dst[n] = '\0';
		return;
	}
	lh_buf_init(&b, dstsz - 1);
	if (jscan_str(v, &b) == 0 && b.data)
		memcpy(dst, b.data, b.len + 1);
	lh_buf_release(&b);
}

static int append_str(struct lh_buf *b, const struct jscan_v *v)
{
	if (v->type != 's')
		return 0;
	return jscan_str(v, b) ? OA_TOO_LARGE : 0;
}

static int absorb_choice(struct oa_state *st, const struct jscan_v *ch)
{
	struct jscan_v idx, delta, v;
	int rc;
	/* Only the first choice is assembled; n > 1 needs a non-streaming call. */
	if (jscan_get(ch, "index", &idx) == 0 && jscan_int(&idx) != 0)
		return 0;
	jscan_get(ch, "delta", &delta);
	jscan_get(&delta, "content", &v);
	rc = append_str(&st->content, &v);
	if (!rc && jscan_get(&delta, "reasoning_content", &v) == 0)
		rc = append_str(&st->reasoning, &v);
	if (!rc && jscan_get(&delta, "reasoning", &v) == 0)
		rc = append_str(&st->reasoning, &v);
	if (jscan_get(ch, "finish_reason", &v) == 0)
		copy_str(st->finish, sizeof st->finish, &v);
	return rc;
}

/* Records the message of an error sent inside a stream. The rare path:
 * jansson's convenience is worth its cost here. */
static void stream_error(struct oa_state *st, const char *data, size_t len)
{
	json_t *j = json_loadb(data, len, 0, NULL), *e = json_object_get(j, "error");
	const char *m = json_string_value(e);
	if (!m)
		m = json_string_value(json_object_get(json_is_object(e) ? e : j, "message"));
	snprintf(st->message, sizeof st->message, "error in the stream: %s", m ? m : "no message");
	json_decref(j);
}

static void absorb_usage(struct oa_state *st, const struct jscan_v *j)
{
	struct jscan_v u, v;
	if (jscan_get(j, "usage", &u) != 0 || u.type != 'o')
		return;
	if (jscan_get(&u, "prompt_tokens", &v) == 0 && v.type == 'n')
		st->prompt_tokens = jscan_int(&v);
	if (jscan_get(&u, "completion_tokens", &v) == 0 && v.type == 'n')
		st->completion_tokens = jscan_int(&v);
}

static int absorb_chunk(struct oa_state *st, const char *data, size_t len, const char *event)
{
	struct jscan_v j, choices, ch, v;
	size_t pos = 0;
	int rc;
	if (jscan_parse(data, len, &j) != 0 || j.type != 'o')
		return OA_BAD_CHUNK;
	if (strcmp(event, "error") == 0 || jscan_get(&j, "error", &v) == 0) {
		stream_error(st, data, len);
		return OA_STREAM_ERROR;
	}
	if (!st->id[0] && jscan_get(&j, "id", &v) == 0)
		copy_str(st->id, sizeof st->id, &v);
	if (!st->model[0] && jscan_get(&j, "model", &v) == 0)
		copy_str(st->model, sizeof st->model, &v);
	if (!st->created && jscan_get(&j, "created", &v) == 0 && v.type == 'n')
		st->created = jscan_int(&v);
	jscan_get(&j, "choices", &choices);
	while (jscan_next(&choices, &pos, &ch))
		if ((rc = absorb_choice(st, &ch)) != 0)
			return rc;
	absorb_usage(st, &j);
	return 0;
}

static int on_event(const char *event, const char *data, size_t len, const char *id, void *arg)
{
	struct oa_state *st = arg;
	(void)id;
	st->saw_data = 1;
	if (st->saw_done)
		return 0;
	if (len == 6 && memcmp(data, "[DONE]", 6) == 0) {
		st->saw_done = 1;
		return 0;
	}
	return absorb_chunk(st, data, len, event);
}

static int oa_feed(void *arg, const char *p, size_t n)
{
	struct oa_state *st = arg;
	int rc = lh_sse_feed(&st->sse, p, n);
	if (rc > 0)
		st->why = (enum oa_abort)rc;
	return rc == OA_TOO_LARGE ? LH_ETOOBIG : rc;
}

static int oa_has_data(const void *arg)
{
	const struct oa_state *st = arg;
	return st->saw_data;
}

/* ---- state ---- */

static void *oa_state_new(size_t max)
{
	struct oa_state *st = lh_xcalloc(1, sizeof *st);
	lh_buf_init(&st->content, max);
	lh_buf_init(&st->reasoning, max);
	lh_buf_init(&st->out, 0);
	lh_sse_init(&st->sse, max, on_event, st);
	return st;
}

static void oa_state_reset(void *arg)
{
	struct oa_state *st = arg;
	lh_sse_reset(&st->sse);
	lh_buf_clear(&st->content);
	lh_buf_clear(&st->reasoning);
	st->id[0] = st->model[0] = st->finish[0] = '\0';
	st->created = 0;
	st->prompt_tokens = st->completion_tokens = -1;
	st->saw_data = st->saw_done = 0;
	st->why = 0;
	st->message[0] = '\0';
	oa_response_start(st);
}

/* Pooled buffers larger than this are released, so that one huge answer
 * does not pin its memory for the life of the process. */
#define KEEP_BUF_BYTES ((size_t)64 << 10)

static void buf_recycle(struct lh_buf *b)
{
	if (b->cap > KEEP_BUF_BYTES)
		lh_buf_release(b);
	else
		lh_buf_clear(b);
}

static void oa_state_trim(void *arg)
{
	struct oa_state *st = arg;
	buf_recycle(&st->out);
	buf_recycle(&st->content);
	buf_recycle(&st->reasoning);
	buf_recycle(&st->sse.line);
	buf_recycle(&st->sse.data);
}

static void oa_state_free(void *arg)
{
	struct oa_state *st = arg;
	if (!st)
		return;
	lh_buf_release(&st->out);
	lh_buf_release(&st->content);
	lh_buf_release(&st->reasoning);
	lh_sse_release(&st->sse);
	lh_free(st);
}

/* ---- results ---- */

static int build_stream_body(struct oa_state *st)
{
	struct lh_buf *b = &st->out;
	int rc;
	lh_buf_clear(b);
	rc = lh_buf_puts(b, "{\"id\":");
	rc |= lh_buf_json_str(b, st->id, strlen(st->id));
	rc |= lh_buf_printf(b, ",\"object\":\"chat.completion\",\"created\":%lld,\"model\":", (long long)st->created);
	rc |= lh_buf_json_str(b, st->model, strlen(st->model));
	rc |= lh_buf_puts(b, ",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":");
	rc |= lh_buf_json_str(b, st->content.data ? st->content.data : "", st->content.len);
	if (st->reasoning.len) {
		rc |= lh_buf_puts(b, ",\"reasoning_content\":");
		rc |= lh_buf_json_str(b, st->reasoning.data, st->reasoning.len);
	}
	rc |= lh_buf_puts(b, "},\"finish_reason\":");
	if (st->finish[0])
		rc |= lh_buf_json_str(b, st->finish, strlen(st->finish));
	else
		rc |= lh_buf_puts(b, "null");
	rc |= lh_buf_puts(b, "}]");
	if (st->prompt_tokens >= 0 && st->completion_tokens >= 0)
		rc |= lh_buf_printf(b, ",\"usage\":{\"prompt_tokens\":%lld,\"completion_tokens\":%lld,\"total_tokens\":%lld}",
				    (long long)st->prompt_tokens, (long long)st->completion_tokens,
				    (long long)(st->prompt_tokens + st->completion_tokens));
	rc |= lh_buf_putc(b, '}');
	return rc;
}

static void stream_result(struct oa_state *st, struct lh_llm_result *res, char *msg, size_t msgsz)
{
	if (!st->saw_done && !st->finish[0]) {
		res->outcome = LH_LLM_TRANSIENT;
		res->error_code = "truncated";
		snprintf(msg, msgsz, "the stream ended without [DONE] or a finish_reason");
		return;
	}
	if (build_stream_body(st) != 0) {
		res->outcome = LH_LLM_PERMANENT;
		res->error_code = "response_too_large";
		snprintf(msg, msgsz, "the assembled answer is too large");
		return;
	}
	res->body = st->out.data;
	res->body_len = st->out.len;
	res->prompt_tokens = st->prompt_tokens;
	res->completion_tokens = st->completion_tokens;
}

static void stream_abort(struct oa_state *st, struct lh_llm_result *res, char *msg, size_t msgsz)
{
	if (st->why == OA_STREAM_ERROR) {
		res->outcome = LH_LLM_TRANSIENT;
		res->error_code = "stream_error";
		snprintf(msg, msgsz, "%s", st->message);
	} else {
		res->outcome = LH_LLM_TRANSIENT;
		res->error_code = "invalid_json";
		snprintf(msg, msgsz, "a stream chunk is not a JSON object");
	}
}

static void judged_result(const struct llm_raw *raw, struct lh_llm_result *res, char *msg, size_t msgsz)
{
	struct lh_llm_verdict v;
	if (!raw->streamed) {
		res->body = raw->body;
		res->body_len = raw->body_len;
	}
	lh_llm_judge(raw->status, raw->curl_code, res->body, res->body_len, &v);
	res->outcome = v.outcome;
	res->error_code = v.code;
	res->prompt_tokens = v.prompt_tokens;
	res->completion_tokens = v.completion_tokens;
	snprintf(msg, msgsz, "%s", raw->transport_message[0] ? raw->transport_message : v.message);
}

static void oa_result(void *arg, const struct llm_raw *raw, struct lh_llm_result *res, char *msg, size_t msgsz)
{
	struct oa_state *st = arg;
	res->request_id = st->request_id[0] ? st->request_id : NULL;
	res->ratelimit_remaining_requests = st->rl_rem_req;
	res->ratelimit_remaining_tokens = st->rl_rem_tok;
	res->ratelimit_reset_requests = st->rl_reset_req;
	res->ratelimit_reset_tokens = st->rl_reset_tok;
	if (raw->abort == LLM_ABORT_FLAVOUR)
		stream_abort(st, res, msg, msgsz);
	else if (raw->abort != LLM_ABORT_NONE)
		return; /* the transport's own verdict stands */
	else if (raw->streamed && raw->curl_code == 0)
		stream_result(st, res, msg, msgsz);
	else
		judged_result(raw, res, msg, msgsz);
}

const struct llm_flavour llm_openai = {
	.name = "openai",
	.auth_prefix = "Authorization: Bearer ",
	.accept = "Accept: application/json",
	.accept_stream = "Accept: text/event-stream",
	.wants_stream = oa_wants_stream,
	.state_new = oa_state_new,
	.state_reset = oa_state_reset,
	.state_trim = oa_state_trim,
	.state_free = oa_state_free,
	.response_start = oa_response_start,
	.header = oa_header,
	.feed = oa_feed,
	.has_data = oa_has_data,
	.result = oa_result,
};
