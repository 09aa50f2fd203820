/* redelivery_test.c -- a consumer process killed with SIGKILL while it
 * hangs in its jobs: the node hands those jobs to another consumer within
 * lease + 3 heartbeats, and every job completes exactly once. */
#define _GNU_SOURCE
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testlib.h"
#include "itest.h"

#define S_WINDOW 4            /* A's concurrency: the jobs it hangs in */
#define S_JOBS (2 * S_WINDOW)  /* the other half goes to B at once     */
#define S_LEASE_MS 1000
#define S_HEARTBEAT_MS 200
/* Scheduling slack on a loaded 2-core machine, over lease + 3 heartbeats. */
#define S_GRACE_MS 300

/* Fails if the hung jobs go to B while A is alive and touching them (lease
 * renewal broken), if they are not redelivered within lease + 3 heartbeats
 * (+ S_GRACE_MS) of the kill (dead peer not noticed, or leases not
 * expiring), if any job is lost or handled twice, or if the queue does not
 * end with every job acked. */
static void test_redelivery__killed_consumer_jobs_go_to_another(void **state)
{
    it_ctx_t *t = *state;
    it_node_start(&t->node, (const char *const[]){"--lease", "1s", "--heartbeat", "200ms", NULL});
    t->client = it_client(t->node.endpoint);

    uint8_t ids[S_JOBS][SL_ID_LEN];
    for (int i = 0; i < S_JOBS; i++) {
        char text[16];
        snprintf(text, sizeof text, "r%d", i);
        sl_job_t j = {.queue = "redeliver", .payload = text, .payload_len = strlen(text)};
        sl_confirm_t cf;
        SL_ASSERT_OK(sl_client_publish(t->client, &j, 1, &cf, sl_deadline_ms(10000)));
        assert_int_equal(cf.status, SL_CONFIRM_ACCEPTED);
        memcpy(ids[i], cf.id, SL_ID_LEN);
    }
    /* A takes a window of jobs and hangs in every one, touching their
     * leases as a stuck but live worker does. */
    char ra[PATH_MAX], rb[PATH_MAX], window[16];
    snprintf(window, sizeof window, "%d", S_WINDOW);
    pid_t a = it_consumer(t->node.endpoint, "redeliver", it_path(ra, "a"),
                          (const char *const[]){"--concurrency", window, "--hang-after", "0",
                                                "--touch-ms", "250", NULL});
    IT_WAIT_TRUE(10000, it_count(ra, "hang") == S_WINDOW);
    IT_WAIT_STATS(t->client, "redeliver", 10000,
                  st.in_flight == S_WINDOW && st.depth == S_JOBS - S_WINDOW);

    /* B takes the rest. */
    it_consumer(t->node.endpoint, "redeliver", it_path(rb, "b"),
                (const char *const[]){"--concurrency", "4", NULL});
    IT_WAIT_STATS(t->client, "redeliver", 10000,
                  st.consumers == 2 && st.acked == S_JOBS - S_WINDOW && st.depth == 0);

    /* A lives on past its leases' first expiry: its touches must keep the
     * jobs (a deliberate wait: what is checked is that nothing happens). */
    int64_t hold_end = it_mono_ms() + S_LEASE_MS + 500;
    while (it_mono_ms() < hold_end) {
        sl_queue_stats_t st = it_stats(t->client, "redeliver");
        assert_int_equal(st.in_flight, S_WINDOW);
        assert_int_equal(it_count(rb, ""), S_JOBS - S_WINDOW);
        it_sleep_ms(50);
    }

    int64_t killed = it_mono_ms();
    it_stop(a, SIGKILL, 5000);
    IT_WAIT_TRUE(10000, it_count(rb, "done") == S_JOBS);
    IT_WAIT_STATS(t->client, "redeliver", 10000,
                  st.acked == S_JOBS && st.in_flight == 0 && st.depth == 0 && st.dead == 0);

    /* Each job done exactly once, by B; the hung ones soon after the kill. */
    it_idset_t *done = it_idset_new(S_JOBS), *hung = it_idset_new(S_WINDOW);
    it_rec_t *recs;
    size_t n = it_records(ra, &recs);
    for (size_t i = 0; i < n; i++)
        it_idset_add(hung, recs[i].id, 0);
    free(recs);
    n = it_records(rb, &recs);
    int64_t worst = 0;
    size_t redelivered = 0;
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(it_idset_add(done, recs[i].id, 1), 1);
        if (it_idset_count(hung, recs[i].id, NULL) == 0)
            continue;
        redelivered++;
        assert_true(recs[i].mono_ms >= killed);
        if (recs[i].mono_ms - killed > worst)
            worst = recs[i].mono_ms - killed;
    }
    free(recs);
    print_message("hung jobs redelivered %lld ms after SIGKILL (limit %d)\n", (long long)worst,
                  S_LEASE_MS + 3 * S_HEARTBEAT_MS);
    assert_int_equal(redelivered, S_WINDOW);
    assert_true(worst <= S_LEASE_MS + 3 * S_HEARTBEAT_MS + S_GRACE_MS);
    for (int i = 0; i < S_JOBS; i++)
        assert_int_equal(it_idset_count(done, ids[i], NULL), 1);
    it_idset_destroy(&done);
    it_idset_destroy(&hung);
    t->passed = true;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_redelivery__killed_consumer_jobs_go_to_another,
                                        it_setup, it_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
