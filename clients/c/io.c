/* io.c -- the client's I/O thread: the only code that touches the DEALER
 * socket. It waits on the socket, on the command channel's eventfd and on
 * the socket monitor together (zmq_poll), sends what users asked for,
 * matches answers to requests, hands deliveries to subscriptions, grants
 * credit back, heartbeats, and starts a new session when the connection
 * comes back or the node restarts.
 *
 * Session states (docs/client.md "Sessions"):
 *
 *            first message from the node (s_alive)
 *   CONNECTING -------------------------------------> UP
 *       ^                                            |  |
 *       | s_monitor: TCP reconnected                  |  | silent 3 intervals
 *       |   -> s_new_session (resubscribe, resend)    |  v (s_timers)
 *       '---------- s_monitor: TCP dropped ----------' DOWN --s_alive--> UP
 *                                                            + s_new_session
 *   UP --s_saw_epoch: epoch changed--> s_new_session (node restarted)
 *   any --s_reconnect (cluster: node moved, or given up while away)-->
 *       CONNECTING on a fresh socket; s_new_session when the node answers
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "client_int.h"
#include "sluice/wire.h"

typedef Sluice__V1__Envelope env_t;

int sl__err_from_node(int code)
{
    switch (code) {
    case SLUICE__V1__ERROR__CODE__BAD_QUEUE:
    case SLUICE__V1__ERROR__CODE__BAD_ID:
        return SL_EINVAL;
    case SLUICE__V1__ERROR__CODE__STALE_LEASE:
    case SLUICE__V1__ERROR__CODE__NOT_SUBSCRIBED:
    case SLUICE__V1__ERROR__CODE__STALE_EPOCH:
        return SL_ENOTFOUND;
    case SLUICE__V1__ERROR__CODE__FULL:
        return SL_ELIMIT;
    case SLUICE__V1__ERROR__CODE__PAUSED:
    case SLUICE__V1__ERROR__CODE__SHUTTING_DOWN:
        return SL_ESTATE;
    default: /* UNKNOWN, BAD_MESSAGE, UNKNOWN_KIND, codes we do not know */
        return SL_EPROTO;
    }
}

const char *sl_code_name(int code)
{
    switch (code) {
#define S_CODE_NAME(name, value, when) \
    case SL_CODE_##name:                \
        return #name;
        SL_CODES(S_CODE_NAME)
#undef S_CODE_NAME
    default:
        return "UNKNOWN";
    }
}

/* --- sending --------------------------------------------------------- */

static int s_send_bytes(sl_client_t *c, const void *buf, size_t len)
{
    int rc;
    do
        rc = zmq_send(c->sock, buf, len, ZMQ_DONTWAIT);
    while (rc < 0 && errno == EINTR);
    if (rc < 0)
        return SL_ESYS; /* SNDHWM is unlimited: only a dead context gets here */
    c->last_send = sl_now();
    atomic_fetch_add(&c->ctr.sent, 1);
    return SL_OK;
}

static int s_send_env(sl_client_t *c, env_t *env)
{
    int rc = sl_wire_send(c->sock, NULL, 0, env, ZMQ_DONTWAIT);
    if (rc == SL_OK) {
        c->last_send = sl_now();
        atomic_fetch_add(&c->ctr.sent, 1);
    }
    return rc;
}

/* The node epoch to write into a publish now: the one the node last told
 * us in this session, or 0 (not checked) while we do not know it. */
static uint64_t s_stamp_now(const sl_client_t *c)
{
    return c->epoch_known ? c->epoch : 0;
}

/* Send (or send again) a request as it is, a publish stamped with the
 * node epoch known now: a node refuses a publish naming an earlier
 * incarnation of itself, so one that waited in a queue while the node
 * restarted never runs there behind our back. */
static void s_req_send_as(sl_client_t *c, sl__req_t *r, uint64_t stamp, int64_t now)
{
    if (r->stamp_at) {
        r->stamp = stamp;
        sl__stamp(r->buf + r->stamp_at, stamp);
    }
    s_send_bytes(c, r->buf, r->len);
    r->sent_at = now;
}

static void s_req_send(sl_client_t *c, sl__req_t *r, int64_t now)
{
    s_req_send_as(c, r, s_stamp_now(c), now);
}

static int s_hb_interval(const sl_client_t *c)
{
    int ms = c->heartbeat_ms;
    if (c->node_hb_ms > 0 && c->node_hb_ms < ms)
        ms = c->node_hb_ms;
    return ms;
}

static int64_t s_silence_ns(const sl_client_t *c)
{
    int ms = c->node_hb_ms > 0 ? c->node_hb_ms : c->heartbeat_ms;
    return 3 * (int64_t)ms * 1000000;
}

static void s_send_heartbeat(sl_client_t *c)
{
    Sluice__V1__Heartbeat hb = SLUICE__V1__HEARTBEAT__INIT;
    hb.node_id = c->consumer_id ? c->consumer_id : (char *)"";
    hb.sent_ms = sl_wall_ms();
    hb.interval_ms = (uint32_t)s_hb_interval(c);
    env_t env = SLUICE__V1__ENVELOPE__INIT;
    env.body_case = SLUICE__V1__ENVELOPE__BODY_HEARTBEAT;
    env.heartbeat = &hb;
    s_send_env(c, &env);
}

