using VmmKit.Ept;
using VmmKit.Hypercall;
using static VmmKit.GrantTable.Tests.GuestValues;

namespace VmmKit.GrantTable.Tests;

/// <summary>
/// <c>GNTTABOP_unmap_grant_ref</c> in Xen's batches (grant_table.c's <c>gnttab_unmap_grant_ref</c>): up to
/// <c>GNTTAB_UNMAP_BATCH_SIZE</c> (32) operations take their mappings out of the grantee's EPT, then one
/// <c>gnttab_flush_tlb</c>, then every one completes (pin, status flags, frame reference), so a page is released only
/// after the flush and a batch costs one flush, not one per operation. The same for <see cref="GrantTableHost.ReleaseMappings"/>
/// and domain death (<c>gnttab_release_mappings</c>).
/// </summary>
public sealed class UnmapBatchTests : IDisposable
{
    private const ulong Buffer = 20UL << 12;   // the backend's operations (paging off)
    private const ulong MapGfn = 0x1000;
    private readonly TestMachine _m = new();
    private readonly TestDomain _front;
    private readonly TestDomain _back;
    private readonly InProcessGrantShare _share;
    private readonly HypercallDispatcher<TestDomain> _dispatcher = new();
    private readonly List<int> _flushes = [];   // at each flush: how many of the mapped pages are still allocated

    public UnmapBatchTests()
    {
        _front = _m.AddDomain(1);
        _back = _m.AddDomain(2);
        _share = new InProcessGrantShare(_m.Host, _front.Grant);
        new GrantTableHypercalls<TestDomain>(_m.Host, new TestResolver()).Register(_dispatcher);
    }

    public void Dispose() => _m.Dispose();

    // The frontend grants its pages 24..24+n-1, the backend maps them at MapGfn + i, and the frontend frees them: each
    // free waits for the page's last unmap. The flush hook then records how many of them are still allocated.
    private uint[] MapFreedPages(int n)
    {
        var handles = new uint[n];
        for (int i = 0; i < n; i++)
        {
            Assert.True(_share.TryGrantForeignAccess(2, (ulong)(24 + i), false, out uint gref));
            GnttabMapGrantRef op = _m.MapGrant(_back, 1, gref, MapGfn + (ulong)i);
            Assert.Equal(0, op.Status);
            handles[i] = op.Handle;
            Assert.False(_m.Frames.Free(_front.Ram[24 + i]));
        }

        _m.Host.FlushTranslations = d =>
        {
            Assert.Equal(2, d.Id);
            _flushes.Add(Enumerable.Range(0, n).Count(i => _m.Memory.TryGetOwner(_front.Ram[24 + i], out _)));
        };
        return handles;
    }

    private int Allocated(int n) => Enumerable.Range(0, n).Count(i => _m.Memory.TryGetOwner(_front.Ram[24 + i], out _));

    private long Call(ulong uop, uint count) =>
        GrantTableCall.Invoke(_dispatcher, _back, (ulong)GrantTableOp.UnmapGrantRef, uop, count, HypercallAbi.Native64, out _);

    private void PutUnmaps(uint[] handles)
    {
        for (int i = 0; i < handles.Length; i++)
        {
            Put(_back, Buffer + ((ulong)i * 24), new GnttabUnmapGrantRef { HostAddr = (MapGfn + (ulong)i) << 12, Handle = handles[i], Status = 99 });
        }
    }

    [Fact]
    public void A_call_flushes_once_per_batch_of_32_and_releases_pages_only_after_the_flush()
    {
        uint[] handles = MapFreedPages(40);
        PutUnmaps(handles);

        Assert.Equal(0, Call(Buffer, 40));

        // Batch one (32 operations): all 40 pages allocated at its flush; batch two: the 8 left.
        Assert.Equal([40, 8], _flushes);
        Assert.Equal(0, Allocated(40));
        for (int i = 0; i < 40; i++)
        {
            Assert.Equal(0, Get<GnttabUnmapGrantRef>(_back, Buffer + ((ulong)i * 24)).Status);
            Assert.False(_back.Ept.TryLookup(new GuestFrameNumber(MapGfn + (ulong)i), out _, out _));
        }
    }

