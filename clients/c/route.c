/* route.c -- producing in cluster mode: route tables from the coordinator,
 * and publishes split into parts, one per node, each sent through that
 * node's client. A part whose node leaves the table or goes silent is
 * given up (its request cancelled and, while the node is down, its
 * connection replaced so that nothing still queued there reaches the node
 * when it is back) and its jobs routed again, same ids; so are the jobs a
 * node refuses because it is shutting down.
 *
 *   a job:  waiting --s_route: a route--> in a part --confirm--> confirmed
 *              ^                              |
 *              '---- s_failover: node removed or gone (route tick);
 *                    sl__route_on_part: refused as shutting down */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster_int.h"
#include "sluice/wire.h"

/* --- tables ------------------------------------------------------------ */

static void s_request(sl__cluster_t *cl, const sl__ctable_t *t);

/* The table of queue; a new one (make) is asked for at once, and then
 * every interval. */
static sl__ctable_t *s_table(sl__cluster_t *cl, const char *queue, bool make)
{
    for (sl__ctable_t *t = cl->tables; t; t = t->next)
        if (strcmp(t->queue, queue) == 0)
            return t;
    if (!make)
        return NULL;
    sl__ctable_t *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    snprintf(t->queue, sizeof t->queue, "%s", queue);
    t->next = cl->tables;
    cl->tables = t;
    s_request(cl, t);
    return t;
}

static void s_request(sl__cluster_t *cl, const sl__ctable_t *t)
{
    Sluice__V1__RouteRequest rq = SLUICE__V1__ROUTE_REQUEST__INIT;
    rq.client_id = cl->id;
    rq.queue = (char *)t->queue;
    rq.version = t->version;
    Sluice__V1__Envelope env = SLUICE__V1__ENVELOPE__INIT;
    env.body_case = SLUICE__V1__ENVELOPE__BODY_ROUTE_REQUEST;
    env.route_request = &rq;
    sl__cluster_send(cl, &env);
}

void sl__route_announce(sl__cluster_t *cl)
{
    for (sl__ctable_t *t = cl->tables; t; t = t->next)
        s_request(cl, t);
}

static bool s_in_table(const sl__ctable_t *t, const sl__cnode_t *n)
{
    for (size_t i = 0; i < t->n; i++)
        if (t->routes[i].node == n)
            return true;
    return false;
}

static void s_count_routes(sl__cluster_t *cl)
{
    uint32_t n = 0;
    for (sl__ctable_t *t = cl->tables; t; t = t->next)
        n += (uint32_t)t->n;
    atomic_store(&cl->ctr.routes, n);
}

/* --- picking a node ---------------------------------------------------- */

/* Is n shutting down? Until it has restarted: its connection then hears
 * another node epoch. */
static bool s_leaving(sl__cnode_t *n)
{
    if (!n->leaving)
        return false;
    sl_client_counters_t k;
    sl_client_counters(n->client, &k);
    if (k.epoch != n->leaving_epoch)
        n->leaving = false;
    return n->leaving;
}

/* May jobs go to n now? */
static bool s_usable(sl__cluster_t *cl, sl__cnode_t *n)
{
    return !n->gone && sl__cluster_node_client(cl, n) != NULL && !s_leaving(n);
}

static uint64_t s_hash(uint64_t h, const char *s)
{
    for (; *s; s++) { /* FNV-1a */
        h ^= (uint8_t)*s;
        h *= 0x100000001b3ULL;
    }
    return h;
}

/* Rendezvous hashing: the node with the highest score for key, among the
 * usable ones. A node that comes or goes moves only its own keys. */
static sl__route_t *s_pick_key(sl__cluster_t *cl, sl__ctable_t *t, const char *key)
{
    sl__route_t *best = NULL;
    uint64_t best_score = 0;
    for (size_t i = 0; i < t->n; i++) {
        sl__route_t *r = &t->routes[i];
        if (!s_usable(cl, r->node))
            continue;
        uint64_t h = s_hash(s_hash(0xcbf29ce484222325ULL, key) ^ 0x9e3779b97f4a7c15ULL,
                            r->node->id);
        h ^= h >> 31; /* spread FNV's low-entropy high bits (splitmix64 tail) */
        h *= 0xbf58476d1ce4e5b9ULL;
        h ^= h >> 27;
        if (!best || h > best_score || (h == best_score && strcmp(r->node->id, best->node->id) < 0)) {
            best = r;
            best_score = h;
        }
    }
    return best;
}

