namespace VmmKit.Devices;

/// <summary>
/// A device on a <see cref="DeviceBus"/> (rust-vmm vm-device's <c>DevicePio</c>/<c>DeviceMmio</c>):
/// the bus calls it with the base of the range it was registered at and the offset of the access
/// inside that range, so one device object may be registered at several ranges. The data span is
/// the access width (1, 2, 4 or 8 bytes for an instruction; longer for a host-side access), and
/// the access never runs past the registered range. Values are little-endian. A device decides
/// what a guest's access means and must never throw for any offset or width: the guest chose them.
/// </summary>
public interface IBusDevice
{
    /// <summary>A guest read (IN, or a load from MMIO); the device fills <paramref name="data"/>.</summary>
    /// <param name="baseAddress">The base of the range the device was registered at.</param>
    /// <param name="offset">The accessed address minus <paramref name="baseAddress"/>.</param>
    /// <param name="data">Where the value goes; its length is the access width.</param>
    void Read(ulong baseAddress, ulong offset, Span<byte> data);

    /// <summary>A guest write (OUT, or a store to MMIO).</summary>
    /// <param name="baseAddress">The base of the range the device was registered at.</param>
    /// <param name="offset">The accessed address minus <paramref name="baseAddress"/>.</param>
    /// <param name="data">The value written; its length is the access width.</param>
    void Write(ulong baseAddress, ulong offset, ReadOnlySpan<byte> data);
}
