using VmmKit.Ept;
using VmmKit.Hypercall;
using static VmmKit.GrantTable.Tests.GuestValues;

namespace VmmKit.GrantTable.Tests;

/// <summary>
/// The map, unmap, table and client paths' less-travelled checks (CopyEdgeTests holds the copy's): those mutation
/// testing found no other test pinning. Each test fails when its check is weakened or dropped, and names the Xen 4.17
/// rule (grant_table.c, grant_table.h) or the package's own documented rule it holds the implementation to.
/// </summary>
public sealed class MapTableEdgeTests : IDisposable
{
    private const ulong MapGfn = 0x1000;
    private const ulong Buffer = 20UL << 12; // guest-physical buffer in the caller's RAM (paging off)
    private readonly TestMachine _m = new();
    private readonly TestDomain _front;
    private readonly TestDomain _back;
    private readonly InProcessGrantShare _share;
    private readonly HypercallDispatcher<TestDomain> _dispatcher = new();

    public MapTableEdgeTests()
    {
        _front = _m.AddDomain(1);
        _back = _m.AddDomain(2);
        _share = new InProcessGrantShare(_m.Host, _front.Grant);
        new GrantTableHypercalls<TestDomain>(_m.Host, new TestResolver()).Register(_dispatcher);
    }

    public void Dispose() => _m.Dispose();

    private uint Grant(int gfn, bool readOnly = false, ushort to = 2)
    {
        Assert.True(_share.TryGrantForeignAccess(to, (ulong)gfn, readOnly, out uint gref));
        return gref;
    }

    private GnttabMapGrantRef Map(uint gref, GrantMapFlags flags, ulong gfn = MapGfn, ushort dom = 1) =>
        _m.MapGrant(_back, dom, gref, gfn, flags);

    private short Unmap(uint handle, ulong gfn = MapGfn, ulong devBusAddr = 0)
    {
        var op = new GnttabUnmapGrantRef { HostAddr = gfn << 12, Handle = handle, DevBusAddr = devBusAddr };
        _m.Host.UnmapGrantRef(_back.Grant, ref op);
        return op.Status;
    }

    [Fact]
    public void Map_refuses_application_map_in_an_hvm_domain_before_looking_at_the_domain()
    {
        // map_grant_ref: GNTMAP_device_map, GNTMAP_application_map and GNTMAP_contains_pte are refused for a
        // paging_mode_external grantee ("No device mapping in HVM domain", GNTST_general_error) before the granter is
        // looked up, so an unknown domain gives GNTST_general_error, not GNTST_bad_domain.
        uint gref = Grant(5);
        GnttabMapGrantRef op = Map(gref, GrantMapFlags.HostMap | GrantMapFlags.ApplicationMap, dom: 77);
        Assert.Equal((short)GrantStatus.GeneralError, op.Status);
        op = Map(512, GrantMapFlags.HostMap | GrantMapFlags.ApplicationMap);
        Assert.Equal((short)GrantStatus.GeneralError, op.Status);
        Assert.Equal(0, _back.Grant.MappingCount);
        Assert.False(_share.IsForeignAccessInUse(gref));
    }

    [Fact]
    public void Map_at_a_slot_holding_one_of_the_grantees_table_frames_is_refused_and_the_frame_stays()
    {
        // create_grant_p2m_mapping puts the grant at host_addr; this package refuses a slot that holds one of the
        // grantee's grant-table frames (GrantTableHost.AddHostMapping), which Xen's XENMAPSPACE_grant_table placed
        // there (gnttab_map_frame): replacing it would leave the table frame recorded at a slot that no longer maps it.
        const ulong tableGfn = 0x3000;
        Assert.Equal(0, _m.Host.AddToPhysmap(_back.Grant, 0, new GuestFrameNumber(tableGfn)));
        uint gref = Grant(5);
        GnttabMapGrantRef op = Map(gref, GrantMapFlags.HostMap, gfn: tableGfn);
        Assert.Equal((short)GrantStatus.GeneralError, op.Status);
        Assert.False(_share.IsForeignAccessInUse(gref));
        Assert.Equal(0, _back.Grant.MappingCount);
        Assert.True(_back.Ept.TryLookup(new GuestFrameNumber(tableGfn), out MachineFrameNumber frame, out _));
        Assert.Equal(_back.Grant.GetSharedFrame(0), frame);
        Assert.False(_m.Host.IsGrantMapping(_back.Grant, new GuestFrameNumber(tableGfn)));
    }

