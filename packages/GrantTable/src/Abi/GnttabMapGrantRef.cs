using System.Runtime.InteropServices;

namespace VmmKit.GrantTable;

/// <summary><c>struct gnttab_map_grant_ref</c> (xen/grant_table.h), 32 bytes in both ABIs.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct GnttabMapGrantRef
{
    /// <summary>IN <c>host_addr</c>: for an HVM/PVH grantee, the guest-physical address to map at.</summary>
    public ulong HostAddr;
    /// <summary>IN <c>flags</c>: <see cref="GrantMapFlags"/>.</summary>
    public uint Flags;
    /// <summary>IN <c>ref</c>: the grant reference in <see cref="Dom"/>'s table.</summary>
    public uint Ref;
    /// <summary>IN <c>dom</c>: the granting domain.</summary>
    public ushort Dom;
    /// <summary>OUT <c>status</c>: <see cref="GrantStatus"/>.</summary>
    public short Status;
    /// <summary>OUT <c>handle</c>: the maptrack handle to unmap with.</summary>
    public uint Handle;
    /// <summary>OUT <c>dev_bus_addr</c>: the machine address of the frame.</summary>
    public ulong DevBusAddr;
}

/// <summary><c>struct gnttab_unmap_grant_ref</c> (xen/grant_table.h), 24 bytes in both ABIs.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct GnttabUnmapGrantRef
{
    /// <summary>IN <c>host_addr</c>: the address given to map (0 leaves a host mapping in place, as in Xen).</summary>
    public ulong HostAddr;
    /// <summary>
    /// IN <c>dev_bus_addr</c>: checked only against a device mapping (<c>GNTMAP_device_map</c>), which an HVM grantee
    /// never has, so it does not matter here (Xen's <c>unmap_common</c>).
    /// </summary>
    public ulong DevBusAddr;
    /// <summary>IN <c>handle</c>.</summary>
    public uint Handle;
    /// <summary>OUT <c>status</c>: <see cref="GrantStatus"/>.</summary>
    public short Status;
}

/// <summary><c>struct gnttab_unmap_and_replace</c> (xen/grant_table.h), 24 bytes in both ABIs.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct GnttabUnmapAndReplace
{
    /// <summary>IN <c>host_addr</c>.</summary>
    public ulong HostAddr;
    /// <summary>IN <c>new_addr</c>: must be 0 for an HVM grantee (Xen's replace_grant_p2m_mapping).</summary>
    public ulong NewAddr;
    /// <summary>IN <c>handle</c>.</summary>
    public uint Handle;
    /// <summary>OUT <c>status</c>.</summary>
    public short Status;
}

/// <summary><c>struct gnttab_swap_grant_ref</c> (xen/grant_table.h), 12 bytes in both ABIs.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct GnttabSwapGrantRef
{
    /// <summary>IN <c>ref_a</c>.</summary>
    public uint RefA;
    /// <summary>IN <c>ref_b</c>.</summary>
    public uint RefB;
    /// <summary>OUT <c>status</c>.</summary>
    public short Status;
}
