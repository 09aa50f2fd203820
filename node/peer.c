/* peer.c -- the peers a node knows (by routing id), their consumers
 * (one per peer and queue) and heartbeats. Engine-owned: a peer is made
 * by its first message (sl__peer_get) and freed by sl__peer_drop when it
 * has been silent for 3 heartbeat intervals. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node_int.h"
#include "sluice/sched.h"

/* --- peers -------------------------------------------------------------- */

static void s_send_heartbeat(sl__node_t *n, const sl__peer_t *p)
{
    Sluice__V1__Heartbeat hb = SLUICE__V1__HEARTBEAT__INIT;
    hb.node_id = n->node_id;
    hb.epoch = n->epoch;
    hb.sent_ms = sl_wall_ms();
    hb.interval_ms = (uint32_t)n->o.heartbeat_ms;
    hb.protocol = SL__PROTOCOL;
    hb.max_frame = n->o.max_frame;
    Sluice__V1__Envelope env = SLUICE__V1__ENVELOPE__INIT;
    env.body_case = SLUICE__V1__ENVELOPE__BODY_HEARTBEAT;
    env.heartbeat = &hb;
    sl__send(n, p->rid, p->rid_len, &env);
}

sl__peer_t *sl__peer_get(sl__node_t *n, const uint8_t *rid, size_t len)
{
    sl__peer_t *p = sl__map_get(n->peers, rid, len);
    if (!p) {
        p = calloc(1, sizeof *p);
        if (!p || sl__map_put(n->peers, rid, len, p) != SL_OK) {
            free(p);
            n->oom++;
            return NULL;
        }
        memcpy(p->rid, rid, len);
        p->rid_len = len;
        s_send_heartbeat(n, p); /* a new peer learns our epoch at once */
    }
    p->last_seen = sl__mono_ms();
    return p;
}

void sl__peer_drop(sl__node_t *n, sl__peer_t *p)
{
    while (p->consumers)
        sl__consumer_drop(n, p->consumers); /* unlinks it from p */
    sl__map_del(n->peers, p->rid, p->rid_len);
    free(p);
}

sl__consumer_t *sl__consumer_find(sl__node_t *n, sl__peer_t *p, sl__queue_t *q)
{
    const void *key[2] = {p, q};
    return sl__map_get(n->consumers, key, sizeof key);
}

sl__consumer_t *sl__consumer_new(sl__node_t *n, sl__peer_t *p, sl__queue_t *q)
{
    sl__consumer_t *c = calloc(1, sizeof *c);
    const void *key[2] = {p, q};
    if (!c || sl__map_put(n->consumers, key, sizeof key, c) != SL_OK) {
        free(c);
        n->oom++;
        return NULL;
    }
    c->peer = p;
    c->q = q;
    c->pnext = p->consumers;
    p->consumers = c;
    c->qnext = q->consumers;
    q->consumers = c;
    q->nconsumers++;
    sl__queue_idle_check(n, q);
    return c;
}

typedef struct {
    sl__node_t *n;
    sl__peer_t **gone;
    size_t ngone, cap;
    int64_t now;
} sl__sweep_t;

static void s_sweep_one(const void *k, size_t len, void *val, void *arg)
{
    (void)k;
    (void)len;
    sl__sweep_t *s = arg;
    sl__peer_t *p = val;
    if (p->local)
        return;
    if (s->now - p->last_seen > 3 * s->n->o.heartbeat_ms) {
        if (s->ngone == s->cap) {
            size_t cap = s->cap ? s->cap * 2 : 16;
            sl__peer_t **g = realloc(s->gone, cap * sizeof *g);
            if (!g)
                return; /* out of memory: forgotten at a later heartbeat */
            s->gone = g;
            s->cap = cap;
        }
        s->gone[s->ngone++] = p;
        return;
    }
    s_send_heartbeat(s->n, p);
}

/* Heartbeat the live peers of the next slice of the peer table; forget
 * the silent ones. A slice is 1/SL__BEAT_SLICES of the table, one every
 * heartbeat/SL__BEAT_SLICES: each peer hears from the node once an
 * interval, and 10,000 peers never cost one engine turn 10,000 sends. */
size_t sl__heartbeat(sl__node_t *n)
{
    sl__sweep_t s = {.n = n, .now = sl__mono_ms()};
    size_t slots = sl__map_slots(n->peers) / SL__BEAT_SLICES + 1;
    sl__map_each_from(n->peers, &n->beat_cursor, slots, s_sweep_one, &s);
    for (size_t i = 0; i < s.ngone; i++)
        sl__peer_drop(n, s.gone[i]);
    free(s.gone);
    return s.ngone;
}

