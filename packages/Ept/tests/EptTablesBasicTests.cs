using VmmKit.Ept;

namespace VmmKit.Ept.Tests;

public sealed unsafe class EptTablesBasicTests
{
    private static readonly FrameOwner Dom1 = new(1);

    [Fact]
    public void Map_translate_unmap_4k()
    {
        using var memory = new MachineMemory(16UL << 20);
        using var ept = new EptTables(memory, Dom1);
        MachineFrameNumber frame = memory.AllocateFrame(Dom1);
        ept.Map(new GuestPhysicalAddress(0x1000), frame, 1, EptAccess.Read | EptAccess.Write);
        Assert.Equal(EptTranslationStatus.Success, ept.Translate(new GuestPhysicalAddress(0x1234), EptAccess.Write, out EptTranslation t, out _));
        Assert.Equal(frame.Address + 0x234, t.MachineAddress);
        Assert.Equal(frame, t.Frame);
        Assert.Equal(1, t.PageLevel);
        Assert.Equal(EptAccess.Read | EptAccess.Write, t.Permissions);
        Assert.Equal(EptMemoryType.WriteBack, t.MemoryType);
        Assert.Equal(4UL, ept.TableFrameCount);

        Assert.Equal(EptTranslationStatus.Violation, ept.Translate(new GuestPhysicalAddress(0x1234), EptAccess.Execute, out _, out EptViolationQualification q));
        Assert.Equal(EptViolationQualification.InstructionFetchBit | EptViolationQualification.ReadableBit | EptViolationQualification.WritableBit, q.Value);

        long generation = ept.Generation;
        ept.Unmap(new GuestPhysicalAddress(0x1000), 1);
        Assert.True(ept.Generation > generation);
        Assert.Equal(EptTranslationStatus.Violation, ept.Translate(new GuestPhysicalAddress(0x1234), EptAccess.Read, out _, out q));
        Assert.Equal(EptViolationQualification.DataReadBit, q.Value);
        Assert.Equal(1UL, ept.TableFrameCount); // empty tables are retired
    }

    [Fact]
    public void Large_pages_are_chosen_when_aligned()
    {
        using var memory = new MachineMemory(4UL << 30);
        using var ept = new EptTables(memory, Dom1);
        MachineFrameNumber gig = memory.AllocateContiguous(Dom1, 1UL << 18, 1UL << 18);
        ept.Map(new GuestPhysicalAddress(1UL << 30), gig, 1UL << 18, EptAccess.ReadWriteExecute);
        Assert.Equal(2UL, ept.TableFrameCount);
        Assert.Equal(EptTranslationStatus.Success, ept.Translate(new GuestPhysicalAddress((1UL << 30) + 0x12345678), EptAccess.Read, out EptTranslation t, out _));
        Assert.Equal(3, t.PageLevel);
        Assert.Equal(Page.HugePageSize, t.PageSize);
        Assert.Equal(gig.Address + 0x12345678, t.MachineAddress);

        // Protecting one 4K page in the middle splits 1G -> 2M -> 4K and keeps the rest.
        ept.Protect(new GuestPhysicalAddress((1UL << 30) + 0x200000 + 0x3000), 1, EptAccess.Read);
        Assert.Equal(4UL, ept.TableFrameCount);
        Assert.Equal(EptTranslationStatus.Violation, ept.Translate(new GuestPhysicalAddress((1UL << 30) + 0x203000), EptAccess.Write, out _, out _));
        Assert.Equal(EptTranslationStatus.Success, ept.Translate(new GuestPhysicalAddress((1UL << 30) + 0x204000), EptAccess.Write, out t, out _));
        Assert.Equal(1, t.PageLevel);
        Assert.Equal(gig.Address + 0x204000, t.MachineAddress);
        Assert.Equal(EptTranslationStatus.Success, ept.Translate(new GuestPhysicalAddress((1UL << 30) + 0x400000), EptAccess.Write, out t, out _));
        Assert.Equal(2, t.PageLevel);
    }

