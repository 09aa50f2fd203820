/* payments.c -- the seed payment system, across processes.
 *
 *   producer --pay.validate--> validate x1 --pay.process--> process (5 at once)
 *            --pay.notify--> notify --pay.done--> run (collects latencies)
 *
 * `payments run` starts a sluice-node and one worker process per stage (or,
 * with --nodes N, a sluice-coordinator, N nodes registered with it and N
 * worker processes per stage), publishes a stream of payments, shows a live progress line and prints a
 * summary. Invalid payments fail for good at validate; the processor
 * declines large payments (dead) and hits transient errors (retried with
 * backoff, dead when attempts run out). Each stage publishes the next step
 * before acking, with an idempotency key, so a redelivered job never
 * doubles a payment downstream. */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sluice/client.h"
#include "sluice/sched.h"

#define LIMIT_CENTS 500000 /* the processor declines payments above this */

typedef struct {
    uint64_t id;
    int64_t amount_cents;
    int64_t created_ns;    /* CLOCK_MONOTONIC: all processes share it */
    char account[24];
} payment_t;

static const char *s_endpoint;    /* a node, or with --coordinator unset */
static const char *s_coordinator; /* the cluster's coordinator, or NULL  */
static uint32_t s_fail_permille = 80; /* transient processor failures */

static int64_t s_ms(void)
{
    return sl_now() / 1000000;
}

/* --- stages ---------------------------------------------------------------- */

static int s_forward(sl_client_t *c, sl_delivery_t *d, const char *queue, const void *body,
                     size_t len)
{
    char key[64];
    const payment_t *p = d->payload;
    snprintf(key, sizeof key, "%s-%" PRIu64, queue, p->id);
    /* In a cluster the routing key sends every attempt of one step to the
     * same node, where the idempotency key can catch a second one. */
    sl_job_t job = {.queue = queue, .payload = body, .payload_len = len,
                    .idempotency_key = key, .routing_key = key, .max_attempts = 3};
    sl_confirm_t conf;
    int rc = sl_client_publish(c, &job, 1, &conf, sl_deadline_ms(30000));
    if (rc != SL_OK) {
        sl_delivery_set_error(d, sl_strerror(rc));
        return SL_JOB_RETRY;
    }
    if (conf.status == SL_CONFIRM_REJECTED) {
        sl_delivery_set_error(d, conf.reason);
        return SL_JOB_RETRY;
    }
    return SL_JOB_ACK; /* ACCEPTED, or DUPLICATE: an earlier attempt did it */
}

static int s_validate(sl_client_t *c, sl_delivery_t *d, void *arg)
{
    (void)arg;
    const payment_t *p = d->payload;
    if (d->payload_len != sizeof *p) {
        sl_delivery_set_error(d, "invalid: malformed payment");
        return SL_JOB_FAIL;
    }
    if (p->amount_cents <= 0) {
        sl_delivery_set_error(d, "invalid: amount not positive");
        return SL_JOB_FAIL;
    }
    if (!p->account[0]) {
        sl_delivery_set_error(d, "invalid: missing account");
        return SL_JOB_FAIL;
    }
    return s_forward(c, d, "pay.process", p, sizeof *p);
}

static int s_process(sl_client_t *c, sl_delivery_t *d, void *arg)
{
    (void)arg;
    const payment_t *p = d->payload;
    sl_sleep_ms(1 + (int64_t)(p->id % 3)); /* the bank takes 1-3 ms */
    if (p->amount_cents > LIMIT_CENTS) {
        sl_delivery_set_error(d, "declined: over limit");
        return SL_JOB_FAIL;
    }
    if ((uint32_t)(random() % 1000) < s_fail_permille) {
        sl_delivery_set_error(d, "bank timeout");
        return SL_JOB_RETRY;
    }
    return s_forward(c, d, "pay.notify", p, sizeof *p);
}

static int s_notify(sl_client_t *c, sl_delivery_t *d, void *arg)
{
    (void)arg;
    const payment_t *p = d->payload;
    int64_t latency_us = (sl_now() - p->created_ns) / 1000;
    uint64_t rec[2] = {p->id, (uint64_t)latency_us};
    return s_forward(c, d, "pay.done", rec, sizeof rec);
}

static volatile sig_atomic_t s_stop;
static void s_on_term(int sig)
{
    (void)sig;
    s_stop = 1;
}

