/* jobwire.h -- the node's own reader and writer of the protobuf wire format
 * for the messages every job passes through: Publish and Ack envelopes are
 * scanned in place (no protobuf-c tree), a Job is kept as its encoded
 * bytes, and Deliver / PublishConfirm envelopes are written by hand.
 *
 * The scanners take a strict subset of what libprotobuf-c accepts: every
 * length and varint is checked, a known field with the wrong wire type, a
 * body sent twice or any kind but Publish and Ack is left to protobuf-c
 * (SL__JW_OTHER), and unknown fields are skipped and kept verbatim in the
 * job's bytes. Anything they take, protobuf-c decodes to the same values
 * (tests/fuzz/envelope_fuzz.c checks this). */
#ifndef SLUICE_NODE_JOBWIRE_H
#define SLUICE_NODE_JOBWIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sluice/pbwire.h" /* the field reader and writer, Job and Lease views */

/* One lease named in an Ack, when its job id is 16 bytes. */
typedef struct {
    uint8_t job_id[16];
    uint64_t lease_id, epoch;
    int64_t expires_ms;
} sl__jobwire_lease_t;

enum { SL__JW_OTHER = 0, SL__JW_PUBLISH, SL__JW_ACK };

/* Scan an envelope of len bytes: SL__JW_PUBLISH or SL__JW_ACK with *corr
 * and the body message's bytes in *body / *body_len (borrowed from p), or
 * SL__JW_OTHER when protobuf-c must decode it (another kind, no body, a
 * body given twice, anything malformed). */
int sl__jobwire_envelope(const uint8_t *p, size_t len, uint64_t *corr, const uint8_t **body,
                         size_t *body_len);

/* The jobs of a Publish body: the number of jobs, or -1 if the Publish is
 * outside what the scanner takes (the jobs themselves are for
 * sl__pb_job to judge). With jobs non-NULL (room for the count) each
 * job's bytes go to jobs[i] / lens[i]. */
long sl__jobwire_publish(const uint8_t *p, size_t len, const uint8_t **jobs, size_t *lens);

/* Publish.node_epoch of a Publish body sl__jobwire_publish accepted (0
 * when absent). */
uint64_t sl__jobwire_publish_epoch(const uint8_t *p, size_t len);


/* The leases of an Ack body: their number, or -1 if an item has no lease,
 * a job id of other than 16 bytes, a lease given twice, or anything
 * protobuf-c should judge. With out non-NULL (room for the count) the
 * leases go there. */
long sl__jobwire_ack(const uint8_t *p, size_t len, sl__jobwire_lease_t *out);

#endif
