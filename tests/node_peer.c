/* node_peer.c -- a DEALER-socket test peer for the node (node_peer.h):
 * envelopes through sl_wire, a heartbeat thread, a backlog of envelopes
 * received but not yet asked for, and a buffer of deliveries. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <zmq.h>

#include "node_peer.h"
#include "sluice/wire.h"
#include "testlib.h"

#define S_SLICE_MS 5 /* longest a receive holds the socket lock */

struct node_peer {
    void *ctx, *sock;
    pthread_mutex_t mu;         /* the socket, quit                        */
    pthread_cond_t cv;
    pthread_t hb;
    bool hb_on, quit;
    int64_t hb_ms;
    uint64_t next_corr;
    Sluice__V1__Envelope **back; /* received, not yet asked for            */
    size_t nback, capback;
    node_dlv_t *dlv;             /* deliveries, oldest first               */
    size_t ndlv, capdlv;
};

static const uint8_t s_prefix[8] = {'s', 'l', 'u', 'i', 'c', 'e', '-', 't'};

void node_id_make(uint8_t out[16], uint32_t n)
{
    memcpy(out, s_prefix, 8);
    memset(out + 8, 0, 4);
    out[12] = (uint8_t)(n >> 24);
    out[13] = (uint8_t)(n >> 16);
    out[14] = (uint8_t)(n >> 8);
    out[15] = (uint8_t)n;
}

uint32_t node_id_num(const ProtobufCBinaryData *id)
{
    if (!id || id->len != 16 || memcmp(id->data, s_prefix, 8) != 0)
        return UINT32_MAX;
    const uint8_t *d = id->data;
    return (uint32_t)d[12] << 24 | (uint32_t)d[13] << 16 | (uint32_t)d[14] << 8 | d[15];
}

int64_t node_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* --- the node under test -------------------------------------------------- */

void node_test_opts(sl_node_opts_t *o)
{
    sl_node_opts_default(o);
    o->endpoint = "tcp://127.0.0.1:0";
    o->node_id = "node-test";
    o->heartbeat_ms = 250;
    o->lease_ms = 30000;
    o->backoff_base_ms = 50;
    o->backoff_max_ms = 1000;
    o->max_frame = 128 << 10;
    o->max_job = 64 << 10;
}

sl_node_t *node_test_start(const sl_node_opts_t *o)
{
    int err = SL_OK;
    sl_node_t *n = sl_node_new(o, &err);
    if (!n)
        fail_msg("sl_node_new: %s", sl_err_name(err));
    SL_ASSERT_OK(sl_node_start(n));
    assert_non_null(sl_node_endpoint(n));
    return n;
}

int64_t node_test_patience(void)
{
    return sl_test_sanitized() ? 30000 : 5000;
}

#define S_FX_PEERS 8
static sl_node_t *s_fx_node;
static int64_t s_fx_hb;
static node_peer_t *s_fx_peers[S_FX_PEERS];

sl_node_t *node_fx_start(const sl_node_opts_t *o)
{
    assert_null(s_fx_node);
    s_fx_node = node_test_start(o);
    s_fx_hb = o->heartbeat_ms;
    return s_fx_node;
}

node_peer_t *node_fx_peer(void)
{
    assert_non_null(s_fx_node);
    for (int i = 0; i < S_FX_PEERS; i++) {
        if (!s_fx_peers[i]) {
            s_fx_peers[i] = node_peer_new(sl_node_endpoint(s_fx_node), s_fx_hb);
            return s_fx_peers[i];
        }
    }
    fail_msg("more than %d fixture peers", S_FX_PEERS);
    return NULL;
}

void node_fx_drop_peer(node_peer_t **peer)
{
    for (int i = 0; i < S_FX_PEERS; i++)
        if (s_fx_peers[i] && s_fx_peers[i] == *peer)
            s_fx_peers[i] = NULL;
    node_peer_destroy(peer);
}

int node_fx_teardown(void **state)
{
    (void)state;
    /* Every node test ends with the queues' books balanced. */
    int bad = s_fx_node ? sl__node_check(s_fx_node) : 0;
    for (int i = 0; i < S_FX_PEERS; i++)
        node_peer_destroy(&s_fx_peers[i]);
    sl_node_destroy(&s_fx_node);
    if (bad)
        fail_msg("sl__node_check failed at node line %d", bad);
    return 0;
}

