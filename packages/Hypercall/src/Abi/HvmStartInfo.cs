using System.Runtime.InteropServices;

namespace VmmKit.Hypercall;

/// <summary>
/// <c>struct hvm_start_info</c> (xen/arch-x86/hvm/start_info.h): what a PVH guest finds at the
/// guest-physical address in EBX when it starts. 56 bytes; fields from <see cref="MemmapPaddr"/>
/// on exist from version 1.
/// </summary>
[StructLayout(LayoutKind.Sequential)]
public struct HvmStartInfo
{
    /// <summary><c>XEN_HVM_START_MAGIC_VALUE</c>: "xEn3" with the 0x80 bit of the "E" set.</summary>
    public const uint MagicValue = 0x336ec578;

    /// <summary>Version 0: up to <see cref="RsdpPaddr"/>.</summary>
    public const uint Version0 = 0;

    /// <summary>Version 1: adds the memory map.</summary>
    public const uint Version1 = 1;

    /// <summary>Size of the version 0 structure (the offset of <see cref="MemmapPaddr"/>).</summary>
    public const int Version0Size = 40;

    /// <summary><c>magic</c>: <see cref="MagicValue"/>.</summary>
    public uint Magic;
    /// <summary><c>version</c>: <see cref="Version0"/> or <see cref="Version1"/>.</summary>
    public uint Version;
    /// <summary><c>flags</c>: <c>SIF_*</c> flags (xen/xen.h).</summary>
    public uint Flags;
    /// <summary><c>nr_modules</c>: entries at <see cref="ModlistPaddr"/>.</summary>
    public uint NrModules;
    /// <summary><c>modlist_paddr</c>: guest-physical address of an array of <see cref="HvmModlistEntry"/>.</summary>
    public ulong ModlistPaddr;
    /// <summary><c>cmdline_paddr</c>: guest-physical address of the NUL-terminated command line.</summary>
    public ulong CmdlinePaddr;
    /// <summary><c>rsdp_paddr</c>: guest-physical address of the ACPI RSDP, 0 when none.</summary>
    public ulong RsdpPaddr;
    /// <summary><c>memmap_paddr</c> (v1): guest-physical address of an array of <see cref="HvmMemmapTableEntry"/>.</summary>
    public ulong MemmapPaddr;
    /// <summary><c>memmap_entries</c> (v1): entries in the memory map, 0 when none.</summary>
    public uint MemmapEntries;
    /// <summary><c>reserved</c>: must be zero.</summary>
    public uint Reserved;
}

/// <summary><c>struct hvm_modlist_entry</c> (start_info.h), 32 bytes.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct HvmModlistEntry
{
    /// <summary><c>paddr</c>: guest-physical address of the module.</summary>
    public ulong Paddr;
    /// <summary><c>size</c>: size of the module in bytes.</summary>
    public ulong Size;
    /// <summary><c>cmdline_paddr</c>: guest-physical address of the module's command line, 0 when none.</summary>
    public ulong CmdlinePaddr;
    /// <summary><c>reserved</c>.</summary>
    public ulong Reserved;
}

/// <summary><c>struct hvm_memmap_table_entry</c> (start_info.h), 24 bytes.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct HvmMemmapTableEntry
{
    /// <summary><c>addr</c>: base address of the region.</summary>
    public ulong Addr;
    /// <summary><c>size</c>: size of the region in bytes.</summary>
    public ulong Size;
    /// <summary><c>type</c>: an <see cref="HvmMemmapType"/> value.</summary>
    public uint Type;
    /// <summary><c>reserved</c>: must be zero.</summary>
    public uint Reserved;
}

/// <summary>Memory map entry types (<c>XEN_HVM_MEMMAP_TYPE_*</c>, start_info.h), the E820 numbering.</summary>
public enum HvmMemmapType : uint
{
    /// <summary><c>XEN_HVM_MEMMAP_TYPE_RAM</c>.</summary>
    Ram = 1,
    /// <summary><c>XEN_HVM_MEMMAP_TYPE_RESERVED</c>.</summary>
    Reserved = 2,
    /// <summary><c>XEN_HVM_MEMMAP_TYPE_ACPI</c>.</summary>
    Acpi = 3,
    /// <summary><c>XEN_HVM_MEMMAP_TYPE_NVS</c>.</summary>
    Nvs = 4,
    /// <summary><c>XEN_HVM_MEMMAP_TYPE_UNUSABLE</c>.</summary>
    Unusable = 5,
    /// <summary><c>XEN_HVM_MEMMAP_TYPE_DISABLED</c>.</summary>
    Disabled = 6,
    /// <summary><c>XEN_HVM_MEMMAP_TYPE_PMEM</c>.</summary>
    Pmem = 7,
}
