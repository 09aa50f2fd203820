/* payments_test.c -- the README's main job, `payments run`, on one node and
 * on a cluster of two: every payment published ends processed or dead, some
 * of each (the stream holds invalid and declined payments), and the run
 * exits 0 with its summary line. */
#define _GNU_SOURCE
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testlib.h"
#include "itest.h"

static void s_run(const char *const *extra)
{
    char *argv[16];
    int k = 0;
    argv[k++] = PAYMENTS_BIN;
    argv[k++] = "run";
    argv[k++] = "--count";
    argv[k++] = "2000";
    argv[k++] = "--rate";
    argv[k++] = "2000";
    for (int i = 0; extra && extra[i]; i++)
        argv[k++] = (char *)extra[i];
    argv[k] = NULL;
    char *out = NULL;
    int st = sl_testproc_run(argv, NULL, NULL, 120000, &out);
    const char *sum = out ? strstr(out, "summary ") : NULL;
    if (st != 0 || !sum)
        fail_msg("payments run exited %d:\n%s", st, out ? out : "");
    unsigned long published = 0, processed = 0, dead = 0;
    assert_int_equal(sscanf(sum, "summary published=%lu processed=%lu failed=%*u retried=%*u dead=%lu",
                            &published, &processed, &dead),
                     3);
    print_message("%.*s\n", (int)strcspn(sum, "\n"), sum);
    assert_int_equal(published, 2000);
    assert_int_equal(processed + dead, 2000);
    assert_true(processed > 0 && dead > 0);
    free(out);
}

static void test_payments__one_node(void **state)
{
    it_ctx_t *t = *state;
    s_run(NULL);
    t->passed = true;
}

static void test_payments__cluster_of_two_nodes(void **state)
{
    it_ctx_t *t = *state;
    if (!it_coord_bin())
        skip();
    s_run((const char *const[]){"--nodes", "2", NULL});
    t->passed = true;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_payments__one_node, it_setup, it_teardown),
        cmocka_unit_test_setup_teardown(test_payments__cluster_of_two_nodes, it_setup,
                                        it_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
