/* deadletter.c -- Admin on a queue's dead jobs (the node's dead list):
 *
 *   DEAD_LIST     oldest first, a page at a time (Admin.after: the last
 *                 id of the page before, hex; AdminReply.next likewise)
 *   DEAD_SHOW     one job by id
 *   DEAD_REQUEUE  by id, all, or those dead longer than older_than_ms:
 *                 READY again with a fresh attempt count, same id, its
 *                 failures and last error kept (sl__job_move REQUEUE)
 *   DEAD_PURGE    the same selection, dropped
 *
 * Runs on the engine; replies borrow the jobs' bytes and strings, which
 * stay put until the reply is packed within the same call. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node_int.h"
#include "sluice/id.h"

static void s_record(sl__node_t *n, const sl__job_t *j, Sluice__V1__JobRecord *r)
{
    sluice__v1__job_record__init(r);
    r->id.data = (uint8_t *)j->id;
    r->id.len = 16;
    r->job.data = (uint8_t *)j->raw;
    r->job.len = j->len;
    r->attempt = j->attempt;
    r->failures = j->failures;
    r->redeliveries = j->redeliveries;
    r->last_error = j->last_error ? j->last_error : "";
    r->reason = j->dead_reason ? j->dead_reason : "";
    r->node_id = n->node_id;
    r->first_ms = j->created_ms;
    r->last_ms = j->dead_ms;
}

/* The dead job of q named by a 16-byte id, or NULL. */
static sl__job_t *s_dead(sl__node_t *n, sl__queue_t *q, const ProtobufCBinaryData *id)
{
    if (id->len != 16)
        return NULL;
    sl__job_t *j = sl__job_get(n, id->data);
    return j && j->q == q && j->state == SL__J_DEAD ? j : NULL;
}

static void s_refuse(Sluice__V1__AdminReply *r, Sluice__V1__Error *e, int code, const char *text)
{
    e->code = code;
    e->text = (char *)text;
    r->error = e;
}

void sl__dead_admin(sl__node_t *n, sl__queue_t *q, const Sluice__V1__Admin *a,
                    Sluice__V1__AdminReply *r, Sluice__V1__Error *e, sl__dead_scratch_t *scratch)
{
    memset(scratch, 0, sizeof *scratch);
    switch (a->op) {
    case SLUICE__V1__ADMIN__OP__DEAD_LIST: {
        sl__job_t *j = q->dead_head;
        if (a->after && a->after[0]) {
            uint8_t id[16];
            ProtobufCBinaryData b = {16, id};
            sl__job_t *last = sl_id_from_hex(a->after, id) == SL_OK ? s_dead(n, q, &b) : NULL;
            if (!last) {
                s_refuse(r, e, SLUICE__V1__ERROR__CODE__BAD_MESSAGE,
                         "no dead job with the id in after (requeued or purged meanwhile): "
                         "list again from the start");
                return;
            }
            j = last->lnext;
        }
        size_t cap = a->limit ? a->limit : q->dead;
        if (cap > q->dead)
            cap = q->dead;
        Sluice__V1__JobRecord *recs = calloc(cap + 1, sizeof *recs);
        Sluice__V1__JobRecord **ptrs = calloc(cap + 1, sizeof *ptrs);
        scratch->cursor = malloc(SL_ID_HEX_LEN + 1);
        scratch->recs = recs;
        scratch->ptrs = ptrs;
        if (!recs || !ptrs || !scratch->cursor) {
            n->oom++;
            s_refuse(r, e, SLUICE__V1__ERROR__CODE__LIMIT, "out of memory: ask for fewer (limit)");
            return;
        }
        /* As many as fit in max-frame, with room for the reply's own. */
        size_t budget = n->o.max_frame - 1024, used = 0, k = 0;
        for (; j && k < cap; j = j->lnext, k++) {
            s_record(n, j, &recs[k]);
            size_t sz = sluice__v1__job_record__get_packed_size(&recs[k]) + 8;
            if (k > 0 && used + sz > budget)
                break;
            used += sz;
            ptrs[k] = &recs[k];
        }
        r->n_dead = k;
        r->dead = ptrs;
        if (k && j) { /* more after this page */
            sl_id_to_hex(recs[k - 1].id.data, scratch->cursor);
            r->next = scratch->cursor;
        }
        return;
    }
    case SLUICE__V1__ADMIN__OP__DEAD_SHOW: {
        sl__job_t *j = s_dead(n, q, &a->id);
        Sluice__V1__JobRecord *rec = calloc(1, sizeof *rec);
        Sluice__V1__JobRecord **ptr = calloc(1, sizeof *ptr);
        scratch->recs = rec;
        scratch->ptrs = ptr;
        if (!rec || !ptr) {
            n->oom++;
            s_refuse(r, e, SLUICE__V1__ERROR__CODE__LIMIT, "out of memory");
            return;
        }
        if (!j) {
            s_refuse(r, e, SLUICE__V1__ERROR__CODE__BAD_ID,
                     a->id.len == 16 ? "no such dead job" : "job id must be 16 bytes");
            return;
        }
        s_record(n, j, rec);
        *ptr = rec;
        r->n_dead = 1;
        r->dead = ptr;
        return;
    }
    case SLUICE__V1__ADMIN__OP__DEAD_REQUEUE:
    case SLUICE__V1__ADMIN__OP__DEAD_PURGE: {
        bool requeue = a->op == SLUICE__V1__ADMIN__OP__DEAD_REQUEUE;
        if (a->id.len) {
            sl__job_t *j = s_dead(n, q, &a->id);
            if (!j) {
                s_refuse(r, e, SLUICE__V1__ERROR__CODE__BAD_ID,
                         a->id.len == 16 ? "no such dead job" : "job id must be 16 bytes");
                return;
            }
            if (requeue)
                sl__job_move(n, j, SL__J_READY, SL__WHY_REQUEUE, NULL);
            else
                sl__job_move(n, j, 0, SL__WHY_EVICT, NULL);
            r->affected = 1;
            return;
        }
        if (!a->all && a->older_than_ms <= 0) {
            s_refuse(r, e, SLUICE__V1__ERROR__CODE__BAD_MESSAGE,
                     "say which: id, all, or older_than_ms");
            return;
        }
        /* The dead list is in the order jobs died: the old ones first. */
        int64_t before = a->all ? INT64_MAX : sl_wall_ms() - a->older_than_ms;
        while (q->dead_head && q->dead_head->dead_ms <= before) {
            sl__job_t *j = q->dead_head;
            if (requeue)
                sl__job_move(n, j, SL__J_READY, SL__WHY_REQUEUE, NULL);
            else
                sl__job_move(n, j, 0, SL__WHY_EVICT, NULL);
            r->affected++;
        }
        return;
    }
    default:
        s_refuse(r, e, SLUICE__V1__ERROR__CODE__BAD_MESSAGE, "not a dead-job operation");
        return;
    }
}

void sl__dead_release(sl__dead_scratch_t *scratch)
{
    free(scratch->recs);
    free(scratch->ptrs);
    free(scratch->cursor);
    memset(scratch, 0, sizeof *scratch);
}
