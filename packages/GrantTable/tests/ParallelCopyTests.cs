using System.Runtime.InteropServices;
using VmmKit.Ept;
using VmmKit.Hypercall;

namespace VmmKit.GrantTable.Tests;

/// <summary>
/// GNTTABOP_copy on several threads at once, as a control domain's backends run on its vCPUs: copies of different
/// granters' grants run side by side, copies of one granter's grants share its copy word once they met (claiming the
/// same grants at once, each claim and release locking the grant's entry), and every other
/// operation (here grant maps and unmaps into the copying domain, which change its EPT and so its frame cache) waits
/// for the copies and stops them while it runs. The copies read grants, write into grants (GTF_writing) and copy
/// between the copying domain's own frames. Each copy checks its bytes; at the end no grant is pinned or flagged, no
/// frame referenced, and every thread made progress.
/// </summary>
public sealed class ParallelCopyTests : IDisposable
{
    private const int Pages = 16;      // granted pages per frontend
    private const int Calls = 3000;    // copy calls per thread
    private const int MapGfn = 100;    // where the map thread maps a grant into the backend (past its RAM)
    private const int OwnSource = 50;  // backend frames 50 and 51: what each thread copies into a grant or its frame 52/53

    private readonly TestMachine _m = new();
    private readonly TestDomain _back;  // d0: the backend of both frontends (one caller, one frame cache)
    private readonly TestDomain[] _fronts;
    private readonly uint[][] _refs;
    private readonly HypercallDispatcher<TestDomain> _dispatcher = new();

    public ParallelCopyTests()
    {
        _back = _m.AddDomain(0);
        _fronts = [_m.AddDomain(1), _m.AddDomain(3)];
        _refs = new uint[_fronts.Length][];
        for (int f = 0; f < _fronts.Length; f++)
        {
            var share = new InProcessGrantShare(_m.Host, _fronts[f].Grant);
            _refs[f] = new uint[Pages + 3]; // pages Pages + 1 and + 2: written into, one per copying thread
            for (int p = 0; p < _refs[f].Length; p++)
            {
                Assert.True(share.TryGrantForeignAccess(0, (ulong)p, readOnly: p == Pages, out _refs[f][p]));
                Fill(_fronts[f], p);
            }
        }

        for (int t = 0; t < 2; t++)
        {
            MemoryMarshal.Cast<byte, ulong>(_back.RamPage(OwnSource + t)).Fill(0xB0B0_0000_0000_0000UL | (uint)t);
        }

        new GrantTableHypercalls<TestDomain>(_m.Host, new TestResolver()).Register(_dispatcher);
    }

    public void Dispose() => _m.Dispose();

    // Every 8 bytes of a frontend's page name the frontend, the page and the offset, so a copy from any wrong place shows.
    private static void Fill(TestDomain front, int page)
    {
        Span<ulong> words = MemoryMarshal.Cast<byte, ulong>(front.RamPage(page));
        for (int i = 0; i < words.Length; i++)
        {
            words[i] = ((ulong)front.Id << 48) | ((ulong)page << 32) | (uint)i;
        }
    }

    [Theory]
    [InlineData(false, false)] // two frontends' grants, one thread each
    [InlineData(true, false)]  // both threads copy the same frontend's grants
    [InlineData(false, true)]  // and through the hypercall, claims kept across its holds
    [InlineData(true, true)]
    public void Copies_run_side_by_side_while_maps_change_the_backends_EPT(bool sameGranter, bool hypercall)
    {
        var errors = new List<string>();
        var copied = new int[2];
        using var stop = new CancellationTokenSource();
        var mapper = new Thread(() => MapAndUnmap(stop.Token, errors));
        var copiers = new Thread[2];
        for (int t = 0; t < copiers.Length; t++)
        {
            int thread = t;
            int front = sameGranter ? 0 : t;
            copiers[t] = new Thread(() => copied[thread] = CopyLoop(thread, front, hypercall, errors));
        }

        mapper.Start();
        foreach (Thread c in copiers)
        {
            c.Start();
        }

        foreach (Thread c in copiers)
        {
            c.Join();
        }

        stop.Cancel();
        mapper.Join();

        Assert.Empty(errors);
        Assert.All(copied, n => Assert.Equal(Calls, n));
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
        }

