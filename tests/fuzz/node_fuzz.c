/* node_fuzz.c -- libFuzzer target for the node's message handling: three
 * embedded nodes (one per overflow policy) are fed arbitrary frames and
 * well-formed envelopes built from the input (node_fuzz.h has the format),
 * and after every input each node it touched must still answer Admin STATS
 * within a deadline, with sane counters.
 *
 * The nodes start once per process on tcp://127.0.0.1:0 (a node makes its
 * own ZeroMQ context, so inproc from ours could not reach it), each with an
 * in-process handler on queue q3 (node 1's on the blocking pool), and small
 * limits and short timers, so that full queues, expiring leases, retries and
 * departed peers are all a few bytes away. State carries over from input to
 * input, as it does for a real node. SLUICE_FUZZ_DEADLINE_MS (default 5000)
 * bounds the wait for a reply; SLUICE_FUZZ_TRACE=1 prints each op as it
 * runs. A failed check prints why and aborts. */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "node_fuzz.h"
#include "sluice.pb-c.h"
#include "sluice/node.h"
#include "sluice/sched.h"

#define NODES 3
#define QUEUES 4
#define LEASES 64
#define MAX_FRAME 4096
#define WAIT_BUDGET_MS 40
#define SYNC_BUDGET 8

#define CHECK(cond, ...)                                                                  \
    do {                                                                                  \
        if (!(cond)) {                                                                    \
            fprintf(stderr, "node_fuzz: check failed: %s: ", #cond);                      \
            fprintf(stderr, __VA_ARGS__);                                                 \
            fputc('\n', stderr);                                                          \
            abort();                                                                      \
        }                                                                                 \
    } while (0)

typedef struct {
    uint8_t job_id[16];
    uint64_t lease_id, epoch;
} lease_t;

typedef struct {
    sl_node_t *node;
    char endpoint[256];
    char node_id[16];
    uint64_t epoch;
    void *sock[2];          /* 0: steady, answers the liveness check; 1: reconnectable */
    lease_t leases[LEASES]; /* ring of leases seen in Deliver and LeaseReply */
    size_t nleases, next_lease;
} fnode_t;

static struct {
    bool ready;
    void *zctx;
    fnode_t n[NODES];
    int64_t deadline_ms;
    uint64_t seq;           /* fresh job ids, corr values, routing ids */
    uint8_t last_id[16];
    bool trace;             /* SLUICE_FUZZ_TRACE=1: one line per op on stderr */
} F;

static int64_t s_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t s_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* --- reading the input ---------------------------------------------------- */

typedef struct {
    const uint8_t *p;
    size_t n;
} rd_t;

static uint8_t rd_u8(rd_t *r)
{
    if (!r->n)
        return 0;
    r->n--;
    return *r->p++;
}

static uint64_t rd_uint(rd_t *r, int bytes)
{
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++)
        v |= (uint64_t)rd_u8(r) << (8 * i);
    return v;
}

/* Borrowed until the input is done; *len may be 0. */
static const uint8_t *rd_chunk(rd_t *r, size_t *len)
{
    size_t l = rd_u8(r);
    if (l == 255)
        l = rd_uint(r, 2);
    if (l > r->n)
        l = r->n;
    const uint8_t *p = r->p;
    r->p += l;
    r->n -= l;
    *len = l;
    return p;
}

/* A chunk as a NUL-terminated string in buf (cut at cap - 1 bytes). */
static char *rd_str(rd_t *r, char *buf, size_t cap)
{
    size_t len;
    const uint8_t *p = rd_chunk(r, &len);
    if (len >= cap)
        len = cap - 1;
    memcpy(buf, p, len);
    buf[len] = '\0';
    return buf;
}

static ProtobufCBinaryData rd_bytes(rd_t *r)
{
    size_t len;
    const uint8_t *p = rd_chunk(r, &len);
    return (ProtobufCBinaryData){.len = len, .data = (uint8_t *)p}; /* packing only reads */
}

