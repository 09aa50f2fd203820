/* publish.c -- `sluice publish QUEUE [PAYLOAD...]`: each argument, or each
 * line of stdin, becomes one job. Jobs go out in batches, several batches
 * in flight at once; a batch from stdin leaves when it is full or its first
 * line has waited --linger ms, so a stream (`tail -f log | sluice publish`)
 * is published as it arrives. One line per confirm is printed as soon as
 * the batch's confirms come back, in input order. */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

#define S_BATCH_JOBS 128
#define S_BATCH_BYTES (512 * 1024) /* well under the node's 1 MiB frame   */
#define S_IN_FLIGHT 8              /* batches awaiting confirms at once    */
#define S_LINGER_MS 5              /* --linger default                     */
#define S_READ_MIN (64 * 1024)     /* stdin is read in chunks of this much */
#define S_LINE_MAX ((size_t)64 << 20) /* the node's largest --max-frame    */

typedef struct {
    const sl_cli_t *cli;
    sl_client_t *client;
    sl_job_t tmpl;                 /* options shared by every job          */
    int64_t linger_ns;             /* longest a line waits for company     */
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

/* Take the oldest batch's result, waiting for it if wait, and print its
 * confirms. Returns 1 when printed, 0 when not there yet (only without
 * wait), -1 when the batch failed (p->code set, message printed). */
static int s_collect(s_pub_t *p, bool wait)
{
    void *v = NULL;
    int rc = wait ? sl_take(p->flight[0], &v) : sl_poll(p->flight[0], &v);
    if (rc == SL_EAGAIN)
        return 0;
    sl_chan_t *promise = p->flight[0];
    memmove(p->flight, p->flight + 1, (p->nflight - 1) * sizeof p->flight[0]);
    p->nflight--;
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
                printf("%s rejected %s: %s (retry after %u ms)\n", hex, sl_code_name(cf->code),
                       cf->reason, cf->retry_after_ms);
            else
                printf("%s rejected %s: %s\n", hex, sl_code_name(cf->code), cf->reason);
        } else {
            printf("%s %s\n", hex, s_status_name(cf->status));
        }
    }
    fflush(stdout);
    sl_publish_result_destroy(&res);
    return 1;
}

/* Print the confirms that are already back, oldest batch first, without
 * waiting. 0, or -1 when a batch failed. */
static int s_collect_ready(s_pub_t *p)
{
    int rc = 1;
    while (p->nflight > 0 && (rc = s_collect(p, false)) == 1)
        ;
    return rc < 0 ? -1 : 0;
}

/* Publish payloads[0..n-1] as one batch. */
static int s_send(s_pub_t *p, char **payloads, size_t *lens, size_t n)
{
    if (n == 0)
        return 0;
    if (p->nflight == S_IN_FLIGHT && s_collect(p, true) < 0)
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
    return s_collect_ready(p);
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

/* --- stdin ------------------------------------------------------------- */

/* What has been read from stdin and not yet cut into lines. */
typedef struct {
    char *buf;
    size_t start, end, cap;        /* unread bytes are buf[start..end)     */
    size_t scanned;                /* buf[start..scanned) has no newline    */
    bool eof;
} s_input_t;

/* The lines of the batch being gathered, back to back in one buffer. */
typedef struct {
    char *data;
    size_t used, cap;
    size_t off[S_BATCH_JOBS], len[S_BATCH_JOBS];
    size_t n;
    int64_t first;                 /* sl_now() when its first line came    */
} s_batch_t;

/* Read what stdin has (one read(); poll() said it would not wait). 0, or
 * -1 with the error printed. */
static int s_input_fill(s_input_t *in)
{
    if (in->start > 0) {
        memmove(in->buf, in->buf + in->start, in->end - in->start);
        in->end -= in->start;
        in->scanned -= in->start;
        in->start = 0;
    }
    if (in->cap - in->end < S_READ_MIN / 2) {
        size_t cap = in->cap ? in->cap * 2 : S_READ_MIN;
        if (cap > S_LINE_MAX + S_READ_MIN) {
            sl_cli_err("publish: a line of stdin is longer than %zu MiB", S_LINE_MAX >> 20);
            return -1;
        }
        char *buf = realloc(in->buf, cap);
        if (!buf) {
            sl_cli_err("publish: out of memory");
            return -1;
        }
        in->buf = buf;
        in->cap = cap;
    }
    ssize_t r = read(STDIN_FILENO, in->buf + in->end, in->cap - in->end);
    if (r > 0)
        in->end += (size_t)r;
    else if (r == 0)
        in->eof = true;
    else if (errno != EINTR && errno != EAGAIN) {
        sl_cli_err("publish: reading stdin: %s", strerror(errno));
        return -1;
    }
    return 0;
}

/* The next complete line (the last one may lack its newline at end of
 * input), without its line ending; borrowed until the next s_input_fill.
 * false when no whole line has been read yet. */
static bool s_input_line(s_input_t *in, char **line, size_t *len)
{
    if (in->start == in->end)
        return false;
    char *nl = memchr(in->buf + in->scanned, '\n', in->end - in->scanned);
    size_t stop;
    if (nl) {
        stop = (size_t)(nl - in->buf);
    } else if (in->eof) {
        stop = in->end;
    } else {
        in->scanned = in->end;
        return false;
    }
    *line = in->buf + in->start;
    *len = stop - in->start;
    while (*len > 0 && ((*line)[*len - 1] == '\r' || (*line)[*len - 1] == '\n'))
        (*len)--;
    in->start = in->scanned = stop < in->end ? stop + 1 : stop;
    return true;
}

static int s_batch_add(s_batch_t *b, const char *line, size_t len)
{
    if (b->cap - b->used < len) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap - b->used < len)
            cap *= 2;
        char *data = realloc(b->data, cap);
        if (!data) {
            sl_cli_err("publish: out of memory");
            return -1;
        }
        b->data = data;
        b->cap = cap;
    }
    if (b->n == 0)
        b->first = sl_now();
    memcpy(b->data + b->used, line, len);
    b->off[b->n] = b->used;
    b->len[b->n] = len;
    b->n++;
    b->used += len;
    return 0;
}

