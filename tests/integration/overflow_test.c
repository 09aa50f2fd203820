/* overflow_test.c -- a producer process floods a queue of max-length 1000
 * under each overflow policy of a real node: block holds confirms back
 * until consumers make room and loses nothing; drop-new rejects what does
 * not fit and delivers what it accepted; drop-oldest keeps the newest. */
#define _GNU_SOURCE
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "testlib.h"
#include "itest.h"

#define S_MAX_LENGTH 1000

static void s_start(it_ctx_t *t, const char *policy)
{
    it_node_start(&t->node, (const char *const[]){"--max-length", "1000", "--overflow", policy,
                                                  NULL});
    t->client = it_client(t->node.endpoint);
}

static void s_wait_ok(pid_t pid, int64_t timeout_ms)
{
    int ws = it_wait_exit(pid, timeout_ms);
    if (ws == -1)
        fail_msg("pid %d still running after %lld ms", (int)pid, (long long)timeout_ms);
    assert_true(WIFEXITED(ws) && WEXITSTATUS(ws) == 0);
}

/* Ids of the producer's jobs with the given status, tagged with their
 * sequence number. */
static it_idset_t *s_produced(const char *path, const char *status, size_t *n_out)
{
    it_rec_t *recs;
    size_t n = it_records(path, &recs), k = 0;
    it_idset_t *set = it_idset_new(n);
    for (size_t i = 0; i < n; i++)
        if (strcmp(recs[i].event, status) == 0) {
            assert_int_equal(it_idset_add(set, recs[i].id, (int)recs[i].attempt), 1);
            k++;
        }
    free(recs);
    *n_out = k;
    return set;
}

/* Ids the consumer handled ("done"), with how often. */
static it_idset_t *s_handled(const char *path, size_t *n_out)
{
    it_rec_t *recs;
    size_t n = it_records(path, &recs);
    it_idset_t *set = it_idset_new(n);
    for (size_t i = 0; i < n; i++)
        it_idset_add(set, recs[i].id, 0);
    free(recs);
    *n_out = n;
    return set;
}

/* Fails if the queue ever holds more than max-length, if the flooding
 * producer's confirms come back while the queue is full (> max-length
 * confirmed, or the producer finishing), if a publish with a short deadline
 * succeeds while full, if it still fails after consumers drained the
 * queue, or if any job the producer published is lost, duplicated or
 * dropped. */
static void test_overflow__block_holds_confirms_until_room_and_loses_nothing(void **state)
{
    it_ctx_t *t = *state;
    s_start(t, "block");
    char pr[PATH_MAX], cr[PATH_MAX];
    pid_t prod = it_producer(t->node.endpoint, "flood", it_path(pr, "producer"),
                             (const char *const[]){"--count", "3000", "--batch", "100",
                                                   "--inflight", "8", NULL});
    IT_WAIT_STATS(t->client, "flood", 10000, st.depth == S_MAX_LENGTH);

    /* Full: a publish waits, and with a short deadline gives up. */
    uint8_t probe1[SL_ID_LEN], probe2[SL_ID_LEN];
    sl_id_new(probe1);
    sl_job_t j = {.queue = "flood", .payload = "probe1", .payload_len = 6};
    memcpy(j.id, probe1, SL_ID_LEN);
    sl_confirm_t cf;
    int64_t t0 = it_mono_ms();
    SL_ASSERT_ERR(sl_client_publish(t->client, &j, 1, &cf, sl_deadline_ms(300)), SL_ETIMEDOUT);
    assert_true(it_mono_ms() - t0 >= 250);
    sl_queue_stats_t st = it_stats(t->client, "flood");
    assert_int_equal(st.depth, S_MAX_LENGTH);
    assert_int_equal(st.capacity, S_MAX_LENGTH);
    assert_true(it_count(pr, "") <= S_MAX_LENGTH);
    assert_int_equal(it_wait_exit(prod, 0), -1); /* still waiting for confirms */

    /* Consumers make room: the producer's confirms arrive, and so does a
     * new publish's. */
    pid_t cons = it_consumer(t->node.endpoint, "flood", it_path(cr, "consumer"),
                             (const char *const[]){"--concurrency", "8", NULL});
    s_wait_ok(prod, 60000);
    sl_id_new(probe2);
    j.payload = "probe2";
    memcpy(j.id, probe2, SL_ID_LEN);
    SL_ASSERT_OK(sl_client_publish(t->client, &j, 1, &cf, sl_deadline_ms(10000)));
    assert_int_equal(cf.status, SL_CONFIRM_ACCEPTED);
    st = IT_WAIT_STATS(t->client, "flood", 30000,
                       st.depth == 0 && st.in_flight == 0 && st.acked == st.published);
    assert_int_equal(st.dropped, 0);
    assert_int_equal(st.dead, 0);
    it_stop(cons, SIGTERM, 15000);

    size_t n_acc, n_done;
    it_idset_t *acc = s_produced(pr, "accepted", &n_acc);
    it_idset_t *done = s_handled(cr, &n_done);
    assert_int_equal(n_acc, 3000);
    /* Every accepted job once, probe2 once, probe1 (timed out while
     * waiting: "may or may not be stored") at most once. */
    assert_int_equal(it_idset_count(done, probe2, NULL), 1);
    assert_true(it_idset_count(done, probe1, NULL) <= 1);
    it_rec_t *recs;
    size_t n = it_records(pr, &recs);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(it_idset_count(done, recs[i].id, NULL), 1);
    free(recs);
    print_message("delivered %zu (3000 + probe2 + %d probe1)\n", n_done,
                  it_idset_count(done, probe1, NULL));
    assert_int_equal(it_idset_size(done), n_done); /* no duplicates */
    it_idset_destroy(&acc);
    it_idset_destroy(&done);
    t->passed = true;
}

