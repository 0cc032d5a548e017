using VmmKit.Vmx;

namespace VmmKit.ReferenceHypervisor;

/// <summary>
/// Exit reason 28, control-register access (SDM Vol. 3C §26.1.3; qualification table 27-3). The guest/host masks own
/// the CR0 and CR4 bits VMX fixes (CR0.NE, CR4.VMXE) and every CR4 bit the guest may not set
/// (<see cref="GuestControlRegisters"/>): a MOV to CR0/CR4, CLTS or LMSW that changes one of them against the read
/// shadow exits here and is checked as Xen 4.17's <c>vmx_cr_access</c> and <c>hvm_set_cr0</c>/<c>hvm_set_cr4</c> check
/// it (xen/arch/x86/hvm/vmx/vmx.c, hvm.c): #GP(0) for a value Xen refuses, else the guest sees what it wrote and the
/// register keeps the fixed bits. MOV CR8 exits reach the local APIC's TPR. MOV CR3 exits are not enabled by this
/// hypervisor; any other access raises #GP(0) in the guest.
/// </summary>
internal static class ControlRegisterExit
{
    private const ulong Cr0Pe = 1, Cr0Ts = 1ul << 3, LmswBits = 0xE;

    /// <summary>Completes MOV to CR0/CR4, CLTS and LMSW against the guest/host masks.</summary>
    public static ExitAction Handle(VirtualCpu vcpu, in VmExit exit)
    {
        var q = new ControlRegisterAccessQualification(exit.Qualification);
        var vmcs = vcpu.Vmcs;
        int cr = q.ControlRegister;
        if (cr == 8)
            return Cr8(vcpu, in exit, q);
        bool ok = q.AccessType switch
        {
            ControlRegisterAccessType.MovToCr when cr == 0 => GuestControlRegisters.TrySetCr0(vcpu, Gpr(vcpu, q.GeneralPurposeRegister)),
            ControlRegisterAccessType.MovToCr when cr == 4 => GuestControlRegisters.TrySetCr4(vcpu, Gpr(vcpu, q.GeneralPurposeRegister)),
            // vmx_cr_access: CLTS clears TS; LMSW sets PE (never clears it) and loads MP, EM, TS, through hvm_set_cr0.
            ControlRegisterAccessType.Clts => GuestControlRegisters.TrySetCr0(vcpu, GuestControlRegisters.Read(vmcs, 0) & ~Cr0Ts),
            ControlRegisterAccessType.Lmsw => GuestControlRegisters.TrySetCr0(vcpu,
                (GuestControlRegisters.Read(vmcs, 0) & ~LmswBits) | (q.LmswSourceData & (LmswBits | Cr0Pe))),
            _ => false,
        };
        if (!ok)
        {
            vcpu.InjectGeneralProtection();
            return ExitAction.Resume;
        }

        vcpu.AdvanceRip(in exit);
        return ExitAction.Resume;
    }

    private static ulong Gpr(VirtualCpu vcpu, int gpr) => gpr == 4 ? vcpu.Vmcs.Read(VmcsField.GuestRsp) : vcpu.Registers[gpr];

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
        else if (q.AccessType == ControlRegisterAccessType.MovToCr)
        {
            Devices.VcpuApic.WriteCr8(vcpu, Gpr(vcpu, gpr));
        }
        else
        {
            vcpu.InjectGeneralProtection();
            return ExitAction.Resume;
        }

        vcpu.AdvanceRip(in exit);
        return ExitAction.Resume;
    }
}
