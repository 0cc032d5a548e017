using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace VmmKit.Hypercall;

/// <summary>
/// One hypercall being handled: who called, which number, its arguments in the caller's ABI,
/// the caller's memory, and the continuation a long-running handler may request. Handlers take
/// it by <c>ref</c>; it lives on the dispatcher's stack for the duration of the call only.
/// </summary>
/// <typeparam name="TCaller">The hypervisor's type for the calling vCPU or domain.</typeparam>
public unsafe ref struct HypercallCall<TCaller>
{
    // Copies up to this many bytes go through IGuestVirtualMemory.TranslateToHost (one translation, no copy loop) when
    // they lie within a page; longer ones, and any the memory does not translate, through TryRead/TryWrite.
    private const int SmallCopy = 256;

    private HypercallArguments _arguments;
    private readonly HypercallDispatcher<TCaller> _dispatcher;

    internal HypercallCall(HypercallDispatcher<TCaller> dispatcher, TCaller caller, uint op, HypercallAbi abi,
                           GuestX86Mode mode, IGuestVirtualMemory memory, in HypercallArguments arguments, bool inMulticall)
    {
        _dispatcher = dispatcher;
        Caller = caller;
        Op = op;
        Abi = abi;
        Mode = mode;
        Memory = memory;
        _arguments = arguments;
        InMulticall = inMulticall;
    }

    /// <summary>The calling vCPU or domain, as the hypervisor passed it to the dispatcher.</summary>
    public readonly TCaller Caller { get; }

    /// <summary>The raw hypercall number (RAX, EAX or <c>multicall_entry.op</c> truncated to 32 bits; values above 2^32 - 1 saturate).</summary>
    public readonly uint Op { get; }

    /// <summary>The hypercall number as an enum value (may be a value the enum does not name).</summary>
    public readonly HypercallNumber Number => (HypercallNumber)Op;

    /// <summary>The register and structure ABI of the caller.</summary>
    public readonly HypercallAbi Abi { get; }

    /// <summary>The caller's execution mode.</summary>
    public readonly GuestX86Mode Mode { get; }

    /// <summary>The caller's memory by guest virtual address.</summary>
    public readonly IGuestVirtualMemory Memory { get; }

    /// <summary>True when this call is an entry of a <c>__HYPERVISOR_multicall</c> batch.</summary>
    public readonly bool InMulticall { get; }

    /// <summary>
    /// The sub-operation: the first argument as <c>unsigned int</c>, masked for
    /// <c>memory_op</c> with <c>MEMOP_CMD_MASK</c> (the upper bits carry a continuation's start extent).
    /// </summary>
    public readonly uint SubOp => HypercallDispatcher<TCaller>.SubOpOf(Op, _arguments[0]);

    /// <summary>Argument <paramref name="index"/> (0-5): RDI, RSI, RDX, R10, R8, R9 for 64-bit callers; EBX, ECX, EDX, ESI, EDI, EBP for 32-bit callers.</summary>
    /// <param name="index">0 to 5.</param>
    /// <returns>The argument, zero-extended for 32-bit callers.</returns>
    public readonly ulong Argument(int index) => _arguments[index];

    /// <summary>Argument <paramref name="index"/> as a guest handle (<c>XEN_GUEST_HANDLE_PARAM</c>).</summary>
    /// <param name="index">0 to 5.</param>
    /// <returns>The handle.</returns>
    public readonly GuestHandle Handle(int index) => new(_arguments[index]);

    /// <summary>All six argument slots.</summary>
    public readonly HypercallArguments Arguments => _arguments;

    /// <summary>The dispatcher running this call, for handlers that dispatch nested work.</summary>
    public readonly HypercallDispatcher<TCaller> Dispatcher => _dispatcher;

    /// <summary>True once the handler called <see cref="CreateContinuation(HypercallNumber, ReadOnlySpan{ulong})"/>.</summary>
    public readonly bool IsPreempted => Preempted;

    internal bool Preempted;
    internal uint ContinuationOp;
    internal int ContinuationArgumentCount;

    /// <summary>
    /// Asks to be re-entered later with new arguments (Xen's <c>hypercall_create_continuation</c>).
    /// Outside a multicall the dispatcher loads RAX with <paramref name="op"/> and the argument
    /// registers with <paramref name="arguments"/> and leaves RIP on the VMCALL
    /// (<see cref="HypercallDisposition.Preempted"/>); inside a multicall the entry's arguments are
    /// updated and the multicall itself continues from that entry. Return the value this method
    /// returns from the handler.
    /// </summary>
    /// <param name="op">The hypercall to re-enter (normally the current one).</param>
    /// <param name="arguments">Up to six arguments, in order; registers for slots not given keep their values.</param>
    /// <returns><paramref name="op"/>, the value Xen leaves in RAX for a continuation.</returns>
    public long CreateContinuation(HypercallNumber op, scoped ReadOnlySpan<ulong> arguments)
    {
        if (arguments.Length > HypercallArguments.Count)
            throw new ArgumentOutOfRangeException(nameof(arguments), "a hypercall has at most six arguments");
        for (int i = 0; i < arguments.Length; i++)
            _arguments[i] = arguments[i];
        Preempted = true;
        ContinuationOp = (uint)op;
        ContinuationArgumentCount = arguments.Length;
        return (long)op;
    }

    /// <summary>Withdraws a continuation requested earlier in this call (Xen's <c>hypercall_cancel_continuation</c>).</summary>
    public void CancelContinuation() => Preempted = false;

    /// <summary>
    /// True when the hypervisor wants the CPU back (Xen's <c>hypercall_preempt_check</c>); a long
    /// handler checks it between units of work and creates a continuation when it is set.
    /// </summary>
    /// <returns>The answer of <see cref="HypercallDispatcher{TCaller}.PreemptCheck"/>, or false when none is set.</returns>
    public readonly bool PreemptCheck() => _dispatcher.PreemptCheck is { } check && check(Caller);

    /// <summary>Copies guest bytes at <paramref name="gva"/> (<c>copy_from_guest</c>).</summary>
    /// <param name="gva">Guest virtual address.</param>
    /// <param name="destination">Receives the bytes.</param>
    /// <returns>False for a bad pointer: the handler returns -EFAULT.</returns>
    public readonly bool TryCopyFromGuest(ulong gva, Span<byte> destination)
    {
        if (!RangeOk(gva, (ulong)destination.Length))
        {
            return false;
        }

        byte* p = SmallCopyAddress(gva, destination.Length, write: false);
        if (p != null)
        {
            new ReadOnlySpan<byte>(p, destination.Length).CopyTo(destination);
            return true;
        }

        return Memory.TryRead(gva, destination);
    }

    /// <summary>Copies bytes to the guest at <paramref name="gva"/> (<c>copy_to_guest</c>).</summary>
    /// <param name="gva">Guest virtual address.</param>
    /// <param name="source">The bytes.</param>
    /// <returns>False for a bad pointer: the handler returns -EFAULT.</returns>
    public readonly bool TryCopyToGuest(ulong gva, ReadOnlySpan<byte> source)
    {
        if (!RangeOk(gva, (ulong)source.Length))
        {
            return false;
        }

        byte* p = SmallCopyAddress(gva, source.Length, write: true);
        if (p != null)
        {
            source.CopyTo(new Span<byte>(p, source.Length));
            return true;
        }

        return Memory.TryWrite(gva, source);
    }

    /// <summary>Reads a structure laid out as in the Xen header from <paramref name="gva"/>.</summary>
    /// <typeparam name="T">An ABI struct of this package (or any unmanaged struct with the guest's layout).</typeparam>
    /// <param name="gva">Guest virtual address.</param>
    /// <param name="value">The structure; default on failure.</param>
    /// <returns>False for a bad pointer.</returns>
    public readonly bool TryCopyFromGuest<T>(ulong gva, out T value) where T : unmanaged
    {
        value = default;
        if (!RangeOk(gva, (ulong)sizeof(T)))
        {
            return false;
        }

        byte* p = SmallCopyAddress(gva, sizeof(T), write: false);
        if (p != null)
        {
            value = Unsafe.ReadUnaligned<T>(p);
            return true;
        }

        if (Memory.TryRead(gva, MemoryMarshal.AsBytes(new Span<T>(ref value))))
        {
            return true;
        }

        value = default; // a partial read leaves nothing behind
        return false;
    }

    /// <summary>Writes a structure laid out as in the Xen header to <paramref name="gva"/>.</summary>
    /// <typeparam name="T">An ABI struct of this package.</typeparam>
    /// <param name="gva">Guest virtual address.</param>
    /// <param name="value">The structure.</param>
    /// <returns>False for a bad pointer.</returns>
    public readonly bool TryCopyToGuest<T>(ulong gva, in T value) where T : unmanaged
    {
        if (!RangeOk(gva, (ulong)sizeof(T)))
        {
            return false;
        }

        byte* p = SmallCopyAddress(gva, sizeof(T), write: true);
        if (p != null)
        {
            Unsafe.WriteUnaligned(p, value);
            return true;
        }

        return Memory.TryWrite(gva, MemoryMarshal.AsBytes(new ReadOnlySpan<T>(in value)));
    }

    /// <summary>Reads an array of structures (<c>copy_from_guest(ptr, hnd, nr)</c>).</summary>
    /// <typeparam name="T">Element type with the guest's layout.</typeparam>
    /// <param name="gva">Guest virtual address of element 0.</param>
    /// <param name="destination">Receives the elements.</param>
    /// <returns>False for a bad pointer.</returns>
    public readonly bool TryCopyArrayFromGuest<T>(ulong gva, Span<T> destination) where T : unmanaged =>
        TryCopyFromGuest(gva, MemoryMarshal.AsBytes(destination));

    /// <summary>Writes an array of structures (<c>copy_to_guest(hnd, ptr, nr)</c>).</summary>
    /// <typeparam name="T">Element type with the guest's layout.</typeparam>
    /// <param name="gva">Guest virtual address of element 0.</param>
    /// <param name="source">The elements.</param>
    /// <returns>False for a bad pointer.</returns>
    public readonly bool TryCopyArrayToGuest<T>(ulong gva, ReadOnlySpan<T> source) where T : unmanaged =>
        TryCopyToGuest(gva, MemoryMarshal.AsBytes(source));

    // The host address of a small copy the caller's memory translates (within one page, RangeOk already checked), or
    // null: the copy then goes through TryRead/TryWrite, which decide.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private readonly byte* SmallCopyAddress(ulong gva, int length, bool write) =>
        length <= SmallCopy ? Memory.TranslateToHost(gva, length, write) : null;

    // A range that wraps past the top of the caller's address space is a bad pointer (Xen's
    // access_ok / array_access_ok); 32-bit callers address 4 GiB.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private readonly bool RangeOk(ulong gva, ulong length)
    {
        ulong limit = Abi == HypercallAbi.Native64 ? ulong.MaxValue : uint.MaxValue;
        return length == 0 || (gva <= limit && length - 1 <= limit - gva);
    }
}
