/* client_publish_test.c -- libsluice's producer side against a real
 * sluice-node: confirms, ids, duplicates, argument checks, the async
 * promise, overflow policies (block's late confirm, drop-new's REJECTED),
 * an unreachable node, publishes made before the node starts, and resends
 * after the node restarts. */
#define _GNU_SOURCE
#include <signal.h>
#include <string.h>

#include "testlib.h"
#include "testclient.h"

static void test_client_publish__confirms_each_job_in_order(void **state)
{
    (void)state;
    sl_testnode_t n;
    tc_node_start(&n, NULL);
    sl_client_t *c = tc_client(n.endpoint);

    sl_job_t jobs[3] = {
        {.queue = "orders", .payload = "a", .payload_len = 1},
        {.queue = "orders", .payload = "bb", .payload_len = 2, .priority = 9},
        {.queue = "orders", .payload = NULL, .payload_len = 0},
    };
    memset(jobs[1].id, 0x42, SL_ID_LEN); /* a chosen id is kept */
    sl_confirm_t cf[3];
    SL_ASSERT_OK(sl_client_publish(c, jobs, 3, cf, sl_deadline_ms(tc_patience_ms())));
    for (int i = 0; i < 3; i++)
        assert_int_equal(cf[i].status, SL_CONFIRM_ACCEPTED);
    assert_memory_equal(cf[1].id, jobs[1].id, SL_ID_LEN);
    assert_memory_not_equal(cf[0].id, cf[2].id, SL_ID_LEN);
    static const uint8_t zero[SL_ID_LEN];
    assert_memory_not_equal(cf[0].id, zero, SL_ID_LEN);

    sl_queue_stats_t st = tc_stats(c, "orders");
    assert_int_equal(st.published, 3);
    assert_int_equal(st.depth, 3);

    sl_client_counters_t k;
    sl_client_counters(c, &k);
    assert_true(k.connected);
    assert_int_equal(k.epoch, n.epoch);
    assert_int_equal(k.pending, 0);
    sl_client_destroy(&c);
    assert_null(c);
    sl_testnode_release(&n);
}

static void test_client_publish__same_id_or_key_is_duplicate(void **state)
{
    (void)state;
    sl_testnode_t n;
    tc_node_start(&n, NULL);
    sl_client_t *c = tc_client(n.endpoint);
    int64_t dl = sl_deadline_ms(tc_patience_ms());

    sl_job_t j = {.queue = "q", .payload = "x", .payload_len = 1};
    SL_ASSERT_OK(sl_id_new(j.id));
    sl_confirm_t cf;
    SL_ASSERT_OK(sl_client_publish(c, &j, 1, &cf, dl));
    assert_int_equal(cf.status, SL_CONFIRM_ACCEPTED);
    SL_ASSERT_OK(sl_client_publish(c, &j, 1, &cf, dl));
    assert_int_equal(cf.status, SL_CONFIRM_DUPLICATE);

    sl_job_t k = {.queue = "q", .payload = "y", .payload_len = 1, .idempotency_key = "order-7"};
    SL_ASSERT_OK(sl_client_publish(c, &k, 1, &cf, dl));
    assert_int_equal(cf.status, SL_CONFIRM_ACCEPTED);
    SL_ASSERT_OK(sl_client_publish(c, &k, 1, &cf, dl)); /* fresh id, same key */
    assert_int_equal(cf.status, SL_CONFIRM_DUPLICATE);

    assert_int_equal(tc_stats(c, "q").depth, 2);
    sl_client_destroy(&c);
    sl_testnode_release(&n);
}

