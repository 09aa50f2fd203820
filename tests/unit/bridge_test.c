/* bridge_test.c -- sl_chan_fd: the eventfd levels for every buffer kind,
 * before and after close, and poll(2)/epoll loops that wait on channels
 * and ordinary file descriptors together. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "testlib.h"

/* 1 if fd polls readable within ms (0: right now). */
static int s_ready(int fd, int ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int n;
    do
        n = poll(&p, 1, ms);
    while (n < 0 && errno == EINTR);
    assert_true(n >= 0);
    return n == 1 && (p.revents & POLLIN);
}

typedef struct {
    int r, w;
} fds_t;

static fds_t s_fds(sl_chan_t *c)
{
    fds_t f = {sl_chan_fd(c, SL_CHAN_READABLE), sl_chan_fd(c, SL_CHAN_WRITABLE)};
    assert_true(f.r >= 0);
    assert_true(f.w >= 0);
    assert_int_not_equal(f.r, f.w);
    return f;
}

/* Assert the levels right now: readable rd, writable wr. */
#define LEVELS(f, rd, wr)                                                    \
    do {                                                                     \
        int r__ = s_ready((f).r, 0), w__ = s_ready((f).w, 0);                \
        if (r__ != (rd) || w__ != (wr))                                      \
            fail_msg("line %d: levels readable=%d writable=%d, expected "    \
                     "%d/%d",                                                \
                     __LINE__, r__, w__, (rd), (wr));                        \
    } while (0)

typedef struct {
    sl_chan_t *c;
    void *val;
    int rc;
} op_t;

static void *s_put_op(void *arg)
{
    op_t *o = arg;
    o->rc = sl_put_until(o->c, o->val, sl_deadline_ms(sl_test_patience_ms()));
    return NULL;
}

static void *s_take_op(void *arg)
{
    op_t *o = arg;
    o->rc = sl_take_until(o->c, &o->val, sl_deadline_ms(sl_test_patience_ms()));
    return NULL;
}

typedef struct {
    sl_chan_t *c;
    size_t puts, takes;
} pending_t;

static int s_pending_reached(void *arg)
{
    pending_t *p = arg;
    sl_chan_stats_t st;
    sl_chan_stats(p->c, &st);
    return st.pending_puts == p->puts && st.pending_takes == p->takes;
}

static void s_wait_pending(sl_chan_t *c, size_t puts, size_t takes)
{
    pending_t p = {c, puts, takes};
    assert_true(sl_test_wait_for(s_pending_reached, &p, sl_test_patience_ms()));
}

/* ------------------------------------------------------------------------ */

static void test_bridge__fd_arguments_and_ownership(void **state)
{
    (void)state;
    sl_chan_t *c = sl_chan_new(SL_BUF_FIXED, 2);
    SL_ASSERT_ERR(sl_chan_fd(NULL, SL_CHAN_READABLE), SL_EINVAL);
    SL_ASSERT_ERR(sl_chan_fd(c, 0), SL_EINVAL);
    SL_ASSERT_ERR(sl_chan_fd(c, 3), SL_EINVAL);
    int r = sl_chan_fd(c, SL_CHAN_READABLE);
    assert_true(r >= 0);
    assert_int_equal(sl_chan_fd(c, SL_CHAN_READABLE), r); /* one per state */
    int w = sl_chan_fd(c, SL_CHAN_WRITABLE);
    assert_true(w >= 0);
    assert_int_equal(sl_chan_fd(c, SL_CHAN_WRITABLE), w);
    assert_true(fcntl(r, F_GETFD) & FD_CLOEXEC);
    /* Another reference keeps the fds; the last one closes them. */
    sl_chan_t *d = sl_chan_ref(c);
    sl_chan_destroy(&c);
    assert_true(fcntl(r, F_GETFD) >= 0);
    sl_chan_destroy(&d);
    assert_int_equal(fcntl(r, F_GETFD), -1);
    assert_int_equal(fcntl(w, F_GETFD), -1);
}

