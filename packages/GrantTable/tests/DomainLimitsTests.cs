using VmmKit.Ept;
using VmmKit.Hypercall;

namespace VmmKit.GrantTable.Tests;

/// <summary>
/// Per-domain limits as Xen 4.17 sets them at XEN_DOMCTL_createdomain (<c>grant_table_init</c>): the toolstack's
/// max_grant_frames, max_maptrack_frames (negative: the host's) and highest grant version (grant_opts), checked
/// against the host's limits (Xen's <c>gnttab_max_frames</c>, <c>gnttab_max_maptrack_frames</c> and
/// <c>gnttab=max-ver</c>, which are both the defaults and the ceilings), and the domain's highest version honoured by
/// <c>GNTTABOP_set_version</c>.
/// </summary>
public sealed class DomainLimitsTests
{
    [Fact]
    public void The_two_number_limits_allow_version_2_as_xen_on_x86_does()
    {
        Assert.Equal(2, GrantTableLimits.Default.MaxVersion);
        Assert.Equal(2, new GrantTableLimits(4, 1).MaxVersion);
        Assert.Equal(GrantTableLimits.Default, new GrantTableLimits(64, 1024));
        Assert.NotEqual(GrantTableLimits.Default, GrantTableLimits.Default with { MaxVersion = 1 });
        var (frames, maptrack) = new GrantTableLimits(4, 1) { MaxVersion = 1 };
        Assert.Equal((4, 1), (frames, maptrack));
    }

    [Fact]
    public void A_host_defaults_to_xens_command_line_defaults()
    {
        using var m = new TestMachine();
        Assert.Equal(new GrantTableLimits(64, 1024) { MaxVersion = 2 }, m.Host.HostLimits);
        Assert.Equal(m.Host.HostLimits, m.AddDomain(1).Grant.Limits);
    }

    [Fact]
    public void Negative_values_take_the_hosts_limits()
    {
        using var m = new TestMachine(hostLimits: new GrantTableLimits(32, 512) { MaxVersion = 2 });
        Assert.True(m.Host.TryCreateLimits(-1, -1, 2, out GrantTableLimits l));
        Assert.Equal(new GrantTableLimits(32, 512), l);
        Assert.True(m.Host.TryCreateLimits(int.MinValue, 7, 1, out l));
        Assert.Equal(new GrantTableLimits(32, 7) { MaxVersion = 1 }, l);
        Assert.True(m.Host.TryCreateLimits(1, 0, 1, out l)); // the smallest: one frame, no maptrack
        Assert.Equal(new GrantTableLimits(1, 0) { MaxVersion = 1 }, l);
        Assert.Equal(l, m.AddDomain(1, l).Grant.Limits);
        Assert.Equal(m.Host.HostLimits, m.AddDomain(2).Grant.Limits);
    }

    [Theory]
    [InlineData(-1, -1, 0)]    // grant_table_init: "invalid grant table version 0 requested"
    [InlineData(-1, -1, 3)]    // above opt_gnttab_max_version
    [InlineData(-1, -1, 15)]
    [InlineData(-1, -1, -1)]   // no "default" version in Xen 4.17's grant_opts
    [InlineData(0, -1, 2)]     // fewer than INITIAL_NR_GRANT_FRAMES
    [InlineData(65, -1, 2)]    // above opt_max_grant_frames
    [InlineData(-1, 1025, 2)]  // above opt_max_maptrack_frames
    public void Out_of_range_requests_are_refused(int maxGrantFrames, int maxMaptrackFrames, int maxVersion)
    {
        using var m = new TestMachine();
        Assert.False(m.Host.TryCreateLimits(maxGrantFrames, maxMaptrackFrames, maxVersion, out _));
    }

