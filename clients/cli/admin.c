/* admin.c -- the admin commands: `sluice stats [QUEUE]` (a table of
 * queues; with --coordinator the whole cluster: nodes, queues per node,
 * consumers and their assignments), `sluice pause|resume|drain QUEUE`,
 * `sluice policy QUEUE [SPEC]` and `sluice dead SUBCOMMAND QUEUE ...`
 * (dead.c). One table of them (s_cmds) gives their dispatch, usage and
 * lines in `sluice --help`. */
#define _GNU_SOURCE
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* One cell of the stats table, by the field's kind (sluice/stats.h). */
static void s_cell_U64(char *c, uint64_t v) { snprintf(c, SL_CLI_CELL, "%" PRIu64, v); }
static void s_cell_U32(char *c, uint32_t v) { snprintf(c, SL_CLI_CELL, "%" PRIu32, v); }
static void s_cell_BOOL(char *c, bool v) { snprintf(c, SL_CLI_CELL, "%s", v ? "yes" : "no"); }
static void s_cell_RATE(char *c, double v) { snprintf(c, SL_CLI_CELL, "%.1f", v); }
static void s_cell_TEXT(char *c, const char *v) { snprintf(c, SL_CLI_CELL, "%s", v); }

/* The columns are the fields of sluice/stats.h that name a header, in its
 * order; text left-aligned, numbers right-aligned. */
static void s_queue_table(const sl_queue_stats_t *qs, size_t n)
{
    static const char *const all[] = {
#define S_HEAD(field, kind, size, merge, head, help) head,
        SL_QUEUE_STATS_FIELDS(S_HEAD)
#undef S_HEAD
    };
    static const char *const kinds[] = {
#define S_KIND(field, kind, size, merge, head, help) #kind,
        SL_QUEUE_STATS_FIELDS(S_KIND)
#undef S_KIND
    };
    _Static_assert(sizeof all / sizeof *all <= SL_CLI_COLS_MAX, "more stats than SL_CLI_COLS_MAX");
    const char *heads[SL_CLI_COLS_MAX];
    char left[SL_CLI_COLS_MAX + 1] = "";
    int ncols = 0;
    for (size_t i = 0; i < sizeof all / sizeof *all && ncols < SL_CLI_COLS_MAX; i++) {
        if (!all[i][0])
            continue;
        left[ncols] = strcmp(kinds[i], "TEXT") == 0 ? 'l' : 'r';
        heads[ncols++] = all[i];
    }
    sl_cli_table_t t = {.ncols = ncols, .heads = heads, .left = left};
    for (size_t r = 0; r < n; r++) {
        const sl_queue_stats_t *q = &qs[r];
        char(*c)[SL_CLI_CELL] = sl_cli_table_row(&t);
        if (!c)
            break;
        int k = 0;
#define S_FILL(field, kind, size, merge, head, help) \
    if ((head)[0] && k < ncols)                       \
        s_cell_##kind(c[k++], q->field);
        SL_QUEUE_STATS_FIELDS(S_FILL)
#undef S_FILL
    }
    sl_cli_table_print(&t);
}

