/*
 * pvio: the PV I/O building blocks a Xen guest driver uses, as Linux's drivers/xen code does:
 * an event channel bound to itself (alloc_unbound + bind_interdomain with DOMID_SELF), the upcall
 * delivered as an interrupt through HVM_PARAM_CALLBACK_IRQ's vector type into its own IDT,
 * VIRQ_TIMER with VCPUOP_set_singleshot_timer and set_timer_op while blocked, SCHEDOP_poll,
 * a grant table mapped with XENMAPSPACE_grant_table, a page granted to itself then mapped and
 * copied, and the PV console ring (xencons_interface) at HVM_PARAM_CONSOLE_PFN.
 */
#include "runtime.h"
#include <xen/sched.h>
#include <xen/memory.h>
#include <xen/vcpu.h>
#include <xen/event_channel.h>
#include <xen/grant_table.h>
#include <xen/hvm/hvm_op.h>
#include <xen/hvm/params.h>
#include <xen/io/console.h>
#include <xen/errno.h>
#include <xen/version.h>

#define SHARED_INFO_GPFN 0x80000u        /* 2 GiB: outside RAM, reachable with paging off */
#define GRANT_TABLE_GPFN 0x80001u
#define GRANT_MAP_GPFN   0x80010u        /* where the granted page is mapped */
#define UPCALL_VECTOR    0xf3
#define GREF             8

static volatile struct shared_info *const shinfo = (volatile struct shared_info *)(SHARED_INFO_GPFN << 12);
static volatile grant_entry_v1_t *const gnttab = (volatile grant_entry_v1_t *)(GRANT_TABLE_GPFN << 12);

static uint8_t granted_page[4096] __attribute__((aligned(4096)));
static uint8_t copy_page[4096] __attribute__((aligned(4096)));

static uint64_t idt[256];
static volatile uint32_t upcalls;
static volatile uint32_t events_on_port[64];

static long evtchn_op(int cmd, void *arg) { return hypercall2(__HYPERVISOR_event_channel_op, cmd, arg); }
static long vcpu_op(int cmd, unsigned vcpu, void *arg) { return hypercall3(__HYPERVISOR_vcpu_op, cmd, vcpu, arg); }
static long gnttab_op(int cmd, void *arg, unsigned count) { return hypercall3(__HYPERVISOR_grant_table_op, cmd, arg, count); }

static inline uint64_t rdtsc(void)
{
    uint32_t lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return ((uint64_t)hi << 32) | lo;
}

/* Guest system time from vcpu_info[0].time (pvclock_clocksource_read, no retry needed on one vCPU). */
static uint64_t now_ns(void)
{
    volatile struct vcpu_time_info *t = &shinfo->vcpu_info[0].time;
    uint32_t v;
    uint64_t ns;
    do {
        v = t->version;
        __asm__ volatile("" ::: "memory");
        uint64_t delta = rdtsc() - t->tsc_timestamp;
        delta = t->tsc_shift >= 0 ? delta << t->tsc_shift : delta >> -t->tsc_shift;
        uint32_t mul = t->tsc_to_system_mul;
        ns = t->system_time + (delta >> 32) * mul + (((delta & 0xffffffffu) * mul) >> 32);
        __asm__ volatile("" ::: "memory");
    } while ((v & 1) || v != t->version);
    return ns;
}

/* The upcall (Linux's __xen_evtchn_do_upcall, 2-level ABI): clear pending, scan the selector, then the words. */
void upcall_handler(void)
{
    volatile struct vcpu_info *vi = &shinfo->vcpu_info[0];
    upcalls++;
    vi->evtchn_upcall_pending = 0;
    xen_ulong_t sel = __atomic_exchange_n(&vi->evtchn_pending_sel, 0, __ATOMIC_SEQ_CST);
    while (sel) {
        unsigned w = __builtin_ctz(sel);
        sel &= sel - 1;
        xen_ulong_t bits = shinfo->evtchn_pending[w] & ~shinfo->evtchn_mask[w];
        while (bits) {
            unsigned b = __builtin_ctz(bits);
            bits &= bits - 1;
            __atomic_and_fetch(&shinfo->evtchn_pending[w], ~(1u << b), __ATOMIC_SEQ_CST);
            unsigned port = w * 32 + b;
            if (port < 64)
                events_on_port[port]++;
        }
    }
}

