using System.Runtime.InteropServices;
using VmmKit.Dom0.Xen.Abi;
using VmmKit.Ept;
using VmmKit.GrantTable;
using VmmKit.Hypercall;

namespace VmmKit.ReferenceHypervisor.Tests;

/// <summary>
/// The grant-table fields of XEN_DOMCTL_createdomain as Xen 4.17 takes them: max_grant_frames and max_maptrack_frames
/// (negative: the host's), grant_opts (XEN_DOMCTL_GRANT_version in its low 4 bits; any other bit refused by
/// <c>sanitise_domain_config</c>; version 0 or above the host's refused by <c>grant_table_init</c>, as are frame counts
/// of 0 or above the host's), all -EINVAL before anything of the domain is made; and XEN_SYSCTL_physinfo's
/// XEN_SYSCTL_PHYSCAP_gnttab_v1/v2, from which xl picks the version it sends.
/// </summary>
public sealed class CreateDomainGrantTests : IDisposable
{
    private readonly Machine _machine = new(64 << 20, ProcessorProviders.CreateDefault(), MachineMemoryBacking.Anonymous, inProcessBackend: false);
    private readonly GuestBuffer _memory = new(4096);
    private readonly VirtualCpu _dom0;

    public CreateDomainGrantTests()
    {
        var dom0 = new Domain(_machine, 0, "Domain-0", 1, privileged: true, upcall: null);
        _machine.AddDomain(dom0);
        dom0.SetMaxPages(16);
        Assert.Equal(0, dom0.Populate(0));
        Assert.Equal(0, dom0.InitialiseBootVcpu(0x1000, 0));
        _dom0 = dom0.Vcpus[0];
    }

    public void Dispose() => _machine.Dispose();

    private long Call(HypercallNumber op)
    {
        var regs = new HypercallRegisters { Rax = (ulong)op, Rdi = 0 };
        _machine.Hypercalls.Dispatch(_dom0, ref regs, GuestX86Mode.Long64, 0, _memory);
        return (long)regs.Rax;
    }

    private (long Rc, ushort Domid) Create(int maxGrantFrames, int maxMaptrackFrames, uint grantOpts, ushort domid = 0)
    {
        MemoryMarshal.Write(_memory.Bytes, new XenDomctl
        {
            Cmd = ToolsAbi.DomctlCreateDomain, InterfaceVersion = ToolsAbi.DomctlInterfaceVersion, Domain = domid,
            CreateDomain = new XenDomctlCreateDomain
            {
                Flags = ToolsAbi.CdfHvm | ToolsAbi.CdfHap, MaxVcpus = 1, MaxEvtchnPort = 1023,
                MaxGrantFrames = maxGrantFrames, MaxMaptrackFrames = maxMaptrackFrames, GrantOpts = grantOpts,
            },
        });
        long rc = Call(HypercallNumber.Domctl);
        return (rc, MemoryMarshal.Read<XenDomctl>(_memory.Bytes).Domain);
    }

    [Fact]
    public void What_xl_sends_by_default_gives_the_hosts_limits()
    {
        // xl 4.17: max_grant_frames = max_maptrack_frames = -1, grant_opts = XEN_DOMCTL_GRANT_version(2) when physinfo
        // reports gnttab_v2 (libxl__domain_build_info_setdefault).
        var (rc, id) = Create(-1, -1, 2);
        Assert.Equal(0, rc);
        GrantDomain g = _machine.FindDomain(id)!.Grants;
        Assert.Equal(new GrantTableLimits(64, 1024) { MaxVersion = 2 }, g.Limits);
        Assert.Equal(_machine.Grants.HostLimits, g.Limits);
    }

