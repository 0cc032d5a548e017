using VmmKit.Ept;
using VmmKit.Hypercall;

namespace VmmKit.GrantTable.Tests;

/// <summary>
/// A review of the client side (<see cref="InProcessGrantShare"/>, <see cref="InProcessGrantMapper"/>) against Linux's
/// drivers/xen/grant-table.c and gntdev.c and the rules of xen/include/public/grant_table.h: each test names the rule
/// it holds the client to.
/// </summary>
public sealed class ClientReviewTests : IDisposable
{
    private readonly TestMachine _m = new();
    private readonly TestDomain _front;
    private readonly TestDomain _other;
    private readonly TestDomain _back;
    private readonly InProcessGrantShare _share;
    private readonly InProcessGrantShare _otherShare;

    public ClientReviewTests()
    {
        _front = _m.AddDomain(1);
        _back = _m.AddDomain(2);
        _other = _m.AddDomain(3);
        _share = new InProcessGrantShare(_m.Host, _front.Grant);
        _otherShare = new InProcessGrantShare(_m.Host, _other.Grant);
    }

    public void Dispose() => _m.Dispose();

    [Fact]
    public void A_mapping_kept_past_its_unmap_does_not_reach_a_newer_mapping_of_another_grant_in_its_place()
    {
        // gntdev_ioctl_unmap_grant_ref (and gntdev's mmap) find a map by its index and refuse any other (-ENOENT), and
        // IGrantMapper.Unmap/GetPage refuse a mapping the mapper does not hold: only a newer mapping of the same place,
        // grant and handle cannot be told from a stale copy. Here the slot and the maptrack handle come back (Xen's and
        // the host's freed handle is the next one given out), but the newer mapping is of another domain's grant: the
        // stale copy must neither unmap it nor give a view of its page.
        var mapper = new InProcessGrantMapper(_m.Host, _back.Grant, new GuestFrameNumber(0x1000), 1);
        Assert.True(_share.TryGrantForeignAccess(2, 5, false, out uint frontRef));
        Assert.True(_otherShare.TryGrantForeignAccess(2, 6, false, out uint otherRef));
        _other.RamPage(6)[0] = 0x33;

        Assert.Equal(GrantStatus.Okay, mapper.TryMap(1, frontRef, false, out GrantMapping stale));
        Assert.Equal(GrantStatus.Okay, mapper.Unmap(stale));
        Assert.Equal(GrantStatus.Okay, mapper.TryMap(3, otherRef, false, out GrantMapping newer));
        Assert.Equal(stale.Address, newer.Address); // precondition: the same place and handle, another grant
        Assert.Equal(stale.Handle, newer.Handle);

        Assert.Throws<ArgumentException>(() => mapper.GetPage(stale));
        Assert.Throws<ArgumentException>(() => mapper.GetReadOnlyPage(stale));
        Assert.NotEqual(GrantStatus.Okay, mapper.Unmap(stale));
        Assert.True(_otherShare.IsForeignAccessInUse(otherRef));
        Assert.Equal(0x33, mapper.GetReadOnlyPage(newer)[0]);
        Assert.Equal(GrantStatus.Okay, mapper.Unmap(newer));
        Assert.False(_otherShare.IsForeignAccessInUse(otherRef));
    }

    [Fact]
    public void Under_v2_a_failed_end_of_access_gives_a_pinned_grantee_no_write_access_to_a_read_only_grant()
    {
        // grant_table.h: a read-only entry becomes writable only when its granter clears GTF_readonly (on purpose, with
        // an atomic bit operation). Xen's _set_status_v2 checks nothing but GTF_readonly for an entry already pinned, so
        // an end of access that clears the whole flags word while a read-only pin remains (Linux's
        // gnttab_end_foreign_access_ref_v2 writes 0) would let the grantee pin the read-only grant writable, by a map or
        // a copy into it. IGrantShare.EndForeignAccess: the grantee keeps the mappings it has, nothing more.
        UseVersion2();
        _front.RamPage(5)[0] = 0x11;
        Assert.True(_share.TryGrantForeignAccess(2, 5, readOnly: true, out uint gref));
        var mapper = new InProcessGrantMapper(_m.Host, _back.Grant, new GuestFrameNumber(0x1000), 4);
        Assert.Equal(GrantStatus.Okay, mapper.TryMap(1, gref, readOnly: true, out GrantMapping held));
        Assert.NotEqual(GrantStatus.Okay, mapper.TryMap(1, gref, readOnly: false, out _)); // precondition

        Assert.False(_share.EndForeignAccess(gref));

        Assert.NotEqual(GrantStatus.Okay, CopyInto(mapper, gref, 0x22));
        Assert.NotEqual(GrantStatus.Okay, mapper.TryMap(1, gref, readOnly: false, out _));
        Assert.Equal(0x11, _front.RamPage(5)[0]);
        Assert.Equal(GrantStatus.Okay, mapper.Unmap(held));
        Assert.True(_share.EndForeignAccess(gref));
    }

    [Fact]
    public void Under_v2_a_grant_whose_end_of_access_failed_gets_no_new_writable_pin()
    {
        // The same rule for a writable grant held by a read-only pin: once the granter began to end access (Linux's
        // gnttab_end_foreign_access_ref_v2 invalidates the entry first), the grantee keeps the access its pins have and
        // takes no new one (IGrantShare.EndForeignAccess); the page is the granter's again once those pins go.
        UseVersion2();
        Assert.True(_share.TryGrantForeignAccess(2, 5, readOnly: false, out uint gref));
        var mapper = new InProcessGrantMapper(_m.Host, _back.Grant, new GuestFrameNumber(0x1000), 4);
        Assert.Equal(GrantStatus.Okay, mapper.TryMap(1, gref, readOnly: true, out GrantMapping held));

        Assert.False(_share.EndForeignAccess(gref));

        Assert.NotEqual(GrantStatus.Okay, mapper.TryMap(1, gref, readOnly: false, out _));
        Assert.Equal(GrantStatus.Okay, mapper.TryMap(1, gref, readOnly: true, out GrantMapping second)); // pinned: Xen skips the checks
        Assert.Equal(GrantStatus.Okay, mapper.Unmap(second));
        Assert.Equal(GrantStatus.Okay, mapper.Unmap(held));
        Assert.True(_share.EndForeignAccess(gref));
        Assert.NotEqual(GrantStatus.Okay, mapper.TryMap(1, gref, readOnly: true, out _));
    }

    private void UseVersion2()
    {
        var v = new GnttabSetVersion { Version = 2 };
        Assert.Equal(0, _m.Host.SetVersion(_front.Grant, ref v));
    }

    // A copy of one byte from the backend's own frame 0 into the front's grant (GNTCOPY_dest_gref).
    private GrantStatus CopyInto(IGrantMapper mapper, uint gref, byte value)
    {
        _back.RamPage(0)[0] = value;
        Span<GnttabCopy> op =
        [
            new()
            {
                Source = new() { Gmfn = 0, DomId = DomainId.Self },
                Dest = new() { Ref = gref, DomId = 1 },
                Len = 1,
                Flags = (ushort)GrantCopyFlags.DestGref,
            },
        ];
        mapper.Copy(op);
        return (GrantStatus)op[0].Status;
    }
}
