/* e2e_zmq.c -- the end-to-end baselines without a broker, each a producer
 * and a consumer process over tcp loopback:
 *   raw    ZeroMQ PUSH -> PULL of 256-byte messages: the transport's ceiling
 *   proto  the no-broker job path: the producer packs a sluice.v1.Job and
 *          PUSHes it, the consumer PULLs, unpacks and PUSHes back a
 *          sluice.v1.Ack, the producer counts the acks
 * Usage: e2e_zmq raw|proto  (prints RESULT lines; see docs/bench.md) */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "bench_util.h"
#include "e2e_util.h"
#include "sluice.pb-c.h"

/* What the two processes tell each other and the parent. */
typedef struct {
    atomic_int ready;                /* consumer bound: endpoints are set  */
    char jobs_ep[128], acks_ep[128]; /* consumer's PULL and (proto) PUSH   */
    long n;                          /* messages to move                   */
    int64_t t0;                      /* producer: before the first send    */
    int64_t t1;                      /* raw: last received; proto: last ack */
    long received, acked, bad;
    e2e_lat_t lat;                   /* send -> consumer receive           */
} s_run_t;

#define ZCHECK(expr) BENCH_CHECK((expr) >= 0, "%s", zmq_strerror(zmq_errno()))

static void *s_socket(void *ctx, int type)
{
    void *s = zmq_socket(ctx, type);
    BENCH_CHECK(s != NULL, "zmq_socket: %s", zmq_strerror(zmq_errno()));
    return s;
}

static void s_bind_any(void *sock, char *ep, size_t cap)
{
    ZCHECK(zmq_bind(sock, "tcp://127.0.0.1:*"));
    ZCHECK(zmq_getsockopt(sock, ZMQ_LAST_ENDPOINT, ep, &cap));
}

static void s_wait_ready(s_run_t *run)
{
    int64_t deadline = bench_now_ns() + 10 * (int64_t)1000000000;
    while (!atomic_load(&run->ready)) {
        BENCH_CHECK(bench_now_ns() < deadline, "consumer not ready in 10 s");
        e2e_sleep_ms(1);
    }
}

/* Record one latency sample (skipping the warm-up) */
static void s_sample(int64_t *lat, size_t *nlat, long i, int64_t sent_ns)
{
    if (i >= E2E_LAT_SKIP)
        lat[(*nlat)++] = bench_now_ns() - sent_ns;
}

/* --- raw: PUSH -> PULL ------------------------------------------------ */

static int s_raw_consumer(void *arg)
{
    s_run_t *run = arg;
    void *ctx = zmq_ctx_new();
    void *pull = s_socket(ctx, ZMQ_PULL);
    s_bind_any(pull, run->jobs_ep, sizeof run->jobs_ep);
    atomic_store(&run->ready, 1);

    int64_t *lat = malloc((size_t)run->n * sizeof *lat);
    BENCH_CHECK(lat != NULL, "out of memory");
    size_t nlat = 0;
    uint8_t buf[E2E_PAYLOAD + 64];
    for (long i = 0; i < run->n; i++) {
        int n = zmq_recv(pull, buf, sizeof buf, 0);
        ZCHECK(n);
        if (n != E2E_PAYLOAD || e2e_payload_seq(buf) != (uint64_t)i)
            run->bad++;
        s_sample(lat, &nlat, i, e2e_payload_time(buf));
    }
    run->t1 = bench_now_ns();
    run->received = run->n;
    e2e_percentiles(lat, nlat, &run->lat);
    free(lat);
    zmq_close(pull);
    zmq_ctx_term(ctx);
    return 0;
}

static int s_raw_producer(void *arg)
{
    s_run_t *run = arg;
    s_wait_ready(run);
    void *ctx = zmq_ctx_new();
    void *push = s_socket(ctx, ZMQ_PUSH);
    ZCHECK(zmq_connect(push, run->jobs_ep));
    uint8_t buf[E2E_PAYLOAD];
    e2e_payload_fill(buf, 0, 0);
    run->t0 = bench_now_ns();
    for (long i = 0; i < run->n; i++) {
        e2e_payload_stamp(buf, bench_now_ns(), (uint64_t)i);
        ZCHECK(zmq_send(push, buf, sizeof buf, 0));
    }
    zmq_close(push);
    zmq_ctx_term(ctx); /* lingers until everything is sent */
    return 0;
}

/* --- proto: Job -> consumer -> Ack ----------------------------------- */