static void test_bridge__fixed_levels(void **state)
{
    (void)state;
    sl_chan_t *c = sl_chan_new(SL_BUF_FIXED, 2);
    fds_t f = s_fds(c);
    void *v;
    LEVELS(f, 0, 1); /* empty */
    SL_ASSERT_OK(sl_offer(c, V(1)));
    LEVELS(f, 1, 1);
    SL_ASSERT_OK(sl_offer(c, V(2)));
    LEVELS(f, 1, 0); /* full */
    SL_ASSERT_OK(sl_poll(c, &v));
    LEVELS(f, 1, 1);
    SL_ASSERT_OK(sl_poll(c, &v));
    LEVELS(f, 0, 1);
    /* A take waiting on the empty buffer: a put would not wait. */
    op_t t = {.c = c};
    pthread_t th = sl_test_thread(s_take_op, &t);
    s_wait_pending(c, 0, 1);
    LEVELS(f, 0, 1);
    SL_ASSERT_OK(sl_offer(c, V(3)));
    sl_test_join(th);
    assert_int_equal(I(t.val), 3);
    LEVELS(f, 0, 1);
    /* A put waiting on the full buffer: still not writable, readable. */
    SL_ASSERT_OK(sl_offer(c, V(4)));
    SL_ASSERT_OK(sl_offer(c, V(5)));
    op_t p = {.c = c, .val = V(6)};
    th = sl_test_thread(s_put_op, &p);
    s_wait_pending(c, 1, 0);
    LEVELS(f, 1, 0);
    SL_ASSERT_OK(sl_poll(c, &v)); /* 4 out, the waiting 6 moves in */
    sl_test_join(th);
    SL_ASSERT_OK(p.rc);
    LEVELS(f, 1, 0);
    /* Closed with values: readable (values), writable (a put fails at once). */
    sl_chan_close(c);
    LEVELS(f, 1, 1);
    SL_ASSERT_OK(sl_poll(c, &v));
    SL_ASSERT_OK(sl_poll(c, &v));
    assert_int_equal(I(v), 6);
    LEVELS(f, 1, 1); /* closed and drained: a take returns at once */
    sl_chan_destroy(&c);
}

static void test_bridge__fd_made_after_values(void **state)
{
    (void)state;
    /* The fd must start at the channel's current state. */
    sl_chan_t *c = sl_chan_new(SL_BUF_FIXED, 4);
    for (int i = 0; i < 4; i++)
        SL_ASSERT_OK(sl_offer(c, V(i)));
    fds_t f = s_fds(c);
    LEVELS(f, 1, 0);
    void *v;
    for (int i = 0; i < 4; i++)
        SL_ASSERT_OK(sl_poll(c, &v));
    LEVELS(f, 0, 1);
    sl_chan_destroy(&c);
    c = sl_chan_new(SL_BUF_SLIDING, 2);
    SL_ASSERT_OK(sl_offer(c, V(1)));
    f = s_fds(c);
    LEVELS(f, 1, 1);
    sl_chan_destroy(&c);
}

static void test_bridge__unbuffered_levels(void **state)
{
    (void)state;
    sl_chan_t *c = sl_chan_new(SL_BUF_NONE, 0);
    fds_t f = s_fds(c);
    LEVELS(f, 0, 0); /* nobody on either side */
    /* A waiting put makes it readable. */
    op_t p = {.c = c, .val = V(7)};
    pthread_t th = sl_test_thread(s_put_op, &p);
    assert_true(s_ready(f.r, (int)sl_test_patience_ms()));
    LEVELS(f, 1, 0);
    void *v;
    SL_ASSERT_OK(sl_poll(c, &v));
    assert_int_equal(I(v), 7);
    sl_test_join(th);
    LEVELS(f, 0, 0);
    /* A waiting take makes it writable. */
    op_t t = {.c = c};
    th = sl_test_thread(s_take_op, &t);
    assert_true(s_ready(f.w, (int)sl_test_patience_ms()));
    LEVELS(f, 0, 1);
    SL_ASSERT_OK(sl_offer(c, V(8)));
    sl_test_join(th);
    assert_int_equal(I(t.val), 8);
    LEVELS(f, 0, 0);
    /* A take that timed out no longer counts. */
    SL_ASSERT_ERR(sl_take_until(c, &v, sl_deadline_ms(10)), SL_ETIMEDOUT);
    LEVELS(f, 0, 0);
    sl_chan_close(c);
    LEVELS(f, 1, 1);
    sl_chan_destroy(&c);
}

