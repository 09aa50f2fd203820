/* itest.h -- support for the integration tests (tests/integration/): real
 * sluice-node and helper processes on loopback, every one of them killed at
 * the end of a test or of the program (also when an assertion fails), a
 * scratch directory for record files, the record files' format, a set of
 * job ids, and polling with deadlines instead of sleeping.
 *
 * Include after testlib.h (which brings cmocka). The node is started with
 * clients/testsupport (sl_testnode_*); helper programs (itest_consumer,
 * itest_producer, the sluice CLI) with it_spawn. */
#ifndef SLUICE_ITEST_H
#define SLUICE_ITEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "sluice/client.h"
#include "testnode.h"

/* --- processes --------------------------------------------------------- */

/* Start argv (argv[0] a path) in the background with stdin from /dev/null
 * and stdout, stderr inherited, or stdout into a pipe when out_fd is not
 * NULL (*out_fd then the read end, caller closes). The child gets SIGKILL
 * if this process dies, and is killed by it_kill_all. Returns the pid, or
 * fails the test. */
pid_t it_spawn(char *const argv[], int *out_fd);

/* Remember pid (a process this test started some other way) so that
 * it_kill_all kills it. */
void it_track(pid_t pid);

/* Wait up to timeout_ms for pid to exit. Returns its wait status, or -1 if
 * it is still running. The pid is forgotten once reaped. */
int it_wait_exit(pid_t pid, int64_t timeout_ms);

/* Send sig to pid and wait up to timeout_ms; SIGKILL after that. Returns
 * the wait status. */
int it_stop(pid_t pid, int sig, int64_t timeout_ms);

/* SIGKILL and reap every process still tracked. Registered with atexit the
 * first time a process is tracked; the test groups' teardown calls it too. */
void it_kill_all(void);

/* Resident memory of pid in KiB (VmRSS in /proc/<pid>/status), -1 if gone. */
long it_rss_kib(pid_t pid);

/* --- paths and binaries ------------------------------------------------ */

/* Paths of the programs under test, baked in by CMake. */
const char *it_node_bin(void);
const char *it_cli_bin(void);
const char *it_consumer_bin(void);
const char *it_producer_bin(void);
/* sluice-coordinator, or NULL when the build has none. */
const char *it_coord_bin(void);

/* A fresh scratch directory for this test (caller must not free); removed
 * by it_scratch_cleanup when the test passed, kept (and named on stderr)
 * when it failed. */
const char *it_scratch(void);
void it_scratch_cleanup(bool passed);

/* it_scratch()/name in buf (size PATH_MAX). */
char *it_path(char *buf, const char *name);

/* SLUICE_SOAK=1 in the environment: run the long variants. */
bool it_soak(void);

/* Milliseconds on CLOCK_MONOTONIC (comparable across processes on one
 * machine) and on the wall clock. */
int64_t it_mono_ms(void);
int64_t it_wall_ms(void);

/* --- a test's resources ------------------------------------------------- */

/* What one test holds; it_teardown frees whatever is set, kills every
 * process and removes the scratch directory if `passed` was set. Use with
 * cmocka_unit_test_setup_teardown(fn, it_setup, it_teardown). */
typedef struct {
    sl_testnode_t node;
    sl_client_t *client;
    bool passed;
} it_ctx_t;

int it_setup(void **state);
int it_teardown(void **state);

/* --- the node ------------------------------------------------------------ */

/* Start sluice-node on tcp://127.0.0.1:0 with the extra arguments
 * (NULL-terminated) and wait for its "listening" line. Tracked for
 * it_kill_all. Fails the test if it does not come up. */
void it_node_start(sl_testnode_t *n, const char *const *extra);

/* Start sluice-coordinator on tcp://127.0.0.1:0 with the extra arguments
 * and wait for its "listening" line (the same as a node's). Tracked for
 * it_kill_all. */
void it_coord_start(sl_testnode_t *c, const char *const *extra);

/* A client of the node that has heard from it (heartbeat 100 ms). Caller
 * owns: sl_client_destroy. */
sl_client_t *it_client(const char *endpoint);

/* Stats of one queue; fails the test if the node does not answer in 10 s. */
sl_queue_stats_t it_stats(sl_client_t *c, const char *queue);

/* The same, but all zero while the node has no such queue yet. */
sl_queue_stats_t it_stats_or_zero(sl_client_t *c, const char *queue);

