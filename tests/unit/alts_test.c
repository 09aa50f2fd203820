/* alts_test.c -- sl_alts: fair choice, priority, default, deadlines, mixed
 * puts and takes, closed channels, timeout channels, and exactly-once
 * commit when many threads and coroutines race over shared channels. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "testlib.h"

static sl_chan_stats_t s_stats(sl_chan_t *c)
{
    sl_chan_stats_t st;
    sl_chan_stats(c, &st);
    return st;
}

typedef struct {
    sl_chan_t *c;
    size_t puts, takes;
} pending_t;

static int s_pending_reached(void *arg)
{
    pending_t *p = arg;
    sl_chan_stats_t st = s_stats(p->c);
    return st.pending_puts == p->puts && st.pending_takes == p->takes;
}

static void s_wait_pending(sl_chan_t *c, size_t puts, size_t takes)
{
    pending_t p = {c, puts, takes};
    assert_true(sl_test_wait_for(s_pending_reached, &p, sl_test_patience_ms()));
}

/* Alts run in a thread or coroutine, with its own ops array. */
typedef struct {
    sl_alt_t ops[4];
    size_t n;
    int flags;
    int64_t deadline;
    int rc;
} altjob_t;

static void *s_alts_job(void *arg)
{
    altjob_t *j = arg;
    j->rc = sl_alts(j->ops, j->n, j->flags, j->deadline);
    return NULL;
}

/* ------------------------------------------------------------------------ */

static void test_alts__bad_arguments(void **state)
{
    (void)state;
    sl_chan_t *c = sl_chan_new(SL_BUF_FIXED, 2);
    sl_alt_t ops[2] = {{.chan = c}, {.chan = NULL}};
    SL_ASSERT_ERR(sl_alts(ops, 0, 0, SL_FOREVER), SL_EINVAL);
    SL_ASSERT_ERR(sl_alts(NULL, 1, 0, SL_FOREVER), SL_EINVAL);
    SL_ASSERT_ERR(sl_alts(ops, 2, 0, SL_FOREVER), SL_EINVAL);
    /* even when the valid op could complete: nothing is committed */
    ops[0] = (sl_alt_t){.chan = c, .is_put = true, .val = V(1)};
    SL_ASSERT_ERR(sl_alts(ops, 2, 0, SL_FOREVER), SL_EINVAL);
    assert_int_equal(s_stats(c).count, 0);
    sl_chan_destroy(&c);
}

static void s_fairness(bool puts)
{
    enum { N = 30000 };
    sl_chan_t *c[3];
    for (int i = 0; i < 3; i++) {
        if (puts) {
            c[i] = sl_chan_new(SL_BUF_DROPPING, 1); /* a put never waits */
        } else {
            c[i] = sl_chan_new(SL_BUF_PROMISE, 0); /* a take never waits */
            SL_ASSERT_OK(sl_offer(c[i], V(i + 1)));
        }
    }
    int hits[3] = {0};
    for (int k = 0; k < N; k++) {
        sl_alt_t ops[3];
        for (int i = 0; i < 3; i++)
            ops[i] = (sl_alt_t){.chan = c[i], .is_put = puts, .val = V(100 + i), .status = 99};
        int rc = sl_alts(ops, 3, 0, SL_FOREVER);
        assert_true(rc >= 0 && rc < 3);
        assert_int_equal(ops[rc].status, SL_OK);
        if (!puts)
            assert_int_equal(I(ops[rc].val), rc + 1);
        for (int i = 0; i < 3; i++)
            if (i != rc) /* untouched */
                assert_int_equal(ops[i].status, 99);
        hits[rc]++;
    }
    for (int i = 0; i < 3; i++)
        if (hits[i] < N / 3 * 9 / 10 || hits[i] > N / 3 * 11 / 10)
            fail_msg("%s: index %d chosen %d of %d times (%d/%d/%d)", puts ? "puts" : "takes", i,
                     hits[i], N, hits[0], hits[1], hits[2]);
    for (int i = 0; i < 3; i++)
        sl_chan_destroy(&c[i]);
}

static void test_alts__fair_among_ready_takes(void **state)
{
    (void)state;
    s_fairness(false);
}

static void test_alts__fair_among_ready_puts(void **state)
{
    (void)state;
    s_fairness(true);
}

