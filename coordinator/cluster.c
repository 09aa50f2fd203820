/* cluster.c -- the coordinator's rules: node membership and epochs,
 * consumer groups and their assignments, route tables and who watches
 * them; the "on receiving" steps of docs/architecture.md, one function
 * each, and the periodic sweep. Runs on the coordinator's thread only. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "assign.h"
#include "coord_int.h"
#include "sluice/name.h"

#define BAD_MESSAGE SLUICE__V1__ERROR__CODE__BAD_MESSAGE
#define BAD_QUEUE SLUICE__V1__ERROR__CODE__BAD_QUEUE

/* --- keys ------------------------------------------------------------------ */

typedef struct {
    const char *queue, *id;
} s_key_t;

static int s_cmp_node(const void *key, const void *elem)
{
    return strcmp(key, ((const sl__cnode_t *)elem)->id);
}

static int s_cmp_queue(const void *key, const void *elem)
{
    return strcmp(key, ((const sl__cqueue_t *)elem)->name);
}

/* Consumers and watchers both sort by (queue, id). */
static int s_cmp_member(const void *key, const void *elem)
{
    const s_key_t *k = key;
    const sl__member_t *e = elem;
    int c = strcmp(k->queue, e->q->name);
    return c ? c : strcmp(k->id, e->id);
}

typedef struct {
    const uint8_t *rid;
    size_t len;
} s_rid_t;

static int s_cmp_peer(const void *key, const void *elem)
{
    const s_rid_t *k = key;
    const sl__peer_t *e = elem;
    if (k->len != e->rid_len)
        return k->len < e->rid_len ? -1 : 1;
    return memcmp(k->rid, e->rid, k->len);
}

static char *s_strdup(const char *s)
{
    char *d = strdup(s ? s : "");
    if (!d)
        abort(); /* the coordinator is a daemon: out of memory ends it */
    return d;
}

static void *s_calloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size);
    if (!p)
        abort();
    return p;
}

static void s_insert(sl__vec_t *v, size_t at, void *elem)
{
    if (sl__vec_insert(v, at, elem) != SL_OK)
        abort();
}

/* A queue name: the rule every component shares (sluice/name.h). */
static bool s_queue_ok(const char *s)
{
    return sl_queue_name_ok_str(s);
}

static bool s_id_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    return n >= 1 && n <= SL__ID_MAX;
}

/* A request's id (field id_field) and queue, checked; a bad one is
 * answered (BAD_MESSAGE, or BAD_QUEUE for the name) and counted. */
static bool s_request_ok(sl_coord_t *c, const uint8_t *rid, size_t rid_len, uint64_t corr,
                         const char *what, const char *id_field, const char *id,
                         const char *queue)
{
    if (!s_id_ok(id)) {
        sl__coord_reject(c, rid, rid_len, corr, BAD_MESSAGE, "%s: %s must be 1-255 bytes", what,
                         id_field);
        return false;
    }
    if (!s_queue_ok(queue)) {
        sl__coord_reject(c, rid, rid_len, corr, BAD_QUEUE, "%s: invalid queue name (%s)", what,
                         SL_QUEUE_NAME_RULE);
        return false;
    }
    return true;
}

static uint64_t s_grant(sl_coord_t *c)
{
    return ++c->counter;
}

/* --- refs ------------------------------------------------------------------- */

static void s_refs_free(sl__ref_t **refs, size_t *n)
{
    for (size_t i = 0; i < *n; i++) {
        free((*refs)[i].node_id);
        free((*refs)[i].endpoint);
    }
    free(*refs);
    *refs = NULL;
    *n = 0;
}

/* Replace *dst with owned copies of src[0..n). */
static void s_refs_set(sl__ref_t **dst, size_t *dst_n, const sl__ref_t *src, size_t n)
{
    s_refs_free(dst, dst_n);
    *dst = s_calloc(n, sizeof **dst);
    for (size_t i = 0; i < n; i++) {
        (*dst)[i] = src[i];
        (*dst)[i].node_id = s_strdup(src[i].node_id);
        (*dst)[i].endpoint = s_strdup(src[i].endpoint);
    }
    *dst_n = n;
}

/* The same nodes (ids), in the same order. */
static bool s_same_nodes(const sl__ref_t *a, size_t na, const sl__ref_t *b, size_t nb)
{
    if (na != nb)
        return false;
    for (size_t i = 0; i < na; i++)
        if (strcmp(a[i].node_id, b[i].node_id) != 0)
            return false;
    return true;
}

