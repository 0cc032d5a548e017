using VmmKit.Dom0.Xen;
using VmmKit.Dom0.Xen.Abi;
using VmmKit.EventChannel;
using VmmKit.Hypercall;

namespace VmmKit.Dom0.Tests;

/// <summary>Slice step 3: the toolstack's domctl/sysctl subset from a Dom0 process, against <c>vmmkit-hv host</c>.</summary>
public sealed class DomctlTests
{
    [Fact]
    public void Create_populate_inspect_and_destroy_a_domain()
    {
        using var host = HostProcess.Start();
        using var channel = host.Connect();
        var xc = new XenControl(new Privcmd(channel));
        Assert.Equal((4, 17), xc.Version());
        var (_, freeBefore) = xc.PhysInfo();
        // Both grant-table ABIs, so CreateDomain sends grant_opts = XEN_DOMCTL_GRANT_version(2), as xl 4.17 would.
        Assert.Equal(ToolsAbi.PhysCapGnttabV1 | ToolsAbi.PhysCapGnttabV2, xc.PhysCapabilities() & (ToolsAbi.PhysCapGnttabV1 | ToolsAbi.PhysCapGnttabV2));

        var uuid = Guid.NewGuid();
        ushort domid = xc.CreateDomain(uuid);
        Assert.Equal(1, domid);
        var info = xc.GetDomainInfo(domid)!;
        Assert.True(info.Paused);
        Assert.Equal(uuid, info.Handle);
        Assert.Equal(0u, info.OnlineVcpus);

        xc.SetMaxMemory(domid, 64);   // 16 pages
        ulong[] gfns = [.. Enumerable.Range(0, 16).Select(i => (ulong)i)];
        xc.PopulatePhysmap(domid, gfns);
        var e = Assert.Throws<XenException>(() => xc.PopulatePhysmap(domid, [16]));   // past max_mem
        Assert.Equal(XenErrno.ENOMEM, e.Errno);
        Assert.Equal(16ul, xc.GetDomainInfo(domid)!.MaxPages);
        Assert.Equal([0, 1], xc.ListDomains().Select(d => (int)d.Domid));

        // Foreign-map the new domain's RAM: Dom0 writes, the frames are the domain's.
        Span<long> mfns = stackalloc long[16];
        xc.Privcmd.MmapBatch(domid, gfns, mfns);
        Assert.All(mfns.ToArray(), m => Assert.True(m > 0));
        channel.Frame((ulong)mfns[3])[0] = 0x42;

        xc.SetHvmParam(domid, HvmParam.StorePfn, 15);
        Assert.Equal(15ul, xc.GetHvmParam(domid, HvmParam.StorePfn));
        uint port = xc.AllocUnbound(domid, 0);
        Assert.True(port > 0);

        // Destroyed while Dom0 maps its frames: those frames stay allocated until Dom0 unmaps them, and the domain
        // stays a zombie until then (Xen keeps a dead domain in its list until its last page goes): listed as dying
        // with the pages it has left, destroyed again without error.
        xc.DestroyDomain(domid);
        DomainInfo zombie = Assert.IsType<DomainInfo>(xc.GetDomainInfo(domid));
        Assert.True(zombie.Dying);
        Assert.Equal(16ul, zombie.TotalPages);
        Assert.Equal([0, domid], xc.ListDomains().Select(d => (int)d.Domid));
        xc.DestroyDomain(domid);
        Assert.True(xc.PhysInfo().FreePages < freeBefore);
        Assert.Equal(0x42, channel.Frame((ulong)mfns[3])[0]);
        Assert.Equal(0, xc.Privcmd.Unmap([.. mfns.ToArray().Select(m => (ulong)m)]));
        Assert.Equal(freeBefore, xc.PhysInfo().FreePages);
        Assert.Null(xc.GetDomainInfo(domid));
        Assert.Equal([0], xc.ListDomains().Select(d => (int)d.Domid));
    }

    [Fact]
    public void Add_to_physmap_on_another_domain_places_only_grant_table_frames_and_never_over_its_RAM()
    {
        using var host = HostProcess.Start();
        using var channel = host.Connect();
        var xc = new XenControl(new Privcmd(channel));
        ushort domid = xc.CreateDomain(Guid.NewGuid());
        xc.SetMaxMemory(domid, 64);
        xc.PopulatePhysmap(domid, [.. Enumerable.Range(0, 16).Select(i => (ulong)i)]);

        // xc_dom_gnttab_hvm_seed: frame 0 at the gfn above RAM, then seen through a foreign map (zeroed entries).
        xc.AddToPhysmap(domid, XenMapSpace.GrantTable, 0, 16);
        Span<long> mfn = stackalloc long[1];
        xc.Privcmd.MmapBatch(domid, [16], mfn);
        Assert.True(mfn[0] > 0);
        Assert.True(channel.Frame((ulong)mfn[0])[..16].IndexOfAnyExcept((byte)0) < 0);
        Assert.Equal(0, xc.Privcmd.Unmap([(ulong)mfn[0]]));
        xc.AddToPhysmap(domid, XenMapSpace.GrantTable, 0, 16);   // again at the same place: nothing changes

        Assert.Equal(XenErrno.EBUSY, Assert.Throws<XenException>(() => xc.AddToPhysmap(domid, XenMapSpace.GrantTable, 0, 3)).Errno);
        Assert.Equal(XenErrno.ENOSYS, Assert.Throws<XenException>(() => xc.AddToPhysmap(domid, XenMapSpace.SharedInfo, 0, 17)).Errno);
        Assert.Equal(XenErrno.EINVAL, Assert.Throws<XenException>(() => xc.AddToPhysmap(domid, XenMapSpace.GrantTable, 1 << 20, 18)).Errno);
        Assert.Equal(XenErrno.ESRCH, Assert.Throws<XenException>(() => xc.AddToPhysmap(77, XenMapSpace.GrantTable, 0, 16)).Errno);
        xc.DestroyDomain(domid);
    }

