using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using VmmKit.Hypercall;

namespace VmmKit.GrantTable;

/// <summary>
/// <c>__HYPERVISOR_grant_table_op(cmd, uop, count)</c> for HVM/PVH callers, wired into a
/// <see cref="HypercallDispatcher{TCaller}"/>: reads each operation from guest memory in the caller's ABI
/// (64-bit or compat 32-bit layouts), runs it on the <see cref="GrantTableHost"/>, and writes the results back.
/// </summary>
/// <remarks>
/// As Xen's <c>hvm_grant_table_op</c> (xen/arch/x86/hvm/hypercall.c), HVM callers get query_size, setup_table,
/// set_version, get_version, copy, map_grant_ref, unmap_grant_ref and swap_grant_ref; every other command returns
/// -ENOSYS. Batches check the dispatcher's preemption hook between operations (unmaps every 32, as Xen batches them)
/// and continue through <see cref="HypercallCall{TCaller}.CreateContinuation"/> with <c>uop</c> advanced and
/// <c>count</c> reduced, like Xen's <c>hypercall_create_continuation(__HYPERVISOR_grant_table_op, "ihi", ...)</c>.
/// As Xen's <c>compat_grant_table_op</c>, a 32-bit caller's copies are read in chunks of 204 (what the 8 KiB
/// translation area holds) before any of a chunk runs, and its setup_table is limited to 1021 frames.
/// <para>
/// With no preemption hook on the dispatcher, a <c>GNTTABOP_copy</c> call runs up to 16 operations in one hold of the
/// <see cref="GrantTableHost"/>'s copy words (the granters' whose grants it claims, which other copies of those
/// grants and every operation but a copy wait for), reading each operation from guest memory just before it runs and
/// writing its status just after through the call's <see cref="IGuestVirtualMemory"/>; a batch of unmaps does the same
/// under the host's exclusive lock. That memory view must then not wait for a thread that is calling into the same
/// <see cref="GrantTableHost"/> (VmmKit.Hypercall's <see cref="GuestLinearMemory"/> and
/// <see cref="PagingDisabledGuestMemory"/> take no lock). With a hook, a copy's hold ends before every check, which
/// runs as in Xen between operations.
/// </para>
/// </remarks>
/// <typeparam name="TCaller">The hypervisor's type for the calling vCPU or domain.</typeparam>
public sealed class GrantTableHypercalls<TCaller>
{
    private const int MaxFramesOnStack = 1024;

    // compat_grant_table_op works in the vCPU's translation area, COMPAT_ARG_XLAT_SIZE = 2 * PAGE_SIZE bytes
    // (asm/x86_64/uaccess.h): a chunk of COMPAT_ARG_XLAT_SIZE / sizeof(struct gnttab_copy) = 8192 / 40 = 204 copies,
    // and setup_table's limit_max = (COMPAT_ARG_XLAT_SIZE - sizeof(struct gnttab_setup_table)) / sizeof(xen_pfn_t)
    // = (8192 - 24) / 8 = 1021 frames.
    private const int CompatXlatSize = 8192;
    private const int CompatCopyChunk = CompatXlatSize / 40;

    // GNTTABOP_copy operations run in one hold of the host's copy words when no preemption hook runs between them: a
    // call of whole pages then takes its words once, not once per operation, and other vCPUs' grant operations and
    // frees wait at most this many copies (a few microseconds).
    private const uint CopyOpsPerHold = 16;

    private const int NativeCopySize = 40; // sizeof(struct gnttab_copy), 64-bit
    private const int CompatSetupTableFrames = (CompatXlatSize - 24) / sizeof(ulong);
    private readonly GrantTableHost _host;
    private readonly IGrantTableCallerResolver<TCaller> _resolver;

