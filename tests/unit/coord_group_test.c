/* coord_group_test.c -- consumer groups, route tables, the CLUSTER view
 * and the start-up grace, against an embedded coordinator over real
 * DEALER sockets: joins, leaves and silent consumers rebalance the group
 * and push new assignments; a join naming a stale epoch is answered, a
 * current one is not; route tables are pushed at once on membership
 * change and at most once per interval on load change. */
#include "coord_testutil.h"

/* Consumers c1 < c2 over nodes n1 < n2: alone c1 serves both; with c2,
 * c1 serves n1 and c2 serves n2; leaving or going silent gives c1 both
 * again (silence within 3 intervals). */
static void test_coord_group__join_leave_expiry_rebalance(void **state)
{
    (void)state;
    int64_t hb = coord_hb();
    sl_coord_t *c = coord_start(NULL, 0);
    cnode_t *n1 = cnode_new(sl_coord_endpoint(c), "n1", 0);
    cnode_t *n2 = cnode_new(sl_coord_endpoint(c), "n2", 0);
    uint64_t e1 = cnode_epoch(n1), e2 = cnode_epoch(n2);
    cpeer_t *p1 = coord_client(c), *p2 = coord_client(c);
    Sluice__V1__Envelope *env;

    /* wait until both nodes are members: c1's assignment names both */
    coord_join(p1, "c1", "q", 0, 11);
    env = coord_wait_nodes(p1, K_ASSIGNMENT, "n1,n2", coord_patience(), NULL);
    Sluice__V1__Assignment *a = env->assignment;
    assert_string_equal(a->queue, "q");
    assert_int_equal(a->interval_ms, hb);
    assert_int_equal(a->nodes[0]->member_epoch, e1);
    assert_int_equal(a->nodes[1]->member_epoch, e2);
    assert_string_equal(a->nodes[0]->endpoint, "tcp://127.0.0.1:91");
    assert_int_equal(a->nodes[0]->share + a->nodes[1]->share, 1000);
    uint64_t ep1 = a->epoch;
    sl_wire_env_free(&env);

    coord_join(p2, "c2", "q", 0, 12);
    env = coord_wait_nodes(p2, K_ASSIGNMENT, "n2", coord_patience(), NULL);
    assert_int_equal(env->corr, 12); /* the answer to its join */
    sl_wire_env_free(&env);
    env = coord_wait_nodes(p1, K_ASSIGNMENT, "n1", coord_patience(), NULL);
    assert_int_equal(env->corr, 0); /* pushed */
    assert_true(env->assignment->epoch > ep1);
    assert_int_equal(env->assignment->nodes[0]->share, 1000);
    sl_wire_env_free(&env);

    coord_leave(p2, "c2", "q");
    env = coord_wait_nodes(p1, K_ASSIGNMENT, "n1,n2", coord_patience(), NULL);
    sl_wire_env_free(&env);

    coord_join(p2, "c2", "q", 0, 13);
    env = coord_wait_nodes(p1, K_ASSIGNMENT, "n1", coord_patience(), NULL);
    sl_wire_env_free(&env);
    /* c2's process goes away without a word: its socket closes */
    int64_t t0 = sl_now();
    cpeer_destroy(&p2);
    int64_t t1;
    env = coord_wait_nodes(p1, K_ASSIGNMENT, "n1,n2", coord_patience(), &t1);
    sl_wire_env_free(&env);
    double took = coord_ms_between(t0, t1), bound = 3.0 * hb + hb / 2.0 + sl_test_slack_ms();
    /* its last heartbeat was at most hb/3 before t0 */
    if (took < 3.0 * hb - hb / 3.0 - 1 || took > bound)
        fail_msg("silent consumer expired after %.1f ms; expected %.0f..%.0f ms", took,
                 3.0 * hb - hb / 3.0, bound);

    cpeer_destroy(&p1);
    cnode_destroy(&n1);
    cnode_destroy(&n2);
    sl_coord_destroy(&c);
}

static void test_coord_group__stale_join_answered_current_not(void **state)
{
    (void)state;
    int64_t hb = coord_hb();
    sl_coord_t *c = coord_start(NULL, 0);
    cnode_t *n1 = cnode_new(sl_coord_endpoint(c), "n1", 0);
    cnode_epoch(n1);
    cpeer_t *p = coord_client(c);
    coord_join(p, "c1", "q", 0, 21);
    Sluice__V1__Envelope *env = coord_wait_nodes(p, K_ASSIGNMENT, "n1", coord_patience(), NULL);
    uint64_t e = env->assignment->epoch;
    sl_wire_env_free(&env);

    /* a join naming the current epoch, as clients send every interval: no
     * answer, and the assignment does not change */
    for (int i = 0; i < 3; i++) {
        coord_join(p, "c1", "q", e, 22);
        coord_sleep_ms(hb);
    }
    assert_int_equal(cpeer_count(p, K_ASSIGNMENT, 2 * hb), 0);

    /* a stale epoch: answered with the current assignment, corr echoed */
    coord_join(p, "c1", "q", e - 1, 23);
    env = cpeer_recv(p, K_ASSIGNMENT, 23, coord_patience());
    assert_non_null(env);
    assert_int_equal(env->assignment->epoch, e);
    assert_int_equal(env->assignment->n_nodes, 1);
    sl_wire_env_free(&env);

    cpeer_destroy(&p);
    cnode_destroy(&n1);
    sl_coord_destroy(&c);
}

