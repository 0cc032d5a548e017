namespace VmmKit.ReferenceHypervisor;

/// <summary>
/// A domain's physmap lock, as Xen's p2m lock (xen/arch/x86/mm/p2m.c, <c>p2m_lock</c>/<c>gfn_lock</c>): a change of the
/// physmap that looks at a slot and then changes it holds it to write, so no other change comes between. A vCPU out of
/// the guest holds it to read (<see cref="VirtualCpu.RunSlice"/>, everywhere but inside the guest), so no page a hypercall
/// or an exit handler translated is removed and freed before its access: Xen holds a page reference across each
/// <c>copy_to_guest</c> instead, and an EPT flush waits only for the vCPUs inside the guest.
/// Re-entrant on one thread. A thread holding it to read that asks to write lets its reads go first and takes them back
/// when it lets the write go (<see cref="Write"/>): a host pointer it translated before then is stale after.
/// A thread that waits for another vCPU lets its reads go meanwhile (<see cref="Outside"/>), or it would wait for a vCPU
/// that waits for the lock. Not disposed: it lives as long as its domain, and its wait handles, made only under
/// contention, are finalized with it.
/// </summary>
internal sealed class PhysmapLock
{
    private readonly ReaderWriterLockSlim _lock = new(LockRecursionPolicy.SupportsRecursion);

    /// <summary>
    /// Holds the lock to change the physmap, until the scope is disposed. The caller's reads, if it holds any, are let go
    /// until then (a reader cannot become a writer in place: two of them would wait for each other).
    /// </summary>
    /// <returns>The scope.</returns>
    public WriteScope Write()
    {
        int reads = _lock.IsWriteLockHeld ? 0 : ExitReads();
        _lock.EnterWriteLock();
        return new WriteScope(_lock, reads);
    }

    /// <summary>Holds the lock so that the physmap does not change, until the scope is disposed.</summary>
    /// <returns>The scope.</returns>
    public ReadScope Read()
    {
        _lock.EnterReadLock();
        return new ReadScope(_lock);
    }

    /// <summary>
    /// Lets go of every read the caller holds until the scope is disposed: around a guest's run and around a wait for
    /// another vCPU. Nothing the caller translated before stays valid after. Does nothing for a caller that holds none.
    /// </summary>
    /// <returns>The scope.</returns>
    public OutsideScope Outside() => new(_lock, ExitReads());

    /// <summary>True when the calling thread holds the lock, to read or to write.</summary>
    public bool IsHeld => _lock.RecursiveReadCount > 0 || _lock.IsWriteLockHeld;

    private int ExitReads()
    {
        int reads = _lock.RecursiveReadCount;
        for (int i = 0; i < reads; i++)
        {
            _lock.ExitReadLock();
        }

        return reads;
    }

    private static void EnterReads(ReaderWriterLockSlim held, int reads)
    {
        for (int i = 0; i < reads; i++)
        {
            held.EnterReadLock();
        }
    }

    /// <summary>A hold of the lock to write.</summary>
    public readonly ref struct WriteScope(ReaderWriterLockSlim held, int suspendedReads)
    {
        /// <summary>Lets go of the lock, and takes back the reads the caller held before.</summary>
        public void Dispose()
        {
            held.ExitWriteLock();
            EnterReads(held, suspendedReads);
        }
    }

    /// <summary>A hold of the lock to read.</summary>
    public readonly ref struct ReadScope(ReaderWriterLockSlim held)
    {
        /// <summary>Lets go of the lock.</summary>
        public void Dispose() => held.ExitReadLock();
    }

    /// <summary>A time the caller's reads are let go.</summary>
    public readonly ref struct OutsideScope(ReaderWriterLockSlim held, int suspendedReads)
    {
        /// <summary>Takes the reads back.</summary>
        public void Dispose() => EnterReads(held, suspendedReads);
    }
}