/* Also the same endpoints and epochs: what a client connects with. */
static bool s_same_members(const sl__ref_t *a, size_t na, const sl__ref_t *b, size_t nb)
{
    if (!s_same_nodes(a, na, b, nb))
        return false;
    for (size_t i = 0; i < na; i++)
        if (a[i].epoch != b[i].epoch || strcmp(a[i].endpoint, b[i].endpoint) != 0)
            return false;
    return true;
}

static bool s_same_shares(const sl__ref_t *a, const sl__ref_t *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (a[i].share != b[i].share)
            return false;
    return true;
}

static bool s_same_loads(const sl__ref_t *a, const sl__ref_t *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (a[i].depth != b[i].depth || a[i].in_flight != b[i].in_flight ||
            a[i].capacity != b[i].capacity)
            return false;
    return true;
}

/* NodeRef messages for refs (strings borrowed); caller frees both arrays. */
static Sluice__V1__NodeRef **s_noderefs(const sl__ref_t *refs, size_t n,
                                        Sluice__V1__NodeRef **store)
{
    *store = s_calloc(n, sizeof **store);
    Sluice__V1__NodeRef **ptrs = s_calloc(n, sizeof *ptrs);
    for (size_t i = 0; i < n; i++) {
        Sluice__V1__NodeRef r = SLUICE__V1__NODE_REF__INIT;
        r.node_id = refs[i].node_id;
        r.endpoint = refs[i].endpoint;
        r.member_epoch = refs[i].epoch;
        r.share = refs[i].share;
        (*store)[i] = r;
        ptrs[i] = &(*store)[i];
    }
    return ptrs;
}

/* --- queues and live nodes ----------------------------------------------------- */

static sl__cqueue_t *s_queue(sl_coord_t *c, const char *name)
{
    bool found;
    size_t at = sl__vec_find(&c->queues, name, s_cmp_queue, &found);
    if (found)
        return c->queues.v[at];
    sl__cqueue_t *q = s_calloc(1, sizeof *q);
    q->name = s_strdup(name);
    s_insert(&c->queues, at, q);
    return q;
}

static void s_queue_drop_if_unused(sl_coord_t *c, sl__cqueue_t *q)
{
    if (q->n_consumers || q->n_watchers)
        return;
    bool found;
    size_t at = sl__vec_find(&c->queues, q->name, s_cmp_queue, &found);
    if (found)
        sl__vec_remove(&c->queues, at);
    s_refs_free(&q->routes, &q->n_routes);
    free(q->name);
    free(q);
}

/* The live nodes with queue's load on each, in id order: an[] for
 * sl__assign, np[] the nodes themselves. Both are caller-owned. */
static size_t s_live(sl_coord_t *c, const char *queue, sl__anode_t **an, sl__cnode_t ***np)
{
    *an = s_calloc(c->nodes.n, sizeof **an);
    *np = s_calloc(c->nodes.n, sizeof **np);
    size_t k = 0;
    for (size_t i = 0; i < c->nodes.n; i++) {
        sl__cnode_t *n = c->nodes.v[i];
        if (!n->alive)
            continue;
        sl__anode_t a = {.id = n->id, .capacity = n->status->capacity};
        for (size_t j = 0; j < n->status->n_queues; j++) {
            const Sluice__V1__QueueLoad *l = n->status->queues[j];
            if (l->queue && strcmp(l->queue, queue) == 0) {
                a.depth = l->depth;
                a.delayed = l->delayed;
                a.in_flight = l->in_flight;
                break;
            }
        }
        (*an)[k] = a;
        (*np)[k++] = n;
    }
    return k;
}

/* --- assignments -------------------------------------------------------------- */

static void s_send_assignment(sl_coord_t *c, const sl__consumer_t *cs, uint64_t corr)
{
    Sluice__V1__NodeRef *store;
    Sluice__V1__NodeRef **ptrs = s_noderefs(cs->refs, cs->n_refs, &store);
    Sluice__V1__Assignment a = SLUICE__V1__ASSIGNMENT__INIT;
    a.queue = cs->m.q->name;
    a.epoch = cs->epoch;
    a.n_nodes = cs->n_refs;
    a.nodes = ptrs;
    a.interval_ms = (uint32_t)c->o.heartbeat_ms;
    Sluice__V1__Envelope env = SLUICE__V1__ENVELOPE__INIT;
    env.corr = corr;
    env.body_case = SLUICE__V1__ENVELOPE__BODY_ASSIGNMENT;
    env.assignment = &a;
    sl__coord_send(c, cs->m.rid, cs->m.rid_len, &env);
    free(ptrs);
    free(store);
}

