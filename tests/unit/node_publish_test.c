/* node_publish_test.c -- publishing to an embedded node over a real
 * DEALER socket: one confirm per job in order with corr echoed, DUPLICATE
 * by id and by idempotency key (per queue), REJECTED with a reason for
 * invalid jobs without disturbing the rest of the batch. */
#include <string.h>

#include "node_peer.h"
#include "sluice/wire.h"
#include "testlib.h"

#define ACC SLUICE__V1__JOB_CONFIRM__STATUS__ACCEPTED
#define DUP SLUICE__V1__JOB_CONFIRM__STATUS__DUPLICATE
#define REJ SLUICE__V1__JOB_CONFIRM__STATUS__REJECTED

static node_peer_t *s_start(void)
{
    sl_node_opts_t o;
    node_test_opts(&o);
    o.max_job = 4096;
    node_fx_start(&o);
    return node_fx_peer();
}

/* Deliveries of queue q, all within patience, then nothing more. */
static size_t s_drain(node_peer_t *p, const char *q, node_dlv_t *out, size_t want)
{
    SL_ASSERT_OK(node_peer_subscribe(p, q, 100));
    size_t k = node_peer_deliveries(p, out, want, node_test_patience());
    assert_int_equal(k, want);
    assert_int_equal(node_peer_count(p, SLUICE__V1__ENVELOPE__BODY_DELIVER, 200), 0);
    return k;
}

static void test_node_publish__confirms_each_job_in_order(void **state)
{
    node_peer_t *p = s_start();
    node_job_t jobs[5];
    for (uint32_t i = 0; i < 5; i++)
        jobs[i] = (node_job_t){.id = 10 + i, .priority = i};
    uint64_t c1 = node_peer_publish(p, jobs, 5);
    uint64_t c2 = node_peer_publish(p, &(node_job_t){.id = 20}, 1);
    assert_int_not_equal(c1, c2);

    /* Whatever arrives first, each confirm carries its request's corr. */
    for (int k = 0; k < 2; k++) {
        Sluice__V1__Envelope *env =
            node_peer_recv(p, SLUICE__V1__ENVELOPE__BODY_CONFIRM, 0, node_test_patience());
        assert_non_null(env);
        Sluice__V1__PublishConfirm *pc = env->confirm;
        if (env->corr == c1) {
            assert_int_equal(pc->n_confirms, 5);
            for (uint32_t i = 0; i < 5; i++) {
                assert_int_equal(node_id_num(&pc->confirms[i]->id), 10 + i);
                assert_int_equal(pc->confirms[i]->status, ACC);
                assert_string_equal(pc->confirms[i]->reason, "");
            }
        } else {
            assert_int_equal(env->corr, c2);
            assert_int_equal(pc->n_confirms, 1);
            assert_int_equal(node_id_num(&pc->confirms[0]->id), 20);
            assert_int_equal(pc->confirms[0]->status, ACC);
        }
        sl_wire_env_free(&env);
    }

    /* An empty Publish still gets its (empty) confirm. */
    uint64_t c3 = node_peer_publish(p, NULL, 0);
    Sluice__V1__Envelope *env = node_peer_confirm(p, c3, node_test_patience());
    assert_non_null(env);
    assert_int_equal(env->confirm->n_confirms, 0);
    sl_wire_env_free(&env);

    Sluice__V1__QueueStats st;
    node_peer_stats(p, "q", &st);
    assert_int_equal(st.published, 6);
    assert_int_equal(st.depth, 6);
}

static void test_node_publish__duplicate_id(void **state)
{
    node_peer_t *p = s_start();
    int st[3];
    node_peer_publish_ok(p, &(node_job_t){.id = 1}, 1, st, node_test_patience());
    assert_int_equal(st[0], ACC);
    /* The same id again, alone, beside a new job, and twice in one batch. */
    node_job_t again[3] = {{.id = 1}, {.id = 2}, {.id = 2}};
    node_peer_publish_ok(p, again, 3, st, node_test_patience());
    assert_int_equal(st[0], DUP);
    assert_int_equal(st[1], ACC);
    assert_int_equal(st[2], DUP);
    /* The id is global: another queue does not make it new. */
    node_peer_publish_ok(p, &(node_job_t){.id = 1, .queue = "other"}, 1, st, node_test_patience());
    assert_int_equal(st[0], DUP);

    Sluice__V1__QueueStats qs;
    node_peer_stats(p, "q", &qs);
    assert_int_equal(qs.published, 2);
    node_dlv_t d[2];
    s_drain(p, "q", d, 2);
    assert_int_equal(d[0].id, 1);
    assert_int_equal(d[1].id, 2);
}

