/* node_cluster_test.c -- an embedded node in a cluster, with the test
 * playing the coordinator on a real ROUTER socket: a NodeStatus every
 * interval with the queues' loads and rates, the member epoch adopted,
 * rejoin fencing subscribers (STALE_EPOCH, leased jobs back to ready),
 * Subscribe.member_epoch checked, and a node that serves on while the
 * coordinator is absent or restarts, without queueing statuses for it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "node_peer.h"
#include "sluice/wire.h"
#include "testlib.h"

#define STATUS SLUICE__V1__ENVELOPE__BODY_NODE_STATUS
#define ERROR SLUICE__V1__ENVELOPE__BODY_ERROR
#define DELIVER SLUICE__V1__ENVELOPE__BODY_DELIVER
#define LEASE_REPLY SLUICE__V1__ENVELOPE__BODY_LEASE_REPLY
#define STALE_EPOCH SLUICE__V1__ERROR__CODE__STALE_EPOCH
#define STALE_LEASE SLUICE__V1__ERROR__CODE__STALE_LEASE

/* --- the coordinator played by the test ----------------------------------- */

typedef struct {
    void *ctx, *sock;
    char endpoint[64];
    uint8_t rid[SL_WIRE_RID_MAX]; /* the node's routing id, once heard from */
    size_t rid_len;
} coord_t;

static coord_t s_coord;
static sl_node_t *s_node; /* the fixture's, borrowed */

static int64_t s_hb(void)
{
    return sl_test_sanitized() ? 150 : 50;
}

static void s_coord_bind(coord_t *c, const char *endpoint)
{
    if (!c->ctx)
        c->ctx = zmq_ctx_new();
    assert_non_null(c->ctx);
    c->sock = zmq_socket(c->ctx, ZMQ_ROUTER);
    assert_non_null(c->sock);
    int linger = 0;
    zmq_setsockopt(c->sock, ZMQ_LINGER, &linger, sizeof linger);
    if (zmq_bind(c->sock, endpoint) != 0)
        fail_msg("bind '%s': %s", endpoint, zmq_strerror(zmq_errno()));
    size_t len = sizeof c->endpoint;
    assert_int_equal(zmq_getsockopt(c->sock, ZMQ_LAST_ENDPOINT, c->endpoint, &len), 0);
}

static void s_coord_close(coord_t *c)
{
    if (c->sock)
        zmq_close(c->sock);
    c->sock = NULL;
}

/* A port nobody listens on (bound, then closed) for an absent coordinator. */
static void s_coord_absent(coord_t *c)
{
    s_coord_bind(c, "tcp://127.0.0.1:0");
    s_coord_close(c);
}

static int s_teardown(void **state)
{
    node_fx_teardown(state);
    s_node = NULL;
    s_coord_close(&s_coord);
    if (s_coord.ctx)
        zmq_ctx_term(s_coord.ctx);
    memset(&s_coord, 0, sizeof s_coord);
    return 0;
}

/* The next NodeStatus within timeout_ms, or NULL. Caller owns. */
static Sluice__V1__Envelope *s_status(coord_t *c, int64_t timeout_ms)
{
    int64_t end = sl_deadline_ms(timeout_ms);
    for (;;) {
        int64_t left = (end - sl_now()) / 1000000;
        zmq_pollitem_t it = {.socket = c->sock, .events = ZMQ_POLLIN};
        if (zmq_poll(&it, 1, left > 0 ? (long)left : 0) > 0) {
            sl_wire_msg_t m;
            int rc = sl_wire_try_recv(c->sock, true, 0, &m);
            if (rc == SL_OK && m.env->body_case == STATUS) {
                memcpy(c->rid, m.rid, m.rid_len);
                c->rid_len = m.rid_len;
                Sluice__V1__Envelope *env = m.env;
                m.env = NULL;
                sl_wire_msg_release(&m);
                return env;
            }
            sl_wire_msg_release(&m);
            continue;
        }
        if (sl_now() >= end)
            return NULL;
    }
}

static Sluice__V1__Envelope *s_status_ok(coord_t *c)
{
    Sluice__V1__Envelope *env = s_status(c, node_test_patience());
    if (!env)
        fail_msg("no NodeStatus within %lld ms", (long long)node_test_patience());
    return env;
}

