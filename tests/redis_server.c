/* redis_server.c -- run a real redis-server for the tests (see
 * redis_server.h): spawn, wait until it answers, stop, restart, and a
 * small RESP client of its own so the harness needs no hiredis. */
#define _GNU_SOURCE
#include "redis_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static int64_t s_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void s_nap(int ms)
{
    struct timespec ts = {0, (long)ms * 1000000};
    nanosleep(&ts, NULL);
}

/* --- servers still running at exit --------------------------------------- */

#define S_LIVE_MAX 16
static sl_redis_server_t *s_live[S_LIVE_MAX];

static void s_reap_all(void)
{
    for (int i = 0; i < S_LIVE_MAX; i++)
        if (s_live[i])
            sl_redis_server_release(s_live[i]);
}

static void s_live_set(sl_redis_server_t *rs, bool add)
{
    static bool registered;
    if (!registered) {
        atexit(s_reap_all);
        registered = true;
    }
    for (int i = 0; i < S_LIVE_MAX; i++)
        if (add ? s_live[i] == NULL || s_live[i] == rs : s_live[i] == rs) {
            s_live[i] = add ? rs : NULL;
            return;
        }
}

/* --- a tiny RESP client ---------------------------------------------------- */

typedef struct {
    char *p;
    size_t len, cap;
} s_buf_t;

static void s_put(s_buf_t *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p)
            abort(); /* a test harness: out of memory ends the test */
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

/* Parse one reply at in[0..n): its length, 0 if incomplete, -1 if bad.
 * Appends its text to out; *err set for an error reply. */
static long s_parse(const char *in, size_t n, s_buf_t *out, int *err, int depth)
{
    const char *eol = memmem(in, n, "\r\n", 2);
    if (!eol)
        return 0;
    size_t head = (size_t)(eol - in) + 2;
    long long v = strtoll(in + 1, NULL, 10);
    switch (in[0]) {
    case '+':
    case '-':
        if (in[0] == '-' && depth == 0)
            *err = 1;
        s_put(out, in + 1, (size_t)(eol - in) - 1);
        return (long)head;
    case ':':
        s_put(out, in + 1, (size_t)(eol - in) - 1);
        return (long)head;
    case '$':
        if (v < 0) {
            s_put(out, "(nil)", 5);
            return (long)head;
        }
        if (n < head + (size_t)v + 2)
            return 0;
        s_put(out, in + head, (size_t)v);
        return (long)(head + (size_t)v + 2);
    case '*': {
        if (v < 0) {
            s_put(out, "(nil)", 5);
            return (long)head;
        }
        size_t at = head;
        for (long long i = 0; i < v; i++) {
            if (i)
                s_put(out, "\n", 1);
            long k = s_parse(in + at, n - at, out, err, depth + 1);
            if (k <= 0)
                return k;
            at += (size_t)k;
        }
        return (long)at;
    }
    }
    return -1;
}

static int s_connect(int port, int64_t end)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    struct pollfd pf = {.fd = fd, .events = POLLOUT};
    int left = (int)(end - s_ms());
    int e = 0;
    socklen_t el = sizeof e;
    if (left <= 0 || poll(&pf, 1, left) != 1 ||
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el) != 0 || e != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Send argv as a RESP array and read one reply. */
static int s_roundtrip(int fd, int argc, const char **argv, char **reply, int64_t end)
{
    s_buf_t req = {0}, in = {0}, out = {0};
    char h[32];
    s_put(&req, h, (size_t)snprintf(h, sizeof h, "*%d\r\n", argc));
    for (int i = 0; i < argc; i++) {
        s_put(&req, h, (size_t)snprintf(h, sizeof h, "$%zu\r\n", strlen(argv[i])));
        s_put(&req, argv[i], strlen(argv[i]));
        s_put(&req, "\r\n", 2);
    }
    int rc = -1;
    size_t sent = 0;
    while (sent < req.len) {
        struct pollfd pf = {.fd = fd, .events = POLLOUT};
        int left = (int)(end - s_ms());
        if (left <= 0 || poll(&pf, 1, left) != 1)
            goto out;
        ssize_t w = send(fd, req.p + sent, req.len - sent, MSG_NOSIGNAL);
        if (w < 0 && errno != EAGAIN && errno != EINTR)
            goto out;
        if (w > 0)
            sent += (size_t)w;
    }
    for (;;) {
        int err = 0;
        out.len = 0;
        long k = in.len ? s_parse(in.p, in.len, &out, &err, 0) : 0;
        if (k < 0)
            goto out;
        if (k > 0) {
            if (!out.p)
                s_put(&out, "", 0);
            *reply = out.p;
            out.p = NULL;
            rc = err;
            goto out;
        }
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        int left = (int)(end - s_ms());
        if (left <= 0 || poll(&pf, 1, left) != 1)
            goto out;
        char buf[16384];
        ssize_t r = recv(fd, buf, sizeof buf, 0);
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR))
            goto out;
        if (r > 0)
            s_put(&in, buf, (size_t)r);
    }
