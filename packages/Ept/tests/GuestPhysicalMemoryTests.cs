using VmmKit.Ept;

namespace VmmKit.Ept.Tests;

public sealed unsafe class GuestPhysicalMemoryTests
{
    private static readonly FrameOwner Dom = new(1);

    private static (MachineMemory Memory, EptTables Ept, MachineFrameNumber Ram, GuestPhysicalMemory Gpm) Setup(ulong pages, EptAccess access = EptAccess.ReadWriteExecute)
    {
        var memory = new MachineMemory(16UL << 20);
        var ept = new EptTables(memory, Dom);
        MachineFrameNumber ram = memory.AllocateContiguous(Dom, pages);
        ept.Map(default, ram, pages, access);
        return (memory, ept, ram, new GuestPhysicalMemory(memory, ept.Pointer));
    }

    [Fact]
    public void Copy_handles_overlap_in_both_directions_across_pages()
    {
        (MachineMemory memory, EptTables ept, _, GuestPhysicalMemory gpm) = Setup(8);
        using (memory)
        using (ept)
        {
            byte[] pattern = new byte[3 * 4096];
            new Random(1).NextBytes(pattern);
            Assert.True(gpm.TryWrite(new GuestPhysicalAddress(100), pattern, out _));

            Assert.True(gpm.TryCopy(new GuestPhysicalAddress(100 + 5000), new GuestPhysicalAddress(100), (ulong)pattern.Length, out _));
            byte[] back = new byte[pattern.Length];
            Assert.True(gpm.TryRead(new GuestPhysicalAddress(100 + 5000), back, out _));
            Assert.Equal(pattern, back);

            Assert.True(gpm.TryCopy(new GuestPhysicalAddress(7), new GuestPhysicalAddress(100 + 5000), (ulong)pattern.Length, out _));
            Assert.True(gpm.TryRead(new GuestPhysicalAddress(7), back, out _));
            Assert.Equal(pattern, back);

            Assert.False(gpm.TryCopy(new GuestPhysicalAddress(0x7000), new GuestPhysicalAddress(0), 0x2000, out GuestMemoryFault fault));
            Assert.Equal(new GuestPhysicalAddress(0x8000), fault.Address);
            Assert.True(fault.Qualification.WasWrite);
            Assert.True(gpm.TryCopy(default, default, 0, out _));
        }
    }

    [Fact]
    public void TranslateToHost_is_the_byte_a_read_reaches_within_one_page_with_the_access()
    {
        (MachineMemory memory, EptTables ept, MachineFrameNumber ram, GuestPhysicalMemory gpm) = Setup(2, EptAccess.Read);
        using (memory)
        using (ept)
        {
            byte* p = gpm.TranslateToHost(new GuestPhysicalAddress(0x1234), 16, EptAccess.Read);
            Assert.True(p == memory.GetFramePointer(new MachineFrameNumber(ram.Value + 1)) + 0x234);
            Assert.True(gpm.TranslateToHost(new GuestPhysicalAddress(0x1FF0), 16, EptAccess.Read) != null);
            Assert.True(gpm.TranslateToHost(new GuestPhysicalAddress(0x1234), 16, EptAccess.Write) == null); // read-only
            Assert.True(gpm.TranslateToHost(new GuestPhysicalAddress(0x0FF8), 16, EptAccess.Read) == null);  // two pages
            Assert.True(gpm.TranslateToHost(new GuestPhysicalAddress(0x2000), 1, EptAccess.Read) == null);   // not mapped
            Assert.True(gpm.TranslateToHost(default, 0, EptAccess.Read) == null);
            Assert.True(gpm.TranslateToHost(default, 4097, EptAccess.Read) == null);
            Assert.True(gpm.TranslateToHost(default, int.MinValue, EptAccess.Read) == null);
            Assert.True(gpm.TranslateToHost(default, 4096, EptAccess.Read) != null);
        }
    }

    [Fact]
    public void Permissions_are_enforced_per_access_kind()
    {
        (MachineMemory memory, EptTables ept, _, GuestPhysicalMemory gpm) = Setup(2, EptAccess.Read);
        using (memory)
        using (ept)
        {
            Assert.True(gpm.TryRead(new GuestPhysicalAddress(8), out ulong _));
            Assert.False(gpm.TryWrite(new GuestPhysicalAddress(8), 1UL, out GuestMemoryFault fault));
            Assert.Equal(EptViolationQualification.DataWriteBit | EptViolationQualification.ReadableBit, fault.Qualification.Value);
            Assert.False(gpm.TryCompareExchange64(new GuestPhysicalAddress(8), 1, 0, out _, out fault));
            Assert.Equal(0x3UL | 0x8, fault.Qualification.Value);
            Assert.False(gpm.TryGetHostPage(default, EptAccess.Execute, out byte* page, out EptViolationQualification q));
            Assert.True(page == null);
            Assert.Equal(0x4UL | 0x8, q.Value);
            Assert.True(gpm.TryGetHostPage(new GuestPhysicalAddress(0x1FFF), EptAccess.Read, out page, out q));
            Assert.True(page == memory.GetFramePointer(new MachineFrameNumber(ept.Pointer.Root.Value)) || page != null);

            EptViolationQualification linear = EptViolationQualification.ForLinearAddress(true, userMode: true);
            Assert.False(gpm.TryGetHostPage(default, EptAccess.Write, out page, out q, linear));
            Assert.Equal(0x2UL | 0x8 | 0x180 | 0x200, q.Value);
        }
    }

