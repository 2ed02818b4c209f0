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
	LH_EXIT_WAITING = 8,     /* only items waiting for approval are left: approve, then run again */
	LH_EXIT_TIMED_OUT = 9,   /* the job's time limit passed: it is timed_out */
	LH_EXIT_SIGINT = 130,    /* interrupted by SIGINT: run again to resume */
	LH_EXIT_SIGTERM = 143    /* interrupted by SIGTERM: run again to resume */
};

struct lh_run_opts {
	const char *file;           /* the input as the user named it; "-" for standard input */
	enum lh_input_kind kind;    /* LH_INPUT_RECORDS: spec was built from --prompt */
	struct lh_spec *spec;       /* borrowed; NULL for batch files */
	int from_stdin;             /* a batch file on standard input (file is "-") */
	const char *base_url;
	const char *api_key;        /* borrowed from the environment; never stored */
	const char *model;          /* override, or NULL */
	long concurrency;
	const char *store_path, *output_path, *errors_path, *progress_path;
	const char *reduce_path;    /* a pipeline's reduce output, when the spec has a reduce */
	double time_limit;          /* seconds of running for the job, across runs; 0 = the spec's or none */
	struct lh_retry_policy retry;
	double connect_timeout, request_timeout, first_token_timeout; /* seconds */
	double grace;               /* seconds to let requests finish on SIGINT/SIGTERM */
	double wait_for_server;     /* seconds to wait for a server that is not up yet; 0 = none */
	int sync_full;
	int restart;                /* discard the job's earlier progress */
	int retry_failed;           /* dead items back to pending (attempts reset) before running */
	int progress;               /* 1: redrawn bar (a terminal), 0: plain lines */
	double progress_every;      /* seconds between plain lines */
	int quiet;                  /* no progress output at all */
	double lease_secs;
	/* The command that resumes this run with the same options, shell-quoted
	 * and without secrets, for the hints printed at a stop; NULL gives
	 * "longhaul run FILE". Borrowed. */
	const char *resume_cmd;
};

/* Runs the job to its end (or a stop) and returns the exit code. Its
 * identity in the store (so that the same command resumes it):
 * - a batch file or a spec: the file's absolute path;
 * - records with --prompt (kind LH_INPUT_RECORDS): the input's absolute
 *   path and a hash of the prompt and system text, so that another
 *   template over the same records is another job;
 * - standard input: the SHA-256 of its content (in the store named by
 *   --store), so that the same input piped again resumes.
 * Before anything is written it checks that the output and errors files
 * can be created (exit 3) and that the store's directory takes files. */
int lh_run(const struct lh_run_opts *o);

/* Takes the lock a run holds on its store for as long as it runs (an
 * exclusive flock on the file, released when *fd is closed), so that
 * whatever else writes the store of a `run` (longhaul approve --store)
 * waits its turn. LH_EBUSY when a run holds it, LH_ESTORE when the file
 * cannot be opened; *fd is -1 then. */
int lh_run_lock_store(const char *path, int *fd, struct lh_err *e) LH_WUR;

#endif
