/* dead.c -- a queue's dead jobs in libsluice: JobRecords decoded into
 * sl_dead_job_t (the Job's bytes unpacked, payload and strings copied into
 * one allocation per job), the calls that list, show, requeue and purge
 * them, and in cluster mode the list walked node by node under one cursor
 * ("<hex id>@<node id>"). Each call is one sl_client_admin_ex. */
#include <stdalign.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client_int.h"

/* --- decoding ---------------------------------------------------------- */

static const char *s_str(const char *s)
{
    return s ? s : "";
}

/* Copy s (with its NUL) to *at and return where it went; *at moves on. */
static const char *s_put(char **at, const char *s)
{
    size_t n = strlen(s) + 1;
    char *dst = *at;
    memcpy(dst, s, n);
    *at += n;
    return dst;
}

static int s_job_from_pb(sl_dead_job_t *o, const Sluice__V1__JobRecord *r)
{
    memset(o, 0, sizeof *o);
    if (r->id.len != SL_ID_LEN)
        return SL_EPROTO;
    /* The job's bytes as published, which the node decoded when it took
     * them: they decode here too, or the reply is nonsense. */
    Sluice__V1__Job *j = sluice__v1__job__unpack(NULL, r->job.len, r->job.data);
    if (!j)
        return SL_EPROTO;
    const char *last_error = s_str(r->last_error), *reason = s_str(r->reason);
    const char *ikey = s_str(j->idempotency_key), *bkey = s_str(j->breaker_key);
    size_t size = j->payload.len + 1 + strlen(last_error) + 1 + strlen(reason) + 1 +
                  strlen(ikey) + 1 + strlen(bkey) + 1;
    for (size_t i = 0; i < j->n_headers; i++)
        size += strlen(s_str(j->headers[i]->key)) + 1 + strlen(s_str(j->headers[i]->value)) + 1;
    /* The headers' array goes last, aligned; payload first, so that the
     * allocation is the payload's pointer. */
    size_t align = alignof(sl_header_t);
    size_t hat = (size + align - 1) / align * align;
    size = hat + j->n_headers * sizeof(sl_header_t);
    char *mem = malloc(size);
    if (!mem) {
        sluice__v1__job__free_unpacked(j, NULL);
        return SL_ENOMEM;
    }
    if (j->payload.len)
        memcpy(mem, j->payload.data, j->payload.len);
    mem[j->payload.len] = '\0';
    char *at = mem + j->payload.len + 1;
    o->payload = mem;
    o->payload_len = j->payload.len;
    o->last_error = s_put(&at, last_error);
    o->reason = s_put(&at, reason);
    o->idempotency_key = s_put(&at, ikey);
    o->breaker_key = s_put(&at, bkey);
    sl_header_t *hs = (sl_header_t *)(void *)(mem + hat);
    for (size_t i = 0; i < j->n_headers; i++) {
        hs[i].key = s_put(&at, s_str(j->headers[i]->key));
        hs[i].value = s_put(&at, s_str(j->headers[i]->value));
    }
    o->headers = j->n_headers ? hs : NULL;
    o->n_headers = j->n_headers;
    memcpy(o->id, r->id.data, SL_ID_LEN);
    snprintf(o->queue, sizeof o->queue, "%s", s_str(j->queue));
    snprintf(o->node_id, sizeof o->node_id, "%s", s_str(r->node_id));
    o->attempt = r->attempt;
    o->failures = r->failures;
    o->redeliveries = r->redeliveries;
    o->first_ms = r->first_ms;
    o->last_ms = r->last_ms;
    o->priority = j->priority;
    o->max_attempts = j->max_attempts;
    o->not_before_ms = j->not_before_ms;
    o->deadline_ms = j->deadline_ms;
    sluice__v1__job__free_unpacked(j, NULL);
    return SL_OK;
}

int sl__dead_jobs_from_pb(sl_dead_job_t **out, size_t *n_out, Sluice__V1__JobRecord **recs,
                          size_t n)
{
    *out = NULL;
    *n_out = 0;
    if (n == 0)
        return SL_OK;
    sl_dead_job_t *jobs = calloc(n, sizeof *jobs);
    if (!jobs)
        return SL_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        int rc = s_job_from_pb(&jobs[i], recs[i]);
        if (rc != SL_OK) {
            sl_dead_jobs_destroy(&jobs, i);
            return rc;
        }
    }
    *out = jobs;
    *n_out = n;
    return SL_OK;
}

