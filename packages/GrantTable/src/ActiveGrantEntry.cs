using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using VmmKit.Ept;

namespace VmmKit.GrantTable;

/// <summary>
/// The hypervisor's shadow of a grant in use (Xen's <c>struct active_grant_entry</c>, xen/common/grant_table.c):
/// pin counts, and the frame resolved when the grant was first pinned with the guest frame the entry named then.
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

    /// <summary>
    /// The top bit of the counter <paramref name="increment"/> counts in: set, one more pin of that kind could overflow
    /// it (Xen's <c>GNTPIN_incr2oflow_mask(pin_incr)</c>, which map_grant_ref and acquire_grant_for_copy test before
    /// pinning: only the counter the pin increments, not the others).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static uint OverflowMask(uint increment) => increment << 7;

    [FieldOffset(0)] public uint Pin;
    [FieldOffset(4)] public ushort DomId;
    [FieldOffset(6)] public ushort Start;
    [FieldOffset(8)] public ushort Length;
    [FieldOffset(10)] public bool IsSubPage;
    [FieldOffset(12)] public int Lock;  // 1 while a copy sharing the granter's copy word claims or releases this entry
    [FieldOffset(16)] public ulong Mfn;
    [FieldOffset(24)] public ulong Gfn; // act->gfn: the granter's frame Mfn was resolved from (marked dirty by writers)

    // The same bytes as Pin, DomId and Start; as Length and IsSubPage (and the padding byte after it).
    [FieldOffset(0)] private ulong _pinDomIdStart;
    [FieldOffset(8)] private uint _lengthSubPage;

    /// <summary>
    /// Takes the entry's lock (Xen's <c>active_entry_acquire</c>), which copies sharing the granter's copy word take
    /// around each claim and release of the entry (GrantTableHost.Exclusion.cs); held for a few instructions, never
    /// across a copy, and never with another entry's.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Enter()
    {
        if (Interlocked.CompareExchange(ref Lock, 1, 0) != 0)
        {
            EnterContended(ref Lock);
        }
    }

    /// <summary>Lets go of the entry's lock (<c>active_entry_release</c>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Exit() => Volatile.Write(ref Lock, 0);

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void EnterContended(ref int word)
    {
        var spin = default(SpinWait);
        do
        {
            spin.SpinOnce(sleep1Threshold: -1);
        }
        while (Volatile.Read(ref word) != 0 || Interlocked.CompareExchange(ref word, 1, 0) != 0);
    }

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
