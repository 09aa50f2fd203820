/* queue.c -- a node's queues and the one state machine of their jobs:
 * admission under the overflow policy, the ready lists, the dead list,
 * idle queues forgotten. Delivery and leases are deliver.c's.
 *
 * Every change of a job's state goes through sl__job_move, which keeps
 * each state's list and counter and the event counters of the reason:
 *
 *   publish --PUBLISH--> WAITING (block policy, queue at max-length)
 *      |                    | room (s_admit)
 *      +------PUBLISH-------+----> DELAYED --DUE--> READY --DELIVER--> LEASED
 *                           '----> READY                ^                |
 *                                                        |  RETURN,      | ACK --> (gone)
 *                              RETRY --DUE---------------+  LEASE_EXPIRED|
 *                                ^                       '---------------+
 *                                '--FAIL_RETRY-----------------------------+
 *                              DEAD <--FAIL_DEAD, LEASE_EXPIRED (attempts spent)
 *    (any held state) --TTL--> DEAD --EVICT (max-dead)--> (gone)
 *    READY --DROP (drop-oldest)--> (gone)
 *
 * All of it runs on the engine (node_int.h): no locks. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node_int.h"
#include "sluice/name.h"

/* The overflow policies: one row each, by sl_overflow_t. */
static const struct {
    const char *name;
} s_overflow[] = {
    [SL_OVERFLOW_BLOCK] = {"block"},
    [SL_OVERFLOW_DROP_NEW] = {"drop-new"},
    [SL_OVERFLOW_DROP_OLDEST] = {"drop-oldest"},
};

const char *sl__overflow_name(sl_overflow_t o)
{
    return (unsigned)o < sizeof s_overflow / sizeof s_overflow[0] ? s_overflow[o].name : "?";
}

/* --- lists ------------------------------------------------------------- */