static char *rd_queue(rd_t *r, char *buf, size_t cap)
{
    uint8_t q = rd_u8(r);
    if (q < 0xF0)
        snprintf(buf, cap, "q%u", q % QUEUES);
    else if (q == 0xFF)
        buf[0] = '\0';
    else
        rd_str(r, buf, cap);
    return buf;
}

/* --- sockets -------------------------------------------------------------- */

static void s_sock_open(fnode_t *f, int s, const uint8_t *rid, size_t rid_len)
{
    void *sock = zmq_socket(F.zctx, ZMQ_DEALER);
    CHECK(sock != NULL, "zmq_socket: %s", zmq_strerror(errno));
    int linger = 0, tmo = (int)F.deadline_ms;
    zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(sock, ZMQ_SNDTIMEO, &tmo, sizeof tmo);
    if (rid_len)
        CHECK(zmq_setsockopt(sock, ZMQ_ROUTING_ID, rid, rid_len) == 0, "routing id: %s",
              zmq_strerror(errno));
    CHECK(zmq_connect(sock, f->endpoint) == 0, "connect %s: %s", f->endpoint,
          zmq_strerror(errno));
    f->sock[s] = sock;
}

/* Send the frames of one message; a send the node does not take within the
 * deadline is dropped (the liveness check then reports the node stuck). */
static void s_send_frames(void *sock, const uint8_t *const *frames, const size_t *lens, int n)
{
    for (int i = 0; i < n; i++)
        if (zmq_send(sock, frames[i], lens[i], i + 1 < n ? ZMQ_SNDMORE : 0) < 0)
            return;
}

static void s_send_env(fnode_t *f, int s, const Sluice__V1__Envelope *env)
{
    size_t len = sluice__v1__envelope__get_packed_size(env);
    uint8_t *buf = malloc(len ? len : 1);
    CHECK(buf != NULL, "out of memory");
    sluice__v1__envelope__pack(env, buf);
    const uint8_t *frames[1] = {buf};
    s_send_frames(f->sock[s], frames, &len, 1);
    free(buf);
}

static void s_keep_lease(fnode_t *f, const Sluice__V1__Lease *l)
{
    if (!l || l->job_id.len != 16)
        return;
    lease_t *k = &f->leases[f->next_lease];
    memcpy(k->job_id, l->job_id.data, 16);
    k->lease_id = l->lease_id;
    k->epoch = l->epoch;
    f->next_lease = (f->next_lease + 1) % LEASES;
    if (f->nleases < LEASES)
        f->nleases++;
}

/* What every node reply must satisfy; an AdminReply for `want` also has
 * its counters checked. Returns true for that reply. */
static bool s_check_reply(fnode_t *f, const Sluice__V1__Envelope *env, uint64_t want)
{
    switch (env->body_case) {
    case SLUICE__V1__ENVELOPE__BODY_DELIVER:
        CHECK(env->deliver->n_deliveries >= 1 && env->deliver->n_deliveries <= 64,
              "deliver with %zu deliveries", env->deliver->n_deliveries);
        for (size_t i = 0; i < env->deliver->n_deliveries; i++) {
            Sluice__V1__Delivery *d = env->deliver->deliveries[i];
            CHECK(d->job && d->lease, "delivery without job or lease");
            CHECK(d->lease->epoch == f->epoch, "lease epoch %" PRIx64 " is not the node's",
                  d->lease->epoch);
            CHECK(d->job->id.len == 16, "delivered job id of %zu bytes", d->job->id.len);
            s_keep_lease(f, d->lease);
        }
        return false;
    case SLUICE__V1__ENVELOPE__BODY_LEASE_REPLY:
        if (!env->lease_reply->error)
            s_keep_lease(f, env->lease_reply->lease);
        return false;
    case SLUICE__V1__ENVELOPE__BODY_HEARTBEAT:
        CHECK(env->heartbeat->epoch == f->epoch, "heartbeat epoch changed");
        CHECK(env->heartbeat->protocol == 1, "heartbeat protocol %u", env->heartbeat->protocol);
        return false;
    case SLUICE__V1__ENVELOPE__BODY_SUBSCRIBE_REPLY:
    case SLUICE__V1__ENVELOPE__BODY_CONFIRM:
    case SLUICE__V1__ENVELOPE__BODY_ERROR:
        return false;
    case SLUICE__V1__ENVELOPE__BODY_ADMIN_REPLY: {
        Sluice__V1__AdminReply *r = env->admin_reply;
        if (env->corr != want)
            return false;
        CHECK(!r->error, "stats failed: %s", r->error->text);
        CHECK(r->epoch == f->epoch, "node epoch changed");
        CHECK(strcmp(r->node_id, f->node_id) == 0, "node id '%s'", r->node_id);
        for (size_t i = 0; i < r->n_queues; i++) {
            Sluice__V1__QueueStats *q = r->queues[i];
            /* A gauge that went below zero shows up as a huge number. */
            CHECK(q->depth < (1u << 30) && q->delayed < (1u << 30) && q->in_flight < (1u << 30) &&
                      q->dead < (1u << 30),
                  "queue '%s' accounting broke: depth %" PRIu64 " delayed %" PRIu64
                  " in_flight %" PRIu64 " dead %" PRIu64,
                  q->name, q->depth, q->delayed, q->in_flight, q->dead);
        }
        return true;
    }
    default:
        CHECK(0, "node sent body kind %d to a client", (int)env->body_case);
    }
    return false;
}

