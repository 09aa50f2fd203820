/* member.c -- the node's side of the cluster: NodeStatus to the
 * coordinator every heartbeat, the member epoch it grants, fencing on
 * rejoin, and the per-queue rates the statuses and admin STATS report.
 *
 *   engine --statuses chan (2)--> cluster thread --DEALER--> coordinator
 *   engine <----inbound chan----- cluster thread <--DEALER--
 *
 * The thread never waits on the coordinator: the DEALER has a small send
 * high-water mark, ZMQ_IMMEDIATE (nothing is queued for a connection that
 * is not up) and non-blocking sends, so a status that cannot go out now
 * is dropped; the next one is fresher anyway. ZeroMQ reconnects by
 * itself. Membership, as the engine sees it:
 *
 *              reply(epoch E)                  reply(rejoin, E')
 *   JOINING --s_adopt--> MEMBER(E) --------s_fence--------> FENCED(E')
 *      ^ standalone:        ^                                  |
 *      | never leaves       '-------reply(E', no rejoin)-------'
 *                                       s_adopt
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "node_int.h"
#include "sluice/wire.h"

#define SL__STATUS_QUEUE 2     /* statuses between engine and thread       */
#define SL__DEALER_HWM 4       /* statuses ZeroMQ may hold for the peer    */
#define SL__REPLY_MAX (64 << 10)

/* A packed status on its way to the cluster thread. */
typedef struct {
    size_t len;
    uint8_t buf[];
} sl__status_t;

struct sl__cluster {
    char *coordinator;          /* NULL: standalone                        */
    char *advertise;            /* as given; the bound endpoint at start   */
    uint32_t capacity;
    sl_node_cluster_fn fn;
    void *fn_arg;
    /* engine-owned */
    uint64_t member_epoch;
    bool fenced;
    bool lost;                  /* no reply for 3 intervals                */
    int64_t last_reply;         /* monotonic ms                            */
    /* read from any thread */
    _Atomic uint64_t member_epoch_pub;
    _Atomic bool fenced_pub;
    _Atomic uint64_t sent, dropped;
    /* the thread's */
    sl_chan_t *statuses;        /* sl__status_t *, engine -> thread        */
    void *dealer;
    int stop_pipe[2];
    pthread_t thread;
    bool started;
};

/* --- options -------------------------------------------------------------- */

/* True for a tcp endpoint whose host is a wildcard ("*", 0.0.0.0, ::). */
static bool s_wildcard(const char *ep)
{
    if (strncmp(ep, "tcp://", 6) != 0)
        return false;
    const char *host = ep + 6;
    const char *colon = strrchr(host, ':');
    size_t len = colon ? (size_t)(colon - host) : strlen(host);
    static const char *const wild[] = {"*", "0.0.0.0", "[::]", "::", "[*]", NULL};
    for (int i = 0; wild[i]; i++)
        if (strlen(wild[i]) == len && memcmp(host, wild[i], len) == 0)
            return true;
    return false;
}

const char *sl_node_cluster_opts_check(const sl_node_opts_t *o)
{
    if (!o || !o->coordinator)
        return NULL;
    if (!o->coordinator[0])
        return "coordinator must be an endpoint, e.g. tcp://127.0.0.1:7440";
    if (o->advertise && !o->advertise[0])
        return "advertise must be an endpoint when given";
    if (!o->advertise && o->endpoint && s_wildcard(o->endpoint))
        return "advertise is required with a coordinator when endpoint binds a wildcard "
               "address: clients cannot connect to it";
    return NULL;
}

sl__member_t *sl__member_new(const sl_node_opts_t *o)
{
    sl__member_t *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->stop_pipe[0] = c->stop_pipe[1] = -1;
    c->capacity = o->capacity ? o->capacity : 100;
    c->fn = o->cluster_fn;
    c->fn_arg = o->cluster_arg;
    if ((o->coordinator && !(c->coordinator = strdup(o->coordinator))) ||
        (o->advertise && !(c->advertise = strdup(o->advertise)))) {
        sl__member_destroy(&c);
        return NULL;
    }
    return c;
}

