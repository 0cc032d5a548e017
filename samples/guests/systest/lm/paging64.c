/* 4-level paging (SDM Vol. 3A 4.5): NX, WP, SMEP, SMAP with STAC/CLAC (4.6), #PF error codes and 64-bit CR2 (4.7),
 * global pages with INVLPG, MOV CR3 and CR4.PGE (4.10.4). Only outcomes the SDM guarantees are printed. */
#include "sys.h"

extern uint64_t pt_pd3[];
static uint64_t pml4[512] __attribute__((aligned(4096)));
static uint64_t pdpt[512] __attribute__((aligned(4096)));
static uint64_t pd0[512] __attribute__((aligned(4096)));
static uint64_t pd1[512] __attribute__((aligned(4096)));
static uint64_t pt[512] __attribute__((aligned(4096)));
static uint8_t frames[4][4096] __attribute__((aligned(4096)));
#define TEST_VA 0x40000000ull        /* pd1[0] -> pt */

static uint64_t read64(uint64_t va)
{
    uint64_t v = 0;
    TRY("movq (%1), %0", : "+r"(v) : "r"(va) : "memory");
    return v;
}
static void write64(uint64_t va, uint64_t v) { TRY("movq %1, (%0)", : : "r"(va), "r"(v) : "memory"); }
static int call_at(uint64_t va)
{
    last_vec = -1;
    __asm__ volatile("movq %%rsp, %%rbx\n\tleaq .Lc%=(%%rip), %%rax\n\tmovq %%rax, fixup_ip(%%rip)\n\tcall *%0\n.Lc%=:\n\tmovq %%rbx, %%rsp\n\tmovq $0, fixup_ip(%%rip)"
                     : : "r"(va) : "rax", "rbx", "memory");
    return last_vec;
}
static void invlpg(uint64_t va) { __asm__ volatile("invlpg (%0)" : : "r"(va) : "memory"); }

