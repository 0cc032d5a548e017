/* SSE enabling and the x86-64-v2 integer instructions (SDM Vol. 1 10-12, Vol. 2): #UD without CR4.OSFXSR or with
 * CR0.EM, #NM with CR0.TS, MXCSR flags, SSE2/SSE3/SSSE3/SSE4.1/SSE4.2
 * results, POPCNT, LZCNT/TZCNT, BMI1 and BMI2 results and flags. Only single IEEE operations, which QEMU computes exactly.
 * Not judged (QEMU 7.2 TCG differs from hardware): #GP from LDMXCSR with reserved bits, #XM for unmasked SIMD
 * exceptions, BLSI's CF. */
#include "sys.h"

static const uint32_t va[4] = { 0x80000001, 0x00000007, 0xfffffff0, 0x12345678 };
static const uint32_t vb[4] = { 0x00000003, 0xffffffff, 0x00000010, 0x87654321 };
static const char str1[16] = "Hello, World 42!";
static const char set[16] = "aeiou";
static uint32_t o[4];
static void show128(const char *what)
{
    print(what);
    print("=");
    for (int i = 3; i >= 0; i--) {
        print_hex(o[i]);
        if (i)
            putc_(' ');
    }
    putc_('\n');
}
#define OP(text, what) do { __asm__ volatile("movdqu %1, %%xmm0; movdqu %2, %%xmm1; " text "; movdqu %%xmm0, %0" : "=m"(o) : "m"(va), "m"(vb) : "memory", "cc"); show128(what); } while (0)
static void flags_of(const char *what, ureg fl) { print(what); kv(" flags(cf pf zf sf of)", fl & 0x8c5); }