static void s_unlink(sl__job_t **head, sl__job_t **tail, sl__job_t *j)
{
    if (j->lprev)
        j->lprev->lnext = j->lnext;
    else
        *head = j->lnext;
    if (j->lnext)
        j->lnext->lprev = j->lprev;
    else
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

static uint32_t s_level(const sl__job_t *j)
{
    return j->priority < SL__LEVELS ? j->priority : SL__LEVELS - 1;
}

/* Jobs that count against max-length: ready, delayed and retry-wait. */
static uint64_t s_held(const sl__queue_t *q)
{
    return q->ready + q->delayed;
}

/* --- idle queues ------------------------------------------------------- */

static bool s_idle(const sl__queue_t *q)
{
    return q->ready + q->delayed + q->in_flight + q->waiting + q->dead == 0 &&
           q->nconsumers == 0 && !q->paused && !q->draining && !q->runnable;
}

static void s_idle_unlink(sl__node_t *n, sl__queue_t *q)
{
    if (!q->idle_listed)
        return;
    if (q->idle_prev)
        q->idle_prev->idle_next = q->idle_next;
    else
        n->idle_head = q->idle_next;
    if (q->idle_next)
        q->idle_next->idle_prev = q->idle_prev;
    else
        n->idle_tail = q->idle_prev;
    q->idle_prev = q->idle_next = NULL;
    q->idle_listed = false;
}

void sl__queue_idle_check(sl__node_t *n, sl__queue_t *q)
{
    bool idle = s_idle(q);
    if (idle == q->idle_listed)
        return;
    if (!idle) {
        s_idle_unlink(n, q);
        return;
    }
    q->idle_since = sl__mono_ms();
    q->idle_prev = n->idle_tail;
    q->idle_next = NULL;
    if (n->idle_tail)
        n->idle_tail->idle_next = q;
    else
        n->idle_head = q;
    n->idle_tail = q;
    q->idle_listed = true;
}

void sl__queue_sweep(sl__node_t *n, int64_t now)
{
    while (n->idle_head && now - n->idle_head->idle_since >= n->o.queue_idle_ms) {
        sl__queue_t *q = n->idle_head;
        s_idle_unlink(n, q);
        if (!s_idle(q))
            continue; /* busy again: it left the list when it became so */
        if (n->last_queue == q)
            n->last_queue = NULL;
        sl__map_del(n->queues, q->name, q->name_len);
        sl__queue_free(q);
        n->queues_forgotten++;
    }
}

/* --- the state machine ------------------------------------------------- */

static void s_admit(sl__node_t *n, sl__queue_t *q);

/* Out of j's state: its list and counter. */
static void s_leave(sl__node_t *n, sl__job_t *j)
{
    sl__queue_t *q = j->q;
    switch (j->state) {
    case SL__J_WAITING:
        s_unlink(&q->wait_head, &q->wait_tail, j);
        q->waiting--;
        n->waiting_total--;
        break;
    case SL__J_DELAYED:
    case SL__J_RETRY:
        q->delayed--;
        j->timer_gen = 0; /* its timer, if still armed, goes stale */
        break;
    case SL__J_READY: {
        uint32_t p = s_level(j);
        s_unlink(&q->rhead[p], &q->rtail[p], j);
        if (!q->rhead[p])
            q->levels &= ~(1u << p);
        q->ready--;
        break;
    }
    case SL__J_LEASED:
        sl__lease_unlink(j);
        q->in_flight--;
        j->timer_gen = 0;
        break;
    case SL__J_DEAD:
        s_unlink(&q->dead_head, &q->dead_tail, j);
        q->dead--;
        break;
    default:
        break;
    }
    j->state = 0;
}

void sl__job_move(sl__node_t *n, sl__job_t *j, int to, sl__why_t why, const char *reason)
{
    sl__queue_t *q = j->q;
    int from = j->state;
    s_leave(n, j);
    /* A job is counted published when it is first stored: placed (ready,
     * delayed, or dead at once if already expired), not while it waits. */
    if ((from == 0 || from == SL__J_WAITING) && to != SL__J_WAITING && why != SL__WHY_DROP)
        q->published++;
    if (from == SL__J_WAITING) {
        /* Stored at last (placed, or expired while waiting): confirmed
         * ACCEPTED now. */
        sl__pubctx_t *ctx = j->pub;
        j->pub = NULL;
        sl__pub_settle(n, ctx, j->pub_index, SLUICE__V1__JOB_CONFIRM__STATUS__ACCEPTED, 0, NULL,
                       0);
    }
    switch (why) {
    case SL__WHY_DELIVER:
        q->delivered++;
        j->attempt++;
        break;
    case SL__WHY_ACK: q->acked++; break;
    case SL__WHY_FAIL_RETRY:
        q->failed++;
        q->retried++;
        j->failures++;
        break;
    case SL__WHY_LEASE_EXPIRED: j->redeliveries++; break;
    case SL__WHY_FAIL_DEAD:
        q->failed++;
        j->failures++;
        break;
    case SL__WHY_RETURN:
        j->redeliveries++;
        if (j->attempt > 0)
            j->attempt--; /* no verdict: the delivery does not count */
        break;
    case SL__WHY_TTL: q->expired++; break;
    case SL__WHY_REQUEUE:
        j->attempt = 0; /* a fresh count; failures and last_error stay */
        free(j->dead_reason);
        j->dead_reason = NULL;
        break;
    case SL__WHY_DROP: q->dropped++; break;
    default: break;
    }
    j->state = to;
    switch (to) {
    case SL__J_WAITING:
        s_append(&q->wait_head, &q->wait_tail, j);
        q->waiting++;
        n->waiting_total++;
        break;
    case SL__J_DELAYED:
    case SL__J_RETRY:
        q->delayed++; /* the caller arms the timer */
        break;
    case SL__J_READY: {
        uint32_t p = s_level(j);
        s_append(&q->rhead[p], &q->rtail[p], j);
        q->levels |= 1u << p;
        q->ready++;
        sl__queue_wake(q);
        break;
    }
    case SL__J_LEASED:
        q->in_flight++; /* the caller links it to its holder */
        break;
    case SL__J_DEAD:
        j->dead_ms = sl_wall_ms();
        free(j->dead_reason);
        j->dead_reason = strdup(reason ? reason : ""); /* NULL if out of memory */
        s_append(&q->dead_head, &q->dead_tail, j);
        q->dead++;
        while (q->dead > (uint64_t)q->pol->max_dead && q->dead_head)
            sl__job_move(n, q->dead_head, 0, SL__WHY_EVICT, NULL);
        break;
    default: /* gone */
        if (why == SL__WHY_ACK)
            sl__done_remember(n, j);
        sl__job_forget(n, j);
        break;
    }
    if (q->wait_head && s_held(q) < (uint64_t)q->pol->max_length)
        s_admit(n, q);
    sl__queue_idle_check(n, q);
}

/* Place an accepted job: delayed or ready (or dead, if already expired). */
static void s_place(sl__node_t *n, sl__job_t *j, sl__why_t why)
{
    int64_t now = sl__mono_ms();
    if (j->ttl_at && j->ttl_at <= now) {
        sl__job_move(n, j, SL__J_DEAD, SL__WHY_TTL, "expired");
        return;
    }
    int64_t wall = sl_wall_ms();
    if (j->not_before_ms <= wall) {
        sl__job_move(n, j, SL__J_READY, why, NULL);
        return;
    }
    sl__job_move(n, j, SL__J_DELAYED, why, NULL);
    /* Both clocks are truncated to whole ms: +1 so the job is never
     * released before not_before (found by integration/delay_test). */
    if (sl__timer_arm(n, j, SL__T_DELAY, now + (j->not_before_ms - wall) + 1) != SL_OK) {
        n->oom++; /* no timer: ready now rather than never */
        sl__job_move(n, j, SL__J_READY, SL__WHY_DUE, NULL);
    }
}

/* Admit waiting (block policy) jobs while there is room. */
static void s_admit(sl__node_t *n, sl__queue_t *q)
{
    if (q->admitting)
        return; /* the loop below is already at it */
    q->admitting = true;
    while (q->wait_head && s_held(q) < (uint64_t)q->pol->max_length)
        s_place(n, q->wait_head, SL__WHY_PUBLISH);
    q->admitting = false;
}

/* --- queues ------------------------------------------------------------ */

sl__queue_t *sl__queue_get(sl__node_t *n, const char *name, bool create, int *err)
{
    /* Most publishes name the queue the one before did. */
    if (n->last_queue && strcmp(n->last_queue->name, name) == 0)
        return n->last_queue;
    size_t len = strlen(name);
    sl__queue_t *q = sl__map_get(n->queues, name, len);
    if (q)
        n->last_queue = q;
    if (q || !create)
        return q;
    if (!sl_queue_name_ok(name, len)) {
        *err = SL_EINVAL;
        return NULL;
    }
    if (sl__map_size(n->queues) >= n->o.max_queues) {
        *err = SL_ELIMIT;
        return NULL;
    }
    q = calloc(1, sizeof *q + len + 1);
    if (!q) {
        *err = SL_ENOMEM;
        return NULL;
    }
    memcpy(q->name, name, len + 1);
    q->name_len = len;
    q->node = n;
    q->pol = sl__map_get(n->policies, name, len);
    if (!q->pol)
        q->pol = &n->policy;
    if (sl__map_put(n->queues, q->name, len, q) != SL_OK) {
        free(q);
        *err = SL_ENOMEM;
        return NULL;
    }
    sl__rates_init(&q->rates, sl__mono_ms());
    sl__queue_idle_check(n, q); /* idle until something happens to it */
    n->last_queue = q;
    return q;
}

int sl__queue_set_policy(sl__node_t *n, const char *name, const char *spec, char *why,
                         size_t size)
{
    size_t len = strlen(name);
    sl__policy_t *p = sl__map_get(n->policies, name, len);
    sl__policy_t np = p ? *p : n->policy;
    if (sl__policy_parse(&np, spec, why, size) != 0)
        return -1;
    if (!p) {
        p = malloc(sizeof *p);
        if (!p || sl__map_put(n->policies, name, len, p) != SL_OK) {
            free(p);
            n->oom++;
            snprintf(why, size, "out of memory");
            return -1;
        }
    }
    *p = np;
    sl__queue_t *q = sl__map_get(n->queues, name, len);
    if (q) {
        q->pol = p;
        /* A larger max-length lets waiting publishes in; a smaller
         * max-dead forgets the oldest dead jobs now. */
        while (q->dead > (uint64_t)p->max_dead && q->dead_head)
            sl__job_move(n, q->dead_head, 0, SL__WHY_EVICT, NULL);
        if (q->wait_head && s_held(q) < (uint64_t)p->max_length)
            s_admit(n, q);
        sl__queue_wake(q);
    }
    return 0;
}

void sl__queue_free(sl__queue_t *q)
{
    free(q); /* jobs and consumers are freed by their owners */
}

/* --- publishing -------------------------------------------------------- */

/* A new job into q: indexed by id and idempotency key (key, klen from
 * sl__idem_key), the policy's defaults filled in where the producer left
 * them 0, its TTL turned into monotonic ms (ttl_at; the caller arms the
 * timer). SL_OK, or SL_ENOMEM (counted) with nothing indexed. */
static int s_take_in(sl__node_t *n, sl__queue_t *q, sl__job_t *j, const char *key, int klen)
{
    int perr;
    sl__idmap_put(n->ids, j, &perr);
    if (perr != SL_OK || (klen > 0 && sl__map_put(n->keys, key, (size_t)klen, j) != SL_OK)) {
        if (perr == SL_OK)
            sl__idmap_del(n->ids, j->id);
        n->oom++;
        return SL_ENOMEM;
    }
    j->q = q;
    if (j->max_attempts == 0) {
        j->max_attempts = (uint32_t)q->pol->max_attempts;
        j->set_max_attempts = true;
    }
    if (j->created_ms == 0) {
        j->created_ms = sl_wall_ms();
        j->set_created = true;
    }
    if (j->deadline_ms > 0) /* +1: truncated clocks, as in s_place */
        j->ttl_at = sl__mono_ms() + (j->deadline_ms - sl_wall_ms()) + 1;
    return SL_OK;
}

/* Bytes a delivery adds to a job's own: the fields the node appends
 * (attempt, max_attempts, created_ms, last_error up to SL__ERROR_MAX),
 * the lease and the framing. A job whose bytes plus this exceed max-frame
 * could never be delivered, so it is refused at publish. */
#define SL__DELIVERY_OVERHEAD 2048

void sl__queue_publish(sl__node_t *n, sl__job_t *j, sl__pubctx_t *ctx, size_t i)
{
    char why[200];
    int code = SLUICE__V1__ERROR__CODE__BAD_MESSAGE;
    uint32_t retry_after = 0;
    enum { ACC = SLUICE__V1__JOB_CONFIRM__STATUS__ACCEPTED,
           DUP = SLUICE__V1__JOB_CONFIRM__STATUS__DUPLICATE,
           REJ = SLUICE__V1__JOB_CONFIRM__STATUS__REJECTED };
    if (j->id_len != 16) {
        snprintf(why, sizeof why, "job id must be 16 bytes, got %u", j->id_len);
        code = SLUICE__V1__ERROR__CODE__BAD_ID;
        goto reject;
    }
    /* A NUL inside the name would hide the rest of it. */
    if (!j->queue || !sl_queue_name_ok(j->queue, j->queue_len)) {
        snprintf(why, sizeof why, "invalid queue name (" SL_QUEUE_NAME_RULE ")");
        code = SLUICE__V1__ERROR__CODE__BAD_QUEUE;
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
    if (j->len + SL__DELIVERY_OVERHEAD > n->o.max_frame) {
        snprintf(why, sizeof why, "job of %zu bytes cannot be delivered within max-frame %llu",
                 j->len, (unsigned long long)n->o.max_frame);
        goto reject;
    }
    void *known = sl__idmap_get(n->ids, j->id);
    if (known) {
        sl__job_free(j);
        sl__pub_settle(n, ctx, i, DUP, 0,
                       (uintptr_t)known & SL__DONE_TAG ? "job id already done"
                                                       : "job id already held", 0);
        return;
    }
    if (j->ikey_nul) {
        snprintf(why, sizeof why, "idempotency key holds a NUL byte");
        goto reject;
    }
    char key[300];
    int klen = sl__idem_key(j->queue, j->ikey, j->ikey_len, key, sizeof key);
    if (klen < 0) {
        snprintf(why, sizeof why, "idempotency key too long");
        goto reject;
    }
    if (klen > 0 && (sl__map_get(n->keys, key, (size_t)klen) ||
                     sl__map_get(n->done_keys, key, (size_t)klen))) {
        sl__job_free(j);
        sl__pub_settle(n, ctx, i, DUP, 0, "idempotency key already held or done", 0);
        return;
    }
    if (n->stopping) {
        snprintf(why, sizeof why, "shutting down");
        code = SLUICE__V1__ERROR__CODE__SHUTTING_DOWN;
        retry_after = 1000;
        goto reject;
    }
    int err = SL_OK;
    sl__queue_t *q = sl__queue_get(n, j->queue, true, &err);
    if (!q) {
        snprintf(why, sizeof why, "cannot create queue: %s%s", sl_strerror(err),
                 err == SL_ELIMIT ? " (max-queues)" : "");
        code = err == SL_EINVAL ? SLUICE__V1__ERROR__CODE__BAD_QUEUE
                                : SLUICE__V1__ERROR__CODE__LIMIT; /* max-queues, memory */
        retry_after = 1000;
        goto reject;
    }
    if (q->draining) {
        snprintf(why, sizeof why, "queue draining");
        code = SLUICE__V1__ERROR__CODE__DRAINING;
        retry_after = 1000;
        goto reject;
    }
    bool wait = false;
    if (s_held(q) >= (uint64_t)q->pol->max_length) {
        switch ((sl_overflow_t)q->pol->overflow) {
        case SL_OVERFLOW_BLOCK:
            if (n->waiting_total >= n->o.max_waiting) {
                snprintf(why, sizeof why, "full: node waiting limit reached (max-waiting)");
                code = SLUICE__V1__ERROR__CODE__LIMIT;
                retry_after = 1000;
                goto reject;
            }
            wait = true;
            break;
        case SL_OVERFLOW_DROP_NEW:
            q->dropped++;
            snprintf(why, sizeof why, "full");
            code = SLUICE__V1__ERROR__CODE__FULL;
            goto reject;
        case SL_OVERFLOW_DROP_OLDEST: {
            /* The oldest ready job of the lowest priority present goes. */
            if (!q->levels) { /* everything held is delayed: nothing to slide out */
                snprintf(why, sizeof why, "full");
                code = SLUICE__V1__ERROR__CODE__FULL;
                retry_after = 1000;
                goto reject;
            }
            sl__job_move(n, q->rhead[__builtin_ctz(q->levels)], 0, SL__WHY_DROP, NULL);
            break;
        }
        }
    }
    j->attempt = 0; /* attempt counts this node's deliveries, whatever was sent */
    if (s_take_in(n, q, j, key, klen) != SL_OK) {
        snprintf(why, sizeof why, "out of memory");
        code = SLUICE__V1__ERROR__CODE__LIMIT;
        retry_after = 1000;
        goto reject;
    }
    if (j->ttl_at) {
        if (j->ttl_at > sl__mono_ms() && sl__timer_arm(n, j, SL__T_TTL, j->ttl_at) != SL_OK) {
            sl__job_unindex(n, j);
            n->oom++;
            snprintf(why, sizeof why, "out of memory");
            code = SLUICE__V1__ERROR__CODE__LIMIT;
            retry_after = 1000;
            goto reject;
        }
    }
    if (wait) { /* block policy: confirmed when it leaves WAITING */
        j->pub = ctx;
        j->pub_index = i;
        sl__job_move(n, j, SL__J_WAITING, SL__WHY_PUBLISH, NULL);
        return;
    }
    s_place(n, j, SL__WHY_PUBLISH);
    sl__pub_settle(n, ctx, i, ACC, 0, NULL, 0);
    return;
reject:
    sl__job_free(j);
    sl__pub_settle(n, ctx, i, REJ, code, why, retry_after);
}

int sl__queue_adopt(sl__node_t *n, const char *queue, sl__job_t *j)
{
    int err = SL_OK;
    sl__queue_t *q = j->id_len == 16 ? sl__queue_get(n, queue, true, &err) : NULL;
    if (!q || sl__idmap_get(n->ids, j->id)) {
        sl__job_free(j);
        return q ? SL_ESTATE : (err ? err : SL_EINVAL);
    }
    char key[300];
    int klen = sl__idem_key(queue, j->ikey, j->ikey_len, key, sizeof key);
    if (s_take_in(n, q, j, key, klen) != SL_OK) {
        sl__job_free(j);
        return SL_ENOMEM;
    }
    if (j->ttl_at > sl__mono_ms())
        sl__timer_arm(n, j, SL__T_TTL, j->ttl_at); /* no timer: checked at delivery */
    /* Counted in `retried` where it failed; here it is simply due. A job
     * whose deadline passed meanwhile is dead at once. (From state 0 a
     * move counts `published`: this node stores it for the first time.) */
    if (j->ttl_at && j->ttl_at <= sl__mono_ms())
        sl__job_move(n, j, SL__J_DEAD, SL__WHY_TTL, "expired");
    else
        sl__job_move(n, j, SL__J_READY, SL__WHY_DUE, NULL);
    return SL_OK;
}

/* --- timers ------------------------------------------------------------ */

/* A job's deadline passed while the node held it. */
static void s_ttl(sl__node_t *n, sl__job_t *j)
{
    switch (j->state) {
    case SL__J_READY:
    case SL__J_DELAYED:
    case SL__J_RETRY:
    case SL__J_WAITING:
        sl__job_move(n, j, SL__J_DEAD, SL__WHY_TTL, "expired");
        break;
    default:
        break; /* leased: the consumer has it; dead: nothing to do */
    }
}

void sl__queue_timer(sl__node_t *n, sl__tmr_t *t)
{
    sl__job_t *j = sl__job_get(n, t->id);
    if (!j)
        return; /* job gone */
    if (t->kind == SL__T_TTL) {
        if (t->gen == j->ttl_gen)
            s_ttl(n, j);
        return;
    }
    if (t->gen != j->timer_gen)
        return; /* superseded */
    switch (t->kind) {
    case SL__T_DELAY:
    case SL__T_RETRY:
        if (j->state != SL__J_DELAYED && j->state != SL__J_RETRY)
            return;
        if (j->state == SL__J_RETRY && sl__retain_wait(n, j))
            return; /* its copy is being stored: never both */
        if (j->ttl_at && j->ttl_at <= sl__mono_ms())
            sl__job_move(n, j, SL__J_DEAD, SL__WHY_TTL, "expired");
        else
            sl__job_move(n, j, SL__J_READY, SL__WHY_DUE, NULL);
        break;
    case SL__T_LEASE:
        if (j->state == SL__J_LEASED)
            sl__lease_expiry_one(n, j);
        break;
    }
}

/* --- stats and checks -------------------------------------------------- */

void sl__queue_stats(sl__queue_t *q, Sluice__V1__QueueStats *s, char *policy, size_t size)
{
    sluice__v1__queue_stats__init(s);
    s->name = q->name;
    s->depth = q->ready;
    s->delayed = q->delayed;
    s->waiting = q->waiting;
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
    s->draining = q->draining;
    if (policy && size) {
        sl__policy_format(q->pol, policy, size);
        s->policy = policy;
    }
    s->overflow = (char *)sl__overflow_name((sl_overflow_t)q->pol->overflow);
    s->capacity = (uint64_t)q->pol->max_length;
}

static uint64_t s_count(const sl__job_t *head, const sl__queue_t *q, int state, bool *ok)
{
    uint64_t k = 0;
    for (const sl__job_t *j = head; j; j = j->lnext, k++)
        if (j->q != q || j->state != state || (j->lnext && j->lnext->lprev != j))
            *ok = false;
    return k;
}

int sl__queue_check(sl__queue_t *q)
{
    bool ok = true;
    uint64_t ready = 0;
    for (uint32_t p = 0; p < SL__LEVELS; p++) {
        if (!q->rhead[p] != !(q->levels & (1u << p)) || !q->rhead[p] != !q->rtail[p])
            return __LINE__;
        ready += s_count(q->rhead[p], q, SL__J_READY, &ok);
    }
    if (!ok || ready != q->ready)
        return __LINE__;
    if (s_count(q->wait_head, q, SL__J_WAITING, &ok) != q->waiting || !ok)
        return __LINE__;
    if (s_count(q->dead_head, q, SL__J_DEAD, &ok) != q->dead || !ok)
        return __LINE__;
    if (q->dead > (uint64_t)q->pol->max_dead)
        return __LINE__;
    uint64_t leased = 0;
    uint32_t nc = 0;
    for (const sl__consumer_t *c = q->consumers; c; c = c->qnext, nc++) {
        if (c->q != q)
            return __LINE__;
        uint64_t k = s_count(c->leases, q, SL__J_LEASED, &ok);
        if (!ok || k != c->leased)
            return __LINE__;
        leased += k;
    }
    if (nc != q->nconsumers || leased != q->in_flight)
        return __LINE__;
    if (q->idle_listed && !s_idle(q))
        return __LINE__;
    return 0;
}
