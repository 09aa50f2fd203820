/* store.h -- what must outlive a node: the retry schedule and the dead
 * letters of every queue (later: circuit breakers, durable jobs), behind
 * one narrow interface with two backends:
 *
 *   memory  the embedded default: the node's own memory, lost with it;
 *   redis   a Redis server (hiredis, asynchronous, pipelined): shared by
 *           every node that names it, and kept across node deaths.
 *
 * The same behavioural test suite runs against both (tests/unit/
 * store_test.c). Key schema, scripts and failure behaviour: docs/redis.md.
 *
 * Threads: a store runs on a thread of its own (for Redis: a poll loop on
 * hiredis's socket and on the request queue's eventfd; SIGPIPE is blocked
 * on it). sl_store_submit may be called from any thread, and from `done`;
 * it never blocks on I/O. Each request completes exactly once, on the
 * store's thread, by calling its `done` function, which must return
 * promptly and must not call sl_store_destroy (a node hands the request to
 * its engine through a channel). Requests submitted together go to Redis
 * in one write (pipelined); completions come in submission order.
 *
 * Ownership: the caller allocates a request with sl_store_req_new and
 * gives it to sl_store_submit; `done` gets it back and owns it from then
 * on (sl_store_req_destroy, or submit it again: its results are cleared).
 * A request that could not be submitted (the call returns an error) was
 * not taken: its done is never called. */
#ifndef SLUICE_STORE_H
#define SLUICE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sluice/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sl_store sl_store_t;

/* Records one request returns at most (RETRY_TAKE, DEAD_LIST, DEAD_TAKE):
 * a larger `max` is lowered to this. */
#define SL_STORE_MAX_RECS 10000

/* A job as the store keeps it: the job's own encoded bytes (a
 * sluice.v1.Job exactly as published) and what the node learned of it.
 * Strings and bytes are owned by the record (sl_store_rec_release). A
 * record is kept as a sluice.v1.JobRecord, so an empty string comes back
 * as NULL, in every backend. */
typedef struct {
    uint8_t id[16];
    uint8_t *job;               /* encoded sluice.v1.Job                    */
    size_t job_len;
    uint32_t attempt;           /* deliveries so far                        */
    uint32_t failures;          /* Fail verdicts (handler failures)         */
    uint32_t redeliveries;      /* leases lost without a verdict            */
    char *last_error;           /* NULL = none                              */
    char *reason;               /* dead: why ("failed: ...", "expired")     */
    char *node_id;              /* the node that wrote it                   */
    int64_t first_ms;           /* wall ms: first published                 */
    int64_t last_ms;            /* wall ms: this record written (dead: when
                                   it died; DEAD_PUT sets 0 to now_ms)      */
    int64_t due_ms;             /* retry: when it is due again              */
} sl_store_rec_t;

/* Free what rec owns (not rec itself) and zero it. Accepts NULL. */
void sl_store_rec_release(sl_store_rec_t *rec);

/* Ordering: retries by (due_ms, id), dead letters by (last_ms, id), ids
 * compared as bytes; "earliest" and "oldest" mean first in that order. */
typedef enum {
    /* queue, rec (due_ms set): schedule a retry. Replaces a scheduled
     * retry of the same id. */
    SL_STORE_RETRY_PUT = 1,
    /* queue, now_ms, max: take (remove and return) up to max retries due
     * by now_ms (due_ms <= now_ms), earliest first, into recs; `more`: some
     * due by now_ms remain. Atomic: two nodes taking at once never get the
     * same job. */
    SL_STORE_RETRY_TAKE,
    /* queue, rec (reason set), now_ms, max_dead, max_age_ms: add a dead
     * letter (replacing one of the same id), then drop those older than
     * now_ms - max_age_ms (max_age_ms 0: no age bound), then the oldest
     * beyond max_dead (0 keeps none, as the node's max-dead 0). `trimmed`:
     * how many went (the new one included, if it did). */
    SL_STORE_DEAD_PUT,
    /* queue, after_ms/after_id, max: dead letters strictly after
     * (after_ms, after_id), oldest first, into recs (0 / zero id: from the
     * oldest); `more` says whether others follow (pass the last rec's
     * last_ms and id as after_ms/after_id). */
    SL_STORE_DEAD_LIST,
    /* queue, id: the one dead letter into recs (n_recs 0: none). */
    SL_STORE_DEAD_GET,
    /* queue, and id (has_id) or every one older than older_ms (last_ms <
     * older_ms; older_ms 0: all), max: remove up to max dead letters,
     * oldest first, and return them in recs (to be published again, or
     * dropped: purge). `more` as in DEAD_LIST. */
    SL_STORE_DEAD_TAKE,
    /* queue: counts into counts[] (retry-scheduled, dead). */
    SL_STORE_COUNT,
} sl_store_op_t;

typedef struct sl_store_req sl_store_req_t;
typedef void (*sl_store_done_fn)(sl_store_req_t *req, void *arg);

