/*
 * hostile: the attacks of issue 10 that once hurt the hypervisor, kept as regression guests.
 * The command line picks them (combinable):
 *   physmap=N   moves shared_info back and forth N times with XENMEM_add_to_physmap
 *               (gpfn 0x40000 <-> 0x80000000); every call must succeed, the host must not fail
 *   yield=N     N SCHEDOP_yield calls in a row, then poweroff (the --max-instructions budget must stop it first)
 *   errno       arguments Xen refuses with a specific errno (console_io, memory_op extent bits, hvm params)
 *   grantcopy=N one GNTTABOP_copy of N operations (at most 131072), 8 bytes each between two of its own frames:
 *               Xen preempts a long batch and continues it, so it cannot hold the hypervisor for its whole length
 *   conwrite=N  one CONSOLEIO_write of N bytes (at most 4 MiB; lines of 63 'x' and a newline): Xen's
 *               guest_console_write preempts between chunks and continues, as for a batch
 */
#include "runtime.h"
#include <xen/sched.h>
#include <xen/memory.h>
#include <xen/hvm/hvm_op.h>
#include <xen/hvm/params.h>
#include <xen/errno.h>
#include <xen/grant_table.h>

/* xen/include/xen/hypercall.h (not public): memory_op's low 6 bits are the command, the rest a start extent. */
#define MEMOP_EXTENT_SHIFT 6

static long add_shared_info(unsigned long cmd, xen_pfn_t gpfn)
{
    struct xen_add_to_physmap xatp = { .domid = DOMID_SELF, .space = XENMAPSPACE_shared_info, .idx = 0, .gpfn = gpfn };
    return HYPERVISOR_memory_op(cmd, &xatp);
}

static void physmap_ping_pong(uint32_t rounds)
{
    uint32_t failures = 0;
    long first = 0;
    for (uint32_t i = 0; i < rounds; i++) {
        long rc = add_shared_info(XENMEM_add_to_physmap, (i & 1) ? 0x40000 : 0x80000000ul);
        if (rc != 0 && failures++ == 0)
            first = rc;
    }
    print_line("physmap rounds", rounds);
    print_line("physmap failures", failures);
    print_line("physmap first error", first);
}

static long set_param(uint32_t index, uint64_t value)
{
    struct xen_hvm_param p = { .domid = DOMID_SELF, .index = index, .value = value };
    return HYPERVISOR_hvm_op(HVMOP_set_param, &p);
}

static void errnos(void)
{
    static char buf[16];
    domid_t self = DOMID_SELF;
    struct xen_memory_map map = { .nr_entries = 1 };
    set_xen_guest_handle(map.buffer, (void *)buf);

    /* xen/drivers/char/console.c: a read count that is negative as an int is -E2BIG. */
    print_line("console_io read count 0x80000000", HYPERVISOR_console_io(CONSOLEIO_read, (int)0x80000000u, buf));
    print_line("console_io read count 0xffffffff", HYPERVISOR_console_io(CONSOLEIO_read, -1, buf));

    /* xen/common/memory.c do_memory_op: extent bits on ops without a start extent. */
    print_line("maximum_ram_page extent 1", HYPERVISOR_memory_op(XENMEM_maximum_ram_page | (1u << MEMOP_EXTENT_SHIFT), 0));
    print_line("current_reservation extent 1", HYPERVISOR_memory_op(XENMEM_current_reservation | (1u << MEMOP_EXTENT_SHIFT), &self));
    print_line("add_to_physmap extent 0x10000", add_shared_info(XENMEM_add_to_physmap | (0x10000u << MEMOP_EXTENT_SHIFT), 0x40000));
    print_line("add_to_physmap extent 0xffff", add_shared_info(XENMEM_add_to_physmap | (0xffffu << MEMOP_EXTENT_SHIFT), 0x40000));
    print_line("memory_map extent 1", HYPERVISOR_memory_op(XENMEM_memory_map | (1u << MEMOP_EXTENT_SHIFT), &map));
    print_line("memory_map extent 0", HYPERVISOR_memory_op(XENMEM_memory_map, &map));

    /* xen/arch/x86/hvm/hvm.c hvm_set_param. */
    print_line("X87_FIP_WIDTH 3", set_param(HVM_PARAM_X87_FIP_WIDTH, 3));
    print_line("X87_FIP_WIDTH 4", set_param(HVM_PARAM_X87_FIP_WIDTH, 4));
    print_line("X87_FIP_WIDTH 8", set_param(HVM_PARAM_X87_FIP_WIDTH, 8));
    print_line("X87_FIP_WIDTH 0x100000008", set_param(HVM_PARAM_X87_FIP_WIDTH, 0x100000008ull));
    print_line("X87_FIP_WIDTH 0", set_param(HVM_PARAM_X87_FIP_WIDTH, 0));
    /* pmtimer_change_ioport: a PVH domain has no emulated ACPI PM timer (-ENODEV). */
    print_line("ACPI_IOPORTS_LOCATION 1", set_param(HVM_PARAM_ACPI_IOPORTS_LOCATION, 1));
    print_line("ACPI_IOPORTS_LOCATION 0", set_param(HVM_PARAM_ACPI_IOPORTS_LOCATION, 0));
    struct xen_hvm_param p = { .domid = DOMID_SELF, .index = HVM_PARAM_X87_FIP_WIDTH };
    HYPERVISOR_hvm_op(HVMOP_get_param, &p);
    print_line("X87_FIP_WIDTH value", (long)p.value);
}

