/*
 * Small inline helpers shared by the simulator's files: a monotonic clock,
 * a per-thread pseudo-random generator and a fast 64-bit hash of request
 * bodies. Header-only so the hot paths inline.
 */
#ifndef MOCKLLM_UTIL_H
#define MOCKLLM_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

/* Nanoseconds on the monotonic clock; the timers never follow wall time. */
static inline uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/*
 * splitmix64: one add and three mixes per draw, period 2^64, and every seed
 * is a good seed, so each thread can derive its state from --seed plus its
 * index.
 */
static inline uint64_t rng_next(uint64_t *state)
{
	uint64_t z = (*state += 0x9E3779B97F4A7C15ull);

	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

/* Uniform double in [0, 1) with 53 random bits. */
static inline double rng_unit(uint64_t *state)
{
	return (double)(rng_next(state) >> 11) * 0x1.0p-53;
}

/* 64x64 -> 128 multiply folded back to 64 bits, the core of wyhash. */
static inline uint64_t hash_mix(uint64_t a, uint64_t b)
{
	__uint128_t r = (__uint128_t)a * b;

	return (uint64_t)r ^ (uint64_t)(r >> 64);
}

/*
 * Hash of the exact bytes of a request body, used both to count duplicate
 * bodies and to derive a deterministic completion id. Eight bytes per step;
 * with 64 bits the chance of a false duplicate among two million bodies is
 * about one in ten million.
 */
static inline uint64_t hash64(const void *data, size_t n)
{
	const unsigned char *p = data;
	uint64_t h = 0x243F6A8885A308D3ull ^ ((uint64_t)n * 0x9E3779B97F4A7C15ull);
	uint64_t v;

	while (n >= 8) {
		memcpy(&v, p, 8);
		h = hash_mix(v ^ 0xA0761D6478BD642Full, h ^ 0xE7037ED1A0B428DBull);
		p += 8;
		n -= 8;
	}
	v = 0;
	memcpy(&v, p, n);
	h = hash_mix(v ^ 0x8EBC6AF09C88C6E3ull ^ n, h ^ 0x589965CC75374CC3ull);
	return hash_mix(h, 0x1D8E4E27C47D124Full) ^ h;
}

#endif
