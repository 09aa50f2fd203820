/* client_admin_test.c -- libsluice's admin calls against a real
 * sluice-node: stats of every queue (in pages, when there are many) and
 * of one, an unknown queue, pause and resume of deliveries, drain
 * refusing publishes, and destroy with requests still waiting. */
#define _GNU_SOURCE
#include <string.h>

#include "testlib.h"
#include "testclient.h"

static void test_client_admin__stats_every_queue_and_one(void **state)
{
    (void)state;
    sl_testnode_t n;
    tc_node_start(&n, NULL);
    sl_client_t *c = tc_client(n.endpoint);
    assert_int_equal(tc_publish(c, "alpha", "1"), SL_CONFIRM_ACCEPTED);
    assert_int_equal(tc_publish(c, "beta", "1"), SL_CONFIRM_ACCEPTED);
    assert_int_equal(tc_publish(c, "beta", "2"), SL_CONFIRM_ACCEPTED);

    sl_admin_reply_t rep;
    SL_ASSERT_OK(sl_client_admin(c, SL_ADMIN_STATS, NULL, &rep, sl_deadline_ms(tc_patience_ms())));
    assert_int_equal(rep.n_queues, 2);
    assert_int_equal(rep.epoch, n.epoch);
    assert_true(rep.node_id[0] != '\0');
    assert_true(rep.peers >= 1);
    uint64_t total = 0;
    for (size_t i = 0; i < rep.n_queues; i++) {
        total += rep.queues[i].depth;
        assert_true(strcmp(rep.queues[i].name, "alpha") == 0 ||
                    strcmp(rep.queues[i].name, "beta") == 0);
        assert_false(rep.queues[i].paused);
        assert_string_equal(rep.queues[i].overflow, "block");
    }
    assert_int_equal(total, 3);
    sl_admin_reply_release(&rep);
    assert_null(rep.queues);

    sl_queue_stats_t st = tc_stats(c, "beta");
    assert_string_equal(st.name, "beta");
    assert_int_equal(st.depth, 2);
    assert_int_equal(st.published, 2);

    sl_queue_stats_t *qs = NULL;
    size_t nq = 9;
    SL_ASSERT_ERR(sl_client_stats(c, "nosuch", &qs, &nq, sl_deadline_ms(tc_patience_ms())),
                  SL_ENOTFOUND);
    assert_null(qs);
    assert_int_equal(nq, 0);
    SL_ASSERT_ERR(sl_client_admin(c, SL_ADMIN_PAUSE, "nosuch", &rep,
                                  sl_deadline_ms(tc_patience_ms())),
                  SL_ENOTFOUND);
    assert_true(rep.node_code != 0);
    assert_true(rep.node_text[0] != '\0');
    sl_admin_reply_release(&rep);
    SL_ASSERT_ERR(sl_client_admin(c, SL_ADMIN_PAUSE, NULL, &rep, sl_deadline_ms(100)), SL_EINVAL);
    SL_ASSERT_ERR(sl_client_admin(c, SL_ADMIN_PAUSE, "bad name", &rep, sl_deadline_ms(100)),
                  SL_EINVAL);
    assert_non_null(strstr(rep.node_text, "queue name"));
    sl_client_destroy(&c);
    sl_testnode_release(&n);
}

static void test_client_admin__pause_stops_deliveries_until_resume(void **state)
{
    (void)state;
    sl_testnode_t n;
    tc_node_start(&n, NULL);
    sl_client_t *c = tc_client(n.endpoint);
    assert_int_equal(tc_publish(c, "held", "1"), SL_CONFIRM_ACCEPTED);
    SL_ASSERT_OK(sl_client_pause(c, "held", sl_deadline_ms(tc_patience_ms())));
    assert_true(tc_stats(c, "held").paused);
    assert_int_equal(tc_publish(c, "held", "2"), SL_CONFIRM_ACCEPTED); /* still accepted */

    int err = 0;
    sl_chan_t *ch = sl_client_subscribe(c, "held", 4, &err);
    assert_non_null(ch);
    void *v;
    SL_ASSERT_ERR(sl_take_until(ch, &v, sl_deadline_ms(300)), SL_ETIMEDOUT);
    SL_ASSERT_OK(sl_client_resume(c, "held", sl_deadline_ms(tc_patience_ms())));
    for (int i = 0; i < 2; i++) {
        SL_ASSERT_OK(sl_take_until(ch, &v, sl_deadline_ms(tc_patience_ms())));
        sl_delivery_t *d = v;
        SL_ASSERT_OK(sl_client_ack(c, &d));
    }
    sl_queue_stats_t st = TC_WAIT_STATS(c, "held", st.acked == 2);
    assert_false(st.paused);
    sl_chan_destroy(&ch);
    sl_client_destroy(&c);
    sl_testnode_release(&n);
}