static void test_alts__fair_between_two_sliding_channels(void **state)
{
    (void)state;
    /* Ready because they hold a value; the value taken is refilled. */
    enum { N = 20000 };
    sl_chan_t *a = sl_chan_new(SL_BUF_SLIDING, 1), *b = sl_chan_new(SL_BUF_SLIDING, 1);
    SL_ASSERT_OK(sl_offer(a, V(1)));
    SL_ASSERT_OK(sl_offer(b, V(2)));
    int hits[2] = {0};
    for (int k = 0; k < N; k++) {
        sl_alt_t ops[2] = {{.chan = a}, {.chan = b}};
        int rc = sl_alts(ops, 2, 0, SL_FOREVER);
        assert_true(rc == 0 || rc == 1);
        assert_int_equal(I(ops[rc].val), rc + 1);
        hits[rc]++;
        SL_ASSERT_OK(sl_offer(rc ? b : a, V(rc + 1)));
    }
    assert_in_range(hits[0], N / 2 * 9 / 10, N / 2 * 11 / 10);
    sl_chan_destroy(&a);
    sl_chan_destroy(&b);
}

static void test_alts__priority_picks_first_ready(void **state)
{
    (void)state;
    sl_chan_t *c[3];
    for (int i = 0; i < 3; i++)
        c[i] = sl_chan_new(SL_BUF_FIXED, 4);
    /* Only 1 and 2 ready: always 1. */
    SL_ASSERT_OK(sl_offer(c[1], V(11)));
    SL_ASSERT_OK(sl_offer(c[2], V(22)));
    for (int k = 0; k < 2000; k++) {
        sl_alt_t ops[3] = {{.chan = c[0]}, {.chan = c[1]}, {.chan = c[2]}};
        SL_ASSERT_ERR(sl_alts(ops, 3, SL_ALTS_PRIORITY, SL_FOREVER), 1);
        assert_int_equal(I(ops[1].val), 11);
        SL_ASSERT_OK(sl_offer(c[1], V(11)));
    }
    /* All ready: always 0. */
    SL_ASSERT_OK(sl_offer(c[0], V(0)));
    for (int k = 0; k < 2000; k++) {
        sl_alt_t ops[3] = {{.chan = c[0]}, {.chan = c[1]}, {.chan = c[2]}};
        SL_ASSERT_ERR(sl_alts(ops, 3, SL_ALTS_PRIORITY | SL_ALTS_DEFAULT, SL_FOREVER), 0);
        SL_ASSERT_OK(sl_offer(c[0], V(0)));
    }
    /* Mixed: a ready put listed before a ready take wins. */
    sl_chan_t *room = sl_chan_new(SL_BUF_DROPPING, 1);
    for (int k = 0; k < 500; k++) {
        sl_alt_t ops[2] = {{.chan = room, .is_put = true, .val = V(5)}, {.chan = c[2]}};
        SL_ASSERT_ERR(sl_alts(ops, 2, SL_ALTS_PRIORITY, SL_FOREVER), 0);
    }
    assert_int_equal(s_stats(c[2]).count, 1); /* never taken */
    sl_chan_destroy(&room);
    for (int i = 0; i < 3; i++)
        sl_chan_destroy(&c[i]);
}

