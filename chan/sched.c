/* sched.c -- the M:N scheduler: worker threads running coroutines, and
 * parking/unparking for coroutines and plain threads.
 *
 * Each worker owns a local run queue (touched only by its thread) and an
 * inbox other threads push into under a lock. A coroutine is pinned to the
 * worker it was spawned on. When a coroutine parks, the worker switches
 * straight to the next local coroutine (no trip through the scheduler
 * loop) for up to SL__DIRECT_BUDGET switches, then returns to the loop so
 * the inbox and callbacks are served.
 *
 * Coroutine park states (sl__coro_t.pstate):
 *
 *     RUNNING(0) --sl__unpark--> PERMIT(1) --s_coro_park--> RUNNING(0)
 *     RUNNING(0) --s_coro_park--> PARKED(2) --sl__unpark (queue it)--> RUNNING(0)
 *
 * Because a coroutine only ever resumes on its own worker, and that worker
 * is the thread executing the switch away, nobody can resume it before the
 * switch completes: no post-switch handshake is needed. */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "coro.h"
#include "sched_int.h"
#include "timer.h"

#define SL__DIRECT_BUDGET 64
#define SL__STACK_CACHE 1024 /* spare stacks a worker keeps when idle      */
#define SL__STACK_BATCH 64   /* stacks mapped at once                      */
#define SL__TRIM_BATCH 256   /* stacks unmapped per idle pass              */
#define SL__TRIM_IDLE_NS 1000000000LL /* idle time before trimming        */
/* An idle worker spins a while before it sleeps, because a futex wake-up
 * costs far more than a short spin when work comes back at once (ping-pong
 * between coroutines). How long adapts per worker: a spin that found work
 * doubles the next one, a spin that ended in sleep halves it, so a worker
 * whose work comes every millisecond (timers, slow handlers) stops burning
 * CPU that other processes on the machine need. */
#define SL__SPIN_MAX 4000
#define SL__SPIN_MIN 32

struct sl__worker {
    int id;
    pthread_t thread;
    sl__fiber_t sched;          /* the worker thread's own stack            */
    sl__coro_t *current;        /* coroutine running now, or NULL           */
    sl__coro_t *dead;           /* coroutine that just returned             */
    sl__task_t *head, *tail;    /* local run queue (owner thread only)      */
    int budget;                 /* direct switches before visiting the loop */
    int spin;                   /* idle spin length now, see SL__SPIN_MAX   */
    struct sl__ltimer **lt;     /* deadlines of this worker's parked
                                   coroutines: a binary min-heap, owner only */
    size_t nlt, lt_cap;
    _Atomic uint64_t switches;  /* written by owner only (relaxed)          */

    sl__lock_t inbox_lock;      /* inbox: pushed by other threads           */
    sl__task_t *in_head, *in_tail;
    _Atomic uint32_t in_count;
    _Atomic uint32_t sleeping;
    _Atomic uint32_t wake_word;

    sl__lock_t cache_lock;      /* spare stacks                             */
    sl__coro_t *cache;
    _Atomic size_t cache_n;     /* written under cache_lock               */
    char pad[64];
};

static struct {
    pthread_mutex_t start_lock;
    _Atomic int running;
    _Atomic int stopping;
    sl__worker_t *workers;
    int nworkers;
    size_t stack_size;
    size_t max_coroutines;
    int guard_pages;
    int blocking_threads;
    _Atomic uint64_t rr;
    _Atomic uint64_t live;
    _Atomic uint64_t spawned;
} s_s = {.start_lock = PTHREAD_MUTEX_INITIALIZER};

static __thread sl__worker_t *s_worker;   /* set on worker threads only */
static __thread sl__tpark_t s_tpark;      /* plain threads park here    */

/* --- futex and lock ---------------------------------------------------- */

void sl__futex_wait(_Atomic uint32_t *addr, uint32_t expect, int64_t deadline)
{
    struct timespec ts, *tsp = NULL;
    if (deadline >= 0) {
        int64_t left = deadline - sl_now();
        if (left <= 0)
            return;
        ts.tv_sec = (time_t)(left / 1000000000);
        ts.tv_nsec = (long)(left % 1000000000);
        tsp = &ts;
    }
    /* EINTR, EAGAIN and timeouts all mean: caller re-checks. */
    syscall(SYS_futex, addr, FUTEX_WAIT_PRIVATE, expect, tsp, NULL, 0);
}

