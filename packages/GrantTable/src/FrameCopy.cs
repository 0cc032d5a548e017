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
    private const uint Step = 256; // bytes per step of eight loads, then eight stores
    private const uint WideFrom = 2048; // shorter copies measured no faster in steps of eight (bench README)

    /// <summary>Copies <paramref name="length"/> bytes (at most a page) from <paramref name="source"/> to <paramref name="destination"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Copy(byte* source, byte* destination, uint length)
    {
        // 32 <= length <= PAGE_SIZE (one unsigned compare), and disjoint: the destination starts at or after the
        // source's end, or ends at or before its start.
        if (Vector256.IsHardwareAccelerated && length - Lane <= Page.PageSize - Lane &&
            (nuint)(destination - source) >= length && (nuint)(source - destination) >= length)
        {
            CopyDisjoint(source, destination, length);
            return;
        }

        // Code built without 256-bit vectors (NativeAOT's default x86 target): 16-byte ones, from 2 KiB up only.
        if (!Vector256.IsHardwareAccelerated && Vector128.IsHardwareAccelerated && X86Base.IsSupported &&
            length - WideFrom <= Page.PageSize - WideFrom &&
            (nuint)(destination - source) >= length && (nuint)(source - destination) >= length)
        {
            CopyDisjointWide128(source, destination, length);
            return;
        }

        Buffer.MemoryCopy(source, destination, length, length);
    }

    // length >= 32 and the two ranges do not overlap, so storing any 32 bytes twice stores the same bytes.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void CopyDisjoint(byte* source, byte* destination, nuint length)
    {
        nuint i = 0;
        if (length >= WideFrom)
        {
            for (; i + Step <= length; i += Step)
            {
                byte* s = source + i, d = destination + i;
                Vector256<byte> a = Vector256.Load(s);
                Vector256<byte> b = Vector256.Load(s + Lane);
                Vector256<byte> c = Vector256.Load(s + (2 * Lane));
                Vector256<byte> e = Vector256.Load(s + (3 * Lane));
                Vector256<byte> f = Vector256.Load(s + (4 * Lane));
                Vector256<byte> g = Vector256.Load(s + (5 * Lane));
                Vector256<byte> h = Vector256.Load(s + (6 * Lane));
                Vector256<byte> k = Vector256.Load(s + (7 * Lane));
                a.Store(d);
                b.Store(d + Lane);
                c.Store(d + (2 * Lane));
                e.Store(d + (3 * Lane));
                f.Store(d + (4 * Lane));
                g.Store(d + (5 * Lane));
                h.Store(d + (6 * Lane));
                k.Store(d + (7 * Lane));
            }
        }

        for (; i + (2 * Lane) <= length; i += 2 * Lane)
        {
            Vector256<byte> a = Vector256.Load(source + i);
            Vector256<byte> b = Vector256.Load(source + i + Lane);
            a.Store(destination + i);
            b.Store(destination + i + Lane);
        }

        // Fewer than 64 bytes left: one store more if more than 32 are left, then the last 32 bytes.
        nuint last = length - Lane;
        if (i < length)
        {
            if (i < last)
            {
                Vector256.Load(source + i).Store(destination + i);
            }

            Vector256.Load(source + last).Store(destination + last);
        }
    }

    // CopyDisjoint's steps with 16-byte vectors: eight loads in flight before their eight stores for each 128 bytes,
    // then two at a time, then the last 16 bytes. For copies from 2 KiB up only: below that, 16-byte steps measured
    // slower than Buffer.MemoryCopy around a claim (bench/GrantTable.Benchmarks/README.md). 2 KiB <= length <= a page,
    // and the two ranges do not overlap.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void CopyDisjointWide128(byte* source, byte* destination, nuint length)
    {
        const uint lane = 16, step = 128;
        nuint i = 0;
        for (; i + step <= length; i += step)
        {
            byte* s = source + i, d = destination + i;
            Vector128<byte> a = Vector128.Load(s);
            Vector128<byte> b = Vector128.Load(s + lane);
            Vector128<byte> c = Vector128.Load(s + (2 * lane));
            Vector128<byte> e = Vector128.Load(s + (3 * lane));
            Vector128<byte> f = Vector128.Load(s + (4 * lane));
            Vector128<byte> g = Vector128.Load(s + (5 * lane));
            Vector128<byte> h = Vector128.Load(s + (6 * lane));
            Vector128<byte> k = Vector128.Load(s + (7 * lane));
            a.Store(d);
            b.Store(d + lane);
            c.Store(d + (2 * lane));
            e.Store(d + (3 * lane));
            f.Store(d + (4 * lane));
            g.Store(d + (5 * lane));
            h.Store(d + (6 * lane));
            k.Store(d + (7 * lane));
        }

        for (; i + (2 * lane) <= length; i += 2 * lane)
        {
            Vector128<byte> a = Vector128.Load(source + i);
            Vector128<byte> b = Vector128.Load(source + i + lane);
            a.Store(destination + i);
            b.Store(destination + i + lane);
        }

        // Fewer than 32 bytes left: one store more if more than 16 are left, then the last 16 bytes.
        nuint last = length - lane;
        if (i < length)
        {
            if (i < last)
            {
                Vector128.Load(source + i).Store(destination + i);
            }

            Vector128.Load(source + last).Store(destination + last);
        }
    }
}
