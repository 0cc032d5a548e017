/* IDT delivery in IA-32e mode (SDM Vol. 3A 6.14): 16-byte gates, the 16-byte stack alignment and the always-pushed
 * SS:RSP, IST stacks, interrupt vs trap gates, non-canonical addresses (#GP(0)), invalid gate types,
 * ring 3 in 64-bit mode with the RSP0 switch and a NULL SS, INTO as #UD, CR8 mirroring the APIC TPR. */
#include "sys.h"

static volatile ureg g_align, g_rsp, g_ss, g_cs, g_flags, g_depth, g_curss, g_ist_depth;
static void probe(struct frame *f)
{
    g_align = ((uintptr_t)&f->ss + 8) & 15;
    g_rsp = f->sp;
    g_ss = f->ss;
    g_cs = f->cs;
    g_flags = read_flags();
    uint16_t ss;
    __asm__ volatile("movw %%ss, %0" : "=r"(ss));
    g_curss = ss;
    g_depth = (uintptr_t)kstack0_top - (uintptr_t)&f->ip;
    g_ist_depth = (uintptr_t)ist_stack1_top - (uintptr_t)&f->ip;
}
/* A #GP/#NP naming an IDT gate has the gate's index (the vector) in bits 15:3 and IDT = 1 (SDM Vol. 3A 6.13, in every
 * mode). QEMU 7.2 TCG reports vector * 16 + 2 in IA-32e mode (do_interrupt64 scales by the 16-byte gate size), so only
 * the IDT/EXT bits are printed here; the emulator's unit tests check the index. */
static void report_gate_trap(const char *what)
{
    if (last_vec == 11 || last_vec == 13)
        last_err &= 7;
    report_trap(what);
}
static volatile ureg u_rsp;
static void user_part(void)
{
    __asm__ volatile("movq %%rsp, %0; int $0x41" : "=m"(u_rsp) : : "memory");
    TRY("int3", ::);
    report_trap("ring 3: int3 through a DPL-3 gate");
    TRY("int $0x43", ::);
    report_gate_trap("ring 3: int through a DPL-0 gate (err: IDT/EXT bits)");
    TRY("movq %%cr3, %%rax", ::: "rax");
    report_trap("ring 3: mov from cr3");
    TRY("syscall", ::: "rcx", "r11");
    report_trap("ring 3: syscall with EFER.SCE=0");
    TRY("cli", ::);
    report_trap("ring 3: cli");
    __asm__ volatile("int $0x80");
}

void kmain(void)
{
    tss_init();
    user_exit_gate();
    tss_area.iobitmap[0xe9 / 8] &= (uint8_t)~(1u << (0xe9 % 8));
    trap_hook[0x41] = probe;
    set_gate(0x41, 0xe, 3, 0);
    set_gate(0x3, 0xe, 3, 0);

    __asm__ volatile("subq $8, %%rsp; movq %%rsp, %0; int $0x41; addq $8, %%rsp" : "=m"(u_rsp) : : "memory");
    kv("int 0x41 from an rsp = 8 mod 16: frame end aligned", g_align == 0);
    check("int 0x41: pushed rsp is the interrupted rsp", g_rsp == u_rsp);
    kv("int 0x41: pushed ss", g_ss);
    kv("int 0x41: pushed cs", g_cs);
    __asm__ volatile("sti; int $0x41; cli" ::: "memory");
    kv("interrupt gate: IF in the handler", (g_flags >> 9) & 1);
    set_gate(0x41, 0xf, 3, 0);
    __asm__ volatile("sti; int $0x41; cli" ::: "memory");
    kv("trap gate: IF in the handler", (g_flags >> 9) & 1);
    set_gate(0x41, 0xe, 3, 1);
    __asm__ volatile("int $0x41" ::: "memory");
    kv("IST 1: frame bytes below the IST top", g_ist_depth);
    set_gate(0x41, 0xe, 3, 0);

    TRY("movq (%0), %%rax", : : "r"(0x8000000000000000ull) : "rax");
    report_trap("load from a non-canonical address");
    TRY("movq %%rax, (%0)", : : "r"(0x00007fffffffffffull + 1) : "memory");
    report_trap("store to the first non-canonical address");
    /* A non-canonical stack access is #SS(0) on hardware; QEMU 7.2 TCG raises #GP, so it is not judged here. */
    TRY("jmp *%0", : : "r"(0x0000800000000000ull));
    /* Only the vector and error code: QEMU 7.2 reports the non-canonical target as RIP, hardware the JMP itself. */
    kv("jump to a non-canonical address: vec", (ureg)last_vec);
    kv("jump to a non-canonical address: err", last_err);
    TRY(".byte 0xce", ::);
    report_trap("into in 64-bit mode");
    TRY(".byte 0x06", ::);
    report_trap("push es in 64-bit mode");
    idt[0x44 * 16 + 5] = 0x80 | 0x6;                      /* a 16-bit interrupt gate is not valid in IA-32e mode */
    TRY("int $0x44", ::);
    report_gate_trap("int through a type-6 gate (err: IDT/EXT bits)");
    idt[0x44 * 16 + 5] = 0x80 | 0xc;                      /* a 64-bit call gate is not an interrupt gate */
    TRY("int $0x44", ::);
    report_gate_trap("int through a call-gate descriptor (err: IDT/EXT bits)");
    set_gate(0x44, 0xe, 0, 0);
    TRY("int $0x44", ::);
    report_trap("int through a restored gate");

    enter_user(user_part, 1, 0x202);
    print("back in ring 0\n");
    kv("from ring 3: pushed cs", g_cs);
    kv("from ring 3: pushed ss", g_ss);
    check("from ring 3: pushed rsp is the ring-3 rsp", g_rsp == u_rsp);
    kv("from ring 3: frame bytes below RSP0", g_depth);
    kv("from ring 3: ss in the handler", g_curss);

    WRITE_CR(8, 5);
    kv("cr8", READ_CR(8));
    apic_write(0xf0, 0x1ff);
    kv("apic tpr after cr8 = 5", apic_read(0x80));
    apic_write(0x80, 0x90);
    kv("cr8 after tpr = 0x90", READ_CR(8));
    WRITE_CR(8, 0);
}
