/* itest.c -- support for the integration tests (see itest.h): processes
 * that die with the test, scratch files, record files, an id set. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testlib.h"
#include "itest.h"

/* --- processes ------------------------------------------------------------ */

#define S_MAX_PROCS 64

static pid_t s_procs[S_MAX_PROCS];
static bool s_atexit_done;

void it_track(pid_t pid)
{
    if (!s_atexit_done) {
        atexit(it_kill_all);
        s_atexit_done = true;
    }
    for (int i = 0; i < S_MAX_PROCS; i++)
        if (s_procs[i] == 0) {
            s_procs[i] = pid;
            return;
        }
    kill(pid, SIGKILL);
    fail_msg("more than %d processes at once", S_MAX_PROCS);
}

static void s_forget(pid_t pid)
{
    for (int i = 0; i < S_MAX_PROCS; i++)
        if (s_procs[i] == pid)
            s_procs[i] = 0;
}

pid_t it_spawn(char *const argv[], int *out_fd)
{
    int p[2] = {-1, -1};
    if (out_fd && pipe2(p, O_CLOEXEC) != 0)
        fail_msg("pipe: %s", strerror(errno));
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0)
        fail_msg("fork: %s", strerror(errno));
    if (pid == 0) {
        /* Only async-signal-safe calls between fork and exec. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0)
            dup2(devnull, 0);
        if (out_fd)
            dup2(p[1], 1);
        /* The test blocks no signals the child should see, but clear the
         * mask anyway: cmocka or a client thread may have changed it. */
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        execv(argv[0], argv);
        _exit(127);
    }
    if (out_fd) {
        close(p[1]);
        *out_fd = p[0];
    }
    it_track(pid);
    return pid;
}

int it_wait_exit(pid_t pid, int64_t timeout_ms)
{
    int64_t end = it_mono_ms() + timeout_ms;
    for (;;) {
        int status = 0;
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) {
            s_forget(pid);
            return status;
        }
        if (r < 0 && errno != EINTR)
            fail_msg("waitpid %d: %s", (int)pid, strerror(errno));
        if (it_mono_ms() >= end)
            return -1;
        /* A child's exit cannot be waited for with a timeout without a
         * pidfd; 2 ms polls are far below any test's tolerance. */
        it_sleep_ms(2);
    }
}

int it_stop(pid_t pid, int sig, int64_t timeout_ms)
{
    kill(pid, sig);
    int st = it_wait_exit(pid, timeout_ms);
    if (st == -1) {
        kill(pid, SIGKILL);
        st = it_wait_exit(pid, 10000);
    }
    return st;
}

void it_kill_all(void)
{
    for (int i = 0; i < S_MAX_PROCS; i++)
        if (s_procs[i] > 0)
            kill(s_procs[i], SIGKILL);
    for (int i = 0; i < S_MAX_PROCS; i++)
        if (s_procs[i] > 0) {
            int st;
            waitpid(s_procs[i], &st, 0);
            s_procs[i] = 0;
        }
}

long it_rss_kib(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long kib = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
            break;
    fclose(f);
    return kib;
}

/* --- paths and binaries --------------------------------------------------- */

const char *it_node_bin(void) { return SLUICE_NODE_BIN; }
const char *it_cli_bin(void) { return SLUICE_CLI_BIN; }
const char *it_consumer_bin(void) { return ITEST_CONSUMER_BIN; }
const char *it_producer_bin(void) { return ITEST_PRODUCER_BIN; }
#ifdef SLUICE_COORD_BIN
const char *it_coord_bin(void) { return SLUICE_COORD_BIN; }
#else
const char *it_coord_bin(void) { return NULL; }
#endif

static char s_scratch[PATH_MAX];

const char *it_scratch(void)
{
    if (!s_scratch[0]) {
        const char *tmp = getenv("TMPDIR");
        int n = snprintf(s_scratch, sizeof s_scratch, "%s/sluice-it-XXXXXX",
                         tmp && *tmp ? tmp : "/tmp");
        if (n < 0 || (size_t)n >= sizeof s_scratch) {
            s_scratch[0] = '\0';
            fail_msg("TMPDIR too long for a scratch directory: %s", tmp);
        }
        if (!mkdtemp(s_scratch))
            fail_msg("mkdtemp %s: %s", s_scratch, strerror(errno));
    }
    return s_scratch;
}

void it_scratch_cleanup(bool passed)
{
    if (!s_scratch[0])
        return;
    if (!passed) {
        fprintf(stderr, "itest: records kept in %s\n", s_scratch);
        s_scratch[0] = '\0';
        return;
    }
    DIR *d = opendir(s_scratch);
    struct dirent *e;
    char p[PATH_MAX + 256];
    while (d && (e = readdir(d)))
        if (e->d_name[0] != '.') {
            int n = snprintf(p, sizeof p, "%s/%s", s_scratch, e->d_name);
            if (n > 0 && (size_t)n < sizeof p)
                unlink(p);
        }
    if (d)
        closedir(d);
    rmdir(s_scratch);
    s_scratch[0] = '\0';
}

