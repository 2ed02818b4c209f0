/*
 * llm layer: the HTTP transport under every API flavour (flavour.h), and
 * the client's public face (llm.h). libcurl's multi socket interface
 * driven by the process's event loop: curl tells us which sockets to watch
 * and when to wake it (on_socket, on_curl_timer); the loop tells curl what
 * happened (on_io, on_timeout); finished transfers are collected from
 * curl_multi_info_read and their callbacks run after curl has returned.
 *
 * The transport moves bytes and knows no API: it sends a POST with the
 * flavour's headers, keeps the status, Content-Type and Retry-After,
 * buffers a plain body up to max_response_bytes, hands a streamed body to
 * the flavour's feed, runs the connect, request and first-token timeouts,
 * and gives the flavour the raw outcome (struct llm_raw) to turn into an
 * lh_llm_result. The OpenAI flavour (openai.c) is the client's flavour.
 *
 * Requests are pooled with their easy handle, buffers, header list,
 * first-token timer and flavour state, so that in the steady state a
 * request costs no allocation of ours: curl keeps options between
 * transfers, and only what changed (URL, body, headers) is set again.
 *
 * Callback discipline (libuv's rule: never free what a pending callback
 * can reach):
 *  - a user callback never runs inside a curl callback or inside
 *    lh_llm_send; failures known at send time wait for a 0 ms timer;
 *  - every entry point that may run user callbacks holds c->busy, and
 *    lh_llm_free called from a callback only marks the client; the
 *    outermost entry point frees it when it unwinds;
 *  - a request's memory goes back to the pool only after its callback
 *    returned.
 */
#include "llm/llm.h"
#include "llm/flavour.h"
#include "util/mem.h"
#include "util/time.h"

#include <curl/curl.h>
#include <pthread.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define DEF_MAX_CONNECTIONS 64
#define DEF_CONNECT_TIMEOUT_MS 10000
#define DEF_REQUEST_TIMEOUT_MS 600000
#define DEF_FIRST_TOKEN_TIMEOUT_MS 60000
#define DEF_MAX_RESPONSE_BYTES ((size_t)16 << 20)
/* Pooled buffers larger than this are released, so that one huge answer
 * does not pin its memory for the life of the process. */
#define KEEP_BUF_BYTES ((size_t)64 << 10)
/* Keys shorter than this are not scrubbed from error bodies: replacing
 * every "ab" would mangle the body for no gain. */
#define SCRUB_MIN_KEY 8

enum req_state {
	REQ_IDLE,    /* in the pool */
	REQ_ACTIVE,  /* in curl's multi */
	REQ_DONE,    /* out of curl, waiting for its callback */
	REQ_CALLING  /* its callback is running */
};

struct req_list {
	struct lh_llm_req *head, *tail;
};

struct lh_llm_req {
	struct lh_llm *c;
	CURL *easy;
	struct lh_llm_req *prev, *next;
	enum req_state state;
	lh_llm_cb cb;
	void *arg;
	/* Kept between requests: set again only when they change. */
	const struct llm_flavour *fl;
	void *fl_state;
	struct curl_slist *hdrs;
	int hdrs_stream;
	struct lh_buf url;
	struct lh_timer *ftt;
	long timeout_ms;   /* CURLOPT_TIMEOUT_MS as last set on the handle */
	long connect_ms;   /* CURLOPT_CONNECTTIMEOUT_MS as last set on the handle */
	long ftt_ms;       /* this request's first-token timeout */
	/* This request. */
	int stream;     /* asked for */
	int sse;        /* the answer is being fed to the flavour as a stream */
	int got_body;
	enum llm_abort abort;
	CURLcode curl_code;
	long os_errno;  /* errno of a failed connect (CURLINFO_OS_ERRNO), 0 when none */
	int status;
	int ct_json;
	double retry_after;
	double started_at, first_byte_at;
	struct lh_buf body;
	char errbuf[CURL_ERROR_SIZE];
	char transport_msg[CURL_ERROR_SIZE + 128];
	char message[640];
};

/* What curl wants for a socket, and what the loop has been told. */
struct sock_state {
	unsigned char want, applied, ours;
};

