/* examples_test.c -- runs each program in examples/ and checks, from its
 * `key=value` output, the property the example exists to show. The
 * examples check themselves too; this test makes sure that what they print
 * is what they claim. Usage: examples_test [pattern] (fnmatch on names). */
#include <fnmatch.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <cmocka.h>

#ifndef EXAMPLES_DIR
#error "EXAMPLES_DIR must name the directory holding the example binaries"
#endif
#ifndef EXAMPLE_TIMEOUT_S
#define EXAMPLE_TIMEOUT_S 150
#endif

#define MAX_LINES 4096

/* The captured stdout of one run. */
typedef struct {
    char *lines[MAX_LINES];
    size_t n;
    int status; /* as from waitpid */
} run_t;

static void s_run_free(run_t *r)
{
    for (size_t i = 0; i < r->n; i++)
        free(r->lines[i]);
    free(r);
}

/* Run examples/<name> under timeout(1), capture stdout line by line, and
 * fail the test unless it exited 0. Caller owns the result. */
static run_t *s_run(const char *name)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "timeout -k 5 %d '%s/%s'", EXAMPLE_TIMEOUT_S,
             EXAMPLES_DIR, name);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    run_t *r = calloc(1, sizeof *r);
    assert_non_null(r);
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    while ((len = getline(&line, &cap, f)) >= 0) {
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        if (r->n < MAX_LINES)
            r->lines[r->n++] = strdup(line);
    }
    free(line);
    r->status = pclose(f);
    if (!WIFEXITED(r->status) || WEXITSTATUS(r->status) != 0) {
        for (size_t i = r->n > 20 ? r->n - 20 : 0; i < r->n; i++)
            print_error("  %s| %s\n", name, r->lines[i]);
        if (WIFEXITED(r->status))
            fail_msg("%s exited %d (124: killed by timeout)", name,
                     WEXITSTATUS(r->status));
        fail_msg("%s died (wait status 0x%x)", name, (unsigned)r->status);
    }
    return r;
}

static int s_starts(const char *line, const char *prefix)
{
    return strncmp(line, prefix, strlen(prefix)) == 0;
}

/* The value of `key=` among the space-separated tokens of line, as text.
 * Returns a pointer into line (up to the next space), or NULL. */
static const char *s_field(const char *line, const char *key, size_t *len)
{
    size_t klen = strlen(key);
    const char *p = line;
    while (*p) {
        while (*p == ' ')
            p++;
        const char *end = strchr(p, ' ');
        if (!end)
            end = p + strlen(p);
        if ((size_t)(end - p) > klen && strncmp(p, key, klen) == 0 && p[klen] == '=') {
            *len = (size_t)(end - p) - klen - 1;
            return p + klen + 1;
        }
        p = end;
    }
    return NULL;
}

/* The integer value of key in line; fails the test if absent. */
static long s_int(const char *line, const char *key)
{
    size_t len;
    const char *v = s_field(line, key, &len);
    if (!v)
        fail_msg("no %s= in \"%s\"", key, line);
    char *end;
    long n = strtol(v, &end, 10);
    if (end != v + len)
        fail_msg("%s= is not an integer in \"%s\"", key, line);
    return n;
}

static int s_str_is(const char *line, const char *key, const char *want)
{
    size_t len;
    const char *v = s_field(line, key, &len);
    return v && len == strlen(want) && strncmp(v, want, len) == 0;
}

/* The only line starting with prefix; fails unless there is exactly one. */
static const char *s_one(const run_t *r, const char *prefix, size_t *index)
{
    const char *found = NULL;
    for (size_t i = 0; i < r->n; i++) {
        if (s_starts(r->lines[i], prefix)) {
            if (found)
                fail_msg("more than one \"%s\" line", prefix);
            found = r->lines[i];
            if (index)
                *index = i;
        }
    }
    if (!found)
        fail_msg("no \"%s\" line", prefix);
    return found;
}

/* 1. Ten values, in order, then the end caused by the close. */
static void test_examples__producer_consumer_in_order_then_closed(void **state)
{
    run_t *r = s_run("producer_consumer");
    long expect = 1;
    size_t last_take = 0, end_at = 0;
    for (size_t i = 0; i < r->n; i++) {
        if (!s_starts(r->lines[i], "take "))
            continue;
        assert_int_equal(s_int(r->lines[i], "value"), expect);
        expect++;
        last_take = i;
    }
    assert_int_equal(expect - 1, 10);
    const char *end = s_one(r, "end ", &end_at);
    assert_true(end_at > last_take);
    assert_true(s_str_is(end, "status", "SL_ECLOSED"));
    assert_int_equal(s_int(end, "after"), 10);
    const char *sum = s_one(r, "summary ", NULL);
    assert_int_equal(s_int(sum, "produced"), 10);
    assert_int_equal(s_int(sum, "consumed"), 10);
    assert_int_equal(s_int(sum, "ok"), 1);
    s_run_free(r);
}

