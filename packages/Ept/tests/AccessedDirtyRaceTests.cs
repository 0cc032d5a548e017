using VmmKit.Ept;

namespace VmmKit.Ept.Tests;

/// <summary>
/// Accessed and dirty flags set by a walk that races with an edit (SDM Vol. 3C §29.3.5). A walk sets the flags in the
/// entries it used; if another thread changed such an entry meanwhile (unmapped it, or retired and zeroed its table),
/// the flag must not land in whatever now occupies the slot. Set in a zeroed slot of a retired table, bit 8 alone
/// makes an entry that is not present but not zero either: once the table is reused at level 2 to 4, an edit takes it
/// for a table at machine address 0 and writes there.
/// </summary>
public sealed unsafe class AccessedDirtyRaceTests
{
    private static readonly ulong Flags = EptEntry.AccessedBit | EptEntry.DirtyBit;

    [Fact]
    public void A_flag_is_not_set_in_a_slot_zeroed_since_the_walk_read_it()
    {
        ulong slot = 0; // the entry was 0x...507 when the walk read it, then its table was retired and zeroed
        EptWalker.SetFlags(&slot, 0x1234_5000UL | 7, EptEntry.AccessedBit);
        Assert.Equal(0UL, slot);
        EptWalker.SetFlags(&slot, 0x1234_5000UL | 7, Flags);
        Assert.Equal(0UL, slot);
    }

    [Fact]
    public void A_flag_is_not_set_in_an_entry_that_now_maps_another_frame_or_other_rights()
    {
        ulong seen = 0x1234_5000UL | 7;
        ulong slot = 0x9999_9000UL | 7; // remapped since the walk
        EptWalker.SetFlags(&slot, seen, Flags);
        Assert.Equal(0x9999_9000UL | 7, slot);
        slot = 0x1234_5000UL | 1; // made read-only since the walk
        EptWalker.SetFlags(&slot, seen, Flags);
        Assert.Equal(0x1234_5000UL | 1, slot);
    }

    [Fact]
    public void Flags_are_set_in_the_entry_the_walk_used_even_if_another_walk_set_one_meanwhile()
    {
        ulong seen = 0x1234_5000UL | 7;
        ulong slot = seen | EptEntry.AccessedBit; // another processor's walk set A first
        EptWalker.SetFlags(&slot, seen, Flags);
        Assert.Equal(seen | Flags, slot);
        slot = seen | EptEntry.DirtyBit; // a harvest has not cleared D yet; A still to set
        EptWalker.SetFlags(&slot, seen, EptEntry.AccessedBit);
        Assert.Equal(seen | Flags, slot);
        slot = seen;
        EptWalker.SetFlags(&slot, seen | EptEntry.AccessedBit, EptEntry.DirtyBit); // the walk read A set, a harvest cleared it since
        Assert.Equal(seen | EptEntry.DirtyBit, slot);
    }

    [Fact]
    public void Writes_racing_with_unmaps_never_touch_a_frame_outside_the_domain()
    {
        using var memory = new MachineMemory(64UL << 20);
        var victim = new FrameOwner(2);
        var guest = new FrameOwner(1);
        MachineFrameNumber[] victims = [.. Enumerable.Range(0, 16).Select(_ => memory.AllocateFrame(victim))];
        Assert.Equal(0UL, victims[0].Value); // machine frame 0 is the victim's: where a stray flag would send an edit
        var ept = new EptTables(memory, guest, accessedDirtyEnabled: true);
        MachineFrameNumber data = memory.AllocateContiguous(guest, 512, 512);
        using var readers = new RacingReaders(2, random =>
        {
            // Frames in a few 2 MiB regions far apart, so that unmaps empty and retire tables of every level.
            ulong gfn = ((ulong)random.Next(8) << 27) + (ulong)random.Next(4);
            EptWalker.Translate(memory, ept.Pointer, new GuestFrameNumber(gfn).Address, EptAccess.Write, default, out _, out _);
            return null;
        });

        var editor = new Random(7);
        for (int i = 0; i < 100_000; i++)
        {
            ulong region = (ulong)editor.Next(8) << 27;
            ept.Map(new GuestFrameNumber(region).Address, data + (ulong)editor.Next(512 - 4), 4, EptAccess.Read | EptAccess.Write);
            ept.Unmap(new GuestFrameNumber(region).Address, 4);
            GuestPhysicalMemory.InvalidateSingleContext(memory, ept.Pointer); // retired tables may now be reused
        }

        readers.Dispose();
        Assert.True(readers.Steps > 0);
        Assert.Null(Record.Exception(ept.Dispose)); // frees every table frame the EPT holds, retired ones included
        foreach (MachineFrameNumber frame in victims)
        {
            Assert.True(memory.TryGetOwner(frame, out FrameOwner owner) && owner == victim, $"{frame} left its owner");
            Assert.True(new Span<byte>(memory.GetFramePointer(frame), 4096).IndexOfAnyExcept((byte)0) < 0, $"{frame} was written");
        }
    }
}
