/* SYSCALL/SYSRET and the kernel-entry MSRs (SDM Vol. 2B SYSCALL, SYSRET, SWAPGS, RDTSCP, RDFSBASE; Vol. 3A 5.8.8):
 * EFER.SCE, STAR/LSTAR/SFMASK, RCX/R11, the fixed selectors and flags, SYSRET to 64-bit and compatibility mode,
 * FS/GS bases, SWAPGS with KERNEL_GS_BASE, TSC_AUX through RDTSCP, CR4.FSGSBASE. */
#include "sys.h"

#define MSR_STAR 0xc0000081
#define MSR_LSTAR 0xc0000082
#define MSR_CSTAR 0xc0000083
#define MSR_SFMASK 0xc0000084
#define MSR_FS_BASE 0xc0000100
#define MSR_GS_BASE 0xc0000101
#define MSR_KERNEL_GS_BASE 0xc0000102
#define MSR_TSC_AUX 0xc0000103

struct percpu { uint64_t magic; uint64_t scratch; } kernel_pc = { 0x6b65726e656c0001ull, 0 }, user_pc = { 0x7573657200000002ull, 0 };
volatile uint64_t e_cs, e_ss, e_rcx, e_r11, e_flags, e_rax, e_gsmagic, e_count, r_cs, r_ss, r_flags, r_rax, c_cs;
void syscall_entry(void);
void compat_user(void);
extern uint8_t after_syscall[];
__asm__(".text\n.globl syscall_entry\nsyscall_entry:\n\t"
        "cmpq $2, %rax\n\tje 1f\n\t"
        "swapgs\n\tmovq %rsp, %gs:8\n\t"
        "movw %cs, e_cs(%rip)\n\tmovw %ss, e_ss(%rip)\n\tmovq %rcx, e_rcx(%rip)\n\tmovq %r11, e_r11(%rip)\n\t"
        "pushfq\n\tpopq e_flags(%rip)\n\tmovq %rax, e_rax(%rip)\n\tmovq %gs:0, %rax\n\tmovq %rax, e_gsmagic(%rip)\n\t"
        "incq e_count(%rip)\n\tmovq $0x1234, %rax\n\t"
        "swapgs\n\tsysretq\n"
        "1:\tleaq compat_user(%rip), %rcx\n\tmovl $0x202, %r11d\n\tsysretl\n"
        ".code32\n.globl compat_user\ncompat_user:\n\t"
        "movw %cs, c_cs\n\tint $0x80\n"
        ".code64\n");

/* Ring 3, 64-bit: a SYSCALL whose handler (below) returns with SYSRETL into compatibility-mode code. */
static void sysret_to_compat_trampoline(void)
{
    __asm__ volatile("movq $2, %%rax; syscall" ::: "rax", "rcx", "r11", "memory");
}

static void user_part(void)
{
    uint64_t rax = 42;
    __asm__ volatile("pushfq; orq $0x600, (%%rsp); popfq\n\tsyscall\n.globl after_syscall\nafter_syscall:\n\t"
                     "pushfq; popq r_flags(%%rip); movw %%cs, r_cs(%%rip); movw %%ss, r_ss(%%rip)"
                     : "+a"(rax) : : "rcx", "r11", "memory", "cc");
    r_rax = rax;
    TRY("swapgs", ::);
    report_trap("ring 3: swapgs");
    uint64_t v;
    __asm__ volatile("movq %%gs:0, %0" : "=r"(v));
    kv("ring 3: gs:0 (user GS base)", v);
    __asm__ volatile("int $0x80");
}

