/*
 * A fixed log-scale histogram for latencies (10 buckets per decade from
 * 1 microsecond to 100 seconds). Constant memory; quantiles are bucket upper
 * bounds, within about 26 % of the true value.
 */
#ifndef LH_UTIL_HIST_H
#define LH_UTIL_HIST_H

#include <stdint.h>

#define LH_HIST_BUCKETS 81

struct lh_hist {
	uint64_t b[LH_HIST_BUCKETS];
	uint64_t n;
	double sum;
	double max;
};

void lh_hist_init(struct lh_hist *h);
void lh_hist_add(struct lh_hist *h, double secs);
/* q in [0, 1]; returns seconds (0 when empty). */
double lh_hist_quantile(const struct lh_hist *h, double q);

#endif
