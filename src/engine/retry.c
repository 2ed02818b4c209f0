/*
 * engine layer: the retry policy (see retry.h). Exponential backoff with
 * jitter spreads the retries of many items that failed together, so a
 * recovering server is not hit by all of them in the same instant.
 */
#include "engine/retry.h"

/* A server that asks for more than an hour is treated as asking for an
 * hour: the lane is re-probed then rather than stalling a run for days. */
#define RETRY_AFTER_MAX 3600.0

void lh_retry_policy_default(struct lh_retry_policy *p)
{
	p->max_attempts = 5;
	p->base = 0.5;
	p->factor = 2.0;
	p->cap = 30.0;
	p->jitter = 0.2;
}

/* min(cap, base * factor^(attempts-1)), computed step by step so that a
 * large attempt count cannot overflow to infinity. */
static double backoff(const struct lh_retry_policy *p, int attempts)
{
	double d = p->base > 0 ? p->base : 0;
	double cap = p->cap > 0 ? p->cap : 0;
	for (int i = 1; i < attempts && d < cap; i++)
		d *= p->factor > 1 ? p->factor : 1;
	return d < cap ? d : cap;
}

double lh_retry_delay(const struct lh_retry_policy *p, int attempts, double retry_after, struct lh_rand *r)
{
	double d, j;
	/* The server knows its own load better than our guess does. */
	if (retry_after >= 0)
		return retry_after < RETRY_AFTER_MAX ? retry_after : RETRY_AFTER_MAX;
	d = backoff(p, attempts < 1 ? 1 : attempts);
	j = p->jitter > 0 ? (p->jitter < 1 ? p->jitter : 1) : 0;
	if (r && j > 0)
		d *= 1.0 - j + 2.0 * j * lh_rand_unit(r);
	/* Jitter may spread below the cap but never above it. */
	if (p->cap > 0 && d > p->cap)
		d = p->cap;
	return d;
}
