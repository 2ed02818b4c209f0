/* Unit tests: child processes on the loop (loop/proc.h). Each test runs a
 * real loop until its callbacks are done; /bin/sh scripts the children here
 * only (the module itself never uses a shell). */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "loop/loop.h"
#include "loop/proc.h"
#include "util/mem.h"

/* What a callback saw, copied out of the borrowed result. */
struct got {
	int calls;
	struct lh_proc_result r;
	char *out;
	char *err;
	struct lh_loop *loop;
	int *pending; /* stop the loop when it reaches 0 */
};

static void on_done(struct lh_proc *p, const struct lh_proc_result *r, void *arg)
{
	struct got *g = arg;
	(void)p;
	g->calls++;
	g->r = *r;
	g->out = lh_xstrndup(r->out, r->out_len);
	g->err = lh_xstrndup(r->err_tail, r->err_len);
	g->r.out = g->r.err_tail = NULL;
	if (--*g->pending == 0)
		lh_loop_stop(g->loop);
}

static void got_release(struct got *g)
{
	lh_free(g->out);
	lh_free(g->err);
}

/* Runs one child to its end on a fresh loop. */
static void run1(struct lh_proc_opts *o, struct got *g)
{
	struct lh_err e;
	struct lh_loop *loop = lh_loop_new(&e);
	int pending = 1;
	struct lh_proc *p;
	cr_assert_not_null(loop);
	memset(g, 0, sizeof *g);
	g->loop = loop;
	g->pending = &pending;
	p = lh_proc_spawn(loop, o, on_done, g, &e);
	cr_assert_not_null(p, "spawn: %s", e.msg);
	cr_assert_gt(lh_proc_pid(p), 0);
	cr_assert_eq(g->calls, 0, "the callback never runs inside spawn");
	cr_assert_eq(lh_loop_run(loop), 0);
	cr_assert_eq(g->calls, 1);
	lh_loop_free(loop);
}

static void sh(struct got *g, const char *script, struct lh_proc_opts *o)
{
	const char *argv[] = { "sh", "-c", script, NULL };
	struct lh_proc_opts def = { 0 };
	if (!o)
		o = &def;
	o->argv = argv;
	run1(o, g);
}

Test(proc, exit0_stdout_exact, .timeout = 20)
{
	struct got g;
	sh(&g, "printf 'hello\\nworld'", NULL);
	cr_assert(g.r.exited);
	cr_assert_eq(g.r.status, 0);
	cr_assert_eq(g.r.signo, 0);
	cr_assert_not(g.r.spawn_failed || g.r.timed_out || g.r.too_much_output || g.r.killed);
	cr_assert_eq(g.r.out_len, 11);
	cr_assert_str_eq(g.out, "hello\nworld");
	cr_assert_geq(g.r.secs, 0);
	got_release(&g);
}

Test(proc, exit_status_3_and_75, .timeout = 20)
{
	struct got g;
	sh(&g, "exit 3", NULL);
	cr_assert(g.r.exited);
	cr_assert_eq(g.r.status, 3);
	got_release(&g);
	sh(&g, "echo partial; exit 75", NULL);
	cr_assert(g.r.exited);
	cr_assert_eq(g.r.status, 75);
	cr_assert_str_eq(g.out, "partial\n");
	got_release(&g);
}

static char *pattern(size_t n)
{
	char *s = lh_xmalloc(n);
	for (size_t i = 0; i < n; i++)
		s[i] = (char)('a' + (i * 7 + i / 251) % 26);
	return s;
}

Test(proc, stdin_1mib_through_cat, .timeout = 20)
{
	const size_t n = (size_t)1 << 20;
	char *in = pattern(n);
	const char *argv[] = { "cat", NULL };
	struct lh_proc_opts o = { .argv = argv, .stdin_data = in, .stdin_len = n };
	struct got g;
	run1(&o, &g);
	cr_assert(g.r.exited);
	cr_assert_eq(g.r.status, 0);
	cr_assert_eq(g.r.in_written, n);
	cr_assert_eq(g.r.out_len, n);
	cr_assert_eq(memcmp(g.out, in, n), 0);
	lh_free(in);
	got_release(&g);
}

