/* throughput_test.c -- 100,000 jobs (1,000,000 with SLUICE_SOAK=1) from a
 * producer process through a real node to three consumer processes, none
 * failing: every job is handled exactly once, and all three share it. */
#define _GNU_SOURCE
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>

#include "testlib.h"
#include "itest.h"

#define S_CONSUMERS 3

/* Fails if a published job is never handled (loss), is handled twice
 * (duplicate) or a consumer handles a job nobody published; if the
 * producer sees anything but ACCEPTED; if a consumer gets less than 5% of
 * the work (credit-based dispatch starving a subscriber); or if it does not
 * all finish within the deadlines. */
static void test_throughput__every_job_exactly_once_across_three_consumers(void **state)
{
    it_ctx_t *t = *state;
    long total = it_soak() ? 1000000 : 100000;
    char total_s[32];
    snprintf(total_s, sizeof total_s, "%ld", total);
    it_node_start(&t->node, NULL);
    t->client = it_client(t->node.endpoint);

    char rec[S_CONSUMERS][PATH_MAX], prec[PATH_MAX], name[32];
    pid_t cons[S_CONSUMERS];
    for (int i = 0; i < S_CONSUMERS; i++) {
        snprintf(name, sizeof name, "consumer%d", i);
        cons[i] = it_consumer(t->node.endpoint, "work", it_path(rec[i], name),
                              (const char *const[]){"--concurrency", "32", NULL});
    }
    IT_WAIT_STATS(t->client, "work", 10000, st.consumers == S_CONSUMERS);

    int64_t t0 = it_mono_ms();
    pid_t prod = it_producer(t->node.endpoint, "work", it_path(prec, "producer"),
                             (const char *const[]){"--count", total_s, "--batch", "200",
                                                   "--inflight", "16", NULL});
    int64_t patience = it_soak() ? 900000 : 150000;
    int st_prod = it_wait_exit(prod, patience);
    assert_true(st_prod != -1 && WIFEXITED(st_prod) && WEXITSTATUS(st_prod) == 0);
    sl_queue_stats_t st = IT_WAIT_STATS(t->client, "work", patience,
                                        st.acked >= (uint64_t)total && st.in_flight == 0);
    double secs = (double)(it_mono_ms() - t0) / 1000.0;
    print_message("%ld jobs in %.1f s (%.0f jobs/s)\n", total, secs, (double)total / secs);
    assert_int_equal(st.published, total);
    assert_int_equal(st.acked, total);
    assert_int_equal(st.depth, 0);
    assert_int_equal(st.dead, 0);
    assert_int_equal(st.dropped, 0);

    for (int i = 0; i < S_CONSUMERS; i++) {
        int ws = it_stop(cons[i], SIGTERM, 15000);
        assert_true(WIFEXITED(ws) && WEXITSTATUS(ws) == 0);
    }

    /* Everything the producer was told ACCEPTED ... */
    assert_int_equal(it_summary(prec, "accepted"), total);
    it_rec_t *recs;
    size_t n = it_records(prec, &recs);
    assert_int_equal(n, total);
    it_idset_t *published = it_idset_new((size_t)total);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(it_idset_add(published, recs[i].id, (int)recs[i].attempt), 1);
    free(recs);

    /* ... was handled once, by some consumer, and nothing else was. */
    it_idset_t *handled = it_idset_new((size_t)total);
    size_t share[S_CONSUMERS] = {0}, dups = 0, strangers = 0;
    for (int c = 0; c < S_CONSUMERS; c++) {
        n = it_records(rec[c], &recs);
        for (size_t i = 0; i < n; i++) {
            if (it_idset_count(published, recs[i].id, NULL) == 0)
                strangers++;
            if (it_idset_add(handled, recs[i].id, c) > 1)
                dups++;
        }
        share[c] = n;
        free(recs);
    }
    print_message("shares: %zu %zu %zu\n", share[0], share[1], share[2]);
    assert_int_equal(strangers, 0);
    assert_int_equal(dups, 0);
    assert_int_equal(it_idset_size(handled), total);
    for (int c = 0; c < S_CONSUMERS; c++)
        assert_true(share[c] >= (size_t)total / 20);
    it_idset_destroy(&published);
    it_idset_destroy(&handled);
    t->passed = true;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_throughput__every_job_exactly_once_across_three_consumers, it_setup,
            it_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
