using VmmKit.ReferenceHypervisor.Cpu;
using VmmKit.Vmx;

namespace VmmKit.ReferenceHypervisor;

/// <summary>
/// The rules a guest's write to CR0 or CR4 must pass when it reaches the hypervisor (a host-owned bit changed, so the
/// processor exited instead of applying it), as Xen 4.17's <c>hvm_set_cr0</c> and <c>hvm_set_cr4</c>
/// (xen/arch/x86/hvm/hvm.c) apply them, plus the processor's own #GP rules (SDM Vol. 2A "MOV—Move to/from Control
/// Registers") that the emulated processor applies to writes it does not exit for: a write that fails raises #GP(0) and
/// changes nothing. The guest/host masks own the bits VMX fixes and every CR4 bit the guest may not set, as Xen's
/// <c>vmx_update_guest_cr</c> traps <c>~hvm_cr4_guest_valid_bits</c>, so those writes exit here too.
/// </summary>
internal static class GuestControlRegisters
{
    private const ulong Cr0Pe = 1, Cr0Et = 1ul << 4, Cr0Wp = 1ul << 16, Cr0Nw = 1ul << 29, Cr0Cd = 1ul << 30, Cr0Pg = 1ul << 31;

    /// <summary>The CR0 bits a MOV may set; the other bits of 31:0 are ignored (Xen's <c>HVM_CR0_GUEST_RESERVED_BITS</c>).</summary>
    private const ulong Cr0Defined = Cr0Pe | 0xE | Cr0Et | (1ul << 5) | Cr0Wp | (1ul << 18) | Cr0Nw | Cr0Cd | Cr0Pg;

    private const ulong Cr4Pae = 1ul << 5, Cr4Pcide = 1ul << 17, EferLme = 1ul << 8, EferLma = 1ul << 10;

    /// <summary>CS access rights bit 13, L: 64-bit code (SDM Vol. 3C §25.4.1).</summary>
    private const ulong CsL = 1ul << 13;

    /// <summary>
    /// The CR4 bits a guest may set: Xen's <c>hvm_cr4_guest_valid_bits</c> (hvm.c) over this hypervisor's CPUID policy.
    /// VMXE is not among them (no nested virtualization), nor MCE (CPUID offers neither MCE nor MCA).
    /// </summary>
    public static ulong Cr4GuestValidBits { get; } = ComputeCr4GuestValidBits();

    /// <summary>The CR0 bits the host owns: those VMX fixes to 1 (NE), except PE and PG, free with unrestricted guest.</summary>
    public static ulong Cr0HostMask(VmxCapabilities caps) => caps.Cr0Fixed0 & ~(Cr0Pe | Cr0Pg);

    /// <summary>The CR4 bits the host owns: those VMX fixes to 1 (VMXE) and every bit the guest may not set.</summary>
    public static ulong Cr4HostMask(VmxCapabilities caps) => caps.Cr4Fixed0 | ~Cr4GuestValidBits;

    /// <summary>Sets the CR0 and CR4 guest/host masks of <paramref name="vmcs"/> to <see cref="Cr0HostMask"/> and <see cref="Cr4HostMask"/>.</summary>
    public static void SetHostMasks(Vmcs vmcs, VmxCapabilities caps)
    {
        vmcs.Write(VmcsField.Cr0GuestHostMask, Cr0HostMask(caps));
        vmcs.Write(VmcsField.Cr4GuestHostMask, Cr4HostMask(caps));
    }

    /// <summary>The guest's view of CR0 (0) or CR4 (4): its own bits from the register, the host's from the read shadow.</summary>
    public static ulong Read(Vmcs vmcs, int cr)
    {
        ulong m = vmcs.Read(cr == 0 ? VmcsField.Cr0GuestHostMask : VmcsField.Cr4GuestHostMask);
        ulong real = vmcs.Read(cr == 0 ? VmcsField.GuestCr0 : VmcsField.GuestCr4);
        ulong shadow = vmcs.Read(cr == 0 ? VmcsField.Cr0ReadShadow : VmcsField.Cr4ReadShadow);
        return (real & ~m) | (shadow & m);
    }

    /// <summary>
    /// MOV to CR0 (also CLTS and LMSW) as Xen 4.17's <c>hvm_set_cr0</c>; false when the guest gets #GP(0) and nothing
    /// changed. Paging on with EFER.LME activates IA-32e mode, paging off leaves it (SDM Vol. 3A §10.8.5).
    /// </summary>
    public static bool TrySetCr0(VirtualCpu vcpu, ulong value)
    {
        var vmcs = vcpu.Vmcs;
        // hvm_set_cr0: bits 63:32 are #GP; the other reserved bits are dropped and ET reads 1.
        if ((value >> 32) != 0)
            return false;
        value = (value & Cr0Defined) | Cr0Et;
        // hvm_set_cr0: PG without PE.
        if ((value & (Cr0Pe | Cr0Pg)) == Cr0Pg)
            return false;
        // NW without CD is #GP on the processor (SDM Vol. 2A MOV CR0), also for a write that does not exit; Xen's
        // hvm_set_cr0 lets it through (README, deliberate differences).
        if ((value & (Cr0Nw | Cr0Cd)) == Cr0Nw)
            return false;

        ulong old = Read(vmcs, 0);
        ulong efer = vmcs.Read(VmcsField.GuestIa32Efer);
        ulong cs = vmcs.Read(VmcsField.GuestCsAccessRights);
        ulong cr4 = Read(vmcs, 4);
        if ((value & Cr0Pg) != 0 && (old & Cr0Pg) == 0 && (efer & EferLme) != 0)
        {
            // hvm_set_cr0: "Enable paging before PAE enable". A 64-bit CS is #GP on the processor (SDM Vol. 2A MOV CR0);
            // Xen cannot meet one, having cleared CS.L when LME was set (hvm_set_efer).
            if ((cr4 & Cr4Pae) == 0 || (cs & CsL) != 0)
                return false;
            efer |= EferLma;
        }
        else if ((value & Cr0Pg) == 0 && (old & Cr0Pg) != 0)
        {
            // hvm_set_cr0: not in 64-bit mode, not with CR4.PCIDE set; leaving paging leaves IA-32e mode.
            if (((efer & EferLme) != 0 && (cs & CsL) != 0) || (cr4 & Cr4Pcide) != 0)
                return false;
            efer &= ~EferLma;
        }

        Apply(vmcs, 0, value);
        SetEfer(vmcs, efer);
        return true;
    }

