/* client_cluster_test.c -- libsluice in cluster mode. The coordinator is
 * played by a ZeroMQ ROUTER in the test (a protocol peer: it records what
 * the client sends and answers what the test tells it to); the data path
 * runs on real embedded nodes. Some cases also play a node with a ROUTER
 * (clients/testsupport/testpeer.h), to see exactly what the client sends
 * it: a Subscribe to refuse with STALE_EPOCH, a publish that must not
 * arrive. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "testlib.h"
#include "node_peer.h"
#include "sluice/wire.h"
#include "testclient.h"
#include "testpeer.h"

#define S_HB_MS 100 /* the client's heartbeat, and the peers' interval */

/* --- the coordinator's messages ---------------------------------------- */

/* The real nodes of these tests are standalone: their member epoch is 0,
 * and they refuse a Subscribe naming any other, so assignments to them
 * carry 0. */
typedef struct {
    const char *id;
    const char *endpoint;
    uint64_t depth;
    uint64_t member_epoch;
    uint32_t share;
} s_route_t;

static void s_refs(const s_route_t *rs, size_t n, Sluice__V1__NodeRef *refs)
{
    assert_true(n <= 8);
    for (size_t i = 0; i < n; i++) {
        sluice__v1__node_ref__init(&refs[i]);
        refs[i].node_id = (char *)rs[i].id;
        refs[i].endpoint = (char *)rs[i].endpoint;
        refs[i].member_epoch = rs[i].member_epoch;
        refs[i].share = rs[i].share;
    }
}

static void s_send_table(tpeer_t *coord, const char *queue, uint64_t version,
                         const s_route_t *rs, size_t n)
{
    Sluice__V1__NodeRef refs[8];
    Sluice__V1__Route routes[8];
    Sluice__V1__Route *ptrs[8];
    s_refs(rs, n, refs);
    for (size_t i = 0; i < n; i++) {
        sluice__v1__route__init(&routes[i]);
        routes[i].node = &refs[i];
        routes[i].depth = rs[i].depth;
        routes[i].capacity = 100;
        ptrs[i] = &routes[i];
    }
    Sluice__V1__RouteTable rt = SLUICE__V1__ROUTE_TABLE__INIT;
    rt.queue = (char *)queue;
    rt.version = version;
    rt.routes = ptrs;
    rt.n_routes = n;
    rt.interval_ms = S_HB_MS;
    Sluice__V1__Envelope env = SLUICE__V1__ENVELOPE__INIT;
    env.body_case = SLUICE__V1__ENVELOPE__BODY_ROUTE_TABLE;
    env.route_table = &rt;
    tpeer_send(coord, &env);
}

static void s_send_assignment(tpeer_t *coord, const char *queue, uint64_t epoch,
                              const s_route_t *rs, size_t n)
{
    Sluice__V1__NodeRef refs[8];
    Sluice__V1__NodeRef *ptrs[8];
    s_refs(rs, n, refs);
    for (size_t i = 0; i < n; i++)
        ptrs[i] = &refs[i];
    Sluice__V1__Assignment a = SLUICE__V1__ASSIGNMENT__INIT;
    a.queue = (char *)queue;
    a.epoch = epoch;
    a.nodes = ptrs;
    a.n_nodes = n;
    a.interval_ms = S_HB_MS;
    Sluice__V1__Envelope env = SLUICE__V1__ENVELOPE__INIT;
    env.body_case = SLUICE__V1__ENVELOPE__BODY_ASSIGNMENT;
    env.assignment = &a;
    tpeer_send(coord, &env);
}

/* --- fixture: two embedded nodes, the coordinator, the client ---------- */

static sl_node_t *s_nodes[2];
static sl_client_t *s_direct[2]; /* plain clients to look at each node */
static tpeer_t *s_coord, *s_fake;
static sl_client_t *s_client;

/* Start n1 and n2; n1 holds at most n1_max_length jobs (0: the default). */
/* Start node i ("n1", "n2") and its plain client: on endpoint (NULL: a
 * free port), with max_length and heartbeat_ms (0: the defaults). */
static void s_node_start(int i, sl_overflow_t overflow, uint64_t max_length, int heartbeat_ms,
                         const char *endpoint)
{
    sl_node_opts_t o;
    node_test_opts(&o);
    o.node_id = i == 0 ? "n1" : "n2";
    o.overflow = overflow;
    if (max_length)
        o.max_length = max_length;
    if (heartbeat_ms)
        o.heartbeat_ms = heartbeat_ms;
    if (endpoint)
        o.endpoint = endpoint;
    s_nodes[i] = node_test_start(&o);
    s_direct[i] = tc_client(sl_node_endpoint(s_nodes[i]));
}

static void s_node_stop(int i)
{
    sl_client_destroy(&s_direct[i]);
    sl_node_destroy(&s_nodes[i]);
}

static void s_start_nodes(sl_overflow_t overflow, uint64_t n1_max_length)
{
    for (int i = 0; i < 2; i++)
        s_node_start(i, overflow, i == 0 ? n1_max_length : 0, 0, NULL);
}

static const char *s_ep(int i)
{
    return sl_node_endpoint(s_nodes[i]);
}

static sl_client_t *s_cluster_client(const char *consumer_id)
{
    s_coord = tpeer_new(true);
    sl_client_opts_t o = {.coordinator = s_coord->endpoint, .heartbeat_ms = S_HB_MS,
                          .consumer_id = consumer_id};
    int err = SL_OK;
    s_client = sl_client_new(&o, &err);
    if (!s_client)
        fail_msg("sl_client_new: %s", sl_err_name(err));
    SL_ASSERT_OK(sl_client_wait_connected(s_client, sl_deadline_ms(tc_patience_ms())));
    return s_client;
}

static int s_teardown(void **state)
{
    (void)state;
    sl_client_destroy(&s_client);
    for (int i = 0; i < 2; i++) {
        sl_client_destroy(&s_direct[i]);
        sl_node_destroy(&s_nodes[i]);
    }
    tpeer_destroy(&s_coord);
    tpeer_destroy(&s_fake);
    return 0;
}

/* Jobs of queue stored on node i (published, whether or not done). */
static uint64_t s_published(int i, const char *queue)
{
    sl_queue_stats_t *qs = NULL;
    size_t n = 0;
    int rc = sl_client_stats(s_direct[i], queue, &qs, &n, sl_deadline_ms(tc_patience_ms()));
    if (rc == SL_ENOTFOUND)
        return 0;
    SL_ASSERT_OK(rc);
    uint64_t v = qs[0].published;
    free(qs);
    return v;
}

/* Stats of queue on node i; a queue the node does not have yet is all
 * zeros. */
static sl_queue_stats_t s_stats(int i, const char *queue)
{
    sl_queue_stats_t *qs = NULL, out = {0};
    size_t n = 0;
    int rc = sl_client_stats(s_direct[i], queue, &qs, &n, sl_deadline_ms(tc_patience_ms()));
    if (rc == SL_ENOTFOUND)
        return out;
    SL_ASSERT_OK(rc);
    out = qs[0];
    free(qs);
    return out;
}

#define S_WAIT_STATS(i, queue, cond) TC_WAIT_TRUE(({ sl_queue_stats_t st = s_stats((i), (queue)); (cond); }))

static sl_confirm_status_t s_publish(const char *queue, const char *key)
{
    sl_job_t j = {.queue = queue, .payload = "x", .payload_len = 1, .routing_key = key};
    sl_confirm_t cf;
    SL_ASSERT_OK(sl_client_publish(s_client, &j, 1, &cf, sl_deadline_ms(tc_patience_ms())));
    return cf.status;
}

