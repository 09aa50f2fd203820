/* log_test.c -- daemon logging: the level check skips argument evaluation,
 * text lines have the documented shape, JSON lines are valid JSON whatever
 * the message holds, and concurrent records never interleave. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sluice/log.h"
#include "testlib.h"

/* ---- capture: records go to a temp file we read back ------------------ */

static int s_cap_fd = -1;
static char s_cap_path[] = "/tmp/sluice_log_test_XXXXXX";

static int s_setup(void **state)
{
    (void)state;
    strcpy(s_cap_path, "/tmp/sluice_log_test_XXXXXX");
    s_cap_fd = mkstemp(s_cap_path);
    if (s_cap_fd < 0)
        return -1;
    /* O_APPEND as a daemon's log file would be opened */
    int fl = fcntl(s_cap_fd, F_GETFL);
    fcntl(s_cap_fd, F_SETFL, fl | O_APPEND);
    sl_log_set_fd(s_cap_fd);
    return 0;
}

static int s_teardown(void **state)
{
    (void)state;
    sl_log_set_fd(2);
    close(s_cap_fd);
    unlink(s_cap_path);
    sl_log_init("sluice", SL_LOG_INFO, false);
    return 0;
}

/* Everything written so far; caller owns (free()). */
static char *s_captured(size_t *len_out)
{
    off_t len = lseek(s_cap_fd, 0, SEEK_END);
    char *buf = malloc((size_t)len + 1);
    assert_non_null(buf);
    assert_int_equal(pread(s_cap_fd, buf, (size_t)len, 0), len);
    buf[len] = '\0';
    if (len_out)
        *len_out = (size_t)len;
    return buf;
}

static void s_clear(void)
{
    assert_int_equal(ftruncate(s_cap_fd, 0), 0);
}

/* ---- a strict JSON reader for one log line ---------------------------- */

/* Validate UTF-8 in [s, s+n): returns 1 when every sequence is well formed. */
static int s_utf8_ok(const unsigned char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        unsigned char c = s[i];
        size_t len = c < 0x80 ? 1 : (c >= 0xC2 && c <= 0xDF) ? 2
                   : (c >= 0xE0 && c <= 0xEF) ? 3 : (c >= 0xF0 && c <= 0xF4) ? 4 : 0;
        if (len == 0 || i + len > n)
            return 0;
        for (size_t k = 1; k < len; k++)
            if ((s[i + k] & 0xC0) != 0x80)
                return 0;
        if (c == 0xE0 && s[i + 1] < 0xA0) return 0;
        if (c == 0xED && s[i + 1] > 0x9F) return 0;
        if (c == 0xF0 && s[i + 1] < 0x90) return 0;
        if (c == 0xF4 && s[i + 1] > 0x8F) return 0;
        i += len;
    }
    return 1;
}

static int s_hex4(const char *p, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
        else return -1;
    }
    *out = v;
    return 0;
}

/* Parse a JSON string at *pp per RFC 8259, decoding into out (UTF-8).
 * Returns 0 and advances *pp past the closing quote, or -1. */
static int s_json_string(const char **pp, char *out, size_t cap)
{
    const char *p = *pp;
    size_t o = 0;
    if (*p++ != '"')
        return -1;
    for (;;) {
        unsigned char c = (unsigned char)*p;
        if (c == '\0' || c < 0x20)
            return -1;              /* raw control characters are invalid */
        if (c == '"')
            break;
        if (o + 4 >= cap)
            return -1;
        if (c != '\\') {
            out[o++] = (char)c;
            p++;
            continue;
        }
        p++;
        switch (*p) {
        case '"': out[o++] = '"'; break;
        case '\\': out[o++] = '\\'; break;
        case '/': out[o++] = '/'; break;
        case 'b': out[o++] = '\b'; break;
        case 'f': out[o++] = '\f'; break;
        case 'n': out[o++] = '\n'; break;
        case 'r': out[o++] = '\r'; break;
        case 't': out[o++] = '\t'; break;
        case 'u': {
            unsigned u;
            if (s_hex4(p + 1, &u) != 0 || (u >= 0xD800 && u <= 0xDFFF))
                return -1;          /* lone surrogates would be invalid */
            p += 4;
            if (u < 0x80) {
                out[o++] = (char)u;
            } else if (u < 0x800) {
                out[o++] = (char)(0xC0 | u >> 6);
                out[o++] = (char)(0x80 | (u & 0x3F));
            } else {
                out[o++] = (char)(0xE0 | u >> 12);
                out[o++] = (char)(0x80 | ((u >> 6) & 0x3F));
                out[o++] = (char)(0x80 | (u & 0x3F));
            }
            break;
        }
        default:
            return -1;
        }
        p++;
    }
    if (!s_utf8_ok((const unsigned char *)*pp + 1, (size_t)(p - *pp - 1)))
        return -1;
    out[o] = '\0';
    *pp = p + 1;
    return 0;
}

/* Parse one `{"k":"v",...}\n` line; store the value of field `want` in
 * val. Returns the number of fields, or -1 when the line is not valid. */