/* The first status sent after this call: older ones are discarded. */
static Sluice__V1__Envelope *s_status_fresh(coord_t *c)
{
    Sluice__V1__Envelope *env;
    while ((env = s_status(c, 0)))
        sl_wire_env_free(&env);
    return s_status_ok(c);
}

static void s_reply(coord_t *c, uint64_t member_epoch, bool rejoin)
{
    Sluice__V1__NodeStatusReply r = SLUICE__V1__NODE_STATUS_REPLY__INIT;
    r.member_epoch = member_epoch;
    r.rejoin = rejoin;
    r.interval_ms = (uint32_t)s_hb();
    Sluice__V1__Envelope env = SLUICE__V1__ENVELOPE__INIT;
    env.body_case = SLUICE__V1__ENVELOPE__BODY_NODE_STATUS_REPLY;
    env.node_status_reply = &r;
    assert_true(c->rid_len > 0);
    SL_ASSERT_OK(sl_wire_send(c->sock, c->rid, c->rid_len, &env, 0));
}

static const Sluice__V1__QueueLoad *s_load(const Sluice__V1__NodeStatus *st, const char *queue)
{
    for (size_t i = 0; i < st->n_queues; i++)
        if (strcmp(st->queues[i]->queue, queue) == 0)
            return st->queues[i];
    return NULL;
}

/* Statuses until one satisfies cond (the next one is fetched first), or
 * fail after patience. */
