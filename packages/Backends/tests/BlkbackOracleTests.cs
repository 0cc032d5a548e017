using System.Globalization;
using System.Runtime.InteropServices;
using VmmKit.Backends.Block;
using VmmKit.Backends.Rings;
using VmmKit.Backends.Xenbus;
using static VmmKit.Backends.Tests.TestBlkfront;

namespace VmmKit.Backends.Tests;

/// <summary>
/// blkback compared statement by statement with Linux's xen-blkback (drivers/block/xen-blkback/blkback.c and
/// xenbus.c): each test is a difference a frontend could observe, with the function whose rule it follows.
/// </summary>
public sealed class BlkbackOracleTests() : BlockImageTests("blkoracle")
{
    private string _be = "", _fe = "";
    private BlockBackend? _backend;

    private async Task<TestBlkfront> StartBackendAsync(bool readOnly = false)
    {
        (_be, _fe) = await XenbusToolstack.AddDeviceAsync(_w.Store0, 0, 1, "vbd", Xvda,
            [new("params", _image), new("mode", readOnly ? "r" : "w"), new("dev", "xvda"), new("type", "file")],
            [new("virtual-device", Xvda.ToString(CultureInfo.InvariantCulture)), new("device-type", "disk")]);
        var raw = new RawImageStorage(_image, readOnly);
        _owned.Add(raw);
        var events = _w.Dom0Events.Open();
        _owned.Add(events);
        _backend = new BlockBackend(new XenbusBackendDevice(_w.Store0, _be, _fe, 1), events, _w.Mapper, raw);
        _owned.Add(_backend);
        _running.Add(_backend.RunAsync(_stop.Token));
        await TestWorld.Until(async () => await _w.Store1.TryReadStringAsync($"{_be}/state") == "2", "backend InitWait");
        var front = new TestBlkfront(_w);
        _owned.Add(front);
        return front;
    }

    private Task Fe(string key, string value) => _w.Store1.WriteAsync($"{_fe}/{key}", value);

    private async Task<string?> ClosingWithErrorAsync()
    {
        await TestWorld.Until(async () => await _w.Store1.TryReadStringAsync($"{_be}/state") == "5", "backend Closing");
        Assert.Null(_backend!.Ring);
        Assert.Equal(0, _w.Dom0Grants.MappingCount);
        return await _w.Store1.TryReadStringAsync($"{_be}/error");
    }

    // xenbus.c's xen_blkif_map: a ring whose req_prod is already more than a ring ahead of its rsp_prod when the
    // backend attaches it is refused (-EIO: "mapping ring-ref port", the device goes Closing), not connected first.
    [Fact]
    public async Task A_ring_more_than_full_at_connect_is_refused()
    {
        var f = await StartBackendAsync();
        MemoryMarshal.Cast<byte, uint>(_w.Page(0))[SharedRing.ReqProdOffset / 4] = f.RingSize + 1;
        await Fe("ring-ref", f.RingRefs[0].ToString(CultureInfo.InvariantCulture));
        await Fe("event-channel", f.Port.ToString(CultureInfo.InvariantCulture));
        await Fe("state", "3");
        Assert.Contains("mapping ring-ref", await ClosingWithErrorAsync());
    }

    // xenbus.c's connect_ring: "multi-queue-num-queues" (1 when absent or unreadable, xenbus_read_unsigned) above what
    // the backend offers, or 0, is refused ("guest requested %u queues, exceeding the maximum of %u"). This backend
    // offers one queue (it writes no multi-queue-max-queues).
    [Theory]
    [InlineData("2", false)]
    [InlineData("0", false)]
    [InlineData("1", true)]
    [InlineData("two", true)]
    public async Task More_queues_than_offered_are_refused(string queues, bool connects)
    {
        var f = await StartBackendAsync();
        await Fe("multi-queue-num-queues", queues);
        if (connects)
        {
            await f.ConnectAsync(_fe, _be);
            Assert.Equal(BlkifStatus.Okay, f.One(BlkifOperation.Read, 1, 0, Seg(f.DataRefs[0])).Status);
            return;
        }

        await Fe("ring-ref", f.RingRefs[0].ToString(CultureInfo.InvariantCulture));
        await Fe("event-channel", f.Port.ToString(CultureInfo.InvariantCulture));
        await Fe("state", "3");
        Assert.Contains("queues", await ClosingWithErrorAsync());
    }

