using VmmKit.Ept;
using VmmKit.Hypercall;

namespace VmmKit.GrantTable.Tests;

/// <summary>The hypervisor side operation by operation, with the statuses Xen's grant_table.c gives.</summary>
public sealed class HostTests : IDisposable
{
    private const ulong MapGfn = 0x1000;
    private readonly TestMachine _m = new();
    private readonly TestDomain _front;
    private readonly TestDomain _back;
    private readonly InProcessGrantShare _share;

    public HostTests()
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

    private GnttabMapGrantRef Map(uint gref, bool readOnly = false, ulong gfn = MapGfn, ushort dom = 1, TestDomain? by = null) =>
        _m.MapGrant(by ?? _back, dom, gref, gfn, readOnly);

    private short Unmap(uint handle, ulong gfn = MapGfn, TestDomain? by = null)
    {
        var op = new GnttabUnmapGrantRef { HostAddr = gfn << 12, Handle = handle };
        _m.Host.UnmapGrantRef((by ?? _back).Grant, ref op);
        return op.Status;
    }

    [Fact]
    public void Create_domain_refuses_domid_first_reserved_and_accepts_the_id_below_it()
    {
        // CreateDomain's documented rule: ids from DOMID_FIRST_RESERVED (0x7FF0: DOMID_SELF, DOMID_IO, DOMID_XEN, ...)
        // name no domain (xen/include/public/xen.h), so they are an ArgumentException; 0x7FEF is the last real id.
        var ept = new EptTables(_m.Memory, new FrameOwner(3));
        Assert.Throws<ArgumentException>(() => _m.Host.CreateDomain(DomainId.FirstReserved, ept));
        Assert.False(_m.Host.TryGetDomain(DomainId.FirstReserved, out _));

        GrantDomain last = _m.Host.CreateDomain(DomainId.FirstReserved - 1, ept);
        Assert.True(_m.Host.TryGetDomain(DomainId.FirstReserved - 1, out GrantDomain found));
        Assert.Same(last, found);
        _m.Host.DestroyDomain(last);
        Assert.False(_m.Host.TryGetDomain(DomainId.FirstReserved - 1, out _));
    }

    [Fact]
    public void The_accessors_refuse_the_first_index_past_the_table()
    {
        // GrantDomain's documented bounds: a frame index below SharedFrameCount/StatusFrameCount, and a pin count of 0
        // for a reference past the table (nr_grant_entries: 512 per v1 frame, the first one out of range is 512).
        Assert.Equal(1, _front.Grant.SharedFrameCount);
        Assert.Throws<ArgumentOutOfRangeException>(() => _front.Grant.GetSharedFrame(1));
        Assert.Throws<ArgumentOutOfRangeException>(() => _front.Grant.GetStatusFrame(0)); // none under v1
        Assert.Equal(0u, _front.Grant.GetPinCount(512));
        Assert.Equal(0u, _front.Grant.GetPinCount(uint.MaxValue));
    }

    [Fact]
    public void A_new_table_is_version_1_with_one_frame()
    {
        Assert.Equal(1, _front.Grant.Version);
        Assert.Equal(1, _front.Grant.SharedFrameCount);
        Assert.Equal(512, _front.Grant.EntryCount);
        var q = new GnttabQuerySize { Dom = DomainId.Self };
        _m.Host.QuerySize(_front.Grant, false, ref q);
        Assert.Equal((0, 1u, 64u), (q.Status, q.NrFrames, q.MaxNrFrames));
        q = new GnttabQuerySize { Dom = 2 };
        _m.Host.QuerySize(_front.Grant, false, ref q);
        Assert.Equal((short)GrantStatus.PermissionDenied, q.Status);
        q = new GnttabQuerySize { Dom = 99 };
        _m.Host.QuerySize(_front.Grant, true, ref q);
        Assert.Equal((short)GrantStatus.BadDomain, q.Status);
    }

