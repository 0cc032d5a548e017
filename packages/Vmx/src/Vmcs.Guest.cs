using VmmKit.Ept;

namespace VmmKit.Vmx;

// What a VMM asks of the guest state on every exit: the guest's mode, CPL and paging registers, and event injection.
public sealed partial class Vmcs
{
    private const ulong Cr0ProtectionEnable = 1ul << 0;
    private const ulong RflagsInterruptEnable = 1ul << 9;
    private const ulong RflagsVirtual8086 = 1ul << 17;
    private const ulong InterruptibilityBlockingBySti = 1ul << 0;
    private const ulong InterruptibilityBlockingByMovSs = 1ul << 1;
    private const ulong InterruptibilityBlockingByNmi = 1ul << 3;

    /// <summary>
    /// The guest's execution mode from guest CR0.PE, RFLAGS.VM, the "IA-32e mode guest" VM-entry
    /// control (which every VM exit updates with IA32_EFER.LMA, SDM Vol. 3C §28.2) and the L and D bits of
    /// the CS access rights (SDM Vol. 3A §5.2.1; Xen's <c>vmx_guest_x86_mode()</c> decides the same way).
    /// </summary>
    public GuestExecutionMode GuestMode
    {
        get
        {
            if ((Read(VmcsField.GuestCr0) & Cr0ProtectionEnable) == 0)
                return GuestExecutionMode.Real;
            if ((Read(VmcsField.GuestRflags) & RflagsVirtual8086) != 0)
                return GuestExecutionMode.Virtual8086;
            var cs = new SegmentAccessRights((uint)Read(VmcsField.GuestCsAccessRights));
            if ((VmEntryControls & VmEntryControls.Ia32eModeGuest) != 0 && cs.Long)
                return GuestExecutionMode.Long64;
            return cs.DefaultBig ? GuestExecutionMode.Protected32 : GuestExecutionMode.Protected16;
        }
    }

    /// <summary>
    /// The guest's current privilege level: the DPL of SS, which the processor keeps equal to the CPL
    /// (SDM Vol. 3C §25.4.1, "the value of the DPL field for SS is always equal to the logical
    /// processor's current privilege level").
    /// </summary>
    public int GuestCpl => new SegmentAccessRights((uint)Read(VmcsField.GuestSsAccessRights)).Dpl;

    /// <summary>
    /// The guest's paging registers (CR0, CR3, CR4, IA32_EFER, RFLAGS) for VmmKit.Ept's <see cref="GuestPageWalker"/>.
    /// EFER.LMA is taken from the "IA-32e mode guest" VM-entry control, which every VM exit updates (SDM Vol. 3C
    /// §28.2), so it is right even when the VMCS does not save IA32_EFER.
    /// </summary>
    public GuestPagingRegisters GuestPagingRegisters
    {
        get
        {
            const ulong EferLma = 1ul << 10;
            ulong efer = Read(VmcsField.GuestIa32Efer) & ~EferLma;
            if ((VmEntryControls & VmEntryControls.Ia32eModeGuest) != 0)
                efer |= EferLma;
            return new GuestPagingRegisters(Read(VmcsField.GuestCr0), Read(VmcsField.GuestCr3), Read(VmcsField.GuestCr4), efer,
                Read(VmcsField.GuestRflags));
        }
    }

    /// <summary>
    /// True when an external interrupt injected now would be accepted by the VM-entry checks and
    /// delivered (SDM Vol. 3C §27.3.1.5): RFLAGS.IF = 1, no blocking by STI or by MOV SS, and no event
    /// already queued in the VM-entry interruption-information field. When false, a VMM sets
    /// "interrupt-window exiting" and injects on the resulting exit.
    /// </summary>
    public bool CanInjectExternalInterrupt =>
        (Read(VmcsField.GuestRflags) & RflagsInterruptEnable) != 0
        && (Read(VmcsField.GuestInterruptibilityState) & (InterruptibilityBlockingBySti | InterruptibilityBlockingByMovSs)) == 0
        && !VmEntryInterruption.IsValid;

