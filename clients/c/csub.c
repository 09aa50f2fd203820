/* csub.c -- consuming in cluster mode: one consumer-group membership per
 * queue (ConsumerJoin every interval, ConsumerLeave at the end) that
 * follows its Assignment: a subscription on each assigned node, named by
 * the node's member epoch, with credit at the node's share of the
 * concurrency; nodes no longer assigned are unsubscribed once their
 * deliveries have ended.
 *
 *   joined (epoch 0) --Assignment E--> following E --Assignment E'--> E'
 *        ^                                 |
 *        '--- s_rejoin: a node refused a subscription (STALE_EPOCH) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster_int.h"

/* One node of an assignment, and our subscription there. */
typedef struct {
    sl__cnode_t *node;
    sl__sub_t *sub;             /* owned by the node's client               */
    uint32_t credit;
    uint32_t prefetch;
    uint64_t member_epoch;
    bool stale;                 /* refused: subscribe again on the next one */
} s_assigned_t;

struct sl__csub {
    char queue[SL_QUEUE_NAME_MAX + 1];
    uint32_t concurrency;
    uint32_t prefetch;          /* consume: shared out like the concurrency */
    sl_chan_t *out;             /* subscribe: the user's channel; else NULL */
    sl_handler_fn fn;
    void *arg;
    int flags;
    uint64_t epoch;             /* of the assignment followed; 0 = none     */
    s_assigned_t *as;
    size_t nas;
    sl_chan_t **dones;          /* unsubscribes from nodes left behind      */
    size_t ndones, capdones;
    sl__csub_t *next;
};

static void s_join(sl__cluster_t *cl, sl__csub_t *s)
{
    Sluice__V1__ConsumerJoin j = SLUICE__V1__CONSUMER_JOIN__INIT;
    j.consumer_id = cl->id;
    j.queue = s->queue;
    j.concurrency = s->concurrency;
    j.epoch = s->epoch;
    Sluice__V1__Envelope env = SLUICE__V1__ENVELOPE__INIT;
    env.body_case = SLUICE__V1__ENVELOPE__BODY_CONSUMER_JOIN;
    env.consumer_join = &j;
    sl__cluster_send(cl, &env);
}

static void s_leave(sl__cluster_t *cl, const char *queue)
{
    Sluice__V1__ConsumerLeave l = SLUICE__V1__CONSUMER_LEAVE__INIT;
    l.consumer_id = cl->id;
    l.queue = (char *)queue;
    Sluice__V1__Envelope env = SLUICE__V1__ENVELOPE__INIT;
    env.body_case = SLUICE__V1__ENVELOPE__BODY_CONSUMER_LEAVE;
    env.consumer_leave = &l;
    sl__cluster_send(cl, &env);
}

void sl__csub_announce(sl__cluster_t *cl)
{
    for (sl__csub_t *s = cl->subs; s; s = s->next)
        s_join(cl, s);
}

static sl__csub_t *s_find(sl__cluster_t *cl, const char *queue)
{
    for (sl__csub_t *s = cl->subs; s; s = s->next)
        if (strcmp(s->queue, queue) == 0)
            return s;
    return NULL;
}

static void s_count(sl__cluster_t *cl)
{
    uint32_t n = 0;
    for (sl__csub_t *s = cl->subs; s; s = s->next)
        n += (uint32_t)s->nas;
    atomic_store(&cl->ctr.assigned, n);
}

/* Stop the subscription on a node; its unsubscribe completes once its
 * deliveries have ended (kept, so that unsubscribing waits for them). */
static void s_let_go(sl__csub_t *s, s_assigned_t *a)
{
    if (!a->sub)
        return;
    int err = SL_OK;
    sl_chan_t *done = sl__client_unsub_start(a->node->client, s->queue, &err);
    a->sub = NULL;
    if (!done)
        return;
    if (s->ndones == s->capdones) {
        size_t cap = s->capdones ? s->capdones * 2 : 8;
        sl_chan_t **d = realloc(s->dones, cap * sizeof *d);
        if (!d) {
            sl_chan_destroy(&done); /* it completes all the same */
            return;
        }
        s->dones = d;
        s->capdones = cap;
    }
    s->dones[s->ndones++] = done;
}

