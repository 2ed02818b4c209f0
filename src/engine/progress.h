/*
 * Progress arithmetic: recent rate over a sliding window and the ETA.
 * Pure functions of the samples they are given, so they are unit-tested
 * without clocks.
 */
#ifndef LH_ENGINE_PROGRESS_H
#define LH_ENGINE_PROGRESS_H

#include <stddef.h>
#include <stdint.h>

#define LH_RATE_SLOTS 64

/* Samples of a monotonically growing counter; the rate is measured over the
 * last `window` seconds (or since the first sample when younger). */
struct lh_rate {
	double t[LH_RATE_SLOTS];
	double v[LH_RATE_SLOTS];
	int head, n;
	double window;
	double min_gap; /* samples closer than this to the last are merged */
};

void lh_rate_init(struct lh_rate *r, double window);
void lh_rate_add(struct lh_rate *r, double t, double value);
/* Units per second over the window ending at the last sample; 0 when
 * fewer than two samples or no time has passed. */
double lh_rate_per_sec(const struct lh_rate *r);
/* Seconds left for `remaining` units at `rate`; -1 when unknown. */
double lh_eta(double remaining, double rate);

/* A pipeline's work in LLM turns: each step counts its expected turns
 * (cost[i]: 1, or a loop's mean so far; NULL: all 1). *done = the turns
 * of the steps items are past; *left = those still ahead of the items that
 * are not dead. The ETA is *left over the recent rate of *done. */
void lh_pipeline_work(int64_t total, int64_t dead, size_t nsteps, const int64_t *steps_done, const double *cost,
		      double *done, double *left);

#endif
