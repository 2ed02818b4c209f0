/*
 * The simulator's configuration, parsed once by main.c from the command
 * line and read-only afterwards, so workers read it without locks.
 */
#ifndef MOCKLLM_H
#define MOCKLLM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The random faults, in the order a request's single draw checks them. */
enum fault {
	FAULT_429,
	FAULT_500,
	FAULT_503,
	FAULT_HANG,
	FAULT_RESET,
	FAULT_TRUNCATE,
	FAULT_BADJSON,
	FAULT_COUNT
};

#define MAX_MODELS 256
#define MAX_THREADS 64

struct mock_config {
	const char *host;
	int port;
	const char *port_file;
	double latency_ms;
	double jitter_ms;
	double tokens_per_sec;
	double fault[FAULT_COUNT];   /* probabilities, 0..1 */
	int retry_after;             /* seconds, for 429 Retry-After */
	uint64_t seed;
	const char *require_key;     /* NULL: no key needed */
	const char *models[MAX_MODELS];
	size_t nmodels;              /* 0: every model is accepted */
	long long context_tokens;    /* 0: unlimited */
	int threads;
};

/* Set by main before any worker starts; never written again. */
extern struct mock_config mock_cfg;

#endif