out:
    free(req.p);
    free(in.p);
    free(out.p);
    return rc;
}

static int s_cmd_argv(const sl_redis_server_t *rs, char **reply, int argc, const char **argv)
{
    *reply = NULL;
    int64_t end = s_ms() + 5000;
    int fd = s_connect(rs->port, end);
    if (fd < 0)
        return -1;
    int rc = 0;
    if (rs->password[0]) {
        const char *auth[] = {"AUTH", rs->password};
        char *r = NULL;
        rc = s_roundtrip(fd, 2, auth, &r, end);
        free(r);
    }
    if (rc == 0)
        rc = s_roundtrip(fd, argc, argv, reply, end);
    else
        rc = -1;
    close(fd);
    return rc;
}

int sl_redis_server_cmd(const sl_redis_server_t *rs, char **reply, ...)
{
    const char *argv[64];
    int argc = 0;
    va_list ap;
    va_start(ap, reply);
    const char *a;
    while (argc < 64 && (a = va_arg(ap, const char *)))
        argv[argc++] = a;
    va_end(ap);
    return s_cmd_argv(rs, reply, argc, argv);
}

long long sl_redis_server_info(const sl_redis_server_t *rs, const char *section, const char *name)
{
    char *text = NULL;
    if (sl_redis_server_cmd(rs, &text, "INFO", section, NULL) != 0) {
        free(text);
        return -1;
    }
    long long v = -1;
    size_t n = strlen(name);
    for (char *line = text; line && *line;) {
        char *nl = strchr(line, '\n');
        if (strncmp(line, name, n) == 0 && line[n] == ':') {
            const char *p = line + n + 1;
            const char *calls = strstr(p, "calls=");
            if (calls && (!nl || calls < nl))
                p = calls + 6;
            v = strtoll(p, NULL, 10);
            break;
        }
        line = nl ? nl + 1 : NULL;
    }
    free(text);
    return v;
}

/* --- the process ----------------------------------------------------------- */

static int s_free_port(void)
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

static void s_print_log(const sl_redis_server_t *rs)
{
    char path[200];
    snprintf(path, sizeof path, "%s/redis.log", rs->dir);
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    char line[512];
    fprintf(stderr, "redis_server: %s:\n", path);
    while (fgets(line, sizeof line, f))
        fprintf(stderr, "  %s", line);
    fclose(f);
}

/* Wait for pid to exit, up to timeout_ms: true if it did. */
static bool s_reap(pid_t pid, int timeout_ms)
{
    int64_t end = s_ms() + timeout_ms;
    for (;;) {
        pid_t r = waitpid(pid, NULL, WNOHANG);
        if (r == pid || (r < 0 && errno != EINTR))
            return true;
        if (s_ms() >= end)
            return false;
        s_nap(2);
    }
}

/* The full path of bin (searched on the PATH unless it has a '/'). */
static bool s_which(const char *bin, char *out, size_t cap)
{
    if (strchr(bin, '/')) {
        snprintf(out, cap, "%s", bin);
        return access(out, X_OK) == 0;
    }
    const char *path = getenv("PATH");
    if (!path || !*path)
        path = "/usr/local/bin:/usr/bin:/bin";
    while (*path) {
        const char *colon = strchr(path, ':');
        size_t n = colon ? (size_t)(colon - path) : strlen(path);
        snprintf(out, cap, "%.*s/%s", (int)n, path, bin);
        if (n && access(out, X_OK) == 0)
            return true;
        path += n + (colon ? 1 : 0);
    }
    return false;
}

