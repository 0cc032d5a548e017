using VmmKit.Vmx;

namespace VmmKit.ReferenceHypervisor;

/// <summary>Exit reason 2, triple fault (SDM Vol. 3C §26.2): the guest is beyond help; Xen crashes the domain.</summary>
internal static class TripleFaultExit
{
    /// <summary>Crashes the domain with a dump.</summary>
    public static ExitAction Handle(VirtualCpu vcpu, in VmExit exit)
    {
        vcpu.Domain.Crash(vcpu, "triple fault");
        return ExitAction.Stop;
    }
}
