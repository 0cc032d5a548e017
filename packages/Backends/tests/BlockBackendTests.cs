using VmmKit.Backends.Block;
using VmmKit.Backends.Xenbus;
using static VmmKit.Backends.Tests.TestBlkfront;

namespace VmmKit.Backends.Tests;

/// <summary>blkback against a C# blkfront over the in-process event channel, grant table and XenStore.</summary>
public sealed class BlockBackendTests() : BlockImageTests("blk")
{
    private string _be = "", _fe = "";

    private async Task<(BlockBackend Backend, TestBlkfront Front)> StartAsync(BlkifProtocol protocol = BlkifProtocol.X86_64, int order = 0,
        IBlockStorage? storage = null, BlockBackendOptions? options = null, bool readOnly = false, bool copy = false)
    {
        if (copy)
        {
            options ??= new BlockBackendOptions();
            options = new BlockBackendOptions
            {
                MaxIndirectSegments = options.MaxIndirectSegments, MaxRingPageOrder = options.MaxRingPageOrder,
                CopyBuffer = _w.NewCopyBuffer(Math.Max(11, options.MaxIndirectSegments)),
            };
        }

        (_be, _fe) = await XenbusToolstack.AddDeviceAsync(_w.Store0, 0, 1, "vbd", Xvda,
            [new("params", _image), new("mode", readOnly ? "r" : "w"), new("dev", "xvda"), new("type", "file")],
            [new("virtual-device", Xvda.ToString()), new("device-type", "disk")]);
        if (storage is null)
        {
            var raw = new RawImageStorage(_image, readOnly);
            _owned.Add(raw);
            storage = raw;
        }

        var events = _w.Dom0Events.Open();
        _owned.Add(events);
        var backend = new BlockBackend(new XenbusBackendDevice(_w.Store0, _be, _fe, 1), events, _w.Mapper, storage, options);
        _owned.Add(backend);
        _running.Add(backend.RunAsync(_stop.Token));
        await TestWorld.Until(async () => await _w.Store1.TryReadStringAsync($"{_be}/state") == "2", "backend InitWait");
        var front = new TestBlkfront(_w, protocol, order);
        _owned.Add(front);
        await front.ConnectAsync(_fe, _be);
        return (backend, front);
    }

    private static void Fill(Span<byte> page, int seed)
    {
        for (int i = 0; i < page.Length; i++)
            page[i] = (byte)((i * 7) + seed);
    }

    [Theory]
    [InlineData(BlkifProtocol.X86_64, false)]
    [InlineData(BlkifProtocol.X86_32, false)]
    [InlineData(BlkifProtocol.X86_64, true)]
    [InlineData(BlkifProtocol.X86_32, true)]
    public async Task A_written_pattern_reaches_the_image_and_reads_back(BlkifProtocol protocol, bool copy)
    {
        var (backend, f) = await StartAsync(protocol, copy: copy);
        Fill(f.Data(0), 1);
        Fill(f.Data(1), 2);
        // Two segments: a whole page at sector 8, then sectors 2..5 of the next page.
        var w = f.One(BlkifOperation.Write, 0x1122334455667788, 8, Seg(f.DataRefs[0]), Seg(f.DataRefs[1], 2, 5));
        Assert.Equal((0x1122334455667788UL, (byte)1, BlkifStatus.Okay), w);

        byte[] disk = File.ReadAllBytes(_image);
        Assert.Equal(f.Data(0).ToArray(), disk.AsSpan(8 * 512, 4096).ToArray());
        Assert.Equal(f.Data(1).Slice(2 * 512, 4 * 512).ToArray(), disk.AsSpan(16 * 512, 2048).ToArray());
        Assert.All(disk.AsSpan(0, 8 * 512).ToArray(), b => Assert.Equal(0, b));

        f.Data(2).Clear();
        var r = f.One(BlkifOperation.Read, 7, 8, Seg(f.DataRefs[2]));
        Assert.Equal(BlkifStatus.Okay, r.Status);
        Assert.Equal(f.Data(0).ToArray(), f.Data(2).ToArray());
        // A partial segment lands at its sectors of the page, the rest of the page untouched.
        f.Data(3).Fill(0xEE);
        Assert.Equal(BlkifStatus.Okay, f.One(BlkifOperation.Read, 8, 16, Seg(f.DataRefs[3], 2, 5)).Status);
        Assert.Equal(f.Data(1).Slice(2 * 512, 4 * 512).ToArray(), f.Data(3).Slice(2 * 512, 4 * 512).ToArray());
        Assert.All(f.Data(3)[..(2 * 512)].ToArray(), b => Assert.Equal(0xEE, b));
        Assert.All(f.Data(3)[(6 * 512)..].ToArray(), b => Assert.Equal(0xEE, b));
        // Grant copy maps nothing per request; grant map unmapped every data page again.
        Assert.Equal(1, _w.Dom0Grants.MappingCount);
        Assert.Equal(0, backend.Ring!.RequestsFailed);
    }

