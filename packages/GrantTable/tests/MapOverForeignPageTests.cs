using VmmKit.Ept;

namespace VmmKit.GrantTable.Tests;

/// <summary>
/// map_grant_ref at a slot holding another domain's page (a control domain's foreign mapping). Xen's
/// create_grant_p2m_mapping goes through guest_physmap_add_entry, which refuses to replace a grant or foreign entry
/// ("Really shouldn't be unmapping grant/foreign maps this way": domain_crash, -EINVAL, so GNTST_general_error).
/// Replacing it silently would drop the hypervisor's record of that mapping (and the reference it holds) from under it.
/// </summary>
public sealed unsafe class MapOverForeignPageTests : IDisposable
{
    private const ulong ForeignSlot = 0x800; // outside the grantee's RAM
    private readonly TestMachine _m = new();
    private readonly TestDomain _front;
    private readonly TestDomain _back;
    private readonly TestDomain _other;
    private readonly InProcessGrantShare _share;

    public MapOverForeignPageTests()
    {
        _front = _m.AddDomain(1);
        _back = _m.AddDomain(2);
        _other = _m.AddDomain(3);
        _share = new InProcessGrantShare(_m.Host, _front.Grant);

        // The hypervisor maps domain 3's RAM page 5 into domain 2 (XENMEM_add_to_physmap_batch with
        // XENMAPSPACE_gmfn_foreign, as a control domain's privcmd does).
        _back.Ept.Map(new GuestFrameNumber(ForeignSlot).Address, _other.Ram[5], 1, EptAccess.Read | EptAccess.Write);
    }

    public void Dispose() => _m.Dispose();

    private GnttabMapGrantRef Map(uint gref, ulong gfn, bool readOnly = false) => _m.MapGrant(_back, 1, gref, gfn, readOnly);

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void A_map_over_another_domains_page_fails_and_changes_nothing(bool readOnly)
    {
        Assert.True(_share.TryGrantForeignAccess(2, 7, readOnly, out uint gref));
        ushort flagsBefore = Header(gref);

        GnttabMapGrantRef op = Map(gref, ForeignSlot, readOnly);

        Assert.Equal((short)GrantStatus.GeneralError, op.Status);
        Assert.True(_back.Ept.TryLookup(new GuestFrameNumber(ForeignSlot), out MachineFrameNumber frame, out _));
        Assert.Equal(_other.Ram[5], frame); // the foreign page is still there
        Assert.Equal(flagsBefore, Header(gref)); // no GTF_reading/GTF_writing left behind
        Assert.False(_share.IsForeignAccessInUse(gref));
        Assert.True(_share.EndForeignAccess(gref)); // no pin either
        var unmap = new GnttabUnmapGrantRef { HostAddr = ForeignSlot << 12, Handle = op.Handle };
        _m.Host.UnmapGrantRef(_back.Grant, ref unmap);
        Assert.NotEqual((short)GrantStatus.Okay, unmap.Status); // no handle was issued
    }

    [Fact]
    public void A_map_over_the_grantees_own_RAM_or_an_empty_slot_still_works()
    {
        Assert.True(_share.TryGrantForeignAccess(2, 7, false, out uint gref));
        Assert.Equal((short)GrantStatus.Okay, Map(gref, 4).Status); // its own RAM page 4: replaced, as Xen does
        Assert.True(_share.TryGrantForeignAccess(2, 8, false, out uint other));
        Assert.Equal((short)GrantStatus.Okay, Map(other, ForeignSlot + 1).Status);
    }

    private ushort Header(uint gref) =>
        Volatile.Read(ref ((GrantEntryV1*)_m.Memory.GetFramePointer(_front.Grant.GetSharedFrame(0)) + gref)->Flags);
}