/* --- the cluster thread ------------------------------------------------- */

/* A reply for the engine, or NULL for anything else the DEALER got. */
static sl__in_t *s_read_reply(sl__member_t *c, bool *more)
{
    sl_wire_msg_t w;
    int rc = sl_wire_try_recv(c->dealer, false, SL__REPLY_MAX, &w);
    *more = rc == SL_OK || rc == SL_EPROTO || rc == SL_ETOOBIG;
    sl__in_t *m = NULL;
    if (rc == SL_OK && w.env->body_case == SLUICE__V1__ENVELOPE__BODY_NODE_STATUS_REPLY) {
        m = calloc(1, sizeof *m);
        if (!m) { /* out of memory: the next status gets another reply */
            sl_wire_msg_release(&w);
            return NULL;
        }
        m->kind = SL__IN_CLUSTER;
        m->env = w.env; /* ownership moves to the message */
        w.env = NULL;
    }
    sl_wire_msg_release(&w);
    return m;
}

static void *s_cluster_main(void *arg)
{
    sl__node_t *n = arg;
    sl__member_t *c = n->cluster;
    int st_fd = sl_chan_fd(c->statuses, SL_CHAN_READABLE);
    int in_fd = sl_chan_fd(n->inbound, SL_CHAN_WRITABLE);
    sl__in_t *pending = NULL; /* a reply the engine had no room for yet */
    for (;;) {
        zmq_pollitem_t items[3] = {
            {.socket = pending ? NULL : c->dealer, .fd = pending ? in_fd : 0, .events = ZMQ_POLLIN},
            {.socket = NULL, .fd = st_fd, .events = ZMQ_POLLIN},
            {.socket = NULL, .fd = c->stop_pipe[0], .events = ZMQ_POLLIN},
        };
        if (zmq_poll(items, 3, -1) < 0 && zmq_errno() != EINTR)
            break;
        if (items[2].revents & ZMQ_POLLIN)
            break;
        void *v;
        while (sl_poll(c->statuses, &v) == SL_OK) {
            sl__status_t *s = v;
            if (zmq_send(c->dealer, s->buf, s->len, ZMQ_DONTWAIT) >= 0)
                atomic_fetch_add(&c->sent, 1);
            else
                atomic_fetch_add(&c->dropped, 1); /* not connected, or behind */
            free(s);
        }
        if (pending && sl_offer(n->inbound, pending) == SL_OK)
            pending = NULL;
        bool more = true;
        for (int i = 0; !pending && more && i < 64; i++) {
            sl__in_t *m = s_read_reply(c, &more);
            if (m && sl_offer(n->inbound, m) != SL_OK)
                pending = m;
        }
    }
    if (pending) {
        sluice__v1__envelope__free_unpacked(pending->env, NULL);
        free(pending);
    }
    return NULL;
}