/* 2. Every value reaches exactly one of the three consumers. */
static void test_examples__shared_consumers_each_value_once(void **state)
{
    enum { CONSUMERS = 3, MAX_VALUE = 1000 };
    static int seen[MAX_VALUE + 1];
    long per_consumer[CONSUMERS + 1] = {0};
    memset(seen, 0, sizeof seen);

    run_t *r = s_run("shared_consumers");
    const char *sum = s_one(r, "summary ", NULL);
    long values = s_int(sum, "values");
    assert_in_range(values, 30, MAX_VALUE);
    long lines = 0;
    for (size_t i = 0; i < r->n; i++) {
        if (!s_starts(r->lines[i], "consumer="))
            continue;
        long c = s_int(r->lines[i], "consumer");
        long v = s_int(r->lines[i], "value");
        assert_in_range(c, 1, CONSUMERS);
        assert_in_range(v, 1, values);
        seen[v]++;
        per_consumer[c]++;
        lines++;
    }
    for (long v = 1; v <= values; v++)
        if (seen[v] != 1)
            fail_msg("value %ld consumed %d times", v, seen[v]);
    assert_int_equal(lines, values);
    /* The per-consumer totals agree with the per-value lines. */
    for (size_t i = 0; i < r->n; i++) {
        if (!s_starts(r->lines[i], "consumer_total "))
            continue;
        long c = s_int(r->lines[i], "consumer");
        assert_in_range(c, 1, CONSUMERS);
        assert_int_equal(s_int(r->lines[i], "taken"), per_consumer[c]);
    }
    assert_int_equal(s_int(sum, "consumed"), values);
    assert_int_equal(s_int(sum, "consumers"), CONSUMERS);
    assert_int_equal(s_int(sum, "duplicates"), 0);
    assert_int_equal(s_int(sum, "missing"), 0);
    assert_int_equal(s_int(sum, "ok"), 1);
    s_run_free(r);
}

/* 3. Every value is taken or counted as dropped; the producer never waits. */
static void test_examples__dropping_backpressure_never_blocks(void **state)
{
    run_t *r = s_run("dropping_backpressure");
    const char *sum = s_one(r, "summary ", NULL);
    long produced = s_int(sum, "produced");
    long consumed = s_int(sum, "consumed");
    long dropped = s_int(sum, "dropped");
    assert_true(produced > 0);
    assert_int_equal(produced, consumed + dropped);
    assert_true(dropped > 0);
    assert_true(consumed > 0);
    assert_int_equal(s_int(sum, "blocked_puts"), 0);
    /* A put that waited for the consumer would take about consumer_ms. */
    assert_true(s_int(sum, "max_put_us") < s_int(sum, "consumer_ms") * 1000 / 2);
    long takes = 0, prev = 0;
    for (size_t i = 0; i < r->n; i++) {
        if (!s_starts(r->lines[i], "take "))
            continue;
        long v = s_int(r->lines[i], "value");
        assert_true(v > prev); /* drops leave gaps, never reorder */
        prev = v;
        takes++;
    }
    assert_int_equal(takes, consumed);
    const char *stats = s_one(r, "chan_stats ", NULL);
    assert_int_equal(s_int(stats, "dropped"), dropped);
    assert_int_equal(s_int(stats, "takes"), consumed);
    assert_int_equal(s_int(sum, "ok"), 1);
    s_run_free(r);
}

/* 4. Every payment is accounted for exactly once, at one outcome. */
static void test_examples__payment_pipeline_accounts_for_payments(void **state)
{
    enum { MAX_ID = 10000 };
    static int seen[MAX_ID + 1];
    memset(seen, 0, sizeof seen);

    run_t *r = s_run("payment_pipeline");
    const char *sum = s_one(r, "summary ", NULL);
    long total = s_int(sum, "total");
    long validated = s_int(sum, "validated");
    long invalid = s_int(sum, "invalid");
    long processed = s_int(sum, "processed");
    long failed = s_int(sum, "failed");
    long notified = s_int(sum, "notified");
    assert_in_range(total, 1, MAX_ID);
    assert_int_equal(validated + invalid, total);
    assert_int_equal(processed + failed, validated);
    assert_int_equal(notified, processed);
    assert_int_equal(s_int(sum, "errors"), invalid + failed);
    assert_true(invalid > 0 && failed > 0 && notified > 0);
    assert_in_range(s_int(sum, "max_parallel"), 1, 5);
    assert_true(s_str_is(sum, "end", "idle_timeout"));

    long n_notified = 0, n_invalid = 0, n_failed = 0;
    for (size_t i = 0; i < r->n; i++) {
        const char *l = r->lines[i];
        if (s_starts(l, "notified "))
            n_notified++;
        else if (s_starts(l, "error ") && s_str_is(l, "stage", "validate"))
            n_invalid++;
        else if (s_starts(l, "error ") && s_str_is(l, "stage", "process"))
            n_failed++;
        else
            continue;
        long id = s_int(l, "id");
        assert_in_range(id, 1, total);
        if (++seen[id] != 1)
            fail_msg("payment %ld reported twice", id);
    }
    assert_int_equal(n_notified, notified);
    assert_int_equal(n_invalid, invalid);
    assert_int_equal(n_failed, failed);
    assert_int_equal(n_notified + n_invalid + n_failed, total);
    assert_int_equal(s_int(sum, "ok"), 1);
    s_run_free(r);
}

int main(int argc, char **argv)
{
    static const struct CMUnitTest all[] = {
        cmocka_unit_test(test_examples__producer_consumer_in_order_then_closed),
        cmocka_unit_test(test_examples__shared_consumers_each_value_once),
        cmocka_unit_test(test_examples__dropping_backpressure_never_blocks),
        cmocka_unit_test(test_examples__payment_pipeline_accounts_for_payments),
    };
    const size_t n_all = sizeof all / sizeof all[0];
    struct CMUnitTest chosen[sizeof all / sizeof all[0]];
    size_t n = 0;
    /* Filter here rather than with cmocka_set_test_filter: a pattern that
     * matches nothing must fail, not pass with zero tests run. */
    for (size_t i = 0; i < n_all; i++)
        if (argc < 2 || fnmatch(argv[1], all[i].name, 0) == 0 ||
            strncmp(all[i].name, argv[1], strlen(argv[1])) == 0)
            chosen[n++] = all[i];
    if (n == 0) {
        fprintf(stderr, "examples_test: no test matches \"%s\"\n", argv[1]);
        return 2;
    }
    return _cmocka_run_group_tests("examples", chosen, n, NULL, NULL);
}
