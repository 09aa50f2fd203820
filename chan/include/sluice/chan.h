/* chan.h -- CSP channels in the style of Clojure's core.async.
 *
 * A channel carries void * values between coroutines and threads. One API
 * serves both: inside a coroutine (see sched.h) an operation that cannot
 * complete parks the coroutine; on a plain thread it blocks the thread.
 * Results are status codes, never an in-band NULL: NULL is a legal value.
 *
 * Channels are reference counted. sl_chan_new() returns one reference owned
 * by the caller; sl_chan_ref() adds one, sl_chan_destroy() drops one. Values
 * still buffered when the last reference goes are not freed (the channel
 * does not know what they are). */
#ifndef SLUICE_CHAN_H
#define SLUICE_CHAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sluice/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sl_chan sl_chan_t;

/* Buffer kinds. */
typedef enum {
    SL_BUF_NONE = 0,  /* unbuffered: a put waits for a taker (rendezvous)    */
    SL_BUF_FIXED,     /* fixed(n): puts wait while n values are buffered      */
    SL_BUF_DROPPING,  /* dropping(n): when full, new values are dropped       */
    SL_BUF_SLIDING,   /* sliding(n): when full, the oldest value is dropped   */
    SL_BUF_PROMISE    /* first value put is given to every taker, forever     */
} sl_buf_t;

/* Deadlines are absolute CLOCK_MONOTONIC nanoseconds (see sl_now()). */
#define SL_FOREVER ((int64_t)-1)

/* Default limit on waiting puts and on waiting takes per channel. */
#define SL_CHAN_MAX_PENDING_DEFAULT 1024

/* Monotonic clock in nanoseconds. */
int64_t sl_now(void);

/* Deadline ms milliseconds from now; ms < 0 gives SL_FOREVER. */
int64_t sl_deadline_ms(int64_t ms);

/* Create a channel. cap must be 0 for SL_BUF_NONE and SL_BUF_PROMISE and
 * at least 1 for SL_BUF_DROPPING and SL_BUF_SLIDING. SL_BUF_FIXED with cap
 * 0 is an unbuffered channel, as (chan 0) in core.async: the same as
 * SL_BUF_NONE, and its stats say SL_BUF_NONE. Returns a new channel
 * (caller owns one reference), or NULL if out of memory or the arguments
 * are invalid. */
sl_chan_t *sl_chan_new(sl_buf_t kind, size_t cap);

/* Take one more reference; returns self. */
sl_chan_t *sl_chan_ref(sl_chan_t *self);

/* Drop the caller's reference and set *self_p to NULL; accepts NULL. The
 * channel is freed with its last reference. Dropping a reference does not
 * close the channel. */
void sl_chan_destroy(sl_chan_t **self_p);

/* Close the channel. Afterwards puts fail with SL_ECLOSED at once; values
 * already buffered, and the values of puts already waiting, stay takeable
 * (those puts complete with SL_OK when taken); once they are gone, takes
 * return SL_ECLOSED. A promise keeps giving its value after close. Waiting
 * takes complete with SL_ECLOSED. Closing twice is harmless. */
void sl_chan_close(sl_chan_t *self);

/* Limit the number of waiting puts, and separately of waiting takes
 * (alts and callbacks count), beyond which an operation that would wait
 * fails with SL_ELIMIT instead. Default SL_CHAN_MAX_PENDING_DEFAULT;
 * n = 0 restores it. */
void sl_chan_set_max_pending(sl_chan_t *self, size_t n);

/* --- Put and take ------------------------------------------------------ */

/* Put v, waiting (parking or blocking) until it is accepted.
 * Returns SL_OK, SL_ECLOSED (nothing was put), SL_ELIMIT (too many waiting
 * puts), or SL_EDEADLK when called on a scheduler thread outside a
 * coroutine (a callback) and it would have to wait. */
int sl_put(sl_chan_t *self, void *v);

/* Take a value into *out, waiting until one is available.
 * Returns SL_OK, SL_ECLOSED (closed and drained; *out untouched),
 * SL_ELIMIT or SL_EDEADLK as sl_put(). */
int sl_take(sl_chan_t *self, void **out);

/* As sl_put()/sl_take(), giving up at deadline with SL_ETIMEDOUT (nothing
 * put, nothing taken). SL_FOREVER waits forever. */
int sl_put_until(sl_chan_t *self, void *v, int64_t deadline);
int sl_take_until(sl_chan_t *self, void **out, int64_t deadline);

