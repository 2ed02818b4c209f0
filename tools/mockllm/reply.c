/*
 * The chat completions behaviour (see reply.h). The request is parsed with
 * jansson; replies are written by hand into buffers, which is several times
 * faster than building jansson trees and dumping them.
 *
 * Order of decisions for one request: API key, JSON shape (with the tool
 * traffic of the conversation), model, context length, per-prompt
 * triggers, random faults, and then the reply: tool calls, the text after
 * tool results, or the echo.
 */
#define _GNU_SOURCE
#include "reply.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "http.h"
#include "mockllm.h"
#include "util.h"

/* [[sleep:MS]] is capped at one hour so a typo cannot park a request for days. */
#define SLEEP_MAX_MS 3600000L
/* [[rounds:K]] is at most this many tool rounds. */
#define ROUNDS_MAX 100
/* An assistant message may carry at most this many tool calls (bounds the matching). */
#define MSG_MAX_CALLS 128

void reply_init(struct reply *r)
{
	memset(r, 0, sizeof(*r));
	buf_init(&r->content);
	buf_init(&r->model);
	buf_init(&r->calls);
}

void reply_release(struct reply *r)
{
	buf_release(&r->content);
	buf_release(&r->model);
	buf_release(&r->calls);
}

/* Whitespace as the word counter sees it: ASCII only, so cuts keep UTF-8 whole. */
static bool is_ws(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static long long count_words(const char *s, size_t n)
{
	long long words = 0;
	bool in_word = false;

	for (size_t i = 0; i < n; i++) {
		bool ws = is_ws(s[i]);

		if (!ws && !in_word)
			words++;
		in_word = !ws;
	}
	return words;
}

/* Offset just past the end of the word that starts at or after pos. */
static size_t word_end(const char *s, size_t n, size_t pos)
{
	while (pos < n && is_ws(s[pos]))
		pos++;
	while (pos < n && !is_ws(s[pos]))
		pos++;
	return pos;
}

static enum outcome outcome_of_status(int status)
{
	switch (status) {
	case 400: return OC_400;
	case 401: return OC_401;
	case 404: return OC_404;
	case 429: return OC_429;
	case 500: return OC_500;
	case 503: return OC_503;
	default: return OC_OTHER;
	}
}

/* Turns r into an error answer whose body is the OpenAI error object. */
static enum outcome set_error(struct reply *r, int status, const char *type,
			      const char *code, const char *msg, size_t msg_len)
{
	r->kind = RK_ERROR;
	r->status = status;
	r->ncalls = 0;
	buf_clear(&r->content);
	buf_puts(&r->content, "{\"error\":{\"message\":");
	buf_json_str(&r->content, msg, msg_len);
	buf_printf(&r->content, ",\"type\":\"%s\",\"code\":\"%s\"}}", type, code);
	return outcome_of_status(status);
}

static enum outcome set_error_s(struct reply *r, int status, const char *type,
				const char *code, const char *msg)
{
	return set_error(r, status, type, code, msg, strlen(msg));
}

static enum outcome set_context_error(struct reply *r, long long limit, long long used)
{
	char msg[256];
	int n = snprintf(msg, sizeof(msg),
			 "This model's maximum context length is %lld tokens. However, your "
			 "messages resulted in %lld tokens. Please reduce the length of the "
			 "messages.", limit, used);

	return set_error(r, 400, "invalid_request_error", "context_length_exceeded",
			 msg, n > 0 && (size_t)n < sizeof(msg) ? (size_t)n : strlen(msg));
}

static enum outcome set_kind(struct reply *r, enum reply_kind kind, enum outcome oc)
{
	r->kind = kind;
	r->status = 200;
	return oc;
}

/*
 * Adds the words of a message's content to *words and, when text is not
 * NULL, appends its text (parts joined by one space). Returns false when the
 * content has a shape OpenAI would reject.
 */
static bool message_text(json_t *content, long long *words, struct buf *text)
{
	size_t i;
	json_t *part;
	bool first = true;

	if (content == NULL || json_is_null(content))
		return true;
	if (json_is_string(content)) {
		const char *s = json_string_value(content);
		size_t n = json_string_length(content);

		*words += count_words(s, n);
		if (text != NULL)
			buf_append(text, s, n);
		return true;
	}
	if (!json_is_array(content))
		return false;
	json_array_foreach(content, i, part) {
		json_t *type = json_object_get(part, "type");
		json_t *t = json_object_get(part, "text");

		if (!json_is_object(part) || !json_is_string(type))
			return false;
		if (strcmp(json_string_value(type), "text") != 0)
			continue; /* images and audio carry no words */
		if (!json_is_string(t))
			return false;
		*words += count_words(json_string_value(t), json_string_length(t));
		if (text != NULL) {
			if (!first)
				buf_append(text, " ", 1);
			buf_append(text, json_string_value(t), json_string_length(t));
		}
		first = false;
	}
	return true;
}

/*
 * Finds "[[name:value]]" in s and copies value (at most cap-1 bytes) into
 * val. Returns false when absent or malformed.
 */
static bool find_trigger(const char *s, size_t n, const char *name, char *val, size_t cap)
{
	char tag[16];
	int tlen = snprintf(tag, sizeof(tag), "[[%s:", name);
	const char *p = s, *end = s + n;

	if (tlen <= 0 || (size_t)tlen >= sizeof(tag))
		return false;
	while ((p = memmem(p, (size_t)(end - p), tag, (size_t)tlen)) != NULL) {
		const char *v = p + tlen;
		size_t i = 0;

		while (v + i + 1 < end && i + 1 < cap && !(v[i] == ']' && v[i + 1] == ']'))
			i++;
		if (v + i + 1 < end && v[i] == ']' && v[i + 1] == ']' && i > 0) {
			memcpy(val, v, i);
			val[i] = '\0';
			return true;
		}
		p = v;
	}
	return false;
}

/* Parses a decimal of at most 9 digits; -1 when it is not one. */
static long parse_small(const char *s)
{
	char *end;
	long v;

	if (*s < '0' || *s > '9' || strlen(s) > 9)
		return -1;
	v = strtol(s, &end, 10);
	return *end == '\0' ? v : -1;
}

/* Applies [[fail:X]]; returns OC_COUNT when X names no known failure. */
static enum outcome apply_fail_trigger(struct reply *r, const char *x)
{
	char msg[64];
	long status;

	if (strcmp(x, "context") == 0)
		return set_context_error(r, mock_cfg.context_tokens > 0 ? mock_cfg.context_tokens : 4096,
					 r->prompt_tokens);
	if (strcmp(x, "quota") == 0)
		return set_error_s(r, 429, "insufficient_quota", "insufficient_quota",
				   "You exceeded your current quota, please check your plan and billing details.");
	if (strcmp(x, "hang") == 0)
		return set_kind(r, RK_HANG, OC_HANG);
	if (strcmp(x, "reset") == 0)
		return set_kind(r, RK_RESET, OC_RESET);
	if (strcmp(x, "truncate") == 0)
		return set_kind(r, RK_TRUNCATE, OC_TRUNCATE);
	if (strcmp(x, "badjson") == 0)
		return set_kind(r, RK_BADJSON, OC_BADJSON);
	status = parse_small(x);
	if (status < 400 || status > 599)
		return OC_COUNT;
	snprintf(msg, sizeof(msg), "forced failure %ld", status);
	r->retry_after = status == 429;
	return set_error_s(r, (int)status,
			   status == 429 ? "rate_limit_error" :
			   status >= 500 ? "server_error" : "invalid_request_error",
			   "forced_failure", msg);
}

/* One uniform draw against the cumulative fault rates, in enum fault order. */
static enum outcome apply_random_fault(struct reply *r, uint64_t *rng)
{
	double u, acc = 0;
	int f;

	for (f = 0; f < FAULT_COUNT; f++)
		acc += mock_cfg.fault[f];
	if (acc <= 0)
		return OC_COUNT;
	u = rng_unit(rng);
	acc = 0;
	for (f = 0; f < FAULT_COUNT; f++) {
		acc += mock_cfg.fault[f];
		if (u < acc)
			break;
	}
	switch (f) {
	case FAULT_429:
		r->retry_after = true;
		return set_error_s(r, 429, "rate_limit_error", "rate_limit_exceeded", "rate limited");
	case FAULT_500:
		return set_error_s(r, 500, "server_error", "server_error",
				   "The server had an error while processing your request.");
	case FAULT_503:
		return set_error_s(r, 503, "server_error", "service_unavailable",
				   "The server is overloaded or not ready yet.");
	case FAULT_HANG:
		return set_kind(r, RK_HANG, OC_HANG);
	case FAULT_RESET:
		return set_kind(r, RK_RESET, OC_RESET);
	case FAULT_TRUNCATE:
		return set_kind(r, RK_TRUNCATE, OC_TRUNCATE);
	case FAULT_BADJSON:
		return set_kind(r, RK_BADJSON, OC_BADJSON);
	default:
		return OC_COUNT;
	}
}

static uint64_t base_delay_ns(uint64_t *rng)
{
	double ms = mock_cfg.latency_ms;

	if (mock_cfg.jitter_ms > 0)
		ms += (rng_unit(rng) * 2 - 1) * mock_cfg.jitter_ms;
	if (ms <= 0)
		return 0;
	return (uint64_t)(ms * 1e6);
}

static bool model_known(const char *name)
{
	if (mock_cfg.nmodels == 0)
		return true;
	for (size_t i = 0; i < mock_cfg.nmodels; i++)
		if (strcmp(mock_cfg.models[i], name) == 0)
			return true;
	return false;
}

/* Reads max_completion_tokens or max_tokens: -1 absent, -2 invalid. */
static long long max_tokens_of(json_t *root)
{
	json_t *v = json_object_get(root, "max_completion_tokens");

	if (v == NULL || json_is_null(v))
		v = json_object_get(root, "max_tokens");
	if (v == NULL || json_is_null(v))
		return -1;
	if (!json_is_integer(v) || json_integer_value(v) < 0)
		return -2;
	return json_integer_value(v);
}

/* ---- the conversation: tools, tool calls, turns ---- */

/* What the walk over the messages learnt about the conversation. */
struct conv {
	json_t *tools;        /* the request's tools array, or NULL (borrowed) */
	size_t last_user;     /* index of the last user message, or SIZE_MAX */
	size_t last_asst;     /* index of the last assistant message, or SIZE_MAX */
	long long assistants; /* assistant messages */
	long long rounds;     /* assistant messages with tool calls after the last user message */
	bool last_is_tool;    /* the conversation ends with a tool message */
	bool tool_traffic;    /* tools offered, or a tool message or a tool call present */
	bool turns;           /* [[turns]] in a user or system message */
};

/* A 400 whose message is formatted (names in it are cut to keep it short). */
static enum outcome bad_request(struct reply *r, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static enum outcome bad_request(struct reply *r, const char *code, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return set_error(r, 400, "invalid_request_error", code, msg,
			 n > 0 && (size_t)n < sizeof(msg) ? (size_t)n : strlen(msg));
}

/* Checks the request's tools; returns OC_COUNT when absent or well formed. */
static enum outcome check_tools(struct reply *r, json_t *tools)
{
	static const char code[] = "invalid_request_error";
	size_t i;
	json_t *t;

	if (tools == NULL || json_is_null(tools))
		return OC_COUNT;
	if (!json_is_array(tools))
		return bad_request(r, code, "'tools' must be an array of function tools");
	json_array_foreach(tools, i, t) {
		json_t *type = json_object_get(t, "type");
		json_t *fn = json_object_get(t, "function");

		if (!json_is_object(t))
			return bad_request(r, code, "tools[%zu] must be an object", i);
		if (!json_is_string(type) || strcmp(json_string_value(type), "function") != 0)
			return bad_request(r, code, "tools[%zu].type must be \"function\"", i);
		if (!json_is_object(fn))
			return bad_request(r, code, "tools[%zu].function must be an object", i);
		if (!json_is_string(json_object_get(fn, "name")))
			return bad_request(r, code, "tools[%zu].function.name must be a string", i);
	}
	return OC_COUNT;
}

/*
 * Checks an assistant message's tool_calls and adds the words of their
 * arguments to *words. Returns how many there are, or -1 when malformed.
 */
static long calls_of(json_t *calls, long long *words)
{
	size_t i;
	json_t *c;

	if (calls == NULL || json_is_null(calls))
		return 0;
	if (!json_is_array(calls) || json_array_size(calls) > MSG_MAX_CALLS)
		return -1;
	json_array_foreach(calls, i, c) {
		json_t *fn = json_object_get(c, "function");
		json_t *args = json_object_get(fn, "arguments");

		if (!json_is_string(json_object_get(c, "id")) ||
		    !json_is_string(json_object_get(fn, "name")) || !json_is_string(args))
			return -1;
		*words += count_words(json_string_value(args), json_string_length(args));
	}
	return (long)json_array_size(calls);
}

/* Index of the call of calls whose id is id, or -1. */
static long call_index(json_t *calls, json_t *id)
{
	size_t i;
	json_t *c;

	json_array_foreach(calls, i, c)
		if (json_equal(json_object_get(c, "id"), id))
			return (long)i;
	return -1;
}

/* Whether a message's text (a string, or its text parts) holds needle. */
static bool content_has(json_t *content, const char *needle)
{
	size_t i, n = strlen(needle);
	json_t *part;

	if (json_is_string(content))
		return memmem(json_string_value(content), json_string_length(content), needle, n) != NULL;
	json_array_foreach(content, i, part) {
		json_t *t = json_object_get(part, "text");

		if (json_is_string(t) && memmem(json_string_value(t), json_string_length(t), needle, n))
			return true;
	}
	return false;
}

/* The 400 for an assistant message's tool calls that were not all answered. */
static enum outcome unanswered(struct reply *r, json_t *calls, size_t at, const bool *answered)
{
	size_t j = 0;

	while (j + 1 < json_array_size(calls) && answered[j])
		j++;
	return bad_request(r, "invalid_tool_call_id",
			   "an assistant message with 'tool_calls' must be followed by tool messages "
			   "answering each of them: messages[%zu] has '%.64s' unanswered", at,
			   json_string_value(json_object_get(json_array_get(calls, j), "id")));
}

/*
 * Validates every message, counts the prompt's words into r->prompt_tokens
 * and fills cv. A tool message must answer, once, a call of the assistant
 * message just before its run of tool messages, and every call must be
 * answered. Returns OC_COUNT when the messages are acceptable.
 */
static enum outcome walk_messages(struct reply *r, json_t *messages, struct conv *cv)
{
	json_t *msg, *open = NULL;   /* tool calls still waiting for tool messages */
	size_t i, open_at = 0, nanswered = 0;
	bool answered[MSG_MAX_CALLS];

	r->prompt_tokens = 0;
	json_array_foreach(messages, i, msg) {
		json_t *role = json_object_get(msg, "role");
		json_t *content = json_object_get(msg, "content");
		const char *rs;
		long n;

		if (!json_is_object(msg) || !json_is_string(role) ||
		    !message_text(content, &r->prompt_tokens, NULL))
			return set_error_s(r, 400, "invalid_request_error", "invalid_request_error",
					   "each message needs a string role and a string or array content");
		rs = json_string_value(role);
		cv->last_is_tool = strcmp(rs, "tool") == 0;
		if (cv->last_is_tool) {
			json_t *id = json_object_get(msg, "tool_call_id");
			long j = open != NULL && json_is_string(id) ? call_index(open, id) : -1;

			cv->tool_traffic = true;
			if (!json_is_string(id))
				return bad_request(r, "invalid_tool_call_id",
						   "messages[%zu]: a tool message needs a string 'tool_call_id'", i);
			if (j < 0 || answered[j])
				return bad_request(r, "invalid_tool_call_id",
						   "messages[%zu]: tool_call_id '%.64s' %s", i,
						   json_string_value(id), j < 0 ?
						   "does not match a tool call of the preceding assistant message" :
						   "answers a tool call that was already answered");
			answered[j] = true;
			nanswered++;
			continue;
		}
		if (open != NULL && nanswered < json_array_size(open))
			return unanswered(r, open, open_at, answered);
		open = NULL;
		if ((strcmp(rs, "user") == 0 || strcmp(rs, "system") == 0) &&
		    content_has(content, "[[turns]]"))
			cv->turns = true;
		if (strcmp(rs, "user") == 0) {
			cv->last_user = i;
			cv->rounds = 0;
		}
		if (strcmp(rs, "assistant") != 0)
			continue;
		cv->assistants++;
		cv->last_asst = i;
		n = calls_of(json_object_get(msg, "tool_calls"), &r->prompt_tokens);
		if (n < 0)
			return bad_request(r, "invalid_request_error",
					   "messages[%zu].tool_calls must be an array of at most %d calls, "
					   "each with a string id and a function with string name and arguments",
					   i, MSG_MAX_CALLS);
		if (n > 0) {
			open = json_object_get(msg, "tool_calls");
			open_at = i;
			nanswered = 0;
			memset(answered, 0, sizeof(answered));
			cv->rounds++;
			cv->tool_traffic = true;
		}
	}
	if (open != NULL && nanswered < json_array_size(open))
		return unanswered(r, open, open_at, answered);
	if (r->prompt_tokens < 1)
		r->prompt_tokens = 1;
	return OC_COUNT;
}

static bool tool_offered(json_t *tools, const char *name, size_t n)
{
	size_t i;
	json_t *t;

	json_array_foreach(tools, i, t) {
		json_t *v = json_object_get(json_object_get(t, "function"), "name");

		if (json_string_length(v) == n && memcmp(json_string_value(v), name, n) == 0)
			return true;
	}
	return false;
}

/* Appends JSON text without the whitespace between its tokens; strings stay as written. */
static void compact_json(struct buf *b, const char *s, size_t n)
{
	bool in_str = false, esc = false;
	size_t run = 0;

	for (size_t i = 0; i < n; i++) {
		char c = s[i];

		if (in_str) {
			if (esc)
				esc = false;
			else if (c == '\\')
				esc = true;
			else if (c == '"')
				in_str = false;
			continue;
		}
		if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
			buf_append(b, s + run, i - run);
			run = i + 1;
		} else if (c == '"') {
			in_str = true;
		}
	}
	buf_append(b, s + run, n - run);
}

/*
 * Reads the [[tool:NAME ARGS]] markers of s (ARGS a JSON object, or nothing
 * for {}) that name an offered tool into r->calls, in order. Markers with
 * another name or ARGS that are not a JSON object are ignored.
 */
static void read_tool_markers(struct reply *r, const char *s, size_t n, json_t *tools)
{
	const char *p = s, *end = s + n;

	while (r->ncalls < REPLY_MAX_CALLS && (p = memmem(p, (size_t)(end - p), "[[tool:", 7)) != NULL) {
		const char *name = p + 7, *a, *ae;
		const char *close = memmem(name, (size_t)(end - name), "]]", 2);
		struct reply_call *c;
		size_t nlen = 0;

		if (close == NULL)
			return;
		p = close + 2;
		while (name + nlen < close && !is_ws(name[nlen]))
			nlen++;
		for (a = name + nlen; a < close && is_ws(*a); a++)
			;
		for (ae = close; ae > a && is_ws(ae[-1]); ae--)
			;
		if (nlen == 0 || !tool_offered(tools, name, nlen))
			continue;
		if (a < ae) {
			json_t *args = json_loadb(a, (size_t)(ae - a), 0, NULL);
			bool ok = json_is_object(args);

			json_decref(args);
			if (!ok)
				continue;
		}
		c = &r->call[r->ncalls++];
		c->name_off = (uint32_t)r->calls.len;
		c->name_len = (uint32_t)nlen;
		buf_append(&r->calls, name, nlen);
		c->args_off = (uint32_t)r->calls.len;
		if (a < ae)
			compact_json(&r->calls, a, (size_t)(ae - a));
		else
			buf_puts(&r->calls, "{}");
		c->args_len = (uint32_t)(r->calls.len - c->args_off);
	}
}

/* The answer after the tool rounds: the tool messages since the last assistant message. */
static void tools_said(struct reply *r, json_t *messages, const struct conv *cv)
{
	size_t i = cv->last_asst == SIZE_MAX ? 0 : cv->last_asst + 1;
	long long words = 0;
	bool first = true;

	buf_clear(&r->content);
	buf_puts(&r->content, "tools said: ");
	for (; i < json_array_size(messages); i++) {
		json_t *m = json_array_get(messages, i);

		if (strcmp(json_string_value(json_object_get(m, "role")), "tool") != 0)
			continue;
		if (!first)
			buf_puts(&r->content, " | ");
		message_text(json_object_get(m, "content"), &words, &r->content);
		first = false;
	}
}

/*
 * Shapes the answer once it is known to be one (ok, truncate, badjson):
 * tool calls while rounds remain, the tool results after them, or the echo
 * in r->content (text at text_off), with its turn once the conversation
 * has assistant turns and tools (or [[turns]]).
 */
static void shape_answer(struct reply *r, json_t *messages, const struct conv *cv, size_t text_off)
{
	const char *text = r->content.data + text_off;
	size_t tlen = r->content.len - text_off;
	long rounds = 1;
	char val[32];

	r->turn = cv->assistants + 1;
	if (find_trigger(text, tlen, "rounds", val, sizeof(val))) {
		long k = parse_small(val);

		if (k >= 1 && k <= ROUNDS_MAX)
			rounds = k;
	}
	if (json_array_size(cv->tools) > 0 && cv->rounds < rounds)
		read_tool_markers(r, text, tlen, cv->tools);
	if (r->ncalls > 0)
		return;
	if (cv->last_is_tool)
		tools_said(r, messages, cv);
	else if (r->turn > 1 && (cv->tool_traffic || cv->turns))
		buf_printf(&r->content, " [turn %lld]", r->turn);
}

/* Validates the parsed body and fills the reply; root is borrowed. */
static enum outcome decide_parsed(struct reply *r, json_t *root, uint64_t *rng)
{
	json_t *model = json_object_get(root, "model");
	json_t *messages = json_object_get(root, "messages");
	json_t *last_user = NULL, *opts;
	struct conv cv = { .last_user = SIZE_MAX, .last_asst = SIZE_MAX };
	long long max_tokens, words;
	size_t text_off;
	char val[32];
	enum outcome oc;

	if (!json_is_string(model))
		return set_error_s(r, 400, "invalid_request_error", "invalid_request_error",
				   "you must provide a model parameter");
	if (!json_is_array(messages) || json_array_size(messages) == 0)
		return set_error_s(r, 400, "invalid_request_error", "invalid_request_error",
				   "'messages' is a required property and must be a non-empty array");
	oc = walk_messages(r, messages, &cv);
	if (oc != OC_COUNT)
		return oc;
	cv.tools = json_object_get(root, "tools");
	oc = check_tools(r, cv.tools);
	if (oc != OC_COUNT)
		return oc;
	if (json_array_size(cv.tools) > 0)
		cv.tool_traffic = true;
	if (cv.last_user != SIZE_MAX)
		last_user = json_array_get(messages, cv.last_user);
	max_tokens = max_tokens_of(root);
	if (max_tokens == -2)
		return set_error_s(r, 400, "invalid_request_error", "invalid_request_error",
				   "max_tokens must be a non-negative integer");
	r->stream = json_is_true(json_object_get(root, "stream"));
	opts = json_object_get(root, "stream_options");
	r->include_usage = r->stream && json_is_object(opts) &&
			   json_is_true(json_object_get(opts, "include_usage"));

	buf_json_str(&r->model, json_string_value(model), json_string_length(model));
	if (!model_known(json_string_value(model))) {
		struct buf m;
		enum outcome o;

		buf_init(&m);
		buf_puts(&m, "The model `");
		buf_append(&m, json_string_value(model), json_string_length(model));
		buf_puts(&m, "` does not exist");
		o = set_error(r, 404, "invalid_request_error", "model_not_found",
			      m.data ? m.data : "", m.len);
		buf_release(&m);
		return o;
	}
	if (mock_cfg.context_tokens > 0 && r->prompt_tokens > mock_cfg.context_tokens)
		return set_context_error(r, mock_cfg.context_tokens, r->prompt_tokens);

	/* The reply text, which the triggers are also read from. */
	buf_puts(&r->content, "echo: ");
	text_off = r->content.len;
	words = 0;
	if (last_user != NULL)
		message_text(json_object_get(last_user, "content"), &words, &r->content);
	if (buf_failed(&r->content))
		return set_error_s(r, 500, "server_error", "server_error", "out of memory");

	if (find_trigger(r->content.data + text_off, r->content.len - text_off,
			 "sleep", val, sizeof(val))) {
		long ms = parse_small(val);

		if (ms >= 0)
			r->delay_ns += (uint64_t)(ms < SLEEP_MAX_MS ? ms : SLEEP_MAX_MS) * 1000000u;
	}
	if (find_trigger(r->content.data + text_off, r->content.len - text_off,
			 "fail", val, sizeof(val))) {
		oc = apply_fail_trigger(r, val);
		if (oc != OC_COUNT && r->kind == RK_ERROR)
			return oc;
		if (oc != OC_COUNT)
			goto finish; /* hang, reset, truncate, badjson keep the reply */
	}
	oc = apply_random_fault(r, rng);
	if (oc == OC_COUNT || r->kind != RK_ERROR) {
		if (oc == OC_COUNT)
			oc = set_kind(r, RK_OK, OC_OK);
		goto finish;
	}
	return oc;

finish:
	shape_answer(r, messages, &cv, text_off);
	if (r->ncalls > 0) {
		/* Tool calls: their arguments are the completion; max_tokens does not cut them. */
		words = 0;
		for (size_t k = 0; k < r->ncalls; k++)
			words += count_words(r->calls.data + r->call[k].args_off, r->call[k].args_len);
		r->completion_tokens = words;
		r->seg_total = 2 * r->ncalls;
		r->seg_limit = r->kind == RK_TRUNCATE ? (r->seg_total + 1) / 2 : r->seg_total;
		return oc;
	}
	words = count_words(r->content.data, r->content.len);
	if (max_tokens >= 0 && max_tokens < words) {
		size_t end = 0;

		for (long long w = 0; w < max_tokens; w++)
			end = word_end(r->content.data, r->content.len, end);
		r->content.len = end;
		r->length_cut = true;
		words = max_tokens;
	}
	r->completion_tokens = words;
	r->seg_total = words > 0 ? (size_t)words : 1;
	r->seg_limit = r->kind == RK_TRUNCATE ? (r->seg_total + 1) / 2 : r->seg_total;
	return oc;
}

enum outcome reply_decide(struct reply *r, const char *body, size_t len,
			  bool auth_ok, uint64_t body_hash, uint64_t *rng)
{
	json_error_t jerr;
	json_t *root;
	enum outcome oc;

	r->kind = RK_OK;
	r->status = 200;
	r->retry_after = r->stream = r->include_usage = r->length_cut = false;
	r->prompt_tokens = r->completion_tokens = 0;
	r->pos = r->seg_sent = r->seg_total = r->seg_limit = 0;
	r->turn = 1;
	r->ncalls = 0;
	buf_clear(&r->content);
	buf_clear(&r->model);
	buf_clear(&r->calls);
	buf_shrink(&r->content, (size_t)1 << 20);
	buf_shrink(&r->model, 4096);
	buf_shrink(&r->calls, (size_t)1 << 20);
	snprintf(r->id, sizeof(r->id), "%016llx", (unsigned long long)body_hash);
	r->delay_ns = base_delay_ns(rng);

	if (!auth_ok)
		return set_error_s(r, 401, "invalid_request_error", "invalid_api_key",
				   "Incorrect API key provided");
	root = json_loadb(body, len, JSON_ALLOW_NUL, &jerr);
	if (root == NULL || !json_is_object(root)) {
		json_decref(root);
		return set_error_s(r, 400, "invalid_request_error", "invalid_request_error",
				   "We could not parse the JSON body of your request.");
	}
	oc = decide_parsed(r, root, rng);
	json_decref(root);
	if (buf_failed(&r->content) || buf_failed(&r->model) || buf_failed(&r->calls))
		return set_error_s(r, 500, "server_error", "server_error", "out of memory");
	return oc;
}

static void write_headers_extra(char *extra, size_t cap, const struct reply *r,
				const struct reply_meta *m)
{
	if (r->kind == RK_ERROR && r->retry_after)
		snprintf(extra, cap, "x-request-id: %s\r\nRetry-After: %d\r\n",
			 m->reqid, mock_cfg.retry_after);
	else
		snprintf(extra, cap, "x-request-id: %s\r\n", m->reqid);
}

/* Appends one server-sent event, framed as an HTTP chunk when chunked. */
static void put_event(struct buf *out, const char *data, size_t n, bool chunked)
{
	if (chunked)
		buf_printf(out, "%zx\r\n", n + 8);
	buf_append(out, "data: ", 6);
	buf_append(out, data, n);
	buf_append(out, "\n\n", 2);
	if (chunked)
		buf_append(out, "\r\n", 2);
}

static void chunk_prefix(const struct reply *r, struct buf *s)
{
	buf_puts(s, "{\"id\":\"chatcmpl-");
	buf_append(s, r->id, 16);
	buf_puts(s, "\",\"object\":\"chat.completion.chunk\",\"created\":");
	buf_u64(s, (unsigned long long)r->created);
	buf_puts(s, ",\"model\":");
	buf_append(s, r->model.data, r->model.len);
}

static void put_usage(const struct reply *r, struct buf *s)
{
	buf_puts(s, "\"usage\":{\"prompt_tokens\":");
	buf_u64(s, (unsigned long long)r->prompt_tokens);
	buf_puts(s, ",\"completion_tokens\":");
	buf_u64(s, (unsigned long long)r->completion_tokens);
	buf_puts(s, ",\"total_tokens\":");
	buf_u64(s, (unsigned long long)(r->prompt_tokens + r->completion_tokens));
	buf_puts(s, "}");
}

/* Appends call k's "id":"call_T_K","type":"function","function":{"name":..,"arguments":..}. */
static void put_call(const struct reply *r, struct buf *s, size_t k, bool with_args)
{
	const struct reply_call *c = &r->call[k];

	buf_printf(s, "\"id\":\"call_%lld_%zu\",\"type\":\"function\",\"function\":{\"name\":",
		   r->turn, k);
	buf_json_str(s, r->calls.data + c->name_off, c->name_len);
	buf_puts(s, ",\"arguments\":");
	if (with_args)
		buf_json_str(s, r->calls.data + c->args_off, c->args_len);
	else
		buf_puts(s, "\"\"");
	buf_puts(s, "}");
}

/* The message of a non-streamed answer, from "message" to its finish_reason. */
static void put_message(const struct reply *r, struct buf *s)
{
	if (r->ncalls == 0) {
		buf_puts(s, "\"message\":{\"role\":\"assistant\",\"content\":");
		buf_json_str(s, r->content.data, r->content.len);
		buf_puts(s, r->length_cut ? "},\"finish_reason\":\"length\"" :
					   "},\"finish_reason\":\"stop\"");
		return;
	}
	buf_puts(s, "\"message\":{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[");
	for (size_t k = 0; k < r->ncalls; k++) {
		buf_puts(s, k ? ",{" : "{");
		put_call(r, s, k, true);
		buf_puts(s, "}");
	}
	buf_puts(s, "]},\"finish_reason\":\"tool_calls\"");
}

void reply_write(struct reply *r, struct buf *out, struct buf *scratch,
		 const struct reply_meta *m)
{
	static const char bad[] = "<html>oops</html>";
	char extra[96];

	write_headers_extra(extra, sizeof(extra), r, m);
	switch (r->kind) {
	case RK_ERROR:
		http_write_head(out, r->status, "application/json", (long long)r->content.len,
				m->keep_alive, m->minor, extra);
		buf_append(out, r->content.data, r->content.len);
		return;
	case RK_BADJSON:
		if (r->stream) {
			bool chunked = m->minor >= 1;

			http_write_head(out, 200, "text/event-stream", -1, m->keep_alive,
					m->minor, extra);
			put_event(out, bad, sizeof(bad) - 1, chunked);
			put_event(out, "[DONE]", 6, chunked);
			if (chunked)
				buf_append(out, "0\r\n\r\n", 5);
		} else {
			http_write_head(out, 200, "application/json", (long long)sizeof(bad) - 1,
					m->keep_alive, m->minor, extra);
			buf_append(out, bad, sizeof(bad) - 1);
		}
		return;
	default:
		break;
	}
	/* The whole completion; RK_TRUNCATE promises it all and sends half. */
	buf_clear(scratch);
	buf_puts(scratch, "{\"id\":\"chatcmpl-");
	buf_append(scratch, r->id, 16);
	buf_puts(scratch, "\",\"object\":\"chat.completion\",\"created\":");
	buf_u64(scratch, (unsigned long long)time(NULL));
	buf_puts(scratch, ",\"model\":");
	buf_append(scratch, r->model.data, r->model.len);
	buf_puts(scratch, ",\"choices\":[{\"index\":0,");
	put_message(r, scratch);
	buf_puts(scratch, "}],");
	put_usage(r, scratch);
	buf_puts(scratch, "}");
	if (buf_failed(scratch)) {
		out->failed = true;
		return;
	}
	http_write_head(out, 200, "application/json", (long long)scratch->len,
			m->keep_alive, m->minor, extra);
	buf_append(out, scratch->data,
		   r->kind == RK_TRUNCATE ? scratch->len / 2 : scratch->len);
}

void reply_stream_head(struct reply *r, struct buf *out, const struct reply_meta *m)
{
	char extra[128];

	snprintf(extra, sizeof(extra), "Cache-Control: no-cache\r\nx-request-id: %s\r\n", m->reqid);
	http_write_head(out, 200, "text/event-stream", -1, m->keep_alive, m->minor, extra);
	r->created = (long long)time(NULL);
	r->pos = 0;
	r->seg_sent = 0;
}

/*
 * One event of a streamed tool-call answer: segment 2k is call k's head (id,
 * type, name, empty arguments; the first also carries the role), segment
 * 2k+1 its whole arguments.
 */
static void put_call_event(struct reply *r, struct buf *out, struct buf *scratch, bool chunked)
{
	size_t k = r->seg_sent / 2;

	buf_clear(scratch);
	chunk_prefix(r, scratch);
	buf_puts(scratch, r->seg_sent == 0 ?
		 ",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[" :
		 ",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[");
	buf_printf(scratch, "{\"index\":%zu,", k);
	if (r->seg_sent % 2 == 0) {
		put_call(r, scratch, k, false);
	} else {
		buf_puts(scratch, "\"function\":{\"arguments\":");
		buf_json_str(scratch, r->calls.data + r->call[k].args_off, r->call[k].args_len);
		buf_puts(scratch, "}");
	}
	buf_puts(scratch, "}]},\"finish_reason\":null}]}");
	put_event(out, scratch->data, scratch->len, chunked);
}

bool reply_stream_step(struct reply *r, struct buf *out, struct buf *scratch, bool chunked)
{
	if (r->seg_sent < r->seg_limit && r->ncalls > 0) {
		put_call_event(r, out, scratch, chunked);
		r->seg_sent++;
		if (r->seg_sent < r->seg_limit)
			return false;
		if (r->kind == RK_TRUNCATE)
			return true;
	} else if (r->seg_sent < r->seg_limit) {
		/* A segment runs to the end of its word; the last one to the end of the text. */
		size_t end = r->seg_sent + 1 == r->seg_total ? r->content.len :
			     word_end(r->content.data, r->content.len, r->pos);

		buf_clear(scratch);
		chunk_prefix(r, scratch);
		buf_puts(scratch, r->seg_sent == 0 ?
			 ",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":" :
			 ",\"choices\":[{\"index\":0,\"delta\":{\"content\":");
		buf_json_str(scratch, r->content.data + r->pos, end - r->pos);
		buf_puts(scratch, "},\"finish_reason\":null}]}");
		put_event(out, scratch->data, scratch->len, chunked);
		r->pos = end;
		r->seg_sent++;
		if (r->seg_sent < r->seg_limit)
			return false;
		if (r->kind == RK_TRUNCATE)
			return true;
	}
	buf_clear(scratch);
	chunk_prefix(r, scratch);
	buf_puts(scratch, r->ncalls > 0 ?
		 ",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}" :
		 r->length_cut ?
		 ",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"length\"}]}" :
		 ",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}");
	put_event(out, scratch->data, scratch->len, chunked);
	if (r->include_usage) {
		buf_clear(scratch);
		chunk_prefix(r, scratch);
		buf_puts(scratch, ",\"choices\":[],");
		put_usage(r, scratch);
		buf_puts(scratch, "}");
		put_event(out, scratch->data, scratch->len, chunked);
	}
	put_event(out, "[DONE]", 6, chunked);
	if (chunked)
		buf_append(out, "0\r\n\r\n", 5);
	return true;
}