static int s_json_line(const char *line, const char *want, char *val, size_t cap)
{
    char key[64];
    char *tmp = malloc(cap);
    int fields = 0;
    const char *p = line;
    assert_non_null(tmp);
    if (*p++ != '{')
        goto bad;
    for (;;) {
        if (s_json_string(&p, key, sizeof key) != 0 || *p++ != ':')
            goto bad;
        if (s_json_string(&p, tmp, cap) != 0)
            goto bad;
        if (strcmp(key, want) == 0)
            strcpy(val, tmp);
        fields++;
        if (*p == ',') {
            p++;
            continue;
        }
        if (*p++ != '}')
            goto bad;
        break;
    }
    if (strcmp(p, "\n") != 0)
        goto bad;
    free(tmp);
    return fields;
bad:
    free(tmp);
    return -1;
}

/* ---- tests ------------------------------------------------------------ */

static int s_evaluations;

static int s_count(void)
{
    return ++s_evaluations;
}

static void test_log__below_threshold_does_not_evaluate_args(void **state)
{
    (void)state;
    sl_log_init("test", SL_LOG_WARN, false);
    s_evaluations = 0;
    SL_LOG(SL_LOG_DEBUG, "debug %d", s_count());
    SL_LOG(SL_LOG_INFO, "info %d", s_count());
    assert_int_equal(s_evaluations, 0);
    char *out = s_captured(NULL);
    assert_string_equal(out, "");
    free(out);

    SL_LOG(SL_LOG_WARN, "warn %d", s_count());
    SL_LOG(SL_LOG_ERROR, "error %d", s_count());
    assert_int_equal(s_evaluations, 2);
    out = s_captured(NULL);
    assert_non_null(strstr(out, " warn test: warn 1\n"));
    assert_non_null(strstr(out, " error test: error 2\n"));
    free(out);

    sl_log_set_level(SL_LOG_DEBUG);
    assert_int_equal(sl_log_level(), SL_LOG_DEBUG);
    SL_LOG(SL_LOG_DEBUG, "debug %d", s_count());
    assert_int_equal(s_evaluations, 3);

    /* the level expression itself is evaluated exactly once */
    s_evaluations = 0;
    SL_LOG(s_count() ? SL_LOG_ERROR : SL_LOG_DEBUG, "level once");
    assert_int_equal(s_evaluations, 1);
}

static int s_is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* 2026-11-25T21:40:00.123Z */
static void s_assert_timestamp(const char *ts)
{
    const char *shape = "dddd-dd-ddTdd:dd:dd.dddZ";
    for (size_t i = 0; shape[i]; i++) {
        if (shape[i] == 'd')
            assert_true(s_is_digit(ts[i]));
        else
            assert_int_equal(ts[i], shape[i]);
    }
}

static void test_log__text_line_has_timestamp_level_component(void **state)
{
    (void)state;
    sl_log_init("node", SL_LOG_DEBUG, false);
    SL_LOG(SL_LOG_INFO, "listening on \"%s\"", "tcp://127.0.0.1:7450");
    char *out = s_captured(NULL);
    s_assert_timestamp(out);
    assert_string_equal(out + 24, " info node: listening on \"tcp://127.0.0.1:7450\"\n");
    free(out);

    /* a newline inside a message must not start a second record */
    s_clear();
    SL_LOG(SL_LOG_WARN, "two\nlines\x01");
    out = s_captured(NULL);
    assert_string_equal(out + 24, " warn node: two\\nlines\\x01\n");
    free(out);
}

static void test_log__json_escaping_is_valid_json(void **state)
{
    (void)state;
    static const char *const msgs[] = {
        "plain message",
        "quotes \" and \"\" inside",
        "back\\slash \\\\ and \\\"",
        "controls \x01\x02\x1f\b\f\n\r\t end",
        "unicode caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80",
        "",
        "{\"looks\":\"like json\"}",
        "del \x7f and slash /",
    };
    sl_log_init("co\"ord\\inator", SL_LOG_DEBUG, true);
    for (size_t i = 0; i < sizeof msgs / sizeof *msgs; i++) {
        s_clear();
        SL_LOG(SL_LOG_ERROR, "%s", msgs[i]);
        char *out = s_captured(NULL);
        char msg[1024], level[32], ts[64], comp[64];
        if (s_json_line(out, "msg", msg, sizeof msg) != 4)
            fail_msg("not a valid JSON line: %s", out);
        assert_string_equal(msg, msgs[i]);      /* decodes to the original */
        assert_int_equal(s_json_line(out, "level", level, sizeof level), 4);
        assert_string_equal(level, "error");
        assert_int_equal(s_json_line(out, "comp", comp, sizeof comp), 4);
        assert_string_equal(comp, "co\"ord\\inator");
        assert_int_equal(s_json_line(out, "ts", ts, sizeof ts), 4);
        s_assert_timestamp(ts);
        assert_int_equal(strlen(ts), 24);
        assert_int_equal(strncmp(out, "{\"ts\":\"", 7), 0);
        free(out);
    }
}

