/* ops.h -- combinators over channels: pipe, pipelines, merge, split,
 * mult/tap, pub/sub, onto/to, reduce (core.async's higher-level API).
 *
 * Each combinator runs as coroutines on the scheduler (started on demand)
 * and holds its own references to the channels it uses, so the caller may
 * drop theirs. Every function returning a channel gives the caller one
 * reference; NULL means out of memory (or an argument was invalid). */
#ifndef SLUICE_OPS_H
#define SLUICE_OPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sluice/chan.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Copy every value from `from` to `to` until `from` is closed and drained;
 * then close `to` if close_to. Returns a channel closed when the pipe ends
 * (also if `to` closes first; values taken but not delivered are then
 * lost, as in core.async). */
sl_chan_t *sl_pipe(sl_chan_t *from, sl_chan_t *to, bool close_to);

/* A transform: one input gives zero or one output. Return 1 with *out set
 * to emit, 0 to emit nothing, or a negative SL_E* code for an error. */
typedef int (*sl_xf_fn)(void *in, void **out, void *arg);

/* Error handler for a transform that failed with err: return 1 with *out
 * set to emit a replacement value, 0 to emit nothing. NULL handler: emit
 * nothing. */
typedef int (*sl_ex_fn)(void *in, int err, void **out, void *arg);

/* Asynchronous transform: put zero or more values onto `result`, then
 * close it, from any context and at any later time. `result` is borrowed
 * for the duration of the call; take a reference (sl_chan_ref) to keep
 * using it after returning. */
typedef void (*sl_af_fn)(void *in, sl_chan_t *result, void *arg);

typedef struct {
    sl_xf_fn xf;       /* sl_pipeline, sl_pipeline_blocking */
    sl_af_fn af;       /* sl_pipeline_async                 */
    void *arg;         /* passed to xf / af                 */
    sl_ex_fn on_error; /* may be NULL                       */
    void *error_arg;
} sl_pipeline_fn_t;

/* Take from `from`, transform with up to n in parallel, and put results
 * onto `to` in input order. Closes `to` when `from` is exhausted if
 * close_to. Returns a channel closed when the pipeline has finished
 * delivering. n must be >= 1. If `to` closes first, results are discarded
 * but `from` is still consumed to its end (as in core.async).
 *   sl_pipeline:          xf runs in coroutines (must not block a thread)
 *   sl_pipeline_blocking: xf runs on the blocking pool (may block)
 *   sl_pipeline_async:    af runs in a coroutine and completes later */
sl_chan_t *sl_pipeline(int n, sl_chan_t *to, const sl_pipeline_fn_t *fn,
                       sl_chan_t *from, bool close_to);
sl_chan_t *sl_pipeline_blocking(int n, sl_chan_t *to, const sl_pipeline_fn_t *fn,
                                sl_chan_t *from, bool close_to);
sl_chan_t *sl_pipeline_async(int n, sl_chan_t *to, const sl_pipeline_fn_t *fn,
                             sl_chan_t *from, bool close_to);

/* A new channel (kind, cap) receiving every value from the n channels;
 * closed once all of them are closed and drained. */
sl_chan_t *sl_merge(sl_chan_t **chans, size_t n, sl_buf_t kind, size_t cap);

typedef bool (*sl_pred_fn)(void *v, void *arg);

/* Route each value of `from` to `t` if pred(v) is true, else to `f`; close
 * both when `from` is closed and drained. If one output is closed early,
 * values routed to it are lost and routing to the other goes on; when both
 * are closed the split stops. Returns SL_OK, SL_EINVAL (a NULL argument),
 * or the spawn error (SL_ENOMEM, SL_ELIMIT at max_coroutines, SL_ESYS). */
int sl_split(sl_chan_t *from, sl_pred_fn pred, void *arg,
             sl_chan_t *t, sl_chan_t *f);

/* --- mult: one source, every value to every tap ------------------------ */

typedef struct sl_mult sl_mult_t;

/* Distribute every value of src to all current taps. Slow-tap policy: a
 * value is offered to each tap and the mult waits at most tap_timeout_ms
 * for all taps to accept it; a tap that has not accepted by then misses
 * that value (counted per tap). tap_timeout_ms < 0 waits forever, which is
 * core.async's policy (one slow tap stalls every tap). With no taps, values
 * are taken and dropped (counted). When src closes, taps added with
 * close_tap are closed. Caller owns the handle. */
sl_mult_t *sl_mult_new(sl_chan_t *src, int64_t tap_timeout_ms);
/* Add tap (tapping it again updates close_tap). A tap found closed when a
 * value is offered is removed. Once src has closed, a tap with close_tap is
 * closed at once. SL_OK, SL_EINVAL or SL_ENOMEM. */
int sl_mult_tap(sl_mult_t *self, sl_chan_t *tap, bool close_tap);
int sl_mult_untap(sl_mult_t *self, sl_chan_t *tap);  /* SL_EINVAL if unknown */
void sl_mult_untap_all(sl_mult_t *self);
/* Values this tap missed by the timeout policy (0 if unknown tap). */
uint64_t sl_mult_missed(sl_mult_t *self, sl_chan_t *tap);
/* Values dropped because there were no taps. */
uint64_t sl_mult_dropped(sl_mult_t *self);
/* Release the caller's handle. The mult keeps running until src closes. */
void sl_mult_destroy(sl_mult_t **self_p);

/* --- pub/sub: route by topic ------------------------------------------- */

typedef struct sl_pub sl_pub_t;

/* topic_fn returns the value's topic (a string borrowed for the call). */
typedef const char *(*sl_topic_fn)(void *v, void *arg);

/* Route every value of src to the subscribers of its topic, with the same
 * slow-subscriber policy as sl_mult_new. Values whose topic has no
 * subscriber are dropped (counted). Caller owns the handle. */
sl_pub_t *sl_pub_new(sl_chan_t *src, sl_topic_fn topic_fn, void *arg,
                     int64_t sub_timeout_ms);
int sl_pub_sub(sl_pub_t *self, const char *topic, sl_chan_t *ch, bool close_sub);
int sl_pub_unsub(sl_pub_t *self, const char *topic, sl_chan_t *ch);
/* Unsubscribe all from topic; topic NULL: from every topic. */
void sl_pub_unsub_all(sl_pub_t *self, const char *topic);
uint64_t sl_pub_dropped(sl_pub_t *self);
void sl_pub_destroy(sl_pub_t **self_p);

/* --- collections ------------------------------------------------------- */

/* Put the n values (array copied) onto ch in order, then close ch if
 * close_ch. Returns a channel closed when done. */
sl_chan_t *sl_onto_chan(sl_chan_t *ch, void *const *vals, size_t n, bool close_ch);

/* A new channel holding the n values (array copied), closed after them. */
sl_chan_t *sl_to_chan(void *const *vals, size_t n);

/* Fold: acc = fn(acc, v, arg) over every value of ch, starting at init.
 * Returns a promise channel receiving the final acc once ch closes. */
typedef void *(*sl_reduce_fn)(void *acc, void *v, void *arg);
sl_chan_t *sl_reduce(sl_reduce_fn fn, void *arg, void *init, sl_chan_t *ch);

#ifdef __cplusplus
}
#endif
#endif
