/* main.c -- the sluice-node daemon: options, logging, signals around an
 * embedded node (node.h). SIGTERM or SIGINT stops it gracefully. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <sys/resource.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/config.h"
#include "sluice/log.h"
#include "sluice/node.h"
#include "sluice/sched.h"

static char *o_endpoint, *o_node_id, *o_coordinator, *o_advertise, *o_queues;
static int64_t o_capacity, o_heartbeat, o_lease, o_max_length, o_max_attempts, o_backoff_base,
    o_backoff_max, o_max_frame, o_max_job, o_max_waiting, o_max_dead, o_max_done, o_shutdown,
    o_workers, o_max_queues, o_queue_idle;
static int o_overflow;
static bool o_log_json;

static const char *const s_overflows[] = {"block", "drop-new", "drop-oldest", NULL};
static const char *const s_levels[] = {"debug", "info", "warn", "error", NULL};
static int o_level;

static sl_conf_opt_t s_opts[] = {
    {"endpoint", SL_CONF_STRING, "tcp://127.0.0.1:7450", "SLUICE_ENDPOINT",
     "zeromq endpoint to bind (port 0: any free port)", .store = &o_endpoint},
    {"node-id", SL_CONF_STRING, "", "SLUICE_NODE_ID", "name in stats and logs (default host:pid)",
     .store = &o_node_id},
    {"coordinator", SL_CONF_STRING, "", "SLUICE_COORDINATOR",
     "coordinator endpoint to join (empty: standalone)", .store = &o_coordinator},
    {"advertise", SL_CONF_STRING, "", "SLUICE_ADVERTISE",
     "endpoint clients are told to use (default: the bound endpoint)", .store = &o_advertise},
    {"capacity", SL_CONF_INT, "100", "SLUICE_CAPACITY",
     "relative weight of this node for routing and assignment", .min = 1, .max = 1000000,
     .store = &o_capacity},
    {"heartbeat", SL_CONF_DURATION, "1s", "SLUICE_HEARTBEAT",
     "heartbeat interval; a peer silent 3 intervals is gone", .min = 10, .max = 600000,
     .store = &o_heartbeat},
    {"lease", SL_CONF_DURATION, "30s", "SLUICE_LEASE",
     "time a consumer holds a job before it is redelivered", .min = 10, .max = 86400000,
     .store = &o_lease},
    {"max-length", SL_CONF_INT, "100000", "SLUICE_MAX_LENGTH",
     "jobs held per queue: ready, delayed and retry-wait (not in flight, not waiting "
     "publishes)", .min = 1, .max = 1000000000,
     .store = &o_max_length},
    {"overflow", SL_CONF_ENUM, "block", "SLUICE_OVERFLOW",
     "when a queue is full: block publishers, drop-new, drop-oldest", .values = s_overflows,
     .store = &o_overflow},
    {"max-attempts", SL_CONF_INT, "5", "SLUICE_MAX_ATTEMPTS",
     "deliveries before a failing job is dead (a job may set its own)", .min = 1,
     .max = 1000000, .store = &o_max_attempts},
    {"backoff-base", SL_CONF_DURATION, "100ms", "SLUICE_BACKOFF_BASE",
     "first retry delay; doubles per attempt, with jitter", .min = 1, .max = 86400000,
     .store = &o_backoff_base},
    {"backoff-max", SL_CONF_DURATION, "30s", "SLUICE_BACKOFF_MAX", "longest retry delay",
     .min = 1, .max = 86400000, .store = &o_backoff_max},
    {"max-frame", SL_CONF_INT, "1m", "SLUICE_MAX_FRAME",
     "largest envelope accepted or sent, in bytes", .min = 4096, .max = 256 << 20, .store = &o_max_frame},
    {"max-job", SL_CONF_INT, "256k", "SLUICE_MAX_JOB", "largest job payload, in bytes",
     .min = 1, .max = 256 << 20, .store = &o_max_job},
    {"max-waiting", SL_CONF_INT, "100000", "SLUICE_MAX_WAITING",
     "publishes held waiting for room (block policy), node-wide", .min = 0, .max = 100000000,
     .store = &o_max_waiting},
    {"max-dead", SL_CONF_INT, "10000", "SLUICE_MAX_DEAD", "dead jobs kept per queue", .min = 0,
     .max = 100000000, .store = &o_max_dead},
    {"max-done", SL_CONF_INT, "100000", "SLUICE_MAX_DONE",
     "ids of acked jobs remembered to answer resent publishes DUPLICATE", .min = 0,
     .max = 100000000, .store = &o_max_done},
    {"queues", SL_CONF_STRING, "", "SLUICE_QUEUES",
     "per-queue policies: NAME:key=value,...;NAME:... (keys: overflow, max-length, "
     "max-attempts, backoff-base, backoff-max, max-dead)", .store = &o_queues},
    {"max-queues", SL_CONF_INT, "100000", "SLUICE_MAX_QUEUES",
     "queues held at once; a new queue beyond it is refused", .min = 1, .max = 100000000,
     .store = &o_max_queues},
    {"queue-idle", SL_CONF_DURATION, "60s", "SLUICE_QUEUE_IDLE",
     "an empty queue with no consumers is forgotten after this long", .min = 0,
     .max = 86400000, .store = &o_queue_idle},
    {"shutdown-timeout", SL_CONF_DURATION, "10s", "SLUICE_SHUTDOWN_TIMEOUT",
     "on SIGTERM, how long in-flight jobs may take to finish", .min = 0, .max = 3600000,
     .store = &o_shutdown},
    {"workers", SL_CONF_INT, "0", "SLUICE_WORKERS", "scheduler threads (0: one per core)",
     .min = 0, .max = 1024, .store = &o_workers},
    {"log-level", SL_CONF_ENUM, "info", "SLUICE_LOG_LEVEL", "debug, info, warn or error",
     .values = s_levels, .store = &o_level},
    {"log-json", SL_CONF_BOOL, "false", "SLUICE_LOG_JSON", "log as JSON lines",
     .store = &o_log_json},
    {NULL},
};

/* Membership changes, logged; runs on the node's engine (one write). */
static void s_on_cluster(const sl_node_cluster_info_t *in, void *arg)
{
    (void)arg;
    unsigned long long e = (unsigned long long)in->member_epoch;
    unsigned long long prev = (unsigned long long)in->previous_epoch;
    switch (in->event) {
    case SL_NODE_CLUSTER_JOINED:
        SL_LOG(SL_LOG_INFO, "joined cluster at '%s' as member epoch %016llx (was %016llx)",
               in->coordinator, e, prev);
        break;
    case SL_NODE_CLUSTER_FENCED:
        SL_LOG(SL_LOG_INFO,
               "fenced: coordinator '%s' had declared this node dead; dropped %llu "
               "subscriptions, rejoining as member epoch %016llx (was %016llx)",
               in->coordinator, (unsigned long long)in->dropped, e, prev);
        break;
    case SL_NODE_CLUSTER_REJOINED:
        SL_LOG(SL_LOG_INFO, "rejoined cluster at '%s' as member epoch %016llx", in->coordinator,
               e);
        break;
    case SL_NODE_CLUSTER_LOST:
        SL_LOG(SL_LOG_WARN, "coordinator '%s' silent for 3 intervals; still serving",
               in->coordinator);
        break;
    case SL_NODE_CLUSTER_FOUND:
        SL_LOG(SL_LOG_INFO, "coordinator '%s' answering again", in->coordinator);
        break;
    }
}

