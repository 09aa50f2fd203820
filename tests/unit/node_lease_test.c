/* node_lease_test.c -- leases on an embedded node over a real DEALER
 * socket: settling a lease the node does not hold gets STALE_LEASE and
 * changes nothing; an expired lease is redelivered with a new lease id;
 * touch keeps a lease alive; a consumer that goes silent loses its leases
 * to another consumer within a few heartbeats. */
#include <string.h>

#include "node_peer.h"
#include "sluice/wire.h"
#include "testlib.h"

#define DELIVER SLUICE__V1__ENVELOPE__BODY_DELIVER
#define LEASE_REPLY SLUICE__V1__ENVELOPE__BODY_LEASE_REPLY

static int64_t s_lease_ms(void)
{
    return sl_test_sanitized() ? 1000 : 300;
}

static sl_node_t *s_node; /* the fixture's, borrowed */

static node_peer_t *s_start(int64_t lease_ms, int64_t heartbeat_ms)
{
    sl_node_opts_t o;
    node_test_opts(&o);
    if (lease_ms)
        o.lease_ms = lease_ms;
    if (heartbeat_ms)
        o.heartbeat_ms = heartbeat_ms;
    s_node = node_fx_start(&o);
    return node_fx_peer();
}

/* The LeaseReply for corr: asserts it arrives and is STALE_LEASE. */
static void s_expect_stale(node_peer_t *p, uint64_t corr, const node_dlv_t *d)
{
    Sluice__V1__Envelope *env = node_peer_recv(p, LEASE_REPLY, corr, node_test_patience());
    if (!env)
        fail_msg("no LeaseReply for corr %llu", (unsigned long long)corr);
    Sluice__V1__LeaseReply *r = env->lease_reply;
    assert_non_null(r->error);
    assert_int_equal(r->error->code, SLUICE__V1__ERROR__CODE__STALE_LEASE);
    assert_true(strlen(r->error->text) > 0);
    if (d && r->lease) { /* names the lease it refused */
        assert_int_equal(r->lease->lease_id, d->lease_id);
        assert_memory_equal(r->lease->job_id.data, d->raw_id, 16);
    }
    sl_wire_env_free(&env);
}

static void test_node_lease__stale_settles_change_nothing(void **state)
{
    node_peer_t *p = s_start(0, 0);
    node_peer_publish_range(p, "q", 1, 1, 0);
    SL_ASSERT_OK(node_peer_subscribe(p, "q", 1));
    node_dlv_t d;
    assert_int_equal(node_peer_deliveries(p, &d, 1, node_test_patience()), 1);
    assert_int_equal(d.attempt, 1);
    assert_int_equal(d.epoch, sl_node_epoch(s_node));

    node_dlv_t unknown = d, wrong_id = d, wrong_epoch = d;
    node_id_make(unknown.raw_id, 999);
    wrong_id.lease_id = d.lease_id + 1000;
    wrong_epoch.epoch = d.epoch ^ 2;
    s_expect_stale(p, node_peer_ack(p, &unknown), &unknown);
    s_expect_stale(p, node_peer_ack(p, &wrong_id), &wrong_id);
    s_expect_stale(p, node_peer_ack(p, &wrong_epoch), &wrong_epoch);
    s_expect_stale(p, node_peer_fail(p, &wrong_id, false, "x"), &wrong_id);
    s_expect_stale(p, node_peer_fail(p, &wrong_epoch, true, "x"), &wrong_epoch);
    s_expect_stale(p, node_peer_touch(p, &wrong_id, 1000), &wrong_id);

    Sluice__V1__QueueStats st;
    node_peer_stats(p, "q", &st);
    assert_int_equal(st.in_flight, 1);
    assert_int_equal(st.acked, 0);
    assert_int_equal(st.failed, 0);
    assert_int_equal(st.dead, 0);
    assert_int_equal(st.retried, 0);

    /* The real lease still works, once: an accepted ack gets no reply. */
    node_peer_ack(p, &d);
    NODE_WAIT_STATS(p, "q", st, st.acked == 1, node_test_patience());
    assert_int_equal(st.in_flight, 0);
    assert_int_equal(node_peer_count(p, LEASE_REPLY, 0), 0);
    s_expect_stale(p, node_peer_ack(p, &d), &d);
    s_expect_stale(p, node_peer_fail(p, &d, true, "late"), &d);
    node_peer_stats(p, "q", &st);
    assert_int_equal(st.acked, 1);
    assert_int_equal(st.failed, 0);
    assert_int_equal(st.depth, 0);
    assert_int_equal(node_peer_count(p, DELIVER, 100), 0);
}

