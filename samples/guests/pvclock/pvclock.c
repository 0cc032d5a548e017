/*
 * pvclock: reads time the way Linux's Xen code does (arch/x86/kernel/pvclock.c, xen/time.c):
 * the vcpu_time_info of shared_info's vcpu_info[0] with the version protocol, the wallclock,
 * then moves vcpu_info with VCPUOP_register_vcpu_info and reads the runstate.
 */
#include "runtime.h"
#include <xen/sched.h>
#include <xen/memory.h>
#include <xen/vcpu.h>
#include <xen/hvm/hvm_op.h>
#include <xen/hvm/params.h>
#include <xen/errno.h>

#define SHARED_INFO_GPFN 0x80000u        /* 2 GiB: outside RAM, reachable with paging off */
#define HOLE_GPFN 0x7ffffu               /* never mapped */

static uint8_t vcpu_info_page[4096] __attribute__((aligned(4096)));
static volatile struct vcpu_runstate_info runstate_area;

static inline uint64_t rdtsc(void)
{
    uint32_t lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return ((uint64_t)hi << 32) | lo;
}

static long vcpu_op(int cmd, unsigned vcpu, void *arg) { return hypercall3(__HYPERVISOR_vcpu_op, cmd, vcpu, arg); }

/* A consistent copy of the time info: retry while the version is odd or changed (pvclock_read_begin/retry). */
static struct vcpu_time_info read_time(volatile struct vcpu_time_info *t, uint32_t *tries)
{
    struct vcpu_time_info copy;
    uint32_t v;
    *tries = 0;
    do {
        ++*tries;
        v = t->version;
        __asm__ volatile("" ::: "memory");
        copy = *(struct vcpu_time_info *)t;
        __asm__ volatile("" ::: "memory");
    } while ((v & 1) || v != t->version);
    return copy;
}

/* pvclock_scale_delta: (delta << shift) * mul >> 32 without a 64x64 multiply. */
static uint64_t scale_delta(uint64_t delta, uint32_t mul, int8_t shift)
{
    if (shift < 0)
        delta >>= -shift;
    else
        delta <<= shift;
    return (((delta & 0xffffffffu) * mul) >> 32) + (delta >> 32) * mul;
}

static uint64_t now_ns(volatile struct vcpu_time_info *t)
{
    uint32_t tries;
    struct vcpu_time_info c = read_time(t, &tries);
    return c.system_time + scale_delta(rdtsc() - c.tsc_timestamp, c.tsc_to_system_mul, c.tsc_shift);
}

static void print_u64(const char *label, uint64_t v)
{
    print(label);
    print(": ");
    print_hex((uint32_t)(v >> 32));
    print_hex((uint32_t)v);
    print("\n");
}

