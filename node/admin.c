/* admin.c -- Admin requests: STATS, PAUSE, RESUME, DRAIN. Runs on the
 * engine; every reply is built and freed within the call. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node_int.h"
#include "sluice/sched.h"

/* --- admin --------------------------------------------------------------- */

typedef struct {
    Sluice__V1__QueueStats *stats;
    Sluice__V1__QueueStats **ptrs;
    size_t n;
} sl__stats_acc_t;

static void s_stats_one(const void *k, size_t len, void *val, void *arg)
{
    (void)k;
    (void)len;
    sl__stats_acc_t *a = arg;
    sl__queue_stats(val, &a->stats[a->n]);
    sl__rates_get(val, ((sl__queue_t *)val)->node->o.heartbeat_ms, &a->stats[a->n].publish_rate,
                  &a->stats[a->n].ack_rate);
    a->ptrs[a->n] = &a->stats[a->n];
    a->n++;
}

void sl__admin(sl__node_t *n, sl__peer_t *p, uint64_t corr, Sluice__V1__Admin *a)
{
    Sluice__V1__AdminReply r = SLUICE__V1__ADMIN_REPLY__INIT;
    Sluice__V1__Error e = SLUICE__V1__ERROR__INIT;
    r.node_id = n->node_id;
    r.epoch = n->epoch;
    r.peers = sl__map_size(n->peers);
    r.bad_messages = n->bad_messages;
    sl__queue_t *q = NULL;
    bool one = a->queue && a->queue[0];
    if (one)
        q = sl__queue_get(n, a->queue, false, NULL);
    if (a->op != SLUICE__V1__ADMIN__OP__STATS) {
        if (!q) {
            e.code = one ? SLUICE__V1__ERROR__CODE__BAD_QUEUE : SLUICE__V1__ERROR__CODE__BAD_MESSAGE;
            e.text = one ? "no such queue" : "queue required";
            r.error = &e;
        } else if (a->op == SLUICE__V1__ADMIN__OP__PAUSE) {
            q->paused = true;
        } else if (a->op == SLUICE__V1__ADMIN__OP__RESUME) {
            q->paused = false;
            q->draining = false;
        } else if (a->op == SLUICE__V1__ADMIN__OP__DRAIN) {
            q->draining = true;
        }
        if (q)
            sl__queue_wake(q);
    }
    size_t cap = one ? 1 : sl__map_size(n->queues);
    sl__stats_acc_t acc = {calloc(cap + 1, sizeof *acc.stats), calloc(cap + 1, sizeof *acc.ptrs), 0};
    if (!acc.stats || !acc.ptrs)
        abort();
    if (one && q)
        s_stats_one(NULL, 0, q, &acc);
    else if (!one)
        sl__map_each(n->queues, s_stats_one, &acc);
    if (one && !q && a->op == SLUICE__V1__ADMIN__OP__STATS) {
        e.code = SLUICE__V1__ERROR__CODE__BAD_QUEUE;
        e.text = "no such queue";
        r.error = &e;
    }
    r.n_queues = acc.n;
    r.queues = acc.ptrs;
    Sluice__V1__Envelope env = SLUICE__V1__ENVELOPE__INIT;
    env.corr = corr;
    env.body_case = SLUICE__V1__ENVELOPE__BODY_ADMIN_REPLY;
    env.admin_reply = &r;
    sl__send(n, p->rid, p->rid_len, &env);
    free(acc.stats);
    free(acc.ptrs);
}