    [Fact]
    public void IsGrantMapping_is_true_exactly_while_a_grant_is_mapped_at_the_gfn()
    {
        // Xen's p2m_is_grant: the grantee's gfn holds a grant mapping from map to unmap; its RAM and the granter's
        // granted gfn are not grant mappings.
        GnttabMapGrantRef op = Map(Grant(5));
        Assert.Equal(0, op.Status);
        Assert.True(_m.Host.IsGrantMapping(_back.Grant, new GuestFrameNumber(MapGfn)));
        Assert.False(_m.Host.IsGrantMapping(_back.Grant, new GuestFrameNumber(5)));
        Assert.False(_m.Host.IsGrantMapping(_front.Grant, new GuestFrameNumber(5)));
        Assert.Equal(0, Unmap(op.Handle));
        Assert.False(_m.Host.IsGrantMapping(_back.Grant, new GuestFrameNumber(MapGfn)));
        using var other = new TestMachine();
        Assert.Throws<ArgumentException>(() => _m.Host.IsGrantMapping(other.AddDomain(1).Grant, new GuestFrameNumber(0)));
    }

    [Fact]
    public void IsTableFrame_knows_the_shared_and_status_frames_and_forgets_freed_ones()
    {
        // The frames gnttab_map_frame hands out: shared ones always, status ones only under v2 (set_version 2 -> 1
        // frees them, gnttab_unpopulate_status_frames).
        MachineFrameNumber shared = _front.Grant.GetSharedFrame(0);
        Assert.True(_m.Host.IsTableFrame(_front.Grant, shared));
        Assert.False(_m.Host.IsTableFrame(_back.Grant, shared));
        Assert.False(_m.Host.IsTableFrame(_front.Grant, _front.Ram[0]));
        var v = new GnttabSetVersion { Version = 2 };
        Assert.Equal(0, _m.Host.SetVersion(_front.Grant, ref v));
        MachineFrameNumber status = _front.Grant.GetStatusFrame(0);
        Assert.True(_m.Host.IsTableFrame(_front.Grant, status));
        v.Version = 1;
        Assert.Equal(0, _m.Host.SetVersion(_front.Grant, ref v));
        Assert.False(_m.Host.IsTableFrame(_front.Grant, status));
        Assert.True(_m.Host.IsTableFrame(_front.Grant, shared));
        using var other = new TestMachine();
        Assert.Throws<ArgumentException>(() => _m.Host.IsTableFrame(other.AddDomain(1).Grant, shared));
    }

    [Fact]
    public void GetTableFrame_validates_and_grows_as_add_to_physmap_and_maps_nothing()
    {
        // gnttab_map_frame: the frame of a valid index (growing the table), -EINVAL for a status frame under v1 and past
        // max_grant_frames; the domain's EPT is not touched.
        Assert.Equal(0, _m.Host.GetTableFrame(_front.Grant, 0, out MachineFrameNumber first));
        Assert.Equal(_front.Grant.GetSharedFrame(0), first);
        Assert.Equal(0, _m.Host.GetTableFrame(_front.Grant, 2, out MachineFrameNumber third));
        Assert.Equal(3, _front.Grant.SharedFrameCount);
        Assert.Equal(_front.Grant.GetSharedFrame(2), third);
        Assert.Equal(XenErrno.EINVAL.Negated(), _m.Host.GetTableFrame(_front.Grant, GrantTableHost.GrantTableStatusIndex, out _));
        Assert.Equal(XenErrno.EINVAL.Negated(), _m.Host.GetTableFrame(_front.Grant, (ulong)_front.Grant.Limits.MaxGrantFrames, out _));
        Assert.True(_front.Ept.TryLookup(new GuestFrameNumber(0), out MachineFrameNumber ram0, out _));
        Assert.Equal(_front.Ram[0], ram0);
    }

    [Fact]
    public void FlushTranslations_runs_after_the_unmap_and_before_the_last_reference_frees_the_page()
    {
        // gnttab_flush_tlb before unmap_common_complete: when the hook runs, the grantee's EPT no longer maps the page
        // and the page is still allocated; it is free once the unmap returns (its granter had freed it).
        GnttabMapGrantRef op = Map(Grant(5));
        Assert.Equal(0, op.Status);
        MachineFrameNumber page = _front.Ram[5];
        Assert.False(_m.Frames.Free(page));                                   // deferred: mapped
        var seen = new List<(ushort Domain, bool Mapped, bool Allocated)>();
        _m.Host.FlushTranslations = d => seen.Add((d.Id, _back.Ept.TryLookup(new GuestFrameNumber(MapGfn), out _, out _), _m.Memory.TryGetOwner(page, out _)));

        Assert.Equal(0, Unmap(op.Handle));
        Assert.Equal([(2, false, true)], seen);
        Assert.False(_m.Memory.TryGetOwner(page, out _));
    }

