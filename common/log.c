/* log.c -- daemon log records: format into a stack buffer, escape, then one
 * write() per line so concurrent records never interleave.
 *
 * Stack use per record is about 2 * SL_LOG_LINE_MAX plus vsnprintf's own,
 * well inside a 64 KiB coroutine stack. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "sluice/error.h"
#include "sluice/log.h"

int sl__log_level = SL_LOG_INFO;

/* Written by sl_log_init before other threads log; read with relaxed loads
 * so a later sl_log_set_fd / set_level is still race-free. */
static int s_fd = 2;
static int s_json;
static char s_comp[32] = "sluice";

static const char *const s_level_names[] = {"debug", "info", "warn", "error"};

const char *sl_log_level_name(int level)
{
    if (level < SL_LOG_DEBUG || level > SL_LOG_ERROR)
        return "unknown";
    return s_level_names[level];
}

int sl_log_level_parse(const char *name, sl_log_level_t *out)
{
    if (!name)
        return SL_EINVAL;
    for (int i = SL_LOG_DEBUG; i <= SL_LOG_ERROR; i++) {
        if (strcasecmp(name, s_level_names[i]) == 0) {
            *out = (sl_log_level_t)i;
            return SL_OK;
        }
    }
    if (strcasecmp(name, "warning") == 0) {
        *out = SL_LOG_WARN;
        return SL_OK;
    }
    return SL_EINVAL;
}

static int s_clamp_level(int level)
{
    return level < SL_LOG_DEBUG ? SL_LOG_DEBUG
         : level > SL_LOG_ERROR ? SL_LOG_ERROR : level;
}

void sl_log_init(const char *component, sl_log_level_t level, bool json)
{
    snprintf(s_comp, sizeof s_comp, "%s", component ? component : "sluice");
    __atomic_store_n(&s_json, json ? 1 : 0, __ATOMIC_RELAXED);
    __atomic_store_n(&sl__log_level, s_clamp_level((int)level), __ATOMIC_RELAXED);
}

void sl_log_set_level(sl_log_level_t level)
{
    __atomic_store_n(&sl__log_level, s_clamp_level((int)level), __ATOMIC_RELAXED);
}

sl_log_level_t sl_log_level(void)
{
    return (sl_log_level_t)sl__log_threshold();
}

void sl_log_set_fd(int fd)
{
    __atomic_store_n(&s_fd, fd, __ATOMIC_RELAXED);
}

/* ---- a bounded line buffer ------------------------------------------ */

typedef struct {
    char *p;
    size_t len;
    size_t cap;     /* bytes usable for content; the tail is reserved apart */
    int cut;        /* content did not fit */
} s_line_t;

static void s_put(s_line_t *l, const char *s, size_t n)
{
    if (l->cut)
        return;
    if (n > l->cap - l->len) {
        l->cut = 1;
        return;
    }
    memcpy(l->p + l->len, s, n);
    l->len += n;
}

static void s_puts(s_line_t *l, const char *s)
{
    s_put(l, s, strlen(s));
}

/* Length of the valid UTF-8 sequence at s (at most n bytes), or 0 when the
 * byte at s does not start one (overlong forms and surrogates included). */
static size_t s_utf8_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t len;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF)
        len = 2;
    else if (c >= 0xE0 && c <= 0xEF)
        len = 3;
    else if (c >= 0xF0 && c <= 0xF4)
        len = 4;
    else
        return 0;
    if (c == 0xE0) lo = 0xA0;       /* overlong */
    if (c == 0xED) hi = 0x9F;       /* UTF-16 surrogates */
    if (c == 0xF0) lo = 0x90;       /* overlong */
    if (c == 0xF4) hi = 0x8F;       /* above U+10FFFF */
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xBF)
            return 0;
    return len;
}

/* Append s as the inside of a JSON string: quotes, backslashes and control
 * characters escaped, invalid UTF-8 replaced by U+FFFD, so any message
 * yields a valid JSON document. Stops at a whole character when full. */