static void s_lease_to_pb(const sl__lease_t *l, Sluice__V1__Lease *pb)
{
    sluice__v1__lease__init(pb);
    pb->job_id.data = (uint8_t *)l->job_id;
    pb->job_id.len = SL_ID_LEN;
    pb->lease_id = l->lease_id;
    pb->epoch = l->epoch;
    pb->expires_ms = l->expires_ms;
}

static void s_send_fail(sl_client_t *c, const Sluice__V1__Lease *lease, bool retryable,
                        const char *error)
{
    Sluice__V1__Fail f = SLUICE__V1__FAIL__INIT;
    f.lease = (Sluice__V1__Lease *)lease;
    f.retryable = retryable;
    f.error = (char *)(error ? error : "");
    env_t env = SLUICE__V1__ENVELOPE__INIT;
    env.body_case = SLUICE__V1__ENVELOPE__BODY_FAIL;
    env.fail = &f;
    s_send_env(c, &env);
}

static void s_send_fail_lease(sl_client_t *c, const sl__lease_t *l, bool retryable,
                              const char *error)
{
    Sluice__V1__Lease pb;
    s_lease_to_pb(l, &pb);
    s_send_fail(c, &pb, retryable, error);
}

static void s_send_subscribe(sl_client_t *c, sl__sub_t *s)
{
    uint32_t credit = s->running < s->window ? s->window - s->running : 0;
    Sluice__V1__Subscribe sub = SLUICE__V1__SUBSCRIBE__INIT;
    sub.queue = s->queue;
    sub.credit = credit;
    sub.consumer_id = c->consumer_id ? c->consumer_id : (char *)"";
    sub.member_epoch = s->member_epoch;
    env_t env = SLUICE__V1__ENVELOPE__INIT;
    env.body_case = SLUICE__V1__ENVELOPE__BODY_SUBSCRIBE;
    env.subscribe = &sub;
    s_send_env(c, &env);
    s->granted = credit;
    s->credit_pending = 0;
    s->sent = true;
}

static void s_send_unsubscribe(sl_client_t *c, sl__sub_t *s)
{
    Sluice__V1__Unsubscribe u = SLUICE__V1__UNSUBSCRIBE__INIT;
    u.queue = s->queue;
    env_t env = SLUICE__V1__ENVELOPE__INIT;
    env.body_case = SLUICE__V1__ENVELOPE__BODY_UNSUBSCRIBE;
    env.unsubscribe = &u;
    s_send_env(c, &env);
}

/* The first subscription. The list only grows at the head (under lock) and
 * a node's `next` never changes once linked, so the I/O thread may walk it
 * from a snapshot of the head without holding the lock. */
static sl__sub_t *s_subs(sl_client_t *c)
{
    pthread_mutex_lock(&c->lock);
    sl__sub_t *head = c->subs;
    pthread_mutex_unlock(&c->lock);
    return head;
}

/* Lease{job_id, lease_id, epoch, expires_ms} as protobuf-c writes it
 * (zero scalars left out): its size, and with p non-NULL its bytes. */
static size_t s_lease_bytes(const sl__lease_t *l, uint8_t *p)
{
    uint64_t v[3] = {l->lease_id, l->epoch, (uint64_t)l->expires_ms};
    size_t k = sl__pb_len_size(1, SL_ID_LEN);
    for (int i = 0; i < 3; i++)
        if (v[i])
            k += 1 + sl__pb_varint_size(v[i]);
    if (p) {
        p = sl__pb_put_len(p, 1, SL_ID_LEN);
        memcpy(p, l->job_id, SL_ID_LEN);
        p += SL_ID_LEN;
        for (int i = 0; i < 3; i++)
            if (v[i])
                p = sl__pb_put_varint(sl__pb_put_tag(p, (uint32_t)i + 2, SL__PB_VARINT), v[i]);
    }
    return k;
}

/* Envelope{ack: Ack{items: AckItem{lease}...}} of leases l[0..n), written
 * by hand into c->ack_buf: its length, or 0 without memory. */
static size_t s_ack_encode(sl_client_t *c, const sl__lease_t *l, size_t n)
{
    size_t body = 0;
    for (size_t i = 0; i < n; i++)
        body += sl__pb_len_size(1, sl__pb_len_size(1, s_lease_bytes(&l[i], NULL)));
    size_t len = sl__pb_len_size(16, body);
    if (len > c->ack_buf_cap) {
        uint8_t *b = realloc(c->ack_buf, len);
        if (!b)
            return 0;
        c->ack_buf = b;
        c->ack_buf_cap = len;
    }
    uint8_t *p = sl__pb_put_len(c->ack_buf, 16, body);
    for (size_t i = 0; i < n; i++) {
        size_t lk = s_lease_bytes(&l[i], NULL);
        p = sl__pb_put_len(p, 1, sl__pb_len_size(1, lk));
        p = sl__pb_put_len(p, 1, lk);
        p += s_lease_bytes(&l[i], p);
    }
    return len;
}

/* Send the batched acks. Before anything that could make the node drop
 * those leases (Unsubscribe) and at the end of every wake-up. */
