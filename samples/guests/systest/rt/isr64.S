/* 256 trap stubs (16 bytes apart) and the common path into trap() (rt/rt.c) for long mode.
 * Vectors with an error code (SDM Vol. 3A 6.3.1, Table 6-1): 8, 10-14, 17, 21, 29, 30. */
    .text
    .code64
    .balign 16
    .globl isr_table
isr_table:
    .set vec, 0
    .rept 256
    .balign 16
    .if (vec == 8) | ((vec >= 10) & (vec <= 14)) | (vec == 17) | (vec == 21) | (vec == 29) | (vec == 30)
    .else
    pushq   $0
    .endif
    pushq   $vec
    jmp     isr_common
    .set vec, vec + 1
    .endr

isr_common:
    pushq   %rax
    pushq   %rbx
    pushq   %rcx
    pushq   %rdx
    pushq   %rsi
    pushq   %rdi
    pushq   %rbp
    pushq   %r8
    pushq   %r9
    pushq   %r10
    pushq   %r11
    pushq   %r12
    pushq   %r13
    pushq   %r14
    pushq   %r15
    movq    %rsp, %rdi
    movq    %rsp, %rbx
    andq    $-16, %rsp
    call    trap
    movq    %rbx, %rsp
    popq    %r15
    popq    %r14
    popq    %r13
    popq    %r12
    popq    %r11
    popq    %r10
    popq    %r9
    popq    %r8
    popq    %rbp
    popq    %rdi
    popq    %rsi
    popq    %rdx
    popq    %rcx
    popq    %rbx
    popq    %rax
    addq    $16, %rsp
    iretq
    .section .note.GNU-stack, "", @progbits
