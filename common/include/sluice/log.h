/* log.h -- daemon logging: one macro, four levels, text or JSON lines.
 *
 * Libraries never log; daemons (node, coordinator) log through SL_LOG only.
 * Each record is one line written to the log fd (stderr) with one write(),
 * so lines from different threads never interleave:
 *
 *   2026-11-25T21:40:00.123Z info node: listening on "tcp://127.0.0.1:7450"
 *   {"ts":"2026-11-25T21:40:00.123Z","level":"info","comp":"node","msg":"..."}
 *
 * Messages are lowercase and quote their subject. A record longer than
 * SL_LOG_LINE_MAX is cut and ends in "...". */
#ifndef SLUICE_LOG_H
#define SLUICE_LOG_H

#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    SL_LOG_DEBUG = 0,
    SL_LOG_INFO = 1,
    SL_LOG_WARN = 2,
    SL_LOG_ERROR = 3,
} sl_log_level_t;

#define SL_LOG_LINE_MAX 4096

/* Log a printf-style message at `level`. When `level` is below the
 * threshold, neither the format nor the arguments are evaluated, so a debug
 * line with an expensive argument costs one load and one compare. */
#define SL_LOG(level, ...)                                                   \
    do {                                                                     \
        int sl__lv = (int)(level);                                           \
        if (sl__lv >= sl__log_threshold())                                   \
            sl__log(sl__lv, __VA_ARGS__);                                    \
    } while (0)

/* Internal: the threshold SL_LOG compares against, and the writer. */
extern int sl__log_level;
static inline int sl__log_threshold(void)
{
    return __atomic_load_n(&sl__log_level, __ATOMIC_RELAXED);
}
void sl__log(int level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Set the component name written on every line ("node", "coordinator";
 * copied, at most 31 bytes kept), the threshold and the format (json: one
 * JSON object per line). Call it before other threads log; it may be called
 * again then, e.g. once the configuration is loaded. Until it is called,
 * records go to stderr as text at level info with component "sluice". */
void sl_log_init(const char *component, sl_log_level_t level, bool json);

/* Change the threshold alone. Thread-safe. */
void sl_log_set_level(sl_log_level_t level);

/* The current threshold. Thread-safe. */
sl_log_level_t sl_log_level(void);

/* Send records to `fd` instead of stderr (2). The fd stays the caller's;
 * used by tests and by daemons that log to a file. Thread-safe. */
void sl_log_set_fd(int fd);

/* "debug", "info", "warn", "error"; "unknown" for anything else. Static. */
const char *sl_log_level_name(int level);

/* Parse a level name (as above, case-insensitive; "warning" accepted).
 * Returns 0, or SL_EINVAL for any other string. */
int sl_log_level_parse(const char *name, sl_log_level_t *out);

#ifdef __cplusplus
}
#endif
#endif
