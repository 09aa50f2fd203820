/* reply_backpressure_test.c -- raw DEALER clients of a real node that do
 * not read their replies. A reply is never lost without a trace: a flood
 * of publishes is answered, publish by publish, either by its confirm or
 * by the count in the Error{OVERLOADED} the node sends when it cuts the
 * client off; a well-behaved client is answered promptly meanwhile; and a
 * client that reads slowly but steadily gets every confirm and is never
 * cut. (docs/node.md "Slow readers".) */
#define _GNU_SOURCE
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "sluice/wire.h"
#include "testlib.h"
#include "itest.h"

#define S_QUEUE "bp"
#define S_FLOOD 200000          /* the figure                      */
#define S_HWM 100000            /* the node's ZMQ_SNDHWM (sl_wire_router_bind) */

/* The node the issue ran: a small queue under block, few waiting publishes,
 * so most publishes are answered at once (REJECTED full). */
static void s_start(it_ctx_t *t, const char *max_frame)
{
    it_node_start(&t->node, (const char *const[]){"--max-length", "1000", "--max-waiting", "1000",
                                                  "--max-frame", max_frame, NULL});
}

/* Generous deadlines, 5 times longer under sanitizers. */
static int64_t s_patience(int64_t ms)
{
    return sl_test_sanitized() ? 5 * ms : ms;
}

/* --- a raw client ------------------------------------------------------- */

static void *s_zctx;
static void *s_socks[4];        /* closed by s_teardown if a test fails     */
static pid_t s_cons;            /* the consumer s_read_all starts           */

/* A DEALER connected to endpoint. A send that cannot go within 10 s
 * fails (the node stopped reading for that long); the small receive
 * buffers keep what waits for this client in the node, not in TCP. */
static void *s_dealer(const char *endpoint)
{
    if (!s_zctx)
        s_zctx = zmq_ctx_new();
    void *s = zmq_socket(s_zctx, ZMQ_DEALER);
    int linger = 0, sndtimeo = 10000, rcvbuf = 65536, rcvhwm = 1000;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(s, ZMQ_SNDTIMEO, &sndtimeo, sizeof sndtimeo);
    zmq_setsockopt(s, ZMQ_RCVBUF, &rcvbuf, sizeof rcvbuf);
    zmq_setsockopt(s, ZMQ_RCVHWM, &rcvhwm, sizeof rcvhwm);
    for (size_t i = 0; i < sizeof s_socks / sizeof *s_socks; i++)
        if (!s_socks[i]) {
            s_socks[i] = s;
            break;
        }
    if (zmq_connect(s, endpoint) != 0)
        fail_msg("zmq_connect %s: %s", endpoint, zmq_strerror(zmq_errno()));
    return s;
}

static void s_close(void **s)
{
    void *sock = *s;
    *s = NULL;
    if (!sock)
        return;
    for (size_t i = 0; i < sizeof s_socks / sizeof *s_socks; i++)
        if (s_socks[i] == sock)
            s_socks[i] = NULL;
    zmq_close(sock);
}

/* Send env; false if it could not go within the socket's send timeout. */
static bool s_send_env(void *s, const Sluice__V1__Envelope *env)
{
    return sl_wire_send(s, NULL, 0, env, 0) == SL_OK;
}

/* Publish job number seq (one job, id "bp-test!" + seq) with corr seq + 1. */
static bool s_publish(void *s, uint64_t seq)
{
    uint8_t id[16] = "bp-test!";
    for (int i = 0; i < 8; i++)
        id[8 + i] = (uint8_t)(seq >> (56 - 8 * i));
    Sluice__V1__Job j = SLUICE__V1__JOB__INIT;
    j.id.data = id;
    j.id.len = sizeof id;
    j.queue = S_QUEUE;
    j.payload.data = (uint8_t *)"x";
    j.payload.len = 1;
    Sluice__V1__Job *jp = &j;
    Sluice__V1__Publish p = SLUICE__V1__PUBLISH__INIT;
    p.n_jobs = 1;
    p.jobs = &jp;
    Sluice__V1__Envelope env = SLUICE__V1__ENVELOPE__INIT;
    env.corr = seq + 1;
    env.body_case = SLUICE__V1__ENVELOPE__BODY_PUBLISH;
    env.publish = &p;
    return s_send_env(s, &env);
}

