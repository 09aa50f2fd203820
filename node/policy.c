/* policy.c -- queue policies (policy.h): parsing and printing specs. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy.h"
#include "sluice/name.h"

/* The overflow policies, by sl_overflow_t: the one table of their names. */
static const char *const s_overflow[] = {"block", "drop-new", "drop-oldest"};

void sl__policy_from_opts(sl__policy_t *p, const sl_node_opts_t *o)
{
    p->overflow = o->overflow;
    p->max_length = (int64_t)o->max_length;
    p->max_attempts = o->max_attempts;
    p->backoff_base_ms = o->backoff_base_ms;
    p->backoff_max_ms = o->backoff_max_ms;
    p->max_dead = (int64_t)o->max_dead;
}

/* A count with an optional binary suffix, or a duration in ms. */
static int s_number(const char *v, bool ms, int64_t *out)
{
    errno = 0;
    char *end;
    long long x = strtoll(v, &end, 10);
    if (end == v || errno || x < 0)
        return -1;
    int64_t mul = 1;
    if (ms) {
        if (!*end || strcmp(end, "ms") == 0)
            mul = 1;
        else if (strcmp(end, "s") == 0)
            mul = 1000;
        else if (strcmp(end, "m") == 0)
            mul = 60000;
        else if (strcmp(end, "h") == 0)
            mul = 3600000;
        else
            return -1;
    } else if (*end) {
        if (end[1])
            return -1;
        switch (*end) {
        case 'k': mul = 1024; break;
        case 'm': mul = 1024 * 1024; break;
        case 'g': mul = 1024 * 1024 * 1024; break;
        default: return -1;
        }
    }
    if (x > INT64_MAX / mul)
        return -1;
    *out = x * mul;
    return 0;
}

static int s_set(sl__policy_t *p, const char *key, const char *val, char *why, size_t size)
{
    int64_t v = 0;
#define SL__POLICY_SET(k, field, kind, lo, hi)                                                 \
    if (strcmp(key, k) == 0) {                                                                 \
        if (strcmp(#kind, "OVERFLOW") == 0) {                                                  \
            v = -1;                                                                            \
            for (int i = 0; i < 3; i++)                                                        \
                if (strcmp(val, s_overflow[i]) == 0)                                           \
                    v = i;                                                                     \
            if (v < 0) {                                                                       \
                snprintf(why, size, "%s: '%s' is not block, drop-new or drop-oldest", k, val); \
                return -1;                                                                     \
            }                                                                                  \
        } else if (s_number(val, strcmp(#kind, "MS") == 0, &v) != 0) {                         \
            snprintf(why, size, "%s: '%s' is not a %s", k, val,                                \
                     strcmp(#kind, "MS") == 0 ? "duration (ms, s, m, h)" : "number");          \
            return -1;                                                                         \
        }                                                                                      \
        if (v < (lo) || v > (hi)) {                                                            \
            snprintf(why, size, "%s: %lld is outside %lld..%lld", k, (long long)v,              \
                     (long long)(lo), (long long)(hi));                                        \
            return -1;                                                                         \
        }                                                                                      \
        p->field = v;                                                                          \
        return 0;                                                                              \
    }
    SL__POLICY_FIELDS(SL__POLICY_SET)
#undef SL__POLICY_SET
    snprintf(why, size, "unknown policy key '%.64s'", key);
    return -1;
}

int sl__policy_parse(sl__policy_t *p, const char *spec, char *why, size_t size)
{
    sl__policy_t np = *p;
    char *copy = strdup(spec ? spec : "");
    if (!copy) {
        snprintf(why, size, "out of memory");
        return -1;
    }
    int rc = 0;
    char *save = NULL;
    for (char *kv = strtok_r(copy, ",", &save); kv && rc == 0; kv = strtok_r(NULL, ",", &save)) {
        while (*kv == ' ')
            kv++;
        if (!*kv)
            continue;
        char *eq = strchr(kv, '=');
        if (!eq) {
            snprintf(why, size, "'%.64s': expected key=value", kv);
            rc = -1;
            break;
        }
        *eq = '\0';
        rc = s_set(&np, kv, eq + 1, why, size);
    }
    free(copy);
    if (rc == 0 && np.backoff_max_ms < np.backoff_base_ms) {
        snprintf(why, size, "backoff-max %lld is below backoff-base %lld",
                 (long long)np.backoff_max_ms, (long long)np.backoff_base_ms);
        rc = -1;
    }
    if (rc == 0)
        *p = np;
    return rc;
}

void sl__policy_format(const sl__policy_t *p, char *buf, size_t size)
{
    size_t k = 0;
    buf[0] = '\0';
#define SL__POLICY_FMT(key, field, kind, lo, hi)                                           \
    if (k < size) {                                                                        \
        if (strcmp(#kind, "OVERFLOW") == 0)                                                \
            k += (size_t)snprintf(buf + k, size - k, "%s%s=%s", k ? "," : "", key,         \
                                  s_overflow[p->field >= 0 && p->field < 3 ? p->field : 0]); \
        else                                                                               \
            k += (size_t)snprintf(buf + k, size - k, "%s%s=%lld%s", k ? "," : "", key,     \
                                  (long long)p->field, strcmp(#kind, "MS") == 0 ? "ms" : ""); \
    }
    SL__POLICY_FIELDS(SL__POLICY_FMT)
#undef SL__POLICY_FMT
}

int sl__policy_each(const char *queues, int (*fn)(const char *name, const char *spec, void *arg),
                    void *arg, char *why, size_t size)
{
    char *copy = strdup(queues ? queues : "");
    if (!copy) {
        snprintf(why, size, "out of memory");
        return -1;
    }
    int rc = 0;
    char *save = NULL;
    for (char *e = strtok_r(copy, ";", &save); e && rc == 0; e = strtok_r(NULL, ";", &save)) {
        while (*e == ' ')
            e++;
        if (!*e)
            continue;
        char *colon = strchr(e, ':');
        /* A queue name may hold ':' itself: the spec starts after the last
         * ':' that is followed by a key=value. */
        for (char *c = colon; c; c = strchr(c + 1, ':'))
            if (strchr(c + 1, '=') && !strchr(c + 1, ':'))
                colon = c;
        if (!colon) {
            snprintf(why, size, "'%.64s': expected NAME:key=value,...", e);
            rc = -1;
            break;
        }
        *colon = '\0';
        if (!sl_queue_name_ok_str(e)) {
            snprintf(why, size, "'%.64s': invalid queue name (" SL_QUEUE_NAME_RULE ")", e);
            rc = -1;
            break;
        }
        rc = fn(e, colon + 1, arg);
    }
    free(copy);
    return rc;
}
