/* node.c -- the node: lifecycle, the socket thread, the engine coroutine
 * that owns all queue state, peers and heartbeats, in-process handlers.
 *
 *   ROUTER socket <--> socket thread --inbound chan--> engine coroutine
 *                                    <--outbound chan-- engine + delivery
 *
 * The socket thread only moves frames: it decodes envelopes into the
 * inbound channel (Publish and Ack scanned in place, each published job
 * made into its sl__job_t there; see jobwire.h) and sends what the
 * outbound channel holds; it waits on
 * the socket and on the outbound channel's eventfd with one zmq_poll. When
 * inbound is full it stops reading the socket, so a flood backs up into
 * ZeroMQ's and TCP's buffers instead of node memory. The engine never
 * touches the socket and never runs user code. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stddef.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "node_int.h"
#include "sluice/sched.h"
#include "sluice/wire.h"

#define SL__INBOUND_CAP 4096
#define SL__OUTBOUND_CAP 4096
#define SL__READ_BURST 256

int64_t sl__mono_ms(void)
{
    return sl_now() / 1000000;
}


void sl_node_opts_default(sl_node_opts_t *o)
{
    memset(o, 0, sizeof *o);
    o->endpoint = "tcp://127.0.0.1:7450";
    o->heartbeat_ms = 1000;
    o->lease_ms = 30000;
    o->max_length = 100000;
    o->overflow = SL_OVERFLOW_BLOCK;
    o->max_attempts = 5;
    o->backoff_base_ms = 100;
    o->backoff_max_ms = 30000;
    o->max_frame = 1 << 20;
    o->max_job = 256 << 10;
    o->max_waiting = 100000;
    o->max_dead = 10000;
    o->max_done = 100000;
    o->capacity = 100;
}

/* --- sending ------------------------------------------------------------ */

sl__out_t *sl__out_new(const uint8_t *rid, size_t rid_len, size_t len)
{
    sl__out_t *o = malloc(sizeof *o + len);
    if (!o)
        abort(); /* daemon: out of memory */
    memcpy(o->rid, rid, rid_len);
    o->rid_len = rid_len;
    o->len = len;
    return o;
}

void sl__out_send(sl__node_t *n, sl__out_t *o)
{
    /* Parks while the socket thread is behind: backpressure on the engine. */
    if (sl_put(n->outbound, o) != SL_OK)
        free(o);
}

void sl__send(sl__node_t *n, const uint8_t *rid, size_t rid_len, Sluice__V1__Envelope *env)
{
    sl__out_t *o = sl__out_new(rid, rid_len, sluice__v1__envelope__get_packed_size(env));
    o->len = sluice__v1__envelope__pack(env, o->buf);
    sl__out_send(n, o);
}

