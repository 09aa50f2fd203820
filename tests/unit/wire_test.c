/* wire_test.c -- Envelope framing on real ZeroMQ ROUTER/DEALER pairs over
 * inproc:// and tcp://127.0.0.1: every body kind round-trips; garbage,
 * oversized and wrongly framed messages are rejected, consumed whole, and
 * the next good message still arrives. */
#include <stdlib.h>
#include <string.h>

#include <zmq.h>

#include "sluice/wire.h"
#include "testlib.h"

#define DEALER_ID "dealer-1"

#if defined(__SANITIZE_THREAD__)
#define SL_WIRE_TEST_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define SL_WIRE_TEST_TSAN 1
#endif
#endif

#ifdef SL_WIRE_TEST_TSAN
/* libzmq is not built with ThreadSanitizer: its I/O threads hand frames over
 * through lock-free pipes TSan cannot see, so the malloc/memcpy/free it
 * intercepts inside libzmq look like races with our reads. Ignore what
 * libzmq itself does; races in our own code are still reported. Weak, so a
 * definition shared by every zmq test (in testlib) takes precedence. */
const char *__tsan_default_suppressions(void);
__attribute__((weak)) const char *__tsan_default_suppressions(void)
{
    return "called_from_lib:libzmq.so\n";
}
#endif

typedef struct {
    void *ctx;
    void *router;
    void *dealer;
    char endpoint[256];
} s_pair_t;

static void s_setopt_int(void *sock, int opt, int v)
{
    assert_int_equal(zmq_setsockopt(sock, opt, &v, sizeof v), 0);
}

/* A ROUTER bound to `bind` (port 0 / "*" for tcp) and a DEALER connected
 * to its real endpoint; receives time out after 5 s so a broken test fails
 * instead of hanging. */
static s_pair_t *s_pair_new(const char *bind)
{
    s_pair_t *p = calloc(1, sizeof *p);
    assert_non_null(p);
    p->ctx = zmq_ctx_new();
    assert_non_null(p->ctx);
    p->router = zmq_socket(p->ctx, ZMQ_ROUTER);
    p->dealer = zmq_socket(p->ctx, ZMQ_DEALER);
    assert_non_null(p->router);
    assert_non_null(p->dealer);
    s_setopt_int(p->router, ZMQ_LINGER, 0);
    s_setopt_int(p->dealer, ZMQ_LINGER, 0);
    s_setopt_int(p->router, ZMQ_RCVTIMEO, 5000);
    s_setopt_int(p->dealer, ZMQ_RCVTIMEO, 5000);
    assert_int_equal(zmq_setsockopt(p->dealer, ZMQ_ROUTING_ID, DEALER_ID,
                                    strlen(DEALER_ID)), 0);
    if (zmq_bind(p->router, bind) != 0)
        fail_msg("bind %s: %s", bind, zmq_strerror(zmq_errno()));
    size_t len = sizeof p->endpoint;
    assert_int_equal(zmq_getsockopt(p->router, ZMQ_LAST_ENDPOINT, p->endpoint, &len), 0);
    assert_int_equal(zmq_connect(p->dealer, p->endpoint), 0);
    return p;
}

static void s_pair_destroy(s_pair_t **pp)
{
    s_pair_t *p = *pp;
    zmq_close(p->router);
    zmq_close(p->dealer);
    zmq_ctx_term(p->ctx);
    free(p);
    *pp = NULL;
}

static int s_setup_inproc(void **state)
{
    *state = s_pair_new("inproc://wire-test");
    return 0;
}

static int s_setup_tcp(void **state)
{
    *state = s_pair_new("tcp://127.0.0.1:*");
    return 0;
}

static int s_teardown(void **state)
{
    s_pair_t *p = *state;
    s_pair_destroy(&p);
    return 0;
}

/* ---- one envelope of every kind ---------------------------------------- */

