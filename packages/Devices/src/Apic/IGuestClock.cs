namespace VmmKit.Devices;

/// <summary>
/// The guest's time base as a device sees it: the vCPU's time-stamp counter. On the emulated
/// processor the TSC advances one tick per retired instruction at a nominal 1 GHz; on hardware it is
/// the guest's TSC (host TSC scaled and offset by the VMCS). The local APIC timer counts these ticks.
/// Read on the vCPU's own thread.
/// </summary>
public interface IGuestClock
{
    /// <summary>The guest's current TSC value.</summary>
    ulong Tsc { get; }
}
