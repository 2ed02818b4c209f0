/*
 * llm layer: the pure half of the LLM client. Error classification, the
 * Retry-After and x-ratelimit-* header values and URL joining. Reading a
 * completion is io/completion.c's (the one parser, shared with the output
 * writers). Nothing here does I/O or keeps state, so each function
 * is tested on its own (tests/unit/test_llm_classify.c).
 *
 * Classification follows design section 6: a failure that a later attempt
 * may not meet again (the network, an overloaded or restarting server, a
 * rate limit) is transient; one that the same request will meet every
 * time (a bad key, an unknown model, a prompt over the context) is
 * permanent, so the engine can stop a run early instead of burning
 * through every item.
 */
#include "llm/llm.h"
#include "io/completion.h"
#include "util/jscan.h"
#include "util/mem.h"

#include <curl/curl.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* ---- static codes ---- */

/* "http_100" ... "http_599", nine bytes apiece, built by the compiler so
 * that every code handed out is static and needs no lock. */
#define HC3(a, b, c) "http_" #a #b #c "\0"
#define HC2(a, b) HC3(a, b, 0) HC3(a, b, 1) HC3(a, b, 2) HC3(a, b, 3) HC3(a, b, 4) \
	HC3(a, b, 5) HC3(a, b, 6) HC3(a, b, 7) HC3(a, b, 8) HC3(a, b, 9)
#define HC1(a) HC2(a, 0) HC2(a, 1) HC2(a, 2) HC2(a, 3) HC2(a, 4) \
	HC2(a, 5) HC2(a, 6) HC2(a, 7) HC2(a, 8) HC2(a, 9)
static const char http_codes[] = HC1(1) HC1(2) HC1(3) HC1(4) HC1(5);

static const char *http_code(int status)
{
	if (status < 100 || status > 599)
		return "http_error";
	return http_codes + (size_t)(status - 100) * 9;
}

/* Error codes servers put in error.code that longhaul passes on as they
 * are. Others become "http_NNN" (the message keeps the server's word):
 * codes must be static, and a short known list keeps the engine's "every
 * request fails the same way" check meaningful. */
static const char *const known_codes[] = {
	"invalid_api_key", "model_not_found", "context_length_exceeded",
	"insufficient_quota", "rate_limit_exceeded", "invalid_request_error",
	"invalid_value", "invalid_type", "unsupported_value", "unsupported_parameter",
	"missing_required_parameter", "string_above_max_length", "array_above_max_length",
	"invalid_prompt", "content_filter", "content_policy_violation",
	"billing_hard_limit_reached", "account_deactivated", "invalid_organization",
	"unknown_url", "model_not_available", "unsupported_country_region_territory",
	"invalid_image", "invalid_image_url", "image_too_large", "server_error",
};

static const char *known_code(const char *s)
{
	if (!s)
		return NULL;
	for (size_t i = 0; i < sizeof known_codes / sizeof known_codes[0]; i++)
		if (strcmp(s, known_codes[i]) == 0)
			return known_codes[i];
	return NULL;
}

/* ---- numbers without strtod (its decimal point follows the locale) ---- */

/* Parses digits with an optional fraction at s[0..n). Returns the number of
 * bytes used, 0 when there is no digit. */
static size_t parse_decimal(const char *s, size_t n, double *out)
{
	size_t i = 0, digits = 0;
	double v = 0, scale = 1;
	while (i < n && s[i] >= '0' && s[i] <= '9') {
		v = v * 10 + (s[i++] - '0');
		digits++;
	}
	if (i < n && s[i] == '.') {
		size_t j = i + 1;
		while (j < n && s[j] >= '0' && s[j] <= '9') {
			scale /= 10;
			v += (s[j++] - '0') * scale;
			digits++;
		}
		if (j > i + 1)
			i = j;
	}
	if (!digits)
		return 0;
	*out = v;
	return i;
}

static int is_space(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n';
}

static void trim(const char **s, size_t *n)
{
	while (*n && is_space(**s)) {
		(*s)++;
		(*n)--;
	}
	while (*n && is_space((*s)[*n - 1]))
		(*n)--;
}

