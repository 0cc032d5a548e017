using VmmKit.Ept;

namespace VmmKit.Ept.Tests;

/// <summary>
/// A retired table frame comes back only as a table of the level it had. An INVEPT here does not wait for walks that
/// other threads have in flight, so such a walk can still read a table after it was retired, the invalidation made and
/// the frame reused. Reused at another level, its entries mean something else: a page directory's pointers to page
/// tables read as 4 KiB leaves would hand the guest its own EPT tables, writable.
/// </summary>
public sealed unsafe class TableLevelReuseTests
{
    private static readonly FrameOwner Guest = new(1);

    [Fact]
    public void A_retired_table_comes_back_only_as_a_table_of_its_own_level()
    {
        using var memory = new MachineMemory(16UL << 20);
        using var ept = new EptTables(memory, Guest);
        MachineFrameNumber frame = memory.AllocateFrame(Guest);
        const ulong first = 0x40000UL; // PML4 entry 0
        const ulong second = 0x80000000UL; // PML4 entry 16: three new tables
        ept.Map(new GuestFrameNumber(first).Address, frame, 1, EptAccess.Read | EptAccess.Write);
        ulong[] before = Path(memory, ept, first);
        ept.Unmap(new GuestFrameNumber(first).Address, 1); // retires the page table, then the directory, then the PDPT
        GuestPhysicalMemory.InvalidateSingleContext(memory, ept.Pointer);
        ept.Map(new GuestFrameNumber(second).Address, frame, 1, EptAccess.Read | EptAccess.Write);
        ulong[] after = Path(memory, ept, second);
        for (int level = 1; level <= 3; level++)
        {
            Assert.Equal(before[level], after[level]); // reused, and at the same level
        }
    }

    [Fact]
    public void Walks_racing_with_table_reuse_translate_only_to_frames_the_EPT_maps()
    {
        using var memory = new MachineMemory(64UL << 20);
        using var ept = new EptTables(memory, Guest);
        MachineFrameNumber data = memory.AllocateContiguous(Guest, 512, 512);
        using var readers = new RacingReaders(2, random =>
        {
            ulong gfn = ((ulong)random.Next(8) << 27) + (ulong)random.Next(4);
            return EptWalker.Translate(memory, ept.Pointer, new GuestFrameNumber(gfn).Address, EptAccess.Write, default, out EptTranslation t, out _) == EptTranslationStatus.Success
                && (t.Frame.Value < data.Value || t.Frame.Value >= data.Value + 512)
                ? $"a walk of gfn 0x{gfn:x} reached {t.Frame}, which the EPT never mapped"
                : null;
        });

        // Map and unmap in a few 1 GiB regions far apart (each its own PML4 entry), so that every unmap empties and
        // retires a table of each level below the root; in 2 MiB runs too, so that page directories hold large pages.
        var editor = new Random(11);
        for (int i = 0; i < 1_000_000 && readers.Failure is null; i++)
        {
            var at = new GuestFrameNumber((ulong)editor.Next(8) << 27).Address;
            ulong count = editor.Next(4) == 0 ? 512UL : 4UL;
            ept.Map(at, data + (count == 512 ? 0 : (ulong)editor.Next(508)), count, EptAccess.Read | EptAccess.Write);
            ept.Unmap(at, count);
            GuestPhysicalMemory.InvalidateSingleContext(memory, ept.Pointer);
        }

        readers.Dispose();
        Assert.Null(readers.Failure);
        Assert.True(readers.Steps > 0);
    }

    // The table frames on gfn's path, by level (4: the root).
    private static ulong[] Path(MachineMemory memory, EptTables ept, ulong gfn)
    {
        var tables = new ulong[5];
        tables[4] = ept.Pointer.Root.Address;
        for (int level = 4; level > 1; level--)
        {
            ulong* table = (ulong*)memory.GetFramePointer(new MachineFrameNumber(tables[level] >> Page.PageShift));
            tables[level - 1] = table[(gfn >> (9 * (level - 1))) & 511] & EptEntry.AddressMask;
        }

        return tables;
    }
}
