/*
 * Unit tests: the HTTP API (src/api/). Each test starts lh_api on
 * 127.0.0.1, port 0, over a real store in its own temporary directory, with
 * hooks that record what the engine would be told, and talks to it over
 * real HTTP: libcurl for requests, a raw socket (HTTP/1.0, so the body is
 * not chunked) for event streams. Waits are on events (bytes arriving, a
 * condition variable), each with a deadline; nothing sleeps to synchronise.
 */
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <jansson.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "api/api.h"
#include "api/api_internal.h"
#include "engine/jobstate.h"
#include "store/store.h"
#include "util/buf.h"
#include "util/time.h"

/* ---- fixture ---- */

static char dir[64], store_path[128], upload_dir[128];
static struct lh_api *api;
static struct lh_store *st; /* the test's own handle, as the engine would have */
static struct lh_err E;
static int port;
static const char *token; /* the bearer token requests send, or NULL */

#define NOTES_MAX 256
static pthread_mutex_t notes_mu = PTHREAD_MUTEX_INITIALIZER;
static struct { int64_t job; enum lh_job_news cmd; } notes[NOTES_MAX];
static int nnotes;
static int ready_flag = 1;

#define OK(call) do { \
	int rc_ = (call); \
	cr_assert_eq(rc_, 0, "%s failed: %d %s", #call, rc_, E.msg); \
} while (0)

static void on_notify(void *arg, int64_t job, enum lh_job_news cmd)
{
	pthread_mutex_lock(&notes_mu);
	if (nnotes < NOTES_MAX) {
		notes[nnotes].job = job;
		notes[nnotes].cmd = cmd;
		nnotes++;
	}
	pthread_mutex_unlock(&notes_mu);
}

static int on_ready(void *arg)
{
	return ready_flag;
}

/* 1 when (job, cmd) was notified. Notifications happen before the answer
 * is sent, so no wait is needed. */
static int notified(int64_t job, enum lh_job_news cmd)
{
	int found = 0;
	pthread_mutex_lock(&notes_mu);
	for (int i = 0; i < nnotes; i++)
		if (notes[i].job == job && notes[i].cmd == cmd)
			found = 1;
	pthread_mutex_unlock(&notes_mu);
	return found;
}

static void opts_init(struct lh_api_opts *o)
{
	memset(o, 0, sizeof *o);
	o->host = "127.0.0.1";
	o->port = 0;
	o->store_path = store_path;
	o->upload_dir = upload_dir;
	o->hooks.notify = on_notify;
	o->hooks.ready = on_ready;
}

static void start(const struct lh_api_opts *o)
{
	OK(lh_api_start(o, &api, &E));
	port = lh_api_port(api);
	cr_assert_gt(port, 0);
}

static void setup(void)
{
	struct lh_store_opts so = { .path = store_path, .sync_full = 0, .create = 1 };
	struct lh_api_opts o;
	snprintf(dir, sizeof dir, "/tmp/lh-api-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	snprintf(store_path, sizeof store_path, "%s/store.db", dir);
	snprintf(upload_dir, sizeof upload_dir, "%s/uploads", dir);
	cr_assert_eq(mkdir(upload_dir, 0700), 0);
	so.path = store_path;
	OK(lh_store_open(&so, &st, &E));
	curl_global_init(CURL_GLOBAL_DEFAULT);
	token = NULL;
	nnotes = 0;
	ready_flag = 1;
	opts_init(&o);
	start(&o);
}

/* Restarts the API with other options (limits, token). */
static void restart(const struct lh_api_opts *o)
{
	lh_api_stop(api);
	api = NULL;
	start(o);
}

static void teardown(void)
{
	char cmd[128];
	lh_api_stop(api);
	api = NULL;
	lh_store_close(st);
	curl_global_cleanup();
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	cr_assert_eq(system(cmd), 0);
}

TestSuite(api, .init = setup, .fini = teardown, .timeout = 60);

/* ---- HTTP with libcurl ---- */

struct resp {
	long status;
	struct lh_buf body;
	char ctype[128], location[128], allow[64], www[64];
	json_t *json; /* the body parsed, when it is JSON */
};

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
	struct resp *r = arg;
	cr_assert_eq(lh_buf_append(&r->body, p, size * n), 0);
	return size * n;
}

static void header_value(const char *line, size_t n, const char *name, char *out, size_t outsz)
{
	size_t k = strlen(name), v;
	if (n <= k || strncasecmp(line, name, k) || line[k] != ':')
		return;
	line += k + 1;
	n -= k + 1;
	while (n && *line == ' ') {
		line++;
		n--;
	}
	while (n && (line[n - 1] == '\r' || line[n - 1] == '\n'))
		n--;
	v = n < outsz - 1 ? n : outsz - 1;
	memcpy(out, line, v);
	out[v] = '\0';
}

static size_t on_header(char *p, size_t size, size_t n, void *arg)
{
	struct resp *r = arg;
	header_value(p, size * n, "Content-Type", r->ctype, sizeof r->ctype);
	header_value(p, size * n, "Location", r->location, sizeof r->location);
	header_value(p, size * n, "Allow", r->allow, sizeof r->allow);
	header_value(p, size * n, "WWW-Authenticate", r->www, sizeof r->www);
	return size * n;
}

static void resp_free(struct resp *r)
{
	lh_buf_release(&r->body);
	json_decref(r->json);
	memset(r, 0, sizeof *r);
}

/* One request. body may be NULL; ctype NULL sends no Content-Type;
 * extra is one more header line or NULL. */
static void http(struct resp *r, const char *method, const char *path, const char *ctype, const char *body,
		 size_t len, const char *extra)
{
	CURL *c = curl_easy_init();
	struct curl_slist *h = NULL;
	char url[512], auth[256], ct[128];
	CURLcode rc;
	memset(r, 0, sizeof *r);
	lh_buf_init(&r->body, 0);
	snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 20L);
	if (body) {
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)len);
	}
	if (!strcmp(method, "HEAD"))
		curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
	/* curl adds its own form Content-Type to a POST without one. */
	snprintf(ct, sizeof ct, "Content-Type:%s%s", ctype ? " " : "", ctype ? ctype : "");
	h = curl_slist_append(h, ct);
	h = curl_slist_append(h, "Expect:");
	if (token) {
		snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
		h = curl_slist_append(h, auth);
	}
	if (extra)
		h = curl_slist_append(h, extra);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	rc = curl_easy_perform(c);
	cr_assert_eq(rc, CURLE_OK, "%s %s: %s", method, path, curl_easy_strerror(rc));
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
	curl_slist_free_all(h);
	curl_easy_cleanup(c);
	if (r->body.len && !strncmp(r->ctype, "application/json", 16))
		r->json = json_loadb(r->body.data, r->body.len, 0, NULL);
}

static void get(struct resp *r, const char *path)
{
	http(r, "GET", path, NULL, NULL, 0, NULL);
}

static void post_json(struct resp *r, const char *path, const char *body)
{
	http(r, "POST", path, "application/json", body, body ? strlen(body) : 0, NULL);
}

/* The error shape, with its code; returns error.detail (borrowed). */
static json_t *assert_error(const struct resp *r, long status, const char *code)
{
	json_t *err, *d;
	cr_assert_eq(r->status, status, "status %ld, want %ld: %s", r->status, status,
		     r->body.data ? r->body.data : "");
	cr_assert_str_eq(r->ctype, "application/json");
	cr_assert_not_null(r->json, "error body is not JSON: %s", r->body.data ? r->body.data : "");
	err = json_object_get(r->json, "error");
	cr_assert(json_is_object(err));
	cr_assert_str_eq(json_string_value(json_object_get(err, "code")), code);
	cr_assert(json_is_string(json_object_get(err, "message")));
	cr_assert(json_string_length(json_object_get(err, "message")) > 0);
	d = json_object_get(err, "detail");
	cr_assert_not_null(d, "detail must be present (null when empty)");
	return d;
}

static const char *jstr(json_t *o, const char *k)
{
	return json_string_value(json_object_get(o, k));
}

static json_int_t jint(json_t *o, const char *k)
{
	json_t *v = json_object_get(o, k);
	cr_assert(json_is_integer(v), "%s is not an integer", k);
	return json_integer_value(v);
}

/* ---- fixtures for jobs ---- */

static const char batch3[] =
	"{\"custom_id\":\"a\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\","
	"\"body\":{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"one\"}]}}\n"
	"{\"custom_id\":\"b\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\","
	"\"body\":{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"two\"}]}}\n"
	"{\"custom_id\":\"c\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\","
	"\"body\":{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"three\"}]}}\n";

