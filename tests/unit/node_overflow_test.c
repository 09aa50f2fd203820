/* node_overflow_test.c -- a full queue on an embedded node over a real
 * DEALER socket: block holds confirms back until consumers make room (the
 * producer's backpressure), drop-new rejects "full" and counts, and
 * drop-oldest keeps the newest jobs. */
#include <stdio.h>
#include <string.h>

#include "node_peer.h"
#include "sluice/wire.h"
#include "testlib.h"

#define ACC SLUICE__V1__JOB_CONFIRM__STATUS__ACCEPTED
#define REJ SLUICE__V1__JOB_CONFIRM__STATUS__REJECTED
#define CONFIRM SLUICE__V1__ENVELOPE__BODY_CONFIRM
#define DELIVER SLUICE__V1__ENVELOPE__BODY_DELIVER

static int64_t s_quiet_ms(void)
{
    return sl_test_sanitized() ? 600 : 300;
}

static node_peer_t *s_start(sl_overflow_t policy, uint64_t max_length, uint64_t max_waiting)
{
    sl_node_opts_t o;
    node_test_opts(&o);
    o.overflow = policy;
    o.max_length = max_length;
    if (max_waiting)
        o.max_waiting = max_waiting;
    node_fx_start(&o);
    return node_fx_peer();
}

/* Assert the confirm for corr arrives within ms with one job of status st;
 * returns its reason (static copy). */
static const char *s_confirm1(node_peer_t *p, uint64_t corr, int st, int64_t ms)
{
    static char reason[128];
    Sluice__V1__Envelope *env = node_peer_confirm(p, corr, ms);
    if (!env)
        fail_msg("no confirm for corr %llu within %lld ms", (unsigned long long)corr,
                 (long long)ms);
    assert_int_equal(env->confirm->n_confirms, 1);
    if ((int)env->confirm->confirms[0]->status != st)
        fail_msg("corr %llu: status %d, want %d ('%s')", (unsigned long long)corr,
                 env->confirm->confirms[0]->status, st, env->confirm->confirms[0]->reason);
    snprintf(reason, sizeof reason, "%s", env->confirm->confirms[0]->reason);
    sl_wire_env_free(&env);
    return reason;
}

static void test_node_overflow__block_holds_confirms_until_room(void **state)
{
    node_peer_t *prod = s_start(SL_OVERFLOW_BLOCK, 10, 0);
    node_peer_t *cons = node_fx_peer();
    enum { N = 15 };
    uint64_t corr[N];
    for (uint32_t i = 0; i < N; i++)
        corr[i] = node_peer_publish(prod, &(node_job_t){.id = i + 1}, 1);
    for (int i = 0; i < 10; i++)
        s_confirm1(prod, corr[i], ACC, node_test_patience());
    /* The other five wait, unconfirmed. */
    assert_int_equal(node_peer_count(prod, CONFIRM, s_quiet_ms()), 0);
    Sluice__V1__QueueStats st;
    node_peer_stats(prod, "q", &st);
    assert_int_equal(st.depth, 10);
    assert_int_equal(st.capacity, 10);
    assert_int_equal(node_peer_count(prod, CONFIRM, 0), 0);

    /* Room for three: exactly the next three confirms, in order. */
    SL_ASSERT_OK(node_peer_subscribe(cons, "q", 3));
    node_dlv_t d[N];
    assert_int_equal(node_peer_deliveries(cons, d, 3, node_test_patience()), 3);
    for (int i = 10; i < 13; i++)
        s_confirm1(prod, corr[i], ACC, node_test_patience());
    assert_int_equal(node_peer_count(prod, CONFIRM, s_quiet_ms()), 0);

    SL_ASSERT_OK(node_peer_credit(cons, "q", 100));
    assert_int_equal(node_peer_deliveries(cons, d + 3, N - 3, node_test_patience()), N - 3);
    for (int i = 13; i < N; i++)
        s_confirm1(prod, corr[i], ACC, node_test_patience());
    for (uint32_t i = 0; i < N; i++)
        assert_int_equal(d[i].id, i + 1); /* FIFO, each once */
    assert_int_equal(node_peer_count(cons, DELIVER, 0), 0);
    node_peer_ack_many(cons, d, N);
    NODE_WAIT_STATS(prod, "q", st, st.acked == N, node_test_patience());
    assert_int_equal(st.published, N);
    assert_int_equal(st.dropped, 0);
    assert_int_equal(st.depth + st.delayed + st.in_flight, 0);
}

/* A batch that only partly fits: its one confirm waits for every job. */
static void test_node_overflow__block_confirm_waits_for_whole_batch(void **state)
{
    node_peer_t *prod = s_start(SL_OVERFLOW_BLOCK, 2, 0);
    node_peer_t *cons = node_fx_peer();
    node_job_t jobs[3] = {{.id = 1}, {.id = 2}, {.id = 3}};
    uint64_t corr = node_peer_publish(prod, jobs, 3);
    assert_int_equal(node_peer_count(prod, CONFIRM, s_quiet_ms()), 0);
    SL_ASSERT_OK(node_peer_subscribe(cons, "q", 1));
    Sluice__V1__Envelope *env = node_peer_confirm(prod, corr, node_test_patience());
    assert_non_null(env);
    assert_int_equal(env->confirm->n_confirms, 3);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(env->confirm->confirms[i]->status, ACC);
        assert_int_equal(node_id_num(&env->confirm->confirms[i]->id), i + 1);
    }
    sl_wire_env_free(&env);
}