/* Answer the client's first RouteRequest for queue with both nodes. */
static void s_route_both(const char *queue, uint64_t version)
{
    size_t at = 0;
    tpeer_wait(s_coord, &at, SLUICE__V1__ENVELOPE__BODY_ROUTE_REQUEST, queue);
    s_route_t rs[] = {{"n1", s_ep(0), 0, 11, 0}, {"n2", s_ep(1), 0, 12, 0}};
    s_send_table(s_coord, queue, version, rs, 2);
}

static sl_publish_result_t *s_take_result(sl_chan_t **promise)
{
    void *v = NULL;
    SL_ASSERT_OK(sl_take_until(*promise, &v, sl_deadline_ms(tc_patience_ms())));
    sl_chan_destroy(promise);
    assert_non_null(v);
    return v;
}

/* --- producing ---------------------------------------------------------- */

static void test_client_cluster__least_loaded_spreads_publishes_over_the_nodes(void **state)
{
    (void)state;
    s_start_nodes(SL_OVERFLOW_BLOCK, 0);
    s_cluster_client(NULL);
    /* A publish before any table waits for one (and asks for it). */
    sl_job_t j = {.queue = "spread", .payload = "first", .payload_len = 5};
    int err = SL_OK;
    sl_chan_t *p = sl_client_publish_async(s_client, &j, 1, sl_deadline_ms(tc_patience_ms()), &err);
    assert_non_null(p);
    s_route_both("spread", 1);
    sl_publish_result_t *res = s_take_result(&p);
    SL_ASSERT_OK(res->status);
    assert_int_equal(res->confirms[0].status, SL_CONFIRM_ACCEPTED);
    sl_publish_result_destroy(&res);
    for (int i = 0; i < 20; i++)
        assert_int_equal(s_publish("spread", NULL), SL_CONFIRM_ACCEPTED);
    uint64_t a = s_published(0, "spread"), b = s_published(1, "spread");
    assert_int_equal(a + b, 21);
    /* counting what it sent itself, the client alternates: 10/11 */
    assert_true(a >= 10 && b >= 10);
    sl_client_counters_t k;
    sl_client_counters(s_client, &k);
    assert_true(k.connected);
    assert_int_equal(k.nodes, 2);
    assert_int_equal(k.routes, 2);
    assert_int_equal(k.route_tables, 1);
    assert_int_equal(k.failovers, 0);
    assert_int_equal(k.unrouted, 0);
}

static void test_client_cluster__a_loaded_node_gets_fewer_jobs(void **state)
{
    (void)state;
    s_start_nodes(SL_OVERFLOW_BLOCK, 0);
    s_cluster_client(NULL);
    size_t at = 0;
    sl_job_t j = {.queue = "skew", .payload = "x", .payload_len = 1};
    int err = SL_OK;
    sl_chan_t *p = sl_client_publish_async(s_client, &j, 1, sl_deadline_ms(tc_patience_ms()), &err);
    assert_non_null(p);
    tpeer_wait(s_coord, &at, SLUICE__V1__ENVELOPE__BODY_ROUTE_REQUEST, "skew");
    s_route_t rs[] = {{"n1", s_ep(0), 30, 1, 0}, {"n2", s_ep(1), 0, 1, 0}};
    s_send_table(s_coord, "skew", 1, rs, 2);
    sl_publish_result_t *res = s_take_result(&p);
    SL_ASSERT_OK(res->status);
    sl_publish_result_destroy(&res);
    for (int i = 0; i < 39; i++)
        assert_int_equal(s_publish("skew", NULL), SL_CONFIRM_ACCEPTED);
    /* n1 reported 30 waiting: n2 takes jobs until it has as many */
    assert_int_equal(s_published(1, "skew"), 35);
    assert_int_equal(s_published(0, "skew"), 5);
}

static int s_node_of_key(const char *queue, const char *key)
{
    uint64_t before[2] = {s_published(0, queue), s_published(1, queue)};
    assert_int_equal(s_publish(queue, key), SL_CONFIRM_ACCEPTED);
    uint64_t after[2] = {s_published(0, queue), s_published(1, queue)};
    assert_int_equal(after[0] - before[0] + after[1] - before[1], 1);
    return after[0] > before[0] ? 0 : 1;
}

static void test_client_cluster__routing_key_sticks_to_one_node_and_moves_only_its_keys(
    void **state)
{
    (void)state;
    s_start_nodes(SL_OVERFLOW_BLOCK, 0);
    s_cluster_client(NULL);
    sl_job_t j = {.queue = "keyed", .payload = "x", .payload_len = 1, .routing_key = "k0"};
    int err = SL_OK;
    sl_chan_t *p = sl_client_publish_async(s_client, &j, 1, sl_deadline_ms(tc_patience_ms()), &err);
    s_route_both("keyed", 1);
    sl_publish_result_t *res = s_take_result(&p);
    SL_ASSERT_OK(res->status);
    sl_publish_result_destroy(&res);

    enum { K = 12 };
    int home[K], on[2] = {0, 0};
    char key[K][8];
    for (int i = 0; i < K; i++) {
        snprintf(key[i], sizeof key[i], "k%d", i);
        home[i] = s_node_of_key("keyed", key[i]);
        on[home[i]]++;
    }
    assert_true(on[0] > 0 && on[1] > 0); /* keys spread over both nodes */
    for (int round = 0; round < 2; round++)
        for (int i = 0; i < K; i++)
            assert_int_equal(s_node_of_key("keyed", key[i]), home[i]);
    /* Loads change: keys do not move. */
    s_route_t skew[] = {{"n1", s_ep(0), 1000, 11, 0}, {"n2", s_ep(1), 0, 12, 0}};
    s_send_table(s_coord, "keyed", 2, skew, 2);
    TC_WAIT_TRUE(({ sl_client_counters_t k; sl_client_counters(s_client, &k); k.route_tables == 2; }));
    for (int i = 0; i < K; i++)
        assert_int_equal(s_node_of_key("keyed", key[i]), home[i]);
    /* n2 leaves: its keys go to n1; n1's stay where they were. */
    s_route_t only1[] = {{"n1", s_ep(0), 0, 11, 0}};
    s_send_table(s_coord, "keyed", 3, only1, 1);
    TC_WAIT_TRUE(({ sl_client_counters_t k; sl_client_counters(s_client, &k); k.routes == 1; }));
    for (int i = 0; i < K; i++)
        assert_int_equal(s_node_of_key("keyed", key[i]), 0);
    /* n2 is back: exactly its old keys return to it. */
    s_route_t both[] = {{"n1", s_ep(0), 0, 11, 0}, {"n2", s_ep(1), 0, 12, 0}};
    s_send_table(s_coord, "keyed", 4, both, 2);
    TC_WAIT_TRUE(({ sl_client_counters_t k; sl_client_counters(s_client, &k); k.routes == 2; }));
    for (int i = 0; i < K; i++)
        assert_int_equal(s_node_of_key("keyed", key[i]), home[i]);
}

/* Hold n1's publishes back: a full `block` queue (max_length 1) confirms
 * nothing until a job leaves it. */
static void s_fill_n1(const char *queue)
{
    assert_int_equal(tc_publish(s_direct[0], queue, "filler"), SL_CONFIRM_ACCEPTED);
}

/* The ids of jobs now ready on node i, taken (and acked) by a plain
 * consumer; fails unless exactly `want` arrive. */
static void s_drain_ids(int i, const char *queue, size_t want, uint8_t (*ids)[SL_ID_LEN])
{
    int err = SL_OK;
    sl_chan_t *ch = sl_client_subscribe(s_direct[i], queue, 64, &err);
    assert_non_null(ch);
    for (size_t k = 0; k < want; k++) {
        void *v = NULL;
        SL_ASSERT_OK(sl_take_until(ch, &v, sl_deadline_ms(tc_patience_ms())));
        sl_delivery_t *d = v;
        memcpy(ids[k], d->id, SL_ID_LEN);
        SL_ASSERT_OK(sl_client_ack(s_direct[i], &d));
    }
    SL_ASSERT_OK(sl_client_unsubscribe(s_direct[i], queue, sl_deadline_ms(tc_patience_ms())));
    sl_chan_destroy(&ch);
}

