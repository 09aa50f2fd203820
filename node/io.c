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
 * instead of node memory. A peer that does not read its replies is held
 * back alone, and cut off past a bound ("slow readers" below). Frames
 * (sl__out_t) are owned by whoever holds them: the engine until
 * sl__out_send, then the socket thread. */
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

sl__out_t *sl__out_new(sl__node_t *n, const uint8_t *rid, size_t rid_len, size_t len)
{
    sl__out_t *o = malloc(sizeof *o + len);
    if (!o) {
        n->oom++;
        return NULL;
    }
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
    sl__out_t *o = sl__out_new(n, rid, rid_len, sluice__v1__envelope__get_packed_size(env));
    if (!o)
        return;
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
    if (m->kind == SL__IN_STORE) {
        sl_store_req_t *req = m->ptr;
        sl_store_req_destroy(&req);
    }
    if (m->kind == SL__IN_PUBLISH)
        for (size_t i = 0; i < m->n; i++)
            sl__job_free(m->jobs[i]);
    free(m);
}

/* A new inbound message with room for n elements of size each after it. */
sl__in_t *sl__in_new(size_t n, size_t size)
{
    return calloc(1, sizeof(sl__in_t) + n * size);
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
        if (!m) {
            *rc = SL_ENOMEM;
            return NULL;
        }
        m->kind = SL__IN_PUBLISH;
        m->node_epoch = sl__jobwire_publish_epoch(body, blen);
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
            if (!(m->jobs[i] = sl__job_new(raw[i], lens[i], &v))) {
                sl__in_free(m);
                *rc = SL_ENOMEM;
                return NULL;
            }
            m->n++;
        }
        break;
    }
    case SL__JW_ACK: {
        long k = sl__jobwire_ack(body, blen, NULL);
        if (k < 0)
            break;
        m = sl__in_new((size_t)k, sizeof(sl__jobwire_lease_t));
        if (!m) {
            *rc = SL_ENOMEM;
            return NULL;
        }
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
    if (!m) {
        sl_wire_env_free(&env);
        *rc = SL_ENOMEM;
        return NULL;
    }
    m->kind = SL__IN_ENV;
    m->env = env;
    m->nul_field = sl_wire_nul_string(data, size); /* protobuf-c cut it short */
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
 * when nothing is waiting (or, with *size SIZE_MAX, when one was read but
 * dropped for want of memory); *size gets the envelope frame's bytes. Frame
 * checks are sl_wire's. */
static sl__in_t *s_read_one(sl__node_t *n, size_t *size)
{
    sl_wire_msg_t w;
    sl__scan_t sc = {NULL};
    int rc = sl_wire_try_recv_with(n->router, true, n->o.max_frame, &w, s_decode, &sc);
    if (rc == SL_ENOMEM) { /* dropped: the client's resend recovers it */
        atomic_fetch_add_explicit(&n->io_oom, 1, memory_order_relaxed);
        sl__in_free(sc.m);
        sl_wire_msg_release(&w);
        *size = SIZE_MAX; /* one was read: the caller reads on */
        return NULL;
    }
    if (rc != SL_OK && rc != SL_EPROTO && rc != SL_ETOOBIG) {
        sl__in_free(sc.m);
        return NULL;
    }
    sl__in_t *m = sc.m;
    if (rc != SL_OK || !m) {
        sl__in_free(m);
        m = sl__in_new(0, 0);
        if (!m) {
            atomic_fetch_add_explicit(&n->io_oom, 1, memory_order_relaxed);
            sl_wire_msg_release(&w);
            *size = SIZE_MAX;
            return NULL;
        }
        m->kind = SL__IN_BAD;
        m->err = rc == SL_OK ? SL_EPROTO : rc;
    }
    memcpy(m->rid, w.rid, w.rid_len);
    m->rid_len = w.rid_len;
    *size = w.size;
    sl_wire_msg_release(&w);
    return m;
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

#ifndef S_TSAN
static void s_out_free(void *data, void *hint)
{
    (void)data;
    free(hint);
}
#endif

/* Hand o to ZeroMQ for its peer without waiting. The router has
 * ZMQ_ROUTER_MANDATORY, so it refuses rather than drops. Returns 0 (sent:
 * o is ZeroMQ's, which frees it once it has gone); EAGAIN (the peer's
 * pipe is at its high-water mark: o is still the caller's); EHOSTUNREACH
 * (no such peer: it has gone) or another errno (o freed). */
static int s_send(sl__node_t *n, sl__out_t *o)
{
    if (zmq_send(n->router, o->rid, o->rid_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) {
        int e = zmq_errno();
        if (e == EAGAIN || e == EINTR)
            return EAGAIN;
        free(o);
        return e;
    }
    /* The routing id is in, and with it the peer's room (ZeroMQ checks
     * the high-water mark on a message's first frame): the body goes. */
#ifdef S_TSAN
    zmq_send(n->router, o->buf, o->len, ZMQ_DONTWAIT);
    free(o);
#else
    zmq_msg_t body;
    if (zmq_msg_init_data(&body, o->buf, o->len, s_out_free, o) != 0) {
        /* No memory for ZeroMQ's bookkeeping: the routing id must still
         * get its body, so try a copy. */
        zmq_send(n->router, o->buf, o->len, ZMQ_DONTWAIT);
        free(o);
    } else if (zmq_msg_send(&body, n->router, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&body); /* frees o */
    }
#endif
    return 0;
}

/* --- slow readers -----------------------------------------------------------
 *
 * A peer that does not read its replies fills its pipe in ZeroMQ (SNDHWM
 * messages). From then on its replies are refused (s_send: EAGAIN) and
 * the socket thread gives the peer an entry (s_slow_t): its replies wait
 * there, in order, behind the refused one, and are retried every
 * S_RETRY_MS; its requests are parked there, in order, so the engine,
 * not hearing them, makes no more replies for it. Other peers are served
 * as before. An entry holds at most io->bound bytes (S_BOUND_MIN, or
 * S_BOUND_FRAMES max-frames if more); past that the peer is cut off:
 *
 *            s_out: a reply refused                 s_flush: replies sent,
 *  (no entry) -------------------> SLOW ---------------------------------> (no entry)
 *       ^                           |    parked requests handed to the engine
 *       |                           | s_hold / s_park: over io->bound
 *       |   s_tell: Error           v
 *       '---{OVERLOADED} sent ---- CUT   the replies and requests it held
 *           (its next message,           discarded and counted; the engine
 *           or every S_TELL_MS)          told (SL__IN_CUT) and forgets the
 *                                        peer; until told, whatever comes
 *                                        from or for it is discarded and
 *                                        counted too
 *
 * Heartbeats are neither kept nor counted: one from the node says nothing
 * a waiting reply does not, and one from the peer goes to the engine at
 * once (the peer is alive, only slow). Memory: at most io->bound per
 * entry, and entries exist only for peers with a backlog (SLOW) and for
 * at most S_CUT_MAX cut peers not yet told (CUT, a few hundred bytes
 * each). While there is no entry, a frame is sent and a request handed on
 * without a lookup. */

enum {
    S_RETRY_MS = 2,             /* retry refused replies this often       */
    S_TELL_MS = 100,            /* retry telling cut peers this often     */
    S_CUT_MAX = 1024,           /* cut peers remembered until told        */
    S_BOUND_FRAMES = 4,         /* an entry holds up to 4 max-frames ... */
};
#define S_BOUND_MIN ((size_t)4 << 20) /* ... and at least 4 MiB          */

typedef struct {
    void *p;
    size_t cost;                /* bytes it holds, as s_*_cost count them */
} s_item_t;

/* A FIFO of items in a ring that grows by doubling. */
typedef struct {
    s_item_t *v;
    size_t head, n, cap;        /* cap 0 or a power of two                */
} s_fifo_t;

static bool s_fifo_push(s_fifo_t *f, void *p, size_t cost)
{
    if (f->n == f->cap) {
        size_t cap = f->cap ? 2 * f->cap : 16;
        s_item_t *v = malloc(cap * sizeof *v);
        if (!v)
            return false;
        for (size_t i = 0; i < f->n; i++)
            v[i] = f->v[(f->head + i) & (f->cap - 1)];
        free(f->v);
        f->v = v;
        f->head = 0;
        f->cap = cap;
    }
    f->v[(f->head + f->n++) & (f->cap - 1)] = (s_item_t){p, cost};
    return true;
}

static s_item_t s_fifo_pop(s_fifo_t *f)
{
    s_item_t it = f->v[f->head];
    f->head = (f->head + 1) & (f->cap - 1);
    f->n--;
    return it;
}

static void s_fifo_release(s_fifo_t *f)
{
    free(f->v);
    *f = (s_fifo_t){0};
}

typedef struct s_slow s_slow_t;
struct s_slow {
    uint8_t rid[SL__RID_MAX];
    size_t rid_len;
    s_fifo_t out;               /* SLOW: sl__out_t *, refused, in order    */
    s_fifo_t held;              /* SLOW: sl__in_t *, parked, in order      */
    size_t bytes;               /* what out and held cost                  */
    bool cut;
    uint64_t lost_replies;      /* CUT: discarded since the cut, to tell   */
    uint64_t lost_requests;
    s_slow_t *prev, *next;      /* io's slow list, or its cut list         */
};

/* The socket thread's state. */
typedef struct {
    sl__node_t *n;
    sl__map_t *peers;           /* routing id -> s_slow_t, every entry     */
    size_t entries;             /* in peers: 0 is the fast path            */
    s_slow_t *slow;             /* SLOW entries                            */
    s_slow_t *cut_head, *cut_tail; /* CUT entries, oldest first            */
    size_t ncut;
    s_fifo_t pending;           /* for the engine, refused by a full
                                   inbound: the socket is not read while
                                   anything waits here                     */
    size_t bound;               /* bytes an entry may hold                 */
    int64_t next_tell;          /* monotonic ms                            */
} s_io_t;

static void s_departed(s_io_t *io, uint64_t k)
{
    atomic_fetch_add_explicit(&io->n->replies_departed, k, memory_order_relaxed);
}

/* Is this encoded envelope a Heartbeat (body field 20)? Frames come from
 * the engine's packer, so a walk over their few top-level fields will do. */
static bool s_is_heartbeat(const uint8_t *p, size_t len)
{
    const uint8_t *end = p + len;
    while (p < end) {
        uint64_t key = 0, v = 0;
        for (int sh = 0; p < end && sh < 64; sh += 7) {
            key |= (uint64_t)(*p & 0x7f) << sh;
            if (!(*p++ & 0x80))
                break;
        }
        if (key >> 3 == SLUICE__V1__ENVELOPE__BODY_HEARTBEAT)
            return true;
        switch (key & 7) {
        case 0:
            while (p < end && *p++ & 0x80)
                ;
            break;
        case 1:
            p += 8;
            break;
        case 5:
            p += 4;
            break;
        case 2:
            for (int sh = 0; p < end && sh < 64; sh += 7) {
                v |= (uint64_t)(*p & 0x7f) << sh;
                if (!(*p++ & 0x80))
                    break;
            }
            if (v > (uint64_t)(end - p))
                return false;
            p += v;
            break;
        default:
            return false;
        }
    }
    return false;
}

static bool s_in_heartbeat(const sl__in_t *m)
{
    return m->kind == SL__IN_ENV && m->env->body_case == SLUICE__V1__ENVELOPE__BODY_HEARTBEAT;
}

static size_t s_out_cost(const sl__out_t *o)
{
    return sizeof *o + o->len;
}

/* A request's memory, roughly: the message, its frame's bytes, and the
 * decoded form (an unpacked envelope, or one sl__job_t per job). */
static size_t s_in_cost(const sl__in_t *m, size_t size)
{
    size_t c = sizeof *m + size;
    if (m->kind == SL__IN_ENV)
        c += size;
    else if (m->kind == SL__IN_PUBLISH)
        c += m->n * (sizeof(sl__job_t) + 3 * sizeof(void *));
    else if (m->kind == SL__IN_ACK)
        c += m->n * sizeof(sl__jobwire_lease_t);
    return c;
}

/* Give m to the engine, or keep it in io->pending (which stops reading)
 * while inbound is full. Takes m. */
static void s_to_engine(s_io_t *io, sl__in_t *m)
{
    if (io->pending.n == 0 && sl_offer(io->n->inbound, m) == SL_OK)
        return;
    if (!s_fifo_push(&io->pending, m, 0)) { /* out of memory: dropped, counted */
        atomic_fetch_add_explicit(&io->n->io_oom, 1, memory_order_relaxed);
        sl__in_free(m);
    }
}

static void s_list_unlink(s_io_t *io, s_slow_t *s)
{
    if (s->prev)
        s->prev->next = s->next;
    else if (s->cut)
        io->cut_head = s->next;
    else
        io->slow = s->next;
    if (s->next)
        s->next->prev = s->prev;
    else if (s->cut)
        io->cut_tail = s->prev;
    s->prev = s->next = NULL;
}

static s_slow_t *s_entry_new(s_io_t *io, const uint8_t *rid, size_t rid_len)
{
    s_slow_t *s = io->peers ? calloc(1, sizeof *s) : NULL;
    if (!s || sl__map_put(io->peers, rid, rid_len, s) != SL_OK) {
        free(s);
        return NULL; /* out of memory: the caller drops and counts */
    }
    memcpy(s->rid, rid, rid_len);
    s->rid_len = rid_len;
    io->entries++;
    s->next = io->slow;
    if (io->slow)
        io->slow->prev = s;
    io->slow = s;
    return s;
}

/* Forget an entry and free what it holds. */
static void s_entry_free(s_io_t *io, s_slow_t *s)
{
    s_list_unlink(io, s);
    if (s->cut)
        io->ncut--;
    sl__map_del(io->peers, s->rid, s->rid_len);
    io->entries--;
    while (s->out.n)
        free(s_fifo_pop(&s->out).p);
    while (s->held.n)
        sl__in_free(s_fifo_pop(&s->held).p);
    s_fifo_release(&s->out);
    s_fifo_release(&s->held);
    free(s);
}

/* Over the bound: discard what s holds (counted, with `more`: replies or
 * requests discarded with it), tell the engine, and mark s CUT. */
static void s_cut(s_io_t *io, s_slow_t *s, uint64_t more_replies, uint64_t more_requests)
{
    s->lost_replies = s->out.n + more_replies;
    s->lost_requests = s->held.n + more_requests;
    while (s->out.n)
        free(s_fifo_pop(&s->out).p);
    while (s->held.n)
        sl__in_free(s_fifo_pop(&s->held).p);
    s_fifo_release(&s->out);
    s_fifo_release(&s->held);
    s->bytes = 0;
    s_list_unlink(io, s);
    s->cut = true;
    s->prev = io->cut_tail;
    if (io->cut_tail)
        io->cut_tail->next = s;
    else
        io->cut_head = s;
    io->cut_tail = s;
    if (io->ncut++ == 0)
        io->next_tell = sl__mono_ms() + S_TELL_MS;
    sl__in_t *m = sl__in_new(0, 0);
    if (!m) { /* out of memory: the engine forgets the silent peer later */
        atomic_fetch_add_explicit(&io->n->io_oom, 1, memory_order_relaxed);
        if (io->ncut > S_CUT_MAX)
            s_entry_free(io, io->cut_head);
        return;
    }
    m->kind = SL__IN_CUT;
    memcpy(m->rid, s->rid, s->rid_len);
    m->rid_len = s->rid_len;
    m->n = (size_t)(s->lost_replies + s->lost_requests);
    s_to_engine(io, m);
    if (io->ncut > S_CUT_MAX)
        s_entry_free(io, io->cut_head); /* the engine's counters keep the trace */
}

/* Discarded for a peer already cut (until it is told). */
static void s_lost(s_io_t *io, s_slow_t *s, bool reply)
{
    if (reply)
        s->lost_replies++;
    else
        s->lost_requests++;
    atomic_fetch_add_explicit(&io->n->cut_discarded, 1, memory_order_relaxed);
}

/* Tell a cut peer what it lost, with one Error{OVERLOADED} (echoing corr,
 * the message that prompted it, or 0), and forget it: it starts afresh.
 * Not while its pipe is still full: then nothing changes. */
static void s_tell(s_io_t *io, s_slow_t *s, uint64_t corr)
{
    char text[320];
    snprintf(text, sizeof text,
             "cut off for not reading its replies: %" PRIu64 " replies and %" PRIu64
             " requests discarded, subscriptions dropped and leases returned; resend "
             "unconfirmed publishes with the same ids",
             s->lost_replies, s->lost_requests);
    Sluice__V1__Error e = SLUICE__V1__ERROR__INIT;
    e.code = SLUICE__V1__ERROR__CODE__OVERLOADED;
    e.text = text;
    Sluice__V1__Envelope env = SLUICE__V1__ENVELOPE__INIT;
    env.corr = corr;
    env.body_case = SLUICE__V1__ENVELOPE__BODY_ERROR;
    env.error = &e;
    size_t len = sluice__v1__envelope__get_packed_size(&env);
    sl__out_t *o = malloc(sizeof *o + len);
    if (!o)
        return; /* told later */
    memcpy(o->rid, s->rid, s->rid_len);
    o->rid_len = s->rid_len;
    o->len = sluice__v1__envelope__pack(&env, o->buf);
    int rc = s_send(io->n, o);
    if (rc == EAGAIN) {
        free(o);
        return;
    }
    s_entry_free(io, s); /* told, or gone (EHOSTUNREACH) */
}

/* Every S_TELL_MS: tell the cut peers whose pipes have room (a peer that
 * has stopped sending hears it too), and forget those that have gone. */
static void s_tell_all(s_io_t *io)
{
    for (s_slow_t *s = io->cut_head, *next; s; s = next) {
        next = s->next;
        s_tell(io, s, 0);
    }
    io->next_tell = sl__mono_ms() + S_TELL_MS;
}

/* Keep o, refused, at the end of s's backlog; cut s off past the bound.
 * Takes o. */
static void s_backlog(s_io_t *io, s_slow_t *s, sl__out_t *o)
{
    size_t c = s_out_cost(o);
    if (s->bytes + c > io->bound || !s_fifo_push(&s->out, o, c)) {
        free(o);
        s_cut(io, s, 1, 0);
        return;
    }
    s->bytes += c;
}

/* A reply for a peer with an entry: behind its backlog. Takes o. */
static void s_hold(s_io_t *io, s_slow_t *s, sl__out_t *o)
{
    bool hb = s_is_heartbeat(o->buf, o->len);
    if (s->cut) {
        if (!hb)
            s_lost(io, s, true);
        free(o);
        return;
    }
    if (hb) {
        free(o);
        return;
    }
    if (s->out.n == 0) { /* only parked requests left: nothing to overtake */
        int rc = s_send(io->n, o);
        if (rc != EAGAIN) {
            if (rc != 0)
                s_departed(io, 1);
            return;
        }
    }
    s_backlog(io, s, o);
}

/* A request from a peer with an entry. Takes m. */
static void s_park(s_io_t *io, s_slow_t *s, sl__in_t *m, size_t size)
{
    if (s->cut) {
        /* Its next message: tell it, if its pipe has room now. Requests
         * until then are discarded (and counted in what it is told). */
        uint64_t corr = m->kind == SL__IN_ENV ? m->env->corr : m->corr;
        if (!s_in_heartbeat(m))
            s_lost(io, s, false);
        sl__in_free(m);
        s_tell(io, s, corr);
        return;
    }
    if (s_in_heartbeat(m)) { /* alive, only slow: the engine may know */
        s_to_engine(io, m);
        return;
    }
    size_t c = s_in_cost(m, size);
    if (s->bytes + c > io->bound || !s_fifo_push(&s->held, m, c)) {
        sl__in_free(m);
        s_cut(io, s, 0, 1);
        return;
    }
    s->bytes += c;
}

/* A reply from the engine. Takes o. */
static void s_out(s_io_t *io, sl__out_t *o)
{
    if (io->entries) {
        s_slow_t *s = sl__map_get(io->peers, o->rid, o->rid_len);
        if (s) {
            s_hold(io, s, o);
            return;
        }
    }
    int rc = s_send(io->n, o);
    if (rc == 0)
        return;
    if (rc != EAGAIN) {
        s_departed(io, 1);
    } else if (s_is_heartbeat(o->buf, o->len)) {
        free(o); /* not worth a backlog */
    } else {
        s_slow_t *s = s_entry_new(io, o->rid, o->rid_len);
        if (s) {
            s_backlog(io, s, o);
        } else {
            atomic_fetch_add_explicit(&io->n->io_oom, 1, memory_order_relaxed);
            free(o);
        }
    }
}

/* A request read from the socket. Takes m. */
static void s_in(s_io_t *io, sl__in_t *m, size_t size)
{
    if (io->entries) {
        s_slow_t *s = sl__map_get(io->peers, m->rid, m->rid_len);
        if (s) {
            s_park(io, s, m, size);
            return;
        }
    }
    s_to_engine(io, m);
}

/* Retry every backlog, oldest reply first; once a peer's is sent, hand
 * its parked requests to the engine while inbound takes them, and forget
 * the peer when nothing is left. */
static void s_flush(s_io_t *io)
{
    for (s_slow_t *s = io->slow, *next; s; s = next) {
        next = s->next;
        while (s->out.n) {
            s_item_t it = s->out.v[s->out.head];
            int rc = s_send(io->n, it.p);
            if (rc == EAGAIN)
                break;
            s_fifo_pop(&s->out);
            s->bytes -= it.cost;
            if (rc != 0) { /* gone: so are the rest of its replies */
                s_departed(io, 1 + s->out.n);
                while (s->out.n)
                    free(s_fifo_pop(&s->out).p);
                s->bytes = 0;
                for (size_t i = 0; i < s->held.n; i++)
                    s->bytes += s->held.v[(s->held.head + i) & (s->held.cap - 1)].cost;
            }
        }
        if (s->out.n)
            continue;
        /* Parked requests go in order; a departed peer's too (acks count,
         * publishes are kept, and their replies are dropped as departed). */
        while (s->held.n && sl_offer(io->n->inbound, s->held.v[s->held.head].p) == SL_OK)
            s->bytes -= s_fifo_pop(&s->held).cost;
        if (!s->held.n)
            s_entry_free(io, s);
    }
}

/* Free everything the socket thread holds (at stop). */
static void s_io_release(s_io_t *io)
{
    while (io->slow)
        s_entry_free(io, io->slow);
    while (io->cut_head)
        s_entry_free(io, io->cut_head);
    while (io->pending.n)
        sl__in_free(s_fifo_pop(&io->pending).p);
    s_fifo_release(&io->pending);
    sl__map_destroy(&io->peers);
}

/* How long zmq_poll may wait: briefly while a backlog waits to be retried
 * (zmq_poll cannot wait for one peer's room), until the next telling
 * while cut peers wait, else until something happens. */
static long s_timeout(s_io_t *io)
{
    if (io->slow)
        return S_RETRY_MS;
    if (io->ncut) {
        int64_t left = io->next_tell - sl__mono_ms();
        return left > 0 ? (long)left : 0;
    }
    return -1;
}

void *sl__node_io_main(void *arg)
{
    sl__node_t *n = arg;
    /* Without memory for the map, a peer whose replies back up is treated
     * as one whose backlog cannot grow: its replies are dropped, counted. */
    s_io_t io = {.n = n, .peers = sl__map_new()};
    io.bound = S_BOUND_FRAMES * n->o.max_frame;
    if (io.bound < S_BOUND_MIN)
        io.bound = S_BOUND_MIN;
    int mandatory = 1;
    zmq_setsockopt(n->router, ZMQ_ROUTER_MANDATORY, &mandatory, sizeof mandatory);
    int out_fd = sl_chan_fd(n->outbound, SL_CHAN_READABLE);
    int in_fd = sl_chan_fd(n->inbound, SL_CHAN_WRITABLE);
    for (;;) {
        /* While a read message waits for inbound, wait for inbound, not
         * the socket: a flood backs up into ZeroMQ's and TCP's buffers. */
        bool full = io.pending.n > 0;
        zmq_pollitem_t items[3] = {
            {.socket = full ? NULL : n->router, .fd = full ? in_fd : 0, .events = ZMQ_POLLIN},
            {.socket = NULL, .fd = out_fd, .events = ZMQ_POLLIN},
            {.socket = NULL, .fd = n->stop_pipe[0], .events = ZMQ_POLLIN},
        };
        if (zmq_poll(items, 3, s_timeout(&io)) < 0 && zmq_errno() != EINTR)
            break;
        if (io.slow)
            s_flush(&io);
        void *v;
        while (sl_poll(n->outbound, &v) == SL_OK)
            s_out(&io, v);
        while (io.pending.n && sl_offer(n->inbound, io.pending.v[io.pending.head].p) == SL_OK)
            s_fifo_pop(&io.pending);
        if (io.ncut && sl__mono_ms() >= io.next_tell)
            s_tell_all(&io);
        for (int i = 0; !io.pending.n && i < SL__READ_BURST; i++) {
            size_t size = 0;
            sl__in_t *m = s_read_one(n, &size);
            if (!m && size == SIZE_MAX)
                continue; /* dropped for want of memory (counted) */
            if (!m)
                break;
            s_in(&io, m, size);
        }
        if (items[2].revents & ZMQ_POLLIN && atomic_load(&n->stopping) == 2) {
            while (sl_poll(n->outbound, &v) == SL_OK)
                s_out(&io, v);
            if (io.slow)
                s_flush(&io);
            break;
        }
    }
    s_io_release(&io);
    return NULL;
}
