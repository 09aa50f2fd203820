/* credit_test.c -- a slow consumer process under a producer's flood never
 * holds more deliveries than the credit it granted, counted on its side
 * (received less acked) and on the node's (in-flight); and it does not hold
 * fewer either: a window slot freed by a finished job is taken again. */
#define _GNU_SOURCE
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>

#include "testlib.h"
#include "itest.h"

#define S_CREDIT 5

/* Fails if the consumer ever saw more than S_CREDIT deliveries not yet
 * acked (the node ignoring credit, or the client granting too much), if
 * the node's in-flight count for the queue exceeds it, or if the window is
 * never filled (max below S_CREDIT: the client granting too little, which
 * would also mean the measurement could not catch an excess). */
static void test_credit__slow_consumer_never_holds_more_than_its_credit(void **state)
{
    it_ctx_t *t = *state;
    it_node_start(&t->node, NULL);
    t->client = it_client(t->node.endpoint);

    char pr[PATH_MAX], cr[PATH_MAX], credit[16];
    snprintf(credit, sizeof credit, "%d", S_CREDIT);
    it_producer(t->node.endpoint, "slow", it_path(pr, "producer"),
                (const char *const[]){"--count", "20000", "--batch", "200", NULL});
    pid_t c = it_consumer(t->node.endpoint, "slow", it_path(cr, "consumer"),
                          (const char *const[]){"--channel", "--concurrency", credit,
                                                "--sleep-ms", "10", NULL});
    /* Watch the node's side while the consumer works through 150 jobs. */
    uint64_t node_max = 0;
    int64_t end = it_mono_ms() + 30000;
    while (it_count(cr, "done") < 150) {
        sl_queue_stats_t st = it_stats_or_zero(t->client, "slow");
        if (st.in_flight > node_max)
            node_max = st.in_flight;
        assert_true(it_mono_ms() < end);
        it_sleep_ms(5);
    }
    sl_queue_stats_t st = it_stats(t->client, "slow");
    assert_true(st.depth > 1000); /* still flooded: the credit was the limit */

    int ws = it_stop(c, SIGTERM, 15000);
    assert_true(WIFEXITED(ws) && WEXITSTATUS(ws) == 0);
    long max = it_summary(cr, "max_outstanding");
    print_message("max outstanding: client %ld, node %llu (credit %d)\n", max,
                  (unsigned long long)node_max, S_CREDIT);
    assert_int_equal(max, S_CREDIT);
    assert_true(node_max <= S_CREDIT);
    t->passed = true;
}

#define S_ROUNDS 6
#define S_WINDOW 4

/* A consumer of concurrency 4 runs 4 jobs of 300 ms that end together,
 * then hangs in every later job (touching its lease). With 8 jobs queued
 * its window must refill to 4: 4 jobs hanging, none left ready. Repeated on
 * S_ROUNDS fresh queues and consumers, because the jobs ending "together"
 * (their acks reaching the client's I/O thread in one wake-up) is likely,
 * not certain.
 *
 * Fails if the client grants back less credit than the deliveries that
 * ended, so that a ready job waits while a slot of the consumer's window
 * stays idle (for as long as no other job ends: here for ever). */
static void test_credit__window_refills_after_jobs_end_together(void **state)
{
    it_ctx_t *t = *state;
    it_node_start(&t->node, NULL);
    t->client = it_client(t->node.endpoint);
    for (int r = 0; r < S_ROUNDS; r++) {
        char queue[32], name[32], rec[PATH_MAX];
        snprintf(queue, sizeof queue, "refill%d", r);
        snprintf(name, sizeof name, "consumer%d", r);
        for (int i = 0; i < 2 * S_WINDOW; i++) {
            sl_job_t j = {.queue = queue, .payload = "w", .payload_len = 1};
            sl_confirm_t cf;
            SL_ASSERT_OK(sl_client_publish(t->client, &j, 1, &cf, sl_deadline_ms(10000)));
        }
        pid_t c = it_consumer(t->node.endpoint, queue, it_path(rec, name),
                              (const char *const[]){"--concurrency", "4", "--sleep-ms", "300",
                                                    "--hang-after", "4", NULL});
        IT_WAIT_TRUE(10000, it_count(rec, "done") == S_WINDOW);
        /* The acks are out; give the window every chance to refill. */
        int64_t end = it_mono_ms() + 2000;
        sl_queue_stats_t st;
        do {
            st = it_stats(t->client, queue);
            if (st.acked == S_WINDOW && st.in_flight == S_WINDOW && st.depth == 0 &&
                it_count(rec, "hang") == S_WINDOW)
                break;
            it_sleep_ms(20);
        } while (it_mono_ms() < end);
        kill(c, SIGUSR1); /* the client's counters, for the record */
        it_sleep_ms(100);
        print_message("round %d: %zu of %d slots busy, %llu jobs ready, client got %ld "
                      "deliveries\n", r, it_count(rec, "hang"), S_WINDOW,
                      (unsigned long long)st.depth, it_summary(rec, "delivered"));
        assert_int_equal(st.acked, S_WINDOW);
        assert_int_equal(st.depth, 0);
        assert_int_equal(st.in_flight, S_WINDOW);
        assert_int_equal(it_count(rec, "hang"), S_WINDOW);
        it_stop(c, SIGKILL, 5000);
    }
    t->passed = true;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_credit__slow_consumer_never_holds_more_than_its_credit, it_setup, it_teardown),
        cmocka_unit_test_setup_teardown(test_credit__window_refills_after_jobs_end_together,
                                        it_setup, it_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
