/*
 * api layer: events. The listing pages through one job's events; the two
 * streams (one job, every job) are server-sent events read from the store.
 *
 * A stream is MHD's content reader on the connection's own thread. MHD
 * calls it when the socket has room; it hands over what it has formatted,
 * or reads the next events after the last id sent (at most a page, and at
 * most about half the backlog limit of text), or, when there are none,
 * waits on the API's condition variable until lh_api_events_changed bumps
 * the generation, the API stops, or 15 s pass (then ": keep-alive"). The
 * generation is read before the store is, so a change committed between
 * the read and the wait is never slept through. Because every event comes
 * from the store after the last id sent, a reconnect with Last-Event-ID
 * replays exactly what was missed, and the memory a stream holds does not
 * depend on how far behind its client is.
 *
 * A client that does not read: the kernel's unsent bytes on the socket plus
 * what the stream holds are checked against sse_max_backlog at each call;
 * past it the stream ends with an error (the client reconnects with
 * Last-Event-ID and loses nothing). A client that reads nothing at all
 * stops MHD from calling the reader; MHD's connection timeout closes it.
 * That timeout also counts the time the reader blocks, so an idle stream
 * lives on its keep-alives (API_KEEPALIVE_MS, well under API_CONN_TIMEOUT).
 */
#include "api/api_internal.h"
#include "util/log.h"
#include "util/mem.h"
#include "util/time.h"

#include <errno.h>
#include <linux/sockios.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>

#define EVENTS_PAGE 200
#define STREAM_HIGH_MAX (64u << 10)

json_t *api_event_json(const struct lh_event_view *v, int global)
{
	json_t *o = json_pack("{s:I,s:I,s:o,s:o,s:o,s:o}", "id", (json_int_t)(global ? v->gseq : v->seq), "job",
			      (json_int_t)v->job, "type", api_json_str(v->type), "time", api_json_time(v->ts), "item",
			      api_json_str(v->item_key), "data", api_json_text(v->data));
	if (o && global)
		json_object_set_new(o, "seq", json_integer(v->seq));
	return o;
}

/* ---- GET /v1/jobs/{id}/events ---- */

struct list {
	json_t *events;
	int64_t last;
};

static int list_one(const struct lh_event_view *v, void *arg)
{
	struct list *l = arg;
	json_array_append_new(l->events, api_event_json(v, 0));
	l->last = v->seq;
	return 0;
}

enum MHD_Result api_events_list(struct api_req *r)
{
	struct lh_job_rec j;
	struct lh_err e;
	struct list l;
	struct lh_store *st;
	enum MHD_Result ret = MHD_NO;
	int64_t after, limit;
	int rc;
	if (api_query_int(r, "after", 0, INT64_MAX, 0, &after, &ret) ||
	    api_query_int(r, "limit", 1, API_PAGE_MAX, API_PAGE_DEFAULT, &limit, &ret))
		return ret;
	l.events = json_array();
	l.last = after;
	st = api_store_get(r->api, &e);
	rc = st ? lh_store_job_get(st, r->job, &j, &e) : e.code;
	if (!rc) {
		lh_job_rec_release(&j);
		rc = lh_store_events_each(st, r->job, after, (size_t)limit, list_one, &l, &e);
	}
	api_store_put(r->api, st);
	if (rc) {
		json_decref(l.events);
		return api_send_err(r, rc, &e);
	}
	return api_send_json(r, MHD_HTTP_OK, json_pack("{s:o,s:I}", "events", l.events, "next_after",
						      (json_int_t)l.last));
}

/* ---- streams ---- */

struct stream {
	struct lh_api *api;
	struct MHD_Connection *c;
	int64_t job;          /* 0: every job (ids are global numbers) */
	int64_t last;         /* id of the last event formatted */
	struct lh_buf out;    /* formatted, not yet handed to MHD */
	size_t off;           /* bytes of out handed over */
	size_t high;          /* stop reading events once out holds this much */
	int64_t sent_ms;      /* monotonic time of the last hand-over */
	int started;
	int failed;           /* a formatting error */
};

static int stream_one(const struct lh_event_view *v, void *arg)
{
	struct stream *s = arg;
	json_t *o = api_event_json(v, s->job == 0);
	char *text = o ? json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(10)) : NULL;
	int64_t id = s->job ? v->seq : v->gseq;
	int rc;
	json_decref(o);
	if (!text) {
		s->failed = 1;
		return 1;
	}
	/* Compact JSON has no raw newline, so one data line holds it. */
	rc = lh_buf_printf(&s->out, "id: %lld\nevent: %s\ndata: %s\n\n", (long long)id, v->type, text);
	free(text);
	if (rc) {
		s->failed = 1;
		return 1;
	}
	s->last = id;
	return s->out.len >= s->high ? 2 : 0;
}

/* Reads the next events into out (emptied first); -1 on a store failure. */
static int stream_fill(struct stream *s)
{
	struct lh_err e;
	struct lh_store *st = api_store_get(s->api, &e);
	int rc;
	lh_buf_clear(&s->out);
	s->off = 0;
	if (!st) {
		lh_log_err(&e);
		return -1;
	}
	rc = s->job ? lh_store_events_each(st, s->job, s->last, EVENTS_PAGE, stream_one, s, &e) :
		lh_store_events_all_each(st, s->last, EVENTS_PAGE, stream_one, s, &e);
	api_store_put(s->api, st);
	if (rc < 0 || s->failed) {
		lh_error("api: could not read events for a stream: %s", rc < 0 ? e.msg : "formatting failed");
		return -1;
	}
	return 0;
}

