/*
 * fuzz: a seeded hypercall fuzzer. Command line: seed=N (default 1) steps=N (default 1000).
 *
 * Each step picks a hypercall number (mostly the ones Xen offers an HVM guest, sometimes any number),
 * a sub-op, and argument registers drawn from values that hurt: pointers into a scratch buffer full of
 * random bytes, at the end of RAM (straddling into the hole), in the hole, across the 4 GiB wrap, at the
 * local APIC page, null, small integers and random words. The guest only avoids destroying itself:
 * no shutdown/block, no mapping over its own image, no multicall of random entries, no vCPU down; grant-table
 * operations keep every address the hypervisor maps at or writes to off its own pages (tame_grant).
 * It prints a summary with a hash of every (number, result) pair, so a seed is reproducible, and
 * powers off. Every result must be >= 0 or a Xen errno (-1..-4095): anything else is "weird".
 */
#include "runtime.h"
#include <xen/sched.h>
#include <xen/memory.h>
#include <xen/vcpu.h>
#include <xen/hvm/hvm_op.h>
#include <xen/errno.h>
#include <xen/grant_table.h>

extern char __bss_end[];

static uint8_t scratch[3 * 4096] __attribute__((aligned(4096)));
static uint32_t rng;
static uint32_t ram_end;

/* xorshift32 (Marsaglia): deterministic for a seed. */
static uint32_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 17;
    rng ^= rng << 5;
    return rng;
}

/* The guest's own image and stack: never handed to the hypervisor as a buffer. */
static int in_image(uint32_t a)
{
    uint32_t s = (uint32_t)(uintptr_t)scratch;
    return a >= 0x100000u && a < (uint32_t)(uintptr_t)__bss_end + 0x1000u && !(a >= s && a < s + sizeof scratch);
}

static uint32_t hole(void) { return ram_end + (rnd() % 0x2000u); }

static uint32_t pointer(void)
{
    uint32_t a;
    switch (rnd() % 10) {
    case 0: case 1: a = (uint32_t)(uintptr_t)scratch + rnd() % sizeof scratch; break;
    case 2: a = (uint32_t)(uintptr_t)scratch; break;
    case 3: a = ram_end - (rnd() % 64); break;                  /* straddles the end of RAM */
    case 4: a = ram_end - 4096 + (rnd() % 4096); break;         /* last page of RAM (unused by the guest) */
    case 5: a = hole(); break;
    case 6: a = 0xffffffffu - (rnd() % 64); break;              /* wraps past 4 GiB */
    case 7: a = 0xfee00000u + (rnd() % 4096); break;            /* local APIC page */
    case 8: a = rnd() % 4096; break;                            /* low memory, and null */
    default: a = rnd(); break;
    }
    return in_image(a) ? hole() : a;
}

static uint32_t argument(void)
{
    switch (rnd() % 4) {
    case 0: return rnd() % 16;
    case 1: return rnd();
    default: return pointer();
    }
}

static const uint32_t offered[] = {
    __HYPERVISOR_xen_version, __HYPERVISOR_console_io, __HYPERVISOR_sched_op, __HYPERVISOR_memory_op,
    __HYPERVISOR_hvm_op, __HYPERVISOR_vcpu_op,
    __HYPERVISOR_xen_version, __HYPERVISOR_console_io, __HYPERVISOR_sched_op, __HYPERVISOR_memory_op,
    __HYPERVISOR_hvm_op, __HYPERVISOR_vcpu_op,
    __HYPERVISOR_event_channel_op, __HYPERVISOR_grant_table_op,
    __HYPERVISOR_physdev_op, __HYPERVISOR_set_timer_op, __HYPERVISOR_xsm_op, __HYPERVISOR_sysctl, __HYPERVISOR_domctl,
    __HYPERVISOR_platform_op, __HYPERVISOR_dm_op, __HYPERVISOR_hypfs_op, __HYPERVISOR_argo_op,
};

static uint32_t sub_op(void)
{
    switch (rnd() % 8) {
    case 0: case 1: case 2: case 3: case 4: return rnd() % 16;
    case 5: return rnd() % 64 | ((rnd() % 4) << 6);             /* memory_op: sometimes with extent bits */
    case 6: return rnd() % 32;
    default: return rnd();
    }
}

/* A page-aligned guest-physical address where nothing of the guest lives: the hole past RAM, or above 4 GiB. */
static uint64_t free_address(void)
{
    uint64_t a = (rnd() & 1) ? hole() & ~0xfffu : 0x100000000ull + ((uint64_t)(rnd() % 4096) << 12);
    return (rnd() % 8) ? a : a | (rnd() % 4096);
}

/* Grant ops carry addresses and frame numbers inside their structs, which the hypervisor maps at, writes to or
 * copies into: the operations must lie in scratch (the count is cut to what fits there), and every place the
 * hypervisor would write is kept off the guest's own pages (map's host_addr in the hole or above 4 GiB, a copy's
 * destination frame in scratch or the hole, setup_table's frame list in scratch). The rest stays random. */