int lh_llm_parse_duration(const char *s, size_t n, double *secs)
{
	double total = 0, v;
	size_t used;
	trim(&s, &n);
	used = parse_decimal(s, n, &v);
	if (!used)
		return -1;
	if (used == n) {
		*secs = v;
		return 0;
	}
	/* Go's time.Duration format, which OpenAI's headers use. */
	while (n) {
		used = parse_decimal(s, n, &v);
		if (!used)
			return -1;
		s += used;
		n -= used;
		if (n >= 2 && s[0] == 'm' && s[1] == 's') {
			total += v / 1e3;
			used = 2;
		} else if (n >= 2 && s[0] == 'u' && s[1] == 's') {
			total += v / 1e6;
			used = 2;
		} else if (n >= 2 && s[0] == 'n' && s[1] == 's') {
			total += v / 1e9;
			used = 2;
		} else if (n >= 1 && (s[0] == 'h' || s[0] == 'm' || s[0] == 's')) {
			total += v * (s[0] == 'h' ? 3600 : s[0] == 'm' ? 60 : 1);
			used = 1;
		} else {
			return -1;
		}
		s += used;
		n -= used;
	}
	*secs = total;
	return 0;
}

int lh_retry_after_parse(const char *value, double now, double *secs)
{
	const char *s = value;
	size_t n, used;
	double v;
	time_t t;
	int letter = 0;
	if (!value)
		return -1;
	n = strlen(value);
	trim(&s, &n);
	if (!n)
		return -1;
	used = parse_decimal(s, n, &v);
	if (used == n) {
		*secs = v;
		return 0;
	}
	/* Every HTTP-date form names its month; curl_getdate is lenient with
	 * the rest, so a value without a letter ("-5", "12 34") is garbage. */
	for (size_t i = 0; i < n; i++)
		if ((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z'))
			letter = 1;
	if (!letter)
		return -1;
	t = curl_getdate(s, NULL);
	if (t == (time_t)-1)
		return -1;
	*secs = (double)t > now ? (double)t - now : 0;
	return 0;
}

/* ---- reading bodies ---- */

static int has_member(const struct jscan_v *j, const char *key)
{
	struct jscan_v v;
	return jscan_get(j, key, &v) == 0;
}

/* Whether a 2xx JSON body is an answer. A chat completion must carry
 * "choices"; other endpoints (embeddings' "data", Ollama's "message" or
 * "response") are recognised by their own member. A 200 that carries an
 * "error" instead is a server fault, not an answer. */
static int answer_ok(const struct jscan_v *j)
{
	struct jscan_v v;
	if (j->type != 'o')
		return 0;
	if (jscan_get(j, "choices", &v) == 0)
		return v.type == 'a';
	if (has_member(j, "error"))
		return 0;
	if (jscan_get(j, "object", &v) == 0 && jscan_str_starts(&v, "chat.completion"))
		return 0;
	return has_member(j, "data") || has_member(j, "message") || has_member(j, "response") ||
	       has_member(j, "embedding") || has_member(j, "embeddings");
}

/* The parts of an error body that matter, borrowed from j. Handles
 * OpenAI's {"error":{...}}, vLLM's top-level {"message","type","code"},
 * Ollama's {"error":"..."} and FastAPI's {"detail":"..."}. */
struct err_body {
	const char *code, *type, *message;
};

static void read_error(json_t *j, struct err_body *eb)
{
	json_t *e = json_object_get(j, "error");
	memset(eb, 0, sizeof *eb);
	if (json_is_string(e)) {
		eb->message = json_string_value(e);
		return;
	}
	if (!json_is_object(e))
		e = j;
	eb->code = json_string_value(json_object_get(e, "code"));
	eb->type = json_string_value(json_object_get(e, "type"));
	eb->message = json_string_value(json_object_get(e, "message"));
	if (!eb->message)
		eb->message = json_string_value(json_object_get(j, "detail"));
}

static int mentions(const char *s, const char *const *needles)
{
	if (!s)
		return 0;
	for (; *needles; needles++)
		if (strcasestr(s, *needles))
			return 1;
	return 0;
}

/* Context-length errors have no common code; servers say it in words.
 * The phrases are specific enough not to match other 4xx errors. */
static int is_context_error(const struct err_body *eb, const char *text)
{
	static const char *const phrases[] = {
		"context length", "context_length", "context window", "maximum context",
		"context size", "exceed_context", "too many tokens", "prompt is too long",
		"input is too long", "reduce the length", "maximum input length", NULL,
	};
	return mentions(eb->code, phrases) || mentions(eb->type, phrases) || mentions(eb->message, phrases) ||
	       mentions(text, phrases);
}

static int is_model_missing(const struct err_body *eb)
{
	static const char *const phrases[] = { "not found", "does not exist", "no such model", NULL };
	return eb->message && strcasestr(eb->message, "model") && mentions(eb->message, phrases);
}

static int is_transient_status(int status)
{
	switch (status) {
	case 408: case 409: case 429: case 500: case 502: case 503: case 504:
		return 1;
	default:
		return status >= 500 && status <= 599;
	}
}

static void set_msg(struct lh_llm_verdict *v, const char *fmt, ...) LH_PRINTF(2, 3);

static void set_msg(struct lh_llm_verdict *v, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(v->message, sizeof v->message, fmt, ap);
	va_end(ap);
}

/* A printable excerpt of a body that is not JSON (an HTML error page from
 * a proxy, plain text from a small server). */
static void excerpt(const char *body, size_t len, char *out, size_t outsz)
{
	size_t n = len < outsz - 1 ? len : outsz - 1;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)body[i];
		out[i] = ch < 0x20 || ch == 0x7f ? ' ' : (char)ch;
	}
	out[n] = '\0';
}

