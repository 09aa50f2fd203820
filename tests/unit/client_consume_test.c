/* client_consume_test.c -- libsluice's consumer side against a real
 * sluice-node: handlers as coroutines and on the blocking pool, the
 * concurrency bound, retry and permanent failure, the subscribe channel
 * with explicit acks and its credit window, touch, a graceful unsubscribe
 * whose acks still count, and resubscribing after a node restart. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "testlib.h"
#include "testclient.h"

typedef struct {
    atomic_int calls, running, max_running, acked_attempt2;
    int sleep_ms;
    int verdict_first;      /* verdict on attempt 1; later attempts ack */
    bool block_thread;      /* usleep instead of parking */
    char seen[64][8];
} s_counts_t;

static int s_handler(sl_client_t *client, sl_delivery_t *d, void *arg)
{
    (void)client;
    s_counts_t *k = arg;
    int now = atomic_fetch_add(&k->running, 1) + 1;
    int max = atomic_load(&k->max_running);
    while (now > max && !atomic_compare_exchange_weak(&k->max_running, &max, now))
        ;
    int i = atomic_fetch_add(&k->calls, 1);
    if (i < 64)
        snprintf(k->seen[i], sizeof k->seen[i], "%.*s", (int)d->payload_len,
                 (const char *)d->payload);
    if (k->sleep_ms) {
        if (k->block_thread)
            usleep((useconds_t)k->sleep_ms * 1000);
        else
            sl_sleep_ms(k->sleep_ms);
    }
    atomic_fetch_sub(&k->running, 1);
    if (d->attempt == 1 && k->verdict_first != SL_JOB_ACK) {
        sl_delivery_set_error(d, "first attempt refused");
        return k->verdict_first;
    }
    if (d->attempt == 2)
        atomic_fetch_add(&k->acked_attempt2, 1);
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

static void test_client_consume__coroutines_ack_every_job_within_concurrency(void **state)
{
    (void)state;
    sl_testnode_t n;
    tc_node_start(&n, NULL);
    sl_client_t *c = tc_client(n.endpoint);
    s_publish_n(c, "work", 30);
    s_counts_t k = {.sleep_ms = 20};
    SL_ASSERT_OK(sl_client_consume(c, "work", 3, s_handler, &k, 0));
    SL_ASSERT_ERR(sl_client_consume(c, "work", 3, s_handler, &k, 0), SL_ESTATE);
    sl_queue_stats_t st = TC_WAIT_STATS(c, "work", st.acked == 30);
    assert_int_equal(st.depth, 0);
    assert_int_equal(st.in_flight, 0);
    assert_int_equal(atomic_load(&k.calls), 30);
    assert_true(atomic_load(&k.max_running) <= 3);
    assert_true(atomic_load(&k.max_running) >= 2); /* they did run side by side */
    SL_ASSERT_OK(sl_client_unsubscribe(c, "work", sl_deadline_ms(tc_patience_ms())));
    SL_ASSERT_ERR(sl_client_unsubscribe(c, "work", sl_deadline_ms(100)), SL_ENOTFOUND);
    sl_client_counters_t cnt;
    sl_client_counters(c, &cnt);
    assert_int_equal(cnt.stale_leases, 0);
    assert_int_equal(cnt.delivered, 30);
    sl_client_destroy(&c);
    sl_testnode_release(&n);
}

static void test_client_consume__blocking_pool_handlers(void **state)
{
    (void)state;
    sl_testnode_t n;
    tc_node_start(&n, NULL);
    sl_client_t *c = tc_client(n.endpoint);
    s_publish_n(c, "slow", 8);
    s_counts_t k = {.sleep_ms = 30, .block_thread = true};
    SL_ASSERT_OK(sl_client_consume(c, "slow", 4, s_handler, &k, SL_CONSUME_BLOCKING));
    TC_WAIT_STATS(c, "slow", st.acked == 8);
    assert_true(atomic_load(&k.max_running) <= 4);
    assert_true(atomic_load(&k.max_running) >= 2);
    sl_client_destroy(&c); /* stops the consumer too */
    sl_testnode_release(&n);
}

static void test_client_consume__retryable_failure_is_delivered_again(void **state)
{
    (void)state;
    sl_testnode_t n;
    tc_node_start(&n, (const char *[]){"--backoff-base", "10ms", NULL});
    sl_client_t *c = tc_client(n.endpoint);
    s_publish_n(c, "flaky", 3);
    s_counts_t k = {.verdict_first = SL_JOB_RETRY};
    SL_ASSERT_OK(sl_client_consume(c, "flaky", 2, s_handler, &k, 0));
    sl_queue_stats_t st = TC_WAIT_STATS(c, "flaky", st.acked == 3);
    assert_int_equal(st.failed, 3);
    assert_int_equal(st.retried, 3);
    assert_int_equal(st.dead, 0);
    assert_int_equal(atomic_load(&k.acked_attempt2), 3);
    sl_client_destroy(&c);
    sl_testnode_release(&n);
}

static void test_client_consume__permanent_failure_goes_dead(void **state)
{
    (void)state;
    sl_testnode_t n;
    tc_node_start(&n, NULL);
    sl_client_t *c = tc_client(n.endpoint);
    s_publish_n(c, "doomed", 2);
    s_counts_t k = {.verdict_first = SL_JOB_FAIL};
    SL_ASSERT_OK(sl_client_consume(c, "doomed", 1, s_handler, &k, 0));
    sl_queue_stats_t st = TC_WAIT_STATS(c, "doomed", st.dead == 2);
    assert_int_equal(st.acked, 0);
    assert_int_equal(st.depth, 0);
    assert_int_equal(atomic_load(&k.calls), 2);
    sl_client_destroy(&c);
    sl_testnode_release(&n);
}

/* The subscribe channel never holds more than the credit: with credit 2
 * and nothing acked, a third delivery does not come; each ack lets one
 * more through. Payloads arrive intact and in priority order. */
static void test_client_consume__subscribe_window_and_explicit_ack(void **state)
{
    (void)state;
    sl_testnode_t n;
    tc_node_start(&n, NULL);
    sl_client_t *c = tc_client(n.endpoint);
    s_publish_n(c, "win", 4);
    sl_job_t urgent = {.queue = "win", .payload = "urgent", .payload_len = 6, .priority = 9};
    SL_ASSERT_OK(sl_id_new(urgent.id));
    sl_header_t h = {"trace", "abc"};
    urgent.headers = &h;
    urgent.n_headers = 1;
    sl_confirm_t cf;
    SL_ASSERT_OK(sl_client_publish(c, &urgent, 1, &cf, sl_deadline_ms(tc_patience_ms())));

    int err = 0;
    sl_chan_t *ch = sl_client_subscribe(c, "win", 2, &err);
    assert_non_null(ch);
    assert_null(sl_client_subscribe(c, "win", 2, &err));
    assert_int_equal(err, SL_ESTATE);
    void *v;
    sl_delivery_t *d[5];
    SL_ASSERT_OK(sl_take_until(ch, &v, sl_deadline_ms(tc_patience_ms())));
    d[0] = v;
    assert_string_equal(d[0]->payload, "urgent");
    assert_memory_equal(d[0]->id, urgent.id, SL_ID_LEN);
    assert_int_equal(d[0]->priority, 9);
    assert_int_equal(d[0]->attempt, 1);
    assert_string_equal(d[0]->queue, "win");
    assert_int_equal(d[0]->n_headers, 1);
    assert_string_equal(d[0]->headers[0].key, "trace");
    assert_string_equal(d[0]->headers[0].value, "abc");
    assert_true(d[0]->lease_expires_ms > 0);
    SL_ASSERT_OK(sl_take_until(ch, &v, sl_deadline_ms(tc_patience_ms())));
    d[1] = v;
    assert_string_equal(d[1]->payload, "job-0");
    SL_ASSERT_ERR(sl_take_until(ch, &v, sl_deadline_ms(300)), SL_ETIMEDOUT);
    assert_int_equal(tc_stats(c, "win").in_flight, 2);

    SL_ASSERT_OK(sl_client_ack(c, &d[0]));
    assert_null(d[0]);
    SL_ASSERT_OK(sl_take_until(ch, &v, sl_deadline_ms(tc_patience_ms())));
    d[2] = v;
    assert_string_equal(d[2]->payload, "job-1");
    SL_ASSERT_ERR(sl_take_until(ch, &v, sl_deadline_ms(200)), SL_ETIMEDOUT);
    SL_ASSERT_ERR(sl_client_ack(c, NULL), SL_EINVAL);

    SL_ASSERT_OK(sl_client_ack(c, &d[1]));
    SL_ASSERT_OK(sl_client_ack(c, &d[2]));
    for (int i = 3; i < 5; i++) {
        SL_ASSERT_OK(sl_take_until(ch, &v, sl_deadline_ms(tc_patience_ms())));
        d[i] = v;
        SL_ASSERT_OK(sl_client_ack(c, &d[i]));
    }
    TC_WAIT_STATS(c, "win", st.acked == 5 && st.in_flight == 0);
    SL_ASSERT_OK(sl_client_unsubscribe(c, "win", sl_deadline_ms(tc_patience_ms())));
    SL_ASSERT_ERR(sl_take_until(ch, &v, sl_deadline_ms(tc_patience_ms())), SL_ECLOSED);
    TC_WAIT_STATS(c, "win", st.consumers == 0);
    sl_chan_destroy(&ch);
    sl_client_destroy(&c);
    sl_testnode_release(&n);
}

/* With a 300 ms lease, touching keeps the job ours past the original
 * expiry; an untouched one expires and its touch is stale. */
static void test_client_consume__touch_extends_the_lease(void **state)
{
    (void)state;
    sl_testnode_t n;
    tc_node_start(&n, (const char *[]){"--lease", "300ms", NULL});
    sl_client_t *c = tc_client(n.endpoint);
    s_publish_n(c, "long", 1);
    int err = 0;
    sl_chan_t *ch = sl_client_subscribe(c, "long", 1, &err);
    assert_non_null(ch);
    void *v;
    SL_ASSERT_OK(sl_take_until(ch, &v, sl_deadline_ms(tc_patience_ms())));
    sl_delivery_t *d = v;
    int64_t first = d->lease_expires_ms;
    for (int i = 0; i < 4; i++) { /* 4 x 150 ms: twice the lease */
        sl_sleep_ms(150);
        SL_ASSERT_OK(sl_client_touch(c, d, 0, sl_deadline_ms(tc_patience_ms())));
    }
    assert_true(d->lease_expires_ms > first);
    assert_int_equal(tc_stats(c, "long").in_flight, 1);
    SL_ASSERT_OK(sl_client_ack(c, &d));
    sl_queue_stats_t st = TC_WAIT_STATS(c, "long", st.acked == 1);
    assert_int_equal(st.delivered, 1);

    /* Now let one expire: the node redelivers it (attempt 2; the window
     * of 2 has room, as the first delivery is still ours until we answer
     * it) and the old lease is stale. */
    sl_chan_t *ch2 = sl_client_subscribe(c, "short", 2, &err);
    assert_non_null(ch2);
    s_publish_n(c, "short", 1);
    SL_ASSERT_OK(sl_take_until(ch2, &v, sl_deadline_ms(tc_patience_ms())));
    sl_delivery_t *old = v;
    SL_ASSERT_OK(sl_take_until(ch2, &v, sl_deadline_ms(tc_patience_ms()))); /* redelivery */
    sl_delivery_t *again = v;
    assert_memory_equal(again->id, old->id, SL_ID_LEN);
    assert_int_equal(again->attempt, 2);
    SL_ASSERT_ERR(sl_client_touch(c, old, 0, sl_deadline_ms(tc_patience_ms())), SL_ENOTFOUND);
    SL_ASSERT_OK(sl_client_ack(c, &old)); /* refused by the node, counted */
    SL_ASSERT_OK(sl_client_ack(c, &again));
    TC_WAIT_STATS(c, "short", st.acked == 1);
    sl_client_counters_t k;
    TC_WAIT_TRUE((sl_client_counters(c, &k), k.stale_leases >= 2));
    sl_chan_destroy(&ch2);
    sl_chan_destroy(&ch);
    sl_client_destroy(&c);
    sl_testnode_release(&n);
}

/* Unsubscribe lets running handlers finish and their acks count: the node
 * is not told to forget the consumer (which would requeue the jobs) until
 * they are done. */
static void test_client_consume__unsubscribe_waits_and_acks_count(void **state)
{
    (void)state;
    sl_testnode_t n;
    tc_node_start(&n, NULL);
    sl_client_t *c = tc_client(n.endpoint);
    s_publish_n(c, "grace", 2);
    s_counts_t k = {.sleep_ms = 300};
    SL_ASSERT_OK(sl_client_consume(c, "grace", 2, s_handler, &k, 0));
    TC_WAIT_TRUE(atomic_load(&k.calls) == 2);
    int64_t t0 = sl_now();
    SL_ASSERT_OK(sl_client_unsubscribe(c, "grace", sl_deadline_ms(tc_patience_ms())));
    assert_true(sl_test_ms_since(t0) >= 100); /* it waited for the handlers */
    sl_queue_stats_t st = TC_WAIT_STATS(c, "grace", st.acked == 2);
    assert_int_equal(st.depth, 0);
    sl_client_counters_t cnt;
    sl_client_counters(c, &cnt);
    assert_int_equal(cnt.stale_leases, 0);
    TC_WAIT_STATS(c, "grace", st.consumers == 0);
    /* No more deliveries after unsubscribing. */
    s_publish_n(c, "grace", 1);
    sl_sleep_ms(200);
    assert_int_equal(atomic_load(&k.calls), 2);
    assert_int_equal(tc_stats(c, "grace").depth, 1);
    sl_client_destroy(&c);
    sl_testnode_release(&n);
}

/* Unsubscribing while a handler still runs, then subscribing again at
 * once: the old subscription's final Unsubscribe must not cancel the new
 * one at the node. */
static void test_client_consume__resubscribe_while_old_handlers_finish(void **state)
{
    (void)state;
    sl_testnode_t n;
    tc_node_start(&n, NULL);
    sl_client_t *c = tc_client(n.endpoint);
    s_publish_n(c, "again", 1);
    s_counts_t k = {.sleep_ms = 300};
    SL_ASSERT_OK(sl_client_consume(c, "again", 1, s_handler, &k, 0));
    TC_WAIT_TRUE(atomic_load(&k.calls) == 1);
    SL_ASSERT_ERR(sl_client_unsubscribe(c, "again", sl_now()), SL_ETIMEDOUT);
    int err = 0;
    sl_chan_t *ch = sl_client_subscribe(c, "again", 1, &err);
    assert_non_null(ch);
    TC_WAIT_STATS(c, "again", st.acked == 1); /* the old handler's ack counts */
    s_publish_n(c, "again", 1);
    void *v;
    SL_ASSERT_OK(sl_take_until(ch, &v, sl_deadline_ms(tc_patience_ms())));
    sl_delivery_t *d = v;
    assert_string_equal(d->payload, "job-0");
    SL_ASSERT_OK(sl_client_ack(c, &d));
    sl_queue_stats_t st = TC_WAIT_STATS(c, "again", st.acked == 2);
    assert_int_equal(st.consumers, 1);
    assert_int_equal(atomic_load(&k.calls), 1);
    sl_chan_destroy(&ch);
    sl_client_destroy(&c);
    sl_testnode_release(&n);
}

/* After the node restarts (new epoch, new connection) the consumer is
 * subscribed again without being asked. */
static void test_client_consume__resubscribes_after_node_restart(void **state)
{
    (void)state;
    sl_testnode_t n;
    tc_node_start(&n, NULL);
    sl_client_t *c = tc_client(n.endpoint);
    s_counts_t k = {0};
    SL_ASSERT_OK(sl_client_consume(c, "phoenix", 2, s_handler, &k, 0));
    s_publish_n(c, "phoenix", 1);
    TC_WAIT_TRUE(atomic_load(&k.calls) == 1);

    sl_testnode_stop(&n, SIGKILL);
    assert_int_equal(sl_testnode_restart(&n), 0);
    sl_client_counters_t cnt;
    TC_WAIT_TRUE((sl_client_counters(c, &cnt), cnt.epoch == n.epoch && cnt.connected));

    sl_client_t *producer = tc_client(n.endpoint);
    s_publish_n(producer, "phoenix", 3);
    TC_WAIT_STATS(producer, "phoenix", st.acked == 3);
    assert_int_equal(atomic_load(&k.calls), 4);
    assert_int_equal(tc_stats(producer, "phoenix").consumers, 1);
    sl_client_destroy(&producer);
    sl_client_destroy(&c);
    sl_testnode_release(&n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_client_consume__coroutines_ack_every_job_within_concurrency),
        cmocka_unit_test(test_client_consume__blocking_pool_handlers),
        cmocka_unit_test(test_client_consume__retryable_failure_is_delivered_again),
        cmocka_unit_test(test_client_consume__permanent_failure_goes_dead),
        cmocka_unit_test(test_client_consume__subscribe_window_and_explicit_ack),
        cmocka_unit_test(test_client_consume__touch_extends_the_lease),
        cmocka_unit_test(test_client_consume__unsubscribe_waits_and_acks_count),
        cmocka_unit_test(test_client_consume__resubscribe_while_old_handlers_finish),
        cmocka_unit_test(test_client_consume__resubscribes_after_node_restart),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    sl_sched_shutdown(5000);
    return rc;
}
