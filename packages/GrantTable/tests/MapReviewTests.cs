namespace VmmKit.GrantTable.Tests;

/// <summary>
/// Rules of Xen 4.17's map and unmap paths (grant_table.c) that a review of GrantTableHost.Map.cs held the package to
/// and no other test names. Each test cites the Xen function (and advisory) its rule comes from.
/// </summary>
public sealed unsafe class MapReviewTests : IDisposable
{
    private const ulong Slot = 0x1000;
    private const ushort Busy = (ushort)(GrantEntryFlags.Reading | GrantEntryFlags.Writing);
    private readonly TestMachine _m = new();
    private readonly TestDomain _front;
    private readonly TestDomain _back;
    private readonly InProcessGrantShare _share;

    public MapReviewTests()
    {
        _front = _m.AddDomain(1);
        _back = _m.AddDomain(2);
        _share = new InProcessGrantShare(_m.Host, _front.Grant);
    }

    public void Dispose() => _m.Dispose();

    private uint Grant(int gfn, bool readOnly = false, ushort to = 2)
    {
        Assert.True(_share.TryGrantForeignAccess(to, (ulong)gfn, readOnly, out uint gref));
        return gref;
    }

    private short Map(uint gref, ulong gfn, bool readOnly = false) => _m.MapGrant(_back, 1, gref, gfn, readOnly).Status;

    // GTF_reading/GTF_writing of a grant where the guest sees them: the v1 header, or the v2 status entry.
    private ushort BusyFlags(uint gref, uint version)
    {
        if (version == 1)
        {
            var header = (ushort*)((GrantEntryV1*)_m.Memory.GetFramePointer(_front.Grant.GetSharedFrame(0)) + gref);
            return (ushort)(Volatile.Read(ref *header) & Busy);
        }

        var status = (ushort*)_m.Memory.GetFramePointer(_front.Grant.GetStatusFrame(0));
        return (ushort)(Volatile.Read(ref status[gref]) & Busy);
    }

    /// <summary>
    /// XSA-316 (Xen 4.14 and later): when _set_status refuses the entry in map_grant_ref, the status is that refusal,
    /// GNTST_general_error, not the 1 a misplaced parenthesis (XSA-295's fix) made of it, which crashed Linux's
    /// netback and blkback. Checked under v1 and v2 for the three refusals a map meets: an entry granted to another
    /// domain, a first writable pin of a GTF_readonly grant, and a first writable pin of a GTF_readonly grant a
    /// read-only mapping already pins (which keeps its pin and GTF_reading; GTF_writing is left clear).
    /// </summary>
    [Theory]
    [InlineData(1u)]
    [InlineData(2u)]
    public void Xsa316_a_map_the_entry_refuses_answers_general_error(uint version)
    {
        if (version == 2)
        {
            var v = new GnttabSetVersion { Version = 2 };
            Assert.Equal(0, _m.Host.SetVersion(_front.Grant, ref v));
        }

        uint other = Grant(5, to: 3);
        Assert.Equal((short)GrantStatus.GeneralError, Map(other, Slot));
        Assert.Equal(0u, _front.Grant.GetPinCount(other));
        Assert.Equal(0, BusyFlags(other, version));

        uint ro = Grant(6, readOnly: true);
        Assert.Equal((short)GrantStatus.GeneralError, Map(ro, Slot));
        Assert.Equal(0u, _front.Grant.GetPinCount(ro));
        Assert.Equal(0, BusyFlags(ro, version));

        Assert.Equal(0, Map(ro, Slot, readOnly: true));
        Assert.Equal((short)GrantStatus.GeneralError, Map(ro, Slot + 1));
        Assert.Equal(ActiveGrantEntry.HostReadIncrement, _front.Grant.GetPinCount(ro));
        Assert.Equal((ushort)GrantEntryFlags.Reading, BusyFlags(ro, version));
        Assert.Equal(1, _back.Grant.MappingCount);
    }

    /// <summary>
    /// get_maptrack_handle: the maptrack grows a frame (256 handles) at a time up to the domain's limit, so a map may
    /// have to grow it. Growing must cost the host O(1) amortised per map, not a copy of every handle so far: a guest
    /// that maps grants up to a limit of 1024 frames would otherwise make the host copy some 5 GB of entries, under the
    /// lock every grant operation of every domain waits for. Here the handles a guest can use still grow by a frame at
    /// a time (Xen's maptrack_limit), while the table behind them is replaced at most once per doubling.
    /// </summary>
    [Fact]
    public void Maptrack_grows_a_frame_at_a_time_for_the_guest_and_doubles_behind_it()
    {
        const int Frames = 40;
        TestDomain many = _m.AddDomain(3, new GrantTableLimits(4, Frames));
        int mapped = 0, replaced = 0;
        MaptrackEntry[] table = many.Grant.Maptrack;
        for (int g = 0; mapped < Frames * GrantTableLimits.MaptrackPerFrame; g++)
        {
            uint gref = Grant(g % TestMachine.RamFrames, readOnly: true, to: 3);
            for (int k = 0; k < 100 && mapped < Frames * GrantTableLimits.MaptrackPerFrame; k++, mapped++)
            {
                Assert.Equal(0, _m.MapGrant(many, 1, gref, 0x10000 + (ulong)mapped, readOnly: true).Status);
                Assert.Equal((mapped / GrantTableLimits.MaptrackPerFrame + 1) * GrantTableLimits.MaptrackPerFrame, many.Grant.MaptrackCapacity);
                if (!ReferenceEquals(table, many.Grant.Maptrack))
                {
                    table = many.Grant.Maptrack;
                    replaced++;
                }
            }
        }

        // 1, 2, 4, 8, 16, 32 and 40 frames: seven tables, where a frame at a time made forty.
        Assert.True(replaced <= 7, $"the maptrack's table was replaced {replaced} times growing to {Frames} frames");
        Assert.Equal(Frames * GrantTableLimits.MaptrackPerFrame, many.Grant.MappingCount);

        uint last = Grant(1, readOnly: true, to: 3);
        Assert.Equal((short)GrantStatus.NoSpace, _m.MapGrant(many, 1, last, 0x20000).Status);
        Assert.Equal(Frames * GrantTableLimits.MaptrackPerFrame, many.Grant.MaptrackCapacity);
    }
}
