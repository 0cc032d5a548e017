namespace VmmKit.Devices;

/// <summary>
/// A range of addresses a device decodes on a <see cref="DeviceBus"/>: <see cref="Size"/> addresses
/// from <see cref="Base"/> (ports on the port-I/O bus, bytes on the MMIO bus). rust-vmm's vm-device
/// calls this a <c>RangeInclusive</c>; <see cref="Last"/> is inclusive so a range may end at the top
/// of the 64-bit space.
/// </summary>
/// <param name="Base">The first address.</param>
/// <param name="Size">The number of addresses (at least 1 for a range a bus accepts).</param>
public readonly record struct BusRange(ulong Base, ulong Size)
{
    /// <summary>The last address of the range (inclusive); meaningful only when <see cref="IsValid"/>.</summary>
    public ulong Last => Base + Size - 1;

    /// <summary>True when the range is non-empty and does not wrap the 64-bit address space.</summary>
    public bool IsValid => Size != 0 && Base + (Size - 1) >= Base;

    /// <summary>True when <paramref name="address"/> lies inside the range.</summary>
    /// <param name="address">The address to test.</param>
    /// <returns>True when <c>Base &lt;= address &lt;= Last</c>.</returns>
    public bool Contains(ulong address) => address >= Base && address - Base < Size;

    /// <summary>True when the two ranges share at least one address.</summary>
    /// <param name="other">The other range.</param>
    /// <returns>True on overlap.</returns>
    public bool Overlaps(BusRange other) => Base <= other.Last && other.Base <= Last;

    /// <inheritdoc/>
    public override string ToString() => $"0x{Base:x}-0x{Last:x}";
}
