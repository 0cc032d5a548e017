using System.Diagnostics;
using System.Net.Sockets;
using VmmKit.XenStore.Client;
using VmmKit.XenStore.Daemon;
using VmmKit.XenStore.Store;
using VmmKit.XenStore.Wire;

namespace VmmKit.XenStore.Tests;

/// <summary>
/// Live update with socket clients (xenstored's lu_daemon.c): the old daemon hands its socket fds over, a
/// new daemon adopts them, and clients keep their connection and their watches.
/// </summary>
public class LiveUpdateTests
{
    private static async Task WaitForFileAsync(string path)
    {
        for (int i = 0; i < 1000 && !File.Exists(path); i++)
            await Task.Delay(10);
        Assert.True(File.Exists(path));
    }

    [Fact]
    public async Task Socket_clients_keep_their_connection_and_watches_across_a_live_update()
    {
        string dir = Path.Combine(Path.GetTempPath(), "vmmkit-xslu-" + Guid.NewGuid().ToString("N")[..12]);
        string path = Path.Combine(dir, "socket");
        var first = new XenStoreDaemon();
        using var stop1 = new CancellationTokenSource();
        var run1 = first.RunAsync(path, stop1.Token);
        await WaitForFileAsync(path);

        await using var watcher = await XenStoreClient.ConnectAsync(path);
        await using (var setup = await XenStoreClient.ConnectAsync(path))
        {
            await setup.WriteAsync("/live/a", "1");
            await setup.MkdirAsync("/live/p");
            await setup.SetPermissionsAsync("/live/p", [new XsPermission(5, XsAccess.Read), new XsPermission(6, XsAccess.Write)]);
            await setup.SetQuotaAsync("watches", 55);
        }
        var watch = watcher.WatchAsync("/live", "tok").GetAsyncEnumerator();
        Assert.True(await watch.MoveNextAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(30)));
        Assert.Equal(new XenStoreWatchEvent("/live", "tok"), watch.Current);

        // Debian's xenstore-watch (libxenstore) holds a watch on its own socket connection.
        string tool = VmmKit.TestSupport.RequiredTool.Require("xenstore-watch", "xenstore-utils");
        var psi = new ProcessStartInfo(tool) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add("-n");
        psi.ArgumentList.Add("3");
        psi.ArgumentList.Add("/live");
        psi.Environment["XENSTORED_PATH"] = path;
        psi.Environment.Remove("XENSTORE_DOMAIN_INTERFACE");
        using var proc = Process.Start(psi)!;
        try
        {
            Assert.Equal("/live", await proc.StandardOutput.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(30)));

            // A raw client that has sent only part of a request when the daemon is replaced.
            using var raw = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            await raw.ConnectAsync(new UnixDomainSocketEndPoint(path));
            var rawStream = new NetworkStream(raw, ownsSocket: false);
            var read = new RawConnection(rawStream);
            var frame = RawConnection.Frame(XsMessageType.Read, 42, 0, RawConnection.Strings("/live/a"));
            await read.SendAsync(frame[..10]);

            // Make sure the daemon has every connection (the raw one included) before the handover.
            for (int i = 0; i < 1000 && first.ConnectionCount < 3; i++)
                await Task.Delay(10);
            await Task.Delay(100);
            var before = await RestartTests.SnapshotAsync(watcher);

            byte[] state = await first.LiveUpdateAsync();
            await run1;
            await first.DisposeAsync();
            Assert.True(File.Exists(path), "the listening socket's file stays for the new daemon");

            await using var second = new XenStoreDaemon();
            second.RestoreState(state);
            Assert.Equal(3, second.ConnectionCount);
            using var stop2 = new CancellationTokenSource();
            var run2 = second.RunAsync(path, stop2.Token);

            // A new client comes in through the adopted listening socket.
            await using var writer = await XenStoreClient.ConnectAsync(path);
            Assert.Equal(before, await RestartTests.SnapshotAsync(writer));
            Assert.Equal(55, await writer.GetQuotaAsync("watches"));

            // The rest of the half-sent request is answered on the same connection.
            await read.SendAsync(frame[10..]);
            var (header, payload) = await read.ReplyAsync();
            Assert.Equal(XsMessageType.Read, header.Type);
            Assert.Equal(42u, header.RequestId);
            Assert.Equal("1"u8.ToArray(), payload);

