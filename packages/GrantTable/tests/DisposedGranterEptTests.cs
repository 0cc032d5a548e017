using VmmKit.Ept;
using VmmKit.Hypercall;

namespace VmmKit.GrantTable.Tests;

/// <summary>
/// A VMM that disposes a granter's EPT before <see cref="GrantTableHost.DestroyDomain"/> (the wrong order, README's
/// wiring table): a healthy grantee's map or copy of that granter's grant must still get a status, with nothing
/// left pinned or flagged, rather than an exception from the disposed EPT; so must a map by a grantee whose own EPT went.
/// </summary>
public sealed class DisposedGranterEptTests : IDisposable
{
    private readonly TestMachine _m = new();

    public void Dispose() => _m.Dispose();

    [Fact]
    public void Map_and_copy_of_a_grant_whose_granters_ept_was_disposed_get_bad_page_and_leave_nothing()
    {
        TestDomain front = _m.AddDomain(1), back = _m.AddDomain(2);
        var share = new InProcessGrantShare(_m.Host, front.Grant);
        Assert.True(share.TryGrantForeignAccess(2, 5, readOnly: false, out uint gref));
        front.Ept.Dispose(); // the VMM tears the EPT down before DestroyDomain

        var map = new GnttabMapGrantRef { HostAddr = 0x2000UL << 12, Flags = (uint)GrantMapFlags.HostMap, Ref = gref, Dom = 1 };
        Exception? mapEx = Record.Exception(() => _m.Host.MapGrantRef(back.Grant, ref map));
        var copy = new GnttabCopy
        {
            Source = new() { Ref = gref, DomId = 1 },
            Dest = new() { Gmfn = 0, DomId = DomainId.Self },
            Len = 8,
            Flags = (ushort)GrantCopyFlags.SourceGref,
        };
        Exception? copyEx = Record.Exception(() => _m.Host.Copy(back.Grant, ref copy));

        Assert.Null(mapEx);
        Assert.Null(copyEx);
        Assert.Equal((short)GrantStatus.BadPage, map.Status);
        Assert.Equal((short)GrantStatus.BadPage, copy.Status);
        Assert.Equal(0, back.Grant.MappingCount);
        Assert.Equal(0u, front.Grant.GetPinCount(gref));
        Assert.False(share.IsForeignAccessInUse(gref));
    }

    [Fact]
    public void A_map_by_a_grantee_whose_ept_was_disposed_gets_a_status_and_leaves_nothing_pinned()
    {
        // The same wrong order on the grantee's side (its EPT gone while it still maps): Xen's create_grant_p2m_mapping
        // fails and map_grant_ref undoes the pin (undo_out), GNTST_general_error.
        TestDomain front = _m.AddDomain(1), back = _m.AddDomain(2);
        var share = new InProcessGrantShare(_m.Host, front.Grant);
        Assert.True(share.TryGrantForeignAccess(2, 5, readOnly: false, out uint gref));
        back.Ept.Dispose();

        var map = new GnttabMapGrantRef { HostAddr = 0x2000UL << 12, Flags = (uint)GrantMapFlags.HostMap, Ref = gref, Dom = 1 };
        Exception? mapEx = Record.Exception(() => _m.Host.MapGrantRef(back.Grant, ref map));

        Assert.Null(mapEx);
        Assert.Equal((short)GrantStatus.GeneralError, map.Status);
        Assert.Equal(0, back.Grant.MappingCount);
        Assert.Equal(0u, front.Grant.GetPinCount(gref));
        Assert.False(share.IsForeignAccessInUse(gref));
        Assert.Equal(0, _m.Frames.ReferenceCount(front.Ram[5]));
    }
}
