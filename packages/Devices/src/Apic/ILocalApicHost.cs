namespace VmmKit.Devices;

/// <summary>
/// What a <see cref="LocalApic"/> tells its VMM (one per vCPU). The calls may come from any thread
/// (another vCPU sending an IPI, a device thread raising an interrupt) and are made outside the
/// APIC's lock, so the VMM may call back into the APIC.
/// </summary>
public interface ILocalApicHost
{
    /// <summary>
    /// An interrupt or NMI became pending: a vCPU that is halted or running guest code on another
    /// thread should be kicked so it checks <see cref="LocalApic.HasPendingInterrupt"/> and
    /// <see cref="LocalApic.HasPendingNmi"/> before its next VM entry.
    /// </summary>
    /// <param name="apic">The APIC with the new interrupt.</param>
    void InterruptPending(LocalApic apic);

    /// <summary>An INIT IPI arrived (the APIC has already done its INIT reset, SDM Vol. 3A §11.4.7.3): put the vCPU in wait-for-SIPI.</summary>
    /// <param name="apic">The APIC that received INIT.</param>
    void InitReceived(LocalApic apic);

    /// <summary>A start-up IPI arrived: a vCPU in wait-for-SIPI starts in real mode at CS:IP = (vector &lt;&lt; 8):0, physical address vector &lt;&lt; 12 (SDM Vol. 3A §9.4.4, §27.5).</summary>
    /// <param name="apic">The APIC that received the SIPI.</param>
    /// <param name="vector">The start-up vector.</param>
    void StartupReceived(LocalApic apic, byte vector);

    /// <summary>
    /// The guest wrote EOI for a level-triggered interrupt (its TMR bit was set): the I/O APIC that
    /// sent it clears its Remote IRR (SDM Vol. 3A §11.8.5).
    /// </summary>
    /// <param name="apic">The APIC that received the EOI.</param>
    /// <param name="vector">The vector whose service ended.</param>
    void LevelTriggeredEoi(LocalApic apic, byte vector);
}
