/*
 * PVH entry for the long-mode test kernels. The vCPU starts in 32-bit flat protected mode, paging off,
 * EBX = hvm_start_info (Xen docs/misc/pvh.pandoc). The stub builds 4-level tables (SDM Vol. 3A 4.5)
 * identity-mapping 0-1 GiB with 2 MiB pages (U=1 at every level, so ring 3 may use them) and the
 * local APIC's 2 MiB page at 0xFEE00000 (PCD), then enters IA-32e mode the way SDM Vol. 3A 10.8.5
 * describes: CR4.PAE, CR3, EFER.LME, CR0.PG, a far jump to a 64-bit code segment.
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

    movl    $pt_pdpt + 7, pt_pml4
    movl    $pt_pd0 + 7, pt_pdpt
    movl    $pt_pd3 + 7, pt_pdpt + 24
    xorl    %ecx, %ecx
1:  movl    %ecx, %eax
    shll    $21, %eax
    orl     $0x87, %eax                 /* P W U PS */
    movl    %eax, pt_pd0(,%ecx,8)
    incl    %ecx
    cmpl    $512, %ecx
    jne     1b
    movl    $0xfee00000 + 0x9b, pt_pd3 + 503 * 8   /* P W PWT PCD PS: the local APIC */

    movl    $0x20, %eax                 /* CR4.PAE */
    movl    %eax, %cr4
    movl    $pt_pml4, %eax
    movl    %eax, %cr3
    movl    $0xc0000080, %ecx           /* IA32_EFER.LME */
    rdmsr
    orl     $0x100, %eax
    wrmsr
    lgdt    gdtr32
    movl    %cr0, %eax
    orl     $0x80000001, %eax
    movl    %eax, %cr0
    ljmp    $0x10, $long_mode

    .code64
long_mode:
    movl    $0x18, %eax
    movl    %eax, %ds
    movl    %eax, %es
    movl    %eax, %ss
    movl    %eax, %fs
    movl    %eax, %gs
    movq    $stack_top, %rsp
    call    rt_main
2:  cli
    hlt
    jmp     2b

/* setjmp-like pair used by enter_user. */
    .text
    .globl ctx_save, ctx_restore
ctx_save:
    movq    %rbx, 0(%rdi)
    movq    %rbp, 8(%rdi)
    movq    %r12, 16(%rdi)
    movq    %r13, 24(%rdi)
    movq    %r14, 32(%rdi)
    movq    %r15, 40(%rdi)
    leaq    8(%rsp), %rax
    movq    %rax, 48(%rdi)
    movq    (%rsp), %rax
    movq    %rax, 56(%rdi)
    xorl    %eax, %eax
    ret
ctx_restore:
    movq    0(%rdi), %rbx
    movq    8(%rdi), %rbp
    movq    16(%rdi), %r12
    movq    24(%rdi), %r13
    movq    32(%rdi), %r14
    movq    40(%rdi), %r15
    movq    48(%rdi), %rsp
    movl    $0x18, %eax
    movl    %eax, %ss
    movl    %eax, %ds
    movl    %eax, %es
    movl    $1, %eax
    jmpq    *56(%rdi)

    .data
    .balign 8
gdtr32:
    .word   16 * 8 - 1
    .long   gdt

    .section .bss.page_aligned, "aw", @nobits
    .balign 4096
    .globl pt_pml4, pt_pdpt, pt_pd0, pt_pd3
pt_pml4: .skip 4096
pt_pdpt: .skip 4096
pt_pd0:  .skip 4096
pt_pd3:  .skip 4096
    .section .bss
    .balign 16
    .skip 16384
stack_top:
    .section .note.GNU-stack, "", @progbits