    [Fact]
    public void Unmapping_a_read_only_mapping_leaves_gtf_writing_set_while_a_writable_mapping_remains()
    {
        // unmap_common_complete: GTF_writing is cleared only when no writable pin is left (GNTPIN_hstw_mask and
        // GNTPIN_devw_mask clear) and the mapping undone was not GNTMAP_readonly; GTF_reading only when no pin is left.
        uint gref = Grant(5);
        GnttabMapGrantRef rw = Map(gref, GrantMapFlags.HostMap);
        GnttabMapGrantRef ro = Map(gref, GrantMapFlags.HostMap | GrantMapFlags.ReadOnly, gfn: MapGfn + 1);
        Assert.Equal((0, 0), (rw.Status, ro.Status));
        const ushort busy = (ushort)(GrantEntryFlags.Reading | GrantEntryFlags.Writing);
        Assert.Equal(busy, (ushort)(EntryFlags(gref) & busy));

        Assert.Equal(0, Unmap(ro.Handle, MapGfn + 1));
        Assert.Equal(busy, (ushort)(EntryFlags(gref) & busy)); // the writable mapping still writes the page
        Assert.True(_back.TryWrite(MapGfn << 12, [1]));

        Assert.Equal(0, Unmap(rw.Handle));
        Assert.Equal(0, EntryFlags(gref) & busy);
        Assert.True(_share.EndForeignAccess(gref));
    }

    private unsafe ushort EntryFlags(uint gref) =>
        ((GrantEntryV1*)_m.Memory.GetFramePointer(_front.Grant.GetSharedFrame(0)) + gref)->Flags;

    [Fact]
    public void Set_version_1_refuses_a_reserved_v2_entry_whose_frame_needs_bit_32()
    {
        // gnttab_set_version: switching 2 -> 1 is -ERANGE when a reserved GTF_permit_access entry's full_page.frame
        // has any bit from 32 up (frame >> 32 != 0), since grant_entry_v1_t.frame is a uint32_t.
        var v = new GnttabSetVersion { Version = 2 };
        Assert.Equal(0, _m.Host.SetVersion(_front.Grant, ref v));
        SetReservedV2(1UL << 32);
        v.Version = 1;
        Assert.Equal(XenErrno.ERANGE.Negated(), _m.Host.SetVersion(_front.Grant, ref v));
        Assert.Equal(2u, v.Version);

        SetReservedV2(uint.MaxValue); // fits in 32 bits
        v.Version = 1;
        Assert.Equal(0, _m.Host.SetVersion(_front.Grant, ref v));
        Assert.Equal(1u, v.Version);
    }

    private unsafe void SetReservedV2(ulong frame)
    {
        var e = (GrantEntryV2*)_m.Memory.GetFramePointer(_front.Grant.GetSharedFrame(0)) + 2;
        e->DomId = 2;
        e->Frame = frame;
        e->Flags = (ushort)GrantEntryFlags.PermitAccess;
    }

    [Fact]
    public void A_writable_map_of_a_page_the_granter_can_only_read_is_refused()
    {
        // GrantTableHost.GetPagedFrame (Xen's get_paged_frame, then get_page_type(PGT_writable_page) for a writable
        // pin): a writable map needs the granter's own EPT entry to be writable, else a grantee could write a page its
        // granter cannot (GNTST_bad_page). A read-only map of that page is allowed.
        _front.Ept.Protect(new GuestFrameNumber(5).Address, 1, EptAccess.Read);
        uint gref = Grant(5);
        GnttabMapGrantRef op = Map(gref, GrantMapFlags.HostMap);
        Assert.Equal((short)GrantStatus.BadPage, op.Status);
        Assert.False(_share.IsForeignAccessInUse(gref));
        Assert.False(_back.Ept.TryLookup(new GuestFrameNumber(MapGfn), out _, out _));

        op = Map(gref, GrantMapFlags.HostMap | GrantMapFlags.ReadOnly);
        Assert.Equal(0, op.Status);
        Assert.False(_back.TryWrite(MapGfn << 12, [1]));
        Assert.Equal(0, Unmap(op.Handle));
    }

