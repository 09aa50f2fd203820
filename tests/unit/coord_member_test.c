/* coord_member_test.c -- node membership against an embedded coordinator
 * over real DEALER sockets: registering grants increasing epochs; a silent
 * node is declared dead within its 3 intervals, leaves the route table and
 * its consumers are reassigned; when it speaks again it is told to rejoin
 * with a new, larger epoch; a restarted coordinator adopts the epochs
 * nodes already hold and grants larger ones after them. */
#include "coord_testutil.h"

static void s_send_status(cpeer_t *p, const char *id, uint64_t incarnation,
                          uint64_t member_epoch, uint64_t corr)
{
    Sluice__V1__NodeStatus st = SLUICE__V1__NODE_STATUS__INIT;
    st.node_id = (char *)id;
    st.incarnation = incarnation;
    st.endpoint = "tcp://127.0.0.1:7450";
    st.member_epoch = member_epoch;
    st.interval_ms = (uint32_t)coord_hb();
    Sluice__V1__Envelope env = SLUICE__V1__ENVELOPE__INIT;
    env.corr = corr;
    env.body_case = SLUICE__V1__ENVELOPE__BODY_NODE_STATUS;
    env.node_status = &st;
    SL_ASSERT_OK(cpeer_send(p, &env));
}

/* Send a status and return its reply (copied out). */
static Sluice__V1__NodeStatusReply s_status(cpeer_t *p, const char *id, uint64_t incarnation,
                                            uint64_t member_epoch)
{
    static uint64_t corr = 100;
    s_send_status(p, id, incarnation, member_epoch, ++corr);
    Sluice__V1__Envelope *env = cpeer_recv(p, K_STATUS_REPLY, corr, coord_patience());
    if (!env)
        fail_msg("no NodeStatusReply for '%s'", id);
    Sluice__V1__NodeStatusReply r = *env->node_status_reply;
    sl_wire_env_free(&env);
    return r;
}

static void test_coord_member__node_registers_and_keeps_its_epoch(void **state)
{
    (void)state;
    sl_coord_t *c = coord_start(NULL, 0);
    cpeer_t *p = cpeer_new(sl_coord_endpoint(c), 0);
    Sluice__V1__NodeStatusReply r = s_status(p, "n1", 7, 0);
    assert_true(r.member_epoch > sl_coord_epoch(c));
    assert_false(r.rejoin);
    assert_int_equal(r.interval_ms, coord_hb());
    uint64_t e = r.member_epoch;
    /* reporting with the epoch: the same, no rejoin */
    r = s_status(p, "n1", 7, e);
    assert_int_equal(r.member_epoch, e);
    assert_false(r.rejoin);
    /* a status that crossed the first reply (still 0): the same epoch */
    r = s_status(p, "n1", 7, 0);
    assert_int_equal(r.member_epoch, e);
    assert_false(r.rejoin);
    /* a node lagging behind on an older epoch is fenced, not re-granted */
    r = s_status(p, "n1", 7, e - 1);
    assert_int_equal(r.member_epoch, e);
    assert_true(r.rejoin);
    /* a restarted node process (new incarnation) gets a new epoch */
    r = s_status(p, "n1", 8, e);
    assert_true(r.member_epoch > e);
    assert_true(r.rejoin);
    cpeer_destroy(&p);
    sl_coord_destroy(&c);
}

