/* ops_pipeline_test.c -- sl_pipeline, sl_pipeline_blocking and
 * sl_pipeline_async: order, parallelism, errors, closing. */
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include "ops_testutil.h"

/* --- transforms ---------------------------------------------------------- */

/* Tracks how many transforms run at once, and in which order they finish. */
typedef struct {
    atomic_int inflight;
    atomic_int max_inflight;
    atomic_int finished;        /* count of completed transforms          */
    atomic_int out_of_order;    /* completions seen before a smaller input */
    atomic_int highest_done;
    int delay_ms[256];          /* per input value; fixed before the run  */
    int block_thread;           /* 1: nanosleep (blocks), 0: sl_sleep_ms  */
} s_probe_t;

static void s_probe_enter(s_probe_t *p)
{
    int now = atomic_fetch_add(&p->inflight, 1) + 1;
    int max = atomic_load(&p->max_inflight);
    while (now > max && !atomic_compare_exchange_weak(&p->max_inflight, &max, now))
        ;
}

static void s_probe_leave(s_probe_t *p, int v)
{
    if (atomic_load(&p->highest_done) > v)
        atomic_fetch_add(&p->out_of_order, 1);
    int hi = atomic_load(&p->highest_done);
    while (v > hi && !atomic_compare_exchange_weak(&p->highest_done, &hi, v))
        ;
    atomic_fetch_add(&p->finished, 1);
    atomic_fetch_sub(&p->inflight, 1);
}

static void s_sleep_real_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

/* out = v * 10 after the probe's delay for v. */
static int s_xf_slow_times10(void *in, void **out, void *arg)
{
    s_probe_t *p = arg;
    int v = I(in);
    s_probe_enter(p);
    if (p->block_thread)
        s_sleep_real_ms(p->delay_ms[v]);
    else if (p->delay_ms[v] > 0)
        sl_sleep_ms(p->delay_ms[v]);
    s_probe_leave(p, v);
    *out = V(v * 10);
    return 1;
}

/* Odd values fail with SL_EINVAL; multiples of 4 are filtered out. */
static int s_xf_picky(void *in, void **out, void *arg)
{
    (void)arg;
    int v = I(in);
    if (v % 2)
        return SL_EINVAL;
    if (v % 4 == 0)
        return 0;
    *out = V(v * 10);
    return 1;
}

typedef struct {
    atomic_int calls;
    atomic_int bad_err;
} s_handler_t;

static int s_on_error_negate(void *in, int err, void **out, void *arg)
{
    s_handler_t *h = arg;
    atomic_fetch_add(&h->calls, 1);
    if (err != SL_EINVAL)
        atomic_fetch_add(&h->bad_err, 1);
    *out = V(-I(in));
    return 1;
}

/* --- helpers ------------------------------------------------------------- */

typedef sl_chan_t *(*s_pipeline_fn)(int, sl_chan_t *, const sl_pipeline_fn_t *,
                                    sl_chan_t *, bool);

/* Run values 0..n-1 through a pipeline, collecting the output in `got`.
 * Returns the number of outputs; asserts `to` is closed after them and
 * that the pipeline's done channel closes. */
static int s_run(s_pipeline_fn start, int par, const sl_pipeline_fn_t *fn, int n,
                 int *got, int got_cap)
{
    void *vals[256];
    assert_true(n <= 256);
    for (int i = 0; i < n; i++)
        vals[i] = V(i);
    sl_chan_t *from = sl_to_chan(vals, (size_t)n);
    sl_chan_t *to = sl_chan_new(SL_BUF_FIXED, 2);
    sl_chan_t *done = start(par, to, fn, from, true);
    assert_non_null(done);
    sl_chan_destroy(&from); /* the pipeline holds its own reference */
    int k = 0;
    void *v;
    int rc;
    while ((rc = ops_take(to, &v)) == SL_OK) {
        assert_true(k < got_cap);
        got[k++] = I(v);
    }
    assert_int_equal(rc, SL_ECLOSED);
    ops_assert_closed(done);
    sl_chan_destroy(&done);
    sl_chan_destroy(&to);
    ops_assert_idle();
    return k;
}

static void s_assert_times10(const int *got, int k, int n)
{
    assert_int_equal(k, n);
    for (int i = 0; i < n; i++)
        assert_int_equal(got[i], i * 10);
}

/* --- order ---------------------------------------------------------------- */

static void test_pipeline__keeps_order_with_n_gt_1(void **state)
{
    (void)state;
    static s_probe_t probe; /* zero delays */
    sl_pipeline_fn_t fn = {.xf = s_xf_slow_times10, .arg = &probe};
    int got[256];
    s_assert_times10(got, s_run(sl_pipeline, 8, &fn, 200, got, 256), 200);
}

