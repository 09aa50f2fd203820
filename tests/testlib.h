/* testlib.h -- small helpers shared by the cmocka tests. */
#ifndef SLUICE_TESTLIB_H
#define SLUICE_TESTLIB_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "sluice/chan.h"
#include "sluice/sched.h"

/* Assert an SL_* call returned SL_OK, printing the error name if not. */
#define SL_ASSERT_OK(expr)                                                   \
    do {                                                                     \
        int rc__ = (expr);                                                   \
        if (rc__ != SL_OK)                                                   \
            fail_msg("%s returned %s", #expr, sl_err_name(rc__));            \
    } while (0)

#define SL_ASSERT_ERR(expr, code)                                            \
    do {                                                                     \
        int rc__ = (expr);                                                   \
        if (rc__ != (code))                                                  \
            fail_msg("%s returned %s, expected %s", #expr, sl_err_name(rc__),\
                     sl_err_name(code));                                     \
    } while (0)

/* Poll cond(arg) every millisecond until it returns non-zero or timeout_ms
 * passes. Returns the last value of cond. */
int sl_test_wait_for(int (*cond)(void *), void *arg, int64_t timeout_ms);

/* Resident set size of this process in KiB (from /proc/self/statm). */
long sl_test_rss_kib(void);

/* Milliseconds elapsed since t0 (an sl_now() value). */
double sl_test_ms_since(int64_t t0);

/* 1 when built with a sanitizer (timing tolerances widen). */
int sl_test_sanitized(void);

/* Values carried through channels as integers. */
#define V(i) ((void *)(intptr_t)(i))
#define I(v) ((intptr_t)(v))

/* How long a test waits for something that should happen promptly. */
int64_t sl_test_patience_ms(void);

/* Start / join a plain thread, failing the test if that fails. */
#include <pthread.h>
pthread_t sl_test_thread(void *(*fn)(void *), void *arg);
void *sl_test_join(pthread_t t);

/* Slack allowed past a deadline before a timing test calls it late. */
double sl_test_slack_ms(void);

/* Take a coroutine's result from its promise within patience_ms, failing
 * the test otherwise, and drop the promise. */
void *sl_test_result(sl_chan_t **promise, int64_t patience_ms);

/* Spawn fn in a coroutine; returns its promise (caller owns). */
sl_chan_t *sl_test_go(sl_go_fn fn, void *arg);

#endif