char *it_path(char *buf, const char *name)
{
    int n = snprintf(buf, PATH_MAX, "%s/%s", it_scratch(), name);
    if (n < 0 || n >= PATH_MAX)
        fail_msg("path too long: %s/%s", it_scratch(), name);
    return buf;
}

bool it_soak(void)
{
    const char *s = getenv("SLUICE_SOAK");
    return s && strcmp(s, "1") == 0;
}

int64_t it_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t it_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void it_sleep_ms(int64_t ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* --- a test's resources ------------------------------------------------------ */

static it_ctx_t s_ctx;

int it_setup(void **state)
{
    memset(&s_ctx, 0, sizeof s_ctx);
    s_ctx.node.out_fd = -1;
    *state = &s_ctx;
    return 0;
}

int it_teardown(void **state)
{
    it_ctx_t *t = *state;
    /* Processes first: a client of a dead node would linger to no use. */
    it_kill_all();
    if (t->node.bin) {
        t->node.pid = 0; /* reaped by it_kill_all */
        sl_testnode_release(&t->node);
    }
    sl_client_destroy(&t->client);
    it_scratch_cleanup(t->passed);
    return 0;
}

/* --- the node --------------------------------------------------------------- */

void it_node_start(sl_testnode_t *n, const char *const *extra)
{
    if (sl_testnode_start(n, it_node_bin(), 0, extra) != 0)
        fail_msg("cannot start %s", it_node_bin());
    it_track(n->pid);
}

void it_coord_start(sl_testnode_t *c, const char *const *extra)
{
    if (!it_coord_bin())
        fail_msg("this build has no sluice-coordinator");
    if (sl_testnode_start(c, it_coord_bin(), 0, extra) != 0)
        fail_msg("cannot start %s", it_coord_bin());
    it_track(c->pid);
}

sl_client_t *it_client(const char *endpoint)
{
    sl_client_opts_t o = {.endpoint = endpoint, .heartbeat_ms = 100, .linger_ms = -1};
    int err = 0;
    sl_client_t *c = sl_client_new(&o, &err);
    if (!c)
        fail_msg("sl_client_new: %s", sl_err_name(err));
    SL_ASSERT_OK(sl_client_wait_connected(c, sl_deadline_ms(10000)));
    return c;
}

sl_queue_stats_t it_stats(sl_client_t *c, const char *queue)
{
    sl_queue_stats_t *qs = NULL, out;
    size_t n = 0;
    SL_ASSERT_OK(sl_client_stats(c, queue, &qs, &n, sl_deadline_ms(10000)));
    assert_int_equal(n, 1);
    out = qs[0];
    free(qs);
    return out;
}

sl_queue_stats_t it_stats_or_zero(sl_client_t *c, const char *queue)
{
    sl_queue_stats_t *qs = NULL, out;
    memset(&out, 0, sizeof out);
    size_t n = 0;
    int rc = sl_client_stats(c, queue, &qs, &n, sl_deadline_ms(10000));
    if (rc == SL_ENOTFOUND)
        return out;
    if (rc != SL_OK)
        fail_msg("stats of '%s': %s", queue, sl_err_name(rc));
    assert_int_equal(n, 1);
    out = qs[0];
    free(qs);
    return out;
}

/* --- helper processes -------------------------------------------------------- */

static pid_t s_helper(const char *bin, const char *endpoint, const char *queue,
                      const char *record, const char *const *extra)
{
    char *argv[64];
    int k = 0;
    argv[k++] = (char *)bin;
    argv[k++] = "--endpoint";
    argv[k++] = (char *)endpoint;
    argv[k++] = "--queue";
    argv[k++] = (char *)queue;
    argv[k++] = "--record";
    argv[k++] = (char *)record;
    for (int i = 0; extra && extra[i] && k < 63; i++)
        argv[k++] = (char *)extra[i];
    argv[k] = NULL;
    return it_spawn(argv, NULL);
}

pid_t it_consumer(const char *endpoint, const char *queue, const char *record,
                  const char *const *extra)
{
    return s_helper(it_consumer_bin(), endpoint, queue, record, extra);
}

pid_t it_producer(const char *endpoint, const char *queue, const char *record,
                  const char *const *extra)
{
    return s_helper(it_producer_bin(), endpoint, queue, record, extra);
}

int it_cli(const char *endpoint, const char *const *args, int timeout_ms, char **out)
{
    char *argv[64];
    int k = 0;
    argv[k++] = (char *)it_cli_bin();
    argv[k++] = "--endpoint";
    argv[k++] = (char *)endpoint;
    for (int i = 0; args && args[i] && k < 63; i++)
        argv[k++] = (char *)args[i];
    argv[k] = NULL;
    return sl_testproc_run(argv, NULL, NULL, timeout_ms, out);
}

/* --- record files ------------------------------------------------------------ */

static char *s_slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    size_t r;
    while (buf && (r = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += r;
        if (cap - n < 4096) {
            char *nb = realloc(buf, cap *= 2);
            if (!nb)
                free(buf);
            buf = nb;
        }
    }
    fclose(f);
    if (!buf)
        fail_msg("out of memory reading %s", path);
    buf[n] = '\0';
    *len = n;
    return buf;
}

size_t it_records(const char *path, it_rec_t **recs)
{
    size_t len = 0;
    *recs = NULL;
    char *buf = s_slurp(path, &len);
    if (!buf)
        return 0;
    size_t lines = 0;
    for (size_t i = 0; i < len; i++)
        lines += buf[i] == '\n';
    it_rec_t *out = calloc(lines + 1, sizeof *out);
    size_t n = 0;
    char *save = NULL;
    for (char *line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (line[0] == '#')
            continue;
        it_rec_t *r = &out[n];
        char hex[64] = "";
        long long wall = 0, mono = 0, created = 0;
        int f = sscanf(line, "%15s %63s %ld %ld %lld %lld %lld %63s", r->event, hex, &r->attempt,
                       &r->pid, &wall, &mono, &created, r->payload);
        if (f < 7 || sl_id_from_hex(hex, r->id) != 0)
            fail_msg("%s: malformed record line '%s'", path, line);
        r->wall_ms = wall;
        r->mono_ms = mono;
        r->created_ms = created;
        n++;
    }
    free(buf);
    *recs = out;
    return n;
}

size_t it_count(const char *path, const char *event)
{
    size_t len = 0, n = 0, elen = strlen(event);
    char *buf = s_slurp(path, &len);
    if (!buf)
        return 0;
    char *line = buf;
    while (line < buf + len) {
        char *nl = strchr(line, '\n');
        if (!nl)
            break; /* a line still being written */
        if (line[0] != '#' && strncmp(line, event, elen) == 0 && (elen == 0 || line[elen] == ' '))
            n++;
        line = nl + 1;
    }
    free(buf);
    return n;
}

long it_summary(const char *path, const char *key)
{
    size_t len = 0;
    char *buf = s_slurp(path, &len);
    if (!buf)
        return -1;
    long v = -1;
    char *save = NULL;
    size_t klen = strlen(key);
    for (char *line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
        if (line[0] == '#' && strncmp(line + 2, key, klen) == 0 && line[2 + klen] == ' ')
            v = strtol(line + 2 + klen + 1, NULL, 10);
    free(buf);
    return v;
}

/* --- a set of job ids (open addressing; ids are random enough to hash) ----- */

typedef struct {
    uint8_t id[SL_ID_LEN];
    int count, tag;
    bool used;
} s_slot_t;

struct it_idset {
    s_slot_t *slots;
    size_t cap, size;
};

it_idset_t *it_idset_new(size_t n)
{
    it_idset_t *s = calloc(1, sizeof *s);
    size_t cap = 64;
    while (cap < 2 * n)
        cap *= 2;
    if (!s || !(s->slots = calloc(cap, sizeof *s->slots)))
        fail_msg("out of memory");
    s->cap = cap;
    return s;
}

void it_idset_destroy(it_idset_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    free((*self_p)->slots);
    free(*self_p);
    *self_p = NULL;
}

static size_t s_hash(const uint8_t id[SL_ID_LEN])
{
    uint64_t h = 1469598103934665603ull;
    for (int i = 0; i < SL_ID_LEN; i++)
        h = (h ^ id[i]) * 1099511628211ull;
    return (size_t)h;
}

static s_slot_t *s_find(const it_idset_t *s, const uint8_t id[SL_ID_LEN])
{
    size_t i = s_hash(id) & (s->cap - 1);
    while (s->slots[i].used && memcmp(s->slots[i].id, id, SL_ID_LEN) != 0)
        i = (i + 1) & (s->cap - 1);
    return &s->slots[i];
}

int it_idset_add(it_idset_t *self, const uint8_t id[SL_ID_LEN], int tag)
{
    if (2 * (self->size + 1) > self->cap) {
        it_idset_t big = {calloc(self->cap * 2, sizeof *self->slots), self->cap * 2, 0};
        if (!big.slots)
            fail_msg("out of memory");
        for (size_t i = 0; i < self->cap; i++)
            if (self->slots[i].used)
                *s_find(&big, self->slots[i].id) = self->slots[i];
        big.size = self->size;
        free(self->slots);
        *self = big;
    }
    s_slot_t *sl = s_find(self, id);
    if (!sl->used) {
        sl->used = true;
        memcpy(sl->id, id, SL_ID_LEN);
        sl->tag = tag;
        self->size++;
    }
    return ++sl->count;
}

int it_idset_count(const it_idset_t *self, const uint8_t id[SL_ID_LEN], int *tag)
{
    const s_slot_t *sl = s_find(self, id);
    if (tag)
        *tag = sl->used ? sl->tag : -1;
    return sl->used ? sl->count : 0;
}

size_t it_idset_size(const it_idset_t *self)
{
    return self->size;
}
