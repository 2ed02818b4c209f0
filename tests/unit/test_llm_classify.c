/* Unit tests: the pure LLM helpers (error classification, Retry-After,
 * x-ratelimit durations, URL joining, reading a chat completion). */
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <string.h>
#include <time.h>

#include "io/completion.h"
#include "llm/llm.h"
#include "util/mem.h"
#include "util/url.h"
#include "completion_shim.h"



#define COMPLETION "{\"id\":\"x\",\"object\":\"chat.completion\",\"choices\":[{\"index\":0,\"message\":" \
	"{\"role\":\"assistant\",\"content\":\"hi\"},\"finish_reason\":\"stop\"}]," \
	"\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":3,\"total_tokens\":15}}"

static void classify_is(int status, int cc, const char *body, enum lh_llm_outcome want, const char *want_code)
{
	const char *code = "unset";
	enum lh_llm_outcome o = lh_llm_classify(status, cc, body, body ? strlen(body) : 0, &code);
	cr_assert_eq(o, want, "status %d curl %d: outcome %d, want %d", status, cc, o, want);
	if (want_code)
		cr_assert_str_eq(code, want_code, "status %d curl %d", status, cc);
	else
		cr_assert_null(code, "status %d curl %d: code %s", status, cc, code);
}

Test(llm_classify, transient_statuses)
{
	static const int st[] = { 408, 409, 429, 500, 502, 503, 504 };
	char want[16];
	for (size_t i = 0; i < sizeof st / sizeof st[0]; i++) {
		snprintf(want, sizeof want, "http_%d", st[i]);
		classify_is(st[i], 0, "{\"error\":{\"message\":\"busy\"}}", LH_LLM_TRANSIENT, want);
		classify_is(st[i], 0, NULL, LH_LLM_TRANSIENT, want);
		classify_is(st[i], 0, "<html>bad gateway</html>", LH_LLM_TRANSIENT, want);
	}
	/* Other 5xx are transient too. */
	classify_is(501, 0, NULL, LH_LLM_TRANSIENT, "http_501");
	classify_is(599, 0, NULL, LH_LLM_TRANSIENT, "http_599");
}

Test(llm_classify, permanent_statuses)
{
	static const int st[] = { 400, 401, 403, 404, 422 };
	char want[16];
	for (size_t i = 0; i < sizeof st / sizeof st[0]; i++) {
		snprintf(want, sizeof want, "http_%d", st[i]);
		classify_is(st[i], 0, "{\"error\":{\"message\":\"no\",\"code\":null}}", LH_LLM_PERMANENT, want);
		classify_is(st[i], 0, NULL, LH_LLM_PERMANENT, want);
	}
	/* Other 4xx are permanent; redirects are not followed. */
	classify_is(405, 0, NULL, LH_LLM_PERMANENT, "http_405");
	classify_is(413, 0, NULL, LH_LLM_PERMANENT, "http_413");
	classify_is(451, 0, NULL, LH_LLM_PERMANENT, "http_451");
	classify_is(301, 0, NULL, LH_LLM_PERMANENT, "http_301");
}

Test(llm_classify, codes_from_the_body)
{
	classify_is(401, 0,
		    "{\"error\":{\"message\":\"Incorrect API key provided\",\"type\":\"invalid_request_error\","
		    "\"param\":null,\"code\":\"invalid_api_key\"}}",
		    LH_LLM_PERMANENT, "invalid_api_key");
	classify_is(404, 0,
		    "{\"error\":{\"message\":\"The model `gpt-9` does not exist\",\"type\":\"invalid_request_error\","
		    "\"code\":\"model_not_found\"}}",
		    LH_LLM_PERMANENT, "model_not_found");
	/* Ollama's and vLLM's wording, without a code. */
	classify_is(404, 0, "{\"error\":{\"message\":\"model \\\"llama9\\\" not found, try pulling it first\","
			    "\"type\":\"api_error\",\"code\":null}}",
		    LH_LLM_PERMANENT, "model_not_found");
	classify_is(404, 0, "{\"object\":\"error\",\"message\":\"The model `x` does not exist.\","
			    "\"type\":\"NotFoundError\",\"code\":404}",
		    LH_LLM_PERMANENT, "model_not_found");
	/* An unknown code string stays an HTTP code (codes are static). */
	classify_is(400, 0, "{\"error\":{\"message\":\"m\",\"code\":\"something_new\"}}", LH_LLM_PERMANENT,
		    "http_400");
	classify_is(400, 0, "{\"error\":{\"message\":\"bad\",\"code\":\"invalid_value\"}}", LH_LLM_PERMANENT,
		    "invalid_value");
}

