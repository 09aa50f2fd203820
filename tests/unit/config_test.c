/* config_test.c -- option tables: flags beat the environment, which beats
 * the file, which beats the default; every bad value is an error naming the
 * option and the bound, never a crash or a half-applied configuration. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sluice/config.h"
#include "testlib.h"

static int64_t s_port;
static bool s_json;
static char *s_name;
static int s_overflow;
static int64_t s_lease;
static int64_t s_max_frame;

static const char *const s_overflows[] = {"block", "drop-new", "drop-oldest", NULL};

static sl_conf_opt_t s_table[] = {
    {"port", SL_CONF_INT, "7450", "SLT_PORT", "port to listen on",
     .min = 1, .max = 65535, .store = &s_port},
    {"json", SL_CONF_BOOL, "false", "SLT_JSON", "log json lines",
     .store = &s_json},
    {"name", SL_CONF_STRING, "node-a", "SLT_NAME", "node name",
     .store = &s_name},
    {"overflow", SL_CONF_ENUM, "block", "SLT_OVERFLOW", "what a full queue does",
     .values = s_overflows, .store = &s_overflow},
    {"lease", SL_CONF_DURATION, "30s", "SLT_LEASE", "lease time",
     .min = 100, .max = 3600000, .store = &s_lease},
    {"max-frame", SL_CONF_INT, "1m", NULL, "largest envelope, in bytes",
     .min = 64, .max = 64 << 20, .store = &s_max_frame},
    {0},
};

static char s_file[] = "/tmp/sluice_config_test_XXXXXX";

static void s_unset_env(void)
{
    unsetenv("SLT_PORT");
    unsetenv("SLT_JSON");
    unsetenv("SLT_NAME");
    unsetenv("SLT_OVERFLOW");
    unsetenv("SLT_LEASE");
}

static int s_setup(void **state)
{
    (void)state;
    s_unset_env();
    strcpy(s_file, "/tmp/sluice_config_test_XXXXXX");
    int fd = mkstemp(s_file);
    if (fd < 0)
        return -1;
    close(fd);
    return 0;
}

static int s_teardown(void **state)
{
    (void)state;
    s_unset_env();
    unlink(s_file);
    sl_config_release(s_table);
    return 0;
}

static void s_write_file(const char *text)
{
    FILE *f = fopen(s_file, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* Load with a NULL-terminated list of arguments after argv[0]. */
#define LOAD(err, ...)                                                       \
    s_load(err, (const char *[]){"sluice-test", __VA_ARGS__, NULL})

static int s_load(char **err, const char **args)
{
    int argc = 0;
    while (args[argc])
        argc++;
    return sl_config_load(s_table, argc, (char **)args, err);
}

/* Load expecting SL_ECONFIG with a message containing each of the words. */
static void s_expect_error(const char **args, const char *w1, const char *w2)
{
    char *err = NULL;
    int rc = s_load(&err, args);
    if (rc != SL_ECONFIG)
        fail_msg("expected SL_ECONFIG, got %s", sl_err_name(rc));
    assert_non_null(err);
    if (w1 && !strstr(err, w1))
        fail_msg("error '%s' does not mention '%s'", err, w1);
    if (w2 && !strstr(err, w2))
        fail_msg("error '%s' does not mention '%s'", err, w2);
    free(err);
}
#define EXPECT_ERROR(w1, w2, ...)                                             \
    s_expect_error((const char *[]){"sluice-test", __VA_ARGS__, NULL}, w1, w2)

static void test_config__defaults_apply(void **state)
{
    (void)state;
    char *err = (char *)"untouched";
    SL_ASSERT_OK(sl_config_load(s_table, 1, (char *[]){"x", NULL}, &err));
    assert_null(err);
    assert_int_equal(s_port, 7450);
    assert_false(s_json);
    assert_string_equal(s_name, "node-a");
    assert_int_equal(s_overflow, 0);
    assert_int_equal(s_lease, 30000);
    assert_int_equal(s_max_frame, 1 << 20);
}

static void test_config__flag_beats_env_beats_file_beats_default(void **state)
{
    (void)state;
    char *err = NULL;
    s_write_file("port 1000\nname from-file\nlease 1s\n");
    setenv("SLT_PORT", "2000", 1);
    setenv("SLT_NAME", "from-env", 1);

    SL_ASSERT_OK(LOAD(&err, "--config", s_file, "--port", "3000"));
    assert_int_equal(s_port, 3000);                 /* flag */
    assert_string_equal(s_name, "from-env");        /* env over file */
    assert_int_equal(s_lease, 1000);                /* file over default */
    assert_int_equal(s_overflow, 0);                /* default */

    SL_ASSERT_OK(LOAD(&err, "--config", s_file));
    assert_int_equal(s_port, 2000);

    unsetenv("SLT_PORT");
    SL_ASSERT_OK(LOAD(&err, "--config", s_file));
    assert_int_equal(s_port, 1000);

    SL_ASSERT_OK(LOAD(&err, "--name", "x"));
    assert_int_equal(s_port, 7450);
    assert_int_equal(s_lease, 30000);
    assert_string_equal(s_name, "x");

    /* --config may come anywhere, in either form */
    SL_ASSERT_OK(LOAD(&err, "--port=3", "--config=" "/dev/null"));
    assert_int_equal(s_port, 3);
}

