using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using VmmKit.Ept;

namespace VmmKit.GrantTable;

/// <summary>
/// The byte copy of <c>GNTTABOP_copy</c> (Xen's <c>gnttab_copy_buf</c> calls <c>memcpy</c>): at most one page between
/// two places in guest frames, with <c>memmove</c> semantics because both sides may be the same frame.
/// </summary>
/// <remarks>
/// Two places that do not overlap, from 32 bytes to a page long, are copied with a loop of 32-byte vector loads and
/// stores: from 2 KiB up, eight loads in flight before their eight stores for each 256 bytes; then, and below 2 KiB
/// throughout, two at a time; the last 32 bytes stored again from the end when the length is not a multiple of 32.
/// Xen's own <c>memcpy</c> is <c>rep movsb</c> on hosts with fast string moves, as is the C library's <c>memmove</c>
/// behind <see cref="Buffer.MemoryCopy(void*, void*, long, long)"/>. The loop wins beside what follows every copy here:
/// the locked instruction that claims or releases the next grant waits for every store before it, and on the
/// development host (AMD Zen 5) the stores of a <c>rep movsb</c> take longer to drain than the loop's
/// (bench/GrantTable.Benchmarks/README.md has the figures, and an earlier host where cold pages favoured
/// <c>rep movsb</c> while its memory was busy). Code built without 256-bit vectors (a NativeAOT build's default x86
/// target) copies from 2 KiB up with the same steps of 16-byte vectors. Overlapping places, copies under 32 bytes
/// (under 2 KiB without 256-bit vectors) and other processors go to
/// <see cref="Buffer.MemoryCopy(void*, void*, long, long)"/>.
/// A guest may write either side while it is copied (a grant stays the granter's); the result is then some mix of old
/// and new bytes, as with any <c>memcpy</c>.
/// </remarks>
internal static unsafe class FrameCopy
{
    private const uint Lane = 32;  // bytes per load and store (Vector256)
    private const uint WideFrom = 2048; // shorter copies measured no faster in steps of eight (bench README)

    /// <summary>Copies <paramref name="length"/> bytes (at most a page) from <paramref name="source"/> to <paramref name="destination"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Copy(byte* source, byte* destination, uint length)
    {
        // 32 <= length <= PAGE_SIZE (one unsigned compare), and disjoint.
        if (Vector256.IsHardwareAccelerated && length - Lane <= Page.PageSize - Lane &&
            Disjoint(source, destination, length))
        {
            CopyDisjoint<Lane256, Vector256<byte>>(source, destination, length);
            return;
        }

        // Code built without 256-bit vectors (NativeAOT's default x86 target): 16-byte ones, from 2 KiB up only.
        if (!Vector256.IsHardwareAccelerated && Vector128.IsHardwareAccelerated && X86Base.IsSupported &&
            length - WideFrom <= Page.PageSize - WideFrom && Disjoint(source, destination, length))
        {
            CopyDisjointWide128(source, destination, length);
            return;
        }

        Buffer.MemoryCopy(source, destination, length, length);
    }

    // The destination starts at or after the source's end, or ends at or before its start.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static bool Disjoint(byte* source, byte* destination, uint length) =>
        (nuint)(destination - source) >= length && (nuint)(source - destination) >= length;

    /// <summary>
    /// The copy of code built without 256-bit vectors, from 2 KiB up: <see cref="CopyDisjoint"/> in 16-byte vectors.
    /// Below 2 KiB, 16-byte steps measured slower than <see cref="Buffer.MemoryCopy(void*, void*, long, long)"/> around
    /// a claim (bench/GrantTable.Benchmarks/README.md). 2 KiB &lt;= length &lt;= a page; the ranges do not overlap.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void CopyDisjointWide128(byte* source, byte* destination, nuint length) =>
        CopyDisjoint<Lane128, Vector128<byte>>(source, destination, length);

    // length >= two lanes and the two ranges do not overlap, so storing any lane's bytes twice stores the same bytes.
    // From 2 KiB up, eight loads in flight before their eight stores; then, and below 2 KiB throughout, two at a time;
    // the last lane stored again from the end when the length is not a multiple of it. TLane is a struct, so the JIT
    // compiles one body per width with every load and store inlined.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void CopyDisjoint<TLane, TVector>(byte* source, byte* destination, nuint length)
        where TLane : struct, ILane<TVector>
        where TVector : struct
    {
        nuint lane = TLane.Size, i = 0;
        if (length >= WideFrom)
        {
            for (; i + (8 * lane) <= length; i += 8 * lane)
            {
                byte* s = source + i, d = destination + i;
                TVector a = TLane.Load(s);
                TVector b = TLane.Load(s + lane);
                TVector c = TLane.Load(s + (2 * lane));
                TVector e = TLane.Load(s + (3 * lane));
                TVector f = TLane.Load(s + (4 * lane));
                TVector g = TLane.Load(s + (5 * lane));
                TVector h = TLane.Load(s + (6 * lane));
                TVector k = TLane.Load(s + (7 * lane));
                TLane.Store(a, d);
                TLane.Store(b, d + lane);
                TLane.Store(c, d + (2 * lane));
                TLane.Store(e, d + (3 * lane));
                TLane.Store(f, d + (4 * lane));
                TLane.Store(g, d + (5 * lane));
                TLane.Store(h, d + (6 * lane));
                TLane.Store(k, d + (7 * lane));
            }
        }

        for (; i + (2 * lane) <= length; i += 2 * lane)
        {
            TVector a = TLane.Load(source + i);
            TVector b = TLane.Load(source + i + lane);
            TLane.Store(a, destination + i);
            TLane.Store(b, destination + i + lane);
        }

        // Fewer than two lanes left: one store more if more than one lane is left, then the last lane.
        nuint last = length - lane;
        if (i < length)
        {
            if (i < last)
            {
                TLane.Store(TLane.Load(source + i), destination + i);
            }

            TLane.Store(TLane.Load(source + last), destination + last);
        }
    }

    // One width of vector for CopyDisjoint.
    private interface ILane<TVector>
        where TVector : struct
    {
        static abstract nuint Size { get; }

        static abstract TVector Load(byte* p);

        static abstract void Store(TVector value, byte* p);
    }

    private readonly struct Lane256 : ILane<Vector256<byte>>
    {
        public static nuint Size => Lane;

        public static Vector256<byte> Load(byte* p) => Vector256.Load(p);

        public static void Store(Vector256<byte> value, byte* p) => value.Store(p);
    }

    private readonly struct Lane128 : ILane<Vector128<byte>>
    {
        public static nuint Size => 16;

        public static Vector128<byte> Load(byte* p) => Vector128.Load(p);

        public static void Store(Vector128<byte> value, byte* p) => value.Store(p);
    }
}
