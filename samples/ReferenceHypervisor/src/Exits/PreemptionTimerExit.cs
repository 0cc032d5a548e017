using VmmKit.Vmx;

namespace VmmKit.ReferenceHypervisor;

/// <summary>
/// Exit reason 52 (VMX-preemption timer, SDM Vol. 3C §26.5.1): the time slice is over. Exit reason 40 (PAUSE, enabled
/// for a domain with several vCPUs): the vCPU spins waiting for another one, so the slice ends when a sibling could run
/// (runnable, or blocked with a new event for it); with none, the spinning vCPU goes on at once, and PAUSE exiting
/// stays off until its next exit of another kind or its next slice (<see cref="VirtualCpu.SetPauseExiting"/>).
/// </summary>
internal static class PreemptionTimerExit
{
    /// <summary>Ends the slice (the scheduler runs the next vCPU), or resumes after a PAUSE nobody else is waiting to use.</summary>
    public static ExitAction Handle(VirtualCpu vcpu, in VmExit exit)
    {
        if (exit.Reason != VmxExitReason.Pause)
            return ExitAction.Yield;
        vcpu.AdvanceRip(in exit);
        foreach (var other in vcpu.Domain.Vcpus)
        {
            if (other != vcpu && other.IsUp && (!other.IsBlocked || other.Kicked || other.HasPendingInterrupt))
                return ExitAction.Yield;
        }

        vcpu.SetPauseExiting(false);
        return ExitAction.Resume;
    }
}
