/* ring.c -- mutex + condvar bounded ring (see ring.h). Deliberately the
 * plain version a C programmer writes first: signal on every put and take. */
#include "ring.h"

#include <stdlib.h>

int ring_init(ring_t *self, size_t cap)
{
    self->slots = calloc(cap, sizeof *self->slots);
    if (!self->slots)
        return -1;
    self->cap = cap;
    self->head = self->count = 0;
    self->closed = 0;
    pthread_mutex_init(&self->mu, NULL);
    pthread_cond_init(&self->not_empty, NULL);
    pthread_cond_init(&self->not_full, NULL);
    return 0;
}

void ring_release(ring_t *self)
{
    pthread_cond_destroy(&self->not_full);
    pthread_cond_destroy(&self->not_empty);
    pthread_mutex_destroy(&self->mu);
    free(self->slots);
    self->slots = NULL;
}

int ring_put(ring_t *self, void *v)
{
    pthread_mutex_lock(&self->mu);
    while (self->count == self->cap && !self->closed)
        pthread_cond_wait(&self->not_full, &self->mu);
    if (self->closed) {
        pthread_mutex_unlock(&self->mu);
        return -1;
    }
    self->slots[(self->head + self->count) % self->cap] = v;
    self->count++;
    pthread_cond_signal(&self->not_empty);
    pthread_mutex_unlock(&self->mu);
    return 0;
}

int ring_take(ring_t *self, void **out)
{
    pthread_mutex_lock(&self->mu);
    while (self->count == 0 && !self->closed)
        pthread_cond_wait(&self->not_empty, &self->mu);
    if (self->count == 0) {
        pthread_mutex_unlock(&self->mu);
        return -1;
    }
    *out = self->slots[self->head];
    self->head = (self->head + 1) % self->cap;
    self->count--;
    pthread_cond_signal(&self->not_full);
    pthread_mutex_unlock(&self->mu);
    return 0;
}

void ring_close(ring_t *self)
{
    pthread_mutex_lock(&self->mu);
    self->closed = 1;
    pthread_cond_broadcast(&self->not_empty);
    pthread_cond_broadcast(&self->not_full);
    pthread_mutex_unlock(&self->mu);
}
