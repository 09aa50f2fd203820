/* dead.c -- `sluice dead list|show|requeue|purge QUEUE ...`: a queue's
 * dead jobs as a table (oldest first), one of them in full, and requeued
 * or purged by id, all, or age, through libsluice's dead-job calls. These
 * are rows of admin.c's command table, which dispatches here. */
#define _GNU_SOURCE
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "sluice/config.h"

#define S_PAYLOAD_SHOWN 32 /* bytes of the payload in a row of `dead list` */
#define S_REASON_SHOWN 48  /* bytes of the reason in a row                 */

/* --- formatting -------------------------------------------------------- */

/* Up to max bytes of p (len of them) into out (size bytes) as one line:
 * printable ASCII as is, the rest escaped (\n, \t, \xNN); "..." when cut. */
static void s_escaped(char *out, size_t size, const void *p, size_t len, size_t max)
{
    const unsigned char *b = p;
    size_t at = 0, shown = len < max ? len : max;
    for (size_t i = 0; i < shown && at + 8 < size; i++) {
        if (b[i] == '\n')
            at += (size_t)snprintf(out + at, size - at, "\\n");
        else if (b[i] == '\t')
            at += (size_t)snprintf(out + at, size - at, "\\t");
        else if (b[i] < 0x20 || b[i] >= 0x7f || b[i] == '\\')
            at += (size_t)snprintf(out + at, size - at, "\\x%02x", b[i]);
        else
            out[at++] = (char)b[i];
    }
    out[at] = '\0';
    if (shown < len && at + 4 < size)
        memcpy(out + at, "...", 4);
}

/* How long ago wall time ms was, short: "42s", "3m05s", "2h10m", "4d03h". */
static void s_age(char *out, size_t size, int64_t ms)
{
    int64_t s = (sl_wall_ms() - ms) / 1000;
    if (s < 0)
        s = 0; /* another machine's clock */
    if (s < 60)
        snprintf(out, size, "%" PRId64 "s", s);
    else if (s < 3600)
        snprintf(out, size, "%" PRId64 "m%02" PRId64 "s", s / 60, s % 60);
    else if (s < 86400)
        snprintf(out, size, "%" PRId64 "h%02" PRId64 "m", s / 3600, s % 3600 / 60);
    else
        snprintf(out, size, "%" PRId64 "d%02" PRId64 "h", s / 86400, s % 86400 / 3600);
}

/* Wall time ms as "2026-12-08T00:43:05.123Z (3m05s ago)"; "-" for 0. */
static void s_when(char *out, size_t size, int64_t ms)
{
    if (ms <= 0) {
        snprintf(out, size, "-");
        return;
    }
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    char day[32], age[32];
    gmtime_r(&t, &tm);
    strftime(day, sizeof day, "%Y-%m-%dT%H:%M:%S", &tm);
    s_age(age, sizeof age, ms);
    snprintf(out, size, "%s.%03dZ (%s ago)", day, (int)(ms % 1000), age);
}

/* --- arguments ----------------------------------------------------------- */

/* The options of a subcommand: --help and these. */
typedef struct {
    long long limit;
    const char *after;
    const char *id;
    bool all;
    int64_t older_than_ms;
} s_args_t;

enum { S_OPT_LIMIT = 1, S_OPT_AFTER, S_OPT_ID, S_OPT_ALL, S_OPT_OLDER };

/* A duration as the daemons read theirs ("90s", "15m", "2h", "1d", "500ms";
 * plain digits: ms), through the shared option parser. */
static int s_duration(const char *text, int64_t *out)
{
    int64_t v = 0;
    sl_conf_opt_t opt[] = {
        {"older-than", SL_CONF_DURATION, "1", NULL, "", .min = 1, .max = INT64_MAX / 2,
         .store = &v},
        {0},
    };
    char *argv[] = {"sluice", "--older-than", (char *)text, NULL};
    char *err = NULL;
    int rc = sl_config_load(opt, 3, argv, &err);
    if (rc != SL_OK) {
        sl_cli_err("%s", err ? err : "--older-than: not a duration");
        free(err);
        return -1;
    }
    *out = v;
    return 0;
}

/* Parse argv (argv[0] the subcommand) into *a, allowing the options in
 * `allow` (S_OPT_* bits), and check that exactly `nargs` arguments follow,
 * the first a queue name. Returns -1 (message printed; *code the exit
 * code), 0, or 1 for --help (printed). */