/* Submits batch3 (query may be "" or "?name=x..."); returns the job id. */
static int64_t submit_batch(const char *query)
{
	struct resp r;
	char path[256];
	int64_t id;
	snprintf(path, sizeof path, "/v1/jobs%s", query);
	http(&r, "POST", path, "application/jsonl", batch3, strlen(batch3), NULL);
	cr_assert_eq(r.status, 201, "submit: %ld %s", r.status, r.body.data);
	id = jint(r.json, "id");
	resp_free(&r);
	return id;
}

static int64_t jobs_in_store(void)
{
	int64_t n = -1;
	OK(lh_store_jobs_count(st, NULL, &n, &E));
	return n;
}

static int upload_dir_empty(void)
{
	DIR *d = opendir(upload_dir);
	struct dirent *de;
	int n = 0;
	cr_assert_not_null(d);
	while ((de = readdir(d)))
		if (de->d_name[0] != '.')
			n++;
	closedir(d);
	return n == 0;
}

static void set_state(int64_t id, const char *to)
{
	struct lh_job_rec j;
	OK(lh_store_job_get(st, id, &j, &E));
	OK(lh_job_transition(st, &j, lh_job_state_of(to), NULL, &E));
	lh_job_rec_release(&j);
}

/* Finishes the items of job: a and b done, c dead (as the engine would). */
static void finish_items(int64_t id)
{
	struct lh_claimed *cl;
	size_t n;
	const char *resp = "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion\",\"choices\":[{\"index\":0,"
			   "\"message\":{\"role\":\"assistant\",\"content\":\"hello\"},\"finish_reason\":\"stop\"}],"
			   "\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1,\"total_tokens\":4}}";
	OK(lh_store_claim(st, id, "w1", lh_wall(), 60, 10, &cl, &n, &E));
	cr_assert_eq(n, 3);
	for (size_t i = 0; i < n; i++) {
		if (!strcmp(cl[i].key, "c")) {
			OK(lh_store_item_dead(st, id, cl[i].seq, cl[i].fence, 1, 400,
					      "{\"error\":{\"message\":\"bad request\",\"type\":\"invalid_request_error\","
					      "\"code\":\"bad\"}}", &E));
		} else {
			struct lh_step_rec s;
			memset(&s, 0, sizeof s);
			s.attempt = 1;
			s.request_hash = "00";
			s.status = 200;
			s.request_id = "req-1";
			s.response = resp;
			s.response_len = strlen(resp);
			s.prompt_tokens = 3;
			s.completion_tokens = 1;
			s.started_at = lh_wall();
			s.ended_at = s.started_at + 0.5;
			OK(lh_store_item_done(st, id, cl[i].seq, cl[i].fence, 1, &s, &E));
		}
		lh_claimed_release(&cl[i]);
	}
	free(cl);
	OK(lh_store_job_add(st, id, 2, 1, 0, 6, 2, 1.0, &E));
}

/* ---- raw sockets for event streams ---- */

struct raw {
	int fd;
	struct lh_buf in;
	int eof;
};

/* Connects and sends an HTTP/1.0 GET with extra header lines (may be ""). */
static void raw_open(struct raw *r, const char *path, const char *extra, int rcvbuf)
{
	struct sockaddr_in sa;
	char req[1024];
	int n;
	memset(r, 0, sizeof *r);
	lh_buf_init(&r->in, 0);
	r->fd = socket(AF_INET, SOCK_STREAM, 0);
	cr_assert_geq(r->fd, 0);
	if (rcvbuf)
		cr_assert_eq(setsockopt(r->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf), 0);
	memset(&sa, 0, sizeof sa);
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert_eq(connect(r->fd, (struct sockaddr *)&sa, sizeof sa), 0);
	n = snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: x\r\n%s%s%s%s\r\n", path, extra,
		     token ? "Authorization: Bearer " : "", token ? token : "", token ? "\r\n" : "");
	cr_assert_eq(write(r->fd, req, (size_t)n), n);
}

/* Reads until needle appears after offset `from` (or EOF when needle is
 * NULL); fails the test after timeout_ms. */
static void raw_wait(struct raw *r, const char *needle, size_t from, int timeout_ms)
{
	int64_t deadline = lh_mono_ms() + timeout_ms;
	for (;;) {
		struct pollfd p = { r->fd, POLLIN, 0 };
		char buf[4096];
		ssize_t n;
		int64_t left;
		if (needle && r->in.len > from && strstr(r->in.data + from, needle))
			return;
		if (!needle && r->eof)
			return;
		cr_assert(!r->eof, "stream ended before \"%s\": %s", needle, r->in.data ? r->in.data : "");
		left = deadline - lh_mono_ms();
		cr_assert_gt(left, 0, "timed out waiting for \"%s\"; have: %s", needle ? needle : "EOF",
			     r->in.data ? r->in.data : "");
		if (poll(&p, 1, (int)left) <= 0)
			continue;
		n = read(r->fd, buf, sizeof buf);
		if (n <= 0)
			r->eof = 1;
		else
			cr_assert_eq(lh_buf_append(&r->in, buf, (size_t)n), 0);
	}
}

static void raw_close(struct raw *r)
{
	close(r->fd);
	lh_buf_release(&r->in);
}

/* The "id: N" values in text, in order, into ids; returns how many. */
static size_t sse_ids(const char *text, int64_t *ids, size_t max)
{
	size_t n = 0;
	const char *p = text;
	while (p && (p = strstr(p, "\nid: ")) && n < max) {
		ids[n++] = strtoll(p + 5, NULL, 10);
		p += 5;
	}
	return n;
}

static void add_event(int64_t job, const char *type)
{
	OK(lh_store_event_add(st, job, lh_wall(), type, "k1", "{\"n\":1}", NULL, &E));
}

/* ================= tests ================= */

/* ---- health, routing, errors ---- */

Test(api, healthz_and_readyz)
{
	struct resp r;
	get(&r, "/healthz");
	cr_assert_eq(r.status, 200);
	cr_assert_str_eq(jstr(r.json, "status"), "ok");
	resp_free(&r);
	get(&r, "/readyz");
	cr_assert_eq(r.status, 200);
	cr_assert_str_eq(jstr(r.json, "status"), "ready");
	resp_free(&r);
	ready_flag = 0;
	get(&r, "/readyz");
	assert_error(&r, 503, "not_ready");
	resp_free(&r);
}

Test(api, unknown_routes_and_ids_are_404)
{
	static const char *const paths[] = { "/", "/v2/jobs", "/v1/jobs/", "/v1/jobs/abc", "/v1/jobs/0",
					     "/v1/jobs/-1", "/v1/jobs/01", "/v1/jobs/99999999999999999999",
					     "/v1/jobs/1/nope", "/v1/events" };
	struct resp r;
	for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
		get(&r, paths[i]);
		assert_error(&r, 404, "not_found");
		resp_free(&r);
	}
	get(&r, "/v1/jobs/42");
	assert_error(&r, 404, "not_found");
	resp_free(&r);
	/* Not UTF-8 once decoded: still a JSON answer. */
	get(&r, "/v1/%FF%FE");
	assert_error(&r, 404, "not_found");
	cr_assert_not_null(strstr(jstr(json_object_get(r.json, "error"), "message"), "\xef\xbf\xbd"));
	resp_free(&r);
}

Test(api, wrong_method_is_405_with_allow)
{
	struct resp r;
	int64_t id = submit_batch("");
	char path[64];
	http(&r, "PUT", "/v1/jobs", NULL, NULL, 0, NULL);
	assert_error(&r, 405, "method_not_allowed");
	cr_assert_str_eq(r.allow, "GET, POST");
	resp_free(&r);
	snprintf(path, sizeof path, "/v1/jobs/%lld/pause", (long long)id);
	get(&r, path);
	assert_error(&r, 405, "method_not_allowed");
	cr_assert_str_eq(r.allow, "POST");
	resp_free(&r);
	snprintf(path, sizeof path, "/v1/jobs/%lld", (long long)id);
	http(&r, "POST", path, "application/json", "{}", 2, NULL);
	assert_error(&r, 405, "method_not_allowed");
	cr_assert_str_eq(r.allow, "GET, PATCH, DELETE");
	resp_free(&r);
	http(&r, "DELETE", "/healthz", NULL, NULL, 0, NULL);
	assert_error(&r, 405, "method_not_allowed");
	cr_assert_str_eq(r.allow, "GET");
	resp_free(&r);
}

/* ---- submit ---- */