    [Fact]
    public void A_FlushTranslations_hook_that_throws_leaves_the_batch_s_pages_held_for_good_and_the_host_usable()
    {
        // A flush that failed says nothing of the vCPUs' caches, so a page that left the EPT before it may still be
        // reached: the fail-safe side is never to release it. The exception reaches the caller; the lock is let go.
        uint gref = Grant(5);
        GnttabMapGrantRef op = Map(gref);
        Assert.Equal(0, op.Status);
        MachineFrameNumber page = _front.Ram[5];
        Assert.False(_m.Frames.Free(page)); // deferred: mapped
        _m.Host.FlushTranslations = _ => throw new InvalidOperationException("INVEPT failed");

        Assert.Throws<InvalidOperationException>(() => Unmap(op.Handle));
        Assert.False(_back.Ept.TryLookup(new GuestFrameNumber(MapGfn), out _, out _)); // out of the EPT, before the flush
        Assert.True(_m.Memory.TryGetOwner(page, out _));                             // but never freed
        Assert.Equal(1, _m.Frames.ReferenceCount(page));
        Assert.True(_share.IsForeignAccessInUse(gref));                              // nor the grant's pin dropped

        _m.Host.FlushTranslations = null;
        Assert.Equal((short)GrantStatus.BadHandle, Unmap(op.Handle)); // the handle went with the mapping
        GnttabMapGrantRef next = Map(Grant(6));
        Assert.Equal(0, next.Status);
        Assert.Equal(0, Unmap(next.Handle));
        Assert.True(_m.Memory.TryGetOwner(page, out _));
    }

    [Fact]
    public void FlushTranslations_runs_after_a_map_replaced_a_page_and_never_for_a_map_into_an_empty_slot_or_a_copy()
    {
        // A vCPU may hold the translation of the RAM page a mapping replaces (Xen's p2m update flushes then); an empty
        // slot has no translation to drop, and a copy changes no EPT entry.
        var seen = new List<ushort>();
        _m.Host.FlushTranslations = d => seen.Add(d.Id);
        GnttabMapGrantRef empty = Map(Grant(5));
        Assert.Equal(0, empty.Status);
        var copy = new GnttabCopy
        {
            Source = new GnttabCopyPtr { Ref = Grant(6), DomId = 1 },
            Dest = new GnttabCopyPtr { Gmfn = 3, DomId = Hypercall.DomainId.Self },
            Len = 64,
            Flags = (ushort)GrantCopyFlags.SourceGref,
        };
        _m.Host.Copy(_back.Grant, ref copy);
        Assert.Equal(0, copy.Status);
        Assert.Empty(seen);

        GnttabMapGrantRef overRam = Map(Grant(7), gfn: 4); // the grantee's RAM page 4
        Assert.Equal(0, overRam.Status);
        Assert.Equal([(ushort)2], seen);
    }

    [Fact]
    public void A_writable_map_shares_the_page_and_sets_reading_and_writing()
    {
        _front.RamPage(5).Fill(0x5A);
        uint gref = Grant(5);
        GnttabMapGrantRef op = Map(gref);
        Assert.Equal(0, op.Status);
        Assert.Equal(_front.Ram[5].Address, op.DevBusAddr);
        Assert.True(_share.IsForeignAccessInUse(gref));
        Assert.Equal(ActiveGrantEntry.HostWriteIncrement, _front.Grant.GetPinCount(gref));

        var buf = new byte[16];
        Assert.True(_back.TryRead(MapGfn << 12, buf));
        Assert.All(buf, b => Assert.Equal(0x5A, b));
        Assert.True(_back.TryWrite((MapGfn << 12) + 100, [1, 2, 3]));
        Assert.Equal(2, _front.RamPage(5)[101]);
        Assert.Equal(1, _m.Frames.ReferenceCount(_front.Ram[5]));

        Assert.False(_share.EndForeignAccess(gref)); // still mapped
        Assert.Equal(0, Unmap(op.Handle));
        Assert.False(_back.TryRead(MapGfn << 12, buf)); // gone from the grantee's EPT
        Assert.False(_share.IsForeignAccessInUse(gref));
        Assert.Equal(0, _m.Frames.ReferenceCount(_front.Ram[5]));
        Assert.True(_share.EndForeignAccess(gref));
        Assert.Equal((short)GrantStatus.BadHandle, Unmap(op.Handle));
    }

