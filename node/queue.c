/* queue.c -- a node's queues: admission under the overflow policy, ready
 * jobs in per-priority channels, the delivery coroutine, leases, retries
 * with backoff, the dead list.
 *
 * Ready jobs of priority p wait in levels[p], a fixed channel. Each queue
 * has one delivery coroutine: while some consumer has credit it waits on
 * the level channels (highest priority first, sl_alts with
 * SL_ALTS_PRIORITY) and on `wake`, leases what it takes and sends it. All
 * of this runs on the engine's worker, so it shares state with the engine
 * without locks (see node_int.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node_int.h"
#include "sluice/sched.h"

const char *sl__overflow_name(sl_overflow_t o)
{
    switch (o) {
    case SL_OVERFLOW_DROP_NEW: return "drop-new";
    case SL_OVERFLOW_DROP_OLDEST: return "drop-oldest";
    default: return "block";
    }
}

static bool s_valid_name(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 128)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == ':' || c == '-'))
            return false;
    }
    return true;
}

sl__job_t *sl__job_new(const uint8_t *raw, size_t len, const sl__pb_job_t *v)
{
    size_t qcopy = v->queue_len <= 128 ? v->queue_len + 1 : 0;
    sl__job_t *j = malloc(sizeof *j + len + qcopy);
    if (!j)
        abort(); /* daemon: out of memory */
    memset(j, 0, sizeof *j);
    memcpy(j->raw, raw, len);
    j->len = len;
    j->field0 = v->field0;
    j->id_len = (uint32_t)v->id_len;
    if (v->id)
        j->idp = j->raw + (v->id - raw);
    if (v->id_len == 16)
        memcpy(j->id, v->id, 16);
    j->priority = v->priority;
    j->attempt = v->attempt;
    j->max_attempts = v->max_attempts;
    j->created_ms = v->created_ms;
    j->not_before_ms = v->not_before_ms;
    j->deadline_ms = v->deadline_ms;
    j->queue_len = v->queue_len;
    if (qcopy) {
        char *q = (char *)j->raw + len;
        if (v->queue_len)
            memcpy(q, v->queue, v->queue_len);
        q[v->queue_len] = '\0';
        j->queue = q;
    }
    if (v->payload)
        j->payload = j->raw + (v->payload - raw);
    j->payload_len = v->payload_len;
    if (v->ikey) {
        /* As a C string, the way protobuf-c hands it to every client. */
        const uint8_t *nul = memchr(v->ikey, 0, v->ikey_len);
        j->ikey = (const char *)j->raw + (v->ikey - raw);
        j->ikey_len = nul ? (size_t)(nul - v->ikey) : v->ikey_len;
    }
    return j;
}

void sl__job_free(sl__job_t *j)
{
    if (!j)
        return;
    free(j->dead_reason);
    free(j->last_error);
    free(j);
}

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