/* --- socket and heartbeats ------------------------------------------------ */

static void s_setopt(void *sock, int opt, int v)
{
    assert_int_equal(zmq_setsockopt(sock, opt, &v, sizeof v), 0);
}

static void *s_heartbeat_main(void *arg)
{
    node_peer_t *self = arg;
    pthread_mutex_lock(&self->mu);
    while (!self->quit) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        int64_t ns = ts.tv_nsec + (self->hb_ms / 3) * 1000000;
        ts.tv_sec += ns / 1000000000;
        ts.tv_nsec = ns % 1000000000;
        pthread_cond_timedwait(&self->cv, &self->mu, &ts);
        if (self->quit)
            break;
        Sluice__V1__Heartbeat hb = SLUICE__V1__HEARTBEAT__INIT;
        hb.node_id = "test-peer";
        hb.sent_ms = node_wall_ms();
        hb.interval_ms = (uint32_t)self->hb_ms;
        Sluice__V1__Envelope env = SLUICE__V1__ENVELOPE__INIT;
        env.body_case = SLUICE__V1__ENVELOPE__BODY_HEARTBEAT;
        env.heartbeat = &hb;
        sl_wire_send(self->sock, NULL, 0, &env, ZMQ_DONTWAIT);
    }
    pthread_mutex_unlock(&self->mu);
    return NULL;
}

node_peer_t *node_peer_new(const char *endpoint, int64_t heartbeat_ms)
{
    node_peer_t *self = calloc(1, sizeof *self);
    assert_non_null(self);
    self->ctx = zmq_ctx_new();
    assert_non_null(self->ctx);
    self->sock = zmq_socket(self->ctx, ZMQ_DEALER);
    assert_non_null(self->sock);
    s_setopt(self->sock, ZMQ_LINGER, 0);
    s_setopt(self->sock, ZMQ_SNDTIMEO, 5000);
    s_setopt(self->sock, ZMQ_SNDHWM, 100000);
    s_setopt(self->sock, ZMQ_RCVHWM, 100000);
    if (zmq_connect(self->sock, endpoint) != 0)
        fail_msg("connect '%s': %s", endpoint, zmq_strerror(zmq_errno()));
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&self->cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&self->mu, NULL);
    self->next_corr = 1;
    self->hb_ms = heartbeat_ms;
    if (heartbeat_ms > 0) {
        assert_int_equal(pthread_create(&self->hb, NULL, s_heartbeat_main, self), 0);
        self->hb_on = true;
    }
    return self;
}

void node_peer_destroy(node_peer_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    node_peer_t *self = *self_p;
    *self_p = NULL;
    if (self->hb_on) {
        pthread_mutex_lock(&self->mu);
        self->quit = true;
        pthread_cond_signal(&self->cv);
        pthread_mutex_unlock(&self->mu);
        pthread_join(self->hb, NULL);
    }
    zmq_close(self->sock);
    zmq_ctx_term(self->ctx);
    for (size_t i = 0; i < self->nback; i++)
        sl_wire_env_free(&self->back[i]);
    free(self->back);
    free(self->dlv);
    pthread_cond_destroy(&self->cv);
    pthread_mutex_destroy(&self->mu);
    free(self);
}

int node_peer_send(node_peer_t *self, const Sluice__V1__Envelope *env)
{
    pthread_mutex_lock(&self->mu);
    int rc = sl_wire_send(self->sock, NULL, 0, env, 0);
    pthread_mutex_unlock(&self->mu);
    return rc;
}

int node_peer_send_frames(node_peer_t *self, const void *const *frames, const size_t *lens,
                          size_t n)
{
    int rc = 0;
    pthread_mutex_lock(&self->mu);
    for (size_t i = 0; i < n && rc == 0; i++)
        if (zmq_send(self->sock, frames[i], lens[i], i + 1 < n ? ZMQ_SNDMORE : 0) < 0)
            rc = SL_ESYS;
    pthread_mutex_unlock(&self->mu);
    return rc;
}

/* --- receiving ------------------------------------------------------------ */

static void s_copy_str(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%s", src ? src : "");
}

