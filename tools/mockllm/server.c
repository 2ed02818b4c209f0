/*
 * Epoll HTTP/1.1 server of the simulator (see server.h).
 *
 * A connection is a small state machine:
 *
 *   READ --chat request--> WAIT --timer--> (answer) --> READ
 *     |                     |  \--stream--> STREAM --last event--> READ
 *     |                     |  \--hang----> HANG (until the peer closes)
 *     |                     \--reset-----> closed with RST
 *     \--fatal error, Connection: close, truncate--> DRAIN --flushed--> LINGER
 *
 * LINGER has shut down the write side and discards input until the peer
 * closes or two seconds pass, so the peer reads every byte we sent instead
 * of a reset. Sockets are edge-triggered: can_read remembers that the
 * kernel may still hold input, so a connection that stopped reading (busy
 * answering, buffer full) resumes without a new event.
 *
 * Closed connections go to a dead list and are recycled only at the end of
 * the loop iteration, when no callback can reach them any more.
 */
#define _GNU_SOURCE
#include "server.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "buf.h"
#include "http.h"
#include "mockllm.h"
#include "reply.h"
#include "stats.h"
#include "util.h"

#define IN_INIT_CAP ((size_t)16384)
#define HEAD_MAX ((size_t)64 << 10)
#define BODY_MAX ((size_t)16 << 20)
/* Raw chunked bodies may carry framing on top of the 16 MiB of data. */
#define RAW_MAX (HEAD_MAX + BODY_MAX + ((size_t)1 << 20))
/* Streams stop producing events while this much output waits for the peer. */
#define OUT_HIGH ((size_t)64 << 10)
/* Output buffers above this are given back once empty. */
#define OUT_KEEP ((size_t)256 << 10)
#define MAX_CONNS 10000
#define LINGER_NS 2000000000ull
#define MAX_EVENTS 256
#define POOL_MAX 256
#define NO_TIMER ((size_t)-1)

enum route { R_NONE, R_HEALTH, R_MODELS, R_CHAT, R_STATS, R_STATS_RESET };

enum conn_state { ST_READ, ST_WAIT, ST_STREAM, ST_HANG, ST_DRAIN, ST_LINGER, ST_CLOSED };

struct conn {
	int fd;
	enum conn_state state;
	struct worker *w;
	struct conn *prev, *next;  /* live list; next alone links the dead list and pool */
	struct buf in;
	struct buf out;
	size_t out_off;            /* bytes of out already sent */
	size_t scan;               /* where the head search resumes */
	struct http_req req;
	enum route route;
	int minor;
	bool have_head;
	bool auth_ok;
	bool can_read;             /* the kernel may hold unread input */
	bool rdhup;                /* the peer shut down or failed: read to the end */
	bool keep_alive;
	bool close_after;          /* linger-close once out is flushed */
	bool sent_continue;
	bool in_flight;
	size_t heap_idx;
	uint64_t deadline;
	char reqid[24];
	struct reply rep;
};

struct timer_ent {
	uint64_t when;
	struct conn *c;
};

struct worker {
	int idx;
	int listen_fd;
	int stop_fd;
	int ep;
	int spare_fd;              /* given up to accept-and-close when out of fds */
	pthread_t tid;
	uint64_t rng;
	uint64_t now;
	uint64_t interval_ns;      /* streaming pace; 0 sends a stream at once */
	struct conn *live;
	struct conn *dead;
	struct conn *pool;
	size_t npool;
	struct timer_ent *heap;    /* MAX_CONNS entries: one timer per connection at most */
	size_t nheap;
	struct buf scratch;
	char listen_tag;           /* addresses used as epoll tags */
	char stop_tag;
};

static atomic_int n_conns;
static atomic_bool no_pwait2;

/* ---- timers: a binary min-heap on the deadline ---- */

static void heap_place(struct worker *w, size_t i, struct timer_ent e)
{
	w->heap[i] = e;
	e.c->heap_idx = i;
}