    [Fact]
    public void A_host_limited_to_version_1_refuses_version_2()
    {
        using var m = new TestMachine(hostLimits: GrantTableLimits.Default with { MaxVersion = 1 });
        Assert.False(m.Host.TryCreateLimits(-1, -1, 2, out _));
        Assert.True(m.Host.TryCreateLimits(-1, -1, 1, out GrantTableLimits l));
        Assert.Equal(1, l.MaxVersion);
        Assert.Equal(1, m.AddDomain(1).Grant.Limits.MaxVersion);
    }

    [Fact]
    public void Creating_a_domain_beyond_the_hosts_limits_throws()
    {
        using var m = new TestMachine();
        var ept = new EptTables(m.Memory, new FrameOwner(3));
        Assert.Throws<ArgumentException>(() => m.Host.CreateDomain(3, ept, new GrantTableLimits(65, 1)));
        Assert.Throws<ArgumentException>(() => m.Host.CreateDomain(3, ept, new GrantTableLimits(64, 1025)));
        Assert.Throws<ArgumentException>(() => m.Host.CreateDomain(3, ept, new GrantTableLimits(4, 1) { MaxVersion = 0 }));
        Assert.Throws<ArgumentException>(() => m.Host.CreateDomain(3, ept, new GrantTableLimits(4, 1) { MaxVersion = 3 }));
        Assert.Throws<ArgumentException>(() => m.Host.CreateDomain(3, ept, default(GrantTableLimits)));
        Assert.False(m.Host.TryGetDomain(3, out _));
    }

    [Theory]
    [InlineData(0, 1, 1)]
    [InlineData(1025, 1, 1)]
    [InlineData(64, -1, 1)]
    [InlineData(64, 1025, 1)]
    [InlineData(64, 1024, 0)]
    [InlineData(64, 1024, 3)]
    public void A_host_refuses_limits_it_cannot_honour(int frames, int maptrack, int version)
    {
        using var memory = new MachineMemory(1 << 20);
        var refs = new FrameReferences(memory);
        Assert.Throws<ArgumentOutOfRangeException>(() => new GrantTableHost(refs, new GrantTableLimits(frames, maptrack) { MaxVersion = version }));
    }

    [Fact]
    public void Set_version_2_is_ENOSYS_for_a_domain_limited_to_version_1()
    {
        // gnttab_set_version: "if ( op.version == 2 && gt->max_version == 1 ) goto out;" with res = -ENOSYS, and the
        // out path writes the version in force back.
        using var m = new TestMachine();
        TestDomain d = m.AddDomain(1, GrantTableLimits.Default with { MaxVersion = 1 });
        var v = new GnttabSetVersion { Version = 2 };
        Assert.Equal(XenErrno.ENOSYS.Negated(), m.Host.SetVersion(d.Grant, ref v));
        Assert.Equal((1u, 1, 0), (v.Version, d.Grant.Version, d.Grant.StatusFrameCount));
        v = new GnttabSetVersion { Version = 1 };
        Assert.Equal(0, m.Host.SetVersion(d.Grant, ref v));
        v = new GnttabSetVersion { Version = 3 };
        Assert.Equal(XenErrno.EINVAL.Negated(), m.Host.SetVersion(d.Grant, ref v)); // checked first
        Assert.Equal(1u, v.Version);

        TestDomain other = m.AddDomain(2);
        v = new GnttabSetVersion { Version = 2 };
        Assert.Equal(0, m.Host.SetVersion(other.Grant, ref v));
        Assert.Equal(2, other.Grant.Version);
    }

    [Fact]
    public void Query_size_reports_the_domains_own_maximum()
    {
        using var m = new TestMachine();
        TestDomain d = m.AddDomain(1, new GrantTableLimits(4, 1));
        var q = new GnttabQuerySize { Dom = DomainId.Self };
        m.Host.QuerySize(d.Grant, false, ref q);
        Assert.Equal(((short)GrantStatus.Okay, 1u, 4u), (q.Status, q.NrFrames, q.MaxNrFrames));
    }
}
