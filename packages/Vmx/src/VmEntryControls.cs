namespace VmmKit.Vmx;

/// <summary>VM-entry controls (VMCS field 0x4012; SDM Vol. 3C §25.8.1, Table 25-15).</summary>
[Flags]
public enum VmEntryControls : uint
{
    /// <summary>No control set.</summary>
    None = 0,
    /// <summary>Bit 2: DR7 and IA32_DEBUGCTL are loaded on VM entry.</summary>
    LoadDebugControls = 1u << 2,
    /// <summary>Bit 9: the logical processor is in IA-32e mode after VM entry (IA32_EFER.LMA is loaded with this value).</summary>
    Ia32eModeGuest = 1u << 9,
    /// <summary>Bit 10: the logical processor is in SMM after VM entry (only for entries from SMM).</summary>
    EntryToSmm = 1u << 10,
    /// <summary>Bit 11: the default treatment of SMIs and SMM is in effect after the VM entry.</summary>
    DeactivateDualMonitorTreatment = 1u << 11,
    /// <summary>Bit 13: IA32_PERF_GLOBAL_CTRL is loaded on VM entry.</summary>
    LoadIa32PerfGlobalCtrl = 1u << 13,
    /// <summary>Bit 14: IA32_PAT is loaded on VM entry.</summary>
    LoadIa32Pat = 1u << 14,
    /// <summary>Bit 15: IA32_EFER is loaded on VM entry.</summary>
    LoadIa32Efer = 1u << 15,
    /// <summary>Bit 16: IA32_BNDCFGS is loaded on VM entry.</summary>
    LoadIa32Bndcfgs = 1u << 16,
    /// <summary>Bit 17: Intel PT does not produce a paging information packet on VM entry.</summary>
    ConcealVmxFromPt = 1u << 17,
    /// <summary>Bit 18: IA32_RTIT_CTL is loaded on VM entry.</summary>
    LoadIa32RtitCtl = 1u << 18,
    /// <summary>Bit 19: UINV is loaded on VM entry.</summary>
    LoadUinv = 1u << 19,
    /// <summary>Bit 20: CET state is loaded on VM entry.</summary>
    LoadCetState = 1u << 20,
    /// <summary>Bit 21: IA32_LBR_CTL is loaded on VM entry.</summary>
    LoadGuestIa32LbrCtl = 1u << 21,
    /// <summary>Bit 22: IA32_PKRS is loaded on VM entry.</summary>
    LoadPkrs = 1u << 22,
}