void kmain(void)
{
    uint32_t a, b, c, d;
    cpuid(0x80000001, 0, &a, &b, &c, &d);
    print("cpuid.80000001 syscall lm rdtscp: ");
    print_dec((d >> 11) & 1);
    print_dec((d >> 29) & 1);
    print_dec((d >> 27) & 1);
    putc_('\n');
    tss_init();
    user_exit_gate();
    tss_area.iobitmap[0xe9 / 8] &= (uint8_t)~(1u << (0xe9 % 8));

    wrmsr(MSR_STAR, (0x20ull << 48) | (0x10ull << 32));
    wrmsr(MSR_LSTAR, (uintptr_t)syscall_entry);
    wrmsr(MSR_CSTAR, 0x1000);
    wrmsr(MSR_SFMASK, 0x700);                         /* TF IF DF */
    kv("STAR", rdmsr(MSR_STAR));
    check("LSTAR reads back", rdmsr(MSR_LSTAR) == (uintptr_t)syscall_entry);
    kv("CSTAR", rdmsr(MSR_CSTAR));
    kv("SFMASK", rdmsr(MSR_SFMASK));
    TRY("syscall", ::: "rcx", "r11");
    report_trap("syscall with EFER.SCE=0");
    wrmsr(MSR_EFER, rdmsr(MSR_EFER) | EFER_SCE);
    kv("efer", rdmsr(MSR_EFER));

    wrmsr(MSR_GS_BASE, (uintptr_t)&user_pc);
    wrmsr(MSR_KERNEL_GS_BASE, (uintptr_t)&kernel_pc);
    __asm__ volatile("swapgs");
    check("swapgs exchanged GS_BASE and KERNEL_GS_BASE", rdmsr(MSR_GS_BASE) == (uintptr_t)&kernel_pc && rdmsr(MSR_KERNEL_GS_BASE) == (uintptr_t)&user_pc);
    __asm__ volatile("swapgs");

    enter_user(user_part, 1, 0x202);
    print("back in ring 0\n");
    kv("syscall: cs", e_cs);
    kv("syscall: ss", e_ss);
    check("syscall: rcx = the instruction after syscall", e_rcx == (uintptr_t)after_syscall);
    kv("syscall: r11 (user rflags)", e_r11);
    kv("syscall: rflags after SFMASK", e_flags);
    kv("syscall: rax", e_rax);
    kv("syscall: gs:0 after swapgs (kernel)", e_gsmagic);
    kv("sysret: cs", r_cs);
    kv("sysret: ss", r_ss);
    kv("sysret: rflags (from r11)", r_flags);
    kv("sysret: rax", r_rax);
    kv("syscalls", e_count);

    /* SYSRET with a 32-bit operand returns to compatibility mode with CS = STAR[63:48] | 3. */
    c_cs = 0;
    enter_user(sysret_to_compat_trampoline, 1, 0x202);
    print("back in ring 0\n");
    kv("sysretl: compatibility-mode cs", c_cs);

    wrmsr(MSR_FS_BASE, (uintptr_t)&kernel_pc);
    uint64_t v;
    __asm__ volatile("movq %%fs:0, %0" : "=r"(v));
    kv("fs:0 through FS_BASE", v);
    wrmsr(MSR_TSC_AUX, 0x12345);
    uint32_t aux;
    __asm__ volatile("rdtscp" : "=c"(aux) : : "eax", "edx");
    kv("rdtscp ecx (TSC_AUX)", aux);
    TRY("rdfsbase %%rax", ::: "rax");
    report_trap("rdfsbase with CR4.FSGSBASE=0");
    WRITE_CR(4, READ_CR(4) | CR4_FSGSBASE);
    v = 0;
    TRY("rdfsbase %0", : "+r"(v));
    report_trap("rdfsbase with CR4.FSGSBASE=1");
    check("rdfsbase = FS_BASE", v == (uintptr_t)&kernel_pc);
    TRY("wrgsbase %0", : : "r"((uint64_t)(uintptr_t)&user_pc));
    check("wrgsbase sets GS_BASE", rdmsr(MSR_GS_BASE) == (uintptr_t)&user_pc);
    WRITE_CR(4, READ_CR(4) & ~CR4_FSGSBASE);
}
