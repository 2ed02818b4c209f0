/*
 * loop layer: child processes driven by the event loop (see proc.h). It
 * knows nothing of jobs or steps: it starts a command without a shell,
 * feeds stdin and reads stdout and stderr through non-blocking pipes, and
 * learns of the child's end from a pidfd, all watched by lh_loop.
 *
 * Why not posix_spawn: it cannot set resource limits in the child
 * (prlimit after it returns races with the exec), nor reset the
 * dispositions of every signal without listing them. So the child is
 * started the way posix_spawn starts its own: clone(CLONE_VM | CLONE_VFORK)
 * on a stack of its own. It shares the parent's memory until it execs, and
 * the parent waits for that. Not fork: in a process with threads and tens
 * of megabytes, fork copies the page tables, and every page the parent
 * writes afterwards takes a copy-on-write fault and a TLB shootdown on the
 * other CPUs; measured here, about 10 ms of the parent's CPU per command,
 * a hundred times the cost of an LLM request (docs/benchmarks.md). The
 * price of sharing memory is discipline: everything the child needs (argv,
 * the environment, PATH, the limits) is prepared in the parent; between
 * clone and exec the child calls only system calls that take no lock and
 * touch nothing but its own stack and the plan, with every signal blocked
 * (so no handler can run in it) until it has reset their dispositions.
 * Its errno is the parent's (the thread's TLS is shared): the parent reads
 * its own errno before anything else, and the child reports its failures
 * through a pipe.
 *
 * The life of a proc:
 *
 *   spawn ──> running ──pidfd readable──> ended ──out, err, errpipe at EOF──> finish
 *                │                          │                                 ▲
 *                │ timeout, kill, cap:      │ linger expires (or kill):       │
 *                │ SIGKILL to the group     │ SIGKILL to the group, stop      │
 *                ▼                          ▼ reading ────────────────────────┘
 *
 * The child is reaped only in finish, after one last SIGKILL to its group:
 * until then it is at worst a zombie, which keeps its pid (and so its
 * process group id) from being reused, so kill(-pid) can never reach a
 * stranger. finish calls the callback and frees the proc; every fd it
 * watched is unwatched first, and the loop skips stale events by
 * generation, so nothing can reach the freed proc.
 */
#include "loop/proc.h"
#include "util/buf.h"
#include "util/mem.h"
#include "util/time.h"
#include "util/vec.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define READ_CHUNK 65536
#define READS_PER_EVENT 16 /* then back to the loop, so a chatty child cannot starve it */
#define WRITE_CHUNK ((size_t)1 << 20)
#define DEFAULT_PATH "/usr/local/bin:/usr/bin:/bin"
#define FALLBACK_MAX_FD 65536

/* What failed in the child before exec, sent up the errno pipe with errno. */
enum stage { STAGE_NONE, STAGE_DUP2, STAGE_CHDIR, STAGE_SETRLIMIT, STAGE_EXEC, STAGE_PRCTL, STAGE_COUNT };
static const char *const stage_names[STAGE_COUNT] = { NULL, "dup2", "chdir", "setrlimit", "exec", "prctl" };

/* Everything the child needs, prepared in the parent (see the top). */
struct plan {
	char *const *argv;
	char *const *envp;
	const char *path; /* PATH for the lookup of argv[0] */
	const char *cwd;
	int in_fd, out_fd, err_fd, ep_fd; /* the child's ends, all above 2 */
	struct { int res; rlim_t val; } lim[3];
	int nlim;
	int max_fd; /* for when close_range is missing */
	pid_t parent; /* our pid: the child dies with it (PR_SET_PDEATHSIG) */
};

struct lh_proc {
	struct lh_loop *loop;
	lh_proc_cb cb;
	void *arg;
	pid_t pid;
	int pidfd, in_fd, out_fd, err_fd, ep_fd; /* the parent's ends; -1 when closed */
	char *in_data; /* copy of stdin_data (owned) */
	size_t in_len, in_off;
	struct lh_buf out; /* max = max_stdout */
	char *tail;        /* stderr tail, the last tail_len bytes in order (owned) */
	size_t tail_cap, tail_len;
	uint64_t err_total;
	int ep_msg[2]; /* stage, errno from the child */
	size_t ep_got;
	struct lh_timer *deadline, *linger;
	int64_t linger_ms;
	double started;
	int ended, timed_out, killed, too_much;
};

