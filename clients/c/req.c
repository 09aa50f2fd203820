/* req.c -- requests awaiting an answer (publish, admin, touch): found by
 * corr when the answer arrives, walked in sending order to resend them in
 * a new session, and ordered by deadline so the I/O thread knows when the
 * next one times out. Everything here runs on the I/O thread, except
 * sl__req_new/sl__req_free which the caller uses before hand-off. */
#include <stdlib.h>
#include <string.h>

#include "client_int.h"

/* sl_code_t is Error.Code, value for value. */
#define S_SAME(a, b) ((int)(a) == (int)(b))
_Static_assert(S_SAME(SL_CODE_BAD_QUEUE, SLUICE__V1__ERROR__CODE__BAD_QUEUE) &&
                   S_SAME(SL_CODE_FULL, SLUICE__V1__ERROR__CODE__FULL) &&
                   S_SAME(SL_CODE_STALE_EPOCH, SLUICE__V1__ERROR__CODE__STALE_EPOCH) &&
                   S_SAME(SL_CODE_DRAINING, SLUICE__V1__ERROR__CODE__DRAINING) &&
                   S_SAME(SL_CODE_OVERLOADED, SLUICE__V1__ERROR__CODE__OVERLOADED),
               "sl_code_t must follow Error.Code in proto/sluice.proto");

#define S_BUCKETS_MIN 64

sl__req_t *sl__req_new(int kind, uint64_t corr, int64_t deadline)
{
    sl__req_t *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->kind = kind;
    r->corr = corr;
    r->deadline = deadline;
    r->heap_i = SIZE_MAX;
    r->promise = sl_chan_new(SL_BUF_PROMISE, 0);
    if (!r->promise) {
        free(r);
        return NULL;
    }
    return r;
}

void sl__req_free(sl__req_t **r_p)
{
    if (!r_p || !*r_p)
        return;
    sl__req_t *r = *r_p;
    sl_chan_destroy(&r->promise);
    free(r->buf);
    free(r->ids);
    free(r);
    *r_p = NULL;
}

/* --- the table ------------------------------------------------------- */

int sl__req_table_init(sl_client_t *c)
{
    c->nbuckets = S_BUCKETS_MIN;
    c->buckets = calloc(c->nbuckets, sizeof *c->buckets);
    return c->buckets ? SL_OK : SL_ENOMEM;
}

void sl__req_table_release(sl_client_t *c)
{
    free(c->buckets);
    free(c->heap);
    c->buckets = NULL;
    c->heap = NULL;
    c->nbuckets = c->npending = c->heap_n = c->heap_cap = 0;
}

static size_t s_bucket(const sl_client_t *c, uint64_t corr)
{
    /* corr values are sequential: a multiplicative hash spreads them. */
    return (size_t)((corr * 0x9e3779b97f4a7c15ULL) >> 32) & (c->nbuckets - 1);
}

static int s_grow(sl_client_t *c)
{
    size_t n = c->nbuckets * 2;
    sl__req_t **b = calloc(n, sizeof *b);
    if (!b)
        return SL_ENOMEM;
    sl__req_t **old = c->buckets;
    size_t oldn = c->nbuckets;
    c->buckets = b;
    c->nbuckets = n;
    for (size_t i = 0; i < oldn; i++) {
        sl__req_t *r = old[i];
        while (r) {
            sl__req_t *next = r->hnext;
            size_t k = s_bucket(c, r->corr);
            r->hnext = b[k];
            b[k] = r;
            r = next;
        }
    }
    free(old);
    return SL_OK;
}

/* --- deadline heap (min by deadline) --------------------------------- */

static void s_heap_set(sl_client_t *c, size_t i, sl__req_t *r)
{
    c->heap[i] = r;
    r->heap_i = i;
}

static void s_heap_up(sl_client_t *c, size_t i)
{
    sl__req_t *r = c->heap[i];
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (c->heap[p]->deadline <= r->deadline)
            break;
        s_heap_set(c, i, c->heap[p]);
        i = p;
    }
    s_heap_set(c, i, r);
}

static void s_heap_down(sl_client_t *c, size_t i)
{
    sl__req_t *r = c->heap[i];
    for (;;) {
        size_t l = 2 * i + 1, m = i;
        int64_t best = r->deadline;
        if (l < c->heap_n && c->heap[l]->deadline < best) {
            m = l;
            best = c->heap[l]->deadline;
        }
        if (l + 1 < c->heap_n && c->heap[l + 1]->deadline < best)
            m = l + 1;
        if (m == i)
            break;
        s_heap_set(c, i, c->heap[m]);
        i = m;
    }
    s_heap_set(c, i, r);
}

static void s_heap_remove(sl_client_t *c, sl__req_t *r)
{
    size_t i = r->heap_i;
    if (i == SIZE_MAX)
        return;
    r->heap_i = SIZE_MAX;
    sl__req_t *last = c->heap[--c->heap_n];
    if (i == c->heap_n)
        return;
    s_heap_set(c, i, last);
    s_heap_up(c, i);
    s_heap_down(c, last->heap_i);
}