typedef struct {
    uint8_t id[16];
    Sluice__V1__Job__HeadersEntry h1, h2;
    Sluice__V1__Job__HeadersEntry *hs[2];
    Sluice__V1__Job job;
    Sluice__V1__Job *jobs[1];
    Sluice__V1__Publish publish;
    Sluice__V1__JobConfirm jc;
    Sluice__V1__JobConfirm *jcs[1];
    Sluice__V1__PublishConfirm confirm;
    Sluice__V1__Subscribe subscribe;
    Sluice__V1__Credit credit;
    Sluice__V1__Unsubscribe unsubscribe;
    Sluice__V1__Lease lease;
    Sluice__V1__Delivery delivery;
    Sluice__V1__Delivery *deliveries[1];
    Sluice__V1__Deliver deliver;
    Sluice__V1__AckItem ack_item;
    Sluice__V1__AckItem *ack_items[1];
    Sluice__V1__Ack ack;
    Sluice__V1__Fail fail;
    Sluice__V1__Touch touch;
    Sluice__V1__Error error;
    Sluice__V1__LeaseReply lease_reply;
    Sluice__V1__Heartbeat heartbeat;
    Sluice__V1__Admin admin;
    Sluice__V1__QueueStats qs;
    Sluice__V1__QueueStats *qss[1];
    Sluice__V1__AdminReply admin_reply;
} s_bodies_t;

static const Sluice__V1__Envelope__BodyCase s_kinds[] = {
    SLUICE__V1__ENVELOPE__BODY_PUBLISH,     SLUICE__V1__ENVELOPE__BODY_CONFIRM,
    SLUICE__V1__ENVELOPE__BODY_SUBSCRIBE,   SLUICE__V1__ENVELOPE__BODY_CREDIT,
    SLUICE__V1__ENVELOPE__BODY_UNSUBSCRIBE, SLUICE__V1__ENVELOPE__BODY_DELIVER,
    SLUICE__V1__ENVELOPE__BODY_ACK,         SLUICE__V1__ENVELOPE__BODY_FAIL,
    SLUICE__V1__ENVELOPE__BODY_TOUCH,       SLUICE__V1__ENVELOPE__BODY_LEASE_REPLY,
    SLUICE__V1__ENVELOPE__BODY_HEARTBEAT,   SLUICE__V1__ENVELOPE__BODY_ERROR,
    SLUICE__V1__ENVELOPE__BODY_ADMIN,       SLUICE__V1__ENVELOPE__BODY_ADMIN_REPLY,
};
#define NKINDS (sizeof s_kinds / sizeof *s_kinds)

