/*
 * engine layer: rate and ETA arithmetic (see progress.h).
 */
#include "engine/progress.h"

#include <string.h>

void lh_rate_init(struct lh_rate *r, double window)
{
	memset(r, 0, sizeof *r);
	r->window = window;
	r->min_gap = window / (LH_RATE_SLOTS / 2);
}

void lh_rate_add(struct lh_rate *r, double t, double value)
{
	int last = (r->head + LH_RATE_SLOTS - 1) % LH_RATE_SLOTS;
	if (r->n >= 2) {
		int prev = (r->head + LH_RATE_SLOTS - 2) % LH_RATE_SLOTS;
		if (t - r->t[prev] < r->min_gap) {
			/* Keep the slot count bounded by overwriting a too-recent sample. */
			r->t[last] = t;
			r->v[last] = value;
			return;
		}
	}
	r->t[r->head] = t;
	r->v[r->head] = value;
	r->head = (r->head + 1) % LH_RATE_SLOTS;
	if (r->n < LH_RATE_SLOTS)
		r->n++;
}

double lh_rate_per_sec(const struct lh_rate *r)
{
	int last, first, i;
	double dt;
	if (r->n < 2)
		return 0;
	last = (r->head + LH_RATE_SLOTS - 1) % LH_RATE_SLOTS;
	first = last;
	for (i = 1; i < r->n; i++) {
		int k = (last + LH_RATE_SLOTS - i) % LH_RATE_SLOTS;
		first = k;
		if (r->t[last] - r->t[k] >= r->window)
			break;
	}
	dt = r->t[last] - r->t[first];
	if (dt <= 0)
		return 0;
	return (r->v[last] - r->v[first]) / dt;
}

double lh_eta(double remaining, double rate)
{
	if (remaining <= 0)
		return 0;
	if (rate <= 0)
		return -1;
	return remaining / rate;
}

void lh_pipeline_work(int64_t total, int64_t dead, size_t nsteps, const int64_t *steps_done, const double *cost,
		      double *done, double *left)
{
	*done = *left = 0;
	for (size_t i = 0; i < nsteps; i++) {
		double w = cost && cost[i] > 0 ? cost[i] : 1;
		int64_t ahead = total - dead - steps_done[i];
		*done += (double)steps_done[i] * w;
		if (ahead > 0)
			*left += (double)ahead * w;
	}
}