    [Fact]
    public void Read_only_grants_and_read_only_maps_are_enforced_by_the_EPT()
    {
        uint ro = Grant(6, readOnly: true);
        Assert.Equal((short)GrantStatus.GeneralError, Map(ro).Status); // write-pin of a read-only grant
        Assert.False(_share.IsForeignAccessInUse(ro));
        GnttabMapGrantRef op = Map(ro, readOnly: true);
        Assert.Equal(0, op.Status);
        Assert.True(_back.TryRead(MapGfn << 12, new byte[4]));
        Assert.False(_back.TryWrite(MapGfn << 12, [1]));
        Assert.True(_back.Ept.TryLookup(new GuestFrameNumber(MapGfn), out _, out EptAccess access));
        Assert.Equal(EptAccess.Read, access); // never executable, never writable

        uint rw = Grant(7);
        GnttabMapGrantRef op2 = Map(rw, readOnly: true, gfn: MapGfn + 1);
        Assert.Equal(0, op2.Status);
        Assert.False(_back.TryWrite((MapGfn + 1) << 12, [1]));
    }

    [Fact]
    public void Map_refuses_what_Xen_refuses()
    {
        uint gref = Grant(5);
        var op = new GnttabMapGrantRef { HostAddr = MapGfn << 12, Flags = 0, Ref = gref, Dom = 1 };
        _m.Host.MapGrantRef(_back.Grant, ref op);
        Assert.Equal((short)GrantStatus.BadGntref, op.Status);
        op.Flags = (uint)(GrantMapFlags.HostMap | GrantMapFlags.DeviceMap);
        _m.Host.MapGrantRef(_back.Grant, ref op);
        Assert.Equal((short)GrantStatus.GeneralError, op.Status);
        op.Flags = (uint)(GrantMapFlags.HostMap | GrantMapFlags.ContainsPte);
        _m.Host.MapGrantRef(_back.Grant, ref op);
        Assert.Equal((short)GrantStatus.GeneralError, op.Status);

        Assert.Equal((short)GrantStatus.BadDomain, Map(gref, dom: 77).Status);
        Assert.Equal((short)GrantStatus.BadDomain, Map(gref, dom: DomainId.Self).Status);
        Assert.Equal((short)GrantStatus.BadGntref, Map(512).Status);
        Assert.Equal((short)GrantStatus.GeneralError, Map(9).Status); // an entry never granted
        TestDomain third = _m.AddDomain(3);
        Assert.Equal((short)GrantStatus.GeneralError, Map(gref, by: third).Status); // granted to d2, not d3
        Assert.Equal(0, _back.Grant.MappingCount);
        Assert.False(_share.IsForeignAccessInUse(gref));
    }

    [Fact]
    public void A_granted_frame_must_be_the_granters_own_RAM()
    {
        Assert.True(_share.TryGrantForeignAccess(2, 0x5000, false, out uint unpopulated));
        Assert.Equal((short)GrantStatus.BadPage, Map(unpopulated).Status);
        Assert.True(_share.TryGrantForeignAccess(2, uint.MaxValue, false, out uint huge));
        Assert.Equal((short)GrantStatus.BadPage, Map(huge).Status);
        Assert.False(_share.IsForeignAccessInUse(unpopulated));

        // A frame the granter itself maps from a third domain cannot be passed on.
        TestDomain third = _m.AddDomain(3);
        var thirdShare = new InProcessGrantShare(_m.Host, third.Grant);
        Assert.True(thirdShare.TryGrantForeignAccess(1, 9, false, out uint g3));
        Assert.Equal(0, Map(g3, gfn: 0x2000, dom: 3, by: _front).Status);
        Assert.True(_share.TryGrantForeignAccess(2, 0x2000, false, out uint passOn));
        Assert.Equal((short)GrantStatus.BadPage, Map(passOn).Status);
    }

