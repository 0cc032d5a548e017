using VmmKit.Ept;

namespace VmmKit.Vmx;

/// <summary>
/// The result of VMLAUNCH/VMRESUME: a VM exit with its exit-information fields (SDM Vol. 3C §25.9, §28.2),
/// a VM-entry failure (§27.8), or a VMfail with its VM-instruction error (§31.4). The typed views decode the
/// exit qualification and information fields according to the exit reason.
/// </summary>
public readonly struct VmExit : IEquatable<VmExit>
{
    /// <summary>Bit 31 of the exit-reason field: VM-entry failure.</summary>
    public const uint EntryFailureBit = 1u << 31;

    /// <summary>The full 32-bit exit-reason field (basic reason in bits 15:0, bit 27 enclave mode, bit 28 pending MTF, bit 29 exit from VMX root, bit 31 entry failure).</summary>
    public uint RawExitReason { get; init; }

    /// <summary>The basic exit reason (bits 15:0 of the exit-reason field).</summary>
    public VmxExitReason Reason => (VmxExitReason)(ushort)RawExitReason;

    /// <summary>True when VM entry failed (exit-reason bit 31).</summary>
    public bool IsEntryFailure => (RawExitReason & EntryFailureBit) != 0;

    /// <summary>How the instruction ended.</summary>
    public VmExitOutcome Outcome { get; init; }

    /// <summary>The exit qualification (natural width).</summary>
    public ulong Qualification { get; init; }

    /// <summary>The guest-linear address field (EPT violations, some instruction exits).</summary>
    public ulong GuestLinearAddress { get; init; }

    /// <summary>The guest-physical address field (EPT violations and misconfigurations).</summary>
    public ulong GuestPhysicalAddress { get; init; }

    /// <summary>The VM-exit instruction length.</summary>
    public uint InstructionLength { get; init; }

    /// <summary>The VM-exit instruction-information field.</summary>
    public uint InstructionInformation { get; init; }

    /// <summary>The VM-exit interruption-information field.</summary>
    public uint InterruptionInformation { get; init; }

    /// <summary>The VM-exit interruption error code.</summary>
    public uint InterruptionErrorCode { get; init; }

    /// <summary>The IDT-vectoring information field.</summary>
    public uint IdtVectoringInformation { get; init; }

    /// <summary>The IDT-vectoring error code.</summary>
    public uint IdtVectoringErrorCode { get; init; }

    /// <summary>The VM-instruction error: <see cref="VmInstructionError.None"/> unless <see cref="Outcome"/> is <see cref="VmExitOutcome.VmFailValid"/>.</summary>
    public VmInstructionError Error { get; init; }

    /// <summary>A VM exit (or, with bit 31 set in <paramref name="rawExitReason"/>, a VM-entry failure).</summary>
    public static VmExit Exit(uint rawExitReason, ulong qualification = 0) => new()
    {
        RawExitReason = rawExitReason,
        Qualification = qualification,
        Outcome = (rawExitReason & EntryFailureBit) != 0 ? VmExitOutcome.EntryFailure : VmExitOutcome.VmExit,
    };

    /// <summary>A VM exit with the given basic reason.</summary>
    public static VmExit Exit(VmxExitReason reason, ulong qualification = 0) => Exit((uint)reason, qualification);

    /// <summary>A VM-entry failure with the given basic reason (33, 34 or 41) and qualification.</summary>
    public static VmExit EntryFailure(VmxExitReason reason, ulong qualification = 0) => Exit((uint)reason | EntryFailureBit, qualification);

    /// <summary>VMfailValid with <paramref name="error"/>.</summary>
    public static VmExit VmFailValid(VmInstructionError error) => new() { Outcome = VmExitOutcome.VmFailValid, Error = error };

    /// <summary>VMfailInvalid.</summary>
    public static VmExit VmFailInvalid() => new() { Outcome = VmExitOutcome.VmFailInvalid };

    /// <summary>Reads a VM exit from the exit-information fields of <paramref name="vmcs"/> (as a hypervisor does after VMLAUNCH/VMRESUME returns to the host).</summary>
    public static VmExit ReadFrom(Vmcs vmcs)
    {
        ArgumentNullException.ThrowIfNull(vmcs);
        uint raw = (uint)vmcs.Read(VmcsField.ExitReason);
        return new VmExit
        {
            RawExitReason = raw,
            Outcome = (raw & EntryFailureBit) != 0 ? VmExitOutcome.EntryFailure : VmExitOutcome.VmExit,
            Qualification = vmcs.Read(VmcsField.ExitQualification),
            GuestLinearAddress = vmcs.Read(VmcsField.GuestLinearAddress),
            GuestPhysicalAddress = vmcs.Read(VmcsField.GuestPhysicalAddress),
            InstructionLength = (uint)vmcs.Read(VmcsField.VmExitInstructionLength),
            InstructionInformation = (uint)vmcs.Read(VmcsField.VmExitInstructionInformation),
            InterruptionInformation = (uint)vmcs.Read(VmcsField.VmExitInterruptionInformation),
            InterruptionErrorCode = (uint)vmcs.Read(VmcsField.VmExitInterruptionErrorCode),
            IdtVectoringInformation = (uint)vmcs.Read(VmcsField.IdtVectoringInformation),
            IdtVectoringErrorCode = (uint)vmcs.Read(VmcsField.IdtVectoringErrorCode),
        };
    }

    /// <summary>
    /// Stores this result into <paramref name="vmcs"/> as the processor does: a VM exit or entry failure writes the
    /// exit-information fields; VMfailValid writes only the VM-instruction error field; VMfailInvalid writes nothing.
    /// </summary>
    public void WriteTo(Vmcs vmcs)
    {
        ArgumentNullException.ThrowIfNull(vmcs);
        switch (Outcome)
        {
            case VmExitOutcome.VmFailValid:
                vmcs.Write(VmcsField.VmInstructionError, (ulong)Error);
                return;
            case VmExitOutcome.VmFailInvalid:
                return;
        }
        vmcs.Write(VmcsField.ExitReason, RawExitReason);
        vmcs.Write(VmcsField.ExitQualification, Qualification);
        vmcs.Write(VmcsField.GuestLinearAddress, GuestLinearAddress);
        vmcs.Write(VmcsField.GuestPhysicalAddress, GuestPhysicalAddress);
        vmcs.Write(VmcsField.VmExitInstructionLength, InstructionLength);
        vmcs.Write(VmcsField.VmExitInstructionInformation, InstructionInformation);
        vmcs.Write(VmcsField.VmExitInterruptionInformation, InterruptionInformation);
        vmcs.Write(VmcsField.VmExitInterruptionErrorCode, InterruptionErrorCode);
        vmcs.Write(VmcsField.IdtVectoringInformation, IdtVectoringInformation);
        vmcs.Write(VmcsField.IdtVectoringErrorCode, IdtVectoringErrorCode);
    }

    /// <summary>The qualification of a control-register access (exit reason 28).</summary>
    public ControlRegisterAccessQualification ControlRegisterAccess => new(Qualification);

    /// <summary>The qualification of a MOV DR (exit reason 29).</summary>
    public MovDrQualification MovDr => new(Qualification);

    /// <summary>The qualification of an I/O instruction (exit reason 30).</summary>
    public IoInstructionQualification IoInstruction => new(Qualification);

    /// <summary>The qualification of an EPT violation (exit reason 48), in VmmKit.Ept's format.</summary>
    public EptViolationQualification EptViolation => new(Qualification);

    /// <summary>The qualification of a task switch (exit reason 9).</summary>
    public TaskSwitchQualification TaskSwitch => new(Qualification);

    /// <summary>The qualification of a debug exception (exit reason 0 with vector 1).</summary>
    public DebugExceptionQualification DebugException => new(Qualification);

    /// <summary>The qualification of an APIC access (exit reason 44).</summary>
    public ApicAccessQualification ApicAccess => new(Qualification);

    /// <summary>The linear address operand of INVLPG (exit reason 14), or the page-fault linear address of a #PF exit.</summary>
    public ulong LinearAddressQualification => Qualification;

    /// <summary>The qualification of a VM-entry failure due to invalid guest state (exit reason 33), or the failing MSR index (1-based) for reason 34.</summary>
    public EntryFailureQualification EntryFailureQualification => (EntryFailureQualification)Qualification;

    /// <summary>The VM-exit interruption information (exceptions, NMIs, external interrupts).</summary>
    public InterruptionInformation ExitInterruption => new(InterruptionInformation);

    /// <summary>The IDT-vectoring information (an event whose delivery caused the exit).</summary>
    public InterruptionInformation IdtVectoring => new(IdtVectoringInformation);

    /// <summary>The VM-exit instruction information for instruction exits that provide it.</summary>
    public VmxInstructionInformation VmxInstruction => new(InstructionInformation);

    /// <inheritdoc/>
    public bool Equals(VmExit other) =>
        RawExitReason == other.RawExitReason && Outcome == other.Outcome && Qualification == other.Qualification &&
        GuestLinearAddress == other.GuestLinearAddress && GuestPhysicalAddress == other.GuestPhysicalAddress &&
        InstructionLength == other.InstructionLength && InstructionInformation == other.InstructionInformation &&
        InterruptionInformation == other.InterruptionInformation && InterruptionErrorCode == other.InterruptionErrorCode &&
        IdtVectoringInformation == other.IdtVectoringInformation && IdtVectoringErrorCode == other.IdtVectoringErrorCode && Error == other.Error;

    /// <inheritdoc/>
    public override bool Equals(object? obj) => obj is VmExit e && Equals(e);

    /// <inheritdoc/>
    public override int GetHashCode() => HashCode.Combine(RawExitReason, Outcome, Qualification, GuestPhysicalAddress, Error);

    /// <summary>Value equality.</summary>
    public static bool operator ==(VmExit left, VmExit right) => left.Equals(right);

    /// <summary>Value inequality.</summary>
    public static bool operator !=(VmExit left, VmExit right) => !left.Equals(right);

    /// <inheritdoc/>
    public override string ToString() => Outcome switch
    {
        VmExitOutcome.VmFailValid => $"VMfailValid {Error} ({(uint)Error})",
        VmExitOutcome.VmFailInvalid => "VMfailInvalid",
        VmExitOutcome.EntryFailure => $"entry failure {Reason} ({(int)Reason}) qual 0x{Qualification:x}",
        _ => $"exit {Reason} ({(int)Reason}) qual 0x{Qualification:x}" + (GuestPhysicalAddress != 0 ? $" gpa 0x{GuestPhysicalAddress:x}" : ""),
    };
}
