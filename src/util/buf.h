/*
 * Growable byte buffer with a hard cap (curl's habit: every buffer that
 * holds outside data has a limit). Always NUL-terminated for convenience.
 */
#ifndef LH_UTIL_BUF_H
#define LH_UTIL_BUF_H

#include <stddef.h>
#include "util/err.h"

struct lh_buf {
	char *data;  /* owned; NULL until the first append */
	size_t len;
	size_t cap;
	size_t max;  /* 0 = no cap */
};

void lh_buf_init(struct lh_buf *b, size_t max);
void lh_buf_release(struct lh_buf *b);      /* frees data; b can be reused after init */
void lh_buf_clear(struct lh_buf *b);        /* len = 0, keeps memory */
/* Returns 0, or LH_ETOOBIG when the cap would be passed (nothing appended). */
int lh_buf_append(struct lh_buf *b, const void *p, size_t n) LH_WUR;
int lh_buf_puts(struct lh_buf *b, const char *s) LH_WUR;
int lh_buf_putc(struct lh_buf *b, char c) LH_WUR;
int lh_buf_printf(struct lh_buf *b, const char *fmt, ...) LH_WUR LH_PRINTF(2, 3);
/* Appends s (n bytes) as a JSON string literal, with quotes. */
int lh_buf_json_str(struct lh_buf *b, const char *s, size_t n) LH_WUR;
/* Takes the data out: returns it (new, caller frees) and resets b. */
char *lh_buf_steal(struct lh_buf *b);

#endif