/* The consumers of q: a contiguous run of c->consumers. */
static size_t s_first_consumer(sl_coord_t *c, const sl__cqueue_t *q)
{
    bool found;
    s_key_t k = {q->name, ""}; /* ids are never empty: sorts first */
    return sl__vec_find(&c->consumers, &k, s_cmp_member, &found);
}

/* Recompute the assignment of q's consumers and push each changed one
 * (except `quiet`, whose caller answers it). backlog_only: apply only if
 * some consumer's nodes change, so steady load does not churn. */
static void s_assign_queue(sl_coord_t *c, sl__cqueue_t *q, bool backlog_only,
                           const sl__consumer_t *quiet)
{
    if (!c->grace_over || q->n_consumers == 0)
        return;
    size_t first = s_first_consumer(c, q), m = q->n_consumers;
    sl__consumer_t **cs = (sl__consumer_t **)&c->consumers.v[first];
    const char **ids = s_calloc(m, sizeof *ids);
    for (size_t i = 0; i < m; i++)
        ids[i] = cs[i]->m.id;
    sl__anode_t *an;
    sl__cnode_t **np;
    size_t k = s_live(c, q->name, &an, &np);
    sl__apair_t *pairs = s_calloc(sl__assign_max_pairs(k, m), sizeof *pairs);
    size_t np_out = 0;
    if (sl__assign(an, k, ids, m, pairs, &np_out) != SL_OK)
        abort();

    /* New refs per consumer (strings borrowed from the nodes). Pairs come
     * grouped by consumer in id order, which is the order of cs[]. */
    sl__ref_t *fresh = s_calloc(np_out, sizeof *fresh);
    size_t *start = s_calloc(m + 1, sizeof *start);
    for (size_t p = 0, i = 0; i <= m; i++) {
        start[i] = p;
        while (i < m && p < np_out && pairs[p].consumer == i) {
            sl__cnode_t *n = np[pairs[p].node];
            fresh[p] = (sl__ref_t){.node_id = n->id, .endpoint = n->status->endpoint,
                                   .epoch = n->epoch, .share = pairs[p].share};
            p++;
        }
    }
    bool moved = false;
    for (size_t i = 0; i < m && !moved; i++)
        moved = cs[i]->epoch == 0 || !s_same_nodes(cs[i]->refs, cs[i]->n_refs, &fresh[start[i]],
                                                    start[i + 1] - start[i]);
    if (!backlog_only || moved) {
        for (size_t i = 0; i < m; i++) {
            const sl__ref_t *f = &fresh[start[i]];
            size_t nf = start[i + 1] - start[i];
            if (cs[i]->epoch != 0 && s_same_members(cs[i]->refs, cs[i]->n_refs, f, nf) &&
                s_same_shares(cs[i]->refs, f, nf))
                continue;
            s_refs_set(&cs[i]->refs, &cs[i]->n_refs, f, nf);
            cs[i]->epoch = s_grant(c);
            sl__coord_event(c, SL_COORD_EV_ASSIGNED, cs[i]->m.id, q->name, cs[i]->epoch, NULL);
            if (cs[i] != quiet)
                s_send_assignment(c, cs[i], 0);
        }
    }
    free(start);
    free(fresh);
    free(pairs);
    free(an);
    free(np);
    free(ids);
}

/* --- routes -------------------------------------------------------------------- */

