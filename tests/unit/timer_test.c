/* timer_test.c -- sl_timeout channels: they close on time (never early),
 * each is its own channel, a million can be live at once, and they close
 * in deadline order. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "testlib.h"

#define MS (1000000LL)

/* How late a timer may fire and still be on time. */
static double s_late_ms(void)
{
    return sl_test_sanitized() ? 300.0 : 40.0;
}

static bool s_closed(sl_chan_t *c)
{
    sl_chan_stats_t st;
    sl_chan_stats(c, &st);
    return st.closed;
}

/* Wait for the timeout channel to close; returns ms since t0. */
static double s_wait_closed(sl_chan_t *c, int64_t t0)
{
    void *v = V(-1);
    SL_ASSERT_ERR(sl_take_until(c, &v, sl_deadline_ms(sl_test_patience_ms())), SL_ECLOSED);
    assert_ptr_equal(v, V(-1));
    return sl_test_ms_since(t0);
}

static void s_check_on_time(double ms, double want)
{
    if (ms < want || ms > want + s_late_ms())
        fail_msg("timeout(%.0f) closed after %.2f ms", want, ms);
}

typedef struct {
    int64_t ms;
    double elapsed;
} co_tmo_t;

static void *s_co_timeout(void *arg)
{
    co_tmo_t *t = arg;
    int64_t t0 = sl_now();
    sl_chan_t *c = sl_timeout(t->ms);
    void *v;
    int rc = sl_take(c, &v);
    t->elapsed = sl_test_ms_since(t0);
    sl_chan_destroy(&c);
    return V(rc);
}

static void test_timer__timeout_fires_within_tolerance(void **state)
{
    (void)state;
    const int64_t ms[] = {50, 10, 120, 1};
    for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i++) {
        int64_t t0 = sl_now();
        sl_chan_t *c = sl_timeout(ms[i]);
        assert_non_null(c);
        void *v;
        SL_ASSERT_ERR(sl_poll(c, &v), SL_EAGAIN); /* open at first */
        SL_ASSERT_ERR(sl_offer(c, V(1)), SL_EAGAIN);
        s_check_on_time(s_wait_closed(c, t0), (double)ms[i]);
        /* closed for good: puts fail, takes see closed */
        SL_ASSERT_ERR(sl_offer(c, V(1)), SL_ECLOSED);
        SL_ASSERT_ERR(sl_poll(c, &v), SL_ECLOSED);
        sl_chan_destroy(&c);
    }
    /* From a coroutine (it parks, the timer thread closes the channel). */
    co_tmo_t t = {.ms = 50};
    sl_chan_t *p = sl_go(s_co_timeout, &t);
    assert_non_null(p);
    void *rc = V(0);
    SL_ASSERT_OK(sl_take_until(p, &rc, sl_deadline_ms(sl_test_patience_ms())));
    sl_chan_destroy(&p);
    assert_int_equal(I(rc), SL_ECLOSED);
    s_check_on_time(t.elapsed, 50);
    /* Zero and negative: closed at once (well, on the timer's next turn). */
    for (int64_t z = 0; z >= -5; z -= 5) {
        int64_t t0 = sl_now();
        sl_chan_t *c = sl_timeout(z);
        assert_non_null(c);
        double e = s_wait_closed(c, t0);
        assert_true(e <= s_late_ms());
        sl_chan_destroy(&c);
    }
}

static void test_timer__each_timeout_is_its_own_channel(void **state)
{
    (void)state;
    void *v;
    /* Made in the same millisecond: distinct channels. */
    sl_chan_t *a = sl_timeout(100), *b = sl_timeout(100), *c = sl_timeout(100);
    assert_non_null(a);
    assert_non_null(b);
    assert_ptr_not_equal(a, b);
    assert_ptr_not_equal(b, c);
    /* Closing one by hand does not close another. */
    sl_chan_close(a);
    SL_ASSERT_ERR(sl_poll(a, &v), SL_ECLOSED);
    SL_ASSERT_ERR(sl_poll(b, &v), SL_EAGAIN);
    assert_false(s_closed(b));
    /* Waiting on one (and timing out) leaves the others alone. */
    SL_ASSERT_ERR(sl_take_until(b, &v, sl_deadline_ms(10)), SL_ETIMEDOUT);
    assert_false(s_closed(c));
    sl_chan_stats_t st;
    sl_chan_stats(c, &st);
    assert_int_equal(st.pending_takes, 0);
    /* Dropping our reference before it fires is fine; the rest fire. */
    sl_chan_destroy(&c);
    int64_t t0 = sl_now();
    double e = s_wait_closed(b, t0);
    assert_true(e <= 100 + s_late_ms());
    sl_chan_destroy(&a);
    sl_chan_destroy(&b);

    /* A short and a long timer made together: only the short one closes. */
    sl_chan_t *lng = sl_timeout(1000), *shrt = sl_timeout(30);
    t0 = sl_now();
    s_wait_closed(shrt, t0);
    assert_false(s_closed(lng));
    SL_ASSERT_ERR(sl_poll(lng, &v), SL_EAGAIN);
    /* A value put into a timeout channel by a peer is a normal hand-off. */
    sl_chan_close(lng); /* early close by hand: the timer later is harmless */
    sl_chan_destroy(&lng);
    sl_chan_destroy(&shrt);
}

