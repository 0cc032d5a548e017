/* I/O permission (SDM Vol. 1 19.5): CPL > IOPL consults the TSS I/O bitmap (every byte of a multi-byte access),
 * a bitmap base past the TSS limit denies all; IOPL 3 allows everything, including CLI/STI. */
#include "sys.h"

static void allow(unsigned port) { tss_area.iobitmap[port / 8] &= (uint8_t)~(1u << (port % 8)); }

static void part_iopl0(void)
{
    print("ring 3 prints through an allowed port\n");
    TRY("outb %%al, $0x80", : : "a"(0));
    report_trap("outb 0x80 (denied)");
    TRY("inb $0x61, %%al", ::: "eax");
    report_trap("inb 0x61 (denied)");
    TRY("outw %%ax, %%dx", : : "a"(0), "d"(0xe8));
    report_trap("outw 0xe8 (0xe8 denied, 0xe9 allowed)");
    TRY("outb %%al, %%dx", : : "a"('!'), "d"(0x3fc));
    report_trap("outb 0x3fc (allowed)");
    TRY("outl %%eax, %%dx", : : "a"(0), "d"(0x3fc));
    report_trap("outl 0x3fc..0x3ff (0x3ff denied)");
    TRY("cli", ::);
    report_trap("cli");
    TRY("sti", ::);
    report_trap("sti");
    static const char msg[] = "rep outsb through 0xe9\n";
    TRY("rep outsb", : : "S"(msg), "c"(sizeof msg - 1), "d"(0xe9) : "memory");
    report_trap("rep outsb");
    __asm__ volatile("int $0x80");
}

static void part_nomap(void)
{
    TRY("outb %%al, $0xe9", : : "a"('?'));
    __asm__ volatile("int $0x80");      /* ring 3 cannot print here: ring 0 reports */
}

static void part_iopl3(void)
{
    print("IOPL 3: ");
    TRY("outb %%al, $0x80", : : "a"(0));
    report_trap("outb 0x80");
    TRY("cli; sti", ::);
    report_trap("IOPL 3: cli; sti");
    kv("IOPL 3: iopl", (read_flags() >> 12) & 3);
    __asm__ volatile("int $0x80");
}

void kmain(void)
{
    tss_init();
    user_exit_gate();
    allow(0xe9);
    allow(0x3fc);
    allow(0x3fd);
    allow(0x3fe);
    kv("iomap base", tss_area.t.iomap);
    enter_user(part_iopl0, 0, 0x202);
    print("back in ring 0\n");
    tss_area.t.iomap = 0xfff0;
    enter_user(part_nomap, 0, 0x202);
    report_trap("outb 0xe9 with the bitmap base past the TSS limit");
    enter_user(part_iopl3, 0, 0x3202);
    print("back in ring 0\n");
}
