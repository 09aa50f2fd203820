/* fanout.h -- the tap sets behind sl_mult and sl_pub, and the delivery of
 * one value to many channels under a deadline (the slow-tap policy). */
#ifndef SLUICE_OPS_FANOUT_H
#define SLUICE_OPS_FANOUT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sluice/chan.h"

/* One destination. Reference counted because a delivery in progress keeps
 * using a tap that another thread has just removed from its set. */
typedef struct {
    sl_chan_t *ch;              /* owned reference                         */
    bool close_on_done;         /* close ch when the source ends; guarded
                                   by the owner's mutex                    */
    atomic_bool dead;           /* ch was found closed: remove lazily      */
    _Atomic uint64_t missed;    /* values not accepted before the deadline */
    atomic_int refs;
} sl__tap_t;

/* A new tap on ch (takes its own reference to ch). Caller owns the tap
 * reference. NULL if out of memory. */
sl__tap_t *sl__tap_new(sl_chan_t *ch, bool close_on_done);
sl__tap_t *sl__tap_ref(sl__tap_t *self);
/* Drop a reference; the last one drops the channel reference. Accepts NULL. */
void sl__tap_release(sl__tap_t **self_p);

/* A growable array of taps. Not synchronised: the owner's mutex guards it. */
typedef struct {
    sl__tap_t **v;   /* owned references */
    size_t n, cap;
} sl__tapset_t;

/* Index of the tap on ch, or -1. */
long sl__tapset_find(const sl__tapset_t *self, const sl_chan_t *ch);
/* Add tap (the set takes the caller's reference). SL_OK or SL_ENOMEM (then
 * the reference is still the caller's). */
int sl__tapset_add(sl__tapset_t *self, sl__tap_t *tap);
/* Remove the tap at i, returning its reference to the caller. */
sl__tap_t *sl__tapset_take(sl__tapset_t *self, size_t i);
/* Drop taps marked dead. */
void sl__tapset_purge(sl__tapset_t *self);
/* Release every tap and the array. */
void sl__tapset_release(sl__tapset_t *self);

/* A delivery: a copy of a tap set taken under the owner's mutex, so the
 * value can then be delivered with the mutex released. Reused across
 * values; grown as needed. */
typedef struct {
    sl__tap_t **taps;  /* owned references while a delivery is staged */
    sl_alt_t *ops;     /* scratch for sl_alts, cap entries              */
    size_t n, cap;
} sl__fanout_t;

/* Copy set into self, referencing each live tap. SL_OK or SL_ENOMEM (self
 * then empty). Call with the owner's mutex held: it never parks. */
int sl__fanout_stage(sl__fanout_t *self, const sl__tapset_t *set);

/* Offer v to every staged tap at once and wait until each has accepted it
 * or deadline passes. A tap that did not accept in time has its missed
 * counter incremented; a closed tap is marked dead. Then drops the staged
 * references. Coroutine only (it parks); call without any mutex held. */
void sl__fanout_deliver(sl__fanout_t *self, void *v, int64_t deadline);

void sl__fanout_release(sl__fanout_t *self);

#endif
