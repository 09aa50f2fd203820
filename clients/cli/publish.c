/* publish.c -- `sluice publish QUEUE [PAYLOAD...]`: each argument, or each
 * line of stdin, becomes one job. Jobs go out in batches, several batches
 * in flight at once, and one line per confirm is printed in input order. */
#define _GNU_SOURCE
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define S_BATCH_JOBS 128
#define S_BATCH_BYTES (512 * 1024) /* well under the node's 1 MiB frame   */
#define S_IN_FLIGHT 8              /* batches awaiting confirms at once    */

typedef struct {
    const sl_cli_t *cli;
    sl_client_t *client;
    sl_job_t tmpl;                 /* options shared by every job          */
    sl_chan_t *flight[S_IN_FLIGHT];/* promises, oldest first               */
    size_t nflight;
    size_t published, rejected;
    int code;                      /* exit code once something failed      */
} s_pub_t;

static const char *s_status_name(sl_confirm_status_t st)
{
    switch (st) {
    case SL_CONFIRM_ACCEPTED:
        return "accepted";
    case SL_CONFIRM_DUPLICATE:
        return "duplicate";
    default:
        return "rejected";
    }
}

/* Wait for the oldest batch and print its confirms. */
static int s_collect(s_pub_t *p)
{
    sl_chan_t *promise = p->flight[0];
    memmove(p->flight, p->flight + 1, (p->nflight - 1) * sizeof p->flight[0]);
    p->nflight--;
    void *v = NULL;
    int rc = sl_take(promise, &v);
    sl_chan_destroy(&promise);
    sl_publish_result_t *res = v;
    if (rc != SL_OK || !res) {
        p->code = sl_cli_fail(p->cli, p->client, "publish", SL_ECLOSED, NULL);
        return -1;
    }
    if (res->status != SL_OK) {
        p->code = sl_cli_fail(p->cli, p->client, "publish", res->status, res->error);
        sl_publish_result_destroy(&res);
        return -1;
    }
    for (size_t i = 0; i < res->n; i++) {
        const sl_confirm_t *cf = &res->confirms[i];
        char hex[SL_ID_HEX_LEN + 1];
        sl_id_to_hex(cf->id, hex);
        if (cf->status == SL_CONFIRM_REJECTED) {
            p->rejected++;
            if (cf->retry_after_ms)
                printf("%s rejected %s (retry after %u ms)\n", hex, cf->reason, cf->retry_after_ms);
            else
                printf("%s rejected %s\n", hex, cf->reason);
        } else {
            printf("%s %s\n", hex, s_status_name(cf->status));
        }
    }
    fflush(stdout);
    sl_publish_result_destroy(&res);
    return 0;
}

/* Publish payloads[0..n-1] as one batch. */
static int s_send(s_pub_t *p, char **payloads, size_t *lens, size_t n)
{
    if (n == 0)
        return 0;
    if (p->nflight == S_IN_FLIGHT && s_collect(p) != 0)
        return -1;
    sl_job_t jobs[S_BATCH_JOBS];
    for (size_t i = 0; i < n; i++) {
        jobs[i] = p->tmpl;
        jobs[i].payload = payloads[i];
        jobs[i].payload_len = lens[i];
    }
    int err = SL_OK;
    sl_chan_t *promise = sl_client_publish_async(p->client, jobs, n,
                                                 sl_deadline_ms(p->cli->timeout_ms), &err);
    if (!promise) {
        if (err == SL_ETOOBIG)
            sl_cli_err("publish: a job is larger than the node's frame limit (1 MiB)");
        else
            p->code = sl_cli_fail(p->cli, p->client, "publish", err, NULL);
        if (err == SL_ETOOBIG)
            p->code = SL_CLI_USAGE;
        return -1;
    }
    p->flight[p->nflight++] = promise;
    p->published += n;
    return 0;
}

static int s_from_args(s_pub_t *p, char **args, size_t n)
{
    for (size_t off = 0; off < n; off += S_BATCH_JOBS) {
        size_t k = n - off < S_BATCH_JOBS ? n - off : S_BATCH_JOBS;
        size_t lens[S_BATCH_JOBS];
        for (size_t i = 0; i < k; i++)
            lens[i] = strlen(args[off + i]);
        if (s_send(p, args + off, lens, k) != 0)
            return -1;
    }
    return 0;
}

