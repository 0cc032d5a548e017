using VmmKit.Hypercall;

namespace VmmKit.ReferenceHypervisor.Tests;

/// <summary>
/// A guest's memory for the pointer arguments of hypercalls dispatched straight from a test: one page at guest virtual
/// address 0; an access reaching past it fails, as an unmapped address would (-EFAULT).
/// </summary>
internal sealed class GuestPage : IGuestVirtualMemory
{
    /// <summary>The page's bytes, indexed by guest virtual address.</summary>
    public readonly byte[] Bytes = new byte[4096];

    /// <inheritdoc/>
    public bool TryRead(ulong gva, Span<byte> destination)
    {
        if (gva > (ulong)Bytes.Length || (ulong)destination.Length > (ulong)Bytes.Length - gva)
            return false;
        Bytes.AsSpan((int)gva, destination.Length).CopyTo(destination);
        return true;
    }

    /// <inheritdoc/>
    public bool TryWrite(ulong gva, ReadOnlySpan<byte> source)
    {
        if (gva > (ulong)Bytes.Length || (ulong)source.Length > (ulong)Bytes.Length - gva)
            return false;
        source.CopyTo(Bytes.AsSpan((int)gva));
        return true;
    }
}
