/* pub.c -- sl_pub: route each value of a source to the subscribers of its
 * topic (core.async's pub/sub), with mult's bounded wait for slow ones.
 *
 * One coroutine takes from src, asks topic_fn for the topic, and delivers
 * to a snapshot of that topic's subscribers (fanout.c). Topics live in a
 * list guarded by a mutex that is never held while parking; a topic goes
 * away with its last subscriber. The handle and the loop each hold a
 * reference; the last to let go frees the pub. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "fanout.h"
#include "sluice/ops.h"
#include "sluice/sched.h"
#include "util.h"

typedef struct s_topic {
    struct s_topic *next;
    char *name;              /* owned copy */
    sl__tapset_t subs;
} s_topic_t;

struct sl_pub {
    atomic_int refs;         /* the caller's handle + the running loop */
    sl_chan_t *src;          /* owned reference                        */
    sl_topic_fn topic_fn;
    void *arg;
    int64_t timeout_ms;
    pthread_mutex_t lock;    /* guards everything below                */
    s_topic_t *topics;       /* linear list: topic counts are small    */
    bool src_done;
    uint64_t dropped;        /* values whose topic had no subscriber   */
};

static s_topic_t **s_topic_slot(sl_pub_t *p, const char *name)
{
    s_topic_t **tp = &p->topics;
    while (*tp && strcmp((*tp)->name, name) != 0)
        tp = &(*tp)->next;
    return tp; /* *tp is NULL if not found */
}

static void s_topic_free(s_topic_t *t)
{
    sl__tapset_release(&t->subs);
    free(t->name);
    free(t);
}

/* Unlink and free *tp if it has no subscribers left. Lock held. */
static void s_topic_reap(s_topic_t **tp)
{
    s_topic_t *t = *tp;
    if (t->subs.n > 0)
        return;
    *tp = t->next;
    s_topic_free(t);
}

static void s_pub_release(sl_pub_t *p)
{
    if (atomic_fetch_sub_explicit(&p->refs, 1, memory_order_acq_rel) != 1)
        return;
    while (p->topics) {
        s_topic_t *t = p->topics;
        p->topics = t->next;
        s_topic_free(t);
    }
    pthread_mutex_destroy(&p->lock);
    sl_chan_destroy(&p->src);
    free(p);
}

static void *s_pub_run(void *arg)
{
    sl_pub_t *p = arg;
    sl__fanout_t out = {0};
    void *v;
    while (sl__ops_take(p->src, &v) == SL_OK) {
        int64_t deadline = sl_deadline_ms(p->timeout_ms);
        /* User code runs outside the lock. */
        const char *topic = p->topic_fn(v, p->arg);
        for (;;) {
            int rc = SL_OK;
            pthread_mutex_lock(&p->lock);
            s_topic_t **tp = topic ? s_topic_slot(p, topic) : NULL;
            if (tp && *tp) {
                sl__tapset_purge(&(*tp)->subs);
                rc = sl__fanout_stage(&out, &(*tp)->subs);
                if (rc == SL_OK && out.n == 0)
                    s_topic_reap(tp);
            } else {
                out.n = 0;
            }
            if (rc == SL_OK && out.n == 0)
                p->dropped++;
            pthread_mutex_unlock(&p->lock);
            if (rc == SL_OK)
                break;
            sl__ops_backoff(); /* out of memory: wait, do not lose v */
        }
        if (out.n > 0)
            sl__fanout_deliver(&out, v, deadline);
    }
    sl__fanout_release(&out);
    pthread_mutex_lock(&p->lock);
    p->src_done = true;
    for (s_topic_t *t = p->topics; t; t = t->next)
        for (size_t i = 0; i < t->subs.n; i++)
            if (t->subs.v[i]->close_on_done)
                sl_chan_close(t->subs.v[i]->ch);
    pthread_mutex_unlock(&p->lock);
    s_pub_release(p);
    return NULL;
}

sl_pub_t *sl_pub_new(sl_chan_t *src, sl_topic_fn topic_fn, void *arg, int64_t sub_timeout_ms)
{
    if (!src || !topic_fn)
        return NULL;
    sl_pub_t *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    if (pthread_mutex_init(&p->lock, NULL) != 0) {
        free(p);
        return NULL;
    }
    p->src = sl_chan_ref(src);
    p->topic_fn = topic_fn;
    p->arg = arg;
    p->timeout_ms = sub_timeout_ms;
    atomic_init(&p->refs, 2);
    if (sl__ops_go(s_pub_run, p, 0) != SL_OK) {
        atomic_store(&p->refs, 1);
        s_pub_release(p);
        return NULL;
    }
    return p;
}

int sl_pub_sub(sl_pub_t *self, const char *topic, sl_chan_t *ch, bool close_sub)
{
    if (!self || !topic || !ch)
        return SL_EINVAL;
    int rc = SL_OK;
    pthread_mutex_lock(&self->lock);
    if (self->src_done) {
        /* Nothing will ever arrive: honour close_sub at once. */
        if (close_sub)
            sl_chan_close(ch);
        goto out;
    }
    s_topic_t **tp = s_topic_slot(self, topic);
    if (!*tp) {
        s_topic_t *t = calloc(1, sizeof *t);
        char *name = strdup(topic);
        if (!t || !name) {
            free(t);
            free(name);
            rc = SL_ENOMEM;
            goto out;
        }
        t->name = name;
        *tp = t;
    }
    long i = sl__tapset_find(&(*tp)->subs, ch);
    if (i >= 0) {
        (*tp)->subs.v[i]->close_on_done = close_sub;
        goto out;
    }
    sl__tap_t *s = sl__tap_new(ch, close_sub);
    rc = s ? sl__tapset_add(&(*tp)->subs, s) : SL_ENOMEM;
    if (rc != SL_OK) {
        sl__tap_release(&s);
        s_topic_reap(tp);
    }
out:
    pthread_mutex_unlock(&self->lock);
    return rc;
}

int sl_pub_unsub(sl_pub_t *self, const char *topic, sl_chan_t *ch)
{
    if (!self || !topic || !ch)
        return SL_EINVAL;
    sl__tap_t *s = NULL;
    pthread_mutex_lock(&self->lock);
    s_topic_t **tp = s_topic_slot(self, topic);
    if (*tp) {
        long i = sl__tapset_find(&(*tp)->subs, ch);
        if (i >= 0) {
            s = sl__tapset_take(&(*tp)->subs, (size_t)i);
            s_topic_reap(tp);
        }
    }
    pthread_mutex_unlock(&self->lock);
    if (!s)
        return SL_EINVAL;
    sl__tap_release(&s);
    return SL_OK;
}

void sl_pub_unsub_all(sl_pub_t *self, const char *topic)
{
    if (!self)
        return;
    s_topic_t *gone = NULL;
    pthread_mutex_lock(&self->lock);
    if (!topic) {
        gone = self->topics;
        self->topics = NULL;
    } else {
        s_topic_t **tp = s_topic_slot(self, topic);
        if (*tp) {
            gone = *tp;
            *tp = gone->next;
            gone->next = NULL;
        }
    }
    pthread_mutex_unlock(&self->lock);
    while (gone) {
        s_topic_t *t = gone;
        gone = t->next;
        s_topic_free(t);
    }
}

uint64_t sl_pub_dropped(sl_pub_t *self)
{
    if (!self)
        return 0;
    pthread_mutex_lock(&self->lock);
    uint64_t n = self->dropped;
    pthread_mutex_unlock(&self->lock);
    return n;
}

void sl_pub_destroy(sl_pub_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    s_pub_release(*self_p);
    *self_p = NULL;
}
