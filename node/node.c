/* node.c -- a node's lifecycle: options, new, start, stop, destroy. The
 * parts it starts are the socket thread (io.c), the engine (engine.c) and
 * the cluster link (member.c); see node_int.h for who owns what. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stddef.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "node_int.h"
#include "sluice/sched.h"
#include "sluice/wire.h"


int64_t sl__mono_ms(void)
{
    return sl_now() / 1000000;
}


/* A default's value by its kind and unit (SL_NODE_OPTIONS): 30, s is
 * 30000 (ms); 256, k is 262144 (bytes). */
#define S_UNIT_INT_ 1
#define S_UNIT_SIZE_ 1
#define S_UNIT_SIZE_k (INT64_C(1) << 10)
#define S_UNIT_SIZE_m (INT64_C(1) << 20)
#define S_UNIT_SIZE_g (INT64_C(1) << 30)
#define S_UNIT_MS_ 1
#define S_UNIT_MS_ms 1
#define S_UNIT_MS_s 1000
#define S_UNIT_MS_m 60000
#define S_UNIT_MS_h 3600000
#define S_VALUE_STRING(def, unit) ((def)[0] ? (def) : NULL)
#define S_VALUE_ENUM(def, unit) (def)
#define S_VALUE_INT(def, unit) ((def) * S_UNIT_INT_##unit)
#define S_VALUE_SIZE(def, unit) ((def) * S_UNIT_SIZE_##unit)
#define S_VALUE_MS(def, unit) ((def) * S_UNIT_MS_##unit)

void sl_node_opts_default(sl_node_opts_t *o)
{
    memset(o, 0, sizeof *o);
#define S_DEFAULT(name, field, type, kind, def, unit, min, max, env, help) \
    o->field = (type)S_VALUE_##kind(def, unit);
    SL_NODE_OPTIONS(S_DEFAULT)
#undef S_DEFAULT
}

/* --- lifecycle -------------------------------------------------------------- */


typedef struct {
    sl_node_opts_t o;
    char *why;
    size_t size;
} sl__qcheck_t;

static int s_policy_check_one(const char *name, const char *spec, void *arg)
{
    (void)name;
    sl__qcheck_t *c = arg;
    sl__policy_t p;
    sl__policy_from_opts(&p, &c->o);
    return sl__policy_parse(&p, spec, c->why, c->size);
}

int sl_node_queues_check(const char *queues, char *why, size_t size)
{
    char buf[160];
    sl__qcheck_t c = {.why = why && size ? why : buf, .size = why && size ? size : sizeof buf};
    sl_node_opts_default(&c.o);
    return queues ? sl__policy_each(queues, s_policy_check_one, &c, c.why, c.size) : 0;
}

static int s_policy_one(const char *name, const char *spec, void *arg)
{
    char why[160];
    return sl__queue_set_policy(arg, name, spec, why, sizeof why);
}

sl_node_t *sl_node_new(const sl_node_opts_t *opts, int *err)
{
    sl_node_opts_t d;
    sl_node_opts_default(&d);
    const sl_node_opts_t *o = opts ? opts : &d;
    int rc = SL_EINVAL;
    if (!o->endpoint || o->heartbeat_ms < 10 || o->lease_ms < 10 || o->max_length < 1 ||
        o->max_attempts < 1 || o->backoff_base_ms < 1 || o->backoff_max_ms < o->backoff_base_ms ||
        o->max_frame < 4096 || o->max_queues < 1 || o->queue_idle_ms < 0 || o->max_job < 1 || o->max_job > o->max_frame ||
        (unsigned)o->overflow > SL_OVERFLOW_DROP_OLDEST || sl_node_cluster_opts_check(o) ||
        sl_node_queues_check(o->queues, NULL, 0) != 0)
        goto fail;
    rc = SL_ENOMEM;
    sl__node_t *n = calloc(1, sizeof *n);
    if (!n)
        goto fail;
    n->o = *o;
    n->stop_pipe[0] = n->stop_pipe[1] = -1;
    char host[128] = "node";
    gethostname(host, sizeof host - 1);
    char idbuf[200];
    snprintf(idbuf, sizeof idbuf, "%s:%d", host, (int)getpid());
    n->endpoint = strdup(o->endpoint);
    n->node_id = strdup(o->node_id ? o->node_id : idbuf);
    n->queues = sl__map_new();
    n->ids = sl__idmap_new(offsetof(sl__job_t, id));
    n->peers = sl__map_new();
    n->consumers = sl__map_new();
    n->policies = sl__map_new();
    n->keys = sl__map_new();
    n->done_keys = sl__map_new();
    n->inbound = sl_chan_new(SL_BUF_FIXED, SL__INBOUND_CAP);
    n->outbound = sl_chan_new(SL_BUF_FIXED, SL__OUTBOUND_CAP);
    n->local_peer = calloc(1, sizeof *n->local_peer);
    n->cluster = sl__member_new(o);
    if (!n->cluster || !n->endpoint || !n->node_id || !n->queues || !n->ids || !n->peers || !n->consumers || !n->policies ||
        !n->keys || !n->done_keys ||
        !n->inbound || !n->outbound || !n->local_peer) {
        sl_node_destroy((sl_node_t **)&n);
        goto fail;
    }
    n->local_peer->local = true;
    sl__policy_from_opts(&n->policy, o);
    char why[160];
    if (o->queues &&
        sl__policy_each(o->queues, s_policy_one, n, why, sizeof why) != 0) {
        sl_node_destroy((sl_node_t **)&n);
        rc = SL_ENOMEM; /* the spec was checked above: only memory can fail */
        goto fail;
    }
    /* Epoch: random, so restarts of the same node differ. */
    if (getrandom(&n->epoch, sizeof n->epoch, 0) != sizeof n->epoch)
        n->epoch = (uint64_t)sl_now() ^ ((uint64_t)getpid() << 32);
    n->epoch |= 1;
    if (getrandom(&n->rng, sizeof n->rng, 0) != sizeof n->rng)
        n->rng = n->epoch * 0x9e3779b97f4a7c15ULL;
    n->rng |= 1; /* xorshift must not start at 0 */
    return (sl_node_t *)n;
fail:
    if (err)
        *err = rc;
    return NULL;
}