static void test_alts__default_returns_eagain_when_nothing_ready(void **state)
{
    (void)state;
    sl_chan_t *none = sl_chan_new(SL_BUF_NONE, 0);
    sl_chan_t *full = sl_chan_new(SL_BUF_FIXED, 2);
    sl_chan_t *empty = sl_chan_new(SL_BUF_FIXED, 2);
    SL_ASSERT_OK(sl_offer(full, V(1)));
    SL_ASSERT_OK(sl_offer(full, V(2)));
    int64_t t0 = sl_now();
    for (int k = 0; k < 1000; k++) {
        sl_alt_t ops[4] = {{.chan = none, .status = 99, .val = V(-1)},
                           {.chan = none, .is_put = true, .val = V(3), .status = 99},
                           {.chan = full, .is_put = true, .val = V(4), .status = 99},
                           {.chan = empty, .status = 99, .val = V(-1)}};
        SL_ASSERT_ERR(sl_alts(ops, 4, SL_ALTS_DEFAULT, SL_FOREVER), SL_EAGAIN);
        for (int i = 0; i < 4; i++)
            assert_int_equal(ops[i].status, 99);
        assert_ptr_equal(ops[0].val, V(-1));
        assert_ptr_equal(ops[3].val, V(-1));
    }
    assert_true(sl_test_ms_since(t0) < 1000);
    /* Nothing was left waiting, nothing committed. */
    sl_chan_stats_t st = s_stats(none);
    assert_int_equal(st.pending_puts + st.pending_takes, 0);
    assert_int_equal(st.puts, 0);
    assert_int_equal(s_stats(full).count, 2);
    assert_int_equal(s_stats(full).pending_puts, 0);
    assert_int_equal(s_stats(empty).pending_takes, 0);
    void *v;
    SL_ASSERT_ERR(sl_poll(none, &v), SL_EAGAIN);
    SL_ASSERT_ERR(sl_offer(none, V(1)), SL_EAGAIN);
    /* With one ready, DEFAULT commits it. */
    SL_ASSERT_OK(sl_offer(empty, V(9)));
    sl_alt_t ops[2] = {{.chan = none}, {.chan = empty}};
    SL_ASSERT_ERR(sl_alts(ops, 2, SL_ALTS_DEFAULT, SL_FOREVER), 1);
    assert_int_equal(ops[1].status, SL_OK);
    assert_int_equal(I(ops[1].val), 9);
    sl_chan_destroy(&none);
    sl_chan_destroy(&full);
    sl_chan_destroy(&empty);
}

static void *s_co_alts_deadline(void *arg)
{
    altjob_t *j = arg;
    j->rc = sl_alts(j->ops, j->n, j->flags, j->deadline);
    return NULL;
}

static void test_alts__deadline_times_out(void **state)
{
    (void)state;
    sl_chan_t *a = sl_chan_new(SL_BUF_NONE, 0), *b = sl_chan_new(SL_BUF_FIXED, 2);
    SL_ASSERT_OK(sl_offer(b, V(1))); /* full: a put on b cannot complete */
    SL_ASSERT_OK(sl_offer(b, V(0)));
    for (int in_co = 0; in_co < 2; in_co++) {
        int64_t t0 = sl_now();
        altjob_t j = {.ops = {{.chan = a, .status = 99},
                              {.chan = b, .is_put = true, .val = V(2), .status = 99}},
                      .n = 2,
                      .deadline = t0 + 50 * 1000000LL};
        if (in_co) {
            sl_chan_t *p = sl_test_go(s_co_alts_deadline, &j);
            sl_test_result(&p, sl_test_patience_ms());
        } else {
            s_alts_job(&j);
        }
        double ms = sl_test_ms_since(t0);
        SL_ASSERT_ERR(j.rc, SL_ETIMEDOUT);
        if (ms < 50 || ms > 50 + sl_test_slack_ms())
            fail_msg("alts with a 50 ms deadline returned after %.1f ms", ms);
        assert_int_equal(j.ops[0].status, 99);
        assert_int_equal(j.ops[1].status, 99);
        /* nothing left behind: a later put is not swallowed by a dead alts */
        SL_ASSERT_ERR(sl_offer(a, V(3)), SL_EAGAIN);
        sl_chan_stats_t st = s_stats(a);
        assert_int_equal(st.pending_takes, 0);
        st = s_stats(b);
        assert_int_equal(st.pending_puts, 0);
        assert_int_equal(st.count, 2);
    }
    /* A deadline already passed: at once, but ready ops still win. */
    int64_t t0 = sl_now();
    sl_alt_t ops[1] = {{.chan = a}};
    SL_ASSERT_ERR(sl_alts(ops, 1, 0, sl_now() - 1), SL_ETIMEDOUT);
    assert_true(sl_test_ms_since(t0) < 50);
    sl_alt_t ready[1] = {{.chan = b}};
    SL_ASSERT_ERR(sl_alts(ready, 1, 0, sl_now() - 1), 0);
    assert_int_equal(I(ready[0].val), 1);
    sl_chan_destroy(&a);
    sl_chan_destroy(&b);
}

typedef struct {
    sl_chan_t *c;
    void *val;
    int rc;
} peer_t;

static void *s_peer_take(void *arg)
{
    peer_t *p = arg;
    p->rc = sl_take_until(p->c, &p->val, sl_deadline_ms(sl_test_patience_ms()));
    return NULL;
}

