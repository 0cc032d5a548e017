/*
 * PVH entry for the 32-bit test kernels: the XEN_ELFNOTE_PHYS32_ENTRY note (xen/include/public/elfnote.h)
 * and the entry stub. The vCPU starts in 32-bit flat protected mode, paging off, EBX = hvm_start_info
 * (Xen docs/misc/pvh.pandoc). We set a stack, clear .bss and call rt_main (rt/rt.c).
 */
#include <xen/elfnote.h>

    .section .note.Xen, "a", @note
    .balign 4
    .long 2f - 1f
    .long 4f - 3f
    .long XEN_ELFNOTE_PHYS32_ENTRY
1:  .asciz "Xen"
2:  .balign 4
3:  .long pvh_start
4:  .balign 4

    .section .text.entry, "ax"
    .code32
    .globl pvh_start
pvh_start:
    cli
    cld
    movl    $stack_top, %esp
    movl    %ebx, %esi
    movl    $__bss_start, %edi
    movl    $__bss_end, %ecx
    subl    %edi, %ecx
    xorl    %eax, %eax
    rep stosb
    movl    %esi, start_info
    call    rt_main
1:  cli
    hlt
    jmp     1b

/* setjmp-like pair used by enter_user: ctx_save(buf) returns 0, ctx_restore(buf) returns 1 from ctx_save. */
    .text
    .globl ctx_save, ctx_restore
ctx_save:
    movl    4(%esp), %eax
    movl    %ebx, 0(%eax)
    movl    %esi, 4(%eax)
    movl    %edi, 8(%eax)
    movl    %ebp, 12(%eax)
    leal    4(%esp), %ecx
    movl    %ecx, 16(%eax)
    movl    (%esp), %ecx
    movl    %ecx, 20(%eax)
    xorl    %eax, %eax
    ret
ctx_restore:
    movl    4(%esp), %eax
    movl    0(%eax), %ebx
    movl    4(%eax), %esi
    movl    8(%eax), %edi
    movl    12(%eax), %ebp
    movl    16(%eax), %esp
    movl    $SEL_DATA_, %ecx
    movl    %ecx, %ds
    movl    %ecx, %es
    movl    %ecx, %ss
    movl    20(%eax), %ecx
    movl    $1, %eax
    jmp     *%ecx
    .set SEL_DATA_, 0x18

    .section .bss
    .balign 16
    .skip 16384
stack_top:
    .section .note.GNU-stack, "", @progbits
