/*
 * util layer: error records (see err.h).
 */
#include "util/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void lh_err_clear(struct lh_err *e)
{
	if (!e)
		return;
	e->code = 0;
	e->msg[0] = e->file[0] = e->field[0] = '\0';
	e->line = 0;
}

static void copy_str(char *dst, size_t dstsz, const char *src)
{
	size_t n = src ? strlen(src) : 0;
	if (n >= dstsz)
		n = dstsz - 1;
	if (n)
		memcpy(dst, src, n);
	dst[n] = '\0';
}

int lh_err_set(struct lh_err *e, int code, const char *fmt, ...)
{
	va_list ap;
	if (!e)
		return code;
	lh_err_clear(e);
	e->code = code;
	va_start(ap, fmt);
	vsnprintf(e->msg, sizeof e->msg, fmt, ap);
	va_end(ap);
	return code;
}

int lh_err_at(struct lh_err *e, int code, const char *file, long line,
	      const char *field, const char *fmt, ...)
{
	va_list ap;
	if (!e)
		return code;
	lh_err_clear(e);
	e->code = code;
	copy_str(e->file, sizeof e->file, file);
	copy_str(e->field, sizeof e->field, field);
	e->line = line;
	va_start(ap, fmt);
	vsnprintf(e->msg, sizeof e->msg, fmt, ap);
	va_end(ap);
	return code;
}

int lh_err_prefix(struct lh_err *e, const char *fmt, ...)
{
	char head[512], old[sizeof e->msg];
	va_list ap;
	if (!e)
		return LH_EINTERNAL;
	va_start(ap, fmt);
	vsnprintf(head, sizeof head, fmt, ap);
	va_end(ap);
	memcpy(old, e->msg, sizeof old);
	/* Truncation is fine here: the message stays NUL-terminated. */
	{
		size_t hl = strlen(head), ol = strlen(old);
		if (hl > sizeof e->msg - 3)
			hl = sizeof e->msg - 3;
		memcpy(e->msg, head, hl);
		memcpy(e->msg + hl, ": ", 2);
		if (ol > sizeof e->msg - hl - 3)
			ol = sizeof e->msg - hl - 3;
		memcpy(e->msg + hl + 2, old, ol);
		e->msg[hl + 2 + ol] = '\0';
	}
	return e->code;
}

void lh_err_format(const struct lh_err *e, char *out, size_t outsz)
{
	size_t n = 0;
	if (!outsz)
		return;
	out[0] = '\0';
	if (e->file[0]) {
		if (e->line > 0)
			n += (size_t)snprintf(out + n, outsz - n, "%s:%ld: ", e->file, e->line);
		else
			n += (size_t)snprintf(out + n, outsz - n, "%s: ", e->file);
	}
	if (n < outsz && e->field[0])
		n += (size_t)snprintf(out + n, outsz - n, "field \"%s\": ", e->field);
	if (n < outsz)
		snprintf(out + n, outsz - n, "%s", e->msg);
}

const char *lh_err_name(int code)
{
	switch (code) {
	case LH_OK: return "ok";
	case LH_ENOMEM: return "out_of_memory";
	case LH_EIO: return "io";
	case LH_EINPUT: return "bad_input";
	case LH_ESTORE: return "store";
	case LH_EUSAGE: return "usage";
	case LH_ENOTFOUND: return "not_found";
	case LH_ESTATE: return "illegal_transition";
	case LH_EFENCED: return "fenced";
	case LH_ECORRUPT: return "corrupt_store";
	case LH_EBUSY: return "busy";
	case LH_EFULL: return "disk_full";
	case LH_ETOOBIG: return "too_large";
	default: return "internal";
	}
}