int sl__member_start(sl__node_t *n)
{
    sl__member_t *c = n->cluster;
    if (!c->advertise && !(c->advertise = strdup(n->endpoint)))
        return SL_ENOMEM;
    if (!c->coordinator || c->started)
        return SL_OK;
    c->last_reply = sl__mono_ms();
    c->statuses = sl_chan_new(SL_BUF_FIXED, SL__STATUS_QUEUE);
    if (!c->statuses)
        return SL_ENOMEM;
    c->dealer = zmq_socket(n->zctx, ZMQ_DEALER);
    if (!c->dealer)
        return SL_ESYS;
    int linger = 0, hwm = SL__DEALER_HWM, immediate = 1;
    int64_t maxmsg = SL__REPLY_MAX;
    zmq_setsockopt(c->dealer, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(c->dealer, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(c->dealer, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt(c->dealer, ZMQ_IMMEDIATE, &immediate, sizeof immediate);
    zmq_setsockopt(c->dealer, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    if (zmq_connect(c->dealer, c->coordinator) != 0 ||
        pipe2(c->stop_pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
        zmq_close(c->dealer);
        c->dealer = NULL;
        return SL_ESYS;
    }
    if (pthread_create(&c->thread, NULL, s_cluster_main, n) != 0) {
        zmq_close(c->dealer);
        c->dealer = NULL;
        return SL_ESYS;
    }
    c->started = true;
    return SL_OK;
}

void sl__member_stop(sl__node_t *n)
{
    sl__member_t *c = n->cluster;
    if (!c || !c->started)
        return;
    ssize_t w = write(c->stop_pipe[1], "x", 1);
    (void)w;
    pthread_join(c->thread, NULL);
    c->started = false;
    zmq_close(c->dealer);
    c->dealer = NULL;
}

void sl__member_destroy(sl__member_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    sl__member_t *c = *self_p;
    *self_p = NULL;
    if (c->started) { /* the node never stopped: same as sl__member_stop */
        ssize_t w = write(c->stop_pipe[1], "x", 1);
        (void)w;
        pthread_join(c->thread, NULL);
    }
    if (c->dealer)
        zmq_close(c->dealer);
    void *v;
    while (c->statuses && sl_poll(c->statuses, &v) == SL_OK)
        free(v);
    sl_chan_destroy(&c->statuses);
    for (int i = 0; i < 2; i++)
        if (c->stop_pipe[i] >= 0)
            close(c->stop_pipe[i]);
    free(c->coordinator);
    free(c->advertise);
    free(c);
}

/* --- rates ------------------------------------------------------------------ */

void sl__rates_init(sl__rates_t *r, int64_t now)
{
    memset(r, 0, sizeof *r);
    r->at[0] = now ? now : 1;
    r->next = 1;
}

static void s_rates_sample(sl__queue_t *q, int64_t now)
{
    sl__rates_t *r = &q->rates;
    r->at[r->next] = now;
    r->published[r->next] = q->published;
    r->acked[r->next] = q->acked;
    r->next = (r->next + 1) % SL__RATE_SAMPLES;
}

void sl__rates_get(const sl__queue_t *q, int64_t heartbeat_ms, double *publish_rate,
                   double *ack_rate)
{
    /* From the oldest sample within the window (or, when every sample is
     * older, the newest) to the counters now. The time is at least one
     * heartbeat, so a burst into a young queue does not read as a spike. */
    const sl__rates_t *r = &q->rates;
    int64_t now = sl__mono_ms();
    int oldest = -1, newest = -1;
    for (int i = 0; i < SL__RATE_SAMPLES; i++) {
        if (!r->at[i])
            continue;
        if (now - r->at[i] <= SL__RATE_WINDOW_MS && (oldest < 0 || r->at[i] < r->at[oldest]))
            oldest = i;
        if (newest < 0 || r->at[i] > r->at[newest])
            newest = i;
    }
    int i = oldest >= 0 ? oldest : newest;
    *publish_rate = *ack_rate = 0;
    if (i < 0)
        return;
    int64_t dt = now - r->at[i];
    int64_t floor = heartbeat_ms < SL__RATE_WINDOW_MS ? heartbeat_ms : SL__RATE_WINDOW_MS;
    if (dt < floor)
        dt = floor;
    if (dt < 1)
        dt = 1;
    *publish_rate = (double)(q->published - r->published[i]) * 1000.0 / (double)dt;
    *ack_rate = (double)(q->acked - r->acked[i]) * 1000.0 / (double)dt;
}

/* --- on the engine: statuses ------------------------------------------------ */

typedef struct {
    sl__node_t *n;
    Sluice__V1__QueueLoad *loads;
    Sluice__V1__QueueLoad **ptrs;
    size_t k;
} sl__loads_t;

static void s_load_one(const void *key, size_t len, void *val, void *arg)
{
    (void)key;
    (void)len;
    sl__loads_t *a = arg;
    sl__queue_t *q = val;
    Sluice__V1__QueueLoad *l = &a->loads[a->k];
    sluice__v1__queue_load__init(l);
    sl__rates_get(q, a->n->o.heartbeat_ms, &l->publish_rate, &l->ack_rate);
    /* An idle queue with no recent traffic carries no load: left out, so a
     * status grows with the queues in use, not with every name seen. */
    if (q->idle_listed && l->publish_rate == 0 && l->ack_rate == 0)
        return;
    l->queue = q->name;
    l->depth = q->ready;
    l->delayed = q->delayed + q->waiting; /* as admin STATS counted them */
    l->in_flight = q->in_flight;
    l->consumers = q->nconsumers;
    a->ptrs[a->k++] = l;
}

static void s_post_status(sl__node_t *n)
{
    sl__member_t *c = n->cluster;
    size_t nq = sl__map_size(n->queues);
    sl__loads_t a = {n, calloc(nq + 1, sizeof *a.loads), calloc(nq + 1, sizeof *a.ptrs), 0};
    if (!a.loads || !a.ptrs) { /* out of memory: no status this tick */
        free(a.loads);
        free(a.ptrs);
        atomic_fetch_add(&c->dropped, 1);
        return;
    }
    sl__map_each(n->queues, s_load_one, &a);
    Sluice__V1__NodeStatus st = SLUICE__V1__NODE_STATUS__INIT;
    st.node_id = n->node_id;
    st.incarnation = n->epoch;
    st.endpoint = c->advertise;
    st.capacity = c->capacity;
    st.n_queues = a.k;
    st.queues = a.ptrs;
    st.member_epoch = c->member_epoch;
    st.interval_ms = (uint32_t)n->o.heartbeat_ms;
    st.fenced = c->fenced;
    Sluice__V1__Envelope env = SLUICE__V1__ENVELOPE__INIT;
    env.body_case = SLUICE__V1__ENVELOPE__BODY_NODE_STATUS;
    env.node_status = &st;
    size_t len = sluice__v1__envelope__get_packed_size(&env);
    sl__status_t *s = malloc(sizeof *s + len);
    if (s)
        s->len = sluice__v1__envelope__pack(&env, s->buf);
    free(a.loads);
    free(a.ptrs);
    if (!s) { /* out of memory: no status this tick */
        atomic_fetch_add(&c->dropped, 1);
        return;
    }
    /* Never wait: a status the thread has no room for is dropped. */
    if (sl_offer(c->statuses, s) != SL_OK) {
        free(s);
        atomic_fetch_add(&c->dropped, 1);
    }
}

static void s_sample_one(const void *key, size_t len, void *val, void *arg)
{
    (void)key;
    (void)len;
    s_rates_sample(val, *(int64_t *)arg);
}

static void s_tell(sl__node_t *n, sl_node_cluster_event_t ev, uint64_t prev, uint64_t dropped)
{
    sl__member_t *c = n->cluster;
    if (!c->fn)
        return;
    sl_node_cluster_info_t info = {ev, c->member_epoch, prev, dropped, c->coordinator};
    c->fn(&info, c->fn_arg);
}

void sl__member_tick(sl__node_t *n)
{
    sl__member_t *c = n->cluster;
    int64_t now = sl__mono_ms();
    if (c->started) {
        s_post_status(n); /* rates as of now, before this tick's sample */
        if (!c->lost && now - c->last_reply > 3 * n->o.heartbeat_ms) {
            c->lost = true;
            s_tell(n, SL_NODE_CLUSTER_LOST, c->member_epoch, 0);
        }
    }
    sl__map_each(n->queues, s_sample_one, &now);
}

/* --- on the engine: membership ------------------------------------------------ */

typedef struct {
    sl__node_t *n;
    uint64_t dropped;
} sl__fence_t;

static void s_fence_peer(const void *key, size_t len, void *val, void *arg)
{
    (void)key;
    (void)len;
    sl__fence_t *f = arg;
    sl__peer_t *p = val;
    if (p->local)
        return; /* in-process handlers are not assigned by the coordinator */
    while (p->consumers) {
        sl__consumer_t *c = p->consumers;
        sl__send_error(f->n, p->rid, p->rid_len, 0, SLUICE__V1__ERROR__CODE__STALE_EPOCH,
                       "queue '%s': node rejoined the cluster as member epoch %" PRIu64
                       ", subscribe again",
                       c->q->name, f->n->cluster->member_epoch);
        /* Leased jobs go back to the queue as for a peer gone away. */
        sl__consumer_drop(f->n, c);
        f->dropped++;
    }
}

/* Drop every remote subscription; the node already runs under the new
 * epoch, so consumers that subscribe again naming it are served. */
static uint64_t s_fence(sl__node_t *n)
{
    sl__fence_t f = {n, 0};
    sl__map_each(n->peers, s_fence_peer, &f);
    return f.dropped;
}

static void s_publish_state(sl__member_t *c)
{
    atomic_store(&c->member_epoch_pub, c->member_epoch);
    atomic_store(&c->fenced_pub, c->fenced);
}

void sl__member_reply(sl__node_t *n, const Sluice__V1__Envelope *env)
{
    sl__member_t *c = n->cluster;
    if (env->body_case != SLUICE__V1__ENVELOPE__BODY_NODE_STATUS_REPLY ||
        !env->node_status_reply->member_epoch)
        return; /* nothing to adopt */
    const Sluice__V1__NodeStatusReply *r = env->node_status_reply;
    uint64_t prev = c->member_epoch;
    c->last_reply = sl__mono_ms();
    if (c->lost) {
        c->lost = false;
        s_tell(n, SL_NODE_CLUSTER_FOUND, prev, 0);
    }
    if (r->rejoin && r->member_epoch == prev) {
        /* The answer to a status sent before we adopted this epoch: that
         * rejoin is done; fencing again would drop the subscribers that
         * already came back under it. */
    } else if (r->rejoin) {
        /* Adopt first: the errors name the new epoch, and a consumer that
         * subscribes again with it is accepted at once. */
        c->member_epoch = r->member_epoch;
        c->fenced = true;
        s_publish_state(c);
        uint64_t dropped = s_fence(n);
        s_tell(n, SL_NODE_CLUSTER_FENCED, prev, dropped);
    } else if (r->member_epoch != prev) {
        c->member_epoch = r->member_epoch;
        c->fenced = false;
        s_publish_state(c);
        s_tell(n, SL_NODE_CLUSTER_JOINED, prev, 0);
    } else if (c->fenced) {
        c->fenced = false;
        s_publish_state(c);
        s_tell(n, SL_NODE_CLUSTER_REJOINED, prev, 0);
    }
}

bool sl__member_subscribe_ok(sl__node_t *n, const uint8_t *rid, size_t rid_len, uint64_t corr,
                              const Sluice__V1__Subscribe *s)
{
    uint64_t mine = n->cluster->member_epoch;
    if (s->member_epoch == 0 || s->member_epoch == mine)
        return true;
    sl__send_error(n, rid, rid_len, corr, SLUICE__V1__ERROR__CODE__STALE_EPOCH,
                   "queue '%.128s': member epoch %" PRIu64 " is stale, the node is at %" PRIu64,
                   s->queue ? s->queue : "", s->member_epoch, mine);
    return false;
}

/* --- public getters -------------------------------------------------------- */

uint64_t sl_node_member_epoch(sl_node_t *self)
{
    return atomic_load(&((sl__node_t *)self)->cluster->member_epoch_pub);
}

bool sl_node_fenced(sl_node_t *self)
{
    return atomic_load(&((sl__node_t *)self)->cluster->fenced_pub);
}