    [Fact]
    public void A_batch_in_which_nothing_left_the_EPT_does_not_flush()
    {
        MapFreedPages(1);
        Put(_back, Buffer, new GnttabUnmapGrantRef { HostAddr = MapGfn << 12, Handle = 77, Status = 99 });
        Assert.Equal(0, Call(Buffer, 1));
        Assert.Equal((short)GrantStatus.BadHandle, Get<GnttabUnmapGrantRef>(_back, Buffer).Status);
        Assert.Empty(_flushes);
    }

    [Fact]
    public void A_status_that_cannot_be_written_ends_the_call_after_the_batch_so_far_is_flushed_and_completed()
    {
        // gnttab_unmap_grant_ref's fault path: the operations done flush once and complete; -EFAULT; none after runs.
        uint[] handles = MapFreedPages(3);
        PutUnmaps(handles);
        _back.Ept.Protect(new GuestPhysicalAddress(Buffer), 1, EptAccess.Read); // the array is readable, not writable

        Assert.Equal(XenErrno.EFAULT.Negated(), Call(Buffer, 3));

        Assert.Equal([3], _flushes);
        Assert.Equal(2, Allocated(3));                                        // the first operation ran and completed
        Assert.False(_back.Ept.TryLookup(new GuestFrameNumber(MapGfn), out _, out _));
        Assert.True(_back.Ept.TryLookup(new GuestFrameNumber(MapGfn + 1), out _, out _));
    }

    [Fact]
    public void An_operation_that_cannot_be_read_ends_the_call_after_those_before_it_are_flushed_and_completed()
    {
        uint[] handles = MapFreedPages(2);
        ulong uop = (64UL << 12) - 24;                                       // the second operation lies past RAM
        Put(_back, uop, new GnttabUnmapGrantRef { HostAddr = MapGfn << 12, Handle = handles[0], Status = 99 });

        Assert.Equal(XenErrno.EFAULT.Negated(), Call(uop, 2));

        Assert.Equal([2], _flushes);
        Assert.Equal(1, Allocated(2));
        Assert.Equal(0, Get<GnttabUnmapGrantRef>(_back, uop).Status);
    }

    [Fact]
    public void The_host_api_unmaps_a_span_in_batches_with_one_flush_each()
    {
        uint[] handles = MapFreedPages(34);
        var ops = new GnttabUnmapGrantRef[34];
        for (int i = 0; i < ops.Length; i++)
        {
            ops[i] = new GnttabUnmapGrantRef { HostAddr = (MapGfn + (ulong)i) << 12, Handle = handles[i], Status = 99 };
        }

        ops[5].Handle = handles[4];                                          // the operation before it unmaps that handle
        _m.Host.UnmapGrantRefs(_back.Grant, ops);

        Assert.Equal([34, 3], _flushes);                                     // then pages 5, 32 and 33
        Assert.Equal(1, Allocated(34));                                      // page 5 is still mapped
        Assert.All(ops.Select((op, i) => (op.Status, i)), s => Assert.Equal(s.i == 5 ? (short)GrantStatus.BadHandle : (short)0, s.Status));
    }

    [Fact]
    public void Releasing_every_mapping_of_a_domain_flushes_once()
    {
        MapFreedPages(10);
        Assert.Equal(10, _m.Host.ReleaseMappings(_back.Grant));
        Assert.Equal([10], _flushes);
        Assert.Equal(0, Allocated(10));
    }

    [Fact]
    public void The_death_of_a_grantee_with_mappings_flushes_once()
    {
        MapFreedPages(10);
        _m.Host.DestroyDomain(_back.Grant);
        Assert.Equal([10], _flushes);
        Assert.Equal(0, Allocated(10));
    }
}
