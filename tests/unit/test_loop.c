/* Unit tests: the event loop (timers, wake-ups from another thread, signals, hooks). */
#include <criterion/criterion.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include "loop/loop.h"

struct order {
	int seen[8];
	int n;
	struct lh_loop *loop;
	int stop_after;
};

struct tctx {
	struct order *o;
	int id;
};

static void record(struct lh_loop *loop, struct lh_timer *t, void *arg)
{
	struct tctx *c = arg;
	c->o->seen[c->o->n++] = c->id;
	if (c->o->n == c->o->stop_after)
		lh_loop_stop(loop);
	(void)t;
}

Test(loop, timers_fire_in_due_order)
{
	struct lh_err e;
	struct lh_loop *loop = lh_loop_new(&e);
	struct order o = { .n = 0, .stop_after = 3 };
	struct tctx c[3] = { { &o, 30 }, { &o, 10 }, { &o, 20 } };
	struct lh_timer *t[3];
	int64_t delays[3] = { 30, 10, 20 };
	cr_assert_not_null(loop);
	o.loop = loop;
	for (int i = 0; i < 3; i++) {
		t[i] = lh_timer_new(loop, record, &c[i]);
		lh_timer_start(t[i], delays[i]);
	}
	cr_assert_eq(lh_loop_run(loop), 0);
	cr_assert_eq(o.n, 3);
	cr_assert_eq(o.seen[0], 10);
	cr_assert_eq(o.seen[1], 20);
	cr_assert_eq(o.seen[2], 30);
	for (int i = 0; i < 3; i++)
		lh_timer_free(t[i]);
	lh_loop_free(loop);
}

Test(loop, stopped_timer_does_not_fire)
{
	struct lh_err e;
	struct lh_loop *loop = lh_loop_new(&e);
	struct order o = { .n = 0, .stop_after = 1 };
	struct tctx a = { &o, 1 }, b = { &o, 2 };
	struct lh_timer *ta = lh_timer_new(loop, record, &a), *tb = lh_timer_new(loop, record, &b);
	lh_timer_start(ta, 5);
	lh_timer_start(tb, 15);
	lh_timer_stop(ta);
	cr_assert_not(lh_timer_active(ta));
	cr_assert_eq(lh_loop_run(loop), 0);
	cr_assert_eq(o.n, 1);
	cr_assert_eq(o.seen[0], 2);
	lh_timer_free(ta);
	lh_timer_free(tb);
	lh_loop_free(loop);
}

static void on_wake(struct lh_loop *loop, void *arg)
{
	(*(int *)arg)++;
	lh_loop_stop(loop);
}

static void *poke(void *arg)
{
	lh_wake_signal(arg);
	return NULL;
}

Test(loop, wake_from_other_thread)
{
	struct lh_err e;
	struct lh_loop *loop = lh_loop_new(&e);
	int woken = 0;
	struct lh_wake *w = lh_wake_new(loop, on_wake, &woken, &e);
	pthread_t th;
	cr_assert_not_null(w);
	pthread_create(&th, NULL, poke, w);
	cr_assert_eq(lh_loop_run(loop), 0);
	pthread_join(th, NULL);
	cr_assert_eq(woken, 1);
	lh_wake_free(w);
	lh_loop_free(loop);
}

static void on_sig(struct lh_loop *loop, int signo, void *arg)
{
	*(int *)arg = signo;
	lh_loop_stop(loop);
}

Test(loop, signal_delivered_as_event)
{
	struct lh_err e;
	struct lh_loop *loop = lh_loop_new(&e);
	int got = 0;
	cr_assert_eq(lh_loop_signal(loop, SIGUSR1, on_sig, &got), 0);
	kill(getpid(), SIGUSR1);
	cr_assert_eq(lh_loop_run(loop), 0);
	cr_assert_eq(got, SIGUSR1);
	lh_loop_free(loop);
}

static void on_read(struct lh_loop *loop, int fd, int events, void *arg)
{
	char c;
	cr_assert(events & LH_READ);
	cr_assert_eq(read(fd, &c, 1), 1);
	*(char *)arg = c;
	lh_loop_unwatch(loop, fd);
	lh_loop_stop(loop);
}

static void hook(struct lh_loop *loop, void *arg)
{
	(*(int *)arg)++;
	(void)loop;
}

Test(loop, fd_readable_and_hooks_run)
{
	struct lh_err e;
	struct lh_loop *loop = lh_loop_new(&e);
	int p[2], hooks = 0;
	char got = 0;
	cr_assert_eq(pipe(p), 0);
	cr_assert_eq(lh_loop_watch(loop, p[0], LH_READ, on_read, &got), 0);
	cr_assert_eq(lh_loop_add_hook(loop, hook, &hooks), 0);
	cr_assert_eq(write(p[1], "x", 1), 1);
	cr_assert_eq(lh_loop_run(loop), 0);
	cr_assert_eq(got, 'x');
	cr_assert_geq(hooks, 1);
	close(p[0]);
	close(p[1]);
	lh_loop_free(loop);
}
