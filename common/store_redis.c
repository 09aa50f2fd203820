/* store_redis.c -- the Redis backend: hiredis's asynchronous context on
 * the store thread's poll loop (an adapter of our own for its
 * addRead/delRead/addWrite/delWrite/cleanup hooks), pipelined commands,
 * scripts loaded once and run by EVALSHA, timeouts and reconnection.
 * What each request sends: store_redis_cmd.c; key schema and scripts:
 * docs/redis.md and store_lua.h.
 *
 * The connection:
 *
 *          s_connect (backoff over)              s_ready (handshake answered)
 *   DOWN ──────────────────────────▶ CONNECTING ──────────────────────────────▶ READY
 *    ▲                                  │  (AUTH, SELECT, SCRIPT LOAD)             │
 *    └──────── s_lost ◀─────────────────┴──────────────────────────────────────────┘
 *   s_lost runs from hiredis's cleanup hook, whatever freed the context:
 *   refused, EOF, an I/O error, or s_drop (an error reply in the handshake,
 *   connect timeout, READONLY, no answer within twice the command timeout).
 *
 * Every request sent is a slot in a FIFO; replies come in the order the
 * commands left, so the FIFO completes requests in submission order even
 * when one is sent again (NOSCRIPT). A slot outlives its request when the
 * request is completed early (command timeout: "abandoned"), so a late
 * answer still finds it; a late TAKE answer's jobs are put back. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/async.h>

#include "sluice/id.h"
#include "store_redis.h"

#define S_NOSCRIPT_TRIES 3      /* sends of one command that met NOSCRIPT  */
#define S_SLOT_CACHE 1024       /* free slots kept for reuse                */

typedef enum { S_DOWN, S_CONNECTING, S_READY } s_state_t;

typedef enum {
    S_USER,                     /* carries a request (or did: abandoned)   */
    S_PUTBACK_RETRY,            /* puts back what a late RETRY_TAKE took    */
    S_PUTBACK_DEAD,             /* ... a late DEAD_TAKE                     */
} s_kind_t;

typedef struct s_redis s_redis_t;

typedef struct s_slot {
    s_redis_t *r;
    s_kind_t kind;
    sl_store_req_t *req;        /* NULL once completed early (abandoned)  */
    sl_store_op_t op;
    char queue[129];            /* for a put-back after the request went   */
    struct s_slot *next;        /* FIFO, or the free cache                 */
    char *cmd;                  /* the formatted command, for resending    */
    size_t cmd_len;
    int script;                 /* SL__LUA_*, or -1: not a script          */
    int tries;
    uint64_t seq;               /* command sequence of its last send       */
    int64_t deadline_ms;        /* monotonic                               */
    int rc;
    bool in_fifo, in_redis, answered;
} s_slot_t;

struct s_redis {
    sl_store_t *st;
    sl__store_url_t url;
    sl_store_opts_t opts;
    char prefix[65];

    redisAsyncContext *ac;
    s_state_t state;
    bool want_read, want_write;
    bool first_attempt;         /* the first attempt: requests wait for it */
    bool ever_ready;
    bool closing;
    int64_t close_deadline;
    bool drop;                  /* free the connection at the turn's end   */
    char drop_why[160];         /* ... because                             */
    int64_t attempt_deadline;   /* CONNECTING: connect timeout             */
    int64_t next_attempt;       /* DOWN: when to try again                 */
    int64_t backoff;
    uint64_t rng;
    int handshake_left;

    sl__lua_sha_t sha;
    uint64_t load_seq[SL__LUA_N]; /* seq of the script's last SCRIPT LOAD  */
    uint64_t seq;               /* commands sent on this connection        */

    s_slot_t *fifo_head, *fifo_tail;
    sl_store_req_t *waiting, *waiting_tail; /* first attempt under way     */
    size_t abandoned;           /* abandoned slots still awaiting an answer */
    size_t internal;            /* put-backs in flight                     */
    int64_t stall_drop_at;      /* abandoned > 0: drop the connection then */
    s_slot_t *cache;
    size_t ncache;
};