static bool s_has_id(uint8_t (*ids)[SL_ID_LEN], size_t n, const uint8_t *id)
{
    for (size_t i = 0; i < n; i++)
        if (memcmp(ids[i], id, SL_ID_LEN) == 0)
            return true;
    return false;
}

static void s_failover_case(bool remove_from_table)
{
    s_start_nodes(SL_OVERFLOW_BLOCK, 1);
    s_fill_n1("fo");
    s_cluster_client(NULL);
    size_t at = 0;
    enum { N = 5 };
    sl_job_t jobs[N];
    for (int i = 0; i < N; i++)
        jobs[i] = (sl_job_t){.queue = "fo", .payload = "held", .payload_len = 4};
    int err = SL_OK;
    sl_chan_t *p = sl_client_publish_async(s_client, jobs, N, sl_deadline_ms(tc_patience_ms()), &err);
    assert_non_null(p);
    tpeer_wait(s_coord, &at, SLUICE__V1__ENVELOPE__BODY_ROUTE_REQUEST, "fo");
    s_route_t only1[] = {{"n1", s_ep(0), 0, 11, 0}};
    s_send_table(s_coord, "fo", 1, only1, 1);
    /* The jobs reach n1 and wait there for room. */
    TC_WAIT_TRUE(({
        sl_client_counters_t k;
        sl_client_counters(s_client, &k);
        k.pending == 1;
    }));
    sl_client_counters_t k;
    sl_client_counters(s_client, &k);
    assert_int_equal(k.failovers, 0);
    if (remove_from_table) {
        s_route_t both[] = {{"n1", s_ep(0), 0, 11, 0}, {"n2", s_ep(1), 0, 12, 0}};
        s_send_table(s_coord, "fo", 2, both, 2); /* n2 joins: nothing moves */
        TC_WAIT_TRUE(({ sl_client_counters(s_client, &k); k.routes == 2; }));
        sl_sleep_ms(3 * S_HB_MS);
        sl_client_counters(s_client, &k);
        assert_int_equal(k.failovers, 0);
        s_route_t only2[] = {{"n2", s_ep(1), 0, 12, 0}};
        s_send_table(s_coord, "fo", 3, only2, 1);
    } else {
        /* n1 stops answering (its process is gone); the table still
         * names it: after 3 of its intervals the client gives up on it. */
        s_route_t both[] = {{"n1", s_ep(0), 0, 11, 0}, {"n2", s_ep(1), 0, 12, 0}};
        s_send_table(s_coord, "fo", 2, both, 2);
        TC_WAIT_TRUE(({ sl_client_counters(s_client, &k); k.routes == 2; }));
        sl_node_destroy(&s_nodes[0]);
    }
    sl_publish_result_t *res = s_take_result(&p);
    SL_ASSERT_OK(res->status);
    assert_int_equal(res->n, N);
    for (int i = 0; i < N; i++)
        assert_int_equal(res->confirms[i].status, SL_CONFIRM_ACCEPTED);
    sl_client_counters(s_client, &k);
    assert_int_equal(k.failovers, 1);
    assert_int_equal(k.republished, N);
    /* n2 holds each job once, under the ids the confirms name. */
    assert_int_equal(s_published(1, "fo"), N);
    uint8_t ids[N][SL_ID_LEN];
    s_drain_ids(1, "fo", N, ids);
    for (int i = 0; i < N; i++)
        assert_true(s_has_id(ids, N, res->confirms[i].id));
    sl_publish_result_destroy(&res);
}

static void test_client_cluster__node_removed_from_table_publishes_land_on_the_other(
    void **state)
{
    (void)state;
    s_failover_case(true);
}

static void test_client_cluster__silent_node_publishes_land_on_the_other(void **state)
{
    (void)state;
    s_failover_case(false);
}

static void test_client_cluster__coordinator_gone_publishing_goes_on_with_the_last_table(
    void **state)
{
    (void)state;
    s_start_nodes(SL_OVERFLOW_BLOCK, 0);
    s_cluster_client(NULL);
    sl_job_t j = {.queue = "last", .payload = "x", .payload_len = 1};
    int err = SL_OK;
    sl_chan_t *p = sl_client_publish_async(s_client, &j, 1, sl_deadline_ms(tc_patience_ms()), &err);
    s_route_both("last", 1);
    sl_publish_result_t *res = s_take_result(&p);
    SL_ASSERT_OK(res->status);
    sl_publish_result_destroy(&res);
    /* An empty table (a restarted coordinator in its grace) is ignored. */
    s_send_table(s_coord, "last", 2, NULL, 0);
    sl_sleep_ms(2 * S_HB_MS);
    tpeer_destroy(&s_coord);
    TC_WAIT_TRUE(({ sl_client_counters_t k; sl_client_counters(s_client, &k); !k.connected; }));
    for (int i = 0; i < 20; i++)
        assert_int_equal(s_publish("last", NULL), SL_CONFIRM_ACCEPTED);
    assert_int_equal(s_published(0, "last") + s_published(1, "last"), 21);
    assert_true(s_published(0, "last") >= 10 && s_published(1, "last") >= 10);
    sl_client_counters_t k;
    sl_client_counters(s_client, &k);
    assert_int_equal(k.routes, 2);
    assert_int_equal(k.route_tables, 1);
}

static void test_client_cluster__no_route_waits_until_the_deadline(void **state)
{
    (void)state;
    s_cluster_client(NULL);
    sl_job_t j = {.queue = "nowhere", .payload = "x", .payload_len = 1};
    sl_confirm_t cf;
    int64_t t0 = sl_now();
    SL_ASSERT_ERR(sl_client_publish(s_client, &j, 1, &cf, sl_deadline_ms(300)), SL_ETIMEDOUT);
    assert_true(sl_test_ms_since(t0) >= 290);
    /* it asked, and keeps asking every interval */
    size_t at = 0;
    tpeer_wait(s_coord, &at, SLUICE__V1__ENVELOPE__BODY_ROUTE_REQUEST, "nowhere");
    tpeer_wait(s_coord, &at, SLUICE__V1__ENVELOPE__BODY_ROUTE_REQUEST, "nowhere");
    sl_client_counters_t k;
    sl_client_counters(s_client, &k);
    assert_int_equal(k.unrouted, 0);
    assert_int_equal(k.nodes, 0);
}

/* --- consuming ---------------------------------------------------------- */

