/*
 * api layer: the HTTP server (docs/api.md) over libmicrohttpd.
 *
 * Threads: MHD runs one listening thread and one thread per connection
 * (MHD_USE_THREAD_PER_CONNECTION), so that an event stream's reader may
 * block on a condition variable until the store has news. Every request
 * thread borrows a store handle from a small pool for as long as it needs
 * one (a streaming reader, for one page), so a handle is only ever used by
 * one thread at a time and a stream that waits holds none.
 *
 * A request goes through on_request three times or more: once with its
 * headers (route, authentication, limits, Content-Type; an error found here
 * is answered after the body is drained, see struct api_req), once per body
 * chunk (kept in memory up to max_body, or streamed to a file in upload_dir
 * for batch uploads), and once at the end, when the route runs.
 */
#include "api/api_internal.h"
#include "util/hash.h"
#include "util/log.h"
#include "util/mem.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* ---- JSON strings ---- */

/* Length of the well-formed UTF-8 sequence at p (no overlongs, surrogates
 * or code points above U+10FFFF), or 0. */
static size_t utf8_seq(const unsigned char *p)
{
	unsigned c = p[0], cp;
	size_t n, i;
	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		n = 2, cp = c & 0x1f;
	else if (c >= 0xe0 && c <= 0xef)
		n = 3, cp = c & 0x0f;
	else if (c >= 0xf0 && c <= 0xf4)
		n = 4, cp = c & 0x07;
	else
		return 0;
	for (i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (p[i] & 0x3f);
	}
	if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

json_t *api_json_str(const char *s)
{
	const unsigned char *p;
	struct lh_buf b;
	json_t *j;
	if (!s)
		return json_null();
	j = json_string(s);
	if (j)
		return j;
	/* Not UTF-8 (a file name, a percent-decoded URL): each bad byte
	 * becomes U+FFFD rather than losing the whole answer. */
	lh_buf_init(&b, 0);
	for (p = (const unsigned char *)s; *p;) {
		size_t n = utf8_seq(p);
		if (n ? lh_buf_append(&b, p, n) : lh_buf_append(&b, "\xef\xbf\xbd", 3))
			break;
		p += n ? n : 1;
	}
	j = json_stringn(b.data ? b.data : "", b.len);
	lh_buf_release(&b);
	return j ? j : json_string("");
}

/* ---- responses ---- */

static enum MHD_Result queue(struct api_req *r, unsigned status, struct MHD_Response *resp)
{
	enum MHD_Result ret;
	if (!resp)
		return MHD_NO;
	ret = MHD_queue_response(r->c, status, resp);
	MHD_destroy_response(resp);
	r->answered = 1;
	return ret;
}

static struct MHD_Response *json_response(json_t *body)
{
	/* Compact; reals with up to 10 significant digits (41.5, not 41.500000000000001). */
	char *text = json_dumps(body, JSON_COMPACT | JSON_REAL_PRECISION(10));
	struct MHD_Response *resp;
	size_t len;
	json_decref(body);
	if (!text)
		return NULL;
	len = strlen(text);
	text[len] = '\n';
	resp = MHD_create_response_from_buffer(len + 1, text, MHD_RESPMEM_MUST_COPY);
	free(text); /* jansson allocates with malloc */
	if (resp)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
	return resp;
}

enum MHD_Result api_send_json(struct api_req *r, unsigned status, json_t *body)
{
	return api_send_json_hdr(r, status, body, NULL, NULL);
}

enum MHD_Result api_send_json_hdr(struct api_req *r, unsigned status, json_t *body, const char *header,
				  const char *value)
{
	struct MHD_Response *resp = json_response(body);
	if (resp && header)
		MHD_add_response_header(resp, header, value);
	if (resp && status == MHD_HTTP_UNAUTHORIZED)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
	if (resp && status == MHD_HTTP_METHOD_NOT_ALLOWED) {
		static const char *const allow[] = {
			[R_HEALTHZ] = "GET", [R_READYZ] = "GET", [R_JOBS] = "GET, POST",
			[R_JOB] = "GET, PATCH, DELETE", [R_JOB_PAUSE] = "POST", [R_JOB_RESUME] = "POST",
			[R_JOB_CANCEL] = "POST", [R_JOB_RETRY] = "POST", [R_JOB_ITEMS] = "GET",
			[R_JOB_RESULTS] = "GET", [R_JOB_ERRORS] = "GET", [R_JOB_EVENTS] = "GET",
			[R_JOB_STREAM] = "GET", [R_EVENTS_STREAM] = "GET", [R_JOB_REDUCE] = "GET",
			[R_ITEM] = "GET", [R_ITEM_APPROVE] = "POST", [R_ITEM_REJECT] = "POST",
		};
		MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow[r->route]);
	}
	return queue(r, status, resp);
}