Test(api, submit_batch_creates_job_items_and_notifies)
{
	struct resp r;
	struct lh_job_rec j;
	int64_t counts[LH_ITEM_NSTATES], id;
	json_t *c, *spec;
	char loc[64];
	http(&r, "POST", "/v1/jobs?name=nightly&priority=3&time_limit=3600", "application/jsonl", batch3,
	     strlen(batch3), NULL);
	cr_assert_eq(r.status, 201, "%ld %s", r.status, r.body.data);
	id = jint(r.json, "id");
	snprintf(loc, sizeof loc, "/v1/jobs/%lld", (long long)id);
	cr_assert_str_eq(r.location, loc);
	cr_assert_str_eq(jstr(r.json, "name"), "nightly");
	cr_assert_str_eq(jstr(r.json, "kind"), "batch");
	cr_assert_str_eq(jstr(r.json, "state"), "queued");
	cr_assert_eq(jint(r.json, "priority"), 3);
	cr_assert_eq(jint(r.json, "time_limit_sec"), 3600);
	cr_assert(json_is_string(json_object_get(r.json, "created_at")));
	cr_assert(json_is_null(json_object_get(r.json, "started_at")));
	cr_assert(json_is_null(json_object_get(r.json, "finished_at")));
	cr_assert(json_is_null(json_object_get(r.json, "last_error")));
	cr_assert(json_is_null(json_object_get(r.json, "eta_sec")));
	c = json_object_get(r.json, "counts");
	cr_assert_eq(jint(c, "total"), 3);
	cr_assert_eq(jint(c, "pending"), 3);
	cr_assert_eq(jint(c, "running"), 0);
	cr_assert_eq(jint(c, "succeeded"), 0);
	cr_assert_eq(jint(c, "failed"), 0);
	cr_assert(json_is_number(json_object_get(r.json, "percent")));
	cr_assert_eq(jint(json_object_get(r.json, "usage"), "prompt_tokens"), 0);
	resp_free(&r);

	OK(lh_store_job_get(st, id, &j, &E));
	cr_assert_str_eq(j.state, "queued");
	cr_assert_eq(j.ingest_done, 1);
	cr_assert_eq(j.n_total, 3);
	cr_assert_eq(j.time_limit, 3600);
	cr_assert(!strncmp(j.ref, "api:", 4));
	spec = json_loads(j.spec, 0, NULL);
	cr_assert_not_null(spec);
	cr_assert_str_eq(jstr(spec, "name"), "nightly");
	cr_assert_eq(jint(spec, "priority"), 3);
	cr_assert_null(json_object_get(spec, "model"));
	json_decref(spec);
	lh_job_rec_release(&j);
	OK(lh_store_item_counts(st, id, counts, &E));
	cr_assert_eq(counts[LH_ITEM_PENDING], 3);
	cr_assert(notified(id, LH_CMD_SUBMITTED));
	cr_assert(upload_dir_empty(), "the upload must be removed");
}

Test(api, submit_batch_model_param_allows_lines_without_model)
{
	static const char body[] =
		"{\"custom_id\":\"x\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\","
		"\"body\":{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}}\n";
	struct resp r;
	struct lh_job_rec j;
	json_t *spec, *d;
	http(&r, "POST", "/v1/jobs", "application/x-ndjson", body, strlen(body), NULL);
	d = assert_error(&r, 400, "bad_input");
	cr_assert_eq(jint(d, "line"), 1);
	cr_assert_str_eq(jstr(d, "field"), "body.model");
	cr_assert_str_eq(jstr(d, "file"), "upload");
	resp_free(&r);
	http(&r, "POST", "/v1/jobs?model=gpt-x", "application/x-ndjson; charset=utf-8", body, strlen(body), NULL);
	cr_assert_eq(r.status, 201, "%ld %s", r.status, r.body.data);
	OK(lh_store_job_get(st, jint(r.json, "id"), &j, &E));
	spec = json_loads(j.spec, 0, NULL);
	cr_assert_str_eq(jstr(spec, "model"), "gpt-x");
	json_decref(spec);
	lh_job_rec_release(&j);
	resp_free(&r);
}

Test(api, submit_batch_bad_line_stores_nothing)
{
	static const char dup[] =
		"{\"custom_id\":\"a\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\","
		"\"body\":{\"model\":\"m\",\"messages\":[]}}\n"
		"{\"custom_id\":\"a\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\","
		"\"body\":{\"model\":\"m\",\"messages\":[]}}\n";
	static const char broken[] =
		"{\"custom_id\":\"a\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\","
		"\"body\":{\"model\":\"m\",\"messages\":[]}}\n"
		"\n"
		"{\"custom_id\": oops}\n";
	struct resp r;
	json_t *d;
	http(&r, "POST", "/v1/jobs", "application/jsonl", dup, strlen(dup), NULL);
	d = assert_error(&r, 400, "bad_input");
	cr_assert_eq(jint(d, "line"), 2);
	cr_assert_str_eq(jstr(d, "field"), "custom_id");
	resp_free(&r);
	http(&r, "POST", "/v1/jobs", "application/jsonl", broken, strlen(broken), NULL);
	d = assert_error(&r, 400, "bad_input");
	cr_assert_eq(jint(d, "line"), 3);
	resp_free(&r);
	http(&r, "POST", "/v1/jobs", "application/jsonl", "\n\n", 2, NULL);
	assert_error(&r, 400, "bad_input");
	resp_free(&r);
	http(&r, "POST", "/v1/jobs", "application/jsonl", NULL, 0, NULL);
	assert_error(&r, 400, "bad_input");
	resp_free(&r);
	cr_assert_eq(jobs_in_store(), 0);
	cr_assert(upload_dir_empty());
	cr_assert_eq(nnotes, 0);
}

/* Writes the records file of the spec tests; returns its path relative to
 * the working directory (the daemon resolves specs against it). */
static void write_records(char *rel, size_t relsz)
{
	char path[256], cwd[1024], *p;
	FILE *f;
	snprintf(path, sizeof path, "%s/records.jsonl", dir);
	f = fopen(path, "w");
	cr_assert_not_null(f);
	fputs("{\"id\":\"r1\",\"text\":\"alpha\"}\n{\"id\":\"r2\",\"text\":\"beta\"}\n", f);
	fclose(f);
	cr_assert_not_null(getcwd(cwd, sizeof cwd));
	/* Up to / from the working directory, then down to the file. */
	rel[0] = '\0';
	for (p = cwd; *p; p++)
		if (*p == '/' && p[1])
			strncat(rel, "../", relsz - strlen(rel) - 1);
	if (strcmp(cwd, "/"))
		strncat(rel, "../", relsz - strlen(rel) - 1);
	strncat(rel, path + 1, relsz - strlen(rel) - 1);
}

Test(api, submit_spec_json_and_yaml)
{
	char rel[512], body[1024];
	struct resp r;
	struct lh_job_rec j;
	int64_t id, counts[LH_ITEM_NSTATES];
	json_t *spec;
	write_records(rel, sizeof rel);
	snprintf(body, sizeof body,
		 "{\"name\":\"sum\",\"input\":\"%s\",\"prompt\":\"Summarise {{text}}\",\"model\":\"m1\"}", rel);
	post_json(&r, "/v1/jobs?priority=-2", body);
	cr_assert_eq(r.status, 201, "%ld %s", r.status, r.body.data);
	id = jint(r.json, "id");
	cr_assert_str_eq(jstr(r.json, "kind"), "spec");
	cr_assert_str_eq(jstr(r.json, "name"), "sum");
	cr_assert_eq(jint(r.json, "priority"), -2);
	cr_assert_eq(jint(json_object_get(r.json, "counts"), "total"), 2);
	resp_free(&r);
	OK(lh_store_job_get(st, id, &j, &E));
	spec = json_loads(j.spec, 0, NULL);
	cr_assert_str_eq(jstr(spec, "model"), "m1");
	cr_assert(strstr(jstr(json_object_get(spec, "input"), "records"), dir) != NULL,
		  "relative input resolved against the working directory");
	json_decref(spec);
	lh_job_rec_release(&j);
	OK(lh_store_item_counts(st, id, counts, &E));
	cr_assert_eq(counts[LH_ITEM_PENDING], 2);
	cr_assert(notified(id, LH_CMD_SUBMITTED));

	snprintf(body, sizeof body, "input: %s\nprompt: \"Say {{text}}\"\nmodel: m2\n", rel);
	http(&r, "POST", "/v1/jobs?name=yam", "application/yaml", body, strlen(body), NULL);
	cr_assert_eq(r.status, 201, "%ld %s", r.status, r.body.data);
	cr_assert_str_eq(jstr(r.json, "name"), "yam");
	resp_free(&r);
	http(&r, "POST", "/v1/jobs", "text/yaml", body, strlen(body), NULL);
	cr_assert_eq(r.status, 201, "%ld %s", r.status, r.body.data);
	resp_free(&r);
	cr_assert_eq(jobs_in_store(), 3);
}