static void test_client_cluster__assignment_subscribes_with_member_epoch_and_share(void **state)
{
    (void)state;
    s_start_nodes(SL_OVERFLOW_BLOCK, 0);
    s_fake = tpeer_new(true);
    for (int i = 0; i < 20; i++)
        assert_int_equal(tc_publish(s_direct[0], "work", "job"), SL_CONFIRM_ACCEPTED);
    s_cluster_client("consumer-a");
    int err = SL_OK;
    sl_chan_t *ch = sl_client_subscribe(s_client, "work", 8, &err);
    assert_non_null(ch);
    size_t at = 0;
    const Sluice__V1__Envelope *e =
        tpeer_wait(s_coord, &at, SLUICE__V1__ENVELOPE__BODY_CONSUMER_JOIN, "work");
    assert_string_equal(e->consumer_join->consumer_id, "consumer-a");
    assert_int_equal(e->consumer_join->concurrency, 8);
    assert_int_equal(e->consumer_join->epoch, 0);
    /* n1 gets 3/4 of the concurrency, the fake node f1 the rest */
    s_route_t as[] = {{"n1", s_ep(0), 0, 0, 750}, {"f1", s_fake->endpoint, 0, 77, 250}};
    s_send_assignment(s_coord, "work", 5, as, 2);
    size_t fat = 0;
    e = tpeer_wait(s_fake, &fat, SLUICE__V1__ENVELOPE__BODY_SUBSCRIBE, "work");
    assert_int_equal(e->subscribe->member_epoch, 77);
    assert_int_equal(e->subscribe->credit, 2);
    assert_string_equal(e->subscribe->consumer_id, "consumer-a");
    /* n1 leases exactly its share: 6 of the 20 jobs, to one consumer */
    S_WAIT_STATS(0, "work", st.in_flight == 6);
    sl_queue_stats_t st = s_stats(0, "work");
    assert_int_equal(st.consumers, 1);
    sl_sleep_ms(2 * S_HB_MS);
    st = tc_stats(s_direct[0], "work");
    assert_int_equal(st.in_flight, 6);
    /* the client now names the assignment it runs on */
    for (;;) {
        e = tpeer_wait(s_coord, &at, SLUICE__V1__ENVELOPE__BODY_CONSUMER_JOIN, "work");
        if (e->consumer_join->epoch == 5)
            break;
    }
    sl_client_counters_t k;
    sl_client_counters(s_client, &k);
    assert_int_equal(k.assignment_epoch, 5);
    assert_int_equal(k.assignments, 1);
    assert_int_equal(k.assigned, 2);
    /* take and ack all 20 */
    for (int i = 0; i < 20; i++) {
        void *v = NULL;
        SL_ASSERT_OK(sl_take_until(ch, &v, sl_deadline_ms(tc_patience_ms())));
        sl_delivery_t *d = v;
        SL_ASSERT_OK(sl_client_ack(s_client, &d));
    }
    TC_WAIT_STATS(s_direct[0], "work", st.acked == 20);
    size_t mark = at;
    SL_ASSERT_OK(sl_client_unsubscribe(s_client, "work", sl_deadline_ms(tc_patience_ms())));
    e = tpeer_wait(s_coord, &mark, SLUICE__V1__ENVELOPE__BODY_CONSUMER_LEAVE, "work");
    assert_string_equal(e->consumer_leave->consumer_id, "consumer-a");
    TC_WAIT_STATS(s_direct[0], "work", st.consumers == 0);
    void *v = NULL;
    assert_int_equal(sl_take_until(ch, &v, sl_deadline_ms(tc_patience_ms())), SL_ECLOSED);
    sl_chan_destroy(&ch);
}

typedef struct {
    atomic_int done;
    atomic_int by_node[2];
    sl_client_t *expect;
} s_work_t;

static int s_handler(sl_client_t *client, sl_delivery_t *d, void *arg)
{
    s_work_t *w = arg;
    if (client != w->expect)
        return SL_JOB_FAIL;
    atomic_fetch_add(&w->by_node[d->payload_len == 2 ? 1 : 0], 1);
    atomic_fetch_add(&w->done, 1);
    return SL_JOB_ACK;
}

static void test_client_cluster__reassignment_moves_the_consumer(void **state)
{
    (void)state;
    s_start_nodes(SL_OVERFLOW_BLOCK, 0);
    s_cluster_client(NULL);
    s_work_t w = {.expect = s_client};
    SL_ASSERT_OK(sl_client_consume(s_client, "move", 4, s_handler, &w, 0));
    SL_ASSERT_ERR(sl_client_consume(s_client, "move", 4, s_handler, &w, 0), SL_ESTATE);
    size_t at = 0;
    const Sluice__V1__Envelope *e =
        tpeer_wait(s_coord, &at, SLUICE__V1__ENVELOPE__BODY_CONSUMER_JOIN, "move");
    /* the default id: <hostname>:<pid>:<random hex> */
    char prefix[200];
    char host[128] = "";
    gethostname(host, sizeof host - 1);
    snprintf(prefix, sizeof prefix, "%s:%d:", host, (int)getpid());
    assert_int_equal(strncmp(e->consumer_join->consumer_id, prefix, strlen(prefix)), 0);
    assert_true(strlen(e->consumer_join->consumer_id) > strlen(prefix));

    s_route_t on1[] = {{"n1", s_ep(0), 0, 0, 1000}};
    s_send_assignment(s_coord, "move", 1, on1, 1);
    S_WAIT_STATS(0, "move", st.consumers == 1);
    for (int i = 0; i < 10; i++)
        assert_int_equal(tc_publish(s_direct[0], "move", "1"), SL_CONFIRM_ACCEPTED);
    TC_WAIT_TRUE(atomic_load(&w.done) == 10);

    /* reassigned to n2: n1 is let go, n2 subscribed */
    s_route_t on2[] = {{"n2", s_ep(1), 0, 0, 1000}};
    s_send_assignment(s_coord, "move", 2, on2, 1);
    S_WAIT_STATS(0, "move", st.consumers == 0);
    S_WAIT_STATS(1, "move", st.consumers == 1);
    for (int i = 0; i < 10; i++) {
        assert_int_equal(tc_publish(s_direct[0], "move", "1"), SL_CONFIRM_ACCEPTED);
        assert_int_equal(tc_publish(s_direct[1], "move", "22"), SL_CONFIRM_ACCEPTED);
    }
    TC_WAIT_TRUE(atomic_load(&w.by_node[1]) == 10);
    sl_sleep_ms(2 * S_HB_MS);
    assert_int_equal(atomic_load(&w.by_node[0]), 10); /* none from n1 since */
    assert_int_equal(tc_stats(s_direct[0], "move").depth, 10);
    /* an empty assignment, and a repeat of the current one, change nothing */
    s_send_assignment(s_coord, "move", 3, NULL, 0);
    s_send_assignment(s_coord, "move", 2, on2, 1);
    sl_sleep_ms(2 * S_HB_MS);
    sl_client_counters_t k;
    sl_client_counters(s_client, &k);
    assert_int_equal(k.assignments, 2);
    assert_int_equal(k.assignment_epoch, 2);
    assert_int_equal(tc_stats(s_direct[1], "move").consumers, 1);
    SL_ASSERT_OK(sl_client_unsubscribe(s_client, "move", sl_deadline_ms(tc_patience_ms())));
    TC_WAIT_STATS(s_direct[1], "move", st.consumers == 0);
}

static void test_client_cluster__stale_epoch_asks_the_coordinator_again(void **state)
{
    (void)state;
    s_fake = tpeer_new(true);
    s_cluster_client("consumer-s");
    int err = SL_OK;
    sl_chan_t *ch = sl_client_subscribe(s_client, "st", 4, &err);
    assert_non_null(ch);
    size_t at = 0;
    tpeer_wait(s_coord, &at, SLUICE__V1__ENVELOPE__BODY_CONSUMER_JOIN, "st");
    s_route_t as[] = {{"f1", s_fake->endpoint, 0, 7, 1000}};
    s_send_assignment(s_coord, "st", 9, as, 1);
    size_t fat = 0;
    const Sluice__V1__Envelope *e =
        tpeer_wait(s_fake, &fat, SLUICE__V1__ENVELOPE__BODY_SUBSCRIBE, "st");
    assert_int_equal(e->subscribe->member_epoch, 7);
    assert_int_equal(e->subscribe->credit, 4);
    for (;;) { /* following epoch 9 */
        e = tpeer_wait(s_coord, &at, SLUICE__V1__ENVELOPE__BODY_CONSUMER_JOIN, "st");
        if (e->consumer_join->epoch == 9)
            break;
    }
    /* the node has since been fenced and refuses the subscription */
    Sluice__V1__Error er = SLUICE__V1__ERROR__INIT;
    er.code = SLUICE__V1__ERROR__CODE__STALE_EPOCH;
    er.text = "member epoch 7 is stale";
    Sluice__V1__Envelope env = SLUICE__V1__ENVELOPE__INIT;
    env.body_case = SLUICE__V1__ENVELOPE__BODY_ERROR;
    env.error = &er;
    tpeer_send(s_fake, &env);
    for (;;) { /* asks again with epoch 0 */
        e = tpeer_wait(s_coord, &at, SLUICE__V1__ENVELOPE__BODY_CONSUMER_JOIN, "st");
        if (e->consumer_join->epoch == 0)
            break;
    }
    sl_client_counters_t k;
    sl_client_counters(s_client, &k);
    assert_int_equal(k.stale_epochs, 1);
    /* the new assignment, same node under its new epoch: subscribed again */
    s_route_t again[] = {{"f1", s_fake->endpoint, 0, 8, 1000}};
    s_send_assignment(s_coord, "st", 10, again, 1);
    for (;;) {
        e = tpeer_wait(s_fake, &fat, SLUICE__V1__ENVELOPE__BODY_SUBSCRIBE, "st");
        if (e->subscribe->member_epoch == 8)
            break;
    }
    assert_int_equal(e->subscribe->credit, 4);
    SL_ASSERT_OK(sl_client_unsubscribe(s_client, "st", sl_deadline_ms(tc_patience_ms())));
    sl_chan_destroy(&ch);
}