struct lh_llm {
	struct lh_loop *loop;
	CURLM *multi;
	struct lh_timer *timer; /* curl's own timeout */
	struct lh_timer *defer; /* callbacks that must not run inside lh_llm_send */
	struct lh_llm_opts o;
	const struct llm_flavour *fl; /* every request's flavour */
	struct req_list active, done, idle;
	size_t in_flight, n_idle, pool_max;
	struct sock_state *socks;
	size_t nsocks;
	int busy, closing, free_pending;
};

/* ---- lists ---- */

static void list_push(struct req_list *l, struct lh_llm_req *r)
{
	r->next = NULL;
	r->prev = l->tail;
	if (l->tail)
		l->tail->next = r;
	else
		l->head = r;
	l->tail = r;
}

static void list_remove(struct req_list *l, struct lh_llm_req *r)
{
	if (r->prev)
		r->prev->next = r->next;
	else
		l->head = r->next;
	if (r->next)
		r->next->prev = r->prev;
	else
		l->tail = r->prev;
	r->prev = r->next = NULL;
}

/* ---- sockets: curl -> loop ---- */

static void on_io(struct lh_loop *loop, int fd, int events, void *arg);

static struct sock_state *sock_get(struct lh_llm *c, int fd)
{
	if ((size_t)fd >= c->nsocks) {
		size_t n = c->nsocks ? c->nsocks : 64;
		while (n <= (size_t)fd)
			n *= 2;
		c->socks = lh_xrealloc(c->socks, n * sizeof *c->socks);
		memset(c->socks + c->nsocks, 0, (n - c->nsocks) * sizeof *c->socks);
		c->nsocks = n;
	}
	return &c->socks[fd];
}

static void sock_unwatch(struct lh_llm *c, int fd, struct sock_state *s)
{
	if (s->applied)
		lh_loop_unwatch(c->loop, fd);
	s->applied = 0;
}

static int on_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
	struct lh_llm *c = userp;
	struct sock_state *s = sock_get(c, fd);
	int want = 0;
	(void)easy;
	(void)socketp;
	if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
		want |= LH_READ;
	if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
		want |= LH_WRITE;
	s->want = (unsigned char)want;
	if (want == s->applied)
		return 0;
	if (!want) {
		/* A keep-alive connection going idle stays registered for
		 * reading: the next request on it usually asks for exactly
		 * that, which then costs no epoll_ctl. Only sockets we opened
		 * are kept, since on_close tells us before they go away. */
		if (s->ours && s->applied == LH_READ)
			return 0;
		sock_unwatch(c, fd, s);
		return 0;
	}
	if (lh_loop_watch(c->loop, fd, want, on_io, c) != 0)
		return -1;
	s->applied = (unsigned char)want;
	return 0;
}

static curl_socket_t on_open(void *clientp, curlsocktype purpose, struct curl_sockaddr *a)
{
	struct lh_llm *c = clientp;
	/* Close-on-exec: exec steps must not inherit connections. */
	int fd = socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
	(void)purpose;
	if (fd < 0)
		return CURL_SOCKET_BAD;
	sock_get(c, fd)->ours = 1;
	return fd;
}

static int on_close(void *clientp, curl_socket_t fd)
{
	struct lh_llm *c = clientp;
	if ((size_t)fd < c->nsocks) {
		sock_unwatch(c, fd, &c->socks[fd]);
		memset(&c->socks[fd], 0, sizeof c->socks[fd]);
	}
	return close(fd);
}

static int on_curl_timer(CURLM *multi, long ms, void *userp)
{
	struct lh_llm *c = userp;
	(void)multi;
	if (ms < 0)
		lh_timer_stop(c->timer);
	else
		lh_timer_start(c->timer, ms);
	return 0;
}

/* ---- completion ---- */

static void destroy(struct lh_llm *c);
static void build_result(struct lh_llm_req *r, struct lh_llm_result *res);

/* Ends an entry point that may have run user callbacks; frees the client
 * when lh_llm_free was called from one of them. c may be gone after. */
static void leave(struct lh_llm *c)
{
	if (--c->busy == 0 && c->free_pending)
		destroy(c);
}

static void buf_recycle(struct lh_buf *b)
{
	if (b->cap > KEEP_BUF_BYTES)
		lh_buf_release(b);
	else
		lh_buf_clear(b);
}

static void req_free(struct lh_llm_req *r);

