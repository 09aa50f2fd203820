/* client_prefetch_test.c -- sl_client_consume_ex's prefetch against a real
 * sluice-node: the node may have concurrency + prefetch jobs out to the
 * client, never more than `concurrency` handlers run at once, every job is
 * acked, and unsubscribing waits for the running handlers and gives the
 * prefetched jobs back without running them. */
#define _GNU_SOURCE
#include <stdatomic.h>
#include <string.h>

#include "testlib.h"
#include "testclient.h"

typedef struct {
    atomic_int calls, running, max_running, done;
    int sleep_ms;
} s_counts_t;

static int s_handler(sl_client_t *client, sl_delivery_t *d, void *arg)
{
    (void)client;
    (void)d;
    s_counts_t *k = arg;
    int now = atomic_fetch_add(&k->running, 1) + 1;
    int max = atomic_load(&k->max_running);
    while (now > max && !atomic_compare_exchange_weak(&k->max_running, &max, now))
        ;
    atomic_fetch_add(&k->calls, 1);
    sl_sleep_ms(k->sleep_ms);
    atomic_fetch_sub(&k->running, 1);
    atomic_fetch_add(&k->done, 1);
    return SL_JOB_ACK;
}

static void s_publish_n(sl_client_t *c, const char *queue, int n)
{
    for (int i = 0; i < n; i++) {
        char text[16];
        snprintf(text, sizeof text, "job-%d", i);
        assert_int_equal(tc_publish(c, queue, text), SL_CONFIRM_ACCEPTED);
    }
}

static void test_client_prefetch__bad_options_are_refused(void **state)
{
    (void)state;
    sl_testnode_t n;
    tc_node_start(&n, NULL);
    sl_client_t *c = tc_client(n.endpoint);
    s_counts_t k = {0};
    SL_ASSERT_ERR(sl_client_consume_ex(c, "q", NULL, s_handler, &k), SL_EINVAL);
    sl_consume_opts_t o = {.concurrency = 0, .prefetch = 4};
    SL_ASSERT_ERR(sl_client_consume_ex(c, "q", &o, s_handler, &k), SL_EINVAL);
    o = (sl_consume_opts_t){.concurrency = 2, .prefetch = UINT32_MAX};
    SL_ASSERT_ERR(sl_client_consume_ex(c, "q", &o, s_handler, &k), SL_EINVAL);
    o = (sl_consume_opts_t){.concurrency = 2, .flags = 1 << 7};
    SL_ASSERT_ERR(sl_client_consume_ex(c, "q", &o, s_handler, &k), SL_EINVAL);
    sl_client_destroy(&c);
    sl_testnode_release(&n);
}

static void test_client_prefetch__credit_is_concurrency_plus_prefetch(void **state)
{
    (void)state;
    sl_testnode_t n;
    tc_node_start(&n, NULL);
    sl_client_t *c = tc_client(n.endpoint);
    enum { JOBS = 30, CONC = 2, PREFETCH = 3 };
    s_publish_n(c, "pre", JOBS);
    s_counts_t k = {.sleep_ms = 40};
    sl_consume_opts_t o = {.concurrency = CONC, .prefetch = PREFETCH};
    SL_ASSERT_OK(sl_client_consume_ex(c, "pre", &o, s_handler, &k));
    SL_ASSERT_ERR(sl_client_consume_ex(c, "pre", &o, s_handler, &k), SL_ESTATE);
    /* The node hands out the whole window, and never more. */
    uint64_t max_in_flight = 0;
    int64_t end = sl_deadline_ms(tc_patience_ms());
    for (;;) {
        sl_queue_stats_t st = tc_stats(c, "pre");
        if (st.in_flight > max_in_flight)
            max_in_flight = st.in_flight;
        if (st.acked == JOBS)
            break;
        if (sl_now() > end)
            fail_msg("not every job acked in time (acked %llu)", (unsigned long long)st.acked);
        sl_sleep_ms(5);
    }
    assert_int_equal(max_in_flight, CONC + PREFETCH);
    assert_int_equal(atomic_load(&k.calls), JOBS);
    assert_int_equal(atomic_load(&k.max_running), CONC);
    sl_queue_stats_t st = tc_stats(c, "pre");
    assert_int_equal(st.in_flight, 0);
    assert_int_equal(st.failed, 0);
    sl_client_counters_t cnt;
    sl_client_counters(c, &cnt);
    assert_int_equal(cnt.delivered, JOBS);
    assert_int_equal(cnt.stale_leases, 0);
    SL_ASSERT_OK(sl_client_unsubscribe(c, "pre", sl_deadline_ms(tc_patience_ms())));
    sl_client_destroy(&c);
    sl_testnode_release(&n);
}