static int s_worker(const char *stage)
{
    sl_handler_fn fn = !strcmp(stage, "validate") ? s_validate
                       : !strcmp(stage, "process") ? s_process
                       : !strcmp(stage, "notify")  ? s_notify
                                                   : NULL;
    if (!fn) {
        fprintf(stderr, "payments: unknown stage '%s'\n", stage);
        return 2;
    }
    char queue[32];
    snprintf(queue, sizeof queue, "pay.%s", stage);
    uint32_t conc = !strcmp(stage, "process") ? 5 : 16;
    int err = 0;
    /* Consumer ids name the stage; in a cluster each process needs its own. */
    char id[64];
    snprintf(id, sizeof id, "%s-%d", stage, (int)getpid());
    sl_client_opts_t o = {.endpoint = s_endpoint, .coordinator = s_coordinator,
                          .consumer_id = s_coordinator ? id : stage};
    sl_client_t *c = sl_client_new(&o, &err);
    if (!c) {
        fprintf(stderr, "payments %s: cannot connect: %s\n", stage, sl_strerror(err));
        return 1;
    }
    int rc = sl_client_consume(c, queue, conc, fn, NULL, 0);
    if (rc != SL_OK) {
        fprintf(stderr, "payments %s: consume: %s\n", stage, sl_strerror(rc));
        return 1;
    }
    signal(SIGTERM, s_on_term);
    while (!s_stop)
        pause();
    sl_client_unsubscribe(c, queue, sl_deadline_ms(5000));
    sl_client_destroy(&c);
    return 0;
}

/* --- the producer ------------------------------------------------------------ */

static void s_make(payment_t *p, uint64_t id)
{
    static const char *accounts[] = {"acct-ana", "acct-bia", "acct-caio", "acct-davi",
                                     "acct-eva", "acct-fabio"};
    memset(p, 0, sizeof *p);
    p->id = id;
    /* 5..305 EUR mostly; 2% are large, over the processor's limit. */
    p->amount_cents = 500 + (int64_t)(random() % 30000);
    if (random() % 100 < 2)
        p->amount_cents = LIMIT_CENTS + 100000 + (int64_t)(random() % 1000000);
    if (random() % 100 < 2)
        p->amount_cents = 0; /* invalid */
    if (random() % 100 < 1)
        p->account[0] = 0;   /* invalid */
    else
        snprintf(p->account, sizeof p->account, "%s", accounts[id % 6]);
    p->created_ns = sl_now();
}

/* Publish count payments at about rate per second, in batches. */
static int s_produce(sl_client_t *c, uint64_t count, uint64_t rate)
{
    enum { BATCH = 64 };
    payment_t ps[BATCH];
    sl_job_t jobs[BATCH];
    sl_confirm_t conf[BATCH];
    int64_t t0 = sl_now();
    for (uint64_t sent = 0; sent < count;) {
        size_t n = count - sent < BATCH ? (size_t)(count - sent) : BATCH;
        for (size_t i = 0; i < n; i++) {
            s_make(&ps[i], sent + i + 1);
            jobs[i] = (sl_job_t){.queue = "pay.validate", .payload = &ps[i],
                                 .payload_len = sizeof ps[i], .max_attempts = 3};
        }
        int rc = sl_client_publish(c, jobs, n, conf, sl_deadline_ms(60000));
        if (rc != SL_OK) {
            fprintf(stderr, "\npayments: publish: %s\n", sl_strerror(rc));
            return 1;
        }
        sent += n;
        if (rate) { /* pace to the target rate */
            int64_t due = t0 + (int64_t)(sent * 1000000000ULL / rate);
            int64_t now = sl_now();
            if (due > now)
                sl_sleep_until(due);
        }
    }
    return 0;
}

/* --- run: the whole system --------------------------------------------------- */

typedef struct {
    sl_client_t *c;
    uint64_t count, rate;
    int rc;
} producer_arg_t;

static void *s_producer_main(void *arg)
{
    producer_arg_t *a = arg;
    a->rc = s_produce(a->c, a->count, a->rate);
    return NULL;
}

typedef struct {
    sl_client_t *c;
    uint64_t want;
    _Atomic uint64_t done;
    uint64_t *lat_us;   /* by payment id */
} collector_t;

