/* node_test.c -- the embedding API of the node (node.h) with real peers:
 * options and start errors, heartbeats carrying the epoch, in-process
 * handlers (sl_node_handle) fed by socket publishes with bounded
 * concurrency and retries, and sl_node_stop waiting for in-flight jobs or
 * giving up after its timeout. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "node_peer.h"
#include "sluice/wire.h"
#include "testlib.h"

#define REJ SLUICE__V1__JOB_CONFIRM__STATUS__REJECTED
#define MAXJ 64

static sl_node_t *s_start(int64_t lease_ms)
{
    sl_node_opts_t o;
    node_test_opts(&o);
    if (lease_ms)
        o.lease_ms = lease_ms;
    return node_fx_start(&o);
}

/* --- lifecycle ------------------------------------------------------------ */

static void test_node__new_and_start_errors(void **state)
{
    sl_node_opts_t o;
    node_test_opts(&o);
    o.max_job = o.max_frame + 1;
    int err = SL_OK;
    assert_null(sl_node_new(&o, &err));
    assert_int_equal(err, SL_EINVAL);
    node_test_opts(&o);
    o.heartbeat_ms = 0;
    err = SL_OK;
    assert_null(sl_node_new(&o, &err));
    assert_int_equal(err, SL_EINVAL);

    node_test_opts(&o);
    sl_node_t *a = s_start(0);
    SL_ASSERT_ERR(sl_node_start(a), SL_ESTATE);
    o.endpoint = sl_node_endpoint(a); /* taken */
    sl_node_t *b = sl_node_new(&o, &err);
    assert_non_null(b);
    SL_ASSERT_ERR(sl_node_start(b), SL_ESYS);
    assert_int_not_equal(sl_node_epoch(a), sl_node_epoch(b));
    sl_node_destroy(&b);
    assert_null(b);
    sl_node_destroy(&b); /* NULL is fine */
    assert_non_null(strstr(sl_node_endpoint(a), "tcp://127.0.0.1:"));
    assert_null(strstr(sl_node_endpoint(a), ":0"));
}

static void test_node__heartbeat_carries_epoch(void **state)
{
    sl_node_t *n = s_start(0);
    node_peer_t *p = node_fx_peer();
    node_peer_publish_range(p, "q", 1, 1, 0); /* the node learns of p */
    Sluice__V1__Envelope *env = node_peer_recv(p, SLUICE__V1__ENVELOPE__BODY_HEARTBEAT, 0,
                                               node_test_patience());
    assert_non_null(env);
    assert_int_equal(env->heartbeat->epoch, sl_node_epoch(n));
    assert_string_equal(env->heartbeat->node_id, "node-test");
    assert_int_equal(env->heartbeat->interval_ms, 250);
    sl_wire_env_free(&env);
}

/* --- in-process handlers -------------------------------------------------- */

typedef struct {
    atomic_int cur, max, done, started;
    atomic_int bad;             /* the handler saw a malformed job */
    atomic_int seen[MAXJ];      /* handler calls per job number */
    atomic_int last_attempt[MAXJ];
    int sleep_ms;
    bool blocking;              /* sleep the thread, not the coroutine */
    bool retry_first;           /* SL_NODE_RETRY on attempt 1 */
    int slow_job;               /* this job sleeps slow_ms on attempt 1 */
    int slow_ms;
} s_hstate_t;

static void s_nap(bool blocking, int ms)
{
    if (blocking) {
        struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
        nanosleep(&ts, NULL);
    } else {
        sl_sleep_ms(ms);
    }
}