static int s_spawn(sl_redis_server_t *rs)
{
    char port[16], dir[160], log[200];
    snprintf(port, sizeof port, "%d", rs->port);
    snprintf(dir, sizeof dir, "%s", rs->dir);
    snprintf(log, sizeof log, "%s/redis.log", rs->dir);
    const char *bin = getenv("SLUICE_REDIS_SERVER");
    if (!bin || !*bin)
        bin = "redis-server";
    bool aof = rs->flags & (SL_REDIS_AOF_EVERYSEC | SL_REDIS_AOF_ALWAYS);
    const char *argv[48];
    int k = 0;
    argv[k++] = bin;
    argv[k++] = "--port";
    argv[k++] = port;
    argv[k++] = "--bind";
    argv[k++] = "127.0.0.1";
    argv[k++] = "--dir";
    argv[k++] = dir;
    argv[k++] = "--logfile";
    argv[k++] = log;
    argv[k++] = "--daemonize";
    argv[k++] = "no";
    argv[k++] = "--save";
    argv[k++] = "";
    argv[k++] = "--appendonly";
    argv[k++] = aof ? "yes" : "no";
    if (aof) {
        argv[k++] = "--appendfsync";
        argv[k++] = rs->flags & SL_REDIS_AOF_ALWAYS ? "always" : "everysec";
    }
    if (rs->password[0]) {
        argv[k++] = "--requirepass";
        argv[k++] = rs->password;
    }
    if (rs->flags & SL_REDIS_UNIX) {
        argv[k++] = "--unixsocket";
        argv[k++] = rs->sock;
        argv[k++] = "--unixsocketperm";
        argv[k++] = "700";
    }
    if (rs->flags & SL_REDIS_CLUSTER) {
        argv[k++] = "--cluster-enabled";
        argv[k++] = "yes";
        argv[k++] = "--cluster-config-file";
        argv[k++] = "nodes.conf";
    }
    argv[k] = NULL;

    char path[512];
    if (!s_which(bin, path, sizeof path)) {
        fprintf(stderr, "redis_server: no %s on the PATH (scripts/deps installs it)\n", bin);
        return -1;
    }
    /* fork + exec rather than posix_spawn, for PR_SET_PDEATHSIG: a test
     * killed outright (a ctest timeout) runs no atexit handler, and its
     * servers must not outlive it. Between fork and exec only
     * async-signal-safe calls. */
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "redis_server: fork: %s\n", strerror(errno));
        return -1;
    }
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        int nul = open("/dev/null", O_RDWR);
        if (nul >= 0) {
            dup2(nul, 0);
            dup2(nul, 1);
            dup2(nul, 2);
        }
        execve(path, (char *const *)argv, environ);
        _exit(127);
    }
    rs->pid = pid;
    s_live_set(rs, true);

    /* Up when it answers PING; gone if it exited (port taken). */
    int64_t end = s_ms() + 20000;
    for (;;) {
        if (waitpid(rs->pid, NULL, WNOHANG) == rs->pid) {
            rs->pid = 0;
            return -2;
        }
        char *r = NULL;
        int ok = sl_redis_server_cmd(rs, &r, "PING", NULL) == 0 && r && strcmp(r, "PONG") == 0;
        free(r);
        if (ok)
            break;
        if (s_ms() >= end) {
            fprintf(stderr, "redis_server: port %d: no PONG within 20 s\n", rs->port);
            s_print_log(rs);
            sl_redis_server_stop(rs, SIGKILL);
            return -1;
        }
        s_nap(5);
    }
    if (!(rs->flags & SL_REDIS_CLUSTER))
        return 0;

    /* One node owning every slot. After a restart nodes.conf has them. */
    char *info = NULL;
    sl_redis_server_cmd(rs, &info, "CLUSTER", "INFO", NULL);
    bool assigned = info && strstr(info, "cluster_slots_assigned:16384");
    free(info);
    if (!assigned) {
        char *r = NULL;
        int rc2 = sl_redis_server_cmd(rs, &r, "CLUSTER", "ADDSLOTSRANGE", "0", "16383", NULL);
        if (rc2 != 0) {
            fprintf(stderr, "redis_server: CLUSTER ADDSLOTSRANGE: %s\n", r ? r : "no answer");
            free(r);
            sl_redis_server_stop(rs, SIGKILL);
            return -1;
        }
        free(r);
    }
    for (;;) {
        char *r = NULL;
        bool ok = sl_redis_server_cmd(rs, &r, "CLUSTER", "INFO", NULL) == 0 && r &&
                  strstr(r, "cluster_state:ok");
        free(r);
        if (ok)
            return 0;
        if (s_ms() >= end) {
            fprintf(stderr, "redis_server: port %d: cluster_state not ok within 20 s\n", rs->port);
            s_print_log(rs);
            sl_redis_server_stop(rs, SIGKILL);
            return -1;
        }
        s_nap(10);
    }
}

