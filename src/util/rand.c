/*
 * util layer: splitmix64 PRNG (see rand.h).
 */
#include "util/rand.h"

#include <time.h>
#include <unistd.h>

void lh_rand_seed(struct lh_rand *r, uint64_t seed)
{
	if (!seed) {
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		seed = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^ ((uint64_t)getpid() << 40);
	}
	r->s = seed;
}

uint64_t lh_rand_u64(struct lh_rand *r)
{
	uint64_t z = (r->s += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

double lh_rand_unit(struct lh_rand *r)
{
	return (double)(lh_rand_u64(r) >> 11) * (1.0 / 9007199254740992.0);
}
