/* store_test.c -- the store's behaviour, the same tests against every
 * backend: memory, a standalone redis-server, and a cluster-enabled
 * redis-server with one node owning every slot (so a script touching two
 * slots fails with CROSSSLOT). Then what only Redis can do wrong: a server
 * killed and restarted, frozen past the command timeout, unreachable at
 * start, silent on connect, its script cache flushed; URLs, AUTH, SELECT,
 * unix sockets, AOF. Nothing is mocked: each Redis is a real process of
 * the test's own (tests/redis_server.h), never the system's 6379. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "redis_server.h"
#include "sluice/id.h"
#include "sluice/store.h"
#include "testlib.h"

/* --- the backend under test ---------------------------------------------- */

typedef struct {
    const char *name;           /* memory, redis, cluster                 */
    sl_redis_server_t *rs;      /* NULL: memory                           */
} s_env_t;

static const s_env_t *s_env;    /* the group being run                    */

static const char *s_url(void)
{
    return s_env->rs ? s_env->rs->url : "memory";
}

static bool s_is_redis(void)
{
    return s_env->rs != NULL;
}

/* --- waiting for completions --------------------------------------------- */

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    size_t done;
    size_t failed;              /* s_on_done_free: completed with an error */
} s_waiter_t;

static void s_waiter_init(s_waiter_t *w)
{
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    w->done = 0;
    w->failed = 0;
}

static void s_waiter_release(s_waiter_t *w)
{
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
}

