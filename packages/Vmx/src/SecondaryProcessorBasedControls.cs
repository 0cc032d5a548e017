namespace VmmKit.Vmx;

/// <summary>Secondary processor-based VM-execution controls (VMCS field 0x401E; SDM Vol. 3C §25.6.2, Table 25-7).</summary>
[Flags]
public enum SecondaryProcessorBasedControls : uint
{
    /// <summary>No control set.</summary>
    None = 0,
    /// <summary>Bit 0: accesses to the APIC-access page are treated specially.</summary>
    VirtualizeApicAccesses = 1u << 0,
    /// <summary>Bit 1: extended page tables are enabled.</summary>
    EnableEpt = 1u << 1,
    /// <summary>Bit 2: LGDT, LIDT, LLDT, LTR, SGDT, SIDT, SLDT and STR cause VM exits.</summary>
    DescriptorTableExiting = 1u << 2,
    /// <summary>Bit 3: RDTSCP does not cause #UD.</summary>
    EnableRdtscp = 1u << 3,
    /// <summary>Bit 4: RDMSR/WRMSR of the x2APIC MSRs are virtualized.</summary>
    VirtualizeX2ApicMode = 1u << 4,
    /// <summary>Bit 5: cached linear-address translations are tagged with the VPID.</summary>
    EnableVpid = 1u << 5,
    /// <summary>Bit 6: WBINVD and WBNOINVD cause VM exits.</summary>
    WbinvdExiting = 1u << 6,
    /// <summary>Bit 7: the guest may run in unpaged protected mode or real-address mode.</summary>
    UnrestrictedGuest = 1u << 7,
    /// <summary>Bit 8: certain APIC accesses are virtualized by the processor.</summary>
    ApicRegisterVirtualization = 1u << 8,
    /// <summary>Bit 9: evaluation and delivery of pending virtual interrupts.</summary>
    VirtualInterruptDelivery = 1u << 9,
    /// <summary>Bit 10: a series of PAUSE instructions can cause a VM exit.</summary>
    PauseLoopExiting = 1u << 10,
    /// <summary>Bit 11: RDRAND causes a VM exit.</summary>
    RdrandExiting = 1u << 11,
    /// <summary>Bit 12: INVPCID does not cause #UD.</summary>
    EnableInvpcid = 1u << 12,
    /// <summary>Bit 13: VMFUNC is enabled in VMX non-root operation.</summary>
    EnableVmFunctions = 1u << 13,
    /// <summary>Bit 14: VMREAD/VMWRITE in VMX non-root operation may access a shadow VMCS.</summary>
    VmcsShadowing = 1u << 14,
    /// <summary>Bit 15: ENCLS consults the ENCLS-exiting bitmap.</summary>
    EnableEnclsExiting = 1u << 15,
    /// <summary>Bit 16: RDSEED causes a VM exit.</summary>
    RdseedExiting = 1u << 16,
    /// <summary>Bit 17: accesses to guest-physical addresses that set EPT dirty bits are logged (page-modification log).</summary>
    EnablePml = 1u << 17,
    /// <summary>Bit 18: EPT violations may cause virtualization exceptions (#VE).</summary>
    EptViolationVe = 1u << 18,
    /// <summary>Bit 19: Intel Processor Trace suppresses PIP.VNR and conceals VMX transitions.</summary>
    ConcealVmxFromPt = 1u << 19,
    /// <summary>Bit 20: XSAVES/XRSTORS do not cause #UD.</summary>
    EnableXsavesXrstors = 1u << 20,
    /// <summary>Bit 21: PASID translation is performed for ENQCMD/ENQCMDS.</summary>
    PasidTranslation = 1u << 21,
    /// <summary>Bit 22: EPT execute permissions are based on whether the linear address is supervisor or user mode.</summary>
    ModeBasedExecuteControlForEpt = 1u << 22,
    /// <summary>Bit 23: EPT write permissions may be specified at 128-byte granularity.</summary>
    SubPageWritePermissionsForEpt = 1u << 23,
    /// <summary>Bit 24: Intel PT output addresses are guest-physical and translated by EPT.</summary>
    IntelPtUsesGuestPhysicalAddresses = 1u << 24,
    /// <summary>Bit 25: RDTSC/RDTSCP/IA32_TIME_STAMP_COUNTER reads use the TSC multiplier.</summary>
    UseTscScaling = 1u << 25,
    /// <summary>Bit 26: TPAUSE, UMONITOR and UMWAIT do not cause #UD.</summary>
    EnableUserWaitAndPause = 1u << 26,
    /// <summary>Bit 27: PCONFIG does not cause #UD.</summary>
    EnablePconfig = 1u << 27,
    /// <summary>Bit 28: ENCLV consults the ENCLV-exiting bitmap.</summary>
    EnableEnclvExiting = 1u << 28,
    /// <summary>Bit 30: a VMM bus-lock detection causes a VM exit.</summary>
    VmmBusLockDetection = 1u << 30,
    /// <summary>Bit 31: a VM exit occurs if certain operations prevent the processor from reaching an instruction boundary within a given time.</summary>
    InstructionTimeout = 1u << 31,
}
