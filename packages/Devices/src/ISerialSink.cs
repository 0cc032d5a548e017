namespace VmmKit.Devices;

/// <summary>
/// Where a serial device's transmitted bytes leave the VM (rust-vmm vm-superio keeps the register
/// logic separate from this "out" side): a console transcript, a terminal, a socket. Called on the
/// vCPU thread for every byte the guest transmits; it must not block for long.
/// </summary>
public interface ISerialSink
{
    /// <summary>One byte the guest transmitted.</summary>
    /// <param name="value">The byte.</param>
    void Write(byte value);
}
