/* payment_pipeline.c -- the seed "payment system", in one process.
 *
 *   source --incoming--> validate --validated--> process x5 --processed-->
 *   notify --notified--> collector        (sl_pipeline, parallelism 5)
 *
 * validate and process send rejected payments to an errors channel; the
 * collector waits on notified and errors with sl_alts, and stops when no
 * result has arrived for IDLE_MS (a fresh sl_timeout per wait). Which
 * payments are invalid or declined is fixed by their id, so the summary
 * numbers are the same on every run. */
#include <inttypes.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "sluice/chan.h"
#include "sluice/ops.h"
#include "sluice/sched.h"

#define TOTAL        60    /* payments entering the system                 */
#define PROCESSORS   5     /* parallel processors in the pipeline          */
#define LIMIT_CENTS  9000  /* the processor declines larger payments       */
#define IDLE_MS      750   /* collector gives up after this long idle      */

/* A payment's life; each stage moves it one step:
 *   NEW --s_validate--> VALID --s_process--> SETTLED --s_notify--> NOTIFIED
 *     \--s_validate--> INVALID     \--s_process--> DECLINED              */
typedef enum {
    PAY_NEW,
    PAY_VALID,
    PAY_INVALID,
    PAY_DECLINED,
    PAY_SETTLED,
    PAY_NOTIFIED
} pay_state_t;

typedef struct {
    int id;
    int64_t amount_cents;
    const char *account;   /* NULL: missing                                */
    pay_state_t state;
    const char *reason;    /* why it was rejected; no spaces (key=value)   */
} payment_t;

/* Shared by the stages. Counters are atomic: the processors run in
 * parallel on several workers. Channels are borrowed from main, which
 * keeps its references until every coroutine has returned. */
typedef struct {
    sl_chan_t *incoming, *validated, *processed, *notified, *errors;
    atomic_int validated_n, invalid_n, processed_n, failed_n, notified_n;
    atomic_int inflight, max_inflight, lost;
} app_t;

/* --- the rules ------------------------------------------------------------ */

static void s_make_payment(payment_t *p, int id)
{
    static const char *accounts[] = {"acct-ada", "acct-bob", "acct-cyd", "acct-dee"};
    p->id = id;
    p->amount_cents = 100 + (id * 3571) % 12000; /* spread over 1..121 EUR */
    p->account = accounts[id % 4];
    if (id % 10 == 0)
        p->amount_cents = 0;  /* a zero-amount payment: invalid */
    if (id % 13 == 0)
        p->account = NULL;    /* no account: invalid            */
    p->state = PAY_NEW;
    p->reason = "";
}

/* Returns NULL if valid, else the reason. */
static const char *s_invalid_reason(const payment_t *p)
{
    if (p->amount_cents <= 0)
        return "amount_not_positive";
    if (!p->account)
        return "missing_account";
    return NULL;
}

static int s_declined(const payment_t *p)
{
    return p->amount_cents > LIMIT_CENTS;
}

/* --- the stages ------------------------------------------------------------ */

typedef struct {
    app_t *app;
    payment_t *payments;
} source_arg_t; /* the source owns nothing: main frees payments */

static void *s_source(void *arg)
{
    source_arg_t *sa = arg;
    for (int i = 0; i < TOTAL; i++)
        if (sl_put(sa->app->incoming, &sa->payments[i]) != SL_OK)
            atomic_fetch_add(&sa->app->lost, 1);
    sl_chan_close(sa->app->incoming);
    return NULL;
}

static void *s_validate(void *arg)
{
    app_t *app = arg;
    void *v;
    while (sl_take(app->incoming, &v) == SL_OK) {
        payment_t *p = v;
        const char *why = s_invalid_reason(p);
        if (why) {
            p->state = PAY_INVALID;
            p->reason = why;
            atomic_fetch_add(&app->invalid_n, 1);
            if (sl_put(app->errors, p) != SL_OK)
                atomic_fetch_add(&app->lost, 1);
            continue;
        }
        p->state = PAY_VALID;
        atomic_fetch_add(&app->validated_n, 1);
        if (sl_put(app->validated, p) != SL_OK)
            atomic_fetch_add(&app->lost, 1);
    }
    /* No more input: let the pipeline drain and finish. */
    sl_chan_close(app->validated);
    return NULL;
}