/* The whole cluster, or what concerns queue (may be NULL). */
static void s_cluster_tables(const sl_cluster_view_t *v, const char *queue)
{
    static const char *const nheads[] = {"NODE", "ENDPOINT", "ALIVE", "MEMBER-EPOCH",
                                         "CAPACITY", "QUEUES"};
    sl_cli_table_t t = {.ncols = 6, .heads = nheads, .left = "lllrrr"};
    size_t alive = 0;
    for (size_t i = 0; i < v->n_nodes; i++) {
        const sl_cluster_node_t *n = &v->nodes[i];
        char(*c)[SL_CLI_CELL] = sl_cli_table_row(&t);
        if (!c)
            break;
        alive += n->alive;
        snprintf(c[0], SL_CLI_CELL, "%s", n->node_id);
        snprintf(c[1], SL_CLI_CELL, "%s", n->endpoint);
        snprintf(c[2], SL_CLI_CELL, "%s", !n->alive ? "dead" : n->fenced ? "fenced" : "yes");
        snprintf(c[3], SL_CLI_CELL, "%016" PRIx64, n->member_epoch);
        snprintf(c[4], SL_CLI_CELL, "%" PRIu32, n->capacity ? n->capacity : 100);
        snprintf(c[5], SL_CLI_CELL, "%zu", n->n_queues);
    }
    sl_cli_table_print(&t);

    static const char *const qheads[] = {"NODE",      "QUEUE", "DEPTH", "DELAYED",
                                         "IN-FLIGHT", "CONSUMERS", "PUB/S", "ACK/S"};
    t = (sl_cli_table_t){.ncols = 8, .heads = qheads, .left = "llrrrrrr"};
    for (size_t i = 0; i < v->n_nodes; i++) {
        const sl_cluster_node_t *n = &v->nodes[i];
        for (size_t k = 0; k < n->n_queues; k++) {
            const sl_queue_load_t *q = &n->queues[k];
            if (queue && strcmp(q->queue, queue) != 0)
                continue;
            char(*c)[SL_CLI_CELL] = sl_cli_table_row(&t);
            if (!c)
                break;
            snprintf(c[0], SL_CLI_CELL, "%s", n->node_id);
            snprintf(c[1], SL_CLI_CELL, "%s", q->queue);
            snprintf(c[2], SL_CLI_CELL, "%" PRIu64, q->depth);
            snprintf(c[3], SL_CLI_CELL, "%" PRIu64, q->delayed);
            snprintf(c[4], SL_CLI_CELL, "%" PRIu64, q->in_flight);
            snprintf(c[5], SL_CLI_CELL, "%" PRIu32, q->consumers);
            snprintf(c[6], SL_CLI_CELL, "%.1f", q->publish_rate);
            snprintf(c[7], SL_CLI_CELL, "%.1f", q->ack_rate);
        }
    }
    printf("\n");
    sl_cli_table_print(&t);

    static const char *const cheads[] = {"CONSUMER", "QUEUE", "CONCURRENCY", "EPOCH",
                                         "ASSIGNED (NODE:SHARE%)"};
    t = (sl_cli_table_t){.ncols = 5, .heads = cheads, .left = "llrrl"};
    size_t consumers = 0;
    for (size_t i = 0; i < v->n_consumers; i++) {
        const sl_cluster_consumer_t *cc = &v->consumers[i];
        if (queue && strcmp(cc->queue, queue) != 0)
            continue;
        char(*c)[SL_CLI_CELL] = sl_cli_table_row(&t);
        if (!c)
            break;
        consumers++;
        snprintf(c[0], SL_CLI_CELL, "%s", cc->consumer_id);
        snprintf(c[1], SL_CLI_CELL, "%s", cc->queue);
        snprintf(c[2], SL_CLI_CELL, "%" PRIu32, cc->concurrency);
        snprintf(c[3], SL_CLI_CELL, "%016" PRIx64, cc->epoch);
        size_t used = 0;
        for (size_t k = 0; k < cc->n_nodes && used < SL_CLI_CELL; k++) {
            int w = snprintf(c[4] + used, SL_CLI_CELL - used, "%s%s:%.1f", k ? " " : "",
                             cc->nodes[k].node_id, cc->nodes[k].share / 10.0);
            used += w > 0 ? (size_t)w : 0;
        }
        if (cc->n_nodes == 0)
            snprintf(c[4], SL_CLI_CELL, "-");
    }
    printf("\n");
    sl_cli_table_print(&t);
    printf("coordinator %s epoch %016" PRIx64 " nodes %zu (%zu alive) consumers %zu\n",
           v->coordinator_id, v->epoch, v->n_nodes, alive, consumers);
}

/* --- the commands ------------------------------------------------------ */

typedef struct s_cmd s_cmd_t;

/* What a command takes after its name. */
typedef enum {
    S_QUEUE_OPT,  /* [QUEUE]: one queue, or every queue                     */
    S_QUEUE,      /* QUEUE                                                  */
    S_QUEUE_ARG   /* QUEUE [ARG]: without ARG, the queue's STATS            */
} s_args_t;

struct s_cmd {
    const char *name;
    const char *sub;      /* `sluice NAME SUB ...`; NULL: no subcommand     */
    sl_admin_op_t op;
    s_args_t args;
    const char *usage;    /* after "sluice "                                */
    const char *help;     /* its line in `sluice --help`                    */
    const char *done;     /* on success print "<done> 'QUEUE'"; or NULL:    */
    void (*show)(const s_cmd_t *cmd, const char *queue, const sl_admin_reply_t *rep);
    /* with --coordinator, instead of asking every node (NULL: ask them) */
    int (*cluster)(const sl_cli_t *cli, sl_client_t *client, const char *queue);
    /* a command that reads its own arguments (argv[0]: the subcommand, or
     * the command), instead of all the above */
    int (*run)(const sl_cli_t *cli, const char *usage, int argc, char **argv);
};