static void test_config__flag_forms(void **state)
{
    (void)state;
    char *err = NULL;
    SL_ASSERT_OK(LOAD(&err, "--port=81", "--json", "--overflow", "drop-oldest",
                      "--lease=2m", "--max-frame", "64k"));
    assert_int_equal(s_port, 81);
    assert_true(s_json);
    assert_int_equal(s_overflow, 2);
    assert_int_equal(s_lease, 120000);
    assert_int_equal(s_max_frame, 65536);

    SL_ASSERT_OK(LOAD(&err, "--json", "false", "--port", "82"));
    assert_false(s_json);
    assert_int_equal(s_port, 82);
    SL_ASSERT_OK(LOAD(&err, "--json=on", "--lease", "250ms"));
    assert_true(s_json);
    assert_int_equal(s_lease, 250);
    SL_ASSERT_OK(LOAD(&err, "--json", "--lease", "1h"));   /* bare bool, then a flag */
    assert_true(s_json);
    assert_int_equal(s_lease, 3600000);
    SL_ASSERT_OK(LOAD(&err, "--name="));      /* an empty string is a value */
    assert_string_equal(s_name, "");
}

static void test_config__file_syntax(void **state)
{
    (void)state;
    char *err = NULL;
    s_write_file("# sluice node\n"
                 "\n"
                 "   port   4242   \n"
                 "  # indented comment\n"
                 "name = \"two words\"\n"
                 "json\n"
                 "overflow drop-new\n"
                 "port 4343\n");            /* the later line wins */
    SL_ASSERT_OK(LOAD(&err, "--config", s_file));
    assert_int_equal(s_port, 4343);
    assert_string_equal(s_name, "two words");
    assert_true(s_json);
    assert_int_equal(s_overflow, 1);
}

static void test_config__bounds_are_errors_naming_option_and_bound(void **state)
{
    (void)state;
    char *err = NULL;
    SL_ASSERT_OK(LOAD(&err, "--port", "9000", "--name", "keep"));

    EXPECT_ERROR("--port", "minimum 1", "--port", "0");
    EXPECT_ERROR("--port", "maximum 65535", "--port=65536");
    EXPECT_ERROR("--lease", "minimum 100", "--lease", "99ms");
    EXPECT_ERROR("--lease", "maximum 3600000", "--lease", "2h");
    EXPECT_ERROR("--max-frame", "maximum 67108864", "--max-frame", "1g");
    EXPECT_ERROR("--port", "not an integer", "--port", "80x");
    EXPECT_ERROR("--port", "not an integer", "--port", "");
    EXPECT_ERROR("--port", "out of range", "--port", "99999999999999999999");
    EXPECT_ERROR("--max-frame", "out of range", "--max-frame", "9000000000000g");
    EXPECT_ERROR("--lease", "not a duration", "--lease", "5 fortnights");
    EXPECT_ERROR("--json", "not a boolean", "--json=maybe");

    setenv("SLT_PORT", "-5", 1);
    EXPECT_ERROR("SLT_PORT", "minimum 1", "--name", "changed");
    unsetenv("SLT_PORT");
    s_write_file("port 1\nport 70000\n");
    EXPECT_ERROR(":2", "maximum 65535", "--config", s_file);

    /* nothing of a failed load was applied */
    assert_int_equal(s_port, 9000);
    assert_string_equal(s_name, "keep");
}

static void test_config__unknown_option_is_an_error(void **state)
{
    (void)state;
    EXPECT_ERROR("unknown option", "--nope", "--nope", "1");
    EXPECT_ERROR("unknown option", "--portx", "--portx=1");
    EXPECT_ERROR("unexpected argument", "stray", "stray");
    EXPECT_ERROR("unexpected argument", "-p", "-p", "80");
    EXPECT_ERROR("missing value", "--port", "--port");
    EXPECT_ERROR("missing value", "--port", "--port", "--json");
    EXPECT_ERROR("missing value", "--config", "--config");

    s_write_file("port 80\nbogus 1\n");
    EXPECT_ERROR("unknown option 'bogus'", ":2", "--config", s_file);
    s_write_file("port\n");
    EXPECT_ERROR("missing value", ":1", "--config", s_file);
    EXPECT_ERROR("cannot read", "/nonexistent/sluice.conf",
                 "--config", "/nonexistent/sluice.conf");
}

static void test_config__enum_accepts_only_listed_values(void **state)
{
    (void)state;
    char *err = NULL;
    SL_ASSERT_OK(LOAD(&err, "--overflow", "drop-new"));
    assert_int_equal(s_overflow, 1);
    setenv("SLT_OVERFLOW", "drop-oldest", 1);
    SL_ASSERT_OK(LOAD(&err, "--port", "1"));
    assert_int_equal(s_overflow, 2);
    EXPECT_ERROR("'drop'", "block|drop-new|drop-oldest", "--overflow", "drop");
    EXPECT_ERROR("--overflow", "not one of", "--overflow", "BLOCK");
    setenv("SLT_OVERFLOW", "sometimes", 1);
    EXPECT_ERROR("SLT_OVERFLOW", "block|drop-new|drop-oldest", "--port", "1");
}

