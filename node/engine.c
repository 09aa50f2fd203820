/* engine.c -- the engine coroutine, which owns every queue, job, peer
 * and timer: it takes messages from the socket thread and in-process
 * handlers off the inbound channel, dispatches them, runs timers and
 * heartbeats. It never touches the socket and never runs user code. */
#define _GNU_SOURCE
#include <malloc.h>
#include <time.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node_int.h"
#include "sluice/name.h"
#include "sluice/sched.h"

/* --- message dispatch ----------------------------------------------------- */

static void s_lease_reply(sl__node_t *n, sl__peer_t *p, uint64_t corr, Sluice__V1__Lease *l,
                          Sluice__V1__Error__Code code, const char *text)
{
    Sluice__V1__LeaseReply r = SLUICE__V1__LEASE_REPLY__INIT;
    Sluice__V1__Error e = SLUICE__V1__ERROR__INIT;
    r.lease = l;
    if (code != SLUICE__V1__ERROR__CODE__UNKNOWN) {
        e.code = code;
        e.text = (char *)text;
        r.error = &e;
    }
    Sluice__V1__Envelope env = SLUICE__V1__ENVELOPE__INIT;
    env.corr = corr;
    env.body_case = SLUICE__V1__ENVELOPE__BODY_LEASE_REPLY;
    env.lease_reply = &r;
    sl__send(n, p->rid, p->rid_len, &env);
}

static const char *s_code_text(Sluice__V1__Error__Code c)
{
    return c == SLUICE__V1__ERROR__CODE__BAD_ID ? "lease job id must be 16 bytes"
                                                : "stale lease: not held, expired or superseded";
}

/* Place each job of a Publish in order, then confirm them all (now, or
 * once the last blocked one is placed). Takes the jobs: each is freed or
 * owned by its queue when this returns. */
static void s_publish_jobs(sl__node_t *n, const uint8_t *rid, size_t rid_len, uint64_t corr,
                           uint64_t node_epoch, sl__job_t **jobs, size_t k)
{
    sl__pubctx_t *ctx = sl__pub_new(rid, rid_len, corr, jobs, k);
    if (!ctx) {
        for (size_t i = 0; i < k; i++)
            sl__job_free(jobs[i]);
        n->oom++;
        sl__send_error(n, rid, rid_len, corr, SLUICE__V1__ERROR__CODE__LIMIT,
                       "out of memory: publish not taken, resend later");
        return;
    }
    if (node_epoch && node_epoch != n->epoch) {
        /* Meant for an earlier incarnation of this node: the producer has
         * or will resend it where it now belongs. */
        for (size_t i = 0; i < k; i++) {
            sl__job_free(jobs[i]);
            sl__pub_settle(n, ctx, i, SLUICE__V1__JOB_CONFIRM__STATUS__REJECTED,
                           SLUICE__V1__ERROR__CODE__STALE_EPOCH,
                           "stale node epoch: publish meant for an earlier incarnation", 0);
        }
    } else {
        /* Each job costs a random probe of n->ids: start them all at once. */
        for (size_t i = 0; i < k; i++)
            if (jobs[i]->id_len == 16)
                sl__idmap_prefetch(n->ids, jobs[i]->id);
        for (size_t i = 0; i < k; i++)
            sl__queue_publish(n, jobs[i], ctx, i); /* the job is the queue's now */
    }
    /* The extra count kept the confirm from going out half-built. */
    if (--ctx->remaining == 0)
        sl__pub_send(n, ctx);
}

/* A Publish protobuf-c decoded (one the scanner left to it): each job
 * packed again and scanned, so that it is kept like any other. */
