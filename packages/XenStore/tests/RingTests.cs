using VmmKit.XenStore.Client;
using VmmKit.XenStore.Daemon;
using VmmKit.XenStore.Transports;
using VmmKit.XenStore.Wire;

namespace VmmKit.XenStore.Tests;

/// <summary>The shared-ring transport: a guest client and the daemon over one xenstore_domain_interface page.</summary>
public class RingTests
{
    /// <summary>An event channel stand-in: notifying signals the other end's stream.</summary>
    internal sealed class Kick : IXenStoreEventNotifier
    {
        public XenStoreRingStream? Target { get; set; }

        public int Count;

        public void Notify()
        {
            Interlocked.Increment(ref Count);
            Target?.Signal();
        }
    }

    /// <summary>A connector that hands out in-memory pages, like Dom0 mapping a guest frame.</summary>
    /// <summary>
    /// Gives domain 5 its home (owned by it, with a 200-byte node <c>x</c>) and introduces it, so the daemon serves its
    /// ring through the test's <see cref="Connector"/>.
    /// </summary>
    internal static async Task IntroduceDomain5Async(XenStoreClient dom0)
    {
        await dom0.MkdirAsync("/local/domain/5");
        await dom0.SetPermissionsAsync("/local/domain/5", [new Store.XsPermission(5, Store.XsAccess.None)]);
        await dom0.WriteAsync("/local/domain/5/x", new string('v', 200));
        await dom0.IntroduceAsync(5, 1, 1);
    }

    /// <summary>
    /// Writes <paramref name="requests"/> into a guest's request ring and waits until the daemon has read them all and
    /// the response ring is full (their replies overflow it; the guest never takes them).
    /// </summary>
    internal static async Task SendUntilResponseRingFullAsync(XenStoreMemoryRingPage page, XenStoreRingStream guest,
        XenStoreRingBinding binding, byte[] requests)
    {
        Assert.Equal(requests.Length, guest.TryWrite(requests));
        binding.Signal();
        uint Field(int offset) => XenStoreRingStream.ReadIndex(page.Span, offset);
        for (int i = 0; i < 1000 && (Field(XenStoreDomainInterface.ReqCons) != requests.Length
            || Field(XenStoreDomainInterface.RspProd) - Field(XenStoreDomainInterface.RspCons) != XsConstants.RingSize); i++)
            await Task.Delay(10);
        Assert.Equal((uint)requests.Length, Field(XenStoreDomainInterface.ReqCons));
        Assert.Equal((uint)XsConstants.RingSize, Field(XenStoreDomainInterface.RspProd) - Field(XenStoreDomainInterface.RspCons));
    }

    /// <summary>
    /// The first reply a ring just reset carries is the one to a new request (a GET_DOMAIN_PATH of domain 5): nothing
    /// of the old connection's output comes before it, and it starts on a packet boundary.
    /// </summary>
    internal static async Task AssertFirstReplyIsFreshAsync(RawConnection fresh)
    {
        await fresh.SendAsync(RawConnection.Frame(XsMessageType.GetDomainPath, 4242, 0, RawConnection.Strings("5")));
        var (header, payload) = await fresh.ReceiveAsync();
        Assert.Equal(XsMessageType.GetDomainPath, header.Type);
        Assert.Equal(4242u, header.RequestId);
        Assert.Equal("/local/domain/5\0", System.Text.Encoding.ASCII.GetString(payload));
    }

    internal sealed class Connector : IXenStoreDomainConnector
    {
        public System.Collections.Concurrent.ConcurrentDictionary<uint, (XenStoreMemoryRingPage Page, Kick ToGuest, XenStoreRingBinding Binding)> Domains { get; } = new();

        public XenStoreRingBinding? Connect(uint domainId, long mfn, uint eventChannel)
        {
            var page = new XenStoreMemoryRingPage();
            var toGuest = new Kick();
            var binding = new XenStoreRingBinding(page, toGuest);
            Domains[domainId] = (page, toGuest, binding);
            return binding;
        }

