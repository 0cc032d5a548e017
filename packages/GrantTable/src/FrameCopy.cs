using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace VmmKit.GrantTable;

/// <summary>
/// The byte copy of <c>GNTTABOP_copy</c> (Xen's <c>gnttab_copy_buf</c> calls <c>memcpy</c>): at most one page between
/// two places in guest frames, with <c>memmove</c> semantics because both sides may be the same frame.
/// </summary>
/// <remarks>
/// Two places that do not overlap are copied with 32-byte vector loads and stores: from 2 KiB up (whole pages),
/// 512 bytes at a time, all sixteen loads of a block before its sixteen stores, then 64 bytes at a time, the last 32
/// bytes stored again from the end when the length is not a multiple of 32. On this project's development host that
/// is faster than <see cref="Buffer.MemoryCopy(void*, void*, long, long)"/> on every shape it measures: at 512 bytes
/// than CoreLib's managed copy, and at 4 KiB than the C library's <c>memmove</c> (<c>rep movsb</c>) on a page the
/// cache holds, as fast on one it does not (a loop that keeps fewer loads in flight, or uses 64-byte vectors, is
/// slower there; bench/GrantTable.Benchmarks/README.md). Overlapping places (one frame copied onto itself), copies
/// under 32 bytes and hosts without 256-bit vectors (and NativeAOT builds that do not target them) go to
/// <see cref="Buffer.MemoryCopy(void*, void*, long, long)"/>, which keeps <c>memmove</c>'s semantics. A guest may
/// write either side while it is copied (a grant stays the granter's); the result is then some mix of old and new
/// bytes, as with any <c>memcpy</c>.
/// </remarks>
internal static unsafe class FrameCopy
{
    /// <summary>The length from which <see cref="Copy"/> copies 512-byte blocks first.</summary>
    public const uint BlockLoopStart = 2048;

    private const int BlockSize = 512;

    /// <summary>Copies <paramref name="length"/> bytes (at most a page) from <paramref name="source"/> to <paramref name="destination"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Copy(byte* source, byte* destination, uint length)
    {
        // At least 32 bytes, and disjoint: the destination starts at or after the source's end, or ends at or before its
        // start.
        if (Vector256.IsHardwareAccelerated && length >= (uint)Vector256<byte>.Count &&
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
        if (length >= BlockLoopStart)
        {
            for (; i + BlockSize <= length; i += BlockSize)
            {
                CopyBlock(source + i, destination + i);
            }
        }

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

    // 512 bytes: sixteen loads (every 256-bit register of AVX2), then sixteen stores, so that on a page the cache does
    // not hold eight lines are being fetched at once.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void CopyBlock(byte* source, byte* destination)
    {
        Vector256<byte> a = Vector256.Load(source);
        Vector256<byte> b = Vector256.Load(source + 32);
        Vector256<byte> c = Vector256.Load(source + 64);
        Vector256<byte> d = Vector256.Load(source + 96);
        Vector256<byte> e = Vector256.Load(source + 128);
        Vector256<byte> f = Vector256.Load(source + 160);
        Vector256<byte> g = Vector256.Load(source + 192);
        Vector256<byte> h = Vector256.Load(source + 224);
        Vector256<byte> i = Vector256.Load(source + 256);
        Vector256<byte> j = Vector256.Load(source + 288);
        Vector256<byte> k = Vector256.Load(source + 320);
        Vector256<byte> l = Vector256.Load(source + 352);
        Vector256<byte> m = Vector256.Load(source + 384);
        Vector256<byte> n = Vector256.Load(source + 416);
        Vector256<byte> o = Vector256.Load(source + 448);
        Vector256<byte> p = Vector256.Load(source + 480);

        a.Store(destination);
        b.Store(destination + 32);
        c.Store(destination + 64);
        d.Store(destination + 96);
        e.Store(destination + 128);
        f.Store(destination + 160);
        g.Store(destination + 192);
        h.Store(destination + 224);
        i.Store(destination + 256);
        j.Store(destination + 288);
        k.Store(destination + 320);
        l.Store(destination + 352);
        m.Store(destination + 384);
        n.Store(destination + 416);
        o.Store(destination + 448);
        p.Store(destination + 480);
    }
}
