using VmmKit.Hypercall;
using VmmKit.Vmx;

namespace VmmKit.ReferenceHypervisor;

/// <summary>
/// Exit reasons 31 and 32, RDMSR and WRMSR (no MSR bitmaps, so every access exits, SDM Vol. 3C
/// §26.1.3). Xen's hypercall-page MSR installs the page; a few architectural MSRs are backed by
/// VMCS fields; anything else raises #GP(0) in the guest, as Xen does for unknown MSRs.
/// </summary>
internal static class MsrExit
{
    private const uint Ia32ApicBase = 0x1B, Ia32MiscEnable = 0x1A0, Ia32Pat = 0x277, Ia32Efer = 0xC0000080, Ia32Tsc = 0x10;
    private const uint MtrrCap = 0xFE, MtrrDefType = 0x2FF;
    private const ulong EferWritable = (1ul << 0) | (1ul << 8) | (1ul << 11);   // SCE, LME, NXE
    private const ulong ApicBaseValue = 0xFEE0_0900;                         // default base, enabled, BSP

    /// <summary>RDMSR: ECX names the MSR; the value goes to EDX:EAX.</summary>
    public static ExitAction HandleRead(VirtualCpu vcpu, in VmExit exit)
    {
        ref var r = ref vcpu.Registers;
        uint msr = (uint)r.Rcx;
        ulong value;
        switch (msr)
        {
            case Ia32Efer: value = vcpu.Vmcs.Read(VmcsField.GuestIa32Efer); break;
            case Ia32Pat: value = vcpu.Vmcs.Read(VmcsField.GuestIa32Pat); break;
            case Ia32ApicBase: value = ApicBaseValue; break;
            case Ia32MiscEnable: value = 1; break;                           // fast strings
            case Ia32Tsc: value = vcpu.InstructionsRetired; break;
            case MtrrCap or MtrrDefType: value = 0; break;
            default:
                vcpu.Domain.Machine.Log($"d{vcpu.Domain.Id}v{vcpu.Id}: RDMSR 0x{msr:x} -> #GP");
                vcpu.InjectGeneralProtection();
                return ExitAction.Resume;
        }

        r.Rax = (uint)value;
        r.Rdx = value >> 32;
        vcpu.AdvanceRip(in exit);
        return ExitAction.Resume;
    }

    /// <summary>WRMSR: ECX names the MSR, EDX:EAX holds the value.</summary>
    public static ExitAction HandleWrite(VirtualCpu vcpu, in VmExit exit)
    {
        ref var r = ref vcpu.Registers;
        uint msr = (uint)r.Rcx;
        ulong value = ((r.Rdx & 0xFFFF_FFFF) << 32) | (r.Rax & 0xFFFF_FFFF);
        bool ok = msr switch
        {
            HypercallPage.MsrIndex => HypercallPage.TryInstall(vcpu.Domain.Physical, value),
            Ia32Efer => WriteEfer(vcpu, value),
            Ia32Pat => WritePat(vcpu, value),
            Ia32MiscEnable or MtrrDefType => true,                           // accepted and ignored
            _ => false,
        };
        if (!ok)
        {
            vcpu.Domain.Machine.Log($"d{vcpu.Domain.Id}v{vcpu.Id}: WRMSR 0x{msr:x} <- 0x{value:x} -> #GP");
            vcpu.InjectGeneralProtection();
            return ExitAction.Resume;
        }

        vcpu.AdvanceRip(in exit);
        return ExitAction.Resume;
    }

    private static bool WriteEfer(VirtualCpu vcpu, ulong value)
    {
        if ((value & ~EferWritable) != 0)
            return false;
        ulong lma = vcpu.Vmcs.Read(VmcsField.GuestIa32Efer) & (1ul << 10);
        vcpu.Vmcs.Write(VmcsField.GuestIa32Efer, value | lma);
        return true;
    }

    private static bool WritePat(VirtualCpu vcpu, ulong value)
    {
        // Each of the 8 entries must be a valid memory type: 0, 1, 4, 5, 6 or 7 (SDM Vol. 3A §13.12.2).
        for (int i = 0; i < 8; i++)
        {
            ulong type = (value >> (8 * i)) & 0xFF;
            if (type is 2 or 3 or > 7)
                return false;
        }

        vcpu.Vmcs.Write(VmcsField.GuestIa32Pat, value);
        return true;
    }
}