#define WAIT_STATUS(c, st, cond)                                               \
    do {                                                                       \
        int64_t end__ = sl_deadline_ms(node_test_patience());                  \
        Sluice__V1__Envelope *env__ = NULL;                                    \
        for (;;) {                                                             \
            sl_wire_env_free(&env__);                                          \
            env__ = s_status((c), 100);                                        \
            if (env__) {                                                       \
                (st) = env__->node_status;                                     \
                if (cond)                                                      \
                    break;                                                     \
            }                                                                  \
            if (sl_now() >= end__)                                             \
                fail_msg("no status with '%s' in time", #cond);                \
        }                                                                      \
        sl_wire_env_free(&env__);                                              \
    } while (0)

static void s_start_node(const char *coordinator, uint32_t capacity)
{
    sl_node_opts_t o;
    node_test_opts(&o);
    o.heartbeat_ms = s_hb();
    o.coordinator = coordinator;
    o.capacity = capacity;
    s_node = node_fx_start(&o);
}

/* Join: answer the first status with epoch and wait until it is adopted. */
static void s_join(uint64_t epoch)
{
    Sluice__V1__Envelope *env = s_status_ok(&s_coord);
    sl_wire_env_free(&env);
    s_reply(&s_coord, epoch, false);
    int64_t end = sl_deadline_ms(node_test_patience());
    while (sl_node_member_epoch(s_node) != epoch && sl_now() < end)
        sl_sleep_ms(1);
    assert_int_equal(sl_node_member_epoch(s_node), epoch);
}

static uint64_t s_subscribe(node_peer_t *p, const char *queue, uint32_t credit, uint64_t epoch,
                            uint64_t corr)
{
    Sluice__V1__Subscribe s = SLUICE__V1__SUBSCRIBE__INIT;
    s.queue = (char *)queue;
    s.credit = credit;
    s.consumer_id = "cluster-test";
    s.member_epoch = epoch;
    Sluice__V1__Envelope env = SLUICE__V1__ENVELOPE__INIT;
    env.corr = corr;
    env.body_case = SLUICE__V1__ENVELOPE__BODY_SUBSCRIBE;
    env.subscribe = &s;
    SL_ASSERT_OK(node_peer_send(p, &env));
    return corr;
}

/* The next Error for p (corr 0: any), asserted to be STALE_EPOCH; returns
 * its text in buf. */
static void s_expect_stale(node_peer_t *p, uint64_t corr, char *buf, size_t size)
{
    Sluice__V1__Envelope *env = node_peer_recv(p, ERROR, corr, node_test_patience());
    assert_non_null(env);
    assert_int_equal(env->error->code, STALE_EPOCH);
    if (corr)
        assert_int_equal(env->corr, corr);
    snprintf(buf, size, "%s", env->error->text);
    sl_wire_env_free(&env);
}

/* --- tests ---------------------------------------------------------------- */

static void test_node_cluster__status_every_interval_with_loads(void **state)
{
    (void)state;
    s_coord_bind(&s_coord, "tcp://127.0.0.1:0");
    s_start_node(s_coord.endpoint, 250);

    Sluice__V1__Envelope *env = s_status_ok(&s_coord);
    Sluice__V1__NodeStatus *st = env->node_status;
    assert_string_equal(st->node_id, "node-test");
    assert_int_equal(st->incarnation, sl_node_epoch(s_node));
    assert_string_equal(st->endpoint, sl_node_endpoint(s_node));
    assert_int_equal(st->capacity, 250);
    assert_int_equal(st->member_epoch, 0); /* joining */
    assert_int_equal(st->interval_ms, s_hb());
    assert_false(st->fenced);
    sl_wire_env_free(&env);

    /* One status per interval: over 20 intervals, neither a burst nor
     * silence (the coordinator does not answer, the node sends anyway). */
    int64_t t0 = sl_now();
    int got = 0;
    while (sl_test_ms_since(t0) < 20.0 * (double)s_hb()) {
        env = s_status(&s_coord, 20 * s_hb());
        if (env)
            got++;
        sl_wire_env_free(&env);
    }
    double intervals = sl_test_ms_since(t0) / (double)s_hb();
    if (got < intervals / 2 || got > intervals + 3)
        fail_msg("%d statuses in %.1f intervals", got, intervals);

    /* Loads: 5 ready, 2 of them leased, 1 delayed, one consumer. */
    node_peer_t *prod = node_fx_peer();
    node_peer_t *cons = node_fx_peer();
    node_peer_publish_range(prod, "a", 1, 5, 0);
    node_peer_publish_ok(prod, &(node_job_t){.id = 6, .queue = "a",
                                             .not_before_ms = node_wall_ms() + 600000},
                         1, NULL, node_test_patience());
    SL_ASSERT_OK(node_peer_subscribe(cons, "a", 2));
    node_dlv_t d[2];
    assert_int_equal(node_peer_deliveries(cons, d, 2, node_test_patience()), 2);
    const Sluice__V1__NodeStatus *s;
    const Sluice__V1__QueueLoad *l;
    WAIT_STATUS(&s_coord, s,
                (l = s_load(s, "a")) && l->depth == 3 && l->in_flight == 2 && l->delayed == 1 &&
                    l->consumers == 1);
}

/* Publish and ack at a steady pace: the rates in statuses and in admin
 * STATS match the pace, then fall to 0 once it stops. */
static void test_node_cluster__rates(void **state)
{
    (void)state;
    s_coord_bind(&s_coord, "tcp://127.0.0.1:0");
    s_start_node(s_coord.endpoint, 0);
    node_peer_t *prod = node_fx_peer();
    node_peer_t *cons = node_fx_peer();
    SL_ASSERT_OK(node_peer_subscribe(cons, "r", 1000));

    /* 10 jobs every 20 ms for at least 30 rounds (~500 jobs/s). */
    int64_t t0 = sl_now();
    uint32_t sent = 0, acked = 0;
    for (int round = 0; round < 30; round++) {
        node_peer_publish_range(prod, "r", 1 + sent, 10, 0);
        sent += 10;
        node_dlv_t d[10];
        size_t k = node_peer_deliveries(cons, d, 10, node_test_patience());
        assert_int_equal(k, 10);
        node_peer_ack_many(cons, d, k);
        acked += 10;
        int64_t next = t0 + (int64_t)(round + 1) * 20 * 1000000;
        if (sl_now() < next)
            sl_sleep_ms((next - sl_now()) / 1000000);
    }
    double pace = (double)sent * 1000.0 / sl_test_ms_since(t0);
    Sluice__V1__QueueStats qs;
    NODE_WAIT_STATS(prod, "r", qs, qs.acked == acked, node_test_patience());
    /* The window is a few intervals long, the pace steady: within 3x. */
    if (qs.publish_rate < pace / 3 || qs.publish_rate > pace * 3)
        fail_msg("stats publish_rate %.1f, pace %.1f jobs/s", qs.publish_rate, pace);
    if (qs.ack_rate < pace / 3 || qs.ack_rate > pace * 3)
        fail_msg("stats ack_rate %.1f, pace %.1f jobs/s", qs.ack_rate, pace);
    Sluice__V1__Envelope *env = s_status_fresh(&s_coord);
    const Sluice__V1__QueueLoad *l = s_load(env->node_status, "r");
    assert_non_null(l);
    if (l->publish_rate < pace / 3 || l->publish_rate > pace * 3 || l->ack_rate < pace / 3 ||
        l->ack_rate > pace * 3)
        fail_msg("status rates %.1f/%.1f, pace %.1f jobs/s", l->publish_rate, l->ack_rate, pace);
    sl_wire_env_free(&env);

    /* Nothing more happens: the window slides past the work. */
    const Sluice__V1__NodeStatus *s;
    WAIT_STATUS(&s_coord, s,
                (l = s_load(s, "r")) && l->publish_rate == 0.0 && l->ack_rate == 0.0);
    node_peer_stats(prod, "r", &qs);
    assert_true(qs.publish_rate == 0.0 && qs.ack_rate == 0.0);
    assert_int_equal(qs.published, sent);
}

static void test_node_cluster__member_epoch_adopted(void **state)
{
    (void)state;
    s_coord_bind(&s_coord, "tcp://127.0.0.1:0");
    s_start_node(s_coord.endpoint, 0);
    assert_int_equal(sl_node_member_epoch(s_node), 0);
    s_join(0x5eed00010000ULL);
    const Sluice__V1__NodeStatus *s;
    WAIT_STATUS(&s_coord, s, s->member_epoch == 0x5eed00010000ULL);
    assert_false(s_node && sl_node_fenced(s_node));
}

static void test_node_cluster__rejoin_fences_subscribers(void **state)
{
    (void)state;
    const uint64_t e1 = 0x100010000ULL, e2 = 0x100020000ULL;
    s_coord_bind(&s_coord, "tcp://127.0.0.1:0");
    s_start_node(s_coord.endpoint, 0);
    s_join(e1);
    node_peer_t *prod = node_fx_peer();
    node_peer_t *cons = node_fx_peer();
    node_peer_publish_range(prod, "q", 1, 3, 0);
    node_peer_publish_range(prod, "q2", 10, 1, 0);
    s_subscribe(cons, "q", 2, e1, 0);
    s_subscribe(cons, "q2", 1, e1, 0);
    node_dlv_t d[3];
    assert_int_equal(node_peer_deliveries(cons, d, 3, node_test_patience()), 3);

    /* The coordinator had declared the node dead. */
    Sluice__V1__Envelope *env = s_status_ok(&s_coord);
    sl_wire_env_free(&env);
    s_reply(&s_coord, e2, true);

    /* One STALE_EPOCH per subscription, each naming its queue. */
    char t1[256], t2[256];
    s_expect_stale(cons, 0, t1, sizeof t1);
    s_expect_stale(cons, 0, t2, sizeof t2);
    bool q = strstr(t1, "'q'") || strstr(t2, "'q'");
    bool q2 = strstr(t1, "'q2'") || strstr(t2, "'q2'");
    if (!q || !q2)
        fail_msg("errors '%s' and '%s' do not name both queues", t1, t2);
    assert_int_equal(sl_node_member_epoch(s_node), e2);
    assert_true(sl_node_fenced(s_node));

    /* Leased jobs are ready again; nothing is delivered without a new
     * subscription; the old leases are void. */
    Sluice__V1__QueueStats st;
    NODE_WAIT_STATS(prod, "q", st, st.in_flight == 0 && st.depth == 3 && st.consumers == 0,
                    node_test_patience());
    NODE_WAIT_STATS(prod, "q2", st, st.in_flight == 0 && st.depth == 1, node_test_patience());
    assert_int_equal(st.failed + st.dead, 0);
    assert_int_equal(node_peer_count(cons, DELIVER, 3 * s_hb()), 0);
    uint64_t corr = node_peer_ack(cons, &d[0]);
    env = node_peer_recv(cons, LEASE_REPLY, corr, node_test_patience());
    assert_non_null(env);
    assert_non_null(env->lease_reply->error);
    assert_int_equal(env->lease_reply->error->code, STALE_LEASE);
    sl_wire_env_free(&env);

    /* The next status says fenced under the new epoch; the coordinator's
     * answer with that epoch ends the fence. */
    const Sluice__V1__NodeStatus *s;
    WAIT_STATUS(&s_coord, s, s->member_epoch == e2 && s->fenced);
    s_reply(&s_coord, e2, false);
    int64_t end = sl_deadline_ms(node_test_patience());
    while (sl_node_fenced(s_node) && sl_now() < end)
        sl_sleep_ms(1);
    assert_false(sl_node_fenced(s_node));

    /* The old epoch is refused, the new one served, the jobs redelivered. */
    char t[256];
    s_expect_stale(cons, s_subscribe(cons, "q", 10, e1, 777), t, sizeof t);
    s_subscribe(cons, "q", 10, e2, 778);
    node_dlv_t again[3];
    assert_int_equal(node_peer_deliveries(cons, again, 3, node_test_patience()), 3);
    for (int i = 0; i < 3; i++)
        assert_int_equal(again[i].epoch, sl_node_epoch(s_node));
    node_peer_ack_many(cons, again, 3);
    NODE_WAIT_STATS(prod, "q", st, st.acked == 3 && st.in_flight == 0, node_test_patience());

    /* A late answer to a status sent before the rejoin (rejoin, the same
     * new epoch) must not fence again: the subscriber under e2 stays. */
    node_peer_publish_range(prod, "q", 20, 1, 0);
    node_dlv_t late;
    assert_int_equal(node_peer_deliveries(cons, &late, 1, node_test_patience()), 1);
    s_reply(&s_coord, e2, true);
    assert_int_equal(node_peer_count(cons, ERROR, 3 * s_hb()), 0);
    node_peer_stats(prod, "q", &st);
    assert_int_equal(st.consumers, 1);
    assert_int_equal(st.in_flight, 1);
    node_peer_ack(cons, &late);
    NODE_WAIT_STATS(prod, "q", st, st.acked == 4 && st.in_flight == 0, node_test_patience());
}

static void test_node_cluster__subscribe_member_epoch_checked(void **state)
{
    (void)state;
    const uint64_t e = 0x7700010000ULL;
    s_coord_bind(&s_coord, "tcp://127.0.0.1:0");
    s_start_node(s_coord.endpoint, 0);
    s_join(e);
    node_peer_t *prod = node_fx_peer();
    node_peer_t *cons = node_fx_peer();
    node_peer_publish_range(prod, "q", 1, 2, 0);

    char text[256];
    s_expect_stale(cons, s_subscribe(cons, "q", 5, e + 1, 41), text, sizeof text);
    assert_non_null(strstr(text, "'q'"));
    assert_int_equal(node_peer_count(cons, DELIVER, 3 * s_hb()), 0);
    Sluice__V1__QueueStats st;
    node_peer_stats(prod, "q", &st);
    assert_int_equal(st.consumers, 0);

    s_subscribe(cons, "q", 1, e, 42);
    node_dlv_t d[2];
    assert_int_equal(node_peer_deliveries(cons, d, 1, node_test_patience()), 1);
    /* 0: not checked (standalone clients). */
    node_peer_t *plain = node_fx_peer();
    s_subscribe(plain, "q", 1, 0, 43);
    assert_int_equal(node_peer_deliveries(plain, &d[1], 1, node_test_patience()), 1);
    assert_null(node_peer_recv(cons, ERROR, 0, s_hb()));
    assert_null(node_peer_recv(plain, ERROR, 0, s_hb()));
}

static void test_node_cluster__serves_without_coordinator(void **state)
{
    (void)state;
    s_coord_absent(&s_coord);
    s_start_node(s_coord.endpoint, 0);
    node_peer_t *prod = node_fx_peer();
    node_peer_t *cons = node_fx_peer();
    sl_sleep_ms(5 * s_hb()); /* past the point the coordinator counts as lost */
    node_peer_publish_range(prod, "q", 1, 20, 0);
    SL_ASSERT_OK(node_peer_subscribe(cons, "q", 20));
    node_dlv_t d[20];
    assert_int_equal(node_peer_deliveries(cons, d, 20, node_test_patience()), 20);
    node_peer_ack_many(cons, d, 20);
    Sluice__V1__QueueStats st;
    NODE_WAIT_STATS(prod, "q", st, st.acked == 20 && st.depth == 0, node_test_patience());
    assert_int_equal(sl_node_member_epoch(s_node), 0);
    assert_false(sl_node_fenced(s_node));
}

static void test_node_cluster__coordinator_restart(void **state)
{
    (void)state;
    const uint64_t e = 0xabc00010000ULL;
    s_coord_bind(&s_coord, "tcp://127.0.0.1:0");
    char ep[64];
    snprintf(ep, sizeof ep, "%s", s_coord.endpoint);
    s_start_node(ep, 0);
    s_join(e);
    s_coord_close(&s_coord);
    sl_sleep_ms(5 * s_hb());
    s_coord_bind(&s_coord, ep); /* the same port */
    const Sluice__V1__NodeStatus *s;
    WAIT_STATUS(&s_coord, s, s->member_epoch == e && !s->fenced);
    /* Still counted per interval after the restart. */
    Sluice__V1__Envelope *env = s_status_ok(&s_coord);
    sl_wire_env_free(&env);
    assert_int_equal(sl_node_member_epoch(s_node), e);
}

/* While the coordinator is absent statuses are dropped, not queued: when
 * it appears it gets at most a few, all of them current. */
static void test_node_cluster__send_queue_bounded(void **state)
{
    (void)state;
    s_coord_absent(&s_coord);
    char ep[64];
    snprintf(ep, sizeof ep, "%s", s_coord.endpoint);
    s_start_node(ep, 0);
    node_peer_t *prod = node_fx_peer();
    node_peer_publish_range(prod, "b", 1, 7, 0);
    sl_sleep_ms(30 * s_hb()); /* 30 statuses come due meanwhile */

    s_coord_bind(&s_coord, ep);
    Sluice__V1__Envelope *env = s_status_ok(&s_coord);
    int64_t t0 = sl_now();
    int got = 0;
    while (env) {
        const Sluice__V1__QueueLoad *l = s_load(env->node_status, "b");
        if (!l || l->depth != 7)
            fail_msg("a status from before the publish was queued");
        got++;
        sl_wire_env_free(&env);
        int64_t left = s_hb() - (int64_t)sl_test_ms_since(t0);
        env = left > 0 ? s_status(&s_coord, left) : NULL;
    }
    /* One interval: the fresh status, plus at most what the small send
     * queue and the hand-over to the cluster thread hold. */
    if (got > 6)
        fail_msg("%d statuses within one interval of the coordinator appearing", got);
}

static void test_node_cluster__advertise(void **state)
{
    (void)state;
    sl_node_opts_t o;
    node_test_opts(&o);
    o.endpoint = "tcp://0.0.0.0:0";
    o.coordinator = "tcp://127.0.0.1:9";
    int err = SL_OK;
    assert_null(sl_node_new(&o, &err));
    assert_int_equal(err, SL_EINVAL);
    assert_non_null(sl_node_cluster_opts_check(&o));
    o.endpoint = "tcp://*:0";
    assert_non_null(sl_node_cluster_opts_check(&o));
    o.coordinator = NULL; /* standalone: a wildcard is fine */
    assert_null(sl_node_cluster_opts_check(&o));

    s_coord_bind(&s_coord, "tcp://127.0.0.1:0");
    o.endpoint = "tcp://0.0.0.0:0";
    o.coordinator = s_coord.endpoint;
    o.advertise = "tcp://node-a.example:7450";
    assert_null(sl_node_cluster_opts_check(&o));
    o.heartbeat_ms = s_hb();
    s_node = node_fx_start(&o);
    Sluice__V1__Envelope *env = s_status_ok(&s_coord);
    assert_string_equal(env->node_status->endpoint, "tcp://node-a.example:7450");
    assert_int_equal(env->node_status->capacity, 100);
    sl_wire_env_free(&env);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_node_cluster__status_every_interval_with_loads,
                                  s_teardown),
        cmocka_unit_test_teardown(test_node_cluster__rates, s_teardown),
        cmocka_unit_test_teardown(test_node_cluster__member_epoch_adopted, s_teardown),
        cmocka_unit_test_teardown(test_node_cluster__rejoin_fences_subscribers, s_teardown),
        cmocka_unit_test_teardown(test_node_cluster__subscribe_member_epoch_checked, s_teardown),
        cmocka_unit_test_teardown(test_node_cluster__serves_without_coordinator, s_teardown),
        cmocka_unit_test_teardown(test_node_cluster__coordinator_restart, s_teardown),
        cmocka_unit_test_teardown(test_node_cluster__send_queue_bounded, s_teardown),
        cmocka_unit_test_teardown(test_node_cluster__advertise, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
