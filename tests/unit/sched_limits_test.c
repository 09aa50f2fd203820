/* sched_limits_test.c -- scheduler options, which can only be set before
 * first use and so need a process of their own: bad options, a second
 * start, the stack size, and the max_coroutines limit. */
#include <stdatomic.h>
#include <stdint.h>

#include "testlib.h"

#define LIMIT 8

/* Under a sanitizer, let a refused allocation come back as NULL (and so as
 * an error code the test can report) instead of aborting the process. */
const char *__asan_default_options(void);
const char *__tsan_default_options(void);
const char *__asan_default_options(void)
{
    return "allocator_may_return_null=1";
}
const char *__tsan_default_options(void)
{
    return "allocator_may_return_null=1";
}

static void test_sched_limits__bad_options_then_start(void **state)
{
    (void)state;
    assert_int_equal(sl_sched_workers(), 0); /* nothing started yet */
    sl_sched_opts_t bad = {.workers = -1};
    SL_ASSERT_ERR(sl_sched_start(&bad), SL_EINVAL);
    bad = (sl_sched_opts_t){.stack_size = 1024}; /* too small to run on */
    SL_ASSERT_ERR(sl_sched_start(&bad), SL_EINVAL);
    bad = (sl_sched_opts_t){.blocking_threads = -3};
    SL_ASSERT_ERR(sl_sched_start(&bad), SL_EINVAL);
    assert_int_equal(sl_sched_workers(), 0); /* failed starts leave nothing */

    sl_sched_opts_t o = {.workers = 2, .stack_size = 100000, .max_coroutines = LIMIT};
    SL_ASSERT_OK(sl_sched_start(&o));
    assert_int_equal(sl_sched_workers(), 2);
    SL_ASSERT_ERR(sl_sched_start(&o), SL_ESTATE);
    SL_ASSERT_ERR(sl_sched_start(NULL), SL_ESTATE);
    sl_sched_stats_t st;
    sl_sched_stats(&st);
    /* rounded up to whole pages, never below what was asked */
    assert_true(st.stack_size >= 100000);
    assert_true(st.stack_size < 100000 + 65536);
    assert_int_equal(st.stack_size % 4096, 0);
}

static void *s_park_on(void *arg)
{
    sl_chan_t *gate = arg;
    void *v;
    return V(sl_take(gate, &v));
}

static int s_live_is(void *arg)
{
    sl_sched_stats_t st;
    sl_sched_stats(&st);
    return st.live == (uint64_t)(uintptr_t)arg;
}

typedef struct {
    int from_co_err;
    void *from_co;
} inner_t;

static void *s_spawn_inside(void *arg)
{
    inner_t *in = arg;
    in->from_co_err = 0;
    in->from_co = sl_go_ex(s_park_on, NULL, 0, 1, &in->from_co_err);
    return NULL;
}

static int s_parked_on(void *arg)
{
    sl_chan_stats_t cs;
    sl_chan_stats(arg, &cs);
    return cs.pending_takes == LIMIT;
}