static void tame_grant(uint32_t *a)
{
    uint32_t s = (uint32_t)(uintptr_t)scratch, e = s + sizeof scratch, size;
    switch (a[0]) {
    case GNTTABOP_map_grant_ref: size = sizeof(struct gnttab_map_grant_ref); break;
    case GNTTABOP_unmap_grant_ref: size = sizeof(struct gnttab_unmap_grant_ref); break;
    case GNTTABOP_setup_table: size = sizeof(struct gnttab_setup_table); break;
    case GNTTABOP_copy: size = sizeof(struct gnttab_copy); break;
    case GNTTABOP_swap_grant_ref: size = sizeof(struct gnttab_swap_grant_ref); break;
    case GNTTABOP_query_size: case GNTTABOP_get_version: case GNTTABOP_set_version:
        if (a[1] < s || a[1] >= e)
            a[1] = hole();
        return;
    default:
        a[1] = hole();
        return;
    }
    if (a[1] < s || a[1] >= e) {
        a[1] = hole();
        return;
    }
    if ((uint64_t)a[2] * size > e - a[1])
        a[2] = (e - a[1]) / size;
    for (uint32_t i = 0; i < a[2]; i++) {
        void *op = (void *)(uintptr_t)(a[1] + i * size);
        if (a[0] == GNTTABOP_map_grant_ref) {
            ((struct gnttab_map_grant_ref *)op)->host_addr = free_address();
        } else if (a[0] == GNTTABOP_setup_table) {
            struct gnttab_setup_table *t = op;
            if (t->nr_frames > 64 && (rnd() & 1))
                t->nr_frames %= 8;
            /* At most 64 frame numbers fit where the list may go in scratch; a longer list goes to the hole. */
            uint32_t list = (t->nr_frames <= 64 && (rnd() & 3)) ? s + (rnd() % (sizeof scratch - 64 * 8)) : hole();
            set_xen_guest_handle(t->frame_list, (xen_pfn_t *)(uintptr_t)list);
        } else if (a[0] == GNTTABOP_copy) {
            struct gnttab_copy *c = op;
            if (!(c->flags & GNTCOPY_dest_gref))
                c->dest.u.gmfn = (rnd() & 3) ? (s >> 12) + rnd() % (sizeof scratch >> 12) : hole() >> 12;
            if (rnd() & 1) {                                    /* within the page, so that it can succeed */
                c->len %= 4097;
                c->source.offset %= 4096 - c->len + 1;
                c->dest.offset %= 4096 - c->len + 1;
                if (!(c->flags & GNTCOPY_source_gref))
                    c->source.domid = DOMID_SELF;
                if (!(c->flags & GNTCOPY_dest_gref))
                    c->dest.domid = DOMID_SELF;
            }
        }
    }
}

/* Keeps the call from destroying the guest itself; returns the (possibly replaced) number. */
static uint32_t tame(uint32_t nr, uint32_t *a)
{
    switch (nr) {
    case __HYPERVISOR_sched_op:
        if (a[0] != SCHEDOP_yield && a[0] <= SCHEDOP_pin_override)
            a[0] = SCHEDOP_yield;                               /* block, shutdown, poll, remote_shutdown, ... */
        break;
    case __HYPERVISOR_console_io:
        if (a[0] == CONSOLEIO_write && a[1] > 64)
            a[1] %= 64;                                         /* keep the transcript readable */
        break;
    case __HYPERVISOR_memory_op: {
        uint32_t op = a[0] & 0x3f;
        if (op == XENMEM_decrease_reservation || op == XENMEM_exchange || op == XENMEM_remove_from_physmap
            || op == XENMEM_add_to_physmap_batch || op == XENMEM_populate_physmap || op == XENMEM_increase_reservation)
            a[0] = (a[0] & ~0x3fu) | XENMEM_maximum_ram_page;
        if (op == XENMEM_add_to_physmap && a[1] >= (uint32_t)(uintptr_t)scratch && a[1] < (uint32_t)(uintptr_t)scratch + sizeof scratch - 16) {
            struct xen_add_to_physmap *x = (struct xen_add_to_physmap *)(uintptr_t)a[1];
            x->gpfn = (rnd() & 1) ? hole() >> 12 : rnd() | 0x80000u;   /* never over RAM */
        } else if (op == XENMEM_add_to_physmap) {
            a[1] = hole();
        }
        break;
    }
    case __HYPERVISOR_grant_table_op:
        tame_grant(a);
        break;
    case __HYPERVISOR_vcpu_op:
        if (a[0] == VCPUOP_initialise || a[0] == VCPUOP_down || a[0] == VCPUOP_register_vcpu_time_memory_area)
            a[0] = VCPUOP_get_runstate_info;
        if (a[0] == VCPUOP_register_runstate_memory_area && a[2] >= (uint32_t)(uintptr_t)scratch && a[2] < (uint32_t)(uintptr_t)scratch + sizeof scratch - 16) {
            /* The hypervisor rewrites the area at every slice: inside scratch, or in the hole. */
            uint32_t *area = (uint32_t *)(uintptr_t)a[2];
            area[0] = (rnd() & 1) ? (uint32_t)(uintptr_t)scratch + rnd() % (sizeof scratch - 64) : hole();
            area[1] = 0;
        } else if (a[0] == VCPUOP_register_runstate_memory_area) {
            a[2] = hole();
        }
        if (a[0] == VCPUOP_register_vcpu_info && a[2] >= (uint32_t)(uintptr_t)scratch && a[2] < (uint32_t)(uintptr_t)scratch + sizeof scratch - 16) {
            struct vcpu_register_vcpu_info *r = (struct vcpu_register_vcpu_info *)(uintptr_t)a[2];
            r->mfn = (rnd() & 1) ? ((uint32_t)(uintptr_t)scratch >> 12) + 2 : hole() >> 12;
        } else if (a[0] == VCPUOP_register_vcpu_info) {
            a[2] = hole();
        }
        break;
    case __HYPERVISOR_multicall:
        return __HYPERVISOR_xen_version;
    }
    return nr;
}

