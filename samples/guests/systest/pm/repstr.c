/* REP string instructions stop between iterations with their registers describing the progress (SDM Vol. 2B REP,
 * Vol. 3A 6.6, 18.3.1.2): a page fault in the middle of REP MOVSB/STOSD/CMPSB reports the REP instruction as the
 * faulting EIP with ECX/ESI/EDI counting only the completed iterations, and the instruction then resumes and
 * completes; a data breakpoint hit inside REP MOVSB traps after that iteration with the same progress rules.
 * (An external interrupt between iterations follows the same rules, but QEMU TCG only delivers the APIC timer after a
 * long REP completes, so the oracle can only judge the exception paths.) */
#include "sys.h"

static uint32_t pd[1024] __attribute__((aligned(4096)));
static uint32_t pt[1024] __attribute__((aligned(4096)));
static uint8_t frames[4][4096] __attribute__((aligned(4096)));
#define VA 0x40000000u            /* pt: page 0 and 1 present, page 2 not present until the handler maps it */
static volatile ureg pf_count, pf_ecx, pf_esi, pf_edi, pf_ip, db_count, db_ecx, db_esi, db_edi, db_ip;
extern uint8_t rep1[], rep2[], rep3[], rep4[];

static void on_pf(struct frame *f)
{
    if (++pf_count > 4) {
        print("too many page faults\n");
        finish();
    }
    pf_ip = f->ip;
    pf_ecx = f->regs[7 + 6];
    pf_esi = f->regs[7 + 1];
    pf_edi = f->regs[7 + 0];
    kv("  #PF cr2", READ_CR(2));
    kv("  #PF err", f->error);
    pt[2] = (uint32_t)(uintptr_t)frames[2] | PTE_P | PTE_W;      /* map the page and let the REP resume */
}
static void on_db(struct frame *f)
{
    db_count++;
    db_ip = f->ip;
    db_ecx = f->regs[7 + 6];
    db_esi = f->regs[7 + 1];
    db_edi = f->regs[7 + 0];
    WRITE_DR(6, 0);
}
static void show(const char *what, ureg base, ureg ip, ureg ecx, ureg esi, ureg edi, ureg src, ureg dst)
{
    print(what);
    print(": ip=rep");
    if (ip != base) {
        print("+");
        print_dec((long)(ip - base));
    }
    print(" ecx=");
    print_hex(ecx);
    print(" esi=src+");
    print_hex(esi - src);
    print(" edi=dst+");
    print_hex(edi - dst);
    putc_('\n');
}

void kmain(void)
{
    for (uint32_t i = 0; i < 16; i++)
        pd[i] = (i << 22) | PTE_P | PTE_W | PTE_PS;
    pd[VA >> 22] = (uint32_t)(uintptr_t)pt | PTE_P | PTE_W;
    pt[0] = (uint32_t)(uintptr_t)frames[0] | PTE_P | PTE_W;
    pt[1] = (uint32_t)(uintptr_t)frames[1] | PTE_P | PTE_W;
    WRITE_CR(4, CR4_PSE);
    WRITE_CR(3, (uintptr_t)pd);
    WRITE_CR(0, READ_CR(0) | CR0_PG);
    trap_hook[14] = on_pf;
    trap_hook[1] = on_db;

    static uint8_t src[8192];
    for (int i = 0; i < 8192; i++)
        src[i] = (uint8_t)(i * 7 + 3);
    /* REP MOVSB of 5000 bytes into VA+0x1800: 0x800 bytes fit in page 1, byte 0x800 is on the absent page 2. */
    ureg si = (uintptr_t)src, di = VA + 0x1800, cx = 5000;
    __asm__ volatile(".globl rep1\nrep1: rep movsb" : "+S"(si), "+D"(di), "+c"(cx) : : "memory");
    kv("page faults", pf_count);
    show("rep movsb faulted", (uintptr_t)rep1, pf_ip, pf_ecx, pf_esi, pf_edi, (uintptr_t)src, VA + 0x1800);
    show("rep movsb finished", (uintptr_t)rep1, (uintptr_t)rep1, cx, si, di, (uintptr_t)src, VA + 0x1800);
    check("copy intact", memcmp(src, (void *)(VA + 0x1800), 5000) == 0);

    /* REP STOSD of 0x200 dwords from VA+0x1c00 with page 2 unmapped again: 0x100 dwords fit in page 1. */
    pt[2] = 0;
    __asm__ volatile("invlpg (%0)" : : "r"(VA + 0x2000) : "memory");
    pf_count = 0;
    di = VA + 0x1c00;
    cx = 0x200;
    __asm__ volatile(".globl rep2\nrep2: rep stosl" : "+D"(di), "+c"(cx) : "a"(0xa5a5a5a5) : "memory");
    kv("page faults", pf_count);
    show("rep stosd faulted", (uintptr_t)rep2, pf_ip, pf_ecx, 0, pf_edi, 0, VA + 0x1c00);
    show("rep stosd finished", (uintptr_t)rep2, (uintptr_t)rep2, cx, 0, di, 0, VA + 0x1c00);

    /* REPE CMPSB stops at the first difference after resuming across the fault. */
    pt[2] = 0;
    __asm__ volatile("invlpg (%0)" : : "r"(VA + 0x2000) : "memory");
    pf_count = 0;
    memcpy((void *)(VA + 0x1000), src, 0x1000);
    uint8_t *two = frames[2];
    memcpy(two, src + 0x1000, 0x100);
    two[0x40] ^= 1;
    si = (uintptr_t)src;
    di = VA + 0x1000;
    cx = 0x1800;
    ureg fl;
    __asm__ volatile(".globl rep3\nrep3: repe cmpsb\n\tpushfl\n\tpopl %3" : "+S"(si), "+D"(di), "+c"(cx), "=r"(fl) : : "memory", "cc");
    kv("page faults", pf_count);
    show("repe cmpsb faulted", (uintptr_t)rep3, pf_ip, pf_ecx, pf_esi, pf_edi, (uintptr_t)src, VA + 0x1000);
    show("repe cmpsb stopped", (uintptr_t)rep3, (uintptr_t)rep3, cx, si, di, (uintptr_t)src, VA + 0x1000);
    kv("zf after the mismatch", (fl >> 6) & 1);

    /* A write breakpoint on byte 100 of the destination: #DB after that iteration, then the REP continues. */
    static uint8_t dst[512];
    WRITE_DR(0, (uintptr_t)&dst[100]);
    WRITE_DR(7, 0x1 | (0x1u << 16));
    si = (uintptr_t)src;
    di = (uintptr_t)dst;
    cx = 300;
    __asm__ volatile(".globl rep4\nrep4: rep movsb" : "+S"(si), "+D"(di), "+c"(cx) : : "memory");
    WRITE_DR(7, 0);
    kv("#DB count", db_count);
    show("rep movsb data breakpoint", (uintptr_t)rep4, db_ip, db_ecx, db_esi, db_edi, (uintptr_t)src, (uintptr_t)dst);
    check("copy intact", memcmp(src, dst, 300) == 0);
    WRITE_CR(0, READ_CR(0) & ~CR0_PG);
}
