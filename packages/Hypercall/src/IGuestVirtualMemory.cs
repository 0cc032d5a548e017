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
public unsafe interface IGuestVirtualMemory
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

    /// <summary>
    /// The host address of <paramref name="length"/> bytes at guest virtual address <paramref name="gva"/>, for one
    /// read (or write, when <paramref name="write"/> is true) made at once: what <see cref="TryRead"/> or
    /// <see cref="TryWrite"/> would reach, without a copy loop. Null when the bytes cross a page, when the access
    /// would fail, or when the implementation does not translate to host memory (the default); the caller then uses
    /// <see cref="TryRead"/>/<see cref="TryWrite"/>, which decide. <see cref="HypercallCall{TCaller}"/> reads and
    /// writes small structures through it.
    /// </summary>
    /// <param name="gva">Guest virtual address of the first byte.</param>
    /// <param name="length">Number of bytes, 1 to 4096.</param>
    /// <param name="write">True to check (and record, e.g. dirty bits) a write access; the caller then writes.</param>
    /// <returns>The host address of the first byte, or null.</returns>
    /// <remarks>
    /// The address is good only until the guest's page tables or EPT can change: read or write through it at once,
    /// never keep it. Like <see cref="TryRead"/>, it must only ever lead to the domain's own (or granted) frames.
    /// </remarks>
    byte* TranslateToHost(ulong gva, int length, bool write) => null;
}
