namespace VmmKit.Vmx;

// Typed views of the fields a hypervisor touches on every exit (hvpp-style: the name reads like the SDM).
public sealed partial class Vmcs
{
    /// <summary>Pin-based VM-execution controls (0x4000).</summary>
    public PinBasedControls PinBasedControls
    {
        get => (PinBasedControls)Read(VmcsField.PinBasedVmExecutionControls);
        set => Write(VmcsField.PinBasedVmExecutionControls, (uint)value);
    }

    /// <summary>Primary processor-based VM-execution controls (0x4002).</summary>
    public PrimaryProcessorBasedControls PrimaryProcessorBasedControls
    {
        get => (PrimaryProcessorBasedControls)Read(VmcsField.PrimaryProcessorBasedVmExecutionControls);
        set => Write(VmcsField.PrimaryProcessorBasedVmExecutionControls, (uint)value);
    }

    /// <summary>Secondary processor-based VM-execution controls (0x401E).</summary>
    public SecondaryProcessorBasedControls SecondaryProcessorBasedControls
    {
        get => (SecondaryProcessorBasedControls)Read(VmcsField.SecondaryProcessorBasedVmExecutionControls);
        set => Write(VmcsField.SecondaryProcessorBasedVmExecutionControls, (uint)value);
    }

    /// <summary>
    /// The secondary controls in effect: the field's value when "activate secondary controls" is set, otherwise none
    /// (SDM §25.6.2).
    /// </summary>
    public SecondaryProcessorBasedControls EffectiveSecondaryControls =>
        (PrimaryProcessorBasedControls & PrimaryProcessorBasedControls.ActivateSecondaryControls) != 0
            ? SecondaryProcessorBasedControls : SecondaryProcessorBasedControls.None;

    /// <summary>Primary VM-exit controls (0x400C).</summary>
    public VmExitControls VmExitControls
    {
        get => (VmExitControls)Read(VmcsField.VmExitControls);
        set => Write(VmcsField.VmExitControls, (uint)value);
    }

    /// <summary>VM-entry controls (0x4012).</summary>
    public VmEntryControls VmEntryControls
    {
        get => (VmEntryControls)Read(VmcsField.VmEntryControls);
        set => Write(VmcsField.VmEntryControls, (uint)value);
    }

    /// <summary>Guest RIP (0x681E).</summary>
    public ulong GuestRip
    {
        get => Read(VmcsField.GuestRip);
        set => Write(VmcsField.GuestRip, value);
    }

    /// <summary>Guest RSP (0x681C).</summary>
    public ulong GuestRsp
    {
        get => Read(VmcsField.GuestRsp);
        set => Write(VmcsField.GuestRsp, value);
    }

    /// <summary>Guest RFLAGS (0x6820).</summary>
    public ulong GuestRflags
    {
        get => Read(VmcsField.GuestRflags);
        set => Write(VmcsField.GuestRflags, value);
    }

    /// <summary>The EPT pointer (0x201A) as VmmKit.Ept's type.</summary>
    public Ept.EptPointer EptPointer
    {
        get => new(Read(VmcsField.EptPointer));
        set => Write(VmcsField.EptPointer, value.Value);
    }

    /// <summary>The VM-entry interruption-information field (0x4016): the event to inject on the next entry.</summary>
    public InterruptionInformation VmEntryInterruption
    {
        get => new((uint)Read(VmcsField.VmEntryInterruptionInformation));
        set => Write(VmcsField.VmEntryInterruptionInformation, value.Value);
    }

    /// <summary>Advances guest RIP past the instruction that caused the last exit (by the VM-exit instruction length).</summary>
    public void SkipExitingInstruction() => GuestRip += Read(VmcsField.VmExitInstructionLength);
}
