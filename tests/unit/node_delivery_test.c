/* node_delivery_test.c -- what consumers of an embedded node see over a
 * real DEALER socket: highest priority first and FIFO within a priority,
 * never more outstanding deliveries than the credit granted, work shared
 * between consumers with each job delivered once. */
#include <string.h>

#include "node_peer.h"
#include "sluice/wire.h"
#include "testlib.h"

#define DELIVER SLUICE__V1__ENVELOPE__BODY_DELIVER

/* Long enough for a delivery the node should not make to show up. */
static int64_t s_quiet_ms(void)
{
    return sl_test_sanitized() ? 600 : 300;
}

static node_peer_t *s_start(void)
{
    sl_node_opts_t o;
    node_test_opts(&o);
    node_fx_start(&o);
    return node_fx_peer();
}

static void test_node_delivery__priority_then_fifo(void **state)
{
    node_peer_t *p = s_start();
    /* Priorities in publish order; job i has priority prio[i], ids rise
     * with publish order, spread over one batch and single publishes. */
    static const uint32_t prio[] = {0, 5, 9, 5, 0, 9, 1, 5, 0, 9, 3, 5};
    enum { N = sizeof prio / sizeof *prio };
    node_job_t jobs[N];
    for (uint32_t i = 0; i < N; i++)
        jobs[i] = (node_job_t){.id = i + 1, .priority = prio[i]};
    node_peer_publish_ok(p, jobs, 6, NULL, node_test_patience());
    for (uint32_t i = 6; i < N; i++)
        node_peer_publish_ok(p, &jobs[i], 1, NULL, node_test_patience());

    SL_ASSERT_OK(node_peer_subscribe(p, "q", 100));
    node_dlv_t d[N];
    assert_int_equal(node_peer_deliveries(p, d, N, node_test_patience()), N);
    for (uint32_t i = 0; i < N; i++) {
        assert_int_equal(d[i].priority, prio[d[i].id - 1]);
        assert_int_equal(d[i].attempt, 1);
        assert_string_equal(d[i].queue, "q");
    }
    for (uint32_t i = 1; i < N; i++) {
        bool ordered = d[i - 1].priority > d[i].priority ||
                       (d[i - 1].priority == d[i].priority && d[i - 1].id < d[i].id);
        if (!ordered)
            fail_msg("delivery %u: job %u (prio %u) after job %u (prio %u)", i, d[i].id,
                     d[i].priority, d[i - 1].id, d[i - 1].priority);
    }
}

/* A job published while a lower-priority backlog waits jumps ahead of it. */
static void test_node_delivery__late_high_priority_jumps_ahead(void **state)
{
    node_peer_t *p = s_start();
    node_peer_publish_range(p, "q", 1, 10, 1);
    SL_ASSERT_OK(node_peer_subscribe(p, "q", 2));
    node_dlv_t d[10];
    assert_int_equal(node_peer_deliveries(p, d, 2, node_test_patience()), 2);
    assert_int_equal(d[0].id, 1);
    assert_int_equal(d[1].id, 2);
    node_peer_publish_range(p, "q", 100, 1, 7);
    node_peer_ack_many(p, d, 2);
    SL_ASSERT_OK(node_peer_credit(p, "q", 1));
    assert_int_equal(node_peer_deliveries(p, d, 1, node_test_patience()), 1);
    assert_int_equal(d[0].id, 100);
    SL_ASSERT_OK(node_peer_credit(p, "q", 10));
    assert_int_equal(node_peer_deliveries(p, d, 8, node_test_patience()), 8);
    for (uint32_t i = 0; i < 8; i++)
        assert_int_equal(d[i].id, 3 + i);
}

