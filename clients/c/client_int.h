/* client_int.h -- libsluice's internal objects, shared by client.c (the
 * calls users make), sub.c (subscriptions: subscribe, consume, unsubscribe,
 * ack, fail), io.c (the I/O thread that owns the socket), req.c (the table
 * of requests awaiting an answer) and delivery.c (deliveries, consume
 * handlers).
 *
 * Threads: users never touch the socket. Every call turns into an
 * sl__cmd_t put on `cmds`, which the I/O thread drains (it polls the
 * channel's eventfd and the socket together). Answers come back on promise
 * channels made by the caller. Fields marked "io" belong to the I/O thread
 * alone; the subscription list is shared under `lock`.
 *
 * Cluster mode (cluster.c, route.c, csub.c; cluster_int.h): the client the
 * user holds has no socket of its own; it owns a cluster object whose
 * thread talks to the coordinator through an inner client of this kind,
 * and one inner client per node. Inner clients hand the cluster what they
 * do not handle themselves through a tap, and name the user's client as
 * `parent` (what handlers receive). */
#ifndef SLUICE_CLIENT_INT_H
#define SLUICE_CLIENT_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "sluice.pb-c.h"
#include "sluice/id.h"
#include "sluice/chan.h"
#include "sluice/client.h"
#include "sluice/pbwire.h"

#define SL__CLIENT_HB_DEFAULT_MS 1000
#define SL__CLIENT_FRAME_DEFAULT (1u << 20)
#define SL__CLIENT_LINGER_DEFAULT_MS 1000
#define SL__CLIENT_CMDS_CAP 4096
#define SL__CLIENT_BATCH 256    /* messages or commands handled per wake-up */
#define SL__ERR_TEXT_MAX 256
#define SL__ADMIN_CLUSTER 4     /* Admin.op CLUSTER: a coordinator's question */

/* Publish.node_epoch as the client writes it: a varint padded to its
 * longest form (client.c s_publish_pack), rewritten in place before every
 * send with the node epoch known then (0: not checked). */
#define SL__STAMP_LEN 10

static inline void sl__stamp(uint8_t *p, uint64_t epoch)
{
    for (int i = 0; i < SL__STAMP_LEN - 1; i++, epoch >>= 7)
        p[i] = (uint8_t)(epoch | 0x80);
    p[SL__STAMP_LEN - 1] = (uint8_t)epoch; /* bit 63: 0 or 1 */
}

typedef struct sl__sub sl__sub_t;
typedef struct sl__req sl__req_t;
typedef struct sl__cluster sl__cluster_t;

/* Called on an inner client's I/O thread with an envelope it does not
 * handle itself (RouteTable, Assignment, an Error answering no request);
 * env is borrowed for the call. */
typedef void (*sl__tap_fn)(void *arg, const Sluice__V1__Envelope *env);

/* A request awaiting an answer matched by corr: a publish, an admin call
 * or a touch. Made by the caller with the envelope already encoded; owned
 * by the I/O thread from the moment it is taken off `cmds` until it is
 * completed (sl__req_complete), which puts the result on `promise` and
 * frees the request. */
enum { SL__REQ_PUBLISH = 1, SL__REQ_ADMIN, SL__REQ_TOUCH };

struct sl__req {
    int kind;
    uint64_t corr;
    int64_t deadline;           /* monotonic ns, SL_FOREVER = none          */
    uint8_t *buf;               /* the encoded envelope, resent as is       */
    size_t len;
    sl_chan_t *promise;         /* one reference; receives the result       */
    size_t n_jobs;              /* PUBLISH: jobs, in order, with their ids  */
    uint8_t (*ids)[SL_ID_LEN];
    sl_chan_t *notify;          /* borrowed, may be NULL: gets `tag` once the
                                   promise holds the result                 */
    void *tag;
    size_t stamp_at;            /* PUBLISH: where in buf Publish.node_epoch's
                                   10 varint bytes are (0: none), written
                                   before every send (sl__publish_encode)   */
    /* io: */
    uint64_t stamp;             /* the node epoch written at the last send  */
    int64_t sent_at;            /* last send, monotonic ns                  */
    sl__req_t *hnext;           /* hash chain                               */
    sl__req_t *prev, *next;     /* sending order                            */
    size_t heap_i;              /* index in the deadline heap, or SIZE_MAX  */
};

