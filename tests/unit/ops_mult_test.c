/* ops_mult_test.c -- sl_mult: fan-out to taps, untap, the slow-tap policy,
 * drops without taps, closing. */
#include "ops_testutil.h"

typedef struct {
    sl_mult_t *m;
    sl_chan_t *tap;
    uint64_t want;
} s_missed_t;

static int s_missed_reached(void *arg)
{
    s_missed_t *w = arg;
    return sl_mult_missed(w->m, w->tap) >= w->want;
}

static int s_dropped_reached(void *arg)
{
    s_missed_t *w = arg;
    return sl_mult_dropped(w->m) >= w->want;
}

static void s_put(sl_chan_t *ch, int v)
{
    SL_ASSERT_OK(sl_put_until(ch, V(v), sl_deadline_ms(ops_patience_ms())));
}

static void test_mult__delivers_every_value_to_every_tap(void **state)
{
    (void)state;
    sl_chan_t *src = sl_chan_new(SL_BUF_NONE, 0);
    sl_mult_t *m = sl_mult_new(src, -1);
    assert_non_null(m);
    sl_chan_t *taps[3];
    for (int i = 0; i < 3; i++) {
        taps[i] = sl_chan_new(SL_BUF_FIXED, 64);
        SL_ASSERT_OK(sl_mult_tap(m, taps[i], true));
    }
    for (int v = 0; v < 50; v++)
        s_put(src, v);
    for (int i = 0; i < 3; i++)
        for (int v = 0; v < 50; v++)
            assert_int_equal(ops_take_int(taps[i]), v);
    sl_chan_close(src);
    for (int i = 0; i < 3; i++) {
        ops_assert_closed(taps[i]);
        assert_int_equal(sl_mult_missed(m, taps[i]), 0);
        sl_chan_destroy(&taps[i]);
    }
    assert_int_equal(sl_mult_dropped(m), 0);
    sl_mult_destroy(&m);
    assert_null(m);
    sl_chan_destroy(&src);
    ops_assert_idle();
}

static void test_mult__untap_stops_delivery(void **state)
{
    (void)state;
    sl_chan_t *src = sl_chan_new(SL_BUF_NONE, 0);
    sl_mult_t *m = sl_mult_new(src, -1);
    assert_non_null(m);
    sl_chan_t *a = sl_chan_new(SL_BUF_FIXED, 8);
    sl_chan_t *b = sl_chan_new(SL_BUF_FIXED, 8);
    SL_ASSERT_OK(sl_mult_tap(m, a, false));
    SL_ASSERT_OK(sl_mult_tap(m, b, false));
    s_put(src, 1);
    assert_int_equal(ops_take_int(a), 1);
    assert_int_equal(ops_take_int(b), 1);
    SL_ASSERT_OK(sl_mult_untap(m, b));
    SL_ASSERT_ERR(sl_mult_untap(m, b), SL_EINVAL); /* no longer a tap */
    s_put(src, 2);
    assert_int_equal(ops_take_int(a), 2);
    ops_assert_quiet(b, 30);
    sl_mult_untap_all(m);
    SL_ASSERT_ERR(sl_mult_untap(m, a), SL_EINVAL);
    s_put(src, 3);
    ops_assert_quiet(a, 30);
    sl_chan_close(src);
    ops_assert_idle();
    /* close_tap was false: both taps stay open. */
    SL_ASSERT_OK(sl_offer(a, V(4)));
    SL_ASSERT_OK(sl_offer(b, V(4)));
    sl_mult_destroy(&m);
    sl_chan_destroy(&src);
    sl_chan_destroy(&a);
    sl_chan_destroy(&b);
}

static void test_mult__slow_tap_misses_values_with_timeout(void **state)
{
    (void)state;
    sl_chan_t *src = sl_chan_new(SL_BUF_NONE, 0);
    sl_mult_t *m = sl_mult_new(src, 20);
    assert_non_null(m);
    sl_chan_t *slow = sl_chan_new(SL_BUF_NONE, 0); /* never taken */
    sl_chan_t *fast = sl_chan_new(SL_BUF_NONE, 0);
    SL_ASSERT_OK(sl_mult_tap(m, slow, true));
    SL_ASSERT_OK(sl_mult_tap(m, fast, true));
    void *vals[] = {V(1), V(2), V(3), V(4), V(5)};
    sl_chan_t *fed = sl_onto_chan(src, vals, 5, true);
    int64_t t0 = sl_now();
    /* Each value waits at most 20 ms for the slow tap, then moves on. */
    for (int v = 1; v <= 5; v++)
        assert_int_equal(ops_take_int(fast), v);
    ops_assert_closed(fast);
    double ms = sl_test_ms_since(t0);
    if (ms > 2000)
        fail_msg("five values took %.0f ms with a 20 ms tap timeout", ms);
    s_missed_t w = {m, slow, 5};
    assert_true(sl_test_wait_for(s_missed_reached, &w, ops_patience_ms()));
    assert_int_equal(sl_mult_missed(m, slow), 5);
    assert_int_equal(sl_mult_missed(m, fast), 0);
    ops_assert_closed(slow); /* close_tap: closed when src ended */
    ops_assert_closed(fed);
    sl_chan_destroy(&fed);
    sl_mult_destroy(&m);
    sl_chan_destroy(&src);
    sl_chan_destroy(&slow);
    sl_chan_destroy(&fast);
    ops_assert_idle();
}

