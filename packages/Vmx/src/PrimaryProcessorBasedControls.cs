namespace VmmKit.Vmx;

/// <summary>Primary processor-based VM-execution controls (VMCS field 0x4002; SDM Vol. 3C §25.6.2, Table 25-6).</summary>
[Flags]
public enum PrimaryProcessorBasedControls : uint
{
    /// <summary>No control set.</summary>
    None = 0,
    /// <summary>Bit 2: a VM exit occurs at the start of any instruction when RFLAGS.IF = 1 and there is no other blocking of interrupts.</summary>
    InterruptWindowExiting = 1u << 2,
    /// <summary>Bit 3: RDTSC, RDTSCP and reads of IA32_TIME_STAMP_COUNTER return a value modified by the TSC-offset field.</summary>
    UseTscOffsetting = 1u << 3,
    /// <summary>Bit 7: HLT causes a VM exit.</summary>
    HltExiting = 1u << 7,
    /// <summary>Bit 9: INVLPG causes a VM exit.</summary>
    InvlpgExiting = 1u << 9,
    /// <summary>Bit 10: MWAIT causes a VM exit.</summary>
    MwaitExiting = 1u << 10,
    /// <summary>Bit 11: RDPMC causes a VM exit.</summary>
    RdpmcExiting = 1u << 11,
    /// <summary>Bit 12: RDTSC and RDTSCP cause VM exits.</summary>
    RdtscExiting = 1u << 12,
    /// <summary>Bit 15: MOV to CR3 causes a VM exit unless the value matches a CR3-target value.</summary>
    Cr3LoadExiting = 1u << 15,
    /// <summary>Bit 16: MOV from CR3 causes a VM exit.</summary>
    Cr3StoreExiting = 1u << 16,
    /// <summary>Bit 17: the tertiary processor-based VM-execution controls are used.</summary>
    ActivateTertiaryControls = 1u << 17,
    /// <summary>Bit 19: MOV to CR8 causes a VM exit.</summary>
    Cr8LoadExiting = 1u << 19,
    /// <summary>Bit 20: MOV from CR8 causes a VM exit.</summary>
    Cr8StoreExiting = 1u << 20,
    /// <summary>Bit 21: TPR virtualization and other APIC-virtualization features are enabled.</summary>
    UseTprShadow = 1u << 21,
    /// <summary>Bit 22: a VM exit occurs at the start of any instruction when there is no virtual-NMI blocking.</summary>
    NmiWindowExiting = 1u << 22,
    /// <summary>Bit 23: MOV DR causes a VM exit.</summary>
    MovDrExiting = 1u << 23,
    /// <summary>Bit 24: every I/O instruction causes a VM exit (ignored when <see cref="UseIoBitmaps"/> is set).</summary>
    UnconditionalIoExiting = 1u << 24,
    /// <summary>Bit 25: I/O bitmaps A and B restrict which I/O instructions cause VM exits.</summary>
    UseIoBitmaps = 1u << 25,
    /// <summary>Bit 27: the monitor trap flag debugging feature is enabled.</summary>
    MonitorTrapFlag = 1u << 27,
    /// <summary>Bit 28: MSR bitmaps control which RDMSR/WRMSR cause VM exits.</summary>
    UseMsrBitmaps = 1u << 28,
    /// <summary>Bit 29: MONITOR causes a VM exit.</summary>
    MonitorExiting = 1u << 29,
    /// <summary>Bit 30: PAUSE causes a VM exit.</summary>
    PauseExiting = 1u << 30,
    /// <summary>Bit 31: the secondary processor-based VM-execution controls are used.</summary>
    ActivateSecondaryControls = 1u << 31,
}
