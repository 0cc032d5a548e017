using VmmKit.XenStore.Client;
using VmmKit.XenStore.Daemon;
using VmmKit.XenStore.Store;
using VmmKit.XenStore.Wire;

namespace VmmKit.XenStore.Tests;

/// <summary>Store semantics as xenstored implements them.</summary>
public class SemanticsTests
{
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

    internal static async Task<XenStoreWatchEvent> NextAsync(IAsyncEnumerator<XenStoreWatchEvent> e)
    {
        Assert.True(await e.MoveNextAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(10)));
        return e.Current;
    }

    [Fact]
    public async Task Write_creates_parents_and_directory_lists_children_in_creation_order()
    {
        await using var daemon = new XenStoreDaemon();
        await using var c = new XenStoreClient(daemon.Connect());
        await c.WriteAsync("/a/b/c", "x");
        await c.WriteAsync("/a/b/a", "y");
        Assert.Equal("", await c.ReadStringAsync("/a/b"));
        Assert.Equal(["c", "a"], await c.DirectoryAsync("/a/b"));
        Assert.Equal(["tool", "a"], await c.DirectoryAsync("/"));
        await c.MkdirAsync("/a/b/c");
        Assert.Equal("x", await c.ReadStringAsync("/a/b/c"));
        Assert.Equal(XsError.ENOENT, await ErrorOf(() => c.ReadAsync("/a/zz")));
        await c.RemoveAsync("/a/zz"); // missing node with an existing parent is fine
        Assert.Equal(XsError.ENOENT, await ErrorOf(() => c.RemoveAsync("/q/r")));
        Assert.Equal(XsError.EINVAL, await ErrorOf(() => c.RemoveAsync("/")));
        await c.RemoveAsync("/a");
        Assert.Equal(["tool"], await c.DirectoryAsync("/"));
    }

    [Fact]
    public async Task Values_may_hold_binary_data_and_nuls()
    {
        await using var daemon = new XenStoreDaemon();
        await using var c = new XenStoreClient(daemon.Connect());
        byte[] value = [0, 1, 2, 0, 255];
        await c.WriteAsync("/bin", value);
        Assert.Equal(value, await c.ReadAsync("/bin"));
    }

    [Fact]
    public async Task Path_rules_reject_bad_characters_slashes_and_lengths()
    {
        await using var daemon = new XenStoreDaemon();
        await using var c = new XenStoreClient(daemon.Connect());
        foreach (var bad in new[] { "/a b", "/a//b", "/a/", "/a.b", "@foo", "", "/\u00e9" })
            Assert.Equal(XsError.EINVAL, await ErrorOf(() => c.WriteAsync(bad, "v")));
        Assert.Equal(XsError.EINVAL, await ErrorOf(() => c.WriteAsync("/" + new string('x', XsConstants.AbsPathMax), "v")));
        await c.WriteAsync("/ok-_@/A9", "v");
    }

    [Fact]
    public async Task Relative_paths_resolve_under_the_domain_home_and_respect_the_relative_limit()
    {
        await using var daemon = new XenStoreDaemon();
        await using var dom0 = new XenStoreClient(daemon.Connect());
        await dom0.IntroduceAsync(3, 1234, 5);
        await dom0.MkdirAsync("/local/domain/3");
        await dom0.SetPermissionsAsync("/local/domain/3", [new XsPermission(3, XsAccess.None)]);
        await using var d3 = new XenStoreClient(daemon.Connect(3));
        await d3.WriteAsync("device/vif/0/state", "1");
        Assert.Equal("1", await dom0.ReadStringAsync("/local/domain/3/device/vif/0/state"));
        Assert.Equal("/local/domain/3", await d3.GetDomainPathAsync(3));
        Assert.Equal(XsError.EINVAL, await ErrorOf(() => d3.WriteAsync(new string('a', XsConstants.RelPathMax + 1), "v")));
    }

    [Fact]
    public async Task Permissions_owner_default_and_per_domain_entries()
    {
        await using var daemon = new XenStoreDaemon();
        await using var dom0 = new XenStoreClient(daemon.Connect());
        foreach (uint d in new uint[] { 1, 2 })
            await dom0.IntroduceAsync(d, 100 + d, 1);
        await using var d1 = new XenStoreClient(daemon.Connect(1));
        await using var d2 = new XenStoreClient(daemon.Connect(2));

        await dom0.WriteAsync("/shared/secret", "s");
        // Root-level nodes default to dom0-only: unprivileged writers cannot create under them.
        Assert.Equal(XsError.EACCES, await ErrorOf(() => d1.ReadAsync("/shared/secret")));
        Assert.Equal(XsError.EACCES, await ErrorOf(() => d1.WriteAsync("/shared/new", "x")));
        // Existence does not leak: a missing node under an unreadable parent is EACCES, not ENOENT.
        Assert.Equal(XsError.EACCES, await ErrorOf(() => d1.ReadAsync("/shared/missing")));

        await dom0.SetPermissionsAsync("/shared", [new XsPermission(0, XsAccess.Read), new XsPermission(1, XsAccess.Both)]);
        await dom0.SetPermissionsAsync("/shared/secret", [new XsPermission(0, XsAccess.None), new XsPermission(2, XsAccess.Read)]);
        Assert.Equal(XsError.EACCES, await ErrorOf(() => d1.ReadAsync("/shared/secret")));
        Assert.Equal("s", await d2.ReadStringAsync("/shared/secret"));
        Assert.Equal(XsError.EACCES, await ErrorOf(() => d2.WriteAsync("/shared/secret", "no")));
        Assert.Equal(XsError.ENOENT, await ErrorOf(() => d2.ReadAsync("/shared/missing")));

        // d1 may create under /shared and owns what it creates; the parent's entries are inherited.
        await d1.WriteAsync("/shared/mine", "m");
        var perms = await dom0.GetPermissionsAsync("/shared/mine");
        Assert.Equal([new XsPermission(1, XsAccess.Read), new XsPermission(1, XsAccess.Both)], perms);
        Assert.Equal("b1", perms[1].ToString());

        // The owner may change entries but not hand the node to someone else.
        await d1.SetPermissionsAsync("/shared/mine", [new XsPermission(1, XsAccess.None), new XsPermission(2, XsAccess.Read)]);
        Assert.Equal(XsError.EPERM, await ErrorOf(() => d1.SetPermissionsAsync("/shared/mine", [new XsPermission(2, XsAccess.None)])));
        Assert.Equal(XsError.EACCES, await ErrorOf(() => d2.SetPermissionsAsync("/shared/mine", [new XsPermission(1, XsAccess.Both)])));
        await dom0.SetPermissionsAsync("/shared/mine", [new XsPermission(2, XsAccess.None)]);
        Assert.Equal(XsError.EACCES, await ErrorOf(() => d1.ReadAsync("/shared/mine")));
        Assert.Equal("m", await d2.ReadStringAsync("/shared/mine"));
    }

    [Fact]
    public async Task Set_target_lets_a_domain_act_as_the_owner_of_another()
    {
        await using var daemon = new XenStoreDaemon();
        await using var dom0 = new XenStoreClient(daemon.Connect());
        await dom0.IntroduceAsync(7, 1, 1);
        await dom0.IntroduceAsync(8, 2, 1);
        await dom0.WriteAsync("/local/domain/7/x", "v");
        await dom0.SetPermissionsAsync("/local/domain/7/x", [new XsPermission(7, XsAccess.None)]);
        await using var d8 = new XenStoreClient(daemon.Connect(8));
        Assert.Equal(XsError.EACCES, await ErrorOf(() => d8.ReadAsync("/local/domain/7/x")));
        await dom0.SetTargetAsync(8, 7);
        await using var d8b = new XenStoreClient(daemon.Connect(8));
        Assert.Equal("v", await d8b.ReadStringAsync("/local/domain/7/x"));
        Assert.Equal(XsError.ENOENT, await ErrorOf(() => dom0.SetTargetAsync(8, 99)));
    }

    [Fact]
    public async Task Watches_fire_for_subtree_changes_with_tokens_and_relative_paths()
    {
        await using var daemon = new XenStoreDaemon();
        await using var dom0 = new XenStoreClient(daemon.Connect());
        await dom0.IntroduceAsync(4, 1, 1);
        await dom0.MkdirAsync("/local/domain/4");
        await dom0.SetPermissionsAsync("/local/domain/4", [new XsPermission(4, XsAccess.None)]);
        await using var d4 = new XenStoreClient(daemon.Connect(4));

        await using var abs = dom0.WatchAsync("/local/domain/4/dev", "T1").GetAsyncEnumerator();
        Assert.Equal(new XenStoreWatchEvent("/local/domain/4/dev", "T1"), await NextAsync(abs));
        await using var rel = d4.WatchAsync("dev", "rel").GetAsyncEnumerator();
        Assert.Equal(new XenStoreWatchEvent("dev", "rel"), await NextAsync(rel));

        await d4.WriteAsync("dev/a", "1");
        Assert.Equal(new XenStoreWatchEvent("/local/domain/4/dev/a", "T1"), await NextAsync(abs));
        Assert.Equal(new XenStoreWatchEvent("dev/a", "rel"), await NextAsync(rel));

        // Removing an ancestor reaches a watch on a node deleted with it (core.c delete_node fires each
        // deleted node for watches on exactly its path), as Xen's xenstored 4.17 does.
        await d4.WriteAsync("dev/a/b", "2");
        Assert.Equal(new XenStoreWatchEvent("/local/domain/4/dev/a/b", "T1"), await NextAsync(abs));
        await using var deep = dom0.WatchAsync("/local/domain/4/dev/a/b", "deep").GetAsyncEnumerator();
        Assert.Equal("/local/domain/4/dev/a/b", (await NextAsync(deep)).Path);
        await dom0.RemoveAsync("/local/domain/4/dev");
        Assert.Equal("/local/domain/4/dev/a/b", (await NextAsync(deep)).Path);
    }

    [Fact]
    public async Task Watch_events_are_filtered_by_read_permission()
    {
        await using var daemon = new XenStoreDaemon();
        await using var dom0 = new XenStoreClient(daemon.Connect());
        await dom0.IntroduceAsync(5, 1, 1);
        await dom0.WriteAsync("/pub/open", "x");
        await dom0.SetPermissionsAsync("/pub", [new XsPermission(0, XsAccess.Read)]);
        await dom0.SetPermissionsAsync("/pub/open", [new XsPermission(0, XsAccess.Read)]);
        await using var d5 = new XenStoreClient(daemon.Connect(5));
        await using var w = d5.WatchAsync("/pub", "p").GetAsyncEnumerator();
        Assert.Equal("/pub", (await NextAsync(w)).Path);
        // watch.c watch_permitted: the node, its old permissions or its parent must be readable. d5 sees the
        // creation (inherited readable perms), the perms change (old perms readable) and, because /pub is
        // readable, the write after that too; nothing below /secret; then /pub/open (Xen's xenstored 4.17
        // agrees). Each event is taken before the next change: identical events still queued are merged.
        await dom0.WriteAsync("/pub/hidden", "secret");
        Assert.Equal("/pub/hidden", (await NextAsync(w)).Path);
        await dom0.SetPermissionsAsync("/pub/hidden", [new XsPermission(0, XsAccess.None)]);
        Assert.Equal("/pub/hidden", (await NextAsync(w)).Path);
        await dom0.WriteAsync("/pub/hidden", "secret2");
        Assert.Equal("/pub/hidden", (await NextAsync(w)).Path);
        await dom0.WriteAsync("/secret/inner/node", "s");
        await dom0.WriteAsync("/pub/open", "z");
        Assert.Equal("/pub/open", (await NextAsync(w)).Path);
        await using var s5 = d5.WatchAsync("/secret", "s").GetAsyncEnumerator();
        Assert.Equal("/secret", (await NextAsync(s5)).Path);
        await dom0.WriteAsync("/secret/inner/node", "s2");
        await dom0.WriteAsync("/pub/open", "w");
        Assert.Equal("/pub/open", (await NextAsync(w)).Path);
    }

    [Fact]
    public async Task Special_watches_are_privileged_and_fire_on_introduce_and_release()
    {
        await using var daemon = new XenStoreDaemon();
        await using var dom0 = new XenStoreClient(daemon.Connect());
        await dom0.IntroduceAsync(9, 1, 1);
        await using var d9 = new XenStoreClient(daemon.Connect(9));
        // watch.c: anyone may register a special watch; only those allowed to read it (dom0) see it fire.
        await using var unprivileged = d9.WatchAsync(XsPath.IntroduceDomain, "d9").GetAsyncEnumerator();
        Assert.Equal(XsPath.IntroduceDomain, (await NextAsync(unprivileged)).Path);

        await using var intro = dom0.WatchAsync(XsPath.IntroduceDomain, "i").GetAsyncEnumerator();
        await using var rel = dom0.WatchAsync(XsPath.ReleaseDomain, "r").GetAsyncEnumerator();
        Assert.Equal(XsPath.IntroduceDomain, (await NextAsync(intro)).Path);
        Assert.Equal(XsPath.ReleaseDomain, (await NextAsync(rel)).Path);
        await dom0.IntroduceAsync(10, 2, 3);
        Assert.Equal(new XenStoreWatchEvent(XsPath.IntroduceDomain, "i"), await NextAsync(intro));
        Assert.True(await dom0.IsDomainIntroducedAsync(10));
        await dom0.ReleaseAsync(10);
        Assert.Equal(new XenStoreWatchEvent(XsPath.ReleaseDomain, "r"), await NextAsync(rel));
        Assert.False(await dom0.IsDomainIntroducedAsync(10));
        Assert.Equal(XsError.ENOENT, await ErrorOf(() => dom0.ReleaseAsync(10)));
        // dom0 is always introduced: introducing it again only rebinds its port (domain.c introduce_domain).
        await dom0.IntroduceAsync(0, 1, 1);
        Assert.Equal(XsError.EINVAL, await ErrorOf(() => dom0.ReleaseAsync(0)));

    }

    [Fact]
    public async Task Unprivileged_domains_cannot_use_privileged_operations()
    {
        await using var daemon = new XenStoreDaemon();
        await using var dom0 = new XenStoreClient(daemon.Connect());
        await dom0.IntroduceAsync(2, 1, 1);
        await using var d2 = new XenStoreClient(daemon.Connect(2));
        Assert.Equal(XsError.EACCES, await ErrorOf(() => d2.IntroduceAsync(3, 1, 1)));
        Assert.Equal(XsError.EACCES, await ErrorOf(() => d2.ReleaseAsync(2)));
        Assert.Equal(XsError.EACCES, await ErrorOf(() => d2.SetTargetAsync(2, 2)));
        Assert.Equal(XsError.EACCES, await ErrorOf(() => d2.ControlAsync("help")));
        Assert.Equal(XsError.EACCES, await ErrorOf(() => d2.SetQuotaAsync("nodes", 1)));
        Assert.Equal("/local/domain/2", await d2.GetDomainPathAsync(2));
    }

    [Fact]
    public async Task Transactions_are_isolated_and_conflicts_give_eagain()
    {
        await using var daemon = new XenStoreDaemon();
        await using var a = new XenStoreClient(daemon.Connect());
        await using var b = new XenStoreClient(daemon.Connect());
        await a.WriteAsync("/t/x", "0");
        var tx = await a.StartTransactionAsync();
        Assert.Equal("0", await a.ReadStringAsync("/t/x", tx));
        await a.WriteAsync("/t/x", "1", tx);
        await a.WriteAsync("/t/new/deep", "n", tx);
        Assert.Equal("0", await b.ReadStringAsync("/t/x"));
        Assert.Equal(XsError.ENOENT, await ErrorOf(() => b.ReadAsync("/t/new")));
        Assert.Equal("1", await a.ReadStringAsync("/t/x", tx));
        await a.EndTransactionAsync(tx, true);
        Assert.Equal("1", await b.ReadStringAsync("/t/x"));
        Assert.Equal("n", await b.ReadStringAsync("/t/new/deep"));

        var t1 = await a.StartTransactionAsync();
        await a.ReadAsync("/t/x", t1);
        await b.WriteAsync("/t/x", "2");
        await a.WriteAsync("/t/x", "3", t1);
        Assert.Equal(XsError.EAGAIN, await ErrorOf(() => a.EndTransactionAsync(t1, true)));
        Assert.Equal("2", await b.ReadStringAsync("/t/x"));

        var t2 = await a.StartTransactionAsync();
        await a.WriteAsync("/t/x", "aborted", t2);
        await a.EndTransactionAsync(t2, false);
        Assert.Equal("2", await b.ReadStringAsync("/t/x"));
        Assert.Equal(XsError.ENOENT, await ErrorOf(() => a.EndTransactionAsync(t2, true)));
    }

    [Fact]
    public async Task Transaction_watch_events_fire_only_on_commit()
    {
        await using var daemon = new XenStoreDaemon();
        await using var a = new XenStoreClient(daemon.Connect());
        await a.WriteAsync("/ev/one", "0");
        await a.WriteAsync("/ev/two", "0");
        await using var w = a.WatchAsync("/ev", "e").GetAsyncEnumerator();
        Assert.Equal("/ev", (await NextAsync(w)).Path);
        var tx = await a.StartTransactionAsync();
        await a.WriteAsync("/ev/one", "1", tx);
        await a.WriteAsync("/ev/two", "2");
        Assert.Equal("/ev/two", (await NextAsync(w)).Path);
        await a.EndTransactionAsync(tx, true);
        Assert.Equal("/ev/one", (await NextAsync(w)).Path);
    }

    [Fact]
    public async Task Quotas_limit_nodes_node_size_watches_transactions_and_permissions()
    {
        var options = new XenStoreDaemonOptions();
        options.Quotas.Nodes = 20;
        await using var daemon = new XenStoreDaemon(options);
        await using var dom0 = new XenStoreClient(daemon.Connect());
        await dom0.IntroduceAsync(6, 1, 1);
        await dom0.MkdirAsync("/local/domain/6");
        await dom0.SetPermissionsAsync("/local/domain/6", [new XsPermission(6, XsAccess.None)]);
        await using var d6 = new XenStoreClient(daemon.Connect(6));

        Assert.Equal(XsError.ENOSPC, await ErrorOf(() => d6.WriteAsync("big", new byte[2048])));
        await d6.WriteAsync("fits", new byte[1000]);
        int created = 0;
        XsError err = XsError.None;
        for (int i = 0; i < 40 && err == XsError.None; i++)
        {
            err = await ErrorOf(() => d6.WriteAsync($"n{i}", "v"));
            if (err == XsError.None)
                created++;
        }
        Assert.Equal(XsError.ENOSPC, err);
        Assert.Equal(18, created); // 20 nodes: /local/domain/6 (owned by 6), "fits" and 18 more

        // watch.c and transaction.c check the count before adding: quota + 1 fit (as in Xen's xenstored 4.17).
        for (int i = 0; i < 129; i++)
            await d6.WatchAsync($"w{i}", $"tok{i}").GetAsyncEnumerator().MoveNextAsync();
        Assert.Equal(XsError.E2BIG, await ErrorOf(async () => await d6.WatchAsync("w-last", "last").GetAsyncEnumerator().MoveNextAsync()));

        var txs = new List<XenStoreTransaction>();
        for (int i = 0; i < 11; i++)
            txs.Add(await d6.StartTransactionAsync());
        Assert.Equal(XsError.ENOSPC, await ErrorOf(() => d6.StartTransactionAsync()));

        Assert.Equal(XsError.ENOSPC, await ErrorOf(() => d6.SetPermissionsAsync("fits",
            Enumerable.Range(0, 6).Select(i => new XsPermission(i == 0 ? 6u : (uint)i, XsAccess.Read)).ToArray())));

        Assert.Equal(20, await dom0.GetQuotaAsync("nodes", 6));
        await dom0.SetQuotaAsync("nodes", 25, 6);
        Assert.Equal(25, await dom0.GetQuotaAsync("nodes", 6));
        Assert.Equal(20, await dom0.GetQuotaAsync("nodes"));
    }

    [Fact]
    public async Task Control_features_and_domain_queries()
    {
        await using var daemon = new XenStoreDaemon();
        await using var dom0 = new XenStoreClient(daemon.Connect());
        Assert.Contains("quota", await dom0.ControlAsync("help"));
        Assert.Equal("OK", await dom0.ControlAsync("check"));
        Assert.Equal(XsConstants.ServerFeatureReconnection | XsConstants.ServerFeatureError, await dom0.GetFeatureAsync());
        await dom0.IntroduceAsync(12, 1, 1);
        await dom0.SetFeatureAsync(12, 1);
        Assert.Equal(1u, await dom0.GetFeatureAsync(12));
        Assert.True(await dom0.IsDomainIntroducedAsync(0));
        await dom0.ResumeAsync(12);
        Assert.Equal(XsError.ENOENT, await ErrorOf(() => dom0.ResumeAsync(13)));
    }
}