    // xenbus.c's connect_ring and read_per_ring_refs: a readable "ring-page-order" (even 0) makes the ring
    // "ring-ref0".."ring-ref<2^order-1>" (multi_ref); without it the ring is the single "ring-ref". blkif.h note 6: a
    // multi-page ring does not create "ring-ref". The other name is not read in either case.
    [Theory]
    [InlineData("0", "ring-ref", "reading ring-ref0")]
    [InlineData(null, "ring-ref0", "reading ring-ref")]
    [InlineData("0", "ring-ref0", null)]
    [InlineData("junk", "ring-ref", null)]
    public async Task Ring_page_order_decides_the_ring_ref_names(string? order, string refName, string? error)
    {
        var f = await StartBackendAsync();
        if (order is not null)
            await Fe("ring-page-order", order);
        await Fe(refName, f.RingRefs[0].ToString(CultureInfo.InvariantCulture));
        await Fe("event-channel", f.Port.ToString(CultureInfo.InvariantCulture));
        await Fe("state", "3");
        if (error is not null)
        {
            Assert.Contains(error, await ClosingWithErrorAsync());
            return;
        }

        await TestWorld.Until(async () => await _w.Store1.TryReadStringAsync($"{_be}/state") == "4", "backend Connected");
        Assert.Equal(BlkifStatus.Okay, f.One(BlkifOperation.Read, 1, 0, Seg(f.DataRefs[0])).Status);
    }

    // xenbus.c's frontend_changed: Initialised or Connected while the backend is not Connected runs connect_ring again
    // (after xen_blkif_disconnect), so a frontend that puts right the nodes a connection refused, and says Initialised
    // again, is connected.
    [Fact]
    public async Task A_frontend_Initialised_again_after_a_refusal_is_connected()
    {
        var f = await StartBackendAsync();
        await Fe("protocol", "sparc-abi");
        await Fe("ring-ref", f.RingRefs[0].ToString(CultureInfo.InvariantCulture));
        await Fe("event-channel", f.Port.ToString(CultureInfo.InvariantCulture));
        await Fe("state", "3");
        Assert.Contains("unknown fe protocol", await ClosingWithErrorAsync());
        await f.ConnectAsync(_fe, _be); // protocol x86_64-abi, then Initialised again
        Assert.Equal(BlkifStatus.Okay, f.One(BlkifOperation.Read, 1, 0, Seg(f.DataRefs[0])).Status);
    }

    // xenbus.c's connect_ring reads "protocol" with xenbus_scanf("%63s"): an empty value matches nothing, and the
    // frontend gets BLKIF_PROTOCOL_DEFAULT (the native ABI) as if the node were absent.
    [Fact]
    public async Task An_empty_protocol_node_is_the_native_abi()
    {
        var f = await StartBackendAsync();
        await Fe("protocol", "");
        await f.ConnectAsync(_fe, _be, writeProtocol: false);
        Assert.Equal(BlkifStatus.Okay, f.One(BlkifOperation.Read, 1, 0, Seg(f.DataRefs[0])).Status);
    }

    // xenbus.c's frontend_changed: a frontend state with no meaning for a backend (InitWait, Reconfiguring,
    // Reconfigured) is a fatal error ("saw state %d at frontend"): the backend goes Closing. The ring is left connected,
    // as xenbus_dev_fatal leaves it, until the frontend is Closed.
    [Theory]
    [InlineData("2")]
    [InlineData("7")]
    [InlineData("8")]
    public async Task A_frontend_state_a_backend_cannot_follow_is_fatal(string state)
    {
        var f = await StartBackendAsync();
        await f.ConnectAsync(_fe, _be);
        await Fe("state", state);
        await TestWorld.Until(async () => await _w.Store1.TryReadStringAsync($"{_be}/state") == "5", "backend Closing");
        Assert.Equal($"saw state {state} at frontend", await _w.Store1.TryReadStringAsync($"{_be}/error"));
        await Fe("state", "6");
        await TestWorld.Until(async () => await _w.Store1.TryReadStringAsync($"{_be}/state") == "6", "backend Closed");
        Assert.Equal(0, _w.Dom0Grants.MappingCount);
    }

