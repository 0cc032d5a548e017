using System.Runtime.CompilerServices;

namespace VmmKit.Hypercall;

/// <summary>
/// Routes a VMCALL to its handler, as Xen's <c>hvm_hypercall()</c> does: reads the number and
/// arguments from the registers of the caller's ABI, refuses callers outside ring 0 (and
/// virtual-8086 mode) with -EPERM, asks the <see cref="Policy"/>, runs the handler registered for
/// the number (or for its sub-operation), and writes the result or the continuation back.
/// An unregistered number or sub-operation gets -ENOSYS. <c>__HYPERVISOR_multicall</c> is
/// built in (<see cref="Multicall"/>).
/// </summary>
/// <remarks>
/// The handler table is an array indexed by hypercall number holding function pointers or
/// delegates; a dispatch allocates nothing. Register handlers before vCPUs run; dispatching is
/// then safe from several threads at once (all per-call state lives in <see cref="HypercallCall{TCaller}"/>).
/// </remarks>
/// <typeparam name="TCaller">The hypervisor's type for the calling vCPU or domain, handed to handlers and the policy.</typeparam>
public sealed unsafe class HypercallDispatcher<TCaller>
{
    /// <summary>Size of the hypercall table: Xen's <c>NR_hypercalls</c>. Numbers at or above it get -ENOSYS.</summary>
    public const int TableSize = 64;

    /// <summary>Largest sub-operation table one hypercall may have.</summary>
    public const int MaxSubOps = 1024;

    /// <summary>
    /// <c>MEMOP_CMD_MASK</c> (Xen-internal, xen/include/xen/hypercall.h: <c>(1 &lt;&lt; MEMOP_EXTENT_SHIFT) - 1</c>
    /// with <c>MEMOP_EXTENT_SHIFT</c> = 6): the low bits of memory_op's <c>cmd</c> that name the operation.
    /// </summary>
    public const uint MemoryOpCommandMask = 0x3f;

    private readonly HandlerSlot[] _table = new HandlerSlot[TableSize];
    private readonly HandlerSlot[]?[] _subOps = new HandlerSlot[]?[TableSize];

    private struct HandlerSlot
    {
        public delegate*<ref HypercallCall<TCaller>, long> Function;
        public HypercallHandler<TCaller>? Delegate;

        public readonly bool IsSet => Function != null || Delegate != null;
    }

    /// <summary>Creates a dispatcher with only <c>__HYPERVISOR_multicall</c> registered.</summary>
    public HypercallDispatcher()
    {
        Register(HypercallNumber.Multicall, &Multicall);
    }

    /// <summary>The authorization hook consulted before each handler; null allows everything.</summary>
    public IHypercallPolicy<TCaller>? Policy { get; set; }

    /// <summary>
    /// Xen's <c>hypercall_preempt_check</c>: true when the hypervisor wants the CPU back. Multicall
    /// consults it between entries; long handlers through <see cref="HypercallCall{TCaller}.PreemptCheck"/>.
    /// Null means never preempt.
    /// </summary>
    public Func<TCaller, bool>? PreemptCheck { get; set; }

    /// <summary>Registers a function-pointer handler for a whole hypercall, replacing any handler or sub-operation table.</summary>
    /// <param name="number">The hypercall.</param>
    /// <param name="handler">A static method <c>static long H(ref HypercallCall&lt;TCaller&gt; call)</c>.</param>
    public void Register(HypercallNumber number, delegate*<ref HypercallCall<TCaller>, long> handler)
    {
        ArgumentNullException.ThrowIfNull(handler);
        int index = CheckNumber(number);
        _subOps[index] = null;
        _table[index] = new HandlerSlot { Function = handler };
    }

    /// <summary>Registers a delegate handler for a whole hypercall, replacing any handler or sub-operation table.</summary>
    /// <param name="number">The hypercall.</param>
    /// <param name="handler">The handler.</param>
    public void Register(HypercallNumber number, HypercallHandler<TCaller> handler)
    {
        ArgumentNullException.ThrowIfNull(handler);
        int index = CheckNumber(number);
        _subOps[index] = null;
        _table[index] = new HandlerSlot { Delegate = handler };
    }

    /// <summary>
    /// Registers a function-pointer handler for one sub-operation (<see cref="HypercallCall{TCaller}.SubOp"/>,
    /// e.g. <c>XENVER_version</c> of <c>xen_version</c>). Removes a whole-hypercall handler for
    /// <paramref name="number"/>; other sub-operations of the number get -ENOSYS.
    /// </summary>
    /// <param name="number">The hypercall.</param>
    /// <param name="subOp">The sub-operation, below <see cref="MaxSubOps"/>.</param>
    /// <param name="handler">A static handler method.</param>
    public void RegisterSubOp(HypercallNumber number, uint subOp, delegate*<ref HypercallCall<TCaller>, long> handler)
    {
        ArgumentNullException.ThrowIfNull(handler);
        SubOpSlot(number, subOp) = new HandlerSlot { Function = handler };
    }

