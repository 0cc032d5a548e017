using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace VmmKit.Hypercall;

/// <summary>
/// <c>struct multicall_entry</c> (xen/xen.h) for 64-bit callers: one hypercall of a
/// <c>__HYPERVISOR_multicall</c> batch. Xen writes back only <see cref="Result"/>, except when
/// the entry is preempted: then the whole entry, with the continuation's arguments, is written back.
/// </summary>
[StructLayout(LayoutKind.Sequential)]
public struct MulticallEntry
{
    /// <summary><c>op</c>: the hypercall number.</summary>
    public ulong Op;
    /// <summary><c>result</c>: the hypercall's return value, written by the hypervisor.</summary>
    public ulong Result;
    /// <summary><c>args[6]</c>: the arguments.</summary>
    public HypercallArguments Args;
}

/// <summary>
/// <c>struct compat_multicall_entry</c>: <c>struct multicall_entry</c> as a 32-bit caller lays it
/// out (<c>xen_ulong_t</c> is 32 bits on x86-32), 32 bytes.
/// </summary>
[StructLayout(LayoutKind.Sequential)]
public struct CompatMulticallEntry
{
    /// <summary><c>op</c>: the hypercall number.</summary>
    public uint Op;
    /// <summary><c>result</c>: the hypercall's return value, truncated to 32 bits.</summary>
    public uint Result;
    /// <summary><c>args[6]</c>: the arguments.</summary>
    public CompatMulticallArguments Args;
}

/// <summary>The six 32-bit <c>args</c> of <see cref="CompatMulticallEntry"/>.</summary>
[InlineArray(HypercallArguments.Count)]
public struct CompatMulticallArguments
{
    private uint _element0;
}
