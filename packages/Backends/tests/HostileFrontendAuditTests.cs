using VmmKit.TestSupport;
using System.Runtime.InteropServices;
using VmmKit.Backends.Block;
using VmmKit.Backends.Console;
using VmmKit.Backends.Xenbus;
using VmmKit.GrantTable;
using static VmmKit.Backends.Tests.TestBlkfront;

namespace VmmKit.Backends.Tests;

/// <summary>
/// Audit of the PV backends against a hostile frontend: each test is a finding, with what Xen's or Linux's backend does.
/// </summary>
public sealed class HostileFrontendAuditTests() : BlockImageTests("blkaudit")
{
    private const int ConsoleFrame = 5;
    private BlockBackend? _backend;

    private async Task<TestBlkfront> StartBlockAsync(IBlockStorage storage, BlockBackendOptions? options = null)
    {
        var (be, fe) = await XenbusToolstack.AddDeviceAsync(_w.Store0, 0, 1, "vbd", Xvda,
            [new("params", _image), new("mode", storage.IsReadOnly ? "r" : "w"), new("dev", "xvda"), new("type", "file")],
            [new("virtual-device", Xvda.ToString()), new("device-type", "disk")]);
        var events = _w.Dom0Events.Open();
        _owned.Add(events);
        var backend = new BlockBackend(new XenbusBackendDevice(_w.Store0, be, fe, 1), events, _w.Mapper, storage, options);
        _owned.Add(backend);
        _backend = backend;
        _running.Add(backend.RunAsync(_stop.Token));
        await TestWorld.Until(async () => await _w.Store1.TryReadStringAsync($"{be}/state") == "2", "backend InitWait");
        var front = new TestBlkfront(_w);
        _owned.Add(front);
        await front.ConnectAsync(fe, be);
        return front;
    }

    // xen-blkback's dispatch_rw_block_io takes BLKIF_OP_FLUSH_DISKCACHE as REQ_OP_WRITE with REQ_PREFLUSH, and
    // xen_vbd_translate refuses any operation but a read on a read-only vbd (-EACCES: BLKIF_RSP_ERROR) before any I/O;
    // its segments are checked first too. A guest with a read-only disk (a shared image) cannot make Dom0 sync it.
    [Fact]
    public async Task A_flush_on_a_read_only_disk_is_refused_and_a_refused_flush_syncs_nothing()
    {
        var readOnly = new CountingStorage(new RawImageStorage(_image, readOnly: true));
        _owned.Add(readOnly);
        var f = await StartBlockAsync(readOnly);
        Assert.Equal(BlkifStatus.Error, f.One(BlkifOperation.FlushDiskCache, 1, 0).Status);
        Assert.Equal(BlkifStatus.Error, f.One(BlkifOperation.FlushDiskCache, 2, 0, Seg(f.DataRefs[0])).Status);
        Assert.Equal(0, readOnly.Flushes);
        Assert.Equal(BlkifStatus.Okay, f.One(BlkifOperation.Read, 3, 0, Seg(f.DataRefs[0])).Status);
    }

    [Fact]
    public async Task A_flush_whose_segments_are_refused_syncs_nothing()
    {
        var writable = new CountingStorage(new RawImageStorage(_image));
        _owned.Add(writable);
        var f = await StartBlockAsync(writable);
        Assert.Equal(BlkifStatus.Error, f.One(BlkifOperation.FlushDiskCache, 1, 0, Seg(f.DataRefs[0], 0, 8)).Status); // last > 7
        Assert.Equal(BlkifStatus.Error, f.One(BlkifOperation.FlushDiskCache, 2, 2047, Seg(f.DataRefs[0])).Status);    // past the end
        Assert.Equal(0, writable.Flushes);
        Assert.Equal(BlkifStatus.Okay, f.One(BlkifOperation.FlushDiskCache, 3, 0).Status);
        Assert.Equal(1, writable.Flushes);
    }

    // Already handled (documented here): a req_prod moved backwards is more than a ring ahead of rsp_prod_pvt modulo
    // 2^32, so xen-blkback's RING_REQUEST_PROD_OVERFLOW check halts the ring ("Halting ring processing"), as it does
    // for one far ahead; nothing is answered and nothing stays mapped.
    [Fact]
    public async Task A_req_prod_moved_backwards_halts_the_ring()
    {
        var disk = new CountingStorage(new RawImageStorage(_image));
        _owned.Add(disk);
        var f = await StartBlockAsync(disk);
        Assert.Equal(BlkifStatus.Okay, f.One(BlkifOperation.Read, 1, 0, Seg(f.DataRefs[0])).Status);
        Assert.Equal(BlkifStatus.Okay, f.One(BlkifOperation.Read, 2, 0, Seg(f.DataRefs[0])).Status);
        f.Push(reqProd: 1);
        TestWorld.Until(() => _backend!.Ring is { IsHalted: true }, "ring halted");
        Assert.Equal(2, _backend!.Ring!.RequestsCompleted);
        Assert.Equal(1, _w.Dom0Grants.MappingCount); // the ring page only
    }