            // A write through another client fires both watches on their original connections.
            await writer.WriteAsync("/live/a", "2");
            Assert.True(await watch.MoveNextAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(30)));
            Assert.Equal(new XenStoreWatchEvent("/live/a", "tok"), watch.Current);
            Assert.Equal("/live/a", await proc.StandardOutput.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(30)));
            Assert.Equal("2", await watcher.ReadStringAsync("/live/a"));
            await writer.WriteAsync("/live/b", "3");
            Assert.True(await watch.MoveNextAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(30)));
            Assert.Equal(new XenStoreWatchEvent("/live/b", "tok"), watch.Current);
            Assert.Equal("/live/b", await proc.StandardOutput.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(30)));
            Assert.True(proc.WaitForExit(30_000));
            Assert.Equal(0, proc.ExitCode);
            await watch.DisposeAsync();

            stop2.Cancel();
            await run2;
            Assert.False(File.Exists(path));
        }
        finally
        {
            if (!proc.HasExited)
                proc.Kill();
            try
            {
                Directory.Delete(dir, true);
            }
            catch (IOException)
            {
            }
        }
    }

    [Fact]
    public async Task Chained_live_updates_keep_a_watch_and_a_listener_not_yet_served_is_handed_on()
    {
        string dir = Path.Combine(Path.GetTempPath(), "vmmkit-xslu-" + Guid.NewGuid().ToString("N")[..12]);
        string path = Path.Combine(dir, "socket");
        try
        {
            var daemon = new XenStoreDaemon();
            var stop = new CancellationTokenSource();
            var run = daemon.RunAsync(path, stop.Token);
            await WaitForFileAsync(path);
            await using var watcher = await XenStoreClient.ConnectAsync(path);
            var watch = watcher.WatchAsync("/chain", "c").GetAsyncEnumerator();
            Assert.True(await watch.MoveNextAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(30)));

            for (int generation = 1; generation <= 3; generation++)
            {
                byte[] state = await daemon.LiveUpdateAsync();
                await run;
                await daemon.DisposeAsync();
                stop.Dispose();

                // An intermediate daemon that restores and is updated again before it ever runs RunAsync.
                var idle = new XenStoreDaemon();
                idle.RestoreState(state);
                state = await idle.LiveUpdateAsync();
                await idle.DisposeAsync();
                Assert.True(File.Exists(path));

                daemon = new XenStoreDaemon();
                daemon.RestoreState(state);
                stop = new CancellationTokenSource();
                run = daemon.RunAsync(path, stop.Token);
                Assert.False(run.IsCompleted);
                await using var writer = await XenStoreClient.ConnectAsync(path);
                await writer.WriteAsync("/chain/x", generation.ToString());
                Assert.True(await watch.MoveNextAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(30)));
                Assert.Equal(new XenStoreWatchEvent("/chain/x", "c"), watch.Current);
                Assert.Equal(generation.ToString(), await watcher.ReadStringAsync("/chain/x"));
            }
            await watch.DisposeAsync();
            stop.Cancel();
            await run;
            await daemon.DisposeAsync();
            stop.Dispose();
        }
        finally
        {
            try
            {
                Directory.Delete(dir, true);
            }
            catch (IOException)
            {
            }
        }
    }

    /// <summary>A plain state with its live-update tail replaced by one listener record naming <paramref name="fd"/>.</summary>
    private static byte[] StateWithListener(byte[] plain, int fd)
    {
        using var ms = new MemoryStream();
        using (var w = new BinaryWriter(ms))
        {
            // The tail of a plain record: no listeners (int), no sockets (int), no live-update reply (bool).
            w.Write(plain.AsSpan(0, plain.Length - 9));
            w.Write(1);
            w.Write("/nowhere");
            w.Write(fd);
            w.Write(0);
            w.Write(false);
        }
        return ms.ToArray();
    }

    [Fact]
    public async Task A_live_update_record_naming_anything_but_a_unix_socket_is_rejected_and_the_fd_left_alone()
    {
        await using var daemon = new XenStoreDaemon();
        byte[] plain = daemon.SaveState();
        await using (var fresh = new XenStoreDaemon())
            Assert.Throws<InvalidDataException>(() => fresh.RestoreState(StateWithListener(plain, -1)));

        // An open regular file: not adopted, so still open and usable afterwards.
        string file = Path.GetTempFileName();
        try
        {
            using var handle = File.OpenHandle(file, FileMode.Open, FileAccess.ReadWrite);
            int fd = (int)handle.DangerousGetHandle();
            await using (var fresh = new XenStoreDaemon())
                Assert.Throws<InvalidDataException>(() => fresh.RestoreState(StateWithListener(plain, fd)));
            RandomAccess.Write(handle, "still open"u8, 0);
        }
        finally
        {
            File.Delete(file);
        }

        // A connected socket named as a listener.
        var (a, b) = (new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified), (Socket?)null);
        string dir = Path.Combine(Path.GetTempPath(), "vmmkit-xsfd-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(dir);
        using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(Path.Combine(dir, "s")));
        listener.Listen(1);
        await a.ConnectAsync(new UnixDomainSocketEndPoint(Path.Combine(dir, "s")));
        b = await listener.AcceptAsync();
        await using (var fresh = new XenStoreDaemon())
            Assert.Throws<InvalidDataException>(() => fresh.RestoreState(StateWithListener(plain, (int)a.SafeHandle.DangerousGetHandle())));
        a.Send("x"u8);
        Assert.Equal(1, b.Receive(new byte[1]));
        a.Dispose();
        b.Dispose();
        Directory.Delete(dir, recursive: true);
    }
}
