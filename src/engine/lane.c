/*
 * engine layer: lanes, the traffic to one (server, model) shared by every
 * job that sends there (see lane.h).
 */
#include "engine/lane.h"
#include "util/log.h"
#include "util/mem.h"

#include <stdio.h>
#include <string.h>

struct lh_lane *lh_lane_get(struct lh_lane **lanes, const char *url, const char *model, long limit)
{
	char key[2048];
	struct lh_lane *l;
	snprintf(key, sizeof key, "%s\n%s", url, model ? model : "");
	for (l = *lanes; l; l = l->next)
		if (!strcmp(l->key, key)) {
			l->refs++;
			return l;
		}
	l = lh_xcalloc(1, sizeof *l);
	l->key = lh_xstrdup(key);
	l->limit = l->limit_max = limit;
	l->refs = 1;
	l->next = *lanes;
	*lanes = l;
	return l;
}

void lh_lane_put(struct lh_lane **lanes, struct lh_lane *l)
{
	struct lh_lane **p;
	if (--l->refs > 0)
		return;
	for (p = lanes; *p; p = &(*p)->next)
		if (*p == l) {
			*p = l->next;
			break;
		}
	lh_free(l->key);
	lh_free(l);
}

int lh_lane_open(const struct lh_lane *l, double now)
{
	return l->in_flight < l->limit && now >= l->paused_until;
}

void lh_lane_backoff(struct lh_lane *l, const struct lh_llm_result *res, double now)
{
	/* Multiplicative decrease, at most once a second, so that one burst of
	 * 429s does not collapse the lane to 1. */
	if (now - l->last_halve >= 1.0 && l->limit > 1) {
		l->limit /= 2;
		if (l->limit < 1)
			l->limit = 1;
		l->last_halve = now;
		l->successes = 0;
	}
	/* A server that says the lane's quota is spent pauses the whole lane. */
	if (res->ratelimit_remaining_requests == 0 && res->ratelimit_reset_requests > 0) {
		double until = now + res->ratelimit_reset_requests;
		if (until > l->paused_until)
			l->paused_until = until;
	}
}

void lh_lane_success(struct lh_lane *l)
{
	l->ever_ok = 1;
	l->conn_fails = 0;
	l->breaker_backoff = 0;
	if (l->limit < l->limit_max && ++l->successes >= l->limit / 4 + 1) {
		l->limit++;
		l->successes = 0;
	}
}

double lh_lane_unreachable(struct lh_lane *l, const char *url, double now)
{
	if (++l->conn_fails >= 3 && now >= l->paused_until) {
		l->breaker_backoff = l->breaker_backoff > 0 ? l->breaker_backoff * 2 : 1;
		if (l->breaker_backoff > 60)
			l->breaker_backoff = 60;
		l->paused_until = now + l->breaker_backoff;
		l->limit = 1;
		l->successes = 0;
		lh_warn("could not connect to %s: pausing its requests for %.0fs", url, l->breaker_backoff);
	}
	return l->paused_until > now ? l->paused_until - now : 0.5;
}

void lh_lane_reopen(struct lh_lane *l)
{
	l->limit = l->limit_max;
	l->paused_until = 0;
}
