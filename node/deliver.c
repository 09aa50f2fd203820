/* deliver.c -- delivery and leases: the engine hands ready jobs to
 * consumers with credit (round robin, highest priority first, oldest first
 * within a priority), in batches that never exceed max-frame, and settles
 * the leases: ack, fail with backoff, touch, expiry, a consumer dropped.
 *
 * A queue with something to deliver sits on the node's run list
 * (sl__queue_wake); the engine drains the list between messages
 * (sl__deliver_run), a bounded number of jobs per turn, so one busy queue
 * cannot starve the rest or the inbound messages. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node_int.h"

#define SL__ERROR_MAX 1024 /* bytes of a Fail's error kept as last_error */

void sl__queue_wake(sl__queue_t *q)
{
    if (q->runnable)
        return;
    sl__node_t *n = q->node;
    q->runnable = true;
    q->run_next = NULL;
    if (n->run_tail)
        n->run_tail->run_next = q;
    else
        n->run_head = q;
    n->run_tail = q;
    sl__queue_idle_check(n, q); /* not idle while on the run list */
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
 * thread while the engine owns (and may free) the job itself. False if
 * out of memory (nothing sent). */
static bool s_send_local(sl__node_t *n, sl__consumer_t *c, sl__job_t *j)
{
    size_t ql = strlen(j->q->name);
    sl__local_job_t *lj = malloc(sizeof *lj + ql + 1 + j->payload_len);
    sl__in_t *res = calloc(1, sizeof *res);
    if (!lj || !res) {
        free(lj);
        free(res);
        n->oom++;
        return false;
    }
    memset(lj, 0, sizeof *lj);
    lj->result = res;
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
    if (sl_offer(c->local, lj) != SL_OK) { /* capacity = concurrency >= credit */
        free(lj->result);
        free(lj);
        return false;
    }
    return true;
}

/* Envelope{deliver: Deliver{deliveries: Delivery{job, lease}...}}, written
 * by hand: each job goes out as the bytes it came in, then the fields the
 * node set (s_job_tail). False if out of memory (nothing sent). */
static bool s_send_batch(sl__node_t *n, sl__consumer_t *c, sl__job_t **jobs, size_t k)
{
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
    sl__out_t *o = sl__out_new(n, c->peer->rid, c->peer->rid_len, len);
    if (!o)
        return false;
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
    return true;
}


/* --- leases ------------------------------------------------------------ */

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

void sl__lease_link(sl__node_t *n, sl__consumer_t *c, sl__job_t *j)
{
    j->holder = c;
    j->lprev = NULL;
    j->lnext = c->leases;
    if (c->leases)
        c->leases->lprev = j;
    c->leases = j;
    c->leased++;
    j->eprev = n->expiry_tail;
    j->enext = NULL;
    if (n->expiry_tail)
        n->expiry_tail->enext = j;
    else
        n->expiry_head = j;
    n->expiry_tail = j;
    j->in_expiry = true;
}

void sl__lease_unlink(sl__job_t *j)
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
    s_expiry_unlink(c->q->node, j);
}

static void s_lease(sl__node_t *n, sl__consumer_t *c, sl__job_t *j, int64_t now)
{
    sl__job_move(n, j, SL__J_LEASED, SL__WHY_DELIVER, NULL);
    j->lease_id = ++n->next_lease;
    j->lease_expires = now + n->o.lease_ms;
    c->credit--;
    sl__lease_link(n, c, j);
}

/* Back to READY after a lease ended without a verdict of the consumer's
 * own (why: RETURN or LEASE_EXPIRED), or DEAD if the TTL passed. */
static void s_requeue(sl__node_t *n, sl__job_t *j, sl__why_t why)
{
    if (j->ttl_at && j->ttl_at <= sl__mono_ms())
        sl__job_move(n, j, SL__J_DEAD, SL__WHY_TTL, "expired");
    else
        sl__job_move(n, j, SL__J_READY, why, NULL);
}

/* --- delivery ---------------------------------------------------------- */

/* An upper bound of the bytes j adds to a Deliver envelope's body once
 * leased: the lease's varints at their widest, one more attempt byte. */