Test(proc, writes_2mib_before_reading_stdin, .timeout = 20)
{
	const size_t n = (size_t)1 << 20, first = (size_t)2 << 20;
	char *in = pattern(n);
	struct lh_proc_opts o = { .stdin_data = in, .stdin_len = n };
	struct got g;
	sh(&g, "head -c 2097152 /dev/zero; cat", &o);
	cr_assert(g.r.exited);
	cr_assert_eq(g.r.status, 0);
	cr_assert_eq(g.r.out_len, first + n);
	for (size_t i = 0; i < first; i++)
		if (g.out[i] != 0)
			cr_assert_fail("byte %zu of the zeros is %d", i, g.out[i]);
	cr_assert_eq(memcmp(g.out + first, in, n), 0);
	lh_free(in);
	got_release(&g);
}

Test(proc, child_that_ignores_stdin, .timeout = 20)
{
	const size_t n = (size_t)4 << 20; /* far more than a pipe holds */
	char *in = pattern(n);
	struct lh_proc_opts o = { .stdin_data = in, .stdin_len = n };
	struct got g;
	sh(&g, "exec 0<&-; echo closed", &o);
	cr_assert(g.r.exited);
	cr_assert_eq(g.r.status, 0);
	cr_assert_str_eq(g.out, "closed\n");
	cr_assert_lt(g.r.in_written, n, "the writer saw EPIPE (and survived its SIGPIPE)");
	lh_free(in);
	got_release(&g);
}

Test(proc, stderr_tail_keeps_last_bytes, .timeout = 20)
{
	struct lh_proc_opts o = { .stderr_tail = 16 };
	struct got g;
	sh(&g, "i=0; while [ $i -lt 1000 ]; do printf '%04d' $i >&2; i=$((i+1)); done; echo ok", &o);
	cr_assert(g.r.exited);
	cr_assert_eq(g.r.status, 0);
	cr_assert_str_eq(g.out, "ok\n");
	cr_assert_eq(g.r.err_len, 16);
	cr_assert_str_eq(g.err, "0996099709980999");
	cr_assert_eq(g.r.err_total, 4000);
	got_release(&g);
}

/* A tail larger than most reads: the ring shifts rather than replaces.
 * Every write is its own line, so whatever way the reads split the stream
 * the last 2500 bytes are known. */
Test(proc, stderr_tail_across_reads, .timeout = 20)
{
	struct lh_proc_opts o = { .stderr_tail = 2500 };
	struct got g;
	char want[2501], *w = want;
	sh(&g, "i=0; while [ $i -lt 2000 ]; do printf '%04d\\n' $i >&2; i=$((i+1)); done", &o);
	cr_assert(g.r.exited);
	cr_assert_eq(g.r.err_total, 10000);
	cr_assert_eq(g.r.err_len, 2500);
	for (int i = 1500; i < 2000; i++)
		w += snprintf(w, 6, "%04d\n", i);
	cr_assert_eq(memcmp(g.err, want, 2500), 0, "tail: %.40s...", g.err);
	got_release(&g);
}

/* True once pid has ended: gone, or a zombie nobody reaps (a container's
 * init may not). A pidfd becomes readable when the process ends, so this
 * waits on the event, with a bound. */
static int ended_within(pid_t pid, int ms)
{
	struct pollfd pfd;
	int fd = (int)syscall(SYS_pidfd_open, pid, 0), n;
	if (fd < 0)
		return errno == ESRCH;
	pfd.fd = fd;
	pfd.events = POLLIN;
	n = poll(&pfd, 1, ms);
	close(fd);
	return n == 1;
}

Test(proc, timeout_kills_the_group, .timeout = 20)
{
	struct lh_proc_opts o = { .timeout = 0.5 };
	struct got g;
	long gc;
	sh(&g, "sleep 100 & echo $!; sleep 100", &o);
	cr_assert(g.r.timed_out);
	cr_assert_not(g.r.exited);
	cr_assert_eq(g.r.signo, SIGKILL);
	cr_assert_lt(g.r.secs, 10);
	gc = strtol(g.out, NULL, 10);
	cr_assert_gt(gc, 1, "the grandchild's pid was printed: \"%s\"", g.out);
	cr_assert(ended_within((pid_t)gc, 5000), "the grandchild %ld is gone too", gc);
	got_release(&g);
}

