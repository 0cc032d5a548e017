using System.Runtime.InteropServices;
using VmmKit.Ept;
using VmmKit.Hypercall;

namespace VmmKit.GrantTable.Tests;

/// <summary>
/// The parts of the copy words' protocol (GrantTableHost.Exclusion.cs) that mutation testing found no other test
/// pinned: the full fence each side puts between writing its own mark or flag and reading the other's (the exclusive
/// lock against a copy taking a word alone or sharing it), a nested exclusive hold that ends while the outer one goes
/// on, the share of a second word (SharedB) that a copy taking that word alone must find, the entry locks a copy takes
/// on the granter whose word it shares when it holds its other word alone, and the Serial order in which a copy takes
/// two words.
/// </summary>
public sealed class RaceMutationTests : IDisposable
{
    private const int Copier = 2; // the backend: copies from and into the frontends' grants
    private const int OwnFrame = 3; // the backend's frame the copies read or write

    private readonly TestMachine _m = new();
    private readonly TestDomain _back;
    private readonly TestDomain _x; // created first: the lower Serial
    private readonly TestDomain _y;
    private readonly uint _xRef;
    private readonly uint _yRef;
    private readonly uint _yRef2; // a second grant of y's, page 6
    private readonly HypercallDispatcher<TestDomain> _dispatcher = new();

    public RaceMutationTests()
    {
        _x = _m.AddDomain(1);
        _back = _m.AddDomain(Copier);
        _y = _m.AddDomain(3);
        _x.RamPage(5).Fill(0x15);
        _y.RamPage(5).Fill(0x35);
        Assert.True(new InProcessGrantShare(_m.Host, _x.Grant).TryGrantForeignAccess(Copier, 5, readOnly: false, out _xRef));
        var yShare = new InProcessGrantShare(_m.Host, _y.Grant);
        Assert.True(yShare.TryGrantForeignAccess(Copier, 5, readOnly: false, out _yRef));
        Assert.True(yShare.TryGrantForeignAccess(Copier, 6, readOnly: false, out _yRef2));
        new GrantTableHypercalls<TestDomain>(_m.Host, new TestResolver()).Register(_dispatcher);
    }

    public void Dispose() => _m.Dispose();

    // One thread copies one byte of x's grant into its own frame (taking x's word alone, or sharing it when `shared`)
    // while another takes the exclusive lock and, holding it, watches x's grant for the claim a copy makes (a pin,
    // GTF_reading). Each round starts both at once, each after a random short delay, so that over the rounds the copy's
    // write of its mark and read of the lock's flag meets the lock's write of its flag and read of the marks at every
    // offset: a side lacking the full fence between its write and its read lets the two overlap, and the lock's holder
    // sees the claim.
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void The_exclusive_lock_never_sees_a_copy_claim_made_as_it_entered(bool shared)
    {
        const int rounds = 200_000;
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(3));
        string? violation = null;
        int go = 0, copied = 0; // the round both threads may start; the last round the copier finished
        var copier = new Thread(() =>
        {
            var rng = new Random(1);
            var op = GrantToOwnFrame(_x, _xRef, len: 1);
            for (int round = 1; round <= rounds && WaitFor(ref go, round, stop.Token); round++)
            {
                if (shared)
                {
                    Volatile.Write(ref _x.Grant.CopiesShare, 1); // the thread's share countdown clears it now and then
                }

                Delay(rng.Next(32));
                _m.Host.Copy(_back.Grant, ref op);
                if (op.Status != (short)GrantStatus.Okay)
                {
                    Volatile.Write(ref violation, $"round {round}: copy status {op.Status}");
                }

                Volatile.Write(ref copied, round);
            }
        }) { IsBackground = true };

