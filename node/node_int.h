/* node_int.h -- the node's internal objects, shared by node.c (lifecycle,
 * socket thread, engine loop, peers) and queue.c (queues, jobs, leases,
 * delivery); jobwire.h reads and writes the job messages' wire format.
 *
 * Concurrency: the engine coroutine and every queue's delivery coroutine
 * run on one worker (they are spawned from the engine without
 * SL_GO_SPREAD), so they interleave only where they park and share the
 * structures below without locks. The socket thread and in-process
 * handlers talk to them through channels only. */
#ifndef SLUICE_NODE_INT_H
#define SLUICE_NODE_INT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "jobwire.h"
#include "member.h"
#include "map.h"
#include "policy.h"
#include "sluice.pb-c.h"
#include "sluice/id.h"
#include "sluice/chan.h"
#include "sluice/node.h"
#include "sluice/store.h"

#define SL__LEVELS 10
#define SL__RID_MAX 256 /* >= SL_WIRE_RID_MAX */
#define SL__BATCH_MAX 64
#define SL__INBOUND_CAP 4096
#define SL__OUTBOUND_CAP 4096
#define SL__READ_BURST 256
#define SL__PROTOCOL 1 /* Heartbeat.protocol */
#define SL__CREDIT_MAX 1000000 /* a consumer's credit is capped here */
#define SL__BEAT_SLICES 16 /* peers heartbeated in this many slices an interval */
#define SL__DELIVER_BUDGET 1024 /* jobs delivered per engine turn */

typedef struct sl__node sl__node_t;
typedef struct sl__queue sl__queue_t;
typedef struct sl__peer sl__peer_t;
typedef struct sl__consumer sl__consumer_t;
typedef struct sl__job sl__job_t;
typedef struct sl__pubctx sl__pubctx_t;

/* Job states; every move between them is sl__job_move (queue.c, which
 * has the diagram). 0 = not in a queue (being published, or gone). */
enum { SL__J_WAITING = 1, SL__J_DELAYED, SL__J_READY, SL__J_LEASED, SL__J_RETRY, SL__J_DEAD };

/* Why a job moves: each reason names the counters it changes. */
typedef enum {
    SL__WHY_PUBLISH = 1,    /* accepted: -> READY/DELAYED, or WAITING     */
    SL__WHY_DUE,            /* not_before or retry backoff over -> READY  */
    SL__WHY_DELIVER,        /* READY -> LEASED, attempt + 1               */
    SL__WHY_ACK,            /* LEASED -> gone, remembered as done         */
    SL__WHY_FAIL_RETRY,     /* LEASED -> RETRY                            */
    SL__WHY_FAIL_DEAD,      /* LEASED -> DEAD                             */
    SL__WHY_LEASE_EXPIRED,  /* LEASED -> READY, or DEAD (attempts spent)  */
    SL__WHY_RETURN,         /* LEASED -> READY without a verdict, attempt
                               given back (unsubscribe, peer gone)        */
    SL__WHY_TTL,            /* deadline passed -> DEAD "expired"          */
    SL__WHY_DROP,           /* drop-oldest -> gone                        */
    SL__WHY_EVICT,          /* DEAD beyond max-dead -> gone               */
    SL__WHY_STORED,         /* RETRY -> gone: the store holds the retry   */
    SL__WHY_REQUEUE         /* DEAD -> READY by Admin, fresh attempt count */
} sl__why_t;