static void test_sched_limits__max_coroutines_gives_elimit(void **state)
{
    (void)state;
    sl_chan_t *gate = sl_chan_new(SL_BUF_NONE, 0);
    sl_chan_t *co[LIMIT];
    for (int i = 0; i < LIMIT; i++) {
        int err = 0;
        co[i] = sl_go_ex(s_park_on, gate, i % 2 ? SL_GO_SPREAD : 0, 1, &err);
        if (!co[i])
            fail_msg("spawn %d of %d failed: %s", i + 1, LIMIT, sl_err_name(err));
    }
    assert_true(sl_test_wait_for(s_live_is, (void *)(uintptr_t)LIMIT, sl_test_patience_ms()));
    assert_true(sl_test_wait_for(s_parked_on, gate, sl_test_patience_ms()));

    /* At the limit: every way of spawning says SL_ELIMIT, nothing runs. */
    int err = 0;
    assert_null(sl_go_ex(s_park_on, gate, 0, 1, &err));
    assert_int_equal(err, SL_ELIMIT);
    err = 0;
    assert_null(sl_go_ex(s_park_on, gate, SL_GO_SPREAD, 0, &err));
    assert_int_equal(err, SL_ELIMIT);
    assert_null(sl_go(s_park_on, gate));
    sl_sched_stats_t st;
    sl_sched_stats(&st);
    assert_int_equal(st.live, LIMIT);
    assert_int_equal(st.spawned, LIMIT);
    sl_chan_stats_t cs;
    sl_chan_stats(gate, &cs);
    assert_int_equal(cs.pending_takes, LIMIT);

    /* Blocking work is not a coroutine: sl_thread still runs. */
    sl_chan_t *job = sl_thread(s_park_on, NULL);
    assert_non_null(job);
    void *v = V(0);
    SL_ASSERT_OK(sl_take_until(job, &v, sl_deadline_ms(sl_test_patience_ms())));
    assert_int_equal(I(v), SL_EINVAL); /* sl_take(NULL) */
    sl_chan_destroy(&job);

    /* One returns: there is room for exactly one more. */
    SL_ASSERT_OK(sl_put(gate, V(1)));
    assert_true(sl_test_wait_for(s_live_is, (void *)(uintptr_t)(LIMIT - 1), sl_test_patience_ms()));
    /* A coroutine spawning at the limit is refused too (it is the one). */
    inner_t in = {0};
    err = 0;
    sl_chan_t *spawner = sl_go_ex(s_spawn_inside, &in, 0, 1, &err);
    assert_non_null(spawner);
    SL_ASSERT_OK(sl_take_until(spawner, &v, sl_deadline_ms(sl_test_patience_ms())));
    sl_chan_destroy(&spawner);
    assert_null(in.from_co);
    assert_int_equal(in.from_co_err, SL_ELIMIT);
    assert_true(sl_test_wait_for(s_live_is, (void *)(uintptr_t)(LIMIT - 1), sl_test_patience_ms()));
    sl_chan_t *last = sl_go(s_park_on, gate);
    assert_non_null(last);
    assert_null(sl_go(s_park_on, gate));

    /* Release everyone; all finish and the count goes back to zero. */
    sl_chan_close(gate);
    int closed = 0, ok = 0;
    for (int i = 0; i < LIMIT; i++) {
        v = V(99);
        SL_ASSERT_OK(sl_take_until(co[i], &v, sl_deadline_ms(sl_test_patience_ms())));
        ok += I(v) == SL_OK;
        closed += I(v) == SL_ECLOSED;
        sl_chan_destroy(&co[i]);
    }
    SL_ASSERT_OK(sl_take_until(last, &v, sl_deadline_ms(sl_test_patience_ms())));
    assert_int_equal(I(v), SL_ECLOSED);
    sl_chan_destroy(&last);
    assert_int_equal(ok, 1);
    assert_int_equal(closed, LIMIT - 1);
    assert_true(sl_test_wait_for(s_live_is, (void *)0, sl_test_patience_ms()));
    SL_ASSERT_OK(sl_sched_shutdown(sl_test_patience_ms()));
    assert_int_equal(sl_sched_workers(), 0);
    sl_chan_destroy(&gate);
}

static void *s_id(void *arg)
{
    return arg;
}

/* After a shutdown the scheduler starts again, with new options; any
 * worker count is fine (3 makes the worker array an odd size). */
static void test_sched_limits__restart_with_three_workers(void **state)
{
    (void)state;
    assert_int_equal(sl_sched_workers(), 0);
    sl_sched_opts_t o = {.workers = 3};
    int rc = sl_sched_start(&o);
    if (rc != SL_OK)
        fail_msg("sl_sched_start with 3 workers: %s", sl_err_name(rc));
    assert_int_equal(sl_sched_workers(), 3);
    sl_chan_t *p = sl_go(s_id, V(5));
    assert_non_null(p);
    void *v = NULL;
    SL_ASSERT_OK(sl_take_until(p, &v, sl_deadline_ms(sl_test_patience_ms())));
    assert_int_equal(I(v), 5);
    sl_chan_destroy(&p);
    /* the limit of the first start is gone: the default applies */
    for (int i = 0; i < 3 * LIMIT; i++) {
        sl_chan_t *q = sl_go(s_id, NULL);
        assert_non_null(q);
        sl_chan_destroy(&q);
    }
    SL_ASSERT_OK(sl_sched_shutdown(sl_test_patience_ms()));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sched_limits__bad_options_then_start),
        cmocka_unit_test(test_sched_limits__max_coroutines_gives_elimit),
        cmocka_unit_test(test_sched_limits__restart_with_three_workers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
