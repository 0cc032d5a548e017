using VmmKit.Ept;

namespace VmmKit.Boot;

/// <summary>
/// An <see cref="IGuestPhysicalWriter"/> over a domain's <see cref="GuestPhysicalMemory"/>: every
/// write goes through the domain's EPT, so the loader cannot reach a frame the domain does not own.
/// </summary>
/// <param name="memory">The domain's guest-physical memory.</param>
public sealed class GuestPhysicalMemoryWriter(GuestPhysicalMemory memory) : IGuestPhysicalWriter
{
    /// <inheritdoc/>
    public bool TryWrite(ulong address, ReadOnlySpan<byte> data) =>
        memory.TryWrite(new GuestPhysicalAddress(address), data, out _);
}
