/* cluster.c -- libsluice in cluster mode: the cluster thread, which talks
 * to the coordinator through an inner client and to nodes through one
 * inner client each; the public calls that post events to it; counters;
 * and administration fanned out to every live node.
 *
 * The thread's loop:
 *
 *   take an event (until the next tick) --> EV_ENV   RouteTable -> route.c
 *                                       |            Assignment -> csub.c
 *                                       |            Error{STALE_EPOCH} -> csub.c
 *                                       +-> EV_PUB, EV_PART -> route.c
 *                                       +-> EV_SUB, EV_UNSUB -> csub.c
 *                                       '-> EV_STOP: answer everything, exit
 *   every tick: node health (s_health), failovers and deadlines (route.c),
 *   and every interval RouteRequest / ConsumerJoin again (s_announce). */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cluster_int.h"
#include "sluice/wire.h"

/* --- nodes ------------------------------------------------------------- */

sl__cnode_t *sl__cluster_node(sl__cluster_t *cl, const char *id, const char *endpoint,
                              uint64_t member_epoch)
{
    for (sl__cnode_t *n = cl->nodes; n; n = n->next)
        if (strcmp(n->id, id) == 0) {
            if (member_epoch)
                n->member_epoch = member_epoch;
            if (endpoint && *endpoint && strcmp(n->endpoint, endpoint) != 0) {
                /* The node moved (a restart on another address): follow
                 * it. Requests still unanswered go to the new address in
                 * the next session; subscriptions follow their assignment,
                 * which names the node's new member epoch. */
                char *e = strdup(endpoint);
                if (e && (!n->client || sl__client_reconnect(n->client, e, false) == SL_OK)) {
                    free(n->endpoint);
                    n->endpoint = e;
                    n->bad = false; /* a new address may work */
                } else {
                    free(e); /* asked again with the next table */
                }
            }
            return n;
        }
    sl__cnode_t *n = calloc(1, sizeof *n);
    if (!n)
        return NULL;
    n->id = strdup(id);
    n->endpoint = strdup(endpoint ? endpoint : "");
    if (!n->id || !n->endpoint) {
        free(n->id);
        free(n->endpoint);
        free(n);
        return NULL;
    }
    n->cl = cl;
    n->member_epoch = member_epoch;
    n->last_ok = sl_now();
    pthread_mutex_lock(&cl->lock);
    n->next = cl->nodes;
    cl->nodes = n;
    pthread_mutex_unlock(&cl->lock);
    return n;
}

/* Node tap (a node client's I/O thread): refusals that answer no request,
 * STALE_EPOCH above all, go to the cluster thread. */
static void s_tap(sl__cluster_t *cl, sl__cnode_t *node, const Sluice__V1__Envelope *env)
{
    sl__ev_env_t *ev = calloc(1, sizeof *ev);
    uint8_t *buf = NULL;
    size_t len = 0;
    if (!ev || sl_wire_pack(env, &buf, &len) != SL_OK ||
        sl_wire_unpack(buf, len, &ev->env) != SL_OK) {
        free(buf);
        free(ev);
        return; /* soft state: the next interval says it again */
    }
    free(buf);
    ev->hdr.kind = SL__EV_ENV;
    ev->node = node;
    if (sl_offer(cl->evs, ev) != SL_OK) {
        sl_wire_env_free(&ev->env);
        free(ev);
    }
}

static void s_node_tap(void *arg, const Sluice__V1__Envelope *env)
{
    sl__cnode_t *n = arg;
    s_tap(n->cl, n, env);
}

static void s_coord_tap(void *arg, const Sluice__V1__Envelope *env)
{
    s_tap(arg, NULL, env);
}

sl_client_t *sl__cluster_node_client(sl__cluster_t *cl, sl__cnode_t *n)
{
    if (n->client || n->bad)
        return n->client;
    sl_client_opts_t o = cl->node_opts;
    o.endpoint = n->endpoint;
    int err = SL_OK;
    sl_client_t *c = sl__client_new_inner(&o, cl->self, s_node_tap, n, &err);
    if (!c) {
        n->bad = true;
        return NULL;
    }
    n->last_ok = sl_now();
    pthread_mutex_lock(&cl->lock);
    n->client = c;
    pthread_mutex_unlock(&cl->lock);
    atomic_fetch_add(&cl->ctr.nodes, 1);
    return c;
}

