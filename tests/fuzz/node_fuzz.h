/* node_fuzz.h -- the input format of node_fuzz.c, shared with the seed
 * generator (seeds.c) so both speak the same little language.
 *
 * An input is a sequence of ops (at most NF_MAX_OPS). Each op starts with
 * one code byte:
 *
 *   bits 0-3  kind (below)
 *   bits 4-5  node: 0 block, 1 drop-new, 2 drop-oldest (3 means 0)
 *   bit  6    socket: 0 the node's steady DEALER, 1 the reconnectable one
 *   bit  7    unused
 *
 * then the kind's arguments. Reads past the end of the input give zeros,
 * so every byte string is a valid program. Argument notation:
 *   u8/u16/u32/u64   little-endian integers
 *   chunk            a length byte L, then L bytes (L = 255: a u16 length
 *                    follows), clamped to what is left
 *   queue            a byte Q: Q < 0xF0 "q<Q%4>", Q = 0xFF "", else a chunk
 *                    used as the name (mostly invalid names). q3 has an
 *                    in-process handler: payload byte 0 %3 = ack/retry/fail
 *   lease            a byte S and a byte M: S = 0xFF or no lease seen yet, a
 *                    lease made of chunk (job id), u64 (lease id), u64
 *                    (epoch, or the node's own when M is odd); otherwise the
 *                    (S % seen)-th newest lease this node delivered (0: the
 *                    last one; the last 64 are kept), damaged by M % 8:
 *                    0-3 none, 4 lease id, 5 epoch, 6 job id cut short,
 *                    7 no lease at all.
 */
#ifndef SLUICE_NODE_FUZZ_H
#define SLUICE_NODE_FUZZ_H

#define NF_MAX_OPS 64

enum {
    NF_RAW = 0,     /* u8 n; 1 + n%4 chunks sent as the frames of one message */
    NF_PUBLISH,     /* u8 n; 1 + n%4 jobs, each:
                       u8 flags, queue, u8 priority (< 240: %10, else as is),
                       id: flags&3 0-1 fresh, 2 the previous id, 3 chunk;
                       chunk payload;
                       flags&4    u8 not_before (ms from now; raw i64 if &64)
                       flags&8    u8 deadline (signed ms from now; raw if &64)
                       flags&16   u8 idempotency key "k<u8%8>"
                       flags&32   u8 max_attempts (%5)
                       flags&64   chunk header key, chunk header value,
                                  chunk trace id, chunk breaker key       */
    NF_SUBSCRIBE,   /* queue, u8 credit (255: u32 follows), chunk consumer id */
    NF_CREDIT,      /* queue, u8 credit (255: u32 follows) */
    NF_UNSUBSCRIBE, /* queue */
    NF_ACK,         /* u8 n; 1 + n%4 items: lease, chunk result */
    NF_FAIL,        /* lease, u8 retryable (&1), chunk error */
    NF_TOUCH,       /* lease, u16 extend_ms */
    NF_ADMIN,       /* u8 op (%5; 4: an unknown op u8+4), queue */
    NF_ODD,         /* u8 v: a kind only a node sends (v%7: heartbeat, confirm,
                       deliver, lease reply, error, admin reply, no body),
                       filled from the following bytes */
    NF_SYNC,        /* Admin STATS round trip (at most 8 per input): the
                       deliveries so far are known to later lease ops */
    NF_RECONNECT,   /* chunk: socket 1 reconnects with this routing id (first
                       byte made non-zero, a counter appended) */
    NF_BIG,         /* u8 k: one frame of max_frame + 1 + 3k bytes */
    NF_WAIT,        /* u8 t: read replies for (t%16)*2 ms (timers, expiries;
                       at most 40 ms per input) */
    NF_KINDS
};

#define NF_CODE(kind, node, sock) ((unsigned char)((kind) | ((node) << 4) | ((sock) << 6)))

#endif