static void recycle(struct lh_llm_req *r)
{
	struct lh_llm *c = r->c;
	r->state = REQ_IDLE;
	r->cb = NULL;
	r->arg = NULL;
	buf_recycle(&r->body);
	r->fl->state_trim(r->fl_state);
	if (c->n_idle >= c->pool_max) {
		req_free(r);
		return;
	}
	list_push(&c->idle, r);
	c->n_idle++;
}

/* Runs r's callback and returns r to the pool. r is on no list. */
static void finish(struct lh_llm_req *r)
{
	struct lh_llm_result res;
	lh_timer_stop(r->ftt);
	build_result(r, &res);
	r->state = REQ_CALLING;
	r->c->in_flight--;
	r->cb(r, &res, r->arg);
	recycle(r);
}

static void run_done(struct lh_llm *c)
{
	struct lh_llm_req *r;
	while ((r = c->done.head) != NULL) {
		list_remove(&c->done, r);
		finish(r);
	}
}

/* Collects every finished transfer first, then runs their callbacks: a
 * callback may add or remove handles, which must not interleave with
 * reading curl's message queue. */
static void drain(struct lh_llm *c)
{
	CURLMsg *m;
	int left;
	while ((m = curl_multi_info_read(c->multi, &left)) != NULL) {
		struct lh_llm_req *r;
		char *priv = NULL;
		CURL *easy = m->easy_handle;
		CURLcode rc = m->data.result;
		if (m->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(easy, CURLINFO_PRIVATE, &priv);
		r = (struct lh_llm_req *)(void *)priv;
		curl_multi_remove_handle(c->multi, easy);
		r->curl_code = rc;
		r->os_errno = 0;
		if (rc != CURLE_OK && curl_easy_getinfo(easy, CURLINFO_OS_ERRNO, &r->os_errno) != CURLE_OK)
			r->os_errno = 0;
		list_remove(&c->active, r);
		list_push(&c->done, r);
		r->state = REQ_DONE;
	}
	run_done(c);
}

static void on_io(struct lh_loop *loop, int fd, int events, void *arg)
{
	struct lh_llm *c = arg;
	struct sock_state *s = &c->socks[fd];
	int flags = 0, running;
	if (!s->want) {
		/* An idle connection stirred: the server closed it or sent
		 * junk. curl finds out when it next picks the connection. */
		sock_unwatch(c, fd, s);
		return;
	}
	if (events & LH_READ)
		flags |= CURL_CSELECT_IN;
	if (events & LH_WRITE)
		flags |= CURL_CSELECT_OUT;
	(void)loop;
	c->busy++;
	curl_multi_socket_action(c->multi, fd, flags, &running);
	drain(c);
	leave(c);
}

static void on_timeout(struct lh_loop *loop, struct lh_timer *t, void *arg)
{
	struct lh_llm *c = arg;
	int running;
	(void)loop;
	(void)t;
	c->busy++;
	curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	drain(c);
	leave(c);
}

static void on_defer(struct lh_loop *loop, struct lh_timer *t, void *arg)
{
	struct lh_llm *c = arg;
	(void)loop;
	(void)t;
	c->busy++;
	run_done(c);
	leave(c);
}

/* Takes r out of curl and runs its callback now (cancel, first-token
 * timeout). Only from outside curl's callbacks. */
static void end_now(struct lh_llm_req *r, enum llm_abort why)
{
	struct lh_llm *c = r->c;
	if (r->state == REQ_ACTIVE) {
		curl_multi_remove_handle(c->multi, r->easy);
		list_remove(&c->active, r);
	} else if (r->state == REQ_DONE) {
		list_remove(&c->done, r);
	} else {
		return;
	}
	r->abort = why;
	c->busy++;
	finish(r);
	leave(c);
}

static void on_first_token(struct lh_loop *loop, struct lh_timer *t, void *arg)
{
	(void)loop;
	(void)t;
	end_now(arg, LLM_ABORT_FIRST_TOKEN);
}

/* ---- response: headers ---- */

static void status_line(struct lh_llm_req *r, const char *p, size_t len)
{
	const char *sp = memchr(p, ' ', len);
	int status = 0;
	/* Each response (a 100 Continue, then the real one) starts afresh. */
	r->retry_after = -1;
	r->ct_json = 0;
	r->fl->response_start(r->fl_state);
	if (sp) {
		const char *d = sp + 1, *end = p + len;
		for (int i = 0; i < 3 && d < end && *d >= '0' && *d <= '9'; i++, d++)
			status = status * 10 + (*d - '0');
	}
	r->status = status;
}

static int hdr_is(const char *name, size_t n, const char *want)
{
	return strlen(want) == n && strncasecmp(name, want, n) == 0;
}

/* What HTTP itself says; the rest is the flavour's. */
static void header_field(struct lh_llm_req *r, const char *name, size_t nl, const char *v, size_t vl)
{
	char tmp[128];
	if (hdr_is(name, nl, "content-type")) {
		r->ct_json = vl >= 16 && strncasecmp(v, "application/json", 16) == 0;
	} else if (hdr_is(name, nl, "retry-after")) {
		double secs;
		if (vl < sizeof tmp) {
			memcpy(tmp, v, vl);
			tmp[vl] = '\0';
			if (lh_retry_after_parse(tmp, lh_wall(), &secs) == 0)
				r->retry_after = secs;
		}
	} else {
		r->fl->header(r->fl_state, name, nl, v, vl);
	}
}

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
	struct lh_llm_req *r = ud;
	size_t len = size * n, nl, vl;
	const char *colon, *v;
	if (len >= 5 && memcmp(p, "HTTP/", 5) == 0) {
		status_line(r, p, len);
		return len;
	}
	colon = memchr(p, ':', len);
	if (!colon)
		return len;
	nl = (size_t)(colon - p);
	v = colon + 1;
	vl = len - nl - 1;
	while (vl && (*v == ' ' || *v == '\t')) {
		v++;
		vl--;
	}
	while (vl && (v[vl - 1] == '\r' || v[vl - 1] == '\n' || v[vl - 1] == ' ' || v[vl - 1] == '\t'))
		vl--;
	header_field(r, p, nl, v, vl);
	return len;
}

