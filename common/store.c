/* store.c -- the store object: requests and records, URL parsing, the
 * request queue, and the thread whose poll loop drives a backend
 * (store_mem.c, store_redis.c). See sluice/store.h for the contract and
 * docs/redis.md for what Redis keeps.
 *
 * Submitters append to an intrusive list (req->next) under a mutex and
 * wake the thread through an eventfd when the list was empty; the thread
 * takes the whole list at once, so whatever waits is one batch: one loop
 * turn, one write to Redis. */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "sluice.pb-c.h"
#include "sluice/id.h"
#include "sluice/name.h"
#include "store_int.h"

struct sl_store {
    const sl__store_backend_t *ops;
    void *be;
    int efd;                    /* eventfd: the queue went non-empty       */
    pthread_t thread;
    bool thread_started;

    pthread_mutex_t lock;       /* head, tail, closing                     */
    sl_store_req_t *head, *tail;
    bool closing;

    pthread_mutex_t status_lock;
    sl_store_status_t status;
};

/* --- records and requests ------------------------------------------------ */

void sl_store_rec_release(sl_store_rec_t *rec)
{
    if (!rec)
        return;
    free(rec->job);
    free(rec->last_error);
    free(rec->reason);
    free(rec->node_id);
    memset(rec, 0, sizeof *rec);
}

static void s_req_clear_out(sl_store_req_t *req)
{
    for (size_t i = 0; i < req->n_recs; i++)
        sl_store_rec_release(&req->recs[i]);
    free(req->recs);
    req->recs = NULL;
    req->n_recs = 0;
    req->more = false;
    req->counts[0] = req->counts[1] = 0;
    req->trimmed = 0;
    req->rc = SL_OK;
}

sl_store_req_t *sl_store_req_new(sl_store_op_t op, const char *queue, sl_store_done_fn done,
                                 void *arg)
{
    sl_store_req_t *req = calloc(1, sizeof *req);
    if (!req)
        return NULL;
    req->op = op;
    /* A name that does not fit is left empty, so submit refuses it rather
     * than acting on a cut one. */
    if (queue && strlen(queue) < sizeof req->queue)
        memcpy(req->queue, queue, strlen(queue) + 1);
    req->done = done;
    req->arg = arg;
    return req;
}

void sl_store_req_destroy(sl_store_req_t **req_p)
{
    if (!req_p || !*req_p)
        return;
    sl_store_req_t *req = *req_p;
    s_req_clear_out(req);
    sl_store_rec_release(&req->rec);
    free(req);
    *req_p = NULL;
}

int sl__store_req_reserve(sl_store_req_t *req, size_t n)
{
    /* recs is always allocated at a power of two (at least 8) that held
     * n_recs, so that power is room we know we have without a field for
     * it. Sizes stay near SL_STORE_MAX_RECS: no overflow. */
    size_t need = req->n_recs + n, have = 0, cap = 8;
    if (req->recs)
        for (have = 8; have < req->n_recs;)
            have *= 2;
    if (need <= have)
        return SL_OK;
    while (cap < need)
        cap *= 2;
    sl_store_rec_t *r = realloc(req->recs, cap * sizeof *r);
    if (!r)
        return SL_ENOMEM;
    req->recs = r;
    return SL_OK;
}

/* --- the record codec ---------------------------------------------------- */

int sl__store_rec_encode(const sl_store_rec_t *rec, uint8_t **out, size_t *len)
{
    Sluice__V1__JobRecord m = SLUICE__V1__JOB_RECORD__INIT;
    m.id.data = (uint8_t *)rec->id;
    m.id.len = 16;
    m.job.data = rec->job;
    m.job.len = rec->job ? rec->job_len : 0;
    m.attempt = rec->attempt;
    m.failures = rec->failures;
    m.redeliveries = rec->redeliveries;
    /* protobuf-c writes a proto3 string only when it is not "" and takes
     * NULL for "". */
    m.last_error = rec->last_error ? rec->last_error : "";
    m.reason = rec->reason ? rec->reason : "";
    m.node_id = rec->node_id ? rec->node_id : "";
    m.first_ms = rec->first_ms;
    m.last_ms = rec->last_ms;
    m.due_ms = rec->due_ms;
    size_t n = sluice__v1__job_record__get_packed_size(&m);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf)
        return SL_ENOMEM;
    *len = sluice__v1__job_record__pack(&m, buf);
    *out = buf;
    return SL_OK;
}