        public XenStoreClient Guest(uint domid) => new(GuestStream(domid));

        /// <summary>The guest's end of the domain's ring.</summary>
        public XenStoreRingStream GuestStream(uint domid)
        {
            var (page, toGuest, binding) = Domains[domid];
            var stream = new XenStoreRingStream(page, new Kick { Target = binding.Stream }, XenStoreRingRole.Client);
            toGuest.Target = stream;
            return stream;
        }
    }

    [Fact]
    public async Task Introduced_domain_talks_over_its_ring_with_relative_paths_and_watches()
    {
        var connector = new Connector();
        await using var daemon = new XenStoreDaemon(new XenStoreDaemonOptions { DomainConnector = connector });
        await using var dom0 = new XenStoreClient(daemon.Connect());
        await dom0.MkdirAsync("/local/domain/3");
        await dom0.SetPermissionsAsync("/local/domain/3", [new Store.XsPermission(3, Store.XsAccess.None)]);
        await dom0.IntroduceAsync(3, 0x1234, 9);
        await using var guest = connector.Guest(3);
        await guest.WriteAsync("name", "guest-three");
        Assert.Equal("guest-three", await dom0.ReadStringAsync("/local/domain/3/name"));

        await using var w = guest.WatchAsync("control", "ctl").GetAsyncEnumerator();
        Assert.True(await w.MoveNextAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(30)));
        Assert.Equal("control", w.Current.Path);
        await dom0.WriteAsync("/local/domain/3/control/shutdown", "poweroff");
        Assert.True(await w.MoveNextAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(30)));
        Assert.Equal(new XenStoreWatchEvent("control/shutdown", "ctl"), w.Current);

        // Messages larger than the 1 KiB ring still flow (split across ring turns).
        var big = new byte[1900];
        Random.Shared.NextBytes(big);
        await guest.WriteAsync("big", big);
        Assert.Equal(big, await guest.ReadAsync("big"));

        var span = connector.Domains[3].Page.Span;
        Assert.Equal(XsConstants.ServerFeatureReconnection | XsConstants.ServerFeatureError,
            XenStoreRingStream.ReadIndex(span, XenStoreDomainInterface.ServerFeatures));
    }

    [Fact]
    public async Task Corrupt_ring_indexes_set_the_error_field_and_drop_only_that_domain()
    {
        var connector = new Connector();
        await using var daemon = new XenStoreDaemon(new XenStoreDaemonOptions { DomainConnector = connector });
        await using var dom0 = new XenStoreClient(daemon.Connect());
        await dom0.IntroduceAsync(4, 1, 1);
        var (page, _, binding) = connector.Domains[4];
        // The guest claims 5000 bytes of requests in a 1024-byte ring.
        BitConverterWrite(page.Span, XenStoreDomainInterface.ReqProd, 5000);
        binding.Signal();
        for (int i = 0; i < 500 && XenStoreRingStream.ReadIndex(page.Span, XenStoreDomainInterface.Error) == 0; i++)
            await Task.Delay(10);
        Assert.Equal(XsConstants.ErrorRingIdx, XenStoreRingStream.ReadIndex(page.Span, XenStoreDomainInterface.Error));
        await dom0.WriteAsync("/still", "ok");
        Assert.Equal("ok", await dom0.ReadStringAsync("/still"));
    }

    [Fact]
    public async Task Oversized_payload_on_a_ring_drops_the_domain_connection()
    {
        var connector = new Connector();
        await using var daemon = new XenStoreDaemon(new XenStoreDaemonOptions { DomainConnector = connector });
        await using var dom0 = new XenStoreClient(daemon.Connect());
        await dom0.IntroduceAsync(6, 1, 1);
        var (page, toGuest, binding) = connector.Domains[6];
        var guest = new XenStoreRingStream(page, new Kick { Target = binding.Stream }, XenStoreRingRole.Client);
        toGuest.Target = guest;
        var header = new byte[16];
        new XsHeader(XsMessageType.Write, 1, 0, 100_000).Write(header);
        Assert.Equal(16, guest.TryWrite(header));
        binding.Signal();
        for (int i = 0; i < 500; i++)
        {
            bool gone;
            lock (daemon.Gate)
                gone = !daemon.Processor.Connections.Any(c => c.DomainId == 6);
            if (gone)
                break;
            await Task.Delay(10);
        }
        lock (daemon.Gate)
            Assert.DoesNotContain(daemon.Processor.Connections, c => c.DomainId == 6);
        Assert.Equal("/local/domain/6", await dom0.GetDomainPathAsync(6));
    }

    private static void BitConverterWrite(Span<byte> span, int offset, uint value) =>
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(span[offset..], value);
}

