namespace VmmKit.Vmx;

/// <summary>
/// The VMX capabilities of a processor, from its capability MSRs (SDM Vol. 3D Appendix A): which control settings
/// are allowed, CR0/CR4 fixed bits, activity states, EPT/VPID features. Adjusts desired control sets to what the
/// processor allows, or fails naming the bits it cannot satisfy. Reports the MSR values it was built from unchanged.
/// </summary>
public sealed class VmxCapabilities
{
    private readonly ulong[] _msrs = new ulong[VmxCapabilityMsr.All.Length];
    private readonly bool[] _present = new bool[VmxCapabilityMsr.All.Length];

    /// <summary>Builds the capabilities from MSR values; <paramref name="readMsr"/> returns false for an MSR the processor does not implement.</summary>
    public VmxCapabilities(TryReadMsr readMsr)
    {
        ArgumentNullException.ThrowIfNull(readMsr);
        var all = VmxCapabilityMsr.All;
        for (int i = 0; i < all.Length; i++)
            _present[i] = readMsr(all[i], out _msrs[i]);
        if (!_present[0])
            throw new ArgumentException("IA32_VMX_BASIC is required.", nameof(readMsr));
    }

    /// <summary>Builds the capabilities from a table of MSR index → value (absent MSRs are not implemented).</summary>
    public static VmxCapabilities FromMsrs(IReadOnlyDictionary<uint, ulong> msrs)
    {
        ArgumentNullException.ThrowIfNull(msrs);
        return new VmxCapabilities((uint index, out ulong value) => msrs.TryGetValue(index, out value));
    }

    /// <summary>Reads one capability MSR.</summary>
    public delegate bool TryReadMsr(uint index, out ulong value);

    /// <summary>The value of capability MSR <paramref name="index"/> as given, or false when absent.</summary>
    public bool TryGetMsr(uint index, out ulong value)
    {
        int i = (int)index - (int)VmxCapabilityMsr.Ia32VmxBasic;
        if ((uint)i < (uint)_msrs.Length && _present[i])
        {
            value = _msrs[i];
            return true;
        }
        value = 0;
        return false;
    }

    /// <summary>The capability MSRs this instance was built from, index → value (absent MSRs are left out).</summary>
    public IReadOnlyDictionary<uint, ulong> ToMsrs()
    {
        var d = new Dictionary<uint, ulong>();
        var all = VmxCapabilityMsr.All;
        for (int i = 0; i < all.Length; i++)
            if (_present[i])
                d[all[i]] = _msrs[i];
        return d;
    }

    private ulong Msr(uint index) => TryGetMsr(index, out ulong v) ? v : 0;

    /// <summary>IA32_VMX_BASIC.</summary>
    public VmxBasic Basic => new(Msr(VmxCapabilityMsr.Ia32VmxBasic));

    /// <summary>IA32_VMX_MISC.</summary>
    public VmxMisc Misc => new(Msr(VmxCapabilityMsr.Ia32VmxMisc));

    /// <summary>Pin-based controls: IA32_VMX_TRUE_PINBASED_CTLS when IA32_VMX_BASIC bit 55 is set, else IA32_VMX_PINBASED_CTLS (Appendix A.3.1).</summary>
    public VmxControlCapability PinBased => new(Msr(Basic.TrueControls ? VmxCapabilityMsr.Ia32VmxTruePinbasedCtls : VmxCapabilityMsr.Ia32VmxPinbasedCtls));

    /// <summary>Primary processor-based controls (TRUE MSR when available; Appendix A.3.2).</summary>
    public VmxControlCapability PrimaryProcessorBased => new(Msr(Basic.TrueControls ? VmxCapabilityMsr.Ia32VmxTrueProcbasedCtls : VmxCapabilityMsr.Ia32VmxProcbasedCtls));