/* Poll the stats of queue every 20 ms until cond (an expression over `st`;
 * all zero while the queue does not exist) holds; fail after timeout_ms.
 * Evaluates to the last stats. */
#define IT_WAIT_STATS(c, queue, timeout_ms, cond)                                          \
    ({                                                                                     \
        int64_t end__ = it_mono_ms() + (timeout_ms);                                       \
        sl_queue_stats_t st;                                                               \
        for (;;) {                                                                         \
            st = it_stats_or_zero((c), (queue));                                           \
            if (cond)                                                                      \
                break;                                                                     \
            if (it_mono_ms() > end__)                                                      \
                fail_msg("%s: not true within %d ms (depth %llu delayed %llu in-flight "  \
                         "%llu acked %llu dead %llu dropped %llu consumers %u)",           \
                         #cond, (int)(timeout_ms), (unsigned long long)st.depth,           \
                         (unsigned long long)st.delayed, (unsigned long long)st.in_flight, \
                         (unsigned long long)st.acked, (unsigned long long)st.dead,        \
                         (unsigned long long)st.dropped, st.consumers);                   \
            it_sleep_ms(20);                                                               \
        }                                                                                  \
        st;                                                                                \
    })

/* Poll an expression every 10 ms until it holds, or fail after timeout_ms. */
#define IT_WAIT_TRUE(timeout_ms, cond)                                                     \
    do {                                                                                   \
        int64_t end__ = it_mono_ms() + (timeout_ms);                                       \
        while (!(cond)) {                                                                  \
            if (it_mono_ms() > end__)                                                      \
                fail_msg("%s: not true within %d ms", #cond, (int)(timeout_ms));           \
            it_sleep_ms(10);                                                               \
        }                                                                                  \
    } while (0)

/* Sleep between two polls (never as a way to wait for an event). */
void it_sleep_ms(int64_t ms);

/* --- helper processes ---------------------------------------------------- */

/* Start itest_consumer / itest_producer in the background (tracked, see
 * it_spawn) with --endpoint, --queue, --record and the extra arguments
 * (NULL-terminated, may be NULL). Returns the pid. */
pid_t it_consumer(const char *endpoint, const char *queue, const char *record,
                  const char *const *extra);

pid_t it_producer(const char *endpoint, const char *queue, const char *record,
                  const char *const *extra);

/* Run the sluice CLI with --endpoint and args (NULL-terminated) up to
 * timeout_ms; *out (caller frees) gets what it printed. Returns its exit
 * status (see sl_testproc_run). */
int it_cli(const char *endpoint, const char *const *args, int timeout_ms, char **out);

/* --- record files -------------------------------------------------------- */

/* One line of a record file. The consumer writes
 *   <event> <id hex> <attempt> <pid> <recv wall ms> <recv mono ms> <created ms> <payload>
 * with event done (handled, about to ack), fail (about to fail), hang (will
 * never finish); the producer writes
 *   <status> <id hex> <seq> 0 <wall ms> <mono ms> 0 <payload>
 * with status accepted, duplicate, rejected, timeout or error. Lines
 * starting with '#' are summaries ("# max_outstanding 5"). */
typedef struct {
    char event[16];
    uint8_t id[SL_ID_LEN];
    long attempt;                 /* consumer: attempt; producer: seq   */
    long pid;
    int64_t wall_ms, mono_ms, created_ms;
    char payload[64];
} it_rec_t;

/* Read every record line of path into *recs (caller frees). Returns the
 * number read (0 if the file does not exist). */
size_t it_records(const char *path, it_rec_t **recs);

/* Count the lines of path that start with event ("" counts all records). */
size_t it_count(const char *path, const char *event);

/* The value of a "# key N" summary line in path, or -1. */
long it_summary(const char *path, const char *key);

/* --- a set of job ids ---------------------------------------------------- */

typedef struct it_idset it_idset_t;

/* An empty set sized for about n ids. Caller owns: it_idset_destroy. */
it_idset_t *it_idset_new(size_t n);
void it_idset_destroy(it_idset_t **self_p);

/* Add one to id's count (inserting it at 0 first); returns the new count. */
int it_idset_add(it_idset_t *self, const uint8_t id[SL_ID_LEN], int tag);

/* id's count, 0 when absent; *tag (may be NULL) gets the tag of its first
 * insertion. */
int it_idset_count(const it_idset_t *self, const uint8_t id[SL_ID_LEN], int *tag);

/* Number of distinct ids. */
size_t it_idset_size(const it_idset_t *self);

#endif
