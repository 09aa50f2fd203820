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
        } else if (f.num >= 11 && f.num <= 30) {
            return SL__JW_OTHER; /* another kind of body */
        }
    }
    return rc < 0 ? SL__JW_OTHER : kind;
}

/* A map<string, string> entry: key 1 and value 2, both strings. */
static int s_map_entry(const uint8_t *p, size_t len)
{
    sl__pb_rd_t r = {p, p + len};
    sl__pb_field_t f;
    int rc;
    while ((rc = sl__pb_next(&r, &f)) > 0)
        if ((f.num == 1 || f.num == 2) && f.wt != SL__PB_LEN)
            return -1;
    return rc;
}

int sl__jobwire_job(const uint8_t *p, size_t len, sl__jobview_t *v)
{
    memset(v, 0, sizeof *v);
    sl__pb_rd_t r = {p, p + len};
    sl__pb_field_t f;
    int rc;
    while ((rc = sl__pb_next(&r, &f)) > 0) {
        /* Wire type each known field must have: 2 for 1-4 and 11-14, 0
         * for 5-10. */
        if (f.num >= 1 && f.num <= 14) {
            int want = f.num >= 5 && f.num <= 10 ? SL__PB_VARINT : SL__PB_LEN;
            if (f.wt != want)
                return -1;
        }
        switch (f.num) {
        case 0: v->field0 = true; break;
        case 1: v->id = f.data; v->id_len = f.len; break;
        case 2: v->queue = f.data; v->queue_len = f.len; break;
        case 3: v->payload = f.data; v->payload_len = f.len; break;
        case 4:
            if (s_map_entry(f.data, f.len) != 0)
                return -1;
            break;
        case 5: v->priority = (uint32_t)f.v; break;
        case 6: v->attempt = (uint32_t)f.v; break;
        case 7: v->max_attempts = (uint32_t)f.v; break;
        case 8: v->created_ms = (int64_t)f.v; break;
        case 9: v->not_before_ms = (int64_t)f.v; break;
        case 10: v->deadline_ms = (int64_t)f.v; break;
        case 11: v->ikey = f.data; v->ikey_len = f.len; break;
        default: break; /* 12-14 and unknown fields: carried in the bytes */
        }
    }
    return rc;
}

long sl__jobwire_publish(const uint8_t *p, size_t len, const uint8_t **jobs, size_t *lens)
{
    sl__pb_rd_t r = {p, p + len};
    sl__pb_field_t f;
    long n = 0;
    int rc;
    while ((rc = sl__pb_next(&r, &f)) > 0) {
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

/* One Lease message into l: 0, or -1 (also for a job id not 16 bytes). */
static int s_lease(const uint8_t *p, size_t len, sl__jobwire_lease_t *l)
{
    sl__pb_rd_t r = {p, p + len};
    sl__pb_field_t f;
    int rc;
    size_t id_len = 0;
    memset(l, 0, sizeof *l);
    while ((rc = sl__pb_next(&r, &f)) > 0) {
        if (f.num >= 1 && f.num <= 4 && f.wt != (f.num == 1 ? SL__PB_LEN : SL__PB_VARINT))
            return -1;
        switch (f.num) {
        case 1:
            id_len = f.len;
            if (id_len == 16)
                memcpy(l->job_id, f.data, 16);
            break;
        case 2: l->lease_id = f.v; break;
        case 3: l->epoch = f.v; break;
        case 4: l->expires_ms = (int64_t)f.v; break;
        default: break;
        }
    }
    return rc == 0 && id_len == 16 ? 0 : -1;
}

long sl__jobwire_ack(const uint8_t *p, size_t len, sl__jobwire_lease_t *out)
{
    sl__pb_rd_t r = {p, p + len};
    sl__pb_field_t f;
    long n = 0;
    int rc;
    while ((rc = sl__pb_next(&r, &f)) > 0) {
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
