/*
 * store layer: the SQLite backend. Only store.c calls this; everything else
 * reaches the store through store.h.
 */
#ifndef LH_STORE_SQLITE_SQLITE_H
#define LH_STORE_SQLITE_SQLITE_H

#include "store/store.h"

/* Opens, creates (when o->create) and migrates the SQLite store at o->path;
 * the contract of lh_store_open. *out is a new handle, closed with
 * lh_store_close. */
int store_sqlite_open(const struct lh_store_opts *o, struct lh_store **out, struct lh_err *e) LH_WUR;

/* For tests of migrations: creates the store at path (or brings a newer
 * file no further) with the schema of version 1..STORE_SQLITE_SCHEMA, as the
 * build that wrote that version would have, and closes it. */
int store_sqlite_create_at(const char *path, int version, struct lh_err *e) LH_WUR;

/* The newest schema version this build writes (PRAGMA user_version). */
#define STORE_SQLITE_SCHEMA 4
/* PRAGMA application_id of a longhaul store: "LHul". */
#define STORE_SQLITE_APP_ID 0x4c48756c

#endif
