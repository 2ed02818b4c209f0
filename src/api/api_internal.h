/*
 * api layer, private: what the files of src/api/ share. api.c owns the
 * daemon, the routing, authentication, request bodies, the store handle pool
 * and the one error helper; jobs.c, submit.c, items.c and events.c hold the
 * routes. Only src/api/ includes this header (and microhttpd.h).
 */
#ifndef LH_API_INTERNAL_H
#define LH_API_INTERNAL_H

#include <jansson.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>

#include "api/api.h"
#include "store/store.h"
#include "util/buf.h"

#define API_POOL_MAX 16           /* store handles the API keeps open at most (but see api_store_get) */
#define API_PAGE_MAX 1000         /* largest ?limit of a listing */
#define API_PAGE_DEFAULT 100
#define API_MAX_KEYS 10000        /* keys in one retry body */
#define API_NOTE_MAX 4096         /* bytes of a decision's note */
#define API_DECIDE_BODY (16u << 10) /* body limit of approve and reject */
#define API_DISCARD_MAX (1u << 20) /* body bytes drained after an error before the connection is cut */
#define API_KEEPALIVE_MS 15000    /* ": keep-alive" on an idle event stream */
#define API_CONN_TIMEOUT 60       /* seconds without traffic before MHD closes a connection */
#define API_MEMORY_LIMIT (64u << 10) /* MHD's per-connection pool: request line, headers, write buffer */
#define API_BLOCK (32u << 10)     /* bytes a streaming reader hands MHD per call, at most */

/* MHD counts the time a content reader blocks as idle time and closes the
 * connection once the reader returns past the timeout (measured with MHD
 * 0.9.75): the keep-alive must come well within it. */
_Static_assert(API_KEEPALIVE_MS * 2 <= API_CONN_TIMEOUT * 1000, "keep-alive within the connection timeout");

struct lh_api {
	struct MHD_Daemon *d;
	char *host, *store_path, *upload_dir, *cwd;
	int has_token;
	unsigned char token_hash[32]; /* SHA-256 of the token: compared in constant time */
	size_t max_upload, max_body, sse_max_backlog;
	unsigned max_connections;
	struct lh_api_hooks hooks;
	int port;
	int keepalive_ms;             /* API_KEEPALIVE_MS; tests may shorten it */

	pthread_mutex_t pool_mu;      /* guards pool, npool and nopen */
	pthread_cond_t pool_cv;       /* a handle went back to the pool */
	struct lh_store *pool[API_POOL_MAX];
	size_t npool;
	size_t nopen;                 /* handles open: idle in the pool or lent out */

	pthread_mutex_t ev_mu;        /* guards ev_gen and stopping */
	pthread_cond_t ev_cv;         /* broadcast on each change of either */
	uint64_t ev_gen;              /* bumped by lh_api_events_changed */
	int stopping;
	uint64_t n_dropped;           /* slow event streams dropped (tests wait on ev_cv for it) */
};

enum api_route {
	R_NONE = 0,
	R_HEALTHZ,
	R_READYZ,
	R_JOBS,          /* /v1/jobs */
	R_JOB,           /* /v1/jobs/{id} */
	R_JOB_PAUSE,
	R_JOB_RESUME,
	R_JOB_CANCEL,
	R_JOB_RETRY,
	R_JOB_ITEMS,
	R_JOB_RESULTS,
	R_JOB_ERRORS,
	R_JOB_EVENTS,
	R_JOB_STREAM,    /* /v1/jobs/{id}/events/stream */
	R_EVENTS_STREAM, /* /v1/events/stream */
	R_JOB_REDUCE,    /* /v1/jobs/{id}/reduce */
	R_ITEM,          /* /v1/jobs/{id}/items/{key} */
	R_ITEM_APPROVE,  /* /v1/jobs/{id}/items/{key}/approve */
	R_ITEM_REJECT    /* /v1/jobs/{id}/items/{key}/reject */
};

enum api_submit_kind { SUBMIT_NONE = 0, SUBMIT_BATCH, SUBMIT_SPEC_JSON, SUBMIT_SPEC_YAML };

/* One HTTP request, from its headers to its completion (MHD's con_cls). */
struct api_req {
	struct lh_api *api;
	struct MHD_Connection *c;
	const char *method;       /* borrowed from MHD for the request's life */
	enum api_route route;
	int64_t job;              /* the {id} of the route, or 0 */
	char *key;                /* the {key} of an item route (percent-decoded by MHD), owned; or NULL */
	enum api_submit_kind submit;

	size_t limit;             /* body limit of this request */
	size_t received;          /* body bytes seen so far */
	struct lh_buf body;       /* JSON/YAML bodies (capped at limit) */
	int upload_fd;            /* batch uploads stream into upload_path; -1 when none */
	char *upload_path;        /* owned; the file is removed when the request ends */

	/* An error found before the body was read: answered once the body is
	 * drained (answering early makes MHD close the connection with unread
	 * data, which a client may see as a reset instead of the answer). */
	unsigned err_status;
	json_t *err_body;         /* owned until answered */
	int answered;             /* a response is queued */
};

/* ---- responses (api.c) ---- */

/* Queues body (taken) as JSON with status. */
enum MHD_Result api_send_json(struct api_req *r, unsigned status, json_t *body);
/* The same with one more header (borrowed). */
enum MHD_Result api_send_json_hdr(struct api_req *r, unsigned status, json_t *body, const char *header,
				  const char *value);
/* The error shape {"error": {"code", "message", "detail"}}; detail is taken
 * (NULL = null). New reference. */
