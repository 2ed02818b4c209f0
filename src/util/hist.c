/*
 * util layer: log-scale latency histogram (see hist.h).
 */
#include "util/hist.h"

#include <math.h>
#include <string.h>

void lh_hist_init(struct lh_hist *h)
{
	memset(h, 0, sizeof *h);
}

static int bucket_of(double secs)
{
	double us = secs * 1e6;
	int i;
	if (us <= 1.0)
		return 0;
	i = (int)ceil(log10(us) * 10.0);
	if (i >= LH_HIST_BUCKETS)
		i = LH_HIST_BUCKETS - 1;
	return i;
}

void lh_hist_add(struct lh_hist *h, double secs)
{
	if (secs < 0)
		secs = 0;
	h->b[bucket_of(secs)]++;
	h->n++;
	h->sum += secs;
	if (secs > h->max)
		h->max = secs;
}

double lh_hist_quantile(const struct lh_hist *h, double q)
{
	uint64_t want, seen = 0;
	if (!h->n)
		return 0;
	want = (uint64_t)ceil(q * (double)h->n);
	if (want < 1)
		want = 1;
	for (int i = 0; i < LH_HIST_BUCKETS; i++) {
		seen += h->b[i];
		if (seen >= want) {
			double ub = pow(10.0, i / 10.0) / 1e6;
			return ub < h->max ? ub : h->max;
		}
	}
	return h->max;
}
