/*
 * Unit tests: output lines (io/output.c). Every line is parsed back with
 * jansson and checked field by field.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <string.h>

#include "io/output.h"
#include "util/hash.h"

#define CHAT "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion\",\"choices\":[{\"index\":0," \
	"\"message\":{\"role\":\"assistant\",\"content\":\"Hello \\\"there\\\"\\n\"},\"finish_reason\":\"stop\"}]," \
	"\"usage\":{\"prompt_tokens\":11,\"completion_tokens\":7,\"total_tokens\":18}}"

static struct lh_item_view view(const char *key)
{
	struct lh_item_view v;
	memset(&v, 0, sizeof v);
	v.key = key;
	v.attempts = 1;
	v.prompt_tokens = v.completion_tokens = -1;
	return v;
}

/* Runs fn on v, checks that exactly one "\n"-terminated line came out, and
 * returns it parsed (new reference). */
static json_t *line_of(int (*fn)(const struct lh_item_view *, struct lh_buf *), const struct lh_item_view *v)
{
	struct lh_buf b;
	json_error_t jerr;
	json_t *j;
	lh_buf_init(&b, 0);
	cr_assert_eq(fn(v, &b), 0);
	cr_assert(b.len > 1);
	cr_assert_eq(b.data[b.len - 1], '\n');
	cr_assert_null(memchr(b.data, '\n', b.len - 1), "one line only: %s", b.data);
	j = json_loadb(b.data, b.len, 0, &jerr);
	cr_assert_not_null(j, "not JSON (%s): %s", jerr.text, b.data);
	lh_buf_release(&b);
	return j;
}

static const char *str(json_t *o, const char *k)
{
	json_t *v = json_object_get(o, k);
	cr_assert(json_is_string(v), "\"%s\" is not a string", k);
	return json_string_value(v);
}

static void check_batch_id(json_t *o, const char *key)
{
	char hex[LH_SHA256_HEX], want[64];
	lh_sha256_hex(key, strlen(key), hex);
	snprintf(want, sizeof want, "batch_req_%.24s", hex);
	cr_assert_str_eq(str(o, "id"), want);
	cr_assert_eq(strlen(str(o, "id")), 10 + 24);
}

Test(output, batch_ok)
{
	struct lh_item_view v = view("req-1");
	json_t *o, *resp;
	v.state = 2;
	v.response = CHAT;
	v.response_len = strlen(CHAT);
	v.status = 200;
	v.request_id = "req_abc";
	o = line_of(lh_out_batch_ok, &v);
	check_batch_id(o, "req-1");
	cr_assert_str_eq(str(o, "custom_id"), "req-1");
	cr_assert(json_is_null(json_object_get(o, "error")));
	resp = json_object_get(o, "response");
	cr_assert_eq(json_integer_value(json_object_get(resp, "status_code")), 200);
	cr_assert_str_eq(str(resp, "request_id"), "req_abc");
	cr_assert_str_eq(str(json_object_get(resp, "body"), "object"), "chat.completion");
	cr_assert_str_eq(str(json_object_get(json_array_get(json_object_get(json_object_get(resp, "body"), "choices"), 0),
					     "message"), "content"), "Hello \"there\"\n");
	json_decref(o);
}

Test(output, batch_ok_odd_response)
{
	struct lh_item_view v = view("k\"ey\n");
	json_t *o, *resp;
	v.response = "not json \x01 at all";
	v.response_len = strlen(v.response);
	o = line_of(lh_out_batch_ok, &v);
	cr_assert_str_eq(str(o, "custom_id"), "k\"ey\n");
	resp = json_object_get(o, "response");
	/* request_id NULL -> "", status 0 -> 200 (the item is done). */
	cr_assert_str_eq(str(resp, "request_id"), "");
	cr_assert_eq(json_integer_value(json_object_get(resp, "status_code")), 200);
	cr_assert_str_eq(str(resp, "body"), "not json \x01 at all");
	json_decref(o);
}

Test(output, batch_err_with_status_and_body)
{
	struct lh_item_view v = view("x");
	json_t *o, *resp, *body;
	v.state = 4;
	v.last_status = 429;
	v.request_id = "rid";
	v.last_error = "{\"code\":\"insufficient_quota\",\"message\":\"You exceeded your quota\","
		       "\"body\":{\"error\":{\"message\":\"You exceeded your quota\",\"type\":\"insufficient_quota\","
		       "\"code\":\"insufficient_quota\"}}}";
	o = line_of(lh_out_batch_err, &v);
	check_batch_id(o, "x");
	/* longhaul's code beside the server's body: one code in every command. */
	cr_assert_str_eq(str(json_object_get(o, "error"), "code"), "insufficient_quota");
	resp = json_object_get(o, "response");
	cr_assert_eq(json_integer_value(json_object_get(resp, "status_code")), 429);
	cr_assert_str_eq(str(resp, "request_id"), "rid");
	body = json_object_get(json_object_get(resp, "body"), "error");
	cr_assert_str_eq(str(body, "type"), "insufficient_quota");
	cr_assert_str_eq(str(body, "message"), "You exceeded your quota");
	json_decref(o);
}

