using VmmKit.Hypercall;

namespace VmmKit.ReferenceHypervisor.Hypercalls;

/// <summary>
/// <c>__HYPERVISOR_vm_assist(cmd, type)</c> (xen/include/public/xen.h; <c>do_vm_assist</c> in xen/common/domain.c): a
/// type outside the domain's valid mask is -EINVAL, then <c>VMASST_CMD_enable</c>/<c>_disable</c> set or clear it and any
/// other command is -ENOSYS. Xen's mask for an HVM domain holds only <c>VMASST_TYPE_runstate_update_flag</c>, which asks
/// for <c>XEN_RUNSTATE_UPDATE</c> in <c>state_entry_time</c> while the runstate area is rewritten; this hypervisor's runstate
/// writer (Core/VcpuTime.cs) does not follow that protocol, so its mask is empty and every type is -EINVAL. Linux's
/// <c>xen_time_setup_guest</c> then reads only its own vCPU's runstate for steal time, as it does on a Xen without the flag.
/// </summary>
internal static class VmAssistHypercall
{
    /// <summary><c>VMASST_CMD_enable</c> and <c>VMASST_CMD_disable</c>.</summary>
    private const uint CmdEnable = 0, CmdDisable = 1;

    /// <summary>The types a domain may enable (Xen's <c>arch_vm_assist_valid_mask</c>): none here.</summary>
    private const ulong ValidMask = 0;

    /// <summary>vm_assist(cmd, type).</summary>
    public static long Handle(ref HypercallCall<VirtualCpu> call)
    {
        uint cmd = (uint)call.Argument(0), type = (uint)call.Argument(1);
        if (type >= 64 || (ValidMask & (1ul << (int)type)) == 0)
            return XenErrno.EINVAL.Negated();
        return cmd is CmdEnable or CmdDisable ? 0 : XenErrno.ENOSYS.Negated();
    }
}
