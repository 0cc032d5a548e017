using VmmKit.Ept;
using VmmKit.Hypercall;

namespace VmmKit.ReferenceHypervisor.Host;

/// <summary>
/// Domain 0's hypercall arguments: a pointer is a guest-physical address of domain 0 (identity, no paging), so Xen's
/// structs are exchanged in Xen's layout in the memory Dom0 shares with the hypervisor, as privcmd's buffers are.
/// </summary>
internal sealed unsafe class Dom0Memory(Domain dom0) : IGuestVirtualMemory
{
    /// <inheritdoc/>
    public bool TryRead(ulong gva, Span<byte> destination) =>
        dom0.Physical.TryRead(new GuestPhysicalAddress(gva), destination, out _);

    /// <inheritdoc/>
    public bool TryWrite(ulong gva, ReadOnlySpan<byte> source) =>
        dom0.Physical.TryWrite(new GuestPhysicalAddress(gva), source, out _);

    /// <inheritdoc/>
    public byte* TranslateToHost(ulong gva, int length, bool write) =>
        dom0.Physical.TranslateToHost(new GuestPhysicalAddress(gva), length, write ? EptAccess.Write : EptAccess.Read);
}
