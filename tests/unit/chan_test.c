/* chan_test.c -- channels: every buffer kind at its edges, close, deadlines,
 * callbacks, the pending limit, counters, reference counting, and a
 * many-producer/many-consumer stress where every value must arrive once. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "testlib.h"

static sl_chan_stats_t s_stats(sl_chan_t *c)
{
    sl_chan_stats_t st;
    memset(&st, 0xab, sizeof st);
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

/* Wait until exactly puts/takes operations wait on c. */
static void s_wait_pending(sl_chan_t *c, size_t puts, size_t takes)
{
    pending_t p = {c, puts, takes};
    if (!sl_test_wait_for(s_pending_reached, &p, sl_test_patience_ms())) {
        sl_chan_stats_t st = s_stats(c);
        fail_msg("pending puts/takes %zu/%zu, expected %zu/%zu", st.pending_puts,
                 st.pending_takes, puts, takes);
    }
}

/* Wait until *x >= n (within patience). */
static int s_atomic_at_least(_Atomic int *x, int n)
{
    int64_t end = sl_deadline_ms(sl_test_patience_ms());
    while (atomic_load(x) < n && sl_now() < end)
        sl_sleep_ms(1);
    return atomic_load(x) >= n;
}

/* ------------------------------------------------------------------------
 * Operation runners: a thread or coroutine doing one put or take.
 * --------------------------------------------------------------------- */

typedef struct {
    sl_chan_t *c;
    void *val;          /* value to put / value taken */
    int rc;
    int64_t deadline;   /* SL_FOREVER or a deadline   */
} op_t;

static void *s_put_op(void *arg)
{
    op_t *o = arg;
    o->rc = sl_put_until(o->c, o->val, o->deadline);
    return NULL;
}

static void *s_take_op(void *arg)
{
    op_t *o = arg;
    o->rc = sl_take_until(o->c, &o->val, o->deadline);
    return NULL;
}

/* ------------------------------------------------------------------------
 * Creation
 * --------------------------------------------------------------------- */

static void test_chan__new_checks_capacity(void **state)
{
    (void)state;
    assert_null(sl_chan_new(SL_BUF_NONE, 1));
    assert_null(sl_chan_new(SL_BUF_PROMISE, 1));
    assert_null(sl_chan_new(SL_BUF_DROPPING, 0));
    assert_null(sl_chan_new(SL_BUF_SLIDING, 0));
    assert_null(sl_chan_new((sl_buf_t)99, 1));
    const sl_buf_t kinds[] = {SL_BUF_NONE, SL_BUF_FIXED, SL_BUF_DROPPING, SL_BUF_SLIDING,
                              SL_BUF_PROMISE};
    const size_t caps[] = {0, 5, 5, 5, 0};
    const size_t want[] = {0, 5, 5, 5, 1};
    for (int i = 0; i < 5; i++) {
        sl_chan_t *c = sl_chan_new(kinds[i], caps[i]);
        assert_non_null(c);
        sl_chan_stats_t st = s_stats(c);
        assert_int_equal(st.kind, kinds[i]);
        assert_int_equal(st.capacity, want[i]);
        assert_int_equal(st.count, 0);
        assert_int_equal(st.pending_puts, 0);
        assert_int_equal(st.pending_takes, 0);
        assert_int_equal(st.puts, 0);
        assert_int_equal(st.takes, 0);
        assert_int_equal(st.dropped, 0);
        assert_false(st.closed);
        assert_int_equal(sl_chan_check(c), 0);
        sl_chan_destroy(&c);
        assert_null(c);
    }
}

/* ------------------------------------------------------------------------
 * Buffer kinds: full, empty, close
 * --------------------------------------------------------------------- */

static void test_chan__fixed_full_and_empty(void **state)
{
    (void)state;
    sl_chan_t *c = sl_chan_new(SL_BUF_FIXED, 3);
    void *v = V(-1);
    SL_ASSERT_ERR(sl_poll(c, &v), SL_EAGAIN);
    assert_ptr_equal(v, V(-1)); /* untouched */
    for (int i = 0; i < 3; i++)
        SL_ASSERT_OK(sl_offer(c, V(i + 10)));
    SL_ASSERT_ERR(sl_offer(c, V(99)), SL_EAGAIN);
    SL_ASSERT_ERR(sl_put_until(c, V(99), sl_deadline_ms(0)), SL_ETIMEDOUT);
    sl_chan_stats_t st = s_stats(c);
    assert_int_equal(st.count, 3);
    assert_int_equal(st.puts, 3);
    assert_int_equal(st.dropped, 0);
    for (int i = 0; i < 3; i++) {
        SL_ASSERT_OK(sl_poll(c, &v));
        assert_int_equal(I(v), i + 10); /* FIFO */
    }
    SL_ASSERT_ERR(sl_poll(c, &v), SL_EAGAIN);
    /* Wrap around the ring a few times. */
    for (int i = 0; i < 20; i++) {
        SL_ASSERT_OK(sl_offer(c, V(i)));
        SL_ASSERT_OK(sl_offer(c, V(i + 100)));
        SL_ASSERT_OK(sl_take(c, &v));
        assert_int_equal(I(v), i);
        SL_ASSERT_OK(sl_take(c, &v));
        assert_int_equal(I(v), i + 100);
    }
    /* Close with values buffered: they stay takeable, then SL_ECLOSED. */
    SL_ASSERT_OK(sl_offer(c, V(1)));
    SL_ASSERT_OK(sl_offer(c, V(2)));
    sl_chan_close(c);
    sl_chan_close(c); /* twice is harmless */
    SL_ASSERT_ERR(sl_offer(c, V(3)), SL_ECLOSED);
    SL_ASSERT_ERR(sl_put(c, V(3)), SL_ECLOSED);
    SL_ASSERT_OK(sl_take(c, &v));
    assert_int_equal(I(v), 1);
    SL_ASSERT_OK(sl_poll(c, &v));
    assert_int_equal(I(v), 2);
    v = V(-1);
    SL_ASSERT_ERR(sl_take(c, &v), SL_ECLOSED);
    SL_ASSERT_ERR(sl_poll(c, &v), SL_ECLOSED);
    assert_ptr_equal(v, V(-1));
    st = s_stats(c);
    assert_true(st.closed);
    assert_int_equal(st.puts, st.takes + st.dropped + st.count);
    assert_int_equal(sl_chan_check(c), 0);
    sl_chan_destroy(&c);
}

static void test_chan__fixed_holds_exactly_cap(void **state)
{
    (void)state;
    /* Small, power-of-two and odd capacities: never more than cap buffered. */
    for (size_t cap = 1; cap <= 9; cap++) {
        sl_chan_t *c = sl_chan_new(SL_BUF_FIXED, cap);
        void *v;
        for (int round = 0; round < 3; round++) {
            for (size_t i = 0; i < cap; i++)
                SL_ASSERT_OK(sl_offer(c, V(i + 1)));
            if (sl_offer(c, V(99)) != SL_EAGAIN)
                fail_msg("fixed(%zu) accepted value %zu", cap, cap + 1);
            assert_int_equal(s_stats(c).count, cap);
            for (size_t i = 0; i < cap; i++) {
                SL_ASSERT_OK(sl_poll(c, &v));
                assert_int_equal(I(v), (intptr_t)i + 1);
            }
            SL_ASSERT_ERR(sl_poll(c, &v), SL_EAGAIN);
            SL_ASSERT_OK(sl_offer(c, V(7))); /* shift the ring by one */
            SL_ASSERT_OK(sl_poll(c, &v));
        }
        assert_int_equal(sl_chan_check(c), 0);
        sl_chan_destroy(&c);
    }
}

