/* policy.h -- a queue's policy: overflow, max length, attempts, backoff,
 * dead retention. The node's options give the default; a spec
 * "key=value,key=value" overrides fields for one queue, at start
 * (--queues "NAME:spec;NAME:spec") or by Admin{op: POLICY}.
 *
 * SL__POLICY_FIELDS is the one list of the fields: it generates the
 * struct, the parser, the printer and the admin reply's fields. */
#ifndef SLUICE_NODE_POLICY_H
#define SLUICE_NODE_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sluice/node.h"

/* X(key, C field, kind, min, max): kind is INT (a count, k/m/g binary
 * suffixes), MS (a duration: ms, s, m, h) or OVERFLOW (a policy name). */
#define SL__POLICY_FIELDS(X)                                              \
    X("overflow", overflow, OVERFLOW, 0, 2)                                \
    X("max-length", max_length, INT, 1, 1000000000)                       \
    X("max-attempts", max_attempts, INT, 1, 1000000)                      \
    X("backoff-base", backoff_base_ms, MS, 1, 86400000)                   \
    X("backoff-max", backoff_max_ms, MS, 1, 86400000)                     \
    X("max-dead", max_dead, INT, 0, 100000000)

typedef struct {
#define SL__POLICY_MEMBER(key, field, kind, min, max) int64_t field;
    SL__POLICY_FIELDS(SL__POLICY_MEMBER)
#undef SL__POLICY_MEMBER
} sl__policy_t;

/* The node-wide default from the node's options. */
void sl__policy_from_opts(sl__policy_t *p, const sl_node_opts_t *o);

/* Apply spec ("key=value,...", may be empty) over *p. 0, or -1 with a
 * sentence in why (size bytes) naming the key and the bound; *p is
 * unchanged on error. */
int sl__policy_parse(sl__policy_t *p, const char *spec, char *why, size_t size);

/* "overflow=block,max-length=100000,..." into buf: every field. */
void sl__policy_format(const sl__policy_t *p, char *buf, size_t size);

/* For each "NAME:spec" of a "--queues" value (entries separated by ';'),
 * fn(name, spec, arg) with both NUL-terminated copies; stops at the first
 * nonzero return of fn and returns it. -1 with why when an entry has no
 * ':' or an invalid name. */
int sl__policy_each(const char *queues, int (*fn)(const char *name, const char *spec, void *arg),
                    void *arg, char *why, size_t size);

#endif
