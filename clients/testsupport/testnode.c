/* testnode.c -- run a real sluice-node and other programs for the client
 * tests (see testnode.h). */
#define _GNU_SOURCE
#include "testnode.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

/* --- children -------------------------------------------------------- */

/* Nodes still running. A failed cmocka assertion leaves its test without
 * stopping the node; the node would keep ctest's output pipe open and the
 * test would hang until its timeout. So every node is also killed at exit. */
#define S_LIVE_MAX 64
static pid_t s_live[S_LIVE_MAX];

static void s_reap_all(void)
{
    for (int i = 0; i < S_LIVE_MAX; i++)
        if (s_live[i] > 0) {
            kill(s_live[i], SIGKILL);
            waitpid(s_live[i], NULL, 0);
            s_live[i] = 0;
        }
}

static void s_live_set(pid_t pid, bool add)
{
    static bool registered;
    if (!registered) {
        atexit(s_reap_all);
        registered = true;
    }
    for (int i = 0; i < S_LIVE_MAX; i++)
        if (add ? s_live[i] == 0 : s_live[i] == pid) {
            s_live[i] = add ? pid : 0;
            return;
        }
}

/* The environment for a child: ours plus extra (NULL-terminated, may be
 * NULL), with TSAN_OPTIONS pointing at our suppressions, so sanitized
 * children judge libzmq as the test programs do. Caller frees the array
 * (not the strings; `tsan` is the caller's buffer). */
static char **s_child_env(const char *const *extra, char *tsan, size_t tsan_cap)
{
    size_t n = 0, k = 0, x = 0;
    while (environ[n])
        n++;
    while (extra && extra[x])
        x++;
    char **envp = calloc(n + x + 2, sizeof *envp);
    if (!envp)
        return NULL;
    const char *old = getenv("TSAN_OPTIONS");
    snprintf(tsan, tsan_cap, "TSAN_OPTIONS=%s%ssuppressions=%s", old ? old : "", old ? " " : "",
             SLUICE_TSAN_SUPP);
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], "TSAN_OPTIONS=", 13) != 0)
            envp[k++] = environ[i];
    for (size_t i = 0; i < x; i++)
        envp[k++] = (char *)extra[i];
    envp[k++] = tsan;
    envp[k] = NULL;
    return envp;
}

static int64_t s_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int sl_testnode_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int port = -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

/* Wait for pid to exit, up to timeout_ms; -1 if it has not. */
static int s_wait(pid_t pid, int timeout_ms, int *status)
{
    int64_t end = s_ms() + timeout_ms;
    for (;;) {
        pid_t r = waitpid(pid, status, WNOHANG);
        if (r == pid)
            return 0;
        if (r < 0 && errno != EINTR)
            return 0;
        if (s_ms() >= end)
            return -1;
        /* A child's exit cannot be polled without a pidfd; 2 ms steps keep
         * this cheap and far below any test's patience. */
        struct timespec ts = {0, 2 * 1000000};
        nanosleep(&ts, NULL);
    }
}

static int s_spawn(sl_testnode_t *n)
{
    char ep[64];
    snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", n->port);
    char *argv[SL_TESTNODE_ARGS_MAX + 8];
    int k = 0;
    argv[k++] = (char *)n->bin;
    argv[k++] = "--endpoint";
    argv[k++] = ep;
    argv[k++] = "--log-level";
    argv[k++] = "warn";
    for (int i = 0; i < n->nargs; i++)
        argv[k++] = n->args[i];
    argv[k] = NULL;

    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0)
        return -1;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, p[1], 1);
    char tsan[1024];
    char **envp = s_child_env(NULL, tsan, sizeof tsan);
    int rc = envp ? posix_spawn(&n->pid, n->bin, &fa, NULL, argv, envp) : ENOMEM;
    free(envp);
    posix_spawn_file_actions_destroy(&fa);
    close(p[1]);
    if (rc == 0)
        s_live_set(n->pid, true);
    if (rc != 0) {
        fprintf(stderr, "testnode: cannot start %s: %s\n", n->bin, strerror(rc));
        close(p[0]);
        n->pid = 0;
        return -1;
    }
    n->out_fd = p[0];

    /* Read up to the end of the "listening ..." line. */
    char line[256];
    size_t len = 0;
    int64_t end = s_ms() + 10000;
    while (len < sizeof line - 1 && !memchr(line, '\n', len)) {
        int left = (int)(end - s_ms());
        struct pollfd pf = {.fd = n->out_fd, .events = POLLIN};
        if (left <= 0 || poll(&pf, 1, left) <= 0)
            break;
        ssize_t r = read(n->out_fd, line + len, sizeof line - 1 - len);
        if (r <= 0)
            break;
        len += (size_t)r;
    }
    line[len] = '\0';
    char bound[128];
    unsigned long long epoch = 0;
    if (sscanf(line, "listening %127s epoch %llx", bound, &epoch) != 2) {
        fprintf(stderr, "testnode: %s did not come up (printed \"%s\")\n", n->bin, line);
        sl_testnode_stop(n, SIGKILL);
        return -1;
    }
    const char *colon = strrchr(bound, ':');
    n->port = colon ? atoi(colon + 1) : n->port;
    snprintf(n->endpoint, sizeof n->endpoint, "tcp://127.0.0.1:%d", n->port);
    n->epoch = epoch;
    return 0;
}