static void s_buffer_deliveries(node_peer_t *self, const Sluice__V1__Deliver *d)
{
    int64_t now = sl_now();
    for (size_t i = 0; i < d->n_deliveries; i++) {
        const Sluice__V1__Delivery *dv = d->deliveries[i];
        assert_non_null(dv->job);
        assert_non_null(dv->lease);
        if (self->ndlv == self->capdlv) {
            self->capdlv = self->capdlv ? self->capdlv * 2 : 64;
            self->dlv = realloc(self->dlv, self->capdlv * sizeof *self->dlv);
            assert_non_null(self->dlv);
        }
        node_dlv_t *o = &self->dlv[self->ndlv++];
        memset(o, 0, sizeof *o);
        o->id = node_id_num(&dv->job->id);
        if (dv->job->id.len == 16)
            memcpy(o->raw_id, dv->job->id.data, 16);
        s_copy_str(o->queue, sizeof o->queue, dv->job->queue);
        s_copy_str(o->last_error, sizeof o->last_error, dv->job->last_error);
        o->priority = dv->job->priority;
        o->attempt = dv->job->attempt;
        o->max_attempts = dv->job->max_attempts;
        o->lease_id = dv->lease->lease_id;
        o->epoch = dv->lease->epoch;
        o->expires_ms = dv->lease->expires_ms;
        o->at = now;
    }
}

/* Receive at most one message within timeout_ms. Heartbeats are dropped
 * unless keep_hb; deliveries go to the delivery buffer. NULL if nothing
 * (else) came. */
static Sluice__V1__Envelope *s_recv_one(node_peer_t *self, int64_t timeout_ms, bool keep_hb)
{
    int64_t end = sl_deadline_ms(timeout_ms);
    do {
        int64_t left = (end - sl_now()) / 1000000;
        int slice = left < 0 ? 0 : left > S_SLICE_MS ? S_SLICE_MS : (int)left;
        sl_wire_msg_t m;
        int rc;
        pthread_mutex_lock(&self->mu);
        zmq_pollitem_t it = {.socket = self->sock, .events = ZMQ_POLLIN};
        if (zmq_poll(&it, 1, slice) > 0)
            rc = sl_wire_try_recv(self->sock, false, 0, &m);
        else
            rc = SL_EAGAIN;
        pthread_mutex_unlock(&self->mu);
        if (rc == SL_OK) {
            Sluice__V1__Envelope *env = m.env;
            m.env = NULL;
            sl_wire_msg_release(&m);
            if (env->body_case == SLUICE__V1__ENVELOPE__BODY_HEARTBEAT && !keep_hb) {
                sl_wire_env_free(&env);
                continue;
            }
            if (env->body_case == SLUICE__V1__ENVELOPE__BODY_DELIVER) {
                s_buffer_deliveries(self, env->deliver);
                sl_wire_env_free(&env);
                return NULL;
            }
            return env;
        }
        if (rc != SL_EAGAIN)
            fail_msg("peer receive: %s", sl_err_name(rc));
    } while (sl_now() < end);
    return NULL;
}

static bool s_match(const Sluice__V1__Envelope *env, Sluice__V1__Envelope__BodyCase kind,
                    uint64_t corr)
{
    bool k = kind == SLUICE__V1__ENVELOPE__BODY__NOT_SET
                 ? env->body_case != SLUICE__V1__ENVELOPE__BODY_HEARTBEAT
                 : env->body_case == kind;
    return k && (corr == 0 || env->corr == corr);
}

static void s_backlog(node_peer_t *self, Sluice__V1__Envelope *env)
{
    if (self->nback == self->capback) {
        self->capback = self->capback ? self->capback * 2 : 32;
        self->back = realloc(self->back, self->capback * sizeof *self->back);
        assert_non_null(self->back);
    }
    self->back[self->nback++] = env;
}

Sluice__V1__Envelope *node_peer_recv(node_peer_t *self, Sluice__V1__Envelope__BodyCase kind,
                                     uint64_t corr, int64_t timeout_ms)
{
    assert_int_not_equal(kind, SLUICE__V1__ENVELOPE__BODY_DELIVER); /* node_peer_deliveries */
    for (size_t i = 0; i < self->nback; i++) {
        if (s_match(self->back[i], kind, corr)) {
            Sluice__V1__Envelope *env = self->back[i];
            memmove(&self->back[i], &self->back[i + 1], (self->nback - i - 1) * sizeof *self->back);
            self->nback--;
            return env;
        }
    }
    bool hb = kind == SLUICE__V1__ENVELOPE__BODY_HEARTBEAT;
    int64_t end = sl_deadline_ms(timeout_ms);
    do {
        int64_t left = (end - sl_now()) / 1000000;
        Sluice__V1__Envelope *env = s_recv_one(self, left < 0 ? 0 : left, hb);
        if (!env)
            continue;
        if (s_match(env, kind, corr))
            return env;
        s_backlog(self, env);
    } while (sl_now() < end);
    return NULL;
}