static void heap_up(struct worker *w, size_t i)
{
	struct timer_ent e = w->heap[i];

	while (i > 0) {
		size_t p = (i - 1) / 2;

		if (w->heap[p].when <= e.when)
			break;
		heap_place(w, i, w->heap[p]);
		i = p;
	}
	heap_place(w, i, e);
}

static void heap_down(struct worker *w, size_t i)
{
	struct timer_ent e = w->heap[i];

	for (;;) {
		size_t l = 2 * i + 1, m = i;

		if (l >= w->nheap)
			break;
		m = l;
		if (l + 1 < w->nheap && w->heap[l + 1].when < w->heap[l].when)
			m = l + 1;
		if (w->heap[m].when >= e.when)
			break;
		heap_place(w, i, w->heap[m]);
		i = m;
	}
	heap_place(w, i, e);
}

static void timer_cancel(struct conn *c)
{
	struct worker *w = c->w;
	size_t i = c->heap_idx;

	if (i == NO_TIMER)
		return;
	c->heap_idx = NO_TIMER;
	w->nheap--;
	if (i == w->nheap)
		return;
	/* The last entry fills the hole, then moves whichever way it must. */
	heap_place(w, i, w->heap[w->nheap]);
	if (i > 0 && w->heap[(i - 1) / 2].when > w->heap[i].when)
		heap_up(w, i);
	else
		heap_down(w, i);
}

static void timer_set(struct conn *c, uint64_t when)
{
	struct worker *w = c->w;

	timer_cancel(c);
	c->deadline = when;
	heap_place(w, w->nheap, (struct timer_ent){ when, c });
	w->nheap++;
	heap_up(w, c->heap_idx);
}

/* ---- connection lifecycle ---- */

static size_t pending(const struct conn *c)
{
	return c->out.len - c->out_off;
}

static void in_flight_begin(struct conn *c)
{
	c->in_flight = true;
	stats_in_flight(1);
}

static void in_flight_end(struct conn *c)
{
	if (c->in_flight) {
		c->in_flight = false;
		stats_in_flight(-1);
	}
}

static void conn_free(struct conn *c)
{
	buf_release(&c->in);
	buf_release(&c->out);
	reply_release(&c->rep);
	free(c);
}

static void conn_close(struct conn *c)
{
	struct worker *w = c->w;

	if (c->state == ST_CLOSED)
		return;
	timer_cancel(c);
	in_flight_end(c);
	/* Closing the only descriptor also removes it from the epoll set. */
	close(c->fd);
	c->fd = -1;
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		w->live = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	c->prev = NULL;
	c->next = w->dead;
	w->dead = c;
	c->state = ST_CLOSED;
	atomic_fetch_sub_explicit(&n_conns, 1, memory_order_relaxed);
}

/* Closes with SO_LINGER 0, so the peer gets a RST instead of a FIN. */
static void conn_reset(struct conn *c)
{
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };

	setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	conn_close(c);
}

/* Moves closed connections to the pool; run when no event can reach them. */
static void recycle(struct worker *w)
{
	while (w->dead != NULL) {
		struct conn *c = w->dead;

		w->dead = c->next;
		if (w->npool >= POOL_MAX || c->in.cap == 0) {
			conn_free(c);
			continue;
		}
		buf_clear(&c->in);
		buf_clear(&c->out);
		buf_shrink(&c->in, IN_INIT_CAP);
		buf_shrink(&c->out, IN_INIT_CAP);
		c->next = w->pool;
		w->pool = c;
		w->npool++;
	}
}

