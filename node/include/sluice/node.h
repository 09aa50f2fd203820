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

/* The node's options: the one list. It generates the fields of
 * sl_node_opts_t, sl_node_opts_default() and sluice-node's option table
 * (--help, flags, environment, config file); docs/node.md's table is
 * checked against that. A new option is a line here and a row there.
 *
 * X(name, field, C type, KIND, default, unit, min, max, env, help)
 *   KIND     STRING (default a string literal, "" = none: NULL in the
 *            struct), INT (a count), SIZE (bytes; unit k, m or g, binary),
 *            MS (milliseconds; unit ms, s, m or h) or ENUM (default an
 *            enum value, its first one; the daemon names the values)
 *   default  with its unit, the value (30, s: 30000 ms) and, written
 *            together ("30s"), the text --help shows
 *   min, max bounds the daemon enforces (both 0: none); sl_node_new
 *            checks only what the node cannot work without */
#define SL_NODE_OPTIONS(X)                                                                       \
    X("endpoint", endpoint, const char *, STRING, "tcp://127.0.0.1:7450", , 0, 0,                \
      "SLUICE_ENDPOINT", "zeromq endpoint to bind (port 0: any free port)")                      \
    X("node-id", node_id, const char *, STRING, "", , 0, 0, "SLUICE_NODE_ID",                    \
      "name in stats and logs (default host:pid)")                                               \
    X("coordinator", coordinator, const char *, STRING, "", , 0, 0, "SLUICE_COORDINATOR",        \
      "coordinator endpoint to join (empty: standalone)")                                        \
    /* required with a coordinator when endpoint binds a wildcard address */                     \
    /* such as tcp://0.0.0.0:7450                                          */                    \
    X("advertise", advertise, const char *, STRING, "", , 0, 0, "SLUICE_ADVERTISE",              \
      "endpoint clients are told to use (default: the bound endpoint)")                          \
    /* 0 in the struct also means 100 */                                                         \
    X("capacity", capacity, uint32_t, INT, 100, , 1, 1000000, "SLUICE_CAPACITY",                 \
      "relative weight of this node for routing and assignment")                                 \
    X("heartbeat", heartbeat_ms, int64_t, MS, 1, s, 10, 600000, "SLUICE_HEARTBEAT",              \
      "heartbeat interval; a peer silent 3 intervals is gone")                                   \
    X("lease", lease_ms, int64_t, MS, 30, s, 10, 86400000, "SLUICE_LEASE",                       \
      "time a consumer holds a job before it is redelivered")                                    \
    X("max-length", max_length, uint64_t, INT, 100000, , 1, 1000000000, "SLUICE_MAX_LENGTH",     \
      "jobs held per queue: ready, delayed and retry-wait (not in flight, not waiting "          \
      "publishes)")                                                                              \
    X("overflow", overflow, sl_overflow_t, ENUM, SL_OVERFLOW_BLOCK, , 0, 0, "SLUICE_OVERFLOW",   \
      "when a queue is full: block publishers, drop-new, drop-oldest")                           \
    X("max-attempts", max_attempts, uint32_t, INT, 5, , 1, 1000000, "SLUICE_MAX_ATTEMPTS",       \
      "deliveries before a failing job is dead (a job may set its own)")                         \
    X("backoff-base", backoff_base_ms, int64_t, MS, 100, ms, 1, 86400000, "SLUICE_BACKOFF_BASE", \
      "first retry delay; doubles per attempt, with jitter")                                     \
    X("backoff-max", backoff_max_ms, int64_t, MS, 30, s, 1, 86400000, "SLUICE_BACKOFF_MAX",      \
      "longest retry delay")                                                                     \
    /* the node never sends a larger envelope either */                                          \
    X("max-frame", max_frame, uint64_t, SIZE, 1, m, 4096, 256 << 20, "SLUICE_MAX_FRAME",         \
      "largest envelope accepted or sent, in bytes")                                             \
    X("max-job", max_job, uint64_t, SIZE, 256, k, 1, 256 << 20, "SLUICE_MAX_JOB",                \
      "largest job payload, in bytes")                                                           \
    X("max-waiting", max_waiting, uint64_t, INT, 100000, , 0, 100000000, "SLUICE_MAX_WAITING",   \
      "publishes held waiting for room (block policy), node-wide")                               \
    X("max-dead", max_dead, uint64_t, INT, 10000, , 0, 100000000, "SLUICE_MAX_DEAD",             \
      "dead jobs kept per queue")                                                                \
    X("max-done", max_done, uint64_t, INT, 100000, , 0, 100000000, "SLUICE_MAX_DONE",            \
      "ids of acked jobs remembered to answer resent publishes DUPLICATE")                       \
    /* "NAME:key=value,...;NAME:..." (docs/node.md, Queue policies) */                           \
    X("queues", queues, const char *, STRING, "", , 0, 0, "SLUICE_QUEUES",                       \
      "per-queue policies: NAME:key=value,...;NAME:... (keys: overflow, max-length, "            \
      "max-attempts, backoff-base, backoff-max, max-dead)")                                      \
    /* retries kept in Redis, so they outlive the node (docs/redis.md) */                        \
    X("redis", redis, const char *, STRING, "", , 0, 0, "SLUICE_REDIS",                          \
      "redis url where retries are kept: redis://[:password@]host:port[/db] or unix:///path "    \
      "(empty: in the node's memory)")                                                           \
    /* a publish or subscribe naming a new queue beyond it is refused (LIMIT) */                 \
    X("max-queues", max_queues, uint64_t, INT, 100000, , 1, 100000000, "SLUICE_MAX_QUEUES",      \
      "queues held at once; a new queue beyond it is refused")                                   \
    /* no jobs in any state, no consumers, not paused or draining: its    */                     \
    /* counters are forgotten with it                                     */                     \
    X("queue-idle", queue_idle_ms, int64_t, MS, 60, s, 0, 86400000, "SLUICE_QUEUE_IDLE",         \
      "an empty queue with no consumers is forgotten after this long")

typedef struct {
#define SL__NODE_OPT_MEMBER(name, field, type, kind, def, unit, min, max, env, help) type field;
    SL_NODE_OPTIONS(SL__NODE_OPT_MEMBER)
#undef SL__NODE_OPT_MEMBER
    sl_node_cluster_fn cluster_fn; /* membership changes; NULL = none      */
    void *cluster_arg;
} sl_node_opts_t;

/* Fill opts with the defaults of SL_NODE_OPTIONS (cluster_fn NULL). */
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
