/*
 * struct hvm_start_info and its tables, as the PVH boot protocol defines them
 * (Xen: xen/include/public/arch-x86/hvm/start_info.h, docs/misc/pvh.pandoc).
 * Debian's libxen-dev does not ship that header, so the guests carry the layout here.
 * All fields are little-endian and 64-bit addresses are guest-physical.
 */
#ifndef GUEST_START_INFO_H
#define GUEST_START_INFO_H

#include <stdint.h>

#define XEN_HVM_START_MAGIC_VALUE 0x336ec578u

/* Version 0 ends after rsdp_paddr; version 1 adds the memory map. */
struct hvm_start_info {
    uint32_t magic;
    uint32_t version;
    uint32_t flags;
    uint32_t nr_modules;
    uint64_t modlist_paddr;
    uint64_t cmdline_paddr;
    uint64_t rsdp_paddr;
    uint64_t memmap_paddr;
    uint32_t memmap_entries;
    uint32_t reserved;
};

struct hvm_modlist_entry {
    uint64_t paddr;
    uint64_t size;
    uint64_t cmdline_paddr;
    uint64_t reserved;
};

/* type uses the e820 numbering (1 = RAM, 2 = reserved, ...). */
struct hvm_memmap_table_entry {
    uint64_t addr;
    uint64_t size;
    uint32_t type;
    uint32_t reserved;
};

#endif
