/* consume.c -- `sluice consume QUEUE --exec CMD`: run CMD with /bin/sh -c
 * for each job, the payload on its stdin and SLUICE_JOB_ID, SLUICE_QUEUE,
 * SLUICE_ATTEMPT in its environment. Exit 0 acks, exit 100 fails the job
 * for good, any other exit (75, EX_TEMPFAIL, is the conventional one) or a
 * signal fails it retryably. Handlers run on the blocking pool, so a job is
 * a child process waited for by a pool thread. SIGINT/SIGTERM stop taking
 * jobs and wait for the running ones; a second signal passes SIGTERM on to
 * them. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "sluice/sched.h"

extern char **environ;

#define S_EXIT_PERMANENT 100

typedef struct {
    const sl_cli_t *cli;
    const char *queue;
    const char *cmd;
    long long max_jobs;            /* 0: no limit                          */
    long long touch_ms;            /* 0: never touch                       */
    atomic_llong done;
    pthread_mutex_t lock;          /* guards pids                          */
    pid_t *pids;                   /* children running now                 */
    size_t npids, cap;
} s_consume_t;

static void s_track(s_consume_t *c, pid_t pid, bool add)
{
    pthread_mutex_lock(&c->lock);
    if (add) {
        if (c->npids == c->cap) {
            size_t cap = c->cap ? c->cap * 2 : 16;
            pid_t *p = realloc(c->pids, cap * sizeof *p);
            if (p) {
                c->pids = p;
                c->cap = cap;
            }
        }
        if (c->npids < c->cap)
            c->pids[c->npids++] = pid;
    } else {
        for (size_t i = 0; i < c->npids; i++)
            if (c->pids[i] == pid) {
                c->pids[i] = c->pids[--c->npids];
                break;
            }
    }
    pthread_mutex_unlock(&c->lock);
}

static size_t s_running(s_consume_t *c)
{
    pthread_mutex_lock(&c->lock);
    size_t n = c->npids;
    pthread_mutex_unlock(&c->lock);
    return n;
}

static void s_signal_children(s_consume_t *c, int sig)
{
    pthread_mutex_lock(&c->lock);
    for (size_t i = 0; i < c->npids; i++)
        kill(c->pids[i], sig);
    pthread_mutex_unlock(&c->lock);
}

static void s_write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return; /* EPIPE: the command does not read its stdin */
        p += w;
        n -= (size_t)w;
    }
}

/* Wait for pid; touch the lease every touch_ms meanwhile if asked. */
static int s_wait_child(s_consume_t *c, sl_client_t *client, sl_delivery_t *d, pid_t pid)
{
    int status = 0;
    int pidfd = c->touch_ms > 0 ? (int)syscall(SYS_pidfd_open, pid, 0) : -1;
    if (pidfd >= 0) {
        for (;;) {
            struct pollfd pf = {.fd = pidfd, .events = POLLIN};
            int n = poll(&pf, 1, (int)c->touch_ms);
            if (n > 0)
                break;
            if (n == 0)
                sl_client_touch(client, d, 0, sl_deadline_ms(c->cli->timeout_ms));
        }
        close(pidfd);
    }
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    return status;
}