/* Never wait: SL_OK, SL_ECLOSED, or SL_EAGAIN when the operation would have
 * to wait (offer!/poll! in core.async). */
int sl_offer(sl_chan_t *self, void *v);
int sl_poll(sl_chan_t *self, void **out);

/* Callback forms (put!/take! in core.async). The operation is queued like
 * a parked one; when it completes, cb runs once on a scheduler thread with
 * the status (and, for take, the value): SL_OK, or SL_ECLOSED for a put on
 * a closed channel (nothing was put) and a take on a closed, drained one.
 * Those calls return SL_OK: the operation completed, with a closed result.
 * If the call itself fails (SL_EINVAL, SL_ELIMIT, SL_ENOMEM, SL_ESYS) it
 * returns the code and cb never runs. Callbacks must not block; blocking
 * calls from them return SL_EDEADLK. */
typedef void (*sl_put_fn)(int status, void *arg);
typedef void (*sl_take_fn)(int status, void *value, void *arg);
int sl_put_cb(sl_chan_t *self, void *v, sl_put_fn cb, void *arg);
int sl_take_cb(sl_chan_t *self, sl_take_fn cb, void *arg);

/* --- alts -------------------------------------------------------------- */

/* One operation in an alts set. For a put, set chan, is_put and val. On
 * return, the committed operation's status (SL_OK or SL_ECLOSED) is in
 * status, and for a take its value in val. Other entries are untouched. */
typedef struct {
    sl_chan_t *chan;
    bool is_put;
    void *val;
    int status;
} sl_alt_t;

enum {
    SL_ALTS_PRIORITY = 1 << 0, /* prefer earlier ops when several are ready */
    SL_ALTS_DEFAULT  = 1 << 1  /* never wait: SL_EAGAIN if none is ready     */
};

/* Wait until exactly one of the n operations completes and return its
 * index. Among ready operations the choice is uniformly random unless
 * SL_ALTS_PRIORITY is given. Returns SL_EAGAIN (SL_ALTS_DEFAULT and none
 * ready), SL_ETIMEDOUT (deadline passed, none committed), SL_EINVAL (n is
 * 0 or a chan is NULL), SL_ELIMIT (a channel's pending limit), SL_EDEADLK
 * (as sl_put), SL_ENOMEM. A channel may appear more than once. */
int sl_alts(sl_alt_t *ops, size_t n, int flags, int64_t deadline);

/* --- Timeouts ---------------------------------------------------------- */

/* A new channel that closes by itself ms milliseconds from now. Each call
 * returns its own channel (never shared). Caller owns the reference; the
 * timer holds another until it fires. NULL if out of memory. */
sl_chan_t *sl_timeout(int64_t ms);

/* --- Poll-loop bridge -------------------------------------------------- */

enum {
    SL_CHAN_READABLE = 1, /* a take would not wait (values, puts or closed) */
    SL_CHAN_WRITABLE = 2  /* a put would not wait (space, takers or closed) */
};

/* A file descriptor (an eventfd) that is readable, level-triggered, while
 * the channel is in the given state (one of SL_CHAN_READABLE or
 * SL_CHAN_WRITABLE), so zmq_poll()/epoll can wait on channels and sockets
 * together. Never read or write the fd; it belongs to the channel and is
 * closed with it. Readiness is a hint: a racing peer may take the value
 * first, so follow it with sl_poll()/sl_offer(). Returns the fd, or a
 * negative SL_E* code (SL_EINVAL, SL_ESYS). */
int sl_chan_fd(sl_chan_t *self, int which);

/* --- Introspection ----------------------------------------------------- */

typedef struct {
    sl_buf_t kind;
    size_t count;          /* values buffered now                          */
    size_t capacity;       /* buffer size (0 unbuffered, 1 promise)        */
    size_t pending_puts;   /* puts waiting (parked, blocked, alts, cb)     */
    size_t pending_takes;  /* takes waiting                                */
    uint64_t puts;         /* successful puts (dropped values included)    */
    uint64_t takes;        /* values handed to takers                      */
    uint64_t dropped;      /* values dropped by dropping/sliding buffers   */
    bool closed;
} sl_chan_stats_t;

/* A consistent snapshot of the channel's counters. */
void sl_chan_stats(sl_chan_t *self, sl_chan_stats_t *out);

/* Check internal invariants; returns 0 if sane. For asserts and tests. */
int sl_chan_check(sl_chan_t *self);

#ifdef __cplusplus
}
#endif
#endif
