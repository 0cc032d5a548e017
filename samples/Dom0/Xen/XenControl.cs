using System.Runtime.CompilerServices;
using VmmKit.Dom0.Xen.Abi;
using VmmKit.Hypercall;

namespace VmmKit.Dom0.Xen;

/// <summary>
/// A typed toolstack interface in the manner of libxenctrl (<c>xc_interface</c>): domctl, sysctl and the hypercalls
/// that act on other domains, with Xen's structs in Dom0's memory. Failures throw <see cref="XenException"/>.
/// </summary>
public sealed class XenControl
{
    private readonly Privcmd _privcmd;

    /// <summary>A control interface over <paramref name="privcmd"/>.</summary>
    public XenControl(Privcmd privcmd) => _privcmd = privcmd;

    /// <summary>The privcmd handle.</summary>
    public Privcmd Privcmd => _privcmd;

    /// <summary><c>xc_version(XENVER_version)</c>: (major, minor).</summary>
    public (int Major, int Minor) Version()
    {
        long v = XenException.Check(_privcmd.Hypercall(HypercallNumber.XenVersion, (ulong)XenVersionCommand.Version), "xen_version");
        return ((int)(v >> 16), (int)(v & 0xFFFF));
    }

    /// <summary>
    /// <c>xc_domain_create</c>: a PVH domain (CDF_hvm | CDF_hap), paused, with <paramref name="maxVcpus"/>; returns its
    /// domid. The grant-table fields are xl 4.17's defaults: max_grant_frames and max_maptrack_frames -1 (the
    /// hypervisor's), and grant_opts the highest version physinfo reports (<c>libxl__domain_build_info_setdefault</c>:
    /// 2 with XEN_SYSCTL_PHYSCAP_gnttab_v2, else 1 with gnttab_v1, else 0, which Xen refuses).
    /// </summary>
    public ushort CreateDomain(Guid handle, uint maxVcpus = 1, ushort domid = 0)
    {
        uint caps = PhysCapabilities();
        uint maxGrantVersion = (caps & ToolsAbi.PhysCapGnttabV2) != 0 ? 2u : (caps & ToolsAbi.PhysCapGnttabV1) != 0 ? 1u : 0u;
        var op = Domctl(ToolsAbi.DomctlCreateDomain, domid);
        op.CreateDomain = new XenDomctlCreateDomain
        {
            Handle = handle, Flags = ToolsAbi.CdfHvm | ToolsAbi.CdfHap, MaxVcpus = maxVcpus, MaxEvtchnPort = 1023,
            MaxGrantFrames = -1, MaxMaptrackFrames = -1, GrantOpts = maxGrantVersion & ToolsAbi.GrantVersionMask, CpupoolId = 0,
        };
        Call(ref op, "createdomain");
        return op.Domain;
    }

    /// <summary><c>xc_domain_destroy</c>.</summary>
    public void DestroyDomain(ushort domid) => Simple(ToolsAbi.DomctlDestroyDomain, domid, "destroydomain");

    /// <summary><c>xc_domain_pause</c>.</summary>
    public void Pause(ushort domid) => Simple(ToolsAbi.DomctlPauseDomain, domid, "pausedomain");

    /// <summary><c>xc_domain_unpause</c>.</summary>
    public void Unpause(ushort domid) => Simple(ToolsAbi.DomctlUnpauseDomain, domid, "unpausedomain");

    /// <summary><c>xc_domain_setmaxmem</c>, in KiB.</summary>
    public void SetMaxMemory(ushort domid, ulong kib)
    {
        var op = Domctl(ToolsAbi.DomctlMaxMem, domid);
        op.MaxMemKb = kib;
        Call(ref op, "max_mem");
    }

    /// <summary><c>xc_domain_getinfo_single</c>: the domain, or null when there is none with that id.</summary>
    public DomainInfo? GetDomainInfo(ushort domid)
    {
        var op = Domctl(ToolsAbi.DomctlGetDomainInfo, domid);
        long rc = Raw(ref op);
        if (rc == XenErrno.ESRCH.Negated())
            return null;
        XenException.Check(rc, "getdomaininfo");
        return op.Domain == domid ? Convert(op.GetDomainInfo) : null;
    }

