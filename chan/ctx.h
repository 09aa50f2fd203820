/* ctx.h -- machine context switching for coroutines.
 *
 * On x86-64 a switch saves the callee-saved registers on the old stack and
 * swaps stack pointers (ctx_x86_64.S); elsewhere it falls back to ucontext.
 * The floating-point control words are not switched: coroutines share the
 * environment of the worker thread they are pinned to. */
#ifndef SLUICE_CTX_H
#define SLUICE_CTX_H

#include <stddef.h>

#if defined(__x86_64__)
typedef struct {
    void *sp;
} sl__ctx_t;
#else
#include <ucontext.h>
typedef struct {
    ucontext_t uc;
} sl__ctx_t;
#endif

/* Make ctx start entry(arg) on the stack [lo, lo + size) at first switch. */
void sl__ctx_make(sl__ctx_t *ctx, void *lo, size_t size, void (*entry)(void *), void *arg);

/* Save the current context in from and resume to. */
void sl__ctx_switch(sl__ctx_t *from, sl__ctx_t *to);

#endif