/* --- status helpers ------------------------------------------------------ */

static void s_count(s_redis_t *r, size_t off, uint64_t n)
{
    sl_store_status_t *s = sl__store_status_lock(r->st);
    *(uint64_t *)((char *)s + off) += n;
    sl__store_status_unlock(r->st);
}
#define S_COUNT_FIELD(r, field, n) s_count(r, offsetof(sl_store_status_t, field), n)

/* --- slots --------------------------------------------------------------- */

static s_slot_t *s_slot_new(s_redis_t *r, s_kind_t kind)
{
    s_slot_t *s = r->cache;
    if (s) {
        r->cache = s->next;
        r->ncache--;
    } else if (!(s = malloc(sizeof *s))) {
        return NULL;
    }
    memset(s, 0, sizeof *s);
    s->r = r;
    s->kind = kind;
    s->script = -1;
    s->deadline_ms = sl__store_mono_ms() + r->opts.command_timeout_ms;
    return s;
}

/* Free s once neither the FIFO nor hiredis holds it. */
static void s_slot_release(s_slot_t *s)
{
    if (s->in_fifo || s->in_redis)
        return;
    s_redis_t *r = s->r;
    free(s->cmd);
    s->cmd = NULL;
    if (r->ncache < S_SLOT_CACHE) {
        s->next = r->cache;
        r->cache = s;
        r->ncache++;
    } else {
        free(s);
    }
}

static void s_fifo_push(s_redis_t *r, s_slot_t *s)
{
    s->next = NULL;
    s->in_fifo = true;
    if (r->fifo_tail)
        r->fifo_tail->next = s;
    else
        r->fifo_head = s;
    r->fifo_tail = s;
}

static s_slot_t *s_fifo_pop(s_redis_t *r)
{
    s_slot_t *s = r->fifo_head;
    r->fifo_head = s->next;
    if (!r->fifo_head)
        r->fifo_tail = NULL;
    s->next = NULL;
    s->in_fifo = false;
    return s;
}

/* Complete every answered slot at the head of the FIFO, in order. */
static void s_flush(s_redis_t *r)
{
    while (r->fifo_head && r->fifo_head->answered) {
        s_slot_t *s = s_fifo_pop(r);
        sl_store_req_t *req = s->req;
        int rc = s->rc;
        s->req = NULL;
        s_slot_release(s);
        sl__store_complete(r->st, req, rc);
    }
}

/* Complete req with rc after those submitted before it. */
static void s_finish(s_redis_t *r, sl_store_req_t *req, int rc)
{
    s_slot_t *s = r->fifo_head ? s_slot_new(r, S_USER) : NULL;
    if (!s) {
        sl__store_complete(r->st, req, rc);
        return;
    }
    s->req = req;
    s->answered = true;
    s->rc = rc;
    s_fifo_push(r, s);
    s_flush(r);
}

/* --- sending ------------------------------------------------------------- */

static void s_on_reply(redisAsyncContext *ac, void *reply, void *priv);

static void s_on_load(redisAsyncContext *ac, void *reply, void *priv)
{
    s_redis_t *r = ac->data;
    redisReply *rep = reply;
    if (rep && rep->type == REDIS_REPLY_ERROR)
        sl__store_status_error(r->st, "SCRIPT LOAD", rep->str);
}

static int s_send_raw(s_redis_t *r, redisCallbackFn *fn, void *priv, const char *cmd,
                      size_t len)
{
    if (!r->ac || redisAsyncFormattedCommand(r->ac, fn, priv, cmd, len) != REDIS_OK)
        return SL_EAGAIN;
    r->seq++;
    S_COUNT_FIELD(r, commands, 1);
    return SL_OK;
}

