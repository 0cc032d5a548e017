/* Ring 3 in protected mode (SDM Vol. 3A 5.8, 6.12.1): IRET to CPL 3, INT through a DPL-3 gate with the TSS ESP0/SS0
 * stack switch, #GP for a DPL-0 gate, privileged instructions and selector privilege checks from ring 3, POPF rules. */
#include "sys.h"

static volatile ureg u_cs, u_ss, g_cs, g_ss, g_sp, g_depth, g_flags;
static ureg user_sp_at_int;

static void gate81(struct frame *f)
{
    g_cs = f->cs;
    g_ss = f->ss;
    g_sp = f->sp;
    g_flags = f->flags;
    uint16_t ss;
    __asm__ volatile("movw %%ss, %0" : "=r"(ss));
    g_depth = (uintptr_t)kstack0_top - (uintptr_t)&f->ip;   /* EIP CS EFLAGS ESP SS were pushed on the ESP0 stack */
    f->regs[7 + 7] = ss;                                    /* EAX (pusha slot) := the handler's SS */
}

static void user_part(void)
{
    __asm__ volatile("movl %%cs, %0; movl %%ss, %1" : "=r"(u_cs), "=r"(u_ss));
    ureg ret;
    __asm__ volatile("movl %%esp, %1; int $0x81" : "=a"(ret), "=m"(user_sp_at_int) : : "memory");
    g_depth |= ret << 16;
    TRY("int $0x82", ::);
    report_trap("ring 3: int to a DPL-0 gate");
    TRY("int3", ::);
    report_trap("ring 3: int3 through a DPL-0 gate");
    TRY("int $0x83", ::);
    report_trap("ring 3: int3 through a DPL-3 trap gate");
    TRY("cli", ::);
    report_trap("ring 3: cli with IOPL 0");
    TRY("hlt", ::);
    report_trap("ring 3: hlt");
    TRY("movl %%cr0, %%eax", ::: "eax");
    report_trap("ring 3: mov from cr0");
    TRY("rdmsr", : : "c"(MSR_EFER) : "eax", "edx");
    report_trap("ring 3: rdmsr");
    static uint8_t gdtr[6];
    TRY("lgdt %0", : : "m"(gdtr));
    report_trap("ring 3: lgdt");
    TRY("sgdt %0", : "=m"(gdtr));
    report_trap("ring 3: sgdt (UMIP off)");
    TRY("movl %0, %%ds", : : "r"(SEL_DATA));
    report_trap("ring 3: load DS with a DPL-0 data selector");
    TRY("movl %0, %%ss", : : "r"(SEL_DATA));
    report_trap("ring 3: load SS with a DPL-0 selector");
    TRY("movl %0, %%es", : : "r"(SEL_UDATA));
    report_trap("ring 3: load ES with the ring-3 data selector");
    TRY("lcall $0x08, $0", ::);
    report_trap("ring 3: far call to a ring-0 code segment");
    TRY("ljmp $0x2b, $0", ::);
    report_trap("ring 3: far jump to a data segment");
    ureg f = read_flags();
    write_flags(f | (3u << 12));
    kv("ring 3: IOPL after POPF trying to set 3", (read_flags() >> 12) & 3);
    write_flags(f & ~0x200u);
    kv("ring 3: IF after POPF trying to clear it", (read_flags() >> 9) & 1);
    __asm__ volatile("int $0x80");
}

void kmain(void)
{
    tss_init();
    user_exit_gate();
    set_gate(0x81, 0xe, 3, 0);
    trap_hook[0x81] = gate81;
    set_gate(0x83, 0xf, 3, 0);
    tss_area.iobitmap[0xe9 / 8] &= (uint8_t)~(1u << (0xe9 % 8));   /* ring 3 may print */
    enter_user(user_part, 0, 0x202);
    print("back in ring 0\n");
    kv("ring 3 cs", u_cs);
    kv("ring 3 ss", u_ss);
    kv("int 0x81: pushed cs", g_cs);
    kv("int 0x81: pushed ss", g_ss);
    check("int 0x81: pushed esp is the ring-3 esp", g_sp == user_sp_at_int);
    kv("int 0x81: pushed eflags", g_flags);
    kv("int 0x81: frame bytes below esp0", g_depth & 0xffff);
    kv("int 0x81: handler ss", g_depth >> 16);
    uint16_t tr;
    __asm__ volatile("str %0" : "=r"(tr));
    kv("str", tr);
    kv("tss descriptor type after ltr (busy)", (gdt[SEL_TSS / 8] >> 40) & 0xf);
}
