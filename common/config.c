/* config.c -- load an option table from defaults, a file, the environment
 * and flags (in rising precedence); print it for --help.
 *
 * Every value is parsed into a scratch copy of the table first and written
 * to the daemon's storage only when all of them were good, so a failed load
 * leaves the previous configuration whole. */
#define _GNU_SOURCE     /* vasprintf */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sluice/config.h"
#include "sluice/error.h"

/* A parsed value waiting to be committed. */
typedef struct {
    int64_t i;
    bool b;
    int e;
    char *s;        /* owned until committed */
} s_val_t;

typedef struct {
    sl_conf_opt_t *table;
    size_t n;
    s_val_t *vals;
    char **err_msg;
} s_load_t;

static const char *const s_type_names[] = {
    [SL_CONF_INT] = "int",
    [SL_CONF_BOOL] = "bool",
    [SL_CONF_STRING] = "string",
    [SL_CONF_ENUM] = "enum",
    [SL_CONF_DURATION] = "duration-ms",
};

__attribute__((format(printf, 2, 3)))
static int s_fail(s_load_t *ld, const char *fmt, ...)
{
    if (!ld->err_msg || *ld->err_msg)
        return SL_ECONFIG;      /* keep the first error */
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(ld->err_msg, fmt, ap) < 0)
        *ld->err_msg = NULL;
    va_end(ap);
    return SL_ECONFIG;
}

static bool s_bounded(const sl_conf_opt_t *o)
{
    return o->min != 0 || o->max != 0;
}

static sl_conf_opt_t *s_find(s_load_t *ld, const char *name, size_t len)
{
    for (size_t i = 0; i < ld->n; i++)
        if (strlen(ld->table[i].name) == len &&
            memcmp(ld->table[i].name, name, len) == 0)
            return &ld->table[i];
    return NULL;
}

/* ---- value parsers ---------------------------------------------------- */

/* Parse a decimal integer followed by nothing or by one of `units`
 * (NULL-terminated name/multiplier pairs, case-insensitive). */
typedef struct {
    const char *name;
    int64_t mul;
} s_unit_t;

static int s_parse_scaled(const char *text, const s_unit_t *units, int64_t *out)
{
    const char *p = text;
    while (isspace((unsigned char)*p))
        p++;
    if (!*p)
        return -1;
    char *end;
    errno = 0;
    long long v = strtoll(p, &end, 10);
    if (end == p)
        return -1;
    if (errno == ERANGE)
        return -2;
    while (isspace((unsigned char)*end))
        end++;
    size_t ulen = strlen(end);
    while (ulen > 0 && isspace((unsigned char)end[ulen - 1]))
        ulen--;
    int64_t mul = 1;
    if (ulen > 0) {
        const s_unit_t *u = units;
        while (u && u->name &&
               !(strlen(u->name) == ulen && strncasecmp(u->name, end, ulen) == 0))
            u++;
        if (!u || !u->name)
            return -1;
        mul = u->mul;
    }
    if (__builtin_mul_overflow((int64_t)v, mul, out))
        return -2;
    return 0;
}

static const s_unit_t s_size_units[] = {
    {"k", 1LL << 10}, {"kb", 1LL << 10}, {"kib", 1LL << 10},
    {"m", 1LL << 20}, {"mb", 1LL << 20}, {"mib", 1LL << 20},
    {"g", 1LL << 30}, {"gb", 1LL << 30}, {"gib", 1LL << 30},
    {NULL, 0},
};

static const s_unit_t s_time_units[] = {
    {"ms", 1}, {"s", 1000}, {"m", 60000}, {"min", 60000},
    {"h", 3600000}, {"d", 86400000},
    {NULL, 0},
};