/* The pipeline transform, run by up to PROCESSORS coroutines at once.
 * A declined payment goes to the errors channel and emits nothing. */
static int s_process(void *in, void **out, void *arg)
{
    app_t *app = arg;
    payment_t *p = in;

    int now = atomic_fetch_add(&app->inflight, 1) + 1;
    int max = atomic_load(&app->max_inflight);
    while (now > max && !atomic_compare_exchange_weak(&app->max_inflight, &max, now))
        ;
    sl_sleep_ms(1 + p->id % 4); /* the call to the card network; parks */
    atomic_fetch_sub(&app->inflight, 1);

    if (s_declined(p)) {
        p->state = PAY_DECLINED;
        p->reason = "over_limit";
        atomic_fetch_add(&app->failed_n, 1);
        if (sl_put(app->errors, p) != SL_OK)
            atomic_fetch_add(&app->lost, 1);
        return 0;
    }
    p->state = PAY_SETTLED;
    atomic_fetch_add(&app->processed_n, 1);
    *out = p;
    return 1;
}

static void *s_notify(void *arg)
{
    app_t *app = arg;
    void *v;
    while (sl_take(app->processed, &v) == SL_OK) {
        payment_t *p = v;
        p->state = PAY_NOTIFIED; /* the receipt e-mail, in real life */
        atomic_fetch_add(&app->notified_n, 1);
        if (sl_put(app->notified, p) != SL_OK)
            atomic_fetch_add(&app->lost, 1);
    }
    sl_chan_close(app->notified);
    return NULL;
}

/* --- the collector ----------------------------------------------------------- */

typedef struct {
    int notified, invalid, failed, other;
    int64_t settled_cents;
    const char *end;
} collected_t;

/* Wait on notified and errors until nothing arrives for IDLE_MS. A closed
 * channel is dropped from the set (it would otherwise be "ready" forever). */
static int s_collect(app_t *app, collected_t *c)
{
    int have_notified = 1, have_errors = 1;
    for (;;) {
        sl_chan_t *idle = sl_timeout(IDLE_MS);
        if (!idle)
            return SL_ENOMEM;
        sl_alt_t ops[3];
        size_t n = 0;
        if (have_notified)
            ops[n++] = (sl_alt_t){.chan = app->notified};
        if (have_errors)
            ops[n++] = (sl_alt_t){.chan = app->errors};
        ops[n++] = (sl_alt_t){.chan = idle};

        int i = sl_alts(ops, n, 0, SL_FOREVER);
        sl_chan_destroy(&idle);
        if (i < 0)
            return i;
        sl_alt_t *op = &ops[i];
        if (op->chan != app->notified && op->chan != app->errors) {
            c->end = "idle_timeout"; /* the timeout channel closed */
            return SL_OK;
        }
        if (op->status == SL_ECLOSED) {
            if (op->chan == app->notified)
                have_notified = 0;
            else
                have_errors = 0;
            continue;
        }
        payment_t *p = op->val;
        if (op->chan == app->notified && p->state == PAY_NOTIFIED) {
            c->notified++;
            c->settled_cents += p->amount_cents;
            printf("notified id=%d amount_cents=%" PRId64 "\n", p->id, p->amount_cents);
        } else if (p->state == PAY_INVALID) {
            c->invalid++;
            printf("error id=%d stage=validate reason=%s\n", p->id, p->reason);
        } else if (p->state == PAY_DECLINED) {
            c->failed++;
            printf("error id=%d stage=process reason=%s\n", p->id, p->reason);
        } else {
            c->other++;
        }
    }
}

/* --- main ---------------------------------------------------------------------- */

