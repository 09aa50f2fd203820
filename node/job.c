/* job.c -- a job as the node keeps it: the bytes it was published in and
 * the fields the node reads from them, in one allocation (node_int.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node_int.h"

sl__job_t *sl__job_new(const uint8_t *raw, size_t len, const sl__pb_job_t *v)
{
    size_t qcopy = v->queue_len <= 128 ? v->queue_len + 1 : 0;
    sl__job_t *j = malloc(sizeof *j + len + qcopy);
    if (!j)
        return NULL;
    memset(j, 0, sizeof *j);
    memcpy(j->raw, raw, len);
    j->len = len;
    j->field0 = v->field0;
    j->id_len = (uint32_t)v->id_len;
    if (v->id)
        j->idp = j->raw + (v->id - raw);
    if (v->id_len == 16)
        memcpy(j->id, v->id, 16);
    j->priority = v->priority;
    j->attempt = v->attempt;
    j->max_attempts = v->max_attempts;
    j->created_ms = v->created_ms;
    j->not_before_ms = v->not_before_ms;
    j->deadline_ms = v->deadline_ms;
    j->queue_len = v->queue_len;
    if (qcopy) {
        char *q = (char *)j->raw + len;
        if (v->queue_len)
            memcpy(q, v->queue, v->queue_len);
        q[v->queue_len] = '\0';
        j->queue = q;
    }
    if (v->payload)
        j->payload = j->raw + (v->payload - raw);
    j->payload_len = v->payload_len;
    if (v->ikey) {
        /* As a C string, the way protobuf-c hands it to every client. */
        const uint8_t *nul = memchr(v->ikey, 0, v->ikey_len);
        j->ikey = (const char *)j->raw + (v->ikey - raw);
        j->ikey_len = nul ? (size_t)(nul - v->ikey) : v->ikey_len;
        j->ikey_nul = nul != NULL; /* refused at publish */
    }
    return j;
}

void sl__job_free(sl__job_t *j)
{
    if (!j)
        return;
    free(j->dead_reason);
    free(j->last_error);
    free(j);
}
