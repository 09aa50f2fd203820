/* sched_int.h -- what the scheduler shares with the rest of chan/. */
#ifndef SLUICE_SCHED_INT_H
#define SLUICE_SCHED_INT_H

#include <stdint.h>

/* Blocking pool (pool.c). */
void sl__pool_configure(int max_threads);
uint64_t sl__pool_live(void);

/* Callback operations issued and not yet run (chan.c). */
uint64_t sl__cb_pending(void);

#endif
