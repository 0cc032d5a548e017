/* The runtime itself (rt/): LGDT, far JMP, segment loads, LIDT, exception delivery through 32-bit interrupt gates
 * with the trap frame and IRET back, and the 0xE9 transcript. Everything else builds on this. */
#include "sys.h"

void kmain(void)
{
    uint16_t cs, ds, ss;
    __asm__ volatile("movw %%cs, %0; movw %%ds, %1; movw %%ss, %2" : "=r"(cs), "=r"(ds), "=r"(ss));
    kv("cs", cs);
    kv("ds", ds);
    kv("ss", ss);
    TRY("ud2", ::);
    report_trap("ud2");
    TRY("xorl %%ecx, %%ecx; divl %%ecx", : : "a"(1), "d"(0) : "ecx");
    report_trap("div by zero");
    /* (RDMSR of an unknown MSR is #GP on hardware and vmmkit-hv; QEMU 7.2 TCG returns 0, so it is not judged here.) */
    TRY("movl %0, %%ds", : : "r"(0x1230));
    report_trap("load ds past the GDT limit");
    uint32_t x = 0x12345678, y = 0x9abcdef0;
    uint64_t p = (uint64_t)x * y;
    kv("64-bit product", p);
    write_flags(0x8d7);
    kv("eflags after popf 0x8d7", read_flags() & 0xfff);
}
