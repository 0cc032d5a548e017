using System.Net.Sockets;
using System.Text;
using VmmKit.XenStore.Client;
using VmmKit.XenStore.Daemon;
using VmmKit.XenStore.Store;
using VmmKit.XenStore.Wire;

namespace VmmKit.XenStore.Tests;

/// <summary>Hostile input: each case gets a clean error or is bounded, and everyone else keeps being served.</summary>
public class BadInputTests
{
    private static async Task AssertStillServing(XenStoreDaemon daemon)
    {
        await using var other = new XenStoreClient(daemon.Connect());
        await other.WriteAsync("/still/alive", "yes");
        Assert.Equal("yes", await other.ReadStringAsync("/still/alive"));
    }

    private static string ErrorName(byte[] payload) => Encoding.ASCII.GetString(payload).TrimEnd('\0');

    private static async Task<XsError> ErrorOf(Func<Task> action)
    {
        try
        {
            await action();
            return XsError.None;
        }
        catch (XenStoreException e)
        {
            return e.Error;
        }
    }

    [Fact]
    public async Task Short_header_then_close_is_dropped_quietly()
    {
        await using var daemon = new XenStoreDaemon();
        using (var raw = new RawConnection(daemon.Connect()))
            await raw.SendAsync(new byte[] { 2, 0, 0, 0, 1, 0, 0 });
        await AssertStillServing(daemon);
    }

    [Theory]
    [InlineData(4097u)]
    [InlineData(0xFFFFFFFFu)]
    [InlineData(0x80000000u)]
    public async Task Oversized_or_negative_length_ends_the_connection(uint length)
    {
        await using var d = new TestDaemon();
        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await socket.ConnectAsync(new UnixDomainSocketEndPoint(d.SocketPath));
        using var raw = new RawConnection(new NetworkStream(socket));
        var header = new byte[16];
        new XsHeader(XsMessageType.Read, 1, 0, length).Write(header);
        await raw.SendAsync(header);
        Assert.True(await raw.IsClosedAsync());
        await AssertStillServing(d.Daemon);
    }

    [Fact]
    public async Task Length_that_disagrees_with_the_payload_misframes_only_that_client()
    {
        await using var daemon = new XenStoreDaemon();
        using var raw = new RawConnection(daemon.Connect());
        // Announces 20 bytes but sends 6: the daemon waits for the rest, then the next header is eaten as
        // payload; the resulting junk gets error replies, never a crash.
        var f = RawConnection.Frame(XsMessageType.Read, 1, 0, RawConnection.Strings("/tool"));
        f[12] = 20;
        await raw.SendAsync(f);
        await raw.SendAsync(RawConnection.Frame(XsMessageType.Read, 2, 0, RawConnection.Strings("/tool")));
        var reply = await raw.ReceiveAsync();
        Assert.Equal(1u, reply.Header.RequestId);
        Assert.Equal(XsMessageType.Error, reply.Header.Type);
        Assert.Equal("EINVAL", ErrorName(reply.Payload));
        await AssertStillServing(daemon);
    }

    [Theory]
    [InlineData(20u)] // the removed XS_RESTRICT
    [InlineData(27u)] // XS_TYPE_COUNT
    [InlineData(15u)] // XS_WATCH_EVENT is not a request
    [InlineData(16u)] // XS_ERROR is not a request
    [InlineData(0xFFFFu)] // XS_INVALID
    [InlineData(0xDEADBEEFu)]
    public async Task Unknown_types_get_ENOSYS_with_the_request_id_echoed(uint type)
    {
        await using var daemon = new XenStoreDaemon();
        using var raw = new RawConnection(daemon.Connect());
        var reply = await raw.RoundTripAsync((XsMessageType)type, 0xCAFE, 0, RawConnection.Strings("/"));
        Assert.Equal(XsMessageType.Error, reply.Header.Type);
        Assert.Equal(0xCAFEu, reply.Header.RequestId);
        Assert.Equal("ENOSYS", ErrorName(reply.Payload));
        var ok = await raw.RoundTripAsync(XsMessageType.Read, 7, 0, RawConnection.Strings("/tool"));
        Assert.Equal(XsMessageType.Read, ok.Header.Type);
        Assert.Equal(7u, ok.Header.RequestId);
    }