/* ---- response: body ---- */

static void start_body(struct lh_llm_req *r)
{
	r->got_body = 1;
	r->first_byte_at = lh_wall();
	/* An error status, or a server that ignored the request to stream,
	 * answers with plain JSON, which is reported as it is. */
	r->sse = r->stream && r->status >= 200 && r->status <= 299 && !r->ct_json;
	if (!r->sse)
		lh_timer_stop(r->ftt);
}

static size_t on_write(char *p, size_t size, size_t n, void *ud)
{
	struct lh_llm_req *r = ud;
	size_t len = size * n;
	if (!r->got_body)
		start_body(r);
	if (r->sse) {
		int rc = r->fl->feed(r->fl_state, p, len);
		if (r->fl->has_data(r->fl_state))
			lh_timer_stop(r->ftt);
		if (rc) {
			r->abort = rc < 0 ? LLM_ABORT_TOO_LARGE : LLM_ABORT_FLAVOUR;
			return 0; /* curl ends the transfer with CURLE_WRITE_ERROR */
		}
		return len;
	}
	if (lh_buf_append(&r->body, p, len)) {
		r->abort = LLM_ABORT_TOO_LARGE;
		return 0;
	}
	return len;
}

/* ---- result ---- */

/* curl's own buffer says more than curl_easy_strerror (the host and
 * port); the system's errno says why a connect failed ("Connection
 * refused"), which curl's text leaves out in some versions. */
static const char *transport_message(struct lh_llm_req *r)
{
	r->transport_msg[0] = '\0';
	if (r->curl_code != CURLE_OK && r->errbuf[0] && r->os_errno > 0 &&
	    !strstr(r->errbuf, strerror((int)r->os_errno)))
		snprintf(r->transport_msg, sizeof r->transport_msg, "transport error: %s (%s)", r->errbuf,
			 strerror((int)r->os_errno));
	else if (r->curl_code != CURLE_OK && r->errbuf[0])
		snprintf(r->transport_msg, sizeof r->transport_msg, "transport error: %s", r->errbuf);
	return r->transport_msg;
}

/* The verdict on the transport's own aborts; LLM_ABORT_FLAVOUR and
 * LLM_ABORT_NONE are the flavour's to judge. */
