/*
 * Fuzz target: reading what an LLM server sends back (io/completion.c,
 * llm/classify.c). The input is a response body, given to
 *   - lh_completion_parse (content, finish reason, token counts), the one
 *     completion parser: the output writers and the classifier use it;
 *   - lh_llm_judge under a spread of HTTP statuses and transport failures,
 *     and lh_llm_classify, which must agree with it;
 * and, as header values (up to the first NUL), to lh_retry_after_parse
 * and lh_llm_parse_duration; split at the first NUL into base and path,
 * to lh_llm_resolve_url.
 */
#include "fuzz.h"

#include <curl/curl.h>
#include <math.h>
#include <string.h>

#include "util/jscan.h"
#include "io/completion.h"
#include "llm/llm.h"
#include "util/buf.h"
#include "util/mem.h"

static void check_verdict(int status, int cc, const struct lh_llm_verdict *v, const char *body, size_t len)
{
	enum lh_llm_outcome o;
	const char *code = "unset";
	FUZZ_CHECK(v->outcome == LH_LLM_OK || v->outcome == LH_LLM_TRANSIENT || v->outcome == LH_LLM_PERMANENT,
		   "outcome %d", (int)v->outcome);
	FUZZ_CHECK((v->outcome == LH_LLM_OK) == (v->code == NULL), "outcome %d with code %s", (int)v->outcome,
		   v->code ? v->code : "NULL");
	FUZZ_CHECK(memchr(v->message, '\0', sizeof v->message), "message is not terminated");
	if (v->outcome == LH_LLM_OK) {
		FUZZ_CHECK(cc == 0 && status >= 200 && status <= 299, "OK for status %d, curl %d", status, cc);
		FUZZ_CHECK(v->message[0] == '\0', "OK with a message");
	} else {
		FUZZ_CHECK(v->code[0] && strlen(v->code) < 64, "code \"%s\"", v->code);
		FUZZ_CHECK(v->message[0], "failure %s without a message", v->code);
		FUZZ_CHECK(v->prompt_tokens == -1 && v->completion_tokens == -1, "tokens on failure");
	}
	o = lh_llm_classify(status, cc, body, len, &code);
	FUZZ_CHECK(o == v->outcome && code == v->code, "classify (%d, %s) differs from judge (%d, %s)", (int)o,
		   code ? code : "NULL", (int)v->outcome, v->code ? v->code : "NULL");
}

static void completion(const char *body, size_t len)
{
	struct lh_completion c;
	struct jscan_v j;
	int rc = lh_completion_parse(body, len, &c);
	FUZZ_CHECK(rc == 0 || rc == -1, "lh_completion_parse returned %d", rc);
	if (rc == 0) {
		FUZZ_CHECK(jscan_parse(body, len, &j) == 0 && j.type == 'o', "accepted a body that is not an object");
	} else {
		FUZZ_CHECK(!c.content && !c.finish_reason && !c.has_choice && c.prompt_tokens == -1 &&
				   c.completion_tokens == -1,
			   "failure left results");
	}
	FUZZ_CHECK(c.prompt_tokens >= -1 && c.completion_tokens >= -1, "negative token count");
	lh_completion_release(&c);
	FUZZ_CHECK(!c.content && !c.finish_reason, "release left strings");
}

static void headers(const char *s, size_t n)
{
	double secs = -7;
	if (lh_retry_after_parse(s, 1.7e9, &secs) == 0)
		FUZZ_CHECK(secs >= 0, "Retry-After \"%.100s\" gave %g", s, secs);
	else
		FUZZ_CHECK(secs == -7, "Retry-After failed but set *secs");
	secs = -7;
	if (lh_llm_parse_duration(s, n, &secs) == 0)
		FUZZ_CHECK(secs >= 0, "duration \"%.100s\" gave %g", s, secs);
	else
		FUZZ_CHECK(secs == -7, "duration failed but set *secs");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const int statuses[] = { 200, 201, 299, 0, 302, 400, 401, 404, 408, 413, 422, 429, 500, 503, 599, 600 };
	static const int curl_codes[] = { CURLE_COULDNT_CONNECT, CURLE_OPERATION_TIMEDOUT, CURLE_PARTIAL_FILE,
					  CURLE_URL_MALFORMAT, 9999 };
	const char *body = (const char *)data;
	struct lh_llm_verdict v;
	struct lh_buf url;
	char *copy = malloc(size + 1), *path;
	size_t n;

	completion(body, size);
	for (size_t i = 0; i < sizeof statuses / sizeof statuses[0]; i++) {
		lh_llm_judge(statuses[i], 0, body, size, &v);
		check_verdict(statuses[i], 0, &v, body, size);
	}
	for (size_t i = 0; i < sizeof curl_codes / sizeof curl_codes[0]; i++) {
		lh_llm_judge(200, curl_codes[i], body, size, &v);
		check_verdict(200, curl_codes[i], &v, body, size);
	}
	/* The body with NULL: an empty answer. */
	lh_llm_judge(200, 0, NULL, 0, &v);
	check_verdict(200, 0, &v, NULL, 0);
	lh_llm_judge(500, 0, NULL, 0, &v);
	check_verdict(500, 0, &v, NULL, 0);

	memcpy(copy, data, size);
	copy[size] = '\0';
	n = strlen(copy);
	headers(copy, n);

	path = n < size ? copy + n + 1 : NULL;
	lh_buf_init(&url, 1 << 16);
	if (lh_llm_resolve_url(copy, path, &url) == 0)
		FUZZ_CHECK(url.data && strlen(url.data) == url.len, "resolved URL has a NUL");
	lh_buf_release(&url);
	free(copy);
	return 0;
}
