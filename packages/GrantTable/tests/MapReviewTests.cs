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

    private short Map(uint gref, ulong gfn, bool readOnly = false)
    {
        var op = new GnttabMapGrantRef
        {
            HostAddr = gfn << 12,
            Flags = (uint)(GrantMapFlags.HostMap | (readOnly ? GrantMapFlags.ReadOnly : 0)),
            Ref = gref,
            Dom = 1,
        };
        _m.Host.MapGrantRef(_back.Grant, ref op);
        return op.Status;
    }

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
}