/* 1 when the stream's job is gone (deleted): its stream ends. */
static int job_gone(struct stream *s)
{
	struct lh_job_rec j;
	struct lh_err e;
	struct lh_store *st = api_store_get(s->api, &e);
	int rc = st ? lh_store_job_get(st, s->job, &j, &e) : e.code;
	api_store_put(s->api, st);
	if (!rc)
		lh_job_rec_release(&j);
	return rc == LH_ENOTFOUND;
}

/* Bytes the kernel holds for the client and has not sent yet. */
static size_t unsent(struct stream *s)
{
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(s->c, MHD_CONNECTION_INFO_CONNECTION_FD);
	int n = 0;
	if (!ci || ioctl(ci->connect_fd, SIOCOUTQNSD, &n) != 0 || n < 0)
		return 0;
	return (size_t)n;
}

/* Waits until the generation moves past gen, the API stops, or the
 * keep-alive is due. 1 when it is due. */
static int stream_wait(struct stream *s, uint64_t gen)
{
	struct lh_api *a = s->api;
	int64_t due = s->sent_ms + a->keepalive_ms;
	struct timespec ts = { (time_t)(due / 1000), (long)(due % 1000) * 1000000L };
	int rc = 0;
	pthread_mutex_lock(&a->ev_mu);
	while (a->ev_gen == gen && !a->stopping && rc != ETIMEDOUT)
		rc = pthread_cond_timedwait(&a->ev_cv, &a->ev_mu, &ts);
	pthread_mutex_unlock(&a->ev_mu);
	return rc == ETIMEDOUT;
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct stream *s = cls;
	struct lh_api *a = s->api;
	size_t n;
	while (s->off == s->out.len) {
		uint64_t gen;
		pthread_mutex_lock(&a->ev_mu);
		gen = a->ev_gen;
		n = (size_t)a->stopping;
		pthread_mutex_unlock(&a->ev_mu);
		if (n)
			return MHD_CONTENT_READER_END_OF_STREAM;
		if (stream_fill(s))
			return MHD_CONTENT_READER_END_WITH_ERROR;
		if (s->out.len)
			break;
		if (!s->started) {
			/* Something at once, so that the client sees the stream open. */
			if (lh_buf_puts(&s->out, ": connected\n\n"))
				return MHD_CONTENT_READER_END_WITH_ERROR;
			break;
		}
		if (s->job && job_gone(s))
			return MHD_CONTENT_READER_END_OF_STREAM;
		if (stream_wait(s, gen) && lh_buf_puts(&s->out, ": keep-alive\n\n"))
			return MHD_CONTENT_READER_END_WITH_ERROR;
	}
	if (unsent(s) + (s->out.len - s->off) > a->sse_max_backlog) {
		lh_warn("api: dropping an event stream whose client does not keep up (after id %lld)",
			(long long)s->last);
		pthread_mutex_lock(&a->ev_mu);
		a->n_dropped++;
		pthread_cond_broadcast(&a->ev_cv);
		pthread_mutex_unlock(&a->ev_mu);
		return MHD_CONTENT_READER_END_WITH_ERROR;
	}
	s->started = 1;
	n = s->out.len - s->off;
	if (n > max)
		n = max;
	memcpy(buf, s->out.data + s->off, n);
	s->off += n;
	s->sent_ms = lh_mono_ms();
	return (ssize_t)n;
}

static void stream_free(void *cls)
{
	struct stream *s = cls;
	lh_buf_release(&s->out);
	lh_free(s);
}

enum MHD_Result api_events_stream(struct api_req *r)
{
	struct stream *s;
	enum MHD_Result ret = MHD_NO;
	const char *last_id = MHD_lookup_connection_value(r->c, MHD_HEADER_KIND, "Last-Event-ID");
	int64_t after = 0;
	/* The header wins: a reconnecting EventSource repeats the first URL
	 * (with its ?after) and sends the newest id in the header. */
	if (last_id && last_id[0]) {
		if (api_parse_i64(last_id, &after) || after < 0)
			return api_send_error(r, MHD_HTTP_BAD_REQUEST, "bad_input",
					      json_pack("{s:s}", "field", "Last-Event-ID"),
					      "Last-Event-ID must be an event number");
	} else if (api_query_int(r, "after", 0, INT64_MAX, 0, &after, &ret)) {
		return ret;
	}
	if (r->route == R_JOB_STREAM) {
		struct lh_job_rec j;
		struct lh_err e;
		struct lh_store *st = api_store_get(r->api, &e);
		int rc = st ? lh_store_job_get(st, r->job, &j, &e) : e.code;
		api_store_put(r->api, st);
		if (rc)
			return api_send_err(r, rc, &e);
		lh_job_rec_release(&j);
	}
	s = lh_xcalloc(1, sizeof *s);
	s->api = r->api;
	s->c = r->c;
	s->job = r->route == R_JOB_STREAM ? r->job : 0;
	s->last = after;
	s->high = r->api->sse_max_backlog / 2;
	if (s->high > STREAM_HIGH_MAX)
		s->high = STREAM_HIGH_MAX;
	s->sent_ms = lh_mono_ms();
	lh_buf_init(&s->out, 0);
	return api_send_stream(r, "text/event-stream", stream_read, s, stream_free);
}
