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

/* The node's options (SL_NODE_OPTIONS in sluice/node.h) become entries
 * of the table below, each stored in o_<field> and copied into the
 * sl_node_opts_t. */
#define S_STORE_STRING char *
#define S_STORE_INT int64_t
#define S_STORE_SIZE int64_t
#define S_STORE_MS int64_t
#define S_STORE_ENUM int
#define S_STORE(name, field, type, kind, def, unit, min, max, env, help) \
    static S_STORE_##kind o_##field;
SL_NODE_OPTIONS(S_STORE)
#undef S_STORE

#define S_TYPE_STRING SL_CONF_STRING
#define S_TYPE_INT SL_CONF_INT
#define S_TYPE_SIZE SL_CONF_INT
#define S_TYPE_MS SL_CONF_DURATION
#define S_TYPE_ENUM SL_CONF_ENUM
/* The default as text: "30" "s" is "30s"; an enum's is its first value. */
#define S_TEXT_STRING(def, unit) def
#define S_TEXT_INT(def, unit) #def #unit
#define S_TEXT_SIZE(def, unit) #def #unit
#define S_TEXT_MS(def, unit) #def #unit
#define S_TEXT_ENUM(def, unit) NULL
/* An enum option's values: s_values_<field>, in the enum's order. */
#define S_VALUES_STRING(field) NULL
#define S_VALUES_INT(field) NULL
#define S_VALUES_SIZE(field) NULL
#define S_VALUES_MS(field) NULL
#define S_VALUES_ENUM(field) s_values_##field
#define S_FROM_STRING(v) ((v) && (v)[0] ? (v) : NULL)
#define S_FROM_INT(v) (v)
#define S_FROM_SIZE(v) (v)
#define S_FROM_MS(v) (v)
#define S_FROM_ENUM(v) (v)

static const char *const s_values_overflow[] = {"block", "drop-new", "drop-oldest", NULL};
_Static_assert(SL_OVERFLOW_BLOCK == 0, "an enum option's default is its first value");

/* The daemon's own options, after the node's. */
static int64_t o_shutdown, o_workers;
static bool o_log_json;
static const char *const s_levels[] = {"debug", "info", "warn", "error", NULL};
static int o_level;

static sl_conf_opt_t s_opts[] = {
#define S_CONF(name, field, type, kind, def, unit, lo, hi, env, help)                 \
    {name, S_TYPE_##kind, S_TEXT_##kind(def, unit), env, help, .min = lo, .max = hi, \
     .values = S_VALUES_##kind(field), .store = &o_##field},
    SL_NODE_OPTIONS(S_CONF)
#undef S_CONF
    {"shutdown-timeout", SL_CONF_DURATION, "10s", "SLUICE_SHUTDOWN_TIMEOUT",
     "on SIGTERM, how long in-flight jobs may take to finish", .min = 0, .max = 3600000,
     .store = &o_shutdown},
    {"workers", SL_CONF_INT, "0", "SLUICE_WORKERS", "scheduler threads (0: one per core)",
     .min = 0, .max = 1024, .store = &o_workers},
    {"log-level", SL_CONF_ENUM, "info", "SLUICE_LOG_LEVEL", "debug, info, warn or error",
     .values = s_levels, .store = &o_level},
    {"log-json", SL_CONF_BOOL, "false", "SLUICE_LOG_JSON", "log as JSON lines",
     .store = &o_log_json},
    {0},
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
#define S_COPY(name, field, type, kind, def, unit, min, max, env, help) \
    no.field = (type)S_FROM_##kind(o_##field);
    SL_NODE_OPTIONS(S_COPY)
#undef S_COPY
    char qwhy[160];
    if (no.queues && sl_node_queues_check(no.queues, qwhy, sizeof qwhy) != 0) {
        SL_LOG(SL_LOG_ERROR, "invalid --queues: %s", qwhy);
        return 2;
    }
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
           sl_node_endpoint(node), s_values_overflow[o_overflow], (long long)o_max_length,
           (long long)o_lease_ms);
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