/* A copy of s, or NULL for "" (records keep none for an empty string). */
static int s_dup(const char *s, char **out)
{
    *out = NULL;
    if (!s || !*s)
        return SL_OK;
    *out = strdup(s);
    return *out ? SL_OK : SL_ENOMEM;
}

int sl__store_rec_decode(const uint8_t *buf, size_t len, sl_store_rec_t *out)
{
    memset(out, 0, sizeof *out);
    Sluice__V1__JobRecord *m = sluice__v1__job_record__unpack(NULL, len, buf);
    if (!m)
        return SL_EPROTO; /* protobuf-c does not tell OOM from malformed */
    int rc = SL_OK;
    if (m->id.len != 16) {
        rc = SL_EPROTO;
        goto out;
    }
    memcpy(out->id, m->id.data, 16);
    if (m->job.len) {
        out->job = malloc(m->job.len);
        if (!out->job) {
            rc = SL_ENOMEM;
            goto out;
        }
        memcpy(out->job, m->job.data, m->job.len);
        out->job_len = m->job.len;
    }
    out->attempt = m->attempt;
    out->failures = m->failures;
    out->redeliveries = m->redeliveries;
    out->first_ms = m->first_ms;
    out->last_ms = m->last_ms;
    out->due_ms = m->due_ms;
    if ((rc = s_dup(m->last_error, &out->last_error)) != SL_OK ||
        (rc = s_dup(m->reason, &out->reason)) != SL_OK ||
        (rc = s_dup(m->node_id, &out->node_id)) != SL_OK)
        goto out;
out:
    if (rc != SL_OK)
        sl_store_rec_release(out);
    sluice__v1__job_record__free_unpacked(m, NULL);
    return rc;
}

/* --- URLs ---------------------------------------------------------------- */

static int s_hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Copy [s, s+n) into out (cap bytes with the NUL), decoding %XX. */
static bool s_unescape(const char *s, size_t n, char *out, size_t cap)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '%') {
            if (i + 2 >= n)
                return false;
            int hi = s_hexval(s[i + 1]), lo = s_hexval(s[i + 2]);
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
                return false;
            c = (char)(hi * 16 + lo);
            i += 2;
        }
        if (k + 1 >= cap)
            return false;
        out[k++] = c;
    }
    out[k] = '\0';
    return true;
}

/* A decimal in [lo, hi] filling [s, s+n) exactly. */
static bool s_number(const char *s, size_t n, long lo, long hi, int *out)
{
    if (n == 0 || n > 9)
        return false;
    long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    if (v < lo || v > hi)
        return false;
    *out = (int)v;
    return true;
}

