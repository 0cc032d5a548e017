using System.Buffers.Binary;

namespace VmmKit.Devices;

/// <summary>
/// A VM's two device buses (rust-vmm vm-device's <c>IoManager</c>): <see cref="PortIo"/> for
/// IN/OUT and <see cref="Mmio"/> for guest-physical accesses the VMM routes to devices (EPT
/// violations on unmapped pages, or the APIC-access page). The port helpers do what a PC's ISA bus
/// does for a port nobody decodes: reads float to all ones, writes are dropped.
/// </summary>
public sealed class IoManager
{
    /// <summary>The port-I/O bus, ports 0-0xFFFF.</summary>
    public DeviceBus PortIo { get; } = new(0xFFFF);

    /// <summary>The MMIO bus, the whole 64-bit guest-physical space.</summary>
    public DeviceBus Mmio { get; } = new(ulong.MaxValue);

    /// <summary>An IN of <paramref name="size"/> bytes (1, 2 or 4) from <paramref name="port"/>.</summary>
    /// <param name="port">The port (DX or the immediate).</param>
    /// <param name="size">Access width in bytes: 1, 2 or 4.</param>
    /// <returns>The value, zero-extended; a byte no device decodes reads as all ones (the access is split at ranges).</returns>
    public uint ReadPort(ushort port, int size)
    {
        if (size is not (1 or 2 or 4))
            throw new ArgumentOutOfRangeException(nameof(size), size, "an IN is 1, 2 or 4 bytes wide");
        Span<byte> data = stackalloc byte[4];
        data.Fill(0xFF);
        PortIo.TryRead(port, data[..size]);
        uint value = BinaryPrimitives.ReadUInt32LittleEndian(data);
        return size == 4 ? value : value & ((1u << (8 * size)) - 1);
    }

    /// <summary>An OUT of the low <paramref name="size"/> bytes of <paramref name="value"/> to <paramref name="port"/>.</summary>
    /// <param name="port">The port.</param>
    /// <param name="size">Access width in bytes: 1, 2 or 4.</param>
    /// <param name="value">The value (AL, AX or EAX).</param>
    /// <returns>True when a device decoded at least one byte of the access; false when it went nowhere.</returns>
    public bool WritePort(ushort port, int size, uint value)
    {
        if (size is not (1 or 2 or 4))
            throw new ArgumentOutOfRangeException(nameof(size), size, "an OUT is 1, 2 or 4 bytes wide");
        Span<byte> data = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(data, value);
        return PortIo.TryWrite(port, data[..size]);
    }
}
