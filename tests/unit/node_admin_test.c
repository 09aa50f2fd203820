/* node_admin_test.c -- Admin on an embedded node over a real DEALER
 * socket: STATS lists every queue with counters that add up, PAUSE stops
 * deliveries and RESUME restarts them, DRAIN refuses publishes with a
 * reason while deliveries go on, and bad admin requests get errors. */
#include <string.h>

#include "node_peer.h"
#include "sluice/wire.h"
#include "testlib.h"

#define ACC SLUICE__V1__JOB_CONFIRM__STATUS__ACCEPTED
#define REJ SLUICE__V1__JOB_CONFIRM__STATUS__REJECTED
#define DELIVER SLUICE__V1__ENVELOPE__BODY_DELIVER
#define STATS SLUICE__V1__ADMIN__OP__STATS
#define PAUSE SLUICE__V1__ADMIN__OP__PAUSE
#define RESUME SLUICE__V1__ADMIN__OP__RESUME
#define DRAIN SLUICE__V1__ADMIN__OP__DRAIN

static sl_node_t *s_node; /* the fixture's, borrowed */

static int64_t s_quiet_ms(void)
{
    return sl_test_sanitized() ? 600 : 300;
}

static node_peer_t *s_start(void)
{
    sl_node_opts_t o;
    node_test_opts(&o);
    o.max_length = 1000;
    s_node = node_fx_start(&o);
    return node_fx_peer();
}

/* Send op and assert the reply has no error. */
static void s_admin_ok(node_peer_t *p, Sluice__V1__Admin__Op op, const char *q)
{
    Sluice__V1__Envelope *env = node_peer_admin(p, op, q, node_test_patience());
    assert_non_null(env);
    if (env->admin_reply->error)
        fail_msg("admin %d '%s': %s", op, q, env->admin_reply->error->text);
    sl_wire_env_free(&env);
}

static void s_admin_err(node_peer_t *p, Sluice__V1__Admin__Op op, const char *q,
                        Sluice__V1__Error__Code code)
{
    Sluice__V1__Envelope *env = node_peer_admin(p, op, q, node_test_patience());
    assert_non_null(env);
    assert_non_null(env->admin_reply->error);
    assert_int_equal(env->admin_reply->error->code, code);
    assert_true(strlen(env->admin_reply->error->text) > 0);
    sl_wire_env_free(&env);
}

static const Sluice__V1__QueueStats *s_find(const Sluice__V1__AdminReply *r, const char *name)
{
    for (size_t i = 0; i < r->n_queues; i++)
        if (strcmp(r->queues[i]->name, name) == 0)
            return r->queues[i];
    fail_msg("no queue '%s' in STATS", name);
    return NULL;
}

static void test_node_admin__stats_counters_add_up(void **state)
{
    node_peer_t *prod = s_start();
    node_peer_t *cons = node_fx_peer();
    node_peer_publish_range(prod, "a", 1, 5, 0);
    node_peer_publish_range(prod, "b", 10, 2, 0);
    SL_ASSERT_OK(node_peer_subscribe(cons, "a", 3));
    node_dlv_t d[3];
    assert_int_equal(node_peer_deliveries(cons, d, 3, node_test_patience()), 3);
    node_peer_ack(cons, &d[0]);
    Sluice__V1__QueueStats one;
    NODE_WAIT_STATS(prod, "a", one, one.acked == 1, node_test_patience());

    Sluice__V1__Envelope *env = node_peer_admin(prod, STATS, "", node_test_patience());
    assert_non_null(env);
    Sluice__V1__AdminReply *r = env->admin_reply;
    assert_null(r->error);
    assert_string_equal(r->node_id, "node-test");
    assert_int_equal(r->epoch, sl_node_epoch(s_node));
    assert_int_equal(r->peers, 2);
    assert_int_equal(r->n_queues, 2);
    const Sluice__V1__QueueStats *a = s_find(r, "a"), *b = s_find(r, "b");
    assert_int_equal(a->published, 5);
    assert_int_equal(a->delivered, 3);
    assert_int_equal(a->acked, 1);
    assert_int_equal(a->in_flight, 2);
    assert_int_equal(a->depth, 2);
    assert_int_equal(a->delayed, 0);
    assert_int_equal(a->dead, 0);
    assert_int_equal(a->failed, 0);
    assert_int_equal(a->consumers, 1);
    assert_false(a->paused);
    assert_string_equal(a->overflow, "block");
    assert_int_equal(a->capacity, 1000);
    assert_int_equal(b->published, 2);
    assert_int_equal(b->depth, 2);
    assert_int_equal(b->delivered, 0);
    assert_int_equal(b->in_flight, 0);
    assert_int_equal(b->consumers, 0);
    sl_wire_env_free(&env);

    /* Every published job is somewhere: ready, leased, done or dead. */
    node_peer_fail(cons, &d[1], false, "no");
    NODE_WAIT_STATS(prod, "a", one, one.dead == 1, node_test_patience());
    assert_int_equal(one.failed, 1);
    assert_int_equal(one.published,
                     one.depth + one.delayed + one.in_flight + one.acked + one.dead + one.dropped);
    assert_int_equal(one.in_flight, 1);
}

