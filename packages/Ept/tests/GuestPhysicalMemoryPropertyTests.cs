using CsCheck;
using VmmKit.Ept;

namespace VmmKit.Ept.Tests;

/// <summary>
/// Accesses through <see cref="GuestPhysicalMemory"/> interleaved with EPT edits: after an INVEPT a changed mapping is never
/// used stale; no access ever reaches a frame the domain does not own; dirty logging sees exactly the pages written.
/// </summary>
public sealed unsafe class GuestPhysicalMemoryPropertyTests
{
    private const int DataFrames = 24;
    private const ulong GuestPages = 48;

    internal enum Kind { Map, Unmap, Protect, Read, Write, InvalidateSingle, InvalidateContext, InvalidateAll }

    internal readonly record struct Step(Kind Kind, ulong Gfn, ulong Count, int FrameIndex, EptAccess Access);

    private static readonly Gen<Step> GenStep = Gen.Select(
        Gen.Frequency((3, Gen.Const(Kind.Map)), (1, Gen.Const(Kind.Unmap)), (2, Gen.Const(Kind.Protect)), (5, Gen.Const(Kind.Read)), (4, Gen.Const(Kind.Write)), (1, Gen.Const(Kind.InvalidateSingle)), (1, Gen.Const(Kind.InvalidateContext)), (1, Gen.Const(Kind.InvalidateAll))),
        Gen.ULong[0, GuestPages - 1],
        Gen.ULong[1, 4],
        Gen.Int[0, DataFrames - 4],
        EptModelPropertyTests.GenAccess,
        (k, gfn, count, frame, access) => new Step(k, gfn, count, frame, access));

    [Fact]
    public void After_invalidation_a_changed_mapping_is_never_used_stale_and_no_foreign_frame_is_reached()
    {
        GenStep.Array[1, 60].Sample(steps =>
        {
            using var memory = new MachineMemory(8UL << 20);
            var dom1 = new FrameOwner(1);
            var dom2 = new FrameOwner(2);
            MachineFrameNumber foreign = memory.AllocateContiguous(dom2, 16); // another domain's frames, never mapped here
            using var ept = new EptTables(memory, dom1, accessedDirtyEnabled: true);
            MachineFrameNumber data = memory.AllocateContiguous(dom1, DataFrames);
            for (int i = 0; i < DataFrames; i++)
            {
                BitConverter.TryWriteBytes(memory.GetFrame(data + (ulong)i), (data + (ulong)i).Value); // each frame starts with its own mfn
            }

            for (ulong i = 0; i < 16; i++)
            {
                BitConverter.TryWriteBytes(memory.GetFrame(foreign + i), ulong.MaxValue);
            }

            var gpm = new GuestPhysicalMemory(memory, ept.Pointer);
            var model = new Dictionary<ulong, (ulong Mfn, EptAccess Access)>();
            bool stale = false; // an edit happened since the last invalidation
            foreach (Step s in steps)
            {
                GuestPhysicalAddress gpa = new GuestFrameNumber(s.Gfn).Address;
                switch (s.Kind)
                {
                    case Kind.Map:
                    case Kind.Unmap:
                    case Kind.Protect:
                        var op = new EptModelPropertyTests.Op(s.Kind == Kind.Map ? EptModelPropertyTests.OpKind.Map : s.Kind == Kind.Unmap ? EptModelPropertyTests.OpKind.Unmap : EptModelPropertyTests.OpKind.Protect, s.Gfn, s.Count, (data + (ulong)s.FrameIndex).Value, s.Access);
                        EptModelPropertyTests.Apply(ept, model, op);
                        stale = true;
                        break;
                    case Kind.InvalidateSingle:
                        gpm.InvalidateSingleContext();
                        stale = false;
                        break;
                    case Kind.InvalidateContext:
                        GuestPhysicalMemory.InvalidateSingleContext(memory, ept.Pointer);
                        stale = false;
                        break;
                    case Kind.InvalidateAll:
                        GuestPhysicalMemory.InvalidateAllContexts(memory);
                        stale = false;
                        break;
                    case Kind.Read:
                    {
                        bool ok = gpm.TryRead(gpa, out ulong tag, out GuestMemoryFault fault);
                        if (ok)
                        {
                            Assert.True(tag >= data.Value && tag < data.Value + DataFrames, $"read reached a frame outside the domain: {tag:x}");
                        }

                        if (!stale)
                        {
                            bool allowed = model.TryGetValue(s.Gfn, out var m) && (m.Access & EptAccess.Read) != 0;
                            Assert.Equal(allowed, ok);
                            if (ok)
                            {
                                Assert.Equal(m.Mfn, tag);
                            }
                            else
                            {
                                Assert.Equal(gpa, fault.Address);
                                Assert.Equal(EptTranslationStatus.Violation, fault.Status);
                                Assert.True(fault.Qualification.WasRead);
                            }
                        }

                        break;
                    }

                    default:
                    {
                        bool ok = gpm.TryWrite(gpa + 64, 0x5555UL, out GuestMemoryFault fault);
                        if (!stale)
                        {
                            bool allowed = model.TryGetValue(s.Gfn, out var m) && (m.Access & EptAccess.Write) != 0;
                            Assert.Equal(allowed, ok);
                            if (!ok)
                            {
                                Assert.True(fault.Qualification.WasWrite);
                            }
                        }

                        break;
                    }
                }
            }

            for (ulong i = 0; i < 16; i++)
            {
                Assert.Equal(ulong.MaxValue, BitConverter.ToUInt64(memory.GetFrame(foreign + i))); // never written
                Assert.True(memory.GetFrame(foreign + i)[8..].IndexOfAnyExcept((byte)0) < 0);
            }
        }, iter: 300);
    }

