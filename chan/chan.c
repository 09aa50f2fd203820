/* chan.c -- channels: buffers, put/take in every form, alts, close,
 * timeout channels and the eventfd bridge.
 *
 * One lock per channel guards its buffer, its two wait queues and its
 * counters. An operation first tries to complete under the lock (hand a
 * value to a waiting peer, or use the buffer); if it cannot and may wait,
 * it links a waiter into the channel's queue and parks (see park.h). A
 * waiting peer is completed only after claiming its park, so an alts
 * waiting on several channels commits exactly once. Wake-ups are issued
 * after the lock is released.
 *
 * Fixed buffers add a lock-free path: the buffer is a ring of sequence-
 * stamped slots with the put position (tail) and take position (head) on
 * their own cache lines, so a producer and a consumer on two cores do not
 * fight over the lock for every value. Closing sets a mark bit in tail. An
 * operation takes the lock only when it cannot complete in the ring or
 * when someone is queued: each side, after its ring move, reads the other
 * side's queue length, and a waiter, after queueing, retries the ring; with
 * sequentially consistent ordering one of the two always sees the other,
 * so no wake-up is lost. A queued waiter that is woken but loses its value
 * or slot to a lock-free peer is completed with SL__RETRY and runs again.
 *
 * Invariants (sl_chan_check):
 *   - takers wait only while nothing is takeable: takes non-empty implies
 *     count == 0 and no promise value;
 *   - puts wait only while the buffer refuses: puts non-empty implies the
 *     channel is unbuffered or a full fixed buffer;
 *   - for ring buffers, puts == takes + dropped + count. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "park.h"
#include "sluice/chan.h"
#include "timer.h"

typedef struct {
    sl__waiter_t *head, *tail;
    _Atomic size_t n;      /* written under the lock, read lock-free */
    bool sc;               /* fixed buffer: n must be updated seq_cst  */
} sl__waitq_t;

typedef struct {
    _Atomic uint64_t seq;  /* pos when free for put pos; pos+1 when full */
    void *val;
} sl__slot_t;

#define SL__MARK (UINT64_C(1) << 63) /* in tail: closed to puts */
enum { SL__RING_OK, SL__RING_FULL, SL__RING_EMPTY, SL__RING_CLOSED };

struct sl_chan {
    sl__lock_t lock;
    _Atomic uint32_t refs;
    sl_buf_t kind;
    bool closed;
    bool has_value;        /* promise: delivered                          */
    bool fd_on[2];         /* eventfd currently signalled                 */
    int fd[2];             /* [0] readable, [1] writable; -1 if not made  */
    size_t cap;
    size_t head, count;    /* ring state                                  */
    void *value;           /* promise value                               */
    size_t max_pending;
    sl__waitq_t puts, takes;
    uint64_t nput, ntake, ndrop;
    /* SL_BUF_FIXED only: the lock-free ring */
    uint64_t ndirect;      /* hand-offs that bypassed the ring (locked)    */
    sl__slot_t *slots;
    size_t nslots;         /* max(cap, 2): with one slot, "full" and "free
                              for the next lap" would carry the same stamp */
    size_t mask;           /* nslots - 1 when a power of two, else 0       */
    _Atomic uint32_t fast; /* 0 once an eventfd exists: every op locks     */
    _Alignas(64) _Atomic uint64_t lf_tail;
    _Alignas(64) _Atomic uint64_t lf_head;
    _Alignas(64) void *ring[]; /* cap slots for dropping/sliding buffers  */
};

/* --- wait queues ------------------------------------------------------- */

static void s_q_push(sl__waitq_t *q, sl__waiter_t *w)
{
    w->next = NULL;
    w->prev = q->tail;
    if (q->tail)
        q->tail->next = w;
    else
        q->head = w;
    q->tail = w;
    w->linked = true;
    /* With a lock-free ring the increment is half of the lost-wake-up
     * handshake and must be seq_cst; otherwise the lock orders it. */
    if (q->sc)
        atomic_fetch_add(&q->n, 1);
    else
        atomic_store_explicit(&q->n, atomic_load_explicit(&q->n, memory_order_relaxed) + 1,
                              memory_order_relaxed);
}

static void s_q_unlink(sl__waitq_t *q, sl__waiter_t *w)
{
    if (!w->linked)
        return;
    if (w->prev)
        w->prev->next = w->next;
    else
        q->head = w->next;
    if (w->next)
        w->next->prev = w->prev;
    else
        q->tail = w->prev;
    w->prev = w->next = NULL;
    w->linked = false;
    if (q->sc)
        atomic_fetch_sub(&q->n, 1);
    else
        atomic_store_explicit(&q->n, atomic_load_explicit(&q->n, memory_order_relaxed) - 1,
                              memory_order_relaxed);
}

/* Claim the first live waiter of q and complete it with (status, val);
 * stale waiters (claimed elsewhere: another alts branch, a deadline) are
 * unlinked on the way. Returns the waiter, queued on *wake, or NULL. */
