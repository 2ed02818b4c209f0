/* Unit tests: progress arithmetic (rate window, ETA, percent) and the job state machine. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "engine/jobstate.h"
#include "engine/progress.h"
#include "engine/report.h"

Test(progress, rate_over_window)
{
	struct lh_rate r;
	lh_rate_init(&r, 10.0);
	cr_assert_eq(lh_rate_per_sec(&r), 0);
	lh_rate_add(&r, 0, 0);
	cr_assert_eq(lh_rate_per_sec(&r), 0);
	/* 100 items/s for 20 s, then 10 items/s for 20 s: the window sees only the recent pace. */
	for (int t = 1; t <= 20; t++)
		lh_rate_add(&r, t, t * 100.0);
	cr_assert_float_eq(lh_rate_per_sec(&r), 100.0, 1e-9);
	for (int t = 21; t <= 40; t++)
		lh_rate_add(&r, t, 2000.0 + (t - 20) * 10.0);
	cr_assert_float_eq(lh_rate_per_sec(&r), 10.0, 1e-9);
}

Test(progress, rate_merges_close_samples)
{
	struct lh_rate r;
	lh_rate_init(&r, 10.0);
	/* 10,000 samples 1 ms apart stay within the fixed slots and still give the right rate. */
	for (int i = 0; i <= 10000; i++)
		lh_rate_add(&r, i * 0.001, i * 5.0);
	cr_assert(fabs(lh_rate_per_sec(&r) - 5000.0) < 1.0, "rate %f", lh_rate_per_sec(&r));
	cr_assert(r.n <= LH_RATE_SLOTS);
}

Test(progress, eta)
{
	cr_assert_float_eq(lh_eta(100, 10), 10.0, 1e-9);
	cr_assert_eq(lh_eta(100, 0), -1);
	cr_assert_eq(lh_eta(0, 0), 0);
}

Test(progress, pipeline_work_weighs_loops_by_their_turns)
{
	int64_t done[3] = { 10, 6, 2 };   /* 10 items: past step 0, 1, 2 */
	double cost[3] = { 1, 8, 1 };     /* step 1 is a loop of 8 turns on average */
	double d, l;
	lh_pipeline_work(10, 0, 3, done, cost, &d, &l);
	cr_assert_float_eq(d, 10 + 6 * 8 + 2, 1e-9);
	cr_assert_float_eq(l, 0 + 4 * 8 + 8, 1e-9);
	/* Dead items have nothing ahead; unknown costs count 1. */
	lh_pipeline_work(10, 2, 3, done, NULL, &d, &l);
	cr_assert_float_eq(d, 18, 1e-9);
	cr_assert_float_eq(l, 0 + 2 + 6, 1e-9);
}

Test(progress, percent_and_json)
{
	struct lh_progress_view p;
	memset(&p, 0, sizeof p);
	p.total = 200;
	p.done = 45;
	p.dead = 5;
	p.eta = -1;
	p.state = "running";
	cr_assert_float_eq(lh_progress_percent(&p), 25.0, 1e-9);
	char *s = lh_report_progress_to_json("j", &p);
	cr_assert(strstr(s, "\"percent\": 25") != NULL, "%s", s);
	cr_assert(strstr(s, "\"eta_sec\": null") != NULL, "%s", s);
	cr_assert(strstr(s, "\"failed\": 5") != NULL, "%s", s);
	free(s);
	p.total = 0;
	cr_assert_float_eq(lh_progress_percent(&p), 100.0, 1e-9);
}

Test(jobstate, legal_and_illegal)
{
	cr_assert(lh_job_transition_ok(LH_JOB_QUEUED, LH_JOB_RUNNING));
	cr_assert(lh_job_transition_ok(LH_JOB_RUNNING, LH_JOB_PAUSED));
	cr_assert(lh_job_transition_ok(LH_JOB_PAUSED, LH_JOB_RUNNING));
	cr_assert(lh_job_transition_ok(LH_JOB_RUNNING, LH_JOB_COMPLETED));
	cr_assert(lh_job_transition_ok(LH_JOB_COMPLETED, LH_JOB_QUEUED));
	cr_assert_not(lh_job_transition_ok(LH_JOB_COMPLETED, LH_JOB_RUNNING));
	cr_assert_not(lh_job_transition_ok(LH_JOB_CANCELLED, LH_JOB_RUNNING));
	cr_assert_not(lh_job_transition_ok(LH_JOB_QUEUED, LH_JOB_COMPLETED));
	cr_assert_not(lh_job_transition_ok(LH_JOB_RUNNING, LH_JOB_RUNNING));
	cr_assert_not(lh_job_transition_ok(lh_job_state_of("bogus"), LH_JOB_RUNNING));
	cr_assert_not(lh_job_transition_ok(LH_JOB_RUNNING, LH_JOB_UNKNOWN));
	cr_assert(lh_job_state_final(LH_JOB_TIMED_OUT));
	cr_assert_not(lh_job_state_final(LH_JOB_PAUSED));
	cr_assert_not(lh_job_state_final(LH_JOB_UNKNOWN));
}

Test(jobstate, names_round_trip)
{
	static const char *const names[] = { "queued", "running", "paused", "completed",
					     "failed", "cancelled", "timed_out" };
	cr_assert_eq(sizeof names / sizeof names[0], LH_JOB_NSTATES);
	for (int i = 0; i < LH_JOB_NSTATES; i++) {
		cr_assert_str_eq(lh_job_state_name((enum lh_job_state)i), names[i]);
		cr_assert_eq(lh_job_state_of(names[i]), (enum lh_job_state)i);
	}
	cr_assert_eq(lh_job_state_of(NULL), LH_JOB_UNKNOWN);
	cr_assert_eq(lh_job_state_of(""), LH_JOB_UNKNOWN);
	cr_assert_eq(lh_job_state_of("Running"), LH_JOB_UNKNOWN);
	cr_assert_str_eq(lh_job_state_name(LH_JOB_UNKNOWN), "unknown");
	cr_assert_str_eq(lh_job_state_name(LH_JOB_NSTATES), "unknown");
}
