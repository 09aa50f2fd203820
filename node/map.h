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

/* Visit the entries in up to `slots` slots from *cursor on, and move the
 * cursor past them (back to 0 at the end of the table): a walk spread over
 * many calls. Entries added or moved by a resize in between may be visited
 * twice or not at all in that pass. Returns the slots looked at. */
size_t sl__map_each_from(sl__map_t *self, size_t *cursor, size_t slots,
                         void (*fn)(const void *key, size_t len, void *val, void *arg),
                         void *arg);

/* Slots in the table (for sl__map_each_from). */
size_t sl__map_slots(sl__map_t *self);

/* size zeroed bytes, caller owns (free()); from 2 MiB up on huge pages
 * when the kernel allows, for tables probed at random. NULL if out of
 * memory. */
void *sl__big_calloc(size_t size);

/* An id map: 16-byte keys that live inside their values, at key_off
 * bytes into each (a job's id, say), so the map holds only pointers and
 * never copies or frees a key. A value may carry a tag in bit 0 (the
 * map ignores it when it reads the key). A value must keep its key unchanged while
 * it is in the map. One probe run per call; lookups compare a stored hash
 * before touching a value. */
typedef struct sl__idmap sl__idmap_t;

/* NULL if out of memory. */
sl__idmap_t *sl__idmap_new(size_t key_off);
void sl__idmap_destroy(sl__idmap_t **self_p);

/* The value whose key is id, or NULL. */
void *sl__idmap_get(sl__idmap_t *self, const uint8_t id[16]);

/* Insert val under the key inside it, replacing a value with that key;
 * returns the replaced value or NULL. *err (may be NULL) gets SL_OK or
 * SL_ENOMEM (map unchanged). */
void *sl__idmap_put(sl__idmap_t *self, void *val, int *err);

/* Remove the value with key id; returns it or NULL. */
void *sl__idmap_del(sl__idmap_t *self, const uint8_t id[16]);

/* Start loading the slot where id's probe run begins: a batch of lookups
 * that prefetches every key first waits about one cache miss, not one
 * per key. */
void sl__idmap_prefetch(sl__idmap_t *self, const uint8_t id[16]);

size_t sl__idmap_size(sl__idmap_t *self);

/* Visit every value; fn may not modify the map. */
void sl__idmap_each(sl__idmap_t *self, void (*fn)(void *val, void *arg), void *arg);

#endif
