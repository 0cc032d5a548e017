namespace VmmKit.Hypercall;

/// <summary>
/// The caller's execution mode as Xen's <c>hvm_guest_x86_mode()</c> reports it (the numbers are
/// Xen's: the operand size in bytes, 0 for real mode and 1 for virtual-8086 mode). It decides
/// the register ABI of a hypercall: only <see cref="Long64"/> uses the 64-bit ABI.
/// </summary>
public enum GuestX86Mode
{
    /// <summary>CR0.PE = 0: real mode. Xen accepts hypercalls here regardless of CPL.</summary>
    Real = 0,
    /// <summary>RFLAGS.VM = 1: virtual-8086 mode. Xen refuses hypercalls with -EPERM.</summary>
    Virtual8086 = 1,
    /// <summary>Protected (or compatibility) mode with a 16-bit code segment (CS.D = 0).</summary>
    Protected16 = 2,
    /// <summary>Protected (or compatibility) mode with a 32-bit code segment (CS.D = 1).</summary>
    Protected32 = 4,
    /// <summary>64-bit mode: EFER.LMA = 1 and CS.L = 1.</summary>
    Long64 = 8,
}

/// <summary>Derives <see cref="GuestX86Mode"/> from guest state, as <c>vmx_guest_x86_mode()</c> does.</summary>
public static class GuestX86ModeDecoder
{
    /// <summary>CR0.PE, bit 0 (SDM Vol. 3A §2.5).</summary>
    public const ulong Cr0ProtectionEnable = 1UL << 0;

    /// <summary>RFLAGS.VM, bit 17 (SDM Vol. 1 §3.4.3).</summary>
    public const ulong RflagsVirtual8086 = 1UL << 17;

    /// <summary>IA32_EFER.LMA, bit 10 (SDM Vol. 3A §2.2.1).</summary>
    public const ulong EferLongModeActive = 1UL << 10;

    /// <summary>The L bit (bit 13) of a segment's VMCS access-rights field (SDM Vol. 3C §25.4.1; Xen's <c>X86_SEG_AR_CS_LM_ACTIVE</c>).</summary>
    public const uint AccessRightsLong = 1u << 13;

    /// <summary>The D/B bit (bit 14) of a segment's VMCS access-rights field (Xen's <c>X86_SEG_AR_DEF_OP_SIZE</c>).</summary>
    public const uint AccessRightsDefaultBig = 1u << 14;

    /// <summary>Decodes the mode from raw register values.</summary>
    /// <param name="cr0">Guest CR0 (as the guest sees it).</param>
    /// <param name="rflags">Guest RFLAGS.</param>
    /// <param name="efer">Guest IA32_EFER.</param>
    /// <param name="csAccessRights">Guest CS access rights in the VMCS format.</param>
    /// <returns>The mode; 64-bit only when EFER.LMA and CS.L are both set.</returns>
    public static GuestX86Mode Decode(ulong cr0, ulong rflags, ulong efer, uint csAccessRights) =>
        Decode((cr0 & Cr0ProtectionEnable) != 0, (rflags & RflagsVirtual8086) != 0, (efer & EferLongModeActive) != 0,
               (csAccessRights & AccessRightsLong) != 0, (csAccessRights & AccessRightsDefaultBig) != 0);

    /// <summary>Decodes the mode from the individual bits.</summary>
    /// <param name="protectionEnabled">CR0.PE.</param>
    /// <param name="virtual8086">RFLAGS.VM.</param>
    /// <param name="longModeActive">EFER.LMA.</param>
    /// <param name="csLong">CS.L.</param>
    /// <param name="csDefaultBig">CS.D.</param>
    /// <returns>The mode.</returns>
    public static GuestX86Mode Decode(bool protectionEnabled, bool virtual8086, bool longModeActive, bool csLong, bool csDefaultBig)
    {
        if (!protectionEnabled)
            return GuestX86Mode.Real;
        if (virtual8086)
            return GuestX86Mode.Virtual8086;
        if (longModeActive && csLong)
            return GuestX86Mode.Long64;
        return csDefaultBig ? GuestX86Mode.Protected32 : GuestX86Mode.Protected16;
    }
}
