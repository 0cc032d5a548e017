namespace VmmKit.Devices;

/// <summary>
/// A device's interrupt output pin (an IRQ line to a PIC or I/O APIC, or an event channel the VMM
/// binds to it). Level-triggered: the device reports each change of level, and a VMM with an
/// edge-triggered sink raises its event on the rising edge.
/// </summary>
public interface IInterruptLine
{
    /// <summary>The line's level changed.</summary>
    /// <param name="asserted">True when the device now requests an interrupt.</param>
    void SetLevel(bool asserted);
}
