/* hello: finds Xen by CPUID, installs the hypercall page (the runtime does both), greets, powers off. */
#include "runtime.h"
#include <xen/sched.h>
#include <xen/version.h>

int guest_main(const char *cmdline)
{
    if (!xen_cpuid_base) {
        print("hello: no Xen CPUID leaves found\n");
        return SHUTDOWN_crash;
    }
    print("Hello from a PVH guest!\n");
    long v = HYPERVISOR_xen_version(XENVER_version, 0);
    print("Running on Xen ");
    print_dec(v >> 16);
    print(".");
    print_dec(v & 0xffff);
    print("\n");
    /* The same console through COM1 (16550: wait for THR empty in LSR) and through port 0xE9 with REP OUTSB. */
    for (const char *c = "COM1: ok\n"; *c; c++) {
        while (!(inb(0x3f8 + 5) & 0x20))
            ;
        outb(0x3f8, (uint8_t)*c);
    }
    static const char e9[] = "port 0xE9: ok\n";
    const char *src = e9;
    size_t len = sizeof e9 - 1;
    __asm__ volatile("rep outsb" : "+S"(src), "+c"(len) : "d"(0xe9) : "memory");
    if (start_info && start_info->magic == XEN_HVM_START_MAGIC_VALUE && *cmdline) {
        print("cmdline: ");
        print(cmdline);
        print("\n");
    }
    return SHUTDOWN_poweroff;
}