static void test_pipeline__keeps_order_with_random_delays(void **state)
{
    (void)state;
    static s_probe_t probe;
    unsigned seed = 12345;
    for (int i = 0; i < 64; i++)
        probe.delay_ms[i] = rand_r(&seed) % 8;
    sl_pipeline_fn_t fn = {.xf = s_xf_slow_times10, .arg = &probe};
    int got[256];
    s_assert_times10(got, s_run(sl_pipeline, 6, &fn, 64, got, 256), 64);
    /* The delays did reorder completions, so the order above was restored
     * by the pipeline, not given for free. */
    assert_true(atomic_load(&probe.out_of_order) > 0);
    assert_true(atomic_load(&probe.max_inflight) <= 6);
}

static void test_pipeline__blocking_keeps_order_with_random_delays(void **state)
{
    (void)state;
    static s_probe_t probe;
    probe.block_thread = 1;
    unsigned seed = 777;
    for (int i = 0; i < 48; i++)
        probe.delay_ms[i] = rand_r(&seed) % 8;
    sl_pipeline_fn_t fn = {.xf = s_xf_slow_times10, .arg = &probe};
    int got[256];
    s_assert_times10(got, s_run(sl_pipeline_blocking, 5, &fn, 48, got, 256), 48);
    assert_true(atomic_load(&probe.out_of_order) > 0);
    assert_true(atomic_load(&probe.max_inflight) <= 5);
}

/* --- parallelism ---------------------------------------------------------- */

static void s_check_parallel(s_pipeline_fn start, int block_thread)
{
    static s_probe_t probes[2];
    s_probe_t *probe = &probes[block_thread];
    probe->block_thread = block_thread;
    for (int i = 0; i < 8; i++)
        probe->delay_ms[i] = 20;
    sl_pipeline_fn_t fn = {.xf = s_xf_slow_times10, .arg = probe};
    int got[16];
    int64_t t0 = sl_now();
    s_assert_times10(got, s_run(start, 4, &fn, 8, got, 16), 8);
    double ms = sl_test_ms_since(t0);
    /* Serial would be 8 * 20 = 160 ms; four at a time is about 40 ms. */
    if (ms >= 120.0)
        fail_msg("8 x 20 ms with n=4 took %.1f ms", ms);
    assert_int_equal(atomic_load(&probe->max_inflight), 4);
}

static void test_pipeline__blocking_runs_n_at_once(void **state)
{
    (void)state;
    s_check_parallel(sl_pipeline_blocking, 1);
}

static void test_pipeline__compute_runs_n_at_once(void **state)
{
    (void)state;
    s_check_parallel(sl_pipeline, 0); /* xf parks in sl_sleep_ms */
}

/* --- errors and filtering ------------------------------------------------- */

static void s_check_errors(s_pipeline_fn start)
{
    s_handler_t h = {0};
    sl_pipeline_fn_t fn = {.xf = s_xf_picky, .on_error = s_on_error_negate, .error_arg = &h};
    int got[32];
    int k = s_run(start, 3, &fn, 12, got, 32);
    /* 0..11: evens not divisible by 4 give v*10, multiples of 4 nothing,
     * odds fail and the handler emits -v, all in input order. */
    const int want[] = {-1, 20, -3, -5, 60, -7, -9, 100, -11};
    assert_int_equal(k, 9);
    for (int i = 0; i < 9; i++)
        assert_int_equal(got[i], want[i]);
    assert_int_equal(atomic_load(&h.calls), 6);
    assert_int_equal(atomic_load(&h.bad_err), 0);

    /* Without a handler an error emits nothing. */
    sl_pipeline_fn_t bare = {.xf = s_xf_picky};
    k = s_run(start, 3, &bare, 12, got, 32);
    assert_int_equal(k, 3);
    assert_int_equal(got[0], 20);
    assert_int_equal(got[1], 60);
    assert_int_equal(got[2], 100);
}

static void test_pipeline__xf_errors_go_to_handler(void **state)
{
    (void)state;
    s_check_errors(sl_pipeline);
}

static void test_pipeline__blocking_xf_errors_go_to_handler(void **state)
{
    (void)state;
    s_check_errors(sl_pipeline_blocking);
}

/* --- async ---------------------------------------------------------------- */

typedef struct {
    int v;
    int delay_ms;
    sl_chan_t *res; /* owned reference */
} s_async_job_t;

/* Completes later, from another coroutine: puts v*10 and v*10+1. No cmocka
 * asserts here: they only work on the test's own thread. A put fails only
 * if the pipeline closed res because `to` is gone. */
static void *s_async_worker(void *arg)
{
    s_async_job_t *j = arg;
    sl_sleep_ms(j->delay_ms);
    if (sl_put(j->res, V(j->v * 10)) == SL_OK)
        (void)sl_put(j->res, V(j->v * 10 + 1));
    sl_chan_close(j->res);
    sl_chan_destroy(&j->res);
    free(j);
    return NULL;
}

static void s_af_two_later(void *in, sl_chan_t *result, void *arg)
{
    (void)arg;
    s_async_job_t *j = calloc(1, sizeof *j);
    if (!j)
        abort();
    j->v = I(in);
    j->delay_ms = (I(in) * 7) % 9; /* later inputs often finish first */
    j->res = sl_chan_ref(result);  /* result is borrowed only for this call */
    sl_chan_t *h = sl_go(s_async_worker, j);
    if (!h)
        abort();
    sl_chan_destroy(&h);
}

