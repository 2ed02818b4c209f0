/*
 * util layer: the one growable array. It knows nothing above util/.
 *
 * A vector is any struct with the members `T *v; size_t n, cap;`: v[0..n)
 * are the elements, cap is how many fit before v has to move. LH_VEC(T)
 * spells such a struct for a member or a local; a vector type that is
 * passed between functions is declared with a name and the same three
 * members (engine/committer.h's struct lh_opvec). The macros below work on
 * any of them through a pointer: lh_vec_push(&s->items).
 *
 * Ownership: the vector owns the array v (NULL until the first push) and
 * nothing the elements point to: free those before lh_vec_release. Callers
 * read and write v[i] directly and may lower n by hand (pop, filter, clear).
 *
 * Growth: capacity doubles, starting at LH_VEC_FIRST elements, or `first`
 * with the _from variants (for vectors known to fill fast). Memory comes
 * from lh_xrealloc, so running out aborts (util/mem.h's rule for lh_x*),
 * and so does a size that would overflow size_t. A push or reserve may move
 * v: pointers into it hold only until the next one.
 *
 * The macros evaluate `vec` more than once: pass a plain expression.
 */
#ifndef LH_UTIL_VEC_H
#define LH_UTIL_VEC_H

#include <stddef.h>
#include <string.h>

#include "util/mem.h"

#define LH_VEC(T) struct { T *v; size_t n, cap; }

/* Capacity of a vector's first allocation, in elements. */
#define LH_VEC_FIRST 8

/* An empty vector that owns no memory (also what a zeroed struct is). */
#define lh_vec_init(vec) ((vec)->v = NULL, (vec)->n = (vec)->cap = 0)

/* Frees the array (not what the elements point to) and empties the vector. */
#define lh_vec_release(vec) (lh_free((vec)->v), lh_vec_init(vec))

/* Makes room for `extra` more elements without changing n. */
#define lh_vec_reserve(vec, extra) lh_vec_reserve_from(vec, extra, LH_VEC_FIRST)
#define lh_vec_reserve_from(vec, extra, first)                                                         \
	((void)((vec)->v = lh_vec_grow_((vec)->v, &(vec)->cap, (vec)->n, (extra), sizeof *(vec)->v, (first))))

/* Appends one zeroed element and returns a pointer to it (borrowed; valid
 * until the vector next grows). */
#define lh_vec_push(vec) lh_vec_push_from(vec, LH_VEC_FIRST)
#define lh_vec_push_from(vec, first)                                                                   \
	(lh_vec_reserve_from(vec, 1, first), memset(&(vec)->v[(vec)->n], 0, sizeof *(vec)->v),         \
	 &(vec)->v[(vec)->n++])

/* The macros' worker: returns v (taken) grown, if n + extra elements of
 * elem bytes do not fit in *cap, to the first power-of-two multiple of *cap
 * (of first when *cap is 0) that holds them, and updates *cap. Aborts on
 * overflow or when memory runs out. */
void *lh_vec_grow_(void *v, size_t *cap, size_t n, size_t extra, size_t elem, size_t first);

#endif
