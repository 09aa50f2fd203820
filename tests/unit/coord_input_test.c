/* coord_input_test.c -- bad input and limits at an embedded coordinator
 * over a real DEALER socket: garbage, the wrong number of frames, an
 * oversized envelope, an empty envelope, kinds the coordinator does not
 * serve, requests missing their ids or naming a bad queue, and strings
 * holding a NUL byte each get an Error (BAD_MESSAGE, BAD_QUEUE or
 * UNKNOWN_KIND) and are counted; a full table answers Error{FULL}; and
 * afterwards the coordinator still serves the same peer. */
#include "coord_testutil.h"

#define MAX_FRAME 4096
#define BAD_MESSAGE SLUICE__V1__ERROR__CODE__BAD_MESSAGE
#define UNKNOWN_KIND SLUICE__V1__ERROR__CODE__UNKNOWN_KIND
#define FULL SLUICE__V1__ERROR__CODE__FULL
#define BAD_QUEUE SLUICE__V1__ERROR__CODE__BAD_QUEUE

static sl_coord_t *s_start(uint32_t max_nodes, uint32_t max_consumers)
{
    sl_coord_opts_t o;
    sl_coord_opts_default(&o);
    o.endpoint = "tcp://127.0.0.1:0";
    o.heartbeat_ms = coord_hb();
    o.grace_ms = 0;
    o.max_frame = MAX_FRAME;
    o.max_nodes = max_nodes;
    o.max_consumers = max_consumers;
    int err = 0;
    sl_coord_t *c = sl_coord_new(&o, &err);
    assert_non_null(c);
    SL_ASSERT_OK(sl_coord_start(c));
    return c;
}

/* The next Error has code `code` and corr `corr`, and says something. */
static void s_expect_error(cpeer_t *p, Sluice__V1__Error__Code code, uint64_t corr)
{
    Sluice__V1__Envelope *env = cpeer_recv(p, K_ERROR, 0, coord_patience());
    if (!env)
        fail_msg("no Error within %lld ms", (long long)coord_patience());
    if (env->error->code != code)
        fail_msg("Error code %d ('%s'), want %d", env->error->code, env->error->text, code);
    assert_int_equal(env->corr, corr);
    assert_true(strlen(env->error->text) > 0);
    sl_wire_env_free(&env);
}

static void s_send_raw(cpeer_t *p, const void *data, size_t len)
{
    const void *frames[1] = {data};
    size_t lens[1] = {len};
    SL_ASSERT_OK(cpeer_send_frames(p, frames, lens, 1));
}

static void s_send_status(cpeer_t *p, const char *id, uint64_t corr)
{
    Sluice__V1__NodeStatus st = SLUICE__V1__NODE_STATUS__INIT;
    st.node_id = (char *)id;
    st.endpoint = "tcp://127.0.0.1:7450";
    st.interval_ms = (uint32_t)coord_hb();
    Sluice__V1__Envelope env = SLUICE__V1__ENVELOPE__INIT;
    env.corr = corr;
    env.body_case = SLUICE__V1__ENVELOPE__BODY_NODE_STATUS;
    env.node_status = &st;
    SL_ASSERT_OK(cpeer_send(p, &env));
}

/* ConsumerJoin{consumer, queue} with every '@' of either sent as a NUL
 * byte (the encoding is patched: protobuf-c cannot write one). */
static void s_send_join_nul(cpeer_t *p, const char *consumer, const char *queue, uint64_t corr)
{
    Sluice__V1__ConsumerJoin j = SLUICE__V1__CONSUMER_JOIN__INIT;
    j.consumer_id = (char *)consumer;
    j.queue = (char *)queue;
    j.concurrency = 1;
    Sluice__V1__Envelope env = SLUICE__V1__ENVELOPE__INIT;
    env.corr = corr;
    env.body_case = SLUICE__V1__ENVELOPE__BODY_CONSUMER_JOIN;
    env.consumer_join = &j;
    uint8_t *buf = NULL;
    size_t len = 0;
    SL_ASSERT_OK(sl_wire_pack(&env, &buf, &len));
    for (size_t i = 0; i < len; i++)
        if (buf[i] == '@')
            buf[i] = 0;
    s_send_raw(p, buf, len);
    free(buf);
}

/* The coordinator still serves p: a node registers and CLUSTER answers,
 * counting `bad` bad messages. */
