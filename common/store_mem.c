/* store_mem.c -- the memory backend: every store operation with the
 * semantics of the Redis scripts (store_redis.c), on the store's thread,
 * in the store's own memory. Per queue, two indexes (retries by due time,
 * dead letters by death time), each a skip list ordered by (score, id)
 * with a hash of ids beside it: what a Redis sorted set plus a hash is.
 * Records are kept encoded, as Redis keeps them, so both backends hand
 * back the same bytes. */
#include <stdlib.h>
#include <string.h>

#include "store_int.h"

#define S_LEVELS 24             /* enough for 2^24 entries at p = 1/2 */

/* --- one index: skip list by (score, id) + hash by id ------------------- */

typedef struct s_ent {
    int64_t score;
    uint8_t id[16];
    uint8_t *rec;               /* encoded JobRecord, owned                */
    size_t rec_len;
    struct s_ent *hnext;        /* the id hash's chain                     */
    int level;
    struct s_ent *fwd[];        /* level pointers                          */
} s_ent_t;

typedef struct {
    s_ent_t *head;              /* sentinel with S_LEVELS pointers         */
    int level;
    size_t count;
    s_ent_t **buckets;
    size_t nbuckets;            /* a power of two, or 0                    */
    uint64_t rng;
} s_index_t;

static int s_cmp(int64_t sa, const uint8_t *ia, int64_t sb, const uint8_t *ib)
{
    if (sa != sb)
        return sa < sb ? -1 : 1;
    return memcmp(ia, ib, 16);
}

static size_t s_hash(const uint8_t id[16])
{
    /* Ids are time-ordered in front and random behind; mix all of it. */
    uint64_t a, b;
    memcpy(&a, id, 8);
    memcpy(&b, id + 8, 8);
    uint64_t h = a ^ (b * 0x9E3779B97F4A7C15ull);
    h ^= h >> 33;
    h *= 0xFF51AFD7ED558CCDull;
    h ^= h >> 33;
    return (size_t)h;
}

static int s_index_init(s_index_t *ix, uint64_t seed)
{
    memset(ix, 0, sizeof *ix);
    ix->head = calloc(1, sizeof(s_ent_t) + S_LEVELS * sizeof(s_ent_t *));
    if (!ix->head)
        return SL_ENOMEM;
    ix->head->level = S_LEVELS;
    ix->level = 1;
    ix->rng = seed | 1;
    return SL_OK;
}

static void s_index_release(s_index_t *ix)
{
    if (!ix->head)
        return;
    s_ent_t *e = ix->head->fwd[0];
    while (e) {
        s_ent_t *n = e->fwd[0];
        free(e->rec);
        free(e);
        e = n;
    }
    free(ix->head);
    free(ix->buckets);
    memset(ix, 0, sizeof *ix);
}

static s_ent_t *s_find(const s_index_t *ix, const uint8_t id[16])
{
    if (!ix->nbuckets)
        return NULL;
    for (s_ent_t *e = ix->buckets[s_hash(id) & (ix->nbuckets - 1)]; e; e = e->hnext)
        if (memcmp(e->id, id, 16) == 0)
            return e;
    return NULL;
}

static int s_hash_grow(s_index_t *ix)
{
    size_t n = ix->nbuckets ? ix->nbuckets * 2 : 64;
    s_ent_t **b = calloc(n, sizeof *b);
    if (!b)
        return SL_ENOMEM;
    for (size_t i = 0; i < ix->nbuckets; i++)
        for (s_ent_t *e = ix->buckets[i], *next; e; e = next) {
            next = e->hnext;
            size_t k = s_hash(e->id) & (n - 1);
            e->hnext = b[k];
            b[k] = e;
        }
    free(ix->buckets);
    ix->buckets = b;
    ix->nbuckets = n;
    return SL_OK;
}

static void s_hash_unlink(s_index_t *ix, s_ent_t *e)
{
    s_ent_t **pp = &ix->buckets[s_hash(e->id) & (ix->nbuckets - 1)];
    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
}

