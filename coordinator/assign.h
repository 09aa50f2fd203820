/* assign.h -- the coordinator's pure computations: which consumers serve
 * which nodes of a queue (with credit shares), and the route table of a
 * queue. No sockets, no clocks, no state: the same input always gives the
 * same output, which is what keeps assignments from churning.
 *
 * The rules are those of docs/architecture.md ("Consumer groups and
 * assignment", "Routing"). */
#ifndef SLUICE_COORD_ASSIGN_H
#define SLUICE_COORD_ASSIGN_H

#include <stddef.h>
#include <stdint.h>

/* A live node as seen by one queue: its id and the queue's load there. */
typedef struct {
    const char *id;             /* node id, borrowed; the sort key       */
    uint64_t depth, delayed, in_flight;
    uint32_t capacity;          /* relative weight; 0 = 100              */
} sl__anode_t;

/* One consumer serving one node, with its share of the consumer's
 * concurrency in 1/1000. Indexes are into the caller's input arrays. */
typedef struct {
    size_t consumer;
    size_t node;
    uint32_t share;
} sl__apair_t;

/* One route of a queue's table. */
typedef struct {
    size_t node;                /* index into the caller's node array    */
    uint64_t depth;             /* depth + delayed                       */
    uint64_t in_flight;
    uint32_t capacity;          /* 0 replaced by 100                     */
} sl__aroute_t;

#define SL__SHARE_TOTAL 1000

/* The pairs needed for n_nodes nodes and n_cons consumers: 0 when either
 * is 0, else the larger of the two. */
size_t sl__assign_max_pairs(size_t n_nodes, size_t n_cons);

/* Assign the consumers cons[0..n_cons) (ids, borrowed) to the nodes
 * nodes[0..n_nodes). Both are taken in the order of their ids (strcmp),
 * whatever order the arrays are in; ids must be unique.
 *
 * - n_cons < n_nodes: the i-th node goes to the (i mod n_cons)-th
 *   consumer. A consumer's shares follow its nodes' backlog (depth +
 *   delayed + 1), each at least 1 (when it has at most 1000 nodes), and
 *   sum to SL__SHARE_TOTAL.
 * - otherwise: the i-th consumer serves the i-th node for i < n_nodes;
 *   each further consumer serves the node with the highest weight per
 *   consumer already serving it, the weight being (depth + delayed +
 *   in_flight + 1) x capacity; ties go to the first node. Shares are all
 *   SL__SHARE_TOTAL.
 *
 * out must hold sl__assign_max_pairs() pairs; *n_out gets how many were
 * written, ordered by consumer id and, within a consumer, by node id.
 * Returns SL_OK or SL_ENOMEM (out unspecified). */
int sl__assign(const sl__anode_t *nodes, size_t n_nodes, const char *const *cons, size_t n_cons,
               sl__apair_t *out, size_t *n_out);

/* The route table of a queue: one route per node, ordered by node id.
 * out must hold n_nodes routes. Returns SL_OK or SL_ENOMEM. */
int sl__routes(const sl__anode_t *nodes, size_t n_nodes, sl__aroute_t *out);

#endif