static void *s_peer_put(void *arg)
{
    peer_t *p = arg;
    p->rc = sl_put_until(p->c, p->val, sl_deadline_ms(sl_test_patience_ms()));
    return NULL;
}

static void test_alts__mixed_puts_and_takes(void **state)
{
    (void)state;
    sl_chan_t *in = sl_chan_new(SL_BUF_NONE, 0), *out = sl_chan_new(SL_BUF_NONE, 0);
    for (int round = 0; round < 4; round++) {
        bool peer_takes = round % 2 == 0;
        bool in_co = round >= 2;
        altjob_t j = {.ops = {{.chan = in, .status = 99, .val = V(-1)},
                              {.chan = out, .is_put = true, .val = V(70 + round), .status = 99}},
                      .n = 2,
                      .deadline = sl_deadline_ms(sl_test_patience_ms())};
        pthread_t t = 0;
        sl_chan_t *co = NULL;
        if (in_co)
            co = sl_test_go(s_alts_job, &j);
        else
            t = sl_test_thread(s_alts_job, &j);
        /* the alts waits on both channels */
        s_wait_pending(in, 0, 1);
        s_wait_pending(out, 1, 0);
        peer_t p = {.c = peer_takes ? out : in, .val = V(80 + round)};
        if (peer_takes)
            s_peer_take(&p);
        else
            s_peer_put(&p);
        if (in_co)
            sl_test_result(&co, sl_test_patience_ms());
        else
            sl_test_join(t);
        SL_ASSERT_OK(p.rc);
        if (peer_takes) {
            assert_int_equal(j.rc, 1);
            assert_int_equal(j.ops[1].status, SL_OK);
            assert_int_equal(I(p.val), 70 + round);
            assert_int_equal(j.ops[0].status, 99);
        } else {
            assert_int_equal(j.rc, 0);
            assert_int_equal(j.ops[0].status, SL_OK);
            assert_int_equal(I(j.ops[0].val), 80 + round);
            assert_int_equal(j.ops[1].status, 99);
        }
        /* the other op was withdrawn */
        sl_chan_stats_t si = s_stats(in), so = s_stats(out);
        assert_int_equal(si.pending_takes + si.pending_puts, 0);
        assert_int_equal(so.pending_takes + so.pending_puts, 0);
        void *v;
        SL_ASSERT_ERR(sl_poll(out, &v), SL_EAGAIN);
        SL_ASSERT_ERR(sl_offer(in, V(1)), SL_EAGAIN);
    }
    /* Ready at once: a put to a waiting taker, in the same alts as a take. */
    peer_t p = {.c = out};
    pthread_t t = sl_test_thread(s_peer_take, &p);
    s_wait_pending(out, 0, 1);
    sl_alt_t ops[2] = {{.chan = in}, {.chan = out, .is_put = true, .val = NULL}};
    SL_ASSERT_ERR(sl_alts(ops, 2, 0, sl_deadline_ms(sl_test_patience_ms())), 1);
    sl_test_join(t);
    SL_ASSERT_OK(p.rc);
    assert_null(p.val); /* NULL is a value */
    sl_chan_destroy(&in);
    sl_chan_destroy(&out);
}