void sl__send_error(sl__node_t *n, const uint8_t *rid, size_t rid_len, uint64_t corr,
                    Sluice__V1__Error__Code code, const char *fmt, ...)
{
    char text[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    Sluice__V1__Error e = SLUICE__V1__ERROR__INIT;
    e.code = code;
    e.text = text;
    Sluice__V1__Envelope env = SLUICE__V1__ENVELOPE__INIT;
    env.corr = corr;
    env.body_case = SLUICE__V1__ENVELOPE__BODY_ERROR;
    env.error = &e;
    sl__send(n, rid, rid_len, &env);
}

/* --- the socket thread -------------------------------------------------- */

/* Free an inbound message and what it owns. */
static void s_in_free(sl__in_t *m)
{
    if (!m)
        return;
    sluice__v1__envelope__free_unpacked(m->env, NULL);
    if (m->kind == SL__IN_PUBLISH)
        for (size_t i = 0; i < m->n; i++)
            sl__job_free(m->jobs[i]);
    free(m);
}

/* A new inbound message with room for n elements of size each after it. */
static sl__in_t *s_in_new(size_t n, size_t size)
{
    sl__in_t *m = calloc(1, sizeof *m + n * size);
    if (!m)
        abort();
    return m;
}

/* Publish and Ack envelopes are scanned in place: the jobs of a Publish
 * become sl__job_t (their bytes and the fields the node reads, one
 * allocation each) here, on the socket thread. Every other envelope, and
 * anything the scanner leaves to protobuf-c, is unpacked into m->env. */
static sl__in_t *s_scan(const uint8_t *data, size_t size, int *rc)
{
    uint64_t corr;
    const uint8_t *body;
    size_t blen;
    sl__in_t *m = NULL;
    switch (sl__jobwire_envelope(data, size, &corr, &body, &blen)) {
    case SL__JW_PUBLISH: {
        long k = sl__jobwire_publish(body, blen, NULL, NULL);
        if (k < 0)
            break;
        m = s_in_new((size_t)k, sizeof(sl__job_t *) + sizeof(const uint8_t *) + sizeof(size_t));
        m->kind = SL__IN_PUBLISH;
        m->jobs = (sl__job_t **)(m + 1);
        const uint8_t **raw = (const uint8_t **)(m->jobs + k);
        size_t *lens = (size_t *)(raw + k);
        sl__jobwire_publish(body, blen, raw, lens);
        for (long i = 0; i < k && m; i++) {
            sl__pb_job_t v;
            if (sl__pb_job(raw[i], lens[i], &v) != 0) {
                s_in_free(m); /* protobuf-c is to judge it */
                m = NULL;
                break;
            }
            m->jobs[i] = sl__job_new(raw[i], lens[i], &v);
            m->n++;
        }
        break;
    }
    case SL__JW_ACK: {
        long k = sl__jobwire_ack(body, blen, NULL);
        if (k < 0)
            break;
        m = s_in_new((size_t)k, sizeof(sl__jobwire_lease_t));
        m->kind = SL__IN_ACK;
        m->leases = (sl__jobwire_lease_t *)(m + 1);
        m->n = (size_t)sl__jobwire_ack(body, blen, m->leases);
        break;
    }
    default:
        break;
    }
    if (m) {
        m->corr = corr;
        *rc = SL_OK;
        return m;
    }
    Sluice__V1__Envelope *env = NULL;
    *rc = sl_wire_unpack(data, size, &env);
    if (*rc != SL_OK)
        return NULL;
    m = s_in_new(0, 0);
    m->kind = SL__IN_ENV;
    m->env = env;
    return m;
}

typedef struct {
    sl__in_t *m;
} sl__scan_t;

static int s_decode(const void *data, size_t size, void *arg)
{
    int rc;
    ((sl__scan_t *)arg)->m = s_scan(data, size, &rc);
    return rc;
}

/* Read one whole message from the router into a new sl__in_t, or NULL
 * when nothing is waiting. Frame checks are sl_wire's. */
static sl__in_t *s_read_one(sl__node_t *n)
{
    sl_wire_msg_t w;
    sl__scan_t sc = {NULL};
    int rc = sl_wire_try_recv_with(n->router, true, n->o.max_frame, &w, s_decode, &sc);
    if (rc != SL_OK && rc != SL_EPROTO && rc != SL_ETOOBIG) {
        s_in_free(sc.m);
        return NULL;
    }
    sl__in_t *m = sc.m;
    if (rc != SL_OK || !m) {
        s_in_free(m);
        m = s_in_new(0, 0);
        m->kind = SL__IN_BAD;
        m->err = rc == SL_OK ? SL_EPROTO : rc;
    }
    memcpy(m->rid, w.rid, w.rid_len);
    m->rid_len = w.rid_len;
    sl_wire_msg_release(&w);
    return m;
}

static void s_out_free(void *data, void *hint)
{
    (void)data;
    free(hint);
}

/* ThreadSanitizer cannot see how libzmq hands a message to its I/O
 * thread, so a frame freed there looks like a race with the engine that
 * wrote it: under TSan, frames are copied into ZeroMQ and freed here. */
#if defined(__SANITIZE_THREAD__)
#define S_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define S_TSAN 1
#endif
#endif

static void s_write_out(sl__node_t *n, sl__out_t *o)
{
    /* Unknown or departed peers: ROUTER drops the message, which is what
     * we want for a peer that is gone. The body goes without a copy:
     * ZeroMQ frees o once it has been sent (or dropped). */
#ifdef S_TSAN
    zmq_send(n->router, o->rid, o->rid_len, ZMQ_SNDMORE);
    zmq_send(n->router, o->buf, o->len, 0);
    free(o);
    return;
#endif
    zmq_msg_t body;
    if (zmq_send(n->router, o->rid, o->rid_len, ZMQ_SNDMORE) < 0 ||
        zmq_msg_init_data(&body, o->buf, o->len, s_out_free, o) != 0) {
        free(o);
        return;
    }
    if (zmq_msg_send(&body, n->router, 0) < 0)
        zmq_msg_close(&body); /* frees o */
}

static void *s_io_main(void *arg)
{
    sl__node_t *n = arg;
    int out_fd = sl_chan_fd(n->outbound, SL_CHAN_READABLE);
    int in_fd = sl_chan_fd(n->inbound, SL_CHAN_WRITABLE);
    sl__in_t *pending = NULL; /* read, but inbound was full */
    for (;;) {
        zmq_pollitem_t items[3] = {
            {.socket = pending ? NULL : n->router, .fd = pending ? in_fd : 0, .events = ZMQ_POLLIN},
            {.socket = NULL, .fd = out_fd, .events = ZMQ_POLLIN},
            {.socket = NULL, .fd = n->stop_pipe[0], .events = ZMQ_POLLIN},
        };
        if (zmq_poll(items, 3, -1) < 0 && zmq_errno() != EINTR)
            break;
        void *v;
        while (sl_poll(n->outbound, &v) == SL_OK)
            s_write_out(n, v);
        if (pending && sl_offer(n->inbound, pending) == SL_OK)
            pending = NULL;
        for (int i = 0; !pending && i < SL__READ_BURST; i++) {
            sl__in_t *m = s_read_one(n);
            if (!m)
                break;
            if (sl_offer(n->inbound, m) != SL_OK)
                pending = m;
        }
        if (items[2].revents & ZMQ_POLLIN && atomic_load(&n->stopping) == 2) {
            while (sl_poll(n->outbound, &v) == SL_OK)
                s_write_out(n, v);
            break;
        }
    }
    s_in_free(pending);
    return NULL;
}

/* --- peers -------------------------------------------------------------- */

static void s_send_heartbeat(sl__node_t *n, const sl__peer_t *p)
{
    Sluice__V1__Heartbeat hb = SLUICE__V1__HEARTBEAT__INIT;
    hb.node_id = n->node_id;
    hb.epoch = n->epoch;
    hb.sent_ms = sl_wall_ms();
    hb.interval_ms = (uint32_t)n->o.heartbeat_ms;
    Sluice__V1__Envelope env = SLUICE__V1__ENVELOPE__INIT;
    env.body_case = SLUICE__V1__ENVELOPE__BODY_HEARTBEAT;
    env.heartbeat = &hb;
    sl__send(n, p->rid, p->rid_len, &env);
}

static sl__peer_t *s_peer(sl__node_t *n, const uint8_t *rid, size_t len)
{
    sl__peer_t *p = sl__map_get(n->peers, rid, len);
    if (!p) {
        p = calloc(1, sizeof *p);
        if (!p || sl__map_put(n->peers, rid, len, p) != SL_OK)
            abort();
        memcpy(p->rid, rid, len);
        p->rid_len = len;
        s_send_heartbeat(n, p); /* a new peer learns our epoch at once */
    }
    p->last_seen = sl__mono_ms();
    return p;
}

static void s_peer_drop(sl__node_t *n, sl__peer_t *p)
{
    while (p->consumers) {
        sl__consumer_t *c = p->consumers;
        p->consumers = c->pnext;
        sl__consumer_drop(n, c);
    }
    sl__map_del(n->peers, p->rid, p->rid_len);
    free(p);
}

static sl__consumer_t *s_consumer(sl__peer_t *p, sl__queue_t *q)
{
    for (sl__consumer_t *c = p->consumers; c; c = c->pnext)
        if (c->q == q)
            return c;
    return NULL;
}

static sl__consumer_t *s_consumer_new(sl__peer_t *p, sl__queue_t *q)
{
    sl__consumer_t *c = calloc(1, sizeof *c);
    if (!c)
        abort();
    c->peer = p;
    c->q = q;
    c->pnext = p->consumers;
    p->consumers = c;
    c->qnext = q->consumers;
    q->consumers = c;
    q->nconsumers++;
    return c;
}

typedef struct {
    sl__node_t *n;
    sl__peer_t **gone;
    size_t ngone, cap;
    int64_t now;
} sl__sweep_t;

static void s_sweep_one(const void *k, size_t len, void *val, void *arg)
{
    (void)k;
    (void)len;
    sl__sweep_t *s = arg;
    sl__peer_t *p = val;
    if (p->local)
        return;
    if (s->now - p->last_seen > 3 * s->n->o.heartbeat_ms) {
        if (s->ngone == s->cap) {
            s->cap = s->cap ? s->cap * 2 : 16;
            s->gone = realloc(s->gone, s->cap * sizeof *s->gone);
            if (!s->gone)
                abort();
        }
        s->gone[s->ngone++] = p;
        return;
    }
    s_send_heartbeat(s->n, p);
}

/* Heartbeat every live peer; forget the silent ones. */
static void s_heartbeat(sl__node_t *n)
{
    sl__sweep_t s = {.n = n, .now = sl__mono_ms()};
    sl__map_each(n->peers, s_sweep_one, &s);
    for (size_t i = 0; i < s.ngone; i++)
        s_peer_drop(n, s.gone[i]);
    free(s.gone);
}

/* --- admin --------------------------------------------------------------- */

typedef struct {
    Sluice__V1__QueueStats *stats;
    Sluice__V1__QueueStats **ptrs;
    size_t n;
} sl__stats_acc_t;

static void s_stats_one(const void *k, size_t len, void *val, void *arg)
{
    (void)k;
    (void)len;
    sl__stats_acc_t *a = arg;
    sl__queue_stats(val, &a->stats[a->n]);
    sl__rates_get(val, ((sl__queue_t *)val)->node->o.heartbeat_ms, &a->stats[a->n].publish_rate,
                  &a->stats[a->n].ack_rate);
    a->ptrs[a->n] = &a->stats[a->n];
    a->n++;
}

static void s_admin(sl__node_t *n, sl__peer_t *p, uint64_t corr, Sluice__V1__Admin *a)
{
    Sluice__V1__AdminReply r = SLUICE__V1__ADMIN_REPLY__INIT;
    Sluice__V1__Error e = SLUICE__V1__ERROR__INIT;
    r.node_id = n->node_id;
    r.epoch = n->epoch;
    r.peers = sl__map_size(n->peers);
    r.bad_messages = n->bad_messages;
    sl__queue_t *q = NULL;
    bool one = a->queue && a->queue[0];
    if (one)
        q = sl__queue_get(n, a->queue, false, NULL);
    if (a->op != SLUICE__V1__ADMIN__OP__STATS) {
        if (!q) {
            e.code = one ? SLUICE__V1__ERROR__CODE__BAD_QUEUE : SLUICE__V1__ERROR__CODE__BAD_MESSAGE;
            e.text = one ? "no such queue" : "queue required";
            r.error = &e;
        } else if (a->op == SLUICE__V1__ADMIN__OP__PAUSE) {
            q->paused = true;
        } else if (a->op == SLUICE__V1__ADMIN__OP__RESUME) {
            q->paused = false;
            q->draining = false;
        } else if (a->op == SLUICE__V1__ADMIN__OP__DRAIN) {
            q->draining = true;
        }
        if (q)
            sl__queue_wake(q);
    }
    size_t cap = one ? 1 : sl__map_size(n->queues);
    sl__stats_acc_t acc = {calloc(cap + 1, sizeof *acc.stats), calloc(cap + 1, sizeof *acc.ptrs), 0};
    if (!acc.stats || !acc.ptrs)
        abort();
    if (one && q)
        s_stats_one(NULL, 0, q, &acc);
    else if (!one)
        sl__map_each(n->queues, s_stats_one, &acc);
    if (one && !q && a->op == SLUICE__V1__ADMIN__OP__STATS) {
        e.code = SLUICE__V1__ERROR__CODE__BAD_QUEUE;
        e.text = "no such queue";
        r.error = &e;
    }
    r.n_queues = acc.n;
    r.queues = acc.ptrs;
    Sluice__V1__Envelope env = SLUICE__V1__ENVELOPE__INIT;
    env.corr = corr;
    env.body_case = SLUICE__V1__ENVELOPE__BODY_ADMIN_REPLY;
    env.admin_reply = &r;
    sl__send(n, p->rid, p->rid_len, &env);
    free(acc.stats);
    free(acc.ptrs);
}

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
    sl__peer_t *p = s_peer(n, m->rid, m->rid_len);
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
        sl__consumer_t *c = s_consumer(p, q);
        if (!c)
            c = s_consumer_new(p, q);
        c->credit = s->credit;
        sl__queue_wake(q);
        break;
    }
    case SLUICE__V1__ENVELOPE__BODY_CREDIT: {
        Sluice__V1__Credit *cr = env->credit;
        sl__queue_t *q = sl__queue_get(n, cr->queue ? cr->queue : "", false, NULL);
        sl__consumer_t *c = q ? s_consumer(p, q) : NULL;
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
        sl__consumer_t *c = q ? s_consumer(p, q) : NULL;
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
        s_admin(n, p, env->corr, env->admin);
        break;
    default:
        n->bad_messages++;
        sl__send_error(n, p->rid, p->rid_len, env->corr, SLUICE__V1__ERROR__CODE__UNKNOWN_KIND,
                       "unexpected message kind %d", (int)env->body_case);
        break;
    }
}

