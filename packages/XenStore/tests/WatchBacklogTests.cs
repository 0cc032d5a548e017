using VmmKit.XenStore.Client;
using VmmKit.XenStore.Daemon;
using VmmKit.XenStore.Store;

namespace VmmKit.XenStore.Tests;

/// <summary>
/// Watch events the client has received and its consumer has not taken yet. XSA-349: Linux's xenbus queued them
/// without bound, so a guest that kept changing nodes a Dom0 backend watched (its own frontend's) could exhaust Dom0's
/// memory. The daemon's own bounds do not help there, since the client reads every event off the connection at once.
/// </summary>
public class WatchBacklogTests
{
    [Fact]
    public async Task A_guest_making_20000_changes_below_a_watched_node_leaves_a_backlog_collapsed_into_one_event_for_the_watched_path()
    {
        await using var daemon = new XenStoreDaemon();
        await using var dom0 = new XenStoreClient(daemon.Connect());
        await dom0.IntroduceAsync(4, 1, 1);
        await dom0.MkdirAsync("/local/domain/4/device");
        await dom0.SetPermissionsAsync("/local/domain/4", [new XsPermission(4, XsAccess.None)]);
        await dom0.SetPermissionsAsync("/local/domain/4/device", [new XsPermission(4, XsAccess.None)]);
        await using var guest = new XenStoreClient(daemon.Connect(4));

        // A backend's watch on its frontend, whose consumer is busy while the guest writes.
        await using var backend = dom0.WatchAsync("/local/domain/4/device", "be").GetAsyncEnumerator();
        Assert.Equal("/local/domain/4/device", (await SemanticsTests.NextAsync(backend)).Path);
        // Each write names a node of its own (the daemon drops an event identical to one it still queues), and each node
        // goes again at once (the guest's quota of nodes).
        for (int i = 0; i < 10_000; i++)
        {
            await guest.WriteAsync(FormattableString.Invariant($"device/n{i}"), "1");
            await guest.RemoveAsync(FormattableString.Invariant($"device/n{i}"));
        }

        await guest.WriteAsync("device/last", "1");
        await dom0.ReadAsync("/local/domain/4/device/last");   // its reply comes after every event the writes fired

        // The consumer took nothing while some 20,000 events came, more than the client keeps for it: they were replaced
        // by one event for the watched path itself ("look again at the whole subtree"), and the next event is that one.
        Assert.Equal(4096, dom0.MaxPendingWatchEvents);
        Assert.Equal("/local/domain/4/device", (await SemanticsTests.NextAsync(backend)).Path);

        // After the consumer took it, events come one by one again.
        await guest.WriteAsync("device/after", "1");
        Assert.Equal("/local/domain/4/device/after", (await SemanticsTests.NextAsync(backend)).Path);
    }

    [Fact]
    public async Task Below_the_limit_every_event_comes_one_by_one_and_past_it_the_backlog_collapses_once()
    {
        await using var daemon = new XenStoreDaemon();
        await using var dom0 = new XenStoreClient(daemon.Connect()) { MaxPendingWatchEvents = 8 };
        await using var watch = dom0.WatchAsync("/w", "w").GetAsyncEnumerator();
        Assert.Equal("/w", (await SemanticsTests.NextAsync(watch)).Path);

        for (int i = 0; i < 8; i++)
            await dom0.WriteAsync(FormattableString.Invariant($"/w/a{i}"), "1");
        for (int i = 0; i < 8; i++)
            Assert.Equal(FormattableString.Invariant($"/w/a{i}"), (await SemanticsTests.NextAsync(watch)).Path);

        for (int i = 0; i < 9; i++)
            await dom0.WriteAsync(FormattableString.Invariant($"/w/b{i}"), "1");
        await dom0.WriteAsync("/w/c", "1");       // dropped too: the event for /w still waits
        Assert.Equal("/w", (await SemanticsTests.NextAsync(watch)).Path);
        await dom0.WriteAsync("/w/d", "1");
        Assert.Equal("/w/d", (await SemanticsTests.NextAsync(watch)).Path);
    }

    [Fact]
    public async Task The_limit_is_at_least_one_event()
    {
        await using var daemon = new XenStoreDaemon();
        await using var client = new XenStoreClient(daemon.Connect());
        Assert.Throws<ArgumentOutOfRangeException>(() => client.MaxPendingWatchEvents = 0);
    }
}