static void test_pipeline__async_keeps_order_and_all_values(void **state)
{
    (void)state;
    sl_pipeline_fn_t fn = {.af = s_af_two_later};
    int got[128];
    int k = s_run(sl_pipeline_async, 4, &fn, 40, got, 128);
    assert_int_equal(k, 80);
    for (int i = 0; i < 40; i++) {
        assert_int_equal(got[2 * i], i * 10);
        assert_int_equal(got[2 * i + 1], i * 10 + 1);
    }
}

static void s_af_none(void *in, sl_chan_t *result, void *arg)
{
    (void)in;
    (void)arg;
    sl_chan_close(result); /* zero values for this input */
}

static void test_pipeline__async_zero_values_is_fine(void **state)
{
    (void)state;
    sl_pipeline_fn_t fn = {.af = s_af_none};
    int got[8];
    assert_int_equal(s_run(sl_pipeline_async, 2, &fn, 10, got, 8), 0);
}

/* --- closing -------------------------------------------------------------- */

static int s_xf_id(void *in, void **out, void *arg)
{
    (void)arg;
    *out = in;
    return 1;
}

static void test_pipeline__leaves_to_open_without_close_to(void **state)
{
    (void)state;
    void *vals[] = {V(1), V(2), V(3)};
    sl_chan_t *from = sl_to_chan(vals, 3);
    sl_chan_t *to = sl_chan_new(SL_BUF_FIXED, 8);
    sl_pipeline_fn_t fn = {.xf = s_xf_id};
    sl_chan_t *done = sl_pipeline(2, to, &fn, from, false);
    assert_non_null(done);
    ops_assert_closed(done); /* everything delivered */
    for (int i = 1; i <= 3; i++)
        assert_int_equal(ops_take_int(to), i);
    ops_assert_quiet(to, 20);
    sl_chan_destroy(&done);
    sl_chan_destroy(&from);
    sl_chan_destroy(&to);
    ops_assert_idle();
}

static void test_pipeline__drains_from_after_to_closes(void **state)
{
    (void)state;
    sl_chan_t *from = sl_chan_new(SL_BUF_NONE, 0);
    sl_chan_t *to = sl_chan_new(SL_BUF_NONE, 0);
    sl_pipeline_fn_t fn = {.xf = s_xf_id};
    sl_chan_t *done = sl_pipeline_async(2, to, &(sl_pipeline_fn_t){.af = s_af_two_later},
                                        from, true);
    sl_chan_t *done2 = sl_pipeline(3, to, &fn, from, true);
    assert_non_null(done);
    assert_non_null(done2);
    sl_chan_close(to);
    /* Nobody reads `to`, yet both pipelines keep taking and finish. */
    for (int i = 0; i < 20; i++)
        SL_ASSERT_OK(sl_put_until(from, V(i), sl_deadline_ms(ops_patience_ms())));
    sl_chan_close(from);
    ops_assert_closed(done);
    ops_assert_closed(done2);
    sl_chan_destroy(&done);
    sl_chan_destroy(&done2);
    sl_chan_destroy(&from);
    sl_chan_destroy(&to);
    ops_assert_idle();
}

static void test_pipeline__rejects_bad_arguments(void **state)
{
    (void)state;
    sl_chan_t *a = sl_chan_new(SL_BUF_NONE, 0);
    sl_chan_t *b = sl_chan_new(SL_BUF_NONE, 0);
    sl_pipeline_fn_t xf = {.xf = s_xf_id};
    sl_pipeline_fn_t af = {.af = s_af_none};
    assert_null(sl_pipeline(0, b, &xf, a, true));
    assert_null(sl_pipeline(1, b, &af, a, true));      /* no xf */
    assert_null(sl_pipeline_async(1, b, &xf, a, true)); /* no af */
    assert_null(sl_pipeline_blocking(1, NULL, &xf, a, true));
    assert_null(sl_pipeline(1, b, NULL, a, true));
    sl_chan_destroy(&a);
    sl_chan_destroy(&b);
    ops_assert_idle();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pipeline__keeps_order_with_n_gt_1),
        cmocka_unit_test(test_pipeline__keeps_order_with_random_delays),
        cmocka_unit_test(test_pipeline__blocking_keeps_order_with_random_delays),
        cmocka_unit_test(test_pipeline__blocking_runs_n_at_once),
        cmocka_unit_test(test_pipeline__compute_runs_n_at_once),
        cmocka_unit_test(test_pipeline__xf_errors_go_to_handler),
        cmocka_unit_test(test_pipeline__blocking_xf_errors_go_to_handler),
        cmocka_unit_test(test_pipeline__async_keeps_order_and_all_values),
        cmocka_unit_test(test_pipeline__async_zero_values_is_fine),
        cmocka_unit_test(test_pipeline__leaves_to_open_without_close_to),
        cmocka_unit_test(test_pipeline__drains_from_after_to_closes),
        cmocka_unit_test(test_pipeline__rejects_bad_arguments),
    };
    return OPS_RUN_GROUP(tests);
}
