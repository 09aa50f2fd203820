/* coro.h -- coroutine stacks and the sanitizer-aware switch between fibers.
 *
 * A fiber is anything with a machine context: a coroutine or a worker's own
 * thread stack. Switches tell AddressSanitizer and ThreadSanitizer which
 * stack is live, so they report real errors and races only. */
#ifndef SLUICE_CORO_H
#define SLUICE_CORO_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ctx.h"
#include "park.h"
#include "sluice/sched.h"

#if defined(__SANITIZE_ADDRESS__)
#define SL_ASAN 1
#endif
#if defined(__SANITIZE_THREAD__)
#define SL_TSAN 1
#endif
#if defined(__has_feature)
#if __has_feature(address_sanitizer) && !defined(SL_ASAN)
#define SL_ASAN 1
#endif
#if __has_feature(thread_sanitizer) && !defined(SL_TSAN)
#define SL_TSAN 1
#endif
#endif

typedef struct {
    sl__ctx_t ctx;
    void *lo;          /* lowest usable stack address */
    size_t size;       /* usable stack bytes          */
    void *asan_fake;   /* ASan fake-stack handle      */
    void *tsan_fiber;  /* TSan fiber handle           */
} sl__fiber_t;

struct sl__coro {
    sl__task_t task;             /* must be first: queued as a task      */
    sl__fiber_t fiber;
    sl__worker_t *worker;        /* fixed for life: coroutines never move */
    _Atomic uint32_t pstate;     /* 0 running, 1 permit, 2 parked        */
    sl_go_fn fn;
    void *arg;
    sl_chan_t *result;           /* promise for fn's result, or NULL     */
    void *map;                   /* the whole mapping (stack + this)     */
    size_t map_size;
    sl__coro_t *next_free;       /* stack cache link                     */
};

/* Map n stacks of stack_size usable bytes each, every one with its
 * coroutine record at its top, into out[]. Returns how many were made
 * (0 if the kernel refuses the mapping). */
int sl__coro_map_many(size_t stack_size, int guard_page, sl__coro_t **out, int n);

/* Unmap a coroutine's stack (and record). */
void sl__coro_unmap(sl__coro_t *co);

/* Prepare a mapped coroutine to run entry(co) from the top of its stack. */
void sl__coro_prepare(sl__coro_t *co, void (*entry)(void *));

/* Release what a finished coroutine held besides its stack (its TSan
 * fiber); called from the scheduler, never from the coroutine itself. */
void sl__coro_retire(sl__coro_t *co);

/* Abort with a clear message if the coroutine overran its stack. */
void sl__coro_check_stack(const sl__coro_t *co);

/* Switch from fiber `from` to `to`. dying: `from` never runs again. */
void sl__fiber_switch(sl__fiber_t *from, sl__fiber_t *to, bool dying);

/* Call first thing in a new fiber's entry function. */
void sl__fiber_started(sl__fiber_t *self);

/* Fill self with the calling thread's own stack (a worker's scheduler). */
void sl__fiber_of_thread(sl__fiber_t *self);

#endif