static void s_publish(sl__node_t *n, sl__peer_t *p, uint64_t corr, Sluice__V1__Publish *pub)
{
    size_t k = pub->n_jobs;
    sl__job_t **jobs = calloc(k + 1, sizeof *jobs);
    uint8_t *buf = NULL;
    if (!jobs)
        goto oom;
    for (size_t i = 0; i < k; i++) {
        size_t len = sluice__v1__job__get_packed_size(pub->jobs[i]);
        buf = malloc(len ? len : 1);
        if (!buf)
            goto oom;
        len = sluice__v1__job__pack(pub->jobs[i], buf);
        sl__pb_job_t v;
        if (sl__pb_job(buf, len, &v) != 0) {
            /* Re-encoded, an unknown field 0 has a one-byte tag, which no
             * decoder takes: keep what the checks before that one read, to
             * reject the job as before. */
            Sluice__V1__Job *pj = pub->jobs[i];
            size_t ql = strlen(pj->queue);
            free(buf);
            buf = malloc(pj->id.len + ql + 1);
            if (!buf)
                goto oom;
            memset(&v, 0, sizeof v);
            v.id = buf;
            v.id_len = pj->id.len;
            if (v.id_len)
                memcpy(buf, pj->id.data, v.id_len);
            v.queue = buf + v.id_len;
            v.queue_len = ql;
            memcpy(buf + v.id_len, pj->queue, ql);
            v.priority = pj->priority;
            v.field0 = true;
            len = v.id_len + ql;
        }
        jobs[i] = sl__job_new(buf, len, &v);
        free(buf);
        buf = NULL;
        if (!jobs[i])
            goto oom;
    }
    s_publish_jobs(n, p->rid, p->rid_len, corr, pub->node_epoch, jobs, k);
    free(jobs);
    return;
oom:
    free(buf);
    for (size_t i = 0; jobs && i < k; i++)
        sl__job_free(jobs[i]);
    free(jobs);
    n->oom++;
    sl__send_error(n, p->rid, p->rid_len, corr, SLUICE__V1__ERROR__CODE__LIMIT,
                   "out of memory: publish not taken, resend later");
}

/* Ack{items}: each lease settled; a refused one gets a LeaseReply. */
static void s_ack(sl__node_t *n, sl__peer_t *p, uint64_t corr, const sl__jobwire_lease_t *ls,
                  size_t k)
{
    /* Each ack costs random loads (its id's slot in n->ids, the job, the
     * slot of the done entry it pushes out): start a few acks' worth of
     * them before settling any, so that their cache misses overlap. */
    enum { AHEAD = 16 };
    for (size_t i = 0; i < k && i < AHEAD; i++)
        sl__idmap_prefetch(n->ids, ls[i].job_id);
    sl__done_prefetch(n, k < AHEAD ? k : AHEAD);
    for (size_t i = 0; i < k; i++) {
        if (i + AHEAD < k)
            sl__idmap_prefetch(n->ids, ls[i + AHEAD].job_id);
        if (i % AHEAD == 0) {
            sl__done_prefetch(n, k - i < 2 * AHEAD ? k - i : 2 * AHEAD);
            for (size_t a = i; a < k && a < i + AHEAD; a++)
                __builtin_prefetch(sl__job_get(n, ls[a].job_id));
        }
        Sluice__V1__Lease l = SLUICE__V1__LEASE__INIT;
        l.job_id.data = (uint8_t *)ls[i].job_id;
        l.job_id.len = 16;
        l.lease_id = ls[i].lease_id;
        l.epoch = ls[i].epoch;
        l.expires_ms = ls[i].expires_ms;
        Sluice__V1__Error__Code code;
        if (sl__queue_ack(n, &l, &code) != SL_OK)
            s_lease_reply(n, p, corr, &l, code, s_code_text(code));
    }
}

static void s_subscribe_reply(sl__node_t *n, sl__peer_t *p, uint64_t corr, const char *queue,
                              bool subscribed, uint32_t credit, uint32_t returned)
{
    Sluice__V1__SubscribeReply r = SLUICE__V1__SUBSCRIBE_REPLY__INIT;
    r.queue = (char *)queue;
    r.subscribed = subscribed;
    r.credit = credit;
    r.returned = returned;
    Sluice__V1__Envelope env = SLUICE__V1__ENVELOPE__INIT;
    env.corr = corr;
    env.body_case = SLUICE__V1__ENVELOPE__BODY_SUBSCRIBE_REPLY;
    env.subscribe_reply = &r;
    sl__send(n, p->rid, p->rid_len, &env);
}

static void s_bad_queue(sl__node_t *n, sl__peer_t *p, uint64_t corr, const char *name)
{
    sl__send_error(n, p->rid, p->rid_len, corr, SLUICE__V1__ERROR__CODE__BAD_QUEUE,
                   "invalid queue name '%.128s': " SL_QUEUE_NAME_RULE, name ? name : "");
}