    [Fact]
    public void The_frame_outlives_the_granter_while_mapped()
    {
        _front.RamPage(5).Fill(0x77);
        uint gref = Grant(5);
        GnttabMapGrantRef op = Map(gref);
        MachineFrameNumber frame = _front.Ram[5];
        _m.Kill(_front);
        Assert.True(_m.Frames.IsFreePending(frame));
        Assert.True(_m.Memory.TryGetOwner(frame, out FrameOwner owner));
        Assert.Equal(1, owner.DomainId);
        var b = new byte[1];
        Assert.True(_back.TryRead(MapGfn << 12, b));
        Assert.Equal(0x77, b[0]);
        Assert.Equal((short)GrantStatus.BadDomain, Map(gref, gfn: MapGfn + 1).Status); // the granter is gone

        Assert.Equal(0, Unmap(op.Handle));
        Assert.False(_m.Memory.TryGetOwner(frame, out _)); // freed at the last unmap
        Assert.False(_m.Frames.IsFreePending(frame));
    }

    [Fact]
    public void A_dying_grantee_releases_its_mappings()
    {
        uint gref = Grant(5);
        Assert.Equal(0, Map(gref).Status);
        Assert.True(_share.IsForeignAccessInUse(gref));
        _m.Kill(_back);
        Assert.False(_share.IsForeignAccessInUse(gref));
        Assert.Equal(0u, _front.Grant.GetPinCount(gref));
        Assert.True(_share.EndForeignAccess(gref));
        Assert.Equal(0, _m.Frames.ReferenceCount(_front.Ram[5]));
    }

    [Fact]
    public void Copy_by_grant_and_by_frame()
    {
        _front.RamPage(5).Fill(0x11);
        uint src = Grant(5, readOnly: true);
        uint dst = Grant(6);
        _back.RamPage(3).Fill(0x22);
        Span<GnttabCopy> ops =
        [
            new() { Source = new() { Ref = src, DomId = 1, Offset = 10 }, Dest = new() { Gmfn = 3, DomId = DomainId.Self, Offset = 20 }, Len = 100, Flags = (ushort)GrantCopyFlags.SourceGref },
            new() { Source = new() { Gmfn = 3, DomId = DomainId.Self }, Dest = new() { Ref = dst, DomId = 1, Offset = 4000 }, Len = 96, Flags = (ushort)GrantCopyFlags.DestGref },
            new() { Source = new() { Gmfn = 3, DomId = 1 }, Dest = new() { Gmfn = 4, DomId = DomainId.Self }, Len = 1 },                                                   // frame of another domain
            new() { Source = new() { Ref = src, DomId = 1, Offset = 4000 }, Dest = new() { Gmfn = 4, DomId = DomainId.Self }, Len = 97, Flags = (ushort)GrantCopyFlags.SourceGref }, // crosses the page
            new() { Source = new() { Gmfn = 3, DomId = DomainId.Self }, Dest = new() { Ref = src, DomId = 1 }, Len = 1, Flags = (ushort)GrantCopyFlags.DestGref },        // write to a read-only grant
            new() { Source = new() { Ref = src, DomId = 9 }, Dest = new() { Gmfn = 4, DomId = DomainId.Self }, Len = 1, Flags = (ushort)GrantCopyFlags.SourceGref },       // no such domain
            new() { Source = new() { Gmfn = 3, DomId = DomainId.Self }, Dest = new() { Gmfn = 0x9000, DomId = DomainId.Self }, Len = 1 },                                 // unpopulated frame
        ];
        var mapper = new InProcessGrantMapper(_m.Host, _back.Grant, new GuestFrameNumber(MapGfn), 4);
        mapper.Copy(ops);
        Assert.Equal([0, 0, (short)GrantStatus.PermissionDenied, (short)GrantStatus.BadCopyArg, (short)GrantStatus.GeneralError, (short)GrantStatus.BadDomain, (short)GrantStatus.BadPage],
            ops.ToArray().Select(o => o.Status));
        Assert.Equal(0x22, _back.RamPage(3)[19]);
        Assert.Equal(0x11, _back.RamPage(3)[20]);
        Assert.Equal(0x11, _back.RamPage(3)[119]);
        Assert.Equal(0x22, _back.RamPage(3)[120]);
        Assert.Equal(0x00, _front.RamPage(6)[3999]);
        Assert.Equal(0x22, _front.RamPage(6)[4000]);
        Assert.Equal(0x11, _front.RamPage(6)[4020]);
        Assert.False(_share.IsForeignAccessInUse(src));
        Assert.False(_share.IsForeignAccessInUse(dst));
    }