static int s_send_load(s_redis_t *r, int script, redisCallbackFn *fn, void *priv)
{
    sl__rcmd_t c = {0};
    sl__rcmd_begin(&c, 3);
    sl__rcmd_str(&c, "SCRIPT");
    sl__rcmd_str(&c, "LOAD");
    sl__rcmd_str(&c, sl__lua_body[script]);
    int rc = c.oom ? SL_ENOMEM : s_send_raw(r, fn, priv, c.buf, c.len);
    free(c.buf);
    if (rc == SL_OK) {
        r->load_seq[script] = r->seq;
        S_COUNT_FIELD(r, scripts_loaded, 1);
    }
    return rc;
}

/* Send slot s's command (again). SL_OK, SL_EAGAIN (no connection). */
static int s_send(s_redis_t *r, s_slot_t *s)
{
    int rc = s_send_raw(r, s_on_reply, s, s->cmd, s->cmd_len);
    if (rc == SL_OK) {
        s->in_redis = true;
        s->seq = r->seq;
    }
    return rc;
}

/* NOSCRIPT: load the script first unless a SCRIPT LOAD already left
 * after s's command (it will have run before the resend), then resend. */
static int s_resend_noscript(s_redis_t *r, s_slot_t *s)
{
    if (s->script < 0 || ++s->tries >= S_NOSCRIPT_TRIES)
        return SL_EAGAIN;
    if (s->seq > r->load_seq[s->script] && s_send_load(r, s->script, s_on_load, NULL) != SL_OK)
        return SL_EAGAIN;
    return s_send(r, s);
}

/* Put back the (member, score, record) triples of a TAKE reply that no
 * request will receive. */
static void s_put_back(s_redis_t *r, const char *queue, bool dead, const redisReply *rep)
{
    if (!r->ac)
        return;
    s_slot_t *s = s_slot_new(r, dead ? S_PUTBACK_DEAD : S_PUTBACK_RETRY);
    if (!s)
        return;
    size_t n = 0;
    if (sl__redis_cmd_put_back(r->prefix, r->sha, queue, dead, rep, &s->cmd, &s->cmd_len, &n) !=
        SL_OK) {
        s_slot_release(s);
        return;
    }
    s->script = SL__LUA_PUT;
    s->rc = (int)n; /* how many it carries, counted when answered */
    if (s_send(r, s) == SL_OK)
        r->internal++;
    else
        s_slot_release(s);
}

/* --- replies ------------------------------------------------------------- */

static void s_drop(s_redis_t *r, const char *why, const char *detail)
{
    if (r->drop)
        return;
    r->drop = true;
    snprintf(r->drop_why, sizeof r->drop_why, "%s%s%s", why, detail ? ": " : "",
             detail ? detail : "");
}

static void s_on_internal(s_redis_t *r, s_slot_t *s, redisReply *rep)
{
    if (s->kind == S_USER) {
        /* Abandoned: its request completed with SL_ETIMEDOUT. */
        r->abandoned--;
        if (rep && (s->op == SL_STORE_RETRY_TAKE || s->op == SL_STORE_DEAD_TAKE))
            s_put_back(r, s->queue, s->op == SL_STORE_DEAD_TAKE, rep);
        return;
    }
    if (rep && rep->type == REDIS_REPLY_ERROR && sl__redis_err(rep) == SL__RERR_NOSCRIPT &&
        !r->closing && s_resend_noscript(r, s) == SL_OK)
        return;
    r->internal--;
    if (rep && rep->type == REDIS_REPLY_INTEGER)
        S_COUNT_FIELD(r, returned, (uint64_t)s->rc);
}

