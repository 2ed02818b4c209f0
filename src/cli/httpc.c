/*
 * cli layer: the blocking HTTP client of the daemon's commands (see
 * httpc.h), over libcurl's easy interface. This file and src/llm/ are the
 * only places that include curl.h: the commands in client*.c see requests
 * and answers, never libcurl.
 *
 * Plain requests run with curl_easy_perform on one easy handle that is
 * reset between requests (which keeps its connection alive). A stream (a
 * request with a tick callback) gets its own easy handle driven by a multi
 * handle in a poll loop, so that the tick runs outside libcurl's callbacks
 * and may itself make plain requests: libcurl must never be called from
 * inside one of its callbacks.
 */
#include "cli/httpc.h"
#include "util/mem.h"

#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>

#define HTTPC_MAX_BODY (16u << 20)   /* default cap on a buffered answer */
#define HTTPC_MAX_ERRBODY (64u << 10) /* cap on an error body beside a chunk callback */
#define HTTPC_TICK_MS 100

struct lh_httpc {
	char *base;                     /* owned, without a trailing "/" */
	char *auth;                     /* owned "Authorization: Bearer ..." or NULL */
	CURL *easy;                     /* for plain requests */
	CURLM *multi;                   /* for streams; created on first use */
	volatile sig_atomic_t *cancel;  /* borrowed, or NULL */
};

/* One transfer's state, reached from libcurl's callbacks. */
struct xfer {
	struct lh_httpc *c;
	const struct lh_http_req *rq;
	struct lh_http_resp *resp;
	CURL *h;
	int stopped;   /* the chunk callback asked to stop */
	int toobig;    /* the body passed its cap */
	int readerr;   /* the body file could not be read */
};

static int init_count;

