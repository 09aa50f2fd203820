/* e2e_sluice.c -- Sluice end to end for bench/run e2e: a sluice-node child
 * on a free loopback port, a producer process publishing 256-byte jobs with
 * libsluice and a consumer process taking, running and acking them.
 *   max          publish as fast as the window allows; jobs/s from the first
 *                publish to the last ack, and publish -> handler latency
 *   consume      as max, the consumer running sl_client_consume handlers
 *   paced RATE [ack|consume]
 *                RATE k jobs/s through the explicit-ack consumer (ack, the
 *                default) or sl_client_consume handlers (consume): latency;
 *                the driver passes half of the same path's max rate
 *   flood        BENCH_FLOOD jobs into a queue bounded at 100,000 (block),
 *                the consumer starting late; the node's VmRSS over time
 * Usage: e2e_sluice max|consume|paced RATE [ack|consume]|flood
 * (see docs/bench.md) */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"
#include "e2e_util.h"
#include "sluice/client.h"
#include "sluice/sched.h"

#define QUEUE "bench"
#define MAX_LENGTH "100000" /* the node's bound, every workload */
#define MAX_WINDOW 1024

#define SL_CHECK(expr)                                                      \
    do {                                                                    \
        int rc_ = (expr);                                                   \
        BENCH_CHECK(rc_ == SL_OK, "%s", sl_err_name(rc_));                  \
    } while (0)

typedef enum { MODE_MAX, MODE_CONSUME, MODE_PACED, MODE_FLOOD } s_mode_t;

/* Shared by the parent, the producer and the consumer (mapped before fork). */
typedef struct {
    s_mode_t mode;
    int handlers;           /* the consumer runs sl_client_consume handlers  */
    char endpoint[256];
    long n;                 /* jobs                                          */
    double rate;            /* paced: jobs/s                                 */
    long batch, window;     /* jobs per publish, publishes in flight         */
    long credit;            /* consumer window                               */
    long consumer_delay_ms; /* flood: the consumer starts this much later    */
    atomic_int ready;       /* consumer subscribed                           */
    atomic_long consumed;   /* distinct jobs handled so far                  */
    int64_t t0, t1;         /* first publish; last ack                       */
    int64_t t_published;    /* last confirm                                  */
    long dups, bad;
    e2e_lat_t lat;
    /* consume mode: what the handlers share */
    atomic_long handled;
    atomic_int done;
} s_run_t;

static sl_client_t *s_client(const s_run_t *run)
{
    sl_client_opts_t o = {.endpoint = run->endpoint};
    int err = 0;
    sl_client_t *c = sl_client_new(&o, &err);
    BENCH_CHECK(c != NULL, "sl_client_new: %s", sl_err_name(err));
    SL_CHECK(sl_client_wait_connected(c, sl_deadline_ms(10000)));
    return c;
}

/* --- Producer ------------------------------------------------------------ */

/* Take the oldest publish result and check every job was accepted. */
static void s_collect(sl_chan_t **promise)
{
    void *v;
    SL_CHECK(sl_take(*promise, &v));
    sl_publish_result_t *res = v;
    BENCH_CHECK(res->status == SL_OK, "publish: %s %s", sl_err_name(res->status), res->error);
    for (size_t i = 0; i < res->n; i++)
        BENCH_CHECK(res->confirms[i].status == SL_CONFIRM_ACCEPTED, "job %s: %s",
                    res->confirms[i].status == SL_CONFIRM_DUPLICATE ? "duplicate" : "rejected",
                    res->confirms[i].reason);
    sl_publish_result_destroy(&res);
    sl_chan_destroy(promise);
}

static void s_sleep_until(int64_t t_ns)
{
    struct timespec ts = {.tv_sec = t_ns / 1000000000, .tv_nsec = t_ns % 1000000000};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
    }
}