/* --- in-process handlers ---------------------------------------------------- */

static void s_local_result(sl__node_t *n, sl__reg_t *r, sl__local_job_t *lj, int verdict)
{
    sl__in_t *m = calloc(1, sizeof *m);
    if (!m)
        abort();
    m->kind = verdict == SL_NODE_ACK     ? SL__IN_LOCAL_ACK
              : verdict == SL_NODE_RETRY ? SL__IN_LOCAL_RETRY
                                         : SL__IN_LOCAL_FAIL;
    memcpy(m->job_id, lj->id, 16);
    m->lease_id = lj->lease_id;
    m->ptr = r;
    if (sl_put(n->inbound, m) != SL_OK)
        free(m);
}

static void *s_local_worker(void *arg)
{
    sl__reg_t *r = arg;
    void *v;
    while (sl_take(r->jobs, &v) == SL_OK) {
        sl__local_job_t *lj = v;
        int verdict = r->fn(&lj->view, r->arg);
        if (atomic_load(&r->node->stopping) < 2) /* engine still listening */
            s_local_result(r->node, r, lj, verdict);
        free(lj);
    }
    atomic_fetch_sub(&r->live, 1);
    return NULL;
}

static void s_register(sl__node_t *n, sl__reg_t *r)
{
    int err = SL_OK;
    sl__queue_t *q = sl__queue_get(n, r->queue, true, &err);
    if (q) {
        sl__consumer_t *c = s_consumer(n->local_peer, q);
        if (c) {
            err = SL_ESTATE; /* one in-process handler per queue */
        } else {
            c = s_consumer_new(n->local_peer, q);
            c->local = sl_chan_ref(r->jobs);
            c->credit = (uint32_t)r->concurrency;
            for (int i = 0; i < r->concurrency && err == SL_OK; i++) {
                atomic_fetch_add(&r->live, 1);
                bool ok;
                if (r->flags & SL_NODE_BLOCKING) {
                    sl_chan_t *res = sl_thread(s_local_worker, r);
                    ok = res != NULL;
                    sl_chan_destroy(&res); /* the result is not needed */
                } else {
                    ok = sl_go_ex(s_local_worker, r, SL_GO_SPREAD, 0, &err) != NULL;
                }
                if (!ok)
                    atomic_fetch_sub(&r->live, 1);
                if (!ok && err == SL_OK)
                    err = SL_ENOMEM;
            }
            sl__queue_wake(q);
        }
    }
    sl_offer(r->done, (void *)(intptr_t)err);
}

