using VmmKit.Ept;
using VmmKit.Hypercall;
using static VmmKit.GrantTable.Tests.GuestValues;

namespace VmmKit.GrantTable.Tests;

/// <summary>
/// Grant operations that write a domain's frame from the host mark it dirty in that domain's log, as Xen's
/// <c>gnttab_mark_dirty</c> (x86: <c>paging_mark_dirty</c> while <c>paging_mode_log_dirty</c>): <c>gnttab_copy_buf</c>
/// marks each successful copy's destination frame in the destination's domain, and <c>unmap_common</c> marks the
/// granter's frame once a writable mapping of it is gone. Host writes do not go through the EPT, so without the mark
/// the dirty log of <see cref="EptTables"/> would never show them. Domain death (<c>gnttab_release_mappings</c>) marks
/// nothing, as in Xen.
/// </summary>
public sealed unsafe class DirtyLogTests : DirtyLogFixture
{
    private void Version2(TestDomain d)
    {
        var v = new GnttabSetVersion { Version = 2 };
        Assert.Equal(0, _host.SetVersion(d.Grant, ref v));
    }

    [Fact]
    public void A_copy_into_a_grant_marks_exactly_the_granters_frame()
    {
        uint gref = Grant(5);
        StartLog(_front, _back);
        Assert.Empty(Dirty(_front));
        Assert.Empty(Dirty(_back));

        Assert.Equal([0], Run(ToGrant(3, gref)));

        Assert.Equal(0x13, _front.RamPage(5)[0]);
        Assert.Equal([5UL], Dirty(_front));
        Assert.Empty(Dirty(_back)); // the source was only read
    }

    [Fact]
    public void A_copy_into_the_callers_own_frame_marks_the_callers_frame_and_nothing_in_the_granter()
    {
        uint gref = Grant(5, readOnly: true);
        StartLog(_front, _back);

        Assert.Equal([0], Run(FromGrant(gref, 4)));

        Assert.Equal(0x15, _back.RamPage(4)[0]);
        Assert.Equal([4UL], Dirty(_back));
        Assert.Empty(Dirty(_front));
    }

    [Fact]
    public void A_copy_between_the_callers_frames_marks_the_destination()
    {
        StartLog(_back);

        Assert.Equal([0], Run(Frames(3, 7)));

        Assert.Equal([7UL], Dirty(_back));
    }

    [Fact]
    public void A_copy_into_a_v2_grant_and_into_a_v2_sub_page_grant_marks_the_frame_the_entry_names()
    {
        Version2(_front);
        uint whole = Grant(9);
        uint sub = Grant(11);
        _front.MakeSubPage(sub, 256, 128);
        StartLog(_front, _back);

        Assert.Equal([0], Run(ToGrant(3, whole)));
        Assert.Equal([9UL], Dirty(_front));

        Assert.Equal([0], Run(ToGrant(3, sub, len: 16, offset: 300)));
        Assert.Equal([11UL], Dirty(_front));
        Assert.Empty(Dirty(_back));
    }

    [Fact]
    public void A_copy_between_two_granters_grants_marks_the_destination_granter_only()
    {
        TestDomain third = AddDomain(3);
        var thirdShare = new InProcessGrantShare(_host, third.Grant);
        uint from = Grant(5, readOnly: true);
        uint to = Grant(12, share: thirdShare);
        StartLog(_front, _back, third);

        Assert.Equal([0], Run(GrantToGrant(1, from, 3, to)));

        Assert.Equal([12UL], Dirty(third));
        Assert.Empty(Dirty(_front));
        Assert.Empty(Dirty(_back));
    }

    [Fact]
    public void A_failed_copy_marks_nothing()
    {
        uint gref = Grant(5);
        uint readOnly = Grant(6, readOnly: true);
        StartLog(_front, _back);

        short[] st = Run(
            ToGrant(3, 4000),                          // bad reference
            ToGrant(3, gref, len: 100, offset: 4000),  // beyond the page
            ToGrant(3, readOnly),                      // a read-only grant as destination
            FromGrant(gref, 4, len: 100, offset: 4000),
            Frames(3, 7, len: 4097),
            Frames(3, 100_000));                       // the caller has no such frame

        Assert.All(st, s => Assert.NotEqual(0, s));
        Assert.Empty(Dirty(_front));
        Assert.Empty(Dirty(_back));
    }

