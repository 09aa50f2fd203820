/* wire.c -- pack, frame, check and unpack Envelopes on libzmq sockets.
 *
 * The receive side always reads a message to its last frame, whatever is
 * wrong with it, so one bad peer can never leave a half-read message that
 * would shift the framing of the next. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <zmq.h>

#include "sluice/error.h"
#include "sluice/pbwire.h"
#include "sluice/wire.h"

/* protobuf-c reports garbage and out-of-memory alike as NULL; an allocator
 * that notes failed allocations tells them apart. */
static _Thread_local bool s_alloc_failed;

static void *s_pb_alloc(void *data, size_t size)
{
    (void)data;
    void *p = malloc(size);
    if (!p)
        s_alloc_failed = true;
    return p;
}

static void s_pb_free(void *data, void *p)
{
    (void)data;
    free(p);
}

static ProtobufCAllocator s_allocator = {s_pb_alloc, s_pb_free, NULL};

/* The one place a zmq errno becomes an SL_E* code. */
static int s_err(int e)
{
    switch (e) {
    case EAGAIN: return SL_EAGAIN;
    case ETERM: return SL_ECLOSED;
    case EHOSTUNREACH: return SL_ENOTFOUND;
    case ENOMEM: return SL_ENOMEM;
    case EFSM:
    case ENOTSUP: return SL_ESTATE;
    case ENOTSOCK:
    case EFAULT:
    case EINVAL: return SL_EINVAL;
    default: return SL_ESYS;
    }
}

/* ---- packing ---------------------------------------------------------- */

int sl_wire_pack(const Sluice__V1__Envelope *env, uint8_t **buf, size_t *len)
{
    size_t n = sluice__v1__envelope__get_packed_size(env);
    uint8_t *p = malloc(n ? n : 1);
    if (!p)
        return SL_ENOMEM;
    *len = sluice__v1__envelope__pack(env, p);
    *buf = p;
    return SL_OK;
}

int sl_wire_unpack(const void *data, size_t len, Sluice__V1__Envelope **out)
{
    s_alloc_failed = false;
    *out = sluice__v1__envelope__unpack(&s_allocator, len, data);
    if (*out)
        return SL_OK;
    return s_alloc_failed ? SL_ENOMEM : SL_EPROTO;
}

static const char *s_nul_walk(const ProtobufCMessageDescriptor *d, const uint8_t *p,
                              size_t len, int depth)
{
    sl__pb_rd_t r = {p, p + len};
    sl__pb_field_t f;
    while (sl__pb_next(&r, &f) == 1) {
        if (f.wt != SL__PB_LEN)
            continue;
        const ProtobufCFieldDescriptor *fd = protobuf_c_message_descriptor_get_field(d, f.num);
        if (!fd)
            continue; /* unknown: kept as bytes, never read as a string */
        if (fd->type == PROTOBUF_C_TYPE_STRING && memchr(f.data, 0, f.len))
            return fd->name;
        if (fd->type == PROTOBUF_C_TYPE_MESSAGE && depth < 32) {
            const char *bad = s_nul_walk(fd->descriptor, f.data, f.len, depth + 1);
            if (bad)
                return bad;
        }
    }
    return NULL;
}

const char *sl_wire_nul_string(const void *data, size_t len)
{
    return s_nul_walk(&sluice__v1__envelope__descriptor, data, len, 0);
}

void sl_wire_env_free(Sluice__V1__Envelope **env)
{
    if (env && *env) {
        sluice__v1__envelope__free_unpacked(*env, &s_allocator);
        *env = NULL;
    }
}

/* ---- sending ---------------------------------------------------------- */

/* Send one frame; on failure the frame is closed here. */
static int s_send_frame(void *sock, zmq_msg_t *m, int flags)
{
    for (;;) {
        if (zmq_msg_send(m, sock, flags) >= 0)
            return SL_OK;
        if (errno != EINTR)
            break;
    }
    int rc = s_err(errno);
    zmq_msg_close(m);
    return rc;
}

int sl_wire_send(void *sock, const void *rid, size_t rid_len,
                 const Sluice__V1__Envelope *env, int flags)
{
    if (!sock || !env || rid_len > SL_WIRE_RID_MAX || (rid_len && !rid))
        return SL_EINVAL;
    flags &= ZMQ_DONTWAIT;

    /* pack straight into the frame: one allocation, no copy */
    zmq_msg_t body;
    size_t n = sluice__v1__envelope__get_packed_size(env);
    if (zmq_msg_init_size(&body, n) != 0)
        return s_err(errno);
    sluice__v1__envelope__pack(env, zmq_msg_data(&body));

    if (rid_len > 0) {
        zmq_msg_t head;
        if (zmq_msg_init_size(&head, rid_len) != 0) {
            int rc = s_err(errno);
            zmq_msg_close(&body);
            return rc;
        }
        memcpy(zmq_msg_data(&head), rid, rid_len);
        int rc = s_send_frame(sock, &head, flags | ZMQ_SNDMORE);
        if (rc != SL_OK) {
            zmq_msg_close(&body);
            return rc;
        }
    }
    /* Once the routing frame is queued the pipe has room for the rest of
     * the message: libzmq checks the high-water mark on the first frame. */
    return s_send_frame(sock, &body, flags);
}

/* ---- receiving -------------------------------------------------------- */

static void s_msg_clear(sl_wire_msg_t *out)
{
    out->rid_len = 0;
    out->size = 0;
    out->env = NULL;
}

static int s_recv_frame(void *sock, zmq_msg_t *m, int flags)
{
    for (;;) {
        if (zmq_msg_recv(m, sock, flags) >= 0)
            return SL_OK;
        if (errno != EINTR)
            return s_err(errno);
    }
}

