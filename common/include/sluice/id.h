/* id.h -- 16-byte job ids, time-ordered like UUIDv7 (RFC 9562).
 *
 * Bytes 0-5 are the Unix time in milliseconds (big-endian), so ids sort
 * roughly by creation time; the version nibble is 7, the variant bits 10,
 * and the other 74 bits are random from a per-thread generator seeded by
 * getrandom() (reseeded in a forked child). On the wire ids are bytes; in
 * logs, admin output and URLs they are 32 lowercase hex digits. */
#ifndef SLUICE_ID_H
#define SLUICE_ID_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SL_ID_LEN 16
#define SL_ID_HEX_LEN 32    /* digits, without the terminating NUL */

/* Write a new id to out. Thread-safe. Returns 0, or SL_ESYS when the
 * kernel's random source cannot be read (first call in a thread only). */
int sl_id_new(uint8_t out[SL_ID_LEN]);

/* Write the 32 lowercase hex digits of id and a NUL to out. Returns out. */
char *sl_id_to_hex(const uint8_t id[SL_ID_LEN], char out[SL_ID_HEX_LEN + 1]);

/* Parse exactly 32 hex digits (either case; nothing before or after) into
 * out. Returns 0, or SL_EINVAL for NULL, another length or a non-hex
 * character; out is unchanged on error. */
int sl_id_from_hex(const char *hex, uint8_t out[SL_ID_LEN]);

/* The millisecond timestamp in an id's first 6 bytes. */
int64_t sl_id_time_ms(const uint8_t id[SL_ID_LEN]);

/* The wall clock, in ms since the Unix epoch: the clock ids carry and job
 * timestamps (created, not-before, deadline) use. */
int64_t sl_wall_ms(void);

#ifdef __cplusplus
}
#endif
#endif
