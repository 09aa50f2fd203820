/* testpeer.h -- for the client tests (include after testlib.h, which
 * brings cmocka): a ZeroMQ ROUTER that plays a coordinator or a node. It
 * records what the client sends, answers heartbeats (seeming alive) and,
 * when the test sets them, CLUSTER views, route requests, consumer joins
 * and paged STATS; anything else the test answers itself with
 * tpeer_send, to the last client heard from. The socket is driven by a
 * thread of its own, under `mu`. */
#ifndef SLUICE_TESTPEER_H
#define SLUICE_TESTPEER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "sluice/sched.h"
#include "sluice/wire.h"
#include "testclient.h"

#define TPEER_HB_MS 100 /* the interval the peer announces */

typedef struct {
    void *ctx, *sock;
    char endpoint[64];
    pthread_mutex_t mu;         /* the socket, the log, rid, the answers   */
    pthread_t th;
    atomic_bool quit;
    bool answer_hb;             /* answer Heartbeats (seem alive)          */
    uint64_t hb_epoch;          /* the epoch its Heartbeats name (42)      */
    uint32_t hb_interval_ms;    /* the interval they announce (TPEER_HB_MS) */
    uint8_t rid[SL_WIRE_RID_MAX];
    size_t rid_len;             /* the last client heard                   */
    Sluice__V1__Envelope **log; /* everything but Heartbeats, in order     */
    size_t nlog, cap;
    Sluice__V1__ClusterView *view; /* answer Admin{CLUSTER} with this     */
    const Sluice__V1__RouteTable *table; /* answer RouteRequests with this */
    const Sluice__V1__Assignment *assignment; /* answer ConsumerJoins whose
                                   epoch is not its epoch with this        */
    const char *const *stats_names; /* answer Admin{STATS} of every queue:
                                   these queues (sorted, NULL-terminated),
                                   stats_page at a time, after Admin.after */
    size_t stats_page;
} tpeer_t;

static inline void tpeer_answer_hb(tpeer_t *p)
{
    Sluice__V1__Heartbeat hb = SLUICE__V1__HEARTBEAT__INIT;
    hb.node_id = "peer";
    hb.epoch = p->hb_epoch;
    hb.interval_ms = p->hb_interval_ms;
    Sluice__V1__Envelope env = SLUICE__V1__ENVELOPE__INIT;
    env.body_case = SLUICE__V1__ENVELOPE__BODY_HEARTBEAT;
    env.heartbeat = &hb;
    sl_wire_send(p->sock, p->rid, p->rid_len, &env, ZMQ_DONTWAIT);
}

static inline void tpeer_answer_admin(tpeer_t *p, uint64_t corr)
{
    Sluice__V1__AdminReply ar = SLUICE__V1__ADMIN_REPLY__INIT;
    ar.node_id = "coord-test";
    ar.cluster = p->view;
    Sluice__V1__Envelope env = SLUICE__V1__ENVELOPE__INIT;
    env.corr = corr;
    env.body_case = SLUICE__V1__ENVELOPE__BODY_ADMIN_REPLY;
    env.admin_reply = &ar;
    sl_wire_send(p->sock, p->rid, p->rid_len, &env, ZMQ_DONTWAIT);
}

/* One page of STATS: the queues of stats_names after `after`, at most
 * stats_page (and at most Admin.limit) of them; next names the last one
 * when more follow. STATS of one queue: that one. */
static inline void tpeer_answer_stats(tpeer_t *p, uint64_t corr, const Sluice__V1__Admin *a)
{
    enum { MAX = 64 };
    Sluice__V1__QueueStats qs[MAX], *qp[MAX];
    size_t n = 0, i = 0, page = p->stats_page ? p->stats_page : 1;
    if (a->limit && a->limit < page)
        page = a->limit;
    if (a->queue && *a->queue) { /* one queue: that one, whatever it is */
        while (p->stats_names[i] && strcmp(p->stats_names[i], a->queue) != 0)
            i++;
        page = 1;
    }
    while (p->stats_names[i] && a->after && *a->after && strcmp(p->stats_names[i], a->after) <= 0)
        i++;
    for (; p->stats_names[i] && n < page && n < MAX; i++, n++) {
        sluice__v1__queue_stats__init(&qs[n]);
        qs[n].name = (char *)p->stats_names[i];
        qs[n].depth = n + 1;
        qp[n] = &qs[n];
    }
    Sluice__V1__AdminReply ar = SLUICE__V1__ADMIN_REPLY__INIT;
    ar.node_id = "peer";
    ar.epoch = p->hb_epoch;
    ar.queues = qp;
    ar.n_queues = n;
    if (p->stats_names[i] && n > 0 && !(a->queue && *a->queue))
        ar.next = qs[n - 1].name;
    Sluice__V1__Envelope env = SLUICE__V1__ENVELOPE__INIT;
    env.corr = corr;
    env.body_case = SLUICE__V1__ENVELOPE__BODY_ADMIN_REPLY;
    env.admin_reply = &ar;
    sl_wire_send(p->sock, p->rid, p->rid_len, &env, ZMQ_DONTWAIT);
}