void sl__futex_wake(_Atomic uint32_t *addr, int n)
{
    syscall(SYS_futex, addr, FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0);
}

void sl__lock_slow(sl__lock_t *l)
{
    for (int i = 0; i < 100; i++) {
        uint32_t c = 0;
        if (atomic_load_explicit(&l->v, memory_order_relaxed) == 0 &&
            atomic_compare_exchange_weak_explicit(&l->v, &c, 1, memory_order_acquire,
                                                  memory_order_relaxed))
            return;
        sl__cpu_relax();
    }
    while (atomic_exchange_explicit(&l->v, 2, memory_order_acquire) != 0)
        sl__futex_wait(&l->v, 2, -1);
}

/* --- clock ------------------------------------------------------------- */

int64_t sl_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t sl_deadline_ms(int64_t ms)
{
    return ms < 0 ? SL_FOREVER : sl_now() + ms * 1000000;
}

/* --- run queues -------------------------------------------------------- */

static void s_local_push(sl__worker_t *w, sl__task_t *t)
{
    t->next = NULL;
    if (w->tail)
        w->tail->next = t;
    else
        w->head = t;
    w->tail = t;
}

static sl__task_t *s_local_pop(sl__worker_t *w)
{
    sl__task_t *t = w->head;
    if (t) {
        w->head = t->next;
        if (!w->head)
            w->tail = NULL;
        t->next = NULL;
    }
    return t;
}

static void s_drain_inbox(sl__worker_t *w)
{
    if (atomic_load_explicit(&w->in_count, memory_order_acquire) == 0)
        return;
    sl__lock(&w->inbox_lock);
    sl__task_t *h = w->in_head, *t = w->in_tail;
    w->in_head = w->in_tail = NULL;
    atomic_store_explicit(&w->in_count, 0, memory_order_relaxed);
    sl__unlock(&w->inbox_lock);
    if (!h)
        return;
    if (w->tail)
        w->tail->next = h;
    else
        w->head = h;
    w->tail = t;
}

void sl__sched_submit(sl__worker_t *w, sl__task_t *t)
{
    if (w == s_worker) {
        s_local_push(w, t);
        return;
    }
    t->next = NULL;
    sl__lock(&w->inbox_lock);
    if (w->in_tail)
        w->in_tail->next = t;
    else
        w->in_head = t;
    w->in_tail = t;
    atomic_fetch_add(&w->in_count, 1); /* seq_cst: pairs with s_idle */
    sl__unlock(&w->inbox_lock);
    if (atomic_load(&w->sleeping)) {
        atomic_store(&w->wake_word, 1);
        sl__futex_wake(&w->wake_word, 1);
    }
}

sl__worker_t *sl__current_worker(void)
{
    return s_worker;
}

/* --- coroutine lifecycle ----------------------------------------------- */

/* Spare stacks: finished coroutines' stacks are kept on their worker and
 * reused, so a spawn is a pop, not a system call. Beyond SL__STACK_CACHE
 * the surplus is unmapped by the worker when it goes idle (s_trim), never
 * on the spawn or exit path: unmapping costs a TLB shootdown on every
 * core running the process. */
static sl__coro_t *s_stack_get(sl__worker_t *w)
{
    sl__lock(&w->cache_lock);
    sl__coro_t *co = w->cache;
    if (co) {
        w->cache = co->next_free;
        w->cache_n--;
    }
    sl__unlock(&w->cache_lock);
    if (co)
        return co;
    sl__coro_t *batch[SL__STACK_BATCH];
    int n = sl__coro_map_many(s_s.stack_size, s_s.guard_pages, batch, SL__STACK_BATCH);
    if (n == 0)
        return NULL;
    sl__lock(&w->cache_lock);
    for (int i = 1; i < n; i++) {
        batch[i]->next_free = w->cache;
        w->cache = batch[i];
        w->cache_n++;
    }
    sl__unlock(&w->cache_lock);
    return batch[0];
}