struct sl__job {
    uint8_t id[16];             /* first, as in sl__done_t (n->ids); valid
                                   when id_len == 16                       */
    sl__queue_t *q;
    int state;                  /* SL__J_*, changed by sl__job_move only   */
    uint64_t lease_id;
    int64_t lease_expires;      /* monotonic ms                            */
    sl__consumer_t *holder;     /* LEASED                                  */
    sl__job_t *lprev, *lnext;   /* the list of its state: a ready level, the
                                   wait or dead list, the holder's leases   */
    sl__job_t *eprev, *enext;   /* LEASED for the node's lease time: the
                                   node's expiry list (in_expiry)          */
    uint64_t timer_gen;         /* sequence of the armed timer; any other
                                   value invalidates it                    */
    char *dead_reason;
    char *last_error;           /* owned; from the last Fail, NULL = none  */
    sl__pubctx_t *pub;          /* WAITING: the publish awaiting a confirm */
    size_t pub_index;
    int64_t ttl_at;             /* monotonic ms, 0 = none                  */
    uint64_t ttl_gen;           /* sequence of the armed TTL timer         */
    bool in_expiry;             /* on the node's lease expiry list         */
    bool field0;                /* unknown field numbered 0: rejected      */
    bool ikey_nul;              /* idempotency key with a NUL: rejected    */
    bool storing;               /* RETRY: its RETRY_PUT is in flight       */
    uint32_t failures;          /* Fail verdicts so far                    */
    int64_t dead_ms;            /* DEAD: wall ms it died                   */
    uint32_t redeliveries;      /* leases lost without a verdict           */
    bool set_max_attempts;      /* the node filled in max_attempts ...     */
    bool set_created;           /* ... created_ms: appended on delivery    */
    /* Read from the bytes (the last value of a field given twice). */
    uint32_t id_len;
    uint32_t priority, attempt, max_attempts;
    int64_t created_ms, not_before_ms, deadline_ms;
    const uint8_t *idp;         /* the id as given, into raw               */
    const char *queue;          /* NUL-terminated copy after raw; NULL if
                                   over 128 bytes (then invalid anyway)    */
    size_t queue_len;
    const uint8_t *payload;     /* into raw                                */
    size_t payload_len;
    const char *ikey;           /* idempotency key, into raw, up to a NUL  */
    size_t ikey_len;
    size_t len;                 /* of raw                                  */
    uint8_t raw[];
};

/* An acked job remembered for duplicate detection: the node keeps the
 * last max_done of them in a ring, indexed by id (and by key). */
typedef struct sl__done {
    uint8_t id[16];             /* first, as in sl__job_t                   */
    char *key;                  /* "queue\0idempotency-key" or NULL        */
    size_t klen;
} sl__done_t;

/* A Publish whose confirm waits for blocked jobs. One allocation: the
 * confirms, then the job ids as given. */
typedef struct {
    int status;                 /* Sluice__V1__JobConfirm__Status          */
    int code;                   /* Sluice__V1__Error__Code, REJECTED       */
    uint32_t retry_after_ms;
    char *reason;               /* owned, NULL = none                      */
    const uint8_t *id;          /* into the context's own allocation       */
    size_t id_len;
} sl__confirm_t;

struct sl__pubctx {
    uint8_t rid[SL__RID_MAX];
    size_t rid_len;
    uint64_t corr;
    size_t n, remaining;
    sl__confirm_t confirms[];   /* n entries, then the id bytes            */
};

struct sl__consumer {
    sl__peer_t *peer;
    sl__queue_t *q;
    uint32_t credit;
    uint64_t leased;
    sl__job_t *leases;          /* list through lprev/lnext                */
    sl__consumer_t *qnext;      /* queue's consumer list                   */
    sl__consumer_t *pnext;      /* peer's consumer list                    */
    sl_chan_t *local;           /* in-process consumer: its delivery chan  */
};

struct sl__peer {
    uint8_t rid[SL__RID_MAX];
    size_t rid_len;
    int64_t last_seen;          /* monotonic ms                            */
    sl__consumer_t *consumers;
    bool local;
};

/* A queue costs this struct and its name while empty: no channel, no
 * coroutine, nothing sized by its limits. Ready jobs wait in one FIFO list
 * per priority; delivery runs on the engine when the queue is on the
 * node's run list (sl__queue_wake). */
struct sl__queue {
    sl__node_t *node;
    const sl__policy_t *pol;         /* n->policy, or its entry in
                                        n->policies                          */
    sl__job_t *rhead[SL__LEVELS], *rtail[SL__LEVELS]; /* READY by priority */
    uint32_t levels;                 /* bit p: rhead[p] non-empty            */
    uint32_t nconsumers;
    sl__consumer_t *consumers;
    sl__consumer_t *rr;              /* next consumer to try                 */
    sl__job_t *wait_head, *wait_tail;/* WAITING (block policy), FIFO          */
    sl__job_t *dead_head, *dead_tail;/* DEAD, FIFO, bounded by max-dead       */
    uint64_t ready, delayed, in_flight, dead, waiting;
    uint64_t published, delivered, acked, failed, retried, dropped, expired;
    bool paused, draining;
    bool runnable;                   /* on the node's run list               */
    bool idle_listed;                /* on the node's idle list              */
    bool admitting;                  /* s_admit is running                   */
    sl__queue_t *run_next;
    sl__queue_t *idle_prev, *idle_next;
    int64_t idle_since;              /* monotonic ms                         */
    sl__rates_t rates;               /* counters sampled per heartbeat      */
    size_t name_len;
    char name[];                     /* NUL-terminated                       */
};

