/* ops_pipe_test.c -- sl_pipe: copying, closing, early end. */
#include "ops_testutil.h"

static void test_pipe__copies_in_order_and_closes_to(void **state)
{
    (void)state;
    sl_chan_t *from = sl_chan_new(SL_BUF_FIXED, 8);
    sl_chan_t *to = sl_chan_new(SL_BUF_NONE, 0);
    sl_chan_t *done = sl_pipe(from, to, true);
    assert_non_null(done);
    for (int i = 0; i < 100; i++) {
        SL_ASSERT_OK(sl_put(from, V(i)));
        assert_int_equal(ops_take_int(to), i);
    }
    sl_chan_close(from);
    ops_assert_closed(to);
    ops_assert_closed(done);
    sl_chan_destroy(&done);
    sl_chan_destroy(&from);
    sl_chan_destroy(&to);
    ops_assert_idle();
}

static void test_pipe__leaves_to_open_without_close_to(void **state)
{
    (void)state;
    sl_chan_t *from = sl_chan_new(SL_BUF_FIXED, 4);
    sl_chan_t *to = sl_chan_new(SL_BUF_FIXED, 4);
    /* The caller may drop its references at once: the pipe holds its own. */
    sl_chan_t *done = sl_pipe(from, to, false);
    assert_non_null(done);
    SL_ASSERT_OK(sl_put(from, V(7)));
    sl_chan_close(from);
    sl_chan_destroy(&from);
    ops_assert_closed(done);
    assert_int_equal(ops_take_int(to), 7);
    SL_ASSERT_OK(sl_offer(to, V(8))); /* still open */
    sl_chan_stats_t st;
    sl_chan_stats(to, &st);
    assert_false(st.closed);
    sl_chan_destroy(&done);
    sl_chan_destroy(&to);
    ops_assert_idle();
}

static void test_pipe__ends_when_to_closes(void **state)
{
    (void)state;
    sl_chan_t *from = sl_chan_new(SL_BUF_FIXED, 4);
    sl_chan_t *to = sl_chan_new(SL_BUF_NONE, 0);
    sl_chan_t *done = sl_pipe(from, to, false);
    assert_non_null(done);
    sl_chan_close(to);
    SL_ASSERT_OK(sl_put(from, V(1))); /* taken, then lost: `to` is closed */
    ops_assert_closed(done);
    /* The pipe stopped reading: later values stay in `from`. */
    SL_ASSERT_OK(sl_put(from, V(2)));
    void *v;
    SL_ASSERT_OK(sl_poll(from, &v));
    assert_int_equal(I(v), 2);
    sl_chan_close(from);
    sl_chan_destroy(&done);
    sl_chan_destroy(&from);
    sl_chan_destroy(&to);
    ops_assert_idle();
}

static void test_pipe__rejects_null(void **state)
{
    (void)state;
    sl_chan_t *ch = sl_chan_new(SL_BUF_NONE, 0);
    assert_null(sl_pipe(NULL, ch, true));
    assert_null(sl_pipe(ch, NULL, true));
    sl_chan_destroy(&ch);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pipe__copies_in_order_and_closes_to),
        cmocka_unit_test(test_pipe__leaves_to_open_without_close_to),
        cmocka_unit_test(test_pipe__ends_when_to_closes),
        cmocka_unit_test(test_pipe__rejects_null),
    };
    return OPS_RUN_GROUP(tests);
}
