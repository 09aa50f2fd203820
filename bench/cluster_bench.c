/* cluster_bench.c -- the cluster benchmarks for bench/run cluster: a
 * sluice-coordinator, sluice-node processes registered with it, and
 * consumer and producer processes that know only the coordinator.
 *
 *   scale     consumers whose handlers sleep 1 ms per job, 1, 2, 4, 8 and 16
 *             processes (BENCH_SCALE_LIST) against one node holding a
 *             backlog: steady ack rate and its efficiency against the ideal
 *             consumers x concurrency x 1000 jobs/s
 *   nodes     1, 2 and 3 nodes, one producer and two consumer processes
 *             (plain acks): aggregate jobs/s, and the coordinator's CPU
 *   failover  3 nodes, a paced producer and consumers; one node SIGKILLed:
 *             the time until every publish is confirmed again and until no
 *             consumer is assigned to the dead node
 *
 * The consumer and producer processes are this program again, exec'd with
 * an internal role (role-consumer, role-producer): the driver itself uses
 * client threads, so it must not fork without exec. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"
#include "e2e_util.h"
#include "sluice/client.h"
#include "sluice/sched.h"

#define QUEUE "cbench"
#define MAX_NODES 3
#define MAX_CONSUMERS 32
#define HEARTBEAT_MS 200 /* nodes and coordinator; failover target 3x this */

