/* store_redis_cmd.c -- what each store request sends to Redis and how its
 * reply is read: RESP formatting, the key schema (docs/redis.md), which
 * script runs each operation, and the replies' shapes. No I/O here: the
 * connection is store_redis.c's. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_lua.h"
#include "sluice/id.h"
#include "store_redis.h"

const char *const sl__lua_body[SL__LUA_N] = {
    [SL__LUA_PUT] = S_LUA_PUT,
    [SL__LUA_TAKE] = S_LUA_TAKE,
    [SL__LUA_TAKE_ONE] = S_LUA_TAKE_ONE,
    [SL__LUA_DEAD_PUT] = S_LUA_DEAD_PUT,
    [SL__LUA_DEAD_LIST] = S_LUA_DEAD_LIST,
    [SL__LUA_COUNT] = S_LUA_COUNT,
};

/* --- RESP ------------------------------------------------------------------ */

static void s_put(sl__rcmd_t *c, const void *p, size_t n)
{
    if (c->oom)
        return;
    if (c->len + n + 1 > c->cap) {
        size_t cap = c->cap ? c->cap : 256;
        while (cap < c->len + n + 1)
            cap *= 2;
        char *b = realloc(c->buf, cap);
        if (!b) {
            c->oom = true;
            return;
        }
        c->buf = b;
        c->cap = cap;
    }
    memcpy(c->buf + c->len, p, n);
    c->len += n;
    c->buf[c->len] = '\0';
}

void sl__rcmd_begin(sl__rcmd_t *c, int argc)
{
    char h[24];
    int n = snprintf(h, sizeof h, "*%d\r\n", argc);
    s_put(c, h, (size_t)n);
}

void sl__rcmd_arg(sl__rcmd_t *c, const void *p, size_t n)
{
    char h[32];
    int k = snprintf(h, sizeof h, "$%zu\r\n", n);
    s_put(c, h, (size_t)k);
    s_put(c, p, n);
    s_put(c, "\r\n", 2);
}

void sl__rcmd_str(sl__rcmd_t *c, const char *s)
{
    sl__rcmd_arg(c, s, strlen(s));
}

static void s_i64(sl__rcmd_t *c, int64_t v)
{
    char b[24];
    snprintf(b, sizeof b, "%lld", (long long)v);
    sl__rcmd_str(c, b);
}

/* The job id as 32 lowercase hex digits: the Redis member. */
static void s_hex(sl__rcmd_t *c, const uint8_t id[16])
{
    char hex[SL_ID_HEX_LEN + 1];
    sl__rcmd_str(c, sl_id_to_hex(id, hex));
}

/* The queue's key: PREFIX:{q:QUEUE}:SUFFIX. Every key of a queue has the
 * hash tag {q:QUEUE}, so all of them live in one cluster slot. */
static void s_key(sl__rcmd_t *c, const char *prefix, const char *queue, const char *suffix)
{
    char k[64 + 129 + 32];
    snprintf(k, sizeof k, "%s:{q:%s}:%s", prefix, queue, suffix);
    sl__rcmd_str(c, k);
}

/* EVALSHA sha 2 KEY1 KEY2, with nargs arguments still to come. */
static void s_eval(sl__rcmd_t *c, const char *prefix, const sl__lua_sha_t sha, int script,
                   const char *queue, const char *k1, const char *k2, int nargs)
{
    sl__rcmd_begin(c, 5 + nargs);
    sl__rcmd_str(c, "EVALSHA");
    sl__rcmd_str(c, sha[script]);
    sl__rcmd_str(c, "2");
    s_key(c, prefix, queue, k1);
    s_key(c, prefix, queue, k2);
}

/* The record as one argument. */
static int s_rec(sl__rcmd_t *c, const sl_store_rec_t *rec)
{
    uint8_t *buf;
    size_t len;
    if (sl__store_rec_encode(rec, &buf, &len) != SL_OK)
        return SL_ENOMEM;
    sl__rcmd_arg(c, buf, len);
    free(buf);
    return SL_OK;
}

/* --- requests -> commands ------------------------------------------------ */