/* --- nodes that restart ------------------------------------------------ */

/* The cluster client's counters, read now. */
static sl_client_counters_t s_counters(void)
{
    sl_client_counters_t k;
    sl_client_counters(s_client, &k);
    return k;
}

/* A node restarted under the same id on another address (a container
 * restart) and named there by the coordinator: the client connects to the
 * new address, subscribes there and publishes there. */
static void test_client_cluster__node_restarted_on_another_endpoint_is_followed(void **state)
{
    (void)state;
    s_start_nodes(SL_OVERFLOW_BLOCK, 0);
    s_cluster_client("consumer-m");
    s_work_t w = {.expect = s_client};
    SL_ASSERT_OK(sl_client_consume(s_client, "mv", 4, s_handler, &w, 0));
    size_t at = 0;
    tpeer_wait(s_coord, &at, SLUICE__V1__ENVELOPE__BODY_CONSUMER_JOIN, "mv");
    s_route_t both[] = {{"n1", s_ep(0), 0, 0, 500}, {"n2", s_ep(1), 0, 0, 500}};
    s_send_assignment(s_coord, "mv", 1, both, 2);
    S_WAIT_STATS(0, "mv", st.consumers == 1);
    S_WAIT_STATS(1, "mv", st.consumers == 1);
    /* publishing through n1 (n2 looks loaded) */
    sl_job_t j = {.queue = "mv", .payload = "1", .payload_len = 1};
    int err = SL_OK;
    sl_chan_t *p = sl_client_publish_async(s_client, &j, 1, sl_deadline_ms(tc_patience_ms()), &err);
    assert_non_null(p);
    tpeer_wait(s_coord, &at, SLUICE__V1__ENVELOPE__BODY_ROUTE_REQUEST, "mv");
    s_route_t t1[] = {{"n1", s_ep(0), 0, 0, 0}, {"n2", s_ep(1), 1000000, 0, 0}};
    s_send_table(s_coord, "mv", 1, t1, 2);
    sl_publish_result_t *res = s_take_result(&p);
    SL_ASSERT_OK(res->status);
    sl_publish_result_destroy(&res);
    TC_WAIT_TRUE(atomic_load(&w.done) == 1);

    char old_ep[64];
    snprintf(old_ep, sizeof old_ep, "%s", s_ep(0));
    s_node_stop(0);
    s_node_start(0, SL_OVERFLOW_BLOCK, 0, 0, NULL);
    assert_string_not_equal(s_ep(0), old_ep);
    s_route_t moved[] = {{"n1", s_ep(0), 0, 0, 500}, {"n2", s_ep(1), 0, 0, 500}};
    s_send_assignment(s_coord, "mv", 2, moved, 2);
    s_route_t t2[] = {{"n1", s_ep(0), 0, 0, 0}, {"n2", s_ep(1), 1000000, 0, 0}};
    s_send_table(s_coord, "mv", 2, t2, 2);
    /* subscribed at the new address, and publishing there */
    S_WAIT_STATS(0, "mv", st.consumers == 1);
    TC_WAIT_TRUE(s_counters().nodes_up == 2);
    for (int i = 0; i < 10; i++)
        assert_int_equal(s_publish("mv", NULL), SL_CONFIRM_ACCEPTED);
    S_WAIT_STATS(0, "mv", st.published == 10 && st.acked == 10);
    TC_WAIT_TRUE(atomic_load(&w.done) == 11);
    assert_int_equal(s_counters().nodes, 2);
    SL_ASSERT_OK(sl_client_unsubscribe(s_client, "mv", sl_deadline_ms(tc_patience_ms())));
}

/* Publish n one-byte jobs (filled into the caller's jobs[]) to queue in
 * one call; the promise. */
static sl_chan_t *s_publish_n(const char *queue, sl_job_t *jobs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        jobs[i] = (sl_job_t){.queue = queue, .payload = "q", .payload_len = 1};
    int err = SL_OK;
    sl_chan_t *p = sl_client_publish_async(s_client, jobs, n, sl_deadline_ms(tc_patience_ms()),
                                           &err);
    assert_non_null(p);
    return p;
}

/* A node dies while a publish to it waits in its connection's queue; the
 * client sends the jobs elsewhere and the node comes back on the same
 * port: what was queued for it must never reach it (this fake node would
 * see it arrive; a real one would store it and run it a second time). */
static void test_client_cluster__publish_queued_for_a_dead_node_never_reaches_it_back(
    void **state)
{
    (void)state;
    s_start_nodes(SL_OVERFLOW_BLOCK, 0);
    /* a long interval: it is the table, not silence, that moves the jobs */
    s_fake = tpeer_new_at(true, NULL, 5000);
    char fep[64];
    snprintf(fep, sizeof fep, "%s", s_fake->endpoint);
    s_cluster_client(NULL);
    sl_job_t jobs[64];
    sl_chan_t *p = s_publish_n("qd", jobs, 1);
    size_t at = 0, fat = 0;
    tpeer_wait(s_coord, &at, SLUICE__V1__ENVELOPE__BODY_ROUTE_REQUEST, "qd");
    s_route_t t1[] = {{"f1", fep, 0, 0, 0}, {"n2", s_ep(1), 1000000, 0, 0}};
    s_send_table(s_coord, "qd", 1, t1, 2);
    const Sluice__V1__Envelope *e =
        tpeer_wait(s_fake, &fat, SLUICE__V1__ENVELOPE__BODY_PUBLISH, "qd");
    Sluice__V1__JobConfirm jc = SLUICE__V1__JOB_CONFIRM__INIT, *jcp = &jc;
    jc.id = e->publish->jobs[0]->id;
    Sluice__V1__PublishConfirm pc = SLUICE__V1__PUBLISH_CONFIRM__INIT;
    pc.confirms = &jcp;
    pc.n_confirms = 1;
    Sluice__V1__Envelope out = SLUICE__V1__ENVELOPE__INIT;
    out.corr = e->corr;
    out.body_case = SLUICE__V1__ENVELOPE__BODY_CONFIRM;
    out.confirm = &pc;
    tpeer_send(s_fake, &out);
    sl_publish_result_t *res = s_take_result(&p);
    SL_ASSERT_OK(res->status);
    sl_publish_result_destroy(&res);

    /* f1 dies: a publish to it waits in the connection */
    tpeer_destroy(&s_fake);
    TC_WAIT_TRUE(s_counters().nodes_up == 1);
    enum { N = 64 };
    p = s_publish_n("qd", jobs, N);
    TC_WAIT_TRUE(s_counters().pending == 1);
    s_route_t t2[] = {{"n2", s_ep(1), 0, 0, 0}};
    s_send_table(s_coord, "qd", 2, t2, 1);
    res = s_take_result(&p);
    SL_ASSERT_OK(res->status);
    for (int i = 0; i < N; i++)
        assert_int_equal(res->confirms[i].status, SL_CONFIRM_ACCEPTED);
    sl_publish_result_destroy(&res);
    assert_int_equal(s_counters().failovers, 1);
    assert_int_equal(s_published(1, "qd"), N);

    /* f1 is back on the same port; the client connects to it again */
    s_fake = tpeer_new_at(true, fep, 5000);
    TC_WAIT_TRUE(s_counters().nodes_up == 2);
    sl_sleep_ms(3 * S_HB_MS); /* a while for anything still queued to arrive */
    assert_int_equal(tpeer_count(s_fake, SLUICE__V1__ENVELOPE__BODY_PUBLISH), 0);
}

