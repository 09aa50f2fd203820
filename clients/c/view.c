/* view.c -- the cluster as the coordinator sees it (Admin{CLUSTER}): the
 * ClusterView of the wire copied into sl_cluster_view_t, and
 * sl_client_cluster, which asks for it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client_int.h"

static void s_copy(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%s", src ? src : "");
}

static void s_ref_from_pb(sl_node_ref_t *o, const Sluice__V1__NodeRef *pb)
{
    s_copy(o->node_id, sizeof o->node_id, pb->node_id);
    s_copy(o->endpoint, sizeof o->endpoint, pb->endpoint);
    o->member_epoch = pb->member_epoch;
    o->share = pb->share;
}

static int s_node_from_pb(sl_cluster_node_t *o, const Sluice__V1__ClusterNode *pb)
{
    o->alive = pb->alive;
    o->last_seen_ms = pb->last_seen_ms;
    const Sluice__V1__NodeStatus *st = pb->status;
    if (!st)
        return SL_OK;
    s_copy(o->node_id, sizeof o->node_id, st->node_id);
    s_copy(o->endpoint, sizeof o->endpoint, st->endpoint);
    o->fenced = st->fenced;
    o->member_epoch = st->member_epoch;
    o->incarnation = st->incarnation;
    o->capacity = st->capacity;
    o->interval_ms = st->interval_ms;
    if (st->n_queues == 0)
        return SL_OK;
    o->queues = calloc(st->n_queues, sizeof *o->queues);
    if (!o->queues)
        return SL_ENOMEM;
    o->n_queues = st->n_queues;
    for (size_t i = 0; i < st->n_queues; i++) {
        const Sluice__V1__QueueLoad *q = st->queues[i];
        sl_queue_load_t *l = &o->queues[i];
        s_copy(l->queue, sizeof l->queue, q->queue);
        l->depth = q->depth;
        l->delayed = q->delayed;
        l->in_flight = q->in_flight;
        l->consumers = q->consumers;
        l->publish_rate = q->publish_rate;
        l->ack_rate = q->ack_rate;
    }
    return SL_OK;
}

static int s_consumer_from_pb(sl_cluster_consumer_t *o, const Sluice__V1__ClusterConsumer *pb)
{
    s_copy(o->consumer_id, sizeof o->consumer_id, pb->consumer_id);
    s_copy(o->queue, sizeof o->queue, pb->queue);
    o->concurrency = pb->concurrency;
    o->epoch = pb->epoch;
    if (pb->n_nodes == 0)
        return SL_OK;
    o->nodes = calloc(pb->n_nodes, sizeof *o->nodes);
    if (!o->nodes)
        return SL_ENOMEM;
    o->n_nodes = pb->n_nodes;
    for (size_t i = 0; i < pb->n_nodes; i++)
        s_ref_from_pb(&o->nodes[i], pb->nodes[i]);
    return SL_OK;
}

void sl__cluster_view_from_pb(sl_cluster_view_t *out, const Sluice__V1__ClusterView *pb,
                              int *status)
{
    memset(out, 0, sizeof *out);
    s_copy(out->coordinator_id, sizeof out->coordinator_id, pb->coordinator_id);
    out->epoch = pb->epoch;
    int rc = SL_OK;
    if (pb->n_nodes > 0) {
        out->nodes = calloc(pb->n_nodes, sizeof *out->nodes);
        if (out->nodes)
            out->n_nodes = pb->n_nodes;
        else
            rc = SL_ENOMEM;
    }
    for (size_t i = 0; rc == SL_OK && i < out->n_nodes; i++)
        rc = s_node_from_pb(&out->nodes[i], pb->nodes[i]);
    if (rc == SL_OK && pb->n_consumers > 0) {
        out->consumers = calloc(pb->n_consumers, sizeof *out->consumers);
        if (out->consumers)
            out->n_consumers = pb->n_consumers;
        else
            rc = SL_ENOMEM;
    }
    for (size_t i = 0; rc == SL_OK && i < out->n_consumers; i++)
        rc = s_consumer_from_pb(&out->consumers[i], pb->consumers[i]);
    if (rc != SL_OK) {
        sl_cluster_view_release(out);
        *status = rc;
    }
}

void sl_cluster_view_release(sl_cluster_view_t *view)
{
    if (!view)
        return;
    for (size_t i = 0; i < view->n_nodes; i++)
        free(view->nodes[i].queues);
    for (size_t i = 0; i < view->n_consumers; i++)
        free(view->consumers[i].nodes);
    free(view->nodes);
    free(view->consumers);
    memset(view, 0, sizeof *view);
}

int sl_client_cluster(sl_client_t *self, sl_cluster_view_t *view, int64_t deadline)
{
    if (view)
        memset(view, 0, sizeof *view);
    if (!self || !view)
        return SL_EINVAL;
    sl_client_t *c = self->cluster ? sl__cluster_coordinator(self) : self;
    sl_admin_reply_t rep;
    int rc = sl__client_admin(c, SL__ADMIN_CLUSTER, NULL, NULL, &rep, view, deadline);
    sl_admin_reply_release(&rep);
    if (rc != SL_OK)
        sl_cluster_view_release(view);
    return rc;
}
