/*
 * PVH entry stub shared by every guest.
 *
 * The PVH boot protocol (Xen docs/misc/pvh.pandoc) starts the vCPU at the address in the
 * XEN_ELFNOTE_PHYS32_ENTRY note (xen/include/public/elfnote.h) in 32-bit protected mode,
 * paging off, flat 4 GiB segments, with EBX = guest-physical address of struct hvm_start_info.
 * No stack is provided: we set one up, clear .bss and call guest_start(start_info).
 */
#include <xen/elfnote.h>

    .section .note.Xen, "a", @note
    .balign 4
    .long 2f - 1f                   /* namesz */
    .long 4f - 3f                   /* descsz */
    .long XEN_ELFNOTE_PHYS32_ENTRY  /* type */
1:  .asciz "Xen"
2:  .balign 4
3:  .long pvh_start                 /* 32-bit physical entry point */
4:  .balign 4

    .section .text.entry, "ax"
    .code32
    .globl pvh_start
pvh_start:
    cld
    movl    $stack_top, %esp
    movl    %ebx, %esi              /* keep start_info across the .bss clear */
    movl    $__bss_start, %edi
    movl    $__bss_end, %ecx
    subl    %edi, %ecx
    xorl    %eax, %eax
    rep stosb
    pushl   %esi
    call    guest_start
    /* guest_start never returns; if it does, stop here. */
1:  cli
    hlt
    jmp     1b

    .section .bss
    .balign 16
stack_bottom:
    .skip 16384
stack_top:
    .section .note.GNU-stack, "", @progbits
