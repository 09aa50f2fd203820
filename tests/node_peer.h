/* node_peer.h -- a test peer for the node: one ZeroMQ DEALER socket that
 * speaks sluice.v1 through sl_wire, with helpers to publish, subscribe,
 * collect deliveries, settle leases and ask admin questions.
 *
 * A peer heartbeats on its own thread (every socket call is serialised by
 * a mutex), so a test may leave it idle without the node declaring it
 * gone; destroying it closes the socket, which the node sees as silence.
 * Receives keep what they were not asked for in a backlog, so nothing a
 * test waits for later is lost; heartbeats from the node are discarded. */
#ifndef SLUICE_NODE_PEER_H
#define SLUICE_NODE_PEER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sluice.pb-c.h"
#include "sluice/node.h"

typedef struct node_peer node_peer_t;

/* --- the node under test -------------------------------------------------- */

/* Options for a fast embedded node: tcp://127.0.0.1:0, heartbeat 250 ms,
 * lease 30 s, backoff 50..1000 ms, max_job 64 KiB, max_frame 128 KiB. */
void node_test_opts(sl_node_opts_t *o);

/* New and started; asserts on failure. Caller owns (sl_node_destroy). */
sl_node_t *node_test_start(const sl_node_opts_t *o);

/* How long to wait for something that should happen "promptly": 5 s, or
 * 30 s under sanitizers. */
int64_t node_test_patience(void);

/* The node and peers of the running test, freed by node_fx_teardown (a
 * cmocka teardown) even when an assertion ends the test early. */
sl_node_t *node_fx_start(const sl_node_opts_t *o);
/* A new peer on the fixture's node, heartbeating thrice per node interval. */
node_peer_t *node_fx_peer(void);
/* Destroy a fixture peer now (the node sees it go silent). */
void node_fx_drop_peer(node_peer_t **peer);
int node_fx_teardown(void **state);

/* Poll the STATS of queue into st (a Sluice__V1__QueueStats) until the
 * queue exists and cond holds, failing the test after ms. */