static void s_bodies_init(s_bodies_t *b)
{
    static uint8_t payload[] = "{\"to\":\"a@example.com\"}";
    static uint8_t result[] = "sent";
    for (int i = 0; i < 16; i++)
        b->id[i] = (uint8_t)(0xA0 + i);

    sluice__v1__job__headers_entry__init(&b->h1);
    b->h1.key = "trace";
    b->h1.value = "abc";
    sluice__v1__job__headers_entry__init(&b->h2);
    b->h2.key = "tenant";
    b->h2.value = "acme";
    b->hs[0] = &b->h1;
    b->hs[1] = &b->h2;

    sluice__v1__job__init(&b->job);
    b->job.id = (ProtobufCBinaryData){16, b->id};
    b->job.queue = "emails";
    b->job.payload = (ProtobufCBinaryData){sizeof payload - 1, payload};
    b->job.n_headers = 2;
    b->job.headers = b->hs;
    b->job.priority = 7;
    b->job.attempt = 2;
    b->job.max_attempts = 5;
    b->job.created_ms = 1764106800123;
    b->job.not_before_ms = 1764106801000;
    b->job.deadline_ms = 1764110400000;
    b->job.idempotency_key = "order-42";
    b->job.trace_id = (ProtobufCBinaryData){4, b->id};
    b->job.breaker_key = "smtp";
    b->job.last_error = "timeout";
    b->jobs[0] = &b->job;

    sluice__v1__publish__init(&b->publish);
    b->publish.n_jobs = 1;
    b->publish.jobs = b->jobs;

    sluice__v1__job_confirm__init(&b->jc);
    b->jc.id = (ProtobufCBinaryData){16, b->id};
    b->jc.status = SLUICE__V1__JOB_CONFIRM__STATUS__REJECTED;
    b->jc.reason = "full";
    b->jc.retry_after_ms = 250;
    b->jcs[0] = &b->jc;
    sluice__v1__publish_confirm__init(&b->confirm);
    b->confirm.n_confirms = 1;
    b->confirm.confirms = b->jcs;

    sluice__v1__subscribe__init(&b->subscribe);
    b->subscribe.queue = "emails";
    b->subscribe.credit = 32;
    b->subscribe.consumer_id = "worker-3";

    sluice__v1__credit__init(&b->credit);
    b->credit.queue = "emails";
    b->credit.credit = 8;

    sluice__v1__unsubscribe__init(&b->unsubscribe);
    b->unsubscribe.queue = "emails";

    sluice__v1__lease__init(&b->lease);
    b->lease.job_id = (ProtobufCBinaryData){16, b->id};
    b->lease.lease_id = 0x1122334455667788ULL;
    b->lease.epoch = 3;
    b->lease.expires_ms = 1764106830000;

    sluice__v1__delivery__init(&b->delivery);
    b->delivery.job = &b->job;
    b->delivery.lease = &b->lease;
    b->deliveries[0] = &b->delivery;
    sluice__v1__deliver__init(&b->deliver);
    b->deliver.n_deliveries = 1;
    b->deliver.deliveries = b->deliveries;

    sluice__v1__ack_item__init(&b->ack_item);
    b->ack_item.lease = &b->lease;
    b->ack_item.result = (ProtobufCBinaryData){sizeof result - 1, result};
    b->ack_items[0] = &b->ack_item;
    sluice__v1__ack__init(&b->ack);
    b->ack.n_items = 1;
    b->ack.items = b->ack_items;

    sluice__v1__fail__init(&b->fail);
    b->fail.lease = &b->lease;
    b->fail.retryable = true;
    b->fail.error = "smtp 451";

    sluice__v1__touch__init(&b->touch);
    b->touch.lease = &b->lease;
    b->touch.extend_ms = 30000;

    sluice__v1__error__init(&b->error);
    b->error.code = SLUICE__V1__ERROR__CODE__STALE_LEASE;
    b->error.text = "lease \"7\" is stale";

    sluice__v1__lease_reply__init(&b->lease_reply);
    b->lease_reply.lease = &b->lease;
    b->lease_reply.error = &b->error;

    sluice__v1__heartbeat__init(&b->heartbeat);
    b->heartbeat.node_id = "node-a";
    b->heartbeat.epoch = 3;
    b->heartbeat.sent_ms = 1764106800999;
    b->heartbeat.interval_ms = 1000;

    sluice__v1__admin__init(&b->admin);
    b->admin.op = SLUICE__V1__ADMIN__OP__DRAIN;
    b->admin.queue = "emails";

    sluice__v1__queue_stats__init(&b->qs);
    b->qs.name = "emails";
    b->qs.depth = 10;
    b->qs.delayed = 2;
    b->qs.in_flight = 3;
    b->qs.dead = 1;
    b->qs.published = 100;
    b->qs.delivered = 90;
    b->qs.acked = 85;
    b->qs.failed = 4;
    b->qs.retried = 3;
    b->qs.dropped = 0;
    b->qs.expired = 1;
    b->qs.consumers = 2;
    b->qs.paused = true;
    b->qs.overflow = "drop-oldest";
    b->qs.capacity = 1000;
    b->qss[0] = &b->qs;
    sluice__v1__admin_reply__init(&b->admin_reply);
    b->admin_reply.n_queues = 1;
    b->admin_reply.queues = b->qss;
    b->admin_reply.node_id = "node-a";
    b->admin_reply.epoch = 3;
    b->admin_reply.peers = 4;
}

static void s_envelope(Sluice__V1__Envelope *env, s_bodies_t *b,
                       Sluice__V1__Envelope__BodyCase kind, uint64_t corr)
{
    sluice__v1__envelope__init(env);
    env->corr = corr;
    env->body_case = kind;
    switch (kind) {
    case SLUICE__V1__ENVELOPE__BODY_PUBLISH: env->publish = &b->publish; break;
    case SLUICE__V1__ENVELOPE__BODY_CONFIRM: env->confirm = &b->confirm; break;
    case SLUICE__V1__ENVELOPE__BODY_SUBSCRIBE: env->subscribe = &b->subscribe; break;
    case SLUICE__V1__ENVELOPE__BODY_CREDIT: env->credit = &b->credit; break;
    case SLUICE__V1__ENVELOPE__BODY_UNSUBSCRIBE: env->unsubscribe = &b->unsubscribe; break;
    case SLUICE__V1__ENVELOPE__BODY_DELIVER: env->deliver = &b->deliver; break;
    case SLUICE__V1__ENVELOPE__BODY_ACK: env->ack = &b->ack; break;
    case SLUICE__V1__ENVELOPE__BODY_FAIL: env->fail = &b->fail; break;
    case SLUICE__V1__ENVELOPE__BODY_TOUCH: env->touch = &b->touch; break;
    case SLUICE__V1__ENVELOPE__BODY_LEASE_REPLY: env->lease_reply = &b->lease_reply; break;
    case SLUICE__V1__ENVELOPE__BODY_HEARTBEAT: env->heartbeat = &b->heartbeat; break;
    case SLUICE__V1__ENVELOPE__BODY_ERROR: env->error = &b->error; break;
    case SLUICE__V1__ENVELOPE__BODY_ADMIN: env->admin = &b->admin; break;
    case SLUICE__V1__ENVELOPE__BODY_ADMIN_REPLY: env->admin_reply = &b->admin_reply; break;
    default: env->body_case = SLUICE__V1__ENVELOPE__BODY__NOT_SET; break;
    }
}