int sl__redis_cmd(const char *prefix, const sl__lua_sha_t sha, const sl_store_req_t *q,
                  int *script, char **cmd, size_t *len)
{
    sl__rcmd_t c = {0};
    int rc = SL_OK;
    *script = -1;
    switch (q->op) {
    case SL_STORE_RETRY_PUT:
        *script = SL__LUA_PUT;
        s_eval(&c, prefix, sha, SL__LUA_PUT, q->queue, "retry", "retry:jobs", 3);
        s_hex(&c, q->rec.id);
        s_i64(&c, q->rec.due_ms);
        rc = s_rec(&c, &q->rec);
        break;
    case SL_STORE_RETRY_TAKE:
        *script = SL__LUA_TAKE;
        s_eval(&c, prefix, sha, SL__LUA_TAKE, q->queue, "retry", "retry:jobs", 2);
        s_i64(&c, q->now_ms);
        s_i64(&c, (int64_t)q->max);
        break;
    case SL_STORE_DEAD_PUT: {
        sl_store_rec_t rec = q->rec; /* shallow: only last_ms may differ */
        if (!rec.last_ms)
            rec.last_ms = q->now_ms;
        *script = SL__LUA_DEAD_PUT;
        s_eval(&c, prefix, sha, SL__LUA_DEAD_PUT, q->queue, "dead", "dead:jobs", 5);
        s_hex(&c, rec.id);
        s_i64(&c, rec.last_ms);
        rc = s_rec(&c, &rec);
        char n[24];
        snprintf(n, sizeof n, "%llu", (unsigned long long)q->max_dead);
        sl__rcmd_str(&c, n);
        if (q->max_age_ms > 0)
            s_i64(&c, q->now_ms - q->max_age_ms);
        else
            sl__rcmd_str(&c, "");
        break;
    }
    case SL_STORE_DEAD_LIST:
        *script = SL__LUA_DEAD_LIST;
        s_eval(&c, prefix, sha, SL__LUA_DEAD_LIST, q->queue, "dead", "dead:jobs", 3);
        s_i64(&c, q->after_ms);
        s_hex(&c, q->after_id);
        s_i64(&c, (int64_t)q->max);
        break;
    case SL_STORE_DEAD_GET:
        sl__rcmd_begin(&c, 3);
        sl__rcmd_str(&c, "HGET");
        s_key(&c, prefix, q->queue, "dead:jobs");
        s_hex(&c, q->id);
        break;
    case SL_STORE_DEAD_TAKE:
        if (q->has_id) {
            *script = SL__LUA_TAKE_ONE;
            s_eval(&c, prefix, sha, SL__LUA_TAKE_ONE, q->queue, "dead", "dead:jobs", 1);
            s_hex(&c, q->id);
        } else {
            *script = SL__LUA_TAKE;
            s_eval(&c, prefix, sha, SL__LUA_TAKE, q->queue, "dead", "dead:jobs", 2);
            if (q->older_ms) {
                char b[32];
                snprintf(b, sizeof b, "(%lld", (long long)q->older_ms);
                sl__rcmd_str(&c, b);
            } else {
                sl__rcmd_str(&c, "+inf");
            }
            s_i64(&c, (int64_t)q->max);
        }
        break;
    case SL_STORE_COUNT:
        *script = SL__LUA_COUNT;
        s_eval(&c, prefix, sha, SL__LUA_COUNT, q->queue, "retry", "dead", 0);
        break;
    }
    if (rc != SL_OK || c.oom) {
        free(c.buf);
        return SL_ENOMEM;
    }
    *cmd = c.buf;
    *len = c.len;
    return SL_OK;
}

int sl__redis_cmd_put_back(const char *prefix, const sl__lua_sha_t sha, const char *queue,
                           bool dead, const redisReply *rep, char **cmd, size_t *len, size_t *n)
{
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 4 || (rep->elements - 1) % 3 != 0)
        return SL_EPROTO;
    for (size_t i = 1; i < rep->elements; i++)
        if (rep->element[i]->type != REDIS_REPLY_STRING)
            return SL_EPROTO;
    *n = (rep->elements - 1) / 3;
    sl__rcmd_t c = {0};
    s_eval(&c, prefix, sha, SL__LUA_PUT, queue, dead ? "dead" : "retry",
           dead ? "dead:jobs" : "retry:jobs", (int)(rep->elements - 1));
    for (size_t i = 1; i < rep->elements; i++)
        sl__rcmd_arg(&c, rep->element[i]->str, rep->element[i]->len);
    if (c.oom) {
        free(c.buf);
        return SL_ENOMEM;
    }
    *cmd = c.buf;
    *len = c.len;
    return SL_OK;
}

