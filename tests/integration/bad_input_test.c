/* bad_input_test.c -- a raw ZeroMQ DEALER sends a real node what no client
 * library would: garbage, wrong framing, oversized frames, unknown and
 * node-only kinds, admin calls on queues that do not exist, ids of the
 * wrong size, acks of jobs it does not hold. Each is answered, and the node
 * goes on serving: jobs accepted before are delivered, new ones too.
 * (The node also counts bad input, but shows the count nowhere a client can
 * read it -- not in stats or AdminReply -- so answers are what is checked.) */
#define _GNU_SOURCE
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "sluice/wire.h"
#include "testlib.h"
#include "itest.h"

#define S_MAX_FRAME 65536
#define S_OLD_JOBS 50
#define S_NEW_JOBS 10

static void *s_zctx, *s_sock;

static void s_raw_open(const char *endpoint)
{
    s_zctx = zmq_ctx_new();
    s_sock = zmq_socket(s_zctx, ZMQ_DEALER);
    int linger = 0;
    zmq_setsockopt(s_sock, ZMQ_LINGER, &linger, sizeof linger);
    assert_int_equal(zmq_connect(s_sock, endpoint), 0);
}

static void s_raw_close(void)
{
    if (s_sock)
        zmq_close(s_sock);
    if (s_zctx)
        zmq_ctx_term(s_zctx);
    s_sock = s_zctx = NULL;
}

static void s_send_frames(const void *const *frames, const size_t *lens, int n)
{
    for (int i = 0; i < n; i++)
        if (zmq_send(s_sock, frames[i], lens[i], i + 1 < n ? ZMQ_SNDMORE : 0) < 0)
            fail_msg("zmq_send: %s", zmq_strerror(zmq_errno()));
}

static void s_send_bytes(const void *data, size_t len)
{
    s_send_frames(&data, &len, 1);
}

static void s_send_env(const Sluice__V1__Envelope *env)
{
    SL_ASSERT_OK(sl_wire_send(s_sock, NULL, 0, env, 0));
}

/* The next envelope from the node that is not a heartbeat, within
 * timeout_ms, or NULL. Caller frees with sl_wire_env_free. */
static Sluice__V1__Envelope *s_recv(int timeout_ms)
{
    int64_t end = it_mono_ms() + timeout_ms;
    for (;;) {
        int left = (int)(end - it_mono_ms());
        if (left <= 0)
            return NULL;
        zmq_pollitem_t pi = {.socket = s_sock, .events = ZMQ_POLLIN};
        if (zmq_poll(&pi, 1, left) <= 0)
            continue;
        sl_wire_msg_t m;
        int rc = sl_wire_try_recv(s_sock, false, 0, &m);
        if (rc == SL_EAGAIN)
            continue;
        if (rc != SL_OK)
            fail_msg("undecodable reply from the node: %s", sl_err_name(rc));
        Sluice__V1__Envelope *env = m.env;
        m.env = NULL;
        sl_wire_msg_release(&m);
        if (env->body_case == SLUICE__V1__ENVELOPE__BODY_HEARTBEAT) {
            sl_wire_env_free(&env);
            continue;
        }
        return env;
    }
}

/* Expect an Error with one of two codes (b may equal a), echoing corr. */
static void s_expect_error(const char *what, uint64_t corr, int a, int b)
{
    Sluice__V1__Envelope *env = s_recv(5000);
    if (!env)
        fail_msg("%s: no answer within 5 s", what);
    if (env->body_case != SLUICE__V1__ENVELOPE__BODY_ERROR)
        fail_msg("%s: answered with %s, not error", what, sl_wire_kind_name(env->body_case));
    int code = env->error->code;
    print_message("%s: error %d '%s'\n", what, code, env->error->text);
    if (code != a && code != b)
        fail_msg("%s: error code %d, expected %d or %d", what, code, a, b);
    assert_int_equal(env->corr, corr);
    sl_wire_env_free(&env);
}

