using VmmKit.Hypercall;

namespace VmmKit.ReferenceHypervisor.Hypercalls;

/// <summary>
/// <c>__HYPERVISOR_hvm_op</c> get/set_param (xen/arch/x86/hvm/hvm.c, <c>hvmop_get_param</c>,
/// <c>hvmop_set_param</c>): the index, then the domain; then <see cref="HvmParamRules"/> (a guest may read and write
/// only the parameters Xen lets a guest touch, the others are the toolstack's (-EPERM), the deprecated ones -EINVAL).
/// </summary>
internal static class HvmOpHypercall
{
    /// <summary>HVMOP_get_param.</summary>
    public static long GetParam(ref HypercallCall<VirtualCpu> call)
    {
        ulong arg = call.Argument(1);
        if (!call.TryCopyFromGuest(arg, out XenHvmParam p))
            return XenErrno.EFAULT.Negated();
        long rc = Check(call.Caller, p);
        if (rc == 0)
            rc = HvmParamRules.Get(call.Caller, call.Caller.Domain, (HvmParam)p.Index, out p.Value);
        if (rc != 0)
            return rc;
        return call.TryCopyToGuest(arg, in p) ? 0 : XenErrno.EFAULT.Negated();
    }

    /// <summary>HVMOP_set_param.</summary>
    public static long SetParam(ref HypercallCall<VirtualCpu> call)
    {
        if (!call.TryCopyFromGuest(call.Argument(1), out XenHvmParam p))
            return XenErrno.EFAULT.Negated();
        long rc = Check(call.Caller, p);
        return rc != 0 ? rc : HvmParamRules.Set(call.Caller, call.Caller.Domain, (HvmParam)p.Index, p.Value);
    }

    private static long Check(VirtualCpu caller, in XenHvmParam p)
    {
        if (p.Index >= (uint)HvmParam.Count)
            return XenErrno.EINVAL.Negated();
        return HypercallTable.CheckSelf(caller, p.Domid);
    }
}