static size_t s_delivery_bound(const sl__job_t *j)
{
    size_t jsize = j->len + s_job_tail(j, NULL) + 1;
    size_t lsize = 2 + 16 + 3 * 11;
    size_t d = sl__pb_len_size(1, jsize) + sl__pb_len_size(2, lsize);
    return sl__pb_len_size(1, d);
}

/* Deliver what q can, spending at most *budget jobs of it. */
static void s_deliver_queue(sl__node_t *n, sl__queue_t *q, int *budget)
{
    while (*budget > 0 && !n->stopping && !q->paused && q->levels) {
        sl__consumer_t *c = s_pick(q);
        if (!c)
            return; /* credit brings it back (sl__queue_wake) */
        sl__job_t *batch[SL__BATCH_MAX];
        size_t k = 0, body = 0;
        int64_t now = sl__mono_ms();
        while (k < SL__BATCH_MAX && c->credit > 0 && q->levels) {
            sl__job_t *j = q->rhead[31 - __builtin_clz(q->levels)];
            if (j->ttl_at && j->ttl_at <= now) {
                sl__job_move(n, j, SL__J_DEAD, SL__WHY_TTL, "expired");
                continue;
            }
            if (!c->local) {
                size_t add = s_delivery_bound(j);
                if (k > 0 && sl__pb_len_size(15, body + add) > n->o.max_frame)
                    break; /* the rest go in the next envelope */
                body += add;
            }
            s_lease(n, c, j, now);
            batch[k++] = j;
        }
        if (k == 0)
            continue;
        *budget -= (int)k;
        size_t sent = k;
        if (c->local) {
            for (sent = 0; sent < k && s_send_local(n, c, batch[sent]);)
                sent++;
        } else if (!s_send_batch(n, c, batch, k)) {
            sent = 0;
        }
        if (sent < k) { /* out of memory: what did not go out goes back */
            for (size_t i = sent; i < k; i++) {
                c->credit++;
                sl__job_move(n, batch[i], SL__J_READY, SL__WHY_RETURN, NULL);
            }
            return;
        }
    }
    if (*budget <= 0 && q->levels && !q->paused && !n->stopping)
        sl__queue_wake(q); /* more to do: after the others had their turn */
}

bool sl__deliver_run(sl__node_t *n, int budget)
{
    sl__queue_t *last = n->run_tail;
    while (n->run_head && budget > 0) {
        sl__queue_t *q = n->run_head;
        n->run_head = q->run_next;
        if (!n->run_head)
            n->run_tail = NULL;
        q->run_next = NULL;
        q->runnable = false;
        s_deliver_queue(n, q, &budget);
        sl__queue_idle_check(n, q);
        if (q == last)
            break;
    }
    return n->run_head != NULL;
}

/* --- settling leases --------------------------------------------------- */

/* The leased job named by l, or NULL with *code set. */
static sl__job_t *s_leased(sl__node_t *n, const Sluice__V1__Lease *l,
                           Sluice__V1__Error__Code *code)
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

int sl__queue_ack(sl__node_t *n, const Sluice__V1__Lease *l, Sluice__V1__Error__Code *code)
{
    sl__job_t *j = s_leased(n, l, code);
    if (!j)
        return SL_ESTATE;
    sl__job_move(n, j, 0, SL__WHY_ACK, NULL);
    return SL_OK;
}

/* Exponential backoff with full jitter: uniformly random between 0 and
 * min(backoff-max, backoff-base * 2^(attempt-1)), from the node's own
 * generator (seeded per process, so nodes do not retry in lockstep). */
static int64_t s_backoff(sl__node_t *n, const sl__policy_t *pol, uint32_t attempt)
{
    int64_t d = pol->backoff_base_ms;
    for (uint32_t i = 1; i < attempt && d < pol->backoff_max_ms; i++)
        d *= 2;
    if (d > pol->backoff_max_ms)
        d = pol->backoff_max_ms;
    n->rng ^= n->rng << 13;
    n->rng ^= n->rng >> 7;
    n->rng ^= n->rng << 17;
    return (int64_t)(n->rng % (uint64_t)(d + 1));
}

