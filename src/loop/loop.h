/*
 * The event loop: epoll for file descriptors, a binary heap of timers,
 * signals through signalfd, thread-safe wake-ups through eventfd, and
 * before-sleep hooks where batched work runs (Redis' ae habit). It knows
 * nothing of jobs or HTTP.
 *
 * One loop per thread; nothing here is thread-safe except lh_wake_signal.
 * Handles (timers, wakes) are long-lived: created once, started and stopped
 * many times, freed only when no callback can reach them.
 */
#ifndef LH_LOOP_LOOP_H
#define LH_LOOP_LOOP_H

#include <stdint.h>
#include "util/err.h"

struct lh_loop;
struct lh_timer;
struct lh_wake;

enum { LH_READ = 1, LH_WRITE = 2 };

typedef void (*lh_io_cb)(struct lh_loop *loop, int fd, int events, void *arg);
typedef void (*lh_timer_cb)(struct lh_loop *loop, struct lh_timer *t, void *arg);
typedef void (*lh_signal_cb)(struct lh_loop *loop, int signo, void *arg);
typedef void (*lh_wake_cb)(struct lh_loop *loop, void *arg);
typedef void (*lh_hook_cb)(struct lh_loop *loop, void *arg);

/* New loop, or NULL with e set. */
struct lh_loop *lh_loop_new(struct lh_err *e);
/* Frees the loop; timers and wakes must have been freed first. */
void lh_loop_free(struct lh_loop *loop);

/* Runs until lh_loop_stop. Returns 0, or a negative code if epoll failed. */
int lh_loop_run(struct lh_loop *loop);
/* Makes lh_loop_run return after the current iteration. */
void lh_loop_stop(struct lh_loop *loop);
/* Monotonic time in ms, cached at the start of each iteration. */
int64_t lh_loop_now(struct lh_loop *loop);
/* Refreshes the cached time (after long work inside a callback). */
void lh_loop_update_time(struct lh_loop *loop);

/* Watches fd for events (LH_READ|LH_WRITE). Calling it again for the same fd
 * changes the events and callback. events == 0 stops watching. */
int lh_loop_watch(struct lh_loop *loop, int fd, int events, lh_io_cb cb, void *arg) LH_WUR;
void lh_loop_unwatch(struct lh_loop *loop, int fd);

/* Timers: one-shot; restart from the callback for periodic work. */
struct lh_timer *lh_timer_new(struct lh_loop *loop, lh_timer_cb cb, void *arg);
void lh_timer_start(struct lh_timer *t, int64_t delay_ms); /* (re)arms */
void lh_timer_stop(struct lh_timer *t);
int lh_timer_active(const struct lh_timer *t);
void lh_timer_free(struct lh_timer *t); /* stops it first; NULL is fine */

/* Delivers signo through the loop (the signal is blocked for the thread and
 * read from a signalfd). Call before starting other threads so they inherit
 * the mask. */
int lh_loop_signal(struct lh_loop *loop, int signo, lh_signal_cb cb, void *arg) LH_WUR;

/* A wake-up another thread can trigger; cb runs on the loop's thread. */
struct lh_wake *lh_wake_new(struct lh_loop *loop, lh_wake_cb cb, void *arg, struct lh_err *e);
void lh_wake_signal(struct lh_wake *w); /* thread-safe, async-signal-safe */
void lh_wake_free(struct lh_wake *w);

/* Runs cb before each sleep in epoll_wait. At most 16 hooks. */
int lh_loop_add_hook(struct lh_loop *loop, lh_hook_cb cb, void *arg) LH_WUR;
/* Removes the hook added with the same cb and arg (no-op when absent). */
void lh_loop_remove_hook(struct lh_loop *loop, lh_hook_cb cb, void *arg);

#endif