/* The same with a real node: killed while a publish to it is queued, the
 * jobs confirmed elsewhere, restarted on the same port. Each job is
 * delivered exactly once, by the node that confirmed it. silent: the
 * client gives up on the node by itself (3 silent intervals) rather than
 * on the coordinator's word. */
static void s_queued_case(bool silent)
{
    /* n1's interval: short when its silence is to move the jobs */
    s_node_start(0, SL_OVERFLOW_BLOCK, 0, silent ? 250 : 5000, NULL);
    s_node_start(1, SL_OVERFLOW_BLOCK, 0, 0, NULL);
    char ep1[64];
    snprintf(ep1, sizeof ep1, "%s", s_ep(0));
    s_cluster_client(NULL);
    sl_job_t jobs[128];
    sl_chan_t *p = s_publish_n("qe", jobs, 1);
    size_t at = 0;
    tpeer_wait(s_coord, &at, SLUICE__V1__ENVELOPE__BODY_ROUTE_REQUEST, "qe");
    s_route_t t1[] = {{"n1", s_ep(0), 0, 0, 0}, {"n2", s_ep(1), 1000000, 0, 0}};
    s_send_table(s_coord, "qe", 1, t1, 2);
    sl_publish_result_t *res = s_take_result(&p);
    SL_ASSERT_OK(res->status);
    sl_publish_result_destroy(&res);
    assert_int_equal(s_published(0, "qe"), 1);

    s_node_stop(0);
    TC_WAIT_TRUE(s_counters().nodes_up == 1);
    enum { N = 128 };
    p = s_publish_n("qe", jobs, N);
    TC_WAIT_TRUE(s_counters().pending == 1 || s_counters().failovers == 1);
    if (!silent) {
        s_route_t t2[] = {{"n2", s_ep(1), 0, 0, 0}};
        s_send_table(s_coord, "qe", 2, t2, 1);
    }
    res = s_take_result(&p);
    SL_ASSERT_OK(res->status);
    assert_int_equal(s_counters().failovers, 1);
    assert_int_equal(s_counters().republished, N);

    s_node_start(0, SL_OVERFLOW_BLOCK, 0, silent ? 250 : 5000, ep1);
    TC_WAIT_TRUE(s_counters().nodes_up == 2);
    sl_sleep_ms(3 * S_HB_MS); /* a while for anything still queued to arrive */
    uint8_t ids[N][SL_ID_LEN];
    s_drain_ids(1, "qe", N, ids);
    for (int i = 0; i < N; i++) {
        assert_int_equal(res->confirms[i].status, SL_CONFIRM_ACCEPTED);
        assert_true(s_has_id(ids, N, res->confirms[i].id));
    }
    for (int i = 0; i < N; i++)
        for (int k = i + 1; k < N; k++)
            assert_memory_not_equal(ids[i], ids[k], SL_ID_LEN);
    assert_int_equal(s_published(0, "qe"), 0); /* the new n1 got none of them */
    assert_int_equal(s_published(1, "qe"), N);
    sl_publish_result_destroy(&res);
}

static void test_client_cluster__node_back_on_its_port_never_runs_a_batch_moved_away(
    void **state)
{
    (void)state;
    s_queued_case(false);
}

static void test_client_cluster__silent_node_back_on_its_port_never_runs_a_batch_moved_away(
    void **state)
{
    (void)state;
    s_queued_case(true);
}

/* A node shutting down refuses the jobs sent to it (SHUTTING_DOWN): they
 * land on another node, and it gets no more until it has restarted. */
static void test_client_cluster__jobs_refused_as_shutting_down_land_on_another(void **state)
{
    (void)state;
    s_start_nodes(SL_OVERFLOW_BLOCK, 0);
    s_fake = tpeer_new(true);
    s_cluster_client(NULL);
    enum { N = 4 };
    sl_job_t jobs[N];
    sl_chan_t *p = s_publish_n("sd", jobs, N);
    size_t at = 0, fat = 0;
    tpeer_wait(s_coord, &at, SLUICE__V1__ENVELOPE__BODY_ROUTE_REQUEST, "sd");
    s_route_t t1[] = {{"f1", s_fake->endpoint, 0, 0, 0}, {"n2", s_ep(1), 1000000, 0, 0}};
    s_send_table(s_coord, "sd", 1, t1, 2);
    const Sluice__V1__Envelope *e =
        tpeer_wait(s_fake, &fat, SLUICE__V1__ENVELOPE__BODY_PUBLISH, "sd");
    assert_int_equal(e->publish->n_jobs, N);
    Sluice__V1__JobConfirm jc[N], *jcp[N];
    for (int i = 0; i < N; i++) {
        sluice__v1__job_confirm__init(&jc[i]);
        jc[i].id = e->publish->jobs[i]->id;
        jc[i].status = SLUICE__V1__JOB_CONFIRM__STATUS__REJECTED;
        jc[i].code = SLUICE__V1__ERROR__CODE__SHUTTING_DOWN;
        jc[i].reason = "shutting down";
        jcp[i] = &jc[i];
    }
    Sluice__V1__PublishConfirm pc = SLUICE__V1__PUBLISH_CONFIRM__INIT;
    pc.confirms = jcp;
    pc.n_confirms = N;
    Sluice__V1__Envelope out = SLUICE__V1__ENVELOPE__INIT;
    out.corr = e->corr;
    out.body_case = SLUICE__V1__ENVELOPE__BODY_CONFIRM;
    out.confirm = &pc;
    tpeer_send(s_fake, &out);
    sl_publish_result_t *res = s_take_result(&p);
    SL_ASSERT_OK(res->status);
    for (int i = 0; i < N; i++) {
        assert_int_equal(res->confirms[i].status, SL_CONFIRM_ACCEPTED);
        assert_memory_equal(res->confirms[i].id, e->publish->jobs[i]->id.data, SL_ID_LEN);
    }
    sl_publish_result_destroy(&res);
    assert_int_equal(s_published(1, "sd"), N);
    assert_int_equal(s_counters().failovers, 1);
    assert_int_equal(s_counters().republished, N);
    /* the next publish skips f1, though the table still makes it the
     * least loaded */
    assert_int_equal(s_publish("sd", NULL), SL_CONFIRM_ACCEPTED);
    assert_int_equal(s_published(1, "sd"), N + 1);
    assert_int_equal(tpeer_count(s_fake, SLUICE__V1__ENVELOPE__BODY_PUBLISH), 1);
}

/* --- the cluster view --------------------------------------------------- */

/* A cluster view: one node n1 with a queue "emails", one consumer c1. */
typedef struct {
    Sluice__V1__QueueLoad ql, *qls[1];
    Sluice__V1__NodeStatus ns;
    Sluice__V1__ClusterNode cn, *cns[1];
    Sluice__V1__NodeRef ref, *refs[1];
    Sluice__V1__ClusterConsumer cc, *ccs[1];
    Sluice__V1__ClusterView view;
} s_view_t;