static bool s_heartbeat(void *s)
{
    Sluice__V1__Heartbeat hb = SLUICE__V1__HEARTBEAT__INIT;
    Sluice__V1__Envelope env = SLUICE__V1__ENVELOPE__INIT;
    env.body_case = SLUICE__V1__ENVELOPE__BODY_HEARTBEAT;
    env.heartbeat = &hb;
    return s_send_env(s, &env);
}

/* The next envelope within timeout_ms (0: only one already waiting), or
 * NULL. Caller frees (sl_wire_env_free). */
static Sluice__V1__Envelope *s_recv(void *s, int timeout_ms)
{
    zmq_pollitem_t pi = {.socket = s, .events = ZMQ_POLLIN};
    if (zmq_poll(&pi, 1, timeout_ms) <= 0)
        return NULL;
    sl_wire_msg_t m;
    int rc = sl_wire_try_recv(s, false, 0, &m);
    if (rc == SL_EAGAIN)
        return NULL;
    if (rc != SL_OK)
        fail_msg("undecodable reply from the node: %s", sl_err_name(rc));
    Sluice__V1__Envelope *env = m.env;
    m.env = NULL;
    sl_wire_msg_release(&m);
    return env;
}

/* --- what a flooding client was told ----------------------------------- */

/* The confirms a client got, one per publish at most, and what the node's
 * Error{OVERLOADED} envelopes said it discarded. */
typedef struct {
    uint64_t sent;
    uint8_t *confirmed;         /* per publish: confirms received          */
    uint64_t confirms;
    uint64_t accepted, rejected;
    uint64_t overloaded;        /* Error{OVERLOADED} received              */
    uint64_t lost_replies, lost_requests;
    int64_t last_at;            /* it_mono_ms() of the last envelope       */
} s_tally_t;

static void s_tally_init(s_tally_t *t, uint64_t cap)
{
    memset(t, 0, sizeof *t);
    t->confirmed = calloc(cap, 1);
    assert_non_null(t->confirmed);
}

static uint64_t s_accounted(const s_tally_t *t)
{
    return t->confirms + t->lost_replies + t->lost_requests;
}

/* Take in one envelope; fails on anything a publisher should not get. */
static void s_tally(s_tally_t *t, Sluice__V1__Envelope *env)
{
    t->last_at = it_mono_ms();
    switch (env->body_case) {
    case SLUICE__V1__ENVELOPE__BODY_HEARTBEAT:
        break;
    case SLUICE__V1__ENVELOPE__BODY_CONFIRM: {
        if (env->corr == 0 || env->corr > t->sent)
            fail_msg("confirm for corr %" PRIu64 ", only %" PRIu64 " sent", env->corr, t->sent);
        if (t->confirmed[env->corr - 1]++)
            fail_msg("two confirms for corr %" PRIu64, env->corr);
        assert_int_equal(env->confirm->n_confirms, 1);
        t->confirms++;
        if (env->confirm->confirms[0]->status == SLUICE__V1__JOB_CONFIRM__STATUS__ACCEPTED)
            t->accepted++;
        else
            t->rejected++;
        break;
    }
    case SLUICE__V1__ENVELOPE__BODY_ERROR: {
        Sluice__V1__Error *e = env->error;
        if (e->code != SLUICE__V1__ERROR__CODE__OVERLOADED)
            fail_msg("error %d '%s'", e->code, e->text);
        const char *p = strstr(e->text, ": ");
        uint64_t replies, requests;
        if (!p || sscanf(p, ": %" SCNu64 " replies and %" SCNu64 " requests", &replies,
                         &requests) != 2)
            fail_msg("OVERLOADED without counts: '%s'", e->text);
        print_message("OVERLOADED after %" PRIu64 " confirms: '%s'\n", t->confirms, e->text);
        t->overloaded++;
        t->lost_replies += replies;
        t->lost_requests += requests;
        break;
    }
    default:
        fail_msg("a publisher got %s", sl_wire_kind_name(env->body_case));
    }
    sl_wire_env_free(&env);
}

