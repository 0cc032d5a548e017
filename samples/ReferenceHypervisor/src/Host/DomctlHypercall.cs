using VmmKit.Dom0.Xen.Abi;
using VmmKit.Ept;
using VmmKit.GrantTable;
using VmmKit.Hypercall;

namespace VmmKit.ReferenceHypervisor.Host;

/// <summary>
/// <c>__HYPERVISOR_domctl</c> (xen/common/domctl.c): the toolstack's control of other domains, the subset a PVH domain
/// builder needs. In Xen 4.17's order: an unreadable buffer -EFAULT, an interface version not Xen 4.17's -EACCES, a missing
/// domain -ESRCH, then the dummy XSM policy: only a privileged domain (domain 0) may call it (-EPERM for any other); any
/// other command is -ENOSYS.
/// </summary>
internal static class DomctlHypercall
{
    /// <summary>Handles one domctl.</summary>
    public static long Handle(ref HypercallCall<VirtualCpu> call)
    {
        // Xen 4.17's do_domctl: the buffer (-EFAULT), the interface version (-EACCES), the domain for any command but
        // createdomain and getdomaininfo (-ESRCH), and only then xsm_domctl (-EPERM for an unprivileged caller).
        var caller = call.Caller.Domain;
        ulong arg = call.Argument(0);
        if (!call.TryCopyFromGuest(arg, out XenDomctl op))
            return XenErrno.EFAULT.Negated();
        if (op.InterfaceVersion != ToolsAbi.DomctlInterfaceVersion)
            return XenErrno.EACCES.Negated();
        var machine = caller.Machine;
        if (op.Cmd is not (ToolsAbi.DomctlCreateDomain or ToolsAbi.DomctlGetDomainInfo)
            && machine.FindDomain(op.Domain) is null && !machine.IsZombie(op.Domain))
            return XenErrno.ESRCH.Negated();
        if (!caller.IsPrivileged)
            return XenErrno.EPERM.Negated();

        long rc;
        bool copyBack = false;
        switch (op.Cmd)
        {
            case ToolsAbi.DomctlCreateDomain:
                rc = CreateDomain(machine, ref op);
                copyBack = rc == 0;
                break;
            case ToolsAbi.DomctlGetDomainInfo:
                rc = GetDomainInfo(machine, ref op);
                copyBack = rc == 0;
                break;
            case ToolsAbi.DomctlDestroyDomain when machine.IsZombie(op.Domain):
                rc = 0;                                   // domain_kill of a dead domain: nothing left to do
                break;
            case ToolsAbi.DomctlDestroyDomain:
            case ToolsAbi.DomctlPauseDomain:
            case ToolsAbi.DomctlUnpauseDomain:
            case ToolsAbi.DomctlMaxMem:
            case ToolsAbi.DomctlMaxVcpus:
            case ToolsAbi.DomctlSetVcpuContext:
            case ToolsAbi.DomctlSetHvmContext:
                if (machine.FindDomain(op.Domain) is not { } target || target.IsDying)
                    return XenErrno.ESRCH.Negated();
                rc = OnDomain(ref call, caller, target, in op);
                break;
            case ToolsAbi.DomctlGetVcpuContext:
                if (machine.FindDomain(op.Domain) is not { } owner || owner.IsDying)
                    return XenErrno.ESRCH.Negated();
                rc = VcpuContextDomctl.Get(ref call, owner, in op);
                copyBack = rc == 0;
                break;
            case ToolsAbi.DomctlGetHvmContext:
                if (machine.FindDomain(op.Domain) is not { } source || source.IsDying)
                    return XenErrno.ESRCH.Negated();
                rc = GetHvmContext(ref call, caller, source, ref op);
                copyBack = true;                          // Xen copies the size back on every path
                break;
            default:
                return XenErrno.ENOSYS.Negated();
        }

        if (copyBack && !call.TryCopyToGuest(arg, in op))
            return XenErrno.EFAULT.Negated();
        return rc;
    }

    private static long OnDomain(ref HypercallCall<VirtualCpu> call, Domain caller, Domain target, in XenDomctl op)
    {
        switch (op.Cmd)
        {
            case ToolsAbi.DomctlDestroyDomain:
                // A domain may not destroy itself (Xen: -EINVAL for the current domain).
                if (target == caller)
                    return XenErrno.EINVAL.Negated();
                Destroy(target);
                return 0;
            case ToolsAbi.DomctlPauseDomain:
                if (target == caller)
                    return XenErrno.EINVAL.Negated();
                // _domain_pause_by_systemcontroller (Xen 4.17): at most 255 toolstack pauses, -EOVERFLOW past them.
                if (target.PauseCount >= 255)
                    return XenErrno.EOVERFLOW.Negated();
                target.PauseCount++;
                return 0;
            case ToolsAbi.DomctlUnpauseDomain:
                // domain_unpause_by_systemcontroller: unpausing a domain that is not paused is -EINVAL.
                if (target == caller || target.PauseCount == 0)
                    return XenErrno.EINVAL.Negated();
                target.PauseCount--;
                return 0;
            case ToolsAbi.DomctlMaxMem:
                // max_memkb in KiB. Below what the domain has is accepted: it may "ratchet down", and no allocation
                // succeeds meanwhile (Domain.Populate).
                target.SetMaxPages(op.MaxMemKb >> 2);
                return 0;
            case ToolsAbi.DomctlMaxVcpus:
                // Since Xen 4.13 the vCPU count is fixed by createdomain; only that value is accepted.
                return op.MaxVcpus == target.MaxVcpus ? 0 : XenErrno.EINVAL.Negated();
            case ToolsAbi.DomctlSetVcpuContext:
                return VcpuContextDomctl.Set(ref call, caller, target, in op);
            case ToolsAbi.DomctlSetHvmContext:
                return SetHvmContext(ref call, caller, target, in op);
            default:
                return XenErrno.ENOSYS.Negated();
        }
    }