static void s_on_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    s_slot_t *s = priv;
    s_redis_t *r = s->r;
    redisReply *rep = reply;
    s->in_redis = false;
    if (!s->req) {
        s_on_internal(r, s, rep);
        s_slot_release(s);
        return;
    }
    int rc;
    if (!rep) {
        /* The connection went before the answer: it may have run. */
        rc = r->closing ? SL_ECLOSED : SL_ETIMEDOUT;
    } else if (rep->type == REDIS_REPLY_ERROR) {
        sl__rerr_t e = sl__redis_err(rep);
        if (e == SL__RERR_NOSCRIPT && s_resend_noscript(r, s) == SL_OK)
            return; /* keeps its place in the FIFO */
        sl__store_status_error(r->st, "reply", rep->str);
        if (e == SL__RERR_NOT_PRIMARY)
            s_drop(r, "not a primary (failover?)", rep->str);
        rc = e == SL__RERR_OTHER ? SL_EPROTO : SL_EAGAIN;
    } else {
        uint64_t bad = 0;
        rc = sl__redis_reply(s->req, rep, &bad);
        if (bad)
            S_COUNT_FIELD(r, bad_records, bad);
        if (rc == SL_EPROTO)
            sl__store_status_error(r->st, "reply", "unexpected reply shape");
        if (rc == SL_ENOMEM && (s->op == SL_STORE_RETRY_TAKE || s->op == SL_STORE_DEAD_TAKE))
            s_put_back(r, s->queue, s->op == SL_STORE_DEAD_TAKE, rep); /* taken, not handed over */
    }
    s->answered = true;
    s->rc = rc;
    s_flush(r);
}

/* --- issuing requests ---------------------------------------------------- */

static void s_issue(s_redis_t *r, sl_store_req_t *req)
{
    s_slot_t *s = s_slot_new(r, S_USER);
    if (!s) {
        sl__store_complete(r->st, req, SL_ENOMEM);
        return;
    }
    s->req = req;
    s->op = req->op;
    memcpy(s->queue, req->queue, sizeof s->queue);
    int rc = sl__redis_cmd(r->prefix, r->sha, req, &s->script, &s->cmd, &s->cmd_len);
    if (rc == SL_OK)
        rc = s_send(r, s);
    if (rc != SL_OK) {
        s->answered = true;
        s->rc = rc;
    }
    s_fifo_push(r, s);
    s_flush(r);
}

static void s_refuse_list(s_redis_t *r, sl_store_req_t *head, int rc)
{
    while (head) {
        sl_store_req_t *req = head;
        head = req->next;
        s_finish(r, req, rc);
    }
}

static void s_submit(void *be, sl_store_req_t *head, int refuse)
{
    s_redis_t *r = be;
    if (refuse) {
        s_refuse_list(r, head, refuse);
        return;
    }
    if (r->state == S_CONNECTING && r->first_attempt) {
        /* The first attempt is under way: wait for it (connect timeout). */
        if (r->waiting_tail)
            r->waiting_tail->next = head;
        else
            r->waiting = head;
        while (head->next)
            head = head->next;
        r->waiting_tail = head;
        return;
    }
    if (r->state != S_READY || r->abandoned || r->drop) {
        s_refuse_list(r, head, SL_EAGAIN);
        return;
    }
    while (head) {
        sl_store_req_t *req = head;
        head = req->next;
        req->next = NULL;
        s_issue(r, req);
    }
}

/* --- the connection ------------------------------------------------------ */

static void s_ev_add_read(void *p) { ((s_redis_t *)p)->want_read = true; }
static void s_ev_del_read(void *p) { ((s_redis_t *)p)->want_read = false; }
static void s_ev_add_write(void *p) { ((s_redis_t *)p)->want_write = true; }
static void s_ev_del_write(void *p) { ((s_redis_t *)p)->want_write = false; }

/* The connection is gone or the attempt failed: complete or refuse what
 * waited for it and schedule the next attempt. */
