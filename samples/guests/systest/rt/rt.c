/* The systest runtime (see rt/sys.h): console, GDT/IDT, trap dispatch, TSS, ring-3 entry. */
#include "sys.h"

const void *start_info;
uint64_t gdt[GDT_ENTRIES] __attribute__((aligned(16))) = {
    0,
    0x00cf9b000000ffffull,   /* 0x08 ring 0 code32 (accessed bit preset: descriptors are never written back) */
    0x00af9b000000ffffull,   /* 0x10 ring 0 code64 */
    0x00cf93000000ffffull,   /* 0x18 ring 0 data */
    0x00cffb000000ffffull,   /* 0x20 ring 3 code32 */
    0x00cff3000000ffffull,   /* 0x28 ring 3 data */
    0x00affb000000ffffull,   /* 0x30 ring 3 code64 */
    0x00009b000000ffffull,   /* 0x38 ring 0 code16 */
    0x000093000000ffffull,   /* 0x40 ring 0 data16 */
};
#ifdef __x86_64__
#define GATE_SIZE 16
#else
#define GATE_SIZE 8
#endif
uint8_t idt[256 * GATE_SIZE] __attribute__((aligned(16)));
extern uint8_t isr_table[];
trap_hook_t trap_hook[256];
volatile ureg fixup_ip;
volatile int last_vec = -1;
volatile ureg last_err, last_cr2, last_ip, last_cs, last_fix;
struct tss_area tss_area __attribute__((aligned(128)));
uint8_t kstack0[8192] __attribute__((aligned(16)));
uint8_t ist_stack1[4096] __attribute__((aligned(16)));
uint8_t ist_stack2[4096] __attribute__((aligned(16)));
uint8_t user_stack[8192] __attribute__((aligned(16)));

static uint8_t page_pool[96 * 4096] __attribute__((aligned(4096), section(".bss.page_aligned")));
static unsigned pages_used;

void *page_alloc(void)
{
    if (pages_used == sizeof page_pool / 4096) {
        print("page pool exhausted\n");
        finish();
    }
    return page_pool + 4096 * pages_used++;
}

void *memset(void *d, int c, size_t n) { uint8_t *p = d; while (n--) *p++ = (uint8_t)c; return d; }
void *memcpy(void *d, const void *s, size_t n) { uint8_t *p = d; const uint8_t *q = s; while (n--) *p++ = *q++; return d; }
int memcmp(const void *a, const void *b, size_t n)
{
    const uint8_t *p = a, *q = b;
    for (; n; n--, p++, q++)
        if (*p != *q)
            return *p < *q ? -1 : 1;
    return 0;
}