/* Read what socket s has: until `deadline` (monotonic ms) or until the
 * AdminReply with corr `want` (0: none) arrives. True if it arrived. */
static bool s_read(fnode_t *f, int s, int64_t deadline, uint64_t want)
{
    void *sock = f->sock[s];
    for (;;) {
        zmq_msg_t msg;
        zmq_msg_init(&msg);
        if (zmq_msg_recv(&msg, sock, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&msg);
            CHECK(errno == EAGAIN || errno == EINTR, "recv: %s", zmq_strerror(errno));
            int64_t left = deadline - s_now_ms();
            if (left <= 0)
                return false;
            zmq_pollitem_t it = {.socket = sock, .events = ZMQ_POLLIN};
            zmq_poll(&it, 1, (long)left);
            continue;
        }
        CHECK(!zmq_msg_more(&msg), "node sent a multi-frame message to a DEALER");
        Sluice__V1__Envelope *env =
            sluice__v1__envelope__unpack(NULL, zmq_msg_size(&msg), zmq_msg_data(&msg));
        CHECK(env != NULL, "node sent an undecodable envelope of %zu bytes", zmq_msg_size(&msg));
        zmq_msg_close(&msg);
        bool got = s_check_reply(f, env, want);
        sluice__v1__envelope__free_unpacked(env, NULL);
        if (got && want)
            return true;
    }
}

static void s_drain(fnode_t *f)
{
    s_read(f, 0, 0, 0);
    s_read(f, 1, 0, 0);
}

/* The node must answer Admin STATS on socket s within the deadline. */
static void s_alive(fnode_t *f, int s)
{
    Sluice__V1__Admin a = SLUICE__V1__ADMIN__INIT;
    a.op = SLUICE__V1__ADMIN__OP__STATS;
    a.queue = "";
    Sluice__V1__Envelope env = SLUICE__V1__ENVELOPE__INIT;
    env.corr = (0xA11FEull << 40) | ++F.seq;
    env.body_case = SLUICE__V1__ENVELOPE__BODY_ADMIN;
    env.admin = &a;
    int64_t t0 = s_now_ms();
    s_send_env(f, s, &env);
    CHECK(s_read(f, s, t0 + F.deadline_ms, env.corr),
          "node %s (%s) did not answer STATS within %" PRId64 " ms", f->node_id, f->endpoint,
          F.deadline_ms);
}

/* The in-process handler serving q3 on every node (beside any wire
 * consumer): the payload's first byte picks ack, retry or fail. */
static int s_handler(const sl_node_job_t *job, void *arg)
{
    (void)arg;
    CHECK(job->id && job->queue && strcmp(job->queue, "q3") == 0, "handler got a job of '%s'",
          job->queue ? job->queue : "(null)");
    uint8_t b = job->len ? ((const uint8_t *)job->payload)[0] : 0;
    return b % 3; /* SL_NODE_ACK, SL_NODE_RETRY, SL_NODE_FAIL */
}