int sl__req_add(sl_client_t *c, sl__req_t *r)
{
    if (c->npending + 1 > c->nbuckets && s_grow(c) != SL_OK)
        return SL_ENOMEM;
    if (r->deadline != SL_FOREVER) {
        if (c->heap_n == c->heap_cap) {
            size_t cap = c->heap_cap ? c->heap_cap * 2 : 64;
            sl__req_t **h = realloc(c->heap, cap * sizeof *h);
            if (!h)
                return SL_ENOMEM;
            c->heap = h;
            c->heap_cap = cap;
        }
        c->heap[c->heap_n] = r;
        s_heap_up(c, c->heap_n++);
    }
    size_t k = s_bucket(c, r->corr);
    r->hnext = c->buckets[k];
    c->buckets[k] = r;
    r->prev = c->req_tail;
    r->next = NULL;
    if (c->req_tail)
        c->req_tail->next = r;
    else
        c->req_head = r;
    c->req_tail = r;
    c->npending++;
    atomic_store(&c->ctr.pending, c->npending);
    return SL_OK;
}

sl__req_t *sl__req_find(sl_client_t *c, uint64_t corr)
{
    for (sl__req_t *r = c->buckets[s_bucket(c, corr)]; r; r = r->hnext)
        if (r->corr == corr)
            return r;
    return NULL;
}

void sl__req_remove(sl_client_t *c, sl__req_t *r)
{
    sl__req_t **pp = &c->buckets[s_bucket(c, r->corr)];
    while (*pp && *pp != r)
        pp = &(*pp)->hnext;
    if (*pp)
        *pp = r->hnext;
    r->hnext = NULL;
    if (r->prev)
        r->prev->next = r->next;
    else
        c->req_head = r->next;
    if (r->next)
        r->next->prev = r->prev;
    else
        c->req_tail = r->prev;
    r->prev = r->next = NULL;
    s_heap_remove(c, r);
    c->npending--;
    atomic_store(&c->ctr.pending, c->npending);
}

sl__req_t *sl__req_earliest(sl_client_t *c)
{
    return c->heap_n ? c->heap[0] : NULL;
}

/* --- completion ------------------------------------------------------ */

/* The promise is settled: tell whoever asked to be told (a cluster, which
 * then takes the result from the promise). */
static void s_notify(sl__req_t *r)
{
    if (r->notify) {
        int rc = sl_offer(r->notify, r->tag);
        (void)rc; /* unbounded in practice; closed only once nobody listens */
    }
}

static void s_deliver(sl__req_t *r, void *value)
{
    /* A promise never makes a put wait, and nobody else puts on it. */
    int rc = sl_offer(r->promise, value);
    (void)rc;
    sl_chan_close(r->promise);
    s_notify(r);
}

static void s_copy_text(char *dst, size_t cap, const char *src)
{
    if (!src) {
        dst[0] = '\0';
        return;
    }
    size_t n = strlen(src);
    if (n >= cap)
        n = cap - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

void sl__req_complete_publish(sl__req_t *r, int status, const char *text,
                              Sluice__V1__JobConfirm **confirms, size_t n)
{
    size_t cnt = r->n_jobs;
    sl_publish_result_t *res = calloc(1, sizeof *res + cnt * sizeof res->confirms[0]);
    if (!res) {
        /* The waiter takes ECLOSED from a closed, empty promise. */
        sl_chan_close(r->promise);
        s_notify(r);
        sl__req_free(&r);
        return;
    }
    res->status = status;
    res->n = cnt;
    s_copy_text(res->error, sizeof res->error, text);
    for (size_t i = 0; i < cnt; i++) {
        sl_confirm_t *cf = &res->confirms[i];
        memcpy(cf->id, r->ids[i], SL_ID_LEN);
        if (status != SL_OK || !confirms || i >= n)
            continue;
        const Sluice__V1__JobConfirm *jc = confirms[i];
        switch (jc->status) {
        case SLUICE__V1__JOB_CONFIRM__STATUS__ACCEPTED:
            cf->status = SL_CONFIRM_ACCEPTED;
            break;
        case SLUICE__V1__JOB_CONFIRM__STATUS__DUPLICATE:
            cf->status = SL_CONFIRM_DUPLICATE;
            break;
        default:
            cf->status = SL_CONFIRM_REJECTED;
            break;
        }
        cf->retry_after_ms = jc->retry_after_ms;
        if (cf->status == SL_CONFIRM_REJECTED)
            cf->code = (int)jc->code;
        s_copy_text(cf->reason, sizeof cf->reason, jc->reason);
    }
    s_deliver(r, res);
    sl__req_free(&r);
}

void sl__req_complete_reply(sl__req_t *r, sl__reply_t *reply)
{
    s_deliver(r, reply);
    sl__req_free(&r);
}

void sl__req_complete_error(sl__req_t *r, int status, int node_code, const char *text)
{
    if (r->kind == SL__REQ_PUBLISH) {
        sl__req_complete_publish(r, status, text, NULL, 0);
        return;
    }
    sl__reply_t *rep = calloc(1, sizeof *rep);
    if (!rep) {
        sl_chan_close(r->promise);
        s_notify(r);
        sl__req_free(&r);
        return;
    }
    rep->status = status;
    rep->admin.node_code = node_code;
    s_copy_text(rep->admin.node_text, sizeof rep->admin.node_text, text);
    sl__req_complete_reply(r, rep);
}
