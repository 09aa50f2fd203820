/* ring.h -- the textbook baseline: a bounded ring of void * guarded by one
 * pthread mutex and two condition variables, with close, so the channel
 * benchmarks have a plain-threads yardstick doing the same work. */
#ifndef SLUICE_BENCH_RING_H
#define SLUICE_BENCH_RING_H

#include <pthread.h>
#include <stddef.h>

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t not_empty;
    pthread_cond_t not_full;
    void **slots;
    size_t cap, head, count;
    int closed;
} ring_t;

/* Initialise an empty ring of cap slots; 0 or -1 when out of memory. */
int ring_init(ring_t *self, size_t cap);
void ring_release(ring_t *self);

/* Put v, waiting while full. 0, or -1 if the ring is closed. */
int ring_put(ring_t *self, void *v);

/* Take into *out, waiting while empty. 0, or -1 once closed and drained. */
int ring_take(ring_t *self, void **out);

/* Wake every waiter; later puts fail, takes drain then fail. */
void ring_close(ring_t *self);

#endif