/* Result of an admin call or a touch (what the promise carries). */
typedef struct {
    int status;
    sl_admin_reply_t admin;     /* ADMIN                                    */
    char next[SL_QUEUE_NAME_MAX + 1]; /* ADMIN STATS: the next page starts
                                   after this queue; "" = the last page     */
    sl_cluster_view_t view;     /* ADMIN CLUSTER                            */
    int64_t lease_expires_ms;   /* TOUCH                                    */
    uint64_t lease_id;          /* TOUCH                                    */
} sl__reply_t;

/* The lease a delivery holds, as the node sent it. */
typedef struct {
    uint8_t job_id[SL_ID_LEN];
    uint64_t lease_id;
    uint64_t epoch;
    int64_t expires_ms;
} sl__lease_t;

/* A delivery as the user sees it (pub) plus what the client needs. One
 * allocation holds the strings, headers and payload after the struct.
 * Acked, it travels to the I/O thread as the command itself (tagged
 * pointer, see SL__CMD_TAG_ACK), which frees it there. */
typedef struct sl__delivery sl__delivery_t;
struct sl__delivery {
    sl_delivery_t pub;          /* first: sl_delivery_t * casts to this     */
    sl__sub_t *sub;
    sl__lease_t lease;
    sl__delivery_t *next;       /* io: a consume subscription's waiting list */
    char error[SL__ERR_TEXT_MAX];/* sl_delivery_set_error                   */
    uint32_t magic;             /* catches a double ack or a foreign pointer */
};

/* What one Delivery of a Deliver envelope says, scanned in place (pointers
 * into the envelope's bytes). */
typedef struct {
    const uint8_t *job;         /* the Job's bytes (headers are read again) */
    size_t job_len;
    bool has_job, has_lease;
    sl__pb_job_t j;             /* the job's fields                         */
    sl__pb_lease_t l;           /* the lease's fields                       */
    sl__lease_t lease;          /* job_id: the lease's, else the job's     */
} sl__dview_t;

#define SL__DELIVERY_MAGIC 0x5d311e7u

/* One subscription (sl_client_subscribe or sl_client_consume). Lives until
 * the client is destroyed, so late acks of an unsubscribed queue are safe. */
struct sl__sub {
    sl_client_t *client;
    char queue[SL_QUEUE_NAME_MAX + 1];
    uint32_t window;            /* credit: concurrency + prefetch           */
    uint32_t concurrency;       /* consume: handlers at once (io after SUB) */
    sl_chan_t *out;             /* subscribe: deliveries; NULL for consume  */
    bool out_shared;            /* out is a cluster subscription's, fed by
                                   several nodes: never closed here         */
    uint64_t member_epoch;      /* io: sent in Subscribe (0 = none)         */
    sl_handler_fn fn;           /* consume                                  */
    void *arg;
    int flags;
    bool active;                /* under lock: subscribed, not unsubscribed */
    sl__sub_t *next;            /* under lock: the client's list            */
    /* io: */
    bool live;                  /* subscribed, taking deliveries            */
    bool draining;              /* stopped: Unsubscribe when running is 0   */
    bool sent;                  /* Subscribe sent                           */
    uint32_t running;           /* delivered, not yet acked or failed       */
    uint32_t handlers;          /* consume: handlers started, not yet ended */
    sl__delivery_t *wait_head;  /* consume: prefetched, waiting for a free  */
    sl__delivery_t *wait_tail;  /*   handler, oldest first                  */
    uint32_t granted;           /* credit the node may still spend          */
    uint32_t credit_pending;    /* earned back, sent at the next flush      */
    sl_chan_t *idle;            /* unsubscribe waits: closed when running 0 */
};

/* Commands from users to the I/O thread. */
enum {
    SL__CMD_REQ = 1,            /* send req and await its answer            */
    SL__CMD_ACK,                /* ack lease; sub gets a job back           */
    SL__CMD_FAIL,               /* fail lease                               */
    SL__CMD_SUB,                /* start sub                                */
    SL__CMD_UNSUB,              /* stop sub; close `done` when idle         */
    SL__CMD_DONE,               /* a delivery ended without ack or fail     */
    SL__CMD_STOP,               /* destroy: finish and exit                 */
    SL__CMD_SEND,               /* send buf once; no answer awaited         */
    SL__CMD_CANCEL,             /* give up the request `corr` (SL_ECLOSED)  */
    SL__CMD_RESUB,              /* sub: new window and member epoch         */
    SL__CMD_RECONNECT           /* a fresh socket, to `buf` (an endpoint) if
                                   set; only if the node is not up, with
                                   `if_down`                                */
};

/* An ack needs no command of its own: the delivery goes on `cmds` with
 * this bit set in its pointer (deliveries are malloc'd, so aligned). */
