/*
 * The tiny runtime every guest links: Xen detection by CPUID, the hypercall page,
 * console output, the command line and shutdown. Freestanding; 32-bit, paging off.
 */
#ifndef GUEST_RUNTIME_H
#define GUEST_RUNTIME_H

#include <stdint.h>
#include <stddef.h>
#include <xen/xen.h>
#include <xen/arch-x86/hvm/start_info.h>   /* struct hvm_start_info (PVH boot protocol) */

/* Set by the runtime before guest_main runs. */
extern const struct hvm_start_info *start_info;
extern uint32_t xen_cpuid_base;       /* 0 when not running under Xen (e.g. QEMU TCG) */
extern char hypercall_page[4096];

/* Implemented by each guest. The return value is the shutdown reason (SHUTDOWN_*). */
int guest_main(const char *cmdline);

/* CPUID (Intel SDM Vol. 2A, CPUID). */
static inline void cpuid(uint32_t leaf, uint32_t *a, uint32_t *b, uint32_t *c, uint32_t *d)
{
    __asm__ volatile("cpuid" : "=a"(*a), "=b"(*b), "=c"(*c), "=d"(*d) : "0"(leaf), "2"(0));
}

static inline void outb(uint16_t port, uint8_t v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static inline uint8_t inb(uint16_t port) { uint8_t v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline void outl(uint16_t port, uint32_t v) { __asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port)); }

static inline void wrmsr(uint32_t msr, uint64_t v)
{
    __asm__ volatile("wrmsr" : : "c"(msr), "a"((uint32_t)v), "d"((uint32_t)(v >> 32)) : "memory");
}

/*
 * A hypercall through the hypercall page: entry i sits at offset 32 * i and loads EAX itself,
 * so EAX carries the entry address in. 32-bit ABI: EBX, ECX, EDX, ESI, EDI hold the arguments,
 * EAX the result (xen/include/public/arch-x86/xen-x86_32.h).
 */
static inline long hypercall5(unsigned nr, unsigned long a1, unsigned long a2, unsigned long a3,
                              unsigned long a4, unsigned long a5)
{
    long ret;
    register unsigned long b __asm__("ebx") = a1;
    register unsigned long c __asm__("ecx") = a2;
    register unsigned long d __asm__("edx") = a3;
    register unsigned long s __asm__("esi") = a4;
    register unsigned long di __asm__("edi") = a5;
    __asm__ volatile("call *%%eax"
                     : "=a"(ret), "+r"(b), "+r"(c), "+r"(d), "+r"(s), "+r"(di)
                     : "0"(hypercall_page + nr * 32)
                     : "memory");
    return ret;
}

#define hypercall1(nr, a1) hypercall5(nr, (unsigned long)(a1), 0, 0, 0, 0)
#define hypercall2(nr, a1, a2) hypercall5(nr, (unsigned long)(a1), (unsigned long)(a2), 0, 0, 0)
#define hypercall3(nr, a1, a2, a3) hypercall5(nr, (unsigned long)(a1), (unsigned long)(a2), (unsigned long)(a3), 0, 0)

long HYPERVISOR_console_io(int cmd, int count, void *buffer);
long HYPERVISOR_xen_version(int cmd, void *arg);
long HYPERVISOR_sched_op(int cmd, void *arg);
long HYPERVISOR_memory_op(unsigned cmd, void *arg);
long HYPERVISOR_hvm_op(unsigned op, void *arg);

/* Console: console_io under Xen, port 0xE9 (QEMU isa-debugcon, Bochs) otherwise. */
void print(const char *s);
void print_n(const char *s, size_t n);
void print_hex(uint32_t v);          /* 0x%08x */
void print_dec(long v);
void print_line(const char *label, long v);   /* "label: v\n" */

/* Stops the domain: SCHEDOP_shutdown under Xen, isa-debug-exit (port 0xf4) otherwise. */
__attribute__((noreturn)) void shutdown(unsigned reason);

/* Command line helpers: "key" presence and "key=number" values. */
const char *cmdline_value(const char *cmdline, const char *key);   /* text after "key=", or NULL */
int cmdline_has(const char *cmdline, const char *word);
uint32_t parse_uint(const char *s, uint32_t fallback);

void *memset(void *d, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
void *memmove(void *d, const void *s, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
int strncmp(const char *a, const char *b, size_t n);

#endif
