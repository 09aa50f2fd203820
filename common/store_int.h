/* store_int.h -- what store.c shares with its backends (store_mem.c,
 * store_redis.c): the backend table the store thread drives, completion,
 * the status under its lock, the record codec and the parsed URL.
 * Private to sluice_store. */
#ifndef SLUICE_STORE_INT_H
#define SLUICE_STORE_INT_H

#include <poll.h>

#include "sluice/store.h"

/* --- URLs ---------------------------------------------------------------- */

typedef enum { SL__URL_MEMORY, SL__URL_TCP, SL__URL_UNIX } sl__url_kind_t;

typedef struct {
    sl__url_kind_t kind;
    char host[256];             /* TCP: name or address (no brackets)       */
    int port;                   /* TCP                                      */
    char path[108];             /* UNIX: the socket                         */
    char user[128];             /* "" = AUTH with the password alone        */
    char password[256];         /* "" = no AUTH                             */
    int db;                     /* 0 = no SELECT                            */
} sl__store_url_t;

/* Parse url into out. NULL if fine, else a static sentence. */
const char *sl__store_url_parse(const char *url, sl__store_url_t *out);

/* --- backends -------------------------------------------------------------
 *
 * Every entry but open and free runs on the store thread. One loop turn:
 * prepare (the fd to poll, if any, and the next deadline), poll (that fd
 * and the request queue's eventfd), submit (the requests taken from the
 * queue, in submission order), dispatch (the fd's events, then timers).
 * A backend completes a request by sl__store_complete, in submission
 * order. */
typedef struct {
    const char *kind;
    /* Caller's thread, from sl_store_new: parse-time checks and memory
     * only, no I/O. SL_OK, SL_ENOMEM, SL_EINVAL. */
    int (*open)(sl_store_t *st, const sl_store_opts_t *opts, const sl__store_url_t *url,
                void **be_p);
    /* Before the first turn (the first connection attempt). */
    void (*start)(void *be);
    /* Requests linked by next, in submission order, taken by the backend.
     * refuse != 0: complete each with refuse, after those before it. */
    void (*submit)(void *be, sl_store_req_t *head, int refuse);
    /* Fill pfd (fd -1: none) and return the next monotonic ms deadline at
     * which dispatch must run (-1: none). */
    int64_t (*prepare)(void *be, struct pollfd *pfd, int64_t now_ms);
    /* pfd as poll left it (revents 0 when it did not fire). */
    void (*dispatch)(void *be, const struct pollfd *pfd, int64_t now_ms);
    /* The store is closing: no more submits, no new connections. True
     * once nothing it waits for can still complete a request. */
    bool (*drained)(void *be, int64_t now_ms);
    /* Complete whatever is left with SL_ECLOSED, close connections. */
    void (*stop)(void *be);
    /* After the thread has ended (or never started): free. */
    void (*free)(void *be);
} sl__store_backend_t;

extern const sl__store_backend_t sl__store_memory;
extern const sl__store_backend_t sl__store_redis;

/* Set req->rc, count it, call done. Store thread only. */
void sl__store_complete(sl_store_t *st, sl_store_req_t *req, int rc);

/* The status, locked: backends update their fields between these two. */
sl_store_status_t *sl__store_status_lock(sl_store_t *st);
void sl__store_status_unlock(sl_store_t *st);
/* Record a connection or reply error in last_error (truncated). */
void sl__store_status_error(sl_store_t *st, const char *what, const char *detail);

/* CLOCK_MONOTONIC in ms. */
int64_t sl__store_mono_ms(void);

/* --- records --------------------------------------------------------------
 *
 * A record is kept as an encoded sluice.v1.JobRecord by every backend. */

/* Encode rec: *out (caller frees with free) and *len. SL_OK, SL_ENOMEM. */
int sl__store_rec_encode(const sl_store_rec_t *rec, uint8_t **out, size_t *len);
/* Decode into *out (zeroed first; release with sl_store_rec_release).
 * SL_OK, SL_EPROTO (not a JobRecord, or its id is not 16 bytes),
 * SL_ENOMEM. */
int sl__store_rec_decode(const uint8_t *buf, size_t len, sl_store_rec_t *out);

/* Make room for n more records in req->recs. SL_OK, SL_ENOMEM. */
int sl__store_req_reserve(sl_store_req_t *req, size_t n);


#endif