void sl_dead_job_release(sl_dead_job_t *job)
{
    if (!job)
        return;
    free(job->payload);
    memset(job, 0, sizeof *job);
}

void sl_dead_jobs_destroy(sl_dead_job_t **jobs_p, size_t n)
{
    if (!jobs_p || !*jobs_p)
        return;
    for (size_t i = 0; i < n; i++)
        sl_dead_job_release(&(*jobs_p)[i]);
    free(*jobs_p);
    *jobs_p = NULL;
}

int sl__dead_append(sl_admin_reply_t *into, sl_admin_reply_t *from)
{
    if (from->n_dead == 0)
        return SL_OK;
    sl_dead_job_t *all = realloc(into->dead, (into->n_dead + from->n_dead) * sizeof *all);
    if (!all)
        return SL_ENOMEM;
    memcpy(all + into->n_dead, from->dead, from->n_dead * sizeof *all);
    into->dead = all;
    into->n_dead += from->n_dead;
    free(from->dead); /* the jobs' allocations moved with them */
    from->dead = NULL;
    from->n_dead = 0;
    return SL_OK;
}

/* --- the arguments ----------------------------------------------------- */

static bool s_is_dead_op(int op)
{
    return op >= SL_ADMIN_DEAD_LIST && op <= SL_ADMIN_DEAD_PURGE;
}

int sl__dead_check(int op, const sl_admin_params_t *params, bool cluster,
                   sl_admin_reply_t *reply)
{
    if (!s_is_dead_op(op))
        return SL_OK;
    static const sl_admin_params_t none = {0};
    const sl_admin_params_t *p = params ? params : &none;
    const char *why = NULL;
    const sl_dead_sel_t *s = &p->dead;
    int chosen = (s->id != NULL) + s->all + (s->older_than_ms != 0);
    switch (op) {
    case SL_ADMIN_DEAD_LIST: {
        /* One node's cursor is a job id (a cluster's: dead.c's walk checks
         * its own). */
        uint8_t id[SL_ID_LEN];
        if (p->after && strlen(p->after) >= SL_DEAD_CURSOR_MAX)
            why = "not a dead-job cursor (too long)";
        else if (!cluster && p->after && p->after[0] && sl_id_from_hex(p->after, id) != SL_OK)
            why = "not a dead-job cursor: 32 hex digits, a page's next";
        break;
    }
    case SL_ADMIN_DEAD_SHOW:
        if (!s->id)
            why = "DEAD_SHOW needs a job id";
        break;
    default:
        if (s->older_than_ms < 0)
            why = "older_than_ms must be > 0";
        else if (chosen != 1)
            why = "say which dead jobs: one of id, all, older_than_ms";
        break;
    }
    if (!why)
        return SL_OK;
    snprintf(reply->node_text, sizeof reply->node_text, "%s", why);
    return SL_EINVAL;
}

int sl__dead_status(int op, const sl_admin_params_t *params, int rc,
                    const sl_admin_reply_t *reply)
{
    if (!s_is_dead_op(op))
        return rc;
    /* Our ids are always 16 bytes: BAD_ID can only mean "no such job". */
    if (rc == SL_EINVAL && reply->node_code == SL_CODE_BAD_ID)
        return SL_ENOTFOUND;
    /* DEAD_LIST refuses an `after` whose job is dead no more. */
    if (op == SL_ADMIN_DEAD_LIST && rc == SL_EPROTO &&
        reply->node_code == SL_CODE_BAD_MESSAGE && params && params->after && params->after[0])
        return SL_ESTATE;
    return rc;
}

/* --- cluster mode: the list, node after node --------------------------- */

static int s_by_node_id(const void *a, const void *b)
{
    const sl_cluster_node_t *x = *(const sl_cluster_node_t *const *)a;
    const sl_cluster_node_t *y = *(const sl_cluster_node_t *const *)b;
    return strcmp(x->node_id, y->node_id);
}