    /// <summary>
    /// XEN_DOMCTL_createdomain for a PVH guest (XEN_DOMCTL_CDF_hvm | XEN_DOMCTL_CDF_hap; -EINVAL otherwise): the domid
    /// asked for in <c>domain</c> when it is a free id below DOMID_FIRST_RESERVED (-EEXIST when taken), else the next
    /// free one, written back to <c>domain</c>. max_vcpus from 1 to Xen's HVM_MAX_VCPUS (<see cref="Domain.MaxGuestVcpus"/>;
    /// -EINVAL otherwise, as Xen's <c>sanitise_domain_config</c>). The grant-table fields as Xen 4.17 takes them, -EINVAL
    /// before anything is made: grant_opts with a bit outside XEN_DOMCTL_GRANT_version_mask (<c>sanitise_domain_config</c>),
    /// then <c>grant_table_init</c>'s rules (<see cref="GrantTableHost.TryCreateLimits"/>): a version of 0 or above the
    /// host's, max_grant_frames 0 or either count above the host's; a negative count is the host's. The id is picked
    /// first, as <c>do_domctl</c> picks it before <c>domain_create</c> checks the rest: a taken id is -EEXIST whatever
    /// else is wrong.
    /// </summary>
    private static long CreateDomain(Machine machine, ref XenDomctl op)
    {
        // do_domctl picks the id (-EEXIST, -ENOMEM) before domain_create checks the configuration (-EINVAL).
        ushort id;
        if (op.Domain is > 0 and < DomainId.FirstReserved)
        {
            if (machine.IsDomainIdTaken(op.Domain))
                return XenErrno.EEXIST.Negated();
            id = op.Domain;
        }
        else if (machine.AllocateDomainId() is { } free)
        {
            id = free;
        }
        else
        {
            return XenErrno.ENOMEM.Negated();
        }

        ref var c = ref op.CreateDomain;
        if ((c.Flags & ToolsAbi.CdfHvm) == 0 || (c.Flags & ~(ToolsAbi.CdfHvm | ToolsAbi.CdfHap)) != 0 || c.MaxVcpus is < 1 or > Domain.MaxGuestVcpus)
            return XenErrno.EINVAL.Negated();
        if ((c.GrantOpts & ~ToolsAbi.GrantVersionMask) != 0)
            return XenErrno.EINVAL.Negated();
        if (!machine.Grants.TryCreateLimits(c.MaxGrantFrames, c.MaxMaptrackFrames, (int)(c.GrantOpts & ToolsAbi.GrantVersionMask), out GrantTableLimits grantLimits))
            return XenErrno.EINVAL.Negated();

        Domain d;
        try
        {
            d = new Domain(machine, id, $"d{id}", c.MaxVcpus, privileged: false, upcall: null, grantLimits) { Handle = c.Handle };
        }
        catch (MachineMemoryExhaustedException)
        {
            return XenErrno.ENOMEM.Negated();
        }

        machine.AddDomain(d);
        op.Domain = id;
        return 0;
    }

    /// <summary>
    /// XEN_DOMCTL_getdomaininfo: the first domain whose id is at least <c>domain</c> (Xen 4.17's semantics, which
    /// libxc's callers check), a zombie included (<see cref="Machine.Zombies"/>), -ESRCH when none.
    /// </summary>
    private static long GetDomainInfo(Machine machine, ref XenDomctl op)
    {
        // do_domctl (Xen 4.17): no domain has a reserved id (DOMID_FIRST_RESERVED and up, DOMID_SELF included): -EINVAL.
        if (op.Domain >= DomainId.FirstReserved)
            return XenErrno.EINVAL.Negated();
        XenDomctlGetDomainInfo? found = null;
        foreach (XenDomctlGetDomainInfo info in AllInfo(machine))
        {
            if (info.Domain >= op.Domain && (found is null || info.Domain < found.Value.Domain))
                found = info;
        }

        if (found is not { } first)
            return XenErrno.ESRCH.Negated();
        op.Domain = first.Domain;
        op.GetDomainInfo = first;
        return 0;
    }