    /// <summary><c>xc_domain_getinfolist</c> from domid 0: every domain (XEN_SYSCTL_getdomaininfolist).</summary>
    public IReadOnlyList<DomainInfo> ListDomains(uint max = 256)
    {
        using var buffer = _privcmd.Buffers.Rent((int)max * 112);
        var op = new XenSysctl { Cmd = ToolsAbi.SysctlGetDomainInfoList, InterfaceVersion = ToolsAbi.SysctlInterfaceVersion, MaxDomains = max, Buffer = buffer.Address };
        Sysctl(ref op, "getdomaininfolist");
        var list = new List<DomainInfo>();
        for (int i = 0; i < op.NumDomains; i++)
            list.Add(Convert(buffer.As<XenDomctlGetDomainInfo>(i * 112)));
        return list;
    }

    /// <summary><c>xc_physinfo</c>: (total pages, free pages).</summary>
    public (ulong TotalPages, ulong FreePages) PhysInfo()
    {
        XenSysctlPhysInfo info = RawPhysInfo();
        return (info.TotalPages, info.FreePages);
    }

    /// <summary><c>xc_physinfo</c>'s capabilities: XEN_SYSCTL_PHYSCAP_* (<see cref="ToolsAbi.PhysCapGnttabV1"/>, ...).</summary>
    public uint PhysCapabilities() => RawPhysInfo().Capabilities;

    private XenSysctlPhysInfo RawPhysInfo()
    {
        var op = new XenSysctl { Cmd = ToolsAbi.SysctlPhysInfo, InterfaceVersion = ToolsAbi.SysctlInterfaceVersion };
        Sysctl(ref op, "physinfo");
        return op.PhysInfo;
    }

    /// <summary><c>xc_domain_populate_physmap_exact</c> with 4 KiB extents at <paramref name="gfns"/>.</summary>
    public void PopulatePhysmap(ushort domid, ReadOnlySpan<ulong> gfns)
    {
        const int batch = 512;   // gfns per call: one page of xen_pfn_t
        using var list = _privcmd.Buffers.Rent(batch * 8);
        using var arg = _privcmd.Buffers.Rent(Unsafe.SizeOf<XenMemoryReservation>());
        for (int start = 0; start < gfns.Length; start += batch)
        {
            var chunk = gfns.Slice(start, Math.Min(batch, gfns.Length - start));
            for (int i = 0; i < chunk.Length; i++)
                list.As<ulong>(i * 8) = chunk[i];
            arg.As<XenMemoryReservation>() = new XenMemoryReservation { ExtentStart = list.Address, NrExtents = (ulong)chunk.Length, Domid = domid };
            long done = XenException.Check(_privcmd.Hypercall(HypercallNumber.MemoryOp, ToolsAbi.MemPopulatePhysmap, arg.Address), "populate_physmap");
            if (done != chunk.Length)
                throw new XenException(XenErrno.ENOMEM, $"populate_physmap (gfn {chunk[(int)done]:x})");
        }
    }

    /// <summary><c>xc_hvm_param_set</c>.</summary>
    public void SetHvmParam(ushort domid, HvmParam index, ulong value)
    {
        using var b = _privcmd.Buffers.Rent(16);
        b.As<XenHvmParam>() = new XenHvmParam { Domid = domid, Index = (uint)index, Value = value };
        XenException.Check(_privcmd.Hypercall(HypercallNumber.HvmOp, (ulong)HvmOp.SetParam, b.Address), "hvm set_param");
    }

    /// <summary>
    /// <c>xc_domain_add_to_physmap</c> naming another domain (XENMEM_add_to_physmap): places frame <paramref name="idx"/>
    /// of <paramref name="space"/> at guest frame <paramref name="gpfn"/> of <paramref name="domid"/>.
    /// </summary>
    public void AddToPhysmap(ushort domid, XenMapSpace space, ulong idx, ulong gpfn)
    {
        using var b = _privcmd.Buffers.Rent(24);
        b.As<XenAddToPhysmap>() = new XenAddToPhysmap { Domid = domid, Space = (uint)space, Idx = idx, Gpfn = gpfn };
        XenException.Check(_privcmd.Hypercall(HypercallNumber.MemoryOp, (ulong)MemoryOp.AddToPhysmap, b.Address), "add_to_physmap");
    }

    /// <summary><c>xc_hvm_param_get</c>.</summary>
    public ulong GetHvmParam(ushort domid, HvmParam index)
    {
        using var b = _privcmd.Buffers.Rent(16);
        b.As<XenHvmParam>() = new XenHvmParam { Domid = domid, Index = (uint)index };
        XenException.Check(_privcmd.Hypercall(HypercallNumber.HvmOp, (ulong)HvmOp.GetParam, b.Address), "hvm get_param");
        return b.As<XenHvmParam>().Value;
    }

