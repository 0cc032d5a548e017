namespace VmmKit.Vmx;

/// <summary>
/// The verdict of <see cref="VmEntryChecks"/>: success, VMfailValid with a VM-instruction error (checks on controls
/// and host state, SDM Vol. 3C §27.2), or a VM-entry failure with exit reason 33 and its qualification (checks on
/// guest state, §27.3.1), together with the rule that failed.
/// </summary>
public readonly record struct VmEntryCheckResult
{
    /// <summary>The outcome: <see cref="VmExitOutcome.VmExit"/> means the checks passed and the guest would run.</summary>
    public VmExitOutcome Outcome { get; init; }

    /// <summary>The VM-instruction error on VMfailValid; <see cref="VmInstructionError.None"/> otherwise.</summary>
    public VmInstructionError Error { get; init; }

    /// <summary>The basic exit reason of an entry failure (33 or 34).</summary>
    public VmxExitReason ExitReason { get; init; }

    /// <summary>The exit qualification of an entry failure (§27.8).</summary>
    public EntryFailureQualification Qualification { get; init; }

    /// <summary>The rule that failed, or <see cref="VmEntryCheck.None"/>.</summary>
    public VmEntryCheck FailedCheck { get; init; }

    /// <summary>True when every check passed.</summary>
    public bool Succeeded => Outcome == VmExitOutcome.VmExit;

    /// <summary>Success.</summary>
    public static VmEntryCheckResult Success => default;

    /// <summary>VMfailValid with <paramref name="error"/> because <paramref name="check"/> failed.</summary>
    public static VmEntryCheckResult Fail(VmInstructionError error, VmEntryCheck check) =>
        new() { Outcome = VmExitOutcome.VmFailValid, Error = error, FailedCheck = check };

    /// <summary>A VM-entry failure with <paramref name="reason"/> because <paramref name="check"/> failed.</summary>
    public static VmEntryCheckResult EntryFailure(VmxExitReason reason, VmEntryCheck check, EntryFailureQualification qualification = EntryFailureQualification.Default) =>
        new() { Outcome = VmExitOutcome.EntryFailure, ExitReason = reason, FailedCheck = check, Qualification = qualification };

    /// <summary>
    /// The result as the processor reports it: VMfailValid, or a VM exit with bit 31 set in the exit reason.
    /// Not meaningful on success (the guest runs).
    /// </summary>
    public VmExit ToVmExit() => Outcome switch
    {
        VmExitOutcome.VmFailValid => VmExit.VmFailValid(Error),
        VmExitOutcome.VmFailInvalid => VmExit.VmFailInvalid(),
        VmExitOutcome.EntryFailure => VmExit.EntryFailure(ExitReason, (ulong)Qualification),
        _ => default,
    };

    /// <inheritdoc/>
    public override string ToString() => Outcome switch
    {
        VmExitOutcome.VmExit => "success",
        VmExitOutcome.VmFailValid => $"VMfailValid {(uint)Error} ({Error}) — {FailedCheck}",
        VmExitOutcome.VmFailInvalid => "VMfailInvalid",
        _ => $"entry failure {(int)ExitReason} ({ExitReason}, qualification {(ulong)Qualification}) — {FailedCheck}",
    };
}