static int s_handler(const sl_node_job_t *job, void *arg)
{
    s_hstate_t *h = arg;
    atomic_fetch_add(&h->started, 1);
    int c = atomic_fetch_add(&h->cur, 1) + 1;
    int m = atomic_load(&h->max);
    while (c > m && !atomic_compare_exchange_weak(&h->max, &m, c))
        ;
    /* Not cmocka asserts: this runs on a scheduler thread. */
    ProtobufCBinaryData id = {16, (uint8_t *)job->id};
    uint32_t num = node_id_num(&id);
    if (num >= MAXJ || strcmp(job->queue, "h") != 0 || job->len != 5 ||
        memcmp(job->payload, "xxxxx", 5) != 0) {
        atomic_store(&h->bad, 1);
        num = 0;
    }
    atomic_fetch_add(&h->seen[num], 1);
    atomic_store(&h->last_attempt[num], (int)job->attempt);
    int ms = h->sleep_ms;
    if ((int)num == h->slow_job && job->attempt == 1)
        ms = h->slow_ms;
    if (ms)
        s_nap(h->blocking, ms);
    atomic_fetch_sub(&h->cur, 1);
    int verdict = h->retry_first && job->attempt == 1 ? SL_NODE_RETRY : SL_NODE_ACK;
    atomic_fetch_add(&h->done, 1);
    return verdict;
}

static void s_publish_h(node_peer_t *p, uint32_t first, uint32_t count)
{
    node_job_t js[MAXJ];
    assert_true(count <= MAXJ);
    for (uint32_t i = 0; i < count; i++)
        js[i] = (node_job_t){.id = first + i, .queue = "h", .payload_len = 5};
    int st[MAXJ];
    node_peer_publish_ok(p, js, count, st, node_test_patience());
    for (uint32_t i = 0; i < count; i++)
        assert_int_equal(st[i], SLUICE__V1__JOB_CONFIRM__STATUS__ACCEPTED);
}

static int s_started(void *arg)
{
    s_hstate_t *h = arg;
    return atomic_load(&h->started) > 0;
}

static void s_handler_run(bool blocking, int concurrency)
{
    sl_node_t *n = s_start(0);
    node_peer_t *p = node_fx_peer();
    static s_hstate_t h;
    memset(&h, 0, sizeof h);
    h.sleep_ms = 20;
    h.blocking = blocking;
    SL_ASSERT_OK(sl_node_handle(n, "h", concurrency, s_handler, &h,
                                blocking ? SL_NODE_BLOCKING : 0));
    enum { N = 30 };
    s_publish_h(p, 1, N);
    Sluice__V1__QueueStats st;
    NODE_WAIT_STATS(p, "h", st, st.acked == N, 20 * node_test_patience());
    assert_int_equal(atomic_load(&h.done), N);
    assert_int_equal(atomic_load(&h.bad), 0);
    for (int i = 1; i <= N; i++) {
        assert_int_equal(atomic_load(&h.seen[i]), 1);
        assert_int_equal(atomic_load(&h.last_attempt[i]), 1);
    }
    if (atomic_load(&h.max) > concurrency)
        fail_msg("%d handlers ran at once, concurrency is %d", atomic_load(&h.max), concurrency);
    if (atomic_load(&h.max) < 2)
        fail_msg("handlers never overlapped (concurrency %d)", concurrency);
    assert_int_equal(st.in_flight, 0);
    assert_int_equal(st.delivered, N);
    assert_int_equal(st.consumers, 1);
}

static void test_node__handler_concurrency_bounded(void **state)
{
    s_handler_run(false, 3);
}

static void test_node__handler_blocking_concurrency_bounded(void **state)
{
    s_handler_run(true, 2);
}

static void test_node__handler_registration_errors(void **state)
{
    static s_hstate_t h;
    sl_node_opts_t o;
    node_test_opts(&o);
    int err;
    sl_node_t *idle = sl_node_new(&o, &err);
    assert_non_null(idle);
    SL_ASSERT_ERR(sl_node_handle(idle, "h", 1, s_handler, &h, 0), SL_ESTATE);
    sl_node_destroy(&idle);

    sl_node_t *n = s_start(0);
    SL_ASSERT_ERR(sl_node_handle(n, "h", 0, s_handler, &h, 0), SL_EINVAL);
    SL_ASSERT_ERR(sl_node_handle(n, "h", 1, NULL, &h, 0), SL_EINVAL);
    SL_ASSERT_ERR(sl_node_handle(n, NULL, 1, s_handler, &h, 0), SL_EINVAL);
    SL_ASSERT_ERR(sl_node_handle(n, "bad queue", 1, s_handler, &h, 0), SL_EINVAL);
    SL_ASSERT_OK(sl_node_handle(n, "h", 1, s_handler, &h, 0));
    SL_ASSERT_ERR(sl_node_handle(n, "h", 1, s_handler, &h, 0), SL_ESTATE);
}