__asm__(".text\n.globl upcall_entry\nupcall_entry:\n pushal\n cld\n call upcall_handler\n popal\n iret\n");
extern void upcall_entry(void);

/* PVH enters with no GDT loaded (only cached segments): interrupt delivery needs one with our selectors. */
static const uint64_t gdt[4] = { 0, 0, 0x00cf9a000000ffffull, 0x00cf92000000ffffull };

static void install_idt(void)
{
    struct __attribute__((packed)) { uint16_t limit; uint32_t base; } gdtr = { sizeof(gdt) - 1, (uint32_t)(uintptr_t)gdt };
    __asm__ volatile("lgdt %0" : : "m"(gdtr));
    uint16_t cs;
    __asm__ volatile("mov %%cs, %0" : "=r"(cs));
    uint32_t a = (uint32_t)(uintptr_t)upcall_entry;
    /* 32-bit interrupt gate, DPL 0, present (SDM Vol. 3A §6.11). */
    idt[UPCALL_VECTOR] = (a & 0xffff) | ((uint64_t)cs << 16) | ((uint64_t)0x8e00 << 32) | ((uint64_t)(a >> 16) << 48);
    struct __attribute__((packed)) { uint16_t limit; uint32_t base; } idtr = { sizeof(idt) - 1, (uint32_t)(uintptr_t)idt };
    __asm__ volatile("lidt %0" : : "m"(idtr));
}

static long block(void) { return HYPERVISOR_sched_op(SCHEDOP_block, NULL); }

static uint64_t get_param(uint32_t index)
{
    struct xen_hvm_param p = { .domid = DOMID_SELF, .index = index };
    long rc = HYPERVISOR_hvm_op(HVMOP_get_param, &p);
    return rc ? 0xdead : p.value;
}

static void console_ring_write(const char *s)
{
    struct xencons_interface *ring = (struct xencons_interface *)(uintptr_t)(get_param(HVM_PARAM_CONSOLE_PFN) << 12);
    evtchn_port_t port = (evtchn_port_t)get_param(HVM_PARAM_CONSOLE_EVTCHN);
    XENCONS_RING_IDX prod = ring->out_prod;
    for (; *s; s++)
        ring->out[MASK_XENCONS_IDX(prod++, ring->out)] = *s;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    ring->out_prod = prod;
    struct evtchn_send send = { .port = port };
    print_line("console send", evtchn_op(EVTCHNOP_send, &send));
}