/* Least loaded: the smallest (depth + in_flight + sent since the table) /
 * capacity, ties taken in turn. */
static sl__route_t *s_pick_least(sl__cluster_t *cl, sl__ctable_t *t)
{
    sl__route_t *best = NULL;
    double best_load = 0;
    for (size_t k = 0; k < t->n; k++) {
        sl__route_t *r = &t->routes[(t->rr + k) % t->n];
        if (!s_usable(cl, r->node))
            continue;
        double cap = r->capacity ? r->capacity : 100;
        double load = (double)(r->depth + r->in_flight + r->sent) / cap;
        if (!best || load < best_load) {
            best = r;
            best_load = load;
        }
    }
    t->rr++;
    return best;
}

/* --- publishes --------------------------------------------------------- */

void sl__cpub_free(sl__cpub_t **p_p)
{
    sl__cpub_t *p = *p_p;
    if (!p)
        return;
    *p_p = NULL;
    if (p->keys)
        for (size_t i = 0; p->env && i < p->env->publish->n_jobs; i++)
            free(p->keys[i]);
    free(p->keys);
    free(p->waiting);
    free(p->res);
    sl_wire_env_free(&p->env);
    sl_chan_destroy(&p->promise);
    free(p);
}

static void s_unrouted(sl__cluster_t *cl)
{
    uint64_t n = 0;
    for (sl__cpub_t *p = cl->pubs; p; p = p->next)
        n += p->nwaiting > 0;
    atomic_store(&cl->ctr.unrouted, n);
}

/* Give up a part: its answer, when it comes (cancelled: SL_ECLOSED), is
 * dropped. The part stays on the list until then. */
static void s_part_drop(sl__cluster_t *cl, sl__part_t *part)
{
    part->pub = NULL;
    if (part->node->client)
        sl__client_cancel(part->node->client, part->corr);
    (void)cl;
}

/* Answer the user and forget p; parts still out are given up. */
static void s_complete(sl__cluster_t *cl, sl__cpub_t *p, int status, const char *text)
{
    for (sl__part_t *part = cl->parts; part; part = part->next)
        if (part->pub == p)
            s_part_drop(cl, part);
    p->res->status = status;
    if (text)
        snprintf(p->res->error, sizeof p->res->error, "%s", text);
    sl_offer(p->promise, p->res); /* a promise never refuses its first value */
    p->res = NULL;
    sl_chan_close(p->promise);
    if (p->prev)
        p->prev->next = p->next;
    else if (cl->pubs == p)
        cl->pubs = p->next;
    if (p->next)
        p->next->prev = p->prev;
    sl__cpub_free(&p);
    s_unrouted(cl);
}

/* Send the jobs idx[0..k) of p to route r as one part. */
static int s_send_part(sl__cluster_t *cl, sl__cpub_t *p, sl__ctable_t *t, sl__route_t *r,
                       const size_t *idx, size_t k)
{
    sl__part_t *part = calloc(1, sizeof *part);
    Sluice__V1__Job **jobs = calloc(k, sizeof *jobs);
    int rc = SL_ENOMEM;
    if (part && jobs && (part->idx = malloc(k * sizeof *part->idx))) {
        part->hdr.kind = SL__EV_PART;
        part->pub = p;
        part->node = r->node;
        part->table = t;
        part->k = k;
        memcpy(part->idx, idx, k * sizeof *idx);
        for (size_t i = 0; i < k; i++)
            jobs[i] = p->env->publish->jobs[idx[i]];
        Sluice__V1__Publish pub = SLUICE__V1__PUBLISH__INIT;
        pub.n_jobs = k;
        pub.jobs = jobs;
        part->promise = sl__client_publish_pb(r->node->client, &pub, p->deadline, cl->evs, part,
                                              &part->corr, &rc);
    }
    free(jobs);
    if (!part || !part->promise) {
        if (part)
            free(part->idx);
        free(part);
        return rc;
    }
    r->sent += k;
    part->next = cl->parts;
    if (cl->parts)
        cl->parts->prev = part;
    cl->parts = part;
    return SL_OK;
}

/* Route every waiting job of p that has a route: jobs of one queue and
 * one node go together, in their order. */
