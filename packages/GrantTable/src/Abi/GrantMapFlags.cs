namespace VmmKit.GrantTable;

/// <summary>Flags of <see cref="GnttabMapGrantRef.Flags"/> (<c>GNTMAP_*</c>, xen/grant_table.h).</summary>
[Flags]
public enum GrantMapFlags : uint
{
    /// <summary>No flag.</summary>
    None = 0,
    /// <summary><c>GNTMAP_device_map</c>: map for device access (refused for HVM grantees).</summary>
    DeviceMap = 1 << 0,
    /// <summary><c>GNTMAP_host_map</c>: map for CPU access; for an HVM grantee <c>host_addr</c> is a guest-physical address.</summary>
    HostMap = 1 << 1,
    /// <summary><c>GNTMAP_readonly</c>: map read-only.</summary>
    ReadOnly = 1 << 2,
    /// <summary><c>GNTMAP_application_map</c>: PV user mapping (refused for HVM grantees).</summary>
    ApplicationMap = 1 << 3,
    /// <summary><c>GNTMAP_contains_pte</c>: <c>host_addr</c> is a PTE address (PV only, refused for HVM grantees).</summary>
    ContainsPte = 1 << 4,
}
