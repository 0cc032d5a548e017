namespace VmmKit.Hypercall;

/// <summary>
/// The calling vCPU's view of guest memory by guest virtual (linear) address: the translation
/// through the guest's own paging and then the domain's EPT, which only the processor side
/// knows. The hypervisor implements it per vCPU; hypercall handlers copy arguments through it
/// (Xen's <c>copy_from_guest</c>/<c>copy_to_guest</c>, which for HVM guests walk the guest's
/// page tables in <c>hvm_copy_from_guest_linear</c>).
/// </summary>
/// <remarks>
/// Implementations must never touch memory outside the domain's own frames (and frames granted
/// to it) and must never throw for a bad guest address: they return false, which a handler
/// turns into -EFAULT. A false return may follow a partial write, as in Xen.
/// </remarks>
public interface IGuestVirtualMemory
{
    /// <summary>Copies <c>destination.Length</c> bytes starting at guest virtual address <paramref name="gva"/>.</summary>
    /// <param name="gva">Guest virtual address of the first byte.</param>
    /// <param name="destination">Receives the bytes.</param>
    /// <returns>False when any byte is not mapped or not readable by the guest.</returns>
    bool TryRead(ulong gva, Span<byte> destination);

    /// <summary>Copies <paramref name="source"/> to guest virtual address <paramref name="gva"/>.</summary>
    /// <param name="gva">Guest virtual address of the first byte.</param>
    /// <param name="source">The bytes to write.</param>
    /// <returns>False when any byte is not mapped or not writable by the guest.</returns>
    bool TryWrite(ulong gva, ReadOnlySpan<byte> source);
}