    [Fact]
    public void Sub_page_grants_limit_copies_and_cannot_be_mapped()
    {
        var v = new GnttabSetVersion { Version = 2 };
        Assert.Equal(0, _m.Host.SetVersion(_front.Grant, ref v));
        Assert.Equal(2u, v.Version);
        uint gref = Grant(5);
        _front.MakeSubPage(gref, 100, 50);

        Assert.Equal((short)GrantStatus.GeneralError, Map(gref).Status);
        var ops = new GnttabCopy[]
        {
            new() { Source = new() { Ref = gref, DomId = 1, Offset = 100 }, Dest = new() { Gmfn = 3, DomId = DomainId.Self }, Len = 50, Flags = (ushort)GrantCopyFlags.SourceGref },
            new() { Source = new() { Ref = gref, DomId = 1, Offset = 99 }, Dest = new() { Gmfn = 3, DomId = DomainId.Self }, Len = 10, Flags = (ushort)GrantCopyFlags.SourceGref },
            new() { Source = new() { Ref = gref, DomId = 1, Offset = 140 }, Dest = new() { Gmfn = 3, DomId = DomainId.Self }, Len = 11, Flags = (ushort)GrantCopyFlags.SourceGref },
        };
        _m.Host.Copy(_back.Grant, ops);
        Assert.Equal([0, (short)GrantStatus.GeneralError, (short)GrantStatus.GeneralError], ops.Select(o => o.Status));
    }

    [Fact]
    public void A_sub_page_grant_reaching_past_its_page_is_cut_at_the_page_for_every_operation_of_a_batch()
    {
        // Xen's gnttab_copy_buf: first "copy beyond page area" (GNTST_bad_copy_arg), then the sub-page bounds
        // (GNTST_general_error); operations on the grant the batch holds take the same checks.
        var v = new GnttabSetVersion { Version = 2 };
        Assert.Equal(0, _m.Host.SetVersion(_front.Grant, ref v));
        uint gref = Grant(5);
        _front.RamPage(5).Fill(0x5A);
        _front.MakeSubPage(gref, 4000, 200);

        GnttabCopy Op(ushort offset, ushort len) =>
            new() { Source = new() { Ref = gref, DomId = 1, Offset = offset }, Dest = new() { Gmfn = 3, DomId = DomainId.Self, Offset = offset }, Len = len, Flags = (ushort)GrantCopyFlags.SourceGref };
        var ops = new[] { Op(4000, 16), Op(4050, 46), Op(4050, 47), Op(3999, 1), Op(4016, 8) };
        _m.Host.Copy(_back.Grant, ops);
        Assert.Equal([0, 0, (short)GrantStatus.BadCopyArg, (short)GrantStatus.GeneralError, 0], ops.Select(o => o.Status));
        Assert.Equal(0x5A, _back.RamPage(3)[4095]);
        Assert.Equal(0x5A, _back.RamPage(3)[4000]);
        Assert.NotEqual(0x5A, _back.RamPage(3)[3999]);
        Assert.NotEqual(0x5A, _back.RamPage(3)[4040]);
        Assert.Equal(0u, _front.Grant.GetPinCount(gref));
    }