/* Answer what the test asked the peer to answer by itself. */
static inline void tpeer_answer(tpeer_t *p, const Sluice__V1__Envelope *env)
{
    switch (env->body_case) {
    case SLUICE__V1__ENVELOPE__BODY_ADMIN:
        if (env->admin->op == SLUICE__V1__ADMIN__OP__CLUSTER && p->view)
            tpeer_answer_admin(p, env->corr);
        if (env->admin->op == SLUICE__V1__ADMIN__OP__STATS && p->stats_names)
            tpeer_answer_stats(p, env->corr, env->admin);
        break;
    case SLUICE__V1__ENVELOPE__BODY_CONSUMER_JOIN:
        if (p->assignment && env->consumer_join->epoch != p->assignment->epoch) {
            Sluice__V1__Envelope out = SLUICE__V1__ENVELOPE__INIT;
            out.body_case = SLUICE__V1__ENVELOPE__BODY_ASSIGNMENT;
            out.assignment = (Sluice__V1__Assignment *)p->assignment;
            sl_wire_send(p->sock, p->rid, p->rid_len, &out, ZMQ_DONTWAIT);
        }
        break;
    case SLUICE__V1__ENVELOPE__BODY_ROUTE_REQUEST:
        if (p->table) {
            Sluice__V1__Envelope out = SLUICE__V1__ENVELOPE__INIT;
            out.body_case = SLUICE__V1__ENVELOPE__BODY_ROUTE_TABLE;
            out.route_table = (Sluice__V1__RouteTable *)p->table;
            sl_wire_send(p->sock, p->rid, p->rid_len, &out, ZMQ_DONTWAIT);
        }
        break;
    default:
        break;
    }
}

static inline void *tpeer_main(void *arg)
{
    tpeer_t *p = arg;
    while (!atomic_load(&p->quit)) {
        zmq_pollitem_t it = {.socket = p->sock, .events = ZMQ_POLLIN};
        pthread_mutex_lock(&p->mu);
        if (zmq_poll(&it, 1, 5) > 0) {
            sl_wire_msg_t m;
            if (sl_wire_try_recv(p->sock, true, 0, &m) == SL_OK) {
                memcpy(p->rid, m.rid, m.rid_len);
                p->rid_len = m.rid_len;
                Sluice__V1__Envelope *env = m.env;
                m.env = NULL;
                if (env->body_case == SLUICE__V1__ENVELOPE__BODY_HEARTBEAT) {
                    if (p->answer_hb)
                        tpeer_answer_hb(p);
                    sl_wire_env_free(&env);
                } else {
                    tpeer_answer(p, env);
                    if (p->nlog == p->cap) {
                        p->cap = p->cap ? p->cap * 2 : 64;
                        p->log = realloc(p->log, p->cap * sizeof *p->log);
                        assert_non_null(p->log);
                    }
                    p->log[p->nlog++] = env;
                }
            }
            sl_wire_msg_release(&m);
        }
        pthread_mutex_unlock(&p->mu);
        sched_yield();
    }
    return NULL;
}

/* A peer bound to endpoint (NULL: a free loopback port), its heartbeats
 * announcing interval_ms (0: TPEER_HB_MS). Caller owns (tpeer_destroy). */
static inline tpeer_t *tpeer_new_at(bool answer_hb, const char *endpoint, uint32_t interval_ms)
{
    tpeer_t *p = calloc(1, sizeof *p);
    assert_non_null(p);
    p->answer_hb = answer_hb;
    p->hb_epoch = 42;
    p->hb_interval_ms = interval_ms ? interval_ms : TPEER_HB_MS;
    p->ctx = zmq_ctx_new();
    p->sock = zmq_socket(p->ctx, ZMQ_ROUTER);
    int zero = 0;
    zmq_setsockopt(p->sock, ZMQ_LINGER, &zero, sizeof zero);
    assert_int_equal(zmq_bind(p->sock, endpoint ? endpoint : "tcp://127.0.0.1:0"), 0);
    size_t len = sizeof p->endpoint;
    assert_int_equal(zmq_getsockopt(p->sock, ZMQ_LAST_ENDPOINT, p->endpoint, &len), 0);
    pthread_mutex_init(&p->mu, NULL);
    p->th = sl_test_thread(tpeer_main, p);
    return p;
}

