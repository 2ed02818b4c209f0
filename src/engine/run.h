/*
 * `longhaul run`: one job in the foreground against an embedded store.
 * The CLI merges flags, the spec and the environment into lh_run_opts;
 * lh_run does the rest and returns the process exit code (README, "Exit
 * codes").
 */
#ifndef LH_ENGINE_RUN_H
#define LH_ENGINE_RUN_H

#include "engine/retry.h"
#include "io/input.h"

enum lh_exit {
	LH_EXIT_OK = 0,          /* every item succeeded */
	LH_EXIT_INTERNAL = 1,    /* unexpected failure (a bug, out of memory) */
	LH_EXIT_USAGE = 2,       /* bad command line */
	LH_EXIT_INPUT = 3,       /* bad input: nothing was written */
	LH_EXIT_FAILED_ITEMS = 4,/* finished; some items failed (see the errors file) */
	LH_EXIT_STOPPED = 5,     /* stopped early: every request failed the same permanent way */
	LH_EXIT_STORE = 6,       /* the store could not be opened or written (corrupt, disk full) */
	LH_EXIT_LOCKED = 7,      /* another longhaul process is running this store */
	LH_EXIT_SIGINT = 130,    /* interrupted by SIGINT: run again to resume */
	LH_EXIT_SIGTERM = 143    /* interrupted by SIGTERM: run again to resume */
};

struct lh_run_opts {
	const char *file;           /* the input: batch file or spec */
	enum lh_input_kind kind;
	struct lh_spec *spec;       /* borrowed; NULL for batch files */
	const char *base_url;
	const char *api_key;        /* borrowed from the environment; never stored */
	const char *model;          /* override, or NULL */
	long concurrency;
	const char *store_path, *output_path, *errors_path, *progress_path;
	struct lh_retry_policy retry;
	double connect_timeout, request_timeout, first_token_timeout; /* seconds */
	double grace;               /* seconds to let requests finish on SIGINT/SIGTERM */
	int sync_full;
	int restart;
	int progress;               /* 1: redrawn bar (a terminal), 0: plain lines */
	double progress_every;      /* seconds between plain lines */
	int quiet;                  /* no progress output at all */
	double lease_secs;
};

int lh_run(const struct lh_run_opts *o);

#endif
