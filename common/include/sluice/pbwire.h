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

#include <stdbool.h>
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

/* A map<string, string> entry (Job.headers): key 1 and value 2 into *key
 * and *val (the last of each; len 0 when absent). 0, or -1 if malformed or
 * either is not length-delimited. */
int sl__pb_map_entry(const uint8_t *p, size_t len, sl__pb_field_t *key, sl__pb_field_t *val);

/* A sluice.v1.Job scanned in place: pointers into its bytes, the last
 * occurrence of a field winning as in protobuf. Headers are checked and
 * counted, not copied (read them again with sl__pb_map_entry). */
typedef struct {
    const uint8_t *id, *queue, *payload, *ikey, *bkey, *lerr;
    size_t id_len, queue_len, payload_len, ikey_len, bkey_len, lerr_len;
    uint32_t priority, attempt, max_attempts;
    int64_t created_ms, not_before_ms, deadline_ms;
    size_t n_headers, headers_size; /* entries; their key and value bytes + 2 */
    bool field0;                /* an unknown field numbered 0 (a tag of more
                                   than one byte: protobuf-c keeps it, but
                                   cannot encode it again) */
} sl__pb_job_t;

/* Scan one encoded Job into v (zeroed first): 0, or -1 where protobuf-c
 * would refuse it (malformed, or a known field of the wrong wire type). */
int sl__pb_job(const uint8_t *p, size_t len, sl__pb_job_t *v);

/* A sluice.v1.Lease scanned in place; job_id points into its bytes. */
typedef struct {
    const uint8_t *job_id;
    size_t job_id_len;
    uint64_t lease_id, epoch;
    int64_t expires_ms;
} sl__pb_lease_t;

/* Scan one encoded Lease into l (zeroed first): 0, or -1 as sl__pb_job. */
int sl__pb_lease(const uint8_t *p, size_t len, sl__pb_lease_t *l);

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