    [Fact]
    public void A_writable_map_of_a_read_only_grant_already_mapped_read_only_is_refused()
    {
        // map_grant_ref: a writable map of an entry with no writable pin yet goes through _set_status again, which
        // refuses GTF_readonly (GNTST_general_error), even when the entry is already pinned by a read-only mapping.
        uint gref = Grant(5, readOnly: true);
        GnttabMapGrantRef ro = Map(gref, GrantMapFlags.HostMap | GrantMapFlags.ReadOnly);
        Assert.Equal(0, ro.Status);
        GnttabMapGrantRef rw = Map(gref, GrantMapFlags.HostMap, gfn: MapGfn + 1);
        Assert.Equal((short)GrantStatus.GeneralError, rw.Status);
        Assert.False(_back.Ept.TryLookup(new GuestFrameNumber(MapGfn + 1), out _, out _));
        Assert.Equal(ActiveGrantEntry.HostReadIncrement, _front.Grant.GetPinCount(gref));
        Assert.Equal(0, EntryFlags(gref) & (ushort)GrantEntryFlags.Writing);
        Assert.Equal(0, Unmap(ro.Handle));
    }

    [Fact]
    public void Native_setup_table_writes_the_frames_after_one_it_cannot_write()
    {
        // gnttab_setup_table: a frame number that __copy_to_guest_offset cannot write sets GNTST_bad_virt_addr and
        // the loop goes on with the next frame (only compat_grant_table_op stops at the first such frame).
        Assert.Equal(0, _m.Host.AddToPhysmap(_back.Grant, 0, new GuestFrameNumber(0x2000)));
        Assert.Equal(0, _m.Host.AddToPhysmap(_back.Grant, 1, new GuestFrameNumber(0x2001)));
        const ulong list = Buffer + 0x3000 - 8; // frame 0 in a read-only page, frame 1 in the next, writable
        Put(_back, list, 0x5555_5555_5555_5555UL);
        Put(_back, list + 8, 0xAAAA_AAAA_AAAA_AAAAUL);
        var setup = new GnttabSetupTable { Dom = DomainId.Self, NrFrames = 2, FrameList = list, Status = 99 };
        Put(_back, Buffer + 0x1000, setup);
        _back.Ept.Protect(new GuestPhysicalAddress(Buffer + 0x2000), 1, EptAccess.Read);
        long rc = GrantTableCall.Invoke(_dispatcher, _back, (ulong)GrantTableOp.SetupTable, Buffer + 0x1000, 1,
            HypercallAbi.Native64, out _);
        Assert.Equal(0, rc);
        Assert.Equal((short)GrantStatus.BadVirtAddr, Get<GnttabSetupTable>(_back, Buffer + 0x1000).Status);
        Assert.Equal(0x5555_5555_5555_5555UL, Get<ulong>(_back, list));
        Assert.Equal(0x2001UL, Get<ulong>(_back, list + 8));
    }

    [Fact]
    public void A_mapping_whose_address_is_not_the_page_the_mapper_returned_is_no_live_mapping()
    {
        // IGrantMapper: GetPage, GetReadOnlyPage and Unmap take a live mapping made by this mapper, whose Address is
        // the page-aligned slot TryMap returned; a copy with an address inside that page names no mapping of it.
        var mapper = new InProcessGrantMapper(_m.Host, _back.Grant, new GuestFrameNumber(MapGfn), 2);
        uint gref = Grant(5);
        Assert.Equal(GrantStatus.Okay, mapper.TryMap(1, gref, false, out GrantMapping mapping));
        GrantMapping inside = mapping with { Address = mapping.Address + 8 };
        Assert.Throws<ArgumentException>(() => mapper.GetPage(inside));
        Assert.Throws<ArgumentException>(() => mapper.GetReadOnlyPage(inside));
        Assert.Equal(GrantStatus.GeneralError, mapper.Unmap(inside));
        Assert.True(_share.IsForeignAccessInUse(gref));
        Assert.Equal(GrantStatus.Okay, mapper.Unmap(mapping));
        Assert.False(_share.IsForeignAccessInUse(gref));
    }

