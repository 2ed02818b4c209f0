/*
 * Retry policy: exponential backoff with jitter.
 * delay(n) = min(cap, base * factor^(n-1)), then scaled by a uniform factor
 * in [1 - jitter, 1 + jitter]; n is the number of attempts made so far (1 after the first failure).
 * A server's Retry-After, when given, replaces the backoff (the server knows
 * when it will have room), floored at 0 and capped at one hour.
 */
#ifndef LH_ENGINE_RETRY_H
#define LH_ENGINE_RETRY_H

#include "util/rand.h"

struct lh_retry_policy {
	int max_attempts;   /* total attempts, default 5 */
	double base;        /* seconds, default 0.5 */
	double factor;      /* default 2 */
	double cap;         /* seconds, default 30 */
	double jitter;      /* fraction, default 0.2 */
};

void lh_retry_policy_default(struct lh_retry_policy *p);
/* Seconds to wait before the next attempt, after `attempts` attempts.
 * retry_after < 0 means none was given. */
double lh_retry_delay(const struct lh_retry_policy *p, int attempts, double retry_after, struct lh_rand *r);

#endif
