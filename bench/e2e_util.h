/* e2e_util.h -- what the end-to-end benchmarks share: child processes (a
 * forked role, an exec'd daemon whose first stdout line is read), free
 * loopback ports, another process's RSS, memory shared across fork, the
 * 256-byte benchmark payload, and latency percentiles. */
#ifndef SLUICE_E2E_UTIL_H
#define SLUICE_E2E_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define E2E_PAYLOAD 256          /* bytes per job or message, every workload */
#define E2E_LAT_SKIP 10000       /* first jobs left out of latency figures   */

/* Run fn(arg) in a forked child that exits with its return value. Call it
 * before the parent starts any thread. Returns the child's pid. */
pid_t e2e_fork(int (*fn)(void *arg), void *arg);

/* Start argv[0] (searched in PATH) with stdout on a pipe, and read its
 * stdout until a line starting with `prefix` arrives or timeout_ms passes.
 * The line (without its newline) goes to line[0..cap-1]. Returns the pid,
 * or -1 (the child is killed) if the line did not come. The rest of the
 * child's stdout is never read; its stderr is inherited. prefix NULL:
 * stdout is inherited too and the call returns at once. */
pid_t e2e_spawn(char *const argv[], const char *prefix, char *line, size_t cap,
                int timeout_ms);

/* Wait up to timeout_ms for pid to exit; kill it (SIGKILL) if it does not.
 * Returns its exit status, 128 + signal if a signal ended it, or -1 when
 * it had to be killed. */
int e2e_wait(pid_t pid, int timeout_ms);

/* 1 if pid (a child) has not exited, else 0 (it is not reaped: e2e_wait
 * still gives its status). */
int e2e_alive(pid_t pid);

/* e2e_wait that also gives the CPU time (user + system, seconds, all
 * threads) the process used, when it exited in time. */
int e2e_wait_cpu(pid_t pid, int timeout_ms, double *cpu_s);

/* Send sig to pid and wait up to timeout_ms as e2e_wait. */
int e2e_stop(pid_t pid, int sig, int timeout_ms);

/* A TCP port on 127.0.0.1 that was free a moment ago (the kernel's pick for
 * port 0), or -1. */
int e2e_free_port(void);

/* VmRSS of a process in bytes, or -1 if it cannot be read. */
int64_t e2e_rss_of(pid_t pid);

/* size zeroed bytes shared with children forked afterwards. Never freed:
 * the benchmark exits. Aborts the benchmark on failure. */
void *e2e_shared(size_t size);

/* Fill a payload: the publish time (CLOCK_MONOTONIC ns) in bytes 0-7, the
 * sequence number in 8-15, filler after. */
void e2e_payload_fill(uint8_t p[E2E_PAYLOAD], int64_t now_ns, uint64_t seq);
void e2e_payload_stamp(uint8_t p[E2E_PAYLOAD], int64_t now_ns, uint64_t seq);
int64_t e2e_payload_time(const void *p);
uint64_t e2e_payload_seq(const void *p);

/* Latency percentiles, in microseconds, of samples v[0..n-1] (ns; sorted
 * in place). n == 0 gives -1 everywhere. */
typedef struct {
    double p50, p99, p999, max;
} e2e_lat_t;
void e2e_percentiles(int64_t *v, size_t n, e2e_lat_t *out);

/* Print the RESULT lines `<prefix>_p50`, `_p99`, `_p999` (us). */
void e2e_lat_report(const char *prefix, const e2e_lat_t *lat);

/* Sleep ms milliseconds. */
void e2e_sleep_ms(int ms);

#endif
