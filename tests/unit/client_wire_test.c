/* client_wire_test.c -- libsluice against a node played by a ZeroMQ ROUTER
 * in the test (clients/testsupport/testpeer.h), to see exactly what the
 * client sends and how it takes what a node may say:
 *
 *   - a publish names the node epoch the client last heard (node_epoch),
 *     and a STALE_EPOCH refusal makes it send the jobs again rather than
 *     fail them;
 *   - a rejection's code reaches the caller (sl_confirm_t.code);
 *   - kinds newer than the client, and SubscribeReply, are ignored;
 *   - STATS of every queue follows AdminReply.next from page to page;
 *   - sluice/stats.h's list names every QueueStats field, in order and of
 *     its type, and every one reaches sl_queue_stats_t; SL_CODES names
 *     every Error.Code. */
#define _GNU_SOURCE
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testlib.h"
#include "sluice/pbwire.h"
#include "sluice/wire.h"
#include "testclient.h"
#include "testpeer.h"

static tpeer_t *s_node;
static sl_client_t *s_client;

/* A client of a fake node that has heard from it (so knows its epoch). */
static void s_setup_pair(void)
{
    s_node = tpeer_new(true);
    sl_client_opts_t o = {.endpoint = s_node->endpoint, .heartbeat_ms = TPEER_HB_MS};
    int err = SL_OK;
    s_client = sl_client_new(&o, &err);
    if (!s_client)
        fail_msg("sl_client_new: %s", sl_err_name(err));
    SL_ASSERT_OK(sl_client_wait_connected(s_client, sl_deadline_ms(tc_patience_ms())));
}

static int s_teardown(void **state)
{
    (void)state;
    sl_client_destroy(&s_client);
    tpeer_destroy(&s_node);
    return 0;
}

static sl_client_counters_t s_counters(void)
{
    sl_client_counters_t k;
    sl_client_counters(s_client, &k);
    return k;
}

/* Publish n one-byte jobs to queue; the promise. */
static sl_chan_t *s_publish(const char *queue, size_t n)
{
    sl_job_t jobs[8];
    assert_true(n <= 8);
    for (size_t i = 0; i < n; i++)
        jobs[i] = (sl_job_t){.queue = queue, .payload = "x", .payload_len = 1};
    int err = SL_OK;
    sl_chan_t *p = sl_client_publish_async(s_client, jobs, n, sl_deadline_ms(tc_patience_ms()),
                                           &err);
    assert_non_null(p);
    return p;
}

static sl_publish_result_t *s_result(sl_chan_t **promise)
{
    void *v = NULL;
    SL_ASSERT_OK(sl_take_until(*promise, &v, sl_deadline_ms(tc_patience_ms())));
    sl_chan_destroy(promise);
    assert_non_null(v);
    return v;
}

/* Answer the Publish e with every job given status and code. */
static void s_confirm(const Sluice__V1__Envelope *e, Sluice__V1__JobConfirm__Status status,
                      Sluice__V1__Error__Code code)
{
    enum { MAX = 8 };
    size_t n = e->publish->n_jobs;
    assert_true(n <= MAX);
    Sluice__V1__JobConfirm jc[MAX], *jcp[MAX];
    for (size_t i = 0; i < n; i++) {
        sluice__v1__job_confirm__init(&jc[i]);
        jc[i].id = e->publish->jobs[i]->id;
        jc[i].status = status;
        jc[i].code = code;
        if (status == SLUICE__V1__JOB_CONFIRM__STATUS__REJECTED) {
            jc[i].reason = "refused for the test";
            jc[i].retry_after_ms = 250;
        }
        jcp[i] = &jc[i];
    }
    Sluice__V1__PublishConfirm pc = SLUICE__V1__PUBLISH_CONFIRM__INIT;
    pc.confirms = jcp;
    pc.n_confirms = n;
    Sluice__V1__Envelope out = SLUICE__V1__ENVELOPE__INIT;
    out.corr = e->corr;
    out.body_case = SLUICE__V1__ENVELOPE__BODY_CONFIRM;
    out.confirm = &pc;
    tpeer_send(s_node, &out);
}