Test(llm_classify, quota_429_is_permanent)
{
	classify_is(429, 0,
		    "{\"error\":{\"message\":\"You exceeded your current quota\",\"type\":\"insufficient_quota\","
		    "\"code\":\"insufficient_quota\"}}",
		    LH_LLM_PERMANENT, "insufficient_quota");
	classify_is(429, 0, "{\"error\":{\"message\":\"quota\",\"type\":\"insufficient_quota\",\"code\":null}}",
		    LH_LLM_PERMANENT, "insufficient_quota");
	classify_is(429, 0, "{\"error\":{\"message\":\"Rate limit reached\",\"code\":\"rate_limit_exceeded\"}}",
		    LH_LLM_TRANSIENT, "http_429");
	/* "too many tokens" in a 429 is a rate limit, not a context error. */
	classify_is(429, 0, "{\"error\":{\"message\":\"too many tokens per minute\"}}", LH_LLM_TRANSIENT,
		    "http_429");
}

Test(llm_classify, context_length_variants)
{
	static const char *const bodies[] = {
		"{\"error\":{\"message\":\"This model's maximum context length is 8192 tokens. However, your "
		"messages resulted in 9000 tokens.\",\"type\":\"invalid_request_error\",\"code\":"
		"\"context_length_exceeded\"}}",
		"{\"error\":{\"message\":\"This model's maximum context length is 4096 tokens\",\"code\":null}}",
		"{\"error\":{\"code\":400,\"message\":\"the request exceeds the available context size, try "
		"increasing it\",\"type\":\"exceed_context_size_error\"}}",
		"{\"object\":\"error\",\"message\":\"Input is too long: too many tokens (9000 > 4096)\","
		"\"type\":\"BadRequestError\",\"code\":400}",
		"{\"error\":\"context_length_exceeded\"}",
		"prompt is too long for this model",
	};
	for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++)
		classify_is(400, 0, bodies[i], LH_LLM_PERMANENT, "context_length_exceeded");
	/* A server that says it with a 500 is not retried forever. */
	classify_is(500, 0, bodies[2], LH_LLM_PERMANENT, "context_length_exceeded");
	classify_is(400, 0, "{\"error\":{\"message\":\"temperature must be <= 2\"}}", LH_LLM_PERMANENT,
		    "http_400");
}

Test(llm_classify, transport_failures)
{
	classify_is(0, CURLE_COULDNT_CONNECT, NULL, LH_LLM_TRANSIENT, "connect_error");
	classify_is(0, CURLE_COULDNT_RESOLVE_HOST, NULL, LH_LLM_TRANSIENT, "connect_error");
	classify_is(0, CURLE_RECV_ERROR, NULL, LH_LLM_TRANSIENT, "connection_reset");
	classify_is(0, CURLE_SEND_ERROR, NULL, LH_LLM_TRANSIENT, "connection_reset");
	classify_is(0, CURLE_GOT_NOTHING, NULL, LH_LLM_TRANSIENT, "connection_reset");
	classify_is(200, CURLE_PARTIAL_FILE, "{\"choi", LH_LLM_TRANSIENT, "truncated");
	classify_is(0, CURLE_OPERATION_TIMEDOUT, NULL, LH_LLM_TRANSIENT, "timeout");
	classify_is(200, CURLE_OPERATION_TIMEDOUT, COMPLETION, LH_LLM_TRANSIENT, "timeout");
	classify_is(0, CURLE_URL_MALFORMAT, NULL, LH_LLM_PERMANENT, "bad_url");
	classify_is(0, CURLE_UNSUPPORTED_PROTOCOL, NULL, LH_LLM_PERMANENT, "bad_url");
	classify_is(0, CURLE_SSL_CONNECT_ERROR, NULL, LH_LLM_TRANSIENT, "connect_error");
	classify_is(0, CURLE_WEIRD_SERVER_REPLY, NULL, LH_LLM_TRANSIENT, "invalid_response");
}

