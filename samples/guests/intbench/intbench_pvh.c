/* The integer benchmark as a PVH guest: "iterations=N" on the command line (default INTBENCH_DEFAULT_ITERATIONS). */
#include "runtime.h"
#include "intbench.h"
#include <xen/sched.h>

static void print_crc(const char *label, uint16_t v)
{
    static const char digits[] = "0123456789abcdef";
    char s[7] = { '0', 'x', digits[(v >> 12) & 15], digits[(v >> 8) & 15], digits[(v >> 4) & 15], digits[v & 15], 0 };
    print(label);
    print(s);
}

int guest_main(const char *cmdline)
{
    uint32_t iterations = parse_uint(cmdline_value(cmdline, "iterations"), INTBENCH_DEFAULT_ITERATIONS);
    print("intbench iterations: ");
    print_dec((long)iterations);
    print("\n");
    struct intbench_result r;
    intbench_run(iterations, &r);
    print_crc("intbench validation: list ", r.list);
    print_crc(" matrix ", r.matrix);
    print_crc(" state ", r.state);
    print("\n");
    print_crc("intbench crc: ", r.crc);
    print("\n");
    int ok = r.list == INTBENCH_CRC_LIST && r.matrix == INTBENCH_CRC_MATRIX && r.state == INTBENCH_CRC_STATE;
    print(ok ? "intbench: PASS\n" : "intbench: FAIL\n");
    return SHUTDOWN_poweroff;
}