/* Messages from the socket thread and in-process handlers to the engine.
 * Publish and Ack envelopes the socket thread could scan in place arrive
 * as SL__IN_PUBLISH / SL__IN_ACK; every other envelope as SL__IN_ENV. */
enum { SL__IN_ENV = 1, SL__IN_BAD, SL__IN_LOCAL_ACK, SL__IN_LOCAL_FAIL, SL__IN_LOCAL_RETRY,
       SL__IN_REGISTER, SL__IN_WAKE, SL__IN_CLUSTER, SL__IN_PUBLISH, SL__IN_ACK,
       SL__IN_CUT, SL__IN_CHECK, SL__IN_STORE };
/* SL__IN_STORE: a store request completed (ptr: sl_store_req_t *, owned by
 * the message; retain.c). */
/* SL__IN_CHECK: run sl__engine_check, offer its result (intptr_t) to the
 * promise channel in ptr. */
/* SL__IN_CUT: the socket thread cut peer rid off because it did not read
 * its replies; n = replies and requests it discarded (see io.c). The
 * engine forgets the peer: its consumers go, their leases are requeued. */
typedef struct {
    int kind;
    uint8_t rid[SL__RID_MAX];
    size_t rid_len;
    Sluice__V1__Envelope *env;  /* SL__IN_ENV, SL__IN_CLUSTER: owned by the
                                   message                                   */
    const char *nul_field;      /* SL__IN_ENV: a string field of env that
                                   held a NUL byte (static), or NULL          */
    int err;                    /* SL__IN_BAD: why                           */
    uint8_t job_id[16];         /* SL__IN_LOCAL_*                            */
    uint64_t lease_id;
    void *ptr;                  /* SL__IN_REGISTER: sl__reg_t *              */
    uint64_t corr;              /* SL__IN_PUBLISH, SL__IN_ACK                */
    uint64_t node_epoch;        /* SL__IN_PUBLISH: Publish.node_epoch        */
    size_t n;                   /* jobs or leases, in the same allocation    */
    sl__job_t **jobs;           /* SL__IN_PUBLISH: owned until published     */
    sl__jobwire_lease_t *leases;/* SL__IN_ACK                                */
} sl__in_t;

/* An in-process handler registration (sl_node_handle). */
typedef struct {
    sl__node_t *node;
    char *queue;
    int concurrency;
    sl_node_handler_fn fn;
    void *arg;
    int flags;
    sl_chan_t *jobs;            /* the local consumer's deliveries          */
    sl_chan_t *done;            /* promise: registration result             */
    _Atomic int live;           /* handler workers not yet returned         */
} sl__reg_t;

/* Encoded frames for the socket thread to send. */
typedef struct {
    uint8_t rid[SL__RID_MAX];
    size_t rid_len;
    size_t len;
    uint8_t buf[];
} sl__out_t;

/* In-process delivery (sl_node_handle): a private copy of what the
 * handler sees, queue name and payload in the same allocation. */
typedef struct {
    sl__node_t *node;
    sl_node_job_t view;
    sl__in_t *result;           /* made with it: carries the verdict back  */
    uint8_t id[16];
    uint64_t lease_id;
    uint8_t data[];
} sl__local_job_t;

/* Timer heap entry (engine-owned, lazy deletion by generation). */
enum { SL__T_DELAY = 1, SL__T_RETRY, SL__T_LEASE, SL__T_TTL };
/* A timer names its job by id and by the arming's sequence number, never
 * by pointer: the job may be acked and freed before the timer comes due. */
typedef struct {
    int64_t when;
    uint8_t id[16];
    uint64_t gen;
    int kind;
} sl__tmr_t;

