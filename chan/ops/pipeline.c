/* pipeline.c -- sl_pipeline, sl_pipeline_blocking, sl_pipeline_async:
 * transform a channel with n workers in parallel, keeping input order.
 *
 * The design is core.async's. Three kinds of coroutine share one state:
 *
 *   from --> [input] --job{v, res}--> jobs --> [worker] x n --> res
 *                \                                              |
 *                 `--res--> results --> [output] <-- drains ---'  --> to
 *
 * For each value the input loop makes a result channel `res` and sends it
 * both to the workers (inside a job) and, in input order, to the output
 * loop. Workers finish jobs in any order; the output loop drains the
 * result channels one by one in the order they were queued, so `to` sees
 * results in input order. jobs and results hold n entries each, which
 * bounds the work in flight. */
#include <stdatomic.h>
#include <stdlib.h>

#include "sluice/ops.h"
#include "sluice/sched.h"
#include "util.h"

typedef enum { S_COMPUTE, S_BLOCKING, S_ASYNC } s_kind_t;

typedef struct {
    atomic_int refs;          /* setup + every coroutine still running     */
    s_kind_t kind;
    sl_pipeline_fn_t fn;      /* copied                                    */
    bool close_to;
    atomic_bool aborted;      /* setup failed: output must not close `to`  */
    sl_chan_t *from;          /* owned references, all five                */
    sl_chan_t *to;
    sl_chan_t *jobs;          /* s_job_t *, fixed(n)                       */
    sl_chan_t *results;       /* sl_chan_t * (a job's res), fixed(n)       */
    sl_chan_t *done;          /* closed when the output loop ends          */
} s_pipeline_t;

typedef struct {
    s_pipeline_t *p;          /* borrowed: the worker holds a reference    */
    void *in;
    sl_chan_t *res;           /* owned reference; the worker closes res    */
    void *out;                /* S_BLOCKING: the result, back from the pool */
    int emit;
} s_job_t;

static void s_pipeline_release(s_pipeline_t *p)
{
    if (atomic_fetch_sub_explicit(&p->refs, 1, memory_order_acq_rel) != 1)
        return;
    sl_chan_destroy(&p->from);
    sl_chan_destroy(&p->to);
    sl_chan_destroy(&p->jobs);
    sl_chan_destroy(&p->results);
    sl_chan_destroy(&p->done);
    free(p);
}

/* Run xf on the job's input, routing an error through on_error. Sets
 * job->emit (0/1) and job->out. */
static void s_job_transform(s_job_t *job)
{
    const sl_pipeline_fn_t *fn = &job->p->fn;
    void *out = NULL;
    int rc = fn->xf(job->in, &out, fn->arg);
    if (rc < 0) {
        out = NULL;
        rc = fn->on_error ? fn->on_error(job->in, rc, &out, fn->error_arg) : 0;
    }
    job->emit = rc > 0;
    job->out = out;
}

static void *s_blocking_call(void *arg)
{
    s_job_transform(arg);
    return NULL;
}

/* Deliver a finished job's result (if any) and let the output loop move
 * on. res has room for one value, so the put never waits; if the output
 * loop closed res because `to` is gone, the value is simply lost. */
static void s_job_finish(s_job_t *job)
{
    if (job->emit)
        (void)sl__ops_put(job->res, job->out);
    sl_chan_close(job->res);
    sl_chan_destroy(&job->res);
    free(job);
}

static void *s_worker_run(void *arg)
{
    s_pipeline_t *p = arg;
    void *j;
    while (sl__ops_take(p->jobs, &j) == SL_OK) {
        s_job_t *job = j;
        switch (p->kind) {
        case S_COMPUTE:
            s_job_transform(job);
            s_job_finish(job);
            break;
        case S_BLOCKING: {
            /* The pool thread writes job->out/emit; taking its promise
             * orders those writes before our reads. */
            sl_chan_t *done;
            while ((done = sl_thread(s_blocking_call, job)) == NULL)
                sl__ops_backoff();
            void *ignored;
            (void)sl__ops_take(done, &ignored);
            sl_chan_destroy(&done);
            s_job_finish(job);
            break;
        }
        case S_ASYNC:
            /* af owns completing res (values, then close) from here on;
             * it takes its own reference if it needs res after returning. */
            p->fn.af(job->in, job->res, p->fn.arg);
            sl_chan_destroy(&job->res);
            free(job);
            break;
        }
    }
    s_pipeline_release(p);
    return NULL;
}