/* One Ack holding a good and a stale item: one LeaseReply, for the stale. */
static void test_node_lease__batch_ack_reports_only_stale_items(void **state)
{
    node_peer_t *p = s_start(0, 0);
    node_peer_publish_range(p, "q", 1, 2, 0);
    SL_ASSERT_OK(node_peer_subscribe(p, "q", 2));
    node_dlv_t d[3];
    assert_int_equal(node_peer_deliveries(p, d, 2, node_test_patience()), 2);
    d[2] = d[1];
    d[2].lease_id += 77;
    uint64_t corr = node_peer_ack_many(p, d, 3);
    s_expect_stale(p, corr, &d[2]);
    Sluice__V1__QueueStats st;
    NODE_WAIT_STATS(p, "q", st, st.acked == 2, node_test_patience());
    assert_int_equal(node_peer_count(p, LEASE_REPLY, 0), 0);
    assert_int_equal(st.in_flight, 0);
}

static void test_node_lease__expiry_redelivers_with_new_lease(void **state)
{
    int64_t lease = s_lease_ms();
    node_peer_t *p = s_start(lease, 0);
    SL_ASSERT_OK(node_peer_subscribe(p, "q", 2));
    node_peer_publish_range(p, "q", 1, 1, 0);
    node_dlv_t d1, d2;
    assert_int_equal(node_peer_deliveries(p, &d1, 1, node_test_patience()), 1);
    int64_t wall = node_wall_ms();
    assert_int_equal(d1.attempt, 1);
    assert_true(d1.expires_ms > wall);
    assert_true(d1.expires_ms <= wall + lease + 50);

    assert_int_equal(node_peer_deliveries(p, &d2, 1, lease + node_test_patience()), 1);
    double waited = (double)(d2.at - d1.at) / 1e6;
    if (waited < (double)lease - 5)
        fail_msg("redelivered after %.1f ms, lease is %lld ms", waited, (long long)lease);
    assert_int_equal(d2.id, 1);
    assert_int_equal(d2.attempt, 2);
    assert_int_not_equal(d2.lease_id, d1.lease_id);

    /* The old lease is stale now, the new one is good. */
    s_expect_stale(p, node_peer_ack(p, &d1), &d1);
    node_peer_ack(p, &d2);
    Sluice__V1__QueueStats st;
    NODE_WAIT_STATS(p, "q", st, st.acked == 1, node_test_patience());
    assert_int_equal(st.delivered, 2);
    assert_int_equal(st.in_flight, 0);
    assert_int_equal(st.failed, 0);
    assert_int_equal(node_peer_count(p, LEASE_REPLY, 0), 0);
}

/* Expiries use up attempts too: then the job is dead, not redelivered. */
static void test_node_lease__expiries_exhaust_attempts(void **state)
{
    int64_t lease = s_lease_ms();
    node_peer_t *p = s_start(lease, 0);
    SL_ASSERT_OK(node_peer_subscribe(p, "q", 10));
    node_peer_publish_ok(p, &(node_job_t){.id = 1, .max_attempts = 2}, 1, NULL,
                         node_test_patience());
    node_dlv_t d[2];
    assert_int_equal(node_peer_deliveries(p, d, 2, 2 * lease + node_test_patience()), 2);
    assert_int_equal(d[0].attempt, 1);
    assert_int_equal(d[1].attempt, 2);
    Sluice__V1__QueueStats st;
    NODE_WAIT_STATS(p, "q", st, st.dead == 1, lease + node_test_patience());
    assert_int_equal(st.in_flight, 0);
    assert_int_equal(st.depth, 0);
    assert_int_equal(st.delivered, 2);
    assert_int_equal(node_peer_count(p, DELIVER, lease), 0);
    s_expect_stale(p, node_peer_ack(p, &d[1]), &d[1]);
}

