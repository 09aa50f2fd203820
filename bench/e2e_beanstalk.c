/* e2e_beanstalk.c -- the beanstalkd baseline of bench/run e2e: a beanstalkd
 * child on a free loopback port, a producer process pipelining `put`s and a
 * consumer process pipelining `reserve`s and `delete`s over the text
 * protocol, 256-byte jobs. Prints RESULT lines; see docs/bench.md.
 * Usage: e2e_beanstalk  (BENCH_BEANSTALKD names the binary) */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "bench_util.h"
#include "e2e_util.h"

typedef struct {
    atomic_int ready; /* consumer connected */
    int port;
    long n, pipe;
    int64_t t0, t1;
    long bad;
    e2e_lat_t lat;
} s_run_t;

/* --- A tiny buffered connection ---------------------------------------- */

typedef struct {
    int fd;
    char in[1 << 16];
    size_t start, end;
    char *out;
    size_t out_len, out_cap;
} s_conn_t;

static int s_connect(int port, int timeout_ms)
{
    int64_t deadline = bench_now_ns() + (int64_t)timeout_ms * 1000000;
    for (;;) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        BENCH_CHECK(fd >= 0, "socket: %s", strerror(errno));
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0) {
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            struct timeval tv = {.tv_sec = 30}; /* a stuck server fails the run */
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
            return fd;
        }
        close(fd);
        if (bench_now_ns() > deadline)
            return -1;
        e2e_sleep_ms(5);
    }
}

static void s_conn_init(s_conn_t *c, int port)
{
    memset(c, 0, sizeof *c);
    c->fd = s_connect(port, 5000);
    BENCH_CHECK(c->fd >= 0, "cannot connect to beanstalkd on port %d", port);
    c->out_cap = 1 << 20;
    c->out = malloc(c->out_cap);
    BENCH_CHECK(c->out != NULL, "out of memory");
}

static void s_put_bytes(s_conn_t *c, const void *p, size_t n)
{
    BENCH_CHECK(c->out_len + n <= c->out_cap, "pipeline too deep for the buffer");
    memcpy(c->out + c->out_len, p, n);
    c->out_len += n;
}

