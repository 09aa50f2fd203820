/* itest_consumer.c -- a consumer process for the integration tests: takes
 * jobs of one queue from a node and appends one line per job it handled to
 * a record file (format in itest.h), so a test can tell what ran where and
 * when. It can be slow, fail every job, or hang in jobs (touching their
 * leases, as a stuck but live worker does) until it is killed.
 *
 *   itest_consumer --endpoint E --queue Q --record FILE [--cluster] [--concurrency N]
 *                  [--sleep-ms N] [--hang-after N] [--touch-ms N]
 *                  [--fail retry|perm] [--blocking] [--channel]
 *
 * --cluster: E is a sluice-coordinator; the consumer serves the nodes it is
 * assigned (with an id of its own instead of "itest").
 * --channel takes deliveries from sl_client_subscribe (credit = concurrency)
 * on one thread and acks them itself, measuring the most deliveries held at
 * once from the client's side (received, not yet acked); it writes
 * "# max_outstanding N" at exit. SIGUSR1 writes the client's counters
 * ("# delivered N", ...) and the handlers started, for diagnosis. SIGTERM or SIGINT: stop taking jobs, let
 * running ones finish, write "# handled N", exit 0. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sluice/client.h"
#include "sluice/sched.h"

static const char *o_endpoint, *o_queue, *o_record;
static int o_concurrency = 1, o_sleep_ms, o_touch_ms = 300;
static long o_hang_after = -1;
static int o_fail; /* 0 none, 1 retryable, 2 permanent */
static int o_blocking, o_channel, o_cluster;

static int s_rec_fd = -1;
static atomic_long s_started, s_handled, s_acks_issued;
static atomic_long s_max_outstanding;
static atomic_bool s_stop;
static sl_client_t *s_client;