static void s_stack_put(sl__worker_t *w, sl__coro_t *co)
{
    sl__coro_retire(co);
    sl__lock(&w->cache_lock);
    co->next_free = w->cache;
    w->cache = co;
    w->cache_n++;
    sl__unlock(&w->cache_lock);
}

/* Unmap up to SL__TRIM_BATCH surplus spare stacks; true if more remain. */
static bool s_trim(sl__worker_t *w)
{
    sl__coro_t *list = NULL;
    int n = 0;
    sl__lock(&w->cache_lock);
    while (w->cache_n > SL__STACK_CACHE && n < SL__TRIM_BATCH) {
        sl__coro_t *co = w->cache;
        w->cache = co->next_free;
        w->cache_n--;
        co->next_free = list;
        list = co;
        n++;
    }
    bool more = w->cache_n > SL__STACK_CACHE;
    sl__unlock(&w->cache_lock);
    while (list) {
        sl__coro_t *next = list->next_free;
        sl__coro_unmap(list);
        list = next;
    }
    return more;
}

/* Leave the running coroutine co (parked, yielding or dead): switch to the
 * next local coroutine, or to the worker loop. Returns when co resumes. */
static void s_switch_out(sl__coro_t *co, bool dying)
{
    sl__worker_t *w = co->worker;
    sl__coro_check_stack(co);
    atomic_store_explicit(&w->switches,
                          atomic_load_explicit(&w->switches, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    if (!dying && w->budget > 0 && w->head && w->head->kind == SL__TASK_CORO) {
        sl__coro_t *next = (sl__coro_t *)s_local_pop(w);
        w->budget--;
        if (next == co)
            return; /* yielded with nothing else to run */
        w->current = next;
        sl__fiber_switch(&co->fiber, &next->fiber, false);
    } else {
        w->current = NULL;
        sl__fiber_switch(&co->fiber, &w->sched, dying);
    }
    /* resumed: whoever switched to us set w->current = co */
}

static void s_coro_main(void *arg)
{
    sl__coro_t *co = arg;
    sl__fiber_started(&co->fiber);
    void *v = co->fn(co->arg);
    if (co->result) {
        sl_offer(co->result, v); /* a promise never refuses a first value */
        sl_chan_close(co->result);
        sl_chan_destroy(&co->result);
    }
    co->worker->dead = co;
    atomic_fetch_sub(&s_s.live, 1);
    s_switch_out(co, true);
    abort(); /* a dead coroutine is never resumed */
}

static void s_coro_park(sl__coro_t *co)
{
    uint32_t s = 0;
    if (!atomic_compare_exchange_strong(&co->pstate, &s, 2)) {
        atomic_store(&co->pstate, 0); /* s == 1: woken before we parked */
        return;
    }
    s_switch_out(co, false);
}

static void s_coro_unpark(sl__coro_t *co)
{
    for (;;) {
        uint32_t s = atomic_load(&co->pstate);
        if (s == 0) {
            if (atomic_compare_exchange_weak(&co->pstate, &s, 1))
                return;
        } else if (s == 2) {
            if (atomic_compare_exchange_weak(&co->pstate, &s, 0)) {
                sl__sched_submit(co->worker, &co->task);
                return;
            }
        } else {
            return;
        }
    }
}

/* --- parking, for any caller ------------------------------------------- */

int sl__park_init(sl__park_t *p)
{
    atomic_store_explicit(&p->done, 0, memory_order_relaxed);
    p->index = -1;
    p->status = SL_OK;
    p->val = NULL;
    p->worker = NULL;
    if (s_worker) {
        if (!s_worker->current)
            return SL_EDEADLK;
        p->wake_kind = SL__WAKE_CORO;
        p->who = s_worker->current;
    } else {
        p->wake_kind = SL__WAKE_THREAD;
        p->who = &s_tpark;
    }
    return SL_OK;
}

static void s_timeout_fire(sl__timer_t *t)
{
    sl__park_t *p = t->arg;
    if (sl__park_claim(p)) {
        p->index = -1;
        p->status = SL_ETIMEDOUT;
        sl__unpark(p);
    }
}

static void s_thread_wait(sl__tpark_t *tp, sl__park_t *p, int64_t deadline)
{
    uint32_t zero = 0;
    if (!atomic_compare_exchange_strong(&tp->state, &zero, 2)) {
        atomic_store(&tp->state, 0); /* permit already there */
        return;
    }
    while (atomic_load(&tp->state) == 2) {
        if (deadline != SL_FOREVER && sl_now() >= deadline) {
            deadline = SL_FOREVER;
            if (sl__park_claim(p)) {
                p->index = -1;
                p->status = SL_ETIMEDOUT;
                atomic_store(&tp->state, 0);
                return;
            }
            continue; /* someone else completed us: wait for their wake */
        }
        sl__futex_wait(&tp->state, 2, deadline);
    }
    atomic_store(&tp->state, 0);
}

/* --- deadlines of parked coroutines ------------------------------------ */

/* A coroutine that parks with a deadline (sl_sleep_ms, sl_take_until, ...)
 * puts it in its own worker's heap: coroutines never migrate, so only the
 * owner thread touches it, and the worker fires it itself -- from its loop,
 * or by sleeping in the futex no longer than the earliest deadline --
 * instead of a round trip through the timer thread. */
typedef struct sl__ltimer {
    int64_t when;
    sl__park_t *p;
    size_t idx;                 /* in w->lt; SIZE_MAX once fired or removed */
} sl__ltimer_t;

static void s_lt_set(sl__worker_t *w, size_t i, sl__ltimer_t *t)
{
    w->lt[i] = t;
    t->idx = i;
}

static void s_lt_up(sl__worker_t *w, size_t i)
{
    sl__ltimer_t *t = w->lt[i];
    while (i > 0 && w->lt[(i - 1) / 2]->when > t->when) {
        s_lt_set(w, i, w->lt[(i - 1) / 2]);
        i = (i - 1) / 2;
    }
    s_lt_set(w, i, t);
}

static void s_lt_down(sl__worker_t *w, size_t i)
{
    sl__ltimer_t *t = w->lt[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= w->nlt)
            break;
        if (c + 1 < w->nlt && w->lt[c + 1]->when < w->lt[c]->when)
            c++;
        if (w->lt[c]->when >= t->when)
            break;
        s_lt_set(w, i, w->lt[c]);
        i = c;
    }
    s_lt_set(w, i, t);
}

static bool s_lt_push(sl__worker_t *w, sl__ltimer_t *t)
{
    if (w->nlt == w->lt_cap) {
        size_t cap = w->lt_cap ? w->lt_cap * 2 : 64;
        sl__ltimer_t **lt = realloc(w->lt, cap * sizeof *lt);
        if (!lt)
            return false;
        w->lt = lt;
        w->lt_cap = cap;
    }
    w->lt[w->nlt++] = t;
    s_lt_up(w, w->nlt - 1);
    return true;
}

static void s_lt_remove(sl__worker_t *w, sl__ltimer_t *t)
{
    size_t i = t->idx;
    t->idx = SIZE_MAX;
    sl__ltimer_t *last = w->lt[--w->nlt];
    if (i == w->nlt)
        return;
    s_lt_set(w, i, last);
    s_lt_up(w, i);
    s_lt_down(w, last->idx);
}

/* Fire every deadline that has passed. */
static void s_lt_fire(sl__worker_t *w)
{
    int64_t now = sl_now();
    while (w->nlt > 0 && w->lt[0]->when <= now) {
        sl__ltimer_t *t = w->lt[0];
        s_lt_remove(w, t);
        if (sl__park_claim(t->p)) {
            t->p->index = -1;
            t->p->status = SL_ETIMEDOUT;
            sl__unpark(t->p);
        }
    }
}

void sl__park_wait(sl__park_t *p, int64_t deadline)
{
    if (p->wake_kind == SL__WAKE_THREAD) {
        s_thread_wait(p->who, p, deadline);
        return;
    }
    sl__coro_t *co = p->who;
    if (deadline == SL_FOREVER) {
        s_coro_park(co);
        return;
    }
    if (sl_now() >= deadline && sl__park_claim(p)) {
        p->index = -1;
        p->status = SL_ETIMEDOUT;
        return;
    }
    sl__worker_t *w = s_worker;
    sl__ltimer_t lt = {.when = deadline, .p = p};
    if (w && co->worker == w && s_lt_push(w, &lt)) {
        s_coro_park(co);
        if (lt.idx != SIZE_MAX)
            s_lt_remove(w, &lt);
        return;
    }
    sl__timer_t t = {.when = deadline, .fire = s_timeout_fire, .arg = p, .under_lock = true};
    sl__timer_add(&t);
    s_coro_park(co);
    sl__timer_cancel(&t);
}

void sl__unpark(sl__park_t *p)
{
    switch (p->wake_kind) {
    case SL__WAKE_CORO:
        s_coro_unpark(p->who);
        break;
    case SL__WAKE_THREAD: {
        sl__tpark_t *tp = p->who;
        if (atomic_exchange(&tp->state, 1) == 2)
            sl__futex_wake(&tp->state, 1);
        break;
    }
    case SL__WAKE_TASK:
        sl__sched_submit(p->worker, p->who);
        break;
    }
}

/* --- worker loop ------------------------------------------------------- */

static void s_run(sl__worker_t *w, sl__task_t *t)
{
    if (t->kind == SL__TASK_CALL) {
        t->call(t);
        return;
    }
    sl__coro_t *co = (sl__coro_t *)t;
    w->current = co;
    w->budget = SL__DIRECT_BUDGET;
    sl__fiber_switch(&w->sched, &co->fiber, false);
    w->current = NULL;
    if (w->dead) {
        s_stack_put(w, w->dead);
        w->dead = NULL;
    }
}

static void s_idle(sl__worker_t *w)
{
    int64_t due = w->nlt ? w->lt[0]->when : INT64_MAX;
    for (int i = 0; i < w->spin; i++) {
        if (atomic_load_explicit(&w->in_count, memory_order_acquire) ||
            atomic_load_explicit(&s_s.stopping, memory_order_relaxed) ||
            ((i & 255) == 255 && sl_now() >= due)) {
            w->spin = w->spin * 2 < SL__SPIN_MAX ? w->spin * 2 : SL__SPIN_MAX;
            return;
        }
        sl__cpu_relax();
    }
    w->spin = w->spin / 2 > SL__SPIN_MIN ? w->spin / 2 : SL__SPIN_MIN;
    /* Surplus spare stacks go back to the kernel only after a second of
     * idleness, a batch at a time, so bursts of spawns reuse them. */
    bool surplus = atomic_load_explicit(&w->cache_n, memory_order_relaxed) > SL__STACK_CACHE &&
                   w->nlt == 0;
    int64_t until = surplus ? sl_now() + SL__TRIM_IDLE_NS : -1;
    if (due != INT64_MAX)
        until = due;
    atomic_store(&w->wake_word, 0);
    atomic_store(&w->sleeping, 1);
    if (!atomic_load(&w->in_count) && !atomic_load(&s_s.stopping))
        sl__futex_wait(&w->wake_word, 0, until);
    atomic_store(&w->sleeping, 0);
    if (surplus && !atomic_load(&w->in_count) && !atomic_load(&w->wake_word))
        while (s_trim(w) && !atomic_load(&w->in_count))
            ;
}

static void *s_worker_main(void *arg)
{
    sl__worker_t *w = arg;
    s_worker = w;
    sl__fiber_of_thread(&w->sched);
    /* Deadlines are kept by this thread's futex waits: no 50 us slack. */
    prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0);
    for (;;) {
        if (w->nlt)
            s_lt_fire(w);
        s_drain_inbox(w);
        sl__task_t *t = s_local_pop(w);
        if (t) {
            s_run(w, t);
            continue;
        }
        if (atomic_load(&s_s.stopping))
            break;
        s_idle(w);
    }
    s_worker = NULL;
    return NULL;
}

