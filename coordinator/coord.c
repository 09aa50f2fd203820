/* coord.c -- the coordinator: lifecycle, its one thread and socket loop,
 * and the dispatch of each envelope to the rules in cluster.c.
 *
 *   ROUTER socket --sl_wire_try_recv--> s_handle --> sl__on_* (cluster.c)
 *   every interval / 4 ------------------------------> sl__sweep
 *   after each burst and sweep ------------------------> sl__flush
 *
 * The coordinator is small (one status per node and client per interval),
 * so one thread waiting on the socket and a stop pipe with zmq_poll does
 * all of it. Bad input is counted and answered, never fatal. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "coord_int.h"

#define S_READ_BURST 256

int64_t sl__coord_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}


void sl_coord_opts_default(sl_coord_opts_t *o)
{
    memset(o, 0, sizeof *o);
    o->endpoint = "tcp://127.0.0.1:7440";
    o->heartbeat_ms = 1000;
    o->grace_ms = -1;
    o->max_frame = 1 << 20;
    o->max_nodes = 4096;
    o->max_consumers = 4096;
    o->max_watchers = 4096;
}

/* --- sending --------------------------------------------------------------- */

void sl__coord_send(sl_coord_t *c, const uint8_t *rid, size_t rid_len,
                    const Sluice__V1__Envelope *env)
{
    /* ROUTER without ROUTER_MANDATORY: a departed peer, or one whose queue
     * is full, loses the message; everything we send is re-sent or
     * re-asked for within an interval. */
    int rc = sl_wire_send(c->router, rid, rid_len, env, ZMQ_DONTWAIT);
    if (rc == SL_ENOMEM)
        abort(); /* daemon: out of memory */
}

static void s_send_error(sl_coord_t *c, const uint8_t *rid, size_t rid_len, uint64_t corr,
                         Sluice__V1__Error__Code code, const char *text)
{
    Sluice__V1__Error e = SLUICE__V1__ERROR__INIT;
    e.code = code;
    e.text = (char *)text;
    Sluice__V1__Envelope env = SLUICE__V1__ENVELOPE__INIT;
    env.corr = corr;
    env.body_case = SLUICE__V1__ENVELOPE__BODY_ERROR;
    env.error = &e;
    sl__coord_send(c, rid, rid_len, &env);
}