static const char *s_parse_tcp(const char *p, sl__store_url_t *u)
{
    /* [[user]:password@]host[:port][/db] */
    const char *end = p + strlen(p);
    const char *slash = strchr(p, '/');
    const char *auth_end = NULL;
    for (const char *q = p; q < (slash ? slash : end); q++)
        if (*q == '@')
            auth_end = q; /* the last '@' before the path: passwords may hold one escaped */
    if (auth_end) {
        const char *colon = memchr(p, ':', (size_t)(auth_end - p));
        if (!colon)
            return "redis URL: credentials must be [user]:password@";
        if (!s_unescape(p, (size_t)(colon - p), u->user, sizeof u->user))
            return "redis URL: bad user (too long or a bad %XX escape)";
        if (!s_unescape(colon + 1, (size_t)(auth_end - colon - 1), u->password,
                        sizeof u->password))
            return "redis URL: bad password (too long or a bad %XX escape)";
        if (!u->password[0])
            return "redis URL: empty password";
        p = auth_end + 1;
    }
    const char *hend = slash ? slash : end;
    const char *host = p, *port = NULL;
    size_t hlen;
    if (*p == '[') {
        const char *rb = memchr(p, ']', (size_t)(hend - p));
        if (!rb)
            return "redis URL: unclosed [ in the host";
        host = p + 1;
        hlen = (size_t)(rb - host);
        if (rb + 1 < hend) {
            if (rb[1] != ':')
                return "redis URL: expected :port after ]";
            port = rb + 2;
        }
    } else {
        const char *colon = memchr(p, ':', (size_t)(hend - p));
        hlen = (size_t)((colon ? colon : hend) - p);
        if (colon)
            port = colon + 1;
    }
    if (hlen == 0)
        return "redis URL: no host";
    if (hlen >= sizeof u->host)
        return "redis URL: host too long";
    memcpy(u->host, host, hlen);
    u->host[hlen] = '\0';
    u->port = 6379;
    if (port && !s_number(port, (size_t)(hend - port), 1, 65535, &u->port))
        return "redis URL: port must be 1-65535";
    if (slash && slash[1] && !s_number(slash + 1, strlen(slash + 1), 0, INT_MAX, &u->db))
        return "redis URL: database must be a number (/0, /1, ...)";
    return NULL;
}

static const char *s_parse_unix(const char *p, sl__store_url_t *u)
{
    /* /path[?db=N][&password=P] */
    if (*p != '/')
        return "unix URL: the socket path must be absolute (unix:///path)";
    const char *q = strchr(p, '?');
    size_t plen = q ? (size_t)(q - p) : strlen(p);
    if (plen >= sizeof u->path)
        return "unix URL: socket path too long";
    memcpy(u->path, p, plen);
    u->path[plen] = '\0';
    while (q) {
        const char *k = q + 1;
        const char *amp = strchr(k, '&');
        size_t n = amp ? (size_t)(amp - k) : strlen(k);
        if (n > 3 && strncmp(k, "db=", 3) == 0) {
            if (!s_number(k + 3, n - 3, 0, INT_MAX, &u->db))
                return "unix URL: db must be a number";
        } else if (n > 9 && strncmp(k, "password=", 9) == 0) {
            if (!s_unescape(k + 9, n - 9, u->password, sizeof u->password))
                return "unix URL: bad password (too long or a bad %XX escape)";
        } else {
            return "unix URL: the only parameters are db=N and password=P";
        }
        q = amp;
    }
    return NULL;
}

const char *sl__store_url_parse(const char *url, sl__store_url_t *out)
{
    memset(out, 0, sizeof *out);
    if (!url || !*url || strcmp(url, "memory") == 0) {
        out->kind = SL__URL_MEMORY;
        return NULL;
    }
    for (const char *c = url; *c; c++)
        if ((unsigned char)*c <= ' ' || (unsigned char)*c >= 0x7f)
            return "store URL: no spaces or control characters";
    if (strncmp(url, "redis://", 8) == 0) {
        out->kind = SL__URL_TCP;
        return s_parse_tcp(url + 8, out);
    }
    if (strncmp(url, "unix://", 7) == 0) {
        out->kind = SL__URL_UNIX;
        return s_parse_unix(url + 7, out);
    }
    return "store URL: \"memory\", redis://[[user]:password@]host[:port][/db] or "
           "unix:///path[?db=N]";
}

const char *sl_store_url_check(const char *url)
{
    sl__store_url_t u;
    return sl__store_url_parse(url, &u);
}

/* --- status -------------------------------------------------------------- */

sl_store_status_t *sl__store_status_lock(sl_store_t *st)
{
    pthread_mutex_lock(&st->status_lock);
    return &st->status;
}

void sl__store_status_unlock(sl_store_t *st)
{
    pthread_mutex_unlock(&st->status_lock);
}

