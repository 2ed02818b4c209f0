/*
 * The simulator's HTTP/1.1 server: one worker thread per epoll loop, each
 * with its own connections and timers, accepting from its own listening
 * socket. Timers (latency, streaming pace, lingering closes) are a min-heap
 * per worker whose earliest deadline bounds the epoll wait; no thread ever
 * sleeps on behalf of a request.
 */
#ifndef MOCKLLM_SERVER_H
#define MOCKLLM_SERVER_H

#include <stdint.h>

struct worker;

/*
 * Creates a worker that accepts from listen_fd and stops once stop_fd is
 * readable. Both descriptors stay owned by the caller. seed feeds the
 * worker's fault generator. Returns NULL (errno set) on failure.
 */
struct worker *worker_new(int idx, int listen_fd, int stop_fd, uint64_t seed);

/* Starts the worker's thread. Returns 0, or an errno value. */
int worker_start(struct worker *w);

/* Waits for a started worker's thread to end, then frees the worker. */
void worker_join_free(struct worker *w);

/* Frees a worker whose thread was never started. */
void worker_free(struct worker *w);

#endif