struct sl__node {
    sl_node_opts_t o;
    char *endpoint;
    char *node_id;
    uint64_t epoch;
    void *zctx, *router;
    sl_chan_t *inbound, *outbound;
    sl_chan_t *engine_done;
    int stop_pipe[2];           /* wakes the socket thread                 */
    _Atomic int stopping;       /* 1 draining, 2 closing                   */
    int running;
    void *io_thread;            /* pthread_t *                             */
    sl__map_t *queues, *peers, *keys;
    sl__map_t *consumers;       /* (peer, queue) pointers -> consumer       */
    sl__policy_t policy;        /* the default, from the options            */
    sl__map_t *policies;        /* queue name -> sl__policy_t *, overrides
                                   kept while the node lives (a queue
                                   forgotten idle finds its own again)      */
    sl__queue_t *run_head, *run_tail; /* queues with deliveries to make     */
    sl__queue_t *idle_head, *idle_tail; /* idle queues, oldest first        */
    uint64_t queues_forgotten;  /* idle queues dropped                      */
    uint64_t oom;               /* requests refused or replies lost for
                                   want of memory                           */
    /* Every id the node knows, in one index (one probe per publish and
     * per ack): a job it holds (sl__job_t *), or a recently acked one
     * (an entry of the done ring, tagged SL__DONE_TAG). */
    sl__idmap_t *ids;
    sl__queue_t *last_queue;    /* the queue last looked up by name        */
    sl__map_t *done_keys;       /* done ring entries by idempotency key     */
    sl__done_t *done;           /* ring of max_done, made at the first ack  */
    uint64_t done_n, done_next; /* entries used; next slot to fill          */
    sl__job_t *expiry_head, *expiry_tail; /* leases of the node's lease
                                   time, in expiry order                    */
    sl__tmr_t *heap;
    size_t heap_n, heap_cap;
    size_t heap_compact_at;     /* rebuild the heap when it reaches this   */
    uint64_t next_lease;
    uint64_t timer_seq;
    uint64_t rng;               /* xorshift state for backoff jitter      */
    int64_t wall_off;           /* wall ms - monotonic ms, read once per
                                   heartbeat: lease expiries reported in wall
                                   time then never go back between touches */
    uint64_t waiting_total;
    uint64_t bad_messages;
    uint64_t peers_cut;         /* SL__IN_CUT received                     */
    uint64_t replies_dropped;   /* ... and what they discarded in all      */
    _Atomic uint64_t replies_departed; /* io.c: to peers gone (EHOSTUNREACH) */
    _Atomic uint64_t cut_discarded;    /* io.c: for cut peers after the cut */
    _Atomic uint64_t io_oom;           /* io.c: messages dropped for want of
                                          memory (the client resends)       */
    int64_t last_heartbeat;
    int64_t next_beat;          /* monotonic ms: the next heartbeat slice   */
    size_t beat_cursor;         /* where it starts in n->peers              */
    size_t gone;                /* peers forgotten since the last interval  */
    sl__peer_t *local_peer;
    int64_t stop_deadline;      /* monotonic ms, when stopping            */
    sl_node_report_t report;    /* what remained at stop                  */
    int stop_rc;
    sl__reg_t **regs;           /* in-process handlers, freed at destroy  */
    size_t nregs;
    sl__member_t *cluster;     /* coordinator link, member epoch (member.c) */
    sl_store_t *store;          /* retries kept outside the node; NULL: none */
    int64_t next_take;          /* monotonic ms: the next RETRY_TAKE slice  */
    size_t take_cursor;         /* where it starts in n->queues             */
    uint64_t store_retries_put, store_retries_taken, store_errors;
};

/* n->ids values: a done ring entry has bit 0 set. */
#define SL__DONE_TAG ((uintptr_t)1)

/* The job held with this id, or NULL. */
static inline sl__job_t *sl__job_get(sl__node_t *n, const uint8_t id[16])
{
    void *v = sl__idmap_get(n->ids, id);
    return (uintptr_t)v & SL__DONE_TAG ? NULL : v;
}

/* job.c: NULL if out of memory. Caller owns (sl__job_free). */
sl__job_t *sl__job_new(const uint8_t *raw, size_t len, const sl__pb_job_t *v);
void sl__job_free(sl__job_t *j);

/* dedup.c */
/* The idempotency index key "queue\0key" into buf: its length, 0 when
 * there is no key, -1 when it does not fit. */
int sl__idem_key(const char *queue, const char *ikey, size_t ikey_len, char *buf, size_t size);
/* Out of n->ids and n->keys (it can no longer be found). */
void sl__job_unindex(sl__node_t *n, sl__job_t *j);
/* Unindex and free. */
void sl__job_forget(sl__node_t *n, sl__job_t *j);
/* Remember an acked job (still indexed) in the done ring; it takes the
 * job's place in n->ids. */