static int s_parse_bool(const char *text, bool *out)
{
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(text, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(text, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return -1;
}

static void s_enum_list(const sl_conf_opt_t *o, char *buf, size_t len)
{
    size_t at = 0;
    buf[0] = '\0';
    for (size_t i = 0; o->values && o->values[i] && at < len; i++)
        at += (size_t)snprintf(buf + at, len - at, "%s%s", i ? "|" : "",
                               o->values[i]);
}

/* Parse `text` for option o into v. `src` names where it came from, for
 * the error message ("--max-frame", "max-frame (env SLUICE_MAX_FRAME)"). */
static int s_parse(s_load_t *ld, const sl_conf_opt_t *o, const char *text,
                   const char *src, s_val_t *v)
{
    int rc;
    switch (o->type) {
    case SL_CONF_INT:
    case SL_CONF_DURATION: {
        bool dur = o->type == SL_CONF_DURATION;
        int64_t x;
        rc = s_parse_scaled(text, dur ? s_time_units : s_size_units, &x);
        if (rc == -1)
            return s_fail(ld, "%s: '%s' is not %s", src, text,
                          dur ? "a duration (e.g. 250ms, 2s, 5m, 1h)"
                              : "an integer (e.g. 100, 64k, 1m)");
        if (rc == -2)
            return s_fail(ld, "%s: '%s' is out of range", src, text);
        if (s_bounded(o) && x < o->min)
            return s_fail(ld, "%s: %s is below the minimum %" PRId64 "%s",
                          src, text, o->min, dur ? " ms" : "");
        if (s_bounded(o) && x > o->max)
            return s_fail(ld, "%s: %s is above the maximum %" PRId64 "%s",
                          src, text, o->max, dur ? " ms" : "");
        v->i = x;
        return SL_OK;
    }
    case SL_CONF_BOOL:
        if (s_parse_bool(text, &v->b) != 0)
            return s_fail(ld, "%s: '%s' is not a boolean "
                          "(true/false, yes/no, on/off, 1/0)", src, text);
        return SL_OK;
    case SL_CONF_STRING: {
        char *s = strdup(text);
        if (!s)
            return SL_ENOMEM;
        free(v->s);
        v->s = s;
        return SL_OK;
    }
    case SL_CONF_ENUM:
        for (int i = 0; o->values && o->values[i]; i++) {
            if (strcmp(text, o->values[i]) == 0) {
                v->e = i;
                return SL_OK;
            }
        }
        char list[512];
        s_enum_list(o, list, sizeof list);
        return s_fail(ld, "%s: '%s' is not one of %s", src, text, list);
    }
    return s_fail(ld, "%s: option has an unknown type %d", src, (int)o->type);
}

static int s_apply(s_load_t *ld, sl_conf_opt_t *o, const char *text,
                   const char *src)
{
    return s_parse(ld, o, text, src, &ld->vals[o - ld->table]);
}

/* ---- sources ---------------------------------------------------------- */

static char *s_trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

static int s_load_file(s_load_t *ld, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return s_fail(ld, "--config: cannot read '%s': %s", path,
                      strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    int rc = SL_OK;
    for (int lineno = 1; rc == SL_OK && getline(&line, &cap, f) >= 0; lineno++) {
        char *s = s_trim(line);
        if (*s == '\0' || *s == '#')
            continue;
        size_t klen = strcspn(s, " \t=");
        char *val = s + klen;
        while (isspace((unsigned char)*val))
            val++;
        if (*val == '=')
            val = s_trim(val + 1);
        size_t vlen = strlen(val);
        if (vlen >= 2 && val[0] == '"' && val[vlen - 1] == '"') {
            val[vlen - 1] = '\0';       /* "quoted value" keeps its spaces */
            val++;
        }
        sl_conf_opt_t *o = s_find(ld, s, klen);
        s[klen] = '\0';
        char src[512];
        snprintf(src, sizeof src, "%s (%s:%d)", s, path, lineno);
        if (!o) {
            rc = s_fail(ld, "%s: unknown option '%s'", src, s);
        } else if (*val == '\0' && o->type == SL_CONF_BOOL) {
            rc = s_apply(ld, o, "true", src);   /* a bare bool name is on */
        } else if (*val == '\0' && o->type != SL_CONF_STRING) {
            rc = s_fail(ld, "%s: missing value", src);
        } else {
            rc = s_apply(ld, o, val, src);
        }
    }
    free(line);
    fclose(f);
    return rc;
}

static int s_load_env(s_load_t *ld)
{
    for (size_t i = 0; i < ld->n; i++) {
        sl_conf_opt_t *o = &ld->table[i];
        const char *val = o->env ? getenv(o->env) : NULL;
        if (!val || !*val)      /* FOO= in a compose file means unset */
            continue;
        char src[256];
        snprintf(src, sizeof src, "%s (env %s)", o->name, o->env);
        int rc = s_apply(ld, o, val, src);
        if (rc != SL_OK)
            return rc;
    }
    return SL_OK;
}

/* One flag: its option and value (borrowed from argv or a default). */
typedef struct {
    sl_conf_opt_t *opt;
    const char *val;
} s_flag_t;

/* Walk argv once: find --config, resolve every flag to its option and
 * value. flags has room for argc entries. */
static int s_scan_argv(s_load_t *ld, int argc, char **argv, s_flag_t *flags,
                       size_t *nflags, const char **config)
{
    *nflags = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) != 0 || a[2] == '\0')
            return s_fail(ld, "unexpected argument '%s' (options are "
                          "--name value or --name=value)", a);
        const char *name = a + 2;
        const char *eq = strchr(name, '=');
        size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
        const char *val = eq ? eq + 1 : NULL;
        bool is_config = nlen == 6 && memcmp(name, "config", 6) == 0;
        sl_conf_opt_t *o = is_config ? NULL : s_find(ld, name, nlen);
        if (!is_config && !o)
            return s_fail(ld, "unknown option '--%.*s'", (int)nlen, name);
        if (!val) {
            const char *next = i + 1 < argc ? argv[i + 1] : NULL;
            bool b;
            if (o && o->type == SL_CONF_BOOL) {
                /* `--json` alone means on; `--json false` is taken too */
                if (next && s_parse_bool(next, &b) == 0) {
                    val = next;
                    i++;
                } else {
                    val = "true";
                }
            } else if (!next || strncmp(next, "--", 2) == 0) {
                /* a value starting with "--" must use --name=--value */
                return s_fail(ld, "--%.*s: missing value", (int)nlen, name);
            } else {
                val = next;
                i++;
            }
        }
        if (is_config)
            *config = val;
        else
            flags[(*nflags)++] = (s_flag_t){o, val};
    }
    return SL_OK;
}