static void test_alts__closed_channel_commits_eclosed(void **state)
{
    (void)state;
    sl_chan_t *open = sl_chan_new(SL_BUF_NONE, 0), *shut = sl_chan_new(SL_BUF_FIXED, 2);
    sl_chan_close(shut);
    /* A take on a closed channel is ready, with SL_ECLOSED. */
    sl_alt_t ops[2] = {{.chan = open, .status = 99}, {.chan = shut, .status = 99, .val = V(-1)}};
    SL_ASSERT_ERR(sl_alts(ops, 2, 0, SL_FOREVER), 1);
    assert_int_equal(ops[1].status, SL_ECLOSED);
    assert_int_equal(ops[0].status, 99);
    /* So is a put. */
    sl_alt_t put[2] = {{.chan = open, .status = 99},
                       {.chan = shut, .is_put = true, .val = V(1), .status = 99}};
    SL_ASSERT_ERR(sl_alts(put, 2, SL_ALTS_DEFAULT, SL_FOREVER), 1);
    assert_int_equal(put[1].status, SL_ECLOSED);
    /* Closed while the alts waits: it wakes with SL_ECLOSED on that op. */
    for (int in_co = 0; in_co < 2; in_co++) {
        sl_chan_t *later = sl_chan_new(SL_BUF_NONE, 0);
        altjob_t j = {.ops = {{.chan = open, .status = 99}, {.chan = later, .status = 99}},
                      .n = 2,
                      .deadline = sl_deadline_ms(sl_test_patience_ms())};
        pthread_t t = 0;
        sl_chan_t *co = NULL;
        if (in_co)
            co = sl_test_go(s_alts_job, &j);
        else
            t = sl_test_thread(s_alts_job, &j);
        s_wait_pending(later, 0, 1);
        sl_chan_close(later);
        if (in_co)
            sl_test_result(&co, sl_test_patience_ms());
        else
            sl_test_join(t);
        assert_int_equal(j.rc, 1);
        assert_int_equal(j.ops[1].status, SL_ECLOSED);
        assert_int_equal(j.ops[0].status, 99);
        assert_int_equal(s_stats(open).pending_takes, 0);
        sl_chan_destroy(&later);
    }
    /* Priority: an open ready op listed first beats the closed one. */
    sl_chan_t *ready = sl_chan_new(SL_BUF_FIXED, 1);
    SL_ASSERT_OK(sl_offer(ready, V(5)));
    sl_alt_t pr[2] = {{.chan = ready}, {.chan = shut}};
    SL_ASSERT_ERR(sl_alts(pr, 2, SL_ALTS_PRIORITY, SL_FOREVER), 0);
    assert_int_equal(pr[0].status, SL_OK);
    assert_int_equal(I(pr[0].val), 5);
    sl_chan_destroy(&ready);
    sl_chan_destroy(&open);
    sl_chan_destroy(&shut);
}

static void test_alts__timeout_channel_as_an_op(void **state)
{
    (void)state;
    sl_chan_t *never = sl_chan_new(SL_BUF_NONE, 0);
    for (int k = 0; k < 3; k++) {
        int64_t t0 = sl_now();
        sl_chan_t *tmo = sl_timeout(50);
        assert_non_null(tmo);
        sl_alt_t ops[2] = {{.chan = never, .status = 99}, {.chan = tmo, .status = 99}};
        int rc = sl_alts(ops, 2, 0, sl_deadline_ms(sl_test_patience_ms()));
        double ms = sl_test_ms_since(t0);
        assert_int_equal(rc, 1);
        assert_int_equal(ops[1].status, SL_ECLOSED);
        assert_int_equal(ops[0].status, 99);
        if (ms < 50 || ms > 50 + sl_test_slack_ms())
            fail_msg("timeout(50) in alts fired after %.1f ms", ms);
        sl_chan_destroy(&tmo);
    }
    /* A value that arrives first beats the timeout. */
    sl_chan_t *tmo = sl_timeout(5000);
    peer_t p = {.c = never, .val = V(9)};
    pthread_t t = sl_test_thread(s_peer_put, &p);
    sl_alt_t ops[2] = {{.chan = never}, {.chan = tmo}};
    int64_t t0 = sl_now();
    SL_ASSERT_ERR(sl_alts(ops, 2, 0, SL_FOREVER), 0);
    assert_true(sl_test_ms_since(t0) < 2000);
    assert_int_equal(I(ops[0].val), 9);
    sl_test_join(t);
    sl_chan_destroy(&tmo);
    assert_int_equal(s_stats(never).pending_takes, 0);
    sl_chan_destroy(&never);
}

typedef struct {
    sl_alt_t ops[32];
    size_t n;
    int rc;
} bigalt_t;

static void *s_big_alts(void *arg)
{
    bigalt_t *b = arg;
    b->rc = sl_alts(b->ops, b->n, 0, sl_deadline_ms(sl_test_patience_ms()));
    return NULL;
}

