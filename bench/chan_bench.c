/* chan_bench.c -- Sluice's side of bench/run: coroutine ping-pong, 1:1 and
 * 4:4 transfer over a fixed(1024) channel (coroutines and plain threads),
 * spawn cost, and memory per parked coroutine. One workload per run; each
 * prints RESULT lines the driver compares with pthread_bench.c and go/.
 * Usage: chan_bench <workload>  (no argument lists them) */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "bench_util.h"
#include "sluice/chan.h"
#include "sluice/sched.h"

#define CHAN_CAP 1024
#define WARMUP 10000

#define SL_CHECK(expr)                                                      \
    do {                                                                    \
        int rc_ = (expr);                                                   \
        BENCH_CHECK(rc_ == SL_OK, "%s", sl_err_name(rc_));                  \
    } while (0)

static void s_sched_start(void)
{
    sl_sched_opts_t opts;
    memset(&opts, 0, sizeof opts);
    const char *w = getenv("BENCH_WORKERS");
    opts.workers = w && atoi(w) > 0 ? atoi(w) : 2; /* as GOMAXPROCS=2 */
    SL_CHECK(sl_sched_start(&opts));
}

static void s_sched_stop(void)
{
    SL_CHECK(sl_sched_shutdown(10000));
}

/* Wait for a coroutine's promise on this (plain) thread and drop it. */
static void s_join(sl_chan_t **result)
{
    BENCH_CHECK(*result != NULL, "spawn failed");
    void *v;
    SL_CHECK(sl_take(*result, &v));
    sl_chan_destroy(result);
}

/* --- 1. Ping-pong: two coroutines on one worker ------------------------ */

typedef struct {
    sl_chan_t *to_pong, *to_ping;
    long n;
    int64_t ns;
    pthread_t ping_thread, pong_thread;
} pingpong_t;

static void *s_pong(void *arg)
{
    pingpong_t *pp = arg;
    pp->pong_thread = pthread_self();
    for (long i = 0; i < WARMUP + pp->n; i++) {
        void *v;
        SL_CHECK(sl_take(pp->to_pong, &v));
        SL_CHECK(sl_put(pp->to_ping, v));
    }
    return NULL;
}

static void *s_ping(void *arg)
{
    pingpong_t *pp = arg;
    pp->ping_thread = pthread_self();
    void *v;
    for (long i = 0; i < WARMUP; i++) {
        SL_CHECK(sl_put(pp->to_pong, (void *)(uintptr_t)(i + 1)));
        SL_CHECK(sl_take(pp->to_ping, &v));
    }
    int64_t t0 = bench_now_ns();
    for (long i = 0; i < pp->n; i++) {
        SL_CHECK(sl_put(pp->to_pong, (void *)(uintptr_t)(i + 1)));
        SL_CHECK(sl_take(pp->to_ping, &v));
        BENCH_CHECK(v == (void *)(uintptr_t)(i + 1), "value lost");
    }
    pp->ns = bench_now_ns() - t0;
    return NULL;
}

/* Spawned from a coroutine, ping and pong share the parent's worker. */
static void *s_pingpong_parent(void *arg)
{
    sl_chan_t *pong = sl_go(s_pong, arg);
    sl_chan_t *ping = sl_go(s_ping, arg);
    s_join(&ping);
    s_join(&pong);
    return NULL;
}

static void s_pingpong(void)
{
    pingpong_t pp;
    memset(&pp, 0, sizeof pp);
    pp.n = bench_count("BENCH_PINGPONG_N", 1000000);
    pp.to_pong = sl_chan_new(SL_BUF_NONE, 0);
    pp.to_ping = sl_chan_new(SL_BUF_NONE, 0);
    BENCH_CHECK(pp.to_pong && pp.to_ping, "sl_chan_new");
    s_sched_start();
    sl_chan_t *parent = sl_go(s_pingpong_parent, &pp);
    s_join(&parent);
    s_sched_stop();
    BENCH_CHECK(pthread_equal(pp.ping_thread, pp.pong_thread),
                "ping and pong ran on different workers");
    sl_chan_destroy(&pp.to_pong);
    sl_chan_destroy(&pp.to_ping);
    bench_info("sluice ping-pong: %ld round trips, one worker", pp.n);
    bench_result("pingpong_rt", (double)pp.ns / (double)pp.n, "ns");
}

/* --- 2, 3. Producers and consumers on one fixed(1024) channel ---------- */