static void s_same_jobs(const Sluice__V1__Publish *a, const Sluice__V1__Publish *b)
{
    assert_int_equal(a->n_jobs, b->n_jobs);
    for (size_t i = 0; i < a->n_jobs; i++) {
        assert_int_equal(a->jobs[i]->id.len, SL_ID_LEN);
        assert_memory_equal(a->jobs[i]->id.data, b->jobs[i]->id.data, SL_ID_LEN);
    }
}

/* --- node epochs --------------------------------------------------------- */

static void test_client_wire__publish_names_the_node_epoch_and_stale_is_sent_again(void **state)
{
    (void)state;
    s_setup_pair();
    size_t at = 0;
    sl_chan_t *p = s_publish("ep", 2);
    const Sluice__V1__Envelope *e = tpeer_wait(s_node, &at, SLUICE__V1__ENVELOPE__BODY_PUBLISH, "ep");
    /* the epoch of the node's heartbeats */
    assert_int_equal(e->publish->node_epoch, 42);
    uint64_t sessions = s_counters().sessions;

    /* The node restarted meanwhile (so it says): refused, not failed. */
    s_confirm(e, SLUICE__V1__JOB_CONFIRM__STATUS__REJECTED, SLUICE__V1__ERROR__CODE__STALE_EPOCH);
    const Sluice__V1__Envelope *again =
        tpeer_wait(s_node, &at, SLUICE__V1__ENVELOPE__BODY_PUBLISH, "ep");
    s_same_jobs(e->publish, again->publish);
    assert_int_equal(again->corr, e->corr);
    /* naming no epoch: the one it knew was refused */
    assert_int_equal(again->publish->node_epoch, 0);
    assert_int_equal(s_counters().sessions, sessions);
    s_confirm(again, SLUICE__V1__JOB_CONFIRM__STATUS__ACCEPTED, 0);
    sl_publish_result_t *res = s_result(&p);
    SL_ASSERT_OK(res->status);
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(res->confirms[i].status, SL_CONFIRM_ACCEPTED);
        assert_int_equal(res->confirms[i].code, SL_CODE_NONE);
        assert_memory_equal(res->confirms[i].id, e->publish->jobs[i]->id.data, SL_ID_LEN);
    }
    sl_publish_result_destroy(&res);

    /* The node's heartbeats now name another epoch: publishes follow. */
    pthread_mutex_lock(&s_node->mu);
    s_node->hb_epoch = 43;
    pthread_mutex_unlock(&s_node->mu);
    TC_WAIT_TRUE(s_counters().epoch == 43);
    p = s_publish("ep", 1);
    e = tpeer_wait(s_node, &at, SLUICE__V1__ENVELOPE__BODY_PUBLISH, "ep");
    assert_int_equal(e->publish->node_epoch, 43);
    s_confirm(e, SLUICE__V1__JOB_CONFIRM__STATUS__ACCEPTED, 0);
    res = s_result(&p);
    SL_ASSERT_OK(res->status);
    sl_publish_result_destroy(&res);
}

/* A refusal of a copy sent under an epoch since left behind does not end
 * the request: the copy sent under the current epoch is answered. */