    [Fact]
    public void A_batch_marks_every_destination()
    {
        uint a = Grant(5);
        uint b = Grant(6);
        uint c = Grant(7, readOnly: true);
        StartLog(_front, _back);

        short[] st = Run(
            ToGrant(3, a),
            ToGrant(3, a, offset: 100),   // the batch still holds a
            ToGrant(4, b),
            FromGrant(c, 8),
            FromGrant(c, 8, offset: 200),
            Frames(3, 9),
            ToGrant(3, 4000),             // fails, releasing what the batch holds
            ToGrant(3, b, offset: 300));

        Assert.Equal([0, 0, 0, 0, 0, 0, (short)GrantStatus.BadGntref, 0], st);
        Assert.Equal([5UL, 6UL], Dirty(_front));
        Assert.Equal([8UL, 9UL], Dirty(_back));
    }

    [Fact]
    public void A_hypercall_marks_every_destination()
    {
        uint a = Grant(5);
        uint b = Grant(6, readOnly: true);
        StartLog(_front, _back);

        short[] st = Call([ToGrant(3, a), FromGrant(b, 8), Frames(3, 9), ToGrant(3, 4000), ToGrant(4, a, offset: 64)]);

        Assert.Equal([0, 0, 0, (short)GrantStatus.BadGntref, 0], st);
        Assert.Equal([5UL], Dirty(_front));
        Assert.Equal([8UL, 9UL], DirtyBesidesBuffer(_back));
    }

    [Fact]
    public void A_hypercall_of_16_operations_into_16_grants_marks_all_16_frames()
    {
        var ops = new GnttabCopy[16];
        for (int i = 0; i < ops.Length; i++)
        {
            ops[i] = ToGrant(3, Grant(30 + i), offset: (ushort)(i * 8), len: 8);
        }

        StartLog(_front, _back);

        Assert.All(Call(ops), s => Assert.Equal(0, s));

        Assert.Equal(Enumerable.Range(30, 16).Select(i => (ulong)i), Dirty(_front));
        Assert.Empty(DirtyBesidesBuffer(_back));
    }

    [Fact]
    public void A_hypercall_of_40_operations_held_across_holds_marks_every_destination()
    {
        // Three operations per grant: operations 15 and 16 name one grant, which the batch keeps claimed across the
        // end of the first hold of 16 operations; the own frames alternate the same way.
        var grefs = Enumerable.Range(0, 14).Select(i => Grant(30 + i)).ToArray();
        var ops = new GnttabCopy[40];
        for (int i = 0; i < ops.Length; i++)
        {
            ops[i] = i % 2 == 0
                ? ToGrant(3, grefs[i / 3], offset: (ushort)(i * 8), len: 8)
                : FromGrant(grefs[i / 3], (ulong)(44 + (i / 3)), offset: (ushort)(i * 8), len: 8);
        }

        StartLog(_front, _back);

        Assert.All(Call(ops), s => Assert.Equal(0, s));

        ulong[] front = [.. Enumerable.Range(0, 40).Where(i => i % 2 == 0).Select(i => (ulong)(30 + (i / 3))).Distinct()];
        ulong[] back = [.. Enumerable.Range(0, 40).Where(i => i % 2 == 1).Select(i => (ulong)(44 + (i / 3))).Distinct()];
        Assert.Equal(front, Dirty(_front));
        Assert.Equal(back, DirtyBesidesBuffer(_back));
    }

    [Fact]
    public void Each_operation_that_reuses_what_the_batch_holds_marks_its_destination_again()
    {
        // The log is harvested between operations (the preemption hook runs between them, each in a hold of its own),
        // so every operation after the first, which takes the fast path of a batch that holds both sides, must mark anew.
        uint a = Grant(5);
        uint b = Grant(6, readOnly: true);
        StartLog(_front, _back);
        var front = new List<ulong[]>();
        var back = new List<ulong[]>();
        void Between(int i)
        {
            front.Add(Dirty(_front));
            back.Add(DirtyBesidesBuffer(_back));
        }

        short[] st = CopyHypercall.Run(_dispatcher, _back, [ToGrant(3, a), ToGrant(3, a, offset: 8), ToGrant(3, a, offset: 16), FromGrant(b, 8), FromGrant(b, 8, offset: 8)], Between);
        Between(5);

        Assert.All(st, s => Assert.Equal(0, s));
        Assert.Equal([[5UL], [5UL], [5UL], [], []], front);
        Assert.Equal([[], [], [], [8UL], [8UL]], back);
    }