    /// <summary>Registers a delegate handler for one sub-operation; see the function-pointer overload.</summary>
    /// <param name="number">The hypercall.</param>
    /// <param name="subOp">The sub-operation, below <see cref="MaxSubOps"/>.</param>
    /// <param name="handler">The handler.</param>
    public void RegisterSubOp(HypercallNumber number, uint subOp, HypercallHandler<TCaller> handler)
    {
        ArgumentNullException.ThrowIfNull(handler);
        SubOpSlot(number, subOp) = new HandlerSlot { Delegate = handler };
    }

    /// <summary>Removes every handler of <paramref name="number"/>, which then gets -ENOSYS (this also disables the built-in multicall).</summary>
    /// <param name="number">The hypercall.</param>
    public void Unregister(HypercallNumber number)
    {
        int index = CheckNumber(number);
        _table[index] = default;
        _subOps[index] = null;
    }

    /// <summary>True when <paramref name="number"/> has a whole-hypercall handler or at least one sub-operation handler.</summary>
    /// <param name="number">The hypercall.</param>
    /// <returns>Whether a call could reach a handler.</returns>
    public bool IsRegistered(HypercallNumber number) =>
        (uint)number < TableSize && (_table[(int)number].IsSet || _subOps[(int)number] is not null);

    /// <summary>True when a call of <paramref name="number"/> with sub-operation <paramref name="subOp"/> reaches a handler.</summary>
    /// <param name="number">The hypercall.</param>
    /// <param name="subOp">The sub-operation.</param>
    /// <returns>Whether the pair is handled.</returns>
    public bool IsRegistered(HypercallNumber number, uint subOp)
    {
        if ((uint)number >= TableSize)
            return false;
        if (_table[(int)number].IsSet)
            return true;
        return _subOps[(int)number] is { } subs && subOp < (uint)subs.Length && subs[subOp].IsSet;
    }

    /// <summary>
    /// Handles a VMCALL/VMMCALL exit: reads the hypercall from <paramref name="registers"/> in the
    /// ABI of <paramref name="mode"/>, runs it, and writes the result (or continuation) back.
    /// </summary>
    /// <param name="caller">The calling vCPU or domain, handed to the policy and handler.</param>
    /// <param name="registers">The vCPU's registers; updated in place.</param>
    /// <param name="mode">The caller's mode (<see cref="GuestX86ModeDecoder"/>).</param>
    /// <param name="cpl">The caller's current privilege level (CS.RPL / SS.DPL), 0-3.</param>
    /// <param name="memory">The calling vCPU's guest-virtual memory.</param>
    /// <returns>Whether to advance RIP past the instruction (<see cref="HypercallDisposition.Completed"/>) or leave it (<see cref="HypercallDisposition.Preempted"/>).</returns>
    public HypercallDisposition Dispatch(TCaller caller, ref HypercallRegisters registers, GuestX86Mode mode, int cpl, IGuestVirtualMemory memory)
    {
        // hvm_hypercall(): only ring 0 may call, except in real mode; never from virtual-8086 mode.
        if (mode == GuestX86Mode.Virtual8086 || (mode != GuestX86Mode.Real && cpl != 0))
        {
            HypercallMetrics.Record(mode == GuestX86Mode.Long64 ? registers.Rax : (uint)registers.Rax, XenErrno.EPERM.Negated());
            registers.Rax = unchecked((ulong)XenErrno.EPERM.Negated());
            return HypercallDisposition.Completed;
        }

        HypercallArguments args = default;
        uint op;
        HypercallAbi abi;
        if (mode == GuestX86Mode.Long64)
        {
            abi = HypercallAbi.Native64;
            op = registers.Rax > uint.MaxValue ? uint.MaxValue : (uint)registers.Rax;
            args[0] = registers.Rdi;
            args[1] = registers.Rsi;
            args[2] = registers.Rdx;
            args[3] = registers.R10;
            args[4] = registers.R8;
            args[5] = registers.R9;
        }
        else
        {
            abi = HypercallAbi.Compat32;
            op = (uint)registers.Rax;
            args[0] = (uint)registers.Rbx;
            args[1] = (uint)registers.Rcx;
            args[2] = (uint)registers.Rdx;
            args[3] = (uint)registers.Rsi;
            args[4] = (uint)registers.Rdi;
            args[5] = (uint)registers.Rbp;
        }

        var call = new HypercallCall<TCaller>(this, caller, op, abi, mode, memory, args, inMulticall: false);
        long result = Invoke(ref call);
        HypercallMetrics.Record(op, call.Preempted ? 0 : result);

        if (call.Preempted)
        {
            // hypercall_create_continuation(): RAX = op, then the argument registers of the ABI.
            registers.Rax = call.ContinuationOp;
            WriteArguments(ref registers, abi, call.Arguments, call.ContinuationArgumentCount);
            return HypercallDisposition.Preempted;
        }

        if (abi == HypercallAbi.Native64)
            registers.Rax = unchecked((ulong)result);
        else // regs->eax = ret: the low half only, as Xen's union of eax/rax.
            registers.Rax = (registers.Rax & 0xFFFF_FFFF_0000_0000UL) | unchecked((uint)result);
        return HypercallDisposition.Completed;
    }