static void test_client_wire__stale_refusal_of_an_old_copy_is_not_final(void **state)
{
    (void)state;
    s_setup_pair();
    size_t at = 0;
    sl_chan_t *p = s_publish("old", 1);
    const Sluice__V1__Envelope *e =
        tpeer_wait(s_node, &at, SLUICE__V1__ENVELOPE__BODY_PUBLISH, "old");
    assert_int_equal(e->publish->node_epoch, 42);
    /* the node restarts: a new epoch, and the client a new session, which
     * sends the publish again under the new epoch */
    pthread_mutex_lock(&s_node->mu);
    s_node->hb_epoch = 77;
    pthread_mutex_unlock(&s_node->mu);
    const Sluice__V1__Envelope *again;
    do
        again = tpeer_wait(s_node, &at, SLUICE__V1__ENVELOPE__BODY_PUBLISH, "old");
    while (again->publish->node_epoch != 77);
    /* the first copy is refused late: the request stays pending (one more
     * copy, naming no epoch, may go: which copy was refused is not said) */
    s_confirm(e, SLUICE__V1__JOB_CONFIRM__STATUS__REJECTED, SLUICE__V1__ERROR__CODE__STALE_EPOCH);
    void *v = NULL;
    assert_int_equal(sl_take_until(p, &v, sl_deadline_ms(3 * TPEER_HB_MS)), SL_ETIMEDOUT);
    s_confirm(again, SLUICE__V1__JOB_CONFIRM__STATUS__DUPLICATE, 0);
    sl_publish_result_t *res = s_result(&p);
    SL_ASSERT_OK(res->status);
    assert_int_equal(res->confirms[0].status, SL_CONFIRM_DUPLICATE);
    sl_publish_result_destroy(&res);
}

/* --- rejection codes ------------------------------------------------------ */

static void test_client_wire__rejection_code_reaches_the_caller(void **state)
{
    (void)state;
    s_setup_pair();
    size_t at = 0;
    sl_chan_t *p = s_publish("full", 2);
    const Sluice__V1__Envelope *e =
        tpeer_wait(s_node, &at, SLUICE__V1__ENVELOPE__BODY_PUBLISH, "full");
    s_confirm(e, SLUICE__V1__JOB_CONFIRM__STATUS__REJECTED, SLUICE__V1__ERROR__CODE__DRAINING);
    sl_publish_result_t *res = s_result(&p);
    SL_ASSERT_OK(res->status);
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(res->confirms[i].status, SL_CONFIRM_REJECTED);
        assert_int_equal(res->confirms[i].code, SL_CODE_DRAINING);
        assert_int_equal(res->confirms[i].retry_after_ms, 250);
        assert_string_equal(res->confirms[i].reason, "refused for the test");
    }
    sl_publish_result_destroy(&res);
}

/* --- what the client does not know --------------------------------------- */

/* Envelope{corr, <field `kind`>: empty message}, by hand. */
static size_t s_env_raw(uint8_t *buf, uint64_t corr, uint32_t kind)
{
    uint8_t *p = buf;
    p = sl__pb_put_varint(sl__pb_put_tag(p, 1, SL__PB_VARINT), corr);
    p = sl__pb_put_varint(p, (uint64_t)kind << 3 | SL__PB_LEN); /* tag: any field number */
    p = sl__pb_put_varint(p, 0);
    return (size_t)(p - buf);
}

static void test_client_wire__unknown_kinds_and_subscribe_replies_are_ignored(void **state)
{
    (void)state;
    s_setup_pair();
    size_t at = 0;
    sl_chan_t *p = s_publish("new", 1);
    const Sluice__V1__Envelope *e =
        tpeer_wait(s_node, &at, SLUICE__V1__ENVELOPE__BODY_PUBLISH, "new");
    /* a kind from a newer protocol, naming the pending request, and one
     * with no body at all */
    uint8_t raw[32];
    tpeer_send_raw(s_node, raw, s_env_raw(raw, e->corr, 99));
    tpeer_send_raw(s_node, raw, s_env_raw(raw, e->corr, 1000));
    uint8_t corr_only[16], *w = sl__pb_put_tag(corr_only, 1, SL__PB_VARINT);
    w = sl__pb_put_varint(w, e->corr);
    tpeer_send_raw(s_node, corr_only, (size_t)(w - corr_only));
    /* a SubscribeReply (for a Subscribe this client did not send, even) */
    Sluice__V1__SubscribeReply sr = SLUICE__V1__SUBSCRIBE_REPLY__INIT;
    sr.queue = "new";
    sr.subscribed = true;
    sr.credit = 3;
    Sluice__V1__Envelope env = SLUICE__V1__ENVELOPE__INIT;
    env.corr = 5;
    env.body_case = SLUICE__V1__ENVELOPE__BODY_SUBSCRIBE_REPLY;
    env.subscribe_reply = &sr;
    tpeer_send(s_node, &env);
    /* all of it read, none of it an answer or a fault */
    TC_WAIT_TRUE(s_counters().received >= 4);
    void *v = NULL;
    assert_int_equal(sl_take_until(p, &v, sl_deadline_ms(2 * TPEER_HB_MS)), SL_ETIMEDOUT);
    s_confirm(e, SLUICE__V1__JOB_CONFIRM__STATUS__ACCEPTED, 0);
    sl_publish_result_t *res = s_result(&p);
    SL_ASSERT_OK(res->status);
    assert_int_equal(res->confirms[0].status, SL_CONFIRM_ACCEPTED);
    sl_publish_result_destroy(&res);
    sl_client_counters_t k = s_counters();
    assert_int_equal(k.bad_messages, 0);
    assert_int_equal(k.node_errors, 0);
    assert_true(k.connected);
}