static void s_check_ring_drop(sl_buf_t kind)
{
    sl_chan_t *c = sl_chan_new(kind, 3);
    void *v;
    SL_ASSERT_ERR(sl_poll(c, &v), SL_EAGAIN);
    for (int i = 0; i < 10; i++)
        SL_ASSERT_OK(sl_offer(c, V(i))); /* never refuses */
    SL_ASSERT_OK(sl_put(c, V(10)));        /* never waits */
    SL_ASSERT_OK(sl_put_until(c, V(11), sl_deadline_ms(0)));
    sl_chan_stats_t st = s_stats(c);
    assert_int_equal(st.count, 3);
    assert_int_equal(st.puts, 12);
    assert_int_equal(st.dropped, 9);
    assert_int_equal(st.takes, 0);
    assert_int_equal(sl_chan_check(c), 0);
    /* dropping keeps the oldest, sliding the newest */
    int first = kind == SL_BUF_DROPPING ? 0 : 9;
    for (int i = 0; i < 3; i++) {
        SL_ASSERT_OK(sl_poll(c, &v));
        assert_int_equal(I(v), first + i);
    }
    SL_ASSERT_ERR(sl_poll(c, &v), SL_EAGAIN);
    /* after close: buffered values remain, puts fail */
    SL_ASSERT_OK(sl_offer(c, V(50)));
    sl_chan_close(c);
    SL_ASSERT_ERR(sl_offer(c, V(51)), SL_ECLOSED);
    SL_ASSERT_ERR(sl_put(c, V(51)), SL_ECLOSED);
    SL_ASSERT_OK(sl_take(c, &v));
    assert_int_equal(I(v), 50);
    SL_ASSERT_ERR(sl_take(c, &v), SL_ECLOSED);
    st = s_stats(c);
    assert_int_equal(st.puts, 13);
    assert_int_equal(st.takes, 4);
    assert_int_equal(st.dropped, 9);
    assert_int_equal(st.puts, st.takes + st.dropped + st.count);
    assert_int_equal(sl_chan_check(c), 0);
    sl_chan_destroy(&c);
}

static void test_chan__dropping_keeps_oldest_and_counts_drops(void **state)
{
    (void)state;
    s_check_ring_drop(SL_BUF_DROPPING);
}

static void test_chan__sliding_keeps_newest_and_counts_drops(void **state)
{
    (void)state;
    s_check_ring_drop(SL_BUF_SLIDING);
}

static void *s_promise_taker(void *arg)
{
    sl_chan_t *c = arg;
    void *v = V(-1);
    int rc = sl_take_until(c, &v, sl_deadline_ms(sl_test_patience_ms()));
    return rc == SL_OK ? v : V(rc);
}

static void test_chan__promise_gives_same_value_forever(void **state)
{
    (void)state;
    sl_chan_t *c = sl_chan_new(SL_BUF_PROMISE, 0);
    void *v;
    SL_ASSERT_ERR(sl_poll(c, &v), SL_EAGAIN);
    /* Takers waiting before the value: threads and coroutines. */
    pthread_t t[3];
    sl_chan_t *co[3];
    for (int i = 0; i < 3; i++) {
        t[i] = sl_test_thread(s_promise_taker, c);
        co[i] = sl_test_go(s_promise_taker, c);
    }
    s_wait_pending(c, 0, 6);
    SL_ASSERT_OK(sl_offer(c, V(42)));
    for (int i = 0; i < 3; i++) {
        assert_int_equal(I(sl_test_join(t[i])), 42);
        assert_int_equal(I(sl_test_result(&co[i], sl_test_patience_ms())), 42);
    }
    /* Later puts are accepted and ignored. */
    SL_ASSERT_OK(sl_offer(c, V(7)));
    SL_ASSERT_OK(sl_put(c, V(8)));
    for (int i = 0; i < 100; i++) {
        v = NULL;
        SL_ASSERT_OK(i % 2 ? sl_poll(c, &v) : sl_take(c, &v));
        assert_int_equal(I(v), 42);
    }
    sl_chan_stats_t st = s_stats(c);
    assert_int_equal(st.count, 1);
    assert_int_equal(st.capacity, 1);
    assert_int_equal(st.pending_takes, 0);
    /* After close: still the value, to every taker; puts fail. */
    sl_chan_close(c);
    SL_ASSERT_ERR(sl_offer(c, V(9)), SL_ECLOSED);
    SL_ASSERT_ERR(sl_put(c, V(9)), SL_ECLOSED);
    for (int i = 0; i < 3; i++) {
        t[i] = sl_test_thread(s_promise_taker, c);
        co[i] = sl_test_go(s_promise_taker, c);
    }
    for (int i = 0; i < 3; i++) {
        assert_int_equal(I(sl_test_join(t[i])), 42);
        assert_int_equal(I(sl_test_result(&co[i], sl_test_patience_ms())), 42);
    }
    for (int i = 0; i < 10; i++) {
        SL_ASSERT_OK(sl_take_until(c, &v, sl_deadline_ms(0)));
        assert_int_equal(I(v), 42);
    }
    assert_int_equal(sl_chan_check(c), 0);
    sl_chan_destroy(&c);

    /* A promise closed with no value: takers, waiting or not, see closed. */
    c = sl_chan_new(SL_BUF_PROMISE, 0);
    t[0] = sl_test_thread(s_promise_taker, c);
    s_wait_pending(c, 0, 1);
    sl_chan_close(c);
    assert_int_equal(I(sl_test_join(t[0])), SL_ECLOSED);
    SL_ASSERT_ERR(sl_poll(c, &v), SL_ECLOSED);
    SL_ASSERT_ERR(sl_offer(c, V(1)), SL_ECLOSED);
    SL_ASSERT_ERR(sl_poll(c, &v), SL_ECLOSED);
    sl_chan_destroy(&c);
}

/* ------------------------------------------------------------------------
 * Unbuffered rendezvous
 * --------------------------------------------------------------------- */

#define RV_N 2000

static void *s_rv_producer(void *arg)
{
    sl_chan_t *c = arg;
    for (int i = 0; i < RV_N; i++)
        if (sl_put(c, V(i + 1)) != SL_OK)
            return V(-1);
    return V(0);
}

static void *s_rv_consumer(void *arg)
{
    sl_chan_t *c = arg;
    for (int i = 0; i < RV_N; i++) {
        void *v;
        if (sl_take(c, &v) != SL_OK || I(v) != i + 1)
            return V(-1);
    }
    return V(0);
}

static _Atomic int s_put_done;

static void *s_put_then_flag(void *arg)
{
    op_t *o = arg;
    o->rc = sl_put(o->c, o->val);
    atomic_store(&s_put_done, 1);
    return NULL;
}

static void test_chan__unbuffered_rendezvous_between_threads(void **state)
{
    (void)state;
    sl_chan_t *c = sl_chan_new(SL_BUF_NONE, 0);
    void *v;
    SL_ASSERT_ERR(sl_offer(c, V(1)), SL_EAGAIN); /* nobody takes */
    SL_ASSERT_ERR(sl_poll(c, &v), SL_EAGAIN);    /* nobody puts  */

    /* A put does not complete until it is taken. */
    atomic_store(&s_put_done, 0);
    op_t o = {.c = c, .val = V(5), .rc = 99};
    pthread_t t = sl_test_thread(s_put_then_flag, &o);
    s_wait_pending(c, 1, 0);
    sl_sleep_ms(30);
    assert_int_equal(atomic_load(&s_put_done), 0);
    assert_int_equal(s_stats(c).count, 0);
    SL_ASSERT_OK(sl_take(c, &v));
    assert_int_equal(I(v), 5);
    sl_test_join(t);
    assert_int_equal(o.rc, SL_OK);
    assert_int_equal(atomic_load(&s_put_done), 1);

    /* Many hand-offs, in order, each side a thread. */
    t = sl_test_thread(s_rv_producer, c);
    pthread_t u = sl_test_thread(s_rv_consumer, c);
    assert_int_equal(I(sl_test_join(t)), 0);
    assert_int_equal(I(sl_test_join(u)), 0);
    sl_chan_stats_t st = s_stats(c);
    assert_int_equal(st.puts, RV_N + 1);
    assert_int_equal(st.takes, RV_N + 1);
    assert_int_equal(st.count, 0);
    assert_int_equal(sl_chan_check(c), 0);
    sl_chan_destroy(&c);
}

static void *s_rv_pair_local(void *arg)
{
    /* Spawned from a coroutine: both land on this worker. */
    sl_chan_t *c = arg;
    sl_chan_t *p = sl_go(s_rv_producer, c);
    sl_chan_t *q = sl_go(s_rv_consumer, c);
    void *a = V(-1), *b = V(-1);
    if (!p || !q)
        return V(-2);
    sl_take(p, &a);
    sl_take(q, &b);
    sl_chan_destroy(&p);
    sl_chan_destroy(&q);
    return I(a) == 0 && I(b) == 0 ? V(0) : V(-1);
}