    [Theory]
    [InlineData(XsMessageType.Read)]
    [InlineData(XsMessageType.Mkdir)]
    [InlineData(XsMessageType.Rm)]
    [InlineData(XsMessageType.Directory)]
    [InlineData(XsMessageType.GetPerms)]
    [InlineData(XsMessageType.Write)]
    [InlineData(XsMessageType.Watch)]
    [InlineData(XsMessageType.SetPerms)]
    [InlineData(XsMessageType.DirectoryPart)]
    [InlineData(XsMessageType.TransactionEnd)]
    [InlineData(XsMessageType.Introduce)]
    [InlineData(XsMessageType.GetDomainPath)]
    [InlineData(XsMessageType.SetTarget)]
    public async Task Unterminated_or_empty_arguments_are_EINVAL(XsMessageType type)
    {
        await using var daemon = new XenStoreDaemon();
        using var raw = new RawConnection(daemon.Connect());
        var payloads = new List<byte[]> { "/tool"u8.ToArray(), Array.Empty<byte>() };
        // WRITE's value and WATCH's token may legitimately follow the first string; SET_TARGET takes "/a"
        // and "/b" through atoi as dom0 and dom0 and ignores the rest (domain.c), which is fine.
        if (type is not XsMessageType.Write and not XsMessageType.Watch and not XsMessageType.SetTarget)
            payloads.Add("/a\0/b\0/c"u8.ToArray());
        foreach (var payload in payloads)
        {
            var reply = await raw.RoundTripAsync(type, 3, 0, payload);
            Assert.Equal(XsMessageType.Error, reply.Header.Type);
            Assert.Contains(ErrorName(reply.Payload), new[] { "EINVAL", "ENOENT" });
        }
        await AssertStillServing(daemon);
    }

    [Fact]
    public async Task Over_long_paths_values_and_invalid_characters_are_refused()
    {
        await using var daemon = new XenStoreDaemon();
        await using var dom0 = new XenStoreClient(daemon.Connect());
        await dom0.IntroduceAsync(3, 1, 1);
        await dom0.MkdirAsync("/local/domain/3");
        await dom0.SetPermissionsAsync("/local/domain/3", [new XsPermission(3, XsAccess.None)]);
        using var raw = new RawConnection(daemon.Connect(3));
        string longPath = "/" + string.Join('/', Enumerable.Repeat("abcdefgh", 400));
        var reply = await raw.RoundTripAsync(XsMessageType.Read, 1, 0, RawConnection.Strings(longPath));
        Assert.Equal("EINVAL", ErrorName(reply.Payload));
        reply = await raw.RoundTripAsync(XsMessageType.Write, 2, 0, [.. RawConnection.Strings("bad\u0001char"), .. "v"u8]);
        Assert.Equal("EINVAL", ErrorName(reply.Payload));
        reply = await raw.RoundTripAsync(XsMessageType.Write, 3, 0, [.. RawConnection.Strings("big"), .. new byte[4000]]);
        Assert.Equal("ENOSPC", ErrorName(reply.Payload));
        await AssertStillServing(daemon);
    }

    [Fact]
    public async Task Watches_on_unreadable_paths_never_report_changes()
    {
        await using var daemon = new XenStoreDaemon();
        await using var dom0 = new XenStoreClient(daemon.Connect());
        await dom0.IntroduceAsync(5, 1, 1);
        await dom0.WriteAsync("/secret/x", "0");
        using var raw = new RawConnection(daemon.Connect(5));
        var ack = await raw.RoundTripAsync(XsMessageType.Watch, 1, 0, RawConnection.Strings("/secret", "tok"));
        Assert.Equal(XsMessageType.Watch, ack.Header.Type);
        var initial = await raw.ReceiveAsync();
        Assert.Equal(XsMessageType.WatchEvent, initial.Header.Type);
        await dom0.WriteAsync("/secret/x", "1");
        await dom0.WriteAsync("/secret/y", "2");
        // The next thing this client sees is the reply to its own request, not an event.
        var reply = await raw.RoundTripAsync(XsMessageType.Read, 2, 0, RawConnection.Strings("/secret/x"));
        var next = await raw.ReceiveAsync(200).ContinueWith(t => t.IsCompletedSuccessfully ? t.Result.Header.Type : (XsMessageType?)null);
        Assert.Equal("EACCES", ErrorName(reply.Payload));
        Assert.Null(next);
    }