static void s_flush_acks(sl_client_t *c)
{
    for (size_t done = 0; done < c->ack_n;) {
        size_t k = c->ack_n - done;
        if (k > SL__CLIENT_BATCH)
            k = SL__CLIENT_BATCH;
        size_t len = s_ack_encode(c, &c->ack_pending[done], k);
        if (len)
            s_send_bytes(c, c->ack_buf, len);
        /* else: no memory; the leases expire and the jobs come again */
        done += k;
    }
    c->ack_n = 0;
}

/* Send the batched acks, then the credit earned since the last flush. */
static void s_flush(sl_client_t *c)
{
    s_flush_acks(c);
    for (sl__sub_t *s = s_subs(c); s; s = s->next) {
        if (s->credit_pending == 0)
            continue;
        Sluice__V1__Credit cr = SLUICE__V1__CREDIT__INIT;
        cr.queue = s->queue;
        cr.credit = s->credit_pending;
        env_t env = SLUICE__V1__ENVELOPE__INIT;
        env.body_case = SLUICE__V1__ENVELOPE__BODY_CREDIT;
        env.credit = &cr;
        s_send_env(c, &env);
        s->credit_pending = 0;
    }
}

static int s_ack_push(sl_client_t *c, const sl__lease_t *l)
{
    if (c->ack_n == c->ack_cap) {
        size_t cap = c->ack_cap ? c->ack_cap * 2 : 64;
        sl__lease_t *p = realloc(c->ack_pending, cap * sizeof *p);
        if (!p)
            return SL_ENOMEM;
        c->ack_pending = p;
        c->ack_cap = cap;
    }
    c->ack_pending[c->ack_n++] = *l;
    return SL_OK;
}

/* --- subscriptions --------------------------------------------------- */

/* 1 if another subscription to s's queue is live (a re-subscribe). */
static bool s_queue_taken(sl_client_t *c, const sl__sub_t *s)
{
    for (sl__sub_t *t = s_subs(c); t; t = t->next)
        if (t != s && t->live && strcmp(t->queue, s->queue) == 0)
            return true;
    return false;
}

/* A stopping subscription whose last delivery has ended: now the node may
 * forget it (an earlier Unsubscribe would have requeued those jobs under
 * the handlers' feet). */
static void s_sub_idle_check(sl_client_t *c, sl__sub_t *s)
{
    if (!s->draining || s->running > 0)
        return;
    s->draining = false;
    s_flush_acks(c); /* acks first: Unsubscribe requeues what is still leased */
    if (!s_queue_taken(c, s)) /* the node knows one consumer per queue */
        s_send_unsubscribe(c, s);
    if (s->idle) {
        sl_offer(s->idle, (void *)(intptr_t)SL_OK);
        sl_chan_close(s->idle);
        sl_chan_destroy(&s->idle);
    }
}

/* A delivery of s ended (acked, failed or abandoned): earn its credit back. */
static void s_job_done(sl_client_t *c, sl__sub_t *s)
{
    if (s->running > 0)
        s->running--;
    if (s->live && s->sent) {
        /* granted already includes credit_pending (not yet sent):
         * counting both again shorted the window when several jobs
         * ended in one wake-up (found by integration/credit_test). */
        uint32_t used = s->running + s->granted;
        if (used < s->window) {
            uint32_t more = s->window - used;
            s->credit_pending += more;
            s->granted += more;
        }
    }
    s_sub_idle_check(c, s);
}

/* A delivery of s ended by its holder (ack, fail, or a handler giving up):
 * a consume handler is free, so the oldest prefetched delivery starts. */
static void s_settled(sl_client_t *c, sl__sub_t *s)
{
    if (!s->out) {
        if (s->handlers > 0)
            s->handlers--;
        sl__delivery_t *d;
        while (s->handlers < s->concurrency && (d = sl__delivery_waiting(s))) {
            if (sl__delivery_start(d) == SL_OK)
                continue;
            s_send_fail_lease(c, &d->lease, true, "consumer cannot start a handler");
            sl__delivery_free(&d);
            if (s->running > 0)
                s->running--; /* credit comes back with the s_job_done below */
        }
    }
    s_job_done(c, s);
}

/* Give back the deliveries of s still waiting for a handler: they never
 * started, and the subscription is stopping. */
static void s_drop_waiting(sl_client_t *c, sl__sub_t *s)
{
    sl__delivery_t *d;
    bool any = false;
    while ((d = sl__delivery_waiting(s))) {
        s_send_fail_lease(c, &d->lease, true, "consumer unsubscribed");
        sl__delivery_free(&d);
        if (s->running > 0)
            s->running--;
        any = true;
    }
    if (any)
        s_sub_idle_check(c, s);
}

/* The subscription deliveries of queue belong to: live, or stopping and
 * still owed the jobs that crossed its credit-0 Subscribe. */
static sl__sub_t *s_sub_for(sl_client_t *c, const char *queue)
{
    sl__sub_t *found = NULL;
    for (sl__sub_t *s = s_subs(c); s; s = s->next)
        if ((s->live || s->draining) && strcmp(s->queue, queue) == 0) {
            found = s;
            if (s->live)
                break;
        }
    return found;
}

