using VmmKit.Hypercall;

namespace VmmKit.ReferenceHypervisor.Tests;

/// <summary>
/// A caller's memory for hypercall pointer arguments larger than one page (a vcpu_guest_context, an HVM save stream):
/// <paramref name="size"/> bytes at guest virtual address 0; an access reaching past them fails (-EFAULT).
/// </summary>
internal class GuestBuffer(int size) : IGuestVirtualMemory
{
    /// <summary>The bytes, indexed by guest virtual address.</summary>
    public readonly byte[] Bytes = new byte[size];

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