static void test_alts__same_channel_twice_and_many_ops(void **state)
{
    (void)state;
    /* More ops than fit on the stack, one channel repeated. */
    enum { N = 20 };
    sl_chan_t *c[N];
    for (int i = 0; i < N; i++)
        c[i] = sl_chan_new(SL_BUF_FIXED, 2);
    sl_alt_t ops[N + 2];
    for (int i = 0; i < N; i++)
        ops[i] = (sl_alt_t){.chan = c[i], .status = 99};
    ops[N] = (sl_alt_t){.chan = c[7], .status = 99};
    ops[N + 1] = (sl_alt_t){.chan = c[7], .is_put = true, .val = V(3), .status = 99};
    /* c[7] is empty with room: only the put is ready. */
    SL_ASSERT_ERR(sl_alts(ops, N + 2, 0, SL_FOREVER), N + 1);
    assert_int_equal(s_stats(c[7]).count, 1);
    /* Now the value is there; wait across all and take it once. */
    for (int i = 0; i < N + 1; i++)
        ops[i].status = 99;
    int rc = sl_alts(ops, N + 1, 0, SL_FOREVER);
    assert_true(rc == 7 || rc == N);
    assert_int_equal(ops[rc].status, SL_OK);
    assert_int_equal(I(ops[rc].val), 3);
    assert_int_equal(s_stats(c[7]).count, 0);
    /* A waiting alts over N channels, woken by the last of them. */
    bigalt_t b = {.n = N};
    for (int i = 0; i < N; i++)
        b.ops[i] = (sl_alt_t){.chan = c[i], .status = 99};
    pthread_t t = sl_test_thread(s_big_alts, &b);
    for (int i = 0; i < N; i++)
        s_wait_pending(c[i], 0, 1);
    SL_ASSERT_OK(sl_put(c[N - 1], V(44)));
    sl_test_join(t);
    assert_int_equal(b.rc, N - 1);
    assert_int_equal(I(b.ops[N - 1].val), 44);
    for (int i = 0; i < N; i++) {
        sl_chan_stats_t st = s_stats(c[i]);
        assert_int_equal(st.pending_takes, 0);
        assert_int_equal(st.count, 0);
    }
    for (int i = 0; i < N; i++)
        assert_int_equal(sl_chan_check(c[i]), 0);
    for (int i = 0; i < N; i++)
        sl_chan_destroy(&c[i]);
}

static void test_alts__pending_limit(void **state)
{
    (void)state;
    sl_chan_t *a = sl_chan_new(SL_BUF_NONE, 0), *b = sl_chan_new(SL_BUF_NONE, 0);
    sl_chan_set_max_pending(b, 1);
    altjob_t j = {.ops = {{.chan = b}}, .n = 1, .deadline = sl_deadline_ms(sl_test_patience_ms())};
    pthread_t t = sl_test_thread(s_alts_job, &j);
    s_wait_pending(b, 0, 1);
    sl_alt_t ops[2] = {{.chan = a}, {.chan = b}};
    SL_ASSERT_ERR(sl_alts(ops, 2, 0, SL_FOREVER), SL_ELIMIT);
    assert_int_equal(s_stats(a).pending_takes, 0); /* nothing left queued */
    SL_ASSERT_OK(sl_put(b, V(1)));
    sl_test_join(t);
    assert_int_equal(j.rc, 0);
    sl_chan_destroy(&a);
    sl_chan_destroy(&b);
}

/* ------------------------------------------------------------------------
 * Exactly-once commit under concurrency.
 *
 * Channels A, B (unbuffered) and C (fixed 3) carry values from "alts
 * producers", whose every alts offers their next value to A, B and C and
 * also takes from D. Channel D (fixed 2) is fed by plain producers. Plain
 * consumers drain A, B, C and D; "alts consumers" take from all four.
 * Some alts carry short deadlines or SL_ALTS_DEFAULT, so commits race with
 * timeouts. Every value carries a unique id; at the end each id must have
 * been taken exactly once. An alts that committed twice would deliver a
 * value twice or lose a value it reported taken; one that reported a put
 * it did not make would lose that value.
 * --------------------------------------------------------------------- */

enum { XA, XB, XC, XD, XN };

typedef struct {
    sl_chan_t *ch[XN];
    int m;                    /* values per producer */
    _Atomic uint8_t *taken;   /* per id */
    _Atomic long takes;       /* values taken, all kinds */
    _Atomic long bad;
} race_t;

typedef struct {
    race_t *r;
    int id;                   /* producer index: ids id*m .. id*m+m-1 */
    int timeouts, eagains;
} actor_t;

static void s_mark(race_t *r, void *v)
{
    intptr_t id = I(v) - 1;
    if (id < 0 || atomic_fetch_add(&r->taken[id], 1) != 0)
        atomic_fetch_add(&r->bad, 1);
    atomic_fetch_add(&r->takes, 1);
}