    [Fact]
    public void Remove_from_physmap_of_a_grant_mapped_slot_is_busy_not_no_table_frame()
    {
        // GrantTableHost.RemoveTableFrame (the grant-table part of XENMEM_remove_from_physmap): a slot holding a grant
        // mapping answers -EBUSY and keeps it (GNTTABOP_unmap_grant_ref removes those); -ENOENT would tell the
        // hypervisor's handler the slot holds RAM to remove itself, taking the mapping out behind the maptrack entry.
        uint gref = Grant(5);
        GnttabMapGrantRef op = Map(gref, GrantMapFlags.HostMap);
        Assert.Equal(0, op.Status);
        Assert.Equal(XenErrno.EBUSY.Negated(), _m.Host.RemoveTableFrame(_back.Grant, new GuestFrameNumber(MapGfn)));
        Assert.True(_m.Host.IsGrantMapping(_back.Grant, new GuestFrameNumber(MapGfn)));
        var empty = new GuestFrameNumber(MapGfn + 1);
        Assert.Equal(XenErrno.ENOENT.Negated(), _m.Host.RemoveTableFrame(_back.Grant, empty));
        Assert.Equal(0, Unmap(op.Handle));
    }

    [Fact]
    public void A_sub_page_grant_a_copy_call_holds_between_operations_cannot_be_mapped()
    {
        // map_grant_ref: an entry already pinned is refused when act->is_sub_page (GNTST_general_error), as well as
        // for another grantee or a pin counter near overflow; gnttab_copy keeps its pin on the source across
        // operations (acquire_grant_for_copy), so a map between them finds the sub-page pin and must not map the page.
        var v = new GnttabSetVersion { Version = 2 };
        Assert.Equal(0, _m.Host.SetVersion(_front.Grant, ref v));
        uint gref = Grant(5);
        _front.MakeSubPage(gref, 100, 50);

        for (int i = 0; i < 2; i++)
        {
            Put(_back, Buffer + ((ulong)i * 40), new GnttabCopy
            {
                Source = new() { Ref = gref, DomId = 1, Offset = 100 },
                Dest = new() { Gmfn = (ulong)(7 + i), DomId = DomainId.Self },
                Len = 8,
                Flags = (ushort)GrantCopyFlags.SourceGref,
                Status = 99,
            });
        }

        short mapStatus = 99;
        bool pinned = false;
        _dispatcher.PreemptCheck = _ =>
        {
            if (mapStatus == 99)
            {
                pinned = _front.Grant.GetPinCount(gref) != 0;
                mapStatus = Map(gref, GrantMapFlags.HostMap | GrantMapFlags.ReadOnly).Status;
            }

            return false;
        };
        long rc = GrantTableCall.Invoke(_dispatcher, _back, (ulong)GrantTableOp.Copy, Buffer, 2, HypercallAbi.Native64,
            out _);
        Assert.Equal(0, rc);
        Assert.True(pinned);
        Assert.Equal((short)GrantStatus.GeneralError, mapStatus);
        Assert.False(_back.Ept.TryLookup(new GuestFrameNumber(MapGfn), out _, out _));
        Assert.Equal(0, _back.Grant.MappingCount);
        Assert.Equal(0u, _front.Grant.GetPinCount(gref));
    }

    [Fact]
    public void A_table_frame_placed_past_the_guest_physical_address_space_is_EINVAL()
    {
        // XENMAPSPACE_grant_table at a gpfn a 4-level EPT cannot hold (2^36 and up): ept_set_entry refuses a gfn past
        // the EPT's levels with -EINVAL, so the add_to_physmap fails with an errno and the frame stays unplaced.
        const ulong firstPast = 1UL << 36;
        long rc = 0;
        Assert.Null(Record.Exception(() => rc = _m.Host.AddToPhysmap(_back.Grant, 0, new GuestFrameNumber(firstPast))));
        Assert.Equal(XenErrno.EINVAL.Negated(), rc);
        Assert.Equal(0, _m.Host.AddToPhysmap(_back.Grant, 0, new GuestFrameNumber(firstPast - 1)));
        Assert.True(_back.Ept.TryLookup(new GuestFrameNumber(firstPast - 1), out MachineFrameNumber frame, out _));
        Assert.Equal(_back.Grant.GetSharedFrame(0), frame);
    }
}
