/* admin.c -- `sluice stats [QUEUE]` (a table of queues; with --coordinator
 * the whole cluster: nodes, queues per node, consumers and their
 * assignments) and `sluice pause|resume|drain QUEUE`. */
#define _GNU_SOURCE
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define S_CELL 288   /* bytes per table cell: names, endpoints, node lists */
#define S_COLS_MAX 16

/* A table being built: cells row by row, ncols per row. */
typedef struct {
    int ncols;
    const char *const *heads;
    const char *left;        /* per column: 'l' left-aligned, else right   */
    char (*cells)[S_CELL];
    size_t nrows, cap;
} s_table_t;

/* A new row's ncols cells (empty), or NULL when out of memory. */
static char (*s_row(s_table_t *t))[S_CELL]
{
    if (t->nrows == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 16;
        char(*c)[S_CELL] = realloc(t->cells, cap * (size_t)t->ncols * S_CELL);
        if (!c)
            return NULL;
        t->cells = c;
        t->cap = cap;
    }
    char(*row)[S_CELL] = t->cells + t->nrows++ * (size_t)t->ncols;
    memset(row, 0, (size_t)t->ncols * S_CELL);
    return row;
}

static const char *s_cell(const s_table_t *t, size_t r, int i)
{
    return r == 0 ? t->heads[i] : t->cells[(r - 1) * (size_t)t->ncols + (size_t)i];
}

/* Print t, columns as wide as their widest cell and two spaces apart
 * (names left-aligned, numbers right-aligned), and free its cells. */
static void s_print(s_table_t *t)
{
    int w[S_COLS_MAX] = {0};
    for (size_t r = 0; r <= t->nrows; r++)
        for (int i = 0; i < t->ncols; i++)
            if ((int)strlen(s_cell(t, r, i)) > w[i])
                w[i] = (int)strlen(s_cell(t, r, i));
    for (size_t r = 0; r <= t->nrows; r++) {
        for (int i = 0; i < t->ncols; i++) {
            const char *sep = i == 0 ? "" : "  ";
            if (t->left[i] != 'l')
                printf("%s%*s", sep, w[i], s_cell(t, r, i));
            else if (i + 1 == t->ncols) /* no trailing blanks */
                printf("%s%s", sep, s_cell(t, r, i));
            else
                printf("%s%-*s", sep, w[i], s_cell(t, r, i));
        }
        printf("\n");
    }
    free(t->cells);
    t->cells = NULL;
    t->nrows = t->cap = 0;
}

static void s_queue_table(const sl_queue_stats_t *qs, size_t n)
{
    static const char *const heads[] = {"QUEUE",     "DEPTH",  "DELAYED",   "IN-FLIGHT",
                                        "DEAD",      "PUBLISHED", "ACKED",  "FAILED",
                                        "CONSUMERS", "PUB/S",  "ACK/S",     "PAUSED"};
    s_table_t t = {.ncols = 12, .heads = heads, .left = "lrrrrrrrrrrr"};
    for (size_t r = 0; r < n; r++) {
        const sl_queue_stats_t *q = &qs[r];
        char(*c)[S_CELL] = s_row(&t);
        if (!c)
            break;
        snprintf(c[0], S_CELL, "%s", q->name);
        snprintf(c[1], S_CELL, "%" PRIu64, q->depth);
        snprintf(c[2], S_CELL, "%" PRIu64, q->delayed);
        snprintf(c[3], S_CELL, "%" PRIu64, q->in_flight);
        snprintf(c[4], S_CELL, "%" PRIu64, q->dead);
        snprintf(c[5], S_CELL, "%" PRIu64, q->published);
        snprintf(c[6], S_CELL, "%" PRIu64, q->acked);
        snprintf(c[7], S_CELL, "%" PRIu64, q->failed);
        snprintf(c[8], S_CELL, "%" PRIu32, q->consumers);
        snprintf(c[9], S_CELL, "%.1f", q->publish_rate);
        snprintf(c[10], S_CELL, "%.1f", q->ack_rate);
        snprintf(c[11], S_CELL, "%s", q->paused ? "yes" : "no");
    }
    s_print(&t);
}

