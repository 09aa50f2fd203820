/* main.c -- the sluice-coordinator daemon: options, logging, signals
 * around an embedded coordinator (coord.h). SIGTERM or SIGINT stops it;
 * nothing it holds is durable, so stopping loses nothing. */
#define _GNU_SOURCE
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sluice/config.h"
#include "sluice/coord.h"
#include "sluice/log.h"

static char *o_endpoint, *o_id;
static int64_t o_heartbeat, o_grace, o_max_frame, o_max_nodes, o_max_consumers, o_max_watchers;
static bool o_log_json;
static int o_level;

static const char *const s_levels[] = {"debug", "info", "warn", "error", NULL};

static sl_conf_opt_t s_opts[] = {
    {"endpoint", SL_CONF_STRING, "tcp://127.0.0.1:7440", "SLUICE_COORD_ENDPOINT",
     "zeromq endpoint to bind (port 0: any free port)", .store = &o_endpoint},
    {"id", SL_CONF_STRING, "", "SLUICE_COORD_ID",
     "name in cluster views and logs (default host:pid)", .store = &o_id},
    {"heartbeat", SL_CONF_DURATION, "1s", "SLUICE_COORD_HEARTBEAT",
     "interval told to nodes and clients; consumers and watchers silent 3 intervals are gone",
     .min = 10, .max = 600000, .store = &o_heartbeat},
    {"grace", SL_CONF_DURATION, "-1", "SLUICE_COORD_GRACE",
     "after start, wait this long before answering joins and route requests "
     "(-1: 2 heartbeats)",
     .min = -1, .max = 3600000, .store = &o_grace},
    {"max-frame", SL_CONF_INT, "1m", "SLUICE_COORD_MAX_FRAME",
     "largest envelope accepted, in bytes", .min = 1024, .max = 256 << 20,
     .store = &o_max_frame},
    {"max-nodes", SL_CONF_INT, "4096", "SLUICE_COORD_MAX_NODES",
     "nodes known, dead ones included (the oldest dead one makes room)", .min = 1,
     .max = 1000000, .store = &o_max_nodes},
    {"max-consumers", SL_CONF_INT, "4096", "SLUICE_COORD_MAX_CONSUMERS",
     "consumers known, one per consumer id and queue", .min = 1, .max = 1000000,
     .store = &o_max_consumers},
    {"max-watchers", SL_CONF_INT, "4096", "SLUICE_COORD_MAX_WATCHERS",
     "route watchers known, one per client id and queue", .min = 1, .max = 1000000,
     .store = &o_max_watchers},
    {"log-level", SL_CONF_ENUM, "info", "SLUICE_LOG_LEVEL", "debug, info, warn or error",
     .values = s_levels, .store = &o_level},
    {"log-json", SL_CONF_BOOL, "false", "SLUICE_LOG_JSON", "log as JSON lines",
     .store = &o_log_json},
    {0},
};

/* Bad messages are logged at most once a second, with how many were not. */
static int64_t s_bad_logged_s;
static uint64_t s_bad_quiet;

static void s_bad_message(const char *detail)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    if (ts.tv_sec == s_bad_logged_s) {
        s_bad_quiet++;
        return;
    }
    s_bad_logged_s = ts.tv_sec;
    SL_LOG(SL_LOG_WARN, "bad message: %s (%" PRIu64 " more not logged)", detail, s_bad_quiet);
    s_bad_quiet = 0;
}