static sl__waiter_t *s_q_claim(sl__waitq_t *q)
{
    sl__waiter_t *w;
    while ((w = q->head)) {
        s_q_unlink(q, w);
        if (sl__park_claim(w->park))
            return w;
    }
    return NULL;
}

/* Fill in a claimed waiter's result and queue it on *wake. */
static void s_complete(sl__waiter_t *w, int status, void *val, sl__waiter_t **wake)
{
    sl__park_t *p = w->park;
    p->index = w->index;
    p->status = status;
    p->val = val;
    w->wnext = *wake;
    *wake = w;
}

static sl__waiter_t *s_q_commit(sl__waitq_t *q, int status, void *val, sl__waiter_t **wake)
{
    sl__waiter_t *w = s_q_claim(q);
    if (w)
        s_complete(w, status, val, wake);
    return w;
}

/* Unpark everything committed under a lock that is now released. */
static void s_wake(sl__waiter_t *wake)
{
    while (wake) {
        sl__waiter_t *next = wake->wnext;
        sl__unpark(wake->park); /* the waiter may vanish after this */
        wake = next;
    }
}

/* --- buffer ------------------------------------------------------------ */

static inline bool s_ring(const sl_chan_t *c)
{
    return c->kind == SL_BUF_FIXED || c->kind == SL_BUF_DROPPING || c->kind == SL_BUF_SLIDING;
}

static inline void s_ring_push(sl_chan_t *c, void *v)
{
    size_t i = c->head + c->count;
    if (i >= c->cap)
        i -= c->cap;
    c->ring[i] = v;
    c->count++;
}

static inline void *s_ring_pop(sl_chan_t *c)
{
    void *v = c->ring[c->head];
    if (++c->head == c->cap)
        c->head = 0;
    c->count--;
    return v;
}

/* --- the lock-free ring of fixed buffers ------------------------------- */

static inline sl__slot_t *s_slot(sl_chan_t *c, uint64_t pos)
{
    return &c->slots[c->mask ? (pos & c->mask) : (pos % c->nslots)];
}

/* A consistent (tail, head) pair: both positions as they were at one
 * instant, so that 0 <= tail - head <= cap. Lock-free moves between two
 * plain loads would break that; re-read until tail did not move. */
static void s_positions(sl_chan_t *c, uint64_t *tp, uint64_t *hp)
{
    uint64_t t, h;
    for (int tries = 0;; tries++) {
        t = atomic_load(&c->lf_tail) & ~SL__MARK;
        h = atomic_load(&c->lf_head);
        if ((atomic_load(&c->lf_tail) & ~SL__MARK) == t || tries == 16)
            break;
    }
    if (h > t) /* only after 16 racing tries: clamp */
        h = t;
    if (t - h > c->cap)
        h = t - c->cap;
    *tp = t;
    *hp = h;
}

static inline size_t s_fixed_count(sl_chan_t *c)
{
    uint64_t t, h;
    s_positions(c, &t, &h);
    return (size_t)(t - h);
}

static int s_lf_push(sl_chan_t *c, void *v)
{
    uint64_t pos = atomic_load_explicit(&c->lf_tail, memory_order_relaxed);
    for (;;) {
        if (pos & SL__MARK)
            return SL__RING_CLOSED;
        sl__slot_t *sl = s_slot(c, pos);
        int64_t dif = (int64_t)(atomic_load_explicit(&sl->seq, memory_order_acquire) - pos);
        if (dif == 0) {
            /* More slots than capacity (fixed(1)): the stamp alone does
             * not say full. */
            if (c->nslots != c->cap && pos - atomic_load(&c->lf_head) >= c->cap)
                return SL__RING_FULL;
            if (atomic_compare_exchange_weak_explicit(&c->lf_tail, &pos, pos + 1,
                                                      memory_order_seq_cst,
                                                      memory_order_relaxed)) {
                sl->val = v;
                atomic_store_explicit(&sl->seq, pos + 1, memory_order_release);
                return SL__RING_OK;
            }
        } else if (dif < 0) {
            /* Full, or a taker has moved head but not yet freed the slot. */
            if (pos - atomic_load(&c->lf_head) >= c->cap)
                return SL__RING_FULL;
            sl__cpu_relax();
            pos = atomic_load_explicit(&c->lf_tail, memory_order_relaxed);
        } else {
            pos = atomic_load_explicit(&c->lf_tail, memory_order_relaxed);
        }
    }
}