    /// <summary>Creates the handler.</summary>
    /// <param name="host">The grant tables.</param>
    /// <param name="resolver">Maps callers to their domains.</param>
    public GrantTableHypercalls(GrantTableHost host, IGrantTableCallerResolver<TCaller> resolver)
    {
        ArgumentNullException.ThrowIfNull(host);
        ArgumentNullException.ThrowIfNull(resolver);
        _host = host;
        _resolver = resolver;
    }

    /// <summary>Registers <see cref="Handle"/> as <c>__HYPERVISOR_grant_table_op</c>.</summary>
    /// <param name="dispatcher">The dispatcher.</param>
    public void Register(HypercallDispatcher<TCaller> dispatcher)
    {
        ArgumentNullException.ThrowIfNull(dispatcher);
        dispatcher.Register(HypercallNumber.GrantTableOp, Handle);
    }

    /// <summary>Handles one <c>grant_table_op</c> call.</summary>
    /// <param name="call">The call: cmd, uop, count in arguments 0-2.</param>
    /// <returns>0, a negated errno, or the continuation's number.</returns>
    public long Handle(ref HypercallCall<TCaller> call)
    {
        uint cmd = (uint)call.Argument(0);
        ulong uop = call.Argument(1);
        uint count = (uint)call.Argument(2);
        if (_resolver.GetDomain(call.Caller) is not { } d)
        {
            return XenErrno.ENOSYS.Negated();
        }

        bool compat = call.Abi == HypercallAbi.Compat32;
        if (compat)
        {
            uop &= uint.MaxValue;
        }

        // hvm_grant_table_op filters on the raw command; do_grant_table_op then checks count.
        switch ((GrantTableOp)cmd)
        {
            case GrantTableOp.QuerySize:
            case GrantTableOp.SetupTable:
            case GrantTableOp.SetVersion:
            case GrantTableOp.GetVersion:
            case GrantTableOp.Copy:
            case GrantTableOp.MapGrantRef:
            case GrantTableOp.UnmapGrantRef:
            case GrantTableOp.SwapGrantRef:
                break;
            default:
                return XenErrno.ENOSYS.Negated();
        }

        if ((int)count < 0)
        {
            return XenErrno.EINVAL.Negated();
        }

        return (GrantTableOp)cmd switch
        {
            GrantTableOp.MapGrantRef => Map(ref call, d, cmd, uop, count),
            GrantTableOp.UnmapGrantRef => Unmap(ref call, d, cmd, uop, count),
            GrantTableOp.Copy => compat ? CopyCompat(ref call, d, cmd, uop, count) : Copy(ref call, d, cmd, uop, count),
            GrantTableOp.SwapGrantRef => Swap(ref call, d, cmd, uop, count),
            GrantTableOp.SetupTable => SetupTable(ref call, d, uop, count, compat),
            GrantTableOp.QuerySize => QuerySize(ref call, d, uop, count),
            GrantTableOp.SetVersion => SetVersion(ref call, d, uop),
            _ => GetVersion(ref call, d, uop),
        };
    }

    private static long Continue(ref HypercallCall<TCaller> call, uint cmd, ulong uop, uint done, int size, uint count) =>
        call.CreateContinuation(HypercallNumber.GrantTableOp, [cmd, uop + ((ulong)done * (ulong)size), count - done]);

    private delegate void BatchOp<T, TState>(GrantTableHost host, GrantDomain caller, ref T op, ref TState state);

