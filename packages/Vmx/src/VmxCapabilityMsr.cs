namespace VmmKit.Vmx;

/// <summary>Indices of the VMX capability MSRs (SDM Vol. 3D Appendix A; Vol. 4 Table 2-2).</summary>
public static class VmxCapabilityMsr
{
    /// <summary>IA32_VMX_BASIC (0x480): revision identifier, VMCS size, memory type, TRUE-controls support.</summary>
    public const uint Ia32VmxBasic = 0x480;
    /// <summary>IA32_VMX_PINBASED_CTLS (0x481).</summary>
    public const uint Ia32VmxPinbasedCtls = 0x481;
    /// <summary>IA32_VMX_PROCBASED_CTLS (0x482).</summary>
    public const uint Ia32VmxProcbasedCtls = 0x482;
    /// <summary>IA32_VMX_EXIT_CTLS (0x483).</summary>
    public const uint Ia32VmxExitCtls = 0x483;
    /// <summary>IA32_VMX_ENTRY_CTLS (0x484).</summary>
    public const uint Ia32VmxEntryCtls = 0x484;
    /// <summary>IA32_VMX_MISC (0x485).</summary>
    public const uint Ia32VmxMisc = 0x485;
    /// <summary>IA32_VMX_CR0_FIXED0 (0x486): CR0 bits that must be 1 in VMX operation.</summary>
    public const uint Ia32VmxCr0Fixed0 = 0x486;
    /// <summary>IA32_VMX_CR0_FIXED1 (0x487): CR0 bits that may be 1 in VMX operation.</summary>
    public const uint Ia32VmxCr0Fixed1 = 0x487;
    /// <summary>IA32_VMX_CR4_FIXED0 (0x488).</summary>
    public const uint Ia32VmxCr4Fixed0 = 0x488;
    /// <summary>IA32_VMX_CR4_FIXED1 (0x489).</summary>
    public const uint Ia32VmxCr4Fixed1 = 0x489;
    /// <summary>IA32_VMX_VMCS_ENUM (0x48A): highest VMCS field index.</summary>
    public const uint Ia32VmxVmcsEnum = 0x48A;
    /// <summary>IA32_VMX_PROCBASED_CTLS2 (0x48B).</summary>
    public const uint Ia32VmxProcbasedCtls2 = 0x48B;
    /// <summary>IA32_VMX_EPT_VPID_CAP (0x48C).</summary>
    public const uint Ia32VmxEptVpidCap = 0x48C;
    /// <summary>IA32_VMX_TRUE_PINBASED_CTLS (0x48D).</summary>
    public const uint Ia32VmxTruePinbasedCtls = 0x48D;
    /// <summary>IA32_VMX_TRUE_PROCBASED_CTLS (0x48E).</summary>
    public const uint Ia32VmxTrueProcbasedCtls = 0x48E;
    /// <summary>IA32_VMX_TRUE_EXIT_CTLS (0x48F).</summary>
    public const uint Ia32VmxTrueExitCtls = 0x48F;
    /// <summary>IA32_VMX_TRUE_ENTRY_CTLS (0x490).</summary>
    public const uint Ia32VmxTrueEntryCtls = 0x490;
    /// <summary>IA32_VMX_VMFUNC (0x491).</summary>
    public const uint Ia32VmxVmfunc = 0x491;
    /// <summary>IA32_VMX_PROCBASED_CTLS3 (0x492): allowed 1-settings of the tertiary controls (64 bits).</summary>
    public const uint Ia32VmxProcbasedCtls3 = 0x492;
    /// <summary>IA32_VMX_EXIT_CTLS2 (0x493): allowed 1-settings of the secondary VM-exit controls (64 bits).</summary>
    public const uint Ia32VmxExitCtls2 = 0x493;

    /// <summary>The capability MSRs in index order (0x480–0x493).</summary>
    public static ReadOnlySpan<uint> All =>
    [
        Ia32VmxBasic, Ia32VmxPinbasedCtls, Ia32VmxProcbasedCtls, Ia32VmxExitCtls, Ia32VmxEntryCtls, Ia32VmxMisc,
        Ia32VmxCr0Fixed0, Ia32VmxCr0Fixed1, Ia32VmxCr4Fixed0, Ia32VmxCr4Fixed1, Ia32VmxVmcsEnum, Ia32VmxProcbasedCtls2,
        Ia32VmxEptVpidCap, Ia32VmxTruePinbasedCtls, Ia32VmxTrueProcbasedCtls, Ia32VmxTrueExitCtls, Ia32VmxTrueEntryCtls,
        Ia32VmxVmfunc, Ia32VmxProcbasedCtls3, Ia32VmxExitCtls2,
    ];
}