static int s_producer(void *arg)
{
    s_run_t *run = arg;
    sl_client_t *c = s_client(run);
    while (run->mode != MODE_FLOOD && !atomic_load(&run->ready))
        e2e_sleep_ms(1);

    long batch = run->batch;
    uint8_t(*payloads)[E2E_PAYLOAD] = malloc((size_t)batch * E2E_PAYLOAD);
    sl_job_t *jobs = calloc((size_t)batch, sizeof *jobs);
    sl_chan_t *flight[MAX_WINDOW];
    BENCH_CHECK(payloads && jobs, "out of memory");
    for (long i = 0; i < batch; i++) {
        e2e_payload_fill(payloads[i], 0, 0);
        jobs[i].queue = QUEUE;
        jobs[i].payload = payloads[i];
        jobs[i].payload_len = E2E_PAYLOAD;
    }
    size_t head = 0, count = 0; /* ring of promises, oldest at head */
    int64_t interval = run->rate > 0 ? (int64_t)(1e9 * (double)batch / run->rate) : 0;

    run->t0 = bench_now_ns();
    for (long sent = 0, k = 0; sent < run->n; k++) {
        long b = run->n - sent < batch ? run->n - sent : batch;
        if (interval) {
            s_sleep_until(run->t0 + k * interval);
            /* Reap what has been confirmed without waiting. */
            while (count > 0) {
                void *v;
                sl_chan_t *p = flight[head];
                if (sl_poll(p, &v) != SL_OK)
                    break;
                /* A promise keeps its value: s_collect takes it again. */
                s_collect(&flight[head]);
                head = (head + 1) % MAX_WINDOW;
                count--;
            }
        }
        if (count == (size_t)run->window) {
            s_collect(&flight[head]);
            head = (head + 1) % MAX_WINDOW;
            count--;
        }
        int64_t now = bench_now_ns();
        for (long i = 0; i < b; i++)
            e2e_payload_stamp(payloads[i], now, (uint64_t)(sent + i));
        int err = 0;
        sl_chan_t *p = sl_client_publish_async(c, jobs, (size_t)b,
                                               sl_deadline_ms(120000), &err);
        BENCH_CHECK(p != NULL, "publish_async: %s", sl_err_name(err));
        flight[(head + count) % MAX_WINDOW] = p;
        count++;
        sent += b;
    }
    while (count > 0) {
        s_collect(&flight[head]);
        head = (head + 1) % MAX_WINDOW;
        count--;
    }
    run->t_published = bench_now_ns();
    sl_client_destroy(&c);
    free(payloads);
    free(jobs);
    return 0;
}

/* --- Consumer: a channel of deliveries, explicit acks ------------------- */

typedef struct {
    s_run_t *run;
    uint8_t *seen;    /* bitmap of sequence numbers */
    int64_t *lat;
    atomic_long nlat;
} s_tally_t;

static int s_tally_init(s_tally_t *t, s_run_t *run)
{
    t->run = run;
    t->seen = calloc((size_t)run->n / 8 + 1, 1);
    t->lat = malloc((size_t)run->n * sizeof *t->lat);
    atomic_init(&t->nlat, 0);
    BENCH_CHECK(t->seen && t->lat, "out of memory");
    return 0;
}

/* Account for one delivery; 1 if it is the first time this job is seen.
 * Safe from concurrent handlers. */
static int s_tally(s_tally_t *t, const sl_delivery_t *d, int64_t now)
{
    if (d->payload_len != E2E_PAYLOAD) {
        t->run->bad++;
        return 0;
    }
    uint64_t seq = e2e_payload_seq(d->payload);
    if (seq >= (uint64_t)t->run->n) {
        t->run->bad++;
        return 0;
    }
    uint8_t bit = (uint8_t)(1u << (seq % 8));
    if (__atomic_fetch_or(&t->seen[seq / 8], bit, __ATOMIC_RELAXED) & bit) {
        __atomic_fetch_add(&t->run->dups, 1, __ATOMIC_RELAXED);
        return 0;
    }
    if (seq >= E2E_LAT_SKIP)
        t->lat[atomic_fetch_add(&t->nlat, 1)] = now - e2e_payload_time(d->payload);
    return 1;
}