    // The loop of every batched GNTTABOP: preemption check between operations (every `preemptEvery`), copy the operation
    // in, run it, copy back `writeLength` bytes from `writeOffset` (the whole struct, or the status), -EFAULT for a bad
    // pointer. `state` lives for the whole call. The static lambdas of the callers are cached, so nothing is allocated.
    private long Batch<T, TState>(ref HypercallCall<TCaller> call, GrantDomain d, uint cmd, ulong uop, uint count,
        uint preemptEvery, int writeOffset, int writeLength, BatchOp<T, TState> op, ref TState state) where T : unmanaged
    {
        int size = Unsafe.SizeOf<T>();
        for (uint i = 0; i < count; i++)
        {
            if (i != 0 && i % preemptEvery == 0 && call.PreemptCheck())
            {
                return Continue(ref call, cmd, uop, i, size, count);
            }

            ulong at = uop + ((ulong)i * (ulong)size);
            if (!call.TryCopyFromGuest(at, out T value))
            {
                return XenErrno.EFAULT.Negated();
            }

            op(_host, d, ref value, ref state);
            bool written = writeLength == sizeof(short)
                ? call.TryCopyToGuest(at + (ulong)writeOffset, Unsafe.As<T, short>(ref Unsafe.AddByteOffset(ref value, writeOffset))) // a status
                : call.TryCopyToGuest(at + (ulong)writeOffset, MemoryMarshal.AsBytes(new ReadOnlySpan<T>(in value)).Slice(writeOffset, writeLength));
            if (!written)
            {
                return XenErrno.EFAULT.Negated();
            }
        }

        return 0;
    }

    private long Map(ref HypercallCall<TCaller> call, GrantDomain d, uint cmd, ulong uop, uint count)
    {
        byte none = 0;
        return Batch(ref call, d, cmd, uop, count, 1, 0, Unsafe.SizeOf<GnttabMapGrantRef>(),
            static (GrantTableHost h, GrantDomain caller, ref GnttabMapGrantRef op, ref byte _) =>
            {
                h.MapGrantRef(caller, ref op);
                GrantTableMetrics.RecordMap(op.Status);
            }, ref none);
    }

    // gnttab_unmap_grant_ref: batches of GNTTAB_UNMAP_BATCH_SIZE operations, each read just before it runs and its
    // status written just after; each batch's mappings leave the EPT, then one flush, then each completes (its pin,
    // status flags and frame reference dropped). A preemption check between batches. The host's exclusive lock is held
    // across a batch, its reads and status writes included (the call's IGuestVirtualMemory then runs under it, as in a
    // copy's hold).
    private long Unmap(ref HypercallCall<TCaller> call, GrantDomain d, uint cmd, ulong uop, uint count)
    {
        _host.CheckCaller(d);
        uint i = 0;
        while (i < count)
        {
            if (i != 0 && call.PreemptCheck())
            {
                return Continue(ref call, cmd, uop, i, Unsafe.SizeOf<GnttabUnmapGrantRef>(), count);
            }

            long rc = UnmapHold(ref call, d, uop, ref i, Math.Min(count, i + GrantTableHost.UnmapBatchSize));
            if (rc != 0)
            {
                return rc;
            }
        }

        return 0;
    }

    // Operations i to end - 1 of GNTTABOP_unmap_grant_ref, one batch under one hold of the host's exclusive lock; i ends at the
    // first operation not run. -EFAULT when an operation cannot be read (it does not run) or its status cannot be
    // written (it has run): the batch so far is flushed and completed, and no later operation runs.
    private long UnmapHold(ref HypercallCall<TCaller> call, GrantDomain d, ulong uop, ref uint i, uint end)
    {
        const int statusOffset = 20; // offsetof(struct gnttab_unmap_grant_ref, status)
        PendingUnmaps pending = default;
        int n = 0;
        using (_host.Exclusive())
        {
            try
            {
                for (; i < end; i++)
                {
                    ulong at = uop + ((ulong)i * (ulong)Unsafe.SizeOf<GnttabUnmapGrantRef>());
                    if (!call.TryCopyFromGuest(at, out GnttabUnmapGrantRef op))
                    {
                        return XenErrno.EFAULT.Negated();
                    }

                    op.Status = (short)_host.UnmapBeginHeld(d, in op, ref pending[n++]);
                    if (!call.TryCopyToGuest(at + statusOffset, op.Status))
                    {
                        i++;
                        return XenErrno.EFAULT.Negated();
                    }
                }
            }
            finally
            {
                _host.UnmapCompleteHeld(d, in pending, n);
            }
        }

        return 0;
    }