static void test_node_admin__errors(void **state)
{
    node_peer_t *p = s_start();
    s_admin_err(p, STATS, "nope", SLUICE__V1__ERROR__CODE__BAD_QUEUE);
    s_admin_err(p, PAUSE, "nope", SLUICE__V1__ERROR__CODE__BAD_QUEUE);
    s_admin_err(p, PAUSE, "", SLUICE__V1__ERROR__CODE__BAD_MESSAGE); /* queue required */
    s_admin_err(p, DRAIN, "", SLUICE__V1__ERROR__CODE__BAD_MESSAGE);
    /* Asking about a queue does not create it. */
    Sluice__V1__Envelope *env = node_peer_admin(p, STATS, "", node_test_patience());
    assert_non_null(env);
    assert_int_equal(env->admin_reply->n_queues, 0);
    sl_wire_env_free(&env);
}

static void test_node_admin__pause_and_resume(void **state)
{
    node_peer_t *prod = s_start();
    node_peer_t *cons = node_fx_peer();
    SL_ASSERT_OK(node_peer_subscribe(cons, "q", 100));
    node_peer_publish_range(prod, "q", 1, 1, 0);
    node_dlv_t d[4];
    assert_int_equal(node_peer_deliveries(cons, d, 1, node_test_patience()), 1);

    s_admin_ok(prod, PAUSE, "q");
    node_peer_publish_range(prod, "q", 2, 3, 5); /* still accepted */
    assert_int_equal(node_peer_count(cons, DELIVER, s_quiet_ms()), 0);
    Sluice__V1__QueueStats st;
    node_peer_stats(prod, "q", &st);
    assert_true(st.paused);
    assert_int_equal(st.depth, 3);
    assert_int_equal(st.delivered, 1);

    s_admin_ok(prod, RESUME, "q");
    assert_int_equal(node_peer_deliveries(cons, d, 3, node_test_patience()), 3);
    for (uint32_t i = 0; i < 3; i++)
        assert_int_equal(d[i].id, 2 + i);
    node_peer_stats(prod, "q", &st);
    assert_false(st.paused);
    assert_int_equal(st.delivered, 4);
}

/* Paused with no backlog: a publish during the pause still waits. */
static void test_node_admin__pause_holds_new_jobs(void **state)
{
    node_peer_t *prod = s_start();
    node_peer_t *cons = node_fx_peer();
    SL_ASSERT_OK(node_peer_subscribe(cons, "q", 100));
    Sluice__V1__QueueStats st;
    NODE_WAIT_STATS(prod, "q", st, st.consumers == 1, node_test_patience());
    s_admin_ok(prod, PAUSE, "q");
    for (uint32_t i = 1; i <= 3; i++) {
        node_peer_publish_range(prod, "q", i, 1, 9);
        assert_int_equal(node_peer_count(cons, DELIVER, s_quiet_ms() / 3), 0);
    }
    s_admin_ok(prod, RESUME, "q");
    node_dlv_t d[3];
    assert_int_equal(node_peer_deliveries(cons, d, 3, node_test_patience()), 3);
}

static void test_node_admin__drain_refuses_publishes_delivers_rest(void **state)
{
    node_peer_t *prod = s_start();
    node_peer_t *cons = node_fx_peer();
    node_peer_publish_range(prod, "q", 1, 3, 0);
    s_admin_ok(prod, DRAIN, "q");

    uint64_t corr = node_peer_publish(prod, &(node_job_t){.id = 4}, 1);
    Sluice__V1__Envelope *env = node_peer_confirm(prod, corr, node_test_patience());
    assert_non_null(env);
    Sluice__V1__JobConfirm *c = env->confirm->confirms[0];
    assert_int_equal(c->status, REJ);
    assert_non_null(strstr(c->reason, "drain"));
    assert_true(c->retry_after_ms > 0);
    sl_wire_env_free(&env);

    /* Other queues are unaffected. */
    node_peer_publish_range(prod, "other", 5, 1, 0);

    SL_ASSERT_OK(node_peer_subscribe(cons, "q", 100));
    node_dlv_t d[3];
    assert_int_equal(node_peer_deliveries(cons, d, 3, node_test_patience()), 3);
    for (uint32_t i = 0; i < 3; i++)
        assert_int_equal(d[i].id, 1 + i);
    assert_int_equal(node_peer_count(cons, DELIVER, s_quiet_ms()), 0);
    node_peer_ack_many(cons, d, 3);
    Sluice__V1__QueueStats st;
    NODE_WAIT_STATS(prod, "q", st, st.acked == 3, node_test_patience());
    assert_int_equal(st.published, 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_node_admin__stats_counters_add_up, node_fx_teardown),
        cmocka_unit_test_teardown(test_node_admin__errors, node_fx_teardown),
        cmocka_unit_test_teardown(test_node_admin__pause_and_resume, node_fx_teardown),
        cmocka_unit_test_teardown(test_node_admin__pause_holds_new_jobs, node_fx_teardown),
        cmocka_unit_test_teardown(test_node_admin__drain_refuses_publishes_delivers_rest,
                                  node_fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