int sl__queue_fail(sl__node_t *n, const Sluice__V1__Lease *l, bool retryable, const char *error,
                   Sluice__V1__Error__Code *code)
{
    sl__job_t *j = s_leased(n, l, code);
    if (!j)
        return SL_ESTATE;
    if (!error)
        error = "";
    size_t el = strnlen(error, SL__ERROR_MAX);
    /* Cut at a character boundary: never half of a UTF-8 sequence. */
    if (el == SL__ERROR_MAX && error[el] != '\0')
        while (el > 0 && ((unsigned char)error[el] & 0xC0) == 0x80)
            el--;
    char *e = malloc(el + 1);
    if (e) { /* out of memory: the previous last_error stays */
        memcpy(e, error, el);
        e[el] = '\0';
        free(j->last_error);
        j->last_error = e;
    }
    if (retryable && j->attempt < j->max_attempts) {
        sl__job_move(n, j, SL__J_RETRY, SL__WHY_FAIL_RETRY, NULL);
        int64_t delay = s_backoff(n, j->q->pol, j->attempt);
        if (sl__timer_arm(n, j, SL__T_RETRY, sl__mono_ms() + delay) != SL_OK) {
            n->oom++; /* no timer: retry now rather than never */
            sl__job_move(n, j, SL__J_READY, SL__WHY_DUE, NULL);
        } else {
            sl__retain_retry(n, j, delay); /* with a store: kept there too */
        }
    } else {
        char why[SL__ERROR_MAX + 32];
        snprintf(why, sizeof why, "%s: %.*s", retryable ? "attempts exhausted" : "failed",
                 (int)el, error);
        sl__job_move(n, j, SL__J_DEAD, SL__WHY_FAIL_DEAD, why);
    }
    return SL_OK;
}

int sl__queue_touch(sl__node_t *n, const Sluice__V1__Lease *l, uint32_t extend_ms,
                    Sluice__V1__Lease *out, Sluice__V1__Error__Code *code)
{
    sl__job_t *j = s_leased(n, l, code);
    if (!j)
        return SL_ESTATE;
    int64_t expires = sl__mono_ms() + (extend_ms ? (int64_t)extend_ms : n->o.lease_ms);
    int64_t was = j->lease_expires;
    bool listed = j->in_expiry;
    j->lease_expires = expires;
    s_expiry_unlink(n, j); /* out of order now: the timer heap has it */
    if (sl__timer_arm(n, j, SL__T_LEASE, expires) != SL_OK) {
        /* Out of memory: the lease stands as it was. */
        j->lease_expires = was;
        if (listed)
            sl__timer_arm(n, j, SL__T_LEASE, was); /* best effort */
        n->oom++;
        *code = SLUICE__V1__ERROR__CODE__LIMIT;
        return SL_ENOMEM;
    }
    s_fill_lease(n, j, out);
    return SL_OK;
}

void sl__lease_expiry_one(sl__node_t *n, sl__job_t *j)
{
    if (j->attempt >= j->max_attempts)
        sl__job_move(n, j, SL__J_DEAD, SL__WHY_LEASE_EXPIRED,
                     "lease expired: attempts exhausted");
    else
        s_requeue(n, j, SL__WHY_LEASE_EXPIRED);
}

void sl__lease_expiry(sl__node_t *n, int64_t now)
{
    while (n->expiry_head && n->expiry_head->lease_expires <= now)
        sl__lease_expiry_one(n, n->expiry_head);
}

uint32_t sl__consumer_drop(sl__node_t *n, sl__consumer_t *c)
{
    sl__queue_t *q = c->q;
    uint32_t returned = 0;
    while (c->leases) {
        s_requeue(n, c->leases, SL__WHY_RETURN);
        returned++;
    }
    for (sl__consumer_t **pp = &q->consumers; *pp; pp = &(*pp)->qnext)
        if (*pp == c) {
            *pp = c->qnext;
            break;
        }
    for (sl__consumer_t **pp = &c->peer->consumers; *pp; pp = &(*pp)->pnext)
        if (*pp == c) {
            *pp = c->pnext;
            break;
        }
    const void *key[2] = {c->peer, q};
    sl__map_del(n->consumers, key, sizeof key);
    if (q->rr == c)
        q->rr = NULL;
    q->nconsumers--;
    if (c->local)
        sl_chan_close(c->local);
    sl_chan_destroy(&c->local);
    free(c);
    sl__queue_wake(q);
    return returned;
}
