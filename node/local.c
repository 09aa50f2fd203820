/* local.c -- in-process handlers (sl_node_handle): a local peer whose
 * consumers hand each job, as a private copy, to handler coroutines or
 * threads, and whose verdicts come back to the engine as messages. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node_int.h"
#include "sluice/sched.h"

/* --- in-process handlers ---------------------------------------------------- */

/* The verdict goes back in the message made with the delivery (so it
 * cannot fail for want of memory here); the message is the engine's now. */
static void s_local_result(sl__node_t *n, sl__reg_t *r, sl__local_job_t *lj, int verdict)
{
    sl__in_t *m = lj->result;
    lj->result = NULL;
    m->kind = verdict == SL_NODE_ACK     ? SL__IN_LOCAL_ACK
              : verdict == SL_NODE_RETRY ? SL__IN_LOCAL_RETRY
                                         : SL__IN_LOCAL_FAIL;
    memcpy(m->job_id, lj->id, 16);
    m->lease_id = lj->lease_id;
    m->ptr = r;
    if (sl_put(n->inbound, m) != SL_OK)
        free(m);
}

static void *s_local_worker(void *arg)
{
    sl__reg_t *r = arg;
    void *v;
    while (sl_take(r->jobs, &v) == SL_OK) {
        sl__local_job_t *lj = v;
        int verdict = r->fn(&lj->view, r->arg);
        if (atomic_load(&r->node->stopping) < 2) /* engine still listening */
            s_local_result(r->node, r, lj, verdict);
        free(lj->result);
        free(lj);
    }
    atomic_fetch_sub(&r->live, 1);
    return NULL;
}

void sl__local_register(sl__node_t *n, sl__reg_t *r)
{
    int err = SL_OK;
    sl__queue_t *q = sl__queue_get(n, r->queue, true, &err);
    if (q) {
        sl__consumer_t *c = sl__consumer_find(n, n->local_peer, q);
        if (c) {
            err = SL_ESTATE; /* one in-process handler per queue */
        } else if (!(c = sl__consumer_new(n, n->local_peer, q))) {
            err = SL_ENOMEM;
            sl__queue_idle_check(n, q);
        } else {
            c->local = sl_chan_ref(r->jobs);
            c->credit = (uint32_t)r->concurrency;
            for (int i = 0; i < r->concurrency && err == SL_OK; i++) {
                atomic_fetch_add(&r->live, 1);
                bool ok;
                if (r->flags & SL_NODE_BLOCKING) {
                    sl_chan_t *res = sl_thread(s_local_worker, r);
                    ok = res != NULL;
                    sl_chan_destroy(&res); /* the result is not needed */
                } else {
                    ok = sl_go_ex(s_local_worker, r, SL_GO_SPREAD, 0, &err) != NULL;
                }
                if (!ok)
                    atomic_fetch_sub(&r->live, 1);
                if (!ok && err == SL_OK)
                    err = SL_ENOMEM;
            }
            sl__queue_wake(q);
        }
    }
    sl_offer(r->done, (void *)(intptr_t)err);
}

void sl__local_settle(sl__node_t *n, sl__in_t *m)
{
    /* The handler slot comes back even when the verdict is late (the
     * lease expired and the job went elsewhere): it is free again. */
    sl__reg_t *r = m->ptr;
    sl__queue_t *q = sl__queue_get(n, r->queue, false, NULL);
    sl__consumer_t *c = q ? sl__consumer_find(n, n->local_peer, q) : NULL;
    Sluice__V1__Lease l = SLUICE__V1__LEASE__INIT;
    l.job_id.data = m->job_id;
    l.job_id.len = 16;
    l.lease_id = m->lease_id;
    l.epoch = n->epoch;
    Sluice__V1__Error__Code code;
    if (m->kind == SL__IN_LOCAL_ACK)
        sl__queue_ack(n, &l, &code);
    else
        sl__queue_fail(n, &l, m->kind == SL__IN_LOCAL_RETRY, "handler failed", &code);
    if (c && c->local) { /* local consumers get their credit back by themselves */
        c->credit++;
        sl__queue_wake(c->q);
    }
}

