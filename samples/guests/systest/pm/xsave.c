/* XSAVE (SDM Vol. 1 13): CPUID.1:ECX.XSAVE, CR4.OSXSAVE and its CPUID mirror, XGETBV/XSETBV with their #GP/#UD rules,
 * CPUID.0xD.0:EBX for XCR0 = x87|SSE, XSAVE/XRSTOR of x87 and SSE state with XSTATE_BV, init from a clear XSTATE_BV
 * bit, #GP for a bad header. Only the x87 and SSE components are judged (QEMU offers more components than those). */
#include "sys.h"

static uint8_t area[1024] __attribute__((aligned(64)));
static const uint32_t pattern[4] = { 0x11111111, 0x22222222, 0x33333333, 0x44444444 };
static uint32_t out[4];

static int xsetbv(uint32_t idx, uint64_t v) { return TRY("xsetbv", : : "c"(idx), "a"((uint32_t)v), "d"((uint32_t)(v >> 32))); }
static uint64_t xgetbv(uint32_t idx)
{
    uint32_t lo = 0, hi = 0;
    TRY("xgetbv", : "+a"(lo), "+d"(hi) : "c"(idx));
    return ((uint64_t)hi << 32) | lo;
}

void kmain(void)
{
    uint32_t a, b, c, d;
    cpuid(1, 0, &a, &b, &c, &d);
    kv("cpuid.1 xsave", (c >> 26) & 1);
    kv("cpuid.1 osxsave before", (c >> 27) & 1);
    xgetbv(0);
    report_trap("xgetbv with CR4.OSXSAVE=0");
    WRITE_CR(0, (READ_CR(0) | CR0_NE | CR0_MP) & ~(CR0_EM | CR0_TS));
    WRITE_CR(4, READ_CR(4) | CR4_OSFXSR | CR4_OSXMMEXCPT | CR4_OSXSAVE);
    cpuid(1, 0, &a, &b, &c, &d);
    kv("cpuid.1 osxsave after", (c >> 27) & 1);
    cpuid(0xd, 0, &a, &b, &c, &d);
    kv("cpuid.d.0 xcr0 supports x87|sse", a & 3);
    kv("xcr0 at start", xgetbv(0));
    xsetbv(0, 3);
    report_trap("xsetbv 3");
    kv("xcr0", xgetbv(0));
    cpuid(0xd, 0, &a, &b, &c, &d);
    kv("cpuid.d.0 ebx (size for xcr0=3)", b);
    xsetbv(0, 2);
    report_trap("xsetbv without x87");
    xsetbv(0, 1ull << 63);
    report_trap("xsetbv reserved bit 63");
    xsetbv(1, 3);
    report_trap("xsetbv ecx=1");
    xgetbv(2);
    report_trap("xgetbv ecx=2");
    kv("xcr0 unchanged", xgetbv(0));

    __asm__ volatile("fninit; fld1; fldpi; movdqu %0, %%xmm0; movdqu %0, %%xmm7; ldmxcsr %1" : : "m"(pattern), "m"((uint32_t){ 0x1fc0 }));
    memset(area, 0xcc, sizeof area);
    memset(area + 512, 0, 64);
    __asm__ volatile("xsave %0" : "+m"(area) : "a"(3), "d"(0) : "memory");
    kv("xsave: xstate_bv", *(uint64_t *)(area + 512));
    kv("xsave: xcomp_bv", *(uint64_t *)(area + 520));
    kv("xsave: fcw", *(uint16_t *)area);
    kv("xsave: ftw", area[4]);
    kv("xsave: mxcsr", *(uint32_t *)(area + 24));
    kv("xsave: xmm0 low", *(uint64_t *)(area + 160));
    kv("xsave: xmm7 high", *(uint64_t *)(area + 160 + 7 * 16 + 8));
    kv("xsave: st0 exponent", *(uint16_t *)(area + 32 + 8));
    kv("xsave: byte 464 untouched (bytes 464-511 are not written)", area[464]);

    memset(area + 512, 0, 64);
    __asm__ volatile("xsave %0" : "+m"(area) : "a"(1), "d"(0) : "memory");
    kv("xsave rfbm=1: xstate_bv", *(uint64_t *)(area + 512));

    /* XRSTOR with XSTATE_BV[1] = 0 puts the SSE registers in their initial state (zero). */
    memset(area + 512, 0, 64);
    __asm__ volatile("xsave %0" : "+m"(area) : "a"(3), "d"(0) : "memory");
    *(uint64_t *)(area + 512) = 1;
    __asm__ volatile("xrstor %0" : : "m"(area), "a"(3), "d"(0) : "memory");
    __asm__ volatile("movdqu %%xmm7, %0" : "=m"(out));
    kv("xmm7 after xrstor with sse not in xstate_bv", out[0] | out[1] | out[2] | out[3]);
    *(uint64_t *)(area + 512) = 3;
    __asm__ volatile("xrstor %0" : : "m"(area), "a"(3), "d"(0) : "memory");
    __asm__ volatile("movdqu %%xmm7, %0" : "=m"(out));
    kv("xmm7 after xrstor with sse in xstate_bv", out[3]);
    uint32_t mx;
    __asm__ volatile("stmxcsr %0" : "=m"(mx));
    kv("mxcsr after xrstor", mx);

    *(uint64_t *)(area + 512) = 1ull << 40;
    TRY("xrstor %0", : : "m"(area), "a"(3), "d"(0) : "memory");
    report_trap("xrstor with a xstate_bv bit outside xcr0");
    *(uint64_t *)(area + 512) = 3;
    *(uint64_t *)(area + 520) = 1ull << 63;
    TRY("xrstor %0", : : "m"(area), "a"(3), "d"(0) : "memory");
    report_trap("xrstor of a compacted image");
    *(uint64_t *)(area + 520) = 0;
    TRY("xsave %0", : "+m"(area[1]) : "a"(3), "d"(0) : "memory");
    report_trap("xsave to an unaligned area");
    WRITE_CR(4, READ_CR(4) & ~CR4_OSXSAVE);
    TRY("xsave %0", : "+m"(area) : "a"(3), "d"(0) : "memory");
    report_trap("xsave with CR4.OSXSAVE=0");
}
