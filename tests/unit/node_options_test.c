/* node_options_test.c -- SL_NODE_OPTIONS (sluice/node.h), the one list of
 * the node's options: each default, written as --help shows it ("30s",
 * "256k"), is the value sl_node_opts_default() gives, and lies within the
 * option's bounds; a text option's "" is NULL in the struct. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/config.h"
#include "sluice/node.h"
#include "testlib.h"

/* What the daemon's table makes of a default's text (sluice-node reads
 * it with the same sl_config_load), for an option of that kind. */
static int64_t s_parse(const char *name, sl_conf_type_t type, const char *text)
{
    int64_t v = 0;
    sl_conf_opt_t t[] = {{name, type, text, NULL, "", .store = &v}, {NULL}};
    char *why = NULL;
    char *argv[] = {"node_options_test", NULL};
    if (sl_config_load(t, 1, argv, &why) != SL_OK)
        fail_msg("%s: default '%s' does not parse: %s", name, text, why ? why : "?");
    return v;
}

static void s_number(const char *name, sl_conf_type_t type, const char *text, int64_t value,
                     int64_t min, int64_t max)
{
    int64_t parsed = s_parse(name, type, text);
    if (parsed != value)
        fail_msg("%s: --help says '%s' (%lld), sl_node_opts_default %lld", name, text,
                 (long long)parsed, (long long)value);
    if ((min || max) && (value < min || value > max))
        fail_msg("%s: default %lld outside %lld..%lld", name, (long long)value, (long long)min,
                 (long long)max);
}

#define S_CHECK_INT(name, field, def, unit, min, max) \
    s_number(name, SL_CONF_INT, #def #unit, (int64_t)o.field, min, max)
#define S_CHECK_SIZE(name, field, def, unit, min, max) \
    s_number(name, SL_CONF_INT, #def #unit, (int64_t)o.field, min, max)
#define S_CHECK_MS(name, field, def, unit, min, max) \
    s_number(name, SL_CONF_DURATION, #def #unit, (int64_t)o.field, min, max)
#define S_CHECK_STRING(name, field, def, unit, min, max)                         \
    do {                                                                         \
        if ((def)[0] ? !o.field || strcmp(o.field, def) != 0 : o.field != NULL) \
            fail_msg("%s: default %s, not %s", name, o.field ? o.field : "NULL", def); \
    } while (0)
/* An enum's default is its first value (the daemon's table says so). */
#define S_CHECK_ENUM(name, field, def, unit, min, max) assert_int_equal((int)o.field, 0)

static void test_node_options__defaults_are_what_help_says(void **state)
{
    (void)state;
    sl_node_opts_t o;
    memset(&o, 0xa5, sizeof o);
    sl_node_opts_default(&o);
    int n = 0;
#define S_CHECK(name, field, type, kind, def, unit, min, max, env, help) \
    S_CHECK_##kind(name, field, def, unit, min, max);                    \
    n++;
    SL_NODE_OPTIONS(S_CHECK)
#undef S_CHECK
    assert_true(n >= 20);
    assert_null(o.cluster_fn);
    assert_null(o.cluster_arg);
    /* and they make a node */
    int err = SL_OK;
    sl_node_t *node = sl_node_new(&o, &err);
    SL_ASSERT_OK(err);
    assert_non_null(node);
    sl_node_destroy(&node);
}

/* Every option names its environment variable, SLUICE_ and its name. */
static void test_node_options__env_is_named_for_the_option(void **state)
{
    (void)state;
#define S_ENV(name, field, type, kind, def, unit, min, max, env, help)          \
    {                                                                            \
        char want[64] = "SLUICE_";                                               \
        for (size_t i = 0; name[i] && i + 8 < sizeof want; i++)                  \
            want[7 + i] = name[i] == '-' ? '_' : (char)(name[i] - 'a' + 'A');    \
        if (strcmp(env, want) != 0)                                              \
            fail_msg("%s: env %s, not %s", name, env, want);                     \
        assert_true(strlen(help) > 8);                                           \
    }
    SL_NODE_OPTIONS(S_ENV)
#undef S_ENV
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_node_options__defaults_are_what_help_says),
        cmocka_unit_test(test_node_options__env_is_named_for_the_option),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
