namespace VmmKit.Hypercall;

/// <summary>
/// The general-purpose registers a hypercall reads and writes: the number in RAX/EAX, up to six
/// arguments, the result in RAX/EAX and, for a continuation, rewritten argument registers
/// (Xen's <c>struct cpu_user_regs</c> subset used by <c>hvm_hypercall</c> and
/// <c>hypercall_create_continuation</c>). The hypervisor copies them from its vCPU before
/// <see cref="HypercallDispatcher{TCaller}.Dispatch"/> and back afterwards.
/// </summary>
public struct HypercallRegisters
{
    /// <summary>RAX: hypercall number on entry, result (or the continuation's number) on exit.</summary>
    public ulong Rax;
    /// <summary>RBX: argument 1 of a 32-bit caller.</summary>
    public ulong Rbx;
    /// <summary>RCX: argument 2 of a 32-bit caller.</summary>
    public ulong Rcx;
    /// <summary>RDX: argument 3 of either ABI.</summary>
    public ulong Rdx;
    /// <summary>RSI: argument 2 of a 64-bit caller, argument 4 of a 32-bit caller.</summary>
    public ulong Rsi;
    /// <summary>RDI: argument 1 of a 64-bit caller, argument 5 of a 32-bit caller.</summary>
    public ulong Rdi;
    /// <summary>RBP: argument 6 of a 32-bit caller.</summary>
    public ulong Rbp;
    /// <summary>R8: argument 5 of a 64-bit caller.</summary>
    public ulong R8;
    /// <summary>R9: argument 6 of a 64-bit caller.</summary>
    public ulong R9;
    /// <summary>R10: argument 4 of a 64-bit caller.</summary>
    public ulong R10;
}