static void s_subscribe(sl__node_t *n, sl__peer_t *p, uint64_t corr, Sluice__V1__Subscribe *s)
{
    const char *name = s->queue ? s->queue : "";
    if (!sl_queue_name_ok_str(name)) {
        s_bad_queue(n, p, corr, name);
        return;
    }
    if (!sl__member_subscribe_ok(n, p->rid, p->rid_len, corr, s))
        return; /* answered STALE_EPOCH */
    int err = SL_OK;
    sl__queue_t *q = sl__queue_get(n, name, true, &err);
    sl__consumer_t *c = q ? sl__consumer_find(n, p, q) : NULL;
    if (q && !c)
        c = sl__consumer_new(n, p, q);
    if (!c) {
        if (!q && err == SL_EINVAL)
            s_bad_queue(n, p, corr, name);
        else
            sl__send_error(n, p->rid, p->rid_len, corr, SLUICE__V1__ERROR__CODE__LIMIT,
                           "cannot subscribe to '%.128s': %s%s", name, sl_strerror(err),
                           err == SL_ELIMIT ? " (max-queues)" : "");
        if (q)
            sl__queue_idle_check(n, q);
        return;
    }
    c->credit = s->credit > SL__CREDIT_MAX ? SL__CREDIT_MAX : s->credit;
    sl__queue_wake(q);
    s_subscribe_reply(n, p, corr, q->name, true, c->credit, 0);
}

/* p's consumer of the queue a Credit or Unsubscribe names, or NULL after
 * answering BAD_QUEUE (invalid name) or NOT_SUBSCRIBED. */
static sl__consumer_t *s_subscribed(sl__node_t *n, sl__peer_t *p, uint64_t corr,
                                    const char *queue)
{
    const char *name = queue ? queue : "";
    if (!sl_queue_name_ok_str(name)) {
        s_bad_queue(n, p, corr, name);
        return NULL;
    }
    sl__queue_t *q = sl__queue_get(n, name, false, NULL);
    sl__consumer_t *c = q ? sl__consumer_find(n, p, q) : NULL;
    if (!c)
        sl__send_error(n, p->rid, p->rid_len, corr, SLUICE__V1__ERROR__CODE__NOT_SUBSCRIBED,
                       "not subscribed to '%.128s'", name);
    return c;
}

static void s_handle_env(sl__node_t *n, sl__in_t *m)
{
    Sluice__V1__Envelope *env = m->env;
    sl__peer_t *p = sl__peer_get(n, m->rid, m->rid_len);
    if (!p) {
        sl__send_error(n, m->rid, m->rid_len, env->corr, SLUICE__V1__ERROR__CODE__LIMIT,
                       "out of memory: request not taken, resend later");
        return;
    }
    Sluice__V1__Error__Code code = SLUICE__V1__ERROR__CODE__UNKNOWN;
    if (m->nul_field) {
        /* protobuf-c cut a string at a NUL byte: act on no part of it. */
        n->bad_messages++;
        bool queue = strcmp(m->nul_field, "queue") == 0;
        sl__send_error(n, p->rid, p->rid_len, env->corr,
                       queue ? SLUICE__V1__ERROR__CODE__BAD_QUEUE
                             : SLUICE__V1__ERROR__CODE__BAD_MESSAGE,
                       "%s: a NUL byte in string field '%s'",
                       queue ? "invalid queue name" : "malformed message", m->nul_field);
        return;
    }
    switch (env->body_case) {
    case SLUICE__V1__ENVELOPE__BODY_PUBLISH:
        s_publish(n, p, env->corr, env->publish);
        break;
    case SLUICE__V1__ENVELOPE__BODY_SUBSCRIBE:
        s_subscribe(n, p, env->corr, env->subscribe);
        break;
    case SLUICE__V1__ENVELOPE__BODY_CREDIT: {
        sl__consumer_t *c = s_subscribed(n, p, env->corr, env->credit->queue);
        if (!c)
            break;
        uint64_t credit = (uint64_t)c->credit + env->credit->credit;
        c->credit = credit > SL__CREDIT_MAX ? SL__CREDIT_MAX : (uint32_t)credit;
        sl__queue_wake(c->q);
        break;
    }
    case SLUICE__V1__ENVELOPE__BODY_UNSUBSCRIBE: {
        sl__consumer_t *c = s_subscribed(n, p, env->corr, env->unsubscribe->queue);
        if (!c)
            break;
        sl__queue_t *q = c->q;
        uint32_t returned = sl__consumer_drop(n, c);
        s_subscribe_reply(n, p, env->corr, q->name, false, 0, returned);
        break;
    }
    case SLUICE__V1__ENVELOPE__BODY_ACK:
        for (size_t i = 0; i < env->ack->n_items; i++) {
            Sluice__V1__AckItem *it = env->ack->items[i];
            if (sl__queue_ack(n, it ? it->lease : NULL, &code) != SL_OK)
                s_lease_reply(n, p, env->corr, it ? it->lease : NULL, code, s_code_text(code));
        }
        break;
    case SLUICE__V1__ENVELOPE__BODY_FAIL:
        if (sl__queue_fail(n, env->fail->lease, env->fail->retryable, env->fail->error, &code) !=
            SL_OK)
            s_lease_reply(n, p, env->corr, env->fail->lease, code, s_code_text(code));
        break;
    case SLUICE__V1__ENVELOPE__BODY_TOUCH: {
        Sluice__V1__Lease out;
        if (sl__queue_touch(n, env->touch->lease, env->touch->extend_ms, &out, &code) != SL_OK)
            s_lease_reply(n, p, env->corr, env->touch->lease, code, s_code_text(code));
        else
            s_lease_reply(n, p, env->corr, &out, SLUICE__V1__ERROR__CODE__UNKNOWN, NULL);
        break;
    }
    case SLUICE__V1__ENVELOPE__BODY_HEARTBEAT:
        break; /* last_seen already refreshed */
    case SLUICE__V1__ENVELOPE__BODY_ADMIN:
        sl__admin(n, p, env->corr, env->admin);
        break;
    default:
        n->bad_messages++;
        sl__send_error(n, p->rid, p->rid_len, env->corr, SLUICE__V1__ERROR__CODE__UNKNOWN_KIND,
                       "unexpected message kind %d", (int)env->body_case);
        break;
    }
}