static void test_client_publish__bad_arguments_fail_before_sending(void **state)
{
    (void)state;
    /* Nothing listens here: these must fail without a node. */
    char ep[64];
    snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", sl_testnode_free_port());
    sl_client_opts_t o = {.endpoint = ep, .max_frame = 4096};
    int err = 0;
    sl_client_t *c = sl_client_new(&o, &err);
    assert_non_null(c);
    sl_confirm_t cf[2];
    int64_t dl = sl_deadline_ms(1000);

    sl_job_t bad_name = {.queue = "has space"};
    SL_ASSERT_ERR(sl_client_publish(c, &bad_name, 1, cf, dl), SL_EINVAL);
    char long_name[SL_QUEUE_NAME_MAX + 2];
    memset(long_name, 'a', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = '\0';
    sl_job_t too_long = {.queue = long_name};
    SL_ASSERT_ERR(sl_client_publish(c, &too_long, 1, cf, dl), SL_EINVAL);
    long_name[SL_QUEUE_NAME_MAX] = '\0'; /* exactly the maximum is fine */
    assert_int_equal(sl_queue_name_check(long_name), SL_OK);
    sl_job_t prio = {.queue = "q", .priority = 10};
    SL_ASSERT_ERR(sl_client_publish(c, &prio, 1, cf, dl), SL_EINVAL);
    sl_job_t nullpay = {.queue = "q", .payload_len = 3};
    SL_ASSERT_ERR(sl_client_publish(c, &nullpay, 1, cf, dl), SL_EINVAL);
    SL_ASSERT_ERR(sl_client_publish(c, &prio, 0, cf, dl), SL_EINVAL);

    static char big[8192];
    sl_job_t huge = {.queue = "q", .payload = big, .payload_len = sizeof big};
    SL_ASSERT_ERR(sl_client_publish(c, &huge, 1, cf, dl), SL_ETOOBIG);

    sl_client_counters_t k;
    sl_client_counters(c, &k);
    assert_int_equal(k.pending, 0);
    sl_client_destroy(&c);

    assert_null(sl_client_new(&(sl_client_opts_t){.endpoint = "not-an-endpoint"}, &err));
    assert_int_equal(err, SL_EINVAL);
}

static void test_client_publish__async_promises_deliver_every_result(void **state)
{
    (void)state;
    sl_testnode_t n;
    tc_node_start(&n, NULL);
    sl_client_t *c = tc_client(n.endpoint);
    enum { BATCHES = 50, PER = 20 };
    sl_chan_t *p[BATCHES];
    for (int b = 0; b < BATCHES; b++) {
        sl_job_t jobs[PER];
        char text[PER][16];
        for (int i = 0; i < PER; i++) {
            snprintf(text[i], sizeof text[i], "%d.%d", b, i);
            jobs[i] = (sl_job_t){.queue = "bulk", .payload = text[i], .payload_len = strlen(text[i])};
        }
        int err = 0;
        p[b] = sl_client_publish_async(c, jobs, PER, sl_deadline_ms(tc_patience_ms()), &err);
        assert_non_null(p[b]);
    }
    for (int b = 0; b < BATCHES; b++) {
        void *v = NULL;
        SL_ASSERT_OK(sl_take(p[b], &v));
        void *again = NULL; /* a promise: every taker sees the one result */
        SL_ASSERT_OK(sl_take(p[b], &again));
        assert_ptr_equal(v, again);
        sl_publish_result_t *r = v;
        assert_int_equal(r->status, SL_OK);
        assert_int_equal(r->n, PER);
        for (int i = 0; i < PER; i++)
            assert_int_equal(r->confirms[i].status, SL_CONFIRM_ACCEPTED);
        sl_publish_result_destroy(&r);
        assert_null(r);
        sl_chan_destroy(&p[b]);
    }
    assert_int_equal(tc_stats(c, "bulk").published, BATCHES * PER);
    sl_client_destroy(&c);
    sl_testnode_release(&n);
}

static void test_client_publish__drop_new_rejects_when_full(void **state)
{
    (void)state;
    sl_testnode_t n;
    tc_node_start(&n, (const char *[]){"--max-length", "2", "--overflow", "drop-new", NULL});
    sl_client_t *c = tc_client(n.endpoint);
    sl_job_t jobs[3] = {{.queue = "small"}, {.queue = "small"}, {.queue = "small"}};
    sl_confirm_t cf[3];
    SL_ASSERT_OK(sl_client_publish(c, jobs, 3, cf, sl_deadline_ms(tc_patience_ms())));
    assert_int_equal(cf[0].status, SL_CONFIRM_ACCEPTED);
    assert_int_equal(cf[1].status, SL_CONFIRM_ACCEPTED);
    assert_int_equal(cf[2].status, SL_CONFIRM_REJECTED);
    assert_non_null(strstr(cf[2].reason, "full"));
    assert_int_equal(cf[2].code, SL_CODE_FULL); /* the reason, as a code */
    assert_int_equal(cf[0].code, SL_CODE_NONE);
    sl_client_destroy(&c);
    sl_testnode_release(&n);
}

/* Under `block` the confirm of a job that finds the queue full comes only
 * when room appears: publish waits (and times out), then an ack makes
 * room and the waiting publish is confirmed. */
static void test_client_publish__block_policy_confirm_is_late(void **state)
{
    (void)state;
    sl_testnode_t n;
    tc_node_start(&n, (const char *[]){"--max-length", "1", "--overflow", "block", NULL});
    sl_client_t *c = tc_client(n.endpoint);
    assert_int_equal(tc_publish(c, "narrow", "first"), SL_CONFIRM_ACCEPTED);

    sl_job_t second = {.queue = "narrow", .payload = "second", .payload_len = 6};
    int err = 0;
    sl_chan_t *p = sl_client_publish_async(c, &second, 1, sl_deadline_ms(tc_patience_ms()), &err);
    assert_non_null(p);
    void *v = NULL;
    SL_ASSERT_ERR(sl_take_until(p, &v, sl_deadline_ms(300)), SL_ETIMEDOUT); /* blocked */

    sl_chan_t *ch = sl_client_subscribe(c, "narrow", 1, &err);
    assert_non_null(ch);
    SL_ASSERT_OK(sl_take_until(ch, &v, sl_deadline_ms(tc_patience_ms())));
    sl_delivery_t *d = v;
    assert_string_equal(d->payload, "first");
    /* Stop taking jobs before the ack, so "second" stays ready (leased
     * jobs do not count towards max-length) and keeps the queue full. */
    SL_ASSERT_OK(sl_client_unsubscribe(c, "narrow", sl_deadline_ms(tc_patience_ms())));
    SL_ASSERT_OK(sl_client_ack(c, &d));

    SL_ASSERT_OK(sl_take_until(p, &v, sl_deadline_ms(tc_patience_ms())));
    sl_publish_result_t *r = v;
    assert_int_equal(r->status, SL_OK);
    assert_int_equal(r->confirms[0].status, SL_CONFIRM_ACCEPTED);
    sl_publish_result_destroy(&r);
    sl_queue_stats_t st = TC_WAIT_STATS(c, "narrow", st.acked == 1 && st.consumers == 0);
    assert_int_equal(st.depth, 1);

    /* The synchronous call waits up to its deadline, then says so. */
    sl_job_t third = {.queue = "narrow", .payload = "third", .payload_len = 5};
    sl_confirm_t cf;
    int64_t t0 = sl_now();
    SL_ASSERT_ERR(sl_client_publish(c, &third, 1, &cf, sl_deadline_ms(300)), SL_ETIMEDOUT);
    assert_true(sl_test_ms_since(t0) >= 290);
    sl_chan_destroy(&p);
    sl_chan_destroy(&ch);
    sl_client_destroy(&c);
    sl_testnode_release(&n);
}

static void test_client_publish__unreachable_node_times_out(void **state)
{
    (void)state;
    char ep[64];
    snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", sl_testnode_free_port());
    sl_client_t *c = sl_client_new(&(sl_client_opts_t){.endpoint = ep, .heartbeat_ms = 50}, NULL);
    assert_non_null(c);
    int64_t t0 = sl_now();
    SL_ASSERT_ERR(sl_client_wait_connected(c, sl_deadline_ms(200)), SL_ETIMEDOUT);
    sl_job_t j = {.queue = "q"};
    sl_confirm_t cf;
    SL_ASSERT_ERR(sl_client_publish(c, &j, 1, &cf, sl_deadline_ms(200)), SL_ETIMEDOUT);
    sl_queue_stats_t *qs = NULL;
    size_t nq = 0;
    SL_ASSERT_ERR(sl_client_stats(c, NULL, &qs, &nq, sl_deadline_ms(200)), SL_ETIMEDOUT);
    assert_true(sl_test_ms_since(t0) < 5000);
    sl_client_counters_t k;
    sl_client_counters(c, &k);
    assert_false(k.connected);
    assert_int_equal(k.pending, 0);
    t0 = sl_now();
    sl_client_destroy(&c); /* no linger towards a node that is not there */
    assert_true(sl_test_ms_since(t0) < 1000);
}

/* Requests made before the node exists are queued and answered once it
 * starts. */
static void test_client_publish__queued_until_node_starts(void **state)
{
    (void)state;
    if (!tc_node_bin())
        skip();
    int port = sl_testnode_free_port();
    char ep[64];
    snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", port);
    sl_client_t *c = sl_client_new(&(sl_client_opts_t){.endpoint = ep, .heartbeat_ms = 100}, NULL);
    assert_non_null(c);
    sl_job_t j = {.queue = "early", .payload = "hi", .payload_len = 2};
    int err = 0;
    sl_chan_t *p = sl_client_publish_async(c, &j, 1, sl_deadline_ms(tc_patience_ms()), &err);
    assert_non_null(p);

    sl_testnode_t n;
    const char *args[] = {"--heartbeat", "100ms", NULL};
    assert_int_equal(sl_testnode_start(&n, tc_node_bin(), port, args), 0);
    void *v = NULL;
    SL_ASSERT_OK(sl_take(p, &v));
    sl_publish_result_t *r = v;
    assert_int_equal(r->status, SL_OK);
    assert_int_equal(r->confirms[0].status, SL_CONFIRM_ACCEPTED);
    sl_publish_result_destroy(&r);
    sl_chan_destroy(&p);
    assert_int_equal(tc_stats(c, "early").depth, 1);
    sl_client_destroy(&c);
    sl_testnode_release(&n);
}

/* A publish left unconfirmed (blocked on a full queue) when the node dies
 * is sent again to the restarted node, which confirms it. */
static void test_client_publish__resent_after_node_restart(void **state)
{
    (void)state;
    sl_testnode_t n;
    tc_node_start(&n, (const char *[]){"--max-length", "1", NULL});
    sl_client_t *c = tc_client(n.endpoint);
    assert_int_equal(tc_publish(c, "r", "fills the queue"), SL_CONFIRM_ACCEPTED);
    sl_job_t j = {.queue = "r", .payload = "waits", .payload_len = 5};
    SL_ASSERT_OK(sl_id_new(j.id));
    int err = 0;
    sl_chan_t *p = sl_client_publish_async(c, &j, 1, sl_deadline_ms(tc_patience_ms() * 2), &err);
    assert_non_null(p);
    void *v = NULL;
    SL_ASSERT_ERR(sl_take_until(p, &v, sl_deadline_ms(200)), SL_ETIMEDOUT);
    uint64_t old_epoch = n.epoch;

    sl_testnode_stop(&n, SIGKILL);
    assert_int_equal(sl_testnode_restart(&n), 0);
    assert_int_not_equal(n.epoch, old_epoch);

    SL_ASSERT_OK(sl_take(p, &v)); /* the new node has room */
    sl_publish_result_t *r = v;
    assert_int_equal(r->status, SL_OK);
    assert_int_equal(r->confirms[0].status, SL_CONFIRM_ACCEPTED);
    assert_memory_equal(r->confirms[0].id, j.id, SL_ID_LEN);
    sl_publish_result_destroy(&r);
    sl_chan_destroy(&p);

    sl_queue_stats_t st = tc_stats(c, "r");
    assert_int_equal(st.depth, 1); /* only the resent job: the node lost the first */
    sl_client_counters_t k;
    sl_client_counters(c, &k);
    assert_true(k.resent >= 1);
    assert_true(k.sessions >= 2);
    TC_WAIT_TRUE((sl_client_counters(c, &k), k.epoch == n.epoch));
    sl_client_destroy(&c);
    sl_testnode_release(&n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_client_publish__confirms_each_job_in_order),
        cmocka_unit_test(test_client_publish__same_id_or_key_is_duplicate),
        cmocka_unit_test(test_client_publish__bad_arguments_fail_before_sending),
        cmocka_unit_test(test_client_publish__async_promises_deliver_every_result),
        cmocka_unit_test(test_client_publish__drop_new_rejects_when_full),
        cmocka_unit_test(test_client_publish__block_policy_confirm_is_late),
        cmocka_unit_test(test_client_publish__unreachable_node_times_out),
        cmocka_unit_test(test_client_publish__queued_until_node_starts),
        cmocka_unit_test(test_client_publish__resent_after_node_restart),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