    [Fact]
    public void A_copy_through_a_claim_held_while_the_granter_made_its_frame_read_only_still_marks_it()
    {
        // The write happens through the claim made while the frame was writable (Xen's page reference); the mark goes to
        // the frame's entry whatever its rights are now, as paging_mark_dirty marks by frame, not by access.
        uint a = Grant(5);
        StartLog(_front);
        var front = new List<ulong[]>();
        short[] st = CopyHypercall.Run(_dispatcher, _back, [ToGrant(3, a), ToGrant(3, a, offset: 8)], i =>
        {
            front.Add(Dirty(_front));
            _front.Ept.Protect(new GuestFrameNumber(5).Address, 1, EptAccess.Read);
        });

        Assert.Equal([0, 0], st);
        Assert.Equal([[5UL]], front);
        Assert.Equal(0x13, _front.RamPage(5)[8]);
        Assert.Equal([5UL], Dirty(_front));
    }

    [Fact]
    public void Unmapping_a_writable_mapping_marks_the_granters_frame()
    {
        uint gref = Grant(5);
        StartLog(_front, _back);
        GnttabMapGrantRef m = Map(gref, readOnly: false);
        Assert.True(_back.TryWrite(MapGfn << 12, [1, 2, 3])); // the grantee writes through its own EPT
        Assert.Empty(Dirty(_front));
        Assert.Equal([MapGfn], Dirty(_back));

        Assert.Equal(0, Unmap(m.Handle));

        Assert.Equal([5UL], Dirty(_front));
        Assert.Empty(Dirty(_back));
    }

    [Fact]
    public void Unmapping_a_read_only_mapping_marks_nothing()
    {
        uint gref = Grant(5, readOnly: true);
        StartLog(_front, _back);
        GnttabMapGrantRef m = Map(gref, readOnly: true);

        Assert.Equal(0, Unmap(m.Handle));

        Assert.Empty(Dirty(_front));
        Assert.Empty(Dirty(_back));
    }

    [Fact]
    public void Unmapping_a_writable_mapping_of_a_grant_a_copy_pinned_first_marks_the_frame_the_pin_resolved()
    {
        // The map joins a pin a copy made (held across holds), so the map reads no entry itself: the frame to mark is the
        // one the first pin resolved, even though the granter rewrote the entry's frame meanwhile.
        uint gref = Grant(5);
        StartLog(_front);
        uint handle = 0;
        short[] st = CopyHypercall.Run(_dispatcher, _back, [ToGrant(3, gref), ToGrant(3, gref, offset: 8)], i =>
        {
            ((GrantEntryV1*)_memory.GetFramePointer(_front.Grant.GetSharedFrame(0)) + gref)->Frame = 7;
            handle = Map(gref, readOnly: false).Handle;
        });
        Assert.Equal([0, 0], st);
        Assert.Equal([5UL], Dirty(_front));

        Assert.Equal(0, Unmap(handle));

        Assert.Equal([5UL], Dirty(_front));
    }

    [Fact]
    public void Unmap_and_replace_of_a_writable_mapping_marks_the_granters_frame()
    {
        uint gref = Grant(5);
        StartLog(_front);
        GnttabMapGrantRef m = Map(gref, readOnly: false);

        var r = new GnttabUnmapAndReplace { HostAddr = MapGfn << 12, NewAddr = 0, Handle = m.Handle, Status = 99 };
        _host.UnmapAndReplace(_back.Grant, ref r);

        Assert.Equal(0, r.Status);
        Assert.Equal([5UL], Dirty(_front));
    }

    [Fact]
    public void A_failed_unmap_marks_nothing()
    {
        uint gref = Grant(5);
        StartLog(_front);
        GnttabMapGrantRef m = Map(gref, readOnly: false);

        var op = new GnttabUnmapGrantRef { HostAddr = (MapGfn + 1) << 12, Handle = m.Handle };
        _host.UnmapGrantRef(_back.Grant, ref op);

        Assert.Equal((short)GrantStatus.GeneralError, op.Status);
        Assert.Empty(Dirty(_front));
    }

