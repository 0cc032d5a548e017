namespace VmmKit.Vmx;

/// <summary>Primary VM-exit controls (VMCS field 0x400C; SDM Vol. 3C §25.7.1, Table 25-13).</summary>
[Flags]
public enum VmExitControls : uint
{
    /// <summary>No control set.</summary>
    None = 0,
    /// <summary>Bit 2: DR7 and IA32_DEBUGCTL are saved on VM exit.</summary>
    SaveDebugControls = 1u << 2,
    /// <summary>Bit 9: the host is in 64-bit mode after the VM exit (and IA32_EFER.LME/LMA are set).</summary>
    HostAddressSpaceSize = 1u << 9,
    /// <summary>Bit 12: IA32_PERF_GLOBAL_CTRL is loaded on VM exit.</summary>
    LoadIa32PerfGlobalCtrl = 1u << 12,
    /// <summary>Bit 15: on an exit due to an external interrupt the processor acknowledges it and stores its vector.</summary>
    AcknowledgeInterruptOnExit = 1u << 15,
    /// <summary>Bit 18: IA32_PAT is saved on VM exit.</summary>
    SaveIa32Pat = 1u << 18,
    /// <summary>Bit 19: IA32_PAT is loaded on VM exit.</summary>
    LoadIa32Pat = 1u << 19,
    /// <summary>Bit 20: IA32_EFER is saved on VM exit.</summary>
    SaveIa32Efer = 1u << 20,
    /// <summary>Bit 21: IA32_EFER is loaded on VM exit.</summary>
    LoadIa32Efer = 1u << 21,
    /// <summary>Bit 22: the VMX-preemption timer value is saved on VM exit.</summary>
    SaveVmxPreemptionTimerValue = 1u << 22,
    /// <summary>Bit 23: IA32_BNDCFGS is cleared on VM exit.</summary>
    ClearIa32Bndcfgs = 1u << 23,
    /// <summary>Bit 24: Intel PT does not produce a paging information packet on VM exit.</summary>
    ConcealVmxFromPt = 1u << 24,
    /// <summary>Bit 25: IA32_RTIT_CTL is cleared on VM exit.</summary>
    ClearIa32RtitCtl = 1u << 25,
    /// <summary>Bit 26: IA32_LBR_CTL is cleared on VM exit.</summary>
    ClearIa32LbrCtl = 1u << 26,
    /// <summary>Bit 27: UINV is cleared on VM exit.</summary>
    ClearUinv = 1u << 27,
    /// <summary>Bit 28: CET state is loaded on VM exit.</summary>
    LoadCetState = 1u << 28,
    /// <summary>Bit 29: IA32_PKRS is loaded on VM exit.</summary>
    LoadPkrs = 1u << 29,
    /// <summary>Bit 30: IA32_PERF_GLOBAL_CTRL is saved on VM exit.</summary>
    SaveIa32PerfGlobalCtrl = 1u << 30,
    /// <summary>Bit 31: the secondary VM-exit controls are used.</summary>
    ActivateSecondaryControls = 1u << 31,
}