/* Stop a subscription: no more credit (Subscribe with credit 0 keeps the
 * leases we hold valid), close its channel, and Unsubscribe once the
 * deliveries out there have ended (s_sub_idle_check). */
static void s_sub_stop(sl_client_t *c, sl__sub_t *s)
{
    if (!s->live)
        return;
    s->live = false;
    s->draining = true;
    s->credit_pending = 0;
    if (s->sent) {
        uint32_t w = s->window;
        s->window = 0;
        s_send_subscribe(c, s);
        s->window = w;
    }
    if (s->out && !s->out_shared)
        sl_chan_close(s->out);
    s_drop_waiting(c, s);
}

/* --- sessions -------------------------------------------------------- */

/* The node lost track of us (new connection, restart, or it declared us
 * gone): subscribe again with the credit we can take, and send every
 * unanswered request again, in the order they were first sent. */
static void s_new_session(sl_client_t *c)
{
    atomic_fetch_add(&c->ctr.sessions, 1);
    for (sl__sub_t *s = s_subs(c); s; s = s->next)
        if (s->live)
            s_send_subscribe(c, s);
    int64_t now = sl_now();
    for (sl__req_t *r = c->req_head; r; r = r->next) {
        s_req_send(c, r, now);
        atomic_fetch_add(&c->ctr.resent, 1);
    }
    c->resync = false;
}

static void s_alive(sl_client_t *c)
{
    c->last_recv = sl_now();
    if (c->up)
        return;
    c->up = true;
    atomic_store(&c->ctr.connected, true);
    if (c->resync)
        s_new_session(c);
}

static void s_saw_epoch(sl_client_t *c, uint64_t epoch)
{
    if (epoch == 0)
        return;
    if (!c->epoch_known) {
        c->epoch_known = true;
        c->epoch = epoch;
    } else if (epoch != c->epoch) {
        c->epoch = epoch;
        s_new_session(c);
    }
    atomic_store(&c->ctr.epoch, epoch);
}

/* A fresh connection: the old DEALER is closed without linger, so that
 * ZeroMQ discards whatever it still holds for the node (a publish the
 * cluster has given up here and sent elsewhere must never arrive later,
 * when the node is back), and a new one is connected, to *endpoint_p
 * (taken) if set. The node sees a new peer: a new session starts when it
 * answers. If no socket can be made the old one stays. */
static void s_reconnect(sl_client_t *c, char **endpoint_p)
{
    void *old_sock = c->sock, *old_mon = c->mon;
    char *old_ep = c->endpoint;
    if (endpoint_p && *endpoint_p) {
        c->endpoint = *endpoint_p;
        *endpoint_p = NULL;
    }
    if (sl__client_sock_open(c) != SL_OK) {
        if (c->endpoint != old_ep) {
            free(c->endpoint);
            c->endpoint = old_ep;
        }
        return;
    }
    if (c->endpoint != old_ep)
        free(old_ep);
    zmq_socket_monitor(old_sock, NULL, 0);
    zmq_close(old_sock); /* ZMQ_LINGER 0: its queue goes with it */
    zmq_close(old_mon);
    c->up = false;
    c->tcp_dropped = false;
    c->epoch_known = false;
    c->resync = true;
    atomic_store(&c->ctr.connected, false);
    atomic_store(&c->ctr.linked, false);
    s_send_heartbeat(c); /* introduce ourselves: the node answers in kind */
}

static void s_monitor(sl_client_t *c)
{
    for (;;) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, c->mon, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            return;
        }
        uint16_t event = 0;
        if (zmq_msg_size(&m) >= sizeof event)
            memcpy(&event, zmq_msg_data(&m), sizeof event);
        bool more = zmq_msg_more(&m);
        zmq_msg_close(&m);
        while (more) { /* the endpoint frame */
            zmq_msg_init(&m);
            if (zmq_msg_recv(&m, c->mon, 0) < 0) {
                zmq_msg_close(&m);
                break;
            }
            more = zmq_msg_more(&m);
            zmq_msg_close(&m);
        }
        if (event == ZMQ_EVENT_CONNECTED)
            atomic_store(&c->ctr.linked, true);
        if (event == ZMQ_EVENT_DISCONNECTED) {
            atomic_store(&c->ctr.linked, false);
            c->tcp_dropped = true;
            c->up = false;
            atomic_store(&c->ctr.connected, false);
        } else if (event == ZMQ_EVENT_CONNECTED && c->tcp_dropped) {
            /* A new TCP connection is a new peer to the node (a new
             * routing id): it knows none of our subscriptions, and may be
             * a different incarnation altogether. */
            c->tcp_dropped = false;
            c->epoch_known = false;
            s_new_session(c);
        }
    }
}

/* --- receiving ------------------------------------------------------- */

/* Did the node refuse the publish as meant for another incarnation? It
 * refuses every job of it so, or none. */
static bool s_stale_confirm(const Sluice__V1__PublishConfirm *pc)
{
    for (size_t i = 0; i < pc->n_confirms; i++)
        if (pc->confirms[i]->status == SLUICE__V1__JOB_CONFIRM__STATUS__REJECTED &&
            pc->confirms[i]->code == SLUICE__V1__ERROR__CODE__STALE_EPOCH)
            return true;
    return false;
}