void sl__store_status_error(sl_store_t *st, const char *what, const char *detail)
{
    sl_store_status_t *s = sl__store_status_lock(st);
    snprintf(s->last_error, sizeof s->last_error, "%s%s%s", what, detail ? ": " : "",
             detail ? detail : "");
    sl__store_status_unlock(st);
}

void sl_store_status(sl_store_t *self, sl_store_status_t *out)
{
    *out = *sl__store_status_lock(self);
    sl__store_status_unlock(self);
}

const char *sl_store_kind(sl_store_t *self)
{
    return self->ops->kind;
}

int64_t sl__store_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void sl__store_complete(sl_store_t *st, sl_store_req_t *req, int rc)
{
    req->rc = rc;
    req->next = NULL;
    if (rc != SL_OK) {
        sl_store_status_t *s = sl__store_status_lock(st);
        s->errors++;
        if (rc == SL_ETIMEDOUT)
            s->timeouts++;
        sl__store_status_unlock(st);
    }
    req->done(req, req->arg);
}

/* --- the thread ---------------------------------------------------------- */

/* Take what was submitted: read the eventfd first, then the list, so a
 * submit racing with us either lands in this batch or wakes us again. */
static sl_store_req_t *s_take_batch(sl_store_t *st, bool *closing)
{
    uint64_t v;
    while (read(st->efd, &v, sizeof v) < 0 && errno == EINTR)
        ;
    pthread_mutex_lock(&st->lock);
    sl_store_req_t *head = st->head;
    st->head = st->tail = NULL;
    *closing = st->closing;
    pthread_mutex_unlock(&st->lock);
    return head;
}

static void *s_thread(void *arg)
{
    sl_store_t *st = arg;
    st->ops->start(st->be);
    bool closing = false;
    for (;;) {
        int64_t now = sl__store_mono_ms();
        if (closing && st->ops->drained(st->be, now))
            break;
        struct pollfd pfd[2] = {{.fd = closing ? -1 : st->efd, .events = POLLIN},
                                {.fd = -1}};
        int64_t due = st->ops->prepare(st->be, &pfd[1], now);
        int timeout = -1;
        if (due >= 0)
            timeout = due <= now ? 0 : (int)(due - now > INT_MAX ? INT_MAX : due - now);
        int n = poll(pfd, 2, timeout);
        if (n < 0) {
            /* EINTR, or ENOMEM in the kernel: a turn with no events. */
            pfd[0].revents = pfd[1].revents = 0;
        }
        if (pfd[0].revents & POLLIN) {
            sl_store_req_t *batch = s_take_batch(st, &closing);
            if (batch)
                st->ops->submit(st->be, batch, closing ? SL_ECLOSED : 0);
        }
        st->ops->dispatch(st->be, &pfd[1], sl__store_mono_ms());
    }
    st->ops->stop(st->be);
    return NULL;
}

/* --- lifecycle ----------------------------------------------------------- */

static bool s_prefix_ok(const char *p)
{
    size_t n = strlen(p);
    if (n == 0 || n > 64)
        return false;
    /* The queue-name alphabet: never a '{' or '}' that would move the hash
     * tag off the queue's name. */
    return sl_queue_name_ok(p, n);
}

