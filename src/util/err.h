/*
 * Error records: a negative code plus a message with the place it refers to
 * (file, line, field). Inner layers fill or prefix the record and return the
 * code; the edge that talks to the user reports it once.
 */
#ifndef LH_UTIL_ERR_H
#define LH_UTIL_ERR_H

#include <stddef.h>

#define LH_WUR __attribute__((warn_unused_result))
#define LH_PRINTF(a, b) __attribute__((format(printf, a, b)))

enum lh_errcode {
	LH_OK = 0,
	LH_ENOMEM = -1,    /* allocation failed */
	LH_EIO = -2,       /* a file or socket could not be read or written */
	LH_EINPUT = -3,    /* bad input: a file, line or field is wrong */
	LH_ESTORE = -4,    /* the store failed (SQL error, locked, corrupt) */
	LH_EUSAGE = -5,    /* bad command-line usage */
	LH_ENOTFOUND = -6, /* no such job, item or file */
	LH_ESTATE = -7,    /* an illegal state transition */
	LH_EFENCED = -8,   /* a lease was lost: the fencing token moved on */
	LH_ECORRUPT = -9,  /* the store file is not a longhaul store or is damaged */
	LH_EBUSY = -10,    /* someone else holds the store or the resource */
	LH_EFULL = -11,    /* disk full */
	LH_ETOOBIG = -12,  /* a size from outside passed its limit */
	LH_EINTERNAL = -13 /* a broken invariant that was caught */
};

struct lh_err {
	int code;
	char msg[1024];
	char file[512]; /* input file the error is about, or "" */
	long line;      /* 1-based line in that file, or 0 */
	char field[128]; /* field name, or "" */
};

/* Resets the record to "no error". */
void lh_err_clear(struct lh_err *e);

/* Sets code and message; returns code so callers can `return lh_err_set(...)`.
 * e may be NULL (the error is then only returned). */
int lh_err_set(struct lh_err *e, int code, const char *fmt, ...) LH_PRINTF(3, 4);

/* Like lh_err_set, with the place: file (may be NULL), line (0 = none),
 * field (may be NULL). The message is stored without the place;
 * lh_err_format puts them together. */
int lh_err_at(struct lh_err *e, int code, const char *file, long line,
	      const char *field, const char *fmt, ...) LH_PRINTF(6, 7);

/* Prepends context ("could not open store: " + old message). Returns e->code. */
int lh_err_prefix(struct lh_err *e, const char *fmt, ...) LH_PRINTF(2, 3);

/* Writes "file:line: field \"f\": message" (the parts that are set) into out. */
void lh_err_format(const struct lh_err *e, char *out, size_t outsz);

/* A short stable name for a code ("bad_input", "store", ...). */
const char *lh_err_name(int code);

#endif