static void judge_transport(int cc, struct lh_llm_verdict *v)
{
	v->outcome = LH_LLM_TRANSIENT;
	switch (cc) {
	case CURLE_COULDNT_RESOLVE_PROXY:
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_CONNECT:
	case CURLE_SSL_CONNECT_ERROR:
		v->code = "connect_error";
		break;
	case CURLE_RECV_ERROR:
	case CURLE_SEND_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
		v->code = "connection_reset";
		break;
	case CURLE_PARTIAL_FILE:
		v->code = "truncated";
		break;
	case CURLE_OPERATION_TIMEDOUT:
		v->code = "timeout";
		break;
	case CURLE_WEIRD_SERVER_REPLY:
	case CURLE_BAD_CONTENT_ENCODING:
		v->code = "invalid_response";
		break;
	case CURLE_URL_MALFORMAT:
	case CURLE_UNSUPPORTED_PROTOCOL:
		v->outcome = LH_LLM_PERMANENT;
		v->code = "bad_url";
		break;
	case CURLE_PEER_FAILED_VERIFICATION:
		/* A certificate that does not verify will not start to. */
		v->outcome = LH_LLM_PERMANENT;
		v->code = "tls_verify_failed";
		break;
	case CURLE_WRITE_ERROR:
	case CURLE_ABORTED_BY_CALLBACK:
		v->code = "aborted";
		break;
	default:
		v->code = "transport_error";
	}
	set_msg(v, "transport error: %s", curl_easy_strerror((CURLcode)cc));
}

static void judge_success(int status, const char *body, size_t len, struct lh_llm_verdict *v)
{
	struct jscan_v j;
	if (jscan_parse(body, len, &j) != 0 || !answer_ok(&j)) {
		v->outcome = LH_LLM_TRANSIENT;
		v->code = "invalid_json";
		set_msg(v, "http %d: the body is not a valid answer", status);
		return;
	}
	lh_completion_usage(&j, &v->prompt_tokens, &v->completion_tokens);
}

/* Picks the code for a permanent HTTP error. */
static const char *permanent_code(int status, const struct err_body *eb, const char *text)
{
	const char *k;
	if ((status == 400 || status == 413 || status == 422) && is_context_error(eb, text))
		return "context_length_exceeded";
	if ((k = known_code(eb->code)) != NULL)
		return k;
	if (status == 404 && is_model_missing(eb))
		return "model_not_found";
	return http_code(status);
}