static void s_on_confirm(sl_client_t *c, uint64_t corr, Sluice__V1__PublishConfirm *pc)
{
    sl__req_t *r = sl__req_find(c, corr);
    if (!r || r->kind != SL__REQ_PUBLISH)
        return; /* answered already (a resend's second confirm) or gave up */
    if (s_stale_confirm(pc)) {
        /* Never a failure: the jobs are still ours to place, here (this
         * request stands) or, if the cluster gives up on the node,
         * elsewhere. Which copy was refused, corr does not say: sent last
         * under an epoch since left behind, r goes again under the current
         * one; sent last under the current one, either an older copy was
         * refused or the node restarted unnoticed (its next heartbeat will
         * say), and a copy naming no epoch is taken in both cases; sent
         * last naming none, the refusal was of an older copy. */
        uint64_t now_stamp = s_stamp_now(c);
        if (r->stamp != 0) {
            s_req_send_as(c, r, r->stamp != now_stamp ? now_stamp : 0, sl_now());
            atomic_fetch_add(&c->ctr.resent, 1);
        }
        return;
    }
    sl__req_remove(c, r);
    if (pc->n_confirms != r->n_jobs)
        sl__req_complete_publish(r, SL_EPROTO, "confirm count does not match the jobs sent",
                                 NULL, 0);
    else
        sl__req_complete_publish(r, SL_OK, NULL, pc->confirms, pc->n_confirms);
}

static void s_copy(char *dst, size_t cap, const char *src)
{
    size_t n = src ? strlen(src) : 0;
    if (n >= cap)
        n = cap - 1;
    if (n)
        memcpy(dst, src, n);
    dst[n] = '\0';
}

static void s_on_admin_reply(sl_client_t *c, uint64_t corr, Sluice__V1__AdminReply *ar)
{
    s_saw_epoch(c, ar->epoch);
    sl__req_t *r = sl__req_find(c, corr);
    if (!r || r->kind != SL__REQ_ADMIN)
        return;
    sl__req_remove(c, r);
    sl__reply_t *rep = calloc(1, sizeof *rep);
    if (!rep) {
        sl__req_complete_error(r, SL_ENOMEM, 0, NULL);
        return;
    }
    sl_admin_reply_t *a = &rep->admin;
    if (ar->next && strlen(ar->next) < sizeof rep->next)
        s_copy(rep->next, sizeof rep->next, ar->next); /* else: no name of a queue */
    s_copy(a->node_id, sizeof a->node_id, ar->node_id);
    a->epoch = ar->epoch;
    a->peers = ar->peers;
    a->bad_messages = ar->bad_messages;
    if (ar->error) {
        a->node_code = ar->error->code;
        s_copy(a->node_text, sizeof a->node_text, ar->error->text);
        /* We checked the name before sending, so the node's BAD_QUEUE can
         * only mean the queue does not exist. */
        rep->status = ar->error->code == SLUICE__V1__ERROR__CODE__BAD_QUEUE
                          ? SL_ENOTFOUND
                          : sl__err_from_node(ar->error->code);
    }
    if (ar->n_queues > 0) {
        a->queues = calloc(ar->n_queues, sizeof *a->queues);
        if (!a->queues) {
            rep->status = SL_ENOMEM;
        } else {
            a->n_queues = ar->n_queues;
            for (size_t i = 0; i < ar->n_queues; i++)
                sl__queue_stats_from_pb(&a->queues[i], ar->queues[i]);
        }
    }
    a->affected = ar->affected;
    if (ar->n_dead > 0 && rep->status == SL_OK)
        rep->status = sl__dead_jobs_from_pb(&a->dead, &a->n_dead, ar->dead, ar->n_dead);
    if (ar->cluster && rep->status == SL_OK)
        sl__cluster_view_from_pb(&rep->view, ar->cluster, &rep->status);
    sl__req_complete_reply(r, rep);
}

static void s_on_lease_reply(sl_client_t *c, uint64_t corr, Sluice__V1__LeaseReply *lr)
{
    sl__req_t *r = corr ? sl__req_find(c, corr) : NULL;
    if (!r || r->kind != SL__REQ_TOUCH) {
        /* An ack or fail the node refused; it says nothing on success. */
        if (lr->error)
            atomic_fetch_add(&c->ctr.stale_leases, 1);
        return;
    }
    sl__req_remove(c, r);
    if (lr->error)
        atomic_fetch_add(&c->ctr.stale_leases, 1);
    sl__reply_t *rep = calloc(1, sizeof *rep);
    if (!rep) {
        sl__req_complete_error(r, SL_ENOMEM, 0, NULL);
        return;
    }
    if (lr->error) {
        rep->status = sl__err_from_node(lr->error->code);
        rep->admin.node_code = lr->error->code;
        s_copy(rep->admin.node_text, sizeof rep->admin.node_text, lr->error->text);
    } else if (lr->lease) {
        rep->lease_expires_ms = lr->lease->expires_ms;
        rep->lease_id = lr->lease->lease_id;
    } else {
        rep->status = SL_EPROTO;
    }
    sl__req_complete_reply(r, rep);
}