Test(llm_classify, success_needs_a_valid_body)
{
	classify_is(200, 0, COMPLETION, LH_LLM_OK, NULL);
	classify_is(201, 0, COMPLETION, LH_LLM_OK, NULL);
	classify_is(200, 0, "{\"object\":\"list\",\"data\":[{\"embedding\":[0.1]}]}", LH_LLM_OK, NULL);
	classify_is(200, 0, "{\"model\":\"m\",\"message\":{\"content\":\"x\"},\"done\":true}", LH_LLM_OK, NULL);
	classify_is(200, 0, "not json", LH_LLM_TRANSIENT, "invalid_json");
	classify_is(200, 0, "{\"choices\":[", LH_LLM_TRANSIENT, "invalid_json");
	classify_is(200, 0, "", LH_LLM_TRANSIENT, "invalid_json");
	classify_is(200, 0, NULL, LH_LLM_TRANSIENT, "invalid_json");
	classify_is(200, 0, "{}", LH_LLM_TRANSIENT, "invalid_json");
	classify_is(200, 0, "[1,2]", LH_LLM_TRANSIENT, "invalid_json");
	classify_is(200, 0, "{\"object\":\"chat.completion\",\"id\":\"x\"}", LH_LLM_TRANSIENT, "invalid_json");
	classify_is(200, 0, "{\"choices\":7}", LH_LLM_TRANSIENT, "invalid_json");
	classify_is(200, 0, "{\"error\":{\"message\":\"overloaded\"}}", LH_LLM_TRANSIENT, "invalid_json");
	/* No status and no transport error: something odd happened. */
	classify_is(0, 0, NULL, LH_LLM_TRANSIENT, "invalid_response");
}

Test(llm_classify, judge_gives_message_and_usage)
{
	struct lh_llm_verdict v;
	const char *body = "{\"error\":{\"message\":\"Incorrect API key\",\"code\":\"invalid_api_key\"}}";
	lh_llm_judge(200, 0, COMPLETION, strlen(COMPLETION), &v);
	cr_assert_eq(v.outcome, LH_LLM_OK);
	cr_assert_eq(v.prompt_tokens, 12);
	cr_assert_eq(v.completion_tokens, 3);
	cr_assert_str_eq(v.message, "");
	lh_llm_judge(401, 0, body, strlen(body), &v);
	cr_assert_str_eq(v.message, "http 401: Incorrect API key");
	cr_assert_eq(v.prompt_tokens, -1);
	lh_llm_judge(502, 0, "<html>\n<b>Bad Gateway</b></html>", 32, &v);
	cr_assert_str_eq(v.message, "http 502: <html> <b>Bad Gateway</b></html>");
	lh_llm_judge(503, 0, NULL, 0, &v);
	cr_assert_str_eq(v.message, "http 503");
	lh_llm_judge(0, CURLE_COULDNT_CONNECT, NULL, 0, &v);
	cr_assert(strncmp(v.message, "transport error: ", 17) == 0);
}

Test(llm_classify, code_pointer_is_optional)
{
	cr_assert_eq(lh_llm_classify(503, 0, NULL, 0, NULL), LH_LLM_TRANSIENT);
}

/* ---- Retry-After ---- */

static void http_date(time_t t, char *out, size_t outsz)
{
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(out, outsz, "%a, %d %b %Y %H:%M:%S GMT", &tm);
}

Test(llm_classify, retry_after_seconds)
{
	double s = -1;
	cr_assert_eq(lh_retry_after_parse("120", 0, &s), 0);
	cr_assert_float_eq(s, 120, 1e-9);
	cr_assert_eq(lh_retry_after_parse("  5 ", 0, &s), 0);
	cr_assert_float_eq(s, 5, 1e-9);
	cr_assert_eq(lh_retry_after_parse("0", 0, &s), 0);
	cr_assert_float_eq(s, 0, 1e-9);
	cr_assert_eq(lh_retry_after_parse("1.5", 0, &s), 0);
	cr_assert_float_eq(s, 1.5, 1e-9);
}

