using VmmKit.Vmx;

namespace VmmKit.ReferenceHypervisor;

/// <summary>
/// Exit reason 12, HLT. As Xen's <c>hvm_hlt()</c>: with interrupts disabled the vCPU goes down for good (Xen's
/// <c>hvm_vcpu_down</c>), and when no vCPU is left up the domain is powered off ("All CPUs offline -- powering off");
/// with interrupts enabled the vCPU blocks until an event arrives (at once when one is pending).
/// </summary>
internal static class HltExit
{
    private const ulong RflagsIf = 1ul << 9;

    /// <summary>Halts or blocks the vCPU.</summary>
    public static ExitAction Handle(VirtualCpu vcpu, in VmExit exit)
    {
        vcpu.AdvanceRip(in exit);
        if ((vcpu.Vmcs.Read(VmcsField.GuestRflags) & RflagsIf) == 0)
        {
            VcpuLifecycle.Down(vcpu);
            return vcpu.Domain.State == DomainState.Shutdown ? ExitAction.Stop : ExitAction.Yield;
        }

        if (vcpu.HasPendingInterrupt)
            return ExitAction.Resume;
        vcpu.IsBlocked = true;
        return ExitAction.Block;
    }
}