int main(void)
{
    static app_t app;
    payment_t *payments = calloc(TOTAL, sizeof *payments);
    int exp_invalid = 0, exp_failed = 0;
    int64_t exp_settled_cents = 0;
    if (!payments)
        return 1;
    for (int i = 0; i < TOTAL; i++) {
        s_make_payment(&payments[i], i + 1);
        if (s_invalid_reason(&payments[i]))
            exp_invalid++;
        else if (s_declined(&payments[i]))
            exp_failed++;
        else
            exp_settled_cents += payments[i].amount_cents;
    }

    app.incoming = sl_chan_new(SL_BUF_FIXED, 8);
    app.validated = sl_chan_new(SL_BUF_FIXED, 8);
    app.processed = sl_chan_new(SL_BUF_FIXED, 8);
    app.notified = sl_chan_new(SL_BUF_FIXED, 8);
    /* Room for every payment: rejecting one never has to wait. */
    app.errors = sl_chan_new(SL_BUF_FIXED, TOTAL);
    if (!app.incoming || !app.validated || !app.processed || !app.notified || !app.errors) {
        fprintf(stderr, "payment_pipeline: cannot create channels\n");
        return 1;
    }

    /* Downstream first, so nothing waits on a stage that does not exist. */
    sl_pipeline_fn_t fn = {.xf = s_process, .arg = &app};
    sl_chan_t *pipeline = sl_pipeline(PROCESSORS, app.processed, &fn, app.validated, true);
    source_arg_t sa = {.app = &app, .payments = payments};
    sl_chan_t *notifier = sl_go(s_notify, &app);
    sl_chan_t *validator = sl_go(s_validate, &app);
    sl_chan_t *feeder = sl_go(s_source, &sa);
    if (!pipeline || !notifier || !validator || !feeder) {
        fprintf(stderr, "payment_pipeline: cannot start the stages\n");
        return 1;
    }

    collected_t got = {.end = "error"};
    int rc = s_collect(&app, &got);
    int shut = sl_sched_shutdown(5000);

    int validated = atomic_load(&app.validated_n), invalid = atomic_load(&app.invalid_n);
    int processed = atomic_load(&app.processed_n), failed = atomic_load(&app.failed_n);
    int notified = atomic_load(&app.notified_n), lost = atomic_load(&app.lost);
    int max_parallel = atomic_load(&app.max_inflight);

    int ok = rc == SL_OK && shut == SL_OK && lost == 0 && got.other == 0 &&
             validated + invalid == TOTAL &&
             processed + failed == validated &&
             notified == processed &&
             got.notified == notified && got.invalid == invalid && got.failed == failed &&
             invalid == exp_invalid && failed == exp_failed &&
             got.settled_cents == exp_settled_cents &&
             max_parallel >= 1 && max_parallel <= PROCESSORS;

    printf("summary total=%d validated=%d invalid=%d processed=%d failed=%d"
           " notified=%d errors=%d settled_cents=%" PRId64 " max_parallel=%d"
           " end=%s ok=%d\n",
           TOTAL, validated, invalid, processed, failed, notified,
           got.invalid + got.failed, got.settled_cents, max_parallel, got.end, ok);
    fflush(stdout);

    sl_chan_destroy(&feeder);
    sl_chan_destroy(&validator);
    sl_chan_destroy(&notifier);
    sl_chan_destroy(&pipeline);
    sl_chan_destroy(&app.incoming);
    sl_chan_destroy(&app.validated);
    sl_chan_destroy(&app.processed);
    sl_chan_destroy(&app.notified);
    sl_chan_destroy(&app.errors);
    free(payments);

    if (!ok) {
        fprintf(stderr, "payment_pipeline: invariant failed (collect=%s shutdown=%s lost=%d"
                " expected invalid=%d failed=%d settled_cents=%" PRId64 ")\n",
                sl_err_name(rc), sl_err_name(shut), lost, exp_invalid, exp_failed,
                exp_settled_cents);
        return 1;
    }
    return 0;
}