static void s_view_init(s_view_t *v)
{
    sluice__v1__queue_load__init(&v->ql);
    v->ql.queue = "emails";
    v->ql.depth = 5;
    v->ql.in_flight = 2;
    v->ql.consumers = 1;
    v->ql.publish_rate = 12.5;
    v->ql.ack_rate = 10;
    v->qls[0] = &v->ql;
    sluice__v1__node_status__init(&v->ns);
    v->ns.node_id = "n1";
    v->ns.endpoint = "tcp://10.0.0.1:7450";
    v->ns.member_epoch = 99;
    v->ns.capacity = 200;
    v->ns.queues = v->qls;
    v->ns.n_queues = 1;
    sluice__v1__cluster_node__init(&v->cn);
    v->cn.status = &v->ns;
    v->cn.alive = true;
    v->cns[0] = &v->cn;
    sluice__v1__node_ref__init(&v->ref);
    v->ref.node_id = "n1";
    v->ref.share = 1000;
    v->ref.member_epoch = 99;
    v->refs[0] = &v->ref;
    sluice__v1__cluster_consumer__init(&v->cc);
    v->cc.consumer_id = "c1";
    v->cc.queue = "emails";
    v->cc.concurrency = 8;
    v->cc.epoch = 100;
    v->cc.nodes = v->refs;
    v->cc.n_nodes = 1;
    v->ccs[0] = &v->cc;
    sluice__v1__cluster_view__init(&v->view);
    v->view.coordinator_id = "coord-1";
    v->view.epoch = 101;
    v->view.nodes = v->cns;
    v->view.n_nodes = 1;
    v->view.consumers = v->ccs;
    v->view.n_consumers = 1;
}

static void test_client_cluster__cluster_view_comes_from_the_coordinator(void **state)
{
    (void)state;
    s_cluster_client(NULL);
    s_view_t vw;
    s_view_init(&vw);
    Sluice__V1__ClusterView view = vw.view;
    pthread_mutex_lock(&s_coord->mu);
    s_coord->view = &view;
    pthread_mutex_unlock(&s_coord->mu);

    sl_cluster_view_t v;
    SL_ASSERT_OK(sl_client_cluster(s_client, &v, sl_deadline_ms(tc_patience_ms())));
    assert_string_equal(v.coordinator_id, "coord-1");
    assert_int_equal(v.epoch, 101);
    assert_int_equal(v.n_nodes, 1);
    assert_string_equal(v.nodes[0].node_id, "n1");
    assert_string_equal(v.nodes[0].endpoint, "tcp://10.0.0.1:7450");
    assert_true(v.nodes[0].alive);
    assert_int_equal(v.nodes[0].member_epoch, 99);
    assert_int_equal(v.nodes[0].capacity, 200);
    assert_int_equal(v.nodes[0].n_queues, 1);
    assert_string_equal(v.nodes[0].queues[0].queue, "emails");
    assert_int_equal(v.nodes[0].queues[0].depth, 5);
    assert_true(v.nodes[0].queues[0].publish_rate == 12.5);
    assert_int_equal(v.n_consumers, 1);
    assert_string_equal(v.consumers[0].consumer_id, "c1");
    assert_int_equal(v.consumers[0].epoch, 100);
    assert_int_equal(v.consumers[0].n_nodes, 1);
    assert_int_equal(v.consumers[0].nodes[0].share, 1000);
    sl_cluster_view_release(&v);
    assert_null(v.nodes);
    sl_cluster_view_release(&v); /* twice is harmless */
    pthread_mutex_lock(&s_coord->mu);
    s_coord->view = NULL;
    pthread_mutex_unlock(&s_coord->mu);
}

/* Administration asks every live node of the view: STATS sums a queue
 * over them as sluice/stats.h merges each field (counts added, a flag set
 * on any, text from the first); POLICY sets the keys on every one. */
static void test_client_cluster__admin_sums_stats_and_sets_policy_on_every_node(void **state)
{
    (void)state;
    s_start_nodes(SL_OVERFLOW_BLOCK, 0);
    Sluice__V1__NodeStatus ns[2];
    Sluice__V1__ClusterNode cn[2], *cnp[2];
    const char *ids[2] = {"n1", "n2"};
    for (int i = 0; i < 2; i++) {
        sluice__v1__node_status__init(&ns[i]);
        ns[i].node_id = (char *)ids[i];
        ns[i].endpoint = (char *)s_ep(i);
        sluice__v1__cluster_node__init(&cn[i]);
        cn[i].status = &ns[i];
        cn[i].alive = true;
        cnp[i] = &cn[i];
    }
    Sluice__V1__ClusterView view = SLUICE__V1__CLUSTER_VIEW__INIT;
    view.coordinator_id = "coord-1";
    view.nodes = cnp;
    view.n_nodes = 2;
    s_cluster_client(NULL);
    pthread_mutex_lock(&s_coord->mu);
    s_coord->view = &view;
    pthread_mutex_unlock(&s_coord->mu);

    for (int i = 0; i < 5; i++) /* 2 on n1, 3 on n2 */
        assert_int_equal(tc_publish(s_direct[i < 2 ? 0 : 1], "adm", "x"), SL_CONFIRM_ACCEPTED);
    SL_ASSERT_OK(sl_client_pause(s_direct[1], "adm", sl_deadline_ms(tc_patience_ms())));
    sl_queue_stats_t one[2] = {tc_stats(s_direct[0], "adm"), tc_stats(s_direct[1], "adm")};

    sl_queue_stats_t *qs = NULL;
    size_t n = 0;
    SL_ASSERT_OK(sl_client_stats(s_client, "adm", &qs, &n, sl_deadline_ms(tc_patience_ms())));
    assert_int_equal(n, 1);
    assert_string_equal(qs[0].name, "adm");
    assert_int_equal(qs[0].depth, 5);
    assert_int_equal(qs[0].published, 5);
    assert_int_equal(qs[0].capacity, one[0].capacity + one[1].capacity);
    assert_true(qs[0].paused);    /* on n2 */
    assert_false(qs[0].draining);
    assert_string_equal(qs[0].overflow, "block");
    assert_string_equal(qs[0].policy, one[0].policy);
    free(qs);

    sl_queue_stats_t after;
    SL_ASSERT_OK(sl_client_policy(s_client, "adm", "max-attempts=9,max-dead=7", &after,
                                  sl_deadline_ms(tc_patience_ms())));
    assert_non_null(strstr(after.policy, "max-attempts=9"));
    assert_int_equal(after.depth, 5);
    for (int i = 0; i < 2; i++) {
        sl_queue_stats_t st = tc_stats(s_direct[i], "adm");
        assert_non_null(strstr(st.policy, "max-attempts=9"));
        assert_non_null(strstr(st.policy, "max-dead=7"));
    }
    sl_admin_reply_t rep;
    SL_ASSERT_ERR(sl_client_admin_ex(s_client, SL_ADMIN_POLICY, "adm",
                                     &(sl_admin_params_t){.policy = "max-dead=lots"}, &rep,
                                     sl_deadline_ms(tc_patience_ms())),
                  SL_EINVAL);
    assert_non_null(strstr(rep.node_text, "max-dead"));
    sl_admin_reply_release(&rep);

    pthread_mutex_lock(&s_coord->mu);
    s_coord->view = NULL;
    pthread_mutex_unlock(&s_coord->mu);
}

/* --- the sluice command in cluster mode -------------------------------- */

/* Run the CLI with args (NULL-terminated), env (may be NULL); returns its
 * exit status, *out its output (caller frees). */
static int s_cli(char **out, const char *const *env, const char *const *args)
{
    char *argv[24];
    int k = 0;
    argv[k++] = (char *)SLUICE_CLI_BIN;
    for (int i = 0; args[i] && k < 23; i++)
        argv[k++] = (char *)args[i];
    argv[k] = NULL;
    return sl_testproc_run(argv, env, NULL, (int)tc_patience_ms() * 2, out);
}