static void aborted_result(struct lh_llm_req *r, struct lh_llm_result *res)
{
	struct lh_llm *c = r->c;
	switch (r->abort) {
	case LLM_ABORT_CANCELLED:
		res->outcome = LH_LLM_CANCELLED;
		res->error_code = "cancelled";
		snprintf(r->message, sizeof r->message, "the request was cancelled");
		break;
	case LLM_ABORT_FIRST_TOKEN:
		res->outcome = LH_LLM_TRANSIENT;
		res->error_code = "first_token_timeout";
		snprintf(r->message, sizeof r->message, "no data within %ld ms of sending", r->ftt_ms);
		break;
	case LLM_ABORT_TOO_LARGE:
		res->outcome = LH_LLM_PERMANENT;
		res->error_code = "response_too_large";
		snprintf(r->message, sizeof r->message, "the response is larger than %zu bytes", c->o.max_response_bytes);
		break;
	case LLM_ABORT_START:
		res->outcome = LH_LLM_TRANSIENT;
		res->error_code = "internal";
		break; /* written by lh_llm_send */
	case LLM_ABORT_FLAVOUR:
	case LLM_ABORT_NONE:
		break;
	}
}

/* The key the request was sent with, borrowed from its header list. */
static const char *req_key(const struct lh_llm_req *r)
{
	const char *pre = r->fl ? r->fl->auth_prefix : NULL;
	size_t pl = pre ? strlen(pre) : 0;
	if (!pre)
		return NULL;
	for (const struct curl_slist *h = r->hdrs; h; h = h->next)
		if (strncmp(h->data, pre, pl) == 0)
			return h->data + pl;
	return NULL;
}

static void scrub(char *s, size_t n, const char *key, size_t kl)
{
	char *p;
	while (n >= kl && (p = memmem(s, n, key, kl)) != NULL) {
		memset(p, '*', kl);
		n -= (size_t)(p - s) + kl;
		s = p + kl;
	}
}

/* Some servers echo the key in their error ("incorrect API key: sk-...");
 * the message and body go to the store and logs, so the key is masked. */
static void scrub_key(struct lh_llm_req *r, struct lh_llm_result *res)
{
	const char *key = req_key(r);
	size_t kl = key ? strlen(key) : 0;
	if (kl < SCRUB_MIN_KEY)
		return;
	scrub(r->message, strlen(r->message), key, kl);
	if (res->body == r->body.data && r->body.data)
		scrub(r->body.data, r->body.len, key, kl);
}

static void build_result(struct lh_llm_req *r, struct lh_llm_result *res)
{
	struct llm_raw raw;
	memset(res, 0, sizeof *res);
	res->status = r->status;
	res->os_errno = r->curl_code != CURLE_OK ? (int)r->os_errno : 0;
	res->retry_after = r->retry_after;
	res->body = "";
	res->prompt_tokens = res->completion_tokens = -1;
	res->started_at = r->started_at;
	res->first_byte_at = r->first_byte_at;
	res->ended_at = lh_wall();
	res->ratelimit_remaining_requests = res->ratelimit_remaining_tokens = -1;
	res->ratelimit_reset_requests = res->ratelimit_reset_tokens = -1;
	aborted_result(r, res);
	memset(&raw, 0, sizeof raw);
	raw.abort = r->abort;
	raw.status = r->status;
	raw.curl_code = (int)r->curl_code;
	raw.streamed = r->sse;
	raw.body = r->body.data ? r->body.data : "";
	raw.body_len = r->body.len;
	raw.transport_message = transport_message(r);
	r->fl->result(r->fl_state, &raw, res, r->message, sizeof r->message);
	if (res->outcome != LH_LLM_OK) {
		res->error_message = r->message;
		scrub_key(r, res);
	}
}

/* ---- requests ---- */

static void req_free(struct lh_llm_req *r)
{
	const char *key = req_key(r);
	/* The key leaves no copy behind in freed memory. */
	if (key)
		explicit_bzero((char *)key, strlen(key));
	curl_slist_free_all(r->hdrs);
	curl_easy_cleanup(r->easy);
	lh_timer_free(r->ftt);
	lh_buf_release(&r->url);
	lh_buf_release(&r->body);
	if (r->fl_state)
		r->fl->state_free(r->fl_state);
	lh_free(r);
}

