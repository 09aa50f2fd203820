/* vec.h -- a sorted array of pointers with binary search: the
 * coordinator's tables (nodes, consumers, route watchers, queues, peers)
 * are each one of these, ordered by their key, which also gives the
 * assignment its sorted ids for free. Not thread-safe. */
#ifndef SLUICE_COORD_VEC_H
#define SLUICE_COORD_VEC_H

#include <stdbool.h>
#include <stddef.h>

/* < 0, 0, > 0 as key sorts before, with or after the element. */
typedef int (*sl__vec_cmp_fn)(const void *key, const void *elem);

typedef struct {
    void **v;           /* elements, borrowed: the table's owner frees them */
    size_t n, cap;
} sl__vec_t;

/* Where key is (*found true) or would be inserted (*found false). */
size_t sl__vec_find(const sl__vec_t *self, const void *key, sl__vec_cmp_fn cmp, bool *found);

/* The element matching key, or NULL. */
void *sl__vec_get(const sl__vec_t *self, const void *key, sl__vec_cmp_fn cmp);

/* Insert elem at position at (from sl__vec_find). SL_OK or SL_ENOMEM. */
int sl__vec_insert(sl__vec_t *self, size_t at, void *elem);

/* Remove and return the element at position at. */
void *sl__vec_remove(sl__vec_t *self, size_t at);

/* Free the array (not the elements); the vector is then empty. */
void sl__vec_release(sl__vec_t *self);

#endif
