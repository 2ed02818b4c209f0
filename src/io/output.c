/*
 * io layer: output lines, one JSON object per item. Batch jobs get
 * OpenAI's batch output and error formats, so that tools written for the
 * Batch API read longhaul's files unchanged; spec jobs get a flatter line
 * with the answer's text, usage and timings, read by the one completion
 * parser (io/completion.c) that the llm layer and the fuzzer use. Each line is built as a
 * jansson tree and written compactly, so it is valid JSON whatever the
 * server sent.
 */
#include "io/output.h"
#include "io/completion.h"
#include "io/io_internal.h"
#include "util/hash.h"
#include "util/time.h"

#include <jansson.h>
#include <math.h>
#include <string.h>

/* An item's last error, from its JSON text {"code","message","body"?}.
 * Older or foreign shapes are taken too: an OpenAI error body
 * {"error": {"message", "code"}} and plain text. */
struct last_err {
	json_t *root;          /* owned */
	const char *code, *message;
	json_t *body;          /* borrowed from root, may be NULL */
};

static const char *str_or(json_t *v, const char *dflt)
{
	return json_is_string(v) ? json_string_value(v) : dflt;
}

static void last_err_parse(const char *text, struct last_err *le)
{
	json_error_t jerr;
	json_t *inner;
	memset(le, 0, sizeof le[0]);
	le->code = "error";
	le->message = "no error was recorded";
	if (!text || !text[0])
		return;
	le->root = json_loads(text, JSON_DECODE_ANY, &jerr);
	if (!json_is_object(le->root)) {
		json_decref(le->root);
		le->root = json_string(text);
		le->message = json_string_value(le->root) ? json_string_value(le->root) : "unreadable error";
		return;
	}
	le->body = json_object_get(le->root, "body");
	inner = json_object_get(le->root, "error");
	if (json_is_object(inner) && !json_object_get(le->root, "message")) {
		/* An OpenAI error body stored as it came. */
		le->code = str_or(json_object_get(inner, "code"),
				  str_or(json_object_get(inner, "type"), "error"));
		le->message = str_or(json_object_get(inner, "message"), le->message);
		le->body = le->root;
		return;
	}
	le->code = str_or(json_object_get(le->root, "code"), le->code);
	le->message = str_or(json_object_get(le->root, "message"), le->message);
}

static json_t *error_obj(const struct last_err *le)
{
	return json_pack("{s:s, s:s}", "code", le->code, "message", le->message);
}

void lh_out_failure(const char *last_error, char *code, size_t code_sz, char *msg, size_t msg_sz)
{
	struct last_err le;
	last_err_parse(last_error, &le);
	snprintf(code, code_sz, "%s", le.code);
	snprintf(msg, msg_sz, "%s", le.message);
	json_decref(le.root);
}

/* Appends o and "\n" to out; takes o. */
static int emit(json_t *o, struct lh_buf *out)
{
	size_t mark = out->len;
	/* json_pack fails only when out of memory or given text that is not
	 * UTF-8, which the input readers never let through. */
	int rc = o ? io_json_dump(o, out, 0) : LH_EINTERNAL;
	if (!rc)
		rc = lh_buf_putc(out, '\n');
	if (rc && out->data) {
		/* Leave no half line behind. */
		out->len = mark;
		out->data[mark] = '\0';
	}
	json_decref(o);
	return rc;
}

/* The response body as JSON when it parses, else as a string; new. */
static json_t *response_json(const struct lh_item_view *v)
{
	json_error_t jerr;
	json_t *j;
	if (!v->response)
		return json_null();
	j = json_loadb(v->response, v->response_len, JSON_DECODE_ANY, &jerr);
	if (j)
		return j;
	j = json_stringn(v->response, v->response_len);
	/* Not UTF-8 either: say so rather than lose the line. */
	return j ? j : json_string("(the response was not valid UTF-8)");
}

static void batch_id(const char *key, char out[64])
{
	char hex[LH_SHA256_HEX];
	lh_sha256_hex(key, strlen(key), hex);
	snprintf(out, 64, "batch_req_%.24s", hex);
}

/* Appends a stored answer as it is: it was checked to be JSON when it
 * arrived (only valid answers are recorded as done), so re-parsing it here
 * would cost more than the rest of the line. White space between tokens
 * may hold line breaks; they become spaces so the line stays one line
 * (inside JSON strings a line break is always escaped). */