/* The whole cluster, or what concerns queue (may be NULL). */
static void s_cluster_tables(const sl_cluster_view_t *v, const char *queue)
{
    static const char *const nheads[] = {"NODE", "ENDPOINT", "ALIVE", "MEMBER-EPOCH",
                                         "CAPACITY", "QUEUES"};
    s_table_t t = {.ncols = 6, .heads = nheads, .left = "lllrrr"};
    size_t alive = 0;
    for (size_t i = 0; i < v->n_nodes; i++) {
        const sl_cluster_node_t *n = &v->nodes[i];
        char(*c)[S_CELL] = s_row(&t);
        if (!c)
            break;
        alive += n->alive;
        snprintf(c[0], S_CELL, "%s", n->node_id);
        snprintf(c[1], S_CELL, "%s", n->endpoint);
        snprintf(c[2], S_CELL, "%s", !n->alive ? "dead" : n->fenced ? "fenced" : "yes");
        snprintf(c[3], S_CELL, "%016" PRIx64, n->member_epoch);
        snprintf(c[4], S_CELL, "%" PRIu32, n->capacity ? n->capacity : 100);
        snprintf(c[5], S_CELL, "%zu", n->n_queues);
    }
    s_print(&t);

    static const char *const qheads[] = {"NODE",      "QUEUE", "DEPTH", "DELAYED",
                                         "IN-FLIGHT", "CONSUMERS", "PUB/S", "ACK/S"};
    t = (s_table_t){.ncols = 8, .heads = qheads, .left = "llrrrrrr"};
    for (size_t i = 0; i < v->n_nodes; i++) {
        const sl_cluster_node_t *n = &v->nodes[i];
        for (size_t k = 0; k < n->n_queues; k++) {
            const sl_queue_load_t *q = &n->queues[k];
            if (queue && strcmp(q->queue, queue) != 0)
                continue;
            char(*c)[S_CELL] = s_row(&t);
            if (!c)
                break;
            snprintf(c[0], S_CELL, "%s", n->node_id);
            snprintf(c[1], S_CELL, "%s", q->queue);
            snprintf(c[2], S_CELL, "%" PRIu64, q->depth);
            snprintf(c[3], S_CELL, "%" PRIu64, q->delayed);
            snprintf(c[4], S_CELL, "%" PRIu64, q->in_flight);
            snprintf(c[5], S_CELL, "%" PRIu32, q->consumers);
            snprintf(c[6], S_CELL, "%.1f", q->publish_rate);
            snprintf(c[7], S_CELL, "%.1f", q->ack_rate);
        }
    }
    printf("\n");
    s_print(&t);

    static const char *const cheads[] = {"CONSUMER", "QUEUE", "CONCURRENCY", "EPOCH",
                                         "ASSIGNED (NODE:SHARE%)"};
    t = (s_table_t){.ncols = 5, .heads = cheads, .left = "llrrl"};
    size_t consumers = 0;
    for (size_t i = 0; i < v->n_consumers; i++) {
        const sl_cluster_consumer_t *cc = &v->consumers[i];
        if (queue && strcmp(cc->queue, queue) != 0)
            continue;
        char(*c)[S_CELL] = s_row(&t);
        if (!c)
            break;
        consumers++;
        snprintf(c[0], S_CELL, "%s", cc->consumer_id);
        snprintf(c[1], S_CELL, "%s", cc->queue);
        snprintf(c[2], S_CELL, "%" PRIu32, cc->concurrency);
        snprintf(c[3], S_CELL, "%016" PRIx64, cc->epoch);
        size_t used = 0;
        for (size_t k = 0; k < cc->n_nodes && used < S_CELL; k++) {
            int w = snprintf(c[4] + used, S_CELL - used, "%s%s:%.1f", k ? " " : "",
                             cc->nodes[k].node_id, cc->nodes[k].share / 10.0);
            used += w > 0 ? (size_t)w : 0;
        }
        if (cc->n_nodes == 0)
            snprintf(c[4], S_CELL, "-");
    }
    printf("\n");
    s_print(&t);
    printf("coordinator %s epoch %016" PRIx64 " nodes %zu (%zu alive) consumers %zu\n",
           v->coordinator_id, v->epoch, v->n_nodes, alive, consumers);
}

static int s_no_options(const char *cmd, const char *usage, int argc, char **argv)
{
    static const struct option opts[] = {{"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    int ch;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (ch == 'h') {
            printf("usage: %s\n", usage);
            return SL_CLI_OK;
        }
        sl_cli_err("%s: unknown option '%s' (usage: %s)", cmd, argv[optind - 1], usage);
        return SL_CLI_USAGE;
    }
    return -1;
}