void sl__done_remember(sl__node_t *n, const sl__job_t *j);
void sl__done_free_all(sl__node_t *n);
/* Prefetch n->ids where the next k acks push old done entries out. */
void sl__done_prefetch(sl__node_t *n, size_t k);

/* timer.c: SL_OK or SL_ENOMEM (nothing armed). */
int sl__timer_arm(sl__node_t *n, sl__job_t *j, int kind, int64_t when);
void sl__timer_run(sl__node_t *n);

/* pubctx.c: NULL if out of memory. */
sl__pubctx_t *sl__pub_new(const uint8_t *rid, size_t rid_len, uint64_t corr, sl__job_t **jobs,
                          size_t n);
void sl__pub_settle(sl__node_t *n, sl__pubctx_t *ctx, size_t i, int status, int code,
                    const char *reason, uint32_t retry_after_ms);
void sl__pub_send(sl__node_t *n, sl__pubctx_t *ctx);
void sl__pub_abandon(sl__pubctx_t *ctx);

/* queue.c: queues and the job state machine */
/* The queue called name, made when create is set and there is none:
 * NULL with *err SL_EINVAL (invalid name), SL_ELIMIT (max-queues) or
 * SL_ENOMEM. Borrowed: valid until it is forgotten idle (never while it
 * holds jobs or consumers, and never within an engine turn). */
sl__queue_t *sl__queue_get(sl__node_t *n, const char *name, bool create, int *err);
/* Move j to state `to` (0: gone, freed) for reason why; reason is the
 * dead reason when to is SL__J_DEAD. */
void sl__job_move(sl__node_t *n, sl__job_t *j, int to, sl__why_t why, const char *reason);
/* Place a published job (owned by the call) and settle its confirm. */
void sl__queue_publish(sl__node_t *n, sl__job_t *j, sl__pubctx_t *ctx, size_t i);
/* The queue changed so that deliveries may be possible: put it on the
 * run list (sl__deliver_run). */
void sl__queue_wake(sl__queue_t *q);
void sl__queue_timer(sl__node_t *n, sl__tmr_t *t);
/* q's stats into out; its policy as text into policy (size bytes; may be
 * NULL), which out then borrows. */
void sl__queue_stats(sl__queue_t *q, Sluice__V1__QueueStats *out, char *policy, size_t size);
/* Forget queues idle for queue-idle-ms; their counters go with them. */
void sl__queue_sweep(sl__node_t *n, int64_t now);
/* Set keys of queue name's policy (spec "key=value,..."): 0, or -1 with
 * why; the queue, if it exists, follows at once. */
int sl__queue_set_policy(sl__node_t *n, const char *name, const char *spec, char *why,
                         size_t size);
/* Re-judge whether q is idle (after a consumer or a flag changed). */
void sl__queue_idle_check(sl__node_t *n, sl__queue_t *q);
/* 0 if q's counters agree with its lists, else a line number: for asserts
 * and tests (walks every list: O(jobs)). */
int sl__queue_check(sl__queue_t *q);
void sl__queue_free(sl__queue_t *q);

/* Place a job taken back from the store (a retry come due), READY, as
 * publish would have: indexed, its policy's defaults filled in. Takes j.
 * SL_OK; SL_ESTATE if the node holds or recently acked that id (j freed);
 * SL_EINVAL / SL_ELIMIT / SL_ENOMEM as sl__queue_get (j freed). */
int sl__queue_adopt(sl__node_t *n, const char *queue, sl__job_t *j);

/* deadletter.c: Admin DEAD_LIST, DEAD_SHOW, DEAD_REQUEUE, DEAD_PURGE on
 * q's dead jobs, answered in r (e set and pointed to on a refusal). What r
 * points to lives in *scratch until sl__dead_release. */
typedef struct {
    void *recs, *ptrs;
    char *cursor;
} sl__dead_scratch_t;
void sl__dead_admin(sl__node_t *n, sl__queue_t *q, const Sluice__V1__Admin *a,
                    Sluice__V1__AdminReply *r, Sluice__V1__Error *e, sl__dead_scratch_t *scratch);
void sl__dead_release(sl__dead_scratch_t *scratch);

/* retain.c: retries kept in the store (--redis) */
int sl__retain_start(sl__node_t *n);
void sl__retain_stop(sl__node_t *n);
/* j just moved to RETRY with a local timer delay_ms away: schedule it in
 * the store too. */
