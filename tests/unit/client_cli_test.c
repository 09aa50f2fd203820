/* client_cli_test.c -- the sluice command against a real sluice-node:
 * publish from arguments and stdin (a stream published as it arrives), the
 * stats table, consume --exec with its environment and exit-code contract,
 * pause/resume/drain (a rejection naming its code), policy (shown, set,
 * refused), and the exit codes for bad usage and an unreachable node
 * (which must not hang). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testlib.h"
#include "testclient.h"

#ifndef SLUICE_CLI_BIN
#define SLUICE_CLI_BIN "sluice"
#endif

/* Run sluice with the endpoint first; returns the exit code, *out the
 * output (caller frees). */
static int s_run(const char *endpoint, const char *input, char **out, ...)
{
    char *argv[32];
    int k = 0;
    argv[k++] = SLUICE_CLI_BIN;
    if (endpoint) {
        argv[k++] = "--endpoint";
        argv[k++] = (char *)endpoint;
    }
    va_list ap;
    va_start(ap, out);
    char *a;
    while ((a = va_arg(ap, char *)) && k < 31)
        argv[k++] = a;
    va_end(ap);
    argv[k] = NULL;
    return sl_testproc_run(argv, NULL, input, (int)tc_patience_ms() * 2, out);
}

static int s_count_lines_with(const char *text, const char *needle)
{
    int n = 0;
    for (const char *p = text; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

/* The cell of the stats table (`sluice stats` output) in queue's row and
 * the column headed head, into cell (size bytes); fails the test if there
 * is none. Cells of that table hold no blanks. */
static void s_stats_cell(const char *out, const char *queue, const char *head, char *cell,
                         size_t size)
{
    int col = -1, k = 0;
    const char *p = out;
    char word[256];
    int used;
    while (sscanf(p, "%255s%n", word, &used) == 1 && *p != '\n') { /* the header line */
        if (strcmp(word, head) == 0)
            col = k;
        k++;
        p += used;
        while (*p == ' ')
            p++;
    }
    if (col < 0)
        fail_msg("no column %s in:\n%s", head, out);
    char start[160];
    snprintf(start, sizeof start, "\n%s ", queue);
    const char *row = strstr(out, start);
    if (!row)
        fail_msg("no row for %s in:\n%s", queue, out);
    row++;
    for (int i = 0; i <= col; i++) {
        if (sscanf(row, "%255s%n", word, &used) != 1)
            fail_msg("row of %s too short in:\n%s", queue, out);
        row += used;
    }
    size_t len = strlen(word) < size ? strlen(word) : size - 1;
    memcpy(cell, word, len);
    cell[len] = '\0';
}

static void test_client_cli__publish_args_and_stdin_then_stats(void **state)
{
    (void)state;
    sl_testnode_t n;
    tc_node_start(&n, NULL);
    char *out;
    assert_int_equal(s_run(n.endpoint, NULL, &out, "publish", "mail", "a", "b", "c", NULL), 0);
    assert_int_equal(s_count_lines_with(out, " accepted\n"), 3);
    free(out);
    assert_int_equal(s_run(n.endpoint, "x\n\ny\nz", &out, "publish", "mail", "--priority", "3",
                           "--max-attempts", "2", NULL),
                     0);
    assert_int_equal(s_count_lines_with(out, " accepted\n"), 3); /* blank line skipped */
    free(out);
    assert_int_equal(s_run(n.endpoint, NULL, &out, "publish", "mail", "--key", "k1", "once",
                           NULL),
                     0);
    free(out);
    assert_int_equal(s_run(n.endpoint, NULL, &out, "publish", "mail", "--key", "k1", "twice",
                           NULL),
                     0);
    assert_non_null(strstr(out, " duplicate\n"));
    free(out);

    assert_int_equal(s_run(n.endpoint, NULL, &out, "stats", NULL), 0);
    assert_non_null(strstr(out, "QUEUE"));
    assert_non_null(strstr(out, "IN-FLIGHT"));
    assert_non_null(strstr(out, "PAUSED"));
    char *row = strstr(out, "\nmail ");
    assert_non_null(row);
    unsigned long depth, delayed, inflight, dead, published;
    assert_int_equal(sscanf(row, "\nmail %lu %lu %lu %lu %lu", &depth, &delayed, &inflight, &dead,
                            &published),
                     5);
    assert_int_equal(depth, 7);
    assert_int_equal(published, 7);
    free(out);

    assert_int_equal(s_run(n.endpoint, NULL, &out, "stats", "nosuch", NULL), 1);
    assert_non_null(strstr(out, "no such queue"));
    free(out);
    sl_testnode_release(&n);
}

static void test_client_cli__publish_many_lines_from_a_pipe(void **state)
{
    (void)state;
    /* More lines than a batch and than the batches in flight: all go. */
    enum { N = 3000 };
    sl_testnode_t n;
    tc_node_start(&n, NULL);
    size_t cap = N * 16, len = 0;
    char *input = malloc(cap);
    assert_non_null(input);
    for (int i = 0; i < N; i++)
        len += (size_t)snprintf(input + len, cap - len, "job-%d\n", i);
    const char *lingers[] = {"5", "0"};
    for (int k = 0; k < 2; k++) {
        char *out;
        assert_int_equal(s_run(n.endpoint, input, &out, "publish", "bulk", "--linger", lingers[k],
                               NULL),
                         0);
        assert_int_equal(s_count_lines_with(out, " accepted\n"), N);
        free(out);
    }
    free(input);
    sl_client_t *c = tc_client(n.endpoint);
    sl_queue_stats_t st = tc_stats(c, "bulk");
    assert_int_equal(st.published, 2 * N);
    assert_int_equal(st.depth, 2 * N);
    sl_client_destroy(&c);
    sl_testnode_release(&n);
}

/* The CLI with stdin and stdout on two FIFOs, so the test writes its input
 * a little at a time and reads what it prints meanwhile. sl_testproc_run
 * runs it (on a thread: it returns at exit) for the environment, the
 * deadline and the exit status. */
typedef struct {
    char *argv[16];
    const char *env[3];
    int rc;
    char *captured;
} fifo_run_t;

static void *s_fifo_runner(void *arg)
{
    fifo_run_t *r = arg;
    r->rc = sl_testproc_run(r->argv, r->env, NULL, (int)tc_patience_ms() * 2, &r->captured);
    return NULL;
}

/* Read from fd into *buf (size *len, NUL terminated) until it holds want
 * lines with needle, end of file, or the patience runs out. */
static int s_read_until(int fd, char **buf, size_t *len, const char *needle, int want)
{
    int64_t end = sl_deadline_ms(tc_patience_ms());
    while (s_count_lines_with(*buf, needle) < want) {
        int left = (int)((end - sl_now()) / 1000000);
        if (left <= 0)
            break;
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        if (poll(&pf, 1, left) <= 0)
            continue;
        char chunk[4096];
        ssize_t r = read(fd, chunk, sizeof chunk);
        if (r == 0)
            break;
        if (r < 0) {
            assert_true(errno == EINTR || errno == EAGAIN);
            continue;
        }
        *buf = realloc(*buf, *len + (size_t)r + 1);
        memcpy(*buf + *len, chunk, (size_t)r);
        *len += (size_t)r;
        (*buf)[*len] = '\0';
    }
    return s_count_lines_with(*buf, needle);
}

static void s_write_all(int fd, const char *text)
{
    size_t left = strlen(text);
    while (left > 0) {
        ssize_t w = write(fd, text, left);
        if (w < 0 && errno == EINTR)
            continue;
        assert_true(w > 0);
        text += w;
        left -= (size_t)w;
    }
}

static void test_client_cli__publish_streams_stdin_as_it_arrives(void **state)
{
    (void)state;
    sl_testnode_t n;
    tc_node_start(&n, NULL);
    char dir[] = "/tmp/sluice-cli-stream-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char in_path[64], out_path[64], in_env[80], out_env[80];
    snprintf(in_path, sizeof in_path, "%s/in", dir);
    snprintf(out_path, sizeof out_path, "%s/out", dir);
    assert_int_equal(mkfifo(in_path, 0600), 0);
    assert_int_equal(mkfifo(out_path, 0600), 0);
    snprintf(in_env, sizeof in_env, "SLT_IN=%s", in_path);
    snprintf(out_env, sizeof out_env, "SLT_OUT=%s", out_path);
    fifo_run_t r = {
        .argv = {"/bin/sh", "-c", "exec \"$0\" \"$@\" <\"$SLT_IN\" >\"$SLT_OUT\" 2>&1",
                 SLUICE_CLI_BIN, "--endpoint", n.endpoint, "publish", "stream", NULL},
        .env = {in_env, out_env, NULL},
        .rc = 99,
    };
    pthread_t t = sl_test_thread(s_fifo_runner, &r);

    /* The shell opens in, then out: open ours in the same order. */
    int in = -1;
    int64_t end = sl_deadline_ms(tc_patience_ms());
    while ((in = open(in_path, O_WRONLY | O_NONBLOCK | O_CLOEXEC)) < 0 && sl_now() < end) {
        assert_int_equal(errno, ENXIO); /* no reader yet */
        sl_sleep_ms(5);
    }
    assert_true(in >= 0);
    int out = open(out_path, O_RDONLY | O_CLOEXEC);
    assert_true(out >= 0);
    sl_client_t *c = tc_client(n.endpoint);
    char *text = calloc(1, 1);
    size_t len = 0;

    /* Three lines, stdin left open: published and confirmed now, not at
     * the end of input. */
    s_write_all(in, "one\ntwo\nthree\n");
    assert_int_equal(s_read_until(out, &text, &len, " accepted\n", 3), 3);
    sl_queue_stats_t st = tc_stats(c, "stream");
    assert_int_equal(st.published, 3);
    assert_int_equal(st.depth, 3);

    /* One more: its confirm is printed as it comes, not batches later. */
    s_write_all(in, "four\n");
    assert_int_equal(s_read_until(out, &text, &len, " accepted\n", 4), 4);
    assert_int_equal(tc_stats(c, "stream").published, 4);

    /* A partial line waits for its end: end of input completes it. */
    s_write_all(in, "fi");
    sl_sleep_ms(50);
    assert_int_equal(tc_stats(c, "stream").published, 4);
    s_write_all(in, "ve");
    close(in);
    assert_int_equal(s_read_until(out, &text, &len, " accepted\n", 6), 5); /* up to EOF */
    sl_test_join(t);
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.captured, ""); /* everything went to the FIFO */
    assert_int_equal(s_count_lines_with(text, "\n"), 5); /* and only confirms */
    assert_int_equal(tc_stats(c, "stream").published, 5);

    free(text);
    free(r.captured);
    close(out);
    unlink(in_path);
    unlink(out_path);
    rmdir(dir);
    sl_client_destroy(&c);
    sl_testnode_release(&n);
}

static void test_client_cli__consume_exec_env_and_exit_codes(void **state)
{
    (void)state;
    sl_testnode_t n;
    tc_node_start(&n, (const char *[]){"--backoff-base", "10ms", NULL});
    char dir[] = "/tmp/sluice-cli-test-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char file[128], cmd[512];
    snprintf(file, sizeof file, "%s/out", dir);
    char *out;
    assert_int_equal(s_run(n.endpoint, NULL, &out, "publish", "cmds", "one", "two", NULL), 0);
    free(out);
    snprintf(cmd, sizeof cmd,
             "printf '%%s %%s %%s %%s\\n' \"$SLUICE_QUEUE\" \"$SLUICE_ATTEMPT\" "
             "\"${#SLUICE_JOB_ID}\" \"$(cat)\" >> %s",
             file);
    assert_int_equal(s_run(n.endpoint, NULL, &out, "consume", "cmds", "--exec", cmd,
                           "--max-jobs", "2", NULL),
                     0);
    free(out);
    FILE *f = fopen(file, "r");
    assert_non_null(f);
    char got[256] = {0};
    size_t len = fread(got, 1, sizeof got - 1, f);
    fclose(f);
    got[len] = '\0';
    assert_string_equal(got, "cmds 1 32 one\ncmds 1 32 two\n");

    sl_client_t *c = tc_client(n.endpoint);
    sl_queue_stats_t st = TC_WAIT_STATS(c, "cmds", st.acked == 2);
    assert_int_equal(st.depth, 0);
    assert_int_equal(st.in_flight, 0);

    /* exit 100: dead at once. exit 75 on the first attempt: retried. */
    assert_int_equal(s_run(n.endpoint, NULL, &out, "publish", "perm", "p", NULL), 0);
    free(out);
    assert_int_equal(s_run(n.endpoint, NULL, &out, "consume", "perm", "--exec", "exit 100",
                           "--max-jobs", "1", NULL),
                     0);
    free(out);
    TC_WAIT_STATS(c, "perm", st.dead == 1);
    assert_int_equal(s_run(n.endpoint, NULL, &out, "publish", "temp", "t", NULL), 0);
    free(out);
    assert_int_equal(s_run(n.endpoint, NULL, &out, "-v", "consume", "temp", "--exec",
                           "[ \"$SLUICE_ATTEMPT\" = 1 ] && exit 75; exit 0", "--max-jobs", "2",
                           NULL),
                     0);
    assert_non_null(strstr(out, "exit status 75 (retry)"));
    free(out);
    st = TC_WAIT_STATS(c, "temp", st.acked == 1);
    assert_int_equal(st.retried, 1);
    assert_int_equal(st.dead, 0);
    sl_client_destroy(&c);
    unlink(file);
    rmdir(dir);
    sl_testnode_release(&n);
}

static void test_client_cli__pause_resume_drain(void **state)
{
    (void)state;
    sl_testnode_t n;
    tc_node_start(&n, NULL);
    char *out;
    assert_int_equal(s_run(n.endpoint, NULL, &out, "publish", "ops", "1", NULL), 0);
    free(out);
    assert_int_equal(s_run(n.endpoint, NULL, &out, "pause", "ops", NULL), 0);
    assert_non_null(strstr(out, "paused 'ops'"));
    free(out);
    char cell[64];
    assert_int_equal(s_run(n.endpoint, NULL, &out, "stats", "ops", NULL), 0);
    s_stats_cell(out, "ops", "PAUSED", cell, sizeof cell);
    assert_string_equal(cell, "yes");
    s_stats_cell(out, "ops", "DRAINING", cell, sizeof cell);
    assert_string_equal(cell, "no");
    free(out);
    assert_int_equal(s_run(n.endpoint, NULL, &out, "resume", "ops", NULL), 0);
    free(out);
    assert_int_equal(s_run(n.endpoint, NULL, &out, "drain", "ops", NULL), 0);
    free(out);
    assert_int_equal(s_run(n.endpoint, NULL, &out, "stats", "ops", NULL), 0);
    s_stats_cell(out, "ops", "PAUSED", cell, sizeof cell);
    assert_string_equal(cell, "no");
    s_stats_cell(out, "ops", "DRAINING", cell, sizeof cell);
    assert_string_equal(cell, "yes");
    free(out);
    assert_int_equal(s_run(n.endpoint, NULL, &out, "publish", "ops", "2", NULL), 1);
    assert_non_null(strstr(out, " rejected DRAINING: queue draining"));
    free(out);
    assert_int_equal(s_run(n.endpoint, NULL, &out, "pause", "nosuch", NULL), 1);
    assert_non_null(strstr(out, "no such queue"));
    free(out);
    sl_testnode_release(&n);
}

/* `sluice policy QUEUE` shows the policy in force; with a spec it sets
 * those keys (the others stay) and shows the result, which stats see
 * too; a bad spec is refused with the node's reason, exit 1, and changes
 * nothing. */
static void test_client_cli__policy_show_set_and_refuse(void **state)
{
    (void)state;
    sl_testnode_t n;
    tc_node_start(&n, NULL);
    char *out;
    assert_int_equal(s_run(n.endpoint, NULL, &out, "publish", "pol", "1", NULL), 0);
    free(out);
    assert_int_equal(s_run(n.endpoint, NULL, &out, "policy", "pol", NULL), 0);
    assert_non_null(strstr(out, "pol overflow=block,max-length=100000,max-attempts=5,"));
    free(out);

    assert_int_equal(s_run(n.endpoint, NULL, &out, "policy", "pol",
                           "max-attempts=8,overflow=drop-new", NULL),
                     0);
    assert_non_null(strstr(out, "pol overflow=drop-new,max-length=100000,max-attempts=8,"));
    free(out);
    sl_client_t *c = tc_client(n.endpoint);
    sl_queue_stats_t st = tc_stats(c, "pol");
    assert_string_equal(st.overflow, "drop-new");
    assert_non_null(strstr(st.policy, "max-attempts=8"));
    /* the libsluice call, which the command uses */
    sl_queue_stats_t after;
    SL_ASSERT_OK(sl_client_policy(c, "pol", "max-length=2", &after,
                                  sl_deadline_ms(tc_patience_ms())));
    assert_int_equal(after.capacity, 2);
    assert_non_null(strstr(after.policy, "max-length=2,max-attempts=8"));

    /* refused: a bound, an unknown key, no '=' */
    const char *bad[][2] = {{"max-length=0", "max-length"},
                            {"speed=11", "unknown policy key 'speed'"},
                            {"max-dead", "expected key=value"}};
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(s_run(n.endpoint, NULL, &out, "policy", "pol", bad[i][0], NULL), 1);
        assert_non_null(strstr(out, "invalid policy"));
        assert_non_null(strstr(out, bad[i][1]));
        free(out);
    }
    sl_admin_reply_t rep;
    SL_ASSERT_ERR(sl_client_admin_ex(c, SL_ADMIN_POLICY, "pol",
                                     &(sl_admin_params_t){.policy = "max-length=-1"}, &rep,
                                     sl_deadline_ms(tc_patience_ms())),
                  SL_EINVAL);
    assert_int_equal(rep.node_code, SL_CODE_BAD_MESSAGE);
    assert_non_null(strstr(rep.node_text, "max-length"));
    sl_admin_reply_release(&rep);
    SL_ASSERT_ERR(sl_client_admin_ex(c, SL_ADMIN_POLICY, "pol", NULL, &rep, sl_deadline_ms(100)),
                  SL_EINVAL);
    sl_admin_reply_release(&rep);
    st = tc_stats(c, "pol");
    assert_int_equal(st.capacity, 2); /* unchanged by the refusals */
    assert_string_equal(st.overflow, "drop-new");

    /* no such queue to show; usage */
    assert_int_equal(s_run(n.endpoint, NULL, &out, "policy", "nosuch", NULL), 1);
    assert_non_null(strstr(out, "no such queue"));
    free(out);
    assert_int_equal(s_run(n.endpoint, NULL, &out, "policy", NULL), 2);
    assert_non_null(strstr(out, "usage: sluice policy QUEUE"));
    free(out);
    assert_int_equal(s_run(n.endpoint, NULL, &out, "policy", "pol", "a=1", "b=2", NULL), 2);
    free(out);
    sl_client_destroy(&c);
    sl_testnode_release(&n);
}