Test(output, batch_err_with_status_without_body)
{
	struct lh_item_view v = view("x");
	json_t *o, *err;
	v.last_status = 500;
	v.last_error = "{\"code\":\"http_500\",\"message\":\"server error\",\"body\":\"<html>oops</html>\"}";
	o = line_of(lh_out_batch_err, &v);
	cr_assert_str_eq(str(json_object_get(o, "response"), "body"), "<html>oops</html>");
	json_decref(o);
	v.last_error = "{\"code\":\"http_500\",\"message\":\"server error\"}";
	o = line_of(lh_out_batch_err, &v);
	err = json_object_get(json_object_get(json_object_get(o, "response"), "body"), "error");
	cr_assert_str_eq(str(err, "code"), "http_500");
	cr_assert_str_eq(str(err, "message"), "server error");
	cr_assert_str_eq(str(json_object_get(o, "error"), "code"), "http_500");
	json_decref(o);
}

Test(output, failure_code_is_the_stored_verdict)
{
	char code[64], msg[128];
	/* The server said "forced_failure"; the classifier's verdict was http_400. */
	lh_out_failure("{\"code\":\"http_400\",\"message\":\"http 400: no\",\"status\":400,"
		       "\"body\":{\"error\":{\"code\":\"forced_failure\",\"message\":\"no\"}}}",
		       code, sizeof code, msg, sizeof msg);
	cr_assert_str_eq(code, "http_400");
	cr_assert_str_eq(msg, "http 400: no");
	lh_out_failure(NULL, code, sizeof code, msg, sizeof msg);
	cr_assert_str_eq(code, "error");
	lh_out_failure("{\"code\":\"timeout\",\"message\":\"no answer within 600 s\"}", code, 4, msg, 8);
	cr_assert_str_eq(code, "tim");
	cr_assert_str_eq(msg, "no answ");
}

Test(output, batch_err_without_status)
{
	struct lh_item_view v = view("x");
	json_t *o, *err;
	v.last_error = "{\"code\":\"timeout\",\"message\":\"no answer within 600 s\"}";
	o = line_of(lh_out_batch_err, &v);
	cr_assert(json_is_null(json_object_get(o, "response")));
	err = json_object_get(o, "error");
	cr_assert_str_eq(str(err, "code"), "timeout");
	cr_assert_str_eq(str(err, "message"), "no answer within 600 s");
	json_decref(o);
	/* No error recorded, or one that is not JSON: still a valid line. */
	v.last_error = NULL;
	o = line_of(lh_out_batch_err, &v);
	cr_assert_str_eq(str(json_object_get(o, "error"), "code"), "error");
	json_decref(o);
	v.last_error = "connection reset \"by peer\"";
	o = line_of(lh_out_batch_err, &v);
	cr_assert_str_eq(str(json_object_get(o, "error"), "message"), "connection reset \"by peer\"");
	json_decref(o);
}

Test(output, spec_ok)
{
	struct lh_item_view v = view("doc-7");
	json_t *o, *t, *u;
	v.response = CHAT;
	v.response_len = strlen(CHAT);
	v.status = 200;
	v.attempts = 2;
	v.prompt_tokens = 11;
	v.completion_tokens = 7;
	v.started_at = 1700000000.25;
	v.first_byte_at = 1700000000.5;
	v.ended_at = 1700000001.7504;
	o = line_of(lh_out_spec_ok, &v);
	cr_assert_str_eq(str(o, "key"), "doc-7");
	cr_assert_str_eq(str(o, "output"), "Hello \"there\"\n");
	cr_assert_str_eq(str(o, "finish_reason"), "stop");
	cr_assert_eq(json_integer_value(json_object_get(o, "attempts")), 2);
	u = json_object_get(o, "usage");
	cr_assert_eq(json_integer_value(json_object_get(u, "prompt_tokens")), 11);
	cr_assert_eq(json_integer_value(json_object_get(u, "completion_tokens")), 7);
	t = json_object_get(o, "timings");
	cr_assert_str_eq(str(t, "started_at"), "2023-11-14T22:13:20.250Z");
	cr_assert_eq(json_integer_value(json_object_get(t, "latency_ms")), 1500);
	cr_assert_eq(json_integer_value(json_object_get(t, "first_token_ms")), 250);
	json_decref(o);
}