/* --- setup and teardown ------------------------------------------------------- */

/* At exit: stop and destroy the nodes as an embedding program would, then
 * the scheduler, so that LeakSanitizer's exit check sees only real leaks
 * (while the nodes run, memory held by a parked coroutine looks leaked:
 * LSan does not scan coroutine stacks). Not reached after a crash. */
static void s_teardown(void)
{
    if (!F.ready)
        return;
    F.ready = false;
    for (int i = 0; i < NODES; i++) {
        fnode_t *f = &F.n[i];
        for (int s = 0; s < 2; s++)
            zmq_close(f->sock[s]);
        sl_node_report_t left;
        int rc = sl_node_stop(f->node, 0, &left);
        CHECK(rc == SL_OK || rc == SL_ETIMEDOUT, "sl_node_stop: %s", sl_strerror(rc));
        sl_node_destroy(&f->node);
    }
    zmq_ctx_term(F.zctx);
    int rc = sl_sched_shutdown(F.deadline_ms);
    CHECK(rc == SL_OK, "scheduler did not stop within %" PRId64 " ms: %s", F.deadline_ms,
          sl_strerror(rc));
}

static void s_setup(void)
{
    const char *d = getenv("SLUICE_FUZZ_DEADLINE_MS");
    F.deadline_ms = d && atoll(d) > 0 ? atoll(d) : 5000;
    F.trace = getenv("SLUICE_FUZZ_TRACE") && atoi(getenv("SLUICE_FUZZ_TRACE")) > 0;
    sl_sched_opts_t so = {.workers = 2};
    int rc = sl_sched_start(&so);
    CHECK(rc == SL_OK || rc == SL_ESTATE, "scheduler: %s", sl_strerror(rc));
    F.zctx = zmq_ctx_new();
    CHECK(F.zctx != NULL, "zmq_ctx_new");
    for (int i = 0; i < NODES; i++) {
        fnode_t *f = &F.n[i];
        snprintf(f->node_id, sizeof f->node_id, "fuzz-%d", i);
        sl_node_opts_t o;
        sl_node_opts_default(&o);
        o.endpoint = "tcp://127.0.0.1:0";
        o.node_id = f->node_id;
        o.overflow = (sl_overflow_t)i;
        o.heartbeat_ms = 20;   /* a silent peer is gone after 60 ms    */
        o.lease_ms = 10;       /* unacked deliveries come back quickly */
        o.max_length = 8;      /* full queues are easy to reach        */
        o.max_waiting = 16;
        o.max_dead = 8;
        o.max_attempts = 3;
        o.backoff_base_ms = 1;
        o.backoff_max_ms = 10;
        o.max_frame = MAX_FRAME;
        o.max_job = 512;
        f->node = sl_node_new(&o, &rc);
        CHECK(f->node != NULL, "sl_node_new: %s", sl_strerror(rc));
        rc = sl_node_start(f->node);
        CHECK(rc == SL_OK, "sl_node_start: %s", sl_strerror(rc));
        snprintf(f->endpoint, sizeof f->endpoint, "%s", sl_node_endpoint(f->node));
        f->epoch = sl_node_epoch(f->node);
        rc = sl_node_handle(f->node, "q3", 2, s_handler, NULL, i == 1 ? SL_NODE_BLOCKING : 0);
        CHECK(rc == SL_OK, "sl_node_handle: %s", sl_strerror(rc));
        s_sock_open(f, 0, NULL, 0);
        s_sock_open(f, 1, NULL, 0);
        s_alive(f, 0);
        s_alive(f, 1);
    }
    F.ready = true;
    atexit(s_teardown);
}

/* --- ops -------------------------------------------------------------------- */

static void s_op_raw(fnode_t *f, int s, rd_t *r)
{
    int n = 1 + rd_u8(r) % 4;
    const uint8_t *frames[4];
    size_t lens[4];
    for (int i = 0; i < n; i++)
        frames[i] = rd_chunk(r, &lens[i]);
    s_send_frames(f->sock[s], frames, lens, n);
}