/* --- the engine ------------------------------------------------------------- */

static void s_handle(sl__node_t *n, sl__in_t *m)
{
    switch (m->kind) {
    case SL__IN_ENV:
        s_handle_env(n, m);
        break;
    case SL__IN_PUBLISH:
        sl__peer_get(n, m->rid, m->rid_len); /* a sign of life; NULL is fine */
        s_publish_jobs(n, m->rid, m->rid_len, m->corr, m->node_epoch, m->jobs, m->n);
        m->n = 0; /* the jobs are taken */
        break;
    case SL__IN_ACK: {
        sl__peer_t *p = sl__peer_get(n, m->rid, m->rid_len);
        if (p)
            s_ack(n, p, m->corr, m->leases, m->n);
        else
            sl__send_error(n, m->rid, m->rid_len, m->corr, SLUICE__V1__ERROR__CODE__LIMIT,
                           "out of memory: acks not taken, resend later");
        break;
    }
    case SL__IN_BAD:
        n->bad_messages++;
        if (m->rid_len) {
            sl__peer_get(n, m->rid, m->rid_len);
            sl__send_error(n, m->rid, m->rid_len, 0, SLUICE__V1__ERROR__CODE__BAD_MESSAGE,
                           m->err == SL_ETOOBIG ? "message exceeds max-frame %" PRIu64 " bytes"
                                               : "undecodable message (max-frame %" PRIu64 ")",
                           n->o.max_frame);
        }
        break;
    case SL__IN_LOCAL_ACK:
    case SL__IN_LOCAL_FAIL:
    case SL__IN_LOCAL_RETRY:
        sl__local_settle(n, m);
        break;
    case SL__IN_REGISTER:
        sl__local_register(n, m->ptr);
        break;
    case SL__IN_CUT: {
        n->peers_cut++;
        n->replies_dropped += m->n;
        sl__peer_t *p = sl__map_get(n->peers, m->rid, m->rid_len);
        if (p)
            sl__peer_drop(n, p);
        break;
    }
    case SL__IN_CLUSTER:
        sl__member_reply(n, m->env);
        break;
    case SL__IN_STORE:
        sl__retain_done(n, m->ptr);
        break;
    case SL__IN_CHECK:
        sl_offer(m->ptr, (void *)(intptr_t)sl__engine_check(n));
        break;
    default:
        break;
    }
    sl__in_free(m);
}

static void s_count_queue(const void *k, size_t len, void *val, void *arg)
{
    (void)k;
    (void)len;
    sl__queue_t *q = val;
    sl_node_report_t *r = arg;
    r->ready += q->ready;
    r->delayed += q->delayed;
    r->in_flight += q->in_flight;
    r->dead += q->dead;
    r->waiting_publishes += q->waiting;
}

typedef struct {
    int bad;
    uint64_t waiting, idle;
} sl__check_t;