static void s_route(sl__cluster_t *cl, sl__cpub_t *p)
{
    size_t n = p->nwaiting;
    if (n == 0)
        return;
    sl__route_t **to = calloc(n, sizeof *to);
    sl__ctable_t **tab = calloc(n, sizeof *tab);
    size_t *idx = calloc(n, sizeof *idx);
    bool *sent = calloc(n, sizeof *sent);
    if (!to || !tab || !idx || !sent)
        goto out; /* tried again on the next tick */
    Sluice__V1__Job **jobs = p->env->publish->jobs;
    for (size_t w = 0; w < n; w++) {
        size_t j = p->waiting[w];
        sl__ctable_t *t = s_table(cl, jobs[j]->queue, true);
        if (!t)
            continue;
        tab[w] = t;
        if (t->n == 0)
            continue;
        if (p->keys[j]) {
            to[w] = s_pick_key(cl, t, p->keys[j]);
        } else {
            /* keyless jobs of one queue share the first pick */
            for (size_t v = 0; v < w && !to[w]; v++)
                if (tab[v] == t && !p->keys[p->waiting[v]] && to[v])
                    to[w] = to[v];
            if (!to[w])
                to[w] = s_pick_least(cl, t);
        }
    }
    for (size_t w = 0; w < n; w++) {
        if (!to[w] || sent[w])
            continue;
        size_t k = 0;
        for (size_t v = w; v < n; v++)
            if (!sent[v] && to[v] == to[w] && tab[v] == tab[w]) {
                idx[k++] = p->waiting[v];
                sent[v] = true;
            }
        int rc = s_send_part(cl, p, tab[w], to[w], idx, k);
        if (rc != SL_OK) {
            s_complete(cl, p, rc, "cannot send to the node");
            goto out;
        }
    }
    size_t left = 0;
    for (size_t w = 0; w < n; w++)
        if (!sent[w])
            p->waiting[left++] = p->waiting[w];
    p->nwaiting = left;
out:
    free(to);
    free(tab);
    free(idx);
    free(sent);
}

void sl__route_on_pub(sl__cluster_t *cl, sl__cpub_t *p)
{
    if (cl->stopping) {
        s_complete(cl, p, SL_ECLOSED, NULL);
        return;
    }
    p->next = cl->pubs;
    if (cl->pubs)
        cl->pubs->prev = p;
    cl->pubs = p;
    s_route(cl, p); /* may answer and free p */
    s_unrouted(cl);
}

static void s_failover(sl__cluster_t *cl, sl__part_t *part)
{
    sl__cpub_t *p = part->pub;
    memcpy(p->waiting + p->nwaiting, part->idx, part->k * sizeof *part->idx);
    p->nwaiting += part->k;
    atomic_fetch_add(&cl->ctr.failovers, 1);
    atomic_fetch_add(&cl->ctr.republished, part->k);
    s_part_drop(cl, part);
}

/* Take a part's answer off its promise, and forget the part. */
void sl__route_on_part(sl__cluster_t *cl, sl__part_t *part)
{
    void *v = NULL;
    sl_publish_result_t *res = sl_poll(part->promise, &v) == SL_OK ? v : NULL;
    sl__cpub_t *p = part->pub;
    if (p) {
        int st = res ? res->status : SL_ENOMEM;
        if (st == SL_OK) {
            /* A job the node refused because it is shutting down was not
             * stored there: it goes to another node, as from a node gone
             * silent, and the node takes none until it has restarted. */
            size_t moved = 0;
            for (size_t i = 0; i < part->k && i < res->n; i++) {
                const sl_confirm_t *cf = &res->confirms[i];
                if (cf->status == SL_CONFIRM_REJECTED && cf->code == SL_CODE_SHUTTING_DOWN &&
                    !cl->stopping) {
                    p->waiting[p->nwaiting++] = part->idx[i];
                    moved++;
                    continue;
                }
                p->res->confirms[part->idx[i]] = *cf;
                p->left--;
            }
            if (moved) {
                sl_client_counters_t k;
                sl_client_counters(part->node->client, &k);
                part->node->leaving = true;
                part->node->leaving_epoch = k.epoch;
                atomic_fetch_add(&cl->ctr.failovers, 1);
                atomic_fetch_add(&cl->ctr.republished, moved);
                s_unrouted(cl);
            }
            part->pub = NULL;
        } else if (st == SL_ECLOSED && !cl->stopping) {
            s_failover(cl, part); /* the node client let go of it */
        } else {
            part->pub = NULL;
            s_complete(cl, p, st, res ? res->error : NULL);
            p = NULL;
        }
    }
    sl_publish_result_destroy(&res);
    if (part->prev)
        part->prev->next = part->next;
    else
        cl->parts = part->next;
    if (part->next)
        part->next->prev = part->prev;
    sl_chan_destroy(&part->promise);
    free(part->idx);
    free(part);
    if (p && p->left == 0)
        s_complete(cl, p, SL_OK, NULL);
    else if (p && p->nwaiting > 0)
        s_route(cl, p);
}

