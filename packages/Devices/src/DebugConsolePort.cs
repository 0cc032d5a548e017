namespace VmmKit.Devices;

/// <summary>
/// Bochs' "port 0xE9 hack" (QEMU's isa-debugcon): every byte written to the port goes to a sink,
/// and a read returns 0xE9 so a guest can tell the port exists. Register it on one port.
/// </summary>
/// <param name="sink">Where written bytes go.</param>
public sealed class DebugConsolePort(ISerialSink sink) : IBusDevice
{
    /// <summary>The conventional port, 0xE9.</summary>
    public const ushort DefaultPort = 0xE9;

    /// <summary>The value a read returns (Bochs and QEMU read back 0xE9).</summary>
    public const byte ReadBackValue = 0xE9;

    /// <summary>The range to register the device at: port 0xE9.</summary>
    public static BusRange DefaultRange => new(DefaultPort, 1);

    /// <inheritdoc/>
    public void Read(ulong baseAddress, ulong offset, Span<byte> data)
    {
        data.Clear();
        if (!data.IsEmpty)
            data[0] = ReadBackValue;
    }

    /// <inheritdoc/>
    public void Write(ulong baseAddress, ulong offset, ReadOnlySpan<byte> data)
    {
        if (!data.IsEmpty)
            sink.Write(data[0]);
    }
}