/* A small good envelope: heartbeat with corr. */
static void s_heartbeat(Sluice__V1__Envelope *env, Sluice__V1__Heartbeat *hb,
                        uint64_t corr)
{
    sluice__v1__heartbeat__init(hb);
    hb->node_id = "n";
    hb->epoch = corr;
    sluice__v1__envelope__init(env);
    env->corr = corr;
    env->body_case = SLUICE__V1__ENVELOPE__BODY_HEARTBEAT;
    env->heartbeat = hb;
}

/* The two envelopes encode to the same bytes. */
static void s_assert_same(const Sluice__V1__Envelope *a, const Sluice__V1__Envelope *b)
{
    uint8_t *pa, *pb;
    size_t la, lb;
    SL_ASSERT_OK(sl_wire_pack(a, &pa, &la));
    SL_ASSERT_OK(sl_wire_pack(b, &pb, &lb));
    assert_int_equal(la, lb);
    assert_memory_equal(pa, pb, la);
    free(pa);
    free(pb);
}

/* Receive on the ROUTER, expecting a good message from the dealer. */
static void s_expect_at_router(s_pair_t *p, uint64_t corr)
{
    sl_wire_msg_t m;
    SL_ASSERT_OK(sl_wire_recv(p->router, true, 1 << 20, &m));
    assert_int_equal(m.rid_len, strlen(DEALER_ID));
    assert_memory_equal(m.rid, DEALER_ID, m.rid_len);
    assert_int_equal(m.env->corr, corr);
    sl_wire_msg_release(&m);
}

/* ---- tests ------------------------------------------------------------ */

static void s_round_trip_every_kind(s_pair_t *p)
{
    s_bodies_t b;
    s_bodies_init(&b);
    for (size_t k = 0; k < NKINDS; k++) {
        Sluice__V1__Envelope env;
        s_envelope(&env, &b, s_kinds[k], 1000 + k);

        /* dealer -> router: the router learns the sender */
        SL_ASSERT_OK(sl_wire_send(p->dealer, NULL, 0, &env, 0));
        sl_wire_msg_t in;
        SL_ASSERT_OK(sl_wire_recv(p->router, true, 1 << 20, &in));
        assert_int_equal(in.rid_len, strlen(DEALER_ID));
        assert_memory_equal(in.rid, DEALER_ID, in.rid_len);
        assert_int_equal(in.env->body_case, s_kinds[k]);
        assert_int_equal(in.env->corr, 1000 + k);
        assert_true(in.size > 0);
        s_assert_same(&env, in.env);

        /* router -> dealer: answered with the routing id it kept */
        SL_ASSERT_OK(sl_wire_send(p->router, in.rid, in.rid_len, in.env, 0));
        sl_wire_msg_t back;
        SL_ASSERT_OK(sl_wire_recv(p->dealer, false, 1 << 20, &back));
        assert_int_equal(back.rid_len, 0);
        assert_int_equal(back.env->body_case, s_kinds[k]);
        s_assert_same(&env, back.env);
        assert_string_not_equal(sl_wire_kind_name(s_kinds[k]), "unknown");
        sl_wire_msg_release(&in);
        sl_wire_msg_release(&back);
        sl_wire_msg_release(&back);     /* twice is harmless */
    }
    /* a few fields, checked by value, not only by re-encoding */
    Sluice__V1__Envelope env;
    s_envelope(&env, &b, SLUICE__V1__ENVELOPE__BODY_PUBLISH, 9);
    SL_ASSERT_OK(sl_wire_send(p->dealer, NULL, 0, &env, ZMQ_DONTWAIT));
    sl_wire_msg_t in;
    SL_ASSERT_OK(sl_wire_recv(p->router, true, 1 << 20, &in));
    Sluice__V1__Job *j = in.env->publish->jobs[0];
    assert_string_equal(j->queue, "emails");
    assert_int_equal(j->id.len, 16);
    assert_memory_equal(j->id.data, b.id, 16);
    assert_int_equal(j->n_headers, 2);
    assert_string_equal(j->headers[1]->value, "acme");
    assert_int_equal(j->deadline_ms, 1764110400000);
    sl_wire_msg_release(&in);
}