json_t *api_error_body(const char *code, json_t *detail, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	return json_pack("{s:{s:s,s:o,s:o}}", "error", "code", code, "message", api_json_str(msg), "detail",
			 detail ? detail : json_null());
}

enum MHD_Result api_send_error(struct api_req *r, unsigned status, const char *code, json_t *detail,
			       const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	return api_send_json(r, status, api_error_body(code, detail, "%s", msg));
}

static json_t *err_detail(const struct lh_err *e)
{
	json_t *d;
	if (!e->line && !e->field[0] && !e->file[0])
		return NULL;
	d = json_object();
	if (e->line)
		json_object_set_new(d, "line", json_integer(e->line));
	if (e->field[0])
		json_object_set_new(d, "field", api_json_str(e->field));
	if (e->file[0])
		json_object_set_new(d, "file", api_json_str(e->file));
	return d;
}

enum MHD_Result api_send_err(struct api_req *r, int rc, const struct lh_err *e)
{
	switch (rc) {
	case LH_EINPUT:
		return api_send_error(r, MHD_HTTP_BAD_REQUEST, "bad_input", err_detail(e), "%s", e->msg);
	case LH_ENOTFOUND:
		return api_send_error(r, MHD_HTTP_NOT_FOUND, "not_found", NULL, "%s", e->msg);
	case LH_ETOOBIG:
		return api_send_error(r, MHD_HTTP_CONTENT_TOO_LARGE, "too_large", err_detail(e), "%s", e->msg);
	default:
		lh_error("api: %s %s: %s", r->method, lh_err_name(rc), e->msg);
		return api_send_error(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal", NULL, "%s", e->msg);
	}
}

enum MHD_Result api_send_state_error(struct api_req *r, const char *from, const char *to)
{
	return api_send_error(r, MHD_HTTP_CONFLICT, "illegal_transition",
			      json_pack("{s:s,s:s}", "from", from, "to", to), "job %lld cannot go from %s to %s",
			      (long long)r->job, from, to);
}

enum MHD_Result api_send_text(struct api_req *r, unsigned status, const char *content_type, const char *data,
			      size_t len)
{
	struct MHD_Response *resp = MHD_create_response_from_buffer(len, (void *)data, MHD_RESPMEM_MUST_COPY);
	if (resp)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
	return queue(r, status, resp);
}

enum MHD_Result api_send_stream(struct api_req *r, const char *content_type, MHD_ContentReaderCallback reader,
				void *cls, MHD_ContentReaderFreeCallback free_cb)
{
	struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, API_BLOCK, reader, cls,
								      free_cb);
	if (!resp) {
		free_cb(cls);
		return MHD_NO;
	}
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
	if (!strcmp(content_type, "text/event-stream")) {
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
		MHD_add_response_header(resp, "X-Accel-Buffering", "no");
	}
	return queue(r, MHD_HTTP_OK, resp);
}

/* Records an error to answer once the body is drained (see struct api_req). */
static void drop_upload(struct api_req *r)
{
	if (r->upload_fd >= 0)
		close(r->upload_fd);
	r->upload_fd = -1;
	if (r->upload_path)
		unlink(r->upload_path);
	lh_free(r->upload_path);
	r->upload_path = NULL;
}

static void pend(struct api_req *r, unsigned status, json_t *body)
{
	if (r->err_status) {
		json_decref(body);
		return;
	}
	r->err_status = status;
	r->err_body = body;
	/* The upload is of no more use; it goes before the answer. */
	drop_upload(r);
}

static enum MHD_Result send_pending(struct api_req *r)
{
	json_t *body = r->err_body;
	r->err_body = NULL;
	return api_send_json(r, r->err_status, body);
}