/* ---- the child: async-signal-safe calls only ---- */

static void child_fail(int ep, int stage) __attribute__((noreturn));
static void child_fail(int ep, int stage)
{
	int msg[2] = { stage, errno };
	ssize_t n = write(ep, msg, sizeof msg);
	(void)n;
	_exit(127);
}

static int move_fd(int fd, int target)
{
	if (fd == target)
		return fcntl(fd, F_SETFD, 0);
	return dup2(fd, target) < 0 ? -1 : 0; /* the copy is not close-on-exec */
}

/* execvp without its malloc, and without handing ENOEXEC files to /bin/sh. */
static void exec_path(const struct plan *pl)
{
	const char *file = pl->argv[0];
	size_t flen = strlen(file);
	char buf[PATH_MAX];
	int eacces = 0;
	if (strchr(file, '/')) {
		execve(file, pl->argv, pl->envp);
		return;
	}
	if (flen == 0) {
		errno = ENOENT;
		return;
	}
	for (const char *p = pl->path;;) {
		const char *end = strchrnul(p, ':');
		size_t dlen = (size_t)(end - p);
		if (dlen + 1 + flen + 1 > sizeof buf) {
			errno = ENAMETOOLONG;
		} else {
			if (dlen) {
				memcpy(buf, p, dlen);
				buf[dlen++] = '/';
			}
			memcpy(buf + dlen, file, flen + 1); /* an empty entry is the working directory */
			execve(buf, pl->argv, pl->envp);
			switch (errno) {
			case EACCES:
				eacces = 1;
				break;
			case ENOENT: case ENOTDIR: case ESTALE: case ENODEV: case ETIMEDOUT:
				break;
			default:
				return; /* found but not runnable: stop, as execvp does */
			}
		}
		if (!*end)
			break;
		p = end + 1;
	}
	if (eacces)
		errno = EACCES;
}

static void child_exec(const struct plan *pl) __attribute__((noreturn));
static void child_exec(const struct plan *pl)
{
	struct sigaction sa;
	sigset_t none;
	/* All signals are blocked (the parent did so before fork). Handlers
	 * would be reset by exec anyway, but ignored signals (SIGPIPE in a curl
	 * program) and the mask (the loop blocks what signalfd reads) survive
	 * exec, so both go back to the defaults before unblocking. */
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = SIG_DFL;
	for (int s = 1; s < NSIG; s++)
		(void)sigaction(s, &sa, NULL); /* EINVAL for SIGKILL, SIGSTOP, libc's own */
	sigemptyset(&none);
	(void)sigprocmask(SIG_SETMASK, &none, NULL);
	(void)setpgid(0, 0); /* the parent does it too: whoever runs first wins */
	/* A command of a process killed with -9 must not run on unseen: its
	 * step runs again when the job resumes. (What it started itself may
	 * outlive it; those are its own.) The check closes the race with a
	 * parent that died before the call. */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != pl->parent)
		child_fail(pl->ep_fd, STAGE_PRCTL);
	if (move_fd(pl->in_fd, 0) || move_fd(pl->out_fd, 1) || move_fd(pl->err_fd, 2))
		child_fail(pl->ep_fd, STAGE_DUP2);
	/* Whatever the parent opened without O_CLOEXEC stays out of the child. */
	if (close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) != 0)
		for (int fd = 3; fd < pl->max_fd; fd++)
			(void)fcntl(fd, F_SETFD, FD_CLOEXEC);
	if (pl->cwd && chdir(pl->cwd) != 0)
		child_fail(pl->ep_fd, STAGE_CHDIR);
	for (int i = 0; i < pl->nlim; i++) {
		struct rlimit cur, r;
		rlim_t v = pl->lim[i].val;
		if (getrlimit(pl->lim[i].res, &cur) == 0 && cur.rlim_max != RLIM_INFINITY && v > cur.rlim_max)
			v = cur.rlim_max;
		r.rlim_cur = r.rlim_max = v;
		if (setrlimit(pl->lim[i].res, &r) != 0)
			child_fail(pl->ep_fd, STAGE_SETRLIMIT);
	}
	exec_path(pl);
	child_fail(pl->ep_fd, STAGE_EXEC);
}

