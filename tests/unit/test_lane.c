/*
 * Unit tests: engine/lane.c, the traffic to one (server, model) shared by
 * the jobs that send there.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "engine/lane.h"

Test(lane, jobs_of_one_server_and_model_share_a_lane)
{
	struct lh_lane *lanes = NULL, *a, *b, *c;
	a = lh_lane_get(&lanes, "http://x/v1/chat/completions", "m", 8);
	b = lh_lane_get(&lanes, "http://x/v1/chat/completions", "m", 99);
	c = lh_lane_get(&lanes, "http://x/v1/chat/completions", "other", 8);
	cr_assert_eq(a, b);
	cr_assert_neq(a, c);
	cr_assert_eq(a->refs, 2);
	cr_assert_eq(a->limit, 8, "the first job's limit stands");
	lh_lane_put(&lanes, a);
	cr_assert_eq(lanes ? 1 : 0, 1);
	lh_lane_put(&lanes, b);
	lh_lane_put(&lanes, c);
	cr_assert_null(lanes, "the last reference frees the lane");
}

Test(lane, a_429_halves_at_most_once_a_second_and_successes_add_back)
{
	struct lh_lane *lanes = NULL, *l = lh_lane_get(&lanes, "u", NULL, 16);
	struct lh_llm_result r;
	memset(&r, 0, sizeof r);
	r.ratelimit_remaining_requests = -1;
	lh_lane_backoff(l, &r, 100.0);
	cr_assert_eq(l->limit, 8);
	lh_lane_backoff(l, &r, 100.5);
	cr_assert_eq(l->limit, 8, "a burst of 429s does not collapse the lane");
	lh_lane_backoff(l, &r, 101.0);
	cr_assert_eq(l->limit, 4);
	for (int i = 0; i < 2; i++)
		lh_lane_success(l);
	cr_assert_eq(l->limit, 5);
	cr_assert(lh_lane_open(l, 200.0));
	l->in_flight = 5;
	cr_assert_not(lh_lane_open(l, 200.0), "full");
	lh_lane_put(&lanes, l);
}

Test(lane, a_spent_quota_pauses_the_lane_until_its_reset)
{
	struct lh_lane *lanes = NULL, *l = lh_lane_get(&lanes, "u", NULL, 4);
	struct lh_llm_result r;
	memset(&r, 0, sizeof r);
	r.ratelimit_remaining_requests = 0;
	r.ratelimit_reset_requests = 6;
	lh_lane_backoff(l, &r, 10.0);
	cr_assert_not(lh_lane_open(l, 15.9));
	cr_assert(lh_lane_open(l, 16.0));
	lh_lane_put(&lanes, l);
}

Test(lane, the_breaker_opens_after_three_refusals_and_backs_off)
{
	struct lh_lane *lanes = NULL, *l = lh_lane_get(&lanes, "u", NULL, 4);
	cr_assert_eq(lh_lane_unreachable(l, "u", 0.0), 0.5);
	cr_assert_eq(lh_lane_unreachable(l, "u", 0.0), 0.5);
	cr_assert_eq(lh_lane_unreachable(l, "u", 0.0), 1.0, "the third opens the breaker for 1 s");
	cr_assert_eq(l->limit, 1, "then one request at a time probes");
	cr_assert_eq(lh_lane_unreachable(l, "u", 1.0), 2.0, "doubling");
	lh_lane_success(l);
	cr_assert_eq(l->conn_fails, 0);
	cr_assert_eq(l->breaker_backoff, 0);
	lh_lane_reopen(l);
	cr_assert_eq(l->limit, 4);
	cr_assert(lh_lane_open(l, 1.5));
	lh_lane_put(&lanes, l);
}
