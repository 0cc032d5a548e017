using VmmKit.Ept;

namespace VmmKit.GrantTable;

/// <summary>
/// Reference counts on machine frames, so that a frame stays allocated while another domain uses it (Xen's
/// <c>get_page</c>/<c>put_page</c> on <c>struct page_info</c>): a grant mapping, and a grant a <c>GNTTABOP_copy</c>
/// hypercall keeps claimed between operations, each hold a reference, and <see cref="Free"/> of a referenced frame is
/// deferred until the last reference is dropped.
/// </summary>
/// <remarks>
/// <see cref="MachineMemory"/> frees at once and has no counts, so a hypervisor that uses grant tables frees
/// every domain frame through <see cref="Free"/> (when the domain releases memory or dies) instead of
/// <see cref="MachineMemory.FreeFrame"/>. Until freed, a deferred frame keeps its owner and contents; it is
/// zeroed by <see cref="MachineMemory"/> when it is finally freed. Thread-safe: once a <see cref="GrantTableHost"/>
/// uses these counts, these methods take that host's exclusive lock, which waits for its copies; the host changes a
/// frame's count under that lock, or under the copy word of the domain that owns the frame (a copy keeping a grant across
/// a hypercall's holds, or releasing it; atomically when copies share the word); one 32-bit count per frame of
/// <see cref="Memory"/>.
/// </remarks>
public sealed class FrameReferences
{
    // Per frame: the reference count, and PendingFree once the owner freed a frame still referenced.
    private const int PendingFree = 1 << 31;
    private const int CountMask = ~PendingFree;

    private readonly Lock _lock = new();
    private readonly int[] _counts;
    private int _pendingFreeCount;
    private long _epoch;
    private GrantTableHost? _host; // the host using these counts: changes take its exclusive lock, so a free waits for its copies

    /// <summary>Creates the counts for <paramref name="memory"/>.</summary>
    /// <param name="memory">The machine memory whose frames are counted.</param>
    /// <exception cref="ArgumentException"><paramref name="memory"/> has more than 2^31 - 1 frames.</exception>
    public FrameReferences(MachineMemory memory)
    {
        ArgumentNullException.ThrowIfNull(memory);
        if (memory.FrameCount > int.MaxValue)
        {
            throw new ArgumentException("The machine memory has more frames than the counts can index.", nameof(memory));
        }

        Memory = memory;
        _counts = new int[memory.FrameCount];
    }

    /// <summary>The machine memory whose frames are counted.</summary>
    public MachineMemory Memory { get; }

    /// <summary>Incremented whenever an owner frees a frame and when a deferred free happens: caches of frame ownership compare it.</summary>
    public long Epoch => Volatile.Read(ref _epoch);

    /// <summary>Number of frames whose free is waiting for their last reference.</summary>
    public int PendingFreeCount => Volatile.Read(ref _pendingFreeCount);

    // Every change is made under this lock: the host's exclusive lock once attached (it changes the counts under it),
    // else our own.
    private Scope Exclusive()
    {
        GrantTableHost? host = Volatile.Read(ref _host);
        if (host is not null)
        {
            host.EnterExclusive();
        }
        else
        {
            _lock.Enter();
        }

        return new Scope(host, _lock);
    }

    private readonly ref struct Scope(GrantTableHost? host, Lock own)
    {
        public void Dispose()
        {
            if (host is not null)
            {
                host.ExitExclusive();
            }
            else
            {
                own.Exit();
            }
        }
    }

    /// <summary>Takes a reference on an allocated frame.</summary>
    /// <param name="frame">An allocated frame that is not waiting to be freed.</param>
    /// <exception cref="InvalidOperationException">The frame is free or already freed by its owner.</exception>
    public void Acquire(MachineFrameNumber frame)
    {
        using (Exclusive())
        {
            if (!Memory.TryGetOwner(frame, out _) || (_counts[frame.Value] & PendingFree) != 0)
            {
                throw new InvalidOperationException($"{frame} is not an allocated frame.");
            }

            AcquireHeld(frame.Value);
        }
    }

    /// <summary>
    /// Takes a reference on <paramref name="frame"/> if it is allocated to <paramref name="owner"/> and its free is not
    /// pending (Xen's <c>get_page(page, d)</c>): checked and taken in one step, so no free of the frame comes between.
    /// </summary>
    /// <param name="frame">Any frame number.</param>
    /// <param name="owner">The owner the frame must have.</param>
    /// <returns>False, with no reference taken, when the frame is free, another owner's, outside the machine, or waiting to be freed.</returns>
    public bool TryAcquire(MachineFrameNumber frame, FrameOwner owner)
    {
        using (Exclusive())
        {
            if (!Memory.TryGetOwner(frame, out FrameOwner actual) || actual != owner || (_counts[frame.Value] & PendingFree) != 0)
            {
                return false;
            }

            AcquireHeld(frame.Value);
            return true;
        }
    }

