/* The integer benchmark guest: list processing, matrix operations, a state machine and CRC-16, CoreMark-class. */
#ifndef GUEST_INTBENCH_H
#define GUEST_INTBENCH_H

#include <stdint.h>

#define INTBENCH_DEFAULT_ITERATIONS 10u

/* The CRC-16 of each kernel's results for one round (seed 0): the guest checks itself against these. */
#define INTBENCH_CRC_LIST   0x8388u
#define INTBENCH_CRC_MATRIX 0x9e61u
#define INTBENCH_CRC_STATE  0x9014u

struct intbench_result {
    uint16_t list, matrix, state;   /* round 0's kernel CRCs (compare with INTBENCH_CRC_*) */
    uint16_t crc;                   /* every round's results, chained */
};

/* Runs `iterations` rounds (each seeded by the previous round's CRC). */
void intbench_run(uint32_t iterations, struct intbench_result *r);

#endif