static void s_on_error(sl_client_t *c, uint64_t corr, Sluice__V1__Error *e)
{
    atomic_fetch_add(&c->ctr.node_errors, 1);
    sl__req_t *r = corr ? sl__req_find(c, corr) : NULL;
    if (!r) {
        if (c->tap) { /* e.g. STALE_EPOCH for a subscription */
            env_t env = SLUICE__V1__ENVELOPE__INIT;
            env.corr = corr;
            env.body_case = SLUICE__V1__ENVELOPE__BODY_ERROR;
            env.error = e;
            c->tap(c->tap_arg, &env);
        }
        return;
    }
    sl__req_remove(c, r);
    sl__req_complete_error(r, sl__err_from_node(e->code), e->code, e->text);
}

/* A queue name as bytes (from a scanned envelope) against a sub's. */
static sl__sub_t *s_sub_for_bytes(sl_client_t *c, const uint8_t *q, size_t len)
{
    char name[SL_QUEUE_NAME_MAX + 1];
    if (len > SL_QUEUE_NAME_MAX || memchr(q, '\0', len))
        return NULL; /* no queue of ours has that name */
    memcpy(name, q, len);
    name[len] = '\0';
    return s_sub_for(c, name);
}

/* Deliveries whose scan is kept between the check and the hand-out (a
 * node sends at most 64 per envelope; more are scanned again). */
#define S_VIEWS 64

/* One delivery: to its subscription, or back to the node. */
static void s_take_delivery(sl_client_t *c, const sl__dview_t *v, sl__sub_t **s_p)
{
    if (!v->has_job || !v->has_lease) {
        atomic_fetch_add(&c->ctr.bad_messages, 1);
        return;
    }
    atomic_fetch_add(&c->ctr.delivered, 1);
    sl__sub_t *s = *s_p; /* the last one found: batches are of one queue */
    if (!s || !(s->live || s->draining) || strlen(s->queue) != v->j.queue_len ||
        memcmp(s->queue, v->j.queue, v->j.queue_len) != 0)
        *s_p = s = s_sub_for_bytes(c, v->j.queue, v->j.queue_len);
    if (!s) {
        /* Crossed our Unsubscribe: give it straight back. */
        s_send_fail_lease(c, &v->lease, true, "consumer unsubscribed");
        return;
    }
    if (s->granted > 0)
        s->granted--;
    s->running++;
    sl__delivery_t *d = sl__delivery_new(s, v);
    int rc = d ? sl__delivery_dispatch(d) : SL_ENOMEM;
    if (rc != SL_OK) {
        s_send_fail_lease(c, &v->lease, true,
                          rc == SL_ENOMEM ? "consumer out of memory"
                          : s->out        ? "consumer stopped or its window is full"
                                          : "consumer cannot start a handler");
        sl__delivery_free(&d);
        s_job_done(c, s);
    }
}

/* A Deliver envelope's body, scanned in place: the whole body is checked
 * first, so a malformed one is dropped whole, as protobuf-c would. */
static int s_on_deliver(sl_client_t *c, const sl__pb_rd_t *body)
{
    sl__dview_t views[S_VIEWS], extra;
    sl__pb_rd_t r = *body, rest = *body;
    size_t n = 0;
    int rc;
    while ((rc = sl__deliver_next(&r, n < S_VIEWS ? &views[n] : &extra)) > 0)
        if (++n == S_VIEWS)
            rest = r; /* where the deliveries not kept begin */
    if (rc < 0)
        return SL_EPROTO;
    sl__sub_t *s = NULL;
    for (size_t i = 0; i < n && i < S_VIEWS; i++)
        s_take_delivery(c, &views[i], &s);
    while (n > S_VIEWS && sl__deliver_next(&rest, &extra) > 0)
        s_take_delivery(c, &extra, &s);
    return SL_OK;
}

static void s_on_env(sl_client_t *c, env_t *env)
{
    switch (env->body_case) {
    case SLUICE__V1__ENVELOPE__BODY_HEARTBEAT:
        if (env->heartbeat->interval_ms > 0 && env->heartbeat->interval_ms < 3600 * 1000) {
            c->node_hb_ms = (int)env->heartbeat->interval_ms;
            atomic_store(&c->ctr.node_hb_ms, c->node_hb_ms);
        }
        s_saw_epoch(c, env->heartbeat->epoch);
        break;
    case SLUICE__V1__ENVELOPE__BODY_CONFIRM:
        s_on_confirm(c, env->corr, env->confirm);
        break;
    case SLUICE__V1__ENVELOPE__BODY_DELIVER:
        /* One the scanner refused (a delivery's job or lease given twice,
         * which protobuf-c merges): a node never sends that. */
        atomic_fetch_add(&c->ctr.bad_messages, 1);
        break;
    case SLUICE__V1__ENVELOPE__BODY_LEASE_REPLY:
        s_on_lease_reply(c, env->corr, env->lease_reply);
        break;
    case SLUICE__V1__ENVELOPE__BODY_ADMIN_REPLY:
        s_on_admin_reply(c, env->corr, env->admin_reply);
        break;
    case SLUICE__V1__ENVELOPE__BODY_ERROR:
        s_on_error(c, env->corr, env->error);
        break;
    case SLUICE__V1__ENVELOPE__BODY_ROUTE_TABLE:
    case SLUICE__V1__ENVELOPE__BODY_ASSIGNMENT:
        if (c->tap) { /* the coordinator's: the cluster's business */
            c->tap(c->tap_arg, env);
            break;
        }
        atomic_fetch_add(&c->ctr.bad_messages, 1);
        break;
    case SLUICE__V1__ENVELOPE__BODY_SUBSCRIBE_REPLY:
        /* A Subscribe or Unsubscribe was carried out. Credit is ours to
         * count (the node's figure may predate acks in flight) and a
         * refusal comes as an Error, so this says nothing we act on. */
        break;
    case SLUICE__V1__ENVELOPE__BODY__NOT_SET:
        /* A kind newer than this build (or none): ignored, so that nodes
         * can grow the protocol without breaking older clients. */
        break;
    default: /* requests a node never sends */
        atomic_fetch_add(&c->ctr.bad_messages, 1);
        break;
    }
}