    /// <summary>
    /// Takes a reference on the frame that <paramref name="gfn"/> maps in <paramref name="ept"/> with at least
    /// <paramref name="access"/>, whoever owns it (Xen's <c>get_page_from_gfn</c>, which looks up the p2m entry and
    /// references its page under the p2m lock): looked up and referenced in one step, so a free of the frame after its
    /// removal from <paramref name="ept"/> cannot come between and leave the reference on a frame already handed to
    /// another domain.
    /// </summary>
    /// <remarks>
    /// Exact when whoever frees a frame first removes it from every EPT that maps it (as <c>decrease_reservation</c>
    /// and a grant unmap do). A dying domain's frames are freed while its EPT still maps them: do not call this on the
    /// EPT of a domain whose frames are being freed.
    /// </remarks>
    /// <param name="ept">The domain's EPT; a disposed one maps nothing.</param>
    /// <param name="gfn">Any guest frame.</param>
    /// <param name="access">The rights the mapping must have (e.g. <see cref="EptAccess.Write"/>).</param>
    /// <param name="frame">The referenced frame; release it with <see cref="Release"/>.</param>
    /// <returns>False when <paramref name="gfn"/> maps no frame with those rights, or one whose free is pending.</returns>
    public bool TryAcquireMapped(EptTables ept, GuestFrameNumber gfn, EptAccess access, out MachineFrameNumber frame)
    {
        ArgumentNullException.ThrowIfNull(ept);
        using (Exclusive()) // every free takes it, and a frame leaves the EPT before it is freed
        {
            if (!GrantTableHost.TryLookupLive(ept, gfn, out frame, out EptAccess actual) || (actual & access) != access || frame.Value >= (ulong)_counts.Length || !Memory.TryGetOwner(frame, out _)
                || (_counts[frame.Value] & PendingFree) != 0)
            {
                frame = default;
                return false;
            }

            AcquireHeld(frame.Value);
            return true;
        }
    }

    /// <summary>Drops a reference; the last one frees the frame if its owner already freed it.</summary>
    /// <param name="frame">A frame with at least one reference.</param>
    /// <exception cref="InvalidOperationException">The frame has no reference (a hypervisor bug).</exception>
    public void Release(MachineFrameNumber frame)
    {
        using (Exclusive()) // the last release may free the frame, which must wait for the host's copies
        {
            if (frame.Value >= (ulong)_counts.Length || (_counts[frame.Value] & CountMask) == 0)
            {
                throw new InvalidOperationException($"{frame} has no reference to release.");
            }

            ReleaseHeld(frame.Value);
        }
    }

    /// <summary>
    /// Takes a reference on <paramref name="mfn"/>, which the caller has checked: an allocated frame that is not waiting
    /// to be freed, or one that already holds a reference (its free may be pending). Under the host's exclusive lock, or
    /// the copy word of the frame's owner: <paramref name="shared"/> when that word is shared, so other copies may
    /// count the frame at once (an atomic increment; a plain one otherwise).
    /// </summary>
    internal void AcquireHeld(ulong mfn, bool shared = false)
    {
        if (shared)
        {
            Interlocked.Increment(ref _counts[mfn]);
        }
        else
        {
            _counts[mfn]++;
        }
    }

    /// <summary>
    /// Drops a reference <see cref="AcquireHeld"/> took; the last one completes a pending free. Under the host's exclusive
    /// lock, or the copy word of the frame's owner (<paramref name="shared"/> as for <see cref="AcquireHeld"/>).
    /// </summary>
    internal void ReleaseHeld(ulong mfn, bool shared = false)
    {
        int count = shared ? Interlocked.Decrement(ref _counts[mfn]) : --_counts[mfn];
        if (count == PendingFree)
        {
            // Freed while the count still says pending, then the count cleared: a copy of another granter's grant
            // resolving a frame of the owner meanwhile sees it pending, or finds it freed.
            Interlocked.Increment(ref _epoch); // a copy that claimed the frame while its free was pending claims again
            Memory.FreeFrame(new MachineFrameNumber(mfn));
            Volatile.Write(ref _counts[mfn], 0);
            Interlocked.Decrement(ref _pendingFreeCount); // copies of other granters may complete frees meanwhile
        }
    }

    /// <summary>
    /// Frees a frame on behalf of its owner: at once when nobody references it, otherwise when the last
    /// reference is released (the frame can then not be allocated to anyone else in between).
    /// </summary>
    /// <param name="frame">An allocated frame.</param>
    /// <returns>True when the frame was freed now, false when the free is deferred.</returns>
    /// <exception cref="InvalidOperationException">The frame is already free or already waiting to be freed.</exception>
    public bool Free(MachineFrameNumber frame)
    {
        // Under the host's exclusive lock: it waits for every copy, which holds a copy word from its checks through the
        // memcpy, and the epoch it bumps makes claims a copy call keeps across operations check again.
        using (Exclusive())
        {
            if (!Memory.TryGetOwner(frame, out _) || (_counts[frame.Value] & PendingFree) != 0)
            {
                throw new InvalidOperationException($"{frame} is already free.");
            }

            Interlocked.Increment(ref _epoch);
            if (_counts[frame.Value] != 0)
            {
                _counts[frame.Value] |= PendingFree;
                Interlocked.Increment(ref _pendingFreeCount);
                return false;
            }

            Memory.FreeFrame(frame);
            return true;
        }
    }

    /// <summary>Ties these counts to the one <see cref="GrantTableHost"/> that uses them (its constructor calls this).</summary>
    internal void AttachHost(GrantTableHost host)
    {
        lock (_lock)
        {
            if (_host is not null)
            {
                throw new ArgumentException("These frame references are already used by another GrantTableHost.", "frames");
            }

            Volatile.Write(ref _host, host);
        }
    }

    /// <summary>The number of references on <paramref name="frame"/>.</summary>
    /// <param name="frame">Any frame.</param>
    /// <returns>0 when unreferenced.</returns>
    public int ReferenceCount(MachineFrameNumber frame) =>
        frame.Value < (ulong)_counts.Length ? Volatile.Read(ref _counts[frame.Value]) & CountMask : 0;

    /// <summary>True when the owner freed <paramref name="frame"/> but references keep it allocated.</summary>
    /// <param name="frame">Any frame.</param>
    /// <returns>Whether the free is deferred.</returns>
    public bool IsFreePending(MachineFrameNumber frame) =>
        frame.Value < (ulong)_counts.Length && (Volatile.Read(ref _counts[frame.Value]) & PendingFree) != 0;
}
