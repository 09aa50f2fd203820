/* stats.c -- a queue's stats in libsluice: the wire's QueueStats copied
 * into sl_queue_stats_t, and one queue's stats from several nodes summed
 * into one (cluster mode). Both are generated from SL_QUEUE_STATS_FIELDS
 * (sluice/stats.h): a new field needs nothing here. */
#include <stdio.h>
#include <string.h>

#include "client_int.h"

#define S_COPY_U64(dst, src) (dst) = (src)
#define S_COPY_U32(dst, src) (dst) = (src)
#define S_COPY_BOOL(dst, src) (dst) = (src)
#define S_COPY_RATE(dst, src) (dst) = (src)
#define S_COPY_TEXT(dst, src) snprintf((dst), sizeof(dst), "%s", (src) ? (src) : "")

void sl__queue_stats_from_pb(sl_queue_stats_t *o, const Sluice__V1__QueueStats *q)
{
    memset(o, 0, sizeof *o);
#define S_COPY(field, kind, size, merge, head, help) S_COPY_##kind(o->field, q->field);
    SL_QUEUE_STATS_FIELDS(S_COPY)
#undef S_COPY
}

#define S_MERGE_SUM(into, from) (into) += (from)
#define S_MERGE_ANY(into, from) (into) = (into) || (from)
#define S_MERGE_FIRST(into, from) (void)(from)

void sl__queue_stats_merge(sl_queue_stats_t *into, const sl_queue_stats_t *from)
{
#define S_MERGE(field, kind, size, merge, head, help) S_MERGE_##merge(into->field, from->field);
    SL_QUEUE_STATS_FIELDS(S_MERGE)
#undef S_MERGE
}
