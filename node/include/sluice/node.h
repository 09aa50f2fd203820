/* node.h -- a Sluice node: queues of jobs served over ZeroMQ, embeddable
 * in a C program or run as the sluice-node daemon.
 *
 * A node binds one ROUTER endpoint. Producers publish jobs to named queues
 * (created on first use); consumers subscribe with credit and ack or fail
 * each delivered job before its lease expires. See docs/protocol.md for the
 * wire protocol and docs/node.md for operations. Jobs live in memory: a
 * node that stops loses the jobs it holds (it reports how many). */
#ifndef SLUICE_NODE_H
#define SLUICE_NODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sluice/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sl_node sl_node_t;

typedef enum {
    SL_OVERFLOW_BLOCK = 0,    /* publish waits for room (fixed buffer)      */
    SL_OVERFLOW_DROP_NEW,     /* new job rejected "full" (dropping buffer)  */
    SL_OVERFLOW_DROP_OLDEST   /* oldest ready job dropped (sliding buffer)  */
} sl_overflow_t;

/* What happened to a node's cluster membership (docs/architecture.md). */
typedef enum {
    SL_NODE_CLUSTER_JOINED = 1, /* a member epoch was granted or adopted     */
    SL_NODE_CLUSTER_FENCED,     /* the coordinator had declared the node dead
                                   (rejoin): every subscription was dropped
                                   and the node serves under a new epoch     */
    SL_NODE_CLUSTER_REJOINED,   /* the coordinator confirmed the new epoch   */
    SL_NODE_CLUSTER_LOST,       /* no reply for 3 intervals (still serving)  */
    SL_NODE_CLUSTER_FOUND       /* replies again after LOST                  */
} sl_node_cluster_event_t;

typedef struct {
    sl_node_cluster_event_t event;
    uint64_t member_epoch;      /* the epoch from now on                     */
    uint64_t previous_epoch;    /* the one before (0: none)                  */
    uint64_t dropped;           /* FENCED: subscriptions dropped             */
    const char *coordinator;    /* the coordinator endpoint                  */
} sl_node_cluster_info_t;

/* Told of every membership change, on the node's engine: it must return
 * promptly and must not call into the node. info is borrowed for the call. */
typedef void (*sl_node_cluster_fn)(const sl_node_cluster_info_t *info, void *arg);

typedef struct {
    const char *endpoint;       /* bind address; default tcp://127.0.0.1:7450,
                                   port 0 picks a free port                   */
    const char *node_id;        /* default "<hostname>:<pid>"                 */
    int64_t heartbeat_ms;       /* default 1000; peers silent 3x are gone    */
    int64_t lease_ms;           /* default 30000                             */
    uint64_t max_length;        /* jobs held per queue (ready + delayed);
                                   default 100000                            */
    sl_overflow_t overflow;     /* default SL_OVERFLOW_BLOCK                 */
    uint32_t max_attempts;      /* default 5 (a job may override)            */
    int64_t backoff_base_ms;    /* default 100                               */
    int64_t backoff_max_ms;     /* default 30000                             */
    uint64_t max_frame;         /* bytes per envelope, both ways (the node
                                   never sends a larger one); default 1 MiB,
                                   at least 4 KiB                            */
    uint64_t max_job;           /* payload bytes per job; default 256 KiB    */
    uint64_t max_waiting;       /* node-wide publishes waiting under block;
                                   default 100000                            */
    uint64_t max_dead;          /* dead jobs kept per queue; default 10000   */
    uint64_t max_done;          /* ids of acked jobs remembered, so a resent
                                   publish is DUPLICATE; default 100000    */
    uint64_t max_queues;        /* queues held at once; a new name beyond it
                                   is refused (LIMIT); default 100000      */
    const char *queues;         /* per-queue policies, "NAME:key=value,...;
                                   NAME:..." (docs/node.md); NULL = none   */
    int64_t queue_idle_ms;      /* a queue with no jobs, no consumers and no
                                   flags set is forgotten (its counters with
                                   it) after this long; default 60000      */
    /* The cluster (docs/architecture.md). */
    const char *coordinator;    /* coordinator endpoint to connect; NULL (the
                                   default): standalone                      */
    const char *advertise;      /* endpoint clients are told to use; default
                                   the bound endpoint. Required with a
                                   coordinator when endpoint binds a wildcard
                                   address such as tcp://0.0.0.0:7450       */
    uint32_t capacity;          /* relative weight for routing and
                                   assignment; default 100 (0 also means 100)*/
    sl_node_cluster_fn cluster_fn; /* membership changes; NULL = none      */
    void *cluster_arg;
} sl_node_opts_t;

