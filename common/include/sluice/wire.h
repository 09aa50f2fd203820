/* wire.h -- Envelope framing over ZeroMQ sockets (docs/protocol.md).
 *
 * One Envelope per ZeroMQ message. A ROUTER (the node) sends and receives
 * [routing id][envelope]; a DEALER (clients) sends and receives [envelope].
 * These calls pack, frame, check and unpack; they never log. Sockets are
 * plain libzmq `void *` and stay the caller's. */
#ifndef SLUICE_WIRE_H
#define SLUICE_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sluice.pb-c.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SL_WIRE_RID_MAX 255     /* libzmq's limit on a routing id */

/* One received message. Embedded: sl_wire_msg_release frees what it holds. */
typedef struct {
    uint8_t rid[SL_WIRE_RID_MAX];   /* ROUTER: the sender's routing id */
    size_t rid_len;                 /* 0 on a DEALER */
    size_t size;                    /* bytes in the envelope frame */
    Sluice__V1__Envelope *env;      /* owned by the msg; NULL on error */
} sl_wire_msg_t;

/* Pack env and send it as one message: on a ROUTER (rid_len > 0) the
 * routing-id frame goes first; on a DEALER pass rid NULL and rid_len 0.
 * flags: 0 or ZMQ_DONTWAIT. env stays the caller's. Retries on EINTR.
 *
 * A ROUTER silently drops messages to a routing id it does not know, unless
 * the socket has ZMQ_ROUTER_MANDATORY set, in which case that is
 * SL_ENOTFOUND.
 *
 * Returns 0; SL_EAGAIN (ZMQ_DONTWAIT and the peer's queue is full, or
 * ZMQ_SNDTIMEO passed); SL_ENOTFOUND; SL_ECLOSED (context terminated);
 * SL_EINVAL (bad socket, rid_len over SL_WIRE_RID_MAX); SL_ENOMEM;
 * SL_ESYS. */
int sl_wire_send(void *sock, const void *rid, size_t rid_len,
                 const Sluice__V1__Envelope *env, int flags);

/* Receive one whole message, blocking (until ZMQ_RCVTIMEO, if set). `router`
 * says the socket is a ROUTER, so the message must be exactly [rid][env];
 * otherwise exactly [env]. max_frame bounds the envelope frame (0: no
 * bound); the whole frame is in memory before it can be measured, so a
 * daemon also sets ZMQ_MAXMSGSIZE to a hard ceiling above it.
 *
 * On return out is always initialised. Returns:
 *   0             out->env holds the envelope (its body_case may be
 *                 NOT_SET: a kind this build does not know)
 *   SL_EPROTO     wrong number of frames or undecodable envelope
 *   SL_ETOOBIG    envelope frame larger than max_frame
 *                 -- for both, the whole message was consumed and dropped,
 *                    out->env is NULL and out->rid / rid_len name the sender
 *                    so the caller can answer Error{BAD_MESSAGE}
 *   SL_EAGAIN     nothing arrived before ZMQ_RCVTIMEO
 *   SL_ECLOSED    context terminated
 *   SL_EINVAL, SL_ENOMEM, SL_ESYS
 * Retries on EINTR: a daemon that must notice signals polls first
 * (zmq_poll) and then calls sl_wire_try_recv. */
int sl_wire_recv(void *sock, bool router, size_t max_frame,
                 sl_wire_msg_t *out);

/* sl_wire_recv that does not wait: SL_EAGAIN when no message is queued. */
int sl_wire_try_recv(void *sock, bool router, size_t max_frame,
                     sl_wire_msg_t *out);

/* The envelope frame of a received message, undecoded: data is borrowed
 * for the call. Returns 0 or an SL_E* code, which the receive returns. */
typedef int (*sl_wire_decode_fn)(const void *data, size_t size, void *arg);

/* sl_wire_try_recv that hands the envelope frame to decode instead of
 * unpacking it (out->env stays NULL): for a daemon that reads some kinds
 * in place. Frame checks and return codes as sl_wire_recv; decode runs
 * only for a message of the right frames within max_frame, and its
 * non-zero return is returned. */
int sl_wire_try_recv_with(void *sock, bool router, size_t max_frame, sl_wire_msg_t *out,
                          sl_wire_decode_fn decode, void *arg);

/* Free the envelope a received message holds; out may then be reused.
 * Harmless on a message from a failed receive and when called twice. */
void sl_wire_msg_release(sl_wire_msg_t *msg);

/* Bind a new ROUTER socket of zctx to endpoint with the options every
 * Sluice server uses: no linger, deep queues, and a hard ceiling 1 KiB
 * above max_frame (bigger messages make ZeroMQ drop the connection rather
 * than buffer them whole). *bound gets the endpoint actually bound, port
 * resolved (caller owns: free()). Returns the socket (caller closes), or
 * NULL with *err: SL_ESYS (socket or bind failed, errno from ZeroMQ),
 * SL_ENOMEM. */
void *sl_wire_router_bind(void *zctx, const char *endpoint, uint64_t max_frame,
                          char **bound, int *err);

/* Pack env into a new buffer: *buf is caller-owned (free()), *len its size
 * (0 for an empty envelope, *buf then still non-NULL). Returns 0 or
 * SL_ENOMEM. */
int sl_wire_pack(const Sluice__V1__Envelope *env, uint8_t **buf, size_t *len);

/* Unpack len bytes into a new envelope: *out is caller-owned, freed with
 * sl_wire_env_free. Returns 0, SL_EPROTO (not an Envelope), SL_ENOMEM. */
int sl_wire_unpack(const void *data, size_t len, Sluice__V1__Envelope **out);

/* protobuf-c hands string fields over NUL-terminated, so a string with a
 * NUL byte inside would silently lose its tail ("q\0junk" would read as
 * "q"). This walks the encoded envelope: the proto name of the first
 * string field, at any depth, holding a NUL byte ("queue", ...), or NULL
 * if there is none. Call it on bytes sl_wire_unpack accepted. */
const char *sl_wire_nul_string(const void *data, size_t len);

/* Free an envelope from sl_wire_unpack and set *env to NULL; accepts NULL
 * and *env NULL. Not for envelopes the caller built on the stack. */
void sl_wire_env_free(Sluice__V1__Envelope **env);

/* "publish", "confirm", ..., "admin_reply" (the proto field name of the
 * body); "none" for NOT_SET and "unknown" otherwise. Static, for logs. */
const char *sl_wire_kind_name(Sluice__V1__Envelope__BodyCase kind);

#ifdef __cplusplus
}
#endif
#endif