Test(llm_classify, retry_after_http_date)
{
	char buf[64];
	double s = -1, now = (double)time(NULL);
	http_date((time_t)now + 90, buf, sizeof buf);
	cr_assert_eq(lh_retry_after_parse(buf, now, &s), 0, "%s", buf);
	cr_assert_float_eq(s, 90, 1.0);
	http_date((time_t)now - 3600, buf, sizeof buf);
	cr_assert_eq(lh_retry_after_parse(buf, now, &s), 0);
	cr_assert_float_eq(s, 0, 1e-9, "a past date means now");
	/* The obsolete forms are still HTTP-dates. */
	cr_assert_eq(lh_retry_after_parse("Sunday, 06-Nov-94 08:49:37 GMT", now, &s), 0);
	cr_assert_float_eq(s, 0, 1e-9);
	cr_assert_eq(lh_retry_after_parse("Wed, 21 Oct 2015 07:28:00 GMT", 1445412470.0, &s), 0);
	cr_assert_float_eq(s, 10, 1e-9);
}

Test(llm_classify, retry_after_garbage)
{
	static const char *const bad[] = { "", "   ", "soon", "-5", "12abc", "1e3", "5 5", "NaN", "tomorrow-ish" };
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		double s = 42;
		cr_assert_eq(lh_retry_after_parse(bad[i], 0, &s), -1, "\"%s\"", bad[i]);
		cr_assert_float_eq(s, 42, 1e-9, "untouched on error");
	}
	cr_assert_eq(lh_retry_after_parse(NULL, 0, NULL), -1);
}

/* ---- x-ratelimit durations ---- */

static double dur(const char *s)
{
	double v = -99;
	if (lh_llm_parse_duration(s, strlen(s), &v) != 0)
		return -1;
	return v;
}

Test(llm_classify, ratelimit_durations)
{
	cr_assert_float_eq(dur("1s"), 1, 1e-9);
	cr_assert_float_eq(dur("6m0s"), 360, 1e-9);
	cr_assert_float_eq(dur("20ms"), 0.02, 1e-9);
	cr_assert_float_eq(dur("1h2m3.5s"), 3723.5, 1e-9);
	cr_assert_float_eq(dur("0.5"), 0.5, 1e-9);
	cr_assert_float_eq(dur(" 60 "), 60, 1e-9);
	cr_assert_float_eq(dur("1m30s"), 90, 1e-9);
	cr_assert_float_eq(dur("250us"), 0.00025, 1e-12);
	cr_assert_float_eq(dur("2m"), 120, 1e-9);
	cr_assert_float_eq(dur(""), -1, 1e-9);
	cr_assert_float_eq(dur("abc"), -1, 1e-9);
	cr_assert_float_eq(dur("5x"), -1, 1e-9);
	cr_assert_float_eq(dur("1m30"), -1, 1e-9);
	cr_assert_float_eq(dur("s"), -1, 1e-9);
}

/* ---- URLs ---- */

static void url_is(const char *base, const char *path, const char *want)
{
	struct lh_buf b;
	lh_buf_init(&b, 0);
	cr_assert_eq(lh_llm_resolve_url(base, path, &b), 0);
	cr_assert_str_eq(b.data, want, "%s + %s", base, path);
	lh_buf_release(&b);
}

Test(llm_classify, resolve_url)
{
	url_is("http://h:1/v1", "/v1/chat/completions", "http://h:1/v1/chat/completions");
	url_is("http://h:1/v1/", "/v1/chat/completions", "http://h:1/v1/chat/completions");
	url_is("http://h:1", "/v1/chat/completions", "http://h:1/v1/chat/completions");
	url_is("http://h:1/", "/v1/chat/completions", "http://h:1/v1/chat/completions");
	url_is("http://h:1/v1", "/chat/completions", "http://h:1/v1/chat/completions");
	url_is("http://h:1/v1", "chat/completions", "http://h:1/v1/chat/completions");
	url_is("https://api.example.com/openai/v1", "/v1/embeddings", "https://api.example.com/openai/v1/embeddings");
	url_is("http://h:1/api", "/v1/chat/completions", "http://h:1/api/v1/chat/completions");
	/* "/v10" is not "/v1", and a host named v1 is not a path. */
	url_is("http://h:1/v10", "/v1/x", "http://h:1/v10/v1/x");
	url_is("http://v1", "/v1/x", "http://v1/v1/x");
	/* An absolute URL stands on its own. */
	url_is("http://h:1/v1", "http://other:2/v1/x", "http://other:2/v1/x");
}

