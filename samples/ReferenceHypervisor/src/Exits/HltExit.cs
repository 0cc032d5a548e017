using VmmKit.Hypercall;
using VmmKit.Vmx;

namespace VmmKit.ReferenceHypervisor;

/// <summary>
/// Exit reason 12, HLT. As Xen's <c>hvm_hlt()</c>: with interrupts disabled the vCPU goes down for
/// good, and when every vCPU is down the domain is powered off ("All CPUs offline -- powering off");
/// with interrupts enabled the vCPU blocks until an event arrives (at once when one is pending).
/// </summary>
internal static class HltExit
{
    private const ulong RflagsIf = 1ul << 9;

    /// <summary>Halts or blocks the vCPU.</summary>
    public static ExitAction Handle(VirtualCpu vcpu, in VmExit exit)
    {
        vcpu.AdvanceRip(in exit);
        vcpu.IsBlocked = true;
        if ((vcpu.Vmcs.Read(VmcsField.GuestRflags) & RflagsIf) == 0 && vcpu.Domain.Vcpus.All(v => v.IsBlocked))
        {
            vcpu.Domain.Shutdown(ShutdownReason.Poweroff);
            return ExitAction.Stop;
        }

        if (vcpu.HasPendingInterrupt)
        {
            vcpu.IsBlocked = false;
            return ExitAction.Resume;
        }

        return ExitAction.Block;
    }
}
