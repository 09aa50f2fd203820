/* ctx.c -- building the first frame of a coroutine context. */
#include <stdint.h>

#include "ctx.h"

#if defined(__x86_64__)
void sl__ctx_trampoline(void);

void sl__ctx_make(sl__ctx_t *ctx, void *lo, size_t size, void (*entry)(void *), void *arg)
{
    /* After sl__ctx_switch pops six registers and returns into the
     * trampoline, %rsp is `top`: 16-byte aligned, as its call needs. */
    uintptr_t top = ((uintptr_t)lo + size) & ~(uintptr_t)15;
    void **sp = (void **)top;
    *--sp = (void *)sl__ctx_trampoline;  /* return address          */
    *--sp = NULL;                        /* rbp                     */
    *--sp = (void *)entry;               /* rbx                     */
    *--sp = arg;                         /* r12                     */
    *--sp = NULL;                        /* r13                     */
    *--sp = NULL;                        /* r14                     */
    *--sp = NULL;                        /* r15                     */
    ctx->sp = sp;
}
#else
#include <stdlib.h>

static void s_start(unsigned hi, unsigned lo_, unsigned ehi, unsigned elo)
{
    void *arg = (void *)(((uintptr_t)hi << 32) | lo_);
    void (*entry)(void *) = (void (*)(void *))(((uintptr_t)ehi << 32) | elo);
    entry(arg);
    abort();
}

void sl__ctx_make(sl__ctx_t *ctx, void *lo, size_t size, void (*entry)(void *), void *arg)
{
    uintptr_t a = (uintptr_t)arg, e = (uintptr_t)entry;
    getcontext(&ctx->uc);
    ctx->uc.uc_stack.ss_sp = lo;
    ctx->uc.uc_stack.ss_size = size;
    ctx->uc.uc_link = NULL;
    makecontext(&ctx->uc, (void (*)(void))s_start, 4, (unsigned)(a >> 32), (unsigned)a,
                (unsigned)(e >> 32), (unsigned)e);
}

void sl__ctx_switch(sl__ctx_t *from, sl__ctx_t *to)
{
    swapcontext(&from->uc, &to->uc);
}
#endif
