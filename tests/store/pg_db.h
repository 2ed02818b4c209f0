/*
 * Store tests on PostgreSQL: a fresh database per test. LH_TEST_PG_URL
 * names a maintenance database (scripts/pg-test.sh sets it); each test
 * creates databases of its own there and drops them at the end, so that
 * every test starts from an empty store. Without LH_TEST_PG_URL the
 * PostgreSQL suites skip their tests.
 */
#ifndef LH_TESTS_STORE_PG_DB_H
#define LH_TESTS_STORE_PG_DB_H

#include <criterion/criterion.h>
#include <libpq-fe.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PG_DB_MAX 4
static char pg_url[600];        /* the URL of the test's newest database */
static char pg_dbs[PG_DB_MAX][64];
static int pg_ndb;

static inline void pg_admin(const char *sql)
{
	PGconn *c = PQconnectdb(getenv("LH_TEST_PG_URL"));
	PGresult *r;

	cr_assert_eq(PQstatus(c), CONNECTION_OK, "%s", PQerrorMessage(c));
	r = PQexec(c, sql);
	cr_assert_eq(PQresultStatus(r), PGRES_COMMAND_OK, "%s: %s", sql, PQerrorMessage(c));
	PQclear(r);
	PQfinish(c);
}

/* Creates an empty database and points pg_url at it. */
static inline void pg_db_create(void)
{
	const char *base = getenv("LH_TEST_PG_URL");
	const char *scheme, *slash, *query;
	char sql[128];

	if (!base || !base[0])
		cr_skip_test("LH_TEST_PG_URL is not set (run through scripts/pg-test.sh)");
	cr_assert_lt(pg_ndb, PG_DB_MAX);
	snprintf(pg_dbs[pg_ndb], sizeof pg_dbs[0], "lh_t_%d_%d", (int)getpid(), pg_ndb);
	snprintf(sql, sizeof sql, "CREATE DATABASE %s", pg_dbs[pg_ndb]);
	pg_admin(sql);
	/* The same URL with the database name replaced. */
	scheme = strstr(base, "://");
	cr_assert_not_null(scheme);
	slash = strchr(scheme + 3, '/');
	query = strchr(base, '?');
	if (!slash || (query && slash > query))
		slash = query ? query : base + strlen(base);
	snprintf(pg_url, sizeof pg_url, "%.*s/%s%s", (int)(slash - base), base, pg_dbs[pg_ndb], query ? query : "");
	pg_ndb++;
}

static inline void pg_db_drop_all(void)
{
	char sql[128];

	while (pg_ndb > 0) {
		pg_ndb--;
		snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", pg_dbs[pg_ndb]);
		pg_admin(sql);
	}
}

/* Runs SQL on the test's database (damage made on purpose). */
static inline void pg_exec(const char *sql)
{
	PGconn *c = PQconnectdb(pg_url);
	PGresult *r;

	cr_assert_eq(PQstatus(c), CONNECTION_OK, "%s", PQerrorMessage(c));
	r = PQexec(c, sql);
	cr_assert(PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK, "%s: %s", sql,
		  PQerrorMessage(c));
	PQclear(r);
	PQfinish(c);
}

static inline int64_t pg_int(const char *sql)
{
	PGconn *c = PQconnectdb(pg_url);
	PGresult *r;
	int64_t v = -1;

	cr_assert_eq(PQstatus(c), CONNECTION_OK, "%s", PQerrorMessage(c));
	r = PQexec(c, sql);
	cr_assert_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s: %s", sql, PQerrorMessage(c));
	if (PQntuples(r) > 0 && !PQgetisnull(r, 0, 0))
		v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	PQclear(r);
	PQfinish(c);
	return v;
}

#endif
