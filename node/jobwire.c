/* jobwire.c -- scanning Publish and Ack envelopes in place (see jobwire.h).
 *
 * Field numbers are those of proto/sluice.proto; the field reader and its
 * limits (those of libprotobuf-c 1.4.1) are common/pbwire.c's. */
#include <string.h>

#include "jobwire.h"

int sl__jobwire_envelope(const uint8_t *p, size_t len, uint64_t *corr, const uint8_t **body,
                         size_t *body_len)
{
    sl__pb_rd_t r = {p, p + len};
    sl__pb_field_t f;
    int kind = SL__JW_OTHER, rc;
    *corr = 0;
    while ((rc = sl__pb_next(&r, &f)) > 0) {
        if (f.num == 1) {
            if (f.wt != SL__PB_VARINT)
                return SL__JW_OTHER;
            *corr = f.v;
        } else if (f.num == 10 || f.num == 16) {
            if (f.wt != SL__PB_LEN || kind != SL__JW_OTHER)
                return SL__JW_OTHER; /* merged or replaced: protobuf-c's rules */
            kind = f.num == 10 ? SL__JW_PUBLISH : SL__JW_ACK;
            *body = f.data;
            *body_len = f.len;
        } else if (f.num >= 11) {
            return SL__JW_OTHER; /* another kind of body, or one we do not know */
        }
    }
    return rc < 0 ? SL__JW_OTHER : kind;
}

long sl__jobwire_publish(const uint8_t *p, size_t len, const uint8_t **jobs, size_t *lens)
{
    sl__pb_rd_t r = {p, p + len};
    sl__pb_field_t f;
    long n = 0;
    int rc;
    while ((rc = sl__pb_next(&r, &f)) > 0) {
        if (f.num == 2 && f.wt != SL__PB_VARINT)
            return -1; /* node_epoch of the wrong wire type: protobuf-c refuses it */
        if (f.num != 1)
            continue;
        if (f.wt != SL__PB_LEN)
            return -1;
        if (jobs) {
            jobs[n] = f.data;
            lens[n] = f.len;
        }
        n++;
    }
    return rc < 0 ? -1 : n;
}

uint64_t sl__jobwire_publish_epoch(const uint8_t *p, size_t len)
{
    sl__pb_rd_t r = {p, p + len};
    sl__pb_field_t f;
    uint64_t epoch = 0;
    while (sl__pb_next(&r, &f) > 0)
        if (f.num == 2 && f.wt == SL__PB_VARINT)
            epoch = f.v; /* the last one wins, as in protobuf */
    return epoch;
}

/* One Lease message into l: 0, or -1 (also for a job id not 16 bytes). */
static int s_lease(const uint8_t *p, size_t len, sl__jobwire_lease_t *l)
{
    sl__pb_lease_t v;
    memset(l, 0, sizeof *l);
    if (sl__pb_lease(p, len, &v) != 0 || v.job_id_len != 16)
        return -1;
    memcpy(l->job_id, v.job_id, 16);
    l->lease_id = v.lease_id;
    l->epoch = v.epoch;
    l->expires_ms = v.expires_ms;
    return 0;
}

long sl__jobwire_ack(const uint8_t *p, size_t len, sl__jobwire_lease_t *out)
{
    sl__pb_rd_t r = {p, p + len};
    sl__pb_field_t f;
    long n = 0;
    int rc;
    while ((rc = sl__pb_next(&r, &f)) > 0) {
        if (f.num == 2 && f.wt != SL__PB_VARINT)
            return -1; /* node_epoch of the wrong wire type: protobuf-c refuses it */
        if (f.num != 1)
            continue;
        if (f.wt != SL__PB_LEN)
            return -1;
        /* AckItem: lease 1 (exactly once: twice would merge), result 2. */
        sl__pb_rd_t ir = {f.data, f.data + f.len};
        sl__pb_field_t g;
        int irc, leases = 0;
        sl__jobwire_lease_t l;
        while ((irc = sl__pb_next(&ir, &g)) > 0) {
            if ((g.num == 1 || g.num == 2) && g.wt != SL__PB_LEN)
                return -1;
            if (g.num == 1 && (leases++ || s_lease(g.data, g.len, &l) != 0))
                return -1;
        }
        if (irc < 0 || leases != 1)
            return -1;
        if (out)
            out[n] = l;
        n++;
    }
    return rc < 0 ? -1 : n;
}
