using VmmKit.Vmx;

namespace VmmKit.ReferenceHypervisor;

/// <summary>
/// Exit reason 28, control-register access (SDM Vol. 3C §26.1.3; qualification table 27-3). The PVH VMCS owns only
/// the bits VMX fixes (CR0.NE, CR4.VMXE): a guest write that changes them against the read shadow exits here. As Xen's
/// <c>hvm_set_cr0</c>/<c>hvm_set_cr4</c> do, the guest gets the value it wrote in its read shadow and the real
/// register keeps the fixed bits. MOV CR8 exits reach the local APIC's TPR. MOV CR3 exits are not enabled by this
/// hypervisor; any other access raises #GP(0) in the guest.
/// </summary>
internal static class ControlRegisterExit
{
    private const ulong Cr0Pe = 1, Cr0Pg = 1ul << 31;

    /// <summary>Completes MOV to CR0/CR4, CLTS and LMSW against the guest/host masks.</summary>
    public static ExitAction Handle(VirtualCpu vcpu, in VmExit exit)
    {
        var q = new ControlRegisterAccessQualification(exit.Qualification);
        var vmcs = vcpu.Vmcs;
        ulong value;
        int cr = q.ControlRegister;
        if (cr == 8)
            return Cr8(vcpu, in exit, q);
        switch (q.AccessType)
        {
            case ControlRegisterAccessType.MovToCr:
                value = q.GeneralPurposeRegister == 4 ? vmcs.Read(VmcsField.GuestRsp) : vcpu.Registers[q.GeneralPurposeRegister];
                break;
            case ControlRegisterAccessType.Clts:
                cr = 0;
                value = Shadowed(vmcs, 0) & ~(1ul << 3);
                break;
            case ControlRegisterAccessType.Lmsw:
                cr = 0;
                ulong old = Shadowed(vmcs, 0);
                value = (old & ~0xEul) | (q.LmswSourceData & 0xEul) | ((old | q.LmswSourceData) & Cr0Pe);
                break;
            default:
                vcpu.InjectGeneralProtection();
                return ExitAction.Resume;
        }

        if (cr is not (0 or 4) || (value >> 32) != 0 || (cr == 0 && (value & Cr0Pg) != 0 && (value & Cr0Pe) == 0))
        {
            vcpu.InjectGeneralProtection();
            return ExitAction.Resume;
        }

        var (guest, mask, shadow) = cr == 0
            ? (VmcsField.GuestCr0, VmcsField.Cr0GuestHostMask, VmcsField.Cr0ReadShadow)
            : (VmcsField.GuestCr4, VmcsField.Cr4GuestHostMask, VmcsField.Cr4ReadShadow);
        ulong m = vmcs.Read(mask);
        // The guest sees what it wrote in the host-owned bits; the register keeps them as VMX requires.
        ulong before = vmcs.Read(guest);
        vmcs.Write(shadow, value & m);
        vmcs.Write(guest, (value & ~m) | (before & m));
        ulong efer = vmcs.Read(VmcsField.GuestIa32Efer);
        if (cr == 0 && (before & Cr0Pg) == 0 && (value & Cr0Pg) != 0 && (efer & (1ul << 8)) != 0)
        {
            // Paging on with EFER.LME: IA-32e mode becomes active (SDM Vol. 3A §10.8.5), as the processor would do.
            vmcs.Write(VmcsField.GuestIa32Efer, efer | (1ul << 10));
            vmcs.Write(VmcsField.VmEntryControls, vmcs.Read(VmcsField.VmEntryControls) | (ulong)VmEntryControls.Ia32eModeGuest);
        }
        vcpu.AdvanceRip(in exit);
        return ExitAction.Resume;
    }

    /// <summary>MOV to/from CR8 (CR8-load/store exiting, set with the local APIC): the APIC's TPR (Devices/VcpuApic.cs).</summary>
    private static ExitAction Cr8(VirtualCpu vcpu, in VmExit exit, ControlRegisterAccessQualification q)
    {
        int gpr = q.GeneralPurposeRegister;
        if (q.AccessType == ControlRegisterAccessType.MovFromCr)
        {
            ulong tpr = Devices.VcpuApic.ReadCr8(vcpu);
            if (gpr == 4)
                vcpu.Vmcs.Write(VmcsField.GuestRsp, tpr);
            else
                vcpu.Registers[gpr] = tpr;
        }
        else if (q.AccessType != ControlRegisterAccessType.MovToCr
                 || !Devices.VcpuApic.TryWriteCr8(vcpu, gpr == 4 ? vcpu.Vmcs.Read(VmcsField.GuestRsp) : vcpu.Registers[gpr]))
        {
            vcpu.InjectGeneralProtection();
            return ExitAction.Resume;
        }

        vcpu.AdvanceRip(in exit);
        return ExitAction.Resume;
    }

    private static ulong Shadowed(Vmcs vmcs, int cr)
    {
        ulong m = vmcs.Read(cr == 0 ? VmcsField.Cr0GuestHostMask : VmcsField.Cr4GuestHostMask);
        ulong real = vmcs.Read(cr == 0 ? VmcsField.GuestCr0 : VmcsField.GuestCr4);
        ulong shadow = vmcs.Read(cr == 0 ? VmcsField.Cr0ReadShadow : VmcsField.Cr4ReadShadow);
        return (real & ~m) | (shadow & m);
    }
}
