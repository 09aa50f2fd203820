/* delivery.c -- deliveries: a copy of a delivered job in one allocation,
 * handed either to a subscription's channel or to a consume handler (a
 * coroutine or a blocking-pool task) that acks or fails it on return. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client_int.h"
#include "sluice/sched.h"

static size_t s_str_size(const char *s)
{
    return (s ? strlen(s) : 0) + 1;
}

/* Copy s into the arena at *p; returns the copy. */
static const char *s_put_str(char **p, const char *s)
{
    size_t n = s ? strlen(s) : 0;
    char *dst = *p;
    if (n)
        memcpy(dst, s, n);
    dst[n] = '\0';
    *p += n + 1;
    return dst;
}

sl__delivery_t *sl__delivery_new(sl__sub_t *sub, const Sluice__V1__Delivery *pb)
{
    const Sluice__V1__Job *j = pb->job;
    const Sluice__V1__Lease *l = pb->lease;
    size_t size = sizeof(sl__delivery_t);
    size += j->n_headers * sizeof(sl_header_t);
    size += SL_ID_LEN;
    size += s_str_size(j->queue) + s_str_size(j->idempotency_key) +
            s_str_size(j->breaker_key) + s_str_size(j->last_error);
    for (size_t i = 0; i < j->n_headers; i++)
        size += s_str_size(j->headers[i]->key) + s_str_size(j->headers[i]->value);
    size += j->payload.len + 1; /* NUL after the payload: handy for text */

    sl__delivery_t *d = calloc(1, size);
    if (!d)
        return NULL;
    d->magic = SL__DELIVERY_MAGIC;
    d->sub = sub;
    char *p = (char *)(d + 1);
    sl_header_t *hdrs = (sl_header_t *)p;
    p += j->n_headers * sizeof(sl_header_t);

    uint8_t *id = (uint8_t *)p;
    if (j->id.len == SL_ID_LEN)
        memcpy(id, j->id.data, SL_ID_LEN);
    p += SL_ID_LEN;

    sl_delivery_t *o = &d->pub;
    o->id = id;
    o->queue = s_put_str(&p, j->queue);
    o->idempotency_key = s_put_str(&p, j->idempotency_key);
    o->breaker_key = s_put_str(&p, j->breaker_key);
    o->last_error = s_put_str(&p, j->last_error);
    for (size_t i = 0; i < j->n_headers; i++) {
        hdrs[i].key = s_put_str(&p, j->headers[i]->key);
        hdrs[i].value = s_put_str(&p, j->headers[i]->value);
    }
    o->headers = j->n_headers ? hdrs : NULL;
    o->n_headers = j->n_headers;
    if (j->payload.len)
        memcpy(p, j->payload.data, j->payload.len);
    p[j->payload.len] = '\0';
    o->payload = p;
    o->payload_len = j->payload.len;
    o->priority = j->priority;
    o->attempt = j->attempt;
    o->max_attempts = j->max_attempts;
    o->created_ms = j->created_ms;
    o->deadline_ms = j->deadline_ms;
    o->lease_expires_ms = l->expires_ms;

    if (l->job_id.len == SL_ID_LEN)
        memcpy(d->lease.job_id, l->job_id.data, SL_ID_LEN);
    else
        memcpy(d->lease.job_id, id, SL_ID_LEN);
    d->lease.lease_id = l->lease_id;
    d->lease.epoch = l->epoch;
    d->lease.expires_ms = l->expires_ms;
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
    if (s->flags & SL_CONSUME_BLOCKING) {
        sl_chan_t *done = sl_thread(s_run_handler, d);
        if (!done)
            return SL_ENOMEM;
        sl_chan_destroy(&done); /* the pool keeps its own reference */
        return SL_OK;
    }
    int err = SL_OK;
    if (!sl_go_ex(s_run_handler, d, 0, 0, &err))
        return err ? err : SL_ENOMEM;
    return SL_OK;
}
