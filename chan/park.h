/* park.h -- how a waiting operation is represented and woken.
 *
 * Every operation that has to wait (put, take, alts, callback, sleep) owns
 * one sl__park_t. It links one sl__waiter_t into the wait queue of each
 * channel it waits on. Whoever completes the operation -- a peer on a
 * channel, close, the timer -- first claims the park by moving `done` from
 * 0 to 1, so exactly one completion wins; then it fills in the result and
 * calls sl__unpark() on the waker. Claim happens under the channel's lock
 * (or the timer's), which is what keeps the waiter's stack memory alive:
 * the owner unlinks its waiters under the same locks before returning. */
#ifndef SLUICE_PARK_H
#define SLUICE_PARK_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "lock.h"

typedef struct sl__coro sl__coro_t;
typedef struct sl__worker sl__worker_t;
typedef struct sl__task sl__task_t;

/* A unit the workers run: a coroutine to resume or a function to call. */
enum { SL__TASK_CORO = 1, SL__TASK_CALL = 2 };
struct sl__task {
    sl__task_t *next;
    int kind;
    void (*call)(sl__task_t *self); /* SL__TASK_CALL */
};

/* A plain thread's parking spot: 0 idle, 1 permit, 2 parked. */
typedef struct {
    _Atomic uint32_t state;
} sl__tpark_t;

enum { SL__WAKE_CORO = 1, SL__WAKE_THREAD, SL__WAKE_TASK };

typedef struct {
    _Atomic int done;   /* 0 waiting; 1 claimed (result below is final)     */
    int index;          /* committed op index; -1 when the deadline won     */
    int status;         /* SL_OK, SL_ECLOSED, SL_ETIMEDOUT                  */
    void *val;          /* the value taken, for a take                      */
    int wake_kind;      /* SL__WAKE_*                                       */
    void *who;          /* sl__coro_t *, sl__tpark_t *, or sl__task_t *      */
    sl__worker_t *worker; /* for SL__WAKE_TASK: the worker that runs it     */
} sl__park_t;

/* Status given to a claimed waiter that must run its operation again: a
 * lock-free peer on a fixed buffer won the race for the slot or value it
 * was promised. Nothing was committed, so retrying is always safe. */
#define SL__RETRY (-1000)

typedef struct sl__waiter {
    struct sl__waiter *prev, *next; /* channel wait queue links               */
    struct sl__waiter *wnext;       /* wake list of the completing operation  */
    sl__park_t *park;
    void *val;                      /* the value offered, for a put           */
    int index;                      /* op index within its alts               */
    bool linked;
} sl__waiter_t;

/* Claim p (0 -> 1). Returns true if the caller now owns completing it. */
static inline bool sl__park_claim(sl__park_t *p)
{
    int z = 0;
    return atomic_compare_exchange_strong_explicit(&p->done, &z, 1, memory_order_acq_rel,
                                                   memory_order_acquire);
}

/* Prepare p for the calling context (coroutine, plain thread). Returns
 * SL_EDEADLK on a worker thread outside a coroutine. */
int sl__park_init(sl__park_t *p);

/* Wait until p is claimed and its claimer has woken us, or deadline passes
 * and we claim p ourselves (p->index = -1, status SL_ETIMEDOUT). On return
 * p is claimed and its result final. */
void sl__park_wait(sl__park_t *p, int64_t deadline);

/* Wake the owner of a claimed park. After this the caller must not touch
 * p: its memory may already be gone. */
void sl__unpark(sl__park_t *p);

/* Run task on worker w (any thread may call). */
void sl__sched_submit(sl__worker_t *w, sl__task_t *t);

/* The worker of the calling thread, or NULL. */
sl__worker_t *sl__current_worker(void);

/* A worker for work that has no home: round-robin. Starts the scheduler
 * with defaults if needed; NULL only if it cannot start. */
sl__worker_t *sl__pick_worker(void);

#endif