/* Options that stay the same for every request of this client. */
static int req_setup(struct lh_llm *c, struct lh_llm_req *r)
{
	CURL *h = r->easy;
	CURLcode rc = CURLE_OK;
	rc |= curl_easy_setopt(h, CURLOPT_PRIVATE, r);
	rc |= curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_write);
	rc |= curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
	rc |= curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
	rc |= curl_easy_setopt(h, CURLOPT_HEADERDATA, r);
	rc |= curl_easy_setopt(h, CURLOPT_ERRORBUFFER, r->errbuf);
	rc |= curl_easy_setopt(h, CURLOPT_OPENSOCKETFUNCTION, on_open);
	rc |= curl_easy_setopt(h, CURLOPT_OPENSOCKETDATA, c);
	rc |= curl_easy_setopt(h, CURLOPT_CLOSESOCKETFUNCTION, on_close);
	rc |= curl_easy_setopt(h, CURLOPT_CLOSESOCKETDATA, c);
	rc |= curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	rc |= curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
	rc |= curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
	rc |= curl_easy_setopt(h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
	rc |= curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	rc |= curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, c->o.connect_timeout_ms);
	rc |= curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, c->o.request_timeout_ms);
	r->timeout_ms = c->o.request_timeout_ms;
	r->connect_ms = c->o.connect_timeout_ms;
	rc |= curl_easy_setopt(h, CURLOPT_USERAGENT, c->o.user_agent ? c->o.user_agent : "longhaul");
	return rc == CURLE_OK ? 0 : -1;
}

static struct lh_llm_req *req_new(struct lh_llm *c)
{
	struct lh_llm_req *r = lh_xcalloc(1, sizeof *r);
	size_t max = c->o.max_response_bytes;
	r->c = c;
	lh_buf_init(&r->url, 0);
	lh_buf_init(&r->body, max);
	r->fl = c->fl;
	r->fl_state = r->fl->state_new(max);
	r->ftt = lh_timer_new(c->loop, on_first_token, r);
	r->easy = curl_easy_init();
	if (!r->easy || req_setup(c, r) != 0) {
		req_free(r);
		return NULL;
	}
	return r;
}

/* Whether r's header list is the one for (key, stream). */
static int hdrs_match(const struct lh_llm_req *r, const char *key, int stream)
{
	const char *have = req_key(r);
	if (!r->hdrs || r->hdrs_stream != stream)
		return 0;
	if (!key || !*key || !r->fl->auth_prefix)
		return !have;
	return have && strcmp(have, key) == 0;
}

static int build_hdrs(struct lh_llm_req *r, const char *key, int stream)
{
	struct curl_slist *l = NULL, *t;
	const char *lines[] = {
		"Content-Type: application/json",
		stream ? r->fl->accept_stream : r->fl->accept,
		"Expect:", /* no 100-continue round trip */
	};
	for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++) {
		if (!(t = curl_slist_append(l, lines[i])))
			goto fail;
		l = t;
	}
	if (key && *key && r->fl->auth_prefix) {
		struct lh_buf b;
		lh_buf_init(&b, 0);
		if (lh_buf_puts(&b, r->fl->auth_prefix) || lh_buf_puts(&b, key))
			t = NULL;
		else
			t = curl_slist_append(l, b.data);
		explicit_bzero(b.data, b.len);
		lh_buf_release(&b);
		if (!t)
			goto fail;
		l = t;
	}
	if (r->hdrs) {
		const char *old = req_key(r);
		if (old)
			explicit_bzero((char *)old, strlen(old));
		curl_slist_free_all(r->hdrs);
	}
	r->hdrs = l;
	r->hdrs_stream = stream;
	return curl_easy_setopt(r->easy, CURLOPT_HTTPHEADER, l) == CURLE_OK ? 0 : -1;
fail:
	curl_slist_free_all(l);
	return -1;
}