typedef struct {
    sl_chan_t *ch;
    long n;                   /* values in all */
    int producers;
    atomic_int producers_left;
    atomic_uint_fast64_t sum;
    atomic_long taken;
} pc_t;

typedef struct {
    pc_t *pc;
    int index;
    pthread_t thread;         /* where it ran: checks placement */
} pc_arg_t;

/* Each producer puts its share of 1..n; the last one to finish closes. */
static void *s_producer(void *arg)
{
    pc_arg_t *a = arg;
    pc_t *pc = a->pc;
    a->thread = pthread_self();
    long lo = pc->n * a->index / pc->producers;
    long hi = pc->n * (a->index + 1) / pc->producers;
    for (long i = lo; i < hi; i++)
        SL_CHECK(sl_put(pc->ch, (void *)(uintptr_t)(i + 1)));
    if (atomic_fetch_sub(&pc->producers_left, 1) == 1)
        sl_chan_close(pc->ch);
    return NULL;
}

static void *s_consumer(void *arg)
{
    pc_arg_t *a = arg;
    pc_t *pc = a->pc;
    a->thread = pthread_self();
    uint64_t sum = 0;
    long taken = 0;
    void *v;
    int rc;
    while ((rc = sl_take(pc->ch, &v)) == SL_OK) {
        sum += (uintptr_t)v;
        taken++;
    }
    BENCH_CHECK(rc == SL_ECLOSED, "%s", sl_err_name(rc));
    atomic_fetch_add(&pc->sum, sum);
    atomic_fetch_add(&pc->taken, taken);
    return NULL;
}

/* Where the producers and consumers run. */
typedef enum {
    PC_THREADS,  /* plain pthreads blocking in sl_put/sl_take             */
    PC_SPREAD,   /* coroutines spawned from the main thread: round-robin
                    places consecutive spawns on alternate workers        */
    PC_LOCAL     /* coroutines spawned from one parent: all on its worker */
} pc_mode_t;

typedef struct {
    pc_arg_t *args;
    int producers, total;
} pc_group_t;

/* Spawn every producer and consumer as a coroutine and wait for them all;
 * from the main thread or, for PC_LOCAL, as the parent coroutine. */
static void *s_pc_run(void *arg)
{
    pc_group_t *g = arg;
    sl_chan_t *results[64];
    for (int i = 0; i < g->total; i++)
        results[i] = sl_go(i < g->producers ? s_producer : s_consumer,
                           &g->args[i]);
    for (int i = 0; i < g->total; i++)
        s_join(&results[i]);
    return NULL;
}

static void s_prodcons(const char *name, int producers, int consumers,
                       long n, pc_mode_t mode)
{
    pc_t pc;
    memset(&pc, 0, sizeof pc);
    pc.ch = sl_chan_new(SL_BUF_FIXED, CHAN_CAP);
    BENCH_CHECK(pc.ch != NULL, "sl_chan_new");
    pc.n = n;
    pc.producers = producers;
    atomic_store(&pc.producers_left, producers);
    int total = producers + consumers;
    pc_arg_t args[64];
    pthread_t tids[64];
    for (int i = 0; i < total; i++) {
        args[i].pc = &pc;
        args[i].index = i < producers ? i : i - producers;
    }
    pc_group_t group = { args, producers, total };
    if (mode != PC_THREADS)
        s_sched_start();

    int64_t t0 = bench_now_ns();
    if (mode == PC_THREADS) {
        for (int i = 0; i < total; i++)
            BENCH_CHECK(pthread_create(&tids[i], NULL, i < producers ?
                                       s_producer : s_consumer, &args[i]) == 0,
                        "pthread_create");
        for (int i = 0; i < total; i++)
            pthread_join(tids[i], NULL);
    } else if (mode == PC_SPREAD) {
        s_pc_run(&group);
    } else {
        sl_chan_t *parent = sl_go(s_pc_run, &group);
        s_join(&parent);
    }
    int64_t dt = bench_now_ns() - t0;

    if (mode != PC_THREADS)
        s_sched_stop();
    BENCH_CHECK(atomic_load(&pc.taken) == n, "took %ld of %ld",
                atomic_load(&pc.taken), n);
    BENCH_CHECK(atomic_load(&pc.sum) == (uint64_t)n * (uint64_t)(n + 1) / 2,
                "sum mismatch");
    if (mode == PC_SPREAD && producers == 1 && consumers == 1)
        BENCH_CHECK(!pthread_equal(args[0].thread, args[1].thread),
                    "producer and consumer ran on the same worker");
    if (mode == PC_LOCAL)
        for (int i = 1; i < total; i++)
            BENCH_CHECK(pthread_equal(args[0].thread, args[i].thread),
                        "coroutines of one parent ran on different workers");
    sl_chan_destroy(&pc.ch);
    static const char *mode_names[] = { "pthreads", "coroutines on 2 workers",
                                        "coroutines on 1 worker" };
    bench_info("sluice fixed(%d) %dP/%dC %s: %ld values", CHAN_CAP, producers,
               consumers, mode_names[mode], n);
    bench_result(name, (double)n / ((double)dt / 1e9) / 1e6, "Mvals/s");
}

