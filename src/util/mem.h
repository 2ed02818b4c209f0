/*
 * Allocation goes through these wrappers so that tests can make the Nth
 * allocation fail (fault injection, as SQLite and curl do).
 * lh_x* variants abort on failure: used where running out of memory leaves
 * nothing sensible to do (the store is the truth; a restart recovers).
 */
#ifndef LH_UTIL_MEM_H
#define LH_UTIL_MEM_H

#include <stddef.h>

void *lh_malloc(size_t n);            /* NULL on failure */
void *lh_realloc(void *p, size_t n);  /* NULL on failure, p untouched */
void lh_free(void *p);

void *lh_xmalloc(size_t n);           /* aborts on failure */
void *lh_xcalloc(size_t n, size_t sz);
void *lh_xrealloc(void *p, size_t n);
char *lh_xstrdup(const char *s);      /* new string; s may be NULL (returns NULL) */
char *lh_xstrndup(const char *s, size_t n);

/* Fault injection for tests: the nth call from now of lh_malloc/lh_realloc
 * fails (n = 1 means the next one); 0 disables. */
void lh_mem_fail_after(long n);

#endif