/* Sets what differs between requests. */
static int req_prepare(struct lh_llm_req *r, const struct lh_llm_call *call, int stream, struct lh_err *e)
{
	size_t ul = strlen(call->url);
	if (r->url.len != ul || memcmp(r->url.data, call->url, ul) != 0) {
		lh_buf_clear(&r->url);
		if (curl_easy_setopt(r->easy, CURLOPT_URL, call->url) != CURLE_OK ||
		    lh_buf_append(&r->url, call->url, ul) != 0) {
			lh_buf_clear(&r->url);
			return lh_err_set(e, LH_EINPUT, "could not use url \"%s\"", call->url);
		}
	}
	{
		/* Per-request timeouts (a job's own), set on the pooled handle only when they change. */
		long t = call->request_timeout_ms > 0 ? call->request_timeout_ms : r->c->o.request_timeout_ms;
		if (t != r->timeout_ms) {
			if (curl_easy_setopt(r->easy, CURLOPT_TIMEOUT_MS, t) != CURLE_OK)
				return lh_err_set(e, LH_EINTERNAL, "could not set the request timeout");
			r->timeout_ms = t;
		}
		r->ftt_ms = call->first_token_timeout_ms > 0 ? call->first_token_timeout_ms :
							   r->c->o.first_token_timeout_ms;
		t = call->connect_timeout_ms > 0 ? call->connect_timeout_ms : r->c->o.connect_timeout_ms;
		if (t != r->connect_ms) {
			if (curl_easy_setopt(r->easy, CURLOPT_CONNECTTIMEOUT_MS, t) != CURLE_OK)
				return lh_err_set(e, LH_EINTERNAL, "could not set the connect timeout");
			r->connect_ms = t;
		}
	}
	if (!hdrs_match(r, call->api_key, stream) && build_hdrs(r, call->api_key, stream) != 0)
		return lh_err_set(e, LH_ENOMEM, "could not build request headers");
	if (curl_easy_setopt(r->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)call->body_len) != CURLE_OK ||
	    curl_easy_setopt(r->easy, CURLOPT_POSTFIELDS, call->body) != CURLE_OK)
		return lh_err_set(e, LH_EINTERNAL, "could not set the request body");
	return 0;
}

static void req_reset(struct lh_llm_req *r, int stream, lh_llm_cb cb, void *arg)
{
	r->cb = cb;
	r->arg = arg;
	r->stream = stream;
	r->sse = r->got_body = 0;
	r->abort = LLM_ABORT_NONE;
	r->curl_code = CURLE_OK;
	r->os_errno = 0;
	r->status = 0;
	r->ct_json = 0;
	r->retry_after = -1;
	r->errbuf[0] = '\0';
	r->message[0] = '\0';
	r->started_at = lh_wall();
	r->first_byte_at = 0;
	lh_buf_clear(&r->body);
	r->fl->state_reset(r->fl_state);
}

static struct lh_llm_req *req_take(struct lh_llm *c)
{
	struct lh_llm_req *r = c->idle.head;
	if (!r)
		return req_new(c);
	list_remove(&c->idle, r);
	c->n_idle--;
	return r;
}

static void req_return(struct lh_llm *c, struct lh_llm_req *r)
{
	list_push(&c->idle, r);
	c->n_idle++;
}

struct lh_llm_req *lh_llm_send(struct lh_llm *c, const struct lh_llm_call *call, lh_llm_cb cb, void *arg,
			       struct lh_err *e)
{
	struct lh_llm_req *r;
	CURLMcode mc;
	int stream;
	if (c->closing) {
		lh_err_set(e, LH_ESTATE, "could not send: the llm client is shutting down");
		return NULL;
	}
	if (!call || !call->url || !call->body || !cb) {
		lh_err_set(e, LH_EINPUT, "could not send: url, body and callback are required");
		return NULL;
	}
	if (!(r = req_take(c))) {
		lh_err_set(e, LH_ENOMEM, "could not create a curl handle");
		return NULL;
	}
	/* The caller may insist; otherwise the flavour reads the body. */
	stream = call->stream || r->fl->wants_stream(call->body, call->body_len);
	if (req_prepare(r, call, stream, e) != 0) {
		req_return(c, r);
		return NULL;
	}
	req_reset(r, stream, cb, arg);
	c->in_flight++;
	mc = curl_multi_add_handle(c->multi, r->easy);
	if (mc != CURLM_OK) {
		/* The callback must not run inside lh_llm_send. */
		snprintf(r->message, sizeof r->message, "could not start the request: %s", curl_multi_strerror(mc));
		r->abort = LLM_ABORT_START;
		r->state = REQ_DONE;
		list_push(&c->done, r);
		lh_timer_start(c->defer, 0);
		return r;
	}
	r->state = REQ_ACTIVE;
	list_push(&c->active, r);
	if (r->stream && r->ftt_ms > 0)
		lh_timer_start(r->ftt, r->ftt_ms);
	return r;
}

