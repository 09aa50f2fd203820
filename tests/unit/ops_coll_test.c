/* ops_coll_test.c -- sl_onto_chan, sl_to_chan, sl_reduce. */
#include <stdlib.h>

#include "ops_testutil.h"

static void test_coll__onto_chan_puts_in_order_then_closes(void **state)
{
    (void)state;
    void *vals[50];
    for (int i = 0; i < 50; i++)
        vals[i] = V(i + 1);
    sl_chan_t *ch = sl_chan_new(SL_BUF_NONE, 0);
    sl_chan_t *done = sl_onto_chan(ch, vals, 50, true);
    assert_non_null(done);
    /* The array is copied: scribbling on ours must not change the output. */
    for (int i = 0; i < 50; i++)
        vals[i] = V(-1);
    for (int i = 0; i < 50; i++)
        assert_int_equal(ops_take_int(ch), i + 1);
    ops_assert_closed(ch);
    ops_assert_closed(done);
    sl_chan_destroy(&done);
    sl_chan_destroy(&ch);
    ops_assert_idle();
}

static void test_coll__onto_chan_leaves_ch_open(void **state)
{
    (void)state;
    void *vals[] = {V(1), V(2)};
    sl_chan_t *ch = sl_chan_new(SL_BUF_FIXED, 4);
    sl_chan_t *done = sl_onto_chan(ch, vals, 2, false);
    assert_non_null(done);
    ops_assert_closed(done);
    assert_int_equal(ops_take_int(ch), 1);
    assert_int_equal(ops_take_int(ch), 2);
    ops_assert_quiet(ch, 20); /* open and empty */
    sl_chan_destroy(&done);
    sl_chan_destroy(&ch);
    ops_assert_idle();
}

static int s_put_waiting(void *ch)
{
    sl_chan_stats_t st;
    sl_chan_stats(ch, &st);
    return st.pending_puts > 0;
}

static void test_coll__onto_chan_stops_when_ch_closes(void **state)
{
    (void)state;
    void *vals[] = {V(1), V(2), V(3)};
    sl_chan_t *ch = sl_chan_new(SL_BUF_NONE, 0);
    sl_chan_t *done = sl_onto_chan(ch, vals, 3, false);
    assert_non_null(done);
    assert_int_equal(ops_take_int(ch), 1);
    assert_true(sl_test_wait_for(s_put_waiting, ch, ops_patience_ms()));
    sl_chan_close(ch);
    /* A put already waiting when ch closed stays takeable; the next one
     * fails and the feeder stops. */
    assert_int_equal(ops_take_int(ch), 2);
    ops_assert_closed(done);
    ops_assert_closed(ch);
    sl_chan_destroy(&done);
    sl_chan_destroy(&ch);
    ops_assert_idle();
}

static void s_check_to_chan(size_t n)
{
    void **vals = malloc(n * sizeof *vals);
    assert_non_null(vals);
    for (size_t i = 0; i < n; i++)
        vals[i] = V(i * 3);
    sl_chan_t *ch = sl_to_chan(vals, n);
    free(vals); /* copied */
    assert_non_null(ch);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(ops_take_int(ch), (int)(i * 3));
    ops_assert_closed(ch);
    sl_chan_destroy(&ch);
}

static void test_coll__to_chan_holds_values_then_closes(void **state)
{
    (void)state;
    s_check_to_chan(5);
    s_check_to_chan(5000); /* more than the channel buffers at once */
    ops_assert_idle();
}

static void test_coll__to_chan_empty_is_closed(void **state)
{
    (void)state;
    sl_chan_t *ch = sl_to_chan(NULL, 0);
    assert_non_null(ch);
    void *v;
    SL_ASSERT_ERR(sl_poll(ch, &v), SL_ECLOSED);
    sl_chan_destroy(&ch);
}

static void *s_sum(void *acc, void *v, void *arg)
{
    int *calls = arg;
    (*calls)++;
    return V(I(acc) + I(v));
}

static void test_coll__reduce_folds_every_value(void **state)
{
    (void)state;
    void *vals[100];
    for (int i = 0; i < 100; i++)
        vals[i] = V(i + 1);
    sl_chan_t *src = sl_to_chan(vals, 100);
    int calls = 0;
    sl_chan_t *res = sl_reduce(s_sum, &calls, V(1000), src);
    sl_chan_destroy(&src);
    assert_non_null(res);
    assert_int_equal(ops_take_int(res), 1000 + 5050);
    /* A promise: every taker sees the result. */
    assert_int_equal(ops_take_int(res), 1000 + 5050);
    assert_int_equal(calls, 100);
    sl_chan_destroy(&res);
    ops_assert_idle();
}

static void test_coll__reduce_waits_for_close(void **state)
{
    (void)state;
    sl_chan_t *src = sl_chan_new(SL_BUF_FIXED, 4);
    int calls = 0;
    sl_chan_t *res = sl_reduce(s_sum, &calls, V(5), src);
    assert_non_null(res);
    SL_ASSERT_OK(sl_put(src, V(2)));
    ops_assert_quiet(res, 30); /* no result until src closes */
    sl_chan_close(src);
    assert_int_equal(ops_take_int(res), 7);
    sl_chan_destroy(&src);
    sl_chan_destroy(&res);
    ops_assert_idle();
}

static void test_coll__reduce_of_empty_gives_init(void **state)
{
    (void)state;
    sl_chan_t *src = sl_to_chan(NULL, 0);
    int calls = 0;
    sl_chan_t *res = sl_reduce(s_sum, &calls, V(42), src);
    assert_non_null(res);
    assert_int_equal(ops_take_int(res), 42);
    assert_int_equal(calls, 0);
    sl_chan_destroy(&src);
    sl_chan_destroy(&res);
    ops_assert_idle();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_coll__onto_chan_puts_in_order_then_closes),
        cmocka_unit_test(test_coll__onto_chan_leaves_ch_open),
        cmocka_unit_test(test_coll__onto_chan_stops_when_ch_closes),
        cmocka_unit_test(test_coll__to_chan_holds_values_then_closes),
        cmocka_unit_test(test_coll__to_chan_empty_is_closed),
        cmocka_unit_test(test_coll__reduce_folds_every_value),
        cmocka_unit_test(test_coll__reduce_waits_for_close),
        cmocka_unit_test(test_coll__reduce_of_empty_gives_init),
    };
    return OPS_RUN_GROUP(tests);
}
