/* node_retry_test.c -- failures and time on an embedded node over a real
 * DEALER socket: retryable fails come back after the backoff with the
 * attempt counted and the error carried, then go dead; permanent fails go
 * dead at once; delayed jobs wait for not_before; jobs past their deadline
 * go dead "expired" and are never delivered. */
#include <stdio.h>
#include <string.h>

#include "node_peer.h"
#include "sluice/wire.h"
#include "testlib.h"

#define DELIVER SLUICE__V1__ENVELOPE__BODY_DELIVER
#define BACKOFF_BASE 200

static void s_publish(node_peer_t *p, uint32_t first, uint32_t count)
{
    node_job_t js[8];
    assert_true(count <= 8);
    for (uint32_t i = 0; i < count; i++)
        js[i] = (node_job_t){.id = first + i};
    int st[8];
    node_peer_publish_ok(p, js, count, st, node_test_patience());
    for (uint32_t i = 0; i < count; i++)
        assert_int_equal(st[i], SLUICE__V1__JOB_CONFIRM__STATUS__ACCEPTED);
}

static node_peer_t *s_start(int64_t backoff_base)
{
    sl_node_opts_t o;
    node_test_opts(&o);
    o.max_attempts = 3;
    o.backoff_base_ms = backoff_base;
    o.backoff_max_ms = 10 * backoff_base;
    node_fx_start(&o);
    return node_fx_peer();
}

static int64_t s_quiet_ms(void)
{
    return sl_test_sanitized() ? 800 : 400;
}

static void test_node_retry__backoff_attempts_then_dead(void **state)
{
    node_peer_t *p = s_start(BACKOFF_BASE);
    s_publish(p, 1, 1);
    SL_ASSERT_OK(node_peer_subscribe(p, "q", 10));
    node_dlv_t d;
    assert_int_equal(node_peer_deliveries(p, &d, 1, node_test_patience()), 1);
    assert_int_equal(d.attempt, 1);
    assert_int_equal(d.max_attempts, 3);
    assert_string_equal(d.last_error, "");

    /* Attempt n waits at most base * 2^(n-1) (full jitter: from 0). */
    for (uint32_t attempt = 1; attempt < 3; attempt++) {
        char err[32];
        snprintf(err, sizeof err, "boom %u", attempt);
        int64_t t0 = sl_now();
        node_peer_fail(p, &d, true, err);
        node_dlv_t next;
        assert_int_equal(node_peer_deliveries(p, &next, 1, 20 * BACKOFF_BASE), 1);
        double waited = (double)(next.at - t0) / 1e6;
        double max = (double)BACKOFF_BASE * (1 << (attempt - 1));
        if (waited > max + (sl_test_sanitized() ? 600 : 300))
            fail_msg("attempt %u retried after %.1f ms, backoff at most %.0f ms", attempt + 1,
                     waited, max);
        assert_int_equal(next.id, 1);
        assert_int_equal(next.attempt, attempt + 1);
        assert_string_equal(next.last_error, err);
        assert_int_not_equal(next.lease_id, d.lease_id);
        d = next;
    }

    Sluice__V1__QueueStats st;
    node_peer_stats(p, "q", &st);
    assert_int_equal(st.failed, 2);
    assert_int_equal(st.retried, 2);
    assert_int_equal(st.in_flight, 1);

    /* The last attempt fails: dead, and never delivered again. */
    node_peer_fail(p, &d, true, "boom 3");
    NODE_WAIT_STATS(p, "q", st, st.dead == 1, node_test_patience());
    assert_int_equal(st.failed, 3);
    assert_int_equal(st.retried, 2);
    assert_int_equal(st.in_flight, 0);
    assert_int_equal(st.depth, 0);
    assert_int_equal(st.delayed, 0);
    assert_int_equal(st.acked, 0);
    assert_int_equal(node_peer_count(p, DELIVER, 4 * BACKOFF_BASE), 0);
}

/* Full jitter (docs/protocol.md): each first retry waits a uniformly
 * random time between 0 and backoff-base, so among 30 jobs some wait less
 * than half of it (all would wait at least half under "equal" jitter; the
 * chance that full jitter puts all 30 in the upper half is 2^-30). */
static void test_node_retry__full_jitter(void **state)
{
    (void)state;
    enum { N = 30 };
    node_peer_t *p = s_start(BACKOFF_BASE);
    for (uint32_t i = 1; i <= N; i++)
        s_publish(p, i, 1);
    SL_ASSERT_OK(node_peer_subscribe(p, "q", 2 * N));
    node_dlv_t d[N], next[N];
    assert_int_equal(node_peer_deliveries(p, d, N, node_test_patience()), N);
    int64_t failed_at[N + 1] = {0};
    for (int i = 0; i < N; i++) {
        failed_at[d[i].id] = sl_now();
        node_peer_fail(p, &d[i], true, "once");
    }
    assert_int_equal(node_peer_deliveries(p, next, N, 20 * BACKOFF_BASE), N);
    int early = 0;
    for (int i = 0; i < N; i++) {
        double waited = (double)(next[i].at - failed_at[next[i].id]) / 1e6;
        if (waited > BACKOFF_BASE + (sl_test_sanitized() ? 600 : 300))
            fail_msg("job %u retried after %.1f ms, backoff-base %d", (unsigned)next[i].id,
                     waited, BACKOFF_BASE);
        if (waited < BACKOFF_BASE / 2)
            early++;
    }
    if (early == 0)
        fail_msg("no retry of %d came before half of backoff-base: not full jitter", N);
}