static void s_show_stats(const s_cmd_t *cmd, const char *queue, const sl_admin_reply_t *rep)
{
    (void)cmd;
    (void)queue;
    s_queue_table(rep->queues, rep->n_queues);
    printf("node %s epoch %016" PRIx64 " peers %" PRIu64 " bad-messages %" PRIu64 "\n",
           rep->node_id, rep->epoch, rep->peers, rep->bad_messages);
}

/* "QUEUE POLICY": the policy in force, after a change too. */
static void s_show_policy(const s_cmd_t *cmd, const char *queue, const sl_admin_reply_t *rep)
{
    (void)cmd;
    printf("%s %s\n", queue, rep->n_queues ? rep->queues[0].policy : "");
}

static int s_cluster_stats(const sl_cli_t *cli, sl_client_t *client, const char *queue)
{
    sl_cluster_view_t view;
    int rc = sl_client_cluster(client, &view, sl_deadline_ms(cli->timeout_ms));
    int code = SL_CLI_OK;
    if (rc == SL_OK)
        s_cluster_tables(&view, queue);
    else
        code = sl_cli_fail(cli, client, "stats", rc, NULL);
    sl_cluster_view_release(&view);
    return code;
}

/* The admin commands. A new one is a row here (and its Admin op). */
static const s_cmd_t s_cmds[] = {
    {"stats", NULL, SL_ADMIN_STATS, S_QUEUE_OPT, "stats [QUEUE]",
     "table of queues (cluster: nodes, queues, consumers)", NULL, s_show_stats,
     s_cluster_stats, NULL},
    {"pause", NULL, SL_ADMIN_PAUSE, S_QUEUE, "pause QUEUE",
     "stop deliveries (publishes still accepted)", "paused", NULL, NULL, NULL},
    {"resume", NULL, SL_ADMIN_RESUME, S_QUEUE, "resume QUEUE", "deliver again (also ends drain)",
     "resumed", NULL, NULL, NULL},
    {"drain", NULL, SL_ADMIN_DRAIN, S_QUEUE, "drain QUEUE",
     "refuse publishes, deliver what is left", "draining", NULL, NULL, NULL},
    {"policy", NULL, SL_ADMIN_POLICY, S_QUEUE_ARG, "policy QUEUE [KEY=VALUE,...]",
     "the queue's policy; with keys, set them first", NULL, s_show_policy, NULL, NULL},
    {"dead", "list", SL_ADMIN_DEAD_LIST, S_QUEUE, "dead list QUEUE [--limit N] [--after CURSOR]",
     "the queue's dead jobs, oldest first", NULL, NULL, NULL, sl_cli_dead_list},
    {"dead", "show", SL_ADMIN_DEAD_SHOW, S_QUEUE, "dead show QUEUE ID",
     "one dead job: every field, the payload in full", NULL, NULL, NULL, sl_cli_dead_show},
    {"dead", "requeue", SL_ADMIN_DEAD_REQUEUE, S_QUEUE,
     "dead requeue QUEUE (--id ID | --all | --older-than DURATION)",
     "ready again, attempts counted from 0", NULL, NULL, NULL, sl_cli_dead_requeue},
    {"dead", "purge", SL_ADMIN_DEAD_PURGE, S_QUEUE,
     "dead purge QUEUE (--id ID | --all | --older-than DURATION)", "drop them for good", NULL,
     NULL, NULL, sl_cli_dead_purge},
};

#define S_NCMDS (sizeof s_cmds / sizeof *s_cmds)

/* The row for `name` (and, for a command with subcommands, `sub`). */
static const s_cmd_t *s_find(const char *name, const char *sub)
{
    for (size_t i = 0; i < S_NCMDS; i++)
        if (strcmp(s_cmds[i].name, name) == 0 &&
            (!s_cmds[i].sub || (sub && strcmp(s_cmds[i].sub, sub) == 0)))
            return &s_cmds[i];
    return NULL;
}

bool sl_cli_is_admin(const char *cmd)
{
    for (size_t i = 0; i < S_NCMDS; i++)
        if (strcmp(s_cmds[i].name, cmd) == 0)
            return true;
    return false;
}