Test(llm_classify, resolve_url_replaces_previous_content)
{
	struct lh_buf b;
	lh_buf_init(&b, 0);
	cr_assert_eq(lh_buf_puts(&b, "junk"), 0);
	cr_assert_eq(lh_llm_resolve_url("http://h", "/x", &b), 0);
	cr_assert_str_eq(b.data, "http://h/x");
	cr_assert_eq(lh_llm_resolve_url("", "/x", &b), LH_EINPUT);
	cr_assert_eq(lh_llm_resolve_url(NULL, "/x", &b), LH_EINPUT);
	lh_buf_release(&b);
	lh_buf_init(&b, 10);
	cr_assert_eq(lh_llm_resolve_url("http://host:1234", "/v1/chat/completions", &b), LH_ETOOBIG);
	lh_buf_release(&b);
}

static void base_ok(const char *url)
{
	struct lh_err e;
	lh_err_clear(&e);
	cr_assert_eq(lh_url_check_base(url, &e), 0, "%s: %s", url, e.msg);
}

static void base_bad(const char *url, const char *why)
{
	struct lh_err e;
	lh_err_clear(&e);
	cr_assert_eq(lh_url_check_base(url, &e), LH_EINPUT, "%s was taken", url ? url : "(null)");
	cr_assert(strstr(e.msg, why), "%s: \"%s\" lacks \"%s\"", url ? url : "(null)", e.msg, why);
}

Test(llm_classify, check_base_url)
{
	base_ok("http://127.0.0.1:11434/v1");
	base_ok("HTTPS://api.example.com/v1");
	base_ok("http://localhost");
	base_ok("http://h:1/");
	base_ok("http://[::1]:8080/v1");
	base_ok("https://user@host.example:443/openai/v1?x=1");
	base_ok("http://my_host-2.local:65535");
	base_bad("htp://x/v1", "expected http or https");
	base_bad("ftp://x/v1", "expected http or https");
	base_bad("localhost:8080/v1", "expected http:// or https://");
	base_bad("https://user:secret@host/v1", "holds a password");
	base_bad("http:///v1", "no host");
	base_bad("http://", "no host");
	base_bad("http://:8080/v1", "no host");
	base_bad("http://h:0/v1", "port");
	base_bad("http://h:65536", "port");
	base_bad("http://h:/v1", "port");
	base_bad("http://h:80x/v1", "port");
	base_bad("http://h o/v1", "space");
	base_bad("http://h!/v1", "the host holds");
	base_bad("http://[]/v1", "IPv6");
	base_bad("http://[zz]/v1", "IPv6");
	base_bad("http://[::1]x/v1", "after the host");
	base_bad("", "empty");
	base_bad(NULL, "empty");
}

/* ---- reading completions ---- */

Test(llm_classify, parse_completion)
{
	char *content = NULL, *reason = NULL;
	int64_t pt = 0, ct = 0;
	cr_assert_eq(parse_completion(COMPLETION, strlen(COMPLETION), &content, &pt, &ct, &reason), 0);
	cr_assert_str_eq(content, "hi");
	cr_assert_str_eq(reason, "stop");
	cr_assert_eq(pt, 12);
	cr_assert_eq(ct, 3);
	lh_free(content);
	lh_free(reason);
}

Test(llm_classify, parse_completion_partial_bodies)
{
	const char *no_usage = "{\"choices\":[{\"message\":{\"content\":null,\"tool_calls\":[]},\"finish_reason\":null}]}";
	const char *parts = "{\"choices\":[{\"message\":{\"content\":[{\"type\":\"text\",\"text\":\"a\"},"
			    "{\"type\":\"text\",\"text\":\"b\"}]}}],\"usage\":{\"prompt_tokens\":1}}";
	const char *legacy = "{\"choices\":[{\"text\":\"old\",\"finish_reason\":\"length\"}]}";
	char *content = (char *)1, *reason = (char *)1;
	int64_t pt = 0, ct = 0;
	cr_assert_eq(parse_completion(no_usage, strlen(no_usage), &content, &pt, &ct, &reason), 0);
	cr_assert_null(content);
	cr_assert_null(reason);
	cr_assert_eq(pt, -1);
	cr_assert_eq(ct, -1);
	cr_assert_eq(parse_completion(parts, strlen(parts), &content, &pt, &ct, NULL), 0);
	cr_assert_str_eq(content, "ab");
	cr_assert_eq(pt, 1);
	cr_assert_eq(ct, -1);
	lh_free(content);
	cr_assert_eq(parse_completion(legacy, strlen(legacy), &content, NULL, NULL, &reason), 0);
	cr_assert_str_eq(content, "old");
	cr_assert_str_eq(reason, "length");
	lh_free(content);
	lh_free(reason);
}