static void s_drop_levels(sl_buf_t kind)
{
    sl_chan_t *c = sl_chan_new(kind, 2);
    fds_t f = s_fds(c);
    void *v;
    LEVELS(f, 0, 1);
    for (int i = 0; i < 5; i++) {
        SL_ASSERT_OK(sl_offer(c, V(i)));
        LEVELS(f, 1, 1); /* never refuses a put */
    }
    SL_ASSERT_OK(sl_poll(c, &v));
    LEVELS(f, 1, 1);
    SL_ASSERT_OK(sl_poll(c, &v));
    LEVELS(f, 0, 1);
    SL_ASSERT_OK(sl_offer(c, V(9)));
    sl_chan_close(c);
    LEVELS(f, 1, 1);
    SL_ASSERT_OK(sl_poll(c, &v));
    LEVELS(f, 1, 1);
    SL_ASSERT_ERR(sl_poll(c, &v), SL_ECLOSED);
    sl_chan_destroy(&c);
}

static void test_bridge__dropping_levels(void **state)
{
    (void)state;
    s_drop_levels(SL_BUF_DROPPING);
}

static void test_bridge__sliding_levels(void **state)
{
    (void)state;
    s_drop_levels(SL_BUF_SLIDING);
}

static void test_bridge__promise_levels(void **state)
{
    (void)state;
    sl_chan_t *c = sl_chan_new(SL_BUF_PROMISE, 0);
    fds_t f = s_fds(c);
    void *v;
    LEVELS(f, 0, 1);
    SL_ASSERT_OK(sl_offer(c, V(1)));
    for (int i = 0; i < 3; i++) {
        LEVELS(f, 1, 1); /* readable for good */
        SL_ASSERT_OK(sl_poll(c, &v));
    }
    sl_chan_close(c);
    LEVELS(f, 1, 1);
    SL_ASSERT_OK(sl_poll(c, &v));
    LEVELS(f, 1, 1);
    sl_chan_destroy(&c);
    /* Closed without a value: a take returns SL_ECLOSED at once. */
    c = sl_chan_new(SL_BUF_PROMISE, 0);
    f = s_fds(c);
    LEVELS(f, 0, 1);
    sl_chan_close(c);
    LEVELS(f, 1, 1);
    sl_chan_destroy(&c);
}

static void test_bridge__timeout_channel_becomes_readable(void **state)
{
    (void)state;
    int64_t t0 = sl_now();
    sl_chan_t *c = sl_timeout(30);
    fds_t f = s_fds(c);
    LEVELS(f, 0, 0);
    assert_true(s_ready(f.r, (int)sl_test_patience_ms()));
    assert_true(sl_test_ms_since(t0) >= 30);
    void *v;
    SL_ASSERT_ERR(sl_poll(c, &v), SL_ECLOSED);
    sl_chan_destroy(&c);
}

/* ------------------------------------------------------------------------
 * Poll loops
 * --------------------------------------------------------------------- */

enum { NVALS = 300, NBYTES = 30 };

typedef struct {
    sl_chan_t *c;
    int pipe_w;
} prod_t;

/* Puts NVALS values (some in bursts, some with pauses) and writes a byte
 * to the pipe every tenth value; then closes both. */
static void *s_producer(void *arg)
{
    prod_t *p = arg;
    for (int i = 0; i < NVALS; i++) {
        if (sl_put_until(p->c, V(i), sl_deadline_ms(sl_test_patience_ms())) != SL_OK)
            return V(-1);
        if (i % 10 == 0 && write(p->pipe_w, "x", 1) != 1)
            return V(-2);
        if (i % 37 == 0)
            sl_sleep_ms(1);
    }
    sl_chan_close(p->c);
    close(p->pipe_w);
    return V(0);
}