/* --- replies -> requests ------------------------------------------------- */

/* One encoded record onto req->recs (room reserved). */
static int s_decode(sl_store_req_t *req, const redisReply *e, uint64_t *bad)
{
    if (e->type != REDIS_REPLY_STRING)
        return SL_EPROTO;
    int rc = sl__store_rec_decode((const uint8_t *)e->str, e->len, &req->recs[req->n_recs]);
    if (rc == SL_OK)
        req->n_recs++;
    else if (rc == SL_EPROTO)
        ++*bad;
    return rc == SL_EPROTO ? SL_OK : rc;
}

static int s_reply(sl_store_req_t *q, const redisReply *rep, uint64_t *bad)
{
    switch (q->op) {
    case SL_STORE_RETRY_PUT:
        return rep->type == REDIS_REPLY_INTEGER ? SL_OK : SL_EPROTO;
    case SL_STORE_DEAD_PUT:
        if (rep->type != REDIS_REPLY_INTEGER)
            return SL_EPROTO;
        q->trimmed = (uint64_t)rep->integer;
        return SL_OK;
    case SL_STORE_DEAD_GET:
        if (rep->type == REDIS_REPLY_NIL)
            return SL_OK;
        if (sl__store_req_reserve(q, 1) != SL_OK)
            return SL_ENOMEM;
        return s_decode(q, rep, bad);
    case SL_STORE_COUNT:
        if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
            rep->element[0]->type != REDIS_REPLY_INTEGER ||
            rep->element[1]->type != REDIS_REPLY_INTEGER)
            return SL_EPROTO;
        q->counts[0] = (uint64_t)rep->element[0]->integer;
        q->counts[1] = (uint64_t)rep->element[1]->integer;
        return SL_OK;
    case SL_STORE_RETRY_TAKE:
    case SL_STORE_DEAD_LIST:
    case SL_STORE_DEAD_TAKE: {
        /* {more, record...} (DEAD_LIST) or {more, member, score, record...} */
        if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 1 ||
            rep->element[0]->type != REDIS_REPLY_INTEGER)
            return SL_EPROTO;
        size_t step = q->op == SL_STORE_DEAD_LIST ? 1 : 3;
        if ((rep->elements - 1) % step != 0)
            return SL_EPROTO;
        q->more = rep->element[0]->integer != 0;
        size_t n = (rep->elements - 1) / step;
        if (n && sl__store_req_reserve(q, n) != SL_OK)
            return SL_ENOMEM;
        for (size_t i = step; i < rep->elements; i += step) {
            int rc = s_decode(q, rep->element[i], bad);
            if (rc != SL_OK)
                return rc;
        }
        return SL_OK;
    }
    }
    return SL_EPROTO;
}

int sl__redis_reply(sl_store_req_t *req, const redisReply *rep, uint64_t *bad)
{
    int rc = s_reply(req, rep, bad);
    if (rc != SL_OK) {
        for (size_t i = 0; i < req->n_recs; i++)
            sl_store_rec_release(&req->recs[i]);
        req->n_recs = 0;
    }
    return rc;
}

static bool s_is(const redisReply *rep, const char *code)
{
    size_t n = strlen(code);
    return rep->len >= n && strncmp(rep->str, code, n) == 0 &&
           (rep->len == n || rep->str[n] == ' ');
}

sl__rerr_t sl__redis_err(const redisReply *rep)
{
    if (s_is(rep, "NOSCRIPT"))
        return SL__RERR_NOSCRIPT;
    if (s_is(rep, "READONLY") || s_is(rep, "MASTERDOWN"))
        return SL__RERR_NOT_PRIMARY;
    if (s_is(rep, "LOADING") || s_is(rep, "BUSY") || s_is(rep, "TRYAGAIN") ||
        s_is(rep, "CLUSTERDOWN") || s_is(rep, "OOM") || s_is(rep, "MOVED") || s_is(rep, "ASK"))
        return SL__RERR_TRANSIENT;
    return SL__RERR_OTHER;
}