static void *s_alts_producer(void *arg)
{
    actor_t *a = arg;
    race_t *r = a->r;
    unsigned seed = (unsigned)a->id * 7919u + 1;
    for (int seq = 0; seq < r->m;) {
        void *v = V((intptr_t)a->id * r->m + seq + 1);
        sl_alt_t ops[4] = {{.chan = r->ch[XA], .is_put = true, .val = v},
                           {.chan = r->ch[XB], .is_put = true, .val = v},
                           {.chan = r->ch[XC], .is_put = true, .val = v},
                           {.chan = r->ch[XD]}};
        seed = seed * 1103515245u + 12345u;
        unsigned mode = (seed >> 16) % 8;
        int flags = mode == 1 ? SL_ALTS_PRIORITY : mode == 2 ? SL_ALTS_DEFAULT : 0;
        int64_t deadline = mode >= 5 ? sl_now() + (int64_t)(seed % 50000) : SL_FOREVER;
        int rc = sl_alts(ops, 4, flags, deadline);
        if (rc == SL_ETIMEDOUT) {
            a->timeouts++;
        } else if (rc == SL_EAGAIN && flags == SL_ALTS_DEFAULT) {
            a->eagains++;
        } else if (rc >= 0 && rc < 3 && ops[rc].status == SL_OK) {
            seq++;
        } else if (rc == 3 && ops[3].status == SL_OK) {
            s_mark(r, ops[3].val);
        } else {
            atomic_fetch_add(&r->bad, 1);
            return V(-1);
        }
    }
    return V(0);
}

static void *s_plain_producer(void *arg)
{
    actor_t *a = arg;
    race_t *r = a->r;
    for (int seq = 0; seq < r->m; seq++)
        if (sl_put(r->ch[XD], V((intptr_t)a->id * r->m + seq + 1)) != SL_OK) {
            atomic_fetch_add(&r->bad, 1);
            return V(-1);
        }
    return V(0);
}

typedef struct {
    race_t *r;
    int which; /* channel index for plain consumers */
} consumer_t;

static void *s_plain_consumer(void *arg)
{
    consumer_t *c = arg;
    void *v;
    int rc;
    while ((rc = sl_take(c->r->ch[c->which], &v)) == SL_OK)
        s_mark(c->r, v);
    if (rc != SL_ECLOSED)
        atomic_fetch_add(&c->r->bad, 1);
    return NULL;
}

static void *s_alts_consumer(void *arg)
{
    consumer_t *c = arg;
    sl_chan_t *open[XN];
    size_t n = XN;
    for (int i = 0; i < XN; i++)
        open[i] = c->r->ch[i];
    while (n > 0) {
        sl_alt_t ops[XN];
        for (size_t i = 0; i < n; i++)
            ops[i] = (sl_alt_t){.chan = open[i]};
        int rc = sl_alts(ops, n, 0, SL_FOREVER);
        if (rc < 0 || (size_t)rc >= n) {
            atomic_fetch_add(&c->r->bad, 1);
            return NULL;
        }
        if (ops[rc].status == SL_OK)
            s_mark(c->r, ops[rc].val);
        else if (ops[rc].status == SL_ECLOSED)
            open[rc] = open[--n];
        else
            atomic_fetch_add(&c->r->bad, 1);
    }
    return NULL;
}