/* --- lifecycle --------------------------------------------------------- */

static int s_start_locked(const sl_sched_opts_t *o)
{
    sl_sched_opts_t d = {0};
    if (!o)
        o = &d;
    if (o->workers < 0 || o->workers > 1024 || o->blocking_threads < 0)
        return SL_EINVAL;
    int n = o->workers;
    if (n == 0) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        n = c > 0 ? (int)c : 1;
    }
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t ss = o->stack_size;
    if (ss == 0) {
#if defined(SL_ASAN) || defined(SL_TSAN)
        ss = 256 * 1024;
#else
        ss = 64 * 1024;
#endif
    }
    if (ss < 16 * 1024)
        return SL_EINVAL;
    ss = (ss + page - 1) & ~(page - 1);
    /* aligned_alloc wants a size that is a multiple of the alignment. */
    size_t wsize = (sizeof(sl__worker_t) * (size_t)n + 63) & ~(size_t)63;
    sl__worker_t *ws = aligned_alloc(64, wsize);
    if (!ws)
        return SL_ENOMEM;
    memset(ws, 0, wsize);
    s_s.workers = ws;
    s_s.nworkers = n;
    s_s.stack_size = ss;
    s_s.max_coroutines = o->max_coroutines ? o->max_coroutines : 1000000;
    s_s.guard_pages = o->guard_pages;
    s_s.blocking_threads = o->blocking_threads ? o->blocking_threads : 64;
    atomic_store(&s_s.stopping, 0);
    sl__pool_configure(s_s.blocking_threads);
    for (int i = 0; i < n; i++) {
        ws[i].id = i;
        ws[i].spin = SL__SPIN_MAX;
        if (pthread_create(&ws[i].thread, NULL, s_worker_main, &ws[i]) != 0) {
            atomic_store(&s_s.stopping, 1);
            for (int j = 0; j < i; j++) {
                atomic_store(&ws[j].wake_word, 1);
                sl__futex_wake(&ws[j].wake_word, 1);
                pthread_join(ws[j].thread, NULL);
            }
            free(ws);
            s_s.workers = NULL;
            s_s.nworkers = 0;
            return SL_ESYS;
        }
    }
    atomic_store(&s_s.running, 1);
    return SL_OK;
}

