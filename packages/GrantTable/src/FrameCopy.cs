using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace VmmKit.GrantTable;

/// <summary>
/// The byte copy of <c>GNTTABOP_copy</c> (Xen's <c>gnttab_copy_buf</c> calls <c>memcpy</c>): at most one page between
/// two places in guest frames, with <c>memmove</c> semantics because both sides may be the same frame.
/// </summary>
/// <remarks>
/// Below 2 KiB, two places that do not overlap are copied with a loop of 32-byte vector loads and stores (the last 32
/// bytes stored again from the end when the length is not a multiple of 32), which is faster than
/// <see cref="Buffer.MemoryCopy(void*, void*, long, long)"/>'s managed copy of those sizes (512-byte operations:
/// bench/GrantTable.Benchmarks/README.md). From 2 KiB up, <see cref="Buffer.MemoryCopy(void*, void*, long, long)"/>
/// calls the C library's <c>memmove</c>, which on hosts with fast string moves copies with <c>rep movsb</c>, as Xen's
/// own <c>memcpy</c> does: a vector loop, even one with sixteen loads in flight, measured faster on a page the cache
/// holds but slower on one it does not once the host's memory is busy (most likely the compare-exchange that claims the
/// next grant waiting for the loop's stores to drain), and pages the cache does not hold are the usual case for a
/// backend, so whole pages stay with <c>memmove</c>. Overlapping places, copies under 32 bytes and hosts without
/// 256-bit vectors (and NativeAOT builds that do not target them) also go to
/// <see cref="Buffer.MemoryCopy(void*, void*, long, long)"/>. A guest may write either side while it is copied (a grant
/// stays the granter's); the result is then some mix of old and new bytes, as with any <c>memcpy</c>.
/// </remarks>
internal static unsafe class FrameCopy
{
    /// <summary>The length from which <see cref="Copy"/> leaves the copy to <c>memmove</c> (CoreLib's own threshold for it on x64).</summary>
    public const uint VectorLoopEnd = 2048;

    /// <summary>Copies <paramref name="length"/> bytes (at most a page) from <paramref name="source"/> to <paramref name="destination"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Copy(byte* source, byte* destination, uint length)
    {
        // 32 <= length < VectorLoopEnd (one unsigned compare), and disjoint: the destination starts at or after the
        // source's end, or ends at or before its start.
        if (Vector256.IsHardwareAccelerated && length - (uint)Vector256<byte>.Count < VectorLoopEnd - (uint)Vector256<byte>.Count &&
            (nuint)(destination - source) >= length && (nuint)(source - destination) >= length)
        {
            CopyDisjoint(source, destination, length);
            return;
        }

        Buffer.MemoryCopy(source, destination, length, length);
    }

    // length >= 32 and the two ranges do not overlap, so storing any 32 bytes twice stores the same bytes.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void CopyDisjoint(byte* source, byte* destination, nuint length)
    {
        nuint last = length - (nuint)Vector256<byte>.Count;
        nuint i = 0;
        for (; i + (2 * (nuint)Vector256<byte>.Count) <= length; i += 2 * (nuint)Vector256<byte>.Count)
        {
            Vector256<byte> a = Vector256.Load(source + i);
            Vector256<byte> b = Vector256.Load(source + i + Vector256<byte>.Count);
            a.Store(destination + i);
            b.Store(destination + i + Vector256<byte>.Count);
        }

        // Fewer than 64 bytes left: one store more if more than 32 are left, then the last 32 bytes.
        if (i < length)
        {
            if (i < last)
            {
                Vector256.Load(source + i).Store(destination + i);
            }

            Vector256.Load(source + last).Store(destination + last);
        }
    }
}