/* A node is gone once its client has not heard from it for 3 of its
 * intervals (a new client counts from its creation). */
static void s_health(sl__cluster_t *cl, int64_t now)
{
    uint32_t up = 0;
    for (sl__cnode_t *n = cl->nodes; n; n = n->next) {
        if (!n->client)
            continue;
        sl_client_counters_t k;
        sl_client_counters(n->client, &k);
        if (k.connected) {
            n->last_ok = now;
            n->gone = false;
            up++;
        } else {
            int64_t limit = (int64_t)SL__CLUSTER_GONE_INTERVALS *
                            sl__client_peer_interval_ms(n->client) * 1000000;
            if (now - n->last_ok > limit)
                n->gone = true;
        }
    }
    atomic_store(&cl->ctr.nodes_up, up);
}

/* --- the coordinator --------------------------------------------------- */

int sl__cluster_send(sl__cluster_t *cl, Sluice__V1__Envelope *env)
{
    return sl__client_send(cl->coord, env);
}

void sl__cluster_note_interval(sl__cluster_t *cl, uint32_t interval_ms)
{
    if (interval_ms > 0 && interval_ms < 3600 * 1000)
        cl->interval_ms = (int)interval_ms;
}

static void s_announce(sl__cluster_t *cl, int64_t now)
{
    if (now < cl->next_announce)
        return;
    sl__route_announce(cl);
    sl__csub_announce(cl);
    cl->next_announce = now + (int64_t)cl->interval_ms * 1000000;
}

static void s_on_env(sl__cluster_t *cl, sl__ev_env_t *ev)
{
    const Sluice__V1__Envelope *env = ev->env;
    switch (env->body_case) {
    case SLUICE__V1__ENVELOPE__BODY_ROUTE_TABLE:
        if (!ev->node)
            sl__route_on_table(cl, env->route_table);
        break;
    case SLUICE__V1__ENVELOPE__BODY_ASSIGNMENT:
        if (!ev->node)
            sl__csub_on_assignment(cl, env->assignment);
        break;
    case SLUICE__V1__ENVELOPE__BODY_ERROR:
        if (ev->node && env->error->code == SLUICE__V1__ERROR__CODE__STALE_EPOCH)
            sl__csub_on_stale(cl, ev->node);
        break;
    default:
        break;
    }
}

/* --- the thread -------------------------------------------------------- */

static void s_on_ev(sl__cluster_t *cl, sl__ev_t *ev)
{
    switch (ev->kind) {
    case SL__EV_ENV: {
        sl__ev_env_t *e = (sl__ev_env_t *)ev;
        s_on_env(cl, e);
        sl_wire_env_free(&e->env);
        free(e);
        break;
    }
    case SL__EV_PART:
        sl__route_on_part(cl, (sl__part_t *)ev);
        break;
    case SL__EV_PUB:
        sl__route_on_pub(cl, (sl__cpub_t *)ev);
        break;
    case SL__EV_SUB:
        sl__csub_on_sub(cl, (sl__ev_call_t *)ev);
        break;
    case SL__EV_UNSUB:
        sl__csub_on_unsub(cl, (sl__ev_call_t *)ev);
        break;
    case SL__EV_STOP:
        cl->stopping = true;
        sl__csub_stop(cl);
        sl__route_stop(cl);
        break;
    }
}

static void *s_main(void *arg)
{
    sl__cluster_t *cl = arg;
    int64_t next_tick = 0;
    while (!cl->stopping) {
        int64_t now = sl_now();
        if (now >= next_tick) {
            s_health(cl, now);
            sl__route_tick(cl, now);
            s_announce(cl, now);
            next_tick = now + (int64_t)SL__CLUSTER_TICK_MS * 1000000;
        }
        void *v = NULL;
        int rc = sl_take_until(cl->evs, &v, next_tick);
        if (rc == SL_ECLOSED) { /* destroy could not post STOP */
            s_on_ev(cl, &cl->stop_ev);
            break;
        }
        if (rc != SL_OK)
            continue;
        s_on_ev(cl, v);
        for (int i = 0; i < SL__CLIENT_BATCH && !cl->stopping; i++) {
            if (sl_poll(cl->evs, &v) != SL_OK)
                break;
            s_on_ev(cl, v);
        }
    }
    return NULL;
}