void sl__timer_arm(sl__node_t *n, sl__job_t *j, int kind, int64_t when)
{
    if (n->heap_n >= n->heap_compact_at && n->heap_n >= 4096)
        s_heap_compact(n);
    if (n->heap_n == n->heap_cap) {
        size_t cap = n->heap_cap ? n->heap_cap * 2 : 1024;
        sl__tmr_t *h = realloc(n->heap, cap * sizeof *h);
        if (!h)
            abort(); /* daemon: out of memory */
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
}

/* --- dead list --------------------------------------------------------- */

static void s_unlink_job(sl__job_t **head, sl__job_t **tail, sl__job_t *j)
{
    if (j->lprev)
        j->lprev->lnext = j->lnext;
    else if (head)
        *head = j->lnext;
    if (j->lnext)
        j->lnext->lprev = j->lprev;
    else if (tail)
        *tail = j->lprev;
    j->lprev = j->lnext = NULL;
}

static void s_append(sl__job_t **head, sl__job_t **tail, sl__job_t *j)
{
    j->lnext = NULL;
    j->lprev = *tail;
    if (*tail)
        (*tail)->lnext = j;
    else
        *head = j;
    *tail = j;
}

/* The idempotency index key "queue\0key" into buf: its length, 0 when
 * there is no key, -1 when it does not fit. */
static int s_idem_key(const char *queue, const char *ikey, size_t ikey_len, char *buf,
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
    int k = s_idem_key(j->q->name, j->ikey, j->ikey_len, buf, size);
    return k > 0 ? (size_t)k : 0;
}

/* Drop a job from the indexes (it can no longer be found by id or key). */
static void s_unindex(sl__node_t *n, sl__job_t *j)
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
static void s_forget(sl__node_t *n, sl__job_t *j)
{
    s_unindex(n, j);
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
static void s_remember_done(sl__node_t *n, const sl__job_t *j)
{
    if (n->o.max_done == 0)
        return;
    if (!n->done) {
        n->done = sl__big_calloc(n->o.max_done * sizeof *n->done);
        if (!n->done)
            abort();
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
        if (!d->key)
            abort();
        memcpy(d->key, key, k);
        d->klen = k;
    }
    int err;
    sl__idmap_put(n->ids, (void *)((uintptr_t)d | SL__DONE_TAG), &err);
    if (err != SL_OK || (d->key && sl__map_put(n->done_keys, d->key, d->klen, d) != SL_OK))
        abort();
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

static void s_kill(sl__node_t *n, sl__job_t *j, const char *reason)
{
    sl__queue_t *q = j->q;
    j->state = SL__J_DEAD;
    j->timer_gen = 0;
    free(j->dead_reason);
    j->dead_reason = strdup(reason);
    s_append(&q->dead_head, &q->dead_tail, j);
    q->dead++;
    while (q->dead > n->o.max_dead && q->dead_head) {
        sl__job_t *old = q->dead_head;
        s_unlink_job(&q->dead_head, &q->dead_tail, old);
        q->dead--;
        if (old->in_level) { /* a level channel still holds it: free later */
            s_unindex(n, old);
            old->evicted = true;
        } else {
            s_forget(n, old);
        }
    }
}

/* A job just taken out of a level channel: false if it had died in there
 * (TTL) and must be skipped -- freed now if it was already forgotten. */
static bool s_out_of_level(sl__job_t *j)
{
    j->in_level = false;
    if (j->state != SL__J_DEAD)
        return true;
    if (j->evicted)
        sl__job_free(j);
    return false;
}

/* --- admission ---------------------------------------------------------- */

static uint64_t s_held(sl__queue_t *q)
{
    return q->ready + q->delayed; /* a held job still counts as ready */
}

static void s_make_ready(sl__node_t *n, sl__job_t *j)
{
    sl__queue_t *q = j->q;
    uint32_t p = j->priority < SL__LEVELS ? j->priority : SL__LEVELS - 1;
    if (!q->levels[p]) {
        /* Levels hold at most max_length jobs in all, so one never fills. */
        q->levels[p] = sl_chan_new(SL_BUF_FIXED, n->o.max_length);
        if (!q->levels[p])
            abort();
        sl_chan_set_max_pending(q->levels[p], 4);
        sl__queue_wake(q); /* the delivery coroutine must add it to its alts */
    }
    j->state = SL__J_READY;
    j->timer_gen = 0;
    q->ready++;
    /* Admission keeps ready + delayed within max_length, but requeued
     * leases are not admitted: if the level is full they wait in the
     * spill list, which delivery serves first. */
    if (sl_offer(q->levels[p], j) == SL_OK) {
        j->in_level = true;
    } else {
        s_append(&q->spill_head, &q->spill_tail, j);
        sl__queue_wake(q);
    }
}

/* Place an accepted job: delayed or ready. */
static void s_place(sl__node_t *n, sl__job_t *j)
{
    int64_t wall = sl_wall_ms();
    if (j->not_before_ms > wall) {
        j->state = SL__J_DELAYED;
        j->q->delayed++;
        /* Both clocks are truncated to whole ms: +1 so the job is never
         * released before not_before (found by integration/delay_test). */
        sl__timer_arm(n, j, SL__T_DELAY, sl__mono_ms() + (j->not_before_ms - wall) + 1);
    } else {
        s_make_ready(n, j);
    }
}

/* Admit waiting (block policy) jobs while there is room. */
static void s_admit_waiting(sl__node_t *n, sl__queue_t *q)
{
    while (q->wait_head && s_held(q) < n->o.max_length) {
        sl__job_t *j = q->wait_head;
        s_unlink_job(&q->wait_head, &q->wait_tail, j);
        q->waiting--;
        n->waiting_total--;
        sl__pubctx_t *ctx = j->pub;
        size_t i = j->pub_index;
        j->pub = NULL;
        s_place(n, j);
        sl__pub_settle(n, ctx, i, SLUICE__V1__JOB_CONFIRM__STATUS__ACCEPTED, NULL, 0);
    }
}

sl__pubctx_t *sl__pub_new(const uint8_t *rid, size_t rid_len, uint64_t corr, sl__job_t **jobs,
                          size_t n)
{
    size_t ids = 0;
    for (size_t i = 0; i < n; i++)
        ids += jobs[i]->id_len;
    sl__pubctx_t *ctx = malloc(sizeof *ctx + n * sizeof ctx->confirms[0] + ids);
    if (!ctx)
        abort();
    memcpy(ctx->rid, rid, rid_len);
    ctx->rid_len = rid_len;
    ctx->corr = corr;
    ctx->n = n;
    ctx->remaining = n + 1; /* +1: the caller settles it once every job is placed */
    uint8_t *idp = (uint8_t *)&ctx->confirms[n];
    for (size_t i = 0; i < n; i++) {
        sl__confirm_t *c = &ctx->confirms[i];
        c->status = SLUICE__V1__JOB_CONFIRM__STATUS__ACCEPTED;
        c->retry_after_ms = 0;
        c->reason = NULL;
        c->id = idp;
        c->id_len = jobs[i]->id_len;
        if (c->id_len)
            memcpy(idp, jobs[i]->idp, c->id_len);
        idp += c->id_len;
    }
    return ctx;
}

void sl__pub_settle(sl__node_t *n, sl__pubctx_t *ctx, size_t i, int status, const char *reason,
                    uint32_t retry_after_ms)
{
    sl__confirm_t *c = &ctx->confirms[i];
    c->status = status;
    c->retry_after_ms = retry_after_ms;
    if (reason && reason[0]) {
        c->reason = strdup(reason);
        if (!c->reason)
            abort();
    }
    if (--ctx->remaining == 0)
        sl__pub_send(n, ctx);
}

static void s_pub_free(sl__pubctx_t *ctx)
{
    for (size_t k = 0; k < ctx->n; k++)
        free(ctx->confirms[k].reason);
    free(ctx);
}

void sl__pub_abandon(sl__pubctx_t *ctx)
{
    if (--ctx->remaining == 0)
        s_pub_free(ctx); /* the node is going away: no confirm */
}

/* One JobConfirm's bytes (without its own tag and length). */
static size_t s_confirm_size(const sl__confirm_t *c)
{
    size_t k = 0;
    if (c->id_len)
        k += sl__pb_len_size(1, c->id_len);
    if (c->status)
        k += 1 + sl__pb_varint_size((uint32_t)c->status);
    if (c->reason)
        k += sl__pb_len_size(3, strlen(c->reason));
    if (c->retry_after_ms)
        k += 1 + sl__pb_varint_size(c->retry_after_ms);
    return k;
}

/* Envelope{corr, confirm: PublishConfirm{confirms}}, written by hand. */
void sl__pub_send(sl__node_t *n, sl__pubctx_t *ctx)
{
    size_t body = 0;
    for (size_t k = 0; k < ctx->n; k++)
        body += sl__pb_len_size(1, s_confirm_size(&ctx->confirms[k]));
    size_t len = (ctx->corr ? 1 + sl__pb_varint_size(ctx->corr) : 0) + sl__pb_len_size(11, body);
    sl__out_t *o = sl__out_new(ctx->rid, ctx->rid_len, len);
    uint8_t *p = o->buf;
    if (ctx->corr)
        p = sl__pb_put_varint(sl__pb_put_tag(p, 1, SL__PB_VARINT), ctx->corr);
    p = sl__pb_put_len(p, 11, body);
    for (size_t k = 0; k < ctx->n; k++) {
        const sl__confirm_t *c = &ctx->confirms[k];
        p = sl__pb_put_len(p, 1, s_confirm_size(c));
        if (c->id_len) {
            p = sl__pb_put_len(p, 1, c->id_len);
            memcpy(p, c->id, c->id_len);
            p += c->id_len;
        }
        if (c->status)
            p = sl__pb_put_varint(sl__pb_put_tag(p, 2, SL__PB_VARINT), (uint32_t)c->status);
        if (c->reason) {
            size_t rl = strlen(c->reason);
            p = sl__pb_put_len(p, 3, rl);
            memcpy(p, c->reason, rl);
            p += rl;
        }
        if (c->retry_after_ms)
            p = sl__pb_put_varint(sl__pb_put_tag(p, 4, SL__PB_VARINT), c->retry_after_ms);
    }
    o->len = (size_t)(p - o->buf);
    sl__out_send(n, o);
    s_pub_free(ctx);
}

sl__queue_t *sl__queue_get(sl__node_t *n, const char *name, bool create, int *err);

void sl__queue_publish(sl__node_t *n, sl__job_t *j, sl__pubctx_t *ctx, size_t i)
{
    char why[160];
    enum { ACC = SLUICE__V1__JOB_CONFIRM__STATUS__ACCEPTED,
           DUP = SLUICE__V1__JOB_CONFIRM__STATUS__DUPLICATE,
           REJ = SLUICE__V1__JOB_CONFIRM__STATUS__REJECTED };
    if (j->id_len != 16) {
        snprintf(why, sizeof why, "job id must be 16 bytes, got %u", j->id_len);
        goto reject;
    }
    /* A NUL inside the name would hide the rest of it. */
    if (!s_valid_name(j->queue) || strlen(j->queue) != j->queue_len) {
        snprintf(why, sizeof why, "invalid queue name (1-128 of [A-Za-z0-9._:-])");
        goto reject;
    }
    if (j->priority >= SL__LEVELS) {
        snprintf(why, sizeof why, "priority %u out of range 0-9", j->priority);
        goto reject;
    }
    if (j->field0) {
        /* protobuf-c keeps it but would re-emit an invalid tag. */
        snprintf(why, sizeof why, "malformed job: field number 0");
        goto reject;
    }
    if (j->payload_len > n->o.max_job) {
        snprintf(why, sizeof why, "payload of %zu bytes exceeds max-job %llu", j->payload_len,
                 (unsigned long long)n->o.max_job);
        goto reject;
    }
    void *known = sl__idmap_get(n->ids, j->id);
    if (known) {
        sl__job_free(j);
        sl__pub_settle(n, ctx, i, DUP,
                       (uintptr_t)known & SL__DONE_TAG ? "job id already done"
                                                       : "job id already held", 0);
        return;
    }
    char key[300];
    int klen = s_idem_key(j->queue, j->ikey, j->ikey_len, key, sizeof key);
    if (klen < 0) {
        snprintf(why, sizeof why, "idempotency key too long");
        goto reject;
    }
    if (klen > 0) {
        if (sl__map_get(n->keys, key, (size_t)klen) ||
            sl__map_get(n->done_keys, key, (size_t)klen)) {
            sl__job_free(j);
            sl__pub_settle(n, ctx, i, DUP, "idempotency key already held or done", 0);
            return;
        }
    }
    int err = SL_OK;
    sl__queue_t *q = sl__queue_get(n, j->queue, true, &err);
    if (!q) {
        snprintf(why, sizeof why, "cannot create queue: %s", sl_strerror(err));
        goto reject;
    }
    if (n->stopping || q->draining) {
        sl__job_free(j);
        sl__pub_settle(n, ctx, i, REJ, n->stopping ? "shutting down" : "queue draining", 1000);
        return;
    }
    j->q = q;
    if (j->max_attempts == 0) {
        j->max_attempts = n->o.max_attempts;
        j->set_max_attempts = true;
    }
    if (j->created_ms == 0) {
        j->created_ms = sl_wall_ms();
        j->set_created = true;
    }
    if (j->deadline_ms > 0) /* +1: truncated clocks, as in s_place */
        j->ttl_at = sl__mono_ms() + (j->deadline_ms - sl_wall_ms()) + 1;

    if (s_held(q) >= n->o.max_length) {
        switch (n->o.overflow) {
        case SL_OVERFLOW_BLOCK:
            if (n->waiting_total >= n->o.max_waiting) {
                sl__job_free(j);
                sl__pub_settle(n, ctx, i, REJ, "full: node waiting limit reached", 1000);
                return;
            }
            break;
        case SL_OVERFLOW_DROP_NEW:
            q->dropped++;
            sl__job_free(j);
            sl__pub_settle(n, ctx, i, REJ, "full", 0);
            return;
        case SL_OVERFLOW_DROP_OLDEST: {
            /* The oldest ready job of the lowest priority present goes. */
            sl__job_t *old = NULL;
            for (int p = 0; p < SL__LEVELS && !old; p++) {
                void *v;
                while (!old && q->levels[p] && sl_poll(q->levels[p], &v) == SL_OK)
                    if (s_out_of_level(v))
                        old = v;
            }
            if (!old) { /* everything held is delayed: nothing to slide out */
                sl__job_free(j);
                sl__pub_settle(n, ctx, i, REJ, "full", 1000);
                return;
            }
            q->ready--;
            q->dropped++;
            s_forget(n, old);
            break;
        }
        }
    }
    int perr;
    sl__idmap_put(n->ids, j, &perr);
    if (perr != SL_OK)
        abort();
    if (klen > 0 && sl__map_put(n->keys, key, (size_t)klen, j) != SL_OK)
        abort();
    q->published++;
    if (j->ttl_at && j->ttl_at > sl__mono_ms())
        sl__timer_arm(n, j, SL__T_TTL, j->ttl_at);
    if (s_held(q) >= n->o.max_length) { /* block policy: wait for room */
        j->state = SL__J_WAITING;
        j->pub = ctx;
        j->pub_index = i;
        s_append(&q->wait_head, &q->wait_tail, j);
        q->waiting++;
        n->waiting_total++;
        return;
    }
    if (j->ttl_at && j->ttl_at <= sl__mono_ms()) {
        q->expired++;
        s_kill(n, j, "expired");
    } else {
        s_place(n, j);
    }
    sl__pub_settle(n, ctx, i, ACC, NULL, 0);
    return;
reject:
    sl__job_free(j);
    sl__pub_settle(n, ctx, i, REJ, why, 0);
}

/* --- delivery ----------------------------------------------------------- */

void sl__queue_wake(sl__queue_t *q)
{
    sl_offer(q->wake, NULL); /* fixed(1): one pending wake is enough */
}

static sl__consumer_t *s_pick(sl__queue_t *q)
{
    sl__consumer_t *start = q->rr ? q->rr : q->consumers;
    sl__consumer_t *c = start;
    if (!c)
        return NULL;
    do {
        sl__consumer_t *next = c->qnext ? c->qnext : q->consumers;
        if (c->credit > 0) {
            q->rr = next;
            return c;
        }
        c = next;
    } while (c != start);
    return NULL;
}

/* The node's expiry list holds the jobs leased for the node's lease time,
 * oldest first: leasing appends, so it stays in expiry order, and a lease
 * that ends leaves it at once, so it never holds stale entries (the timer
 * heap holds only leases a Touch extended). */
static void s_expiry_unlink(sl__node_t *n, sl__job_t *j)
{
    if (!j->in_expiry)
        return;
    if (j->eprev)
        j->eprev->enext = j->enext;
    else
        n->expiry_head = j->enext;
    if (j->enext)
        j->enext->eprev = j->eprev;
    else
        n->expiry_tail = j->eprev;
    j->eprev = j->enext = NULL;
    j->in_expiry = false;
}

static void s_lease(sl__node_t *n, sl__consumer_t *c, sl__job_t *j, int64_t now)
{
    sl__queue_t *q = j->q;
    j->state = SL__J_LEASED;
    j->holder = c;
    j->lease_id = ++n->next_lease;
    j->lease_expires = now + n->o.lease_ms;
    j->attempt++;
    j->lprev = NULL;
    j->lnext = c->leases;
    if (c->leases)
        c->leases->lprev = j;
    c->leases = j;
    c->credit--;
    c->leased++;
    q->in_flight++;
    q->delivered++;
    j->timer_gen = 0;
    j->eprev = n->expiry_tail;
    j->enext = NULL;
    if (n->expiry_tail)
        n->expiry_tail->enext = j;
    else
        n->expiry_head = j;
    n->expiry_tail = j;
    j->in_expiry = true;
}

static void s_fill_lease(sl__node_t *n, sl__job_t *j, Sluice__V1__Lease *l)
{
    sluice__v1__lease__init(l);
    l->job_id.data = j->id;
    l->job_id.len = 16;
    l->lease_id = j->lease_id;
    l->epoch = n->epoch;
    l->expires_ms = j->lease_expires + n->wall_off;
}

/* The fields the node set, appended to a job's bytes on delivery: their
 * size, and with p non-NULL the bytes. */
static size_t s_job_tail(const sl__job_t *j, uint8_t *p)
{
    uint8_t tmp[48], *b = tmp; /* three tags and varints at most */
    b = sl__pb_put_varint(sl__pb_put_tag(b, 6, SL__PB_VARINT), j->attempt);
    if (j->set_max_attempts)
        b = sl__pb_put_varint(sl__pb_put_tag(b, 7, SL__PB_VARINT), j->max_attempts);
    if (j->set_created)
        b = sl__pb_put_varint(sl__pb_put_tag(b, 8, SL__PB_VARINT), (uint64_t)j->created_ms);
    size_t k = (size_t)(b - tmp);
    size_t el = j->last_error ? strlen(j->last_error) : 0;
    if (p) {
        memcpy(p, tmp, k);
        if (j->last_error) {
            uint8_t *e = sl__pb_put_len(p + k, 14, el);
            memcpy(e, j->last_error, el);
        }
    }
    return k + (j->last_error ? sl__pb_len_size(14, el) : 0);
}

/* Lease{job_id, lease_id, epoch, expires_ms}: size, and bytes with p. */
static size_t s_lease_bytes(const sl__job_t *j, uint64_t epoch, int64_t expires_ms, uint8_t *p)
{
    size_t k = sl__pb_len_size(1, 16) + 1 + sl__pb_varint_size(j->lease_id) + 1 +
               sl__pb_varint_size(epoch) + 1 + sl__pb_varint_size((uint64_t)expires_ms);
    if (p) {
        p = sl__pb_put_len(p, 1, 16);
        memcpy(p, j->id, 16);
        p += 16;
        p = sl__pb_put_varint(sl__pb_put_tag(p, 2, SL__PB_VARINT), j->lease_id);
        p = sl__pb_put_varint(sl__pb_put_tag(p, 3, SL__PB_VARINT), epoch);
        sl__pb_put_varint(sl__pb_put_tag(p, 4, SL__PB_VARINT), (uint64_t)expires_ms);
    }
    return k;
}

/* In-process handlers get a private copy: the handler runs on another
 * thread while the engine owns (and may free) the job itself. */
static void s_send_local(sl__node_t *n, sl__consumer_t *c, sl__job_t *j)
{
    size_t ql = strlen(j->q->name);
    sl__local_job_t *lj = malloc(sizeof *lj + ql + 1 + j->payload_len);
    if (!lj)
        abort();
    memset(lj, 0, sizeof *lj);
    lj->node = n;
    memcpy(lj->id, j->id, 16);
    lj->lease_id = j->lease_id;
    char *qn = (char *)lj->data;
    memcpy(qn, j->q->name, ql + 1);
    if (j->payload_len)
        memcpy(lj->data + ql + 1, j->payload, j->payload_len);
    lj->view.id = lj->id;
    lj->view.queue = qn;
    lj->view.payload = lj->data + ql + 1;
    lj->view.len = j->payload_len;
    lj->view.attempt = j->attempt;
    lj->view.priority = j->priority;
    sl_put(c->local, lj); /* capacity = concurrency >= credit */
}

/* Envelope{deliver: Deliver{deliveries: Delivery{job, lease}...}}, written
 * by hand: each job goes out as the bytes it came in, then the fields the
 * node set (s_job_tail). */
static void s_send_batch(sl__node_t *n, sl__consumer_t *c, sl__job_t **jobs, size_t k)
{
    if (c->local) {
        for (size_t i = 0; i < k; i++)
            s_send_local(n, c, jobs[i]);
        return;
    }
    /* One clock reading per batch: every lease of it expires together. */
    int64_t wall_off = n->wall_off;
    size_t dsize[SL__BATCH_MAX], jsize[SL__BATCH_MAX], lsize[SL__BATCH_MAX];
    size_t body = 0;
    for (size_t i = 0; i < k; i++) {
        jsize[i] = jobs[i]->len + s_job_tail(jobs[i], NULL);
        lsize[i] = s_lease_bytes(jobs[i], n->epoch, jobs[i]->lease_expires + wall_off, NULL);
        dsize[i] = sl__pb_len_size(1, jsize[i]) + sl__pb_len_size(2, lsize[i]);
        body += sl__pb_len_size(1, dsize[i]);
    }
    size_t len = sl__pb_len_size(15, body);
    sl__out_t *o = sl__out_new(c->peer->rid, c->peer->rid_len, len);
    uint8_t *p = sl__pb_put_len(o->buf, 15, body);
    for (size_t i = 0; i < k; i++) {
        sl__job_t *j = jobs[i];
        p = sl__pb_put_len(p, 1, dsize[i]);
        p = sl__pb_put_len(p, 1, jsize[i]);
        memcpy(p, j->raw, j->len);
        p += j->len;
        p += s_job_tail(j, p);
        p = sl__pb_put_len(p, 2, lsize[i]);
        p += s_lease_bytes(j, n->epoch, j->lease_expires + wall_off, p);
    }
    o->len = (size_t)(p - o->buf);
    sl__out_send(n, o);
}

/* True if j has outlived its TTL (then it is dead). */
static bool s_expire(sl__node_t *n, sl__job_t *j)
{
    if (!j->ttl_at || j->ttl_at > sl__mono_ms())
        return false;
    j->q->expired++;
    s_kill(n, j, "expired");
    return true;
}

static void *s_deliver_main(void *arg)
{
    sl__queue_t *q = arg;
    sl__node_t *n = q->node;
    sl_alt_t ops[SL__LEVELS + 1];
    while (!n->stopping) {
        /* Nothing moves without a consumer that has credit: wait. */
        if (q->paused || !s_pick(q)) {
            void *v;
            sl_take(q->wake, &v);
            continue;
        }
        sl__job_t *j;
        if (q->held) { /* taken earlier, not yet deliverable */
            j = q->held;
            q->held = NULL;
        } else if (q->spill_head) { /* requeued while its level was full */
            j = q->spill_head;
            s_unlink_job(&q->spill_head, &q->spill_tail, j);
        } else {
            size_t k = 0;
            for (int p = SL__LEVELS - 1; p >= 0; p--)
                if (q->levels[p])
                    ops[k++] = (sl_alt_t){.chan = q->levels[p]};
            ops[k++] = (sl_alt_t){.chan = q->wake};
            int i = sl_alts(ops, k, SL_ALTS_PRIORITY, SL_FOREVER);
            if (i < 0 || ops[i].chan == q->wake)
                continue;
            j = ops[i].val;
            if (!s_out_of_level(j))
                continue; /* expired in the channel: already counted */
        }
        q->ready--;
        if (s_expire(n, j)) {
            s_admit_waiting(n, q);
            continue;
        }
        sl__consumer_t *c = q->paused ? NULL : s_pick(q);
        if (!c) {
            q->held = j;
            q->ready++;
            continue;
        }
        sl__job_t *batch[SL__BATCH_MAX];
        size_t k = 0;
        int64_t now = sl__mono_ms();
        s_lease(n, c, j, now);
        batch[k++] = j;
        while (c->credit > 0 && k < SL__BATCH_MAX) {
            void *v = NULL;
            for (int p = SL__LEVELS - 1; p >= 0 && !v; p--)
                while (q->levels[p] && sl_poll(q->levels[p], &v) == SL_OK && !s_out_of_level(v))
                    v = NULL;
            if (!v)
                break;
            q->ready--;
            if (s_expire(n, v))
                continue;
            s_lease(n, c, v, now);
            batch[k++] = v;
        }
        s_send_batch(n, c, batch, k);
        s_admit_waiting(n, q);
    }
    q->running = false;
    return NULL;
}

sl__queue_t *sl__queue_get(sl__node_t *n, const char *name, bool create, int *err)
{
    /* Most publishes name the queue the one before did. Queues live as
     * long as the node. */
    if (n->last_queue && strcmp(n->last_queue->name, name) == 0)
        return n->last_queue;
    sl__queue_t *q = sl__map_get(n->queues, name, strlen(name));
    if (q)
        n->last_queue = q;
    if (q || !create)
        return q;
    if (!s_valid_name(name)) {
        *err = SL_EINVAL;
        return NULL;
    }
    q = calloc(1, sizeof *q);
    if (!q || !(q->name = strdup(name)) || !(q->wake = sl_chan_new(SL_BUF_FIXED, 1)) ||
        sl__map_put(n->queues, name, strlen(name), q) != SL_OK) {
        if (q) {
            sl_chan_destroy(&q->wake);
            free(q->name);
        }
        free(q);
        *err = SL_ENOMEM;
        return NULL;
    }
    q->node = n;
    q->running = true;
    sl__rates_init(&q->rates, sl__mono_ms());
    /* Same worker as the engine (no SL_GO_SPREAD): see node_int.h. */
    int rc;
    if (!sl_go_ex(s_deliver_main, q, 0, 0, &rc)) {
        sl__map_del(n->queues, name, strlen(name));
        sl_chan_destroy(&q->wake);
        free(q->name);
        free(q);
        *err = rc;
        return NULL;
    }
    return q;
}

/* --- settling leases ---------------------------------------------------- */

/* The leased job named by l, or NULL with *code set. */
static sl__job_t *s_leased(sl__node_t *n, const Sluice__V1__Lease *l, Sluice__V1__Error__Code *code)
{
    if (!l || l->job_id.len != 16) {
        *code = SLUICE__V1__ERROR__CODE__BAD_ID;
        return NULL;
    }
    sl__job_t *j = sl__job_get(n, l->job_id.data);
    if (!j || j->state != SL__J_LEASED || j->lease_id != l->lease_id || l->epoch != n->epoch) {
        *code = SLUICE__V1__ERROR__CODE__STALE_LEASE;
        return NULL;
    }
    return j;
}

/* Take j out of its holder's lease list. */
static void s_unlease(sl__job_t *j)
{
    sl__consumer_t *c = j->holder;
    if (j->lprev)
        j->lprev->lnext = j->lnext;
    else
        c->leases = j->lnext;
    if (j->lnext)
        j->lnext->lprev = j->lprev;
    j->lprev = j->lnext = NULL;
    j->holder = NULL;
    c->leased--;
    j->q->in_flight--;
    j->timer_gen = 0;
    s_expiry_unlink(j->q->node, j);
}

int sl__queue_ack(sl__node_t *n, const Sluice__V1__Lease *l, Sluice__V1__Error__Code *code)
{
    sl__job_t *j = s_leased(n, l, code);
    if (!j)
        return SL_ESTATE;
    s_unlease(j);
    j->q->acked++;
    s_remember_done(n, j);
    s_forget(n, j);
    return SL_OK;
}

static int64_t s_backoff(sl__node_t *n, uint32_t attempt)
{
    int64_t d = n->o.backoff_base_ms;
    for (uint32_t i = 1; i < attempt && d < n->o.backoff_max_ms; i++)
        d *= 2;
    if (d > n->o.backoff_max_ms)
        d = n->o.backoff_max_ms;
    /* Jitter: uniformly between half and all of it, from the node's own
     * generator (seeded per process, so nodes do not retry in lockstep). */
    n->rng ^= n->rng << 13;
    n->rng ^= n->rng >> 7;
    n->rng ^= n->rng << 17;
    return d / 2 + (d > 1 ? (int64_t)(n->rng % (uint64_t)(d / 2 + 1)) : 0);
}

int sl__queue_fail(sl__node_t *n, const Sluice__V1__Lease *l, bool retryable, const char *error,
                   Sluice__V1__Error__Code *code)
{
    sl__job_t *j = s_leased(n, l, code);
    if (!j)
        return SL_ESTATE;
    s_unlease(j);
    sl__queue_t *q = j->q;
    q->failed++;
    free(j->last_error);
    j->last_error = strdup(error ? error : "");
    if (!j->last_error)
        abort();
    if (retryable && j->attempt < j->max_attempts) {
        q->retried++;
        q->delayed++;
        j->state = SL__J_RETRY;
        sl__timer_arm(n, j, SL__T_RETRY, sl__mono_ms() + s_backoff(n, j->attempt));
    } else {
        char why[300];
        snprintf(why, sizeof why, "%s: %s", retryable ? "attempts exhausted" : "failed",
                 error ? error : "");
        s_kill(n, j, why);
        s_admit_waiting(n, q);
    }
    return SL_OK;
}

int sl__queue_touch(sl__node_t *n, const Sluice__V1__Lease *l, uint32_t extend_ms,
                    Sluice__V1__Lease *out, Sluice__V1__Error__Code *code)
{
    sl__job_t *j = s_leased(n, l, code);
    if (!j)
        return SL_ESTATE;
    j->lease_expires = sl__mono_ms() + (extend_ms ? (int64_t)extend_ms : n->o.lease_ms);
    s_expiry_unlink(n, j); /* out of order now: the timer heap has it */
    sl__timer_arm(n, j, SL__T_LEASE, j->lease_expires);
    s_fill_lease(n, j, out);
    return SL_OK;
}

/* Back to READY without a failure: lease lost with its consumer. */
static void s_requeue(sl__node_t *n, sl__job_t *j)
{
    if (j->ttl_at && j->ttl_at <= sl__mono_ms()) {
        j->q->expired++;
        s_kill(n, j, "expired");
        return;
    }
    s_make_ready(n, j);
}

/* A job's deadline passed while the node held it. */
static void s_ttl(sl__node_t *n, sl__job_t *j)
{
    sl__queue_t *q = j->q;
    switch (j->state) {
    case SL__J_READY:
        /* In a level channel it stays there, dead, until taken out. */
        if (q->held == j)
            q->held = NULL;
        else if (!j->in_level)
            s_unlink_job(&q->spill_head, &q->spill_tail, j);
        q->ready--;
        break;
    case SL__J_DELAYED:
    case SL__J_RETRY:
        q->delayed--;
        break;
    case SL__J_WAITING: {
        s_unlink_job(&q->wait_head, &q->wait_tail, j);
        q->waiting--;
        n->waiting_total--;
        sl__pubctx_t *ctx = j->pub;
        j->pub = NULL; /* it was stored; it has now expired */
        sl__pub_settle(n, ctx, j->pub_index, SLUICE__V1__JOB_CONFIRM__STATUS__ACCEPTED, NULL, 0);
        break;
    }
    default:
        return; /* leased: the consumer has it; dead: nothing to do */
    }
    q->expired++;
    s_kill(n, j, "expired");
    s_admit_waiting(n, q);
}

/* A lease ran out: back to READY, or DEAD when attempts are exhausted. */
static void s_lease_expired(sl__node_t *n, sl__job_t *j)
{
    sl__queue_t *q = j->q;
    s_unlease(j);
    if (j->attempt >= j->max_attempts) {
        s_kill(n, j, "lease expired: attempts exhausted");
        s_admit_waiting(n, q);
    } else {
        s_requeue(n, j);
    }
    sl__queue_wake(q);
}

void sl__lease_expiry(sl__node_t *n, int64_t now)
{
    while (n->expiry_head && n->expiry_head->lease_expires <= now)
        s_lease_expired(n, n->expiry_head);
}

void sl__queue_timer(sl__node_t *n, sl__tmr_t *t)
{
    sl__job_t *j = sl__job_get(n, t->id);
    if (j && t->kind == SL__T_TTL) {
        if (t->gen == j->ttl_gen)
            s_ttl(n, j);
        return;
    }
    if (!j || t->gen != j->timer_gen)
        return; /* job gone, or the timer was superseded */
    sl__queue_t *q = j->q;
    switch (t->kind) {
    case SL__T_DELAY:
    case SL__T_RETRY:
        if (j->state != SL__J_DELAYED && j->state != SL__J_RETRY)
            return;
        q->delayed--;
        s_requeue(n, j);
        break;
    case SL__T_LEASE:
        if (j->state != SL__J_LEASED)
            return;
        s_lease_expired(n, j);
        return;
    }
    sl__queue_wake(q);
}

void sl__consumer_drop(sl__node_t *n, sl__consumer_t *c)
{
    sl__queue_t *q = c->q;
    while (c->leases) {
        sl__job_t *j = c->leases;
        s_unlease(j);
        s_requeue(n, j);
    }
    sl__consumer_t **pp = &q->consumers;
    while (*pp && *pp != c)
        pp = &(*pp)->qnext;
    if (*pp)
        *pp = c->qnext;
    if (q->rr == c)
        q->rr = NULL;
    q->nconsumers--;
    if (c->local)
        sl_chan_close(c->local);
    sl_chan_destroy(&c->local);
    free(c);
    sl__queue_wake(q);
}

void sl__queue_stats(sl__queue_t *q, Sluice__V1__QueueStats *s)
{
    sluice__v1__queue_stats__init(s);
    s->name = q->name;
    s->depth = q->ready;
    s->delayed = q->delayed + q->waiting;
    s->in_flight = q->in_flight;
    s->dead = q->dead;
    s->published = q->published;
    s->delivered = q->delivered;
    s->acked = q->acked;
    s->failed = q->failed;
    s->retried = q->retried;
    s->dropped = q->dropped;
    s->expired = q->expired;
    s->consumers = q->nconsumers;
    s->paused = q->paused;
    s->overflow = (char *)sl__overflow_name(q->node->o.overflow);
    s->capacity = q->node->o.max_length;
}

void sl__queue_free(sl__queue_t *q)
{
    /* Called after the engine stopped: jobs are freed through n->ids. */
    for (int p = 0; p < SL__LEVELS; p++)
        sl_chan_destroy(&q->levels[p]);
    sl_chan_destroy(&q->wake);
    free(q->name);
    free(q);
}
