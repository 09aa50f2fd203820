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

void sl__job_free(sl__job_t *j)
{
    if (!j)
        return;
    sluice__v1__job__free_unpacked(j->pb, NULL);
    free(j->dead_reason);
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
        sl__job_t *j = sl__map_get(n->jobs, t->id, 16);
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
    memcpy(t->id, j->pb->id.data, 16);
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
static int s_idem_key(const char *queue, const char *ikey, char *buf, size_t size)
{
    if (!ikey || !ikey[0])
        return 0;
    int k = snprintf(buf, size, "%s%c%s", queue, 0, ikey);
    return k > 0 && (size_t)k < size ? k : -1;
}

/* A held job's index key (publish refused keys that do not fit). */
static size_t s_key(const sl__job_t *j, char *buf, size_t size)
{
    int k = s_idem_key(j->q->name, j->pb->idempotency_key, buf, size);
    return k > 0 ? (size_t)k : 0;
}

/* Drop a job from the indexes (it can no longer be found by id or key). */
static void s_unindex(sl__node_t *n, sl__job_t *j)
{
    sl__map_del(n->jobs, j->pb->id.data, j->pb->id.len);
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

static void s_done_free(sl__done_t *d)
{
    free(d->key);
    free(d);
}

/* Remember an acked job's id and key, the oldest forgotten past max_done. */
static void s_remember_done(sl__node_t *n, const sl__job_t *j)
{
    if (n->o.max_done == 0)
        return;
    sl__done_t *d = calloc(1, sizeof *d);
    if (!d)
        abort();
    memcpy(d->id, j->pb->id.data, 16);
    char key[300];
    size_t k = s_key(j, key, sizeof key);
    if (k) {
        d->key = malloc(k);
        if (!d->key)
            abort();
        memcpy(d->key, key, k);
        d->klen = k;
    }
    sl__done_t *old = sl__map_get(n->done_ids, d->id, 16);
    if (old) /* the same id done twice (resent after an ack): keep one */
        sl__map_del(n->done_ids, old->id, 16);
    if (sl__map_put(n->done_ids, d->id, 16, d) != SL_OK ||
        (d->key && sl__map_put(n->done_keys, d->key, d->klen, d) != SL_OK))
        abort();
    if (n->done_tail)
        n->done_tail->next = d;
    else
        n->done_head = d;
    n->done_tail = d;
    n->done_n++;
    while (n->done_n > n->o.max_done) {
        sl__done_t *e = n->done_head;
        n->done_head = e->next;
        if (!n->done_head)
            n->done_tail = NULL;
        n->done_n--;
        if (sl__map_get(n->done_ids, e->id, 16) == e)
            sl__map_del(n->done_ids, e->id, 16);
        if (e->key && sl__map_get(n->done_keys, e->key, e->klen) == e)
            sl__map_del(n->done_keys, e->key, e->klen);
        s_done_free(e);
    }
}

void sl__done_free_all(sl__node_t *n)
{
    while (n->done_head) {
        sl__done_t *e = n->done_head;
        n->done_head = e->next;
        s_done_free(e);
    }
    n->done_tail = NULL;
    n->done_n = 0;
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
    uint32_t p = j->pb->priority < SL__LEVELS ? j->pb->priority : SL__LEVELS - 1;
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
    int64_t wall = sl__wall_ms();
    if (j->pb->not_before_ms > wall) {
        j->state = SL__J_DELAYED;
        j->q->delayed++;
        /* Both clocks are truncated to whole ms: +1 so the job is never
         * released before not_before (found by integration/delay_test). */
        sl__timer_arm(n, j, SL__T_DELAY, sl__mono_ms() + (j->pb->not_before_ms - wall) + 1);
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

void sl__pub_settle(sl__node_t *n, sl__pubctx_t *ctx, size_t i, int status, const char *reason,
                    uint32_t retry_after_ms)
{
    Sluice__V1__JobConfirm *c = &ctx->confirms[i];
    c->status = status;
    c->retry_after_ms = retry_after_ms;
    if (reason) {
        ctx->reasons[i] = strdup(reason);
        c->reason = ctx->reasons[i] ? ctx->reasons[i] : "";
    }
    if (--ctx->remaining == 0)
        sl__pub_send(n, ctx);
}

static void s_pub_free(sl__pubctx_t *ctx)
{
    for (size_t k = 0; k < ctx->n; k++) {
        free(ctx->reasons[k]);
        free(ctx->confirms[k].id.data);
    }
    free(ctx->reasons);
    free(ctx->confirms);
    free(ctx);
}

void sl__pub_abandon(sl__pubctx_t *ctx)
{
    if (--ctx->remaining == 0)
        s_pub_free(ctx); /* the node is going away: no confirm */
}

void sl__pub_send(sl__node_t *n, sl__pubctx_t *ctx)
{
    Sluice__V1__PublishConfirm pc = SLUICE__V1__PUBLISH_CONFIRM__INIT;
    Sluice__V1__JobConfirm **ptrs = malloc((ctx->n + 1) * sizeof *ptrs);
    if (!ptrs)
        abort();
    for (size_t k = 0; k < ctx->n; k++)
        ptrs[k] = &ctx->confirms[k];
    pc.n_confirms = ctx->n;
    pc.confirms = ptrs;
    Sluice__V1__Envelope env = SLUICE__V1__ENVELOPE__INIT;
    env.corr = ctx->corr;
    env.body_case = SLUICE__V1__ENVELOPE__BODY_CONFIRM;
    env.confirm = &pc;
    sl__send(n, ctx->rid, ctx->rid_len, &env);
    free(ptrs);
    s_pub_free(ctx);
}

sl__queue_t *sl__queue_get(sl__node_t *n, const char *name, bool create, int *err);

void sl__queue_publish(sl__node_t *n, Sluice__V1__Job *pb, sl__pubctx_t *ctx, size_t i)
{
    char why[160];
    enum { ACC = SLUICE__V1__JOB_CONFIRM__STATUS__ACCEPTED,
           DUP = SLUICE__V1__JOB_CONFIRM__STATUS__DUPLICATE,
           REJ = SLUICE__V1__JOB_CONFIRM__STATUS__REJECTED };
    if (pb->id.len != 16) {
        snprintf(why, sizeof why, "job id must be 16 bytes, got %zu", pb->id.len);
        goto reject;
    }
    if (!s_valid_name(pb->queue)) {
        snprintf(why, sizeof why, "invalid queue name (1-128 of [A-Za-z0-9._:-])");
        goto reject;
    }
    if (pb->priority >= SL__LEVELS) {
        snprintf(why, sizeof why, "priority %u out of range 0-9", pb->priority);
        goto reject;
    }
    for (unsigned k = 0; k < pb->base.n_unknown_fields; k++)
        if (pb->base.unknown_fields[k].tag == 0) {
            /* protobuf-c keeps it but would re-emit an invalid tag. */
            snprintf(why, sizeof why, "malformed job: field number 0");
            goto reject;
        }
    if (pb->payload.len > n->o.max_job) {
        snprintf(why, sizeof why, "payload of %zu bytes exceeds max-job %llu", pb->payload.len,
                 (unsigned long long)n->o.max_job);
        goto reject;
    }
    if (sl__map_get(n->jobs, pb->id.data, pb->id.len)) {
        sluice__v1__job__free_unpacked(pb, NULL);
        sl__pub_settle(n, ctx, i, DUP, "job id already held", 0);
        return;
    }
    if (sl__map_get(n->done_ids, pb->id.data, pb->id.len)) {
        sluice__v1__job__free_unpacked(pb, NULL);
        sl__pub_settle(n, ctx, i, DUP, "job id already done", 0);
        return;
    }
    char key[300];
    int klen = s_idem_key(pb->queue, pb->idempotency_key, key, sizeof key);
    if (klen < 0) {
        snprintf(why, sizeof why, "idempotency key too long");
        goto reject;
    }
    if (klen > 0) {
        if (sl__map_get(n->keys, key, (size_t)klen) ||
            sl__map_get(n->done_keys, key, (size_t)klen)) {
            sluice__v1__job__free_unpacked(pb, NULL);
            sl__pub_settle(n, ctx, i, DUP, "idempotency key already held or done", 0);
            return;
        }
    }
    int err = SL_OK;
    sl__queue_t *q = sl__queue_get(n, pb->queue, true, &err);
    if (!q) {
        snprintf(why, sizeof why, "cannot create queue: %s", sl_strerror(err));
        goto reject;
    }
    if (n->stopping || q->draining) {
        sluice__v1__job__free_unpacked(pb, NULL);
        sl__pub_settle(n, ctx, i, REJ, n->stopping ? "shutting down" : "queue draining", 1000);
        return;
    }
    sl__job_t *j = calloc(1, sizeof *j);
    if (!j)
        abort();
    j->pb = pb;
    j->q = q;
    if (pb->max_attempts == 0)
        pb->max_attempts = n->o.max_attempts;
    if (pb->created_ms == 0)
        pb->created_ms = sl__wall_ms();
    if (pb->deadline_ms > 0) /* +1: truncated clocks, as in s_place */
        j->ttl_at = sl__mono_ms() + (pb->deadline_ms - sl__wall_ms()) + 1;

    if (s_held(q) >= n->o.max_length) {
        switch (n->o.overflow) {
        case SL_OVERFLOW_BLOCK:
            if (n->waiting_total >= n->o.max_waiting) {
                free(j);
                sluice__v1__job__free_unpacked(pb, NULL);
                sl__pub_settle(n, ctx, i, REJ, "full: node waiting limit reached", 1000);
                return;
            }
            break;
        case SL_OVERFLOW_DROP_NEW:
            q->dropped++;
            free(j);
            sluice__v1__job__free_unpacked(pb, NULL);
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
                free(j);
                sluice__v1__job__free_unpacked(pb, NULL);
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
    if (sl__map_put(n->jobs, pb->id.data, pb->id.len, j) != SL_OK)
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
    sluice__v1__job__free_unpacked(pb, NULL);
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

static void s_lease(sl__node_t *n, sl__consumer_t *c, sl__job_t *j)
{
    sl__queue_t *q = j->q;
    j->state = SL__J_LEASED;
    j->holder = c;
    j->lease_id = ++n->next_lease;
    j->lease_expires = sl__mono_ms() + n->o.lease_ms;
    j->pb->attempt++;
    j->lprev = NULL;
    j->lnext = c->leases;
    if (c->leases)
        c->leases->lprev = j;
    c->leases = j;
    c->credit--;
    c->leased++;
    q->in_flight++;
    q->delivered++;
    sl__timer_arm(n, j, SL__T_LEASE, j->lease_expires);
}

static void s_fill_lease(sl__node_t *n, sl__job_t *j, Sluice__V1__Lease *l)
{
    sluice__v1__lease__init(l);
    l->job_id = j->pb->id;
    l->lease_id = j->lease_id;
    l->epoch = n->epoch;
    l->expires_ms = sl__wall_ms() + (j->lease_expires - sl__mono_ms());
}

static void s_send_batch(sl__node_t *n, sl__consumer_t *c, sl__job_t **jobs, size_t k)
{
    if (c->local) {
        for (size_t i = 0; i < k; i++) {
            sl__local_job_t *lj = calloc(1, sizeof *lj);
            /* A private copy: the handler runs on another thread while the
             * engine owns (and may free) the job itself. */
            size_t len = sluice__v1__job__get_packed_size(jobs[i]->pb);
            uint8_t *tmp = malloc(len ? len : 1);
            if (!lj || !tmp)
                abort();
            sluice__v1__job__pack(jobs[i]->pb, tmp);
            lj->pb = sluice__v1__job__unpack(NULL, len, tmp);
            free(tmp);
            if (!lj->pb) { /* cannot happen for a validated job; fail it */
                free(lj);
                Sluice__V1__Lease l;
                Sluice__V1__Error__Code code;
                s_fill_lease(n, jobs[i], &l);
                sl__queue_fail(n, &l, false, "job cannot be copied for a local handler", &code);
                continue;
            }
            lj->node = n;
            memcpy(lj->id, jobs[i]->pb->id.data, 16);
            lj->lease_id = jobs[i]->lease_id;
            lj->view.id = lj->id;
            lj->view.queue = lj->pb->queue;
            lj->view.payload = lj->pb->payload.data;
            lj->view.len = lj->pb->payload.len;
            lj->view.attempt = lj->pb->attempt;
            lj->view.priority = lj->pb->priority;
            sl_put(c->local, lj); /* capacity = concurrency >= credit */
        }
        return;
    }
    Sluice__V1__Delivery ds[SL__BATCH_MAX], *dp[SL__BATCH_MAX];
    Sluice__V1__Lease ls[SL__BATCH_MAX];
    for (size_t i = 0; i < k; i++) {
        sluice__v1__delivery__init(&ds[i]);
        s_fill_lease(n, jobs[i], &ls[i]);
        ds[i].job = jobs[i]->pb;
        ds[i].lease = &ls[i];
        dp[i] = &ds[i];
    }
    Sluice__V1__Deliver d = SLUICE__V1__DELIVER__INIT;
    d.n_deliveries = k;
    d.deliveries = dp;
    Sluice__V1__Envelope env = SLUICE__V1__ENVELOPE__INIT;
    env.body_case = SLUICE__V1__ENVELOPE__BODY_DELIVER;
    env.deliver = &d;
    sl__send(n, c->peer->rid, c->peer->rid_len, &env);
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
        s_lease(n, c, j);
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
            s_lease(n, c, v);
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
    sl__queue_t *q = sl__map_get(n->queues, name, strlen(name));
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
    sl__job_t *j = sl__map_get(n->jobs, l->job_id.data, 16);
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
    /* protobuf-c points unset strings at its static empty string. */
    if (j->pb->last_error != protobuf_c_empty_string)
        free(j->pb->last_error);
    j->pb->last_error = strdup(error ? error : "");
    if (!j->pb->last_error)
        abort();
    if (retryable && j->pb->attempt < j->pb->max_attempts) {
        q->retried++;
        q->delayed++;
        j->state = SL__J_RETRY;
        sl__timer_arm(n, j, SL__T_RETRY, sl__mono_ms() + s_backoff(n, j->pb->attempt));
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

void sl__queue_timer(sl__node_t *n, sl__tmr_t *t)
{
    sl__job_t *j = sl__map_get(n->jobs, t->id, 16);
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
        s_unlease(j);
        if (j->pb->attempt >= j->pb->max_attempts) {
            s_kill(n, j, "lease expired: attempts exhausted");
            s_admit_waiting(n, q);
        } else {
            s_requeue(n, j);
        }
        break;
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
    /* Called after the engine stopped: jobs are freed through n->jobs. */
    for (int p = 0; p < SL__LEVELS; p++)
        sl_chan_destroy(&q->levels[p]);
    sl_chan_destroy(&q->wake);
    free(q->name);
    free(q);
}
