/*
 * loop layer: epoll event loop with a timer heap, signalfd, eventfd
 * wake-ups and before-sleep hooks (see loop.h).
 *
 * File descriptor entries live in an array indexed by fd: descriptors are
 * small integers and the kernel reuses the lowest free one, so the array
 * stays small and lookups are O(1). Each dispatched event re-checks its
 * entry, because an earlier callback in the same batch may have unwatched
 * or replaced it (Redis' ae does the same).
 */
#include "loop/loop.h"
#include "util/mem.h"
#include "util/vec.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#define MAX_HOOKS 16
#define MAX_SIGNALS 8

struct fd_entry {
	lh_io_cb cb;
	void *arg;
	int events;
	unsigned gen; /* bumps on each (re)watch so stale events are ignored */
};

struct lh_timer {
	struct lh_loop *loop;
	lh_timer_cb cb;
	void *arg;
	int64_t due;
	uint64_t order; /* ties broken by arming order: FIFO among equals */
	long idx;       /* position in the heap, -1 when inactive */
};

struct lh_wake {
	struct lh_loop *loop;
	int fd;
	lh_wake_cb cb;
	void *arg;
};

struct sig_entry {
	int signo;
	lh_signal_cb cb;
	void *arg;
};

struct lh_loop {
	int epfd;
	int stop;
	int64_t now;
	LH_VEC(struct fd_entry) fds; /* indexed by fd; n == cap, all zeroed until watched */
	LH_VEC(struct lh_timer *) heap;
	uint64_t timer_order;
	struct { lh_hook_cb cb; void *arg; } hooks[MAX_HOOKS];
	int nhooks;
	int sigfd;
	sigset_t sigmask;
	struct sig_entry sigs[MAX_SIGNALS];
	int nsigs;
};

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct lh_loop *lh_loop_new(struct lh_err *e)
{
	struct lh_loop *loop = lh_xcalloc(1, sizeof *loop);
	loop->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (loop->epfd < 0) {
		lh_err_set(e, LH_EIO, "could not create epoll instance: %s", strerror(errno));
		lh_free(loop);
		return NULL;
	}
	loop->sigfd = -1;
	sigemptyset(&loop->sigmask);
	loop->now = mono_ms();
	return loop;
}

void lh_loop_free(struct lh_loop *loop)
{
	if (!loop)
		return;
	if (loop->sigfd >= 0)
		close(loop->sigfd);
	close(loop->epfd);
	lh_vec_release(&loop->fds);
	lh_vec_release(&loop->heap);
	lh_free(loop);
}

void lh_loop_stop(struct lh_loop *loop)
{
	loop->stop = 1;
}

int64_t lh_loop_now(struct lh_loop *loop)
{
	return loop->now;
}

void lh_loop_update_time(struct lh_loop *loop)
{
	loop->now = mono_ms();
}

static uint32_t to_epoll(int events)
{
	uint32_t ev = 0;
	if (events & LH_READ)
		ev |= EPOLLIN | EPOLLRDHUP;
	if (events & LH_WRITE)
		ev |= EPOLLOUT;
	return ev;
}

int lh_loop_watch(struct lh_loop *loop, int fd, int events, lh_io_cb cb, void *arg)
{
	struct epoll_event ev;
	struct fd_entry *ent;
	int op;
	if (fd < 0)
		return LH_EINTERNAL;
	if (!events) {
		lh_loop_unwatch(loop, fd);
		return 0;
	}
	if ((size_t)fd >= loop->fds.n) {
		lh_vec_reserve_from(&loop->fds, (size_t)fd + 1 - loop->fds.n, 64);
		memset(loop->fds.v + loop->fds.n, 0, (loop->fds.cap - loop->fds.n) * sizeof *loop->fds.v);
		loop->fds.n = loop->fds.cap;
	}
	ent = &loop->fds.v[fd];
	op = ent->events ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
	memset(&ev, 0, sizeof ev);
	ev.events = to_epoll(events);
	ev.data.u64 = (uint64_t)(uint32_t)fd | ((uint64_t)(ent->gen + 1) << 32);
	if (epoll_ctl(loop->epfd, op, fd, &ev) != 0) {
		/* The fd may have been closed and reused behind our back. */
		if (op == EPOLL_CTL_MOD && errno == ENOENT)
			op = EPOLL_CTL_ADD;
		else if (op == EPOLL_CTL_ADD && errno == EEXIST)
			op = EPOLL_CTL_MOD;
		else
			return LH_EIO;
		if (epoll_ctl(loop->epfd, op, fd, &ev) != 0)
			return LH_EIO;
	}
	ent->gen++;
	ent->events = events;
	ent->cb = cb;
	ent->arg = arg;
	return 0;
}

