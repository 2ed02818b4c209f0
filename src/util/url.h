/*
 * util layer: checking a server's base URL (url.c).
 */
#ifndef LH_UTIL_URL_H
#define LH_UTIL_URL_H

#include "util/err.h"

/* Checks a base URL before anything is stored or sent: the scheme is http
 * or https (any case) and a host follows "://" (a name, an IPv4 address or
 * a bracketed IPv6 one, with an optional :port of 1 to 65535). A path, a
 * query or a user name may follow; a password may not (it would be stored
 * with the job's settings and events: keys come from the environment).
 * Returns 0, or LH_EINPUT with e's message saying what is wrong (without
 * naming where the URL came from: the caller adds that). */
int lh_url_check_base(const char *url, struct lh_err *e) LH_WUR;

#endif