static void s_put_json(s_line_t *l, const char *str)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t n = strlen(str);
    char esc[8];
    for (size_t i = 0; i < n && !l->cut;) {
        unsigned char c = s[i];
        if (c < 0x80) {
            switch (c) {
            case '"':  s_put(l, "\\\"", 2); break;
            case '\\': s_put(l, "\\\\", 2); break;
            case '\n': s_put(l, "\\n", 2); break;
            case '\r': s_put(l, "\\r", 2); break;
            case '\t': s_put(l, "\\t", 2); break;
            case '\b': s_put(l, "\\b", 2); break;
            case '\f': s_put(l, "\\f", 2); break;
            default:
                if (c < 0x20) {
                    snprintf(esc, sizeof esc, "\\u%04x", c);
                    s_put(l, esc, 6);
                } else {
                    s_put(l, (const char *)&s[i], 1);
                }
            }
            i++;
            continue;
        }
        size_t len = s_utf8_len(s + i, n - i);
        if (len == 0) {
            s_put(l, "\\ufffd", 6);
            i++;
        } else {
            s_put(l, (const char *)&s[i], len);
            i += len;
        }
    }
}

/* Append s for a text line: printable as is, line breaks and other control
 * characters escaped so one record stays one line. */
static void s_put_text(s_line_t *l, const char *str)
{
    char esc[8];
    for (const unsigned char *s = (const unsigned char *)str; *s && !l->cut; s++) {
        if (*s == '\n')
            s_put(l, "\\n", 2);
        else if (*s == '\r')
            s_put(l, "\\r", 2);
        else if ((*s < 0x20 && *s != '\t') || *s == 0x7f) {
            snprintf(esc, sizeof esc, "\\x%02x", *s);
            s_put(l, esc, 4);
        } else {
            s_put(l, (const char *)s, 1);
        }
    }
}

/* 2026-11-25T21:40:00.123Z (UTC, milliseconds). */
static void s_timestamp(char out[32])
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, 32 - n, ".%03dZ", (int)(ts.tv_nsec / 1000000) % 1000);
}

static void s_write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;     /* nowhere left to report a logging failure */
        p += w;
        n -= (size_t)w;
    }
}

void sl__log(int level, const char *fmt, ...)
{
    int saved_errno = errno;    /* callers log strerror(errno) after us */
    char msg[SL_LOG_LINE_MAX];
    char ts[32];
    char buf[SL_LOG_LINE_MAX];
    const char *tail;
    int json = __atomic_load_n(&s_json, __ATOMIC_RELAXED);

    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (n < 0)
        snprintf(msg, sizeof msg, "(unformattable log message)");
    s_timestamp(ts);

    tail = json ? "\"}\n" : "\n";
    /* Room for "..." and the tail is kept out of cap so a cut record still
     * closes properly. */
    s_line_t l = {buf, 0, sizeof buf - 3 - strlen(tail), 0};
    if (json) {
        s_puts(&l, "{\"ts\":\"");
        s_puts(&l, ts);
        s_puts(&l, "\",\"level\":\"");
        s_puts(&l, sl_log_level_name(level));
        s_puts(&l, "\",\"comp\":\"");
        s_put_json(&l, s_comp);
        s_puts(&l, "\",\"msg\":\"");
        s_put_json(&l, msg);
    } else {
        s_puts(&l, ts);
        s_puts(&l, " ");
        s_puts(&l, sl_log_level_name(level));
        s_puts(&l, " ");
        s_put_text(&l, s_comp);
        s_puts(&l, ": ");
        s_put_text(&l, msg);
    }
    if (l.cut || n >= (int)sizeof msg) {
        memcpy(buf + l.len, "...", 3);
        l.len += 3;
    }
    memcpy(buf + l.len, tail, strlen(tail));
    l.len += strlen(tail);
    s_write_all(__atomic_load_n(&s_fd, __ATOMIC_RELAXED), buf, l.len);
    errno = saved_errno;
}
