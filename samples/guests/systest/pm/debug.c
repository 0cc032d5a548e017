/* Debug registers and #DB (SDM Vol. 3A 18.2-18.3): DR0-DR7 read back and fixed bits, DR4/DR5 aliases and CR4.DE,
 * data (write, read/write), instruction and I/O breakpoints with DR6.Bn, RF to resume an instruction breakpoint,
 * single-step (TF, DR6.BS) counted over a known sequence. */
#include "sys.h"

static volatile uint32_t watched, sink;
static volatile ureg db_count, db_dr6, db_ip;
static void db_hook(struct frame *f)
{
    db_count++;
    db_dr6 = READ_DR(6);
    db_ip = f->ip;
    WRITE_DR(6, 0);
    f->flags |= 1u << 16;       /* RF: an instruction breakpoint does not fire again on the return */
}
static void show(const char *what, ureg ip_base)
{
    print(what);
    print(": #DB count=");
    print_dec((long)db_count);
    print(" dr6=");
    print_hex(db_dr6);
    if (ip_base) {
        print(" ip=base+");
        print_dec((long)(db_ip - ip_base));
    }
    putc_('\n');
    db_count = 0;
    db_dr6 = 0;
}
extern uint8_t bp_here[], ss_start[];
void kmain(void)
{
    WRITE_DR(6, 0);
    kv("dr6 after write 0", READ_DR(6));
    WRITE_DR(7, 0);
    kv("dr7 after write 0", READ_DR(7));
    WRITE_DR(0, 0x1000);
    WRITE_DR(1, 0x2002);
    WRITE_DR(2, 0x3004);
    WRITE_DR(3, 0x4008);
    kv("dr0", READ_DR(0));
    kv("dr1", READ_DR(1));
    kv("dr2", READ_DR(2));
    kv("dr3", READ_DR(3));
    WRITE_CR(4, 0);
    WRITE_DR(6, 0x0000000f);
    kv("dr4 aliases dr6 with CR4.DE=0", READ_DR(4));
    WRITE_DR(7, 0x00000100);
    kv("dr5 aliases dr7 with CR4.DE=0", READ_DR(5));
    WRITE_DR(7, 0);
    WRITE_DR(6, 0);
    WRITE_CR(4, CR4_DE);
    TRY("movl %%db4, %%eax", ::: "eax");
    report_trap("mov from dr4 with CR4.DE=1");
    WRITE_CR(4, 0);

    trap_hook[1] = db_hook;
    /* Data breakpoint, write-only, 4 bytes (RW0 = 01, LEN0 = 11). */
    WRITE_DR(0, (uintptr_t)&watched);
    WRITE_DR(7, 0x1 | (0x1u << 16) | (0x3u << 18));
    sink = watched;
    show("read of a write-watched word", 0);
    watched = 1;
    show("write of a write-watched word", 0);
    /* Read/write, 1 byte at offset 2 (RW0 = 11, LEN0 = 00): a 4-byte access covering it hits. */
    WRITE_DR(0, (uintptr_t)&watched + 2);
    WRITE_DR(7, 0x1 | (0x3u << 16));
    sink = watched;
    show("read of a word covering a read/write-watched byte", 0);
    sink = *((volatile uint8_t *)&watched + 1);
    show("read of the byte next to it", 0);
    WRITE_DR(7, 0);

    /* Instruction breakpoint on DR1 (RW1 = 00, LEN1 = 00): a fault before the instruction; RF lets it run. */
    WRITE_DR(1, (uintptr_t)bp_here);
    WRITE_DR(7, 0x4);
    __asm__ volatile("nop\n.globl bp_here\nbp_here:\n\tnop\n\tnop" ::: "memory");
    show("instruction breakpoint", (uintptr_t)bp_here);
    WRITE_DR(7, 0);

    /* Single-step over pushf/or/popf (sets TF) nop nop nop pushf/and/popf (clears TF). */
    __asm__ volatile("pushfl; orl $0x100, (%%esp); popfl\n.globl ss_start\nss_start:\n\tnop; nop; nop\n\tpushfl; andl $~0x100, (%%esp); popfl" ::: "memory", "cc");
    show("single-step", (uintptr_t)ss_start);

    /* I/O breakpoint on port 0xe9 needs CR4.DE (RW2 = 10). */
    WRITE_CR(4, CR4_DE);
    WRITE_DR(2, 0xe9);
    WRITE_DR(7, 0x10 | (0x2u << 24));
    putc_('.');
    putc_('\n');
    WRITE_DR(7, 0);
    show("I/O breakpoint on port 0xe9 (two outb)", 0);
    WRITE_CR(4, 0);

    /* General detect (DR7.GD -> #DB with DR6.BD) is not implemented by QEMU 7.2 TCG, so it is not judged here. */
    trap_hook[1] = 0;
    TRY("int3", ::);
    report_trap("int3 is #BP, not #DB");
}