    [Fact]
    public void Unaligned_compare_exchange_spans_pages_and_checks_both_first()
    {
        (MachineMemory memory, EptTables ept, MachineFrameNumber ram, GuestPhysicalMemory gpm) = Setup(2);
        using (memory)
        using (ept)
        {
            var gpa = new GuestPhysicalAddress(0xFFE);
            Assert.True(gpm.TryCompareExchange32(gpa, 0xAABBCCDD, 0, out uint original, out _));
            Assert.Equal(0u, original);
            Assert.Equal(0xCCDDu, BitConverter.ToUInt16(memory.GetFrame(ram)[0xFFE..]));
            Assert.Equal(0xAABBu, BitConverter.ToUInt16(memory.GetFrame(ram + 1)));
            Assert.True(gpm.TryCompareExchange32(gpa, 1, 0, out original, out _));
            Assert.Equal(0xAABBCCDDu, original); // comparison failed: unchanged
            Assert.True(gpm.TryRead(gpa, out uint now));
            Assert.Equal(0xAABBCCDDu, now);

            Assert.True(gpm.TryCompareExchange64(new GuestPhysicalAddress(0x1FFC), 5, 0, out ulong o64, out GuestMemoryFault fault) is false);
            Assert.Equal(new GuestPhysicalAddress(0x2003), fault.Address);
            Assert.Equal(0u, BitConverter.ToUInt32(memory.GetFrame(ram + 1)[0xFFC..])); // nothing written
            Assert.True(gpm.TryCompareExchange64(new GuestPhysicalAddress(0x1000), 5, 0, out o64, out _));
            Assert.Equal(0xAABBUL, o64); // the upper half of the earlier 32-bit operand
            Assert.True(gpm.TryRead(new GuestPhysicalAddress(0x1000), out ulong stored));
            Assert.Equal(0xAABBUL, stored); // comparison failed, nothing stored
        }
    }

    [Fact]
    public void Structs_crossing_pages_and_the_top_of_the_address_space_fail_cleanly()
    {
        (MachineMemory memory, EptTables ept, _, GuestPhysicalMemory gpm) = Setup(1);
        using (memory)
        using (ept)
        {
            Assert.False(gpm.TryRead(new GuestPhysicalAddress(0xFFC), out ulong v, out GuestMemoryFault fault));
            Assert.Equal(0UL, v);
            Assert.Equal(new GuestPhysicalAddress(0x1000), fault.Address);
            Assert.False(gpm.TryWrite(new GuestPhysicalAddress(ulong.MaxValue - 3), 1UL, out fault));
            Assert.False(gpm.TryRead(new GuestPhysicalAddress(ulong.MaxValue), new byte[100], out fault));
            Assert.Equal(EptTranslationStatus.Violation, fault.Status);
            Assert.False(gpm.TryCopy(new GuestPhysicalAddress(ulong.MaxValue - 10), default, 100, out fault));
        }
    }

    [Fact]
    public void A_leaf_naming_memory_outside_the_machine_is_never_followed()
    {
        using var raw = new RawEpt();
        raw.Set(1, (raw.Memory.FrameCount << 12) | 0x7 | (6 << 3));
        var gpm = new GuestPhysicalMemory(raw.Memory, raw.Pointer());
        Assert.False(gpm.TryRead(new GuestPhysicalAddress(0), out ulong _, out GuestMemoryFault fault));
        Assert.Equal(EptTranslationStatus.Misconfiguration, fault.Status);

        raw.Set(1, raw.Data.Address | 0x2 | (6 << 3)); // write without read
        gpm.InvalidateSingleContext();
        Assert.False(gpm.TryWrite(new GuestPhysicalAddress(0), 1UL, out fault));
        Assert.Equal(EptTranslationStatus.Misconfiguration, fault.Status);
        Assert.Equal(0UL, fault.Qualification.Value);
    }

    [Fact]
    public void Accessed_dirty_cache_walks_again_for_the_first_write()
    {
        using var memory = new MachineMemory(16UL << 20);
        using var ept = new EptTables(memory, Dom, accessedDirtyEnabled: true);
        ept.Map(default, memory.AllocateFrame(Dom), 1, EptAccess.Read | EptAccess.Write);
        var gpm = new GuestPhysicalMemory(memory, ept.Pointer);
        ulong* pte = null;
        Assert.True(gpm.TryRead(default, out int _));
        Assert.True(ept.TryLookup(default, out _, out _));
        // Find the PTE by walking with the raw walker's view: translation level 1, check flags via a second translate-free lookup.
        Assert.True(gpm.TryWrite(default, 1));
        ulong[] bitmap = new ulong[1];
        ept.StartDirtyLog(); // clears D
        gpm.InvalidateSingleContext();
        Assert.True(gpm.TryRead(default, out int _));
        Assert.Equal(0UL, ept.HarvestDirtyLog(bitmap, default, 1)); // a cached read does not allow an unrecorded write
        Assert.True(gpm.TryWrite(default, 2));
        Assert.Equal(1UL, ept.HarvestDirtyLog(bitmap, default, 1));
        Assert.True(pte == null);
    }
}