        int round = 0;
        var watcher = new Thread(() =>
        {
            var rng = new Random(2);
            for (round = 1; round <= rounds && Volatile.Read(ref violation) is null; round++)
            {
                Volatile.Write(ref go, round);
                Delay(rng.Next(256));
                using (_m.Host.Exclusive())
                {
                    for (int i = 0; i < 64; i++)
                    {
                        if (Volatile.Read(ref _x.Grant.Active[_xRef].Pin) != 0 || (ReadFlags(_x, _xRef) & (int)GrantEntryFlags.Reading) != 0)
                        {
                            Volatile.Write(ref violation, $"round {round}: a copy claimed x's grant under the exclusive lock");
                            break;
                        }
                    }
                }

                if (!WaitFor(ref copied, round, stop.Token))
                {
                    break;
                }
            }
        }) { IsBackground = true };

        copier.Start();
        watcher.Start();
        Assert.True(watcher.Join(TimeSpan.FromSeconds(60)), "the exclusive lock's thread hung");
        Volatile.Write(ref go, int.MaxValue); // the copier's last round, if the watcher stopped early
        Assert.True(copier.Join(TimeSpan.FromSeconds(60)), "the copier hung");
        Assert.Null(violation);
        Assert.True(round > 1);
        Assert.Equal(0u, _x.Grant.GetPinCount(_xRef));
        Assert.Equal(0, _x.Grant.CopyWord);
    }

    // The exclusive lock is re-entrant (FrameReferences' changes nest in it, e.g. the frees of DestroyDomain): ending a
    // nested hold must leave copies stopped until the outer one ends. A copy (of a thread that has its slot, made at its
    // first copy under the lock) that starts after the nested hold ended waits for the outer one.
    [Fact]
    public void A_copy_waits_for_the_outer_exclusive_lock_once_a_nested_one_ended()
    {
        using var ready = new ManualResetEventSlim();
        using var go = new ManualResetEventSlim();
        using var copied = new ManualResetEventSlim();
        short status = -1;
        var copier = new Thread(() =>
        {
            var op = GrantToOwnFrame(_x, _xRef);
            _m.Host.Copy(_back.Grant, ref op);
            ready.Set();
            go.Wait();
            _m.Host.Copy(_back.Grant, ref op);
            status = op.Status;
            copied.Set();
        });
        copier.Start();
        Assert.True(ready.Wait(TimeSpan.FromSeconds(30)));
        using (_m.Host.Exclusive())
        {
            using (_m.Host.Exclusive())
            {
            }

            go.Set();
            Assert.False(copied.Wait(TimeSpan.FromMilliseconds(300))); // the outer hold stops it
        }

        Assert.True(copied.Wait(TimeSpan.FromSeconds(30)));
        Assert.True(copier.Join(TimeSpan.FromSeconds(30)));
        Assert.Equal((short)GrantStatus.Okay, status);
        AssertReleased();
    }

    // A copy between x's grant and y's shares y's word as its second (SharedB) and holds it (its status write waits);
    // a copy of y's grant that would take y's word alone must find that share and share the word too, so y's copies
    // share it from then on. One that read only the first shares would hold y's word alone beside the share.
    [Fact]
    public void A_copy_taking_a_word_alone_finds_it_shared_as_another_copys_second_word()
    {
        Volatile.Write(ref _x.Grant.CopiesShare, 1);
        Volatile.Write(ref _y.Grant.CopiesShare, 1);
        using var inHold = new ManualResetEventSlim();
        using var letGo = new ManualResetEventSlim();
        var view = new StatusWriteGate(_back.Virtual, inHold, letGo);
        var holder = new Thread(() => CopyHypercall.Invoke(_dispatcher, _back, [GrantToGrant(_x, _xRef, _y, _yRef)], view));
        holder.Start();
        Assert.True(inHold.Wait(TimeSpan.FromSeconds(30)));

        Volatile.Write(ref _y.Grant.CopiesShare, 0); // as if the sharer's countdown had run out: the next copy tries it alone
        short status = -1;
        var other = new Thread(() =>
        {
            var op = GrantToOwnFrame(_y, _yRef);
            _m.Host.Copy(_back.Grant, ref op);
            status = op.Status;
        });
        other.Start();
        Assert.True(other.Join(TimeSpan.FromSeconds(30)));
        Assert.Equal((short)GrantStatus.Okay, status);
        Assert.Equal(1, Volatile.Read(ref _y.Grant.CopiesShare));

        letGo.Set();
        Assert.True(holder.Join(TimeSpan.FromSeconds(30)));
        AssertReleased();
    }

    // Two threads copy between x's grant and y's in opposite directions, each operation holding both words, each round
    // starting both at once. Taken in Serial order (x's first) whichever side each grant is on, no two copies wait for
    // each other in a circle; taken in the operation's order, each thread may hold one word alone and wait for the
    // other's forever.
    [Fact]
    public void Copies_naming_two_granters_in_opposite_orders_never_wait_for_each_other()
    {
        const int rounds = 50_000;
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(2));
        int go = 0;
        var done = new int[2];
        var errors = new List<string>();
        var threads = new Thread[2];
        for (int t = 0; t < threads.Length; t++)
        {
            int thread = t;
            threads[t] = new Thread(() =>
            {
                var rng = new Random(thread);
                GnttabCopy op = thread == 0 ? GrantToGrant(_x, _xRef, _y, _yRef) : GrantToGrant(_y, _yRef, _x, _xRef);
                op.Source.Offset = op.Dest.Offset = (ushort)(thread * 2048); // each direction its own half of both pages
                for (int round = 1; round <= rounds; round++)
                {
                    if (thread == 0)
                    {
                        if (!WaitFor(ref done[1], round - 1, stop.Token))
                        {
                            break;
                        }

                        // As right after the threads' share countdowns ran out: both copies try both words alone first.
                        Volatile.Write(ref _x.Grant.CopiesShare, 0);
                        Volatile.Write(ref _y.Grant.CopiesShare, 0);
                        Volatile.Write(ref go, round);
                    }
                    else if (!WaitFor(ref go, round, stop.Token))
                    {
                        break;
                    }

                    Delay(thread == 0 ? rng.Next(512) : 0); // the first to see the round waits: the other starts later
                    _m.Host.Copy(_back.Grant, ref op);
                    if (op.Status != (short)GrantStatus.Okay)
                    {
                        lock (errors)
                        {
                            errors.Add($"thread {thread}, round {round}: status {op.Status}");
                        }
                    }

                    Volatile.Write(ref done[thread], round);
                }
            }) { IsBackground = true };
        }

        RunToEnd(threads, done, errors, "rounds");
    }

    // One thread copies from x's grant into y's two grants in turn, holding x's word alone and y's shared; another
    // copies from y's two grants in turn, sharing y's word. Every operation claims one of y's entries and releases the
    // other: each under the entry's lock, since y's word is shared, though the first thread took its first word alone.
    // A claim or release made without it races the other thread's update of the pin count, and one is lost: a status
    // fails, or a pin is left at the end.
    [Fact]
    public void A_copy_sharing_only_its_second_word_locks_that_granters_entries()
    {
        const int calls = 100_000;
        const int batch = 16;
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(2));
        var done = new int[2];
        var errors = new List<string>();
        var threads = new Thread[2];
        for (int t = 0; t < threads.Length; t++)
        {
            int thread = t;
            threads[t] = new Thread(() =>
            {
                var ops = new GnttabCopy[batch];
                for (int i = 0; i < batch; i++)
                {
                    uint yRef = i % 2 == 0 ? _yRef : _yRef2;
                    ops[i] = thread == 0 ? GrantToGrant(_x, _xRef, _y, yRef) : GrantToOwnFrame(_y, yRef, offset: 2048);
                }

                for (int call = 0; call < calls && !stop.IsCancellationRequested; call++)
                {
                    if (thread == 0)
                    {
                        Volatile.Write(ref _x.Grant.CopiesShare, 0); // x's word alone, y's shared
                        Volatile.Write(ref _y.Grant.CopiesShare, 1);
                    }

                    _m.Host.Copy(_back.Grant, ops);
                    foreach (GnttabCopy op in ops)
                    {
                        if (op.Status != (short)GrantStatus.Okay)
                        {
                            lock (errors)
                            {
                                errors.Add($"thread {thread}, call {call}: status {op.Status}");
                            }

                            return;
                        }
                    }

                    done[thread]++;
                }
            }) { IsBackground = true };
        }

        RunToEnd(threads, done, errors, "calls");
        Assert.Equal(0u, _y.Grant.GetPinCount(_yRef2));
        Assert.Equal(0, ReadFlags(_y, _yRef2) & (int)(GrantEntryFlags.Reading | GrantEntryFlags.Writing));
    }

    // Starts the copiers, waits for them (a copy that never returns is a deadlock), then checks that each made
    // progress, that no status failed and that nothing is left claimed.
    private void RunToEnd(Thread[] threads, int[] done, List<string> errors, string unit)
    {
        foreach (Thread t in threads)
        {
            t.Start();
        }

        foreach (Thread t in threads)
        {
            Assert.True(t.Join(TimeSpan.FromSeconds(30)), $"a copy hung ({unit} done: {done[0]}, {done[1]})");
        }

        Assert.Empty(errors);
        Assert.True(done[0] > 0 && done[1] > 0);
        AssertReleased();
    }

    // Waits until `value` reaches `target`; false if stopped first.
    private static bool WaitFor(ref int value, int target, CancellationToken stop)
    {
        var spin = default(SpinWait);
        while (Volatile.Read(ref value) < target)
        {
            if (stop.IsCancellationRequested)
            {
                return false;
            }

            spin.SpinOnce(sleep1Threshold: -1);
        }

        return true;
    }

    private static int s_sink = 1;

    // A busy wait of about `n` reads of memory: finer than Thread.SpinWait.
    private static void Delay(int n)
    {
        for (int i = 0; i < n; i++)
        {
            _ = Volatile.Read(ref s_sink);
        }
    }

    private static GnttabCopy GrantToOwnFrame(TestDomain from, uint gref, ushort len = 64, ushort offset = 0) => new()
    {
        Source = new() { Ref = gref, DomId = from.Id, Offset = offset },
        Dest = new() { Gmfn = OwnFrame, DomId = DomainId.Self },
        Len = len,
        Flags = (ushort)GrantCopyFlags.SourceGref,
    };

    private static GnttabCopy GrantToGrant(TestDomain from, uint fromRef, TestDomain to, uint toRef) => new()
    {
        Source = new() { Ref = fromRef, DomId = from.Id },
        Dest = new() { Ref = toRef, DomId = to.Id },
        Len = 64,
        Flags = (ushort)(GrantCopyFlags.SourceGref | GrantCopyFlags.DestGref),
    };

    private int ReadFlags(TestDomain d, uint gref) =>
        Volatile.Read(ref MemoryMarshal.Cast<byte, ushort>(_m.Memory.GetFrame(d.Grant.GetSharedFrame(0)))[(int)(gref * 4)]);

    // Neither grant pinned or flagged, no frame referenced, no word held.
    private void AssertReleased()
    {
        foreach ((TestDomain d, uint gref) in new[] { (_x, _xRef), (_y, _yRef) })
        {
            Assert.Equal(0u, d.Grant.GetPinCount(gref));
            Assert.Equal(0, ReadFlags(d, gref) & (int)(GrantEntryFlags.Reading | GrantEntryFlags.Writing));
            Assert.Equal(0, _m.Frames.ReferenceCount(d.Ram[5]));
            Assert.Equal(0, d.Grant.CopyWord);
        }
    }
}