/* The node-wide limit on waiting publishes turns block into "full". */
static void test_node_overflow__block_waiting_limit_rejects(void **state)
{
    node_peer_t *prod = s_start(SL_OVERFLOW_BLOCK, 2, 2);
    uint64_t corr[5];
    for (uint32_t i = 0; i < 5; i++)
        corr[i] = node_peer_publish(prod, &(node_job_t){.id = i + 1}, 1);
    s_confirm1(prod, corr[0], ACC, node_test_patience());
    s_confirm1(prod, corr[1], ACC, node_test_patience());
    const char *why = s_confirm1(prod, corr[4], REJ, node_test_patience());
    assert_non_null(strstr(why, "full"));
    Sluice__V1__Envelope *env = node_peer_confirm(prod, corr[2], 0);
    assert_null(env); /* 3 and 4 still wait */
}

static void test_node_overflow__drop_new_rejects_full(void **state)
{
    node_peer_t *p = s_start(SL_OVERFLOW_DROP_NEW, 10, 0);
    enum { N = 15 };
    node_job_t jobs[N];
    for (uint32_t i = 0; i < N; i++)
        jobs[i] = (node_job_t){.id = i + 1};
    uint64_t corr = node_peer_publish(p, jobs, 10);
    uint64_t corr2 = node_peer_publish(p, jobs + 10, 5);
    Sluice__V1__Envelope *env = node_peer_confirm(p, corr, node_test_patience());
    assert_non_null(env);
    for (int i = 0; i < 10; i++)
        assert_int_equal(env->confirm->confirms[i]->status, ACC);
    sl_wire_env_free(&env);
    env = node_peer_confirm(p, corr2, node_test_patience());
    assert_non_null(env);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(env->confirm->confirms[i]->status, REJ);
        assert_non_null(strstr(env->confirm->confirms[i]->reason, "full"));
    }
    sl_wire_env_free(&env);

    Sluice__V1__QueueStats st;
    node_peer_stats(p, "q", &st);
    assert_int_equal(st.dropped, 5);
    assert_int_equal(st.depth, 10);
    assert_int_equal(st.published, 10);

    SL_ASSERT_OK(node_peer_subscribe(p, "q", 100));
    node_dlv_t d[N];
    assert_int_equal(node_peer_deliveries(p, d, 10, node_test_patience()), 10);
    for (uint32_t i = 0; i < 10; i++)
        assert_int_equal(d[i].id, i + 1);
    assert_int_equal(node_peer_count(p, DELIVER, s_quiet_ms()), 0);
    /* With room again, new jobs are accepted. */
    s_confirm1(p, node_peer_publish(p, &(node_job_t){.id = 100}, 1), ACC, node_test_patience());
}

static void test_node_overflow__drop_oldest_keeps_newest(void **state)
{
    node_peer_t *p = s_start(SL_OVERFLOW_DROP_OLDEST, 10, 0);
    enum { N = 15 };
    uint64_t corr[N];
    for (uint32_t i = 0; i < N; i++)
        corr[i] = node_peer_publish(p, &(node_job_t){.id = i + 1}, 1);
    for (int i = 0; i < N; i++)
        s_confirm1(p, corr[i], ACC, node_test_patience());

    Sluice__V1__QueueStats st;
    node_peer_stats(p, "q", &st);
    assert_int_equal(st.dropped, 5);
    assert_int_equal(st.depth, 10);
    assert_int_equal(st.dead, 0);

    SL_ASSERT_OK(node_peer_subscribe(p, "q", 100));
    node_dlv_t d[N];
    assert_int_equal(node_peer_deliveries(p, d, 10, node_test_patience()), 10);
    for (uint32_t i = 0; i < 10; i++)
        assert_int_equal(d[i].id, 6 + i);
    assert_int_equal(node_peer_count(p, DELIVER, s_quiet_ms()), 0);

    /* A dropped job's id is free again: it was never run. */
    s_confirm1(p, node_peer_publish(p, &(node_job_t){.id = 1}, 1), ACC, node_test_patience());
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_node_overflow__block_holds_confirms_until_room,
                                  node_fx_teardown),
        cmocka_unit_test_teardown(test_node_overflow__block_confirm_waits_for_whole_batch,
                                  node_fx_teardown),
        cmocka_unit_test_teardown(test_node_overflow__block_waiting_limit_rejects,
                                  node_fx_teardown),
        cmocka_unit_test_teardown(test_node_overflow__drop_new_rejects_full, node_fx_teardown),
        cmocka_unit_test_teardown(test_node_overflow__drop_oldest_keeps_newest,
                                  node_fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