    [Fact]
    public async Task Special_watches_from_unprivileged_connections_register_but_over_long_names_are_EINVAL()
    {
        // watch.c check_watch_path: any "@" name up to XENSTORE_REL_PATH_MAX, for anyone (Xen's xenstored 4.17);
        // whether it ever fires is check_perms_special's business.
        await using var daemon = new XenStoreDaemon();
        using var raw = new RawConnection(daemon.Connect(8));
        foreach (var special in new[] { "@introduceDomain", "@releaseDomain", "@other" })
        {
            var reply = await raw.RoundTripAsync(XsMessageType.Watch, 1, 0, RawConnection.Strings(special, "t"));
            Assert.Equal(XsMessageType.Watch, reply.Header.Type);
        }
        var tooLong = await raw.RoundTripAsync(XsMessageType.Watch, 2, 0, RawConnection.Strings("@" + new string('x', XsConstants.RelPathMax), "t"));
        Assert.Equal("EINVAL", ErrorName(tooLong.Payload));
        await AssertStillServing(daemon);
    }

    [Fact]
    public async Task Watch_event_flood_to_a_client_that_never_reads_is_bounded()
    {
        await using var d = new TestDaemon();
        d.Daemon.Quotas.EventBacklogBytes = 64 * 1024;
        // A write stuck for any time counts as stopped reading (SlowReaderTests covers the default grace).
        d.Daemon.Quotas.StoppedReadingAfter = TimeSpan.Zero;
        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        socket.ReceiveBufferSize = 4096;
        await socket.ConnectAsync(new UnixDomainSocketEndPoint(d.SocketPath));
        using var sleeper = new RawConnection(new NetworkStream(socket));
        await sleeper.SendAsync(RawConnection.Frame(XsMessageType.Watch, 1, 0, RawConnection.Strings("/", "flood")));

        await using var writer = await d.ConnectAsync();
        var payload = new string('v', 1000);
        // Distinct nodes: identical events still queued would be dropped as duplicates (core.c send_event).
        for (int i = 0; i < 3000; i++)
            await writer.WriteAsync($"/flood/node{i}", payload);
        await AssertStillServing(d.Daemon);

        lock (d.Daemon.Gate)
        {
            var conn = d.Daemon.Processor.Connections.Single(c => c.Watches.Any(w => w.Token == "flood"));
            Assert.True(conn.Output.DroppedEvents > 0);
            Assert.True(conn.Output.PendingBytes <= 64 * 1024 + 8192);
        }
    }

    [Fact]
    public async Task Oversized_transactions_are_ENOSPC()
    {
        var options = new XenStoreDaemonOptions();
        options.Quotas.TransactionNodes = 50;
        options.Quotas.Nodes = 10_000;
        await using var daemon = new XenStoreDaemon(options);
        await using var dom0 = new XenStoreClient(daemon.Connect());
        await dom0.IntroduceAsync(4, 1, 1);
        await dom0.MkdirAsync("/local/domain/4");
        await dom0.SetPermissionsAsync("/local/domain/4", [new XsPermission(4, XsAccess.None)]);
        await using var d4 = new XenStoreClient(daemon.Connect(4));
        var tx = await d4.StartTransactionAsync();
        XsError err = XsError.None;
        for (int i = 0; i < 100 && err == XsError.None; i++)
            err = await ErrorOf(() => d4.WriteAsync($"n{i}", "v", tx));
        Assert.Equal(XsError.ENOSPC, err);
        // transaction.c: hitting the node quota dooms the transaction (trans->fail): END T is ENOMEM.
        Assert.Equal(XsError.ENOMEM, await ErrorOf(() => d4.EndTransactionAsync(tx, true)));
        Assert.Empty(await dom0.DirectoryAsync("/local/domain/4"));
        await AssertStillServing(daemon);
    }

