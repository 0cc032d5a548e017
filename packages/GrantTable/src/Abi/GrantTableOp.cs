namespace VmmKit.GrantTable;

/// <summary>Commands of <c>__HYPERVISOR_grant_table_op(cmd, uop, count)</c> (<c>GNTTABOP_*</c>, xen/grant_table.h).</summary>
public enum GrantTableOp : uint
{
    /// <summary><c>GNTTABOP_map_grant_ref</c>: uop is an array of <see cref="GnttabMapGrantRef"/>.</summary>
    MapGrantRef = 0,
    /// <summary><c>GNTTABOP_unmap_grant_ref</c>: uop is an array of <see cref="GnttabUnmapGrantRef"/>.</summary>
    UnmapGrantRef = 1,
    /// <summary><c>GNTTABOP_setup_table</c>: uop is one <see cref="GnttabSetupTable"/> (<see cref="CompatGnttabSetupTable"/>).</summary>
    SetupTable = 2,
    /// <summary><c>GNTTABOP_dump_table</c>: not offered (-ENOSYS).</summary>
    DumpTable = 3,
    /// <summary><c>GNTTABOP_transfer</c>: not offered to HVM guests by Xen (-ENOSYS).</summary>
    Transfer = 4,
    /// <summary><c>GNTTABOP_copy</c>: uop is an array of <see cref="GnttabCopy"/> (<see cref="CompatGnttabCopy"/>).</summary>
    Copy = 5,
    /// <summary><c>GNTTABOP_query_size</c>: uop is one <see cref="GnttabQuerySize"/>.</summary>
    QuerySize = 6,
    /// <summary><c>GNTTABOP_unmap_and_replace</c>: <see cref="GnttabUnmapAndReplace"/>; not offered to HVM guests by Xen (-ENOSYS).</summary>
    UnmapAndReplace = 7,
    /// <summary><c>GNTTABOP_set_version</c>: uop is one <see cref="GnttabSetVersion"/>.</summary>
    SetVersion = 8,
    /// <summary><c>GNTTABOP_get_status_frames</c>: <see cref="GnttabGetStatusFrames"/>; not offered to HVM guests by Xen (-ENOSYS), which map status frames with XENMAPSPACE_grant_table.</summary>
    GetStatusFrames = 9,
    /// <summary><c>GNTTABOP_get_version</c>: uop is one <see cref="GnttabGetVersion"/>.</summary>
    GetVersion = 10,
    /// <summary><c>GNTTABOP_swap_grant_ref</c>: uop is an array of <see cref="GnttabSwapGrantRef"/>.</summary>
    SwapGrantRef = 11,
    /// <summary><c>GNTTABOP_cache_flush</c>: not offered to HVM guests by Xen (-ENOSYS).</summary>
    CacheFlush = 12,
}