/* --- lifecycle --------------------------------------------------------- */

static char *s_make_id(void)
{
    char host[128] = "host";
    gethostname(host, sizeof host - 1);
    host[sizeof host - 1] = '\0';
    uint8_t rnd[SL_ID_LEN];
    if (sl_id_new(rnd) != SL_OK)
        memset(rnd, 0, sizeof rnd);
    char *id = NULL;
    /* An id's last bytes are its random part. */
    if (asprintf(&id, "%s:%d:%02x%02x%02x%02x%02x%02x", host, (int)getpid(), rnd[10], rnd[11],
                 rnd[12], rnd[13], rnd[14], rnd[15]) < 0)
        return NULL;
    return id;
}

static void s_free(sl__cluster_t *cl)
{
    sl__cnode_t *n = cl->nodes;
    while (n) {
        sl__cnode_t *next = n->next;
        free(n->id);
        free(n->endpoint);
        free(n);
        n = next;
    }
    sl_chan_destroy(&cl->evs);
    pthread_mutex_destroy(&cl->lock);
    free(cl->id);
    free(cl->coordinator);
    free(cl);
}

int sl__cluster_new(sl_client_t *c, const sl_client_opts_t *opts)
{
    sl__cluster_t *cl = calloc(1, sizeof *cl);
    if (!cl)
        return SL_ENOMEM;
    pthread_mutex_init(&cl->lock, NULL);
    cl->self = c;
    cl->id = opts->consumer_id ? strdup(opts->consumer_id) : s_make_id();
    cl->coordinator = strdup(opts->coordinator);
    cl->evs = sl_chan_new(SL_BUF_FIXED, SL__CLUSTER_EVS_CAP);
    if (!cl->id || !cl->coordinator || !cl->evs) {
        s_free(cl);
        return SL_ENOMEM;
    }
    cl->node_opts = *opts;
    cl->node_opts.coordinator = NULL;
    cl->node_opts.consumer_id = cl->id;
    cl->interval_ms = opts->heartbeat_ms ? opts->heartbeat_ms : SL__CLIENT_HB_DEFAULT_MS;
    cl->stop_ev.kind = SL__EV_STOP;
    sl_client_opts_t co = cl->node_opts;
    co.endpoint = cl->coordinator;
    int err = SL_OK;
    cl->coord = sl__client_new_inner(&co, c, s_coord_tap, cl, &err);
    if (!cl->coord) {
        s_free(cl);
        return err;
    }
    c->cluster = cl;
    if (pthread_create(&cl->thread, NULL, s_main, cl) != 0) {
        c->cluster = NULL;
        sl_client_destroy(&cl->coord);
        s_free(cl);
        return SL_ESYS;
    }
    return SL_OK;
}

/* An event nobody will handle: answer it. */
static void s_ev_abandon(sl__ev_t *ev)
{
    switch (ev->kind) {
    case SL__EV_ENV: {
        sl__ev_env_t *e = (sl__ev_env_t *)ev;
        sl_wire_env_free(&e->env);
        free(e);
        break;
    }
    case SL__EV_PUB: {
        sl__cpub_t *p = (sl__cpub_t *)ev;
        p->res->status = SL_ECLOSED;
        sl_offer(p->promise, p->res);
        p->res = NULL;
        sl_chan_close(p->promise);
        sl__cpub_free(&p);
        break;
    }
    case SL__EV_SUB:
    case SL__EV_UNSUB: {
        sl__ev_call_t *call = (sl__ev_call_t *)ev;
        sl_chan_close(call->reply); /* the caller takes SL_ECLOSED */
        sl_chan_destroy(&call->reply);
        sl_chan_destroy(&call->out);
        free(call);
        break;
    }
    default: /* EV_PART: parts are freed with the cluster */
        break;
    }
}