static void test_node__handler_retry(void **state)
{
    sl_node_t *n = s_start(0);
    node_peer_t *p = node_fx_peer();
    static s_hstate_t h;
    memset(&h, 0, sizeof h);
    h.retry_first = true;
    SL_ASSERT_OK(sl_node_handle(n, "h", 2, s_handler, &h, 0));
    s_publish_h(p, 1, 3);
    Sluice__V1__QueueStats st;
    NODE_WAIT_STATS(p, "h", st, st.acked == 3, node_test_patience());
    for (int i = 1; i <= 3; i++) {
        assert_int_equal(atomic_load(&h.seen[i]), 2);
        assert_int_equal(atomic_load(&h.last_attempt[i]), 2);
    }
    assert_int_equal(st.retried, 3);
    assert_int_equal(st.failed, 3);
    assert_int_equal(st.dead, 0);
    assert_int_equal(st.delivered, 6);
}

/* A handler that outlives its lease: the job is redelivered, and the
 * handler's late verdict must not cost the queue its concurrency. */
static void test_node__handler_slower_than_lease(void **state)
{
    int64_t lease = sl_test_sanitized() ? 400 : 100;
    sl_node_t *n = s_start(lease);
    node_peer_t *p = node_fx_peer();
    static s_hstate_t h;
    memset(&h, 0, sizeof h);
    h.slow_job = 1;
    h.slow_ms = (int)(3 * lease);
    SL_ASSERT_OK(sl_node_handle(n, "h", 1, s_handler, &h, 0));
    s_publish_h(p, 1, 1);
    assert_true(sl_test_wait_for(s_started, &h, node_test_patience()));
    s_publish_h(p, 2, 2);
    Sluice__V1__QueueStats st;
    int64_t end = sl_deadline_ms(node_test_patience() + 3 * lease);
    while (!(node_peer_stats_try(p, "h", &st) && st.acked == 3) && sl_now() < end)
        sl_sleep_ms(10);
    if (st.acked != 3)
        fail_msg("queue stalled after a handler outlived its lease: acked %llu of 3, depth %llu, "
                 "in flight %llu, handler calls %d",
                 (unsigned long long)st.acked, (unsigned long long)st.depth,
                 (unsigned long long)st.in_flight, atomic_load(&h.started));
    assert_int_equal(atomic_load(&h.seen[2]), 1);
    assert_int_equal(atomic_load(&h.seen[3]), 1);
}

/* --- stop ----------------------------------------------------------------- */

typedef struct {
    sl_node_t *node;
    int64_t timeout_ms;
    int rc;
    sl_node_report_t left;
    double took_ms;
    atomic_int finished;
} s_stopper_t;

static void *s_stopper_main(void *arg)
{
    s_stopper_t *s = arg;
    int64_t t0 = sl_now();
    s->rc = sl_node_stop(s->node, s->timeout_ms, &s->left);
    s->took_ms = sl_test_ms_since(t0);
    atomic_store(&s->finished, 1);
    return NULL;
}

/* Publish until the node answers "shutting down": proof it is stopping.
 * Returns how many of those publishes were accepted before that. */