int sl__cluster_dead_list(sl_client_t *c, const char *queue, const sl_admin_params_t *params,
                          sl_admin_reply_t *reply, int64_t deadline)
{
    /* The cursor: "<hex>@<node>" (after hex on node) or "@<node>" (node
     * from its oldest); nodes in node-id order. */
    const char *after = params && params->after ? params->after : "";
    char hex[SL_ID_HEX_LEN + 1] = "", at[sizeof reply->node_id] = "";
    if (after[0]) {
        const char *sep = strchr(after, '@');
        size_t hl = sep ? (size_t)(sep - after) : 0;
        uint8_t id[SL_ID_LEN];
        if (!sep || (hl && hl != SL_ID_HEX_LEN) || !sep[1] || strlen(sep + 1) >= sizeof at ||
            (hl && (memcpy(hex, after, hl), sl_id_from_hex(hex, id) != SL_OK))) {
            snprintf(reply->node_text, sizeof reply->node_text,
                     "not a cursor of a cluster's dead list: '%.64s'", after);
            return SL_EINVAL;
        }
        memcpy(at, sep + 1, strlen(sep + 1) + 1);
    }
    sl_cluster_view_t view;
    int rc = sl_client_cluster(c, &view, deadline);
    if (rc != SL_OK) {
        sl_cluster_view_release(&view);
        return rc;
    }
    snprintf(reply->node_id, sizeof reply->node_id, "%s", view.coordinator_id);
    reply->epoch = view.epoch;
    const sl_cluster_node_t **nodes = calloc(view.n_nodes + 1, sizeof *nodes);
    if (!nodes) {
        sl_cluster_view_release(&view);
        return SL_ENOMEM;
    }
    size_t n = 0;
    for (size_t i = 0; i < view.n_nodes; i++)
        if (view.nodes[i].alive)
            nodes[n++] = &view.nodes[i];
    qsort(nodes, n, sizeof *nodes, s_by_node_id);
    /* Start at the cursor's node, or (gone meanwhile) the one after it. */
    size_t k = 0;
    while (at[0] && k < n && strcmp(nodes[k]->node_id, at) < 0)
        k++;
    if (k < n && strcmp(nodes[k]->node_id, at) != 0)
        hex[0] = '\0';
    size_t found = 0;
    for (; k < n; k++, hex[0] = '\0') {
        sl_admin_params_t one_p = params ? *params : (sl_admin_params_t){0};
        one_p.after = hex;
        sl_admin_reply_t one;
        int err = sl__cluster_node_admin(c, nodes[k], SL_ADMIN_DEAD_LIST, queue, &one_p, &one,
                                         deadline);
        reply->peers++;
        if (err == SL_ENOTFOUND) { /* no such queue there */
            sl_admin_reply_release(&one);
            continue;
        }
        if (err != SL_OK) {
            rc = err;
            reply->node_code = one.node_code;
            snprintf(reply->node_text, sizeof reply->node_text, "node %.100s: %.140s",
                     nodes[k]->node_id, one.node_text[0] ? one.node_text : sl_strerror(err));
            sl_admin_reply_release(&one);
            break;
        }
        found++;
        if (one.n_dead == 0 && !one.next[0]) { /* none here */
            sl_admin_reply_release(&one);
            continue;
        }
        rc = sl__dead_append(reply, &one);
        if (one.next[0])
            snprintf(reply->next, sizeof reply->next, "%.*s@%.127s", SL_ID_HEX_LEN, one.next,
                     nodes[k]->node_id);
        else if (k + 1 < n)
            snprintf(reply->next, sizeof reply->next, "@%.127s", nodes[k + 1]->node_id);
        sl_admin_reply_release(&one);
        break;
    }
    free(nodes);
    sl_cluster_view_release(&view);
    /* "No such queue" only from the start of a list no node has. */
    if (rc == SL_OK && found == 0 && !after[0])
        return SL_ENOTFOUND;
    return rc;
}

/* --- the calls ---------------------------------------------------------- */

void sl_dead_page_release(sl_dead_page_t *page)
{
    if (!page)
        return;
    sl_dead_jobs_destroy(&page->jobs, page->n);
    memset(page, 0, sizeof *page);
}