size_t node_peer_count(node_peer_t *self, Sluice__V1__Envelope__BodyCase kind, int64_t window_ms)
{
    int64_t end = sl_deadline_ms(window_ms);
    do {
        int64_t left = (end - sl_now()) / 1000000;
        Sluice__V1__Envelope *env = s_recv_one(self, left < 0 ? 0 : left, false);
        if (env)
            s_backlog(self, env);
    } while (sl_now() < end);
    if (kind == SLUICE__V1__ENVELOPE__BODY_DELIVER)
        return self->ndlv;
    size_t k = 0;
    for (size_t i = 0; i < self->nback; i++)
        k += s_match(self->back[i], kind, 0);
    return k;
}

/* --- producing ------------------------------------------------------------ */

uint64_t node_peer_publish(node_peer_t *self, const node_job_t *jobs, size_t n)
{
    Sluice__V1__Job *js = calloc(n + 1, sizeof *js);
    Sluice__V1__Job **jp = calloc(n + 1, sizeof *jp);
    uint8_t (*ids)[16] = calloc(n + 1, 16);
    uint8_t **payloads = calloc(n + 1, sizeof *payloads);
    assert_true(js && jp && ids && payloads);
    for (size_t i = 0; i < n; i++) {
        const node_job_t *s = &jobs[i];
        Sluice__V1__Job *j = &js[i];
        sluice__v1__job__init(j);
        node_id_make(ids[i], s->id);
        j->id.data = ids[i];
        j->id.len = s->id_len ? (s->id_len < 16 ? s->id_len : 16) : 16;
        j->queue = (char *)(s->queue ? s->queue : "q");
        j->priority = s->priority;
        j->not_before_ms = s->not_before_ms;
        j->deadline_ms = s->deadline_ms;
        j->idempotency_key = (char *)(s->key ? s->key : "");
        j->max_attempts = s->max_attempts;
        if (s->last_error)
            j->last_error = (char *)s->last_error;
        j->created_ms = node_wall_ms();
        if (s->payload_len) {
            payloads[i] = malloc(s->payload_len);
            assert_non_null(payloads[i]);
            memset(payloads[i], 'x', s->payload_len);
            j->payload.data = payloads[i];
            j->payload.len = s->payload_len;
        }
        jp[i] = j;
    }
    Sluice__V1__Publish pub = SLUICE__V1__PUBLISH__INIT;
    pub.n_jobs = n;
    pub.jobs = jp;
    Sluice__V1__Envelope env = SLUICE__V1__ENVELOPE__INIT;
    env.corr = self->next_corr++;
    env.body_case = SLUICE__V1__ENVELOPE__BODY_PUBLISH;
    env.publish = &pub;
    SL_ASSERT_OK(node_peer_send(self, &env));
    for (size_t i = 0; i < n; i++)
        free(payloads[i]);
    free(payloads);
    free(ids);
    free(jp);
    free(js);
    return env.corr;
}

Sluice__V1__Envelope *node_peer_confirm(node_peer_t *self, uint64_t corr, int64_t timeout_ms)
{
    return node_peer_recv(self, SLUICE__V1__ENVELOPE__BODY_CONFIRM, corr, timeout_ms);
}

void node_peer_publish_ok(node_peer_t *self, const node_job_t *jobs, size_t n, int *statuses,
                          int64_t timeout_ms)
{
    uint64_t corr = node_peer_publish(self, jobs, n);
    Sluice__V1__Envelope *env = node_peer_confirm(self, corr, timeout_ms);
    if (!env)
        fail_msg("no PublishConfirm for corr %llu within %lld ms", (unsigned long long)corr,
                 (long long)timeout_ms);
    assert_int_equal(env->confirm->n_confirms, n);
    for (size_t i = 0; statuses && i < n; i++)
        statuses[i] = env->confirm->confirms[i]->status;
    sl_wire_env_free(&env);
}