static void test_log__json_replaces_invalid_utf8(void **state)
{
    (void)state;
    sl_log_init("node", SL_LOG_DEBUG, true);
    SL_LOG(SL_LOG_INFO, "bad \xff\xfe bytes \xc3 and \xed\xa0\x80 surrogate");
    char *out = s_captured(NULL);
    char msg[256];
    if (s_json_line(out, "msg", msg, sizeof msg) != 4)
        fail_msg("not a valid JSON line: %s", out);
    assert_non_null(strstr(msg, "bad \xef\xbf\xbd\xef\xbf\xbd bytes \xef\xbf\xbd and"));
    free(out);
}

static void test_log__long_message_is_cut_and_stays_valid(void **state)
{
    (void)state;
    size_t n = 3 * SL_LOG_LINE_MAX;
    char *big = malloc(n + 1);
    assert_non_null(big);
    for (size_t i = 0; i < n; i++)
        big[i] = i % 7 == 0 ? '"' : 'a';  /* escapes make it grow further */
    big[n] = '\0';

    sl_log_init("node", SL_LOG_DEBUG, true);
    SL_LOG(SL_LOG_INFO, "%s", big);
    size_t len;
    char *out = s_captured(&len);
    assert_true(len <= SL_LOG_LINE_MAX);
    assert_int_equal(out[len - 1], '\n');
    assert_int_equal(strchr(out, '\n'), out + len - 1);
    char *msg = malloc(SL_LOG_LINE_MAX);
    if (s_json_line(out, "msg", msg, SL_LOG_LINE_MAX) != 4)
        fail_msg("cut line is not valid JSON: %.80s...", out);
    assert_true(strlen(msg) > 1000);
    assert_string_equal(msg + strlen(msg) - 3, "...");
    free(msg);
    free(out);

    s_clear();
    sl_log_init("node", SL_LOG_DEBUG, false);
    SL_LOG(SL_LOG_INFO, "%s", big);
    out = s_captured(&len);
    assert_true(len <= SL_LOG_LINE_MAX);
    assert_string_equal(out + len - 4, "...\n");
    free(out);
    free(big);
}

#define NTHREADS 4
#define NLINES 2000

static void *s_writer(void *arg)
{
    long t = (long)arg;
    for (int i = 0; i < NLINES; i++)
        SL_LOG(SL_LOG_INFO, "thread %ld line %d padding %0200d", t, i, 0);
    return NULL;
}

static void test_log__concurrent_lines_never_interleave(void **state)
{
    (void)state;
    sl_log_init("node", SL_LOG_INFO, false);
    pthread_t th[NTHREADS];
    for (long t = 0; t < NTHREADS; t++)
        assert_int_equal(pthread_create(&th[t], NULL, s_writer, (void *)t), 0);
    for (int t = 0; t < NTHREADS; t++)
        pthread_join(th[t], NULL);

    char *out = s_captured(NULL);
    int seen[NTHREADS] = {0};
    int lines = 0;
    for (char *save = NULL, *line = strtok_r(out, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
        long t;
        int i, consumed = 0;
        s_assert_timestamp(line);
        if (sscanf(line + 24, " info node: thread %ld line %d padding %*d%n",
                   &t, &i, &consumed) != 2 || line[24 + consumed] != '\0')
            fail_msg("mangled line: %s", line);
        assert_true(t >= 0 && t < NTHREADS);
        assert_int_equal(i, seen[t]);   /* each thread's lines in order */
        seen[t]++;
        lines++;
    }
    assert_int_equal(lines, NTHREADS * NLINES);
    free(out);
}

static void test_log__keeps_errno(void **state)
{
    (void)state;
    sl_log_init("node", SL_LOG_INFO, false);
    errno = ECONNREFUSED;
    SL_LOG(SL_LOG_ERROR, "connect failed: %s", strerror(errno));
    assert_int_equal(errno, ECONNREFUSED);
}

static void test_log__level_names_parse_back(void **state)
{
    (void)state;
    sl_log_level_t lv;
    for (int i = SL_LOG_DEBUG; i <= SL_LOG_ERROR; i++) {
        SL_ASSERT_OK(sl_log_level_parse(sl_log_level_name(i), &lv));
        assert_int_equal(lv, i);
    }
    SL_ASSERT_OK(sl_log_level_parse("WARNING", &lv));
    assert_int_equal(lv, SL_LOG_WARN);
    SL_ASSERT_ERR(sl_log_level_parse("verbose", &lv), SL_EINVAL);
    SL_ASSERT_ERR(sl_log_level_parse(NULL, &lv), SL_EINVAL);
    assert_string_equal(sl_log_level_name(42), "unknown");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_log__below_threshold_does_not_evaluate_args, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_log__text_line_has_timestamp_level_component, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_log__json_escaping_is_valid_json, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_log__json_replaces_invalid_utf8, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_log__long_message_is_cut_and_stays_valid, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_log__concurrent_lines_never_interleave, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_log__keeps_errno, s_setup, s_teardown),
        cmocka_unit_test(test_log__level_names_parse_back),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
