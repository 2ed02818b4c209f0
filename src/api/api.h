/*
 * The HTTP API (docs/api.md), over libmicrohttpd. Only this module includes
 * microhttpd.h. The API reads from the store through its own connections and
 * writes control changes (submit, pause, resume, cancel, retry, priority,
 * delete) to the store itself, through lh_job_transition; then it tells the
 * engine through hooks->notify, which only queues the news and wakes the
 * engine's loop. It never reaches into the engine's memory.
 */
#ifndef LH_API_API_H
#define LH_API_API_H

#include <stddef.h>
#include <stdint.h>
#include "engine/scheduler.h" /* enum lh_job_news: what notify tells */
#include "util/err.h"

struct lh_api_hooks {
	void *arg;
	/* Thread-safe; called from an API thread after the change is committed. */
	void (*notify)(void *arg, int64_t job, enum lh_job_news cmd);
	/* Thread-safe; 1 when the engine runs (for /readyz). */
	int (*ready)(void *arg);
};

struct lh_api_opts {
	const char *host;         /* listen address, e.g. "127.0.0.1" or "0.0.0.0" */
	int port;                 /* 0 = a free port (see lh_api_port) */
	const char *token;        /* bearer token, or NULL: then host must be loopback */
	const char *store_path;   /* the SQLite store (the API opens its own handles) */
	const char *upload_dir;   /* uploaded batch files are streamed here, then ingested */
	size_t max_upload;        /* batch upload limit in bytes (default 256 MiB) */
	size_t max_body;          /* JSON/YAML body limit (default 4 MiB) */
	unsigned max_connections; /* default 1024 */
	size_t sse_max_backlog;   /* bytes an event stream may queue before the client is dropped (default 1 MiB) */
	struct lh_api_hooks hooks;
};

struct lh_api;

/* Starts listening and serving on the API's own threads. Errors: LH_EUSAGE
 * (non-loopback host without a token), LH_EIO (address in use, with the
 * address in the message). */
int lh_api_start(const struct lh_api_opts *o, struct lh_api **out, struct lh_err *e) LH_WUR;
/* The port actually bound. */
int lh_api_port(const struct lh_api *a);
/* Thread-safe: new events are in the store; wakes the event streams. */
void lh_api_events_changed(struct lh_api *a);
/* Stops accepting, ends the streams, joins the threads, frees. */
void lh_api_stop(struct lh_api *a);
/* 1 when host is a loopback address (127.0.0.0/8, ::1, "localhost"). */
int lh_api_is_loopback(const char *host);

struct lh_libver;
/* Fills v with libmicrohttpd's version: the headers' and the library's
 * (util/libver.h). */
void lh_api_lib_version(struct lh_libver *v);

#endif