    [Fact]
    public async Task Creating_and_deleting_inside_transactions_cannot_dodge_the_node_quota()
    {
        var options = new XenStoreDaemonOptions();
        options.Quotas.Nodes = 12;
        await using var daemon = new XenStoreDaemon(options);
        await using var dom0 = new XenStoreClient(daemon.Connect());
        await dom0.IntroduceAsync(4, 1, 1);
        foreach (var dir in new[] { "/local/domain/4/a", "/local/domain/4/b" })
        {
            await dom0.MkdirAsync(dir);
            await dom0.SetPermissionsAsync(dir, [new XsPermission(0, XsAccess.Both)]);
        }
        await using var d4 = new XenStoreClient(daemon.Connect(4));

        // Churn inside one transaction: creates inside it count at commit (Xen 4.17's create_node checks the
        // committed count, transaction_fix_domains the total at END T), so the commit fails and nothing lands.
        var tx = await d4.StartTransactionAsync();
        for (int round = 0; round < 5; round++)
        {
            for (int i = 0; i < 10; i++)
                await d4.WriteAsync($"/local/domain/4/a/n{i}", "v", tx);
            for (int i = 0; i < 10; i++)
                await d4.RemoveAsync($"/local/domain/4/a/n{i}", tx);
        }
        for (int i = 0; i < 13; i++)
            await d4.WriteAsync($"/local/domain/4/a/m{i}", "v", tx);
        Assert.Equal(XsError.ENOSPC, await ErrorOf(() => d4.EndTransactionAsync(tx, true)));
        Assert.Empty(await dom0.DirectoryAsync("/local/domain/4/a"));

        // Two transactions that each fit alone cannot both commit.
        var t1 = await d4.StartTransactionAsync();
        var t2 = await d4.StartTransactionAsync();
        for (int i = 0; i < 8; i++)
        {
            await d4.WriteAsync($"/local/domain/4/a/x{i}", "v", t1);
            await d4.WriteAsync($"/local/domain/4/b/y{i}", "v", t2);
        }
        await d4.EndTransactionAsync(t1, true);
        Assert.Equal(XsError.ENOSPC, await ErrorOf(() => d4.EndTransactionAsync(t2, true)));
        Assert.Equal(8, (await dom0.DirectoryAsync("/local/domain/4/a")).Count);
        Assert.Empty(await dom0.DirectoryAsync("/local/domain/4/b"));
    }

    [Fact]
    public async Task Reset_watches_inside_a_transaction_drops_every_transaction()
    {
        // domain.c do_reset_watches, as Xen's xenstored 4.17 answers (differential tests).
        await using var daemon = new XenStoreDaemon();
        using var raw = new RawConnection(daemon.Connect());
        var start = await raw.RoundTripAsync(XsMessageType.TransactionStart, 1, 0, [0]);
        uint tx = uint.Parse(Encoding.ASCII.GetString(start.Payload).TrimEnd('\0'));
        var reset = await raw.RoundTripAsync(XsMessageType.ResetWatches, 2, tx, [0]);
        Assert.Equal(XsMessageType.ResetWatches, reset.Header.Type);
        Assert.Equal(tx, reset.Header.TransactionId);
        var write = await raw.RoundTripAsync(XsMessageType.Write, 3, tx, [.. RawConnection.Strings("/r"), .. "1"u8]);
        Assert.Equal("ENOENT", ErrorName(write.Payload));
        var bad = await raw.RoundTripAsync(XsMessageType.Read, 5, 12345, RawConnection.Strings("/r"));
        Assert.Equal("ENOENT", ErrorName(bad.Payload));
        var nested = await raw.RoundTripAsync(XsMessageType.TransactionStart, 6, 0, [0]);
        uint tx2 = uint.Parse(Encoding.ASCII.GetString(nested.Payload).TrimEnd('\0'));
        var inner = await raw.RoundTripAsync(XsMessageType.TransactionStart, 7, tx2, [0]);
        Assert.Equal("EBUSY", ErrorName(inner.Payload));
    }

