/* dedup.c -- the node's indexes: every job it holds by id (n->ids) and
 * by idempotency key (n->keys), and the ring of the last max-done acked
 * jobs (n->done, n->done_keys), which answers a resend DUPLICATE. The
 * ring takes an acked job's place in n->ids, tagged SL__DONE_TAG. Under
 * memory pressure the ring may forget an entry early (a resend of that job
 * then runs again: delivery is at least once); the indexes of held jobs
 * never lose one. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node_int.h"


/* The idempotency index key "queue\0key" into buf: its length, 0 when
 * there is no key, -1 when it does not fit. */
int sl__idem_key(const char *queue, const char *ikey, size_t ikey_len, char *buf,
                      size_t size)
{
    if (!ikey || !ikey_len)
        return 0;
    size_t ql = strlen(queue);
    if (ql + 1 + ikey_len >= size)
        return -1;
    memcpy(buf, queue, ql + 1);
    memcpy(buf + ql + 1, ikey, ikey_len);
    return (int)(ql + 1 + ikey_len);
}

/* A held job's index key (publish refused keys that do not fit). */
static size_t s_key(const sl__job_t *j, char *buf, size_t size)
{
    int k = sl__idem_key(j->q->name, j->ikey, j->ikey_len, buf, size);
    return k > 0 ? (size_t)k : 0;
}

/* Drop a job from the indexes (it can no longer be found by id or key). */
void sl__job_unindex(sl__node_t *n, sl__job_t *j)
{
    if (sl__idmap_get(n->ids, j->id) == j)
        sl__idmap_del(n->ids, j->id);
    if (!j->ikey_len)
        return;
    char key[300];
    size_t k = s_key(j, key, sizeof key);
    if (k && sl__map_get(n->keys, key, k) == j)
        sl__map_del(n->keys, key, k);
}

/* Forget a job entirely: indexes, then memory. */
void sl__job_forget(sl__node_t *n, sl__job_t *j)
{
    sl__job_unindex(n, j);
    sl__job_free(j);
}

/* Forget ring entry d: out of the indexes that still point at it. */
static void s_done_clear(sl__node_t *n, sl__done_t *d)
{
    if (sl__idmap_get(n->ids, d->id) == (void *)((uintptr_t)d | SL__DONE_TAG))
        sl__idmap_del(n->ids, d->id);
    if (d->key && sl__map_get(n->done_keys, d->key, d->klen) == d)
        sl__map_del(n->done_keys, d->key, d->klen);
    free(d->key);
    d->key = NULL;
}

/* Remember an acked job's id and key in the ring of the last max_done,
 * overwriting the oldest. The entry takes the job's place in n->ids. */
void sl__done_remember(sl__node_t *n, const sl__job_t *j)
{
    if (n->o.max_done == 0)
        return;
    if (!n->done) {
        n->done = sl__big_calloc(n->o.max_done * sizeof *n->done);
        if (!n->done)
            return; /* out of memory: this id is not remembered */
    }
    sl__done_t *d = &n->done[n->done_next];
    if (n->done_n == n->o.max_done)
        s_done_clear(n, d);
    else
        n->done_n++;
    n->done_next = n->done_next + 1 == n->o.max_done ? 0 : n->done_next + 1;
    memcpy(d->id, j->id, 16);
    d->klen = 0;
    char key[300];
    size_t k = s_key(j, key, sizeof key);
    if (k) {
        d->key = malloc(k);
        if (d->key) {
            memcpy(d->key, key, k);
            d->klen = k;
        }
    }
    /* The job's own entry is replaced in place: this never grows the map. */
    sl__idmap_put(n->ids, (void *)((uintptr_t)d | SL__DONE_TAG), NULL);
    if (d->key && sl__map_put(n->done_keys, d->key, d->klen, d) != SL_OK) {
        free(d->key); /* out of memory: the key is not remembered */
        d->key = NULL;
        d->klen = 0;
    }
}

void sl__done_prefetch(sl__node_t *n, size_t k)
{
    if (!n->done || n->done_n < n->o.max_done)
        return; /* nothing is pushed out yet */
    for (uint64_t i = 0, d = n->done_next; i < k && i < n->o.max_done; i++) {
        sl__idmap_prefetch(n->ids, n->done[d].id);
        d = d + 1 == n->o.max_done ? 0 : d + 1;
    }
}

void sl__done_free_all(sl__node_t *n)
{
    if (n->done)
        for (uint64_t i = 0; i < n->o.max_done; i++)
            free(n->done[i].key);
    free(n->done);
    n->done = NULL;
    n->done_n = n->done_next = 0;
}