typedef struct {
    Sluice__V1__Job job;
    Sluice__V1__Job__HeadersEntry hdr, *hdrp;
    uint8_t id[16];
    char queue[160], key[8], hkey[64], hval[64], breaker[64];
} jobbuf_t;

static void s_job(fnode_t *f, rd_t *r, jobbuf_t *b)
{
    Sluice__V1__Job *j = &b->job;
    sluice__v1__job__init(j);
    uint8_t flags = rd_u8(r);
    j->queue = rd_queue(r, b->queue, sizeof b->queue);
    uint8_t pr = rd_u8(r);
    j->priority = pr < 240 ? pr % 10 : pr;
    switch (flags & 3) {
    case 2:
        memcpy(b->id, F.last_id, 16);
        j->id = (ProtobufCBinaryData){16, b->id};
        break;
    case 3:
        j->id = rd_bytes(r);
        break;
    default: {
        uint64_t seq = ++F.seq;
        memcpy(b->id, "fuzzjob:", 8);
        memcpy(b->id + 8, &seq, 8);
        b->id[7] = (uint8_t)('0' + (f - F.n));
        memcpy(F.last_id, b->id, 16);
        j->id = (ProtobufCBinaryData){16, b->id};
    }
    }
    j->payload = rd_bytes(r);
    bool raw = flags & 64;
    if (flags & 4)
        j->not_before_ms = raw ? (int64_t)rd_uint(r, 8) : s_wall_ms() + rd_u8(r);
    if (flags & 8)
        j->deadline_ms = raw ? (int64_t)rd_uint(r, 8) : s_wall_ms() + (int8_t)rd_u8(r);
    if (flags & 16) {
        snprintf(b->key, sizeof b->key, "k%u", rd_u8(r) % 8);
        j->idempotency_key = b->key;
    }
    if (flags & 32)
        j->max_attempts = rd_u8(r) % 5;
    if (raw) {
        sluice__v1__job__headers_entry__init(&b->hdr);
        b->hdr.key = rd_str(r, b->hkey, sizeof b->hkey);
        b->hdr.value = rd_str(r, b->hval, sizeof b->hval);
        b->hdrp = &b->hdr;
        j->n_headers = 1;
        j->headers = &b->hdrp;
        j->trace_id = rd_bytes(r);
        j->breaker_key = rd_str(r, b->breaker, sizeof b->breaker);
    }
}

static void s_op_publish(fnode_t *f, int s, rd_t *r)
{
    jobbuf_t b[4];
    Sluice__V1__Job *jobs[4];
    size_t n = 1 + rd_u8(r) % 4;
    for (size_t i = 0; i < n; i++) {
        s_job(f, r, &b[i]);
        jobs[i] = &b[i].job;
    }
    Sluice__V1__Publish p = SLUICE__V1__PUBLISH__INIT;
    p.n_jobs = n;
    p.jobs = jobs;
    Sluice__V1__Envelope env = SLUICE__V1__ENVELOPE__INIT;
    env.corr = ++F.seq;
    env.body_case = SLUICE__V1__ENVELOPE__BODY_PUBLISH;
    env.publish = &p;
    s_send_env(f, s, &env);
}

static uint32_t rd_credit(rd_t *r)
{
    uint8_t c = rd_u8(r);
    return c == 255 ? (uint32_t)rd_uint(r, 4) : c;
}