/* Fill update[] with, per level, the last entry before (score, id). */
static void s_preds(s_index_t *ix, int64_t score, const uint8_t *id, s_ent_t **update)
{
    s_ent_t *x = ix->head;
    for (int l = ix->level - 1; l >= 0; l--) {
        while (x->fwd[l] && s_cmp(x->fwd[l]->score, x->fwd[l]->id, score, id) < 0)
            x = x->fwd[l];
        update[l] = x;
    }
}

static void s_remove(s_index_t *ix, s_ent_t *e)
{
    s_ent_t *update[S_LEVELS];
    s_preds(ix, e->score, e->id, update);
    for (int l = 0; l < ix->level; l++)
        if (update[l]->fwd[l] == e)
            update[l]->fwd[l] = e->fwd[l];
    while (ix->level > 1 && !ix->head->fwd[ix->level - 1])
        ix->level--;
    s_hash_unlink(ix, e);
    ix->count--;
    free(e->rec);
    free(e);
}

static int s_random_level(s_index_t *ix)
{
    ix->rng ^= ix->rng << 13;
    ix->rng ^= ix->rng >> 7;
    ix->rng ^= ix->rng << 17;
    int l = 1 + __builtin_ctzll(ix->rng | (1ull << (S_LEVELS - 1)));
    return l > S_LEVELS ? S_LEVELS : l;
}

/* Insert (score, id) holding *rec_p (taken on success), replacing an entry
 * of the same id. SL_OK or SL_ENOMEM (nothing changed). */
static int s_put(s_index_t *ix, int64_t score, const uint8_t id[16], uint8_t **rec_p,
                 size_t rec_len)
{
    if (ix->count + 1 > ix->nbuckets && s_hash_grow(ix) != SL_OK)
        return SL_ENOMEM;
    int level = s_random_level(ix);
    s_ent_t *e = malloc(sizeof *e + (size_t)level * sizeof(s_ent_t *));
    if (!e)
        return SL_ENOMEM;
    s_ent_t *old = s_find(ix, id);
    if (old)
        s_remove(ix, old);
    e->score = score;
    memcpy(e->id, id, 16);
    e->rec = *rec_p;
    e->rec_len = rec_len;
    *rec_p = NULL;
    e->level = level;
    s_ent_t *update[S_LEVELS];
    s_preds(ix, score, id, update);
    for (int l = ix->level; l < level; l++)
        update[l] = ix->head;
    if (level > ix->level)
        ix->level = level;
    for (int l = 0; l < level; l++) {
        e->fwd[l] = update[l]->fwd[l];
        update[l]->fwd[l] = e;
    }
    size_t k = s_hash(id) & (ix->nbuckets - 1);
    e->hnext = ix->buckets[k];
    ix->buckets[k] = e;
    ix->count++;
    return SL_OK;
}

static s_ent_t *s_first(const s_index_t *ix)
{
    return ix->head ? ix->head->fwd[0] : NULL;
}

/* The first entry strictly after (score, id). */
static s_ent_t *s_after(s_index_t *ix, int64_t score, const uint8_t id[16])
{
    s_ent_t *x = ix->head;
    for (int l = ix->level - 1; l >= 0; l--)
        while (x->fwd[l] && s_cmp(x->fwd[l]->score, x->fwd[l]->id, score, id) <= 0)
            x = x->fwd[l];
    return x->fwd[0];
}

/* --- queues -------------------------------------------------------------- */

typedef struct s_queue {
    char name[129];
    s_index_t retry, dead;
    struct s_queue *hnext;
} s_queue_t;

typedef struct {
    sl_store_t *st;
    s_queue_t **buckets;
    size_t nbuckets;            /* a power of two                          */
    size_t nqueues;
    uint64_t seed;
} s_mem_t;

static size_t s_name_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return (size_t)h;
}

static s_queue_t **s_queue_slot(s_mem_t *m, const char *name)
{
    s_queue_t **pp = &m->buckets[s_name_hash(name) & (m->nbuckets - 1)];
    while (*pp && strcmp((*pp)->name, name) != 0)
        pp = &(*pp)->hnext;
    return pp;
}

static void s_queue_free(s_queue_t *q)
{
    s_index_release(&q->retry);
    s_index_release(&q->dead);
    free(q);
}