static void s_tally_finish(s_tally_t *t)
{
    e2e_percentiles(t->lat, (size_t)atomic_load(&t->nlat), &t->run->lat);
    free(t->seen);
    free(t->lat);
}

static int s_consumer(void *arg)
{
    s_run_t *run = arg;
    s_tally_t t;
    s_tally_init(&t, run);
    if (run->consumer_delay_ms > 0)
        e2e_sleep_ms((int)run->consumer_delay_ms);
    sl_client_t *c = s_client(run);
    int err = 0;
    sl_chan_t *ch = sl_client_subscribe(c, QUEUE, (uint32_t)run->credit, &err);
    BENCH_CHECK(ch != NULL, "subscribe: %s", sl_err_name(err));
    atomic_store(&run->ready, 1);

    long distinct = 0;
    while (distinct < run->n) {
        void *v;
        int rc = sl_take_until(ch, &v, sl_deadline_ms(60000));
        BENCH_CHECK(rc == SL_OK, "no delivery for 60 s after %ld jobs: %s", distinct,
                    sl_err_name(rc));
        sl_delivery_t *d = v;
        distinct += s_tally(&t, d, bench_now_ns());
        SL_CHECK(sl_client_ack(c, &d));
        if ((distinct & 1023) == 0)
            atomic_store(&run->consumed, distinct);
    }
    run->t1 = bench_now_ns();
    atomic_store(&run->consumed, distinct);
    s_tally_finish(&t);
    sl_chan_destroy(&ch);
    sl_client_destroy(&c); /* lets the last acks out */
    return 0;
}

/* --- Consumer: sl_client_consume handlers -------------------------------- */

static int s_handler(sl_client_t *client, sl_delivery_t *d, void *arg)
{
    s_tally_t *t = arg;
    if (s_tally(t, d, bench_now_ns())) {
        long h = atomic_fetch_add(&t->run->handled, 1) + 1;
        if ((h & 1023) == 0)
            atomic_store(&t->run->consumed, h);
        if (h == t->run->n) {
            t->run->t1 = bench_now_ns();
            atomic_store(&t->run->done, 1);
        }
    }
    return SL_JOB_ACK;
}

static int s_handler_consumer(void *arg)
{
    s_run_t *run = arg;
    s_tally_t t;
    s_tally_init(&t, run);
    SL_CHECK(sl_sched_start(NULL));
    sl_client_t *c = s_client(run);
    SL_CHECK(sl_client_consume(c, QUEUE, (uint32_t)run->credit, s_handler, &t, 0));
    atomic_store(&run->ready, 1);
    int64_t deadline = bench_now_ns() + (int64_t)600 * 1000000000;
    long last = -1;
    int64_t last_change = bench_now_ns();
    while (!atomic_load(&run->done)) {
        e2e_sleep_ms(1);
        long h = atomic_load(&run->handled);
        if (h != last) {
            last = h;
            last_change = bench_now_ns();
        }
        BENCH_CHECK(bench_now_ns() - last_change < (int64_t)60 * 1000000000 &&
                        bench_now_ns() < deadline,
                    "no job handled for 60 s after %ld", h);
    }
    atomic_store(&run->consumed, run->n);
    sl_client_destroy(&c); /* waits for the handlers; the last acks go out */
    s_tally_finish(&t);
    return 0;
}

/* --- Parent ------------------------------------------------------------- */

static const char *s_node_bin(void)
{
    const char *b = getenv("BENCH_NODE_BIN");
#ifdef SLUICE_NODE_BIN
    if (!b || !*b)
        b = SLUICE_NODE_BIN;
#endif
    BENCH_CHECK(b && *b, "set BENCH_NODE_BIN to the sluice-node binary");
    return b;
}

/* `perf record -g` on one process (role: node, consumer, producer) while
 * the workload runs, when BENCH_E2E_PERF names an output prefix. */