    [Fact]
    public void The_toolstacks_limits_are_the_domains()
    {
        var (rc, id) = Create(4, 16, 1);
        Assert.Equal(0, rc);
        GrantDomain g = _machine.FindDomain(id)!.Grants;
        Assert.Equal(new GrantTableLimits(4, 16) { MaxVersion = 1 }, g.Limits);

        var q = new GnttabQuerySize { Dom = DomainId.Self };
        _machine.Grants.QuerySize(g, false, ref q);
        Assert.Equal(((short)GrantStatus.Okay, 4u), (q.Status, q.MaxNrFrames));
        var v = new GnttabSetVersion { Version = 2 };
        Assert.Equal(XenErrno.ENOSYS.Negated(), _machine.Grants.SetVersion(g, ref v));
        Assert.Equal(1, g.Version);
    }

    [Theory]
    [InlineData(-1, -1, 0u)]           // grant_table_init: version 0
    [InlineData(-1, -1, 3u)]           // above the host's gnttab max version
    [InlineData(-1, -1, 0xFu)]
    [InlineData(-1, -1, 0x12u)]        // sanitise_domain_config: a bit outside XEN_DOMCTL_GRANT_version_mask
    [InlineData(-1, -1, 0x8000_0002u)]
    [InlineData(0, -1, 2u)]            // fewer than INITIAL_NR_GRANT_FRAMES
    [InlineData(65, -1, 2u)]           // above gnttab_max_frames
    [InlineData(-1, 1025, 2u)]         // above gnttab_max_maptrack_frames
    public void Bad_grant_fields_are_EINVAL_and_make_nothing(int maxGrantFrames, int maxMaptrackFrames, uint grantOpts)
    {
        ulong free = _machine.Memory.FreeFrames;
        var (rc, id) = Create(maxGrantFrames, maxMaptrackFrames, grantOpts, domid: 5);
        Assert.Equal(XenErrno.EINVAL.Negated(), rc);
        Assert.Equal(5, id);
        Assert.Null(_machine.FindDomain(5));
        Assert.False(_machine.Grants.TryGetDomain(5, out _));
        Assert.Equal(free, _machine.Memory.FreeFrames);
        Assert.Equal(0, Create(-1, -1, 2, domid: 5).Rc);
    }

    [Theory]
    [InlineData(-1, -1, 0x10u)] // a bit outside XEN_DOMCTL_GRANT_version_mask (sanitise_domain_config)
    [InlineData(0, -1, 2u)]     // max_grant_frames 0 (grant_table_init)
    [InlineData(-1, -1, 3u)]    // a version above the host's
    public void A_taken_domid_is_refused_before_the_grant_fields(int maxGrantFrames, int maxMaptrackFrames, uint grantOpts)
    {
        // do_domctl (xen/common/domctl.c, 4.17) answers -EEXIST for a taken id before domain_create runs
        // sanitise_domain_config and grant_table_init, which give -EINVAL.
        Assert.Equal(0, Create(-1, -1, 2, domid: 5).Rc);
        var (rc, _) = Create(maxGrantFrames, maxMaptrackFrames, grantOpts, domid: 5);
        Assert.Equal(XenErrno.EEXIST.Negated(), rc);
    }

    [Fact]
    public void Physinfo_reports_both_grant_versions()
    {
        // XEN_SYSCTL_physinfo (xen/common/sysctl.c): gnttab_v1 when opt_gnttab_max_version >= 1, gnttab_v2 when >= 2.
        MemoryMarshal.Write(_memory.Bytes, new XenSysctl { Cmd = ToolsAbi.SysctlPhysInfo, InterfaceVersion = ToolsAbi.SysctlInterfaceVersion });
        Assert.Equal(0, Call(HypercallNumber.Sysctl));
        uint caps = MemoryMarshal.Read<XenSysctl>(_memory.Bytes).PhysInfo.Capabilities;
        Assert.Equal(ToolsAbi.PhysCapGnttabV1 | ToolsAbi.PhysCapGnttabV2, caps & (ToolsAbi.PhysCapGnttabV1 | ToolsAbi.PhysCapGnttabV2));
    }
}