static int s_job(sl_client_t *client, sl_delivery_t *d, void *arg)
{
    s_consume_t *c = arg;
    char hex[SL_ID_HEX_LEN + 1];
    sl_id_to_hex(d->id, hex);
    char env_id[64], env_queue[160], env_attempt[48];
    snprintf(env_id, sizeof env_id, "SLUICE_JOB_ID=%s", hex);
    snprintf(env_queue, sizeof env_queue, "SLUICE_QUEUE=%s", d->queue);
    snprintf(env_attempt, sizeof env_attempt, "SLUICE_ATTEMPT=%u", d->attempt);
    size_t n = 0;
    while (environ[n])
        n++;
    char **envp = calloc(n + 4, sizeof *envp);
    if (!envp) {
        sl_delivery_set_error(d, "consumer out of memory");
        return SL_JOB_RETRY;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], "SLUICE_JOB_ID=", 14) && strncmp(environ[i], "SLUICE_QUEUE=", 13) &&
            strncmp(environ[i], "SLUICE_ATTEMPT=", 15))
            envp[k++] = environ[i];
    envp[k++] = env_id;
    envp[k++] = env_queue;
    envp[k++] = env_attempt;

    int in[2];
    if (pipe2(in, O_CLOEXEC) != 0) {
        free(envp);
        sl_delivery_set_error(d, "consumer cannot make a pipe");
        return SL_JOB_RETRY;
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    /* The child must not inherit our blocked signal mask. */
    posix_spawnattr_t sa;
    posix_spawnattr_init(&sa);
    sigset_t none;
    sigemptyset(&none);
    posix_spawnattr_setsigmask(&sa, &none);
    posix_spawnattr_setflags(&sa, POSIX_SPAWN_SETSIGMASK);
    char *argv[] = {"/bin/sh", "-c", (char *)c->cmd, NULL};
    pid_t pid;
    int rc = posix_spawn(&pid, "/bin/sh", &fa, &sa, argv, envp);
    posix_spawnattr_destroy(&sa);
    posix_spawn_file_actions_destroy(&fa);
    free(envp);
    close(in[0]);
    if (rc != 0) {
        close(in[1]);
        char msg[128];
        snprintf(msg, sizeof msg, "cannot run /bin/sh: %s", strerror(rc));
        sl_delivery_set_error(d, msg);
        return SL_JOB_RETRY;
    }
    s_track(c, pid, true);
    s_write_all(in[1], d->payload, d->payload_len);
    close(in[1]);
    int status = s_wait_child(c, client, d, pid);
    s_track(c, pid, false);

    int verdict;
    char msg[128];
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        verdict = SL_JOB_ACK;
        snprintf(msg, sizeof msg, "exit 0 (ack)");
    } else if (WIFEXITED(status)) {
        int ex = WEXITSTATUS(status);
        verdict = ex == S_EXIT_PERMANENT ? SL_JOB_FAIL : SL_JOB_RETRY;
        snprintf(msg, sizeof msg, "exit status %d", ex);
        sl_delivery_set_error(d, msg);
    } else {
        verdict = SL_JOB_RETRY;
        snprintf(msg, sizeof msg, "killed by signal %d", WTERMSIG(status));
        sl_delivery_set_error(d, msg);
    }
    if (c->cli->verbose)
        fprintf(stderr, "sluice: job %s attempt %u: %s%s\n", hex, d->attempt, msg,
                verdict == SL_JOB_FAIL ? " (dead)" : verdict == SL_JOB_RETRY ? " (retry)" : "");

    long long done = atomic_fetch_add(&c->done, 1) + 1;
    if (c->max_jobs > 0 && done == c->max_jobs) {
        /* Stop the credit before this job's ack would grant more; the
         * deadline "now" because a handler cannot wait for itself. */
        sl_client_unsubscribe(client, c->queue, sl_now());
        kill(getpid(), SIGUSR1);
    }
    return verdict;
}