static void s_send_routes(sl_coord_t *c, const sl__cqueue_t *q, const uint8_t *rid,
                          size_t rid_len, uint64_t corr)
{
    Sluice__V1__NodeRef *refs;
    Sluice__V1__NodeRef **rp = s_noderefs(q->routes, q->n_routes, &refs);
    Sluice__V1__Route *routes = s_calloc(q->n_routes, sizeof *routes);
    Sluice__V1__Route **ptrs = s_calloc(q->n_routes, sizeof *ptrs);
    for (size_t i = 0; i < q->n_routes; i++) {
        Sluice__V1__Route r = SLUICE__V1__ROUTE__INIT;
        r.node = rp[i];
        r.depth = q->routes[i].depth;
        r.in_flight = q->routes[i].in_flight;
        r.capacity = q->routes[i].capacity;
        routes[i] = r;
        ptrs[i] = &routes[i];
    }
    Sluice__V1__RouteTable t = SLUICE__V1__ROUTE_TABLE__INIT;
    t.queue = q->name;
    t.version = q->version;
    t.n_routes = q->n_routes;
    t.routes = ptrs;
    t.interval_ms = (uint32_t)c->o.heartbeat_ms;
    Sluice__V1__Envelope env = SLUICE__V1__ENVELOPE__INIT;
    env.corr = corr;
    env.body_case = SLUICE__V1__ENVELOPE__BODY_ROUTE_TABLE;
    env.route_table = &t;
    sl__coord_send(c, rid, rid_len, &env);
    free(ptrs);
    free(routes);
    free(rp);
    free(refs);
}

/* Rebuild q's route table from the live nodes. A new version is made when
 * q has none yet, when the members changed (at once), or when only loads
 * changed and the last version is an interval old; it is then pushed to
 * every watcher of q but `quiet`. */
static void s_routes_update(sl_coord_t *c, sl__cqueue_t *q, int64_t now,
                            const sl__watcher_t *quiet)
{
    if (!c->grace_over)
        return;
    sl__anode_t *an;
    sl__cnode_t **np;
    size_t k = s_live(c, q->name, &an, &np);
    sl__aroute_t *ar = s_calloc(k, sizeof *ar);
    if (sl__routes(an, k, ar) != SL_OK)
        abort();
    sl__ref_t *fresh = s_calloc(k, sizeof *fresh);
    for (size_t i = 0; i < k; i++) {
        sl__cnode_t *n = np[ar[i].node];
        fresh[i] = (sl__ref_t){.node_id = n->id, .endpoint = n->status->endpoint,
                               .epoch = n->epoch, .depth = ar[i].depth,
                               .in_flight = ar[i].in_flight, .capacity = ar[i].capacity};
    }
    bool apply = q->version == 0 || !s_same_members(q->routes, q->n_routes, fresh, k) ||
                 (!s_same_loads(q->routes, fresh, k) && now - q->pushed_mono >= c->o.heartbeat_ms);
    if (apply) {
        s_refs_set(&q->routes, &q->n_routes, fresh, k);
        q->version = s_grant(c);
        q->pushed_mono = now;
        sl__coord_event(c, SL_COORD_EV_ROUTES, NULL, q->name, q->version, NULL);
        bool found;
        s_key_t key = {q->name, ""};
        size_t at = sl__vec_find(&c->watchers, &key, s_cmp_member, &found);
        for (size_t i = 0; i < q->n_watchers && at + i < c->watchers.n; i++) {
            const sl__watcher_t *w = c->watchers.v[at + i];
            if (w != quiet)
                s_send_routes(c, q, w->m.rid, w->m.rid_len, 0);
        }
    }
    free(fresh);
    free(ar);
    free(an);
    free(np);
}

/* --- peers --------------------------------------------------------------------- */

void sl__peer_seen(sl_coord_t *c, const uint8_t *rid, size_t rid_len, int64_t now)
{
    s_rid_t k = {rid, rid_len};
    sl__peer_t *p = sl__vec_get(&c->peers, &k, s_cmp_peer);
    if (p)
        p->last_mono = now;
}

/* Make sure rid is a known peer. false: the table is full. */
static bool s_peer_add(sl_coord_t *c, const uint8_t *rid, size_t rid_len, int64_t now)
{
    s_rid_t k = {rid, rid_len};
    bool found;
    size_t at = sl__vec_find(&c->peers, &k, s_cmp_peer, &found);
    if (found)
        return true;
    if (c->peers.n >= (size_t)c->o.max_consumers + c->o.max_watchers)
        return false;
    sl__peer_t *p = s_calloc(1, sizeof *p);
    memcpy(p->rid, rid, rid_len);
    p->rid_len = rid_len;
    p->last_mono = now;
    s_insert(&c->peers, at, p);
    return true;
}

/* When rid last sent anything, or `own` if later. */
static int64_t s_last_seen(sl_coord_t *c, const uint8_t *rid, size_t rid_len, int64_t own)
{
    s_rid_t k = {rid, rid_len};
    sl__peer_t *p = sl__vec_get(&c->peers, &k, s_cmp_peer);
    return p && p->last_mono > own ? p->last_mono : own;
}

