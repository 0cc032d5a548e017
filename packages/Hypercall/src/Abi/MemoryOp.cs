using System.Runtime.InteropServices;

namespace VmmKit.Hypercall;

/// <summary>
/// Sub-operations of <c>__HYPERVISOR_memory_op(cmd, arg)</c> (<c>XENMEM_*</c>, xen/memory.h); the
/// operation is <c>cmd &amp; MEMOP_CMD_MASK</c>, the upper bits carry a continuation's start extent.
/// </summary>
public enum MemoryOp : uint
{
    /// <summary><c>XENMEM_increase_reservation</c>.</summary>
    IncreaseReservation = 0,
    /// <summary><c>XENMEM_decrease_reservation</c>.</summary>
    DecreaseReservation = 1,
    /// <summary><c>XENMEM_maximum_ram_page</c>: arg is NULL; returns the largest machine frame number.</summary>
    MaximumRamPage = 2,
    /// <summary><c>XENMEM_current_reservation</c>: arg points to a <c>domid_t</c>; returns the domain's page count.</summary>
    CurrentReservation = 3,
    /// <summary><c>XENMEM_maximum_reservation</c>: arg points to a <c>domid_t</c>; returns the domain's page limit.</summary>
    MaximumReservation = 4,
    /// <summary><c>XENMEM_machphys_mfn_list</c>.</summary>
    MachphysMfnList = 5,
    /// <summary><c>XENMEM_populate_physmap</c>.</summary>
    PopulatePhysmap = 6,
    /// <summary><c>XENMEM_add_to_physmap</c>: arg is <see cref="XenAddToPhysmap"/> (<see cref="CompatXenAddToPhysmap"/> for 32-bit callers).</summary>
    AddToPhysmap = 7,
    /// <summary><c>XENMEM_memory_map</c>: arg is <see cref="XenMemoryMap"/> (<see cref="CompatXenMemoryMap"/>); the buffer receives <see cref="E820Entry"/> items.</summary>
    MemoryMap = 9,
    /// <summary><c>XENMEM_machine_memory_map</c> (privileged).</summary>
    MachineMemoryMap = 10,
    /// <summary><c>XENMEM_exchange</c>.</summary>
    Exchange = 11,
    /// <summary><c>XENMEM_machphys_mapping</c> (-ENOSYS for HVM callers in Xen).</summary>
    MachphysMapping = 12,
    /// <summary><c>XENMEM_set_memory_map</c> (privileged).</summary>
    SetMemoryMap = 13,
    /// <summary><c>XENMEM_maximum_gpfn</c>.</summary>
    MaximumGpfn = 14,
    /// <summary><c>XENMEM_remove_from_physmap</c>.</summary>
    RemoveFromPhysmap = 15,
    /// <summary><c>XENMEM_set_pod_target</c>.</summary>
    SetPodTarget = 16,
    /// <summary><c>XENMEM_get_pod_target</c>.</summary>
    GetPodTarget = 17,
    /// <summary><c>XENMEM_add_to_physmap_batch</c>.</summary>
    AddToPhysmapBatch = 23,
    /// <summary><c>XENMEM_claim_pages</c>.</summary>
    ClaimPages = 24,
    /// <summary><c>XENMEM_machphys_compat_mfn_list</c>.</summary>
    MachphysCompatMfnList = 25,
    /// <summary><c>XENMEM_get_vnumainfo</c>.</summary>
    GetVnumainfo = 26,
    /// <summary><c>XENMEM_reserved_device_memory_map</c>.</summary>
    ReservedDeviceMemoryMap = 27,
    /// <summary><c>XENMEM_acquire_resource</c>.</summary>
    AcquireResource = 28,
}

/// <summary>Spaces of <c>XENMEM_add_to_physmap</c> (<c>XENMAPSPACE_*</c>, <c>enum phys_map_space</c>).</summary>
public enum XenMapSpace : uint
{
    /// <summary><c>XENMAPSPACE_shared_info</c>: map the domain's shared_info page (idx 0).</summary>
    SharedInfo = 0,
    /// <summary><c>XENMAPSPACE_grant_table</c>: map grant-table frame idx (bit 31 set: a status frame, <see cref="XenAddToPhysmap.GrantTableStatusIndex"/>).</summary>
    GrantTable = 1,
    /// <summary><c>XENMAPSPACE_gmfn</c>: move the guest frame idx.</summary>
    Gmfn = 2,
    /// <summary><c>XENMAPSPACE_gmfn_range</c>: move <c>size</c> guest frames from idx.</summary>
    GmfnRange = 3,
    /// <summary><c>XENMAPSPACE_gmfn_foreign</c>: map a frame of another domain (privileged).</summary>
    GmfnForeign = 4,
    /// <summary><c>XENMAPSPACE_dev_mmio</c>: device MMIO (Arm only).</summary>
    DevMmio = 5,
}

