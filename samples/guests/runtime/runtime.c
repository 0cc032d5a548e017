/* The shared guest runtime; see runtime.h. */
#include "runtime.h"
#include <xen/sched.h>
#include <xen/version.h>
#include <xen/arch-x86/cpuid.h>

const struct hvm_start_info *start_info;
uint32_t xen_cpuid_base;
char hypercall_page[4096] __attribute__((aligned(4096), section(".bss.page_aligned")));

/* isa-debug-exit: QEMU exits with status (value << 1) | 1 (hw/misc/debugexit.c). */
#define DEBUG_EXIT_PORT 0xf4
#define DEBUG_CONSOLE_PORT 0xe9

/*
 * Xen's leaves start at 0x40000000 or, when Viridian is offered first, at a later multiple of
 * 0x100 (xen/include/public/arch-x86/cpuid.h). Scan like Linux's xen_cpuid_base().
 */
static uint32_t find_xen(void)
{
    uint32_t a, b, c, d;
    cpuid(1, &a, &b, &c, &d);
    if (!(c & (1u << 31)))           /* CPUID.1:ECX.hypervisor */
        return 0;
    for (uint32_t base = 0x40000000; base < 0x40010000; base += 0x100) {
        cpuid(base, &a, &b, &c, &d);
        if (b == XEN_CPUID_SIGNATURE_EBX && c == XEN_CPUID_SIGNATURE_ECX && d == XEN_CPUID_SIGNATURE_EDX
            && a - base >= 2)
            return base;
    }
    return 0;
}

/* Leaf base+2: EAX = number of hypercall pages, EBX = the MSR to write their address to. */
static void install_hypercall_page(uint32_t base)
{
    uint32_t pages, msr, c, d;
    cpuid(base + 2, &pages, &msr, &c, &d);
    wrmsr(msr, (uint32_t)(uintptr_t)hypercall_page);
}

long HYPERVISOR_console_io(int cmd, int count, void *buffer) { return hypercall3(__HYPERVISOR_console_io, cmd, count, buffer); }
long HYPERVISOR_xen_version(int cmd, void *arg) { return hypercall2(__HYPERVISOR_xen_version, cmd, arg); }
long HYPERVISOR_sched_op(int cmd, void *arg) { return hypercall2(__HYPERVISOR_sched_op, cmd, arg); }
long HYPERVISOR_memory_op(unsigned cmd, void *arg) { return hypercall2(__HYPERVISOR_memory_op, cmd, arg); }
long HYPERVISOR_hvm_op(unsigned op, void *arg) { return hypercall2(__HYPERVISOR_hvm_op, op, arg); }

void print_n(const char *s, size_t n)
{
    if (xen_cpuid_base) {
        HYPERVISOR_console_io(CONSOLEIO_write, (int)n, (void *)s);
        return;
    }
    for (size_t i = 0; i < n; i++)
        outb(DEBUG_CONSOLE_PORT, (uint8_t)s[i]);
}

void print(const char *s) { print_n(s, strlen(s)); }

void print_hex(uint32_t v)
{
    char buf[10] = { '0', 'x' };
    for (int i = 0; i < 8; i++)
        buf[2 + i] = "0123456789abcdef"[(v >> (28 - 4 * i)) & 0xf];
    print_n(buf, sizeof buf);
}

void print_dec(long v)
{
    char buf[24];
    int i = sizeof buf;
    unsigned long u = v < 0 ? 0ul - (unsigned long)v : (unsigned long)v;
    do {
        buf[--i] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        buf[--i] = '-';
    print_n(buf + i, sizeof buf - i);
}

void print_line(const char *label, long v)
{
    print(label);
    print(": ");
    print_dec(v);
    print("\n");
}

void shutdown(unsigned reason)
{
    if (xen_cpuid_base) {
        struct sched_shutdown s = { .reason = reason };
        HYPERVISOR_sched_op(SCHEDOP_shutdown, &s);
    } else {
        outl(DEBUG_EXIT_PORT, reason);
    }
    for (;;)
        __asm__ volatile("cli; hlt");
}

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\n'; }

const char *cmdline_value(const char *cmdline, const char *key)
{
    size_t k = strlen(key);
    for (const char *p = cmdline; p && *p; ) {
        while (is_space(*p))
            p++;
        if (strncmp(p, key, k) == 0 && p[k] == '=')
            return p + k + 1;
        while (*p && !is_space(*p))
            p++;
    }
    return NULL;
}

int cmdline_has(const char *cmdline, const char *word)
{
    size_t k = strlen(word);
    for (const char *p = cmdline; p && *p; ) {
        while (is_space(*p))
            p++;
        if (strncmp(p, word, k) == 0 && (p[k] == 0 || is_space(p[k])))
            return 1;
        while (*p && !is_space(*p))
            p++;
    }
    return 0;
}

uint32_t parse_uint(const char *s, uint32_t fallback)
{
    if (!s || *s < '0' || *s > '9')
        return fallback;
    uint32_t v = 0;
    while (*s >= '0' && *s <= '9')
        v = v * 10 + (uint32_t)(*s++ - '0');
    return v;
}

void *memset(void *d, int c, size_t n) { unsigned char *p = d; while (n--) *p++ = (unsigned char)c; return d; }
void *memcpy(void *d, const void *s, size_t n) { unsigned char *p = d; const unsigned char *q = s; while (n--) *p++ = *q++; return d; }
void *memmove(void *d, const void *s, size_t n)
{
    unsigned char *p = d;
    const unsigned char *q = s;
    if (p < q)
        while (n--) *p++ = *q++;
    else
        while (n--) p[n] = q[n];
    return d;
}
int memcmp(const void *a, const void *b, size_t n)
{
    const unsigned char *p = a, *q = b;
    for (; n; n--, p++, q++)
        if (*p != *q)
            return *p - *q;
    return 0;
}
size_t strlen(const char *s) { size_t n = 0; while (s[n]) n++; return n; }
int strncmp(const char *a, const char *b, size_t n)
{
    for (; n; n--, a++, b++) {
        if (*a != *b)
            return (unsigned char)*a - (unsigned char)*b;
        if (!*a)
            return 0;
    }
    return 0;
}

/* Called by entry.S with EBX's start_info pointer (paging is off: physical == linear). */
__attribute__((noreturn)) void guest_start(const struct hvm_start_info *si)
{
    start_info = si;
    xen_cpuid_base = find_xen();
    if (xen_cpuid_base)
        install_hypercall_page(xen_cpuid_base);
    const char *cmdline = "";
    if (si && si->magic == XEN_HVM_START_MAGIC_VALUE && si->cmdline_paddr && si->cmdline_paddr < 0xffffffffull)
        cmdline = (const char *)(uintptr_t)si->cmdline_paddr;
    shutdown((unsigned)guest_main(cmdline));
}
