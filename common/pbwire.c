/* pbwire.c -- the protobuf wire format read in place, and the Job and
 * Lease views built on it (see pbwire.h). */
#include <limits.h>
#include <string.h>

#include "sluice/pbwire.h"

static int s_varint(sl__pb_rd_t *r, int max, uint64_t *out)
{
    uint64_t v = 0;
    for (int i = 0; i < max; i++) {
        if (r->p >= r->end)
            return -1;
        uint8_t b = *r->p++;
        v |= (uint64_t)(b & 0x7f) << (7 * i);
        if (!(b & 0x80)) {
            *out = v;
            return 0;
        }
    }
    return -1;
}

int sl__pb_next(sl__pb_rd_t *r, sl__pb_field_t *f)
{
    if (r->p >= r->end)
        return 0;
    if ((r->p[0] & 0xf8) == 0)
        return -1; /* a one-byte tag of field 0 */
    uint64_t tag;
    if (s_varint(r, 5, &tag) != 0)
        return -1;
    f->num = (uint32_t)(tag >> 3);
    f->wt = (int)(tag & 7);
    switch (f->wt) {
    case 0:
        return s_varint(r, 10, &f->v) == 0 ? 1 : -1;
    case 1:
    case 5: {
        size_t k = f->wt == 1 ? 8 : 4;
        if ((size_t)(r->end - r->p) < k)
            return -1;
        f->v = 0;
        memcpy(&f->v, r->p, k); /* little-endian host */
        r->p += k;
        return 1;
    }
    case 2: {
        uint64_t len;
        if (s_varint(r, 5, &len) != 0 || len > INT_MAX || len > (uint64_t)(r->end - r->p))
            return -1;
        f->data = r->p;
        f->len = (size_t)len;
        r->p += len;
        return 1;
    }
    default:
        return -1; /* groups and undefined wire types */
    }
}

/* --- sluice.v1 messages every job passes through ---------------------------- */

int sl__pb_map_entry(const uint8_t *p, size_t len, sl__pb_field_t *key, sl__pb_field_t *val)
{
    sl__pb_rd_t r = {p, p + len};
    sl__pb_field_t f;
    int rc;
    key->len = val->len = 0;
    key->data = val->data = NULL;
    while ((rc = sl__pb_next(&r, &f)) > 0) {
        if (f.num != 1 && f.num != 2)
            continue;
        if (f.wt != SL__PB_LEN)
            return -1;
        *(f.num == 1 ? key : val) = f;
    }
    return rc;
}

int sl__pb_job(const uint8_t *p, size_t len, sl__pb_job_t *v)
{
    memset(v, 0, sizeof *v);
    sl__pb_rd_t r = {p, p + len};
    sl__pb_field_t f, k, val;
    int rc;
    while ((rc = sl__pb_next(&r, &f)) > 0) {
        /* Wire type each known field must have: varint for 5-10,
         * length-delimited for 1-4 and 11-14. */
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
            if (sl__pb_map_entry(f.data, f.len, &k, &val) != 0)
                return -1;
            v->n_headers++;
            v->headers_size += k.len + val.len + 2;
            break;
        case 5: v->priority = (uint32_t)f.v; break;
        case 6: v->attempt = (uint32_t)f.v; break;
        case 7: v->max_attempts = (uint32_t)f.v; break;
        case 8: v->created_ms = (int64_t)f.v; break;
        case 9: v->not_before_ms = (int64_t)f.v; break;
        case 10: v->deadline_ms = (int64_t)f.v; break;
        case 11: v->ikey = f.data; v->ikey_len = f.len; break;
        case 13: v->bkey = f.data; v->bkey_len = f.len; break;
        case 14: v->lerr = f.data; v->lerr_len = f.len; break;
        default: break; /* trace_id and unknown fields: carried in the bytes */
        }
    }
    return rc;
}

int sl__pb_lease(const uint8_t *p, size_t len, sl__pb_lease_t *l)
{
    memset(l, 0, sizeof *l);
    sl__pb_rd_t r = {p, p + len};
    sl__pb_field_t f;
    int rc;
    while ((rc = sl__pb_next(&r, &f)) > 0) {
        if (f.num >= 1 && f.num <= 4 && f.wt != (f.num == 1 ? SL__PB_LEN : SL__PB_VARINT))
            return -1;
        switch (f.num) {
        case 1: l->job_id = f.data; l->job_id_len = f.len; break;
        case 2: l->lease_id = f.v; break;
        case 3: l->epoch = f.v; break;
        case 4: l->expires_ms = (int64_t)f.v; break;
        default: break;
        }
    }
    return rc;
}
