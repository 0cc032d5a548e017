using VmmKit.Hypercall;

namespace VmmKit.ReferenceHypervisor.Hypercalls;

/// <summary>
/// Xen 4.17's rules for <c>HVMOP_set_param</c> and <c>HVMOP_get_param</c> once the caller may name the domain
/// (xen/arch/x86/hvm/hvm.c: <c>hvm_allow_set_param</c>, <c>hvm_set_param</c>, <c>hvm_allow_get_param</c>,
/// <c>hvm_get_param</c>), for a guest on itself (<see cref="HvmOpHypercall"/>) and the toolstack on another domain
/// (Host/ToolstackHypercalls.cs): which parameters a domain may touch on itself, the deprecated ones, the ones set
/// once, and each parameter's own checks and side effects.
/// </summary>
internal static class HvmParamRules
{
    /// <summary>
    /// Xen's <c>VM86_TSS_UPDATED</c> (asm/hvm/support.h): set in <c>HVM_PARAM_VM86_TSS_SIZED</c> by every write (Xen
    /// prepares the TSS on next use and clears it); never shown.
    /// </summary>
    private const ulong Vm86TssUpdated = 1ul << 63;

    // sizeof(struct tss32); the useful maximum adds a 256-bit interrupt redirection bitmap, a 64 Kib I/O bitmap and a
    // padding byte.
    private const ulong Tss32Size = 104;
    private const ulong MaxVm86TssSize = Tss32Size + (0x100 / 8) + (0x10000 / 8) + 1;

    private const ulong ViridianBaseFreq = 1, ViridianFeatureMask = 0x1FFF;   // HVMPV_base_freq, HVMPV_feature_mask
    private const ulong OneMissedTickPending = 3;                             // HVMPTM_one_missed_tick_pending
    private const ulong Altp2mLimited = 3;                                    // XEN_ALTP2M_limited
    private const ulong ShutdownMax = 5;                                      // SHUTDOWN_MAX (sched.h)

    /// <summary>
    /// Sets parameter <paramref name="index"/> of <paramref name="target"/> for <paramref name="caller"/>, or answers
    /// Xen's negative errno and leaves it as it was. A bad VM86 TSS set by a guest on itself also crashes it, as Xen
    /// does (<c>domain_crash</c> when <c>d == current->domain</c>).
    /// </summary>
    public static long Set(VirtualCpu caller, Domain target, HvmParam index, ulong value)
    {
        bool self = caller.Domain == target;
        long rc = Allow(self, index, write: true);
        if (rc != 0)
            return rc;

        switch (index)
        {
            // hvm_allow_set_param: these change only once (a second, different value is -EEXIST).
            case HvmParam.Viridian or HvmParam.IoreqPfn or HvmParam.BufioreqPfn or HvmParam.IoreqServerPfn
                or HvmParam.NrIoreqServerPages or HvmParam.Altp2m or HvmParam.McaCap:
                ulong old = target.GetHvmParam(index);
                if (old != 0 && value != old)
                    return XenErrno.EEXIST.Negated();
                break;
        }

        switch (index)
        {
            case HvmParam.CallbackIrq:
                // hvm_latch_shinfo_size: the caller's mode picks the 32- or 64-bit shared_info layout, for itself only.
                if (self)
                    target.LatchSharedInfoSize(caller);
                target.SetCallbackVia(value);
                break;
            case HvmParam.TimerMode:
                if (value > OneMissedTickPending)
                    return XenErrno.EINVAL.Negated();
                break;
            case HvmParam.Viridian:
                if ((value & ~ViridianFeatureMask) != 0 || (value & ViridianBaseFreq) == 0)
                    return XenErrno.EINVAL.Negated();
                break;
            case HvmParam.AcpiSState:
                // 0 resumes from S3 (nothing to do: this hypervisor never suspends a domain), 3 suspends: not supported
                // here (the README says so).
                return value switch
                {
                    0 => 0,
                    3 => XenErrno.ENOSYS.Negated(),
                    _ => XenErrno.EINVAL.Negated(),
                };
            case HvmParam.AcpiIoportsLocation:
                // pmtimer_change_ioport: a PVH domain has no emulated ACPI PM timer (has_vpm() is false).
                return XenErrno.ENODEV.Negated();
            case HvmParam.Altp2m:
                if (value > Altp2mLimited)
                    return XenErrno.EINVAL.Negated();
                break;
            case HvmParam.TripleFaultReason:
                if (value > ShutdownMax)
                    return XenErrno.EINVAL.Negated();
                break;
            case HvmParam.NrIoreqServerPages:
                if (value is 0 or > 64)   // the bits of ioreq_gfn.mask
                    return XenErrno.EINVAL.Negated();
                break;
            case HvmParam.X87FipWidth:
                if (value is not (0 or 4 or 8))
                    return XenErrno.EINVAL.Negated();
                break;
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
            case HvmParam.McaCap:
                // vmce_enable_mca_cap: bits but LMCE are -EINVAL, and LMCE needs the host's support, which the emulated
                // processor lacks (lmce_support); so only 0.
                if (value != 0)
                    return XenErrno.EINVAL.Negated();
                break;
        }

        target.SetHvmParam(index, value);
        return 0;
    }

    /// <summary>
    /// Reads parameter <paramref name="index"/> of <paramref name="target"/> for <paramref name="caller"/>: 0 and the
    /// value, or Xen's negative errno. Both VM86 TSS names read the sized one, without Xen's flag.
    /// </summary>
    public static long Get(VirtualCpu caller, Domain target, HvmParam index, out ulong value)
    {
        value = 0;
        long rc = Allow(caller.Domain == target, index, write: false);
        if (rc != 0)
            return rc;
        value = index switch
        {
            HvmParam.AcpiSState => 0,   // is_s3_suspended: never here
            HvmParam.Vm86Tss => (uint)target.GetHvmParam(HvmParam.Vm86TssSized),
            HvmParam.Vm86TssSized => target.GetHvmParam(HvmParam.Vm86TssSized) & ~Vm86TssUpdated,
            _ => target.GetHvmParam(index),
        };
        return 0;
    }

    // hvm_allow_set_param / hvm_allow_get_param after XSM: the deprecated parameters are -EINVAL for everyone; a
    // domain may touch only its guest-visible ones on itself (-EPERM), the toolstack any on another domain.
    private static long Allow(bool self, HvmParam index, bool write)
    {
        if (index is HvmParam.PaeEnabled or HvmParam.DmDomain or HvmParam.MemoryEventCr0 or HvmParam.MemoryEventCr3
            or HvmParam.MemoryEventCr4 or HvmParam.MemoryEventInt3 or HvmParam.NestedHvm or HvmParam.MemoryEventSingleStep
            or HvmParam.BufioreqEvtchn or HvmParam.MemoryEventMsr)
            return XenErrno.EINVAL.Negated();
        bool guestVisible = index is HvmParam.CallbackIrq or HvmParam.Vm86Tss or HvmParam.Vm86TssSized
            or HvmParam.AcpiIoportsLocation or HvmParam.VmGenerationIdAddr or HvmParam.StoreEvtchn or HvmParam.ConsoleEvtchn
            or HvmParam.X87FipWidth
            || (!write && index is HvmParam.StorePfn or HvmParam.ConsolePfn or HvmParam.Altp2m);
        return self && !guestVisible ? XenErrno.EPERM.Negated() : 0;
    }

    private static long BadVm86Tss(VirtualCpu caller, bool self, string why)
    {
        if (self)
            caller.Domain.Crash(caller, why);
        return XenErrno.EINVAL.Negated();
    }
}