static void test_client_prefetch__unsubscribe_waits_and_gives_back_the_rest(void **state)
{
    (void)state;
    sl_testnode_t n;
    tc_node_start(&n, (const char *[]){"--backoff-base", "10ms", NULL});
    sl_client_t *c = tc_client(n.endpoint);
    enum { JOBS = 10, PREFETCH = 4 };
    s_publish_n(c, "stop", JOBS);
    s_counts_t k = {.sleep_ms = 150};
    sl_consume_opts_t o = {.concurrency = 1, .prefetch = PREFETCH, .flags = 0};
    SL_ASSERT_OK(sl_client_consume_ex(c, "stop", &o, s_handler, &k));
    TC_WAIT_STATS(c, "stop", st.in_flight == 1 + PREFETCH);
    TC_WAIT_TRUE(atomic_load(&k.running) == 1);
    SL_ASSERT_OK(sl_client_unsubscribe(c, "stop", sl_deadline_ms(tc_patience_ms())));
    /* Returned only once the running handler had ended; nothing else ran. */
    assert_int_equal(atomic_load(&k.running), 0);
    int ran = atomic_load(&k.done);
    assert_true(ran >= 1 && ran <= 2);
    assert_int_equal(atomic_load(&k.calls), ran);
    sl_queue_stats_t st = TC_WAIT_STATS(c, "stop", st.in_flight == 0);
    assert_int_equal(st.acked, (uint64_t)ran);
    assert_int_equal(st.dead, 0);

    /* The jobs given back are delivered again, and acked. */
    s_counts_t k2 = {.sleep_ms = 1};
    SL_ASSERT_OK(sl_client_consume(c, "stop", 4, s_handler, &k2, 0));
    TC_WAIT_STATS(c, "stop", st.acked == JOBS);
    assert_int_equal(atomic_load(&k2.calls), JOBS - ran);
    sl_client_destroy(&c);
    sl_testnode_release(&n);
}

static void test_client_prefetch__destroy_waits_for_handlers(void **state)
{
    (void)state;
    sl_testnode_t n;
    tc_node_start(&n, NULL);
    sl_client_t *c = tc_client(n.endpoint);
    sl_client_t *watcher = tc_client(n.endpoint);
    s_publish_n(c, "end", 6);
    s_counts_t k = {.sleep_ms = 100};
    sl_consume_opts_t o = {.concurrency = 2, .prefetch = 4, .flags = 0};
    SL_ASSERT_OK(sl_client_consume_ex(c, "end", &o, s_handler, &k));
    TC_WAIT_TRUE(atomic_load(&k.running) == 2);
    sl_client_destroy(&c);
    assert_int_equal(atomic_load(&k.running), 0);
    int ran = atomic_load(&k.done);
    sl_queue_stats_t st = TC_WAIT_STATS(watcher, "end", st.in_flight == 0);
    assert_int_equal(st.acked, (uint64_t)ran); /* the handlers' acks went out */
    assert_int_equal(st.acked + st.depth + st.delayed, 6);
    sl_client_destroy(&watcher);
    sl_testnode_release(&n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_client_prefetch__bad_options_are_refused),
        cmocka_unit_test(test_client_prefetch__credit_is_concurrency_plus_prefetch),
        cmocka_unit_test(test_client_prefetch__unsubscribe_waits_and_gives_back_the_rest),
        cmocka_unit_test(test_client_prefetch__destroy_waits_for_handlers),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    sl_sched_shutdown(5000);
    return rc;
}