static void test_coord_member__two_nodes_get_distinct_increasing_epochs(void **state)
{
    (void)state;
    sl_coord_t *c = coord_start(NULL, 0);
    cnode_t *a = cnode_new(sl_coord_endpoint(c), "n1", 0);
    uint64_t ea = cnode_epoch(a);
    cnode_t *b = cnode_new(sl_coord_endpoint(c), "n2", 0);
    uint64_t eb = cnode_epoch(b);
    assert_true(ea > sl_coord_epoch(c));
    assert_true(eb > ea);
    /* both stay alive and keep their epochs over several intervals */
    coord_sleep_ms(5 * coord_hb());
    assert_int_equal(cnode_epoch(a), ea);
    assert_int_equal(cnode_epoch(b), eb);
    assert_int_equal(cnode_rejoins(a) + cnode_rejoins(b), 0);
    cpeer_t *admin = coord_client(c);
    Sluice__V1__Envelope *v = coord_cluster(admin);
    Sluice__V1__ClusterView *cv = v->admin_reply->cluster;
    assert_int_equal(cv->n_nodes, 2);
    assert_string_equal(cv->nodes[0]->status->node_id, "n1");
    assert_int_equal(cv->nodes[0]->status->member_epoch, ea);
    assert_true(cv->nodes[0]->alive && cv->nodes[1]->alive);
    assert_true(cv->epoch >= eb);
    sl_wire_env_free(&v);
    cpeer_destroy(&admin);
    cnode_destroy(&a);
    cnode_destroy(&b);
    sl_coord_destroy(&c);
}

/* A node silent for 3 intervals is dead: producers get a table without it
 * and its consumer is reassigned, within the bound; CLUSTER keeps it as a
 * tombstone; when it reports again it is told to rejoin with a new epoch,
 * and comes back into routes and assignments under that epoch. */
static void test_coord_member__silent_node_dead_then_rejoins(void **state)
{
    (void)state;
    int64_t hb = coord_hb();
    sl_coord_t *c = coord_start(NULL, 0);
    cnode_t *a = cnode_new(sl_coord_endpoint(c), "n1", 0);
    cnode_t *b = cnode_new(sl_coord_endpoint(c), "n2", 0);
    uint64_t ea = cnode_epoch(a), eb = cnode_epoch(b);
    cpeer_t *prod = coord_client(c), *cons = coord_client(c);
    coord_route_request(prod, "producer", "q", 0, 1);
    coord_join(cons, "consumer", "q", 0, 2);
    Sluice__V1__Envelope *env;
    env = coord_wait_nodes(prod, K_ROUTES, "n1,n2", coord_patience(), NULL);
    sl_wire_env_free(&env);
    env = coord_wait_nodes(cons, K_ASSIGNMENT, "n1,n2", coord_patience(), NULL);
    sl_wire_env_free(&env);

    int64_t t0 = cnode_pause(a, true);
    int64_t t_route, t_assign;
    env = coord_wait_nodes(prod, K_ROUTES, "n2", coord_patience(), &t_route);
    assert_int_equal(env->corr, 0); /* pushed, not asked for */
    assert_int_equal(env->route_table->routes[0]->node->member_epoch, eb);
    sl_wire_env_free(&env);
    env = coord_wait_nodes(cons, K_ASSIGNMENT, "n2", coord_patience(), &t_assign);
    assert_int_equal(env->assignment->nodes[0]->member_epoch, eb);
    assert_int_equal(env->assignment->nodes[0]->share, 1000);
    sl_wire_env_free(&env);
    /* dead after 3 of its intervals of silence, not before, and promptly */
    double bound = 3.0 * hb + hb / 2.0 + sl_test_slack_ms();
    double dr = coord_ms_between(t0, t_route), da = coord_ms_between(t0, t_assign);
    if (dr < 3.0 * hb || dr > bound || da > bound)
        fail_msg("declared dead %.1f ms (routes) / %.1f ms (assignment) after its last "
                 "status; expected %lld..%.0f ms", dr, da, (long long)(3 * hb), bound);

    Sluice__V1__Envelope *v = coord_cluster(prod);
    Sluice__V1__ClusterView *cv = v->admin_reply->cluster;
    assert_int_equal(cv->n_nodes, 2);
    assert_string_equal(cv->nodes[0]->status->node_id, "n1");
    assert_false(cv->nodes[0]->alive); /* kept as a tombstone */
    assert_true(cv->nodes[1]->alive);
    sl_wire_env_free(&v);

    cnode_pause(a, false);
    int64_t end = sl_deadline_ms(coord_patience());
    while (cnode_rejoins(a) == 0 && sl_now() < end)
        coord_sleep_ms(1);
    assert_int_equal(cnode_rejoins(a), 1);
    uint64_t ea2 = cnode_epoch(a);
    assert_true(ea2 > ea);
    assert_true(ea2 > eb);
    env = coord_wait_nodes(prod, K_ROUTES, "n1,n2", coord_patience(), NULL);
    assert_int_equal(env->route_table->routes[0]->node->member_epoch, ea2);
    sl_wire_env_free(&env);
    env = coord_wait_nodes(cons, K_ASSIGNMENT, "n1,n2", coord_patience(), NULL);
    assert_int_equal(env->assignment->nodes[0]->member_epoch, ea2);
    sl_wire_env_free(&env);
    /* rejoined once, and then left alone */
    coord_sleep_ms(4 * hb);
    assert_int_equal(cnode_rejoins(a), 1);
    assert_int_equal(cnode_epoch(a), ea2);

    cpeer_destroy(&prod);
    cpeer_destroy(&cons);
    cnode_destroy(&a);
    cnode_destroy(&b);
    sl_coord_destroy(&c);
}