/* ---- query parameters ---- */

const char *api_query(struct api_req *r, const char *name)
{
	return MHD_lookup_connection_value(r->c, MHD_GET_ARGUMENT_KIND, name);
}

int api_parse_i64(const char *s, int64_t *out)
{
	const char *p = s;
	int neg = 0;
	uint64_t v = 0;
	if (!s)
		return -1;
	if (*p == '-') {
		neg = 1;
		p++;
	}
	if (!*p)
		return -1;
	for (; *p; p++) {
		if (*p < '0' || *p > '9')
			return -1;
		if (v > (UINT64_MAX - 9) / 10)
			return -1;
		v = v * 10 + (uint64_t)(*p - '0');
	}
	if (v > (uint64_t)INT64_MAX)
		return -1;
	*out = neg ? -(int64_t)v : (int64_t)v;
	return 0;
}

int api_query_int(struct api_req *r, const char *name, int64_t min, int64_t max, int64_t def, int64_t *out,
		  enum MHD_Result *ret)
{
	const char *s = api_query(r, name);
	int64_t v;
	if (!s) {
		*out = def;
		return 0;
	}
	if (api_parse_i64(s, &v) || v < min || v > max) {
		*ret = api_send_error(r, MHD_HTTP_BAD_REQUEST, "bad_input", json_pack("{s:s}", "field", name),
				      "query parameter \"%s\" must be an integer from %lld to %lld", name,
				      (long long)min, (long long)max);
		return -1;
	}
	*out = v;
	return 0;
}

/* ---- store handles ---- */

/* Lends a store handle. Opening one costs milliseconds (a connection and
 * its prepared statements), and a hundred event streams woken by one commit
 * must not each open their own: when API_POOL_MAX handles are lent out, a
 * caller waits for one to come back. A caller that waited a second (a
 * request holding one handle and asking for another, say) gets a handle of
 * its own rather than a deadlock; it is closed when given back. */
struct lh_store *api_store_get(struct lh_api *a, struct lh_err *e)
{
	struct lh_store_opts o = { .path = a->store_path, .sync_full = 0, .create = 0 };
	struct lh_store *st = NULL;
	struct timespec until;
	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += 1;
	pthread_mutex_lock(&a->pool_mu);
	while (!a->npool && a->nopen >= API_POOL_MAX)
		if (pthread_cond_timedwait(&a->pool_cv, &a->pool_mu, &until) == ETIMEDOUT)
			break;
	if (a->npool)
		st = a->pool[--a->npool];
	else
		a->nopen++;
	pthread_mutex_unlock(&a->pool_mu);
	if (st)
		return st;
	if (lh_store_open(&o, &st, e)) {
		pthread_mutex_lock(&a->pool_mu);
		a->nopen--;
		pthread_mutex_unlock(&a->pool_mu);
		return NULL;
	}
	return st;
}

void api_store_put(struct lh_api *a, struct lh_store *st)
{
	if (!st)
		return;
	pthread_mutex_lock(&a->pool_mu);
	if (a->npool < API_POOL_MAX) {
		a->pool[a->npool++] = st;
		st = NULL;
	} else {
		a->nopen--;
	}
	pthread_cond_signal(&a->pool_cv);
	pthread_mutex_unlock(&a->pool_mu);
	lh_store_close(st);
}

/* ---- engine news ---- */

void api_notify(struct lh_api *a, int64_t job, enum lh_job_news cmd)
{
	if (a->hooks.notify)
		a->hooks.notify(a->hooks.arg, job, cmd);
	lh_api_events_changed(a);
}

void lh_api_events_changed(struct lh_api *a)
{
	if (!a)
		return;
	pthread_mutex_lock(&a->ev_mu);
	a->ev_gen++;
	pthread_cond_broadcast(&a->ev_cv);
	pthread_mutex_unlock(&a->ev_mu);
}

int api_stopping(struct lh_api *a)
{
	int s;
	pthread_mutex_lock(&a->ev_mu);
	s = a->stopping;
	pthread_mutex_unlock(&a->ev_mu);
	return s;
}

/* ---- routing ---- */