static void s_op_queue_msg(fnode_t *f, int s, rd_t *r, int kind)
{
    char queue[160], consumer[64];
    Sluice__V1__Subscribe sub = SLUICE__V1__SUBSCRIBE__INIT;
    Sluice__V1__Credit cr = SLUICE__V1__CREDIT__INIT;
    Sluice__V1__Unsubscribe un = SLUICE__V1__UNSUBSCRIBE__INIT;
    Sluice__V1__Envelope env = SLUICE__V1__ENVELOPE__INIT;
    env.corr = ++F.seq;
    rd_queue(r, queue, sizeof queue);
    if (kind == NF_SUBSCRIBE) {
        sub.queue = queue;
        sub.credit = rd_credit(r);
        sub.consumer_id = rd_str(r, consumer, sizeof consumer);
        env.body_case = SLUICE__V1__ENVELOPE__BODY_SUBSCRIBE;
        env.subscribe = &sub;
    } else if (kind == NF_CREDIT) {
        cr.queue = queue;
        cr.credit = rd_credit(r);
        env.body_case = SLUICE__V1__ENVELOPE__BODY_CREDIT;
        env.credit = &cr;
    } else {
        un.queue = queue;
        env.body_case = SLUICE__V1__ENVELOPE__BODY_UNSUBSCRIBE;
        env.unsubscribe = &un;
    }
    s_send_env(f, s, &env);
}

/* Fill *l from the input (see "lease" in node_fuzz.h); NULL for none. */
static Sluice__V1__Lease *rd_lease(fnode_t *f, rd_t *r, Sluice__V1__Lease *l, uint8_t *idbuf)
{
    uint8_t sel = rd_u8(r), mut = rd_u8(r);
    sluice__v1__lease__init(l);
    if (sel == 0xFF || f->nleases == 0) {
        l->job_id = rd_bytes(r);
        l->lease_id = rd_uint(r, 8);
        l->epoch = (mut & 1) ? f->epoch : rd_uint(r, 8);
        return l;
    }
    /* sel 0 is the newest lease, 1 the one before, ... */
    const lease_t *k = &f->leases[(f->next_lease + LEASES - 1 - sel % f->nleases) % LEASES];
    memcpy(idbuf, k->job_id, 16);
    l->job_id = (ProtobufCBinaryData){16, idbuf};
    l->lease_id = k->lease_id;
    l->epoch = k->epoch;
    switch (mut % 8) {
    case 4: l->lease_id ^= 1u + (mut >> 3); break;
    case 5: l->epoch ^= 2u + (mut >> 3); break;
    case 6: l->job_id.len = (mut >> 3) % 16; break;
    case 7: return NULL;
    default: break;
    }
    return l;
}

static void s_op_ack(fnode_t *f, int s, rd_t *r)
{
    Sluice__V1__AckItem items[4], *ip[4];
    Sluice__V1__Lease leases[4];
    uint8_t ids[4][16];
    size_t n = 1 + rd_u8(r) % 4;
    for (size_t i = 0; i < n; i++) {
        sluice__v1__ack_item__init(&items[i]);
        items[i].lease = rd_lease(f, r, &leases[i], ids[i]);
        items[i].result = rd_bytes(r);
        ip[i] = &items[i];
    }
    Sluice__V1__Ack a = SLUICE__V1__ACK__INIT;
    a.n_items = n;
    a.items = ip;
    Sluice__V1__Envelope env = SLUICE__V1__ENVELOPE__INIT;
    env.corr = ++F.seq;
    env.body_case = SLUICE__V1__ENVELOPE__BODY_ACK;
    env.ack = &a;
    s_send_env(f, s, &env);
}

static void s_op_fail_touch(fnode_t *f, int s, rd_t *r, int kind)
{
    Sluice__V1__Lease lease;
    uint8_t id[16];
    char error[128];
    Sluice__V1__Fail fl = SLUICE__V1__FAIL__INIT;
    Sluice__V1__Touch t = SLUICE__V1__TOUCH__INIT;
    Sluice__V1__Envelope env = SLUICE__V1__ENVELOPE__INIT;
    env.corr = ++F.seq;
    if (kind == NF_FAIL) {
        fl.lease = rd_lease(f, r, &lease, id);
        fl.retryable = rd_u8(r) & 1;
        fl.error = rd_str(r, error, sizeof error);
        env.body_case = SLUICE__V1__ENVELOPE__BODY_FAIL;
        env.fail = &fl;
    } else {
        t.lease = rd_lease(f, r, &lease, id);
        t.extend_ms = (uint32_t)rd_uint(r, 2);
        env.body_case = SLUICE__V1__ENVELOPE__BODY_TOUCH;
        env.touch = &t;
    }
    s_send_env(f, s, &env);
}

