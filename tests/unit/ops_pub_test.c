/* ops_pub_test.c -- sl_pub: routing by topic, unsub, drops for topics
 * without subscribers, slow subscribers, closing. */
#include <string.h>

#include "ops_testutil.h"

/* A message is a static record; its topic is a field. */
typedef struct {
    const char *topic;
    int n;
} s_msg_t;

static const char *s_topic_of(void *v, void *arg)
{
    int *calls = arg;
    if (calls)
        (*calls)++; /* only the pub's loop calls this */
    return ((s_msg_t *)v)->topic;
}

static void s_pub(sl_chan_t *src, s_msg_t *msg)
{
    SL_ASSERT_OK(sl_put_until(src, msg, sl_deadline_ms(ops_patience_ms())));
}

static s_msg_t *s_take_msg(sl_chan_t *ch)
{
    void *v = NULL;
    SL_ASSERT_OK(ops_take(ch, &v));
    return v;
}

static int s_dropped_at_least(void *arg)
{
    void **a = arg;
    return sl_pub_dropped(a[0]) >= (uint64_t)(uintptr_t)a[1];
}

static void s_wait_dropped(sl_pub_t *p, uint64_t n)
{
    void *a[2] = {p, (void *)(uintptr_t)n};
    assert_true(sl_test_wait_for(s_dropped_at_least, a, ops_patience_ms()));
    assert_int_equal(sl_pub_dropped(p), n);
}

static void test_pub__routes_each_value_to_its_topic(void **state)
{
    (void)state;
    static s_msg_t a1 = {"a", 1}, b1 = {"b", 1}, a2 = {"a", 2}, c1 = {"c", 1};
    sl_chan_t *src = sl_chan_new(SL_BUF_NONE, 0);
    int calls = 0;
    sl_pub_t *p = sl_pub_new(src, s_topic_of, &calls, -1);
    assert_non_null(p);
    sl_chan_t *qa1 = sl_chan_new(SL_BUF_FIXED, 8);
    sl_chan_t *qa2 = sl_chan_new(SL_BUF_FIXED, 8);
    sl_chan_t *qb = sl_chan_new(SL_BUF_FIXED, 8);
    SL_ASSERT_OK(sl_pub_sub(p, "a", qa1, true));
    SL_ASSERT_OK(sl_pub_sub(p, "a", qa2, true));
    SL_ASSERT_OK(sl_pub_sub(p, "b", qb, true));
    s_pub(src, &a1);
    s_pub(src, &b1);
    s_pub(src, &c1); /* no subscriber */
    s_pub(src, &a2);
    sl_chan_close(src);
    assert_ptr_equal(s_take_msg(qa1), &a1);
    assert_ptr_equal(s_take_msg(qa1), &a2);
    ops_assert_closed(qa1);
    assert_ptr_equal(s_take_msg(qa2), &a1);
    assert_ptr_equal(s_take_msg(qa2), &a2);
    ops_assert_closed(qa2);
    assert_ptr_equal(s_take_msg(qb), &b1);
    ops_assert_closed(qb);
    ops_assert_idle();
    assert_int_equal(calls, 4);
    assert_int_equal(sl_pub_dropped(p), 1);
    sl_pub_destroy(&p);
    assert_null(p);
    sl_chan_destroy(&src);
    sl_chan_destroy(&qa1);
    sl_chan_destroy(&qa2);
    sl_chan_destroy(&qb);
}

static void test_pub__unsub_stops_delivery(void **state)
{
    (void)state;
    static s_msg_t x1 = {"x", 1}, x2 = {"x", 2}, x3 = {"x", 3};
    sl_chan_t *src = sl_chan_new(SL_BUF_NONE, 0);
    sl_pub_t *p = sl_pub_new(src, s_topic_of, NULL, -1);
    assert_non_null(p);
    sl_chan_t *s1 = sl_chan_new(SL_BUF_FIXED, 8);
    sl_chan_t *s2 = sl_chan_new(SL_BUF_FIXED, 8);
    SL_ASSERT_OK(sl_pub_sub(p, "x", s1, false));
    SL_ASSERT_OK(sl_pub_sub(p, "x", s2, false));
    s_pub(src, &x1);
    assert_ptr_equal(s_take_msg(s1), &x1);
    assert_ptr_equal(s_take_msg(s2), &x1);
    SL_ASSERT_OK(sl_pub_unsub(p, "x", s2));
    SL_ASSERT_ERR(sl_pub_unsub(p, "x", s2), SL_EINVAL);
    SL_ASSERT_ERR(sl_pub_unsub(p, "nope", s1), SL_EINVAL);
    s_pub(src, &x2);
    assert_ptr_equal(s_take_msg(s1), &x2);
    ops_assert_quiet(s2, 30);
    assert_int_equal(sl_pub_dropped(p), 0);
    /* Last subscriber gone: the topic's values are now dropped. */
    SL_ASSERT_OK(sl_pub_unsub(p, "x", s1));
    s_pub(src, &x3);
    s_wait_dropped(p, 1);
    ops_assert_quiet(s1, 30);
    sl_chan_close(src);
    ops_assert_idle();
    sl_pub_destroy(&p);
    sl_chan_destroy(&src);
    sl_chan_destroy(&s1);
    sl_chan_destroy(&s2);
}