    // gnttab_copy: each operation read from guest memory just before it runs and its status written back just after,
    // a preemption check between operations; what one operation claimed stays claimed for the next ones until the call
    // ends, however it ends. One hold of the host's copy words spans up to CopyOpsPerHold operations, their reads and
    // status writes included (the call's IGuestVirtualMemory then runs in it), or one operation when the dispatcher has
    // a preemption hook, which runs between holds: the hook may wait for anything.
    private long Copy(ref HypercallCall<TCaller> call, GrantDomain d, uint cmd, ulong uop, uint count)
    {
        _host.CheckCaller(d);
        uint perHold = call.Dispatcher.PreemptCheck is null ? CopyOpsPerHold : 1;
        var batch = default(GrantTableHost.CopyBatch);
        try
        {
            uint i = 0;
            while (i < count)
            {
                if (i != 0 && call.PreemptCheck())
                {
                    return Continue(ref call, cmd, uop, i, NativeCopySize, count);
                }

                long rc = CopyHold(ref call, d, uop, ref i, Math.Min(count, i + perHold), count, ref batch);
                if (rc != 0)
                {
                    return rc;
                }
            }

            return 0;
        }
        finally
        {
            _host.EndCopyBatch(ref batch);
        }
    }

    // Operations i to end - 1 of a native GNTTABOP_copy in one hold (GrantTableHost.BeginCopyHold); i ends at the first
    // operation not run. -EFAULT when an operation cannot be read (it does not run) or its status cannot be written
    // (it has run): no later operation runs. A hold that ends the call (its last operation ran, or a fault stops it)
    // releases what the batch holds before it ends, rather than keeping it for EndCopyBatch to release under the
    // exclusive lock.
    private long CopyHold(ref HypercallCall<TCaller> call, GrantDomain d, ulong uop, ref uint i, uint end, uint count, ref GrantTableHost.CopyBatch batch)
    {
        const int statusOffset = 36; // offsetof(struct gnttab_copy, status), 64-bit
        long rc = 0;
        int okay = 0, errors = 0;
        _host.BeginCopyHold(d, ref batch);
        try
        {
            for (; i < end; i++)
            {
                ulong at = uop + ((ulong)i * NativeCopySize);
                if (!call.TryCopyFromGuest(at, out GnttabCopy op))
                {
                    rc = XenErrno.EFAULT.Negated();
                    break;
                }

                _host.CopyHeld(d, ref op, ref batch);
                if (op.Status == 0)
                {
                    okay++;
                }
                else
                {
                    errors++;
                }

                if (!call.TryCopyToGuest(at + statusOffset, op.Status))
                {
                    i++;
                    rc = XenErrno.EFAULT.Negated();
                    break;
                }
            }
        }
        finally
        {
            _host.EndCopyHold(ref batch, endsBatch: i == count || rc != 0);
        }

        GrantTableMetrics.RecordCopies(okay, errors); // outside the hold: a listener may take its own locks
        return rc;
    }