/* Split v over nodes by weight: the part of the node whose weights before it
 * add up to `before` and its own to `w`, out of `total`. Rounding the
 * running sum makes the parts add up to v exactly (each within 1 of its
 * exact share), so 5 handlers over 3 nodes stay 5 (2+2+1), not 3. At
 * least min. */
static uint32_t s_part(uint32_t v, uint64_t before, uint64_t w, uint64_t total, uint32_t min)
{
    uint64_t c = total ? v * (before + w) / total - v * before / total : 0;
    return c > min ? (uint32_t)c : min;
}

/* Follow s's new assignment onto the node n with credit (its share of the
 * concurrency) and its share of the prefetch. */
static void s_follow(sl__cluster_t *cl, sl__csub_t *s, s_assigned_t *a, uint32_t credit,
                     uint32_t prefetch)
{
    sl__cnode_t *n = a->node;
    if (a->sub && !a->stale && a->credit == credit && a->prefetch == prefetch &&
        a->member_epoch == n->member_epoch)
        return;
    a->credit = credit;
    a->prefetch = prefetch;
    a->member_epoch = n->member_epoch;
    a->stale = false;
    if (a->sub) {
        sl__client_sub_update(n->client, a->sub, credit, prefetch, n->member_epoch);
        return;
    }
    sl_client_t *c = sl__cluster_node_client(cl, n);
    if (!c)
        return; /* a bad endpoint: that node's jobs wait for another consumer */
    int err = SL_OK;
    a->sub = sl__client_sub_start(c, s->queue, credit, prefetch, s->out, s->fn, s->arg,
                                  s->flags, n->member_epoch, &err);
}

void sl__csub_on_assignment(sl__cluster_t *cl, const Sluice__V1__Assignment *asg)
{
    sl__cluster_note_interval(cl, asg->interval_ms);
    sl__csub_t *s = asg->queue ? s_find(cl, asg->queue) : NULL;
    /* Never act on an empty assignment (a coordinator in its grace
     * period): keep following the last one. */
    if (!s || asg->n_nodes == 0 || asg->epoch == s->epoch)
        return;
    s_assigned_t *as = calloc(asg->n_nodes, sizeof *as);
    if (!as)
        return; /* the next ConsumerJoin asks again */
    /* Weights: the coordinator's shares, or an even split without them. */
    uint64_t total = 0, before = 0;
    bool shares = false;
    for (size_t i = 0; i < asg->n_nodes; i++)
        shares |= asg->nodes[i]->share > 0;
    for (size_t i = 0; i < asg->n_nodes; i++)
        total += shares ? asg->nodes[i]->share : 1;
    size_t k = 0;
    for (size_t i = 0; i < asg->n_nodes; i++) {
        const Sluice__V1__NodeRef *ref = asg->nodes[i];
        uint64_t w = shares ? ref->share : 1;
        uint64_t b = before;
        before += w;
        if (!ref->node_id || !*ref->node_id)
            continue;
        sl__cnode_t *n = sl__cluster_node(cl, ref->node_id, ref->endpoint, ref->member_epoch);
        if (!n)
            continue;
        as[k].node = n;
        /* the subscription we already have there, if any */
        for (size_t j = 0; j < s->nas; j++)
            if (s->as[j].node == n && s->as[j].sub) {
                as[k] = s->as[j];
                s->as[j].sub = NULL;
            }
        s_follow(cl, s, &as[k], s_part(s->concurrency, b, w, total, 1),
                 s_part(s->prefetch, b, w, total, 0));
        k++;
    }
    for (size_t j = 0; j < s->nas; j++)
        s_let_go(s, &s->as[j]);
    free(s->as);
    s->as = as;
    s->nas = k;
    s->epoch = asg->epoch;
    atomic_fetch_add(&cl->ctr.assignments, 1);
    if (asg->epoch > atomic_load(&cl->ctr.assignment_epoch))
        atomic_store(&cl->ctr.assignment_epoch, asg->epoch);
    s_count(cl);
}

