/* error.h -- the one error table of Sluice.
 *
 * Every function that can fail returns 0 (SL_OK) or a negative SL_E* code.
 * The table below generates the enum, sl_strerror() and sl_err_name(). */
#ifndef SLUICE_ERROR_H
#define SLUICE_ERROR_H

#ifdef __cplusplus
extern "C" {
#endif

/* X(name, value, message) */
#define SL_ERRNO_MAP(X)                                                     \
    X(ECLOSED,   -1,  "channel closed")                                      \
    X(EAGAIN,    -2,  "operation would block")                               \
    X(ETIMEDOUT, -3,  "deadline passed")                                     \
    X(ENOMEM,    -4,  "out of memory")                                       \
    X(EINVAL,    -5,  "invalid argument")                                    \
    X(ELIMIT,    -6,  "limit reached")                                       \
    X(EDEADLK,   -7,  "operation would block a scheduler thread")            \
    X(ESYS,      -8,  "system call failed")                                  \
    X(ESTATE,    -9,  "object in wrong state for this call")                 \
    X(EPROTO,    -10, "malformed message")                                   \
    X(ETOOBIG,   -11, "message too large")                                   \
    X(ENOTFOUND, -12, "no such item or peer")                                \
    X(ECONFIG,   -13, "bad configuration")

typedef enum {
    SL_OK = 0,
#define SL__ERR_ENUM(name, val, msg) SL_##name = (val),
    SL_ERRNO_MAP(SL__ERR_ENUM)
#undef SL__ERR_ENUM
} sl_err_t;

/* Human-readable message for an error code; never NULL, static storage. */
const char *sl_strerror(int err);

/* Symbolic name ("SL_ECLOSED") for an error code; never NULL, static storage. */
const char *sl_err_name(int err);

#ifdef __cplusplus
}
#endif
#endif