void kmain(void)
{
    uint32_t a, b, c, d;
    cpuid(7, 0, &a, &b, &c, &d);
    int has_invpcid = !!(b & (1 << 10));
    print("cpuid.7 smep smap: ");
    print_dec(!!(b & (1 << 7)));
    print_dec(!!(b & (1 << 20)));
    putc_('\n');
    cpuid(1, 0, &a, &b, &c, &d);
    int has_pcid = !!(c & (1 << 17));

    for (int i = 0; i < 32; i++)
        pd0[i] = ((uint64_t)i << 21) | PTE_P | PTE_W | PTE_PS | PTE_G;      /* supervisor, global */
    pml4[0] = (uintptr_t)pdpt | PTE_P | PTE_W | PTE_U;
    pdpt[0] = (uintptr_t)pd0 | PTE_P | PTE_W | PTE_U;
    pdpt[1] = (uintptr_t)pd1 | PTE_P | PTE_W | PTE_U;
    pdpt[3] = (uintptr_t)pt_pd3 | PTE_P | PTE_W;
    pd1[0] = (uintptr_t)pt | PTE_P | PTE_W | PTE_U;
    pt[0] = (uintptr_t)frames[0] | PTE_P | PTE_W | PTE_U;                  /* user RW */
    pt[1] = (uintptr_t)frames[1] | PTE_P | PTE_U;                          /* user RO */
    pt[2] = (uintptr_t)frames[2] | PTE_P | PTE_W | PTE_NX;                 /* supervisor NX */
    frames[0][0] = 0xc3;
    frames[2][0] = 0xc3;
    frames[0][8] = 0x10;
    frames[1][8] = 0x11;
    frames[2][8] = 0x12;
    frames[3][8] = 0x13;

    wrmsr(MSR_EFER, rdmsr(MSR_EFER) | EFER_NXE);
    WRITE_CR(3, (uintptr_t)pml4);
    kv("efer", rdmsr(MSR_EFER));

    read64(0xffff800012345678ull);
    report_trap("read of an unmapped upper-half address");
    write64(TEST_VA + 0x5008, 1);
    report_trap("write of an unmapped page (PTE absent)");
    call_at(TEST_VA + 0x2000);
    report_trap("call into a supervisor NX page");
    write64(TEST_VA + 0x1008, 1);
    report_trap("supervisor write to a user RO page, WP=0");
    WRITE_CR(0, READ_CR(0) | CR0_WP);
    write64(TEST_VA + 0x1008, 2);
    report_trap("supervisor write to a user RO page, WP=1");
    WRITE_CR(0, READ_CR(0) & ~CR0_WP);

    call_at(TEST_VA);
    report_trap("call into a user page, SMEP=0");
    WRITE_CR(4, READ_CR(4) | CR4_SMEP);
    call_at(TEST_VA);
    report_trap("call into a user page, SMEP=1");
    WRITE_CR(4, READ_CR(4) & ~CR4_SMEP);

    kv("read user page, SMAP=0", read64(TEST_VA + 8));
    WRITE_CR(4, READ_CR(4) | CR4_SMAP);
    read64(TEST_VA + 8);
    report_trap("read user page, SMAP=1 AC=0");
    write64(TEST_VA + 8, 0x20);
    report_trap("write user page, SMAP=1 AC=0");
    __asm__ volatile("stac");
    kv("rflags.AC after STAC", (read_flags() >> 18) & 1);
    kv("read user page, SMAP=1 AC=1", read64(TEST_VA + 8));
    report_trap("read user page, SMAP=1 AC=1");
    __asm__ volatile("clac");
    kv("rflags.AC after CLAC", (read_flags() >> 18) & 1);
    WRITE_CR(4, READ_CR(4) & ~CR4_SMAP);

    /* Reserved-bit faults are #PF with P|RSVD on hardware; QEMU 7.2 reports RSVD without P, so they are not judged here. */

    /* Guaranteed flushes: INVLPG, MOV CR3 for non-global, toggling CR4.PGE for global. */
    WRITE_CR(4, READ_CR(4) | CR4_PGE);
    pt[3] = (uintptr_t)frames[0] | PTE_P | PTE_W | PTE_G;
    kv("global page before", read64(TEST_VA + 0x3008) & 0xff);
    pt[3] = (uintptr_t)frames[3] | PTE_P | PTE_W | PTE_G;
    invlpg(TEST_VA + 0x3000);
    kv("global page after INVLPG", read64(TEST_VA + 0x3008) & 0xff);
    pt[3] = (uintptr_t)frames[1] | PTE_P | PTE_W | PTE_G;
    WRITE_CR(4, READ_CR(4) & ~CR4_PGE);
    kv("global page after CR4.PGE toggle", read64(TEST_VA + 0x3008) & 0xff);
    pt[4] = (uintptr_t)frames[0] | PTE_P | PTE_W;
    read64(TEST_VA + 0x4008);
    pt[4] = (uintptr_t)frames[2] | PTE_P | PTE_W;
    WRITE_CR(3, (uintptr_t)pml4);
    kv("non-global page after MOV CR3", read64(TEST_VA + 0x4008) & 0xff);

    /* PCIDs and INVPCID (SDM Vol. 3A 4.10.1, Vol. 2A MOV CR3/INVPCID): QEMU 7.2 TCG offers neither (CPUID.1:ECX.PCID
     * = 0 and CPUID.7:EBX.INVPCID = 0 even with -cpu max; its TCG feature mask lacks both), so the CPUID bits are not
     * printed and these checks run only where the features are reported, printing nothing but failures: the
     * transcript is the same with and without the features, and a broken PCID still shows as a difference. */
    if (has_pcid) {
        uint64_t want = read64(TEST_VA + 0x4008);
        WRITE_CR(4, READ_CR(4) | CR4_PCIDE);                           /* allowed: CR3[11:0] = 0 */
        WRITE_CR(3, (uintptr_t)pml4 | 1);
        if ((READ_CR(3) & 0xfff) != 1)
            print("pcid: FAIL cr3 does not keep PCID 1\n");
        WRITE_CR(3, (uintptr_t)pml4 | (1ull << 63) | 2);              /* bit 63 (no flush) is not stored */
        if (READ_CR(3) != ((uintptr_t)pml4 | 2))
            print("pcid: FAIL cr3 with the no-flush bit\n");
        if (read64(TEST_VA + 0x4008) != want)
            print("pcid: FAIL translation under PCID 2\n");
        if (TRY("movq %0, %%cr3", : : "r"((uintptr_t)pml4 | 0x800)) != -1 || (READ_CR(3) & 0xfff) != 0x800)
            print("pcid: FAIL PCID 0x800\n");
        if (has_invpcid) {
            static uint64_t desc[2] __attribute__((aligned(16)));
            if (TRY("invpcid %0, %1", : : "m"(desc), "r"(2ull) : "memory") != -1)
                print("pcid: FAIL invpcid type 2\n");
            if (TRY("invpcid %0, %1", : : "m"(desc), "r"(4ull) : "memory") != 13)
                print("pcid: FAIL invpcid type 4 is not #GP\n");
        }
        WRITE_CR(3, (uintptr_t)pml4);
        WRITE_CR(4, READ_CR(4) & ~CR4_PCIDE);
    } else if (has_invpcid) {
        print("pcid: FAIL INVPCID without PCID\n");
    }
    kv("cr4 at the end", READ_CR(4));
}