static void test_wire__round_trip_every_kind(void **state)
{
    s_pair_t *p = *state;
    if (strncmp(p->endpoint, "tcp://", 6) == 0) {
        assert_int_equal(strncmp(p->endpoint, "tcp://127.0.0.1:", 16), 0);
        assert_true(atoi(p->endpoint + 16) > 0);    /* a real port was chosen */
    }
    s_round_trip_every_kind(p);
}

static void test_wire__empty_and_unknown_kind_are_delivered(void **state)
{
    s_pair_t *p = *state;
    /* no body: delivered so the node can answer UNKNOWN_KIND echoing corr */
    Sluice__V1__Envelope env = SLUICE__V1__ENVELOPE__INIT;
    env.corr = 5;
    SL_ASSERT_OK(sl_wire_send(p->dealer, NULL, 0, &env, 0));
    sl_wire_msg_t m;
    SL_ASSERT_OK(sl_wire_recv(p->router, true, 0, &m));
    assert_int_equal(m.env->body_case, SLUICE__V1__ENVELOPE__BODY__NOT_SET);
    assert_int_equal(m.env->corr, 5);
    assert_string_equal(sl_wire_kind_name(m.env->body_case), "none");
    sl_wire_msg_release(&m);

    /* a body field from a newer version (field 40, past every known one):
     * corr 7 still readable */
    const uint8_t future[] = {0x08, 0x07, 0xC0, 0x02, 0x05};
    assert_int_equal(zmq_send(p->dealer, future, sizeof future, 0), (int)sizeof future);
    SL_ASSERT_OK(sl_wire_recv(p->router, true, 0, &m));
    assert_int_equal(m.env->body_case, SLUICE__V1__ENVELOPE__BODY__NOT_SET);
    assert_int_equal(m.env->corr, 7);
    sl_wire_msg_release(&m);
}

static void test_wire__garbage_is_eproto_and_next_message_arrives(void **state)
{
    s_pair_t *p = *state;
    Sluice__V1__Envelope env;
    Sluice__V1__Heartbeat hb;
    s_heartbeat(&env, &hb, 41);

    const char garbage[] = "not a protobuf";
    assert_int_equal(zmq_send(p->dealer, garbage, sizeof garbage - 1, 0),
                     (int)sizeof garbage - 1);
    /* a good envelope cut short is garbage too */
    s_bodies_t b;
    s_bodies_init(&b);
    Sluice__V1__Envelope big;
    s_envelope(&big, &b, SLUICE__V1__ENVELOPE__BODY_PUBLISH, 3);
    uint8_t *buf;
    size_t len;
    SL_ASSERT_OK(sl_wire_pack(&big, &buf, &len));
    assert_int_equal(zmq_send(p->dealer, buf, len - 3, 0), (int)(len - 3));
    free(buf);
    SL_ASSERT_OK(sl_wire_send(p->dealer, NULL, 0, &env, 0));

    for (int i = 0; i < 2; i++) {
        sl_wire_msg_t m;
        SL_ASSERT_ERR(sl_wire_recv(p->router, true, 1 << 20, &m), SL_EPROTO);
        assert_null(m.env);
        /* the sender is known, so the node can answer BAD_MESSAGE */
        assert_int_equal(m.rid_len, strlen(DEALER_ID));
        assert_memory_equal(m.rid, DEALER_ID, m.rid_len);
        sl_wire_msg_release(&m);
    }
    s_expect_at_router(p, 41);

    /* and on the dealer side */
    uint8_t rid[] = DEALER_ID;
    assert_int_equal(zmq_send(p->router, rid, sizeof rid - 1, ZMQ_SNDMORE), (int)sizeof rid - 1);
    assert_int_equal(zmq_send(p->router, garbage, sizeof garbage - 1, 0), (int)sizeof garbage - 1);
    SL_ASSERT_OK(sl_wire_send(p->router, rid, sizeof rid - 1, &env, 0));
    sl_wire_msg_t m;
    SL_ASSERT_ERR(sl_wire_recv(p->dealer, false, 0, &m), SL_EPROTO);
    SL_ASSERT_OK(sl_wire_recv(p->dealer, false, 0, &m));
    assert_int_equal(m.env->corr, 41);
    sl_wire_msg_release(&m);

    Sluice__V1__Envelope *out = NULL;
    SL_ASSERT_ERR(sl_wire_unpack(garbage, sizeof garbage - 1, &out), SL_EPROTO);
    assert_null(out);
}

