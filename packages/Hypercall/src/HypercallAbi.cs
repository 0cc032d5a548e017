namespace VmmKit.Hypercall;

/// <summary>
/// The register and structure ABI of one hypercall, chosen per call from the caller's mode as
/// <c>hvm_hypercall()</c> does (xen/arch/x86/hvm/hypercall.c): 64-bit mode uses the native
/// x86-64 ABI, every other mode the 32-bit (compat) ABI.
/// </summary>
public enum HypercallAbi
{
    /// <summary>
    /// x86-64: number in RAX, arguments in RDI, RSI, RDX, R10, R8 (R9 for a sixth), result in RAX.
    /// Structures use the x86-64 layout; guest handles and <c>xen_ulong_t</c> are 8 bytes.
    /// </summary>
    Native64,

    /// <summary>
    /// x86-32 (Xen's "compat" ABI): number in EAX, arguments in EBX, ECX, EDX, ESI, EDI (EBP for a
    /// sixth), result in EAX. Structures use the i386 layout; guest handles are 4 bytes.
    /// </summary>
    Compat32,
}

/// <summary>Helpers for <see cref="HypercallAbi"/>.</summary>
public static class HypercallAbiExtensions
{
    /// <summary>The ABI Xen uses for a caller in <paramref name="mode"/>: 64-bit only in <see cref="GuestX86Mode.Long64"/>.</summary>
    /// <param name="mode">The caller's mode.</param>
    /// <returns>The ABI.</returns>
    public static HypercallAbi ForMode(GuestX86Mode mode) => mode == GuestX86Mode.Long64 ? HypercallAbi.Native64 : HypercallAbi.Compat32;

    /// <summary>Size in bytes of a guest handle, <c>unsigned long</c> and <c>xen_ulong_t</c> argument in this ABI (8 or 4).</summary>
    /// <param name="abi">The ABI.</param>
    /// <returns>8 for <see cref="HypercallAbi.Native64"/>, 4 for <see cref="HypercallAbi.Compat32"/>.</returns>
    public static int PointerSize(this HypercallAbi abi) => abi == HypercallAbi.Native64 ? 8 : 4;
}