    [Fact]
    public void A_hypercall_unmapping_writable_and_read_only_mappings_marks_the_writable_ones()
    {
        var handles = new uint[6];
        for (int i = 0; i < handles.Length; i++)
        {
            bool readOnly = i % 2 == 1;
            handles[i] = Map(Grant(24 + i, readOnly), readOnly, MapGfn + (ulong)i).Handle;
        }

        StartLog(_front);
        for (int i = 0; i < handles.Length; i++)
        {
            Put(_back, Buffer + ((ulong)i * 24), new GnttabUnmapGrantRef { HostAddr = (MapGfn + (ulong)i) << 12, Handle = handles[i], Status = 99 });
        }

        long rc = GrantTableCall.Invoke(_dispatcher, _back, (ulong)GrantTableOp.UnmapGrantRef, Buffer, (ulong)handles.Length, HypercallAbi.Native64, out _);

        Assert.Equal(0, rc);
        for (int i = 0; i < handles.Length; i++)
        {
            Assert.Equal(0, Get<GnttabUnmapGrantRef>(_back, Buffer + ((ulong)i * 24)).Status);
        }

        Assert.Equal([24UL, 26UL, 28UL], Dirty(_front));
    }

    [Fact]
    public void Releasing_a_live_grantees_mappings_marks_the_writable_ones_as_its_unmaps_would()
    {
        Map(Grant(5), readOnly: false, MapGfn);
        Map(Grant(6, readOnly: true), readOnly: true, MapGfn + 1);
        StartLog(_front);

        Assert.Equal(2, _host.ReleaseMappings(_back.Grant));

        Assert.Equal([5UL], Dirty(_front));
    }

    [Fact]
    public void Domain_death_releases_mappings_without_marking_as_gnttab_release_mappings()
    {
        Map(Grant(5), readOnly: false);
        StartLog(_front);

        _host.DestroyDomain(_back.Grant);

        Assert.Empty(Dirty(_front));
    }

    [Fact]
    public void Without_dirty_logging_copies_and_unmaps_mark_nothing_and_do_not_fail()
    {
        uint gref = Grant(5);
        GnttabMapGrantRef m = Map(gref, readOnly: false, MapGfn + 1);
        Assert.Equal([0, 0, 0], Run(ToGrant(3, gref), FromGrant(gref, 4), Frames(3, 9)));
        Assert.Equal([0], Call([ToGrant(3, gref, offset: 8)]));
        Assert.Equal(0, Unmap(m.Handle, MapGfn + 1));
        Assert.False(_front.Ept.IsDirtyLogging);

        StartLog(_front, _back);

        Assert.Empty(Dirty(_front));
        Assert.Empty(Dirty(_back));
    }

    [Fact]
    public void Domains_whose_EPT_has_no_accessed_and_dirty_flags_copy_and_unmap_as_before()
    {
        TestDomain granter = AddDomain(4, accessedDirty: false);
        TestDomain caller = AddDomain(5, accessedDirty: false);
        var share = new InProcessGrantShare(_host, granter.Grant);
        Assert.True(share.TryGrantForeignAccess(5, 5, false, out uint gref));
        GnttabCopy[] ops = [ToGrant(3, gref, dom: 4), FromGrant(gref, 4, dom: 4)];
        _host.Copy(caller.Grant, ops.AsSpan());
        var map = new GnttabMapGrantRef { HostAddr = MapGfn << 12, Flags = (uint)GrantMapFlags.HostMap, Ref = gref, Dom = 4 };
        _host.MapGrantRef(caller.Grant, ref map);
        var unmap = new GnttabUnmapGrantRef { HostAddr = MapGfn << 12, Handle = map.Handle };
        _host.UnmapGrantRef(caller.Grant, ref unmap);

        Assert.Equal([0, 0], ops.Select(o => o.Status));
        Assert.Equal(0, map.Status);
        Assert.Equal(0, unmap.Status);
        Assert.Equal(0x13, granter.RamPage(5)[0]);
    }
}