static void test_client_admin__drain_refuses_publishes(void **state)
{
    (void)state;
    sl_testnode_t n;
    tc_node_start(&n, NULL);
    sl_client_t *c = tc_client(n.endpoint);
    assert_int_equal(tc_publish(c, "closing", "1"), SL_CONFIRM_ACCEPTED);
    SL_ASSERT_OK(sl_client_drain(c, "closing", sl_deadline_ms(tc_patience_ms())));
    sl_job_t j = {.queue = "closing"};
    sl_confirm_t cf;
    SL_ASSERT_OK(sl_client_publish(c, &j, 1, &cf, sl_deadline_ms(tc_patience_ms())));
    assert_int_equal(cf.status, SL_CONFIRM_REJECTED);
    assert_non_null(strstr(cf.reason, "draining"));
    assert_int_equal(tc_stats(c, "closing").depth, 1); /* what was there stays */
    SL_ASSERT_OK(sl_client_resume(c, "closing", sl_deadline_ms(tc_patience_ms())));
    assert_int_equal(tc_publish(c, "closing", "2"), SL_CONFIRM_ACCEPTED);
    sl_client_destroy(&c);
    sl_testnode_release(&n);
}

/* Destroy answers every waiting request (here a publish blocked on a full
 * queue) with SL_ECLOSED instead of leaving it hanging. */
static void test_client_admin__destroy_answers_pending_requests(void **state)
{
    (void)state;
    sl_testnode_t n;
    tc_node_start(&n, (const char *[]){"--max-length", "1", NULL});
    sl_client_t *c = tc_client(n.endpoint);
    assert_int_equal(tc_publish(c, "full", "1"), SL_CONFIRM_ACCEPTED);
    sl_job_t j = {.queue = "full"};
    int err = 0;
    sl_chan_t *p = sl_client_publish_async(c, &j, 1, SL_FOREVER, &err);
    assert_non_null(p);
    void *v = NULL;
    SL_ASSERT_ERR(sl_take_until(p, &v, sl_deadline_ms(200)), SL_ETIMEDOUT);
    sl_client_counters_t k;
    sl_client_counters(c, &k);
    assert_int_equal(k.pending, 1);
    sl_client_destroy(&c);
    SL_ASSERT_OK(sl_take_until(p, &v, sl_deadline_ms(tc_patience_ms())));
    sl_publish_result_t *r = v;
    assert_int_equal(r->status, SL_ECLOSED);
    sl_publish_result_destroy(&r);
    sl_chan_destroy(&p);
    sl_testnode_release(&n);
}

/* More queues than one frame holds: STATS comes in pages, and the client
 * follows them to the last (each queue once, in name order). */
static void test_client_admin__stats_of_many_queues_come_in_pages(void **state)
{
    (void)state;
    sl_testnode_t n;
    tc_node_start(&n, (const char *const[]){"--max-frame", "4k", "--max-job", "2k", NULL});
    sl_client_opts_t o = {.endpoint = n.endpoint, .heartbeat_ms = 100, .max_frame = 4096};
    int err = SL_OK;
    sl_client_t *c = sl_client_new(&o, &err);
    assert_non_null(c);
    enum { QUEUES = 400, BATCH = 40 };
    char names[QUEUES][16];
    for (int i = 0; i < QUEUES; i += BATCH) {
        sl_job_t jobs[BATCH];
        sl_confirm_t cf[BATCH];
        for (int k = 0; k < BATCH; k++) {
            snprintf(names[i + k], sizeof names[i + k], "many.%04d", i + k);
            jobs[k] = (sl_job_t){.queue = names[i + k], .payload = "x", .payload_len = 1};
        }
        SL_ASSERT_OK(sl_client_publish(c, jobs, BATCH, cf, sl_deadline_ms(tc_patience_ms())));
    }
    sl_queue_stats_t *qs = NULL;
    size_t nq = 0;
    SL_ASSERT_OK(sl_client_stats(c, NULL, &qs, &nq, sl_deadline_ms(tc_patience_ms())));
    assert_int_equal(nq, QUEUES);
    for (size_t i = 0; i < nq; i++) {
        assert_string_equal(qs[i].name, names[i]);
        assert_int_equal(qs[i].depth, 1);
    }
    free(qs);
    sl_client_destroy(&c);
    sl_testnode_release(&n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_client_admin__stats_every_queue_and_one),
        cmocka_unit_test(test_client_admin__stats_of_many_queues_come_in_pages),
        cmocka_unit_test(test_client_admin__pause_stops_deliveries_until_resume),
        cmocka_unit_test(test_client_admin__drain_refuses_publishes),
        cmocka_unit_test(test_client_admin__destroy_answers_pending_requests),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