/* The queue, created if create; NULL if absent or out of memory. */
static s_queue_t *s_queue(s_mem_t *m, const char *name, bool create)
{
    s_queue_t **pp = s_queue_slot(m, name);
    if (*pp || !create)
        return *pp;
    if (m->nqueues + 1 > m->nbuckets) {
        size_t n = m->nbuckets * 2;
        s_queue_t **b = calloc(n, sizeof *b);
        if (!b)
            return NULL;
        for (size_t i = 0; i < m->nbuckets; i++)
            for (s_queue_t *q = m->buckets[i], *next; q; q = next) {
                next = q->hnext;
                size_t k = s_name_hash(q->name) & (n - 1);
                q->hnext = b[k];
                b[k] = q;
            }
        free(m->buckets);
        m->buckets = b;
        m->nbuckets = n;
        pp = s_queue_slot(m, name);
    }
    s_queue_t *q = calloc(1, sizeof *q);
    if (!q)
        return NULL;
    m->seed = m->seed * 6364136223846793005ull + 1442695040888963407ull;
    if (s_index_init(&q->retry, m->seed) != SL_OK ||
        s_index_init(&q->dead, m->seed >> 17) != SL_OK) {
        s_queue_free(q);
        return NULL;
    }
    memcpy(q->name, name, strlen(name) + 1);
    *pp = q;
    m->nqueues++;
    return q;
}

/* An empty queue costs nothing: forget it, as Redis deletes empty keys. */
static void s_queue_gc(s_mem_t *m, s_queue_t *q)
{
    if (!q || q->retry.count || q->dead.count)
        return;
    s_queue_t **pp = s_queue_slot(m, q->name);
    *pp = q->hnext;
    m->nqueues--;
    s_queue_free(q);
}

/* --- operations ---------------------------------------------------------- */

/* Decode e's record onto req->recs. SL_OK, SL_ENOMEM; an undecodable
 * record is counted and skipped (SL_OK). */
static int s_emit(s_mem_t *m, sl_store_req_t *req, const s_ent_t *e)
{
    if (sl__store_req_reserve(req, 1) != SL_OK)
        return SL_ENOMEM;
    int rc = sl__store_rec_decode(e->rec, e->rec_len, &req->recs[req->n_recs]);
    if (rc == SL_OK)
        req->n_recs++;
    else if (rc == SL_EPROTO) {
        sl_store_status_t *s = sl__store_status_lock(m->st);
        s->bad_records++;
        sl__store_status_unlock(m->st);
        rc = SL_OK;
    }
    return rc;
}

static int s_put_rec(s_index_t *ix, int64_t score, const sl_store_rec_t *rec)
{
    uint8_t *buf;
    size_t len;
    if (sl__store_rec_encode(rec, &buf, &len) != SL_OK)
        return SL_ENOMEM;
    int rc = s_put(ix, score, rec->id, &buf, len);
    free(buf);
    return rc;
}

/* Take entries from the front of ix while score <= last (inclusive) into
 * req, at most req->max. An entry whose record cannot be decoded for want
 * of memory stays and ends the take. */
static int s_take_front(s_mem_t *m, s_index_t *ix, sl_store_req_t *req, int64_t last,
                        bool inclusive)
{
    s_ent_t *e;
    while ((e = s_first(ix)) && (inclusive ? e->score <= last : e->score < last)) {
        if (req->n_recs >= req->max) {
            req->more = true;
            break;
        }
        if (s_emit(m, req, e) != SL_OK) {
            req->more = true;
            return req->n_recs ? SL_OK : SL_ENOMEM;
        }
        s_remove(ix, e);
    }
    return SL_OK;
}