/* A job id: a positive decimal integer without sign or leading zero. */
static int parse_id(const char *s, size_t n, int64_t *id)
{
	char buf[24];
	if (n == 0 || n >= sizeof buf || s[0] == '0')
		return -1;
	memcpy(buf, s, n);
	buf[n] = '\0';
	return buf[0] == '-' || api_parse_i64(buf, id) ? -1 : 0;
}

/* The item routes: /items/{key}, and with POST /items/{key}/approve or
 * /reject. MHD hands the path percent-decoded, so a key may hold any
 * character, '/' included: a POST's last segment is the action, a GET's
 * whole rest the key. *key gets a new string. */
static enum api_route item_route(const char *rest, const char *method, char **key)
{
	static const struct { const char *tail; enum api_route route; } acts[] = {
		{ "/approve", R_ITEM_APPROVE }, { "/reject", R_ITEM_REJECT },
	};
	size_t n = strlen(rest);
	if (!n)
		return R_NONE;
	if (!strcmp(method, MHD_HTTP_METHOD_POST)) {
		for (size_t i = 0; i < sizeof acts / sizeof acts[0]; i++) {
			size_t t = strlen(acts[i].tail);
			if (n > t && !strcmp(rest + n - t, acts[i].tail)) {
				*key = lh_xstrndup(rest, n - t);
				return acts[i].route;
			}
		}
	}
	*key = lh_xstrdup(rest);
	return R_ITEM;
}

static enum api_route route_of(const char *url, const char *method, int64_t *job, char **key)
{
	static const struct { const char *tail; enum api_route route; } subs[] = {
		{ "", R_JOB }, { "/pause", R_JOB_PAUSE }, { "/resume", R_JOB_RESUME },
		{ "/cancel", R_JOB_CANCEL }, { "/retry", R_JOB_RETRY }, { "/items", R_JOB_ITEMS },
		{ "/results", R_JOB_RESULTS }, { "/errors", R_JOB_ERRORS }, { "/events", R_JOB_EVENTS },
		{ "/events/stream", R_JOB_STREAM }, { "/reduce", R_JOB_REDUCE },
	};
	const char *p, *slash;
	*job = 0;
	if (!strcmp(url, "/healthz"))
		return R_HEALTHZ;
	if (!strcmp(url, "/readyz"))
		return R_READYZ;
	if (!strcmp(url, "/v1/jobs"))
		return R_JOBS;
	if (!strcmp(url, "/v1/events/stream"))
		return R_EVENTS_STREAM;
	if (strncmp(url, "/v1/jobs/", 9) != 0)
		return R_NONE;
	p = url + 9;
	slash = strchr(p, '/');
	if (parse_id(p, slash ? (size_t)(slash - p) : strlen(p), job))
		return R_NONE;
	p = slash ? slash : "";
	if (!strncmp(p, "/items/", 7))
		return item_route(p + 7, method, key);
	for (size_t i = 0; i < sizeof subs / sizeof subs[0]; i++)
		if (!strcmp(p, subs[i].tail))
			return subs[i].route;
	return R_NONE;
}

static int method_ok(enum api_route route, const char *m)
{
	int get = !strcmp(m, MHD_HTTP_METHOD_GET), post = !strcmp(m, MHD_HTTP_METHOD_POST);
	switch (route) {
	case R_JOBS: return get || post;
	case R_JOB: return get || !strcmp(m, MHD_HTTP_METHOD_PATCH) || !strcmp(m, MHD_HTTP_METHOD_DELETE);
	case R_JOB_PAUSE: case R_JOB_RESUME: case R_JOB_CANCEL: case R_JOB_RETRY: return post;
	case R_ITEM_APPROVE: case R_ITEM_REJECT: return post;
	default: return get;
	}
}

/* ---- authentication ---- */

/* Compares SHA-256 digests over their whole length, so that neither the
 * place of the first wrong byte nor the token's length shows in the time. */
static int token_ok(const struct lh_api *a, const char *given)
{
	unsigned char h[32];
	unsigned diff = 0;
	lh_sha256(given, strlen(given), h);
	for (size_t i = 0; i < sizeof h; i++)
		diff |= (unsigned)(h[i] ^ a->token_hash[i]);
	return diff == 0;
}