static void s_op_admin(fnode_t *f, int s, rd_t *r)
{
    char queue[160];
    Sluice__V1__Admin a = SLUICE__V1__ADMIN__INIT;
    uint8_t op = rd_u8(r) % 5;
    a.op = op < 4 ? (Sluice__V1__Admin__Op)op : (Sluice__V1__Admin__Op)(rd_u8(r) + 4);
    a.queue = rd_queue(r, queue, sizeof queue);
    Sluice__V1__Envelope env = SLUICE__V1__ENVELOPE__INIT;
    env.corr = ++F.seq;
    env.body_case = SLUICE__V1__ENVELOPE__BODY_ADMIN;
    env.admin = &a;
    s_send_env(f, s, &env);
}

/* Kinds only a node should send, and an envelope with no body. */
static void s_op_odd(fnode_t *f, int s, rd_t *r)
{
    char text[64];
    Sluice__V1__Envelope env = SLUICE__V1__ENVELOPE__INIT;
    Sluice__V1__Heartbeat hb = SLUICE__V1__HEARTBEAT__INIT;
    Sluice__V1__JobConfirm jc = SLUICE__V1__JOB_CONFIRM__INIT, *jcp = &jc;
    Sluice__V1__PublishConfirm pc = SLUICE__V1__PUBLISH_CONFIRM__INIT;
    Sluice__V1__Job job = SLUICE__V1__JOB__INIT;
    Sluice__V1__Lease lease = SLUICE__V1__LEASE__INIT;
    Sluice__V1__Delivery dl = SLUICE__V1__DELIVERY__INIT, *dlp = &dl;
    Sluice__V1__Deliver dv = SLUICE__V1__DELIVER__INIT;
    Sluice__V1__LeaseReply lr = SLUICE__V1__LEASE_REPLY__INIT;
    Sluice__V1__Error er = SLUICE__V1__ERROR__INIT;
    Sluice__V1__AdminReply ar = SLUICE__V1__ADMIN_REPLY__INIT;
    env.corr = rd_uint(r, 2);
    switch (rd_u8(r) % 7) {
    case 0:
        hb.node_id = rd_str(r, text, sizeof text);
        hb.epoch = rd_u8(r) & 1 ? f->epoch : rd_uint(r, 8);
        hb.sent_ms = (int64_t)rd_uint(r, 8);
        hb.interval_ms = (uint32_t)rd_uint(r, 4);
        env.body_case = SLUICE__V1__ENVELOPE__BODY_HEARTBEAT;
        env.heartbeat = &hb;
        break;
    case 1:
        jc.id = rd_bytes(r);
        jc.status = (Sluice__V1__JobConfirm__Status)(rd_u8(r) % 4);
        pc.n_confirms = 1;
        pc.confirms = &jcp;
        env.body_case = SLUICE__V1__ENVELOPE__BODY_CONFIRM;
        env.confirm = &pc;
        break;
    case 2:
        job.id = rd_bytes(r);
        job.queue = rd_str(r, text, sizeof text);
        lease.job_id = job.id;
        lease.lease_id = rd_uint(r, 8);
        lease.epoch = f->epoch;
        dl.job = &job;
        dl.lease = &lease;
        dv.n_deliveries = 1;
        dv.deliveries = &dlp;
        env.body_case = SLUICE__V1__ENVELOPE__BODY_DELIVER;
        env.deliver = &dv;
        break;
    case 3:
        lease.job_id = rd_bytes(r);
        lr.lease = &lease;
        env.body_case = SLUICE__V1__ENVELOPE__BODY_LEASE_REPLY;
        env.lease_reply = &lr;
        break;
    case 4:
        er.code = (Sluice__V1__Error__Code)rd_u8(r);
        er.text = rd_str(r, text, sizeof text);
        env.body_case = SLUICE__V1__ENVELOPE__BODY_ERROR;
        env.error = &er;
        break;
    case 5:
        ar.node_id = rd_str(r, text, sizeof text);
        ar.epoch = rd_uint(r, 8);
        env.body_case = SLUICE__V1__ENVELOPE__BODY_ADMIN_REPLY;
        env.admin_reply = &ar;
        break;
    default:
        break; /* no body */
    }
    s_send_env(f, s, &env);
}