void lh_loop_unwatch(struct lh_loop *loop, int fd)
{
	struct fd_entry *ent;
	if (fd < 0 || (size_t)fd >= loop->fds.n)
		return;
	ent = &loop->fds.v[fd];
	if (!ent->events)
		return;
	(void)epoll_ctl(loop->epfd, EPOLL_CTL_DEL, fd, NULL);
	ent->events = 0;
	ent->cb = NULL;
	ent->gen++;
}

/* ---- timers: a binary min-heap on (due, order) ---- */

static int timer_less(const struct lh_timer *a, const struct lh_timer *b)
{
	return a->due < b->due || (a->due == b->due && a->order < b->order);
}

static void heap_set(struct lh_loop *loop, size_t i, struct lh_timer *t)
{
	loop->heap.v[i] = t;
	t->idx = (long)i;
}

static void heap_up(struct lh_loop *loop, size_t i)
{
	struct lh_timer *t = loop->heap.v[i];
	while (i > 0) {
		size_t p = (i - 1) / 2;
		if (!timer_less(t, loop->heap.v[p]))
			break;
		heap_set(loop, i, loop->heap.v[p]);
		i = p;
	}
	heap_set(loop, i, t);
}

static void heap_down(struct lh_loop *loop, size_t i)
{
	struct lh_timer *t = loop->heap.v[i];
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;
		struct lh_timer *best = t;
		if (l < loop->heap.n && timer_less(loop->heap.v[l], best)) {
			m = l;
			best = loop->heap.v[l];
		}
		if (r < loop->heap.n && timer_less(loop->heap.v[r], best)) {
			m = r;
			best = loop->heap.v[r];
		}
		if (m == i)
			break;
		heap_set(loop, i, best);
		i = m;
	}
	heap_set(loop, i, t);
}

static void heap_remove(struct lh_loop *loop, struct lh_timer *t)
{
	size_t i = (size_t)t->idx;
	struct lh_timer *last = loop->heap.v[--loop->heap.n];
	t->idx = -1;
	if (i == loop->heap.n)
		return;
	heap_set(loop, i, last);
	heap_down(loop, i);
	heap_up(loop, (size_t)last->idx);
}

struct lh_timer *lh_timer_new(struct lh_loop *loop, lh_timer_cb cb, void *arg)
{
	struct lh_timer *t = lh_xcalloc(1, sizeof *t);
	t->loop = loop;
	t->cb = cb;
	t->arg = arg;
	t->idx = -1;
	return t;
}

void lh_timer_start(struct lh_timer *t, int64_t delay_ms)
{
	struct lh_loop *loop = t->loop;
	if (t->idx >= 0)
		heap_remove(loop, t);
	if (delay_ms < 0)
		delay_ms = 0;
	t->due = loop->now + delay_ms;
	t->order = loop->timer_order++;
	*lh_vec_push_from(&loop->heap, 64) = t;
	t->idx = (long)loop->heap.n - 1;
	heap_up(loop, (size_t)t->idx);
}

void lh_timer_stop(struct lh_timer *t)
{
	if (t && t->idx >= 0)
		heap_remove(t->loop, t);
}

int lh_timer_active(const struct lh_timer *t)
{
	return t->idx >= 0;
}

void lh_timer_free(struct lh_timer *t)
{
	if (!t)
		return;
	lh_timer_stop(t);
	lh_free(t);
}

static void run_timers(struct lh_loop *loop)
{
	/* Only timers due now run; one armed from a callback for "now" waits for
	 * the next iteration, so a 0 ms timer cannot starve I/O. */
	uint64_t limit = loop->timer_order;
	while (loop->heap.n) {
		struct lh_timer *t = loop->heap.v[0];
		if (t->due > loop->now || t->order >= limit)
			break;
		heap_remove(loop, t);
		t->cb(loop, t, t->arg);
	}
}

/* ---- signals ---- */

static void on_signalfd(struct lh_loop *loop, int fd, int events, void *arg)
{
	struct signalfd_siginfo si;
	(void)events;
	(void)arg;
	while (read(fd, &si, sizeof si) == (ssize_t)sizeof si) {
		for (int i = 0; i < loop->nsigs; i++)
			if (loop->sigs[i].signo == (int)si.ssi_signo)
				loop->sigs[i].cb(loop, (int)si.ssi_signo, loop->sigs[i].arg);
	}
}

