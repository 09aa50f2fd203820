/* vec.c -- sorted pointer arrays (vec.h). */
#include <stdlib.h>
#include <string.h>

#include "sluice/error.h"
#include "vec.h"

size_t sl__vec_find(const sl__vec_t *self, const void *key, sl__vec_cmp_fn cmp, bool *found)
{
    size_t lo = 0, hi = self->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = cmp(key, self->v[mid]);
        if (c == 0) {
            *found = true;
            return mid;
        }
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    *found = false;
    return lo;
}

void *sl__vec_get(const sl__vec_t *self, const void *key, sl__vec_cmp_fn cmp)
{
    bool found;
    size_t at = sl__vec_find(self, key, cmp, &found);
    return found ? self->v[at] : NULL;
}

int sl__vec_insert(sl__vec_t *self, size_t at, void *elem)
{
    if (self->n == self->cap) {
        size_t cap = self->cap ? self->cap * 2 : 16;
        void **v = realloc(self->v, cap * sizeof *v);
        if (!v)
            return SL_ENOMEM;
        self->v = v;
        self->cap = cap;
    }
    memmove(&self->v[at + 1], &self->v[at], (self->n - at) * sizeof *self->v);
    self->v[at] = elem;
    self->n++;
    return SL_OK;
}

void *sl__vec_remove(sl__vec_t *self, size_t at)
{
    void *elem = self->v[at];
    memmove(&self->v[at], &self->v[at + 1], (self->n - at - 1) * sizeof *self->v);
    self->n--;
    return elem;
}

void sl__vec_release(sl__vec_t *self)
{
    free(self->v);
    self->v = NULL;
    self->n = self->cap = 0;
}