static void s_check_queue(const void *k, size_t len, void *val, void *arg)
{
    sl__check_t *c = arg;
    sl__queue_t *q = val;
    if (c->bad)
        return;
    if (len != q->name_len || memcmp(k, q->name, len) != 0)
        c->bad = __LINE__;
    else
        c->bad = sl__queue_check(q);
    c->waiting += q->waiting;
    c->idle += q->idle_listed;
}

int sl__engine_check(sl__node_t *n)
{
    sl__check_t c = {0, 0, 0};
    sl__map_each(n->queues, s_check_queue, &c);
    if (c.bad)
        return c.bad;
    if (c.waiting != n->waiting_total)
        return __LINE__;
    uint64_t idle = 0;
    for (sl__queue_t *q = n->idle_head; q; q = q->idle_next, idle++)
        if (!q->idle_listed || (q->idle_next && q->idle_next->idle_since < q->idle_since))
            return __LINE__;
    if (idle != c.idle)
        return __LINE__;
    for (sl__queue_t *q = n->run_head; q; q = q->run_next)
        if (!q->runnable)
            return __LINE__;
    if (sl__map_size(n->queues) > n->o.max_queues)
        return __LINE__;
    return 0;
}

/* Wall ms minus monotonic ms, from the two clocks read in ns: truncating
 * each clock to ms separately would make the difference jitter by 1 ms. */
static int64_t s_wall_offset(void)
{
    struct timespec w, m;
    clock_gettime(CLOCK_REALTIME, &w);
    clock_gettime(CLOCK_MONOTONIC, &m);
    int64_t ns = ((int64_t)w.tv_sec - (int64_t)m.tv_sec) * 1000000000 + (w.tv_nsec - m.tv_nsec);
    return ns / 1000000;
}

void *sl__engine_main(void *arg)
{
    sl__node_t *n = arg;
    n->last_heartbeat = sl__mono_ms();
    n->wall_off = s_wall_offset();
    sl__member_tick(n); /* the first status goes out at once */
    bool more = false;  /* deliveries left on the run list */
    for (;;) {
        int64_t now = sl__mono_ms();
        int64_t next = n->last_heartbeat + n->o.heartbeat_ms;
        if (n->next_beat < next)
            next = n->next_beat;
        if (n->store && n->next_take < next)
            next = n->next_take;
        if (n->heap_n && n->heap[0].when < next)
            next = n->heap[0].when;
        if (n->expiry_head && n->expiry_head->lease_expires < next)
            next = n->expiry_head->lease_expires;
        if (n->stopping && n->stop_deadline < next)
            next = n->stop_deadline;
        if (more)
            next = now; /* do not sleep: take what came in, then deliver */
        void *v;
        int rc = more ? sl_poll(n->inbound, &v)
                      : sl_take_until(n->inbound, &v, sl_now() + (next - now) * 1000000);
        if (rc == SL_OK) {
            s_handle(n, v);
            for (int i = 0; i < SL__READ_BURST && sl_poll(n->inbound, &v) == SL_OK; i++)
                s_handle(n, v);
        }
        sl__timer_run(n);
        sl__retain_tick(n, sl__mono_ms());
        more = sl__deliver_run(n, SL__DELIVER_BUDGET);
        if (sl__mono_ms() >= n->next_beat) {
            n->next_beat = sl__mono_ms() + n->o.heartbeat_ms / SL__BEAT_SLICES;
            n->gone += sl__heartbeat(n);
        }
        if (sl__mono_ms() - n->last_heartbeat >= n->o.heartbeat_ms) {
            n->last_heartbeat = sl__mono_ms();
            n->wall_off = s_wall_offset();
            uint64_t forgotten = n->queues_forgotten;
            sl__queue_sweep(n, n->last_heartbeat);
            sl__member_tick(n);
            /* Peers and queues forgotten in numbers leave freed memory
             * scattered over the heap: give it back to the system. */
            if (n->gone + (n->queues_forgotten - forgotten) >= 64)
                malloc_trim(0);
            n->gone = 0;
        }
        if (n->stopping) {
            sl_node_report_t r = {0};
            sl__map_each(n->queues, s_count_queue, &r);
            if (r.in_flight == 0 || sl__mono_ms() >= n->stop_deadline) {
                n->report = r;
                n->stop_rc = r.in_flight ? SL_ETIMEDOUT : SL_OK;
                break;
            }
        }
    }
    return NULL;
}