static void test_chan__unbuffered_rendezvous_between_coroutines(void **state)
{
    (void)state;
    sl_chan_t *c = sl_chan_new(SL_BUF_NONE, 0);
    /* Across workers (spawned round-robin from a thread). */
    sl_chan_t *p = sl_test_go(s_rv_producer, c);
    sl_chan_t *q = sl_test_go(s_rv_consumer, c);
    assert_int_equal(I(sl_test_result(&p, sl_test_patience_ms())), 0);
    assert_int_equal(I(sl_test_result(&q, sl_test_patience_ms())), 0);
    /* On one worker. */
    p = sl_test_go(s_rv_pair_local, c);
    assert_int_equal(I(sl_test_result(&p, sl_test_patience_ms())), 0);
    /* Coroutine to thread and back. */
    p = sl_test_go(s_rv_producer, c);
    assert_int_equal(I(s_rv_consumer(c)), 0);
    assert_int_equal(I(sl_test_result(&p, sl_test_patience_ms())), 0);
    q = sl_test_go(s_rv_consumer, c);
    assert_int_equal(I(s_rv_producer(c)), 0);
    assert_int_equal(I(sl_test_result(&q, sl_test_patience_ms())), 0);
    sl_chan_stats_t st = s_stats(c);
    assert_int_equal(st.puts, 4 * RV_N);
    assert_int_equal(st.takes, 4 * RV_N);
    assert_int_equal(sl_chan_check(c), 0);
    sl_chan_destroy(&c);
}

static void *s_alts_take_job(void *arg)
{
    op_t *o = arg;
    sl_alt_t ops[1] = {{.chan = o->c}};
    int i = sl_alts(ops, 1, 0, o->deadline);
    o->rc = i == 0 ? ops[0].status : i;
    o->val = ops[0].val;
    return NULL;
}

static void test_chan__fixed_zero_is_unbuffered(void **state)
{
    (void)state;
    /* (chan 0) in core.async: a rendezvous, the same as SL_BUF_NONE. */
    sl_chan_t *c = sl_chan_new(SL_BUF_FIXED, 0);
    assert_non_null(c);
    sl_chan_stats_t st = s_stats(c);
    assert_int_equal(st.kind, SL_BUF_NONE);
    assert_int_equal(st.capacity, 0);
    void *v;
    SL_ASSERT_ERR(sl_offer(c, V(1)), SL_EAGAIN); /* nobody takes: no room */
    SL_ASSERT_ERR(sl_poll(c, &v), SL_EAGAIN);
    SL_ASSERT_ERR(sl_put_until(c, V(1), sl_deadline_ms(10)), SL_ETIMEDOUT);

    /* A put waits for its taker, then both complete together. */
    atomic_store(&s_put_done, 0);
    op_t o = {.c = c, .val = V(5), .rc = 99};
    pthread_t t = sl_test_thread(s_put_then_flag, &o);
    s_wait_pending(c, 1, 0);
    sl_sleep_ms(30);
    assert_int_equal(atomic_load(&s_put_done), 0);
    assert_int_equal(s_stats(c).count, 0);
    SL_ASSERT_OK(sl_take(c, &v));
    assert_int_equal(I(v), 5);
    sl_test_join(t);
    assert_int_equal(o.rc, SL_OK);

    /* A take waits for its putter. */
    op_t tk = {.c = c, .val = V(-1), .rc = 99, .deadline = SL_FOREVER};
    t = sl_test_thread(s_take_op, &tk);
    s_wait_pending(c, 0, 1);
    SL_ASSERT_OK(sl_offer(c, V(6))); /* a waiting taker: the offer completes */
    sl_test_join(t);
    assert_int_equal(tk.rc, SL_OK);
    assert_int_equal(I(tk.val), 6);

    /* alts: a put with no taker is not ready; with a waiting taker it is. */
    sl_alt_t put[1] = {{.chan = c, .is_put = true, .val = V(7)}};
    SL_ASSERT_ERR(sl_alts(put, 1, SL_ALTS_DEFAULT, SL_FOREVER), SL_EAGAIN);
    SL_ASSERT_ERR(sl_alts(put, 1, 0, sl_deadline_ms(10)), SL_ETIMEDOUT);
    tk = (op_t){.c = c, .val = V(-1), .rc = 99, .deadline = SL_FOREVER};
    t = sl_test_thread(s_alts_take_job, &tk); /* a take inside an alts */
    s_wait_pending(c, 0, 1);
    SL_ASSERT_ERR(sl_alts(put, 1, 0, sl_deadline_ms(sl_test_patience_ms())), 0);
    assert_int_equal(put[0].status, SL_OK);
    sl_test_join(t);
    assert_int_equal(tk.rc, SL_OK);
    assert_int_equal(I(tk.val), 7);

    /* alts take meets a waiting put. */
    o = (op_t){.c = c, .val = V(8), .rc = 99, .deadline = SL_FOREVER};
    t = sl_test_thread(s_put_op, &o);
    s_wait_pending(c, 1, 0);
    sl_alt_t take[1] = {{.chan = c}};
    SL_ASSERT_ERR(sl_alts(take, 1, SL_ALTS_DEFAULT, SL_FOREVER), 0);
    assert_int_equal(take[0].status, SL_OK);
    assert_int_equal(I(take[0].val), 8);
    sl_test_join(t);
    assert_int_equal(o.rc, SL_OK);

    st = s_stats(c);
    assert_int_equal(st.puts, 4);
    assert_int_equal(st.takes, 4);
    assert_int_equal(st.count, 0);
    assert_int_equal(sl_chan_check(c), 0);
    sl_chan_close(c);
    SL_ASSERT_ERR(sl_take(c, &v), SL_ECLOSED);
    sl_chan_destroy(&c);

    /* Dropping and sliding buffers of 0 would discard every value: refused. */
    assert_null(sl_chan_new(SL_BUF_DROPPING, 0));
    assert_null(sl_chan_new(SL_BUF_SLIDING, 0));
}

/* ------------------------------------------------------------------------
 * Close with waiters
 * --------------------------------------------------------------------- */

static void *s_co_put(void *arg)
{
    op_t *o = arg;
    o->rc = sl_put(o->c, o->val);
    return NULL;
}

static void *s_co_take(void *arg)
{
    op_t *o = arg;
    o->rc = sl_take(o->c, &o->val);
    return NULL;
}

static void s_close_with_pending_puts(sl_chan_t *c, int buffered)
{
    /* buffered values first, then 2 waiting threads and 2 waiting coroutines */
    for (int i = 0; i < buffered; i++)
        SL_ASSERT_OK(sl_offer(c, V(100 + i)));
    op_t o[4];
    pthread_t t[2];
    sl_chan_t *co[2];
    for (int i = 0; i < 4; i++)
        o[i] = (op_t){.c = c, .val = V(i + 1), .rc = 99, .deadline = SL_FOREVER};
    t[0] = sl_test_thread(s_put_op, &o[0]);
    s_wait_pending(c, 1, 0);
    co[0] = sl_test_go(s_co_put, &o[1]);
    s_wait_pending(c, 2, 0);
    t[1] = sl_test_thread(s_put_op, &o[2]);
    s_wait_pending(c, 3, 0);
    co[1] = sl_test_go(s_co_put, &o[3]);
    s_wait_pending(c, 4, 0);

    sl_chan_close(c);
    /* New puts fail at once, even blocking ones. */
    int64_t t0 = sl_now();
    SL_ASSERT_ERR(sl_put(c, V(77)), SL_ECLOSED);
    SL_ASSERT_ERR(sl_offer(c, V(77)), SL_ECLOSED);
    SL_ASSERT_ERR(sl_put_until(c, V(77), sl_deadline_ms(1000)), SL_ECLOSED);
    assert_true(sl_test_ms_since(t0) < 500);
    /* The waiting puts are still waiting, their values takeable in order. */
    sl_chan_stats_t st = s_stats(c);
    assert_int_equal(st.pending_puts, 4);
    assert_true(st.closed);
    for (int i = 0; i < 4; i++)
        assert_int_equal(o[i].rc, 99);
    void *v;
    for (int i = 0; i < buffered; i++) {
        SL_ASSERT_OK(sl_take(c, &v));
        assert_int_equal(I(v), 100 + i);
    }
    for (int i = 0; i < 4; i++) {
        SL_ASSERT_OK(sl_take_until(c, &v, sl_deadline_ms(sl_test_patience_ms())));
        assert_int_equal(I(v), i + 1);
    }
    SL_ASSERT_ERR(sl_take(c, &v), SL_ECLOSED);
    sl_test_join(t[0]);
    sl_test_join(t[1]);
    sl_test_result(&co[0], sl_test_patience_ms());
    sl_test_result(&co[1], sl_test_patience_ms());
    for (int i = 0; i < 4; i++)
        assert_int_equal(o[i].rc, SL_OK);
    st = s_stats(c);
    assert_int_equal(st.pending_puts, 0);
    assert_int_equal(st.puts, st.takes);
    assert_int_equal(st.takes, (uint64_t)buffered + 4);
    assert_int_equal(sl_chan_check(c), 0);
}

