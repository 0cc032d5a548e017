namespace VmmKit.Hypercall;

/// <summary>
/// A guest pointer passed to a hypercall: Xen's <c>XEN_GUEST_HANDLE(type)</c>. For a 64-bit
/// caller it is a 64-bit guest virtual address; for a 32-bit caller (the compat ABI) it is the
/// 32-bit <c>compat_handle_t</c>, zero-extended here. Element sizes are the caller's: arrays of
/// structures whose layout differs between the ABIs are walked with the ABI's element size.
/// </summary>
/// <param name="Address">The guest virtual address; 0 is the null handle.</param>
public readonly record struct GuestHandle(ulong Address)
{
    /// <summary>True for the null handle (<c>guest_handle_is_null</c>).</summary>
    public bool IsNull => Address == 0;

    /// <summary>
    /// The handle <paramref name="count"/> elements of <paramref name="elementSize"/> bytes further
    /// (<c>guest_handle_add_offset</c>), wrapping modulo 2^64 like the guest's own pointer arithmetic.
    /// </summary>
    /// <param name="count">Number of elements.</param>
    /// <param name="elementSize">Size of one element in the caller's ABI.</param>
    /// <returns>The advanced handle.</returns>
    public GuestHandle Add(ulong count, int elementSize) => new(unchecked(Address + count * (ulong)elementSize));

    /// <summary>Formats as <c>gva:0x...</c>.</summary>
    /// <returns>The address in hexadecimal.</returns>
    public override string ToString() => $"gva:0x{Address:x}";
}