    [Fact]
    public void Several_EPTs_share_machine_memory_and_charge_their_owners()
    {
        using var memory = new MachineMemory(16UL << 20);
        var dom2 = new FrameOwner(2);
        using var first = new EptTables(memory, Dom1);
        using var second = new EptTables(memory, dom2, accessedDirtyEnabled: true);
        Assert.NotEqual(first.Pointer.Root, second.Pointer.Root);
        Assert.True(memory.TryGetOwner(second.Pointer.Root, out FrameOwner owner));
        Assert.Equal(dom2, owner);
        Assert.True(second.Pointer.AccessedDirtyEnabled);
        Assert.Equal(4, second.Pointer.PageWalkLength);
        Assert.Equal(EptMemoryType.WriteBack, second.Pointer.MemoryType);
        MachineFrameNumber a = memory.AllocateFrame(Dom1);
        MachineFrameNumber b = memory.AllocateFrame(dom2);
        first.Map(default, a, 1, EptAccess.Read);
        second.Map(default, b, 1, EptAccess.Read);
        Assert.Equal(EptTranslationStatus.Success, first.Translate(default, EptAccess.Read, out EptTranslation t1, out _));
        Assert.Equal(EptTranslationStatus.Success, second.Translate(default, EptAccess.Read, out EptTranslation t2, out _));
        Assert.Equal(a, t1.Frame);
        Assert.Equal(b, t2.Frame);
        Assert.Equal(4UL, memory.FramesOwnedBy(dom2) - 1); // root, PDPT, PD, PT + the data frame
        second.Dispose();
        Assert.Equal(1UL, memory.FramesOwnedBy(dom2));
    }

    [Fact]
    public void Bad_edits_are_host_programming_errors()
    {
        using var memory = new MachineMemory(1UL << 20);
        using var ept = new EptTables(memory, Dom1);
        Assert.Throws<ArgumentException>(() => ept.Map(new GuestPhysicalAddress(1), default, 1, EptAccess.Read));
        Assert.Throws<ArgumentException>(() => ept.Map(default, default, 1, EptAccess.Write));
        Assert.Throws<ArgumentOutOfRangeException>(() => ept.Map(default, new MachineFrameNumber(255), 2, EptAccess.Read));
        Assert.Throws<ArgumentOutOfRangeException>(() => ept.Map(new GuestPhysicalAddress(1UL << 48), default, 1, EptAccess.Read));
        Assert.Throws<ArgumentOutOfRangeException>(() => ept.Map(default, default, 1, EptAccess.Read, (EptMemoryType)2));
        Assert.Throws<ArgumentException>(() => ept.Protect(default, 1, EptAccess.Write | EptAccess.Execute));
        ept.Map(default, default, 0, EptAccess.Read);
        Assert.Equal(1UL, ept.TableFrameCount);
    }

    [Fact]
    public void Protect_none_keeps_the_frame_for_later()
    {
        using var memory = new MachineMemory(1UL << 20);
        using var ept = new EptTables(memory, Dom1);
        ept.Map(default, new MachineFrameNumber(9), 1, EptAccess.ReadWriteExecute, EptMemoryType.Uncacheable);
        ept.Protect(default, 1, EptAccess.None);
        Assert.Equal(EptTranslationStatus.Violation, ept.Translate(default, EptAccess.Read, out _, out EptViolationQualification q));
        Assert.Equal(EptViolationQualification.DataReadBit, q.Value); // not present to hardware
        Assert.True(ept.TryLookup(default, out MachineFrameNumber frame, out EptAccess access));
        Assert.Equal((new MachineFrameNumber(9), EptAccess.None), (frame, access));
        ept.Protect(default, 1, EptAccess.Execute);
        Assert.Equal(EptTranslationStatus.Success, ept.Translate(default, EptAccess.Execute, out EptTranslation t, out _));
        Assert.Equal(new MachineFrameNumber(9), t.Frame);
        Assert.Equal(EptMemoryType.Uncacheable, t.MemoryType);
    }
}
