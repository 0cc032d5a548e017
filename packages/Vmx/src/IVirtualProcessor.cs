using VmmKit.Ept;

namespace VmmKit.Vmx;

/// <summary>
/// A logical processor in VMX root operation that runs guests: VMLAUNCH/VMRESUME of a VMCS until the next VM exit.
/// Implemented by a software processor (VmmKit.Vmx.Emulator) or a hardware backend. Guest-physical memory is
/// whatever the VMCS's <see cref="VmcsField.EptPointer"/> names.
/// </summary>
public interface IVirtualProcessor
{
    /// <summary>The guest general-purpose registers as of the last VM exit; the hypervisor edits them before the next <see cref="Run"/>.</summary>
    ref GuestRegisters Registers { get; }

    /// <summary>
    /// Enters the guest described by <paramref name="vmcs"/> (VMLAUNCH if its launch state is clear, VMRESUME otherwise):
    /// performs the VM-entry checks, runs the guest until a VM exit, stores the guest state and the VM-exit
    /// information fields into the VMCS, and returns the exit — or the VMfail / VM-entry failure.
    /// </summary>
    VmExit Run(Vmcs vmcs);

    /// <summary>INVEPT: drops cached guest-physical translations derived from <paramref name="eptPointer"/> (or from all EPTPs).</summary>
    void InvalidateEpt(InveptType type, EptPointer eptPointer);

    /// <summary>
    /// Thread-safe: asks a <see cref="Run"/> in progress on another thread (or the next one) to return soon, as a host
    /// interrupt does to a logical processor in VMX non-root operation: with the "external-interrupt exiting" pin-based
    /// control the run ends with <see cref="VmxExitReason.ExternalInterrupt"/>, and a guest waiting in the HLT activity
    /// state wakes. A hypervisor uses it to post an event to a vCPU running elsewhere (an event-channel upcall, an IPI),
    /// then injects the event on the next entry.
    /// </summary>
    void RequestExit();

    /// <summary>The number of guest instructions retired so far (deterministic; counts only guest execution).</summary>
    ulong InstructionsRetired { get; }
}
