/* store_redis.h -- the two halves of the Redis backend: store_redis.c
 * (the connection: poll-loop adapter, pipeline, timeouts, reconnection)
 * and store_redis_cmd.c (what each request sends and how its reply is
 * read: commands, scripts, replies). Private to sluice_store. */
#ifndef SLUICE_STORE_REDIS_H
#define SLUICE_STORE_REDIS_H

#include <hiredis/hiredis.h>

#include "store_int.h"

/* The scripts (store_lua.h), loaded on every connection. */
enum {
    SL__LUA_PUT,
    SL__LUA_TAKE,
    SL__LUA_TAKE_ONE,
    SL__LUA_DEAD_PUT,
    SL__LUA_DEAD_LIST,
    SL__LUA_COUNT,
    SL__LUA_N
};

/* Their bodies, static. */
extern const char *const sl__lua_body[SL__LUA_N];

/* Each script's SHA1 as SCRIPT LOAD answered it, 40 hex digits. */
typedef char sl__lua_sha_t[SL__LUA_N][41];

/* A RESP command being formatted; oom set once an allocation failed (the
 * rest are then no-ops). buf: caller frees. */
typedef struct {
    char *buf;
    size_t len, cap;
    bool oom;
} sl__rcmd_t;

void sl__rcmd_begin(sl__rcmd_t *c, int argc);
void sl__rcmd_arg(sl__rcmd_t *c, const void *p, size_t n);
void sl__rcmd_str(sl__rcmd_t *c, const char *s);

/* The command for req (EVALSHA of *script, or -1 for a plain command)
 * into *cmd (caller frees) and *len. SL_OK, SL_ENOMEM. */
int sl__redis_cmd(const char *prefix, const sl__lua_sha_t sha, const sl_store_req_t *req,
                  int *script, char **cmd, size_t *len);

/* The PUT that gives back the (member, score, record) triples of a TAKE
 * reply into *cmd (caller frees) and *len; *n: the jobs it carries.
 * SL_OK, SL_ENOMEM, SL_EPROTO (not a TAKE reply, or no jobs in it). */
int sl__redis_cmd_put_back(const char *prefix, const sl__lua_sha_t sha, const char *queue,
                           bool dead, const redisReply *rep, char **cmd, size_t *len, size_t *n);

/* Read req's reply into req. SL_OK, SL_EPROTO (an unexpected shape),
 * SL_ENOMEM (then req holds no records). *bad: records skipped because
 * they would not decode. */
int sl__redis_reply(sl_store_req_t *req, const redisReply *rep, uint64_t *bad);

/* What an error reply means. */
typedef enum {
    SL__RERR_NOSCRIPT,          /* the script is not loaded: load, resend  */
    SL__RERR_NOT_PRIMARY,       /* READONLY, MASTERDOWN: a replica now (a
                                   failover): nothing ran; reconnect        */
    SL__RERR_TRANSIENT,         /* LOADING, BUSY, TRYAGAIN, CLUSTERDOWN, OOM,
                                   and MOVED/ASK (another cluster node owns
                                   the slot; not followed): nothing ran     */
    SL__RERR_OTHER,             /* anything else: a bug or foreign data     */
} sl__rerr_t;

sl__rerr_t sl__redis_err(const redisReply *rep);

#endif