static void test_mult__slow_tap_stalls_everyone_without_timeout(void **state)
{
    (void)state;
    sl_chan_t *src = sl_chan_new(SL_BUF_NONE, 0);
    sl_mult_t *m = sl_mult_new(src, -1);
    assert_non_null(m);
    sl_chan_t *slow = sl_chan_new(SL_BUF_NONE, 0);
    sl_chan_t *fast = sl_chan_new(SL_BUF_NONE, 0);
    SL_ASSERT_OK(sl_mult_tap(m, slow, true));
    SL_ASSERT_OK(sl_mult_tap(m, fast, true));
    void *vals[] = {V(1), V(2)};
    sl_chan_t *fed = sl_onto_chan(src, vals, 2, true);
    assert_int_equal(ops_take_int(fast), 1);
    /* Value 2 waits until the slow tap has taken value 1. */
    ops_assert_quiet(fast, 100);
    assert_int_equal(ops_take_int(slow), 1);
    assert_int_equal(ops_take_int(fast), 2);
    assert_int_equal(ops_take_int(slow), 2);
    ops_assert_closed(fast);
    ops_assert_closed(slow);
    assert_int_equal(sl_mult_missed(m, slow), 0);
    assert_int_equal(sl_mult_missed(m, fast), 0);
    sl_chan_destroy(&fed);
    sl_mult_destroy(&m);
    sl_chan_destroy(&src);
    sl_chan_destroy(&slow);
    sl_chan_destroy(&fast);
    ops_assert_idle();
}

static void test_mult__counts_values_dropped_without_taps(void **state)
{
    (void)state;
    sl_chan_t *src = sl_chan_new(SL_BUF_NONE, 0);
    sl_mult_t *m = sl_mult_new(src, -1);
    assert_non_null(m);
    for (int v = 0; v < 3; v++)
        s_put(src, v); /* taken even though nobody listens */
    s_missed_t w = {m, NULL, 3};
    assert_true(sl_test_wait_for(s_dropped_reached, &w, ops_patience_ms()));
    sl_chan_t *tap = sl_chan_new(SL_BUF_FIXED, 4);
    SL_ASSERT_OK(sl_mult_tap(m, tap, false));
    s_put(src, 9);
    assert_int_equal(ops_take_int(tap), 9);
    assert_int_equal(sl_mult_dropped(m), 3);
    sl_chan_close(src);
    ops_assert_idle();
    sl_mult_destroy(&m);
    sl_chan_destroy(&src);
    sl_chan_destroy(&tap);
}

static void test_mult__drops_tap_found_closed(void **state)
{
    (void)state;
    sl_chan_t *src = sl_chan_new(SL_BUF_NONE, 0);
    sl_mult_t *m = sl_mult_new(src, -1);
    assert_non_null(m);
    sl_chan_t *gone = sl_chan_new(SL_BUF_NONE, 0);
    sl_chan_t *live = sl_chan_new(SL_BUF_FIXED, 8);
    SL_ASSERT_OK(sl_mult_tap(m, gone, false));
    SL_ASSERT_OK(sl_mult_tap(m, live, false));
    sl_chan_close(gone); /* its reader went away */
    for (int v = 0; v < 3; v++) {
        s_put(src, v);
        assert_int_equal(ops_take_int(live), v); /* -1 would wait forever */
    }
    SL_ASSERT_ERR(sl_mult_untap(m, gone), SL_EINVAL); /* removed */
    sl_chan_close(src);
    ops_assert_idle();
    sl_mult_destroy(&m);
    sl_chan_destroy(&src);
    sl_chan_destroy(&gone);
    sl_chan_destroy(&live);
}

static void test_mult__tap_after_src_closed_is_closed(void **state)
{
    (void)state;
    sl_chan_t *src = sl_chan_new(SL_BUF_NONE, 0);
    sl_mult_t *m = sl_mult_new(src, 10);
    assert_non_null(m);
    sl_chan_close(src);
    ops_assert_idle();
    sl_chan_t *tap = sl_chan_new(SL_BUF_FIXED, 1);
    SL_ASSERT_OK(sl_mult_tap(m, tap, true));
    ops_assert_closed(tap);
    SL_ASSERT_ERR(sl_mult_tap(m, NULL, true), SL_EINVAL);
    sl_mult_destroy(&m);
    sl_mult_destroy(&m); /* NULL is fine */
    sl_chan_destroy(&src);
    sl_chan_destroy(&tap);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mult__delivers_every_value_to_every_tap),
        cmocka_unit_test(test_mult__untap_stops_delivery),
        cmocka_unit_test(test_mult__slow_tap_misses_values_with_timeout),
        cmocka_unit_test(test_mult__slow_tap_stalls_everyone_without_timeout),
        cmocka_unit_test(test_mult__counts_values_dropped_without_taps),
        cmocka_unit_test(test_mult__drops_tap_found_closed),
        cmocka_unit_test(test_mult__tap_after_src_closed_is_closed),
    };
    return OPS_RUN_GROUP(tests);
}
