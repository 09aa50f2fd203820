/* node_dead_test.c -- a queue's dead jobs through Admin: listed oldest
 * first in pages, shown one by one with why they died, requeued with a
 * fresh attempt count (same id, failures and last error kept) and purged,
 * by id, all, or age. */
#include <stdio.h>
#include <string.h>

#include "testlib.h"
#include "node_peer.h"
#include "sluice/wire.h"

static uint64_t s_corr = 5000;

typedef struct {
    Sluice__V1__Admin__Op op;
    const char *after;
    uint32_t limit;
    uint32_t id;        /* node_id_make number, 0: none */
    bool all;
    int64_t older_than_ms;
} s_dead_req_t;

static Sluice__V1__Envelope *s_dead(node_peer_t *p, const char *queue, s_dead_req_t q)
{
    uint8_t id[16];
    Sluice__V1__Admin a = SLUICE__V1__ADMIN__INIT;
    a.op = q.op;
    a.queue = (char *)queue;
    a.after = (char *)(q.after ? q.after : "");
    a.limit = q.limit;
    if (q.id) {
        node_id_make(id, q.id);
        a.id.data = id;
        a.id.len = 16;
    }
    a.all = q.all;
    a.older_than_ms = q.older_than_ms;
    Sluice__V1__Envelope env = SLUICE__V1__ENVELOPE__INIT;
    env.corr = ++s_corr;
    env.body_case = SLUICE__V1__ENVELOPE__BODY_ADMIN;
    env.admin = &a;
    SL_ASSERT_OK(node_peer_send(p, &env));
    Sluice__V1__Envelope *r = node_peer_recv(p, SLUICE__V1__ENVELOPE__BODY_ADMIN_REPLY, s_corr,
                                             node_test_patience());
    assert_non_null(r);
    return r;
}

/* Five jobs that fail for good, in order 1..5. */
static node_peer_t *s_five_dead(void)
{
    sl_node_opts_t o;
    node_test_opts(&o);
    node_fx_start(&o);
    node_peer_t *p = node_fx_peer();
    node_peer_publish_range(p, "q", 1, 5, 0);
    SL_ASSERT_OK(node_peer_subscribe(p, "q", 1));
    for (int i = 0; i < 5; i++) {
        node_dlv_t d;
        assert_int_equal(node_peer_deliveries(p, &d, 1, node_test_patience()), 1);
        char err[32];
        snprintf(err, sizeof err, "bad input %u", d.id);
        node_peer_fail(p, &d, false, err);
        SL_ASSERT_OK(node_peer_credit(p, "q", 1));
    }
    SL_ASSERT_OK(node_peer_unsubscribe(p, "q"));
    Sluice__V1__QueueStats st;
    NODE_WAIT_STATS(p, "q", st, st.dead == 5, node_test_patience());
    return p;
}

static void test_node_dead__list_in_pages_oldest_first(void **state)
{
    (void)state;
    node_peer_t *p = s_five_dead();
    char after[64] = "";
    uint32_t seen = 0;
    for (int page = 0; page < 5; page++) {
        Sluice__V1__Envelope *r =
            s_dead(p, "q", (s_dead_req_t){.op = SLUICE__V1__ADMIN__OP__DEAD_LIST, .after = after,
                                          .limit = 2});
        Sluice__V1__AdminReply *a = r->admin_reply;
        assert_null(a->error);
        assert_true(a->n_dead >= 1 && a->n_dead <= 2);
        for (size_t i = 0; i < a->n_dead; i++) {
            Sluice__V1__JobRecord *rec = a->dead[i];
            seen++;
            assert_int_equal(node_id_num(&rec->id), seen);
            char why[64];
            snprintf(why, sizeof why, "failed: bad input %u", seen);
            assert_string_equal(rec->reason, why);
            assert_string_equal(rec->last_error, why + strlen("failed: "));
            assert_int_equal(rec->attempt, 1);
            assert_int_equal(rec->failures, 1);
            assert_true(rec->last_ms >= rec->first_ms && rec->first_ms > 0);
            assert_true(rec->job.len > 16);
        }
        bool last = !a->next || !a->next[0];
        snprintf(after, sizeof after, "%s", last ? "" : a->next);
        sl_wire_env_free(&r);
        if (last)
            break;
    }
    assert_int_equal(seen, 5);

    /* Show one; an unknown or malformed id is refused. */
    Sluice__V1__Envelope *r =
        s_dead(p, "q", (s_dead_req_t){.op = SLUICE__V1__ADMIN__OP__DEAD_SHOW, .id = 3});
    assert_null(r->admin_reply->error);
    assert_int_equal(r->admin_reply->n_dead, 1);
    assert_int_equal(node_id_num(&r->admin_reply->dead[0]->id), 3);
    sl_wire_env_free(&r);
    r = s_dead(p, "q", (s_dead_req_t){.op = SLUICE__V1__ADMIN__OP__DEAD_SHOW, .id = 99});
    assert_non_null(r->admin_reply->error);
    assert_int_equal(r->admin_reply->error->code, SLUICE__V1__ERROR__CODE__BAD_ID);
    sl_wire_env_free(&r);
}

