/* coord_daemon_test.c -- the sluice-coordinator daemon as users run it:
 * it prints exactly one line `listening <endpoint> epoch <16 hex>` once
 * bound, serves that endpoint with the options given, refuses a bad
 * option with exit status 2, and exits 0 on SIGTERM. */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "coord_testutil.h"

typedef struct {
    pid_t pid;
    int out; /* the daemon's stdout */
} s_daemon_t;

static s_daemon_t s_spawn(char *const argv[])
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        execv(SLUICE_COORD_BIN, argv);
        _exit(127);
    }
    close(fds[1]);
    return (s_daemon_t){pid, fds[0]};
}

/* Read stdout until EOF or timeout_ms; returns the bytes read. */
static size_t s_read(int fd, char *buf, size_t cap, int64_t timeout_ms, bool until_eof)
{
    size_t n = 0;
    int64_t end = sl_deadline_ms(timeout_ms);
    while (n + 1 < cap && sl_now() < end) {
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        if (poll(&pf, 1, 10) <= 0)
            continue;
        ssize_t r = read(fd, buf + n, cap - 1 - n);
        if (r <= 0)
            break;
        n += (size_t)r;
        if (!until_eof && memchr(buf, '\n', n))
            break;
    }
    buf[n] = '\0';
    return n;
}

static int s_wait_exit(pid_t pid, int64_t timeout_ms)
{
    int64_t end = sl_deadline_ms(timeout_ms);
    int st = 0;
    while (waitpid(pid, &st, WNOHANG) == 0) {
        if (sl_now() >= end) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            fail_msg("the coordinator did not exit within %lld ms", (long long)timeout_ms);
        }
        coord_sleep_ms(5);
    }
    assert_true(WIFEXITED(st));
    return WEXITSTATUS(st);
}

static void test_coord_daemon__prints_line_serves_and_stops_on_sigterm(void **state)
{
    (void)state;
    char *argv[] = {"sluice-coordinator", "--endpoint", "tcp://127.0.0.1:0", "--id", "daemon-test",
                    "--heartbeat", "50ms", "--grace", "0", "--log-level", "warn", NULL};
    s_daemon_t d = s_spawn(argv);
    char line[512];
    s_read(d.out, line, sizeof line, coord_patience(), false);
    int port = 0, used = 0;
    char epoch[32] = "";
    if (sscanf(line, "listening tcp://127.0.0.1:%d epoch %16[0-9a-f]\n%n", &port, epoch, &used) !=
            2 ||
        port <= 0 || strlen(epoch) != 16 || (size_t)used != strlen(line))
        fail_msg("unexpected first output '%s'", line);

    char ep[64];
    snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", port);
    cpeer_t *p = cpeer_new(ep, 0);
    Sluice__V1__NodeStatus st = SLUICE__V1__NODE_STATUS__INIT;
    st.node_id = "n1";
    st.endpoint = "tcp://127.0.0.1:7450";
    Sluice__V1__Envelope env = SLUICE__V1__ENVELOPE__INIT;
    env.corr = 77;
    env.body_case = SLUICE__V1__ENVELOPE__BODY_NODE_STATUS;
    env.node_status = &st;
    SL_ASSERT_OK(cpeer_send(p, &env));
    Sluice__V1__Envelope *r = cpeer_recv(p, K_STATUS_REPLY, 77, coord_patience());
    assert_non_null(r);
    assert_int_equal(r->node_status_reply->interval_ms, 50);
    assert_true(r->node_status_reply->member_epoch > strtoull(epoch, NULL, 16));
    sl_wire_env_free(&r);
    r = coord_cluster(p);
    assert_string_equal(r->admin_reply->cluster->coordinator_id, "daemon-test");
    assert_int_equal(r->admin_reply->epoch, strtoull(epoch, NULL, 16));
    sl_wire_env_free(&r);
    cpeer_destroy(&p);

    assert_int_equal(kill(d.pid, SIGTERM), 0);
    assert_int_equal(s_wait_exit(d.pid, coord_patience()), 0);
    char rest[256];
    assert_int_equal(s_read(d.out, rest, sizeof rest, 1000, true), 0); /* nothing more */
    close(d.out);
}

static void test_coord_daemon__bad_option_exits_2(void **state)
{
    (void)state;
    char *argv[] = {"sluice-coordinator", "--heartbeat", "1ms", "--log-level", "error", NULL};
    s_daemon_t d = s_spawn(argv);
    assert_int_equal(s_wait_exit(d.pid, coord_patience()), 2);
    char out[256];
    assert_int_equal(s_read(d.out, out, sizeof out, 1000, true), 0);
    close(d.out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_coord_daemon__prints_line_serves_and_stops_on_sigterm),
        cmocka_unit_test(test_coord_daemon__bad_option_exits_2),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
