/* itest_producer.c -- a producer process for the integration tests:
 * publishes numbered jobs to one queue, several batches in flight, and
 * appends one line per job with its confirm to a record file (format in
 * itest.h). Job ids are made here, so even a timed-out job is known.
 *
 *   itest_producer --endpoint E --queue Q --record FILE [--cluster]
 *                  [--count N | --duration-ms N] [--batch N] [--inflight N]
 *                  [--deadline-ms N] [--prefix P] [--payload-bytes N]
 *                  [--summary-only] [--rate N]
 *
 * --rate N publishes at most N jobs/s (whole batches).
 * --cluster: E is a sluice-coordinator; jobs go to the nodes it routes to.
 * --count publishes N jobs (payloads P0 .. P<N-1>); --duration-ms keeps
 * publishing new jobs for that long. Each publish waits up to --deadline-ms
 * for its confirm (a short one makes an impatient producer that moves on).
 * At the end writes "# accepted N", "# rejected N", "# duplicate N",
 * "# timeout N", "# error N" and exits 0; --summary-only writes only
 * those (for floods of millions of jobs). */
#define _GNU_SOURCE
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sluice/client.h"

#define S_MAX_BATCH 1000
#define S_MAX_FLIGHT 64

typedef struct {
    sl_chan_t *promise;
    long seq0;
    size_t n;
    uint8_t (*ids)[SL_ID_LEN];
} s_flight_t;

static const char *o_endpoint, *o_queue, *o_record, *o_prefix = "j";
static long o_count = -1, o_duration_ms = -1, o_batch = 100, o_inflight = 8;
static long o_deadline_ms = 60000, o_payload_bytes, o_rate;
static int o_summary_only, o_cluster;

static FILE *s_rec;
static long s_counts[5]; /* accepted duplicate rejected timeout error */