static void s_commit(s_load_t *ld)
{
    for (size_t i = 0; i < ld->n; i++) {
        sl_conf_opt_t *o = &ld->table[i];
        s_val_t *v = &ld->vals[i];
        if (!o->store)
            continue;
        switch (o->type) {
        case SL_CONF_INT:
        case SL_CONF_DURATION: *(int64_t *)o->store = v->i; break;
        case SL_CONF_BOOL: *(bool *)o->store = v->b; break;
        case SL_CONF_ENUM: *(int *)o->store = v->e; break;
        case SL_CONF_STRING:
            free(*(char **)o->store);
            *(char **)o->store = v->s;
            v->s = NULL;
            break;
        }
    }
}

int sl_config_load(sl_conf_opt_t *table, int argc, char **argv,
                   char **err_msg)
{
    s_load_t ld = {table, 0, NULL, err_msg};
    if (err_msg)
        *err_msg = NULL;
    while (table[ld.n].name)
        ld.n++;
    ld.vals = calloc(ld.n ? ld.n : 1, sizeof *ld.vals);
    s_flag_t *flags = calloc(argc > 0 ? (size_t)argc : 1, sizeof *flags);
    int rc = SL_OK;
    if (!ld.vals || !flags) {
        rc = SL_ENOMEM;
        goto out;
    }

    const char *config = NULL;
    bool help = false;
    size_t nflags = 0;
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            help = true;
    if (!help)
        rc = s_scan_argv(&ld, argc, argv, flags, &nflags, &config);
    if (help) {
        /* --help wins over any mistake elsewhere on the command line */
        sl_config_print_help(table, argc > 0 ? argv[0] : NULL, stdout);
        fflush(stdout);
        rc = SL_CONFIG_HELP;
        goto out;
    }
    if (rc != SL_OK)
        goto out;

    /* defaults < file < environment < flags: later writes win */
    for (size_t i = 0; i < ld.n && rc == SL_OK; i++) {
        char src[256];
        snprintf(src, sizeof src, "%s (default)", table[i].name);
        const char *def = table[i].def;
        if (!def && table[i].type == SL_CONF_ENUM && table[i].values)
            def = table[i].values[0];
        rc = s_apply(&ld, &table[i], def ? def : "", src);
    }
    if (rc == SL_OK && config)
        rc = s_load_file(&ld, config);
    if (rc == SL_OK)
        rc = s_load_env(&ld);
    for (size_t i = 0; i < nflags && rc == SL_OK; i++) {
        char src[256];
        snprintf(src, sizeof src, "--%s", flags[i].opt->name);
        rc = s_apply(&ld, flags[i].opt, flags[i].val, src);
    }
    if (rc == SL_OK)
        s_commit(&ld);

out:
    if (ld.vals)
        for (size_t i = 0; i < ld.n; i++)
            free(ld.vals[i].s);
    free(ld.vals);
    free(flags);
    if (rc == SL_ENOMEM && err_msg) {
        free(*err_msg);
        *err_msg = NULL;
    }
    return rc;
}