#define SL__CMD_TAG_ACK ((uintptr_t)1)

typedef struct {
    int kind;
    sl__req_t *req;             /* REQ                                      */
    sl__sub_t *sub;             /* ACK, FAIL, SUB, UNSUB, DONE              */
    sl__lease_t lease;          /* ACK, FAIL                                */
    bool retryable;             /* FAIL                                     */
    char *error;                /* FAIL: owned, may be NULL                 */
    sl_chan_t *done;            /* UNSUB: promise of an int status          */
    uint8_t *buf;               /* SEND: owned; RECONNECT: the endpoint,
                                   NUL-terminated, owned (may be NULL)      */
    bool if_down;               /* RECONNECT                                */
    size_t len;
    uint64_t corr;              /* CANCEL                                   */
    uint32_t window;            /* RESUB: credit                            */
    uint32_t concurrency;       /* RESUB                                    */
    uint64_t member_epoch;      /* RESUB                                    */
} sl__cmd_t;

struct sl_client {
    sl__cluster_t *cluster;     /* cluster mode: everything else is unused  */
    sl_client_t *parent;        /* an inner client: the user's client       */
    sl__tap_fn tap;             /* an inner client: unhandled envelopes     */
    void *tap_arg;
    char *endpoint;
    char *consumer_id;
    int heartbeat_ms;
    int resend_ms;
    size_t max_frame;
    int linger_ms;

    void *zctx;
    void *sock;                 /* io: the DEALER                           */
    void *mon;                  /* io: PAIR receiving socket monitor events */
    unsigned mon_gen;           /* io: sockets made so far (monitor names)  */
    pthread_t io;
    sl_chan_t *cmds;            /* users -> io: sl__cmd_t *                 */
    sl__cmd_t stop_cmd;         /* destroy's STOP: needs no allocation      */
    _Atomic uint64_t next_corr;
    _Atomic bool closed;        /* destroy began: calls return SL_ECLOSED   */

    pthread_mutex_t lock;       /* guards subs                              */
    sl__sub_t *subs;

    /* io: the session with the node */
    uint64_t epoch;
    bool epoch_known;
    bool up;                    /* the node answered, not silent since      */
    bool tcp_dropped;           /* monitor saw DISCONNECTED                 */
    bool resync;                /* declared the node gone: new session when
                                   it answers again                         */
    int node_hb_ms;             /* the node's interval (0 = not announced)  */
    int64_t last_recv, last_send;
    bool stopping;
    bool cmds_closed;

    /* io: pending requests */
    sl__req_t **buckets;
    size_t nbuckets, npending;
    sl__req_t *req_head, *req_tail;
    sl__req_t **heap;
    size_t heap_n, heap_cap;
    int64_t next_resend_scan;

    /* io: ack batch */
    sl__lease_t *ack_pending;
    size_t ack_n, ack_cap;
    uint8_t *ack_buf;           /* the Ack envelope, written by hand        */
    size_t ack_buf_cap;

    /* readable by anyone */
    struct {
        _Atomic bool connected, linked;
        _Atomic uint64_t epoch, sessions, sent, received, resent, pending, delivered,
            stale_leases, node_errors, bad_messages;
        _Atomic int node_hb_ms;
    } ctr;
};

/* req.c -- the pending table: by corr (hash), by sending order (list) and
 * by deadline (heap). I/O thread only. */
int sl__req_table_init(sl_client_t *c);
void sl__req_table_release(sl_client_t *c);
int sl__req_add(sl_client_t *c, sl__req_t *r);
sl__req_t *sl__req_find(sl_client_t *c, uint64_t corr);
void sl__req_remove(sl_client_t *c, sl__req_t *r);
sl__req_t *sl__req_earliest(sl_client_t *c);
/* Make a request (caller owns until it is handed to the I/O thread). */
sl__req_t *sl__req_new(int kind, uint64_t corr, int64_t deadline);
void sl__req_free(sl__req_t **r_p);
/* Answer r: put its result on the promise, close it, free r. Publish:
 * confirms may be NULL when status is not SL_OK; text may be NULL. */
void sl__req_complete_publish(sl__req_t *r, int status, const char *text,
                              Sluice__V1__JobConfirm **confirms, size_t n);
void sl__req_complete_reply(sl__req_t *r, sl__reply_t *reply);
void sl__req_complete_error(sl__req_t *r, int status, int node_code, const char *text);

/* io.c */
void *sl__io_main(void *arg);
int sl__err_from_node(int code);

