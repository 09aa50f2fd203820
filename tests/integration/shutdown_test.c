/* shutdown_test.c -- SIGTERM drains a real node: it waits for the job a
 * consumer process is finishing, then exits 0 reporting nothing in flight;
 * a job that never finishes is cut off at --shutdown-timeout, exit 3. */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testlib.h"
#include "itest.h"

/* Read the node's stdout to its end (the node exits), up to timeout_ms.
 * Returns when EOF was seen, in *eof_at (monotonic ms); fails otherwise. */
static void s_read_to_eof(int fd, char *buf, size_t cap, int64_t timeout_ms, int64_t *eof_at)
{
    size_t len = 0;
    int64_t end = it_mono_ms() + timeout_ms;
    for (;;) {
        int left = (int)(end - it_mono_ms());
        if (left <= 0)
            fail_msg("node still running %lld ms after SIGTERM", (long long)timeout_ms);
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        if (poll(&pf, 1, left) < 0 && errno != EINTR)
            fail_msg("poll: %s", strerror(errno));
        if (!(pf.revents & (POLLIN | POLLHUP | POLLERR)))
            continue;
        ssize_t r = read(fd, buf + len, cap - 1 - len);
        if (r == 0)
            break;
        if (r > 0)
            len += (size_t)r;
    }
    *eof_at = it_mono_ms();
    buf[len] = '\0';
}

/* SIGTERM the node; return its exit status, what it printed after the
 * listening line, and how long it took to exit. */
static int s_terminate(it_ctx_t *t, char *out, size_t cap, int64_t *took_ms)
{
    int64_t t0 = it_mono_ms(), eof_at;
    kill(t->node.pid, SIGTERM);
    s_read_to_eof(t->node.out_fd, out, cap, 15000, &eof_at);
    int ws = it_wait_exit(t->node.pid, 5000);
    assert_int_not_equal(ws, -1);
    t->node.pid = 0;
    *took_ms = eof_at - t0;
    print_message("node took %lld ms to stop; printed: %s", (long long)*took_ms, out);
    assert_true(WIFEXITED(ws));
    return WEXITSTATUS(ws);
}

/* Fails if the node exits before the consumer's 1 s job is acked (drain
 * not waiting), reports anything in flight, exits non-zero, or waits for
 * the whole 10 s shutdown timeout although the job finished (drain not
 * noticing the ack). */
static void test_shutdown__sigterm_waits_for_the_job_in_flight(void **state)
{
    it_ctx_t *t = *state;
    it_node_start(&t->node, NULL);
    t->client = it_client(t->node.endpoint);
    char cr[PATH_MAX];
    it_consumer(t->node.endpoint, "drain", it_path(cr, "consumer"),
                (const char *const[]){"--sleep-ms", "1000", NULL});
    IT_WAIT_STATS(t->client, "drain", 10000, st.consumers == 1);
    sl_job_t j = {.queue = "drain", .payload = "slow", .payload_len = 4};
    sl_confirm_t cf;
    SL_ASSERT_OK(sl_client_publish(t->client, &j, 1, &cf, sl_deadline_ms(10000)));
    IT_WAIT_STATS(t->client, "drain", 10000, st.in_flight == 1);
    sl_client_destroy(&t->client); /* only the consumer stays connected */

    char out[1024];
    int64_t took;
    int code = s_terminate(t, out, sizeof out, &took);
    int64_t stopped_at = it_mono_ms();
    assert_int_equal(code, 0);
    assert_non_null(strstr(out, "stopped in_flight=0"));
    assert_true(took < 10000);

    /* The consumer finished the job, and the node stopped after that. */
    it_rec_t *recs;
    size_t n = it_records(cr, &recs);
    assert_int_equal(n, 1);
    assert_string_equal(recs[0].event, "done");
    assert_true(stopped_at >= recs[0].mono_ms + 1000);
    free(recs);
    t->passed = true;
}

/* Fails if the node does not give up on a job that never finishes at
 * --shutdown-timeout 500ms (exits much sooner or later than ~0.5 s), exits
 * with anything but 3, or does not report the job in flight. */
static void test_shutdown__sigterm_cuts_off_a_stuck_job_at_the_timeout(void **state)
{
    it_ctx_t *t = *state;
    it_node_start(&t->node, (const char *const[]){"--shutdown-timeout", "500ms", NULL});
    t->client = it_client(t->node.endpoint);
    char cr[PATH_MAX];
    it_consumer(t->node.endpoint, "stuck", it_path(cr, "consumer"),
                (const char *const[]){"--hang-after", "0", NULL});
    IT_WAIT_STATS(t->client, "stuck", 10000, st.consumers == 1);
    sl_job_t j = {.queue = "stuck", .payload = "forever", .payload_len = 7};
    sl_confirm_t cf;
    SL_ASSERT_OK(sl_client_publish(t->client, &j, 1, &cf, sl_deadline_ms(10000)));
    IT_WAIT_STATS(t->client, "stuck", 10000, st.in_flight == 1);
    IT_WAIT_TRUE(10000, it_count(cr, "hang") == 1);
    sl_client_destroy(&t->client);

    char out[1024];
    int64_t took;
    int code = s_terminate(t, out, sizeof out, &took);
    assert_int_equal(code, 3);
    assert_non_null(strstr(out, "stopped in_flight=1"));
    assert_true(took >= 450);
    assert_true(took <= 2500);
    t->passed = true;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_shutdown__sigterm_waits_for_the_job_in_flight,
                                        it_setup, it_teardown),
        cmocka_unit_test_setup_teardown(test_shutdown__sigterm_cuts_off_a_stuck_job_at_the_timeout,
                                        it_setup, it_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