/// <summary><c>struct xen_add_to_physmap</c> (xen/memory.h) for 64-bit callers, 24 bytes.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct XenAddToPhysmap
{
    /// <summary><c>XENMAPIDX_grant_table_status</c>: set in <see cref="Idx"/> to map a grant status frame.</summary>
    public const uint GrantTableStatusIndex = 0x80000000;

    /// <summary><c>domid</c>: domain whose physmap changes (normally <see cref="DomainId.Self"/>).</summary>
    public ushort Domid;
    /// <summary><c>size</c>: number of pages for <see cref="XenMapSpace.GmfnRange"/>.</summary>
    public ushort Size;
    /// <summary><c>space</c>: a <see cref="XenMapSpace"/> value.</summary>
    public uint Space;
    /// <summary><c>idx</c> (<c>xen_ulong_t</c>): index into the space.</summary>
    public ulong Idx;
    /// <summary><c>gpfn</c> (<c>xen_pfn_t</c>): guest frame where the page appears.</summary>
    public ulong Gpfn;
}

/// <summary><c>struct xen_add_to_physmap</c> as a 32-bit caller lays it out (<c>xen_ulong_t</c> and <c>xen_pfn_t</c> are 32 bits), 16 bytes.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct CompatXenAddToPhysmap
{
    /// <summary><c>domid</c>.</summary>
    public ushort Domid;
    /// <summary><c>size</c>.</summary>
    public ushort Size;
    /// <summary><c>space</c>.</summary>
    public uint Space;
    /// <summary><c>idx</c>.</summary>
    public uint Idx;
    /// <summary><c>gpfn</c>.</summary>
    public uint Gpfn;
}

/// <summary><c>struct xen_memory_map</c> (xen/memory.h) for 64-bit callers, 16 bytes: argument of <c>XENMEM_memory_map</c>.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct XenMemoryMap
{
    /// <summary><c>nr_entries</c>: IN, capacity of the buffer in entries; OUT, entries stored.</summary>
    public uint NrEntries;
    /// <summary><c>XEN_GUEST_HANDLE(void) buffer</c>: array of <see cref="E820Entry"/>.</summary>
    public ulong Buffer;
}

/// <summary><c>struct xen_memory_map</c> as a 32-bit caller lays it out, 8 bytes.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct CompatXenMemoryMap
{
    /// <summary><c>nr_entries</c>.</summary>
    public uint NrEntries;
    /// <summary><c>buffer</c>: 32-bit guest handle.</summary>
    public uint Buffer;
}

/// <summary>
/// One entry of the <c>XENMEM_memory_map</c> buffer: "the same format as returned by the BIOS INT
/// 0x15 EAX=0xE820 call" (xen/memory.h), i.e. Xen's packed <c>struct e820entry</c>, 20 bytes (the
/// same layout as Linux's <c>struct boot_e820_entry</c>).
/// </summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
public struct E820Entry
{
    /// <summary>E820 type 1: usable RAM.</summary>
    public const uint TypeRam = 1;
    /// <summary>E820 type 2: reserved.</summary>
    public const uint TypeReserved = 2;
    /// <summary>E820 type 3: ACPI reclaimable.</summary>
    public const uint TypeAcpi = 3;
    /// <summary>E820 type 4: ACPI NVS.</summary>
    public const uint TypeNvs = 4;
    /// <summary>E820 type 5: unusable.</summary>
    public const uint TypeUnusable = 5;

    /// <summary>Base guest-physical address.</summary>
    public ulong Addr;
    /// <summary>Length in bytes.</summary>
    public ulong Size;
    /// <summary>Type (<see cref="TypeRam"/>, ...).</summary>
    public uint Type;
}