static int s_run(s_mem_t *m, sl_store_req_t *req)
{
    bool writes = req->op == SL_STORE_RETRY_PUT || req->op == SL_STORE_DEAD_PUT;
    s_queue_t *q = s_queue(m, req->queue, writes);
    if (!q)
        return writes ? SL_ENOMEM : SL_OK; /* reads of an absent queue: nothing */
    int rc = SL_OK;
    switch (req->op) {
    case SL_STORE_RETRY_PUT:
        rc = s_put_rec(&q->retry, req->rec.due_ms, &req->rec);
        break;
    case SL_STORE_RETRY_TAKE:
        rc = s_take_front(m, &q->retry, req, req->now_ms, true);
        break;
    case SL_STORE_DEAD_PUT: {
        sl_store_rec_t r = req->rec; /* shallow: only last_ms may differ */
        if (!r.last_ms)
            r.last_ms = req->now_ms;
        if ((rc = s_put_rec(&q->dead, r.last_ms, &r)) != SL_OK)
            break;
        s_ent_t *e;
        if (req->max_age_ms > 0)
            while ((e = s_first(&q->dead)) && e->score < req->now_ms - req->max_age_ms) {
                s_remove(&q->dead, e);
                req->trimmed++;
            }
        while (q->dead.count > req->max_dead && (e = s_first(&q->dead))) {
            s_remove(&q->dead, e);
            req->trimmed++;
        }
        break;
    }
    case SL_STORE_DEAD_LIST: {
        s_ent_t *e = s_after(&q->dead, req->after_ms, req->after_id);
        for (; e && req->n_recs < req->max; e = e->fwd[0])
            if ((rc = s_emit(m, req, e)) != SL_OK)
                break;
        req->more = e != NULL;
        break;
    }
    case SL_STORE_DEAD_GET: {
        s_ent_t *e = s_find(&q->dead, req->id);
        if (e)
            rc = s_emit(m, req, e);
        break;
    }
    case SL_STORE_DEAD_TAKE:
        if (req->has_id) {
            s_ent_t *e = s_find(&q->dead, req->id);
            if (e && (rc = s_emit(m, req, e)) == SL_OK)
                s_remove(&q->dead, e);
        } else {
            rc = s_take_front(m, &q->dead, req, req->older_ms ? req->older_ms : INT64_MAX,
                              req->older_ms == 0);
        }
        break;
    case SL_STORE_COUNT:
        req->counts[0] = q->retry.count;
        req->counts[1] = q->dead.count;
        break;
    }
    s_queue_gc(m, q);
    return rc;
}

/* --- the backend table --------------------------------------------------- */

static int s_open(sl_store_t *st, const sl_store_opts_t *opts, const sl__store_url_t *url,
                  void **be_p)
{
    s_mem_t *m = calloc(1, sizeof *m);
    if (!m)
        return SL_ENOMEM;
    m->st = st;
    m->nbuckets = 16;
    m->buckets = calloc(m->nbuckets, sizeof *m->buckets);
    if (!m->buckets) {
        free(m);
        return SL_ENOMEM;
    }
    m->seed = (uint64_t)(uintptr_t)m ^ 0x2545F4914F6CDD1Dull;
    *be_p = m;
    return SL_OK;
}

static void s_start(void *be)
{
}

static void s_submit(void *be, sl_store_req_t *head, int refuse)
{
    s_mem_t *m = be;
    while (head) {
        sl_store_req_t *req = head;
        head = req->next;
        sl__store_complete(m->st, req, refuse ? refuse : s_run(m, req));
    }
}

static int64_t s_prepare(void *be, struct pollfd *pfd, int64_t now_ms)
{
    pfd->fd = -1;
    return -1;
}

static void s_dispatch(void *be, const struct pollfd *pfd, int64_t now_ms)
{
}

static bool s_drained(void *be, int64_t now_ms)
{
    return true;
}

static void s_stop(void *be)
{
}

static void s_free(void *be)
{
    s_mem_t *m = be;
    if (!m)
        return;
    for (size_t i = 0; i < m->nbuckets; i++)
        for (s_queue_t *q = m->buckets[i], *next; q; q = next) {
            next = q->hnext;
            s_queue_free(q);
        }
    free(m->buckets);
    free(m);
}

const sl__store_backend_t sl__store_memory = {
    .kind = "memory",
    .open = s_open,
    .start = s_start,
    .submit = s_submit,
    .prepare = s_prepare,
    .dispatch = s_dispatch,
    .drained = s_drained,
    .stop = s_stop,
    .free = s_free,
};