    // compat_grant_table_op, GNTTABOP_copy: a chunk of operations (as many native ones as the translation area holds)
    // is read and translated before gnttab_copy runs any of them; a fault reading one runs none of the chunk. Then the
    // statuses of the operations run are written back, each one: a fault makes the result -EFAULT without stopping
    // the others. A chunk gnttab_copy left preempted continues the call at its first operation not run.
    [SkipLocalsInit] // every element of the chunk read is written before it is used
    private long CopyCompat(ref HypercallCall<TCaller> call, GrantDomain d, uint cmd, ulong uop, uint count)
    {
        const int size = 24;         // sizeof(struct compat_gnttab_copy)
        const int statusOffset = 20; // offsetof(struct compat_gnttab_copy, status)
        Span<GnttabCopy> chunk = stackalloc GnttabCopy[CompatCopyChunk];
        long rc = 0;
        uint i = 0;
        while (i < count && rc == 0)
        {
            int n = 0;
            for (; n < chunk.Length && i < count; i++, n++)
            {
                if (!call.TryCopyFromGuest(uop + ((ulong)i * size), out CompatGnttabCopy c))
                {
                    return XenErrno.EFAULT.Negated();
                }

                // XLAT_gnttab_copy widens the 32-bit frame numbers.
                chunk[n] = new GnttabCopy
                {
                    Source = new GnttabCopyPtr { Gmfn = c.Source.Gmfn, DomId = c.Source.DomId, Offset = c.Source.Offset },
                    Dest = new GnttabCopyPtr { Gmfn = c.Dest.Gmfn, DomId = c.Dest.DomId, Offset = c.Dest.Offset },
                    Len = c.Len,
                    Flags = c.Flags,
                };
            }

            int ran = CopyChunk(ref call, d, chunk[..n]);
            i -= (uint)(n - ran); // i -= rc, n -= rc: gnttab_copy returns the operations it did not run
            ulong first = uop + ((ulong)(i - (uint)ran) * size);
            for (int k = ran - 1; k >= 0; k--) // last to first, as Xen writes them
            {
                if (!call.TryCopyToGuest(first + ((ulong)k * size) + statusOffset, chunk[k].Status))
                {
                    rc = XenErrno.EFAULT.Negated();
                }
            }

            if (rc == 0 && ran < n)
            {
                return Continue(ref call, cmd, uop, i, size, count);
            }
        }

        return rc;
    }

    // gnttab_copy on a translated chunk: a preemption check between operations (none before the first), what one
    // operation claimed kept for the next ones and released when it returns, however it returns; one hold spans up to
    // CopyOpsPerHold operations, or one when a preemption hook must run between them. Returns how many
    // operations ran.
    private int CopyChunk(ref HypercallCall<TCaller> call, GrantDomain d, scoped Span<GnttabCopy> ops)
    {
        _host.CheckCaller(d);
        int perHold = call.Dispatcher.PreemptCheck is null ? (int)CopyOpsPerHold : 1;
        var batch = default(GrantTableHost.CopyBatch);
        try
        {
            int j = 0;
            while (j < ops.Length)
            {
                if (j != 0 && call.PreemptCheck())
                {
                    return j;
                }

                int n = Math.Min(ops.Length - j, perHold);
                int okay = _host.CopyHeldRun(d, ops.Slice(j, n), ref batch, endsBatch: j + n == ops.Length);
                GrantTableMetrics.RecordCopies(okay, n - okay);
                j += n;
            }

            return ops.Length;
        }
        finally
        {
            _host.EndCopyBatch(ref batch);
        }
    }

    private long Swap(ref HypercallCall<TCaller> call, GrantDomain d, uint cmd, ulong uop, uint count)
    {
        const int statusOffset = 8; // offsetof(struct gnttab_swap_grant_ref, status)
        byte none = 0;
        return Batch(ref call, d, cmd, uop, count, 1, statusOffset, sizeof(short),
            static (GrantTableHost h, GrantDomain caller, ref GnttabSwapGrantRef op, ref byte _) => h.SwapGrantRef(caller, ref op), ref none);
    }