Test(api, submit_spec_errors_store_nothing)
{
	char rel[512], body[1024];
	struct resp r;
	json_t *d;
	write_records(rel, sizeof rel);
	/* No model: the daemon has no --model to fall back on. */
	snprintf(body, sizeof body, "{\"input\":\"%s\",\"prompt\":\"x {{text}}\"}", rel);
	post_json(&r, "/v1/jobs", body);
	d = assert_error(&r, 400, "bad_input");
	cr_assert_str_eq(jstr(d, "field"), "model");
	resp_free(&r);
	/* A misspelt field, on line 3 of a YAML spec. */
	snprintf(body, sizeof body, "input: %s\nmodel: m\nconcurency: 4\nprompt: x\n", rel);
	http(&r, "POST", "/v1/jobs", "application/x-yaml", body, strlen(body), NULL);
	d = assert_error(&r, 400, "bad_input");
	cr_assert_eq(jint(d, "line"), 3);
	cr_assert_str_eq(jstr(d, "field"), "concurency");
	cr_assert_str_eq(jstr(d, "file"), "spec.yaml");
	resp_free(&r);
	/* Malformed JSON. */
	post_json(&r, "/v1/jobs", "{\"input\": ");
	assert_error(&r, 400, "bad_input");
	resp_free(&r);
	/* A missing input file. */
	post_json(&r, "/v1/jobs", "{\"input\":\"/nonexistent/x.jsonl\",\"prompt\":\"x\",\"model\":\"m\"}");
	d = assert_error(&r, 400, "bad_input");
	cr_assert_str_eq(jstr(d, "field"), "input");
	resp_free(&r);
	/* A record without the template's field: fails at ingest, rolls back. */
	snprintf(body, sizeof body, "{\"input\":\"%s\",\"prompt\":\"x {{missing}}\",\"model\":\"m\"}", rel);
	post_json(&r, "/v1/jobs", body);
	d = assert_error(&r, 400, "bad_input");
	cr_assert_eq(jint(d, "line"), 1);
	resp_free(&r);
	cr_assert_eq(jobs_in_store(), 0);
	cr_assert_eq(nnotes, 0);
}

Test(api, submit_bad_query_params)
{
	struct resp r;
	json_t *d;
	http(&r, "POST", "/v1/jobs?priority=high", "application/jsonl", batch3, strlen(batch3), NULL);
	d = assert_error(&r, 400, "bad_input");
	cr_assert_str_eq(jstr(d, "field"), "priority");
	resp_free(&r);
	http(&r, "POST", "/v1/jobs?time_limit=0", "application/jsonl", batch3, strlen(batch3), NULL);
	d = assert_error(&r, 400, "bad_input");
	cr_assert_str_eq(jstr(d, "field"), "time_limit");
	resp_free(&r);
	http(&r, "POST", "/v1/jobs?time_limit=abc", "application/jsonl", batch3, strlen(batch3), NULL);
	assert_error(&r, 400, "bad_input");
	resp_free(&r);
	http(&r, "POST", "/v1/jobs?name=%FFx", "application/jsonl", batch3, strlen(batch3), NULL);
	d = assert_error(&r, 400, "bad_input");
	cr_assert_str_eq(jstr(d, "field"), "name");
	resp_free(&r);
	http(&r, "POST", "/v1/jobs?model=", "application/jsonl", batch3, strlen(batch3), NULL);
	d = assert_error(&r, 400, "bad_input");
	cr_assert_str_eq(jstr(d, "field"), "model");
	resp_free(&r);
	/* Unknown parameters are ignored. */
	http(&r, "POST", "/v1/jobs?colour=blue", "application/jsonl", batch3, strlen(batch3), NULL);
	cr_assert_eq(r.status, 201);
	resp_free(&r);
	cr_assert_eq(jobs_in_store(), 1);
}

Test(api, submit_unsupported_media_type_is_415)
{
	struct resp r;
	http(&r, "POST", "/v1/jobs", "text/plain", batch3, strlen(batch3), NULL);
	assert_error(&r, 415, "unsupported_media_type");
	resp_free(&r);
	http(&r, "POST", "/v1/jobs", NULL, batch3, strlen(batch3), NULL);
	assert_error(&r, 415, "unsupported_media_type");
	resp_free(&r);
	cr_assert_eq(jobs_in_store(), 0);
}

Test(api, oversized_bodies_are_413)
{
	struct lh_api_opts o;
	struct resp r;
	char big[6000], spec[3000];
	size_t n = 0;
	opts_init(&o);
	o.max_upload = 1000;
	o.max_body = 512;
	restart(&o);
	/* Many small valid lines, 4 KiB in all. */
	while (n + sizeof batch3 < sizeof big) {
		memcpy(big + n, batch3, strlen(batch3));
		n += strlen(batch3);
	}
	http(&r, "POST", "/v1/jobs", "application/jsonl", big, n, NULL);
	assert_error(&r, 413, "too_large");
	resp_free(&r);
	/* Chunked, so that the size is found while streaming. */
	http(&r, "POST", "/v1/jobs", "application/jsonl", big, n, "Transfer-Encoding: chunked");
	assert_error(&r, 413, "too_large");
	resp_free(&r);
	memset(spec, ' ', sizeof spec);
	memcpy(spec, "{\"prompt\":\"x\"", 13);
	spec[sizeof spec - 1] = '}';
	http(&r, "POST", "/v1/jobs", "application/json", spec, sizeof spec, NULL);
	assert_error(&r, 413, "too_large");
	resp_free(&r);
	http(&r, "PATCH", "/v1/jobs/1", "application/json", spec, sizeof spec, NULL);
	assert_error(&r, 413, "too_large");
	resp_free(&r);
	cr_assert_eq(jobs_in_store(), 0);
	cr_assert(upload_dir_empty());
	/* The limits leave room for what fits. */
	http(&r, "POST", "/v1/jobs", "application/jsonl", batch3, strlen(batch3), NULL);
	cr_assert_eq(r.status, 201);
	resp_free(&r);
}

/* ---- list and get ---- */

Test(api, jobs_list_pages_newest_first)
{
	struct resp r;
	int64_t a = submit_batch("?name=a"), b = submit_batch("?name=b"), c = submit_batch("?name=c");
	json_t *jobs, *cnt;
	char path[128];
	get(&r, "/v1/jobs?limit=2");
	cr_assert_eq(r.status, 200);
	jobs = json_object_get(r.json, "jobs");
	cr_assert_eq(json_array_size(jobs), 2);
	cr_assert_eq(jint(json_array_get(jobs, 0), "id"), c);
	cr_assert_eq(jint(json_array_get(jobs, 1), "id"), b);
	cnt = json_object_get(json_array_get(jobs, 0), "counts");
	cr_assert_eq(jint(cnt, "pending"), 3, "lists derive pending from the counters");
	cr_assert_eq(jint(cnt, "running"), 0);
	cr_assert(json_is_string(json_object_get(r.json, "next_cursor")));
	snprintf(path, sizeof path, "/v1/jobs?limit=2&cursor=%s", jstr(r.json, "next_cursor"));
	resp_free(&r);
	get(&r, path);
	jobs = json_object_get(r.json, "jobs");
	cr_assert_eq(json_array_size(jobs), 1);
	cr_assert_eq(jint(json_array_get(jobs, 0), "id"), a);
	cr_assert(json_is_null(json_object_get(r.json, "next_cursor")));
	resp_free(&r);

	set_state(b, "cancelled");
	get(&r, "/v1/jobs?state=cancelled");
	jobs = json_object_get(r.json, "jobs");
	cr_assert_eq(json_array_size(jobs), 1);
	cr_assert_eq(jint(json_array_get(jobs, 0), "id"), b);
	cr_assert_str_eq(jstr(json_array_get(jobs, 0), "state"), "cancelled");
	cr_assert_eq(json_real_value(json_object_get(json_array_get(jobs, 0), "eta_sec")), 0);
	resp_free(&r);
	get(&r, "/v1/jobs");
	cr_assert_eq(json_array_size(json_object_get(r.json, "jobs")), 3);
	cr_assert(json_is_null(json_object_get(r.json, "next_cursor")));
	resp_free(&r);
}

Test(api, jobs_list_bad_params_are_400)
{
	static const char *const bad[] = { "/v1/jobs?limit=0", "/v1/jobs?limit=1001", "/v1/jobs?limit=x",
					   "/v1/jobs?state=sleeping", "/v1/jobs?cursor=abc", "/v1/jobs?cursor=-3" };
	struct resp r;
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		json_t *d;
		get(&r, bad[i]);
		d = assert_error(&r, 400, "bad_input");
		cr_assert(json_is_string(json_object_get(d, "field")), "%s: detail names the parameter", bad[i]);
		resp_free(&r);
	}
	get(&r, "/v1/jobs?limit=1000&whatever=1");
	cr_assert_eq(r.status, 200);
	resp_free(&r);
}

