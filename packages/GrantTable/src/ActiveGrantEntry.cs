namespace VmmKit.GrantTable;

/// <summary>
/// The hypervisor's shadow of a grant in use (Xen's <c>struct active_grant_entry</c>, xen/common/grant_table.c):
/// pin counts and the frame resolved when the grant was first pinned.
/// </summary>
internal struct ActiveGrantEntry
{
    // Pin count layout (grant_table.c): 8 bits each of host writable, host read-only, device writable, device read-only.
    public const uint HostWriteIncrement = 1u << 0;
    public const uint HostWriteMask = 0xFFu << 0;
    public const uint HostReadIncrement = 1u << 8;
    public const uint HostReadMask = 0xFFu << 8;
    public const uint DeviceWriteMask = 0xFFu << 16;
    public const uint OverflowRisk = 0x80808080u;

    public uint Pin;
    public ushort DomId;
    public ushort Start;
    public ushort Length;
    public bool IsSubPage;
    public ulong Mfn;
}