static void s_local_settle(sl__node_t *n, sl__in_t *m)
{
    /* The handler slot comes back even when the verdict is late (the
     * lease expired and the job went elsewhere): it is free again. */
    sl__reg_t *r = m->ptr;
    sl__queue_t *q = sl__queue_get(n, r->queue, false, NULL);
    sl__consumer_t *c = q ? s_consumer(n->local_peer, q) : NULL;
    Sluice__V1__Lease l = SLUICE__V1__LEASE__INIT;
    l.job_id.data = m->job_id;
    l.job_id.len = 16;
    l.lease_id = m->lease_id;
    l.epoch = n->epoch;
    Sluice__V1__Error__Code code;
    if (m->kind == SL__IN_LOCAL_ACK)
        sl__queue_ack(n, &l, &code);
    else
        sl__queue_fail(n, &l, m->kind == SL__IN_LOCAL_RETRY, "handler failed", &code);
    if (c && c->local) { /* local consumers get their credit back by themselves */
        c->credit++;
        sl__queue_wake(c->q);
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
        s_publish_jobs(n, s_peer(n, m->rid, m->rid_len), m->corr, m->jobs, m->n);
        break;
    case SL__IN_ACK:
        s_ack(n, s_peer(n, m->rid, m->rid_len), m->corr, m->leases, m->n);
        break;
    case SL__IN_BAD:
        n->bad_messages++;
        if (m->rid_len) {
            s_peer(n, m->rid, m->rid_len);
            sl__send_error(n, m->rid, m->rid_len, 0, SLUICE__V1__ERROR__CODE__BAD_MESSAGE,
                           m->err == SL_ETOOBIG ? "message exceeds max-frame %" PRIu64 " bytes"
                                               : "undecodable message (max-frame %" PRIu64 ")",
                           n->o.max_frame);
        }
        break;
    case SL__IN_LOCAL_ACK:
    case SL__IN_LOCAL_FAIL:
    case SL__IN_LOCAL_RETRY:
        s_local_settle(n, m);
        break;
    case SL__IN_REGISTER:
        s_register(n, m->ptr);
        break;
    case SL__IN_CLUSTER:
        sl__member_reply(n, m->env);
        break;
    default:
        break;
    }
    s_in_free(m);
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

static void *s_engine_main(void *arg)
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
            s_heartbeat(n);
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

/* --- lifecycle -------------------------------------------------------------- */


sl_node_t *sl_node_new(const sl_node_opts_t *opts, int *err)
{
    sl_node_opts_t d;
    sl_node_opts_default(&d);
    const sl_node_opts_t *o = opts ? opts : &d;
    int rc = SL_EINVAL;
    if (!o->endpoint || o->heartbeat_ms < 10 || o->lease_ms < 10 || o->max_length < 1 ||
        o->max_attempts < 1 || o->backoff_base_ms < 1 || o->backoff_max_ms < o->backoff_base_ms ||
        o->max_frame < 1024 || o->max_job < 1 || o->max_job > o->max_frame ||
        (unsigned)o->overflow > SL_OVERFLOW_DROP_OLDEST || sl_node_cluster_opts_check(o))
        goto fail;
    rc = SL_ENOMEM;
    sl__node_t *n = calloc(1, sizeof *n);
    if (!n)
        goto fail;
    n->o = *o;
    n->stop_pipe[0] = n->stop_pipe[1] = -1;
    char host[128] = "node";
    gethostname(host, sizeof host - 1);
    char idbuf[200];
    snprintf(idbuf, sizeof idbuf, "%s:%d", host, (int)getpid());
    n->endpoint = strdup(o->endpoint);
    n->node_id = strdup(o->node_id ? o->node_id : idbuf);
    n->queues = sl__map_new();
    n->ids = sl__idmap_new(offsetof(sl__job_t, id));
    n->peers = sl__map_new();
    n->keys = sl__map_new();
    n->done_keys = sl__map_new();
    n->inbound = sl_chan_new(SL_BUF_FIXED, SL__INBOUND_CAP);
    n->outbound = sl_chan_new(SL_BUF_FIXED, SL__OUTBOUND_CAP);
    n->local_peer = calloc(1, sizeof *n->local_peer);
    n->cluster = sl__member_new(o);
    if (!n->cluster || !n->endpoint || !n->node_id || !n->queues || !n->ids || !n->peers ||
        !n->keys || !n->done_keys ||
        !n->inbound || !n->outbound || !n->local_peer) {
        sl_node_destroy((sl_node_t **)&n);
        goto fail;
    }
    n->local_peer->local = true;
    /* Epoch: random, so restarts of the same node differ. */
    if (getrandom(&n->epoch, sizeof n->epoch, 0) != sizeof n->epoch)
        n->epoch = (uint64_t)sl_now() ^ ((uint64_t)getpid() << 32);
    n->epoch |= 1;
    if (getrandom(&n->rng, sizeof n->rng, 0) != sizeof n->rng)
        n->rng = n->epoch * 0x9e3779b97f4a7c15ULL;
    n->rng |= 1; /* xorshift must not start at 0 */
    return (sl_node_t *)n;
fail:
    if (err)
        *err = rc;
    return NULL;
}

int sl_node_start(sl_node_t *self)
{
    sl__node_t *n = (sl__node_t *)self;
    if (n->running)
        return SL_ESTATE;
    n->zctx = zmq_ctx_new();
    char *bound = NULL;
    int rc = SL_OK;
    n->router = sl_wire_router_bind(n->zctx, n->endpoint, n->o.max_frame, &bound, &rc);
    if (!n->router)
        return rc;
    free(n->endpoint);
    n->endpoint = bound;
    if (pipe2(n->stop_pipe, O_CLOEXEC | O_NONBLOCK) != 0)
        return SL_ESYS;
    rc = sl__member_start(n);
    if (rc != SL_OK)
        return rc;
    n->engine_done = sl_go_ex(s_engine_main, n, SL_GO_SPREAD, 1, NULL);
    if (!n->engine_done)
        return SL_ENOMEM;
    pthread_t *th = malloc(sizeof *th);
    if (!th || pthread_create(th, NULL, s_io_main, n) != 0) {
        free(th);
        return SL_ESYS;
    }
    n->io_thread = th;
    n->running = 1;
    return SL_OK;
}

const char *sl_node_endpoint(sl_node_t *self)
{
    return ((sl__node_t *)self)->endpoint;
}

uint64_t sl_node_epoch(sl_node_t *self)
{
    return ((sl__node_t *)self)->epoch;
}

int sl_node_handle(sl_node_t *self, const char *queue, int concurrency, sl_node_handler_fn fn,
                   void *arg, int flags)
{
    sl__node_t *n = (sl__node_t *)self;
    if (!n->running || !queue || !fn || concurrency < 1 || concurrency > 10000)
        return n->running ? SL_EINVAL : SL_ESTATE;
    sl__reg_t *r = calloc(1, sizeof *r);
    sl__reg_t **regs = realloc(n->regs, (n->nregs + 1) * sizeof *regs);
    if (!r || !regs) {
        free(r);
        return SL_ENOMEM;
    }
    n->regs = regs;
    r->node = n;
    r->queue = strdup(queue);
    r->concurrency = concurrency;
    r->fn = fn;
    r->arg = arg;
    r->flags = flags;
    r->jobs = sl_chan_new(SL_BUF_FIXED, (size_t)concurrency);
    r->done = sl_chan_new(SL_BUF_PROMISE, 0);
    sl__in_t *m = calloc(1, sizeof *m);
    if (!r->queue || !r->jobs || !r->done || !m) {
        free(r->queue);
        sl_chan_destroy(&r->jobs);
        sl_chan_destroy(&r->done);
        free(r);
        free(m);
        return SL_ENOMEM;
    }
    n->regs[n->nregs++] = r;
    m->kind = SL__IN_REGISTER;
    m->ptr = r;
    int rc = sl_put(n->inbound, m);
    if (rc != SL_OK) {
        free(m);
        return rc;
    }
    void *v;
    rc = sl_take(r->done, &v);
    return rc == SL_OK ? (int)(intptr_t)v : rc;
}

int sl_node_stop(sl_node_t *self, int64_t timeout_ms, sl_node_report_t *left)
{
    sl__node_t *n = (sl__node_t *)self;
    if (!n->running)
        return SL_ESTATE;
    n->stop_deadline = sl__mono_ms() + (timeout_ms > 0 ? timeout_ms : 0);
    atomic_store(&n->stopping, 1);
    sl__in_t *m = calloc(1, sizeof *m);
    if (m) {
        m->kind = SL__IN_WAKE;
        if (sl_put(n->inbound, m) != SL_OK)
            free(m);
    }
    void *v;
    sl_take(n->engine_done, &v);
    atomic_store(&n->stopping, 2);
    ssize_t w = write(n->stop_pipe[1], "x", 1);
    (void)w;
    pthread_join(*(pthread_t *)n->io_thread, NULL);
    free(n->io_thread);
    n->io_thread = NULL;
    sl__member_stop(n);
    /* In-process handlers: no more jobs; wait (bounded) for them to return,
     * since they use the node's channels. */
    for (size_t i = 0; i < n->nregs; i++)
        sl_chan_close(n->regs[i]->jobs);
    int64_t until = sl__mono_ms() + (timeout_ms > 0 ? timeout_ms : 0) + 1000;
    for (size_t i = 0; i < n->nregs; i++)
        while (atomic_load(&n->regs[i]->live) > 0 && sl__mono_ms() < until)
            sl_sleep_ms(1);
    n->running = 0;
    if (left)
        *left = n->report;
    return n->stop_rc;
}

static void s_free_job(void *val, void *arg)
{
    (void)arg;
    if ((uintptr_t)val & SL__DONE_TAG)
        return; /* a done ring entry: freed with the ring */
    sl__job_t *j = val;
    if (j->pub)
        sl__pub_abandon(j->pub); /* the confirm is never sent: the node is gone */
    sl__job_free(j);
}

/* Empty the level channels before any job is freed: dead jobs evicted
 * while still inside a channel are owned by the channel alone (freed
 * here); every other job is freed through n->ids afterwards. */
static void s_drain_levels(const void *k, size_t len, void *val, void *arg)
{
    (void)k;
    (void)len;
    (void)arg;
    sl__queue_t *q = val;
    for (int p = 0; p < SL__LEVELS; p++) {
        void *v;
        while (q->levels[p] && sl_poll(q->levels[p], &v) == SL_OK)
            if (((sl__job_t *)v)->evicted)
                sl__job_free(v);
    }
}

static void s_free_queue(const void *k, size_t len, void *val, void *arg)
{
    (void)k;
    (void)len;
    (void)arg;
    sl__queue_t *q = val;
    while (q->consumers) {
        sl__consumer_t *c = q->consumers;
        q->consumers = c->qnext;
        sl_chan_destroy(&c->local);
        free(c);
    }
    sl__queue_free(q);
}

static void s_free_peer(const void *k, size_t len, void *val, void *arg)
{
    (void)k;
    (void)len;
    (void)arg;
    free(val);
}

void sl_node_destroy(sl_node_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    sl__node_t *n = (sl__node_t *)*self_p;
    *self_p = NULL;
    if (n->running)
        sl_node_stop((sl_node_t *)n, 0, NULL);
    sl__member_destroy(&n->cluster); /* its socket goes before the context */
    if (n->router)
        zmq_close(n->router);
    if (n->zctx)
        zmq_ctx_term(n->zctx);
    void *v;
    while (n->inbound && sl_poll(n->inbound, &v) == SL_OK)
        s_in_free(v);
    while (n->outbound && sl_poll(n->outbound, &v) == SL_OK)
        free(v);
    if (n->queues)
        sl__map_each(n->queues, s_drain_levels, NULL);
    if (n->ids)
        sl__idmap_each(n->ids, s_free_job, NULL);
    if (n->queues)
        sl__map_each(n->queues, s_free_queue, NULL);
    if (n->peers)
        sl__map_each(n->peers, s_free_peer, NULL);
    sl__idmap_destroy(&n->ids);
    sl__map_destroy(&n->queues);
    sl__map_destroy(&n->peers);
    sl__map_destroy(&n->keys);
    sl__done_free_all(n);
    sl__map_destroy(&n->done_keys);
    for (size_t i = 0; i < n->nregs; i++) {
        sl__reg_t *r = n->regs[i];
        free(r->queue);
        sl_chan_destroy(&r->jobs);
        sl_chan_destroy(&r->done);
        free(r);
    }
    free(n->regs);
    free(n->local_peer);
    free(n->heap);
    sl_chan_destroy(&n->inbound);
    sl_chan_destroy(&n->outbound);
    sl_chan_destroy(&n->engine_done);
    for (int i = 0; i < 2; i++)
        if (n->stop_pipe[i] >= 0)
            close(n->stop_pipe[i]);
    free(n->endpoint);
    free(n->node_id);
    free(n);
}