static uint64_t s_wait_shutting_down(node_peer_t *p)
{
    uint64_t accepted = 0;
    int64_t end = sl_deadline_ms(node_test_patience());
    for (uint32_t id = 100;; id++) {
        assert_true(sl_now() < end);
        uint64_t corr = node_peer_publish(p, &(node_job_t){.id = id}, 1);
        Sluice__V1__Envelope *env = node_peer_confirm(p, corr, node_test_patience());
        assert_non_null(env);
        Sluice__V1__JobConfirm *c = env->confirm->confirms[0];
        bool stopping = c->status == REJ && strstr(c->reason, "shutting down");
        if (stopping)
            assert_true(c->retry_after_ms > 0);
        accepted += c->status == SLUICE__V1__JOB_CONFIRM__STATUS__ACCEPTED;
        sl_wire_env_free(&env);
        if (stopping)
            return accepted;
        sl_sleep_ms(5);
    }
}

static void test_node__stop_waits_for_in_flight_ack(void **state)
{
    sl_node_t *n = s_start(0);
    node_peer_t *p = node_fx_peer();
    SL_ASSERT_OK(node_peer_subscribe(p, "q", 1));
    node_peer_publish_range(p, "q", 1, 2, 0);
    node_dlv_t d;
    assert_int_equal(node_peer_deliveries(p, &d, 1, node_test_patience()), 1);

    static s_stopper_t s;
    memset(&s, 0, sizeof s);
    s.node = n;
    s.timeout_ms = 2 * node_test_patience();
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, s_stopper_main, &s), 0);
    uint64_t early = s_wait_shutting_down(p);
    assert_int_equal(atomic_load(&s.finished), 0); /* still waiting for d */
    /* A stopping node starts no new deliveries, whatever the credit. */
    SL_ASSERT_OK(node_peer_credit(p, "q", 5));
    assert_int_equal(node_peer_count(p, SLUICE__V1__ENVELOPE__BODY_DELIVER, 200), 0);
    assert_int_equal(atomic_load(&s.finished), 0);
    node_peer_ack(p, &d);
    assert_int_equal(pthread_join(t, NULL), 0);
    SL_ASSERT_OK(s.rc);
    assert_int_equal(s.left.in_flight, 0);
    assert_int_equal(s.left.ready, 1 + early);
    assert_true(s.took_ms < (double)s.timeout_ms);
    assert_int_equal(node_peer_count(p, SLUICE__V1__ENVELOPE__BODY_LEASE_REPLY, 0), 0);
    SL_ASSERT_ERR(sl_node_stop(n, 0, NULL), SL_ESTATE); /* once */
}

static void test_node__stop_times_out_with_unacked_job(void **state)
{
    sl_node_t *n = s_start(0);
    node_peer_t *p = node_fx_peer();
    SL_ASSERT_OK(node_peer_subscribe(p, "q", 1));
    node_peer_publish_range(p, "q", 1, 2, 0);
    node_dlv_t d;
    assert_int_equal(node_peer_deliveries(p, &d, 1, node_test_patience()), 1);
    sl_node_report_t left;
    memset(&left, 0xff, sizeof left);
    int64_t t0 = sl_now();
    SL_ASSERT_ERR(sl_node_stop(n, 300, &left), SL_ETIMEDOUT);
    double took = sl_test_ms_since(t0);
    if (took < 295 || took > (sl_test_sanitized() ? 3000 : 800))
        fail_msg("stop with timeout 300 ms took %.0f ms", took);
    assert_int_equal(left.in_flight, 1);
    assert_int_equal(left.ready, 1);
    assert_int_equal(left.delayed, 0);
    assert_int_equal(left.dead, 0);
    assert_int_equal(left.waiting_publishes, 0);
}

