using System.Runtime.CompilerServices;
using CsCheck;
using VmmKit.Hypercall;

namespace VmmKit.GrantTable.Tests;

/// <summary>
/// With nothing changing meanwhile, one <c>GNTTABOP_copy</c> call of many operations must give every operation the
/// status and the bytes it gets when issued alone (Xen's gnttab_copy only keeps what an operation claimed for the next
/// one; it never skips a check). Random calls mix held and new grants and frames, valid and invalid references,
/// foreign frame numbers, wrong domids, offsets and lengths beyond the page, unknown flag bits, and garbage in the
/// bytes Xen does not read (the upper half of a reference's union, the padding after the offset); one machine runs each
/// call as a batch, an identical one runs its operations one at a time, and both must end byte for byte the same.
/// </summary>
public class CopyBatchEquivalenceTests
{
    private const int Pages = CopyWorld.Pages; // RAM frames of each domain the operations name: gfn 0..15

    [Fact]
    public void A_batch_gives_every_operation_what_it_gets_alone() =>
        Gen.Int[0, int.MaxValue].Array[8].Array[1, 40].Sample(Run, iter: 200);

    private static void Run(int[][] draws)
    {
        using var batched = new CopyWorld();
        using var single = new CopyWorld();
        var ops = new GnttabCopy[draws.Length];
        for (int i = 0; i < draws.Length; i++)
        {
            ops[i] = Decode(draws[i], batched.Grefs);
        }

        GnttabCopy[] alone = [.. ops];
        batched.M.Host.Copy(batched.Back.Grant, ops);
        for (int i = 0; i < alone.Length; i++)
        {
            single.M.Host.Copy(single.Back.Grant, ref alone[i]);
        }

        for (int i = 0; i < ops.Length; i++)
        {
            Assert.True(alone[i].Status == ops[i].Status, $"operation {i}: {(GrantStatus)ops[i].Status} in the batch, {(GrantStatus)alone[i].Status} alone");
        }

        batched.AssertSameAs(single);
    }

    // One operation from eight random numbers: the kind of each side, offsets, length, flags and the ignored bytes.
    private static GnttabCopy Decode(int[] r, uint[] grefs)
    {
        var op = new GnttabCopy
        {
            Source = Side(r[0], r[2], grefs, out bool srcGref),
            Dest = Side(r[1], r[3], grefs, out bool dstGref),
            Len = (r[4] % 6) switch { 0 => 0, 1 => 1, 2 => 16, 3 => 512, 4 => 4096, _ => (ushort)(r[4] / 6 % 4097) },
            Flags = (ushort)((srcGref ? GrantCopyFlags.SourceGref : 0) | (dstGref ? GrantCopyFlags.DestGref : 0)),
            Status = 99,
        };
        if (r[5] % 8 == 0)
        {
            op.Flags |= (ushort)(1 << (4 + (r[5] / 8 % 12))); // a flag bit Xen does not define
        }

        if (r[6] % 3 == 0)
        {
            // Garbage where Xen reads nothing: the upper half of a reference's union and each side's padding.
            ref GnttabCopyPtr src = ref op.Source, dst = ref op.Dest;
            if (srcGref)
            {
                Unsafe.Add(ref Unsafe.As<GnttabCopyPtr, uint>(ref src), 1) = (uint)r[7];
            }

            if (dstGref)
            {
                Unsafe.Add(ref Unsafe.As<GnttabCopyPtr, uint>(ref dst), 1) = (uint)r[7] ^ 0x5A5A5A5Au;
            }

            Unsafe.Add(ref Unsafe.As<GnttabCopyPtr, uint>(ref src), 3) = (uint)r[6];
            Unsafe.Add(ref Unsafe.As<GnttabCopyPtr, uint>(ref dst), 3) = (uint)r[7];
        }

        return op;
    }

    private static GnttabCopyPtr Side(int kind, int where, uint[] grefs, out bool gref)
    {
        // Offsets: mostly piece boundaries, so consecutive operations hold the same grant or frame; sometimes anywhere.
        ushort offset = (ushort)(where % 4 == 0 ? where / 4 % 4100 : where / 4 % 8 * 512);
        gref = kind % 9 < 5;
        return (kind % 9) switch
        {
            0 => new() { Ref = grefs[0], DomId = 1, Offset = offset },            // read-only grant to the caller
            1 => new() { Ref = grefs[1], DomId = 1, Offset = offset },            // writable grant to the caller
            2 => new() { Ref = grefs[2], DomId = 1, Offset = offset },            // granted to domain 3, not the caller
            3 => new() { Ref = 999_999, DomId = 1, Offset = offset },             // no such reference
            4 => new() { Ref = grefs[1], DomId = 3, Offset = offset },            // the right reference of the wrong domain
            5 or 6 => new() { Gmfn = (ulong)(2 + (kind / 9 % 3)), DomId = DomainId.Self, Offset = offset }, // the caller's frames
            7 => new() { Gmfn = 5, DomId = 1, Offset = offset },                  // a frame number of another domain
            _ => new() { Gmfn = 1UL << 40, DomId = DomainId.Self, Offset = offset }, // outside the caller's memory
        };
    }
}