static int s_lf_pop(sl_chan_t *c, void **out)
{
    uint64_t pos = atomic_load_explicit(&c->lf_head, memory_order_relaxed);
    for (;;) {
        sl__slot_t *sl = s_slot(c, pos);
        int64_t dif =
            (int64_t)(atomic_load_explicit(&sl->seq, memory_order_acquire) - (pos + 1));
        if (dif == 0) {
            if (atomic_compare_exchange_weak_explicit(&c->lf_head, &pos, pos + 1,
                                                      memory_order_seq_cst,
                                                      memory_order_relaxed)) {
                *out = sl->val;
                atomic_store_explicit(&sl->seq, pos + c->nslots, memory_order_release);
                return SL__RING_OK;
            }
        } else if (dif < 0) {
            /* Empty, or a putter has moved tail but not yet filled the slot. */
            if ((atomic_load(&c->lf_tail) & ~SL__MARK) == pos)
                return SL__RING_EMPTY;
            sl__cpu_relax();
            pos = atomic_load_explicit(&c->lf_head, memory_order_relaxed);
        } else {
            pos = atomic_load_explicit(&c->lf_head, memory_order_relaxed);
        }
    }
}

/* Under the lock: give ring values to queued takers, oldest first. */
static void s_fixed_dispatch(sl_chan_t *c, sl__waiter_t **wake)
{
    while (c->takes.head && s_fixed_count(c) > 0) {
        sl__waiter_t *w = s_q_claim(&c->takes);
        if (!w)
            return;
        void *v;
        if (s_lf_pop(c, &v) == SL__RING_OK)
            s_complete(w, SL_OK, v, wake);
        else
            s_complete(w, SL__RETRY, NULL, wake); /* a lock-free taker won */
    }
}

/* Under the lock: move queued puts into free slots, oldest first. */
static void s_fixed_refill(sl_chan_t *c, sl__waiter_t **wake)
{
    while (!c->closed && c->puts.head && s_fixed_count(c) < c->cap) {
        sl__waiter_t *w = s_q_claim(&c->puts);
        if (!w)
            return;
        if (s_lf_push(c, w->val) == SL__RING_OK)
            s_complete(w, SL_OK, NULL, wake);
        else
            s_complete(w, SL__RETRY, NULL, wake); /* a lock-free putter won */
    }
}

/* --- eventfd bridge ---------------------------------------------------- */

static void s_fd_set(sl_chan_t *c, int i, bool on)
{
    if (c->fd[i] < 0 || c->fd_on[i] == on)
        return;
    uint64_t one = 1;
    ssize_t r;
    if (on) {
        do
            r = write(c->fd[i], &one, sizeof one);
        while (r < 0 && errno == EINTR);
    } else {
        do
            r = read(c->fd[i], &one, sizeof one);
        while (r < 0 && errno == EINTR);
    }
    c->fd_on[i] = on;
}

/* Bring the eventfds in line with the state; call before every unlock. */
static inline void s_fd_update(sl_chan_t *c)
{
    if (c->fd[0] < 0 && c->fd[1] < 0)
        return;
    size_t count = c->kind == SL_BUF_FIXED ? s_fixed_count(c) : c->count;
    bool readable = c->closed || count > 0 || c->has_value || c->puts.n > 0;
    bool writable = c->closed || c->takes.n > 0 || c->kind == SL_BUF_DROPPING ||
                    c->kind == SL_BUF_SLIDING || c->kind == SL_BUF_PROMISE ||
                    (c->kind == SL_BUF_FIXED && count < c->cap);
    s_fd_set(c, 0, readable);
    s_fd_set(c, 1, writable);
}

int sl_chan_fd(sl_chan_t *c, int which)
{
    if (!c || (which != SL_CHAN_READABLE && which != SL_CHAN_WRITABLE))
        return SL_EINVAL;
    int i = which == SL_CHAN_READABLE ? 0 : 1;
    int rc;
    sl__lock(&c->lock);
    if (c->fd[i] < 0) {
        int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (fd < 0) {
            sl__unlock(&c->lock);
            return SL_ESYS;
        }
        c->fd[i] = fd;
        c->fd_on[i] = false;
        atomic_store(&c->fast, 0); /* lock-free ops would skip the fd */
    }
    rc = c->fd[i];
    s_fd_update(c);
    sl__unlock(&c->lock);
    return rc;
}

/* --- lifecycle --------------------------------------------------------- */