Test(api, job_get_counts_from_items)
{
	struct resp r;
	int64_t id = submit_batch("");
	char path[64];
	json_t *c;
	set_state(id, "running");
	finish_items(id);
	snprintf(path, sizeof path, "/v1/jobs/%lld", (long long)id);
	get(&r, path);
	cr_assert_eq(r.status, 200);
	cr_assert_str_eq(jstr(r.json, "state"), "running");
	cr_assert(json_is_string(json_object_get(r.json, "started_at")));
	c = json_object_get(r.json, "counts");
	cr_assert_eq(jint(c, "total"), 3);
	cr_assert_eq(jint(c, "succeeded"), 2);
	cr_assert_eq(jint(c, "failed"), 1);
	cr_assert_eq(jint(c, "pending"), 0);
	cr_assert_eq(json_real_value(json_object_get(r.json, "percent")), 100.0);
	cr_assert_eq(jint(json_object_get(r.json, "usage"), "prompt_tokens"), 6);
	cr_assert_eq(jint(json_object_get(r.json, "usage"), "completion_tokens"), 2);
	resp_free(&r);
}

/* ---- control ---- */

static void post_control(struct resp *r, int64_t id, const char *what)
{
	char path[96];
	snprintf(path, sizeof path, "/v1/jobs/%lld/%s", (long long)id, what);
	http(r, "POST", path, NULL, NULL, 0, NULL);
}

static void assert_conflict(struct resp *r, const char *from, const char *to)
{
	json_t *d = assert_error(r, 409, "illegal_transition");
	cr_assert_str_eq(jstr(d, "from"), from);
	cr_assert_str_eq(jstr(d, "to"), to);
}

Test(api, pause_resume_cancel)
{
	struct resp r;
	int64_t id = submit_batch("");
	post_control(&r, id, "pause");
	cr_assert_eq(r.status, 200, "%s", r.body.data);
	cr_assert_str_eq(jstr(r.json, "state"), "paused");
	resp_free(&r);
	cr_assert(notified(id, LH_CMD_PAUSED));
	post_control(&r, id, "pause");
	assert_conflict(&r, "paused", "paused");
	resp_free(&r);
	/* Never started: back in line. */
	post_control(&r, id, "resume");
	cr_assert_eq(r.status, 200);
	cr_assert_str_eq(jstr(r.json, "state"), "queued");
	resp_free(&r);
	cr_assert(notified(id, LH_CMD_RESUMED));
	post_control(&r, id, "resume");
	assert_conflict(&r, "queued", "running");
	resp_free(&r);

	set_state(id, "running");
	post_control(&r, id, "pause?now=1");
	cr_assert_eq(r.status, 200);
	resp_free(&r);
	cr_assert(notified(id, LH_CMD_PAUSED_NOW));
	post_control(&r, id, "resume");
	cr_assert_str_eq(jstr(r.json, "state"), "running");
	resp_free(&r);
	post_control(&r, id, "cancel");
	cr_assert_eq(r.status, 200);
	cr_assert_str_eq(jstr(r.json, "state"), "cancelled");
	cr_assert(json_is_string(json_object_get(r.json, "finished_at")));
	resp_free(&r);
	cr_assert(notified(id, LH_CMD_CANCELLED));
	post_control(&r, id, "cancel");
	assert_conflict(&r, "cancelled", "cancelled");
	resp_free(&r);
	post_control(&r, id, "pause");
	assert_conflict(&r, "cancelled", "paused");
	resp_free(&r);
	post_control(&r, 777, "pause");
	assert_error(&r, 404, "not_found");
	resp_free(&r);
}

Test(api, control_writes_events)
{
	struct resp r;
	int64_t id = submit_batch("");
	char path[96];
	json_t *ev;
	post_control(&r, id, "pause");
	resp_free(&r);
	post_control(&r, id, "cancel");
	resp_free(&r);
	snprintf(path, sizeof path, "/v1/jobs/%lld/events", (long long)id);
	get(&r, path);
	cr_assert_eq(r.status, 200);
	ev = json_object_get(r.json, "events");
	cr_assert_eq(json_array_size(ev), 3);
	cr_assert_str_eq(jstr(json_array_get(ev, 0), "type"), "job.queued");
	cr_assert_str_eq(jstr(json_array_get(ev, 1), "type"), "job.paused");
	cr_assert_str_eq(jstr(json_array_get(ev, 2), "type"), "job.cancelled");
	cr_assert_eq(jint(json_array_get(ev, 2), "id"), 3);
	cr_assert_eq(jint(json_array_get(ev, 2), "job"), id);
	cr_assert(json_is_string(json_object_get(json_array_get(ev, 2), "time")));
	cr_assert(json_is_null(json_object_get(json_array_get(ev, 2), "item")));
	cr_assert_eq(jint(r.json, "next_after"), 3);
	resp_free(&r);
	snprintf(path, sizeof path, "/v1/jobs/%lld/events?after=1&limit=1", (long long)id);
	get(&r, path);
	ev = json_object_get(r.json, "events");
	cr_assert_eq(json_array_size(ev), 1);
	cr_assert_str_eq(jstr(json_array_get(ev, 0), "type"), "job.paused");
	cr_assert_eq(jint(r.json, "next_after"), 2);
	resp_free(&r);
	snprintf(path, sizeof path, "/v1/jobs/%lld/events?after=3", (long long)id);
	get(&r, path);
	cr_assert_eq(json_array_size(json_object_get(r.json, "events")), 0);
	cr_assert_eq(jint(r.json, "next_after"), 3);
	resp_free(&r);
	snprintf(path, sizeof path, "/v1/jobs/%lld/events?limit=5000", (long long)id);
	get(&r, path);
	assert_error(&r, 400, "bad_input");
	resp_free(&r);
	get(&r, "/v1/jobs/999/events");
	assert_error(&r, 404, "not_found");
	resp_free(&r);
}

/* ---- retry ---- */

Test(api, retry_reopens_a_completed_job)
{
	struct resp r;
	int64_t id = submit_batch(""), counts[LH_ITEM_NSTATES];
	char path[96];
	json_t *ev, *last;
	set_state(id, "running");
	finish_items(id);
	set_state(id, "completed");
	snprintf(path, sizeof path, "/v1/jobs/%lld/retry", (long long)id);
	http(&r, "POST", path, NULL, NULL, 0, NULL);
	cr_assert_eq(r.status, 200, "%s", r.body.data);
	cr_assert_eq(jint(r.json, "retried"), 1);
	cr_assert_str_eq(jstr(json_object_get(r.json, "job"), "state"), "queued");
	cr_assert_eq(jint(json_object_get(json_object_get(r.json, "job"), "counts"), "failed"), 0);
	resp_free(&r);
	cr_assert(notified(id, LH_CMD_RETRIED));
	OK(lh_store_item_counts(st, id, counts, &E));
	cr_assert_eq(counts[LH_ITEM_PENDING], 1);
	cr_assert_eq(counts[LH_ITEM_DEAD], 0);
	snprintf(path, sizeof path, "/v1/jobs/%lld/events", (long long)id);
	get(&r, path);
	ev = json_object_get(r.json, "events");
	last = json_array_get(ev, json_array_size(ev) - 1);
	cr_assert_str_eq(jstr(last, "type"), "job.queued");
	last = json_array_get(ev, json_array_size(ev) - 2);
	cr_assert_str_eq(jstr(last, "type"), "job.retry");
	cr_assert_eq(jint(json_object_get(last, "data"), "retried"), 1);
	resp_free(&r);
}

