/* testclient.h -- helpers the client tests share (include after testlib.h,
 * which brings cmocka): start a real node or skip when none was built,
 * connect a client to it, and poll a queue's stats until a condition holds
 * or a deadline passes. */
#ifndef SLUICE_TESTCLIENT_H
#define SLUICE_TESTCLIENT_H

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/client.h"
#include "sluice/sched.h"
#include "testnode.h"

/* How long to wait for things that should happen "soon". */
static inline int64_t tc_patience_ms(void)
{
    return sl_test_sanitized() ? 60000 : 10000;
}

static inline const char *tc_node_bin(void)
{
#ifdef SLUICE_NODE_BIN
    return SLUICE_NODE_BIN;
#else
    return NULL;
#endif
}

/* Start a node (100 ms heartbeats unless extra says otherwise), or skip
 * the test when the build has no node. */
static inline void tc_node_start(sl_testnode_t *n, const char *const *extra)
{
    const char *bin = tc_node_bin();
    if (!bin) {
        print_message("no sluice-node in this build: skipped\n");
        skip();
    }
    const char *args[SL_TESTNODE_ARGS_MAX + 1];
    int k = 0;
    args[k++] = "--heartbeat";
    args[k++] = "100ms";
    for (int i = 0; extra && extra[i] && k < SL_TESTNODE_ARGS_MAX; i++)
        args[k++] = extra[i];
    args[k] = NULL;
    if (sl_testnode_start(n, bin, 0, args) != 0)
        fail_msg("cannot start %s", bin);
}

/* A client for endpoint that has heard from the node. */
static inline sl_client_t *tc_client(const char *endpoint)
{
    sl_client_opts_t o = {.endpoint = endpoint, .heartbeat_ms = 100};
    int err = 0;
    sl_client_t *c = sl_client_new(&o, &err);
    if (!c)
        fail_msg("sl_client_new: %s", sl_err_name(err));
    SL_ASSERT_OK(sl_client_wait_connected(c, sl_deadline_ms(tc_patience_ms())));
    return c;
}

/* Stats of one queue; fails the test if the node does not answer. */
static inline sl_queue_stats_t tc_stats(sl_client_t *c, const char *queue)
{
    sl_queue_stats_t *qs = NULL, out;
    size_t n = 0;
    SL_ASSERT_OK(sl_client_stats(c, queue, &qs, &n, sl_deadline_ms(tc_patience_ms())));
    assert_int_equal(n, 1);
    out = qs[0];
    free(qs);
    return out;
}

/* Poll the stats of queue until `cond` (an expression over `st`) holds;
 * fails the test after the patience runs out. Evaluates to the stats. */
#define TC_WAIT_STATS(c, queue, cond)                                                    \
    ({                                                                                   \
        int64_t end__ = sl_deadline_ms(tc_patience_ms());                                \
        sl_queue_stats_t st;                                                             \
        for (;;) {                                                                       \
            st = tc_stats((c), (queue));                                                 \
            if (cond)                                                                    \
                break;                                                                   \
            if (sl_now() > end__)                                                        \
                fail_msg("%s: not true in time (depth %llu in-flight %llu acked %llu "   \
                         "dead %llu delayed %llu)",                                      \
                         #cond, (unsigned long long)st.depth,                            \
                         (unsigned long long)st.in_flight, (unsigned long long)st.acked, \
                         (unsigned long long)st.dead, (unsigned long long)st.delayed);   \
            sl_sleep_ms(10);                                                             \
        }                                                                                \
        st;                                                                              \
    })

/* Poll an int expression until it holds, or fail. */
#define TC_WAIT_TRUE(cond)                                                               \
    do {                                                                                 \
        int64_t end__ = sl_deadline_ms(tc_patience_ms());                                \
        while (!(cond)) {                                                                \
            if (sl_now() > end__)                                                        \
                fail_msg("%s: not true in time", #cond);                                 \
            sl_sleep_ms(5);                                                              \
        }                                                                                \
    } while (0)

/* Publish one text job to queue and return its confirm status. */
static inline sl_confirm_status_t tc_publish(sl_client_t *c, const char *queue, const char *text)
{
    sl_job_t j = {.queue = queue, .payload = text, .payload_len = strlen(text)};
    sl_confirm_t cf;
    SL_ASSERT_OK(sl_client_publish(c, &j, 1, &cf, sl_deadline_ms(tc_patience_ms())));
    return cf.status;
}

#endif