struct lh_httpc *lh_httpc_new(const char *base_url, const char *token, volatile sig_atomic_t *cancel)
{
	struct lh_httpc *c;
	size_t n;
	if (init_count == 0 && curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		return NULL;
	init_count++;
	c = lh_xcalloc(1, sizeof *c);
	c->base = lh_xstrdup(base_url);
	n = strlen(c->base);
	while (n > 0 && c->base[n - 1] == '/')
		c->base[--n] = '\0';
	if (token && *token) {
		n = strlen(token) + 32;
		c->auth = lh_xmalloc(n);
		snprintf(c->auth, n, "Authorization: Bearer %s", token);
	}
	c->cancel = cancel;
	c->easy = curl_easy_init();
	if (!c->easy) {
		lh_httpc_free(c);
		return NULL;
	}
	return c;
}

void lh_httpc_free(struct lh_httpc *c)
{
	if (!c)
		return;
	if (c->easy)
		curl_easy_cleanup(c->easy);
	if (c->multi)
		curl_multi_cleanup(c->multi);
	if (c->auth) {
		/* The token should not linger in freed memory. */
		memset(c->auth, 0, strlen(c->auth));
		lh_free(c->auth);
	}
	lh_free(c->base);
	lh_free(c);
	if (--init_count == 0)
		curl_global_cleanup();
}

void lh_http_resp_init(struct lh_http_resp *r)
{
	memset(r, 0, sizeof *r);
	lh_buf_init(&r->body, 0);
}

void lh_http_resp_release(struct lh_http_resp *r)
{
	lh_buf_release(&r->body);
}

static size_t on_write(char *p, size_t size, size_t nmemb, void *arg)
{
	struct xfer *x = arg;
	size_t n = size * nmemb;
	long status = 0;
	curl_easy_getinfo(x->h, CURLINFO_RESPONSE_CODE, &status);
	x->resp->status = status;
	if (x->rq->on_chunk && status >= 200 && status < 300) {
		int v = x->rq->on_chunk(p, n, x->rq->arg);
		if (v) {
			x->stopped = 1;
			x->resp->stop = v;
			return 0; /* anything but n makes libcurl stop with CURLE_WRITE_ERROR */
		}
		return n;
	}
	if (lh_buf_append(&x->resp->body, p, n) != 0) {
		x->toobig = 1;
		return 0;
	}
	return n;
}

static size_t on_read(char *p, size_t size, size_t nmemb, void *arg)
{
	struct xfer *x = arg;
	size_t got = fread(p, 1, size * nmemb, x->rq->body_fp);
	if (got == 0 && ferror(x->rq->body_fp)) {
		x->readerr = 1;
		return CURL_READFUNC_ABORT;
	}
	return got;
}

static int on_progress(void *arg, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
	struct xfer *x = arg;
	return x->c->cancel && *x->c->cancel ? 1 : 0;
}

/* Sets every option of rq on h; returns the header list to free after. */
static struct curl_slist *setup(struct xfer *x, CURL *h, char *url, char *errbuf)
{
	const struct lh_http_req *rq = x->rq;
	struct curl_slist *hs = NULL;
	char line[512];
	int has_body = rq->body_fp || rq->body || !strcmp(rq->method, "POST") || !strcmp(rq->method, "PATCH");

	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_USERAGENT, "longhaul-cli");
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
	curl_easy_setopt(h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
	curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
	/* A daemon on loopback is never behind a proxy; honour the user's own
	 * no_proxy when there is one. */
	if (!getenv("no_proxy") && !getenv("NO_PROXY"))
		curl_easy_setopt(h, CURLOPT_NOPROXY, "localhost,127.0.0.1,::1");
	if (rq->timeout > 0)
		curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)(rq->timeout * 1000));
	if (rq->idle_timeout > 0) {
		curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
		curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, (long)(rq->idle_timeout + 0.999));
	}
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_write);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, x);
	curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
	curl_easy_setopt(h, CURLOPT_XFERINFODATA, x);

	if (has_body) {
		curl_easy_setopt(h, CURLOPT_POST, 1L);
		if (rq->body_fp) {
			curl_easy_setopt(h, CURLOPT_READFUNCTION, on_read);
			curl_easy_setopt(h, CURLOPT_READDATA, x);
			curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)rq->body_size);
		} else {
			curl_easy_setopt(h, CURLOPT_POSTFIELDS, rq->body ? rq->body : "");
			curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(rq->body ? rq->body_len : 0));
		}
		if (strcmp(rq->method, "POST"))
			curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, rq->method);
	} else if (!strcmp(rq->method, "GET")) {
		curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
	} else {
		curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, rq->method);
	}

	if (x->c->auth)
		hs = curl_slist_append(hs, x->c->auth);
	if (rq->content_type) {
		snprintf(line, sizeof line, "Content-Type: %s", rq->content_type);
		hs = curl_slist_append(hs, line);
	} else if (has_body) {
		/* Not libcurl's default form type for an empty POST. */
		hs = curl_slist_append(hs, "Content-Type:");
	}
	if (rq->last_event_id) {
		snprintf(line, sizeof line, "Last-Event-ID: %s", rq->last_event_id);
		hs = curl_slist_append(hs, line);
	}
	if (rq->on_tick)
		hs = curl_slist_append(hs, "Accept: text/event-stream");
	if (hs)
		curl_easy_setopt(h, CURLOPT_HTTPHEADER, hs);
	return hs;
}

static enum lh_http_fail classify(struct xfer *x, CURLcode rc)
{
	if (rc == CURLE_OK)
		return LH_HTTP_OK;
	if (x->stopped)
		return LH_HTTP_STOPPED;
	if (x->toobig)
		return LH_HTTP_TOOBIG;
	if (rc == CURLE_ABORTED_BY_CALLBACK)
		return LH_HTTP_CANCELLED;
	switch (rc) {
	case CURLE_COULDNT_CONNECT:
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
		return LH_HTTP_CONNECT;
	case CURLE_OPERATION_TIMEDOUT:
		return LH_HTTP_TIMEOUT;
	default:
		return LH_HTTP_TRANSPORT;
	}
}

