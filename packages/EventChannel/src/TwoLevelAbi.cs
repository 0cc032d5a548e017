using System.Runtime.CompilerServices;

namespace VmmKit.EventChannel;

/// <summary>
/// The 2-level ABI (xen/common/event_2l.c): <c>shared_info.evtchn_pending</c>/<c>evtchn_mask</c>
/// bitmaps, <c>vcpu_info.evtchn_pending_sel</c> and <c>evtchn_upcall_pending</c>. Words are
/// <c>xen_ulong_t</c>: 64 bits for a 64-bit guest (4096 ports), 32 bits for a 32-bit guest (1024
/// ports). Every update is an atomic operation on guest memory, in Xen's order.
/// </summary>
internal static unsafe class TwoLevelAbi
{
    // Offsets in struct shared_info / struct vcpu_info (xen/xen.h), checked by the layout tests.
    public const int PendingOffset64 = 2048, MaskOffset64 = 2560, PendingSelOffset64 = 8;
    public const int PendingOffset32 = 2048, MaskOffset32 = 2176, PendingSelOffset32 = 4;

    /// <summary><c>EVTCHN_2L_NR_CHANNELS</c> for each guest width.</summary>
    public const int NrChannels64 = 64 * 64, NrChannels32 = 32 * 32;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static bool TestAndSet(byte* bitmap, uint bit, bool compat)
    {
        if (compat)
        {
            uint mask = 1u << (int)(bit & 31);
            return (Interlocked.Or(ref ((uint*)bitmap)[bit >> 5], mask) & mask) != 0;
        }
        ulong m = 1UL << (int)(bit & 63);
        return (Interlocked.Or(ref ((ulong*)bitmap)[bit >> 6], m) & m) != 0;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static bool TestAndClear(byte* bitmap, uint bit, bool compat)
    {
        if (compat)
        {
            uint mask = 1u << (int)(bit & 31);
            return (Interlocked.And(ref ((uint*)bitmap)[bit >> 5], ~mask) & mask) != 0;
        }
        ulong m = 1UL << (int)(bit & 63);
        return (Interlocked.And(ref ((ulong*)bitmap)[bit >> 6], ~m) & m) != 0;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static bool Test(byte* bitmap, uint bit, bool compat) => compat
        ? (Volatile.Read(ref ((uint*)bitmap)[bit >> 5]) & (1u << (int)(bit & 31))) != 0
        : (Volatile.Read(ref ((ulong*)bitmap)[bit >> 6]) & (1UL << (int)(bit & 63))) != 0;

    private static byte* Pending(EventChannelDomain d) => (byte*)d.SharedInfo + (d.Compat ? PendingOffset32 : PendingOffset64);
    private static byte* Mask(EventChannelDomain d) => (byte*)d.SharedInfo + (d.Compat ? MaskOffset32 : MaskOffset64);

    /// <summary><c>evtchn_2l_set_pending</c>.</summary>
    public static void SetPending(EventChannelDomain d, int vcpu, uint port)
    {
        if (d.SharedInfo == 0)
            return; // no shared_info page yet: nowhere to record the event (Xen always has one)
        bool compat = d.Compat;
        if (TestAndSet(Pending(d), port, compat))
            return;
        if (!Test(Mask(d), port, compat) && SetSelector(d, vcpu, port, compat))
            d.MarkEventsPending(vcpu);
    }

    /// <summary><c>evtchn_2l_unmask</c>.</summary>
    public static void Unmask(EventChannelDomain d, int vcpu, uint port)
    {
        if (d.SharedInfo == 0)
            return;
        bool compat = d.Compat;
        if (TestAndClear(Mask(d), port, compat) && Test(Pending(d), port, compat) && SetSelector(d, vcpu, port, compat))
            d.MarkEventsPending(vcpu);
    }

    /// <summary><c>evtchn_2l_clear_pending</c>.</summary>
    public static void ClearPending(EventChannelDomain d, uint port)
    {
        if (d.SharedInfo != 0)
            TestAndClear(Pending(d), port, d.Compat);
    }

    /// <summary><c>evtchn_2l_is_pending</c>.</summary>
    public static bool IsPending(EventChannelDomain d, uint port) => d.SharedInfo != 0 && Test(Pending(d), port, d.Compat);

    /// <summary><c>evtchn_2l_is_masked</c>: a port without shared_info counts as masked.</summary>
    public static bool IsMasked(EventChannelDomain d, uint port) => d.SharedInfo == 0 || Test(Mask(d), port, d.Compat);

    // !test_and_set_bit(port / BITS_PER_EVTCHN_WORD, &vcpu_info(v, evtchn_pending_sel)): true when newly set.
    private static bool SetSelector(EventChannelDomain d, int vcpu, uint port, bool compat)
    {
        nint info = d.VcpuInfoOf(vcpu);
        if (info == 0)
            return false;
        byte* sel = (byte*)info + (compat ? PendingSelOffset32 : PendingSelOffset64);
        return !TestAndSet(sel, compat ? port >> 5 : port >> 6, compat);
    }
}
