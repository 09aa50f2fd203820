/* shared_consumers.c -- work sharing: three consumer coroutines take from
 * one buffered channel. A take removes the value, so every value reaches
 * exactly one consumer; which one depends on who is waiting first. */
#include <inttypes.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>

#include "sluice/chan.h"
#include "sluice/sched.h"

#define VALUES    60
#define CONSUMERS 3
#define BUFFER    8

#define INT_TO_VAL(i) ((void *)(intptr_t)(i))
#define VAL_TO_INT(v) ((intptr_t)(v))

typedef struct {
    int id;                     /* 1..CONSUMERS                            */
    sl_chan_t *ch;              /* borrowed; main outlives the consumers   */
    atomic_int *seen;           /* seen[v]: times value v was taken        */
    intptr_t taken;             /* written by this consumer only           */
} consumer_t;

static void *s_consumer(void *arg)
{
    consumer_t *self = arg;
    void *v;
    while (sl_take(self->ch, &v) == SL_OK) {
        intptr_t n = VAL_TO_INT(v);
        if (n >= 1 && n <= VALUES)
            atomic_fetch_add(&self->seen[n], 1);
        self->taken++;
        printf("consumer=%d value=%" PRIdPTR "\n", self->id, n);
        /* Pretend each value takes a little work, so that the others get
         * their turn instead of one consumer draining the buffer. */
        sl_sleep_ms(1);
    }
    return NULL;
}

static void *s_producer(void *arg)
{
    sl_chan_t *ch = arg;
    intptr_t put = 0;
    for (intptr_t i = 1; i <= VALUES; i++) {
        if (sl_put(ch, INT_TO_VAL(i)) != SL_OK)
            break;
        put++;
    }
    sl_chan_close(ch); /* ends every consumer's loop once drained */
    return INT_TO_VAL(put);
}

int main(void)
{
    static atomic_int seen[VALUES + 1];
    consumer_t consumers[CONSUMERS];
    sl_chan_t *done[CONSUMERS];

    sl_chan_t *ch = sl_chan_new(SL_BUF_FIXED, BUFFER);
    if (!ch) {
        fprintf(stderr, "shared_consumers: cannot create channel\n");
        return 1;
    }
    for (int i = 0; i < CONSUMERS; i++) {
        consumers[i] = (consumer_t){.id = i + 1, .ch = ch, .seen = seen};
        /* Spawned from a plain thread, so placed round-robin over the
         * workers: the consumers really do run in parallel. */
        done[i] = sl_go(s_consumer, &consumers[i]);
        if (!done[i]) {
            fprintf(stderr, "shared_consumers: cannot spawn consumer\n");
            return 1;
        }
    }
    sl_chan_t *producer = sl_go(s_producer, ch);
    if (!producer) {
        fprintf(stderr, "shared_consumers: cannot spawn producer\n");
        return 1;
    }

    void *v = INT_TO_VAL(-1);
    if (sl_take(producer, &v) != SL_OK)
        v = INT_TO_VAL(-1);
    intptr_t produced = VAL_TO_INT(v);
    sl_chan_destroy(&producer);
    /* A coroutine's result channel closes when it returns, so taking from
     * it is a join. */
    for (int i = 0; i < CONSUMERS; i++) {
        sl_take(done[i], &v);
        sl_chan_destroy(&done[i]);
    }
    int shut = sl_sched_shutdown(5000);
    sl_chan_destroy(&ch);

    intptr_t consumed = 0;
    int duplicates = 0, missing = 0;
    for (int i = 0; i < CONSUMERS; i++)
        consumed += consumers[i].taken;
    for (int n = 1; n <= VALUES; n++) {
        int k = atomic_load(&seen[n]);
        if (k == 0)
            missing++;
        else if (k > 1)
            duplicates += k - 1;
    }
    for (int i = 0; i < CONSUMERS; i++)
        printf("consumer_total consumer=%d taken=%" PRIdPTR "\n",
               consumers[i].id, consumers[i].taken);

    int ok = produced == VALUES && consumed == VALUES && duplicates == 0 &&
             missing == 0 && shut == SL_OK;
    printf("summary values=%d produced=%" PRIdPTR " consumed=%" PRIdPTR
           " consumers=%d duplicates=%d missing=%d ok=%d\n",
           VALUES, produced, consumed, CONSUMERS, duplicates, missing, ok);
    fflush(stdout);
    if (!ok) {
        fprintf(stderr, "shared_consumers: invariant failed (shutdown=%s)\n",
                sl_err_name(shut));
        return 1;
    }
    return 0;
}
