/* The integer benchmark as a Linux program: `intbench-native [iterations]`; prints the same lines as the guest. */
#include <stdio.h>
#include <stdlib.h>
#include "intbench.h"

int main(int argc, char **argv)
{
    uint32_t iterations = argc > 1 ? (uint32_t)strtoul(argv[1], NULL, 10) : INTBENCH_DEFAULT_ITERATIONS;
    struct intbench_result r;
    intbench_run(iterations, &r);
    printf("intbench iterations: %u\n", iterations);
    printf("intbench validation: list 0x%04x matrix 0x%04x state 0x%04x\n", r.list, r.matrix, r.state);
    printf("intbench crc: 0x%04x\n", r.crc);
    int ok = r.list == INTBENCH_CRC_LIST && r.matrix == INTBENCH_CRC_MATRIX && r.state == INTBENCH_CRC_STATE;
    printf("intbench: %s\n", ok ? "PASS" : "FAIL");
    return 0;
}