int guest_main(const char *cmdline)
{
    if (!xen_cpuid_base) {
        print("fuzz: not running under Xen\n");
        return SHUTDOWN_crash;
    }
    uint32_t seed = parse_uint(cmdline_value(cmdline, "seed"), 1);
    uint32_t steps = parse_uint(cmdline_value(cmdline, "steps"), 1000);
    rng = seed ? seed : 1;

    /* RAM ends where the start_info memory map says; the runtime keeps nothing in its last page. */
    ram_end = 0;
    const struct hvm_memmap_table_entry *mm = (const void *)(uintptr_t)start_info->memmap_paddr;
    for (uint32_t i = 0; i < start_info->memmap_entries; i++)
        if (mm[i].type == XEN_HVM_MEMMAP_TYPE_RAM && mm[i].addr + mm[i].size <= 0xffffffffull && mm[i].addr + mm[i].size > ram_end)
            ram_end = (uint32_t)(mm[i].addr + mm[i].size);
    for (uint32_t i = 0; i < sizeof scratch; i += 4)
        *(uint32_t *)(scratch + i) = rnd();
    print_line("fuzz: seed", seed);
    print_line("fuzz: steps", steps);
    print("fuzz: ram end "); print_hex(ram_end); print("\n");

    uint32_t hash = 2166136261u, nonneg = 0, enosys = 0, efault = 0, einval = 0, other = 0, weird = 0;
    for (uint32_t step = 0; step < steps; step++) {
        for (uint32_t i = 0, at = (rnd() % (sizeof scratch - 512)) & ~3u; i < 512; i += 4)
            *(uint32_t *)(scratch + at + i) = rnd();
        uint32_t nr;
        switch (rnd() % 10) {
        case 0: nr = rnd(); break;
        case 1: case 2: nr = rnd() % 64; break;
        default: nr = offered[rnd() % (sizeof offered / sizeof offered[0])]; break;
        }
        uint32_t a[5] = { sub_op(), argument(), argument(), argument(), argument() };
        nr = tame(nr, a);
        /* The page's iret entry is ud2 for HVM guests (xen/arch/x86/hvm/vmx/vmx.c vmx_init_hypercall_page). */
        int direct = nr >= 128 || nr == __HYPERVISOR_iret;
        long rc = direct ? -XEN_ENOSYS : hypercall5(nr, a[0], a[1], a[2], a[3], a[4]);
        if (direct) {
            /* Numbers past the hypercall page, and iret: VMCALL with EAX set directly, as a hostile guest would. */
            register unsigned long b __asm__("ebx") = a[0];
            register unsigned long c __asm__("ecx") = a[1];
            register unsigned long d __asm__("edx") = a[2];
            register unsigned long s __asm__("esi") = a[3];
            register unsigned long di __asm__("edi") = a[4];
            __asm__ volatile("vmcall" : "=a"(rc), "+r"(b), "+r"(c), "+r"(d), "+r"(s), "+r"(di) : "0"(nr) : "memory");
        }
        hash = (hash ^ nr) * 16777619u;
        hash = (hash ^ (uint32_t)rc) * 16777619u;
        if (rc >= 0)
            nonneg++;
        else if (rc == -XEN_ENOSYS)
            enosys++;
        else if (rc == -XEN_EFAULT)
            efault++;
        else if (rc == -XEN_EINVAL)
            einval++;
        else if (rc >= -4095)
            other++;
        else {
            weird++;
            print("fuzz: weird result at step "); print_dec((long)step); print(" nr "); print_hex(nr);
            print(" rc "); print_hex((uint32_t)rc); print("\n");
        }
    }
    print_line("fuzz: nonnegative", nonneg);
    print_line("fuzz: enosys", enosys);
    print_line("fuzz: efault", efault);
    print_line("fuzz: einval", einval);
    print_line("fuzz: other errno", other);
    print_line("fuzz: weird", weird);
    print("fuzz: hash "); print_hex(hash); print("\n");
    print("fuzz: done\n");
    return SHUTDOWN_poweroff;
}
