/* coord_assign_test.c -- the coordinator's pure assignment and route
 * computation (coordinator/assign.h): every node is served, consumers are
 * spread as docs/architecture.md says, shares follow backlog and sum to
 * 1000, the result depends only on the ids and loads (not on input order),
 * and steady or share-only changes do not move anyone. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "assign.h"
#include "sluice/error.h"
#include "testlib.h"

#define MAXN 64

typedef struct {
    sl__anode_t nodes[MAXN];
    const char *cons[MAXN];
    char node_names[MAXN][16], cons_names[MAXN][16];
    size_t nn, nc;
    sl__apair_t pairs[MAXN];
    size_t np;
} s_case_t;

static void s_setup(s_case_t *k, size_t nn, size_t nc)
{
    memset(k, 0, sizeof *k);
    k->nn = nn;
    k->nc = nc;
    for (size_t i = 0; i < nn; i++) {
        snprintf(k->node_names[i], sizeof k->node_names[i], "node-%02zu", i);
        k->nodes[i].id = k->node_names[i];
    }
    for (size_t i = 0; i < nc; i++) {
        snprintf(k->cons_names[i], sizeof k->cons_names[i], "cons-%02zu", i);
        k->cons[i] = k->cons_names[i];
    }
}

static void s_run(s_case_t *k)
{
    SL_ASSERT_OK(sl__assign(k->nodes, k->nn, k->cons, k->nc, k->pairs, &k->np));
    assert_int_equal(k->np, sl__assign_max_pairs(k->nn, k->nc));
}

/* The share consumer c (input index) has on node n, or -1 if unassigned. */
static int s_share(const s_case_t *k, size_t c, size_t n)
{
    for (size_t i = 0; i < k->np; i++)
        if (k->pairs[i].consumer == c && k->pairs[i].node == n)
            return (int)k->pairs[i].share;
    return -1;
}

/* Invariants that hold for any input: each node served, each consumer
 * serving, shares at least 1 and summing to 1000 per consumer, and the
 * shape (one consumer per node, or one node per consumer). */
static void s_check_invariants(const s_case_t *k)
{
    if (k->nn == 0 || k->nc == 0) {
        assert_int_equal(k->np, 0);
        return;
    }
    for (size_t n = 0; n < k->nn; n++) {
        size_t serving = 0;
        for (size_t i = 0; i < k->np; i++)
            serving += k->pairs[i].node == n;
        if (serving == 0)
            fail_msg("node %zu unserved (%zu nodes, %zu consumers)", n, k->nn, k->nc);
        if (k->nc < k->nn)
            assert_int_equal(serving, 1);
    }
    for (size_t c = 0; c < k->nc; c++) {
        unsigned sum = 0, nodes = 0;
        for (size_t i = 0; i < k->np; i++) {
            if (k->pairs[i].consumer != c)
                continue;
            assert_true(k->pairs[i].share >= 1);
            sum += k->pairs[i].share;
            nodes++;
        }
        assert_int_equal(sum, SL__SHARE_TOTAL);
        if (k->nc >= k->nn)
            assert_int_equal(nodes, 1);
    }
}

static void test_coord_assign__fewer_consumers_spread_round_robin(void **state)
{
    (void)state;
    s_case_t k;
    s_setup(&k, 5, 2);
    s_run(&k);
    s_check_invariants(&k);
    /* node i (in id order) goes to consumer i mod 2 */
    for (size_t n = 0; n < 5; n++) {
        assert_true(s_share(&k, n % 2, n) > 0);
        assert_int_equal(s_share(&k, 1 - n % 2, n), -1);
    }
    /* equal backlog: 3 nodes split 334/333/333, 2 nodes 500/500 */
    assert_int_equal(s_share(&k, 0, 0) + s_share(&k, 0, 2) + s_share(&k, 0, 4), 1000);
    assert_true(s_share(&k, 0, 0) >= 333 && s_share(&k, 0, 0) <= 334);
    assert_int_equal(s_share(&k, 1, 1), 500);
    assert_int_equal(s_share(&k, 1, 3), 500);
}