/* ---- the parent ---- */

#if !defined(__SANITIZE_ADDRESS__)
#define CHILD_STACK (256u << 10)

static int child_entry(void *arg)
{
	child_exec(arg);
}
#endif

/* Starts the child on a stack of its own, sharing memory, and returns its
 * pid once it has exec'd or exited (-1 with errno when it could not). */
static pid_t spawn_child(const struct plan *pl)
{
#if defined(__SANITIZE_ADDRESS__)
	/* AddressSanitizer cannot follow a child on a stack it did not make
	 * (its shadow of a reused mapping still holds old poison): sanitized
	 * builds fork, paying the page tables for a clean report. */
	pid_t pid = fork();
	if (pid == 0)
		child_exec(pl);
	return pid;
#else
	void *stack = mmap(NULL, CHILD_STACK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
	pid_t pid;
	int saved;
	if (stack == MAP_FAILED)
		return -1;
	/* The stack grows down on every architecture Linux runs us on. */
	pid = clone(child_entry, (char *)stack + CHILD_STACK, CLONE_VM | CLONE_VFORK | SIGCHLD, (void *)pl);
	saved = errno;
	munmap(stack, CHILD_STACK);
	errno = saved;
	return pid;
#endif
}

static void close_fd(struct lh_proc *p, int *fd)
{
	if (*fd < 0)
		return;
	lh_loop_unwatch(p->loop, *fd);
	close(*fd);
	*fd = -1;
}

/* Safe until finish reaps the child: see the top. */
static void group_kill(struct lh_proc *p)
{
	if (kill(-p->pid, SIGKILL) != 0)
		(void)kill(p->pid, SIGKILL); /* setpgid failed on both sides */
}

static void proc_free(struct lh_proc *p)
{
	close_fd(p, &p->pidfd);
	close_fd(p, &p->in_fd);
	close_fd(p, &p->out_fd);
	close_fd(p, &p->err_fd);
	close_fd(p, &p->ep_fd);
	lh_timer_free(p->deadline);
	lh_timer_free(p->linger);
	lh_buf_release(&p->out);
	lh_free(p->tail);
	lh_free(p->in_data);
	lh_free(p);
}

static void finish(struct lh_proc *p)
{
	struct lh_proc_result r;
	siginfo_t si;
	memset(&r, 0, sizeof r);
	memset(&si, 0, sizeof si);
	lh_timer_stop(p->deadline);
	lh_timer_stop(p->linger);
	close_fd(p, &p->in_fd);
	group_kill(p); /* leftovers of the group; the zombie leader still holds its id */
	/* The pidfd was readable: the child is a zombie, so this does not wait. */
	if (waitid(P_PIDFD, (id_t)p->pidfd, &si, WEXITED | WNOHANG) != 0 &&
	    (errno != EINVAL || waitid(P_PID, (id_t)p->pid, &si, WEXITED | WNOHANG) != 0))
		r.err_no = errno; /* someone else reaped it: see proc.h */
	else if (si.si_pid == 0)
		r.err_no = ECHILD;
	else if (si.si_code == CLD_EXITED) {
		r.exited = 1;
		r.status = si.si_status;
	} else {
		r.signo = si.si_status;
	}
	if (p->ep_got == sizeof p->ep_msg) {
		r.spawn_failed = 1;
		r.err_no = p->ep_msg[1];
		r.failed_at = p->ep_msg[0] > STAGE_NONE && p->ep_msg[0] < STAGE_COUNT ? stage_names[p->ep_msg[0]] : "child";
	}
	r.timed_out = p->timed_out;
	r.killed = p->killed;
	r.too_much_output = p->too_much;
	r.out = p->out.data ? p->out.data : "";
	r.out_len = p->out.len;
	r.err_tail = p->tail;
	r.err_len = p->tail_len;
	r.err_total = p->err_total;
	r.in_written = p->in_off;
	r.secs = lh_mono() - p->started;
	p->cb(p, &r, p->arg);
	proc_free(p);
}

static void check_done(struct lh_proc *p)
{
	if (p->ended && p->out_fd < 0 && p->err_fd < 0 && p->ep_fd < 0)
		finish(p);
}

/* Keeps what fits under max_stdout; past it, kills the group and stops
 * reading. (An append within the cap cannot fail: memory runs out by abort.) */
static void take_out(struct lh_proc *p, const char *s, size_t n)
{
	size_t room = p->out.max - p->out.len;
	if (lh_buf_append(&p->out, s, n < room ? n : room) == 0 && n <= room)
		return;
	p->too_much = 1;
	group_kill(p);
	close_fd(p, &p->out_fd);
}

/* Keeps the last tail_cap bytes: cost per read is bounded by the cap. */
static void take_err(struct lh_proc *p, const char *s, size_t n)
{
	p->err_total += n;
	if (n >= p->tail_cap) {
		memcpy(p->tail, s + (n - p->tail_cap), p->tail_cap);
		p->tail_len = p->tail_cap;
		return;
	}
	if (p->tail_len + n > p->tail_cap) {
		size_t drop = p->tail_len + n - p->tail_cap;
		memmove(p->tail, p->tail + drop, p->tail_len - drop);
		p->tail_len -= drop;
	}
	memcpy(p->tail + p->tail_len, s, n);
	p->tail_len += n;
}

/* Reads what is there, up to READS_PER_EVENT chunks; closes *fd at EOF. */
static void drain(struct lh_proc *p, int *fd)
{
	char chunk[READ_CHUNK];
	for (int i = 0; i < READS_PER_EVENT && *fd >= 0; i++) {
		ssize_t n = read(*fd, chunk, sizeof chunk);
		if (n > 0) {
			if (fd == &p->out_fd)
				take_out(p, chunk, (size_t)n);
			else
				take_err(p, chunk, (size_t)n);
		} else if (n < 0 && errno == EINTR) {
			continue;
		} else if (n < 0 && errno == EAGAIN) {
			return;
		} else {
			close_fd(p, fd); /* EOF, or an error that will not go away */
		}
	}
}

static void on_out(struct lh_loop *loop, int fd, int events, void *arg)
{
	struct lh_proc *p = arg;
	drain(p, fd == p->out_fd ? &p->out_fd : &p->err_fd);
	check_done(p);
}

static void read_errpipe(struct lh_proc *p)
{
	ssize_t n;
	do
		n = read(p->ep_fd, (char *)p->ep_msg + p->ep_got, sizeof p->ep_msg - p->ep_got);
	while (n < 0 && errno == EINTR);
	if (n < 0 && errno == EAGAIN)
		return;
	if (n > 0)
		p->ep_got += (size_t)n;
	/* EOF (exec succeeded or the child died), or the whole message: done.
	 * Writes under PIPE_BUF are atomic, so a message never comes in parts. */
	if (n <= 0 || p->ep_got == sizeof p->ep_msg)
		close_fd(p, &p->ep_fd);
}

static void on_errpipe(struct lh_loop *loop, int fd, int events, void *arg)
{
	struct lh_proc *p = arg;
	read_errpipe(p);
	check_done(p);
}

/* A write to a pipe whose reader is gone raises SIGPIPE, which would kill a
 * parent that has not ignored it: block it around the writes and take back
 * the one we caused (the habit of curl and OpenSSL with sockets). */
static void on_in(struct lh_loop *loop, int fd, int events, void *arg)
{
	struct lh_proc *p = arg;
	sigset_t pipe_set, old, pending;
	int was_pending, gone = 0;
	sigemptyset(&pipe_set);
	sigaddset(&pipe_set, SIGPIPE);
	sigemptyset(&pending);
	(void)sigpending(&pending);
	was_pending = sigismember(&pending, SIGPIPE);
	(void)pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
	while (p->in_off < p->in_len) {
		size_t want = p->in_len - p->in_off;
		ssize_t n = write(fd, p->in_data + p->in_off, want < WRITE_CHUNK ? want : WRITE_CHUNK);
		if (n > 0) {
			p->in_off += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			break;
		gone = 1; /* EPIPE: the child closed stdin; what it did not take is its business */
		if (n < 0 && errno == EPIPE && !was_pending) {
			struct timespec zero = { 0, 0 };
			while (sigtimedwait(&pipe_set, NULL, &zero) < 0 && errno == EINTR)
				;
		}
		break;
	}
	(void)pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (gone || p->in_off == p->in_len)
		close_fd(p, &p->in_fd);
}

static void on_pidfd(struct lh_loop *loop, int fd, int events, void *arg)
{
	struct lh_proc *p = arg;
	/* Level-triggered and readable for good: stop watching, keep the fd for
	 * waitid in finish. */
	lh_loop_unwatch(loop, fd);
	p->ended = 1;
	lh_timer_stop(p->deadline);
	if (p->out_fd >= 0 || p->err_fd >= 0)
		lh_timer_start(p->linger, p->linger_ms);
	check_done(p);
}

static void on_deadline(struct lh_loop *loop, struct lh_timer *t, void *arg)
{
	struct lh_proc *p = arg;
	p->timed_out = 1;
	group_kill(p);
}

/* The child has ended, but its pipes are still held open: kill the group,
 * take what is already in the pipes, and stop reading. */
static void on_linger(struct lh_loop *loop, struct lh_timer *t, void *arg)
{
	struct lh_proc *p = arg;
	group_kill(p);
	drain(p, &p->out_fd);
	drain(p, &p->err_fd);
	close_fd(p, &p->out_fd);
	close_fd(p, &p->err_fd);
	if (p->ep_fd >= 0)
		read_errpipe(p);
	close_fd(p, &p->ep_fd);
	check_done(p);
}

void lh_proc_kill(struct lh_proc *p)
{
	if (!p->ended)
		p->killed = 1;
	group_kill(p);
	if (p->ended)
		lh_timer_start(p->linger, 0); /* stop waiting for EOF, on the loop */
}

int lh_proc_pid(const struct lh_proc *p)
{
	return (int)p->pid;
}

/* ---- spawn ---- */

static int check_opts(const struct lh_proc_opts *o, struct lh_err *e)
{
	if (!o || !o->argv || !o->argv[0])
		return lh_err_set(e, LH_EINPUT, "could not start a child: no command");
	if (o->stdin_len > LH_PROC_STDIN_MAX)
		return lh_err_set(e, LH_ETOOBIG, "could not start \"%s\": stdin of %zu bytes is over the limit of %zu",
				  o->argv[0], o->stdin_len, LH_PROC_STDIN_MAX);
	if (o->stdin_len && !o->stdin_data)
		return lh_err_set(e, LH_EINPUT, "could not start \"%s\": stdin_len without stdin_data", o->argv[0]);
	if (o->max_stdout > LH_PROC_STDOUT_MAX)
		return lh_err_set(e, LH_ETOOBIG, "could not start \"%s\": max_stdout %zu is over the limit of %zu",
				  o->argv[0], o->max_stdout, LH_PROC_STDOUT_MAX);
	if (o->stderr_tail > LH_PROC_STDERR_TAIL_MAX)
		return lh_err_set(e, LH_ETOOBIG, "could not start \"%s\": stderr_tail %zu is over the limit of %zu",
				  o->argv[0], o->stderr_tail, LH_PROC_STDERR_TAIL_MAX);
	if (!(o->timeout >= 0) || !(o->linger >= 0)) /* also NaN */
		return lh_err_set(e, LH_EINPUT, "could not start \"%s\": negative timeout or linger", o->argv[0]);
	for (size_t i = 0; o->env_add && o->env_add[i]; i++) {
		const char *eq = strchr(o->env_add[i], '=');
		if (!eq || eq == o->env_add[i])
			return lh_err_set(e, LH_EINPUT, "could not start \"%s\": environment entry \"%s\" is not NAME=value",
					  o->argv[0], o->env_add[i]);
	}
	return 0;
}

static int name_in(const char *kv, size_t nl, const char *const *list, int with_value)
{
	for (size_t i = 0; list && list[i]; i++) {
		size_t l = with_value ? strcspn(list[i], "=") : strlen(list[i]);
		if (l == nl && memcmp(list[i], kv, nl) == 0)
			return 1;
	}
	return 0;
}

typedef LH_VEC(char *) strvec;

/* The child's environment: borrowed strings in a new array. */
static void build_env(const struct lh_proc_opts *o, strvec *env)
{
	const char *const *base = o->env ? o->env : (const char *const *)environ;
	for (size_t i = 0; base && base[i]; i++) {
		size_t nl = strcspn(base[i], "=");
		if (name_in(base[i], nl, o->env_drop, 0) || name_in(base[i], nl, o->env_add, 1))
			continue;
		*lh_vec_push(env) = (char *)base[i];
	}
	for (size_t i = 0; o->env_add && o->env_add[i]; i++)
		*lh_vec_push(env) = (char *)o->env_add[i];
	*lh_vec_push(env) = NULL;
}

static const char *env_path(const strvec *env)
{
	for (size_t i = 0; env->v[i]; i++)
		if (strncmp(env->v[i], "PATH=", 5) == 0)
			return env->v[i] + 5;
	return DEFAULT_PATH;
}

/* The child dup2s its ends onto 0, 1 and 2: none of them may already sit
 * there (a daemon with stdin closed gets 0 from pipe2). */
static int above_stdio(int *fd)
{
	int n;
	if (*fd > 2)
		return 0;
	n = fcntl(*fd, F_DUPFD_CLOEXEC, 3);
	if (n < 0)
		return -1;
	close(*fd);
	*fd = n;
	return 0;
}

static int make_pipe(int fds[2], int parent_end)
{
	if (pipe2(fds, O_CLOEXEC) != 0)
		return -1;
	if (above_stdio(&fds[0]) || above_stdio(&fds[1]))
		return -1;
	return fcntl(fds[parent_end], F_SETFL, O_NONBLOCK);
}

static int64_t secs_to_ms(double s)
{
	double ms = s * 1000.0;
	if (ms > 1e12)
		ms = 1e12; /* 30 years: as good as none, and far from overflow */
	return ms > 0 && ms < 1 ? 1 : (int64_t)ms;
}

static void plan_limits(struct plan *pl, const struct lh_proc_opts *o)
{
	const struct { int res; uint64_t v; } lim[3] = {
		{ RLIMIT_AS, o->limits.memory },
		{ RLIMIT_CPU, o->limits.cpu_seconds },
		{ RLIMIT_NOFILE, o->limits.open_files },
	};
	pl->nlim = 0;
	for (int i = 0; i < 3; i++) {
		if (!lim[i].v)
			continue;
		pl->lim[pl->nlim].res = lim[i].res;
		pl->lim[pl->nlim].val = (rlim_t)lim[i].v;
		pl->nlim++;
	}
}

static int watch_all(struct lh_proc *p)
{
	if (lh_loop_watch(p->loop, p->pidfd, LH_READ, on_pidfd, p) ||
	    lh_loop_watch(p->loop, p->out_fd, LH_READ, on_out, p) ||
	    lh_loop_watch(p->loop, p->err_fd, LH_READ, on_out, p) ||
	    lh_loop_watch(p->loop, p->ep_fd, LH_READ, on_errpipe, p))
		return -1;
	if (p->in_fd >= 0 && lh_loop_watch(p->loop, p->in_fd, LH_WRITE, on_in, p))
		return -1;
	return 0;
}

struct lh_proc *lh_proc_spawn(struct lh_loop *loop, const struct lh_proc_opts *o, lh_proc_cb cb, void *arg,
			      struct lh_err *e)
{
	struct lh_proc *p;
	struct plan pl;
	strvec env = { 0 };
	int in[2] = { -1, -1 }, out[2] = { -1, -1 }, err[2] = { -1, -1 }, ep[2] = { -1, -1 };
	sigset_t all, old;
	long open_max;
	int saved;
	if (check_opts(o, e) != 0)
		return NULL;
	p = lh_xcalloc(1, sizeof *p);
	p->loop = loop;
	p->cb = cb;
	p->arg = arg;
	p->pid = -1;
	p->pidfd = p->in_fd = p->out_fd = p->err_fd = p->ep_fd = -1;
	p->started = lh_mono();
	if (o->stdin_len) {
		p->in_data = lh_malloc(o->stdin_len);
		if (!p->in_data) {
			lh_err_set(e, LH_ENOMEM, "could not start \"%s\": no memory for %zu bytes of stdin", o->argv[0],
				   o->stdin_len);
			goto fail;
		}
		memcpy(p->in_data, o->stdin_data, o->stdin_len);
		p->in_len = o->stdin_len;
	}
	lh_buf_init(&p->out, o->max_stdout ? o->max_stdout : LH_PROC_STDOUT_DEFAULT);
	p->tail_cap = o->stderr_tail ? o->stderr_tail : LH_PROC_STDERR_TAIL_DEFAULT;
	p->tail = lh_xmalloc(p->tail_cap);
	p->linger_ms = secs_to_ms(o->linger > 0 ? o->linger : LH_PROC_LINGER_DEFAULT);
	p->deadline = lh_timer_new(loop, on_deadline, p);
	p->linger = lh_timer_new(loop, on_linger, p);

	if (make_pipe(in, 1) || make_pipe(out, 0) || make_pipe(err, 0) || make_pipe(ep, 0)) {
		lh_err_set(e, LH_EIO, "could not start \"%s\": could not make a pipe: %s", o->argv[0], strerror(errno));
		goto fail;
	}
	build_env(o, &env);
	memset(&pl, 0, sizeof pl);
	pl.argv = (char *const *)o->argv;
	pl.envp = env.v;
	pl.path = env_path(&env);
	pl.cwd = o->cwd;
	pl.in_fd = in[0];
	pl.out_fd = out[1];
	pl.err_fd = err[1];
	pl.ep_fd = ep[1];
	plan_limits(&pl, o);
	pl.parent = getpid();
	open_max = sysconf(_SC_OPEN_MAX);
	pl.max_fd = open_max > 0 && open_max < FALLBACK_MAX_FD ? (int)open_max : FALLBACK_MAX_FD;

	/* No signal handler may run in the child before it resets them. */
	sigfillset(&all);
	(void)pthread_sigmask(SIG_SETMASK, &all, &old);
	p->pid = spawn_child(&pl);
	saved = errno;
	(void)pthread_sigmask(SIG_SETMASK, &old, NULL);
	lh_vec_release(&env);
	if (p->pid < 0) {
		lh_err_set(e, LH_EIO, "could not start \"%s\": fork failed: %s", o->argv[0], strerror(saved));
		goto fail;
	}
	/* Also here, so that a kill right after spawn reaches the whole group
	 * even if the child has not run yet. EACCES once it has exec'd: fine. */
	(void)setpgid(p->pid, p->pid);
	close(in[0]);
	close(out[1]);
	close(err[1]);
	close(ep[1]);
	in[0] = out[1] = err[1] = ep[1] = -1;
	p->in_fd = in[1];
	p->out_fd = out[0];
	p->err_fd = err[0];
	p->ep_fd = ep[0];
	in[1] = out[0] = err[0] = ep[0] = -1;
	if (!p->in_len)
		close_fd(p, &p->in_fd); /* the child reads EOF at once */

	p->pidfd = (int)syscall(SYS_pidfd_open, p->pid, 0);
	if (p->pidfd < 0 || fcntl(p->pidfd, F_SETFD, FD_CLOEXEC) != 0) {
		lh_err_set(e, LH_EIO, "could not start \"%s\": pidfd_open failed (Linux 5.3 or later is needed): %s",
			   o->argv[0], strerror(errno));
		goto fail_child;
	}
	if (watch_all(p) != 0) {
		lh_err_set(e, LH_EIO, "could not start \"%s\": could not watch its pipes", o->argv[0]);
		goto fail_child;
	}
	if (o->timeout > 0)
		lh_timer_start(p->deadline, secs_to_ms(o->timeout));
	return p;

fail_child:
	/* The only wait on the loop's thread: a child just killed with SIGKILL
	 * ends at once, and it must not be left a zombie. */
	group_kill(p);
	while (waitpid(p->pid, NULL, 0) < 0 && errno == EINTR)
		;
fail:
	lh_vec_release(&env);
	for (int i = 0; i < 2; i++) {
		if (in[i] >= 0)
			close(in[i]);
		if (out[i] >= 0)
			close(out[i]);
		if (err[i] >= 0)
			close(err[i]);
		if (ep[i] >= 0)
			close(ep[i]);
	}
	proc_free(p);
	return NULL;
}
