/* node_policy_test.c -- per-queue policies: set at start (opts.queues,
 * the daemon's --queues) and by Admin{op: POLICY}; each queue follows its
 * own overflow, max length, attempts, backoff and dead retention while
 * the others keep the node's defaults. */
#include <stdio.h>
#include <string.h>

#include "testlib.h"
#include "node_peer.h"
#include "sluice/wire.h"

#define ACC SLUICE__V1__JOB_CONFIRM__STATUS__ACCEPTED
#define REJ SLUICE__V1__JOB_CONFIRM__STATUS__REJECTED

/* Admin{op: POLICY, queue, policy}: the reply, which the caller frees. */
static Sluice__V1__Envelope *s_policy(node_peer_t *p, const char *queue, const char *spec)
{
    static uint64_t corr = 1000;
    Sluice__V1__Admin a = SLUICE__V1__ADMIN__INIT;
    a.op = SLUICE__V1__ADMIN__OP__POLICY;
    a.queue = (char *)queue;
    a.policy = (char *)spec;
    Sluice__V1__Envelope env = SLUICE__V1__ENVELOPE__INIT;
    env.corr = ++corr;
    env.body_case = SLUICE__V1__ENVELOPE__BODY_ADMIN;
    env.admin = &a;
    SL_ASSERT_OK(node_peer_send(p, &env));
    Sluice__V1__Envelope *r = node_peer_recv(p, SLUICE__V1__ENVELOPE__BODY_ADMIN_REPLY, corr,
                                             node_test_patience());
    assert_non_null(r);
    return r;
}

/* The queue's policy text, from STATS. */
static void s_policy_text(node_peer_t *p, const char *queue, char *out, size_t size)
{
    Sluice__V1__Envelope *r =
        node_peer_admin(p, SLUICE__V1__ADMIN__OP__STATS, queue, node_test_patience());
    assert_non_null(r);
    assert_null(r->admin_reply->error);
    assert_int_equal(r->admin_reply->n_queues, 1);
    snprintf(out, size, "%s", r->admin_reply->queues[0]->policy);
    sl_wire_env_free(&r);
}

static void test_node_policy__start_spec_per_queue(void **state)
{
    (void)state;
    sl_node_opts_t o;
    node_test_opts(&o);
    o.max_attempts = 5;
    o.backoff_base_ms = 10;
    o.backoff_max_ms = 20;
    o.queues = "once:max-attempts=1;tight:max-length=1,overflow=drop-new";
    node_fx_start(&o);
    node_peer_t *p = node_fx_peer();

    /* "once": one attempt, so a retryable failure is dead at once. */
    node_job_t j1 = {.id = 1, .queue = "once"};
    node_peer_publish_ok(p, &j1, 1, NULL, node_test_patience());
    SL_ASSERT_OK(node_peer_subscribe(p, "once", 10));
    node_dlv_t d;
    assert_int_equal(node_peer_deliveries(p, &d, 1, node_test_patience()), 1);
    assert_int_equal(d.max_attempts, 1);
    node_peer_fail(p, &d, true, "boom");
    Sluice__V1__QueueStats st;
    NODE_WAIT_STATS(p, "once", st, st.dead == 1, node_test_patience());
    assert_int_equal(st.retried, 0);

    /* "tight": room for one, then drop-new refuses with FULL. */
    node_job_t j2[2] = {{.id = 2, .queue = "tight"}, {.id = 3, .queue = "tight"}};
    int statuses[2];
    node_peer_publish_ok(p, j2, 2, statuses, node_test_patience());
    assert_int_equal(statuses[0], ACC);
    assert_int_equal(statuses[1], REJ);
    node_peer_stats(p, "tight", &st);
    assert_int_equal(st.capacity, 1);
    assert_int_equal(st.dropped, 1);

    /* Any other queue keeps the node's defaults. */
    node_job_t j3 = {.id = 4, .queue = "other"};
    node_peer_publish_ok(p, &j3, 1, NULL, node_test_patience());
    char text[256];
    s_policy_text(p, "other", text, sizeof text);
    assert_non_null(strstr(text, "max-attempts=5"));
    assert_non_null(strstr(text, "overflow=block"));
    s_policy_text(p, "tight", text, sizeof text);
    assert_non_null(strstr(text, "overflow=drop-new"));
    assert_non_null(strstr(text, "max-length=1,"));
}

