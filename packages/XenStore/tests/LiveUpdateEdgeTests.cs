using System.Net.Sockets;
using VmmKit.XenStore.Client;
using VmmKit.XenStore.Daemon;
using VmmKit.XenStore.Store;
using VmmKit.XenStore.Transports;
using VmmKit.XenStore.Wire;

namespace VmmKit.XenStore.Tests;

/// <summary>Live update and restart edges: stuck clients, output not yet delivered, who may ask for it.</summary>
public class LiveUpdateEdgeTests
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task A_client_that_stopped_reading_is_disconnected_instead_of_holding_up_a_live_update()
    {
        await using var d = new TestDaemon();
        d.Daemon.Quotas.EventBacklogBytes = 4 * 1024 * 1024;
        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        socket.ReceiveBufferSize = 4096;
        await socket.ConnectAsync(new UnixDomainSocketEndPoint(d.SocketPath));
        using var sleeper = new RawConnection(new NetworkStream(socket));
        await sleeper.SendAsync(RawConnection.Frame(XsMessageType.Watch, 1, 0, RawConnection.Strings("/", "stuck")));
        await using var good = await d.ConnectAsync();
        var watch = good.WatchAsync("/other", "ok").GetAsyncEnumerator();
        Assert.True(await watch.MoveNextAsync().AsTask().WaitAsync(Wait));

        // Far more events than the kernel's socket buffers hold: a write to the sleeper stays pending.
        var value = new string('v', 2000);
        for (int i = 0; i < 1500; i++)
            await good.WriteAsync($"/flood/n{i % 20}", value);

        var started = DateTime.UtcNow;
        var state = await d.Daemon.LiveUpdateAsync().WaitAsync(Wait);
        Assert.True(DateTime.UtcNow - started >= XenStoreDaemon.HandoverWriteTimeout - TimeSpan.FromSeconds(1));

        await using var next = new XenStoreDaemon();
        next.RestoreState(state);
        using var stop = new CancellationTokenSource();
        var serving = next.RunAsync(d.SocketPath, stop.Token);
        // Only the reading client came over; it keeps its watch.
        Assert.Equal(1, next.ConnectionCount);
        await good.WriteAsync("/other/x", "1");
        Assert.True(await watch.MoveNextAsync().AsTask().WaitAsync(Wait));
        Assert.Equal(new XenStoreWatchEvent("/other/x", "ok"), watch.Current);
        await watch.DisposeAsync();
        stop.Cancel();
        await serving;
    }

    [Fact]
    public async Task Events_queued_for_a_detached_ring_survive_a_second_restart()
    {
        var ring = new GuestRing();
        await using var guest = new XenStoreClient(ring.Stream);

        var first = new XenStoreDaemon();
        await using (var dom0 = new XenStoreClient(first.Connect()))
        {
            await dom0.IntroduceAsync(9, 0x900, 4);
            await dom0.MkdirAsync("/local/domain/9");
            await dom0.SetPermissionsAsync("/local/domain/9", [new XsPermission(9, XsAccess.None)]);
        }
        ring.Attach(first, 9);
        await guest.WriteAsync("data/x", "0");
        var watch = guest.WatchAsync("data", "t").GetAsyncEnumerator();
        Assert.True(await watch.MoveNextAsync().AsTask().WaitAsync(Wait));
        var state = first.SaveState();
        await first.DisposeAsync();

        // The second daemon has the domain's connection and watch but not yet its ring: the event for
        // dom0's write waits in its queue, and goes into the next dump.
        var second = new XenStoreDaemon();
        second.RestoreState(state);
        await using (var dom0 = new XenStoreClient(second.Connect()))
            await dom0.WriteAsync("/local/domain/9/data/x", "1");
        state = second.SaveState();
        await second.DisposeAsync();

        await using var third = new XenStoreDaemon();
        third.RestoreState(state);
        ring.Attach(third, 9);
        Assert.True(await watch.MoveNextAsync().AsTask().WaitAsync(Wait));
        Assert.Equal(new XenStoreWatchEvent("data/x", "t"), watch.Current);
        await watch.DisposeAsync();
    }

    [Fact]
    public async Task Live_update_is_unknown_to_a_daemon_that_does_not_own_its_process()
    {
        await using var daemon = new XenStoreDaemon();
        await using var dom0 = new XenStoreClient(daemon.Connect());
        var e = await Assert.ThrowsAsync<XenStoreException>(() => dom0.ControlAsync("live-update", "-f", "/bin/true"));
        Assert.Equal(XsError.EINVAL, e.Error);
        Assert.DoesNotContain("live-update", await dom0.ControlAsync("help"));
        // CONTROL is for the privileged only.
        await using var guest = new XenStoreClient(daemon.Connect(3));
        var denied = await Assert.ThrowsAsync<XenStoreException>(() => guest.ControlAsync("live-update", "-a"));
        Assert.Equal(XsError.EACCES, denied.Error);
    }

    [Fact]
    public async Task Watches_count_against_the_domains_memory_quota()
    {
        var options = new XenStoreDaemonOptions();
        options.Quotas.Memory = 2000;
        await using var daemon = new XenStoreDaemon(options);
        await using var dom0 = new XenStoreClient(daemon.Connect());
        await dom0.IntroduceAsync(4, 0x400, 1);
        await dom0.MkdirAsync("/local/domain/4");
        await dom0.SetPermissionsAsync("/local/domain/4", [new XsPermission(4, XsAccess.None)]);
        await using var guest = new XenStoreClient(daemon.Connect(4));
        // Each watch accounts strlen(path) + strlen(token) = 18 + 400 bytes (watch.c add_watch).
        var token = new string('t', 400);
        using var raw = new RawConnection(daemon.Connect(4));
        uint req = 1;
        long before = MemoryIn(await dom0.ControlAsync("quota", "4"));
        var errors = new List<XsError>();
        for (int i = 0; i < 5; i++)
        {
            var (h, payload) = await raw.RoundTripAsync(XsMessageType.Watch, req++, 0, RawConnection.Strings($"/local/domain/4/w{i}", token));
            errors.Add(h.Type == XsMessageType.Error ? XsErrors.FromWireName(payload) : XsError.None);
        }
        Assert.Equal([XsError.None, XsError.None, XsError.None, XsError.None, XsError.ENOMEM], errors);
        Assert.Equal(before + 4 * 418, MemoryIn(await dom0.ControlAsync("quota", "4")));
        var (uh, _) = await raw.RoundTripAsync(XsMessageType.Unwatch, req++, 0, RawConnection.Strings("/local/domain/4/w0", token));
        Assert.Equal(XsMessageType.Unwatch, uh.Type);
        Assert.Equal(before + 3 * 418, MemoryIn(await dom0.ControlAsync("quota", "4")));
        // A node write now finds the watches' memory in use too.
        var (wh, wp) = await raw.RoundTripAsync(XsMessageType.Write, req++, 0, [.. RawConnection.Strings("/local/domain/4/big"), .. new byte[800]]);
        Assert.Equal(XsError.ENOMEM, XsErrors.FromWireName(wp));
        Assert.Equal(XsMessageType.Error, wh.Type);
    }

    [Fact]
    public async Task Permissions_of_the_special_names_survive_a_restart()
    {
        await using var first = new XenStoreDaemon();
        await using (var dom0 = new XenStoreClient(first.Connect()))
            await dom0.SetPermissionsAsync("@releaseDomain", [new XsPermission(0, XsAccess.None), new XsPermission(6, XsAccess.Read)]);
        var state = first.SaveState();

        await using var second = new XenStoreDaemon();
        second.RestoreState(state);
        await using var dom0b = new XenStoreClient(second.Connect());
        await dom0b.IntroduceAsync(7, 0x700, 2);
        // check_perms_special: domain 6 was given read on @releaseDomain before the restart, domain 5 never.
        await using var d6 = new XenStoreClient(second.Connect(6));
        await using var d5 = new XenStoreClient(second.Connect(5));
        var w6 = d6.WatchAsync("@releaseDomain", "r").GetAsyncEnumerator();
        var w5 = d5.WatchAsync("@releaseDomain", "r").GetAsyncEnumerator();
        Assert.True(await w6.MoveNextAsync().AsTask().WaitAsync(Wait));
        Assert.True(await w5.MoveNextAsync().AsTask().WaitAsync(Wait));
        await dom0b.ReleaseAsync(7);
        Assert.True(await w6.MoveNextAsync().AsTask().WaitAsync(Wait));
        Assert.Equal(new XenStoreWatchEvent("@releaseDomain", "r"), w6.Current);
        var next5 = w5.MoveNextAsync().AsTask();
        await d5.ReadStringAsync("/tool/xenstored").ContinueWith(_ => { }); // a round trip after the release
        Assert.False(next5.IsCompleted);
        await w6.DisposeAsync();
    }

    [Fact]
    public async Task A_live_update_answer_for_a_requester_that_went_away_is_dropped()
    {
        await using var first = new XenStoreDaemon();
        await using (var dom0 = new XenStoreClient(first.Connect()))
            await dom0.WriteAsync("/kept", "1");
        byte[] state;
        lock (first.Gate)
            state = XsStateSerializer.Save(first.Processor, null, new XsLiveUpdateReply(ConnectionId: 999, RequestId: 7, TransactionId: 0, Text: "OK"));

        await using var second = new XenStoreDaemon();
        second.RestoreState(state);
        await using var dom0b = new XenStoreClient(second.Connect());
        Assert.Equal("1", await dom0b.ReadStringAsync("/kept"));
    }

    private static long MemoryIn(string quotaReport) =>
        long.Parse(quotaReport.Split('\n').Single(l => l.StartsWith("memory ", StringComparison.Ordinal)).Split(':')[1]);

}