/* Fill opts with the defaults above. */
void sl_node_opts_default(sl_node_opts_t *opts);

/* NULL when the cluster options of opts (coordinator, advertise,
 * capacity) fit together, else a static sentence saying what is wrong.
 * sl_node_new refuses such options with SL_EINVAL. */
const char *sl_node_cluster_opts_check(const sl_node_opts_t *opts);

/* 0 when `queues` (sl_node_opts_t.queues) parses, else -1 with a
 * sentence in why (size bytes) saying what is wrong. */
int sl_node_queues_check(const char *queues, char *why, size_t size);

/* Create a node (not yet serving). Returns NULL and *err (SL_EINVAL for a
 * bad option, SL_ENOMEM) on failure. Caller owns the node. */
sl_node_t *sl_node_new(const sl_node_opts_t *opts, int *err);

/* Bind and start serving. SL_ESYS if the endpoint cannot be bound. */
int sl_node_start(sl_node_t *self);

/* The endpoint actually bound (port resolved); borrowed until destroy. */
const char *sl_node_endpoint(sl_node_t *self);

/* The node's epoch: changes on every start of a node process. */
uint64_t sl_node_epoch(sl_node_t *self);

/* The node's cluster member epoch: granted by the coordinator, 0 while
 * standalone or not yet joined. Safe from any thread. */
uint64_t sl_node_member_epoch(sl_node_t *self);

/* True from a rejoin (the coordinator had declared the node dead, its
 * subscriptions were dropped) until the coordinator confirms the new
 * member epoch. Safe from any thread. */
bool sl_node_fenced(sl_node_t *self);

/* An in-process job, borrowed for the duration of a handler call. */
typedef struct {
    const uint8_t *id;          /* 16 bytes */
    const char *queue;
    const void *payload;
    size_t len;
    uint32_t attempt;
    uint32_t priority;
} sl_node_job_t;

/* Handler result: SL_NODE_ACK, SL_NODE_RETRY (retryable failure) or
 * SL_NODE_FAIL (permanent failure). */
enum { SL_NODE_ACK = 0, SL_NODE_RETRY = 1, SL_NODE_FAIL = 2 };
typedef int (*sl_node_handler_fn)(const sl_node_job_t *job, void *arg);

enum { SL_NODE_BLOCKING = 1 }; /* run the handler on the blocking pool */

/* Serve queue in-process with `concurrency` handlers at once, run as
 * coroutines (or on the blocking pool with SL_NODE_BLOCKING). */
int sl_node_handle(sl_node_t *self, const char *queue, int concurrency,
                   sl_node_handler_fn fn, void *arg, int flags);

/* What a stopping node still held. */
typedef struct {
    uint64_t ready, delayed, in_flight, dead, waiting_publishes;
} sl_node_report_t;

/* Stop gracefully: refuse new publishes, stop new deliveries, wait up to
 * timeout_ms for leased jobs to be acked or failed, then close the socket.
 * *left (may be NULL) gets what remained. SL_ETIMEDOUT if in-flight jobs
 * remained at the deadline (they are reported, not waited for). */
int sl_node_stop(sl_node_t *self, int64_t timeout_ms, sl_node_report_t *left);

/* Internal, for tests and fuzzers: 0 if every queue's counters agree
 * with its lists and the node's totals with its queues, else the source
 * line of the first check that failed. Runs on the engine (waits for it)
 * while the node serves. O(jobs). */
int sl__node_check(sl_node_t *self);

/* Stop (immediately) if running and free everything. Accepts NULL. */
void sl_node_destroy(sl_node_t **self_p);

#ifdef __cplusplus
}
#endif
#endif