static void s_still_serving(cpeer_t *p, uint64_t bad)
{
    s_send_status(p, "after", 99);
    Sluice__V1__Envelope *env = cpeer_recv(p, K_STATUS_REPLY, 99, coord_patience());
    assert_non_null(env);
    assert_true(env->node_status_reply->member_epoch > 0);
    sl_wire_env_free(&env);
    env = coord_cluster(p);
    assert_int_equal(env->admin_reply->bad_messages, bad);
    sl_wire_env_free(&env);
}

static void test_coord_input__bad_input_answered_and_counted(void **state)
{
    (void)state;
    sl_coord_t *c = s_start(16, 16);
    cpeer_t *p = coord_client(c);
    uint64_t bad = 0;

    /* garbage: not an Envelope */
    static const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0x0f, 0x12, 0x34};
    s_send_raw(p, junk, sizeof junk);
    s_expect_error(p, BAD_MESSAGE, 0);
    bad++;

    /* two frames where one is expected */
    const void *frames[2] = {"a", "b"};
    size_t lens[2] = {1, 1};
    SL_ASSERT_OK(cpeer_send_frames(p, frames, lens, 2));
    s_expect_error(p, BAD_MESSAGE, 0);
    bad++;

    /* over max-frame (but under ZeroMQ's hard ceiling) */
    Sluice__V1__Admin a = SLUICE__V1__ADMIN__INIT;
    char *big = malloc(MAX_FRAME + 100);
    assert_non_null(big);
    memset(big, 'x', MAX_FRAME + 99);
    big[MAX_FRAME + 99] = '\0';
    a.op = SLUICE__V1__ADMIN__OP__CLUSTER;
    a.queue = big;
    Sluice__V1__Envelope env = SLUICE__V1__ENVELOPE__INIT;
    env.corr = 5;
    env.body_case = SLUICE__V1__ENVELOPE__BODY_ADMIN;
    env.admin = &a;
    SL_ASSERT_OK(cpeer_send(p, &env));
    s_expect_error(p, BAD_MESSAGE, 0); /* not decoded, so no corr */
    bad++;
    free(big);

    /* an empty envelope: no body */
    s_send_raw(p, "", 0);
    s_expect_error(p, UNKNOWN_KIND, 0);
    bad++;

    /* a kind the coordinator does not serve: a Publish */
    Sluice__V1__Publish pub = SLUICE__V1__PUBLISH__INIT;
    Sluice__V1__Envelope penv = SLUICE__V1__ENVELOPE__INIT;
    penv.corr = 6;
    penv.body_case = SLUICE__V1__ENVELOPE__BODY_PUBLISH;
    penv.publish = &pub;
    SL_ASSERT_OK(cpeer_send(p, &penv));
    s_expect_error(p, UNKNOWN_KIND, 6);
    bad++;

    /* an admin op only nodes serve */
    Sluice__V1__Envelope *r = cpeer_admin(p, SLUICE__V1__ADMIN__OP__STATS, NULL, 100);
    assert_null(r);
    s_expect_error(p, UNKNOWN_KIND, 1); /* the first corr node_peer sends */
    bad++;

    /* requests missing what identifies them */
    s_send_status(p, "", 7);
    s_expect_error(p, BAD_MESSAGE, 7);
    bad++;
    coord_join(p, "c1", "bad queue!", 0, 8);
    s_expect_error(p, BAD_QUEUE, 8);
    bad++;
    coord_join(p, "", "q", 0, 9);
    s_expect_error(p, BAD_MESSAGE, 9);
    bad++;
    coord_route_request(p, "", "q", 0, 10);
    s_expect_error(p, BAD_MESSAGE, 10);
    bad++;
    coord_leave(p, "c1", "");
    s_expect_error(p, BAD_QUEUE, 0);
    bad++;

    /* strings holding a NUL byte, which protobuf-c would cut short into
     * valid ones ("q", "c"): refused whole, never joined */
    s_send_join_nul(p, "c1", "q@junk", 11);
    s_expect_error(p, BAD_QUEUE, 11);
    bad++;
    s_send_join_nul(p, "c@x", "q", 12);
    s_expect_error(p, BAD_MESSAGE, 12);
    bad++;

    s_still_serving(p, bad);
    sl_coord_stats_t st;
    sl_coord_stats(c, &st);
    assert_int_equal(st.bad_messages, bad);
    assert_int_equal(st.consumers, 0);
    cpeer_destroy(&p);
    sl_coord_destroy(&c);
}