static int s_parse(const char *usage, int argc, char **argv, unsigned allow, int nargs,
                   s_args_t *a, int *code)
{
    static const struct option opts[] = {
        {"limit", required_argument, NULL, S_OPT_LIMIT},
        {"after", required_argument, NULL, S_OPT_AFTER},
        {"id", required_argument, NULL, S_OPT_ID},
        {"all", no_argument, NULL, S_OPT_ALL},
        {"older-than", required_argument, NULL, S_OPT_OLDER},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    memset(a, 0, sizeof *a);
    *code = SL_CLI_USAGE;
    optind = 0;
    opterr = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (ch == 'h') {
            printf("usage: sluice %s\n", usage);
            *code = SL_CLI_OK;
            return 1;
        }
        if (ch < S_OPT_LIMIT || ch > S_OPT_OLDER) { /* '?': unknown, or no value */
            sl_cli_err("dead %s: unknown option or missing value '%s' (usage: sluice %s)",
                       argv[0], argv[optind - 1], usage);
            return -1;
        }
        if (!(allow & (1u << ch))) {
            sl_cli_err("dead %s: %s is not an option of this command (usage: sluice %s)",
                       argv[0], argv[optind - 1], usage);
            return -1;
        }
        switch (ch) {
        case S_OPT_LIMIT:
            if (sl_cli_num("--limit", optarg, 1, 1000000000, &a->limit) != 0)
                return -1;
            break;
        case S_OPT_AFTER:
            a->after = optarg;
            break;
        case S_OPT_ID:
            a->id = optarg;
            break;
        case S_OPT_ALL:
            a->all = true;
            break;
        case S_OPT_OLDER:
            if (s_duration(optarg, &a->older_than_ms) != 0)
                return -1;
            break;
        }
    }
    int have = argc - optind;
    if (have != nargs) {
        sl_cli_err("dead %s: %s (usage: sluice %s)", argv[0],
                   have == 0 ? "a queue is required"
                   : have < nargs ? "a job id is required"
                                  : "too many arguments",
                   usage);
        return -1;
    }
    const char *queue = argv[optind];
    if (sl_queue_name_check(queue) != SL_OK) {
        sl_cli_err("invalid queue name '%s': 1-%d characters from [A-Za-z0-9._:-]", queue,
                   SL_QUEUE_NAME_MAX);
        return -1;
    }
    return 0;
}

/* A job id as publish prints it (32 hex digits) into id; prints why not. */
static int s_id(const char *what, const char *hex, uint8_t id[SL_ID_LEN])
{
    if (sl_id_from_hex(hex, id) == SL_OK)
        return 0;
    sl_cli_err("dead %s: invalid job id '%s': 32 hex digits, as publish prints them", what,
               hex);
    return -1;
}

/* The exit code for a failed dead-job call, its message printed. */
static int s_fail(const sl_cli_t *cli, sl_client_t *client, const char *what, const char *queue,
                  const char *idhex, int rc, const sl_admin_reply_t *rep)
{
    char verb[32];
    snprintf(verb, sizeof verb, "dead %s", what);
    if (rc == SL_ENOTFOUND && rep && rep->node_code == SL_CODE_BAD_ID) {
        sl_cli_err("%s: no dead job %s in '%s'%s", verb, idhex ? idhex : "", queue,
                   cli->coordinator ? " on any node" : "");
        return SL_CLI_REFUSED;
    }
    if (rc == SL_ENOTFOUND) {
        sl_cli_err("%s: no such queue '%s' on '%s'", verb, queue, sl_cli_target(cli));
        return SL_CLI_REFUSED;
    }
    if (rc == SL_ESTATE && strcmp(what, "list") == 0) {
        sl_cli_err("%s: the job the cursor names is dead no more (requeued or purged): list "
                   "again from the start",
                   verb);
        return SL_CLI_REFUSED;
    }
    if (rc == SL_EINVAL) { /* our checks: a bad cursor or selection */
        sl_cli_err("%s: %s", verb, rep && rep->node_text[0] ? rep->node_text : sl_strerror(rc));
        return SL_CLI_USAGE;
    }
    return sl_cli_fail(cli, client, verb, rc, rep ? rep->node_text : NULL);
}

/* --- list ---------------------------------------------------------------- */

