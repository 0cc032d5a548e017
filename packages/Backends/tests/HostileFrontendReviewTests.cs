using System.Runtime.InteropServices;
using VmmKit.Backends.Block;
using VmmKit.Backends.Console;
using VmmKit.Backends.Xenbus;
using static VmmKit.Backends.Tests.TestBlkfront;

namespace VmmKit.Backends.Tests;

/// <summary>
/// Review of blkback against a hostile (or merely strict) frontend: what Linux's xen-blkback answers, and what Linux's
/// xen-blkfront checks in every response.
/// </summary>
public sealed class HostileFrontendReviewTests() : BlockImageTests("blkrev")
{
    private async Task<(BlockBackend Backend, TestBlkfront Front)> StartAsync(bool copy, int maxIndirectSegments = 32)
    {
        var options = new BlockBackendOptions
        {
            MaxIndirectSegments = maxIndirectSegments,
            CopyBuffer = copy ? _w.NewCopyBuffer(Math.Max(11, maxIndirectSegments)) : null,
        };
        var (be, fe) = await XenbusToolstack.AddDeviceAsync(_w.Store0, 0, 1, "vbd", Xvda,
            [new("params", _image), new("mode", "w"), new("dev", "xvda"), new("type", "file")],
            [new("virtual-device", Xvda.ToString()), new("device-type", "disk")]);
        var raw = new RawImageStorage(_image);
        _owned.Add(raw);
        var events = _w.Dom0Events.Open();
        _owned.Add(events);
        var backend = new BlockBackend(new XenbusBackendDevice(_w.Store0, be, fe, 1), events, _w.Mapper, raw, options);
        _owned.Add(backend);
        _running.Add(backend.RunAsync(_stop.Token));
        await TestWorld.Until(async () => await _w.Store1.TryReadStringAsync($"{be}/state") == "2", "backend InitWait");
        var front = new TestBlkfront(_w);
        _owned.Add(front);
        await front.ConnectAsync(fe, be);
        return (backend, front);
    }

    // xen-blkback's dispatch_rw_block_io answers an indirect request with req_operation, its indirect_op (also on
    // fail_response), and xen-blkfront's blkif_interrupt compares a response's operation with the request's
    // indirect_op: any other value is "response has wrong operation" and disables the disk.
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task An_indirect_request_is_answered_with_its_indirect_op(bool copy)
    {
        var (_, f) = await StartAsync(copy);
        var list = MemoryMarshal.Cast<byte, BlkifRequestSegment>(f.Data(90));
        for (int i = 0; i < 16; i++)
        {
            f.Data(i).Fill((byte)(i + 1));
            list[i] = Seg(f.DataRefs[i]);
        }

        f.QueueIndirect(BlkifOperation.Write, 1, 0, 16, f.DataRefs[90]);
        f.QueueIndirect(BlkifOperation.Read, 2, 0, 16, f.DataRefs[90]);
        f.QueueIndirect(BlkifOperation.Read, 3, 0, 33, f.DataRefs[90]);   // above the advertised 32
        f.QueueIndirect(BlkifOperation.Write, 4, 0, 1, 9999);             // the indirect page does not map
        f.QueueIndirect(BlkifOperation.Read, 5, 2047, 16, f.DataRefs[90]); // past the disk's end
        f.Push();
        Assert.Equal(
            [
                (1UL, (byte)BlkifOperation.Write, BlkifStatus.Okay),
                (2UL, (byte)BlkifOperation.Read, BlkifStatus.Okay),
                (3UL, (byte)BlkifOperation.Read, BlkifStatus.Error),
                (4UL, (byte)BlkifOperation.Write, BlkifStatus.Error),
                (5UL, (byte)BlkifOperation.Read, BlkifStatus.Error),
            ],
            f.Responses(5));
    }

    // xen-blkback's dispatch_rw_block_io maps every segment (xen_blkbk_map) before it submits any I/O: a request with
    // one bad grant goes to fail_flush/fail_response and the disk is not touched. A write whose last segment is not
    // granted, or granted read-only where a read must write, is answered BLKIF_RSP_ERROR with nothing written or read,
    // and nothing stays mapped.
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_request_with_one_bad_grant_touches_neither_the_disk_nor_the_pages(bool copy)
    {
        var (backend, f) = await StartAsync(copy);
        f.Data(0).Fill(0xAA);
        f.Data(1).Fill(0xBB);
        Assert.Equal(BlkifStatus.Error, f.One(BlkifOperation.Write, 1, 0, Seg(f.DataRefs[0]), Seg(f.DataRefs[1]), Seg(9999)).Status);
        Assert.All(File.ReadAllBytes(_image), b => Assert.Equal(0, b));

        // A read into a page granted read-only: the backend would write where it may only read.
        Assert.True(_w.Share.TryGrantForeignAccess(0, TestBlkfront.FirstDataFrame + 2, readOnly: true, out uint readOnlyRef));
        f.Data(2).Fill(0xCC);
        Assert.Equal(BlkifStatus.Error, f.One(BlkifOperation.Read, 2, 0, Seg(readOnlyRef)).Status);
        Assert.All(f.Data(2).ToArray(), b => Assert.Equal(0xCC, b));
        Assert.Equal(1, _w.Dom0Grants.MappingCount); // the ring only
        Assert.False(_w.Share.IsForeignAccessInUse(readOnlyRef));
        Assert.Equal(2, backend.Ring!.RequestsFailed);
    }