/* --- paged STATS ------------------------------------------------------------ */

static void test_client_wire__stats_follow_the_pages_to_the_last(void **state)
{
    (void)state;
    static const char *const names[] = {"a", "b", "c", "d", "e", NULL};
    s_node = tpeer_new(true);
    pthread_mutex_lock(&s_node->mu);
    s_node->stats_names = names;
    s_node->stats_page = 2;
    pthread_mutex_unlock(&s_node->mu);
    sl_client_opts_t o = {.endpoint = s_node->endpoint, .heartbeat_ms = TPEER_HB_MS};
    int err = SL_OK;
    s_client = sl_client_new(&o, &err);
    assert_non_null(s_client);
    sl_queue_stats_t *qs = NULL;
    size_t n = 0;
    SL_ASSERT_OK(sl_client_stats(s_client, NULL, &qs, &n, sl_deadline_ms(tc_patience_ms())));
    assert_int_equal(n, 5);
    for (size_t i = 0; i < n; i++)
        assert_string_equal(qs[i].name, names[i]);
    free(qs);
    /* three pages asked for: after "", "b", "d" */
    static const char *const afters[] = {"", "b", "d"};
    size_t at = 0;
    for (int i = 0; i < 3; i++) {
        const Sluice__V1__Envelope *e =
            tpeer_wait(s_node, &at, SLUICE__V1__ENVELOPE__BODY_ADMIN, "");
        assert_int_equal(e->admin->op, SLUICE__V1__ADMIN__OP__STATS);
        assert_string_equal(e->admin->after, afters[i]);
        assert_true(e->admin->limit > 0);
    }
    assert_int_equal(tpeer_count(s_node, SLUICE__V1__ENVELOPE__BODY_ADMIN), 3);
    /* one queue by name is one question */
    SL_ASSERT_OK(sl_client_stats(s_client, "c", &qs, &n, sl_deadline_ms(tc_patience_ms())));
    free(qs);
    const Sluice__V1__Envelope *e = tpeer_wait(s_node, &at, SLUICE__V1__ENVELOPE__BODY_ADMIN, "");
    assert_string_equal(e->admin->queue, "c");
    assert_string_equal(e->admin->after, "");
}

/* --- the lists that follow proto/sluice.proto ------------------------- */

/* The protobuf type each kind of sluice/stats.h stands for. */
static ProtobufCType s_pb_type(const char *kind)
{
    return strcmp(kind, "U64") == 0    ? PROTOBUF_C_TYPE_UINT64
           : strcmp(kind, "U32") == 0  ? PROTOBUF_C_TYPE_UINT32
           : strcmp(kind, "BOOL") == 0 ? PROTOBUF_C_TYPE_BOOL
           : strcmp(kind, "RATE") == 0 ? PROTOBUF_C_TYPE_DOUBLE
           : strcmp(kind, "TEXT") == 0 ? PROTOBUF_C_TYPE_STRING
                                       : (ProtobufCType)-1;
}