static void s_lost(s_redis_t *r, const char *why, const char *detail)
{
    s_state_t was = r->state;
    r->ac = NULL;
    r->state = S_DOWN;
    r->want_read = r->want_write = false;
    r->drop = false;
    r->handshake_left = 0;
    if (why)
        sl__store_status_error(r->st, why, detail);
    sl_store_status_t *st = sl__store_status_lock(r->st);
    st->connected = false;
    if (!st->down_since_ms)
        st->down_since_ms = sl_wall_ms();
    sl__store_status_unlock(r->st);

    int64_t now = sl__store_mono_ms();
    r->rng ^= r->rng << 13;
    r->rng ^= r->rng >> 7;
    r->rng ^= r->rng << 17;
    /* Equal jitter: half the backoff, plus up to the other half at random,
     * so nodes that lost one Redis at once do not come back in step. */
    int64_t half = r->backoff / 2;
    r->next_attempt = now + half + (int64_t)(r->rng % (uint64_t)(half + 1));
    if (was == S_CONNECTING || !r->ever_ready) {
        r->backoff *= 2;
        if (r->backoff > r->opts.reconnect_max_ms)
            r->backoff = r->opts.reconnect_max_ms;
    }
    r->first_attempt = false;
    sl_store_req_t *w = r->waiting;
    r->waiting = r->waiting_tail = NULL;
    s_refuse_list(r, w, r->closing ? SL_ECLOSED : SL_EAGAIN);
}

static void s_ev_cleanup(void *p)
{
    s_redis_t *r = p;
    redisAsyncContext *ac = r->ac;
    if (!ac)
        return;
    if (r->drop)
        s_lost(r, "connection dropped", r->drop_why);
    else if (ac->err)
        s_lost(r, r->state == S_CONNECTING ? "connect" : "connection lost", ac->errstr);
    else
        s_lost(r, r->closing ? NULL : "connection closed", NULL);
}

static void s_ready(s_redis_t *r)
{
    r->state = S_READY;
    r->backoff = r->opts.reconnect_min_ms;
    sl_store_status_t *st = sl__store_status_lock(r->st);
    st->connected = true;
    st->down_since_ms = 0;
    if (r->ever_ready)
        st->reconnects++;
    sl__store_status_unlock(r->st);
    r->ever_ready = true;
    r->first_attempt = false;
    sl_store_req_t *w = r->waiting;
    r->waiting = r->waiting_tail = NULL;
    while (w) {
        sl_store_req_t *req = w;
        w = req->next;
        req->next = NULL;
        s_issue(r, req);
    }
}

/* Handshake replies carry their step: 0 AUTH, 1 SELECT, 2+ SCRIPT LOAD. */
static void s_on_handshake(redisAsyncContext *ac, void *reply, void *priv)
{
    s_redis_t *r = ac->data;
    redisReply *rep = reply;
    intptr_t step = (intptr_t)priv;
    if (!rep || r->drop)
        return;
    if (rep->type == REDIS_REPLY_ERROR) {
        s_drop(r, step == 0 ? "AUTH" : step == 1 ? "SELECT" : "SCRIPT LOAD", rep->str);
        return;
    }
    if (step >= 2) {
        if (rep->type != REDIS_REPLY_STRING || rep->len != 40) {
            s_drop(r, "SCRIPT LOAD", "unexpected reply");
            return;
        }
        memcpy(r->sha[step - 2], rep->str, 40);
        r->sha[step - 2][40] = '\0';
    }
    if (--r->handshake_left == 0)
        s_ready(r);
}

static void s_on_connect(const redisAsyncContext *cac, int status)
{
    s_redis_t *r = cac->data;
    if (status != REDIS_OK)
        return; /* hiredis frees it next: s_ev_cleanup */
    redisAsyncContext *ac = r->ac;
    int sent = 0;
    /* A peer gone without a FIN (a host lost, a partition) is found by the
     * kernel even while no request waits on it. */
    if (r->url.kind == SL__URL_TCP)
        redisEnableKeepAlive(&ac->c);
    if (r->url.password[0]) {
        if (r->url.user[0])
            sent += redisAsyncCommand(ac, s_on_handshake, (void *)0, "AUTH %s %s", r->url.user,
                                      r->url.password) == REDIS_OK;
        else
            sent += redisAsyncCommand(ac, s_on_handshake, (void *)0, "AUTH %s",
                                      r->url.password) == REDIS_OK;
        r->seq++;
    }
    if (r->url.db) {
        sent += redisAsyncCommand(ac, s_on_handshake, (void *)1, "SELECT %d", r->url.db) ==
                REDIS_OK;
        r->seq++;
    }
    for (int i = 0; i < SL__LUA_N; i++)
        sent += s_send_load(r, i, s_on_handshake, (void *)(intptr_t)(2 + i)) == SL_OK;
    r->handshake_left = sent;
    int want = SL__LUA_N + (r->url.password[0] ? 1 : 0) + (r->url.db ? 1 : 0);
    if (sent != want)
        s_drop(r, "handshake", "out of memory");
}

