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
}