static void test_client_cluster__cli_stats_prints_the_whole_cluster(void **state)
{
    (void)state;
    s_coord = tpeer_new(true);
    static s_view_t vw;
    s_view_init(&vw);
    pthread_mutex_lock(&s_coord->mu);
    s_coord->view = &vw.view;
    pthread_mutex_unlock(&s_coord->mu);
    char *out = NULL;
    const char *args[] = {"--coordinator", s_coord->endpoint, "stats", NULL};
    assert_int_equal(s_cli(&out, NULL, args), 0);
    print_message("%s", out);
    const char *want[] = {"NODE", "MEMBER-EPOCH", "tcp://10.0.0.1:7450", "0000000000000063",
                          "PUB/S", "12.5", "10.0", "CONSUMER", "c1", "n1:100.0",
                          "coordinator coord-1", "nodes 1 (1 alive) consumers 1"};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        if (!strstr(out, want[i]))
            fail_msg("'%s' not in the output", want[i]);
    free(out);
    /* SLUICE_COORDINATOR does the same; a queue narrows it */
    char envv[128];
    snprintf(envv, sizeof envv, "SLUICE_COORDINATOR=%s", s_coord->endpoint);
    const char *env[] = {envv, NULL};
    const char *args2[] = {"stats", "other", NULL};
    assert_int_equal(s_cli(&out, env, args2), 0);
    assert_non_null(strstr(out, "consumers 0"));
    assert_null(strstr(out, "emails"));
    free(out);
    pthread_mutex_lock(&s_coord->mu);
    s_coord->view = NULL;
    pthread_mutex_unlock(&s_coord->mu);
}

static Sluice__V1__NodeRef s_cli_refs[2];
static Sluice__V1__Route s_cli_routes[2], *s_cli_route_ptrs[2];
static Sluice__V1__NodeRef *s_cli_ref_ptrs[2];
static Sluice__V1__RouteTable s_cli_table;
static Sluice__V1__Assignment s_cli_assignment;

static void test_client_cluster__cli_publishes_and_consumes_through_the_coordinator(
    void **state)
{
    (void)state;
    s_start_nodes(SL_OVERFLOW_BLOCK, 0);
    s_coord = tpeer_new(true);
    for (int i = 0; i < 2; i++) {
        sluice__v1__node_ref__init(&s_cli_refs[i]);
        s_cli_refs[i].node_id = i ? "n2" : "n1";
        s_cli_refs[i].endpoint = (char *)s_ep(i);
        s_cli_refs[i].member_epoch = 0; /* standalone nodes: epoch 0 */
        s_cli_refs[i].share = 500;
        s_cli_ref_ptrs[i] = &s_cli_refs[i];
        sluice__v1__route__init(&s_cli_routes[i]);
        s_cli_routes[i].node = &s_cli_refs[i];
        s_cli_route_ptrs[i] = &s_cli_routes[i];
    }
    sluice__v1__route_table__init(&s_cli_table);
    s_cli_table.queue = "cli";
    s_cli_table.version = 1;
    s_cli_table.routes = s_cli_route_ptrs;
    s_cli_table.n_routes = 2;
    sluice__v1__assignment__init(&s_cli_assignment);
    s_cli_assignment.queue = "cli";
    s_cli_assignment.epoch = 3;
    s_cli_assignment.nodes = s_cli_ref_ptrs;
    s_cli_assignment.n_nodes = 2;
    static s_view_t vw; /* consume asks for the view first: is it there? */
    s_view_init(&vw);
    pthread_mutex_lock(&s_coord->mu);
    s_coord->table = &s_cli_table;
    s_coord->assignment = &s_cli_assignment;
    s_coord->view = &vw.view;
    pthread_mutex_unlock(&s_coord->mu);

    char *out = NULL;
    const char *pub[] = {"--coordinator", s_coord->endpoint, "publish", "cli", "a", "b", "c", "d",
                         NULL};
    assert_int_equal(s_cli(&out, NULL, pub), 0);
    const char *p = out;
    int accepted = 0;
    while ((p = strstr(p, " accepted\n"))) {
        accepted++;
        p++;
    }
    assert_int_equal(accepted, 4);
    free(out);
    assert_int_equal(s_published(0, "cli") + s_published(1, "cli"), 4);

    const char *con[] = {"--coordinator", s_coord->endpoint, "consume", "cli", "--exec",
                         "cat >/dev/null", "--concurrency", "2", "--max-jobs", "4", NULL};
    assert_int_equal(s_cli(&out, NULL, con), 0);
    free(out);
    assert_int_equal(s_stats(0, "cli").acked + s_stats(1, "cli").acked, 4);

    /* nobody at the coordinator's address: exit 3, saying so */
    char dead[64];
    snprintf(dead, sizeof dead, "tcp://127.0.0.1:%d", sl_testnode_free_port());
    const char *un[] = {"--coordinator", dead, "--timeout-ms", "300", "publish", "cli", "x", NULL};
    assert_int_equal(s_cli(&out, NULL, un), 3);
    assert_non_null(strstr(out, "cannot reach coordinator"));
    free(out);
    pthread_mutex_lock(&s_coord->mu);
    s_coord->table = NULL;
    s_coord->assignment = NULL;
    s_coord->view = NULL;
    pthread_mutex_unlock(&s_coord->mu);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_client_cluster__least_loaded_spreads_publishes_over_the_nodes,
                                  s_teardown),
        cmocka_unit_test_teardown(test_client_cluster__a_loaded_node_gets_fewer_jobs, s_teardown),
        cmocka_unit_test_teardown(
            test_client_cluster__routing_key_sticks_to_one_node_and_moves_only_its_keys,
            s_teardown),
        cmocka_unit_test_teardown(
            test_client_cluster__node_removed_from_table_publishes_land_on_the_other, s_teardown),
        cmocka_unit_test_teardown(test_client_cluster__silent_node_publishes_land_on_the_other,
                                  s_teardown),
        cmocka_unit_test_teardown(
            test_client_cluster__coordinator_gone_publishing_goes_on_with_the_last_table,
            s_teardown),
        cmocka_unit_test_teardown(test_client_cluster__no_route_waits_until_the_deadline,
                                  s_teardown),
        cmocka_unit_test_teardown(
            test_client_cluster__assignment_subscribes_with_member_epoch_and_share, s_teardown),
        cmocka_unit_test_teardown(test_client_cluster__reassignment_moves_the_consumer,
                                  s_teardown),
        cmocka_unit_test_teardown(test_client_cluster__stale_epoch_asks_the_coordinator_again,
                                  s_teardown),
        cmocka_unit_test_teardown(
            test_client_cluster__node_restarted_on_another_endpoint_is_followed, s_teardown),
        cmocka_unit_test_teardown(
            test_client_cluster__publish_queued_for_a_dead_node_never_reaches_it_back,
            s_teardown),
        cmocka_unit_test_teardown(
            test_client_cluster__node_back_on_its_port_never_runs_a_batch_moved_away,
            s_teardown),
        cmocka_unit_test_teardown(
            test_client_cluster__silent_node_back_on_its_port_never_runs_a_batch_moved_away,
            s_teardown),
        cmocka_unit_test_teardown(
            test_client_cluster__jobs_refused_as_shutting_down_land_on_another, s_teardown),
        cmocka_unit_test_teardown(test_client_cluster__cluster_view_comes_from_the_coordinator,
                                  s_teardown),
        cmocka_unit_test_teardown(
            test_client_cluster__admin_sums_stats_and_sets_policy_on_every_node, s_teardown),
        cmocka_unit_test_teardown(test_client_cluster__cli_stats_prints_the_whole_cluster,
                                  s_teardown),
        cmocka_unit_test_teardown(
            test_client_cluster__cli_publishes_and_consumes_through_the_coordinator, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