sl_chan_t *sl_chan_new(sl_buf_t kind, size_t cap)
{
    size_t slots = 0;
    if (kind == SL_BUF_FIXED && cap == 0)
        kind = SL_BUF_NONE; /* (chan 0) in core.async: unbuffered */
    switch (kind) {
    case SL_BUF_NONE:
    case SL_BUF_PROMISE:
        if (cap != 0)
            return NULL;
        break;
    case SL_BUF_FIXED:
    case SL_BUF_DROPPING:
    case SL_BUF_SLIDING:
        if (cap == 0 || cap > ((size_t)1 << 32))
            return NULL;
        slots = kind == SL_BUF_FIXED ? 0 : cap;
        break;
    default:
        return NULL;
    }
    size_t size = (sizeof(sl_chan_t) + slots * sizeof(void *) + 63) & ~(size_t)63;
    sl_chan_t *c = aligned_alloc(64, size);
    if (!c)
        return NULL;
    memset(c, 0, size);
    if (kind == SL_BUF_FIXED) {
        size_t ns = cap < 2 ? 2 : cap;
        c->slots = aligned_alloc(64, (ns * sizeof(sl__slot_t) + 63) & ~(size_t)63);
        if (!c->slots) {
            free(c);
            return NULL;
        }
        for (size_t i = 0; i < ns; i++) {
            atomic_init(&c->slots[i].seq, i);
            c->slots[i].val = NULL;
        }
        c->nslots = ns;
        c->mask = (ns & (ns - 1)) == 0 ? ns - 1 : 0;
        atomic_init(&c->fast, 1);
        c->puts.sc = c->takes.sc = true;
    }
    atomic_init(&c->refs, 1);
    c->kind = kind;
    c->cap = kind == SL_BUF_PROMISE ? 1 : cap;
    c->fd[0] = c->fd[1] = -1;
    c->max_pending = SL_CHAN_MAX_PENDING_DEFAULT;
    return c;
}

sl_chan_t *sl_chan_ref(sl_chan_t *c)
{
    atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
    return c;
}

void sl_chan_destroy(sl_chan_t **cp)
{
    if (!cp || !*cp)
        return;
    sl_chan_t *c = *cp;
    *cp = NULL;
    if (atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) != 1)
        return;
    for (int i = 0; i < 2; i++)
        if (c->fd[i] >= 0)
            close(c->fd[i]);
    free(c->slots);
    free(c);
}

void sl_chan_set_max_pending(sl_chan_t *c, size_t n)
{
    sl__lock(&c->lock);
    c->max_pending = n ? n : SL_CHAN_MAX_PENDING_DEFAULT;
    sl__unlock(&c->lock);
}

void sl_chan_close(sl_chan_t *c)
{
    sl__waiter_t *wake = NULL;
    sl__lock(&c->lock);
    if (!c->closed) {
        c->closed = true;
        /* Waiting puts stay queued; their values remain takeable. Takers
         * wait only when nothing is takeable, so they get SL_ECLOSED --
         * except, in a fixed buffer, values a lock-free put slipped in
         * before the mark. */
        if (c->kind == SL_BUF_FIXED) {
            atomic_fetch_or(&c->lf_tail, SL__MARK);
            sl__waiter_t *w;
            void *v;
            while ((w = s_q_claim(&c->takes))) {
                if (s_lf_pop(c, &v) == SL__RING_OK)
                    s_complete(w, SL_OK, v, &wake);
                else
                    s_complete(w, SL_ECLOSED, NULL, &wake);
            }
        }
        while (s_q_commit(&c->takes, SL_ECLOSED, NULL, &wake))
            ;
    }
    s_fd_update(c);
    sl__unlock(&c->lock);
    s_wake(wake);
}

/* --- the two moves, under the lock --------------------------------------
 * Return SL_OK or SL_ECLOSED when done, SL_EAGAIN when the caller would
 * have to wait. */

static int s_try_put(sl_chan_t *c, void *v, sl__waiter_t **wake)
{
    if (c->closed)
        return SL_ECLOSED;
    if (c->kind == SL_BUF_PROMISE) {
        if (c->has_value) {
            c->ndrop++; /* later deliveries are ignored, as core.async */
        } else {
            c->has_value = true;
            c->value = v;
            while (s_q_commit(&c->takes, SL_OK, v, wake))
                c->ntake++;
        }
        c->nput++;
        return SL_OK;
    }
    if (c->kind == SL_BUF_FIXED) {
        s_fixed_dispatch(c, wake);
        s_fixed_refill(c, wake); /* queued puts go before this one */
        if (c->takes.head && s_fixed_count(c) == 0 && s_q_commit(&c->takes, SL_OK, v, wake)) {
            c->ndirect++;
            return SL_OK;
        }
        if (c->puts.head)
            return SL_EAGAIN;
        return s_lf_push(c, v) == SL__RING_OK ? SL_OK : SL_EAGAIN;
    }
    if (c->takes.head && s_q_commit(&c->takes, SL_OK, v, wake)) {
        c->nput++;
        c->ntake++;
        return SL_OK;
    }
    switch (c->kind) {
    case SL_BUF_FIXED:
        if (c->count == c->cap)
            return SL_EAGAIN;
        break;
    case SL_BUF_DROPPING:
        if (c->count == c->cap) {
            c->nput++;
            c->ndrop++;
            return SL_OK;
        }
        break;
    case SL_BUF_SLIDING:
        if (c->count == c->cap) {
            (void)s_ring_pop(c);
            c->ndrop++;
        }
        break;
    default:
        return SL_EAGAIN; /* unbuffered, nobody waiting to take */
    }
    s_ring_push(c, v);
    c->nput++;
    return SL_OK;
}

