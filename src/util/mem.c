/*
 * util layer: allocation wrappers with fault injection (see mem.h).
 */
#include "util/mem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Thread_local long fail_countdown;

void lh_mem_fail_after(long n)
{
	fail_countdown = n;
}

static int should_fail(void)
{
	if (fail_countdown <= 0)
		return 0;
	if (--fail_countdown == 0)
		return 1;
	return 0;
}

void *lh_malloc(size_t n)
{
	if (should_fail())
		return NULL;
	return malloc(n ? n : 1);
}

void *lh_realloc(void *p, size_t n)
{
	if (should_fail())
		return NULL;
	return realloc(p, n ? n : 1);
}

void lh_free(void *p)
{
	free(p);
}

static void oom(size_t n)
{
	fprintf(stderr, "longhaul: out of memory (asked for %zu bytes)\n", n);
	abort();
}

void *lh_xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		oom(n);
	return p;
}

void *lh_xcalloc(size_t n, size_t sz)
{
	void *p = calloc(n ? n : 1, sz ? sz : 1);
	if (!p)
		oom(n * sz);
	return p;
}

void *lh_xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);
	if (!q)
		oom(n);
	return q;
}

char *lh_xstrdup(const char *s)
{
	if (!s)
		return NULL;
	return lh_xstrndup(s, strlen(s));
}

char *lh_xstrndup(const char *s, size_t n)
{
	char *p;
	if (!s)
		return NULL;
	p = lh_xmalloc(n + 1);
	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}