void sl__csub_on_stale(sl__cluster_t *cl, sl__cnode_t *n)
{
    atomic_fetch_add(&cl->ctr.stale_epochs, 1);
    for (sl__csub_t *s = cl->subs; s; s = s->next) {
        bool hit = false;
        for (size_t j = 0; j < s->nas; j++)
            if (s->as[j].node == n) {
                s->as[j].stale = true;
                hit = true;
            }
        if (hit) { /* the node has a new epoch we do not know: ask again */
            s->epoch = 0;
            s_join(cl, s);
        }
    }
}

static void s_reply(sl__ev_call_t *call, void *v)
{
    sl_offer(call->reply, v);
    sl_chan_close(call->reply);
    sl_chan_destroy(&call->reply);
    sl_chan_destroy(&call->out);
    free(call);
}

void sl__csub_on_sub(sl__cluster_t *cl, sl__ev_call_t *call)
{
    if (cl->stopping) {
        s_reply(call, (void *)(intptr_t)SL_ECLOSED);
        return;
    }
    if (s_find(cl, call->queue)) {
        s_reply(call, (void *)(intptr_t)SL_ESTATE);
        return;
    }
    sl__csub_t *s = calloc(1, sizeof *s);
    if (!s) {
        s_reply(call, (void *)(intptr_t)SL_ENOMEM);
        return;
    }
    snprintf(s->queue, sizeof s->queue, "%s", call->queue);
    s->concurrency = call->window;
    s->prefetch = call->prefetch;
    s->out = call->out;
    call->out = NULL;
    s->fn = call->fn;
    s->arg = call->arg;
    s->flags = call->flags;
    s->next = cl->subs;
    cl->subs = s;
    s_join(cl, s);
    s_reply(call, (void *)(intptr_t)SL_OK);
}

/* Stop s: leave the group, stop every node subscription, close the
 * user's channel; returns the promises to wait on (s is freed). */
static sl__unsub_reply_t *s_stop(sl__cluster_t *cl, sl__csub_t *s)
{
    sl__csub_t **pp = &cl->subs;
    while (*pp != s)
        pp = &(*pp)->next;
    *pp = s->next;
    s_leave(cl, s->queue);
    for (size_t j = 0; j < s->nas; j++)
        s_let_go(s, &s->as[j]);
    if (s->out)
        sl_chan_close(s->out);
    sl__unsub_reply_t *rep = calloc(1, sizeof *rep);
    if (rep) {
        rep->dones = s->dones;
        rep->n = s->ndones;
    } else {
        for (size_t i = 0; i < s->ndones; i++)
            sl_chan_destroy(&s->dones[i]);
        free(s->dones);
    }
    sl_chan_destroy(&s->out);
    free(s->as);
    free(s);
    s_count(cl);
    return rep;
}

void sl__csub_on_unsub(sl__cluster_t *cl, sl__ev_call_t *call)
{
    sl__csub_t *s = s_find(cl, call->queue);
    if (!s) {
        sl__unsub_reply_t *rep = calloc(1, sizeof *rep);
        if (rep)
            rep->status = SL_ENOTFOUND;
        s_reply(call, rep); /* NULL: the caller takes it as SL_ENOMEM */
        return;
    }
    sl__unsub_reply_t *rep = s_stop(cl, s);
    s_reply(call, rep);
}

void sl__csub_stop(sl__cluster_t *cl)
{
    while (cl->subs) {
        sl__unsub_reply_t *rep = s_stop(cl, cl->subs);
        if (!rep)
            continue;
        /* destroy waits for the handlers through the node clients */
        for (size_t i = 0; i < rep->n; i++)
            sl_chan_destroy(&rep->dones[i]);
        free(rep->dones);
        free(rep);
    }
}

void sl__csub_release(sl__cluster_t *cl)
{
    while (cl->subs) { /* only if the thread never saw STOP */
        sl__csub_t *s = cl->subs;
        cl->subs = s->next;
        for (size_t i = 0; i < s->ndones; i++)
            sl_chan_destroy(&s->dones[i]);
        free(s->dones);
        if (s->out)
            sl_chan_close(s->out);
        sl_chan_destroy(&s->out);
        free(s->as);
        free(s);
    }
}
