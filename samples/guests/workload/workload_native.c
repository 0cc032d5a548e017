/* The workload as a Linux program: `workload-native [iterations]`; prints the same lines as the guest. */
#include <stdio.h>
#include <stdlib.h>
#include "workload.h"

int main(int argc, char **argv)
{
    uint32_t iterations = argc > 1 ? (uint32_t)strtoul(argv[1], NULL, 10) : WORKLOAD_DEFAULT_ITERATIONS;
    printf("workload iterations: %u\n", iterations);
    printf("workload checksum: 0x%08x\n", workload_run(iterations));
    return 0;
}
