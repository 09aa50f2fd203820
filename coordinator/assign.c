/* assign.c -- consumer assignment and route tables for one queue, as pure
 * functions of the live nodes, their loads and the consumers (assign.h). */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>

#include "assign.h"
#include "sluice/error.h"

typedef unsigned __int128 s_u128;

static int s_cmp_node(const void *a, const void *b, void *arg)
{
    const sl__anode_t *nodes = arg;
    return strcmp(nodes[*(const size_t *)a].id, nodes[*(const size_t *)b].id);
}

static int s_cmp_cons(const void *a, const void *b, void *arg)
{
    const char *const *cons = arg;
    return strcmp(cons[*(const size_t *)a], cons[*(const size_t *)b]);
}

/* A new array of the indexes 0..n-1 sorted by cmp; caller frees. */
static size_t *s_order(size_t n, int (*cmp)(const void *, const void *, void *), void *arg)
{
    size_t *ix = malloc((n ? n : 1) * sizeof *ix);
    if (!ix)
        return NULL;
    for (size_t i = 0; i < n; i++)
        ix[i] = i;
    qsort_r(ix, n, sizeof *ix, cmp, arg);
    return ix;
}

static uint32_t s_capacity(const sl__anode_t *n)
{
    return n->capacity ? n->capacity : 100;
}

size_t sl__assign_max_pairs(size_t n_nodes, size_t n_cons)
{
    if (n_nodes == 0 || n_cons == 0)
        return 0;
    return n_nodes > n_cons ? n_nodes : n_cons;
}

/* Split SL__SHARE_TOTAL over pairs p[0..m) of one consumer by the backlog
 * (depth + delayed + 1) of their nodes: proportional parts rounded down,
 * each at least 1 while m <= 1000, and what rounding left over given one
 * each to the largest remainders (ties: the earlier node). */
static int s_split(const sl__anode_t *nodes, sl__apair_t *p, size_t m)
{
    if (m == 1) {
        p[0].share = SL__SHARE_TOTAL;
        return SL_OK;
    }
    uint32_t floor1 = m <= SL__SHARE_TOTAL ? 1 : 0;
    s_u128 rest = SL__SHARE_TOTAL - floor1 * m, sum = 0;
    for (size_t j = 0; j < m; j++)
        sum += (s_u128)nodes[p[j].node].depth + nodes[p[j].node].delayed + 1;
    s_u128 *rem = malloc(m * sizeof *rem);
    if (!rem)
        return SL_ENOMEM;
    uint32_t given = 0;
    for (size_t j = 0; j < m; j++) {
        s_u128 b = (s_u128)nodes[p[j].node].depth + nodes[p[j].node].delayed + 1;
        /* rest <= 1000 and b < 2^65, so rest * b cannot overflow */
        p[j].share = floor1 + (uint32_t)(rest * b / sum);
        rem[j] = rest * b % sum;
        given += p[j].share;
    }
    for (uint32_t left = SL__SHARE_TOTAL - given; left > 0; left--) {
        size_t best = 0;
        for (size_t j = 1; j < m; j++)
            if (rem[j] > rem[best])
                best = j;
        p[best].share++;
        rem[best] = 0; /* each remainder earns at most one extra */
    }
    free(rem);
    return SL_OK;
}

/* Fewer consumers than nodes: node i to consumer i mod C. */
static int s_spread(const sl__anode_t *nodes, size_t nn, const size_t *no, const size_t *co,
                    size_t nc, sl__apair_t *out)
{
    size_t k = 0;
    for (size_t c = 0; c < nc; c++) {
        size_t first = k;
        for (size_t i = c; i < nn; i += nc)
            out[k++] = (sl__apair_t){.consumer = co[c], .node = no[i]};
        int rc = s_split(nodes, &out[first], k - first);
        if (rc != SL_OK)
            return rc;
    }
    return SL_OK;
}

/* At least as many consumers as nodes: one each, extras by weight. */
static int s_fill(const sl__anode_t *nodes, size_t nn, const size_t *no, const size_t *co,
                  size_t nc, sl__apair_t *out)
{
    size_t *count = calloc(nn, sizeof *count);
    if (!count)
        return SL_ENOMEM;
    for (size_t c = 0; c < nc; c++) {
        size_t pick = c; /* position in node order */
        if (c >= nn) {
            pick = 0;
            s_u128 bw = 0, bc = 1;
            for (size_t i = 0; i < nn; i++) {
                const sl__anode_t *n = &nodes[no[i]];
                s_u128 w = ((s_u128)n->depth + n->delayed + n->in_flight + 1) * s_capacity(n);
                /* w / count[i] > bw / bc, without dividing */
                if (i == 0 || w * bc > bw * count[i]) {
                    pick = i;
                    bw = w;
                    bc = count[i];
                }
            }
        }
        count[pick]++;
        out[c] = (sl__apair_t){.consumer = co[c], .node = no[pick], .share = SL__SHARE_TOTAL};
    }
    free(count);
    return SL_OK;
}

int sl__assign(const sl__anode_t *nodes, size_t n_nodes, const char *const *cons, size_t n_cons,
               sl__apair_t *out, size_t *n_out)
{
    *n_out = 0;
    if (n_nodes == 0 || n_cons == 0)
        return SL_OK;
    size_t *no = s_order(n_nodes, s_cmp_node, (void *)nodes);
    size_t *co = s_order(n_cons, s_cmp_cons, (void *)cons);
    int rc = SL_ENOMEM;
    if (no && co) {
        if (n_cons < n_nodes)
            rc = s_spread(nodes, n_nodes, no, co, n_cons, out);
        else
            rc = s_fill(nodes, n_nodes, no, co, n_cons, out);
    }
    if (rc == SL_OK)
        *n_out = sl__assign_max_pairs(n_nodes, n_cons);
    free(no);
    free(co);
    return rc;
}

int sl__routes(const sl__anode_t *nodes, size_t n_nodes, sl__aroute_t *out)
{
    size_t *no = s_order(n_nodes, s_cmp_node, (void *)nodes);
    if (!no)
        return SL_ENOMEM;
    for (size_t i = 0; i < n_nodes; i++) {
        const sl__anode_t *n = &nodes[no[i]];
        uint64_t depth = n->depth + n->delayed;
        if (depth < n->depth) /* saturate rather than wrap */
            depth = UINT64_MAX;
        out[i] = (sl__aroute_t){.node = no[i],
                                .depth = depth,
                                .in_flight = n->in_flight,
                                .capacity = s_capacity(n)};
    }
    free(no);
    return SL_OK;
}
