/* pubctx.c -- a Publish awaiting its PublishConfirm: one confirm per
 * job, settled as each job is placed (at once, or when a blocked job gets
 * room), sent when the last one is settled. Engine-owned; the context
 * frees itself when sent (sl__pub_send) or abandoned (sl__pub_abandon). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node_int.h"

sl__pubctx_t *sl__pub_new(const uint8_t *rid, size_t rid_len, uint64_t corr, sl__job_t **jobs,
                          size_t n)
{
    size_t ids = 0;
    for (size_t i = 0; i < n; i++)
        ids += jobs[i]->id_len;
    sl__pubctx_t *ctx = malloc(sizeof *ctx + n * sizeof ctx->confirms[0] + ids);
    if (!ctx)
        return NULL;
    memcpy(ctx->rid, rid, rid_len);
    ctx->rid_len = rid_len;
    ctx->corr = corr;
    ctx->n = n;
    ctx->remaining = n + 1; /* +1: the caller settles it once every job is placed */
    uint8_t *idp = (uint8_t *)&ctx->confirms[n];
    for (size_t i = 0; i < n; i++) {
        sl__confirm_t *c = &ctx->confirms[i];
        c->status = SLUICE__V1__JOB_CONFIRM__STATUS__ACCEPTED;
        c->code = 0;
        c->retry_after_ms = 0;
        c->reason = NULL;
        c->id = idp;
        c->id_len = jobs[i]->id_len;
        if (c->id_len)
            memcpy(idp, jobs[i]->idp, c->id_len);
        idp += c->id_len;
    }
    return ctx;
}

void sl__pub_settle(sl__node_t *n, sl__pubctx_t *ctx, size_t i, int status, int code,
                    const char *reason, uint32_t retry_after_ms)
{
    sl__confirm_t *c = &ctx->confirms[i];
    c->status = status;
    c->code = code;
    c->retry_after_ms = retry_after_ms;
    if (reason && reason[0])
        c->reason = strdup(reason); /* out of memory: the code still says why */
    if (--ctx->remaining == 0)
        sl__pub_send(n, ctx);
}

static void s_pub_free(sl__pubctx_t *ctx)
{
    for (size_t k = 0; k < ctx->n; k++)
        free(ctx->confirms[k].reason);
    free(ctx);
}

void sl__pub_abandon(sl__pubctx_t *ctx)
{
    if (--ctx->remaining == 0)
        s_pub_free(ctx); /* the node is going away: no confirm */
}

/* One JobConfirm's bytes (without its own tag and length). */
static size_t s_confirm_size(const sl__confirm_t *c)
{
    size_t k = 0;
    if (c->id_len)
        k += sl__pb_len_size(1, c->id_len);
    if (c->status)
        k += 1 + sl__pb_varint_size((uint32_t)c->status);
    if (c->reason)
        k += sl__pb_len_size(3, strlen(c->reason));
    if (c->retry_after_ms)
        k += 1 + sl__pb_varint_size(c->retry_after_ms);
    if (c->code)
        k += 1 + sl__pb_varint_size((uint32_t)c->code);
    return k;
}

/* Envelope{corr, confirm: PublishConfirm{confirms}}, written by hand. */
void sl__pub_send(sl__node_t *n, sl__pubctx_t *ctx)
{
    size_t body = 0;
    for (size_t k = 0; k < ctx->n; k++)
        body += sl__pb_len_size(1, s_confirm_size(&ctx->confirms[k]));
    size_t len = (ctx->corr ? 1 + sl__pb_varint_size(ctx->corr) : 0) + sl__pb_len_size(11, body);
    sl__out_t *o = sl__out_new(n, ctx->rid, ctx->rid_len, len);
    if (!o) { /* out of memory: counted by sl__out_new */
        s_pub_free(ctx);
        return;
    }
    uint8_t *p = o->buf;
    if (ctx->corr)
        p = sl__pb_put_varint(sl__pb_put_tag(p, 1, SL__PB_VARINT), ctx->corr);
    p = sl__pb_put_len(p, 11, body);
    for (size_t k = 0; k < ctx->n; k++) {
        const sl__confirm_t *c = &ctx->confirms[k];
        p = sl__pb_put_len(p, 1, s_confirm_size(c));
        if (c->id_len) {
            p = sl__pb_put_len(p, 1, c->id_len);
            memcpy(p, c->id, c->id_len);
            p += c->id_len;
        }
        if (c->status)
            p = sl__pb_put_varint(sl__pb_put_tag(p, 2, SL__PB_VARINT), (uint32_t)c->status);
        if (c->reason) {
            size_t rl = strlen(c->reason);
            p = sl__pb_put_len(p, 3, rl);
            memcpy(p, c->reason, rl);
            p += rl;
        }
        if (c->retry_after_ms)
            p = sl__pb_put_varint(sl__pb_put_tag(p, 4, SL__PB_VARINT), c->retry_after_ms);
        if (c->code)
            p = sl__pb_put_varint(sl__pb_put_tag(p, 5, SL__PB_VARINT), (uint32_t)c->code);
    }
    o->len = (size_t)(p - o->buf);
    sl__out_send(n, o);
    s_pub_free(ctx);
}