void putc_(char c) { outb(0xe9, (uint8_t)c); }
void print(const char *s) { while (*s) putc_(*s++); }
void print_hex(uint64_t v)
{
    char buf[19];
    int i = 18;
    buf[i] = 0;
    do {
        buf[--i] = "0123456789abcdef"[v & 15];
        v >>= 4;
    } while (v);
    buf[--i] = 'x';
    buf[--i] = '0';
    print(buf + i);
}
void print_dec(long v)
{
    char buf[24];
    int i = 23;
    int neg = v < 0;
    unsigned long u = neg ? -(unsigned long)v : (unsigned long)v;
    buf[i] = 0;
    do {
        buf[--i] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (neg)
        buf[--i] = '-';
    print(buf + i);
}
void kv(const char *key, uint64_t v) { print(key); putc_('='); print_hex(v); putc_('\n'); }
void check(const char *what, int ok) { print(what); print(ok ? ": ok\n" : ": FAIL\n"); }

static int has_error_code(int v) { return v == 8 || (v >= 10 && v <= 14) || v == 17 || v == 21 || v == 29 || v == 30; }

void report_trap(const char *what)
{
    print(what);
    if (last_vec < 0) {
        print(": no fault\n");
        return;
    }
    print(": vec=");
    print_dec(last_vec);
    if (has_error_code(last_vec)) {
        print(" err=");
        print_hex(last_err);
    }
    if (last_vec == 14) {
        print(" cr2=");
        print_hex(last_cr2);
    }
    /* Where the trap left: the tried instruction (a fault: ip=end-N) or after it (a trap: ip=end). */
    long delta = (long)(last_ip - last_fix);
    print(" ip=end");
    if (delta)
        print_dec(delta);
    putc_('\n');
}

__attribute__((noreturn)) void finish(void)
{
    print("done\n");
    outb(0xf4, 0);          /* QEMU isa-debug-exit; ignored by vmmkit-hv */
    for (;;)
        __asm__ volatile("cli; hlt");
}

void trap(struct frame *f)
{
    int v = (int)f->vector;
    if (trap_hook[v]) {
        trap_hook[v](f);
        return;
    }
    if (fixup_ip) {
        last_vec = v;
        last_err = f->error;
        last_ip = f->ip;
        last_cs = f->cs;
        last_fix = fixup_ip;
        if (v == 14)
            last_cr2 = READ_CR(2);
        f->ip = fixup_ip;
        fixup_ip = 0;
        return;
    }
    print("unexpected trap: vec=");
    print_dec(v);
    print(" err=");
    print_hex(f->error);
    print(" ip=");
    print_hex(f->ip);
    print(" cs=");
    print_hex(f->cs);
    if (v == 14) {
        print(" cr2=");
        print_hex(READ_CR(2));
    }
    putc_('\n');
    finish();
}

void set_gate(int vec, int type, int dpl, int ist)
{
    uintptr_t off = (uintptr_t)(isr_table + 16 * vec);
    uint8_t *g = idt + GATE_SIZE * vec;
#ifdef __x86_64__
    uint16_t sel = SEL_CODE64;
#else
    uint16_t sel = SEL_CODE32;
#endif
    memset(g, 0, GATE_SIZE);
    g[0] = (uint8_t)off;
    g[1] = (uint8_t)(off >> 8);
    g[2] = (uint8_t)sel;
    g[3] = (uint8_t)(sel >> 8);
    g[4] = (uint8_t)(ist & 7);
    g[5] = (uint8_t)(0x80 | (dpl << 5) | type);
    g[6] = (uint8_t)(off >> 16);
    g[7] = (uint8_t)(off >> 24);
#ifdef __x86_64__
    *(uint32_t *)(g + 8) = (uint32_t)((uint64_t)off >> 32);
#endif
}
void set_gate_present(int vec, int present)
{
    uint8_t *g = idt + GATE_SIZE * vec;
    g[5] = (uint8_t)((g[5] & 0x7f) | (present ? 0x80 : 0));
}
void set_gate_selector(int vec, uint16_t sel)
{
    uint8_t *g = idt + GATE_SIZE * vec;
    g[2] = (uint8_t)sel;
    g[3] = (uint8_t)(sel >> 8);
}

void tss_init(void)
{
    uintptr_t base = (uintptr_t)&tss_area.t;
    uint32_t limit = sizeof tss_area - 1;
    memset(&tss_area, 0, sizeof tss_area);
    memset(tss_area.iobitmap, 0xff, sizeof tss_area.iobitmap);
    tss_area.t.iomap = (uint16_t)((uintptr_t)tss_area.iobitmap - base);
#ifdef __x86_64__
    tss_area.t.rsp[0] = (uint64_t)(uintptr_t)kstack0_top;
    tss_area.t.ist[0] = (uint64_t)(uintptr_t)(ist_stack1 + sizeof ist_stack1);
    tss_area.t.ist[1] = (uint64_t)(uintptr_t)(ist_stack2 + sizeof ist_stack2);
    gdt[SEL_TSS / 8] = seg_desc((uint32_t)base, limit, 0x89, 0);
    gdt[SEL_TSS / 8 + 1] = (uint64_t)base >> 32;
#else
    tss_area.t.esp0 = (uint32_t)(uintptr_t)kstack0_top;
    tss_area.t.ss0 = SEL_DATA;
    gdt[SEL_TSS / 8] = seg_desc((uint32_t)base, limit, 0x89, 0);
#endif
    __asm__ volatile("ltr %w0" : : "r"(SEL_TSS) : "memory");
}

/* enter_user / the INT 0x80 gate back. */
extern int ctx_save(ureg *buf);
extern __attribute__((noreturn)) void ctx_restore(ureg *buf);
static ureg user_ctx[8];
static void back_from_user(struct frame *f)
{
    (void)f;
    ctx_restore(user_ctx);
}
void user_exit_gate(void)
{
    set_gate(0x80, 0xe, 3, 0);
    trap_hook[0x80] = back_from_user;
}
void enter_user(void (*fn)(void), int cs64, ureg eflags)
{
    if (ctx_save(user_ctx))
        return;
    uintptr_t sp = (uintptr_t)(user_stack + sizeof user_stack);
#ifdef __x86_64__
    ureg cs = cs64 ? SEL_UCODE64 : SEL_UCODE32;
    __asm__ volatile("pushq %0; pushq %1; pushq %2; pushq %3; pushq %4; iretq"
                     : : "r"((ureg)SEL_UDATA), "r"((ureg)sp), "r"(eflags), "r"(cs), "r"((ureg)(uintptr_t)fn) : "memory");
#else
    (void)cs64;
    __asm__ volatile("movl %0, %%ds; movl %0, %%es; pushl %0; pushl %1; pushl %2; pushl %3; pushl %4; iretl"
                     : : "r"((ureg)SEL_UDATA), "r"((ureg)sp), "r"(eflags), "r"((ureg)SEL_UCODE32), "r"((ureg)(uintptr_t)fn) : "memory");
#endif
    __builtin_unreachable();
}

void rt_main(void)
{
    struct __attribute__((packed)) { uint16_t limit; uintptr_t base; } gdtr = { sizeof gdt - 1, (uintptr_t)gdt },
        idtr = { sizeof idt - 1, (uintptr_t)idt };
    for (int v = 0; v < 256; v++)
        set_gate(v, 0xe, 0, 0);
    __asm__ volatile("lgdt %0" : : "m"(gdtr));
#ifdef __x86_64__
    __asm__ volatile("pushq $0x10; leaq 1f(%%rip), %%rax; pushq %%rax; lretq; 1:\n\t"
                     "movl $0x18, %%eax; movl %%eax, %%ds; movl %%eax, %%es; movl %%eax, %%ss; movl %%eax, %%fs; movl %%eax, %%gs"
                     : : : "rax", "memory");
#else
    __asm__ volatile("ljmp $0x08, $1f; 1:\n\t"
                     "movl $0x18, %%eax; movl %%eax, %%ds; movl %%eax, %%es; movl %%eax, %%ss; movl %%eax, %%fs; movl %%eax, %%gs"
                     : : : "eax", "memory");
#endif
    __asm__ volatile("lidt %0" : : "m"(idtr));
    /* Mask both 8259s (firmware under QEMU leaves the PIT ticking on IRQ0); vmmkit-hv ignores these ports. */
    outb(0x21, 0xff);
    outb(0xa1, 0xff);
    kmain();
    finish();
}
