using System.Diagnostics;
using System.Runtime.CompilerServices;

namespace VmmKit.GrantTable;

// How the host's state is shared between threads. Copies (GNTTABOP_copy) run side by side; everything else runs alone.
//
// - A copy holds the copy word (GrantDomain.CopyWord) of each domain whose grants it claims, or the caller's when it
//   names frames only, alone or shared. Held alone (the word set to 1 by a compare-exchange), the granter's active
//   entries and frames' reference counts are the copy's alone, and it claims and releases grants without further
//   locks. Shared (a mark in the thread's CopySlot, SharedA or SharedB, the word left 0), it locks each grant's active
//   entry around each claim and release (ActiveGrantEntry.Enter), as Xen's grant-table read lock and per-entry lock
//   give: so copies of one granter's grants (a frontend's queues, each served on its own vCPU) run side by side.
//   Copies of different granters (a control domain's backends serving different frontends) run side by side either way.
// - Alone is cheaper (no entry lock), so a copy takes a word alone until a copy finds it held: that copy sets the
//   domain's CopiesShare, and from then on the domain's copies share its word; a thread that has shared words for
//   CopySlot.ShareCalls calls clears the flag, so copies try it alone again. The two never run together: a copy
//   sharing marks its slot, fences, then finds the word 0 (else it clears its mark and waits); a copy taking the word
//   alone sets it by compare-exchange, then finds no slot marked with the domain (else it lets the word go and shares
//   it). A thread's shares lie on a cache line of their own, which only sharing writes, so these reads cost a copy
//   that takes a word alone little, and only once any copy shared (_anyShared).
// - Every other operation takes the exclusive lock (Exclusive()): one thread at a time, and no copy. Entering it sets
//   _copiesStopped, then waits until no thread holds a copy word: each thread that copies has a CopySlot on the host,
//   which it marks before it takes its first word and clears after it lets go of its last, so the wait reads one
//   word per thread that ever copied, however many domains there are. A copy that takes a word then finds
//   _copiesStopped set lets its words go, clears its mark and waits for the lock to be free. (Both sides write, then
//   read the other's word with a full fence between, the copy word's compare-exchange or the share's fence on the
//   copy's side, so one of them always sees the other.)
// - A copy takes its words in GrantDomain.Serial order, holding none when it starts: so no two copies wait for each
//   other in a circle, and a copy never waits for the exclusive lock while it holds a word. Nothing a copy calls
//   while it holds words takes the exclusive lock (that would wait for its own word); the exclusive lock's holder may
//   copy (its copies take words no one else can hold meanwhile).
// - A copy looks domains up before it holds their words (LookupById reads one array element) and checks again once it
//   does: a domain destroyed meanwhile is IsDestroyed, and one looked up after is not found. A copy touches nothing of
//   a destroyed domain under its word: a hypercall's claims kept across holds on a domain destroyed in between are
//   released under the exclusive lock (BeginCopyHold).
// - What a copy reads of the caller's own frames needs no word: frames are freed and EPT entries change under the
//   exclusive lock, which waits for the copy; the frame cache a copy fills is guarded by its own lock and sequence
//   (GetPagedFrame).
public sealed unsafe partial class GrantTableHost
{
    private readonly Lock _lock = new();
    private int _exclusiveDepth; // nesting of the exclusive lock by the thread that holds it
    private int _copiesStopped;  // 1 while a thread holds the exclusive lock: copies wait
    private CopySlot[] _slots = []; // a slot per thread that copies; replaced, never changed, under _lock

    [ThreadStatic]
    private static CopySlot? t_slot;         // this thread's slot on t_slotHost, the last host it copied on
    [ThreadStatic]
    private static GrantTableHost? t_slotHost;

    /// <summary>Holds the exclusive lock until disposed (<c>using (Exclusive()) { ... }</c>).</summary>
    internal ExclusiveScope Exclusive()
    {
        EnterExclusive();
        return new ExclusiveScope(this);
    }

    /// <summary>The exclusive lock: re-entrant; waits until no copy holds a copy word.</summary>
    internal void EnterExclusive()
    {
        _lock.Enter();
        if (_exclusiveDepth++ == 0)
        {
            Interlocked.Exchange(ref _copiesStopped, 1);
            foreach (CopySlot slot in _slots)
            {
                var spin = default(SpinWait);
                while (Volatile.Read(ref slot.Held) != 0)
                {
                    spin.SpinOnce(sleep1Threshold: -1);
                }
            }
        }
    }

    internal void ExitExclusive()
    {
        if (--_exclusiveDepth == 0)
        {
            Volatile.Write(ref _copiesStopped, 0);
        }

        _lock.Exit();
    }

