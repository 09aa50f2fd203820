/* retry_test.c -- a consumer process that always fails retryably: the job
 * is delivered max-attempts times, the gaps between deliveries follow the
 * backoff (full jitter: at most each step, no sooner than the fail), then
 * it is dead,
 * as the node's stats and `sluice stats` both show. The jitter is drawn
 * afresh by every node process. */
#define _GNU_SOURCE
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testlib.h"
#include "itest.h"

#define S_ATTEMPTS 3
#define S_BACKOFF_MS 100

/* The value of column `col` in the row of `queue` of a `sluice stats`
 * table, or -1. */
static long s_table_cell(const char *table, const char *queue, const char *col)
{
    char *copy = strdup(table), *save = NULL;
    int want = -1;
    long v = -1;
    for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *cells[16], *s2 = NULL;
        int k = 0;
        for (char *c = strtok_r(line, " ", &s2); c && k < 16; c = strtok_r(NULL, " ", &s2))
            cells[k++] = c;
        if (k == 0)
            continue;
        if (strcmp(cells[0], "QUEUE") == 0) {
            for (int i = 0; i < k; i++)
                if (strcmp(cells[i], col) == 0)
                    want = i;
        } else if (strcmp(cells[0], queue) == 0 && want >= 0 && want < k) {
            v = strtol(cells[want], NULL, 10);
        }
    }
    free(copy);
    return v;
}

/* Fails if the job is delivered other than exactly S_ATTEMPTS times with
 * attempts 1, 2, 3; if a retry comes absurdly late (more than a second
 * over its backoff step of 100 ms, then 200 ms); if it
 * is not dead afterwards in the node's stats or in `sluice stats`, or is
 * still counted ready, delayed or in flight. */
static void test_retry__always_failing_job_backs_off_then_is_dead(void **state)
{
    it_ctx_t *t = *state;
    it_node_start(&t->node, (const char *const[]){"--max-attempts", "3", "--backoff-base", "100ms",
                                                  NULL});
    t->client = it_client(t->node.endpoint);
    char cr[PATH_MAX];
    it_consumer(t->node.endpoint, "doomed", it_path(cr, "consumer"),
                (const char *const[]){"--fail", "retry", NULL});
    IT_WAIT_STATS(t->client, "doomed", 10000, st.consumers == 1);

    sl_job_t j = {.queue = "doomed", .payload = "never", .payload_len = 5};
    sl_confirm_t cf;
    SL_ASSERT_OK(sl_client_publish(t->client, &j, 1, &cf, sl_deadline_ms(10000)));
    assert_int_equal(cf.status, SL_CONFIRM_ACCEPTED);
    sl_queue_stats_t st = IT_WAIT_STATS(t->client, "doomed", 10000, st.dead == 1);
    assert_int_equal(st.depth, 0);
    assert_int_equal(st.delayed, 0);
    assert_int_equal(st.in_flight, 0);
    assert_int_equal(st.acked, 0);

    it_rec_t *recs;
    size_t n = it_records(cr, &recs);
    assert_int_equal(n, S_ATTEMPTS);
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(recs[i].event, "fail");
        assert_memory_equal(recs[i].id, cf.id, SL_ID_LEN);
        assert_int_equal(recs[i].attempt, (long)i + 1);
    }
    for (size_t i = 1; i < n; i++) {
        int64_t gap = recs[i].mono_ms - recs[i - 1].mono_ms;
        int64_t step = (int64_t)S_BACKOFF_MS << (i - 1);
        print_message("retry %zu after %lld ms (backoff step %lld ms)\n", i, (long long)gap,
                      (long long)step);
        /* Full jitter: anywhere from 0 to the step (docs/protocol.md). */
        assert_true(gap >= 0);
        assert_true(gap <= step + 1000);
    }
    free(recs);

    char *out = NULL;
    int rc = it_cli(t->node.endpoint, (const char *const[]){"stats", "doomed", NULL}, 10000, &out);
    print_message("%s", out);
    assert_int_equal(rc, 0);
    assert_int_equal(s_table_cell(out, "doomed", "DEAD"), 1);
    free(out);
    t->passed = true;
}