int sl_node_start(sl_node_t *self)
{
    sl__node_t *n = (sl__node_t *)self;
    if (n->running)
        return SL_ESTATE;
    n->zctx = zmq_ctx_new();
    char *bound = NULL;
    int rc = SL_OK;
    n->router = sl_wire_router_bind(n->zctx, n->endpoint, n->o.max_frame, &bound, &rc);
    if (!n->router)
        return rc;
    free(n->endpoint);
    n->endpoint = bound;
    if (pipe2(n->stop_pipe, O_CLOEXEC | O_NONBLOCK) != 0)
        return SL_ESYS;
    rc = sl__retain_start(n);
    if (rc != SL_OK)
        return rc;
    rc = sl__member_start(n);
    if (rc != SL_OK)
        return rc;
    n->engine_done = sl_go_ex(sl__engine_main, n, SL_GO_SPREAD, 1, NULL);
    if (!n->engine_done)
        return SL_ENOMEM;
    pthread_t *th = malloc(sizeof *th);
    if (!th || pthread_create(th, NULL, sl__node_io_main, n) != 0) {
        free(th);
        return SL_ESYS;
    }
    n->io_thread = th;
    n->running = 1;
    return SL_OK;
}

const char *sl_node_endpoint(sl_node_t *self)
{
    return ((sl__node_t *)self)->endpoint;
}

uint64_t sl_node_epoch(sl_node_t *self)
{
    return ((sl__node_t *)self)->epoch;
}

int sl_node_handle(sl_node_t *self, const char *queue, int concurrency, sl_node_handler_fn fn,
                   void *arg, int flags)
{
    sl__node_t *n = (sl__node_t *)self;
    if (!n->running || !queue || !fn || concurrency < 1 || concurrency > 10000)
        return n->running ? SL_EINVAL : SL_ESTATE;
    sl__reg_t *r = calloc(1, sizeof *r);
    sl__reg_t **regs = realloc(n->regs, (n->nregs + 1) * sizeof *regs);
    if (!r || !regs) {
        free(r);
        return SL_ENOMEM;
    }
    n->regs = regs;
    r->node = n;
    r->queue = strdup(queue);
    r->concurrency = concurrency;
    r->fn = fn;
    r->arg = arg;
    r->flags = flags;
    r->jobs = sl_chan_new(SL_BUF_FIXED, (size_t)concurrency);
    r->done = sl_chan_new(SL_BUF_PROMISE, 0);
    sl__in_t *m = calloc(1, sizeof *m);
    if (!r->queue || !r->jobs || !r->done || !m) {
        free(r->queue);
        sl_chan_destroy(&r->jobs);
        sl_chan_destroy(&r->done);
        free(r);
        free(m);
        return SL_ENOMEM;
    }
    n->regs[n->nregs++] = r;
    m->kind = SL__IN_REGISTER;
    m->ptr = r;
    int rc = sl_put(n->inbound, m);
    if (rc != SL_OK) {
        free(m);
        return rc;
    }
    void *v;
    rc = sl_take(r->done, &v);
    return rc == SL_OK ? (int)(intptr_t)v : rc;
}