static void test_pub__unsub_all_by_topic_and_everywhere(void **state)
{
    (void)state;
    static s_msg_t a = {"a", 1}, b = {"b", 1};
    sl_chan_t *src = sl_chan_new(SL_BUF_NONE, 0);
    sl_pub_t *p = sl_pub_new(src, s_topic_of, NULL, -1);
    assert_non_null(p);
    sl_chan_t *qa = sl_chan_new(SL_BUF_FIXED, 8);
    sl_chan_t *qb = sl_chan_new(SL_BUF_FIXED, 8);
    SL_ASSERT_OK(sl_pub_sub(p, "a", qa, false));
    SL_ASSERT_OK(sl_pub_sub(p, "b", qb, false));
    sl_pub_unsub_all(p, "a");
    s_pub(src, &a);
    s_pub(src, &b);
    assert_ptr_equal(s_take_msg(qb), &b);
    s_wait_dropped(p, 1);
    sl_pub_unsub_all(p, NULL);
    s_pub(src, &b);
    s_wait_dropped(p, 2);
    ops_assert_quiet(qa, 20);
    ops_assert_quiet(qb, 20);
    sl_chan_close(src);
    ops_assert_idle();
    sl_pub_destroy(&p);
    sl_chan_destroy(&src);
    sl_chan_destroy(&qa);
    sl_chan_destroy(&qb);
}

static void test_pub__slow_subscriber_misses_with_timeout(void **state)
{
    (void)state;
    static s_msg_t m[5] = {{"t", 0}, {"t", 1}, {"t", 2}, {"t", 3}, {"t", 4}};
    sl_chan_t *src = sl_chan_new(SL_BUF_NONE, 0);
    sl_pub_t *p = sl_pub_new(src, s_topic_of, NULL, 20);
    assert_non_null(p);
    sl_chan_t *slow = sl_chan_new(SL_BUF_NONE, 0); /* never taken */
    sl_chan_t *fast = sl_chan_new(SL_BUF_NONE, 0);
    SL_ASSERT_OK(sl_pub_sub(p, "t", slow, true));
    SL_ASSERT_OK(sl_pub_sub(p, "t", fast, true));
    void *vals[5];
    for (int i = 0; i < 5; i++)
        vals[i] = &m[i];
    sl_chan_t *fed = sl_onto_chan(src, vals, 5, true);
    for (int i = 0; i < 5; i++)
        assert_ptr_equal(s_take_msg(fast), &m[i]);
    ops_assert_closed(fast);
    ops_assert_closed(slow);
    ops_assert_closed(fed);
    assert_int_equal(sl_pub_dropped(p), 0); /* missed, not dropped */
    ops_assert_idle();
    sl_chan_destroy(&fed);
    sl_pub_destroy(&p);
    sl_chan_destroy(&src);
    sl_chan_destroy(&slow);
    sl_chan_destroy(&fast);
}

static void test_pub__closes_only_close_sub_subscribers(void **state)
{
    (void)state;
    sl_chan_t *src = sl_chan_new(SL_BUF_NONE, 0);
    sl_pub_t *p = sl_pub_new(src, s_topic_of, NULL, -1);
    assert_non_null(p);
    sl_chan_t *keep = sl_chan_new(SL_BUF_FIXED, 1);
    sl_chan_t *shut = sl_chan_new(SL_BUF_FIXED, 1);
    SL_ASSERT_OK(sl_pub_sub(p, "k", keep, false));
    SL_ASSERT_OK(sl_pub_sub(p, "s", shut, true));
    SL_ASSERT_ERR(sl_pub_sub(p, NULL, shut, true), SL_EINVAL);
    sl_pub_destroy(&p); /* the pub runs on without the handle */
    sl_chan_close(src);
    ops_assert_closed(shut);
    ops_assert_idle();
    SL_ASSERT_OK(sl_offer(keep, V(1))); /* still open */
    sl_chan_destroy(&src);
    sl_chan_destroy(&keep);
    sl_chan_destroy(&shut);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pub__routes_each_value_to_its_topic),
        cmocka_unit_test(test_pub__unsub_stops_delivery),
        cmocka_unit_test(test_pub__unsub_all_by_topic_and_everywhere),
        cmocka_unit_test(test_pub__slow_subscriber_misses_with_timeout),
        cmocka_unit_test(test_pub__closes_only_close_sub_subscribers),
    };
    return OPS_RUN_GROUP(tests);
}