static void test_chan__close_keeps_pending_puts_takeable(void **state)
{
    (void)state;
    sl_chan_t *c = sl_chan_new(SL_BUF_NONE, 0);
    s_close_with_pending_puts(c, 0);
    sl_chan_destroy(&c);
    c = sl_chan_new(SL_BUF_FIXED, 2);
    s_close_with_pending_puts(c, 2);
    sl_chan_destroy(&c);
}

static void test_chan__close_fails_pending_takes(void **state)
{
    (void)state;
    const sl_buf_t kinds[] = {SL_BUF_NONE, SL_BUF_FIXED, SL_BUF_DROPPING, SL_BUF_SLIDING,
                              SL_BUF_PROMISE};
    for (int k = 0; k < 5; k++) {
        sl_chan_t *c = sl_chan_new(kinds[k], kinds[k] == SL_BUF_NONE ||
                                                    kinds[k] == SL_BUF_PROMISE ? 0 : 4);
        op_t o[6];
        pthread_t t[3];
        sl_chan_t *co[3];
        for (int i = 0; i < 6; i++)
            o[i] = (op_t){.c = c, .val = V(-7), .rc = 99, .deadline = SL_FOREVER};
        for (int i = 0; i < 3; i++) {
            t[i] = sl_test_thread(s_take_op, &o[i]);
            co[i] = sl_test_go(s_co_take, &o[3 + i]);
        }
        s_wait_pending(c, 0, 6);
        sl_chan_close(c);
        for (int i = 0; i < 3; i++) {
            sl_test_join(t[i]);
            sl_test_result(&co[i], sl_test_patience_ms());
        }
        for (int i = 0; i < 6; i++) {
            assert_int_equal(o[i].rc, SL_ECLOSED);
            assert_ptr_equal(o[i].val, V(-7)); /* *out untouched */
        }
        assert_int_equal(s_stats(c).pending_takes, 0);
        assert_int_equal(sl_chan_check(c), 0);
        sl_chan_destroy(&c);
    }
}

/* ------------------------------------------------------------------------
 * Deadlines
 * --------------------------------------------------------------------- */

static void *s_co_until(void *arg)
{
    op_t *o = arg;
    if (o->val == V(-3))
        o->rc = sl_take_until(o->c, &o->val, o->deadline);
    else
        o->rc = sl_put_until(o->c, o->val, o->deadline);
    return NULL;
}

static void s_check_elapsed(double ms, double want)
{
    if (ms < want - 0.5 || ms > want + sl_test_slack_ms())
        fail_msg("waited %.1f ms for a %.0f ms deadline", ms, want);
}

static void test_chan__until_times_out_with_nothing_done(void **state)
{
    (void)state;
    sl_chan_t *none = sl_chan_new(SL_BUF_NONE, 0);
    sl_chan_t *full = sl_chan_new(SL_BUF_FIXED, 2);
    SL_ASSERT_OK(sl_offer(full, V(1)));
    SL_ASSERT_OK(sl_offer(full, V(0)));
    void *v = V(-9);

    /* On a thread. */
    int64_t t0 = sl_now();
    SL_ASSERT_ERR(sl_take_until(none, &v, t0 + 50 * 1000000LL), SL_ETIMEDOUT);
    s_check_elapsed(sl_test_ms_since(t0), 50);
    assert_ptr_equal(v, V(-9));
    t0 = sl_now();
    SL_ASSERT_ERR(sl_put_until(none, V(2), t0 + 50 * 1000000LL), SL_ETIMEDOUT);
    s_check_elapsed(sl_test_ms_since(t0), 50);
    t0 = sl_now();
    SL_ASSERT_ERR(sl_put_until(full, V(2), t0 + 50 * 1000000LL), SL_ETIMEDOUT);
    s_check_elapsed(sl_test_ms_since(t0), 50);
    /* Deadline already passed: immediate. */
    t0 = sl_now();
    SL_ASSERT_ERR(sl_take_until(none, &v, sl_now() - 1000000), SL_ETIMEDOUT);
    SL_ASSERT_ERR(sl_put_until(full, V(3), 0), SL_ETIMEDOUT);
    assert_true(sl_test_ms_since(t0) < 20);

    /* In coroutines. */
    t0 = sl_now();
    op_t ot = {.c = none, .val = V(-3), .rc = 99, .deadline = t0 + 50 * 1000000LL};
    sl_chan_t *p = sl_test_go(s_co_until, &ot);
    sl_test_result(&p, sl_test_patience_ms());
    s_check_elapsed(sl_test_ms_since(t0), 50);
    assert_int_equal(ot.rc, SL_ETIMEDOUT);
    assert_ptr_equal(ot.val, V(-3));
    t0 = sl_now();
    op_t op = {.c = full, .val = V(4), .rc = 99, .deadline = t0 + 50 * 1000000LL};
    p = sl_test_go(s_co_until, &op);
    sl_test_result(&p, sl_test_patience_ms());
    s_check_elapsed(sl_test_ms_since(t0), 50);
    assert_int_equal(op.rc, SL_ETIMEDOUT);

    /* The timed-out puts left nothing behind: no value, no waiter. */
    sl_chan_stats_t st = s_stats(none);
    assert_int_equal(st.pending_puts, 0);
    assert_int_equal(st.pending_takes, 0);
    assert_int_equal(st.puts, 0);
    SL_ASSERT_ERR(sl_poll(none, &v), SL_EAGAIN);
    st = s_stats(full);
    assert_int_equal(st.count, 2);
    assert_int_equal(st.puts, 2);
    assert_int_equal(st.pending_puts, 0);
    SL_ASSERT_OK(sl_poll(full, &v));
    assert_int_equal(I(v), 1);
    SL_ASSERT_OK(sl_poll(full, &v));
    assert_int_equal(I(v), 0);
    SL_ASSERT_ERR(sl_poll(full, &v), SL_EAGAIN);
    /* and no stale taker swallows a later offer */
    SL_ASSERT_ERR(sl_offer(none, V(5)), SL_EAGAIN);
    /* A deadline far away does not stop an op that can complete. */
    SL_ASSERT_OK(sl_put_until(full, V(6), sl_deadline_ms(10000)));
    SL_ASSERT_OK(sl_take_until(full, &v, sl_deadline_ms(10000)));
    assert_int_equal(I(v), 6);
    assert_int_equal(sl_chan_check(none), 0);
    assert_int_equal(sl_chan_check(full), 0);
    sl_chan_destroy(&none);
    sl_chan_destroy(&full);
}

/* ------------------------------------------------------------------------
 * Callbacks
 * --------------------------------------------------------------------- */

typedef struct {
    _Atomic int calls;
    int status;
    void *value;
    pthread_t thread;
    int in_coroutine;
    int blocking_rc;    /* what a blocking take returned inside the cb */
    sl_chan_t *empty;   /* channel the cb tries to block on, or NULL   */
} cbrec_t;

static void s_take_cb(int status, void *value, void *arg)
{
    cbrec_t *r = arg;
    r->status = status;
    r->value = value;
    r->thread = pthread_self();
    r->in_coroutine = sl_in_coroutine();
    atomic_fetch_add(&r->calls, 1);
}

static void s_put_cb(int status, void *arg)
{
    cbrec_t *r = arg;
    r->status = status;
    r->thread = pthread_self();
    r->in_coroutine = sl_in_coroutine();
    atomic_fetch_add(&r->calls, 1);
}

static void *s_whoami(void *arg)
{
    (void)arg;
    return (void *)(uintptr_t)pthread_self();
}

/* The worker threads: spawn enough round-robin coroutines to meet each. */
static int s_workers(pthread_t *out, int max)
{
    int n = 0, want = sl_sched_workers();
    assert_true(want > 0 && want <= max);
    for (int i = 0; i < 8 * want; i++) {
        sl_chan_t *p = sl_test_go(s_whoami, NULL);
        pthread_t t = (pthread_t)(uintptr_t)sl_test_result(&p, sl_test_patience_ms());
        int seen = 0;
        for (int j = 0; j < n; j++)
            seen |= pthread_equal(out[j], t);
        if (!seen)
            out[n++] = t;
    }
    assert_int_equal(n, want);
    return n;
}

static void s_assert_on_worker(pthread_t t)
{
    pthread_t ws[64];
    int n = s_workers(ws, 64);
    for (int i = 0; i < n; i++)
        if (pthread_equal(ws[i], t))
            return;
    fail_msg("callback ran on a thread that is not a scheduler worker");
}

static void s_wait_calls(cbrec_t *r, int n)
{
    assert_true(s_atomic_at_least(&r->calls, n));
    sl_sleep_ms(20); /* a second call would show up here */
    assert_int_equal(atomic_load(&r->calls), n);
}

