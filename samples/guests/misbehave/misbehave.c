/*
 * misbehave: a hostile guest. The command line picks what it does wrong:
 *   badptr       hypercalls with pointers outside the guest's memory (expects -EFAULT), then poweroff
 *   unknown      unknown hypercalls and sub-ops (expects -ENOSYS), then poweroff
 *   badmsr       RDMSR of a nonexistent MSR (expects #GP, caught by its own IDT), then poweroff
 *   wildjump     jumps to an address no memory backs (the domain must be crashed)
 *   triplefault  faults with an empty IDT (the domain must be crashed)
 *   crash        reports SHUTDOWN_crash itself
 */
#include "runtime.h"
#include <xen/sched.h>
#include <xen/version.h>
#include <xen/memory.h>
#include <xen/hvm/hvm_op.h>
#include <xen/errno.h>

#define WILD_ADDRESS 0xdead0000u

static void bad_pointers(void)
{
    void *wild = (void *)(uintptr_t)WILD_ADDRESS;
    print_line("console_io write wild", HYPERVISOR_console_io(CONSOLEIO_write, 16, wild));
    print_line("xen_version extraversion wild", HYPERVISOR_xen_version(XENVER_extraversion, wild));
    print_line("xen_version compile_info wild", HYPERVISOR_xen_version(XENVER_compile_info, wild));
    print_line("sched_op shutdown wild", HYPERVISOR_sched_op(SCHEDOP_shutdown, wild));
    print_line("memory_op current_reservation wild", HYPERVISOR_memory_op(XENMEM_current_reservation, wild));
    print_line("hvm_op get_param wild", HYPERVISOR_hvm_op(HVMOP_get_param, wild));
    /* A buffer that starts in RAM and runs off the end of the 4 GiB space. */
    print_line("console_io write wrap", HYPERVISOR_console_io(CONSOLEIO_write, 64, (void *)(uintptr_t)0xfffffff0u));
}

static void unknown_calls(void)
{
    print_line("hypercall 60", hypercall5(60, 1, 2, 3, 4, 5));
    print_line("hypercall sysctl", hypercall1(__HYPERVISOR_sysctl, 0));
    print_line("hypercall domctl", hypercall1(__HYPERVISOR_domctl, 0));
    print_line("hypercall 127", hypercall5(127, 0, 0, 0, 0, 0));
    print_line("xen_version 99", HYPERVISOR_xen_version(99, 0));
    print_line("console_io 7", HYPERVISOR_console_io(7, 0, 0));
    print_line("sched_op 99", HYPERVISOR_sched_op(99, 0));
    print_line("memory_op 99", HYPERVISOR_memory_op(99, 0));
    print_line("hvm_op 99", HYPERVISOR_hvm_op(99, 0));
}

/* A flat GDT and an IDT whose #GP handler skips the 2-byte RDMSR (Intel SDM Vol. 3A, 6.11, 6.12). */
static uint64_t gdt[3] __attribute__((aligned(8))) = {
    0,
    0x00cf9a000000ffffull,   /* 0x08: 32-bit code, base 0, limit 4 GiB */
    0x00cf92000000ffffull,   /* 0x10: data, base 0, limit 4 GiB */
};
static uint64_t idt[32] __attribute__((aligned(8)));
volatile uint32_t gp_count;
void gp_entry(void);

__asm__(
    ".text\n"
    ".globl gp_entry\n"
    "gp_entry:\n"
    "    incl gp_count\n"
    "    addl $4, %esp\n"          /* drop the error code */
    "    addl $2, (%esp)\n"        /* resume after RDMSR */
    "    iret\n");

static void load_tables(void)
{
    struct __attribute__((packed)) { uint16_t limit; uint32_t base; } gdtr = { sizeof gdt - 1, (uint32_t)(uintptr_t)gdt },
        idtr = { sizeof idt - 1, (uint32_t)(uintptr_t)idt };
    uint32_t h = (uint32_t)(uintptr_t)gp_entry;
    /* 32-bit interrupt gate, present, DPL 0, selector 0x08. */
    idt[13] = (uint64_t)(h & 0xffff) | (0x08ull << 16) | (0x8e00ull << 32) | ((uint64_t)(h >> 16) << 48);
    __asm__ volatile(
        "lgdt %0\n"
        "ljmp $0x08, $1f\n"
        "1: movw $0x10, %%ax\n"
        "movw %%ax, %%ds\n movw %%ax, %%es\n movw %%ax, %%ss\n movw %%ax, %%fs\n movw %%ax, %%gs\n"
        "lidt %1\n"
        : : "m"(gdtr), "m"(idtr) : "eax", "memory");
}

static void bad_msr(void)
{
    load_tables();
    uint32_t lo, hi;
    __asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(0xdeadbeefu), "0"(0), "1"(0));
    print_line("#GP caught", gp_count);
}

int guest_main(const char *cmdline)
{
    if (!xen_cpuid_base) {
        print("misbehave: not running under Xen\n");
        return SHUTDOWN_crash;
    }
    print("misbehave: ");
    print(cmdline);
    print("\n");
    if (cmdline_has(cmdline, "badptr"))
        bad_pointers();
    if (cmdline_has(cmdline, "unknown"))
        unknown_calls();
    if (cmdline_has(cmdline, "badmsr"))
        bad_msr();
    if (cmdline_has(cmdline, "wildjump")) {
        print("jumping to nowhere\n");
        ((void (*)(void))(uintptr_t)WILD_ADDRESS)();
    }
    if (cmdline_has(cmdline, "triplefault")) {
        print("loading an empty IDT and faulting\n");
        struct __attribute__((packed)) { uint16_t limit; uint32_t base; } empty = { 0, 0 };
        __asm__ volatile("lidt %0\n ud2" : : "m"(empty));
    }
    if (cmdline_has(cmdline, "crash"))
        return SHUTDOWN_crash;
    print("misbehave: still alive\n");
    return SHUTDOWN_poweroff;
}