static void s_rows(sl_cli_table_t *t, const sl_dead_job_t *jobs, size_t n, bool cluster)
{
    for (size_t i = 0; i < n; i++) {
        const sl_dead_job_t *j = &jobs[i];
        char(*c)[SL_CLI_CELL] = sl_cli_table_row(t);
        if (!c)
            return;
        int k = 0;
        sl_id_to_hex(j->id, c[k++]);
        if (cluster)
            snprintf(c[k++], SL_CLI_CELL, "%s", j->node_id);
        snprintf(c[k++], SL_CLI_CELL, "%" PRIu32, j->attempt);
        snprintf(c[k++], SL_CLI_CELL, "%" PRIu32, j->failures);
        char age[32];
        s_age(age, sizeof age, j->last_ms);
        snprintf(c[k++], SL_CLI_CELL, "%s ago", age);
        s_escaped(c[k++], SL_CLI_CELL, j->reason, strlen(j->reason), S_REASON_SHOWN);
        s_escaped(c[k++], SL_CLI_CELL, j->payload, j->payload_len, S_PAYLOAD_SHOWN);
    }
}

int sl_cli_dead_list(const sl_cli_t *cli, const char *usage, int argc, char **argv)
{
    s_args_t a;
    int code;
    if (s_parse(usage, argc, argv, 1u << S_OPT_LIMIT | 1u << S_OPT_AFTER, 1, &a, &code) != 0)
        return code;
    const char *queue = argv[optind];
    sl_client_t *client = sl_cli_connect(cli, &code);
    if (!client)
        return code;
    int64_t deadline = sl_deadline_ms(cli->timeout_ms);
    bool cluster = cli->coordinator != NULL;
    static const char *const heads[] = {"ID", "ATTEMPT", "FAILURES", "DIED", "REASON",
                                        "PAYLOAD"};
    static const char *const cheads[] = {"ID",   "NODE",   "ATTEMPT", "FAILURES",
                                         "DIED", "REASON", "PAYLOAD"};
    sl_cli_table_t t = {.ncols = cluster ? 7 : 6,
                        .heads = cluster ? cheads : heads,
                        .left = cluster ? "llrrrll" : "lrrrll"};
    int rc = SL_OK;
    sl_admin_reply_t rep = {0};
    char more[SL_DEAD_CURSOR_MAX] = "";
    if (!a.limit && !a.after) {
        /* Everything: the library follows the pages (and starts again
         * should the list change under its cursor). */
        sl_dead_job_t *jobs = NULL;
        size_t n = 0;
        rc = sl_client_dead_list_all(client, queue, &jobs, &n, deadline);
        if (rc == SL_OK)
            s_rows(&t, jobs, n, cluster);
        sl_dead_jobs_destroy(&jobs, n);
    } else {
        char after[SL_DEAD_CURSOR_MAX] = "";
        if (a.after)
            snprintf(after, sizeof after, "%s", a.after);
        long long left = a.limit ? a.limit : -1;
        while (left != 0) {
            sl_admin_params_t p = {.after = after, .limit = left < 0 ? 0 : (uint32_t)left};
            rc = sl_client_admin_ex(client, SL_ADMIN_DEAD_LIST, queue, &p, &rep, deadline);
            if (rc == SL_OK) {
                s_rows(&t, rep.dead, rep.n_dead, cluster);
                if (left > 0)
                    left -= (long long)(rep.n_dead < (size_t)left ? rep.n_dead : (size_t)left);
            }
            bool next = rc == SL_OK && rep.next[0] && strcmp(rep.next, after) != 0;
            if (next)
                memcpy(after, rep.next, sizeof after);
            if (!next)
                break; /* rep kept for the error message */
            sl_admin_reply_release(&rep);
            if (left == 0)
                memcpy(more, after, sizeof more);
        }
    }
    if (rc != SL_OK) {
        free(t.cells);
        code = s_fail(cli, client, "list", queue, NULL, rc, &rep);
    } else {
        sl_cli_table_print(&t);
        if (more[0])
            fprintf(stderr, "sluice: more dead jobs follow: sluice dead list %s --after %s\n",
                    queue, more);
        code = SL_CLI_OK;
    }
    sl_admin_reply_release(&rep);
    sl_client_destroy(&client);
    return code;
}

/* --- show ---------------------------------------------------------------- */

static void s_line(const char *key, const char *value)
{
    printf("%-16s %s\n", key, value && *value ? value : "-");
}