static void test_node_publish__duplicate_key_per_queue(void **state)
{
    node_peer_t *p = s_start();
    int st[4];
    node_peer_publish_ok(p, &(node_job_t){.id = 1, .queue = "a", .key = "order-42"}, 1, st,
                         node_test_patience());
    assert_int_equal(st[0], ACC);
    node_job_t more[4] = {
        {.id = 2, .queue = "a", .key = "order-42"}, /* same key, same queue */
        {.id = 3, .queue = "b", .key = "order-42"}, /* same key, other queue */
        {.id = 4, .queue = "a", .key = "order-43"},
        {.id = 5, .queue = "a", .key = "order-43"}, /* repeated within the batch */
    };
    node_peer_publish_ok(p, more, 4, st, node_test_patience());
    assert_int_equal(st[0], DUP);
    assert_int_equal(st[1], ACC);
    assert_int_equal(st[2], ACC);
    assert_int_equal(st[3], DUP);

    node_dlv_t d[2];
    s_drain(p, "a", d, 2);
    assert_int_equal(d[0].id, 1);
    assert_int_equal(d[1].id, 4);
    s_drain(p, "b", d, 1);
    assert_int_equal(d[0].id, 3);
}

static void test_node_publish__invalid_jobs_rejected_batch_unaffected(void **state)
{
    node_peer_t *p = s_start();
    char longq[130];
    memset(longq, 'a', 129);
    longq[129] = '\0';
    node_job_t jobs[] = {
        {.id = 1, .payload_len = 10},
        {.id = 2, .id_len = 15},                /* id of 15 bytes          */
        {.id = 3, .queue = "bad queue!"},       /* not [A-Za-z0-9._:-]     */
        {.id = 4, .priority = 10},              /* priority 0-9            */
        {.id = 5, .payload_len = 4097},         /* over max_job (4096)     */
        {.id = 6, .payload_len = 4096},         /* exactly max_job: fine   */
        {.id = 7, .queue = ""},                 /* empty queue name        */
        {.id = 8, .queue = longq},              /* 129 characters          */
        {.id = 9, .priority = 9, .queue = "q"},
    };
    size_t n = sizeof jobs / sizeof *jobs;
    uint64_t corr = node_peer_publish(p, jobs, n);
    Sluice__V1__Envelope *env = node_peer_confirm(p, corr, node_test_patience());
    assert_non_null(env);
    Sluice__V1__PublishConfirm *pc = env->confirm;
    assert_int_equal(pc->n_confirms, n);
    static const int want[] = {ACC, REJ, REJ, REJ, REJ, ACC, REJ, REJ, ACC};
    static const char *const says[] = {NULL, "16", "queue", "priority", "max-job", NULL,
                                       "queue", "queue", NULL};
    for (size_t i = 0; i < n; i++) {
        const Sluice__V1__JobConfirm *c = pc->confirms[i];
        if ((int)c->status != want[i])
            fail_msg("job %zu: status %d, want %d (reason '%s')", i + 1, c->status, want[i],
                     c->reason);
        if (says[i] && !strstr(c->reason, says[i]))
            fail_msg("job %zu: reason '%s' does not mention '%s'", i + 1, c->reason, says[i]);
        if (i == 1)
            assert_int_equal(c->id.len, 15); /* the id is echoed as sent */
        else
            assert_int_equal(node_id_num(&c->id), jobs[i].id);
    }
    sl_wire_env_free(&env);

    Sluice__V1__QueueStats st;
    node_peer_stats(p, "q", &st);
    assert_int_equal(st.published, 3);
    node_dlv_t d[3];
    s_drain(p, "q", d, 3);
    assert_int_equal(d[0].id, 9); /* priority 9 first */
    assert_int_equal(d[1].id, 1);
    assert_int_equal(d[2].id, 6);
}

/* docs/protocol.md: "If a job with the same id ... is held or was completed
 * within the dedup window: DUPLICATE", and on Ack "its id remembered for
 * the dedup window". A producer resending after a lost confirm must not
 * get its job run twice. */
static void test_node_publish__duplicate_after_ack(void **state)
{
    node_peer_t *p = s_start();
    int st[2];
    node_job_t j[2] = {{.id = 1}, {.id = 2, .key = "pay-7"}};
    node_peer_publish_ok(p, j, 2, st, node_test_patience());
    assert_int_equal(st[0], ACC);
    assert_int_equal(st[1], ACC);
    node_dlv_t d[2];
    s_drain(p, "q", d, 2);
    node_peer_ack_many(p, d, 2);
    Sluice__V1__QueueStats qs;
    NODE_WAIT_STATS(p, "q", qs, qs.acked == 2, node_test_patience());

    node_job_t again[2] = {{.id = 1}, {.id = 3, .key = "pay-7"}};
    node_peer_publish_ok(p, again, 2, st, node_test_patience());
    if (st[0] != DUP || st[1] != DUP)
        fail_msg("resent after ack: id status %d, key status %d; want DUPLICATE (%d) for both",
                 st[0], st[1], DUP);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_node_publish__confirms_each_job_in_order,
                                  node_fx_teardown),
        cmocka_unit_test_teardown(test_node_publish__duplicate_id, node_fx_teardown),
        cmocka_unit_test_teardown(test_node_publish__duplicate_key_per_queue, node_fx_teardown),
        cmocka_unit_test_teardown(test_node_publish__invalid_jobs_rejected_batch_unaffected,
                                  node_fx_teardown),
        cmocka_unit_test_teardown(test_node_publish__duplicate_after_ack, node_fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
