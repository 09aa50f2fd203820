/* mult.c -- sl_mult: every value of one source to every tap (core.async's
 * mult/tap), with a bounded wait for slow taps.
 *
 * One coroutine takes from src and delivers each value to a snapshot of
 * the tap set (fanout.c). tap/untap come from any thread, so the set is
 * guarded by a mutex, held only to read or change the set, never while
 * parking. The handle and the coroutine each hold a reference to the mult;
 * the last one to let go frees it. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "fanout.h"
#include "sluice/ops.h"
#include "sluice/sched.h"
#include "util.h"

struct sl_mult {
    atomic_int refs;          /* the caller's handle + the running loop    */
    sl_chan_t *src;           /* owned reference                           */
    int64_t timeout_ms;
    pthread_mutex_t lock;     /* guards everything below                   */
    sl__tapset_t taps;
    bool src_done;            /* src closed and drained; loop has ended    */
    uint64_t dropped;         /* values taken while there were no taps     */
};

static void s_mult_release(sl_mult_t *m)
{
    if (atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel) != 1)
        return;
    sl__tapset_release(&m->taps);
    pthread_mutex_destroy(&m->lock);
    sl_chan_destroy(&m->src);
    free(m);
}

static void *s_mult_run(void *arg)
{
    sl_mult_t *m = arg;
    sl__fanout_t out = {0};
    void *v;
    while (sl__ops_take(m->src, &v) == SL_OK) {
        int64_t deadline = sl_deadline_ms(m->timeout_ms);
        for (;;) {
            pthread_mutex_lock(&m->lock);
            sl__tapset_purge(&m->taps);
            int rc = sl__fanout_stage(&out, &m->taps);
            if (rc == SL_OK && out.n == 0)
                m->dropped++;
            pthread_mutex_unlock(&m->lock);
            if (rc == SL_OK)
                break;
            sl__ops_backoff(); /* out of memory: wait, do not lose v */
        }
        if (out.n > 0)
            sl__fanout_deliver(&out, v, deadline);
    }
    sl__fanout_release(&out);
    pthread_mutex_lock(&m->lock);
    m->src_done = true;
    for (size_t i = 0; i < m->taps.n; i++)
        if (m->taps.v[i]->close_on_done)
            sl_chan_close(m->taps.v[i]->ch);
    pthread_mutex_unlock(&m->lock);
    s_mult_release(m);
    return NULL;
}

sl_mult_t *sl_mult_new(sl_chan_t *src, int64_t tap_timeout_ms)
{
    if (!src)
        return NULL;
    sl_mult_t *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    if (pthread_mutex_init(&m->lock, NULL) != 0) {
        free(m);
        return NULL;
    }
    m->src = sl_chan_ref(src);
    m->timeout_ms = tap_timeout_ms;
    atomic_init(&m->refs, 2);
    if (sl__ops_go(s_mult_run, m, 0) != SL_OK) {
        atomic_store(&m->refs, 1);
        s_mult_release(m);
        return NULL;
    }
    return m;
}

int sl_mult_tap(sl_mult_t *self, sl_chan_t *tap, bool close_tap)
{
    if (!self || !tap)
        return SL_EINVAL;
    int rc = SL_OK;
    pthread_mutex_lock(&self->lock);
    long i = sl__tapset_find(&self->taps, tap);
    if (self->src_done) {
        /* Nothing will ever arrive: honour close_tap at once so a reader
         * of the tap does not wait forever. */
        if (close_tap)
            sl_chan_close(tap);
    } else if (i >= 0) {
        self->taps.v[i]->close_on_done = close_tap; /* re-tap: update flag */
    } else {
        sl__tap_t *t = sl__tap_new(tap, close_tap);
        rc = t ? sl__tapset_add(&self->taps, t) : SL_ENOMEM;
        if (rc != SL_OK)
            sl__tap_release(&t);
    }
    pthread_mutex_unlock(&self->lock);
    return rc;
}

int sl_mult_untap(sl_mult_t *self, sl_chan_t *tap)
{
    if (!self || !tap)
        return SL_EINVAL;
    sl__tap_t *t = NULL;
    pthread_mutex_lock(&self->lock);
    long i = sl__tapset_find(&self->taps, tap);
    if (i >= 0)
        t = sl__tapset_take(&self->taps, (size_t)i);
    pthread_mutex_unlock(&self->lock);
    if (!t)
        return SL_EINVAL;
    sl__tap_release(&t);
    return SL_OK;
}

void sl_mult_untap_all(sl_mult_t *self)
{
    if (!self)
        return;
    pthread_mutex_lock(&self->lock);
    sl__tapset_t old = self->taps;
    self->taps = (sl__tapset_t){0};
    pthread_mutex_unlock(&self->lock);
    sl__tapset_release(&old);
}

uint64_t sl_mult_missed(sl_mult_t *self, sl_chan_t *tap)
{
    uint64_t n = 0;
    if (!self || !tap)
        return 0;
    pthread_mutex_lock(&self->lock);
    long i = sl__tapset_find(&self->taps, tap);
    if (i >= 0)
        n = atomic_load_explicit(&self->taps.v[i]->missed, memory_order_relaxed);
    pthread_mutex_unlock(&self->lock);
    return n;
}

uint64_t sl_mult_dropped(sl_mult_t *self)
{
    if (!self)
        return 0;
    pthread_mutex_lock(&self->lock);
    uint64_t n = self->dropped;
    pthread_mutex_unlock(&self->lock);
    return n;
}

void sl_mult_destroy(sl_mult_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    s_mult_release(*self_p);
    *self_p = NULL;
}
