/* cluster_int.h -- libsluice in cluster mode: the objects shared by
 * cluster.c (the cluster thread, the coordinator, nodes, counters),
 * route.c (route tables and publishes) and csub.c (consumer groups).
 *
 * Threads: the cluster thread owns everything below not marked otherwise.
 * Users, and the taps of the inner clients (on their I/O threads), talk to
 * it only through `evs`, a channel of events: each value starts with an
 * sl__ev_t header naming its kind. A part's completion comes as the part
 * itself (its header first), put there by the node client's request table
 * (sl__req_t.notify). */
#ifndef SLUICE_CLUSTER_INT_H
#define SLUICE_CLUSTER_INT_H

#include "client_int.h"

#define SL__CLUSTER_TICK_MS 50     /* health checks and deadlines           */
#define SL__CLUSTER_EVS_CAP (1u << 24) /* unbounded in practice: a fixed
                                   buffer allocates only what it holds      */
#define SL__CLUSTER_GONE_INTERVALS 3

enum {
    SL__EV_ENV = 1, /* an envelope from the coordinator or a node (tap)       */
    SL__EV_PART,    /* a part's request was answered                         */
    SL__EV_PUB,     /* a user's publish                                      */
    SL__EV_SUB,     /* a user's subscribe or consume                         */
    SL__EV_UNSUB,   /* a user's unsubscribe                                  */
    SL__EV_STOP     /* destroy                                               */
};

typedef struct {
    int kind;
} sl__ev_t;

typedef struct sl__cnode sl__cnode_t;
typedef struct sl__ctable sl__ctable_t;
typedef struct sl__cpub sl__cpub_t;
typedef struct sl__part sl__part_t;
typedef struct sl__csub sl__csub_t;

/* EV_ENV: a copy of what a tap saw. */
typedef struct {
    sl__ev_t hdr;
    sl__cnode_t *node;          /* NULL: from the coordinator               */
    Sluice__V1__Envelope *env;  /* owned (sl_wire_env_free)                 */
} sl__ev_env_t;

/* EV_SUB and EV_UNSUB: a user's call, answered on `reply`. */
typedef struct {
    sl__ev_t hdr;
    char queue[SL_QUEUE_NAME_MAX + 1];
    uint32_t window;
    uint32_t prefetch;          /* SUB, consume                             */
    sl_chan_t *out;             /* SUB, subscribe: a reference; else NULL   */
    sl_handler_fn fn;
    void *arg;
    int flags;
    sl_chan_t *reply;           /* promise (one reference): int status for
                                   SUB, sl__unsub_reply_t * for UNSUB       */
} sl__ev_call_t;

typedef struct {
    int status;
    sl_chan_t **dones;          /* node unsubscribe promises to wait for    */
    size_t n;
} sl__unsub_reply_t;

/* A node known from a route table or an assignment. Never freed before the
 * cluster: the list only grows (under the cluster's lock, read by
 * sl_client_counters). */
struct sl__cnode {
    sl__cluster_t *cl;
    char *id;
    char *endpoint;
    uint64_t member_epoch;
    sl_client_t *client;        /* made when first needed; NULL before      */
    bool bad;                   /* the client could not be made             */
    bool gone;                  /* not answering for 3 of its intervals     */
    bool drop_queued;           /* parts given up here: discard what its
                                   connection still queues (route.c)        */
    bool leaving;               /* refused jobs as shutting down: none go
                                   there while its epoch is leaving_epoch   */
    uint64_t leaving_epoch;
    int64_t last_ok;            /* monotonic ns: last seen answering        */
    sl__cnode_t *next;
};

typedef struct {
    sl__cnode_t *node;
    uint64_t depth, in_flight;
    uint32_t capacity;          /* 0 reported: 100                          */
    uint64_t sent;              /* jobs we sent there since the table came  */
} sl__route_t;

/* The route table of one queue we publish to. */
struct sl__ctable {
    char queue[SL_QUEUE_NAME_MAX + 1];
    uint64_t version;
    sl__route_t *routes;        /* the last non-empty table                 */
    size_t n;
    uint32_t rr;                /* rotates ties                             */
    sl__ctable_t *next;
};