static void test_node_delivery__never_beyond_credit(void **state)
{
    node_peer_t *p = s_start();
    node_peer_t *prod = node_fx_peer();
    SL_ASSERT_OK(node_peer_subscribe(p, "q", 3));
    node_peer_publish_range(prod, "q", 1, 20, 0);

    bool seen[21] = {false};
    node_dlv_t d[20];
    size_t total = 0;
    assert_int_equal(node_peer_deliveries(p, d, 3, node_test_patience()), 3);
    assert_int_equal(node_peer_count(p, DELIVER, s_quiet_ms()), 0);
    for (size_t i = 0; i < 3; i++)
        seen[d[i].id] = true;
    total += 3;

    /* Acks are not credit: still nothing. */
    node_peer_ack_many(p, d, 3);
    assert_int_equal(node_peer_count(p, DELIVER, s_quiet_ms()), 0);

    SL_ASSERT_OK(node_peer_credit(p, "q", 2));
    assert_int_equal(node_peer_deliveries(p, d, 2, node_test_patience()), 2);
    assert_int_equal(node_peer_count(p, DELIVER, s_quiet_ms()), 0);
    for (size_t i = 0; i < 2; i++) {
        assert_false(seen[d[i].id]);
        seen[d[i].id] = true;
    }
    total += 2;

    Sluice__V1__QueueStats st;
    node_peer_stats(prod, "q", &st);
    assert_int_equal(st.in_flight, 2);
    assert_int_equal(st.delivered, 5);
    assert_int_equal(st.depth, 15);

    SL_ASSERT_OK(node_peer_credit(p, "q", 100));
    assert_int_equal(node_peer_deliveries(p, d, 15, node_test_patience()), 15);
    for (size_t i = 0; i < 15; i++) {
        assert_false(seen[d[i].id]);
        seen[d[i].id] = true;
    }
    total += 15;
    assert_int_equal(total, 20);
    assert_int_equal(node_peer_count(p, DELIVER, s_quiet_ms()), 0);
}

static void test_node_delivery__consumers_share_work_each_job_once(void **state)
{
    node_peer_t *a = s_start();
    node_peer_t *b = node_fx_peer();
    node_peer_t *prod = node_fx_peer();
    SL_ASSERT_OK(node_peer_subscribe(a, "q", 2));
    SL_ASSERT_OK(node_peer_subscribe(b, "q", 2));
    Sluice__V1__QueueStats st;
    NODE_WAIT_STATS(prod, "q", st, st.consumers == 2, node_test_patience());
    enum { N = 40 };
    node_peer_publish_range(prod, "q", 1, N, 0);

    int seen[N + 1] = {0};
    size_t got[2] = {0, 0};
    node_peer_t *cs[2] = {a, b};
    int64_t end = sl_deadline_ms(node_test_patience());
    while (got[0] + got[1] < N && sl_now() < end) {
        for (int c = 0; c < 2; c++) {
            node_dlv_t d[4];
            size_t k = node_peer_deliveries(cs[c], d, 4, 5);
            for (size_t i = 0; i < k; i++) {
                assert_true(d[i].id >= 1 && d[i].id <= N);
                seen[d[i].id]++;
            }
            if (k) {
                got[c] += k;
                node_peer_ack_many(cs[c], d, k);
                SL_ASSERT_OK(node_peer_credit(cs[c], "q", (uint32_t)k));
            }
        }
    }
    assert_int_equal(got[0] + got[1], N);
    for (int i = 1; i <= N; i++)
        if (seen[i] != 1)
            fail_msg("job %d delivered %d times", i, seen[i]);
    if (got[0] == 0 || got[1] == 0)
        fail_msg("work not shared: %zu and %zu", got[0], got[1]);
    assert_int_equal(node_peer_count(a, DELIVER, 0) + node_peer_count(b, DELIVER, s_quiet_ms()), 0);
    NODE_WAIT_STATS(prod, "q", st, st.acked == N, node_test_patience());
    assert_int_equal(st.delivered, N);
    assert_int_equal(st.in_flight, 0);
    assert_int_equal(st.depth, 0);
}

/* More jobs than fit one Deliver (the node batches): all arrive, in order,
 * each once. */