/* Read what s has been sent, heartbeating every second as clients do,
 * until every publish is accounted for (confirmed or counted in an
 * OVERLOADED) or timeout_ms passes. A consumer started on the first call
 * frees the publishes that wait for room in the queue. Returns whether
 * everything was accounted for. */
static bool s_read_all(it_ctx_t *t, void *s, s_tally_t *tl, int64_t timeout_ms)
{
    char rec[PATH_MAX];
    if (!s_cons)
        s_cons = it_consumer(t->node.endpoint, S_QUEUE, it_path(rec, "consumer"),
                           (const char *const[]){"--concurrency", "64", NULL});
    int64_t end = it_mono_ms() + timeout_ms, beat = 0;
    while (s_accounted(tl) < tl->sent && it_mono_ms() < end) {
        if (it_mono_ms() >= beat) {
            if (!s_heartbeat(s))
                fail_msg("heartbeat not sent within 10 s");
            beat = it_mono_ms() + 1000;
        }
        Sluice__V1__Envelope *env = s_recv(s, 100);
        if (env)
            s_tally(tl, env);
    }
    print_message("sent %" PRIu64 ": %" PRIu64 " confirms (%" PRIu64 " accepted, %" PRIu64
                  " rejected), %" PRIu64 " OVERLOADED: %" PRIu64 " replies and %" PRIu64
                  " requests discarded\n",
                  tl->sent, tl->confirms, tl->accepted, tl->rejected, tl->overloaded,
                  tl->lost_replies, tl->lost_requests);
    return s_accounted(tl) == tl->sent;
}

/* Nothing more arrives within quiet_ms (beyond heartbeats). */
static void s_expect_quiet(void *s, s_tally_t *tl, int quiet_ms)
{
    int64_t end = it_mono_ms() + quiet_ms;
    uint64_t before = s_accounted(tl);
    while (it_mono_ms() < end) {
        Sluice__V1__Envelope *env = s_recv(s, 50);
        if (env)
            s_tally(tl, env);
    }
    if (s_accounted(tl) != before)
        fail_msg("%" PRIu64 " more publishes answered after all %" PRIu64 " were",
                 s_accounted(tl) - before, tl->sent);
}

/* --- tests -------------------------------------------------------------- */

/* Fails if any of 200,000 publishes, sent without reading a reply, is
 * neither confirmed nor counted in an Error{OVERLOADED} (the ROUTER
 * dropping replies at its high-water mark, as it did: some 50,000 were
 * lost), if a publish is both confirmed and counted (more answers than
 * publishes), or if the cut discarded what ZeroMQ had already queued.
 * (The node's bound, 4 MiB here, is some 6,000 publishes: beyond what
 * ZeroMQ and TCP buffer, it cuts the client off.) */
static void test_reply_backpressure__flood_every_publish_confirmed_or_counted(void **state)
{
    it_ctx_t *t = *state;
    s_start(t, "1m");
    void *s = s_dealer(t->node.endpoint);
    s_tally_t tl;
    s_tally_init(&tl, S_FLOOD);
    for (uint64_t i = 0; i < S_FLOOD; i++) {
        if (!s_publish(s, i))
            fail_msg("publish %" PRIu64 " not sent within 10 s", i);
        tl.sent++;
    }
    if (!s_read_all(t, s, &tl, s_patience(60000)))
        fail_msg("%" PRIu64 " of %" PRIu64 " publishes neither confirmed nor counted as "
                 "discarded",
                 tl.sent - s_accounted(&tl), tl.sent);
    s_expect_quiet(s, &tl, 500);
    assert_true(tl.confirms >= S_HWM); /* ZeroMQ's pipe still delivers */
    s_close(&s);
    free(tl.confirmed);
    t->passed = true;
}

typedef struct {
    const char *endpoint;
    void *sock;
    s_tally_t tl;
    _Atomic bool failed;
    _Atomic bool done;
} s_flood_t;

/* Publish without reading for 3 s and at least 4 x S_HWM publishes (at
 * most 2,000,000, and 60 s). */