    [Fact]
    public void Without_invalidation_the_cache_keeps_the_old_translation_like_a_TLB()
    {
        using var memory = new MachineMemory(8UL << 20);
        var dom = new FrameOwner(1);
        using var ept = new EptTables(memory, dom);
        MachineFrameNumber a = memory.AllocateFrame(dom);
        MachineFrameNumber b = memory.AllocateFrame(dom);
        memory.GetFrame(a)[0] = 0xA;
        memory.GetFrame(b)[0] = 0xB;
        ept.Map(default, a, 1, EptAccess.Read);
        var gpm = new GuestPhysicalMemory(memory, ept.Pointer);
        Assert.True(gpm.TryRead(default, out byte v));
        Assert.Equal(0xA, v);
        long generation = ept.Generation;
        ept.Map(default, b, 1, EptAccess.Read);
        Assert.NotEqual(generation, ept.Generation);
        Assert.True(gpm.TryRead(default, out v));
        Assert.Equal(0xA, v); // stale until INVEPT: the hypervisor's job, as on hardware
        gpm.InvalidateSingleContext();
        Assert.True(gpm.TryRead(default, out v));
        Assert.Equal(0xB, v);

        ept.Unmap(default, 1);
        GuestPhysicalMemory.InvalidateAllContexts(memory);
        Assert.False(gpm.TryRead(default, out v));

        // Single-context INVEPT by EPTP reaches every accessor of that EPT, and only those.
        using var other = new EptTables(memory, new FrameOwner(2));
        other.Map(default, b, 1, EptAccess.Read);
        ept.Map(default, a, 1, EptAccess.Read);
        var vcpu0 = new GuestPhysicalMemory(memory, ept.Pointer);
        var vcpu1 = new GuestPhysicalMemory(memory, ept.Pointer);
        var otherVcpu = new GuestPhysicalMemory(memory, other.Pointer);
        Assert.True(vcpu0.TryRead(default, out v) && v == 0xA);
        Assert.True(vcpu1.TryRead(default, out v) && v == 0xA);
        Assert.True(otherVcpu.TryRead(default, out v) && v == 0xB);
        ept.Map(default, b, 1, EptAccess.Read);
        other.Map(default, a, 1, EptAccess.Read);
        GuestPhysicalMemory.InvalidateSingleContext(memory, ept.Pointer);
        Assert.True(vcpu0.TryRead(default, out v) && v == 0xB);
        Assert.True(vcpu1.TryRead(default, out v) && v == 0xB);
        Assert.True(otherVcpu.TryRead(default, out v) && v == 0xB); // not invalidated: still the old translation
        GuestPhysicalMemory.InvalidateSingleContext(memory, other.Pointer);
        Assert.True(otherVcpu.TryRead(default, out v) && v == 0xA);
    }