    internal bool HoldsExclusive => _lock.IsHeldByCurrentThread;

    /// <summary>Slots the exclusive lock reads: as many as threads have copied on this host at once.</summary>
    internal int CopySlotCount => Volatile.Read(ref _slots).Length;

    /// <summary>Releases the exclusive lock when disposed.</summary>
    internal readonly ref struct ExclusiveScope(GrantTableHost host)
    {
        public void Dispose() => host.ExitExclusive();
    }

    private int _anyShared; // 1 once any copy shared a word: a copy taking one alone reads the slots' shares

    // With d's word just taken alone (the compare-exchange is a full fence): keeps it unless a thread other than this
    // one holds the exclusive lock (which then waits for it) or a copy shares it (then copies of d share it from now
    // on); false, having let it go, otherwise.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private bool KeepUnlessStopped(GrantDomain d)
    {
        if ((Volatile.Read(ref _copiesStopped) == 0 || HoldsExclusive) &&
            (Volatile.Read(ref _anyShared) == 0 || !IsShared(d)))
        {
            return true;
        }

        Volatile.Write(ref d.CopyWord, 0);
        return false;
    }

    // True when a copy shares d's word; then the copies of d share it from now on.
    [MethodImpl(MethodImplOptions.NoInlining)]
    private bool IsShared(GrantDomain d)
    {
        foreach (CopySlot slot in Volatile.Read(ref _slots))
        {
            if (Volatile.Read(ref slot.SharedA) == d.Serial || Volatile.Read(ref slot.SharedB) == d.Serial)
            {
                Volatile.Write(ref d.CopiesShare, 1);
                return true;
            }
        }

        return false;
    }

    // A share of d's word for this thread, as the batch's first word (SharedA) or second (SharedB): marked in the slot,
    // then, after a full fence, kept unless a copy holds the word alone or a thread other than this one holds the
    // exclusive lock. False, holding it no longer, otherwise.
    private bool TryShare(GrantDomain d, CopySlot slot, bool second)
    {
        if (Volatile.Read(ref _anyShared) == 0)
        {
            Volatile.Write(ref _anyShared, 1); // before the mark, so a copy taking d's word alone reads the marks
        }

        ref long mark = ref second ? ref slot.SharedB : ref slot.SharedA;
        Volatile.Write(ref mark, d.Serial);
        Interlocked.MemoryBarrier();
        if ((Volatile.Read(ref _copiesStopped) == 0 || HoldsExclusive) && Volatile.Read(ref d.CopyWord) == 0)
        {
            if (--slot.ShareCountdown <= 0)
            {
                slot.ShareCountdown = CopySlot.ShareCalls;
                Volatile.Write(ref d.CopiesShare, 0); // let a copy try it alone again
            }

            return true;
        }

        Volatile.Write(ref mark, 0);
        return false;
    }

    // Lets go of the batch's words, then takes d's if that needs no wait: alone, unless copies of d share it; false,
    // holding nothing, when another copy holds it alone (or shares it, for a copy that would take it alone) or a thread
    // other than this one holds the exclusive lock.
    private bool TryTakeCopyWordNow(GrantDomain d, ref CopyBatch batch)
    {
        ReleaseCopyWords(ref batch);
        CopySlot slot = batch.Slot ??= SlotOfThisThread();
        Volatile.Write(ref slot.Held, 1);
        if (Volatile.Read(ref d.CopiesShare) != 0)
        {
            if (!TryShare(d, slot, second: false))
            {
                Volatile.Write(ref slot.Held, 0);
                return false;
            }

            batch.WordA = d;
            batch.WordsShared = 1;
            batch.Src.Shared = true;
            batch.Dst.Shared = true;
            return true;
        }

        if (Interlocked.CompareExchange(ref d.CopyWord, 1, 0) != 0)
        {
            Volatile.Write(ref d.CopiesShare, 1); // another copy holds it: copies of d share it from now on
            Volatile.Write(ref slot.Held, 0);
            return false;
        }

        if (!KeepUnlessStopped(d))
        {
            Volatile.Write(ref slot.Held, 0);
            return false;
        }

        batch.WordA = d;
        if (batch.Src.Shared)
        {
            batch.Src.Shared = false; // its claims are released: they need no entry lock now
            batch.Dst.Shared = false;
        }

        return true;
    }