void sl_config_release(sl_conf_opt_t *table)
{
    for (sl_conf_opt_t *o = table; o->name; o++) {
        if (o->type == SL_CONF_STRING && o->store) {
            free(*(char **)o->store);
            *(char **)o->store = NULL;
        }
    }
}

const char *sl_config_value_str(const sl_conf_opt_t *o, char *buf, size_t len)
{
    if (len == 0)
        return buf;
    buf[0] = '\0';
    if (!o->store)
        return buf;
    switch (o->type) {
    case SL_CONF_INT:
    case SL_CONF_DURATION:
        snprintf(buf, len, "%" PRId64, *(const int64_t *)o->store);
        break;
    case SL_CONF_BOOL:
        snprintf(buf, len, "%s", *(const bool *)o->store ? "true" : "false");
        break;
    case SL_CONF_ENUM: {
        int e = *(const int *)o->store;
        int n = 0;
        while (o->values && o->values[n])
            n++;
        snprintf(buf, len, "%s", e >= 0 && e < n ? o->values[e] : "?");
        break;
    }
    case SL_CONF_STRING: {
        const char *s = *(char *const *)o->store;
        snprintf(buf, len, "%s", s ? s : "");
        break;
    }
    }
    return buf;
}

void sl_config_print_help(const sl_conf_opt_t *table, const char *prog,
                          FILE *out)
{
    fprintf(out, "usage: %s [--config FILE] [--NAME VALUE | --NAME=VALUE ...]\n\n",
            prog ? prog : "sluice");
    fprintf(out, "flags override the environment, which overrides the config "
                 "file (lines 'NAME VALUE', # comments), which overrides the "
                 "default.\n\n");
    fprintf(out, "  --config FILE\n        read options from FILE\n");
    fprintf(out, "  --help\n        print this help and exit\n");
    for (const sl_conf_opt_t *o = table; o->name; o++) {
        char type[600];
        const char *tname = (unsigned)o->type < sizeof s_type_names / sizeof *s_type_names
                            && s_type_names[o->type] ? s_type_names[o->type] : "?";
        if (o->type == SL_CONF_ENUM) {
            char list[512];
            s_enum_list(o, list, sizeof list);
            snprintf(type, sizeof type, "enum %s", list);
        } else if ((o->type == SL_CONF_INT || o->type == SL_CONF_DURATION) &&
                   s_bounded(o)) {
            snprintf(type, sizeof type, "%s %" PRId64 "..%" PRId64, tname,
                     o->min, o->max);
        } else {
            snprintf(type, sizeof type, "%s", tname);
        }
        const char *def = o->def;
        if (!def && o->type == SL_CONF_ENUM && o->values)
            def = o->values[0];
        fprintf(out, "  --%s (%s; default \"%s\"; env %s)\n        %s\n", o->name,
                type, def ? def : "", o->env ? o->env : "-",
                o->help ? o->help : "");
    }
}

int sl_config_daemon(sl_conf_opt_t *table, const char *prog, int argc, char **argv,
                     sigset_t *sigs)
{
    char *msg = NULL;
    int rc = sl_config_load(table, argc, argv, &msg);
    if (rc == SL_CONFIG_HELP)
        return 0;
    if (rc != SL_OK) {
        fprintf(stderr, "%s: %s\n", prog, msg ? msg : sl_strerror(rc));
        free(msg);
        return 2;
    }
    sigemptyset(sigs);
    sigaddset(sigs, SIGTERM);
    sigaddset(sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    return -1;
}