    [Fact]
    public async Task Very_deep_trees_are_handled_without_recursion()
    {
        await using var daemon = new XenStoreDaemon();
        await using var dom0 = new XenStoreClient(daemon.Connect());
        // The deepest path the limits allow: 1024 levels of "/a" (the path-length quota, 2048, binds dom0 too).
        string deep = string.Concat(Enumerable.Repeat("/a", XsConstants.RelPathMax / 2));
        await dom0.WriteAsync(deep, "bottom");
        Assert.Equal("bottom", await dom0.ReadStringAsync(deep));
        Assert.Equal(XsConstants.RelPathMax / 2 + 3, daemon.NodeCount);
        var state = daemon.SaveState();
        await using (var restored = new XenStoreDaemon())
        {
            restored.RestoreState(state);
            Assert.Equal(daemon.NodeCount, restored.NodeCount);
        }
        await using var w = dom0.WatchAsync(deep, "deep").GetAsyncEnumerator();
        Assert.True(await w.MoveNextAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(30)));
        await dom0.RemoveAsync("/a");
        Assert.True(await w.MoveNextAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(30)));
        Assert.Equal(deep, w.Current.Path);
        Assert.Equal(3, daemon.NodeCount);
        Assert.Equal(XsError.EINVAL, await ErrorOf(() => dom0.WriteAsync(deep + "/a", "too deep")));
    }

    [Fact]
    public async Task Permissions_do_not_survive_a_domain_id_being_reused()
    {
        await using var daemon = new XenStoreDaemon();
        await using var dom0 = new XenStoreClient(daemon.Connect());
        await dom0.IntroduceAsync(5, 1, 1);
        await dom0.WriteAsync("/vm/shared", "for five");
        await dom0.SetPermissionsAsync("/vm/shared", [new XsPermission(0, XsAccess.None), new XsPermission(5, XsAccess.Both)]);
        await dom0.WriteAsync("/vm/owned", "by five");
        await dom0.SetPermissionsAsync("/vm/owned", [new XsPermission(5, XsAccess.None)]);
        await dom0.SetPermissionsAsync("/vm", [new XsPermission(0, XsAccess.Read)]);
        await using (var d5 = new XenStoreClient(daemon.Connect(5)))
        {
            Assert.Equal("for five", await d5.ReadStringAsync("/vm/shared"));
            await d5.WriteAsync("/vm/owned", "changed by five");
        }
        await dom0.ReleaseAsync(5);
        // domain.c domain_tree_remove: the released domain's nodes are deleted; entries naming it elsewhere
        // stay listed but are ignored (XS_PERM_IGNORE), as Xen's xenstored 4.17 shows them.
        Assert.Equal([new XsPermission(0, XsAccess.None), new XsPermission(5, XsAccess.Both)], await dom0.GetPermissionsAsync("/vm/shared"));
        Assert.Equal(XsError.ENOENT, await ErrorOf(() => dom0.ReadAsync("/vm/owned")));

        await dom0.IntroduceAsync(5, 2, 2); // a new domain that happens to get id 5
        await using var newcomer = new XenStoreClient(daemon.Connect(5));
        Assert.Equal(XsError.EACCES, await ErrorOf(() => newcomer.ReadAsync("/vm/shared")));
        Assert.Equal(XsError.EACCES, await ErrorOf(() => newcomer.WriteAsync("/vm/shared", "hijack")));
        Assert.Equal(XsError.EACCES, await ErrorOf(() => newcomer.WriteAsync("/vm/owned", "hijack")));
        Assert.Equal(XsError.EACCES, await ErrorOf(() => newcomer.SetPermissionsAsync("/vm/owned", [new XsPermission(5, XsAccess.Both)])));
    }

    [Fact]
    public async Task Released_domain_loses_its_connection_watches_and_transactions()
    {
        await using var daemon = new XenStoreDaemon();
        await using var dom0 = new XenStoreClient(daemon.Connect());
        await dom0.MkdirAsync("/local/domain/11");
        await dom0.SetPermissionsAsync("/local/domain/11", [new XsPermission(11, XsAccess.None)]);
        var page = new VmmKit.XenStore.Transports.XenStoreMemoryRingPage();
        var guestKick = new RingTests.Kick();
        var binding = new VmmKit.XenStore.Transports.XenStoreRingBinding(page, guestKick);
        daemon.AttachDomain(11, binding);
        var guestStream = new VmmKit.XenStore.Transports.XenStoreRingStream(page, new RingTests.Kick { Target = binding.Stream }, VmmKit.XenStore.Transports.XenStoreRingRole.Client);
        guestKick.Target = guestStream;
        await using var guest = new XenStoreClient(guestStream);
        await guest.WriteAsync("data", "x");
        var tx = await guest.StartTransactionAsync();
        await dom0.ReleaseAsync(11);
        // Its nodes went with it (domain.c domain_tree_remove, as Xen's xenstored 4.17 does).
        Assert.Equal(XsError.ENOENT, await ErrorOf(() => dom0.ReadAsync("/local/domain/11/data")));
        await Task.Delay(50);
        lock (daemon.Gate)
            Assert.DoesNotContain(daemon.Processor.Connections, c => c.DomainId == 11);
        Assert.False(await dom0.IsDomainIntroducedAsync(11));
        await AssertStillServing(daemon);
    }
}