Test(api, retry_by_keys_and_body_errors)
{
	struct resp r;
	int64_t id = submit_batch("");
	char path[96], *many;
	size_t n = 0;
	json_t *d;
	set_state(id, "running");
	finish_items(id);
	snprintf(path, sizeof path, "/v1/jobs/%lld/retry", (long long)id);
	post_json(&r, path, "{\"keys\":[\"a\",\"nope\"]}");
	cr_assert_eq(r.status, 404, "an unknown key is a typo to report, not an item to skip");
	resp_free(&r);
	post_json(&r, path, "{\"keys\":[\"a\"]}");
	cr_assert_eq(r.status, 200);
	cr_assert_eq(jint(r.json, "retried"), 0, "a is done: nothing to retry");
	cr_assert_str_eq(jstr(json_object_get(r.json, "job"), "state"), "running");
	resp_free(&r);
	post_json(&r, path, "{\"keys\":[]}");
	cr_assert_eq(r.status, 200);
	cr_assert_eq(jint(r.json, "retried"), 0);
	resp_free(&r);
	post_json(&r, path, "{\"keys\":[\"c\"]}");
	cr_assert_eq(r.status, 200);
	cr_assert_eq(jint(r.json, "retried"), 1);
	cr_assert_str_eq(jstr(json_object_get(r.json, "job"), "state"), "running");
	resp_free(&r);

	post_json(&r, path, "{\"key\":[\"c\"]}");
	d = assert_error(&r, 400, "bad_input");
	cr_assert_str_eq(jstr(d, "field"), "key");
	resp_free(&r);
	post_json(&r, path, "{\"keys\":\"c\"}");
	assert_error(&r, 400, "bad_input");
	resp_free(&r);
	post_json(&r, path, "{\"keys\":[1]}");
	assert_error(&r, 400, "bad_input");
	resp_free(&r);
	post_json(&r, path, "[1]");
	assert_error(&r, 400, "bad_input");
	resp_free(&r);
	post_json(&r, path, "{\"keys\":");
	assert_error(&r, 400, "bad_input");
	resp_free(&r);
	many = malloc(10001 * 4 + 16);
	n = (size_t)sprintf(many, "{\"keys\":[");
	for (int i = 0; i < 10001; i++)
		n += (size_t)sprintf(many + n, "%s\"k\"", i ? "," : "");
	sprintf(many + n, "]}");
	post_json(&r, path, many);
	d = assert_error(&r, 400, "bad_input");
	cr_assert_str_eq(jstr(d, "field"), "keys");
	resp_free(&r);
	free(many);

	set_state(id, "cancelled");
	http(&r, "POST", path, NULL, NULL, 0, NULL);
	assert_conflict(&r, "cancelled", "queued");
	resp_free(&r);
	post_json(&r, "/v1/jobs/4242/retry", "{}");
	assert_error(&r, 404, "not_found");
	resp_free(&r);
}

/* ---- PATCH, DELETE ---- */

Test(api, patch_priority)
{
	struct resp r;
	int64_t id = submit_batch("");
	char path[64];
	json_t *d;
	struct lh_job_rec j;
	snprintf(path, sizeof path, "/v1/jobs/%lld", (long long)id);
	http(&r, "PATCH", path, "application/json", "{\"priority\": 5}", 15, NULL);
	cr_assert_eq(r.status, 200, "%s", r.body.data);
	cr_assert_eq(jint(r.json, "priority"), 5);
	resp_free(&r);
	cr_assert(notified(id, LH_CMD_PRIORITY));
	OK(lh_store_job_get(st, id, &j, &E));
	cr_assert_eq(j.priority, 5);
	cr_assert_eq(j.last_event_seq, 2);
	lh_job_rec_release(&j);

	http(&r, "PATCH", path, "application/json", "{\"prio\": 5}", 11, NULL);
	d = assert_error(&r, 400, "bad_input");
	cr_assert_str_eq(jstr(d, "field"), "prio");
	resp_free(&r);
	http(&r, "PATCH", path, "application/json", "{\"priority\": \"5\"}", 17, NULL);
	d = assert_error(&r, 400, "bad_input");
	cr_assert_str_eq(jstr(d, "field"), "priority");
	resp_free(&r);
	http(&r, "PATCH", path, "application/json", "{}", 2, NULL);
	assert_error(&r, 400, "bad_input");
	resp_free(&r);
	http(&r, "PATCH", path, "application/json", "{\"priority\": 1,}", 16, NULL);
	assert_error(&r, 400, "bad_input");
	resp_free(&r);
	http(&r, "PATCH", path, "application/json", NULL, 0, NULL);
	assert_error(&r, 400, "bad_input");
	resp_free(&r);
	http(&r, "PATCH", "/v1/jobs/999", "application/json", "{\"priority\": 5}", 15, NULL);
	assert_error(&r, 404, "not_found");
	resp_free(&r);
}

Test(api, delete_job)
{
	struct resp r;
	int64_t id = submit_batch("");
	char path[64];
	snprintf(path, sizeof path, "/v1/jobs/%lld", (long long)id);
	http(&r, "DELETE", path, NULL, NULL, 0, NULL);
	cr_assert_eq(r.status, 204);
	cr_assert_eq(r.body.len, 0);
	resp_free(&r);
	cr_assert(notified(id, LH_CMD_DELETED));
	get(&r, path);
	assert_error(&r, 404, "not_found");
	resp_free(&r);
	http(&r, "DELETE", path, NULL, NULL, 0, NULL);
	assert_error(&r, 404, "not_found");
	resp_free(&r);
	cr_assert_eq(jobs_in_store(), 0);
}

/* ---- items, results, errors ---- */

Test(api, items_list_with_states_and_cursor)
{
	struct resp r;
	int64_t id = submit_batch("");
	char path[128], cursor[32];
	json_t *items, *it;
	set_state(id, "running");
	finish_items(id);
	snprintf(path, sizeof path, "/v1/jobs/%lld/items?state=failed", (long long)id);
	get(&r, path);
	cr_assert_eq(r.status, 200);
	items = json_object_get(r.json, "items");
	cr_assert_eq(json_array_size(items), 1);
	it = json_array_get(items, 0);
	cr_assert_str_eq(jstr(it, "key"), "c");
	cr_assert_str_eq(jstr(it, "state"), "dead");
	cr_assert_eq(jint(it, "attempts"), 1);
	cr_assert_eq(jint(it, "last_status"), 400);
	cr_assert_str_eq(jstr(json_object_get(json_object_get(it, "last_error"), "error"), "code"), "bad");
	cr_assert(json_is_null(json_object_get(r.json, "next_cursor")));
	resp_free(&r);

	snprintf(path, sizeof path, "/v1/jobs/%lld/items?limit=2", (long long)id);
	get(&r, path);
	items = json_object_get(r.json, "items");
	cr_assert_eq(json_array_size(items), 2);
	cr_assert_str_eq(jstr(json_array_get(items, 0), "key"), "a");
	cr_assert_str_eq(jstr(json_array_get(items, 1), "key"), "b");
	cr_assert(json_is_null(json_object_get(json_array_get(items, 0), "last_status")));
	snprintf(cursor, sizeof cursor, "%s", jstr(r.json, "next_cursor"));
	resp_free(&r);
	snprintf(path, sizeof path, "/v1/jobs/%lld/items?limit=2&cursor=%s", (long long)id, cursor);
	get(&r, path);
	items = json_object_get(r.json, "items");
	cr_assert_eq(json_array_size(items), 1);
	cr_assert_str_eq(jstr(json_array_get(items, 0), "key"), "c");
	cr_assert(json_is_null(json_object_get(r.json, "next_cursor")));
	resp_free(&r);

	snprintf(path, sizeof path, "/v1/jobs/%lld/items?state=succeeded", (long long)id);
	get(&r, path);
	cr_assert_eq(json_array_size(json_object_get(r.json, "items")), 2);
	resp_free(&r);
	snprintf(path, sizeof path, "/v1/jobs/%lld/items?state=lost", (long long)id);
	get(&r, path);
	assert_error(&r, 400, "bad_input");
	resp_free(&r);
	snprintf(path, sizeof path, "/v1/jobs/%lld/items?cursor=x", (long long)id);
	get(&r, path);
	assert_error(&r, 400, "bad_input");
	resp_free(&r);
	get(&r, "/v1/jobs/999/items");
	assert_error(&r, 404, "not_found");
	resp_free(&r);
}

Test(api, results_and_errors_stream_jsonl)
{
	struct resp r;
	int64_t id = submit_batch("");
	char path[96];
	json_t *line;
	char *nl;
	set_state(id, "running");
	finish_items(id);
	snprintf(path, sizeof path, "/v1/jobs/%lld/results", (long long)id);
	get(&r, path);
	cr_assert_eq(r.status, 200);
	cr_assert_str_eq(r.ctype, "application/x-ndjson");
	nl = strchr(r.body.data, '\n');
	cr_assert_not_null(nl);
	line = json_loadb(r.body.data, (size_t)(nl - r.body.data), 0, NULL);
	cr_assert_not_null(line);
	cr_assert_str_eq(jstr(line, "custom_id"), "a");
	cr_assert_eq(jint(json_object_get(line, "response"), "status_code"), 200);
	cr_assert_str_eq(jstr(json_object_get(json_object_get(line, "response"), "body"), "id"), "chatcmpl-1");
	json_decref(line);
	line = json_loads(nl + 1, JSON_DISABLE_EOF_CHECK, NULL);
	cr_assert_str_eq(jstr(line, "custom_id"), "b");
	json_decref(line);
	cr_assert_eq(r.body.data[r.body.len - 1], '\n');
	cr_assert_eq(strchr(nl + 1, '\n'), r.body.data + r.body.len - 1, "two lines");
	resp_free(&r);

	snprintf(path, sizeof path, "/v1/jobs/%lld/errors", (long long)id);
	get(&r, path);
	cr_assert_eq(r.status, 200);
	line = json_loadb(r.body.data, r.body.len, JSON_DISABLE_EOF_CHECK, NULL);
	cr_assert_not_null(line);
	cr_assert_str_eq(jstr(line, "custom_id"), "c");
	cr_assert_eq(jint(json_object_get(line, "response"), "status_code"), 400);
	json_decref(line);
	resp_free(&r);

	get(&r, "/v1/jobs/999/results");
	assert_error(&r, 404, "not_found");
	resp_free(&r);
}

