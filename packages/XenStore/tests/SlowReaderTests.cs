using System.Net.Sockets;
using System.Text;
using VmmKit.XenStore.Client;
using VmmKit.XenStore.Daemon;
using VmmKit.XenStore.Store;
using VmmKit.XenStore.Wire;

namespace VmmKit.XenStore.Tests;

/// <summary>
/// Watch events and clients that read slowly or not at all: a reading client gets every event (core.c
/// send_event drops only duplicates, and for a domain whatever its memory quota cannot hold), a client that
/// stopped reading is bounded, and neither costs the other clients anything.
/// </summary>
public class SlowReaderTests
{
    private static byte[] S(params string[] parts) => RawConnection.Strings(parts);

    /// <summary>
    /// Sends WATCH and reads frames until its reply, so that every write made afterwards fires the watch (a WATCH still
    /// queued behind a busy or descheduled pump would miss writes made before it is handled); returns the paths of the
    /// watch events that came before the reply.
    /// </summary>
    private static async Task<List<string>> WatchAsync(RawConnection raw, string path, string token)
    {
        await raw.SendAsync(RawConnection.Frame(XsMessageType.Watch, 1, 0, S(path, token)));
        var early = new List<string>();
        while (true)
        {
            var frame = await raw.ReceiveAsync(60_000);
            if (frame.Header.Type == XsMessageType.Watch)
                return early;
            Assert.Equal(XsMessageType.WatchEvent, frame.Header.Type);
            early.Add(Encoding.ASCII.GetString(frame.Payload).Split('\0')[0]);
        }
    }

    /// <summary>
    /// Reads frames until <paramref name="events"/> watch events with the token arrived, counting the
    /// <paramref name="early"/> ones that came before the WATCH reply (or the time is up); returns the event paths.
    /// </summary>
    private static async Task<HashSet<string>> CollectEventsAsync(RawConnection raw, string token, int events, TimeSpan timeout, List<string> early)
    {
        var paths = new HashSet<string>(early, StringComparer.Ordinal);
        int count = early.Count;
        var deadline = DateTime.UtcNow + timeout;
        while (count < events && DateTime.UtcNow < deadline)
        {
            (XsHeader Header, byte[] Payload) frame;
            try
            {
                frame = await raw.ReceiveAsync((int)Math.Max(1, (deadline - DateTime.UtcNow).TotalMilliseconds));
            }
            catch (OperationCanceledException)
            {
                break;
            }
            if (frame.Header.Type != XsMessageType.WatchEvent)
                continue;
            var parts = Encoding.ASCII.GetString(frame.Payload).Split('\0');
            if (parts[1] != token)
                continue;
            count++;
            paths.Add(parts[0]);
        }
        Assert.Equal(events, count);
        return paths;
    }

    private static async Task WriteManyInOneTransactionAsync(XenStoreClient writer, string parent, int nodes)
    {
        var tx = await writer.StartTransactionAsync();
        for (int i = 0; i < nodes; i++)
            await writer.WriteAsync($"{parent}/n{i}", "v", tx);
        await writer.EndTransactionAsync(tx, commit: true);
    }

    [Fact]
    public async Task A_reading_dom0_socket_client_gets_every_event_of_a_10000_node_transaction()
    {
        // Issue 10 item 4: xenstored 4.17 queues every event for dom0 (its memory is never checked), so all
        // 10,001 arrive (the watch's own first event and one per node written).
        await using var d = new TestDaemon();
        await using var writer = await d.ConnectAsync();
        await writer.MkdirAsync("/big");
        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await socket.ConnectAsync(new UnixDomainSocketEndPoint(d.SocketPath));
        using var watcher = new RawConnection(new NetworkStream(socket));
        var early = await WatchAsync(watcher, "/big", "all");
        var reading = CollectEventsAsync(watcher, "all", 10_001, TimeSpan.FromSeconds(120), early);

        await WriteManyInOneTransactionAsync(writer, "/big", 10_000);

        var paths = await reading;
        Assert.Equal(10_001, paths.Count);
        lock (d.Daemon.Gate)
            Assert.All(d.Daemon.Processor.Connections, c => Assert.Equal(0, c.Output.DroppedEvents));
    }

    [Fact]
    public async Task A_reading_domU_ring_client_gets_every_event_its_memory_quota_holds()
    {
        // 10,001 events of about 30 bytes stay far below the 2.5 MiB memory quota a domain's queued output
        // counts against (send_event: domain_memory_add_chk), so a reading domU gets them all too.
        await using var daemon = new XenStoreDaemon();
        await using var dom0 = new XenStoreClient(daemon.Connect());
        await dom0.MkdirAsync("/big");
        await dom0.SetPermissionsAsync("/big", [new XsPermission(0, XsAccess.Read)]);
        var ring = new GuestRing();
        ring.Attach(daemon, 5);
        using var watcher = new RawConnection(ring.Stream);
        var early = await WatchAsync(watcher, "/big", "all");
        var reading = CollectEventsAsync(watcher, "all", 10_001, TimeSpan.FromSeconds(120), early);

        await WriteManyInOneTransactionAsync(dom0, "/big", 10_000);

        Assert.Equal(10_001, (await reading).Count);
    }

