/* retain.c -- the node's side of the store (sluice/store.h): with a store
 * (`--redis URL`), a job that fails with attempts left is scheduled in the
 * store, so its retry outlives this node, and any node serving the queue
 * takes it back when it is due.
 *
 * On a retryable Fail (deliver.c):
 *   1. the job moves to RETRY here, its backoff timer armed, as without a
 *      store (sl__retain_retry marks it `storing`);
 *   2. RETRY_PUT goes to the store with the job's bytes, attempt and
 *      last error;
 *   3. on success the local copy is forgotten (the store has it); on any
 *      error it stays and runs here when due: nothing confirmed is lost
 *      while the store is away. A timer that comes due while the put is
 *      in flight waits for its answer (never both copies).
 * Every SL__TAKE_MS the engine asks the store, for a slice of the queues
 * that have consumers here, for retries that are due (RETRY_TAKE, atomic
 * in the store: two nodes never take the same job), and places them READY
 * as they were (attempt, last error kept).
 *
 * Completions arrive on the engine as SL__IN_STORE messages; the store's
 * thread hands them over (s_done). All else runs on the engine. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node_int.h"

#define SL__TAKE_MS 100  /* how often a slice of queues is asked */
#define SL__TAKE_MAX 64  /* retries taken per queue per ask */

/* On the store's thread: the request back to the engine. */
static void s_done(sl_store_req_t *req, void *arg)
{
    sl__node_t *n = arg;
    sl__in_t *m = sl__in_new(0, 0);
    if (!m) {
        /* Out of memory: a taken retry is lost with it; counted. */
        atomic_fetch_add_explicit(&n->io_oom, 1, memory_order_relaxed);
        sl_store_req_destroy(&req);
        return;
    }
    m->kind = SL__IN_STORE;
    m->ptr = req;
    /* While the node runs, wait for room (the engine drains), a second at
     * a time so that a node that stops (its engine gone, nobody draining)
     * is noticed; once it has stopped, hand over only what fits. A taken
     * retry dropped here is lost with the stopping node, as are its other
     * in-memory jobs. */
    int rc;
    do
        rc = atomic_load(&n->stopping) < 2 ? sl_put_until(n->inbound, m, sl_now() + 1000000000)
                                           : sl_offer(n->inbound, m);
    while (rc == SL_ETIMEDOUT);
    if (rc != SL_OK)
        sl__in_free(m);
}

int sl__retain_start(sl__node_t *n)
{
    if (!n->o.redis || !n->o.redis[0])
        return SL_OK;
    sl_store_opts_t so = {.url = n->o.redis};
    int err = SL_OK;
    n->store = sl_store_new(&so, &err);
    return n->store ? SL_OK : err;
}

void sl__retain_stop(sl__node_t *n)
{
    sl_store_destroy(&n->store);
}

void sl__retain_retry(sl__node_t *n, sl__job_t *j, int64_t delay_ms)
{
    if (!n->store)
        return;
    sl_store_req_t *req = sl_store_req_new(SL_STORE_RETRY_PUT, j->q->name, s_done, n);
    uint8_t *bytes = req ? malloc(j->len ? j->len : 1) : NULL;
    char *err = req && j->last_error ? strdup(j->last_error) : NULL;
    char *node_id = req ? strdup(n->node_id) : NULL;
    if (!req || !bytes || !node_id || (j->last_error && !err)) {
        free(bytes);
        free(err);
        free(node_id);
        sl_store_req_destroy(&req);
        n->store_errors++;
        return; /* out of memory: the retry stays here */
    }
    memcpy(bytes, j->raw, j->len);
    memcpy(req->rec.id, j->id, 16);
    req->rec.job = bytes;
    req->rec.job_len = j->len;
    req->rec.attempt = j->attempt;
    req->rec.failures = j->failures;
    req->rec.redeliveries = j->redeliveries;
    req->rec.last_error = err;
    req->rec.node_id = node_id;
    req->rec.first_ms = j->created_ms;
    req->rec.last_ms = sl_wall_ms();
    req->rec.due_ms = req->rec.last_ms + delay_ms;
    if (sl_store_submit(n->store, &req) != SL_OK) {
        sl_store_req_destroy(&req);
        n->store_errors++;
        return;
    }
    j->storing = true;
}

bool sl__retain_wait(sl__node_t *n, sl__job_t *j)
{
    if (!j->storing)
        return false;
    /* Its put is in flight: look again shortly. */
    if (sl__timer_arm(n, j, SL__T_RETRY, sl__mono_ms() + 10) != SL_OK)
        return false; /* no timer: run it here now rather than never */
    return true;
}

/* A retry taken from the store: placed READY as it was. */
static void s_adopt(sl__node_t *n, const char *queue, sl_store_rec_t *rec)
{
    sl__pb_job_t v;
    if (sl__pb_job(rec->job, rec->job_len, &v) != 0) {
        n->store_errors++; /* not a job: nothing to run */
        return;
    }
    sl__job_t *j = sl__job_new(rec->job, rec->job_len, &v);
    if (!j) {
        n->oom++;
        return;
    }
    j->attempt = rec->attempt;
    j->failures = rec->failures;
    j->redeliveries = rec->redeliveries;
    if (rec->last_error) {
        j->last_error = rec->last_error;
        rec->last_error = NULL;
    }
    if (sl__queue_adopt(n, queue, j) == SL_OK)
        n->store_retries_taken++;
}

void sl__retain_done(sl__node_t *n, sl_store_req_t *req)
{
    switch (req->op) {
    case SL_STORE_RETRY_PUT: {
        sl__job_t *j = sl__job_get(n, req->rec.id);
        if (j)
            j->storing = false;
        if (req->rc != SL_OK) {
            n->store_errors++; /* it runs here when due */
            break;
        }
        n->store_retries_put++;
        if (j && j->state == SL__J_RETRY)
            sl__job_move(n, j, 0, SL__WHY_STORED, NULL); /* the store has it now */
        break;
    }
    case SL_STORE_RETRY_TAKE:
        if (req->rc != SL_OK)
            n->store_errors++;
        for (size_t i = 0; i < req->n_recs; i++)
            s_adopt(n, req->queue, &req->recs[i]);
        break;
    default:
        break;
    }
}

static void s_take_one(const void *k, size_t len, void *val, void *arg)
{
    (void)k;
    (void)len;
    sl__node_t *n = arg;
    sl__queue_t *q = val;
    if (!q->nconsumers || q->paused)
        return;
    sl_store_req_t *req = sl_store_req_new(SL_STORE_RETRY_TAKE, q->name, s_done, n);
    if (!req)
        return;
    req->now_ms = sl_wall_ms();
    req->max = SL__TAKE_MAX;
    if (sl_store_submit(n->store, &req) != SL_OK)
        sl_store_req_destroy(&req);
}

void sl__retain_tick(sl__node_t *n, int64_t now)
{
    if (!n->store || n->stopping || now < n->next_take)
        return;
    n->next_take = now + SL__TAKE_MS;
    /* A sixteenth of the queue table per tick: every queue is asked about
     * every 1.6 s, and a node with many queues never floods the store. */
    size_t slots = sl__map_slots(n->queues) / 16 + 1;
    if (slots < 1024)
        slots = 1024; /* a small table is asked about whole, every tick */
    sl__map_each_from(n->queues, &n->take_cursor, slots, s_take_one, n);
}
