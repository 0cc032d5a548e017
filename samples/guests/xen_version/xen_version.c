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

    /* XENMEM_memory_map: the e820 map as the hypervisor keeps it. */
    struct e820 { uint32_t addr_lo, addr_hi, size_lo, size_hi, type; } e820[4];
    struct xen_memory_map map = { .nr_entries = 4 };
    set_xen_guest_handle(map.buffer, e820);
    print_line("memory_map rc", HYPERVISOR_memory_op(XENMEM_memory_map, &map));
    print_line("memory_map entries", map.nr_entries);
    for (uint32_t i = 0; i < map.nr_entries && i < 4; i++) {
        print("memory_map: ");
        print_hex(e820[i].addr_lo);
        print(" size ");
        print_hex(e820[i].size_lo);
        print(" type ");
        print_dec(e820[i].type);
        print("\n");
    }

    /* XENMEM_add_to_physmap: map shared_info at the frame of a page-aligned buffer of ours. */
    static char shared_info_page[4096] __attribute__((aligned(4096)));
    shared_info_page[0] = 0x5a;
    struct xen_add_to_physmap xatp = { .domid = DOMID_SELF, .space = XENMAPSPACE_shared_info, .idx = 0,
                                       .gpfn = (uint32_t)(uintptr_t)shared_info_page >> 12 };
    print_line("add_to_physmap rc", HYPERVISOR_memory_op(XENMEM_add_to_physmap, &xatp));
    print_line("shared_info first byte", shared_info_page[0]);
    xatp.idx = 1;
    print_line("add_to_physmap idx 1", HYPERVISOR_memory_op(XENMEM_add_to_physmap, &xatp));
    xatp.idx = 0;
    xatp.space = XENMAPSPACE_grant_table;
    print_line("add_to_physmap grant_table", HYPERVISOR_memory_op(XENMEM_add_to_physmap, &xatp));

    /* hvm_op get/set_param (xen/include/public/hvm/params.h, hvm_allow_{get,set}_param). */
    struct xen_hvm_param p = { .domid = DOMID_SELF, .index = HVM_PARAM_CALLBACK_IRQ, .value = 0x0200000000000000ull | 0xf3 };
    print_line("set_param CALLBACK_IRQ", HYPERVISOR_hvm_op(HVMOP_set_param, &p));
    p.value = 0;
    print_line("get_param CALLBACK_IRQ", HYPERVISOR_hvm_op(HVMOP_get_param, &p));
    print("CALLBACK_IRQ value: ");
    print_hex((uint32_t)(p.value >> 32));
    print_hex((uint32_t)p.value);
    print("\n");
    p.index = HVM_PARAM_STORE_PFN;
    print_line("set_param STORE_PFN", HYPERVISOR_hvm_op(HVMOP_set_param, &p));
    p.index = HVM_PARAM_IOREQ_PFN;
    print_line("get_param IOREQ_PFN", HYPERVISOR_hvm_op(HVMOP_get_param, &p));
    p.index = 1000;
    print_line("get_param 1000", HYPERVISOR_hvm_op(HVMOP_get_param, &p));
    p.index = HVM_PARAM_CALLBACK_IRQ;
    p.domid = 77;
    print_line("get_param domid 77", HYPERVISOR_hvm_op(HVMOP_get_param, &p));

    /* CONSOLEIO_read: whatever input the console has queued. */
    char input[32];
    long n = HYPERVISOR_console_io(CONSOLEIO_read, sizeof input, input);
    print_line("console_io read", n);
    if (n > 0) {
        print("console input: ");
        print_n(input, (size_t)n);
        print("\n");
    }

    /* SCHEDOP_yield. */
    print_line("sched_op yield", HYPERVISOR_sched_op(SCHEDOP_yield, 0));

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
            print("start_info memmap: ");
            print_hex((uint32_t)mm[i].addr);
            print(" size ");
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