    /// <summary>
    /// <c>xc_vcpu_setcontext</c> for vCPU 0 of a PVH domain: online, at the PVH entry point with EBX = the hvm_start_info
    /// address (user_regs.rip and user_regs.rbx of a vcpu_guest_context; RFLAGS 2; docs/articles/dom0-abi.md).
    /// </summary>
    public void SetBootVcpu(ushort domid, uint entry, uint startInfo)
    {
        using var ctxt = _privcmd.Buffers.Rent(ToolsAbi.VcpuGuestContextSize);
        ref var c = ref ctxt.As<VcpuGuestContext>();
        c = default;
        c.Flags = ToolsAbi.VgcfOnline;
        c.UserRegs.Rip = entry;
        c.UserRegs.Rbx = startInfo;
        c.UserRegs.Rflags = 2;
        var op = Domctl(ToolsAbi.DomctlSetVcpuContext, domid);
        op.VcpuContextVcpu = 0;
        op.VcpuContextCtxt = ctxt.Address;
        Call(ref op, "setvcpucontext");
    }

    /// <summary><c>xc_domain_shutdown</c> (SCHEDOP_remote_shutdown) with a SHUTDOWN_* reason.</summary>
    public void Shutdown(ushort domid, ShutdownReason reason)
    {
        using var b = _privcmd.Buffers.Rent(8);
        b.As<SchedRemoteShutdown>() = new SchedRemoteShutdown { DomainId = domid, Reason = (uint)reason };
        XenException.Check(_privcmd.Hypercall(HypercallNumber.SchedOp, (ulong)SchedOp.RemoteShutdown, b.Address), "remote_shutdown");
    }

    /// <summary><c>xc_evtchn_alloc_unbound</c>: a port of <paramref name="domid"/> that <paramref name="remote"/> may bind.</summary>
    public uint AllocUnbound(ushort domid, ushort remote)
    {
        using var b = _privcmd.Buffers.Rent(8);
        b.As<VmmKit.EventChannel.EvtchnAllocUnbound>() = new VmmKit.EventChannel.EvtchnAllocUnbound { Dom = domid, RemoteDom = remote };
        XenException.Check(_privcmd.Hypercall(HypercallNumber.EventChannelOp, (ulong)VmmKit.EventChannel.EventChannelOp.AllocUnbound, b.Address), "alloc_unbound");
        return b.As<VmmKit.EventChannel.EvtchnAllocUnbound>().Port;
    }

    private static XenDomctl Domctl(uint cmd, ushort domid) =>
        new() { Cmd = cmd, InterfaceVersion = ToolsAbi.DomctlInterfaceVersion, Domain = domid };

    private void Simple(uint cmd, ushort domid, string name)
    {
        var op = Domctl(cmd, domid);
        Call(ref op, name);
    }

    private void Call(ref XenDomctl op, string name) => XenException.Check(Raw(ref op), name);

    private long Raw(ref XenDomctl op)
    {
        using var b = _privcmd.Buffers.Rent(Unsafe.SizeOf<XenDomctl>());
        b.As<XenDomctl>() = op;
        long rc = _privcmd.Hypercall(HypercallNumber.Domctl, b.Address);
        op = b.As<XenDomctl>();
        return rc;
    }

    private void Sysctl(ref XenSysctl op, string name)
    {
        using var b = _privcmd.Buffers.Rent(Unsafe.SizeOf<XenSysctl>());
        b.As<XenSysctl>() = op;
        XenException.Check(_privcmd.Hypercall(HypercallNumber.Sysctl, b.Address), name);
        op = b.As<XenSysctl>();
    }

    private static DomainInfo Convert(in XenDomctlGetDomainInfo i)
    {
        var f = (DomainInfoFlags)i.Flags;
        return new DomainInfo(i.Domain, f.HasFlag(DomainInfoFlags.Dying), f.HasFlag(DomainInfoFlags.Shutdown), f.HasFlag(DomainInfoFlags.Paused),
            f.HasFlag(DomainInfoFlags.Blocked), f.HasFlag(DomainInfoFlags.Running), i.Flags >> 16, i.TotPages, i.MaxPages, i.CpuTime,
            i.NrOnlineVcpus, i.MaxVcpuId, i.Handle);
    }
}