static pid_t s_perf_start(pid_t pid_of, const char *workload, const char *role)
{
    const char *prefix = getenv("BENCH_E2E_PERF");
    if (!prefix || !*prefix)
        return -1;
    char out[512], pid[16];
    snprintf(out, sizeof out, "%s.%s.%s.data", prefix, workload, role);
    snprintf(pid, sizeof pid, "%d", (int)pid_of);
    /* BENCH_E2E_PERF_CALLGRAPH=dwarf: call graphs without frame pointers. */
    const char *cg = getenv("BENCH_E2E_PERF_CALLGRAPH");
    char *argv[] = {"perf", "record", "-q", "--call-graph", (char *)(cg && *cg ? cg : "fp"),
                    "-o", out, "-p", pid, NULL};
    pid_t p = e2e_spawn(argv, NULL, NULL, 0, 0);
    e2e_sleep_ms(300); /* let it attach */
    bench_info("perf record -g on the %s -> %s", role, out);
    return p;
}

/* Sample the node while a flood runs: RSS, and the queue's depth. */
typedef struct {
    int64_t start, warm, peak, end;
    uint64_t max_depth;
    int samples;
} s_mem_t;

static void s_watch_flood(s_run_t *run, pid_t node, pid_t producer, pid_t consumer,
                          s_mem_t *m)
{
    sl_client_t *c = s_client(run); /* the parent's own: for stats */
    long warm_until = run->n / 5;   /* the first 20% of jobs is warm-up */
    int live = 2, tenth = 0;
    while (live > 0) {
        int64_t rss = e2e_rss_of(node);
        if (rss <= 0) { /* an exiting process has no VmRSS */
            e2e_sleep_ms(200);
            BENCH_CHECK(!e2e_alive(node) || (rss = e2e_rss_of(node)) > 0,
                        "cannot read the node's RSS");
        }
        if (rss <= 0) {
            int st = e2e_wait(node, 1000);
            BENCH_CHECK(0, "sluice-node died (exit status %d%s) after %ld jobs consumed", st,
                        st > 128 ? ": killed by a signal" : "", atomic_load(&run->consumed));
        }
        long consumed = atomic_load(&run->consumed);
        while (tenth < 10 && consumed >= run->n / 10 * (tenth + 1)) {
            tenth++;
            bench_info("flood %3d%% consumed: node rss %.1f MiB, queue depth <= %llu", tenth * 10,
                       (double)rss / (1024.0 * 1024.0), (unsigned long long)m->max_depth);
        }
        if (atomic_load(&run->consumed) < warm_until) {
            if (rss > m->warm)
                m->warm = rss;
        } else if (rss > m->peak) {
            m->peak = rss;
        }
        sl_queue_stats_t *qs = NULL;
        size_t nq = 0;
        if (sl_client_stats(c, QUEUE, &qs, &nq, sl_deadline_ms(1000)) == SL_OK && nq == 1 &&
            qs[0].depth > m->max_depth)
            m->max_depth = qs[0].depth;
        free(qs);
        m->samples++;
        e2e_sleep_ms(100);
        live = (producer > 0 && e2e_alive(producer)) + (consumer > 0 && e2e_alive(consumer));
    }
    sl_client_destroy(&c);
}

/* Wait for the node to have recorded every ack (acks are not confirmed to
 * the consumer), so that a lost job fails the run. */
static void s_verify(s_run_t *run)
{
    sl_client_t *c = s_client(run);
    uint64_t acked = 0;
    int64_t deadline = bench_now_ns() + (int64_t)15 * 1000000000;
    while (bench_now_ns() < deadline) {
        sl_queue_stats_t *qs = NULL;
        size_t nq = 0;
        if (sl_client_stats(c, QUEUE, &qs, &nq, sl_deadline_ms(2000)) == SL_OK && nq == 1)
            acked = qs[0].acked;
        free(qs);
        if (acked >= (uint64_t)run->n)
            break;
        e2e_sleep_ms(20);
    }
    sl_client_destroy(&c);
    BENCH_CHECK(acked >= (uint64_t)run->n, "the node recorded %llu acks of %ld jobs",
                (unsigned long long)acked, run->n);
}