static void test_node_lease__touch_keeps_lease(void **state)
{
    int64_t lease = s_lease_ms();
    node_peer_t *p = s_start(lease, 0);
    SL_ASSERT_OK(node_peer_subscribe(p, "q", 2));
    node_peer_publish_range(p, "q", 1, 1, 0);
    node_dlv_t d;
    assert_int_equal(node_peer_deliveries(p, &d, 1, node_test_patience()), 1);

    /* Touch every lease/3 for three lease times: never redelivered. */
    int64_t last_expiry = d.expires_ms;
    int64_t end = sl_deadline_ms(3 * lease);
    int touches = 0;
    while (sl_now() < end) {
        uint32_t extend = touches % 2 ? 0 : (uint32_t)lease; /* 0: the queue's lease time */
        uint64_t corr = node_peer_touch(p, &d, extend);
        Sluice__V1__Envelope *env = node_peer_recv(p, LEASE_REPLY, corr, node_test_patience());
        assert_non_null(env);
        Sluice__V1__LeaseReply *r = env->lease_reply;
        if (r->error)
            fail_msg("touch %d refused: %s", touches, r->error->text);
        assert_non_null(r->lease);
        assert_int_equal(r->lease->lease_id, d.lease_id);
        assert_true(r->lease->expires_ms >= last_expiry);
        last_expiry = r->lease->expires_ms;
        sl_wire_env_free(&env);
        touches++;
        assert_int_equal(node_peer_count(p, DELIVER, lease / 3), 0);
    }
    assert_true(touches >= 3);
    assert_true(last_expiry > d.expires_ms);

    /* A long extension is honoured as asked. */
    uint64_t corr = node_peer_touch(p, &d, 60000);
    Sluice__V1__Envelope *env = node_peer_recv(p, LEASE_REPLY, corr, node_test_patience());
    assert_non_null(env);
    assert_null(env->lease_reply->error);
    assert_true(env->lease_reply->lease->expires_ms > node_wall_ms() + 50000);
    sl_wire_env_free(&env);

    node_peer_ack(p, &d);
    Sluice__V1__QueueStats st;
    NODE_WAIT_STATS(p, "q", st, st.acked == 1, node_test_patience());
    assert_int_equal(st.delivered, 1);
    assert_int_equal(node_peer_count(p, DELIVER, lease + 100), 0);
}

static void test_node_lease__silent_consumer_leases_redelivered(void **state)
{
    int64_t hb = sl_test_sanitized() ? 200 : 100;
    node_peer_t *a = s_start(60000, hb); /* leases far longer than the test */
    node_peer_t *b = node_fx_peer();
    SL_ASSERT_OK(node_peer_subscribe(a, "q", 5));
    node_peer_publish_range(b, "q", 1, 3, 0);
    node_dlv_t d[3];
    assert_int_equal(node_peer_deliveries(a, d, 3, node_test_patience()), 3);
    SL_ASSERT_OK(node_peer_subscribe(b, "q", 5));
    Sluice__V1__QueueStats st;
    NODE_WAIT_STATS(b, "q", st, st.consumers == 2, node_test_patience());
    assert_int_equal(st.in_flight, 3);
    assert_int_equal(node_peer_count(b, DELIVER, 0), 0);

    /* a goes silent: its socket closes, no more heartbeats. */
    int64_t t0 = sl_now();
    node_fx_drop_peer(&a);
    node_dlv_t r[3];
    assert_int_equal(node_peer_deliveries(b, r, 3, node_test_patience()), 3);
    double took = sl_test_ms_since(t0);
    /* Gone after 3 silent intervals, noticed at the next sweep. */
    double bound = sl_test_sanitized() ? 30.0 * (double)hb : 6.0 * (double)hb + 200;
    if (took > bound)
        fail_msg("leases of a silent consumer came back after %.0f ms (heartbeat %lld ms)", took,
                 (long long)hb);
    bool seen[4] = {false};
    for (int i = 0; i < 3; i++) {
        assert_true(r[i].id >= 1 && r[i].id <= 3);
        assert_false(seen[r[i].id]);
        seen[r[i].id] = true;
    }
    NODE_WAIT_STATS(b, "q", st, st.consumers == 1, node_test_patience());
    node_peer_ack_many(b, r, 3);
    NODE_WAIT_STATS(b, "q", st, st.acked == 3, node_test_patience());
    assert_int_equal(st.in_flight, 0);
    assert_int_equal(node_peer_count(b, LEASE_REPLY, 0), 0);
}