static void test_alts__exactly_once_under_concurrency(void **state)
{
    (void)state;
    enum { APT = 2, APC = 4, DPT = 1, DPC = 1, NPROD = APT + APC + DPT + DPC };
    race_t r = {.m = sl_test_sanitized() ? 16000 : 40000};
    r.ch[XA] = sl_chan_new(SL_BUF_NONE, 0);
    r.ch[XB] = sl_chan_new(SL_BUF_NONE, 0);
    r.ch[XC] = sl_chan_new(SL_BUF_FIXED, 3);
    r.ch[XD] = sl_chan_new(SL_BUF_FIXED, 2);
    r.taken = calloc((size_t)NPROD * r.m, 1);
    assert_non_null(r.taken);
    int64_t t0 = sl_now();

    /* consumers: per channel one thread and one coroutine, plus two alts
     * consumers (thread, coroutine) */
    consumer_t cons[XN * 2 + 2];
    pthread_t ct[XN + 1];
    sl_chan_t *cc[XN + 1];
    for (int i = 0; i < XN; i++) {
        cons[2 * i] = (consumer_t){&r, i};
        cons[2 * i + 1] = (consumer_t){&r, i};
        ct[i] = sl_test_thread(s_plain_consumer, &cons[2 * i]);
        cc[i] = sl_test_go(s_plain_consumer, &cons[2 * i + 1]);
    }
    cons[2 * XN] = (consumer_t){&r, -1};
    cons[2 * XN + 1] = (consumer_t){&r, -1};
    ct[XN] = sl_test_thread(s_alts_consumer, &cons[2 * XN]);
    cc[XN] = sl_test_go(s_alts_consumer, &cons[2 * XN + 1]);

    /* producers */
    actor_t act[NPROD];
    pthread_t pt[NPROD];
    sl_chan_t *pc[NPROD];
    for (int i = 0; i < NPROD; i++) {
        act[i] = (actor_t){.r = &r, .id = i};
        pc[i] = NULL;
        if (i < APT)
            pt[i] = sl_test_thread(s_alts_producer, &act[i]);
        else if (i < APT + APC)
            pc[i] = sl_test_go(s_alts_producer, &act[i]);
        else if (i < APT + APC + DPT)
            pt[i] = sl_test_thread(s_plain_producer, &act[i]);
        else
            pc[i] = sl_test_go(s_plain_producer, &act[i]);
    }
    for (int i = 0; i < NPROD; i++) {
        void *res;
        if (pc[i]) {
            res = V(-1);
            SL_ASSERT_OK(sl_take_until(pc[i], &res, sl_deadline_ms(120000)));
            sl_chan_destroy(&pc[i]);
        } else {
            res = sl_test_join(pt[i]);
        }
        assert_int_equal(I(res), 0);
    }
    for (int i = 0; i < XN; i++)
        sl_chan_close(r.ch[i]);
    for (int i = 0; i <= XN; i++) {
        sl_test_join(ct[i]);
        sl_test_result(&cc[i], sl_test_patience_ms());
    }
    double ms = sl_test_ms_since(t0);

    assert_int_equal(atomic_load(&r.bad), 0);
    long missing = 0, dup = 0;
    for (long k = 0; k < (long)NPROD * r.m; k++) {
        uint8_t n = atomic_load(&r.taken[k]);
        missing += n == 0;
        dup += n > 1;
    }
    if (missing || dup)
        fail_msg("%ld values never taken, %ld taken more than once", missing, dup);
    assert_int_equal(atomic_load(&r.takes), (long)NPROD * r.m);
    int timeouts = 0, eagains = 0;
    for (int i = 0; i < APT + APC; i++) {
        timeouts += act[i].timeouts;
        eagains += act[i].eagains;
    }
    /* the race with deadlines really happened */
    assert_true(timeouts + eagains > 0);
    for (int i = 0; i < XN; i++) {
        sl_chan_stats_t st = s_stats(r.ch[i]);
        assert_int_equal(st.puts, st.takes);
        assert_int_equal(st.count, 0);
        assert_int_equal(st.pending_puts + st.pending_takes, 0);
        assert_int_equal(sl_chan_check(r.ch[i]), 0);
        sl_chan_destroy(&r.ch[i]);
    }
    print_message("exactly-once: %d values in %.0f ms (%d timeouts, %d eagain)\n",
                  NPROD * r.m, ms, timeouts, eagains);
    free(r.taken);
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
        cmocka_unit_test(test_alts__bad_arguments),
        cmocka_unit_test(test_alts__fair_among_ready_takes),
        cmocka_unit_test(test_alts__fair_among_ready_puts),
        cmocka_unit_test(test_alts__fair_between_two_sliding_channels),
        cmocka_unit_test(test_alts__priority_picks_first_ready),
        cmocka_unit_test(test_alts__default_returns_eagain_when_nothing_ready),
        cmocka_unit_test(test_alts__deadline_times_out),
        cmocka_unit_test(test_alts__mixed_puts_and_takes),
        cmocka_unit_test(test_alts__closed_channel_commits_eclosed),
        cmocka_unit_test(test_alts__timeout_channel_as_an_op),
        cmocka_unit_test(test_alts__same_channel_twice_and_many_ops),
        cmocka_unit_test(test_alts__pending_limit),
        cmocka_unit_test(test_alts__exactly_once_under_concurrency),
    };
    return cmocka_run_group_tests(tests, s_setup, NULL);
}
