/* 256 trap stubs (16 bytes apart) and the common path into trap() (rt/rt.c) for protected mode.
 * Vectors with an error code (SDM Vol. 3A 6.3.1, Table 6-1): 8, 10-14, 17, 21, 29, 30. */
    .text
    .code32
    .balign 16
    .globl isr_table
isr_table:
    .set vec, 0
    .rept 256
    .balign 16
    .if (vec == 8) | ((vec >= 10) & (vec <= 14)) | (vec == 17) | (vec == 21) | (vec == 29) | (vec == 30)
    .else
    pushl   $0
    .endif
    pushl   $vec
    jmp     isr_common
    .set vec, vec + 1
    .endr

isr_common:
    pushal                      /* eax ecx edx ebx esp ebp esi edi */
    pushl   %ds
    pushl   %es
    pushl   %fs
    pushl   %gs
    subl    $12, %esp           /* struct frame has 15 register slots */
    movl    $0x18, %eax
    movl    %eax, %ds
    movl    %eax, %es
    pushl   %esp
    call    trap
    addl    $16, %esp
    popl    %gs
    popl    %fs
    popl    %es
    popl    %ds
    popal
    addl    $8, %esp
    iretl
    .section .note.GNU-stack, "", @progbits
