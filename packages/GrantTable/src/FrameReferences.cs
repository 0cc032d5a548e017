using VmmKit.Ept;

namespace VmmKit.GrantTable;

/// <summary>
/// Reference counts on machine frames, so that a frame stays allocated while another domain maps it
/// (Xen's <c>get_page</c>/<c>put_page</c> on <c>struct page_info</c>): a grant mapping takes a reference,
/// and <see cref="Free"/> of a referenced frame is deferred until the last reference is dropped.
/// </summary>
/// <remarks>
/// <see cref="MachineMemory"/> frees at once and has no counts, so a hypervisor that uses grant tables frees
/// every domain frame through <see cref="Free"/> (when the domain releases memory or dies) instead of
/// <see cref="MachineMemory.FreeFrame"/>. Until freed, a deferred frame keeps its owner and contents; it is
/// zeroed by <see cref="MachineMemory"/> when it is finally freed. Thread-safe.
/// </remarks>
public sealed class FrameReferences
{
    private readonly object _lock = new();
    private readonly Dictionary<ulong, int> _counts = [];
    private readonly HashSet<ulong> _pendingFree = [];
    private long _epoch;
    private object? _hostLock; // the lock of the GrantTableHost using these counts: a free waits for its copies

    /// <summary>Creates the counts for <paramref name="memory"/>.</summary>
    /// <param name="memory">The machine memory whose frames are counted.</param>
    public FrameReferences(MachineMemory memory)
    {
        ArgumentNullException.ThrowIfNull(memory);
        Memory = memory;
    }

    /// <summary>The machine memory whose frames are counted.</summary>
    public MachineMemory Memory { get; }

    /// <summary>Incremented whenever an owner frees a frame and when a deferred free happens: caches of frame ownership compare it.</summary>
    public long Epoch => Volatile.Read(ref _epoch);

    /// <summary>Number of frames whose free is waiting for their last reference.</summary>
    public int PendingFreeCount
    {
        get
        {
            lock (_lock)
            {
                return _pendingFree.Count;
            }
        }
    }

    /// <summary>Takes a reference on an allocated frame.</summary>
    /// <param name="frame">An allocated frame that is not waiting to be freed.</param>
    /// <exception cref="InvalidOperationException">The frame is free or already freed by its owner.</exception>
    public void Acquire(MachineFrameNumber frame)
    {
        lock (_lock)
        {
            if (!Memory.TryGetOwner(frame, out _) || _pendingFree.Contains(frame.Value))
            {
                throw new InvalidOperationException($"{frame} is not an allocated frame.");
            }

            _counts[frame.Value] = _counts.GetValueOrDefault(frame.Value) + 1;
        }
    }

    /// <summary>Drops a reference; the last one frees the frame if its owner already freed it.</summary>
    /// <param name="frame">A frame with at least one reference.</param>
    /// <exception cref="InvalidOperationException">The frame has no reference (a hypervisor bug).</exception>
    public void Release(MachineFrameNumber frame)
    {
        object? host = Volatile.Read(ref _hostLock);
        if (host is null)
        {
            ReleaseUnderLock(frame);
            return;
        }

        lock (host) // as in Free: the last release may free the frame, which must wait for copies
        {
            ReleaseUnderLock(frame);
        }
    }

    private void ReleaseUnderLock(MachineFrameNumber frame)
    {
        lock (_lock)
        {
            if (!_counts.TryGetValue(frame.Value, out int count))
            {
                throw new InvalidOperationException($"{frame} has no reference to release.");
            }

            if (count > 1)
            {
                _counts[frame.Value] = count - 1;
                return;
            }

            _counts.Remove(frame.Value);
            if (_pendingFree.Remove(frame.Value))
            {
                Interlocked.Increment(ref _epoch); // a copy that claimed the frame while its free was pending claims again
                Memory.FreeFrame(frame);
            }
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
        // A grant copy holds no reference on the frames it copies between (Xen's holds one): it holds the host's lock
        // from its checks through the memcpy, so a free waits for it, and the epoch it bumps makes held claims check again.
        object? host = Volatile.Read(ref _hostLock);
        if (host is null)
        {
            return FreeUnderLock(frame);
        }

        lock (host)
        {
            return FreeUnderLock(frame);
        }
    }

    private bool FreeUnderLock(MachineFrameNumber frame)
    {
        lock (_lock)
        {
            if (_pendingFree.Contains(frame.Value) || !Memory.TryGetOwner(frame, out _))
            {
                throw new InvalidOperationException($"{frame} is already free.");
            }

            Interlocked.Increment(ref _epoch);
            if (_counts.ContainsKey(frame.Value))
            {
                _pendingFree.Add(frame.Value);
                return false;
            }

            Memory.FreeFrame(frame);
            return true;
        }
    }

    /// <summary>Ties these counts to the one <see cref="GrantTableHost"/> that uses them (its constructor calls this).</summary>
    internal void AttachHost(object hostLock)
    {
        if (Interlocked.CompareExchange(ref _hostLock, hostLock, null) is not null)
        {
            throw new ArgumentException("These frame references are already used by another GrantTableHost.", "frames");
        }
    }

    /// <summary>The number of references on <paramref name="frame"/>.</summary>
    /// <param name="frame">Any frame.</param>
    /// <returns>0 when unreferenced.</returns>
    public int ReferenceCount(MachineFrameNumber frame)
    {
        lock (_lock)
        {
            return _counts.GetValueOrDefault(frame.Value);
        }
    }

    /// <summary>True when the owner freed <paramref name="frame"/> but references keep it allocated.</summary>
    /// <param name="frame">Any frame.</param>
    /// <returns>Whether the free is deferred.</returns>
    public bool IsFreePending(MachineFrameNumber frame)
    {
        lock (_lock)
        {
            return _pendingFree.Contains(frame.Value);
        }
    }
}
