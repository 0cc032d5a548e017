using System.Diagnostics;
using System.Runtime.InteropServices;
using VmmKit.Ept;
using VmmKit.Hypercall;

namespace VmmKit.GrantTable.Tests;

/// <summary>
/// Copies of three granters' grants on three threads (some operations naming two granters, so holding two copy words;
/// the API and the hypercall, with and without a preemption hook; failing operations among them), while another thread
/// takes the exclusive lock over and over (GrantTableHost.Exclusion.cs): while it holds that lock no copy writes
/// anything and no active entry's lock is held, every operation gets its status and bytes, and at the end nothing is
/// pinned, flagged or referenced. A copy that took a word alone or shared without checking the exclusive lock's flag
/// fails it within a few rounds.
/// </summary>
public sealed class ExclusionReviewTests : IDisposable
{
    private const int Pages = 8;       // granted pages per frontend: 0..7 constant, 8..10 written by copier t
    private const int Copiers = 3;
    private const int OwnBase = 30;    // backend frames [OwnBase + 4t, OwnBase + 4t + 4): copier t's own frames

    private readonly TestMachine _m = new();
    private readonly TestDomain _back;
    private readonly TestDomain[] _fronts;
    private readonly uint[][] _refs;

    public ExclusionReviewTests()
    {
        _back = _m.AddDomain(0);
        _fronts = [_m.AddDomain(1), _m.AddDomain(3), _m.AddDomain(4)];
        _refs = new uint[_fronts.Length][];
        for (int f = 0; f < _fronts.Length; f++)
        {
            var share = new InProcessGrantShare(_m.Host, _fronts[f].Grant);
            _refs[f] = new uint[Pages + Copiers];
            for (int p = 0; p < _refs[f].Length; p++)
            {
                Assert.True(share.TryGrantForeignAccess(0, (ulong)p, readOnly: false, out _refs[f][p]));
                MemoryMarshal.Cast<byte, ulong>(_fronts[f].RamPage(p)).Fill(((ulong)_fronts[f].Id << 48) | (uint)p);
            }
        }

        for (int g = OwnBase; g < OwnBase + (4 * Copiers); g++)
        {
            MemoryMarshal.Cast<byte, ulong>(_back.RamPage(g)).Fill(0xB0B0UL << 48 | (uint)g);
        }
    }

    public void Dispose() => _m.Dispose();

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void No_copy_writes_while_the_exclusive_lock_is_held(bool preemptionHook)
    {
        var errors = new List<string>();
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(2));
        var threads = new List<Thread>();
        int[] calls = new int[Copiers];
        for (int t = 0; t < Copiers; t++)
        {
            int thread = t;
            threads.Add(new Thread(() => calls[thread] = CopyLoop(thread, preemptionHook, stop.Token, errors)));
        }

        int exclusives = 0;
        threads.Add(new Thread(() => exclusives = ExclusiveLoop(stop.Token, errors)));
        foreach (Thread t in threads)
        {
            t.Start();
        }

        foreach (Thread t in threads)
        {
            Assert.True(t.Join(TimeSpan.FromSeconds(60)), "a thread hung");
        }