void kmain(void)
{
    uint32_t a, b, c, d;
    cpuid(1, 0, &a, &b, &c, &d);
    print("cpuid.1 sse3 ssse3 sse4.1 sse4.2 popcnt: ");
    print_dec(c & 1);
    print_dec((c >> 9) & 1);
    print_dec((c >> 19) & 1);
    print_dec((c >> 20) & 1);
    print_dec((c >> 23) & 1);
    cpuid(0x80000001, 0, &a, &b, &c, &d);
    print(" lzcnt: ");
    print_dec((c >> 5) & 1);
    cpuid(7, 0, &a, &b, &c, &d);
    print(" bmi1 bmi2: ");
    print_dec((b >> 3) & 1);
    print_dec((b >> 8) & 1);
    putc_('\n');

    WRITE_CR(0, (READ_CR(0) | CR0_NE | CR0_MP) & ~(CR0_EM | CR0_TS));
    WRITE_CR(4, READ_CR(4) & ~(CR4_OSFXSR | CR4_OSXMMEXCPT));
    TRY("pxor %%xmm0, %%xmm0", ::);
    report_trap("pxor with CR4.OSFXSR=0");
    WRITE_CR(4, READ_CR(4) | CR4_OSFXSR);
    TRY("pxor %%xmm0, %%xmm0", ::);
    report_trap("pxor with CR4.OSFXSR=1");
    WRITE_CR(0, READ_CR(0) | CR0_TS);
    TRY("pxor %%xmm0, %%xmm0", ::);
    report_trap("pxor with CR0.TS=1");
    WRITE_CR(0, (READ_CR(0) & ~CR0_TS) | CR0_EM);
    TRY("pxor %%xmm0, %%xmm0", ::);
    report_trap("pxor with CR0.EM=1");
    WRITE_CR(0, READ_CR(0) & ~CR0_EM);

    uint32_t mx;
    __asm__ volatile("stmxcsr %0" : "=m"(mx));
    kv("mxcsr", mx);
    static const uint32_t one = 0x3f800000, three = 0x40400000;   /* 1.0f, 3.0f */
    static uint32_t fr;
    __asm__ volatile("movss %1, %%xmm0; divss %2, %%xmm0; movss %%xmm0, %0" : "=m"(fr) : "m"(one), "m"(three));
    kv("1/3 single", fr);
    __asm__ volatile("stmxcsr %0" : "=m"(mx));
    kv("mxcsr after inexact", mx);
    OP("paddd %%xmm1, %%xmm0", "paddd");
    OP("pmuludq %%xmm1, %%xmm0", "pmuludq");
    OP("pshufd $0x1b, %%xmm1, %%xmm0", "pshufd 0x1b");
    OP("psrad $4, %%xmm0", "psrad 4");
    OP("movshdup %%xmm1, %%xmm0", "movshdup (SSE3)");
    OP("phaddd %%xmm1, %%xmm0", "phaddd (SSSE3)");
    OP("pshufb %%xmm1, %%xmm0", "pshufb (SSSE3)");
    OP("palignr $5, %%xmm1, %%xmm0", "palignr 5 (SSSE3)");
    OP("pabsd %%xmm0, %%xmm0", "pabsd (SSSE3)");
    OP("pmulld %%xmm1, %%xmm0", "pmulld (SSE4.1)");
    OP("pminsd %%xmm1, %%xmm0", "pminsd (SSE4.1)");
    OP("pmaxud %%xmm1, %%xmm0", "pmaxud (SSE4.1)");
    OP("pblendw $0x5a, %%xmm1, %%xmm0", "pblendw 0x5a (SSE4.1)");
    OP("pinsrd $2, %%eax, %%xmm0", "pinsrd 2, eax (SSE4.1)");
    OP("pmovsxbw %%xmm1, %%xmm0", "pmovsxbw (SSE4.1)");
    OP("packusdw %%xmm1, %%xmm0", "packusdw (SSE4.1)");
    OP("pcmpeqq %%xmm0, %%xmm0", "pcmpeqq (SSE4.1)");
    OP("pcmpgtq %%xmm1, %%xmm0", "pcmpgtq (SSE4.2)");
    OP("phminposuw %%xmm1, %%xmm0", "phminposuw (SSE4.1)");
    ureg fl;
    __asm__ volatile("movdqu %1, %%xmm0; movdqu %2, %%xmm1; ptest %%xmm1, %%xmm0; pushfl; popl %0" : "=r"(fl) : "m"(va), "m"(vb) : "cc");
    flags_of("ptest", fl);
    uint32_t idx;
    __asm__ volatile("movdqu %2, %%xmm0; movdqu %3, %%xmm1; pcmpistri $0x00, %%xmm1, %%xmm0; pushfl; popl %1" : "=c"(idx), "=r"(fl) : "m"(set), "m"(str1) : "cc");
    kv("pcmpistri equal-any vowels: index", idx);
    flags_of("pcmpistri", fl);
    __asm__ volatile("movdqu %2, %%xmm0; movdqu %3, %%xmm1; movl $5, %%eax; movl $16, %%edx; pcmpestri $0x04, %%xmm1, %%xmm0; pushfl; popl %1"
                     : "=c"(idx), "=r"(fl) : "m"(set), "m"(str1) : "eax", "edx", "cc");
    kv("pcmpestri ranges: index", idx);
    static const uint32_t fv[4] = { 0x3fc00000, 0xc0200000, 0x401fffff, 0xbf000000 };   /* 1.5 -2.5 2.4999998 -0.5 */
    __asm__ volatile("movups %1, %%xmm0; roundps $0, %%xmm0, %%xmm0; movups %%xmm0, %0" : "=m"(o) : "m"(fv));
    show128("roundps nearest");
    __asm__ volatile("movups %1, %%xmm0; roundps $1, %%xmm0, %%xmm0; movups %%xmm0, %0" : "=m"(o) : "m"(fv));
    show128("roundps down");

    uint32_t crc = 0xffffffff;
    __asm__ volatile("crc32l %1, %0; crc32b %b2, %0" : "+r"(crc) : "r"(0x12345678), "q"(0xab));
    kv("crc32", crc);
    static const uint32_t ins[] = { 0, 1, 0x80000000, 0x00f00f00, 0xffffffff };
    for (unsigned i = 0; i < 5; i++) {
        uint32_t r;
        print("x=");
        print_hex(ins[i]);
        putc_('\n');
        __asm__ volatile("popcntl %2, %0; pushfl; popl %1" : "=r"(r), "=r"(fl) : "r"(ins[i]) : "cc");
        kv("  popcnt", r);
        flags_of("  popcnt", fl);
        __asm__ volatile("lzcntl %2, %0; pushfl; popl %1" : "=r"(r), "=r"(fl) : "r"(ins[i]) : "cc");
        kv("  lzcnt", r);
        flags_of("  lzcnt", fl & 0x41);
        __asm__ volatile("tzcntl %2, %0; pushfl; popl %1" : "=r"(r), "=r"(fl) : "r"(ins[i]) : "cc");
        kv("  tzcnt", r);
        flags_of("  tzcnt", fl & 0x41);
        __asm__ volatile("blsil %2, %0; pushfl; popl %1" : "=r"(r), "=r"(fl) : "r"(ins[i]) : "cc");
        kv("  blsi", r);
        flags_of("  blsi", fl & 0xc0);        /* not CF: QEMU 7.2 inverts BLSI's carry */
        __asm__ volatile("blsmskl %2, %0; pushfl; popl %1" : "=r"(r), "=r"(fl) : "r"(ins[i]) : "cc");
        kv("  blsmsk", r);
        __asm__ volatile("blsrl %2, %0; pushfl; popl %1" : "=r"(r), "=r"(fl) : "r"(ins[i]) : "cc");
        kv("  blsr", r);
        flags_of("  blsr", fl & 0x8c1);
    }
    uint32_t r, hi;
    __asm__ volatile("andnl %2, %1, %0" : "=r"(r) : "r"(0x0f0f0f0f), "r"(0x12345678));
    kv("andn", r);
    __asm__ volatile("bextrl %2, %1, %0; pushfl; popl %%ecx" : "=r"(r) : "r"(0x12345678), "r"(0x0804) : "ecx", "cc");
    kv("bextr start 4 len 8", r);
    __asm__ volatile("bzhil %2, %1, %0" : "=r"(r) : "r"(0x12345678), "r"(12));
    kv("bzhi 12", r);
    __asm__ volatile("pdepl %2, %1, %0" : "=r"(r) : "r"(0x0000abcd), "r"(0xf0f0f0f0));
    kv("pdep", r);
    __asm__ volatile("pextl %2, %1, %0" : "=r"(r) : "r"(0x12345678), "r"(0xff00ff00));
    kv("pext", r);
    __asm__ volatile("mulxl %3, %0, %1" : "=r"(r), "=r"(hi) : "d"(0x89abcdef), "r"(0xfedcba98));
    kv("mulx low", r);
    kv("mulx high", hi);
    __asm__ volatile("rorxl $12, %1, %0" : "=r"(r) : "r"(0x12345678));
    kv("rorx 12", r);
    __asm__ volatile("sarxl %2, %1, %0" : "=r"(r) : "r"(0x87654321), "r"(36));
    kv("sarx 36 (count mod 32)", r);
    __asm__ volatile("shlxl %2, %1, %0" : "=r"(r) : "r"(0x87654321), "r"(8));
    kv("shlx 8", r);
    __asm__ volatile("shrxl %2, %1, %0" : "=r"(r) : "r"(0x87654321), "r"(8));
    kv("shrx 8", r);
    __asm__ volatile("movbel %1, %0" : "=r"(r) : "m"(va[3]));
    kv("movbe", r);
}
