/* sched_test.c -- the scheduler: results through promises, placement and
 * pinning of coroutines, a hundred thousand parked coroutines in little
 * memory, the blocking pool, sleeping, yielding and shutdown. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "testlib.h"

#define MS (1000000LL)
#define WORKERS 4

/* ThreadSanitizer gives each coroutine a fiber, and counts fibers against
 * its limit of 8128 threads: stay well below it there. */
#if defined(__SANITIZE_THREAD__)
#define SL_TEST_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define SL_TEST_TSAN 1
#endif
#endif

static double s_slack_ms(void)
{
    return sl_test_sanitized() ? 300.0 : 40.0;
}

static int s_idle(void *arg)
{
    (void)arg;
    sl_sched_stats_t st;
    sl_sched_stats(&st);
    return st.live == 0 && st.blocking_live == 0;
}

static void s_wait_idle(void)
{
    assert_true(sl_test_wait_for(s_idle, NULL, sl_test_patience_ms()));
}

/* A plain blocking sleep that knows nothing of the scheduler. */
static void s_nap_ms(int64_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

static void *s_whoami(void *arg)
{
    (void)arg;
    return (void *)(uintptr_t)pthread_self();
}

static int s_distinct(const pthread_t *t, int n)
{
    int d = 0;
    for (int i = 0; i < n; i++) {
        int seen = 0;
        for (int j = 0; j < i; j++)
            seen |= pthread_equal(t[i], t[j]);
        d += !seen;
    }
    return d;
}

/* ------------------------------------------------------------------------ */

static void *s_answer(void *arg)
{
    sl_sleep_ms(20); /* let the takers queue up first */
    return arg;
}

static void *s_take_promise(void *arg)
{
    sl_chan_t *p = arg;
    void *v = V(-1);
    int rc = sl_take_until(p, &v, sl_deadline_ms(sl_test_patience_ms()));
    return rc == SL_OK ? v : V(rc);
}

static void test_sched__go_result_reaches_every_taker(void **state)
{
    (void)state;
    sl_chan_t *p = sl_test_go(s_answer, V(42));
    pthread_t t[3];
    sl_chan_t *co[3];
    for (int i = 0; i < 3; i++) {
        t[i] = sl_test_thread(s_take_promise, p);
        co[i] = sl_test_go(s_take_promise, p);
    }
    for (int i = 0; i < 3; i++) {
        assert_int_equal(I(sl_test_join(t[i])), 42);
        assert_int_equal(I(sl_test_result(&co[i], 6 * sl_test_patience_ms())), 42);
    }
    /* The promise is closed with the value kept: more takes, same value. */
    void *v = NULL;
    SL_ASSERT_OK(sl_poll(p, &v));
    assert_int_equal(I(v), 42);
    /* The coroutine closes the promise just after delivering the value, so
     * a taker may see the value a moment before the close. */
    sl_chan_stats_t st;
    int64_t end = sl_deadline_ms(sl_test_patience_ms());
    do
        sl_chan_stats(p, &st);
    while (!st.closed && sl_now() < end && (sl_sleep_ms(1), true));
    assert_true(st.closed);
    assert_int_equal(st.kind, SL_BUF_PROMISE);
    SL_ASSERT_ERR(sl_offer(p, V(1)), SL_ECLOSED);
    sl_chan_destroy(&p);

    /* A NULL result is a result. */
    p = sl_test_go(s_answer, NULL);
    v = V(-1);
    SL_ASSERT_OK(sl_take_until(p, &v, sl_deadline_ms(sl_test_patience_ms())));
    assert_null(v);
    sl_chan_destroy(&p);
    /* Dropping the promise at once is fine: the coroutine still runs. */
    p = sl_test_go(s_answer, V(1));
    sl_chan_destroy(&p);
    s_wait_idle();
}

static _Atomic int s_ff_ran;

static void *s_fire_and_forget(void *arg)
{
    sl_chan_t *c = arg;
    atomic_fetch_add(&s_ff_ran, 1);
    sl_put(c, V(7));
    return NULL;
}

static void test_sched__go_ex_fire_and_forget(void **state)
{
    (void)state;
    sl_chan_t *c = sl_chan_new(SL_BUF_FIXED, 16);
    atomic_store(&s_ff_ran, 0);
    for (int i = 0; i < 10; i++) {
        int err = 12345;
        sl_chan_t *r = sl_go_ex(s_fire_and_forget, c, i % 2 ? SL_GO_SPREAD : 0, 0, &err);
        assert_ptr_equal(r, (sl_chan_t *)1);
    }
    for (int i = 0; i < 10; i++) {
        void *v;
        SL_ASSERT_OK(sl_take_until(c, &v, sl_deadline_ms(sl_test_patience_ms())));
        assert_int_equal(I(v), 7);
    }
    assert_int_equal(atomic_load(&s_ff_ran), 10);
    /* With want_result it is an ordinary promise. */
    int err = 0;
    sl_chan_t *p = sl_go_ex(s_whoami, NULL, 0, 1, &err);
    assert_non_null(p);
    assert_ptr_not_equal(p, (sl_chan_t *)1);
    sl_test_result(&p, 6 * sl_test_patience_ms());
    /* Bad arguments. */
    err = 0;
    assert_null(sl_go_ex(NULL, NULL, 0, 1, &err));
    assert_int_equal(err, SL_EINVAL);
    assert_null(sl_go_ex(NULL, NULL, 0, 0, NULL));
    assert_null(sl_go(NULL, NULL));
    assert_null(sl_thread(NULL, NULL));
    s_wait_idle();
    sl_chan_destroy(&c);
}

/* ------------------------------------------------------------------------
 * Placement
 * --------------------------------------------------------------------- */

typedef struct {
    int flags;
    int n;
    pthread_t parent;
    pthread_t child[64];
} place_t;

static void *s_spawn_children(void *arg)
{
    place_t *p = arg;
    p->parent = pthread_self();
    for (int i = 0; i < p->n; i++) {
        int err = 0;
        sl_chan_t *c = sl_go_ex(s_whoami, NULL, p->flags, 1, &err);
        if (!c)
            return V(err);
        void *v;
        sl_take(c, &v);
        sl_chan_destroy(&c);
        p->child[i] = (pthread_t)(uintptr_t)v;
    }
    return V(0);
}

static void test_sched__spawn_from_coroutine_stays_on_its_worker(void **state)
{
    (void)state;
    assert_int_equal(sl_sched_workers(), WORKERS);
    for (int round = 0; round < 2 * WORKERS; round++) {
        place_t p = {.flags = 0, .n = 20};
        sl_chan_t *c = sl_test_go(s_spawn_children, &p);
        assert_int_equal(I(sl_test_result(&c, 6 * sl_test_patience_ms())), 0);
        for (int i = 0; i < p.n; i++)
            assert_true(pthread_equal(p.child[i], p.parent));
        assert_false(pthread_equal(p.parent, pthread_self()));
    }
}

static void test_sched__spread_and_thread_spawns_go_round_robin(void **state)
{
    (void)state;
    /* From a coroutine with SL_GO_SPREAD: every worker gets some. */
    place_t p = {.flags = SL_GO_SPREAD, .n = 4 * WORKERS};
    sl_chan_t *c = sl_test_go(s_spawn_children, &p);
    assert_int_equal(I(sl_test_result(&c, 6 * sl_test_patience_ms())), 0);
    assert_int_equal(s_distinct(p.child, p.n), WORKERS);
    /* From a plain thread: round-robin as well. */
    pthread_t t[4 * WORKERS];
    for (int i = 0; i < 4 * WORKERS; i++) {
        sl_chan_t *q = sl_test_go(s_whoami, NULL);
        t[i] = (pthread_t)(uintptr_t)sl_test_result(&q, 6 * sl_test_patience_ms());
        assert_false(pthread_equal(t[i], pthread_self()));
    }
    assert_int_equal(s_distinct(t, 4 * WORKERS), WORKERS);
}

/* ------------------------------------------------------------------------
 * Coroutines never migrate
 * --------------------------------------------------------------------- */

static __thread int s_tls;

typedef struct {
    sl_chan_t *feed;
    int parks;
    int moved;
} pin_t;

static void *s_pinned(void *arg)
{
    pin_t *p = arg;
    pthread_t me = pthread_self();
    int *tls = &s_tls;
    for (int i = 0; i < p->parks; i++) {
        void *v;
        if (i % 50 == 49)
            sl_sleep_ms(1); /* woken by the timer thread */
        else if (i % 10 == 9)
            sl_yield();
        else if (sl_take(p->feed, &v) != SL_OK) /* woken by a plain thread */
            return V(-1);
        if (!pthread_equal(pthread_self(), me) || &s_tls != tls)
            p->moved++;
        s_tls++;
    }
    return V(0);
}

typedef struct {
    sl_chan_t *feed;
    int n;
} feeder_t;

static void *s_feeder(void *arg)
{
    feeder_t *f = arg;
    for (int i = 0; i < f->n; i++)
        if (sl_put(f->feed, V(i)) != SL_OK)
            return V(-1);
    return V(0);
}

static void test_sched__coroutines_never_migrate(void **state)
{
    (void)state;
    enum { K = 2 * WORKERS, PARKS = 1000 };
    sl_chan_t *feed = sl_chan_new(SL_BUF_NONE, 0);
    pin_t pin[K];
    sl_chan_t *co[K];
    int takes = 0;
    for (int i = 0; i < PARKS; i++)
        takes += !(i % 50 == 49) && !(i % 10 == 9);
    for (int i = 0; i < K; i++) {
        pin[i] = (pin_t){.feed = feed, .parks = PARKS};
        int err = 0;
        co[i] = sl_go_ex(s_pinned, &pin[i], SL_GO_SPREAD, 1, &err);
        assert_non_null(co[i]);
    }
    feeder_t f = {feed, takes * K / 2};
    pthread_t t1 = sl_test_thread(s_feeder, &f), t2 = sl_test_thread(s_feeder, &f);
    assert_int_equal(I(sl_test_join(t1)), 0);
    assert_int_equal(I(sl_test_join(t2)), 0);
    for (int i = 0; i < K; i++) {
        assert_int_equal(I(sl_test_result(&co[i], 6 * sl_test_patience_ms())), 0);
        assert_int_equal(pin[i].moved, 0);
    }
    sl_chan_destroy(&feed);
}

/* ------------------------------------------------------------------------
 * Many parked coroutines
 * --------------------------------------------------------------------- */

typedef struct {
    sl_chan_t *gate;
    _Atomic long closed, other;
} crowd_t;

static void *s_crowd_member(void *arg)
{
    crowd_t *c = arg;
    void *v;
    if (sl_take(c->gate, &v) == SL_ECLOSED)
        atomic_fetch_add(&c->closed, 1);
    else
        atomic_fetch_add(&c->other, 1);
    return NULL;
}

typedef struct {
    sl_chan_t *c;
    size_t n;
} waiters_t;

static int s_all_parked(void *arg)
{
    waiters_t *w = arg;
    sl_chan_stats_t st;
    sl_chan_stats(w->c, &st);
    return st.pending_takes == w->n;
}

static void test_sched__hundred_thousand_parked_coroutines(void **state)
{
    (void)state;
#ifdef SL_TEST_TSAN
    const size_t n = 2000;
#else
    const size_t n = sl_test_sanitized() ? 10000 : 100000;
#endif
    crowd_t crowd = {.gate = sl_chan_new(SL_BUF_NONE, 0)};
    sl_chan_set_max_pending(crowd.gate, n);
    s_wait_idle(); /* coroutines of earlier tests have all returned */
    sl_sched_stats_t st0, st1;
    sl_sched_stats(&st0);
    long rss0 = sl_test_rss_kib();
    assert_true(rss0 > 0);
    int64_t t0 = sl_now();
    for (size_t i = 0; i < n; i++) {
        int err = 0;
        if (!sl_go_ex(s_crowd_member, &crowd, 0, 0, &err))
            fail_msg("spawn %zu failed: %s", i, sl_err_name(err));
    }
    waiters_t w = {crowd.gate, n};
    int parked = sl_test_wait_for(s_all_parked, &w, 4 * sl_test_patience_ms());
    long rss1 = sl_test_rss_kib();
    double spawn_ms = sl_test_ms_since(t0);
    sl_sched_stats(&st1);
    /* Release them all before judging, so a failure does not strand them. */
    sl_chan_close(crowd.gate);
    s_wait_idle();
    assert_true(parked);
    assert_int_equal(st1.live - st0.live, n);
    assert_int_equal(st1.spawned - st0.spawned, n);
    double per_co = (double)(rss1 - rss0) * 1024.0 / (double)n;
    print_message("%zu parked coroutines in %.0f ms, RSS +%ld KiB (%.0f bytes each)\n", n,
                  spawn_ms, rss1 - rss0, per_co);
    if (!sl_test_sanitized() && per_co > 8192)
        fail_msg("each parked coroutine costs %.0f bytes of RSS, over 8 KiB", per_co);
    assert_int_equal(atomic_load(&crowd.closed), (long)n);
    assert_int_equal(atomic_load(&crowd.other), 0);
    sl_chan_stats_t cs;
    sl_chan_stats(crowd.gate, &cs);
    assert_int_equal(cs.pending_takes, 0);
    sl_chan_destroy(&crowd.gate);
}

/* ------------------------------------------------------------------------
 * The blocking pool
 * --------------------------------------------------------------------- */

static void *s_blocking_nap(void *arg)
{
    s_nap_ms(I(arg));
    return V(1);
}

typedef struct {
    sl_chan_t *ping, *pong;
    int rounds;
} pingpong_t;

static void *s_pinger(void *arg)
{
    pingpong_t *p = arg;
    for (int i = 0; i < p->rounds; i++) {
        void *v;
        if (sl_put(p->ping, V(i)) != SL_OK || sl_take(p->pong, &v) != SL_OK || I(v) != i)
            return V(-1);
    }
    return V(0);
}

static void *s_ponger(void *arg)
{
    pingpong_t *p = arg;
    for (int i = 0; i < p->rounds; i++) {
        void *v;
        if (sl_take(p->ping, &v) != SL_OK || sl_put(p->pong, v) != SL_OK)
            return V(-1);
    }
    return V(0);
}

/* Ping-pong between coroutine pairs on every worker; returns ms taken. */
static double s_pingpong_ms(int rounds)
{
    int64_t t0 = sl_now();
    pingpong_t pp[WORKERS];
    sl_chan_t *a[WORKERS], *b[WORKERS];
    for (int i = 0; i < WORKERS; i++) {
        pp[i] = (pingpong_t){sl_chan_new(SL_BUF_NONE, 0), sl_chan_new(SL_BUF_NONE, 0), rounds};
        a[i] = sl_test_go(s_pinger, &pp[i]);
        b[i] = sl_test_go(s_ponger, &pp[i]);
    }
    for (int i = 0; i < WORKERS; i++) {
        assert_int_equal(I(sl_test_result(&a[i], 6 * sl_test_patience_ms())), 0);
        assert_int_equal(I(sl_test_result(&b[i], 6 * sl_test_patience_ms())), 0);
        sl_chan_destroy(&pp[i].ping);
        sl_chan_destroy(&pp[i].pong);
    }
    return sl_test_ms_since(t0);
}

static void test_sched__thread_blocks_without_stalling_coroutines(void **state)
{
    (void)state;
    enum { JOBS = 2 * WORKERS + 2, ROUNDS = 500 };
    /* How long the ping-pong takes on this machine right now. */
    double base = s_pingpong_ms(ROUNDS);
    int64_t nap = (int64_t)(5 * base) + (sl_test_sanitized() ? 1000 : 200);
    if (nap > 10000)
        nap = 10000;
    /* More blocking naps than workers, then the same ping-pong again. */
    int64_t t0 = sl_now();
    sl_chan_t *job[JOBS];
    for (int i = 0; i < JOBS; i++) {
        job[i] = sl_thread(s_blocking_nap, V(nap));
        assert_non_null(job[i]);
    }
    double pp_ms = s_pingpong_ms(ROUNDS);
    /* The naps are still going: the ping-pong did not wait for them. */
    sl_sched_stats_t st;
    sl_sched_stats(&st);
    if (sl_test_ms_since(t0) >= (double)nap || st.blocking_live == 0)
        fail_msg("ping-pong took %.0f ms (%.0f ms alone) beside %d blocking %lld ms naps",
                 pp_ms, base, JOBS, (long long)nap);
    for (int i = 0; i < JOBS; i++)
        assert_int_equal(I(sl_test_result(&job[i], 6 * sl_test_patience_ms())), 1);
    print_message("ping-pong %.0f ms alone, %.0f ms beside %d naps of %lld ms\n", base,
                  pp_ms, JOBS, (long long)nap);
    /* The naps ran side by side, not one after another. */
    double all_ms = sl_test_ms_since(t0);
    if (all_ms > 1.8 * (double)nap)
        fail_msg("%d naps of %lld ms took %.0f ms in all", JOBS, (long long)nap, all_ms);
    s_wait_idle();
}

typedef struct {
    _Atomic int arrived;
    int n;
} barrier_t;

/* A blocking job that waits (up to 3 s) for all n jobs to be running. */
static void *s_barrier_job(void *arg)
{
    barrier_t *b = arg;
    atomic_fetch_add(&b->arrived, 1);
    int64_t end = sl_deadline_ms(3000);
    while (atomic_load(&b->arrived) < b->n && sl_now() < end)
        s_nap_ms(1);
    return V(atomic_load(&b->arrived) >= b->n);
}

static int s_pool_quiet(void *arg)
{
    (void)arg;
    sl_sched_stats_t st;
    sl_sched_stats(&st);
    return st.blocking_live == 0;
}

/* Blocking jobs below the pool limit all run at once: none waits in the
 * queue behind another that blocks, even when they are submitted back to
 * back while some pool threads sit idle from earlier work. */
static void test_sched__thread_jobs_do_not_queue_behind_blocked_jobs(void **state)
{
    (void)state;
    enum { N = 24 }; /* under the default limit of 64 */
    /* The queueing depends on how fast idle threads wake: several rounds. */
    for (int round = 0; round < 6; round++) {
        /* Leave some idle pool threads behind. */
        sl_chan_t *warm[4];
        for (int i = 0; i < 4; i++)
            warm[i] = sl_thread(s_blocking_nap, V(2));
        for (int i = 0; i < 4; i++) {
            assert_non_null(warm[i]);
            sl_test_result(&warm[i], 6 * sl_test_patience_ms());
        }
        assert_true(sl_test_wait_for(s_pool_quiet, NULL, sl_test_patience_ms()));
        sl_sleep_ms(5);

        barrier_t b = {.n = N};
        sl_chan_t *job[N];
        int64_t t0 = sl_now();
        for (int i = 0; i < N; i++) {
            job[i] = sl_thread(s_barrier_job, &b);
            assert_non_null(job[i]);
        }
        int met = 0;
        for (int i = 0; i < N; i++) {
            void *v = V(0);
            SL_ASSERT_OK(sl_take_until(job[i], &v, sl_deadline_ms(20000)));
            met += I(v) == 1;
            sl_chan_destroy(&job[i]);
        }
        if (met != N)
            fail_msg("round %d: %d of %d blocking jobs ran together; the rest waited in "
                     "the queue (%.0f ms)",
                     round, met, N, sl_test_ms_since(t0));
    }
}

/* ------------------------------------------------------------------------
 * Sleep, yield, context queries
 * --------------------------------------------------------------------- */

static void *s_co_sleep(void *arg)
{
    int64_t t0 = sl_now();
    sl_sleep_ms(I(arg));
    return V((intptr_t)((sl_now() - t0) / 1000)); /* microseconds */
}

static void s_check_sleep(double ms, double want)
{
    if (ms < want || ms > want + s_slack_ms())
        fail_msg("sl_sleep_ms(%.0f) slept %.2f ms", want, ms);
}

static void test_sched__sleep_ms_accuracy(void **state)
{
    (void)state;
    const int64_t ms[] = {20, 5, 50};
    for (size_t i = 0; i < 3; i++) {
        int64_t t0 = sl_now();
        sl_sleep_ms(ms[i]);
        s_check_sleep(sl_test_ms_since(t0), (double)ms[i]);
        sl_chan_t *p = sl_test_go(s_co_sleep, V(ms[i]));
        s_check_sleep((double)I(sl_test_result(&p, 6 * sl_test_patience_ms())) / 1000.0, (double)ms[i]);
    }
    /* Zero, negative and past deadlines return at once. */
    int64_t t0 = sl_now();
    sl_sleep_ms(0);
    sl_sleep_ms(-5);
    sl_sleep_until(sl_now() - 1000000);
    assert_true(sl_test_ms_since(t0) < 20);
}

typedef struct {
    char log[512];
    int len;
    int rounds;
} ylog_t;

typedef struct {
    ylog_t *log;
    char id;
} yarg_t;

static void *s_yielder(void *arg)
{
    yarg_t *y = arg;
    for (int i = 0; i < y->log->rounds; i++) {
        y->log->log[y->log->len++] = y->id;
        sl_yield();
    }
    return NULL;
}

static void *s_yield_pair(void *arg)
{
    /* Both children on this worker; this one waits for them. */
    ylog_t *l = arg;
    yarg_t a = {l, 'a'}, b = {l, 'b'};
    sl_chan_t *pa = sl_go(s_yielder, &a), *pb = sl_go(s_yielder, &b);
    if (!pa || !pb)
        return V(-1);
    void *v;
    sl_take(pa, &v);
    sl_take(pb, &v);
    sl_chan_destroy(&pa);
    sl_chan_destroy(&pb);
    return V(0);
}

static void test_sched__yield_lets_others_run(void **state)
{
    (void)state;
    ylog_t l = {.rounds = 100};
    sl_chan_t *p = sl_test_go(s_yield_pair, &l);
    assert_int_equal(I(sl_test_result(&p, 6 * sl_test_patience_ms())), 0);
    assert_int_equal(l.len, 200);
    int switches = 0;
    for (int i = 1; i < l.len; i++)
        switches += l.log[i] != l.log[i - 1];
    /* Without yield it would be 100 a's then 100 b's: one switch. */
    if (switches < 150)
        fail_msg("only %d switches between two yielding coroutines", switches);
    /* On a plain thread sl_yield just returns. */
    sl_yield();
}

static void *s_where(void *arg)
{
    (void)arg;
    return V(sl_in_coroutine());
}

static _Atomic int s_cb_in_co = -1;

static void s_where_cb(int status, void *value, void *arg)
{
    (void)status;
    (void)value;
    (void)arg;
    atomic_store(&s_cb_in_co, sl_in_coroutine());
}

static int s_cb_done(void *arg)
{
    (void)arg;
    return atomic_load(&s_cb_in_co) != -1;
}

static void test_sched__in_coroutine(void **state)
{
    (void)state;
    assert_int_equal(sl_in_coroutine(), 0);
    sl_chan_t *p = sl_test_go(s_where, NULL);
    assert_int_equal(I(sl_test_result(&p, 6 * sl_test_patience_ms())), 1);
    p = sl_thread(s_where, NULL);
    assert_non_null(p);
    assert_int_equal(I(sl_test_result(&p, 6 * sl_test_patience_ms())), 0);
    sl_chan_t *c = sl_chan_new(SL_BUF_FIXED, 1);
    SL_ASSERT_OK(sl_offer(c, V(1)));
    SL_ASSERT_OK(sl_take_cb(c, s_where_cb, NULL));
    assert_true(sl_test_wait_for(s_cb_done, NULL, sl_test_patience_ms()));
    assert_int_equal(atomic_load(&s_cb_in_co), 0);
    sl_chan_destroy(&c);
}

static void *s_noop(void *arg)
{
    return arg;
}

static void test_sched__stats_count_coroutines(void **state)
{
    (void)state;
    s_wait_idle();
    sl_sched_stats_t a, b;
    sl_sched_stats(&a);
    assert_int_equal(a.live, 0);
    assert_int_equal(a.blocking_live, 0);
    assert_int_equal(a.stack_size, (sl_test_sanitized() ? 256 : 64) * 1024);
    sl_chan_t *p[50];
    for (int i = 0; i < 50; i++)
        p[i] = sl_test_go(s_noop, NULL);
    for (int i = 0; i < 50; i++)
        sl_test_result(&p[i], 6 * sl_test_patience_ms());
    s_wait_idle();
    sl_sched_stats(&b);
    assert_int_equal(b.spawned - a.spawned, 50);
    assert_true(b.switches >= a.switches + 50);
    assert_int_equal(b.live, 0);
}

static void *s_try_shutdown(void *arg)
{
    (void)arg;
    return V(sl_sched_shutdown(0));
}

static void test_sched__shutdown_inside_coroutine_is_edeadlk(void **state)
{
    (void)state;
    sl_chan_t *p = sl_test_go(s_try_shutdown, NULL);
    assert_int_equal(I(sl_test_result(&p, 6 * sl_test_patience_ms())), SL_EDEADLK);
    assert_int_equal(sl_sched_workers(), WORKERS);
}

static _Atomic int s_late_co, s_late_job;

static void *s_late_coroutine(void *arg)
{
    sl_sleep_ms(I(arg));
    atomic_store(&s_late_co, 1);
    return NULL;
}

static void *s_late_thread(void *arg)
{
    s_nap_ms(I(arg));
    atomic_store(&s_late_job, 1);
    return NULL;
}

/* Last: stops the scheduler. */
static void test_sched__shutdown_waits_for_everything(void **state)
{
    (void)state;
    const int64_t ms = 300;
    assert_int_equal(sl_sched_start(NULL), SL_ESTATE); /* already running */
    int err = 0;
    assert_non_null(sl_go_ex(s_late_coroutine, V(ms), 0, 0, &err));
    sl_chan_t *job = sl_thread(s_late_thread, V(ms));
    assert_non_null(job);
    sl_chan_destroy(&job);
    int64_t t0 = sl_now();
    SL_ASSERT_ERR(sl_sched_shutdown(20), SL_ETIMEDOUT);
    assert_int_equal(sl_sched_workers(), WORKERS); /* still running */
    assert_int_equal(atomic_load(&s_late_co), 0);
    SL_ASSERT_OK(sl_sched_shutdown(sl_test_patience_ms()));
    double waited = sl_test_ms_since(t0);
    assert_int_equal(atomic_load(&s_late_co), 1);
    assert_int_equal(atomic_load(&s_late_job), 1);
    assert_true(waited >= (double)ms - 1);
    assert_int_equal(sl_sched_workers(), 0);
    sl_sched_stats_t st;
    sl_sched_stats(&st);
    assert_int_equal(st.live, 0);
    assert_int_equal(st.blocking_live, 0);
    SL_ASSERT_OK(sl_sched_shutdown(0)); /* not running: nothing to do */
}

static int s_setup(void **state)
{
    (void)state;
    sl_sched_opts_t o = {.workers = WORKERS};
    return sl_sched_start(&o) == SL_OK ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sched__go_result_reaches_every_taker),
        cmocka_unit_test(test_sched__go_ex_fire_and_forget),
        cmocka_unit_test(test_sched__spawn_from_coroutine_stays_on_its_worker),
        cmocka_unit_test(test_sched__spread_and_thread_spawns_go_round_robin),
        cmocka_unit_test(test_sched__coroutines_never_migrate),
        cmocka_unit_test(test_sched__hundred_thousand_parked_coroutines),
        cmocka_unit_test(test_sched__thread_blocks_without_stalling_coroutines),
        cmocka_unit_test(test_sched__thread_jobs_do_not_queue_behind_blocked_jobs),
        cmocka_unit_test(test_sched__sleep_ms_accuracy),
        cmocka_unit_test(test_sched__yield_lets_others_run),
        cmocka_unit_test(test_sched__in_coroutine),
        cmocka_unit_test(test_sched__stats_count_coroutines),
        cmocka_unit_test(test_sched__shutdown_inside_coroutine_is_edeadlk),
        cmocka_unit_test(test_sched__shutdown_waits_for_everything),
    };
    return cmocka_run_group_tests(tests, s_setup, NULL);
}
