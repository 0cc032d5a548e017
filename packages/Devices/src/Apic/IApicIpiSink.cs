namespace VmmKit.Devices;

/// <summary>
/// Where a <see cref="LocalApic"/> sends the interprocessor interrupts its guest requests through
/// the ICR or SELF IPI: the system bus between APICs. <see cref="ApicBus"/> is the package's
/// implementation (destination resolution and delivery among registered APICs); a VMM may supply
/// its own. Called on the sending vCPU's thread, outside the sender's lock.
/// </summary>
public interface IApicIpiSink
{
    /// <summary>Delivers <paramref name="command"/> from <paramref name="source"/>.</summary>
    /// <param name="source">The sending APIC (the destination mode and shorthand are relative to it).</param>
    /// <param name="command">The decoded ICR.</param>
    void SendIpi(LocalApic source, in ApicInterruptCommand command);
}
