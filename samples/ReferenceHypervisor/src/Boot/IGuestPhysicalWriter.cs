namespace VmmKit.ReferenceHypervisor.Boot;

/// <summary>
/// Where the loader writes a guest image: the domain's guest-physical space (through its EPT).
/// A write outside the domain's memory returns false and writes nothing.
/// </summary>
internal interface IGuestPhysicalWriter
{
    /// <summary>Copies <paramref name="data"/> to guest-physical <paramref name="address"/>.</summary>
    bool TryWrite(ulong address, ReadOnlySpan<byte> data);
}