void sl__route_on_table(sl__cluster_t *cl, const Sluice__V1__RouteTable *rt)
{
    sl__cluster_note_interval(cl, rt->interval_ms);
    if (!rt->queue || sl_queue_name_check(rt->queue) != SL_OK || rt->n_routes == 0)
        return; /* never act on an empty table: keep the last one */
    sl__ctable_t *t = s_table(cl, rt->queue, true);
    if (!t)
        return;
    sl__route_t *routes = calloc(rt->n_routes, sizeof *routes);
    if (!routes)
        return;
    size_t k = 0;
    for (size_t i = 0; i < rt->n_routes; i++) {
        const Sluice__V1__Route *r = rt->routes[i];
        if (!r->node || !r->node->node_id || !*r->node->node_id)
            continue;
        sl__cnode_t *n = sl__cluster_node(cl, r->node->node_id, r->node->endpoint,
                                          r->node->member_epoch);
        if (!n)
            continue;
        routes[k].node = n;
        routes[k].depth = r->depth;
        routes[k].in_flight = r->in_flight;
        routes[k].capacity = r->capacity;
        k++;
    }
    if (k == 0) {
        free(routes);
        return;
    }
    free(t->routes);
    t->routes = routes;
    t->n = k;
    t->version = rt->version;
    atomic_fetch_add(&cl->ctr.route_tables, 1);
    s_count_routes(cl);
    sl__route_tick(cl, sl_now()); /* parts on removed nodes move now */
}

void sl__route_tick(sl__cluster_t *cl, int64_t now)
{
    bool moved = false;
    for (sl__part_t *part = cl->parts; part; part = part->next) {
        if (!part->pub)
            continue;
        if (part->node->gone || !s_in_table(part->table, part->node)) {
            s_failover(cl, part);
            part->node->drop_queued = true;
            moved = true;
        }
    }
    /* What we sent a node we have given up on may still sit in its
     * connection's queue, waiting for the node to come back: a fresh
     * connection discards it, so the jobs just sent elsewhere never run
     * there too. Only while the node is down: a node that is answering
     * has been sent everything already, and keeps its session. */
    if (moved)
        for (sl__cnode_t *n = cl->nodes; n; n = n->next)
            if (n->drop_queued) {
                n->drop_queued = false;
                if (n->client)
                    sl__client_reconnect(n->client, NULL, true);
            }
    sl__cpub_t *next;
    for (sl__cpub_t *p = cl->pubs; p; p = next) {
        next = p->next;
        if (p->nwaiting == 0)
            continue;
        if (p->deadline != SL_FOREVER && now >= p->deadline)
            s_complete(cl, p, SL_ETIMEDOUT, "no route to a node before the deadline");
        else
            s_route(cl, p);
    }
    if (moved)
        s_unrouted(cl);
}

void sl__route_stop(sl__cluster_t *cl)
{
    while (cl->pubs)
        s_complete(cl, cl->pubs, SL_ECLOSED, NULL);
}

void sl__route_release(sl__cluster_t *cl)
{
    while (cl->pubs) {
        sl__cpub_t *p = cl->pubs;
        cl->pubs = p->next;
        sl__cpub_free(&p);
    }
    while (cl->parts) {
        sl__part_t *part = cl->parts;
        cl->parts = part->next;
        void *v = NULL;
        if (sl_poll(part->promise, &v) == SL_OK) {
            sl_publish_result_t *res = v;
            sl_publish_result_destroy(&res);
        }
        sl_chan_destroy(&part->promise);
        free(part->idx);
        free(part);
    }
    while (cl->tables) {
        sl__ctable_t *t = cl->tables;
        cl->tables = t->next;
        free(t->routes);
        free(t);
    }
}
