/*
 * store layer (SQLite backend): the SQLite version, for `longhaul
 * --version`; only store/ includes sqlite3.h.
 */
#include "store/store.h"
#include "util/libver.h"

#include <sqlite3.h>

void lh_store_lib_version(struct lh_libver *v)
{
	lh_libver_set(v, "SQLite", SQLITE_VERSION, sqlite3_libversion());
}