static int s_proto_consumer(void *arg)
{
    s_run_t *run = arg;
    void *ctx = zmq_ctx_new();
    void *pull = s_socket(ctx, ZMQ_PULL);
    void *push = s_socket(ctx, ZMQ_PUSH);
    s_bind_any(pull, run->jobs_ep, sizeof run->jobs_ep);
    s_bind_any(push, run->acks_ep, sizeof run->acks_ep);
    atomic_store(&run->ready, 1);

    int64_t *lat = malloc((size_t)run->n * sizeof *lat);
    BENCH_CHECK(lat != NULL, "out of memory");
    size_t nlat = 0;
    uint8_t out[256];
    for (long i = 0; i < run->n; i++) {
        zmq_msg_t msg;
        zmq_msg_init(&msg);
        ZCHECK(zmq_msg_recv(&msg, pull, 0));
        Sluice__V1__Job *job =
            sluice__v1__job__unpack(NULL, zmq_msg_size(&msg), zmq_msg_data(&msg));
        BENCH_CHECK(job != NULL, "undecodable job");
        BENCH_CHECK(job->payload.len == E2E_PAYLOAD, "payload of %zu bytes",
                    job->payload.len);
        s_sample(lat, &nlat, i, e2e_payload_time(job->payload.data));

        /* The ack names the job, as a consumer's Ack names the lease. */
        Sluice__V1__Lease lease = SLUICE__V1__LEASE__INIT;
        lease.job_id = job->id;
        lease.lease_id = (uint64_t)i + 1;
        Sluice__V1__AckItem item = SLUICE__V1__ACK_ITEM__INIT;
        item.lease = &lease;
        Sluice__V1__AckItem *items[1] = {&item};
        Sluice__V1__Ack ack = SLUICE__V1__ACK__INIT;
        ack.n_items = 1;
        ack.items = items;
        size_t len = sluice__v1__ack__get_packed_size(&ack);
        BENCH_CHECK(len <= sizeof out, "ack of %zu bytes", len);
        sluice__v1__ack__pack(&ack, out);
        ZCHECK(zmq_send(push, out, len, 0));

        sluice__v1__job__free_unpacked(job, NULL);
        zmq_msg_close(&msg);
    }
    run->received = run->n;
    e2e_percentiles(lat, nlat, &run->lat);
    free(lat);
    zmq_close(pull);
    zmq_close(push);
    zmq_ctx_term(ctx);
    return 0;
}

typedef struct {
    s_run_t *run;
    void *pull;
} s_acker_t;

/* The producer's second thread: count acks while the first sends jobs. */
static void *s_count_acks(void *arg)
{
    s_acker_t *a = arg;
    long acked = 0;
    while (acked < a->run->n) {
        zmq_msg_t msg;
        zmq_msg_init(&msg);
        ZCHECK(zmq_msg_recv(&msg, a->pull, 0));
        Sluice__V1__Ack *ack =
            sluice__v1__ack__unpack(NULL, zmq_msg_size(&msg), zmq_msg_data(&msg));
        BENCH_CHECK(ack != NULL, "undecodable ack");
        acked += (long)ack->n_items;
        sluice__v1__ack__free_unpacked(ack, NULL);
        zmq_msg_close(&msg);
    }
    a->run->t1 = bench_now_ns();
    a->run->acked = acked;
    return NULL;
}

static int s_proto_producer(void *arg)
{
    s_run_t *run = arg;
    s_wait_ready(run);
    void *ctx = zmq_ctx_new();
    void *push = s_socket(ctx, ZMQ_PUSH);
    void *pull = s_socket(ctx, ZMQ_PULL);
    ZCHECK(zmq_connect(push, run->jobs_ep));
    ZCHECK(zmq_connect(pull, run->acks_ep));

    s_acker_t acker = {run, pull};
    pthread_t th;
    BENCH_CHECK(pthread_create(&th, NULL, s_count_acks, &acker) == 0, "pthread_create");

    uint8_t payload[E2E_PAYLOAD], id[16] = {0}, out[512];
    e2e_payload_fill(payload, 0, 0);
    Sluice__V1__Job job = SLUICE__V1__JOB__INIT;
    job.id.data = id;
    job.id.len = sizeof id;
    job.queue = "bench";
    job.payload.data = payload;
    job.payload.len = sizeof payload;
    struct timespec wall;
    clock_gettime(CLOCK_REALTIME, &wall);
    job.created_ms = (int64_t)wall.tv_sec * 1000 + wall.tv_nsec / 1000000;

    run->t0 = bench_now_ns();
    for (long i = 0; i < run->n; i++) {
        memcpy(id + 8, &i, sizeof i); /* a distinct id per job */
        e2e_payload_stamp(payload, bench_now_ns(), (uint64_t)i);
        size_t len = sluice__v1__job__get_packed_size(&job);
        BENCH_CHECK(len <= sizeof out, "job of %zu bytes", len);
        sluice__v1__job__pack(&job, out);
        ZCHECK(zmq_send(push, out, len, 0));
    }
    pthread_join(th, NULL);
    zmq_close(push);
    zmq_close(pull);
    zmq_ctx_term(ctx);
    return 0;
}

/* ---------------------------------------------------------------------- */

static int s_run(const char *name, long n, int (*consumer)(void *), int (*producer)(void *))
{
    s_run_t *run = e2e_shared(sizeof *run);
    run->n = n;
    pid_t c = e2e_fork(consumer, run);
    pid_t p = e2e_fork(producer, run);
    int rp = e2e_wait(p, 300000);
    int rc = e2e_wait(c, 10000);
    BENCH_CHECK(rp == 0 && rc == 0, "producer exit %d, consumer exit %d", rp, rc);
    BENCH_CHECK(run->bad == 0, "%ld messages arrived damaged or out of order", run->bad);
    double secs = (double)(run->t1 - run->t0) / 1e9;
    bench_info("%s: %ld messages in %.3f s", name, n, secs);
    char metric[64];
    snprintf(metric, sizeof metric, "%s_rate", name);
    bench_result(metric, (double)n / secs / 1000.0, "k/s");
    e2e_lat_report(name, &run->lat);
    return 0;
}

int main(int argc, char **argv)
{
    const char *w = argc > 1 ? argv[1] : "";
    if (strcmp(w, "raw") == 0)
        return s_run("zmq", bench_count("BENCH_E2E_ZMQ_N", 2000000), s_raw_consumer,
                     s_raw_producer);
    if (strcmp(w, "proto") == 0)
        return s_run("proto", bench_count("BENCH_E2E_PROTO_N", 1000000), s_proto_consumer,
                     s_proto_producer);
    fprintf(stderr, "usage: e2e_zmq raw|proto\n");
    return 2;
}
