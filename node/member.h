/* member.h -- the node's side of the cluster (docs/architecture.md): a
 * DEALER to the coordinator on a thread of its own, a NodeStatus every
 * heartbeat, the member epoch and fencing, and per-queue publish and ack
 * rates (which standalone nodes keep too, for admin STATS).
 *
 * The cluster thread only moves frames: statuses the engine built come to
 * it through a small channel and leave with non-blocking sends; replies go
 * to the engine through the node's inbound channel. Membership state is
 * the engine's; the public getters read atomic copies. */
#ifndef SLUICE_NODE_CLUSTER_H
#define SLUICE_NODE_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sluice.pb-c.h"
#include "sluice/node.h"

struct sl__node;
struct sl__queue;

#define SL__RATE_SAMPLES 8        /* counters kept per queue, one per tick  */
#define SL__RATE_WINDOW_MS 5000   /* rates look back at most this far       */

/* A queue's counters sampled every heartbeat (a ring); embedded in the
 * queue, touched only by the engine. */
typedef struct {
    int64_t at[SL__RATE_SAMPLES];        /* monotonic ms; 0 = empty slot    */
    uint64_t published[SL__RATE_SAMPLES];
    uint64_t acked[SL__RATE_SAMPLES];
    unsigned next;                       /* slot the next sample goes to    */
} sl__rates_t;

typedef struct sl__cluster sl__member_t;

/* Make the cluster state for a node with options o (checked by
 * sl_node_cluster_opts_check). NULL when out of memory. Caller owns. */
sl__member_t *sl__member_new(const sl_node_opts_t *o);

/* Start the DEALER thread when a coordinator is set; call once the node's
 * endpoint is bound (it is the default advertised endpoint). SL_OK,
 * SL_ESYS, SL_ENOMEM. */
int sl__member_start(struct sl__node *n);

/* Stop the thread and close the socket (before the ZeroMQ context is
 * terminated). Harmless when not started or already stopped. */
void sl__member_stop(struct sl__node *n);

/* Stop if needed, then free. Accepts NULL and *self_p NULL. */
void sl__member_destroy(sl__member_t **self_p);

/* --- on the engine ----------------------------------------------------- */

/* Once per heartbeat: post a NodeStatus (coordinator set), sample every
 * queue's counters for the rates, notice a silent coordinator. */
void sl__member_tick(struct sl__node *n);

/* A message from the coordinator (env stays the caller's): adopts the
 * member epoch; fences on rejoin. */
void sl__member_reply(struct sl__node *n, const Sluice__V1__Envelope *env);

/* False when Subscribe s names another member epoch than the node's: it
 * has been answered Error{STALE_EPOCH} (echoing corr) and must not be
 * subscribed. */
bool sl__member_subscribe_ok(struct sl__node *n, const uint8_t *rid, size_t rid_len,
                              uint64_t corr, const Sluice__V1__Subscribe *s);

/* A new queue's rates start from zero counters at `now` (monotonic ms). */
void sl__rates_init(sl__rates_t *r, int64_t now);

/* Jobs/s published and acked over the rate window, as of now. */
void sl__rates_get(const struct sl__queue *q, int64_t heartbeat_ms, double *publish_rate,
                   double *ack_rate);

#endif