static int append_raw_json(struct lh_buf *out, const char *p, size_t n)
{
	size_t start = out->len;
	int rc = lh_buf_append(out, p, n);
	if (rc)
		return rc;
	for (size_t i = start; i < out->len; i++)
		if (out->data[i] == '\n' || out->data[i] == '\r')
			out->data[i] = ' ';
	return 0;
}

static int looks_like_object(const char *p, size_t n)
{
	size_t i = 0;
	while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\n' || p[i] == '\r'))
		i++;
	while (n > i && (p[n - 1] == ' ' || p[n - 1] == '\t' || p[n - 1] == '\n' || p[n - 1] == '\r'))
		n--;
	return n > i + 1 && p[i] == '{' && p[n - 1] == '}';
}

int lh_out_batch_ok(const struct lh_item_view *v, struct lh_buf *out)
{
	char id[64];
	json_t *o;
	batch_id(v->key, id);
	if (v->response && looks_like_object(v->response, v->response_len)) {
		size_t mark = out->len;
		const char *rid = v->request_id ? v->request_id : "";
		int rc = lh_buf_printf(out, "{\"id\":\"%s\",\"custom_id\":", id);
		if (!rc)
			rc = lh_buf_json_str(out, v->key, strlen(v->key));
		if (!rc)
			rc = lh_buf_printf(out, ",\"response\":{\"status_code\":%d,\"request_id\":",
					   v->status ? v->status : 200);
		if (!rc)
			rc = lh_buf_json_str(out, rid, strlen(rid));
		if (!rc)
			rc = lh_buf_puts(out, ",\"body\":");
		if (!rc)
			rc = append_raw_json(out, v->response, v->response_len);
		if (!rc)
			rc = lh_buf_puts(out, "},\"error\":null}\n");
		if (rc) {
			/* No half line: drop what was appended. */
			out->len = mark;
			if (out->data)
				out->data[mark] = '\0';
		}
		return rc;
	}
	/* A done item was answered with success; 0 only when none was recorded. */
	o = json_pack("{s:s, s:s, s:{s:i, s:s, s:o}, s:n}",
		      "id", id,
		      "custom_id", v->key,
		      "response",
		      "status_code", v->status > 0 ? v->status : 200,
		      "request_id", v->request_id ? v->request_id : "",
		      "body", response_json(v),
		      "error");
	return emit(o, out);
}

int lh_out_batch_err(const struct lh_item_view *v, struct lh_buf *out)
{
	struct last_err le;
	char id[64];
	json_t *o;
	batch_id(v->key, id);
	last_err_parse(v->last_error, &le);
	if (v->last_status > 0) {
		json_t *body = le.body ? json_incref(le.body) :
			json_pack("{s:{s:s, s:s}}", "error", "message", le.message, "code", le.code);
		/* OpenAI leaves "error" null when there is a response; longhaul
		 * fills it in too, with its own code for the failure, so that the
		 * code in this file is the one the summary, `longhaul failures`
		 * and the API show (the server's own code stays in the body). */
		o = json_pack("{s:s, s:s, s:{s:i, s:s, s:o}, s:o}",
			      "id", id,
			      "custom_id", v->key,
			      "response",
			      "status_code", v->last_status,
			      "request_id", v->request_id ? v->request_id : "",
			      "body", body,
			      "error", error_obj(&le));
	} else {
		o = json_pack("{s:s, s:s, s:n, s:o}",
			      "id", id,
			      "custom_id", v->key,
			      "response",
			      "error", error_obj(&le));
	}
	json_decref(le.root);
	return emit(o, out);
}

/* ---- spec lines ---- */

static json_t *ms_between(double from, double to)
{
	if (from <= 0 || to <= 0 || to < from)
		return json_null();
	return json_integer((json_int_t)llround((to - from) * 1000.0));
}

static json_t *timings(const struct lh_item_view *v)
{
	char iso[40];
	json_t *t = json_object();
	if (v->started_at > 0) {
		lh_time_iso(v->started_at, iso, sizeof iso);
		json_object_set_new(t, "started_at", json_string(iso));
	} else {
		json_object_set_new(t, "started_at", json_null());
	}
	json_object_set_new(t, "latency_ms", ms_between(v->started_at, v->ended_at));
	json_object_set_new(t, "first_token_ms",
			    v->first_byte_at > 0 ? ms_between(v->started_at, v->first_byte_at) :
			    json_null());
	return t;
}

static json_t *tokens(int64_t journal, json_t *usage, const char *name)
{
	json_t *u = json_object_get(usage, name);
	if (journal >= 0)
		return json_integer((json_int_t)journal);
	return json_is_integer(u) ? json_incref(u) : json_null();
}