#define GRANTCOPY_MAX 131072u
/* The operations (24 bytes each in the 32-bit layout, up to 3 MiB) lie at 8 MiB, above the image, in guest RAM
 * the runtime does not zero at start (a .bss array would cost the other modes a million instructions first); the
 * tests give 16 MiB. */
#define copy_ops ((struct gnttab_copy *)0x800000)
static uint8_t copy_from[4096] __attribute__((aligned(4096)));
static uint8_t copy_to[4096] __attribute__((aligned(4096)));

static void grant_copy_batch(uint32_t n)
{
    if (n > GRANTCOPY_MAX)
        n = GRANTCOPY_MAX;
    for (uint32_t i = 0; i < sizeof copy_from; i++)
        copy_from[i] = (uint8_t)(i * 7 + 1);
    for (uint32_t i = 0; i < n; i++) {
        struct gnttab_copy *op = &copy_ops[i];
        uint16_t offset = (uint16_t)((i * 8) % sizeof copy_from);
        op->source.u.gmfn = (uintptr_t)copy_from >> 12;   /* paging off: the address is the guest frame */
        op->source.domid = DOMID_SELF;
        op->source.offset = offset;
        op->dest.u.gmfn = (uintptr_t)copy_to >> 12;
        op->dest.domid = DOMID_SELF;
        op->dest.offset = offset;
        op->len = 8;
        op->flags = 0;
        op->status = 1;   /* no GNTST_* value: an operation never run keeps it */
    }
    long rc = hypercall3(__HYPERVISOR_grant_table_op, GNTTABOP_copy, copy_ops, n);
    uint32_t failed = 0;
    for (uint32_t i = 0; i < n; i++)
        failed += copy_ops[i].status != GNTST_okay;
    print_line("grantcopy ops", n);
    print_line("grantcopy rc", rc);
    print_line("grantcopy failed", failed);
    print_line("grantcopy bytes match", n < sizeof copy_from / 8 || memcmp(copy_from, copy_to, sizeof copy_to) == 0);
}

#define CONWRITE_MAX (4u << 20)
/* The bytes lie at 8 MiB as the copy operations do (the two modes share the area), below the special pages the
 * toolstack reserves at the top of the tests' 16 MiB. */
#define conwrite_bytes ((char *)0x800000)

static void console_write_long(uint32_t n)
{
    if (n > CONWRITE_MAX)
        n = CONWRITE_MAX;
    for (uint32_t i = 0; i < n; i++)
        conwrite_bytes[i] = (i % 64) == 63 ? '\n' : 'x';
    long rc = HYPERVISOR_console_io(CONSOLEIO_write, (int)n, conwrite_bytes);
    print("\n");
    print_line("conwrite bytes", n);
    print_line("conwrite rc", rc);
}

int guest_main(const char *cmdline)
{
    if (!xen_cpuid_base) {
        print("hostile: not running under Xen\n");
        return SHUTDOWN_crash;
    }
    print("hostile: ");
    print(cmdline);
    print("\n");
    const char *v;
    if ((v = cmdline_value(cmdline, "physmap")))
        physmap_ping_pong(parse_uint(v, 100));
    if ((v = cmdline_value(cmdline, "yield"))) {
        uint32_t n = parse_uint(v, 1000);
        for (uint32_t i = 0; i < n; i++)
            HYPERVISOR_sched_op(SCHEDOP_yield, 0);
        print_line("yields", n);
    }
    if (cmdline_has(cmdline, "errno"))
        errnos();
    if ((v = cmdline_value(cmdline, "grantcopy")))
        grant_copy_batch(parse_uint(v, 1000));
    if ((v = cmdline_value(cmdline, "conwrite")))
        console_write_long(parse_uint(v, 4096));
    print("hostile: still alive\n");
    return SHUTDOWN_poweroff;
}
