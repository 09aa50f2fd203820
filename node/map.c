/* map.c -- open addressing with linear probing and backward-shift delete
 * (no tombstones), grown at 70% load. Keys are hashed 8 bytes at a time
 * (job ids are 16 bytes: two multiplies instead of sixteen). */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "map.h"
#include "sluice/error.h"

typedef struct {
    uint64_t hash;  /* 0 = empty slot */
    void *key;
    size_t len;
    void *val;
} sl__slot_t;

struct sl__map {
    sl__slot_t *slots;
    size_t cap;     /* power of two */
    size_t n;
};

static inline uint64_t s_mix(uint64_t h, uint64_t w)
{
    h ^= w;
    h *= 0x9e3779b97f4a7c15ULL;
    return h ^ (h >> 32);
}

static uint64_t s_hash(const void *key, size_t len)
{
    const unsigned char *p = key;
    uint64_t h = 0x2545f4914f6cdd1dULL ^ len;
    for (; len >= 8; p += 8, len -= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = s_mix(h, w);
    }
    if (len) {
        uint64_t w = 0;
        memcpy(&w, p, len);
        h = s_mix(h, w);
    }
    h = s_mix(h, 0);
    return h ? h : 1;
}

sl__map_t *sl__map_new(void)
{
    sl__map_t *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->cap = 64;
    m->slots = calloc(m->cap, sizeof *m->slots);
    if (!m->slots) {
        free(m);
        return NULL;
    }
    return m;
}

void sl__map_destroy(sl__map_t **mp)
{
    if (!mp || !*mp)
        return;
    sl__map_t *m = *mp;
    for (size_t i = 0; i < m->cap; i++)
        free(m->slots[i].key);
    free(m->slots);
    free(m);
    *mp = NULL;
}

static sl__slot_t *s_find(sl__map_t *m, const void *key, size_t len, uint64_t h)
{
    size_t mask = m->cap - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        sl__slot_t *s = &m->slots[i];
        if (!s->hash)
            return s;
        if (s->hash == h && s->len == len && memcmp(s->key, key, len) == 0)
            return s;
    }
}

static int s_grow(sl__map_t *m)
{
    size_t ncap = m->cap * 2;
    sl__slot_t *ns = calloc(ncap, sizeof *ns);
    if (!ns)
        return SL_ENOMEM;
    for (size_t i = 0; i < m->cap; i++) {
        sl__slot_t *s = &m->slots[i];
        if (!s->hash)
            continue;
        size_t j = s->hash & (ncap - 1);
        while (ns[j].hash)
            j = (j + 1) & (ncap - 1);
        ns[j] = *s;
    }
    free(m->slots);
    m->slots = ns;
    m->cap = ncap;
    return SL_OK;
}

void *sl__map_get(sl__map_t *m, const void *key, size_t len)
{
    sl__slot_t *s = s_find(m, key, len, s_hash(key, len));
    return s->hash ? s->val : NULL;
}

int sl__map_put(sl__map_t *m, const void *key, size_t len, void *val)
{
    if ((m->n + 1) * 10 > m->cap * 7 && s_grow(m) != SL_OK)
        return SL_ENOMEM;
    uint64_t h = s_hash(key, len);
    sl__slot_t *s = s_find(m, key, len, h);
    if (s->hash) {
        s->val = val;
        return SL_OK;
    }
    void *k = malloc(len ? len : 1);
    if (!k)
        return SL_ENOMEM;
    memcpy(k, key, len);
    s->hash = h;
    s->key = k;
    s->len = len;
    s->val = val;
    m->n++;
    return SL_OK;
}

void *sl__map_del(sl__map_t *m, const void *key, size_t len)
{
    sl__slot_t *s = s_find(m, key, len, s_hash(key, len));
    if (!s->hash)
        return NULL;
    void *val = s->val;
    free(s->key);
    size_t mask = m->cap - 1;
    size_t i = (size_t)(s - m->slots);
    /* Backward shift: pull later entries of the probe run into the hole. */
    for (size_t j = (i + 1) & mask; m->slots[j].hash; j = (j + 1) & mask) {
        size_t home = m->slots[j].hash & mask;
        if (((j - home) & mask) >= ((j - i) & mask)) {
            m->slots[i] = m->slots[j];
            i = j;
        }
    }
    memset(&m->slots[i], 0, sizeof m->slots[i]);
    m->n--;
    return val;
}

size_t sl__map_size(sl__map_t *m)
{
    return m->n;
}

void sl__map_each(sl__map_t *m, void (*fn)(const void *, size_t, void *, void *), void *arg)
{
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i].hash)
            fn(m->slots[i].key, m->slots[i].len, m->slots[i].val, arg);
}

size_t sl__map_each_from(sl__map_t *m, size_t *cursor, size_t slots,
                         void (*fn)(const void *, size_t, void *, void *), void *arg)
{
    size_t i = *cursor < m->cap ? *cursor : 0, k = 0;
    for (; k < slots && i < m->cap; k++, i++)
        if (m->slots[i].hash)
            fn(m->slots[i].key, m->slots[i].len, m->slots[i].val, arg);
    *cursor = i < m->cap ? i : 0;
    return k;
}