static void *s_flood_main(void *arg)
{
    s_flood_t *f = arg;
    int64_t start = it_mono_ms();
    for (uint64_t i = 0; i < 2000000 && it_mono_ms() < start + 60000 &&
                         (it_mono_ms() < start + 3000 || i < 4 * S_HWM);
         i++) {
        if (!s_publish(f->sock, i)) {
            atomic_store(&f->failed, true);
            break;
        }
        f->tl.sent++;
    }
    atomic_store(&f->done, true);
    return NULL;
}

/* STATS over a raw DEALER; returns the round trip in ms, or -1 if no
 * reply within 5 s. */
static int64_t s_stats_rtt(void *s, uint64_t corr)
{
    Sluice__V1__Admin a = SLUICE__V1__ADMIN__INIT;
    a.op = SLUICE__V1__ADMIN__OP__STATS;
    a.queue = S_QUEUE;
    Sluice__V1__Envelope env = SLUICE__V1__ENVELOPE__INIT;
    env.corr = corr;
    env.body_case = SLUICE__V1__ENVELOPE__BODY_ADMIN;
    env.admin = &a;
    int64_t t0 = it_mono_ms(), end = t0 + 5000;
    if (!s_send_env(s, &env))
        return -1;
    while (it_mono_ms() < end) {
        Sluice__V1__Envelope *r = s_recv(s, 100);
        if (!r)
            continue;
        bool mine = r->body_case == SLUICE__V1__ENVELOPE__BODY_ADMIN_REPLY && r->corr == corr;
        sl_wire_env_free(&r);
        if (mine)
            return it_mono_ms() - t0;
    }
    return -1;
}

/* Fails if a well-behaved client waits a second or more for a STATS reply
 * while another floods the node without reading for 3 s (400,000
 * publishes or more: the flooder is cut off) because the socket thread
 * blocked on, or was kept busy by, the flooder; or if the flooder's
 * publishes are not all accounted for afterwards. */
static void test_reply_backpressure__others_served_while_one_floods(void **state)
{
    it_ctx_t *t = *state;
    s_start(t, "1m");
    s_flood_t f = {.endpoint = t->node.endpoint, .sock = s_dealer(t->node.endpoint)};
    s_tally_init(&f.tl, 2000000);
    void *good = s_dealer(t->node.endpoint);
    assert_true(s_stats_rtt(good, 1) >= 0); /* connected, the queue may not exist yet */

    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, s_flood_main, &f), 0);
    int64_t worst = 0, n = 0;
    for (uint64_t corr = 2; !atomic_load(&f.done); corr++, n++) {
        int64_t rtt = s_stats_rtt(good, corr);
        if (rtt < 0)
            fail_msg("STATS %" PRIu64 " unanswered within 5 s during the flood", corr);
        worst = rtt > worst ? rtt : worst;
        it_sleep_ms(20);
    }
    pthread_join(th, NULL);
    print_message("%" PRId64 " STATS round trips during the flood of %" PRIu64
                  " publishes, the slowest %" PRId64 " ms\n",
                  n, f.tl.sent, worst);
    assert_false(atomic_load(&f.failed));
    assert_true(n >= 10);
    if (worst >= 1000)
        fail_msg("a STATS round trip took %" PRId64 " ms during the flood", worst);
    /* The flooder was held back and cut off, not the node. */
    assert_true(f.tl.sent >= 4 * S_HWM);
    if (!s_read_all(t, f.sock, &f.tl, s_patience(90000)))
        fail_msg("%" PRIu64 " of %" PRIu64 " publishes neither confirmed nor counted",
                 f.tl.sent - s_accounted(&f.tl), f.tl.sent);
    assert_true(f.tl.overloaded >= 1);
    assert_true(s_stats_rtt(good, UINT64_MAX) >= 0);
    s_close(&f.sock);
    s_close(&good);
    free(f.tl.confirmed);
    t->passed = true;
}

/* Fails if a client that keeps 150,000 publishes outstanding and reads
 * its replies slowly but steadily (up to 1,000 per 10 ms) loses any
 * confirm or is cut off. ZeroMQ's pipe holds 100,000 of its replies; the
 * rest, up to 50,000 replies and parked publishes (~35 MB), wait in the
 * node, under its bound (4 max-frames: 64 MiB with max-frame 16m). The
 * node before this bound existed dropped some 60,000 of these confirms. */
