namespace VmmKit.ReferenceHypervisor;

/// <summary>
/// A domain's physmap lock, as Xen's p2m lock (xen/arch/x86/mm/p2m.c, <c>p2m_lock</c>/<c>gfn_lock</c>): a change of the
/// physmap that looks at a slot and then changes it holds it to write, so no other change comes between; a hypercall that
/// reads or writes guest memory through host pointers it translated holds it to read, so no page it translated is
/// removed and freed before its access (Xen holds a page reference across each <c>copy_to_guest</c> instead).
/// Re-entrant on one thread; a thread holding it to read must not ask to write. Not disposed: it lives as long as its
/// domain, and its wait handles, made only under contention, are finalized with it.
/// </summary>
internal sealed class PhysmapLock
{
    private readonly ReaderWriterLockSlim _lock = new(LockRecursionPolicy.SupportsRecursion);

    /// <summary>Holds the lock to change the physmap, until the scope is disposed.</summary>
    /// <returns>The scope.</returns>
    public WriteScope Write()
    {
        _lock.EnterWriteLock();
        return new WriteScope(_lock);
    }

    /// <summary>Holds the lock so that the physmap does not change, until the scope is disposed.</summary>
    /// <returns>The scope.</returns>
    public ReadScope Read()
    {
        _lock.EnterReadLock();
        return new ReadScope(_lock);
    }

    /// <summary>A hold of the lock to write.</summary>
    public readonly ref struct WriteScope(ReaderWriterLockSlim held)
    {
        /// <summary>Lets go of the lock.</summary>
        public void Dispose() => held.ExitWriteLock();
    }

    /// <summary>A hold of the lock to read.</summary>
    public readonly ref struct ReadScope(ReaderWriterLockSlim held)
    {
        /// <summary>Lets go of the lock.</summary>
        public void Dispose() => held.ExitReadLock();
    }
}