static void s_on_done(sl_store_req_t *req, void *arg)
{
    s_waiter_t *w = arg;
    pthread_mutex_lock(&w->mu);
    w->done++;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

/* The same, for a request nobody keeps: it is freed. */
static void s_on_done_free(sl_store_req_t *req, void *arg)
{
    s_waiter_t *w = arg;
    if (req->rc != SL_OK) {
        pthread_mutex_lock(&w->mu);
        w->failed++;
        pthread_mutex_unlock(&w->mu);
    }
    sl_store_req_destroy(&req);
    s_on_done(NULL, arg);
}

/* Wait until n completions in all, failing the test after patience. */
static void s_wait_done(s_waiter_t *w, size_t n, int64_t patience_ms)
{
    struct timespec end;
    clock_gettime(CLOCK_REALTIME, &end);
    end.tv_sec += patience_ms / 1000;
    end.tv_nsec += (patience_ms % 1000) * 1000000;
    if (end.tv_nsec >= 1000000000) {
        end.tv_sec++;
        end.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&w->mu);
    while (w->done < n)
        if (pthread_cond_timedwait(&w->cv, &w->mu, &end) != 0)
            break;
    size_t got = w->done;
    pthread_mutex_unlock(&w->mu);
    if (got < n)
        fail_msg("%zu of %zu requests completed within %lld ms", got, n,
                 (long long)patience_ms);
}

/* One request, run to completion. Caller owns the result. */
static sl_store_req_t *s_call(sl_store_t *st, sl_store_req_t *req)
{
    s_waiter_t w;
    s_waiter_init(&w);
    req->done = s_on_done;
    req->arg = &w;
    sl_store_req_t *keep = req;
    SL_ASSERT_OK(sl_store_submit(st, &req));
    assert_null(req);
    s_wait_done(&w, 1, sl_test_patience_ms());
    s_waiter_release(&w);
    return keep;
}

static sl_store_req_t *s_req(sl_store_op_t op, const char *queue)
{
    sl_store_req_t *req = sl_store_req_new(op, queue, s_on_done, NULL);
    assert_non_null(req);
    return req;
}

/* --- records --------------------------------------------------------------- */

/* Ids ordered as n: the number big-endian in the last four bytes. */
static void s_id(uint8_t id[16], unsigned n)
{
    memset(id, 0, 16);
    id[0] = 0x01;
    id[12] = (uint8_t)(n >> 24);
    id[13] = (uint8_t)(n >> 16);
    id[14] = (uint8_t)(n >> 8);
    id[15] = (uint8_t)n;
}

static unsigned s_id_n(const uint8_t id[16])
{
    return (unsigned)id[12] << 24 | (unsigned)id[13] << 16 | (unsigned)id[14] << 8 | id[15];
}

static char *s_strdup(const char *s)
{
    char *d = strdup(s);
    assert_non_null(d);
    return d;
}

/* A record whose every field says n. */
static void s_rec(sl_store_rec_t *r, unsigned n, int64_t due_ms, int64_t last_ms)
{
    memset(r, 0, sizeof *r);
    s_id(r->id, n);
    char job[32];
    int len = snprintf(job, sizeof job, "job-%u", n);
    r->job = malloc((size_t)len);
    assert_non_null(r->job);
    memcpy(r->job, job, (size_t)len);
    r->job_len = (size_t)len;
    r->attempt = n % 5 + 1;
    r->failures = n % 3;
    r->redeliveries = n % 2;
    if (n % 2) {
        char e[32];
        snprintf(e, sizeof e, "boom %u", n);
        r->last_error = s_strdup(e);
    } else {
        r->last_error = s_strdup(""); /* comes back as NULL */
    }
    r->reason = s_strdup("failed: boom");
    r->node_id = s_strdup("node-a");
    r->first_ms = 1000 + n;
    r->last_ms = last_ms;
    r->due_ms = due_ms;
}

static void s_rec_check(const sl_store_rec_t *r, unsigned n, int64_t due_ms, int64_t last_ms)
{
    assert_int_equal(s_id_n(r->id), n);
    char job[32];
    int len = snprintf(job, sizeof job, "job-%u", n);
    assert_int_equal(r->job_len, len);
    assert_memory_equal(r->job, job, (size_t)len);
    assert_int_equal(r->attempt, n % 5 + 1);
    assert_int_equal(r->failures, n % 3);
    assert_int_equal(r->redeliveries, n % 2);
    if (n % 2) {
        char e[32];
        snprintf(e, sizeof e, "boom %u", n);
        assert_non_null(r->last_error);
        assert_string_equal(r->last_error, e);
    } else {
        assert_null(r->last_error);
    }
    assert_string_equal(r->reason, "failed: boom");
    assert_string_equal(r->node_id, "node-a");
    assert_int_equal(r->first_ms, 1000 + n);
    assert_int_equal(r->last_ms, last_ms);
    assert_int_equal(r->due_ms, due_ms);
}

/* --- operations, synchronously --------------------------------------------- */

static void s_retry_put(sl_store_t *st, const char *q, unsigned n, int64_t due_ms)
{
    sl_store_req_t *req = s_req(SL_STORE_RETRY_PUT, q);
    s_rec(&req->rec, n, due_ms, 5000 + n);
    s_call(st, req);
    SL_ASSERT_OK(req->rc);
    sl_store_req_destroy(&req);
}

static sl_store_req_t *s_retry_take(sl_store_t *st, const char *q, int64_t now_ms, size_t max)
{
    sl_store_req_t *req = s_req(SL_STORE_RETRY_TAKE, q);
    req->now_ms = now_ms;
    req->max = max;
    s_call(st, req);
    SL_ASSERT_OK(req->rc);
    return req;
}

static uint64_t s_dead_put(sl_store_t *st, const char *q, unsigned n, int64_t dead_ms,
                           int64_t now_ms, uint64_t max_dead, int64_t max_age_ms)
{
    sl_store_req_t *req = s_req(SL_STORE_DEAD_PUT, q);
    s_rec(&req->rec, n, 0, dead_ms);
    req->now_ms = now_ms;
    req->max_dead = max_dead;
    req->max_age_ms = max_age_ms;
    s_call(st, req);
    SL_ASSERT_OK(req->rc);
    uint64_t trimmed = req->trimmed;
    sl_store_req_destroy(&req);
    return trimmed;
}

static void s_count(sl_store_t *st, const char *q, uint64_t retries, uint64_t dead)
{
    sl_store_req_t *req = s_call(st, s_req(SL_STORE_COUNT, q));
    SL_ASSERT_OK(req->rc);
    if (req->counts[0] != retries || req->counts[1] != dead)
        fail_msg("%s: count (retries %llu, dead %llu), expected (%llu, %llu)", q,
                 (unsigned long long)req->counts[0], (unsigned long long)req->counts[1],
                 (unsigned long long)retries, (unsigned long long)dead);
    sl_store_req_destroy(&req);
}

/* --- fixture --------------------------------------------------------------- */

static sl_store_t *s_store_url(const char *url, const sl_store_opts_t *extra)
{
    sl_store_opts_t o = {0};
    if (extra)
        o = *extra;
    o.url = url;
    int err = 0;
    sl_store_t *st = sl_store_new(&o, &err);
    if (!st)
        fail_msg("sl_store_new(%s): %s", url, sl_err_name(err));
    return st;
}

/* Options for a store whose requests must not time out on a loaded
 * machine: these tests are about behaviour, not deadlines. */
static sl_store_opts_t s_patient(void)
{
    return (sl_store_opts_t){.connect_timeout_ms = sl_test_patience_ms(),
                             .command_timeout_ms = sl_test_patience_ms() * 4};
}

static int s_setup(void **state)
{
    if (s_env->rs) {
        char *r = NULL;
        assert_int_equal(sl_redis_server_cmd(s_env->rs, &r, "FLUSHALL", NULL), 0);
        free(r);
    }
    sl_store_opts_t o = s_patient();
    *state = s_store_url(s_url(), &o);
    return 0;
}

static int s_teardown(void **state)
{
    sl_store_t *st = *state;
    sl_store_destroy(&st);
    return 0;
}

/* --- every backend ------------------------------------------------------- */

/* Due retries come out earliest first (ties by id), only those due, each
 * once, with every field as it went in; `more` says some due remain. */
static void test_store__retry_put_take_order(void **state)
{
    sl_store_t *st = *state;
    assert_string_equal(sl_store_kind(st), s_is_redis() ? "redis" : "memory");
    const char *q = "emails";
    /* (n, due): 5 and 3 tie on due 200; 9 is not due until 900. */
    unsigned ns[] = {7, 5, 3, 9, 1};
    int64_t due[] = {300, 200, 200, 900, 100};
    for (int i = 0; i < 5; i++)
        s_retry_put(st, q, ns[i], due[i]);
    s_count(st, q, 5, 0);

    sl_store_req_t *t = s_retry_take(st, q, 300, 2);
    assert_int_equal(t->n_recs, 2);
    assert_true(t->more);
    s_rec_check(&t->recs[0], 1, 100, 5001);
    s_rec_check(&t->recs[1], 3, 200, 5003);
    sl_store_req_destroy(&t);

    t = s_retry_take(st, q, 300, 10);
    assert_int_equal(t->n_recs, 2);
    assert_false(t->more);
    s_rec_check(&t->recs[0], 5, 200, 5005);
    s_rec_check(&t->recs[1], 7, 300, 5007);
    sl_store_req_destroy(&t);

    t = s_retry_take(st, q, 899, 10);
    assert_int_equal(t->n_recs, 0);
    assert_false(t->more);
    sl_store_req_destroy(&t);
    s_count(st, q, 1, 0);

    t = s_retry_take(st, q, 900, 10);
    assert_int_equal(t->n_recs, 1);
    s_rec_check(&t->recs[0], 9, 900, 5009);
    sl_store_req_destroy(&t);
    s_count(st, q, 0, 0);
}

/* A retry put again for the same id replaces the first: one entry, the
 * second record, the second due time. */
static void test_store__retry_put_replaces(void **state)
{
    sl_store_t *st = *state;
    s_retry_put(st, "q", 4, 500);
    s_retry_put(st, "q", 4, 50);
    s_count(st, "q", 1, 0);
    sl_store_req_t *t = s_retry_take(st, "q", 100, 10);
    assert_int_equal(t->n_recs, 1);
    s_rec_check(&t->recs[0], 4, 50, 5004);
    sl_store_req_destroy(&t);
    s_count(st, "q", 0, 0);
}

/* Dead letters page oldest first, ties on the millisecond by id, each
 * exactly once across pages however the pages cut the ties; GET finds one
 * or none; last_ms 0 takes now_ms. */
static void test_store__dead_list_pages(void **state)
{
    sl_store_t *st = *state;
    const char *q = "pay.v2:dlq-1";
    /* 25 letters on 5 distinct milliseconds: ties of 5, cut by pages of 7. */
    for (unsigned n = 25; n >= 1; n--)
        s_dead_put(st, q, n, 10000 + (n - 1) / 5, 20000, 1000, 0);
    s_count(st, q, 0, 25);

    unsigned seen = 0, pages = 0;
    int64_t after_ms = 0;
    uint8_t after_id[16] = {0};
    bool more = true;
    while (more && pages < 10) {
        sl_store_req_t *l = s_req(SL_STORE_DEAD_LIST, q);
        l->after_ms = after_ms;
        memcpy(l->after_id, after_id, 16);
        l->max = 7;
        s_call(st, l);
        SL_ASSERT_OK(l->rc);
        for (size_t i = 0; i < l->n_recs; i++) {
            unsigned n = ++seen;
            s_rec_check(&l->recs[i], n, 0, 10000 + (n - 1) / 5);
        }
        more = l->more;
        if (l->n_recs) {
            after_ms = l->recs[l->n_recs - 1].last_ms;
            memcpy(after_id, l->recs[l->n_recs - 1].id, 16);
        }
        assert_int_equal(l->n_recs, more ? 7 : 25 % 7);
        pages++;
        sl_store_req_destroy(&l);
    }
    assert_int_equal(seen, 25);
    assert_int_equal(pages, 4);

    sl_store_req_t *g = s_req(SL_STORE_DEAD_GET, q);
    s_id(g->id, 12);
    s_call(st, g);
    SL_ASSERT_OK(g->rc);
    assert_int_equal(g->n_recs, 1);
    s_rec_check(&g->recs[0], 12, 0, 10002);
    sl_store_req_destroy(&g);

    g = s_req(SL_STORE_DEAD_GET, q);
    s_id(g->id, 99);
    s_call(st, g);
    SL_ASSERT_OK(g->rc);
    assert_int_equal(g->n_recs, 0);
    sl_store_req_destroy(&g);

    /* last_ms 0: the store writes now_ms. */
    s_dead_put(st, "other", 3, 0, 777, 10, 0);
    g = s_req(SL_STORE_DEAD_GET, "other");
    s_id(g->id, 3);
    s_call(st, g);
    assert_int_equal(g->n_recs, 1);
    assert_int_equal(g->recs[0].last_ms, 777);
    sl_store_req_destroy(&g);
}

/* DEAD_PUT keeps at most max_dead (the oldest go), none older than
 * max_age_ms, counts what it dropped; max_dead 0 keeps nothing. */
static void test_store__dead_trim_count_and_age(void **state)
{
    sl_store_t *st = *state;
    uint64_t trimmed = 0;
    for (unsigned n = 1; n <= 8; n++)
        trimmed += s_dead_put(st, "q", n, 1000 + n, 2000, 5, 0);
    assert_int_equal(trimmed, 3);
    s_count(st, "q", 0, 5);
    sl_store_req_t *l = s_req(SL_STORE_DEAD_LIST, "q");
    l->max = 100;
    s_call(st, l);
    assert_int_equal(l->n_recs, 5);
    for (unsigned i = 0; i < 5; i++)
        assert_int_equal(s_id_n(l->recs[i].id), 4 + i); /* 1..3 went */
    sl_store_req_destroy(&l);

    /* Age: at now 1506 with max_age 500, anything dead before 1006 goes
     * (1004, 1005); 1006 and later stay. */
    assert_int_equal(s_dead_put(st, "q", 9, 1500, 1506, 100, 500), 2);
    s_count(st, "q", 0, 4);
    /* An entry already too old when put is dropped at once, and counted. */
    assert_int_equal(s_dead_put(st, "q", 10, 100, 1506, 100, 500), 1);
    s_count(st, "q", 0, 4);
    /* max_dead 0: the node's "keep no dead jobs". */
    assert_int_equal(s_dead_put(st, "q", 11, 1600, 1600, 0, 0), 5);
    s_count(st, "q", 0, 0);
}

/* DEAD_TAKE removes one by id, or by age in pages with `more`. */
static void test_store__dead_take(void **state)
{
    sl_store_t *st = *state;
    for (unsigned n = 1; n <= 10; n++)
        s_dead_put(st, "q", n, 100 * n, 2000, 100, 0);
    sl_store_req_t *t = s_req(SL_STORE_DEAD_TAKE, "q");
    t->has_id = true;
    s_id(t->id, 4);
    s_call(st, t);
    SL_ASSERT_OK(t->rc);
    assert_int_equal(t->n_recs, 1);
    s_rec_check(&t->recs[0], 4, 0, 400);
    sl_store_req_destroy(&t);
    s_count(st, "q", 0, 9);

    t = s_req(SL_STORE_DEAD_TAKE, "q");
    t->has_id = true;
    s_id(t->id, 4);
    s_call(st, t);
    SL_ASSERT_OK(t->rc);
    assert_int_equal(t->n_recs, 0);
    sl_store_req_destroy(&t);

    /* Older than 700 (strictly): 1, 2, 3, 5, 6 -- in pages of 3. */
    t = s_req(SL_STORE_DEAD_TAKE, "q");
    t->older_ms = 700;
    t->max = 3;
    s_call(st, t);
    SL_ASSERT_OK(t->rc);
    assert_int_equal(t->n_recs, 3);
    assert_true(t->more);
    assert_int_equal(s_id_n(t->recs[0].id), 1);
    assert_int_equal(s_id_n(t->recs[2].id), 3);
    sl_store_req_destroy(&t);
    t = s_req(SL_STORE_DEAD_TAKE, "q");
    t->older_ms = 700;
    t->max = 3;
    s_call(st, t);
    assert_int_equal(t->n_recs, 2);
    assert_false(t->more);
    assert_int_equal(s_id_n(t->recs[0].id), 5);
    assert_int_equal(s_id_n(t->recs[1].id), 6);
    sl_store_req_destroy(&t);
    s_count(st, "q", 0, 4);

    /* older_ms 0: all. */
    t = s_req(SL_STORE_DEAD_TAKE, "q");
    t->max = 100;
    s_call(st, t);
    assert_int_equal(t->n_recs, 4);
    assert_false(t->more);
    assert_int_equal(s_id_n(t->recs[0].id), 7);
    sl_store_req_destroy(&t);
    s_count(st, "q", 0, 0);
}

/* Queues do not see each other's retries or dead letters. */
static void test_store__queues_apart(void **state)
{
    sl_store_t *st = *state;
    s_retry_put(st, "a", 1, 10);
    s_retry_put(st, "a:b", 2, 10);
    s_dead_put(st, "a.b-c", 3, 10, 10, 10, 0);
    s_count(st, "a", 1, 0);
    s_count(st, "a:b", 1, 0);
    s_count(st, "a.b-c", 0, 1);
    s_count(st, "b", 0, 0);
    sl_store_req_t *t = s_retry_take(st, "a", 100, 10);
    assert_int_equal(t->n_recs, 1);
    assert_int_equal(s_id_n(t->recs[0].id), 1);
    sl_store_req_destroy(&t);
    s_count(st, "a:b", 1, 0);
}

/* Requests the store cannot act on are refused at submit and not taken;
 * bad URLs and options are refused at sl_store_new. */
static void test_store__refuses_invalid(void **state)
{
    sl_store_t *st = *state;
    sl_store_req_t *req = sl_store_req_new(SL_STORE_COUNT, "bad name", s_on_done, NULL);
    SL_ASSERT_ERR(sl_store_submit(st, &req), SL_EINVAL);
    assert_non_null(req);
    sl_store_req_destroy(&req);
    char longname[200];
    memset(longname, 'x', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    req = sl_store_req_new(SL_STORE_COUNT, longname, s_on_done, NULL);
    SL_ASSERT_ERR(sl_store_submit(st, &req), SL_EINVAL);
    sl_store_req_destroy(&req);
    req = sl_store_req_new(SL_STORE_RETRY_TAKE, "q", s_on_done, NULL);
    SL_ASSERT_ERR(sl_store_submit(st, &req), SL_EINVAL); /* max 0 */
    sl_store_req_destroy(&req);
    req = sl_store_req_new(SL_STORE_COUNT, "q", NULL, NULL);
    SL_ASSERT_ERR(sl_store_submit(st, &req), SL_EINVAL); /* no done */
    sl_store_req_destroy(&req);

    assert_null(sl_store_url_check("memory"));
    assert_null(sl_store_url_check("redis://127.0.0.1:7000/2"));
    assert_null(sl_store_url_check("redis://:p%40ss@[::1]:7000"));
    assert_null(sl_store_url_check("redis://user:pw@host"));
    assert_null(sl_store_url_check("unix:///run/redis.sock?db=3&password=x"));
    const char *bad[] = {"redis://", "redis://h:0", "redis://h:70000", "redis://h:1/x",
                         "redis://pw@h:1", "unix://rel/path", "unix:///p?x=1", "http://h",
                         "redis://h :1", "redis://:@h:1", "redis://:%zz@h"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        if (!sl_store_url_check(bad[i]))
            fail_msg("url %s accepted", bad[i]);
    int err = 0;
    sl_store_opts_t o = {.url = "redis://h:0"};
    assert_null(sl_store_new(&o, &err));
    assert_int_equal(err, SL_EINVAL);
    o = (sl_store_opts_t){.url = "memory", .prefix = "a{b}"};
    assert_null(sl_store_new(&o, &err));
    assert_int_equal(err, SL_EINVAL);
}

/* Completions come in submission order, whatever the mix of operations. */
typedef struct {
    pthread_mutex_t mu;
    unsigned order[200];
    size_t n;
} s_order_t;

static void s_on_order(sl_store_req_t *req, void *arg)
{
    s_order_t *o = arg;
    pthread_mutex_lock(&o->mu);
    o->order[o->n++] = req->rec.attempt; /* the index it was submitted at */
    pthread_mutex_unlock(&o->mu);
    sl_store_req_destroy(&req);
}

static size_t s_order_n(s_order_t *o)
{
    pthread_mutex_lock(&o->mu);
    size_t n = o->n;
    pthread_mutex_unlock(&o->mu);
    return n;
}

static int s_order_full(void *arg)
{
    return s_order_n(arg) == 200;
}

static void test_store__completions_in_order(void **state)
{
    sl_store_t *st = *state;
    s_order_t o = {.n = 0};
    pthread_mutex_init(&o.mu, NULL);
    sl_store_op_t ops[] = {SL_STORE_RETRY_PUT, SL_STORE_COUNT, SL_STORE_DEAD_PUT,
                           SL_STORE_RETRY_TAKE, SL_STORE_DEAD_LIST, SL_STORE_DEAD_GET};
    for (unsigned i = 0; i < 200; i++) {
        sl_store_op_t op = ops[i % 6];
        sl_store_req_t *req = sl_store_req_new(op, "q", s_on_order, &o);
        assert_non_null(req);
        if (op == SL_STORE_RETRY_PUT || op == SL_STORE_DEAD_PUT)
            s_rec(&req->rec, i, i, i);
        req->rec.attempt = i;
        req->now_ms = i;
        req->max = 3;
        req->max_dead = 1000;
        SL_ASSERT_OK(sl_store_submit(st, &req));
    }
    assert_true(sl_test_wait_for(s_order_full, &o, sl_test_patience_ms()));
    for (unsigned i = 0; i < 200; i++)
        assert_int_equal(o.order[i], i);
    pthread_mutex_destroy(&o.mu);
}

/* Two takers at once (two stores: two connections to Redis) never get the
 * same job, and between them get every one. */
typedef struct {
    sl_store_t *st;
    unsigned char got[1000];
    unsigned takes, dup;
} s_taker_t;

static void *s_taker(void *arg)
{
    s_taker_t *t = arg;
    int64_t end = sl_now() + sl_test_patience_ms() * 1000000;
    for (unsigned i = 0; i < 2000 && sl_now() < end; i++) {
        sl_store_req_t *req = s_retry_take(t->st, "busy", 1000000, 7);
        t->takes++;
        size_t n = req->n_recs;
        for (size_t k = 0; k < n; k++) {
            unsigned id = s_id_n(req->recs[k].id);
            if (id < 1000) {
                t->dup += t->got[id];
                t->got[id] = 1;
            }
        }
        sl_store_req_destroy(&req);
        if (n == 0)
            break;
    }
    return NULL;
}

static void test_store__concurrent_take_never_twice(void **state)
{
    sl_store_t *st = *state;
    /* 1000 due retries, put pipelined. */
    s_waiter_t w;
    s_waiter_init(&w);
    for (unsigned n = 0; n < 1000; n++) {
        sl_store_req_t *req = sl_store_req_new(SL_STORE_RETRY_PUT, "busy", s_on_done_free, &w);
        assert_non_null(req);
        s_rec(&req->rec, n, n % 50, 1);
        SL_ASSERT_OK(sl_store_submit(st, &req));
    }
    s_wait_done(&w, 1000, sl_test_patience_ms());
    assert_int_equal(w.failed, 0);
    s_waiter_release(&w);
    s_count(st, "busy", 1000, 0);

    /* Memory: one store taken from two threads; Redis: a second store. */
    sl_store_opts_t o = s_patient();
    sl_store_t *other = s_is_redis() ? s_store_url(s_url(), &o) : NULL;
    s_taker_t *a = calloc(1, sizeof *a), *b = calloc(1, sizeof *b);
    assert_true(a && b);
    a->st = st;
    b->st = other ? other : st;
    pthread_t ta = sl_test_thread(s_taker, a), tb = sl_test_thread(s_taker, b);
    sl_test_join(ta);
    sl_test_join(tb);
    unsigned both = 0, all = 0, got_a = 0, got_b = 0;
    for (unsigned i = 0; i < 1000; i++) {
        both += a->got[i] && b->got[i];
        all += a->got[i] || b->got[i];
        got_a += a->got[i];
        got_b += b->got[i];
    }
    print_message("store[%s]: takers got %u + %u jobs in %u + %u takes\n", s_env->name, got_a,
                  got_b, a->takes, b->takes);
    assert_int_equal(a->dup + b->dup, 0);
    assert_int_equal(both, 0);
    assert_int_equal(all, 1000);
    s_count(st, "busy", 0, 0);
    free(a);
    free(b);
    sl_store_destroy(&other);
}

/* A request whose done holds the store's thread until the gate opens, so
 * that everything submitted meanwhile waits and is taken as one batch.
 * (Real callers' done must return promptly; this one is the test's lever.) */
typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool held, open;
} s_gate_t;

static void s_on_gate(sl_store_req_t *req, void *arg)
{
    s_gate_t *g = arg;
    pthread_mutex_lock(&g->mu);
    g->held = true;
    pthread_cond_broadcast(&g->cv);
    while (!g->open)
        pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
    sl_store_req_destroy(&req);
}

static void s_gate_close(sl_store_t *st, s_gate_t *g)
{
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
    g->held = g->open = false;
    sl_store_req_t *req = sl_store_req_new(SL_STORE_COUNT, "gate", s_on_gate, g);
    assert_non_null(req);
    SL_ASSERT_OK(sl_store_submit(st, &req));
    pthread_mutex_lock(&g->mu);
    while (!g->held)
        pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
}

static void s_gate_open(s_gate_t *g)
{
    pthread_mutex_lock(&g->mu);
    g->open = true;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

static void s_gate_release(s_gate_t *g)
{
    pthread_mutex_destroy(&g->mu);
    pthread_cond_destroy(&g->cv);
}

/* 10,000 RETRY_PUT submitted at once all complete, pipelined: taken in one
 * loop turn, so for Redis 10,000 EVALSHA leave in a handful of writes (as
 * many as the socket buffer needs) and the server reads them in far fewer
 * reads than commands. */
static void test_store__pipelined_10000(void **state)
{
    sl_store_t *st = *state;
    enum { N = 10000 };
    sl_store_req_t **reqs = calloc(N, sizeof *reqs);
    assert_non_null(reqs);
    s_waiter_t w;
    s_waiter_init(&w);
    for (unsigned n = 0; n < N; n++) {
        reqs[n] = sl_store_req_new(SL_STORE_RETRY_PUT, "flood", s_on_done, &w);
        assert_non_null(reqs[n]);
        s_rec(&reqs[n]->rec, n, n, 1);
    }
    sl_store_status_t s0, s1;
    sl_store_status(st, &s0);
    long long evalsha0 = 0, reads0 = 0;
    if (s_is_redis()) {
        evalsha0 = sl_redis_server_info(s_env->rs, "commandstats", "cmdstat_evalsha");
        reads0 = sl_redis_server_info(s_env->rs, "stats", "total_reads_processed");
    }
    s_gate_t gate;
    s_gate_close(st, &gate);
    int64_t t0 = sl_now();
    for (unsigned n = 0; n < N; n++) {
        sl_store_req_t *r = reqs[n];
        SL_ASSERT_OK(sl_store_submit(st, &r));
    }
    s_gate_open(&gate);
    s_wait_done(&w, N, sl_test_patience_ms() * 4);
    s_gate_release(&gate);
    double ms = sl_test_ms_since(t0);
    s_waiter_release(&w);
    /* done ran for every one; they are ours again. */
    for (unsigned n = 0; n < N; n++) {
        SL_ASSERT_OK(reqs[n]->rc);
        sl_store_req_destroy(&reqs[n]);
    }
    free(reqs);
    sl_store_status(st, &s1);
    if (s_is_redis()) {
        long long evalsha = sl_redis_server_info(s_env->rs, "commandstats", "cmdstat_evalsha") -
                            (evalsha0 < 0 ? 0 : evalsha0);
        long long reads =
            sl_redis_server_info(s_env->rs, "stats", "total_reads_processed") - reads0;
        unsigned long long writes = s1.writes - s0.writes, cmds = s1.commands - s0.commands;
        print_message("store[%s]: %d RETRY_PUT in %.1f ms: %llu commands (%lld EVALSHA) in "
                      "%llu writes; the server read %lld times\n",
                      s_env->name, N, ms, cmds, evalsha, writes, reads);
        assert_true(cmds >= N);
        assert_true(evalsha >= N);
        /* One batch: the writes are the socket buffer's, not the commands'. */
        assert_true(writes * 100 <= (unsigned long long)N);
        assert_true(reads * 10 <= N);
    } else {
        print_message("store[%s]: %d RETRY_PUT in %.1f ms\n", s_env->name, N, ms);
    }
    s_count(st, "flood", N, 0);
    /* And they come out again, earliest first, in pages of at most 10,000. */
    sl_store_req_t *t = s_retry_take(st, "flood", N, 100000);
    assert_int_equal(t->n_recs, N);
    for (unsigned n = 0; n < N; n += 997)
        assert_int_equal(s_id_n(t->recs[n].id), n);
    sl_store_req_destroy(&t);
}

/* Destroy completes every request exactly once: answered, or refused
 * with SL_ECLOSED. */
typedef struct {
    pthread_mutex_t mu;
    unsigned done, ok, closed, other;
} s_tally_t;

static void s_on_tally(sl_store_req_t *req, void *arg)
{
    s_tally_t *t = arg;
    pthread_mutex_lock(&t->mu);
    t->done++;
    if (req->rc == SL_OK)
        t->ok++;
    else if (req->rc == SL_ECLOSED)
        t->closed++;
    else
        t->other++;
    pthread_mutex_unlock(&t->mu);
    sl_store_req_destroy(&req);
}

static void test_store__destroy_completes_all(void **state)
{
    sl_store_t *st = *state;
    s_tally_t t = {.done = 0};
    pthread_mutex_init(&t.mu, NULL);
    for (unsigned n = 0; n < 2000; n++) {
        sl_store_req_t *req = sl_store_req_new(SL_STORE_RETRY_PUT, "q", s_on_tally, &t);
        assert_non_null(req);
        s_rec(&req->rec, n, n, 1);
        SL_ASSERT_OK(sl_store_submit(st, &req));
    }
    sl_store_destroy(&st);
    *state = NULL;
    assert_int_equal(t.done, 2000);
    assert_int_equal(t.ok + t.closed, 2000);
    assert_int_equal(t.other, 0);
    pthread_mutex_destroy(&t.mu);
}

/* --- Redis only ------------------------------------------------------------ */

static int s_setup_none(void **state)
{
    *state = NULL;
    return 0;
}

static bool s_connected(sl_store_t *st)
{
    sl_store_status_t s;
    sl_store_status(st, &s);
    return s.connected;
}

static int s_connected_cond(void *st)
{
    return s_connected(st);
}

static int s_not_connected_cond(void *st)
{
    return !s_connected(st);
}

/* The keys are the documented ones (docs/redis.md), all of a queue in one
 * cluster slot, and a cluster-enabled server refuses a script that spans
 * two slots (so passing here means ours never do). */
static void test_store__key_schema(void **state)
{
    sl_store_t *st = *state;
    s_retry_put(st, "jobs:x", 1, 1234);
    s_dead_put(st, "jobs:x", 2, 99, 100, 10, 0);
    const char *keys[] = {"sl:{q:jobs:x}:retry", "sl:{q:jobs:x}:retry:jobs", "sl:{q:jobs:x}:dead",
                          "sl:{q:jobs:x}:dead:jobs"};
    const char *types[] = {"zset", "hash", "zset", "hash"};
    for (int i = 0; i < 4; i++) {
        char *r = NULL;
        assert_int_equal(sl_redis_server_cmd(s_env->rs, &r, "TYPE", keys[i], NULL), 0);
        assert_string_equal(r, types[i]);
        free(r);
    }
    char hex[33];
    uint8_t id[16];
    s_id(id, 1);
    sl_id_to_hex(id, hex);
    char *r = NULL;
    assert_int_equal(sl_redis_server_cmd(s_env->rs, &r, "ZSCORE", keys[0], hex, NULL), 0);
    assert_string_equal(r, "1234");
    free(r);
    s_id(id, 2);
    sl_id_to_hex(id, hex);
    assert_int_equal(sl_redis_server_cmd(s_env->rs, &r, "ZSCORE", keys[2], hex, NULL), 0);
    assert_string_equal(r, "99");
    free(r);
    if (s_env->rs->flags & SL_REDIS_CLUSTER) {
        const sl_redis_server_t *rs = s_env->rs;
        char *slot0 = NULL;
        assert_int_equal(sl_redis_server_cmd(rs, &slot0, "CLUSTER", "KEYSLOT", keys[0], NULL), 0);
        for (int i = 1; i < 4; i++) {
            assert_int_equal(sl_redis_server_cmd(rs, &r, "CLUSTER", "KEYSLOT", keys[i], NULL), 0);
            assert_string_equal(r, slot0);
            free(r);
        }
        free(slot0);
        assert_int_equal(sl_redis_server_cmd(s_env->rs, &r, "EVAL", "return 1", "2", "{a}x", "{b}y",
                                             NULL),
                         1);
        assert_non_null(strstr(r, "CROSSSLOT"));
        free(r);
    }
}

/* After SCRIPT FLUSH (or a failover to a server without our scripts) the
 * next request meets NOSCRIPT, loads the script again and succeeds. */
static void test_store__noscript_reload(void **state)
{
    sl_store_t *st = *state;
    s_retry_put(st, "q", 1, 10);
    sl_store_status_t s0, s1;
    sl_store_status(st, &s0);
    char *r = NULL;
    assert_int_equal(sl_redis_server_cmd(s_env->rs, &r, "SCRIPT", "FLUSH", NULL), 0);
    free(r);
    /* Several at once: one SCRIPT LOAD serves those sent before it. */
    s_waiter_t w;
    s_waiter_init(&w);
    sl_store_req_t *reqs[3];
    for (int i = 0; i < 3; i++) {
        reqs[i] = sl_store_req_new(SL_STORE_RETRY_PUT, "q", s_on_done, &w);
        s_rec(&reqs[i]->rec, 2 + (unsigned)i, 10, 1);
        sl_store_req_t *p = reqs[i];
        SL_ASSERT_OK(sl_store_submit(st, &p));
    }
    s_wait_done(&w, 3, sl_test_patience_ms());
    s_waiter_release(&w);
    for (int i = 0; i < 3; i++) {
        SL_ASSERT_OK(reqs[i]->rc);
        sl_store_req_destroy(&reqs[i]);
    }
    sl_store_status(st, &s1);
    assert_int_equal(s1.scripts_loaded, s0.scripts_loaded + 1);
    s_count(st, "q", 4, 0);
}

static int64_t s_prompt_ms(void)
{
    return sl_test_sanitized() ? 1500 : 300;
}

/* SIGKILL mid-run: requests complete SL_EAGAIN promptly while it is down
 * (none hang, none is lost), the store reconnects by itself when it is
 * back on its port, and scripts are there again. */
static void test_store__redis_killed_and_restarted(void **state)
{
    sl_redis_server_t rs;
    assert_int_equal(sl_redis_server_start(&rs, NULL), 0);
    sl_store_opts_t o = {.reconnect_min_ms = 20, .reconnect_max_ms = 200};
    sl_store_t *st = s_store_url(rs.url, &o);
    s_retry_put(st, "q", 1, 10);

    /* Kill it with requests in flight: each completes, OK or not. */
    s_tally_t t = {.done = 0};
    pthread_mutex_init(&t.mu, NULL);
    for (unsigned n = 0; n < 500; n++) {
        sl_store_req_t *req = sl_store_req_new(SL_STORE_RETRY_PUT, "q", s_on_tally, &t);
        s_rec(&req->rec, n, n, 1);
        SL_ASSERT_OK(sl_store_submit(st, &req));
        if (n == 250)
            sl_redis_server_stop(&rs, SIGKILL);
    }
    assert_true(sl_test_wait_for(s_not_connected_cond, st, sl_test_patience_ms()));
    sl_store_status_t s;
    sl_store_status(st, &s);
    assert_true(s.down_since_ms > 0);
    assert_true(s.last_error[0] != '\0');

    /* Down: refused at once, nothing queued. */
    for (int i = 0; i < 20; i++) {
        int64_t t0 = sl_now();
        sl_store_req_t *req = s_call(st, s_req(SL_STORE_COUNT, "q"));
        assert_int_equal(req->rc, SL_EAGAIN);
        assert_true(sl_test_ms_since(t0) < s_prompt_ms());
        sl_store_req_destroy(&req);
    }
    pthread_mutex_lock(&t.mu);
    assert_int_equal(t.done, 500);
    pthread_mutex_unlock(&t.mu);

    assert_int_equal(sl_redis_server_restart(&rs), 0);
    assert_true(sl_test_wait_for(s_connected_cond, st, sl_test_patience_ms()));
    sl_store_status(st, &s);
    assert_int_equal(s.reconnects, 1);
    assert_int_equal(s.down_since_ms, 0);
    s_retry_put(st, "q", 2, 10); /* scripts loaded again on connect */
    s_count(st, "q", 1, 0);      /* no persistence: only the new one */
    char *r = NULL;
    sl_redis_server_cmd(&rs, &r, "SCRIPT", "FLUSH", NULL);
    free(r);
    s_retry_put(st, "q", 3, 10); /* NOSCRIPT after the restart too */
    s_count(st, "q", 2, 0);

    sl_store_destroy(&st);
    pthread_mutex_destroy(&t.mu);
    sl_redis_server_release(&rs);
}

/* Nobody on the port at start: not an error; requests complete SL_EAGAIN
 * at once; when Redis appears there the store connects by itself. */
static void test_store__unreachable_at_start(void **state)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    int port = ntohs(a.sin_port);
    close(fd);
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", port);
    sl_store_opts_t o = {.reconnect_min_ms = 20, .reconnect_max_ms = 100};
    sl_store_t *st = s_store_url(url, &o);
    int64_t t0 = sl_now();
    sl_store_req_t *req = s_call(st, s_req(SL_STORE_COUNT, "q"));
    assert_int_equal(req->rc, SL_EAGAIN);
    assert_true(sl_test_ms_since(t0) < s_prompt_ms());
    sl_store_req_destroy(&req);
    sl_store_status_t s;
    sl_store_status(st, &s);
    assert_false(s.connected);
    assert_true(s.down_since_ms > 0);
    assert_non_null(strstr(s.last_error, "connect"));

    sl_redis_server_t rs;
    sl_redis_opts_t ro = {.port = port};
    assert_int_equal(sl_redis_server_start(&rs, &ro), 0);
    assert_true(sl_test_wait_for(s_connected_cond, st, sl_test_patience_ms()));
    s_retry_put(st, "q", 1, 1);
    s_count(st, "q", 1, 0);
    sl_store_status(st, &s);
    assert_int_equal(s.reconnects, 0); /* the first connection made */
    sl_store_destroy(&st);
    sl_redis_server_release(&rs);
}

/* A peer that accepts the TCP connection but never answers: the first
 * request waits for the attempt, which ends at connect_timeout_ms. */
static void test_store__connect_timeout(void **state)
{
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    assert_int_equal(bind(lfd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(lfd, 16), 0); /* never accepted, never answered */
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&a, &len), 0);
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", ntohs(a.sin_port));
    int64_t timeout = sl_test_sanitized() ? 1000 : 300;
    sl_store_opts_t o = {.connect_timeout_ms = timeout, .reconnect_min_ms = 5000,
                         .reconnect_max_ms = 5000};
    int64_t t0 = sl_now();
    sl_store_t *st = s_store_url(url, &o);
    sl_store_req_t *req = s_call(st, s_req(SL_STORE_COUNT, "q"));
    double ms = sl_test_ms_since(t0);
    assert_int_equal(req->rc, SL_EAGAIN);
    assert_true(ms >= (double)timeout - 20);
    assert_true(ms < (double)timeout + sl_test_slack_ms() * 4);
    sl_store_req_destroy(&req);
    sl_store_status_t s;
    sl_store_status(st, &s);
    assert_non_null(strstr(s.last_error, "connect timeout"));
    sl_store_destroy(&st);
    close(lfd);
}

static int s_returned_cond(void *st)
{
    sl_store_status_t s;
    sl_store_status(st, &s);
    return s.returned >= 20;
}

/* A server frozen past command_timeout: the request completes with
 * SL_ETIMEDOUT; others are refused with SL_EAGAIN at once meanwhile; the
 * jobs the late RETRY_TAKE removed are put back when its answer comes; a
 * server frozen for good is dropped and reconnected to when it thaws. */
static void test_store__command_timeout(void **state)
{
    sl_redis_server_t rs;
    assert_int_equal(sl_redis_server_start(&rs, NULL), 0);
    int64_t timeout = sl_test_sanitized() ? 1500 : 400;
    sl_store_opts_t o = {.command_timeout_ms = timeout, .connect_timeout_ms = timeout,
                         .reconnect_min_ms = 20, .reconnect_max_ms = 100};
    sl_store_t *st = s_store_url(rs.url, &o);
    for (unsigned n = 0; n < 20; n++)
        s_retry_put(st, "q", n, n);

    sl_redis_server_freeze(&rs, true);
    int64_t t0 = sl_now();
    sl_store_req_t *t = s_req(SL_STORE_RETRY_TAKE, "q");
    t->now_ms = 1000;
    t->max = 100;
    s_call(st, t);
    double ms = sl_test_ms_since(t0);
    assert_int_equal(t->rc, SL_ETIMEDOUT);
    assert_int_equal(t->n_recs, 0);
    assert_true(ms >= (double)timeout - 20);
    sl_store_req_destroy(&t);
    t0 = sl_now();
    sl_store_req_t *c = s_call(st, s_req(SL_STORE_COUNT, "q"));
    assert_int_equal(c->rc, SL_EAGAIN);
    assert_true(sl_test_ms_since(t0) < s_prompt_ms());
    sl_store_req_destroy(&c);
    sl_redis_server_freeze(&rs, false);

    /* The late answer carried 20 jobs: put back, none lost. */
    assert_true(sl_test_wait_for(s_returned_cond, st, sl_test_patience_ms()));
    sl_store_req_t *again = s_retry_take(st, "q", 1000, 100);
    assert_int_equal(again->n_recs, 20);
    sl_store_req_destroy(&again);
    sl_store_status_t s;
    sl_store_status(st, &s);
    assert_true(s.connected);
    assert_int_equal(s.timeouts, 1);

    /* Frozen for good: the connection is dropped, then made again. */
    sl_redis_server_freeze(&rs, true);
    c = s_call(st, s_req(SL_STORE_COUNT, "q"));
    assert_int_equal(c->rc, SL_ETIMEDOUT);
    sl_store_req_destroy(&c);
    assert_true(sl_test_wait_for(s_not_connected_cond, st, sl_test_patience_ms()));
    sl_redis_server_freeze(&rs, false);
    assert_true(sl_test_wait_for(s_connected_cond, st, sl_test_patience_ms()));
    s_count(st, "q", 0, 0);
    sl_store_destroy(&st);
    sl_redis_server_release(&rs);
}

/* AUTH from the URL (right and wrong password), SELECT from /db, and a
 * unix socket with ?db=. */
static void test_store__url_auth_db_unix(void **state)
{
    sl_redis_server_t rs;
    sl_redis_opts_t ro = {.flags = SL_REDIS_UNIX, .password = "s3cr@t"};
    assert_int_equal(sl_redis_server_start(&rs, &ro), 0);
    char url[256];
    snprintf(url, sizeof url, "redis://:s3cr%%40t@127.0.0.1:%d/3", rs.port);
    sl_store_t *db3 = s_store_url(url, NULL);
    s_retry_put(db3, "q", 1, 1);
    s_count(db3, "q", 1, 0);
    snprintf(url, sizeof url, "unix://%s?db=3&password=s3cr%%40t", rs.sock);
    sl_store_t *unix3 = s_store_url(url, NULL);
    s_count(unix3, "q", 1, 0); /* the same database, another way in */
    snprintf(url, sizeof url, "unix://%s?password=s3cr%%40t", rs.sock);
    sl_store_t *unix0 = s_store_url(url, NULL);
    s_count(unix0, "q", 0, 0); /* database 0 is another */

    snprintf(url, sizeof url, "redis://:wrong@127.0.0.1:%d", rs.port);
    sl_store_opts_t o = {.reconnect_min_ms = 1000, .reconnect_max_ms = 1000};
    sl_store_t *bad = s_store_url(url, &o);
    sl_store_req_t *req = s_call(bad, s_req(SL_STORE_COUNT, "q"));
    assert_int_equal(req->rc, SL_EAGAIN);
    sl_store_req_destroy(&req);
    sl_store_status_t s;
    sl_store_status(bad, &s);
    assert_false(s.connected);
    assert_non_null(strstr(s.last_error, "AUTH"));
    sl_store_destroy(&bad);
    sl_store_destroy(&db3);
    sl_store_destroy(&unix3);
    sl_store_destroy(&unix0);
    sl_redis_server_release(&rs);
}

static int s_reconnected_cond(void *st)
{
    sl_store_status_t s;
    sl_store_status(st, &s);
    return s.connected && s.reconnects >= 1;
}

/* A primary turned replica (a failover seen from the old primary): writes
 * are refused with READONLY, which the store reports as SL_EAGAIN (nothing
 * was done) and answers by connecting again, as a DNS name or a proxy in
 * front would now lead to the new primary; once the server is a primary
 * again, requests succeed. */
static void test_store__readonly_replica_reconnects(void **state)
{
    sl_redis_server_t primary, rs;
    assert_int_equal(sl_redis_server_start(&primary, NULL), 0);
    assert_int_equal(sl_redis_server_start(&rs, NULL), 0);
    sl_store_opts_t o = {.reconnect_min_ms = 20, .reconnect_max_ms = 100};
    sl_store_t *st = s_store_url(rs.url, &o);
    s_retry_put(st, "q", 1, 1);
    char port[16], *r = NULL;
    snprintf(port, sizeof port, "%d", primary.port);
    assert_int_equal(sl_redis_server_cmd(&rs, &r, "REPLICAOF", "127.0.0.1", port, NULL), 0);
    free(r);
    sl_store_req_t *req = s_req(SL_STORE_RETRY_PUT, "q");
    s_rec(&req->rec, 2, 2, 2);
    s_call(st, req);
    assert_int_equal(req->rc, SL_EAGAIN);
    sl_store_req_destroy(&req);
    sl_store_status_t s;
    sl_store_status(st, &s);
    assert_non_null(strstr(s.last_error, "READONLY"));
    assert_true(sl_test_wait_for(s_reconnected_cond, st, sl_test_patience_ms()));
    assert_int_equal(sl_redis_server_cmd(&rs, &r, "REPLICAOF", "NO", "ONE", NULL), 0);
    free(r);
    /* Connected again meanwhile, perhaps to the replica still: retry. */
    int rc = SL_EAGAIN;
    int64_t end = sl_now() + sl_test_patience_ms() * 1000000;
    while (rc != SL_OK && sl_now() < end) {
        req = s_req(SL_STORE_RETRY_PUT, "q");
        s_rec(&req->rec, 3, 3, 3);
        s_call(st, req);
        rc = req->rc;
        sl_store_req_destroy(&req);
        if (rc != SL_OK) {
            assert_int_equal(rc, SL_EAGAIN);
            struct timespec ts = {0, 20 * 1000000};
            nanosleep(&ts, NULL);
        }
    }
    SL_ASSERT_OK(rc);
    sl_store_destroy(&st);
    sl_redis_server_release(&rs);
    sl_redis_server_release(&primary);
}

/* With appendfsync always, what was confirmed survives a SIGKILL. */
static void test_store__aof_survives_kill(void **state)
{
    sl_redis_server_t rs;
    sl_redis_opts_t ro = {.flags = SL_REDIS_AOF_ALWAYS};
    assert_int_equal(sl_redis_server_start(&rs, &ro), 0);
    sl_store_t *st = s_store_url(rs.url, NULL);
    for (unsigned n = 0; n < 10; n++)
        s_retry_put(st, "q", n, n);
    for (unsigned n = 0; n < 5; n++)
        s_dead_put(st, "q", 100 + n, 10, 10, 100, 0);
    sl_store_destroy(&st);
    assert_int_equal(sl_redis_server_restart(&rs), 0);
    st = s_store_url(rs.url, NULL);
    s_count(st, "q", 10, 5);
    sl_store_req_t *t = s_retry_take(st, "q", 100, 100);
    assert_int_equal(t->n_recs, 10);
    s_rec_check(&t->recs[3], 3, 3, 5003);
    sl_store_req_destroy(&t);
    sl_store_destroy(&st);
    sl_redis_server_release(&rs);
}

/* The memory backend says it is connected and has nothing to report. */
static void test_store__memory_status(void **state)
{
    sl_store_t *st = s_store_url("memory", NULL);
    sl_store_status_t s;
    sl_store_status(st, &s);
    assert_true(s.connected);
    assert_int_equal(s.down_since_ms, 0);
    assert_string_equal(sl_store_kind(st), "memory");
    sl_store_destroy(&st);
}

/* --- main -------------------------------------------------------------------- */

#define EVERY_BACKEND(f) cmocka_unit_test_setup_teardown(f, s_setup, s_teardown)

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest every[] = {
        EVERY_BACKEND(test_store__retry_put_take_order),
        EVERY_BACKEND(test_store__retry_put_replaces),
        EVERY_BACKEND(test_store__dead_list_pages),
        EVERY_BACKEND(test_store__dead_trim_count_and_age),
        EVERY_BACKEND(test_store__dead_take),
        EVERY_BACKEND(test_store__queues_apart),
        EVERY_BACKEND(test_store__refuses_invalid),
        EVERY_BACKEND(test_store__completions_in_order),
        EVERY_BACKEND(test_store__concurrent_take_never_twice),
        EVERY_BACKEND(test_store__pipelined_10000),
        EVERY_BACKEND(test_store__destroy_completes_all),
    };
    const struct CMUnitTest redis_every[] = {
        EVERY_BACKEND(test_store__key_schema),
        EVERY_BACKEND(test_store__noscript_reload),
    };
    const struct CMUnitTest redis_once[] = {
        cmocka_unit_test_setup(test_store__memory_status, s_setup_none),
        cmocka_unit_test_setup(test_store__redis_killed_and_restarted, s_setup_none),
        cmocka_unit_test_setup(test_store__unreachable_at_start, s_setup_none),
        cmocka_unit_test_setup(test_store__connect_timeout, s_setup_none),
        cmocka_unit_test_setup(test_store__command_timeout, s_setup_none),
        cmocka_unit_test_setup(test_store__url_auth_db_unix, s_setup_none),
        cmocka_unit_test_setup(test_store__readonly_replica_reconnects, s_setup_none),
        cmocka_unit_test_setup(test_store__aof_survives_kill, s_setup_none),
    };

    sl_redis_server_t standalone, cluster;
    sl_redis_opts_t co = {.flags = SL_REDIS_CLUSTER};
    if (sl_redis_server_start(&standalone, NULL) != 0 ||
        sl_redis_server_start(&cluster, &co) != 0) {
        fprintf(stderr, "store_test: needs redis-server (scripts/deps installs it)\n");
        return 1;
    }
    const s_env_t envs[] = {{"memory", NULL}, {"redis", &standalone}, {"cluster", &cluster}};
    int failed = 0;
    char name[64];
    for (size_t i = 0; i < 3; i++) {
        s_env = &envs[i];
        snprintf(name, sizeof name, "store[%s]", envs[i].name);
        failed += _cmocka_run_group_tests(name, every, sizeof every / sizeof *every, NULL, NULL);
        if (envs[i].rs)
            failed += _cmocka_run_group_tests(name, redis_every,
                                              sizeof redis_every / sizeof *redis_every, NULL, NULL);
    }
    s_env = &envs[1];
    failed += cmocka_run_group_tests_name("store[redis, own servers]", redis_once, NULL, NULL);
    sl_redis_server_release(&standalone);
    sl_redis_server_release(&cluster);
    return failed;
}
