using VmmKit.Ept;
using VmmKit.Boot;

namespace VmmKit.ReferenceHypervisor;

/// <summary>The loader's view of a domain: writes through the domain's EPT, so nothing lands outside its frames.</summary>
internal sealed class GuestPhysicalWriter(GuestPhysicalMemory memory) : IGuestPhysicalWriter
{
    /// <inheritdoc/>
    public bool TryWrite(ulong address, ReadOnlySpan<byte> data) =>
        memory.TryWrite(new GuestPhysicalAddress(address), data, out _);
}