    /// <summary>Secondary processor-based controls: IA32_VMX_PROCBASED_CTLS2, usable only if the primary controls may set bit 31 (Appendix A.3.3).</summary>
    public VmxControlCapability SecondaryProcessorBased =>
        (new VmxControlCapability(Msr(VmxCapabilityMsr.Ia32VmxProcbasedCtls)).MayBeOne & (uint)PrimaryProcessorBasedControls.ActivateSecondaryControls) != 0
            ? new(Msr(VmxCapabilityMsr.Ia32VmxProcbasedCtls2)) : default;

    /// <summary>Allowed 1-settings of the tertiary processor-based controls (IA32_VMX_PROCBASED_CTLS3; Appendix A.3.4).</summary>
    public TertiaryProcessorBasedControls TertiaryProcessorBasedAllowed =>
        (PrimaryProcessorBased.MayBeOne & (uint)PrimaryProcessorBasedControls.ActivateTertiaryControls) != 0
            ? (TertiaryProcessorBasedControls)Msr(VmxCapabilityMsr.Ia32VmxProcbasedCtls3) : TertiaryProcessorBasedControls.None;

    /// <summary>VM-exit controls (TRUE MSR when available; Appendix A.4).</summary>
    public VmxControlCapability VmExit => new(Msr(Basic.TrueControls ? VmxCapabilityMsr.Ia32VmxTrueExitCtls : VmxCapabilityMsr.Ia32VmxExitCtls));

    /// <summary>VM-entry controls (TRUE MSR when available; Appendix A.5).</summary>
    public VmxControlCapability VmEntry => new(Msr(Basic.TrueControls ? VmxCapabilityMsr.Ia32VmxTrueEntryCtls : VmxCapabilityMsr.Ia32VmxEntryCtls));

    /// <summary>IA32_VMX_CR0_FIXED0: CR0 bits that must be 1 (Appendix A.7).</summary>
    public ulong Cr0Fixed0 => Msr(VmxCapabilityMsr.Ia32VmxCr0Fixed0);

    /// <summary>IA32_VMX_CR0_FIXED1: CR0 bits that may be 1 (Appendix A.7).</summary>
    public ulong Cr0Fixed1 => Msr(VmxCapabilityMsr.Ia32VmxCr0Fixed1);

    /// <summary>IA32_VMX_CR4_FIXED0: CR4 bits that must be 1 (Appendix A.8).</summary>
    public ulong Cr4Fixed0 => Msr(VmxCapabilityMsr.Ia32VmxCr4Fixed0);

    /// <summary>IA32_VMX_CR4_FIXED1: CR4 bits that may be 1 (Appendix A.8).</summary>
    public ulong Cr4Fixed1 => Msr(VmxCapabilityMsr.Ia32VmxCr4Fixed1);

    /// <summary>IA32_VMX_VMCS_ENUM: bits 9:1 are the highest field index (Appendix A.9).</summary>
    public ulong VmcsEnum => Msr(VmxCapabilityMsr.Ia32VmxVmcsEnum);

    /// <summary>IA32_VMX_EPT_VPID_CAP (Appendix A.10), 0 when absent.</summary>
    public VmxEptVpidCapabilities EptVpid => new(Msr(VmxCapabilityMsr.Ia32VmxEptVpidCap));

    /// <summary>IA32_VMX_VMFUNC: allowed VM functions (Appendix A.11), 0 when absent.</summary>
    public ulong VmFunctions => Msr(VmxCapabilityMsr.Ia32VmxVmfunc);

    /// <summary>Adjusts pin-based controls. Throws <see cref="VmxCapabilityException"/> naming the unsatisfiable bits.</summary>
    public PinBasedControls Adjust(PinBasedControls desired, PinBasedControls mustBeZero = PinBasedControls.None) =>
        (PinBasedControls)AdjustOrThrow(PinBased, (uint)desired, (uint)mustBeZero, "pin-based VM-execution controls", static b => ((PinBasedControls)b).ToString());

