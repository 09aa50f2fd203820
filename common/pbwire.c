/* pbwire.c -- reading the protobuf wire format in place (see pbwire.h). */
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
