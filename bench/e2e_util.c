/* e2e_util.c -- processes, ports, RSS, shared memory, payloads and
 * percentiles for the end-to-end benchmarks (see e2e_util.h). */
#define _GNU_SOURCE
#include "e2e_util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"

pid_t e2e_fork(int (*fn)(void *arg), void *arg)
{
    fflush(NULL); /* or the child flushes the parent's buffered output too */
    pid_t pid = fork();
    BENCH_CHECK(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* a failed run leaves no orphans */
        int rc = fn(arg);
        fflush(NULL);
        _exit(rc);
    }
    return pid;
}

pid_t e2e_spawn(char *const argv[], const char *prefix, char *line, size_t cap,
                int timeout_ms)
{
    int fds[2] = {-1, -1};
    if (prefix)
        BENCH_CHECK(pipe(fds) == 0, "pipe: %s", strerror(errno));
    fflush(NULL);
    pid_t pid = fork();
    BENCH_CHECK(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (prefix) {
            dup2(fds[1], STDOUT_FILENO);
            close(fds[0]);
            close(fds[1]);
        }
        execvp(argv[0], argv);
        fprintf(stderr, "bench: cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    if (!prefix)
        return pid;
    close(fds[1]);

    size_t len = 0;
    int found = 0;
    int64_t deadline = bench_now_ns() + (int64_t)timeout_ms * 1000000;
    line[0] = '\0';
    while (!found) {
        int64_t left_ms = (deadline - bench_now_ns()) / 1000000;
        if (left_ms <= 0)
            break;
        struct pollfd pfd = {.fd = fds[0], .events = POLLIN};
        if (poll(&pfd, 1, (int)left_ms) <= 0)
            continue;
        char c;
        ssize_t n = read(fds[0], &c, 1); /* byte by byte: only the first line */
        if (n <= 0)
            break;
        if (c != '\n') {
            if (len + 1 < cap)
                line[len++] = c;
            continue;
        }
        line[len] = '\0';
        if (strncmp(line, prefix, strlen(prefix)) == 0)
            found = 1;
        else
            len = 0;
    }
    if (!found) {
        fprintf(stderr, "bench: %s did not print '%s...' within %d ms\n", argv[0], prefix,
                timeout_ms);
        close(fds[0]);
        e2e_stop(pid, SIGKILL, 2000);
        return -1;
    }
    /* The read end stays open (and unread) until we exit: what the daemon
     * prints later (a line at shutdown) fits in the pipe, and closing it
     * would turn that line into an EPIPE. */
    return pid;
}

int e2e_wait(pid_t pid, int timeout_ms)
{
    return e2e_wait_cpu(pid, timeout_ms, NULL);
}

int e2e_wait_cpu(pid_t pid, int timeout_ms, double *cpu_s)
{
    int64_t deadline = bench_now_ns() + (int64_t)timeout_ms * 1000000;
    for (;;) {
        int st;
        struct rusage ru;
        pid_t r = wait4(pid, &st, WNOHANG, &ru);
        if (r == pid) {
            if (cpu_s)
                *cpu_s = (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
                         (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        }
        if (r < 0 && errno != EINTR)
            return -1;
        if (bench_now_ns() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            return -1;
        }
        e2e_sleep_ms(2);
    }
}

int e2e_alive(pid_t pid)
{
    siginfo_t si;
    memset(&si, 0, sizeof si);
    /* WNOWAIT: leave the exit status for e2e_wait. */
    if (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) != 0)
        return 0;
    return si.si_pid == 0;
}

int e2e_stop(pid_t pid, int sig, int timeout_ms)
{
    kill(pid, sig);
    return e2e_wait(pid, timeout_ms);
}

int e2e_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    int port = -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

int64_t e2e_rss_of(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    char buf[256];
    int64_t kb = -1;
    while (fgets(buf, sizeof buf, f)) {
        long long v;
        if (sscanf(buf, "VmRSS: %lld kB", &v) == 1) {
            kb = v;
            break;
        }
    }
    fclose(f);
    return kb < 0 ? -1 : kb * 1024;
}

void *e2e_shared(size_t size)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    BENCH_CHECK(p != MAP_FAILED, "mmap %zu: %s", size, strerror(errno));
    return p;
}

void e2e_payload_fill(uint8_t p[E2E_PAYLOAD], int64_t now_ns, uint64_t seq)
{
    for (size_t i = 16; i < E2E_PAYLOAD; i++)
        p[i] = (uint8_t)('a' + i % 26);
    e2e_payload_stamp(p, now_ns, seq);
}

void e2e_payload_stamp(uint8_t p[E2E_PAYLOAD], int64_t now_ns, uint64_t seq)
{
    memcpy(p, &now_ns, 8);
    memcpy(p + 8, &seq, 8);
}

int64_t e2e_payload_time(const void *p)
{
    int64_t t;
    memcpy(&t, p, 8);
    return t;
}

uint64_t e2e_payload_seq(const void *p)
{
    uint64_t s;
    memcpy(&s, (const uint8_t *)p + 8, 8);
    return s;
}

static int s_cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* The value below which a fraction q of sorted samples lie (nearest rank). */
static double s_rank(const int64_t *v, size_t n, double q)
{
    size_t i = (size_t)(q * (double)n);
    if (i >= n)
        i = n - 1;
    return (double)v[i] / 1000.0;
}

void e2e_percentiles(int64_t *v, size_t n, e2e_lat_t *out)
{
    if (n == 0) {
        out->p50 = out->p99 = out->p999 = out->max = -1;
        return;
    }
    qsort(v, n, sizeof *v, s_cmp_i64);
    out->p50 = s_rank(v, n, 0.50);
    out->p99 = s_rank(v, n, 0.99);
    out->p999 = s_rank(v, n, 0.999);
    out->max = (double)v[n - 1] / 1000.0;
}

void e2e_lat_report(const char *prefix, const e2e_lat_t *lat)
{
    char name[96];
    snprintf(name, sizeof name, "%s_p50", prefix);
    bench_result(name, lat->p50, "us");
    snprintf(name, sizeof name, "%s_p99", prefix);
    bench_result(name, lat->p99, "us");
    snprintf(name, sizeof name, "%s_p999", prefix);
    bench_result(name, lat->p999, "us");
    bench_info("%s latency max %.0f us", prefix, lat->max);
}

void e2e_sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}