/* A RouteTable answers a stale version only; membership changes push a new
 * one at once; load changes push at most one per interval. */
static void test_coord_group__route_tables_pushed_on_change(void **state)
{
    (void)state;
    int64_t hb = coord_hb();
    sl_coord_t *c = coord_start(NULL, 0);
    cnode_t *n1 = cnode_new(sl_coord_endpoint(c), "n1", 0);
    uint64_t e1 = cnode_epoch(n1);
    cpeer_t *p = coord_client(c);

    coord_route_request(p, "prod", "q", 0, 31);
    Sluice__V1__Envelope *env = cpeer_recv(p, K_ROUTES, 31, coord_patience());
    assert_non_null(env);
    Sluice__V1__RouteTable *t = env->route_table;
    assert_string_equal(t->queue, "q");
    assert_int_equal(t->n_routes, 1);
    assert_string_equal(t->routes[0]->node->node_id, "n1");
    assert_int_equal(t->routes[0]->node->member_epoch, e1);
    assert_int_equal(t->routes[0]->capacity, 100);
    assert_int_equal(t->interval_ms, hb);
    uint64_t v1 = t->version;
    sl_wire_env_free(&env);

    /* the current version is not answered */
    coord_route_request(p, "prod", "q", v1, 32);
    assert_null(cpeer_recv(p, K_ROUTES, 32, 2 * hb));

    /* a node joins: a new table is pushed */
    cnode_t *n2 = cnode_new(sl_coord_endpoint(c), "n2", 0);
    env = coord_wait_nodes(p, K_ROUTES, "n1,n2", coord_patience(), NULL);
    assert_int_equal(env->corr, 0);
    uint64_t v2 = env->route_table->version;
    assert_true(v2 > v1);
    sl_wire_env_free(&env);

    /* load: the table shows it */
    cnode_set_depth(n2, 42);
    int64_t end = sl_deadline_ms(coord_patience());
    for (;;) {
        env = coord_wait_nodes(p, K_ROUTES, "n1,n2", coord_patience(), NULL);
        uint64_t d = env->route_table->routes[1]->depth;
        assert_true(env->route_table->version > v2);
        sl_wire_env_free(&env);
        if (d == 42)
            break;
        if (sl_now() >= end)
            fail_msg("the route table never showed n2's depth 42");
    }

    /* load changing on every status: at most one table per interval */
    cpeer_count(p, K_ROUTES, 0);
    while ((env = cpeer_recv(p, K_ROUTES, 0, 0)))
        sl_wire_env_free(&env);
    int64_t t0 = sl_now(), window = 10 * hb;
    size_t tables = 0;
    for (uint64_t d = 100; sl_now() - t0 < window * 1000000; d++) {
        cnode_set_depth(n1, d);
        env = cpeer_recv(p, K_ROUTES, 0, 1);
        if (env) {
            tables++;
            sl_wire_env_free(&env);
        }
    }
    if (tables < 3 || tables > 11)
        fail_msg("%zu tables in %lld ms of changing load; expected 3..11 (one per interval)",
                 tables, (long long)window);

    cpeer_destroy(&p);
    cnode_destroy(&n1);
    cnode_destroy(&n2);
    sl_coord_destroy(&c);
}