size_t sl__map_slots(sl__map_t *m)
{
    return m->cap;
}

/* --- id maps ------------------------------------------------------------- */

#define SL__HUGE (2u << 20)

/* size zeroed bytes; from 2 MiB up, on huge pages where the kernel has
 * them: a table probed at random costs a TLB miss per probe otherwise. */
void *sl__big_calloc(size_t size)
{
    if (size < SL__HUGE)
        return calloc(1, size);
    size = (size + SL__HUGE - 1) & ~(size_t)(SL__HUGE - 1);
    void *p = aligned_alloc(SL__HUGE, size);
    if (!p)
        return NULL;
    madvise(p, size, MADV_HUGEPAGE); /* advice only: fine if refused */
    memset(p, 0, size);
    return p;
}

typedef struct {
    uint64_t hash;  /* 0 = empty slot */
    void *val;
} sl__islot_t;

struct sl__idmap {
    sl__islot_t *slots;
    size_t cap;     /* power of two, kept at most half full */
    size_t n;
    size_t key_off;
};

static inline uint64_t s_id_hash(const uint8_t id[16])
{
    uint64_t a, b;
    memcpy(&a, id, 8);
    memcpy(&b, id + 8, 8);
    uint64_t h = s_mix(s_mix(0x2545f4914f6cdd1dULL, a), b);
    return h ? h : 1;
}

static inline const uint8_t *s_id_of(const sl__idmap_t *m, const void *val)
{
    return (const uint8_t *)((uintptr_t)val & ~(uintptr_t)1) + m->key_off;
}

sl__idmap_t *sl__idmap_new(size_t key_off)
{
    sl__idmap_t *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->cap = 64;
    m->key_off = key_off;
    m->slots = calloc(m->cap, sizeof *m->slots);
    if (!m->slots) {
        free(m);
        return NULL;
    }
    return m;
}

void sl__idmap_destroy(sl__idmap_t **mp)
{
    if (!mp || !*mp)
        return;
    free((*mp)->slots);
    free(*mp);
    *mp = NULL;
}

/* The slot holding id, or the empty slot that ends its probe run. */
static sl__islot_t *s_id_find(sl__idmap_t *m, const uint8_t id[16], uint64_t h)
{
    size_t mask = m->cap - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        sl__islot_t *s = &m->slots[i];
        if (!s->hash || (s->hash == h && memcmp(s_id_of(m, s->val), id, 16) == 0))
            return s;
    }
}

static int s_id_grow(sl__idmap_t *m)
{
    size_t ncap = m->cap * 2;
    sl__islot_t *ns = sl__big_calloc(ncap * sizeof *ns);
    if (!ns)
        return SL_ENOMEM;
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->slots[i].hash)
            continue;
        size_t j = m->slots[i].hash & (ncap - 1);
        while (ns[j].hash)
            j = (j + 1) & (ncap - 1);
        ns[j] = m->slots[i];
    }
    free(m->slots);
    m->slots = ns;
    m->cap = ncap;
    return SL_OK;
}

void *sl__idmap_get(sl__idmap_t *m, const uint8_t id[16])
{
    sl__islot_t *s = s_id_find(m, id, s_id_hash(id));
    return s->hash ? s->val : NULL;
}

void *sl__idmap_put(sl__idmap_t *m, void *val, int *err)
{
    if ((m->n + 1) * 2 > m->cap && s_id_grow(m) != SL_OK) {
        if (err)
            *err = SL_ENOMEM;
        return NULL;
    }
    if (err)
        *err = SL_OK;
    const uint8_t *id = s_id_of(m, val);
    uint64_t h = s_id_hash(id);
    sl__islot_t *s = s_id_find(m, id, h);
    void *old = s->hash ? s->val : NULL;
    if (!s->hash)
        m->n++;
    s->hash = h;
    s->val = val;
    return old;
}

void *sl__idmap_del(sl__idmap_t *m, const uint8_t id[16])
{
    sl__islot_t *s = s_id_find(m, id, s_id_hash(id));
    if (!s->hash)
        return NULL;
    void *val = s->val;
    size_t mask = m->cap - 1;
    size_t i = (size_t)(s - m->slots);
    /* Backward shift, as in sl__map_del. */
    for (size_t j = (i + 1) & mask; m->slots[j].hash; j = (j + 1) & mask) {
        size_t home = m->slots[j].hash & mask;
        if (((j - home) & mask) >= ((j - i) & mask)) {
            m->slots[i] = m->slots[j];
            i = j;
        }
    }
    m->slots[i].hash = 0;
    m->slots[i].val = NULL;
    m->n--;
    return val;
}

void sl__idmap_prefetch(sl__idmap_t *m, const uint8_t id[16])
{
    __builtin_prefetch(&m->slots[s_id_hash(id) & (m->cap - 1)]);
}

size_t sl__idmap_size(sl__idmap_t *m)
{
    return m->n;
}

void sl__idmap_each(sl__idmap_t *m, void (*fn)(void *val, void *arg), void *arg)
{
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i].hash)
            fn(m->slots[i].val, arg);
}