/* The lines of the commands named name (NULL: every one). */
static void s_usage(FILE *out, const char *name)
{
    for (size_t i = 0; i < S_NCMDS; i++) {
        if (name && strcmp(s_cmds[i].name, name) != 0)
            continue;
        if (strlen(s_cmds[i].usage) > 28) /* the help on a line of its own */
            fprintf(out, "  %s\n  %-28s %s\n", s_cmds[i].usage, "", s_cmds[i].help);
        else
            fprintf(out, "  %-28s %s\n", s_cmds[i].usage, s_cmds[i].help);
    }
}

void sl_cli_admin_usage(FILE *out)
{
    s_usage(out, NULL);
}

int sl_cli_admin(const sl_cli_t *cli, int argc, char **argv)
{
    const s_cmd_t *cmd = s_find(argv[0], argc > 1 ? argv[1] : NULL);
    if (!cmd && argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        printf("usage:\n");
        s_usage(stdout, argv[0]);
        return SL_CLI_OK;
    }
    if (!cmd) {
        if (argc > 1)
            sl_cli_err("%s: unknown subcommand '%s'; usage:", argv[0], argv[1]);
        else
            sl_cli_err("%s: a subcommand is required; usage:", argv[0]);
        s_usage(stderr, argv[0]);
        return SL_CLI_USAGE;
    }
    if (cmd->run)
        return cmd->run(cli, cmd->usage, argc - 1, argv + 1);
    static const struct option opts[] = {{"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    int ch;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (ch == 'h') {
            printf("usage: sluice %s\n", cmd->usage);
            return SL_CLI_OK;
        }
        sl_cli_err("%s: unknown option '%s' (usage: sluice %s)", cmd->name, argv[optind - 1],
                   cmd->usage);
        return SL_CLI_USAGE;
    }
    int nargs = argc - optind;
    if ((cmd->args == S_QUEUE && nargs != 1) || (cmd->args == S_QUEUE_OPT && nargs > 1) ||
        (cmd->args == S_QUEUE_ARG && (nargs < 1 || nargs > 2))) {
        sl_cli_err("%s: %s (usage: sluice %s)", cmd->name,
                   cmd->args == S_QUEUE_OPT ? "one queue at most"
                   : nargs == 0             ? "a queue is required"
                                            : "too many arguments",
                   cmd->usage);
        return SL_CLI_USAGE;
    }
    const char *queue = nargs > 0 ? argv[optind] : NULL;
    const char *arg = nargs > 1 ? argv[optind + 1] : NULL;
    if (queue && sl_queue_name_check(queue) != SL_OK) {
        sl_cli_err("invalid queue name '%s': 1-%d characters from [A-Za-z0-9._:-]", queue,
                   SL_QUEUE_NAME_MAX);
        return SL_CLI_USAGE;
    }
    int code;
    sl_client_t *client = sl_cli_connect(cli, &code);
    if (!client)
        return code;
    if (cli->coordinator && cmd->cluster) {
        code = cmd->cluster(cli, client, queue);
        sl_client_destroy(&client);
        return code;
    }
    /* QUEUE [ARG] without ARG shows the queue as it is. */
    sl_admin_op_t op = cmd->args == S_QUEUE_ARG && !arg ? SL_ADMIN_STATS : cmd->op;
    sl_admin_params_t params = {0};
    if (op == SL_ADMIN_POLICY)
        params.policy = arg;
    sl_admin_reply_t rep;
    int rc = sl_client_admin_ex(client, op, queue, &params, &rep,
                                sl_deadline_ms(cli->timeout_ms));
    if (rc == SL_ENOTFOUND) {
        sl_cli_err("%s: no such queue '%s' on '%s'", cmd->name, queue, sl_cli_target(cli));
        code = SL_CLI_REFUSED;
    } else if (rc == SL_EINVAL && op == SL_ADMIN_POLICY && rep.node_code) {
        sl_cli_err("%s: invalid policy '%s' for '%s': %s", cmd->name, arg, queue,
                   rep.node_text);
        code = SL_CLI_REFUSED;
    } else if (rc != SL_OK) {
        code = sl_cli_fail(cli, client, cmd->name, rc, rep.node_text);
    } else {
        if (cmd->done)
            printf("%s '%s'\n", cmd->done, queue);
        else
            cmd->show(cmd, queue, &rep);
        code = SL_CLI_OK;
    }
    sl_client_destroy(&client);
    sl_admin_reply_release(&rep);
    return code;
}