static void test_chan__take_cb_runs_once_on_scheduler_thread(void **state)
{
    (void)state;
    sl_chan_t *c = sl_chan_new(SL_BUF_NONE, 0);
    cbrec_t r = {.status = 99};
    SL_ASSERT_OK(sl_take_cb(c, s_take_cb, &r));
    assert_int_equal(s_stats(c).pending_takes, 1);
    sl_sleep_ms(20);
    assert_int_equal(atomic_load(&r.calls), 0); /* nothing to take yet */
    SL_ASSERT_OK(sl_offer(c, V(11)));            /* the cb is a waiting taker */
    s_wait_calls(&r, 1);
    assert_int_equal(r.status, SL_OK);
    assert_int_equal(I(r.value), 11);
    assert_false(pthread_equal(r.thread, pthread_self()));
    assert_int_equal(r.in_coroutine, 0);
    s_assert_on_worker(r.thread);
    assert_int_equal(s_stats(c).pending_takes, 0);
    sl_chan_destroy(&c);
}

static void test_chan__callbacks_complete_at_once_when_ready(void **state)
{
    (void)state;
    sl_chan_t *c = sl_chan_new(SL_BUF_FIXED, 1);
    cbrec_t p = {.status = 99}, t = {.status = 99};
    SL_ASSERT_OK(sl_put_cb(c, V(21), s_put_cb, &p)); /* room: completes now */
    s_wait_calls(&p, 1);
    assert_int_equal(p.status, SL_OK);
    assert_false(pthread_equal(p.thread, pthread_self()));
    s_assert_on_worker(p.thread);
    assert_int_equal(s_stats(c).count, 1);
    SL_ASSERT_OK(sl_take_cb(c, s_take_cb, &t)); /* value there: completes now */
    s_wait_calls(&t, 1);
    assert_int_equal(t.status, SL_OK);
    assert_int_equal(I(t.value), 21);
    assert_false(pthread_equal(t.thread, pthread_self()));
    s_assert_on_worker(t.thread);
    assert_int_equal(s_stats(c).count, 0);
    sl_chan_destroy(&c);
}

static void test_chan__put_cb_waits_for_taker(void **state)
{
    (void)state;
    sl_chan_t *c = sl_chan_new(SL_BUF_NONE, 0);
    cbrec_t r = {.status = 99};
    SL_ASSERT_OK(sl_put_cb(c, V(31), s_put_cb, &r));
    assert_int_equal(s_stats(c).pending_puts, 1);
    sl_sleep_ms(20);
    assert_int_equal(atomic_load(&r.calls), 0);
    void *v;
    SL_ASSERT_OK(sl_poll(c, &v));
    assert_int_equal(I(v), 31);
    s_wait_calls(&r, 1);
    assert_int_equal(r.status, SL_OK);
    s_assert_on_worker(r.thread);

    /* A waiting put_cb survives close: its value is taken, cb gets SL_OK. */
    cbrec_t r2 = {.status = 99};
    SL_ASSERT_OK(sl_put_cb(c, V(32), s_put_cb, &r2));
    sl_chan_close(c);
    sl_sleep_ms(20);
    assert_int_equal(atomic_load(&r2.calls), 0);
    SL_ASSERT_OK(sl_take(c, &v));
    assert_int_equal(I(v), 32);
    s_wait_calls(&r2, 1);
    assert_int_equal(r2.status, SL_OK);
    SL_ASSERT_ERR(sl_take(c, &v), SL_ECLOSED);
    sl_chan_destroy(&c);
}

static void test_chan__take_cb_on_closed_gets_eclosed(void **state)
{
    (void)state;
    /* Already closed: the call succeeds and the cb sees SL_ECLOSED. */
    sl_chan_t *c = sl_chan_new(SL_BUF_FIXED, 2);
    sl_chan_close(c);
    cbrec_t r = {.status = 99, .value = V(5)};
    SL_ASSERT_OK(sl_take_cb(c, s_take_cb, &r));
    s_wait_calls(&r, 1);
    assert_int_equal(r.status, SL_ECLOSED);
    assert_null(r.value);
    s_assert_on_worker(r.thread);
    sl_chan_destroy(&c);

    /* Closed while waiting. */
    c = sl_chan_new(SL_BUF_NONE, 0);
    cbrec_t w = {.status = 99, .value = V(5)};
    SL_ASSERT_OK(sl_take_cb(c, s_take_cb, &w));
    sl_sleep_ms(10);
    assert_int_equal(atomic_load(&w.calls), 0);
    sl_chan_close(c);
    s_wait_calls(&w, 1);
    assert_int_equal(w.status, SL_ECLOSED);
    assert_null(w.value);
    sl_chan_destroy(&c);
}

static void test_chan__put_cb_on_closed_runs_cb_with_eclosed(void **state)
{
    (void)state;
    /* As put! in core.async (its callback gets false): the call succeeds,
     * nothing is put, and the cb runs once, on a worker, with SL_ECLOSED. */
    const sl_buf_t kinds[] = {SL_BUF_NONE, SL_BUF_FIXED, SL_BUF_DROPPING, SL_BUF_SLIDING,
                              SL_BUF_PROMISE};
    for (int k = 0; k < 5; k++) {
        sl_chan_t *c = sl_chan_new(kinds[k], kinds[k] == SL_BUF_NONE ||
                                                    kinds[k] == SL_BUF_PROMISE ? 0 : 2);
        sl_chan_close(c);
        cbrec_t r = {.status = 99};
        SL_ASSERT_OK(sl_put_cb(c, V(1), s_put_cb, &r));
        s_wait_calls(&r, 1);
        assert_int_equal(r.status, SL_ECLOSED);
        assert_false(pthread_equal(r.thread, pthread_self()));
        s_assert_on_worker(r.thread);
        sl_chan_stats_t st = s_stats(c);
        assert_int_equal(st.pending_puts, 0);
        assert_int_equal(st.puts, 0);
        assert_int_equal(st.count, 0);
        void *v;
        SL_ASSERT_ERR(sl_poll(c, &v), SL_ECLOSED);
        assert_int_equal(sl_chan_check(c), 0);
        sl_chan_destroy(&c);
    }

    /* Closed while a put_cb waits for room: the put stays takeable (as
     * every waiting put), and its cb gets SL_OK when it is taken. */
    sl_chan_t *c = sl_chan_new(SL_BUF_FIXED, 1);
    SL_ASSERT_OK(sl_offer(c, V(1)));
    cbrec_t w = {.status = 99};
    SL_ASSERT_OK(sl_put_cb(c, V(2), s_put_cb, &w));
    assert_int_equal(s_stats(c).pending_puts, 1);
    sl_chan_close(c);
    cbrec_t late = {.status = 99};
    SL_ASSERT_OK(sl_put_cb(c, V(3), s_put_cb, &late));
    s_wait_calls(&late, 1);
    assert_int_equal(late.status, SL_ECLOSED);
    assert_int_equal(atomic_load(&w.calls), 0);
    void *v;
    SL_ASSERT_OK(sl_take(c, &v));
    assert_int_equal(I(v), 1);
    SL_ASSERT_OK(sl_take(c, &v));
    assert_int_equal(I(v), 2);
    s_wait_calls(&w, 1);
    assert_int_equal(w.status, SL_OK);
    SL_ASSERT_ERR(sl_take(c, &v), SL_ECLOSED);
    sl_chan_destroy(&c);
}

static void test_chan__callback_bad_args(void **state)
{
    (void)state;
    sl_chan_t *c = sl_chan_new(SL_BUF_NONE, 0);
    SL_ASSERT_ERR(sl_put_cb(c, V(1), NULL, NULL), SL_EINVAL);
    SL_ASSERT_ERR(sl_take_cb(c, NULL, NULL), SL_EINVAL);
    SL_ASSERT_ERR(sl_put_cb(NULL, V(1), s_put_cb, NULL), SL_EINVAL);
    SL_ASSERT_ERR(sl_take_cb(NULL, s_take_cb, NULL), SL_EINVAL);
    assert_int_equal(s_stats(c).pending_puts, 0);
    sl_chan_destroy(&c);
}

/* Blocking calls inside a callback report SL_EDEADLK instead of stalling
 * the worker; non-blocking ones work. */
typedef struct {
    _Atomic int calls;
    sl_chan_t *empty;   /* unbuffered, nobody on the other side */
    int take_rc, put_rc, until_rc, alts_rc, poll_rc, offer_rc, sleep_ok;
} deadlk_t;

