/* coord_testutil.h -- helpers shared by the coord_*_test.c protocol tests:
 * an embedded coordinator with a short interval, simulated nodes that
 * report NodeStatus on a thread of their own over a real DEALER socket,
 * and client peers (ConsumerJoin, RouteRequest, CLUSTER) whose socket is
 * driven by a thread of their own, so that their heartbeats keep flowing
 * however long the test waits, and every envelope is stamped with the time
 * it arrived. */
#ifndef SLUICE_COORD_TESTUTIL_H
#define SLUICE_COORD_TESTUTIL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "sluice/coord.h"
#include "sluice/wire.h"
#include "testlib.h"

#define K_ASSIGNMENT SLUICE__V1__ENVELOPE__BODY_ASSIGNMENT
#define K_ROUTES SLUICE__V1__ENVELOPE__BODY_ROUTE_TABLE
#define K_STATUS_REPLY SLUICE__V1__ENVELOPE__BODY_NODE_STATUS_REPLY
#define K_ERROR SLUICE__V1__ENVELOPE__BODY_ERROR

/* The coordinator's interval in these tests: short, but long enough that a
 * sanitized build on a busy machine does not miss three in a row. */
static inline int64_t coord_hb(void)
{
    return sl_test_sanitized() ? 250 : 100;
}

static inline int64_t coord_patience(void)
{
    return sl_test_sanitized() ? 30000 : 5000;
}