static int s_batch_send(s_pub_t *p, s_batch_t *b)
{
    char *payloads[S_BATCH_JOBS];
    for (size_t i = 0; i < b->n; i++)
        payloads[i] = b->data + b->off[i];
    int rc = s_send(p, payloads, b->len, b->n);
    b->n = b->used = 0;
    return rc;
}

/* Wait until stdin has something, the oldest batch's confirms are back,
 * or timeout_ms (-1: no limit) passes. 1 when stdin can be read without
 * waiting, 0 when not, -1 with the error printed. */
static int s_wait(s_pub_t *p, int timeout_ms)
{
    struct pollfd pf[2] = {{.fd = STDIN_FILENO, .events = POLLIN}, {.fd = -1}};
    if (p->nflight > 0) {
        pf[1].fd = sl_chan_fd(p->flight[0], SL_CHAN_READABLE);
        pf[1].events = POLLIN;
        if (pf[1].fd < 0 && (timeout_ms < 0 || timeout_ms > 10))
            timeout_ms = 10; /* no eventfd to be had: look again soon */
    }
    if (poll(pf, 2, timeout_ms) < 0) {
        if (errno == EINTR)
            return 0;
        sl_cli_err("publish: poll: %s", strerror(errno));
        return -1;
    }
    /* POLLHUP, POLLERR, POLLNVAL (no stdin at all): read() tells. */
    return pf[0].revents != 0;
}

/* Lines of stdin, in batches that leave when full (S_BATCH_JOBS lines or
 * S_BATCH_BYTES), when the first line has waited linger, or at the end of
 * input. Reading never blocks while a batch or confirms are due: poll()
 * waits for stdin and the oldest batch's promise together. */
static int s_from_stdin(s_pub_t *p)
{
    s_input_t in = {0};
    s_batch_t b = {0};
    int rc = 0;
    char *line;
    size_t len;
    while (rc == 0) {
        while (rc == 0 && s_input_line(&in, &line, &len)) {
            if (len == 0)
                continue; /* blank lines are not jobs */
            if (b.n == S_BATCH_JOBS || (b.n > 0 && b.used + len > S_BATCH_BYTES))
                rc = s_batch_send(p, &b);
            if (rc == 0)
                rc = s_batch_add(&b, line, len);
        }
        if (rc != 0 || in.eof)
            break;
        if (b.n == S_BATCH_JOBS && (rc = s_batch_send(p, &b)) != 0)
            break;
        if ((rc = s_collect_ready(p)) != 0)
            break;
        int timeout_ms = -1;
        if (b.n > 0) {
            int64_t left = b.first + p->linger_ns - sl_now();
            if (left <= 0) {
                rc = s_batch_send(p, &b);
                continue;
            }
            timeout_ms = (int)((left + 999999) / 1000000);
        }
        if ((rc = s_wait(p, timeout_ms)) == 1)
            rc = s_input_fill(&in);
    }
    if (rc == 0)
        rc = s_batch_send(p, &b);
    free(in.buf);
    free(b.data);
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
        {"linger", required_argument, NULL, 'l'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    s_pub_t p = {.cli = cli, .linger_ns = (int64_t)S_LINGER_MS * 1000000};
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
        case 'l':
            if (sl_cli_num("--linger", optarg, 0, 60000, &v) != 0)
                return SL_CLI_USAGE;
            p.linger_ns = v * 1000000;
            break;
        case 'h':
            printf("usage: sluice publish QUEUE [PAYLOAD...] [--delay-ms N] [--priority 0-9]\n"
                   "                      [--key KEY] [--ttl-ms N] [--max-attempts N]\n"
                   "                      [--routing-key KEY] [--linger MS]\n"
                   "Each PAYLOAD, or else each non-blank line of stdin, is one job.\n"
                   "Lines go out in batches of up to 128, a batch at the latest MS ms\n"
                   "(--linger, default %d) after its first line came, so a stream is\n"
                   "published as it arrives.\n"
                   "Prints '<job id> accepted|duplicate' or '<job id> rejected CODE: reason'\n"
                   "per job (CODE as in docs/protocol.md: FULL, DRAINING, LIMIT, ...),\n"
                   "as soon as the node confirms it.\n"
                   "--routing-key (with --coordinator): every job to the node the key\n"
                   "hashes to, so they keep their order.\n",
                   S_LINGER_MS);
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
        rc = s_collect(&p, true) < 0 ? -1 : 0;
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