Test(proc, linger_ends_wait_for_held_pipes, .timeout = 20)
{
	struct lh_proc_opts o = { .linger = 0.05 };
	struct got g;
	long gc;
	/* The child exits at once, but its background grandchild holds stdout. */
	sh(&g, "sleep 100 & echo $!", &o);
	cr_assert(g.r.exited);
	cr_assert_eq(g.r.status, 0);
	cr_assert_not(g.r.timed_out);
	cr_assert_lt(g.r.secs, 10);
	gc = strtol(g.out, NULL, 10);
	cr_assert_gt(gc, 1);
	cr_assert(ended_within((pid_t)gc, 5000), "what was left of the group is killed");
	got_release(&g);
}

Test(proc, too_much_output, .timeout = 20)
{
	struct lh_proc_opts o = { .max_stdout = 100000 };
	struct got g;
	sh(&g, "while :; do echo 0123456789; done", &o);
	cr_assert(g.r.too_much_output);
	cr_assert_eq(g.r.out_len, 100000);
	cr_assert_not(g.r.exited && g.r.status == 0);
	got_release(&g);
}

Test(proc, missing_command_is_spawn_failed, .timeout = 20)
{
	const char *argv[] = { "longhaul-no-such-command", "x", NULL };
	const char *abs[] = { "/nonexistent/longhaul", NULL };
	struct lh_proc_opts o = { .argv = argv };
	struct got g;
	run1(&o, &g);
	cr_assert(g.r.spawn_failed);
	cr_assert_eq(g.r.err_no, ENOENT);
	cr_assert_str_eq(g.r.failed_at, "exec");
	cr_assert(g.r.exited);
	cr_assert_eq(g.r.status, 127);
	got_release(&g);
	o.argv = abs;
	run1(&o, &g);
	cr_assert(g.r.spawn_failed);
	cr_assert_eq(g.r.err_no, ENOENT);
	got_release(&g);
}

Test(proc, cwd_and_bad_cwd, .timeout = 20)
{
	const char *argv[] = { "pwd", NULL };
	struct lh_proc_opts o = { .argv = argv, .cwd = "/" };
	struct got g;
	run1(&o, &g);
	cr_assert(g.r.exited);
	cr_assert_str_eq(g.out, "/\n");
	got_release(&g);
	o.cwd = "/nonexistent/longhaul";
	run1(&o, &g);
	cr_assert(g.r.spawn_failed);
	cr_assert_eq(g.r.err_no, ENOENT);
	cr_assert_str_eq(g.r.failed_at, "chdir");
	got_release(&g);
}

Test(proc, environment_drop_and_add, .timeout = 20)
{
	const char *drop[] = { "LH_PROC_SECRET", NULL };
	const char *add[] = { "LH_PROC_JOB=j1", "LH_PROC_OTHER=replaced", NULL };
	struct lh_proc_opts o = { 0 };
	struct got g;
	cr_assert_eq(setenv("LH_PROC_SECRET", "sk-123", 1), 0);
	cr_assert_eq(setenv("LH_PROC_OTHER", "orig", 1), 0);
	sh(&g, "echo ${LH_PROC_SECRET-unset} ${LH_PROC_JOB-unset} ${LH_PROC_OTHER-unset}", &o);
	cr_assert_str_eq(g.out, "sk-123 unset orig\n", "the parent's environment by default");
	got_release(&g);
	o.env_drop = drop;
	o.env_add = add;
	sh(&g, "echo ${LH_PROC_SECRET-unset} ${LH_PROC_JOB-unset} ${LH_PROC_OTHER-unset}", &o);
	cr_assert_str_eq(g.out, "unset j1 replaced\n");
	got_release(&g);
	sh(&g, "env | grep -c '^LH_PROC_OTHER='", &o);
	cr_assert_str_eq(g.out, "1\n", "a replaced variable appears once");
	got_release(&g);
}