int lh_loop_signal(struct lh_loop *loop, int signo, lh_signal_cb cb, void *arg)
{
	int fd;
	if (loop->nsigs == MAX_SIGNALS)
		return LH_EINTERNAL;
	sigaddset(&loop->sigmask, signo);
	if (pthread_sigmask(SIG_BLOCK, &loop->sigmask, NULL) != 0)
		return LH_EIO;
	fd = signalfd(loop->sigfd, &loop->sigmask, SFD_NONBLOCK | SFD_CLOEXEC);
	if (fd < 0)
		return LH_EIO;
	if (loop->sigfd < 0) {
		loop->sigfd = fd;
		if (lh_loop_watch(loop, fd, LH_READ, on_signalfd, NULL) != 0)
			return LH_EIO;
	}
	loop->sigs[loop->nsigs].signo = signo;
	loop->sigs[loop->nsigs].cb = cb;
	loop->sigs[loop->nsigs].arg = arg;
	loop->nsigs++;
	return 0;
}

/* ---- wake-ups ---- */

static void on_wake(struct lh_loop *loop, int fd, int events, void *arg)
{
	struct lh_wake *w = arg;
	uint64_t v;
	(void)events;
	while (read(fd, &v, sizeof v) == (ssize_t)sizeof v)
		;
	w->cb(loop, w->arg);
}

struct lh_wake *lh_wake_new(struct lh_loop *loop, lh_wake_cb cb, void *arg, struct lh_err *e)
{
	struct lh_wake *w = lh_xcalloc(1, sizeof *w);
	w->loop = loop;
	w->cb = cb;
	w->arg = arg;
	w->fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (w->fd < 0 || lh_loop_watch(loop, w->fd, LH_READ, on_wake, w) != 0) {
		lh_err_set(e, LH_EIO, "could not create wake-up: %s", strerror(errno));
		if (w->fd >= 0)
			close(w->fd);
		lh_free(w);
		return NULL;
	}
	return w;
}

void lh_wake_signal(struct lh_wake *w)
{
	uint64_t one = 1;
	ssize_t n = write(w->fd, &one, sizeof one);
	(void)n; /* EAGAIN means a wake-up is already pending: nothing lost */
}

void lh_wake_free(struct lh_wake *w)
{
	if (!w)
		return;
	lh_loop_unwatch(w->loop, w->fd);
	close(w->fd);
	lh_free(w);
}

int lh_loop_add_hook(struct lh_loop *loop, lh_hook_cb cb, void *arg)
{
	if (loop->nhooks == MAX_HOOKS)
		return LH_EINTERNAL;
	loop->hooks[loop->nhooks].cb = cb;
	loop->hooks[loop->nhooks].arg = arg;
	loop->nhooks++;
	return 0;
}

void lh_loop_remove_hook(struct lh_loop *loop, lh_hook_cb cb, void *arg)
{
	for (int i = 0; i < loop->nhooks; i++) {
		if (loop->hooks[i].cb == cb && loop->hooks[i].arg == arg) {
			memmove(&loop->hooks[i], &loop->hooks[i + 1], (size_t)(loop->nhooks - i - 1) * sizeof loop->hooks[0]);
			loop->nhooks--;
			return;
		}
	}
}

int lh_loop_run(struct lh_loop *loop)
{
	struct epoll_event evs[256];
	loop->stop = 0;
	while (!loop->stop) {
		int timeout = -1, n;
		for (int i = 0; i < loop->nhooks; i++)
			loop->hooks[i].cb(loop, loop->hooks[i].arg);
		if (loop->stop)
			break;
		lh_loop_update_time(loop);
		if (loop->heap.n) {
			int64_t d = loop->heap.v[0]->due - loop->now;
			timeout = d < 0 ? 0 : (d > 3600000 ? 3600000 : (int)d);
		}
		n = epoll_wait(loop->epfd, evs, 256, timeout);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return LH_EIO;
		}
		lh_loop_update_time(loop);
		for (int i = 0; i < n; i++) {
			int fd = (int)(uint32_t)evs[i].data.u64;
			unsigned gen = (unsigned)(evs[i].data.u64 >> 32);
			struct fd_entry *ent;
			int events = 0;
			if ((size_t)fd >= loop->fds.n)
				continue;
			ent = &loop->fds.v[fd];
			if (!ent->events || ent->gen != gen)
				continue; /* unwatched or replaced by an earlier callback */
			if (evs[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
				events |= LH_READ;
			if (evs[i].events & (EPOLLOUT | EPOLLHUP | EPOLLERR))
				events |= LH_WRITE;
			ent->cb(loop, fd, events, ent->arg);
		}
		run_timers(loop);
	}
	return 0;
}