#define NODE_WAIT_STATS(peer, queue, st, cond, ms)                             \
    do {                                                                       \
        int64_t end__ = sl_deadline_ms(ms);                                    \
        for (;;) {                                                             \
            if (node_peer_stats_try((peer), (queue), &(st)) && (cond))         \
                break;                                                         \
            if (sl_now() >= end__)                                             \
                fail_msg("'%s' never held within %lld ms", #cond, (long long)(ms)); \
            sl_sleep_ms(5);                                                    \
        }                                                                      \
    } while (0)

/* 16-byte job ids that carry a test's job number: "sluice-t" then n. */
void node_id_make(uint8_t out[16], uint32_t n);
/* The number in an id made by node_id_make; UINT32_MAX for anything else. */
uint32_t node_id_num(const ProtobufCBinaryData *id);

/* Wall clock, ms since the epoch (what Job timestamps use). */
int64_t node_wall_ms(void);

/* Connect to endpoint. heartbeat_ms > 0 starts the heartbeat thread, which
 * sends a Heartbeat every heartbeat_ms / 3. Caller owns; asserts (test
 * failure) if the socket cannot be made. */
node_peer_t *node_peer_new(const char *endpoint, int64_t heartbeat_ms);

/* Close the socket, stop the thread, free everything; accepts NULL. */
void node_peer_destroy(node_peer_t **self_p);

/* Send env (stays the caller's). Returns 0 or an SL_E* code. */
int node_peer_send(node_peer_t *self, const Sluice__V1__Envelope *env);

/* Send raw frames as one ZeroMQ message (bad-input tests). */
int node_peer_send_frames(node_peer_t *self, const void *const *frames, const size_t *lens,
                          size_t n);

/* The next envelope of `kind` (SLUICE__V1__ENVELOPE__BODY__NOT_SET: of any
 * kind but Heartbeat) whose corr is `corr` (0: any corr), waiting up to
 * timeout_ms. Caller owns the result (sl_wire_env_free); NULL on timeout.
 * Deliver envelopes are not returned here unless asked for by kind: their
 * deliveries go to the delivery buffer (node_peer_deliveries). */
Sluice__V1__Envelope *node_peer_recv(node_peer_t *self, Sluice__V1__Envelope__BodyCase kind,
                                     uint64_t corr, int64_t timeout_ms);

/* Receive for window_ms, then return how many envelopes of kind (and, for
 * Deliver, deliveries) are waiting, without consuming them. */
size_t node_peer_count(node_peer_t *self, Sluice__V1__Envelope__BodyCase kind, int64_t window_ms);

/* --- producing ---------------------------------------------------------- */

typedef struct {
    uint32_t id;                /* job number, see node_id_make            */
    const char *queue;          /* NULL: "q"                               */
    uint32_t priority;
    int64_t not_before_ms;      /* absolute wall ms, 0 = none              */
    int64_t deadline_ms;        /* absolute wall ms, 0 = none              */
    const char *key;            /* idempotency key, NULL = none            */
    uint32_t max_attempts;
    size_t payload_len;         /* payload bytes (filled with 'x')         */
    size_t id_len;              /* 0: 16; otherwise a raw id of this size  */
    const char *last_error;     /* NULL: unset, as producers leave it      */
} node_job_t;

/* Send one Publish holding jobs[0..n); returns its corr. */
uint64_t node_peer_publish(node_peer_t *self, const node_job_t *jobs, size_t n);

/* The PublishConfirm for corr, or NULL after timeout_ms. Caller owns. */
Sluice__V1__Envelope *node_peer_confirm(node_peer_t *self, uint64_t corr, int64_t timeout_ms);

/* Publish and wait for the confirm; asserts it arrives within timeout_ms
 * with n confirms. statuses (may be NULL) gets each job's status. */
void node_peer_publish_ok(node_peer_t *self, const node_job_t *jobs, size_t n, int *statuses,
                          int64_t timeout_ms);

/* Publish jobs numbered first..first+count-1 to queue, one Publish, and
 * assert every one is ACCEPTED. */
void node_peer_publish_range(node_peer_t *self, const char *queue, uint32_t first, uint32_t count,
                             uint32_t priority);

/* --- consuming ---------------------------------------------------------- */

/* One delivered job, copied out of its envelope. */
typedef struct {
    uint32_t id;                /* node_id_num of the job id               */
    uint8_t raw_id[16];
    char queue[129];
    char last_error[128];
    uint32_t priority, attempt, max_attempts;
    uint64_t lease_id, epoch;
    int64_t expires_ms;
    int64_t at;                 /* sl_now() when it arrived                */
} node_dlv_t;

int node_peer_subscribe(node_peer_t *self, const char *queue, uint32_t credit);
int node_peer_credit(node_peer_t *self, const char *queue, uint32_t n);
int node_peer_unsubscribe(node_peer_t *self, const char *queue);

/* Wait up to timeout_ms until `want` deliveries are buffered, then move up
 * to `want` of them (oldest first) into out. Returns how many were moved. */
size_t node_peer_deliveries(node_peer_t *self, node_dlv_t *out, size_t want, int64_t timeout_ms);

/* Ack, fail or touch the lease of d; each returns the corr it sent (a
 * LeaseReply for a rejected lease echoes it). */
uint64_t node_peer_ack(node_peer_t *self, const node_dlv_t *d);
uint64_t node_peer_ack_many(node_peer_t *self, const node_dlv_t *d, size_t n);
uint64_t node_peer_fail(node_peer_t *self, const node_dlv_t *d, bool retryable, const char *error);
uint64_t node_peer_touch(node_peer_t *self, const node_dlv_t *d, uint32_t extend_ms);

/* --- admin -------------------------------------------------------------- */

/* Send Admin{op, queue} and wait for the AdminReply (NULL after
 * timeout_ms). Caller owns. */
Sluice__V1__Envelope *node_peer_admin(node_peer_t *self, Sluice__V1__Admin__Op op,
                                      const char *queue, int64_t timeout_ms);

/* STATS of one queue copied into out (out->name and out->overflow are left
 * NULL). Asserts the reply arrives and names the queue. */
void node_peer_stats(node_peer_t *self, const char *queue, Sluice__V1__QueueStats *out);

/* As node_peer_stats, but false (out untouched) if the node has no such
 * queue yet. */
bool node_peer_stats_try(node_peer_t *self, const char *queue, Sluice__V1__QueueStats *out);

#endif
