/* SYSENTER/SYSEXIT (SDM Vol. 2B): IA32_SYSENTER_CS/ESP/EIP, the flat selectors they produce (CS, CS+8, CS+16|3, CS+24|3),
 * EFLAGS.IF/VM cleared on entry, #GP(0) when SYSENTER_CS is null, SYSEXIT from ring 3. */
#include "sys.h"

#define MSR_SYSENTER_CS 0x174
#define MSR_SYSENTER_ESP 0x175
#define MSR_SYSENTER_EIP 0x176
static uint8_t sysenter_stack[1024] __attribute__((aligned(16)));
volatile ureg k_cs, k_ss, k_flags, k_esp, k_arg, u_cs2, u_ss2, u_count;
void sysenter_entry(void);
__asm__(".text\n.globl sysenter_entry\nsysenter_entry:\n\t"
        "movw %cs, k_cs\n\tmovw %ss, k_ss\n\tpushfl\n\tpopl k_flags\n\tmovl %esp, k_esp\n\tmovl %eax, k_arg\n\t"
        "incl u_count\n\t"
        "movl %ebp, %ecx\n\tmovl %esi, %edx\n\t"     /* ECX = ring-3 ESP, EDX = ring-3 EIP */
        "sysexit\n");

static void user_part(void)
{
    __asm__ volatile("movl %%esp, %%ebp\n\tmovl $1f, %%esi\n\tmovl $0x1234, %%eax\n\tsysenter\n1:\n\t"
                     "movw %%cs, u_cs2\n\tmovw %%ss, u_ss2" ::: "eax", "ecx", "edx", "esi", "ebp", "memory");
    TRY("sysexit", ::);
    report_trap("ring 3: sysexit");
    __asm__ volatile("int $0x80");
}

void kmain(void)
{
    tss_init();
    user_exit_gate();
    tss_area.iobitmap[0xe9 / 8] &= (uint8_t)~(1u << (0xe9 % 8));
    TRY("sysenter", ::);
    report_trap("sysenter with SYSENTER_CS = 0");
    wrmsr(MSR_SYSENTER_CS, 0x10);
    wrmsr(MSR_SYSENTER_ESP, (uintptr_t)(sysenter_stack + sizeof sysenter_stack));
    wrmsr(MSR_SYSENTER_EIP, (uintptr_t)sysenter_entry);
    kv("SYSENTER_CS", rdmsr(MSR_SYSENTER_CS));
    check("SYSENTER_ESP reads back", rdmsr(MSR_SYSENTER_ESP) == (uintptr_t)(sysenter_stack + sizeof sysenter_stack));
    enter_user(user_part, 0, 0x202);
    print("back in ring 0\n");
    kv("sysenter: cs", k_cs);
    kv("sysenter: ss", k_ss);
    kv("sysenter: eflags.IF", (k_flags >> 9) & 1);
    check("sysenter: esp = SYSENTER_ESP", k_esp == (uintptr_t)(sysenter_stack + sizeof sysenter_stack));
    kv("sysenter: eax", k_arg);
    kv("sysexit: cs", u_cs2);
    kv("sysexit: ss", u_ss2);
    kv("sysenter count", u_count);
}