void node_peer_publish_range(node_peer_t *self, const char *queue, uint32_t first, uint32_t count,
                             uint32_t priority)
{
    node_job_t *js = calloc(count + 1, sizeof *js);
    int *st = calloc(count + 1, sizeof *st);
    assert_true(js && st);
    for (uint32_t i = 0; i < count; i++)
        js[i] = (node_job_t){.id = first + i, .queue = queue, .priority = priority};
    node_peer_publish_ok(self, js, count, st, 10000);
    for (uint32_t i = 0; i < count; i++)
        if (st[i] != SLUICE__V1__JOB_CONFIRM__STATUS__ACCEPTED)
            fail_msg("job %u not accepted (status %d)", first + i, st[i]);
    free(st);
    free(js);
}

/* --- consuming ------------------------------------------------------------ */

int node_peer_subscribe(node_peer_t *self, const char *queue, uint32_t credit)
{
    Sluice__V1__Subscribe s = SLUICE__V1__SUBSCRIBE__INIT;
    s.queue = (char *)queue;
    s.credit = credit;
    s.consumer_id = "test";
    Sluice__V1__Envelope env = SLUICE__V1__ENVELOPE__INIT;
    env.corr = self->next_corr++;
    env.body_case = SLUICE__V1__ENVELOPE__BODY_SUBSCRIBE;
    env.subscribe = &s;
    return node_peer_send(self, &env);
}

int node_peer_credit(node_peer_t *self, const char *queue, uint32_t n)
{
    Sluice__V1__Credit c = SLUICE__V1__CREDIT__INIT;
    c.queue = (char *)queue;
    c.credit = n;
    Sluice__V1__Envelope env = SLUICE__V1__ENVELOPE__INIT;
    env.corr = self->next_corr++;
    env.body_case = SLUICE__V1__ENVELOPE__BODY_CREDIT;
    env.credit = &c;
    return node_peer_send(self, &env);
}

int node_peer_unsubscribe(node_peer_t *self, const char *queue)
{
    Sluice__V1__Unsubscribe u = SLUICE__V1__UNSUBSCRIBE__INIT;
    u.queue = (char *)queue;
    Sluice__V1__Envelope env = SLUICE__V1__ENVELOPE__INIT;
    env.corr = self->next_corr++;
    env.body_case = SLUICE__V1__ENVELOPE__BODY_UNSUBSCRIBE;
    env.unsubscribe = &u;
    return node_peer_send(self, &env);
}

size_t node_peer_deliveries(node_peer_t *self, node_dlv_t *out, size_t want, int64_t timeout_ms)
{
    int64_t end = sl_deadline_ms(timeout_ms);
    while (self->ndlv < want && sl_now() < end) {
        int64_t left = (end - sl_now()) / 1000000;
        Sluice__V1__Envelope *env = s_recv_one(self, left < 0 ? 0 : left, false);
        if (env)
            s_backlog(self, env);
    }
    size_t k = self->ndlv < want ? self->ndlv : want;
    memcpy(out, self->dlv, k * sizeof *out);
    memmove(self->dlv, self->dlv + k, (self->ndlv - k) * sizeof *self->dlv);
    self->ndlv -= k;
    return k;
}

static void s_lease(const node_dlv_t *d, Sluice__V1__Lease *l)
{
    sluice__v1__lease__init(l);
    l->job_id.data = (uint8_t *)d->raw_id;
    l->job_id.len = 16;
    l->lease_id = d->lease_id;
    l->epoch = d->epoch;
    l->expires_ms = d->expires_ms;
}

uint64_t node_peer_ack_many(node_peer_t *self, const node_dlv_t *d, size_t n)
{
    Sluice__V1__Lease *ls = calloc(n + 1, sizeof *ls);
    Sluice__V1__AckItem *items = calloc(n + 1, sizeof *items);
    Sluice__V1__AckItem **ip = calloc(n + 1, sizeof *ip);
    assert_true(ls && items && ip);
    for (size_t i = 0; i < n; i++) {
        s_lease(&d[i], &ls[i]);
        sluice__v1__ack_item__init(&items[i]);
        items[i].lease = &ls[i];
        ip[i] = &items[i];
    }
    Sluice__V1__Ack ack = SLUICE__V1__ACK__INIT;
    ack.n_items = n;
    ack.items = ip;
    Sluice__V1__Envelope env = SLUICE__V1__ENVELOPE__INIT;
    env.corr = self->next_corr++;
    env.body_case = SLUICE__V1__ENVELOPE__BODY_ACK;
    env.ack = &ack;
    SL_ASSERT_OK(node_peer_send(self, &env));
    free(ip);
    free(items);
    free(ls);
    return env.corr;
}