    // One grant for two segments of a request, or the ring's own grant as a data page: Xen maps a grant as often as it
    // is asked (the pin counts, __gnttab_map_grant_ref), so the request is served; the frontend only hurts itself.
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_grant_used_twice_in_a_request_or_the_ring_grant_as_data_is_served(bool copy)
    {
        var (backend, f) = await StartAsync(copy);
        f.Data(0).Fill(0x5C);
        Assert.Equal(BlkifStatus.Okay, f.One(BlkifOperation.Write, 1, 0, Seg(f.DataRefs[0]), Seg(f.DataRefs[0])).Status);
        byte[] disk = File.ReadAllBytes(_image);
        Assert.All(disk.AsSpan(0, 8192).ToArray(), b => Assert.Equal(0x5C, b));
        Assert.Equal(BlkifStatus.Okay, f.One(BlkifOperation.Write, 2, 16, Seg(f.RingRefs[0], 7, 7)).Status);
        Assert.Equal(BlkifStatus.Okay, f.One(BlkifOperation.Read, 3, 0, Seg(f.DataRefs[1]), Seg(f.DataRefs[1], 0, 0)).Status);
        Assert.Equal(1, _w.Dom0Grants.MappingCount); // the ring only
        Assert.Equal(0, backend.Ring!.RequestsFailed);
    }

    // A frontend domain that dies with its ring mapped: Xen keeps a granted frame while a grantee maps it, and the
    // grantee's unmap still succeeds (the dying domain's gnttab_release_mappings only drops what it mapped itself). The
    // backend serves what was queued, then disconnects with nothing left mapped.
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_frontend_that_dies_connected_leaves_nothing_mapped_after_the_disconnect(bool copy)
    {
        var (backend, f) = await StartAsync(copy);
        f.Queue(BlkifOperation.Read, 1, 0, Seg(f.DataRefs[0]));
        _w.Grants.DestroyDomain(_w.Dom1Grants);
        backend.ProcessRing();
        f.Push();
        Assert.Equal(BlkifStatus.Error, f.Responses(1).Single().Status); // the data grant is gone with its table
        backend.Dispose();
        Assert.Null(backend.Ring);
        Assert.Equal(0, _w.Dom0Grants.MappingCount);
    }

    // xen-blkback's dispatch_rw_block_io takes BLKIF_OP_FLUSH_DISKCACHE as a write with REQ_PREFLUSH: more than 11
    // segments is "Bad number of segments" (BLKIF_RSP_ERROR), and the segments it carries are checked and written like
    // a write's, never answered Okay without reaching the disk.
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_flush_with_segments_writes_them_and_more_than_11_is_an_error(bool copy)
    {
        var (_, f) = await StartAsync(copy);
        f.Data(0).Fill(0x11);
        f.Data(1).Fill(0x22);
        Assert.Equal(BlkifStatus.Error, f.One(BlkifOperation.FlushDiskCache, 1, 0, Enumerable.Repeat(Seg(f.DataRefs[0]), 12).ToArray()).Status);
        Assert.Equal(BlkifStatus.Error, f.One(BlkifOperation.FlushDiskCache, 2, 0, Seg(f.DataRefs[0], 3, 2)).Status);
        Assert.Equal(BlkifStatus.Error, f.One(BlkifOperation.FlushDiskCache, 3, 2047, Seg(f.DataRefs[0])).Status);
        Assert.All(File.ReadAllBytes(_image), b => Assert.Equal(0, b));

        Assert.Equal(BlkifStatus.Okay, f.One(BlkifOperation.FlushDiskCache, 4, 8, Seg(f.DataRefs[0]), Seg(f.DataRefs[1], 0, 3)).Status);
        byte[] disk = File.ReadAllBytes(_image);
        Assert.Equal(f.Data(0).ToArray(), disk.AsSpan(8 * 512, 4096).ToArray());
        Assert.Equal(f.Data(1)[..2048].ToArray(), disk.AsSpan(16 * 512, 2048).ToArray());
        Assert.Equal(BlkifStatus.Okay, f.One(BlkifOperation.FlushDiskCache, 5, 0).Status);
    }