/// <summary>Guest-initiated reconnect (connection = XENSTORE_RECONNECT) and the daemon entry point.</summary>
public class RingReconnectAndEntryTests
{
    [Fact]
    public async Task Guest_reconnect_resets_the_ring_and_forgets_its_watches()
    {
        var connector = new RingTests.Connector();
        await using var daemon = new XenStoreDaemon(new XenStoreDaemonOptions { DomainConnector = connector });
        await using var dom0 = new XenStoreClient(daemon.Connect());
        await dom0.MkdirAsync("/local/domain/5");
        await dom0.SetPermissionsAsync("/local/domain/5", [new Store.XsPermission(5, Store.XsAccess.None)]);
        await dom0.IntroduceAsync(5, 1, 1);
        var first = connector.Guest(5);
        await first.WriteAsync("x", "1");
        var w = first.WatchAsync("x", "old").GetAsyncEnumerator();
        Assert.True(await w.MoveNextAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(30)));
        lock (daemon.Gate)
            Assert.Single(daemon.Processor.Connections.Single(c => c.DomainId == 5).Watches);
        await dom0.WriteAsync("/local/domain/5/y", "watch-me");
        var (page, toGuest, binding) = connector.Domains[5];

        // The guest (say, a kexec'd kernel) asks for a fresh ring.
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(page.Span[XenStoreDomainInterface.Connection..], XsConstants.Reconnect);
        binding.Signal();
        for (int i = 0; i < 500 && XenStoreRingStream.ReadIndex(page.Span, XenStoreDomainInterface.Connection) != XsConstants.Connected; i++)
            await Task.Delay(10);
        Assert.Equal(XsConstants.Connected, XenStoreRingStream.ReadIndex(page.Span, XenStoreDomainInterface.Connection));
        Assert.Equal(0u, XenStoreRingStream.ReadIndex(page.Span, XenStoreDomainInterface.ReqProd));
        lock (daemon.Gate)
            Assert.Empty(daemon.Processor.Connections.Single(c => c.DomainId == 5).Watches);

        var fresh = connector.Guest(5);
        Assert.Equal("1", await fresh.ReadStringAsync("x"));
        Assert.Equal("watch-me", await fresh.ReadStringAsync("y"));
    }

    [Fact]
    public async Task RunMainAsync_serves_the_socket_named_on_the_command_line()
    {
        string dir = Path.Combine(Path.GetTempPath(), "vmmkit-xs-main-" + Guid.NewGuid().ToString("N")[..8]);
        string socket = Path.Combine(dir, "sock");
        using var cts = new CancellationTokenSource();
        var run = XenStoreDaemon.RunMainAsync([socket], TextWriter.Null, TextWriter.Null, null, cts.Token);
        for (int i = 0; i < 500 && !File.Exists(socket); i++)
            await Task.Delay(10);
        await using (var c = await XenStoreClient.ConnectAsync(socket))
            Assert.Equal("/local/domain/3", await c.GetDomainPathAsync(3));
        cts.Cancel();
        Assert.Equal(0, await run);
        Assert.False(File.Exists(socket));
        Directory.Delete(dir, true);
    }
}
