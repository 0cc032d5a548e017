using VmmKit.ReferenceHypervisor.Cpu;
using VmmKit.Vmx;

namespace VmmKit.ReferenceHypervisor;

/// <summary>Exit reason 10, CPUID (always exits in VMX non-root operation, SDM Vol. 3C §26.1.2).</summary>
internal static class CpuidExit
{
    /// <summary>Answers from <see cref="CpuidPolicy"/> and skips the instruction.</summary>
    public static ExitAction Handle(VirtualCpu vcpu, in VmExit exit)
    {
        ref var r = ref vcpu.Registers;
        // CPUID.1:ECX.OSXSAVE reflects the guest's CR4.OSXSAVE (bit 18, SDM Vol. 3A §2.5).
        bool osxsave = (vcpu.Vmcs.Read(VmcsField.GuestCr4) & (1UL << 18)) != 0;
        var result = CpuidPolicy.Get((uint)r.Rax, (uint)r.Rcx, vcpu.Id, vcpu.Domain.Id, osxsave);
        // CPUID writes the full 64-bit registers, zeroing the upper halves (SDM Vol. 2A, CPUID).
        r.Rax = result.Eax;
        r.Rbx = result.Ebx;
        r.Rcx = result.Ecx;
        r.Rdx = result.Edx;
        vcpu.AdvanceRip(in exit);
        return ExitAction.Resume;
    }
}
