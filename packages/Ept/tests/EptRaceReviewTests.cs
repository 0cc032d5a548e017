using System.Diagnostics;
using VmmKit.Ept;

namespace VmmKit.Ept.Tests;

/// <summary>
/// A review of walks racing with EPT edits on other threads (a guest's vCPUs against the hypervisor): dirty flags that a
/// walk sets while an edit rewrites the same entry (SDM Vol. 3C §29.3.5).
/// </summary>
public sealed unsafe class EptRaceReviewTests
{
    private static readonly FrameOwner Guest = new(1);

    [Fact]
    public void Setting_a_flag_fails_when_the_entry_changed_since_the_walk_read_it()
    {
        ulong seen = 0x1234_5000UL | 3;
        ulong slot = 0x1234_5000UL | 7; // execute given since the walk: the walk must be made again
        Assert.False(EptWalker.SetFlags(&slot, seen, EptEntry.AccessedBit | EptEntry.DirtyBit));
        Assert.Equal(0x1234_5000UL | 7, slot);
        slot = 0; // retired and zeroed
        Assert.False(EptWalker.SetFlags(&slot, seen, EptEntry.AccessedBit));
        Assert.Equal(0UL, slot);
        slot = seen | EptEntry.AccessedBit | EptEntry.DirtyBit; // flags already there: nothing to do, the walk stands
        Assert.True(EptWalker.SetFlags(&slot, seen, EptEntry.AccessedBit | EptEntry.DirtyBit));
        slot = seen; // a harvest cleared D since the walk read it
        Assert.True(EptWalker.SetFlags(&slot, seen | EptEntry.DirtyBit, EptEntry.AccessedBit | EptEntry.DirtyBit));
        Assert.Equal(seen | EptEntry.AccessedBit | EptEntry.DirtyBit, slot);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void A_protect_or_a_remap_of_the_same_frame_keeps_the_dirty_flag_a_write_set(bool remap)
    {
        using var memory = new MachineMemory(16UL << 20);
        using var ept = new EptTables(memory, Guest, accessedDirtyEnabled: true);
        MachineFrameNumber frame = memory.AllocateFrame(Guest);
        ept.StartDirtyLog();
        ept.Map(default, frame, 1, EptAccess.Read | EptAccess.Write);
        Assert.Equal(EptTranslationStatus.Success, ept.Translate(default, EptAccess.Write, out _, out _));
        if (remap)
        {
            ept.Map(default, frame, 1, EptAccess.ReadWriteExecute); // Map used to change rights: the frame stays
        }
        else
        {
            ept.Protect(default, 1, EptAccess.ReadWriteExecute);
        }

        var bitmap = new ulong[1];
        Assert.Equal(1UL, ept.HarvestDirtyLog(bitmap, default, 1));
        long generation = ept.Generation;
        ept.Map(default, frame, 1, EptAccess.ReadWriteExecute); // the same mapping again: nothing changes
        Assert.Equal(generation, ept.Generation);
    }

    /// <summary>
    /// While dirty logging runs, the hypervisor changes the rights of pages the guest keeps writing, without taking the
    /// write right away (here only execute changes). Every write the guest made since a harvest must be in the next one:
    /// a walk's dirty flag must survive a concurrent rewrite of the entry, and a walk whose flag could not be set in the
    /// entry it read must not write through it unrecorded.
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Writes_racing_with_protects_that_keep_them_allowed_are_all_in_the_next_harvest(bool remap)
    {
        const ulong pages = 512;
        using var memory = new MachineMemory(64UL << 20);
        using var ept = new EptTables(memory, Guest, accessedDirtyEnabled: true);
        MachineFrameNumber data = memory.AllocateContiguous(Guest, pages);
        ept.StartDirtyLog();
        ept.Map(default, data, pages, EptAccess.Read | EptAccess.Write);
        var vcpu = new GuestPhysicalMemory(memory, ept.Pointer);
        bool stop = false;
        var editor = new Thread(() =>
        {
            while (!Volatile.Read(ref stop))
            {
                if (remap)
                {
                    ept.Map(default, data, pages, EptAccess.ReadWriteExecute); // the same frames: only the rights change
                    ept.Map(default, data, pages, EptAccess.Read | EptAccess.Write);
                }
                else
                {
                    ept.Protect(default, pages, EptAccess.ReadWriteExecute); // the guest may still write: only execute changes
                    ept.Protect(default, pages, EptAccess.Read | EptAccess.Write);
                }
            }
        });
        editor.Start();
        var bitmap = new ulong[pages / 64];
        string? failure = null;
        int rounds = 0;
        var clock = Stopwatch.StartNew();
        try
        {
            for (; failure is null && rounds < 2000 && clock.ElapsedMilliseconds < 2000; rounds++)
            {
                for (ulong gfn = 0; gfn < pages; gfn++)
                {
                    if (!vcpu.TryWrite(new GuestFrameNumber(gfn).Address, (ulong)rounds, out GuestMemoryFault fault))
                    {
                        failure = $"round {rounds}: the write to gfn 0x{gfn:x} faulted: {fault}";
                    }
                }

                ept.HarvestDirtyLog(bitmap, default, pages);
                GuestPhysicalMemory.InvalidateSingleContext(memory, ept.Pointer); // the README's rule: invalidate after a harvest
                for (ulong gfn = 0; gfn < pages && failure is null; gfn++)
                {
                    if ((bitmap[gfn / 64] & (1UL << (int)(gfn % 64))) == 0)
                    {
                        failure = $"round {rounds}: the guest's write to gfn 0x{gfn:x} is missing from the harvest";
                    }
                }
            }
        }
        finally
        {
            Volatile.Write(ref stop, true);
            editor.Join();
        }

        Assert.Null(failure);
        Assert.True(rounds > 0);
    }

    /// <summary>
    /// With A/D flags on, walks race with every way an entry is replaced: a page table by a 2 MiB page (its table
    /// retired), a 2 MiB page split by a partial protect or by the start of dirty logging, 4 KiB pages remapped and
    /// unmapped. Every gfn is only ever mapped to the same frame, so a successful walk must land exactly there; a walk
    /// that restarts because an entry changed must end (the editor stops in time).
    /// </summary>
    [Fact]
    public void Walks_racing_with_splits_and_replacements_translate_each_gfn_only_to_its_frame()
    {
        const ulong regions = 4;
        using var memory = new MachineMemory(64UL << 20);
        using var ept = new EptTables(memory, Guest, accessedDirtyEnabled: true);
        MachineFrameNumber data = memory.AllocateContiguous(Guest, regions * 512, 512);
        var readers = new RacingReaders(2, random =>
        {
            ulong gfn = (ulong)random.Next((int)(regions * 512));
            EptAccess access = random.Next(2) == 0 ? EptAccess.Read : EptAccess.Write;
            return EptWalker.Translate(memory, ept.Pointer, new GuestFrameNumber(gfn).Address, access, default, out EptTranslation t, out _) == EptTranslationStatus.Success
                && t.Frame != data + gfn
                ? $"a walk of gfn 0x{gfn:x} reached {t.Frame}, not {data + gfn}"
                : null;
        });
        var editor = new Random(5);
        var clock = Stopwatch.StartNew();
        try
        {
            for (int i = 0; readers.Failure is null && i < 200_000 && clock.ElapsedMilliseconds < 1500; i++)
            {
                ulong region = (ulong)editor.Next((int)regions) * 512;
                var at = new GuestFrameNumber(region).Address;
                ulong within = (ulong)editor.Next(508);
                switch (editor.Next(6))
                {
                    case 0:
                        ept.Map(at, data + region, 512, EptAccess.Read | EptAccess.Write); // a 2 MiB page, or 4 KiB ones while logging
                        break;
                    case 1:
                        ept.Map(new GuestFrameNumber(region + within).Address, data + region + within, 4, EptAccess.Read | EptAccess.Write);
                        break;
                    case 2:
                        ept.Protect(new GuestFrameNumber(region + within).Address, 4, editor.Next(2) == 0 ? EptAccess.Read : EptAccess.ReadWriteExecute);
                        break;
                    case 3:
                        ept.Unmap(new GuestFrameNumber(region + within).Address, editor.Next(2) == 0 ? 4UL : 512 - within);
                        break;
                    case 4:
                        ept.StartDirtyLog(); // splits every 2 MiB page while the walks run
                        break;
                    default:
                        ept.StopDirtyLog();
                        break;
                }

                GuestPhysicalMemory.InvalidateSingleContext(memory, ept.Pointer);
            }
        }
        finally
        {
            readers.Dispose();
        }

        Assert.Null(readers.Failure);
        Assert.True(readers.Steps > 0);
    }

    /// <summary>
    /// Retired tables serve only their own level. A map/unmap/invalidate loop that needs tables of different levels in
    /// turn (4 KiB pages, 2 MiB pages, 1 GiB pages, in regions far apart) still runs in a bounded number of frames, all
    /// charged to the owner and within its limit.
    /// </summary>
    [Fact]
    public void Per_level_pools_stay_bounded_and_within_the_owner_limit()
    {
        using var memory = new MachineMemory(1UL << 31);
        using var ept = new EptTables(memory, Guest);
        MachineFrameNumber data = memory.AllocateContiguous(Guest, 1UL << 18, 1UL << 18); // 1 GiB, aligned for every page size
        ulong held = memory.FramesOwnedBy(Guest);
        memory.SetLimit(Guest, held + 16);
        var random = new Random(3);
        for (int i = 0; i < 20_000; i++)
        {
            var at = new GuestFrameNumber((ulong)random.Next(1, 64) << 27).Address; // its own PML4 entry each
            ulong count = random.Next(3) switch { 0 => 1UL, 1 => 512UL, _ => 1UL << 18 };
            ept.Map(at, data, count, EptAccess.Read | EptAccess.Write);
            ept.Unmap(at, count);
            GuestPhysicalMemory.InvalidateSingleContext(memory, ept.Pointer);
            Assert.True(memory.FramesOwnedBy(Guest) <= held + 16);
        }

        Assert.Equal(1UL, ept.TableFrameCount); // the root; the others wait in their pools
        Assert.True(memory.FramesOwnedBy(Guest) - held <= 1 + 3, $"{memory.FramesOwnedBy(Guest) - held} table frames held");
    }
}
