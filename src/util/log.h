/*
 * Logging to stderr. Messages follow the house style: lowercase, no final
 * period, "could not X: why". lh_warn/lh_fatal differ only in that fatal
 * exits (OpenBSD's warn/err habit).
 */
#ifndef LH_UTIL_LOG_H
#define LH_UTIL_LOG_H

#include "util/err.h"

enum lh_log_level { LH_LOG_DEBUG, LH_LOG_INFO, LH_LOG_WARN, LH_LOG_ERROR };

void lh_log_set_level(enum lh_log_level lvl);
void lh_log(enum lh_log_level lvl, const char *fmt, ...) LH_PRINTF(2, 3);
#define lh_debug(...) lh_log(LH_LOG_DEBUG, __VA_ARGS__)
#define lh_info(...) lh_log(LH_LOG_INFO, __VA_ARGS__)
#define lh_warn(...) lh_log(LH_LOG_WARN, __VA_ARGS__)
#define lh_error(...) lh_log(LH_LOG_ERROR, __VA_ARGS__)
/* Prints "longhaul: error: <formatted record>". */
void lh_log_err(const struct lh_err *e);

#endif
