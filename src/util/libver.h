/*
 * The version of one library longhaul was built with, for `longhaul
 * --version`. The module that owns a library fills its record (llm/:
 * libcurl, store/: SQLite, api/: libmicrohttpd, io/: jansson and libfyaml,
 * util/: libcrypto), so that no other module includes the library's header.
 */
#ifndef LH_UTIL_LIBVER_H
#define LH_UTIL_LIBVER_H

struct lh_libver {
	char name[32];    /* "libcurl" */
	char built[32];   /* the version of the headers compiled against; "" when they do not say */
	char running[32]; /* the version the library reports at run time; "" when it cannot */
};

/* Fills v; built and running are borrowed and may be NULL (stored as "").
 * Longer strings are cut to fit. */
void lh_libver_set(struct lh_libver *v, const char *name, const char *built, const char *running);

/* libcrypto (OpenSSL), which util/hash.c uses. */
void lh_hash_lib_version(struct lh_libver *v);

#endif