struct sl_store_req {
    sl_store_op_t op;
    /* --- in ------------------------------------------------------------ */
    char queue[129];            /* a valid queue name (name.h)              */
    sl_store_rec_t rec;         /* RETRY_PUT, DEAD_PUT: owned by the request */
    uint8_t id[16];             /* DEAD_GET, DEAD_TAKE (with has_id)         */
    bool has_id;
    int64_t now_ms;             /* RETRY_TAKE, DEAD_PUT: wall ms             */
    int64_t after_ms;           /* DEAD_LIST                                 */
    uint8_t after_id[16];
    int64_t older_ms;           /* DEAD_TAKE                                 */
    uint64_t max_dead;          /* DEAD_PUT                                  */
    int64_t max_age_ms;         /* DEAD_PUT                                  */
    size_t max;                 /* RETRY_TAKE, DEAD_LIST, DEAD_TAKE: 1 ..
                                   (above SL_STORE_MAX_RECS: lowered)       */
    sl_store_done_fn done;
    void *arg;
    /* --- out (valid in done) ------------------------------------------- */
    int rc;                     /* SL_OK;
                                   SL_EAGAIN: not sent, the store is
                                   unreachable or not answering (retry
                                   later: nothing was changed);
                                   SL_ETIMEDOUT: sent, but not answered
                                   within command_timeout_ms or the
                                   connection was lost first: it may have
                                   been carried out (PUTs are safe to
                                   repeat; jobs a late-answered TAKE
                                   removed are put back by the store);
                                   SL_EPROTO: an error reply or a reply the
                                   store could not read (status.last_error);
                                   SL_ENOMEM; SL_ECLOSED: the store is
                                   being destroyed                           */
    sl_store_rec_t *recs;       /* owned by the request                     */
    size_t n_recs;
    bool more;
    uint64_t counts[2];         /* COUNT: retry-scheduled, dead              */
    uint64_t trimmed;           /* DEAD_PUT: dead letters dropped by the trim */
    /* --- the store's own ----------------------------------------------- */
    sl_store_req_t *next;
};

/* A zeroed request for op on queue (copied; an invalid name is refused
 * by sl_store_submit), with done/arg. Caller owns; NULL if out of memory. */
sl_store_req_t *sl_store_req_new(sl_store_op_t op, const char *queue, sl_store_done_fn done,
                                 void *arg);
/* Free the request and every record it owns; accepts NULL, sets *req_p
 * to NULL. */
void sl_store_req_destroy(sl_store_req_t **req_p);

/* How the store's connection stands (for stats and logs). */
typedef struct {
    bool connected;             /* memory: always                           */
    uint64_t reconnects;        /* connections made after the first        */
    uint64_t errors;            /* requests completed with an error         */
    uint64_t timeouts;          /* of which SL_ETIMEDOUT                    */
    uint64_t scripts_loaded;    /* SCRIPT LOAD round trips (NOSCRIPT too)   */
    uint64_t commands;          /* commands sent                            */
    uint64_t writes;            /* write(2) calls that sent them: commands
                                   per write shows the pipelining          */
    uint64_t returned;          /* jobs a timed-out TAKE removed, put back
                                   when its answer came late               */
    uint64_t bad_records;       /* records that would not decode: skipped  */
    int64_t down_since_ms;      /* wall ms the connection was lost, or the
                                   first attempt failed; 0: up (or the
                                   first attempt is under way)             */
    char last_error[128];       /* the last connection or reply error      */
} sl_store_status_t;

typedef struct {
    /* "memory", or a Redis URL: redis://[[user]:password@]host[:port][/db]
     * (port 6379 by default; an IPv6 host in brackets; %XX escapes in the
     * password) or unix:///path/to/socket[?db=N][&password=P]. */
    const char *url;
    int64_t connect_timeout_ms; /* connect, AUTH, SELECT and SCRIPT LOAD
                                   must be done by then; default 2000     */
    int64_t command_timeout_ms; /* a request not answered by then completes
                                   with SL_ETIMEDOUT; default 2000         */
    int64_t reconnect_min_ms;   /* backoff between attempts: from this ... */
    int64_t reconnect_max_ms;   /* ... doubling up to this; 100 / 5000     */
    const char *prefix;         /* key prefix, 1-64 of [A-Za-z0-9._:-];
                                   default "sl"                            */
} sl_store_opts_t;

/* Check url's form without connecting: NULL if fine, else a static
 * sentence saying what is wrong. */
const char *sl_store_url_check(const char *url);

/* Start a store (its thread; for Redis, the first connection attempt: an
 * unreachable Redis is not an error here). Requests submitted while the
 * first attempt is under way wait for it (at most connect_timeout_ms);
 * once an attempt has failed or the connection is lost, requests complete
 * at once with SL_EAGAIN until it is back. NULL with *err SL_EINVAL (bad
 * url, prefix or timeouts), SL_ENOMEM, SL_ESYS. Caller owns:
 * sl_store_destroy. */
sl_store_t *sl_store_new(const sl_store_opts_t *opts, int *err);

/* Hand req to the store (takes it: *req_p is NULLed). SL_OK; SL_EINVAL
 * (an invalid queue name, op, or max 0 where max is read, or no done);
 * SL_ECLOSED once the store is being destroyed. On error req is not
 * taken. */
int sl_store_submit(sl_store_t *self, sl_store_req_t **req_p);

/* A snapshot of the connection's state; safe from any thread. */
void sl_store_status(sl_store_t *self, sl_store_status_t *out);

/* "memory" or "redis". */
const char *sl_store_kind(sl_store_t *self);

/* Stop taking requests; complete those not yet sent with SL_ECLOSED, give
 * those sent to Redis until their command timeout to be answered (then
 * SL_ETIMEDOUT), stop the thread, free everything. done is called for
 * each, in order, before this returns. Accepts NULL; sets *self_p to
 * NULL. */
void sl_store_destroy(sl_store_t **self_p);

#ifdef __cplusplus
}
#endif
#endif
