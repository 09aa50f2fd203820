/* testnode.h -- for the client tests: run a real sluice-node on a loopback
 * port, stop or kill and restart it, and run any program (the CLI) with a
 * deadline, capturing what it prints. Nothing here sleeps for a fixed time:
 * readiness is the node's "listening" line, exits are waited for with a
 * deadline. */
#ifndef SLUICE_TESTNODE_H
#define SLUICE_TESTNODE_H

#include <stdint.h>
#include <sys/types.h>

#define SL_TESTNODE_ARGS_MAX 24

typedef struct {
    const char *bin;
    pid_t pid;                 /* 0 when not running                      */
    int port;
    char endpoint[64];         /* tcp://127.0.0.1:PORT                   */
    uint64_t epoch;            /* from the node's "listening" line        */
    int out_fd;                /* the node's stdout                       */
    char *args[SL_TESTNODE_ARGS_MAX]; /* extra arguments, owned          */
    int nargs;
} sl_testnode_t;

/* A loopback TCP port nobody listens on right now (bind port 0, read it,
 * close). */
int sl_testnode_free_port(void);

/* Start bin listening on 127.0.0.1:port (0: the node picks a free port)
 * with the extra arguments (NULL-terminated list, may be NULL), and wait up
 * to 10 s for its "listening" line. 0 on success, -1 on failure (message on
 * stderr). */
int sl_testnode_start(sl_testnode_t *n, const char *bin, int port, const char *const *extra);

/* Send sig (SIGTERM: graceful, SIGKILL: crash) and reap the node, killing
 * it outright if it has not exited after 10 s. Returns its wait status. */
int sl_testnode_stop(sl_testnode_t *n, int sig);

/* Start the node again on the same port with the same arguments (after
 * sl_testnode_stop). 0 or -1. */
int sl_testnode_restart(sl_testnode_t *n);

/* Stop if running and free the arguments. */
void sl_testnode_release(sl_testnode_t *n);

/* Run argv (argv[0] a path) with `input` (may be NULL) on its stdin,
 * stdout and stderr captured together into *out (caller frees, NUL
 * terminated). Waits up to timeout_ms, then kills it. Returns the exit
 * status (0..255), 128+signal if killed by a signal, -1 if it could not be
 * started, -2 on timeout. extra_env: NULL-terminated "K=V" list or NULL. */
int sl_testproc_run(char *const argv[], const char *const *extra_env, const char *input,
                    int timeout_ms, char **out);

#endif
