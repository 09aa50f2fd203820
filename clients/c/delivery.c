/* delivery.c -- deliveries: Deliver envelopes scanned in place (no
 * protobuf-c tree), a copy of each delivered job in one allocation, handed
 * either to a subscription's channel or to a consume handler (a coroutine
 * or a blocking-pool task) that acks or fails it on return. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client_int.h"
#include "sluice/pbwire.h"
#include "sluice/sched.h"

/* --- scanning Deliver envelopes in place -------------------------------- */

/* Field numbers: proto/sluice.proto. */
enum { S_ENV_CORR = 1, S_ENV_DELIVER = 15, S_BODY_FIRST = 10, S_BODY_LAST = 31 };

int sl__deliver_envelope(const uint8_t *p, size_t len, sl__pb_rd_t *body)
{
    sl__pb_rd_t r = {p, p + len};
    sl__pb_field_t f;
    int rc;
    bool found = false;
    while ((rc = sl__pb_next(&r, &f)) > 0) {
        if (f.num == S_ENV_CORR) {
            if (f.wt != SL__PB_VARINT)
                return 0;
        } else if (f.num >= S_BODY_FIRST && f.num <= S_BODY_LAST) {
            /* Another kind, or a Deliver given twice (protobuf-c merges). */
            if (f.num != S_ENV_DELIVER || f.wt != SL__PB_LEN || found)
                return 0;
            found = true;
            body->p = f.data;
            body->end = f.data + f.len;
        }
    }
    return rc == 0 && found;
}

int sl__deliver_next(sl__pb_rd_t *r, sl__dview_t *v)
{
    sl__pb_field_t f;
    int rc;
    while ((rc = sl__pb_next(r, &f)) > 0) {
        if (f.num != 1)
            continue;
        if (f.wt != SL__PB_LEN)
            return -1;
        memset(v, 0, sizeof *v);
        sl__pb_rd_t dr = {f.data, f.data + f.len};
        sl__pb_field_t g;
        int drc;
        while ((drc = sl__pb_next(&dr, &g)) > 0) {
            if (g.num != 1 && g.num != 2)
                continue;
            /* Given twice, protobuf-c would merge the two: not taken here. */
            if (g.wt != SL__PB_LEN || (g.num == 1 ? v->has_job : v->has_lease))
                return -1;
            if (g.num == 1) {
                v->has_job = true;
                v->job = g.data;
                v->job_len = g.len;
                if (sl__pb_job(g.data, g.len, &v->j) != 0)
                    return -1;
            } else {
                v->has_lease = true;
                if (sl__pb_lease(g.data, g.len, &v->l) != 0)
                    return -1;
                v->lease.lease_id = v->l.lease_id;
                v->lease.epoch = v->l.epoch;
                v->lease.expires_ms = v->l.expires_ms;
            }
        }
        if (drc < 0)
            return -1;
        /* The lease names its job; failing that, the job's own id. */
        const uint8_t *jid = v->l.job_id_len == SL_ID_LEN ? v->l.job_id
                             : v->j.id_len == SL_ID_LEN    ? v->j.id
                                                           : NULL;
        if (jid)
            memcpy(v->lease.job_id, jid, SL_ID_LEN);
        return 1;
    }
    return rc;
}

/* --- deliveries ----------------------------------------------------------- */

/* Copy len bytes into the arena at *p as a string; returns the copy. */
static const char *s_put_str(char **p, const uint8_t *s, size_t len)
{
    char *dst = *p;
    if (len)
        memcpy(dst, s, len);
    dst[len] = '\0';
    *p += len + 1;
    return dst;
}