/* A peer on a free loopback port. Caller owns (tpeer_destroy). */
static inline tpeer_t *tpeer_new(bool answer_hb)
{
    return tpeer_new_at(answer_hb, NULL, 0);
}

static inline void tpeer_destroy(tpeer_t **p_p)
{
    tpeer_t *p = *p_p;
    if (!p)
        return;
    *p_p = NULL;
    atomic_store(&p->quit, true);
    sl_test_join(p->th);
    for (size_t i = 0; i < p->nlog; i++)
        sl_wire_env_free(&p->log[i]);
    free(p->log);
    zmq_close(p->sock);
    zmq_ctx_term(p->ctx);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

/* Send env to the last client heard from. */
static inline void tpeer_send(tpeer_t *p, const Sluice__V1__Envelope *env)
{
    pthread_mutex_lock(&p->mu);
    assert_true(p->rid_len > 0);
    int rc = sl_wire_send(p->sock, p->rid, p->rid_len, env, 0);
    pthread_mutex_unlock(&p->mu);
    SL_ASSERT_OK(rc);
}

/* Send len bytes as they are, as one envelope frame, to the last client
 * heard from (kinds this build cannot encode). */
static inline void tpeer_send_raw(tpeer_t *p, const void *data, size_t len)
{
    pthread_mutex_lock(&p->mu);
    assert_true(p->rid_len > 0);
    int a = zmq_send(p->sock, p->rid, p->rid_len, ZMQ_SNDMORE);
    int b = zmq_send(p->sock, data, len, 0);
    pthread_mutex_unlock(&p->mu);
    assert_true(a >= 0 && b >= 0);
}

/* The queue an envelope is about, for the kinds a client sends. */
static inline const char *tpeer_env_queue(const Sluice__V1__Envelope *e)
{
    switch (e->body_case) {
    case SLUICE__V1__ENVELOPE__BODY_ROUTE_REQUEST:
        return e->route_request->queue;
    case SLUICE__V1__ENVELOPE__BODY_CONSUMER_JOIN:
        return e->consumer_join->queue;
    case SLUICE__V1__ENVELOPE__BODY_CONSUMER_LEAVE:
        return e->consumer_leave->queue;
    case SLUICE__V1__ENVELOPE__BODY_SUBSCRIBE:
        return e->subscribe->queue;
    case SLUICE__V1__ENVELOPE__BODY_PUBLISH:
        return e->publish->n_jobs > 0 ? e->publish->jobs[0]->queue : "";
    default:
        return "";
    }
}

/* The first logged envelope of kind about queue at index >= *from, waited
 * for; *from moves past it. Borrowed until the peer is destroyed. */
static inline const Sluice__V1__Envelope *tpeer_wait(tpeer_t *p, size_t *from,
                                                     Sluice__V1__Envelope__BodyCase kind,
                                                     const char *queue)
{
    int64_t end = sl_deadline_ms(tc_patience_ms());
    for (;;) {
        pthread_mutex_lock(&p->mu);
        for (size_t i = *from; i < p->nlog; i++) {
            const Sluice__V1__Envelope *e = p->log[i];
            if (e->body_case == kind && strcmp(tpeer_env_queue(e), queue) == 0) {
                *from = i + 1;
                pthread_mutex_unlock(&p->mu);
                return e;
            }
        }
        pthread_mutex_unlock(&p->mu);
        if (sl_now() > end)
            fail_msg("no %s about '%s' within the patience", sl_wire_kind_name(kind), queue);
        sl_sleep_ms(2);
    }
}

/* How many envelopes of kind the peer has logged so far. */
static inline size_t tpeer_count(tpeer_t *p, Sluice__V1__Envelope__BodyCase kind)
{
    size_t n = 0;
    pthread_mutex_lock(&p->mu);
    for (size_t i = 0; i < p->nlog; i++)
        n += p->log[i]->body_case == kind;
    pthread_mutex_unlock(&p->mu);
    return n;
}

#endif