/* delivery.c */
/* A Deliver envelope of len bytes: 1 with its body's bytes in *body, or 0
 * if it is another kind or not one the scanner takes (protobuf-c's then). */
int sl__deliver_envelope(const uint8_t *p, size_t len, sl__pb_rd_t *body);
/* The next Delivery of a Deliver body into v: 1, 0 at the end, -1 if the
 * body is malformed or gives a delivery's job or lease twice. v->has_job
 * and v->has_lease say what the delivery held. */
int sl__deliver_next(sl__pb_rd_t *body, sl__dview_t *v);
/* The delivery v describes, for sub: one allocation (NULL: no memory). */
sl__delivery_t *sl__delivery_new(sl__sub_t *sub, const sl__dview_t *v);
void sl__delivery_free(sl__delivery_t **d_p);
/* d if it is a delivery of *self_p's (in cluster mode, of one of its node
 * clients: *self_p becomes that client, which holds the lease); else NULL. */
sl__delivery_t *sl__delivery_owned(sl_client_t **self_p, sl_delivery_t *d);
/* Hand a delivery to its subscription (I/O thread): onto the channel, to a
 * new handler, or onto the waiting list when `concurrency` handlers run.
 * SL_OK, or an error with d still owned by the caller. */
int sl__delivery_dispatch(sl__delivery_t *d);
/* Start d's consume handler now (I/O thread): SL_OK, or an error with d
 * still owned by the caller. */
int sl__delivery_start(sl__delivery_t *d);
/* The oldest delivery waiting for a handler of s, taken off its list
 * (caller owns), or NULL. I/O thread. */
sl__delivery_t *sl__delivery_waiting(sl__sub_t *s);

/* client.c */
int sl__client_cmd(sl_client_t *c, sl__cmd_t *cmd);
/* Make c->sock (a DEALER with the client's options, connected to
 * c->endpoint) and c->mon (its monitor). On failure nothing is made and
 * c->sock, c->mon are unchanged: SL_EINVAL (bad endpoint), SL_ESYS. */
int sl__client_sock_open(sl_client_t *c);
/* Ask c's I/O thread for a fresh connection (io.c s_reconnect): to
 * endpoint (copied; NULL: the same one), or with if_down only if the node
 * is not answering now. Whatever is still queued toward the node on the
 * old connection is discarded. SL_OK, SL_ENOMEM, SL_ECLOSED. */
int sl__client_reconnect(sl_client_t *c, const char *endpoint, bool if_down);
sl__cmd_t *sl__cmd_new(int kind);
/* The interval after which a silent peer is declared gone, in ms. */
int sl__client_peer_interval_ms(sl_client_t *c);

/* Inner clients (cluster mode). A node-mode client whose unhandled
 * envelopes go to tap(tap_arg, env) and whose handlers receive parent.
 * opts->coordinator is ignored. */
sl_client_t *sl__client_new_inner(const sl_client_opts_t *opts, sl_client_t *parent,
                                  sl__tap_fn tap, void *tap_arg, int *err);
/* Send env once (corr as set), answered or not. SL_OK, SL_ENOMEM,
 * SL_ETOOBIG, SL_ECLOSED. */
int sl__client_send(sl_client_t *c, const Sluice__V1__Envelope *env);
/* Encode a Publish of jobs into a new envelope buffer (caller owns *buf),
 * picking ids for jobs without one into ids[i]. */
int sl__publish_pack(sl_client_t *c, const sl_job_t *jobs, size_t n, uint8_t (*ids)[SL_ID_LEN],
                     uint8_t **buf, size_t *len);
/* Send pub (its jobs carry their ids) as one request; the promise (caller
 * owns one reference) gets an sl_publish_result_t * as for
 * sl_client_publish_async, and notify (may be NULL) gets tag afterwards.
 * *corr names the request for sl__client_cancel. NULL with *err. */
sl_chan_t *sl__client_publish_pb(sl_client_t *c, const Sluice__V1__Publish *pub,
                                 int64_t deadline, sl_chan_t *notify, void *tag,
                                 uint64_t *corr, int *err);
/* Answer the request corr with SL_ECLOSED now, if still pending. */
int sl__client_cancel(sl_client_t *c, uint64_t corr);
/* Start a subscription with these settings: out (may be NULL: consume
 * with fn) is shared, never closed by c; c keeps a reference. Returns the
 * subscription (owned by c until destroy) or NULL with *err. */
sl__sub_t *sl__client_sub_start(sl_client_t *c, const char *queue, uint32_t window,
                                uint32_t prefetch, sl_chan_t *out, sl_handler_fn fn, void *arg,
                                int flags, uint64_t member_epoch, int *err);
