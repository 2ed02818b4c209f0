/*
 * store layer: the PostgreSQL backend. Only store.c calls this; everything
 * else reaches the store through store.h.
 */
#ifndef LH_STORE_POSTGRES_POSTGRES_H
#define LH_STORE_POSTGRES_POSTGRES_H

#include "store/store.h"

/* Connects to the PostgreSQL database o->path names (a postgresql:// or
 * postgres:// URL, libpq's syntax, without a password: that comes from
 * PGPASSWORD or ~/.pgpass), creates the schema there when o->create and it
 * has none, and migrates it; the contract of lh_store_open. Messages name
 * the URL with any password masked. *out is a new handle, closed with
 * lh_store_close. */
int store_pg_open(const struct lh_store_opts *o, struct lh_store **out, struct lh_err *e) LH_WUR;

/* The newest schema version this build writes (table lh_schema). */
#define STORE_PG_SCHEMA 1

/* Writes into out (n bytes) the URL with the password of its user info
 * and any password= parameter masked: safe for messages and logs. */
void store_pg_redact(const char *url, char *out, size_t n);

#endif
