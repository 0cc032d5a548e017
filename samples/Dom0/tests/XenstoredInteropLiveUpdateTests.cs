using VmmKit.TestSupport;
using VmmKit.XenStore.Client;

namespace VmmKit.Dom0.Tests;

/// <summary>
/// Live update between Xen's own C xenstored 4.17 (Debian's xen-utils-4.17, run under the fake-Xen LD_PRELOAD
/// shim of packages/XenStore/tests/XenOracle) and vmmkit-xenstored, through xenstored's migration stream
/// (xenstore_state.h) in <c>state_dump</c>.
/// </summary>
public class XenstoredInteropLiveUpdateTests
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task Xen_xenstored_live_updates_to_vmmkit_xenstored_keeping_nodes_permissions_and_xenstore_watch()
    {
        var control = DebianTool.XenstoreControl();
        using var xen = await XenstoredProcess.StartUnderFakeXenAsync(DebianTool.Xenstored().Path, "-N", "-E", "500");
        Assert.EndsWith("/xenstored", xen.Image);
        var write = xen.Tool(RequiredTool.Require("xenstore-write", "xenstore-utils"),
            "/vm/1/name", "guest", "/vm/1/memory", "262144", "/local/domain/5/device/vbd/768/state", "4");
        Assert.True(write.ExitCode == 0, write.Stderr);
        var chmod = xen.Tool(RequiredTool.Require("xenstore-chmod", "xenstore-utils"), "/local/domain/5", "n5", "r0");
        Assert.True(chmod.ExitCode == 0, chmod.Stderr);
        await using var client = await XenStoreClient.ConnectAsync(xen.SocketPath);
        await client.SetPermissionsAsync("/vm/1", [new(0, XenStore.Store.XsAccess.None), new(5, XenStore.Store.XsAccess.Read)]);
        var (watcher, lines) = XenstoredProcess.StartWatch(xen.SocketPath, "/vm");
        try
        {
            Assert.Equal("/vm", await lines.ReadAsync().AsTask().WaitAsync(Wait));
            var before = await XenstoredLiveUpdateTests.SnapshotAsync(client);

            var lu = xen.Tool(control, "live-update", "-t", "20", XenstoredProcess.AppHost);
            Assert.True(lu.ExitCode == 0, $"xenstore-control exit {lu.ExitCode}: {lu.Stderr}{lu.Stdout}\n{xen.Log}");
            Assert.Equal(XenstoredProcess.AppHost, xen.Image);
            Assert.Equal(["-N", "-E", "500", "-U"], xen.CommandLine[1..]);
            Assert.False(File.Exists(Path.Combine(xen.RunDirectory, "state_dump")));

            // The same socket connection and a new one see the same nodes and permissions.
            Assert.Equal(before, await XenstoredLiveUpdateTests.SnapshotAsync(client));
            await using (var fresh = await XenStoreClient.ConnectAsync(xen.SocketPath))
                Assert.Equal(before, await XenstoredLiveUpdateTests.SnapshotAsync(fresh));
            // -E 500 from xenstored's argv is now our node quota.
            Assert.Equal(500, await client.GetQuotaAsync("nodes"));

            // xenstore-watch's watch came over with its connection.
            await client.WriteAsync("/vm/after", "x");
            Assert.Equal("/vm/after", await lines.ReadAsync().AsTask().WaitAsync(Wait));
            Assert.False(watcher.HasExited);
        }
        finally
        {
            watcher.Kill();
            watcher.Dispose();
        }
    }
}
