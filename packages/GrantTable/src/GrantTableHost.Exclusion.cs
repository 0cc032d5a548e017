using System.Diagnostics;
using System.Runtime.CompilerServices;

namespace VmmKit.GrantTable;

// How the host's state is shared between threads. Copies (GNTTABOP_copy) run side by side; everything else runs alone.
//
// - A copy holds the copy word (GrantDomain.CopyWord) of each domain whose grants it claims, or the caller's when it
//   names frames only: the granter's table, active entries and frames' reference counts are then its alone, as Xen's
//   per-entry lock and grant-table read lock give. Copies of different granters (a control domain's backends serving
//   different frontends, each on its own vCPU) run in parallel; copies of one granter's grants take turns.
// - Every other operation takes the exclusive lock (Exclusive()): one thread at a time, and no copy. Entering it sets
//   _copiesStopped, then waits until no thread holds a copy word: each thread that copies has a CopySlot on the host,
//   which it marks before it takes its first word and clears after it lets go of its last, so the wait reads one
//   word per thread that ever copied, however many domains there are. A copy that takes a word then finds
//   _copiesStopped set lets its words go, clears its mark and waits for the lock to be free. (Both sides write, then
//   read the other's word with a full fence between, the copy word's compare-exchange on the copy's side, so one of
//   them always sees the other.)
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

    // With d's word just taken (the compare-exchange is a full fence): keeps it unless a thread other than this one
    // holds the exclusive lock, which then waits for it; false, having let it go, when one does.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private bool KeepUnlessStopped(GrantDomain d)
    {
        if (Volatile.Read(ref _copiesStopped) == 0 || HoldsExclusive)
        {
            return true;
        }

        Volatile.Write(ref d.CopyWord, 0);
        return false;
    }

    // Lets go of the batch's words, then takes d's alone if that needs no wait: when no other copy holds it and no
    // thread holds the exclusive lock (or this thread does). False, holding nothing, otherwise.
    private bool TryTakeCopyWordAlone(GrantDomain d, ref CopyBatch batch)
    {
        ReleaseCopyWords(ref batch);
        CopySlot slot = batch.Slot ??= SlotOfThisThread();
        Volatile.Write(ref slot.Held, 1);
        if (Interlocked.CompareExchange(ref d.CopyWord, 1, 0) != 0 || !KeepUnlessStopped(d))
        {
            Volatile.Write(ref slot.Held, 0);
            return false;
        }

        batch.WordA = d;
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
            if (TakeSpinning(a))
            {
                if (b is null)
                {
                    batch.WordA = a;
                    return;
                }

                if (TakeSpinning(b))
                {
                    batch.WordA = a;
                    batch.WordB = b;
                    return;
                }

                Volatile.Write(ref a.CopyWord, 0);
            }

            // The exclusive lock is held: wait, holding no word, until its holder is done, then start again.
            Volatile.Write(ref slot.Held, 0);
            _lock.Enter();
            _lock.Exit();
        }
    }

    // One word: spins while another copy holds it; false, holding it no longer, when the exclusive lock is held.
    private bool TakeSpinning(GrantDomain d)
    {
        var spin = default(SpinWait);
        while (Interlocked.CompareExchange(ref d.CopyWord, 1, 0) != 0)
        {
            spin.SpinOnce(sleep1Threshold: -1);
        }

        return KeepUnlessStopped(d);
    }

    // Lets go of the batch's copy words (what it claimed is released, or held across with references, first), then
    // clears the thread's mark.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void ReleaseCopyWords(ref CopyBatch batch)
    {
        if (batch.WordA is { } a)
        {
            Volatile.Write(ref a.CopyWord, 0);
            batch.WordA = null;
            if (batch.WordB is { } b)
            {
                Volatile.Write(ref b.CopyWord, 0);
                batch.WordB = null;
            }

            Volatile.Write(ref batch.Slot!.Held, 0);
        }
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