static void conn_open(struct worker *w, int fd)
{
	struct epoll_event ev;
	struct conn *c = w->pool;
	int one = 1;

	if (c != NULL) {
		w->pool = c->next;
		w->npool--;
	} else {
		c = calloc(1, sizeof(*c));
		if (c == NULL)
			goto fail;
		buf_init(&c->in);
		buf_init(&c->out);
		reply_init(&c->rep);
		if (!buf_reserve(&c->in, IN_INIT_CAP)) {
			conn_free(c);
			goto fail;
		}
	}
	c->fd = fd;
	c->state = ST_READ;
	c->w = w;
	c->out_off = 0;
	c->scan = 0;
	c->have_head = false;
	c->can_read = true;
	c->rdhup = false;
	c->keep_alive = true;
	c->close_after = false;
	c->in_flight = false;
	c->heap_idx = NO_TIMER;
	/* Answers are small and often streamed word by word: send them now. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
	ev.data.ptr = c;
	if (epoll_ctl(w->ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
		c->next = w->pool;
		w->pool = c;
		w->npool++;
		goto fail;
	}
	c->prev = NULL;
	c->next = w->live;
	if (w->live != NULL)
		w->live->prev = c;
	w->live = c;
	return;
fail:
	close(fd);
	atomic_fetch_sub_explicit(&n_conns, 1, memory_order_relaxed);
}

static void do_accept(struct worker *w)
{
	/* A bounded batch, so a flood of connects cannot starve open connections. */
	for (int i = 0; i < 64; i++) {
		int fd = accept4(w->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if ((errno == EMFILE || errno == ENFILE) && w->spare_fd >= 0) {
				/* Out of descriptors: free the spare to refuse one peer cleanly. */
				close(w->spare_fd);
				fd = accept(w->listen_fd, NULL, NULL);
				if (fd >= 0)
					close(fd);
				w->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
				continue;
			}
			return;
		}
		if (atomic_fetch_add_explicit(&n_conns, 1, memory_order_relaxed) >= MAX_CONNS) {
			atomic_fetch_sub_explicit(&n_conns, 1, memory_order_relaxed);
			close(fd);
			continue;
		}
		conn_open(w, fd);
	}
}

/* ---- responses ---- */

/* After a complete answer: read the next request, or close if asked to. */
static void response_done(struct conn *c)
{
	if (c->keep_alive) {
		c->state = ST_READ;
	} else {
		c->state = ST_DRAIN;
		c->close_after = true;
	}
}

static void respond(struct conn *c, int status, const char *body, size_t len,
		    const char *extra)
{
	http_write_head(&c->out, status, "application/json", (long long)len,
			c->keep_alive, c->minor, extra);
	buf_append(&c->out, body, len);
}

static void respond_error(struct conn *c, int status, const char *type,
			  const char *code, const char *msg, const char *extra)
{
	struct buf *s = &c->w->scratch;

	buf_clear(s);
	buf_puts(s, "{\"error\":{\"message\":");
	buf_json_str(s, msg, strlen(msg));
	buf_printf(s, ",\"type\":\"%s\",\"code\":\"%s\"}}", type, code);
	respond(c, status, s->data, s->len, extra);
}

/* A protocol error: answer, then close (the stream can no longer be trusted). */
static void fatal(struct conn *c, int status)
{
	const char *msg = status == 413 ? "request body is larger than 16 MiB" :
			  status == 431 ? "request headers are larger than 64 KiB" :
			  "malformed HTTP request";

	c->keep_alive = false;
	respond_error(c, status, "invalid_request_error",
		      status == 413 ? "request_too_large" : "invalid_request_error", msg, NULL);
	c->state = ST_DRAIN;
	c->close_after = true;
}

static void stream_step(struct conn *c)
{
	if (reply_stream_step(&c->rep, &c->out, &c->w->scratch, c->minor >= 1)) {
		in_flight_end(c);
		if (c->rep.kind == RK_TRUNCATE)
			c->keep_alive = false;
		response_done(c);
	}
}

