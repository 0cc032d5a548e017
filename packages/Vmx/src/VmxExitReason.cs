namespace VmmKit.Vmx;

/// <summary>Basic VM-exit reasons: bits 15:0 of the exit-reason field (SDM Vol. 3C Appendix C "VMX Basic Exit Reasons", Table C-1).</summary>
public enum VmxExitReason : ushort
{
    /// <summary>Exception or non-maskable interrupt (NMI).</summary>
    ExceptionOrNmi = 0,
    /// <summary>External interrupt.</summary>
    ExternalInterrupt = 1,
    /// <summary>Triple fault.</summary>
    TripleFault = 2,
    /// <summary>INIT signal.</summary>
    InitSignal = 3,
    /// <summary>Start-up IPI (SIPI).</summary>
    StartupIpi = 4,
    /// <summary>I/O system-management interrupt (SMI).</summary>
    IoSmi = 5,
    /// <summary>Other SMI.</summary>
    OtherSmi = 6,
    /// <summary>Interrupt window.</summary>
    InterruptWindow = 7,
    /// <summary>NMI window.</summary>
    NmiWindow = 8,
    /// <summary>Task switch.</summary>
    TaskSwitch = 9,
    /// <summary>CPUID.</summary>
    Cpuid = 10,
    /// <summary>GETSEC.</summary>
    Getsec = 11,
    /// <summary>HLT.</summary>
    Hlt = 12,
    /// <summary>INVD.</summary>
    Invd = 13,
    /// <summary>INVLPG.</summary>
    Invlpg = 14,
    /// <summary>RDPMC.</summary>
    Rdpmc = 15,
    /// <summary>RDTSC.</summary>
    Rdtsc = 16,
    /// <summary>RSM in SMM.</summary>
    Rsm = 17,
    /// <summary>VMCALL.</summary>
    Vmcall = 18,
    /// <summary>VMCLEAR.</summary>
    Vmclear = 19,
    /// <summary>VMLAUNCH.</summary>
    Vmlaunch = 20,
    /// <summary>VMPTRLD.</summary>
    Vmptrld = 21,
    /// <summary>VMPTRST.</summary>
    Vmptrst = 22,
    /// <summary>VMREAD.</summary>
    Vmread = 23,
    /// <summary>VMRESUME.</summary>
    Vmresume = 24,
    /// <summary>VMWRITE.</summary>
    Vmwrite = 25,
    /// <summary>VMXOFF.</summary>
    Vmxoff = 26,
    /// <summary>VMXON.</summary>
    Vmxon = 27,
    /// <summary>Control-register accesses (MOV CR, CLTS, LMSW).</summary>
    ControlRegisterAccess = 28,
    /// <summary>MOV DR.</summary>
    MovDr = 29,
    /// <summary>I/O instruction.</summary>
    IoInstruction = 30,
    /// <summary>RDMSR.</summary>
    Rdmsr = 31,
    /// <summary>WRMSR.</summary>
    Wrmsr = 32,
    /// <summary>VM-entry failure due to invalid guest state.</summary>
    EntryFailureInvalidGuestState = 33,
    /// <summary>VM-entry failure due to MSR loading.</summary>
    EntryFailureMsrLoading = 34,
    /// <summary>MWAIT.</summary>
    Mwait = 36,
    /// <summary>Monitor trap flag.</summary>
    MonitorTrapFlag = 37,
    /// <summary>MONITOR.</summary>
    Monitor = 39,
    /// <summary>PAUSE.</summary>
    Pause = 40,
    /// <summary>VM-entry failure due to machine-check event.</summary>
    EntryFailureMachineCheckEvent = 41,
    /// <summary>TPR below threshold.</summary>
    TprBelowThreshold = 43,
    /// <summary>APIC access.</summary>
    ApicAccess = 44,
    /// <summary>Virtualized EOI.</summary>
    VirtualizedEoi = 45,
    /// <summary>Access to GDTR or IDTR (LGDT, LIDT, SGDT, SIDT).</summary>
    GdtrOrIdtrAccess = 46,
    /// <summary>Access to LDTR or TR (LLDT, LTR, SLDT, STR).</summary>
    LdtrOrTrAccess = 47,
    /// <summary>EPT violation.</summary>
    EptViolation = 48,
    /// <summary>EPT misconfiguration.</summary>
    EptMisconfiguration = 49,
    /// <summary>INVEPT.</summary>
    Invept = 50,
    /// <summary>RDTSCP.</summary>
    Rdtscp = 51,
    /// <summary>VMX-preemption timer expired.</summary>
    VmxPreemptionTimerExpired = 52,
    /// <summary>INVVPID.</summary>
    Invvpid = 53,
    /// <summary>WBINVD or WBNOINVD.</summary>
    WbinvdOrWbnoinvd = 54,
    /// <summary>XSETBV.</summary>
    Xsetbv = 55,
    /// <summary>APIC write.</summary>
    ApicWrite = 56,
    /// <summary>RDRAND.</summary>
    Rdrand = 57,
    /// <summary>INVPCID.</summary>
    Invpcid = 58,
    /// <summary>VMFUNC.</summary>
    Vmfunc = 59,
    /// <summary>ENCLS.</summary>
    Encls = 60,
    /// <summary>RDSEED.</summary>
    Rdseed = 61,
    /// <summary>Page-modification log full.</summary>
    PageModificationLogFull = 62,
    /// <summary>XSAVES.</summary>
    Xsaves = 63,
    /// <summary>XRSTORS.</summary>
    Xrstors = 64,
    /// <summary>PCONFIG.</summary>
    Pconfig = 65,
    /// <summary>SPP-related event.</summary>
    SppRelatedEvent = 66,
    /// <summary>UMWAIT.</summary>
    Umwait = 67,
    /// <summary>TPAUSE.</summary>
    Tpause = 68,
    /// <summary>LOADIWKEY.</summary>
    Loadiwkey = 69,
    /// <summary>ENCLV.</summary>
    Enclv = 70,
    /// <summary>ENQCMD PASID translation failure.</summary>
    EnqcmdPasidTranslationFailure = 72,
    /// <summary>ENQCMDS PASID translation failure.</summary>
    EnqcmdsPasidTranslationFailure = 73,
    /// <summary>Bus lock.</summary>
    BusLock = 74,
    /// <summary>Instruction timeout.</summary>
    InstructionTimeout = 75,
    /// <summary>SEAMCALL.</summary>
    Seamcall = 76,
    /// <summary>TDCALL.</summary>
    Tdcall = 77,
    /// <summary>RDMSRLIST.</summary>
    Rdmsrlist = 78,
    /// <summary>WRMSRLIST.</summary>
    Wrmsrlist = 79,
}
