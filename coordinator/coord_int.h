/* coord_int.h -- the coordinator's state, shared by coord.c (lifecycle,
 * socket loop, dispatch) and cluster.c (membership, assignments, routes).
 * Everything here belongs to the coordinator's one thread, except `stats`
 * (under `mu`). */
#ifndef SLUICE_COORD_INT_H
#define SLUICE_COORD_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "sluice/id.h"
#include "sluice/coord.h"
#include "sluice/wire.h"
#include "vec.h"

#define SL__ID_MAX 255          /* node, consumer and client ids, bytes    */
#define SL__ENDPOINT_MAX 1024
#define SL__DEAD_AFTER 3        /* intervals of silence                    */
#define SL__REBALANCE_EVERY 5   /* intervals between backlog recomputations */

/* A node of a consumer's assignment, or a route of a queue's table. */
typedef struct {
    char *node_id, *endpoint;   /* owned (borrowed in scratch copies)      */
    uint64_t epoch;             /* the node's member epoch                 */
    uint32_t share;             /* assignment: 1/1000 of the concurrency   */
    uint64_t depth, in_flight;  /* route: the queue's load there           */
    uint32_t capacity;
} sl__ref_t;

/* A node: ALIVE, or DEAD and kept as a tombstone.
 *
 *   (unknown) --sl__on_node_status--> ALIVE --sl__sweep (3 intervals)--> DEAD
 *                                       ^                                  |
 *                                       '-----sl__on_node_status-----------'
 *                                             (new epoch, rejoin)          */
typedef struct {
    char *id;
    uint64_t incarnation;
    uint64_t epoch;             /* member epoch                            */
    bool alive;
    int64_t last_mono, last_wall;
    int64_t interval_ms;        /* the node's status interval              */
    Sluice__V1__NodeStatus *status; /* the last one, owned; its
                                       member_epoch is ours                */
} sl__cnode_t;

/* A queue the coordinator knows of because it has consumers or watchers. */
typedef struct {
    char *name;
    size_t n_consumers, n_watchers;
    bool reassign;              /* its consumers changed: recompute        */
    uint64_t version;           /* route table version; 0: none yet        */
    int64_t pushed_mono;        /* when the table last changed             */
    sl__ref_t *routes;          /* the table as published, owned          */
    size_t n_routes;
} sl__cqueue_t;

/* What consumers and route watchers share: who, for which queue, and
 * where and when it last spoke. The first field of both, so that one
 * piece of code keeps both tables. */
typedef struct {
    char *id;
    sl__cqueue_t *q;            /* borrowed: lives while it has members    */
    uint8_t rid[SL_WIRE_RID_MAX];   /* its latest routing id               */
    size_t rid_len;
    int64_t last_mono;
} sl__member_t;

/* A consumer of one queue (ConsumerJoin). */
typedef struct {
    sl__member_t m;
    uint32_t concurrency;
    uint64_t epoch;             /* assignment epoch; 0: none yet           */
    sl__ref_t *refs;            /* assigned nodes, owned                   */
    size_t n_refs;
} sl__consumer_t;

/* A producer watching one queue's routes (RouteRequest). */
typedef struct {
    sl__member_t m;
} sl__watcher_t;

/* A routing id some consumer or watcher uses: any envelope from it is a
 * sign of life for all of them. */
typedef struct {
    uint8_t rid[SL_WIRE_RID_MAX];
    size_t rid_len;
    int64_t last_mono;
} sl__peer_t;

struct sl_coord {
    sl_coord_opts_t o;
    char *endpoint, *id;        /* owned                                   */
    uint64_t epoch0;            /* first value of the counter              */
    uint64_t counter;           /* the latest epoch granted or adopted     */
    void *zctx, *router;
    int stop_pipe[2];
    pthread_t thread;
    bool running;

    int64_t start_mono, grace_ms, next_rebalance;
    bool grace_over;
    bool dirty;                 /* membership changed: recompute all      */
    sl__vec_t nodes;            /* sl__cnode_t by id                       */
    sl__vec_t queues;           /* sl__cqueue_t by name                    */
    sl__vec_t consumers;        /* sl__consumer_t by (queue, id)           */
    sl__vec_t watchers;         /* sl__watcher_t by (queue, id)            */
    sl__vec_t peers;            /* sl__peer_t by routing id                */
    uint64_t n_alive, messages, bad_messages;

    pthread_mutex_t mu;
    sl_coord_stats_t stats;     /* under mu                                */
};

/* --- coord.c ------------------------------------------------------------- */

int64_t sl__coord_mono_ms(void);

/* Send env (stays the caller's) to rid; a full or departed peer drops it. */
void sl__coord_send(sl_coord_t *c, const uint8_t *rid, size_t rid_len,
                    const Sluice__V1__Envelope *env);

/* Count a bad message and answer Error{code, text} echoing corr. */
void sl__coord_reject(sl_coord_t *c, const uint8_t *rid, size_t rid_len, uint64_t corr,
                      Sluice__V1__Error__Code code, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

/* Answer Error{FULL} for a limit (not a bad message). */
void sl__coord_full(sl_coord_t *c, const uint8_t *rid, size_t rid_len, uint64_t corr,
                    const char *subject, const char *what);

void sl__coord_event(sl_coord_t *c, sl_coord_event_type_t type, const char *subject,
                     const char *queue, uint64_t epoch, const char *detail);

/* --- cluster.c ----------------------------------------------------------- */

/* The "on receiving" rules of docs/architecture.md. env stays the caller's
 * (sl__on_node_status may take its NodeStatus out of it). */
void sl__on_node_status(sl_coord_t *c, const uint8_t *rid, size_t rid_len,
                        Sluice__V1__Envelope *env);
void sl__on_consumer_join(sl_coord_t *c, const uint8_t *rid, size_t rid_len,
                          const Sluice__V1__Envelope *env);
void sl__on_consumer_leave(sl_coord_t *c, const uint8_t *rid, size_t rid_len,
                           const Sluice__V1__Envelope *env);
void sl__on_route_request(sl_coord_t *c, const uint8_t *rid, size_t rid_len,
                          const Sluice__V1__Envelope *env);
void sl__on_cluster(sl_coord_t *c, const uint8_t *rid, size_t rid_len, uint64_t corr);

/* Any envelope from rid: a sign of life for its consumers and watchers. */
void sl__peer_seen(sl_coord_t *c, const uint8_t *rid, size_t rid_len, int64_t now);

/* Periodic work: grace, dead nodes, expired consumers and watchers,
 * backlog rebalancing, route pushes on load. */
void sl__sweep(sl_coord_t *c, int64_t now);

/* Apply pending recomputations and push what changed. */
void sl__flush(sl_coord_t *c, int64_t now);

/* Free every table. */
void sl__cluster_release(sl_coord_t *c);

#endif
