/*
 * engine layer: lanes. A lane is the traffic to one (server URL, model):
 * every job that sends there shares it, so that when a server says "slow
 * down" the whole lane slows down. It carries the adaptive concurrency (a
 * 429 halves it, successes add it back), pauses (an x-ratelimit reset, the
 * breaker of an unreachable server) and the breaker's state. The engine's
 * dispatcher reads the fields directly; these functions make every change.
 */
#ifndef LH_ENGINE_LANE_H
#define LH_ENGINE_LANE_H

#include "llm/llm.h"

struct lh_lane {
	char *key;
	long limit, limit_max;
	long in_flight;
	double paused_until; /* mono seconds */
	double last_halve;
	long successes;
	int refs;
	/* circuit breaker for an unreachable server */
	int ever_ok;
	int conn_fails;
	double breaker_backoff;
	struct lh_lane *next;
};

/* The lane of (url, model) in the list *lanes, made with limit `limit`
 * when there is none; counted: give it back with lh_lane_put. Borrowed
 * from the list, which owns it. */
struct lh_lane *lh_lane_get(struct lh_lane **lanes, const char *url, const char *model, long limit);
/* Drops one reference; the last frees the lane. */
void lh_lane_put(struct lh_lane **lanes, struct lh_lane *l);

/* 1 when the lane may take one more request now (mono seconds). */
int lh_lane_open(const struct lh_lane *l, double now);
/* A 429, or a response that says the quota is spent: halve the limit (at
 * most once a second), and pause the lane until the server's reset. */
void lh_lane_backoff(struct lh_lane *l, const struct lh_llm_result *res, double now);
/* A success: the breaker closes; the limit grows back one at a time. */
void lh_lane_success(struct lh_lane *l);
/* The server could not be reached at all (the request never left, so no
 * attempt is used up). A few in a row open the breaker: nothing is sent
 * for a while (1 s, doubling up to 60 s), then one request at a time
 * probes, and successes widen the lane again. Returns the seconds until
 * the lane reopens. url names the server in the warning. */
double lh_lane_unreachable(struct lh_lane *l, const char *url, double now);
/* Opens the lane at its full limit at once (a server reached at last). */
void lh_lane_reopen(struct lh_lane *l);

#endif