    // XSA-332: a guest notifying in a tight loop kept a Linux backend's Dom0 CPU busy. Since then xen-blkback ends each
    // event with xen_irq_lateeoi(XEN_EOI_FLAG_SPURIOUS) when it found no request (do_block_io_op), and
    // drivers/xen/events/events_base.c's xen_irq_lateeoi_locked unmasks the port of the second spurious event in a row
    // late, 1 jiffy doubling up to HZ (1 s), until an event finds work. Nothing is lost: the event stays pending.
    [Fact]
    public async Task Spurious_block_events_in_a_row_unmask_the_port_late()
    {
        var time = new ManualTime();
        var disk = new CountingStorage(new RawImageStorage(_image));
        _owned.Add(disk);
        var f = await StartBlockAsync(disk, new BlockBackendOptions { TimeProvider = time });
        var backend = _backend!;
        // Binding the port raised an event (as Xen's bind_interdomain does) that found no request; a request ends that run.
        TestWorld.Until(() => backend.SpuriousEvents == 1 && _w.Dom0Events.EventsInHand == 0, "the bind event served");
        Assert.Equal(BlkifStatus.Okay, f.One(BlkifOperation.Read, 1, 0, Seg(f.DataRefs[0])).Status);
        TestWorld.Until(() => _w.Dom0Events.EventsInHand == 0, "idle");
        long before = backend.SpuriousEvents;

        void Spurious(long expected, string what)
        {
            f.Push(); // no new request
            TestWorld.Until(() => backend.SpuriousEvents == before + expected, what);
        }

        Spurious(1, "first spurious event");
        TestWorld.Until(() => _w.Dom0Events.EventsInHand == 0, "the first is unmasked at once");
        Spurious(2, "second spurious event");
        f.Push();
        await Task.Delay(300);
        Assert.Equal(before + 2, backend.SpuriousEvents); // the second is unmasked late: the third waits, pending
        Assert.Equal(1, _w.Dom0Events.EventsInHand);

        TestWorld.Until(() => time.Waiting == 1, "the late unmask waits for the clock");
        time.Advance(TimeSpan.FromMilliseconds(1));
        TestWorld.Until(() => backend.SpuriousEvents == before + 3, "the third served after 1 ms");

        // A request still gets its response once the (now 2 ms) delay is over, and work ends the backoff.
        f.Queue(BlkifOperation.Read, 7, 0, Seg(f.DataRefs[0]));
        f.Push();
        await Task.Delay(100);
        TestWorld.Until(() => time.Waiting == 1, "the (2 ms) late unmask waits for the clock");
        time.Advance(TimeSpan.FromMilliseconds(2));
        Assert.Equal((7UL, (byte)BlkifOperation.Read, BlkifStatus.Okay), f.Responses(1).Single());
        TestWorld.Until(() => _w.Dom0Events.EventsInHand == 0, "unmasked at once after work");
        Spurious(4, "a spurious event after work");
        TestWorld.Until(() => _w.Dom0Events.EventsInHand == 0, "unmasked at once: the count starts over");
    }

    // xenconsoled (tools/console/daemon/io.c) serves at most RATE_LIMIT_ALLOWANCE (30) events of a console in each
    // RATE_LIMIT_PERIOD (200 ms): handle_ring_read leaves the port masked after the 30th, and the main loop unmasks it
    // when the period ends. A guest that prints a byte and notifies in a tight loop cannot keep Dom0 busy beyond that;
    // nothing is lost (the event stays pending while masked).
    [Fact]
    public async Task A_console_guest_notifying_in_a_tight_loop_gets_30_events_a_period()
    {
        var time = new ManualTime();
        var guest = _w.Dom1Events.Open();
        _owned.Add(guest);
        uint port = guest.BindUnboundPort(0);
        _w.SeedReservedGrant(ConsoleBackend.ReservedConsoleGrant, ConsoleFrame);
        var events = _w.Dom0Events.Open();
        _owned.Add(events);
        var backend = new ConsoleBackend(events, _w.Mapper, Stream.Null, time);
        _owned.Add(backend);
        Assert.Equal(GrantStatus.Okay, backend.ConnectPrimary(1, port));
        _running.Add(backend.RunAsync(_stop.Token));

        void PrintAndNotify()
        {
            ref var ring = ref MemoryMarshal.AsRef<XenconsInterface>(_w.Page(ConsoleFrame));
            ring.Out[(int)(ring.OutProd & (XenconsInterface.OutSize - 1))] = (byte)'x';
            Volatile.Write(ref ring.OutProd, ring.OutProd + 1);
            guest.Notify(port);
        }

        // Every event is served (and the port unmasked) until the period's allowance is used up; binding the port
        // raised one event already, as Xen's bind_interdomain does.
        int printed = 0;
        while (backend.RateLimited == 0)
        {
            PrintAndNotify();
            printed++;
            Assert.True(printed <= ConsoleBackend.RateLimitAllowance, $"{printed} events served in one period");
            TestWorld.Until(() => backend.OutputBytes == printed, $"event {printed} served");
            TestWorld.Until(() => _w.Dom0Events.EventsInHand == 0 || backend.RateLimited != 0, $"event {printed} done");
        }

        PrintAndNotify();
        await Task.Delay(300);
        Assert.Equal(printed, backend.OutputBytes); // masked: the event waits for the next period
        Assert.Equal(1, backend.RateLimited);
        TestWorld.Until(() => time.Waiting == 1, "the period's end waits for the clock");
        time.Advance(ConsoleBackend.RateLimitPeriod);
        TestWorld.Until(() => backend.OutputBytes == printed + 1, "the last event served in the next period");
    }

    /// <summary>A disk that counts its flushes.</summary>
    private sealed class CountingStorage(RawImageStorage inner) : IBlockStorage, IDisposable
    {
        private int _flushes;

        public int Flushes => Volatile.Read(ref _flushes);

        public ulong Sectors => inner.Sectors;

        public bool IsReadOnly => inner.IsReadOnly;

        public void Read(long offset, Span<byte> destination) => inner.Read(offset, destination);

        public void Write(long offset, ReadOnlySpan<byte> source) => inner.Write(offset, source);

        public void Flush()
        {
            Interlocked.Increment(ref _flushes);
            inner.Flush();
        }

        public void Dispose() => inner.Dispose();
    }
}
