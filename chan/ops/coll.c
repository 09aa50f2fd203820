/* coll.c -- channels from and to collections: sl_onto_chan, sl_to_chan,
 * sl_reduce (core.async's onto-chan!, to-chan!, reduce). */
#include <stdlib.h>
#include <string.h>

#include "sluice/ops.h"
#include "util.h"

/* sl_to_chan buffers up to this many values itself; longer arrays are fed
 * by a coroutine so the buffer stays bounded. */
#define S_TO_CHAN_MAX_BUF 1024

/* --- onto ---------------------------------------------------------------- */

typedef struct {
    sl_chan_t *ch;    /* owned reference */
    sl_chan_t *done;  /* owned reference */
    bool close_ch;
    size_t n;
    void *vals[];     /* the caller's array, copied */
} s_onto_t;

static void *s_onto_run(void *arg)
{
    s_onto_t *o = arg;
    for (size_t i = 0; i < o->n; i++) {
        if (sl__ops_put(o->ch, o->vals[i]) != SL_OK)
            break; /* ch closed under us: the rest are not delivered */
    }
    if (o->close_ch)
        sl_chan_close(o->ch);
    sl_chan_close(o->done);
    sl_chan_destroy(&o->ch);
    sl_chan_destroy(&o->done);
    free(o);
    return NULL;
}

sl_chan_t *sl_onto_chan(sl_chan_t *ch, void *const *vals, size_t n, bool close_ch)
{
    if (!ch || (n > 0 && !vals))
        return NULL;
    s_onto_t *o = malloc(sizeof *o + n * sizeof(void *));
    sl_chan_t *done = sl_chan_new(SL_BUF_NONE, 0);
    if (!o || !done)
        goto fail;
    if (n > 0)
        memcpy(o->vals, vals, n * sizeof(void *));
    o->n = n;
    o->close_ch = close_ch;
    o->ch = sl_chan_ref(ch);
    o->done = sl_chan_ref(done);
    if (sl__ops_go(s_onto_run, o, 0) != SL_OK) {
        sl_chan_destroy(&o->ch);
        sl_chan_destroy(&o->done);
        goto fail;
    }
    return done;
fail:
    free(o);
    sl_chan_destroy(&done);
    return NULL;
}

/* --- to_chan ------------------------------------------------------------- */

sl_chan_t *sl_to_chan(void *const *vals, size_t n)
{
    if (n > 0 && !vals)
        return NULL;
    size_t cap = n == 0 ? 1 : n > S_TO_CHAN_MAX_BUF ? S_TO_CHAN_MAX_BUF : n;
    sl_chan_t *ch = sl_chan_new(SL_BUF_FIXED, cap);
    if (!ch)
        return NULL;
    if (n <= cap) {
        /* Everything fits: no coroutine needed. A fresh buffered channel
         * nobody else has seen accepts every offer. */
        for (size_t i = 0; i < n; i++) {
            int rc = sl_offer(ch, vals[i]);
            (void)rc;
        }
        sl_chan_close(ch);
        return ch;
    }
    sl_chan_t *done = sl_onto_chan(ch, vals, n, true);
    if (!done) {
        sl_chan_destroy(&ch);
        return NULL;
    }
    sl_chan_destroy(&done); /* the feeder holds its own references */
    return ch;
}

/* --- reduce -------------------------------------------------------------- */

typedef struct {
    sl_reduce_fn fn;
    void *arg;
    void *acc;
    sl_chan_t *ch;      /* owned reference */
    sl_chan_t *result;  /* owned reference to the promise */
} s_reduce_t;

static void *s_reduce_run(void *arg)
{
    s_reduce_t *r = arg;
    void *v;
    while (sl__ops_take(r->ch, &v) == SL_OK)
        r->acc = r->fn(r->acc, v, r->arg);
    /* A promise nobody else has put to accepts its first value at once. */
    int rc = sl_offer(r->result, r->acc);
    (void)rc;
    sl_chan_close(r->result);
    sl_chan_destroy(&r->ch);
    sl_chan_destroy(&r->result);
    free(r);
    return NULL;
}

sl_chan_t *sl_reduce(sl_reduce_fn fn, void *arg, void *init, sl_chan_t *ch)
{
    if (!fn || !ch)
        return NULL;
    s_reduce_t *r = calloc(1, sizeof *r);
    sl_chan_t *result = sl_chan_new(SL_BUF_PROMISE, 0);
    if (!r || !result)
        goto fail;
    r->fn = fn;
    r->arg = arg;
    r->acc = init;
    r->ch = sl_chan_ref(ch);
    r->result = sl_chan_ref(result);
    if (sl__ops_go(s_reduce_run, r, 0) != SL_OK) {
        sl_chan_destroy(&r->ch);
        sl_chan_destroy(&r->result);
        goto fail;
    }
    return result;
fail:
    free(r);
    sl_chan_destroy(&result);
    return NULL;
}