static void s_deadlk_cb(int status, void *value, void *arg)
{
    (void)status;
    (void)value;
    deadlk_t *d = arg;
    void *v;
    d->take_rc = sl_take(d->empty, &v);
    d->put_rc = sl_put(d->empty, V(1));
    d->until_rc = sl_take_until(d->empty, &v, sl_deadline_ms(5000));
    sl_alt_t ops[2] = {{.chan = d->empty}, {.chan = d->empty, .is_put = true}};
    d->alts_rc = sl_alts(ops, 2, 0, SL_FOREVER);
    d->poll_rc = sl_poll(d->empty, &v);
    d->offer_rc = sl_offer(d->empty, V(2));
    atomic_fetch_add(&d->calls, 1);
}

static void test_chan__blocking_in_callback_is_edeadlk(void **state)
{
    (void)state;
    sl_chan_t *trig = sl_chan_new(SL_BUF_FIXED, 1);
    deadlk_t d = {.empty = sl_chan_new(SL_BUF_NONE, 0)};
    int64_t t0 = sl_now();
    SL_ASSERT_OK(sl_take_cb(trig, s_deadlk_cb, &d));
    SL_ASSERT_OK(sl_offer(trig, V(1)));
    assert_true(s_atomic_at_least(&d.calls, 1));
    assert_true(sl_test_ms_since(t0) < 2000); /* did not wait 5 s */
    assert_int_equal(d.take_rc, SL_EDEADLK);
    assert_int_equal(d.put_rc, SL_EDEADLK);
    assert_int_equal(d.until_rc, SL_EDEADLK);
    assert_int_equal(d.alts_rc, SL_EDEADLK);
    assert_int_equal(d.poll_rc, SL_EAGAIN);
    assert_int_equal(d.offer_rc, SL_EAGAIN);
    sl_chan_stats_t st = s_stats(d.empty);
    assert_int_equal(st.pending_puts, 0); /* nothing left queued */
    assert_int_equal(st.pending_takes, 0);
    assert_int_equal(sl_chan_check(d.empty), 0);
    sl_chan_destroy(&d.empty);
    sl_chan_destroy(&trig);
}

/* ------------------------------------------------------------------------
 * Pending limit
 * --------------------------------------------------------------------- */

static void *s_co_take_rc(void *arg)
{
    sl_chan_t *c = arg;
    void *v;
    return V(sl_take(c, &v));
}

static void test_chan__pending_limit_gives_elimit(void **state)
{
    (void)state;
    sl_chan_t *c = sl_chan_new(SL_BUF_NONE, 0);
    sl_chan_set_max_pending(c, 3);
    op_t o[3];
    pthread_t t[3];
    for (int i = 0; i < 3; i++) {
        o[i] = (op_t){.c = c, .val = V(i), .rc = 99, .deadline = SL_FOREVER};
        t[i] = sl_test_thread(s_put_op, &o[i]);
        s_wait_pending(c, (size_t)i + 1, 0); /* queue in a known order */
    }
    int64_t t0 = sl_now();
    SL_ASSERT_ERR(sl_put(c, V(9)), SL_ELIMIT);
    SL_ASSERT_ERR(sl_put_until(c, V(9), sl_deadline_ms(1000)), SL_ELIMIT);
    cbrec_t r = {0};
    SL_ASSERT_ERR(sl_put_cb(c, V(9), s_put_cb, &r), SL_ELIMIT);
    sl_alt_t ops[1] = {{.chan = c, .is_put = true, .val = V(9)}};
    SL_ASSERT_ERR(sl_alts(ops, 1, 0, SL_FOREVER), SL_ELIMIT);
    SL_ASSERT_ERR(sl_offer(c, V(9)), SL_EAGAIN); /* offer never waits: no limit */
    assert_true(sl_test_ms_since(t0) < 500);
    assert_int_equal(s_stats(c).pending_puts, 3);
    /* Takes are limited separately: they complete against the puts. */
    void *v;
    for (int i = 0; i < 3; i++) {
        SL_ASSERT_OK(sl_take(c, &v));
        assert_int_equal(I(v), i);
    }
    for (int i = 0; i < 3; i++) {
        sl_test_join(t[i]);
        assert_int_equal(o[i].rc, SL_OK);
    }
    sl_sleep_ms(20);
    assert_int_equal(atomic_load(&r.calls), 0); /* failed call: cb never runs */

    /* Waiting takes: coroutines and a callback count. */
    sl_chan_t *co[2];
    co[0] = sl_test_go(s_co_take_rc, c);
    co[1] = sl_test_go(s_co_take_rc, c);
    s_wait_pending(c, 0, 2);
    cbrec_t tr = {0};
    SL_ASSERT_OK(sl_take_cb(c, s_take_cb, &tr));
    assert_int_equal(s_stats(c).pending_takes, 3);
    SL_ASSERT_ERR(sl_take(c, &v), SL_ELIMIT);
    cbrec_t tr2 = {0};
    SL_ASSERT_ERR(sl_take_cb(c, s_take_cb, &tr2), SL_ELIMIT);
    sl_alt_t top[1] = {{.chan = c}};
    SL_ASSERT_ERR(sl_alts(top, 1, 0, sl_deadline_ms(1000)), SL_ELIMIT);
    sl_chan_close(c);
    assert_int_equal(I(sl_test_result(&co[0], sl_test_patience_ms())), SL_ECLOSED);
    assert_int_equal(I(sl_test_result(&co[1], sl_test_patience_ms())), SL_ECLOSED);
    s_wait_calls(&tr, 1);
    assert_int_equal(tr.status, SL_ECLOSED);
    assert_int_equal(atomic_load(&tr2.calls), 0);
    assert_int_equal(sl_chan_check(c), 0);
    sl_chan_destroy(&c);
}

static void test_chan__pending_limit_under_crowd(void **state)
{
    (void)state;
    /* 200 coroutines and 8 threads rush a channel limited to 16 waiters:
     * exactly 16 wait, the rest fail with SL_ELIMIT, nothing crashes. */
    enum { NCO = 200, NTH = 8, LIMIT = 16 };
    sl_chan_t *c = sl_chan_new(SL_BUF_FIXED, 1);
    sl_chan_set_max_pending(c, LIMIT);
    sl_chan_t *co[NCO];
    pthread_t t[NTH];
    op_t o[NTH];
    for (int i = 0; i < NCO; i++)
        co[i] = sl_test_go(s_co_take_rc, c);
    for (int i = 0; i < NTH; i++) {
        o[i] = (op_t){.c = c, .rc = 99, .deadline = SL_FOREVER};
        t[i] = sl_test_thread(s_take_op, &o[i]);
    }
    /* Everyone who did not get in has returned; LIMIT are waiting. */
    s_wait_pending(c, 0, LIMIT);
    sl_sleep_ms(20);
    assert_int_equal(s_stats(c).pending_takes, LIMIT);
    /* Feed half of the waiters, then close for the rest. */
    for (int i = 0; i < LIMIT / 2; i++)
        SL_ASSERT_OK(sl_put_until(c, V(i), sl_deadline_ms(sl_test_patience_ms())));
    sl_chan_close(c);
    int ok = 0, closed = 0, limit = 0;
    for (int i = 0; i < NCO + NTH; i++) {
        int rc;
        if (i < NCO) {
            rc = (int)I(sl_test_result(&co[i], sl_test_patience_ms()));
        } else {
            sl_test_join(t[i - NCO]);
            rc = o[i - NCO].rc;
        }
        ok += rc == SL_OK;
        closed += rc == SL_ECLOSED;
        limit += rc == SL_ELIMIT;
    }
    assert_int_equal(ok, LIMIT / 2);
    assert_int_equal(closed, LIMIT / 2);
    assert_int_equal(limit, NCO + NTH - LIMIT);
    assert_int_equal(sl_chan_check(c), 0);

    /* n = 0 restores the default: 40 waiters are then fine. */
    sl_chan_t *d = sl_chan_new(SL_BUF_NONE, 0);
    sl_chan_set_max_pending(d, 2);
    sl_chan_set_max_pending(d, 0);
    sl_chan_t *co2[40];
    for (int i = 0; i < 40; i++)
        co2[i] = sl_test_go(s_co_take_rc, d);
    s_wait_pending(d, 0, 40);
    sl_chan_close(d);
    for (int i = 0; i < 40; i++)
        assert_int_equal(I(sl_test_result(&co2[i], sl_test_patience_ms())), SL_ECLOSED);
    sl_chan_destroy(&d);
    sl_chan_destroy(&c);
}

/* ------------------------------------------------------------------------
 * NULL values, references
 * --------------------------------------------------------------------- */