/* A new coordinator on the same endpoint knows nothing: it adopts the
 * epoch each node reports (no rejoin, nothing disturbed) and grants larger
 * epochs after them, even after one far ahead of its own counter. */
static void test_coord_member__restart_adopts_existing_epochs(void **state)
{
    (void)state;
    sl_coord_t *c = coord_start(NULL, 0);
    char ep[256];
    snprintf(ep, sizeof ep, "%s", sl_coord_endpoint(c));
    cnode_t *a = cnode_new(ep, "n1", 0);
    uint64_t ea = cnode_epoch(a);
    uint64_t first = sl_coord_epoch(c);
    sl_coord_destroy(&c);

    c = coord_start(ep, 0);
    assert_string_equal(sl_coord_endpoint(c), ep);
    assert_true(sl_coord_epoch(c) > first);
    cpeer_t *admin = coord_client(c);
    /* wait until the new coordinator has heard from n1 */
    int64_t end = sl_deadline_ms(coord_patience());
    for (;;) {
        Sluice__V1__Envelope *v = coord_cluster(admin);
        size_t n = v->admin_reply->cluster->n_nodes;
        uint64_t e = n ? v->admin_reply->cluster->nodes[0]->status->member_epoch : 0;
        sl_wire_env_free(&v);
        if (n == 1) {
            assert_int_equal(e, ea);
            break;
        }
        if (sl_now() >= end)
            fail_msg("the restarted coordinator never heard from n1");
        coord_sleep_ms(coord_hb() / 2);
    }
    assert_int_equal(cnode_rejoins(a), 0);
    assert_int_equal(cnode_epoch(a), ea);

    /* a node holding an epoch far ahead of the counter: adopted, and the
     * counter raised above it */
    uint64_t ahead = sl_coord_epoch(c) + (1ull << 40);
    cnode_t *b = cnode_new(ep, "n2", ahead);
    end = sl_deadline_ms(coord_patience());
    while (cnode_epoch(b) != ahead && sl_now() < end)
        coord_sleep_ms(1);
    assert_int_equal(cnode_epoch(b), ahead);
    cnode_t *d = cnode_new(ep, "n3", 0);
    assert_true(cnode_epoch(d) > ahead);
    assert_int_equal(cnode_rejoins(a) + cnode_rejoins(b) + cnode_rejoins(d), 0);

    cpeer_destroy(&admin);
    cnode_destroy(&a);
    cnode_destroy(&b);
    cnode_destroy(&d);
    sl_coord_destroy(&c);
}

/* p's next Assignment or RouteTable (kind) naming `id` at
 * endpoint; fails the test after the patience. Returns its member epoch
 * there. */
