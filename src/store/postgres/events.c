/*
 * store layer: the PostgreSQL backend's events: numbered per job (the
 * counter in the job's row, moved on under its row lock) and globally (an
 * identity, taken under one advisory lock so that events commit in gseq
 * order; docs/store.md, "PostgreSQL").
 */
#include "store/postgres/postgres_internal.h"

#include <stdio.h>

int pg_event_add(struct lh_store *st, int64_t job, double ts, const char *type, const char *item_key,
			const char *data, int64_t *seq, struct lh_err *e)
{
	struct pg_store *s = pgs(st);
	struct pg_args a;
	PGresult *r = NULL;
	int own, rc;

	/* The job's row holds its counter: the UPDATE that moves it on locks
	 * the row until the transaction ends, so a job's numbers have no gaps
	 * or repeats. The global number comes from the identity sequence under
	 * one advisory lock held to the end of the transaction, so that events
	 * commit in gseq order and a reader never sees a later number before
	 * an earlier one (docs/store.md). */
	*seq = 0;
	rc = pg_tx_enter(s, &own, e);
	if (rc == 0)
		rc = pg_run(s, Q_EVENT_ORDER, NULL, NULL, NULL, e, "order an event");
	if (rc == 0) {
		pg_args_init(&a);
		pg_arg_i64(&a, job);
		pg_arg_f(&a, ts);
		pg_arg_s(&a, type);
		pg_arg_s(&a, item_key);
		pg_arg_s(&a, data);
		rc = pg_run(s, Q_EVENT_ADD, &a, &r, NULL, e, "add an event");
	}
	if (rc == 0 && PQntuples(r) != 1)
		rc = lh_err_set(e, LH_ENOTFOUND, "could not add an event: no job %lld", (long long)job);
	if (rc == 0)
		*seq = pg_i64(r, 0, 0);
	PQclear(r);
	rc = pg_tx_leave(s, own, rc, e);
	if (rc)
		*seq = 0;
	return rc;
}

static int walk_events(struct pg_store *s, enum pg_query id, struct pg_args *a, lh_event_fn fn, void *arg,
		       struct lh_err *e, const char *what)
{
	PGresult *r;
	int i, rc, ret = 0;

	rc = pg_run(s, id, a, &r, NULL, e, what);
	if (rc)
		return rc;
	for (i = 0; i < PQntuples(r) && ret == 0; i++) {
		struct lh_event_view v;

		v.gseq = pg_i64(r, i, 0);
		v.job = pg_i64(r, i, 1);
		v.seq = pg_i64(r, i, 2);
		v.ts = pg_f(r, i, 3);
		v.type = pg_s(r, i, 4);
		v.item_key = pg_s(r, i, 5);
		v.data = pg_s(r, i, 6);
		ret = fn(&v, arg);
	}
	PQclear(r);
	return ret;
}

static void arg_limit(struct pg_args *a, size_t limit)
{
	if (limit)
		pg_arg_i64(a, limit > (size_t)INT64_MAX ? INT64_MAX : (int64_t)limit);
	else
		pg_arg_s(a, NULL);
}

int pg_events_each(struct lh_store *st, int64_t job, int64_t after, size_t limit, lh_event_fn fn,
			  void *arg, struct lh_err *e)
{
	struct pg_args a;
	char what[64];

	snprintf(what, sizeof what, "list the events of job %lld", (long long)job);
	pg_args_init(&a);
	pg_arg_i64(&a, job);
	pg_arg_i64(&a, after);
	arg_limit(&a, limit);
	return walk_events(pgs(st), Q_EVENTS_EACH, &a, fn, arg, e, what);
}

int pg_events_all_each(struct lh_store *st, int64_t after_gseq, size_t limit, lh_event_fn fn, void *arg,
			      struct lh_err *e)
{
	struct pg_args a;

	pg_args_init(&a);
	pg_arg_i64(&a, after_gseq);
	arg_limit(&a, limit);
	return walk_events(pgs(st), Q_EVENTS_ALL, &a, fn, arg, e, "list the events of every job");
}