static int authorized(struct api_req *r)
{
	const char *h;
	if (!r->api->has_token || r->route == R_HEALTHZ || r->route == R_READYZ)
		return 1;
	h = MHD_lookup_connection_value(r->c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
	if (h && !strncasecmp(h, "Bearer ", 7)) {
		h += 7;
		while (*h == ' ')
			h++;
		if (token_ok(r->api, h))
			return 1;
	}
	/* A browser's EventSource cannot send headers. */
	if (r->route == R_JOB_STREAM || r->route == R_EVENTS_STREAM) {
		const char *q = api_query(r, "token");
		if (q && token_ok(r->api, q))
			return 1;
	}
	return 0;
}

/* ---- requests ---- */

static struct api_req *req_new(struct lh_api *a, struct MHD_Connection *c, const char *method)
{
	struct api_req *r = lh_xcalloc(1, sizeof *r);
	r->api = a;
	r->c = c;
	r->method = method;
	r->upload_fd = -1;
	return r;
}

static void req_free(struct api_req *r)
{
	drop_upload(r);
	lh_buf_release(&r->body);
	json_decref(r->err_body);
	lh_free(r->key);
	lh_free(r);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe)
{
	if (*con_cls)
		req_free(*con_cls);
	*con_cls = NULL;
}

/* 1 when the request announces a body (Content-Length > 0 or chunked). */
static int has_body(struct api_req *r, uint64_t *declared)
{
	const char *cl = MHD_lookup_connection_value(r->c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
	const char *te = MHD_lookup_connection_value(r->c, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING);
	int64_t n = 0;
	*declared = 0;
	if (cl && !api_parse_i64(cl, &n) && n > 0) {
		*declared = (uint64_t)n;
		return 1;
	}
	return te != NULL;
}

static json_t *too_large(size_t limit)
{
	return api_error_body("too_large", NULL, "the body is larger than %zu bytes", limit);
}

/* The first call: everything that can be decided from the headers. */
static enum MHD_Result req_begin(struct api_req *r, const char *url)
{
	struct lh_api *a = r->api;
	uint64_t declared;
	int body;
	r->route = route_of(url, r->method, &r->job, &r->key);
	r->limit = r->route == R_ITEM_APPROVE || r->route == R_ITEM_REJECT ? API_DECIDE_BODY : a->max_body;
	if (!authorized(r))
		pend(r, MHD_HTTP_UNAUTHORIZED,
		     api_error_body("unauthorized", NULL, "a valid token is required (Authorization: Bearer TOKEN)"));
	else if (r->route == R_NONE)
		pend(r, MHD_HTTP_NOT_FOUND, api_error_body("not_found", NULL, "no such route: %s %s", r->method, url));
	else if (!method_ok(r->route, r->method))
		pend(r, MHD_HTTP_METHOD_NOT_ALLOWED,
		     api_error_body("method_not_allowed", NULL, "%s is not allowed on %s", r->method, url));
	else if (r->route == R_JOBS && !strcmp(r->method, MHD_HTTP_METHOD_POST)) {
		const char *ct = MHD_lookup_connection_value(r->c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
		r->submit = api_submit_kind(ct);
		if (r->submit == SUBMIT_NONE)
			pend(r, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE,
			     api_error_body("unsupported_media_type", NULL,
					    "a job is a spec (application/json, application/yaml) or a batch file "
					    "(application/jsonl, application/x-ndjson), not %s", ct ? ct : "no Content-Type"));
		else if (r->submit == SUBMIT_BATCH)
			r->limit = a->max_upload;
		if (!r->err_status)
			(void)api_submit_check(r);
	}
	body = has_body(r, &declared);
	if (!r->err_status && declared > r->limit)
		pend(r, MHD_HTTP_CONTENT_TOO_LARGE, too_large(r->limit));
	if (!r->err_status && body && r->submit == SUBMIT_BATCH)
		(void)api_submit_open_upload(r);
	if (!r->err_status) {
		lh_buf_init(&r->body, r->limit);
		return MHD_YES;
	}
	/* Answer at once (MHD then closes the connection) when the client
	 * waits for "100 Continue" before sending its body, or when the body
	 * is too large to drain; otherwise at the end, which keeps the
	 * connection alive. */
	{
		const char *expect = MHD_lookup_connection_value(r->c, MHD_HEADER_KIND, MHD_HTTP_HEADER_EXPECT);
		if (body && ((expect && !strcasecmp(expect, "100-continue")) || declared > API_DISCARD_MAX))
			return send_pending(r);
	}
	return MHD_YES;
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static enum MHD_Result req_body(struct api_req *r, const char *data, size_t n)
{
	r->received += n;
	if (r->err_status) {
		/* Draining. MHD 0.9.75 takes a response only with the headers or
		 * once the body is in, so a client that keeps sending (a chunked
		 * body far over its limit) is cut off without one. */
		if (r->received <= API_DISCARD_MAX)
			return MHD_YES;
		lh_info("api: closing a connection that sent more than %u bytes past an error", API_DISCARD_MAX);
		return MHD_NO;
	}
	if (r->received > r->limit) {
		pend(r, MHD_HTTP_CONTENT_TOO_LARGE, too_large(r->limit));
		r->received = n; /* count the drain from here */
		return MHD_YES;
	}
	if (r->upload_fd >= 0) {
		if (write_all(r->upload_fd, data, n)) {
			lh_error("api: could not write the upload %s: %s", r->upload_path, strerror(errno));
			pend(r, MHD_HTTP_INTERNAL_SERVER_ERROR,
			     api_error_body("internal", NULL, "could not store the upload: %s", strerror(errno)));
		}
		return MHD_YES;
	}
	if (lh_buf_append(&r->body, data, n))
		pend(r, MHD_HTTP_CONTENT_TOO_LARGE, too_large(r->limit));
	return MHD_YES;
}

static enum MHD_Result readyz(struct api_req *r)
{
	struct lh_api *a = r->api;
	int ready = !api_stopping(a) && (!a->hooks.ready || a->hooks.ready(a->hooks.arg));
	if (!ready)
		return api_send_error(r, MHD_HTTP_SERVICE_UNAVAILABLE, "not_ready", NULL, "not ready");
	return api_send_json(r, MHD_HTTP_OK, json_pack("{s:s}", "status", "ready"));
}

static enum MHD_Result req_end(struct api_req *r)
{
	const char *m = r->method;
	switch (r->route) {
	case R_HEALTHZ: return api_send_json(r, MHD_HTTP_OK, json_pack("{s:s}", "status", "ok"));
	case R_READYZ: return readyz(r);
	case R_JOBS: return !strcmp(m, MHD_HTTP_METHOD_POST) ? api_submit(r) : api_jobs_list(r);
	case R_JOB:
		if (!strcmp(m, MHD_HTTP_METHOD_PATCH))
			return api_job_patch(r);
		if (!strcmp(m, MHD_HTTP_METHOD_DELETE))
			return api_job_delete(r);
		return api_job_get(r);
	case R_JOB_PAUSE: case R_JOB_RESUME: case R_JOB_CANCEL: return api_job_control(r);
	case R_JOB_RETRY: return api_job_retry(r);
	case R_JOB_ITEMS: return api_items_list(r);
	case R_JOB_RESULTS: case R_JOB_ERRORS: return api_items_export(r);
	case R_JOB_EVENTS: return api_events_list(r);
	case R_JOB_STREAM: case R_EVENTS_STREAM: return api_events_stream(r);
	case R_JOB_REDUCE: return api_job_reduce(r);
	case R_ITEM: return api_item_get(r);
	case R_ITEM_APPROVE: case R_ITEM_REJECT: return api_item_decide(r);
	case R_NONE: break;
	}
	return api_send_error(r, MHD_HTTP_NOT_FOUND, "not_found", NULL, "no such route");
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
				  const char *version, const char *upload_data, size_t *upload_data_size,
				  void **con_cls)
{
	struct api_req *r = *con_cls;
	if (!r) {
		r = req_new(cls, c, method);
		*con_cls = r;
		return req_begin(r, url);
	}
	if (*upload_data_size) {
		size_t n = *upload_data_size;
		*upload_data_size = 0;
		return r->answered ? MHD_YES : req_body(r, upload_data, n);
	}
	if (r->answered)
		return MHD_YES;
	if (r->err_status)
		return send_pending(r);
	if (r->upload_fd >= 0) {
		int rc = close(r->upload_fd);
		r->upload_fd = -1;
		if (rc)
			return api_send_error(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal", NULL,
					      "could not store the upload: %s", strerror(errno));
	}
	return req_end(r);
}

/* MHD's messages go through our log. A client that goes away (a closed
 * browser tab ends its event stream) is routine: debug. The rest (threads,
 * memory, sockets) are warnings. MHD logs paths without their query, so a
 * ?token= never reaches the log; it does not log headers. */
static void on_log(void *cls, const char *fmt, va_list ap)
{
	static const char *const routine[] = { "Closing connection", "Failed to send", "Failed to receive",
					       "Connection reset", "timed out", "no longer available" };
	char msg[512];
	size_t n, i;
	vsnprintf(msg, sizeof msg, fmt, ap);
	n = strlen(msg);
	while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
		msg[--n] = '\0';
	for (i = 0; i < sizeof routine / sizeof routine[0]; i++)
		if (strstr(msg, routine[i]))
			break;
	lh_log(i < sizeof routine / sizeof routine[0] ? LH_LOG_DEBUG : LH_LOG_WARN, "http: %s", msg);
}

/* ---- lifecycle ---- */

int lh_api_is_loopback(const char *host)
{
	struct in_addr v4;
	struct in6_addr v6;
	char buf[INET6_ADDRSTRLEN + 2];
	size_t n;
	if (!host)
		return 0;
	if (!strcasecmp(host, "localhost"))
		return 1;
	n = strlen(host);
	if (n >= 2 && host[0] == '[' && host[n - 1] == ']' && n - 2 < sizeof buf) {
		memcpy(buf, host + 1, n - 2);
		buf[n - 2] = '\0';
		host = buf;
	}
	if (inet_pton(AF_INET, host, &v4) == 1)
		return (ntohl(v4.s_addr) >> 24) == 127;
	if (inet_pton(AF_INET6, host, &v6) == 1)
		return IN6_IS_ADDR_LOOPBACK(&v6) ||
		       (IN6_IS_ADDR_V4MAPPED(&v6) && v6.s6_addr[12] == 127);
	return 0;
}

/* Binds and listens on host:port; the socket goes to MHD. */
static int listen_on(const char *host, int port, int *fd_out, struct lh_err *e)
{
	struct addrinfo hints, *res = NULL, *ai;
	char portstr[16], name[INET6_ADDRSTRLEN + 2];
	int rc, fd = -1, err = 0, one = 1;
	size_t n = strlen(host);
	if (n >= 2 && host[0] == '[' && host[n - 1] == ']' && n - 2 < sizeof name) {
		memcpy(name, host + 1, n - 2);
		name[n - 2] = '\0';
	} else if (!strcasecmp(host, "localhost")) {
		/* One listening socket: the address every client tries first. */
		snprintf(name, sizeof name, "127.0.0.1");
	} else {
		snprintf(name, sizeof name, "%s", host);
	}
	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	snprintf(portstr, sizeof portstr, "%d", port);
	rc = getaddrinfo(name, portstr, &hints, &res);
	if (rc)
		return lh_err_set(e, LH_EIO, "could not listen on %s:%d: %s", host, port, gai_strerror(rc));
	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
		if (fd < 0) {
			err = errno;
			continue;
		}
		(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
		if (ai->ai_family == AF_INET6)
			(void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 128) == 0)
			break;
		err = errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0 && err == EADDRINUSE)
		return lh_err_set(e, LH_EBUSY, "could not listen on %s:%d: the address is in use (another "
				  "longhaul serve, or another program, listens there); stop it or choose another "
				  "--listen", host, port);
	if (fd < 0)
		return lh_err_set(e, LH_EIO, "could not listen on %s:%d: %s", host, port, strerror(err));
	*fd_out = fd;
	return 0;
}

static void api_free(struct lh_api *a)
{
	for (size_t i = 0; i < a->npool; i++)
		lh_store_close(a->pool[i]);
	pthread_mutex_destroy(&a->pool_mu);
	pthread_cond_destroy(&a->pool_cv);
	pthread_mutex_destroy(&a->ev_mu);
	pthread_cond_destroy(&a->ev_cv);
	lh_free(a->host);
	lh_free(a->store_path);
	lh_free(a->upload_dir);
	lh_free(a->cwd);
	lh_free(a);
}

int lh_api_start(const struct lh_api_opts *o, struct lh_api **out, struct lh_err *e)
{
	struct lh_api *a;
	pthread_condattr_t ca;
	const union MHD_DaemonInfo *info;
	const char *host = o->host && o->host[0] ? o->host : "127.0.0.1";
	char *cwd;
	int fd = -1, rc;
	*out = NULL;
	if (!o->store_path || !o->store_path[0])
		return lh_err_set(e, LH_EUSAGE, "could not start the API: no store path");
	if (o->port < 0 || o->port > 65535)
		return lh_err_set(e, LH_EUSAGE, "could not start the API: port %d is out of range", o->port);
	if ((!o->token || !o->token[0]) && !lh_api_is_loopback(host))
		return lh_err_set(e, LH_EUSAGE, "listening on %s needs a token: set LONGHAUL_TOKEN", host);
	cwd = getcwd(NULL, 0);
	if (!cwd)
		return lh_err_set(e, LH_EIO, "could not start the API: could not read the working directory: %s",
				  strerror(errno));
	a = lh_xcalloc(1, sizeof *a);
	a->cwd = lh_xstrdup(cwd);
	free(cwd); /* getcwd allocates with malloc */
	a->host = lh_xstrdup(host);
	a->store_path = lh_xstrdup(o->store_path);
	a->upload_dir = lh_xstrdup(o->upload_dir && o->upload_dir[0] ? o->upload_dir : "/tmp");
	a->max_upload = o->max_upload ? o->max_upload : (size_t)256 << 20;
	a->max_body = o->max_body ? o->max_body : (size_t)4 << 20;
	a->max_connections = o->max_connections ? o->max_connections : 1024;
	a->sse_max_backlog = o->sse_max_backlog ? o->sse_max_backlog : (size_t)1 << 20;
	a->hooks = o->hooks;
	a->keepalive_ms = API_KEEPALIVE_MS;
	if (o->token && o->token[0]) {
		a->has_token = 1;
		lh_sha256(o->token, strlen(o->token), a->token_hash);
	}
	pthread_mutex_init(&a->pool_mu, NULL);
	{
		pthread_condattr_t pca;
		pthread_condattr_init(&pca);
		pthread_condattr_setclock(&pca, CLOCK_MONOTONIC);
		pthread_cond_init(&a->pool_cv, &pca);
		pthread_condattr_destroy(&pca);
	}
	pthread_mutex_init(&a->ev_mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&a->ev_cv, &ca);
	pthread_condattr_destroy(&ca);

	rc = listen_on(host, o->port, &fd, e);
	if (rc) {
		api_free(a);
		return rc;
	}
	a->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_ERROR_LOG,
				0, NULL, NULL, on_request, a,
				MHD_OPTION_EXTERNAL_LOGGER, on_log, (void *)a,
				MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd,
				MHD_OPTION_CONNECTION_LIMIT, a->max_connections,
				MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)API_MEMORY_LIMIT,
				MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)API_CONN_TIMEOUT,
				MHD_OPTION_NOTIFY_COMPLETED, on_completed, (void *)a,
				MHD_OPTION_END);
	if (!a->d) {
		close(fd);
		api_free(a);
		return lh_err_set(e, LH_EIO, "could not start the HTTP server on %s:%d", host, o->port);
	}
	info = MHD_get_daemon_info(a->d, MHD_DAEMON_INFO_BIND_PORT);
	a->port = info && info->port ? info->port : o->port;
	if (!a->port) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof ss;
		if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
			a->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port :
					((struct sockaddr_in *)&ss)->sin_port);
	}
	*out = a;
	return 0;
}

int lh_api_port(const struct lh_api *a)
{
	return a->port;
}

void lh_api_stop(struct lh_api *a)
{
	if (!a)
		return;
	pthread_mutex_lock(&a->ev_mu);
	a->stopping = 1;
	pthread_cond_broadcast(&a->ev_cv);
	pthread_mutex_unlock(&a->ev_mu);
	/* Closes the listening socket (it was handed over), shuts every
	 * connection down and joins its thread: the streams have been told to
	 * end, so none stays blocked. */
	MHD_stop_daemon(a->d);
	api_free(a);
}