static void test_config__empty_env_is_unset(void **state)
{
    (void)state;
    char *err = NULL;
    setenv("SLT_PORT", "", 1);
    setenv("SLT_JSON", "yes", 1);
    SL_ASSERT_OK(LOAD(&err, "--name", "n"));
    assert_int_equal(s_port, 7450);
    assert_true(s_json);
}

static void test_config__help_lists_every_option(void **state)
{
    (void)state;
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    assert_non_null(f);
    sl_config_print_help(s_table, "sluice-node", f);
    fclose(f);
    assert_non_null(strstr(text, "usage: sluice-node"));
    assert_non_null(strstr(text, "--config FILE"));
    for (size_t i = 0; i < sizeof s_table / sizeof *s_table - 1; i++) {
        const sl_conf_opt_t *o = &s_table[i];
        char flag[64];
        snprintf(flag, sizeof flag, "--%s (", o->name);
        const char *at = strstr(text, flag);
        if (!at)
            fail_msg("help does not list %s:\n%s", o->name, text);
        size_t off = (size_t)(at - text) + strlen(flag);
        const char *end = strstr(text + off, "\n  --");
        size_t n = end ? (size_t)(end - at) : strlen(at);
        char entry[512];
        snprintf(entry, sizeof entry, "%.*s", (int)n, at);
        assert_non_null(strstr(entry, o->help));
        assert_non_null(strstr(entry, o->def));
        if (o->env)
            assert_non_null(strstr(entry, o->env));
    }
    assert_non_null(strstr(text, "int 1..65535"));
    assert_non_null(strstr(text, "enum block|drop-new|drop-oldest"));
    assert_non_null(strstr(text, "duration-ms 100..3600000"));
    assert_non_null(strstr(text, "bool"));
    assert_non_null(strstr(text, "string"));
    free(text);
}

static void test_config__help_flag_prints_and_returns_help(void **state)
{
    (void)state;
    char out_path[] = "/tmp/sluice_config_help_XXXXXX";
    int fd = mkstemp(out_path);
    assert_true(fd >= 0);
    fflush(stdout);
    int saved = dup(1);
    dup2(fd, 1);
    char *err = NULL;
    s_port = 1234;
    /* --help wins even over a mistake elsewhere on the line */
    int rc = LOAD(&err, "--port", "0", "--help");
    int rc2 = LOAD(&err, "-h");
    fflush(stdout);
    dup2(saved, 1);
    close(saved);
    assert_int_equal(rc, SL_CONFIG_HELP);
    assert_int_equal(rc2, SL_CONFIG_HELP);
    assert_null(err);
    assert_int_equal(s_port, 1234);     /* nothing loaded */

    char buf[8192];
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    close(fd);
    unlink(out_path);
    assert_true(n > 0);
    buf[n] = '\0';
    for (const sl_conf_opt_t *o = s_table; o->name; o++)
        assert_non_null(strstr(buf, o->name));
    assert_non_null(strstr(buf, "usage: sluice-test"));
}

static void test_config__value_str_reports_effective_values(void **state)
{
    (void)state;
    char *err = NULL;
    char buf[64];
    SL_ASSERT_OK(LOAD(&err, "--overflow", "drop-new", "--json", "--lease", "2s"));
    assert_string_equal(sl_config_value_str(&s_table[0], buf, sizeof buf), "7450");
    assert_string_equal(sl_config_value_str(&s_table[1], buf, sizeof buf), "true");
    assert_string_equal(sl_config_value_str(&s_table[2], buf, sizeof buf), "node-a");
    assert_string_equal(sl_config_value_str(&s_table[3], buf, sizeof buf), "drop-new");
    assert_string_equal(sl_config_value_str(&s_table[4], buf, sizeof buf), "2000");
}

static void test_config__release_frees_strings(void **state)
{
    (void)state;
    char *err = NULL;
    SL_ASSERT_OK(LOAD(&err, "--name", "first"));
    SL_ASSERT_OK(LOAD(&err, "--name", "second"));  /* frees "first" */
    assert_string_equal(s_name, "second");
    sl_config_release(s_table);
    assert_null(s_name);
    sl_config_release(s_table);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, s_setup, s_teardown)
    const struct CMUnitTest tests[] = {
        T(test_config__defaults_apply),
        T(test_config__flag_beats_env_beats_file_beats_default),
        T(test_config__flag_forms),
        T(test_config__file_syntax),
        T(test_config__bounds_are_errors_naming_option_and_bound),
        T(test_config__unknown_option_is_an_error),
        T(test_config__enum_accepts_only_listed_values),
        T(test_config__empty_env_is_unset),
        T(test_config__help_lists_every_option),
        T(test_config__help_flag_prints_and_returns_help),
        T(test_config__value_str_reports_effective_values),
        T(test_config__release_frees_strings),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