static void judge_error(int status, const char *body, size_t len, struct lh_llm_verdict *v)
{
	json_t *j = body && len ? json_loadb(body, len, 0, NULL) : NULL;
	struct err_body eb;
	char text[201] = "";
	memset(&eb, 0, sizeof eb);
	if (json_is_object(j))
		read_error(j, &eb);
	else if (body && len)
		excerpt(body, len, text, sizeof text);
	if (eb.message || text[0])
		set_msg(v, "http %d: %s", status, eb.message ? eb.message : text);
	else
		set_msg(v, "http %d", status);

	if (status == 429) {
		int quota = (eb.code && strcmp(eb.code, "insufficient_quota") == 0) ||
			    (eb.type && strcmp(eb.type, "insufficient_quota") == 0);
		v->outcome = quota ? LH_LLM_PERMANENT : LH_LLM_TRANSIENT;
		v->code = quota ? "insufficient_quota" : http_code(status);
	} else if (is_transient_status(status)) {
		/* Some servers (older llama.cpp) answer an over-long prompt with a
		 * 500; retrying it would fail the same way forever. */
		int ctx = status >= 500 && is_context_error(&eb, text);
		v->outcome = ctx ? LH_LLM_PERMANENT : LH_LLM_TRANSIENT;
		v->code = ctx ? "context_length_exceeded" : http_code(status);
	} else if (status >= 300 && status <= 499) {
		/* Redirects are not followed: the base URL is wrong (http for
		 * https, a missing path) and will stay wrong. */
		v->outcome = LH_LLM_PERMANENT;
		v->code = permanent_code(status, &eb, text);
	} else {
		v->outcome = LH_LLM_TRANSIENT;
		v->code = status ? http_code(status) : "invalid_response";
	}
	json_decref(j);
}

void lh_llm_judge(int status, int curl_code, const char *body, size_t body_len, struct lh_llm_verdict *v)
{
	v->outcome = LH_LLM_OK;
	v->code = NULL;
	v->message[0] = '\0';
	v->prompt_tokens = v->completion_tokens = -1;
	if (curl_code != CURLE_OK)
		judge_transport(curl_code, v);
	else if (status >= 200 && status <= 299)
		judge_success(status, body, body_len, v);
	else
		judge_error(status, body, body_len, v);
}

enum lh_llm_outcome lh_llm_classify(int status, int curl_code, const char *body, size_t body_len,
				    const char **code)
{
	struct lh_llm_verdict v;
	lh_llm_judge(status, curl_code, body, body_len, &v);
	if (code)
		*code = v.code;
	return v.outcome;
}

/* ---- URLs ---- */

static int has_scheme(const char *s)
{
	return strncasecmp(s, "http://", 7) == 0 || strncasecmp(s, "https://", 8) == 0;
}

/* Whether the path part of base[0..n) ends in the segment "/v1". */
static int base_ends_v1(const char *base, size_t n)
{
	const char *auth = memmem(base, n, "://", 3); /* within n: "http://" trims to "http:" */
	size_t pstart = 0;
	if (auth) {
		const char *slash = memchr(auth + 3, '/', n - (size_t)(auth + 3 - base));
		if (!slash)
			return 0;
		pstart = (size_t)(slash - base);
	}
	return n - pstart >= 3 && memcmp(base + n - 3, "/v1", 3) == 0;
}

int lh_llm_resolve_url(const char *base, const char *path, struct lh_buf *out)
{
	size_t bl;
	int rc;
	lh_buf_clear(out);
	if (!path)
		path = "";
	if (has_scheme(path))
		return lh_buf_puts(out, path);
	if (!base || !*base)
		return LH_EINPUT;
	bl = strlen(base);
	while (bl && base[bl - 1] == '/')
		bl--;
	while (*path == '/')
		path++;
	if (base_ends_v1(base, bl) && strncmp(path, "v1", 2) == 0 && (path[2] == '/' || !path[2])) {
		path += 2;
		while (*path == '/')
			path++;
	}
	rc = lh_buf_append(out, base, bl);
	if (!rc && *path)
		rc = lh_buf_putc(out, '/');
	if (!rc)
		rc = lh_buf_puts(out, path);
	return rc;
}

/* A host name's characters: letters, digits, '-', '.', '_' (RFC 3986's
 * unreserved set without '~', which no resolver takes). */
