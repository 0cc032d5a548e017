using VmmKit.Ept;

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
}
