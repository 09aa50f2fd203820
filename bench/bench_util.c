/* bench_util.c -- clock, RSS, counts and result lines for the benchmarks
 * (see bench_util.h). */
#include "bench_util.h"

#include <stdarg.h>
#include <time.h>
#include <unistd.h>

int64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t bench_rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f)
        return -1;
    long size = 0, resident = 0;
    int n = fscanf(f, "%ld %ld", &size, &resident);
    fclose(f);
    if (n != 2)
        return -1;
    return (int64_t)resident * sysconf(_SC_PAGESIZE);
}

long bench_count(const char *name, long def)
{
    long n = def;
    const char *s = getenv(name);
    if (s && atol(s) > 0)
        n = atol(s);
    const char *scale = getenv("BENCH_SCALE");
    if (scale && atof(scale) > 0)
        n = (long)((double)n * atof(scale));
    return n < 1 ? 1 : n;
}

void bench_result(const char *name, double value, const char *unit)
{
    printf("RESULT %s %.3f %s\n", name, value, unit);
    fflush(stdout);
}

void bench_info(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("INFO ", stdout);
    vprintf(fmt, ap);
    fputc('\n', stdout);
    va_end(ap);
    fflush(stdout);
}