Test(llm_classify, parse_completion_rejects_other_bodies)
{
	static const char *const bad[] = { "", "nope", "{}", "{\"choices\":{}}", "[]", "{\"error\":{}}" };
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		char *content = (char *)1, *reason = (char *)1;
		int64_t pt = 0, ct = 0;
		cr_assert_eq(parse_completion(bad[i], strlen(bad[i]), &content, &pt, &ct, &reason), -1, "%s",
			     bad[i]);
		cr_assert_null(content);
		cr_assert_null(reason);
		cr_assert_eq(pt, -1);
		cr_assert_eq(ct, -1);
	}
}

/* ---- the JSON scanner, against jansson ---- */

#include <jansson.h>
#include "util/jscan.h"
#include "util/rand.h"

static const char *const jscan_seeds[] = {
	"{}", "[]", "0", "-0.5e+10", "\"x\"", "true", "false", "null", " {\"a\" : [ 1 , 2 ] } ",
	"{\"a\":\"x\\\"y\\\\\\u00e9\\ud83d\\ude00\\n\",\"b\":[1,{\"c\":\"}\"},\"]\"],\"c\":-12.5e1,\"d\":{\"e\":[]},\"f\":true}",
	"{\"s\":\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"}",
	"[[[[[[]]]]]]", "{\"a\":{\"b\":{\"c\":{}}}}", "[1,2,3,4.5,-6,7e3,8E-2,0.0]",
	"{\"x\":\"\\u0041\\/\\b\\f\\r\\t\"}",
	/* invalid */
	"", "{", "[1,]", "{\"a\":1,}", "{\"a\" 1}", "01", "1.", ".5", "-", "+1", "1e", "tru", "nul",
	"\"\\u0000\"", "\"\\ud800\"", "\"\\udc00\"", "\"\\ud800\\u0041\"", "\"a\tb\"", "\"\\x\"", "[1 2]",
	"{\"a\":1}}", "{1:2}", "\"\xc3\x28\"", "\"\xed\xa0\x80\"", "\"\xc0\xaf\"", "\"\xf4\x90\x80\x80\"",
	"\"\xe0\x80\xaf\"", "nulll", "[]]",
};

static int jscan_jansson_ok(const char *s, size_t n, int *numeric_limit)
{
	json_error_t err;
	json_t *j = json_loadb(s, n, JSON_DECODE_ANY, &err);
	*numeric_limit = !j && (strstr(err.text, "overflow") || strstr(err.text, "too big"));
	json_decref(j);
	return j != NULL;
}

static void jscan_agree(const char *s, size_t n)
{
	struct jscan_v root;
	int limit, ours = jscan_parse(s, n, &root) == 0, theirs = jscan_jansson_ok(s, n, &limit);
	if (ours != theirs && !(ours && limit)) {
		struct lh_buf b;
		lh_buf_init(&b, 0);
		cr_assert(!lh_buf_json_str(&b, s, n));
		cr_assert_fail("scanner %s, jansson %s: %s", ours ? "accepts" : "rejects", theirs ? "accepts" : "rejects",
			       b.data);
	}
}

Test(llm_jscan, agrees_with_jansson_on_seeds)
{
	for (size_t i = 0; i < sizeof jscan_seeds / sizeof jscan_seeds[0]; i++)
		jscan_agree(jscan_seeds[i], strlen(jscan_seeds[i]));
}

