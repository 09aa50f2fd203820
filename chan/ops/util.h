/* util.h -- helpers private to the combinators in chan/ops/.
 *
 * A combinator runs as fire-and-forget coroutines that cannot return an
 * error to anyone, so the helpers below wait out transient failures
 * (a channel's pending limit, a failed allocation) instead of dropping data. */
#ifndef SLUICE_OPS_UTIL_H
#define SLUICE_OPS_UTIL_H

#include <stddef.h>

#include "sluice/chan.h"
#include "sluice/sched.h"

/* Spawn fn(arg) as a fire-and-forget coroutine (flags as sl_go_ex).
 * Returns SL_OK, or SL_ELIMIT / SL_ENOMEM / SL_ESYS; on failure fn never
 * runs and arg is still the caller's. */
int sl__ops_go(sl_go_fn fn, void *arg, int flags);

/* sl_take()/sl_put() that retry while the channel reports SL_ELIMIT (too
 * many waiters right now). Return SL_OK or SL_ECLOSED. Coroutine only. */
int sl__ops_take(sl_chan_t *ch, void **out);
int sl__ops_put(sl_chan_t *ch, void *v);

/* Back off briefly before retrying a failed allocation. Coroutine only. */
void sl__ops_backoff(void);

/* calloc(1, size) that waits out memory pressure rather than failing: for
 * coroutines that have nobody to report SL_ENOMEM to. Caller owns. */
void *sl__ops_alloc_wait(size_t size);

/* sl_chan_new() with the same waiting policy. Caller owns the reference. */
sl_chan_t *sl__ops_chan_wait(sl_buf_t kind, size_t cap);

#endif
