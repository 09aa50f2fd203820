/* main.c -- the sluice command: publish, consume and administer queues on
 * a Sluice node, or a cluster through its coordinator, from the shell. Global options, subcommand dispatch and
 * what the subcommands share (connecting, error messages, exit codes). */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* The usage: s_usage_head, the admin commands' lines (admin.c), s_usage_tail. */
static const char s_usage_head[] =
    "usage: sluice [--endpoint URL | --coordinator URL] [--timeout-ms N] [-v] COMMAND [ARGS]\n"
    "\n"
    "commands:\n"
    "  publish QUEUE [PAYLOAD...]   publish each PAYLOAD (or each stdin line) as a job\n"
    "      --delay-ms N  --priority 0-9  --key KEY  --ttl-ms N  --max-attempts N\n"
    "      --routing-key KEY (cluster: same key, same node)\n"
    "  consume QUEUE --exec CMD     run CMD (/bin/sh -c) per job, payload on stdin\n"
    "      --concurrency N  --max-jobs N  --touch-ms N\n"
    "      CMD exit 0: ack; 100: permanent failure (dead); other: retry later\n";
static const char s_usage_tail[] =
    "\n"
    "options:\n"
    "  --endpoint URL    node to talk to (env SLUICE_ENDPOINT; default " SL_CLIENT_ENDPOINT_DEFAULT
    ")\n"
    "  --coordinator URL cluster mode: find nodes through sluice-coordinator at URL\n"
    "                    (env SLUICE_COORDINATOR); --endpoint is then unused\n"
    "  --timeout-ms N    give up when the node has not answered in N ms (default 5000)\n"
    "  -v, --verbose     say more (consume: one line per job on stderr)\n"
    "\n"
    "exit: 0 ok, 1 refused by the node, 2 usage, 3 node unreachable or timed out\n"
    "(see docs/client.md)\n";

static void s_usage(FILE *out)
{
    fputs(s_usage_head, out);
    sl_cli_admin_usage(out);
    fputs(s_usage_tail, out);
}

void sl_cli_err(const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    fprintf(stderr, "sluice: %s\n", buf);
}

int sl_cli_num(const char *opt, const char *s, long long min, long long max, long long *out)
{
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || !end || end == s || *end || v < min || v > max) {
        sl_cli_err("%s wants a whole number from %lld to %lld, not '%s'", opt, min, max, s);
        return -1;
    }
    *out = v;
    return 0;
}

const char *sl_cli_target(const sl_cli_t *cli)
{
    return cli->coordinator ? cli->coordinator : cli->endpoint;
}

sl_client_t *sl_cli_connect(const sl_cli_t *cli, int *code)
{
    int err = SL_OK;
    sl_client_opts_t o = {.endpoint = cli->endpoint, .coordinator = cli->coordinator};
    sl_client_t *c = sl_client_new(&o, &err);
    if (!c) {
        if (err == SL_EINVAL) {
            sl_cli_err("invalid endpoint '%s' (expected e.g. tcp://127.0.0.1:%s)",
                       sl_cli_target(cli), cli->coordinator ? "7440" : "7450");
            *code = SL_CLI_USAGE;
        } else {
            sl_cli_err("cannot create a client: %s", sl_strerror(err));
            *code = SL_CLI_UNREACHABLE;
        }
        return NULL;
    }
    return c;
}

int sl_cli_fail(const sl_cli_t *cli, sl_client_t *client, const char *what, int rc,
                const char *node_text)
{
    const char *text = node_text && *node_text ? node_text : sl_strerror(rc);
    sl_client_counters_t k = {0};
    if (client)
        sl_client_counters(client, &k);
    const char *peer = cli->coordinator ? "coordinator" : "node";
    switch (rc) {
    case SL_ETIMEDOUT:
        if (k.received == 0 && !k.linked)
            sl_cli_err("cannot reach %s at '%s': no answer within %d ms", peer,
                       sl_cli_target(cli), cli->timeout_ms);
        else if (cli->coordinator && strcmp(what, "publish") == 0 && k.routes == 0)
            sl_cli_err("publish: no route to a node within %d ms (does the coordinator "
                       "at '%s' list any live node?)",
                       cli->timeout_ms, cli->coordinator);
        else if (strcmp(what, "publish") == 0)
            sl_cli_err("publish: no confirm within %d ms (a full queue under the block "
                       "policy holds confirms back; --timeout-ms waits longer)",
                       cli->timeout_ms);
        else
            sl_cli_err("%s: %s at '%s' did not answer within %d ms", what, peer,
                       sl_cli_target(cli), cli->timeout_ms);
        return SL_CLI_UNREACHABLE;
    case SL_ECLOSED:
        sl_cli_err("%s: connection closed", what);
        return SL_CLI_UNREACHABLE;
    case SL_EINVAL:
        sl_cli_err("%s: %s", what, text);
        return node_text && *node_text ? SL_CLI_REFUSED : SL_CLI_USAGE;
    default:
        sl_cli_err("%s: %s", what, text);
        return SL_CLI_REFUSED;
    }
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"endpoint", required_argument, NULL, 'e'},
        {"coordinator", required_argument, NULL, 'c'},
        {"timeout-ms", required_argument, NULL, 't'},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    sl_cli_t cli = {.endpoint = getenv("SLUICE_ENDPOINT"), .timeout_ms = 5000};
    if (!cli.endpoint || !*cli.endpoint)
        cli.endpoint = SL_CLIENT_ENDPOINT_DEFAULT;
    cli.coordinator = getenv("SLUICE_COORDINATOR");
    if (cli.coordinator && !*cli.coordinator)
        cli.coordinator = NULL;
    signal(SIGPIPE, SIG_IGN);
    int ch;
    long long v;
    opterr = 0;
    /* "+": stop at the command; its own options are parsed by it. */
    while ((ch = getopt_long(argc, argv, "+vh", opts, NULL)) != -1) {
        switch (ch) {
        case 'e':
            cli.endpoint = optarg;
            break;
        case 'c':
            cli.coordinator = *optarg ? optarg : NULL;
            break;
        case 't':
            if (sl_cli_num("--timeout-ms", optarg, 1, 86400000, &v) != 0)
                return SL_CLI_USAGE;
            cli.timeout_ms = (int)v;
            break;
        case 'v':
            cli.verbose = 1;
            break;
        case 'h':
            s_usage(stdout);
            return SL_CLI_OK;
        default:
            sl_cli_err("unknown option '%s' (see sluice --help)", argv[optind - 1]);
            return SL_CLI_USAGE;
        }
    }
    if (optind >= argc) {
        s_usage(stderr);
        return SL_CLI_USAGE;
    }
    const char *cmd = argv[optind];
    int sub_argc = argc - optind;
    char **sub_argv = argv + optind;
    optind = 0; /* glibc: restart scanning for the subcommand */
    if (strcmp(cmd, "publish") == 0)
        return sl_cli_publish(&cli, sub_argc, sub_argv);
    if (strcmp(cmd, "consume") == 0)
        return sl_cli_consume(&cli, sub_argc, sub_argv);
    if (sl_cli_is_admin(cmd))
        return sl_cli_admin(&cli, sub_argc, sub_argv);
    if (strcmp(cmd, "help") == 0) {
        s_usage(stdout);
        return SL_CLI_OK;
    }
    sl_cli_err("unknown command '%s' (see sluice --help)", cmd);
    return SL_CLI_USAGE;
}
