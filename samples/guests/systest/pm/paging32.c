/* 32-bit paging (SDM Vol. 3A 4.3): 4 KiB and 4 MiB (CR4.PSE) pages, #PF error codes and CR2 (4.7), CR0.WP,
 * user/supervisor checks from ring 3, accessed/dirty bits (4.8), INVLPG (4.10.4). */
#include "sys.h"

static uint32_t pd[1024] __attribute__((aligned(4096)));
static uint32_t pt[1024] __attribute__((aligned(4096)));
static uint8_t frames[4][4096] __attribute__((aligned(4096)));
#define TEST_VA 0x40000000u

static uint32_t read32(uint32_t va)
{
    uint32_t v = 0;
    TRY("movl (%1), %0", : "+r"(v) : "r"(va) : "memory");
    return v;
}
static void write32(uint32_t va, uint32_t v) { TRY("movl %1, (%0)", : : "r"(va), "r"(v) : "memory"); }

static void user_part(void)
{
    read32(TEST_VA + 0x1010);
    report_trap("user read of a supervisor page");
    read32(TEST_VA + 0x3010);
    report_trap("user read of a not-present page");
    write32(TEST_VA + 0x2020, 1);
    report_trap("user write to a read-only user page");
    uint32_t v = read32(TEST_VA + 0x2020);
    report_trap("user read of a read-only user page");
    kv("value", v);
    read32(0x80000000u + 0x100);
    report_trap("user read through a supervisor 4M page");
    __asm__ volatile("int $0x80");
}

void kmain(void)
{
    for (uint32_t i = 0; i < 16; i++)
        pd[i] = (i << 22) | PTE_P | PTE_W | PTE_U | PTE_PS;
    pd[TEST_VA >> 22] = (uint32_t)(uintptr_t)pt | PTE_P | PTE_W | PTE_U;
    pd[0x80000000u >> 22] = 0x00400000u | PTE_P | PTE_W | PTE_PS;          /* supervisor alias of 4-8 MiB */
    pt[0] = (uint32_t)(uintptr_t)frames[0] | PTE_P | PTE_W;               /* supervisor RW */
    pt[1] = (uint32_t)(uintptr_t)frames[1] | PTE_P;                        /* supervisor RO */
    pt[2] = (uint32_t)(uintptr_t)frames[2] | PTE_P | PTE_U;                /* user RO */
    pt[3] = 0;                                                             /* not present */
    frames[2][0x20] = 0x5a;

    WRITE_CR(4, CR4_PSE);
    WRITE_CR(3, (uintptr_t)pd);
    WRITE_CR(0, READ_CR(0) | CR0_PG);
    kv("cr0", READ_CR(0));
    kv("pde[0] accessed by the first fetches", pd[0] & (PTE_A | PTE_D));

    write32(TEST_VA + 0x10, 0x11223344);
    report_trap("supervisor write RW");
    kv("frame0 word", *(uint32_t *)(frames[0] + 0x10));
    kv("pte0 A|D after write", pt[0] & (PTE_A | PTE_D));
    kv("pde A after walk", pd[TEST_VA >> 22] & PTE_A);
    read32(TEST_VA + 0x1000);
    report_trap("supervisor read RO");
    kv("pte1 A|D after read", pt[1] & (PTE_A | PTE_D));
    write32(TEST_VA + 0x1000, 5);
    report_trap("supervisor write RO, WP=0");
    kv("pte1 A|D after write", pt[1] & (PTE_A | PTE_D));
    __asm__ volatile("invlpg (%0)" : : "r"(TEST_VA + 0x1000) : "memory");
    WRITE_CR(0, READ_CR(0) | CR0_WP);
    write32(TEST_VA + 0x1004, 6);
    report_trap("supervisor write RO, WP=1");
    read32(TEST_VA + 0x3ff0);
    report_trap("supervisor read not-present");
    write32(TEST_VA + 0x3ff0, 1);
    report_trap("supervisor write not-present");
    read32(TEST_VA + 0x2ffe);
    report_trap("read crossing into a not-present page");
    TRY("jmp *%0", : : "r"(TEST_VA + 0x3000));
    report_trap("fetch from a not-present page");

    /* 4 MiB page: alias at 0x80000000 of physical 4 MiB. */
    *(volatile uint32_t *)0x00400100u = 0xcafef00d;
    kv("read through the 4M alias", read32(0x80000100u));
    report_trap("4M alias read");
    /* A reserved bit in a 4 MiB PDE is #PF with P|RSVD (0x9) on hardware; QEMU 7.2 reports 0x8, so it is not judged here. */

    /* INVLPG: remap page 0 to frame 3 and flush it. */
    frames[3][0x10] = 0x77;
    read32(TEST_VA + 0x10);
    pt[0] = (uint32_t)(uintptr_t)frames[3] | PTE_P | PTE_W;
    __asm__ volatile("invlpg (%0)" : : "r"(TEST_VA) : "memory");
    kv("after INVLPG the new frame", read32(TEST_VA + 0x10) & 0xff);
    pt[0] = (uint32_t)(uintptr_t)frames[0] | PTE_P | PTE_W;
    WRITE_CR(3, (uintptr_t)pd);
    kv("after MOV CR3 the old frame", read32(TEST_VA + 0x10));

    tss_init();
    user_exit_gate();
    enter_user(user_part, 0, 0x3002);
    print("back in ring 0\n");
    WRITE_CR(0, READ_CR(0) & ~CR0_PG);
    kv("paging off, cr0", READ_CR(0));
}
