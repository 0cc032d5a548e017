namespace VmmKit.Vmx.Emulator.Engine;

/// <summary>
/// VMX non-root policy for the system instructions (SDM Vol. 3C §26.1.3 "Instructions That Cause VM Exits
/// Conditionally", §26.3 "Changes to Instruction Behavior in VMX Non-Root Operation"). Filled from the VMCS by
/// <c>EmulatedProcessor.LoadControls</c>; all zero (nothing exits, nothing shadowed) in the flat test machine.
/// </summary>
internal sealed unsafe partial class Core
{
    /// <summary>CR0 guest/host mask: bits owned by the host (a guest write that changes them against the shadow exits).</summary>
    public ulong Cr0GuestHostMask;
    /// <summary>CR0 read shadow: what the guest reads in the host-owned bits.</summary>
    public ulong Cr0ReadShadow;
    /// <summary>CR4 guest/host mask.</summary>
    public ulong Cr4GuestHostMask;
    /// <summary>CR4 read shadow.</summary>
    public ulong Cr4ReadShadow;
    /// <summary>CR0 bits that must stay 1 in VMX operation (IA32_VMX_CR0_FIXED0, PE/PG relaxed by unrestricted guest).</summary>
    public ulong Cr0Fixed1Bits;
    /// <summary>CR4 bits that must stay 1 in VMX operation (IA32_VMX_CR4_FIXED0: VMXE).</summary>
    public ulong Cr4Fixed1Bits;
    /// <summary>"HLT exiting"; without it HLT enters the HLT activity state (<see cref="EventKind.Halt"/>).</summary>
    public bool HltExiting = true;
    /// <summary>"external-interrupt exiting": a <see cref="RequestExit"/> ends execution at the next block boundary.</summary>
    public bool ExternalInterruptExiting;
    /// <summary>Blocking by NMI (interruptibility state bit 3): set by NMI delivery, cleared by IRET (SDM Vol. 3A §6.7.1).</summary>
    public bool NmiBlocked;
    /// <summary>
    /// The interrupt shadow: blocking by STI (1) or by MOV SS / POP SS (2) lasts until one more instruction retires, i.e.
    /// while <see cref="CpuState.InstructionsRetired"/> equals <see cref="ShadowAt"/> (SDM Vol. 3C table 25-3).
    /// </summary>
    public ulong ShadowAt = ulong.MaxValue;
    /// <summary>Kind of the interrupt shadow (1 STI, 2 MOV SS).</summary>
    public uint ShadowKind;
    private int _exitRequested;

    /// <summary>Interruptibility state bits 1:0 (STI, MOV SS) as they are now.</summary>
    public uint ShadowBits => S.InstructionsRetired == ShadowAt ? ShadowKind : 0;

    /// <summary>Starts an interrupt shadow after instruction <paramref name="i"/> (STI with IF 0 -> 1, MOV SS, POP SS).</summary>
    public void SetShadow(Instr* i, uint kind)
    {
        ShadowAt = RetiredBefore(i) + 1;
        ShadowKind = kind;
    }

    /// <summary>Thread-safe: asks the processor to stop at the next block boundary (see <c>EmulatedProcessor.RequestExit</c>).</summary>
    public void RequestExit() => Interlocked.Exchange(ref _exitRequested, 1);

    /// <summary>Takes a pending <see cref="RequestExit"/> (true once per request).</summary>
    public bool TakeExitRequest() => Volatile.Read(ref _exitRequested) != 0 && Interlocked.Exchange(ref _exitRequested, 0) != 0;

    /// <summary>Whether a request is pending and would end execution now.</summary>
    public bool ExitRequestPending => ExternalInterruptExiting && Volatile.Read(ref _exitRequested) != 0;

    /// <summary>Exception bitmap: INT3 and INTO exit (as software exceptions) when their bit is set.</summary>
    public uint ExceptionBitmap;
    /// <summary>"CR3-load exiting".</summary>
    public bool Cr3LoadExiting;
    /// <summary>"CR3-store exiting".</summary>
    public bool Cr3StoreExiting;
    /// <summary>"CR8-load exiting".</summary>
    public bool Cr8LoadExiting;
    /// <summary>"CR8-store exiting".</summary>
    public bool Cr8StoreExiting;
    /// <summary>Number of valid CR3-target values (0..4).</summary>
    public int Cr3TargetCount;
    /// <summary>CR3-target values 0..3: a MOV to CR3 of one of them does not exit.</summary>
    public readonly ulong[] Cr3Targets = new ulong[4];
    /// <summary>"INVLPG exiting".</summary>
    public bool InvlpgExiting;
    /// <summary>"MOV-DR exiting".</summary>
    public bool MovDrExiting;
    /// <summary>"WBINVD exiting" (secondary).</summary>
    public bool WbinvdExiting;
    /// <summary>"PAUSE exiting".</summary>
    public bool PauseExiting;
    /// <summary>"enable RDTSCP" (secondary); RDTSCP is #UD without it in VMX non-root operation.</summary>
    public bool RdtscpEnabled = true;
    /// <summary>"enable INVPCID" (secondary); INVPCID is #UD without it.</summary>
    public bool InvpcidEnabled = true;
    /// <summary>"use TSC scaling" (secondary): the TSC is multiplied by <see cref="CpuState.TscMultiplier"/>.</summary>
    public bool TscScaling;

    /// <summary>The guest's view of CR0: host-owned bits come from the read shadow (SDM Vol. 3C §26.3, MOV from CR0).</summary>
    public ulong GuestVisibleCr0 => (S.Cr0 & ~Cr0GuestHostMask) | (Cr0ReadShadow & Cr0GuestHostMask);

    /// <summary>The guest's view of CR4.</summary>
    public ulong GuestVisibleCr4 => (S.Cr4 & ~Cr4GuestHostMask) | (Cr4ReadShadow & Cr4GuestHostMask);

    /// <summary>
    /// The TSC the guest reads at instruction <paramref name="i"/> (SDM Vol. 3C §26.3 RDTSC: scaled by the TSC
    /// multiplier, then offset). The emulated TSC ticks once per retired instruction (nominal
    /// <see cref="EmulatedProcessor.TscFrequencyHz"/>).
    /// </summary>
    public ulong GuestTsc(Instr* i) => ScaleTsc(RetiredBefore(i)) + S.TscOffset + TscWriteAdjust;

    /// <summary>What guest WRMSRs to IA32_TSC added to the TSC (kept across runs; the VMCS TSC offset is reloaded on every entry).</summary>
    public ulong TscWriteAdjust;

    /// <summary>Applies the TSC multiplier (a 16.48 fixed-point number) when "use TSC scaling" is on.</summary>
    public ulong ScaleTsc(ulong ticks) => TscScaling ? (ulong)(((UInt128)ticks * S.TscMultiplier) >> 48) : ticks;

    /// <summary>Whether the current privilege level is 0 (always in real mode; SDM Vol. 3A §5.5).</summary>
    public bool IsCpl0 => Cpl == 0;

    /// <summary>Current privilege level: SS.DPL in protected mode (SDM Vol. 3C §25.4.1: the VMCS keeps the CPL there), 3 in virtual-8086 mode, 0 in real mode.</summary>
    public int Cpl => (S.Cr0 & 1) == 0 ? 0 : (S.Rflags & RflagsBits.VM) != 0 ? 3 : (int)(S.Ss.AccessRights >> 5 & 3);
}