Test(proc, complete_environment, .timeout = 20)
{
	const char *env[] = { "PATH=/usr/bin:/bin", "ONLY=this", NULL };
	struct lh_proc_opts o = { .env = env };
	struct got g;
	cr_assert_eq(setenv("LH_PROC_SECRET", "sk-123", 1), 0);
	sh(&g, "echo ${ONLY-unset} ${LH_PROC_SECRET-unset}", &o);
	cr_assert_str_eq(g.out, "this unset\n");
	got_release(&g);
}

Test(proc, resource_limits, .timeout = 20)
{
	struct lh_proc_opts o = { .limits = { .open_files = 64, .memory = (uint64_t)512 << 20, .cpu_seconds = 30 } };
	struct got g;
	sh(&g, "ulimit -n; ulimit -v; ulimit -t", &o);
	cr_assert(g.r.exited);
	cr_assert_str_eq(g.out, "64\n524288\n30\n");
	got_release(&g);
}

Test(proc, child_signal_mask_is_empty, .timeout = 20)
{
	sigset_t set;
	struct got g;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	cr_assert_eq(pthread_sigmask(SIG_BLOCK, &set, NULL), 0);
	cr_assert_eq(signal(SIGPIPE, SIG_IGN) == SIG_ERR, 0);
	/* grep itself, not sh -c: dash clears its own mask at start and
	 * would hide an inherited one. */
	const char *argv[] = { "grep", "-E", "^(SigBlk|SigIgn)", "/proc/self/status", NULL };
	struct lh_proc_opts o = { .argv = argv };
	run1(&o, &g);
	cr_assert(g.r.exited);
	{
		unsigned long long blk = 1, ign = 1;
		cr_assert_eq(sscanf(g.out, "SigBlk:\t%llx\nSigIgn:\t%llx", &blk, &ign), 2, "%s", g.out);
		cr_assert_eq(blk, 0, "%s", g.out);
		/* Signals 32 and 33 are glibc's own (NPTL): its sigaction refuses
		 * them, so a disposition inherited from whoever started the tests
		 * stays; every signal a program can use is at its default. */
		cr_assert_eq(ign & ~0x180000000ULL, 0, "%s", g.out);
	}
	got_release(&g);
}

Test(proc, two_children_at_once, .timeout = 20)
{
	struct lh_err e;
	struct lh_loop *loop = lh_loop_new(&e);
	const char *a1[] = { "sh", "-c", "read x; echo a$x", NULL };
	const char *a2[] = { "sh", "-c", "echo b; exit 2", NULL };
	struct lh_proc_opts o1 = { .argv = a1, .stdin_data = "1\n", .stdin_len = 2 };
	struct lh_proc_opts o2 = { .argv = a2 };
	struct got g1 = { 0 }, g2 = { 0 };
	int pending = 2;
	g1.loop = g2.loop = loop;
	g1.pending = g2.pending = &pending;
	cr_assert_not_null(lh_proc_spawn(loop, &o1, on_done, &g1, &e));
	cr_assert_not_null(lh_proc_spawn(loop, &o2, on_done, &g2, &e));
	cr_assert_eq(lh_loop_run(loop), 0);
	cr_assert_eq(g1.calls, 1);
	cr_assert_eq(g2.calls, 1);
	cr_assert_str_eq(g1.out, "a1\n");
	cr_assert_eq(g1.r.status, 0);
	cr_assert_str_eq(g2.out, "b\n");
	cr_assert_eq(g2.r.status, 2);
	got_release(&g1);
	got_release(&g2);
	lh_loop_free(loop);
}

static void kill_it(struct lh_loop *loop, struct lh_timer *t, void *arg)
{
	(void)loop;
	(void)t;
	lh_proc_kill(arg);
}