#define SL_CHECK(expr)                                                      \
    do {                                                                    \
        int rc_ = (expr);                                                   \
        BENCH_CHECK(rc_ == SL_OK, "%s: %s", #expr, sl_err_name(rc_));       \
    } while (0)

static const char *s_self; /* argv[0], for the roles */

/* --- The cluster ------------------------------------------------------- */

typedef struct {
    pid_t coord;
    char coord_ep[128];
    int n_nodes;
    pid_t node[MAX_NODES];
    char node_ep[MAX_NODES][128];
    sl_client_t *admin[MAX_NODES]; /* a plain client per node, for stats    */
    sl_client_t *cadmin;           /* a cluster client, for the cluster view */
    int n_consumers;
    pid_t consumer[MAX_CONSUMERS];
} s_cluster_t;

/* Start a daemon on a free port and take the endpoint from its
 * "listening <endpoint> epoch <hex>" line. */
static pid_t s_daemon(char **argv, char ep_out[128])
{
    char line[512];
    pid_t pid = e2e_spawn(argv, "listening ", line, sizeof line, 10000);
    BENCH_CHECK(pid > 0, "%s did not start", argv[0]);
    char ep[128];
    BENCH_CHECK(sscanf(line, "listening %127s", ep) == 1, "odd line '%s'", line);
    memcpy(ep_out, ep, sizeof ep);
    return pid;
}

static sl_client_t *s_client_at(const char *endpoint, const char *coordinator)
{
    sl_client_opts_t o = {.endpoint = endpoint, .coordinator = coordinator,
                          .heartbeat_ms = HEARTBEAT_MS};
    int err = 0;
    sl_client_t *c = sl_client_new(&o, &err);
    BENCH_CHECK(c != NULL, "sl_client_new: %s", sl_err_name(err));
    if (!coordinator)
        SL_CHECK(sl_client_wait_connected(c, sl_deadline_ms(10000)));
    return c;
}

static void s_cluster_start(s_cluster_t *cl, int n_nodes)
{
    memset(cl, 0, sizeof *cl);
    char hb[32], port[64];
    snprintf(hb, sizeof hb, "%dms", HEARTBEAT_MS);
    snprintf(port, sizeof port, "tcp://127.0.0.1:%d", e2e_free_port());
    char *cargv[] = {SLUICE_COORD_BIN, "--endpoint", port, "--heartbeat", hb,
                     "--log-level", "warn", NULL};
    cl->coord = s_daemon(cargv, cl->coord_ep);
    for (int i = 0; i < n_nodes; i++) {
        char id[32];
        snprintf(id, sizeof id, "bench-n%d", i);
        snprintf(port, sizeof port, "tcp://127.0.0.1:%d", e2e_free_port());
        char *nargv[] = {SLUICE_NODE_BIN, "--endpoint", port, "--coordinator", cl->coord_ep,
                         "--node-id", id, "--heartbeat", hb, "--max-length", "2000000",
                         "--max-done", "0", "--log-level", "warn", NULL};
        cl->node[i] = s_daemon(nargv, cl->node_ep[i]);
        cl->admin[i] = s_client_at(cl->node_ep[i], NULL);
    }
    cl->n_nodes = n_nodes;
    cl->cadmin = s_client_at(NULL, cl->coord_ep);
}

static void s_cluster_stop(s_cluster_t *cl)
{
    for (int i = 0; i < cl->n_consumers; i++)
        e2e_stop(cl->consumer[i], SIGKILL, 5000);
    sl_client_destroy(&cl->cadmin);
    for (int i = 0; i < cl->n_nodes; i++) {
        sl_client_destroy(&cl->admin[i]);
        if (cl->node[i] > 0)
            e2e_stop(cl->node[i], SIGKILL, 5000);
    }
    e2e_stop(cl->coord, SIGKILL, 5000);
}

/* The queue's stats summed over the live nodes. */
static sl_queue_stats_t s_totals(s_cluster_t *cl)
{
    sl_queue_stats_t t = {0};
    for (int i = 0; i < cl->n_nodes; i++) {
        if (cl->node[i] <= 0)
            continue;
        sl_queue_stats_t *st = NULL;
        size_t n = 0;
        if (sl_client_stats(cl->admin[i], QUEUE, &st, &n, sl_deadline_ms(5000)) == SL_OK &&
            n == 1) {
            t.depth += st[0].depth;
            t.in_flight += st[0].in_flight;
            t.published += st[0].published;
            t.acked += st[0].acked;
            t.consumers += st[0].consumers;
        }
        free(st);
    }
    return t;
}

/* Consumers the coordinator lists for QUEUE that have at least one node. */
static int s_assigned(s_cluster_t *cl, const char *except_node)
{
    sl_cluster_view_t view;
    if (sl_client_cluster(cl->cadmin, &view, sl_deadline_ms(5000)) != SL_OK)
        return -1;
    int n = 0;
    for (size_t i = 0; i < view.n_consumers; i++) {
        const sl_cluster_consumer_t *c = &view.consumers[i];
        if (strcmp(c->queue, QUEUE) != 0 || c->n_nodes == 0)
            continue;
        int stale = 0;
        for (size_t k = 0; except_node && k < c->n_nodes; k++)
            stale |= strcmp(c->nodes[k].node_id, except_node) == 0;
        n += !stale;
    }
    sl_cluster_view_release(&view);
    return n;
}

static void s_consumer_start(s_cluster_t *cl, int concurrency, int sleep_ms, int prefetch)
{
    BENCH_CHECK(cl->n_consumers < MAX_CONSUMERS, "too many consumers");
    char conc[16], sleep_s[16], pre[16], line[64];
    snprintf(conc, sizeof conc, "%d", concurrency);
    snprintf(sleep_s, sizeof sleep_s, "%d", sleep_ms);
    snprintf(pre, sizeof pre, "%d", prefetch);
    char *argv[] = {(char *)s_self, "role-consumer", cl->coord_ep, conc, sleep_s, pre, NULL};
    pid_t pid = e2e_spawn(argv, "ready", line, sizeof line, 10000);
    BENCH_CHECK(pid > 0, "consumer did not start");
    cl->consumer[cl->n_consumers++] = pid;
}

/* Wait for a publish's result, check every job was accepted, and free
 * the promise. */
static void s_settle(sl_chan_t **promise)
{
    void *v;
    SL_CHECK(sl_take(*promise, &v));
    sl_publish_result_t *res = v;
    BENCH_CHECK(res->status == SL_OK, "publish: %s", sl_err_name(res->status));
    sl_publish_result_destroy(&res);
    sl_chan_destroy(promise);
}

/* Publish n jobs through the coordinator from this process (the route
 * table spreads them). */
static void s_publish(s_cluster_t *cl, long n)
{
    sl_client_t *c = s_client_at(NULL, cl->coord_ep);
    enum { BATCH = 100, WINDOW = 16 };
    uint8_t payload[E2E_PAYLOAD];
    e2e_payload_fill(payload, 0, 0);
    sl_job_t jobs[BATCH];
    for (int i = 0; i < BATCH; i++)
        jobs[i] = (sl_job_t){.queue = QUEUE, .payload = payload, .payload_len = E2E_PAYLOAD};
    sl_chan_t *flight[WINDOW];
    int count = 0, head = 0;
    for (long sent = 0; sent < n;) {
        if (count == WINDOW) {
            s_settle(&flight[head]);
            head = (head + 1) % WINDOW;
            count--;
        }
        size_t b = n - sent < BATCH ? (size_t)(n - sent) : BATCH;
        int err = 0;
        sl_chan_t *p = sl_client_publish_async(c, jobs, b, sl_deadline_ms(60000), &err);
        BENCH_CHECK(p, "publish_async: %s", sl_err_name(err));
        flight[(head + count++) % WINDOW] = p;
        sent += (long)b;
    }
    while (count > 0) {
        s_settle(&flight[head]);
        head = (head + 1) % WINDOW;
        count--;
    }
    sl_client_destroy(&c);
}

/* --- Roles (exec'd) ------------------------------------------------------ */

static int s_sleep_ms;

static int s_handler(sl_client_t *client, sl_delivery_t *d, void *arg)
{
    if (s_sleep_ms > 0)
        sl_sleep_ms(s_sleep_ms);
    return SL_JOB_ACK;
}

/* role-consumer COORD CONCURRENCY SLEEP_MS PREFETCH: consume QUEUE with
 * sl_client_consume_ex handlers until killed. Credit is concurrency +
 * prefetch, so the next job is already here when a handler finishes. */
static int s_role_consumer(int argc, char **argv)
{
    BENCH_CHECK(argc == 6, "role-consumer COORD CONCURRENCY SLEEP_MS PREFETCH");
    s_sleep_ms = atoi(argv[4]);
    uint32_t conc = (uint32_t)atoi(argv[3]), prefetch = (uint32_t)atoi(argv[5]);
    /* Many consumer processes share the machine's cores: one scheduler
     * worker each is enough for a few handlers that mostly sleep. */
    sl_sched_opts_t so = {.workers = conc < 8 ? 1 : 0};
    SL_CHECK(sl_sched_start(&so));
    sl_client_t *c = s_client_at(NULL, argv[2]);
    sl_consume_opts_t co = {.concurrency = conc, .prefetch = prefetch};
    SL_CHECK(sl_client_consume_ex(c, QUEUE, &co, s_handler, NULL));
    printf("ready\n");
    fflush(stdout);
    for (;;)
        pause();
}

/* --- scale ----------------------------------------------------------------- */

static void s_bench_scale(void)
{
    const char *list = getenv("BENCH_SCALE_LIST");
    if (!list || !*list)
        list = "1 2 4 8 16";
    const int concurrency = 1, sleep_ms = 1;
    const char *pre = getenv("BENCH_SCALE_PREFETCH");
    int prefetch = pre ? atoi(pre) : 2;
    int64_t window_ms = bench_count("BENCH_SCALE_WINDOW_MS", 3000);
    char buf[128];
    snprintf(buf, sizeof buf, "%s", list);
    for (char *tok = strtok(buf, " ,"); tok; tok = strtok(NULL, " ,")) {
        int k = atoi(tok);
        if (k < 1 || k > MAX_CONSUMERS)
            continue;
        s_cluster_t cl;
        s_cluster_start(&cl, 1);
        double ideal = (double)k * concurrency * 1000.0 / sleep_ms;
        /* A backlog that lasts past warm-up and the window, at the ideal. */
        long backlog = (long)(ideal * (double)(window_ms + 2000) / 1000.0 * 1.3) + 1000;
        s_publish(&cl, backlog);
        /* The queue waits, paused, until every consumer is assigned. */
        SL_CHECK(sl_client_pause(cl.admin[0], QUEUE, sl_deadline_ms(5000)));
        for (int i = 0; i < k; i++)
            s_consumer_start(&cl, concurrency, sleep_ms, prefetch);
        int64_t end = bench_now_ns() + 30000000000LL;
        while (s_assigned(&cl, NULL) < k) {
            BENCH_CHECK(bench_now_ns() < end, "%d consumers not all assigned after 30 s", k);
            e2e_sleep_ms(20);
        }
        SL_CHECK(sl_client_resume(cl.admin[0], QUEUE, sl_deadline_ms(5000)));
        /* Warm-up: every consumer taking jobs. */
        while (s_totals(&cl).in_flight < (uint64_t)k) {
            BENCH_CHECK(bench_now_ns() < end, "%d consumers not all serving after 20 s", k);
            e2e_sleep_ms(20);
        }
        e2e_sleep_ms(500);
        sl_queue_stats_t a = s_totals(&cl);
        int64_t t0 = bench_now_ns();
        e2e_sleep_ms((int)window_ms);
        sl_queue_stats_t b = s_totals(&cl);
        int64_t t1 = bench_now_ns();
        BENCH_CHECK(b.depth > 0, "backlog ran out during the window");
        double rate = (double)(b.acked - a.acked) / ((double)(t1 - t0) / 1e9);
        char name[64];
        snprintf(name, sizeof name, "scale_%d_rate", k);
        bench_result(name, rate, "jobs/s");
        snprintf(name, sizeof name, "scale_%d_eff", k);
        bench_result(name, 100.0 * rate / ideal, "%");
        s_cluster_stop(&cl);
    }
}

/* --- nodes ------------------------------------------------------------------ */

static double s_cpu_s(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    unsigned long ut = 0, st = 0;
    /* Fields after the command: state(3) ... utime(14) stime(15). */
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static void s_bench_nodes(void)
{
    long n = bench_count("BENCH_NODES_JOBS", 300000);
    for (int k = 1; k <= MAX_NODES; k++) {
        s_cluster_t cl;
        s_cluster_start(&cl, k);
        for (int i = 0; i < 2; i++)
            s_consumer_start(&cl, 256, 0, 0);
        int64_t end = bench_now_ns() + 20000000000LL;
        while (s_assigned(&cl, NULL) < 2) {
            BENCH_CHECK(bench_now_ns() < end, "consumers not assigned after 20 s");
            e2e_sleep_ms(20);
        }
        double cpu0 = s_cpu_s(cl.coord);
        int64_t t0 = bench_now_ns();
        s_publish(&cl, n);
        end = bench_now_ns() + 120000000000LL;
        sl_queue_stats_t t;
        while ((t = s_totals(&cl)).acked < (uint64_t)n) {
            BENCH_CHECK(bench_now_ns() < end, "%llu of %ld acked after 120 s",
                        (unsigned long long)t.acked, n);
            e2e_sleep_ms(5);
        }
        int64_t t1 = bench_now_ns();
        double secs = (double)(t1 - t0) / 1e9;
        double cpu = s_cpu_s(cl.coord) - cpu0;
        char name[64];
        snprintf(name, sizeof name, "nodes_%d_rate", k);
        bench_result(name, (double)n / secs, "jobs/s");
        snprintf(name, sizeof name, "nodes_%d_coord_cpu", k);
        bench_result(name, 100.0 * cpu / secs, "%");
        s_cluster_stop(&cl);
    }
}

/* --- failover ---------------------------------------------------------------- */

/* The paced producer runs on a thread of the driver and records, per
 * publish, when it was sent and confirmed. */
typedef struct {
    const char *coord;
    long n;
    double rate;
    int64_t *sent, *done; /* ns; done 0 = not yet */
    atomic_long next;
    atomic_bool stop;
} s_paced_t;

static void *s_paced_main(void *arg)
{
    s_paced_t *p = arg;
    sl_client_t *c = s_client_at(NULL, p->coord);
    uint8_t payload[E2E_PAYLOAD];
    e2e_payload_fill(payload, 0, 0);
    enum { WINDOW = 256 };
    sl_chan_t *flight[WINDOW];
    long seq_of[WINDOW];
    int head = 0, count = 0;
    int64_t t0 = bench_now_ns(), step = (int64_t)(1e9 / p->rate);
    for (long i = 0; i < p->n && !atomic_load(&p->stop);) {
        /* Reap confirmed publishes without waiting. */
        while (count > 0) {
            /* A promise keeps its value: s_settle takes it again. */
            void *v;
            if (count < WINDOW && sl_poll(flight[head], &v) != SL_OK)
                break;
            s_settle(&flight[head]);
            p->done[seq_of[head]] = bench_now_ns();
            head = (head + 1) % WINDOW;
            count--;
        }
        int64_t now = bench_now_ns();
        if (now < t0 + i * step) {
            e2e_sleep_ms(1);
            continue;
        }
        sl_job_t j = {.queue = QUEUE, .payload = payload, .payload_len = E2E_PAYLOAD};
        int err = 0;
        p->sent[i] = now;
        sl_chan_t *pr = sl_client_publish_async(c, &j, 1, sl_deadline_ms(30000), &err);
        BENCH_CHECK(pr, "publish_async: %s", sl_err_name(err));
        seq_of[(head + count) % WINDOW] = i;
        flight[(head + count++) % WINDOW] = pr;
        atomic_store(&p->next, ++i);
    }
    while (count > 0) {
        s_settle(&flight[head]);
        p->done[seq_of[head]] = bench_now_ns();
        head = (head + 1) % WINDOW;
        count--;
    }
    sl_client_destroy(&c);
    return NULL;
}

static void s_bench_failover(void)
{
    s_cluster_t cl;
    s_cluster_start(&cl, MAX_NODES);
    for (int i = 0; i < 6; i++)
        s_consumer_start(&cl, 8, 0, 0);
    int64_t end = bench_now_ns() + 20000000000LL;
    while (s_assigned(&cl, NULL) < 6) {
        BENCH_CHECK(bench_now_ns() < end, "consumers not assigned after 20 s");
        e2e_sleep_ms(20);
    }
    s_paced_t p = {.coord = cl.coord_ep, .rate = 2000, .n = 2000 * 8};
    p.sent = calloc((size_t)p.n, sizeof *p.sent);
    p.done = calloc((size_t)p.n, sizeof *p.done);
    BENCH_CHECK(p.sent && p.done, "out of memory");
    pthread_t th;
    BENCH_CHECK(pthread_create(&th, NULL, s_paced_main, &p) == 0, "pthread_create");

    /* Let the load settle, then kill the node holding the most consumers'
     * attention: node 0. */
    e2e_sleep_ms(2000);
    int64_t killed = bench_now_ns();
    kill(cl.node[0], SIGKILL);
    e2e_wait(cl.node[0], 5000);
    cl.node[0] = -1;
    /* Consumers: until no consumer's assignment names the dead node. */
    int64_t consumers_at = 0;
    end = killed + 20000000000LL;
    while (!consumers_at && bench_now_ns() < end) {
        if (s_assigned(&cl, "bench-n0") == 6)
            consumers_at = bench_now_ns();
        else
            e2e_sleep_ms(5);
    }
    pthread_join(th, NULL);

    /* Publishes: the latest confirm of any publish that was in flight at
     * the kill or sent after it, counted from the kill or its sending. */
    int64_t worst = 0;
    for (long i = 0; i < p.n; i++) {
        if (!p.sent[i] || !p.done[i] || p.done[i] < killed)
            continue;
        int64_t from = p.sent[i] > killed ? p.sent[i] : killed;
        if (p.done[i] - from > worst)
            worst = p.done[i] - from;
    }
    bench_result("failover_publish_ms", (double)worst / 1e6, "ms");
    bench_result("failover_consumers_ms",
                 consumers_at ? (double)(consumers_at - killed) / 1e6 : -1, "ms");
    bench_result("failover_target_ms", 3.0 * HEARTBEAT_MS, "ms");
    free(p.sent);
    free(p.done);
    s_cluster_stop(&cl);
}

int main(int argc, char **argv)
{
    s_self = argv[0];
    signal(SIGPIPE, SIG_IGN);
    if (argc >= 2 && strcmp(argv[1], "role-consumer") == 0)
        return s_role_consumer(argc, argv);
    if (argc != 2) {
        fprintf(stderr, "usage: cluster_bench scale|nodes|failover\n");
        return 2;
    }
    SL_CHECK(sl_sched_start(NULL));
    if (strcmp(argv[1], "scale") == 0)
        s_bench_scale();
    else if (strcmp(argv[1], "nodes") == 0)
        s_bench_nodes();
    else if (strcmp(argv[1], "failover") == 0)
        s_bench_failover();
    else {
        fprintf(stderr, "usage: cluster_bench scale|nodes|failover\n");
        return 2;
    }
    return 0;
}
