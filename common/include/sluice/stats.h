/* stats.h -- the one list of a queue's stats: the fields of QueueStats
 * (proto/sluice.proto, the wire contract) as C sees them.
 *
 * SL_QUEUE_STATS_FIELDS generates libsluice's sl_queue_stats_t, its copy
 * from the wire, the cluster client's sum of a queue over its nodes and
 * the columns of `sluice stats`. A new stat is a QueueStats field, a line
 * here (in field-number order: the list must name QueueStats' fields, in
 * order, or client_wire_test fails), the node's fill (node/queue.c) and
 * its row in docs/protocol.md. */
#ifndef SLUICE_STATS_H
#define SLUICE_STATS_H

#include <stdbool.h>
#include <stdint.h>

#include "sluice/name.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SL_QUEUE_POLICY_MAX 255 /* bytes of a policy's text ("key=value,...") */

/* X(field, KIND, size, MERGE, "HEAD", "help")
 *   KIND   U64 (uint64_t), U32 (uint32_t), BOOL (bool), RATE (double) or
 *          TEXT (char[size], NUL-terminated, cut to fit); size is 0 for
 *          all but TEXT
 *   MERGE  a queue over several nodes (cluster mode): SUM, ANY (true if
 *          true on any node) or FIRST (the first node's)
 *   HEAD   its column in `sluice stats`, in list order; "" = no column */
#define SL_QUEUE_STATS_FIELDS(X)                                                             \
    X(name, TEXT, SL_QUEUE_NAME_MAX + 1, FIRST, "QUEUE", "the queue")                         \
    X(depth, U64, 0, SUM, "DEPTH", "ready jobs")                                             \
    X(delayed, U64, 0, SUM, "DELAYED", "jobs waiting for not_before or a retry backoff")     \
    X(in_flight, U64, 0, SUM, "IN-FLIGHT", "jobs leased to consumers")                       \
    X(dead, U64, 0, SUM, "DEAD", "dead jobs kept")                                           \
    X(published, U64, 0, SUM, "PUBLISHED", "jobs accepted since the queue was made")        \
    X(delivered, U64, 0, SUM, "", "deliveries, redeliveries included")                      \
    X(acked, U64, 0, SUM, "ACKED", "acks accepted")                                          \
    X(failed, U64, 0, SUM, "FAILED", "fails accepted")                                       \
    X(retried, U64, 0, SUM, "", "fails that scheduled a retry")                             \
    X(dropped, U64, 0, SUM, "", "jobs dropped by the overflow policy")                      \
    X(expired, U64, 0, SUM, "", "jobs dead because their TTL passed")                       \
    X(consumers, U32, 0, SUM, "CONSUMERS", "subscriptions, remote and in-process")          \
    X(paused, BOOL, 0, ANY, "PAUSED", "deliveries stopped (PAUSE)")                         \
    X(overflow, TEXT, 16, FIRST, "", "block, drop-new or drop-oldest")                      \
    X(capacity, U64, 0, SUM, "", "the queue's max-length")                                   \
    X(publish_rate, RATE, 0, SUM, "PUB/S", "jobs/s accepted over the node's rate window")   \
    X(ack_rate, RATE, 0, SUM, "ACK/S", "jobs/s acked over the same window")                 \
    X(waiting, U64, 0, SUM, "WAITING", "publishes held for room (block), not yet confirmed") \
    X(draining, BOOL, 0, ANY, "DRAINING", "publishes refused (DRAIN) until RESUME")         \
    X(policy, TEXT, SL_QUEUE_POLICY_MAX + 1, FIRST, "", "the queue's policy, every key")

/* The C declaration of one field: SL_QUEUE_STATS_FIELDS(SL_QUEUE_STATS_MEMBER)
 * inside a struct declares them all. */
#define SL_QUEUE_STATS_MEMBER(field, kind, size, merge, head, help) \
    SL_QUEUE_STATS_DECL_##kind(field, size);
#define SL_QUEUE_STATS_DECL_U64(field, size) uint64_t field
#define SL_QUEUE_STATS_DECL_U32(field, size) uint32_t field
#define SL_QUEUE_STATS_DECL_BOOL(field, size) bool field
#define SL_QUEUE_STATS_DECL_RATE(field, size) double field
#define SL_QUEUE_STATS_DECL_TEXT(field, size) char field[size]

#ifdef __cplusplus
}
#endif
#endif
