/* timer.h -- the timer service: deadlines for parked operations and the
 * channels made by sl_timeout().
 *
 * Timers live in one intrusive pairing heap served by a timer thread:
 * adding is O(1) and never allocates, removing is O(log n) amortised, so
 * a million live timers cost a million small records and nothing more. */
#ifndef SLUICE_TIMER_H
#define SLUICE_TIMER_H

#include <stdbool.h>
#include <stdint.h>

typedef struct sl__timer sl__timer_t;
struct sl__timer {
    int64_t when;                   /* absolute sl_now() nanoseconds         */
    void (*fire)(sl__timer_t *t);   /* see under_lock                        */
    void *arg;
    bool under_lock;                /* fire while holding the timer lock:
                                       the record may be on a stack that its
                                       owner frees right after cancelling   */
    /* heap links, owned by timer.c */
    sl__timer_t *child, *next, *prev;
    bool in_heap;
};

/* Arm t (when, fire, arg, under_lock set by the caller). The record must
 * stay valid until it fires or sl__timer_cancel() returns. */
void sl__timer_add(sl__timer_t *t);

/* Disarm t. Returns true if it was removed before firing. Once this
 * returns, a fire with under_lock set is finished. */
bool sl__timer_cancel(sl__timer_t *t);

/* Number of armed timers (for tests and stats). */
uint64_t sl__timer_count(void);

#endif
