using VmmKit.Ept;
using VmmKit.Hypercall;

namespace VmmKit.GrantTable.Tests;

/// <summary>
/// A review of the grant table itself (setup_table, query_size, set_version, get_version, get_status_frames,
/// XENMAPSPACE_grant_table, XENMEM_remove_from_physmap of a table frame) against Xen 4.17's grant_table.c and
/// memory.c: what no other test pinned. Each test names the Xen function its rule comes from.
/// </summary>
public sealed class TableReviewTests : IDisposable
{
    private readonly TestMachine _m = new();
    private readonly TestDomain _front;
    private readonly TestDomain _back;

    public TableReviewTests()
    {
        _front = _m.AddDomain(1);
        _back = _m.AddDomain(2);
    }

    public void Dispose() => _m.Dispose();

    /// <summary>
    /// xenmem_add_to_physmap_one (x86): a page at the slot that is not special (not a hypervisor page) goes through
    /// guest_remove_page, whose get_page(page, d) fails for a page another domain owns, a control domain's foreign
    /// mapping of it: -ENXIO, before the table frame leaves the place it had, and the slot keeps its page. The foreign mapping is the hypervisor's (its reference and
    /// its record), so the table frame must not silently take its place.
    /// </summary>
    [Fact]
    public void A_table_frame_is_not_placed_over_a_foreign_mapping_of_another_domains_page()
    {
        var slot = new GuestFrameNumber(0x2000);
        MachineFrameNumber foreign = _front.Ram[7];
        Assert.True(_m.Frames.TryAcquire(foreign, new FrameOwner(1))); // the control domain's privcmd mapping
        _back.Ept.Map(slot.Address, foreign, 1, EptAccess.Read | EptAccess.Write);
        Assert.Equal(0, _m.Host.AddToPhysmap(_back.Grant, 0, new GuestFrameNumber(0x3000)));

        Assert.Equal(XenErrno.ENXIO.Negated(), _m.Host.AddToPhysmap(_back.Grant, 0, slot));

        Assert.True(_back.Ept.TryLookup(slot, out MachineFrameNumber still, out _));
        Assert.Equal(foreign, still);
        Span<ulong> frames = stackalloc ulong[1];
        Assert.Equal(GrantStatus.Okay, _m.Host.SetupTable(_back.Grant, false, DomainId.Self, 1, frames));
        Assert.Equal(0x3000UL, frames[0]); // refused before the frame left its place
        Assert.True(_back.Ept.TryLookup(new GuestFrameNumber(0x3000), out MachineFrameNumber table, out _));
        Assert.Equal(_back.Grant.GetSharedFrame(0), table);
        Assert.Equal(XenErrno.ENOENT.Negated(), _m.Host.RemoveTableFrame(_back.Grant, slot));
        Assert.True(_m.Memory.TryGetOwner(foreign, out FrameOwner owner));
        Assert.Equal(new FrameOwner(1), owner);
        Assert.Equal(1, _m.Frames.ReferenceCount(foreign));

        // gnttab_map_frame runs first: an index past the table grows it even though the slot then refuses the frame.
        Assert.Equal(XenErrno.ENXIO.Negated(), _m.Host.AddToPhysmap(_back.Grant, 3, slot));
        Assert.Equal(4, _back.Grant.SharedFrameCount);
        Assert.True(_back.Ept.TryLookup(slot, out still, out _));
        Assert.Equal(foreign, still);
    }

    /// <summary>
    /// gnttab_set_version, v2 to v1: a reserved GTF_permit_access entry keeps its header flags (GTF_sub_page,
    /// GTF_readonly) ORed with its status and its frame cut to 32 bits; a reserved entry of any other type
    /// (GTF_accept_transfer, GTF_invalid with stale fields) is zeroed; the other entries are cleared; the status frames
    /// leave (gnttab_unpopulate_status_frames), so get_status_frames has none to report.
    /// </summary>
    [Fact]
    public unsafe void Version_1_keeps_reserved_permit_access_entries_with_their_status_and_zeroes_the_other_types()
    {
        var v = new GnttabSetVersion { Version = 2 };
        Assert.Equal(0, _m.Host.SetVersion(_front.Grant, ref v));
        var e = (GrantEntryV2*)_m.Memory.GetFramePointer(_front.Grant.GetSharedFrame(0));
        var status = (ushort*)_m.Memory.GetFramePointer(_front.Grant.GetStatusFrame(0));
        e[0] = new GrantEntryV2 { Flags = (ushort)(GrantEntryFlags.PermitAccess | GrantEntryFlags.SubPage | GrantEntryFlags.ReadOnly), DomId = 2, Frame = 0x1234 };
        status[0] = (ushort)GrantEntryFlags.Reading;
        e[1] = new GrantEntryV2 { Flags = (ushort)GrantEntryFlags.AcceptTransfer, DomId = 3, Frame = 9 };
        e[2] = new GrantEntryV2 { Flags = (ushort)GrantEntryFlags.Invalid, DomId = 4, Frame = 5 };
        status[2] = (ushort)GrantEntryFlags.Writing;
        e[8] = new GrantEntryV2 { Flags = (ushort)GrantEntryFlags.PermitAccess, DomId = 2, Frame = 6 };
        Assert.Equal(0, _m.Host.AddToPhysmap(_front.Grant, GrantTableHost.GrantTableStatusIndex, new GuestFrameNumber(0x3000)));

        v.Version = 1;
        Assert.Equal(0, _m.Host.SetVersion(_front.Grant, ref v));

        var e1 = (GrantEntryV1*)_m.Memory.GetFramePointer(_front.Grant.GetSharedFrame(0));
        Assert.Equal(((ushort)(GrantEntryFlags.PermitAccess | GrantEntryFlags.SubPage | GrantEntryFlags.ReadOnly | GrantEntryFlags.Reading), (ushort)2, 0x1234u), (e1[0].Flags, e1[0].DomId, e1[0].Frame));
        Assert.Equal((0, 0, 0u), (e1[1].Flags, e1[1].DomId, e1[1].Frame));
        Assert.Equal((0, 0, 0u), (e1[2].Flags, e1[2].DomId, e1[2].Frame));
        Assert.Equal((0, 0, 0u), (e1[16].Flags, e1[16].DomId, e1[16].Frame)); // where v2 entry 8 was: cleared
        Assert.Equal(0, _front.Grant.StatusFrameCount);
        Assert.False(_front.Ept.TryLookup(new GuestFrameNumber(0x3000), out _, out _));
        Assert.Equal(GrantStatus.GeneralError, _m.Host.GetStatusFrames(_front.Grant, false, DomainId.Self, 1, new ulong[1]));
        Assert.Equal(GrantStatus.Okay, _m.Host.GetStatusFrames(_front.Grant, false, DomainId.Self, 0, []));
    }