Test(api, results_stream_many_pages)
{
	/* More items than one store page and more bytes than one MHD block. */
	enum { N = 300 };
	struct lh_buf b;
	struct resp r;
	struct lh_claimed *cl;
	size_t n, lines = 0;
	int64_t id;
	char path[96];
	lh_buf_init(&b, 0);
	for (int i = 0; i < N; i++)
		cr_assert_eq(lh_buf_printf(&b, "{\"custom_id\":\"k%04d\",\"method\":\"POST\",\"url\":"
					   "\"/v1/chat/completions\",\"body\":{\"model\":\"m\",\"messages\":"
					   "[{\"role\":\"user\",\"content\":\"%0200d\"}]}}\n", i, i), 0);
	http(&r, "POST", "/v1/jobs", "application/jsonl", b.data, b.len, NULL);
	cr_assert_eq(r.status, 201);
	id = jint(r.json, "id");
	resp_free(&r);
	lh_buf_release(&b);
	OK(lh_store_claim(st, id, "w", lh_wall(), 60, N, &cl, &n, &E));
	cr_assert_eq(n, N);
	for (size_t i = 0; i < n; i++) {
		char resp[400];
		struct lh_step_rec s;
		memset(&s, 0, sizeof s);
		snprintf(resp, sizeof resp, "{\"choices\":[{\"message\":{\"content\":\"%0300zu\"}}]}", i);
		s.attempt = 1;
		s.request_hash = "00";
		s.status = 200;
		s.response = resp;
		s.response_len = strlen(resp);
		OK(lh_store_item_done(st, id, cl[i].seq, cl[i].fence, 1, &s, &E));
		lh_claimed_release(&cl[i]);
	}
	free(cl);
	snprintf(path, sizeof path, "/v1/jobs/%lld/results", (long long)id);
	get(&r, path);
	cr_assert_eq(r.status, 200);
	for (size_t i = 0; i < r.body.len; i++)
		lines += r.body.data[i] == '\n';
	cr_assert_eq(lines, N);
	cr_assert_not_null(strstr(r.body.data, "\"custom_id\":\"k0000\""));
	cr_assert_not_null(strstr(r.body.data, "\"custom_id\":\"k0299\""));
	cr_assert(strstr(r.body.data, "k0150") < strstr(r.body.data, "k0151"), "input order");
	resp_free(&r);
}

/* ---- auth ---- */

Test(api, token_required_when_set)
{
	struct lh_api_opts o;
	struct resp r;
	struct raw s;
	char path[96];
	int64_t id;
	opts_init(&o);
	o.token = "s3cret-token";
	restart(&o);
	get(&r, "/v1/jobs");
	assert_error(&r, 401, "unauthorized");
	cr_assert_str_eq(r.www, "Bearer");
	resp_free(&r);
	http(&r, "GET", "/v1/jobs", NULL, NULL, 0, "Authorization: Bearer s3cret-tokeN");
	assert_error(&r, 401, "unauthorized");
	resp_free(&r);
	http(&r, "GET", "/v1/jobs", NULL, NULL, 0, "Authorization: Bearer s3cret");
	assert_error(&r, 401, "unauthorized");
	resp_free(&r);
	http(&r, "GET", "/v1/jobs?token=s3cret-token", NULL, NULL, 0, NULL);
	assert_error(&r, 401, "unauthorized");
	resp_free(&r);
	http(&r, "GET", "/nowhere", NULL, NULL, 0, NULL);
	assert_error(&r, 401, "unauthorized");
	resp_free(&r);
	http(&r, "POST", "/v1/jobs", "application/jsonl", batch3, strlen(batch3), NULL);
	assert_error(&r, 401, "unauthorized");
	resp_free(&r);
	cr_assert_eq(jobs_in_store(), 0);
	get(&r, "/healthz");
	cr_assert_eq(r.status, 200);
	resp_free(&r);
	get(&r, "/readyz");
	cr_assert_eq(r.status, 200);
	resp_free(&r);

	token = "s3cret-token";
	get(&r, "/v1/jobs");
	cr_assert_eq(r.status, 200);
	resp_free(&r);
	id = submit_batch("");
	token = NULL;

	/* Streams take ?token= too. */
	snprintf(path, sizeof path, "/v1/jobs/%lld/events/stream?token=s3cret-token", (long long)id);
	raw_open(&s, path, "", 0);
	raw_wait(&s, "event: job.queued", 0, 10000);
	cr_assert(!strncmp(s.in.data, "HTTP/1.", 7) && !strncmp(s.in.data + 9, "200", 3));
	raw_close(&s);
	raw_open(&s, "/v1/events/stream?token=wrong", "", 0);
	raw_wait(&s, NULL, 0, 10000);
	cr_assert(!strncmp(s.in.data + 9, "401", 3), "%s", s.in.data);
	raw_close(&s);
}

Test(api, non_loopback_needs_a_token)
{
	struct lh_api_opts o;
	struct lh_api *a2 = NULL;
	opts_init(&o);
	o.host = "0.0.0.0";
	cr_assert_eq(lh_api_start(&o, &a2, &E), LH_EUSAGE);
	cr_assert_null(a2);
	cr_assert_str_eq(E.msg, "listening on 0.0.0.0 needs a token: set LONGHAUL_TOKEN");
	o.token = "";
	cr_assert_eq(lh_api_start(&o, &a2, &E), LH_EUSAGE);
	o.token = "t";
	OK(lh_api_start(&o, &a2, &E));
	lh_api_stop(a2);

	cr_assert(lh_api_is_loopback("127.0.0.1"));
	cr_assert(lh_api_is_loopback("127.3.2.1"));
	cr_assert(lh_api_is_loopback("::1"));
	cr_assert(lh_api_is_loopback("[::1]"));
	cr_assert(lh_api_is_loopback("localhost"));
	cr_assert(!lh_api_is_loopback("0.0.0.0"));
	cr_assert(!lh_api_is_loopback("::"));
	cr_assert(!lh_api_is_loopback("192.168.1.2"));
	cr_assert(!lh_api_is_loopback("example.com"));
	cr_assert(!lh_api_is_loopback(NULL));
}

Test(api, address_in_use_and_ipv6)
{
	struct lh_api_opts o;
	struct lh_api *a2 = NULL;
	int fd;
	opts_init(&o);
	o.port = port;
	cr_assert_eq(lh_api_start(&o, &a2, &E), LH_EBUSY);
	cr_assert_not_null(strstr(E.msg, "127.0.0.1"), "%s", E.msg);
	cr_assert_not_null(strstr(E.msg, "in use"), "%s", E.msg);

	fd = socket(AF_INET6, SOCK_STREAM, 0);
	if (fd < 0)
		return; /* no IPv6 here */
	close(fd);
	opts_init(&o);
	o.host = "::1";
	if (lh_api_start(&o, &a2, &E) == 0) {
		CURL *c = curl_easy_init();
		char url[64];
		long status = 0;
		snprintf(url, sizeof url, "http://[::1]:%d/healthz", lh_api_port(a2));
		curl_easy_setopt(c, CURLOPT_URL, url);
		curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
		{
			struct resp r;
			memset(&r, 0, sizeof r);
			lh_buf_init(&r.body, 0);
			curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
			cr_assert_eq(curl_easy_perform(c), CURLE_OK);
			curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
			cr_assert_eq(status, 200);
			lh_buf_release(&r.body);
		}
		curl_easy_cleanup(c);
		lh_api_stop(a2);
	} else {
		cr_assert_eq(E.code, LH_EIO, "%s", E.msg); /* IPv6 configured off */
	}
}

/* ---- event streams ---- */

