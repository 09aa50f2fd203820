/* client.c -- the calls users make: lifecycle, publish, touch, admin
 * (subscriptions are in sub.c). Each validates its arguments, encodes
 * what the node must receive, and hands a command to the I/O thread
 * (io.c); calls that wait take their answer from a promise channel. */
#define _GNU_SOURCE
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "client_int.h"
#include "sluice/name.h"
#include "sluice/sched.h"
#include "sluice/wire.h"

int sl_queue_name_check(const char *name)
{
    return sl_queue_name_ok_str(name) ? SL_OK : SL_EINVAL;
}

/* Hand cmd to the I/O thread, waiting for room until deadline. On failure
 * the caller still owns cmd. */
static int s_cmd_until(sl_client_t *c, sl__cmd_t *cmd, int64_t deadline)
{
    return sl_put_until(c->cmds, cmd, deadline);
}

int sl__client_cmd(sl_client_t *c, sl__cmd_t *cmd)
{
    return s_cmd_until(c, cmd, SL_FOREVER);
}

sl__cmd_t *sl__cmd_new(int kind)
{
    sl__cmd_t *cmd = calloc(1, sizeof *cmd);
    if (cmd)
        cmd->kind = kind;
    return cmd;
}

/* --- lifecycle ------------------------------------------------------- */