static int s_try_take(sl_chan_t *c, void **out, sl__waiter_t **wake)
{
    if (c->kind == SL_BUF_PROMISE) {
        if (c->has_value) {
            *out = c->value;
            c->ntake++;
            return SL_OK;
        }
        return c->closed ? SL_ECLOSED : SL_EAGAIN;
    }
    if (c->kind == SL_BUF_FIXED) {
        sl__waiter_t *w;
        if (s_lf_pop(c, out) == SL__RING_OK) {
            s_fixed_refill(c, wake);
            return SL_OK;
        }
        /* Empty ring, yet puts wait: only after close (no refill then). */
        if (c->puts.head && (w = s_q_commit(&c->puts, SL_OK, NULL, wake))) {
            *out = w->val;
            c->ndirect++;
            return SL_OK;
        }
        return c->closed ? SL_ECLOSED : SL_EAGAIN;
    }
    if (c->count > 0) {
        *out = s_ring_pop(c);
        c->ntake++;
        /* A slot opened: move the first waiting put into the buffer. */
        sl__waiter_t *w;
        if (c->puts.head && (w = s_q_commit(&c->puts, SL_OK, NULL, wake))) {
            s_ring_push(c, w->val);
            c->nput++;
        }
        return SL_OK;
    }
    sl__waiter_t *w;
    if (c->puts.head && (w = s_q_commit(&c->puts, SL_OK, NULL, wake))) {
        *out = w->val;
        c->nput++;
        c->ntake++;
        return SL_OK;
    }
    return c->closed ? SL_ECLOSED : SL_EAGAIN;
}

/* --- single-channel operations ----------------------------------------- */

/* Lock-free attempt on a fixed buffer. Returns SL_OK, or SL_EAGAIN to
 * take the locked path. Skipped while others are queued on our side, so
 * waiters keep their turn. */
static inline int s_fast(sl_chan_t *c, bool is_put, void **val)
{
    if (!atomic_load_explicit(&c->fast, memory_order_relaxed))
        return SL_EAGAIN;
    if (is_put) {
        if (atomic_load(&c->puts.n) || s_lf_push(c, *val) != SL__RING_OK)
            return SL_EAGAIN;
        /* seq_cst after the tail CAS: sees any taker queued before it. */
        if (atomic_load(&c->takes.n) || !atomic_load(&c->fast)) {
            sl__waiter_t *wake = NULL;
            sl__lock(&c->lock);
            s_fixed_dispatch(c, &wake);
            s_fd_update(c);
            sl__unlock(&c->lock);
            s_wake(wake);
        }
    } else {
        if (atomic_load(&c->takes.n) || s_lf_pop(c, val) != SL__RING_OK)
            return SL_EAGAIN;
        if (atomic_load(&c->puts.n) || !atomic_load(&c->fast)) {
            sl__waiter_t *wake = NULL;
            sl__lock(&c->lock);
            s_fixed_refill(c, &wake);
            s_fd_update(c);
            sl__unlock(&c->lock);
            s_wake(wake);
        }
    }
    return SL_OK;
}

static int s_op(sl_chan_t *c, bool is_put, void **val, int64_t deadline, bool may_wait)
{
    if (!c || !val)
        return SL_EINVAL;
    if (c->kind == SL_BUF_FIXED && s_fast(c, is_put, val) == SL_OK)
        return SL_OK;
    sl__waitq_t *q = is_put ? &c->puts : &c->takes;
    for (;;) {
        sl__waiter_t *wake = NULL;
        int rc;
        sl__lock(&c->lock);
        rc = is_put ? s_try_put(c, *val, &wake) : s_try_take(c, val, &wake);
        if (rc != SL_EAGAIN || !may_wait)
            goto out;
        if (deadline != SL_FOREVER && sl_now() >= deadline) {
            rc = SL_ETIMEDOUT;
            goto out;
        }
        if (q->n >= c->max_pending) {
            rc = SL_ELIMIT;
            goto out;
        }
        sl__park_t p;
        if ((rc = sl__park_init(&p)) != SL_OK)
            goto out;
        sl__waiter_t w = {.park = &p, .val = is_put ? *val : NULL, .index = 0};
        s_q_push(q, &w);
        if (c->kind == SL_BUF_FIXED) {
            /* Re-check after queueing (see the top of this file); this
             * may complete our own park, which then returns at once. */
            if (is_put)
                s_fixed_refill(c, &wake);
            else
                s_fixed_dispatch(c, &wake);
        }
        s_fd_update(c);
        sl__unlock(&c->lock);
        s_wake(wake);

        sl__park_wait(&p, deadline);

        if (p.index < 0) { /* the deadline won: we may still be queued */
            sl__lock(&c->lock);
            s_q_unlink(q, &w);
            s_fd_update(c);
            sl__unlock(&c->lock);
            return SL_ETIMEDOUT;
        }
        if (p.status == SL__RETRY)
            continue;
        if (!is_put && p.status == SL_OK)
            *val = p.val;
        return p.status;
    out:
        s_fd_update(c);
        sl__unlock(&c->lock);
        s_wake(wake);
        return rc;
    }
}