/* Expect a LeaseReply carrying an error code, echoing corr. */
static void s_expect_lease_error(const char *what, uint64_t corr, int code)
{
    Sluice__V1__Envelope *env = s_recv(5000);
    if (!env)
        fail_msg("%s: no answer within 5 s", what);
    if (env->body_case != SLUICE__V1__ENVELOPE__BODY_LEASE_REPLY)
        fail_msg("%s: answered with %s, not lease_reply", what, sl_wire_kind_name(env->body_case));
    assert_non_null(env->lease_reply->error);
    print_message("%s: lease error %d '%s'\n", what, env->lease_reply->error->code,
                  env->lease_reply->error->text);
    assert_int_equal(env->lease_reply->error->code, code);
    assert_int_equal(env->corr, corr);
    sl_wire_env_free(&env);
}

/* Expect an AdminReply with an error, echoing corr. */
static void s_expect_admin_error(const char *what, uint64_t corr)
{
    Sluice__V1__Envelope *env = s_recv(5000);
    if (!env)
        fail_msg("%s: no answer within 5 s", what);
    if (env->body_case != SLUICE__V1__ENVELOPE__BODY_ADMIN_REPLY)
        fail_msg("%s: answered with %s, not admin_reply", what, sl_wire_kind_name(env->body_case));
    assert_non_null(env->admin_reply->error);
    print_message("%s: admin error %d '%s'\n", what, env->admin_reply->error->code,
                  env->admin_reply->error->text);
    assert_int_equal(env->corr, corr);
    sl_wire_env_free(&env);
}

static void s_admin(uint64_t corr, Sluice__V1__Admin__Op op, const char *queue)
{
    Sluice__V1__Admin a = SLUICE__V1__ADMIN__INIT;
    a.op = op;
    a.queue = (char *)queue;
    Sluice__V1__Envelope env = SLUICE__V1__ENVELOPE__INIT;
    env.corr = corr;
    env.body_case = SLUICE__V1__ENVELOPE__BODY_ADMIN;
    env.admin = &a;
    s_send_env(&env);
}

/* The node answers a STATS from this socket within timeout_ms (resent
 * every 500 ms: the socket may be reconnecting). */
static bool s_node_answers(int timeout_ms)
{
    int64_t end = it_mono_ms() + timeout_ms;
    uint64_t corr = 1000;
    while (it_mono_ms() < end) {
        s_admin(++corr, SLUICE__V1__ADMIN__OP__STATS, NULL);
        Sluice__V1__Envelope *env;
        while ((env = s_recv(500))) {
            bool ok = env->body_case == SLUICE__V1__ENVELOPE__BODY_ADMIN_REPLY;
            sl_wire_env_free(&env);
            if (ok)
                return true;
        }
    }
    return false;
}

static void s_lease_msg(uint64_t corr, int kind, const uint8_t *job_id, size_t id_len,
                        uint64_t lease_id, uint64_t epoch)
{
    Sluice__V1__Lease l = SLUICE__V1__LEASE__INIT;
    l.job_id.data = (uint8_t *)job_id;
    l.job_id.len = id_len;
    l.lease_id = lease_id;
    l.epoch = epoch;
    Sluice__V1__AckItem item = SLUICE__V1__ACK_ITEM__INIT, *items[1] = {&item};
    item.lease = &l;
    Sluice__V1__Ack ack = SLUICE__V1__ACK__INIT;
    ack.n_items = 1;
    ack.items = items;
    Sluice__V1__Fail fail = SLUICE__V1__FAIL__INIT;
    fail.lease = &l;
    fail.retryable = true;
    fail.error = "raw";
    Sluice__V1__Touch touch = SLUICE__V1__TOUCH__INIT;
    touch.lease = &l;
    Sluice__V1__Envelope env = SLUICE__V1__ENVELOPE__INIT;
    env.corr = corr;
    env.body_case = kind;
    if (kind == SLUICE__V1__ENVELOPE__BODY_ACK)
        env.ack = &ack;
    else if (kind == SLUICE__V1__ENVELOPE__BODY_FAIL)
        env.fail = &fail;
    else
        env.touch = &touch;
    s_send_env(&env);
}

/* Fails if any bad input goes unanswered (or gets the wrong answer), if
 * the node dies or stops answering (also after a frame so large that
 * ZeroMQ drops the connection), if a job accepted before the bad input is
 * not delivered exactly once afterwards, or if a normal publish and
 * consume no longer work. */
