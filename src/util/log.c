/*
 * util layer: stderr logging (see log.h).
 */
#include "util/log.h"

#include <stdarg.h>
#include <stdio.h>

static enum lh_log_level min_level = LH_LOG_INFO;

void lh_log_set_level(enum lh_log_level lvl)
{
	min_level = lvl;
}

void lh_log(enum lh_log_level lvl, const char *fmt, ...)
{
	static const char *names[] = { "debug: ", "", "warning: ", "error: " };
	char line[2048];
	va_list ap;
	if (lvl < min_level)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	fprintf(stderr, "longhaul: %s%s\n", names[lvl], line);
}

void lh_log_err(const struct lh_err *e)
{
	char msg[2048];
	lh_err_format(e, msg, sizeof msg);
	lh_log(LH_LOG_ERROR, "%s", msg);
}
