/*
 * util layer: growth of the one growable array (see vec.h). Sizes are
 * checked before they are multiplied, so a vector can never wrap around to
 * a small allocation.
 */
#include "util/vec.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static void too_large(size_t n, size_t elem)
{
	fprintf(stderr, "longhaul: vector too large (%zu elements of %zu bytes)\n", n, elem);
	abort();
}

void *lh_vec_grow_(void *v, size_t *cap, size_t n, size_t extra, size_t elem, size_t first)
{
	size_t need, ncap;
	if (extra > SIZE_MAX - n)
		too_large(SIZE_MAX, elem);
	need = n + extra;
	if (need <= *cap)
		return v;
	ncap = *cap ? *cap : first ? first : 1;
	while (ncap < need)
		ncap = ncap > SIZE_MAX / 2 ? need : ncap * 2;
	if (elem && ncap > SIZE_MAX / elem)
		too_large(ncap, elem);
	v = lh_xrealloc(v, ncap * elem);
	*cap = ncap;
	return v;
}