int sl_cli_consume(const sl_cli_t *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        {"exec", required_argument, NULL, 'x'},
        {"concurrency", required_argument, NULL, 'c'},
        {"max-jobs", required_argument, NULL, 'n'},
        {"touch-ms", required_argument, NULL, 't'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    s_consume_t c = {.cli = cli};
    long long concurrency = 1, v;
    int ch;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (ch) {
        case 'x':
            c.cmd = optarg;
            break;
        case 'c':
            if (sl_cli_num("--concurrency", optarg, 1, 10000, &concurrency) != 0)
                return SL_CLI_USAGE;
            break;
        case 'n':
            if (sl_cli_num("--max-jobs", optarg, 1, (long long)1 << 62, &v) != 0)
                return SL_CLI_USAGE;
            c.max_jobs = v;
            break;
        case 't':
            if (sl_cli_num("--touch-ms", optarg, 10, 86400000, &v) != 0)
                return SL_CLI_USAGE;
            c.touch_ms = v;
            break;
        case 'h':
            printf("usage: sluice consume QUEUE --exec CMD [--concurrency N] [--max-jobs N]\n"
                   "                             [--touch-ms N]\n"
                   "Runs CMD with /bin/sh -c per job: payload on stdin, SLUICE_JOB_ID,\n"
                   "SLUICE_QUEUE and SLUICE_ATTEMPT in the environment. Exit 0 acks the job,\n"
                   "exit 100 fails it for good, any other exit (e.g. 75) retries it later.\n"
                   "--max-jobs N exits after N jobs; --touch-ms N extends the lease every\n"
                   "N ms while CMD runs. SIGINT/SIGTERM: finish running jobs, then exit\n"
                   "(a second signal sends SIGTERM to them).\n");
            return SL_CLI_OK;
        default:
            sl_cli_err("consume: unknown option '%s' (see sluice consume --help)",
                       argv[optind - 1]);
            return SL_CLI_USAGE;
        }
    }
    if (optind >= argc) {
        sl_cli_err("consume: which queue? usage: sluice consume QUEUE --exec CMD");
        return SL_CLI_USAGE;
    }
    c.queue = argv[optind++];
    if (optind < argc) {
        sl_cli_err("consume: unexpected argument '%s' (quote CMD: --exec 'cmd args')",
                   argv[optind]);
        return SL_CLI_USAGE;
    }
    if (sl_queue_name_check(c.queue) != SL_OK) {
        sl_cli_err("invalid queue name '%s': 1-%d characters from [A-Za-z0-9._:-]", c.queue,
                   SL_QUEUE_NAME_MAX);
        return SL_CLI_USAGE;
    }
    if (!c.cmd || !*c.cmd) {
        sl_cli_err("consume: --exec CMD is required");
        return SL_CLI_USAGE;
    }

    /* Signals are taken by sigwait below; every thread started from here
     * on (client I/O, scheduler, pool) inherits the blocked mask. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    pthread_mutex_init(&c.lock, NULL);
    sl_sched_opts_t so = {.blocking_threads = (int)concurrency + 2};
    sl_sched_start(&so); /* SL_ESTATE (already running) is fine */

    int code = SL_CLI_OK;
    sl_client_t *client = sl_cli_connect(cli, &code);
    if (!client)
        return code;
    /* Is the node there? One queue's stats answer at once ("no such
     * queue" is an answer too). In cluster mode: is the coordinator? */
    sl_admin_reply_t probe;
    int rc;
    if (cli->coordinator) {
        sl_cluster_view_t view;
        memset(&probe, 0, sizeof probe);
        rc = sl_client_cluster(client, &view, sl_deadline_ms(cli->timeout_ms));
        sl_cluster_view_release(&view);
    } else {
        rc = sl_client_admin(client, SL_ADMIN_STATS, c.queue, &probe,
                             sl_deadline_ms(cli->timeout_ms));
    }
    sl_admin_reply_release(&probe);
    if (rc != SL_OK && rc != SL_ENOTFOUND) {
        code = sl_cli_fail(cli, client, "consume", rc, probe.node_text);
        sl_client_destroy(&client);
        return code;
    }
    rc = sl_client_consume(client, c.queue, (uint32_t)concurrency, s_job, &c,
                               SL_CONSUME_BLOCKING);
    if (rc != SL_OK) {
        code = sl_cli_fail(cli, client, "consume", rc, NULL);
        sl_client_destroy(&client);
        return code;
    }
    if (cli->verbose)
        fprintf(stderr, "sluice: consuming '%s' from '%s', %lld at a time\n", c.queue,
                sl_cli_target(cli), concurrency);
    int sig = 0;
    sigwait(&sigs, &sig);
    size_t running = s_running(&c);
    if (sig != SIGUSR1 && running > 0)
        sl_cli_err("stopping: waiting for %zu running job%s (signal again to terminate them)",
                   running, running == 1 ? "" : "s");
    sl_client_unsubscribe(client, c.queue, sl_now()); /* no new jobs */
    while (s_running(&c) > 0) {
        struct timespec ts = {0, 100 * 1000000};
        int s = sigtimedwait(&sigs, NULL, &ts);
        if (s == SIGINT || s == SIGTERM)
            s_signal_children(&c, SIGTERM);
    }
    sl_client_destroy(&client); /* waits for the handlers' acks to go out */
    free(c.pids);
    pthread_mutex_destroy(&c.lock);
    if (cli->verbose)
        fprintf(stderr, "sluice: %lld jobs handled\n", (long long)atomic_load(&c.done));
    return SL_CLI_OK;
}