int guest_main(const char *cmdline)
{
    if (!xen_cpuid_base) {
        print("pvclock: not running under Xen\n");
        return SHUTDOWN_crash;
    }

    /* 32-bit guest: setting CALLBACK_IRQ latches the 32-bit shared_info layout (hvm_latch_shinfo_size). */
    struct xen_hvm_param cb = { .domid = DOMID_SELF, .index = HVM_PARAM_CALLBACK_IRQ, .value = 0 };
    print_line("set CALLBACK_IRQ", HYPERVISOR_hvm_op(HVMOP_set_param, &cb));
    struct xen_add_to_physmap xatp = { .domid = DOMID_SELF, .space = XENMAPSPACE_shared_info, .idx = 0, .gpfn = SHARED_INFO_GPFN };
    print_line("add_to_physmap", HYPERVISOR_memory_op(XENMEM_add_to_physmap, &xatp));
    volatile struct shared_info *si = (volatile struct shared_info *)(uintptr_t)(SHARED_INFO_GPFN << 12);

    uint32_t tries;
    volatile struct vcpu_time_info *t = &si->vcpu_info[0].time;
    struct vcpu_time_info c = read_time(t, &tries);
    print_line("version even", (c.version & 1) == 0 && c.version != 0);
    print("tsc_to_system_mul: "); print_hex(c.tsc_to_system_mul); print("\n");
    print_line("tsc_shift", c.tsc_shift);
    print_line("flags", c.flags);
    print_line("timestamp not after now", c.tsc_timestamp <= rdtsc());

    uint64_t a = now_ns(t);
    for (int i = 0; i < 3; i++)
        HYPERVISOR_sched_op(SCHEDOP_yield, 0);
    uint64_t b = now_ns(t);
    uint64_t tsc = rdtsc();
    print_line("monotonic", b > a);
    /* 1 GHz nominal TSC from 0 at boot: system time in ns equals the TSC (within the instructions between the reads). */
    print_line("system time tracks tsc", b <= tsc && tsc - b < 1000);

    uint32_t wv = si->wc_version;
    print_line("wc_version even", (wv & 1) == 0 && wv != 0);
    print_line("wallclock after 2020", si->wc_sec > 1577836800u);
    print_line("wc_nsec below 1e9", si->wc_nsec < 1000000000u);

    struct vcpu_register_vcpu_info r = { .mfn = (uint32_t)(uintptr_t)vcpu_info_page >> 12, .offset = 4096 - 63 };
    print_line("register offset 4033", vcpu_op(VCPUOP_register_vcpu_info, 0, &r));
    r.mfn = HOLE_GPFN; r.offset = 64;
    print_line("register hole gfn", vcpu_op(VCPUOP_register_vcpu_info, 0, &r));
    r.mfn = (uint32_t)(uintptr_t)vcpu_info_page >> 12;
    print_line("register vcpu 5", vcpu_op(VCPUOP_register_vcpu_info, 5, &r));
    print_line("register bad pointer", vcpu_op(VCPUOP_register_vcpu_info, 0, (void *)0xdead0000u));
    print_line("register", vcpu_op(VCPUOP_register_vcpu_info, 0, &r));
    print_line("register again", vcpu_op(VCPUOP_register_vcpu_info, 0, &r));

    volatile struct vcpu_info *vi = (volatile struct vcpu_info *)(vcpu_info_page + 64);
    print_line("upcall_pending", vi->evtchn_upcall_pending);
    print("pending_sel: "); print_hex(vi->evtchn_pending_sel); print("\n");
    for (int i = 0; i < 3; i++)
        HYPERVISOR_sched_op(SCHEDOP_yield, 0);
    c = read_time(&vi->time, &tries);
    print("registered tsc_to_system_mul: "); print_hex(c.tsc_to_system_mul); print("\n");
    print_line("registered version even", (c.version & 1) == 0 && c.version != 0);
    uint64_t d = now_ns(&vi->time);
    print_line("registered clock monotonic", d > b);

    struct vcpu_runstate_info rs;
    memset(&rs, 0xff, sizeof rs);
    print_line("get_runstate_info", vcpu_op(VCPUOP_get_runstate_info, 0, &rs));
    print_line("runstate state", rs.state);
    print_line("runstate running time positive", rs.time[RUNSTATE_running] > 0 && rs.time[RUNSTATE_running] < 0x100000000ull);
    print_line("runstate entry not in future", rs.state_entry_time <= now_ns(&vi->time));
    print_line("get_runstate_info vcpu 1", vcpu_op(VCPUOP_get_runstate_info, 1, &rs));
    print_line("get_runstate_info bad pointer", vcpu_op(VCPUOP_get_runstate_info, 0, (void *)0xdead0000u));
    print_line("vcpu_op send_nmi", vcpu_op(VCPUOP_send_nmi, 0, 0));

    /* Linux's xen_setup_runstate_info: BUG() unless this succeeds. */
    memset((void *)&runstate_area, 0xff, sizeof runstate_area);
    struct vcpu_register_runstate_memory_area ra;
    memset(&ra, 0, sizeof ra);
    ra.addr.p = (uint32_t)(uintptr_t)&runstate_area;
    print_line("register runstate area", vcpu_op(VCPUOP_register_runstate_memory_area, 0, &ra));
    print_line("runstate area state", runstate_area.state);
    uint64_t entered = runstate_area.state_entry_time;
    HYPERVISOR_sched_op(SCHEDOP_yield, 0);
    print_line("runstate area updated", runstate_area.state_entry_time > entered && runstate_area.time[RUNSTATE_running] > 0);
    ra.addr.p = 0xdead0000u;
    print_line("register runstate area wild", vcpu_op(VCPUOP_register_runstate_memory_area, 0, &ra));
    HYPERVISOR_sched_op(SCHEDOP_yield, 0);
    print_line("register runstate area bad pointer", vcpu_op(VCPUOP_register_runstate_memory_area, 0, (void *)0xdead0000u));
    print_u64("now", now_ns(&vi->time));
    return SHUTDOWN_poweroff;
}
