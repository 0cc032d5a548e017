using VmmKit.Vmx;

namespace VmmKit.ReferenceHypervisor;

/// <summary>
/// The exit-reason table (hvpp style): one small handler per basic exit reason (SDM Vol. 3C
/// Appendix C), indexed by the reason number. Reasons without a handler crash the domain with a
/// diagnostic dump; the host carries on.
/// </summary>
internal static unsafe class ExitHandlers
{
    /// <summary>Size of the table: one past the largest basic exit reason the SDM defines.</summary>
    public const int TableSize = 80;

    private static readonly delegate*<VirtualCpu, in VmExit, ExitAction>[] Table = Build();

    /// <summary>Runs the handler for <paramref name="exit"/>'s reason.</summary>
    public static ExitAction Dispatch(VirtualCpu vcpu, in VmExit exit)
    {
        uint reason = (uint)exit.Reason;
        var handler = reason < TableSize ? Table[reason] : null;
        return handler != null ? handler(vcpu, in exit) : Unhandled(vcpu, in exit);
    }

    private static delegate*<VirtualCpu, in VmExit, ExitAction>[] Build()
    {
        var t = new delegate*<VirtualCpu, in VmExit, ExitAction>[TableSize];
        t[(int)VmxExitReason.ExternalInterrupt] = &Resume;
        // Interrupt window open: the loop injects the pending upcall before the next entry (SDM Vol. 3C §26.7.5).
        t[(int)VmxExitReason.InterruptWindow] = &Resume;
        t[(int)VmxExitReason.TripleFault] = &TripleFaultExit.Handle;
        t[(int)VmxExitReason.Cpuid] = &CpuidExit.Handle;
        t[(int)VmxExitReason.Hlt] = &HltExit.Handle;
        t[(int)VmxExitReason.Vmcall] = &VmcallExit.Handle;
        t[(int)VmxExitReason.IoInstruction] = &IoExit.Handle;
        t[(int)VmxExitReason.Rdtsc] = &RdtscExit.HandleRdtsc;
        t[(int)VmxExitReason.Rdtscp] = &RdtscExit.HandleRdtscp;
        t[(int)VmxExitReason.Rdmsr] = &MsrExit.HandleRead;
        t[(int)VmxExitReason.Wrmsr] = &MsrExit.HandleWrite;
        t[(int)VmxExitReason.ControlRegisterAccess] = &ControlRegisterExit.Handle;
        t[(int)VmxExitReason.Xsetbv] = &XsetbvExit.Handle;
        t[(int)VmxExitReason.EptViolation] = &EptViolationExit.Handle;
        t[(int)VmxExitReason.EptMisconfiguration] = &EptViolationExit.HandleMisconfiguration;
        t[(int)VmxExitReason.VmxPreemptionTimerExpired] = &PreemptionTimerExit.Handle;
        t[(int)VmxExitReason.Pause] = &PreemptionTimerExit.Handle;
        // VMX instructions in the guest: no nested virtualization, #UD as Xen does without nestedhvm.
        foreach (var r in (ReadOnlySpan<VmxExitReason>)[VmxExitReason.Vmclear, VmxExitReason.Vmlaunch, VmxExitReason.Vmptrld, VmxExitReason.Vmptrst,
                     VmxExitReason.Vmread, VmxExitReason.Vmresume, VmxExitReason.Vmwrite, VmxExitReason.Vmxoff, VmxExitReason.Vmxon,
                     VmxExitReason.Invept, VmxExitReason.Invvpid, VmxExitReason.Vmfunc, VmxExitReason.Getsec])
            t[(int)r] = &InvalidOpcode;
        return t;
    }

    private static ExitAction Resume(VirtualCpu vcpu, in VmExit exit) => ExitAction.Resume;

    private static ExitAction InvalidOpcode(VirtualCpu vcpu, in VmExit exit)
    {
        vcpu.InjectException(6);
        return ExitAction.Resume;
    }

    private static ExitAction Unhandled(VirtualCpu vcpu, in VmExit exit)
    {
        vcpu.Domain.Crash(vcpu, $"unhandled VM exit {exit.Reason} ({(int)exit.Reason})");
        return ExitAction.Stop;
    }
}
