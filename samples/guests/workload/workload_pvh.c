/* The workload as a PVH guest: "iterations=N" on the command line (default WORKLOAD_DEFAULT_ITERATIONS). */
#include "runtime.h"
#include "workload.h"
#include <xen/sched.h>

int guest_main(const char *cmdline)
{
    uint32_t iterations = parse_uint(cmdline_value(cmdline, "iterations"), WORKLOAD_DEFAULT_ITERATIONS);
    print("workload iterations: ");
    print_dec((long)iterations);
    print("\n");
    uint32_t sum = workload_run(iterations);
    print("workload checksum: ");
    print_hex(sum);
    print("\n");
    return SHUTDOWN_poweroff;
}
