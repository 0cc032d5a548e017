using VmmKit.Vmx;

namespace VmmKit.ReferenceHypervisor;

/// <summary>Exit reason 52 (VMX-preemption timer, SDM Vol. 3C §26.5.1) and 40 (PAUSE): the time slice is over.</summary>
internal static class PreemptionTimerExit
{
    /// <summary>Ends the slice; the scheduler runs the next vCPU.</summary>
    public static ExitAction Handle(VirtualCpu vcpu, in VmExit exit)
    {
        if (exit.Reason == VmxExitReason.Pause)
            vcpu.AdvanceRip(in exit);
        return ExitAction.Yield;
    }
}
