/* coord.h -- the Sluice cluster coordinator, embeddable in a C program or
 * run as the sluice-coordinator daemon.
 *
 * A coordinator binds one ROUTER endpoint. Nodes report NodeStatus every
 * interval and are granted membership epochs; consumers join queues and
 * are told which nodes to serve (Assignment); producers ask where a queue's
 * jobs may go (RouteTable). Its state is soft: a new coordinator rebuilds
 * it from what it hears within a few intervals. See docs/architecture.md
 * for the rules and docs/coordinator.md for operations. */
#ifndef SLUICE_COORD_H
#define SLUICE_COORD_H

#include <stdint.h>

#include "sluice/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sl_coord sl_coord_t;

/* What the coordinator did; handed to opts.on_event on its own thread.
 * Strings are borrowed for the duration of the call (NULL when unused). */
typedef enum {
    SL_COORD_EV_NODE_JOINED,     /* subject granted a first epoch          */
    SL_COORD_EV_NODE_ADOPTED,    /* unknown subject kept its epoch         */
    SL_COORD_EV_NODE_REJOINED,   /* dead or restarted subject: new epoch   */
    SL_COORD_EV_NODE_DEAD,       /* subject silent for 3 of its intervals  */
    SL_COORD_EV_CONSUMER_JOINED, /* subject serves queue                   */
    SL_COORD_EV_CONSUMER_LEFT,   /* subject sent ConsumerLeave             */
    SL_COORD_EV_CONSUMER_EXPIRED,/* subject silent for 3 intervals         */
    SL_COORD_EV_WATCHER_ADDED,   /* subject asked for queue's routes       */
    SL_COORD_EV_WATCHER_EXPIRED, /* subject silent for 3 intervals         */
    SL_COORD_EV_ASSIGNED,        /* subject got a new assignment (epoch)   */
    SL_COORD_EV_ROUTES,          /* queue's table changed (epoch: version) */
    SL_COORD_EV_GRACE_OVER,      /* joins and route requests now answered  */
    SL_COORD_EV_BAD_MESSAGE,     /* detail says what was wrong             */
    SL_COORD_EV_FULL,            /* a limit refused subject                */
} sl_coord_event_type_t;

typedef struct {
    sl_coord_event_type_t type;
    const char *subject;        /* node, consumer or client id          */
    const char *queue;
    uint64_t epoch;
    const char *detail;
} sl_coord_event_t;

typedef void (*sl_coord_event_fn)(void *arg, const sl_coord_event_t *ev);

typedef struct {
    const char *endpoint;       /* bind address; default tcp://127.0.0.1:7440,
                                   port 0 picks a free port                   */
    const char *coord_id;       /* default "<hostname>:<pid>"                 */
    int64_t heartbeat_ms;       /* the coordinator's interval; default 1000   */
    int64_t grace_ms;           /* after start, joins and route requests wait
                                   this long; default -1: 2 intervals         */
    uint64_t max_frame;         /* bytes per envelope; default 1 MiB          */
    uint32_t max_nodes;         /* nodes, dead ones included; default 4096    */
    uint32_t max_consumers;     /* (consumer, queue) pairs; default 4096      */
    uint32_t max_watchers;      /* (client, queue) route watchers; 4096       */
    sl_coord_event_fn on_event; /* may be NULL                                */
    void *event_arg;
} sl_coord_opts_t;

/* Fill opts with the defaults above. */
void sl_coord_opts_default(sl_coord_opts_t *opts);

/* Create a coordinator (not yet serving). Its epoch counter starts at the
 * wall clock in ms shifted left 16 bits. Returns NULL and *err (SL_EINVAL
 * for a bad option, SL_ENOMEM) on failure. Caller owns the coordinator. */
sl_coord_t *sl_coord_new(const sl_coord_opts_t *opts, int *err);

/* Bind and start serving on a thread of its own. SL_ESYS if the endpoint
 * cannot be bound, SL_ESTATE if already started. */
int sl_coord_start(sl_coord_t *self);

/* The endpoint actually bound (port resolved); borrowed until destroy. */
const char *sl_coord_endpoint(sl_coord_t *self);

/* The coordinator's own epoch: the first value of its counter, different
 * (and larger) on every start as long as the clock does not step back. */
uint64_t sl_coord_epoch(sl_coord_t *self);

/* Counters, copied at the end of each round of the coordinator's loop. */
typedef struct {
    uint64_t nodes_alive, nodes_dead, consumers, watchers, queues;
    uint64_t messages;          /* envelopes received                      */
    uint64_t bad_messages;      /* undecodable, oversized or unexpected    */
    uint64_t last_epoch;        /* the latest epoch granted                */
    int grace_over;             /* 1 once joins are answered               */
} sl_coord_stats_t;

/* Copy the counters into *out. Thread-safe. */
void sl_coord_stats(sl_coord_t *self, sl_coord_stats_t *out);

/* Stop serving (if started), close the socket and free everything.
 * Accepts NULL and *self_p NULL; sets *self_p to NULL. */
void sl_coord_destroy(sl_coord_t **self_p);

#ifdef __cplusplus
}
#endif
#endif