/* With nothing in flight, stop returns at once and reports what it held. */
static void test_node__stop_reports_held_jobs(void **state)
{
    sl_node_opts_t o;
    node_test_opts(&o);
    o.max_length = 2;
    sl_node_t *n = node_fx_start(&o);
    node_peer_t *p = node_fx_peer();
    node_job_t jobs[2] = {{.id = 1, .not_before_ms = node_wall_ms() + 3600000}, {.id = 2}};
    node_peer_publish_ok(p, jobs, 2, NULL, node_test_patience());
    uint64_t corr = node_peer_publish(p, &(node_job_t){.id = 3}, 1); /* waits for room */
    Sluice__V1__QueueStats st;
    /* Published counts accepted jobs; the third waits, unconfirmed. */
    NODE_WAIT_STATS(p, "q", st, st.published == 2 && st.waiting == 1, node_test_patience());
    assert_null(node_peer_confirm(p, corr, 0));
    sl_node_report_t left;
    int64_t t0 = sl_now();
    SL_ASSERT_OK(sl_node_stop(n, 10000, &left));
    assert_true(sl_test_ms_since(t0) < 5000);
    assert_int_equal(left.in_flight, 0);
    assert_int_equal(left.ready, 1);
    assert_int_equal(left.delayed, 1);
    assert_int_equal(left.waiting_publishes, 1);
    assert_int_equal(left.dead, 0);
}

/* Stop while an in-process handler is mid-job: stop waits for its verdict,
 * and the node can be destroyed right after. */
static void test_node__stop_waits_for_handler(void **state)
{
    sl_node_t *n = s_start(0);
    node_peer_t *p = node_fx_peer();
    static s_hstate_t h;
    memset(&h, 0, sizeof h);
    h.sleep_ms = 200;
    SL_ASSERT_OK(sl_node_handle(n, "h", 4, s_handler, &h, 0));
    s_publish_h(p, 1, 1);
    assert_true(sl_test_wait_for(s_started, &h, node_test_patience()));
    sl_node_report_t left;
    SL_ASSERT_OK(sl_node_stop(n, 2 * node_test_patience(), &left));
    assert_int_equal(atomic_load(&h.done), 1);
    assert_int_equal(left.in_flight, 0);
    node_fx_teardown(NULL);
    sl_sleep_ms(100); /* let any straggling coroutine run into freed memory now */
}

/* Nodes come and go in one process (a test suite, a service that restarts
 * its embedded node): each is destroyed right after use, with handlers and
 * delivery coroutines parked, and nothing of it may outlive destroy. */
static void test_node__create_use_destroy_churn(void **state)
{
    for (int round = 0; round < 30; round++) {
        sl_node_t *n = s_start(0);
        node_peer_t *p = node_fx_peer();
        static s_hstate_t h;
        memset(&h, 0, sizeof h);
        SL_ASSERT_OK(sl_node_handle(n, "h", 4, s_handler, &h, round % 2 ? SL_NODE_BLOCKING : 0));
        SL_ASSERT_OK(node_peer_subscribe(p, "q", 4));
        s_publish_h(p, 1, 2);
        node_peer_publish_range(p, "q", 10, 2, 0);
        node_dlv_t d[2];
        assert_int_equal(node_peer_deliveries(p, d, 2, node_test_patience()), 2);
        Sluice__V1__QueueStats st;
        NODE_WAIT_STATS(p, "h", st, st.acked == 2, node_test_patience());
        node_fx_teardown(NULL);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_node__new_and_start_errors, node_fx_teardown),
        cmocka_unit_test_teardown(test_node__heartbeat_carries_epoch, node_fx_teardown),
        cmocka_unit_test_teardown(test_node__handler_concurrency_bounded, node_fx_teardown),
        cmocka_unit_test_teardown(test_node__handler_blocking_concurrency_bounded,
                                  node_fx_teardown),
        cmocka_unit_test_teardown(test_node__handler_registration_errors, node_fx_teardown),
        cmocka_unit_test_teardown(test_node__handler_retry, node_fx_teardown),
        cmocka_unit_test_teardown(test_node__handler_slower_than_lease, node_fx_teardown),
        cmocka_unit_test_teardown(test_node__stop_waits_for_in_flight_ack, node_fx_teardown),
        cmocka_unit_test_teardown(test_node__stop_times_out_with_unacked_job, node_fx_teardown),
        cmocka_unit_test_teardown(test_node__stop_reports_held_jobs, node_fx_teardown),
        cmocka_unit_test_teardown(test_node__stop_waits_for_handler, node_fx_teardown),
        cmocka_unit_test_teardown(test_node__create_use_destroy_churn, node_fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
