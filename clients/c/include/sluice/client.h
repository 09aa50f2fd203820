/* client.h -- libsluice: publish to, consume from and administer Sluice
 * queues on a node, over the wire protocol of docs/protocol.md.
 *
 * One sl_client_t is one connection (a ZeroMQ DEALER) to one node, served
 * by one I/O thread the client owns -- or, made with a coordinator, a
 * cluster client that finds nodes through sluice-coordinator and keeps one
 * such connection per node it publishes to or consumes from (see "Cluster
 * mode" in docs/client.md). Every call below is thread-safe and
 * may be made from plain threads, sl_go coroutines (waits park the
 * coroutine) or sl_thread tasks. Asynchronous results arrive on sluice/chan
 * channels. Deadlines are absolute CLOCK_MONOTONIC nanoseconds, as in
 * chan.h: sl_deadline_ms(ms) for "ms from now", SL_FOREVER for no limit.
 * The library never logs: it returns SL_E* codes (sluice/error.h) and
 * exposes counters (sl_client_counters). See docs/client.md. */
#ifndef SLUICE_CLIENT_H
#define SLUICE_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sluice/chan.h"
#include "sluice/error.h"
#include "sluice/id.h"
#include "sluice/name.h" /* SL_QUEUE_NAME_MAX, the queue name rule */
#include "sluice/stats.h" /* SL_QUEUE_STATS_FIELDS: sl_queue_stats_t */