static void test_node_retry__not_retryable_dead_at_once(void **state)
{
    node_peer_t *p = s_start(BACKOFF_BASE);
    s_publish(p, 1, 2);
    SL_ASSERT_OK(node_peer_subscribe(p, "q", 10));
    node_dlv_t d[2];
    assert_int_equal(node_peer_deliveries(p, d, 2, node_test_patience()), 2);
    node_peer_fail(p, &d[0], false, "bad input");
    Sluice__V1__QueueStats st;
    NODE_WAIT_STATS(p, "q", st, st.dead == 1, node_test_patience());
    assert_int_equal(st.failed, 1);
    assert_int_equal(st.retried, 0);
    assert_int_equal(st.in_flight, 1);
    assert_int_equal(st.delayed, 0);
    assert_int_equal(node_peer_count(p, DELIVER, 2 * BACKOFF_BASE + 100), 0);
    node_peer_ack(p, &d[1]);
    NODE_WAIT_STATS(p, "q", st, st.acked == 1, node_test_patience());
    assert_int_equal(st.dead, 1);
}

/* A job's own max_attempts overrides the node's. */
static void test_node_retry__job_max_attempts(void **state)
{
    node_peer_t *p = s_start(BACKOFF_BASE);
    node_peer_publish_ok(p, &(node_job_t){.id = 1, .max_attempts = 1}, 1, NULL,
                         node_test_patience());
    SL_ASSERT_OK(node_peer_subscribe(p, "q", 10));
    node_dlv_t d;
    assert_int_equal(node_peer_deliveries(p, &d, 1, node_test_patience()), 1);
    assert_int_equal(d.max_attempts, 1);
    node_peer_fail(p, &d, true, "once is enough");
    Sluice__V1__QueueStats st;
    NODE_WAIT_STATS(p, "q", st, st.dead == 1, node_test_patience());
    assert_int_equal(st.retried, 0);
    assert_int_equal(node_peer_count(p, DELIVER, 2 * BACKOFF_BASE), 0);
}

static void test_node_retry__delayed_job_waits_for_not_before(void **state)
{
    node_peer_t *p = s_start(BACKOFF_BASE);
    SL_ASSERT_OK(node_peer_subscribe(p, "q", 10));
    int64_t not_before = node_wall_ms() + 300;
    node_job_t jobs[2] = {{.id = 1, .not_before_ms = not_before}, {.id = 2}};
    int stt[2];
    node_peer_publish_ok(p, jobs, 2, stt, node_test_patience());
    assert_int_equal(stt[0], SLUICE__V1__JOB_CONFIRM__STATUS__ACCEPTED);

    /* The undelayed job flows at once; the delayed one only after. */
    node_dlv_t d;
    assert_int_equal(node_peer_deliveries(p, &d, 1, node_test_patience()), 1);
    assert_int_equal(d.id, 2);
    if (node_wall_ms() < not_before - 50) {
        Sluice__V1__QueueStats st;
        node_peer_stats(p, "q", &st);
        assert_int_equal(st.delayed, 1);
        assert_int_equal(st.depth, 0);
    }
    assert_int_equal(node_peer_deliveries(p, &d, 1, 300 + node_test_patience()), 1);
    int64_t arrived = node_wall_ms();
    assert_int_equal(d.id, 1);
    /* The node keeps time in whole milliseconds on two clocks: 2 ms slack. */
    if (arrived < not_before - 2)
        fail_msg("delayed job delivered %lld ms before not_before",
                 (long long)(not_before - arrived));
    assert_int_equal(d.attempt, 1);
}

static void test_node_retry__past_deadline_dead_expired(void **state)
{
    node_peer_t *p = s_start(BACKOFF_BASE);
    SL_ASSERT_OK(node_peer_subscribe(p, "q", 10));
    node_job_t jobs[2] = {{.id = 1, .deadline_ms = node_wall_ms() - 1000}, {.id = 2}};
    int stt[2];
    node_peer_publish_ok(p, jobs, 2, stt, node_test_patience());
    node_dlv_t d;
    assert_int_equal(node_peer_deliveries(p, &d, 1, node_test_patience()), 1);
    assert_int_equal(d.id, 2);
    Sluice__V1__QueueStats st;
    NODE_WAIT_STATS(p, "q", st, st.expired == 1, node_test_patience());
    assert_int_equal(st.dead, 1);
    assert_int_equal(node_peer_count(p, DELIVER, s_quiet_ms()), 0);
}

/* A job whose deadline passes while no consumer is there is never
 * delivered to the consumer that comes later. */
