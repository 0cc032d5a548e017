using VmmKit.Hypercall;

namespace VmmKit.ReferenceHypervisor.Hypercalls;

/// <summary>
/// The per-parameter rules of Xen's <c>hvm_set_param</c> and the views of <c>hvmop_get_param</c>
/// (xen/arch/x86/hvm/hvm.c), for whoever sets the parameter: a guest its own (<see cref="HvmOpHypercall"/>) or the
/// toolstack another domain's (Host/ToolstackHypercalls.cs). Which parameters each may touch is checked before.
/// </summary>
internal static class HvmParamRules
{
    /// <summary>
    /// Xen's <c>VM86_TSS_UPDATED</c>: set in <c>HVM_PARAM_VM86_TSS_SIZED</c> by every write (Xen prepares the TSS on
    /// next use and clears it); never shown to the guest.
    /// </summary>
    private const ulong Vm86TssUpdated = 1ul << 63;

    // sizeof(struct tss32); the useful maximum adds a 256-bit interrupt redirection bitmap, a 64 Kib I/O bitmap and a
    // padding byte.
    private const ulong Tss32Size = 104;
    private const ulong MaxVm86TssSize = Tss32Size + (0x100 / 8) + (0x10000 / 8) + 1;

    /// <summary>
    /// Checks <paramref name="value"/> for <paramref name="index"/>, applies its side effects and stores it in
    /// <paramref name="target"/>; a negative errno leaves the parameter as it was. A bad VM86 TSS set by a guest on
    /// itself also crashes it, as Xen does (<c>domain_crash</c> when <c>d == current->domain</c>).
    /// </summary>
    public static long Set(VirtualCpu caller, Domain target, HvmParam index, ulong value)
    {
        bool self = caller.Domain == target;
        switch (index)
        {
            case HvmParam.CallbackIrq:
                // hvm_latch_shinfo_size: the caller's mode picks the 32- or 64-bit shared_info layout, for itself only.
                if (self)
                    target.LatchSharedInfoSize(caller);
                target.SetCallbackVia(value);
                break;
            case HvmParam.X87FipWidth:
                if (value is not (0 or 4 or 8))
                    return XenErrno.EINVAL.Negated();
                break;
            case HvmParam.AcpiIoportsLocation:
                // pmtimer_change_ioport: a PVH domain has no emulated ACPI PM timer (has_vpm() is false).
                return XenErrno.ENODEV.Negated();
            case HvmParam.Vm86Tss:
                // The address only (hardware would drop the high bits); old hvmloaders mean a TSS of 128 bytes.
                if (value != (uint)value)
                    return BadVm86Tss(caller, self, "HVM_PARAM_VM86_TSS past 32 bits");
                if (value != 0)
                    value |= (128ul << 32) | Vm86TssUpdated;
                index = HvmParam.Vm86TssSized;
                break;
            case HvmParam.Vm86TssSized:
                if (value >> 32 < Tss32Size)
                    return BadVm86Tss(caller, self, "HVM_PARAM_VM86_TSS_SIZED smaller than a 32-bit TSS");
                if (value >> 32 > MaxVm86TssSize)
                    value = (uint)value | (MaxVm86TssSize << 32);
                value |= Vm86TssUpdated;
                break;
        }

        target.SetHvmParam(index, value);
        return 0;
    }

    /// <summary>The value <c>hvmop_get_param</c> returns: both VM86 TSS names read the sized one, without the flag.</summary>
    public static ulong Get(Domain target, HvmParam index) => index switch
    {
        HvmParam.Vm86Tss => (uint)target.GetHvmParam(HvmParam.Vm86TssSized),
        HvmParam.Vm86TssSized => target.GetHvmParam(HvmParam.Vm86TssSized) & ~Vm86TssUpdated,
        _ => target.GetHvmParam(index),
    };

    private static long BadVm86Tss(VirtualCpu caller, bool self, string why)
    {
        if (self)
            caller.Domain.Crash(caller, why);
        return XenErrno.EINVAL.Negated();
    }
}