    [Fact]
    public void Set_version_follows_Xens_rules()
    {
        var v = new GnttabSetVersion { Version = 3 };
        Assert.Equal(XenErrno.EINVAL.Negated(), _m.Host.SetVersion(_front.Grant, ref v));
        Assert.Equal(1u, v.Version);

        // A reserved entry (console, xenstore) survives the switch with its status.
        unsafe
        {
            var e = (GrantEntryV1*)_m.Memory.GetFramePointer(_front.Grant.GetSharedFrame(0)) + 1;
            e->DomId = 2;
            e->Frame = 7;
            e->Flags = (ushort)GrantEntryFlags.PermitAccess;
        }

        GnttabMapGrantRef reserved = Map(1);
        Assert.Equal(0, reserved.Status);
        uint gref = Grant(5);
        GnttabMapGrantRef busy = Map(gref, gfn: MapGfn + 1);
        Assert.Equal(0, busy.Status);
        v.Version = 2;
        Assert.Equal(XenErrno.EBUSY.Negated(), _m.Host.SetVersion(_front.Grant, ref v));
        Assert.Equal(1u, v.Version);
        Assert.Equal(0, Unmap(busy.Handle, MapGfn + 1));

        v.Version = 2;
        Assert.Equal(0, _m.Host.SetVersion(_front.Grant, ref v));
        Assert.Equal(1, _front.Grant.StatusFrameCount);
        Assert.Equal(256, _front.Grant.EntryCount);
        unsafe
        {
            var e = (GrantEntryV2*)_m.Memory.GetFramePointer(_front.Grant.GetSharedFrame(0)) + 1;
            Assert.Equal((2, 7UL, (ushort)GrantEntryFlags.PermitAccess), (e->DomId, e->Frame, e->Flags));
            var status = (ushort*)_m.Memory.GetFramePointer(_front.Grant.GetStatusFrame(0));
            Assert.Equal((ushort)(GrantEntryFlags.Reading | GrantEntryFlags.Writing), status[1]);
            var other = (GrantEntryV2*)_m.Memory.GetFramePointer(_front.Grant.GetSharedFrame(0)) + gref;
            Assert.Equal(0, other->Flags); // non-reserved entries are cleared
        }

        // The reserved mapping is still there and unmaps cleanly under v2.
        Assert.Equal(0, Unmap(reserved.Handle));
        unsafe
        {
            var status = (ushort*)_m.Memory.GetFramePointer(_front.Grant.GetStatusFrame(0));
            Assert.Equal(0, status[1]);
            var e = (GrantEntryV2*)_m.Memory.GetFramePointer(_front.Grant.GetSharedFrame(0)) + 2;
            e->Flags = (ushort)GrantEntryFlags.PermitAccess;
            e->Frame = 1UL << 40;
        }

        v.Version = 1;
        Assert.Equal(XenErrno.ERANGE.Negated(), _m.Host.SetVersion(_front.Grant, ref v));
        Assert.Equal(2u, v.Version);
        var gv = new GnttabGetVersion { Dom = 1 };
        Assert.Equal(0, _m.Host.GetVersion(_back.Grant, true, ref gv));
        Assert.Equal(2u, gv.Version);
        Assert.Equal(XenErrno.EPERM.Negated(), _m.Host.GetVersion(_back.Grant, false, ref gv));
        gv.Dom = 50;
        Assert.Equal(XenErrno.ESRCH.Negated(), _m.Host.GetVersion(_back.Grant, true, ref gv));
    }

    [Fact]
    public void Grant_table_frames_appear_where_the_guest_asks()
    {
        Assert.Equal(0, _m.Host.AddToPhysmap(_front.Grant, 0, new GuestFrameNumber(0x3000)));
        Assert.True(_front.Ept.TryLookup(new GuestFrameNumber(0x3000), out MachineFrameNumber f, out _));
        Assert.Equal(_front.Grant.GetSharedFrame(0), f);
        Assert.Equal(XenErrno.EINVAL.Negated(), _m.Host.AddToPhysmap(_front.Grant, GrantTableHost.GrantTableStatusIndex, new GuestFrameNumber(0x3001)));
        Assert.Equal(0, _m.Host.AddToPhysmap(_front.Grant, 3, new GuestFrameNumber(0x3003))); // grows the table
        Assert.Equal(4, _front.Grant.SharedFrameCount);
        Assert.Equal(XenErrno.EINVAL.Negated(), _m.Host.AddToPhysmap(_front.Grant, 64, new GuestFrameNumber(0x3004)));

        // Moving frame 0 leaves its old place empty; a RAM page at the new place is released.
        MachineFrameNumber ram = _front.Ram[10];
        Assert.Equal(0, _m.Host.AddToPhysmap(_front.Grant, 0, new GuestFrameNumber(10)));
        Assert.False(_front.Ept.TryLookup(new GuestFrameNumber(0x3000), out _, out _));
        Assert.False(_m.Memory.TryGetOwner(ram, out _));

        Span<ulong> frames = stackalloc ulong[4];
        Assert.Equal(GrantStatus.Okay, _m.Host.SetupTable(_front.Grant, false, DomainId.Self, 4, frames));
        Assert.Equal([10UL, GrantTableHost.InvalidFrame, GrantTableHost.InvalidFrame, 0x3003UL], frames.ToArray());
        Assert.Equal(GrantStatus.GeneralError, _m.Host.SetupTable(_front.Grant, false, DomainId.Self, 65, new ulong[65]));
        Assert.Equal(GrantStatus.PermissionDenied, _m.Host.SetupTable(_front.Grant, false, 2, 1, frames));
        Assert.Equal(GrantStatus.Okay, _m.Host.SetupTable(_front.Grant, true, 2, 2, frames));
        Assert.Equal(2, _back.Grant.SharedFrameCount);
    }