static void test_node_policy__admin_sets_and_queue_follows(void **state)
{
    (void)state;
    sl_node_opts_t o;
    node_test_opts(&o);
    node_fx_start(&o);
    node_peer_t *p = node_fx_peer();

    /* A policy for a queue nobody used yet: the queue is made with it. */
    Sluice__V1__Envelope *r = s_policy(p, "jobs", "max-length=2,overflow=drop-new");
    assert_null(r->admin_reply->error);
    assert_int_equal(r->admin_reply->n_queues, 1);
    assert_int_equal(r->admin_reply->queues[0]->capacity, 2);
    assert_string_equal(r->admin_reply->queues[0]->overflow, "drop-new");
    sl_wire_env_free(&r);
    node_job_t js[3] = {{.id = 1, .queue = "jobs"}, {.id = 2, .queue = "jobs"},
                        {.id = 3, .queue = "jobs"}};
    int statuses[3];
    node_peer_publish_ok(p, js, 3, statuses, node_test_patience());
    assert_int_equal(statuses[2], REJ);

    /* Raised while full: the next publish fits. Keys not named keep
     * their values. */
    r = s_policy(p, "jobs", "max-length=3");
    assert_null(r->admin_reply->error);
    assert_string_equal(r->admin_reply->queues[0]->overflow, "drop-new");
    sl_wire_env_free(&r);
    node_job_t j4 = {.id = 4, .queue = "jobs"};
    node_peer_publish_ok(p, &j4, 1, statuses, node_test_patience());
    assert_int_equal(statuses[0], ACC);

    /* Bad specs are refused with the reason, and change nothing. */
    const char *bad[] = {"max-length=0", "overflow=maybe", "nope=1", "max-attempts",
                         "backoff-base=10s,backoff-max=1s", "max-dead=lots"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        r = s_policy(p, "jobs", bad[i]);
        assert_non_null(r->admin_reply->error);
        assert_int_equal(r->admin_reply->error->code, SLUICE__V1__ERROR__CODE__BAD_MESSAGE);
        assert_true(strlen(r->admin_reply->error->text) > 0);
        sl_wire_env_free(&r);
    }
    char text[256];
    s_policy_text(p, "jobs", text, sizeof text);
    assert_non_null(strstr(text, "max-length=3,"));
}

static void test_node_policy__start_spec_checked(void **state)
{
    (void)state;
    char why[160];
    assert_int_equal(sl_node_queues_check("a:max-attempts=3;b.c:overflow=drop-oldest", why,
                                          sizeof why),
                     0);
    assert_int_equal(sl_node_queues_check("ns:q:max-length=10", why, sizeof why), 0);
    const char *bad[] = {"noqueue", "bad name:max-length=1", "a:max-length=-1",
                         "a:unknown=1", ":max-length=1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        why[0] = '\0';
        assert_int_not_equal(sl_node_queues_check(bad[i], why, sizeof why), 0);
        assert_true(strlen(why) > 0);
    }
    sl_node_opts_t o;
    node_test_opts(&o);
    o.queues = "a:max-length=oops";
    int err = 0;
    assert_null(sl_node_new(&o, &err));
    assert_int_equal(err, SL_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_node_policy__start_spec_per_queue, node_fx_teardown),
        cmocka_unit_test_teardown(test_node_policy__admin_sets_and_queue_follows,
                                  node_fx_teardown),
        cmocka_unit_test(test_node_policy__start_spec_checked),
    };
    return cmocka_run_group_tests_name("node_policy", tests, NULL, NULL);
}
