/*
 * Child processes on the event loop: run a command without a shell, feed
 * its stdin, collect its stdout (capped) and the tail of its stderr, and
 * report its end through a callback on the loop. Nothing here blocks the
 * loop, and nothing knows of jobs or steps.
 *
 * An lh_proc is a request (libuv's word): one child, one operation. It is
 * created by lh_proc_spawn and freed by this module right after its
 * callback returns; the caller never frees it.
 *
 * Contract:
 * - The callback runs exactly once, on the loop, never from inside
 *   lh_proc_spawn or lh_proc_kill. It runs only after the child has ended
 *   AND its stdout and stderr reached EOF (or were cut off by a cap, a
 *   kill, or the linger below), so no output is lost.
 * - The child runs in its own process group. When it ends, whatever is
 *   left of that group is killed (SIGKILL) before it is reaped: a command
 *   cannot leave processes behind unless they leave the group themselves
 *   (setsid). Timeouts and kills also reach the whole group.
 * - If the child has ended but something in its group still holds stdout
 *   or stderr open (a background grandchild), the module waits `linger`
 *   seconds for EOF, then kills the group and stops reading.
 * - The loop must outlive every proc: freeing the loop, or the loop's
 *   thread exiting, while procs are running is a usage error.
 * - The process must not reap children it did not start (no waitpid(-1),
 *   no SIGCHLD set to SIG_IGN): the module reaps its child itself.
 * - Not thread-safe: call everything on the loop's thread.
 */
#ifndef LH_LOOP_PROC_H
#define LH_LOOP_PROC_H

#include <stddef.h>
#include <stdint.h>

#include "loop/loop.h"
#include "util/err.h"

struct lh_proc;

/* Defaults and hard caps on sizes that come from outside (a spec). */
#define LH_PROC_STDOUT_DEFAULT ((size_t)16 << 20)
#define LH_PROC_STDOUT_MAX ((size_t)1 << 30)
#define LH_PROC_STDERR_TAIL_DEFAULT ((size_t)4096)
#define LH_PROC_STDERR_TAIL_MAX ((size_t)1 << 20)
#define LH_PROC_STDIN_MAX ((size_t)1 << 30)
#define LH_PROC_LINGER_DEFAULT 1.0

/* Options; every member is borrowed for the call to lh_proc_spawn only
 * (the module copies what it keeps, including stdin_data). Zeroed members
 * take their defaults. */
struct lh_proc_opts {
	/* argv[0] is looked up in PATH (the child's, see env) unless it holds
	 * a '/'; no shell, and a file that is not executable (ENOEXEC) is not
	 * handed to /bin/sh as execvp would. NULL-terminated, argv[0] != NULL. */
	const char *const *argv;
	/* The complete environment ("K=V", NULL-terminated), or NULL for the
	 * parent's. env_drop and env_add apply to either. PATH for the lookup
	 * of argv[0] comes from the result, or "/usr/local/bin:/usr/bin:/bin". */
	const char *const *env;
	const char *const *env_drop; /* names removed (e.g. "OPENAI_API_KEY"), or NULL */
	const char *const *env_add;  /* "K=V" added, replacing K if present, or NULL */
	const char *cwd;             /* working directory, or NULL: the parent's */
	const void *stdin_data;      /* written to stdin as the pipe drains, then */
	size_t stdin_len;            /* stdin is closed; 0: stdin is at EOF at once */
	size_t max_stdout;           /* 0: LH_PROC_STDOUT_DEFAULT; more: too_much_output */
	size_t stderr_tail;          /* last N bytes kept; 0: LH_PROC_STDERR_TAIL_DEFAULT */
	double timeout;              /* seconds; 0: none. Then SIGKILL to the group */
	double linger;               /* seconds to wait for EOF after the child ended; 0: default */
	struct {
		/* 0: unset. Set in the child as both soft and hard limit, never
		 * above the current hard limit: RLIMIT_AS, RLIMIT_CPU, RLIMIT_NOFILE. */
		uint64_t memory, cpu_seconds, open_files;
	} limits;
};

/* How the child ended. Everything is borrowed for the callback only. */
struct lh_proc_result {
	int exited;          /* 1 when it called exit: status holds the code */
	int status;
	int signo;           /* signal that ended it, or 0 */
	int timed_out;       /* the timeout killed it */
	int killed;          /* lh_proc_kill killed it */
	int too_much_output; /* stdout passed max_stdout: it was killed, out holds the first max_stdout bytes */
	int spawn_failed;    /* the child could not start: err_no and failed_at say why (status 127) */
	int err_no;          /* errno of the failure (spawn, or reaping), or 0 */
	const char *failed_at; /* "exec", "chdir", "setrlimit", "dup2", ... or NULL */
	const char *out;     /* stdout, NUL-terminated (never NULL) */
	size_t out_len;
	const char *err_tail; /* the last stderr_tail bytes of stderr (never NULL; not NUL-terminated) */
	size_t err_len;
	uint64_t err_total;  /* bytes of stderr seen, kept or not */
	size_t in_written;   /* bytes of stdin the child took (less when it closed stdin early) */
	double secs;         /* wall time from spawn to the end */
};

/* p is the proc ending (borrowed: it is freed when the callback returns;
 * lh_proc_kill on it is not allowed any more). r is borrowed for the call. */
typedef void (*lh_proc_cb)(struct lh_proc *p, const struct lh_proc_result *r, void *arg);

/* Starts a child. Returns the proc (owned by this module, valid until its
 * callback returns), or NULL with e set: LH_EINPUT for bad options (no
 * argv, an env_add entry without '=', a negative timeout), LH_ETOOBIG for
 * stdin_len, max_stdout or stderr_tail above its LH_PROC_*_MAX, LH_EIO when
 * a pipe, fork or pidfd could not be made, LH_ENOMEM.
 * A command that cannot be executed is not an error here: the callback
 * reports it with spawn_failed. */
struct lh_proc *lh_proc_spawn(struct lh_loop *loop, const struct lh_proc_opts *o, lh_proc_cb cb, void *arg,
			      struct lh_err *e);

/* Kills the child's process group (SIGKILL). The callback still runs, later,
 * on the loop, with killed and signo set. Calling it again is harmless;
 * calling it after (or inside) the callback is not allowed: p is gone. */
void lh_proc_kill(struct lh_proc *p);

/* The child's pid (also its process group id), for logs. */
int lh_proc_pid(const struct lh_proc *p);

#endif