uint64_t node_peer_ack(node_peer_t *self, const node_dlv_t *d)
{
    return node_peer_ack_many(self, d, 1);
}

uint64_t node_peer_fail(node_peer_t *self, const node_dlv_t *d, bool retryable, const char *error)
{
    Sluice__V1__Lease l;
    s_lease(d, &l);
    Sluice__V1__Fail f = SLUICE__V1__FAIL__INIT;
    f.lease = &l;
    f.retryable = retryable;
    f.error = (char *)(error ? error : "");
    Sluice__V1__Envelope env = SLUICE__V1__ENVELOPE__INIT;
    env.corr = self->next_corr++;
    env.body_case = SLUICE__V1__ENVELOPE__BODY_FAIL;
    env.fail = &f;
    SL_ASSERT_OK(node_peer_send(self, &env));
    return env.corr;
}

uint64_t node_peer_touch(node_peer_t *self, const node_dlv_t *d, uint32_t extend_ms)
{
    Sluice__V1__Lease l;
    s_lease(d, &l);
    Sluice__V1__Touch t = SLUICE__V1__TOUCH__INIT;
    t.lease = &l;
    t.extend_ms = extend_ms;
    Sluice__V1__Envelope env = SLUICE__V1__ENVELOPE__INIT;
    env.corr = self->next_corr++;
    env.body_case = SLUICE__V1__ENVELOPE__BODY_TOUCH;
    env.touch = &t;
    SL_ASSERT_OK(node_peer_send(self, &env));
    return env.corr;
}

/* --- admin ---------------------------------------------------------------- */

Sluice__V1__Envelope *node_peer_admin(node_peer_t *self, Sluice__V1__Admin__Op op,
                                      const char *queue, int64_t timeout_ms)
{
    Sluice__V1__Admin a = SLUICE__V1__ADMIN__INIT;
    a.op = op;
    a.queue = (char *)(queue ? queue : "");
    Sluice__V1__Envelope env = SLUICE__V1__ENVELOPE__INIT;
    env.corr = self->next_corr++;
    env.body_case = SLUICE__V1__ENVELOPE__BODY_ADMIN;
    env.admin = &a;
    SL_ASSERT_OK(node_peer_send(self, &env));
    return node_peer_recv(self, SLUICE__V1__ENVELOPE__BODY_ADMIN_REPLY, env.corr, timeout_ms);
}

bool node_peer_stats_try(node_peer_t *self, const char *queue, Sluice__V1__QueueStats *out)
{
    Sluice__V1__Envelope *env =
        node_peer_admin(self, SLUICE__V1__ADMIN__OP__STATS, queue, 10000);
    if (!env)
        fail_msg("no AdminReply to STATS '%s'", queue);
    Sluice__V1__AdminReply *r = env->admin_reply;
    if (r->error && r->error->code == SLUICE__V1__ERROR__CODE__BAD_QUEUE) {
        sl_wire_env_free(&env);
        return false;
    }
    if (r->error)
        fail_msg("STATS '%s': error %d '%s'", queue, r->error->code, r->error->text);
    bool found = false;
    for (size_t i = 0; i < r->n_queues && !found; i++) {
        if (r->queues[i]->name && strcmp(r->queues[i]->name, queue) == 0) {
            *out = *r->queues[i];
            out->name = NULL;
            out->overflow = NULL;
            out->base.n_unknown_fields = 0;
            out->base.unknown_fields = NULL;
            found = true;
        }
    }
    sl_wire_env_free(&env);
    return found;
}

void node_peer_stats(node_peer_t *self, const char *queue, Sluice__V1__QueueStats *out)
{
    if (!node_peer_stats_try(self, queue, out))
        fail_msg("STATS has no queue '%s'", queue);
}