/* --- 4. Spawn cost ----------------------------------------------------- */

typedef struct {
    long n;
    atomic_long done;
    sl_chan_t *finished;      /* closed by the last coroutine to finish */
    long retries;             /* spawns refused at max_coroutines */
} spawn_t;

static void *s_trivial(void *arg)
{
    spawn_t *sp = arg;
    if (atomic_fetch_add(&sp->done, 1) + 1 == sp->n)
        sl_chan_close(sp->finished);
    return NULL;
}

/* Fire-and-forget spawns; at the live-coroutine limit, yield and retry. */
static void s_spawn_all(spawn_t *sp)
{
    for (long i = 0; i < sp->n; i++) {
        int err = SL_OK;
        while (sl_go_ex(s_trivial, sp, 0, 0, &err) == NULL) {
            BENCH_CHECK(err == SL_ELIMIT, "%s", sl_err_name(err));
            sp->retries++;
            sl_yield();
        }
    }
}

static void *s_spawner(void *arg)
{
    s_spawn_all(arg);
    return NULL;
}

/* from_coroutine = 0: the main thread spawns (round-robin over workers);
 * 1: one coroutine spawns them all (they stay on its worker). */
static void s_spawn_ff(int from_coroutine)
{
    spawn_t sp;
    memset(&sp, 0, sizeof sp);
    /* From a coroutine the spawner runs until it parks, so all n are live
     * at once: a smaller default keeps memory and time in bounds. */
    sp.n = from_coroutine ? bench_count("BENCH_SPAWN_CORO_N", 100000)
                          : bench_count("BENCH_SPAWN_N", 1000000);
    sp.finished = sl_chan_new(SL_BUF_NONE, 0);
    BENCH_CHECK(sp.finished != NULL, "sl_chan_new");
    s_sched_start();

    int64_t t0 = bench_now_ns();
    sl_chan_t *spawner = NULL;
    if (from_coroutine)
        spawner = sl_go(s_spawner, &sp);
    else
        s_spawn_all(&sp);
    void *v;
    int rc = sl_take(sp.finished, &v);
    int64_t dt = bench_now_ns() - t0;

    BENCH_CHECK(rc == SL_ECLOSED, "%s", sl_err_name(rc));
    if (spawner)
        s_join(&spawner);
    s_sched_stop();
    sl_chan_destroy(&sp.finished);
    bench_info("sluice spawn fire-and-forget from %s: %ld coroutines, %ld "
               "retries at the limit", from_coroutine ? "a coroutine" :
               "the main thread", sp.n, sp.retries);
    bench_result(from_coroutine ? "spawn_ff_coro" : "spawn_ff",
                 (double)dt / (double)sp.n, "ns");
}

static void *s_return(void *arg)
{
    return arg;
}

/* Spawn with a result promise each, taking the oldest once 1024 are out. */
static void s_spawn_result(void)
{
    enum { WINDOW = 1024 };
    long n = bench_count("BENCH_SPAWN_N", 1000000);
    static sl_chan_t *ring[WINDOW];
    long retries = 0;
    s_sched_start();

    int64_t t0 = bench_now_ns();
    for (long i = 0; i < n; i++) {
        if (i >= WINDOW)
            s_join(&ring[i % WINDOW]);
        int err = SL_OK;
        while ((ring[i % WINDOW] = sl_go_ex(s_return, NULL, 0, 1, &err)) == NULL) {
            BENCH_CHECK(err == SL_ELIMIT, "%s", sl_err_name(err));
            retries++;
            sched_yield();
        }
    }
    for (long i = n > WINDOW ? n - WINDOW : 0; i < n; i++)
        s_join(&ring[i % WINDOW]);
    int64_t dt = bench_now_ns() - t0;

    s_sched_stop();
    bench_info("sluice spawn with result promise: %ld coroutines, %ld retries",
               n, retries);
    bench_result("spawn_result", (double)dt / (double)n, "ns");
}

