/*
 * Store tests: raw SQLite access to a store's file, for what only the file
 * shows (its format, damage made on purpose). The including file defines
 * `path`, the store file of the test.
 */
#ifndef LH_TESTS_STORE_SQLITE_FILE_H
#define LH_TESTS_STORE_SQLITE_FILE_H

#include <criterion/criterion.h>
#include <sqlite3.h>
#include <stdint.h>

static inline void sqlite_exec_at(const char *file, const char *sql)
{
	sqlite3 *db;

	cr_assert_eq(sqlite3_open(file, &db), SQLITE_OK);
	cr_assert_eq(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK, "%s", sqlite3_errmsg(db));
	sqlite3_close(db);
}

static inline int64_t sqlite_int_at(const char *file, const char *sql)
{
	sqlite3 *db;
	sqlite3_stmt *q;
	int64_t v = -1;

	cr_assert_eq(sqlite3_open(file, &db), SQLITE_OK);
	cr_assert_eq(sqlite3_prepare_v2(db, sql, -1, &q, NULL), SQLITE_OK, "%s", sqlite3_errmsg(db));
	if (sqlite3_step(q) == SQLITE_ROW)
		v = sqlite3_column_int64(q, 0);
	sqlite3_finalize(q);
	sqlite3_close(db);
	return v;
}

#define sqlite_exec(sql) sqlite_exec_at(path, (sql))
#define sqlite_int(sql) sqlite_int_at(path, (sql))

#endif
