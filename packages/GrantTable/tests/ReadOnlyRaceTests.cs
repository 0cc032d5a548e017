using VmmKit.Ept;

namespace VmmKit.GrantTable.Tests;

/// <summary>
/// Xen 4.17's _set_status_v2 on an entry already pinned (a read-only mapping holds it): a writable map checks
/// GTF_readonly, sets GTF_writing in the status frame, and reads the entry again. A granter that makes the grant
/// read-only (write GTF_readonly, then read the status) and sees GTF_writing clear may rely on no writable mapping
/// existing from then on; without the second read a map that checked the entry before the granter wrote it succeeds
/// anyway, and the grantee writes a page its granter made read-only.
/// </summary>
public sealed unsafe class ReadOnlyRaceTests : IDisposable
{
    private const ulong HolderSlot = 0x1000, WriterSlot = 0x1001;
    private const int Cycles = 30_000, Attempts = 200_000;
    private readonly TestMachine _m = new();
    private readonly TestDomain _front;
    private readonly TestDomain _back;
    private readonly uint _gref;
    private readonly GrantEntryV2* _entry;
    private readonly ushort* _status;
    private int _sealed;    // the granter's: 1 while it has made the grant read-only and seen no writer
    private int _violations;
    private int _attempts;  // writable maps the writer began
    private int _failedUnmaps;
    private volatile bool _done;

    public ReadOnlyRaceTests()
    {
        _front = _m.AddDomain(1);
        _back = _m.AddDomain(2);
        var v = new GnttabSetVersion { Version = 2 };
        Assert.Equal(0, _m.Host.SetVersion(_front.Grant, ref v));
        var share = new InProcessGrantShare(_m.Host, _front.Grant);
        Assert.True(share.TryGrantForeignAccess(2, 5, readOnly: false, out _gref));
        _entry = (GrantEntryV2*)_m.Memory.GetFramePointer(_front.Grant.GetSharedFrame(0)) + _gref;
        _status = (ushort*)_m.Memory.GetFramePointer(_front.Grant.GetStatusFrame(0)) + _gref;
    }

    public void Dispose() => _m.Dispose();

    [Fact]
    public void A_writable_map_racing_with_the_granter_making_a_pinned_grant_read_only_fails()
    {
        // The read-only mapping that keeps the entry pinned throughout.
        Assert.Equal(0, _m.MapGrant(_back, 1, _gref, HolderSlot, readOnly: true).Status);
        var writer = new Thread(MapWritableUntilDone);
        writer.Start();
        int sealedCycles = 0;
        try
        {
            // As many cycles as the writer needs to make its attempts meanwhile (on a busy host it may start late).
            SpinWait.SpinUntil(() => Volatile.Read(ref _attempts) > 0);
            for (int i = 0; i < Cycles || Volatile.Read(ref _attempts) < Attempts; i++)
            {
                Thread.SpinWait(i % 64);
                // gnttab_update_entry's way to revoke write access: GTF_readonly, then a look at the status.
                Interlocked.Or(ref *(int*)&_entry->Flags, (int)GrantEntryFlags.ReadOnly); // flags are the low half (domid the high)
                if ((Volatile.Read(ref *_status) & (ushort)GrantEntryFlags.Writing) == 0)
                {
                    Volatile.Write(ref _sealed, 1);
                    sealedCycles++;
                    Thread.SpinWait(32);
                    Volatile.Write(ref _sealed, 0);
                }

                Interlocked.And(ref *(int*)&_entry->Flags, ~(int)GrantEntryFlags.ReadOnly);
            }
        }
        finally
        {
            _done = true;
            writer.Join();
        }

        Assert.True(sealedCycles > 0);
        Assert.Equal(0, Volatile.Read(ref _failedUnmaps));
        Assert.Equal(0, Volatile.Read(ref _violations));
    }

    private void MapWritableUntilDone()
    {
        while (!_done)
        {
            Interlocked.Increment(ref _attempts);
            GnttabMapGrantRef op = _m.MapGrant(_back, 1, _gref, WriterSlot);
            if (op.Status != 0)
                continue;

            // Mapped writable, so GTF_writing is set until the unmap: a granter that sealed saw it clear before this
            // map set it, and the map's second look at the entry must have seen GTF_readonly.
            if (Volatile.Read(ref _sealed) == 1)
                Interlocked.Increment(ref _violations);
            var unmap = new GnttabUnmapGrantRef { HostAddr = WriterSlot << 12, Handle = op.Handle };
            _m.Host.UnmapGrantRef(_back.Grant, ref unmap);
            if (unmap.Status != 0)
                Interlocked.Increment(ref _failedUnmaps); // asserted on the test's thread: a throw here would end the run
        }
    }
}
