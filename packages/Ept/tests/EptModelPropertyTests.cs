using CsCheck;
using VmmKit.Ept;

namespace VmmKit.Ept.Tests;

/// <summary>Random map/unmap/protect sequences against a dictionary of guest frame → (machine frame, rights).</summary>
public sealed class EptModelPropertyTests
{
    private const ulong GuestFrames = 3UL << 18;   // 3 GiB of guest-physical space
    private const ulong Huge = 1UL << 18;          // frames in a 1 GiB page
    private const ulong Large = 512;               // frames in a 2 MiB page
    private static readonly FrameOwner Dom = new(7);

    internal enum OpKind { Map, Unmap, Protect }

    internal readonly record struct Op(OpKind Kind, ulong Gfn, ulong Count, ulong Mfn, EptAccess Access)
    {
        public override string ToString() => $"{Kind}(gfn 0x{Gfn:x}, {Count}, mfn 0x{Mfn:x}, {Access})";
    }

    internal static readonly Gen<EptAccess> GenAccess = Gen.Int[0, 15].Select(a =>
    {
        var access = (EptAccess)a;
        return (access & (EptAccess.Read | EptAccess.Write)) == EptAccess.Write ? access | EptAccess.Read : access;
    });

    private static readonly Gen<ulong> GenFrameStart = Gen.Frequency(
        (1, Gen.ULong[0, 2].Select(x => x * Huge)),
        (3, Gen.ULong[0, 1535].Select(x => x * Large)),
        (4, Gen.ULong[0, GuestFrames - 1]));

    private static readonly Gen<ulong> GenCount = Gen.Frequency(
        (1, Gen.OneOfConst(Huge, Huge + Large + 3)),
        (3, Gen.OneOfConst(Large, 2 * Large, Large + 1)),
        (6, Gen.ULong[1, 40]));

    private static readonly Gen<Op> GenOp = Gen.Select(Gen.Int[0, 9], GenFrameStart, GenCount, GenFrameStart, GenAccess, (k, gfn, count, mfn, access) =>
        new Op(k < 5 ? OpKind.Map : k < 7 ? OpKind.Unmap : OpKind.Protect, gfn, count, mfn, access));

    [Fact]
    public void Random_edits_agree_with_a_dictionary_model()
    {
        GenOp.Array[1, 24].Sample(ops =>
        {
            using var memory = new MachineMemory(5UL << 30);
            using var ept = new EptTables(memory, Dom);
            var model = new Dictionary<ulong, (ulong Mfn, EptAccess Access)>();
            var probes = new List<ulong>();
            foreach (Op op in ops)
            {
                Apply(ept, model, op);
                foreach (ulong g in (ReadOnlySpan<ulong>)[op.Gfn - 1, op.Gfn, op.Gfn + 1, op.Gfn + op.Count - 1, op.Gfn + op.Count, op.Gfn + (op.Count / 2)])
                {
                    if (g < GuestFrames)
                    {
                        probes.Add(g);
                        Check(ept, model, g);
                    }
                }
            }

            var random = new Random(ops.Length);
            for (int i = 0; i < 200; i++)
            {
                Check(ept, model, (ulong)random.NextInt64((long)GuestFrames));
            }

            foreach (ulong g in probes)
            {
                Check(ept, model, g);
            }

            // Unmapping everything retires every table but the root.
            ept.Unmap(default, 2 * GuestFrames); // maps may run past GuestFrames
            Assert.Equal(1UL, ept.TableFrameCount);
            ept.ReleaseUnusedTableFrames();
            Assert.Equal(1UL, memory.FramesOwnedBy(Dom));
        }, iter: 60, print: ops => string.Join("; ", ops));
    }

    [Fact]
    public void Large_pages_are_used_exactly_when_everything_is_aligned()
    {
        Gen.Select(Gen.ULong[0, 2047], Gen.ULong[0, 2047], Gen.ULong[1, 3 * 512]).Sample((gfn, mfn, count) =>
        {
            using var memory = new MachineMemory(2UL << 30);
            using var ept = new EptTables(memory, Dom);
            ept.Map(new GuestFrameNumber(gfn).Address, new MachineFrameNumber(mfn), count, EptAccess.Read);
            for (ulong i = 0; i < count; i++)
            {
                ulong g = gfn + i;
                Assert.Equal(EptTranslationStatus.Success, ept.Translate(new GuestFrameNumber(g).Address, EptAccess.Read, out EptTranslation t, out _));
                Assert.Equal(mfn + i, t.Frame.Value);
                ulong page = g & ~(Large - 1);
                bool large = (gfn % Large) == (mfn % Large) && page >= gfn && page + Large <= gfn + count;
                Assert.Equal(large ? 2 : 1, t.PageLevel);
            }
        }, iter: 200);
    }

    internal static void Apply(EptTables ept, Dictionary<ulong, (ulong Mfn, EptAccess Access)> model, Op op)
    {
        GuestPhysicalAddress gpa = new GuestFrameNumber(op.Gfn).Address;
        switch (op.Kind)
        {
            case OpKind.Map:
                ept.Map(gpa, new MachineFrameNumber(op.Mfn), op.Count, op.Access);
                for (ulong i = 0; i < op.Count; i++)
                {
                    model[op.Gfn + i] = (op.Mfn + i, op.Access);
                }

                break;
            case OpKind.Unmap:
                ept.Unmap(gpa, op.Count);
                for (ulong i = 0; i < op.Count; i++)
                {
                    model.Remove(op.Gfn + i);
                }

                break;
            default:
                ept.Protect(gpa, op.Count, op.Access);
                for (ulong i = 0; i < op.Count; i++)
                {
                    if (model.TryGetValue(op.Gfn + i, out (ulong Mfn, EptAccess Access) m))
                    {
                        model[op.Gfn + i] = (m.Mfn, op.Access);
                    }
                }

                break;
        }
    }

    internal static void Check(EptTables ept, Dictionary<ulong, (ulong Mfn, EptAccess Access)> model, ulong gfn)
    {
        bool mapped = model.TryGetValue(gfn, out (ulong Mfn, EptAccess Access) m);
        Assert.Equal(mapped, ept.TryLookup(new GuestFrameNumber(gfn), out MachineFrameNumber looked, out EptAccess lookedAccess));
        if (mapped)
        {
            Assert.Equal(m.Mfn, looked.Value);
            Assert.Equal(m.Access, lookedAccess);
        }

        foreach ((EptAccess access, ulong bit) in (ReadOnlySpan<(EptAccess, ulong)>)[(EptAccess.Read, 1UL), (EptAccess.Write, 2UL), (EptAccess.Execute, 4UL)])
        {
            GuestPhysicalAddress gpa = new GuestFrameNumber(gfn).Address + 0x7F8;
            EptTranslationStatus status = ept.Translate(gpa, access, out EptTranslation t, out EptViolationQualification q);
            ulong rights = mapped ? (ulong)m.Access & 7 : 0;
            if ((rights & bit) != 0)
            {
                Assert.Equal(EptTranslationStatus.Success, status);
                Assert.Equal(m.Mfn, t.Frame.Value);
                Assert.Equal((m.Mfn << 12) + 0x7F8, t.MachineAddress);
                Assert.Equal((EptAccess)rights, t.Permissions);
            }
            else
            {
                Assert.Equal(EptTranslationStatus.Violation, status);
                Assert.Equal(bit | (rights << 3), q.Value);
            }
        }
    }
}