    [Fact]
    public void Dirty_logging_sees_exactly_the_pages_written()
    {
        Gen.Select(Gen.ULong[0, 1023].Array[0, 40], Gen.ULong[0, 1023].Array[0, 40], Gen.Bool).Sample((first, second, viaCmpxchg) =>
        {
            using var memory = new MachineMemory(16UL << 20);
            var dom = new FrameOwner(3);
            using var ept = new EptTables(memory, dom, accessedDirtyEnabled: true);
            MachineFrameNumber ram = memory.AllocateContiguous(dom, 1024, 512);
            ept.Map(default, ram, 1024, EptAccess.ReadWriteExecute); // two 2 MiB pages
            var gpm = new GuestPhysicalMemory(memory, ept.Pointer);
            Assert.True(gpm.TryWrite(new GuestPhysicalAddress(0x5000), 1UL)); // before logging: not reported
            ept.StartDirtyLog();
            gpm.InvalidateSingleContext();
            Assert.Equal(EptTranslationStatus.Success, ept.Translate(default, EptAccess.Read, out EptTranslation t, out _));
            Assert.Equal(1, t.PageLevel); // large pages were split

            Span<ulong> bitmap = stackalloc ulong[16];
            foreach (ulong[] round in new[] { first, second })
            {
                foreach (ulong gfn in round)
                {
                    GuestPhysicalAddress gpa = new GuestFrameNumber(gfn).Address + (gfn % 4000);
                    Assert.True(gpm.TryRead(gpa, out ulong _)); // reads never dirty a page
                    if (viaCmpxchg)
                    {
                        Assert.True(gpm.TryCompareExchange64(gpa.AlignDown() + 8, 1, 0, out _, out _));
                    }
                    else
                    {
                        Assert.True(gpm.TryWrite(gpa, (byte)1));
                    }
                }

                for (ulong gfn = 0; gfn < 1024; gfn += 97)
                {
                    Assert.True(gpm.TryRead(new GuestFrameNumber(gfn).Address, out ulong _));
                }

                ulong count = ept.HarvestDirtyLog(bitmap, default, 1024);
                gpm.InvalidateSingleContext(); // INVEPT after clearing dirty flags, as on hardware
                var expected = new HashSet<ulong>(round);
                Assert.Equal((ulong)expected.Count, count);
                for (ulong gfn = 0; gfn < 1024; gfn++)
                {
                    Assert.Equal(expected.Contains(gfn), (bitmap[(int)(gfn / 64)] & (1UL << (int)(gfn % 64))) != 0);
                }
            }

            ept.StopDirtyLog();
            Assert.Throws<InvalidOperationException>(() => ept.HarvestDirtyLog(new ulong[16], default, 1024));
        }, iter: 40);
    }

    [Fact]
    public void Dirty_logging_needs_accessed_dirty_flags_and_maps_4k_while_running()
    {
        using var memory = new MachineMemory(16UL << 20);
        var dom = new FrameOwner(3);
        using (var plain = new EptTables(memory, dom))
        {
            Assert.Throws<InvalidOperationException>(plain.StartDirtyLog);
        }

        using var ept = new EptTables(memory, dom, accessedDirtyEnabled: true);
        ept.StartDirtyLog();
        Assert.True(ept.IsDirtyLogging);
        MachineFrameNumber ram = memory.AllocateContiguous(dom, 512, 512);
        ept.Map(default, ram, 512, EptAccess.Read | EptAccess.Write);
        Assert.Equal(EptTranslationStatus.Success, ept.Translate(new GuestPhysicalAddress(0x3000), EptAccess.Write, out EptTranslation t, out _));
        Assert.Equal(1, t.PageLevel);
        ulong[] bitmap = new ulong[8];
        Assert.Equal(1UL, ept.HarvestDirtyLog(bitmap, default, 512));
        Assert.Equal(1UL << 3, bitmap[0]);
        Assert.Throws<ArgumentException>(() => ept.HarvestDirtyLog(new ulong[7], default, 512));
    }
}