static void test_chan__null_is_a_legal_value(void **state)
{
    (void)state;
    const sl_buf_t kinds[] = {SL_BUF_FIXED, SL_BUF_DROPPING, SL_BUF_SLIDING};
    void *v;
    for (int k = 0; k < 3; k++) {
        sl_chan_t *c = sl_chan_new(kinds[k], 2);
        SL_ASSERT_OK(sl_offer(c, NULL));
        SL_ASSERT_OK(sl_put(c, V(1)));
        assert_int_equal(s_stats(c).count, 2);
        v = V(-1);
        SL_ASSERT_OK(sl_poll(c, &v));
        assert_null(v);
        SL_ASSERT_OK(sl_take(c, &v));
        assert_int_equal(I(v), 1);
        SL_ASSERT_ERR(sl_poll(c, &v), SL_EAGAIN);
        sl_chan_destroy(&c);
    }
    /* Unbuffered: a NULL handed from a thread. */
    sl_chan_t *c = sl_chan_new(SL_BUF_NONE, 0);
    op_t o = {.c = c, .val = NULL, .rc = 99, .deadline = SL_FOREVER};
    pthread_t t = sl_test_thread(s_put_op, &o);
    v = V(-1);
    SL_ASSERT_OK(sl_take_until(c, &v, sl_deadline_ms(sl_test_patience_ms())));
    assert_null(v);
    sl_test_join(t);
    assert_int_equal(o.rc, SL_OK);
    /* and to a take callback */
    cbrec_t r = {.status = 99, .value = V(-1)};
    SL_ASSERT_OK(sl_take_cb(c, s_take_cb, &r));
    SL_ASSERT_OK(sl_offer(c, NULL));
    s_wait_calls(&r, 1);
    assert_int_equal(r.status, SL_OK);
    assert_null(r.value);
    sl_chan_destroy(&c);
    /* A promise of NULL is delivered, and keeps being NULL. */
    c = sl_chan_new(SL_BUF_PROMISE, 0);
    SL_ASSERT_OK(sl_offer(c, NULL));
    SL_ASSERT_OK(sl_offer(c, V(3)));
    for (int i = 0; i < 3; i++) {
        v = V(-1);
        SL_ASSERT_OK(sl_poll(c, &v));
        assert_null(v);
    }
    sl_chan_close(c);
    v = V(-1);
    SL_ASSERT_OK(sl_take(c, &v));
    assert_null(v);
    sl_chan_destroy(&c);
}

static void test_chan__destroy_with_other_refs_keeps_channel(void **state)
{
    (void)state;
    sl_chan_destroy(NULL);
    sl_chan_t *nil = NULL;
    sl_chan_destroy(&nil);
    sl_chan_t *c = sl_chan_new(SL_BUF_FIXED, 2);
    sl_chan_t *d = sl_chan_ref(c);
    sl_chan_t *e = sl_chan_ref(c);
    assert_ptr_equal(d, c);
    SL_ASSERT_OK(sl_offer(c, V(1)));
    sl_chan_destroy(&c);
    assert_null(c);
    /* Still there, still open, still holding the value. */
    sl_chan_stats_t st = s_stats(d);
    assert_false(st.closed);
    assert_int_equal(st.count, 1);
    void *v;
    SL_ASSERT_OK(sl_poll(d, &v));
    assert_int_equal(I(v), 1);
    /* A thread waits on it while another reference goes away. */
    op_t o = {.c = e, .rc = 99, .deadline = SL_FOREVER};
    pthread_t t = sl_test_thread(s_take_op, &o);
    s_wait_pending(d, 0, 1);
    sl_chan_destroy(&d);
    SL_ASSERT_OK(sl_offer(e, V(2)));
    sl_test_join(t);
    assert_int_equal(o.rc, SL_OK);
    assert_int_equal(I(o.val), 2);
    assert_int_equal(sl_chan_check(e), 0);
    sl_chan_destroy(&e);
    assert_null(e);
}

static void test_chan__bad_arguments(void **state)
{
    (void)state;
    void *v;
    SL_ASSERT_ERR(sl_put(NULL, V(1)), SL_EINVAL);
    SL_ASSERT_ERR(sl_take(NULL, &v), SL_EINVAL);
    SL_ASSERT_ERR(sl_offer(NULL, V(1)), SL_EINVAL);
    SL_ASSERT_ERR(sl_poll(NULL, &v), SL_EINVAL);
    sl_chan_t *c = sl_chan_new(SL_BUF_FIXED, 1);
    SL_ASSERT_OK(sl_offer(c, V(1)));
    SL_ASSERT_ERR(sl_take(c, NULL), SL_EINVAL);
    SL_ASSERT_ERR(sl_poll(c, NULL), SL_EINVAL);
    assert_int_equal(s_stats(c).count, 1); /* nothing taken */
    sl_chan_destroy(&c);
}

/* ------------------------------------------------------------------------
 * Stress: counters, invariants, exactly-once delivery
 * --------------------------------------------------------------------- */

typedef struct {
    sl_chan_t *c;
    int id, n, offer_only;
    _Atomic int *stop;
} mixer_t;

/* Puts and polls of every kind on one channel from many sides at once. */
static void *s_mixer(void *arg)
{
    mixer_t *m = arg;
    unsigned seed = (unsigned)m->id * 2654435761u;
    for (int i = 0; i < m->n; i++) {
        seed = seed * 1103515245u + 12345u;
        void *v;
        switch ((seed >> 16) % 6) {
        case 0:
            (void)sl_offer(m->c, V(i));
            break;
        case 1:
            (void)sl_put_until(m->c, V(i), sl_now() + 20000);
            break;
        case 2:
            (void)sl_poll(m->c, &v);
            break;
        case 3:
            (void)sl_take_until(m->c, &v, sl_now() + 20000);
            break;
        case 4: {
            sl_alt_t ops[2] = {{.chan = m->c, .is_put = true, .val = V(i)}, {.chan = m->c}};
            (void)sl_alts(ops, 2, SL_ALTS_DEFAULT, SL_FOREVER);
            break;
        }
        default: {
            sl_alt_t ops[2] = {{.chan = m->c, .is_put = true, .val = V(i)}, {.chan = m->c}};
            (void)sl_alts(ops, 2, 0, sl_now() + 20000);
        }
        }
        if (i % 64 == 0)
            sl_yield();
    }
    return V(0);
}

static void test_chan__stats_consistent_after_stress(void **state)
{
    (void)state;
    const int n = sl_test_sanitized() ? 3000 : 30000;
    const sl_buf_t kinds[] = {SL_BUF_NONE, SL_BUF_FIXED, SL_BUF_DROPPING, SL_BUF_SLIDING};
    for (int k = 0; k < 4; k++) {
        sl_chan_t *c = sl_chan_new(kinds[k], kinds[k] == SL_BUF_NONE ? 0 : 8);
        mixer_t m[6];
        pthread_t t[3];
        sl_chan_t *co[3];
        for (int i = 0; i < 6; i++)
            m[i] = (mixer_t){.c = c, .id = i + 1, .n = n};
        for (int i = 0; i < 3; i++) {
            t[i] = sl_test_thread(s_mixer, &m[i]);
            co[i] = sl_test_go(s_mixer, &m[3 + i]);
        }
        int bad = 0;
        for (int i = 0; i < 3; i++) {
            bad |= I(sl_test_join(t[i])) != 0;
            bad |= I(sl_test_result(&co[i], sl_test_patience_ms())) != 0;
        }
        if (bad)
            fail_msg("sl_chan_check() failed during the stress on buffer kind %d", kinds[k]);
        sl_chan_stats_t st = s_stats(c);
        assert_int_equal(sl_chan_check(c), 0);
        assert_int_equal(st.pending_puts, 0);
        assert_int_equal(st.pending_takes, 0);
        assert_int_equal(st.puts, st.takes + st.dropped + st.count);
        assert_true(st.puts > 0);
        if (kinds[k] == SL_BUF_NONE || kinds[k] == SL_BUF_FIXED)
            assert_int_equal(st.dropped, 0);
        /* drain: count matches what is really buffered */
        size_t left = 0;
        void *v;
        while (sl_poll(c, &v) == SL_OK)
            left++;
        assert_int_equal(left, st.count);
        st = s_stats(c);
        assert_int_equal(st.count, 0);
        assert_int_equal(st.puts, st.takes + st.dropped);
        sl_chan_destroy(&c);
    }
}

typedef struct {
    sl_chan_t *c;
    int n;
} churn_t;

static void *s_churn(void *arg)
{
    churn_t *ch = arg;
    void *v;
    for (int i = 0; i < ch->n; i++) {
        (void)sl_offer(ch->c, V(i));
        (void)sl_offer(ch->c, V(i));
        (void)sl_poll(ch->c, &v);
        (void)sl_poll(ch->c, &v);
    }
    return NULL;
}