#define S_JOBS 8

static int s_cmp(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* Run a fresh node, have S_JOBS jobs fail 3 times each, and return the
 * gaps before their first and second retries, each set sorted. */
static void s_retry_gaps(it_ctx_t *t, int run, int64_t gaps[2][S_JOBS])
{
    char queue[32], name[32], cr[PATH_MAX];
    snprintf(queue, sizeof queue, "jitter%d", run);
    snprintf(name, sizeof name, "consumer%d", run);
    it_node_start(&t->node, (const char *const[]){"--max-attempts", "3", "--backoff-base", "100ms",
                                                  NULL});
    t->client = it_client(t->node.endpoint);
    pid_t c = it_consumer(t->node.endpoint, queue, it_path(cr, name),
                          (const char *const[]){"--fail", "retry", "--concurrency", "8", NULL});
    IT_WAIT_STATS(t->client, queue, 10000, st.consumers == 1);
    sl_job_t jobs[S_JOBS];
    sl_confirm_t cfs[S_JOBS];
    for (int i = 0; i < S_JOBS; i++)
        jobs[i] = (sl_job_t){.queue = queue, .payload = "j", .payload_len = 1};
    SL_ASSERT_OK(sl_client_publish(t->client, jobs, S_JOBS, cfs, sl_deadline_ms(10000)));
    IT_WAIT_STATS(t->client, queue, 10000, st.dead == S_JOBS);

    it_rec_t *recs;
    size_t n = it_records(cr, &recs);
    assert_int_equal(n, 3 * S_JOBS);
    for (int j = 0; j < S_JOBS; j++) {
        int64_t at[3] = {-1, -1, -1};
        for (size_t i = 0; i < n; i++)
            if (memcmp(recs[i].id, cfs[j].id, SL_ID_LEN) == 0 && recs[i].attempt >= 1 &&
                recs[i].attempt <= 3)
                at[recs[i].attempt - 1] = recs[i].mono_ms;
        assert_true(at[0] >= 0 && at[1] >= 0 && at[2] >= 0);
        gaps[0][j] = at[1] - at[0];
        gaps[1][j] = at[2] - at[1];
    }
    free(recs);
    qsort(gaps[0], S_JOBS, sizeof gaps[0][0], s_cmp);
    qsort(gaps[1], S_JOBS, sizeof gaps[1][0], s_cmp);
    it_stop(c, SIGKILL, 5000);
    sl_client_destroy(&t->client);
    it_stop(t->node.pid, SIGKILL, 5000);
    t->node.pid = 0;
    sl_testnode_release(&t->node);
}

/* Two node processes each retry 8 jobs twice. Full jitter draws each
 * delay at random, so the two runs' delays differ; a node whose random
 * source starts from the same seed in every process makes the same draws
 * (then every node of a cluster retries in lockstep, the herd jitter is
 * there to break up).
 *
 * Fails if all 16 sorted retry delays of the second node are within 2 ms
 * of the first's (by chance: far below one in a million). */
static void test_retry__jitter_differs_between_node_processes(void **state)
{
    it_ctx_t *t = *state;
    int64_t a[2][S_JOBS], b[2][S_JOBS];
    s_retry_gaps(t, 0, a);
    s_retry_gaps(t, 1, b);
    int same = 0;
    for (int r = 0; r < 2; r++) {
        print_message("retry %d delays, node 1:", r + 1);
        for (int j = 0; j < S_JOBS; j++)
            print_message(" %lld", (long long)a[r][j]);
        print_message("; node 2:");
        for (int j = 0; j < S_JOBS; j++) {
            print_message(" %lld", (long long)b[r][j]);
            same += llabs(a[r][j] - b[r][j]) <= 2;
        }
        print_message("\n");
    }
    if (same == 2 * S_JOBS)
        fail_msg("two node processes drew the same retry delays: jitter is not random "
                 "across processes");
    t->passed = true;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_retry__always_failing_job_backs_off_then_is_dead,
                                        it_setup, it_teardown),
        cmocka_unit_test_setup_teardown(test_retry__jitter_differs_between_node_processes,
                                        it_setup, it_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