/* ------------------------------------------------------------------------
 * A million live timers.
 * --------------------------------------------------------------------- */

typedef struct {
    sl_chan_t *c;
    int64_t due; /* earliest legal close: creation time + ms */
} tmo_t;

static int s_by_due(const void *a, const void *b)
{
    const tmo_t *x = a, *y = b;
    return x->due < y->due ? -1 : x->due > y->due;
}

/* While the timers are being made, a watcher waits on some of them and
 * measures how late (or early) each closes. */
typedef struct {
    tmo_t *t;
    _Atomic size_t made;
    _Atomic int stop;
    size_t watched, early;
    double worst_late;
} watch_t;

static void *s_watcher(void *arg)
{
    watch_t *w = arg;
    while (!atomic_load(&w->stop)) {
        size_t i = atomic_load(&w->made);
        if (i == 0) {
            sl_sleep_ms(1);
            continue;
        }
        tmo_t *t = &w->t[i - 1];
        void *v;
        if (sl_take_until(t->c, &v, sl_deadline_ms(sl_test_patience_ms())) != SL_ECLOSED)
            return V(-1);
        int64_t now = sl_now();
        if (now < t->due)
            w->early++;
        double late = (double)(now - t->due) / 1e6;
        if (late > w->worst_late)
            w->worst_late = late;
        w->watched++;
    }
    return V(0);
}

static void test_timer__many_live_timers(void **state)
{
    (void)state;
    const size_t n = sl_test_sanitized() ? 200000 : 1000000;
    tmo_t *t = malloc(n * sizeof *t);
    assert_non_null(t);
    watch_t w = {.t = t};
    pthread_t wt;
    assert_int_equal(pthread_create(&wt, NULL, s_watcher, &w), 0);
    unsigned seed = 12345;
    size_t early = 0;
    int64_t t0 = sl_now();
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        int64_t ms = 100 + (int64_t)((seed >> 8) % 501); /* 100..600 */
        t[i].due = sl_now() + ms * MS;
        t[i].c = sl_timeout(ms);
        if (!t[i].c)
            fail_msg("sl_timeout failed at %zu", i);
        /* Making a million takes a while: meanwhile look at one timer made
         * earlier. Found closed before its due time means it fired early. */
        seed = seed * 1103515245u + 12345u;
        size_t j = (size_t)(seed >> 4) % (i + 1);
        void *v;
        if (sl_poll(t[j].c, &v) == SL_ECLOSED && sl_now() < t[j].due)
            early++;
        atomic_store(&w.made, i + 1);
    }
    atomic_store(&w.stop, 1);
    void *wrc = NULL;
    pthread_join(wt, &wrc);
    assert_int_equal(I(wrc), 0);
    double made_ms = sl_test_ms_since(t0);
    qsort(t, n, sizeof *t, s_by_due);

    /* Walk in deadline order. Before waiting on each, look: a channel found
     * closed before its due time closed early. Then wait for it. */
    size_t peeks = 0;
    double worst_late = 0;
    int64_t patience = sl_deadline_ms(sl_test_patience_ms() + 1000);
    for (size_t i = 0; i < n; i++) {
        void *v;
        int rc = sl_poll(t[i].c, &v);
        int64_t now = sl_now();
        if (rc == SL_ECLOSED) {
            if (now < t[i].due)
                early++;
        } else {
            assert_int_equal(rc, SL_EAGAIN);
            peeks++;
            rc = sl_take_until(t[i].c, &v, patience);
            if (rc != SL_ECLOSED)
                fail_msg("timer %zu (due in %.0f ms) did not close: %s", i,
                         (double)(t[i].due - t0) / 1e6, sl_err_name(rc));
            now = sl_now();
            if (now < t[i].due)
                early++;
            double late = (double)(now - t[i].due) / 1e6;
            if (late > worst_late)
                worst_late = late;
        }
    }
    double total_ms = sl_test_ms_since(t0);
    for (size_t i = 0; i < n; i++)
        sl_chan_destroy(&t[i].c);
    free(t);
    print_message("%zu timers: made in %.0f ms, all closed after %.0f ms; %zu waited on "
                  "after, worst lateness %.1f ms; %zu watched while making, worst lateness "
                  "%.1f ms; %zu early\n",
                  n, made_ms, total_ms, peeks, worst_late, w.watched, w.worst_late,
                  early + w.early);
    assert_int_equal(early, 0);
    assert_int_equal(w.early, 0);
    assert_true(w.watched > 0);
    /* Generous: the watcher itself must be scheduled on a busy machine. */
    if (w.worst_late > 15 * s_late_ms())
        fail_msg("with many timers live, one closed %.1f ms late", w.worst_late);
    /* The last is due ~600 ms after the last was made. */
    assert_true(total_ms < made_ms + 600 + 50 * s_late_ms());
    /* Timers waited on (not found already closed) fire close to on time. */
    assert_true(worst_late < 5 * s_late_ms());
}

