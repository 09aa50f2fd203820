/* merge.c -- sl_merge (many channels into one) and sl_split (one channel
 * into two by a predicate).
 *
 * Merge runs one small coroutine per input instead of one alts loop over
 * all of them: each value then costs one take and one put whatever the
 * number of inputs, where alts would register on every input per value. */
#include <stdatomic.h>
#include <stdlib.h>

#include "sluice/ops.h"
#include "util.h"

/* --- merge --------------------------------------------------------------- */

typedef struct {
    sl_chan_t *out;        /* owned reference */
    atomic_size_t live;    /* input coroutines still running */
} s_merge_t;

typedef struct {
    s_merge_t *m;          /* shared; freed by the last input to finish */
    sl_chan_t *in;         /* owned reference */
} s_merge_in_t;

static void s_merge_finish(s_merge_t *m)
{
    if (atomic_fetch_sub_explicit(&m->live, 1, memory_order_acq_rel) != 1)
        return;
    sl_chan_close(m->out); /* every input is closed and drained */
    sl_chan_destroy(&m->out);
    free(m);
}

static void *s_merge_run(void *arg)
{
    s_merge_in_t *mi = arg;
    void *v;
    while (sl__ops_take(mi->in, &v) == SL_OK) {
        if (sl__ops_put(mi->m->out, v) != SL_OK)
            break; /* out closed by its consumer: stop reading */
    }
    s_merge_finish(mi->m);
    sl_chan_destroy(&mi->in);
    free(mi);
    return NULL;
}

sl_chan_t *sl_merge(sl_chan_t **chans, size_t n, sl_buf_t kind, size_t cap)
{
    if (n > 0 && !chans)
        return NULL;
    for (size_t i = 0; i < n; i++)
        if (!chans[i])
            return NULL;
    sl_chan_t *out = sl_chan_new(kind, cap);
    if (!out)
        return NULL;
    s_merge_t *m = calloc(1, sizeof *m);
    if (!m) {
        sl_chan_destroy(&out);
        return NULL;
    }
    m->out = sl_chan_ref(out);
    /* One count for this setup code, so out cannot close before every
     * input has been started. */
    atomic_init(&m->live, 1);
    for (size_t i = 0; i < n; i++) {
        s_merge_in_t *mi = calloc(1, sizeof *mi);
        if (!mi)
            goto fail;
        mi->m = m;
        mi->in = sl_chan_ref(chans[i]);
        atomic_fetch_add_explicit(&m->live, 1, memory_order_relaxed);
        if (sl__ops_go(s_merge_run, mi, 0) != SL_OK) {
            atomic_fetch_sub_explicit(&m->live, 1, memory_order_relaxed);
            sl_chan_destroy(&mi->in);
            free(mi);
            goto fail;
        }
    }
    s_merge_finish(m);
    return out;
fail:
    /* Inputs already started keep copying until out is closed; closing it
     * now makes them stop at their next value. */
    sl_chan_close(out);
    s_merge_finish(m);
    sl_chan_destroy(&out);
    return NULL;
}

/* --- split --------------------------------------------------------------- */

typedef struct {
    sl_chan_t *from;  /* owned references, all three */
    sl_chan_t *t;
    sl_chan_t *f;
    sl_pred_fn pred;
    void *arg;
} s_split_t;

static void *s_split_run(void *arg)
{
    s_split_t *s = arg;
    bool t_open = true, f_open = true;
    void *v;
    /* A closed output loses the values routed to it; routing goes on for
     * the other one until both are closed or `from` ends. */
    while ((t_open || f_open) && sl__ops_take(s->from, &v) == SL_OK) {
        if (s->pred(v, s->arg)) {
            if (t_open && sl__ops_put(s->t, v) != SL_OK)
                t_open = false;
        } else {
            if (f_open && sl__ops_put(s->f, v) != SL_OK)
                f_open = false;
        }
    }
    sl_chan_close(s->t);
    sl_chan_close(s->f);
    sl_chan_destroy(&s->from);
    sl_chan_destroy(&s->t);
    sl_chan_destroy(&s->f);
    free(s);
    return NULL;
}

int sl_split(sl_chan_t *from, sl_pred_fn pred, void *arg, sl_chan_t *t, sl_chan_t *f)
{
    if (!from || !pred || !t || !f)
        return SL_EINVAL;
    s_split_t *s = calloc(1, sizeof *s);
    if (!s)
        return SL_ENOMEM;
    s->from = sl_chan_ref(from);
    s->t = sl_chan_ref(t);
    s->f = sl_chan_ref(f);
    s->pred = pred;
    s->arg = arg;
    int rc = sl__ops_go(s_split_run, s, 0);
    if (rc != SL_OK) {
        sl_chan_destroy(&s->from);
        sl_chan_destroy(&s->t);
        sl_chan_destroy(&s->f);
        free(s);
    }
    return rc;
}