    [Fact]
    public void Pause_unpause_and_errors_follow_Xen()
    {
        using var host = HostProcess.Start();
        using var channel = host.Connect();
        var xc = new XenControl(new Privcmd(channel));
        ushort domid = xc.CreateDomain(Guid.NewGuid());
        xc.Unpause(domid);
        Assert.False(xc.GetDomainInfo(domid)!.Paused);
        Assert.Equal(XenErrno.EINVAL, Assert.Throws<XenException>(() => xc.Unpause(domid)).Errno);   // not paused
        xc.Pause(domid);
        Assert.True(xc.GetDomainInfo(domid)!.Paused);
        Assert.Equal(XenErrno.EINVAL, Assert.Throws<XenException>(() => xc.DestroyDomain(0)).Errno); // not itself
        Assert.Equal(XenErrno.ESRCH, Assert.Throws<XenException>(() => xc.SetMaxMemory(77, 1024)).Errno);
        Assert.Equal(XenErrno.ESRCH, Assert.Throws<XenException>(() => xc.GetHvmParam(77, HvmParam.StorePfn)).Errno);
        Assert.Equal(XenErrno.EEXIST, Assert.Throws<XenException>(() => xc.CreateDomain(Guid.NewGuid(), domid: domid)).Errno);
        Assert.Equal(XenErrno.EINVAL, Assert.Throws<XenException>(() => xc.CreateDomain(Guid.NewGuid(), maxVcpus: 0)).Errno);

        // A domctl Xen has but this hypervisor does not offer, and a wrong interface version.
        var privcmd = xc.Privcmd;
        using var b = privcmd.Buffers.Rent(144);
        b.As<XenDomctl>() = new XenDomctl { Cmd = 16 /* scheduler_op */, InterfaceVersion = ToolsAbi.DomctlInterfaceVersion, Domain = domid };
        Assert.Equal(XenErrno.ENOSYS.Negated(), privcmd.Hypercall(HypercallNumber.Domctl, b.Address));
        // getvcpucontext of a vCPU that has no context yet (Xen's -ENODATA), then of one past max_vcpus (-EINVAL).
        b.As<XenDomctl>() = new XenDomctl { Cmd = ToolsAbi.DomctlGetVcpuContext, InterfaceVersion = ToolsAbi.DomctlInterfaceVersion, Domain = domid };
        Assert.Equal(XenErrno.ENODATA.Negated(), privcmd.Hypercall(HypercallNumber.Domctl, b.Address));
        b.As<XenDomctl>() = new XenDomctl { Cmd = ToolsAbi.DomctlGetVcpuContext, InterfaceVersion = ToolsAbi.DomctlInterfaceVersion, Domain = domid, VcpuContextVcpu = 1 };
        Assert.Equal(XenErrno.EINVAL.Negated(), privcmd.Hypercall(HypercallNumber.Domctl, b.Address));
        // sethvmcontext through the channel: an empty stream has no HEADER (hvm_load's -ENODATA).
        b.As<XenDomctl>() = new XenDomctl { Cmd = ToolsAbi.DomctlSetHvmContext, InterfaceVersion = ToolsAbi.DomctlInterfaceVersion, Domain = domid };
        Assert.Equal(XenErrno.ENODATA.Negated(), privcmd.Hypercall(HypercallNumber.Domctl, b.Address));
        b.As<XenDomctl>() = new XenDomctl { Cmd = ToolsAbi.DomctlPauseDomain, InterfaceVersion = 0x14, Domain = domid };
        Assert.Equal(XenErrno.EACCES.Negated(), privcmd.Hypercall(HypercallNumber.Domctl, b.Address));
        Assert.Equal(XenErrno.EFAULT.Negated(), privcmd.Hypercall(HypercallNumber.Domctl, 1ul << 40));
    }

    [Fact]
    public async Task VIRQ_DOM_EXC_tells_Dom0_a_domain_shut_down()
    {
        using var host = HostProcess.Start();
        using var channel = host.Connect();
        var privcmd = new Privcmd(channel);
        var xc = new XenControl(privcmd);
        using var evtchn = new XenEvtchn(privcmd);
        uint port = evtchn.BindVirq(Virq.DomExc);
        ushort domid = xc.CreateDomain(Guid.NewGuid());
        xc.Shutdown(domid, ShutdownReason.Poweroff);
        using var timeout = new CancellationTokenSource(20000);
        Assert.Equal(port, await evtchn.PendingAsync(timeout.Token));
        var info = xc.GetDomainInfo(domid)!;
        Assert.True(info.Shutdown);
        Assert.Equal((uint)ShutdownReason.Poweroff, info.ShutdownReason);
    }
}
