/* pool.c -- the blocking pool behind sl_thread(): threads that may block
 * without stalling coroutines (core.async's `thread`).
 *
 * Threads are made on demand up to a limit and leave after 10 s idle;
 * work beyond the limit waits in a FIFO. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include "sched_int.h"
#include "sluice/sched.h"

#define SL__POOL_IDLE_NS (10LL * 1000000000)

typedef struct sl__job {
    struct sl__job *next;
    sl_go_fn fn;
    void *arg;
    sl_chan_t *result;
} sl__job_t;

static struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    sl__job_t *head, *tail;
    int threads, idle, max;
    int queued;                 /* jobs not yet picked up by a thread */
    _Atomic uint64_t live;
} s_p = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL, NULL, 0, 0, 64, 0, 0};

void sl__pool_configure(int max_threads)
{
    pthread_mutex_lock(&s_p.lock);
    s_p.max = max_threads > 0 ? max_threads : 64;
    pthread_mutex_unlock(&s_p.lock);
}

uint64_t sl__pool_live(void)
{
    return atomic_load(&s_p.live);
}

static void *s_pool_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&s_p.lock);
    for (;;) {
        while (!s_p.head) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += SL__POOL_IDLE_NS / 1000000000;
            s_p.idle++;
            int rc = pthread_cond_timedwait(&s_p.cond, &s_p.lock, &ts);
            s_p.idle--;
            if (rc != 0 && !s_p.head) {
                s_p.threads--;
                pthread_mutex_unlock(&s_p.lock);
                return NULL;
            }
        }
        sl__job_t *j = s_p.head;
        s_p.queued--;
        s_p.head = j->next;
        if (!s_p.head)
            s_p.tail = NULL;
        pthread_mutex_unlock(&s_p.lock);

        void *v = j->fn(j->arg);
        sl_offer(j->result, v);
        sl_chan_close(j->result);
        sl_chan_destroy(&j->result);
        free(j);
        atomic_fetch_sub(&s_p.live, 1);

        pthread_mutex_lock(&s_p.lock);
    }
}

sl_chan_t *sl_thread(sl_go_fn fn, void *arg)
{
    if (!fn)
        return NULL;
    sl__job_t *j = malloc(sizeof *j);
    sl_chan_t *result = sl_chan_new(SL_BUF_PROMISE, 0);
    if (!j || !result) {
        free(j);
        sl_chan_destroy(&result);
        return NULL;
    }
    j->next = NULL;
    j->fn = fn;
    j->arg = arg;
    j->result = sl_chan_ref(result);

    pthread_mutex_lock(&s_p.lock);
    /* Every queued job needs an idle thread of its own: an idle thread is
     * not free just because it has not woken up yet for the last job. */
    if (s_p.queued >= s_p.idle && s_p.threads < s_p.max) {
        pthread_t th;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&th, &attr, s_pool_main, NULL) == 0)
            s_p.threads++;
        pthread_attr_destroy(&attr);
        if (s_p.threads == 0) { /* nobody could ever run it */
            pthread_mutex_unlock(&s_p.lock);
            sl_chan_destroy(&j->result);
            sl_chan_destroy(&result);
            free(j);
            return NULL;
        }
    }
    if (s_p.tail)
        s_p.tail->next = j;
    else
        s_p.head = j;
    s_p.tail = j;
    s_p.queued++;
    atomic_fetch_add(&s_p.live, 1);
    pthread_cond_signal(&s_p.cond);
    pthread_mutex_unlock(&s_p.lock);
    return result;
}