static inline void coord_sleep_ms(int64_t ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

static inline double coord_ms_between(int64_t a_ns, int64_t b_ns)
{
    return (double)(b_ns - a_ns) / 1e6;
}

/* With SLUICE_TEST_TRACE set, every coordinator event goes to stderr. */
static inline void coord_trace(void *arg, const sl_coord_event_t *ev)
{
    (void)arg;
    fprintf(stderr, "%.1f ms: event %d subject '%s' queue '%s' epoch %llx %s\n",
            (double)sl_now() / 1e6, (int)ev->type, ev->subject ? ev->subject : "",
            ev->queue ? ev->queue : "", (unsigned long long)ev->epoch,
            ev->detail ? ev->detail : "");
}

/* The name of the kinds these tests wait for, for failure messages. */
static inline const char *coord_kind_name(Sluice__V1__Envelope__BodyCase kind)
{
    return kind == K_ASSIGNMENT ? "Assignment" : kind == K_ROUTES ? "RouteTable" : "envelope";
}

/* A started coordinator on endpoint (NULL: a free port) with interval
 * coord_hb() and the given grace. Caller owns. */
static inline sl_coord_t *coord_start(const char *endpoint, int64_t grace_ms)
{
    sl_coord_opts_t o;
    sl_coord_opts_default(&o);
    o.endpoint = endpoint ? endpoint : "tcp://127.0.0.1:0";
    o.coord_id = "coord-under-test";
    o.heartbeat_ms = coord_hb();
    o.grace_ms = grace_ms;
    if (getenv("SLUICE_TEST_TRACE"))
        o.on_event = coord_trace;
    int err = 0;
    sl_coord_t *c = sl_coord_new(&o, &err);
    if (!c)
        fail_msg("sl_coord_new: %s", sl_err_name(err));
    SL_ASSERT_OK(sl_coord_start(c));
    return c;
}

/* --- simulated nodes ------------------------------------------------------ */

typedef struct {
    void *ctx, *sock;
    char id[64], endpoint[64];
    int64_t interval_ms;
    pthread_t th;
    pthread_mutex_t mu;             /* guards everything below           */
    uint64_t incarnation;
    uint64_t member_epoch;          /* sent in each status; adopted from
                                       every reply                       */
    uint64_t depth;                 /* load of queue "q"                 */
    bool paused, quit;
    bool paused_seen;               /* the thread saw `paused`           */
    int64_t last_sent;              /* sl_now() of the last status       */
    unsigned replies, rejoins;
    uint64_t last_reply_epoch;
    bool last_rejoin;
} cnode_t;

static inline void cnode_send(cnode_t *n)
{
    pthread_mutex_lock(&n->mu);
    Sluice__V1__QueueLoad ql = SLUICE__V1__QUEUE_LOAD__INIT;
    ql.queue = "q";
    ql.depth = n->depth;
    Sluice__V1__QueueLoad *qlp = &ql;
    Sluice__V1__NodeStatus st = SLUICE__V1__NODE_STATUS__INIT;
    st.node_id = n->id;
    st.incarnation = n->incarnation;
    st.endpoint = n->endpoint;
    st.n_queues = 1;
    st.queues = &qlp;
    st.member_epoch = n->member_epoch;
    st.interval_ms = (uint32_t)n->interval_ms;
    Sluice__V1__Envelope env = SLUICE__V1__ENVELOPE__INIT;
    env.body_case = SLUICE__V1__ENVELOPE__BODY_NODE_STATUS;
    env.node_status = &st;
    sl_wire_send(n->sock, NULL, 0, &env, ZMQ_DONTWAIT);
    n->last_sent = sl_now();
    pthread_mutex_unlock(&n->mu);
}

/* Send a status every interval (unless paused) and adopt every reply's
 * epoch, as a node does. */
static inline void *cnode_main(void *arg)
{
    cnode_t *n = arg;
    int64_t next = 0;
    for (;;) {
        pthread_mutex_lock(&n->mu);
        bool quit = n->quit, paused = n->paused;
        n->paused_seen = paused;
        pthread_mutex_unlock(&n->mu);
        if (quit)
            break;
        if (!paused && sl_now() >= next) {
            cnode_send(n);
            next = sl_now() + n->interval_ms * 1000000;
        }
        zmq_pollitem_t it = {.socket = n->sock, .events = ZMQ_POLLIN};
        if (zmq_poll(&it, 1, 2) <= 0)
            continue;
        sl_wire_msg_t m;
        if (sl_wire_try_recv(n->sock, false, 0, &m) == SL_OK &&
            m.env->body_case == K_STATUS_REPLY) {
            pthread_mutex_lock(&n->mu);
            n->replies++;
            n->last_reply_epoch = m.env->node_status_reply->member_epoch;
            n->last_rejoin = m.env->node_status_reply->rejoin;
            n->rejoins += n->last_rejoin;
            n->member_epoch = n->last_reply_epoch;
            pthread_mutex_unlock(&n->mu);
        }
        sl_wire_msg_release(&m);
    }
    return NULL;
}

/* A node named id reporting to the coordinator at coord_ep every
 * coord_hb(), starting with member_epoch. Caller owns (cnode_destroy). */
static inline cnode_t *cnode_new(const char *coord_ep, const char *id, uint64_t member_epoch)
{
    cnode_t *n = calloc(1, sizeof *n);
    assert_non_null(n);
    snprintf(n->id, sizeof n->id, "%s", id);
    snprintf(n->endpoint, sizeof n->endpoint, "tcp://127.0.0.1:9%s", id + strcspn(id, "0123456789"));
    n->interval_ms = coord_hb();
    n->incarnation = 1000 + (uint64_t)(uintptr_t)n % 997;
    n->member_epoch = member_epoch;
    pthread_mutex_init(&n->mu, NULL);
    n->ctx = zmq_ctx_new();
    n->sock = zmq_socket(n->ctx, ZMQ_DEALER);
    int zero = 0;
    zmq_setsockopt(n->sock, ZMQ_LINGER, &zero, sizeof zero);
    assert_int_equal(zmq_connect(n->sock, coord_ep), 0);
    assert_int_equal(pthread_create(&n->th, NULL, cnode_main, n), 0);
    return n;
}

static inline void cnode_destroy(cnode_t **np)
{
    cnode_t *n = *np;
    if (!n)
        return;
    *np = NULL;
    pthread_mutex_lock(&n->mu);
    n->quit = true;
    pthread_mutex_unlock(&n->mu);
    pthread_join(n->th, NULL);
    zmq_close(n->sock);
    zmq_ctx_term(n->ctx);
    pthread_mutex_destroy(&n->mu);
    free(n);
}

/* The node's epoch once it has one (fails the test after patience). */
static inline uint64_t cnode_epoch(cnode_t *n)
{
    int64_t end = sl_deadline_ms(coord_patience());
    for (;;) {
        pthread_mutex_lock(&n->mu);
        uint64_t e = n->replies ? n->member_epoch : 0;
        pthread_mutex_unlock(&n->mu);
        if (e)
            return e;
        if (sl_now() >= end)
            fail_msg("node '%s' got no NodeStatusReply", n->id);
        coord_sleep_ms(1);
    }
}

/* Stop (or resume) reporting. Pausing returns when the node has stopped,
 * with the sl_now() of its last status. */
static inline int64_t cnode_pause(cnode_t *n, bool paused)
{
    pthread_mutex_lock(&n->mu);
    n->paused = paused;
    pthread_mutex_unlock(&n->mu);
    int64_t end = sl_deadline_ms(coord_patience());
    for (;;) {
        pthread_mutex_lock(&n->mu);
        bool seen = n->paused_seen == paused;
        int64_t last = n->last_sent;
        pthread_mutex_unlock(&n->mu);
        if (seen)
            return last;
        if (sl_now() >= end)
            fail_msg("node '%s' thread stuck", n->id);
        coord_sleep_ms(1);
    }
}

static inline void cnode_set_depth(cnode_t *n, uint64_t depth)
{
    pthread_mutex_lock(&n->mu);
    n->depth = depth;
    pthread_mutex_unlock(&n->mu);
}

static inline unsigned cnode_rejoins(cnode_t *n)
{
    pthread_mutex_lock(&n->mu);
    unsigned r = n->rejoins;
    pthread_mutex_unlock(&n->mu);
    return r;
}

/* --- client peers ------------------------------------------------------------ */

typedef struct {
    void *ctx, *sock;
    pthread_t th;
    int64_t hb_ms;
    uint64_t next_corr;             /* test thread only                  */
    pthread_mutex_t mu;             /* guards everything below           */
    pthread_cond_t cv;              /* an envelope arrived               */
    bool quit;
    zmq_msg_t *out;                 /* frames to send; more[] marks all
                                       but the last of a message         */
    bool *more;
    size_t nout, capout;
    Sluice__V1__Envelope **in;      /* received, Heartbeats dropped      */
    int64_t *in_at;                 /* sl_now() when each arrived        */
    size_t nin, capin;
} cpeer_t;

static inline void *cpeer_main(void *arg)
{
    cpeer_t *p = arg;
    int64_t next_hb = sl_now();
    for (;;) {
        pthread_mutex_lock(&p->mu);
        bool quit = p->quit;
        zmq_msg_t *out = p->out;
        bool *more = p->more;
        size_t nout = p->nout;
        p->out = NULL;
        p->more = NULL;
        p->nout = p->capout = 0;
        pthread_mutex_unlock(&p->mu);
        for (size_t i = 0; i < nout; i++)
            zmq_msg_send(&out[i], p->sock, more[i] ? ZMQ_SNDMORE : 0);
        free(out);
        free(more);
        if (quit)
            break;
        if (p->hb_ms > 0 && sl_now() >= next_hb) {
            Sluice__V1__Heartbeat hb = SLUICE__V1__HEARTBEAT__INIT;
            hb.node_id = "test-client";
            hb.interval_ms = (uint32_t)p->hb_ms;
            Sluice__V1__Envelope env = SLUICE__V1__ENVELOPE__INIT;
            env.body_case = SLUICE__V1__ENVELOPE__BODY_HEARTBEAT;
            env.heartbeat = &hb;
            sl_wire_send(p->sock, NULL, 0, &env, ZMQ_DONTWAIT);
            next_hb = sl_now() + p->hb_ms / 3 * 1000000;
        }
        zmq_pollitem_t it = {.socket = p->sock, .events = ZMQ_POLLIN};
        if (zmq_poll(&it, 1, 1) <= 0)
            continue;
        sl_wire_msg_t m;
        while (sl_wire_try_recv(p->sock, false, 0, &m) == SL_OK) {
            Sluice__V1__Envelope *env = m.env;
            m.env = NULL;
            sl_wire_msg_release(&m);
            if (env->body_case == SLUICE__V1__ENVELOPE__BODY_HEARTBEAT) {
                sl_wire_env_free(&env);
                continue;
            }
            pthread_mutex_lock(&p->mu);
            if (p->nin == p->capin) {
                p->capin = p->capin ? 2 * p->capin : 32;
                p->in = realloc(p->in, p->capin * sizeof *p->in);
                p->in_at = realloc(p->in_at, p->capin * sizeof *p->in_at);
                assert_true(p->in && p->in_at);
            }
            p->in[p->nin] = env;
            p->in_at[p->nin++] = sl_now();
            pthread_cond_broadcast(&p->cv);
            pthread_mutex_unlock(&p->mu);
        }
        sl_wire_msg_release(&m);
    }
    return NULL;
}

/* A DEALER connected to endpoint; heartbeat_ms > 0 sends a Heartbeat
 * every heartbeat_ms / 3. Caller owns (cpeer_destroy). */
static inline cpeer_t *cpeer_new(const char *endpoint, int64_t heartbeat_ms)
{
    cpeer_t *p = calloc(1, sizeof *p);
    assert_non_null(p);
    p->hb_ms = heartbeat_ms;
    p->next_corr = 1;
    pthread_mutex_init(&p->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->cv, &ca);
    pthread_condattr_destroy(&ca);
    p->ctx = zmq_ctx_new();
    p->sock = zmq_socket(p->ctx, ZMQ_DEALER);
    int zero = 0;
    zmq_setsockopt(p->sock, ZMQ_LINGER, &zero, sizeof zero);
    if (zmq_connect(p->sock, endpoint) != 0)
        fail_msg("connect '%s': %s", endpoint, zmq_strerror(zmq_errno()));
    assert_int_equal(pthread_create(&p->th, NULL, cpeer_main, p), 0);
    return p;
}

/* Close the socket (the coordinator hears nothing more), free it all. */
static inline void cpeer_destroy(cpeer_t **pp)
{
    cpeer_t *p = *pp;
    if (!p)
        return;
    *pp = NULL;
    pthread_mutex_lock(&p->mu);
    p->quit = true;
    pthread_mutex_unlock(&p->mu);
    pthread_join(p->th, NULL);
    zmq_close(p->sock);
    zmq_ctx_term(p->ctx);
    for (size_t i = 0; i < p->nin; i++)
        sl_wire_env_free(&p->in[i]);
    free(p->in);
    free(p->in_at);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

/* Queue n frames as one message, sent by the peer's thread. */
static inline int cpeer_send_frames(cpeer_t *p, const void *const *frames, const size_t *lens,
                                    size_t n)
{
    pthread_mutex_lock(&p->mu);
    for (size_t i = 0; i < n; i++) {
        if (p->nout == p->capout) {
            p->capout = p->capout ? 2 * p->capout : 8;
            p->out = realloc(p->out, p->capout * sizeof *p->out);
            p->more = realloc(p->more, p->capout * sizeof *p->more);
            assert_true(p->out && p->more);
        }
        assert_int_equal(zmq_msg_init_size(&p->out[p->nout], lens[i]), 0);
        if (lens[i])
            memcpy(zmq_msg_data(&p->out[p->nout]), frames[i], lens[i]);
        p->more[p->nout++] = i + 1 < n;
    }
    pthread_mutex_unlock(&p->mu);
    return SL_OK;
}

static inline int cpeer_send(cpeer_t *p, const Sluice__V1__Envelope *env)
{
    uint8_t *buf;
    size_t len;
    int rc = sl_wire_pack(env, &buf, &len);
    if (rc != SL_OK)
        return rc;
    const void *f[1] = {buf};
    rc = cpeer_send_frames(p, f, &len, 1);
    free(buf);
    return rc;
}

static inline bool cpeer_match(const Sluice__V1__Envelope *env,
                               Sluice__V1__Envelope__BodyCase kind, uint64_t corr)
{
    bool k = kind == SLUICE__V1__ENVELOPE__BODY__NOT_SET || env->body_case == kind;
    return k && (corr == 0 || env->corr == corr);
}

/* The oldest received envelope of kind (NOT_SET: any) with corr (0: any),
 * waiting up to timeout_ms; *at (may be NULL) gets when it arrived.
 * Caller owns the result; NULL on timeout. */
static inline Sluice__V1__Envelope *cpeer_recv_at(cpeer_t *p, Sluice__V1__Envelope__BodyCase kind,
                                                  uint64_t corr, int64_t timeout_ms, int64_t *at)
{
    int64_t end = sl_deadline_ms(timeout_ms);
    struct timespec ts = {end / 1000000000, end % 1000000000};
    Sluice__V1__Envelope *env = NULL;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        for (size_t i = 0; i < p->nin && !env; i++) {
            if (!cpeer_match(p->in[i], kind, corr))
                continue;
            env = p->in[i];
            if (at)
                *at = p->in_at[i];
            memmove(&p->in[i], &p->in[i + 1], (p->nin - i - 1) * sizeof *p->in);
            memmove(&p->in_at[i], &p->in_at[i + 1], (p->nin - i - 1) * sizeof *p->in_at);
            p->nin--;
        }
        if (env || sl_now() >= end)
            break;
        pthread_cond_timedwait(&p->cv, &p->mu, &ts);
    }
    pthread_mutex_unlock(&p->mu);
    return env;
}

static inline Sluice__V1__Envelope *cpeer_recv(cpeer_t *p, Sluice__V1__Envelope__BodyCase kind,
                                               uint64_t corr, int64_t timeout_ms)
{
    return cpeer_recv_at(p, kind, corr, timeout_ms, NULL);
}

/* Wait window_ms, then count the received envelopes of kind (kept). */
static inline size_t cpeer_count(cpeer_t *p, Sluice__V1__Envelope__BodyCase kind,
                                 int64_t window_ms)
{
    coord_sleep_ms(window_ms);
    size_t k = 0;
    pthread_mutex_lock(&p->mu);
    for (size_t i = 0; i < p->nin; i++)
        k += cpeer_match(p->in[i], kind, 0);
    pthread_mutex_unlock(&p->mu);
    return k;
}

/* Send Admin{op, queue}; the AdminReply, or NULL after timeout_ms. */
static inline Sluice__V1__Envelope *cpeer_admin(cpeer_t *p, Sluice__V1__Admin__Op op,
                                                const char *queue, int64_t timeout_ms)
{
    Sluice__V1__Admin a = SLUICE__V1__ADMIN__INIT;
    a.op = op;
    a.queue = (char *)(queue ? queue : "");
    Sluice__V1__Envelope env = SLUICE__V1__ENVELOPE__INIT;
    env.corr = p->next_corr++;
    env.body_case = SLUICE__V1__ENVELOPE__BODY_ADMIN;
    env.admin = &a;
    SL_ASSERT_OK(cpeer_send(p, &env));
    return cpeer_recv(p, SLUICE__V1__ENVELOPE__BODY_ADMIN_REPLY, env.corr, timeout_ms);
}

/* A client peer heartbeating thrice per coordinator interval. */
static inline cpeer_t *coord_client(sl_coord_t *c)
{
    return cpeer_new(sl_coord_endpoint(c), coord_hb());
}

static inline void coord_join(cpeer_t *p, const char *consumer, const char *queue,
                              uint64_t epoch, uint64_t corr)
{
    Sluice__V1__ConsumerJoin j = SLUICE__V1__CONSUMER_JOIN__INIT;
    j.consumer_id = (char *)consumer;
    j.queue = (char *)queue;
    j.concurrency = 10;
    j.epoch = epoch;
    Sluice__V1__Envelope env = SLUICE__V1__ENVELOPE__INIT;
    env.corr = corr;
    env.body_case = SLUICE__V1__ENVELOPE__BODY_CONSUMER_JOIN;
    env.consumer_join = &j;
    SL_ASSERT_OK(cpeer_send(p, &env));
}

static inline void coord_leave(cpeer_t *p, const char *consumer, const char *queue)
{
    Sluice__V1__ConsumerLeave l = SLUICE__V1__CONSUMER_LEAVE__INIT;
    l.consumer_id = (char *)consumer;
    l.queue = (char *)queue;
    Sluice__V1__Envelope env = SLUICE__V1__ENVELOPE__INIT;
    env.body_case = SLUICE__V1__ENVELOPE__BODY_CONSUMER_LEAVE;
    env.consumer_leave = &l;
    SL_ASSERT_OK(cpeer_send(p, &env));
}

static inline void coord_route_request(cpeer_t *p, const char *client, const char *queue,
                                       uint64_t version, uint64_t corr)
{
    Sluice__V1__RouteRequest r = SLUICE__V1__ROUTE_REQUEST__INIT;
    r.client_id = (char *)client;
    r.queue = (char *)queue;
    r.version = version;
    Sluice__V1__Envelope env = SLUICE__V1__ENVELOPE__INIT;
    env.corr = corr;
    env.body_case = SLUICE__V1__ENVELOPE__BODY_ROUTE_REQUEST;
    env.route_request = &r;
    SL_ASSERT_OK(cpeer_send(p, &env));
}

/* The node ids of an Assignment or RouteTable joined by ',' into buf. */
static inline const char *coord_node_list(const Sluice__V1__Envelope *env, char *buf, size_t len)
{
    size_t at = 0;
    buf[0] = '\0';
    if (env->body_case == K_ASSIGNMENT)
        for (size_t i = 0; i < env->assignment->n_nodes && at < len; i++)
            at += (size_t)snprintf(buf + at, len - at, "%s%s", i ? "," : "",
                                   env->assignment->nodes[i]->node_id);
    else
        for (size_t i = 0; i < env->route_table->n_routes && at < len; i++)
            at += (size_t)snprintf(buf + at, len - at, "%s%s", i ? "," : "",
                                   env->route_table->routes[i]->node->node_id);
    return buf;
}

/* The next envelope of kind (Assignment or RouteTable) whose node list is
 * `nodes`, skipping others; *at gets sl_now() when it arrived. Fails the
 * test after timeout_ms. Caller owns the result. */
static inline Sluice__V1__Envelope *coord_wait_nodes(cpeer_t *p,
                                                     Sluice__V1__Envelope__BodyCase kind,
                                                     const char *nodes, int64_t timeout_ms,
                                                     int64_t *at)
{
    int64_t end = sl_deadline_ms(timeout_ms);
    char seen[512] = "(none)";
    for (;;) {
        int64_t left = (end - sl_now()) / 1000000;
        Sluice__V1__Envelope *env = cpeer_recv_at(p, kind, 0, left > 0 ? left : 0, at);
        if (env) {
            coord_node_list(env, seen, sizeof seen);
            if (strcmp(seen, nodes) == 0)
                return env;
            sl_wire_env_free(&env);
        }
        if (sl_now() >= end)
            fail_msg("no %s with nodes '%s' within %lld ms (last: '%s')",
                     coord_kind_name(kind), nodes, (long long)timeout_ms, seen);
    }
}

/* The CLUSTER view (AdminReply); fails the test if none comes. */
static inline Sluice__V1__Envelope *coord_cluster(cpeer_t *p)
{
    Sluice__V1__Envelope *env = cpeer_admin(p, SLUICE__V1__ADMIN__OP__CLUSTER, NULL,
                                                coord_patience());
    if (!env)
        fail_msg("no AdminReply to CLUSTER");
    assert_non_null(env->admin_reply->cluster);
    return env;
}

#endif