    private long SetupTable(ref HypercallCall<TCaller> call, GrantDomain d, ulong uop, uint count, bool compat)
    {
        // gnttab_setup_table: -EINVAL unless count is 1. compat_grant_table_op translates inside its loop over count,
        // so a 32-bit caller's count 0 runs nothing and returns 0.
        if (compat && count == 0)
        {
            return 0;
        }

        if (count != 1)
        {
            return XenErrno.EINVAL.Negated();
        }

        CompatGnttabSetupTable c = default;
        ushort dom;
        uint nrFrames;
        ulong frameList;
        if (compat)
        {
            if (!call.TryCopyFromGuest(uop, out c))
            {
                return XenErrno.EFAULT.Negated();
            }

            (dom, nrFrames, frameList) = (c.Dom, c.NrFrames, c.FrameList);
        }
        else
        {
            if (!call.TryCopyFromGuest(uop, out GnttabSetupTable op))
            {
                return XenErrno.EFAULT.Negated();
            }

            (dom, nrFrames, frameList) = (op.Dom, op.NrFrames, op.FrameList);
        }

        Span<ulong> frames = stackalloc ulong[MaxFramesOnStack];
        if (compat)
        {
            frames = frames[..CompatSetupTableFrames]; // limit_max: more frames give GNTST_general_error, nothing grown
        }

        GrantStatus status = _host.SetupTable(d, _resolver.IsPrivileged(call.Caller), dom, nrFrames, frames);
        if (status == GrantStatus.Okay)
        {
            for (int i = 0; i < (int)nrFrames; i++)
            {
                if (!compat)
                {
                    // gnttab_setup_table: a frame that cannot be written is GNTST_bad_virt_addr; the others are written.
                    if (!call.TryCopyToGuest(frameList + ((ulong)i * sizeof(ulong)), frames[i]))
                    {
                        status = GrantStatus.BadVirtAddr;
                    }

                    continue;
                }

                // compat_grant_table_op narrows each frame to compat_pfn_t: one that does not fit (a frame placed above
                // 2^32, INVALID_GFN for one not placed) is GNTST_address_too_big, one that cannot be written
                // GNTST_bad_virt_addr; either ends the copy-out.
                if (frames[i] > uint.MaxValue)
                {
                    status = GrantStatus.AddressTooBig;
                    break;
                }

                if (!call.TryCopyToGuest(frameList + ((ulong)i * sizeof(uint)), (uint)frames[i]))
                {
                    status = GrantStatus.BadVirtAddr;
                    break;
                }
            }
        }

        if (compat)
        {
            // compat_grant_table_op copies the whole compat structure back, not only its status.
            c.Status = (short)status;
            return call.TryCopyToGuest(uop, in c) ? 0 : XenErrno.EFAULT.Negated();
        }

        const int statusOffset = 8; // offsetof(struct gnttab_setup_table, status)
        short s = (short)status;
        return call.TryCopyToGuest(uop + statusOffset, in s) ? 0 : XenErrno.EFAULT.Negated();
    }

    private long QuerySize(ref HypercallCall<TCaller> call, GrantDomain d, ulong uop, uint count)
    {
        if (count != 1)
        {
            return XenErrno.EINVAL.Negated();
        }

        if (!call.TryCopyFromGuest(uop, out GnttabQuerySize op))
        {
            return XenErrno.EFAULT.Negated();
        }

        _host.QuerySize(d, _resolver.IsPrivileged(call.Caller), ref op);
        return call.TryCopyToGuest(uop, in op) ? 0 : XenErrno.EFAULT.Negated();
    }

    private long SetVersion(ref HypercallCall<TCaller> call, GrantDomain d, ulong uop)
    {
        if (!call.TryCopyFromGuest(uop, out GnttabSetVersion op))
        {
            return XenErrno.EFAULT.Negated();
        }

        long rc = _host.SetVersion(d, ref op);
        return call.TryCopyToGuest(uop, in op) ? rc : XenErrno.EFAULT.Negated();
    }

    private long GetVersion(ref HypercallCall<TCaller> call, GrantDomain d, ulong uop)
    {
        if (!call.TryCopyFromGuest(uop, out GnttabGetVersion op))
        {
            return XenErrno.EFAULT.Negated();
        }

        long rc = _host.GetVersion(d, _resolver.IsPrivileged(call.Caller), ref op);
        if (rc != 0)
        {
            return rc;
        }

        const int versionOffset = 4; // offsetof(struct gnttab_get_version, version)
        return call.TryCopyToGuest(uop + versionOffset, in op.Version) ? 0 : XenErrno.EFAULT.Negated();
    }
}
