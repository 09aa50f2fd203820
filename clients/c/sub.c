/* sub.c -- subscriptions, the calls users make: subscribe (a channel of
 * deliveries), consume (handlers), unsubscribe, ack and fail; and the
 * variants a cluster uses on its node clients (shared channel, member
 * epoch, new window, unsubscribing without waiting). */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client_int.h"

/* A new subscription: window (credit) = concurrency + prefetch; a
 * consume subscription runs `concurrency` handlers at once. */
static sl__sub_t *s_sub_start(sl_client_t *c, const char *queue, uint32_t concurrency,
                              uint32_t prefetch, int *err)
{
    sl__sub_t *s = calloc(1, sizeof *s);
    if (!s) {
        *err = SL_ENOMEM;
        return NULL;
    }
    s->client = c;
    snprintf(s->queue, sizeof s->queue, "%s", queue);
    s->window = concurrency + prefetch;
    s->concurrency = concurrency;
    *err = SL_OK;
    return s;
}

/* Register s (unless the queue is taken) and tell the I/O thread. */
static int s_sub_register(sl_client_t *c, sl__sub_t *s)
{
    pthread_mutex_lock(&c->lock);
    for (sl__sub_t *t = c->subs; t; t = t->next)
        if (t->active && strcmp(t->queue, s->queue) == 0) {
            pthread_mutex_unlock(&c->lock);
            return SL_ESTATE;
        }
    s->active = true;
    s->next = c->subs;
    c->subs = s;
    pthread_mutex_unlock(&c->lock);
    /* From here the client owns s (it stays on the list until destroy). */
    sl__cmd_t *cmd = sl__cmd_new(SL__CMD_SUB);
    int rc = cmd ? SL_OK : SL_ENOMEM;
    if (rc == SL_OK) {
        cmd->sub = s;
        rc = sl__client_cmd(c, cmd);
    }
    if (rc != SL_OK) {
        free(cmd);
        pthread_mutex_lock(&c->lock);
        s->active = false;
        pthread_mutex_unlock(&c->lock);
        if (s->out && !s->out_shared)
            sl_chan_close(s->out);
    }
    return rc;
}

static int s_sub_args(sl_client_t *self, const char *queue, uint32_t window)
{
    if (!self || sl_queue_name_check(queue) != SL_OK || window == 0)
        return SL_EINVAL;
    if (atomic_load(&self->closed))
        return SL_ECLOSED;
    return SL_OK;
}

/* The channel a subscription with this window delivers into. Room for the
 * whole window and then some: the node never sends more than the window,
 * so the I/O thread's offer never fails. A cluster's channel is fed by
 * several nodes, whose windows can briefly overlap while an assignment
 * moves: twice as much again. */
static sl_chan_t *s_out_new(uint32_t window, bool cluster)
{
    size_t cap = (size_t)window * 2 + 16;
    return sl_chan_new(SL_BUF_FIXED, cluster ? cap * 2 : cap);
}

sl_chan_t *sl_client_subscribe(sl_client_t *self, const char *queue, uint32_t credit, int *err)
{
    int rc = s_sub_args(self, queue, credit);
    sl_chan_t *out = NULL;
    if (rc == SL_OK && !(out = s_out_new(credit, self->cluster != NULL)))
        rc = SL_ENOMEM;
    if (rc == SL_OK && self->cluster) {
        rc = sl__cluster_subscribe(self, queue, credit, 0, out, NULL, NULL, 0);
        if (rc == SL_OK)
            return out;
    } else if (rc == SL_OK) {
        sl__sub_t *s = s_sub_start(self, queue, credit, 0, &rc);
        if (s) {
            s->out = sl_chan_ref(out);
            rc = s_sub_register(self, s);
            if (rc == SL_ESTATE) {
                sl_chan_destroy(&s->out);
                free(s);
            }
            if (rc == SL_OK)
                return out;
        }
    }
    sl_chan_destroy(&out);
    if (err)
        *err = rc;
    return NULL;
}

int sl_client_consume(sl_client_t *self, const char *queue, uint32_t concurrency,
                      sl_handler_fn fn, void *arg, int flags)
{
    sl_consume_opts_t o = {.concurrency = concurrency, .flags = flags};
    return sl_client_consume_ex(self, queue, &o, fn, arg);
}

int sl_client_consume_ex(sl_client_t *self, const char *queue, const sl_consume_opts_t *opts,
                         sl_handler_fn fn, void *arg)
{
    if (!opts)
        return SL_EINVAL;
    uint32_t concurrency = opts->concurrency, prefetch = opts->prefetch;
    int flags = opts->flags;
    int rc = s_sub_args(self, queue, concurrency);
    if (rc != SL_OK)
        return rc;
    if (!fn || (flags & ~SL_CONSUME_BLOCKING) || prefetch > UINT32_MAX - concurrency)
        return SL_EINVAL;
    if (self->cluster)
        return sl__cluster_subscribe(self, queue, concurrency, prefetch, NULL, fn, arg, flags);
    sl__sub_t *s = s_sub_start(self, queue, concurrency, prefetch, &rc);
    if (!s)
        return rc;
    s->fn = fn;
    s->arg = arg;
    s->flags = flags;
    rc = s_sub_register(self, s);
    if (rc == SL_ESTATE)
        free(s);
    return rc;
}