/* A user's publish, until every job is confirmed or it fails. */
struct sl__cpub {
    sl__ev_t hdr;               /* EV_PUB                                   */
    sl_chan_t *promise;         /* one reference: the user's result         */
    int64_t deadline;
    Sluice__V1__Envelope *env;  /* owned: the Publish, ids filled in        */
    char **keys;                /* routing key per job (NULL: none); owned  */
    sl_publish_result_t *res;   /* confirms gathered; given to the user     */
    size_t left;                /* jobs not yet confirmed                   */
    size_t *waiting;            /* jobs with no node yet                    */
    size_t nwaiting;
    sl__cpub_t *prev, *next;    /* the cluster's publishes                  */
};

/* Some jobs of a publish sent to one node, awaiting its confirm. */
struct sl__part {
    sl__ev_t hdr;               /* EV_PART: the notify tag                  */
    sl__cpub_t *pub;            /* NULL once given up (failover, done)      */
    sl__cnode_t *node;
    sl__ctable_t *table;        /* of the jobs' queue                       */
    size_t *idx;                /* job indices in pub                       */
    size_t k;
    sl_chan_t *promise;         /* the node client's result                 */
    uint64_t corr;
    sl__part_t *prev, *next;    /* every part whose answer is still due     */
};

struct sl__cluster {
    sl_client_t *self;          /* the user's client                        */
    char *id;                   /* consumer and client id                   */
    char *coordinator;
    sl_client_opts_t node_opts; /* for node clients (endpoint per node)     */
    sl_client_t *coord;         /* inner client to the coordinator          */
    sl_chan_t *evs;             /* events to the thread                     */
    sl__ev_t stop_ev;
    pthread_t thread;

    pthread_mutex_t lock;       /* guards the linkage of nodes              */
    sl__cnode_t *nodes;

    /* thread */
    int interval_ms;            /* the coordinator's, else heartbeat_ms     */
    int64_t next_announce;
    sl__ctable_t *tables;
    sl__cpub_t *pubs;
    sl__part_t *parts;
    sl__csub_t *subs;
    bool stopping;

    struct {
        _Atomic uint32_t nodes, nodes_up, routes, assigned;
        _Atomic uint64_t assignment_epoch, route_tables, assignments, unrouted, failovers,
            republished, stale_epochs;
    } ctr;
};

/* cluster.c */
sl__cnode_t *sl__cluster_node(sl__cluster_t *cl, const char *id, const char *endpoint,
                              uint64_t member_epoch);
/* The node's client, made on first use; NULL if it cannot be made. */
sl_client_t *sl__cluster_node_client(sl__cluster_t *cl, sl__cnode_t *n);
int sl__cluster_send(sl__cluster_t *cl, Sluice__V1__Envelope *env);
void sl__cluster_note_interval(sl__cluster_t *cl, uint32_t interval_ms);

/* route.c */
void sl__route_on_table(sl__cluster_t *cl, const Sluice__V1__RouteTable *rt);
void sl__route_on_pub(sl__cluster_t *cl, sl__cpub_t *p);
void sl__route_on_part(sl__cluster_t *cl, sl__part_t *part);
/* Failovers off removed or gone nodes; deadlines of waiting publishes. */
void sl__route_tick(sl__cluster_t *cl, int64_t now);
void sl__route_announce(sl__cluster_t *cl);
void sl__route_stop(sl__cluster_t *cl);
/* Free a publish and its promise reference; accepts NULL. */
void sl__cpub_free(sl__cpub_t **p_p);
void sl__route_release(sl__cluster_t *cl);

/* csub.c */
void sl__csub_on_assignment(sl__cluster_t *cl, const Sluice__V1__Assignment *a);
void sl__csub_on_stale(sl__cluster_t *cl, sl__cnode_t *n);
void sl__csub_on_sub(sl__cluster_t *cl, sl__ev_call_t *call);
void sl__csub_on_unsub(sl__cluster_t *cl, sl__ev_call_t *call);
void sl__csub_announce(sl__cluster_t *cl);
void sl__csub_stop(sl__cluster_t *cl);
void sl__csub_release(sl__cluster_t *cl);

#endif
