/* ops_merge_test.c -- sl_merge and sl_split. */
#include <pthread.h>
#include <string.h>

#include "ops_testutil.h"

#define S_INPUTS 4
#define S_PER_INPUT 250

typedef struct {
    sl_chan_t *ch;
    int base;
} s_producer_t;

/* A plain thread putting base .. base+S_PER_INPUT-1, then closing. */
static void *s_produce(void *arg)
{
    s_producer_t *p = arg;
    for (int i = 0; i < S_PER_INPUT; i++)
        if (sl_put(p->ch, V(p->base + i)) != SL_OK)
            break;
    sl_chan_close(p->ch);
    return NULL;
}

static void test_merge__delivers_every_value_once_then_closes(void **state)
{
    (void)state;
    sl_chan_t *in[S_INPUTS];
    s_producer_t prod[S_INPUTS];
    pthread_t th[S_INPUTS];
    for (int i = 0; i < S_INPUTS; i++)
        in[i] = sl_chan_new(i % 2 ? SL_BUF_FIXED : SL_BUF_NONE, i % 2 ? 3 : 0);
    sl_chan_t *out = sl_merge(in, S_INPUTS, SL_BUF_FIXED, 4);
    assert_non_null(out);
    for (int i = 0; i < S_INPUTS; i++) {
        prod[i] = (s_producer_t){in[i], i * S_PER_INPUT};
        assert_int_equal(pthread_create(&th[i], NULL, s_produce, &prod[i]), 0);
    }
    int seen[S_INPUTS * S_PER_INPUT];
    int last[S_INPUTS];
    memset(seen, 0, sizeof seen);
    for (int i = 0; i < S_INPUTS; i++)
        last[i] = -1;
    for (int k = 0; k < S_INPUTS * S_PER_INPUT; k++) {
        int v = ops_take_int(out);
        assert_in_range(v, 0, S_INPUTS * S_PER_INPUT - 1);
        assert_int_equal(seen[v]++, 0);
        /* Values of one input keep their relative order. */
        int src = v / S_PER_INPUT;
        assert_true(v > last[src]);
        last[src] = v;
    }
    ops_assert_closed(out);
    for (int i = 0; i < S_INPUTS; i++) {
        pthread_join(th[i], NULL);
        sl_chan_destroy(&in[i]);
    }
    sl_chan_destroy(&out);
    ops_assert_idle();
}

static void test_merge__closes_only_when_all_inputs_close(void **state)
{
    (void)state;
    sl_chan_t *in[3];
    for (int i = 0; i < 3; i++)
        in[i] = sl_chan_new(SL_BUF_FIXED, 2);
    sl_chan_t *out = sl_merge(in, 3, SL_BUF_NONE, 0);
    assert_non_null(out);
    SL_ASSERT_OK(sl_put(in[2], V(9)));
    sl_chan_close(in[0]);
    sl_chan_close(in[2]); /* closed, but its value is still to come */
    assert_int_equal(ops_take_int(out), 9);
    ops_assert_quiet(out, 50); /* in[1] is open */
    SL_ASSERT_OK(sl_put(in[1], V(5)));
    assert_int_equal(ops_take_int(out), 5);
    sl_chan_close(in[1]);
    ops_assert_closed(out);
    for (int i = 0; i < 3; i++)
        sl_chan_destroy(&in[i]);
    sl_chan_destroy(&out);
    ops_assert_idle();
}

static void test_merge__of_nothing_is_closed(void **state)
{
    (void)state;
    sl_chan_t *out = sl_merge(NULL, 0, SL_BUF_FIXED, 1);
    assert_non_null(out);
    ops_assert_closed(out);
    sl_chan_destroy(&out);
    ops_assert_idle();
}

static void test_merge__stops_when_out_closes(void **state)
{
    (void)state;
    sl_chan_t *in[2] = {sl_chan_new(SL_BUF_FIXED, 4), sl_chan_new(SL_BUF_FIXED, 4)};
    sl_chan_t *out = sl_merge(in, 2, SL_BUF_NONE, 0);
    assert_non_null(out);
    sl_chan_close(out);
    sl_chan_close(in[0]);
    sl_chan_close(in[1]);
    ops_assert_idle(); /* both input coroutines ended */
    for (int i = 0; i < 2; i++)
        sl_chan_destroy(&in[i]);
    sl_chan_destroy(&out);
}

/* --- split --------------------------------------------------------------- */

static bool s_is_even(void *v, void *arg)
{
    (void)arg;
    return I(v) % 2 == 0;
}

static void test_split__routes_by_predicate_and_closes_both(void **state)
{
    (void)state;
    void *vals[20];
    for (int i = 0; i < 20; i++)
        vals[i] = V(i);
    sl_chan_t *from = sl_to_chan(vals, 20);
    sl_chan_t *t = sl_chan_new(SL_BUF_FIXED, 20);
    sl_chan_t *f = sl_chan_new(SL_BUF_FIXED, 20);
    SL_ASSERT_OK(sl_split(from, s_is_even, NULL, t, f));
    sl_chan_destroy(&from);
    for (int i = 0; i < 10; i++) {
        assert_int_equal(ops_take_int(t), 2 * i);
        assert_int_equal(ops_take_int(f), 2 * i + 1);
    }
    ops_assert_closed(t);
    ops_assert_closed(f);
    sl_chan_destroy(&t);
    sl_chan_destroy(&f);
    ops_assert_idle();
}

static void test_split__keeps_routing_when_one_side_closes(void **state)
{
    (void)state;
    sl_chan_t *from = sl_chan_new(SL_BUF_NONE, 0);
    sl_chan_t *t = sl_chan_new(SL_BUF_FIXED, 8);
    sl_chan_t *f = sl_chan_new(SL_BUF_NONE, 0);
    SL_ASSERT_OK(sl_split(from, s_is_even, NULL, t, f));
    sl_chan_close(f);
    for (int i = 0; i < 6; i++)
        SL_ASSERT_OK(sl_put_until(from, V(i), sl_deadline_ms(ops_patience_ms())));
    for (int i = 0; i < 3; i++)
        assert_int_equal(ops_take_int(t), 2 * i);
    sl_chan_close(from);
    ops_assert_closed(t);
    sl_chan_destroy(&from);
    sl_chan_destroy(&t);
    sl_chan_destroy(&f);
    ops_assert_idle();
}

static void test_split__rejects_null(void **state)
{
    (void)state;
    sl_chan_t *c = sl_chan_new(SL_BUF_NONE, 0);
    SL_ASSERT_ERR(sl_split(c, NULL, NULL, c, c), SL_EINVAL);
    SL_ASSERT_ERR(sl_split(c, s_is_even, NULL, NULL, c), SL_EINVAL);
    sl_chan_destroy(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_merge__delivers_every_value_once_then_closes),
        cmocka_unit_test(test_merge__closes_only_when_all_inputs_close),
        cmocka_unit_test(test_merge__of_nothing_is_closed),
        cmocka_unit_test(test_merge__stops_when_out_closes),
        cmocka_unit_test(test_split__routes_by_predicate_and_closes_both),
        cmocka_unit_test(test_split__keeps_routing_when_one_side_closes),
        cmocka_unit_test(test_split__rejects_null),
    };
    return OPS_RUN_GROUP(tests);
}
