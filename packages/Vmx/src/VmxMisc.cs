namespace VmmKit.Vmx;

/// <summary>IA32_VMX_MISC (MSR 0x485; SDM Vol. 3D Appendix A.6).</summary>
/// <param name="Value">The MSR value.</param>
public readonly record struct VmxMisc(ulong Value)
{
    /// <summary>Bits 4:0: the VMX-preemption timer counts down once every 2^X TSC ticks.</summary>
    public int PreemptionTimerRate => (int)(Value & 0x1F);

    /// <summary>Bit 5: VM exits store IA32_EFER.LMA into the "IA-32e mode guest" VM-entry control.</summary>
    public bool StoresLmaOnExit => (Value & (1ul << 5)) != 0;

    /// <summary>Bit 6: the HLT activity state is supported.</summary>
    public bool SupportsHltActivity => (Value & (1ul << 6)) != 0;

    /// <summary>Bit 7: the shutdown activity state is supported.</summary>
    public bool SupportsShutdownActivity => (Value & (1ul << 7)) != 0;

    /// <summary>Bit 8: the wait-for-SIPI activity state is supported.</summary>
    public bool SupportsWaitForSipiActivity => (Value & (1ul << 8)) != 0;

    /// <summary>Bits 24:16: the number of CR3-target values supported.</summary>
    public int Cr3TargetCount => (int)((Value >> 16) & 0x1FF);

    /// <summary>The recommended maximum number of MSRs in each MSR-load/store list: 512 × (bits 27:25 + 1).</summary>
    public int MaxMsrListCount => 512 * ((int)((Value >> 25) & 7) + 1);

    /// <summary>Bit 29: VMWRITE may write any supported field, including VM-exit information fields.</summary>
    public bool VmwriteToAnyField => (Value & (1ul << 29)) != 0;

    /// <summary>Bit 30: VM entry may inject software interrupts/exceptions with an instruction length of 0.</summary>
    public bool ZeroLengthInstructionInjection => (Value & (1ul << 30)) != 0;

    /// <summary>Bits 63:32: the MSEG revision identifier.</summary>
    public uint MsegRevisionIdentifier => (uint)(Value >> 32);

    /// <summary>True when guest activity state <paramref name="state"/> (0 active, 1 HLT, 2 shutdown, 3 wait-for-SIPI) is supported.</summary>
    public bool SupportsActivityState(uint state) => state switch
    {
        0 => true,
        1 => SupportsHltActivity,
        2 => SupportsShutdownActivity,
        3 => SupportsWaitForSipiActivity,
        _ => false,
    };
}