int sl_node_stop(sl_node_t *self, int64_t timeout_ms, sl_node_report_t *left)
{
    sl__node_t *n = (sl__node_t *)self;
    if (!n->running)
        return SL_ESTATE;
    n->stop_deadline = sl__mono_ms() + (timeout_ms > 0 ? timeout_ms : 0);
    atomic_store(&n->stopping, 1);
    sl__in_t *m = calloc(1, sizeof *m);
    if (m) {
        m->kind = SL__IN_WAKE;
        if (sl_put(n->inbound, m) != SL_OK)
            free(m);
    }
    void *v;
    sl_take(n->engine_done, &v);
    atomic_store(&n->stopping, 2);
    ssize_t w = write(n->stop_pipe[1], "x", 1);
    (void)w;
    pthread_join(*(pthread_t *)n->io_thread, NULL);
    free(n->io_thread);
    n->io_thread = NULL;
    sl__member_stop(n);
    /* The engine is gone: what the store completes now is dropped
     * (stopping is 2), and nothing new is asked of it. */
    sl__retain_stop(n);
    /* In-process handlers: no more jobs; wait (bounded) for them to return,
     * since they use the node's channels. */
    for (size_t i = 0; i < n->nregs; i++)
        sl_chan_close(n->regs[i]->jobs);
    int64_t until = sl__mono_ms() + (timeout_ms > 0 ? timeout_ms : 0) + 1000;
    for (size_t i = 0; i < n->nregs; i++)
        while (atomic_load(&n->regs[i]->live) > 0 && sl__mono_ms() < until)
            sl_sleep_ms(1);
    n->running = 0;
    if (left)
        *left = n->report;
    return n->stop_rc;
}

int sl__node_check(sl_node_t *self)
{
    sl__node_t *n = (sl__node_t *)self;
    if (!n->running)
        return sl__engine_check(n); /* no engine: the state is ours */
    sl_chan_t *done = sl_chan_new(SL_BUF_PROMISE, 0);
    sl__in_t *m = calloc(1, sizeof *m);
    if (!done || !m) {
        sl_chan_destroy(&done);
        free(m);
        return SL_ENOMEM;
    }
    m->kind = SL__IN_CHECK;
    m->ptr = done;
    int rc = sl_put(n->inbound, m);
    void *v = NULL;
    if (rc == SL_OK)
        rc = sl_take(done, &v) == SL_OK ? (int)(intptr_t)v : SL_ECLOSED;
    else
        free(m);
    sl_chan_destroy(&done);
    return rc;
}

static void s_free_job(void *val, void *arg)
{
    (void)arg;
    if ((uintptr_t)val & SL__DONE_TAG)
        return; /* a done ring entry: freed with the ring */
    sl__job_t *j = val;
    if (j->pub)
        sl__pub_abandon(j->pub); /* the confirm is never sent: the node is gone */
    sl__job_free(j);
}

static void s_free_queue(const void *k, size_t len, void *val, void *arg)
{
    (void)k;
    (void)len;
    (void)arg;
    sl__queue_t *q = val;
    while (q->consumers) {
        sl__consumer_t *c = q->consumers;
        q->consumers = c->qnext;
        sl_chan_destroy(&c->local);
        free(c);
    }
    sl__queue_free(q);
}

static void s_free_peer(const void *k, size_t len, void *val, void *arg)
{
    (void)k;
    (void)len;
    (void)arg;
    free(val);
}

void sl_node_destroy(sl_node_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    sl__node_t *n = (sl__node_t *)*self_p;
    *self_p = NULL;
    if (n->running)
        sl_node_stop((sl_node_t *)n, 0, NULL);
    sl__retain_stop(n);              /* if start failed after making it */
    sl__member_destroy(&n->cluster); /* its socket goes before the context */
    if (n->router)
        zmq_close(n->router);
    if (n->zctx)
        zmq_ctx_term(n->zctx);
    void *v;
    while (n->inbound && sl_poll(n->inbound, &v) == SL_OK)
        sl__in_free(v);
    while (n->outbound && sl_poll(n->outbound, &v) == SL_OK)
        free(v);
    if (n->ids)
        sl__idmap_each(n->ids, s_free_job, NULL);
    if (n->queues)
        sl__map_each(n->queues, s_free_queue, NULL);
    if (n->peers)
        sl__map_each(n->peers, s_free_peer, NULL);
    sl__idmap_destroy(&n->ids);
    sl__map_destroy(&n->queues);
    sl__map_destroy(&n->peers);
    sl__map_destroy(&n->consumers);
    if (n->policies)
        sl__map_each(n->policies, s_free_peer, NULL); /* plain allocations */
    sl__map_destroy(&n->policies);
    sl__map_destroy(&n->keys);
    sl__done_free_all(n);
    sl__map_destroy(&n->done_keys);
    for (size_t i = 0; i < n->nregs; i++) {
        sl__reg_t *r = n->regs[i];
        free(r->queue);
        sl_chan_destroy(&r->jobs);
        sl_chan_destroy(&r->done);
        free(r);
    }
    free(n->regs);
    free(n->local_peer);
    free(n->heap);
    sl_chan_destroy(&n->inbound);
    sl_chan_destroy(&n->outbound);
    sl_chan_destroy(&n->engine_done);
    for (int i = 0; i < 2; i++)
        if (n->stop_pipe[i] >= 0)
            close(n->stop_pipe[i]);
    free(n->endpoint);
    free(n->node_id);
    free(n);
}