static void test_node_retry__never_delivered_after_deadline(void **state)
{
    node_peer_t *p = s_start(BACKOFF_BASE);
    int64_t deadline = node_wall_ms() + 200;
    node_job_t jobs[2] = {{.id = 1, .deadline_ms = deadline}, {.id = 2}};
    node_peer_publish_ok(p, jobs, 2, NULL, node_test_patience());
    while (node_wall_ms() <= deadline + 20)
        sl_sleep_ms(10);
    SL_ASSERT_OK(node_peer_subscribe(p, "q", 10));
    node_dlv_t d;
    assert_int_equal(node_peer_deliveries(p, &d, 1, node_test_patience()), 1);
    assert_int_equal(d.id, 2);
    assert_int_equal(node_peer_count(p, DELIVER, s_quiet_ms()), 0);
    Sluice__V1__QueueStats st;
    NODE_WAIT_STATS(p, "q", st, st.expired == 1, node_test_patience());
    assert_int_equal(st.dead, 1);
    assert_int_equal(st.depth, 0);
}

/* docs/protocol.md: "On a job's deadline_ms passing while it is READY,
 * DELAYED or in RETRY-WAIT: it goes DEAD with reason expired" -- whether
 * or not a consumer ever asks for the queue. */
static void test_node_retry__ready_job_expires_without_consumer(void **state)
{
    node_peer_t *p = s_start(BACKOFF_BASE);
    int64_t deadline = node_wall_ms() + 200;
    node_peer_publish_ok(p, &(node_job_t){.id = 1, .deadline_ms = deadline}, 1, NULL,
                         node_test_patience());
    Sluice__V1__QueueStats st;
    NODE_WAIT_STATS(p, "q", st, st.expired == 1 && st.dead == 1 && st.depth == 0,
                    200 + node_test_patience());
}

/* Expiry while waiting to be retried: the deadline passes in RETRY-WAIT
 * (or, full jitter having drawn a short backoff, while READY again with
 * nobody to take it): dead "expired", never delivered again. */
static void test_node_retry__expires_during_backoff(void **state)
{
    node_peer_t *p = s_start(1000); /* first retry within 0..1000 ms */
    node_job_t j = {.id = 1, .deadline_ms = node_wall_ms() + 300};
    node_peer_publish_ok(p, &j, 1, NULL, node_test_patience());
    SL_ASSERT_OK(node_peer_subscribe(p, "q", 10));
    node_dlv_t d;
    assert_int_equal(node_peer_deliveries(p, &d, 1, node_test_patience()), 1);
    node_peer_fail(p, &d, true, "try later");
    SL_ASSERT_OK(node_peer_unsubscribe(p, "q"));
    Sluice__V1__QueueStats st;
    NODE_WAIT_STATS(p, "q", st, st.expired == 1, 1000 + node_test_patience());
    assert_int_equal(st.dead, 1);
    assert_int_equal(st.delayed, 0);
    assert_int_equal(node_peer_count(p, DELIVER, s_quiet_ms()), 0);
}

/* Producers may also send a last_error (a job relayed from elsewhere): the
 * node replaces it, and a Fail of a job without one (the ordinary case,
 * protobuf-c's static empty string) must not free what it does not own. */
static void test_node_retry__fail_replaces_last_error(void **state)
{
    node_peer_t *p = s_start(BACKOFF_BASE);
    node_peer_publish_ok(p, &(node_job_t){.id = 2, .last_error = "from elsewhere"}, 1, NULL,
                         node_test_patience());
    SL_ASSERT_OK(node_peer_subscribe(p, "q", 10));
    node_dlv_t d;
    assert_int_equal(node_peer_deliveries(p, &d, 1, node_test_patience()), 1);
    assert_string_equal(d.last_error, "from elsewhere");
    node_peer_fail(p, &d, true, "boom");
    assert_int_equal(node_peer_deliveries(p, &d, 1, 20 * BACKOFF_BASE), 1);
    assert_int_equal(d.attempt, 2);
    assert_string_equal(d.last_error, "boom");
    node_peer_fail(p, &d, false, "gave up");
    Sluice__V1__QueueStats st;
    NODE_WAIT_STATS(p, "q", st, st.dead == 1, node_test_patience());
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_node_retry__backoff_attempts_then_dead, node_fx_teardown),
        cmocka_unit_test_teardown(test_node_retry__full_jitter, node_fx_teardown),
        cmocka_unit_test_teardown(test_node_retry__not_retryable_dead_at_once, node_fx_teardown),
        cmocka_unit_test_teardown(test_node_retry__job_max_attempts, node_fx_teardown),
        cmocka_unit_test_teardown(test_node_retry__delayed_job_waits_for_not_before,
                                  node_fx_teardown),
        cmocka_unit_test_teardown(test_node_retry__past_deadline_dead_expired, node_fx_teardown),
        cmocka_unit_test_teardown(test_node_retry__never_delivered_after_deadline,
                                  node_fx_teardown),
        cmocka_unit_test_teardown(test_node_retry__ready_job_expires_without_consumer,
                                  node_fx_teardown),
        cmocka_unit_test_teardown(test_node_retry__expires_during_backoff, node_fx_teardown),
        cmocka_unit_test_teardown(test_node_retry__fail_replaces_last_error,
                                  node_fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