static void test_node_delivery__large_backlog_in_order(void **state)
{
    node_peer_t *p = s_start();
    enum { N = 300 };
    for (uint32_t i = 0; i < N; i += 50)
        node_peer_publish_range(p, "q", 1 + i, 50, 4);
    SL_ASSERT_OK(node_peer_subscribe(p, "q", 1000));
    static node_dlv_t d[N];
    assert_int_equal(node_peer_deliveries(p, d, N, node_test_patience()), N);
    for (uint32_t i = 0; i < N; i++)
        assert_int_equal(d[i].id, 1 + i);
    assert_int_equal(node_peer_count(p, DELIVER, s_quiet_ms()), 0);
    node_peer_ack_many(p, d, N);
    Sluice__V1__QueueStats st;
    NODE_WAIT_STATS(p, "q", st, st.acked == N, node_test_patience());
    assert_int_equal(st.in_flight, 0);
}

/* Unsubscribing hands the consumer's leased jobs to another consumer. */
static void test_node_delivery__unsubscribe_requeues_leases(void **state)
{
    node_peer_t *a = s_start();
    node_peer_t *b = node_fx_peer();
    SL_ASSERT_OK(node_peer_subscribe(a, "q", 1));
    node_peer_publish_range(b, "q", 1, 1, 0);
    node_dlv_t d;
    assert_int_equal(node_peer_deliveries(a, &d, 1, node_test_patience()), 1);
    SL_ASSERT_OK(node_peer_unsubscribe(a, "q"));
    SL_ASSERT_OK(node_peer_subscribe(b, "q", 1));
    node_dlv_t d2;
    assert_int_equal(node_peer_deliveries(b, &d2, 1, node_test_patience()), 1);
    assert_int_equal(d2.id, 1);
    assert_int_not_equal(d2.lease_id, d.lease_id);
    /* a's lease is gone with its subscription. */
    uint64_t corr = node_peer_ack(a, &d);
    Sluice__V1__Envelope *env =
        node_peer_recv(a, SLUICE__V1__ENVELOPE__BODY_LEASE_REPLY, corr, node_test_patience());
    assert_non_null(env);
    assert_non_null(env->lease_reply->error);
    assert_int_equal(env->lease_reply->error->code, SLUICE__V1__ERROR__CODE__STALE_LEASE);
    sl_wire_env_free(&env);
    assert_int_equal(node_peer_count(a, DELIVER, 0), 0);
}

static void test_node_delivery__credit_and_subscribe_errors(void **state)
{
    node_peer_t *p = s_start();
    SL_ASSERT_OK(node_peer_credit(p, "never-subscribed", 5));
    Sluice__V1__Envelope *env =
        node_peer_recv(p, SLUICE__V1__ENVELOPE__BODY_ERROR, 0, node_test_patience());
    assert_non_null(env);
    assert_int_equal(env->error->code, SLUICE__V1__ERROR__CODE__NOT_SUBSCRIBED);
    assert_non_null(strstr(env->error->text, "never-subscribed"));
    sl_wire_env_free(&env);

    SL_ASSERT_OK(node_peer_subscribe(p, "bad queue", 5));
    env = node_peer_recv(p, SLUICE__V1__ENVELOPE__BODY_ERROR, 0, node_test_patience());
    assert_non_null(env);
    assert_int_equal(env->error->code, SLUICE__V1__ERROR__CODE__BAD_QUEUE);
    sl_wire_env_free(&env);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_node_delivery__priority_then_fifo, node_fx_teardown),
        cmocka_unit_test_teardown(test_node_delivery__late_high_priority_jumps_ahead,
                                  node_fx_teardown),
        cmocka_unit_test_teardown(test_node_delivery__never_beyond_credit, node_fx_teardown),
        cmocka_unit_test_teardown(test_node_delivery__consumers_share_work_each_job_once,
                                  node_fx_teardown),
        cmocka_unit_test_teardown(test_node_delivery__large_backlog_in_order, node_fx_teardown),
        cmocka_unit_test_teardown(test_node_delivery__unsubscribe_requeues_leases,
                                  node_fx_teardown),
        cmocka_unit_test_teardown(test_node_delivery__credit_and_subscribe_errors,
                                  node_fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