/* ------------------------------------------------------------------------
 * Order: a timer due earlier closes no later than one due later.
 * --------------------------------------------------------------------- */

typedef struct {
    _Atomic int seq;
    int order[512];   /* order[k] = index of the k-th timer to close */
    _Atomic int done;
} order_t;

typedef struct {
    order_t *o;
    int index;
} order_arg_t;

static void s_record_close(int status, void *value, void *arg)
{
    (void)value;
    order_arg_t *a = arg;
    int k = atomic_fetch_add(&a->o->seq, 1);
    if (status == SL_ECLOSED && k < 512)
        a->o->order[k] = a->index;
    atomic_fetch_add(&a->o->done, 1);
}

typedef struct {
    int n;
    int64_t spacing_us; /* deadline step between successive timers */
    int *ms;            /* per index: ms argument (filled by the caller) */
    order_t *o;
    order_arg_t *args;
    sl_chan_t **chans;
    int64_t *due;
} order_job_t;

/* Runs in a coroutine, so every take callback lands on this one worker and
 * runs in the order the timer thread closed the channels. */
static void *s_arm_in_order(void *arg)
{
    order_job_t *j = arg;
    for (int i = 0; i < j->n; i++) {
        j->args[i] = (order_arg_t){j->o, i};
        j->due[i] = sl_now() + j->ms[i] * MS;
        j->chans[i] = sl_timeout(j->ms[i]);
        if (!j->chans[i] || sl_take_cb(j->chans[i], s_record_close, &j->args[i]) != SL_OK)
            return V(-1);
    }
    return V(0);
}

static int s_all_done(void *arg)
{
    order_job_t *j = arg;
    return atomic_load(&j->o->done) == j->n;
}

static void s_check_order(order_job_t *j, const char *what)
{
    sl_chan_t *p = sl_go(s_arm_in_order, j);
    assert_non_null(p);
    void *rc = V(-1);
    SL_ASSERT_OK(sl_take_until(p, &rc, sl_deadline_ms(sl_test_patience_ms())));
    sl_chan_destroy(&p);
    assert_int_equal(I(rc), 0);
    assert_true(sl_test_wait_for(s_all_done, j, sl_test_patience_ms()));
    /* Inversions: a timer due strictly later closed before one due earlier. */
    int inversions = 0, first = -1;
    for (int k = 1; k < j->n; k++) {
        int a = j->o->order[k - 1], b = j->o->order[k];
        if (j->due[a] > j->due[b]) {
            inversions++;
            if (first < 0)
                first = k;
        }
    }
    for (int i = 0; i < j->n; i++)
        sl_chan_destroy(&j->chans[i]);
    int64_t base = j->due[0];
    for (int i = 1; i < j->n; i++)
        if (j->due[i] < base)
            base = j->due[i];
    if (inversions)
        fail_msg("%s: %d of %d timers closed out of deadline order (first at close #%d: "
                 "timer due +%.3f ms closed before timer due +%.3f ms)",
                 what, inversions, j->n, first,
                 (double)(j->due[j->o->order[first - 1]] - base) / 1e6,
                 (double)(j->due[j->o->order[first]] - base) / 1e6);
}

static void test_timer__timers_close_in_deadline_order(void **state)
{
    (void)state;
    enum { N = 200 };
    static order_t o;
    static order_arg_t args[N];
    static sl_chan_t *chans[N];
    static int64_t due[N];
    static int ms[N];
    order_job_t j = {.n = N, .ms = ms, .o = &o, .args = args, .chans = chans, .due = due};

    /* Distinct millisecond deadlines, armed in shuffled order. */
    memset(&o, 0, sizeof o);
    for (int i = 0; i < N; i++)
        ms[i] = 20 + 2 * i;
    unsigned seed = 7;
    for (int i = N - 1; i > 0; i--) {
        seed = seed * 1103515245u + 12345u;
        int k = (int)((seed >> 8) % (unsigned)(i + 1)), t = ms[i];
        ms[i] = ms[k];
        ms[k] = t;
    }
    s_check_order(&j, "shuffled deadlines 2 ms apart");

    /* The same timeout made N times in a row: due in creation order, some
     * microseconds apart, so several come due in one turn of the timer. */
    memset(&o, 0, sizeof o);
    for (int i = 0; i < N; i++)
        ms[i] = 30;
    s_check_order(&j, "timeout(30) made 200 times in a row");
}

static int s_setup(void **state)
{
    (void)state;
    int rc = sl_sched_start(NULL);
    return rc == SL_OK || rc == SL_ESTATE ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_timer__timeout_fires_within_tolerance),
        cmocka_unit_test(test_timer__each_timeout_is_its_own_channel),
        cmocka_unit_test(test_timer__many_live_timers),
        cmocka_unit_test(test_timer__timers_close_in_deadline_order),
    };
    return cmocka_run_group_tests(tests, s_setup, NULL);
}