static void test_bridge__poll_loop_with_pipe(void **state)
{
    (void)state;
    const sl_buf_t kinds[] = {SL_BUF_FIXED, SL_BUF_NONE};
    for (int k = 0; k < 2; k++) {
        sl_chan_t *c = sl_chan_new(kinds[k], kinds[k] == SL_BUF_FIXED ? 4 : 0);
        int pfd[2];
        assert_int_equal(pipe(pfd), 0);
        prod_t p = {c, pfd[1]};
        int cfd = sl_chan_fd(c, SL_CHAN_READABLE);
        assert_true(cfd >= 0);
        pthread_t th = sl_test_thread(s_producer, &p);
        int next = 0, bytes = 0, wakeups = 0;
        bool chan_done = false, pipe_done = false;
        int64_t end = sl_deadline_ms(sl_test_patience_ms());
        while ((!chan_done || !pipe_done) && sl_now() < end) {
            struct pollfd fds[2] = {{.fd = chan_done ? -1 : cfd, .events = POLLIN},
                                    {.fd = pipe_done ? -1 : pfd[0], .events = POLLIN}};
            int n = poll(fds, 2, 1000);
            if (n < 0 && errno == EINTR)
                continue;
            assert_true(n >= 0);
            wakeups++;
            if (fds[0].revents & POLLIN) {
                void *v;
                int rc;
                /* readiness is a hint: drain until the channel says EAGAIN */
                while ((rc = sl_poll(c, &v)) == SL_OK) {
                    assert_int_equal(I(v), next);
                    next++;
                }
                if (rc == SL_ECLOSED)
                    chan_done = true;
                else
                    assert_int_equal(rc, SL_EAGAIN);
            }
            if (fds[1].revents & (POLLIN | POLLHUP)) {
                char buf[64];
                ssize_t r = read(pfd[0], buf, sizeof buf);
                assert_true(r >= 0);
                if (r == 0)
                    pipe_done = true;
                bytes += (int)r;
            }
        }
        assert_int_equal(I(sl_test_join(th)), 0);
        assert_true(chan_done);
        assert_true(pipe_done);
        assert_int_equal(next, NVALS);
        assert_int_equal(bytes, NBYTES);
        close(pfd[0]);
        sl_chan_destroy(&c);
    }
}

typedef struct {
    sl_chan_t *c;
    int n;
    int bad;
} slow_t;

/* Takes n values in order, slowly at first so the buffer fills. */
static void *s_slow_consumer(void *arg)
{
    slow_t *s = arg;
    for (int i = 0; i < s->n; i++) {
        void *v;
        if (i < 20)
            sl_sleep_ms(1);
        if (sl_take_until(s->c, &v, sl_deadline_ms(sl_test_patience_ms())) != SL_OK || I(v) != i)
            s->bad++;
    }
    return NULL;
}

/* One epoll loop: takes from `in` (fed by a thread), offers into `out`
 * (drained by a slow thread) whenever out's writable fd says so, and reads
 * a pipe -- all level-triggered. */