sl__delivery_t *sl__delivery_new(sl__sub_t *sub, const sl__dview_t *v)
{
    size_t size = sizeof(sl__delivery_t);
    size += v->j.n_headers * sizeof(sl_header_t);
    size += SL_ID_LEN;
    size += v->j.queue_len + v->j.ikey_len + v->j.bkey_len + v->j.lerr_len + 4;
    size += v->j.headers_size;
    size += v->j.payload_len + 1; /* NUL after the payload: handy for text */

    sl__delivery_t *d = malloc(size);
    if (!d)
        return NULL;
    d->sub = sub;
    d->error[0] = '\0';
    d->magic = SL__DELIVERY_MAGIC;
    d->next = NULL;
    char *p = (char *)(d + 1);
    sl_header_t *hdrs = (sl_header_t *)p;
    p += v->j.n_headers * sizeof(sl_header_t);

    uint8_t *id = (uint8_t *)p;
    if (v->j.id_len == SL_ID_LEN)
        memcpy(id, v->j.id, SL_ID_LEN);
    else
        memset(id, 0, SL_ID_LEN);
    p += SL_ID_LEN;

    sl_delivery_t *o = &d->pub;
    memset(o, 0, sizeof *o);
    o->id = id;
    o->queue = s_put_str(&p, v->j.queue, v->j.queue_len);
    o->idempotency_key = s_put_str(&p, v->j.ikey, v->j.ikey_len);
    o->breaker_key = s_put_str(&p, v->j.bkey, v->j.bkey_len);
    o->last_error = s_put_str(&p, v->j.lerr, v->j.lerr_len);
    if (v->j.n_headers) {
        /* Read the entries again from the job's bytes, which the scan has
         * found sound. */
        sl__pb_rd_t r = {v->job, v->job + v->job_len};
        sl__pb_field_t f, k, val;
        size_t i = 0;
        while (i < v->j.n_headers && sl__pb_next(&r, &f) > 0) {
            if (f.num != 4)
                continue;
            sl__pb_map_entry(f.data, f.len, &k, &val);
            hdrs[i].key = s_put_str(&p, k.data, k.len);
            hdrs[i].value = s_put_str(&p, val.data, val.len);
            i++;
        }
        o->headers = hdrs;
        o->n_headers = v->j.n_headers;
    }
    if (v->j.payload_len)
        memcpy(p, v->j.payload, v->j.payload_len);
    p[v->j.payload_len] = '\0';
    o->payload = p;
    o->payload_len = v->j.payload_len;
    o->priority = v->j.priority;
    o->attempt = v->j.attempt;
    o->max_attempts = v->j.max_attempts;
    o->created_ms = v->j.created_ms;
    o->deadline_ms = v->j.deadline_ms;
    o->lease_expires_ms = v->lease.expires_ms;

    d->lease = v->lease;
    return d;
}

void sl__delivery_free(sl__delivery_t **d_p)
{
    if (!d_p || !*d_p)
        return;
    (*d_p)->magic = 0;
    free(*d_p);
    *d_p = NULL;
}

sl__delivery_t *sl__delivery_owned(sl_client_t **self_p, sl_delivery_t *pub)
{
    sl__delivery_t *d = (sl__delivery_t *)pub;
    if (!*self_p || !d || d->magic != SL__DELIVERY_MAGIC)
        return NULL;
    sl_client_t *c = d->sub->client;
    if (c != *self_p && !((*self_p)->cluster && c->parent == *self_p))
        return NULL;
    *self_p = c;
    return d;
}

void sl_delivery_set_error(sl_delivery_t *d, const char *error)
{
    if (!d)
        return;
    sl__delivery_t *in = (sl__delivery_t *)d;
    snprintf(in->error, sizeof in->error, "%s", error ? error : "");
}

/* --- consume handlers ------------------------------------------------ */

static void *s_run_handler(void *arg)
{
    sl__delivery_t *d = arg;
    sl__sub_t *s = d->sub;
    sl_client_t *c = s->client;
    /* A cluster's node client hands its handlers the user's client. */
    int rc = s->fn(c->parent ? c->parent : c, &d->pub, s->arg);
    sl_delivery_t *pub = &d->pub;
    if (rc == SL_JOB_ACK) {
        sl_client_ack(c, &pub);
    } else {
        char text[SL__ERR_TEXT_MAX];
        if (d->error[0])
            snprintf(text, sizeof text, "%s", d->error);
        else if (rc < 0)
            snprintf(text, sizeof text, "handler returned %s", sl_err_name(rc));
        else
            snprintf(text, sizeof text, "handler returned %d", rc);
        sl_client_fail(c, &pub, rc != SL_JOB_FAIL, text);
    }
    return NULL;
}

/* Run d's handler: a coroutine, or a blocking-pool task. */
int sl__delivery_start(sl__delivery_t *d)
{
    sl__sub_t *s = d->sub;
    if (s->flags & SL_CONSUME_BLOCKING) {
        sl_chan_t *done = sl_thread(s_run_handler, d);
        if (!done)
            return SL_ENOMEM;
        sl_chan_destroy(&done); /* the pool keeps its own reference */
    } else {
        int err = SL_OK;
        if (!sl_go_ex(s_run_handler, d, 0, 0, &err))
            return err ? err : SL_ENOMEM;
    }
    s->handlers++;
    return SL_OK;
}

int sl__delivery_dispatch(sl__delivery_t *d)
{
    sl__sub_t *s = d->sub;
    if (s->out) {
        /* The channel holds the whole window, and the node never sends
         * more than the window: an offer that fails means the node broke
         * its credit, and the job goes back. */
        int rc = sl_offer(s->out, d);
        return rc == SL_OK ? SL_OK : SL_ELIMIT;
    }
    if (s->handlers >= s->concurrency) {
        /* Prefetched: waits for a handler to end (its lease ticking). */
        d->next = NULL;
        if (s->wait_tail)
            s->wait_tail->next = d;
        else
            s->wait_head = d;
        s->wait_tail = d;
        return SL_OK;
    }
    return sl__delivery_start(d);
}

sl__delivery_t *sl__delivery_waiting(sl__sub_t *s)
{
    sl__delivery_t *d = s->wait_head;
    if (!d)
        return NULL;
    s->wait_head = d->next;
    if (!s->wait_head)
        s->wait_tail = NULL;
    d->next = NULL;
    return d;
}
