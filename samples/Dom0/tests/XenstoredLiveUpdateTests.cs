using VmmKit.TestSupport;
using VmmKit.XenStore.Client;
using VmmKit.XenStore.Store;
using VmmKit.XenStore.Wire;

namespace VmmKit.Dom0.Tests;

/// <summary>
/// xenstored's live update, process level: Debian's <c>xenstore-control live-update</c> makes the running
/// vmmkit-xenstored dump its state to <c>state_dump</c> and execve a new binary, which restores it (<c>-U</c>).
/// The old program is gone (the process image changes), yet every node, permission and watch is back and
/// no client — ours, Debian's <c>xenstore-watch</c>, the requester itself — loses its connection.
/// </summary>
public class XenstoredLiveUpdateTests
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(30);

    internal static async Task<SortedDictionary<string, string>> SnapshotAsync(XenStoreClient c)
    {
        var result = new SortedDictionary<string, string>(StringComparer.Ordinal);
        var stack = new Stack<string>();
        stack.Push("/");
        while (stack.Count > 0)
        {
            string path = stack.Pop();
            result[path] = Convert.ToHexString(await c.ReadAsync(path)) + " " + string.Join(",", await c.GetPermissionsAsync(path));
            foreach (var child in await c.DirectoryAsync(path))
                stack.Push(path == "/" ? "/" + child : path + "/" + child);
        }
        return result;
    }

    private static async Task PopulateAsync(XenstoredProcess d, XenStoreClient client)
    {
        var write = d.Tool(RequiredTool.Require("xenstore-write", "xenstore-utils"),
            "/vm/1/name", "guest", "/vm/1/memory", "262144", "/local/domain/5/device/vbd/768/state", "4");
        Assert.True(write.ExitCode == 0, write.Stderr);
        var chmod = d.Tool(RequiredTool.Require("xenstore-chmod", "xenstore-utils"), "/local/domain/5", "n5", "r0");
        Assert.True(chmod.ExitCode == 0, chmod.Stderr);
        await client.WriteAsync("/vm/1/blob", new byte[] { 0, 1, 2, 0xfe, 0xff });
        await client.SetPermissionsAsync("/vm/1", [new XsPermission(0, XsAccess.None), new XsPermission(5, XsAccess.Read), new XsPermission(7, XsAccess.Both)]);
        await client.SetQuotaAsync("watches", 99);
    }

    [Fact]
    public async Task Xenstore_control_live_update_replaces_the_process_and_keeps_nodes_permissions_and_watches()
    {
        var control = DebianTool.XenstoreControl();
        using var d = await XenstoredProcess.StartAsync();
        await using var client = await d.ConnectAsync();
        await PopulateAsync(d, client);
        var watch = client.WatchAsync("/vm", "vm-token").GetAsyncEnumerator();
        Assert.True(await watch.MoveNextAsync().AsTask().WaitAsync(Wait));
        var (watcher, lines) = d.StartWatch("/local/domain/5");
        try
        {
            Assert.Equal("/local/domain/5", await lines.ReadAsync().AsTask().WaitAsync(Wait));
            var before = await SnapshotAsync(client);
            string imageBefore = d.Image;
            Assert.EndsWith("dotnet", imageBefore);

            // Twice: from the dotnet-hosted daemon to the native launcher, then from that one to itself.
            for (int round = 0; round < 2; round++)
            {
                var lu = d.Tool(control, "live-update", "-t", "20", XenstoredProcess.AppHost);
                Assert.True(lu.ExitCode == 0, $"xenstore-control exit {lu.ExitCode}: {lu.Stderr}{lu.Stdout}");
                Assert.False(d.HasExited);
                Assert.Equal(XenstoredProcess.AppHost, d.Image);
                Assert.Equal("-U", d.CommandLine[^1]);
                Assert.Single(d.CommandLine, "-U");
                // lu_read_state removes the dump once it is read.
                Assert.False(File.Exists(Path.Combine(d.RunDirectory, "state_dump")));

                // The same connection sees the same store; so does a new one.
                Assert.Equal(before, await SnapshotAsync(client));
                await using (var fresh = await d.ConnectAsync())
                    Assert.Equal(before, await SnapshotAsync(fresh));
                Assert.Equal(99, await client.GetQuotaAsync("watches"));

                // Our watch and Debian's xenstore-watch still fire.
                string node = $"/vm/1/round{round}";
                await client.WriteAsync(node, "x");
                Assert.True(await watch.MoveNextAsync().AsTask().WaitAsync(Wait));
                Assert.Equal(new XenStoreWatchEvent(node, "vm-token"), watch.Current);
                await client.WriteAsync($"/local/domain/5/round{round}", "y");
                Assert.Equal($"/local/domain/5/round{round}", await lines.ReadAsync().AsTask().WaitAsync(Wait));
                before = await SnapshotAsync(client);
            }
            Assert.False(watcher.HasExited);
        }
        finally
        {
            watcher.Kill();
            await watch.DisposeAsync();
        }
        Assert.Equal(0, await d.TerminateAsync());
        Assert.False(File.Exists(d.SocketPath));
    }

    [Fact]
    public async Task Live_update_is_refused_while_a_transaction_stays_open_and_forced_it_fails_that_transaction()
    {
        var control = DebianTool.XenstoreControl();
        using var d = await XenstoredProcess.StartAsync();
        await using var client = await d.ConnectAsync();
        await client.WriteAsync("/counter", "1");
        var tx = await client.StartTransactionAsync();
        await client.WriteAsync("/counter", "2", tx);

        // lu.c: without -F, open transactions older than the timeout refuse the update, naming the domain.
        var refused = d.Tool(control, "live-update", "-t", "2", XenstoredProcess.AppHost);
        Assert.Equal(3, refused.ExitCode);
        Assert.Contains("Domains with long running transactions:", refused.Stderr);
        Assert.Contains("Domain 0:", refused.Stderr);
        Assert.EndsWith("dotnet", d.Image);
        // Nothing happened: the transaction is still good and a new session can begin.
        await client.EndTransactionAsync(tx, commit: true);
        Assert.Equal("2", await client.ReadStringAsync("/counter"));

        // With -F the update goes ahead after the timeout; the open transaction comes back failed (EAGAIN),
        // so a client's retry loop runs it again on the new daemon.
        var tx2 = await client.StartTransactionAsync();
        await client.WriteAsync("/counter", "3", tx2);
        var forced = d.Tool(control, "live-update", "-t", "1", "-F", XenstoredProcess.AppHost);
        Assert.True(forced.ExitCode == 0, forced.Stderr);
        Assert.Equal(XenstoredProcess.AppHost, d.Image);
        var e = await Assert.ThrowsAsync<XenStoreException>(() => client.EndTransactionAsync(tx2, commit: true));
        Assert.Equal(XsError.EAGAIN, e.Error);
        Assert.Equal("2", await client.ReadStringAsync("/counter"));
        await client.TransactAsync(async t =>
        {
            int n = int.Parse(await client.ReadStringAsync("/counter", t));
            await client.WriteAsync("/counter", (n + 1).ToString(), t);
            return n;
        });
        Assert.Equal("3", await client.ReadStringAsync("/counter"));
    }

    [Fact]
    public async Task Session_commands_answer_like_xenstored_and_a_failed_exec_keeps_the_daemon_serving()
    {
        using var d = await XenstoredProcess.StartAsync();
        await using var client = await d.ConnectAsync();
        await using var other = await d.ConnectAsync();
        await client.WriteAsync("/keep", "me");
        Assert.Contains("live-update", await client.ControlAsync("help"));

        Assert.Equal("Not in live-update session.", await client.ControlAsync("live-update", "-s", "-t", "1"));
        Assert.Equal("No live-update session active.", await client.ControlAsync("live-update", "-a"));
        Assert.Equal("File not accessible.", await client.ControlAsync("live-update", "-f", Path.Combine(d.Directory, "nope")));
        string plain = Path.Combine(d.Directory, "plain");
        await File.WriteAllTextAsync(plain, "not a program");
        Assert.Equal("File not executable.", await client.ControlAsync("live-update", "-f", plain));
        // -b/-d upload a stubdom kernel: not for a daemon.
        var e = await Assert.ThrowsAsync<XenStoreException>(() => client.ControlAsync("live-update", "-b", "4096"));
        Assert.Equal(XsError.EINVAL, e.Error);

        // A binary that disappears between -f and -s: execvp fails, the requester hears why, and the daemon
        // (restored in the same process) keeps every connection and node.
        // Only another vmmkit-xenstored may take over (Xen's xenstored 4.17 cannot run on the store it would get).
        Assert.Equal("Not a vmmkit-xenstored: live update to another XenStore daemon is not supported.",
            await client.ControlAsync("live-update", "-f", "/bin/true"));
        string doomed = Path.Combine(d.Directory, "vmmkit-xenstored-doomed");
        File.Copy("/bin/true", doomed);
        Assert.Equal("OK", await client.ControlAsync("live-update", "-f", doomed));
        Assert.Equal("live-update session already active.", await other.ControlAsync("live-update", "-f", doomed));
        Assert.Equal("Not in live-update session.", await other.ControlAsync("live-update", "-c", "x"));
        Assert.Equal("OK", await client.ControlAsync("live-update", "-c", d.SocketPath + " --rundir " + d.RunDirectory));
        File.Delete(doomed);
        Assert.Equal("Error activating new binary.", await client.ControlAsync("live-update", "-s", "-t", "5"));
        Assert.EndsWith("dotnet", d.Image);
        Assert.Equal("me", await client.ReadStringAsync("/keep"));
        Assert.Equal("me", await other.ReadStringAsync("/keep"));
        Assert.False(File.Exists(Path.Combine(d.RunDirectory, "state_dump")));

        // -a ends a session; a new one can then begin.
        string binary = XenstoredProcess.AppHost;
        Assert.Equal("OK", await client.ControlAsync("live-update", "-f", binary));
        Assert.Equal("OK", await other.ControlAsync("live-update", "-a"));
        Assert.Equal("OK", await other.ControlAsync("live-update", "-f", binary));
    }

    [Fact]
    public async Task Restart_flag_without_a_state_fails_and_sigterm_stops_cleanly()
    {
        string dir = Path.Combine(Path.GetTempPath(), "vmmkit-xsd-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(dir);
        try
        {
            var psi = new System.Diagnostics.ProcessStartInfo(XenstoredProcess.AppHost) { RedirectStandardError = true, UseShellExecute = false };
            foreach (var a in new[] { Path.Combine(dir, "socket"), "--rundir", dir, "-U" })
                psi.ArgumentList.Add(a);
            using var p = System.Diagnostics.Process.Start(psi)!;
            string err = await p.StandardError.ReadToEndAsync();
            await p.WaitForExitAsync();
            Assert.Equal(1, p.ExitCode);
            Assert.Contains("no state found after live-update", err);

            var bad = System.Diagnostics.Process.Start(new System.Diagnostics.ProcessStartInfo(XenstoredProcess.AppHost, "--bogus") { RedirectStandardError = true })!;
            await bad.WaitForExitAsync();
            Assert.Equal(2, bad.ExitCode);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }

        using var d = await XenstoredProcess.StartAsync();
        Assert.Equal(0, await d.TerminateAsync());
        Assert.False(File.Exists(d.SocketPath));
    }
}