/* Adding a field to QueueStats without a line in SL_QUEUE_STATS_FIELDS (or
 * the other way round, or of another type) fails here. */
static void test_client_wire__stats_list_is_queue_stats(void **state)
{
    (void)state;
    static const struct {
        const char *field, *kind;
    } list[] = {
#define S_ENTRY(field, kind, size, merge, head, help) {#field, #kind},
        SL_QUEUE_STATS_FIELDS(S_ENTRY)
#undef S_ENTRY
    };
    const ProtobufCMessageDescriptor *d = &sluice__v1__queue_stats__descriptor;
    size_t n = sizeof list / sizeof list[0];
    for (size_t i = 0; i < d->n_fields || i < n; i++) {
        if (i >= n)
            fail_msg("QueueStats.%s is not in SL_QUEUE_STATS_FIELDS (sluice/stats.h)",
                     d->fields[i].name);
        if (i >= d->n_fields)
            fail_msg("SL_QUEUE_STATS_FIELDS has %s, QueueStats does not", list[i].field);
        if (strcmp(d->fields[i].name, list[i].field) != 0)
            fail_msg("field %zu: QueueStats.%s, SL_QUEUE_STATS_FIELDS %s", i, d->fields[i].name,
                     list[i].field);
        if (d->fields[i].type != s_pb_type(list[i].kind) ||
            d->fields[i].label == PROTOBUF_C_LABEL_REPEATED)
            fail_msg("QueueStats.%s: SL_QUEUE_STATS_FIELDS says %s", list[i].field,
                     list[i].kind);
    }
}

/* A value for field i of QueueStats, set through its descriptor: all
 * different, none zero. */
static void s_pb_set(Sluice__V1__QueueStats *qs, const ProtobufCFieldDescriptor *f, size_t i,
                     char (*text)[32])
{
    void *at = (char *)qs + f->offset;
    switch (f->type) {
    case PROTOBUF_C_TYPE_UINT64: *(uint64_t *)at = 1000 + i; break;
    case PROTOBUF_C_TYPE_UINT32: *(uint32_t *)at = (uint32_t)(1000 + i); break;
    case PROTOBUF_C_TYPE_BOOL: *(protobuf_c_boolean *)at = 1; break;
    case PROTOBUF_C_TYPE_DOUBLE: *(double *)at = (double)i + 0.5; break;
    case PROTOBUF_C_TYPE_STRING:
        snprintf(text[i], sizeof text[i], "v-%s", f->name);
        *(char **)at = text[i];
        break;
    default: fail_msg("QueueStats.%s: a type this test does not know", f->name);
    }
}

typedef struct {
    sl_queue_stats_t st;
    int rc;
} s_stats_call_t;

static void *s_stats_one(void *arg)
{
    s_stats_call_t *call = arg;
    sl_queue_stats_t *qs = NULL;
    size_t n = 0;
    call->rc = sl_client_stats(s_client, "q", &qs, &n, sl_deadline_ms(tc_patience_ms()));
    if (call->rc == SL_OK && n == 1)
        call->st = qs[0];
    free(qs);
    return NULL;
}

/* The index of QueueStats' field name; what s_pb_set put in it, checked
 * by the field's kind (sluice/stats.h). */
static size_t s_index(const char *name)
{
    const ProtobufCMessageDescriptor *d = &sluice__v1__queue_stats__descriptor;
    const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field_by_name(d, name);
    assert_non_null(f);
    return (size_t)(f - d->fields);
}

static void s_check_U64(const char *field, uint64_t v, size_t i)
{
    if (v != 1000 + i)
        fail_msg("%s: %" PRIu64 ", not %zu", field, v, 1000 + i);
}

static void s_check_U32(const char *field, uint32_t v, size_t i)
{
    s_check_U64(field, v, i);
}

static void s_check_BOOL(const char *field, bool v, size_t i)
{
    (void)i;
    if (!v)
        fail_msg("%s: not copied", field);
}

