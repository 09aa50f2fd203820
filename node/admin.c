/* admin.c -- Admin requests: STATS (one queue, or every queue in pages
 * sorted by name), PAUSE, RESUME, DRAIN, POLICY, and the dead-job ops
 * (deadletter.c). Runs on the engine; every reply
 * is built and freed within the call, and never exceeds max-frame. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node_int.h"
#include "sluice/name.h"

#define SL__POLICY_TEXT 256 /* room for every key of a policy, as text */

static void s_fill(sl__queue_t *q, Sluice__V1__QueueStats *st, char *policy)
{
    sl__queue_stats(q, st, policy, SL__POLICY_TEXT);
    sl__rates_get(q, q->node->o.heartbeat_ms, &st->publish_rate, &st->ack_rate);
}

/* The page: queues named after `after`, the k smallest names, kept in a
 * max-heap of at most cap entries while the map is walked (O(n log k)). */
typedef struct {
    const char *after;
    sl__queue_t **heap;
    size_t k, cap;
    size_t total;               /* queues named after `after`            */
} sl__page_t;

static void s_sift_down(sl__queue_t **h, size_t k, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < k && strcmp(h[l]->name, h[m]->name) > 0)
            m = l;
        if (r < k && strcmp(h[r]->name, h[m]->name) > 0)
            m = r;
        if (m == i)
            return;
        sl__queue_t *x = h[m];
        h[m] = h[i];
        h[i] = x;
        i = m;
    }
}

static void s_page_one(const void *key, size_t len, void *val, void *arg)
{
    (void)key;
    (void)len;
    sl__page_t *pg = arg;
    sl__queue_t *q = val;
    if (pg->after && strcmp(q->name, pg->after) <= 0)
        return;
    pg->total++;
    if (pg->k < pg->cap) {
        size_t i = pg->k++;
        pg->heap[i] = q;
        while (i > 0 && strcmp(pg->heap[(i - 1) / 2]->name, pg->heap[i]->name) < 0) {
            sl__queue_t *x = pg->heap[(i - 1) / 2];
            pg->heap[(i - 1) / 2] = pg->heap[i];
            pg->heap[i] = x;
            i = (i - 1) / 2;
        }
    } else if (strcmp(q->name, pg->heap[0]->name) < 0) {
        pg->heap[0] = q;
        s_sift_down(pg->heap, pg->k, 0);
    }
}

static int s_by_name(const void *a, const void *b)
{
    return strcmp((*(sl__queue_t *const *)a)->name, (*(sl__queue_t *const *)b)->name);
}

static void s_reply(sl__node_t *n, sl__peer_t *p, uint64_t corr, Sluice__V1__AdminReply *r)
{
    Sluice__V1__Envelope env = SLUICE__V1__ENVELOPE__INIT;
    env.corr = corr;
    env.body_case = SLUICE__V1__ENVELOPE__BODY_ADMIN_REPLY;
    env.admin_reply = r;
    sl__send(n, p->rid, p->rid_len, &env);
}

