/* The local APIC in xAPIC mode at 0xFEE00000 (SDM Vol. 3A 11): IA32_APIC_BASE, ID, version, SVR, TPR/PPR, self-IPI
 * through the ICR with IRR/ISR/EOI, priority order of pending vectors, TPR masking, the LVT timer in one-shot and
 * periodic mode with HLT woken by it, and a masked LVT. Counts and times are never printed, only what happened. */
#include "sys.h"

#define ID 0x20
#define VER 0x30
#define TPR 0x80
#define PPR 0xa0
#define EOI 0xb0
#define SVR 0xf0
#define ISR 0x100
#define IRR 0x200
#define ICR_LO 0x300
#define ICR_HI 0x310
#define LVT_TIMER 0x320
#define TMR_INIT 0x380
#define TMR_CUR 0x390
#define TMR_DIV 0x3e0

static volatile int order[8], norder, ticks;
static volatile uint32_t isr_in_handler, ppr_in_handler;
static int bit(uint32_t base, int v) { return (apic_read(base + 0x10 * (v / 32)) >> (v % 32)) & 1; }
static void on_ipi(struct frame *f)
{
    if (norder < 8)
        order[norder++] = (int)f->vector;
    isr_in_handler = bit(ISR, (int)f->vector);
    ppr_in_handler = apic_read(PPR);
    apic_write(EOI, 0);
}
static void on_timer(struct frame *f) { (void)f; ticks++; apic_write(EOI, 0); }
static void self_ipi(int v) { apic_write(ICR_HI, 0); apic_write(ICR_LO, 0x40000 | 0x4000 | v); }   /* self, assert, fixed */
static void show_order(const char *what)
{
    print(what);
    print(":");
    for (int i = 0; i < norder; i++) {
        putc_(' ');
        print_hex(order[i]);
    }
    putc_('\n');
    norder = 0;
}

void kmain(void)
{
    uint32_t a, b, c, d;
    cpuid(1, 0, &a, &b, &c, &d);
    kv("cpuid.1 apic", (d >> 9) & 1);
    kv("cpuid.1 initial apic id", b >> 24);
    kv("IA32_APIC_BASE", rdmsr(0x1b));
    kv("apic id", apic_read(ID));
    kv("apic version", apic_read(VER));
    /* SVR, TPR and the LVTs are not printed before being written: firmware (SeaBIOS under QEMU) may have set them. */
    apic_write(TPR, 0);
    apic_write(SVR, 0x1ff);
    kv("svr enabled", apic_read(SVR));

    for (int v = 0x40; v < 0x70; v++) {
        trap_hook[v] = on_ipi;
    }
    self_ipi(0x41);
    kv("irr bit of 0x41 with IF=0", bit(IRR, 0x41));
    kv("isr bit of 0x41 before delivery", bit(ISR, 0x41));
    __asm__ volatile("sti; nop; cli");
    show_order("delivered");
    kv("isr bit in the handler", isr_in_handler);
    kv("ppr in the handler", ppr_in_handler);
    kv("irr/isr after EOI", bit(IRR, 0x41) | (bit(ISR, 0x41) << 1));

    self_ipi(0x45);
    self_ipi(0x62);
    self_ipi(0x51);
    __asm__ volatile("sti; nop; cli");
    show_order("three pending, highest first");

    apic_write(TPR, 0x50);
    kv("tpr", apic_read(TPR));
    kv("ppr with tpr 0x50", apic_read(PPR));
    self_ipi(0x48);
    self_ipi(0x58);
    self_ipi(0x61);
    __asm__ volatile("sti; nop; nop; cli");
    show_order("with tpr 0x50 only class > 5");
    kv("irr bit of 0x48 (held back)", bit(IRR, 0x48));
    apic_write(TPR, 0);
    __asm__ volatile("sti; nop; nop; cli" ::: "memory");
    show_order("after tpr 0");

    /* The timer: divide by 1 (0xb), one-shot, then periodic; HLT waits for it. */
    trap_hook[0x70] = on_timer;
    apic_write(TMR_DIV, 0xb);
    kv("timer divide", apic_read(TMR_DIV));
    apic_write(LVT_TIMER, 0x70);
    apic_write(TMR_INIT, 200000);
    kv("timer initial count", apic_read(TMR_INIT));
    while (!ticks)
        __asm__ volatile("sti; hlt; cli");
    kv("one-shot ticks", ticks);
    kv("current count after one-shot", apic_read(TMR_CUR));
    ticks = 0;
    apic_write(LVT_TIMER, 0x70 | (1u << 17));
    apic_write(TMR_INIT, 100000);
    while (ticks < 3)
        __asm__ volatile("sti; hlt; cli");
    apic_write(LVT_TIMER, 0x70 | (1u << 16));
    print("periodic: three ticks\n");
    kv("lvt timer masked", apic_read(LVT_TIMER));
    apic_write(TMR_INIT, 0);
    __asm__ volatile("sti; nop; nop; cli" ::: "memory");     /* a tick accepted before the mask is delivered here */
    ticks = 0;
    apic_write(TMR_INIT, 1000);
    for (volatile int i = 0; i < 200000; i++)
        ;
    __asm__ volatile("sti; nop; nop; cli");
    kv("ticks with a masked LVT", ticks);
    kv("irr bit of 0x70 with a masked LVT", bit(IRR, 0x70));
    apic_write(TMR_INIT, 0);
}