    /// <summary>
    /// getdomaininfo of every domain in Xen's domain list: the live ones and the zombies (destroyed, frames still mapped
    /// by another domain), in no particular order.
    /// </summary>
    public static IEnumerable<XenDomctlGetDomainInfo> AllInfo(Machine machine)
    {
        foreach (var d in machine.Domains)
        {
            if (!d.IsDying)
                yield return Info(d);
        }

        foreach (XenDomctlGetDomainInfo zombie in machine.Zombies())
            yield return zombie;
    }

    /// <summary>A domain's xen_domctl_getdomaininfo (Xen's <c>getdomaininfo</c>).</summary>
    public static XenDomctlGetDomainInfo Info(Domain d)
    {
        var flags = DomainInfoFlags.HvmGuest | DomainInfoFlags.Hap;
        if (d.IsDying)
            flags |= DomainInfoFlags.Dying;
        if (d.IsShutdown)
            flags |= DomainInfoFlags.Shutdown;
        if (d.PauseCount > 0)
            flags |= DomainInfoFlags.Paused;
        if (d.State == DomainState.Blocked || (d.Vcpus.Count > 0 && d.Vcpus.All(v => v.IsBlocked)))
            flags |= DomainInfoFlags.Blocked;
        else if (d.State == DomainState.Running && d.Vcpus.Count > 0)
            flags |= DomainInfoFlags.Running;
        ulong cpuNanoseconds = (ulong)d.CpuTime.Ticks * 100;
        return new XenDomctlGetDomainInfo
        {
            Domain = d.Id,
            Flags = (uint)flags | (d.IsShutdown ? d.ShutdownCode << 16 : 0),
            TotPages = d.Machine.Memory.FramesOwnedBy(d.Owner),
            MaxPages = d.MaxPages == ulong.MaxValue ? d.PopulatedPages : d.MaxPages,
            SharedInfoFrame = d.SharedInfoFrame.Value,
            CpuTime = cpuNanoseconds,
            NrOnlineVcpus = (uint)d.Vcpus.Count,
            MaxVcpuId = Math.Max(d.MaxVcpus, 1) - 1,
            Handle = d.Handle,
            GpaddrBits = 46,
        };
    }

    /// <summary>The largest stream sethvmcontext takes: HEADER, the CPU, LAPIC, LAPIC_REGS and MTRR records of every vCPU a domain may have, END.</summary>
    private const uint MaxHvmContextSize = 512 << 10;

    /// <summary>
    /// XEN_DOMCTL_gethvmcontext (xen/arch/x86/domctl.c): not of the caller itself (-EINVAL); a NULL buffer asks the size,
    /// written to <c>size</c>; a buffer smaller than the stream is -ENOSPC; otherwise the stream (Host/HvmContext.cs) is
    /// copied out and <c>size</c> is its length.
    /// </summary>
    private static long GetHvmContext(ref HypercallCall<VirtualCpu> call, Domain caller, Domain source, ref XenDomctl op)
    {
        if (source == caller)
            return XenErrno.EINVAL.Negated();
        long created = VcpuContextDomctl.EnsureVcpus(source);   // Xen's domain has its vCPUs (down) from createdomain
        if (created != 0)
            return created;
        int size = HvmContext.SaveSize(source);
        if (op.HvmContextBuffer == 0)
        {
            op.HvmContextSize = (uint)size;
            return 0;
        }

        if (op.HvmContextSize < size)
            return XenErrno.ENOSPC.Negated();
        var buffer = new byte[size];
        op.HvmContextSize = (uint)HvmContext.Save(source, buffer);
        return call.TryCopyToGuest(op.HvmContextBuffer, buffer) ? 0 : XenErrno.EFAULT.Negated();
    }

    /// <summary>
    /// XEN_DOMCTL_sethvmcontext: not of the caller itself (-EINVAL); <c>size</c> bytes from <c>buffer</c> (-EFAULT when
    /// unreadable, -ENOMEM beyond <see cref="MaxHvmContextSize"/>, as Xen's allocation fails) loaded by <c>hvm_load</c>'s rules.
    /// </summary>
    private static long SetHvmContext(ref HypercallCall<VirtualCpu> call, Domain caller, Domain target, in XenDomctl op)
    {
        if (target == caller)
            return XenErrno.EINVAL.Negated();
        if (op.HvmContextSize > MaxHvmContextSize)
            return XenErrno.ENOMEM.Negated();
        var stream = new byte[op.HvmContextSize];
        if (!call.TryCopyFromGuest(op.HvmContextBuffer, stream))
            return XenErrno.EFAULT.Negated();
        return HvmContext.Load(target, stream);
    }

    /// <summary>
    /// XEN_DOMCTL_destroydomain: the domain goes; frames another domain still maps (by grant, or Dom0's foreign
    /// mappings) are freed when their last mapping goes, and its id stays taken until then
    /// (<see cref="Machine.IsDomainIdTaken"/>), while getdomaininfo reports it as dying (a zombie, as in Xen).
    /// </summary>
    private static void Destroy(Domain target)
    {
        target.IsDying = true;
        XenDomctlGetDomainInfo last = Info(target);
        Machine machine = target.Machine;
        machine.RemoveDomain(target);
        machine.KeepIfZombie(last);
    }
}