static int64_t s_ms(clockid_t clk)
{
    struct timespec ts;
    clock_gettime(clk, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* One line, one write(2) on an O_APPEND file: lines from concurrent
 * handlers never interleave and survive a SIGKILL right after. */
static void s_record(const char *event, const sl_delivery_t *d, int64_t wall, int64_t mono)
{
    char hex[SL_ID_HEX_LEN + 1], line[256];
    sl_id_to_hex(d->id, hex);
    int n = snprintf(line, sizeof line, "%s %s %u %d %lld %lld %lld %.48s\n", event, hex,
                     d->attempt, (int)getpid(), (long long)wall, (long long)mono,
                     (long long)d->created_ms, d->payload_len ? (const char *)d->payload : "-");
    if (n > (int)sizeof line - 1) { /* truncated: keep it one line */
        n = (int)sizeof line - 1;
        line[n - 1] = '\n';
    }
    if (write(s_rec_fd, line, (size_t)n) != n) {
        fprintf(stderr, "itest_consumer: cannot write %s: %s\n", o_record, strerror(errno));
        _exit(1);
    }
}

static void s_summary(const char *key, long v)
{
    char line[96];
    int n = snprintf(line, sizeof line, "# %s %ld\n", key, v);
    if (write(s_rec_fd, line, (size_t)n) != n)
        _exit(1);
}

/* Hang in this job for ever, keeping its lease alive. */
static void s_hang(sl_client_t *c, sl_delivery_t *d)
{
    for (;;) {
        sl_sleep_ms(o_touch_ms);
        sl_client_touch(c, d, 0, sl_deadline_ms(1000));
    }
}

static int s_handler(sl_client_t *c, sl_delivery_t *d, void *arg)
{
    (void)arg;
    int64_t wall = s_ms(CLOCK_REALTIME), mono = s_ms(CLOCK_MONOTONIC);
    long n = atomic_fetch_add(&s_started, 1) + 1;
    if (o_hang_after >= 0 && n > o_hang_after) {
        s_record("hang", d, wall, mono);
        s_hang(c, d);
    }
    if (o_sleep_ms)
        sl_sleep_ms(o_sleep_ms);
    if (o_fail) {
        s_record("fail", d, wall, mono);
        sl_delivery_set_error(d, "itest_consumer always fails");
        return o_fail == 1 ? SL_JOB_RETRY : SL_JOB_FAIL;
    }
    s_record("done", d, wall, mono);
    atomic_fetch_add(&s_handled, 1);
    return SL_JOB_ACK;
}

/* Deliveries held right now, from this client's side: received from the
 * node less acks issued. s_acks_issued rises *before* each ack is handed to
 * the client, so the node cannot have seen that credit yet: the figure may
 * read low for an instant, never high. */
static void s_sample(void)
{
    sl_client_counters_t k;
    sl_client_counters(s_client, &k);
    long out = (long)k.delivered - atomic_load(&s_acks_issued);
    long max = atomic_load(&s_max_outstanding);
    while (out > max && !atomic_compare_exchange_weak(&s_max_outstanding, &max, out))
        ;
}

static void *s_sampler(void *arg)
{
    (void)arg;
    while (!atomic_load(&s_stop)) {
        s_sample();
        struct timespec ts = {0, 500000};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

static void *s_channel_loop(void *arg)
{
    sl_chan_t *ch = arg;
    void *v;
    int rc;
    while ((rc = sl_take(ch, &v)) == SL_OK) {
        sl_delivery_t *d = v;
        int64_t wall = s_ms(CLOCK_REALTIME), mono = s_ms(CLOCK_MONOTONIC);
        s_sample();
        if (o_sleep_ms)
            sl_sleep_ms(o_sleep_ms);
        s_sample();
        s_record("done", d, wall, mono);
        atomic_fetch_add(&s_handled, 1);
        atomic_fetch_add(&s_acks_issued, 1);
        sl_client_ack(s_client, &d);
    }
    return NULL;
}

static void s_usage(void)
{
    fprintf(stderr, "usage: itest_consumer --endpoint E --queue Q --record FILE "
                    "[--concurrency N] [--sleep-ms N] [--hang-after N] [--touch-ms N] "
                    "[--fail retry|perm] [--blocking] [--channel]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"endpoint", required_argument, NULL, 'e'}, {"queue", required_argument, NULL, 'q'},
        {"record", required_argument, NULL, 'r'},
        {"cluster", no_argument, NULL, 'K'},   {"concurrency", required_argument, NULL, 'c'},
        {"sleep-ms", required_argument, NULL, 's'}, {"hang-after", required_argument, NULL, 'H'},
        {"touch-ms", required_argument, NULL, 't'}, {"fail", required_argument, NULL, 'f'},
        {"blocking", no_argument, NULL, 'b'},       {"channel", no_argument, NULL, 'C'},
        {NULL, 0, NULL, 0},
    };
    int ch;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (ch) {
        case 'e': o_endpoint = optarg; break;
        case 'K': o_cluster = 1; break;
        case 'q': o_queue = optarg; break;
        case 'r': o_record = optarg; break;
        case 'c': o_concurrency = atoi(optarg); break;
        case 's': o_sleep_ms = atoi(optarg); break;
        case 'H': o_hang_after = atol(optarg); break;
        case 't': o_touch_ms = atoi(optarg); break;
        case 'f':
            o_fail = strcmp(optarg, "perm") == 0 ? 2 : strcmp(optarg, "retry") == 0 ? 1 : -1;
            if (o_fail < 0)
                s_usage();
            break;
        case 'b': o_blocking = 1; break;
        case 'C': o_channel = 1; break;
        default: s_usage();
        }
    }
    if (!o_endpoint || !o_queue || !o_record || o_concurrency < 1)
        s_usage();
    s_rec_fd = open(o_record, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (s_rec_fd < 0) {
        fprintf(stderr, "itest_consumer: cannot open %s: %s\n", o_record, strerror(errno));
        return 1;
    }

    /* SIGTERM/SIGINT go to sigwait below; every thread inherits the mask. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    sl_sched_opts_t so = {.blocking_threads = o_concurrency + 4};
    sl_sched_start(&so);

    /* In a cluster every consumer needs its own id: let the library make one. */
    sl_client_opts_t co = {.heartbeat_ms = 100};
    if (o_cluster)
        co.coordinator = o_endpoint;
    else {
        co.endpoint = o_endpoint;
        co.consumer_id = "itest";
    }
    int err = 0;
    s_client = sl_client_new(&co, &err);
    if (!s_client || sl_client_wait_connected(s_client, sl_deadline_ms(10000)) != SL_OK) {
        fprintf(stderr, "itest_consumer: cannot reach %s: %s\n", o_endpoint, sl_err_name(err));
        return 1;
    }
    pthread_t loop, sampler;
    sl_chan_t *deliveries = NULL;
    if (o_channel) {
        deliveries = sl_client_subscribe(s_client, o_queue, (uint32_t)o_concurrency, &err);
        if (!deliveries) {
            fprintf(stderr, "itest_consumer: subscribe: %s\n", sl_err_name(err));
            return 1;
        }
        pthread_create(&loop, NULL, s_channel_loop, deliveries);
        pthread_create(&sampler, NULL, s_sampler, NULL);
    } else {
        err = sl_client_consume(s_client, o_queue, (uint32_t)o_concurrency, s_handler, NULL,
                                o_blocking ? SL_CONSUME_BLOCKING : 0);
        if (err != SL_OK) {
            fprintf(stderr, "itest_consumer: consume: %s\n", sl_err_name(err));
            return 1;
        }
    }

    int sig = 0;
    while (sigwait(&sigs, &sig) == 0 && sig == SIGUSR1) {
        sl_client_counters_t k;
        sl_client_counters(s_client, &k);
        s_summary("started", atomic_load(&s_started));
        s_summary("delivered", (long)k.delivered);
        s_summary("sessions", (long)k.sessions);
        s_summary("sent", (long)k.sent);
        s_summary("received", (long)k.received);
        s_summary("stale_leases", (long)k.stale_leases);
        s_summary("node_errors", (long)k.node_errors);
    }
    sl_client_unsubscribe(s_client, o_queue, sl_deadline_ms(10000));
    if (o_channel) {
        pthread_join(loop, NULL); /* takes and acks what was already in the channel */
        atomic_store(&s_stop, true);
        pthread_join(sampler, NULL);
        sl_chan_destroy(&deliveries);
        s_summary("max_outstanding", atomic_load(&s_max_outstanding));
    }
    sl_client_destroy(&s_client);
    s_summary("handled", atomic_load(&s_handled));
    close(s_rec_fd);
    return 0;
}
