/* IA-32e sub-modes and leaving/re-entering long mode (SDM Vol. 3A 2.2, 9.8.5, 9.8.5.4): a far call from 64-bit
 * code into compatibility mode (32-bit) and into 16-bit code under IA-32e mode, operand and stack sizes there,
 * EFER.LMA; from compatibility mode, paging off (LMA clears: 32-bit protected mode), EFER.LME off, a port print,
 * then back: LME, paging (LMA sets), and a far return into 64-bit code. */
#include "sys.h"

volatile uint32_t c_cs, c_push, c_efer_lo, p_efer_lo, p_cr0, r_efer_lo, w16_push, w16_cs, c_wrap;
extern uint8_t b16[], b16_end[];
void compat_entry(void);
__asm__(".text\n.code32\n.globl compat_entry\ncompat_entry:\n\t"
        "movw %cs, c_cs\n\t"
        "movl %esp, %ebp\n\tpushl $7\n\tmovl %ebp, %eax\n\tsubl %esp, %eax\n\tmovl %eax, c_push\n\tmovl %ebp, %esp\n\t"
        "movl $0xffffffff, %eax\n\tincl %eax\n\tmovl %eax, c_wrap\n\t"
        "movl $0xc0000080, %ecx\n\trdmsr\n\tmovl %eax, c_efer_lo\n\t"
        /* leave IA-32e mode: paging off, then EFER.LME off */
        "movl %cr0, %eax\n\tandl $0x7fffffff, %eax\n\tmovl %eax, %cr0\n\t"
        "movl $0xc0000080, %ecx\n\trdmsr\n\tandl $~0x100, %eax\n\twrmsr\n\trdmsr\n\tmovl %eax, p_efer_lo\n\t"
        "movl %cr0, %eax\n\tmovl %eax, p_cr0\n\t"
        "movl $pm_msg, %esi\n1:\tlodsb\n\ttestb %al, %al\n\tjz 2f\n\toutb %al, $0xe9\n\tjmp 1b\n2:\n\t"
        /* and back */
        "movl $0xc0000080, %ecx\n\trdmsr\n\torl $0x100, %eax\n\twrmsr\n\t"
        "movl %cr0, %eax\n\torl $0x80000000, %eax\n\tmovl %eax, %cr0\n\t"
        "movl $0xc0000080, %ecx\n\trdmsr\n\tmovl %eax, r_efer_lo\n\t"
        "lretl\n"
        ".code16\n.globl b16, b16_end\nb16:\n\t"
        "addr32 movw %cs, w16_cs\n\t"
        "movl %esp, %ebp\n\tpushw $7\n\tmovl %ebp, %eax\n\tsubl %esp, %eax\n\taddr32 movl %eax, w16_push\n\tmovl %ebp, %esp\n\t"
        "lretl\n"
        "b16_end:\n"
        ".code64\n"
        ".data\npm_msg: .asciz \"32-bit protected mode, paging off, EFER.LMA clear\\n\"\n.text\n");

static void far_call(uint32_t off, uint16_t sel)
{
    struct __attribute__((packed)) { uint32_t off; uint16_t sel; } p = { off, sel };
    __asm__ volatile("lcall *%0" : : "m"(p) : "rax", "rcx", "rdx", "rsi", "rbp", "memory", "cc");
}

void kmain(void)
{
    kv("efer in 64-bit mode", rdmsr(MSR_EFER));
    far_call((uint32_t)(uintptr_t)compat_entry, SEL_CODE32);
    print("back in 64-bit mode\n");
    kv("compatibility mode cs", c_cs);
    kv("compatibility mode push bytes", c_push);
    kv("compatibility mode 0xffffffff + 1", c_wrap);
    kv("efer in compatibility mode", c_efer_lo);
    kv("efer after paging off and LME off", p_efer_lo);
    kv("cr0 in protected mode", p_cr0);
    kv("efer after LME and paging on", r_efer_lo);
    kv("efer now", rdmsr(MSR_EFER));
    kv("cr0 now", READ_CR(0));

    memcpy((void *)0x7000, b16, (size_t)(b16_end - b16));
    far_call(0x7000, SEL_CODE16);
    print("back from 16-bit code\n");
    kv("16-bit code under IA-32e: cs", w16_cs);
    kv("16-bit code under IA-32e: pushw bytes", w16_push);
    TRY("ljmp *%0", : : "m"((struct { uint32_t o; uint16_t s; } __attribute__((packed))){ 0, SEL_DATA }));
    report_trap("far jump to a data selector");
    uint64_t fl;
    __asm__ volatile("pushfq; popq %0" : "=r"(fl));
    kv("rflags IF", (fl >> 9) & 1);
}