        Assert.Equal(0, _m.Frames.PendingFreeCount);
    }

    // One thread's copies: calls of 1 to 24 operations, each copying a 512-byte piece or a whole page of one of the
    // frontend's pages into the backend's frame for it ([20 * thread, 20 * thread + 17)), or from a frame of the
    // backend's (OwnSource + thread) into the frontend's page Pages + 1 + thread (GTF_writing) or into another frame of
    // the backend's (the caller's word alone); then it checks every byte it copied.
    private int CopyLoop(int thread, int front, bool hypercall, List<string> errors)
    {
        var rng = new Random(1000 + thread);
        var ops = new GnttabCopy[24];
        ulong opsGpa = (ulong)(40 + (2 * thread)) << 12; // two backend pages per thread for the hypercall's operations
        int calls = 0;
        for (; calls < Calls; calls++)
        {
            int n = rng.Next(1, ops.Length + 1);
            for (int i = 0; i < n; i++)
            {
                int page = rng.Next(Pages + 1); // page Pages is granted read-only: a source all the same
                bool whole = rng.Next(4) == 0;
                ushort offset = whole ? (ushort)0 : (ushort)(rng.Next(8) * 512);
                var own = new GnttabCopyPtr { Gmfn = (ulong)(OwnSource + thread), DomId = DomainId.Self, Offset = offset };
                ops[i] = rng.Next(8) switch
                {
                    0 => new GnttabCopy // into the grant
                    {
                        Source = own,
                        Dest = new() { Ref = _refs[front][Pages + 1 + thread], DomId = _fronts[front].Id, Offset = offset },
                        Len = (ushort)(whole ? 4096 : 512),
                        Flags = (ushort)GrantCopyFlags.DestGref,
                    },
                    1 => new GnttabCopy // between the backend's own frames
                    {
                        Source = own,
                        Dest = new() { Gmfn = (ulong)(OwnSource + 2 + thread), DomId = DomainId.Self, Offset = offset },
                        Len = (ushort)(whole ? 4096 : 512),
                    },
                    _ => new GnttabCopy
                    {
                        Source = new() { Ref = _refs[front][page], DomId = _fronts[front].Id, Offset = offset },
                        Dest = new() { Gmfn = (ulong)((20 * thread) + page), DomId = DomainId.Self, Offset = offset },
                        Len = (ushort)(whole ? 4096 : 512),
                        Flags = (ushort)GrantCopyFlags.SourceGref,
                    },
                };
            }

            if (hypercall)
            {
                Assert.True(_back.TryWrite(opsGpa, MemoryMarshal.AsBytes(ops.AsSpan(0, n))));
                long rc = GrantTableCall.Invoke(_dispatcher, _back, (ulong)GrantTableOp.Copy, opsGpa, (ulong)n, HypercallAbi.Native64, out _);
                Assert.Equal(0, rc);
                Assert.True(_back.TryRead(opsGpa, MemoryMarshal.AsBytes(ops.AsSpan(0, n))));
            }
            else
            {
                _m.Host.Copy(_back.Grant, ops.AsSpan(0, n));
            }

            for (int i = 0; i < n; i++)
            {
                ref GnttabCopy op = ref ops[i];
                Span<byte> expected = (op.Flags & (ushort)GrantCopyFlags.SourceGref) != 0
                    ? _fronts[front].RamPage(Array.IndexOf(_refs[front], op.Source.Ref))
                    : _back.RamPage((int)op.Source.Gmfn);
                Span<byte> actual = (op.Flags & (ushort)GrantCopyFlags.DestGref) != 0
                    ? _fronts[front].RamPage(Array.IndexOf(_refs[front], op.Dest.Ref))
                    : _back.RamPage((int)op.Dest.Gmfn);
                expected = expected.Slice(op.Source.Offset, op.Len);
                actual = actual.Slice(op.Dest.Offset, op.Len);
                if (op.Status != 0 || !expected.SequenceEqual(actual))
                {
                    lock (errors)
                    {
                        errors.Add($"thread {thread}, call {calls}, operation {i}: status {op.Status}, bytes {(expected.SequenceEqual(actual) ? "right" : "wrong")}");
                    }

                    return calls;
                }
            }
        }

        return calls;
    }

    // The other operations meanwhile: map a frontend's read-only page, which the copies also read, into the backend's
    // EPT and unmap it again, each frontend in turn (the map pins the grant the copies claim; each map and unmap changes
    // the backend's EPT, so its frame cache, which the copies fill and read, starts again).
    private void MapAndUnmap(CancellationToken stop, List<string> errors)
    {
        int rounds = 0;
        while (!stop.IsCancellationRequested || rounds == 0)
        {
            var map = new GnttabMapGrantRef
            {
                HostAddr = (ulong)MapGfn << 12,
                Flags = (uint)(GrantMapFlags.HostMap | GrantMapFlags.ReadOnly),
                Ref = _refs[rounds % 2][Pages],
                Dom = _fronts[rounds % 2].Id,
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

                return;
            }

            rounds++;
        }
    }
}
