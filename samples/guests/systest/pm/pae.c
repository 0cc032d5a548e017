/* PAE paging (SDM Vol. 3A 4.4): PDPTEs, 2 MiB and 4 KiB pages, execute-disable with EFER.NXE (4.6),
 * permissions combined across levels, #PF error codes with the I/D bit (4.7), dirty bits of 2 MiB pages. */
#include "sys.h"

static uint64_t pdpt[4] __attribute__((aligned(32)));
static uint64_t pd0[512] __attribute__((aligned(4096)));
static uint64_t pd1[512] __attribute__((aligned(4096)));
static uint64_t pt[512] __attribute__((aligned(4096)));
static uint8_t frames[4][4096] __attribute__((aligned(4096)));
#define TEST_VA 0x40000000u      /* pd1[0] -> pt */

static uint32_t read32(uint32_t va)
{
    uint32_t v = 0;
    TRY("movl (%1), %0", : "+r"(v) : "r"(va) : "memory");
    return v;
}
static void write32(uint32_t va, uint32_t v) { TRY("movl %1, (%0)", : : "r"(va), "r"(v) : "memory"); }
/* Calls code at va (a RET); a fetch fault resumes with the stack restored. */
static int call_at(uint32_t va)
{
    last_vec = -1;
    __asm__ volatile("movl %%esp, %%esi\n\tmovl $.Lc%=, fixup_ip\n\tcall *%0\n.Lc%=:\n\tmovl %%esi, %%esp\n\tmovl $0, fixup_ip"
                     : : "r"(va) : "esi", "memory");
    return last_vec;
}

static void user_part(void)
{
    read32(TEST_VA + 0x200000 + 0x10);
    report_trap("user read, PDE U=0, PTE absent level (2M page U=0)");
    read32(TEST_VA + 0x3000);
    report_trap("user read, PDE U=1, PTE U=0");
    write32(TEST_VA + 0x2000, 1);
    report_trap("user write, PTE U=1 R/W=0");
    call_at(TEST_VA + 0x1000);
    report_trap("user call into an NX user page");
    __asm__ volatile("int $0x80");
}

void kmain(void)
{
    for (int i = 0; i < 32; i++)
        pd0[i] = ((uint64_t)i << 21) | PTE_P | PTE_W | PTE_U | PTE_PS;
    pdpt[0] = (uintptr_t)pd0 | PTE_P;
    pdpt[1] = (uintptr_t)pd1 | PTE_P;
    pd1[0] = (uintptr_t)pt | PTE_P | PTE_W | PTE_U;
    pd1[1] = 0x00400000ull | PTE_P | PTE_W | PTE_PS;                 /* 2 MiB supervisor page at TEST_VA + 2M */
    pd1[2] = 0x00600000ull | PTE_P | PTE_W | PTE_PS | PTE_NX;        /* 2 MiB NX page */
    pt[0] = (uintptr_t)frames[0] | PTE_P | PTE_W;
    pt[1] = (uintptr_t)frames[1] | PTE_P | PTE_W | PTE_U | PTE_NX;
    pt[2] = (uintptr_t)frames[2] | PTE_P | PTE_U;
    pt[3] = (uintptr_t)frames[3] | PTE_P | PTE_W;
    frames[0][0] = 0xc3;                                              /* RET */
    frames[1][0] = 0xc3;
    *(volatile uint8_t *)0x00600000u = 0xc3;

    wrmsr(MSR_EFER, rdmsr(MSR_EFER) | EFER_NXE);
    kv("efer", rdmsr(MSR_EFER));
    WRITE_CR(4, CR4_PAE);
    WRITE_CR(3, (uintptr_t)pdpt);
    WRITE_CR(0, READ_CR(0) | CR0_PG | CR0_WP);
    kv("cr0", READ_CR(0));
    kv("cr4", READ_CR(4));

    call_at(TEST_VA);
    report_trap("call into an executable 4K page");
    call_at(TEST_VA + 0x1000);
    report_trap("call into an NX 4K page");
    call_at(TEST_VA + 0x400000);
    report_trap("call into an NX 2M page");
    call_at(TEST_VA + 0x5000);
    report_trap("call into a not-present page (NXE=1 reports I/D)");
    write32(TEST_VA + 0x400008, 0xabcd);
    report_trap("write to an NX 2M page");
    kv("2M PDE A|D after the write", pd1[2] & (PTE_A | PTE_D));
    kv("2M PDE A|D untouched", pd1[1] & (PTE_A | PTE_D));
    read32(TEST_VA + 0x200000);
    kv("2M PDE A|D after a read", pd1[1] & (PTE_A | PTE_D));
    write32(TEST_VA + 0x2000, 3);
    report_trap("supervisor write to a read-only user page, WP=1");
    write32(TEST_VA + 0x3000, 3);
    report_trap("supervisor write RW");
    kv("pte3 A|D", pt[3] & (PTE_A | PTE_D));
    kv("pde1[0] A", pd1[0] & PTE_A);

    pt[1] &= ~PTE_NX;
    __asm__ volatile("invlpg (%0)" : : "r"(TEST_VA + 0x1000) : "memory");
    call_at(TEST_VA + 0x1000);
    report_trap("call after clearing NX and INVLPG");
    pt[1] |= PTE_NX;
    __asm__ volatile("invlpg (%0)" : : "r"(TEST_VA + 0x1000) : "memory");

    tss_init();
    user_exit_gate();
    enter_user(user_part, 0, 0x3002);
    print("back in ring 0\n");

    wrmsr(MSR_EFER, rdmsr(MSR_EFER) & ~(uint64_t)EFER_NXE);
    pt[1] &= ~PTE_NX;
    WRITE_CR(3, (uintptr_t)pdpt);
    call_at(TEST_VA + 0x1000);
    report_trap("call with NXE=0 (NX clear)");
    WRITE_CR(0, READ_CR(0) & ~CR0_PG);
    WRITE_CR(4, 0);
    kv("paging off, cr0", READ_CR(0));
}