static void test_coord_assign__every_node_served_in_any_shape(void **state)
{
    (void)state;
    uint32_t seed = 12345;
    for (size_t nn = 0; nn <= 12; nn++) {
        for (size_t nc = 0; nc <= 12; nc++) {
            s_case_t k;
            s_setup(&k, nn, nc);
            for (size_t i = 0; i < nn; i++) {
                seed = seed * 1103515245u + 12345u;
                k.nodes[i].depth = (seed >> 8) % 1000;
                k.nodes[i].delayed = (seed >> 4) % 7;
                k.nodes[i].in_flight = (seed >> 12) % 50;
                k.nodes[i].capacity = (seed >> 20) % 3 * 100; /* 0 means 100 */
            }
            s_run(&k);
            s_check_invariants(&k);
        }
    }
}

static void test_coord_assign__deterministic_whatever_the_input_order(void **state)
{
    (void)state;
    s_case_t a, b;
    s_setup(&a, 7, 3);
    for (size_t i = 0; i < 7; i++)
        a.nodes[i].depth = 10 * i + 1;
    s_run(&a);
    /* the same nodes and consumers, reversed */
    s_setup(&b, 7, 3);
    for (size_t i = 0; i < 7; i++) {
        b.nodes[i].id = a.nodes[6 - i].id;
        b.nodes[i].depth = a.nodes[6 - i].depth;
    }
    for (size_t i = 0; i < 3; i++)
        b.cons[i] = a.cons[2 - i];
    s_run(&b);
    for (size_t c = 0; c < 3; c++)
        for (size_t n = 0; n < 7; n++)
            assert_int_equal(s_share(&a, c, n), s_share(&b, 2 - c, 6 - n));
    /* and pairs come ordered by consumer id, then node id */
    for (size_t i = 1; i < b.np; i++) {
        int byc = strcmp(b.cons[b.pairs[i - 1].consumer], b.cons[b.pairs[i].consumer]);
        assert_true(byc < 0 || (byc == 0 && strcmp(b.nodes[b.pairs[i - 1].node].id,
                                                   b.nodes[b.pairs[i].node].id) < 0));
    }
}

static void test_coord_assign__shares_follow_backlog(void **state)
{
    (void)state;
    s_case_t k;
    s_setup(&k, 2, 1);
    k.nodes[0].depth = 200; /* backlog 200 + 99 + 1 = 300 */
    k.nodes[0].delayed = 99;
    k.nodes[1].depth = 99; /* backlog 100 */
    k.nodes[1].in_flight = 5000; /* not backlog for shares */
    s_run(&k);
    assert_int_equal(s_share(&k, 0, 0), 750);
    assert_int_equal(s_share(&k, 0, 1), 250);

    /* an idle node still gets at least one share */
    s_setup(&k, 3, 1);
    k.nodes[0].depth = 1000000000;
    s_run(&k);
    s_check_invariants(&k);
    assert_int_equal(s_share(&k, 0, 1), 1);
    assert_int_equal(s_share(&k, 0, 2), 1);
    assert_int_equal(s_share(&k, 0, 0), 998);

    /* huge backlogs neither overflow nor break the sum */
    s_setup(&k, 3, 1);
    for (size_t i = 0; i < 3; i++)
        k.nodes[i].depth = k.nodes[i].delayed = UINT64_MAX;
    s_run(&k);
    s_check_invariants(&k);
}

