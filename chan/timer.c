/* timer.c -- one timer thread over a pairing heap of deadlines. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <time.h>

#include "timer.h"
#include "sluice/chan.h"

static struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    pthread_once_t once;
    sl__timer_t *root;
    uint64_t count;
    int64_t sleeping_until; /* deadline the thread sleeps to; 0 = awake */
} s_t = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_ONCE_INIT,
         NULL, 0, 0};

/* --- pairing heap ------------------------------------------------------ */

static sl__timer_t *s_meld(sl__timer_t *a, sl__timer_t *b)
{
    if (!a)
        return b;
    if (!b)
        return a;
    if (b->when < a->when) {
        sl__timer_t *t = a;
        a = b;
        b = t;
    }
    /* b becomes a's first child; prev of a first child is its parent. */
    b->next = a->child;
    if (a->child)
        a->child->prev = b;
    b->prev = a;
    a->child = b;
    a->next = a->prev = NULL;
    return a;
}

/* Two-pass merge of a sibling list into one heap. */
static sl__timer_t *s_merge_pairs(sl__timer_t *first)
{
    sl__timer_t *pairs = NULL; /* melded pairs, linked through next, reversed */
    while (first) {
        sl__timer_t *a = first, *b = first->next;
        first = b ? b->next : NULL;
        a->next = a->prev = NULL;
        if (b)
            b->next = b->prev = NULL;
        sl__timer_t *m = s_meld(a, b);
        m->next = pairs;
        pairs = m;
    }
    sl__timer_t *root = NULL;
    while (pairs) {
        sl__timer_t *n = pairs->next;
        pairs->next = NULL;
        root = s_meld(root, pairs);
        pairs = n;
    }
    return root;
}

static void s_remove(sl__timer_t *t)
{
    if (t == s_t.root) {
        s_t.root = s_merge_pairs(t->child);
    } else {
        if (t->prev->child == t)
            t->prev->child = t->next;
        else
            t->prev->next = t->next;
        if (t->next)
            t->next->prev = t->prev;
        t->next = t->prev = NULL;
        s_t.root = s_meld(s_t.root, s_merge_pairs(t->child));
    }
    t->child = NULL;
    t->in_heap = false;
    s_t.count--;
}

/* --- the thread -------------------------------------------------------- */

static void *s_timer_main(void *arg)
{
    (void)arg;
    /* Linux lets a sleeping thread wake up to 50 us late so that wake-ups
     * can be merged; every timeout in the process would inherit that. */
    prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0);
    pthread_mutex_lock(&s_t.lock);
    for (;;) {
        int64_t now = sl_now();
        sl__timer_t *later = NULL, **tail = &later; /* fired outside the lock, */
        while (s_t.root && s_t.root->when <= now) {   /* in deadline order     */
            sl__timer_t *t = s_t.root;
            s_remove(t);
            if (t->under_lock) {
                t->fire(t);
            } else {
                t->next = NULL;
                *tail = t;
                tail = &t->next;
            }
        }
        if (later) {
            pthread_mutex_unlock(&s_t.lock);
            while (later) {
                sl__timer_t *n = later->next;
                later->next = NULL;
                later->fire(later);
                later = n;
            }
            pthread_mutex_lock(&s_t.lock);
            continue;
        }
        if (s_t.root) {
            int64_t when = s_t.root->when;
            struct timespec ts = {(time_t)(when / 1000000000), (long)(when % 1000000000)};
            s_t.sleeping_until = when;
            pthread_cond_timedwait(&s_t.cond, &s_t.lock, &ts);
        } else {
            s_t.sleeping_until = INT64_MAX;
            pthread_cond_wait(&s_t.cond, &s_t.lock);
        }
        s_t.sleeping_until = 0;
    }
    return NULL;
}

static void s_start(void)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_destroy(&s_t.cond);
    pthread_cond_init(&s_t.cond, &ca);
    pthread_condattr_destroy(&ca);

    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_t th;
    /* Without the timer thread no deadline could ever fire. */
    if (pthread_create(&th, &attr, s_timer_main, NULL) != 0)
        abort();
    pthread_attr_destroy(&attr);
}

void sl__timer_add(sl__timer_t *t)
{
    pthread_once(&s_t.once, s_start);
    t->child = t->next = t->prev = NULL;
    pthread_mutex_lock(&s_t.lock);
    t->in_heap = true;
    s_t.count++;
    s_t.root = s_meld(s_t.root, t);
    /* Wake the thread only when it sleeps past the new deadline. */
    if (s_t.sleeping_until && t->when < s_t.sleeping_until)
        pthread_cond_signal(&s_t.cond);
    pthread_mutex_unlock(&s_t.lock);
}

bool sl__timer_cancel(sl__timer_t *t)
{
    bool removed = false;
    pthread_mutex_lock(&s_t.lock);
    if (t->in_heap) {
        s_remove(t);
        removed = true;
    }
    pthread_mutex_unlock(&s_t.lock);
    return removed;
}

uint64_t sl__timer_count(void)
{
    pthread_mutex_lock(&s_t.lock);
    uint64_t n = s_t.count;
    pthread_mutex_unlock(&s_t.lock);
    return n;
}
