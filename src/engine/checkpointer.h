/*
 * The background checkpointer. The commit thread's store handle never
 * checkpoints on commit (a commit that also copies the log back into the
 * database takes tens of milliseconds, which is the commit latency's tail);
 * this thread does it instead, every interval, on its own handle, without
 * blocking writers.
 */
#ifndef LH_ENGINE_CHECKPOINTER_H
#define LH_ENGINE_CHECKPOINTER_H

#include "util/err.h"

struct lh_checkpointer;

/* Opens its own handle on the store at path and starts the thread. */
struct lh_checkpointer *lh_checkpointer_new(const char *path, int sync_full, int interval_ms, struct lh_err *e);
/* Stops the thread after one last checkpoint, closes its handle, frees. */
void lh_checkpointer_free(struct lh_checkpointer *c);

#endif