int sl_put(sl_chan_t *c, void *v) { return s_op(c, true, &v, SL_FOREVER, true); }
int sl_put_until(sl_chan_t *c, void *v, int64_t d) { return s_op(c, true, &v, d, true); }
int sl_offer(sl_chan_t *c, void *v) { return s_op(c, true, &v, SL_FOREVER, false); }
int sl_take(sl_chan_t *c, void **out) { return s_op(c, false, out, SL_FOREVER, true); }
int sl_take_until(sl_chan_t *c, void **out, int64_t d) { return s_op(c, false, out, d, true); }
int sl_poll(sl_chan_t *c, void **out) { return s_op(c, false, out, SL_FOREVER, false); }

/* --- callback operations ----------------------------------------------- */

typedef struct {
    sl__task_t task;
    sl__park_t park;
    sl__waiter_t w;
    sl_chan_t *chan;   /* reference held until the callback has run */
    sl_put_fn put_cb;
    sl_take_fn take_cb;
    void *arg;
    void *put_val;
    bool admitted;     /* was queued once: later retries are not refused */
} sl__cbop_t;

static int s_cb_issue(sl__cbop_t *op, sl_chan_t *c, bool is_put, sl__worker_t *worker);

static _Atomic uint64_t s_cb_pending; /* callback ops not yet run */

uint64_t sl__cb_pending(void)
{
    return atomic_load(&s_cb_pending);
}

static void s_cbop_run(sl__task_t *t)
{
    sl__cbop_t *op = (sl__cbop_t *)t;
    if (op->park.status == SL__RETRY) {
        /* Lost the race for a fixed buffer slot: queue again (the pending
         * limit cannot refuse an operation that was already admitted). */
        sl_chan_t *c = op->chan;
        op->chan = NULL;
        s_cb_issue(op, c, op->put_cb != NULL, op->park.worker);
        sl_chan_destroy(&c);
        return;
    }
    if (op->put_cb)
        op->put_cb(op->park.status, op->arg);
    else
        op->take_cb(op->park.status, op->park.status == SL_OK ? op->park.val : NULL, op->arg);
    sl_chan_destroy(&op->chan);
    free(op);
    atomic_fetch_sub(&s_cb_pending, 1);
}

/* Try op on c; queue it, or submit it completed. A put on a closed
 * channel completes (with SL_ECLOSED, as in sl_alts) rather than fails, so
 * its callback runs like any other. On failure (SL_ELIMIT) op is left
 * untouched for the caller to free. */
static int s_cb_issue(sl__cbop_t *op, sl_chan_t *c, bool is_put, sl__worker_t *worker)
{
    atomic_store_explicit(&op->park.done, 0, memory_order_relaxed);
    op->park.wake_kind = SL__WAKE_TASK;
    op->park.who = &op->task;
    op->park.worker = worker;
    op->park.index = -1;
    op->park.status = SL_OK;
    memset(&op->w, 0, sizeof op->w);
    op->w.park = &op->park;
    op->w.val = op->put_val;

    sl__waiter_t *wake = NULL;
    void *got = NULL;
    sl__waitq_t *q = is_put ? &c->puts : &c->takes;
    bool done = false;
    sl__lock(&c->lock);
    int rc = is_put ? s_try_put(c, op->put_val, &wake) : s_try_take(c, &got, &wake);
    if (rc == SL_EAGAIN) {
        if (q->n >= c->max_pending && !op->admitted) {
            rc = SL_ELIMIT;
        } else {
            op->chan = sl_chan_ref(c);
            s_q_push(q, &op->w);
            if (c->kind == SL_BUF_FIXED) {
                if (is_put)
                    s_fixed_refill(c, &wake);
                else
                    s_fixed_dispatch(c, &wake);
            }
            rc = SL_OK; /* completes later, through the queue */
            op->admitted = true;
        }
    } else {
        /* Done now: SL_OK, or SL_ECLOSED (a put on a closed channel, a take
         * on a closed and drained one). The callback still runs on a
         * worker, never on the caller's stack. */
        atomic_store(&op->park.done, 1);
        op->park.status = rc;
        op->park.val = got;
        op->chan = sl_chan_ref(c);
        rc = SL_OK;
        done = true;
        op->admitted = true;
    }
    s_fd_update(c);
    sl__unlock(&c->lock);
    s_wake(wake);
    if (done)
        sl__sched_submit(worker, &op->task); /* op may be gone after this */
    return rc;
}