static void test_wire__oversized_is_rejected_and_next_message_arrives(void **state)
{
    s_pair_t *p = *state;
    Sluice__V1__Envelope env;
    Sluice__V1__Heartbeat hb;
    s_heartbeat(&env, &hb, 1);
    uint8_t *buf;
    size_t len;
    SL_ASSERT_OK(sl_wire_pack(&env, &buf, &len));
    free(buf);

    /* exactly max_frame is accepted; one byte more is not */
    SL_ASSERT_OK(sl_wire_send(p->dealer, NULL, 0, &env, 0));
    SL_ASSERT_OK(sl_wire_send(p->dealer, NULL, 0, &env, 0));
    sl_wire_msg_t m;
    SL_ASSERT_OK(sl_wire_recv(p->router, true, len, &m));
    assert_int_equal(m.size, len);
    sl_wire_msg_release(&m);
    SL_ASSERT_ERR(sl_wire_recv(p->router, true, len - 1, &m), SL_ETOOBIG);
    assert_null(m.env);
    assert_int_equal(m.size, len);
    assert_memory_equal(m.rid, DEALER_ID, strlen(DEALER_ID));

    /* a big job, against a 1 KiB limit */
    static uint8_t payload[64 * 1024];
    s_bodies_t b;
    s_bodies_init(&b);
    b.job.payload = (ProtobufCBinaryData){sizeof payload, payload};
    Sluice__V1__Envelope big;
    s_envelope(&big, &b, SLUICE__V1__ENVELOPE__BODY_PUBLISH, 2);
    SL_ASSERT_OK(sl_wire_send(p->dealer, NULL, 0, &big, 0));
    s_heartbeat(&env, &hb, 3);
    SL_ASSERT_OK(sl_wire_send(p->dealer, NULL, 0, &env, 0));
    SL_ASSERT_ERR(sl_wire_recv(p->router, true, 1024, &m), SL_ETOOBIG);
    assert_true(m.size > sizeof payload);
    assert_int_equal(m.rid_len, strlen(DEALER_ID));
    SL_ASSERT_OK(sl_wire_recv(p->router, true, 1024, &m));
    assert_int_equal(m.env->corr, 3);
    sl_wire_msg_release(&m);
}

typedef struct {
    int calls;
    int rc;             /* what the callback returns */
    uint8_t buf[256];
    size_t size;
} s_decoded_t;

static int s_decode(const void *data, size_t size, void *arg)
{
    s_decoded_t *d = arg;
    d->calls++;
    d->size = size;
    memcpy(d->buf, data, size < sizeof d->buf ? size : sizeof d->buf);
    return d->rc;
}

/* sl_wire_try_recv_with after waiting (up to 5 s) for a message. */
static int s_try_recv_with(s_pair_t *p, size_t max_frame, sl_wire_msg_t *m, s_decoded_t *d)
{
    zmq_pollitem_t it = {.socket = p->router, .events = ZMQ_POLLIN};
    assert_int_equal(zmq_poll(&it, 1, 5000), 1);
    return sl_wire_try_recv_with(p->router, true, max_frame, m, s_decode, d);
}

