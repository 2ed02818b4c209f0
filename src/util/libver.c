/*
 * util layer: version records of the libraries longhaul links (libver.h),
 * and libcrypto's own, since util/ is the layer that uses it.
 */
#include "util/libver.h"

#include <openssl/crypto.h>
#include <openssl/opensslv.h>
#include <stdio.h>

void lh_libver_set(struct lh_libver *v, const char *name, const char *built, const char *running)
{
	snprintf(v->name, sizeof v->name, "%s", name ? name : "");
	snprintf(v->built, sizeof v->built, "%s", built ? built : "");
	snprintf(v->running, sizeof v->running, "%s", running ? running : "");
}

void lh_hash_lib_version(struct lh_libver *v)
{
#if OPENSSL_VERSION_MAJOR >= 3
	lh_libver_set(v, "OpenSSL", OPENSSL_VERSION_STR, OpenSSL_version(OPENSSL_VERSION_STRING));
#else
	/* Before 3.0 only the long text exists: "OpenSSL 1.1.1w  11 Sep 2023". */
	lh_libver_set(v, "OpenSSL", OPENSSL_VERSION_TEXT, OpenSSL_version(OPENSSL_VERSION));
#endif
}