    // A frontend that queues a new request each time one is served keeps Process going for as long as it likes; the
    // toolstack disconnects such a guest's disk before destroying it (Dom0's BlockBackends.Remove), so the disconnect
    // must stop the loop. xen-blkback's __do_block_io_op checks kthread_should_stop() before every request, and
    // xen_blkif_disconnect stops that thread.
    [Fact]
    public async Task A_disconnect_stops_a_frontend_that_never_stops_queueing()
    {
        const int cap = 200_000;
        var storage = new EndlessStorage();
        var (be, fe) = await XenbusToolstack.AddDeviceAsync(_w.Store0, 0, 1, "vbd", Xvda);
        var events = _w.Dom0Events.Open();
        _owned.Add(events);
        var backend = new BlockBackend(new XenbusBackendDevice(_w.Store0, be, fe, 1), events, _w.Mapper, storage);
        _owned.Add(backend);
        _running.Add(backend.RunAsync(_stop.Token));
        await TestWorld.Until(async () => await _w.Store1.TryReadStringAsync($"{be}/state") == "2", "backend InitWait");
        var f = new TestBlkfront(_w);
        _owned.Add(f);
        await f.ConnectAsync(fe, be);

        Thread? disconnecting = null;
        storage.OnRead = n =>
        {
            if (n == 1)
            {
                // The disconnect starts while the ring is being served, and serving goes on only once it has asked the
                // loop to stop and waits for the backend's lock (or has finished): no race with the thread's start.
                var t = new Thread(backend.Dispose);
                t.Start();
                while (t.IsAlive && (t.ThreadState & ThreadState.WaitSleepJoin) == 0)
                {
                    Thread.Yield();
                }

                Volatile.Write(ref disconnecting, t);
            }

            if (n < cap)
            {
                f.Queue(BlkifOperation.Read, (ulong)n, 0, Seg(f.DataRefs[0], 0, 0));
                f.Push();
            }
        };
        f.Queue(BlkifOperation.Read, 0, 0, Seg(f.DataRefs[0], 0, 0));
        f.Push();
        TestWorld.Until(() => Volatile.Read(ref disconnecting) is { } t && t.Join(0), "the disconnect returned");
        Assert.True(storage.Reads < cap, $"the disconnect waited for the frontend to stop queueing ({storage.Reads} requests served)");
        Assert.Null(backend.Ring);
        Assert.Equal(0, _w.Dom0Grants.MappingCount);
    }

    // A secondary console whose frontend closes as xenbus frontends do, Closing then Closed: the backend follows to
    // Closed (the xenbus protocol, xen/io/xenbus.h; xen-blkback's frontend_changed and QEMU's xen-bus backends switch to
    // Closed when the frontend is Closed), and its ring is unmapped once the frontend is Closing.
    [Fact]
    public async Task A_secondary_console_follows_its_frontend_through_Closing_to_Closed()
    {
        var (be, fe) = await XenbusToolstack.AddDeviceAsync(_w.Store0, 0, 1, "console", 1, [new("protocol", "vt100")]);
        var events = _w.Dom0Events.Open();
        _owned.Add(events);
        var backend = new ConsoleBackend(events, _w.Mapper, Stream.Null);
        _owned.Add(backend);
        _running.Add(backend.RunXenbusAsync(new XenbusBackendDevice(_w.Store0, be, fe, 1), _stop.Token));
        await TestWorld.Until(async () => await _w.Store1.TryReadStringAsync($"{be}/state") == "2", "InitWait");
        var guest = _w.Dom1Events.Open();
        _owned.Add(guest);
        uint port = guest.BindUnboundPort(0);
        Assert.True(_w.Share.TryGrantForeignAccess(0, 5, false, out uint gref));
        await _w.Store1.WriteAsync($"{fe}/ring-ref", gref.ToString());
        await _w.Store1.WriteAsync($"{fe}/port", port.ToString());
        await _w.Store1.WriteAsync($"{fe}/state", "4");
        await TestWorld.Until(async () => await _w.Store1.TryReadStringAsync($"{be}/state") == "4", "Connected");

        await _w.Store1.WriteAsync($"{fe}/state", "5");
        await TestWorld.Until(async () => await _w.Store1.TryReadStringAsync($"{be}/state") == "5", "Closing");
        Assert.False(backend.IsConnected);
        Assert.True(_w.Share.EndForeignAccess(gref));
        await _w.Store1.WriteAsync($"{fe}/state", "6");
        await TestWorld.Until(async () => await _w.Store1.TryReadStringAsync($"{be}/state") == "6", "Closed");
    }
}
