/* error_test.c -- the error table: every code has its own name and message,
 * and codes outside the table are answered, not crashed on. */
#include <string.h>

#include "testlib.h"

static const int s_codes[] = {
    SL_OK,
#define X(name, val, msg) SL_##name,
    SL_ERRNO_MAP(X)
#undef X
};
#define NCODES (sizeof s_codes / sizeof s_codes[0])

static void test_error__codes_are_negative_and_distinct(void **state)
{
    (void)state;
    assert_int_equal(SL_OK, 0);
    for (size_t i = 1; i < NCODES; i++) {
        assert_true(s_codes[i] < 0);
        for (size_t j = 0; j < i; j++)
            assert_int_not_equal(s_codes[i], s_codes[j]);
    }
}

static void test_error__every_code_has_distinct_name_and_message(void **state)
{
    (void)state;
    const char *unknown_msg = sl_strerror(-123456);
    const char *unknown_name = sl_err_name(-123456);
    for (size_t i = 0; i < NCODES; i++) {
        const char *name = sl_err_name(s_codes[i]);
        const char *msg = sl_strerror(s_codes[i]);
        assert_non_null(name);
        assert_non_null(msg);
        assert_true(strlen(msg) > 0);
        assert_true(strncmp(name, "SL_", 3) == 0);
        assert_string_not_equal(name, unknown_name);
        assert_string_not_equal(msg, unknown_msg);
        for (size_t j = 0; j < i; j++) {
            assert_string_not_equal(name, sl_err_name(s_codes[j]));
            assert_string_not_equal(msg, sl_strerror(s_codes[j]));
        }
    }
}

static void test_error__names_match_the_enum(void **state)
{
    (void)state;
    assert_string_equal(sl_err_name(SL_OK), "SL_OK");
#define X(name, val, msg)                                                    \
    assert_int_equal(SL_##name, val);                                        \
    assert_string_equal(sl_err_name(SL_##name), "SL_" #name);                \
    assert_string_equal(sl_strerror(SL_##name), msg);
    SL_ERRNO_MAP(X)
#undef X
    assert_string_equal(sl_strerror(SL_ECLOSED), "channel closed");
    assert_string_equal(sl_err_name(SL_ETIMEDOUT), "SL_ETIMEDOUT");
}

static void test_error__unknown_codes_are_handled(void **state)
{
    (void)state;
    int lowest = 0;
    for (size_t i = 0; i < NCODES; i++)
        if (s_codes[i] < lowest)
            lowest = s_codes[i];
    /* positive values, just past the table, far past it, the extremes */
    const int odd[] = {1, 42, lowest - 1, lowest - 100, -12345, 2147483647, -2147483647 - 1};
    for (size_t i = 0; i < sizeof odd / sizeof odd[0]; i++) {
        const char *name = sl_err_name(odd[i]);
        const char *msg = sl_strerror(odd[i]);
        assert_non_null(name);
        assert_non_null(msg);
        assert_true(strlen(name) > 0 && strlen(msg) > 0);
        for (size_t j = 0; j < NCODES; j++) {
            assert_string_not_equal(name, sl_err_name(s_codes[j]));
            assert_string_not_equal(msg, sl_strerror(s_codes[j]));
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_error__codes_are_negative_and_distinct),
        cmocka_unit_test(test_error__every_code_has_distinct_name_and_message),
        cmocka_unit_test(test_error__names_match_the_enum),
        cmocka_unit_test(test_error__unknown_codes_are_handled),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