/* A node that is there but holds the confirm back (a full `block` queue)
 * is not "unreachable": the message says what happened. */
static void test_client_cli__blocked_publish_times_out_with_reason(void **state)
{
    (void)state;
    sl_testnode_t n;
    tc_node_start(&n, (const char *[]){"--max-length", "1", NULL});
    char *out;
    assert_int_equal(s_run(n.endpoint, NULL, &out, "publish", "tight", "a", NULL), 0);
    free(out);
    int64_t t0 = sl_now();
    assert_int_equal(s_run(n.endpoint, NULL, &out, "--timeout-ms", "300", "publish", "tight", "b",
                           NULL),
                     3);
    assert_true(sl_test_ms_since(t0) < 5000);
    assert_non_null(strstr(out, "no confirm within 300 ms"));
    assert_null(strstr(out, "cannot reach"));
    free(out);
    sl_testnode_release(&n);
}

static void test_client_cli__usage_errors_exit_2(void **state)
{
    (void)state;
    char *out;
    assert_int_equal(s_run(NULL, NULL, &out, NULL), 2);
    assert_non_null(strstr(out, "usage"));
    free(out);
    assert_int_equal(s_run(NULL, NULL, &out, "frobnicate", NULL), 2);
    assert_non_null(strstr(out, "unknown command"));
    free(out);
    assert_int_equal(s_run(NULL, NULL, &out, "publish", NULL), 2);
    free(out);
    assert_int_equal(s_run(NULL, NULL, &out, "publish", "bad name!", "x", NULL), 2);
    assert_non_null(strstr(out, "invalid queue name"));
    free(out);
    assert_int_equal(s_run(NULL, NULL, &out, "publish", "q", "--priority", "12", "x", NULL), 2);
    assert_non_null(strstr(out, "--priority"));
    free(out);
    assert_int_equal(s_run(NULL, NULL, &out, "publish", "q", "--linger", "-1", "x", NULL), 2);
    assert_non_null(strstr(out, "--linger"));
    free(out);
    assert_int_equal(s_run(NULL, NULL, &out, "consume", "q", NULL), 2);
    assert_non_null(strstr(out, "--exec"));
    free(out);
    assert_int_equal(s_run("nonsense", NULL, &out, "stats", NULL), 2);
    assert_non_null(strstr(out, "invalid endpoint"));
    free(out);
    assert_int_equal(s_run(NULL, NULL, &out, "--help", NULL), 0);
    assert_non_null(strstr(out, "100: permanent failure"));
    assert_non_null(strstr(out, "  policy QUEUE [KEY=VALUE,...]"));
    assert_non_null(strstr(out, "  drain QUEUE "));
    free(out);
}

