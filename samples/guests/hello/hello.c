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
    if (start_info && start_info->magic == XEN_HVM_START_MAGIC_VALUE && *cmdline) {
        print("cmdline: ");
        print(cmdline);
        print("\n");
    }
    return SHUTDOWN_poweroff;
}
