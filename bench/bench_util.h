/* bench_util.h -- what every Sluice benchmark program shares: a clock, the
 * resident set size, iteration counts from the environment, and the
 * "RESULT <name> <value> <unit>" lines that bench/run parses. */
#ifndef SLUICE_BENCH_UTIL_H
#define SLUICE_BENCH_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* CLOCK_MONOTONIC in nanoseconds. */
int64_t bench_now_ns(void);

/* Resident set size of this process in bytes, from /proc/self/statm; -1 if
 * it cannot be read. */
int64_t bench_rss_bytes(void);

/* Iteration count: the environment variable name if set (a positive
 * integer), else def; either way multiplied by BENCH_SCALE (a positive
 * float, default 1) and never below 1. */
long bench_count(const char *name, long def);

/* Print "RESULT <name> <value> <unit>" on stdout and flush it. */
void bench_result(const char *name, double value, const char *unit);

/* Print "INFO <text>" on stdout: a human note the driver passes through. */
void bench_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Abort the benchmark with a message on stderr: a failed operation means
 * the figure would be meaningless. Not an assert: it stays in Release. */
#define BENCH_CHECK(cond, ...)                                              \
    do {                                                                    \
        if (!(cond)) {                                                      \
            fprintf(stderr, "bench: %s:%d: check failed: %s: ", __FILE__,   \
                    __LINE__, #cond);                                       \
            fprintf(stderr, __VA_ARGS__);                                   \
            fputc('\n', stderr);                                            \
            exit(2);                                                        \
        }                                                                   \
    } while (0)

#endif