static long s_env(const char *name, long def)
{
    const char *s = getenv(name);
    return s && atol(s) > 0 ? atol(s) : def;
}

int main(int argc, char **argv)
{
    const char *w = argc > 1 ? argv[1] : "";
    s_run_t *run = e2e_shared(sizeof *run);
    run->batch = s_env("BENCH_E2E_BATCH", 128);
    run->window = s_env("BENCH_E2E_WINDOW", 16);
    run->credit = s_env("BENCH_E2E_CREDIT", 1024);
    if (strcmp(w, "max") == 0) {
        run->mode = MODE_MAX;
        run->n = bench_count("BENCH_E2E_N", 1000000);
    } else if (strcmp(w, "consume") == 0) {
        run->mode = MODE_CONSUME;
        run->handlers = 1;
        run->n = bench_count("BENCH_E2E_N", 1000000);
    } else if (strcmp(w, "paced") == 0 && argc > 2 && atof(argv[2]) > 0 &&
               (argc < 4 || strcmp(argv[3], "ack") == 0 || strcmp(argv[3], "consume") == 0)) {
        run->mode = MODE_PACED;
        run->handlers = argc > 3 && strcmp(argv[3], "consume") == 0;
        run->rate = atof(argv[2]) * 1000.0;
        run->batch = s_env("BENCH_E2E_PACED_BATCH", 16);
        run->window = MAX_WINDOW;
        /* BENCH_E2E_PACED_SECS seconds of jobs at the rate; BENCH_SCALE
         * applies, as to every count. */
        const char *scale = getenv("BENCH_SCALE");
        run->n = (long)((double)s_env("BENCH_E2E_PACED_SECS", 5) * run->rate *
                        (scale && atof(scale) > 0 ? atof(scale) : 1.0));
        if (run->n < 2 * E2E_LAT_SKIP)
            run->n = 2 * E2E_LAT_SKIP;
    } else if (strcmp(w, "flood") == 0) {
        run->mode = MODE_FLOOD;
        run->n = bench_count("BENCH_FLOOD", 2000000);
        run->window = s_env("BENCH_E2E_FLOOD_WINDOW", 64);
        run->consumer_delay_ms = s_env("BENCH_FLOOD_DELAY_MS", 1000);
    } else {
        fprintf(stderr, "usage: e2e_sluice max|consume|paced RATE_K [ack|consume]|flood\n");
        return 2;
    }
    BENCH_CHECK(run->window >= 1 && run->window <= MAX_WINDOW, "window 1..%d", MAX_WINDOW);

    char line[512];
    /* BENCH_NODE_ARGS: more node options, split at spaces (for experiments). */
    char *node_argv[32] = {(char *)s_node_bin(), "--endpoint", "tcp://127.0.0.1:0",
                           "--max-length", MAX_LENGTH, "--overflow", "block",
                           "--log-level", "warn"};
    int nargs = 9;
    char *extra = getenv("BENCH_NODE_ARGS") ? strdup(getenv("BENCH_NODE_ARGS")) : NULL;
    for (char *save = NULL, *tok = extra ? strtok_r(extra, " ", &save) : NULL;
         tok && nargs < 31; tok = strtok_r(NULL, " ", &save))
        node_argv[nargs++] = tok;
    node_argv[nargs] = NULL;
    pid_t node = e2e_spawn(node_argv, "listening ", line, sizeof line, 10000);
    BENCH_CHECK(node > 0, "sluice-node did not start");
    BENCH_CHECK(sscanf(line, "listening %255s", run->endpoint) == 1, "node said '%s'", line);
    bench_info("%s: node %s, %ld jobs, batch %ld, window %ld, credit %ld%s", w,
               run->endpoint, run->n, run->batch, run->window, run->credit,
               run->mode == MODE_PACED ? " (paced)" : "");
    bench_info("%s: consumer path: %s", w,
               run->handlers ? "sl_client_consume handlers"
                             : "sl_client_subscribe + sl_client_ack (explicit ack)");
    e2e_sleep_ms(100); /* let the node settle before the RSS baseline */
    s_mem_t mem = {.start = e2e_rss_of(node)};
    pid_t perf = s_perf_start(node, w, "node");

    pid_t c = e2e_fork(run->handlers ? s_handler_consumer : s_consumer, run);
    pid_t perf_c = s_perf_start(c, w, "consumer");
    pid_t p = e2e_fork(s_producer, run);
    pid_t perf_p = s_perf_start(p, w, "producer");
    if (run->mode == MODE_FLOOD)
        s_watch_flood(run, node, p, c, &mem);
    double cpu_p = 0, cpu_c = 0, cpu_n = 0;
    int rp = e2e_wait_cpu(p, 600000, &cpu_p);
    int rc = e2e_wait_cpu(c, 60000, &cpu_c);
    pid_t perfs[] = {perf, perf_c, perf_p};
    for (int i = 0; i < 3; i++)
        if (perfs[i] > 0)
            e2e_stop(perfs[i], SIGINT, 30000);
    if (rp == 0 && rc == 0)
        s_verify(run);
    mem.end = e2e_rss_of(node);
    kill(node, SIGTERM);
    int rn = e2e_wait_cpu(node, 20000, &cpu_n);
    BENCH_CHECK(rp == 0 && rc == 0, "producer exit %d, consumer exit %d", rp, rc);
    BENCH_CHECK(run->bad == 0, "%ld jobs arrived damaged", run->bad);
    if (rn != 0)
        bench_info("sluice-node exited with %d", rn);
    if (run->dups)
        bench_info("%ld jobs delivered more than once", run->dups);

    double secs = (double)(run->t1 - run->t0) / 1e9;
    double rate = (double)run->n / secs / 1000.0;
    bench_info("%s: %ld jobs in %.3f s (publishing took %.3f s)", w, run->n, secs,
               (double)(run->t_published - run->t0) / 1e9);
    /* Where the two cores went: the whole life of each process. */
    bench_info("%s: cpu seconds: node %.2f, producer %.2f, consumer %.2f", w, cpu_n, cpu_p,
               cpu_c);
    switch (run->mode) {
    case MODE_MAX:
        bench_result("sl_rate", rate, "k/s");
        e2e_lat_report("sl", &run->lat);
        break;
    case MODE_CONSUME:
        bench_result("slc_rate", rate, "k/s");
        e2e_lat_report("slc", &run->lat);
        break;
    case MODE_PACED: {
        /* paced_*: the explicit-ack path; pacedc_*: handlers. */
        const char *pre = run->handlers ? "pacedc" : "paced";
        char name[64];
        snprintf(name, sizeof name, "%s_target", pre);
        bench_result(name, run->rate / 1000.0, "k/s");
        snprintf(name, sizeof name, "%s_rate", pre);
        bench_result(name, rate, "k/s");
        e2e_lat_report(pre, &run->lat);
        break;
    }
    case MODE_FLOOD: {
        const double mib = 1024.0 * 1024.0;
        bench_info("flood: %d samples, deepest queue %llu (bound " MAX_LENGTH ")",
                   mem.samples, (unsigned long long)mem.max_depth);
        bench_result("flood_rate", rate, "k/s");
        bench_result("flood_rss_start", (double)mem.start / mib, "MiB");
        bench_result("flood_rss_warm", (double)mem.warm / mib, "MiB");
        bench_result("flood_rss_peak", (double)mem.peak / mib, "MiB");
        bench_result("flood_rss_end", (double)mem.end / mib, "MiB");
        double growth = mem.warm > 0 && mem.peak > mem.warm
                            ? 100.0 * (double)(mem.peak - mem.warm) / (double)mem.warm
                            : 0.0;
        bench_result("flood_rss_growth", growth, "%");
        bench_result("flood_depth_max", (double)mem.max_depth, "jobs");
        break;
    }
    }
    return 0;
}
