namespace VmmKit.Ept.Tests;

/// <summary>
/// <see cref="EptTables.MarkDirty"/>: a write the hypervisor made to a guest frame itself (Xen's
/// <c>paging_mark_dirty</c>) shows in the next harvest, whatever the frame's rights, and only while logging.
/// </summary>
public sealed class MarkDirtyTests : IDisposable
{
    private static readonly FrameOwner Dom1 = new(1);
    private readonly MachineMemory _memory = new(16UL << 20);
    private readonly EptTables _ept;

    public MarkDirtyTests()
    {
        _ept = new EptTables(_memory, Dom1, accessedDirtyEnabled: true);
        _ept.Map(default, _memory.AllocateContiguous(Dom1, 16), 16, EptAccess.ReadWriteExecute);
    }

    public void Dispose()
    {
        _ept.Dispose();
        _memory.Dispose();
    }

    private ulong[] Harvest()
    {
        var bitmap = new ulong[1];
        _ept.HarvestDirtyLog(bitmap, default, 64);
        return [.. Enumerable.Range(0, 64).Where(i => (bitmap[0] & (1UL << i)) != 0).Select(i => (ulong)i)];
    }

    [Fact]
    public void A_marked_frame_is_reported_once_by_the_next_harvest()
    {
        _ept.StartDirtyLog();

        Assert.True(_ept.MarkDirty(new GuestFrameNumber(3)));
        Assert.True(_ept.MarkDirty(new GuestFrameNumber(3)));
        Assert.True(_ept.MarkDirty(new GuestFrameNumber(9)));

        Assert.Equal([3UL, 9UL], Harvest());
        Assert.Empty(Harvest());
    }

    [Fact]
    public void A_frame_mapped_read_only_or_without_rights_is_marked_too()
    {
        _ept.Protect(new GuestFrameNumber(4).Address, 1, EptAccess.Read);
        _ept.Protect(new GuestFrameNumber(5).Address, 1, EptAccess.None);
        _ept.StartDirtyLog();

        Assert.True(_ept.MarkDirty(new GuestFrameNumber(4)));
        Assert.True(_ept.MarkDirty(new GuestFrameNumber(5)));

        Assert.Equal([4UL, 5UL], Harvest());
        Assert.True(_ept.TryLookup(new GuestFrameNumber(5), out _, out EptAccess access));
        Assert.Equal(EptAccess.None, access); // the rights are left as they were
    }

    [Fact]
    public void Nothing_is_marked_without_logging_for_an_unmapped_frame_or_once_disposed()
    {
        Assert.False(_ept.MarkDirty(new GuestFrameNumber(3)));
        _ept.StartDirtyLog();
        Assert.Empty(Harvest());

        Assert.False(_ept.MarkDirty(new GuestFrameNumber(40)));
        Assert.False(_ept.MarkDirty(new GuestFrameNumber(1UL << 40)));
        Assert.Empty(Harvest());

        _ept.StopDirtyLog();
        Assert.False(_ept.MarkDirty(new GuestFrameNumber(3)));
        _ept.StartDirtyLog();
        Assert.Empty(Harvest());

        _ept.Dispose();
        Assert.False(_ept.MarkDirty(new GuestFrameNumber(3)));
    }

    [Fact]
    public void Marking_changes_no_generation_and_a_guest_write_still_sets_the_flag_as_before()
    {
        _ept.StartDirtyLog();
        long generation = _ept.Generation;

        Assert.True(_ept.MarkDirty(new GuestFrameNumber(2)));
        Assert.Equal(generation, _ept.Generation);
        Assert.Equal(EptTranslationStatus.Success, _ept.Translate(new GuestFrameNumber(6).Address, EptAccess.Write, out _, out _));

        Assert.Equal([2UL, 6UL], Harvest());
    }
}
