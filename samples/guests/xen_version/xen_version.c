/*
 * xen_version: reports every XENVER_* sub-op (xen/include/public/version.h), the start_info
 * the loader built (memory map, modules) and a few memory_op / hvm_op queries.
 */
#include "runtime.h"
#include <xen/sched.h>
#include <xen/version.h>
#include <xen/memory.h>
#include <xen/hvm/hvm_op.h>
#include <xen/hvm/params.h>

static void print_field(const char *label, const char *s, size_t max)
{
    size_t n = 0;
    while (n < max && s[n])
        n++;
    print(label);
    print(": ");
    print_n(s, n);
    print("\n");
}

int guest_main(const char *cmdline)
{
    if (!xen_cpuid_base) {
        print("xen_version: not running under Xen\n");
        return SHUTDOWN_crash;
    }
    uint32_t a, b, c, d;
    cpuid(xen_cpuid_base + 1, &a, &b, &c, &d);
    print("cpuid version: ");
    print_hex(a);
    print("\n");

    long v = HYPERVISOR_xen_version(XENVER_version, 0);
    print("version: ");
    print_dec(v >> 16);
    print(".");
    print_dec(v & 0xffff);
    print("\n");

    xen_extraversion_t extra;
    print_line("extraversion rc", HYPERVISOR_xen_version(XENVER_extraversion, extra));
    print_field("extraversion", extra, sizeof extra);

    xen_compile_info_t ci;
    print_line("compile_info rc", HYPERVISOR_xen_version(XENVER_compile_info, &ci));
    print_field("compiler", ci.compiler, sizeof ci.compiler);

    xen_capabilities_info_t caps;
    print_line("capabilities rc", HYPERVISOR_xen_version(XENVER_capabilities, caps));
    print_field("capabilities", caps, sizeof caps);

    xen_changeset_info_t cs;
    print_line("changeset rc", HYPERVISOR_xen_version(XENVER_changeset, cs));
    print_field("changeset", cs, sizeof cs);

    xen_platform_parameters_t pp;
    print_line("platform_parameters rc", HYPERVISOR_xen_version(XENVER_platform_parameters, &pp));
    print("virt_start: ");
    print_hex((uint32_t)pp.virt_start);
    print("\n");

    xen_feature_info_t fi = { .submap_idx = 0 };
    print_line("get_features rc", HYPERVISOR_xen_version(XENVER_get_features, &fi));
    print("features[0]: ");
    print_hex(fi.submap);
    print("\n");

    print_line("pagesize", HYPERVISOR_xen_version(XENVER_pagesize, 0));

    xen_domain_handle_t h;
    print_line("guest_handle rc", HYPERVISOR_xen_version(XENVER_guest_handle, h));

    xen_commandline_t xcl;
    print_line("commandline rc", HYPERVISOR_xen_version(XENVER_commandline, xcl));

    print_line("build_id rc", HYPERVISOR_xen_version(XENVER_build_id, 0));

    /* memory_op queries (xen/include/public/memory.h). */
    domid_t self = DOMID_SELF;
    print_line("current_reservation", HYPERVISOR_memory_op(XENMEM_current_reservation, &self));
    print_line("maximum_ram_page", HYPERVISOR_memory_op(XENMEM_maximum_ram_page, 0));

    /* hvm_op get_param for the console and XenStore params (xen/include/public/hvm/params.h). */
    struct xen_hvm_param p = { .domid = DOMID_SELF, .index = HVM_PARAM_STORE_EVTCHN };
    print_line("hvm get_param rc", HYPERVISOR_hvm_op(HVMOP_get_param, &p));

    /* The PVH start_info the loader built (docs/misc/pvh.pandoc). */
    print("start_info magic: ");
    print_hex(start_info->magic);
    print("\n");
    print_line("start_info version", start_info->version);
    print_line("modules", start_info->nr_modules);
    const struct hvm_modlist_entry *mods = (const void *)(uintptr_t)start_info->modlist_paddr;
    for (uint32_t i = 0; i < start_info->nr_modules; i++) {
        print_line("module size", (long)mods[i].size);
        if (mods[i].cmdline_paddr) {
            print("module cmdline: ");
            print((const char *)(uintptr_t)mods[i].cmdline_paddr);
            print("\n");
        }
        print("module first bytes: ");
        print_n((const char *)(uintptr_t)mods[i].paddr, mods[i].size < 16 ? (size_t)mods[i].size : 16);
        print("\n");
    }
    if (start_info->version >= 1) {
        const struct hvm_memmap_table_entry *mm = (const void *)(uintptr_t)start_info->memmap_paddr;
        for (uint32_t i = 0; i < start_info->memmap_entries; i++) {
            print("e820: ");
            print_hex((uint32_t)(mm[i].addr >> 32));
            print_hex((uint32_t)mm[i].addr);
            print(" + ");
            print_hex((uint32_t)(mm[i].size >> 32));
            print_hex((uint32_t)mm[i].size);
            print(" type ");
            print_dec(mm[i].type);
            print("\n");
        }
    }
    print("cmdline: ");
    print(cmdline);
    print("\n");
    return SHUTDOWN_poweroff;
}