static void test_coord_group__cluster_view(void **state)
{
    (void)state;
    sl_coord_t *c = coord_start(NULL, 0);
    cnode_t *n1 = cnode_new(sl_coord_endpoint(c), "n1", 0);
    cnode_t *n2 = cnode_new(sl_coord_endpoint(c), "n2", 0);
    uint64_t e1 = cnode_epoch(n1), e2 = cnode_epoch(n2);
    cnode_set_depth(n1, 5);
    cpeer_t *p = coord_client(c);
    coord_join(p, "c1", "q", 0, 1);
    Sluice__V1__Envelope *env = coord_wait_nodes(p, K_ASSIGNMENT, "n1,n2", coord_patience(), NULL);
    uint64_t ae = env->assignment->epoch;
    sl_wire_env_free(&env);
    cnode_pause(n2, true);
    int64_t end = sl_deadline_ms(coord_patience());
    Sluice__V1__Envelope *v;
    for (;;) { /* until n2 is dead and n1 has reported its depth */
        v = coord_cluster(p);
        Sluice__V1__ClusterView *cv = v->admin_reply->cluster;
        if (cv->n_nodes == 2 && !cv->nodes[1]->alive && cv->n_consumers == 1 &&
            cv->consumers[0]->n_nodes == 1 && cv->nodes[0]->status->n_queues == 1 &&
            cv->nodes[0]->status->queues[0]->depth == 5)
            break;
        sl_wire_env_free(&v);
        if (sl_now() >= end)
            fail_msg("the CLUSTER view never showed n2 dead");
        coord_sleep_ms(coord_hb() / 2);
    }
    Sluice__V1__AdminReply *r = v->admin_reply;
    Sluice__V1__ClusterView *cv = r->cluster;
    assert_null(r->error);
    assert_string_equal(r->node_id, "coord-under-test");
    assert_int_equal(r->epoch, sl_coord_epoch(c));
    assert_string_equal(cv->coordinator_id, "coord-under-test");
    assert_string_equal(cv->nodes[0]->status->node_id, "n1");
    assert_string_equal(cv->nodes[0]->status->endpoint, "tcp://127.0.0.1:91");
    assert_int_equal(cv->nodes[0]->status->member_epoch, e1);
    assert_true(cv->nodes[0]->alive);
    assert_true(cv->nodes[0]->last_seen_ms > 0);
    assert_string_equal(cv->nodes[1]->status->node_id, "n2");
    assert_int_equal(cv->nodes[1]->status->member_epoch, e2);
    assert_true(cv->nodes[1]->last_seen_ms < cv->nodes[0]->last_seen_ms);
    Sluice__V1__ClusterConsumer *cc = cv->consumers[0];
    assert_string_equal(cc->consumer_id, "c1");
    assert_string_equal(cc->queue, "q");
    assert_int_equal(cc->concurrency, 10);
    assert_true(cc->epoch > ae); /* reassigned when n2 died */
    assert_string_equal(cc->nodes[0]->node_id, "n1");
    assert_int_equal(cc->nodes[0]->member_epoch, e1);
    assert_int_equal(cc->nodes[0]->share, 1000);
    assert_true(cv->epoch >= cc->epoch);
    assert_int_equal(r->bad_messages, 0);
    sl_wire_env_free(&v);

    cpeer_destroy(&p);
    cnode_destroy(&n1);
    cnode_destroy(&n2);
    sl_coord_destroy(&c);
}

/* During the grace nodes are answered at once, joins and route requests
 * only when it ends. */
static void test_coord_group__grace_holds_joins_and_routes(void **state)
{
    (void)state;
    int64_t grace = 6 * coord_hb();
    int64_t t0 = sl_now();
    sl_coord_t *c = coord_start(NULL, grace);
    cpeer_t *p = coord_client(c);
    coord_join(p, "c1", "q", 0, 41);
    coord_route_request(p, "prod", "q", 0, 42);
    cnode_t *n1 = cnode_new(sl_coord_endpoint(c), "n1", 0);
    cnode_epoch(n1);
    double node_ms = coord_ms_between(t0, sl_now());
    if (node_ms >= grace)
        fail_msg("the node was answered only after %.0f ms (grace %lld)", node_ms,
                 (long long)grace);
    int64_t ta, tr;
    Sluice__V1__Envelope *env = coord_wait_nodes(p, K_ASSIGNMENT, "n1", coord_patience(), &ta);
    sl_wire_env_free(&env);
    env = coord_wait_nodes(p, K_ROUTES, "n1", coord_patience(), &tr);
    sl_wire_env_free(&env);
    if (coord_ms_between(t0, ta) < grace || coord_ms_between(t0, tr) < grace)
        fail_msg("answered after %.0f / %.0f ms, within the grace of %lld ms",
                 coord_ms_between(t0, ta), coord_ms_between(t0, tr), (long long)grace);
    sl_coord_stats_t st;
    sl_coord_stats(c, &st);
    assert_true(st.grace_over);
    assert_int_equal(st.consumers, 1);
    assert_int_equal(st.watchers, 1);
    assert_int_equal(st.nodes_alive, 1);
    cpeer_destroy(&p);
    cnode_destroy(&n1);
    sl_coord_destroy(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_coord_group__join_leave_expiry_rebalance),
        cmocka_unit_test(test_coord_group__stale_join_answered_current_not),
        cmocka_unit_test(test_coord_group__route_tables_pushed_on_change),
        cmocka_unit_test(test_coord_group__cluster_view),
        cmocka_unit_test(test_coord_group__grace_holds_joins_and_routes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
