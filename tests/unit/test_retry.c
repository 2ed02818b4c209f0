/* Unit tests: the retry policy (backoff bounds, the cap, Retry-After). */
#include <criterion/criterion.h>
#include <math.h>

#include "engine/retry.h"

Test(retry, defaults)
{
	struct lh_retry_policy p;
	lh_retry_policy_default(&p);
	cr_assert_eq(p.max_attempts, 5);
	cr_assert_float_eq(p.base, 0.5, 1e-12);
	cr_assert_float_eq(p.factor, 2.0, 1e-12);
	cr_assert_float_eq(p.cap, 30.0, 1e-12);
	cr_assert_float_eq(p.jitter, 0.2, 1e-12);
}

Test(retry, backoff_within_jitter_bounds)
{
	struct lh_retry_policy p;
	struct lh_rand r;
	lh_retry_policy_default(&p);
	lh_rand_seed(&r, 12345);
	for (int n = 1; n <= 12; n++) {
		double nominal = fmin(p.cap, p.base * pow(2, n - 1));
		double lo = 1e9, hi = 0;
		for (int i = 0; i < 2000; i++) {
			double d = lh_retry_delay(&p, n, -1, &r);
			cr_assert(d >= 0.8 * nominal - 1e-9 && d <= 1.2 * nominal + 1e-9,
				  "attempt %d: %f outside [%f, %f]", n, d, 0.8 * nominal, 1.2 * nominal);
			cr_assert(d <= p.cap + 1e-9, "attempt %d: %f above the cap", n, d);
			lo = fmin(lo, d);
			hi = fmax(hi, d);
		}
		/* The jitter really spreads the delays. */
		cr_assert(hi - lo > 0.15 * nominal, "attempt %d: spread %f too small", n, hi - lo);
	}
}

Test(retry, no_jitter_is_exact)
{
	struct lh_retry_policy p;
	struct lh_rand r;
	lh_retry_policy_default(&p);
	p.jitter = 0;
	lh_rand_seed(&r, 1);
	cr_assert_float_eq(lh_retry_delay(&p, 1, -1, &r), 0.5, 1e-12);
	cr_assert_float_eq(lh_retry_delay(&p, 2, -1, &r), 1.0, 1e-12);
	cr_assert_float_eq(lh_retry_delay(&p, 4, -1, &r), 4.0, 1e-12);
	cr_assert_float_eq(lh_retry_delay(&p, 7, -1, &r), 30.0, 1e-12);
	/* No generator: no jitter either. */
	lh_retry_policy_default(&p);
	cr_assert_float_eq(lh_retry_delay(&p, 3, -1, NULL), 2.0, 1e-12);
}

Test(retry, huge_attempt_counts_stay_finite)
{
	struct lh_retry_policy p;
	struct lh_rand r;
	lh_retry_policy_default(&p);
	lh_rand_seed(&r, 2);
	for (int n = 1000; n < 1000000; n *= 7) {
		double d = lh_retry_delay(&p, n, -1, &r);
		cr_assert(isfinite(d) && d <= p.cap && d >= 0.8 * p.cap);
	}
	cr_assert_float_eq(lh_retry_delay(&p, 0, -1, NULL), 0.5, 1e-12, "0 attempts counts as 1");
}

Test(retry, retry_after_is_honoured)
{
	struct lh_retry_policy p;
	struct lh_rand r;
	lh_retry_policy_default(&p);
	lh_rand_seed(&r, 3);
	cr_assert_float_eq(lh_retry_delay(&p, 1, 7, &r), 7.0, 1e-12);
	/* Shorter than our backoff: the server still knows best. */
	cr_assert_float_eq(lh_retry_delay(&p, 6, 0.25, &r), 0.25, 1e-12);
	cr_assert_float_eq(lh_retry_delay(&p, 3, 0, &r), 0.0, 1e-12);
	/* Longer than the backoff cap is fine, up to an hour. */
	cr_assert_float_eq(lh_retry_delay(&p, 1, 120, &r), 120.0, 1e-12);
	cr_assert_float_eq(lh_retry_delay(&p, 1, 86400, &r), 3600.0, 1e-12);
	cr_assert_float_eq(lh_retry_delay(&p, 1, INFINITY, &r), 3600.0, 1e-12);
	/* Negative or NaN means none was given. */
	cr_assert(lh_retry_delay(&p, 1, NAN, &r) <= 0.6);
}