static void s_op_reconnect(fnode_t *f, rd_t *r)
{
    size_t len;
    const uint8_t *p = rd_chunk(r, &len);
    uint8_t rid[24];
    if (len > 16)
        len = 16;
    memcpy(rid, p, len);
    if (len == 0)
        rid[len++] = 'r';
    if (rid[0] == 0)
        rid[0] = 1; /* ZeroMQ keeps ids starting with a zero byte for itself */
    uint32_t seq = (uint32_t)++F.seq; /* unique: a reused id is refused by the ROUTER */
    memcpy(rid + len, &seq, 4);
    zmq_close(f->sock[1]);
    s_sock_open(f, 1, rid, len + 4);
}

static void s_op_big(fnode_t *f, int s, rd_t *r)
{
    size_t len = MAX_FRAME + 1 + 3 * (size_t)rd_u8(r);
    uint8_t *buf = malloc(len);
    CHECK(buf != NULL, "out of memory");
    for (size_t i = 0; i < len; i++)
        buf[i] = r->n ? r->p[i % r->n] : 0x52;
    const uint8_t *frames[1] = {buf};
    s_send_frames(f->sock[s], frames, &len, 1);
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!F.ready)
        s_setup();
    rd_t r = {data, size};
    int64_t t0 = s_now_ms();
    unsigned touched = 0;
    int64_t waited = 0;
    int syncs = 0;
    for (int op = 0; op < NF_MAX_OPS && r.n; op++) {
        uint8_t code = rd_u8(&r);
        int kind = code & 0x0f, s = (code >> 6) & 1;
        int ni = ((code >> 4) & 3) % NODES;
        fnode_t *f = &F.n[ni];
        touched |= 1u << ni;
        switch (kind) {
        case NF_PUBLISH: s_op_publish(f, s, &r); break;
        case NF_SUBSCRIBE:
        case NF_CREDIT:
        case NF_UNSUBSCRIBE: s_op_queue_msg(f, s, &r, kind); break;
        case NF_ACK: s_op_ack(f, s, &r); break;
        case NF_FAIL:
        case NF_TOUCH: s_op_fail_touch(f, s, &r, kind); break;
        case NF_ADMIN: s_op_admin(f, s, &r); break;
        case NF_ODD: s_op_odd(f, s, &r); break;
        case NF_SYNC:
            if (++syncs <= SYNC_BUDGET)
                s_alive(f, s);
            break;
        case NF_RECONNECT: s_op_reconnect(f, &r); break;
        case NF_BIG: s_op_big(f, s, &r); break;
        case NF_WAIT: {
            int64_t ms = (rd_u8(&r) % 16) * 2;
            if (waited + ms > WAIT_BUDGET_MS)
                ms = WAIT_BUDGET_MS - waited;
            waited += ms;
            /* Read while waiting: deliveries and heartbeats keep flowing. */
            s_read(f, 0, s_now_ms() + ms / 2, 0);
            s_read(f, 1, s_now_ms() + ms - ms / 2, 0);
            break;
        }
        default: s_op_raw(f, s, &r); break;
        }
        s_drain(f);
        if (F.trace)
            fprintf(stderr, "node_fuzz: op %2d kind %2d node %d sock %d, %zu bytes left, %" PRId64
                            " ms\n", op, kind, ni, s, r.n, s_now_ms() - t0);
    }
    if (!touched)
        touched = 1;
    for (int i = 0; i < NODES; i++)
        if (touched & (1u << i)) {
            s_alive(&F.n[i], 0);
            s_drain(&F.n[i]);
            int bad = sl__node_check(F.n[i].node); /* the books balance */
            CHECK(bad == 0, "node %d: sl__node_check failed at node line %d", i, bad);
        }
    return 0;
}
