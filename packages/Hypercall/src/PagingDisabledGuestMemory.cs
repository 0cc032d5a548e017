using VmmKit.Ept;

namespace VmmKit.Hypercall;

/// <summary>
/// <see cref="IGuestVirtualMemory"/> for a vCPU whose paging is off (CR0.PG = 0, e.g. a PVH
/// guest at its 32-bit entry point): a linear address is the guest-physical address, translated
/// by the domain's EPT. Once the guest enables paging the hypervisor must supply its own
/// implementation that walks the guest page tables first: <see cref="GuestLinearMemory"/>.
/// </summary>
/// <param name="memory">The domain's guest-physical memory.</param>
public sealed unsafe class PagingDisabledGuestMemory(GuestPhysicalMemory memory) : IGuestVirtualMemory
{
    private readonly GuestPhysicalMemory _memory = memory ?? throw new ArgumentNullException(nameof(memory));

    /// <inheritdoc/>
    public bool TryRead(ulong gva, Span<byte> destination) => _memory.TryRead(new GuestPhysicalAddress(gva), destination, out _);

    /// <inheritdoc/>
    public bool TryWrite(ulong gva, ReadOnlySpan<byte> source) => _memory.TryWrite(new GuestPhysicalAddress(gva), source, out _);

    /// <inheritdoc/>
    public byte* TranslateToHost(ulong gva, int length, bool write) =>
        _memory.TranslateToHost(new GuestPhysicalAddress(gva), length, write ? EptAccess.Write : EptAccess.Read);
}
