/* client_dead_test.c -- a queue's dead jobs through libsluice and the
 * sluice command, against real nodes: jobs that fail for good (a
 * non-retryable fail, or max-attempts 1 set by POLICY) are listed oldest
 * first with why they died (whole, and a page at a time), shown one by
 * one with their payload and headers, requeued (delivered again with the
 * attempt count starting over) and purged, by id, all or age; unknown
 * ids, stale cursors and bad selections are told apart. In cluster mode
 * (the coordinator played by a test peer, two embedded nodes) every node
 * is asked: a list walks one node after the other, show and requeue find
 * the job where it is, purge adds up. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testlib.h"
#include "node_peer.h"
#include "sluice/wire.h"
#include "testclient.h"
#include "testpeer.h"

#ifndef SLUICE_CLI_BIN
#define SLUICE_CLI_BIN "sluice"
#endif

static int64_t s_dl(void)
{
    return sl_deadline_ms(tc_patience_ms());
}

/* Run the sluice command with args (NULL-terminated) and, when set,
 * --endpoint first; returns its exit status, *out what it printed
 * (caller frees). */
static int s_cli(const char *endpoint, char **out, const char *const *args)
{
    char *argv[32];
    int k = 0;
    argv[k++] = (char *)SLUICE_CLI_BIN;
    if (endpoint) {
        argv[k++] = "--endpoint";
        argv[k++] = (char *)endpoint;
    }
    for (int i = 0; args[i] && k < 31; i++)
        argv[k++] = (char *)args[i];
    argv[k] = NULL;
    return sl_testproc_run(argv, NULL, NULL, (int)tc_patience_ms() * 2, out);
}