int guest_main(const char *cmdline)
{
    struct xen_add_to_physmap xatp = { .domid = DOMID_SELF, .space = XENMAPSPACE_shared_info, .idx = 0, .gpfn = SHARED_INFO_GPFN };
    print_line("map shared_info", HYPERVISOR_memory_op(XENMEM_add_to_physmap, &xatp));
    install_idt();
    struct xen_hvm_param cb = { .domid = DOMID_SELF, .index = HVM_PARAM_CALLBACK_IRQ,
                                .value = ((uint64_t)HVM_PARAM_CALLBACK_TYPE_VECTOR << 56) | UPCALL_VECTOR };
    print_line("set CALLBACK_IRQ vector", HYPERVISOR_hvm_op(HVMOP_set_param, &cb));
    __asm__ volatile("sti");

    /* An interdomain channel to itself. */
    struct evtchn_alloc_unbound au = { .dom = DOMID_SELF, .remote_dom = DOMID_SELF };
    print_line("alloc_unbound", evtchn_op(EVTCHNOP_alloc_unbound, &au));
    struct evtchn_bind_interdomain bi = { .remote_dom = DOMID_SELF, .remote_port = au.port };
    print_line("bind_interdomain", evtchn_op(EVTCHNOP_bind_interdomain, &bi));
    print_line("ports differ", au.port != bi.local_port && bi.local_port < 64);
    uint32_t before = events_on_port[bi.local_port];
    struct evtchn_send send = { .port = au.port };
    print_line("send", evtchn_op(EVTCHNOP_send, &send));
    print_line("upcall received on the bound port", events_on_port[bi.local_port] == before + 1);
    print_line("upcalls positive", upcalls > 0);

    /* Masked while interrupts are off: no upcall until sti. */
    __asm__ volatile("cli");
    before = events_on_port[bi.local_port];
    print_line("send with IF=0", evtchn_op(EVTCHNOP_send, &send));
    print_line("not delivered while IF=0", events_on_port[bi.local_port] == before);
    __asm__ volatile("sti; nop");
    /* Injected at the next VM entry once IF=1: at the latest after the next exit (here a hypercall). */
    HYPERVISOR_xen_version(XENVER_version, NULL);
    print_line("delivered after sti", events_on_port[bi.local_port] == before + 1);

    /* Our own domid, from the status of the self-bound port. */
    struct evtchn_status st = { .dom = DOMID_SELF, .port = bi.local_port };
    print_line("status", evtchn_op(EVTCHNOP_status, &st));
    print_line("status interdomain", st.status == EVTCHNSTAT_interdomain);
    domid_t self = st.u.interdomain.dom;

    /* VIRQ_TIMER with a singleshot timer 1 ms ahead, then block. */
    struct evtchn_bind_virq bv = { .virq = VIRQ_TIMER, .vcpu = 0 };
    print_line("bind_virq timer", evtchn_op(EVTCHNOP_bind_virq, &bv));
    uint64_t start = now_ns();
    struct vcpu_set_singleshot_timer t = { .timeout_abs_ns = start + 1000000, .flags = VCPU_SSHOTTMR_future };
    print_line("set_singleshot_timer", vcpu_op(VCPUOP_set_singleshot_timer, 0, &t));
    uint32_t blocks = 0;
    while (events_on_port[bv.port] == 0 && blocks < 10) {
        block();
        blocks++;
    }
    print_line("timer fired", events_on_port[bv.port] == 1);
    print_line("woke after deadline", now_ns() >= t.timeout_abs_ns);
    print_line("woke within 1 ms of deadline", now_ns() < t.timeout_abs_ns + 1000000);
    struct vcpu_set_singleshot_timer past = { .timeout_abs_ns = 1, .flags = VCPU_SSHOTTMR_future };
    /* Xen 4.17 ignores VCPU_SSHOTTMR_future: a deadline already passed fires at once (common_vcpu_op). */
    print_line("singleshot in the past", vcpu_op(VCPUOP_set_singleshot_timer, 0, &past));
    blocks = 0;
    while (events_on_port[bv.port] == 1 && blocks < 10) {
        block();
        blocks++;
    }
    print_line("past singleshot fired", events_on_port[bv.port] == 2);
    print_line("singleshot other vcpu", vcpu_op(VCPUOP_set_singleshot_timer, 1, &t));
    print_line("stop_singleshot_timer", vcpu_op(VCPUOP_stop_singleshot_timer, 0, NULL));
    print_line("stop_periodic_timer", vcpu_op(VCPUOP_stop_periodic_timer, 0, NULL));

    /* The legacy set_timer_op (64-bit timeout in two registers for a 32-bit guest). */
    uint64_t deadline = now_ns() + 500000;
    print_line("set_timer_op", hypercall2(__HYPERVISOR_set_timer_op, (uint32_t)deadline, (uint32_t)(deadline >> 32)));
    blocks = 0;
    while (events_on_port[bv.port] == 2 && blocks < 10) {
        block();
        blocks++;
    }
    print_line("set_timer_op fired", events_on_port[bv.port] == 3 && now_ns() >= deadline);

    /* SCHEDOP_poll: a timeout with nothing pending, then a port already pending. */
    evtchn_port_t pport = bi.local_port;
    struct sched_poll poll = { .nr_ports = 1, .timeout = now_ns() + 2000000 };
    set_xen_guest_handle(poll.ports, &pport);
    print_line("poll", HYPERVISOR_sched_op(SCHEDOP_poll, &poll));
    print_line("poll timed out", now_ns() >= poll.timeout);
    __asm__ volatile("cli");
    evtchn_op(EVTCHNOP_send, &send);
    poll.timeout = 0;
    print_line("poll pending", HYPERVISOR_sched_op(SCHEDOP_poll, &poll));
    __asm__ volatile("sti; nop");
    evtchn_port_t bad = 5000;
    set_xen_guest_handle(poll.ports, &bad);
    print_line("poll bad port", HYPERVISOR_sched_op(SCHEDOP_poll, &poll));

    /* Grant table: frame 0 at a guest frame, a page granted to ourselves, mapped and copied. */
    struct xen_add_to_physmap gx = { .domid = DOMID_SELF, .space = XENMAPSPACE_grant_table, .idx = 0, .gpfn = GRANT_TABLE_GPFN };
    print_line("map grant table", HYPERVISOR_memory_op(XENMEM_add_to_physmap, &gx));
    gx.idx = XENMAPIDX_grant_table_status;
    print_line("map status frame under v1", HYPERVISOR_memory_op(XENMEM_add_to_physmap, &gx));
    for (int i = 0; i < 4096; i++)
        granted_page[i] = (uint8_t)(i * 7 + 1);
    gnttab[GREF].domid = self;
    gnttab[GREF].frame = (uint32_t)(uintptr_t)granted_page >> 12;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    gnttab[GREF].flags = GTF_permit_access;

    struct gnttab_map_grant_ref map = { .host_addr = (uint64_t)GRANT_MAP_GPFN << 12, .flags = GNTMAP_host_map, .ref = GREF, .dom = self };
    print_line("map_grant_ref", gnttab_op(GNTTABOP_map_grant_ref, &map, 1));
    print_line("map status", map.status);
    volatile uint8_t *mapped = (volatile uint8_t *)(GRANT_MAP_GPFN << 12);
    print_line("mapped page reads the grant", mapped[0] == 1 && mapped[4095] == (uint8_t)(4095 * 7 + 1));
    mapped[100] = 0xAB;
    print_line("write through the mapping lands in the page", ((volatile uint8_t *)granted_page)[100] == 0xAB);
    print_line("entry marked in use", (gnttab[GREF].flags & (GTF_reading | GTF_writing)) == (GTF_reading | GTF_writing));
    struct gnttab_unmap_grant_ref unmap = { .host_addr = map.host_addr, .handle = map.handle };
    print_line("unmap_grant_ref", gnttab_op(GNTTABOP_unmap_grant_ref, &unmap, 1));
    print_line("unmap status", unmap.status);
    print_line("entry released", (gnttab[GREF].flags & (GTF_reading | GTF_writing)) == 0);

    struct gnttab_copy copy = {
        .source = { .u.ref = GREF, .domid = self, .offset = 16 },
        .dest = { .u.gmfn = (uint32_t)(uintptr_t)copy_page >> 12, .domid = DOMID_SELF, .offset = 32 },
        .len = 1000, .flags = GNTCOPY_source_gref,
    };
    print_line("grant copy", gnttab_op(GNTTABOP_copy, &copy, 1));
    print_line("copy status", copy.status);
    print_line("copied bytes match", memcmp(copy_page + 32, granted_page + 16, 1000) == 0 && copy_page[31] == 0);
    gnttab[GREF].flags = 0;
    map.ref = GREF;
    gnttab_op(GNTTABOP_map_grant_ref, &map, 1);
    print_line("map revoked grant status", map.status);

    /* The console ring and the store ring the toolstack set up. */
    uint64_t cpfn = get_param(HVM_PARAM_CONSOLE_PFN), spfn = get_param(HVM_PARAM_STORE_PFN);
    uint32_t top = start_info->memmap_entries ? 0 : 1;
    const struct hvm_memmap_table_entry *mm = (const struct hvm_memmap_table_entry *)(uintptr_t)start_info->memmap_paddr;
    for (uint32_t i = 0; i < start_info->memmap_entries; i++)
        if (mm[i].type == XEN_HVM_MEMMAP_TYPE_RESERVED && mm[i].addr <= (cpfn << 12) && (spfn << 12) < mm[i].addr + mm[i].size)
            top = 1;
    print_line("console and store pages reserved", top);
    print_line("console evtchn set", get_param(HVM_PARAM_CONSOLE_EVTCHN) != 0);
    print_line("store evtchn set", get_param(HVM_PARAM_STORE_EVTCHN) != 0);
    struct evtchn_status cs = { .dom = DOMID_SELF, .port = (evtchn_port_t)get_param(HVM_PARAM_CONSOLE_EVTCHN) };
    evtchn_op(EVTCHNOP_status, &cs);
    print_line("console port bound to dom0", cs.status == EVTCHNSTAT_interdomain && cs.u.interdomain.dom == 0);
    console_ring_write("hello from the console ring\n");
    print("pvio done\n");
    return SHUTDOWN_poweroff;
}