static void test_wire__try_recv_with_hands_over_the_frame(void **state)
{
    s_pair_t *p = *state;
    Sluice__V1__Envelope env;
    Sluice__V1__Heartbeat hb;
    sl_wire_msg_t m;

    /* the frame, undecoded, with the sender's routing id */
    s_heartbeat(&env, &hb, 7);
    SL_ASSERT_OK(sl_wire_send(p->dealer, NULL, 0, &env, 0));
    s_decoded_t d = {.rc = SL_OK};
    SL_ASSERT_OK(s_try_recv_with(p, 1 << 20, &m, &d));
    assert_int_equal(d.calls, 1);
    assert_null(m.env);
    assert_int_equal(m.size, d.size);
    assert_memory_equal(m.rid, DEALER_ID, strlen(DEALER_ID));
    Sluice__V1__Envelope *got;
    SL_ASSERT_OK(sl_wire_unpack(d.buf, d.size, &got));
    s_assert_same(&env, got);
    sl_wire_env_free(&got);
    sl_wire_msg_release(&m);

    /* the callback's verdict is the receive's, the sender still named */
    s_heartbeat(&env, &hb, 8);
    SL_ASSERT_OK(sl_wire_send(p->dealer, NULL, 0, &env, 0));
    d = (s_decoded_t){.rc = SL_EPROTO};
    SL_ASSERT_ERR(s_try_recv_with(p, 1 << 20, &m, &d), SL_EPROTO);
    assert_int_equal(d.calls, 1);
    assert_int_equal(m.rid_len, strlen(DEALER_ID));

    /* oversized: refused before the callback */
    SL_ASSERT_OK(sl_wire_send(p->dealer, NULL, 0, &env, 0));
    d = (s_decoded_t){.rc = SL_OK};
    SL_ASSERT_ERR(s_try_recv_with(p, 4, &m, &d), SL_ETOOBIG);
    assert_int_equal(d.calls, 0);

    /* nothing queued */
    d = (s_decoded_t){.rc = SL_OK};
    SL_ASSERT_ERR(sl_wire_try_recv_with(p->router, true, 1 << 20, &m, s_decode, &d), SL_EAGAIN);
    assert_int_equal(d.calls, 0);
}

static void test_wire__wrong_frame_count_is_rejected(void **state)
{
    s_pair_t *p = *state;
    Sluice__V1__Envelope env;
    Sluice__V1__Heartbeat hb;
    s_heartbeat(&env, &hb, 8);
    uint8_t *buf;
    size_t len;
    SL_ASSERT_OK(sl_wire_pack(&env, &buf, &len));
    sl_wire_msg_t m;

    /* dealer sends two envelopes in one message: router sees 3 frames */
    assert_int_equal(zmq_send(p->dealer, buf, len, ZMQ_SNDMORE), (int)len);
    assert_int_equal(zmq_send(p->dealer, buf, len, 0), (int)len);
    /* REQ-style empty delimiter before the envelope */
    assert_int_equal(zmq_send(p->dealer, "", 0, ZMQ_SNDMORE), 0);
    assert_int_equal(zmq_send(p->dealer, buf, len, 0), (int)len);
    SL_ASSERT_OK(sl_wire_send(p->dealer, NULL, 0, &env, 0));
    for (int i = 0; i < 2; i++) {
        SL_ASSERT_ERR(sl_wire_recv(p->router, true, 0, &m), SL_EPROTO);
        assert_null(m.env);
        assert_memory_equal(m.rid, DEALER_ID, strlen(DEALER_ID));
    }
    s_expect_at_router(p, 8);

    /* router sends [rid][env][env] and [rid] alone: the dealer rejects both */
    assert_int_equal(zmq_send(p->router, DEALER_ID, strlen(DEALER_ID), ZMQ_SNDMORE),
                     (int)strlen(DEALER_ID));
    assert_int_equal(zmq_send(p->router, buf, len, ZMQ_SNDMORE), (int)len);
    assert_int_equal(zmq_send(p->router, buf, len, 0), (int)len);
    SL_ASSERT_OK(sl_wire_send(p->router, DEALER_ID, strlen(DEALER_ID), &env, 0));
    SL_ASSERT_ERR(sl_wire_recv(p->dealer, false, 0, &m), SL_EPROTO);
    assert_int_equal(m.rid_len, 0);
    SL_ASSERT_OK(sl_wire_recv(p->dealer, false, 0, &m));
    assert_int_equal(m.env->corr, 8);
    sl_wire_msg_release(&m);

    /* the dealer reading as if it were a router: one frame is too few */
    SL_ASSERT_OK(sl_wire_send(p->router, DEALER_ID, strlen(DEALER_ID), &env, 0));
    SL_ASSERT_ERR(sl_wire_recv(p->dealer, true, 0, &m), SL_EPROTO);
    free(buf);
}

static void test_wire__nothing_queued_is_eagain(void **state)
{
    s_pair_t *p = *state;
    sl_wire_msg_t m;
    SL_ASSERT_ERR(sl_wire_try_recv(p->router, true, 0, &m), SL_EAGAIN);
    assert_null(m.env);
    s_setopt_int(p->dealer, ZMQ_RCVTIMEO, 20);
    SL_ASSERT_ERR(sl_wire_recv(p->dealer, false, 0, &m), SL_EAGAIN);

    /* try_recv takes a message that is there */
    Sluice__V1__Envelope env;
    Sluice__V1__Heartbeat hb;
    s_heartbeat(&env, &hb, 12);
    SL_ASSERT_OK(sl_wire_send(p->dealer, NULL, 0, &env, 0));
    int rc;
    int64_t end = sl_deadline_ms(5000);
    while ((rc = sl_wire_try_recv(p->router, true, 0, &m)) == SL_EAGAIN && sl_now() < end)
        ;
    SL_ASSERT_OK(rc);
    assert_int_equal(m.env->corr, 12);
    sl_wire_msg_release(&m);
}

