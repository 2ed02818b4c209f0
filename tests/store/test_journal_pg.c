/*
 * The journal conformance suite (test_journal.c) again, against PostgreSQL:
 * suite "store_journal_pg". Its tests skip unless LH_TEST_PG_URL is set
 * (scripts/pg-test.sh; `make test` runs them).
 */
#define LH_TEST_PG 1
#include "test_journal.c"