/* One envelope frame: Deliver scanned in place, the rest through
 * protobuf-c. */
static int s_decode(const void *data, size_t size, void *arg)
{
    sl_client_t *c = arg;
    s_alive(c); /* any message is a sign of life, even a bad one */
    sl__pb_rd_t body;
    if (sl__deliver_envelope(data, size, &body))
        return s_on_deliver(c, &body);
    env_t *env = NULL;
    int rc = sl_wire_unpack(data, size, &env);
    if (rc != SL_OK)
        return rc;
    s_on_env(c, env);
    sl_wire_env_free(&env);
    return SL_OK;
}

static void s_recv_all(sl_client_t *c)
{
    for (int i = 0; i < SL__CLIENT_BATCH; i++) {
        sl_wire_msg_t m;
        int rc = sl_wire_try_recv_with(c->sock, false, c->max_frame, &m, s_decode, c);
        sl_wire_msg_release(&m);
        if (rc == SL_EAGAIN || rc == SL_ECLOSED || rc == SL_EINVAL || rc == SL_ESYS)
            return;
        atomic_fetch_add(&c->ctr.received, 1);
        if (rc != SL_OK) {
            s_alive(c);
            atomic_fetch_add(&c->ctr.bad_messages, 1);
        }
    }
}

/* --- commands -------------------------------------------------------- */

static void s_on_cmd(sl_client_t *c, sl__cmd_t *cmd)
{
    sl__sub_t *s = cmd->sub;
    switch (cmd->kind) {
    case SL__CMD_REQ: {
        sl__req_t *r = cmd->req;
        if (c->stopping) {
            sl__req_complete_error(r, SL_ECLOSED, 0, NULL);
            break;
        }
        int rc = sl__req_add(c, r);
        if (rc != SL_OK) {
            sl__req_complete_error(r, rc, 0, NULL);
            break;
        }
        s_req_send(c, r, sl_now());
        break;
    }
    case SL__CMD_ACK: /* acks come as tagged deliveries (s_on_ack) */
        break;
    case SL__CMD_FAIL:
        s_send_fail_lease(c, &cmd->lease, cmd->retryable, cmd->error);
        s_settled(c, s);
        break;
    case SL__CMD_DONE:
        s_settled(c, s);
        break;
    case SL__CMD_SUB:
        if (c->stopping) {
            if (s->out)
                sl_chan_close(s->out);
            break;
        }
        s->live = true;
        s->running = 0;
        s->handlers = 0;
        s_send_subscribe(c, s);
        break;
    case SL__CMD_UNSUB:
        s_sub_stop(c, s);
        if (s->out || !s->draining) {
            /* subscribe: the user holds its deliveries; nothing to wait for */
            sl_offer(cmd->done, (void *)(intptr_t)SL_OK);
            sl_chan_close(cmd->done);
            sl_chan_destroy(&cmd->done);
        } else {
            sl_chan_destroy(&s->idle);
            s->idle = cmd->done;
            cmd->done = NULL;
        }
        s_sub_idle_check(c, s);
        break;
    case SL__CMD_SEND:
        if (!c->stopping)
            s_send_bytes(c, cmd->buf, cmd->len);
        break;
    case SL__CMD_CANCEL: {
        sl__req_t *r = sl__req_find(c, cmd->corr);
        if (r) {
            sl__req_remove(c, r);
            sl__req_complete_error(r, SL_ECLOSED, 0, "cancelled");
        }
        break;
    }
    case SL__CMD_RECONNECT:
        if (!c->stopping && !(cmd->if_down && c->up)) {
            char *ep = (char *)cmd->buf;
            s_reconnect(c, &ep);
            cmd->buf = (uint8_t *)ep; /* freed with the command if not taken */
        }
        break;
    case SL__CMD_RESUB:
        s->window = cmd->window;
        s->concurrency = cmd->concurrency;
        s->member_epoch = cmd->member_epoch;
        if (s->live)
            s_send_subscribe(c, s); /* credit: the new window less running */
        break;
    case SL__CMD_STOP:
        c->stopping = true;
        for (sl__sub_t *t = s_subs(c); t; t = t->next)
            s_sub_stop(c, t);
        break;
    }
}