/* Drives one stream transfer on c->multi, calling the tick between polls. */
static CURLcode run_stream(struct xfer *x)
{
	CURLM *m = x->c->multi;
	CURLcode result = CURLE_OK;
	CURLMsg *msg;
	int running = 1, left;

	if (curl_multi_add_handle(m, x->h) != CURLM_OK)
		return CURLE_OUT_OF_MEMORY;
	while (running) {
		long status = 0;
		int v;
		if (curl_multi_perform(m, &running) != CURLM_OK) {
			result = CURLE_RECV_ERROR;
			break;
		}
		if (!running)
			break;
		if (curl_multi_poll(m, NULL, 0, HTTPC_TICK_MS, NULL) != CURLM_OK) {
			result = CURLE_RECV_ERROR;
			break;
		}
		if (x->c->cancel && *x->c->cancel) {
			result = CURLE_ABORTED_BY_CALLBACK;
			break;
		}
		curl_easy_getinfo(x->h, CURLINFO_RESPONSE_CODE, &status);
		v = x->rq->on_tick(status, x->rq->arg);
		if (v) {
			x->stopped = 1;
			x->resp->stop = v;
			result = CURLE_WRITE_ERROR;
			break;
		}
	}
	if (running == 0) {
		while ((msg = curl_multi_info_read(m, &left)))
			if (msg->msg == CURLMSG_DONE && msg->easy_handle == x->h)
				result = msg->data.result;
	}
	curl_multi_remove_handle(m, x->h);
	return result;
}

int lh_httpc_request(struct lh_httpc *c, const struct lh_http_req *rq, struct lh_http_resp *resp,
		     struct lh_err *e)
{
	struct xfer x = { .c = c, .rq = rq, .resp = resp };
	struct curl_slist *hs;
	char errbuf[CURL_ERROR_SIZE] = "", *url;
	size_t n = strlen(c->base) + strlen(rq->path) + 1;
	CURLcode rc;
	long status = 0;

	lh_buf_clear(&resp->body);
	resp->body.max = rq->on_chunk ? HTTPC_MAX_ERRBODY : rq->max_body ? rq->max_body : HTTPC_MAX_BODY;
	resp->status = 0;
	resp->fail = LH_HTTP_OK;
	resp->stop = 0;
	resp->detail[0] = '\0';
	url = lh_xmalloc(n);
	snprintf(url, n, "%s%s", c->base, rq->path);

	if (rq->on_tick) {
		if (!c->multi && !(c->multi = curl_multi_init())) {
			lh_free(url);
			resp->fail = LH_HTTP_TRANSPORT;
			return lh_err_set(e, LH_EIO, "could not start libcurl");
		}
		x.h = curl_easy_init();
		if (!x.h) {
			lh_free(url);
			resp->fail = LH_HTTP_TRANSPORT;
			return lh_err_set(e, LH_EIO, "could not start libcurl");
		}
		hs = setup(&x, x.h, url, errbuf);
		rc = run_stream(&x);
	} else {
		x.h = c->easy;
		curl_easy_reset(x.h);
		hs = setup(&x, x.h, url, errbuf);
		rc = curl_easy_perform(x.h);
	}
	/* errbuf lives on this stack frame; the reused handle must forget it. */
	curl_easy_setopt(x.h, CURLOPT_ERRORBUFFER, NULL);
	curl_easy_getinfo(x.h, CURLINFO_RESPONSE_CODE, &status);
	resp->status = status;
	if (x.h != c->easy)
		curl_easy_cleanup(x.h);
	curl_slist_free_all(hs);
	lh_free(url);

	resp->fail = classify(&x, rc);
	if (resp->fail == LH_HTTP_OK)
		return 0;
	if (x.readerr)
		snprintf(resp->detail, sizeof resp->detail, "could not read the body file");
	else
		snprintf(resp->detail, sizeof resp->detail, "%s", errbuf[0] ? errbuf : curl_easy_strerror(rc));
	return lh_err_set(e, LH_EIO, "%s %s%s: %s", rq->method, c->base, rq->path, resp->detail);
}