static void test_wire__send_errors(void **state)
{
    s_pair_t *p = *state;
    Sluice__V1__Envelope env;
    Sluice__V1__Heartbeat hb;
    s_heartbeat(&env, &hb, 1);

    /* unknown peer on a mandatory router */
    s_setopt_int(p->router, ZMQ_ROUTER_MANDATORY, 1);
    SL_ASSERT_ERR(sl_wire_send(p->router, "nobody", 6, &env, ZMQ_DONTWAIT), SL_ENOTFOUND);

    uint8_t rid[SL_WIRE_RID_MAX + 1] = {1};
    SL_ASSERT_ERR(sl_wire_send(p->router, rid, sizeof rid, &env, 0), SL_EINVAL);
    SL_ASSERT_ERR(sl_wire_send(p->router, NULL, 3, &env, 0), SL_EINVAL);
    SL_ASSERT_ERR(sl_wire_send(NULL, NULL, 0, &env, 0), SL_EINVAL);

    /* a terminated context closes the socket for us */
    zmq_ctx_shutdown(p->ctx);
    sl_wire_msg_t m;
    SL_ASSERT_ERR(sl_wire_recv(p->router, true, 0, &m), SL_ECLOSED);
    SL_ASSERT_ERR(sl_wire_send(p->dealer, NULL, 0, &env, 0), SL_ECLOSED);
}

static void test_wire__pack_unpack_helpers(void **state)
{
    (void)state;
    s_bodies_t b;
    s_bodies_init(&b);
    Sluice__V1__Envelope env;
    s_envelope(&env, &b, SLUICE__V1__ENVELOPE__BODY_DELIVER, 77);
    uint8_t *buf;
    size_t len;
    SL_ASSERT_OK(sl_wire_pack(&env, &buf, &len));
    Sluice__V1__Envelope *out;
    SL_ASSERT_OK(sl_wire_unpack(buf, len, &out));
    assert_int_equal(out->corr, 77);
    assert_int_equal(out->deliver->deliveries[0]->lease->lease_id, 0x1122334455667788ULL);
    s_assert_same(&env, out);
    sl_wire_env_free(&out);
    assert_null(out);
    sl_wire_env_free(&out);
    sl_wire_env_free(NULL);
    free(buf);

    Sluice__V1__Envelope empty = SLUICE__V1__ENVELOPE__INIT;
    SL_ASSERT_OK(sl_wire_pack(&empty, &buf, &len));
    assert_int_equal(len, 0);
    assert_non_null(buf);
    free(buf);
    assert_string_equal(sl_wire_kind_name((Sluice__V1__Envelope__BodyCase)99), "unknown");
}

int main(void)
{
/* Each shared test runs on both transports, named for the one it uses. */
#define IN(f) {#f "_inproc", f, s_setup_inproc, s_teardown, NULL}
#define TCP(f) {#f "_tcp", f, s_setup_tcp, s_teardown, NULL}
    const struct CMUnitTest tests[] = {
        IN(test_wire__round_trip_every_kind),
        TCP(test_wire__round_trip_every_kind),
        IN(test_wire__empty_and_unknown_kind_are_delivered),
        IN(test_wire__garbage_is_eproto_and_next_message_arrives),
        TCP(test_wire__garbage_is_eproto_and_next_message_arrives),
        IN(test_wire__oversized_is_rejected_and_next_message_arrives),
        TCP(test_wire__oversized_is_rejected_and_next_message_arrives),
        IN(test_wire__try_recv_with_hands_over_the_frame),
        TCP(test_wire__try_recv_with_hands_over_the_frame),
        IN(test_wire__wrong_frame_count_is_rejected),
        TCP(test_wire__wrong_frame_count_is_rejected),
        TCP(test_wire__nothing_queued_is_eagain),
        IN(test_wire__send_errors),
        cmocka_unit_test(test_wire__pack_unpack_helpers),
    };
#undef IN
#undef TCP
    return cmocka_run_group_tests(tests, NULL, NULL);
}