static int s_from_stdin(s_pub_t *p)
{
    char *lines[S_BATCH_JOBS];
    size_t lens[S_BATCH_JOBS];
    size_t n = 0, bytes = 0;
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int rc = 0;
    while ((len = getline(&line, &cap, stdin)) >= 0) {
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        if (len == 0)
            continue; /* blank lines are not jobs */
        if (n == S_BATCH_JOBS || (n > 0 && bytes + (size_t)len > S_BATCH_BYTES)) {
            rc = s_send(p, lines, lens, n);
            for (size_t i = 0; i < n; i++)
                free(lines[i]);
            n = bytes = 0;
            if (rc != 0)
                break;
        }
        lines[n] = line;
        lens[n] = (size_t)len;
        n++;
        bytes += (size_t)len;
        line = NULL;
        cap = 0;
    }
    free(line);
    if (rc == 0)
        rc = s_send(p, lines, lens, n);
    for (size_t i = 0; i < n; i++)
        free(lines[i]);
    return rc;
}

int sl_cli_publish(const sl_cli_t *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        {"delay-ms", required_argument, NULL, 'd'},
        {"priority", required_argument, NULL, 'p'},
        {"key", required_argument, NULL, 'k'},
        {"ttl-ms", required_argument, NULL, 't'},
        {"max-attempts", required_argument, NULL, 'm'},
        {"routing-key", required_argument, NULL, 'r'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    s_pub_t p = {.cli = cli};
    long long v;
    int ch;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (ch) {
        case 'd':
            if (sl_cli_num("--delay-ms", optarg, 0, 365LL * 86400000, &v) != 0)
                return SL_CLI_USAGE;
            p.tmpl.delay_ms = v;
            break;
        case 'p':
            if (sl_cli_num("--priority", optarg, 0, 9, &v) != 0)
                return SL_CLI_USAGE;
            p.tmpl.priority = (uint32_t)v;
            break;
        case 'k':
            p.tmpl.idempotency_key = optarg;
            break;
        case 't':
            if (sl_cli_num("--ttl-ms", optarg, 1, 365LL * 86400000, &v) != 0)
                return SL_CLI_USAGE;
            p.tmpl.ttl_ms = v;
            break;
        case 'm':
            if (sl_cli_num("--max-attempts", optarg, 1, 1000000, &v) != 0)
                return SL_CLI_USAGE;
            p.tmpl.max_attempts = (uint32_t)v;
            break;
        case 'r':
            p.tmpl.routing_key = optarg;
            break;
        case 'h':
            printf("usage: sluice publish QUEUE [PAYLOAD...] [--delay-ms N] [--priority 0-9]\n"
                   "                      [--key KEY] [--ttl-ms N] [--max-attempts N]\n"
                   "                      [--routing-key KEY]\n"
                   "Each PAYLOAD, or else each non-blank line of stdin, is one job.\n"
                   "Prints '<job id> accepted|duplicate|rejected <reason>' per job.\n"
                   "--routing-key (with --coordinator): every job to the node the key\n"
                   "hashes to, so they keep their order.\n");
            return SL_CLI_OK;
        default:
            sl_cli_err("publish: unknown option '%s' (see sluice publish --help)",
                       argv[optind - 1]);
            return SL_CLI_USAGE;
        }
    }
    if (optind >= argc) {
        sl_cli_err("publish: which queue? usage: sluice publish QUEUE [PAYLOAD...]");
        return SL_CLI_USAGE;
    }
    const char *queue = argv[optind++];
    if (sl_queue_name_check(queue) != SL_OK) {
        sl_cli_err("invalid queue name '%s': 1-%d characters from [A-Za-z0-9._:-]", queue,
                   SL_QUEUE_NAME_MAX);
        return SL_CLI_USAGE;
    }
    p.tmpl.queue = queue;
    int code = SL_CLI_OK;
    p.client = sl_cli_connect(cli, &code);
    if (!p.client)
        return code;
    int rc = optind < argc ? s_from_args(&p, argv + optind, (size_t)(argc - optind))
                           : s_from_stdin(&p);
    while (rc == 0 && p.nflight > 0)
        rc = s_collect(&p);
    /* After a failure, destroying the client answers what is still in
     * flight (SL_ECLOSED); take those results only to free them. */
    sl_client_destroy(&p.client);
    while (p.nflight > 0) {
        void *v = NULL;
        sl_chan_t *promise = p.flight[--p.nflight];
        if (sl_take(promise, &v) == SL_OK) {
            sl_publish_result_t *res = v;
            sl_publish_result_destroy(&res);
        }
        sl_chan_destroy(&promise);
    }
    if (p.code != SL_CLI_OK)
        return p.code;
    if (rc != 0)
        return SL_CLI_REFUSED;
    if (p.rejected > 0) {
        sl_cli_err("publish: %zu of %zu jobs rejected", p.rejected, p.published);
        return SL_CLI_REFUSED;
    }
    return SL_CLI_OK;
}
