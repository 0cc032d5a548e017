/* Interrupt and debug blocking after STI and MOV SS/POP SS (SDM Vol. 3A 6.8.3, Vol. 2 STI, MOV): a pending
 * interrupt (a self-IPI through the local APIC) is taken after the instruction that follows STI, never between
 * STI and CLI; POPF has no shadow; STI; HLT wakes after HLT; a single-step trap is held over the instruction after
 * MOV SS or POP SS. */
#include "sys.h"

static volatile ureg hit_ip, hits;
static void on_ipi(struct frame *f) { hit_ip = f->ip; hits++; apic_write(0xb0, 0); }
static volatile ureg db_ips[8], db_n;
static void on_db(struct frame *f) { if (db_n < 8) db_ips[db_n++] = f->ip; }
static void pend(void) { apic_write(0x310, 0); apic_write(0x300, 0x40000 | 0x4000 | 0x40); }
extern uint8_t s1_sti[], s1_end[], s2_sti[], s3_popf[], s3_end[], s4_hlt[], s5_start[], s6_start[];
static void show(const char *what, ureg base)
{
    print(what);
    print(": delivered ");
    print_dec((long)hits);
    if (hits) {
        print(" at base+");
        print_dec((long)(hit_ip - base));
    }
    putc_('\n');
    hits = 0;
}
static void show_db(const char *what, ureg base)
{
    print(what);
    print(": #DB at");
    for (unsigned i = 0; i < db_n; i++) {
        print(" +");
        print_dec((long)(db_ips[i] - base));
    }
    putc_('\n');
    db_n = 0;
}

void kmain(void)
{
    apic_write(0xf0, 0x1ff);
    apic_write(0x80, 0);
    trap_hook[0x40] = on_ipi;

    pend();
    __asm__ volatile(".globl s1_sti, s1_end\ns1_sti: sti\n\tmovl $1, %%eax\n\tmovl $2, %%eax\ns1_end: cli" ::: "eax", "memory");
    show("sti; mov; mov (interrupt after the first mov)", (uintptr_t)s1_sti);
    pend();
    __asm__ volatile(".globl s2_sti\ns2_sti: sti\n\tcli" ::: "memory");
    show("sti; cli (never delivered inside)", (uintptr_t)s2_sti);
    __asm__ volatile("sti; nop; cli" ::: "memory");
    show("then sti; nop; cli", (uintptr_t)s2_sti);
    pend();
    __asm__ volatile("pushfl; orl $0x200, (%%esp)\n.globl s3_popf\ns3_popf: popfl\n\tnop\n.globl s3_end\ns3_end: cli" ::: "memory", "cc");
    show("popf setting IF (no shadow)", (uintptr_t)s3_popf);
    pend();
    __asm__ volatile(".globl s4_hlt\n\tsti\ns4_hlt: hlt\n\tcli" ::: "memory");
    show("sti; hlt with a pending interrupt", (uintptr_t)s4_hlt);

    trap_hook[1] = on_db;
    __asm__ volatile("pushfl; orl $0x100, (%%esp); popfl\n.globl s5_start\ns5_start: nop\n\tmovl %%ss, %%eax\n\tmovl %%eax, %%ss\n\tnop\n\tnop\n\t"
                     "pushfl; andl $~0x100, (%%esp); popfl" ::: "eax", "memory", "cc");
    show_db("single-step over mov ss", (uintptr_t)s5_start);
    __asm__ volatile("pushfl; orl $0x100, (%%esp); popfl\n.globl s6_start\ns6_start: nop\n\tpushl %%ss\n\tpopl %%ss\n\tnop\n\tnop\n\t"
                     "pushfl; andl $~0x100, (%%esp); popfl" ::: "memory", "cc");
    show_db("single-step over pop ss", (uintptr_t)s6_start);
    trap_hook[1] = 0;
}