Test(output, spec_ok_fallbacks)
{
	struct lh_item_view v = view("k");
	json_t *o, *t, *u;
	/* Usage from the body when the journal has none; no first byte. */
	v.response = CHAT;
	v.response_len = strlen(CHAT);
	v.started_at = 100.0;
	v.ended_at = 100.0004;
	o = line_of(lh_out_spec_ok, &v);
	u = json_object_get(o, "usage");
	cr_assert_eq(json_integer_value(json_object_get(u, "prompt_tokens")), 11);
	t = json_object_get(o, "timings");
	cr_assert_eq(json_integer_value(json_object_get(t, "latency_ms")), 0);
	cr_assert(json_is_null(json_object_get(t, "first_token_ms")));
	json_decref(o);
	/* Not a chat completion: the text is kept, finish_reason is null. */
	v.response = "{\"message\":\"ok\"}";
	v.response_len = strlen(v.response);
	v.started_at = 0;
	o = line_of(lh_out_spec_ok, &v);
	cr_assert_str_eq(str(o, "output"), "{\"message\":\"ok\"}");
	cr_assert(json_is_null(json_object_get(o, "finish_reason")));
	cr_assert(json_is_null(json_object_get(json_object_get(o, "usage"), "prompt_tokens")));
	cr_assert(json_is_null(json_object_get(json_object_get(o, "timings"), "started_at")));
	cr_assert(json_is_null(json_object_get(json_object_get(o, "timings"), "latency_ms")));
	json_decref(o);
	/* A tool call answer has content null. */
	v.response = "{\"choices\":[{\"message\":{\"content\":null},\"finish_reason\":\"tool_calls\"}]}";
	v.response_len = strlen(v.response);
	o = line_of(lh_out_spec_ok, &v);
	cr_assert(json_is_null(json_object_get(o, "output")));
	cr_assert_str_eq(str(o, "finish_reason"), "tool_calls");
	json_decref(o);
	/* Read by the one completion parser (io/completion.c): content given
	 * as parts is their text, a text completion's "text" is the output. */
	v.response = "{\"choices\":[{\"message\":{\"content\":[{\"type\":\"text\",\"text\":\"a\"},"
		     "{\"type\":\"text\",\"text\":\"b\"}]},\"finish_reason\":\"stop\"}]}";
	v.response_len = strlen(v.response);
	o = line_of(lh_out_spec_ok, &v);
	cr_assert_str_eq(str(o, "output"), "ab");
	json_decref(o);
	v.response = "{\"choices\":[{\"text\":\"old\",\"finish_reason\":\"length\"}],"
		     "\"usage\":{\"prompt_tokens\":2,\"completion_tokens\":1}}";
	v.response_len = strlen(v.response);
	o = line_of(lh_out_spec_ok, &v);
	cr_assert_str_eq(str(o, "output"), "old");
	cr_assert_str_eq(str(o, "finish_reason"), "length");
	cr_assert_eq(json_integer_value(json_object_get(json_object_get(o, "usage"), "completion_tokens")), 1);
	json_decref(o);
}

Test(output, spec_err)
{
	struct lh_item_view v = view("doc-9");
	json_t *o;
	v.attempts = 5;
	v.last_status = 400;
	v.last_error = "{\"code\":\"context_length_exceeded\",\"message\":\"prompt is too long\",\"body\":{\"error\":{}}}";
	o = line_of(lh_out_spec_err, &v);
	cr_assert_str_eq(str(o, "key"), "doc-9");
	cr_assert_eq(json_integer_value(json_object_get(o, "status")), 400);
	cr_assert_str_eq(str(json_object_get(o, "error"), "code"), "context_length_exceeded");
	cr_assert_str_eq(str(json_object_get(o, "error"), "message"), "prompt is too long");
	cr_assert_eq(json_integer_value(json_object_get(o, "attempts")), 5);
	json_decref(o);
	v.last_status = 0;
	v.last_error = "{\"error\":{\"message\":\"bad key\",\"code\":\"invalid_api_key\"}}";
	o = line_of(lh_out_spec_err, &v);
	cr_assert(json_is_null(json_object_get(o, "status")));
	cr_assert_str_eq(str(json_object_get(o, "error"), "code"), "invalid_api_key");
	cr_assert_str_eq(str(json_object_get(o, "error"), "message"), "bad key");
	json_decref(o);
}

Test(output, cap_leaves_no_half_line)
{
	struct lh_item_view v = view("x");
	struct lh_buf b;
	v.response = CHAT;
	v.response_len = strlen(CHAT);
	lh_buf_init(&b, 40);
	cr_assert_eq(lh_buf_puts(&b, "prev\n"), 0);
	cr_assert_eq(lh_out_batch_ok(&v, &b), LH_ETOOBIG);
	cr_assert_eq(b.len, 5);
	cr_assert_str_eq(b.data, "prev\n");
	lh_buf_release(&b);
}