void sl__cluster_destroy(sl_client_t *c)
{
    sl__cluster_t *cl = c->cluster;
    atomic_store(&c->closed, true);
    if (sl_put(cl->evs, &cl->stop_ev) != SL_OK)
        sl_chan_close(cl->evs);
    pthread_join(cl->thread, NULL);
    /* Node clients wait for their handlers, which may still ack through
     * us; what their destruction answers arrives on evs, unread. */
    for (sl__cnode_t *n = cl->nodes; n; n = n->next)
        sl_client_destroy(&n->client);
    sl_client_destroy(&cl->coord); /* after the ConsumerLeaves went out */
    sl_chan_close(cl->evs);
    void *v;
    while (sl_poll(cl->evs, &v) == SL_OK)
        if (v != &cl->stop_ev)
            s_ev_abandon(v);
    sl__route_release(cl);
    sl__csub_release(cl);
    c->cluster = NULL;
    s_free(cl);
}

sl_client_t *sl__cluster_coordinator(sl_client_t *c)
{
    return c->cluster->coord;
}

int sl__cluster_wait_connected(sl_client_t *c, int64_t deadline)
{
    if (atomic_load(&c->closed))
        return SL_ECLOSED;
    return sl_client_wait_connected(c->cluster->coord, deadline);
}

void sl__cluster_counters(sl_client_t *c, sl_client_counters_t *out)
{
    sl__cluster_t *cl = c->cluster;
    sl_client_counters(cl->coord, out);
    pthread_mutex_lock(&cl->lock);
    for (sl__cnode_t *n = cl->nodes; n; n = n->next) {
        if (!n->client)
            continue;
        sl_client_counters_t k;
        sl_client_counters(n->client, &k);
        out->sessions += k.sessions;
        out->sent += k.sent;
        out->received += k.received;
        out->resent += k.resent;
        out->pending += k.pending;
        out->delivered += k.delivered;
        out->stale_leases += k.stale_leases;
        out->node_errors += k.node_errors;
        out->bad_messages += k.bad_messages;
    }
    pthread_mutex_unlock(&cl->lock);
    out->nodes = atomic_load(&cl->ctr.nodes);
    out->nodes_up = atomic_load(&cl->ctr.nodes_up);
    out->routes = atomic_load(&cl->ctr.routes);
    out->assigned = atomic_load(&cl->ctr.assigned);
    out->assignment_epoch = atomic_load(&cl->ctr.assignment_epoch);
    out->route_tables = atomic_load(&cl->ctr.route_tables);
    out->assignments = atomic_load(&cl->ctr.assignments);
    out->unrouted = atomic_load(&cl->ctr.unrouted);
    out->failovers = atomic_load(&cl->ctr.failovers);
    out->republished = atomic_load(&cl->ctr.republished);
    out->stale_epochs = atomic_load(&cl->ctr.stale_epochs);
}

/* --- the public calls -------------------------------------------------- */

sl_chan_t *sl__cluster_publish_async(sl_client_t *c, const sl_job_t *jobs, size_t n,
                                     int64_t deadline, int *err)
{
    sl__cluster_t *cl = c->cluster;
    int rc = SL_ENOMEM;
    uint8_t *buf = NULL;
    size_t len = 0;
    sl__cpub_t *p = calloc(1, sizeof *p);
    uint8_t(*ids)[SL_ID_LEN] = calloc(n, sizeof *ids);
    if (!p || !ids)
        goto fail;
    p->hdr.kind = SL__EV_PUB;
    p->deadline = deadline;
    p->left = n;
    p->promise = sl_chan_new(SL_BUF_PROMISE, 0);
    p->res = calloc(1, sizeof *p->res + n * sizeof p->res->confirms[0]);
    p->keys = calloc(n, sizeof *p->keys);
    p->waiting = calloc(n, sizeof *p->waiting);
    if (!p->promise || !p->res || !p->keys || !p->waiting)
        goto fail;
    /* One node's frame limit applies to the whole call: a part is never
     * bigger than the publish it comes from. */
    if ((rc = sl__publish_pack(cl->coord, jobs, n, ids, &buf, &len)) != SL_OK ||
        (rc = sl_wire_unpack(buf, len, &p->env)) != SL_OK)
        goto fail;
    p->res->n = n;
    for (size_t i = 0; i < n; i++) {
        memcpy(p->res->confirms[i].id, ids[i], SL_ID_LEN);
        p->waiting[i] = i;
        if (jobs[i].routing_key && *jobs[i].routing_key &&
            !(p->keys[i] = strdup(jobs[i].routing_key))) {
            rc = SL_ENOMEM;
            goto fail;
        }
    }
    p->nwaiting = n;
    free(buf);
    free(ids);
    sl_chan_t *promise = sl_chan_ref(p->promise);
    rc = sl_put(cl->evs, p);
    if (rc != SL_OK) {
        sl_chan_destroy(&promise);
        sl__cpub_free(&p);
        *err = SL_ECLOSED;
        return NULL;
    }
    return promise;
fail:
    free(buf);
    free(ids);
    sl__cpub_free(&p);
    *err = rc;
    return NULL;
}

