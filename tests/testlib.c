/* testlib.c -- helpers shared by the cmocka tests. */
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "testlib.h"

int sl_test_wait_for(int (*cond)(void *), void *arg, int64_t timeout_ms)
{
    int64_t end = sl_deadline_ms(timeout_ms);
    int v;
    while (!(v = cond(arg)) && sl_now() < end) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    return v;
}

long sl_test_rss_kib(void)
{
    long size = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f)
        return -1;
    if (fscanf(f, "%ld %ld", &size, &resident) != 2)
        resident = -1;
    fclose(f);
    return resident < 0 ? -1 : resident * (sysconf(_SC_PAGESIZE) / 1024);
}

double sl_test_ms_since(int64_t t0)
{
    return (double)(sl_now() - t0) / 1e6;
}

int64_t sl_test_patience_ms(void)
{
    return sl_test_sanitized() ? 30000 : 5000;
}

pthread_t sl_test_thread(void *(*fn)(void *), void *arg)
{
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, fn, arg), 0);
    return t;
}

void *sl_test_join(pthread_t t)
{
    void *r = NULL;
    assert_int_equal(pthread_join(t, &r), 0);
    return r;
}

double sl_test_slack_ms(void)
{
    return sl_test_sanitized() ? 400.0 : 60.0;
}

void *sl_test_result(sl_chan_t **promise, int64_t patience_ms)
{
    void *v = V(-1);
    SL_ASSERT_OK(sl_take_until(*promise, &v, sl_deadline_ms(patience_ms)));
    sl_chan_destroy(promise);
    return v;
}

sl_chan_t *sl_test_go(sl_go_fn fn, void *arg)
{
    sl_chan_t *p = sl_go(fn, arg);
    assert_non_null(p);
    return p;
}

int sl_test_sanitized(void)
{
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    return 1;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
    return 1;
#endif
#endif
    return 0;
}

/* libzmq is not built with ThreadSanitizer, so its internal
 * synchronisation is invisible to TSan and reports in it are false.
 * Every test executable links this library, so this applies to all. */
const char *__tsan_default_suppressions(void);
const char *__tsan_default_suppressions(void)
{
    return "called_from_lib:libzmq.so\n";
}
