using VmmKit.XenStore.Client;
using VmmKit.XenStore.Daemon;
using VmmKit.XenStore.Store;
using VmmKit.XenStore.Watches;

namespace VmmKit.XenStore.Tests;

/// <summary>
/// xenstored's migration stream (xenstore_state.h, as 4.17 writes it): our writer read back by our reader,
/// malformed streams rejected cleanly, and xenstored's command-line options. The real binary's stream is
/// exercised by samples/Dom0/tests (XenstoredInteropLiveUpdateTests).
/// </summary>
public class XenStateFormatTests
{
    private static async Task<XenStoreDaemon> PopulatedAsync()
    {
        var d = new XenStoreDaemon();
        await using var c = new XenStoreClient(d.Connect());
        await c.WriteAsync("/vm/1/name", "guest");
        await c.WriteAsync("/vm/1/blob", new byte[] { 0, 1, 2, 0xff });
        await c.WriteAsync("/local/domain/3/device", "");
        await c.SetPermissionsAsync("/local/domain/3", [new XsPermission(3, XsAccess.None), new XsPermission(0, XsAccess.Read), new XsPermission(7, XsAccess.Both)]);
        await c.SetPermissionsAsync("@releaseDomain", [new XsPermission(0, XsAccess.None), new XsPermission(3, XsAccess.Read)]);
        var p = d.Processor;
        lock (d.Gate)
        {
            var ring = p.AddConnection(XsConnectionKind.DomainRing, 3, null);
            var dom = p.GetOrAddDomain(3);
            dom.Connection = ring;
            dom.EventChannel = 9;
            p.AddWatch(ring, new XsWatch("/local/domain/3/device", "rel", Relative: true));
            p.AddWatch(ring, new XsWatch("@releaseDomain", "special", Relative: false));
            ring.Transactions[4] = new XsTransaction(4, ring.DomainId);
        }
        return d;
    }

    private static SortedDictionary<string, string> Nodes(XenStoreDaemon d)
    {
        lock (d.Gate)
            return new(d.Processor.Store.AllNodes.ToDictionary(
                n => n.Path, n => Convert.ToHexString(n.Value) + " " + string.Join(",", n.Perms) + " " + string.Join("/", n.Children)), StringComparer.Ordinal);
    }

    private static byte[] XenState(XenStoreDaemon d)
    {
        lock (d.Gate)
            return XsXenStateFormat.Save(d.Processor, [], null);
    }

    [Fact]
    public async Task Our_xenstored_stream_reads_back_nodes_permissions_special_names_rings_watches_and_transactions()
    {
        await using var d = await PopulatedAsync();
        var state = XenState(d);
        Assert.Equal("xenstore"u8.ToArray(), state[..8]);
        Assert.Equal(0, state.Length % 8);

        await using var next = new XenStoreDaemon();
        next.RestoreState(state);
        Assert.Equal(Nodes(d), Nodes(next));
        lock (next.Gate)
        {
            var p = next.Processor;
            Assert.Equal([new XsPermission(0, XsAccess.None), new XsPermission(3, XsAccess.Read)], p.SpecialPermissions["@releaseDomain"]);
            var ring = Assert.Single(p.Connections);
            Assert.Equal(XsConnectionKind.DomainRing, ring.Kind);
            Assert.Equal(3u, ring.DomainId);
            Assert.Same(ring, p.Domains[3].Connection);
            Assert.Equal(9u, p.Domains[3].EventChannel);
            Assert.Equal([new XsWatch("/local/domain/3/device", "rel", true), new XsWatch("@releaseDomain", "special", false)], ring.Watches);
            Assert.True(ring.Transactions[4].Failed);
        }
    }

