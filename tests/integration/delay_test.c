/* delay_test.c -- jobs published with `sluice publish --delay-ms 500` reach
 * a consumer process no earlier than 500 ms after they were published,
 * while an undelayed job published after them arrives at once. */
#define _GNU_SOURCE
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testlib.h"
#include "itest.h"

#define S_DELAY_MS 500
#define S_CALLS 16 /* `sluice publish` runs, two delayed jobs each */

/* Fails if a delayed job is received before its publish time + 500 ms
 * (created_ms, stamped by the client when publishing, from which the client
 * computes not_before_ms; and independently the wall clock before the CLI
 * started) -- even by a millisecond --, if it is not delivered within
 * 3 s after becoming due, or if the undelayed job is held back with them
 * (the consumer was live, and delay applies only to what asked for it). */
static void test_delay__delayed_jobs_arrive_no_earlier_than_asked(void **state)
{
    it_ctx_t *t = *state;
    it_node_start(&t->node, NULL);
    t->client = it_client(t->node.endpoint);
    char cr[PATH_MAX];
    it_consumer(t->node.endpoint, "later", it_path(cr, "consumer"),
                (const char *const[]){"--concurrency", "4", NULL});
    IT_WAIT_STATS(t->client, "later", 10000, st.consumers == 1);

    /* Several publishes, each at its own sub-millisecond phase, so that a
     * node rounding the delay down gets caught at it. */
    int64_t before = it_wall_ms();
    char *out = NULL;
    for (int k = 0; k < S_CALLS; k++) {
        char a[16], b[16];
        snprintf(a, sizeof a, "d%da", k);
        snprintf(b, sizeof b, "d%db", k);
        int rc = it_cli(t->node.endpoint,
                        (const char *const[]){"publish", "later", "--delay-ms", "500", a, b, NULL},
                        10000, &out);
        assert_int_equal(rc, 0);
        assert_non_null(strstr(out, "accepted"));
        free(out);
    }
    int rc = it_cli(t->node.endpoint, (const char *const[]){"publish", "later", "now1", NULL},
                    10000, &out);
    assert_int_equal(rc, 0);
    free(out);
    IT_WAIT_TRUE(10000, it_count(cr, "done") == 2 * S_CALLS + 1);

    it_rec_t *recs;
    size_t n = it_records(cr, &recs);
    assert_int_equal(n, 2 * S_CALLS + 1);
    int delayed = 0, early = 0;
    int64_t least = INT64_MAX;
    for (size_t i = 0; i < n; i++) {
        int64_t waited = recs[i].wall_ms - recs[i].created_ms;
        if (recs[i].payload[0] != 'd') {
            assert_string_equal(recs[i].payload, "now1");
            assert_true(waited < S_DELAY_MS);
            continue;
        }
        delayed++;
        if (waited < least)
            least = waited;
        /* Both sides are whole milliseconds of one wall clock: received at
         * ms X means at or after X, so X < created + 500 is surely early. */
        if (recs[i].wall_ms < recs[i].created_ms + S_DELAY_MS ||
            recs[i].wall_ms < before + S_DELAY_MS) {
            print_message("%s received %lld ms after publish: early\n", recs[i].payload,
                          (long long)waited);
            early++;
        }
        assert_true(waited <= S_DELAY_MS + 3000);
    }
    print_message("delayed jobs received %lld ms after publish at the soonest\n",
                  (long long)least);
    assert_int_equal(early, 0);
    assert_int_equal(delayed, 2 * S_CALLS);
    free(recs);
    t->passed = true;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_delay__delayed_jobs_arrive_no_earlier_than_asked,
                                        it_setup, it_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