/* Sends the decided chat answer; runs when the simulated latency is over. */
static void chat_fire(struct conn *c)
{
	struct reply *r = &c->rep;
	struct reply_meta m;

	/* HTTP/1.0 has no chunks: a stream (even a bad one) ends with the close. */
	if (r->stream && c->minor == 0)
		c->keep_alive = false;
	m = (struct reply_meta){ c->keep_alive, c->minor, c->reqid };
	switch (r->kind) {
	case RK_HANG:
		c->state = ST_HANG;
		return;
	case RK_RESET:
		conn_reset(c);
		return;
	case RK_OK:
	case RK_TRUNCATE:
		if (!r->stream)
			break;
		reply_stream_head(r, &c->out, &m);
		c->state = ST_STREAM;
		if (c->w->interval_ns > 0) {
			stream_step(c);
			if (c->state == ST_STREAM)
				timer_set(c, c->w->now + c->w->interval_ns);
		}
		return;
	default:
		break;
	}
	reply_write(r, &c->out, &c->w->scratch, &m);
	in_flight_end(c);
	/* A truncated answer promised more bytes than it sends: only a close ends it. */
	if (r->kind == RK_TRUNCATE)
		c->keep_alive = false;
	response_done(c);
}

static void chat_begin(struct conn *c, const char *body, size_t len)
{
	struct worker *w = c->w;
	uint64_t h = hash64(body, len);
	enum outcome oc;

	stats_request(h);
	oc = reply_decide(&c->rep, body, len, c->auth_ok, h, &w->rng);
	stats_outcome(oc);
	if (oc == OC_OK && c->rep.ncalls > 0)
		stats_tool_answer();
	in_flight_begin(c);
	snprintf(c->reqid, sizeof(c->reqid), "req_%016llx",
		 (unsigned long long)rng_next(&w->rng));
	if (c->rep.delay_ns == 0) {
		chat_fire(c);
		return;
	}
	c->state = ST_WAIT;
	timer_set(c, w->now + c->rep.delay_ns);
}

static void respond_models(struct conn *c)
{
	struct buf *s = &c->w->scratch;

	buf_clear(s);
	buf_puts(s, "{\"object\":\"list\",\"data\":[");
	for (size_t i = 0; i < (mock_cfg.nmodels ? mock_cfg.nmodels : 1); i++) {
		const char *id = mock_cfg.nmodels ? mock_cfg.models[i] : "mock-model";

		buf_puts(s, i ? ",{\"id\":" : "{\"id\":");
		buf_json_str(s, id, strlen(id));
		buf_puts(s, ",\"object\":\"model\",\"created\":0,\"owned_by\":\"mockllm\"}");
	}
	buf_puts(s, "]}");
	respond(c, 200, s->data, s->len, NULL);
}

static void method_not_allowed(struct conn *c, const char *allow)
{
	char extra[32];

	snprintf(extra, sizeof(extra), "Allow: %s\r\n", allow);
	respond_error(c, 405, "invalid_request_error", "method_not_allowed",
		      "method not allowed", extra);
}

static enum route route_of(const char *p, size_t n)
{
#define ROUTE(path, r) \
	if (n == sizeof(path) - 1 && memcmp(p, path, n) == 0) \
		return r
	ROUTE("/v1/chat/completions", R_CHAT);
	ROUTE("/health", R_HEALTH);
	ROUTE("/v1/models", R_MODELS);
	ROUTE("/stats", R_STATS);
	ROUTE("/stats/reset", R_STATS_RESET);
#undef ROUTE
	return R_NONE;
}

static bool check_auth(const struct conn *c)
{
	const char *key = mock_cfg.require_key;
	const char *v = c->in.data + c->req.auth_off;
	size_t n = c->req.auth_len, klen;

	if (key == NULL)
		return true;
	klen = strlen(key);
	return n == 7 + klen && strncasecmp(v, "Bearer ", 7) == 0 &&
	       memcmp(v + 7, key, klen) == 0;
}

static void handle_request(struct conn *c)
{
	struct buf *s = &c->w->scratch;
	bool wants_post = c->route == R_CHAT || c->route == R_STATS_RESET;
	bool method_ok = c->req.method == (wants_post ? HTTP_M_POST : HTTP_M_GET);

	if (c->route == R_CHAT && method_ok) {
		chat_begin(c, c->in.data + c->req.head_len, c->req.body_len);
		return;
	}
	if (c->route == R_NONE) {
		respond_error(c, 404, "invalid_request_error", "not_found", "no such route", NULL);
	} else if (!method_ok) {
		method_not_allowed(c, wants_post ? "POST" : "GET");
	} else if (c->route == R_HEALTH) {
		respond(c, 200, "{\"status\":\"ok\"}", 15, NULL);
	} else if (c->route == R_MODELS) {
		if (c->auth_ok)
			respond_models(c);
		else
			respond_error(c, 401, "invalid_request_error", "invalid_api_key",
				      "Incorrect API key provided", NULL);
	} else if (c->route == R_STATS) {
		buf_clear(s);
		stats_json(s);
		respond(c, 200, s->data, s->len, NULL);
	} else {
		stats_reset();
		respond(c, 200, "{\"status\":\"ok\"}", 15, NULL);
	}
	response_done(c);
}