static int s_cb(sl_chan_t *c, bool is_put, void *v, sl_put_fn pcb, sl_take_fn tcb, void *arg)
{
    if (!c || (is_put ? !pcb : !tcb))
        return SL_EINVAL;
    sl__worker_t *worker = sl__current_worker();
    if (!worker && !(worker = sl__pick_worker()))
        return SL_ESYS;
    sl__cbop_t *op = calloc(1, sizeof *op);
    if (!op)
        return SL_ENOMEM;
    op->task.kind = SL__TASK_CALL;
    op->task.call = s_cbop_run;
    op->put_cb = pcb;
    op->take_cb = tcb;
    op->arg = arg;
    op->put_val = v;
    atomic_fetch_add(&s_cb_pending, 1);
    int rc = s_cb_issue(op, c, is_put, worker);
    if (rc != SL_OK) {
        free(op);
        atomic_fetch_sub(&s_cb_pending, 1);
    }
    return rc;
}

int sl_put_cb(sl_chan_t *c, void *v, sl_put_fn cb, void *arg)
{
    return s_cb(c, true, v, cb, NULL, arg);
}

int sl_take_cb(sl_chan_t *c, sl_take_fn cb, void *arg)
{
    return s_cb(c, false, NULL, NULL, cb, arg);
}

/* --- alts -------------------------------------------------------------- */

#define SL__ALTS_STACK 8

static uint64_t s_rand(void)
{
    static __thread uint64_t x;
    if (!x)
        x = (uint64_t)sl_now() ^ ((uint64_t)(uintptr_t)&x << 16) ^ 0x9e3779b97f4a7c15ULL;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return x;
}

static int s_ptr_cmp(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t) * (sl_chan_t *const *)a, y = (uintptr_t) * (sl_chan_t *const *)b;
    return x < y ? -1 : x > y;
}

static void s_lock_all(sl_chan_t **locks, size_t n)
{
    for (size_t i = 0; i < n; i++)
        sl__lock(&locks[i]->lock);
}

static void s_unlock_all(sl_chan_t **locks, size_t n)
{
    for (size_t i = n; i-- > 0;) {
        s_fd_update(locks[i]);
        sl__unlock(&locks[i]->lock);
    }
}

int sl_alts(sl_alt_t *ops, size_t n, int flags, int64_t deadline)
{
    if (!ops || n == 0)
        return SL_EINVAL;
    for (size_t i = 0; i < n; i++)
        if (!ops[i].chan)
            return SL_EINVAL;

    size_t order_s[SL__ALTS_STACK];
    sl_chan_t *locks_s[SL__ALTS_STACK];
    sl__waiter_t ws_s[SL__ALTS_STACK];
    size_t *order = order_s;
    sl_chan_t **locks = locks_s;
    sl__waiter_t *ws = ws_s;
    if (n > SL__ALTS_STACK) {
        order = malloc(n * sizeof *order);
        locks = malloc(n * sizeof *locks);
        ws = malloc(n * sizeof *ws);
        if (!order || !locks || !ws) {
            free(order);
            free(locks);
            free(ws);
            return SL_ENOMEM;
        }
    }

    /* Poll order: as given with priority, else a uniform shuffle. */
    for (size_t i = 0; i < n; i++)
        order[i] = i;
    if (!(flags & SL_ALTS_PRIORITY))
        for (size_t i = n - 1; i > 0; i--) {
            size_t j = (size_t)(s_rand() % (i + 1));
            size_t t = order[i];
            order[i] = order[j];
            order[j] = t;
        }

    /* Lock order: by address, each channel once, so two alts over the
     * same channels cannot deadlock. */
    for (size_t i = 0; i < n; i++)
        locks[i] = ops[i].chan;
    qsort(locks, n, sizeof *locks, s_ptr_cmp);
    size_t nl = 0;
    for (size_t i = 0; i < n; i++)
        if (nl == 0 || locks[nl - 1] != locks[i])
            locks[nl++] = locks[i];

    sl__waiter_t *wake;
    int rc;
retry:
    wake = NULL;
    rc = SL_EAGAIN;
    s_lock_all(locks, nl);
    for (size_t k = 0; k < n; k++) {
        size_t i = order[k];
        void *v = NULL;
        rc = ops[i].is_put ? s_try_put(ops[i].chan, ops[i].val, &wake)
                           : s_try_take(ops[i].chan, &v, &wake);
        if (rc != SL_EAGAIN) {
            ops[i].status = rc;
            if (!ops[i].is_put && rc == SL_OK)
                ops[i].val = v;
            rc = (int)i;
            break;
        }
    }
    if (rc == SL_EAGAIN && !(flags & SL_ALTS_DEFAULT)) {
        sl__park_t p;
        if (deadline != SL_FOREVER && sl_now() >= deadline)
            rc = SL_ETIMEDOUT;
        for (size_t i = 0; rc == SL_EAGAIN && i < n; i++) {
            sl_chan_t *c = ops[i].chan;
            if ((ops[i].is_put ? c->puts.n : c->takes.n) >= c->max_pending)
                rc = SL_ELIMIT;
        }
        if (rc == SL_EAGAIN && (rc = sl__park_init(&p)) == SL_OK) {
            for (size_t i = 0; i < n; i++) {
                memset(&ws[i], 0, sizeof ws[i]);
                ws[i].park = &p;
                ws[i].index = (int)i;
                ws[i].val = ops[i].is_put ? ops[i].val : NULL;
                s_q_push(ops[i].is_put ? &ops[i].chan->puts : &ops[i].chan->takes, &ws[i]);
            }
            for (size_t i = 0; i < n; i++) { /* re-check, as in s_op */
                if (ops[i].chan->kind != SL_BUF_FIXED)
                    continue;
                if (ops[i].is_put)
                    s_fixed_refill(ops[i].chan, &wake);
                else
                    s_fixed_dispatch(ops[i].chan, &wake);
            }
            s_unlock_all(locks, nl);
            s_wake(wake);
            wake = NULL;

            sl__park_wait(&p, deadline);

            s_lock_all(locks, nl);
            for (size_t i = 0; i < n; i++)
                s_q_unlink(ops[i].is_put ? &ops[i].chan->puts : &ops[i].chan->takes, &ws[i]);
            if (p.index < 0) {
                rc = SL_ETIMEDOUT;
            } else if (p.status == SL__RETRY) {
                s_unlock_all(locks, nl);
                goto retry; /* nothing committed: run the whole alts again */
            } else {
                rc = p.index;
                ops[rc].status = p.status;
                if (!ops[rc].is_put && p.status == SL_OK)
                    ops[rc].val = p.val;
            }
        }
    }
    s_unlock_all(locks, nl);
    s_wake(wake);
    if (n > SL__ALTS_STACK) {
        free(order);
        free(locks);
        free(ws);
    }
    return rc;
}