/* --- NodeStatus ---------------------------------------------------------------- */

static void s_node_free(sl__cnode_t *n)
{
    sluice__v1__node_status__free_unpacked(n->status, NULL);
    free(n->id);
    free(n);
}

/* Room for one more node: evict the longest-dead tombstone if full.
 * false: every entry is a live node. */
static bool s_node_room(sl_coord_t *c)
{
    if (c->nodes.n < c->o.max_nodes)
        return true;
    size_t victim = c->nodes.n;
    for (size_t i = 0; i < c->nodes.n; i++) {
        const sl__cnode_t *n = c->nodes.v[i];
        if (!n->alive &&
            (victim == c->nodes.n ||
             n->last_mono < ((const sl__cnode_t *)c->nodes.v[victim])->last_mono))
            victim = i;
    }
    if (victim == c->nodes.n)
        return false;
    s_node_free(sl__vec_remove(&c->nodes, victim));
    return true;
}

/* NULL if st is well formed; else why not, with *code the Error.Code. */
static const char *s_status_bad(const Sluice__V1__NodeStatus *st, Sluice__V1__Error__Code *code)
{
    *code = BAD_MESSAGE;
    if (!s_id_ok(st->node_id))
        return "node_id must be 1-255 bytes";
    if (!st->endpoint || !st->endpoint[0] || strlen(st->endpoint) > SL__ENDPOINT_MAX)
        return "endpoint must be 1-1024 bytes";
    *code = BAD_QUEUE;
    for (size_t i = 0; i < st->n_queues; i++)
        if (!s_queue_ok(st->queues[i]->queue))
            return "invalid queue name (" SL_QUEUE_NAME_RULE ")";
    return NULL;
}

void sl__on_node_status(sl_coord_t *c, const uint8_t *rid, size_t rid_len,
                        Sluice__V1__Envelope *env)
{
    Sluice__V1__NodeStatus *st = env->node_status;
    Sluice__V1__Error__Code code;
    const char *why = s_status_bad(st, &code);
    if (why) {
        sl__coord_reject(c, rid, rid_len, env->corr, code, "node_status: %s", why);
        return;
    }
    int64_t now = sl__coord_mono_ms();
    bool found, changed = false, rejoin = false;
    size_t at = sl__vec_find(&c->nodes, st->node_id, s_cmp_node, &found);
    sl__cnode_t *n = found ? c->nodes.v[at] : NULL;
    if (!n) {
        if (!s_node_room(c)) {
            sl__coord_full(c, rid, rid_len, env->corr, st->node_id, "max-nodes");
            return;
        }
        at = sl__vec_find(&c->nodes, st->node_id, s_cmp_node, &found);
        n = s_calloc(1, sizeof *n);
        n->id = s_strdup(st->node_id);
        s_insert(&c->nodes, at, n);
        if (st->member_epoch == 0) {
            n->epoch = s_grant(c);
            sl__coord_event(c, SL_COORD_EV_NODE_JOINED, n->id, NULL, n->epoch, st->endpoint);
        } else {
            /* We restarted and lost our state: keep the node's epoch, so
             * nothing it serves is disturbed, and grant above it. */
            n->epoch = st->member_epoch;
            if (c->counter < n->epoch)
                c->counter = n->epoch;
            sl__coord_event(c, SL_COORD_EV_NODE_ADOPTED, n->id, NULL, n->epoch, st->endpoint);
        }
        changed = true;
    } else if (!n->alive || n->incarnation != st->incarnation) {
        n->epoch = s_grant(c);
        rejoin = changed = true;
        sl__coord_event(c, SL_COORD_EV_NODE_REJOINED, n->id, NULL, n->epoch,
                        n->alive ? "restarted" : "was dead");
    } else if (st->member_epoch != 0 && st->member_epoch != n->epoch) {
        /* Alive, but it has not adopted the epoch it was last given (the
         * reply crossed this status): tell it again; no new grant. */
        rejoin = true;
    }
    if (!n->alive) {
        n->alive = true;
        c->n_alive++;
    }
    /* Where clients connect: routes and assignments name it, so a move
     * (a restart on another address) is a membership change even when
     * nothing else is. */
    if (n->status && strcmp(n->status->endpoint, st->endpoint) != 0)
        changed = true;
    n->incarnation = st->incarnation;
    n->last_mono = now;
    n->last_wall = sl_wall_ms();
    n->interval_ms = st->interval_ms ? st->interval_ms : c->o.heartbeat_ms;
    if (n->interval_ms < 10)
        n->interval_ms = 10;
    /* Keep the status as the node's load and for CLUSTER; take it out of
     * the envelope rather than copy it. */
    sluice__v1__node_status__free_unpacked(n->status, NULL);
    n->status = st;
    env->node_status = NULL;
    env->body_case = SLUICE__V1__ENVELOPE__BODY__NOT_SET;
    st->member_epoch = n->epoch;
    if (changed)
        c->dirty = true;

    Sluice__V1__NodeStatusReply r = SLUICE__V1__NODE_STATUS_REPLY__INIT;
    r.member_epoch = n->epoch;
    r.rejoin = rejoin;
    r.interval_ms = (uint32_t)c->o.heartbeat_ms;
    Sluice__V1__Envelope out = SLUICE__V1__ENVELOPE__INIT;
    out.corr = env->corr;
    out.body_case = SLUICE__V1__ENVELOPE__BODY_NODE_STATUS_REPLY;
    out.node_status_reply = &r;
    sl__coord_send(c, rid, rid_len, &out);
}