/* Fails if a flood past max-length gets no rejections, if the producer's
 * count of REJECTED confirms differs from the node's dropped stat, if an
 * accepted job is not delivered exactly once, or a rejected one is
 * delivered. */
static void test_overflow__drop_new_rejects_and_delivers_what_it_accepted(void **state)
{
    it_ctx_t *t = *state;
    s_start(t, "drop-new");
    char pr[PATH_MAX], cr[PATH_MAX];
    /* A consumer far slower than the producer works through the flood. */
    pid_t cons = it_consumer(t->node.endpoint, "flood", it_path(cr, "consumer"),
                             (const char *const[]){"--concurrency", "2", "--sleep-ms", "1", NULL});
    IT_WAIT_STATS(t->client, "flood", 10000, st.consumers == 1);
    pid_t prod = it_producer(t->node.endpoint, "flood", it_path(pr, "producer"),
                             (const char *const[]){"--count", "10000", "--batch", "100", NULL});
    s_wait_ok(prod, 60000);
    long accepted = it_summary(pr, "accepted"), rejected = it_summary(pr, "rejected");
    assert_int_equal(accepted + rejected, 10000);
    assert_true(rejected > 0);
    sl_queue_stats_t st = IT_WAIT_STATS(t->client, "flood", 60000,
                                        st.depth == 0 && st.in_flight == 0 &&
                                            st.acked == (uint64_t)accepted);
    print_message("accepted %ld rejected %ld; node dropped %llu\n", accepted, rejected,
                  (unsigned long long)st.dropped);
    assert_int_equal(st.dropped, rejected);
    assert_int_equal(st.published, accepted);
    it_stop(cons, SIGTERM, 15000);

    size_t n_acc, n_rej, n_done;
    it_idset_t *acc = s_produced(pr, "accepted", &n_acc);
    it_idset_t *rej = s_produced(pr, "rejected", &n_rej);
    it_idset_t *done = s_handled(cr, &n_done);
    assert_int_equal(n_done, n_acc);
    assert_int_equal(it_idset_size(done), n_acc);
    it_rec_t *recs;
    size_t n = it_records(cr, &recs);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(it_idset_count(acc, recs[i].id, NULL), 1);
        assert_int_equal(it_idset_count(rej, recs[i].id, NULL), 0);
    }
    free(recs);
    it_idset_destroy(&acc);
    it_idset_destroy(&rej);
    it_idset_destroy(&done);
    t->passed = true;
}

/* Fails if the flood is not all accepted, if the node's dropped stat is not
 * the overflow (published - max-length), or if what is delivered afterwards
 * is anything but the newest max-length jobs, each once. */
static void test_overflow__drop_oldest_keeps_the_newest(void **state)
{
    it_ctx_t *t = *state;
    s_start(t, "drop-oldest");
    char pr[PATH_MAX], cr[PATH_MAX];
    const long total = 5000;
    pid_t prod = it_producer(t->node.endpoint, "flood", it_path(pr, "producer"),
                             (const char *const[]){"--count", "5000", "--batch", "100", NULL});
    s_wait_ok(prod, 60000);
    assert_int_equal(it_summary(pr, "accepted"), total);
    sl_queue_stats_t st = it_stats(t->client, "flood");
    print_message("node dropped %llu, depth %llu\n", (unsigned long long)st.dropped,
                  (unsigned long long)st.depth);
    assert_true(st.dropped > 0);
    assert_int_equal(st.dropped, total - S_MAX_LENGTH);
    assert_int_equal(st.depth, S_MAX_LENGTH);

    pid_t cons = it_consumer(t->node.endpoint, "flood", it_path(cr, "consumer"),
                             (const char *const[]){"--concurrency", "8", NULL});
    IT_WAIT_STATS(t->client, "flood", 30000,
                  st.acked == S_MAX_LENGTH && st.depth == 0 && st.in_flight == 0);
    it_stop(cons, SIGTERM, 15000);

    size_t n_acc, n_done;
    it_idset_t *acc = s_produced(pr, "accepted", &n_acc);
    it_idset_t *done = s_handled(cr, &n_done);
    assert_int_equal(n_done, S_MAX_LENGTH);
    assert_int_equal(it_idset_size(done), S_MAX_LENGTH);
    it_rec_t *recs;
    size_t n = it_records(cr, &recs);
    for (size_t i = 0; i < n; i++) {
        int seq = -1;
        assert_int_equal(it_idset_count(acc, recs[i].id, &seq), 1);
        if (seq < total - S_MAX_LENGTH)
            fail_msg("delivered job %d, older than the newest %d of %ld", seq, S_MAX_LENGTH,
                     total);
    }
    free(recs);
    it_idset_destroy(&acc);
    it_idset_destroy(&done);
    t->passed = true;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_overflow__block_holds_confirms_until_room_and_loses_nothing, it_setup,
            it_teardown),
        cmocka_unit_test_setup_teardown(
            test_overflow__drop_new_rejects_and_delivers_what_it_accepted, it_setup, it_teardown),
        cmocka_unit_test_setup_teardown(test_overflow__drop_oldest_keeps_the_newest, it_setup,
                                        it_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