static int64_t s_ms(clockid_t clk)
{
    struct timespec ts;
    clock_gettime(clk, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void s_payload(char *buf, size_t cap, long seq, size_t *len)
{
    int n = snprintf(buf, cap, "%s%ld", o_prefix, seq);
    size_t want = (size_t)o_payload_bytes > (size_t)n ? (size_t)o_payload_bytes : (size_t)n;
    if (want > cap - 1)
        want = cap - 1;
    memset(buf + n, 'x', want - (size_t)n);
    buf[want] = '\0';
    *len = want;
}

static void s_collect(s_flight_t *f)
{
    void *v = NULL;
    sl_take(f->promise, &v);
    sl_chan_destroy(&f->promise);
    sl_publish_result_t *res = v;
    int64_t wall = s_ms(CLOCK_REALTIME), mono = s_ms(CLOCK_MONOTONIC);
    for (size_t i = 0; i < f->n; i++) {
        const char *st;
        int k;
        if (!res || res->status != SL_OK) {
            k = res && res->status == SL_ETIMEDOUT ? 3 : 4;
            st = k == 3 ? "timeout" : "error";
        } else {
            k = (int)res->confirms[i].status;
            st = k == SL_CONFIRM_ACCEPTED ? "accepted" : k == SL_CONFIRM_DUPLICATE ? "duplicate"
                                                                                   : "rejected";
        }
        s_counts[k]++;
        if (o_summary_only)
            continue;
        char hex[SL_ID_HEX_LEN + 1];
        fprintf(s_rec, "%s %s %ld 0 %lld %lld 0 %s%ld\n", st, sl_id_to_hex(f->ids[i], hex),
                f->seq0 + (long)i, (long long)wall, (long long)mono, o_prefix, f->seq0 + (long)i);
    }
    if (res && res->status != SL_OK && res->status != SL_ETIMEDOUT)
        fprintf(stderr, "itest_producer: publish: %s %s\n", sl_err_name(res->status), res->error);
    fflush(s_rec);
    sl_publish_result_destroy(&res);
}

static void s_usage(void)
{
    fprintf(stderr, "usage: itest_producer --endpoint E --queue Q --record FILE "
                    "[--count N | --duration-ms N] [--batch N] [--inflight N] "
                    "[--deadline-ms N] [--prefix P] [--payload-bytes N] [--summary-only] [--rate N]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"endpoint", required_argument, NULL, 'e'},    {"queue", required_argument, NULL, 'q'},
        {"record", required_argument, NULL, 'r'},
        {"cluster", no_argument, NULL, 'K'},      {"count", required_argument, NULL, 'n'},
        {"duration-ms", required_argument, NULL, 'd'}, {"batch", required_argument, NULL, 'b'},
        {"inflight", required_argument, NULL, 'i'},    {"deadline-ms", required_argument, NULL, 'D'},
        {"prefix", required_argument, NULL, 'p'},      {"payload-bytes", required_argument, NULL, 'P'},
        {"summary-only", no_argument, NULL, 'S'},
        {"rate", required_argument, NULL, 'R'},      {NULL, 0, NULL, 0},
    };
    int ch;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (ch) {
        case 'e': o_endpoint = optarg; break;
        case 'K': o_cluster = 1; break;
        case 'q': o_queue = optarg; break;
        case 'r': o_record = optarg; break;
        case 'n': o_count = atol(optarg); break;
        case 'd': o_duration_ms = atol(optarg); break;
        case 'b': o_batch = atol(optarg); break;
        case 'i': o_inflight = atol(optarg); break;
        case 'D': o_deadline_ms = atol(optarg); break;
        case 'p': o_prefix = optarg; break;
        case 'P': o_payload_bytes = atol(optarg); break;
        case 'S': o_summary_only = 1; break;
        case 'R': o_rate = atol(optarg); break;
        default: s_usage();
        }
    }
    if (!o_endpoint || !o_queue || !o_record || (o_count < 0) == (o_duration_ms < 0) ||
        o_batch < 1 || o_batch > S_MAX_BATCH || o_inflight < 1 || o_inflight > S_MAX_FLIGHT ||
        o_payload_bytes < 0 || o_payload_bytes > 65536)
        s_usage();
    s_rec = fopen(o_record, "a");
    if (!s_rec) {
        perror(o_record);
        return 1;
    }
    sl_client_opts_t co = {.heartbeat_ms = 100};
    if (o_cluster)
        co.coordinator = o_endpoint;
    else
        co.endpoint = o_endpoint;
    int err = 0;
    sl_client_t *c = sl_client_new(&co, &err);
    if (!c || sl_client_wait_connected(c, sl_deadline_ms(10000)) != SL_OK) {
        fprintf(stderr, "itest_producer: cannot reach %s: %s\n", o_endpoint, sl_err_name(err));
        return 1;
    }

    size_t cap = (size_t)o_payload_bytes + 64;
    char *payloads = malloc((size_t)o_batch * cap);
    sl_job_t *jobs = calloc((size_t)o_batch, sizeof *jobs);
    s_flight_t flight[S_MAX_FLIGHT] = {{0}};
    for (long i = 0; i < o_inflight; i++)
        flight[i].ids = malloc((size_t)o_batch * SL_ID_LEN);
    size_t head = 0, nflight = 0;
    long seq = 0;
    int64_t start = s_ms(CLOCK_MONOTONIC);
    int64_t end = o_duration_ms >= 0 ? start + o_duration_ms : 0;
    for (;;) {
        if (o_count >= 0 ? seq >= o_count : s_ms(CLOCK_MONOTONIC) >= end)
            break;
        /* --rate: job seq goes out no sooner than seq / rate after the start. */
        while (o_rate > 0 && s_ms(CLOCK_MONOTONIC) < start + seq * 1000 / o_rate)
            usleep(1000);
        if (nflight == (size_t)o_inflight) {
            s_collect(&flight[head]);
            head = (head + 1) % (size_t)o_inflight;
            nflight--;
        }
        s_flight_t *f = &flight[(head + nflight) % (size_t)o_inflight];
        size_t n = (size_t)o_batch;
        if (o_count >= 0 && (long)n > o_count - seq)
            n = (size_t)(o_count - seq);
        for (size_t i = 0; i < n; i++) {
            char *p = payloads + i * cap;
            size_t len;
            s_payload(p, cap, seq + (long)i, &len);
            sl_id_new(f->ids[i]);
            jobs[i] = (sl_job_t){.queue = o_queue, .payload = p, .payload_len = len};
            memcpy(jobs[i].id, f->ids[i], SL_ID_LEN);
        }
        f->seq0 = seq;
        f->n = n;
        f->promise = sl_client_publish_async(c, jobs, n, sl_deadline_ms(o_deadline_ms), &err);
        if (!f->promise) {
            fprintf(stderr, "itest_producer: publish_async: %s\n", sl_err_name(err));
            return 1;
        }
        nflight++;
        seq += (long)n;
    }
    while (nflight > 0) {
        s_collect(&flight[head]);
        head = (head + 1) % (size_t)o_inflight;
        nflight--;
    }
    static const char *const names[5] = {"accepted", "duplicate", "rejected", "timeout", "error"};
    for (int k = 0; k < 5; k++)
        fprintf(s_rec, "# %s %ld\n", names[k], s_counts[k]);
    fclose(s_rec);
    sl_client_destroy(&c);
    for (long i = 0; i < o_inflight; i++)
        free(flight[i].ids);
    free(payloads);
    free(jobs);
    return 0;
}
