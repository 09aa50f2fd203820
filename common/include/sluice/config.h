/* config.h -- one table of options per daemon, loaded from flags,
 * environment and a config file.
 *
 * A daemon declares every option once, with its type, bounds, default,
 * environment variable and help, and points it at its storage:
 *
 *   static int64_t max_frame;
 *   static sl_conf_opt_t s_opts[] = {
 *       {"max-frame", SL_CONF_INT, "1048576", "SLUICE_MAX_FRAME",
 *        "largest envelope accepted, in bytes", .min = 64, .max = 64 << 20,
 *        .store = &max_frame},
 *       {0},
 *   };
 *
 * Precedence, highest first: `--name value` / `--name=value` flags, the
 * environment, the file named by `--config FILE` (lines `name value`,
 * `#` comments), the default. */
#ifndef SLUICE_CONFIG_H
#define SLUICE_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <signal.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    SL_CONF_INT,        /* int64_t; bounds min..max; "64k", "1m", "2g" (KiB..) */
    SL_CONF_BOOL,       /* bool; true/false, yes/no, on/off, 1/0 */
    SL_CONF_STRING,     /* char *; see sl_config_release for ownership */
    SL_CONF_ENUM,       /* int: index of the value in `values` */
    SL_CONF_DURATION,   /* int64_t milliseconds; "250", "250ms", "2s", "5m",
                           "1h"; bounds min..max in ms */
} sl_conf_type_t;

typedef struct {
    const char *name;           /* "max-frame": the flag, the file key */
    sl_conf_type_t type;
    const char *def;            /* default, as text; NULL = "" (strings)
                                   and parsed like any other source */
    const char *env;            /* "SLUICE_MAX_FRAME", or NULL: no env var */
    const char *help;           /* one line, lowercase */
    int64_t min, max;           /* INT, DURATION: inclusive bounds; both 0
                                   means unbounded */
    const char *const *values;  /* ENUM: NULL-terminated allowed values */
    void *store;                /* int64_t*, bool*, char**, int* per type */
} sl_conf_opt_t;

/* sl_config_load returned this (positive) after printing the help. */
#define SL_CONFIG_HELP 1

/* Load every option of `table` (terminated by an entry whose name is NULL)
 * from argv[1..argc-1], the environment and the `--config FILE` file, in
 * that precedence, falling back to each default. All values are parsed and
 * checked before any storage is written: on error nothing is changed.
 *
 * Returns 0; SL_CONFIG_HELP when argv holds `--help` or `-h` (the table was
 * printed to stdout, nothing loaded); SL_ECONFIG for an unknown option, a
 * missing value, a value out of bounds or not allowed, an unreadable file;
 * SL_ENOMEM. On SL_ECONFIG, *err_msg (when err_msg is not NULL) is a
 * caller-owned string (free()) naming the option, the source and the bound,
 * e.g. "--max-frame: 10 is below the minimum 64"; otherwise it is NULL. */
int sl_config_load(sl_conf_opt_t *table, int argc, char **argv,
                   char **err_msg);

/* The start of a daemon's main(): sl_config_load, then SIGTERM and SIGINT
 * blocked in the calling thread (threads made later inherit the mask;
 * sigwait on *sigs takes them) and SIGPIPE ignored. Returns -1 to go on,
 * else the status main should exit with: 0 after --help, 2 after a bad
 * option (said on stderr as "prog: why"). */
int sl_config_daemon(sl_conf_opt_t *table, const char *prog, int argc, char **argv,
                     sigset_t *sigs);

/* Print usage and one entry per option (name, type and bounds, default,
 * env var, help) to `out`. `prog` may be NULL. */
void sl_config_print_help(const sl_conf_opt_t *table, const char *prog,
                          FILE *out);

/* Free the strings sl_config_load stored in SL_CONF_STRING options and set
 * those stores to NULL. String stores must start NULL (or hold a string of
 * an earlier load): a new load frees the value it replaces. */
void sl_config_release(sl_conf_opt_t *table);

/* The text form of an option's current stored value into buf ("1048576",
 * "true", "drop-new", "2500"): for logging the effective configuration.
 * Returns buf. */
const char *sl_config_value_str(const sl_conf_opt_t *opt, char *buf,
                                size_t len);

#ifdef __cplusplus
}
#endif
#endif