    [Fact]
    public async Task The_backend_advertises_what_it_implements_and_no_discard()
    {
        await StartAsync();
        async Task<string?> Be(string k) => await _w.Store1.TryReadStringAsync($"{_be}/{k}");
        Assert.Equal("2048", await Be("sectors"));
        Assert.Equal("512", await Be("sector-size"));
        Assert.Equal("0", await Be("info"));
        Assert.Equal("1", await Be("feature-flush-cache"));
        Assert.Equal("256", await Be("feature-max-indirect-segments"));
        Assert.Equal("4", await Be("max-ring-page-order"));
        Assert.Null(await Be("feature-discard"));
        Assert.Null(await Be("feature-barrier"));
        Assert.Null(await Be("feature-persistent"));
        Assert.Equal("4", await Be("state"));
    }

    [Fact]
    public async Task Flush_is_answered_and_discard_and_barrier_are_not_supported()
    {
        var (_, f) = await StartAsync();
        Assert.Equal(BlkifStatus.Okay, f.One(BlkifOperation.FlushDiskCache, 1, 0).Status);
        Assert.Equal(BlkifStatus.NotSupported, f.One(BlkifOperation.Discard, 2, 0).Status);
        Assert.Equal(BlkifStatus.NotSupported, f.One(BlkifOperation.WriteBarrier, 3, 0, Seg(f.DataRefs[0])).Status);
        Assert.Equal(BlkifStatus.NotSupported, f.One((BlkifOperation)200, 4, 0).Status);
    }

