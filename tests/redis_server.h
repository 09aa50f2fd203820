/* redis_server.h -- for tests: a real redis-server of our own on a free
 * loopback port (never 6379) in a temporary directory, standalone or
 * cluster-enabled with one node owning all 16384 slots, with or without
 * an append-only file; stopped by pid (SIGKILL to crash it, SIGSTOP to
 * freeze it) and started again on the same port and directory. Readiness
 * is polled with a deadline (PING, then CLUSTER INFO), never slept for.
 *
 * The binary is $SLUICE_REDIS_SERVER, else redis-server on the PATH
 * (scripts/deps installs it). Servers still running at exit are killed and
 * their directories removed; a server also dies with the thread that
 * started it (PR_SET_PDEATHSIG), so a test killed outright leaves none. */
#ifndef SLUICE_REDIS_SERVER_H
#define SLUICE_REDIS_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

enum {
    SL_REDIS_CLUSTER = 1,       /* --cluster-enabled yes, all slots here   */
    SL_REDIS_AOF_EVERYSEC = 2,  /* --appendonly yes --appendfsync everysec */
    SL_REDIS_AOF_ALWAYS = 4,    /* --appendonly yes --appendfsync always   */
    SL_REDIS_UNIX = 8,          /* also listen on DIR/redis.sock           */
};

typedef struct {
    unsigned flags;
    const char *password;       /* --requirepass; NULL: none               */
    int port;                   /* 0: a free one                           */
} sl_redis_opts_t;

typedef struct {
    pid_t pid;                  /* 0 when not running                      */
    int port;
    unsigned flags;
    char password[64];
    char dir[128];              /* the temporary directory                 */
    char sock[160];             /* DIR/redis.sock (SL_REDIS_UNIX)          */
    char url[256];              /* redis://[:password@]127.0.0.1:PORT      */
} sl_redis_server_t;

/* Start a server (opts may be NULL) and wait up to 20 s until it answers
 * PING (and, clustered, until CLUSTER INFO says cluster_state:ok). 0, or
 * -1 with a message and the server's log on stderr. */
int sl_redis_server_start(sl_redis_server_t *rs, const sl_redis_opts_t *opts);

/* Send sig (SIGTERM, SIGKILL) and reap it within 10 s (then SIGKILL).
 * The directory stays, for a restart. */
void sl_redis_server_stop(sl_redis_server_t *rs, int sig);

/* SIGSTOP / SIGCONT: freeze and thaw it without closing its sockets. */
void sl_redis_server_freeze(sl_redis_server_t *rs, bool frozen);

/* Start it again on the same port and directory, wait as start does. */
int sl_redis_server_restart(sl_redis_server_t *rs);

/* Stop it if running and remove its directory. */
void sl_redis_server_release(sl_redis_server_t *rs);

/* Run one command (a NULL-terminated list of arguments) on a connection
 * of its own and return the reply as text in *reply (caller frees):
 * strings and status as they are, integers in decimal, nil as "(nil)",
 * arrays one element per line, errors as they are. 0 for a reply, 1 for
 * an error reply, -1 when the server could not be reached or did not
 * answer within 5 s (*reply NULL). */
int sl_redis_server_cmd(const sl_redis_server_t *rs, char **reply, ...)
    __attribute__((sentinel));

/* INFO's field `name` (e.g. "total_reads_processed", or in the
 * commandstats section "cmdstat_evalsha" -> its calls=) as a number; -1 if
 * absent or unreachable. */
long long sl_redis_server_info(const sl_redis_server_t *rs, const char *section, const char *name);

#endif