    /// <summary>
    /// True when an NMI injected now would be delivered: no blocking by NMI, STI or MOV SS, and no event
    /// already queued (SDM Vol. 3C §27.3.1.5, §25.4.2 Table 25-3).
    /// </summary>
    public bool CanInjectNmi =>
        (Read(VmcsField.GuestInterruptibilityState)
            & (InterruptibilityBlockingBySti | InterruptibilityBlockingByMovSs | InterruptibilityBlockingByNmi)) == 0
        && !VmEntryInterruption.IsValid;

    /// <summary>
    /// Queues an event for delivery on the next VM entry (SDM Vol. 3C §25.8.3, §27.6): writes the
    /// VM-entry interruption-information field, the exception error code and, for software interrupts
    /// and software exceptions, the VM-entry instruction length (the length of the INT n, INT3, INTO or
    /// INT1 instruction, which the processor adds to RIP for the pushed return address).
    /// </summary>
    /// <param name="type">The interruption type.</param>
    /// <param name="vector">The vector (2 for an NMI).</param>
    /// <param name="errorCode">The error code to push, or null for none (only hardware exceptions push one).</param>
    /// <param name="instructionLength">The instruction length for software events (1-15); ignored otherwise.</param>
    public void InjectEvent(InterruptionType type, byte vector, uint? errorCode = null, int instructionLength = 0)
    {
        VmEntryInterruption = InterruptionInformation.Create(vector, type, errorCode.HasValue);
        Write(VmcsField.VmEntryExceptionErrorCode, errorCode ?? 0);
        bool software = type is InterruptionType.SoftwareInterrupt or InterruptionType.SoftwareException
            or InterruptionType.PrivilegedSoftwareException;
        Write(VmcsField.VmEntryInstructionLength, software ? (ulong)instructionLength : 0);
    }

    /// <summary>
    /// Injects a hardware exception (#DE, #GP, #PF, ...). Pass the error code for the vectors that push
    /// one (#DF 8, #TS 10, #NP 11, #SS 12, #GP 13, #PF 14, #AC 17, #CP 21; SDM Vol. 3A §6.13) and null
    /// for the others; <see cref="ExceptionHasErrorCode"/> tells which.
    /// </summary>
    /// <param name="vector">The exception vector (0-31).</param>
    /// <param name="errorCode">The error code, or null.</param>
    public void InjectHardwareException(byte vector, uint? errorCode = null) =>
        InjectEvent(InterruptionType.HardwareException, vector, errorCode);

    /// <summary>Injects #GP(<paramref name="errorCode"/>), what a faulting privileged access gets (SDM Vol. 3A §6.15).</summary>
    /// <param name="errorCode">The error code, 0 unless a selector is at fault.</param>
    public void InjectGeneralProtection(uint errorCode = 0) => InjectHardwareException(13, errorCode);

    /// <summary>Injects #UD.</summary>
    public void InjectInvalidOpcode() => InjectHardwareException(6);

    /// <summary>Injects an external interrupt (from a virtual interrupt controller). Check <see cref="CanInjectExternalInterrupt"/> first.</summary>
    /// <param name="vector">The vector (16-255).</param>
    public void InjectExternalInterrupt(byte vector) => InjectEvent(InterruptionType.ExternalInterrupt, vector);

    /// <summary>Injects an NMI (vector 2). Check <see cref="CanInjectNmi"/> first.</summary>
    public void InjectNmi() => InjectEvent(InterruptionType.Nmi, 2);

    /// <summary>Injects a software interrupt, as if the guest executed INT n of <paramref name="instructionLength"/> bytes.</summary>
    /// <param name="vector">The vector n.</param>
    /// <param name="instructionLength">The INT n instruction's length (2, or more with prefixes).</param>
    public void InjectSoftwareInterrupt(byte vector, int instructionLength) =>
        InjectEvent(InterruptionType.SoftwareInterrupt, vector, null, instructionLength);

    /// <summary>True for the exception vectors that push an error code (SDM Vol. 3A §6.13, Table 6-1).</summary>
    /// <param name="vector">An exception vector.</param>
    /// <returns>True for #DF, #TS, #NP, #SS, #GP, #PF, #AC and #CP.</returns>
    public static bool ExceptionHasErrorCode(byte vector) => vector is 8 or 10 or 11 or 12 or 13 or 14 or 17 or 21;
}