    /// <summary>MOV to CR4 as Xen 4.17's <c>hvm_set_cr4</c>; false when the guest gets #GP(0) and nothing changed.</summary>
    public static bool TrySetCr4(VirtualCpu vcpu, ulong value)
    {
        var vmcs = vcpu.Vmcs;
        // hvm_set_cr4: a bit outside hvm_cr4_guest_valid_bits (VMXE among them: no nested virtualization).
        if ((value & ~Cr4GuestValidBits) != 0)
            return false;
        bool lma = (vmcs.Read(VmcsField.GuestIa32Efer) & EferLma) != 0;
        // hvm_set_cr4: PAE cannot be cleared in IA-32e mode.
        if ((value & Cr4Pae) == 0 && lma)
            return false;
        // hvm_set_cr4: PCIDE 0 -> 1 needs IA-32e mode and CR3[11:0] = 0.
        ulong old = Read(vmcs, 4);
        if ((value & Cr4Pcide) != 0 && (old & Cr4Pcide) == 0 && (!lma || (vmcs.Read(VmcsField.GuestCr3) & 0xFFF) != 0))
            return false;
        Apply(vmcs, 4, value);
        return true;
    }

    /// <summary>The guest sees <paramref name="value"/>: its host-owned bits in the read shadow, the register keeps the host's.</summary>
    private static void Apply(Vmcs vmcs, int cr, ulong value)
    {
        var (guest, mask, shadow) = cr == 0
            ? (VmcsField.GuestCr0, VmcsField.Cr0GuestHostMask, VmcsField.Cr0ReadShadow)
            : (VmcsField.GuestCr4, VmcsField.Cr4GuestHostMask, VmcsField.Cr4ReadShadow);
        ulong m = vmcs.Read(mask);
        vmcs.Write(shadow, value & m);
        vmcs.Write(guest, (value & ~m) | (vmcs.Read(guest) & m));
    }

    /// <summary>EFER and the "IA-32e mode guest" entry control, which follows EFER.LMA (SDM Vol. 3C §26.2.1.3).</summary>
    private static void SetEfer(Vmcs vmcs, ulong efer)
    {
        vmcs.Write(VmcsField.GuestIa32Efer, efer);
        ulong entry = vmcs.Read(VmcsField.VmEntryControls);
        vmcs.Write(VmcsField.VmEntryControls, (efer & EferLma) != 0
            ? entry | (uint)VmEntryControls.Ia32eModeGuest
            : entry & ~(ulong)(uint)VmEntryControls.Ia32eModeGuest);
    }

    private static ulong ComputeCr4GuestValidBits()
    {
        var l1 = CpuidPolicy.Get(1, 0, 0, 0);
        var l7 = CpuidPolicy.Get(7, 0, 0, 0);
        static ulong If(uint reg, int bit, ulong cr4Bits) => (reg & (1u << bit)) != 0 ? cr4Bits : 0;
        // hvm_cr4_guest_valid_bits, line by line: VME|PVI, TSD, DE, PSE, PAE, MCE (MCE or MCA), PGE, PCE always,
        // OSFXSR, OSXMMEXCPT, UMIP, FSGSBASE, PCIDE, OSXSAVE, SMEP, SMAP, PKE; VMXE only with nested virtualization.
        return If(l1.Edx, 1, 0x3) | If(l1.Edx, 4, 1ul << 2) | If(l1.Edx, 2, 1ul << 3) | If(l1.Edx, 3, 1ul << 4)
            | If(l1.Edx, 6, 1ul << 5) | If(l1.Edx, 7, 1ul << 6) | If(l1.Edx, 14, 1ul << 6) | If(l1.Edx, 13, 1ul << 7)
            | (1ul << 8) | If(l1.Edx, 24, 1ul << 9) | If(l1.Edx, 25, 1ul << 10) | If(l7.Ecx, 2, 1ul << 11)
            | If(l7.Ebx, 0, 1ul << 16) | If(l1.Ecx, 17, 1ul << 17) | If(l1.Ecx, 26, 1ul << 18) | If(l7.Ebx, 7, 1ul << 20)
            | If(l7.Ebx, 20, 1ul << 21) | If(l7.Ecx, 3, 1ul << 22);
    }
}