sl_store_t *sl_store_new(const sl_store_opts_t *opts, int *err)
{
    int dummy;
    if (!err)
        err = &dummy;
    sl_store_opts_t o = {0};
    if (opts)
        o = *opts;
    if (!o.connect_timeout_ms)
        o.connect_timeout_ms = 2000;
    if (!o.command_timeout_ms)
        o.command_timeout_ms = 2000;
    if (!o.reconnect_min_ms)
        o.reconnect_min_ms = 100;
    if (!o.reconnect_max_ms)
        o.reconnect_max_ms = 5000;
    if (!o.prefix)
        o.prefix = "sl";
    sl__store_url_t url;
    if (sl__store_url_parse(o.url, &url) || !s_prefix_ok(o.prefix) ||
        o.connect_timeout_ms < 0 || o.command_timeout_ms < 0 || o.reconnect_min_ms < 0 ||
        o.reconnect_max_ms < o.reconnect_min_ms) {
        *err = SL_EINVAL;
        return NULL;
    }

    sl_store_t *st = calloc(1, sizeof *st);
    if (!st) {
        *err = SL_ENOMEM;
        return NULL;
    }
    st->efd = -1;
    pthread_mutex_init(&st->lock, NULL);
    pthread_mutex_init(&st->status_lock, NULL);
    st->ops = url.kind == SL__URL_MEMORY ? &sl__store_memory : &sl__store_redis;
    st->status.connected = url.kind == SL__URL_MEMORY;
    int rc = st->ops->open(st, &o, &url, &st->be);
    if (rc != SL_OK) {
        *err = rc;
        goto fail;
    }
    st->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (st->efd < 0) {
        *err = SL_ESYS;
        goto fail;
    }
    /* The thread starts with every signal blocked: a write to a socket
     * Redis closed raises SIGPIPE on the writing thread, which must not
     * kill the process (hiredis 0.14 writes with write(2), not
     * send(MSG_NOSIGNAL)). */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    rc = pthread_create(&st->thread, NULL, s_thread, st);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        *err = rc == ENOMEM || rc == EAGAIN ? SL_ENOMEM : SL_ESYS;
        goto fail;
    }
    st->thread_started = true;
    return st;
fail:
    if (st->be)
        st->ops->free(st->be);
    if (st->efd >= 0)
        close(st->efd);
    pthread_mutex_destroy(&st->lock);
    pthread_mutex_destroy(&st->status_lock);
    free(st);
    return NULL;
}

static bool s_req_ok(const sl_store_req_t *req)
{
    if (!req->done || !sl_queue_name_ok_str(req->queue))
        return false;
    switch (req->op) {
    case SL_STORE_RETRY_TAKE:
    case SL_STORE_DEAD_LIST:
        return req->max > 0;
    case SL_STORE_DEAD_TAKE:
        return req->has_id || req->max > 0;
    case SL_STORE_RETRY_PUT:
    case SL_STORE_DEAD_PUT:
    case SL_STORE_DEAD_GET:
    case SL_STORE_COUNT:
        return true;
    }
    return false;
}

int sl_store_submit(sl_store_t *self, sl_store_req_t **req_p)
{
    sl_store_req_t *req = *req_p;
    if (!req || !s_req_ok(req))
        return SL_EINVAL;
    s_req_clear_out(req);
    if (req->max > SL_STORE_MAX_RECS)
        req->max = SL_STORE_MAX_RECS;
    req->next = NULL;
    pthread_mutex_lock(&self->lock);
    if (self->closing) {
        pthread_mutex_unlock(&self->lock);
        return SL_ECLOSED;
    }
    bool wake = self->head == NULL;
    if (self->tail)
        self->tail->next = req;
    else
        self->head = req;
    self->tail = req;
    pthread_mutex_unlock(&self->lock);
    *req_p = NULL;
    if (wake) {
        uint64_t one = 1;
        /* EAGAIN: the counter is already non-zero, the thread will wake. */
        while (write(self->efd, &one, sizeof one) < 0 && errno == EINTR)
            ;
    }
    return SL_OK;
}

void sl_store_destroy(sl_store_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    sl_store_t *st = *self_p;
    *self_p = NULL;
    pthread_mutex_lock(&st->lock);
    st->closing = true;
    pthread_mutex_unlock(&st->lock);
    uint64_t one = 1;
    while (write(st->efd, &one, sizeof one) < 0 && errno == EINTR)
        ;
    if (st->thread_started)
        pthread_join(st->thread, NULL);
    st->ops->free(st->be);
    close(st->efd);
    pthread_mutex_destroy(&st->lock);
    pthread_mutex_destroy(&st->status_lock);
    free(st);
}
