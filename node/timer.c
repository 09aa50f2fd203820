/* timer.c -- the engine's timer heap: delays, retry backoff, touched
 * leases and TTLs. A timer names its job by id and by the arming's
 * sequence number, never by pointer, so a job acked and freed before its
 * timer comes due leaves a stale entry that is skipped (node_int.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node_int.h"


/* --- timers ------------------------------------------------------------ */

static void s_heap_up(sl__node_t *n, size_t i)
{
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (n->heap[p].when <= n->heap[i].when)
            break;
        sl__tmr_t t = n->heap[p];
        n->heap[p] = n->heap[i];
        n->heap[i] = t;
        i = p;
    }
}

/* Timers are never removed when their job moves on (an ack, a touch):
 * they go stale and are skipped when due. So that a busy node's heap holds
 * at most a few times the timers that still matter, drop the stale ones
 * and rebuild the heap whenever it has doubled since the last rebuild. */
static void s_heap_compact(sl__node_t *n)
{
    size_t k = 0;
    for (size_t i = 0; i < n->heap_n; i++) {
        sl__tmr_t *t = &n->heap[i];
        sl__job_t *j = sl__job_get(n, t->id);
        if (j && t->gen == (t->kind == SL__T_TTL ? j->ttl_gen : j->timer_gen))
            n->heap[k++] = *t;
    }
    n->heap_n = k;
    for (size_t i = 1; i < n->heap_n; i++)
        s_heap_up(n, i);
    n->heap_compact_at = n->heap_n * 2 > 4096 ? n->heap_n * 2 : 4096;
    if (n->heap_cap > 4 * n->heap_compact_at) { /* give memory back */
        size_t cap = 2 * n->heap_compact_at;
        sl__tmr_t *h = realloc(n->heap, cap * sizeof *h);
        if (h) {
            n->heap = h;
            n->heap_cap = cap;
        }
    }
}

int sl__timer_arm(sl__node_t *n, sl__job_t *j, int kind, int64_t when)
{
    if (n->heap_n >= n->heap_compact_at && n->heap_n >= 4096)
        s_heap_compact(n);
    if (n->heap_n == n->heap_cap) {
        size_t cap = n->heap_cap ? n->heap_cap * 2 : 1024;
        sl__tmr_t *h = realloc(n->heap, cap * sizeof *h);
        if (!h)
            return SL_ENOMEM;
        n->heap = h;
        n->heap_cap = cap;
    }
    uint64_t gen = ++n->timer_seq;
    if (kind == SL__T_TTL)
        j->ttl_gen = gen;
    else
        j->timer_gen = gen;
    sl__tmr_t *t = &n->heap[n->heap_n];
    t->when = when;
    memcpy(t->id, j->id, 16);
    t->gen = gen;
    t->kind = kind;
    s_heap_up(n, n->heap_n++);
    return SL_OK;
}

/* Run every timer that is due, and the lease expiry list. */
void sl__timer_run(sl__node_t *n)
{
    int64_t now = sl__mono_ms();
    sl__lease_expiry(n, now);
    while (n->heap_n && n->heap[0].when <= now) {
        sl__tmr_t t = n->heap[0];
        n->heap[0] = n->heap[--n->heap_n];
        for (size_t i = 0;;) { /* sift down */
            size_t l = 2 * i + 1, r = l + 1, m = i;
            if (l < n->heap_n && n->heap[l].when < n->heap[m].when)
                m = l;
            if (r < n->heap_n && n->heap[r].when < n->heap[m].when)
                m = r;
            if (m == i)
                break;
            sl__tmr_t x = n->heap[m];
            n->heap[m] = n->heap[i];
            n->heap[i] = x;
            i = m;
        }
        sl__queue_timer(n, &t);
    }
}