static void test_bad_input__every_bad_message_answered_and_service_goes_on(void **state)
{
    it_ctx_t *t = *state;
    it_node_start(&t->node, (const char *const[]){"--max-frame", "64k", "--max-job", "32k",
                                                  "--heartbeat", "200ms", NULL});
    t->client = it_client(t->node.endpoint);

    /* Jobs accepted before the bad input. */
    uint8_t ids[S_OLD_JOBS + S_NEW_JOBS][SL_ID_LEN];
    for (int i = 0; i < S_OLD_JOBS; i++) {
        char text[16];
        snprintf(text, sizeof text, "old%d", i);
        sl_job_t j = {.queue = "good", .payload = text, .payload_len = strlen(text)};
        sl_confirm_t cf;
        SL_ASSERT_OK(sl_client_publish(t->client, &j, 1, &cf, sl_deadline_ms(10000)));
        assert_int_equal(cf.status, SL_CONFIRM_ACCEPTED);
        memcpy(ids[i], cf.id, SL_ID_LEN);
    }
    uint64_t epoch = t->node.epoch;

    s_raw_open(t->node.endpoint);
    enum {
        BAD_MESSAGE = SLUICE__V1__ERROR__CODE__BAD_MESSAGE,
        UNKNOWN_KIND = SLUICE__V1__ERROR__CODE__UNKNOWN_KIND,
        BAD_QUEUE = SLUICE__V1__ERROR__CODE__BAD_QUEUE,
        BAD_ID = SLUICE__V1__ERROR__CODE__BAD_ID,
        STALE_LEASE = SLUICE__V1__ERROR__CODE__STALE_LEASE,
        NOT_SUBSCRIBED = SLUICE__V1__ERROR__CODE__NOT_SUBSCRIBED,
    };

    /* Garbage: field 1 with wire type 7, which does not exist. */
    s_send_bytes("\x0f\xff\xff\xff", 4);
    s_expect_error("garbage", 0, BAD_MESSAGE, BAD_MESSAGE);

    /* Truncated: a length-delimited field claiming more than there is. */
    s_send_bytes("\x52\x7f\x01", 3);
    s_expect_error("truncated", 0, BAD_MESSAGE, BAD_MESSAGE);

    /* Two frames where the protocol has one. */
    const void *frames[2] = {"\x08\x01", "\x08\x02"};
    const size_t lens[2] = {2, 2};
    s_send_frames(frames, lens, 2);
    s_expect_error("two frames", 0, BAD_MESSAGE, BAD_MESSAGE);

    /* Oversized, but within ZeroMQ's hard ceiling: answered. */
    size_t big = S_MAX_FRAME + 512;
    uint8_t *blob = calloc(1, big);
    blob[0] = 0xba; /* field 999, length-delimited: unknown */
    blob[1] = 0x3e;
    blob[2] = 0x80 | ((big - 5) & 0x7f);
    blob[3] = 0x80 | (((big - 5) >> 7) & 0x7f);
    blob[4] = (uint8_t)((big - 5) >> 14);
    s_send_bytes(blob, big);
    s_expect_error("oversized", 0, BAD_MESSAGE, BAD_MESSAGE);
    free(blob);

    /* An envelope with no body; with a body of a kind nobody knows. */
    s_send_bytes("\x08\x07", 2); /* corr 7 */
    s_expect_error("no body", 7, UNKNOWN_KIND, BAD_MESSAGE);
    s_send_bytes("\x08\x08\xba\x3e\x02hi", 7); /* corr 8, field 999 */
    s_expect_error("unknown kind", 8, UNKNOWN_KIND, BAD_MESSAGE);

    /* Kinds only a node sends. */
    Sluice__V1__Deliver dl = SLUICE__V1__DELIVER__INIT;
    Sluice__V1__Envelope env = SLUICE__V1__ENVELOPE__INIT;
    env.corr = 9;
    env.body_case = SLUICE__V1__ENVELOPE__BODY_DELIVER;
    env.deliver = &dl;
    s_send_env(&env);
    s_expect_error("deliver to node", 9, UNKNOWN_KIND, BAD_MESSAGE);
    Sluice__V1__PublishConfirm pc = SLUICE__V1__PUBLISH_CONFIRM__INIT;
    env.corr = 10;
    env.body_case = SLUICE__V1__ENVELOPE__BODY_CONFIRM;
    env.confirm = &pc;
    s_send_env(&env);
    s_expect_error("confirm to node", 10, UNKNOWN_KIND, BAD_MESSAGE);

    /* Admin of queues that do not exist, or of no queue. */
    s_admin(11, SLUICE__V1__ADMIN__OP__STATS, "no-such-queue");
    s_expect_admin_error("stats of unknown queue", 11);
    s_admin(12, SLUICE__V1__ADMIN__OP__PAUSE, "no-such-queue");
    s_expect_admin_error("pause of unknown queue", 12);
    s_admin(13, SLUICE__V1__ADMIN__OP__DRAIN, "");
    s_expect_admin_error("drain of no queue", 13);

    /* Publish: ids of the wrong size and a bad queue name are rejected,
     * the valid job of the same request is accepted. */
    uint8_t id_ok[SL_ID_LEN], id_other[SL_ID_LEN], id_short[5] = {1, 2, 3, 4, 5}, id_long[20];
    sl_id_new(id_ok);
    sl_id_new(id_other);
    memset(id_long, 7, sizeof id_long);
    Sluice__V1__Job jobs[4], *jp[4];
    const char *queues[4] = {"good", "good", "good", "bad queue!"};
    const uint8_t *jids[4] = {id_short, id_long, id_ok, id_other};
    const size_t jlens[4] = {sizeof id_short, sizeof id_long, SL_ID_LEN, SL_ID_LEN};
    for (int i = 0; i < 4; i++) {
        sluice__v1__job__init(&jobs[i]);
        jobs[i].id.data = (uint8_t *)jids[i];
        jobs[i].id.len = jlens[i];
        jobs[i].queue = (char *)queues[i];
        jobs[i].payload.data = (uint8_t *)"raw";
        jobs[i].payload.len = 3;
        jp[i] = &jobs[i];
    }
    Sluice__V1__Publish pub = SLUICE__V1__PUBLISH__INIT;
    pub.n_jobs = 4;
    pub.jobs = jp;
    env.corr = 14;
    env.body_case = SLUICE__V1__ENVELOPE__BODY_PUBLISH;
    env.publish = &pub;
    s_send_env(&env);
    Sluice__V1__Envelope *rep = s_recv(5000);
    assert_non_null(rep);
    assert_int_equal(rep->body_case, SLUICE__V1__ENVELOPE__BODY_CONFIRM);
    assert_int_equal(rep->corr, 14);
    assert_int_equal(rep->confirm->n_confirms, 4);
    for (int i = 0; i < 4; i++)
        print_message("publish job %d: status %d '%s'\n", i, rep->confirm->confirms[i]->status,
                      rep->confirm->confirms[i]->reason);
    assert_int_equal(rep->confirm->confirms[0]->status, SLUICE__V1__JOB_CONFIRM__STATUS__REJECTED);
    assert_int_equal(rep->confirm->confirms[1]->status, SLUICE__V1__JOB_CONFIRM__STATUS__REJECTED);
    assert_int_equal(rep->confirm->confirms[2]->status, SLUICE__V1__JOB_CONFIRM__STATUS__ACCEPTED);
    assert_int_equal(rep->confirm->confirms[3]->status, SLUICE__V1__JOB_CONFIRM__STATUS__REJECTED);
    sl_wire_env_free(&rep);
    memcpy(ids[S_OLD_JOBS], id_ok, SL_ID_LEN); /* the raw job is a "new" one */

    /* Acks, fails and touches of jobs this peer does not hold. */
    uint8_t stranger[SL_ID_LEN];
    sl_id_new(stranger);
    s_lease_msg(15, SLUICE__V1__ENVELOPE__BODY_ACK, stranger, SL_ID_LEN, 1, epoch);
    s_expect_lease_error("ack of unknown job", 15, STALE_LEASE);
    s_lease_msg(16, SLUICE__V1__ENVELOPE__BODY_ACK, ids[1], SL_ID_LEN, 1, epoch);
    s_expect_lease_error("ack of a ready job not held", 16, STALE_LEASE);
    s_lease_msg(17, SLUICE__V1__ENVELOPE__BODY_FAIL, ids[2], SL_ID_LEN, 1, epoch);
    s_expect_lease_error("fail of a job not held", 17, STALE_LEASE);
    s_lease_msg(18, SLUICE__V1__ENVELOPE__BODY_TOUCH, ids[3], SL_ID_LEN, 1, epoch);
    s_expect_lease_error("touch of a job not held", 18, STALE_LEASE);
    s_lease_msg(19, SLUICE__V1__ENVELOPE__BODY_ACK, id_short, sizeof id_short, 1, epoch);
    s_expect_lease_error("ack with a 5-byte id", 19, BAD_ID);
    s_lease_msg(20, SLUICE__V1__ENVELOPE__BODY_ACK, ids[4], SL_ID_LEN, 1, epoch ^ 0x10);
    s_expect_lease_error("ack from another epoch", 20, STALE_LEASE);

    /* Credit without a subscription; a subscription to a bad name. */
    Sluice__V1__Credit cr = SLUICE__V1__CREDIT__INIT;
    cr.queue = "good";
    cr.credit = 100;
    env.corr = 21;
    env.body_case = SLUICE__V1__ENVELOPE__BODY_CREDIT;
    env.credit = &cr;
    s_send_env(&env);
    s_expect_error("credit without subscribe", 21, NOT_SUBSCRIBED, NOT_SUBSCRIBED);
    Sluice__V1__Subscribe sub = SLUICE__V1__SUBSCRIBE__INIT;
    sub.queue = "bad queue!";
    sub.credit = 1;
    env.corr = 22;
    env.body_case = SLUICE__V1__ENVELOPE__BODY_SUBSCRIBE;
    env.subscribe = &sub;
    s_send_env(&env);
    s_expect_error("subscribe to a bad name", 22, BAD_QUEUE, BAD_QUEUE);

    /* Far beyond the frame limit: ZeroMQ drops the connection (the node's
     * hard ceiling); the node lives and answers the reconnected socket. */
    big = 2 << 20;
    blob = calloc(1, big);
    s_send_bytes(blob, big);
    free(blob);
    assert_true(s_node_answers(10000));
    assert_int_equal(kill(t->node.pid, 0), 0);

    /* Nothing accepted was touched: the old jobs are all still there. */
    sl_queue_stats_t st = it_stats(t->client, "good");
    assert_int_equal(st.depth, S_OLD_JOBS + 1);
    assert_int_equal(st.in_flight, 0);
    assert_int_equal(st.dead, 0);

    /* Normal service: new publishes, and a consumer gets every job once. */
    for (int i = 1; i < S_NEW_JOBS; i++) {
        char text[16];
        snprintf(text, sizeof text, "new%d", i);
        sl_job_t j = {.queue = "good", .payload = text, .payload_len = strlen(text)};
        sl_confirm_t cf;
        SL_ASSERT_OK(sl_client_publish(t->client, &j, 1, &cf, sl_deadline_ms(10000)));
        assert_int_equal(cf.status, SL_CONFIRM_ACCEPTED);
        memcpy(ids[S_OLD_JOBS + i], cf.id, SL_ID_LEN);
    }
    char rec[PATH_MAX];
    it_consumer(t->node.endpoint, "good", it_path(rec, "consumer"),
                (const char *const[]){"--concurrency", "4", NULL});
    IT_WAIT_STATS(t->client, "good", 10000,
                  st.acked == S_OLD_JOBS + S_NEW_JOBS && st.depth == 0 && st.in_flight == 0);
    it_rec_t *recs;
    size_t n = it_records(rec, &recs);
    assert_int_equal(n, S_OLD_JOBS + S_NEW_JOBS);
    it_idset_t *done = it_idset_new(n);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(it_idset_add(done, recs[i].id, 0), 1);
    for (int i = 0; i < S_OLD_JOBS + S_NEW_JOBS; i++)
        assert_int_equal(it_idset_count(done, ids[i], NULL), 1);
    free(recs);
    it_idset_destroy(&done);
    s_raw_close();
    t->passed = true;
}

static int s_teardown(void **state)
{
    s_raw_close();
    return it_teardown(state);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_bad_input__every_bad_message_answered_and_service_goes_on, it_setup, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