Test(api, job_stream_replays_then_goes_live)
{
	struct raw s;
	int64_t id = submit_batch(""), ids[16];
	char path[96];
	size_t n;
	snprintf(path, sizeof path, "/v1/jobs/%lld/events/stream", (long long)id);
	raw_open(&s, path, "", 0);
	raw_wait(&s, "id: 1\nevent: job.queued\ndata: {", 0, 10000);
	cr_assert_not_null(strstr(s.in.data, "Content-Type: text/event-stream"));
	cr_assert_not_null(strstr(s.in.data, "Cache-Control: no-cache"));
	cr_assert_not_null(strstr(s.in.data, "X-Accel-Buffering: no"));
	add_event(id, "item.retry");
	add_event(id, "item.failed");
	lh_api_events_changed(api);
	raw_wait(&s, "id: 3\nevent: item.failed\n", 0, 10000);
	raw_wait(&s, "\n\n", (size_t)(strstr(s.in.data, "id: 3\n") - s.in.data), 10000);
	n = sse_ids(s.in.data, ids, 16);
	cr_assert_eq(n, 3);
	cr_assert(ids[0] == 1 && ids[1] == 2 && ids[2] == 3);
	cr_assert_not_null(strstr(s.in.data, "\"item\":\"k1\""));
	cr_assert_not_null(strstr(s.in.data, "\"data\":{\"n\":1}"));
	raw_close(&s);
}

Test(api, job_stream_resumes_after_last_event_id)
{
	struct raw s;
	int64_t id = submit_batch(""), ids[32];
	char path[96];
	size_t n;
	for (int i = 0; i < 4; i++)
		add_event(id, "item.retry"); /* ids 2..5 */
	snprintf(path, sizeof path, "/v1/jobs/%lld/events/stream", (long long)id);
	raw_open(&s, path, "", 0);
	raw_wait(&s, "id: 5\n", 0, 10000);
	raw_close(&s);
	/* Missed while away. */
	add_event(id, "item.failed"); /* 6 */
	add_event(id, "item.failed"); /* 7 */
	raw_open(&s, path, "Last-Event-ID: 5\r\n", 0);
	raw_wait(&s, "id: 7\n", 0, 10000);
	add_event(id, "job.paused"); /* 8, live */
	lh_api_events_changed(api);
	raw_wait(&s, "id: 8\nevent: job.paused\n", 0, 10000);
	n = sse_ids(s.in.data, ids, 32);
	cr_assert_eq(n, 3, "exactly the missing ones, then the live one: %s", s.in.data);
	cr_assert(ids[0] == 6 && ids[1] == 7 && ids[2] == 8);
	raw_close(&s);

	/* ?after= does the same; the header wins over it. */
	snprintf(path, sizeof path, "/v1/jobs/%lld/events/stream?after=6", (long long)id);
	raw_open(&s, path, "", 0);
	raw_wait(&s, "id: 8\n", 0, 10000);
	n = sse_ids(s.in.data, ids, 32);
	cr_assert(n == 2 && ids[0] == 7 && ids[1] == 8);
	raw_close(&s);
	raw_open(&s, path, "Last-Event-ID: 7\r\n", 0);
	raw_wait(&s, "id: 8\n", 0, 10000);
	n = sse_ids(s.in.data, ids, 32);
	cr_assert(n == 1 && ids[0] == 8);
	raw_close(&s);
}

Test(api, global_stream_uses_global_ids)
{
	struct raw s;
	int64_t a = submit_batch(""), b = submit_batch(""), ids[16];
	size_t n;
	char *p;
	raw_open(&s, "/v1/events/stream", "", 0);
	raw_wait(&s, "id: 2\n", 0, 10000);
	add_event(a, "item.retry");
	add_event(b, "item.failed");
	lh_api_events_changed(api);
	raw_wait(&s, "id: 4\nevent: item.failed\n", 0, 10000);
	n = sse_ids(s.in.data, ids, 16);
	cr_assert_eq(n, 4);
	for (size_t i = 0; i < n; i++)
		cr_assert_eq(ids[i], (int64_t)i + 1);
	/* The data's id is the stream's id; seq is the job's own number. */
	p = strstr(s.in.data, "id: 4\n");
	cr_assert_not_null(strstr(p, "\"id\":4"));
	cr_assert_not_null(strstr(p, "\"seq\":2"));
	raw_close(&s);
	raw_open(&s, "/v1/events/stream", "Last-Event-ID: 3\r\n", 0);
	raw_wait(&s, "id: 4\n", 0, 10000);
	n = sse_ids(s.in.data, ids, 16);
	cr_assert(n == 1 && ids[0] == 4);
	raw_close(&s);
}

Test(api, stream_errors)
{
	struct raw s;
	raw_open(&s, "/v1/jobs/999/events/stream", "", 0);
	raw_wait(&s, NULL, 0, 10000);
	cr_assert(!strncmp(s.in.data + 9, "404", 3), "%s", s.in.data);
	raw_close(&s);
	raw_open(&s, "/v1/events/stream", "Last-Event-ID: x\r\n", 0);
	raw_wait(&s, NULL, 0, 10000);
	cr_assert(!strncmp(s.in.data + 9, "400", 3), "%s", s.in.data);
	raw_close(&s);
}

Test(api, stream_ends_when_job_deleted_or_api_stops)
{
	struct raw s, g;
	struct resp r;
	int64_t id = submit_batch("");
	char path[96];
	snprintf(path, sizeof path, "/v1/jobs/%lld/events/stream", (long long)id);
	raw_open(&s, path, "", 0);
	raw_wait(&s, "id: 1\n", 0, 10000);
	raw_open(&g, "/v1/events/stream", "", 0);
	raw_wait(&g, "id: 1\n", 0, 10000);
	snprintf(path, sizeof path, "/v1/jobs/%lld", (long long)id);
	http(&r, "DELETE", path, NULL, NULL, 0, NULL);
	cr_assert_eq(r.status, 204);
	resp_free(&r);
	raw_wait(&s, NULL, 0, 10000);
	raw_close(&s);
	lh_api_stop(api);
	api = NULL;
	raw_wait(&g, NULL, 0, 10000);
	raw_close(&g);
	{
		struct lh_api_opts o;
		opts_init(&o);
		start(&o); /* for teardown */
	}
}

Test(api, slow_stream_client_is_dropped)
{
	struct lh_api_opts o;
	struct raw s;
	int64_t id, ids[4];
	uint64_t dropped = 0;
	struct timespec ts;
	char path[96];
	int rc = 0;
	opts_init(&o);
	o.sse_max_backlog = 8192;
	restart(&o);
	id = submit_batch("");
	snprintf(path, sizeof path, "/v1/jobs/%lld/events/stream", (long long)id);
	raw_open(&s, path, "", 2048);
	raw_wait(&s, "id: 1\n", 0, 10000);
	/* About 2 MB of events that the client does not read. */
	OK(lh_store_begin(st, &E));
	for (int i = 0; i < 10000; i++)
		add_event(id, "item.retry");
	OK(lh_store_commit(st, &E));
	lh_api_events_changed(api);
	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += 20;
	pthread_mutex_lock(&api->ev_mu);
	while (api->n_dropped == 0 && rc == 0)
		rc = pthread_cond_timedwait(&api->ev_cv, &api->ev_mu, &ts);
	dropped = api->n_dropped;
	pthread_mutex_unlock(&api->ev_mu);
	cr_assert_eq(dropped, 1, "the stream was not dropped");
	/* The client gets what was sent, then the end: far from every event. */
	raw_wait(&s, NULL, 0, 20000);
	cr_assert_gt(sse_ids(s.in.data, ids, 4), 0);
	cr_assert_null(strstr(s.in.data, "id: 10001\n"));
	raw_close(&s);
	/* It reconnects and loses nothing. */
	raw_open(&s, path, "Last-Event-ID: 10000\r\n", 0);
	raw_wait(&s, "id: 10001\n", 0, 10000);
	raw_close(&s);
}

Test(api, stop_with_a_stuck_stream_client_returns)
{
	struct lh_api_opts o;
	struct raw s;
	int64_t id, t0;
	char path[96];
	opts_init(&o);
	o.sse_max_backlog = 64u << 20; /* never dropped: the stream stays stuck on the full socket */
	restart(&o);
	id = submit_batch("");
	snprintf(path, sizeof path, "/v1/jobs/%lld/events/stream", (long long)id);
	raw_open(&s, path, "", 2048);
	raw_wait(&s, "id: 1\n", 0, 10000);
	OK(lh_store_begin(st, &E));
	for (int i = 0; i < 10000; i++)
		add_event(id, "item.retry");
	OK(lh_store_commit(st, &E));
	lh_api_events_changed(api);
	t0 = lh_mono_ms();
	lh_api_stop(api);
	api = NULL;
	/* Waiting for the client would last until MHD drops the connection
	 * (API_CONN_TIMEOUT): half of that is a generous bound on a stop that
	 * does not wait, on any machine. */
	cr_assert_lt(lh_mono_ms() - t0, API_CONN_TIMEOUT * 1000 / 2, "stop must not wait for the client");
	raw_close(&s);
	opts_init(&o);
	start(&o); /* for teardown */
}