static int s_collect(sl_client_t *c, sl_delivery_t *d, void *arg)
{
    (void)c;
    collector_t *k = arg;
    const uint64_t *rec = d->payload;
    if (d->payload_len == 2 * sizeof(uint64_t) && rec[0] >= 1 && rec[0] <= k->want &&
        !k->lat_us[rec[0] - 1]) {
        k->lat_us[rec[0] - 1] = rec[1] ? rec[1] : 1;
        atomic_fetch_add(&k->done, 1);
    }
    return SL_JOB_ACK;
}

static pid_t s_spawn(char *const argv[], int out_fd)
{
    pid_t pid = fork();
    if (pid == 0) {
        if (out_fd >= 0)
            dup2(out_fd, 1);
        execv(argv[0], argv);
        fprintf(stderr, "payments: cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    return pid;
}

static int s_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static uint64_t s_stat(sl_queue_stats_t *qs, size_t n, const char *name, int field)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(qs[i].name, name))
            switch (field) {
            case 0: return qs[i].depth + qs[i].delayed;
            case 1: return qs[i].in_flight;
            case 2: return qs[i].dead;
            case 3: return qs[i].retried;
            case 4: return qs[i].acked;
            }
    return 0;
}

/* Start a daemon that announces "listening <endpoint> ..." on stdout, and
 * read that endpoint into ep (size 200). Returns its pid, or -1. */
static pid_t s_daemon(char *const argv[], char *ep)
{
    int pfd[2];
    if (pipe(pfd) != 0)
        return -1;
    pid_t pid = s_spawn(argv, pfd[1]);
    close(pfd[1]);
    FILE *out = fdopen(pfd[0], "r");
    char line[256];
    bool up = false;
    while (out && !up && fgets(line, sizeof line, out))
        up = sscanf(line, "listening %199s", ep) == 1;
    if (out)
        fclose(out); /* the daemon's later output goes nowhere */
    if (!up) {
        fprintf(stderr, "payments: %s did not start\n", argv[0]);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        return -1;
    }
    return pid;
}

#define S_MAX_NODES 8

static const char *s_redis; /* --redis URL for every node; NULL: none */