static void test_bridge__epoll_loop_channels_and_pipe(void **state)
{
    (void)state;
    sl_chan_t *in = sl_chan_new(SL_BUF_NONE, 0);
    sl_chan_t *out = sl_chan_new(SL_BUF_FIXED, 3);
    int pfd[2];
    assert_int_equal(pipe(pfd), 0);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    assert_true(ep >= 0);
    int in_r = sl_chan_fd(in, SL_CHAN_READABLE), out_w = sl_chan_fd(out, SL_CHAN_WRITABLE);
    assert_true(in_r >= 0 && out_w >= 0);
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = 0};
    assert_int_equal(epoll_ctl(ep, EPOLL_CTL_ADD, in_r, &ev), 0);
    ev = (struct epoll_event){.events = 0, .data.u32 = 1}; /* armed when there is work */
    assert_int_equal(epoll_ctl(ep, EPOLL_CTL_ADD, out_w, &ev), 0);
    bool out_armed = false;
    ev = (struct epoll_event){.events = EPOLLIN, .data.u32 = 2};
    assert_int_equal(epoll_ctl(ep, EPOLL_CTL_ADD, pfd[0], &ev), 0);

    prod_t p = {in, pfd[1]};
    slow_t s = {out, NVALS, 0};
    pthread_t tp = sl_test_thread(s_producer, &p), ts = sl_test_thread(s_slow_consumer, &s);
    int got = 0, sent = 0, bytes = 0, out_full = 0;
    bool in_done = false, pipe_done = false, out_done = false;
    int64_t end = sl_deadline_ms(sl_test_patience_ms());
    while ((!in_done || !pipe_done || !out_done) && sl_now() < end) {
        struct epoll_event evs[3];
        int n = epoll_wait(ep, evs, 3, 1000);
        if (n < 0 && errno == EINTR)
            continue;
        assert_true(n >= 0);
        for (int i = 0; i < n; i++) {
            void *v;
            int rc;
            switch (evs[i].data.u32) {
            case 0:
                while ((rc = sl_poll(in, &v)) == SL_OK) {
                    assert_int_equal(I(v), got);
                    got++;
                }
                if (rc == SL_ECLOSED) {
                    in_done = true;
                    assert_int_equal(epoll_ctl(ep, EPOLL_CTL_DEL, in_r, NULL), 0);
                }
                break;
            case 1:
                while (sent < got && (rc = sl_offer(out, V(sent))) == SL_OK)
                    sent++;
                if (sent < got)
                    out_full++; /* the fd said writable, a racing peer won: fine */
                if (sent == NVALS)
                    out_done = true;
                break;
            case 2: {
                char buf[64];
                ssize_t r = read(pfd[0], buf, sizeof buf);
                assert_true(r >= 0);
                if (r == 0) {
                    pipe_done = true;
                    assert_int_equal(epoll_ctl(ep, EPOLL_CTL_DEL, pfd[0], NULL), 0);
                }
                bytes += (int)r;
                break;
            }
            }
        }
        /* Wait for out's writable level only while there is something to
         * send; a level that is always on would make the loop spin. */
        if ((sent < got) != out_armed) {
            out_armed = sent < got;
            struct epoll_event mod = {.events = out_armed ? EPOLLIN : 0, .data.u32 = 1};
            assert_int_equal(epoll_ctl(ep, EPOLL_CTL_MOD, out_w, &mod), 0);
        }
    }
    assert_int_equal(I(sl_test_join(tp)), 0);
    sl_test_join(ts);
    assert_true(in_done && pipe_done && out_done);
    assert_int_equal(got, NVALS);
    assert_int_equal(sent, NVALS);
    assert_int_equal(bytes, NBYTES);
    assert_int_equal(s.bad, 0);
    close(ep);
    close(pfd[0]);
    sl_chan_destroy(&in);
    sl_chan_destroy(&out);
}

/* A poll with no timeout wakes when another thread makes the state true. */
static void *s_late_offer(void *arg)
{
    sl_sleep_ms(30);
    return V(sl_offer(arg, V(1)));
}

static void test_bridge__blocking_poll_wakes_on_put(void **state)
{
    (void)state;
    const sl_buf_t kinds[] = {SL_BUF_FIXED, SL_BUF_DROPPING, SL_BUF_SLIDING, SL_BUF_PROMISE};
    for (int k = 0; k < 4; k++) {
        sl_chan_t *c = sl_chan_new(kinds[k], kinds[k] == SL_BUF_PROMISE ? 0 : 2);
        int r = sl_chan_fd(c, SL_CHAN_READABLE);
        assert_true(r >= 0);
        int64_t t0 = sl_now();
        pthread_t th = sl_test_thread(s_late_offer, c);
        assert_true(s_ready(r, (int)sl_test_patience_ms()));
        double ms = sl_test_ms_since(t0);
        assert_int_equal(I(sl_test_join(th)), SL_OK);
        assert_true(ms >= 29);
        void *v;
        SL_ASSERT_OK(sl_poll(c, &v));
        sl_chan_destroy(&c);
    }
}

static int s_setup(void **state)
{
    (void)state;
    int rc = sl_sched_start(NULL);
    return rc == SL_OK || rc == SL_ESTATE ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bridge__fd_arguments_and_ownership),
        cmocka_unit_test(test_bridge__fixed_levels),
        cmocka_unit_test(test_bridge__fd_made_after_values),
        cmocka_unit_test(test_bridge__unbuffered_levels),
        cmocka_unit_test(test_bridge__dropping_levels),
        cmocka_unit_test(test_bridge__sliding_levels),
        cmocka_unit_test(test_bridge__promise_levels),
        cmocka_unit_test(test_bridge__timeout_channel_becomes_readable),
        cmocka_unit_test(test_bridge__poll_loop_with_pipe),
        cmocka_unit_test(test_bridge__epoll_loop_channels_and_pipe),
        cmocka_unit_test(test_bridge__blocking_poll_wakes_on_put),
    };
    return cmocka_run_group_tests(tests, s_setup, NULL);
}
