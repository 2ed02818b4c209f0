/*
 * util layer: file descriptors for a given concurrency. Every request in
 * flight holds a socket (and a command three pipes and a pidfd), so a
 * concurrency past the default soft limit (often 1,024) needs the limit
 * raised, up to the hard one, before the first connection fails with
 * EMFILE in the middle of a run.
 */
#ifndef LH_UTIL_FDLIMIT_H
#define LH_UTIL_FDLIMIT_H

#include "util/err.h"

/* The most requests in flight a run, a daemon or a job may ask for: past
 * it the event loop's bookkeeping, not the store, would be what limits. */
#define LH_CONCURRENCY_MAX 65536
/* Open files beside one per request in flight: the store and its log, the
 * loop, the API's listening socket and clients, commands' pipes. */
#define LH_FD_BASE 256

/* Raises the soft RLIMIT_NOFILE to at least `need` (never above the hard
 * limit; never lowers it). *have (may be NULL) gets the soft limit after.
 * LH_EUSAGE when the hard limit is below `need`, e naming both figures and
 * what to do; `what` says who needs them ("--concurrency 20000"). */
int lh_fd_reserve(long need, const char *what, long *have, struct lh_err *e) LH_WUR;

#endif