    // Takes the copy words of a and b (b may be null or a), in Serial order, waiting for other copies and for the
    // exclusive lock as long as needed; the batch holds none before.
    private void TakeCopyWords(GrantDomain a, GrantDomain? b, ref CopyBatch batch)
    {
        Debug.Assert(batch.WordA is null && batch.WordB is null, "a copy takes its words holding none");
        if (ReferenceEquals(a, b))
        {
            b = null;
        }

        if (b is not null && b.Serial < a.Serial)
        {
            (a, b) = (b, a);
        }

        CopySlot slot = batch.Slot ??= SlotOfThisThread();
        while (true)
        {
            Volatile.Write(ref slot.Held, 1);
            if (TakeSpinning(a, slot, second: false, out bool sharedA))
            {
                bool sharedB = false;
                if (b is null || TakeSpinning(b, slot, second: true, out sharedB))
                {
                    batch.WordA = a;
                    batch.WordB = b;
                    batch.WordsShared = (sharedA ? 1 : 0) | (sharedB ? 2 : 0);
                    batch.Src.Shared = sharedA || sharedB;
                    batch.Dst.Shared = sharedA || sharedB;
                    return;
                }

                LetGo(a, slot, sharedA, second: false);
            }

            // The exclusive lock is held: wait, holding no word, until its holder is done, then start again.
            Volatile.Write(ref slot.Held, 0);
            _lock.Enter();
            _lock.Exit();
        }
    }

    // One word, alone or shared as TryTakeCopyWordNow would take it: spins while another copy holds it alone (or
    // shares it, for a copy that would take it alone); false, holding it no longer, when the exclusive lock is held.
    private bool TakeSpinning(GrantDomain d, CopySlot slot, bool second, out bool shared)
    {
        var spin = default(SpinWait);
        while (true)
        {
            shared = Volatile.Read(ref d.CopiesShare) != 0;
            if (shared)
            {
                if (TryShare(d, slot, second))
                {
                    return true;
                }
            }
            else if (Interlocked.CompareExchange(ref d.CopyWord, 1, 0) == 0)
            {
                if (KeepUnlessStopped(d))
                {
                    return true;
                }
            }
            else
            {
                Volatile.Write(ref d.CopiesShare, 1); // another copy holds it: copies of d share it from now on
            }

            if (Volatile.Read(ref _copiesStopped) != 0 && !HoldsExclusive)
            {
                return false;
            }

            spin.SpinOnce(sleep1Threshold: -1);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void LetGo(GrantDomain d, CopySlot slot, bool shared, bool second)
    {
        if (!shared)
        {
            Volatile.Write(ref d.CopyWord, 0);
        }
        else if (second)
        {
            Volatile.Write(ref slot.SharedB, 0);
        }
        else
        {
            Volatile.Write(ref slot.SharedA, 0);
        }
    }

    // Lets go of the batch's copy words (what it claimed is released, or held across with references, first), then
    // clears the thread's mark.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void ReleaseCopyWords(ref CopyBatch batch)
    {
        if (batch.WordA is { } a)
        {
            if (batch.WordsShared == 0)
            {
                Volatile.Write(ref a.CopyWord, 0);
                batch.WordA = null;
                if (batch.WordB is { } b)
                {
                    Volatile.Write(ref b.CopyWord, 0);
                    batch.WordB = null;
                }
            }
            else
            {
                ReleaseSharedWords(ref batch);
            }

            Volatile.Write(ref batch.Slot!.Held, 0);
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void ReleaseSharedWords(ref CopyBatch batch)
    {
        CopySlot slot = batch.Slot!;
        LetGo(batch.WordA!, slot, (batch.WordsShared & 1) != 0, second: false);
        if (batch.WordB is { } b)
        {
            LetGo(b, slot, (batch.WordsShared & 2) != 0, second: true);
        }

        batch.WordA = null;
        batch.WordB = null;
        batch.WordsShared = 0;
    }

    // This thread's slot on this host: the one it used last, or one found or made under the lock when it first copies
    // here (it holds no word then). A slot of a thread that ended goes to the next thread that needs one.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private CopySlot SlotOfThisThread() => ReferenceEquals(t_slotHost, this) ? t_slot! : FindSlot();

    [MethodImpl(MethodImplOptions.NoInlining)]
    private CopySlot FindSlot()
    {
        Thread me = Thread.CurrentThread;
        lock (_lock)
        {
            CopySlot? mine = Array.Find(_slots, s => s.Owner == me) ?? Array.Find(_slots, s => !s.Owner.IsAlive);
            if (mine is null)
            {
                mine = new CopySlot(me);
                _slots = [.. _slots, mine];
            }

            mine.Owner = me;
            t_slot = mine;
            t_slotHost = this;
            return mine;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static bool HoldsCopyWord(in CopyBatch batch, GrantDomain d) =>
        ReferenceEquals(batch.WordA, d) || ReferenceEquals(batch.WordB, d);
}
