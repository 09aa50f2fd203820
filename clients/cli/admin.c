/* admin.c -- `sluice stats [QUEUE]` (a table of queues) and `sluice
 * pause|resume|drain QUEUE`. */
#define _GNU_SOURCE
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

#define S_COLS 10

static const char *const s_heads[S_COLS] = {"QUEUE", "DEPTH", "DELAYED", "IN-FLIGHT", "DEAD",
                                             "PUBLISHED", "ACKED", "FAILED", "CONSUMERS", "PAUSED"};

static void s_cells(const sl_queue_stats_t *q, char cells[S_COLS][SL_QUEUE_NAME_MAX + 1])
{
    snprintf(cells[0], sizeof cells[0], "%s", q->name);
    snprintf(cells[1], sizeof cells[1], "%" PRIu64, q->depth);
    snprintf(cells[2], sizeof cells[2], "%" PRIu64, q->delayed);
    snprintf(cells[3], sizeof cells[3], "%" PRIu64, q->in_flight);
    snprintf(cells[4], sizeof cells[4], "%" PRIu64, q->dead);
    snprintf(cells[5], sizeof cells[5], "%" PRIu64, q->published);
    snprintf(cells[6], sizeof cells[6], "%" PRIu64, q->acked);
    snprintf(cells[7], sizeof cells[7], "%" PRIu64, q->failed);
    snprintf(cells[8], sizeof cells[8], "%" PRIu32, q->consumers);
    snprintf(cells[9], sizeof cells[9], "%s", q->paused ? "yes" : "no");
}

static void s_table(const sl_queue_stats_t *qs, size_t n)
{
    size_t w[S_COLS];
    char cells[S_COLS][SL_QUEUE_NAME_MAX + 1];
    for (int i = 0; i < S_COLS; i++)
        w[i] = strlen(s_heads[i]);
    for (size_t r = 0; r < n; r++) {
        s_cells(&qs[r], cells);
        for (int i = 0; i < S_COLS; i++)
            if (strlen(cells[i]) > w[i])
                w[i] = strlen(cells[i]);
    }
    /* The name left-aligned, numbers right-aligned, two spaces between. */
    for (int i = 0; i < S_COLS; i++)
        printf(i == 0 ? "%-*s" : "  %*s", (int)w[i], s_heads[i]);
    printf("\n");
    for (size_t r = 0; r < n; r++) {
        s_cells(&qs[r], cells);
        for (int i = 0; i < S_COLS; i++)
            printf(i == 0 ? "%-*s" : "  %*s", (int)w[i], cells[i]);
        printf("\n");
    }
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
    sl_admin_reply_t rep;
    int rc = sl_client_admin(client, SL_ADMIN_STATS, queue, &rep, sl_deadline_ms(cli->timeout_ms));
    if (rc == SL_ENOTFOUND) {
        sl_cli_err("no such queue '%s' on '%s'", queue, cli->endpoint);
        code = SL_CLI_REFUSED;
    } else if (rc != SL_OK) {
        code = sl_cli_fail(cli, client, "stats", rc, rep.node_text);
    } else {
        s_table(rep.queues, rep.n_queues);
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