static uint64_t s_wait_endpoint(cpeer_t *p, Sluice__V1__Envelope__BodyCase kind, const char *id,
                                const char *endpoint)
{
    int64_t end = sl_deadline_ms(coord_patience());
    for (;;) {
        int64_t left = (end - sl_now()) / 1000000;
        Sluice__V1__Envelope *env = cpeer_recv(p, kind, 0, left > 0 ? left : 0);
        if (env) {
            size_t n = kind == K_ASSIGNMENT ? env->assignment->n_nodes
                                            : env->route_table->n_routes;
            for (size_t i = 0; i < n; i++) {
                const Sluice__V1__NodeRef *r = kind == K_ASSIGNMENT
                                                   ? env->assignment->nodes[i]
                                                   : env->route_table->routes[i]->node;
                if (strcmp(r->node_id, id) == 0 && strcmp(r->endpoint, endpoint) == 0) {
                    uint64_t e = r->member_epoch;
                    sl_wire_env_free(&env);
                    return e;
                }
            }
            sl_wire_env_free(&env);
        }
        if (sl_now() >= end)
            fail_msg("no %s naming '%s' at '%s' within the patience", coord_kind_name(kind), id,
                     endpoint);
    }
}

/* A node restarted under the same id on another address (what a
 * container restart does) is a new incarnation: it gets a new epoch, and
 * routes and assignments name it at its new endpoint, pushed at once. Its
 * address alone changing is followed too. */
static void test_coord_member__restart_on_another_endpoint_is_followed(void **state)
{
    (void)state;
    sl_coord_t *c = coord_start(NULL, 0);
    cnode_t *a = cnode_new(sl_coord_endpoint(c), "n1", 0);
    cnode_t *b = cnode_new(sl_coord_endpoint(c), "n2", 0);
    uint64_t ea = cnode_epoch(a);
    cnode_epoch(b);
    cpeer_t *prod = coord_client(c), *cons = coord_client(c);
    coord_route_request(prod, "producer", "q", 0, 1);
    coord_join(cons, "consumer", "q", 0, 2);
    assert_int_equal(s_wait_endpoint(prod, K_ROUTES, "n1", a->endpoint), ea);
    assert_int_equal(s_wait_endpoint(cons, K_ASSIGNMENT, "n1", a->endpoint), ea);

    /* the same id, a new process on another port, before the old one is
     * declared dead */
    pthread_mutex_lock(&a->mu);
    snprintf(a->endpoint, sizeof a->endpoint, "tcp://127.0.0.1:19101");
    a->incarnation++;
    a->member_epoch = 0;
    pthread_mutex_unlock(&a->mu);
    uint64_t er = s_wait_endpoint(prod, K_ROUTES, "n1", "tcp://127.0.0.1:19101");
    assert_true(er > ea);
    assert_int_equal(s_wait_endpoint(cons, K_ASSIGNMENT, "n1", "tcp://127.0.0.1:19101"), er);
    int64_t end = sl_deadline_ms(coord_patience());
    while (cnode_epoch(a) != er && sl_now() < end)
        coord_sleep_ms(1);
    assert_int_equal(cnode_epoch(a), er);

    /* only the address changes (a node re-advertising itself) */
    pthread_mutex_lock(&a->mu);
    snprintf(a->endpoint, sizeof a->endpoint, "tcp://127.0.0.1:19102");
    pthread_mutex_unlock(&a->mu);
    assert_int_equal(s_wait_endpoint(prod, K_ROUTES, "n1", "tcp://127.0.0.1:19102"), er);
    assert_int_equal(s_wait_endpoint(cons, K_ASSIGNMENT, "n1", "tcp://127.0.0.1:19102"), er);
    Sluice__V1__Envelope *v = coord_cluster(prod);
    Sluice__V1__ClusterView *cv = v->admin_reply->cluster;
    assert_int_equal(cv->n_nodes, 2);
    assert_string_equal(cv->nodes[0]->status->endpoint, "tcp://127.0.0.1:19102");
    assert_true(cv->nodes[0]->alive);
    sl_wire_env_free(&v);

    cpeer_destroy(&prod);
    cpeer_destroy(&cons);
    cnode_destroy(&a);
    cnode_destroy(&b);
    sl_coord_destroy(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_coord_member__node_registers_and_keeps_its_epoch),
        cmocka_unit_test(test_coord_member__two_nodes_get_distinct_increasing_epochs),
        cmocka_unit_test(test_coord_member__silent_node_dead_then_rejoins),
        cmocka_unit_test(test_coord_member__restart_adopts_existing_epochs),
        cmocka_unit_test(test_coord_member__restart_on_another_endpoint_is_followed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