json_t *api_error_body(const char *code, json_t *detail, const char *fmt, ...) LH_PRINTF(3, 4);
/* Queues an error in the shared shape; detail is taken (may be NULL). */
enum MHD_Result api_send_error(struct api_req *r, unsigned status, const char *code, json_t *detail,
			       const char *fmt, ...) LH_PRINTF(5, 6);
/* Queues the error that matches a failed call: LH_EINPUT -> 400 with
 * detail {line, field, file} when known, LH_ENOTFOUND -> 404, LH_ETOOBIG ->
 * 413, anything else -> 500 (logged). */
enum MHD_Result api_send_err(struct api_req *r, int rc, const struct lh_err *e);
/* 409 illegal_transition with detail {from, to}. */
enum MHD_Result api_send_state_error(struct api_req *r, const char *from, const char *to);
/* Queues len bytes of data (copied) with status and Content-Type. */
enum MHD_Result api_send_text(struct api_req *r, unsigned status, const char *content_type, const char *data,
			      size_t len);
/* Queues a streaming response (application/x-ndjson or text/event-stream),
 * taking ownership of cls (freed by free_cb when MHD is done). */
enum MHD_Result api_send_stream(struct api_req *r, const char *content_type, MHD_ContentReaderCallback reader,
				void *cls, MHD_ContentReaderFreeCallback free_cb);

/* ---- request bodies (jobs.c) ---- */

/* Parses the request body as a JSON object (new reference in *out), or
 * answers 400 and returns -1. An empty body gives *out = NULL when
 * allow_empty. */
int api_body_object(struct api_req *r, int allow_empty, json_t **out, enum MHD_Result *ret);
/* Answers 400 naming the first field of o not in known (NULL-terminated)
 * and returns -1; 0 when every field is known. */
int api_only_fields(struct api_req *r, json_t *o, const char *const *known, enum MHD_Result *ret);

/* ---- query parameters (api.c) ---- */

/* The decoded value of ?name, or NULL (borrowed from MHD). */
const char *api_query(struct api_req *r, const char *name);
/* Parses an integer in [min, max]: 0 with *out (def when absent), or -1 after
 * queueing 400 naming the parameter. */
int api_query_int(struct api_req *r, const char *name, int64_t min, int64_t max, int64_t def, int64_t *out,
		  enum MHD_Result *ret);
/* A strict decimal int64 (digits only, an optional '-'); 0 or -1. */
int api_parse_i64(const char *s, int64_t *out);

/* ---- store handles (api.c) ---- */

/* A handle for this thread alone until api_store_put: from the pool or
 * newly opened. NULL with e set on failure. */
struct lh_store *api_store_get(struct lh_api *a, struct lh_err *e);
/* Returns st to the pool (or closes it when the pool is full). */
void api_store_put(struct lh_api *a, struct lh_store *st);

/* ---- engine news (api.c) ---- */

/* Tells the engine (hooks.notify) and wakes the event streams. */
void api_notify(struct lh_api *a, int64_t job, enum lh_job_news cmd);
/* 1 once lh_api_stop has begun. */
int api_stopping(struct lh_api *a);

/* ---- JSON (api.c, jobs.c, events.c) ---- */

/* s as a JSON string; bytes that are not UTF-8 become U+FFFD (jansson
 * refuses them, which would lose the whole answer). NULL gives null. New
 * reference. */
json_t *api_json_str(const char *s);

/* A JSON text from the store embedded as a value (a string when it does
 * not parse; null for NULL). New reference. */
json_t *api_json_text(const char *text);
/* RFC 3339 string, or null for 0. New reference. */
json_t *api_json_time(double wall);
/* A job as docs/api.md shows it. counts (item counts by state) gives
 * pending/running/retrying exactly; NULL derives pending from the row's
 * counters and reports running and retrying as 0 (lists). New reference. */
json_t *api_job_json(const struct lh_job_rec *j, const int64_t *counts);
/* An event as docs/api.md shows it; global: "id" is the global number and
 * "seq" the job's. New reference. */
json_t *api_event_json(const struct lh_event_view *v, int global);

/* ---- routes ---- */

enum MHD_Result api_jobs_list(struct api_req *r);
enum MHD_Result api_job_get(struct api_req *r);
enum MHD_Result api_job_control(struct api_req *r); /* pause, resume, cancel */
enum MHD_Result api_job_retry(struct api_req *r);
enum MHD_Result api_job_patch(struct api_req *r);
enum MHD_Result api_job_delete(struct api_req *r);

/* submit.c: the Content-Type of a submit, or SUBMIT_NONE. */
enum api_submit_kind api_submit_kind(const char *content_type);
/* submit.c: checks the query before the body is read; 0, or -1 with the
 * error made pending on r. */
int api_submit_check(struct api_req *r);
/* submit.c: opens r->upload_path for a batch upload; 0 or -1 (500 pending). */
int api_submit_open_upload(struct api_req *r);
enum MHD_Result api_submit(struct api_req *r);

enum MHD_Result api_items_list(struct api_req *r);
enum MHD_Result api_items_export(struct api_req *r); /* results, errors */

/* item.c: one item with its journal; a person's decision; the reduce's text. */
enum MHD_Result api_item_get(struct api_req *r);
enum MHD_Result api_item_decide(struct api_req *r); /* approve, reject */
enum MHD_Result api_job_reduce(struct api_req *r);

enum MHD_Result api_events_list(struct api_req *r);
enum MHD_Result api_events_stream(struct api_req *r); /* both stream routes */

#endif