/* Post a user's call and wait for its answer (any deadline applies to the
 * waiting that follows, not to this: the thread answers at once). */
static int s_call(sl__cluster_t *cl, sl__ev_call_t *call, void **reply)
{
    sl_chan_t *r = sl_chan_new(SL_BUF_PROMISE, 0);
    if (!r) {
        sl_chan_destroy(&call->out);
        free(call);
        return SL_ENOMEM;
    }
    call->reply = sl_chan_ref(r);
    int rc = sl_put(cl->evs, call);
    if (rc != SL_OK) {
        sl_chan_destroy(&call->reply);
        sl_chan_destroy(&call->out);
        free(call);
        sl_chan_destroy(&r);
        return SL_ECLOSED;
    }
    rc = sl_take(r, reply);
    sl_chan_destroy(&r);
    return rc == SL_OK ? SL_OK : SL_ECLOSED;
}

int sl__cluster_subscribe(sl_client_t *c, const char *queue, uint32_t window,
                          uint32_t prefetch, sl_chan_t *out, sl_handler_fn fn, void *arg,
                          int flags)
{
    sl__ev_call_t *call = calloc(1, sizeof *call);
    if (!call)
        return SL_ENOMEM;
    call->hdr.kind = SL__EV_SUB;
    snprintf(call->queue, sizeof call->queue, "%s", queue);
    call->window = window;
    call->prefetch = prefetch;
    call->out = out ? sl_chan_ref(out) : NULL;
    call->fn = fn;
    call->arg = arg;
    call->flags = flags;
    void *v = NULL;
    int rc = s_call(c->cluster, call, &v);
    return rc == SL_OK ? (int)(intptr_t)v : rc;
}

int sl__cluster_unsubscribe(sl_client_t *c, const char *queue, int64_t deadline)
{
    sl__ev_call_t *call = calloc(1, sizeof *call);
    if (!call)
        return SL_ENOMEM;
    call->hdr.kind = SL__EV_UNSUB;
    snprintf(call->queue, sizeof call->queue, "%s", queue);
    void *v = NULL;
    int rc = s_call(c->cluster, call, &v);
    if (rc != SL_OK)
        return rc;
    sl__unsub_reply_t *rep = v;
    if (!rep)
        return SL_ENOMEM;
    rc = rep->status;
    for (size_t i = 0; i < rep->n; i++) {
        int r = sl__client_unsub_wait(&rep->dones[i], deadline);
        if (rc == SL_OK && r != SL_OK && r != SL_ENOTFOUND)
            rc = r;
    }
    free(rep->dones);
    free(rep);
    return rc;
}

/* --- administration, fanned out ---------------------------------------- */

static void s_stats_merge(sl_admin_reply_t *into, const sl_admin_reply_t *from)
{
    for (size_t i = 0; i < from->n_queues; i++) {
        const sl_queue_stats_t *q = &from->queues[i];
        sl_queue_stats_t *t = NULL;
        for (size_t j = 0; j < into->n_queues && !t; j++)
            if (strcmp(into->queues[j].name, q->name) == 0)
                t = &into->queues[j];
        if (!t) {
            sl_queue_stats_t *qs =
                realloc(into->queues, (into->n_queues + 1) * sizeof *into->queues);
            if (!qs)
                continue;
            into->queues = qs;
            into->queues[into->n_queues++] = *q;
            continue;
        }
        sl__queue_stats_merge(t, q);
    }
}