/* ---- reading, parsing, writing ---- */

/* Grows the input buffer within the limits of the current request. */
static bool grow_in(struct conn *c)
{
	size_t limit, want;

	if (c->state != ST_READ)
		return false;
	if (!c->have_head)
		limit = HEAD_MAX + 4096; /* a little over, to tell "too large" from "incomplete" */
	else if (c->req.chunked)
		limit = RAW_MAX;
	else
		limit = c->req.head_len + (size_t)(c->req.content_length > 0 ? c->req.content_length : 0);
	if (c->in.cap >= limit)
		return false;
	want = c->in.cap * 2 > limit ? limit : c->in.cap * 2;
	if (!buf_reserve(&c->in, want - c->in.len)) {
		c->in.failed = false;
		return false;
	}
	return true;
}

/* Returns 1 when bytes came in, 0 when none can now, -1 when the peer is gone. */
static int conn_read(struct conn *c)
{
	bool discard = c->state == ST_HANG || c->state == ST_DRAIN || c->state == ST_LINGER;
	size_t room;
	ssize_t n;

	if (discard)
		c->in.len = 0;
	room = c->in.cap - c->in.len;
	if (room == 0) {
		if (!grow_in(c))
			return 0;
		room = c->in.cap - c->in.len;
	}
	n = recv(c->fd, c->in.data + c->in.len, room, 0);
	if (n > 0) {
		c->in.len += (size_t)n;
		/* A short read drained the socket: any later byte brings a new event. */
		if ((size_t)n < room && !c->rdhup)
			c->can_read = false;
		if (discard)
			c->in.len = 0;
		return 1;
	}
	if (n == 0)
		return -1;
	if (errno == EAGAIN || errno == EWOULDBLOCK) {
		c->can_read = false;
		return 0;
	}
	return errno == EINTR ? 1 : -1;
}

/* Parses and answers the complete requests in the input, in order. */
static void conn_parse(struct conn *c)
{
	while (c->state == ST_READ && c->in.len > 0) {
		int r;

		if (!c->have_head) {
			r = http_parse_head(c->in.data, c->in.len, &c->scan, &c->req);
			if (r == HTTP_MORE) {
				if (c->in.len > HEAD_MAX)
					fatal(c, 431);
				return;
			}
			if (r != HTTP_DONE) {
				c->minor = 1;
				fatal(c, 400);
				return;
			}
			c->minor = c->req.minor;
			c->keep_alive = c->req.keep_alive;
			if (c->req.head_len > HEAD_MAX) {
				fatal(c, 431);
				return;
			}
			c->have_head = true;
			c->sent_continue = false;
			c->route = route_of(c->in.data + c->req.path_off, c->req.path_len);
			c->auth_ok = check_auth(c);
			if (c->req.content_length > (long long)BODY_MAX) {
				fatal(c, 413);
				return;
			}
			/* Size the buffer once so a large body lands without regrowth. */
			if (c->req.content_length > 0 &&
			    c->req.head_len + (size_t)c->req.content_length > c->in.len &&
			    !buf_reserve(&c->in, c->req.head_len + (size_t)c->req.content_length - c->in.len))
				c->in.failed = false;
		}
		r = http_parse_body(c->in.data, c->in.len, &c->req, BODY_MAX);
		if (r == HTTP_MORE) {
			if (c->req.chunked && c->in.len >= RAW_MAX) {
				fatal(c, 413);
				return;
			}
			/* Clients such as curl wait for this before sending a large body. */
			if (c->req.expect_continue && !c->sent_continue && c->minor >= 1) {
				buf_append(&c->out, "HTTP/1.1 100 Continue\r\n\r\n", 25);
				c->sent_continue = true;
			}
			return;
		}
		if (r != HTTP_DONE) {
			fatal(c, r == HTTP_TOO_LARGE ? 413 : 400);
			return;
		}
		handle_request(c);
		if (c->state == ST_CLOSED)
			return;
		buf_drop_front(&c->in, c->req.total_len);
		c->have_head = false;
		c->scan = 0;
	}
	if (c->in.len == 0 && c->in.cap > 4 * IN_INIT_CAP)
		buf_shrink(&c->in, IN_INIT_CAP);
}