/* sl_chan_check() is for asserts, and asserts run while other threads use
 * the channel: it must not report a sane channel as broken, nor may the
 * stats snapshot show more values buffered than fit. */
static void test_chan__check_and_stats_sane_while_in_use(void **state)
{
    (void)state;
    const int n = sl_test_sanitized() ? 50000 : 1000000;
    const sl_buf_t kinds[] = {SL_BUF_FIXED, SL_BUF_DROPPING, SL_BUF_SLIDING};
    for (int k = 0; k < 3; k++) {
        sl_chan_t *c = sl_chan_new(kinds[k], 4);
        churn_t ch = {c, n};
        pthread_t t[2];
        sl_chan_t *co[2];
        for (int i = 0; i < 2; i++) {
            t[i] = sl_test_thread(s_churn, &ch);
            co[i] = sl_test_go(s_churn, &ch);
        }
        long checks = 0, bad_check = 0, bad_count = 0, bad_sum = 0;
        sl_chan_stats_t st;
        do {
            bad_check += sl_chan_check(c) != 0;
            sl_chan_stats(c, &st);
            bad_count += st.count > st.capacity;
            bad_sum += st.puts != st.takes + st.dropped + st.count;
            checks++;
        } while (st.puts < (uint64_t)n * 4 || checks < 1000);
        for (int i = 0; i < 2; i++) {
            sl_test_join(t[i]);
            sl_test_result(&co[i], sl_test_patience_ms());
        }
        sl_chan_destroy(&c);
        if (bad_check || bad_count || bad_sum)
            fail_msg("kind %d: of %ld snapshots, %ld failed sl_chan_check, %ld had "
                     "count > capacity, %ld had puts != takes + dropped + count",
                     kinds[k], checks, bad_check, bad_count, bad_sum);
    }
}

#define XP 4 /* producers */
#define XC 4 /* consumers */

typedef struct {
    sl_chan_t *c;
    int id;
    int n;               /* values per producer */
    _Atomic uint8_t *seen; /* XP * n counters     */
    int last[XP];        /* consumer: last seq seen per producer */
    long got;
    int bad;
} xfer_t;

static void *s_xproducer(void *arg)
{
    xfer_t *x = arg;
    for (int i = 0; i < x->n; i++) {
        /* value = producer * n + seq, + 1 so that 0 stays unused */
        int rc = (i & 1) ? sl_put(x->c, V((intptr_t)x->id * x->n + i + 1))
                         : sl_put_until(x->c, V((intptr_t)x->id * x->n + i + 1),
                                        sl_deadline_ms(60000));
        if (rc != SL_OK)
            return V(rc);
    }
    return V(0);
}

static void *s_xconsumer(void *arg)
{
    xfer_t *x = arg;
    for (int p = 0; p < XP; p++)
        x->last[p] = -1;
    for (;;) {
        void *v;
        int rc = sl_take(x->c, &v);
        if (rc == SL_ECLOSED)
            break;
        if (rc != SL_OK) {
            x->bad++;
            break;
        }
        intptr_t k = I(v) - 1;
        if (k < 0 || k >= (intptr_t)XP * x->n) {
            x->bad++;
            continue;
        }
        int p = (int)(k / x->n), seq = (int)(k % x->n);
        if (seq <= x->last[p])
            x->bad++; /* one producer's values arrive in order */
        x->last[p] = seq;
        atomic_fetch_add_explicit(&x->seen[k], 1, memory_order_relaxed);
        x->got++;
    }
    return NULL;
}

static void s_exactly_once(sl_buf_t kind, size_t cap, int n)
{
    sl_chan_t *c = sl_chan_new(kind, cap);
    _Atomic uint8_t *seen = calloc((size_t)XP * n, 1);
    assert_non_null(seen);
    xfer_t prod[XP], cons[XC];
    pthread_t pt[XP], ct[XC];
    sl_chan_t *pc[XP], *cc[XC];
    for (int i = 0; i < XC; i++) {
        cons[i] = (xfer_t){.c = c, .id = i, .n = n, .seen = seen};
        /* even consumers are threads, odd ones coroutines */
        if (i & 1)
            cc[i] = sl_test_go(s_xconsumer, &cons[i]);
        else
            ct[i] = sl_test_thread(s_xconsumer, &cons[i]);
    }
    for (int i = 0; i < XP; i++) {
        prod[i] = (xfer_t){.c = c, .id = i, .n = n, .seen = seen};
        if (i & 1)
            pt[i] = sl_test_thread(s_xproducer, &prod[i]);
        else
            pc[i] = sl_test_go(s_xproducer, &prod[i]);
    }
    for (int i = 0; i < XP; i++) {
        void *r = (i & 1) ? sl_test_join(pt[i]) : sl_test_result(&pc[i], sl_test_patience_ms());
        assert_int_equal(I(r), 0);
    }
    sl_chan_close(c);
    long total = 0;
    for (int i = 0; i < XC; i++) {
        if (i & 1)
            sl_test_result(&cc[i], sl_test_patience_ms());
        else
            sl_test_join(ct[i]);
        assert_int_equal(cons[i].bad, 0);
        total += cons[i].got;
    }
    assert_int_equal(total, (long)XP * n);
    for (long k = 0; k < (long)XP * n; k++)
        if (atomic_load(&seen[k]) != 1)
            fail_msg("value %ld delivered %d times", k, (int)atomic_load(&seen[k]));
    sl_chan_stats_t st = s_stats(c);
    assert_int_equal(st.puts, (uint64_t)XP * n);
    assert_int_equal(st.takes, (uint64_t)XP * n);
    assert_int_equal(st.dropped, 0);
    assert_int_equal(st.count, 0);
    assert_int_equal(st.pending_puts, 0);
    assert_int_equal(st.pending_takes, 0);
    assert_int_equal(sl_chan_check(c), 0);
    free(seen);
    sl_chan_destroy(&c);
}

static void test_chan__every_value_delivered_once_fixed(void **state)
{
    (void)state;
    s_exactly_once(SL_BUF_FIXED, 64, sl_test_sanitized() ? 20000 : 200000);
}

static void test_chan__every_value_delivered_once_unbuffered(void **state)
{
    (void)state;
    s_exactly_once(SL_BUF_NONE, 0, sl_test_sanitized() ? 10000 : 100000);
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
        cmocka_unit_test(test_chan__new_checks_capacity),
        cmocka_unit_test(test_chan__fixed_full_and_empty),
        cmocka_unit_test(test_chan__fixed_holds_exactly_cap),
        cmocka_unit_test(test_chan__dropping_keeps_oldest_and_counts_drops),
        cmocka_unit_test(test_chan__sliding_keeps_newest_and_counts_drops),
        cmocka_unit_test(test_chan__promise_gives_same_value_forever),
        cmocka_unit_test(test_chan__unbuffered_rendezvous_between_threads),
        cmocka_unit_test(test_chan__unbuffered_rendezvous_between_coroutines),
        cmocka_unit_test(test_chan__fixed_zero_is_unbuffered),
        cmocka_unit_test(test_chan__close_keeps_pending_puts_takeable),
        cmocka_unit_test(test_chan__close_fails_pending_takes),
        cmocka_unit_test(test_chan__until_times_out_with_nothing_done),
        cmocka_unit_test(test_chan__take_cb_runs_once_on_scheduler_thread),
        cmocka_unit_test(test_chan__callbacks_complete_at_once_when_ready),
        cmocka_unit_test(test_chan__put_cb_waits_for_taker),
        cmocka_unit_test(test_chan__take_cb_on_closed_gets_eclosed),
        cmocka_unit_test(test_chan__put_cb_on_closed_runs_cb_with_eclosed),
        cmocka_unit_test(test_chan__callback_bad_args),
        cmocka_unit_test(test_chan__blocking_in_callback_is_edeadlk),
        cmocka_unit_test(test_chan__pending_limit_gives_elimit),
        cmocka_unit_test(test_chan__pending_limit_under_crowd),
        cmocka_unit_test(test_chan__null_is_a_legal_value),
        cmocka_unit_test(test_chan__destroy_with_other_refs_keeps_channel),
        cmocka_unit_test(test_chan__bad_arguments),
        cmocka_unit_test(test_chan__stats_consistent_after_stress),
        cmocka_unit_test(test_chan__check_and_stats_sane_while_in_use),
        cmocka_unit_test(test_chan__every_value_delivered_once_fixed),
        cmocka_unit_test(test_chan__every_value_delivered_once_unbuffered),
    };
    return cmocka_run_group_tests(tests, s_setup, NULL);
}