static void *s_input_run(void *arg)
{
    s_pipeline_t *p = arg;
    void *v;
    while (sl__ops_take(p->from, &v) == SL_OK) {
        s_job_t *job = sl__ops_alloc_wait(sizeof *job);
        /* fixed(1): a compute or blocking worker emits at most one value
         * and must never wait; async results wait for the output loop. */
        sl_chan_t *res = sl__ops_chan_wait(SL_BUF_FIXED, 1);
        job->p = p;
        job->in = v;
        job->res = sl_chan_ref(res);
        /* Nobody else closes jobs or results while this loop runs. */
        (void)sl__ops_put(p->jobs, job);
        (void)sl__ops_put(p->results, res); /* results now owns our ref */
    }
    sl_chan_close(p->jobs);
    sl_chan_close(p->results); /* queued entries stay takeable */
    s_pipeline_release(p);
    return NULL;
}

static void *s_output_run(void *arg)
{
    s_pipeline_t *p = arg;
    bool to_open = true;
    void *r;
    while (sl__ops_take(p->results, &r) == SL_OK) {
        sl_chan_t *res = r;
        /* With `to` gone, close res first so a producer (an async af with
         * several values) fails fast instead of waiting on us forever. */
        if (!to_open)
            sl_chan_close(res);
        void *v;
        while (sl__ops_take(res, &v) == SL_OK) {
            if (to_open && sl__ops_put(p->to, v) != SL_OK) {
                to_open = false; /* v is lost, as in core.async */
                sl_chan_close(res);
            }
        }
        sl_chan_destroy(&res);
    }
    if (p->close_to && !atomic_load(&p->aborted))
        sl_chan_close(p->to);
    sl_chan_close(p->done);
    s_pipeline_release(p);
    return NULL;
}

/* Spawn fn with a new reference to p. */
static int s_spawn(s_pipeline_t *p, sl_go_fn fn, int flags)
{
    atomic_fetch_add_explicit(&p->refs, 1, memory_order_relaxed);
    int rc = sl__ops_go(fn, p, flags);
    if (rc != SL_OK)
        atomic_fetch_sub_explicit(&p->refs, 1, memory_order_relaxed);
    return rc;
}

static sl_chan_t *s_pipeline_start(s_kind_t kind, int n, sl_chan_t *to,
                                   const sl_pipeline_fn_t *fn, sl_chan_t *from,
                                   bool close_to)
{
    if (n < 1 || !to || !from || !fn)
        return NULL;
    if (kind == S_ASYNC ? !fn->af : !fn->xf)
        return NULL;
    s_pipeline_t *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    atomic_init(&p->refs, 1); /* this function's, dropped at the end */
    atomic_init(&p->aborted, false);
    p->kind = kind;
    p->fn = *fn;
    p->close_to = close_to;
    p->jobs = sl_chan_new(SL_BUF_FIXED, (size_t)n);
    p->results = sl_chan_new(SL_BUF_FIXED, (size_t)n);
    p->done = sl_chan_new(SL_BUF_NONE, 0);
    if (!p->jobs || !p->results || !p->done) {
        s_pipeline_release(p);
        return NULL;
    }
    p->from = sl_chan_ref(from);
    p->to = sl_chan_ref(to);
    sl_chan_t *done = sl_chan_ref(p->done);

    /* Output first, input last: until the input loop runs, nothing has
     * been taken from `from`, so a failure below loses no value. */
    if (s_spawn(p, s_output_run, 0) != SL_OK)
        goto fail;
    for (int i = 0; i < n; i++)
        /* Spread workers over the scheduler's threads: that is where
         * compute pipelines get their parallelism. */
        if (s_spawn(p, s_worker_run, SL_GO_SPREAD) != SL_OK)
            goto fail;
    if (s_spawn(p, s_input_run, 0) != SL_OK)
        goto fail;
    s_pipeline_release(p);
    return done;
fail:
    /* Stop what started: workers see jobs closed, the output loop sees
     * results closed and ends without closing `to`. */
    atomic_store(&p->aborted, true);
    sl_chan_close(p->jobs);
    sl_chan_close(p->results);
    s_pipeline_release(p);
    sl_chan_destroy(&done);
    return NULL;
}

sl_chan_t *sl_pipeline(int n, sl_chan_t *to, const sl_pipeline_fn_t *fn,
                       sl_chan_t *from, bool close_to)
{
    return s_pipeline_start(S_COMPUTE, n, to, fn, from, close_to);
}

sl_chan_t *sl_pipeline_blocking(int n, sl_chan_t *to, const sl_pipeline_fn_t *fn,
                                sl_chan_t *from, bool close_to)
{
    return s_pipeline_start(S_BLOCKING, n, to, fn, from, close_to);
}

sl_chan_t *sl_pipeline_async(int n, sl_chan_t *to, const sl_pipeline_fn_t *fn,
                             sl_chan_t *from, bool close_to)
{
    return s_pipeline_start(S_ASYNC, n, to, fn, from, close_to);
}
