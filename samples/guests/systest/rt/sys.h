/*
 * The systest runtime: what every freestanding test kernel shares, in 32-bit protected mode
 * (rt/entry32.S) or in long mode (rt/entry64.S). Output goes to port 0xE9 only, so the same
 * transcript comes out of QEMU (isa-debugcon) and vmmkit-hv. The runtime loads a GDT and an IDT
 * (LGDT, LIDT, segment reloads; nothing else), masks the 8259 PICs, calls kmain() and ends with
 * "done", a write to QEMU's isa-debug-exit (port 0xf4) and CLI; HLT.
 */
#ifndef SYSTEST_SYS_H
#define SYSTEST_SYS_H

#include <stdint.h>
#include <stddef.h>

#ifdef __x86_64__
typedef uint64_t ureg;
#else
typedef uint32_t ureg;
#endif

/* GDT layout (the same in both runtimes; SYSCALL/SYSRET and SYSENTER/SYSEXIT want this order). */
#define SEL_CODE32   0x08   /* ring 0, 32-bit, flat */
#define SEL_CODE64   0x10   /* ring 0, 64-bit (L=1) */
#define SEL_DATA     0x18   /* ring 0, data, flat */
#define SEL_UCODE32  0x23   /* ring 3, 32-bit */
#define SEL_UDATA    0x2b   /* ring 3, data */
#define SEL_UCODE64  0x33   /* ring 3, 64-bit */
#define SEL_CODE16   0x38   /* ring 0, 16-bit code, base 0, limit 0xffff */
#define SEL_DATA16   0x40   /* ring 0, 16-bit data, base 0, limit 0xffff */
#define SEL_TSS      0x48   /* TSS (two slots in long mode) */
#define SEL_SCRATCH  0x58   /* five free slots 0x58..0x78 for tests */
#define GDT_ENTRIES  16
extern uint64_t gdt[GDT_ENTRIES];

/* A segment descriptor (SDM Vol. 3A 3.4.5). type = S|type nibble (e.g. 0x9a code, 0x92 data), flags = G,D/B,L,AVL nibble. */
static inline uint64_t seg_desc(uint32_t base, uint32_t limit, uint8_t access, uint8_t flags)
{
    return (uint64_t)(limit & 0xffff) | ((uint64_t)(base & 0xffffff) << 16) | ((uint64_t)access << 40)
         | ((uint64_t)((limit >> 16) & 0xf) << 48) | ((uint64_t)(flags & 0xf) << 52) | ((uint64_t)(base >> 24) << 56);
}

/* The frame the common trap stub builds (rt/isr32.S, rt/isr64.S). sp/ss are valid in long mode always,
 * in protected mode only when the trap came from another privilege level. */
struct frame {
    ureg regs[15];  /* 32-bit: edi esi ebp esp0 ebx edx ecx eax + unused; 64-bit: r15..r8 rbp rdi rsi rdx rcx rbx rax */
    ureg vector, error;
    ureg ip, cs, flags, sp, ss;
};

/* Trap handling: a hook per vector wins; otherwise an armed fixup (TRY) records the trap and resumes
 * after the tried instruction; otherwise the trap is reported as unexpected and the kernel stops. */
typedef void (*trap_hook_t)(struct frame *f);
extern trap_hook_t trap_hook[256];
extern volatile ureg fixup_ip;
extern volatile int last_vec;          /* -1: no trap */
extern volatile ureg last_err, last_cr2, last_ip, last_cs, last_fix;

#ifdef __x86_64__
#define FIX_BEGIN "movq $.Lfx%=, fixup_ip(%%rip)\n\t"
#define FIX_END   "\n.Lfx%=:\n\tmovq $0, fixup_ip(%%rip)\n\t"
#else
#define FIX_BEGIN "movl $.Lfx%=, fixup_ip\n\t"
#define FIX_END   "\n.Lfx%=:\n\tmovl $0, fixup_ip\n\t"
#endif
/* TRY("insn", outputs, inputs, clobbers): runs insn; a trap resumes after it with last_vec set. */
#define TRY(text, ...) ({ last_vec = -1; __asm__ volatile(FIX_BEGIN text FIX_END __VA_ARGS__); last_vec; })

/* IDT: vectors 0..255 all have stubs; set_gate chooses type (0xe interrupt, 0xf trap), DPL, IST. */
void set_gate(int vec, int type, int dpl, int ist);
void set_gate_present(int vec, int present);
void set_gate_selector(int vec, uint16_t sel);
extern uint8_t idt[];

/* Console on port 0xE9. */
void putc_(char c);
void print(const char *s);
void print_hex(uint64_t v);           /* 0x... without leading zeros */
void print_dec(long v);
void kv(const char *key, uint64_t v); /* "key=0x..\n" */
void check(const char *what, int ok); /* "what: ok" or "what: FAIL" */
void report_trap(const char *what);   /* "what: no trap" or "what: #vec err=.. " */
__attribute__((noreturn)) void finish(void);

/* Implemented by each kernel. */
void kmain(void);

extern const void *start_info;