    /// <summary>
    /// gnttab_set_version, v2 to v1: a reserved GTF_transitive entry cannot be written as a v1 entry: -ERANGE, and
    /// nothing changes (version, entries, status frames and where the guest placed them).
    /// </summary>
    [Fact]
    public unsafe void Version_1_with_a_reserved_transitive_entry_is_ERANGE_and_changes_nothing()
    {
        var v = new GnttabSetVersion { Version = 2 };
        Assert.Equal(0, _m.Host.SetVersion(_front.Grant, ref v));
        var e = (GrantEntryV2*)_m.Memory.GetFramePointer(_front.Grant.GetSharedFrame(0));
        e[7] = new GrantEntryV2 { Flags = (ushort)GrantEntryFlags.Transitive, DomId = 2, TransDomId = 3, TransGref = 1 };
        e[9] = new GrantEntryV2 { Flags = (ushort)GrantEntryFlags.PermitAccess, DomId = 2, Frame = 6 };
        Assert.Equal(0, _m.Host.AddToPhysmap(_front.Grant, GrantTableHost.GrantTableStatusIndex, new GuestFrameNumber(0x3000)));

        v.Version = 1;
        Assert.Equal(XenErrno.ERANGE.Negated(), _m.Host.SetVersion(_front.Grant, ref v));
        Assert.Equal(2u, v.Version);
        Assert.Equal((2, 1), (_front.Grant.Version, _front.Grant.StatusFrameCount));
        Assert.Equal((ushort)GrantEntryFlags.Transitive, e[7].Flags);
        Assert.Equal(6UL, e[9].Frame);
        Assert.True(_front.Ept.TryLookup(new GuestFrameNumber(0x3000), out MachineFrameNumber f, out _));
        Assert.Equal(_front.Grant.GetStatusFrame(0), f);
    }

    /// <summary>
    /// gnttab_set_version, v1 to v2: every reserved v1 entry moves whatever its type (GTF_accept_transfer here), its
    /// GTF_reading/GTF_writing into the new status frame and the rest of its flags, domid and frame into the v2 entry.
    /// </summary>
    [Fact]
    public unsafe void Version_2_moves_reserved_v1_entries_of_any_type()
    {
        var e1 = (GrantEntryV1*)_m.Memory.GetFramePointer(_front.Grant.GetSharedFrame(0));
        e1[3] = new GrantEntryV1 { Flags = (ushort)(GrantEntryFlags.AcceptTransfer | GrantEntryFlags.Writing), DomId = 5, Frame = 0xABCD };
        e1[20] = new GrantEntryV1 { Flags = (ushort)GrantEntryFlags.PermitAccess, DomId = 2, Frame = 1 };

        var v = new GnttabSetVersion { Version = 2 };
        Assert.Equal(0, _m.Host.SetVersion(_front.Grant, ref v));

        var e = (GrantEntryV2*)_m.Memory.GetFramePointer(_front.Grant.GetSharedFrame(0));
        var status = (ushort*)_m.Memory.GetFramePointer(_front.Grant.GetStatusFrame(0));
        Assert.Equal(((ushort)GrantEntryFlags.AcceptTransfer, (ushort)5, 0xABCDUL), (e[3].Flags, e[3].DomId, e[3].Frame));
        Assert.Equal((ushort)GrantEntryFlags.Writing, status[3]);
        Assert.Equal((0, 0UL), (e[10].Flags, e[10].Frame)); // where v1 entry 20 was: cleared
    }
}