static void test_reply_backpressure__slow_steady_reader_gets_every_confirm(void **state)
{
    enum { N = 300000, WINDOW = 150000, STEP = 1000 };
    it_ctx_t *t = *state;
    s_start(t, "16m");
    void *s = s_dealer(t->node.endpoint);
    s_tally_t tl;
    s_tally_init(&tl, N);
    int64_t end = it_mono_ms() + s_patience(120000);
    while (tl.sent < N) {
        if (it_mono_ms() > end)
            fail_msg("%" PRIu64 " of %d publishes sent in time", tl.sent, N);
        while (tl.sent < N && tl.sent - s_accounted(&tl) < WINDOW) {
            if (!s_publish(s, tl.sent))
                fail_msg("publish %" PRIu64 " not sent within 10 s", tl.sent);
            tl.sent++;
        }
        /* Slowly: up to STEP replies, then a pause. */
        for (int i = 0; i < STEP; i++) {
            Sluice__V1__Envelope *env = s_recv(s, 0);
            if (!env)
                break;
            s_tally(&tl, env);
        }
        it_sleep_ms(10);
    }
    if (!s_read_all(t, s, &tl, s_patience(60000)))
        fail_msg("%" PRIu64 " of %" PRIu64 " publishes unanswered", tl.sent - s_accounted(&tl),
                 tl.sent);
    s_expect_quiet(s, &tl, 500);
    assert_int_equal(tl.overloaded, 0);
    assert_int_equal(tl.confirms, N);
    s_close(&s);
    free(tl.confirmed);
    t->passed = true;
}

/* Fails if the node stops answering, or dies, when a client that makes it
 * hold a backlog (200,000 publishes: some 50,000 beyond what ZeroMQ and
 * TCP buffer, under the bound) disconnects without reading: the node
 * must drop what it holds for a peer that is gone and go on. */
static void test_reply_backpressure__backlog_of_departed_peer_dropped(void **state)
{
    it_ctx_t *t = *state;
    s_start(t, "16m"); /* a bound of 64 MiB: held, not cut off */
    void *s = s_dealer(t->node.endpoint);
    for (uint64_t i = 0; i < S_FLOOD; i++)
        if (!s_publish(s, i))
            fail_msg("publish %" PRIu64 " not sent within 10 s", i);
    s_close(&s);
    void *good = s_dealer(t->node.endpoint);
    /* The node finds the peer gone at its next retry, drops the backlog
     * and works through the parked publishes, whose replies go nowhere. */
    for (uint64_t corr = 1; corr <= 10; corr++) {
        int64_t rtt = s_stats_rtt(good, corr);
        if (rtt < 0 || rtt >= 1000)
            fail_msg("STATS %" PRIu64 " after the departure: %" PRId64 " ms", corr, rtt);
        it_sleep_ms(50);
    }
    assert_int_equal(it_wait_exit(t->node.pid, 0), -1);
    /* A new connection is served from scratch. */
    void *again = s_dealer(t->node.endpoint);
    s_tally_t tl;
    s_tally_init(&tl, 1);
    assert_true(s_publish(again, 0));
    tl.sent = 1;
    if (!s_read_all(t, again, &tl, s_patience(10000)))
        fail_msg("a new client's publish is unanswered");
    s_close(&again);
    s_close(&good);
    free(tl.confirmed);
    t->passed = true;
}

static int s_teardown(void **state)
{
    for (size_t i = 0; i < sizeof s_socks / sizeof *s_socks; i++)
        s_close(&s_socks[i]);
    int rc = it_teardown(state); /* kills the consumer */
    s_cons = 0;
    if (s_zctx)
        zmq_ctx_term(s_zctx);
    s_zctx = NULL;
    return rc;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_reply_backpressure__flood_every_publish_confirmed_or_counted, it_setup,
            s_teardown),
        cmocka_unit_test_setup_teardown(test_reply_backpressure__others_served_while_one_floods,
                                        it_setup, s_teardown),
        cmocka_unit_test_setup_teardown(
            test_reply_backpressure__slow_steady_reader_gets_every_confirm, it_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_reply_backpressure__backlog_of_departed_peer_dropped,
                                        it_setup, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