#ifdef __cplusplus
extern "C" {
#endif

#define SL_CLIENT_ENDPOINT_DEFAULT "tcp://127.0.0.1:7450"

typedef struct sl_client sl_client_t;

/* --- Lifecycle ------------------------------------------------------- */

typedef struct {
    const char *endpoint;     /* node to connect to; NULL = the default    */
    int heartbeat_ms;         /* 0 = 1000. The client sends at the smaller
                                 of this and the node's announced interval,
                                 and declares the node gone after 3 of the
                                 node's intervals of silence              */
    int resend_ms;            /* 0 = resend unconfirmed requests only after
                                 a reconnect or a node restart (right for a
                                 `block` queue, whose confirms are late by
                                 design); > 0 = also after this long
                                 without an answer                         */
    size_t max_frame;         /* largest envelope sent or accepted; 0 =
                                 1 MiB (the node's default). Larger outgoing
                                 requests fail with SL_ETOOBIG             */
    const char *consumer_id;  /* name sent in Subscribe, shown in stats;
                                 NULL = none. Cluster mode: the consumer
                                 and client id the coordinator knows us by
                                 (unique per client); NULL =
                                 "<hostname>:<pid>:<random hex>"           */
    int linger_ms;            /* on destroy, how long unsent messages may
                                 still go out while the node is reachable;
                                 0 = 1000, < 0 = none                      */
    const char *coordinator;  /* cluster mode: the sluice-coordinator's
                                 endpoint. When set, endpoint is ignored:
                                 producers are routed and consumers
                                 assigned to nodes by the coordinator.
                                 NULL = one node, at endpoint              */
} sl_client_opts_t;

/* Create a client for opts->endpoint (NULL opts: all defaults) and start
 * its I/O thread; with opts->coordinator, a cluster client (its thread
 * talks to the coordinator; node connections are made as routes and
 * assignments name them). Connecting is asynchronous: requests made before the
 * node answers are queued and sent when it does; sl_client_wait_connected
 * waits for that. Returns the client (caller owns; sl_client_destroy), or
 * NULL with *err (may be NULL) set to SL_EINVAL (bad endpoint or option),
 * SL_ENOMEM or SL_ESYS. */
sl_client_t *sl_client_new(const sl_client_opts_t *opts, int *err);

/* Stop the client and free it; accepts NULL and sets *self_p to NULL.
 * Unsubscribes every queue, waits for running sl_client_consume handlers
 * to return (their acks are sent), answers every pending request with
 * SL_ECLOSED, then closes the connection. Deliveries taken from an
 * sl_client_subscribe channel must be acked or failed before this call;
 * using one afterwards is undefined. Must not be called from a handler. */
void sl_client_destroy(sl_client_t **self_p);

/* Wait until the node has answered in the current session (any message
 * counts); in cluster mode, until the coordinator has. SL_OK, SL_ETIMEDOUT
 * at deadline, SL_ECLOSED if destroyed. */
int sl_client_wait_connected(sl_client_t *self, int64_t deadline);

/* Counters and connection state; a consistent-enough snapshot (each field
 * is read atomically). In cluster mode `connected`, `linked` and `epoch`
 * are the coordinator's, the other counters are summed over the node
 * connections and the coordinator's, and the cluster fields are set. */
typedef struct {
    bool connected;          /* the node answered and has not been silent
                                for 3 intervals since                      */
    bool linked;             /* a TCP connection to the endpoint is up
                                (the node may not have spoken yet)         */
    uint64_t epoch;          /* the node's incarnation; 0 = not known yet  */
    uint64_t sessions;       /* sessions started: 1 + reconnects + node
                                restarts seen                              */
    uint64_t sent;           /* envelopes sent (heartbeats included)       */
    uint64_t received;       /* envelopes received                         */
    uint64_t resent;         /* requests sent again (new session or
                                resend_ms)                                 */
    uint64_t pending;        /* requests awaiting an answer                */
    uint64_t delivered;      /* jobs delivered to this client              */
    uint64_t stale_leases;   /* acks, fails and touches the node refused   */
    uint64_t node_errors;    /* Error envelopes received                   */
    uint64_t bad_messages;   /* undecodable or oversized envelopes dropped */
    /* cluster mode only (0 otherwise): */
    uint32_t nodes;          /* nodes this client has a connection to      */
    uint32_t nodes_up;       /* ... of which answering now                 */
    uint32_t routes;         /* routes in the route tables held, all queues */
    uint32_t assigned;       /* nodes in the assignments held, all queues  */
    uint64_t assignment_epoch; /* newest assignment epoch applied          */
    uint64_t route_tables;   /* route tables applied                       */
    uint64_t assignments;    /* assignments applied                        */
    uint64_t unrouted;       /* publishes waiting for a route now          */
    uint64_t failovers;      /* publishes moved off a node that left the
                                route table, went silent or refused them
                                as shutting down                           */
    uint64_t republished;    /* jobs those failovers sent again elsewhere  */
    uint64_t stale_epochs;   /* subscriptions a node refused with
                                STALE_EPOCH (each asks the coordinator
                                again)                                     */
} sl_client_counters_t;
void sl_client_counters(sl_client_t *self, sl_client_counters_t *out);

/* --- Producing ------------------------------------------------------- */

typedef struct {
    const char *key;
    const char *value;
} sl_header_t;

/* A job to publish. Everything is borrowed for the duration of the call
 * (the library encodes it before returning). Zero fields mean "none" or
 * "the queue's default". */
typedef struct {
    const char *queue;            /* required, 1..128 of [A-Za-z0-9._:-]  */
    const void *payload;          /* may be NULL when payload_len is 0    */
    size_t payload_len;
    uint8_t id[SL_ID_LEN];    /* all zero: the library picks a fresh
                                     id, reported in the confirm          */
    uint32_t priority;            /* 0 (lowest) .. 9                      */
    int64_t delay_ms;             /* > 0: not delivered before now+delay  */
    int64_t ttl_ms;               /* > 0: dead ("expired") if not done by
                                     now+ttl (counted from publish)       */
    uint32_t max_attempts;        /* 0 = the queue's default              */
    const char *idempotency_key;  /* NULL/"" = none; a second publish
                                     with the same key is DUPLICATE       */
    const char *breaker_key;      /* NULL/"" = none                       */
    const sl_header_t *headers;
    size_t n_headers;
    const char *routing_key;      /* cluster mode: jobs with the same key
                                     go to the same node (rendezvous
                                     hashing over node ids), so they keep
                                     their order; NULL/"" = least loaded.
                                     Not sent                             */
} sl_job_t;

typedef enum {
    SL_CONFIRM_ACCEPTED = 0,  /* stored                                    */
    SL_CONFIRM_DUPLICATE = 1, /* same id or idempotency key already held or
                                 recently done; after a resend, also "an
                                 earlier send of this very job was stored" */
    SL_CONFIRM_REJECTED = 2   /* not stored: see reason, retry_after_ms    */
} sl_confirm_status_t;

/* Why a node refused something, as a code: its Error.Code (see
 * proto/sluice.proto), in sl_confirm_t.code and sl_admin_reply_t.node_code.
 * A node may send codes newer than this list. One list, X(name, value,
 * when), value for value Error.Code's, generates the enum and
 * sl_code_name() (client_wire_test holds it to Error.Code). */
#define SL_CODES(X)                                                              \
    X(NONE, 0, "no code given (Error.Code UNKNOWN)")                             \
    X(BAD_MESSAGE, 1, "undecodable, oversized or missing fields")                \
    X(UNKNOWN_KIND, 2, "an envelope with no body the node knows")                \
    X(BAD_QUEUE, 3, "invalid queue name, or no such queue")                      \
    X(BAD_ID, 4, "job id not 16 bytes")                                          \
    X(STALE_LEASE, 5, "lease unknown, expired or superseded")                    \
    X(NOT_SUBSCRIBED, 6, "not subscribed to the queue")                          \
    X(FULL, 7, "queue full (drop-new) or node at limit")                         \
    X(PAUSED, 8, "reserved: never sent")                                         \
    X(SHUTTING_DOWN, 9, "the node is shutting down")                             \
    X(STALE_EPOCH, 10, "meant for another incarnation of the node")              \
    X(DRAINING, 11, "queue draining: publishes refused")                         \
    X(LIMIT, 12, "a node limit (max-queues, max-waiting, memory)")               \
    X(OVERLOADED, 13, "the peer did not read its replies")

typedef enum {
#define SL__CODE_ENUM(name, value, when) SL_CODE_##name = (value),
    SL_CODES(SL__CODE_ENUM)
#undef SL__CODE_ENUM
} sl_code_t;

/* The name of a code ("FULL" for SL_CODE_FULL, as in Error.Code but
 * "NONE" for 0); "UNKNOWN" for a code newer than this list. Never NULL,
 * static storage. */
const char *sl_code_name(int code);

typedef struct {
    uint8_t id[SL_ID_LEN];
    sl_confirm_status_t status;
    uint32_t retry_after_ms;      /* REJECTED: retry after this, if > 0   */
    char reason[128];             /* REJECTED: why (truncated), else ""   */
    int code;                     /* REJECTED: why, as an sl_code_t
                                     (SL_CODE_FULL, SL_CODE_DRAINING, ...);
                                     SL_CODE_NONE if the node gave none.
                                     Never SL_CODE_STALE_EPOCH (the client
                                     sends such a job again itself), nor in
                                     cluster mode SL_CODE_SHUTTING_DOWN (the
                                     job goes to another node)             */
} sl_confirm_t;

/* Publish n jobs (n >= 1) in one request and wait for the node's confirm
 * of each, in order, into confirms[0..n-1] (caller's array). In cluster
 * mode the jobs go to the nodes the route tables pick (one request per
 * node); a job whose node leaves the table, goes silent for 3 of its
 * intervals or refuses it as shutting down is sent again, same id, to
 * another route, and its confirm is the one from wherever it landed; with
 * no route yet the call waits for one until deadline (SL_ETIMEDOUT). A job
 * that is not confirmed when the connection is re-established or the node
 * restarts is sent again with the same id (the node deduplicates). Each
 * publish names the node epoch last heard; a node that refuses it as meant
 * for another incarnation (STALE_EPOCH) gets it again, never the caller a
 * rejection. Under the node's `block` overflow policy the confirm comes
 * only when there is room: the call waits, up to deadline.
 * Returns SL_OK (confirms filled: check each status), SL_ETIMEDOUT
 * (deadline passed: the jobs may or may not have been stored; publishing
 * them again with the same ids is safe), SL_EINVAL (n == 0, a bad queue
 * name, priority > 9, NULL payload with a length), SL_ETOOBIG (the request
 * exceeds max_frame), SL_EPROTO (the node refused the envelope or answered
 * nonsense), SL_ECLOSED (client destroyed), SL_ENOMEM. */
int sl_client_publish(sl_client_t *self, const sl_job_t *jobs, size_t n,
                      sl_confirm_t *confirms, int64_t deadline);

/* The outcome of an asynchronous publish. */
typedef struct {
    int status;                   /* as sl_client_publish's return value  */
    char error[128];              /* the node's text when it sent Error   */
    size_t n;
    sl_confirm_t confirms[];      /* n entries when status is SL_OK       */
} sl_publish_result_t;

/* As sl_client_publish without waiting: returns a promise channel (caller
 * owns one reference) that receives one sl_publish_result_t * when the
 * confirms arrive, the deadline passes or the client is destroyed. The
 * result is owned by whoever takes it (a promise gives every taker the
 * same pointer: let exactly one free it, with sl_publish_result_destroy).
 * NULL with *err set for the immediate errors of sl_client_publish. */
sl_chan_t *sl_client_publish_async(sl_client_t *self, const sl_job_t *jobs, size_t n,
                                   int64_t deadline, int *err);

/* Free a result taken from a publish promise; accepts NULL. */
void sl_publish_result_destroy(sl_publish_result_t **result_p);

/* Job ids are sluice/id.h's: sl_id_new() makes one (time-ordered, like
 * UUIDv7), sl_id_to_hex() formats it. */

/* 0 if name is a valid queue name (sluice/name.h: SL_QUEUE_NAME_RULE),
 * else SL_EINVAL. */
int sl_queue_name_check(const char *name);

/* --- Consuming ------------------------------------------------------- */

/* A delivered job. Fields are read-only and valid until the delivery is
 * given back with sl_client_ack or sl_client_fail (exactly one of them,
 * once), which free it. */
typedef struct {
    const char *queue;
    const uint8_t *id;            /* SL_ID_LEN bytes                  */
    const void *payload;
    size_t payload_len;
    uint32_t priority;
    uint32_t attempt;             /* deliveries so far, this one included */
    uint32_t max_attempts;        /* 0 = the queue's default              */
    int64_t created_ms;           /* producer's wall clock                */
    int64_t deadline_ms;          /* 0 = no TTL                           */
    const char *idempotency_key;  /* "" = none                            */
    const char *breaker_key;
    const char *last_error;       /* from the previous failed attempt     */
    const sl_header_t *headers;
    size_t n_headers;
    int64_t lease_expires_ms;     /* node clock; moved by sl_client_touch */
} sl_delivery_t;

/* Subscribe to queue with a window of `credit` jobs (>= 1): the node sends
 * at most that many jobs not yet acked or failed, and the client grants
 * credit back as deliveries are acked or failed. Returns a channel (caller
 * owns one reference) of sl_delivery_t *, each owned by its taker until
 * acked or failed. The channel is closed by sl_client_unsubscribe or
 * sl_client_destroy. After a reconnect or a node restart the client
 * subscribes again by itself. NULL with *err: SL_EINVAL (bad name or
 * credit 0), SL_ESTATE (this client already consumes queue), SL_ECLOSED,
 * SL_ENOMEM. */
sl_chan_t *sl_client_subscribe(sl_client_t *self, const char *queue, uint32_t credit,
                               int *err);

/* Acknowledge a delivery: the job is done. Takes ownership of *d_p, frees
 * it and sets it to NULL. Does not wait for the node: a refused ack (the
 * lease expired and the job went to someone else) is counted in
 * stale_leases. SL_OK, SL_EINVAL (NULL), SL_ECLOSED (client stopped: the
 * delivery is still freed; the lease will expire). */
int sl_client_ack(sl_client_t *self, sl_delivery_t **d_p);

/* Fail a delivery. retryable: retried with backoff while attempts remain;
 * otherwise dead. error (may be NULL) is stored as the job's last_error.
 * Ownership and return values as sl_client_ack. */
int sl_client_fail(sl_client_t *self, sl_delivery_t **d_p, bool retryable, const char *error);

/* Extend a delivery's lease by extend_ms (0: the queue's lease time) and
 * wait for the node's answer; on SL_OK d->lease_expires_ms is updated.
 * d stays borrowed. SL_ENOTFOUND (stale lease: expired, or from before a
 * node restart), SL_ETIMEDOUT, SL_ECLOSED. */
int sl_client_touch(sl_client_t *self, sl_delivery_t *d, uint32_t extend_ms, int64_t deadline);

/* Handler results for sl_client_consume (same values as sl_node's). */
enum {
    SL_JOB_ACK = 0,   /* done                                               */
    SL_JOB_RETRY = 1, /* retryable failure (so is any other non-zero value) */
    SL_JOB_FAIL = 2   /* permanent failure: the job goes dead               */
};

/* Run one job. d is borrowed for the call (do not ack or fail it: the
 * return value does); it may be touched. Set a failure text with
 * sl_delivery_set_error. */
typedef int (*sl_handler_fn)(sl_client_t *client, sl_delivery_t *d, void *arg);

enum {
    SL_CONSUME_BLOCKING = 1 << 0 /* run handlers on the blocking pool
                                    (sl_thread) instead of as coroutines */
};

/* Consume queue: run fn(client, d, arg) for each job, up to `concurrency`
 * at once, as coroutines (sl_go; they must not block their thread) or
 * with SL_CONSUME_BLOCKING on the blocking pool. Ack on SL_JOB_ACK, fail
 * permanently on SL_JOB_FAIL, fail retryably otherwise. Credit is managed
 * for you: the window is `concurrency`. Returns at once: SL_OK,
 * SL_EINVAL, SL_ESTATE (already consuming queue), SL_ECLOSED, SL_ENOMEM.
 * Stop with sl_client_unsubscribe or sl_client_destroy. */
int sl_client_consume(sl_client_t *self, const char *queue, uint32_t concurrency,
                      sl_handler_fn fn, void *arg, int flags);

/* Options of sl_client_consume_ex. */
typedef struct {
    uint32_t concurrency;     /* handlers running at once; >= 1            */
    uint32_t prefetch;        /* deliveries the client may hold beyond
                                 those, waiting for a handler to end (the
                                 window is concurrency + prefetch), so the
                                 next job is at hand when one ends. Their
                                 leases run while they wait: keep
                                 prefetch x handler time well inside the
                                 lease. 0 = none (sl_client_consume)       */
    int flags;                /* SL_CONSUME_BLOCKING                       */
} sl_consume_opts_t;

/* sl_client_consume with a prefetch: never more than opts->concurrency
 * handlers run at once, and up to opts->prefetch more deliveries wait in
 * the client, oldest first. On unsubscribe or destroy, deliveries still
 * waiting are given back to the node (a retryable fail, "consumer
 * unsubscribed") without running. In cluster mode the prefetch is shared
 * out across nodes like the concurrency. Returns as sl_client_consume. */
int sl_client_consume_ex(sl_client_t *self, const char *queue, const sl_consume_opts_t *opts,
                         sl_handler_fn fn, void *arg);

/* Record why a handler is about to fail the job (copied; at most 255
 * bytes kept). Without it the failure text is "handler returned N". */
void sl_delivery_set_error(sl_delivery_t *d, const char *error);

/* Stop consuming queue. The node is told to send no more (credit 0) and
 * the subscribe channel is closed; deliveries already in it may still be
 * taken, acked and failed. Once every delivery has been acked or failed
 * the client unsubscribes for good (doing it sooner would make the node
 * requeue jobs still being worked on). For sl_client_consume, waits until
 * the running handlers have returned, up to deadline (from inside a
 * handler pass sl_now(): a handler cannot wait for itself). SL_OK,
 * SL_ENOTFOUND (not subscribed), SL_ETIMEDOUT (handlers still running;
 * they finish on their own), SL_ECLOSED. */
int sl_client_unsubscribe(sl_client_t *self, const char *queue, int64_t deadline);

/* --- Administration -------------------------------------------------- */

/* One queue's stats: QueueStats of docs/protocol.md, field for field, in
 * its order. The fields and what each means: sluice/stats.h. */
typedef struct {
    SL_QUEUE_STATS_FIELDS(SL_QUEUE_STATS_MEMBER)
} sl_queue_stats_t;

/* Admin.Op, value for value (4, CLUSTER, is sl_client_cluster's). */
typedef enum {
    SL_ADMIN_STATS = 0,  /* every queue, or the one named                  */
    SL_ADMIN_PAUSE = 1,  /* stop delivering a queue (publishes accepted)    */
    SL_ADMIN_RESUME = 2, /* deliver again                                   */
    SL_ADMIN_DRAIN = 3,  /* refuse publishes, deliver what is left          */
    SL_ADMIN_POLICY = 5, /* set keys of the queue's policy (params->policy);
                            makes the queue if need be                     */
    SL_ADMIN_DEAD_LIST = 6,    /* a page of the queue's dead jobs, oldest
                                  first (params->after, params->limit)     */
    SL_ADMIN_DEAD_SHOW = 7,    /* one dead job (params->dead.id)           */
    SL_ADMIN_DEAD_REQUEUE = 8, /* dead jobs (params->dead) READY again with
                                  a fresh attempt count                    */
    SL_ADMIN_DEAD_PURGE = 9    /* dead jobs (params->dead) dropped         */
} sl_admin_op_t;

/* Which dead jobs DEAD_REQUEUE and DEAD_PURGE act on: exactly one of the
 * three (DEAD_SHOW: id). Everything is borrowed for the call. */
typedef struct {
    const uint8_t *id;            /* SL_ID_LEN bytes: that job; NULL: none */
    bool all;                     /* every dead job of the queue          */
    int64_t older_than_ms;        /* > 0: those dead longer than this     */
} sl_dead_sel_t;

/* What an op takes besides its queue: Admin's other fields. Zero (or a
 * NULL params) means none. */
typedef struct {
    const char *policy;           /* POLICY: "key=value,..." (required),
                                     keys as in docs/node.md "Queue
                                     policies"; keys not named keep their
                                     value                                */
    const char *after;            /* DEAD_LIST: the `next` of the page
                                     before; NULL or "": from the oldest  */
    uint32_t limit;               /* DEAD_LIST: at most this many jobs; 0:
                                     as many as fit in the node's frame   */
    sl_dead_sel_t dead;           /* DEAD_SHOW (id), DEAD_REQUEUE,
                                     DEAD_PURGE                           */
} sl_admin_params_t;

/* A dead job's cursor (sl_admin_reply_t.next, sl_dead_page_t.next): 32
 * hex digits, and in cluster mode '@' and a node id; with its NUL. */
#define SL_DEAD_CURSOR_MAX 192

/* A dead job: the node's JobRecord (docs/protocol.md, "Admin") with the
 * Job it holds decoded. payload, last_error, reason, idempotency_key,
 * breaker_key and headers point into one allocation that starts at
 * payload: the job owns it, sl_dead_job_release frees it. */
typedef struct {
    uint8_t id[SL_ID_LEN];
    char queue[SL_QUEUE_NAME_MAX + 1];
    char node_id[128];            /* the node that holds it               */
    void *payload;                /* payload_len bytes, then a NUL (not
                                     counted: a text payload is a string) */
    size_t payload_len;
    uint32_t attempt;             /* deliveries                           */
    uint32_t failures;            /* Fail verdicts                        */
    uint32_t redeliveries;        /* leases lost without a verdict        */
    const char *last_error;       /* "" = none                            */
    const char *reason;           /* why it died: "failed: <error>",
                                     "attempts exhausted: <error>", "lease
                                     expired: attempts exhausted",
                                     "expired"                            */
    int64_t first_ms;             /* wall ms: the job's created_ms        */
    int64_t last_ms;              /* wall ms: when it died                */
    /* the job as it was published: */
    uint32_t priority;
    uint32_t max_attempts;        /* 0 = the queue's                      */
    int64_t not_before_ms;        /* 0 = not delayed                      */
    int64_t deadline_ms;          /* 0 = no TTL                           */
    const char *idempotency_key;  /* "" = none                            */
    const char *breaker_key;      /* "" = none                            */
    const sl_header_t *headers;
    size_t n_headers;
} sl_dead_job_t;

typedef struct {
    sl_queue_stats_t *queues;     /* caller owns: sl_admin_reply_release  */
    size_t n_queues;
    char node_id[128];
    uint64_t epoch;
    uint64_t peers;
    uint64_t bad_messages;        /* malformed messages the node received */
    int node_code;                /* the node's Error.code (sl_code_t);
                                     0 = none                             */
    char node_text[256];          /* the node's explanation               */
    sl_dead_job_t *dead;          /* DEAD_LIST, DEAD_SHOW: caller owns:
                                     sl_admin_reply_release               */
    size_t n_dead;
    uint64_t affected;            /* DEAD_REQUEUE, DEAD_PURGE: jobs moved */
    char next[SL_DEAD_CURSOR_MAX];/* DEAD_LIST: params->after of the next
                                     page; "" = this was the last         */
} sl_admin_reply_t;

/* Send Admin{op, queue, params} and wait for the reply into *reply
 * (zeroed first; release it with sl_admin_reply_release whatever the
 * result). queue may be NULL (or "") only for SL_ADMIN_STATS, meaning
 * every queue. params may be NULL. Every op but STATS of every queue
 * answers with the queue's stats as they are after it (queues[0]).
 * Returns SL_OK, or: SL_EINVAL (bad arguments: node_text says which; for
 * POLICY also a spec the node refused, node_text saying why),
 * SL_ENOTFOUND (the node has no such queue -- queues exist once published
 * to or subscribed -- or, node_code SL_CODE_BAD_ID, no dead job with
 * params->dead.id), SL_ESTATE for DEAD_LIST whose `after` names a job no
 * longer dead (requeued, purged or dropped for max-dead meanwhile: list
 * again from the start), SL_EPROTO or SL_ESTATE (the node refused:
 * node_code and node_text say why), SL_ETIMEDOUT, SL_ECLOSED, SL_ENOMEM. */
int sl_client_admin_ex(sl_client_t *self, sl_admin_op_t op, const char *queue,
                       const sl_admin_params_t *params, sl_admin_reply_t *reply,
                       int64_t deadline);
/* sl_client_admin_ex without params. */
int sl_client_admin(sl_client_t *self, sl_admin_op_t op, const char *queue,
                    sl_admin_reply_t *reply, int64_t deadline);
void sl_admin_reply_release(sl_admin_reply_t *reply);

/* Shorthands. sl_client_stats: *stats_out gets an array of *n_out queues
 * (caller owns; free()). STATS of every queue (queue NULL) is asked for
 * in pages, followed to the last one within deadline, so any number of
 * queues is listed, in name order. sl_client_policy: set the keys of
 * queue's policy that spec names ("max-attempts=8,overflow=drop-new");
 * *stats_out (may be NULL) gets the queue's stats after it, `policy`
 * showing every key in force.
 *
 * Cluster mode: sl_client_admin and the shorthands ask every node the
 * coordinator lists as alive. STATS sums each queue over the nodes (the
 * fields sluice/stats.h merges by SUM, capacity included; `paused` and
 * `draining` if so on any; `overflow` and `policy` the first node's); the
 * other ops must succeed on every node that has the queue (the first
 * failure is returned, node_text naming the node); SL_ENOTFOUND only when
 * no node has it. POLICY makes the queue on every live node (a node that
 * joins later has its own --queues). node_id and epoch are the
 * coordinator's, peers the nodes asked. The dead-job ops: "Dead jobs"
 * below. */
int sl_client_stats(sl_client_t *self, const char *queue, sl_queue_stats_t **stats_out,
                    size_t *n_out, int64_t deadline);
int sl_client_pause(sl_client_t *self, const char *queue, int64_t deadline);
int sl_client_resume(sl_client_t *self, const char *queue, int64_t deadline);
int sl_client_drain(sl_client_t *self, const char *queue, int64_t deadline);
int sl_client_policy(sl_client_t *self, const char *queue, const char *spec,
                     sl_queue_stats_t *stats_out, int64_t deadline);

/* --- Dead jobs ------------------------------------------------------- */

/* The dead jobs of a queue (jobs that failed for good, ran out of
 * attempts or expired), through DEAD_LIST, DEAD_SHOW, DEAD_REQUEUE and
 * DEAD_PURGE. Errors as sl_client_admin_ex's, in particular SL_ENOTFOUND
 * for no such queue or (show, and requeue or purge by id) no such dead
 * job, SL_EINVAL for a selection that is not exactly one of id, all and
 * older_than_ms > 0.
 *
 * Cluster mode: a dead job lives on the node it died on, so each call
 * asks every node the coordinator lists as alive. A list walks the nodes
 * in node-id order, one node's jobs oldest first, then the next node's
 * (the cursor names the node); show finds the job wherever it is;
 * requeue and purge act on every node and add up `affected`. Each
 * sl_dead_job_t names its node in node_id. */

/* One page of queue's dead jobs, oldest first: at most limit of them (0:
 * as many as fit in the node's frame) after the cursor `after` (NULL or
 * "": from the oldest), into *page (zeroed first; release it with
 * sl_dead_page_release whatever the result). A page may hold fewer jobs
 * than asked for while more remain: follow page->next until it is "".
 * SL_ESTATE: the job `after` names is dead no more; list from the start. */
typedef struct {
    sl_dead_job_t *jobs;          /* caller owns: sl_dead_page_release    */
    size_t n;
    char next[SL_DEAD_CURSOR_MAX];/* the next page's `after`; "" = the last */
} sl_dead_page_t;
int sl_client_dead_list(sl_client_t *self, const char *queue, const char *after, uint32_t limit,
                        sl_dead_page_t *page, int64_t deadline);
void sl_dead_page_release(sl_dead_page_t *page);

/* Every dead job of queue, page after page within deadline, into
 * *jobs_out (an array of *n_out, caller owns: sl_dead_jobs_destroy; NULL
 * and 0 on error or when there are none). A page whose cursor went stale
 * starts the walk again (at most 3 times, then SL_ESTATE). */
int sl_client_dead_list_all(sl_client_t *self, const char *queue, sl_dead_job_t **jobs_out,
                            size_t *n_out, int64_t deadline);

/* The dead job id (SL_ID_LEN bytes) of queue into *job (zeroed first;
 * caller owns it on SL_OK: sl_dead_job_release). */
int sl_client_dead_show(sl_client_t *self, const char *queue, const uint8_t *id,
                        sl_dead_job_t *job, int64_t deadline);

/* The dead jobs sel chooses: requeued (READY again, same id, attempt
 * count from 0, failures and last error kept; they go in even past the
 * queue's max-length) or purged (dropped; their ids may be published
 * again). *affected (may be NULL) gets how many. */
int sl_client_dead_requeue(sl_client_t *self, const char *queue, const sl_dead_sel_t *sel,
                           uint64_t *affected, int64_t deadline);
int sl_client_dead_purge(sl_client_t *self, const char *queue, const sl_dead_sel_t *sel,
                         uint64_t *affected, int64_t deadline);

/* Free what a dead job points to and zero it; accepts NULL. */
void sl_dead_job_release(sl_dead_job_t *job);
/* Release n jobs and free their array; accepts NULL, sets *jobs_p NULL. */
void sl_dead_jobs_destroy(sl_dead_job_t **jobs_p, size_t n);

/* --- The cluster, as the coordinator sees it ------------------------- */

/* Load of one queue on one node. */
typedef struct {
    char queue[SL_QUEUE_NAME_MAX + 1];
    uint64_t depth, delayed, in_flight;
    uint32_t consumers;
    double publish_rate, ack_rate;   /* jobs/s over the node's rate window */
} sl_queue_load_t;

typedef struct {
    char node_id[128];
    char endpoint[256];
    bool alive;                      /* false: declared dead, kept as a
                                        tombstone                         */
    bool fenced;                     /* refusing work until it rejoins    */
    uint64_t member_epoch;
    uint64_t incarnation;            /* the node process's own epoch      */
    uint32_t capacity;               /* relative weight (0 reported: 100) */
    uint32_t interval_ms;            /* its status interval               */
    int64_t last_seen_ms;            /* coordinator's wall clock          */
    sl_queue_load_t *queues;
    size_t n_queues;
} sl_cluster_node_t;

/* A node in a consumer's assignment. */
typedef struct {
    char node_id[128];
    char endpoint[256];
    uint64_t member_epoch;
    uint32_t share;                  /* of the consumer's concurrency, in
                                        1/1000                            */
} sl_node_ref_t;

typedef struct {
    char consumer_id[128];
    char queue[SL_QUEUE_NAME_MAX + 1];
    uint32_t concurrency;
    uint64_t epoch;                  /* its assignment epoch              */
    sl_node_ref_t *nodes;
    size_t n_nodes;
} sl_cluster_consumer_t;

typedef struct {
    char coordinator_id[128];
    uint64_t epoch;                  /* the coordinator's latest epoch    */
    sl_cluster_node_t *nodes;        /* sorted by the coordinator         */
    size_t n_nodes;
    sl_cluster_consumer_t *consumers;
    size_t n_consumers;
} sl_cluster_view_t;

/* Ask the coordinator for the whole cluster (Admin{CLUSTER}) into *view
 * (zeroed first; release with sl_cluster_view_release whatever the
 * result). A cluster client asks its coordinator; a single-node client
 * asks whatever its endpoint is (a node refuses: SL_EPROTO). SL_OK, or
 * SL_EPROTO / SL_ESTATE (refused; the view is empty), SL_ETIMEDOUT,
 * SL_ECLOSED, SL_EINVAL, SL_ENOMEM. */
int sl_client_cluster(sl_client_t *self, sl_cluster_view_t *view, int64_t deadline);
void sl_cluster_view_release(sl_cluster_view_t *view);

#ifdef __cplusplus
}
#endif
#endif