int sl__cluster_node_admin(sl_client_t *c, const sl_cluster_node_t *n, sl_admin_op_t op,
                           const char *queue, const sl_admin_params_t *params,
                           sl_admin_reply_t *one, int64_t deadline)
{
    memset(one, 0, sizeof *one);
    sl_client_opts_t o = c->cluster->node_opts;
    o.endpoint = n->endpoint;
    o.linger_ms = -1;
    int err = SL_OK;
    sl_client_t *nc = sl__client_new_inner(&o, c, NULL, NULL, &err);
    if (nc)
        err = sl__client_admin(nc, (int)op, queue, params, one, NULL, deadline);
    sl_client_destroy(&nc);
    return err;
}

int sl__cluster_admin(sl_client_t *c, sl_admin_op_t op, const char *queue,
                      const sl_admin_params_t *params, sl_admin_reply_t *reply,
                      int64_t deadline)
{
    if (queue && !*queue && op == SL_ADMIN_STATS)
        queue = NULL;
    if ((queue || op != SL_ADMIN_STATS) && sl_queue_name_check(queue) != SL_OK) {
        snprintf(reply->node_text, sizeof reply->node_text, "invalid queue name: %s",
                 SL_QUEUE_NAME_RULE);
        return SL_EINVAL;
    }
    if (atomic_load(&c->closed))
        return SL_ECLOSED;
    if (op == SL_ADMIN_DEAD_LIST) /* a walk over the nodes, not a sum */
        return sl__cluster_dead_list(c, queue, params, reply, deadline);
    /* A dead job lives on one node: the others answer BAD_ID. */
    bool by_id = (op == SL_ADMIN_DEAD_SHOW || op == SL_ADMIN_DEAD_REQUEUE ||
                  op == SL_ADMIN_DEAD_PURGE) &&
                 params && params->dead.id;
    sl_cluster_view_t view;
    int rc = sl_client_cluster(c, &view, deadline);
    if (rc != SL_OK) {
        sl_cluster_view_release(&view);
        return rc;
    }
    snprintf(reply->node_id, sizeof reply->node_id, "%s", view.coordinator_id);
    reply->epoch = view.epoch;
    int found = 0, held = 0, first_err = SL_OK;
    for (size_t i = 0; i < view.n_nodes; i++) {
        const sl_cluster_node_t *n = &view.nodes[i];
        if (!n->alive)
            continue;
        sl_admin_reply_t one;
        int err = sl__cluster_node_admin(c, n, op, queue, params, &one, deadline);
        reply->peers++;
        if (err == SL_OK) {
            found++;
            held++;
            s_stats_merge(reply, &one);
            reply->bad_messages += one.bad_messages;
            reply->affected += one.affected;
            if (sl__dead_append(reply, &one) != SL_OK && first_err == SL_OK)
                first_err = SL_ENOMEM;
        } else if (by_id && one.node_code == SL_CODE_BAD_ID) {
            found++; /* the queue is there, the job is not */
        } else if (err != SL_ENOTFOUND && first_err == SL_OK) {
            first_err = err;
            reply->node_code = one.node_code;
            snprintf(reply->node_text, sizeof reply->node_text, "node %.100s: %.140s", n->node_id,
                     one.node_text[0] ? one.node_text : sl_strerror(err));
        }
        sl_admin_reply_release(&one);
    }
    sl_cluster_view_release(&view);
    if (first_err != SL_OK)
        return first_err;
    /* A queue lives on the nodes it was published to; "no such queue"
     * is the answer only when no node has it. */
    if (found == 0 && queue)
        return SL_ENOTFOUND;
    if (by_id && held == 0) {
        reply->node_code = SL_CODE_BAD_ID;
        snprintf(reply->node_text, sizeof reply->node_text, "no such dead job on any node");
        return SL_ENOTFOUND;
    }
    return SL_OK;
}
