using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace VmmKit.Hypercall;

/// <summary>
/// The general-purpose registers a hypercall reads and writes: the number in RAX/EAX, up to six
/// arguments, the result in RAX/EAX and, for a continuation, rewritten argument registers
/// (Xen's <c>struct cpu_user_regs</c> subset used by <c>hvm_hypercall</c> and
/// <c>hypercall_create_continuation</c>).
/// </summary>
/// <remarks>
/// <para>
/// The layout is a contract: fifteen 64-bit fields in the x86 register-encoding order with RSP left
/// out (RAX, RCX, RDX, RBX, RBP, RSI, RDI, R8–R15), which is exactly the layout of
/// <c>VmmKit.Vmx.GuestRegisters</c> (RSP lives in the VMCS). A VMM therefore hands its saved
/// registers to the dispatcher without copying them, through <see cref="View{TRegisters}"/>:
/// </para>
/// <code>
/// ref HypercallRegisters regs = ref HypercallRegisters.View(ref processor.Registers);
/// dispatcher.Dispatch(vcpu, ref regs, mode, cpl, memory);   // results land in the vCPU's registers
/// </code>
/// <para>
/// Neither package references the other (docs/architecture.md, "Package graph"); each checks its own
/// struct against this order in its tests.
/// </para>
/// </remarks>
[StructLayout(LayoutKind.Sequential)]
public struct HypercallRegisters
{
    /// <summary>The size of the layout in bytes: fifteen 64-bit registers.</summary>
    public const int Size = 15 * sizeof(ulong);

    /// <summary>RAX: hypercall number on entry, result (or the continuation's number) on exit.</summary>
    public ulong Rax;
    /// <summary>RCX: argument 2 of a 32-bit caller.</summary>
    public ulong Rcx;
    /// <summary>RDX: argument 3 of either ABI.</summary>
    public ulong Rdx;
    /// <summary>RBX: argument 1 of a 32-bit caller.</summary>
    public ulong Rbx;
    /// <summary>RBP: argument 6 of a 32-bit caller.</summary>
    public ulong Rbp;
    /// <summary>RSI: argument 2 of a 64-bit caller, argument 4 of a 32-bit caller.</summary>
    public ulong Rsi;
    /// <summary>RDI: argument 1 of a 64-bit caller, argument 5 of a 32-bit caller.</summary>
    public ulong Rdi;
    /// <summary>R8: argument 5 of a 64-bit caller.</summary>
    public ulong R8;
    /// <summary>R9: argument 6 of a 64-bit caller.</summary>
    public ulong R9;
    /// <summary>R10: argument 4 of a 64-bit caller.</summary>
    public ulong R10;
    /// <summary>R11: not an argument register (SYSCALL-style callers lose it; a VMCALL keeps it).</summary>
    public ulong R11;
    /// <summary>R12: not used by the hypercall ABI.</summary>
    public ulong R12;
    /// <summary>R13: not used by the hypercall ABI.</summary>
    public ulong R13;
    /// <summary>R14: not used by the hypercall ABI.</summary>
    public ulong R14;
    /// <summary>R15: not used by the hypercall ABI.</summary>
    public ulong R15;

    /// <summary>
    /// Views a VMM's own register block as <see cref="HypercallRegisters"/> in place (no copy): the
    /// dispatcher's reads and writes go straight to <paramref name="registers"/>.
    /// <typeparamref name="TRegisters"/> must have the layout described in the remarks (fifteen
    /// <see cref="ulong"/> fields, RAX, RCX, RDX, RBX, RBP, RSI, RDI, R8–R15), as
    /// <c>VmmKit.Vmx.GuestRegisters</c> does.
    /// </summary>
    /// <typeparam name="TRegisters">The VMM's register struct.</typeparam>
    /// <param name="registers">The VMM's registers.</param>
    /// <returns>A reference to the same memory.</returns>
    /// <exception cref="ArgumentException">The struct is not <see cref="Size"/> bytes, so it cannot have the layout.</exception>
    public static ref HypercallRegisters View<TRegisters>(ref TRegisters registers)
        where TRegisters : unmanaged
    {
        if (Unsafe.SizeOf<TRegisters>() != Size)
            throw new ArgumentException($"{typeof(TRegisters).Name} is {Unsafe.SizeOf<TRegisters>()} bytes, not the {Size}-byte register layout", nameof(registers));
        return ref Unsafe.As<TRegisters, HypercallRegisters>(ref registers);
    }
}