/* Subscribe s again with a new window (concurrency), prefetch and member
 * epoch. */
int sl__client_sub_update(sl_client_t *c, sl__sub_t *s, uint32_t window, uint32_t prefetch,
                          uint64_t member_epoch);
/* Stop the subscription to queue (as sl_client_unsubscribe) without
 * waiting: the promise (caller owns) gets an int status once the
 * deliveries have ended. NULL with *err (SL_ENOTFOUND, ...). */
sl_chan_t *sl__client_unsub_start(sl_client_t *c, const char *queue, int *err);
/* Wait for an unsubscribe promise (consumed) until deadline. */
int sl__client_unsub_wait(sl_chan_t **done_p, int64_t deadline);
/* sl_client_admin_ex with any op (CLUSTER too); params may be NULL; view
 * (may be NULL) gets a CLUSTER answer. */
int sl__client_admin(sl_client_t *c, int op, const char *queue, const sl_admin_params_t *params,
                     sl_admin_reply_t *reply, sl_cluster_view_t *view, int64_t deadline);
/* stats.c: QueueStats into *o (every field, from sluice/stats.h's list);
 * one node's stats of a queue added into another's, as the list merges. */
void sl__queue_stats_from_pb(sl_queue_stats_t *o, const Sluice__V1__QueueStats *q);
void sl__queue_stats_merge(sl_queue_stats_t *into, const sl_queue_stats_t *from);
void sl__cluster_view_from_pb(sl_cluster_view_t *out, const Sluice__V1__ClusterView *pb,
                              int *status);

/* cluster.c: the public calls in cluster mode (cluster_int.h has the rest). */
int sl__cluster_new(sl_client_t *c, const sl_client_opts_t *opts);
void sl__cluster_destroy(sl_client_t *c);
int sl__cluster_wait_connected(sl_client_t *c, int64_t deadline);
void sl__cluster_counters(sl_client_t *c, sl_client_counters_t *out);
sl_chan_t *sl__cluster_publish_async(sl_client_t *c, const sl_job_t *jobs, size_t n,
                                     int64_t deadline, int *err);
int sl__cluster_subscribe(sl_client_t *c, const char *queue, uint32_t window,
                          uint32_t prefetch, sl_chan_t *out, sl_handler_fn fn, void *arg,
                          int flags);
int sl__cluster_unsubscribe(sl_client_t *c, const char *queue, int64_t deadline);
int sl__cluster_admin(sl_client_t *c, sl_admin_op_t op, const char *queue,
                      const sl_admin_params_t *params, sl_admin_reply_t *reply,
                      int64_t deadline);
sl_client_t *sl__cluster_coordinator(sl_client_t *c);
/* Admin op on node n of a cluster view, over a short-lived connection,
 * into *one (zeroed first; caller releases). Returns as sl__client_admin. */
int sl__cluster_node_admin(sl_client_t *c, const sl_cluster_node_t *n, sl_admin_op_t op,
                           const char *queue, const sl_admin_params_t *params,
                           sl_admin_reply_t *one, int64_t deadline);

/* dead.c: the dead jobs of JobRecords recs[0..n-1] into *out (an array
 * of *n_out, caller owns: sl_dead_jobs_destroy): SL_OK, SL_EPROTO (a
 * record that is not one), SL_ENOMEM. */
int sl__dead_jobs_from_pb(sl_dead_job_t **out, size_t *n_out, Sluice__V1__JobRecord **recs,
                          size_t n);
/* Move from's dead jobs to the end of into's (from has none after). */
int sl__dead_append(sl_admin_reply_t *into, sl_admin_reply_t *from);
/* A dead-job op's params checked before anything is sent (cluster: the
 * client is a cluster client): SL_OK, or SL_EINVAL with reply->node_text
 * saying why. Other ops: SL_OK. */
int sl__dead_check(int op, const sl_admin_params_t *params, bool cluster,
                   sl_admin_reply_t *reply);
/* The status a dead-job op returns for the node's answer rc: BAD_ID is
 * SL_ENOTFOUND, a stale DEAD_LIST cursor SL_ESTATE. Other ops: rc. */
int sl__dead_status(int op, const sl_admin_params_t *params, int rc,
                    const sl_admin_reply_t *reply);
/* DEAD_LIST in cluster mode: one node's page under a cursor that names
 * the node. */
int sl__cluster_dead_list(sl_client_t *c, const char *queue, const sl_admin_params_t *params,
                          sl_admin_reply_t *reply, int64_t deadline);

#endif