static int s_run(const char *self, const char *node_bin, const char *coord_bin, uint64_t count,
                 uint64_t rate, int nnodes)
{
    /* 1. one node on a free port; or a coordinator and nnodes nodes that
     * register with it, every client then knowing only the coordinator */
    pid_t coord = -1, nodes[S_MAX_NODES];
    char coord_ep[200] = "", node_ep[S_MAX_NODES][200];
    if (nnodes > 1) {
        char *cargv[] = {(char *)coord_bin, "--endpoint", "tcp://127.0.0.1:0", "--log-level",
                         "warn", NULL};
        if ((coord = s_daemon(cargv, coord_ep)) < 0)
            return 1;
        s_coordinator = coord_ep;
        printf("coordinator %s (pid %d)\n", coord_ep, (int)coord);
    }
    for (int i = 0; i < nnodes; i++) {
        char id[16];
        snprintf(id, sizeof id, "node%d", i + 1);
        char *nargv[20] = {(char *)node_bin, "--endpoint", "tcp://127.0.0.1:0", "--lease", "5s",
                           "--backoff-base", "20ms", "--backoff-max", "500ms", "--log-level",
                           "warn", "--node-id", id};
        int k = 13;
        if (nnodes > 1) {
            nargv[k++] = "--coordinator";
            nargv[k++] = coord_ep;
        }
        if (s_redis) { /* retries kept in Redis: they outlive a node */
            nargv[k++] = "--redis";
            nargv[k++] = (char *)s_redis;
        }
        if ((nodes[i] = s_daemon(nargv, node_ep[i])) < 0) {
            for (int k = 0; k < i; k++)
                kill(nodes[k], SIGKILL);
            if (coord > 0)
                kill(coord, SIGKILL);
            return 1;
        }
        printf("node %s (pid %d)\n", node_ep[i], (int)nodes[i]);
    }
    char *ep = node_ep[0];
    s_endpoint = nnodes > 1 ? NULL : ep;

    /* 2. one worker process per stage and node: consumers scale out with
     * the nodes, and the coordinator gives each node its own */
    const char *stages[] = {"validate", "process", "notify"};
    pid_t workers[3 * S_MAX_NODES];
    int nworkers = 0;
    for (int i = 0; i < 3; i++)
        for (int k = 0; k < nnodes; k++) {
            char *wargv[] = {(char *)self, "worker", "--stage", (char *)stages[i],
                             nnodes > 1 ? "--coordinator" : "--endpoint",
                             nnodes > 1 ? coord_ep : ep, NULL};
            workers[nworkers++] = s_spawn(wargv, -1);
        }

    /* 3. collect completions, publish, watch */
    int err = 0;
    sl_client_opts_t o = {.endpoint = s_endpoint, .coordinator = s_coordinator,
                          .consumer_id = "run"};
    sl_client_t *c = sl_client_new(&o, &err);
    collector_t k = {.c = c, .want = count, .lat_us = calloc(count, sizeof(uint64_t))};
    if (!c || !k.lat_us || sl_client_wait_connected(c, sl_deadline_ms(5000)) != SL_OK ||
        sl_client_consume(c, "pay.done", 64, s_collect, &k, 0) != SL_OK) {
        fprintf(stderr, "payments: cannot reach the %s\n", nnodes > 1 ? "cluster" : "node");
        return 1;
    }
    /* In a cluster, wait (up to 10 s) until the coordinator has assigned
     * every stage's workers and the collector, so the first payments do
     * not wait for assignments. */
    for (int64_t end = s_ms() + 10000; nnodes > 1 && s_ms() < end; sl_sleep_ms(50)) {
        sl_cluster_view_t view;
        if (sl_client_cluster(c, &view, sl_deadline_ms(1000)) != SL_OK)
            continue;
        size_t ready = 0;
        for (size_t i = 0; i < view.n_consumers; i++)
            ready += view.consumers[i].n_nodes > 0;
        sl_cluster_view_release(&view);
        if (ready >= (size_t)(3 * nnodes + 1))
            break;
    }
    printf("publishing %" PRIu64 " payments at %" PRIu64 "/s: validate -> process (5 at "
           "once) -> notify\n", count, rate);
    fflush(stdout);
    int64_t t0 = s_ms();
    producer_arg_t pa = {c, count, rate, -1};
    sl_chan_t *prod = sl_thread(s_producer_main, &pa);

    /* 4. progress until every payment is done or dead */
    uint64_t dead = 0, retried = 0, done = 0, dead_v = 0, dead_p = 0;
    int64_t last_change = s_ms();
    uint64_t last_total = 0;
    bool tty = isatty(2);
    for (;;) {
        sl_queue_stats_t *qs = NULL;
        size_t nq = 0;
        if (sl_client_stats(c, NULL, &qs, &nq, sl_deadline_ms(2000)) == SL_OK) {
            dead_v = s_stat(qs, nq, "pay.validate", 2);
            dead_p = s_stat(qs, nq, "pay.process", 2);
            dead = dead_v + dead_p + s_stat(qs, nq, "pay.notify", 2);
            retried = s_stat(qs, nq, "pay.process", 3);
            done = atomic_load(&k.done);
            double secs = (double)(s_ms() - t0) / 1000.0;
            fprintf(stderr,
                    "%s%6.1fs  validate %5" PRIu64 " queued %3" PRIu64 " busy | process %5" PRIu64
                    " queued %2" PRIu64 " busy | notify %5" PRIu64 " queued | done %6" PRIu64
                    "/%" PRIu64 "  retried %5" PRIu64 "  dead %4" PRIu64 "%s",
                    tty ? "\r" : "", secs, s_stat(qs, nq, "pay.validate", 0),
                    s_stat(qs, nq, "pay.validate", 1), s_stat(qs, nq, "pay.process", 0),
                    s_stat(qs, nq, "pay.process", 1), s_stat(qs, nq, "pay.notify", 0), done,
                    count, retried, dead, tty ? "" : "\n");
            free(qs);
        }
        if (done + dead >= count)
            break;
        if (done + dead != last_total) {
            last_total = done + dead;
            last_change = s_ms();
        } else if (s_ms() - last_change > 30000) {
            fprintf(stderr, "\npayments: no progress for 30 s; giving up\n");
            break;
        }
        sl_sleep_ms(tty ? 200 : 1000);
    }
    int64_t elapsed = s_ms() - t0;
    void *v;
    sl_take(prod, &v);
    sl_chan_destroy(&prod);
    if (tty)
        fputc('\n', stderr);

    /* 5. summary */
    uint64_t *lat = malloc((done ? done : 1) * sizeof *lat), nl = 0;
    for (uint64_t i = 0; i < count && lat; i++)
        if (k.lat_us[i])
            lat[nl++] = k.lat_us[i];
    qsort(lat, nl, sizeof *lat, s_cmp);
#define PCT(p) (nl ? (double)lat[(size_t)((double)(nl - 1) * (p))] / 1000.0 : 0.0)
    printf("summary published=%" PRIu64 " processed=%" PRIu64 " failed=%" PRIu64
           " retried=%" PRIu64 " dead=%" PRIu64 " elapsed_ms=%" PRId64
           " throughput=%.0f/s latency_ms p50=%.2f p90=%.2f p99=%.2f max=%.2f\n",
           count, done, dead, retried, dead, elapsed,
           elapsed ? (double)done * 1000.0 / (double)elapsed : 0.0, PCT(0.50), PCT(0.90),
           PCT(0.99), nl ? (double)lat[nl - 1] / 1000.0 : 0.0);
    printf("dead letters: %" PRIu64 " invalid at validate, %" PRIu64
           " declined or out of retries at process, %" PRIu64 " at notify\n",
           dead_v, dead_p, dead - dead_v - dead_p);
    free(lat);

    /* 6. stop everything */
    sl_client_unsubscribe(c, "pay.done", sl_deadline_ms(2000));
    sl_client_destroy(&c);
    for (int i = 0; i < nworkers; i++)
        kill(workers[i], SIGTERM);
    for (int i = 0; i < nworkers; i++)
        waitpid(workers[i], NULL, 0);
    for (int i = 0; i < nnodes; i++)
        kill(nodes[i], SIGTERM);
    for (int i = 0; i < nnodes; i++)
        waitpid(nodes[i], NULL, 0);
    if (coord > 0) {
        kill(coord, SIGTERM);
        waitpid(coord, NULL, 0);
    }
    free(k.lat_us);
    return pa.rc == 0 && done + dead == count ? 0 : 1;
}

