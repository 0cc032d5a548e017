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
        uint leaf = (uint)r.Rax;
        var result = PerVcpu(CpuidPolicy.Get(leaf, (uint)r.Rcx, vcpu.Id, vcpu.Domain.Id, osxsave), leaf, vcpu.Apic.ApicId);
        // CPUID writes the full 64-bit registers, zeroing the upper halves (SDM Vol. 2A, CPUID).
        r.Rax = result.Eax;
        r.Rbx = result.Ebx;
        r.Rcx = result.Ecx;
        r.Rdx = result.Edx;
        vcpu.AdvanceRip(in exit);
        return ExitAction.Resume;
    }

    /// <summary>
    /// The per-vCPU fields, whatever the policy says: the initial APIC ID in CPUID.1:EBX[31:24] and, when leaf 0BH is
    /// offered (EBX of its subleaf not 0), the x2APIC ID in CPUID.0BH:EDX (SDM Vol. 2A, CPUID), each the ID of this vCPU's
    /// local APIC, which the MADT lists (Cpu/AcpiTables.cs).
    /// </summary>
    public static CpuidResult PerVcpu(CpuidResult result, uint leaf, uint apicId) => leaf switch
    {
        1 => result with { Ebx = (result.Ebx & 0x00FF_FFFF) | (apicId << 24) },
        0xB when result.Ebx != 0 => result with { Edx = apicId },
        _ => result,
    };
}