/* An acked delivery, handed over as the command itself. */
static void s_on_ack(sl_client_t *c, sl__delivery_t *d)
{
    /* Should batching fail (no memory), the lease expires and the job is
     * delivered again, which at-least-once allows. */
    (void)s_ack_push(c, &d->lease);
    sl__sub_t *s = d->sub;
    sl__delivery_free(&d);
    s_settled(c, s);
}

static void s_drain_cmds(sl_client_t *c)
{
    for (int i = 0; i < SL__CLIENT_BATCH; i++) {
        void *v;
        int rc = sl_poll(c->cmds, &v);
        if (rc == SL_ECLOSED) {
            /* destroy could not queue STOP: a closed channel says it too */
            c->cmds_closed = true;
            if (!c->stopping)
                s_on_cmd(c, &c->stop_cmd);
        }
        if (rc != SL_OK)
            return;
        if ((uintptr_t)v & SL__CMD_TAG_ACK) {
            s_on_ack(c, (sl__delivery_t *)((uintptr_t)v & ~SL__CMD_TAG_ACK));
            continue;
        }
        sl__cmd_t *cmd = v;
        s_on_cmd(c, cmd);
        if (cmd != &c->stop_cmd) {
            free(cmd->error);
            free(cmd->buf);
            free(cmd);
        }
    }
}

/* --- timers and the loop --------------------------------------------- */

static void s_timers(sl_client_t *c, int64_t now)
{
    if (now - c->last_send >= (int64_t)s_hb_interval(c) * 1000000)
        s_send_heartbeat(c);
    if (c->up && now - c->last_recv > s_silence_ns(c)) {
        c->up = false;
        c->resync = true;
        atomic_store(&c->ctr.connected, false);
    }
    sl__req_t *r;
    while ((r = sl__req_earliest(c)) && r->deadline <= now) {
        sl__req_remove(c, r);
        sl__req_complete_error(r, SL_ETIMEDOUT, 0, "no answer before the deadline");
    }
    if (c->resend_ms > 0 && now >= c->next_resend_scan) {
        int64_t age = (int64_t)c->resend_ms * 1000000;
        for (r = c->req_head; r; r = r->next)
            if (now - r->sent_at >= age) {
                s_req_send(c, r, now);
                atomic_fetch_add(&c->ctr.resent, 1);
            }
        c->next_resend_scan = now + age / 4 + 1;
    }
}

/* Milliseconds zmq_poll may sleep before a timer is due (rounded up). */
static long s_poll_timeout(sl_client_t *c, int64_t now)
{
    int64_t due = c->last_send + (int64_t)s_hb_interval(c) * 1000000;
    if (c->up && c->last_recv + s_silence_ns(c) + 1 < due)
        due = c->last_recv + s_silence_ns(c) + 1;
    sl__req_t *r = sl__req_earliest(c);
    if (r && r->deadline < due)
        due = r->deadline;
    if (c->resend_ms > 0 && c->npending > 0 && c->next_resend_scan < due)
        due = c->next_resend_scan;
    if (due <= now)
        return 0;
    return (long)((due - now + 999999) / 1000000);
}

/* Stopping is done once no consume handler is still running. */
static bool s_can_exit(sl_client_t *c)
{
    for (sl__sub_t *s = s_subs(c); s; s = s->next)
        if (!s->out && s->running > 0)
            return false;
    return true;
}

void *sl__io_main(void *arg)
{
    sl_client_t *c = arg;
    int cmd_fd = sl_chan_fd(c->cmds, SL_CHAN_READABLE);
    zmq_pollitem_t items[3] = {
        {.socket = c->sock, .events = ZMQ_POLLIN},
        {.socket = NULL, .fd = cmd_fd, .events = ZMQ_POLLIN},
        {.socket = c->mon, .events = ZMQ_POLLIN},
    };
    c->last_recv = c->last_send = sl_now();
    s_send_heartbeat(c); /* introduce ourselves: the node answers in kind */
    for (;;) {
        int64_t now = sl_now();
        long timeout = s_poll_timeout(c, now);
        items[0].socket = c->sock; /* new ones after a reconnect */
        items[2].socket = c->mon;
        int n = zmq_poll(items, 3, timeout);
        if (n < 0 && errno != EINTR)
            break; /* the context is gone */
        if (n > 0) {
            /* Socket first: answers already received belong to the old
             * connection when the monitor reports a new one. */
            if (items[0].revents & ZMQ_POLLIN)
                s_recv_all(c);
            if (items[2].revents & ZMQ_POLLIN)
                s_monitor(c);
            if (items[1].revents & ZMQ_POLLIN)
                s_drain_cmds(c);
        }
        s_flush(c);
        s_timers(c, sl_now());
        if (c->stopping && (c->cmds_closed || s_can_exit(c)))
            break;
    }
    s_flush(c);
    sl__req_t *r;
    while ((r = c->req_head)) {
        sl__req_remove(c, r);
        sl__req_complete_error(r, SL_ECLOSED, 0, NULL);
    }
    for (sl__sub_t *s = s_subs(c); s; s = s->next) {
        if (s->out && !s->out_shared)
            sl_chan_close(s->out);
        s->live = false;
        s_drop_waiting(c, s);
        s->running = 0; /* deliveries still held by the user go stale */
        s_sub_idle_check(c, s);
    }
    return NULL;
}
