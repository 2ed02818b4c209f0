/* Unit tests: the LLM client against a tiny HTTP server on loopback.
 *
 * The server is one thread polling a listening socket and its connections;
 * the path of each request picks a canned answer (JSON, an SSE stream, an
 * error, a hang, a close). The client runs on a real lh_loop, and each test
 * stops the loop from the request callbacks: no sleeps. */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <pthread.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "io/completion.h"
#include "llm/llm.h"
#include "util/mem.h"
#include "completion_shim.h"



#define SRV_MAXC 128
#define KEY "sk-test-0123456789abcdef"

#define OK_BODY "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion\",\"created\":1,\"model\":\"m\"," \
	"\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"hi\"},\"finish_reason\":\"stop\"}]," \
	"\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2,\"total_tokens\":7}}"

#define CHUNK(delta, fr) "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":2,\"model\":\"m\"," \
	"\"choices\":[{\"index\":0,\"delta\":" delta ",\"finish_reason\":" fr "}]}\n\n"

static const char *const stream_full[] = {
	CHUNK("{\"role\":\"assistant\",\"content\":\"\"}", "null"),
	CHUNK("{\"content\":\"Hel\"}", "null"),
	": keep-alive comment\r\n\r\n",
	CHUNK("{\"content\":\"lo \\\"w\\\"\\n\"}", "null"),
	CHUNK("{}", "\"stop\""),
	"data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":2,\"model\":\"m\",\"choices\":[],"
	"\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4,\"total_tokens\":7}}\n\n",
	"data: [DONE]\n\n",
	NULL,
};

static const char *const stream_no_done[] = {
	CHUNK("{\"content\":\"ok\"}", "null"),
	CHUNK("{}", "\"length\""),
	NULL,
};

static const char *const stream_truncated[] = {
	CHUNK("{\"content\":\"par\"}", "null"),
	CHUNK("{\"content\":\"tial\"}", "null"),
	NULL,
};

static const char *const stream_error[] = {
	CHUNK("{\"content\":\"x\"}", "null"),
	"data: {\"error\":{\"message\":\"engine crashed\"}}\n\n",
	NULL,
};

struct srv_conn {
	int fd;
	size_t len;
	char buf[16384];
};

struct srv {
	int lfd, port, wake[2];
	pthread_t th;
	pthread_mutex_t mu;
	int accepted, requests;
	char auth[256], accept[128], ctype[128], expect[64];
	int has_auth, has_expect;
	size_t body_len;
	struct srv_conn *conns[SRV_MAXC];
};

static void srv_send(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
		if (k <= 0)
			return;
		p += k;
		n -= (size_t)k;
	}
}