static void test_client_cli__unreachable_node_exits_3_in_time(void **state)
{
    (void)state;
    char ep[64];
    snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", sl_testnode_free_port());
    const char *cmds[][3] = {{"stats", NULL}, {"publish", "q", "x"}, {"pause", "q", NULL}};
    for (size_t i = 0; i < 3; i++) {
        char *out;
        int64_t t0 = sl_now();
        int rc = s_run(ep, NULL, &out, "--timeout-ms", "300", cmds[i][0], cmds[i][1], cmds[i][2],
                       NULL);
        assert_int_equal(rc, 3);
        assert_non_null(strstr(out, "cannot reach node"));
        assert_true(sl_test_ms_since(t0) < 5000);
        free(out);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_client_cli__publish_args_and_stdin_then_stats),
        cmocka_unit_test(test_client_cli__publish_many_lines_from_a_pipe),
        cmocka_unit_test(test_client_cli__publish_streams_stdin_as_it_arrives),
        cmocka_unit_test(test_client_cli__consume_exec_env_and_exit_codes),
        cmocka_unit_test(test_client_cli__pause_resume_drain),
        cmocka_unit_test(test_client_cli__policy_show_set_and_refuse),
        cmocka_unit_test(test_client_cli__blocked_publish_times_out_with_reason),
        cmocka_unit_test(test_client_cli__usage_errors_exit_2),
        cmocka_unit_test(test_client_cli__unreachable_node_exits_3_in_time),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
