namespace VmmKit.GrantTable.Tests;

/// <summary>
/// Xen 4.17's _set_status_v2 reads a v2 entry, sets GTF_reading in the status frame, and reads the entry again: a
/// granter ending access (Linux's gnttab_end_foreign_access_ref_v2: invalidate the entry, then read the status) between
/// the two reads sees the status still clear and frees the page, so the second read must see the entry invalid and the
/// map fail. Without that second read the map succeeds on a page its granter believes no one uses.
/// </summary>
public sealed class EndAccessRaceTests : IDisposable
{
    private const ulong Slot = 0x1000;
    private const int Cycles = 30_000;
    private const int Idle = 0, Holding = 1;
    private readonly TestMachine _m = new();
    private readonly TestDomain _front;
    private readonly TestDomain _back;
    private readonly InProcessGrantShare _share;
    private int _state;   // the mapper's: Holding once a map succeeded, until it unmapped; else Idle
    private int _started; // maps the mapper began, and finished (its state set by then)
    private int _finished;
    private int _letGo;   // set by the granter once it has looked at a Holding mapper: the mapper may unmap
    private int _gref;    // the grant the granter offers now
    private volatile bool _done;

    public EndAccessRaceTests()
    {
        _front = _m.AddDomain(1);
        _back = _m.AddDomain(2);
        _share = new InProcessGrantShare(_m.Host, _front.Grant);
        var v = new GnttabSetVersion { Version = 2 };
        Assert.Equal(0, _m.Host.SetVersion(_front.Grant, ref v));
    }

    public void Dispose() => _m.Dispose();

    [Fact]
    public void A_map_racing_with_a_v2_end_of_access_that_succeeded_fails()
    {
        var mapper = new Thread(MapUntilDone);
        mapper.Start();
        int violations = 0, ended = 0;
        try
        {
            for (int i = 0; i < Cycles; i++)
            {
                Assert.True(_share.TryGrantForeignAccess(2, 5, readOnly: true, out uint gref));
                Volatile.Write(ref _gref, (int)gref);

                // End once the mapper began its next map, at a point of it that moves from cycle to cycle.
                int started = Volatile.Read(ref _started);
                SpinWait.SpinUntil(() => Volatile.Read(ref _started) != started || Volatile.Read(ref _state) == Holding);
                Thread.SpinWait(i % 64);
                while (!_share.EndForeignAccess(gref))
                {
                    // In use: a map set GTF_reading before the end read the status. Let it unmap, then end again.
                    LetHolderGo();
                }

                ended++;

                // The end saw no user: the map in flight then must fail, so the mapper never holds this grant.
                AwaitMapInFlight();
                if (Volatile.Read(ref _state) == Holding)
                {
                    violations++;
                    LetHolderGo();
                }
            }
        }
        finally
        {
            _done = true;
            mapper.Join();
        }

        Assert.Equal(Cycles, ended);
        Assert.Equal(0, violations);
    }

    private void AwaitMapInFlight()
    {
        int started = Volatile.Read(ref _started);
        SpinWait.SpinUntil(() => Volatile.Read(ref _finished) >= started);
    }

    private void LetHolderGo()
    {
        AwaitMapInFlight();
        if (Volatile.Read(ref _state) == Holding)
        {
            Volatile.Write(ref _letGo, 1);
            SpinWait.SpinUntil(() => Volatile.Read(ref _state) != Holding);
        }
    }

    private void MapUntilDone()
    {
        while (!_done)
        {
            Interlocked.Increment(ref _started);
            GnttabMapGrantRef op = _m.MapGrant(_back, 1, (uint)Volatile.Read(ref _gref), Slot, readOnly: true);
            if (op.Status != 0)
            {
                Interlocked.Increment(ref _finished);
                continue;
            }

            Volatile.Write(ref _state, Holding);
            Interlocked.Increment(ref _finished);
            SpinWait.SpinUntil(() => Volatile.Read(ref _letGo) == 1 || _done);
            Volatile.Write(ref _letGo, 0);
            var unmap = new GnttabUnmapGrantRef { HostAddr = Slot << 12, Handle = op.Handle };
            _m.Host.UnmapGrantRef(_back.Grant, ref unmap);
            Assert.Equal(0, unmap.Status);
            Volatile.Write(ref _state, Idle);
        }
    }
}