static void srv_sendf(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void srv_sendf(int fd, const char *fmt, ...)
{
	char buf[8192];
	va_list ap;
	int n;
	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	srv_send(fd, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
}

static void srv_json(int fd, int status, const char *extra, const char *body)
{
	srv_sendf(fd, "HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n%s\r\n%s", status,
		  strlen(body), extra, body);
}

static void srv_stream(int fd, const char *const *chunks)
{
	srv_sendf(fd, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n"
		      "x-request-id: req-stream\r\n\r\n");
	for (; *chunks; chunks++)
		srv_sendf(fd, "%zx\r\n%s\r\n", strlen(*chunks), *chunks);
	srv_sendf(fd, "0\r\n\r\n");
}

static void srv_header(const char *h, size_t hl, const char *name, char *out, size_t outsz, int *seen)
{
	size_t nl = strlen(name);
	const char *p = h;
	while (p && p < h + hl) {
		const char *eol = memmem(p, (size_t)(h + hl - p), "\r\n", 2);
		if (!eol)
			break;
		if ((size_t)(eol - p) > nl && strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
			const char *v = p + nl + 1;
			size_t n;
			while (*v == ' ')
				v++;
			n = (size_t)(eol - v) < outsz - 1 ? (size_t)(eol - v) : outsz - 1;
			memcpy(out, v, n);
			out[n] = '\0';
			if (seen)
				*seen = 1;
			return;
		}
		p = eol + 2;
	}
	out[0] = '\0';
}

/* Answers one request; returns 0 to keep the connection, -1 to close it,
 * 1 to keep it open without answering (a hang). */
static int srv_answer(struct srv *s, int fd, const char *path)
{
	char big[4097];
	if (strcmp(path, "/ok") == 0) {
		srv_json(fd, 200,
			 "x-request-id: req-123\r\nx-ratelimit-remaining-requests: 99\r\n"
			 "x-ratelimit-remaining-tokens: 15000\r\nx-ratelimit-reset-requests: 6m0s\r\n"
			 "x-ratelimit-reset-tokens: 20ms\r\n",
			 OK_BODY);
	} else if (strcmp(path, "/stream") == 0) {
		srv_stream(fd, stream_full);
	} else if (strcmp(path, "/stream_no_done") == 0) {
		srv_stream(fd, stream_no_done);
	} else if (strcmp(path, "/stream_truncated") == 0) {
		srv_stream(fd, stream_truncated);
	} else if (strcmp(path, "/stream_error") == 0) {
		srv_stream(fd, stream_error);
	} else if (strcmp(path, "/stream_hang") == 0) {
		srv_sendf(fd, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n");
		return 1;
	} else if (strcmp(path, "/stream_stall") == 0) {
		/* The first token, then nothing more. */
		srv_sendf(fd, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
			      "%zx\r\n%s\r\n", strlen(stream_truncated[0]), stream_truncated[0]);
		return 1;
	} else if (strcmp(path, "/e500") == 0) {
		srv_json(fd, 500, "", "{\"error\":{\"message\":\"boom\",\"type\":\"server_error\"}}");
	} else if (strcmp(path, "/429") == 0) {
		srv_json(fd, 429, "Retry-After: 7\r\n", "{\"error\":{\"message\":\"slow down\",\"code\":\"rate_limit_exceeded\"}}");
	} else if (strcmp(path, "/quota") == 0) {
		srv_json(fd, 429, "", "{\"error\":{\"message\":\"quota\",\"type\":\"insufficient_quota\",\"code\":\"insufficient_quota\"}}");
	} else if (strcmp(path, "/401") == 0) {
		srv_json(fd, 401, "",
			 "{\"error\":{\"message\":\"Incorrect API key provided: " KEY "\",\"code\":\"invalid_api_key\"}}");
	} else if (strcmp(path, "/badjson") == 0) {
		srv_json(fd, 200, "", "{\"choices\": [tru");
	} else if (strcmp(path, "/big") == 0) {
		memset(big, 'x', sizeof big - 1);
		big[sizeof big - 1] = '\0';
		srv_json(fd, 200, "", big);
	} else if (strcmp(path, "/partial") == 0) {
		srv_sendf(fd, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"choi");
		return -1;
	} else if (strcmp(path, "/close") == 0) {
		return -1;
	} else if (strcmp(path, "/hang") == 0) {
		return 1;
	} else {
		(void)s;
		srv_json(fd, 404, "", "{\"error\":{\"message\":\"no such path\"}}");
	}
	return 0;
}

/* Handles every complete request in c's buffer. Returns -1 to close. */
static int srv_process(struct srv *s, struct srv_conn *c)
{
	for (;;) {
		char *end = memmem(c->buf, c->len, "\r\n\r\n", 4), path[256], clen[32];
		size_t hl, total;
		int rc;
		if (!end)
			return 0;
		hl = (size_t)(end - c->buf) + 4;
		srv_header(c->buf, hl, "content-length", clen, sizeof clen, NULL);
		total = hl + (size_t)strtoul(clen, NULL, 10);
		if (c->len < total)
			return 0;
		if (sscanf(c->buf, "%*s %255s", path) != 1)
			return -1;
		pthread_mutex_lock(&s->mu);
		s->requests++;
		s->has_auth = s->has_expect = 0;
		srv_header(c->buf, hl, "authorization", s->auth, sizeof s->auth, &s->has_auth);
		srv_header(c->buf, hl, "accept", s->accept, sizeof s->accept, NULL);
		srv_header(c->buf, hl, "content-type", s->ctype, sizeof s->ctype, NULL);
		srv_header(c->buf, hl, "expect", s->expect, sizeof s->expect, &s->has_expect);
		s->body_len = total - hl;
		pthread_mutex_unlock(&s->mu);
		rc = srv_answer(s, c->fd, path);
		if (rc)
			return rc;
		memmove(c->buf, c->buf + total, c->len - total);
		c->len -= total;
	}
}

static void srv_drop(struct srv *s, int i)
{
	close(s->conns[i]->fd);
	free(s->conns[i]);
	s->conns[i] = NULL;
}

static void srv_accept(struct srv *s)
{
	int fd = accept(s->lfd, NULL, NULL);
	if (fd < 0)
		return;
	for (int i = 0; i < SRV_MAXC; i++) {
		if (!s->conns[i]) {
			s->conns[i] = calloc(1, sizeof *s->conns[i]);
			s->conns[i]->fd = fd;
			/* Stream chunks go out at once, as real servers send them. */
			setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &(int){ 1 }, sizeof(int));
			pthread_mutex_lock(&s->mu);
			s->accepted++;
			pthread_mutex_unlock(&s->mu);
			return;
		}
	}
	close(fd);
}

static void *srv_main(void *arg)
{
	struct srv *s = arg;
	pthread_setname_np(pthread_self(), "test-srv");
	for (;;) {
		struct pollfd pfd[SRV_MAXC + 2];
		int idx[SRV_MAXC + 2], n = 0;
		pfd[n].fd = s->wake[0];
		pfd[n++].events = POLLIN;
		pfd[n].fd = s->lfd;
		pfd[n++].events = POLLIN;
		for (int i = 0; i < SRV_MAXC; i++) {
			if (s->conns[i]) {
				idx[n] = i;
				pfd[n].fd = s->conns[i]->fd;
				pfd[n++].events = POLLIN;
			}
		}
		if (poll(pfd, (nfds_t)n, -1) < 0)
			continue;
		if (pfd[0].revents)
			break;
		if (pfd[1].revents & POLLIN)
			srv_accept(s);
		for (int k = 2; k < n; k++) {
			struct srv_conn *c = s->conns[idx[k]];
			ssize_t r;
			if (!pfd[k].revents)
				continue;
			r = recv(c->fd, c->buf + c->len, sizeof c->buf - c->len, 0);
			if (r <= 0) {
				srv_drop(s, idx[k]);
				continue;
			}
			c->len += (size_t)r;
			if (srv_process(s, c) < 0)
				srv_drop(s, idx[k]);
		}
	}
	for (int i = 0; i < SRV_MAXC; i++)
		if (s->conns[i])
			srv_drop(s, i);
	return NULL;
}

static void srv_start(struct srv *s)
{
	struct sockaddr_in a;
	socklen_t al = sizeof a;
	int one = 1;
	memset(s, 0, sizeof *s);
	pthread_mutex_init(&s->mu, NULL);
	cr_assert_eq(pipe(s->wake), 0);
	s->lfd = socket(AF_INET, SOCK_STREAM, 0);
	cr_assert(s->lfd >= 0);
	setsockopt(s->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	memset(&a, 0, sizeof a);
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert_eq(bind(s->lfd, (struct sockaddr *)&a, sizeof a), 0);
	cr_assert_eq(listen(s->lfd, 128), 0);
	cr_assert_eq(getsockname(s->lfd, (struct sockaddr *)&a, &al), 0);
	s->port = ntohs(a.sin_port);
	cr_assert_eq(pthread_create(&s->th, NULL, srv_main, s), 0);
}

static void srv_stop(struct srv *s)
{
	cr_assert_eq(write(s->wake[1], "x", 1), 1);
	pthread_join(s->th, NULL);
	close(s->lfd);
	close(s->wake[0]);
	close(s->wake[1]);
	pthread_mutex_destroy(&s->mu);
}

/* ---- the client side ---- */

struct got {
	int n;
	enum lh_llm_outcome outcome;
	int status;
	char code[64], msg[640], rid[128];
	char *body;
	double retry_after, rl[4], started, first_byte, ended;
	int64_t pt, ct;
	size_t in_flight_during;
};

struct fx {
	struct srv srv;
	struct lh_loop *loop;
	struct lh_llm *llm;
	struct lh_timer *guard;
	int pending;
	int in_send;
	char url[256];
};

static struct fx fx;

static void fx_guard(struct lh_loop *loop, struct lh_timer *t, void *arg)
{
	(void)loop;
	(void)t;
	(void)arg;
	cr_assert_fail("the loop ran 30 s without the expected callbacks");
}

static void fx_open(const struct lh_llm_opts *o)
{
	struct lh_err e;
	srv_start(&fx.srv);
	fx.loop = lh_loop_new(&e);
	cr_assert_not_null(fx.loop);
	fx.llm = lh_llm_new(fx.loop, o, &e);
	cr_assert_not_null(fx.llm, "%s", e.msg);
	fx.guard = lh_timer_new(fx.loop, fx_guard, NULL);
	lh_timer_start(fx.guard, 30000);
	fx.pending = 0;
	fx.in_send = 0;
}

static void fx_close(void)
{
	lh_llm_free(fx.llm);
	lh_timer_free(fx.guard);
	lh_loop_free(fx.loop);
	srv_stop(&fx.srv);
}

static const char *fx_url(const char *path)
{
	snprintf(fx.url, sizeof fx.url, "http://127.0.0.1:%d%s", fx.srv.port, path);
	return fx.url;
}

static void got_release(struct got *g)
{
	lh_free(g->body);
	g->body = NULL;
}

static void record(struct lh_llm_req *req, const struct lh_llm_result *res, void *arg)
{
	struct got *g = arg;
	(void)req;
	cr_assert_eq(fx.in_send, 0, "a callback ran inside lh_llm_send");
	g->n++;
	g->outcome = res->outcome;
	g->status = res->status;
	snprintf(g->code, sizeof g->code, "%s", res->error_code ? res->error_code : "");
	snprintf(g->msg, sizeof g->msg, "%s", res->error_message ? res->error_message : "");
	snprintf(g->rid, sizeof g->rid, "%s", res->request_id ? res->request_id : "");
	cr_assert_not_null(res->body);
	lh_free(g->body);
	g->body = lh_xstrndup(res->body, res->body_len);
	g->retry_after = res->retry_after;
	g->rl[0] = res->ratelimit_remaining_requests;
	g->rl[1] = res->ratelimit_remaining_tokens;
	g->rl[2] = res->ratelimit_reset_requests;
	g->rl[3] = res->ratelimit_reset_tokens;
	g->started = res->started_at;
	g->first_byte = res->first_byte_at;
	g->ended = res->ended_at;
	g->pt = res->prompt_tokens;
	g->ct = res->completion_tokens;
	g->in_flight_during = lh_llm_in_flight(fx.llm);
	if (--fx.pending == 0)
		lh_loop_stop(fx.loop);
}

/* Per-call timeouts fx_send puts on its requests (0: the client's). */
static long call_timeout_ms, call_ftt_ms;

static struct lh_llm_req *fx_send(const char *path, int stream, const char *key, lh_llm_cb cb, void *arg)
{
	static const char body[] = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
	struct lh_llm_call call = { .url = fx_url(path), .api_key = key, .body = body, .body_len = sizeof body - 1,
				    .stream = stream, .request_timeout_ms = call_timeout_ms,
				    .first_token_timeout_ms = call_ftt_ms };
	struct lh_llm_req *r;
	struct lh_err e;
	fx.in_send = 1;
	r = lh_llm_send(fx.llm, &call, cb, arg, &e);
	fx.in_send = 0;
	cr_assert_not_null(r, "%s", e.msg);
	fx.pending++;
	return r;
}

/* Sends one request and runs the loop until its callback. */
static void fx_one(const char *path, int stream, struct got *g)
{
	got_release(g);
	memset(g, 0, sizeof *g);
	fx_send(path, stream, KEY, record, g);
	cr_assert_eq(lh_loop_run(fx.loop), 0);
	cr_assert_eq(g->n, 1);
	cr_assert_eq(lh_llm_in_flight(fx.llm), 0);
}

Test(llm_client, ok_json)
{
	struct got g = { 0 };
	char *content = NULL;
	fx_open(NULL);
	fx_one("/ok", 0, &g);
	cr_assert_eq(g.outcome, LH_LLM_OK, "%s %s", g.code, g.msg);
	cr_assert_eq(g.status, 200);
	cr_assert_str_eq(g.code, "");
	cr_assert_str_eq(g.msg, "");
	cr_assert_str_eq(g.body, OK_BODY);
	cr_assert_str_eq(g.rid, "req-123");
	cr_assert_eq(g.pt, 5);
	cr_assert_eq(g.ct, 2);
	cr_assert_float_eq(g.retry_after, -1, 1e-9);
	cr_assert_float_eq(g.rl[0], 99, 1e-9);
	cr_assert_float_eq(g.rl[1], 15000, 1e-9);
	cr_assert_float_eq(g.rl[2], 360, 1e-9);
	cr_assert_float_eq(g.rl[3], 0.02, 1e-9);
	cr_assert(g.started > 0 && g.first_byte >= g.started && g.ended >= g.first_byte);
	cr_assert_eq(g.in_flight_during, 0);
	cr_assert_eq(parse_completion(g.body, strlen(g.body), &content, NULL, NULL, NULL), 0);
	cr_assert_str_eq(content, "hi");
	lh_free(content);
	got_release(&g);
	fx_close();
}

Test(llm_client, request_headers)
{
	struct got g = { 0 };
	fx_open(NULL);
	fx_one("/ok", 0, &g);
	cr_assert(fx.srv.has_auth);
	cr_assert_str_eq(fx.srv.auth, "Bearer " KEY);
	cr_assert_str_eq(fx.srv.accept, "application/json");
	cr_assert_str_eq(fx.srv.ctype, "application/json");
	cr_assert_eq(fx.srv.has_expect, 0);
	cr_assert_eq(fx.srv.body_len, strlen("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}"));
	/* Without a key, no Authorization; streaming asks for SSE. The
	 * pooled handle switches header lists as needed. */
	got_release(&g);
	memset(&g, 0, sizeof g);
	fx_send("/stream", 1, NULL, record, &g);
	cr_assert_eq(lh_loop_run(fx.loop), 0);
	cr_assert_eq(fx.srv.has_auth, 0);
	cr_assert_str_eq(fx.srv.accept, "text/event-stream");
	got_release(&g);
	fx_close();
}

/* Sends body to path as it is, with call.stream left 0: the OpenAI
 * flavour decides from the body whether the answer streams. */
static void fx_one_body(const char *path, const char *body, struct got *g)
{
	struct lh_llm_call call = { .url = fx_url(path), .api_key = KEY, .body = body, .body_len = strlen(body) };
	struct lh_err e;
	cr_assert_not_null(lh_llm_send(fx.llm, &call, record, g, &e), "%s", e.msg);
	fx.pending++;
	cr_assert_eq(lh_loop_run(fx.loop), 0);
}

Test(llm_client, the_flavour_reads_stream_from_the_body)
{
	struct got g = { 0 };
	fx_open(NULL);
	/* Spaces around the colon: JSON, not a substring, decides. */
	fx_one_body("/stream", "{\"model\":\"m\", \"stream\" : true, \"messages\":[]}", &g);
	cr_assert_str_eq(fx.srv.accept, "text/event-stream");
	cr_assert_eq(g.outcome, LH_LLM_OK, "%s %s", g.code, g.msg);
	cr_assert_eq(g.pt, 3);
	got_release(&g);
	memset(&g, 0, sizeof g);
	/* The words inside a message do not ask for a stream. */
	fx_one_body("/ok", "{\"model\":\"m\",\"stream\":false,\"messages\":[{\"role\":\"user\","
		    "\"content\":\"say \\\"stream\\\":true\"}]}", &g);
	cr_assert_str_eq(fx.srv.accept, "application/json");
	cr_assert_eq(g.outcome, LH_LLM_OK, "%s %s", g.code, g.msg);
	got_release(&g);
	fx_close();
}

Test(llm_client, stream_assembled)
{
	struct got g = { 0 };
	char *content = NULL, *reason = NULL;
	int64_t pt, ct;
	fx_open(NULL);
	fx_one("/stream", 1, &g);
	cr_assert_eq(g.outcome, LH_LLM_OK, "%s %s", g.code, g.msg);
	cr_assert_eq(g.status, 200);
	cr_assert_str_eq(g.rid, "req-stream");
	cr_assert_eq(g.pt, 3);
	cr_assert_eq(g.ct, 4);
	cr_assert_str_eq(g.body,
			 "{\"id\":\"c1\",\"object\":\"chat.completion\",\"created\":2,\"model\":\"m\",\"choices\":[{"
			 "\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"Hello \\\"w\\\"\\n\"},"
			 "\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4,"
			 "\"total_tokens\":7}}");
	cr_assert_eq(parse_completion(g.body, strlen(g.body), &content, &pt, &ct, &reason), 0);
	cr_assert_str_eq(content, "Hello \"w\"\n");
	cr_assert_str_eq(reason, "stop");
	lh_free(content);
	lh_free(reason);
	got_release(&g);
	fx_close();
}

Test(llm_client, stream_without_done)
{
	struct got g = { 0 };
	fx_open(NULL);
	/* A finish_reason is enough to call the answer whole. */
	fx_one("/stream_no_done", 1, &g);
	cr_assert_eq(g.outcome, LH_LLM_OK, "%s %s", g.code, g.msg);
	cr_assert(strstr(g.body, "\"content\":\"ok\""));
	cr_assert(strstr(g.body, "\"finish_reason\":\"length\""));
	cr_assert_null(strstr(g.body, "usage"));
	cr_assert_eq(g.pt, -1);
	/* Neither [DONE] nor a finish_reason: cut short. */
	fx_one("/stream_truncated", 1, &g);
	cr_assert_eq(g.outcome, LH_LLM_TRANSIENT);
	cr_assert_str_eq(g.code, "truncated");
	cr_assert_eq(g.status, 200);
	got_release(&g);
	fx_close();
}

Test(llm_client, stream_error_chunk)
{
	struct got g = { 0 };
	fx_open(NULL);
	fx_one("/stream_error", 1, &g);
	cr_assert_eq(g.outcome, LH_LLM_TRANSIENT);
	cr_assert_str_eq(g.code, "stream_error");
	cr_assert(strstr(g.msg, "engine crashed"), "%s", g.msg);
	got_release(&g);
	fx_close();
}

Test(llm_client, stream_request_with_error_status)
{
	struct got g = { 0 };
	fx_open(NULL);
	fx_one("/e500", 1, &g);
	cr_assert_eq(g.outcome, LH_LLM_TRANSIENT);
	cr_assert_eq(g.status, 500);
	cr_assert_str_eq(g.code, "http_500");
	cr_assert_str_eq(g.body, "{\"error\":{\"message\":\"boom\",\"type\":\"server_error\"}}");
	cr_assert_str_eq(g.msg, "http 500: boom");
	got_release(&g);
	fx_close();
}

Test(llm_client, rate_limited_and_quota)
{
	struct got g = { 0 };
	fx_open(NULL);
	fx_one("/429", 0, &g);
	cr_assert_eq(g.outcome, LH_LLM_TRANSIENT);
	cr_assert_eq(g.status, 429);
	cr_assert_str_eq(g.code, "http_429");
	cr_assert_float_eq(g.retry_after, 7, 1e-9);
	fx_one("/quota", 0, &g);
	cr_assert_eq(g.outcome, LH_LLM_PERMANENT);
	cr_assert_str_eq(g.code, "insufficient_quota");
	cr_assert_float_eq(g.retry_after, -1, 1e-9);
	got_release(&g);
	fx_close();
}

Test(llm_client, unauthorized_and_key_scrubbed)
{
	struct got g = { 0 };
	fx_open(NULL);
	fx_one("/401", 0, &g);
	cr_assert_eq(g.outcome, LH_LLM_PERMANENT);
	cr_assert_eq(g.status, 401);
	cr_assert_str_eq(g.code, "invalid_api_key");
	cr_assert_null(strstr(g.msg, KEY), "%s", g.msg);
	cr_assert_null(strstr(g.body, KEY), "%s", g.body);
	cr_assert(strstr(g.msg, "Incorrect API key provided: ****"), "%s", g.msg);
	got_release(&g);
	fx_close();
}

Test(llm_client, invalid_json_and_not_found)
{
	struct got g = { 0 };
	fx_open(NULL);
	fx_one("/badjson", 0, &g);
	cr_assert_eq(g.outcome, LH_LLM_TRANSIENT);
	cr_assert_eq(g.status, 200);
	cr_assert_str_eq(g.code, "invalid_json");
	cr_assert_str_eq(g.body, "{\"choices\": [tru");
	fx_one("/nowhere", 0, &g);
	cr_assert_eq(g.outcome, LH_LLM_PERMANENT);
	cr_assert_str_eq(g.code, "http_404");
	got_release(&g);
	fx_close();
}

Test(llm_client, response_too_large)
{
	struct lh_llm_opts o = { .max_response_bytes = 1024 };
	struct got g = { 0 };
	fx_open(&o);
	fx_one("/big", 0, &g);
	cr_assert_eq(g.outcome, LH_LLM_PERMANENT);
	cr_assert_str_eq(g.code, "response_too_large");
	/* The client is still fine afterwards. */
	fx_one("/ok", 0, &g);
	cr_assert_eq(g.outcome, LH_LLM_OK);
	got_release(&g);
	fx_close();
}

Test(llm_client, request_timeout)
{
	struct lh_llm_opts o = { .request_timeout_ms = 200 };
	struct got g = { 0 };
	fx_open(&o);
	fx_one("/hang", 0, &g);
	cr_assert_eq(g.outcome, LH_LLM_TRANSIENT);
	cr_assert_str_eq(g.code, "timeout");
	cr_assert_eq(g.status, 0);
	cr_assert(g.ended - g.started >= 0.15, "%f", g.ended - g.started);
	got_release(&g);
	fx_close();
}

Test(llm_client, per_call_timeouts_override_the_client)
{
	struct lh_llm_opts o = { .request_timeout_ms = 60000, .first_token_timeout_ms = 60000 };
	struct got g = { 0 };
	fx_open(&o);
	call_timeout_ms = 200;
	fx_one("/hang", 0, &g);
	cr_assert_str_eq(g.code, "timeout");
	cr_assert(g.ended - g.started < 30, "the call's 200 ms applied, not the client's 60 s");
	call_timeout_ms = 0;
	call_ftt_ms = 150;
	fx_one("/stream_hang", 1, &g);
	cr_assert_str_eq(g.code, "first_token_timeout");
	cr_assert(g.ended - g.started < 30);
	call_ftt_ms = 0;
	got_release(&g);
	fx_close();
}

Test(llm_client, first_token_timeout)
{
	struct lh_llm_opts o = { .first_token_timeout_ms = 150 };
	struct got g = { 0 };
	fx_open(&o);
	fx_one("/stream_hang", 1, &g);
	cr_assert_eq(g.outcome, LH_LLM_TRANSIENT);
	cr_assert_str_eq(g.code, "first_token_timeout");
	cr_assert_eq(g.status, 200);
	cr_assert(g.ended - g.started >= 0.1);
	/* The timer does not apply to plain requests: one that hangs ends on
	 * its request timeout, though the first-token timeout is shorter (the
	 * loop fires the earlier timer first however late it runs). */
	call_timeout_ms = 400;
	fx_one("/hang", 0, &g);
	cr_assert_str_eq(g.code, "timeout", "%s", g.msg);
	/* Nor once data flows: a stream that stalls after its first token ends
	 * on its request timeout too. Here the first-token timeout is a
	 * generous bound on the first token's arrival (a loaded machine may
	 * stall well over 150 ms), still below the request timeout. */
	call_ftt_ms = 1000;
	call_timeout_ms = 1500;
	fx_one("/stream_stall", 1, &g);
	cr_assert_str_eq(g.code, "timeout", "%s", g.msg);
	cr_assert_eq(g.status, 200);
	call_ftt_ms = call_timeout_ms = 0;
	/* The client is still fine afterwards. */
	fx_one("/ok", 0, &g);
	cr_assert_eq(g.outcome, LH_LLM_OK);
	got_release(&g);
	fx_close();
}

Test(llm_client, connection_closed_or_truncated)
{
	struct got g = { 0 };
	fx_open(NULL);
	fx_one("/close", 0, &g);
	cr_assert_eq(g.outcome, LH_LLM_TRANSIENT);
	cr_assert_str_eq(g.code, "connection_reset", "%s", g.msg);
	fx_one("/partial", 0, &g);
	cr_assert_eq(g.outcome, LH_LLM_TRANSIENT);
	cr_assert_str_eq(g.code, "truncated", "%s", g.msg);
	got_release(&g);
	fx_close();
}

Test(llm_client, connect_refused_never_inside_send)
{
	struct got g = { 0 };
	struct lh_llm_call call;
	struct lh_err e;
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a;
	socklen_t al = sizeof a;
	char url[64];
	fx_open(NULL);
	/* A port that was just free: bind, read it, close. */
	memset(&a, 0, sizeof a);
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &al), 0);
	close(fd);
	snprintf(url, sizeof url, "http://127.0.0.1:%d/v1/chat/completions", ntohs(a.sin_port));
	memset(&g, 0, sizeof g);
	call = (struct lh_llm_call){ .url = url, .body = "{}", .body_len = 2 };
	fx.in_send = 1;
	cr_assert_not_null(lh_llm_send(fx.llm, &call, record, &g, &e));
	fx.in_send = 0;
	fx.pending++;
	cr_assert_eq(g.n, 0);
	cr_assert_eq(lh_llm_in_flight(fx.llm), 1);
	cr_assert_eq(lh_loop_run(fx.loop), 0);
	cr_assert_eq(g.n, 1);
	cr_assert_eq(g.outcome, LH_LLM_TRANSIENT);
	cr_assert_str_eq(g.code, "connect_error", "%s", g.msg);
	cr_assert(strstr(g.msg, "transport error: "), "%s", g.msg);
	/* A scheme curl will not speak fails permanently, also later. */
	call.url = "gopher://127.0.0.1/x";
	fx.in_send = 1;
	cr_assert_not_null(lh_llm_send(fx.llm, &call, record, &g, &e));
	fx.in_send = 0;
	fx.pending++;
	cr_assert_eq(lh_loop_run(fx.loop), 0);
	cr_assert_eq(g.n, 2);
	cr_assert_eq(g.outcome, LH_LLM_PERMANENT);
	cr_assert_str_eq(g.code, "bad_url");
	got_release(&g);
	fx_close();
}

Test(llm_client, send_rejects_missing_arguments)
{
	struct lh_llm_call call = { .body = "{}", .body_len = 2 };
	struct lh_err e;
	fx_open(NULL);
	lh_err_clear(&e);
	cr_assert_null(lh_llm_send(fx.llm, &call, record, NULL, &e));
	cr_assert_eq(e.code, LH_EINPUT);
	cr_assert_eq(lh_llm_in_flight(fx.llm), 0);
	fx_close();
}

/* ---- cancellation and freeing ---- */

struct canceller {
	struct lh_llm_req *victim;
	struct got *victim_got;
	int victim_n_after_cancel;
	int self_cancel;
};

static void cancel_other(struct lh_llm_req *req, const struct lh_llm_result *res, void *arg)
{
	struct canceller *k = arg;
	(void)res;
	if (k->self_cancel)
		lh_llm_cancel(req); /* a no-op: the callback is already running */
	lh_llm_cancel(k->victim);
	k->victim_n_after_cancel = k->victim_got->n;
	if (--fx.pending == 0)
		lh_loop_stop(fx.loop);
}

Test(llm_client, cancel_runs_callback_before_returning)
{
	struct got hung;
	struct canceller k = { NULL, &hung, 0, 1 };
	memset(&hung, 0, sizeof hung);
	fx_open(NULL);
	k.victim = fx_send("/hang", 0, KEY, record, &hung);
	fx_send("/ok", 0, KEY, cancel_other, &k);
	cr_assert_eq(lh_llm_in_flight(fx.llm), 2);
	cr_assert_eq(lh_loop_run(fx.loop), 0);
	cr_assert_eq(k.victim_n_after_cancel, 1);
	cr_assert_eq(hung.outcome, LH_LLM_CANCELLED);
	cr_assert_str_eq(hung.code, "cancelled");
	cr_assert_eq(lh_llm_in_flight(fx.llm), 0);
	got_release(&hung);
	fx_close();
}

Test(llm_client, cancel_from_outside_the_loop)
{
	struct got g = { 0 };
	struct lh_llm_req *r;
	memset(&g, 0, sizeof g);
	fx_open(NULL);
	r = fx_send("/hang", 1, KEY, record, &g);
	lh_llm_cancel(r);
	cr_assert_eq(g.n, 1);
	cr_assert_eq(g.outcome, LH_LLM_CANCELLED);
	cr_assert_eq(lh_llm_in_flight(fx.llm), 0);
	/* The client and its pooled handle keep working. */
	fx_one("/ok", 0, &g);
	cr_assert_eq(g.outcome, LH_LLM_OK);
	got_release(&g);
	fx_close();
}

static void free_client(struct lh_llm_req *req, const struct lh_llm_result *res, void *arg)
{
	struct got *hung = arg;
	struct lh_err e;
	struct lh_llm_call call = { .url = fx.url, .body = "{}", .body_len = 2 };
	(void)req;
	(void)res;
	lh_llm_free(fx.llm);
	/* Every other request was cancelled before lh_llm_free returned. */
	for (int i = 0; i < 3; i++)
		cr_assert_eq(hung[i].n, 1);
	cr_assert_null(lh_llm_send(fx.llm, &call, record, NULL, &e), "a closing client takes no work");
	fx.llm = NULL;
	lh_loop_stop(fx.loop);
}

Test(llm_client, free_from_a_callback)
{
	struct got hung[3];
	memset(hung, 0, sizeof hung);
	fx_open(NULL);
	for (int i = 0; i < 3; i++)
		fx_send(i == 1 ? "/stream_hang" : "/hang", i == 1, KEY, record, &hung[i]);
	fx_send("/ok", 0, KEY, free_client, hung);
	cr_assert_eq(lh_loop_run(fx.loop), 0);
	for (int i = 0; i < 3; i++) {
		cr_assert_eq(hung[i].outcome, LH_LLM_CANCELLED);
		got_release(&hung[i]);
	}
	fx_close();
}

Test(llm_client, free_with_requests_in_flight)
{
	struct got g[4];
	memset(g, 0, sizeof g);
	fx_open(NULL);
	fx_send("/ok", 0, KEY, record, &g[0]);
	fx_send("/hang", 0, KEY, record, &g[1]);
	fx_send("/stream_hang", 1, KEY, record, &g[2]);
	fx_send("/hang", 0, KEY, record, &g[3]);
	/* Run until the first one is done; the others hang. */
	fx.pending = 1;
	cr_assert_eq(lh_loop_run(fx.loop), 0);
	cr_assert_eq(g[0].outcome, LH_LLM_OK);
	cr_assert_eq(lh_llm_in_flight(fx.llm), 3);
	fx.pending = 100;
	lh_llm_free(fx.llm);
	fx.llm = NULL;
	for (int i = 1; i < 4; i++) {
		cr_assert_eq(g[i].n, 1);
		cr_assert_eq(g[i].outcome, LH_LLM_CANCELLED);
	}
	for (int i = 0; i < 4; i++)
		got_release(&g[i]);
	fx_close();
}

/* ---- connection reuse and throughput ---- */

struct chain {
	int left, ok;
	int concurrency;
	const char *path;
	int stream;
};

static void chain_next(struct lh_llm_req *req, const struct lh_llm_result *res, void *arg)
{
	struct chain *ch = arg;
	(void)req;
	if (res->outcome == LH_LLM_OK)
		ch->ok++;
	else
		cr_log_error("chain: %s: %s", res->error_code, res->error_message);
	fx.pending--;
	if (ch->left > 0) {
		ch->left--;
		fx_send(ch->path, ch->stream, KEY, chain_next, ch);
	} else if (fx.pending == 0) {
		lh_loop_stop(fx.loop);
	}
}

static void chain_run(struct chain *ch, int total)
{
	ch->left = total - ch->concurrency;
	ch->ok = 0;
	for (int i = 0; i < ch->concurrency; i++)
		fx_send(ch->path, ch->stream, KEY, chain_next, ch);
	cr_assert_eq(lh_loop_run(fx.loop), 0);
	cr_assert_eq(ch->ok, total);
}

Test(llm_client, keep_alive_reuses_one_connection)
{
	struct chain ch = { 0, 0, 1, "/ok", 0 };
	fx_open(NULL);
	chain_run(&ch, 300);
	ch.path = "/stream";
	ch.stream = 1;
	chain_run(&ch, 100);
	cr_assert_eq(fx.srv.accepted, 1, "accepted %d connections", fx.srv.accepted);
	cr_assert_eq(fx.srv.requests, 400);
	fx_close();
}

Test(llm_client, max_connections_is_respected)
{
	struct lh_llm_opts o = { .max_connections = 4 };
	struct chain ch = { 0, 0, 40, "/ok", 0 };
	fx_open(&o);
	chain_run(&ch, 400);
	cr_assert(fx.srv.accepted <= 4, "accepted %d connections", fx.srv.accepted);
	cr_assert_eq(fx.srv.requests, 400);
	fx_close();
}

static double thread_cpu(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

Test(llm_client, per_request_overhead)
{
	struct lh_llm_opts o = { .max_connections = 16 };
	struct chain ch = { 0, 0, 16, "/ok", 0 };
	int n = 20000;
	double t0, t1;
	fx_open(&o);
	chain_run(&ch, 500); /* warm up: connections, pooled handles */
	t0 = thread_cpu();
	chain_run(&ch, n);
	t1 = thread_cpu();
	cr_log_info("client cpu per request: %.1f us (%d requests, 16 in flight)", (t1 - t0) / n * 1e6, n);
	fx_close();
}
