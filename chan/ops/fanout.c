/* fanout.c -- tap sets and slow-tap-aware delivery for sl_mult and sl_pub.
 *
 * Delivery offers the value to every tap first (buffered taps and waiting
 * takers accept at once), then waits on the rest together with sl_alts, so
 * one slow tap delays the others only until the shared deadline, and a fast
 * tap never waits behind a slow one for its own copy. */
#include <stdlib.h>

#include "fanout.h"
#include "util.h"

/* --- taps ---------------------------------------------------------------- */

sl__tap_t *sl__tap_new(sl_chan_t *ch, bool close_on_done)
{
    sl__tap_t *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->ch = sl_chan_ref(ch);
    t->close_on_done = close_on_done;
    atomic_init(&t->dead, false);
    atomic_init(&t->missed, 0);
    atomic_init(&t->refs, 1);
    return t;
}

sl__tap_t *sl__tap_ref(sl__tap_t *self)
{
    atomic_fetch_add_explicit(&self->refs, 1, memory_order_relaxed);
    return self;
}

void sl__tap_release(sl__tap_t **self_p)
{
    sl__tap_t *t = *self_p;
    if (!t)
        return;
    *self_p = NULL;
    if (atomic_fetch_sub_explicit(&t->refs, 1, memory_order_acq_rel) != 1)
        return;
    sl_chan_destroy(&t->ch);
    free(t);
}

/* --- tap sets ------------------------------------------------------------ */

long sl__tapset_find(const sl__tapset_t *self, const sl_chan_t *ch)
{
    for (size_t i = 0; i < self->n; i++)
        if (self->v[i]->ch == ch)
            return (long)i;
    return -1;
}

int sl__tapset_add(sl__tapset_t *self, sl__tap_t *tap)
{
    if (self->n == self->cap) {
        size_t cap = self->cap ? self->cap * 2 : 4;
        sl__tap_t **v = realloc(self->v, cap * sizeof *v);
        if (!v)
            return SL_ENOMEM;
        self->v = v;
        self->cap = cap;
    }
    self->v[self->n++] = tap;
    return SL_OK;
}

sl__tap_t *sl__tapset_take(sl__tapset_t *self, size_t i)
{
    sl__tap_t *t = self->v[i];
    /* Order does not matter: every tap gets every value. */
    self->v[i] = self->v[--self->n];
    return t;
}

void sl__tapset_purge(sl__tapset_t *self)
{
    for (size_t i = 0; i < self->n;) {
        if (atomic_load_explicit(&self->v[i]->dead, memory_order_relaxed)) {
            sl__tap_t *t = sl__tapset_take(self, i);
            sl__tap_release(&t);
        } else {
            i++;
        }
    }
}

void sl__tapset_release(sl__tapset_t *self)
{
    for (size_t i = 0; i < self->n; i++)
        sl__tap_release(&self->v[i]);
    free(self->v);
    self->v = NULL;
    self->n = self->cap = 0;
}

/* --- delivery ------------------------------------------------------------ */

int sl__fanout_stage(sl__fanout_t *self, const sl__tapset_t *set)
{
    self->n = 0;
    if (set->n > self->cap) {
        /* Grow both arrays; on failure keep the old (smaller) ones. */
        sl__tap_t **taps = realloc(self->taps, set->n * sizeof *taps);
        if (!taps)
            return SL_ENOMEM;
        self->taps = taps;
        sl_alt_t *ops = realloc(self->ops, set->n * sizeof *ops);
        if (!ops)
            return SL_ENOMEM;
        self->ops = ops;
        self->cap = set->n;
    }
    for (size_t i = 0; i < set->n; i++)
        if (!atomic_load_explicit(&set->v[i]->dead, memory_order_relaxed))
            self->taps[self->n++] = sl__tap_ref(set->v[i]);
    return SL_OK;
}

/* One put waiting until deadline, riding out SL_ELIMIT/SL_ENOMEM. Returns
 * SL_OK, SL_ECLOSED or SL_ETIMEDOUT. */
static int s_put_one(sl_chan_t *ch, void *v, int64_t deadline)
{
    for (;;) {
        int rc = sl_put_until(ch, v, deadline);
        if (rc == SL_OK || rc == SL_ECLOSED || rc == SL_ETIMEDOUT)
            return rc;
        if (deadline != SL_FOREVER && sl_now() >= deadline)
            return SL_ETIMEDOUT;
        sl__ops_backoff();
    }
}

static void s_settle(sl__tap_t *t, int status)
{
    if (status == SL_ECLOSED)
        atomic_store_explicit(&t->dead, true, memory_order_relaxed);
    else if (status != SL_OK)
        atomic_fetch_add_explicit(&t->missed, 1, memory_order_relaxed);
}

void sl__fanout_deliver(sl__fanout_t *self, void *v, int64_t deadline)
{
    /* Partition: taps[0, pending) still need the value. */
    size_t pending = 0;
    for (size_t i = 0; i < self->n; i++) {
        sl__tap_t *t = self->taps[i];
        int rc = sl_offer(t->ch, v);
        if (rc == SL_OK || rc == SL_ECLOSED) {
            s_settle(t, rc);
        } else {
            self->taps[i] = self->taps[pending];
            self->taps[pending++] = t;
        }
    }
    while (pending > 0) {
        for (size_t i = 0; i < pending; i++)
            self->ops[i] = (sl_alt_t){.chan = self->taps[i]->ch, .is_put = true, .val = v};
        int rc = sl_alts(self->ops, pending, 0, deadline);
        if (rc >= 0) {
            size_t k = (size_t)rc;
            sl__tap_t *t = self->taps[k];
            s_settle(t, self->ops[k].status);
            self->taps[k] = self->taps[pending - 1];
            self->taps[--pending] = t;
            continue;
        }
        if (rc == SL_ETIMEDOUT)
            break;
        /* A tap cannot take another waiter right now (SL_ELIMIT) or alts
         * could not allocate: fall back to one put at a time, same
         * deadline. */
        while (pending > 0) {
            sl__tap_t *t = self->taps[pending - 1];
            int prc = s_put_one(t->ch, v, deadline);
            if (prc == SL_ETIMEDOUT)
                break;
            s_settle(t, prc);
            pending--;
        }
        break;
    }
    for (size_t i = 0; i < pending; i++)
        s_settle(self->taps[i], SL_ETIMEDOUT);
    for (size_t i = 0; i < self->n; i++)
        sl__tap_release(&self->taps[i]);
    self->n = 0;
}

void sl__fanout_release(sl__fanout_t *self)
{
    for (size_t i = 0; i < self->n; i++)
        sl__tap_release(&self->taps[i]);
    free(self->taps);
    free(self->ops);
    self->taps = NULL;
    self->ops = NULL;
    self->n = self->cap = 0;
}