static void s_usage(void)
{
    fprintf(stderr,
            "usage: payments run [--count N] [--rate PER_SEC] [--nodes N] [--node PATH]\n"
            "                    [--coordinator-bin PATH] [--redis URL]\n"
            "       payments worker --stage validate|process|notify\n"
            "                       (--endpoint EP | --coordinator EP)\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        s_usage();
        return 2;
    }
    uint64_t count = 10000, rate = 1000;
    const char *stage = NULL, *node_bin = NULL, *coord_bin = NULL;
    int nnodes = 1;
    for (int i = 2; i < argc; i += 2) { /* every option takes a value */
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) {
            fprintf(stderr, "payments: %s needs a value\n", a);
            return 2;
        }
        if (!strcmp(a, "--count"))
            count = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--rate"))
            rate = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--stage"))
            stage = v;
        else if (!strcmp(a, "--endpoint"))
            s_endpoint = v;
        else if (!strcmp(a, "--node"))
            node_bin = v;
        else if (!strcmp(a, "--coordinator"))
            s_coordinator = v;
        else if (!strcmp(a, "--coordinator-bin"))
            coord_bin = v;
        else if (!strcmp(a, "--nodes"))
            nnodes = atoi(v);
        else if (!strcmp(a, "--redis"))
            s_redis = v[0] ? v : NULL;
        else if (!strcmp(a, "--fail-permille"))
            s_fail_permille = (uint32_t)strtoul(v, NULL, 10);
        else {
            fprintf(stderr, "payments: unknown option %s\n", a);
            return 2;
        }
    }
    srandom((unsigned)getpid());
    if (!strcmp(argv[1], "worker") && stage)
        return s_worker(stage);
    if (!strcmp(argv[1], "run")) {
        if (count == 0) {
            fprintf(stderr, "payments: --count must be at least 1\n");
            return 2;
        }
        if (nnodes < 1 || nnodes > S_MAX_NODES) {
            fprintf(stderr, "payments: --nodes must be 1 to %d\n", S_MAX_NODES);
            return 2;
        }
        if (nnodes > 1 && !coord_bin && !*SLUICE_COORD_BIN) {
            fprintf(stderr, "payments: --nodes needs sluice-coordinator (--coordinator-bin)\n");
            return 2;
        }
        char self[4096];
        ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
        if (n <= 0)
            return 1;
        self[n] = 0;
        return s_run(self, node_bin ? node_bin : SLUICE_NODE_BIN,
                     coord_bin ? coord_bin : SLUICE_COORD_BIN, count, rate, nnodes);
    }
    s_usage();
    return 2;
}