/* Returns -1 when the peer is gone, else 0 (EAGAIN leaves the rest for EPOLLOUT). */
static int conn_flush(struct conn *c)
{
	if (buf_failed(&c->out))
		return -1; /* out of memory mid-answer: the peer gets a close */
	while (c->out_off < c->out.len) {
		ssize_t n = send(c->fd, c->out.data + c->out_off, c->out.len - c->out_off,
				 MSG_NOSIGNAL);

		if (n > 0) {
			c->out_off += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		return -1;
	}
	c->out.len = 0;
	c->out_off = 0;
	if (c->out.cap > OUT_KEEP)
		buf_shrink(&c->out, IN_INIT_CAP);
	return 0;
}

static void start_linger(struct conn *c)
{
	shutdown(c->fd, SHUT_WR);
	c->state = ST_LINGER;
	c->close_after = false;
	c->can_read = true;
	timer_set(c, c->w->now + LINGER_NS);
}

/* Drives a connection as far as it can go without blocking. */
static void conn_run(struct conn *c)
{
	bool paced = c->w->interval_ns > 0;

	for (;;) {
		bool progress = false;

		if (c->can_read) {
			int r = conn_read(c);

			if (r < 0) {
				conn_close(c);
				return;
			}
			progress = r > 0;
		}
		for (;;) {
			if (c->state == ST_READ)
				conn_parse(c);
			if (c->state == ST_CLOSED)
				return;
			if (c->state == ST_STREAM && !paced && pending(c) < OUT_HIGH) {
				stream_step(c);
				continue;
			}
			break;
		}
		if (conn_flush(c) < 0) {
			conn_close(c);
			return;
		}
		if (c->state == ST_DRAIN && c->close_after && pending(c) == 0) {
			start_linger(c);
			continue;
		}
		/* The socket took everything: produce more of an unpaced stream. */
		if (c->state == ST_STREAM && !paced && pending(c) == 0)
			continue;
		if (!progress || !c->can_read)
			return;
	}
}

static void conn_timer(struct conn *c)
{
	struct worker *w = c->w;

	switch (c->state) {
	case ST_WAIT:
		chat_fire(c);
		break;
	case ST_STREAM: {
		uint64_t next = c->deadline + w->interval_ns;

		if (pending(c) < OUT_HIGH)
			stream_step(c);
		if (c->state != ST_STREAM)
			break;
		/* Catch up after a short stall; after a long one, restart the pace. */
		if (next + 1000000000ull < w->now)
			next = w->now + w->interval_ns;
		timer_set(c, next);
		break;
	}
	case ST_LINGER:
		conn_close(c);
		return;
	default:
		return;
	}
	if (c->state != ST_CLOSED)
		conn_run(c);
}

/* ---- the loop ---- */

static int wait_events(struct worker *w, struct epoll_event *evs, const struct timespec *tp)
{
	int ms;

	if (!atomic_load_explicit(&no_pwait2, memory_order_relaxed)) {
		int n = epoll_pwait2(w->ep, evs, MAX_EVENTS, tp, NULL);

		if (n >= 0 || (errno != ENOSYS && errno != EPERM))
			return n;
		atomic_store(&no_pwait2, true);
	}
	/* Old kernels: millisecond waits, rounded up so timers never fire early. */
	ms = tp == NULL ? -1 : (int)(tp->tv_sec * 1000 + (tp->tv_nsec + 999999) / 1000000);
	return epoll_wait(w->ep, evs, MAX_EVENTS, ms);
}

static void run_timers(struct worker *w)
{
	while (w->nheap > 0 && w->heap[0].when <= w->now) {
		struct conn *c = w->heap[0].c;

		timer_cancel(c);
		conn_timer(c);
	}
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct epoll_event evs[MAX_EVENTS];
	bool stop = false;

	while (!stop) {
		struct timespec ts, *tp = NULL;
		int n;

		if (w->nheap > 0) {
			uint64_t now = now_ns();
			uint64_t d = w->heap[0].when > now ? w->heap[0].when - now : 0;

			ts.tv_sec = (time_t)(d / 1000000000u);
			ts.tv_nsec = (long)(d % 1000000000u);
			tp = &ts;
		}
		n = wait_events(w, evs, tp);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			fprintf(stderr, "longhaul-mockllm: could not wait for events: %s\n",
				strerror(errno));
			break;
		}
		w->now = now_ns();
		for (int i = 0; i < n; i++) {
			void *p = evs[i].data.ptr;
			struct conn *c = p;
			uint32_t e = evs[i].events;

			if (p == &w->stop_tag) {
				stop = true;
				continue;
			}
			if (p == &w->listen_tag) {
				do_accept(w);
				continue;
			}
			if (c->state == ST_CLOSED)
				continue;
			if (e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
				c->can_read = true;
			if (e & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
				c->rdhup = true;
			conn_run(c);
		}
		run_timers(w);
		recycle(w);
	}
	while (w->live != NULL)
		conn_close(w->live);
	recycle(w);
	return NULL;
}

struct worker *worker_new(int idx, int listen_fd, int stop_fd, uint64_t seed)
{
	struct worker *w = calloc(1, sizeof(*w));
	struct epoll_event ev;
	int saved;

	if (w == NULL)
		return NULL;
	w->idx = idx;
	w->listen_fd = listen_fd;
	w->stop_fd = stop_fd;
	w->spare_fd = -1;
	w->ep = -1;
	w->rng = seed + (uint64_t)idx * 0xD1B54A32D192ED03ull;
	rng_next(&w->rng);
	if (mock_cfg.tokens_per_sec > 0) {
		double ns = 1e9 / mock_cfg.tokens_per_sec;

		w->interval_ns = ns < 1 ? 1 : (uint64_t)ns;
	}
	buf_init(&w->scratch);
	w->heap = calloc(MAX_CONNS, sizeof(*w->heap));
	w->ep = epoll_create1(EPOLL_CLOEXEC);
	if (w->heap == NULL || w->ep < 0)
		goto fail;
	ev.events = EPOLLIN;
	ev.data.ptr = &w->listen_tag;
	if (epoll_ctl(w->ep, EPOLL_CTL_ADD, listen_fd, &ev) < 0)
		goto fail;
	/* Level-triggered and never read, so every worker sees the stop. */
	ev.events = EPOLLIN;
	ev.data.ptr = &w->stop_tag;
	if (epoll_ctl(w->ep, EPOLL_CTL_ADD, stop_fd, &ev) < 0)
		goto fail;
	w->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	return w;
fail:
	saved = errno;
	worker_free(w);
	errno = saved;
	return NULL;
}

int worker_start(struct worker *w)
{
	return pthread_create(&w->tid, NULL, worker_main, w);
}

void worker_free(struct worker *w)
{
	if (w == NULL)
		return;
	while (w->pool != NULL) {
		struct conn *c = w->pool;

		w->pool = c->next;
		conn_free(c);
	}
	if (w->ep >= 0)
		close(w->ep);
	if (w->spare_fd >= 0)
		close(w->spare_fd);
	free(w->heap);
	buf_release(&w->scratch);
	free(w);
}

void worker_join_free(struct worker *w)
{
	pthread_join(w->tid, NULL);
	worker_free(w);
}
