using VmmKit.Vmx;

namespace VmmKit.ReferenceHypervisor;

/// <summary>
/// Exit reasons 48 and 49: an access to guest-physical memory the domain does not have, or a broken EPT entry.
/// The local APIC's page is emulated (Devices/ApicMmio.cs); elsewhere a plain load or store is answered as Xen's null
/// MMIO handler does (<see cref="NullMmio"/>). Anything else crashes the domain.
/// </summary>
internal static class EptViolationExit
{
    /// <summary>EPT violation: the guest touched memory it does not own.</summary>
    public static ExitAction Handle(VirtualCpu vcpu, in VmExit exit)
    {
        if (Devices.ApicMmio.TryHandle(vcpu, in exit, out var action))
            return action;
        if (NullMmio.TryComplete(vcpu, exit))
            return ExitAction.Resume;
        vcpu.Domain.Crash(vcpu, $"EPT violation at gpa 0x{exit.GuestPhysicalAddress:x} ({exit.EptViolation})");
        return ExitAction.Stop;
    }

    /// <summary>EPT misconfiguration: a hypervisor bug, never the guest's fault, but only this domain is affected.</summary>
    public static ExitAction HandleMisconfiguration(VirtualCpu vcpu, in VmExit exit)
    {
        vcpu.Domain.Crash(vcpu, $"EPT misconfiguration at gpa 0x{exit.GuestPhysicalAddress:x}");
        return ExitAction.Stop;
    }
}