static void s_printf(s_conn_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void s_printf(s_conn_t *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(c->out + c->out_len, c->out_cap - c->out_len, fmt, ap);
    va_end(ap);
    BENCH_CHECK(n >= 0 && c->out_len + (size_t)n < c->out_cap, "pipeline too deep");
    c->out_len += (size_t)n;
}

/* Write everything queued, in one go where the kernel allows. */
static void s_flush(s_conn_t *c)
{
    size_t off = 0;
    while (off < c->out_len) {
        ssize_t n = write(c->fd, c->out + off, c->out_len - off);
        if (n < 0 && errno == EINTR)
            continue;
        BENCH_CHECK(n > 0, "write: %s", strerror(errno));
        off += (size_t)n;
    }
    c->out_len = 0;
}

static void s_fill(s_conn_t *c)
{
    if (c->start > 0) {
        memmove(c->in, c->in + c->start, c->end - c->start);
        c->end -= c->start;
        c->start = 0;
    }
    BENCH_CHECK(c->end < sizeof c->in, "reply too long");
    ssize_t n;
    do
        n = read(c->fd, c->in + c->end, sizeof c->in - c->end);
    while (n < 0 && errno == EINTR);
    BENCH_CHECK(n > 0, "read from beanstalkd: %s", n == 0 ? "EOF" : strerror(errno));
    c->end += (size_t)n;
}

/* The next reply line, NUL-terminated without its \r\n; borrowed until the
 * next read. */
static char *s_line(s_conn_t *c)
{
    for (;;) {
        char *nl = memmem(c->in + c->start, c->end - c->start, "\r\n", 2);
        if (nl) {
            char *line = c->in + c->start;
            *nl = '\0';
            c->start = (size_t)(nl + 2 - c->in);
            return line;
        }
        s_fill(c);
    }
}

/* The next n bytes and their \r\n; borrowed until the next read. */
static const char *s_body(s_conn_t *c, size_t n)
{
    while (c->end - c->start < n + 2)
        s_fill(c);
    const char *p = c->in + c->start;
    c->start += n + 2;
    return p;
}

/* --- Producer and consumer ---------------------------------------------- */

static int s_producer(void *arg)
{
    s_run_t *run = arg;
    while (!atomic_load(&run->ready))
        e2e_sleep_ms(1);
    s_conn_t *c = malloc(sizeof *c);
    BENCH_CHECK(c != NULL, "out of memory");
    s_conn_init(c, run->port);
    uint8_t payload[E2E_PAYLOAD];
    e2e_payload_fill(payload, 0, 0);
    run->t0 = bench_now_ns();
    for (long done = 0; done < run->n;) {
        long k = run->n - done < run->pipe ? run->n - done : run->pipe;
        for (long i = 0; i < k; i++) {
            e2e_payload_stamp(payload, bench_now_ns(), (uint64_t)(done + i));
            s_printf(c, "put 0 0 60 %d\r\n", E2E_PAYLOAD);
            s_put_bytes(c, payload, sizeof payload);
            s_put_bytes(c, "\r\n", 2);
        }
        s_flush(c);
        for (long i = 0; i < k; i++) {
            char *l = s_line(c);
            BENCH_CHECK(strncmp(l, "INSERTED ", 9) == 0, "put answered '%s'", l);
        }
        done += k;
    }
    close(c->fd);
    return 0;
}

static int s_consumer(void *arg)
{
    s_run_t *run = arg;
    s_conn_t *c = malloc(sizeof *c);
    BENCH_CHECK(c != NULL, "out of memory");
    s_conn_init(c, run->port);
    atomic_store(&run->ready, 1);

    int64_t *lat = malloc((size_t)run->n * sizeof *lat);
    unsigned long long *ids = malloc((size_t)run->pipe * sizeof *ids);
    BENCH_CHECK(lat && ids, "out of memory");
    size_t nlat = 0;
    long pending_deletes = 0;
    for (long done = 0; done < run->n;) {
        long k = run->n - done < run->pipe ? run->n - done : run->pipe;
        /* The deletes of the last batch travel with the reserves of this one. */
        for (long i = 0; i < k; i++)
            s_printf(c, "reserve-with-timeout 30\r\n");
        s_flush(c);
        for (long i = 0; i < pending_deletes; i++) {
            char *l = s_line(c);
            BENCH_CHECK(strcmp(l, "DELETED") == 0, "delete answered '%s'", l);
        }
        for (long i = 0; i < k; i++) {
            char *l = s_line(c);
            unsigned long long id;
            size_t bytes;
            BENCH_CHECK(sscanf(l, "RESERVED %llu %zu", &id, &bytes) == 2,
                        "reserve answered '%s'", l);
            const char *body = s_body(c, bytes);
            if (bytes != E2E_PAYLOAD) {
                run->bad++;
            } else if (done + i >= E2E_LAT_SKIP) {
                lat[nlat++] = bench_now_ns() - e2e_payload_time(body);
            }
            ids[i] = id;
        }
        for (long i = 0; i < k; i++)
            s_printf(c, "delete %llu\r\n", ids[i]);
        pending_deletes = k;
        done += k;
    }
    s_flush(c);
    for (long i = 0; i < pending_deletes; i++) {
        char *l = s_line(c);
        BENCH_CHECK(strcmp(l, "DELETED") == 0, "delete answered '%s'", l);
    }
    run->t1 = bench_now_ns();
    e2e_percentiles(lat, nlat, &run->lat);
    close(c->fd);
    return 0;
}

int main(int argc, char **argv)
{
    s_run_t *run = e2e_shared(sizeof *run);
    run->n = bench_count("BENCH_E2E_BS_N", 150000);
    const char *pipe_env = getenv("BENCH_E2E_BS_PIPE");
    run->pipe = pipe_env && atol(pipe_env) > 0 ? atol(pipe_env) : 64;
    const char *bin = getenv("BENCH_BEANSTALKD");
    if (!bin || !*bin)
        bin = "beanstalkd";

    char port[16];
    pid_t bs = -1;
    for (int attempt = 0; attempt < 5 && bs < 0; attempt++) {
        run->port = e2e_free_port();
        BENCH_CHECK(run->port > 0, "no free port");
        snprintf(port, sizeof port, "%d", run->port);
        char *argv_bs[] = {(char *)bin, "-l", "127.0.0.1", "-p", port, NULL};
        bs = e2e_spawn(argv_bs, NULL, NULL, 0, 0);
        int fd = s_connect(run->port, 3000); /* up, and it is ours */
        if (fd < 0 || !e2e_alive(bs)) {
            /* Exited (port taken in the meantime) or never listened. */
            if (fd >= 0)
                close(fd);
            e2e_stop(bs, SIGKILL, 2000);
            bs = -1;
            continue;
        }
        close(fd);
    }
    BENCH_CHECK(bs > 0, "cannot start %s", bin);
    bench_info("beanstalkd on port %d, pipeline %ld", run->port, run->pipe);

    pid_t c = e2e_fork(s_consumer, run);
    pid_t p = e2e_fork(s_producer, run);
    int rp = e2e_wait(p, 300000);
    int rc = e2e_wait(c, 30000);
    e2e_stop(bs, SIGTERM, 5000);
    BENCH_CHECK(rp == 0 && rc == 0, "producer exit %d, consumer exit %d", rp, rc);
    BENCH_CHECK(run->bad == 0, "%ld jobs arrived damaged", run->bad);
    double secs = (double)(run->t1 - run->t0) / 1e9;
    bench_info("beanstalkd: %ld jobs in %.3f s", run->n, secs);
    bench_result("bs_rate", (double)run->n / secs / 1000.0, "k/s");
    e2e_lat_report("bs", &run->lat);
    (void)argc;
    (void)argv;
    return 0;
}