/* A message past ZeroMQ's ceiling drops the connection; the DEALER
 * reconnects and the coordinator serves it again. */
static void test_coord_input__huge_message_drops_only_the_connection(void **state)
{
    (void)state;
    sl_coord_t *c = s_start(16, 16);
    cpeer_t *p = coord_client(c);
    size_t n = 4 * MAX_FRAME;
    uint8_t *huge = calloc(1, n);
    assert_non_null(huge);
    s_send_raw(p, huge, n);
    free(huge);
    int64_t end = sl_deadline_ms(coord_patience());
    for (;;) { /* the reconnect takes a moment: ask until answered */
        s_send_status(p, "after", 99);
        Sluice__V1__Envelope *env = cpeer_recv(p, K_STATUS_REPLY, 99, coord_hb());
        if (env) {
            sl_wire_env_free(&env);
            break;
        }
        if (sl_now() >= end)
            fail_msg("the coordinator never answered again");
    }
    cpeer_destroy(&p);
    sl_coord_destroy(&c);
}

/* Limits answer Error{FULL}; a dead node's tombstone makes room. */
static void test_coord_input__limits_answer_full(void **state)
{
    (void)state;
    sl_coord_t *c = s_start(2, 1);
    cpeer_t *p = coord_client(c);
    cnode_t *n1 = cnode_new(sl_coord_endpoint(c), "n1", 0);
    cnode_t *n2 = cnode_new(sl_coord_endpoint(c), "n2", 0);
    cnode_epoch(n1);
    cnode_epoch(n2);
    s_send_status(p, "n3", 31);
    s_expect_error(p, FULL, 31);

    coord_join(p, "c1", "q", 0, 32);
    Sluice__V1__Envelope *env = cpeer_recv(p, K_ASSIGNMENT, 32, coord_patience());
    assert_non_null(env);
    sl_wire_env_free(&env);
    coord_join(p, "c2", "q", 0, 33);
    s_expect_error(p, FULL, 33);

    /* n2 dies: its tombstone gives way to n3 */
    cnode_pause(n2, true);
    int64_t end = sl_deadline_ms(coord_patience());
    sl_coord_stats_t st;
    do {
        coord_sleep_ms(5);
        sl_coord_stats(c, &st);
    } while (st.nodes_dead == 0 && sl_now() < end);
    assert_int_equal(st.nodes_dead, 1);
    s_send_status(p, "n3", 34);
    env = cpeer_recv(p, K_STATUS_REPLY, 34, coord_patience());
    assert_non_null(env);
    sl_wire_env_free(&env);
    env = coord_cluster(p);
    Sluice__V1__ClusterView *cv = env->admin_reply->cluster;
    assert_int_equal(cv->n_nodes, 2);
    assert_string_equal(cv->nodes[0]->status->node_id, "n1");
    assert_string_equal(cv->nodes[1]->status->node_id, "n3");
    assert_int_equal(env->admin_reply->bad_messages, 0); /* FULL is not bad input */
    sl_wire_env_free(&env);

    cpeer_destroy(&p);
    cnode_destroy(&n1);
    cnode_destroy(&n2);
    sl_coord_destroy(&c);
}

static void test_coord_input__bad_options_refused(void **state)
{
    (void)state;
    sl_coord_opts_t o;
    int err = 0;
    sl_coord_opts_default(&o);
    o.heartbeat_ms = 1;
    assert_null(sl_coord_new(&o, &err));
    assert_int_equal(err, SL_EINVAL);
    sl_coord_opts_default(&o);
    o.max_nodes = 0;
    assert_null(sl_coord_new(&o, &err));
    assert_int_equal(err, SL_EINVAL);
    /* a second coordinator cannot bind the same endpoint */
    sl_coord_t *a = s_start(4, 4);
    sl_coord_opts_default(&o);
    o.endpoint = sl_coord_endpoint(a);
    sl_coord_t *b = sl_coord_new(&o, &err);
    assert_non_null(b);
    SL_ASSERT_ERR(sl_coord_start(b), SL_ESYS);
    sl_coord_destroy(&b);
    sl_coord_destroy(&a);
    assert_null(a);
    sl_coord_destroy(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_coord_input__bad_input_answered_and_counted),
        cmocka_unit_test(test_coord_input__huge_message_drops_only_the_connection),
        cmocka_unit_test(test_coord_input__limits_answer_full),
        cmocka_unit_test(test_coord_input__bad_options_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
