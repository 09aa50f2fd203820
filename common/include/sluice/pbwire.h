/* pbwire.h -- a small reader and writer of the protobuf wire format, for
 * the messages every job passes through, which the node and libsluice scan
 * in place and write by hand instead of going through a protobuf-c tree.
 * Internal to Sluice (shared by node/jobwire.c and clients/c), not API.
 *
 * The reader follows libprotobuf-c 1.4.1's limits: a tag of at most 5
 * bytes whose first byte names a field (0x00-0x07 is refused), a varint of
 * at most 10 bytes, a length of at most 5 bytes and INT_MAX, wire types 0,
 * 1, 2 and 5 only. */
#ifndef SLUICE_PBWIRE_H
#define SLUICE_PBWIRE_H

#include <stddef.h>
#include <stdint.h>

#define SL__PB_VARINT 0
#define SL__PB_LEN 2

/* --- reading ------------------------------------------------------------- */

/* The bytes left to read: [p, end). */
typedef struct {
    const uint8_t *p, *end;
} sl__pb_rd_t;

/* One field as read. */
typedef struct {
    uint32_t num;
    int wt;
    uint64_t v;             /* varint, fixed32, fixed64 */
    const uint8_t *data;    /* length-delimited: borrowed from the reader */
    size_t len;
} sl__pb_field_t;

/* Read the next field into f: 1, 0 at the end, -1 if malformed. */
int sl__pb_next(sl__pb_rd_t *r, sl__pb_field_t *f);

/* --- writing ------------------------------------------------------------- */

static inline size_t sl__pb_varint_size(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static inline uint8_t *sl__pb_put_varint(uint8_t *p, uint64_t v)
{
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

/* A tag of a field number below 16: one byte. */
static inline uint8_t *sl__pb_put_tag(uint8_t *p, uint32_t field, int wire_type)
{
    return sl__pb_put_varint(p, (uint64_t)field << 3 | (uint64_t)wire_type);
}

/* Bytes of a length-delimited field of number `field` holding len bytes. */
static inline size_t sl__pb_len_size(uint32_t field, size_t len)
{
    return sl__pb_varint_size((uint64_t)field << 3) + sl__pb_varint_size(len) + len;
}

/* Tag and length of a length-delimited field; the caller writes the len
 * bytes after it. */
static inline uint8_t *sl__pb_put_len(uint8_t *p, uint32_t field, size_t len)
{
    return sl__pb_put_varint(sl__pb_put_tag(p, field, SL__PB_LEN), len);
}

#endif
