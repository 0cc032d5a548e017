using System.Runtime.CompilerServices;

namespace VmmKit.Hypercall;

/// <summary>
/// The six argument slots of a hypercall (Xen passes at most six: five in registers for HVM
/// callers plus a sixth used by continuations, and six in <c>struct multicall_entry</c>).
/// For a 32-bit caller each slot holds a zero-extended 32-bit value.
/// </summary>
[InlineArray(Count)]
public struct HypercallArguments
{
    /// <summary>Number of argument slots.</summary>
    public const int Count = 6;

    private ulong _element0;
}
