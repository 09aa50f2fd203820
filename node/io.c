/* io.c -- the node's socket thread, and the frames the engine gives it.
 *
 *   ROUTER socket <--> socket thread --inbound chan--> engine (engine.c)
 *                                    <--outbound chan-- engine
 *
 * The socket thread only moves frames: it decodes envelopes into the
 * inbound channel (Publish and Ack scanned in place, each published job
 * made into its sl__job_t there; see jobwire.h) and sends what the
 * outbound channel holds; it waits on the socket and on the outbound
 * channel's eventfd with one zmq_poll. When inbound is full it stops
 * reading the socket, so a flood backs up into ZeroMQ's and TCP's buffers
 * instead of node memory. Frames (sl__out_t) are owned by whoever holds
 * them: the engine until sl__out_send, then the socket thread. */
#define _GNU_SOURCE
#include <zmq.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node_int.h"
#include "sluice/sched.h"
#include "sluice/wire.h"

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
void sl__in_free(sl__in_t *m)
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
sl__in_t *sl__in_new(size_t n, size_t size)
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
        m = sl__in_new((size_t)k, sizeof(sl__job_t *) + sizeof(const uint8_t *) + sizeof(size_t));
        m->kind = SL__IN_PUBLISH;
        m->jobs = (sl__job_t **)(m + 1);
        const uint8_t **raw = (const uint8_t **)(m->jobs + k);
        size_t *lens = (size_t *)(raw + k);
        sl__jobwire_publish(body, blen, raw, lens);
        for (long i = 0; i < k && m; i++) {
            sl__pb_job_t v;
            if (sl__pb_job(raw[i], lens[i], &v) != 0) {
                sl__in_free(m); /* protobuf-c is to judge it */
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
        m = sl__in_new((size_t)k, sizeof(sl__jobwire_lease_t));
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
    m = sl__in_new(0, 0);
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
        sl__in_free(sc.m);
        return NULL;
    }
    sl__in_t *m = sc.m;
    if (rc != SL_OK || !m) {
        sl__in_free(m);
        m = sl__in_new(0, 0);
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

void *sl__node_io_main(void *arg)
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
    sl__in_free(pending);
    return NULL;
}

