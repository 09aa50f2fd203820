/* coro.c -- coroutine stacks and fiber switches with sanitizer annotations.
 *
 * Layout of one mapping, low to high addresses:
 *   [guard page (optional)][canary][ ... stack grows down ... ][sl__coro_t]
 * Pages are touched only as the stack grows, so a parked coroutine that
 * used little stack costs one resident page. The canary is the lowest
 * SL__CANARY_BYTES of the stack staying zero: fresh anonymous memory is
 * zero, and reading it maps the kernel's shared zero page, so checking it
 * costs no resident memory (writing a pattern there would cost a page per
 * coroutine). An overflow that reaches it writes return addresses and
 * saved registers, which are not all zero. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "coro.h"

#ifdef SL_ASAN
#include <sanitizer/common_interface_defs.h>
#endif
#ifdef SL_TSAN
#include <sanitizer/tsan_interface.h>
#endif

#define SL__CANARY_BYTES 64

static size_t s_page(void)
{
    static size_t page;
    if (!page)
        page = (size_t)sysconf(_SC_PAGESIZE);
    return page;
}

int sl__coro_map_many(size_t stack_size, int guard_page, sl__coro_t **out, int n)
{
    size_t page = s_page();
    size_t rec = (sizeof(sl__coro_t) + 63) & ~(size_t)63;
    size_t guard = guard_page ? page : 0;
    size_t len = (guard + stack_size + rec + page - 1) & ~(page - 1);
    /* One mapping for n stacks: one system call and one kernel mapping
     * instead of n. Each stack can still be unmapped on its own. */
    char *map = mmap(NULL, len * (size_t)n, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (map == MAP_FAILED)
        return 0;
    for (int i = 0; i < n; i++) {
        char *m = map + len * (size_t)i;
        if (guard && mprotect(m, guard, PROT_NONE) != 0) {
            munmap(m, len * (size_t)(n - i));
            return i;
        }
        sl__coro_t *co = (sl__coro_t *)(m + len - rec);
        memset(co, 0, sizeof *co);
        co->map = m;
        co->map_size = len;
        co->fiber.lo = m + guard;
        co->fiber.size = (size_t)((char *)co - (m + guard));
        out[i] = co;
    }
    return n;
}

void sl__coro_unmap(sl__coro_t *co)
{
    munmap(co->map, co->map_size);
}

void sl__coro_prepare(sl__coro_t *co, void (*entry)(void *))
{
    /* Leave the canary out of the usable range. */
    sl__ctx_make(&co->fiber.ctx, (char *)co->fiber.lo + SL__CANARY_BYTES,
                 co->fiber.size - SL__CANARY_BYTES, entry, co);
    co->fiber.asan_fake = NULL;
#ifdef SL_TSAN
    co->fiber.tsan_fiber = __tsan_create_fiber(0);
#endif
}

void sl__coro_retire(sl__coro_t *co)
{
#ifdef SL_TSAN
    if (co->fiber.tsan_fiber)
        __tsan_destroy_fiber(co->fiber.tsan_fiber);
    co->fiber.tsan_fiber = NULL;
#endif
    (void)co;
}

void sl__coro_check_stack(const sl__coro_t *co)
{
    const volatile uint64_t *w = co->fiber.lo;
    uint64_t any = 0;
    for (size_t i = 0; i < SL__CANARY_BYTES / sizeof *w; i++)
        any |= w[i];
    if (any) {
        fprintf(stderr,
                "sluice: coroutine stack overflow (stack %zu bytes); raise "
                "sl_sched_opts_t.stack_size\n",
                co->fiber.size);
        abort();
    }
}

void sl__fiber_switch(sl__fiber_t *from, sl__fiber_t *to, bool dying)
{
#ifdef SL_ASAN
    __sanitizer_start_switch_fiber(dying ? NULL : &from->asan_fake, to->lo, to->size);
#endif
#ifdef SL_TSAN
    __tsan_switch_to_fiber(to->tsan_fiber, 0);
#endif
    (void)dying;
    sl__ctx_switch(&from->ctx, &to->ctx);
#ifdef SL_ASAN
    __sanitizer_finish_switch_fiber(from->asan_fake, NULL, NULL);
#endif
}

void sl__fiber_started(sl__fiber_t *self)
{
    (void)self;
#ifdef SL_ASAN
    __sanitizer_finish_switch_fiber(NULL, NULL, NULL);
#endif
}

void sl__fiber_of_thread(sl__fiber_t *self)
{
    memset(self, 0, sizeof *self);
    pthread_attr_t attr;
    if (pthread_getattr_np(pthread_self(), &attr) == 0) {
        pthread_attr_getstack(&attr, &self->lo, &self->size);
        pthread_attr_destroy(&attr);
    }
#ifdef SL_TSAN
    self->tsan_fiber = __tsan_get_current_fiber();
#endif
}
