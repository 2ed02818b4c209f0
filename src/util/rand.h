/*
 * A small fast PRNG (xoshiro-style splitmix) for jitter. Not for secrets.
 */
#ifndef LH_UTIL_RAND_H
#define LH_UTIL_RAND_H

#include <stdint.h>

struct lh_rand { uint64_t s; };

void lh_rand_seed(struct lh_rand *r, uint64_t seed); /* seed 0 = from the clock and pid */
uint64_t lh_rand_u64(struct lh_rand *r);
double lh_rand_unit(struct lh_rand *r); /* uniform in [0, 1) */

#endif
