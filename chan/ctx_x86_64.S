/* ctx_x86_64.S -- coroutine context switch for the System V x86-64 ABI. */
#if defined(__x86_64__)
        .text
        .globl  sl__ctx_switch
        .type   sl__ctx_switch, @function
/* void sl__ctx_switch(sl__ctx_t *from, sl__ctx_t *to) */
sl__ctx_switch:
        .cfi_startproc
        pushq   %rbp
        pushq   %rbx
        pushq   %r12
        pushq   %r13
        pushq   %r14
        pushq   %r15
        movq    %rsp, (%rdi)
        movq    (%rsi), %rsp
        popq    %r15
        popq    %r14
        popq    %r13
        popq    %r12
        popq    %rbx
        popq    %rbp
        ret
        .cfi_endproc
        .size   sl__ctx_switch, .-sl__ctx_switch

        .globl  sl__ctx_trampoline
        .type   sl__ctx_trampoline, @function
/* First frame of a new context: entry in %rbx, its argument in %r12. */
sl__ctx_trampoline:
        .cfi_startproc
        .cfi_undefined rip
        movq    %r12, %rdi
        callq   *%rbx
        ud2
        .cfi_endproc
        .size   sl__ctx_trampoline, .-sl__ctx_trampoline
#endif
        .section .note.GNU-stack,"",@progbits