/* How many times needle occurs in text. */
static int s_count(const char *text, const char *needle)
{
    int n = 0;
    for (const char *p = text; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

#define S_CLI(endpoint, out, ...) s_cli((endpoint), (out), (const char *const[]){__VA_ARGS__, NULL})

/* Publish payloads[0..n-1] to queue (with extras, the first with a
 * header, priority 3 and an idempotency key) and keep their ids. */
static void s_publish(sl_client_t *c, const char *queue, const char *const *payloads, size_t n,
                      bool extras, uint8_t (*ids)[SL_ID_LEN])
{
    static const sl_header_t hdr = {"origin", "test"};
    for (size_t i = 0; i < n; i++) {
        sl_job_t j = {.queue = queue, .payload = payloads[i], .payload_len = strlen(payloads[i])};
        if (i == 0 && extras) {
            j.headers = &hdr;
            j.n_headers = 1;
            j.priority = 3;
            j.idempotency_key = "once";
        }
        sl_confirm_t cf;
        SL_ASSERT_OK(sl_client_publish(c, &j, 1, &cf, s_dl()));
        assert_int_equal(cf.status, SL_CONFIRM_ACCEPTED);
        if (ids)
            memcpy(ids[i], cf.id, SL_ID_LEN);
    }
}

/* Take n deliveries of queue and fail each with "bad <payload>",
 * retryable or not; then stop consuming. */
static void s_fail_all(sl_client_t *c, const char *queue, size_t n, bool retryable)
{
    int err = 0;
    sl_chan_t *ch = sl_client_subscribe(c, queue, 8, &err);
    assert_non_null(ch);
    for (size_t i = 0; i < n; i++) {
        void *v;
        SL_ASSERT_OK(sl_take_until(ch, &v, s_dl()));
        sl_delivery_t *d = v;
        char why[64];
        snprintf(why, sizeof why, "bad %.*s", (int)d->payload_len, (const char *)d->payload);
        SL_ASSERT_OK(sl_client_fail(c, &d, retryable, why));
    }
    SL_ASSERT_OK(sl_client_unsubscribe(c, queue, s_dl()));
    sl_chan_destroy(&ch);
}

/* --- libsluice, one node -------------------------------------------------- */

static void test_client_dead__list_show_requeue_purge(void **state)
{
    (void)state;
    sl_testnode_t n;
    tc_node_start(&n, (const char *[]){"--node-id", "dn1", NULL});
    sl_client_t *c = tc_client(n.endpoint);
    /* Job 0 fails for good; jobs 1 and 2 fail retryably with no attempt
     * left (max-attempts 1). */
    SL_ASSERT_OK(sl_client_policy(c, "dq", "max-attempts=1", NULL, s_dl()));
    const char *payloads[] = {"zero", "one", "two"};
    uint8_t ids[3][SL_ID_LEN];
    s_publish(c, "dq", payloads, 1, true, ids);
    s_fail_all(c, "dq", 1, false);
    TC_WAIT_STATS(c, "dq", st.dead == 1);
    s_publish(c, "dq", payloads + 1, 2, false, ids + 1);
    s_fail_all(c, "dq", 2, true);
    TC_WAIT_STATS(c, "dq", st.dead == 3);

    /* All of them, oldest first, with why they died. */
    sl_dead_job_t *jobs = NULL;
    size_t nj = 0;
    SL_ASSERT_OK(sl_client_dead_list_all(c, "dq", &jobs, &nj, s_dl()));
    assert_int_equal(nj, 3);
    const char *reasons[] = {"failed: bad zero", "attempts exhausted: bad one",
                             "attempts exhausted: bad two"};
    for (size_t i = 0; i < 3; i++) {
        const sl_dead_job_t *j = &jobs[i];
        assert_memory_equal(j->id, ids[i], SL_ID_LEN);
        assert_string_equal(j->queue, "dq");
        assert_string_equal(j->node_id, "dn1");
        assert_int_equal(j->payload_len, strlen(payloads[i]));
        assert_string_equal(j->payload, payloads[i]); /* NUL after the payload */
        assert_string_equal(j->reason, reasons[i]);
        const char *cause = strchr(reasons[i], ':') + 2; /* the reason names the error */
        assert_string_equal(j->last_error, cause);
        assert_int_equal(j->attempt, 1);
        assert_int_equal(j->failures, 1);
        assert_int_equal(j->redeliveries, 0);
        assert_true(j->first_ms > 0 && j->last_ms >= j->first_ms);
    }
    assert_int_equal(jobs[0].priority, 3);
    assert_string_equal(jobs[0].idempotency_key, "once");
    assert_int_equal(jobs[0].n_headers, 1);
    assert_string_equal(jobs[0].headers[0].key, "origin");
    assert_string_equal(jobs[0].headers[0].value, "test");
    assert_int_equal(jobs[1].n_headers, 0);
    assert_string_equal(jobs[1].idempotency_key, "");
    sl_dead_jobs_destroy(&jobs, nj);
    assert_null(jobs);

    /* A page at a time: the same jobs, in the same order. */
    char after[SL_DEAD_CURSOR_MAX] = "";
    size_t seen = 0;
    for (int pages = 0; pages < 10; pages++) {
        sl_dead_page_t page;
        SL_ASSERT_OK(sl_client_dead_list(c, "dq", after, 1, &page, s_dl()));
        assert_true(page.n <= 1);
        for (size_t i = 0; i < page.n; i++, seen++)
            assert_memory_equal(page.jobs[i].id, ids[seen], SL_ID_LEN);
        snprintf(after, sizeof after, "%s", page.next);
        sl_dead_page_release(&page);
        if (!after[0])
            break;
    }
    assert_int_equal(seen, 3);

    /* One, by id; an id that is not dead there is not found. */
    sl_dead_job_t one;
    SL_ASSERT_OK(sl_client_dead_show(c, "dq", ids[2], &one, s_dl()));
    assert_memory_equal(one.id, ids[2], SL_ID_LEN);
    assert_string_equal(one.payload, "two");
    assert_string_equal(one.reason, "attempts exhausted: bad two");
    sl_dead_job_release(&one);
    assert_null(one.payload);
    uint8_t stranger[SL_ID_LEN];
    SL_ASSERT_OK(sl_id_new(stranger));
    SL_ASSERT_ERR(sl_client_dead_show(c, "dq", stranger, &one, s_dl()), SL_ENOTFOUND);
    sl_admin_reply_t rep;
    SL_ASSERT_ERR(sl_client_admin_ex(c, SL_ADMIN_DEAD_SHOW, "dq",
                                     &(sl_admin_params_t){.dead.id = stranger}, &rep, s_dl()),
                  SL_ENOTFOUND);
    assert_int_equal(rep.node_code, SL_CODE_BAD_ID);
    assert_non_null(strstr(rep.node_text, "no such dead job"));
    sl_admin_reply_release(&rep);
    SL_ASSERT_ERR(sl_client_admin_ex(c, SL_ADMIN_DEAD_SHOW, "nosuch",
                                     &(sl_admin_params_t){.dead.id = stranger}, &rep, s_dl()),
                  SL_ENOTFOUND);
    assert_int_equal(rep.node_code, SL_CODE_BAD_QUEUE);
    sl_admin_reply_release(&rep);

    /* Requeue job 1: delivered again, its attempt count starting over,
     * its last error kept. */
    uint64_t moved = 99;
    SL_ASSERT_OK(sl_client_dead_requeue(c, "dq", &(sl_dead_sel_t){.id = ids[1]}, &moved, s_dl()));
    assert_int_equal(moved, 1);
    SL_ASSERT_ERR(sl_client_dead_requeue(c, "dq", &(sl_dead_sel_t){.id = ids[1]}, &moved, s_dl()),
                  SL_ENOTFOUND);
    int err = 0;
    sl_chan_t *ch = sl_client_subscribe(c, "dq", 1, &err);
    assert_non_null(ch);
    void *v;
    SL_ASSERT_OK(sl_take_until(ch, &v, s_dl()));
    sl_delivery_t *d = v;
    assert_memory_equal(d->id, ids[1], SL_ID_LEN);
    assert_int_equal(d->attempt, 1);
    assert_string_equal(d->last_error, "bad one");
    SL_ASSERT_OK(sl_client_ack(c, &d));
    SL_ASSERT_OK(sl_client_unsubscribe(c, "dq", s_dl()));
    sl_chan_destroy(&ch);
    TC_WAIT_STATS(c, "dq", st.acked == 1 && st.dead == 2);

    /* A cursor whose job came back to life is stale. */
    char hex[SL_ID_HEX_LEN + 1];
    SL_ASSERT_ERR(sl_client_dead_list(c, "dq", sl_id_to_hex(ids[1], hex), 0,
                                      &(sl_dead_page_t){0}, s_dl()),
                  SL_ESTATE);
    sl_dead_page_t bad;
    SL_ASSERT_ERR(sl_client_dead_list(c, "dq", "not-a-cursor", 0, &bad, s_dl()), SL_EINVAL);

    /* Which jobs: exactly one of id, all, age. */
    SL_ASSERT_ERR(sl_client_dead_purge(c, "dq", &(sl_dead_sel_t){0}, &moved, s_dl()), SL_EINVAL);
    SL_ASSERT_ERR(sl_client_dead_purge(c, "dq", &(sl_dead_sel_t){.id = ids[0], .all = true},
                                       &moved, s_dl()),
                  SL_EINVAL);
    SL_ASSERT_ERR(sl_client_dead_purge(c, "dq", &(sl_dead_sel_t){.older_than_ms = -5}, &moved,
                                       s_dl()),
                  SL_EINVAL);
    SL_ASSERT_ERR(sl_client_dead_purge(c, "nosuch", &(sl_dead_sel_t){.all = true}, &moved,
                                       s_dl()),
                  SL_ENOTFOUND);
    /* Nothing died an hour ago; then everything goes. */
    SL_ASSERT_OK(sl_client_dead_purge(c, "dq", &(sl_dead_sel_t){.older_than_ms = 3600000},
                                      &moved, s_dl()));
    assert_int_equal(moved, 0);
    SL_ASSERT_OK(sl_client_dead_purge(c, "dq", &(sl_dead_sel_t){.all = true}, &moved, s_dl()));
    assert_int_equal(moved, 2);
    assert_int_equal(tc_stats(c, "dq").dead, 0);
    SL_ASSERT_OK(sl_client_dead_list_all(c, "dq", &jobs, &nj, s_dl()));
    assert_int_equal(nj, 0);
    assert_null(jobs);
    sl_client_destroy(&c);
    sl_testnode_release(&n);
}

/* More dead jobs than one frame holds: the node pages them, and the list
 * follows every page. */
static void test_client_dead__list_all_follows_pages(void **state)
{
    (void)state;
    sl_testnode_t n;
    tc_node_start(&n, (const char *const[]){"--max-frame", "8k", "--max-job", "2k", NULL});
    sl_client_opts_t o = {.endpoint = n.endpoint, .heartbeat_ms = 100, .max_frame = 8192};
    int err = SL_OK;
    sl_client_t *c = sl_client_new(&o, &err);
    assert_non_null(c);
    enum { JOBS = 40 };
    char big[1001];
    memset(big, 'p', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    const char *payloads[JOBS];
    for (int i = 0; i < JOBS; i++)
        payloads[i] = big;
    s_publish(c, "many", payloads, JOBS, false, NULL);
    s_fail_all(c, "many", JOBS, false);
    TC_WAIT_STATS(c, "many", st.dead == JOBS);
    sl_dead_page_t page;
    SL_ASSERT_OK(sl_client_dead_list(c, "many", NULL, 0, &page, s_dl()));
    assert_true(page.n > 0 && page.n < JOBS); /* one frame does not hold them */
    assert_true(page.next[0] != '\0');
    sl_dead_page_release(&page);
    sl_dead_job_t *jobs = NULL;
    size_t nj = 0;
    SL_ASSERT_OK(sl_client_dead_list_all(c, "many", &jobs, &nj, s_dl()));
    assert_int_equal(nj, JOBS);
    for (size_t i = 1; i < nj; i++)
        assert_true(jobs[i].last_ms >= jobs[i - 1].last_ms);
    assert_int_equal(jobs[JOBS - 1].payload_len, sizeof big - 1);
    sl_dead_jobs_destroy(&jobs, nj);
    sl_client_destroy(&c);
    sl_testnode_release(&n);
}

/* --- the sluice command ---------------------------------------------------- */

/* The first word of the line of out that starts with prefix... : the id
 * column of `dead list`. Fails the test if there is none. */
static void s_row_with(const char *out, const char *needle, char hex[SL_ID_HEX_LEN + 1])
{
    const char *at = strstr(out, needle);
    if (!at)
        fail_msg("no '%s' in:\n%s", needle, out);
    while (at > out && at[-1] != '\n')
        at--;
    memcpy(hex, at, SL_ID_HEX_LEN);
    hex[SL_ID_HEX_LEN] = '\0';
    uint8_t id[SL_ID_LEN];
    SL_ASSERT_OK(sl_id_from_hex(hex, id));
}

/* The line of out holding `key` also holds `want`; fails the test if not. */
static void s_line_has(const char *out, const char *key, const char *want)
{
    const char *at = strstr(out, key);
    if (!at)
        fail_msg("no '%s' in:\n%s", key, out);
    const char *start = at, *end = strchr(at, '\n');
    while (start > out && start[-1] != '\n')
        start--;
    const char *w = strstr(start, want);
    if (!w || w > end)
        fail_msg("no '%s' on the line of '%s' in:\n%s", want, key, out);
}

static void test_client_dead__cli_list_show_requeue_purge(void **state)
{
    (void)state;
    sl_testnode_t n;
    tc_node_start(&n, NULL);
    const char *ep = n.endpoint;
    char *out;
    assert_int_equal(S_CLI(ep, &out, "policy", "cq", "max-attempts=1"), 0);
    free(out);
    assert_int_equal(S_CLI(ep, &out, "publish", "cq", "alpha", "beta", "gamma"), 0);
    free(out);
    /* alpha fails for good (exit 100); the others ask for a retry they
     * have no attempt left for. */
    assert_int_equal(S_CLI(ep, &out, "consume", "cq", "--exec",
                           "[ \"$(cat)\" = alpha ] && exit 100; exit 75", "--max-jobs", "3"),
                     0);
    free(out);
    sl_client_t *c = tc_client(ep);
    TC_WAIT_STATS(c, "cq", st.dead == 3);

    assert_int_equal(S_CLI(ep, &out, "dead", "list", "cq"), 0);
    const char *heads[] = {"ID", "ATTEMPT", "FAILURES", "DIED", "REASON", "PAYLOAD"};
    for (size_t i = 0; i < 6; i++)
        assert_non_null(strstr(out, heads[i]));
    assert_int_equal(s_count(out, "\n"), 4); /* the header and 3 rows */
    s_line_has(out, "  alpha\n", "  failed: exit status 100 ");
    s_line_has(out, "  beta\n", "  attempts exhausted: exit status 75 ");
    s_line_has(out, "  gamma\n", "  attempts exhausted: exit status 75 ");
    assert_true(strstr(out, "alpha") < strstr(out, "beta")); /* oldest first */
    char alpha[SL_ID_HEX_LEN + 1], beta[SL_ID_HEX_LEN + 1];
    s_row_with(out, "alpha\n", alpha);
    s_row_with(out, "beta\n", beta);
    free(out);

    /* --limit: the first ones, and where to go on. */
    assert_int_equal(S_CLI(ep, &out, "dead", "list", "cq", "--limit", "1"), 0);
    assert_non_null(strstr(out, "alpha"));
    assert_null(strstr(out, "beta"));
    char want[128];
    snprintf(want, sizeof want, "--after %s", alpha);
    assert_non_null(strstr(out, want));
    free(out);
    assert_int_equal(S_CLI(ep, &out, "dead", "list", "cq", "--after", alpha), 0);
    assert_null(strstr(out, "alpha"));
    assert_non_null(strstr(out, "beta"));
    assert_non_null(strstr(out, "gamma"));
    free(out);

    /* show: every field, the payload in full. */
    assert_int_equal(S_CLI(ep, &out, "dead", "show", "cq", beta), 0);
    const char *fields[] = {"id               ",
                            "reason           attempts exhausted: exit status 75",
                            "last-error       exit status 75", "attempt          1",
                            "failures         1", "created", "died", "node", "queue            cq",
                            "payload          4 bytes", "\nbeta\n"};
    for (size_t i = 0; i < sizeof fields / sizeof *fields; i++)
        if (!strstr(out, fields[i]))
            fail_msg("'%s' not in:\n%s", fields[i], out);
    assert_non_null(strstr(out, beta));
    free(out);

    /* requeue by id: deliverable again, attempt 1 once more. */
    assert_int_equal(S_CLI(ep, &out, "dead", "requeue", "cq", "--id", beta), 0);
    assert_non_null(strstr(out, "requeued 1 dead job of 'cq'"));
    free(out);
    assert_int_equal(S_CLI(ep, &out, "consume", "cq", "--exec",
                           "printf '%s %s' \"$SLUICE_ATTEMPT\" \"$(cat)\"", "--max-jobs", "1"),
                     0);
    assert_non_null(strstr(out, "1 beta"));
    free(out);
    TC_WAIT_STATS(c, "cq", st.acked == 1 && st.dead == 2);

    /* unknown id: refused, exit 1; purge --older-than: none that old;
     * purge --all: every one, and stats say so. */
    assert_int_equal(S_CLI(ep, &out, "dead", "show", "cq", beta), 1);
    snprintf(want, sizeof want, "no dead job %s in 'cq'", beta);
    assert_non_null(strstr(out, want));
    free(out);
    assert_int_equal(S_CLI(ep, &out, "dead", "requeue", "cq", "--id", beta), 1);
    assert_non_null(strstr(out, want));
    free(out);
    assert_int_equal(S_CLI(ep, &out, "dead", "purge", "cq", "--older-than", "1h"), 0);
    assert_non_null(strstr(out, "purged 0 dead jobs of 'cq'"));
    free(out);
    assert_int_equal(S_CLI(ep, &out, "dead", "purge", "cq", "--all"), 0);
    assert_non_null(strstr(out, "purged 2 dead jobs of 'cq'"));
    free(out);
    assert_int_equal(tc_stats(c, "cq").dead, 0);
    assert_int_equal(S_CLI(ep, &out, "dead", "list", "cq"), 0);
    assert_int_equal(s_count(out, "\n"), 1); /* the header alone */
    free(out);
    assert_int_equal(S_CLI(ep, &out, "dead", "list", "nosuch"), 1);
    assert_non_null(strstr(out, "no such queue 'nosuch'"));
    free(out);
    /* a cursor whose job is dead no more */
    assert_int_equal(S_CLI(ep, &out, "dead", "list", "cq", "--after", alpha), 1);
    assert_non_null(strstr(out, "list again from the start"));
    free(out);
    sl_client_destroy(&c);
    sl_testnode_release(&n);
}

static void test_client_dead__cli_usage_errors_exit_2(void **state)
{
    (void)state;
    static const char *const bad[][8] = {
        {"dead", NULL},
        {"dead", "bury", "q", NULL},
        {"dead", "list", NULL},
        {"dead", "list", "bad name!", NULL},
        {"dead", "list", "q", "--limit", "0", NULL},
        {"dead", "list", "q", "--all", NULL},
        {"dead", "show", "q", NULL},
        {"dead", "show", "q", "xyz", NULL},
        {"dead", "requeue", "q", NULL},
        {"dead", "requeue", "q", "--all", "--older-than", "1h", NULL},
        {"dead", "purge", "q", "--older-than", "soon", NULL},
        {"dead", "purge", "q", "--id", "0123", NULL},
    };
    static const char *const says[] = {
        "a subcommand is required", "unknown subcommand 'bury'", "a queue is required",
        "invalid queue name", "--limit", "--all is not an option", "a job id is required",
        "invalid job id 'xyz'", "one of --id, --all, --older-than",
        "one of --id, --all, --older-than", "--older-than", "invalid job id '0123'",
    };
    /* Nothing listens there: usage is refused before anything is sent. */
    char ep[64];
    snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", sl_testnode_free_port());
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char *out;
        int rc = s_cli(ep, &out, bad[i]);
        if (rc != 2 || !strstr(out, says[i]))
            fail_msg("case %zu: exit %d, wanted 2 and '%s':\n%s", i, rc, says[i], out);
        free(out);
    }
    char *out;
    assert_int_equal(S_CLI(NULL, &out, "--help"), 0);
    assert_non_null(strstr(out, "  dead list QUEUE [--limit N]"));
    assert_non_null(strstr(out, "  dead purge QUEUE (--id ID | --all | --older-than DURATION)"));
    free(out);
    assert_int_equal(S_CLI(NULL, &out, "dead", "--help"), 0);
    assert_non_null(strstr(out, "dead requeue QUEUE"));
    free(out);
    /* and a node that is not there: exit 3 */
    assert_int_equal(S_CLI(ep, &out, "--timeout-ms", "300", "dead", "list", "q"), 3);
    assert_non_null(strstr(out, "cannot reach node"));
    free(out);
}

/* Every JobRecord field reaches sl_dead_job_t (due_ms is a retry's, not
 * a dead job's); a new one must be mapped, or listed here as left out. */
static void test_client_dead__every_record_field_is_mapped(void **state)
{
    (void)state;
    static const char *const mapped[] = {"id",          "job",     "attempt", "failures",
                                         "redeliveries", "last_error", "reason", "node_id",
                                         "first_ms",    "last_ms", "due_ms"};
    const ProtobufCMessageDescriptor *d = &sluice__v1__job_record__descriptor;
    assert_int_equal(d->n_fields, sizeof mapped / sizeof *mapped);
    for (unsigned i = 0; i < d->n_fields; i++) {
        bool known = false;
        for (size_t k = 0; k < sizeof mapped / sizeof *mapped; k++)
            known |= strcmp(d->fields[i].name, mapped[k]) == 0;
        if (!known)
            fail_msg("JobRecord.%s is not in sl_dead_job_t", d->fields[i].name);
    }
}

/* --- cluster mode ----------------------------------------------------------- */

static sl_node_t *s_nodes[2];
static sl_client_t *s_direct[2];
static tpeer_t *s_coord;
static sl_client_t *s_client;
static Sluice__V1__NodeStatus s_ns[2];
static Sluice__V1__ClusterNode s_cn[2], *s_cnp[2];
static Sluice__V1__ClusterView s_view;

static int s_cluster_teardown(void **state)
{
    (void)state;
    sl_client_destroy(&s_client);
    tpeer_destroy(&s_coord); /* first: its view names the nodes' endpoints */
    for (int i = 0; i < 2; i++) {
        sl_client_destroy(&s_direct[i]);
        sl_node_destroy(&s_nodes[i]);
    }
    return 0;
}

/* Two nodes, n1 and n2, a coordinator whose view lists both, and a
 * cluster client. */
static void s_cluster_start(void)
{
    static const char *const names[2] = {"n1", "n2"};
    for (int i = 0; i < 2; i++) {
        sl_node_opts_t o;
        node_test_opts(&o);
        o.node_id = names[i];
        s_nodes[i] = node_test_start(&o);
        s_direct[i] = tc_client(sl_node_endpoint(s_nodes[i]));
        sluice__v1__node_status__init(&s_ns[i]);
        s_ns[i].node_id = (char *)names[i];
        s_ns[i].endpoint = (char *)sl_node_endpoint(s_nodes[i]);
        sluice__v1__cluster_node__init(&s_cn[i]);
        s_cn[i].status = &s_ns[i];
        s_cn[i].alive = true;
        s_cnp[i] = &s_cn[i];
    }
    sluice__v1__cluster_view__init(&s_view);
    s_view.coordinator_id = "coord-1";
    /* n2 first: the client walks the nodes in id order all the same */
    s_cnp[0] = &s_cn[1];
    s_cnp[1] = &s_cn[0];
    s_view.nodes = s_cnp;
    s_view.n_nodes = 2;
    s_coord = tpeer_new(true);
    pthread_mutex_lock(&s_coord->mu);
    s_coord->view = &s_view;
    pthread_mutex_unlock(&s_coord->mu);
    sl_client_opts_t o = {.coordinator = s_coord->endpoint, .heartbeat_ms = 100};
    int err = SL_OK;
    s_client = sl_client_new(&o, &err);
    assert_non_null(s_client);
    SL_ASSERT_OK(sl_client_wait_connected(s_client, s_dl()));
}

static void test_client_dead__cluster_asks_every_node(void **state)
{
    (void)state;
    s_cluster_start();
    /* 2 dead on n1, 3 on n2 */
    const char *p1[] = {"a1", "a2"}, *p2[] = {"b1", "b2", "b3"};
    uint8_t ids1[2][SL_ID_LEN], ids2[3][SL_ID_LEN];
    s_publish(s_direct[0], "cdq", p1, 2, false, ids1);
    s_publish(s_direct[1], "cdq", p2, 3, false, ids2);
    s_fail_all(s_direct[0], "cdq", 2, false);
    s_fail_all(s_direct[1], "cdq", 3, false);
    TC_WAIT_STATS(s_direct[0], "cdq", st.dead == 2);
    TC_WAIT_STATS(s_direct[1], "cdq", st.dead == 3);

    /* All of them: n1's, then n2's, each naming its node. */
    sl_dead_job_t *jobs = NULL;
    size_t nj = 0;
    SL_ASSERT_OK(sl_client_dead_list_all(s_client, "cdq", &jobs, &nj, s_dl()));
    assert_int_equal(nj, 5);
    for (size_t i = 0; i < 5; i++) {
        assert_string_equal(jobs[i].node_id, i < 2 ? "n1" : "n2");
        assert_memory_equal(jobs[i].id, i < 2 ? ids1[i] : ids2[i - 2], SL_ID_LEN);
    }
    sl_dead_jobs_destroy(&jobs, nj);

    /* A page at a time: the cursor carries on from one node to the next. */
    char after[SL_DEAD_CURSOR_MAX] = "";
    size_t seen = 0;
    for (int pages = 0; pages < 12; pages++) {
        sl_dead_page_t page;
        SL_ASSERT_OK(sl_client_dead_list(s_client, "cdq", after, 2, &page, s_dl()));
        assert_true(page.n <= 2);
        for (size_t i = 0; i < page.n; i++, seen++)
            assert_memory_equal(page.jobs[i].id, seen < 2 ? ids1[seen] : ids2[seen - 2],
                                SL_ID_LEN);
        snprintf(after, sizeof after, "%s", page.next);
        sl_dead_page_release(&page);
        if (!after[0])
            break;
    }
    assert_int_equal(seen, 5);
    sl_dead_page_t page;
    SL_ASSERT_ERR(sl_client_dead_list(s_client, "cdq", "0123@n1", 0, &page, s_dl()), SL_EINVAL);

    /* show and requeue find the job on n2; an unknown one is on no node */
    sl_dead_job_t one;
    SL_ASSERT_OK(sl_client_dead_show(s_client, "cdq", ids2[1], &one, s_dl()));
    assert_string_equal(one.node_id, "n2");
    assert_string_equal(one.payload, "b2");
    assert_string_equal(one.reason, "failed: bad b2");
    sl_dead_job_release(&one);
    uint8_t stranger[SL_ID_LEN];
    SL_ASSERT_OK(sl_id_new(stranger));
    SL_ASSERT_ERR(sl_client_dead_show(s_client, "cdq", stranger, &one, s_dl()), SL_ENOTFOUND);
    uint64_t moved = 0;
    SL_ASSERT_OK(sl_client_dead_requeue(s_client, "cdq", &(sl_dead_sel_t){.id = ids2[1]}, &moved,
                                        s_dl()));
    assert_int_equal(moved, 1);
    TC_WAIT_STATS(s_direct[1], "cdq", st.dead == 2 && st.depth == 1);
    assert_int_equal(tc_stats(s_direct[0], "cdq").dead, 2);
    SL_ASSERT_ERR(sl_client_dead_requeue(s_client, "cdq", &(sl_dead_sel_t){.id = stranger},
                                         &moved, s_dl()),
                  SL_ENOTFOUND);

    /* The command: a NODE column, and a purge that adds up. */
    char *out;
    const char *const list[] = {"--coordinator", s_coord->endpoint, "dead", "list", "cdq", NULL};
    assert_int_equal(s_cli(NULL, &out, list), 0);
    assert_non_null(strstr(out, "NODE"));
    assert_int_equal(s_count(out, "  n1  "), 2);
    assert_int_equal(s_count(out, "  n2  "), 2);
    free(out);
    const char *const purge[] = {"--coordinator", s_coord->endpoint, "dead", "purge", "cdq",
                                 "--all", NULL};
    assert_int_equal(s_cli(NULL, &out, purge), 0);
    assert_non_null(strstr(out, "purged 4 dead jobs of 'cdq'"));
    free(out);
    for (int i = 0; i < 2; i++)
        assert_int_equal(tc_stats(s_direct[i], "cdq").dead, 0);
    SL_ASSERT_ERR(sl_client_dead_purge(s_client, "nosuch", &(sl_dead_sel_t){.all = true}, &moved,
                                       s_dl()),
                  SL_ENOTFOUND);
    SL_ASSERT_ERR(sl_client_dead_list_all(s_client, "nosuch", &jobs, &nj, s_dl()), SL_ENOTFOUND);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_client_dead__list_show_requeue_purge),
        cmocka_unit_test(test_client_dead__list_all_follows_pages),
        cmocka_unit_test(test_client_dead__cli_list_show_requeue_purge),
        cmocka_unit_test(test_client_dead__cli_usage_errors_exit_2),
        cmocka_unit_test(test_client_dead__every_record_field_is_mapped),
        cmocka_unit_test_teardown(test_client_dead__cluster_asks_every_node, s_cluster_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
