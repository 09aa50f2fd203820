/* cli.h -- what the sluice command's subcommands share: global options,
 * exit codes and the error printer. */
#ifndef SLUICE_CLI_H
#define SLUICE_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "sluice/client.h"

/* Exit codes of the sluice command (docs/client.md). */
enum {
    SL_CLI_OK = 0,          /* done                                       */
    SL_CLI_REFUSED = 1,     /* the node refused: rejected job, no such
                               queue, ...                                 */
    SL_CLI_USAGE = 2,       /* bad command line                           */
    SL_CLI_UNREACHABLE = 3  /* no answer from the node in time            */
};

typedef struct {
    const char *endpoint;
    const char *coordinator;    /* cluster mode when set (endpoint unused) */
    int timeout_ms;
    int verbose;
} sl_cli_t;

/* What the command talks to: the coordinator's endpoint in cluster mode,
 * else the node's; for messages. */
const char *sl_cli_target(const sl_cli_t *cli);

/* Print "sluice: <message>\n" to stderr. */
void sl_cli_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Parse a non-negative integer option into *out; prints the error and
 * returns -1 when s is not one within [min, max]. */
int sl_cli_num(const char *opt, const char *s, long long min, long long max, long long *out);

/* A client for cli->endpoint (a cluster client with --coordinator), or NULL with the error printed and *code set
 * to the exit code. Caller owns. Connecting is not waited for: each
 * command's first request, bounded by --timeout-ms, tells whether the node
 * is there (the node speaks first only at its next heartbeat). */
sl_client_t *sl_cli_connect(const sl_cli_t *cli, int *code);

/* Print why a call on the node failed (rc; the node's text if any) and
 * return the exit code. client (may be NULL) tells "unreachable" from
 * "slow" on a timeout. */
int sl_cli_fail(const sl_cli_t *cli, sl_client_t *client, const char *what, int rc,
                const char *node_text);

/* table.c: a table being built, cells row by row, ncols per row (at most
 * SL_CLI_COLS_MAX); heads and left are borrowed. */
#define SL_CLI_CELL 288   /* bytes per cell: names, endpoints, node lists */
#define SL_CLI_COLS_MAX 32
typedef struct {
    int ncols;
    const char *const *heads;
    const char *left;        /* per column: 'l' left-aligned, else right   */
    char (*cells)[SL_CLI_CELL];
    size_t nrows, cap;
} sl_cli_table_t;
/* A new row's ncols cells (empty, borrowed until the table is printed),
 * or NULL when out of memory. */
char (*sl_cli_table_row(sl_cli_table_t *t))[SL_CLI_CELL];
/* Print t, columns as wide as their widest cell and two spaces apart
 * (left-aligned or right-aligned as t->left says), and free its cells. */
void sl_cli_table_print(sl_cli_table_t *t);

int sl_cli_publish(const sl_cli_t *cli, int argc, char **argv);
int sl_cli_consume(const sl_cli_t *cli, int argc, char **argv);

/* admin.c: the admin commands (stats, pause, resume, drain, policy, dead
 * ...). Is cmd one of them; run argv[0], one of them; print their lines
 * of `sluice --help`. */
bool sl_cli_is_admin(const char *cmd);
int sl_cli_admin(const sl_cli_t *cli, int argc, char **argv);
void sl_cli_admin_usage(FILE *out);

/* dead.c: `sluice dead list|show|requeue|purge`, rows of admin.c's table.
 * argv[0] is the subcommand; usage its line, for messages. Each returns
 * the exit code. */
int sl_cli_dead_list(const sl_cli_t *cli, const char *usage, int argc, char **argv);
int sl_cli_dead_show(const sl_cli_t *cli, const char *usage, int argc, char **argv);
int sl_cli_dead_requeue(const sl_cli_t *cli, const char *usage, int argc, char **argv);
int sl_cli_dead_purge(const sl_cli_t *cli, const char *usage, int argc, char **argv);

#endif