/* --- consumers and route watchers --------------------------------------------- */

/* The member (id, queue) of table, made (size bytes, zeroed) when new and
 * refreshed with the routing id it spoke from. NULL when refused for a
 * limit (limit_name), which was answered with Error{FULL}. */
static sl__member_t *s_member(sl_coord_t *c, sl__vec_t *table, uint32_t limit,
                              const char *limit_name, size_t size, const char *id,
                              const char *queue, const uint8_t *rid, size_t rid_len,
                              uint64_t corr, bool *created)
{
    int64_t now = sl__coord_mono_ms();
    s_key_t k = {queue, id};
    bool found;
    size_t at = sl__vec_find(table, &k, s_cmp_member, &found);
    sl__member_t *m = found ? table->v[at] : NULL;
    if (!m && table->n >= limit) {
        sl__coord_full(c, rid, rid_len, corr, id, limit_name);
        return NULL;
    }
    if (!s_peer_add(c, rid, rid_len, now)) {
        sl__coord_full(c, rid, rid_len, corr, id, "peers");
        return NULL;
    }
    *created = !m;
    if (!m) {
        m = s_calloc(1, size);
        m->id = s_strdup(id);
        m->q = s_queue(c, queue);
        s_insert(table, at, m);
    }
    memcpy(m->rid, rid, rid_len);
    m->rid_len = rid_len;
    m->last_mono = now;
    return m;
}

/* Remove the member at `at` of c->consumers or c->watchers. */
static void s_member_remove(sl_coord_t *c, sl__vec_t *table, size_t at)
{
    sl__member_t *m = sl__vec_remove(table, at);
    sl__cqueue_t *q = m->q;
    if (table == &c->consumers) {
        sl__consumer_t *cs = (sl__consumer_t *)m;
        q->n_consumers--;
        q->reassign = true;
        s_refs_free(&cs->refs, &cs->n_refs);
    } else {
        q->n_watchers--;
    }
    free(m->id);
    free(m);
    s_queue_drop_if_unused(c, q);
}

/* Members of table silent (their routing id too) for `silent` ms. */
static void s_expire(sl_coord_t *c, sl__vec_t *table, int64_t now, int64_t silent,
                     sl_coord_event_type_t ev)
{
    for (size_t i = table->n; i-- > 0;) {
        sl__member_t *m = table->v[i];
        if (now - s_last_seen(c, m->rid, m->rid_len, m->last_mono) > silent) {
            uint64_t epoch = table == &c->consumers ? ((sl__consumer_t *)m)->epoch : 0;
            sl__coord_event(c, ev, m->id, m->q->name, epoch, NULL);
            s_member_remove(c, table, i);
        }
    }
}