int sl_cli_stats(const sl_cli_t *cli, int argc, char **argv)
{
    const char *usage = "sluice stats [QUEUE]";
    int code = s_no_options("stats", usage, argc, argv);
    if (code >= 0)
        return code;
    if (argc - optind > 1) {
        sl_cli_err("stats: one queue at most (usage: %s)", usage);
        return SL_CLI_USAGE;
    }
    const char *queue = optind < argc ? argv[optind] : NULL;
    if (queue && sl_queue_name_check(queue) != SL_OK) {
        sl_cli_err("invalid queue name '%s': 1-%d characters from [A-Za-z0-9._:-]", queue,
                   SL_QUEUE_NAME_MAX);
        return SL_CLI_USAGE;
    }
    sl_client_t *client = sl_cli_connect(cli, &code);
    if (!client)
        return code;
    if (cli->coordinator) {
        sl_cluster_view_t view;
        int rc = sl_client_cluster(client, &view, sl_deadline_ms(cli->timeout_ms));
        if (rc == SL_OK) {
            s_cluster_tables(&view, queue);
            code = SL_CLI_OK;
        } else {
            code = sl_cli_fail(cli, client, "stats", rc, NULL);
        }
        sl_cluster_view_release(&view);
        sl_client_destroy(&client);
        return code;
    }
    sl_admin_reply_t rep;
    int rc = sl_client_admin(client, SL_ADMIN_STATS, queue, &rep, sl_deadline_ms(cli->timeout_ms));
    if (rc == SL_ENOTFOUND) {
        sl_cli_err("no such queue '%s' on '%s'", queue, cli->endpoint);
        code = SL_CLI_REFUSED;
    } else if (rc != SL_OK) {
        code = sl_cli_fail(cli, client, "stats", rc, rep.node_text);
    } else {
        s_queue_table(rep.queues, rep.n_queues);
        printf("node %s epoch %016" PRIx64 " peers %" PRIu64 " bad-messages %" PRIu64 "\n",
               rep.node_id, rep.epoch, rep.peers, rep.bad_messages);
        code = SL_CLI_OK;
    }
    sl_client_destroy(&client);
    sl_admin_reply_release(&rep);
    return code;
}

int sl_cli_admin(const sl_cli_t *cli, int argc, char **argv)
{
    const char *cmd = argv[0];
    sl_admin_op_t op = strcmp(cmd, "pause") == 0    ? SL_ADMIN_PAUSE
                       : strcmp(cmd, "resume") == 0 ? SL_ADMIN_RESUME
                                                    : SL_ADMIN_DRAIN;
    const char *done = op == SL_ADMIN_PAUSE    ? "paused"
                       : op == SL_ADMIN_RESUME ? "resumed"
                                               : "draining";
    char usage[64];
    snprintf(usage, sizeof usage, "sluice %s QUEUE", cmd);
    int code = s_no_options(cmd, usage, argc, argv);
    if (code >= 0)
        return code;
    if (argc - optind != 1) {
        sl_cli_err("%s: exactly one queue (usage: %s)", cmd, usage);
        return SL_CLI_USAGE;
    }
    const char *queue = argv[optind];
    if (sl_queue_name_check(queue) != SL_OK) {
        sl_cli_err("invalid queue name '%s': 1-%d characters from [A-Za-z0-9._:-]", queue,
                   SL_QUEUE_NAME_MAX);
        return SL_CLI_USAGE;
    }
    sl_client_t *client = sl_cli_connect(cli, &code);
    if (!client)
        return code;
    sl_admin_reply_t rep;
    int rc = sl_client_admin(client, op, queue, &rep, sl_deadline_ms(cli->timeout_ms));
    if (rc == SL_ENOTFOUND) {
        sl_cli_err("%s: no such queue '%s' on '%s'", cmd, queue, cli->endpoint);
        code = SL_CLI_REFUSED;
    } else if (rc != SL_OK) {
        code = sl_cli_fail(cli, client, cmd, rc, rep.node_text);
    } else {
        printf("%s '%s'\n", done, queue);
        code = SL_CLI_OK;
    }
    sl_client_destroy(&client);
    sl_admin_reply_release(&rep);
    return code;
}
