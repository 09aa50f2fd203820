/* dropping_backpressure.c -- a producer that must never wait. With a
 * dropping buffer, a put into a full channel completes at once and the
 * value is discarded; the channel counts the drops (sl_chan_stats). The
 * price of never blocking is losing data, and the counts show exactly how
 * much. */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>

#include "sluice/chan.h"
#include "sluice/sched.h"

#define PRODUCE       400 /* values offered by the producer              */
#define BUFFER        8   /* dropping buffer size                        */
#define BURST         4   /* producer pauses 1 ms after each burst       */
#define CONSUMER_MS   20  /* the consumer's work per value               */
/* A put that had to wait for the consumer would take about CONSUMER_MS;
 * anything over half of that counts as blocked. */
#define BLOCKED_NS    ((int64_t)CONSUMER_MS * 1000000 / 2)

#define INT_TO_VAL(i) ((void *)(intptr_t)(i))
#define VAL_TO_INT(v) ((intptr_t)(v))

typedef struct {
    sl_chan_t *ch;        /* borrowed; main outlives both coroutines      */
    uint64_t produced;    /* puts that returned SL_OK                     */
    uint64_t blocked;     /* puts slower than BLOCKED_NS                  */
    int64_t max_put_ns;   /* slowest single put                           */
    int64_t total_put_ns; /* time spent inside sl_put                     */
    uint64_t consumed;    /* values the consumer took                     */
} state_t;

static void *s_producer(void *arg)
{
    state_t *st = arg;
    for (intptr_t i = 1; i <= PRODUCE; i++) {
        int64_t t0 = sl_now();
        int rc = sl_put(st->ch, INT_TO_VAL(i));
        int64_t dt = sl_now() - t0;
        if (rc != SL_OK)
            break;
        st->produced++;
        st->total_put_ns += dt;
        if (dt > st->max_put_ns)
            st->max_put_ns = dt;
        if (dt > BLOCKED_NS)
            st->blocked++;
        /* Pace the producer a little so the run spans many consumer
         * steps; it still outruns the consumer about 20 to 1. */
        if (i % BURST == 0)
            sl_sleep_ms(1);
    }
    sl_chan_close(st->ch);
    return NULL;
}

static void *s_consumer(void *arg)
{
    state_t *st = arg;
    void *v;
    while (sl_take(st->ch, &v) == SL_OK) {
        st->consumed++;
        printf("take value=%" PRIdPTR "\n", VAL_TO_INT(v));
        sl_sleep_ms(CONSUMER_MS); /* the slow part */
    }
    return NULL;
}

int main(void)
{
    state_t st = {0};
    st.ch = sl_chan_new(SL_BUF_DROPPING, BUFFER);
    if (!st.ch) {
        fprintf(stderr, "dropping_backpressure: cannot create channel\n");
        return 1;
    }
    sl_chan_t *consumer = sl_go(s_consumer, &st);
    sl_chan_t *producer = sl_go(s_producer, &st);
    if (!consumer || !producer) {
        fprintf(stderr, "dropping_backpressure: cannot spawn coroutines\n");
        return 1;
    }
    void *v;
    sl_take(producer, &v); /* join: result channels close on return */
    sl_take(consumer, &v);
    sl_chan_destroy(&producer);
    sl_chan_destroy(&consumer);
    int shut = sl_sched_shutdown(5000);

    sl_chan_stats_t stats;
    sl_chan_stats(st.ch, &stats);
    sl_chan_destroy(&st.ch);

    printf("chan_stats kind=dropping capacity=%zu puts=%" PRIu64 " takes=%" PRIu64
           " dropped=%" PRIu64 " count=%zu closed=%d\n",
           stats.capacity, stats.puts, stats.takes, stats.dropped, stats.count,
           (int)stats.closed);
    printf("producer max_put_us=%" PRId64 " avg_put_ns=%" PRId64
           " blocked_puts=%" PRIu64 " blocked_threshold_us=%" PRId64 "\n",
           st.max_put_ns / 1000,
           st.produced ? st.total_put_ns / (int64_t)st.produced : 0,
           st.blocked, BLOCKED_NS / 1000);

    /* Every value the producer handed over was either taken or dropped;
     * nothing is left in the buffer after the consumer drained it. */
    int ok = st.produced == PRODUCE &&
             st.produced == st.consumed + stats.dropped &&
             stats.takes == st.consumed && stats.dropped > 0 &&
             stats.count == 0 && st.blocked == 0 && shut == SL_OK;
    printf("summary produced=%" PRIu64 " consumed=%" PRIu64 " dropped=%" PRIu64
           " blocked_puts=%" PRIu64 " max_put_us=%" PRId64
           " consumer_ms=%d ok=%d\n",
           st.produced, st.consumed, stats.dropped, st.blocked,
           st.max_put_ns / 1000, CONSUMER_MS, ok);
    fflush(stdout);
    if (!ok) {
        fprintf(stderr, "dropping_backpressure: invariant failed (shutdown=%s)\n",
                sl_err_name(shut));
        return 1;
    }
    return 0;
}