int sl_redis_server_start(sl_redis_server_t *rs, const sl_redis_opts_t *opts)
{
    memset(rs, 0, sizeof *rs);
    if (opts && opts->port == 6379) {
        fprintf(stderr, "redis_server: 6379 is the system Redis's port, never used by tests\n");
        return -1;
    }
    rs->flags = opts ? opts->flags : 0;
    if (opts && opts->password)
        snprintf(rs->password, sizeof rs->password, "%s", opts->password);
    snprintf(rs->dir, sizeof rs->dir, "%s/sluice-redis-XXXXXX",
             getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(rs->dir)) {
        fprintf(stderr, "redis_server: mkdtemp %s: %s\n", rs->dir, strerror(errno));
        rs->dir[0] = '\0';
        return -1;
    }
    snprintf(rs->sock, sizeof rs->sock, "%s/redis.sock", rs->dir);
    /* A free port can be taken between our probe and Redis's bind: try a
     * few. Never 6379, where a system Redis may run. */
    for (int attempt = 0; attempt < 5; attempt++) {
        if (opts && opts->port)
            rs->port = opts->port;
        else
            do
                rs->port = s_free_port();
            while (rs->port == 6379);
        if (rs->port < 0)
            break;
        if (rs->password[0])
            snprintf(rs->url, sizeof rs->url, "redis://:%s@127.0.0.1:%d", rs->password, rs->port);
        else
            snprintf(rs->url, sizeof rs->url, "redis://127.0.0.1:%d", rs->port);
        int rc = s_spawn(rs);
        if (rc == 0)
            return 0;
        if (rc == -1 || (opts && opts->port))
            break;
    }
    fprintf(stderr, "redis_server: could not start a server\n");
    s_print_log(rs);
    sl_redis_server_release(rs);
    return -1;
}

void sl_redis_server_stop(sl_redis_server_t *rs, int sig)
{
    if (rs->pid <= 0)
        return;
    kill(rs->pid, SIGCONT); /* a frozen server cannot act on SIGTERM */
    kill(rs->pid, sig);
    if (!s_reap(rs->pid, 10000)) {
        kill(rs->pid, SIGKILL);
        s_reap(rs->pid, 10000);
    }
    rs->pid = 0;
}

void sl_redis_server_freeze(sl_redis_server_t *rs, bool frozen)
{
    if (rs->pid > 0)
        kill(rs->pid, frozen ? SIGSTOP : SIGCONT);
}

int sl_redis_server_restart(sl_redis_server_t *rs)
{
    sl_redis_server_stop(rs, SIGKILL);
    /* The port was Redis's own a moment ago (SO_REUSEADDR): retry briefly
     * if the kernel has not let it go yet. */
    for (int attempt = 0; attempt < 50; attempt++) {
        int rc = s_spawn(rs);
        if (rc == 0)
            return 0;
        if (rc == -1)
            return -1;
        s_nap(100);
    }
    fprintf(stderr, "redis_server: could not restart on port %d\n", rs->port);
    s_print_log(rs);
    return -1;
}

static int s_rm(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    remove(path);
    return 0;
}

void sl_redis_server_release(sl_redis_server_t *rs)
{
    sl_redis_server_stop(rs, SIGKILL);
    if (rs->dir[0])
        nftw(rs->dir, s_rm, 16, FTW_DEPTH | FTW_PHYS);
    rs->dir[0] = '\0';
    s_live_set(rs, false);
}