    /// <summary>A socket client that sends WATCH / and then never reads (tiny receive buffer).</summary>
    private static async Task<(Socket Socket, XsConnection Conn)> SleeperAsync(TestDaemon d, string token)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified) { ReceiveBufferSize = 4096 };
        await socket.ConnectAsync(new UnixDomainSocketEndPoint(d.SocketPath));
        await socket.SendAsync(RawConnection.Frame(XsMessageType.Watch, 1, 0, S("/", token)));
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (true)
        {
            lock (d.Daemon.Gate)
            {
                var c = d.Daemon.Processor.Connections.FirstOrDefault(c => c.Watches.Any(w => w.Token == token));
                if (c is not null)
                    return (socket, c);
            }
            Assert.True(DateTime.UtcNow < deadline, "the WATCH was never handled");
            await Task.Delay(10);
        }
    }

    [Fact]
    public async Task A_dom0_client_that_stopped_reading_keeps_only_the_backlog_and_is_served_again_when_it_reads()
    {
        var options = new XenStoreDaemonOptions();
        options.Quotas.EventBacklogBytes = 64 * 1024;
        options.Quotas.StoppedReadingAfter = TimeSpan.FromMilliseconds(200);
        await using var d = new TestDaemon(options);
        var (socket, conn) = await SleeperAsync(d, "sleep");
        using var _ = socket;
        await using var writer = await d.ConnectAsync();

        // Fill the socket until a write to the sleeper is stuck, then let it count as stopped.
        int n = 0;
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (conn.Output.PendingBytes == 0)
        {
            Assert.True(DateTime.UtcNow < deadline, "the sleeper's socket never filled");
            await writer.WriteAsync($"/fill/n{n++}", new string('v', 100));
        }
        await Task.Delay(400);
        Assert.Equal(0, conn.Output.DroppedEvents);
        int before = conn.Output.PendingBytes;

        for (int i = 0; i < 5000; i++)
            await writer.WriteAsync($"/flood/n{i}", "v");

        Assert.True(conn.Output.DroppedEvents > 0);
        Assert.True(conn.Output.PendingBytes <= Math.Max(before, 64 * 1024) + 64, $"{conn.Output.PendingBytes} bytes queued");

        // xenstored keeps such a connection: once it reads, it is answered.
        using var reader = new RawConnection(new NetworkStream(socket, ownsSocket: false));
        await reader.SendAsync(RawConnection.Frame(XsMessageType.Read, 77, 0, S("/fill/n0")));
        while (true)
        {
            var frame = await reader.ReceiveAsync(30_000);
            if (frame.Header.Type == XsMessageType.Read && frame.Header.RequestId == 77)
                break;
        }
    }

    [Fact]
    public async Task A_domU_that_stopped_reading_keeps_what_its_memory_quota_holds()
    {
        // send_event: an event that would take the receiving domain past its memory quota (nodes, watches and
        // queued output) is dropped; this happens whether or not the domain reads.
        var options = new XenStoreDaemonOptions();
        options.Quotas.Memory = 64 * 1024;
        await using var daemon = new XenStoreDaemon(options);
        await using var dom0 = new XenStoreClient(daemon.Connect());
        await dom0.MkdirAsync("/w");
        await dom0.SetPermissionsAsync("/w", [new XsPermission(0, XsAccess.Read)]);
        var ring = new GuestRing();
        ring.Attach(daemon, 5);
        using var guest = new RawConnection(ring.Stream);
        await guest.RoundTripAsync(XsMessageType.Watch, 1, 0, S("/w", "t"));
        XsConnection conn;
        lock (daemon.Gate)
            conn = daemon.Processor.Connections.Single(c => c.DomainId == 5);

        for (int i = 0; i < 5000; i++)
            await dom0.WriteAsync($"/w/n{i}", "v");

        Assert.True(conn.Output.DroppedEvents > 0);
        long memory;
        lock (daemon.Gate)
            memory = daemon.Processor.Store.MemoryOf(5);
        Assert.True(memory + conn.Output.OutstandingBytes <= 64 * 1024, $"{memory} + {conn.Output.OutstandingBytes}");
    }

    [Fact]
    public async Task A_stuck_domU_with_128_watches_costs_each_write_the_same_however_long_its_queue()
    {
        // Issue 10 item 6: the duplicate-event check walked the whole queue of a client that stopped reading for
        // every event (128 watches x thousands of queued frames per write, under the store lock). Its work per
        // write must not grow with the queue.
        await using var daemon = new XenStoreDaemon();
        await using var dom0 = new XenStoreClient(daemon.Connect());
        await dom0.MkdirAsync("/w");
        await dom0.SetPermissionsAsync("/w", [new XsPermission(0, XsAccess.Read)]);
        var ring = new GuestRing();
        ring.Attach(daemon, 5);
        using var guest = new RawConnection(ring.Stream);
        for (int i = 0; i < 128; i++)
            await guest.RoundTripAsync(XsMessageType.Watch, (uint)i + 1, 0, S("/w", $"t{i}"));
        // The guest stops reading here; its ring (1 KiB) fills with the first events.
        XsConnection conn;
        lock (daemon.Gate)
            conn = daemon.Processor.Connections.Single(c => c.DomainId == 5);

        long WorkOf(int from, int count)
        {
            long start = conn.Output.EventComparisons;
            for (int i = from; i < from + count; i++)
                dom0.WriteAsync($"/w/n{i}", "v").GetAwaiter().GetResult();
            return conn.Output.EventComparisons - start;
        }

        long early = WorkOf(0, 10);
        WorkOf(10, 1000);
        long late = WorkOf(1010, 10);
        Assert.True(conn.Output.PendingBytes > 64 * 1024, $"only {conn.Output.PendingBytes} bytes queued");
        Assert.True(late <= 10 * 128, $"{late / 10} comparisons per write with a long queue");
        Assert.True(late <= early + 10, $"{early} comparisons for 10 writes at first, {late} later");
    }

    [Fact]
    public async Task A_domU_that_stopped_reading_is_not_read_from_while_its_output_waits()
    {
        // xenstored's domain_can_read: an unprivileged domain whose replies and events are not yet written is not
        // read from (quota_req_outstanding), so a guest that sends requests and never takes the replies cannot
        // make the daemon queue without bound, even when the write that is stuck was started by another
        // client's event.
        await using var daemon = new XenStoreDaemon();
        await using var dom0 = new XenStoreClient(daemon.Connect());
        await dom0.MkdirAsync("/w");
        await dom0.SetPermissionsAsync("/w", [new XsPermission(0, XsAccess.Read)]);
        await dom0.WriteAsync("/w/big", new string('b', 2000));
        var ring = new GuestRing();
        ring.Attach(daemon, 5);
        using var guest = new RawConnection(ring.Stream);
        await guest.RoundTripAsync(XsMessageType.Watch, 1, 0, S("/w", "t"));
        XsConnection conn;
        lock (daemon.Gate)
            conn = daemon.Processor.Connections.Single(c => c.DomainId == 5);
        // Events from dom0's writes fill the 1 KiB ring: the write to the guest is stuck from now on.
        for (int i = 0; i < 100; i++)
            await dom0.WriteAsync($"/w/n{i}", "v");

        using var stop = new CancellationTokenSource();
        var sending = Task.Run(async () =>
        {
            for (uint i = 0; i < 300 && !stop.IsCancellationRequested; i++)
                await ring.Stream.WriteAsync(RawConnection.Frame(XsMessageType.Read, 100 + i, 0, S("/w/big")), stop.Token);
        });
        await Task.WhenAny(sending, Task.Delay(3000));
        long queued = conn.Output.OutstandingBytes;
        stop.Cancel();
        Assert.True(queued < 100 * 1024, $"{queued} bytes queued for a guest that does not read");
        await AssertStillServingAsync(daemon);
    }

    private static async Task AssertStillServingAsync(XenStoreDaemon daemon)
    {
        await using var other = new XenStoreClient(daemon.Connect());
        await other.WriteAsync("/still/alive", "yes");
        Assert.Equal("yes", await other.ReadStringAsync("/still/alive"));
    }

    [Fact]
    public async Task Directory_part_reads_its_offset_with_atoi()
    {
        // Issue 10 item 5: core.c send_directory_part "off = atoi(...)" into an unsigned int.
        await using var daemon = new XenStoreDaemon();
        await using var dom0 = new XenStoreClient(daemon.Connect());
        await dom0.MkdirAsync("/n/abcd");
        await dom0.MkdirAsync("/n/efgh");
        using var raw = new RawConnection(daemon.Connect());
        string Children(byte[] payload)
        {
            int nul = Array.IndexOf(payload, (byte)0);
            return Encoding.ASCII.GetString(payload, nul + 1, payload.Length - nul - 1).Replace('\0', '|');
        }
        var expected = new Dictionary<string, string>
        {
            ["5"] = "efgh||",
            ["-5"] = "|",
            [" 5"] = "efgh||",
            ["+5"] = "efgh||",
            ["4294967296"] = "abcd|efgh||",
            ["-4294967291"] = "efgh||",
            ["5x"] = "efgh||",
            ["x"] = "abcd|efgh||",
        };
        uint id = 1;
        foreach (var (offset, children) in expected)
        {
            var reply = await raw.RoundTripAsync(XsMessageType.DirectoryPart, id++, 0, S("/n", offset));
            Assert.Equal(XsMessageType.DirectoryPart, reply.Header.Type);
            Assert.True(children == Children(reply.Payload), $"offset \"{offset}\": {Children(reply.Payload)}");
        }
    }
}
