using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using VmmKit.Ept;

namespace VmmKit.GrantTable;

/// <summary>
/// The hypervisor's shadow of a grant in use (Xen's <c>struct active_grant_entry</c>, xen/common/grant_table.c):
/// pin counts and the frame resolved when the grant was first pinned.
/// </summary>
[StructLayout(LayoutKind.Explicit)]
internal struct ActiveGrantEntry
{
    // Pin count layout (grant_table.c): 8 bits each of host writable, host read-only, device writable, device read-only.
    public const uint HostWriteIncrement = 1u << 0;
    public const uint HostWriteMask = 0xFFu << 0;
    public const uint HostReadIncrement = 1u << 8;
    public const uint HostReadMask = 0xFFu << 8;
    public const uint DeviceWriteMask = 0xFFu << 16;
    public const uint OverflowRisk = 0x80808080u;

    [FieldOffset(0)] public uint Pin;
    [FieldOffset(4)] public ushort DomId;
    [FieldOffset(6)] public ushort Start;
    [FieldOffset(8)] public ushort Length;
    [FieldOffset(10)] public bool IsSubPage;
    [FieldOffset(16)] public ulong Mfn;

    // The same bytes as Pin, DomId and Start; as Length and IsSubPage (and the padding byte after it).
    [FieldOffset(0)] private ulong _pinDomIdStart;
    [FieldOffset(8)] private uint _lengthSubPage;

    /// <summary>
    /// Records a first pin of a whole-page grant: <paramref name="pin"/>, the grantee, the frame, offset 0 and length
    /// PAGE_SIZE, in three stores rather than six (a claim right after a copy waits for each store's turn to drain).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void PinWholePage(uint pin, ushort domId, ulong mfn)
    {
        _pinDomIdStart = pin | (ulong)domId << 32;
        _lengthSubPage = Page.PageSize;
        Mfn = mfn;
    }
}