static void test_coord_assign__extra_consumers_go_to_heaviest_node(void **state)
{
    (void)state;
    s_case_t k;
    s_setup(&k, 2, 4);
    k.nodes[0].depth = 999; /* weight (999 + 1) x 100 = 100000 */
    s_run(&k);
    s_check_invariants(&k);
    assert_int_equal(s_share(&k, 0, 0), 1000); /* round robin first */
    assert_int_equal(s_share(&k, 1, 1), 1000);
    assert_int_equal(s_share(&k, 2, 0), 1000); /* 100000/1 > 100/1 */
    assert_int_equal(s_share(&k, 3, 0), 1000); /* 100000/2 > 100/1 */

    /* equal backlog: capacity decides; in_flight counts as weight */
    s_setup(&k, 2, 3);
    k.nodes[1].capacity = 300;
    s_run(&k);
    assert_int_equal(s_share(&k, 2, 1), 1000);
    s_setup(&k, 2, 3);
    k.nodes[0].in_flight = 10;
    s_run(&k);
    assert_int_equal(s_share(&k, 2, 0), 1000);

    /* ties go to the first node in id order, and extras spread evenly */
    s_setup(&k, 3, 9);
    s_run(&k);
    for (size_t n = 0; n < 3; n++) {
        size_t serving = 0;
        for (size_t i = 0; i < k.np; i++)
            serving += k.pairs[i].node == n;
        assert_int_equal(serving, 3);
    }
    assert_int_equal(s_share(&k, 3, 0), 1000);
}

static void test_coord_assign__steady_load_does_not_move_anyone(void **state)
{
    (void)state;
    s_case_t a, b;
    s_setup(&a, 6, 4);
    s_setup(&b, 6, 4);
    for (size_t i = 0; i < 6; i++)
        a.nodes[i].depth = b.nodes[i].depth = 100 + i;
    s_run(&a);
    s_run(&b);
    assert_int_equal(a.np, b.np);
    assert_memory_equal(a.pairs, b.pairs, a.np * sizeof a.pairs[0]);

    /* fewer consumers than nodes: backlog changes shares, never nodes */
    s_setup(&b, 6, 4);
    for (size_t i = 0; i < 6; i++)
        b.nodes[i].depth = 100000 * (6 - i);
    s_run(&b);
    for (size_t i = 0; i < a.np; i++) {
        assert_int_equal(a.pairs[i].consumer, b.pairs[i].consumer);
        assert_int_equal(a.pairs[i].node, b.pairs[i].node);
    }
    assert_int_not_equal(s_share(&a, 0, 0), s_share(&b, 0, 0));
}

static void test_coord_assign__routes_list_every_node_by_id(void **state)
{
    (void)state;
    sl__anode_t nodes[3] = {
        {.id = "c", .depth = 5, .delayed = 2, .in_flight = 1, .capacity = 0},
        {.id = "a", .depth = 0, .in_flight = 9, .capacity = 50},
        {.id = "b", .depth = UINT64_MAX, .delayed = 3, .capacity = 7},
    };
    sl__aroute_t r[3];
    SL_ASSERT_OK(sl__routes(nodes, 3, r));
    assert_int_equal(r[0].node, 1);
    assert_int_equal(r[1].node, 2);
    assert_int_equal(r[2].node, 0);
    assert_int_equal(r[2].depth, 7);         /* depth + delayed */
    assert_int_equal(r[2].in_flight, 1);
    assert_int_equal(r[2].capacity, 100);    /* 0 means 100 */
    assert_int_equal(r[0].capacity, 50);
    assert_true(r[1].depth == UINT64_MAX);   /* saturates */
    SL_ASSERT_OK(sl__routes(nodes, 0, r));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_coord_assign__fewer_consumers_spread_round_robin),
        cmocka_unit_test(test_coord_assign__every_node_served_in_any_shape),
        cmocka_unit_test(test_coord_assign__deterministic_whatever_the_input_order),
        cmocka_unit_test(test_coord_assign__shares_follow_backlog),
        cmocka_unit_test(test_coord_assign__extra_consumers_go_to_heaviest_node),
        cmocka_unit_test(test_coord_assign__steady_load_does_not_move_anyone),
        cmocka_unit_test(test_coord_assign__routes_list_every_node_by_id),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
