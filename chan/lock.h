/* lock.h -- a small futex lock: spin briefly, then sleep in the kernel.
 *
 * Channel critical sections are a few dozen instructions, so a short spin
 * usually wins; sleeping after it keeps a preempted holder from burning the
 * other core. States: 0 free, 1 held, 2 held with possible sleepers. */
#ifndef SLUICE_LOCK_H
#define SLUICE_LOCK_H

#include <stdatomic.h>
#include <stdint.h>

typedef struct {
    _Atomic uint32_t v;
} sl__lock_t;

#define SL__LOCK_INIT {0}

void sl__lock_slow(sl__lock_t *l);
void sl__futex_wait(_Atomic uint32_t *addr, uint32_t expect, int64_t deadline);
void sl__futex_wake(_Atomic uint32_t *addr, int n);

static inline void sl__lock(sl__lock_t *l)
{
    uint32_t c = 0;
    if (!atomic_compare_exchange_strong_explicit(&l->v, &c, 1, memory_order_acquire,
                                                 memory_order_relaxed))
        sl__lock_slow(l);
}

static inline void sl__unlock(sl__lock_t *l)
{
    if (atomic_exchange_explicit(&l->v, 0, memory_order_release) == 2)
        sl__futex_wake(&l->v, 1);
}

static inline void sl__cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

#endif
