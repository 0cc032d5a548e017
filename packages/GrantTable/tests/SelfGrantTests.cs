using VmmKit.Ept;
using VmmKit.Hypercall;

namespace VmmKit.GrantTable.Tests;

/// <summary>A domain granting to itself: the grant rules hold as for any grantee (ModelTests seed 8akmRABYrCA1).</summary>
public class SelfGrantTests
{
    [Theory]
    [InlineData(1u)]
    [InlineData(2u)]
    public void A_copy_into_a_read_only_grant_that_its_grantee_has_mapped_read_only_fails(uint version)
    {
        using var m = new TestMachine(12UL << 20);
        var d = m.AddDomain(3, new GrantTableLimits(4, 1));
        var v = new GnttabSetVersion { Version = version };
        Assert.Equal(0, m.Host.SetVersion(d.Grant, ref v));
        var share = new InProcessGrantShare(m.Host, d.Grant);
        var mapper = new InProcessGrantMapper(m.Host, d.Grant, new GuestFrameNumber(0x100), 8);

        Assert.True(share.TryGrantForeignAccess(3, 1, true, out uint gref));
        Assert.Equal(GrantStatus.Okay, mapper.TryMap(3, gref, true, out _));
        var op = new GnttabCopy
        {
            Source = new GnttabCopyPtr { Gmfn = 2, DomId = DomainId.Self },
            Dest = new GnttabCopyPtr { Ref = gref, DomId = 3 },
            Len = 16,
            Flags = (ushort)GrantCopyFlags.DestGref,
        };
        Span<GnttabCopy> ops = [op];
        mapper.Copy(ops);
        Assert.Equal(GrantStatus.GeneralError, (GrantStatus)ops[0].Status);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void A_writable_self_mapping_unmapped_and_ended_leaves_no_write_pin_for_a_read_only_regrant(bool readOnlyMap)
    {
        using var m = new TestMachine(12UL << 20);
        var d = m.AddDomain(3, new GrantTableLimits(4, 1));
        var share = new InProcessGrantShare(m.Host, d.Grant);
        var mapper = new InProcessGrantMapper(m.Host, d.Grant, new GuestFrameNumber(0x100), 8);

        Assert.True(share.TryGrantForeignAccess(3, 1, false, out uint gref));
        Assert.Equal(GrantStatus.Okay, mapper.TryMap(3, gref, readOnlyMap, out GrantMapping map));
        Assert.Equal(GrantStatus.Okay, mapper.Unmap(map));
        Assert.True(share.EndForeignAccess(gref));

        Assert.True(share.TryGrantForeignAccess(3, 1, true, out uint again));
        var op = new GnttabCopy
        {
            Source = new GnttabCopyPtr { Gmfn = 2, DomId = DomainId.Self },
            Dest = new GnttabCopyPtr { Ref = again, DomId = 3 },
            Len = 16,
            Flags = (ushort)GrantCopyFlags.DestGref,
        };
        Span<GnttabCopy> ops = [op];
        mapper.Copy(ops);
        Assert.Equal(GrantStatus.GeneralError, (GrantStatus)ops[0].Status);
    }
}