    /// <summary>Adjusts primary processor-based controls (sets default-1 bits; keeps desired bits).</summary>
    public PrimaryProcessorBasedControls Adjust(PrimaryProcessorBasedControls desired, PrimaryProcessorBasedControls mustBeZero = PrimaryProcessorBasedControls.None) =>
        (PrimaryProcessorBasedControls)AdjustOrThrow(PrimaryProcessorBased, (uint)desired, (uint)mustBeZero, "primary processor-based VM-execution controls", static b => ((PrimaryProcessorBasedControls)b).ToString());

    /// <summary>Adjusts secondary processor-based controls.</summary>
    public SecondaryProcessorBasedControls Adjust(SecondaryProcessorBasedControls desired, SecondaryProcessorBasedControls mustBeZero = SecondaryProcessorBasedControls.None) =>
        (SecondaryProcessorBasedControls)AdjustOrThrow(SecondaryProcessorBased, (uint)desired, (uint)mustBeZero, "secondary processor-based VM-execution controls", static b => ((SecondaryProcessorBasedControls)b).ToString());

    /// <summary>Adjusts VM-exit controls.</summary>
    public VmExitControls Adjust(VmExitControls desired, VmExitControls mustBeZero = VmExitControls.None) =>
        (VmExitControls)AdjustOrThrow(VmExit, (uint)desired, (uint)mustBeZero, "VM-exit controls", static b => ((VmExitControls)b).ToString());

    /// <summary>Adjusts VM-entry controls.</summary>
    public VmEntryControls Adjust(VmEntryControls desired, VmEntryControls mustBeZero = VmEntryControls.None) =>
        (VmEntryControls)AdjustOrThrow(VmEntry, (uint)desired, (uint)mustBeZero, "VM-entry controls", static b => ((VmEntryControls)b).ToString());

    /// <summary>Adjusts tertiary controls (no must-be-one bits exist for them).</summary>
    public TertiaryProcessorBasedControls Adjust(TertiaryProcessorBasedControls desired)
    {
        var bad = desired & ~TertiaryProcessorBasedAllowed;
        if (bad != 0)
            throw new VmxCapabilityException("tertiary processor-based VM-execution controls", (uint)bad, bad.ToString());
        return desired;
    }

    /// <summary>Non-throwing adjustment of any 32-bit control set: see <see cref="VmxControlCapability.TryAdjust"/>.</summary>
    public static bool TryAdjust(VmxControlCapability capability, uint desired, uint mustBeZero, out uint adjusted, out uint unsatisfiable) =>
        capability.TryAdjust(desired, mustBeZero, out adjusted, out unsatisfiable);

    /// <summary>
    /// Adjusts CR0 to the fixed bits for VMX operation (Appendix A.7): sets FIXED0 bits and clears bits not in FIXED1.
    /// With unrestricted guest, PE (bit 0) and PG (bit 31) are left as given (§27.3.1.1).
    /// </summary>
    public ulong AdjustCr0(ulong cr0, bool unrestrictedGuest = false)
    {
        ulong fixed0 = Cr0Fixed0, fixed1 = Cr0Fixed1;
        if (unrestrictedGuest)
        {
            const ulong PePg = 1ul | 1ul << 31;
            fixed0 &= ~PePg;
            fixed1 |= PePg;
        }
        return (cr0 | fixed0) & fixed1;
    }

    /// <summary>Adjusts CR4 to the fixed bits for VMX operation (Appendix A.8).</summary>
    public ulong AdjustCr4(ulong cr4) => (cr4 | Cr4Fixed0) & Cr4Fixed1;

    private static uint AdjustOrThrow(VmxControlCapability cap, uint desired, uint mustBeZero, string name, Func<uint, string> describe)
    {
        if (!cap.TryAdjust(desired, mustBeZero, out uint adjusted, out uint bad))
            throw new VmxCapabilityException(name, bad, describe(bad));
        return adjusted;
    }
}