int main(int argc, char **argv)
{
    /* Signals go to a sigwait in this thread; every thread made from here
     * on inherits the mask. */
    sigset_t sigs;
    int rc = sl_config_daemon(s_opts, "sluice-node", argc, argv, &sigs);
    if (rc >= 0)
        return rc;
    sl_log_init("node", (sl_log_level_t)o_level, o_log_json);
    /* Each connection is a descriptor: allow as many as the hard limit. */
    struct rlimit nofile;
    if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
        nofile.rlim_cur = nofile.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &nofile) != 0)
            SL_LOG(SL_LOG_WARN, "cannot raise the open files limit: %s", strerror(errno));
    }

    sl_sched_opts_t so = {.workers = (int)o_workers};
    if ((rc = sl_sched_start(&so)) != SL_OK) {
        SL_LOG(SL_LOG_ERROR, "cannot start scheduler: %s", sl_strerror(rc));
        return 1;
    }
    sl_node_opts_t no;
    sl_node_opts_default(&no);
    no.endpoint = o_endpoint;
    no.node_id = o_node_id && o_node_id[0] ? o_node_id : NULL;
    no.heartbeat_ms = o_heartbeat;
    no.lease_ms = o_lease;
    no.max_length = (uint64_t)o_max_length;
    no.overflow = (sl_overflow_t)o_overflow;
    no.max_attempts = (uint32_t)o_max_attempts;
    no.backoff_base_ms = o_backoff_base;
    no.backoff_max_ms = o_backoff_max;
    no.max_frame = (uint64_t)o_max_frame;
    no.max_job = (uint64_t)o_max_job;
    no.max_waiting = (uint64_t)o_max_waiting;
    no.max_dead = (uint64_t)o_max_dead;
    no.max_done = (uint64_t)o_max_done;
    no.max_queues = (uint64_t)o_max_queues;
    no.queue_idle_ms = o_queue_idle;
    no.queues = o_queues && o_queues[0] ? o_queues : NULL;
    char qwhy[160];
    if (no.queues && sl_node_queues_check(no.queues, qwhy, sizeof qwhy) != 0) {
        SL_LOG(SL_LOG_ERROR, "invalid --queues: %s", qwhy);
        return 2;
    }
    no.coordinator = o_coordinator && o_coordinator[0] ? o_coordinator : NULL;
    no.advertise = o_advertise && o_advertise[0] ? o_advertise : NULL;
    no.capacity = (uint32_t)o_capacity;
    no.cluster_fn = s_on_cluster;
    const char *why = sl_node_cluster_opts_check(&no);
    if (why) {
        SL_LOG(SL_LOG_ERROR, "invalid cluster options: %s", why);
        return 2;
    }
    sl_node_t *node = sl_node_new(&no, &rc);
    if (!node) {
        SL_LOG(SL_LOG_ERROR, "invalid node options: %s (max-job must not exceed max-frame, "
                             "backoff-max must not be below backoff-base)",
               sl_strerror(rc));
        return 2;
    }
    if ((rc = sl_node_start(node)) != SL_OK) {
        SL_LOG(SL_LOG_ERROR, "cannot bind '%s': %s", o_endpoint, sl_strerror(rc));
        sl_node_destroy(&node);
        return 1;
    }
    /* Scripts and tests read this line to learn the bound endpoint. */
    printf("listening %s epoch %016llx\n", sl_node_endpoint(node),
           (unsigned long long)sl_node_epoch(node));
    fflush(stdout);
    SL_LOG(SL_LOG_INFO, "listening on '%s' (overflow %s, max-length %lld, lease %lld ms)",
           sl_node_endpoint(node), s_overflows[o_overflow], (long long)o_max_length,
           (long long)o_lease);
    if (no.coordinator)
        SL_LOG(SL_LOG_INFO, "joining cluster at '%s' as '%s' (capacity %lld)", no.coordinator,
               no.advertise ? no.advertise : sl_node_endpoint(node), (long long)o_capacity);

    int sig = 0;
    sigwait(&sigs, &sig);
    SL_LOG(SL_LOG_INFO, "received %s: draining for up to %lld ms", strsignal(sig),
           (long long)o_shutdown);
    sl_node_report_t left;
    rc = sl_node_stop(node, o_shutdown, &left);
    SL_LOG(rc == SL_OK ? SL_LOG_INFO : SL_LOG_WARN,
           "stopped: %llu in flight, %llu ready, %llu delayed, %llu waiting, %llu dead left "
           "(in-memory jobs are lost at exit)",
           (unsigned long long)left.in_flight, (unsigned long long)left.ready,
           (unsigned long long)left.delayed, (unsigned long long)left.waiting_publishes,
           (unsigned long long)left.dead);
    printf("stopped in_flight=%llu ready=%llu delayed=%llu\n", (unsigned long long)left.in_flight,
           (unsigned long long)left.ready, (unsigned long long)left.delayed);
    fflush(stdout);
    sl_node_destroy(&node);
    sl_config_release(s_opts);
    return rc == SL_OK ? 0 : 3;
}