static void s_check_RATE(const char *field, double v, size_t i)
{
    if (v != (double)i + 0.5)
        fail_msg("%s: %f, not %f", field, v, (double)i + 0.5);
}

static void s_check_TEXT(const char *field, const char *v, size_t i)
{
    (void)i;
    char want[40];
    snprintf(want, sizeof want, "v-%s", field);
    if (strcmp(v, want) != 0)
        fail_msg("%s: '%s', not '%s'", field, v, want);
}

/* Every field a node sends reaches the caller, each into its own field. */
static void test_client_wire__every_stats_field_reaches_the_caller(void **state)
{
    (void)state;
    s_setup_pair();
    const ProtobufCMessageDescriptor *d = &sluice__v1__queue_stats__descriptor;
    Sluice__V1__QueueStats qs = SLUICE__V1__QUEUE_STATS__INIT, *qp = &qs;
    char text[64][32];
    assert_true(d->n_fields <= 64);
    for (size_t i = 0; i < d->n_fields; i++)
        s_pb_set(&qs, &d->fields[i], i, text);

    s_stats_call_t call = {.rc = 1};
    pthread_t th = sl_test_thread(s_stats_one, &call);
    size_t at = 0;
    const Sluice__V1__Envelope *e = tpeer_wait(s_node, &at, SLUICE__V1__ENVELOPE__BODY_ADMIN, "");
    Sluice__V1__AdminReply ar = SLUICE__V1__ADMIN_REPLY__INIT;
    ar.node_id = "peer";
    ar.queues = &qp;
    ar.n_queues = 1;
    Sluice__V1__Envelope out = SLUICE__V1__ENVELOPE__INIT;
    out.corr = e->corr;
    out.body_case = SLUICE__V1__ENVELOPE__BODY_ADMIN_REPLY;
    out.admin_reply = &ar;
    tpeer_send(s_node, &out);
    sl_test_join(th);
    SL_ASSERT_OK(call.rc);

    const sl_queue_stats_t *st = &call.st;
#define S_CHECK(field, kind, size, merge, head, help) \
    s_check_##kind(#field, st->field, s_index(#field));
    SL_QUEUE_STATS_FIELDS(S_CHECK)
#undef S_CHECK
}

/* Adding a code to Error.Code without a line in SL_CODES fails here. */
static void test_client_wire__codes_list_is_error_code(void **state)
{
    (void)state;
    const ProtobufCEnumDescriptor *d = &sluice__v1__error__code__descriptor;
    for (unsigned i = 0; i < d->n_values; i++) {
        const char *want = d->values[i].value == 0 ? "NONE" : d->values[i].name;
        if (strcmp(sl_code_name(d->values[i].value), want) != 0)
            fail_msg("Error.Code %s (%d): sl_code_name says %s", d->values[i].name,
                     d->values[i].value, sl_code_name(d->values[i].value));
    }
    assert_string_equal(sl_code_name(SL_CODE_DRAINING), "DRAINING");
    assert_string_equal(sl_code_name(9999), "UNKNOWN");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(
            test_client_wire__publish_names_the_node_epoch_and_stale_is_sent_again, s_teardown),
        cmocka_unit_test_teardown(test_client_wire__stale_refusal_of_an_old_copy_is_not_final,
                                  s_teardown),
        cmocka_unit_test_teardown(test_client_wire__rejection_code_reaches_the_caller,
                                  s_teardown),
        cmocka_unit_test_teardown(
            test_client_wire__unknown_kinds_and_subscribe_replies_are_ignored, s_teardown),
        cmocka_unit_test_teardown(test_client_wire__stats_follow_the_pages_to_the_last,
                                  s_teardown),
        cmocka_unit_test(test_client_wire__stats_list_is_queue_stats),
        cmocka_unit_test_teardown(test_client_wire__every_stats_field_reaches_the_caller,
                                  s_teardown),
        cmocka_unit_test(test_client_wire__codes_list_is_error_code),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