void sl__on_consumer_join(sl_coord_t *c, const uint8_t *rid, size_t rid_len,
                          const Sluice__V1__Envelope *env)
{
    const Sluice__V1__ConsumerJoin *j = env->consumer_join;
    if (!s_request_ok(c, rid, rid_len, env->corr, "consumer_join", "consumer_id", j->consumer_id,
                      j->queue))
        return;
    bool created;
    sl__consumer_t *cs = (sl__consumer_t *)s_member(
        c, &c->consumers, c->o.max_consumers, "max-consumers", sizeof *cs, j->consumer_id,
        j->queue, rid, rid_len, env->corr, &created);
    if (!cs)
        return;
    if (created) {
        cs->m.q->n_consumers++;
        sl__coord_event(c, SL_COORD_EV_CONSUMER_JOINED, cs->m.id, j->queue, 0, NULL);
    }
    cs->concurrency = j->concurrency;
    if (!c->grace_over)
        return; /* answered when the grace ends */
    if (cs->epoch == 0)
        s_assign_queue(c, cs->m.q, false, cs);
    if (j->epoch != cs->epoch)
        s_send_assignment(c, cs, env->corr);
}

void sl__on_consumer_leave(sl_coord_t *c, const uint8_t *rid, size_t rid_len,
                           const Sluice__V1__Envelope *env)
{
    const Sluice__V1__ConsumerLeave *l = env->consumer_leave;
    if (!s_request_ok(c, rid, rid_len, env->corr, "consumer_leave", "consumer_id", l->consumer_id,
                      l->queue))
        return;
    s_key_t k = {l->queue, l->consumer_id};
    bool found;
    size_t at = sl__vec_find(&c->consumers, &k, s_cmp_member, &found);
    if (!found)
        return; /* already gone: leaving twice is harmless */
    sl__coord_event(c, SL_COORD_EV_CONSUMER_LEFT, l->consumer_id, l->queue, 0, NULL);
    s_member_remove(c, &c->consumers, at);
}

void sl__on_route_request(sl_coord_t *c, const uint8_t *rid, size_t rid_len,
                          const Sluice__V1__Envelope *env)
{
    const Sluice__V1__RouteRequest *r = env->route_request;
    if (!s_request_ok(c, rid, rid_len, env->corr, "route_request", "client_id", r->client_id,
                      r->queue))
        return;
    bool created;
    sl__watcher_t *w = (sl__watcher_t *)s_member(c, &c->watchers, c->o.max_watchers,
                                                 "max-watchers", sizeof *w, r->client_id,
                                                 r->queue, rid, rid_len, env->corr, &created);
    if (!w)
        return;
    sl__cqueue_t *q = w->m.q;
    if (created) {
        q->n_watchers++;
        sl__coord_event(c, SL_COORD_EV_WATCHER_ADDED, w->m.id, r->queue, 0, NULL);
    }
    if (!c->grace_over)
        return;
    if (q->version == 0)
        s_routes_update(c, q, sl__coord_mono_ms(), w);
    if (r->version != q->version)
        s_send_routes(c, q, rid, rid_len, env->corr);
}

/* --- CLUSTER ------------------------------------------------------------------- */

void sl__on_cluster(sl_coord_t *c, const uint8_t *rid, size_t rid_len, uint64_t corr)
{
    size_t nn = c->nodes.n, nc = c->consumers.n;
    Sluice__V1__ClusterNode *cn = s_calloc(nn, sizeof *cn);
    Sluice__V1__ClusterNode **cnp = s_calloc(nn, sizeof *cnp);
    for (size_t i = 0; i < nn; i++) {
        const sl__cnode_t *n = c->nodes.v[i];
        Sluice__V1__ClusterNode x = SLUICE__V1__CLUSTER_NODE__INIT;
        x.status = n->status;
        x.alive = n->alive;
        x.last_seen_ms = n->last_wall;
        cn[i] = x;
        cnp[i] = &cn[i];
    }
    Sluice__V1__ClusterConsumer *cc = s_calloc(nc, sizeof *cc);
    Sluice__V1__ClusterConsumer **ccp = s_calloc(nc, sizeof *ccp);
    Sluice__V1__NodeRef **stores = s_calloc(nc, sizeof *stores);
    for (size_t i = 0; i < nc; i++) {
        const sl__consumer_t *cs = c->consumers.v[i];
        Sluice__V1__ClusterConsumer x = SLUICE__V1__CLUSTER_CONSUMER__INIT;
        x.consumer_id = cs->m.id;
        x.queue = cs->m.q->name;
        x.concurrency = cs->concurrency;
        x.epoch = cs->epoch;
        x.n_nodes = cs->n_refs;
        x.nodes = s_noderefs(cs->refs, cs->n_refs, &stores[i]);
        cc[i] = x;
        ccp[i] = &cc[i];
    }
    Sluice__V1__ClusterView v = SLUICE__V1__CLUSTER_VIEW__INIT;
    v.coordinator_id = c->id;
    v.n_nodes = nn;
    v.nodes = cnp;
    v.n_consumers = nc;
    v.consumers = ccp;
    v.epoch = c->counter;
    Sluice__V1__AdminReply r = SLUICE__V1__ADMIN_REPLY__INIT;
    r.node_id = c->id;
    r.epoch = c->epoch0;
    r.peers = c->peers.n;
    r.bad_messages = c->bad_messages;
    r.cluster = &v;
    Sluice__V1__Envelope env = SLUICE__V1__ENVELOPE__INIT;
    env.corr = corr;
    env.body_case = SLUICE__V1__ENVELOPE__BODY_ADMIN_REPLY;
    env.admin_reply = &r;
    sl__coord_send(c, rid, rid_len, &env);
    for (size_t i = 0; i < nc; i++) {
        free(cc[i].nodes);
        free(stores[i]);
    }
    free(stores);
    free(ccp);
    free(cc);
    free(cnp);
    free(cn);
}

