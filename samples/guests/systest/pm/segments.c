/* Segment checks (SDM Vol. 3A 5.4-5.10, Vol. 2 LAR/LSL/VERR/VERW/LLDT/MOV Sreg): access rights and limits through
 * LAR/LSL, VERR/VERW, #GP/#NP/#SS with selector error codes, the LDT, and the accessed bit set on a load.
 * Segment-limit violations are not probed: QEMU TCG does not enforce limits. */
#include "sys.h"

static uint64_t ldt[2] __attribute__((aligned(8)));

static void lar_lsl(const char *what, uint32_t sel)
{
    uint32_t ar = 0xdead, lim = 0xdead, zf1, zf2;
    __asm__ volatile("larl %2, %0; setz %b1" : "+r"(ar), "=q"(zf1) : "r"(sel) : "cc");
    __asm__ volatile("lsll %2, %0; setz %b1" : "+r"(lim), "=q"(zf2) : "r"(sel) : "cc");
    print(what);
    print(": lar zf=");
    print_dec(zf1 & 1);
    print(" ar=");
    print_hex(ar);
    print(" lsl zf=");
    print_dec(zf2 & 1);
    print(" limit=");
    print_hex(lim);
    putc_('\n');
}
static void verr_verw(const char *what, uint32_t sel)
{
    uint32_t r, w;
    __asm__ volatile("verr %w1; setz %b0" : "=q"(r) : "r"(sel) : "cc");
    __asm__ volatile("verw %w1; setz %b0" : "=q"(w) : "r"(sel) : "cc");
    print(what);
    print(": verr=");
    print_dec(r & 1);
    print(" verw=");
    print_dec(w & 1);
    putc_('\n');
}
static void load(const char *what, const char *reg, uint32_t sel)
{
    if (reg[0] == 'd')
        TRY("movl %0, %%ds; movl $0x18, %0; movl %0, %%ds", : "+r"(sel));
    else if (reg[0] == 's')
        TRY("movl %0, %%ss; movl $0x18, %0; movl %0, %%ss", : "+r"(sel));
    else
        TRY("movl %0, %%fs; movl $0x18, %0; movl %0, %%fs", : "+r"(sel));
    print(reg);
    print(" <- ");
    report_trap(what);
}

void kmain(void)
{
    gdt[SEL_SCRATCH / 8 + 0] = seg_desc(0, 0xfffff, 0x13, 0xc);            /* 0x58 data, not present */
    gdt[SEL_SCRATCH / 8 + 1] = seg_desc(0, 0xfffff, 0x99, 0xc);            /* 0x60 execute-only code */
    gdt[SEL_SCRATCH / 8 + 2] = seg_desc(0x1000, 0xfff, 0xf2, 0x4);         /* 0x68 DPL-3 data, 4 KiB, not accessed */
    gdt[SEL_SCRATCH / 8 + 3] = seg_desc(0, 0xfffff, 0xff, 0xc);            /* 0x70 conforming readable code, DPL 3 */
    gdt[SEL_SCRATCH / 8 + 4] = seg_desc((uint32_t)(uintptr_t)ldt, sizeof ldt - 1, 0x82, 0);   /* 0x78 LDT */
    ldt[0] = 0x00cf93000000ffffull;
    ldt[1] = 0x00cf13000000ffffull;                                        /* LDT index 1: not present */

    lar_lsl("null", 0);
    lar_lsl("ring-0 code32", SEL_CODE32);
    lar_lsl("ring-0 code64", SEL_CODE64);
    lar_lsl("ring-3 data", SEL_UDATA);
    lar_lsl("not-present data", 0x58);
    lar_lsl("execute-only code", 0x60);
    lar_lsl("4 KiB DPL-3 data", 0x68);
    lar_lsl("conforming code", 0x70);
    lar_lsl("LDT", 0x78);
    lar_lsl("past the GDT limit", 0x1230);
    tss_init();
    lar_lsl("busy TSS", SEL_TSS);
    lar_lsl("RPL 3 on a DPL-0 segment", SEL_DATA | 3);

    verr_verw("ring-0 data", SEL_DATA);
    verr_verw("ring-0 code32", SEL_CODE32);
    verr_verw("execute-only code", 0x60);
    verr_verw("conforming readable code", 0x70);
    verr_verw("4 KiB DPL-3 data", 0x68);
    verr_verw("null", 0);

    load("not-present data", "ds", 0x58);
    load("not-present data", "ss", 0x58);
    load("execute-only code", "ds", 0x60);
    load("conforming readable code", "ds", 0x70);
    load("DPL-3 data at CPL 0", "ss", 0x68);
    load("null", "ss", 0);
    load("null", "ds", 0);
    load("RPL 3 on a DPL-0 data segment", "ds", SEL_DATA | 3);
    load("past the GDT limit", "fs", 0x1230);
    __asm__ volatile("lldt %w0" : : "r"(0));                              /* LDTR := null (unusable) */
    load("LDT selector with a null LDTR", "fs", 0x0c);
    load("code selector", "ss", SEL_CODE32);
    kv("4 KiB DPL-3 data accessed bit before", (gdt[0x68 / 8] >> 40) & 1);
    load("DPL-3 data at CPL 0", "fs", 0x68);
    kv("4 KiB DPL-3 data accessed bit after a load", (gdt[0x68 / 8] >> 40) & 1);

    __asm__ volatile("lldt %w0" : : "r"(0x78));
    uint16_t l;
    __asm__ volatile("sldt %0" : "=r"(l));
    kv("sldt", l);
    load("LDT index 0", "fs", 0x04);
    load("LDT index 1 (not present)", "fs", 0x0c);
    load("LDT index 2 (past the LDT limit)", "fs", 0x14);
    lar_lsl("LDT index 0", 0x04);
    TRY("lldt %w0", : : "r"(SEL_DATA));
    report_trap("lldt with a data selector");
    TRY("ltr %w0", : : "r"(SEL_TSS));
    report_trap("ltr with a busy TSS");
    TRY("ljmp $0x58, $0", ::);
    report_trap("far jump to a data selector");
    gdt[SEL_SCRATCH / 8] = seg_desc(0, 0xfffff, 0x1b, 0xc);                /* 0x58 code, not present */
    TRY("ljmp $0x58, $0", ::);
    report_trap("far jump to a not-present code segment");
    TRY(".byte 0x8e, 0xc8", : : "a"(SEL_CODE32));                         /* mov cs, ax */
    report_trap("mov to cs");
    __asm__ volatile("lldt %w0" : : "r"(0));
}
