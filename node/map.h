/* map.h -- an open-addressing hash map from byte strings to pointers, for
 * the node's indexes (job ids, queue names, peer routing ids). Keys are
 * copied. Not thread-safe: each map belongs to the node's engine. */
#ifndef SLUICE_NODE_MAP_H
#define SLUICE_NODE_MAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct sl__map sl__map_t;

/* NULL if out of memory. */
sl__map_t *sl__map_new(void);
void sl__map_destroy(sl__map_t **self_p);

/* The value for key, or NULL. */
void *sl__map_get(sl__map_t *self, const void *key, size_t len);

/* Insert or replace. SL_OK or SL_ENOMEM (map unchanged). */
int sl__map_put(sl__map_t *self, const void *key, size_t len, void *val);

/* Remove key; returns its value or NULL. */
void *sl__map_del(sl__map_t *self, const void *key, size_t len);

size_t sl__map_size(sl__map_t *self);

/* Visit every entry; fn may not modify the map. */
void sl__map_each(sl__map_t *self, void (*fn)(const void *key, size_t len, void *val, void *arg),
                  void *arg);

#endif