static void s_connect(s_redis_t *r)
{
    redisAsyncContext *ac = r->url.kind == SL__URL_UNIX
                                ? redisAsyncConnectUnix(r->url.path)
                                : redisAsyncConnect(r->url.host, r->url.port);
    r->state = S_CONNECTING;
    r->attempt_deadline = sl__store_mono_ms() + r->opts.connect_timeout_ms;
    r->seq = 0;
    memset(r->load_seq, 0, sizeof r->load_seq);
    if (!ac) {
        s_lost(r, "connect", "out of memory");
        return;
    }
    if (ac->err) {
        char why[128];
        snprintf(why, sizeof why, "%s", ac->errstr);
        redisAsyncFree(ac);
        s_lost(r, "connect", why);
        return;
    }
    r->ac = ac;
    ac->data = r;
    ac->ev.data = r;
    ac->ev.addRead = s_ev_add_read;
    ac->ev.delRead = s_ev_del_read;
    ac->ev.addWrite = s_ev_add_write;
    ac->ev.delWrite = s_ev_del_write;
    ac->ev.cleanup = s_ev_cleanup;
    /* Sets addWrite: the first writable event is the connection made. */
    redisAsyncSetConnectCallback(ac, s_on_connect);
}

/* --- the backend table --------------------------------------------------- */

static int s_open(sl_store_t *st, const sl_store_opts_t *opts, const sl__store_url_t *url,
                  void **be_p)
{
    s_redis_t *r = calloc(1, sizeof *r);
    if (!r)
        return SL_ENOMEM;
    r->st = st;
    r->url = *url;
    r->opts = *opts;
    r->opts.url = NULL;
    r->opts.prefix = NULL;
    snprintf(r->prefix, sizeof r->prefix, "%s", opts->prefix);
    r->backoff = opts->reconnect_min_ms > 0 ? opts->reconnect_min_ms : 1;
    r->rng = ((uint64_t)(uintptr_t)r ^ (uint64_t)sl_wall_ms()) | 1;
    r->first_attempt = true;
    r->state = S_DOWN;
    *be_p = r;
    return SL_OK;
}

static void s_start(void *be)
{
    s_connect(be);
}

static int64_t s_min(int64_t a, int64_t b)
{
    return a < 0 ? b : b < 0 ? a : a < b ? a : b;
}

static int64_t s_prepare(void *be, struct pollfd *pfd, int64_t now)
{
    s_redis_t *r = be;
    pfd->fd = -1;
    pfd->events = 0;
    if (r->ac) {
        pfd->fd = r->ac->c.fd;
        pfd->events = (short)((r->want_read ? POLLIN : 0) | (r->want_write ? POLLOUT : 0));
    }
    int64_t due = -1;
    if (r->drop)
        return now;
    if (r->state == S_CONNECTING)
        due = s_min(due, r->attempt_deadline);
    if (r->state == S_DOWN && !r->closing)
        due = s_min(due, r->next_attempt);
    if (r->fifo_head)
        due = s_min(due, r->fifo_head->deadline_ms);
    if (r->abandoned)
        due = s_min(due, r->stall_drop_at);
    if (r->closing)
        due = s_min(due, r->close_deadline);
    return due;
}