int sl_testnode_start(sl_testnode_t *n, const char *bin, int port, const char *const *extra)
{
    memset(n, 0, sizeof *n);
    n->bin = bin;
    n->port = port;
    n->out_fd = -1;
    for (int i = 0; extra && extra[i] && n->nargs < SL_TESTNODE_ARGS_MAX; i++)
        n->args[n->nargs++] = strdup(extra[i]);
    return s_spawn(n);
}

int sl_testnode_stop(sl_testnode_t *n, int sig)
{
    int status = 0;
    if (n->pid > 0) {
        kill(n->pid, sig);
        if (s_wait(n->pid, 10000, &status) != 0) {
            kill(n->pid, SIGKILL);
            s_wait(n->pid, 10000, &status);
        }
        s_live_set(n->pid, false);
        n->pid = 0;
    }
    if (n->out_fd >= 0)
        close(n->out_fd);
    n->out_fd = -1;
    return status;
}

int sl_testnode_restart(sl_testnode_t *n)
{
    if (n->pid > 0)
        sl_testnode_stop(n, SIGKILL);
    return s_spawn(n);
}

void sl_testnode_release(sl_testnode_t *n)
{
    sl_testnode_stop(n, SIGKILL);
    for (int i = 0; i < n->nargs; i++)
        free(n->args[i]);
    n->nargs = 0;
}

int sl_testproc_run(char *const argv[], const char *const *extra_env, const char *input,
                    int timeout_ms, char **out)
{
    *out = NULL;
    char tsan[1024];
    char **envp = s_child_env(extra_env, tsan, sizeof tsan);
    if (!envp)
        return -1;

    int in[2], o[2];
    if (pipe2(in, O_CLOEXEC) != 0) {
        free(envp);
        return -1;
    }
    if (pipe2(o, O_CLOEXEC) != 0) {
        close(in[0]);
        close(in[1]);
        free(envp);
        return -1;
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    posix_spawn_file_actions_adddup2(&fa, o[1], 1);
    posix_spawn_file_actions_adddup2(&fa, o[1], 2);
    pid_t pid;
    int rc = posix_spawn(&pid, argv[0], &fa, NULL, argv, envp);
    posix_spawn_file_actions_destroy(&fa);
    free(envp);
    close(in[0]);
    close(o[1]);
    if (rc != 0) {
        close(in[1]);
        close(o[0]);
        return -1;
    }
    signal(SIGPIPE, SIG_IGN);
    const char *ip = input ? input : "";
    size_t ileft = strlen(ip);
    int in_fd = in[1];
    if (ileft == 0) {
        close(in_fd);
        in_fd = -1;
    } else {
        fcntl(in_fd, F_SETFL, O_NONBLOCK);
    }
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    int64_t end = s_ms() + timeout_ms;
    int timed_out = 0;
    for (;;) {
        struct pollfd pf[2] = {{.fd = o[0], .events = POLLIN}, {.fd = in_fd, .events = POLLOUT}};
        int left = (int)(end - s_ms());
        if (left <= 0) {
            timed_out = 1;
            break;
        }
        int nfds = in_fd >= 0 ? 2 : 1;
        if (poll(pf, (nfds_t)nfds, left) < 0 && errno != EINTR)
            break;
        if (in_fd >= 0 && (pf[1].revents & (POLLOUT | POLLERR | POLLHUP))) {
            ssize_t w = write(in_fd, ip, ileft);
            if (w > 0) {
                ip += w;
                ileft -= (size_t)w;
            }
            if (w < 0 && errno != EAGAIN && errno != EINTR)
                ileft = 0;
            if (ileft == 0) {
                close(in_fd);
                in_fd = -1;
            }
        }
        if (pf[0].revents & (POLLIN | POLLHUP | POLLERR)) {
            if (len + 1024 > cap) {
                cap *= 2;
                buf = realloc(buf, cap);
            }
            ssize_t r = read(o[0], buf + len, cap - len - 1);
            if (r == 0)
                break;
            if (r > 0)
                len += (size_t)r;
        }
    }
    if (in_fd >= 0)
        close(in_fd);
    close(o[0]);
    buf[len] = '\0';
    *out = buf;
    int status = 0;
    int left = (int)(end - s_ms());
    if (timed_out || s_wait(pid, left > 0 ? left : 0, &status) != 0) {
        kill(pid, SIGKILL);
        s_wait(pid, 10000, &status);
        return -2;
    }
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return -1;
}
