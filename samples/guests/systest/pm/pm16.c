/* 16-bit protected-mode code (SDM Vol. 3A 21.1): a far call from 32-bit code into a 16-bit code segment, default
 * 16-bit operands and addresses with 0x66/0x67 overrides, a 16-bit interrupt gate (6-byte frame, IRET without 0x66),
 * and a 32-bit far return (0x66 RETF) back. The 16-bit code is copied to 0x7000 (inside the segment's 64 KiB). */
#include "sys.h"

#define BLOB 0x7000u
extern uint8_t p16_blob[], p16_blob_end[], p16_results[], p16_isr[];
void call16(void);
__asm__(
    ".text\n.code16\n"
    ".globl p16_blob, p16_blob_end, p16_results, p16_isr\n"
    "p16_blob:\n"
    "    movl %esp, %ebp\n"
    "    pushw $0x1234\n    movl %ebp, %eax\n    subl %esp, %eax\n    movw %ax, (0x7000 + p16_results - p16_blob)\n"
    "    pushl $0x55667788\n    movl %ebp, %eax\n    subl %esp, %eax\n    movw %ax, (0x7000 + p16_results + 2 - p16_blob)\n"
    "    movl %ebp, %esp\n"
    "    movw $0x10, %bx\n    movw $0x20, %si\n    leaw 0x7(%bx,%si), %ax\n    movw %ax, (0x7000 + p16_results + 4 - p16_blob)\n"
    "    movl $0xffff0001, %eax\n    addw $0xffff, %ax\n    movl %eax, (0x7000 + p16_results + 8 - p16_blob)\n"
    "    pushfw\n    popw %ax\n    andw $0x8d5, %ax\n    movw %ax, (0x7000 + p16_results + 6 - p16_blob)\n"
    "    call 1f\n1:  movl %ebp, %eax\n    subl %esp, %eax\n    movw %ax, (0x7000 + p16_results + 12 - p16_blob)\n    movl %ebp, %esp\n"
    "    int $0x50\n"
    "    movl %ebp, %eax\n    subl %esp, %eax\n    movw %ax, (0x7000 + p16_results + 14 - p16_blob)\n"
    "    movw %cs, (0x7000 + p16_results + 16 - p16_blob)\n"
    "    lretl\n"
    "p16_isr:\n"
    "    movl %ebp, %eax\n    subl %esp, %eax\n    movw %ax, (0x7000 + p16_results + 18 - p16_blob)\n"
    "    movw %sp, %bx\n    movw 2(%esp), %ax\n    movw %ax, (0x7000 + p16_results + 20 - p16_blob)\n"
    "    iret\n"
    "    .balign 4\n"
    "p16_results: .skip 24\n"
    "p16_blob_end:\n"
    ".code32\n"
    ".globl call16\n"
    "call16:\n    pushal\n    lcall $0x38, $0x7000\n    popal\n    ret\n");

void kmain(void)
{
    memcpy((void *)BLOB, p16_blob, (size_t)(p16_blob_end - p16_blob));
    set_gate(0x50, 0x6, 0, 0);                      /* 16-bit interrupt gate into the 16-bit segment */
    set_gate_selector(0x50, SEL_CODE16);
    uint32_t off = BLOB + (uint32_t)(p16_isr - p16_blob);
    idt[0x50 * 8] = (uint8_t)off;
    idt[0x50 * 8 + 1] = (uint8_t)(off >> 8);
    idt[0x50 * 8 + 6] = idt[0x50 * 8 + 7] = 0;
    call16();
    print("back from 16-bit code\n");
    const uint8_t *r = (const uint8_t *)BLOB + (p16_results - p16_blob);
    kv("pushw $imm: bytes", *(const uint16_t *)r);
    kv("pushl $imm (0x66): bytes", *(const uint16_t *)(r + 2));
    kv("lea 7(bx,si)", *(const uint16_t *)(r + 4));
    kv("flags after addw 0xffff+1", *(const uint16_t *)(r + 6));
    kv("eax after addw (upper half kept)", *(const uint32_t *)(r + 8));
    kv("near call pushes bytes", *(const uint16_t *)(r + 12));
    kv("stack balanced after int/iret", *(const uint16_t *)(r + 14));
    kv("16-bit cs", *(const uint16_t *)(r + 16));
    kv("16-bit gate frame bytes", *(const uint16_t *)(r + 18));
    kv("16-bit gate pushed cs", *(const uint16_t *)(r + 20));
}