static int s_recv(void *sock, bool router, size_t max_frame, int flags,
                  sl_wire_msg_t *out, sl_wire_decode_fn decode, void *arg)
{
    s_msg_clear(out);
    if (!sock)
        return SL_EINVAL;

    const size_t want = router ? 2 : 1;
    size_t frames = 0;
    zmq_msg_t part, body;
    bool have_body = false;
    int rc = SL_OK;
    zmq_msg_init(&part);
    zmq_msg_init(&body);
    for (;;) {
        /* Later frames of a message arrive with its first, so only the
         * first receive can wait or fail with EAGAIN. */
        rc = s_recv_frame(sock, &part, frames == 0 ? flags : 0);
        if (rc != SL_OK)
            break;
        frames++;
        bool more = zmq_msg_more(&part);
        if (router && frames == 1) {
            size_t len = zmq_msg_size(&part);
            if (len > SL_WIRE_RID_MAX)
                len = SL_WIRE_RID_MAX;
            memcpy(out->rid, zmq_msg_data(&part), len);
            out->rid_len = len;
        } else if (frames == want) {
            zmq_msg_move(&body, &part);
            have_body = true;
        }
        if (!more)
            break;
    }
    zmq_msg_close(&part);

    if (rc == SL_OK && frames != want)
        rc = SL_EPROTO;
    if (rc == SL_OK && have_body) {
        out->size = zmq_msg_size(&body);
        if (max_frame > 0 && out->size > max_frame)
            rc = SL_ETOOBIG;
        else if (decode)
            rc = decode(zmq_msg_data(&body), out->size, arg);
        else
            rc = sl_wire_unpack(zmq_msg_data(&body), out->size, &out->env);
    }
    zmq_msg_close(&body);
    if (rc != SL_OK && rc != SL_EPROTO && rc != SL_ETOOBIG)
        out->rid_len = 0;   /* nothing usable was received */
    return rc;
}

int sl_wire_recv(void *sock, bool router, size_t max_frame, sl_wire_msg_t *out)
{
    return s_recv(sock, router, max_frame, 0, out, NULL, NULL);
}

int sl_wire_try_recv(void *sock, bool router, size_t max_frame,
                     sl_wire_msg_t *out)
{
    return s_recv(sock, router, max_frame, ZMQ_DONTWAIT, out, NULL, NULL);
}

int sl_wire_try_recv_with(void *sock, bool router, size_t max_frame, sl_wire_msg_t *out,
                          sl_wire_decode_fn decode, void *arg)
{
    return s_recv(sock, router, max_frame, ZMQ_DONTWAIT, out, decode, arg);
}

void sl_wire_msg_release(sl_wire_msg_t *msg)
{
    if (msg) {
        sl_wire_env_free(&msg->env);
        msg->rid_len = 0;
        msg->size = 0;
    }
}

const char *sl_wire_kind_name(Sluice__V1__Envelope__BodyCase kind)
{
    switch (kind) {
    case SLUICE__V1__ENVELOPE__BODY__NOT_SET: return "none";
    case SLUICE__V1__ENVELOPE__BODY_PUBLISH: return "publish";
    case SLUICE__V1__ENVELOPE__BODY_CONFIRM: return "confirm";
    case SLUICE__V1__ENVELOPE__BODY_SUBSCRIBE: return "subscribe";
    case SLUICE__V1__ENVELOPE__BODY_CREDIT: return "credit";
    case SLUICE__V1__ENVELOPE__BODY_UNSUBSCRIBE: return "unsubscribe";
    case SLUICE__V1__ENVELOPE__BODY_DELIVER: return "deliver";
    case SLUICE__V1__ENVELOPE__BODY_ACK: return "ack";
    case SLUICE__V1__ENVELOPE__BODY_FAIL: return "fail";
    case SLUICE__V1__ENVELOPE__BODY_TOUCH: return "touch";
    case SLUICE__V1__ENVELOPE__BODY_LEASE_REPLY: return "lease_reply";
    case SLUICE__V1__ENVELOPE__BODY_HEARTBEAT: return "heartbeat";
    case SLUICE__V1__ENVELOPE__BODY_ERROR: return "error";
    case SLUICE__V1__ENVELOPE__BODY_ADMIN: return "admin";
    case SLUICE__V1__ENVELOPE__BODY_ADMIN_REPLY: return "admin_reply";
    default: return "unknown";
    }
}

void *sl_wire_router_bind(void *zctx, const char *endpoint, uint64_t max_frame,
                          char **bound, int *err)
{
    *bound = NULL;
    void *sock = zctx ? zmq_socket(zctx, ZMQ_ROUTER) : NULL;
    if (!sock) {
        *err = SL_ESYS;
        return NULL;
    }
    int linger = 0, hwm = 100000;
    int64_t maxmsg = (int64_t)max_frame + 1024;
    zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(sock, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(sock, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt(sock, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    /* Room for a crowd connecting at once (ZeroMQ's default is 100: the
     * rest wait out TCP's SYN retries, seconds each); the kernel caps it
     * at net.core.somaxconn. */
    int backlog = 4096;
    zmq_setsockopt(sock, ZMQ_BACKLOG, &backlog, sizeof backlog);
    char ep[256];
    size_t eplen = sizeof ep;
    if (zmq_bind(sock, endpoint) != 0 ||
        zmq_getsockopt(sock, ZMQ_LAST_ENDPOINT, ep, &eplen) != 0) {
        int e = errno;
        zmq_close(sock);
        errno = e;
        *err = SL_ESYS;
        return NULL;
    }
    if (!(*bound = strdup(ep))) {
        zmq_close(sock);
        *err = SL_ENOMEM;
        return NULL;
    }
    return sock;
}