sl__sub_t *sl__client_sub_start(sl_client_t *c, const char *queue, uint32_t window,
                                uint32_t prefetch, sl_chan_t *out, sl_handler_fn fn, void *arg,
                                int flags, uint64_t member_epoch, int *err)
{
    sl__sub_t *s = s_sub_start(c, queue, window, prefetch, err);
    if (!s)
        return NULL;
    if (out) {
        s->out = sl_chan_ref(out);
        s->out_shared = true;
    }
    s->fn = fn;
    s->arg = arg;
    s->flags = flags;
    s->member_epoch = member_epoch; /* read by the I/O thread after the SUB command */
    *err = s_sub_register(c, s);
    if (*err == SL_ESTATE) {
        sl_chan_destroy(&s->out);
        free(s);
    }
    return *err == SL_OK ? s : NULL;
}

int sl__client_sub_update(sl_client_t *c, sl__sub_t *s, uint32_t window, uint32_t prefetch,
                          uint64_t member_epoch)
{
    sl__cmd_t *cmd = sl__cmd_new(SL__CMD_RESUB);
    if (!cmd)
        return SL_ENOMEM;
    cmd->sub = s;
    cmd->window = window + prefetch;
    cmd->concurrency = window;
    cmd->member_epoch = member_epoch;
    int rc = sl__client_cmd(c, cmd);
    if (rc != SL_OK)
        free(cmd);
    return rc;
}

sl_chan_t *sl__client_unsub_start(sl_client_t *c, const char *queue, int *err)
{
    sl__sub_t *s = NULL;
    pthread_mutex_lock(&c->lock);
    for (sl__sub_t *t = c->subs; t; t = t->next)
        if (t->active && strcmp(t->queue, queue) == 0) {
            s = t;
            t->active = false;
            break;
        }
    pthread_mutex_unlock(&c->lock);
    if (!s) {
        *err = SL_ENOTFOUND;
        return NULL;
    }
    sl__cmd_t *cmd = sl__cmd_new(SL__CMD_UNSUB);
    sl_chan_t *done = sl_chan_new(SL_BUF_PROMISE, 0);
    if (!cmd || !done) {
        free(cmd);
        sl_chan_destroy(&done);
        *err = SL_ENOMEM;
        return NULL;
    }
    cmd->sub = s;
    cmd->done = sl_chan_ref(done);
    int rc = sl__client_cmd(c, cmd);
    if (rc != SL_OK) {
        sl_chan_destroy(&cmd->done);
        free(cmd);
        sl_chan_destroy(&done);
        *err = rc;
        return NULL;
    }
    return done;
}

int sl__client_unsub_wait(sl_chan_t **done_p, int64_t deadline)
{
    void *v = NULL;
    int rc = sl_take_until(*done_p, &v, deadline);
    sl_chan_destroy(done_p);
    if (rc == SL_OK)
        return (int)(intptr_t)v;
    return rc == SL_ETIMEDOUT ? SL_ETIMEDOUT : SL_ECLOSED;
}

int sl_client_unsubscribe(sl_client_t *self, const char *queue, int64_t deadline)
{
    if (!self || !queue)
        return SL_EINVAL;
    if (self->cluster)
        return sl__cluster_unsubscribe(self, queue, deadline);
    int rc = SL_OK;
    sl_chan_t *done = sl__client_unsub_start(self, queue, &rc);
    if (!done)
        return rc;
    return sl__client_unsub_wait(&done, deadline);
}

/* Ack or fail: the lease goes to the I/O thread, the delivery is freed
 * (an acked one there). */
static int s_settle(sl_client_t *self, sl_delivery_t **d_p, int kind, bool retryable,
                    const char *error)
{
    if (!self || !d_p)
        return SL_EINVAL;
    sl__delivery_t *d = sl__delivery_owned(&self, *d_p);
    if (!d)
        return SL_EINVAL;
    *d_p = NULL;
    if (kind == SL__CMD_ACK) {
        /* The delivery itself is the command: the I/O thread takes its
         * lease and frees it. */
        d->magic = 0;
        int rc = sl__client_cmd(self, (sl__cmd_t *)((uintptr_t)d | SL__CMD_TAG_ACK));
        if (rc != SL_OK)
            sl__delivery_free(&d);
        return rc;
    }
    sl__cmd_t *cmd = sl__cmd_new(kind);
    int rc = SL_ENOMEM;
    if (cmd) {
        cmd->sub = d->sub;
        cmd->lease = d->lease;
        cmd->retryable = retryable;
        if (kind == SL__CMD_FAIL && error && !(cmd->error = strdup(error)))
            cmd->kind = SL__CMD_DONE; /* no memory for the text: let it expire */
        rc = sl__client_cmd(self, cmd);
        if (rc != SL_OK) {
            free(cmd->error);
            free(cmd);
        }
    }
    sl__delivery_free(&d);
    return rc;
}

int sl_client_ack(sl_client_t *self, sl_delivery_t **d_p)
{
    return s_settle(self, d_p, SL__CMD_ACK, false, NULL);
}

int sl_client_fail(sl_client_t *self, sl_delivery_t **d_p, bool retryable, const char *error)
{
    return s_settle(self, d_p, SL__CMD_FAIL, retryable, error);
}