/* The task-state segment: call tss_init() before using privilege changes. */
#ifdef __x86_64__
struct tss { uint32_t r0; uint64_t rsp[3]; uint64_t r1; uint64_t ist[7]; uint64_t r2; uint16_t r3, iomap; } __attribute__((packed));
#else
struct tss {
    uint32_t link, esp0, ss0, esp1, ss1, esp2, ss2, cr3, eip, eflags, eax, ecx, edx, ebx, esp, ebp, esi, edi;
    uint32_t es, cs, ss, ds, fs, gs, ldt; uint16_t trap, iomap;
} __attribute__((packed));
#endif
struct tss_area { struct tss t; uint8_t iobitmap[8192 + 1]; } __attribute__((packed));
extern struct tss_area tss_area;
extern uint8_t kstack0[8192], ist_stack1[4096], ist_stack2[4096], user_stack[8192];
#define kstack0_top (kstack0 + sizeof kstack0)
#define ist_stack1_top (ist_stack1 + sizeof ist_stack1)
#define ist_stack2_top (ist_stack2 + sizeof ist_stack2)
void tss_init(void);                  /* fills the TSS, LTR SEL_TSS; I/O bitmap all ones (deny) */

/* Enter ring 3 at fn with the user stack; fn must leave ring 3 with INT 0x80 (vector 0x80, DPL 3),
 * after which enter_user returns. In long mode cs64 picks 64-bit (1) or compatibility-mode (0) code. */
void enter_user(void (*fn)(void), int cs64, ureg eflags);
void user_exit_gate(void);            /* installs the INT 0x80 gate enter_user needs */

static inline void outb(uint16_t port, uint8_t v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static inline uint8_t inb(uint16_t port) { uint8_t v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline void cpuid(uint32_t leaf, uint32_t sub, uint32_t *a, uint32_t *b, uint32_t *c, uint32_t *d)
{
    __asm__ volatile("cpuid" : "=a"(*a), "=b"(*b), "=c"(*c), "=d"(*d) : "0"(leaf), "2"(sub));
}
static inline uint64_t rdmsr(uint32_t msr)
{
    uint32_t lo, hi;
    __asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
    return ((uint64_t)hi << 32) | lo;
}
static inline void wrmsr(uint32_t msr, uint64_t v)
{
    __asm__ volatile("wrmsr" : : "c"(msr), "a"((uint32_t)v), "d"((uint32_t)(v >> 32)) : "memory");
}
#define READ_CR(n) ({ ureg _v; __asm__ volatile("mov %%cr" #n ", %0" : "=r"(_v)); _v; })
#define WRITE_CR(n, v) __asm__ volatile("mov %0, %%cr" #n : : "r"((ureg)(v)) : "memory")
#define READ_DR(n) ({ ureg _v; __asm__ volatile("mov %%db" #n ", %0" : "=r"(_v)); _v; })
#define WRITE_DR(n, v) __asm__ volatile("mov %0, %%db" #n : : "r"((ureg)(v)) : "memory")
static inline ureg read_flags(void) { ureg f; __asm__ volatile("pushf; pop %0" : "=r"(f)); return f; }
static inline void write_flags(ureg f) { __asm__ volatile("push %0; popf" : : "r"(f) : "memory", "cc"); }

#define CR0_PE (1u << 0)
#define CR0_MP (1u << 1)
#define CR0_EM (1u << 2)
#define CR0_TS (1u << 3)
#define CR0_ET (1u << 4)
#define CR0_NE (1u << 5)
#define CR0_WP (1u << 16)
#define CR0_AM (1u << 18)
#define CR0_NW (1u << 29)
#define CR0_CD (1u << 30)
#define CR0_PG (1u << 31)
#define CR4_VME (1u << 0)
#define CR4_PVI (1u << 1)
#define CR4_TSD (1u << 2)
#define CR4_DE  (1u << 3)
#define CR4_PSE (1u << 4)
#define CR4_PAE (1u << 5)
#define CR4_PGE (1u << 7)
#define CR4_OSFXSR (1u << 9)
#define CR4_OSXMMEXCPT (1u << 10)
#define CR4_UMIP (1u << 11)
#define CR4_FSGSBASE (1u << 16)
#define CR4_PCIDE (1u << 17)
#define CR4_OSXSAVE (1u << 18)
#define CR4_SMEP (1u << 20)
#define CR4_SMAP (1u << 21)
#define MSR_EFER 0xc0000080
#define EFER_SCE (1u << 0)
#define EFER_LME (1u << 8)
#define EFER_LMA (1u << 10)
#define EFER_NXE (1u << 11)

/* Page-table entry bits (SDM Vol. 3A 4.3-4.5). */
#define PTE_P  0x001ull
#define PTE_W  0x002ull
#define PTE_U  0x004ull
#define PTE_PWT 0x008ull
#define PTE_PCD 0x010ull
#define PTE_A  0x020ull
#define PTE_D  0x040ull
#define PTE_PS 0x080ull
#define PTE_G  0x100ull
#define PTE_NX (1ull << 63)

/* A page-aligned bump allocator over a static pool (zeroed pages). */
void *page_alloc(void);

/* The local APIC at its reset base. */
#define APIC_BASE 0xfee00000u
static inline uint32_t apic_read(uint32_t reg) { return *(volatile uint32_t *)(uintptr_t)(APIC_BASE + reg); }
static inline void apic_write(uint32_t reg, uint32_t v) { *(volatile uint32_t *)(uintptr_t)(APIC_BASE + reg) = v; }

void *memset(void *d, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
int memcmp(const void *a, const void *b, size_t n);

#endif
