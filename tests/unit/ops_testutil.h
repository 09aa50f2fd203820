/* ops_testutil.h -- helpers shared by the ops_*_test.c combinator tests:
 * int values in channels, bounded takes, and waiting for every combinator
 * coroutine to finish (which is how the tests see that nothing leaked). */
#ifndef SLUICE_OPS_TESTUTIL_H
#define SLUICE_OPS_TESTUTIL_H

#include <stdint.h>
#include <stdlib.h>

#include "testlib.h"
#include "sluice/ops.h"


/* Generous bound for "should happen"; no test waits this long on success. */
static inline int64_t ops_patience_ms(void)
{
    return sl_test_sanitized() ? 20000 : 5000;
}

/* Take with the patience deadline; returns the sl_take_until code. */
static inline int ops_take(sl_chan_t *ch, void **out)
{
    return sl_take_until(ch, out, sl_deadline_ms(ops_patience_ms()));
}

/* Take expecting an int value. */
static inline int ops_take_int(sl_chan_t *ch)
{
    void *v = NULL;
    SL_ASSERT_OK(ops_take(ch, &v));
    return I(v);
}

/* Assert ch is closed and drained (within patience). */
static inline void ops_assert_closed(sl_chan_t *ch)
{
    void *v;
    SL_ASSERT_ERR(ops_take(ch, &v), SL_ECLOSED);
}

/* Assert nothing arrives on ch for ms (and it is not closed). */
static inline void ops_assert_quiet(sl_chan_t *ch, int64_t ms)
{
    void *v;
    SL_ASSERT_ERR(sl_take_until(ch, &v, sl_deadline_ms(ms)), SL_ETIMEDOUT);
}

static inline int ops__idle(void *arg)
{
    (void)arg;
    sl_sched_stats_t st;
    sl_sched_stats(&st);
    return st.live == 0 && st.blocking_live == 0;
}

/* Every coroutine and blocking task has returned: the combinators under
 * test ended and released what they held. */
static inline void ops_assert_idle(void)
{
    assert_true(sl_test_wait_for(ops__idle, NULL, ops_patience_ms()));
}

static inline int ops_group_setup(void **state)
{
    (void)state;
    int rc = sl_sched_start(NULL);
    return rc == SL_OK || rc == SL_ESTATE ? 0 : -1;
}

static inline int ops_group_teardown(void **state)
{
    (void)state;
    return sl_sched_shutdown(ops_patience_ms()) == SL_OK ? 0 : -1;
}

/* OPS_TEST_FILTER=pattern runs only the matching tests (debugging). */
static inline void ops_apply_filter(void)
{
    const char *filter = getenv("OPS_TEST_FILTER");
    if (filter)
        cmocka_set_test_filter(filter);
}

/* Run a group with the scheduler started before and shut down after. */
#define OPS_RUN_GROUP(tests)                                                 \
    (ops_apply_filter(),                                                     \
     cmocka_run_group_tests(tests, ops_group_setup, ops_group_teardown))

#endif
