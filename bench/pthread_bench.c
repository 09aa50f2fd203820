/* pthread_bench.c -- the plain-threads baselines for bench/run: mutex and
 * condvar ping-pong, the ring.h buffer under 1:1 and 4:4 load, and
 * pthread_create + join. Same work per iteration as chan_bench.c.
 * Usage: pthread_bench pingpong|spsc|mpmc|spawn */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include "bench_util.h"
#include "ring.h"

#define RING_CAP 1024

/* --- Ping-pong: one value bounced between two threads ------------------ */

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t to_pong, to_ping;
    int full_ping, full_pong;  /* a value is waiting in that slot */
    void *slot_ping, *slot_pong;
    long n;
} pingpong_t;

static void *s_pong(void *arg)
{
    pingpong_t *pp = arg;
    for (long i = 0; i < pp->n; i++) {
        pthread_mutex_lock(&pp->mu);
        while (!pp->full_pong)
            pthread_cond_wait(&pp->to_pong, &pp->mu);
        void *v = pp->slot_pong;
        pp->full_pong = 0;
        pp->slot_ping = v;
        pp->full_ping = 1;
        pthread_cond_signal(&pp->to_ping);
        pthread_mutex_unlock(&pp->mu);
    }
    return NULL;
}

static void s_pingpong(void)
{
    long n = bench_count("BENCH_PINGPONG_THREAD_N", 20000);
    pingpong_t pp;
    memset(&pp, 0, sizeof pp);
    pthread_mutex_init(&pp.mu, NULL);
    pthread_cond_init(&pp.to_pong, NULL);
    pthread_cond_init(&pp.to_ping, NULL);
    pp.n = n;
    pthread_t t;
    BENCH_CHECK(pthread_create(&t, NULL, s_pong, &pp) == 0, "pthread_create");

    int64_t t0 = bench_now_ns();
    for (long i = 0; i < n; i++) {
        pthread_mutex_lock(&pp.mu);
        pp.slot_pong = (void *)(uintptr_t)(i + 1);
        pp.full_pong = 1;
        pthread_cond_signal(&pp.to_pong);
        while (!pp.full_ping)
            pthread_cond_wait(&pp.to_ping, &pp.mu);
        BENCH_CHECK(pp.slot_ping == (void *)(uintptr_t)(i + 1), "value lost");
        pp.full_ping = 0;
        pthread_mutex_unlock(&pp.mu);
    }
    int64_t dt = bench_now_ns() - t0;
    pthread_join(t, NULL);
    bench_info("pthread ping-pong: %ld round trips", n);
    bench_result("pingpong_rt", (double)dt / (double)n, "ns");
}

/* --- Producers and consumers on one ring ------------------------------- */

typedef struct {
    ring_t ring;
    long n;                  /* values in all                   */
    int producers;
    atomic_int producers_left;
    atomic_uint_fast64_t sum;
    atomic_long taken;
} pc_t;

typedef struct {
    pc_t *pc;
    int index;
} pc_arg_t;

static void *s_producer(void *arg)
{
    pc_arg_t *a = arg;
    pc_t *pc = a->pc;
    long lo = pc->n * a->index / pc->producers;
    long hi = pc->n * (a->index + 1) / pc->producers;
    for (long i = lo; i < hi; i++)
        BENCH_CHECK(ring_put(&pc->ring, (void *)(uintptr_t)(i + 1)) == 0, "put");
    if (atomic_fetch_sub(&pc->producers_left, 1) == 1)
        ring_close(&pc->ring);
    return NULL;
}

static void *s_consumer(void *arg)
{
    pc_t *pc = ((pc_arg_t *)arg)->pc;
    uint64_t sum = 0;
    long taken = 0;
    void *v;
    while (ring_take(&pc->ring, &v) == 0) {
        sum += (uintptr_t)v;
        taken++;
    }
    atomic_fetch_add(&pc->sum, sum);
    atomic_fetch_add(&pc->taken, taken);
    return NULL;
}

static void s_prodcons(const char *name, int producers, int consumers, long n)
{
    pc_t pc;
    memset(&pc, 0, sizeof pc);
    BENCH_CHECK(ring_init(&pc.ring, RING_CAP) == 0, "ring_init");
    pc.n = n;
    pc.producers = producers;
    atomic_store(&pc.producers_left, producers);

    pthread_t tids[64];
    pc_arg_t args[64];
    int total = producers + consumers;
    int64_t t0 = bench_now_ns();
    for (int i = 0; i < total; i++) {
        args[i].pc = &pc;
        args[i].index = i < producers ? i : i - producers;
        BENCH_CHECK(pthread_create(&tids[i], NULL,
                                   i < producers ? s_producer : s_consumer,
                                   &args[i]) == 0, "pthread_create");
    }
    for (int i = 0; i < total; i++)
        pthread_join(tids[i], NULL);
    int64_t dt = bench_now_ns() - t0;

    BENCH_CHECK(atomic_load(&pc.taken) == n, "took %ld of %ld",
                atomic_load(&pc.taken), n);
    BENCH_CHECK(atomic_load(&pc.sum) == (uint64_t)n * (uint64_t)(n + 1) / 2,
                "sum mismatch");
    ring_release(&pc.ring);
    bench_info("pthread ring(%d) %dP/%dC: %ld values", RING_CAP, producers,
               consumers, n);
    bench_result(name, (double)n / ((double)dt / 1e9) / 1e6, "Mvals/s");
}

/* --- Thread creation --------------------------------------------------- */

static void *s_trivial(void *arg)
{
    return arg;
}

static void s_spawn(void)
{
    long n = bench_count("BENCH_SPAWN_THREAD_N", 10000);
    int64_t t0 = bench_now_ns();
    for (long i = 0; i < n; i++) {
        pthread_t t;
        BENCH_CHECK(pthread_create(&t, NULL, s_trivial, NULL) == 0, "pthread_create");
        pthread_join(t, NULL);
    }
    int64_t dt = bench_now_ns() - t0;
    bench_info("pthread_create+join: %ld threads", n);
    bench_result("spawn", (double)dt / (double)n, "ns");
}

int main(int argc, char **argv)
{
    const char *w = argc > 1 ? argv[1] : "";
    if (strcmp(w, "pingpong") == 0)
        s_pingpong();
    else if (strcmp(w, "spsc") == 0)
        s_prodcons("spsc_rate", 1, 1, bench_count("BENCH_SPSC_N", 5000000));
    else if (strcmp(w, "mpmc") == 0)
        s_prodcons("mpmc_rate", 4, 4, bench_count("BENCH_MPMC_N", 4000000));
    else if (strcmp(w, "spawn") == 0)
        s_spawn();
    else {
        fprintf(stderr, "usage: %s pingpong|spsc|mpmc|spawn\n", argv[0]);
        return 2;
    }
    return 0;
}
