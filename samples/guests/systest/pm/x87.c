/* x87 FPU and MMX (SDM Vol. 1 ch. 8-9, Vol. 3A 13): FNINIT defaults, exact 80-bit results of the basic arithmetic
 * (no transcendental instructions: QEMU computes those through host doubles), rounding and precision control,
 * status flags, #MF with CR0.NE, FNSAVE/FRSTOR and FXSAVE/FXRSTOR images, MMX and EMMS.
 * Not judged, because QEMU 7.2 TCG differs from hardware there: C1 as the round-up indicator (and C0/C2/C3 where the
 * SDM leaves them undefined: every FSW print masks C0-C3 except after FPREM/FCOM), stack-fault detection, #MF at a
 * waiting x87 instruction other than FWAIT, FOP/FIP/FDP in the FXSAVE image, the 0xFFFF exponent that MMX writes,
 * and the stale contents of empty registers. */
#include "sys.h"

static uint8_t fx[512] __attribute__((aligned(16)));
static uint8_t fs[108];
static uint8_t ext[10];

static void show_ext(const char *what)
{
    print(what);
    print("=");
    print_hex(*(uint16_t *)(ext + 8));
    putc_(':');
    print_hex(*(uint64_t *)ext);
    putc_('\n');
}
static uint16_t fsw_cc(void) { uint16_t v; __asm__ volatile("fnstsw %0" : "=m"(v)); return v; }
static uint16_t fsw(void) { return fsw_cc() & ~0x4700; }
static void show_fxsave(const char *what, int mmx)
{
    print(what);
    print(": fcw=");
    print_hex(*(uint16_t *)fx);
    print(" fsw=");
    print_hex(*(uint16_t *)(fx + 2) & ~0x4700);
    print(" ftw=");
    print_hex(fx[4]);
    print(" mxcsr=");
    print_hex(*(uint32_t *)(fx + 24));
    putc_('\n');
    int top = (*(uint16_t *)(fx + 2) >> 11) & 7;
    for (int i = 0; i < (mmx ? 4 : 8); i++) {
        if (!(fx[4] & (1 << ((top + i) & 7))))
            continue;                                   /* ST(i) is empty: its contents are stale */
        print("  st");
        print_dec(i);
        print("=");
        if (!mmx) {
            print_hex(*(uint16_t *)(fx + 32 + 16 * i + 8));
            putc_(':');
        }
        print_hex(*(uint64_t *)(fx + 32 + 16 * i));
        putc_('\n');
    }
}

