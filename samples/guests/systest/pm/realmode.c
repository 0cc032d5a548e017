/* Mode switches (SDM Vol. 3A 9.9): protected mode -> 16-bit protected mode -> real mode (CR0.PE = 0) -> protected mode.
 * Real mode runs code copied to 0x7000, uses a real-mode IVT at 0 for INT n, 32-bit operands, and returns with a far
 * jump through the GDT. Segment limits are not probed: QEMU TCG does not enforce them. */
#include "sys.h"

#define BLOB 0x7000u
extern uint8_t rm_blob[], rm_blob_end[], rm_int30[], rm_gdtr[], rm_results[];
void go_real(void);
__asm__(
    ".text\n.code16\n"
    ".globl rm_blob, rm_blob_end, rm_int30, rm_gdtr, rm_results\n"
    "rm_blob:\n"
    "    movw $0x40, %ax\n    movw %ax, %ds\n    movw %ax, %es\n    movw %ax, %ss\n"
    "    movl %cr0, %eax\n    andl $0xfffffffe, %eax\n    movl %eax, %cr0\n"
    "    ljmp $0x0700, $(rm_real - rm_blob)\n"
    "rm_real:\n"
    "    movw $0x0700, %ax\n    movw %ax, %ds\n    movw %ax, %es\n    movw %ax, %ss\n    movw $0x0ff0, %sp\n"
    "    lidt (rm_idtr - rm_blob)\n"
    "    movw $(rm_msg1 - rm_blob), %si\n    call rm_print\n"
    "    int $0x30\n"
    "    movw %cs, (rm_results - rm_blob)\n"
    "    movw %sp, (rm_results + 2 - rm_blob)\n"
    "    movl $0x12345678, %eax\n    roll $8, %eax\n    movl %eax, (rm_results + 4 - rm_blob)\n"
    "    pushl $0xabcdef01\n    popw %ax\n    popw %bx\n    movw %ax, (rm_results + 8 - rm_blob)\n    movw %bx, (rm_results + 10 - rm_blob)\n"
    "    movl %cr0, %eax\n    movl %eax, (rm_results + 12 - rm_blob)\n"
    "    pushfw\n    popw (rm_results + 16 - rm_blob)\n"
    "    lgdtl (rm_gdtr - rm_blob)\n"
    "    movl %cr0, %eax\n    orl $1, %eax\n    movl %eax, %cr0\n"
    "    ljmpl $0x08, $rm_back32\n"
    "rm_print:\n    lodsb\n    testb %al, %al\n    jz 1f\n    outb %al, $0xe9\n    jmp rm_print\n1:  ret\n"
    "rm_int30:\n    pushw %si\n    movw $(rm_msg2 - rm_blob), %si\n    call rm_print\n    movw %sp, %si\n"
    "    movw %si, (rm_results + 18 - rm_blob)\n    popw %si\n    iret\n"
    "    .balign 4\n"
    "rm_idtr: .word 0x3ff\n .long 0\n"
    "rm_gdtr: .word 0\n .long 0\n"
    "    .balign 4\n"
    "rm_results: .skip 20\n"
    "rm_msg1: .asciz \"real mode: hello through port 0xe9\\n\"\n"
    "rm_msg2: .asciz \"real mode: int 0x30 through the IVT\\n\"\n"
    "rm_blob_end:\n"
    ".code32\n"
    ".globl go_real\n"
    "go_real:\n    pushal\n    movl %esp, rm_saved_esp\n"
    "    ljmp $0x38, $(0x7000 + 0)\n"
    "rm_back32:\n    movl $0x18, %eax\n    movl %eax, %ds\n    movl %eax, %es\n    movl %eax, %ss\n    movl %eax, %fs\n    movl %eax, %gs\n"
    "    movl rm_saved_esp, %esp\n    popal\n    ret\n"
    ".data\nrm_saved_esp: .long 0\n.text\n");

void kmain(void)
{
    size_t n = (size_t)(rm_blob_end - rm_blob);
    struct __attribute__((packed)) { uint16_t limit; uint32_t base; } g = { GDT_ENTRIES * 8 - 1, (uint32_t)(uintptr_t)gdt }, i = { 256 * 8 - 1, (uint32_t)(uintptr_t)idt };
    memcpy(rm_gdtr, &g, 6);
    memcpy((void *)BLOB, rm_blob, n);
    *(volatile uint16_t *)(0x30 * 4) = (uint16_t)(rm_int30 - rm_blob);
    *(volatile uint16_t *)(0x30 * 4 + 2) = BLOB >> 4;
    print("protected mode: going to real mode\n");
    go_real();
    __asm__ volatile("lidt %0" : : "m"(i));
    print("protected mode again\n");
    const uint8_t *r = (const uint8_t *)BLOB + (rm_results - rm_blob);
    kv("real mode cs", *(const uint16_t *)r);
    kv("real mode sp after int/iret", *(const uint16_t *)(r + 2));
    kv("real mode 32-bit rol", *(const uint32_t *)(r + 4));
    kv("pushl then popw low", *(const uint16_t *)(r + 8));
    kv("pushl then popw high", *(const uint16_t *)(r + 10));
    kv("real mode cr0", *(const uint32_t *)(r + 12));
    kv("real mode flags (IF=0)", *(const uint16_t *)(r + 16) & 0x0ed5);
    kv("sp inside int 0x30 (after push si)", *(const uint16_t *)(r + 18));
    kv("cr0 now", READ_CR(0));
    TRY("ud2", ::);
    report_trap("IDT works again");
}
