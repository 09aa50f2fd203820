/* redis_retry_test.c -- retries kept in Redis (`--redis URL`) outlive the
 * node that scheduled them: a job that failed on node A, which is then
 * SIGKILLed, runs on node B when due, with its attempt count and last
 * error. And with Redis unreachable, a retry is not lost: it runs on the
 * node that has it. Real processes: redis-server, sluice-node; the
 * consumer is a raw DEALER peer speaking the documented protocol. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testlib.h"
#include "itest.h"
#include "node_peer.h"
#include "redis_server.h"
#include "sluice/wire.h"

static sl_redis_server_t s_redis;

static int s_teardown(void **state)
{
    sl_redis_server_release(&s_redis);
    return it_teardown(state);
}

/* Members of the queue's retry schedule in Redis, -1 if unreachable. */
static long s_retries(const char *queue)
{
    char key[256], *reply = NULL;
    snprintf(key, sizeof key, "sl:{q:%s}:retry", queue);
    if (sl_redis_server_cmd(&s_redis, &reply, "ZCARD", key, NULL) != 0)
        return -1;
    long n = strtol(reply, NULL, 10);
    free(reply);
    return n;
}

static void test_redis_retry__outlives_a_sigkilled_node(void **state)
{
    it_ctx_t *t = *state;
    assert_int_equal(sl_redis_server_start(&s_redis, NULL), 0);
    /* A: backoff 1 s (full jitter: up to 1 s). */
    const char *const args[] = {"--redis", s_redis.url, "--backoff-base", "1s", "--backoff-max",
                                "1s", NULL};
    sl_testnode_t a;
    it_node_start(&a, args);
    node_peer_t *p = node_peer_new(a.endpoint, 300);
    node_job_t j = {.id = 1, .queue = "pay"};
    node_peer_publish_ok(p, &j, 1, NULL, 10000);
    SL_ASSERT_OK(node_peer_subscribe(p, "pay", 1));
    node_dlv_t d;
    assert_int_equal(node_peer_deliveries(p, &d, 1, 10000), 1);
    assert_int_equal(d.attempt, 1);
    /* Fail it, and leave: A has no consumer, so it takes nothing back. */
    node_peer_fail(p, &d, true, "bank down");
    SL_ASSERT_OK(node_peer_unsubscribe(p, "pay"));
    IT_WAIT_TRUE(10000, s_retries("pay") == 1);
    node_peer_destroy(&p);
    it_stop(a.pid, SIGKILL, 5000);

    /* B, on the same Redis: the retry runs there, as it was. */
    it_node_start(&t->node, args);
    p = node_peer_new(t->node.endpoint, 300);
    SL_ASSERT_OK(node_peer_subscribe(p, "pay", 1));
    assert_int_equal(node_peer_deliveries(p, &d, 1, 15000), 1);
    assert_int_equal(d.id, 1);
    assert_int_equal(d.attempt, 2);
    assert_string_equal(d.last_error, "bank down");
    node_peer_ack(p, &d);
    Sluice__V1__QueueStats st;
    NODE_WAIT_STATS(p, "pay", st, st.acked == 1, 10000);
    assert_int_equal(s_retries("pay"), 0);
    /* B says where it keeps retries, that Redis is up, and that it took
     * one back. */
    Sluice__V1__Envelope *r = node_peer_admin(p, SLUICE__V1__ADMIN__OP__STATS, "", 10000);
    assert_non_null(r);
    assert_string_equal(r->admin_reply->store, "redis");
    assert_true(r->admin_reply->store_up);
    assert_int_equal(r->admin_reply->retries_taken, 1);
    assert_int_equal(r->admin_reply->store_down_since_ms, 0);
    sl_wire_env_free(&r);
    node_peer_destroy(&p);
    t->passed = true;
}

/* Redis unreachable (nothing listens on its port): the node serves, and a
 * retry stays with the node and runs there when due. */
static void test_redis_retry__store_away_retry_runs_here(void **state)
{
    it_ctx_t *t = *state;
    assert_int_equal(sl_redis_server_start(&s_redis, NULL), 0);
    char url[300];
    snprintf(url, sizeof url, "%s", s_redis.url);
    sl_redis_server_stop(&s_redis, SIGKILL); /* the port is now dead */
    it_node_start(&t->node, (const char *const[]){"--redis", url, "--backoff-base", "50ms",
                                                  "--backoff-max", "50ms", NULL});
    node_peer_t *p = node_peer_new(t->node.endpoint, 300);
    node_job_t j = {.id = 7, .queue = "pay"};
    node_peer_publish_ok(p, &j, 1, NULL, 10000);
    SL_ASSERT_OK(node_peer_subscribe(p, "pay", 2));
    node_dlv_t d;
    assert_int_equal(node_peer_deliveries(p, &d, 1, 10000), 1);
    node_peer_fail(p, &d, true, "once");
    assert_int_equal(node_peer_deliveries(p, &d, 1, 15000), 1);
    assert_int_equal(d.id, 7);
    assert_int_equal(d.attempt, 2);
    assert_string_equal(d.last_error, "once");
    node_peer_ack(p, &d);
    /* Stats say Redis is away, since when, and that the put failed. */
    Sluice__V1__Envelope *r = node_peer_admin(p, SLUICE__V1__ADMIN__OP__STATS, "", 10000);
    assert_non_null(r);
    assert_false(r->admin_reply->store_up);
    assert_true(r->admin_reply->store_down_since_ms > 0);
    assert_true(r->admin_reply->store_errors >= 1);
    assert_int_equal(r->admin_reply->retries_stored, 0);
    sl_wire_env_free(&r);
    node_peer_destroy(&p);
    t->passed = true;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_redis_retry__outlives_a_sigkilled_node, it_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_redis_retry__store_away_retry_runs_here, it_setup,
                                        s_teardown),
    };
    return cmocka_run_group_tests_name("redis_retry", tests, NULL, NULL);
}