void sl__coord_reject(sl_coord_t *c, const uint8_t *rid, size_t rid_len, uint64_t corr,
                      Sluice__V1__Error__Code code, const char *fmt, ...)
{
    char text[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    c->bad_messages++;
    sl__coord_event(c, SL_COORD_EV_BAD_MESSAGE, NULL, NULL, 0, text);
    if (rid_len > 0)
        s_send_error(c, rid, rid_len, corr, code, text);
}

void sl__coord_full(sl_coord_t *c, const uint8_t *rid, size_t rid_len, uint64_t corr,
                    const char *subject, const char *what)
{
    char text[256];
    snprintf(text, sizeof text, "coordinator full (%s reached)", what);
    sl__coord_event(c, SL_COORD_EV_FULL, subject, NULL, 0, what);
    s_send_error(c, rid, rid_len, corr, SLUICE__V1__ERROR__CODE__FULL, text);
}

void sl__coord_event(sl_coord_t *c, sl_coord_event_type_t type, const char *subject,
                     const char *queue, uint64_t epoch, const char *detail)
{
    if (!c->o.on_event)
        return;
    sl_coord_event_t ev = {.type = type, .subject = subject, .queue = queue, .epoch = epoch,
                           .detail = detail};
    c->o.on_event(c->o.event_arg, &ev);
}

static void s_heartbeat(sl_coord_t *c, const uint8_t *rid, size_t rid_len)
{
    Sluice__V1__Heartbeat hb = SLUICE__V1__HEARTBEAT__INIT;
    hb.node_id = c->id;
    hb.epoch = c->epoch0;
    hb.sent_ms = sl_wall_ms();
    hb.interval_ms = (uint32_t)c->o.heartbeat_ms;
    Sluice__V1__Envelope env = SLUICE__V1__ENVELOPE__INIT;
    env.body_case = SLUICE__V1__ENVELOPE__BODY_HEARTBEAT;
    env.heartbeat = &hb;
    sl__coord_send(c, rid, rid_len, &env);
}

/* --- dispatch --------------------------------------------------------------- */

/* A received envelope, unpacked, and the first of its string fields that
 * holds a NUL byte (protobuf-c would hand it over cut short). */
typedef struct {
    sl_wire_msg_t *m;
    const char *nul;
} s_decoded_t;

static int s_decode(const void *data, size_t size, void *arg)
{
    s_decoded_t *d = arg;
    int rc = sl_wire_unpack(data, size, &d->m->env);
    d->nul = rc == SL_OK ? sl_wire_nul_string(data, size) : NULL;
    return rc;
}

/* String fields that name a queue (Admin.after names one too). */
static bool s_names_queue(const char *field)
{
    return strcmp(field, "queue") == 0 || strcmp(field, "name") == 0 ||
           strcmp(field, "after") == 0;
}

/* One received message; rc is what the receive returned, nul what
 * s_decode found. */
static void s_handle(sl_coord_t *c, sl_wire_msg_t *m, int rc, const char *nul)
{
    c->messages++;
    if (rc != SL_OK) {
        sl__coord_reject(c, m->rid, m->rid_len, 0, SLUICE__V1__ERROR__CODE__BAD_MESSAGE,
                         rc == SL_ETOOBIG ? "envelope of %zu bytes is over max-frame"
                                          : "undecodable message (%zu bytes)",
                         m->size);
        return;
    }
    Sluice__V1__Envelope *env = m->env;
    if (nul) {
        /* "q\0x" would read as "q": a name is never cut short, and never
         * taken for another. */
        sl__coord_reject(c, m->rid, m->rid_len, env->corr,
                         s_names_queue(nul) ? SLUICE__V1__ERROR__CODE__BAD_QUEUE
                                            : SLUICE__V1__ERROR__CODE__BAD_MESSAGE,
                         "string field '%s' holds a NUL byte", nul);
        return;
    }
    sl__peer_seen(c, m->rid, m->rid_len, sl__coord_mono_ms());
    switch (env->body_case) {
    case SLUICE__V1__ENVELOPE__BODY_NODE_STATUS:
        sl__on_node_status(c, m->rid, m->rid_len, env);
        break;
    case SLUICE__V1__ENVELOPE__BODY_CONSUMER_JOIN:
        sl__on_consumer_join(c, m->rid, m->rid_len, env);
        break;
    case SLUICE__V1__ENVELOPE__BODY_CONSUMER_LEAVE:
        sl__on_consumer_leave(c, m->rid, m->rid_len, env);
        break;
    case SLUICE__V1__ENVELOPE__BODY_ROUTE_REQUEST:
        sl__on_route_request(c, m->rid, m->rid_len, env);
        break;
    case SLUICE__V1__ENVELOPE__BODY_ADMIN:
        if (env->admin->op == SLUICE__V1__ADMIN__OP__CLUSTER)
            sl__on_cluster(c, m->rid, m->rid_len, env->corr);
        else
            sl__coord_reject(c, m->rid, m->rid_len, env->corr,
                             SLUICE__V1__ERROR__CODE__UNKNOWN_KIND,
                             "admin op %d is not served by the coordinator (only CLUSTER)",
                             (int)env->admin->op);
        break;
    case SLUICE__V1__ENVELOPE__BODY_HEARTBEAT:
        s_heartbeat(c, m->rid, m->rid_len);
        break;
    case SLUICE__V1__ENVELOPE__BODY_ERROR:
        /* Counted, never answered: two peers must not trade errors. */
        c->bad_messages++;
        sl__coord_event(c, SL_COORD_EV_BAD_MESSAGE, NULL, NULL, 0, "error received");
        break;
    case SLUICE__V1__ENVELOPE__BODY__NOT_SET:
        sl__coord_reject(c, m->rid, m->rid_len, env->corr, SLUICE__V1__ERROR__CODE__UNKNOWN_KIND,
                         "envelope has no body this coordinator knows");
        break;
    default:
        sl__coord_reject(c, m->rid, m->rid_len, env->corr, SLUICE__V1__ERROR__CODE__UNKNOWN_KIND,
                         "unexpected message kind '%s' for the coordinator",
                         sl_wire_kind_name(env->body_case));
        break;
    }
}

static void s_publish_stats(sl_coord_t *c)
{
    sl_coord_stats_t s = {
        .nodes_alive = c->n_alive,
        .nodes_dead = c->nodes.n - c->n_alive,
        .consumers = c->consumers.n,
        .watchers = c->watchers.n,
        .queues = c->queues.n,
        .messages = c->messages,
        .bad_messages = c->bad_messages,
        .last_epoch = c->counter,
        .grace_over = c->grace_over,
    };
    pthread_mutex_lock(&c->mu);
    c->stats = s;
    pthread_mutex_unlock(&c->mu);
}

static void *s_main(void *arg)
{
    sl_coord_t *c = arg;
    int64_t tick = c->o.heartbeat_ms / 4 > 0 ? c->o.heartbeat_ms / 4 : 1;
    int64_t next_sweep = c->start_mono;
    for (;;) {
        int64_t now = sl__coord_mono_ms();
        if (now >= next_sweep) {
            sl__sweep(c, now);
            next_sweep = now + tick;
        }
        sl__flush(c, now);
        s_publish_stats(c);
        zmq_pollitem_t items[2] = {
            {.socket = c->router, .events = ZMQ_POLLIN},
            {.socket = NULL, .fd = c->stop_pipe[0], .events = ZMQ_POLLIN},
        };
        long wait = (long)(next_sweep - sl__coord_mono_ms());
        if (zmq_poll(items, 2, wait < 0 ? 0 : wait) < 0 && zmq_errno() != EINTR)
            break;
        if (items[1].revents & ZMQ_POLLIN)
            break;
        for (int i = 0; i < S_READ_BURST; i++) {
            sl_wire_msg_t m;
            s_decoded_t d = {&m, NULL};
            int rc = sl_wire_try_recv_with(c->router, true, c->o.max_frame, &m, s_decode, &d);
            if (rc == SL_OK || rc == SL_EPROTO || rc == SL_ETOOBIG)
                s_handle(c, &m, rc, d.nul);
            sl_wire_msg_release(&m);
            if (rc != SL_OK && rc != SL_EPROTO && rc != SL_ETOOBIG)
                break;
        }
    }
    return NULL;
}

/* --- lifecycle ------------------------------------------------------------- */

sl_coord_t *sl_coord_new(const sl_coord_opts_t *o, int *err)
{
    int rc = SL_EINVAL;
    if (!o || !o->endpoint || o->heartbeat_ms < 10 || o->heartbeat_ms > 600000 ||
        o->grace_ms < -1 || o->max_frame < 1024 || o->max_nodes < 1 || o->max_consumers < 1 ||
        o->max_watchers < 1)
        goto fail;
    rc = SL_ENOMEM;
    sl_coord_t *c = calloc(1, sizeof *c);
    if (!c)
        goto fail;
    c->o = *o;
    c->stop_pipe[0] = c->stop_pipe[1] = -1;
    pthread_mutex_init(&c->mu, NULL);
    char host[128] = "coordinator";
    gethostname(host, sizeof host - 1);
    char idbuf[200];
    snprintf(idbuf, sizeof idbuf, "%s:%d", host, (int)getpid());
    c->endpoint = strdup(o->endpoint);
    c->id = strdup(o->coord_id && o->coord_id[0] ? o->coord_id : idbuf);
    if (!c->endpoint || !c->id) {
        sl_coord_destroy(&c);
        goto fail;
    }
    c->o.endpoint = c->endpoint;
    c->o.coord_id = c->id;
    c->grace_ms = o->grace_ms >= 0 ? o->grace_ms : 2 * o->heartbeat_ms;
    /* Epochs stay increasing across restarts while the clock does not step
     * back by more than the downtime. */
    c->epoch0 = c->counter = (uint64_t)sl_wall_ms() << 16;
    return c;
fail:
    if (err)
        *err = rc;
    return NULL;
}

int sl_coord_start(sl_coord_t *c)
{
    if (c->running || c->router)
        return SL_ESTATE;
    c->zctx = zmq_ctx_new();
    char *bound = NULL;
    int rc = SL_OK;
    c->router = sl_wire_router_bind(c->zctx, c->endpoint, c->o.max_frame, &bound, &rc);
    if (!c->router)
        return rc;
    free(c->endpoint);
    c->endpoint = bound;
    c->o.endpoint = bound;
    if (pipe2(c->stop_pipe, O_CLOEXEC | O_NONBLOCK) != 0)
        return SL_ESYS;
    c->start_mono = sl__coord_mono_ms();
    s_publish_stats(c);
    if (pthread_create(&c->thread, NULL, s_main, c) != 0)
        return SL_ESYS;
    c->running = true;
    return SL_OK;
}

const char *sl_coord_endpoint(sl_coord_t *c)
{
    return c->endpoint;
}

uint64_t sl_coord_epoch(sl_coord_t *c)
{
    return c->epoch0;
}

void sl_coord_stats(sl_coord_t *c, sl_coord_stats_t *out)
{
    pthread_mutex_lock(&c->mu);
    *out = c->stats;
    pthread_mutex_unlock(&c->mu);
}

void sl_coord_destroy(sl_coord_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    sl_coord_t *c = *self_p;
    *self_p = NULL;
    if (c->running) {
        ssize_t w;
        do
            w = write(c->stop_pipe[1], "x", 1);
        while (w < 0 && errno == EINTR);
        pthread_join(c->thread, NULL);
    }
    if (c->router)
        zmq_close(c->router);
    if (c->zctx)
        zmq_ctx_term(c->zctx);
    for (int i = 0; i < 2; i++)
        if (c->stop_pipe[i] >= 0)
            close(c->stop_pipe[i]);
    sl__cluster_release(c);
    pthread_mutex_destroy(&c->mu);
    free(c->endpoint);
    free(c->id);
    free(c);
}