void sl__admin(sl__node_t *n, sl__peer_t *p, uint64_t corr, Sluice__V1__Admin *a)
{
    Sluice__V1__AdminReply r = SLUICE__V1__ADMIN_REPLY__INIT;
    Sluice__V1__Error e = SLUICE__V1__ERROR__INIT;
    r.node_id = n->node_id;
    r.epoch = n->epoch;
    r.peers = sl__map_size(n->peers);
    r.bad_messages = n->bad_messages;
    r.queues_total = sl__map_size(n->queues);
    r.queues_forgotten = n->queues_forgotten;
    r.peers_cut = n->peers_cut;
    r.replies_dropped =
        n->replies_dropped + atomic_load_explicit(&n->cut_discarded, memory_order_relaxed);
    r.oom = n->oom + atomic_load_explicit(&n->io_oom, memory_order_relaxed);
    sl_store_status_t ss = {.connected = true};
    if (n->store)
        sl_store_status(n->store, &ss);
    r.store = n->store ? "redis" : "memory";
    r.store_up = ss.connected;
    r.store_down_since_ms = ss.down_since_ms;
    r.retries_stored = n->store_retries_put;
    r.retries_taken = n->store_retries_taken;
    r.store_errors = n->store_errors;
    const char *name = a->queue ? a->queue : "";
    bool one = name[0] != '\0';
    if (a->op > SLUICE__V1__ADMIN__OP__DEAD_PURGE || a->op == SLUICE__V1__ADMIN__OP__CLUSTER) {
        e.code = SLUICE__V1__ERROR__CODE__BAD_MESSAGE;
        e.text = "operation not served by a node";
        r.error = &e;
        s_reply(n, p, corr, &r);
        return;
    }
    if (!one && a->op != SLUICE__V1__ADMIN__OP__STATS) {
        e.code = SLUICE__V1__ERROR__CODE__BAD_MESSAGE;
        e.text = "queue required";
        r.error = &e;
        s_reply(n, p, corr, &r);
        return;
    }
    if (one) {
        Sluice__V1__QueueStats st;
        Sluice__V1__QueueStats *ptr = &st;
        char policy[SL__POLICY_TEXT], why[160];
        sl__queue_t *q = NULL;
        if (!sl_queue_name_ok_str(name)) { /* as every message naming a queue */
            sl__send_error(n, p->rid, p->rid_len, corr, SLUICE__V1__ERROR__CODE__BAD_QUEUE,
                           "invalid queue name '%.128s': " SL_QUEUE_NAME_RULE, name);
            return;
        }
        int err = SL_OK;
        bool policy_op = a->op == SLUICE__V1__ADMIN__OP__POLICY;
        if (policy_op && !sl__map_get(n->policies, name, strlen(name)) &&
            sl__map_size(n->policies) >= n->o.max_queues) {
            e.code = SLUICE__V1__ERROR__CODE__LIMIT;
            e.text = "too many queue policies (max-queues)";
            r.error = &e;
        } else if (policy_op && sl__queue_set_policy(n, name, a->policy, why, sizeof why) != 0) {
            e.code = SLUICE__V1__ERROR__CODE__BAD_MESSAGE;
            e.text = why;
            r.error = &e;
        } else if (!(q = sl__queue_get(n, name, policy_op, &err))) {
            /* POLICY makes the queue, so that its stats show the policy. */
            e.code = err == SL_ELIMIT ? SLUICE__V1__ERROR__CODE__LIMIT
                                      : SLUICE__V1__ERROR__CODE__BAD_QUEUE;
            e.text = err == SL_ELIMIT ? "too many queues (max-queues)" : "no such queue";
            r.error = &e;
        } else {
            if (a->op == SLUICE__V1__ADMIN__OP__PAUSE) {
                q->paused = true;
            } else if (a->op == SLUICE__V1__ADMIN__OP__RESUME) {
                q->paused = false;
                q->draining = false;
            } else if (a->op == SLUICE__V1__ADMIN__OP__DRAIN) {
                q->draining = true;
            }
            sl__dead_scratch_t scratch = {0};
            if (a->op >= SLUICE__V1__ADMIN__OP__DEAD_LIST)
                sl__dead_admin(n, q, a, &r, &e, &scratch);
            if (a->op != SLUICE__V1__ADMIN__OP__STATS) {
                sl__queue_wake(q);           /* resumed or requeued: deliveries may go */
                sl__queue_idle_check(n, q);  /* a flag set or cleared, jobs gone */
            }
            s_fill(q, &st, policy);
            r.n_queues = 1;
            r.queues = &ptr;
            s_reply(n, p, corr, &r);
            sl__dead_release(&scratch);
            return;
        }
        s_reply(n, p, corr, &r);
        return;
    }
    /* Every queue, a page at a time. */
    /* limit 0: as many as fit in max-frame (no entry is under 16 bytes). */
    size_t cap = a->limit ? a->limit : n->o.max_frame / 16;
    if (cap > r.queues_total)
        cap = r.queues_total;
    sl__page_t pg = {a->after && a->after[0] ? a->after : NULL, NULL, 0, cap, 0};
    Sluice__V1__QueueStats *stats = calloc(cap + 1, sizeof *stats);
    Sluice__V1__QueueStats **ptrs = calloc(cap + 1, sizeof *ptrs);
    char *policies = malloc((cap + 1) * SL__POLICY_TEXT);
    pg.heap = calloc(cap + 1, sizeof *pg.heap);
    if (!stats || !ptrs || !pg.heap || !policies) {
        n->oom++;
        e.code = SLUICE__V1__ERROR__CODE__LIMIT;
        e.text = "out of memory: ask for a smaller page (limit)";
        r.error = &e;
        s_reply(n, p, corr, &r);
        goto done;
    }
    if (cap)
        sl__map_each(n->queues, s_page_one, &pg);
    qsort(pg.heap, pg.k, sizeof *pg.heap, s_by_name);
    /* As many as fit in max-frame, with room for the reply's own fields. */
    size_t budget = n->o.max_frame - 1024, used = 0, k = 0;
    for (; k < pg.k; k++) {
        s_fill(pg.heap[k], &stats[k], policies + k * SL__POLICY_TEXT);
        size_t sz = sluice__v1__queue_stats__get_packed_size(&stats[k]) + 8;
        if (k > 0 && used + sz > budget)
            break;
        used += sz;
        ptrs[k] = &stats[k];
    }
    r.n_queues = k;
    r.queues = ptrs;
    if (k && k < pg.total) /* more after this page */
        r.next = pg.heap[k - 1]->name;
    s_reply(n, p, corr, &r);
done:
    free(stats);
    free(ptrs);
    free(policies);
    free(pg.heap);
}