/* The oldest request sent has had no answer within command_timeout: the
 * server is stuck or the path to it is. Complete everything sent with
 * SL_ETIMEDOUT (those behind it wait on the same connection), refuse new
 * requests until the answers come, and drop the connection if they have
 * not come after another command_timeout. */
static void s_abandon_all(s_redis_t *r, int64_t now)
{
    while (r->fifo_head) {
        s_slot_t *s = s_fifo_pop(r);
        sl_store_req_t *req = s->req;
        int rc = s->answered ? s->rc : SL_ETIMEDOUT;
        s->req = NULL;
        if (s->in_redis)
            r->abandoned++;
        s_slot_release(s);
        sl__store_complete(r->st, req, rc);
    }
    r->stall_drop_at = now + r->opts.command_timeout_ms;
    sl__store_status_error(r->st, "command timeout", "no answer; new requests refused");
}

static void s_dispatch(void *be, const struct pollfd *pfd, int64_t now)
{
    s_redis_t *r = be;
    if (r->ac && pfd->fd >= 0 && pfd->revents) {
        bool connected = r->ac->c.flags & REDIS_CONNECTED;
        short ev = pfd->revents;
        if ((ev & POLLIN) || (connected && (ev & (POLLERR | POLLHUP))))
            redisAsyncHandleRead(r->ac);
        if (r->ac && ((ev & POLLOUT) || (!connected && (ev & (POLLERR | POLLHUP))))) {
            if (connected)
                S_COUNT_FIELD(r, writes, 1);
            redisAsyncHandleWrite(r->ac);
        }
    }
    if (r->state == S_CONNECTING && r->ac && now >= r->attempt_deadline)
        s_drop(r, "connect timeout", NULL);
    if (r->state == S_READY && r->fifo_head && now >= r->fifo_head->deadline_ms)
        s_abandon_all(r, now);
    if (r->state == S_READY && r->abandoned && now >= r->stall_drop_at)
        s_drop(r, "no answer within the command timeout", NULL);
    if (r->drop && r->ac)
        redisAsyncFree(r->ac); /* -> s_ev_cleanup -> s_lost */
    r->drop = false;
    if (r->state == S_DOWN && !r->closing && now >= r->next_attempt)
        s_connect(r);
}

static bool s_drained(void *be, int64_t now)
{
    s_redis_t *r = be;
    if (!r->closing) {
        r->closing = true;
        r->close_deadline = now + r->opts.command_timeout_ms;
        sl_store_req_t *w = r->waiting;
        r->waiting = r->waiting_tail = NULL;
        s_refuse_list(r, w, SL_ECLOSED);
    }
    return (!r->fifo_head && !r->internal) || r->state != S_READY || now >= r->close_deadline;
}

static void s_stop(void *be)
{
    s_redis_t *r = be;
    r->closing = true;
    if (r->ac)
        redisAsyncFree(r->ac); /* pending callbacks run with no reply */
    sl_store_req_t *w = r->waiting;
    r->waiting = r->waiting_tail = NULL;
    s_refuse_list(r, w, SL_ECLOSED);
    /* Anything left (cannot be: every slot was in hiredis or the FIFO). */
    while (r->fifo_head) {
        s_slot_t *s = s_fifo_pop(r);
        sl_store_req_t *req = s->req;
        int rc = s->answered ? s->rc : SL_ECLOSED;
        s->in_redis = false;
        s_slot_release(s);
        sl__store_complete(r->st, req, rc);
    }
}

static void s_free(void *be)
{
    s_redis_t *r = be;
    if (!r)
        return;
    while (r->cache) {
        s_slot_t *s = r->cache;
        r->cache = s->next;
        free(s);
    }
    free(r);
}

const sl__store_backend_t sl__store_redis = {
    .kind = "redis",
    .open = s_open,
    .start = s_start,
    .submit = s_submit,
    .prepare = s_prepare,
    .dispatch = s_dispatch,
    .drained = s_drained,
    .stop = s_stop,
    .free = s_free,
};