/* --- timeout channels -------------------------------------------------- */

typedef struct {
    sl__timer_t t;
    sl_chan_t *chan;
} sl__tmo_t;

static void s_tmo_fire(sl__timer_t *t)
{
    sl__tmo_t *tmo = (sl__tmo_t *)t;
    sl_chan_close(tmo->chan);
    sl_chan_destroy(&tmo->chan);
    free(tmo);
}

sl_chan_t *sl_timeout(int64_t ms)
{
    sl_chan_t *c = sl_chan_new(SL_BUF_NONE, 0);
    sl__tmo_t *tmo = malloc(sizeof *tmo);
    if (!c || !tmo) {
        sl_chan_destroy(&c);
        free(tmo);
        return NULL;
    }
    memset(tmo, 0, sizeof *tmo);
    tmo->chan = sl_chan_ref(c);
    tmo->t.when = sl_now() + (ms > 0 ? ms : 0) * 1000000;
    tmo->t.fire = s_tmo_fire;
    tmo->t.under_lock = false;
    sl__timer_add(&tmo->t);
    return c;
}

/* --- introspection ----------------------------------------------------- */

void sl_chan_stats(sl_chan_t *c, sl_chan_stats_t *out)
{
    sl__lock(&c->lock);
    out->kind = c->kind;
    out->count = c->kind == SL_BUF_PROMISE ? (size_t)c->has_value : c->count;
    out->capacity = c->kind == SL_BUF_NONE ? 0 : c->cap;
    out->pending_puts = c->puts.n;
    out->pending_takes = c->takes.n;
    out->puts = c->nput;
    out->takes = c->ntake;
    out->dropped = c->ndrop;
    if (c->kind == SL_BUF_FIXED) {
        /* Ring positions count lock-free moves. */
        uint64_t t, h;
        s_positions(c, &t, &h);
        out->count = (size_t)(t - h);
        out->puts = t + c->ndirect;
        out->takes = h + c->ndirect;
    }
    out->closed = c->closed;
    sl__unlock(&c->lock);
}

int sl_chan_check(sl_chan_t *c)
{
    int bad = 0;
    sl__lock(&c->lock);
    size_t n = 0;
    for (sl__waiter_t *w = c->puts.head; w; w = w->next)
        n++;
    bad |= n != c->puts.n;
    n = 0;
    for (sl__waiter_t *w = c->takes.head; w; w = w->next)
        n++;
    bad |= n != c->takes.n;
    if (c->kind == SL_BUF_FIXED) {
        uint64_t t, h;
        s_positions(c, &t, &h);
        bad |= t - h > c->cap;
    } else if (s_ring(c)) {
        bad |= c->count > c->cap || c->head >= c->cap;
        bad |= c->nput != c->ntake + c->ndrop + c->count;
        bad |= c->takes.n > 0 && c->count > 0 && !c->closed;
        bad |= c->puts.n > 0 && c->kind != SL_BUF_FIXED;
    }
    sl__unlock(&c->lock);
    return bad ? -1 : 0;
}