void lh_llm_cancel(struct lh_llm_req *req)
{
	if (req)
		end_now(req, LLM_ABORT_CANCELLED);
}

size_t lh_llm_in_flight(const struct lh_llm *c)
{
	return c->in_flight;
}

/* ---- the client ---- */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;

static void curl_init(void)
{
	curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static void apply_defaults(struct lh_llm_opts *o, const struct lh_llm_opts *in)
{
	memset(o, 0, sizeof *o);
	if (in)
		*o = *in;
	if (o->max_connections <= 0)
		o->max_connections = DEF_MAX_CONNECTIONS;
	if (o->connect_timeout_ms <= 0)
		o->connect_timeout_ms = DEF_CONNECT_TIMEOUT_MS;
	if (o->request_timeout_ms <= 0)
		o->request_timeout_ms = DEF_REQUEST_TIMEOUT_MS;
	if (o->first_token_timeout_ms <= 0)
		o->first_token_timeout_ms = DEF_FIRST_TOKEN_TIMEOUT_MS;
	if (!o->max_response_bytes)
		o->max_response_bytes = DEF_MAX_RESPONSE_BYTES;
}

static int multi_setup(struct lh_llm *c)
{
	CURLM *m = c->multi;
	CURLMcode rc = CURLM_OK;
	rc |= curl_multi_setopt(m, CURLMOPT_SOCKETFUNCTION, on_socket);
	rc |= curl_multi_setopt(m, CURLMOPT_SOCKETDATA, c);
	rc |= curl_multi_setopt(m, CURLMOPT_TIMERFUNCTION, on_curl_timer);
	rc |= curl_multi_setopt(m, CURLMOPT_TIMERDATA, c);
	rc |= curl_multi_setopt(m, CURLMOPT_MAX_TOTAL_CONNECTIONS, c->o.max_connections);
	rc |= curl_multi_setopt(m, CURLMOPT_MAX_HOST_CONNECTIONS, c->o.max_connections);
	rc |= curl_multi_setopt(m, CURLMOPT_MAXCONNECTS, c->o.max_connections);
	rc |= curl_multi_setopt(m, CURLMOPT_PIPELINING, (long)CURLPIPE_NOTHING);
	return rc == CURLM_OK ? 0 : -1;
}

struct lh_llm *lh_llm_new(struct lh_loop *loop, const struct lh_llm_opts *o, struct lh_err *e)
{
	struct lh_llm *c;
	pthread_once(&curl_once, curl_init);
	if (curl_init_rc != CURLE_OK) {
		lh_err_set(e, LH_EINTERNAL, "could not initialise libcurl: %s", curl_easy_strerror(curl_init_rc));
		return NULL;
	}
	c = lh_xcalloc(1, sizeof *c);
	c->loop = loop;
	c->fl = &llm_openai;
	apply_defaults(&c->o, o);
	c->pool_max = (size_t)c->o.max_connections * 2 + 16;
	c->timer = lh_timer_new(loop, on_timeout, c);
	c->defer = lh_timer_new(loop, on_defer, c);
	c->multi = curl_multi_init();
	if (!c->multi || multi_setup(c) != 0) {
		lh_err_set(e, LH_EINTERNAL, "could not create a curl multi handle");
		destroy(c);
		return NULL;
	}
	return c;
}

static void destroy(struct lh_llm *c)
{
	struct lh_llm_req *r;
	/* Connections close here, through on_close, while c is whole. */
	if (c->multi)
		curl_multi_cleanup(c->multi);
	for (size_t fd = 0; fd < c->nsocks; fd++)
		sock_unwatch(c, (int)fd, &c->socks[fd]);
	while ((r = c->idle.head) != NULL) {
		list_remove(&c->idle, r);
		req_free(r);
	}
	lh_timer_free(c->timer);
	lh_timer_free(c->defer);
	lh_free(c->socks);
	lh_free(c);
}

void lh_llm_free(struct lh_llm *c)
{
	if (!c || c->closing)
		return;
	c->closing = 1;
	c->busy++;
	while (c->active.head)
		lh_llm_cancel(c->active.head);
	while (c->done.head)
		lh_llm_cancel(c->done.head);
	c->free_pending = 1;
	leave(c);
}