    [Fact]
    public async Task Every_truncation_and_each_corrupted_field_of_a_xenstored_stream_is_InvalidDataException()
    {
        await using var d = await PopulatedAsync();
        var state = XenState(d);
        for (int n = 8; n < state.Length; n++)
        {
            await using var x = new XenStoreDaemon();
            Assert.Throws<InvalidDataException>(() => x.RestoreState(state.AsSpan(0, n)));
        }

        void Corrupt(Action<byte[]> change)
        {
            var bad = (byte[])state.Clone();
            change(bad);
            var x = new XenStoreDaemon();
            Assert.Throws<InvalidDataException>(() => x.RestoreState(bad));
            x.DisposeAsync().AsTask().Wait();
        }
        Corrupt(b => b[11] = 2);                                   // version 2
        Corrupt(b => b[12] = 1);                                   // big endian
        Corrupt(b => b[16] = 9);                                   // unknown record type
        Corrupt(b => b[20] = 7);                                   // length not a multiple of 8
        // The listening socket's fd names this test's stdin, which is no Unix listening socket.
        Corrupt(b => BitConverter.TryWriteBytes(b.AsSpan(24), 0));
        // A socket connection naming a file that is not a socket.
        using var file = File.OpenHandle(typeof(XenStateFormatTests).Assembly.Location);
        int fd = (int)file.DangerousGetHandle();
        Corrupt(b =>
        {
            int conn = 16 + 16;                                    // preamble + GLOBAL record
            b[conn + 8 + 4] = 1;                                   // conn_type socket
            BitConverter.TryWriteBytes(b.AsSpan(conn + 8 + 8), fd);
        });
        // A node before its parent: drop the first tree node ("/") by turning it into an unknown connection's.
        int root = IndexOf(state, "/\0"u8.ToArray());
        Corrupt(b => b[root - 16 - 8] = 0x55);
    }

    private static int IndexOf(byte[] haystack, byte[] needle)
    {
        for (int i = 0; i + needle.Length <= haystack.Length; i++)
        {
            if (haystack.AsSpan(i, needle.Length).SequenceEqual(needle) && haystack[i - 1] != (byte)'/')
                return i;
        }
        throw new InvalidOperationException("not found");
    }

    [Fact]
    public void Xenstoreds_options_are_accepted_and_its_quota_options_set_the_quotas()
    {
        Assert.True(XsDaemonCommandLine.TryParse(
            ["-N", "-E", "500", "-W7", "--perm-nb=4", "-Q", "memory=100000", "--quota", "outstanding=5", "-I", "off",
             "-T", "/tmp/trace", "-F", "/run/pid", "-D", "-P", "-R", "-K", "-V", "-q", "memory=9", "-w", "watch-event=20",
             "-S", "1024", "-t", "3", "-M", "512", "-U", "/tmp/sock"], out var cmd, out var error), error);
        Assert.True(cmd.LiveUpdate);
        Assert.Equal("/tmp/sock", cmd.SocketPath);
        Assert.Equal(500, cmd.Quotas.Nodes);
        Assert.Equal(7, cmd.Quotas.Watches);
        Assert.Equal(4, cmd.Quotas.Permissions);
        Assert.Equal(100000, cmd.Quotas.Memory);
        Assert.Equal(5, cmd.Quotas.Outstanding);
        Assert.Equal(1024, cmd.Quotas.NodeSize);
        Assert.Equal(3, cmd.Quotas.Transactions);
        Assert.Equal(512, cmd.Quotas.PathLength);
        Assert.True(XsDaemonCommandLine.TryParse(["-H"], out cmd, out _) && cmd.Help);
        Assert.False(XsDaemonCommandLine.TryParse(["-X"], out _, out _));
        Assert.False(XsDaemonCommandLine.TryParse(["-E"], out _, out _));
        Assert.False(XsDaemonCommandLine.TryParse(["-E", "many"], out _, out _));
        Assert.False(XsDaemonCommandLine.TryParse(["-Q", "nodes=5"], out _, out _));
        Assert.False(XsDaemonCommandLine.TryParse(["--no-fork=1"], out _, out _));
    }
}
