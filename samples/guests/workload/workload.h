/* The emulator benchmark workload: pure computation, identical results on any x86 (32 or 64-bit). */
#ifndef GUEST_WORKLOAD_H
#define GUEST_WORKLOAD_H

#include <stdint.h>

#define WORKLOAD_DEFAULT_ITERATIONS 10u

/* Runs CRC32, a sort, a matrix multiply and string functions `iterations` times; returns the checksum. */
uint32_t workload_run(uint32_t iterations);

#endif
