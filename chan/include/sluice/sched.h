/* sched.h -- coroutines (go blocks) on an M:N scheduler, and a pool for
 * blocking work (core.async's go and thread).
 *
 * Workers are threads, one per core by default. A coroutine is placed on
 * one worker when spawned and runs only there until it returns: it never
 * migrates, so errno and thread-local addresses cached across a park stay
 * valid. A coroutine spawned from another coroutine goes to the same worker
 * (locality: hand-offs stay on one core); one spawned from a plain thread,
 * or with SL_GO_SPREAD, goes to the next worker in round-robin order. */
#ifndef SLUICE_SCHED_H
#define SLUICE_SCHED_H

#include <stddef.h>
#include <stdint.h>

#include "sluice/chan.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    int workers;            /* worker threads; 0 = one per online CPU        */
    size_t stack_size;      /* coroutine stack bytes; 0 = 64 KiB (256 KiB
                               under sanitizers); rounded up to pages        */
    size_t max_coroutines;  /* live coroutine limit; 0 = 1,000,000           */
    int guard_pages;        /* 1 = a PROT_NONE page below each stack. Costs
                               a kernel mapping per coroutine (the kernel's
                               vm.max_map_count, 65530 by default, then caps
                               live coroutines near 32k). Default 0: stack
                               overflow is caught by a canary check instead */
    int blocking_threads;   /* sl_thread pool limit; 0 = 64                  */
} sl_sched_opts_t;

/* Start the scheduler with opts (NULL = defaults). Optional: the first
 * sl_go()/sl_thread()/callback starts it with defaults. Returns SL_OK,
 * SL_ESTATE if already running, SL_EINVAL, SL_ENOMEM or SL_ESYS. */
int sl_sched_start(const sl_sched_opts_t *opts);

/* Wait up to timeout_ms (< 0: forever) for every coroutine, blocking task
 * and queued callback operation (sl_put_cb/sl_take_cb) to finish, then
 * stop the workers. Returns SL_OK, or SL_ETIMEDOUT with the scheduler
 * still running; SL_EDEADLK when called from a scheduler thread. */
int sl_sched_shutdown(int64_t timeout_ms);

/* Number of workers (0 if not started). */
int sl_sched_workers(void);

typedef struct {
    uint64_t spawned;       /* coroutines ever spawned                       */
    uint64_t live;          /* coroutines not yet returned                   */
    uint64_t switches;      /* context switches                              */
    uint64_t blocking_live; /* sl_thread tasks queued or running             */
    size_t stack_size;      /* bytes per coroutine stack                     */
} sl_sched_stats_t;
void sl_sched_stats(sl_sched_stats_t *out);

typedef void *(*sl_go_fn)(void *arg);

enum { SL_GO_SPREAD = 1 << 0 }; /* round-robin placement even from a coroutine */

/* Spawn a coroutine running fn(arg). Returns a promise channel (caller owns
 * the reference) that receives fn's return value and is then closed, so
 * every taker sees the result. Returns NULL when out of memory or at the
 * max_coroutines limit (errno-free: see sl_go_ex for the code). */
sl_chan_t *sl_go(sl_go_fn fn, void *arg);

/* As sl_go with flags; on failure returns NULL and stores the SL_E* code in
 * *err if err is not NULL (SL_ELIMIT at max_coroutines, SL_ENOMEM, SL_ESYS).
 * If want_result is 0, no result channel is made and the return value is
 * (sl_chan_t *)1 on success: a fire-and-forget spawn. */
sl_chan_t *sl_go_ex(sl_go_fn fn, void *arg, int flags, int want_result, int *err);

/* Run fn(arg) on the blocking pool, a thread that may block freely without
 * stalling coroutines. Returns a promise channel as sl_go(). */
sl_chan_t *sl_thread(sl_go_fn fn, void *arg);

/* 1 if the caller is running inside a coroutine. */
int sl_in_coroutine(void);

/* Let other coroutines on this worker run; on a plain thread, sched_yield. */
void sl_yield(void);

/* Sleep until deadline (parks a coroutine, blocks a thread). */
void sl_sleep_until(int64_t deadline);
void sl_sleep_ms(int64_t ms);

#ifdef __cplusplus
}
#endif
#endif