    // xenbus.c's frontend_changed: the frontend's Closing only switches the backend to Closing; the ring stays
    // connected (and served) until the frontend is Closed (xen_blkif_disconnect), so requests in flight when it
    // starts closing still get their responses.
    [Fact]
    public async Task A_closing_frontend_still_gets_its_responses_until_Closed()
    {
        var f = await StartBackendAsync();
        await f.ConnectAsync(_fe, _be);
        await Fe("state", "5");
        await TestWorld.Until(async () => await _w.Store1.TryReadStringAsync($"{_be}/state") == "5", "backend Closing");
        Assert.NotNull(_backend!.Ring);
        Assert.Equal(BlkifStatus.Okay, f.One(BlkifOperation.Read, 1, 0, Seg(f.DataRefs[0])).Status);
        await Fe("state", "6");
        await TestWorld.Until(async () => await _w.Store1.TryReadStringAsync($"{_be}/state") == "6", "backend Closed");
        Assert.Null(_backend.Ring);
        Assert.Equal(0, _w.Dom0Grants.MappingCount);
    }

    // blkback.c's dispatch_discard_io: a discard is checked by xen_vbd_translate as a write first (read-only vbd or a
    // range past the end: BLKIF_RSP_ERROR), and only then does the device's lack of discard give BLKIF_RSP_EOPNOTSUPP.
    [Theory]
    [InlineData(false, 0UL, 8UL, BlkifStatus.NotSupported)]
    [InlineData(false, 2040UL, 16UL, BlkifStatus.Error)]
    [InlineData(false, ulong.MaxValue, 2UL, BlkifStatus.Error)]
    [InlineData(true, 0UL, 8UL, BlkifStatus.Error)]
    public async Task A_discard_is_checked_as_a_write_before_it_is_refused(bool readOnly, ulong sector, ulong sectors, BlkifStatus expected)
    {
        var f = await StartBackendAsync(readOnly);
        await f.ConnectAsync(_fe, _be);
        // struct blkif_request_discard (x86_64): operation, flag, handle, id at 8, sector_number at 16, nr_sectors at 24.
        var raw = new byte[112];
        raw[0] = (byte)BlkifOperation.Discard;
        MemoryMarshal.Write(raw.AsSpan(8), 77UL);
        MemoryMarshal.Write(raw.AsSpan(16), sector);
        MemoryMarshal.Write(raw.AsSpan(24), sectors);
        f.Queue(raw);
        f.Push();
        Assert.Equal((77UL, (byte)BlkifOperation.Discard, expected), f.Responses(1).Single());
    }

    // xen-blkback serves a ring only on its own xenblkd thread (xen_update_blkif_status starts xen_blkif_schedule),
    // never on the xenbus watch that connected it: requests queued before the connection must not hold the handshake.
    // A frontend that queues a new request for each one served (from before it is Initialised), for as long as the
    // backend serves it, still gets Closed: served on the watch task, that ring would never let Closed be seen.
    [Fact]
    public async Task Requests_queued_before_the_connection_do_not_hold_the_handshake()
    {
        bool queueing = true;
        var storage = new EndlessStorage();
        (_be, _fe) = await XenbusToolstack.AddDeviceAsync(_w.Store0, 0, 1, "vbd", Xvda);
        var events = _w.Dom0Events.Open();
        _owned.Add(events);
        _backend = new BlockBackend(new XenbusBackendDevice(_w.Store0, _be, _fe, 1), events, _w.Mapper, storage);
        _owned.Add(_backend);
        _running.Add(_backend.RunAsync(_stop.Token));
        await TestWorld.Until(async () => await _w.Store1.TryReadStringAsync($"{_be}/state") == "2", "backend InitWait");
        var f = new TestBlkfront(_w);
        _owned.Add(f);
        storage.OnRead = n =>
        {
            if (Volatile.Read(ref queueing))
            {
                f.Queue(BlkifOperation.Read, (ulong)n, 0, Seg(f.DataRefs[0], 0, 0));
                f.Push();
            }
        };
        f.Queue(BlkifOperation.Read, 0, 0, Seg(f.DataRefs[0], 0, 0));
        f.Push();
        try
        {
            await f.ConnectAsync(_fe, _be);
            await TestWorld.Until(() => Task.FromResult(storage.Reads > 1), "serving");
            await Fe("state", "6");
            await TestWorld.Until(async () => await _w.Store1.TryReadStringAsync($"{_be}/state") == "6", "backend Closed");
        }
        finally
        {
            // Stops the frontend (a backend that failed the test must not serve it for ever).
            Volatile.Write(ref queueing, false);
        }

        Assert.Null(_backend.Ring);
        Assert.Equal(0, _w.Dom0Grants.MappingCount);
    }
}