        Assert.Empty(errors);
        Assert.All(calls, n => Assert.True(n > 0));
        Assert.True(exclusives > 0);
        for (int f = 0; f < _fronts.Length; f++)
        {
            for (int p = 0; p < _refs[f].Length; p++)
            {
                uint gref = _refs[f][p];
                Assert.Equal(0u, _fronts[f].Grant.GetPinCount(gref));
                ushort flags = MemoryMarshal.Read<ushort>(_m.Memory.GetFrame(_fronts[f].Grant.GetSharedFrame(0))[(int)(gref * 8)..]);
                Assert.Equal(0, flags & (int)(GrantEntryFlags.Reading | GrantEntryFlags.Writing));
                Assert.Equal(0, _m.Frames.ReferenceCount(_fronts[f].Ram[p]));
            }

            Assert.Equal(0, _fronts[f].Grant.CopyWord);
        }
    }

    private int CopyLoop(int thread, bool preemptionHook, CancellationToken stop, List<string> errors)
    {
        var dispatcher = new HypercallDispatcher<TestDomain>();
        new GrantTableHypercalls<TestDomain>(_m.Host, new TestResolver()).Register(dispatcher);
        if (preemptionHook)
        {
            dispatcher.PreemptCheck = _ =>
            {
                Thread.SpinWait(20);
                return false;
            };
        }

        var rng = new Random(77 + thread);
        var ops = new GnttabCopy[24];
        ulong opsGpa = (ulong)(50 + (2 * thread)) << 12;
        int calls = 0;
        try
        {
            while (!stop.IsCancellationRequested)
            {
                int n = rng.Next(1, ops.Length + 1);
                for (int i = 0; i < n; i++)
                {
                    ops[i] = MakeOp(thread, rng);
                }

                GnttabCopy[] asked = ops[..n];
                if (rng.Next(2) == 0)
                {
                    Assert.True(_back.TryWrite(opsGpa, MemoryMarshal.AsBytes(ops.AsSpan(0, n))));
                    long rc = GrantTableCall.Invoke(dispatcher, _back, (ulong)GrantTableOp.Copy, opsGpa, (ulong)n, HypercallAbi.Native64, out _);
                    Assert.Equal(0, rc);
                    Assert.True(_back.TryRead(opsGpa, MemoryMarshal.AsBytes(ops.AsSpan(0, n))));
                }
                else
                {
                    _m.Host.Copy(_back.Grant, ops.AsSpan(0, n));
                }

                for (int i = 0; i < n; i++)
                {
                    bool last = true;
                    for (int j = i + 1; j < n; j++)
                    {
                        last &= !SameDest(in ops[i], in ops[j]);
                    }

                    string? e = Check(in ops[i], asked[i], last);
                    if (e is not null)
                    {
                        lock (errors)
                        {
                            errors.Add($"thread {thread}, call {calls}, op {i}: {e}");
                        }

                        return calls;
                    }
                }

                calls++;
            }
        }
        catch (Exception e)
        {
            lock (errors)
            {
                errors.Add($"thread {thread}: {e}");
            }
        }

        return calls;
    }

    private GnttabCopy MakeOp(int thread, Random rng)
    {
        int f = rng.Next(_fronts.Length), g = rng.Next(_fronts.Length);
        int page = rng.Next(Pages);
        ushort off = (ushort)(rng.Next(8) * 512);
        ushort len = (ushort)(rng.Next(4) == 0 ? 4096 - off : 512);
        var own = new GnttabCopyPtr { Gmfn = (ulong)(OwnBase + (4 * thread) + rng.Next(2)), DomId = DomainId.Self, Offset = off };
        var ownDest = new GnttabCopyPtr { Gmfn = (ulong)(OwnBase + (4 * thread) + 2 + rng.Next(2)), DomId = DomainId.Self, Offset = off };
        var src = new GnttabCopyPtr { Ref = _refs[f][page], DomId = _fronts[f].Id, Offset = off };
        var scratch = new GnttabCopyPtr { Ref = _refs[g][Pages + thread], DomId = _fronts[g].Id, Offset = off };
        return rng.Next(10) switch
        {
            0 or 1 or 2 => new GnttabCopy { Source = src, Dest = ownDest, Len = len, Flags = (ushort)GrantCopyFlags.SourceGref },
            3 or 4 => new GnttabCopy { Source = own, Dest = scratch, Len = len, Flags = (ushort)GrantCopyFlags.DestGref },
            5 or 6 => new GnttabCopy { Source = src, Dest = scratch, Len = len, Flags = (ushort)(GrantCopyFlags.SourceGref | GrantCopyFlags.DestGref) },
            7 => new GnttabCopy { Source = own, Dest = ownDest, Len = len },
            8 => new GnttabCopy { Source = src with { Ref = 5000 }, Dest = ownDest, Len = len, Flags = (ushort)GrantCopyFlags.SourceGref },
            _ => new GnttabCopy { Source = src, Dest = ownDest, Len = (ushort)(4097 - off), Flags = (ushort)GrantCopyFlags.SourceGref },
        };
    }

    private static bool SameDest(in GnttabCopy a, in GnttabCopy b) =>
        (a.Flags & (ushort)GrantCopyFlags.DestGref) == (b.Flags & (ushort)GrantCopyFlags.DestGref) &&
        a.Dest.DomId == b.Dest.DomId && a.Dest.Gmfn == b.Dest.Gmfn;

    private string? Check(in GnttabCopy op, in GnttabCopy asked, bool last)
    {
        bool srcGref = (op.Flags & (ushort)GrantCopyFlags.SourceGref) != 0;
        bool dstGref = (op.Flags & (ushort)GrantCopyFlags.DestGref) != 0;
        short expect = asked.Source.Ref == 5000 && srcGref ? (short)GrantStatus.BadGntref
            : op.Source.Offset + op.Len > 4096 ? (short)GrantStatus.BadCopyArg : (short)0;
        if (op.Status != expect)
        {
            return $"status {op.Status}, expected {expect}";
        }

        if (expect != 0)
        {
            return null;
        }

        Span<byte> s = srcGref ? PageOf(op.Source) : _back.RamPage((int)op.Source.Gmfn);
        Span<byte> d = dstGref ? PageOf(op.Dest) : _back.RamPage((int)op.Dest.Gmfn);
        if (last)
        {
            return s.Slice(op.Source.Offset, op.Len).SequenceEqual(d.Slice(op.Dest.Offset, op.Len)) ? null : "bytes differ";
        }

        foreach (ulong w in MemoryMarshal.Cast<byte, ulong>(d.Slice(op.Dest.Offset, op.Len)))
        {
            if ((w >> 48) is not (1 or 3 or 4 or 0xB0B0))
            {
                return $"a word {w:x} no source holds";
            }
        }

        return null;
    }

    private Span<byte> PageOf(in GnttabCopyPtr p)
    {
        ushort dom = p.DomId;
        int f = Array.FindIndex(_fronts, x => x.Id == dom);
        return _fronts[f].RamPage(Array.IndexOf(_refs[f], p.Ref));
    }

    // Takes the exclusive lock over and over; while it holds it, nothing a copy writes may change and no entry lock is
    // held. Every few rounds it maps and unmaps a grant into the backend (changing its EPT) as well.
    private int ExclusiveLoop(CancellationToken stop, List<string> errors)
    {
        int rounds = 0;
        var before = new ulong[(Copiers * 4) + (_fronts.Length * Copiers)];
        while (!stop.IsCancellationRequested)
        {
            using (_m.Host.Exclusive())
            {
                Snapshot(before);
                for (int f = 0; f < _fronts.Length; f++)
                {
                    foreach (ActiveGrantEntry a in _fronts[f].Grant.Active)
                    {
                        if (a.Lock != 0)
                        {
                            lock (errors)
                            {
                                errors.Add($"round {rounds}: an entry lock of d{_fronts[f].Id} is held under the exclusive lock");
                            }

                            return rounds;
                        }
                    }
                }

                var sw = Stopwatch.StartNew();
                while (sw.ElapsedTicks < Stopwatch.Frequency / 20000)
                {
                    Thread.SpinWait(10);
                }

                var after = new ulong[before.Length];
                Snapshot(after);
                if (!before.AsSpan().SequenceEqual(after))
                {
                    lock (errors)
                    {
                        errors.Add($"round {rounds}: a copy wrote while the exclusive lock was held");
                    }

                    return rounds;
                }
            }

            if (rounds % 4 == 0)
            {
                var map = new GnttabMapGrantRef
                {
                    HostAddr = 100UL << 12,
                    Flags = (uint)(GrantMapFlags.HostMap | GrantMapFlags.ReadOnly),
                    Ref = _refs[rounds % 3][rounds % Pages],
                    Dom = _fronts[rounds % 3].Id,
                };
                _m.Host.MapGrantRef(_back.Grant, ref map);
                var unmap = new GnttabUnmapGrantRef { HostAddr = map.HostAddr, Handle = map.Handle };
                _m.Host.UnmapGrantRef(_back.Grant, ref unmap);
                if (map.Status != 0 || unmap.Status != 0)
                {
                    lock (errors)
                    {
                        errors.Add($"map {map.Status}, unmap {unmap.Status}");
                    }

                    return rounds;
                }
            }

            rounds++;
            Thread.Yield();
        }

        return rounds;
    }

    private void Snapshot(ulong[] into)
    {
        int k = 0;
        for (int t = 0; t < Copiers; t++)
        {
            for (int i = 0; i < 4; i++)
            {
                into[k++] = Hash(_back.RamPage(OwnBase + (4 * t) + i));
            }

            foreach (TestDomain f in _fronts)
            {
                into[k++] = Hash(f.RamPage(Pages + t));
            }
        }
    }

    private static ulong Hash(ReadOnlySpan<byte> page)
    {
        ulong h = 14695981039346656037UL;
        foreach (ulong w in MemoryMarshal.Cast<byte, ulong>(page))
        {
            h = (h ^ w) * 1099511628211UL;
        }

        return h;
    }
}
