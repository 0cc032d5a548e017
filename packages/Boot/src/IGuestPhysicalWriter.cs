namespace VmmKit.Boot;

/// <summary>
/// Where the loader writes a guest image: the domain's guest-physical space (through its EPT).
/// A write that would reach outside the domain's memory returns false.
/// </summary>
public interface IGuestPhysicalWriter
{
    /// <summary>Copies <paramref name="data"/> to guest-physical <paramref name="address"/>.</summary>
    /// <param name="address">Guest-physical address of the first byte.</param>
    /// <param name="data">The bytes to write.</param>
    /// <returns>False when any byte of the range is outside the domain's memory.</returns>
    bool TryWrite(ulong address, ReadOnlySpan<byte> data);
}
