using VmmKit.Dom0.Xen.Abi;
using VmmKit.Hypercall;

namespace VmmKit.ReferenceHypervisor.Host;

/// <summary>
/// <c>__HYPERVISOR_sysctl</c> (xen/common/sysctl.c): host-wide queries of the toolstack. Xen 4.17's interface version
/// (-EACCES), then privileged callers only (-EPERM); XEN_SYSCTL_getdomaininfolist and XEN_SYSCTL_physinfo, -ENOSYS else.
/// </summary>
internal static class SysctlHypercall
{
    /// <summary>Handles one sysctl.</summary>
    public static long Handle(ref HypercallCall<VirtualCpu> call)
    {
        // Xen 4.17's do_sysctl: the buffer (-EFAULT) and the interface version (-EACCES) before xsm_sysctl (-EPERM).
        var caller = call.Caller.Domain;
        ulong arg = call.Argument(0);
        if (!call.TryCopyFromGuest(arg, out XenSysctl op))
            return XenErrno.EFAULT.Negated();
        if (op.InterfaceVersion != ToolsAbi.SysctlInterfaceVersion)
            return XenErrno.EACCES.Negated();
        if (!caller.IsPrivileged)
            return XenErrno.EPERM.Negated();
        var machine = caller.Machine;
        switch (op.Cmd)
        {
            case ToolsAbi.SysctlGetDomainInfoList:
            {
                // Domains from first_domain up, zombies included, in domid order, at most max_domains of them.
                uint n = 0;
                foreach (var info in DomctlHypercall.AllInfo(machine).Where(i => i.Domain >= op.FirstDomain).OrderBy(i => i.Domain))
                {
                    if (n >= op.MaxDomains)
                        break;
                    if (!call.TryCopyToGuest(op.Buffer + ((ulong)n * 112), in info))
                        return XenErrno.EFAULT.Negated();
                    n++;
                }

                op.NumDomains = n;
                break;
            }

            case ToolsAbi.SysctlPhysInfo:
                op.PhysInfo = new XenSysctlPhysInfo
                {
                    ThreadsPerCore = 1, CoresPerSocket = 1, NrCpus = 1, MaxCpuId = 0, NrNodes = 1, MaxNodeId = 0,
                    CpuKhz = 1_000_000,
                    TotalPages = machine.Memory.FrameCount,
                    FreePages = machine.Memory.FreeFrames,
                    MaxMfn = machine.Memory.FrameCount - 1,
                    // Xen 4.17's do_sysctl: gnttab_v1 when opt_gnttab_max_version >= 1, gnttab_v2 when >= 2.
                    Capabilities = ToolsAbi.PhysCapGnttabV1
                        | (machine.Grants.HostLimits.MaxVersion >= 2 ? ToolsAbi.PhysCapGnttabV2 : 0),
                };
                break;
            default:
                return XenErrno.ENOSYS.Negated();
        }

        return call.TryCopyToGuest(arg, in op) ? 0 : XenErrno.EFAULT.Negated();
    }
}