/* j as a JSON string holding its compact text; new. */
static json_t *dump_text(const json_t *j)
{
	struct lh_buf b;
	json_t *s = NULL;
	lh_buf_init(&b, 0);
	if (!io_json_dump(j, &b, 0))
		s = json_stringn(b.data, b.len);
	lh_buf_release(&b);
	return s;
}

/* A count from the journal when it has one, else from the answer. */
static json_t *count(int64_t journal, int64_t answer)
{
	if (journal >= 0)
		return json_integer((json_int_t)journal);
	return answer >= 0 ? json_integer((json_int_t)answer) : json_null();
}

/* Not a chat completion: keep what the server sent, as text. */
static json_t *spec_ok_other(const struct lh_item_view *v)
{
	json_t *resp = response_json(v), *usage = json_object_get(resp, "usage"), *output, *o;
	output = json_is_object(resp) || json_is_array(resp) ? dump_text(resp) : json_incref(resp);
	o = json_pack("{s:s, s:o, s:n, s:{s:o, s:o}, s:i, s:o}",
		      "key", v->key,
		      "output", output ? output : json_null(),
		      "finish_reason",
		      "usage",
		      "prompt_tokens", tokens(v->prompt_tokens, usage, "prompt_tokens"),
		      "completion_tokens", tokens(v->completion_tokens, usage, "completion_tokens"),
		      "attempts", v->attempts,
		      "timings", timings(v));
	json_decref(resp);
	return o;
}

/* A pipeline's composed result (engine/pipeline.c): the last step's
 * output, each step's, and the item's usage; NULL when the response is not
 * one. */
static json_t *spec_ok_pipeline(const struct lh_item_view *v)
{
	json_t *r, *o;
	if (!v->response || v->response_len < 2 || !memmem(v->response, v->response_len, "longhaul.pipeline_result", 24))
		return NULL;
	r = response_json(v);
	if (!json_is_object(r) || !json_is_string(json_object_get(r, "object")) ||
	    strcmp(json_string_value(json_object_get(r, "object")), "longhaul.pipeline_result")) {
		json_decref(r);
		return NULL;
	}
	o = json_pack("{s:s, s:O?, s:O?, s:O?, s:O?, s:i, s:o}",
		      "key", v->key,
		      "output", json_object_get(r, "output"),
		      "finish_reason", json_object_get(r, "finish_reason"),
		      "steps", json_object_get(r, "steps"),
		      "usage", json_object_get(r, "usage"),
		      "attempts", v->attempts,
		      "timings", timings(v));
	json_decref(r);
	return o;
}

int lh_out_spec_ok(const struct lh_item_view *v, struct lh_buf *out)
{
	struct lh_completion c;
	json_t *o = spec_ok_pipeline(v);
	if (o)
		return emit(o, out);
	/* The answer is read by the completion parser the llm layer uses
	 * (io/completion.c), not by a second one here. */
	if (!v->response || lh_completion_parse(v->response, v->response_len, &c) != 0 || !c.has_choice) {
		if (v->response)
			lh_completion_release(&c);
		return emit(spec_ok_other(v), out);
	}
	o = json_pack("{s:s, s:o, s:o, s:{s:o, s:o}, s:i, s:o}",
		      "key", v->key,
		      "output", c.content ? json_string(c.content) : json_null(),
		      "finish_reason", c.finish_reason ? json_string(c.finish_reason) : json_null(),
		      "usage",
		      "prompt_tokens", count(v->prompt_tokens, c.prompt_tokens),
		      "completion_tokens", count(v->completion_tokens, c.completion_tokens),
		      "attempts", v->attempts,
		      "timings", timings(v));
	lh_completion_release(&c);
	return emit(o, out);
}

int lh_out_spec_err(const struct lh_item_view *v, struct lh_buf *out)
{
	struct last_err le;
	json_t *o;
	last_err_parse(v->last_error, &le);
	o = json_pack("{s:s, s:o, s:o, s:i}",
		      "key", v->key,
		      "status", v->last_status > 0 ? json_integer(v->last_status) : json_null(),
		      "error", error_obj(&le),
		      "attempts", v->attempts);
	/* A pipeline's failure names the step it failed at. */
	if (json_is_string(json_object_get(le.root, "step")))
		json_object_set(o, "step", json_object_get(le.root, "step"));
	json_decref(le.root);
	return emit(o, out);
}