int sl_cli_dead_show(const sl_cli_t *cli, const char *usage, int argc, char **argv)
{
    s_args_t a;
    int code;
    if (s_parse(usage, argc, argv, 0, 2, &a, &code) != 0)
        return code;
    const char *queue = argv[optind], *hex = argv[optind + 1];
    uint8_t id[SL_ID_LEN];
    if (s_id("show", hex, id) != 0)
        return SL_CLI_USAGE;
    sl_client_t *client = sl_cli_connect(cli, &code);
    if (!client)
        return code;
    sl_admin_reply_t rep;
    sl_admin_params_t p = {.dead.id = id};
    int rc = sl_client_admin_ex(client, SL_ADMIN_DEAD_SHOW, queue, &p, &rep,
                                sl_deadline_ms(cli->timeout_ms));
    if (rc == SL_OK && rep.n_dead == 0)
        rc = SL_EPROTO;
    if (rc != SL_OK) {
        code = s_fail(cli, client, "show", queue, hex, rc, &rep);
    } else {
        const sl_dead_job_t *j = &rep.dead[0];
        char buf[512];
        s_line("id", sl_id_to_hex(j->id, buf));
        s_line("queue", j->queue);
        s_line("node", j->node_id);
        s_line("reason", j->reason);
        s_line("last-error", j->last_error);
        snprintf(buf, sizeof buf, "%" PRIu32, j->attempt);
        s_line("attempt", buf);
        snprintf(buf, sizeof buf, "%" PRIu32, j->failures);
        s_line("failures", buf);
        snprintf(buf, sizeof buf, "%" PRIu32, j->redeliveries);
        s_line("redeliveries", buf);
        s_when(buf, sizeof buf, j->first_ms);
        s_line("created", buf);
        s_when(buf, sizeof buf, j->last_ms);
        s_line("died", buf);
        snprintf(buf, sizeof buf, "%" PRIu32, j->priority);
        s_line("priority", buf);
        if (j->max_attempts)
            snprintf(buf, sizeof buf, "%" PRIu32, j->max_attempts);
        else
            snprintf(buf, sizeof buf, "0 (the queue's)");
        s_line("max-attempts", buf);
        s_when(buf, sizeof buf, j->not_before_ms);
        s_line("not-before", buf);
        s_when(buf, sizeof buf, j->deadline_ms);
        s_line("deadline", buf);
        s_line("idempotency-key", j->idempotency_key);
        s_line("breaker-key", j->breaker_key);
        for (size_t i = 0; i < j->n_headers; i++) {
            snprintf(buf, sizeof buf, "%s=%s", j->headers[i].key, j->headers[i].value);
            s_line("header", buf);
        }
        snprintf(buf, sizeof buf, "%zu bytes, in full on the lines below", j->payload_len);
        s_line("payload", buf);
        fwrite(j->payload, 1, j->payload_len, stdout);
        if (j->payload_len == 0 || ((const char *)j->payload)[j->payload_len - 1] != '\n')
            putchar('\n');
        code = SL_CLI_OK;
    }
    sl_admin_reply_release(&rep);
    sl_client_destroy(&client);
    return code;
}

/* --- requeue, purge ------------------------------------------------------ */

static int s_move(const sl_cli_t *cli, const char *usage, int argc, char **argv,
                  sl_admin_op_t op, const char *done)
{
    s_args_t a;
    int code;
    if (s_parse(usage, argc, argv, 1u << S_OPT_ID | 1u << S_OPT_ALL | 1u << S_OPT_OLDER, 1, &a,
                &code) != 0)
        return code;
    const char *queue = argv[optind];
    if ((a.id != NULL) + a.all + (a.older_than_ms > 0) != 1) {
        sl_cli_err("dead %s: say which dead jobs: one of --id, --all, --older-than (usage: "
                   "sluice %s)",
                   argv[0], usage);
        return SL_CLI_USAGE;
    }
    uint8_t id[SL_ID_LEN];
    if (a.id && s_id(argv[0], a.id, id) != 0)
        return SL_CLI_USAGE;
    sl_client_t *client = sl_cli_connect(cli, &code);
    if (!client)
        return code;
    sl_admin_params_t p = {
        .dead = {.id = a.id ? id : NULL, .all = a.all, .older_than_ms = a.older_than_ms}};
    sl_admin_reply_t rep;
    int rc = sl_client_admin_ex(client, op, queue, &p, &rep, sl_deadline_ms(cli->timeout_ms));
    if (rc != SL_OK) {
        code = s_fail(cli, client, argv[0], queue, a.id, rc, &rep);
    } else {
        printf("%s %" PRIu64 " dead job%s of '%s'\n", done, rep.affected,
               rep.affected == 1 ? "" : "s", queue);
        code = SL_CLI_OK;
    }
    sl_admin_reply_release(&rep);
    sl_client_destroy(&client);
    return code;
}

int sl_cli_dead_requeue(const sl_cli_t *cli, const char *usage, int argc, char **argv)
{
    return s_move(cli, usage, argc, argv, SL_ADMIN_DEAD_REQUEUE, "requeued");
}

int sl_cli_dead_purge(const sl_cli_t *cli, const char *usage, int argc, char **argv)
{
    return s_move(cli, usage, argc, argv, SL_ADMIN_DEAD_PURGE, "purged");
}