/* A peer that keeps heartbeating keeps its leases, however idle it is. */
static void test_node_lease__heartbeating_consumer_keeps_leases(void **state)
{
    int64_t hb = sl_test_sanitized() ? 200 : 100;
    node_peer_t *a = s_start(60000, hb);
    node_peer_t *b = node_fx_peer();
    SL_ASSERT_OK(node_peer_subscribe(a, "q", 1));
    node_peer_publish_range(b, "q", 1, 1, 0);
    node_dlv_t d;
    assert_int_equal(node_peer_deliveries(a, &d, 1, node_test_patience()), 1);
    SL_ASSERT_OK(node_peer_subscribe(b, "q", 1));
    assert_int_equal(node_peer_count(b, DELIVER, 8 * hb), 0);
    node_peer_ack(a, &d);
    Sluice__V1__QueueStats st;
    NODE_WAIT_STATS(b, "q", st, st.acked == 1, node_test_patience());
    assert_int_equal(node_peer_count(a, LEASE_REPLY, 0), 0);
}

/* Acked jobs leave lease timers behind; when they come due they must not
 * touch the jobs published since (which may reuse the acked jobs' memory):
 * new leases last their full lease time. */
static void test_node_lease__acked_jobs_timers_leave_new_jobs_alone(void **state)
{
    int64_t lease = s_lease_ms();
    node_peer_t *p = s_start(lease, 0);
    SL_ASSERT_OK(node_peer_subscribe(p, "q", 100));
    node_peer_publish_range(p, "q", 1, 8, 0);
    node_dlv_t old[8], d[8];
    assert_int_equal(node_peer_deliveries(p, old, 8, node_test_patience()), 8);
    node_peer_ack_many(p, old, 8);
    Sluice__V1__QueueStats st;
    NODE_WAIT_STATS(p, "q", st, st.acked == 8, node_test_patience());
    sl_sleep_ms(lease / 2); /* new leases must outlast the old timers by a margin */
    node_peer_publish_range(p, "q", 11, 8, 0);
    assert_int_equal(node_peer_deliveries(p, d, 8, node_test_patience()), 8);
    /* Past the old timers, short of the new leases: nothing comes back. */
    int64_t quiet = (d[0].at - sl_now()) / 1000000 + lease - lease / 8;
    assert_int_equal(node_peer_count(p, DELIVER, quiet > 0 ? quiet : 0), 0);
    node_peer_ack_many(p, d, 8);
    NODE_WAIT_STATS(p, "q", st, st.acked == 16, node_test_patience());
    assert_int_equal(st.delivered, 16);
    assert_int_equal(node_peer_count(p, LEASE_REPLY, 0), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_node_lease__stale_settles_change_nothing,
                                  node_fx_teardown),
        cmocka_unit_test_teardown(test_node_lease__batch_ack_reports_only_stale_items,
                                  node_fx_teardown),
        cmocka_unit_test_teardown(test_node_lease__expiry_redelivers_with_new_lease,
                                  node_fx_teardown),
        cmocka_unit_test_teardown(test_node_lease__expiries_exhaust_attempts, node_fx_teardown),
        cmocka_unit_test_teardown(test_node_lease__touch_keeps_lease, node_fx_teardown),
        cmocka_unit_test_teardown(test_node_lease__silent_consumer_leases_redelivered,
                                  node_fx_teardown),
        cmocka_unit_test_teardown(test_node_lease__heartbeating_consumer_keeps_leases,
                                  node_fx_teardown),
        cmocka_unit_test_teardown(test_node_lease__acked_jobs_timers_leave_new_jobs_alone,
                                  node_fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
