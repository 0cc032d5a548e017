using VmmKit.XenStore.Client;
using VmmKit.XenStore.Daemon;
using VmmKit.XenStore.Store;
using VmmKit.XenStore.Transports;
using VmmKit.XenStore.Wire;

namespace VmmKit.XenStore.Tests;

/// <summary>Dump, kill, restore (as Xen's live update): every node, permission and watch is back.</summary>
public class RestartTests
{
    internal static async Task<SortedDictionary<string, string>> SnapshotAsync(XenStoreClient c)
    {
        var result = new SortedDictionary<string, string>(StringComparer.Ordinal);
        var stack = new Stack<string>();
        stack.Push("/");
        while (stack.Count > 0)
        {
            string path = stack.Pop();
            var value = Convert.ToHexString(await c.ReadAsync(path));
            var perms = string.Join(",", await c.GetPermissionsAsync(path));
            result[path] = value + " " + perms;
            foreach (var child in await c.DirectoryAsync(path))
                stack.Push(path == "/" ? "/" + child : path + "/" + child);
        }
        return result;
    }

    [Fact]
    public async Task Save_kill_restore_brings_back_nodes_permissions_watches_and_quotas()
    {
        var ring = new GuestRing();

        var first = new XenStoreDaemon();
        var dom0 = new XenStoreClient(first.Connect());
        await dom0.IntroduceAsync(7, 0x777, 3);
        await dom0.MkdirAsync("/local/domain/7");
        await dom0.SetPermissionsAsync("/local/domain/7", [new XsPermission(7, XsAccess.None), new XsPermission(0, XsAccess.Read)]);
        await dom0.MkdirAsync("/vm");
        await dom0.SetPermissionsAsync("/vm", [new XsPermission(0, XsAccess.Read), new XsPermission(7, XsAccess.Both)]);
        await dom0.WriteAsync("/vm/uuid", "1234");
        await dom0.WriteAsync("/vm/bin", new byte[] { 0, 1, 2, 255 });
        await dom0.SetQuotaAsync("watches", 77);
        await dom0.SetTargetAsync(7, 7);

        ring.Attach(first, 7);
        await using var guest = new XenStoreClient(ring.Stream);
        await guest.WriteAsync("device/vbd/0/state", "4");
        var watch = guest.WatchAsync("device", "dev").GetAsyncEnumerator();
        Assert.True(await watch.MoveNextAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(30)));
        var watchVm = guest.WatchAsync("/vm", "vm").GetAsyncEnumerator();
        Assert.True(await watchVm.MoveNextAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(30)));
        var openTx = await guest.StartTransactionAsync();
        await guest.WriteAsync("device/pending", "x", openTx);

        var before = await SnapshotAsync(dom0);
        byte[] state = first.SaveState();

        // Kill the daemon: the guest's page (and its client) outlive it.
        await dom0.DisposeAsync();
        await first.DisposeAsync();

        await using var second = new XenStoreDaemon();
        second.RestoreState(state);
        ring.Attach(second, 7);

        await using var dom0b = new XenStoreClient(second.Connect());
        lock (second.Gate)
            Assert.Equal(1, second.Processor.WriteRate.OpenTransactions);
        Assert.Equal(before, await SnapshotAsync(dom0b));
        Assert.Equal(77, await dom0b.GetQuotaAsync("watches"));
        Assert.True(await dom0b.IsDomainIntroducedAsync(7));

        // The guest's watches still fire, with its relative path and token.
        await dom0b.WriteAsync("/local/domain/7/device/vbd/0/state", "5");
        Assert.True(await watch.MoveNextAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(30)));
        Assert.Equal(new XenStoreWatchEvent("device/vbd/0/state", "dev"), watch.Current);
        await dom0b.WriteAsync("/vm/uuid", "5678");
        Assert.True(await watchVm.MoveNextAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(30)));
        Assert.Equal(new XenStoreWatchEvent("/vm/uuid", "vm"), watchVm.Current);

        // The open transaction cannot commit its lost contents: EAGAIN, so the client retries.
        var e = await Assert.ThrowsAsync<XenStoreException>(() => guest.EndTransactionAsync(openTx, true));
        Assert.Equal(XsError.EAGAIN, e.Error);
        await guest.TransactAsync(async t => { await guest.WriteAsync("device/pending", "y", t); return 0; });
        Assert.Equal("y", await dom0b.ReadStringAsync("/local/domain/7/device/pending"));
        // The restored transaction counted as open for the write rate limit until it ended (wrl_ntransactions).
        lock (second.Gate)
            Assert.Equal(0, second.Processor.WriteRate.OpenTransactions);
        Assert.Equal("5678", await guest.ReadStringAsync("/vm/uuid"));
        await watch.DisposeAsync();
        await watchVm.DisposeAsync();
    }

    [Fact]
    public async Task Corrupt_state_is_rejected_cleanly()
    {
        await using var daemon = new XenStoreDaemon();
        Assert.Throws<InvalidDataException>(() => daemon.RestoreState(new byte[] { 1, 2, 3 }));
        var good = daemon.SaveState();
        Assert.Throws<InvalidDataException>(() => daemon.RestoreState(good.AsSpan(0, good.Length / 2)));
    }
}