void kmain(void)
{
    WRITE_CR(0, (READ_CR(0) | CR0_NE | CR0_MP) & ~(CR0_EM | CR0_TS));
    __asm__ volatile("fninit");
    uint16_t cw;
    __asm__ volatile("fnstcw %0" : "=m"(cw));
    kv("fcw after fninit", cw);
    kv("fsw after fninit", fsw());

    static const int32_t three = 3, seven = 7, big = 1000000007;
    static const double two = 2.0;
    __asm__ volatile("fld1; fidivl %1; fstpt %0" : "=m"(ext) : "m"(three));
    show_ext("1/3");
    __asm__ volatile("fildl %1; fsqrt; fstpt %0" : "=m"(ext) : "m"(seven));
    show_ext("sqrt(7)");
    __asm__ volatile("fldpi; fmull %1; fldl2e; faddp; fstpt %0" : "=m"(ext) : "m"(two));
    show_ext("2*pi + log2(e)");
    /* FPREM's condition codes are read right after it: C0/C3/C1 = Q2/Q1/Q0 of the quotient (SDM Vol. 2A FPREM).
     * The FSTPs that follow clear C1 on hardware (FST/FSTP: C1 = round-up indicator, 0 when exact; the host's x87
     * gives 0x4120 after them), while QEMU 7.2 TCG leaves C1 untouched (0x4320), so FSW after them is not printed. */
    uint16_t sw_fprem;
    __asm__ volatile("fildl %2; fildl %3; fprem; fnstsw %1; fstpt %0; fstp %%st(0)" : "=m"(ext), "=m"(sw_fprem) : "m"(three), "m"(big));
    show_ext("fprem 1000000007 mod 3");
    kv("fsw right after fprem", sw_fprem);
    __asm__ volatile("fld1; fildl %1; fscale; fstpt %0; fstp %%st(0)" : "=m"(ext) : "m"(seven));
    show_ext("fscale 7 * 2^1");
    __asm__ volatile("fildl %1; fxtract; fstpt %0; fstp %%st(0)" : "=m"(ext) : "m"(big));
    show_ext("fxtract significand of 1000000007");

    /* Rounding control (bits 10-11) and precision control (bits 8-9). */
    static const uint16_t cws[] = { 0x037f, 0x077f, 0x0b7f, 0x0f7f, 0x007f, 0x027f };
    static const char *const cwn[] = { "1/3 nearest", "1/3 down", "1/3 up", "1/3 toward zero", "1/3 single precision", "1/3 double precision" };
    for (int i = 0; i < 6; i++) {
        __asm__ volatile("fldcw %1; fld1; fidivl %2; fstpt %0; fldcw %3" : "=m"(ext) : "m"(cws[i]), "m"(three), "m"(cws[0]));
        show_ext(cwn[i]);
    }
    int32_t r;
    static const double half[] = { 2.5, -2.5, 3.5 };
    for (int i = 0; i < 3; i++) {
        __asm__ volatile("fldl %1; fistpl %0" : "=m"(r) : "m"(half[i]));
        print("fistp ");
        print_dec(i);
        print(" = ");
        print_dec(r);
        putc_('\n');
    }

    /* Masked exceptions: flags in FSW and default results. */
    static const int32_t zero = 0;
    __asm__ volatile("fnclex; fld1; fidivl %1; fstpt %0" : "=m"(ext) : "m"(zero));
    show_ext("1/0 (masked)");
    kv("fsw after 1/0", fsw());
    __asm__ volatile("fnclex; fldz; fidivl %1; fstpt %0" : "=m"(ext) : "m"(zero));
    show_ext("0/0 (masked)");
    kv("fsw after 0/0", fsw());
    __asm__ volatile("fninit; fld1; fldz; fucomip %%st(1), %%st; fstp %%st(0)" ::: "cc");
    ureg fl = read_flags();
    kv("fucomip 0 vs 1: zf pf cf", fl & 0x45);
    __asm__ volatile("fninit; fldl %0; fld1; fcompp" : : "m"(two));
    kv("fsw after fcompp 1 vs 2", fsw_cc());

    /* Unmasked: CR0.NE=1 turns the pending exception into #MF at the next waiting instruction. */
    __asm__ volatile("fninit; fldcw %0" : : "m"((uint16_t){ 0x037b }));
    __asm__ volatile("fld1; fidivl %0" : : "m"(zero));
    kv("fsw with ZE unmasked (ES, B set)", fsw());
    TRY("fwait", ::);
    report_trap("fwait with a pending unmasked exception");
    __asm__ volatile("fnclex");
    TRY("fwait", ::);
    report_trap("fwait after fnclex");

    /* FNSAVE (32-bit protected-mode layout) and FXSAVE after a known sequence. */
    __asm__ volatile("fninit; fld1; fldpi; fildl %0; faddp; fldz" : : "m"(seven));
    __asm__ volatile("fnsave %0" : "=m"(fs));
    print("fnsave: fcw=");
    print_hex(*(uint16_t *)fs);
    print(" fsw=");
    print_hex(*(uint16_t *)(fs + 4) & ~0x4700);
    print(" ftw=");
    print_hex(*(uint16_t *)(fs + 8));
    print(" st0=");
    print_hex(*(uint16_t *)(fs + 28 + 8));
    putc_(':');
    print_hex(*(uint64_t *)(fs + 28));
    putc_('\n');
    __asm__ volatile("fnstcw %0" : "=m"(cw));
    kv("fcw after fnsave (reinitialised)", cw);
    __asm__ volatile("frstor %0" : : "m"(fs));
    kv("fsw after frstor", fsw());
    WRITE_CR(4, READ_CR(4) | CR4_OSFXSR);
    memset(fx, 0, sizeof fx);
    __asm__ volatile("fxsave %0" : "=m"(fx));
    show_fxsave("fxsave", 0);
    __asm__ volatile("fninit; fxrstor %0" : : "m"(fx));
    memset(fx, 0, sizeof fx);
    __asm__ volatile("fxsave %0" : "=m"(fx));
    show_fxsave("fxsave after fxrstor", 0);

    /* MMX aliases the x87 registers: TOP = 0 and all tags valid; EMMS empties them. */
    static const uint64_t a = 0x0102030405060708ull, b = 0x10ff20ff30ff40ffull;
    static uint64_t out;
    __asm__ volatile("fninit; movq %1, %%mm0; movq %2, %%mm1; paddb %%mm1, %%mm0; movq %%mm0, %0" : "=m"(out) : "m"(a), "m"(b));
    kv("paddb", out);
    __asm__ volatile("movq %1, %%mm2; paddusb %2, %%mm2; psllq $4, %%mm2; movq %%mm2, %0" : "=m"(out) : "m"(a), "m"(b));
    kv("paddusb then psllq 4", out);
    __asm__ volatile("movq %1, %%mm3; pmullw %2, %%mm3; movq %%mm3, %0" : "=m"(out) : "m"(a), "m"(b));
    kv("pmullw", out);
    memset(fx, 0, sizeof fx);
    __asm__ volatile("fxsave %0" : "=m"(fx));
    show_fxsave("fxsave after MMX (mantissas)", 1);
    __asm__ volatile("emms");
    memset(fx, 0, sizeof fx);
    __asm__ volatile("fxsave %0" : "=m"(fx));
    show_fxsave("fxsave after EMMS", 0);
}
