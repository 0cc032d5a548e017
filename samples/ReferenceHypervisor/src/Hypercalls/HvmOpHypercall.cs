using VmmKit.Hypercall;

namespace VmmKit.ReferenceHypervisor.Hypercalls;

/// <summary>
/// <c>__HYPERVISOR_hvm_op</c> get/set_param (xen/arch/x86/hvm/hvm.c, <c>hvmop_get_param</c>,
/// <c>hvmop_set_param</c>, <c>hvm_allow_get_param</c>, <c>hvm_allow_set_param</c>): a guest may read
/// and write only the parameters Xen lets a guest touch; the others are the toolstack's (-EPERM).
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
        if (rc != 0)
            return rc;
        if (!GuestMayRead((HvmParam)p.Index))
            return XenErrno.EPERM.Negated();
        p.Value = HvmParamRules.Get(call.Caller.Domain, (HvmParam)p.Index);
        return call.TryCopyToGuest(arg, in p) ? 0 : XenErrno.EFAULT.Negated();
    }

    /// <summary>HVMOP_set_param.</summary>
    public static long SetParam(ref HypercallCall<VirtualCpu> call)
    {
        if (!call.TryCopyFromGuest(call.Argument(1), out XenHvmParam p))
            return XenErrno.EFAULT.Negated();
        long rc = Check(call.Caller, p);
        if (rc != 0)
            return rc;
        if (!GuestMayWrite((HvmParam)p.Index))
            return XenErrno.EPERM.Negated();
        return HvmParamRules.Set(call.Caller, call.Caller.Domain, (HvmParam)p.Index, p.Value);
    }

    private static long Check(VirtualCpu caller, in XenHvmParam p)
    {
        if (p.Index >= (uint)HvmParam.Count)
            return XenErrno.EINVAL.Negated();
        return HypercallTable.CheckSelf(caller, p.Domid);
    }

    private static bool GuestMayRead(HvmParam index) => index is HvmParam.CallbackIrq or HvmParam.Vm86Tss or HvmParam.Vm86TssSized
        or HvmParam.AcpiIoportsLocation or HvmParam.VmGenerationIdAddr or HvmParam.StorePfn or HvmParam.StoreEvtchn
        or HvmParam.ConsolePfn or HvmParam.ConsoleEvtchn or HvmParam.Altp2m or HvmParam.X87FipWidth;

    private static bool GuestMayWrite(HvmParam index) => index is HvmParam.CallbackIrq or HvmParam.Vm86Tss or HvmParam.Vm86TssSized
        or HvmParam.AcpiIoportsLocation or HvmParam.VmGenerationIdAddr or HvmParam.StoreEvtchn or HvmParam.ConsoleEvtchn
        or HvmParam.X87FipWidth;
}