int sl_client_dead_list(sl_client_t *self, const char *queue, const char *after, uint32_t limit,
                        sl_dead_page_t *page, int64_t deadline)
{
    if (page)
        memset(page, 0, sizeof *page);
    if (!page)
        return SL_EINVAL;
    sl_admin_params_t p = {.after = after, .limit = limit};
    sl_admin_reply_t rep;
    int rc = sl_client_admin_ex(self, SL_ADMIN_DEAD_LIST, queue, &p, &rep, deadline);
    if (rc == SL_OK) {
        page->jobs = rep.dead;
        page->n = rep.n_dead;
        memcpy(page->next, rep.next, sizeof page->next);
        rep.dead = NULL;
        rep.n_dead = 0;
    }
    sl_admin_reply_release(&rep);
    return rc;
}

int sl_client_dead_list_all(sl_client_t *self, const char *queue, sl_dead_job_t **jobs_out,
                            size_t *n_out, int64_t deadline)
{
    if (!jobs_out || !n_out)
        return SL_EINVAL;
    *jobs_out = NULL;
    *n_out = 0;
    sl_admin_reply_t all = {0};
    int rc = SL_OK;
    for (int tries = 0; tries < 4; tries++) {
        char after[SL_DEAD_CURSOR_MAX] = "";
        for (;;) {
            sl_dead_page_t page;
            rc = sl_client_dead_list(self, queue, after, 0, &page, deadline);
            if (rc == SL_OK) {
                sl_admin_reply_t moved = {.dead = page.jobs, .n_dead = page.n};
                rc = sl__dead_append(&all, &moved);
                if (rc == SL_OK) {
                    page.jobs = NULL;
                    page.n = 0;
                }
            }
            /* Cursors only move on: the same one twice would loop. */
            bool more = rc == SL_OK && page.next[0] && strcmp(page.next, after) != 0;
            if (more)
                memcpy(after, page.next, sizeof after);
            sl_dead_page_release(&page);
            if (!more)
                break;
        }
        if (rc != SL_ESTATE)
            break;
        /* A job under the cursor came back to life: walk again. */
        sl_dead_jobs_destroy(&all.dead, all.n_dead);
        all.n_dead = 0;
    }
    if (rc != SL_OK) {
        sl_dead_jobs_destroy(&all.dead, all.n_dead);
        return rc;
    }
    *jobs_out = all.dead;
    *n_out = all.n_dead;
    return SL_OK;
}

int sl_client_dead_show(sl_client_t *self, const char *queue, const uint8_t *id,
                        sl_dead_job_t *job, int64_t deadline)
{
    if (job)
        memset(job, 0, sizeof *job);
    if (!job || !id)
        return SL_EINVAL;
    sl_admin_params_t p = {.dead.id = id};
    sl_admin_reply_t rep;
    int rc = sl_client_admin_ex(self, SL_ADMIN_DEAD_SHOW, queue, &p, &rep, deadline);
    if (rc == SL_OK && rep.n_dead == 0)
        rc = SL_EPROTO; /* the node said yes and showed nothing */
    if (rc == SL_OK) {
        *job = rep.dead[0];
        memset(&rep.dead[0], 0, sizeof rep.dead[0]); /* moved to *job */
    }
    sl_admin_reply_release(&rep);
    return rc;
}

static int s_move(sl_client_t *self, sl_admin_op_t op, const char *queue,
                  const sl_dead_sel_t *sel, uint64_t *affected, int64_t deadline)
{
    if (affected)
        *affected = 0;
    if (!sel)
        return SL_EINVAL;
    sl_admin_params_t p = {.dead = *sel};
    sl_admin_reply_t rep;
    int rc = sl_client_admin_ex(self, op, queue, &p, &rep, deadline);
    if (rc == SL_OK && affected)
        *affected = rep.affected;
    sl_admin_reply_release(&rep);
    return rc;
}

int sl_client_dead_requeue(sl_client_t *self, const char *queue, const sl_dead_sel_t *sel,
                           uint64_t *affected, int64_t deadline)
{
    return s_move(self, SL_ADMIN_DEAD_REQUEUE, queue, sel, affected, deadline);
}

int sl_client_dead_purge(sl_client_t *self, const char *queue, const sl_dead_sel_t *sel,
                         uint64_t *affected, int64_t deadline)
{
    return s_move(self, SL_ADMIN_DEAD_PURGE, queue, sel, affected, deadline);
}