Test(proc, kill_reports_through_callback, .timeout = 20)
{
	struct lh_err e;
	struct lh_loop *loop = lh_loop_new(&e);
	const char *argv[] = { "sleep", "100", NULL };
	struct lh_proc_opts o = { .argv = argv };
	struct got g = { 0 };
	int pending = 1;
	struct lh_proc *p;
	struct lh_timer *t;
	g.loop = loop;
	g.pending = &pending;
	p = lh_proc_spawn(loop, &o, on_done, &g, &e);
	cr_assert_not_null(p);
	t = lh_timer_new(loop, kill_it, p);
	lh_timer_start(t, 10);
	cr_assert_eq(lh_loop_run(loop), 0);
	cr_assert_eq(g.calls, 1);
	cr_assert(g.r.killed);
	cr_assert_eq(g.r.signo, SIGKILL);
	cr_assert_not(g.r.timed_out);
	lh_timer_free(t);
	got_release(&g);
	lh_loop_free(loop);
}

Test(proc, bad_options, .timeout = 20)
{
	struct lh_err e;
	struct lh_loop *loop = lh_loop_new(&e);
	const char *argv[] = { "true", NULL };
	const char *empty[] = { NULL };
	const char *bad_env[] = { "NOEQUALS", NULL };
	struct lh_proc_opts o = { .argv = empty };
	cr_assert_null(lh_proc_spawn(loop, &o, on_done, NULL, &e));
	cr_assert_eq(e.code, LH_EINPUT);
	o.argv = argv;
	o.env_add = bad_env;
	cr_assert_null(lh_proc_spawn(loop, &o, on_done, NULL, &e));
	cr_assert_eq(e.code, LH_EINPUT);
	cr_assert(strstr(e.msg, "NOEQUALS"), "%s", e.msg);
	o.env_add = NULL;
	o.timeout = -1;
	cr_assert_null(lh_proc_spawn(loop, &o, on_done, NULL, &e));
	cr_assert_eq(e.code, LH_EINPUT);
	o.timeout = 0;
	o.max_stdout = LH_PROC_STDOUT_MAX + 1;
	cr_assert_null(lh_proc_spawn(loop, &o, on_done, NULL, &e));
	cr_assert_eq(e.code, LH_ETOOBIG);
	lh_loop_free(loop);
}

Test(proc, no_other_fds_inherited, .timeout = 20)
{
	int leak = open("/dev/null", O_RDONLY); /* no O_CLOEXEC on purpose */
	struct got g;
	cr_assert_geq(leak, 3);
	sh(&g, "ls /proc/$$/fd", NULL);
	cr_assert(g.r.exited);
	cr_assert_str_eq(g.out, "0\n1\n2\n");
	close(leak);
	got_release(&g);
}

/* Each callback spawns the next child: the new pipes reuse the fd numbers
 * of the ones just closed while the loop is still dispatching, and the
 * loop's generation check must keep stale events from the freed proc. */
struct chain {
	struct lh_loop *loop;
	int left, seen;
	char out[64];
};

static void chain_next(struct chain *c);

static void on_chain(struct lh_proc *p, const struct lh_proc_result *r, void *arg)
{
	struct chain *c = arg;
	(void)p;
	cr_assert(r->exited);
	cr_assert_eq(r->out_len, 2);
	strncat(c->out, r->out, r->out_len);
	c->seen++;
	if (--c->left == 0)
		lh_loop_stop(c->loop);
	else
		chain_next(c);
}

static void chain_next(struct chain *c)
{
	char script[32];
	const char *argv[] = { "sh", "-c", script, NULL };
	struct lh_proc_opts o = { .argv = argv, .stdin_data = "x", .stdin_len = 1 };
	struct lh_err e;
	snprintf(script, sizeof script, "cat >/dev/null; echo %d", c->seen);
	cr_assert_not_null(lh_proc_spawn(c->loop, &o, on_chain, c, &e), "%s", e.msg);
}

Test(proc, callback_spawns_the_next, .timeout = 20)
{
	struct lh_err e;
	struct chain c = { .loop = lh_loop_new(&e), .left = 5 };
	chain_next(&c);
	cr_assert_eq(lh_loop_run(c.loop), 0);
	cr_assert_eq(c.seen, 5);
	cr_assert_str_eq(c.out, "0\n1\n2\n3\n4\n");
	lh_loop_free(c.loop);
}