    [Theory]
    [InlineData(BlkifProtocol.X86_64, 2)]
    [InlineData(BlkifProtocol.X86_32, 3)]
    public async Task A_multi_page_ring_carries_more_requests_than_one_page_holds(BlkifProtocol protocol, int order)
    {
        var (backend, f) = await StartAsync(protocol, order);
        Assert.True(f.RingSize > 32);
        Assert.Equal(f.RingSize, backend.Ring!.RingSize);
        int n = (int)f.RingSize;
        for (int i = 0; i < n; i++)
        {
            Fill(f.Data(i % 64), i);
            f.Queue(BlkifOperation.Write, (ulong)i, (ulong)(i * 8), Seg(f.DataRefs[i % 64]));
            if (i % 64 == 63)
            {
                f.Push();
                Assert.All(f.Responses(64), r => Assert.Equal(BlkifStatus.Okay, r.Status));
            }
        }

        f.Push();
        var rest = f.Responses(n % 64);
        Assert.All(rest, r => Assert.Equal(BlkifStatus.Okay, r.Status));
        byte[] disk = File.ReadAllBytes(_image);
        for (int i = n - 64; i < n; i++)
            Assert.Equal(f.Data(i % 64).ToArray(), disk.AsSpan(i * 4096, 4096).ToArray());
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task An_indirect_request_moves_64_pages(bool copy)
    {
        var (_, f) = await StartAsync(copy: copy);
        // Frame FirstDataFrame + 90 holds the segment list; pages 0..63 the data.
        var list = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, BlkifRequestSegment>(f.Data(90));
        for (int i = 0; i < 64; i++)
        {
            Fill(f.Data(i), i + 100);
            list[i] = Seg(f.DataRefs[i]);
        }

        f.QueueIndirect(BlkifOperation.Write, 9, 16, 64, f.DataRefs[90]);
        f.Push();
        Assert.Equal((9UL, (byte)BlkifOperation.Write, BlkifStatus.Okay), f.Responses(1).Single()); // answered with indirect_op
        byte[] disk = File.ReadAllBytes(_image);
        for (int i = 0; i < 64; i++)
            Assert.Equal(f.Data(i).ToArray(), disk.AsSpan((16 * 512) + (i * 4096), 4096).ToArray());
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Hostile_requests_get_error_responses_and_the_backend_keeps_serving(bool copy)
    {
        var (backend, f) = await StartAsync(options: new BlockBackendOptions { MaxIndirectSegments = 32 }, copy: copy);
        Fill(f.Data(0), 3);
        var seg = Seg(f.DataRefs[0]);
        Assert.Equal(BlkifStatus.Error, f.One(BlkifOperation.Write, 1, 0).Status);                                   // no segment
        Assert.Equal(BlkifStatus.Error, f.One(BlkifOperation.Write, 2, 0, Enumerable.Repeat(seg, 12).ToArray()).Status); // 12 > 11
        Assert.Equal(BlkifStatus.Error, f.One(BlkifOperation.Read, 3, 2048, seg).Status);                            // past the end
        Assert.Equal(BlkifStatus.Error, f.One(BlkifOperation.Read, 4, 2044, seg).Status);                            // straddles the end
        Assert.Equal(BlkifStatus.Error, f.One(BlkifOperation.Read, 5, ulong.MaxValue - 2, seg).Status);              // wraps
        Assert.Equal(BlkifStatus.Error, f.One(BlkifOperation.Read, 6, 0, Seg(f.DataRefs[0], 5, 4)).Status);         // first > last
        Assert.Equal(BlkifStatus.Error, f.One(BlkifOperation.Read, 7, 0, Seg(f.DataRefs[0], 0, 8)).Status);         // last past the page
        Assert.Equal(BlkifStatus.Error, f.One(BlkifOperation.Write, 8, 0, Seg(9999)).Status);                        // no such grant
        Assert.Equal(BlkifStatus.Error, f.One(BlkifOperation.Write, 9, 0, Seg(2)).Status);                           // a reserved, ungranted ref
        f.QueueIndirect(BlkifOperation.Write, 10, 0, 33, f.DataRefs[1]);                                              // above the advertised 32
        f.QueueIndirect(BlkifOperation.FlushDiskCache, 11, 0, 1, f.DataRefs[1]);                                      // not read/write
        f.QueueIndirect(BlkifOperation.Write, 12, 0, 1, 9999);                                                        // bad indirect page
        f.Push();
        Assert.All(f.Responses(3), r => Assert.Equal(BlkifStatus.Error, r.Status));
        Assert.All(File.ReadAllBytes(_image), b => Assert.Equal(0, b));                                               // nothing was written

        // Still serving.
        Assert.Equal(BlkifStatus.Okay, f.One(BlkifOperation.Write, 13, 0, seg).Status);
        Assert.Equal(f.Data(0).ToArray(), File.ReadAllBytes(_image).AsSpan(0, 4096).ToArray());

        // A req_prod far ahead of the ring halts it (no exception, no response to garbage).
        f.Push(reqProd: 100_000);
        TestWorld.Until(() => backend.Ring is { IsHalted: true }, "ring halted");
        Assert.Equal(13, backend.Ring!.RequestsCompleted);
    }

    [Fact]
    public async Task A_read_only_disk_refuses_writes_and_says_so()
    {
        var (_, f) = await StartAsync(readOnly: true);
        Assert.Equal("4", await _w.Store1.TryReadStringAsync($"{_be}/info"));
        Assert.Equal(BlkifStatus.Error, f.One(BlkifOperation.Write, 1, 0, Seg(f.DataRefs[0])).Status);
        Assert.Equal(BlkifStatus.Okay, f.One(BlkifOperation.Read, 2, 0, Seg(f.DataRefs[0])).Status);
    }

    private sealed class FailingStorage : IBlockStorage
    {
        public ulong Sectors => 64;
        public bool IsReadOnly => false;
        public void Read(long offset, Span<byte> destination) => throw new IOException("EIO");
        public void Write(long offset, ReadOnlySpan<byte> source) => throw new IOException("EIO");
        public void Flush() => throw new IOException("EIO");
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Storage_errors_become_error_responses(bool copy)
    {
        var (backend, f) = await StartAsync(storage: new FailingStorage(), copy: copy);
        Assert.Equal(BlkifStatus.Error, f.One(BlkifOperation.Read, 1, 0, Seg(f.DataRefs[0])).Status);
        Assert.Equal(BlkifStatus.Error, f.One(BlkifOperation.Write, 2, 0, Seg(f.DataRefs[0])).Status);
        Assert.Equal(BlkifStatus.Error, f.One(BlkifOperation.FlushDiskCache, 3, 0).Status);
        Assert.Equal(3, backend.Ring!.RequestsFailed);
        Assert.Equal(XenbusState.Connected, backend.State);
    }

    [Fact]
    public async Task A_ring_page_order_above_the_maximum_is_refused_with_an_error_node()
    {
        (_be, _fe) = await XenbusToolstack.AddDeviceAsync(_w.Store0, 0, 1, "vbd", Xvda);
        var raw = new RawImageStorage(_image);
        _owned.Add(raw);
        var events = _w.Dom0Events.Open();
        _owned.Add(events);
        var backend = new BlockBackend(new XenbusBackendDevice(_w.Store0, _be, _fe, 1), events, _w.Mapper, raw, new BlockBackendOptions { MaxRingPageOrder = 1 });
        _owned.Add(backend);
        _running.Add(backend.RunAsync(_stop.Token));
        await _w.Store1.WriteAsync($"{_fe}/ring-page-order", "2");
        await _w.Store1.WriteAsync($"{_fe}/event-channel", "5");
        await _w.Store1.WriteAsync($"{_fe}/state", "3");
        await TestWorld.Until(async () => await _w.Store1.TryReadStringAsync($"{_be}/state") == "5", "backend Closing");
        Assert.Contains("ring-page-order", await _w.Store1.TryReadStringAsync($"{_be}/error"));
    }

    [Theory]
    [InlineData("ring-ref", "9999", "mapping ring-ref")]
    [InlineData("ring-ref", "abc", "reading ring-ref")]
    [InlineData("protocol", "sparc-abi", "unknown fe protocol")]
    [InlineData("event-channel", "4000", "binding event-channel")]
    public async Task A_frontend_with_bad_details_gets_an_error_node_and_Closing(string key, string value, string error)
    {
        (_be, _fe) = await XenbusToolstack.AddDeviceAsync(_w.Store0, 0, 1, "vbd", Xvda);
        var raw = new RawImageStorage(_image);
        _owned.Add(raw);
        var events = _w.Dom0Events.Open();
        _owned.Add(events);
        var backend = new BlockBackend(new XenbusBackendDevice(_w.Store0, _be, _fe, 1), events, _w.Mapper, raw);
        _owned.Add(backend);
        _running.Add(backend.RunAsync(_stop.Token));
        await TestWorld.Until(async () => await _w.Store1.TryReadStringAsync($"{_be}/state") == "2", "backend InitWait");
        var front = new TestBlkfront(_w);
        _owned.Add(front);
        await _w.Store1.WriteAsync($"{_fe}/ring-ref", front.RingRefs[0].ToString());
        await _w.Store1.WriteAsync($"{_fe}/event-channel", front.Port.ToString());
        await _w.Store1.WriteAsync($"{_fe}/{key}", value);
        await _w.Store1.WriteAsync($"{_fe}/state", "3");
        await TestWorld.Until(async () => await _w.Store1.TryReadStringAsync($"{_be}/state") == "5", "backend Closing");
        Assert.Contains(error, await _w.Store1.TryReadStringAsync($"{_be}/error"));
        Assert.Null(backend.Ring);
        Assert.Equal(0, _w.Dom0Grants.MappingCount); // nothing left mapped
    }

    [Fact]
    public async Task Closing_the_frontend_disconnects_and_unmaps_the_ring()
    {
        var (backend, f) = await StartAsync();
        int mapped = _w.Dom0Grants.MappingCount;
        Assert.True(mapped >= 1);
        await _w.Store1.WriteAsync($"{_fe}/state", "5");
        await TestWorld.Until(async () => await _w.Store1.TryReadStringAsync($"{_be}/state") == "5", "backend Closing");
        await _w.Store1.WriteAsync($"{_fe}/state", "6");
        await TestWorld.Until(async () => await _w.Store1.TryReadStringAsync($"{_be}/state") == "6", "backend Closed");
        Assert.Null(backend.Ring);
        Assert.Equal(0, _w.Dom0Grants.MappingCount);
        Assert.True(_w.Share.EndForeignAccess(f.RingRefs[0]));
    }

    // Options a ring could not be served with are refused when the backend is created, not when a frontend connects
    // (the ring server's checks threw out of RunAsync then, on the frontend's behalf).
    [Theory]
    [InlineData(4097, 0)]
    [InlineData(-1, 0)]
    [InlineData(32, 16)]
    public async Task Options_a_ring_cannot_be_served_with_are_refused_at_creation(int maxIndirect, int copyPages)
    {
        (_be, _fe) = await XenbusToolstack.AddDeviceAsync(_w.Store0, 0, 1, "vbd", Xvda);
        var raw = new RawImageStorage(_image);
        _owned.Add(raw);
        var events = _w.Dom0Events.Open();
        _owned.Add(events);
        var options = new BlockBackendOptions
        {
            MaxIndirectSegments = maxIndirect, CopyBuffer = copyPages == 0 ? null : _w.NewCopyBuffer(copyPages),
        };
        Assert.ThrowsAny<ArgumentException>(() => new BlockBackend(new XenbusBackendDevice(_w.Store0, _be, _fe, 1), events, _w.Mapper, raw, options));
    }

    [Theory]
    [InlineData("xvda", 51712u)]
    [InlineData("xvdb", 51728u)]
    [InlineData("xvdp", 51952u)]
    [InlineData("xvdq", 268439552u)]
    public void Virtual_disk_names_map_to_xen_vbd_ids(string name, uint id)
    {
        Assert.True(XenbusPaths.TryParseVirtualDisk(name, out uint got));
        Assert.Equal(id, got);
        Assert.False(XenbusPaths.TryParseVirtualDisk("sda", out _));
    }
}