static void s_free(sl_client_t *c)
{
    sl__sub_t *s = c->subs;
    while (s) {
        sl__sub_t *next = s->next;
        sl_chan_destroy(&s->out);
        if (s->idle) {
            sl_chan_close(s->idle);
            sl_chan_destroy(&s->idle);
        }
        free(s);
        s = next;
    }
    if (c->mon)
        zmq_close(c->mon);
    if (c->sock)
        zmq_close(c->sock);
    if (c->zctx)
        zmq_ctx_term(c->zctx);
    sl_chan_destroy(&c->cmds);
    sl__req_table_release(c);
    free(c->ack_pending);
    free(c->ack_buf);
    free(c->endpoint);
    free(c->consumer_id);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

static int s_setopt_int(void *sock, int opt, int v)
{
    return zmq_setsockopt(sock, opt, &v, sizeof v) == 0 ? SL_OK : SL_ESYS;
}

int sl__client_sock_open(sl_client_t *c)
{
    void *sock = zmq_socket(c->zctx, ZMQ_DEALER);
    void *mon = zmq_socket(c->zctx, ZMQ_PAIR);
    bool monitored = false;
    int rc = SL_ESYS;
    if (!sock || !mon)
        goto fail;
    /* Unbounded queues: a full queue would drop (send) or stall the node
     * (receive); what we hold is bounded by what callers wait for. No
     * linger: what a closed socket still holds for the node is dropped. */
    if (s_setopt_int(sock, ZMQ_SNDHWM, 0) || s_setopt_int(sock, ZMQ_RCVHWM, 0) ||
        s_setopt_int(sock, ZMQ_LINGER, 0) || s_setopt_int(sock, ZMQ_RECONNECT_IVL, 100) ||
        s_setopt_int(sock, ZMQ_RECONNECT_IVL_MAX, 1000))
        goto fail;
    /* One name per socket: a reconnect's monitor must not meet the last. */
    char mon_addr[80];
    snprintf(mon_addr, sizeof mon_addr, "inproc://sluice-client-monitor-%p-%u", (void *)c,
             c->mon_gen++);
    if (zmq_socket_monitor(sock, mon_addr, ZMQ_EVENT_CONNECTED | ZMQ_EVENT_DISCONNECTED) != 0)
        goto fail;
    monitored = true;
    if (zmq_connect(mon, mon_addr) != 0)
        goto fail;
    if (zmq_connect(sock, c->endpoint) != 0) {
        rc = (errno == EINVAL || errno == EPROTONOSUPPORT || errno == ENOCOMPATPROTO)
                 ? SL_EINVAL
                 : SL_ESYS;
        goto fail;
    }
    c->sock = sock;
    c->mon = mon;
    return SL_OK;
fail:
    if (monitored)
        zmq_socket_monitor(sock, NULL, 0);
    if (mon)
        zmq_close(mon);
    if (sock)
        zmq_close(sock);
    return rc;
}

static sl_client_t *s_new(const sl_client_opts_t *opts, bool inner, sl_client_t *parent,
                          sl__tap_fn tap, void *tap_arg, int *err)
{
    sl_client_opts_t o = {0};
    if (opts)
        o = *opts;
    int rc = SL_OK;
    if (o.heartbeat_ms < 0 || o.resend_ms < 0 || (o.max_frame > 0 && o.max_frame < 256)) {
        if (err)
            *err = SL_EINVAL;
        return NULL;
    }
    sl_client_t *c = calloc(1, sizeof *c);
    if (!c) {
        if (err)
            *err = SL_ENOMEM;
        return NULL;
    }
    if (o.coordinator && !inner) {
        pthread_mutex_init(&c->lock, NULL);
        rc = sl__cluster_new(c, &o);
        if (rc != SL_OK) {
            pthread_mutex_destroy(&c->lock);
            free(c);
            if (err)
                *err = rc;
            return NULL;
        }
        return c;
    }
    c->parent = parent;
    c->tap = tap;
    c->tap_arg = tap_arg;
    pthread_mutex_init(&c->lock, NULL);
    atomic_init(&c->next_corr, 1);
    c->heartbeat_ms = o.heartbeat_ms ? o.heartbeat_ms : SL__CLIENT_HB_DEFAULT_MS;
    c->resend_ms = o.resend_ms;
    c->max_frame = o.max_frame ? o.max_frame : SL__CLIENT_FRAME_DEFAULT;
    c->linger_ms = o.linger_ms == 0 ? SL__CLIENT_LINGER_DEFAULT_MS : o.linger_ms < 0 ? 0 : o.linger_ms;
    c->endpoint = strdup(o.endpoint ? o.endpoint : SL_CLIENT_ENDPOINT_DEFAULT);
    c->consumer_id = o.consumer_id ? strdup(o.consumer_id) : NULL;
    c->cmds = sl_chan_new(SL_BUF_FIXED, SL__CLIENT_CMDS_CAP);
    if (!c->endpoint || (o.consumer_id && !c->consumer_id) || !c->cmds ||
        sl__req_table_init(c) != SL_OK) {
        rc = SL_ENOMEM;
        goto fail;
    }
    sl_chan_set_max_pending(c->cmds, 1u << 20); /* many coroutines may ack at once */
    if (sl_chan_fd(c->cmds, SL_CHAN_READABLE) < 0) {
        rc = SL_ESYS;
        goto fail;
    }

    c->zctx = zmq_ctx_new();
    if (!c->zctx) {
        rc = SL_ESYS;
        goto fail;
    }
    if ((rc = sl__client_sock_open(c)) != SL_OK)
        goto fail;
    atomic_store(&c->ctr.sessions, 1);
    if (pthread_create(&c->io, NULL, sl__io_main, c) != 0) {
        rc = SL_ESYS;
        goto fail;
    }
    return c;

fail:
    if (c->sock)
        zmq_socket_monitor(c->sock, NULL, 0);
    s_free(c);
    if (err)
        *err = rc;
    return NULL;
}

sl_client_t *sl_client_new(const sl_client_opts_t *opts, int *err)
{
    return s_new(opts, false, NULL, NULL, NULL, err);
}

sl_client_t *sl__client_new_inner(const sl_client_opts_t *opts, sl_client_t *parent,
                                  sl__tap_fn tap, void *tap_arg, int *err)
{
    return s_new(opts, true, parent, tap, tap_arg, err);
}

int sl__client_peer_interval_ms(sl_client_t *c)
{
    int ms = atomic_load(&c->ctr.node_hb_ms);
    return ms > 0 ? ms : c->heartbeat_ms;
}

/* Answer a command the I/O thread never saw. */
static void s_cmd_abandon(void *v)
{
    if ((uintptr_t)v & SL__CMD_TAG_ACK) { /* an acked delivery */
        sl__delivery_t *d = (sl__delivery_t *)((uintptr_t)v & ~SL__CMD_TAG_ACK);
        sl__delivery_free(&d);
        return;
    }
    sl__cmd_t *cmd = v;
    switch (cmd->kind) {
    case SL__CMD_REQ:
        sl__req_complete_error(cmd->req, SL_ECLOSED, 0, NULL);
        break;
    case SL__CMD_UNSUB:
        if (cmd->done) {
            sl_offer(cmd->done, (void *)(intptr_t)SL_ECLOSED);
            sl_chan_close(cmd->done);
            sl_chan_destroy(&cmd->done);
        }
        break;
    case SL__CMD_SUB:
        if (cmd->sub && cmd->sub->out && !cmd->sub->out_shared)
            sl_chan_close(cmd->sub->out);
        break;
    default:
        break;
    }
    free(cmd->error);
    free(cmd->buf);
    free(cmd);
}

void sl_client_destroy(sl_client_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    sl_client_t *c = *self_p;
    *self_p = NULL;
    if (c->cluster) {
        sl__cluster_destroy(c);
        pthread_mutex_destroy(&c->lock);
        free(c);
        return;
    }
    atomic_store(&c->closed, true);
    c->stop_cmd.kind = SL__CMD_STOP;
    /* Should the put fail (destroy called from a scheduler callback),
     * close the channel: the I/O thread takes that as STOP too. */
    if (sl__client_cmd(c, &c->stop_cmd) != SL_OK)
        sl_chan_close(c->cmds);
    pthread_join(c->io, NULL);
    sl_chan_close(c->cmds);
    void *v;
    while (sl_poll(c->cmds, &v) == SL_OK)
        if (v != &c->stop_cmd)
            s_cmd_abandon(v);
    /* Let the last acks out if the node is there to take them. */
    s_setopt_int(c->sock, ZMQ_LINGER, atomic_load(&c->ctr.connected) ? c->linger_ms : 0);
    zmq_socket_monitor(c->sock, NULL, 0);
    s_free(c);
}

int sl_client_wait_connected(sl_client_t *self, int64_t deadline)
{
    if (!self)
        return SL_EINVAL;
    if (self->cluster)
        return sl__cluster_wait_connected(self, deadline);
    for (;;) {
        if (atomic_load(&self->closed))
            return SL_ECLOSED;
        if (atomic_load(&self->ctr.connected))
            return SL_OK;
        int64_t now = sl_now();
        if (deadline != SL_FOREVER && now >= deadline)
            return SL_ETIMEDOUT;
        int64_t step = now + 2 * 1000000;
        sl_sleep_until(deadline != SL_FOREVER && deadline < step ? deadline : step);
    }
}

void sl_client_counters(sl_client_t *self, sl_client_counters_t *out)
{
    memset(out, 0, sizeof *out);
    if (!self)
        return;
    if (self->cluster) {
        sl__cluster_counters(self, out);
        return;
    }
    out->connected = atomic_load(&self->ctr.connected);
    out->linked = atomic_load(&self->ctr.linked);
    out->epoch = atomic_load(&self->ctr.epoch);
    out->sessions = atomic_load(&self->ctr.sessions);
    out->sent = atomic_load(&self->ctr.sent);
    out->received = atomic_load(&self->ctr.received);
    out->resent = atomic_load(&self->ctr.resent);
    out->pending = atomic_load(&self->ctr.pending);
    out->delivered = atomic_load(&self->ctr.delivered);
    out->stale_leases = atomic_load(&self->ctr.stale_leases);
    out->node_errors = atomic_load(&self->ctr.node_errors);
    out->bad_messages = atomic_load(&self->ctr.bad_messages);
}

/* --- requests -------------------------------------------------------- */

/* Encode env into r (stamping r's corr) and check the frame limit. */
static int s_req_encode(sl_client_t *c, sl__req_t *r, Sluice__V1__Envelope *env)
{
    env->corr = r->corr;
    int rc = sl_wire_pack(env, &r->buf, &r->len);
    if (rc != SL_OK)
        return rc;
    return r->len > c->max_frame ? SL_ETOOBIG : SL_OK;
}

/* Hand r to the I/O thread and return its promise (caller owns one
 * reference). r is consumed whatever happens. */
static sl_chan_t *s_req_submit(sl_client_t *c, sl__req_t *r, int *err)
{
    sl_chan_t *promise = sl_chan_ref(r->promise);
    sl__cmd_t *cmd = sl__cmd_new(SL__CMD_REQ);
    int rc = cmd ? SL_OK : SL_ENOMEM;
    if (rc == SL_OK) {
        cmd->req = r;
        rc = s_cmd_until(c, cmd, r->deadline);
    }
    if (rc != SL_OK) {
        free(cmd);
        sl__req_free(&r);
        sl_chan_destroy(&promise);
        if (err)
            *err = rc == SL_ECLOSED ? SL_ECLOSED : rc;
        return NULL;
    }
    return promise;
}

/* Wait for a reply promise; returns the reply (caller owns) or NULL with
 * *status set. */
static sl__reply_t *s_reply_take(sl_chan_t **promise_p, int *status)
{
    void *v = NULL;
    int rc = sl_take(*promise_p, &v);
    sl_chan_destroy(promise_p);
    if (rc != SL_OK || !v) {
        *status = rc == SL_OK ? SL_ENOMEM : SL_ECLOSED;
        return NULL;
    }
    sl__reply_t *rep = v;
    *status = rep->status;
    return rep;
}

/* Encode env into r, send it and wait for the answer: the reply (caller
 * frees; *status its status), or NULL with *status set. r is the I/O
 * thread's, or freed here, either way. */
static sl__reply_t *s_req_call(sl_client_t *c, sl__req_t *r, Sluice__V1__Envelope *env,
                               int *status)
{
    *status = s_req_encode(c, r, env);
    if (*status != SL_OK) {
        sl__req_free(&r);
        return NULL;
    }
    sl_chan_t *p = s_req_submit(c, r, status);
    return p ? s_reply_take(&p, status) : NULL;
}

/* --- producing ------------------------------------------------------- */

static bool s_id_zero(const uint8_t id[SL_ID_LEN])
{
    for (int i = 0; i < SL_ID_LEN; i++)
        if (id[i])
            return false;
    return true;
}

static int s_job_check(const sl_job_t *j)
{
    if (sl_queue_name_check(j->queue) != SL_OK || j->priority > 9 ||
        (!j->payload && j->payload_len > 0) || (j->n_headers > 0 && !j->headers) ||
        j->delay_ms < 0 || j->ttl_ms < 0)
        return SL_EINVAL;
    for (size_t i = 0; i < j->n_headers; i++)
        if (!j->headers[i].key || !j->headers[i].value)
            return SL_EINVAL;
    return SL_OK;
}

/* Envelope{corr, publish: pub} into a new buffer (*buf, caller owns),
 * framed by hand so that the Publish ends with node_epoch written as a
 * 10-byte varint: a padded form every protobuf decoder reads, of fixed
 * size, so the I/O thread can write the node epoch it knows into it at
 * each send without encoding again (io.c s_req_send). *stamp_at gets its
 * offset. pub->node_epoch must be 0 (not encoded twice). */
static int s_publish_pack(uint64_t corr, const Sluice__V1__Publish *pub, uint8_t **buf,
                          size_t *len, size_t *stamp_at)
{
    enum { ENV_CORR = 1, ENV_PUBLISH = 10, PUB_NODE_EPOCH = 2 };
    size_t body = sluice__v1__publish__get_packed_size(pub) + 1 + SL__STAMP_LEN;
    size_t n = (corr ? 1 + sl__pb_varint_size(corr) : 0) + sl__pb_len_size(ENV_PUBLISH, body);
    uint8_t *p = malloc(n);
    if (!p)
        return SL_ENOMEM;
    uint8_t *w = p;
    if (corr)
        w = sl__pb_put_varint(sl__pb_put_tag(w, ENV_CORR, SL__PB_VARINT), corr);
    w = sl__pb_put_len(w, ENV_PUBLISH, body);
    w += sluice__v1__publish__pack(pub, w);
    w = sl__pb_put_tag(w, PUB_NODE_EPOCH, SL__PB_VARINT);
    *stamp_at = (size_t)(w - p);
    sl__stamp(w, 0);
    assert(w + SL__STAMP_LEN == p + n);
    *buf = p;
    *len = n;
    return SL_OK;
}

/* Build the Publish for jobs and encode it into *buf (caller owns) under
 * corr; jobs without an id get a new one in ids[i]. */
static int s_publish_encode(sl_client_t *c, uint64_t corr, uint8_t (*ids)[SL_ID_LEN],
                            const sl_job_t *jobs, size_t n, uint8_t **buf, size_t *len,
                            size_t *stamp_at)
{
    size_t nh = 0;
    for (size_t i = 0; i < n; i++)
        nh += jobs[i].n_headers;
    Sluice__V1__Job *pbs = calloc(n, sizeof *pbs);
    Sluice__V1__Job **ptrs = calloc(n, sizeof *ptrs);
    Sluice__V1__Job__HeadersEntry *hs = nh ? calloc(nh, sizeof *hs) : NULL;
    Sluice__V1__Job__HeadersEntry **hptrs = nh ? calloc(nh, sizeof *hptrs) : NULL;
    int rc = SL_ENOMEM;
    if (!pbs || !ptrs || (nh && (!hs || !hptrs)))
        goto out;
    int64_t now = sl_wall_ms();
    size_t h = 0;
    for (size_t i = 0; i < n; i++) {
        const sl_job_t *j = &jobs[i];
        Sluice__V1__Job *pb = &pbs[i];
        sluice__v1__job__init(pb);
        if (s_id_zero(j->id)) {
            if ((rc = sl_id_new(ids[i])) != SL_OK)
                goto out;
        } else {
            memcpy(ids[i], j->id, SL_ID_LEN);
        }
        pb->id.data = ids[i];
        pb->id.len = SL_ID_LEN;
        pb->queue = (char *)j->queue;
        pb->payload.data = (uint8_t *)j->payload;
        pb->payload.len = j->payload_len;
        pb->priority = j->priority;
        pb->max_attempts = j->max_attempts;
        pb->created_ms = now;
        pb->not_before_ms = j->delay_ms > 0 ? now + j->delay_ms : 0;
        pb->deadline_ms = j->ttl_ms > 0 ? now + j->ttl_ms : 0;
        if (j->idempotency_key)
            pb->idempotency_key = (char *)j->idempotency_key;
        if (j->breaker_key)
            pb->breaker_key = (char *)j->breaker_key;
        if (j->n_headers) {
            pb->headers = &hptrs[h];
            pb->n_headers = j->n_headers;
            for (size_t k = 0; k < j->n_headers; k++, h++) {
                sluice__v1__job__headers_entry__init(&hs[h]);
                hs[h].key = (char *)j->headers[k].key;
                hs[h].value = (char *)j->headers[k].value;
                hptrs[h] = &hs[h];
            }
        }
        ptrs[i] = pb;
    }
    Sluice__V1__Publish pub = SLUICE__V1__PUBLISH__INIT;
    pub.n_jobs = n;
    pub.jobs = ptrs;
    rc = s_publish_pack(corr, &pub, buf, len, stamp_at);
    if (rc == SL_OK && *len > c->max_frame)
        rc = SL_ETOOBIG;
out:
    free(hptrs);
    free(hs);
    free(ptrs);
    free(pbs);
    return rc;
}

sl_chan_t *sl_client_publish_async(sl_client_t *self, const sl_job_t *jobs, size_t n,
                                   int64_t deadline, int *err)
{
    int rc = SL_OK;
    if (!self || !jobs || n == 0)
        rc = SL_EINVAL;
    for (size_t i = 0; rc == SL_OK && i < n; i++)
        rc = s_job_check(&jobs[i]);
    if (rc == SL_OK && atomic_load(&self->closed))
        rc = SL_ECLOSED;
    if (rc != SL_OK) {
        if (err)
            *err = rc;
        return NULL;
    }
    if (self->cluster)
        return sl__cluster_publish_async(self, jobs, n, deadline, err);
    sl__req_t *r = sl__req_new(SL__REQ_PUBLISH, atomic_fetch_add(&self->next_corr, 1), deadline);
    if (r) {
        r->n_jobs = n;
        r->ids = calloc(n, sizeof *r->ids);
    }
    rc = r && r->ids ? s_publish_encode(self, r->corr, r->ids, jobs, n, &r->buf, &r->len,
                                        &r->stamp_at)
                     : SL_ENOMEM;
    if (rc != SL_OK) {
        sl__req_free(&r);
        if (err)
            *err = rc;
        return NULL;
    }
    return s_req_submit(self, r, err);
}

int sl_client_publish(sl_client_t *self, const sl_job_t *jobs, size_t n,
                      sl_confirm_t *confirms, int64_t deadline)
{
    if (!confirms)
        return SL_EINVAL;
    int err = SL_OK;
    sl_chan_t *p = sl_client_publish_async(self, jobs, n, deadline, &err);
    if (!p)
        return err;
    void *v = NULL;
    int rc = sl_take(p, &v);
    sl_chan_destroy(&p);
    if (rc != SL_OK || !v)
        return rc == SL_OK ? SL_ENOMEM : SL_ECLOSED;
    sl_publish_result_t *res = v;
    rc = res->status;
    if (rc == SL_OK)
        memcpy(confirms, res->confirms, n * sizeof *confirms);
    sl_publish_result_destroy(&res);
    return rc;
}

int sl__publish_pack(sl_client_t *c, const sl_job_t *jobs, size_t n, uint8_t (*ids)[SL_ID_LEN],
                     uint8_t **buf, size_t *len)
{
    size_t stamp_at;
    return s_publish_encode(c, 0, ids, jobs, n, buf, len, &stamp_at);
}

sl_chan_t *sl__client_publish_pb(sl_client_t *c, const Sluice__V1__Publish *pub,
                                 int64_t deadline, sl_chan_t *notify, void *tag,
                                 uint64_t *corr, int *err)
{
    if (atomic_load(&c->closed)) {
        *err = SL_ECLOSED;
        return NULL;
    }
    sl__req_t *r = sl__req_new(SL__REQ_PUBLISH, atomic_fetch_add(&c->next_corr, 1), deadline);
    int rc = SL_ENOMEM;
    if (r) {
        r->n_jobs = pub->n_jobs;
        r->ids = calloc(pub->n_jobs, sizeof *r->ids);
    }
    if (r && r->ids) {
        for (size_t i = 0; i < pub->n_jobs; i++)
            if (pub->jobs[i]->id.len == SL_ID_LEN)
                memcpy(r->ids[i], pub->jobs[i]->id.data, SL_ID_LEN);
        rc = s_publish_pack(r->corr, pub, &r->buf, &r->len, &r->stamp_at);
        if (rc == SL_OK && r->len > c->max_frame)
            rc = SL_ETOOBIG;
    }
    if (rc != SL_OK) {
        sl__req_free(&r);
        *err = rc;
        return NULL;
    }
    r->notify = notify;
    r->tag = tag;
    *corr = r->corr;
    return s_req_submit(c, r, err);
}

int sl__client_reconnect(sl_client_t *c, const char *endpoint, bool if_down)
{
    sl__cmd_t *cmd = sl__cmd_new(SL__CMD_RECONNECT);
    if (!cmd || (endpoint && !(cmd->buf = (uint8_t *)strdup(endpoint)))) {
        free(cmd);
        return SL_ENOMEM;
    }
    cmd->if_down = if_down;
    int rc = sl__client_cmd(c, cmd);
    if (rc != SL_OK) {
        free(cmd->buf);
        free(cmd);
    }
    return rc;
}

int sl__client_cancel(sl_client_t *c, uint64_t corr)
{
    sl__cmd_t *cmd = sl__cmd_new(SL__CMD_CANCEL);
    if (!cmd)
        return SL_ENOMEM;
    cmd->corr = corr;
    int rc = sl__client_cmd(c, cmd);
    if (rc != SL_OK)
        free(cmd);
    return rc;
}

int sl__client_send(sl_client_t *c, const Sluice__V1__Envelope *env)
{
    sl__cmd_t *cmd = sl__cmd_new(SL__CMD_SEND);
    if (!cmd)
        return SL_ENOMEM;
    int rc = sl_wire_pack(env, &cmd->buf, &cmd->len);
    if (rc == SL_OK && cmd->len > c->max_frame)
        rc = SL_ETOOBIG;
    if (rc == SL_OK)
        rc = sl__client_cmd(c, cmd);
    if (rc != SL_OK) {
        free(cmd->buf);
        free(cmd);
    }
    return rc;
}

void sl_publish_result_destroy(sl_publish_result_t **result_p)
{
    if (!result_p || !*result_p)
        return;
    free(*result_p);
    *result_p = NULL;
}

int sl_client_touch(sl_client_t *self, sl_delivery_t *pub, uint32_t extend_ms, int64_t deadline)
{
    sl__delivery_t *d = self ? sl__delivery_owned(&self, pub) : NULL;
    if (!d)
        return SL_EINVAL;
    sl__req_t *r = sl__req_new(SL__REQ_TOUCH, atomic_fetch_add(&self->next_corr, 1), deadline);
    if (!r)
        return SL_ENOMEM;
    Sluice__V1__Lease lease = SLUICE__V1__LEASE__INIT;
    lease.job_id.data = d->lease.job_id;
    lease.job_id.len = SL_ID_LEN;
    lease.lease_id = d->lease.lease_id;
    lease.epoch = d->lease.epoch;
    lease.expires_ms = d->lease.expires_ms;
    Sluice__V1__Touch t = SLUICE__V1__TOUCH__INIT;
    t.lease = &lease;
    t.extend_ms = extend_ms;
    Sluice__V1__Envelope env = SLUICE__V1__ENVELOPE__INIT;
    env.body_case = SLUICE__V1__ENVELOPE__BODY_TOUCH;
    env.touch = &t;
    int rc;
    sl__reply_t *rep = s_req_call(self, r, &env, &rc);
    if (rep && rc == SL_OK) {
        d->lease.expires_ms = rep->lease_expires_ms;
        if (rep->lease_id)
            d->lease.lease_id = rep->lease_id;
        d->pub.lease_expires_ms = rep->lease_expires_ms;
    }
    if (rep)
        free(rep->admin.queues);
    free(rep);
    return rc;
}

/* --- administration -------------------------------------------------- */

/* sl_admin_op_t is Admin.Op, value for value: any op the proto has but
 * CLUSTER (sl_client_cluster's) may be asked for, so a new op needs no
 * change here. */
_Static_assert((int)SL_ADMIN_PAUSE == (int)SLUICE__V1__ADMIN__OP__PAUSE &&
                   (int)SL_ADMIN_DRAIN == (int)SLUICE__V1__ADMIN__OP__DRAIN &&
                   (int)SL_ADMIN_POLICY == (int)SLUICE__V1__ADMIN__OP__POLICY &&
                   (int)SL_ADMIN_DEAD_LIST == (int)SLUICE__V1__ADMIN__OP__DEAD_LIST &&
                   (int)SL_ADMIN_DEAD_SHOW == (int)SLUICE__V1__ADMIN__OP__DEAD_SHOW &&
                   (int)SL_ADMIN_DEAD_REQUEUE == (int)SLUICE__V1__ADMIN__OP__DEAD_REQUEUE &&
                   (int)SL_ADMIN_DEAD_PURGE == (int)SLUICE__V1__ADMIN__OP__DEAD_PURGE &&
                   SL__ADMIN_CLUSTER == (int)SLUICE__V1__ADMIN__OP__CLUSTER,
               "sl_admin_op_t must follow Admin.Op in proto/sluice.proto");

int sl_client_admin_ex(sl_client_t *self, sl_admin_op_t op, const char *queue,
                       const sl_admin_params_t *params, sl_admin_reply_t *reply,
                       int64_t deadline)
{
    if (reply)
        memset(reply, 0, sizeof *reply);
    if (!self || !reply || (int)op == SL__ADMIN_CLUSTER ||
        !protobuf_c_enum_descriptor_get_value(&sluice__v1__admin__op__descriptor, (int)op))
        return SL_EINVAL;
    if (op == SL_ADMIN_POLICY && (!params || !params->policy)) {
        snprintf(reply->node_text, sizeof reply->node_text, "POLICY needs a policy spec");
        return SL_EINVAL;
    }
    int rc = sl__dead_check((int)op, params, self->cluster != NULL, reply);
    if (rc != SL_OK)
        return rc;
    rc = self->cluster ? sl__cluster_admin(self, op, queue, params, reply, deadline)
                       : sl__client_admin(self, (int)op, queue, params, reply, NULL, deadline);
    /* The node refuses a bad spec as a bad message: to the caller, it is a
     * bad argument. */
    if (op == SL_ADMIN_POLICY && rc == SL_EPROTO && reply->node_code == SL_CODE_BAD_MESSAGE)
        rc = SL_EINVAL;
    return sl__dead_status((int)op, params, rc, reply);
}

int sl_client_admin(sl_client_t *self, sl_admin_op_t op, const char *queue,
                    sl_admin_reply_t *reply, int64_t deadline)
{
    return sl_client_admin_ex(self, op, queue, NULL, reply, deadline);
}

/* Queues in one page of STATS we ask for: as many as surely fit in our
 * max_frame (a QueueStats is at most about 470 bytes: a 128-byte name, a
 * policy of up to ~140, every number at its widest). */
static uint32_t s_stats_page(const sl_client_t *c)
{
    size_t n = c->max_frame > 2048 ? (c->max_frame - 1024) / 512 : 1;
    return n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
}

/* One Admin request and its answer: the reply (caller frees) or NULL,
 * *status set either way. */
static sl__reply_t *s_admin_once(sl_client_t *self, int op, const char *queue,
                                 const sl_admin_params_t *params, const char *after,
                                 int64_t deadline, int *status)
{
    sl__req_t *r = sl__req_new(SL__REQ_ADMIN, atomic_fetch_add(&self->next_corr, 1), deadline);
    if (!r) {
        *status = SL_ENOMEM;
        return NULL;
    }
    Sluice__V1__Admin a = SLUICE__V1__ADMIN__INIT;
    a.op = (Sluice__V1__Admin__Op)op;
    if (queue)
        a.queue = (char *)queue;
    if (params && params->policy)
        a.policy = (char *)params->policy;
    if (op == SL_ADMIN_STATS && !queue) { /* paged */
        a.after = (char *)after;
        a.limit = s_stats_page(self);
    }
    if (op == SL_ADMIN_DEAD_LIST && params) { /* paged by the caller */
        a.after = (char *)(params->after ? params->after : "");
        a.limit = params->limit;
    }
    if (params && params->dead.id) {
        a.id.data = (uint8_t *)params->dead.id;
        a.id.len = SL_ID_LEN;
    }
    if (params) {
        a.all = params->dead.all;
        a.older_than_ms = params->dead.older_than_ms;
    }
    Sluice__V1__Envelope env = SLUICE__V1__ENVELOPE__INIT;
    env.body_case = SLUICE__V1__ENVELOPE__BODY_ADMIN;
    env.admin = &a;
    return s_req_call(self, r, &env, status);
}

/* Append the queues of page to *into (which owns them then). */
static int s_stats_append(sl_admin_reply_t *into, sl_admin_reply_t *page)
{
    if (page->n_queues == 0)
        return SL_OK;
    sl_queue_stats_t *qs =
        realloc(into->queues, (into->n_queues + page->n_queues) * sizeof *into->queues);
    if (!qs)
        return SL_ENOMEM;
    memcpy(qs + into->n_queues, page->queues, page->n_queues * sizeof *qs);
    into->queues = qs;
    into->n_queues += page->n_queues;
    sl_admin_reply_release(page);
    return SL_OK;
}

int sl__client_admin(sl_client_t *self, int op, const char *queue,
                     const sl_admin_params_t *params, sl_admin_reply_t *reply,
                     sl_cluster_view_t *view, int64_t deadline)
{
    memset(reply, 0, sizeof *reply);
    if (queue && !*queue && op == SL_ADMIN_STATS)
        queue = NULL;
    bool any_queue = op == SL_ADMIN_STATS || op == SL__ADMIN_CLUSTER;
    if ((queue || !any_queue) && sl_queue_name_check(queue) != SL_OK) {
        snprintf(reply->node_text, sizeof reply->node_text, "invalid queue name: %s",
                 SL_QUEUE_NAME_RULE);
        return SL_EINVAL;
    }
    if (atomic_load(&self->closed))
        return SL_ECLOSED;
    /* STATS of every queue comes in pages (AdminReply.next names where the
     * next one starts) until one says it is the last; a node that does not
     * page answers everything at once, with no next. */
    char after[SL_QUEUE_NAME_MAX + 1] = "";
    bool paged = op == SL_ADMIN_STATS && !queue;
    int rc;
    for (;;) {
        sl__reply_t *rep = s_admin_once(self, op, queue, params, after, deadline, &rc);
        if (!rep)
            break;
        sl_admin_reply_t page = rep->admin; /* the queues array moves here */
        if (view) { /* the view's arrays move too (CLUSTER: one page) */
            sl_cluster_view_release(view);
            *view = rep->view;
        } else {
            sl_cluster_view_release(&rep->view);
        }
        bool more = paged && rc == SL_OK && rep->next[0] && strcmp(rep->next, after) > 0;
        if (more)
            memcpy(after, rep->next, sizeof after);
        if (op == SL_ADMIN_DEAD_LIST) /* the caller follows this one */
            snprintf(page.next, sizeof page.next, "%s", rep->next);
        free(rep);
        sl_queue_stats_t *qs = reply->queues;
        size_t nq = reply->n_queues;
        *reply = page; /* dead jobs move too (DEAD_*: never paged here) */
        reply->queues = qs;
        reply->n_queues = nq;
        page.dead = NULL;
        page.n_dead = 0;
        int arc = s_stats_append(reply, &page);
        if (arc != SL_OK) {
            sl_admin_reply_release(&page);
            rc = arc;
        }
        /* Names only grow from page to page: anything else would loop. */
        if (!more || rc != SL_OK)
            break;
    }
    return rc;
}

void sl_admin_reply_release(sl_admin_reply_t *reply)
{
    if (!reply)
        return;
    free(reply->queues);
    reply->queues = NULL;
    reply->n_queues = 0;
    sl_dead_jobs_destroy(&reply->dead, reply->n_dead);
    reply->n_dead = 0;
}

int sl_client_stats(sl_client_t *self, const char *queue, sl_queue_stats_t **stats_out,
                    size_t *n_out, int64_t deadline)
{
    if (!stats_out || !n_out)
        return SL_EINVAL;
    *stats_out = NULL;
    *n_out = 0;
    sl_admin_reply_t rep;
    int rc = sl_client_admin(self, SL_ADMIN_STATS, queue, &rep, deadline);
    if (rc == SL_OK) {
        *stats_out = rep.queues;
        *n_out = rep.n_queues;
    } else {
        sl_admin_reply_release(&rep);
    }
    return rc;
}

static int s_admin_simple(sl_client_t *self, sl_admin_op_t op, const char *queue,
                          int64_t deadline)
{
    sl_admin_reply_t rep;
    int rc = sl_client_admin(self, op, queue, &rep, deadline);
    sl_admin_reply_release(&rep);
    return rc;
}

int sl_client_pause(sl_client_t *self, const char *queue, int64_t deadline)
{
    return s_admin_simple(self, SL_ADMIN_PAUSE, queue, deadline);
}

int sl_client_resume(sl_client_t *self, const char *queue, int64_t deadline)
{
    return s_admin_simple(self, SL_ADMIN_RESUME, queue, deadline);
}

int sl_client_drain(sl_client_t *self, const char *queue, int64_t deadline)
{
    return s_admin_simple(self, SL_ADMIN_DRAIN, queue, deadline);
}

int sl_client_policy(sl_client_t *self, const char *queue, const char *spec,
                     sl_queue_stats_t *stats_out, int64_t deadline)
{
    if (stats_out)
        memset(stats_out, 0, sizeof *stats_out);
    sl_admin_reply_t rep;
    sl_admin_params_t p = {.policy = spec};
    int rc = sl_client_admin_ex(self, SL_ADMIN_POLICY, queue, &p, &rep, deadline);
    if (rc == SL_OK && stats_out && rep.n_queues > 0)
        *stats_out = rep.queues[0];
    sl_admin_reply_release(&rep);
    return rc;
}