/* --- the sweep ----------------------------------------------------------------- */

void sl__sweep(sl_coord_t *c, int64_t now)
{
    int64_t silent = SL__DEAD_AFTER * c->o.heartbeat_ms;
    /* ms clocks truncate: one ms more makes sure a whole grace passed */
    if (!c->grace_over && (c->grace_ms == 0 || now - c->start_mono > c->grace_ms)) {
        c->grace_over = true;
        c->dirty = true; /* answer everyone held during the grace */
        c->next_rebalance = now + SL__REBALANCE_EVERY * c->o.heartbeat_ms;
        sl__coord_event(c, SL_COORD_EV_GRACE_OVER, NULL, NULL, c->counter, NULL);
    }
    for (size_t i = 0; i < c->nodes.n; i++) {
        sl__cnode_t *n = c->nodes.v[i];
        if (n->alive && now - n->last_mono > SL__DEAD_AFTER * n->interval_ms) {
            n->alive = false;
            c->n_alive--;
            c->dirty = true;
            sl__coord_event(c, SL_COORD_EV_NODE_DEAD, n->id, NULL, n->epoch, NULL);
        }
    }
    s_expire(c, &c->consumers, now, silent, SL_COORD_EV_CONSUMER_EXPIRED);
    s_expire(c, &c->watchers, now, silent, SL_COORD_EV_WATCHER_EXPIRED);
    for (size_t i = c->peers.n; i-- > 0;) {
        sl__peer_t *p = c->peers.v[i];
        if (now - p->last_mono > silent)
            free(sl__vec_remove(&c->peers, i));
    }
    if (!c->grace_over)
        return;
    sl__flush(c, now);
    bool rebalance = now >= c->next_rebalance;
    if (rebalance)
        c->next_rebalance = now + SL__REBALANCE_EVERY * c->o.heartbeat_ms;
    for (size_t i = 0; i < c->queues.n; i++) {
        sl__cqueue_t *q = c->queues.v[i];
        if (rebalance)
            s_assign_queue(c, q, true, NULL);
        /* Loads alone make a new table at most once per interval. */
        if (q->n_watchers && now - q->pushed_mono >= c->o.heartbeat_ms)
            s_routes_update(c, q, now, NULL);
    }
}

void sl__flush(sl_coord_t *c, int64_t now)
{
    if (!c->grace_over)
        return;
    for (size_t i = 0; i < c->queues.n; i++) {
        sl__cqueue_t *q = c->queues.v[i];
        if (c->dirty || q->reassign)
            s_assign_queue(c, q, false, NULL);
        if (c->dirty && q->n_watchers)
            s_routes_update(c, q, now, NULL);
        q->reassign = false;
    }
    c->dirty = false;
}

void sl__cluster_release(sl_coord_t *c)
{
    while (c->consumers.n)
        s_member_remove(c, &c->consumers, c->consumers.n - 1);
    while (c->watchers.n)
        s_member_remove(c, &c->watchers, c->watchers.n - 1);
    for (size_t i = 0; i < c->nodes.n; i++)
        s_node_free(c->nodes.v[i]);
    for (size_t i = 0; i < c->peers.n; i++)
        free(c->peers.v[i]);
    sl__vec_release(&c->consumers);
    sl__vec_release(&c->watchers);
    sl__vec_release(&c->nodes);
    sl__vec_release(&c->peers);
    sl__vec_release(&c->queues);
}