    [Fact]
    public void Swap_exchanges_idle_entries_only()
    {
        uint a = Grant(5), b = Grant(6);
        var op = new GnttabSwapGrantRef { RefA = a, RefB = b };
        _m.Host.SwapGrantRef(_front.Grant, ref op);
        Assert.Equal(0, op.Status);
        GnttabMapGrantRef m = Map(a);
        Assert.Equal(0, m.Status);
        Assert.Equal(_front.Ram[6].Address, m.DevBusAddr);
        _m.Host.SwapGrantRef(_front.Grant, ref op);
        Assert.Equal((short)GrantStatus.Eagain, op.Status);
        op.RefB = 100_000;
        _m.Host.SwapGrantRef(_front.Grant, ref op);
        Assert.Equal((short)GrantStatus.BadGntref, op.Status);
    }

    [Fact]
    public void Unmap_checks_the_address()
    {
        // (dev_bus_addr concerns device mappings only: Xen417SourceTests.Unmap_of_a_host_mapping_ignores_dev_bus_addr.)
        uint gref = Grant(5);
        GnttabMapGrantRef m = Map(gref);
        var op = new GnttabUnmapGrantRef { HostAddr = (MapGfn + 1) << 12, Handle = m.Handle };
        _m.Host.UnmapGrantRef(_back.Grant, ref op);
        Assert.Equal((short)GrantStatus.GeneralError, op.Status);
        var r = new GnttabUnmapAndReplace { HostAddr = MapGfn << 12, NewAddr = 0x5000, Handle = m.Handle };
        _m.Host.UnmapAndReplace(_back.Grant, ref r);
        Assert.Equal((short)GrantStatus.GeneralError, r.Status);
        Assert.True(_share.IsForeignAccessInUse(gref));
        r.NewAddr = 0;
        _m.Host.UnmapAndReplace(_back.Grant, ref r);
        Assert.Equal(0, r.Status);
        Assert.False(_share.IsForeignAccessInUse(gref));
        op.Handle = 1_000_000;
        _m.Host.UnmapGrantRef(_back.Grant, ref op);
        Assert.Equal((short)GrantStatus.BadHandle, op.Status);
    }

    [Fact]
    public void Maptrack_is_limited()
    {
        TestDomain small = _m.AddDomain(3, new GrantTableLimits(1, 1));
        var share = new InProcessGrantShare(_m.Host, _front.Grant);
        int mapped = 0;
        for (int i = 0; i < 300; i++)
        {
            Assert.True(share.TryGrantForeignAccess(3, (ulong)(i % TestMachine.RamFrames), true, out uint g));
            GnttabMapGrantRef op = Map(g, readOnly: true, gfn: 0x4000 + (ulong)i, by: small);
            if (op.Status == 0)
            {
                mapped++;
            }
            else
            {
                Assert.Equal((short)GrantStatus.NoSpace, op.Status);
            }
        }

        Assert.Equal(GrantTableLimits.MaptrackPerFrame, mapped);
        Assert.Equal(GrantTableLimits.MaptrackPerFrame, small.Grant.MaptrackCapacity);
    }
}