static void test_node_dead__requeue_and_purge(void **state)
{
    (void)state;
    node_peer_t *p = s_five_dead();
    /* Requeue job 2: delivered again with a fresh attempt count, the
     * same id, its last error kept. */
    Sluice__V1__Envelope *r =
        s_dead(p, "q", (s_dead_req_t){.op = SLUICE__V1__ADMIN__OP__DEAD_REQUEUE, .id = 2});
    assert_null(r->admin_reply->error);
    assert_int_equal(r->admin_reply->affected, 1);
    sl_wire_env_free(&r);
    SL_ASSERT_OK(node_peer_subscribe(p, "q", 1));
    node_dlv_t d;
    assert_int_equal(node_peer_deliveries(p, &d, 1, node_test_patience()), 1);
    assert_int_equal(d.id, 2);
    assert_int_equal(d.attempt, 1);
    assert_string_equal(d.last_error, "bad input 2");
    node_peer_ack(p, &d);
    Sluice__V1__QueueStats st;
    NODE_WAIT_STATS(p, "q", st, st.acked == 1 && st.dead == 4, node_test_patience());

    /* Nothing is older than an hour; everything is older than 0 ms ago
     * minus a little. Neither id, all nor age: refused. */
    r = s_dead(p, "q", (s_dead_req_t){.op = SLUICE__V1__ADMIN__OP__DEAD_PURGE,
                                      .older_than_ms = 3600000});
    assert_int_equal(r->admin_reply->affected, 0);
    sl_wire_env_free(&r);
    r = s_dead(p, "q", (s_dead_req_t){.op = SLUICE__V1__ADMIN__OP__DEAD_PURGE});
    assert_non_null(r->admin_reply->error);
    assert_int_equal(r->admin_reply->error->code, SLUICE__V1__ERROR__CODE__BAD_MESSAGE);
    sl_wire_env_free(&r);
    r = s_dead(p, "q", (s_dead_req_t){.op = SLUICE__V1__ADMIN__OP__DEAD_PURGE, .id = 5});
    assert_int_equal(r->admin_reply->affected, 1);
    sl_wire_env_free(&r);
    /* Requeue all that is left: 1, 3, 4, in the order they died. */
    r = s_dead(p, "q", (s_dead_req_t){.op = SLUICE__V1__ADMIN__OP__DEAD_REQUEUE, .all = true});
    assert_int_equal(r->admin_reply->affected, 3);
    sl_wire_env_free(&r);
    SL_ASSERT_OK(node_peer_credit(p, "q", 3));
    node_dlv_t ds[3];
    assert_int_equal(node_peer_deliveries(p, ds, 3, node_test_patience()), 3);
    assert_int_equal(ds[0].id, 1);
    assert_int_equal(ds[1].id, 3);
    assert_int_equal(ds[2].id, 4);
    node_peer_ack_many(p, ds, 3);
    NODE_WAIT_STATS(p, "q", st, st.acked == 4 && st.dead == 0, node_test_patience());
    /* A purged job's id is free again: published anew, it is accepted. */
    node_job_t j = {.id = 5};
    int status;
    node_peer_publish_ok(p, &j, 1, &status, node_test_patience());
    assert_int_equal(status, SLUICE__V1__JOB_CONFIRM__STATUS__ACCEPTED);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_node_dead__list_in_pages_oldest_first, node_fx_teardown),
        cmocka_unit_test_teardown(test_node_dead__requeue_and_purge, node_fx_teardown),
    };
    return cmocka_run_group_tests_name("node_dead", tests, NULL, NULL);
}