void sl__retain_retry(sl__node_t *n, sl__job_t *j, int64_t delay_ms);
/* j's retry timer came due: true if it must wait for its RETRY_PUT (the
 * timer was armed again). */
bool sl__retain_wait(sl__node_t *n, sl__job_t *j);
void sl__retain_done(sl__node_t *n, sl_store_req_t *req);
void sl__retain_tick(sl__node_t *n, int64_t now);

/* deliver.c: delivery and leases */
/* Deliver what the run list's queues can, within budget jobs; true if
 * queues are left on the run list (call again before sleeping). */
bool sl__deliver_run(sl__node_t *n, int budget);
int sl__queue_ack(sl__node_t *n, const Sluice__V1__Lease *l, Sluice__V1__Error__Code *code);
int sl__queue_fail(sl__node_t *n, const Sluice__V1__Lease *l, bool retryable, const char *error,
                   Sluice__V1__Error__Code *code);
int sl__queue_touch(sl__node_t *n, const Sluice__V1__Lease *l, uint32_t extend_ms,
                    Sluice__V1__Lease *out, Sluice__V1__Error__Code *code);
/* Drop a consumer: its leases go back (SL__WHY_RETURN); returns how many. */
uint32_t sl__consumer_drop(sl__node_t *n, sl__consumer_t *c);
void sl__lease_expiry(sl__node_t *n, int64_t now);
/* j's lease ran out: back to READY, or DEAD when its attempts are spent. */
void sl__lease_expiry_one(sl__node_t *n, sl__job_t *j);
/* Take j out of its holder's lease list and the expiry list. */
void sl__lease_unlink(sl__job_t *j);
/* Link j, just leased to c, into c's lease list and the expiry list. */
void sl__lease_link(sl__node_t *n, sl__consumer_t *c, sl__job_t *j);
const char *sl__overflow_name(sl_overflow_t o);

/* node.c */
int64_t sl__mono_ms(void);

/* io.c: the socket thread and frames */
void *sl__node_io_main(void *node);
/* A new inbound message with room for n elements of size each after it;
 * NULL if out of memory. Caller owns (sl__in_free). */
sl__in_t *sl__in_new(size_t n, size_t size);
void sl__in_free(sl__in_t *m);

/* peer.c */
/* The peer with this routing id, made (and greeted with a Heartbeat) on
 * first sight; its last_seen refreshed. Borrowed until sl__peer_drop.
 * NULL if out of memory. */
sl__peer_t *sl__peer_get(sl__node_t *n, const uint8_t *rid, size_t len);
void sl__peer_drop(sl__node_t *n, sl__peer_t *p);
/* The peer's consumer of q, or NULL: one hash probe. */
sl__consumer_t *sl__consumer_find(sl__node_t *n, sl__peer_t *p, sl__queue_t *q);
/* A new consumer of q for p, no credit yet; NULL if out of memory. */
sl__consumer_t *sl__consumer_new(sl__node_t *n, sl__peer_t *p, sl__queue_t *q);
/* Heartbeat the next slice of the peers; forget the silent ones among
 * them (returns how many). */
size_t sl__heartbeat(sl__node_t *n);

/* admin.c */
void sl__admin(sl__node_t *n, sl__peer_t *p, uint64_t corr, Sluice__V1__Admin *a);

/* local.c */
void sl__local_register(sl__node_t *n, sl__reg_t *r);
void sl__local_settle(sl__node_t *n, sl__in_t *m);

/* engine.c */
void *sl__engine_main(void *node);
/* 0, or the line of the first failed invariant (see sl__node_check). */
int sl__engine_check(sl__node_t *n);
void sl__send(sl__node_t *n, const uint8_t *rid, size_t rid_len, Sluice__V1__Envelope *env);
/* A frame of len bytes for rid, to be filled and given to sl__out_send;
 * NULL if out of memory (counted in n->oom). */
sl__out_t *sl__out_new(sl__node_t *n, const uint8_t *rid, size_t rid_len, size_t len);
/* Queue o for the socket thread; takes ownership. */
void sl__out_send(sl__node_t *n, sl__out_t *o);
void sl__send_error(sl__node_t *n, const uint8_t *rid, size_t rid_len, uint64_t corr,
                    Sluice__V1__Error__Code code, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

#endif