int sl_sched_start(const sl_sched_opts_t *opts)
{
    pthread_mutex_lock(&s_s.start_lock);
    int rc = atomic_load(&s_s.running) ? SL_ESTATE : s_start_locked(opts);
    pthread_mutex_unlock(&s_s.start_lock);
    return rc;
}

static int s_ensure_started(void)
{
    if (atomic_load_explicit(&s_s.running, memory_order_acquire))
        return SL_OK;
    pthread_mutex_lock(&s_s.start_lock);
    int rc = atomic_load(&s_s.running) ? SL_OK : s_start_locked(NULL);
    pthread_mutex_unlock(&s_s.start_lock);
    return rc;
}

int sl_sched_shutdown(int64_t timeout_ms)
{
    if (s_worker)
        return SL_EDEADLK; /* a worker cannot join itself */
    int64_t end = sl_deadline_ms(timeout_ms);
    /* Queued callback operations name a worker: wait for them too. */
    while (atomic_load(&s_s.live) || sl__pool_live() || sl__cb_pending()) {
        if (end != SL_FOREVER && sl_now() >= end)
            return SL_ETIMEDOUT;
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    pthread_mutex_lock(&s_s.start_lock);
    if (!atomic_load(&s_s.running)) {
        pthread_mutex_unlock(&s_s.start_lock);
        return SL_OK;
    }
    atomic_store(&s_s.stopping, 1);
    for (int i = 0; i < s_s.nworkers; i++) {
        sl__worker_t *w = &s_s.workers[i];
        atomic_store(&w->wake_word, 1);
        sl__futex_wake(&w->wake_word, 1);
    }
    for (int i = 0; i < s_s.nworkers; i++) {
        sl__worker_t *w = &s_s.workers[i];
        pthread_join(w->thread, NULL);
        while (w->cache) {
            sl__coro_t *co = w->cache;
            w->cache = co->next_free;
            sl__coro_unmap(co);
        }
        free(w->lt); /* coroutines still parked at stop never resume */
    }
    free(s_s.workers);
    s_s.workers = NULL;
    s_s.nworkers = 0;
    atomic_store(&s_s.running, 0);
    pthread_mutex_unlock(&s_s.start_lock);
    return SL_OK;
}

int sl_sched_workers(void)
{
    return atomic_load(&s_s.running) ? s_s.nworkers : 0;
}

void sl_sched_stats(sl_sched_stats_t *out)
{
    memset(out, 0, sizeof *out);
    out->spawned = atomic_load(&s_s.spawned);
    out->live = atomic_load(&s_s.live);
    out->blocking_live = sl__pool_live();
    pthread_mutex_lock(&s_s.start_lock);
    out->stack_size = s_s.stack_size;
    for (int i = 0; atomic_load(&s_s.running) && i < s_s.nworkers; i++)
        out->switches += atomic_load_explicit(&s_s.workers[i].switches, memory_order_relaxed);
    pthread_mutex_unlock(&s_s.start_lock);
}

sl__worker_t *sl__pick_worker(void)
{
    if (s_ensure_started() != SL_OK)
        return NULL;
    uint64_t i = atomic_fetch_add_explicit(&s_s.rr, 1, memory_order_relaxed);
    return &s_s.workers[i % (uint64_t)s_s.nworkers];
}

/* --- spawning ---------------------------------------------------------- */

sl_chan_t *sl_go_ex(sl_go_fn fn, void *arg, int flags, int want_result, int *err)
{
    int rc = s_ensure_started();
    if (rc != SL_OK)
        goto fail;
    if (!fn) {
        rc = SL_EINVAL;
        goto fail;
    }
    if (atomic_fetch_add(&s_s.live, 1) >= s_s.max_coroutines) {
        atomic_fetch_sub(&s_s.live, 1);
        rc = SL_ELIMIT;
        goto fail;
    }
    sl__worker_t *w = (s_worker && !(flags & SL_GO_SPREAD)) ? s_worker : sl__pick_worker();
    sl_chan_t *result = NULL;
    if (want_result && !(result = sl_chan_new(SL_BUF_PROMISE, 0))) {
        atomic_fetch_sub(&s_s.live, 1);
        rc = SL_ENOMEM;
        goto fail;
    }
    sl__coro_t *co = s_stack_get(w);
    if (!co) {
        sl_chan_destroy(&result);
        atomic_fetch_sub(&s_s.live, 1);
        rc = SL_ENOMEM;
        goto fail;
    }
    co->task.kind = SL__TASK_CORO;
    co->worker = w;
    atomic_store_explicit(&co->pstate, 0, memory_order_relaxed);
    co->fn = fn;
    co->arg = arg;
    co->result = result ? sl_chan_ref(result) : NULL;
    sl__coro_prepare(co, s_coro_main);
    atomic_fetch_add_explicit(&s_s.spawned, 1, memory_order_relaxed);
    sl__sched_submit(w, &co->task);
    return result ? result : (sl_chan_t *)1;
fail:
    if (err)
        *err = rc;
    return NULL;
}

sl_chan_t *sl_go(sl_go_fn fn, void *arg)
{
    return sl_go_ex(fn, arg, 0, 1, NULL);
}

int sl_in_coroutine(void)
{
    return s_worker && s_worker->current;
}

void sl_yield(void)
{
    if (!sl_in_coroutine()) {
        sched_yield();
        return;
    }
    sl__coro_t *co = s_worker->current;
    s_local_push(co->worker, &co->task);
    s_switch_out(co, false);
}

void sl_sleep_until(int64_t deadline)
{
    sl__park_t p;
    if (sl__park_init(&p) != SL_OK) {
        /* a callback on a worker: sleeping here would stall the worker,
         * but the caller asked for it; honour it with a plain sleep. */
        p.wake_kind = SL__WAKE_THREAD;
        p.who = &s_tpark;
    }
    if (deadline == SL_FOREVER)
        deadline = INT64_MAX;
    sl__park_wait(&p, deadline);
}

void sl_sleep_ms(int64_t ms)
{
    sl_sleep_until(sl_now() + (ms > 0 ? ms : 0) * 1000000);
}