    /// <summary>
    /// Runs one call through the table and the policy (no register access): what
    /// <see cref="Dispatch"/> and multicall use for each call. Useful to dispatch a call built by
    /// the host, e.g. in tests and benchmarks.
    /// </summary>
    /// <param name="call">The call.</param>
    /// <returns>The handler's result, -ENOSYS when none is registered, or the policy's refusal.</returns>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public long Invoke(ref HypercallCall<TCaller> call)
    {
        uint op = call.Op;
        if (op >= TableSize)
            return XenErrno.ENOSYS.Negated();

        HandlerSlot slot = _table[op];
        if (!slot.IsSet)
        {
            HandlerSlot[]? subs = _subOps[op];
            uint sub = SubOpOf(op, call.Argument(0));
            if (subs is null || sub >= (uint)subs.Length || !subs[sub].IsSet)
                return XenErrno.ENOSYS.Negated();
            slot = subs[sub];
        }

        if (Policy is { } policy)
        {
            long verdict = policy.Authorize(in call);
            if (verdict != 0)
                return verdict;
        }

        return slot.Function != null ? slot.Function(ref call) : slot.Delegate!(ref call);
    }

    /// <summary>Builds a call as the dispatcher would for a register exit, without touching registers.</summary>
    /// <param name="caller">The caller.</param>
    /// <param name="number">The hypercall number.</param>
    /// <param name="abi">The caller's ABI.</param>
    /// <param name="memory">The caller's memory.</param>
    /// <param name="arguments">The arguments (zero-extended 32-bit values for <see cref="HypercallAbi.Compat32"/>).</param>
    /// <returns>A call to pass to <see cref="Invoke"/>.</returns>
    public HypercallCall<TCaller> CreateCall(TCaller caller, uint number, HypercallAbi abi, IGuestVirtualMemory memory, in HypercallArguments arguments) =>
        new(this, caller, number, abi, abi == HypercallAbi.Native64 ? GuestX86Mode.Long64 : GuestX86Mode.Protected32, memory, arguments, inMulticall: false);

    internal HypercallCall<TCaller> CreateMulticallEntry(in HypercallCall<TCaller> parent, uint op, in HypercallArguments arguments) =>
        new(this, parent.Caller, op, parent.Abi, parent.Mode, parent.Memory, arguments, inMulticall: true);

    /// <summary>The sub-operation of a call: <c>(unsigned int)arg0</c>, masked with <c>MEMOP_CMD_MASK</c> for memory_op.</summary>
    /// <param name="op">The hypercall number.</param>
    /// <param name="argument0">The first argument.</param>
    /// <returns>The sub-operation.</returns>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static uint SubOpOf(uint op, ulong argument0) =>
        op == (uint)HypercallNumber.MemoryOp ? (uint)argument0 & MemoryOpCommandMask : (uint)argument0;

    /// <summary>
    /// The built-in <c>__HYPERVISOR_multicall(call_list, nr_calls)</c> handler (xen/common/multicall.c);
    /// entries are <see cref="MulticallEntry"/> (64-bit callers) or <see cref="CompatMulticallEntry"/> (32-bit callers).
    /// </summary>
    /// <param name="call">The multicall.</param>
    /// <returns>0, -EFAULT, -EINVAL for a nested multicall, or the continuation's number.</returns>
    public static long Multicall(ref HypercallCall<TCaller> call) => MulticallExecutor.Run(ref call);

    private static void WriteArguments(ref HypercallRegisters registers, HypercallAbi abi, in HypercallArguments args, int count)
    {
        for (int i = 0; i < count; i++)
        {
            ulong value = args[i];
            if (abi == HypercallAbi.Native64)
            {
                switch (i)
                {
                    case 0: registers.Rdi = value; break;
                    case 1: registers.Rsi = value; break;
                    case 2: registers.Rdx = value; break;
                    case 3: registers.R10 = value; break;
                    case 4: registers.R8 = value; break;
                    default: registers.R9 = value; break;
                }
            }
            else
            {
                switch (i)
                {
                    case 0: registers.Rbx = value; break;
                    case 1: registers.Rcx = value; break;
                    case 2: registers.Rdx = value; break;
                    case 3: registers.Rsi = value; break;
                    case 4: registers.Rdi = value; break;
                    default: registers.Rbp = value; break;
                }
            }
        }
    }

    private static int CheckNumber(HypercallNumber number)
    {
        if ((uint)number >= TableSize)
            throw new ArgumentOutOfRangeException(nameof(number), number, $"hypercall numbers are below {TableSize} (NR_hypercalls)");
        return (int)number;
    }

    private ref HandlerSlot SubOpSlot(HypercallNumber number, uint subOp)
    {
        int index = CheckNumber(number);
        if (subOp >= MaxSubOps)
            throw new ArgumentOutOfRangeException(nameof(subOp), subOp, $"sub-operations are below {MaxSubOps}");
        _table[index] = default;
        HandlerSlot[] subs = _subOps[index] ?? [];
        if (subOp >= (uint)subs.Length)
        {
            Array.Resize(ref subs, (int)subOp + 1);
        }
        _subOps[index] = subs;
        return ref subs[subOp];
    }
}