/* Runs on the coordinator's thread. */
static void s_on_event(void *arg, const sl_coord_event_t *ev)
{
    (void)arg;
    const char *s = ev->subject ? ev->subject : "";
    const char *q = ev->queue ? ev->queue : "";
    const char *d = ev->detail ? ev->detail : "";
    unsigned long long e = (unsigned long long)ev->epoch;
    switch (ev->type) {
    case SL_COORD_EV_NODE_JOINED:
        SL_LOG(SL_LOG_INFO, "node '%s' joined at '%s': epoch %016llx", s, d, e);
        break;
    case SL_COORD_EV_NODE_ADOPTED:
        SL_LOG(SL_LOG_INFO, "node '%s' at '%s' adopted with its epoch %016llx", s, d, e);
        break;
    case SL_COORD_EV_NODE_REJOINED:
        SL_LOG(SL_LOG_WARN, "node '%s' rejoined (%s): new epoch %016llx", s, d, e);
        break;
    case SL_COORD_EV_NODE_DEAD:
        SL_LOG(SL_LOG_WARN, "node '%s' declared dead after 3 silent intervals (epoch %016llx)",
               s, e);
        break;
    case SL_COORD_EV_CONSUMER_JOINED:
        SL_LOG(SL_LOG_INFO, "consumer '%s' joined queue '%s'", s, q);
        break;
    case SL_COORD_EV_CONSUMER_LEFT:
        SL_LOG(SL_LOG_INFO, "consumer '%s' left queue '%s'", s, q);
        break;
    case SL_COORD_EV_CONSUMER_EXPIRED:
        SL_LOG(SL_LOG_WARN, "consumer '%s' of queue '%s' expired after 3 silent intervals", s, q);
        break;
    case SL_COORD_EV_WATCHER_ADDED:
        SL_LOG(SL_LOG_DEBUG, "client '%s' watches the routes of queue '%s'", s, q);
        break;
    case SL_COORD_EV_WATCHER_EXPIRED:
        SL_LOG(SL_LOG_DEBUG, "client '%s' stopped watching queue '%s' (silent)", s, q);
        break;
    case SL_COORD_EV_ASSIGNED:
        SL_LOG(SL_LOG_DEBUG, "consumer '%s' of queue '%s' assigned: epoch %016llx", s, q, e);
        break;
    case SL_COORD_EV_ROUTES:
        SL_LOG(SL_LOG_DEBUG, "routes of queue '%s' changed: version %016llx", q, e);
        break;
    case SL_COORD_EV_GRACE_OVER:
        SL_LOG(SL_LOG_INFO, "grace over: answering joins and route requests");
        break;
    case SL_COORD_EV_BAD_MESSAGE:
        s_bad_message(d);
        break;
    case SL_COORD_EV_FULL:
        SL_LOG(SL_LOG_WARN, "refused '%s': %s reached", s, d);
        break;
    }
}

int main(int argc, char **argv)
{
    /* Signals go to a sigwait in this thread; every thread made from here
     * on inherits the mask. */
    sigset_t sigs;
    int rc = sl_config_daemon(s_opts, "sluice-coordinator", argc, argv, &sigs);
    if (rc >= 0)
        return rc;
    sl_log_init("coordinator", (sl_log_level_t)o_level, o_log_json);

    sl_coord_opts_t co;
    sl_coord_opts_default(&co);
    co.endpoint = o_endpoint;
    co.coord_id = o_id && o_id[0] ? o_id : NULL;
    co.heartbeat_ms = o_heartbeat;
    co.grace_ms = o_grace;
    co.max_frame = (uint64_t)o_max_frame;
    co.max_nodes = (uint32_t)o_max_nodes;
    co.max_consumers = (uint32_t)o_max_consumers;
    co.max_watchers = (uint32_t)o_max_watchers;
    co.on_event = s_on_event;
    sl_coord_t *coord = sl_coord_new(&co, &rc);
    if (!coord) {
        SL_LOG(SL_LOG_ERROR, "invalid coordinator options: %s", sl_strerror(rc));
        return 2;
    }
    if ((rc = sl_coord_start(coord)) != SL_OK) {
        SL_LOG(SL_LOG_ERROR, "cannot bind '%s': %s", o_endpoint, sl_strerror(rc));
        sl_coord_destroy(&coord);
        return 1;
    }
    /* Scripts and tests read this line to learn the bound endpoint. */
    printf("listening %s epoch %016llx\n", sl_coord_endpoint(coord),
           (unsigned long long)sl_coord_epoch(coord));
    fflush(stdout);
    SL_LOG(SL_LOG_INFO, "listening on '%s' (heartbeat %lld ms, grace %lld ms)",
           sl_coord_endpoint(coord), (long long)o_heartbeat,
           (long long)(o_grace >= 0 ? o_grace : 2 * o_heartbeat));

    int sig = 0;
    sigwait(&sigs, &sig);
    sl_coord_stats_t st;
    sl_coord_stats(coord, &st);
    SL_LOG(SL_LOG_INFO,
           "received %s: stopping (%" PRIu64 " nodes alive, %" PRIu64 " consumers, %" PRIu64
           " bad messages; nothing is lost, a new coordinator rebuilds from the next reports)",
           strsignal(sig), st.nodes_alive, st.consumers, st.bad_messages);
    sl_coord_destroy(&coord);
    sl_config_release(s_opts);
    return 0;
}