/* --- 5. Memory per parked coroutine ------------------------------------ */

typedef struct {
    sl_chan_t *gate;          /* everyone parks taking from this */
    spawn_t sp;               /* counts finishers, closes sp.finished */
} parked_t;

static void *s_park(void *arg)
{
    parked_t *pk = arg;
    void *v;
    int rc = sl_take(pk->gate, &v);
    BENCH_CHECK(rc == SL_ECLOSED, "%s", sl_err_name(rc));
    return s_trivial(&pk->sp);
}

static void s_parked_mem(void)
{
    parked_t pk;
    memset(&pk, 0, sizeof pk);
    long n = bench_count("BENCH_PARKED_N", 100000);
    pk.sp.n = n;
    pk.gate = sl_chan_new(SL_BUF_NONE, 0);
    pk.sp.finished = sl_chan_new(SL_BUF_NONE, 0);
    BENCH_CHECK(pk.gate && pk.sp.finished, "sl_chan_new");
    sl_chan_set_max_pending(pk.gate, (size_t)n + 1);
    s_sched_start();
    /* Warm the workers up so their own start-up is not counted. */
    sl_chan_t *warm = sl_go(s_return, NULL);
    s_join(&warm);

    int64_t rss0 = bench_rss_bytes();
    for (long i = 0; i < n; i++) {
        int err = SL_OK;
        BENCH_CHECK(sl_go_ex(s_park, &pk, 0, 0, &err) != NULL, "spawn %ld: %s",
                    i, sl_err_name(err));
    }
    sl_chan_stats_t st;
    int64_t deadline = bench_now_ns() + 60 * (int64_t)1000000000;
    do {
        usleep(1000);
        sl_chan_stats(pk.gate, &st);
    } while (st.pending_takes < (size_t)n && bench_now_ns() < deadline);
    BENCH_CHECK(st.pending_takes == (size_t)n, "only %zu of %ld parked",
                st.pending_takes, n);
    int64_t rss1 = bench_rss_bytes();

    sl_chan_close(pk.gate);
    void *v;
    int rc = sl_take(pk.sp.finished, &v);
    BENCH_CHECK(rc == SL_ECLOSED, "%s", sl_err_name(rc));
    sl_sched_stats_t ss;
    sl_sched_stats(&ss);
    s_sched_stop();
    sl_chan_destroy(&pk.gate);
    sl_chan_destroy(&pk.sp.finished);

    int64_t delta = rss1 - rss0;
    bench_info("sluice parked: %ld coroutines, RSS delta %lld B, stack %zu B",
               n, (long long)delta, ss.stack_size);
    bench_result("parked_mem", (double)delta / (double)n / 1024, "KiB");
    bench_result("parked_total", (double)delta / (1024 * 1024), "MiB");
}

int main(int argc, char **argv)
{
    const char *w = argc > 1 ? argv[1] : "";
    long spsc_n = bench_count("BENCH_SPSC_N", 5000000);
    long mpmc_n = bench_count("BENCH_MPMC_N", 4000000);
    if (strcmp(w, "pingpong") == 0)
        s_pingpong();
    else if (strcmp(w, "spsc_coro") == 0)
        s_prodcons("spsc_rate", 1, 1, spsc_n, PC_SPREAD);
    else if (strcmp(w, "spsc_local") == 0)
        s_prodcons("spsc_rate", 1, 1, spsc_n, PC_LOCAL);
    else if (strcmp(w, "spsc_thread") == 0)
        s_prodcons("spsc_rate", 1, 1, spsc_n, PC_THREADS);
    else if (strcmp(w, "mpmc_coro") == 0)
        s_prodcons("mpmc_rate", 4, 4, mpmc_n, PC_SPREAD);
    else if (strcmp(w, "mpmc_thread") == 0)
        s_prodcons("mpmc_rate", 4, 4, mpmc_n, PC_THREADS);
    else if (strcmp(w, "spawn_ff") == 0)
        s_spawn_ff(0);
    else if (strcmp(w, "spawn_ff_coro") == 0)
        s_spawn_ff(1);
    else if (strcmp(w, "spawn_result") == 0)
        s_spawn_result();
    else if (strcmp(w, "parked") == 0)
        s_parked_mem();
    else {
        fprintf(stderr, "usage: %s pingpong|spsc_coro|spsc_local|spsc_thread|mpmc_coro|"
                "mpmc_thread|spawn_ff|spawn_ff_coro|spawn_result|parked\n",
                argv[0]);
        return 2;
    }
    return 0;
}
