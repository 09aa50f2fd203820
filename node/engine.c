/* engine.c -- the engine coroutine, which owns every queue, job, peer
 * and timer: it takes messages from the socket thread and in-process
 * handlers off the inbound channel, dispatches them, runs timers and
 * heartbeats. It never touches the socket and never runs user code. */
#define _GNU_SOURCE
#include <time.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node_int.h"
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
 * once the last blocked one is placed). Takes the jobs: jobs[i] is NULLed. */
static void s_publish_jobs(sl__node_t *n, sl__peer_t *p, uint64_t corr, sl__job_t **jobs,
                           size_t k)
{
    sl__pubctx_t *ctx = sl__pub_new(p->rid, p->rid_len, corr, jobs, k);
    /* Each job costs a random probe of n->ids: start them all at once. */
    for (size_t i = 0; i < k; i++)
        if (jobs[i]->id_len == 16)
            sl__idmap_prefetch(n->ids, jobs[i]->id);
    for (size_t i = 0; i < k; i++) {
        sl__job_t *j = jobs[i];
        jobs[i] = NULL; /* the job now belongs to the queue */
        sl__queue_publish(n, j, ctx, i);
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
    if (!jobs)
        abort();
    for (size_t i = 0; i < k; i++) {
        size_t len = sluice__v1__job__get_packed_size(pub->jobs[i]);
        uint8_t *buf = malloc(len ? len : 1);
        if (!buf)
            abort();
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
                abort();
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
    }
    s_publish_jobs(n, p, corr, jobs, k);
    free(jobs);
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

static void s_handle_env(sl__node_t *n, sl__in_t *m)
{
    Sluice__V1__Envelope *env = m->env;
    sl__peer_t *p = sl__peer_get(n, m->rid, m->rid_len);
    Sluice__V1__Error__Code code = SLUICE__V1__ERROR__CODE__UNKNOWN;
    int err = SL_OK;
    switch (env->body_case) {
    case SLUICE__V1__ENVELOPE__BODY_PUBLISH:
        s_publish(n, p, env->corr, env->publish);
        break;
    case SLUICE__V1__ENVELOPE__BODY_SUBSCRIBE: {
        Sluice__V1__Subscribe *s = env->subscribe;
        if (!sl__member_subscribe_ok(n, p->rid, p->rid_len, env->corr, s))
            break; /* answered STALE_EPOCH */
        sl__queue_t *q = sl__queue_get(n, s->queue ? s->queue : "", true, &err);
        if (!q) {
            sl__send_error(n, p->rid, p->rid_len, env->corr, SLUICE__V1__ERROR__CODE__BAD_QUEUE,
                           "invalid queue name '%.128s'", s->queue ? s->queue : "");
            break;
        }
        sl__consumer_t *c = sl__consumer_find(p, q);
        if (!c)
            c = sl__consumer_new(p, q);
        c->credit = s->credit;
        sl__queue_wake(q);
        break;
    }
    case SLUICE__V1__ENVELOPE__BODY_CREDIT: {
        Sluice__V1__Credit *cr = env->credit;
        sl__queue_t *q = sl__queue_get(n, cr->queue ? cr->queue : "", false, NULL);
        sl__consumer_t *c = q ? sl__consumer_find(p, q) : NULL;
        if (!c) {
            sl__send_error(n, p->rid, p->rid_len, env->corr,
                           SLUICE__V1__ERROR__CODE__NOT_SUBSCRIBED, "not subscribed to '%.128s'",
                           cr->queue ? cr->queue : "");
            break;
        }
        uint64_t credit = (uint64_t)c->credit + cr->credit;
        c->credit = credit > 1000000 ? 1000000 : (uint32_t)credit;
        sl__queue_wake(q);
        break;
    }
    case SLUICE__V1__ENVELOPE__BODY_UNSUBSCRIBE: {
        const char *qn = env->unsubscribe->queue ? env->unsubscribe->queue : "";
        sl__queue_t *q = sl__queue_get(n, qn, false, NULL);
        sl__consumer_t *c = q ? sl__consumer_find(p, q) : NULL;
        if (c) {
            sl__consumer_t **pp = &p->consumers;
            while (*pp != c)
                pp = &(*pp)->pnext;
            *pp = c->pnext;
            sl__consumer_drop(n, c);
        }
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
        s_publish_jobs(n, sl__peer_get(n, m->rid, m->rid_len), m->corr, m->jobs, m->n);
        break;
    case SL__IN_ACK:
        s_ack(n, sl__peer_get(n, m->rid, m->rid_len), m->corr, m->leases, m->n);
        break;
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
    default:
        break;
    }
    sl__in_free(m);
}

static void s_run_timers(sl__node_t *n)
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

typedef struct {
    sl_node_report_t *r;
} sl__count_t;

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

static void s_wake_queue(const void *k, size_t len, void *val, void *arg)
{
    (void)k;
    (void)len;
    (void)arg;
    sl__queue_wake(val);
}

static void s_count_running(const void *k, size_t len, void *val, void *arg)
{
    (void)k;
    (void)len;
    *(int *)arg += ((sl__queue_t *)val)->running ? 1 : 0;
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
    for (;;) {
        int64_t now = sl__mono_ms();
        int64_t next = n->last_heartbeat + n->o.heartbeat_ms;
        if (n->heap_n && n->heap[0].when < next)
            next = n->heap[0].when;
        if (n->expiry_head && n->expiry_head->lease_expires < next)
            next = n->expiry_head->lease_expires;
        if (n->stopping && n->stop_deadline < next)
            next = n->stop_deadline;
        void *v;
        int rc = sl_take_until(n->inbound, &v, sl_now() + (next - now) * 1000000);
        if (rc == SL_OK) {
            s_handle(n, v);
            for (int i = 0; i < SL__READ_BURST && sl_poll(n->inbound, &v) == SL_OK; i++)
                s_handle(n, v);
        }
        s_run_timers(n);
        if (sl__mono_ms() - n->last_heartbeat >= n->o.heartbeat_ms) {
            n->last_heartbeat = sl__mono_ms();
            n->wall_off = s_wall_offset();
            sl__heartbeat(n);
            sl__member_tick(n);
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
    /* Delivery coroutines share this worker: wake them and let them run
     * until each has returned, so none touches a queue after destroy. */
    for (;;) {
        int running = 0;
        sl__map_each(n->queues, s_count_running, &running);
        if (!running)
            break;
        sl__map_each(n->queues, s_wake_queue, NULL);
        sl_sleep_ms(1);
    }
    return NULL;
}