Test(llm_jscan, agrees_with_jansson_on_mutations)
{
	static const char alphabet[] = "{}[]\":,\\ u0123456789abcdefABCDEF.-+eEtrufalsn\n\t\x01\x7f\xc3\xa9\xed\xf0\x9f\xbf\x80";
	struct lh_rand r;
	char buf[512];
	lh_rand_seed(&r, 42);
	for (int iter = 0; iter < 200000; iter++) {
		const char *seed = jscan_seeds[lh_rand_u64(&r) % (sizeof jscan_seeds / sizeof jscan_seeds[0])];
		size_t n = strlen(seed);
		int edits = 1 + (int)(lh_rand_u64(&r) % 3);
		memcpy(buf, seed, n);
		for (int k = 0; k < edits; k++) {
			size_t at = n ? (size_t)(lh_rand_u64(&r) % (n + 1)) : 0;
			char ch = alphabet[lh_rand_u64(&r) % (sizeof alphabet - 1)];
			switch (lh_rand_u64(&r) % 4) {
			case 0: /* replace */
				if (at < n)
					buf[at] = ch;
				break;
			case 1: /* insert */
				if (n < sizeof buf - 1) {
					memmove(buf + at + 1, buf + at, n - at);
					buf[at] = ch;
					n++;
				}
				break;
			case 2: /* delete */
				if (at < n) {
					memmove(buf + at, buf + at + 1, n - at - 1);
					n--;
				}
				break;
			default: /* truncate */
				n = at;
			}
		}
		jscan_agree(buf, n);
	}
}

Test(llm_jscan, readers)
{
	const char *doc = jscan_seeds[9];
	struct jscan_v root, v, el;
	struct lh_buf b;
	size_t pos = 0;
	int count = 0;
	cr_assert_eq(jscan_parse(doc, strlen(doc), &root), 0);
	cr_assert_eq(root.type, 'o');
	lh_buf_init(&b, 0);
	cr_assert_eq(jscan_get(&root, "a", &v), 0);
	cr_assert_eq(jscan_str(&v, &b), 0);
	cr_assert_str_eq(b.data, "x\"y\\\xc3\xa9\xf0\x9f\x98\x80\n");
	cr_assert_eq(jscan_get(&root, "b", &v), 0);
	cr_assert_eq(v.type, 'a');
	while (jscan_next(&v, &pos, &el))
		count++;
	cr_assert_eq(count, 3);
	pos = 0;
	cr_assert(jscan_next(&v, &pos, &el));
	cr_assert_eq(jscan_int(&el), 1);
	cr_assert(jscan_next(&v, &pos, &el));
	cr_assert_eq(el.type, 'o');
	cr_assert(jscan_next(&v, &pos, &el));
	cr_assert(jscan_str_is(&el, "]"));
	cr_assert_eq(jscan_get(&root, "c", &v), 0);
	cr_assert_eq(jscan_int(&v), -1, "negative numbers are no token count");
	cr_assert_eq(jscan_get(&root, "d", &v), 0);
	cr_assert_eq(v.n, strlen("{\"e\":[]}"));
	cr_assert_eq(jscan_get(&root, "f", &v), 0);
	cr_assert_eq(v.type, 't');
	cr_assert_eq(jscan_get(&root, "zz", &v), -1);
	cr_assert_eq(v.type, 0);
	cr_assert_eq(jscan_get(&v, "a", &el), -1, "not an object");
	cr_assert_eq(jscan_next(&root, &pos, &el), 0, "not an array");
	lh_buf_release(&b);
}

Test(llm_jscan, string_cap_and_numbers)
{
	const char *doc = "[\"0123456789\", 99999999999999999999, 7e2, 3.9]";
	struct jscan_v root, el;
	struct lh_buf b;
	size_t pos = 0;
	cr_assert_eq(jscan_parse(doc, strlen(doc), &root), 0);
	lh_buf_init(&b, 5);
	cr_assert(jscan_next(&root, &pos, &el));
	cr_assert_eq(jscan_str(&el, &b), LH_ETOOBIG);
	cr_assert(jscan_next(&root, &pos, &el));
	cr_assert_eq(jscan_int(&el), -1, "out of range");
	cr_assert(jscan_next(&root, &pos, &el));
	cr_assert_eq(jscan_int(&el), -1, "exponent");
	cr_assert(jscan_next(&root, &pos, &el));
	cr_assert_eq(jscan_int(&el), -1, "a fraction is no token count");
	cr_assert_eq(jscan_str(&el, &b), LH_EINPUT);
	cr_assert_eq(jscan_next(&root, &pos, &el), 0);
	lh_buf_release(&b);
}

Test(llm_jscan, deep_nesting_is_bounded)
{
	size_t n = 5000;
	char *s = lh_xmalloc(2 * n);
	struct jscan_v root;
	memset(s, '[', n);
	memset(s + n, ']', n);
	cr_assert_eq(jscan_parse(s, 2 * n, &root), -1);
	cr_assert_eq(jscan_parse(s + n - 2000, 4000, &root), 0);
	lh_free(s);
}
