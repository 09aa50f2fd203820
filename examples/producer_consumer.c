/* producer_consumer.c -- the smallest CSP program: one coroutine puts ten
 * values on an unbuffered channel and closes it, another takes until the
 * channel reports SL_ECLOSED. Closing is how the producer says "done". */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>

#include "sluice/chan.h"
#include "sluice/sched.h"

#define COUNT 10

/* Values are void *; small integers travel inside the pointer. */
#define INT_TO_VAL(i) ((void *)(intptr_t)(i))
#define VAL_TO_INT(v) ((intptr_t)(v))

/* Put 1..COUNT, then close. Returns how many puts succeeded. */
static void *s_producer(void *arg)
{
    sl_chan_t *ch = arg;
    intptr_t put = 0;
    for (intptr_t i = 1; i <= COUNT; i++) {
        /* Unbuffered: each put parks this coroutine until the consumer
         * takes the value (a rendezvous). */
        if (sl_put(ch, INT_TO_VAL(i)) != SL_OK)
            break;
        put++;
    }
    sl_chan_close(ch);
    return INT_TO_VAL(put);
}

/* Take until the channel is closed and drained; print each value.
 * Returns how many values arrived, or -1 if they came out of order. */
static void *s_consumer(void *arg)
{
    sl_chan_t *ch = arg;
    intptr_t got = 0, in_order = 1;
    void *v;
    int rc;
    while ((rc = sl_take(ch, &v)) == SL_OK) {
        got++;
        if (VAL_TO_INT(v) != got)
            in_order = 0;
        printf("take value=%" PRIdPTR "\n", VAL_TO_INT(v));
    }
    /* The only way out of the loop should be the close. */
    printf("end status=%s after=%" PRIdPTR "\n", sl_err_name(rc), got);
    return INT_TO_VAL(rc == SL_ECLOSED && in_order ? got : -1);
}

/* Wait (blocking this plain thread) for a coroutine's result. */
static intptr_t s_join(sl_chan_t **result_p)
{
    void *v = INT_TO_VAL(-1);
    if (sl_take(*result_p, &v) != SL_OK)
        v = INT_TO_VAL(-1);
    sl_chan_destroy(result_p);
    return VAL_TO_INT(v);
}

int main(void)
{
    sl_chan_t *ch = sl_chan_new(SL_BUF_NONE, 0);
    if (!ch) {
        fprintf(stderr, "producer_consumer: cannot create channel\n");
        return 1;
    }
    /* Both coroutines borrow ch: main keeps its reference until both have
     * returned. */
    sl_chan_t *consumer = sl_go(s_consumer, ch);
    sl_chan_t *producer = sl_go(s_producer, ch);
    if (!consumer || !producer) {
        fprintf(stderr, "producer_consumer: cannot spawn coroutines\n");
        return 1;
    }
    intptr_t consumed = s_join(&consumer);
    intptr_t produced = s_join(&producer);
    int shut = sl_sched_shutdown(5000);
    sl_chan_destroy(&ch);

    int ok = produced == COUNT && consumed == COUNT && shut == SL_OK;
    printf("summary produced=%" PRIdPTR " consumed=%" PRIdPTR " ok=%d\n",
           produced, consumed, ok);
    fflush(stdout);
    if (!ok) {
        fprintf(stderr, "producer_consumer: invariant failed (produced=%" PRIdPTR
                " consumed=%" PRIdPTR " shutdown=%s)\n",
                produced, consumed, sl_err_name(shut));
        return 1;
    }
    return 0;
}
