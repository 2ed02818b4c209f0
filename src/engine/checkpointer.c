/*
 * engine layer: the background checkpointer (see checkpointer.h).
 */
#include "engine/checkpointer.h"
#include "store/store.h"
#include "util/log.h"
#include "util/mem.h"

#include <errno.h>
#include <pthread.h>
#include <time.h>

struct lh_checkpointer {
	struct lh_store *st;
	int interval_ms;
	int quit;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
};

static void *run(void *arg)
{
	struct lh_checkpointer *c = arg;
	int warned = 0;
	pthread_mutex_lock(&c->mu);
	while (!c->quit) {
		struct timespec ts;
		struct lh_err e;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_nsec += (long)(c->interval_ms % 1000) * 1000000L;
		ts.tv_sec += c->interval_ms / 1000 + ts.tv_nsec / 1000000000L;
		ts.tv_nsec %= 1000000000L;
		while (!c->quit && pthread_cond_timedwait(&c->cv, &c->mu, &ts) != ETIMEDOUT)
			;
		pthread_mutex_unlock(&c->mu);
		if (lh_store_checkpoint(c->st, NULL, NULL, &e) != 0 && !warned++)
			lh_log_err(&e);
		pthread_mutex_lock(&c->mu);
	}
	pthread_mutex_unlock(&c->mu);
	return NULL;
}

struct lh_checkpointer *lh_checkpointer_new(const char *path, int sync_full, int interval_ms, struct lh_err *e)
{
	struct lh_checkpointer *c = lh_xcalloc(1, sizeof *c);
	struct lh_store_opts o = { .path = path, .sync_full = sync_full, .create = 0, .manual_checkpoint = 1 };
	pthread_condattr_t ca;
	if (lh_store_open(&o, &c->st, e) != 0) {
		lh_free(c);
		return NULL;
	}
	c->interval_ms = interval_ms > 0 ? interval_ms : 100;
	pthread_mutex_init(&c->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&c->cv, &ca);
	pthread_condattr_destroy(&ca);
	if (pthread_create(&c->thread, NULL, run, c) != 0) {
		lh_err_set(e, LH_EINTERNAL, "could not start the checkpoint thread");
		pthread_mutex_destroy(&c->mu);
		pthread_cond_destroy(&c->cv);
		lh_store_close(c->st);
		lh_free(c);
		return NULL;
	}
	return c;
}

void lh_checkpointer_free(struct lh_checkpointer *c)
{
	struct lh_err e;
	if (!c)
		return;
	pthread_mutex_lock(&c->mu);
	c->quit = 1;
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->mu);
	pthread_join(c->thread, NULL);
	if (lh_store_checkpoint(c->st, NULL, NULL, &e) != 0)
		lh_log_err(&e);
	lh_store_close(c->st);
	pthread_mutex_destroy(&c->mu);
	pthread_cond_destroy(&c->cv);
	lh_free(c);
}
