using VmmKit.XenStore.Tests.XenOracle;
using Xunit.Abstractions;
using T = VmmKit.XenStore.Wire.XsMessageType;

namespace VmmKit.XenStore.Tests;

/// <summary>
/// Differential tests against Xen's own xenstored 4.17 (Debian xen-utils-4.17) run under the fake-Xen
/// LD_PRELOAD shim: the same raw frames go to both daemons over equivalent connections (dom0 over the
/// Unix socket, domUs over introduced rings); every reply and every watch event must match.
/// </summary>
public class XenstoredDifferentialTests(ITestOutputHelper output)
{
    private static string S(params string[] parts) => string.Concat(parts.Select(p => p + "\0"));

    /// <summary>Domains 1 and 2 exist, have homes owned by themselves, are introduced as d1 and d2.</summary>
    private static async Task<XsDifferential> WithGuestsAsync()
    {
        var d = await XsDifferential.StartAsync();
        foreach (uint domid in new uint[] { 1, 2 })
        {
            d.CreateDomain(domid);
            await d.SendAsync("dom0", T.Mkdir, S($"/local/domain/{domid}"));
            await d.SendAsync("dom0", T.SetPerms, S($"/local/domain/{domid}", $"n{domid}"));
            await d.IntroduceAsync("dom0", $"d{domid}", domid);
        }
        return d;
    }

    /// <summary>
    /// Seeded random differential run (VMMKIT_XS_DIFF_SEED picks another seed): 3000 steps of mixed traffic
    /// from dom0 and two domUs, the same 3000 on every machine (a time bound would make a slow and a fast
    /// machine test different prefixes); the first divergence fails with the whole request history.
    /// </summary>
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public async Task Random_traffic_matches(int seedIndex)
    {
        int seed = int.TryParse(Environment.GetEnvironmentVariable("VMMKIT_XS_DIFF_SEED"), out int s) ? s + seedIndex : 20260 + seedIndex;
        await using var d = await WithGuestsAsync();
        await d.AddSocketAsync("dom0b");
        d.CreateDomain(3);
        await d.SendAsync("dom0", T.Write, "/local/domain/1/data\0d1");
        await d.SendAsync("dom0", T.SetPerms, S("/local/domain/1/data", "n1", "r2"));
        int steps = await new XsRandomWorkload(d, seed).RunAsync(TimeSpan.Zero, 3000, 3000);
        output.WriteLine($"seed {seed}: {steps} steps, replies and events identical");
    }

    [Fact]
    public async Task Path_rules()
    {
        await using var d = await WithGuestsAsync();
        string[] paths =
        [
            "", "/", "a", "/a", "a/b", "/a/b", "//", "/a//b", "a//b", "/a/", "a/", "/a b", "/a.b", "/a-b_c@d", "@a", "/@a",
            "/a/@b", "@releaseDomain", "@introduceDomain", "/a\x01", "/\x7f", "/a/./b", "/a/../b", "/ä",
            "/" + new string('x', 3070), "/" + new string('x', 3071), "/" + new string('x', 3072), "/" + new string('x', 4000),
            "x/" + new string('y', 2040), "x/" + new string('y', 2050),
        ];
        foreach (var conn in new[] { "dom0", "d1" })
        {
            foreach (var p in paths)
            {
                await d.SendAsync(conn, T.Write, p + "\0v");
                await d.SendAsync(conn, T.Read, S(p));
                await d.SendAsync(conn, T.Mkdir, S(p));
                await d.SendAsync(conn, T.Directory, S(p));
                await d.SendAsync(conn, T.GetPerms, S(p));
                await d.SendAsync(conn, T.Rm, S(p));
            }
        }
    }

    [Fact]
    public async Task Node_operations()
    {
        await using var d = await WithGuestsAsync();
        await d.SendAsync("dom0", T.Write, "/n/a/b/c\0abc");
        await d.SendAsync("dom0", T.Read, S("/n/a"));
        await d.SendAsync("dom0", T.Read, S("/n/a/b/c"));
        await d.SendAsync("dom0", T.Write, "/n/a/b/c\0");
        await d.SendAsync("dom0", T.Read, S("/n/a/b/c"));
        foreach (var child in new[] { "z", "m", "a2", "b", "A", "0" })
            await d.SendAsync("dom0", T.Mkdir, S("/n/" + child));
        await d.SendAsync("dom0", T.Mkdir, S("/n/z"));
        await d.SendAsync("dom0", T.Directory, S("/n"));
        await d.SendAsync("dom0", T.Directory, S("/n/a/b/c"));
        await d.SendAsync("dom0", T.Directory, S("/nope"));
        await d.SendAsync("dom0", T.DirectoryPart, S("/n", "0"));
        await d.SendAsync("dom0", T.DirectoryPart, S("/n", "3"));
        await d.SendAsync("dom0", T.DirectoryPart, S("/n", "100"));
        await d.SendAsync("dom0", T.DirectoryPart, S("/n", "x"));
        await d.SendAsync("dom0", T.DirectoryPart, S("/n"));
        await d.SendAsync("dom0", T.DirectoryPart, S("/nope", "0"));
        await d.SendAsync("dom0", T.Rm, S("/n/a"));
        await d.SendAsync("dom0", T.Rm, S("/n/a"));
        await d.SendAsync("dom0", T.Rm, S("/n/a/b"));
        await d.SendAsync("dom0", T.Rm, S("/nope/deeper"));
        await d.SendAsync("dom0", T.Write, "/bin\0\x01\x02\xff\0data");
        await d.SendAsync("dom0", T.Read, S("/bin"));
        await d.SendAsync("dom0", T.Write, "/big\0" + new string('v', 2000));
        await d.SendAsync("dom0", T.Read, S("/big"));
        await d.SendAsync("d1", T.Write, "data/x\0" + new string('v', 290));
        await d.SendAsync("d1", T.Write, "data/y\0" + new string('v', 400));
        await d.SendAsync("d1", T.Read, S("data/y"));
        await d.SendAsync("d1", T.Directory, S("data"));
        await d.SendAsync("d1", T.Rm, S("data"));
        await d.SendAsync("dom0", T.Directory, S("/local/domain/1"));
        await d.SendAsync("dom0", T.Rm, S("/"));
        await d.SendAsync("dom0", T.Directory, S("/"));
    }

    [Fact]
    public async Task Directory_part_offsets_are_read_with_atoi()
    {
        // core.c send_directory_part: "off = atoi(...)" into an unsigned int (issue 10 item 5).
        await using var d = await WithGuestsAsync();
        await d.SendAsync("dom0", T.Mkdir, S("/n/abcd"));
        await d.SendAsync("dom0", T.Mkdir, S("/n/efgh"));
        foreach (var offset in new[] { "-5", " 5", "+5", "4294967296", "-4294967291", "\t5", "5x", "0x5", "007", "-0", "9999999999999999999999", "-1", "2" })
            await d.SendAsync("dom0", T.DirectoryPart, S("/n", offset));
        await d.SendAsync("d1", T.DirectoryPart, S("/local/domain/1", "-5"));
        await d.SendAsync("d1", T.DirectoryPart, S("/local/domain/1", " 0"));
    }

    [Fact]
    public async Task A_transaction_of_10000_nodes_reaches_every_reading_watcher()
    {
        // Issue 10 item 4: xenstored 4.17 delivers every event of a large commit to a dom0 socket watcher that
        // reads (dom0's memory is never checked, its events never time out). A domU watcher is left out: xenstored
        // drops a domain's events still unwritten 20 s after they were queued, and its commit of 10,000 nodes
        // (send_event walks the queue for duplicates) takes about that long here, so what a domU gets depends on
        // the machine's speed (SlowReaderTests covers our daemon's domU case).
        await using var d = await XsDifferential.StartAsync();
        await d.AddSocketAsync("tool");
        await d.SendAsync("dom0", T.Mkdir, S("/big"));
        await d.SendAsync("tool", T.Watch, S("/big", "all"));
        await d.SendAsync("dom0", T.TransactionStart, S(""));
        for (int i = 0; i < 10_000; i++)
        {
            var (xen, ours) = await d.SendUncomparedAsync("dom0", T.Write, System.Text.Encoding.ASCII.GetBytes($"/big/n{i}\0v"), 1);
            Assert.Equal(xen, ours);
        }
        // The commit's reply, then both watchers' 10,000 events, compared one by one.
        d.Timeout = 600_000;
        var started = System.Diagnostics.Stopwatch.StartNew();
        await d.SendAsync("dom0", T.TransactionEnd, S("T"), 1);
        output.WriteLine($"commit and events: {started.Elapsed}");
    }

    [Fact]
    public async Task Permissions_and_owners()
    {
        await using var d = await WithGuestsAsync();
        await d.SendAsync("dom0", T.Write, "/p/secret\0s");
        await d.SendAsync("dom0", T.Write, "/p/open\0o");
        await d.SendAsync("dom0", T.SetPerms, S("/p/open", "n0", "r1"));
        await d.SendAsync("dom0", T.GetPerms, S("/p/open"));
        await d.SendAsync("d1", T.Read, S("/p/open"));
        await d.SendAsync("d2", T.Read, S("/p/open"));
        await d.SendAsync("d1", T.Read, S("/p/secret"));
        await d.SendAsync("d1", T.Read, S("/p/secret/child"));
        await d.SendAsync("d1", T.Read, S("/p/missing"));
        await d.SendAsync("d1", T.Write, "/p/open\0w");
        await d.SendAsync("d1", T.Write, "/p/open/sub\0w");
        await d.SendAsync("d1", T.GetPerms, S("/p/open"));
        await d.SendAsync("d1", T.GetPerms, S("/p/secret"));
        await d.SendAsync("d1", T.Directory, S("/p"));
        await d.SendAsync("dom0", T.SetPerms, S("/p/open", "b1", "w2"));
        await d.SendAsync("d1", T.Write, "/p/open\0both");
        await d.SendAsync("d2", T.Write, "/p/open\0write-only");
        await d.SendAsync("d2", T.Read, S("/p/open"));
        await d.SendAsync("d1", T.Write, "/p/open/child\0c");
        await d.SendAsync("d1", T.GetPerms, S("/p/open/child"));
        await d.SendAsync("d1", T.Mkdir, S("/p/open/dir"));
        await d.SendAsync("d1", T.GetPerms, S("/p/open/dir"));
        await d.SendAsync("d1", T.Rm, S("/p/open/dir"));
        // Owners: the owner may change the other entries but only the privileged change the owner.
        await d.SendAsync("d1", T.Write, "mine\0m");
        await d.SendAsync("d1", T.GetPerms, S("mine"));
        await d.SendAsync("d1", T.SetPerms, S("mine", "n1", "r2"));
        await d.SendAsync("d1", T.SetPerms, S("mine", "n2"));
        await d.SendAsync("d1", T.SetPerms, S("mine", "r1"));
        await d.SendAsync("d1", T.SetPerms, S("mine", "n0"));
        await d.SendAsync("d2", T.SetPerms, S("/local/domain/1/mine", "n2"));
        await d.SendAsync("d2", T.Read, S("/local/domain/1/mine"));
        await d.SendAsync("dom0", T.SetPerms, S("/local/domain/1/mine", "n2", "r1"));
        await d.SendAsync("d1", T.Read, S("mine"));
        await d.SendAsync("d1", T.Write, "mine\0no");
        await d.SendAsync("d2", T.Write, "/local/domain/1/mine\0yes");
        await d.SendAsync("d1", T.Rm, S("mine"));
        // Malformed permission lists.
        foreach (var perms in new[] { S(), S("x1"), S("n"), S("nfoo"), S("n1x"), S("n-1"), S("n99999"), S("n1", ""), S("n1", "r1", "r1"),
                     S("n1", "r2", "w2", "b2", "r0"), S("n1", "r2", "w2", "b2"), "n1", S("N1"), S("n 1"), S("n1", "z2") })
        {
            await d.SendAsync("dom0", T.SetPerms, S("/p/open") + perms);
            await d.SendAsync("dom0", T.GetPerms, S("/p/open"));
        }
        await d.SendAsync("dom0", T.SetPerms, S("/p/none", "n1"));
        // errno_from_parents: a missing node is ENOENT when its nearest parent is readable, whatever was needed.
        await d.SendAsync("dom0", T.Write, "/ro/x\0x");
        await d.SendAsync("dom0", T.SetPerms, S("/ro", "n0", "r1"));
        foreach (var conn in new[] { "d1", "d2" })
        {
            await d.SendAsync(conn, T.SetPerms, S("/ro/missing/deeper", "n1"));
            await d.SendAsync(conn, T.Rm, S("/ro/missing"));
            await d.SendAsync(conn, T.Rm, S("/ro/missing/deeper"));
            await d.SendAsync(conn, T.Read, S("/ro/missing"));
            await d.SendAsync(conn, T.Write, "/ro/missing\0y");
            await d.SendAsync(conn, T.Rm, S("/ro/x"));
            await d.SendAsync(conn, T.Directory, S("/ro/x/y"));
        }
        // A write-only parent: not readable, so a missing child is EACCES even for writing.
        await d.SendAsync("dom0", T.SetPerms, S("/ro", "n0", "w1", "b2"));
        foreach (var conn in new[] { "d1", "d2" })
        {
            await d.SendAsync(conn, T.Write, "/ro/new\0y");
            await d.SendAsync(conn, T.Mkdir, S("/ro/newdir/sub"));
            await d.SendAsync(conn, T.Write, "/ro\0y");
            await d.SendAsync(conn, T.Read, S("/ro/x"));
        }
        await d.SendAsync("dom0", T.SetPerms, S("@releaseDomain", "n0", "r1"));
        // An unprivileged SET_PERMS on a special name, or SET_PERMS on another "@" name: xenstored 4.17 answers with a stale errno (do_set_perms
        // returns errno, not set_perms_special's EACCES or EINVAL); ours says EACCES or EINVAL (README Known gaps). Not compared.
        await d.SendAsync("dom0", T.GetPerms, S("@releaseDomain"));
        await d.SendAsync("dom0", T.SetPerms, S("/p/open"));
    }

    /// <summary>The quotas both daemons run with (XsDifferential.QuotaOptions) as a domain reaches them.</summary>
    [Fact]
    public async Task Quotas_reachable_from_a_domain()
    {
        await using var d = await WithGuestsAsync();
        await d.SendAsync("d1", T.Write, "q\0v");
        foreach (int n in new[] { 3, 4, 5, 6 })
            await d.SendAsync("d1", T.SetPerms, S("q") + string.Concat(Enumerable.Range(0, n).Select(i => $"{(i == 0 ? 'n' : 'r')}{(i == 0 ? 1 : i % 3)}\0")));
        await d.SendAsync("dom0", T.SetPerms, S("/local/domain/1/q", "n1", "r0", "r2", "b0", "w2", "r1"));
        await d.SendAsync("d1", T.Write, "q\0again");
        // Node-size quota (300): values, and children names filling a parent.
        foreach (int size in new[] { 250, 259, 260, 268, 280 })
            await d.SendAsync("d1", T.Write, $"sized\0{new string('s', size)}");
        for (int i = 0; i < 12; i++)
            await d.SendAsync("d1", T.Mkdir, S($"names/{new string((char)('a' + i), 20)}"));
        // Node quota (30 per domain), then RM gives room back.
        for (int i = 0; i < 32; i++)
            await d.SendAsync("d1", T.Write, $"n/{i}\0v");
        await d.SendAsync("d1", T.Rm, S("n"));
        await d.SendAsync("d1", T.Write, "after\0v");
        // In a transaction: creations count against the domain at commit.
        await d.SendAsync("d2", T.TransactionStart, S(""));
        for (int i = 0; i < 32; i++)
            await d.SendAsync("d2", T.Write, $"t{i}\0v", 1);
        await d.SendAsync("d2", T.TransactionEnd, S("T"), 1);
        await d.SendAsync("dom0", T.Directory, S("/local/domain/2"));
    }

    [Fact]
    public async Task Transactions()
    {
        await using var d = await WithGuestsAsync();
        await d.SendAsync("dom0", T.Write, "/t/x\0" + "0");
        await d.SendAsync("dom0", T.TransactionStart, S(""));
        await d.SendAsync("dom0", T.Read, S("/t/x"), 1);
        await d.SendAsync("dom0", T.Write, "/t/x\0" + "1", 1);
        await d.SendAsync("dom0", T.Write, "/t/new\0n", 1);
        await d.SendAsync("dom0", T.Read, S("/t/new"));
        await d.SendAsync("dom0", T.Directory, S("/t"), 1);
        await d.SendAsync("dom0", T.TransactionEnd, S("T"), 1);
        await d.SendAsync("dom0", T.Read, S("/t/new"));
        await d.SendAsync("dom0", T.TransactionEnd, S("T"), 1);
        await d.SendAsync("dom0", T.TransactionEnd, S("T"));
        await d.SendAsync("dom0", T.TransactionEnd, S("F"));
        await d.SendAsync("dom0", T.Read, S("/t/x"), 77);
        // Conflict: another connection changes a node the transaction read.
        await d.SendAsync("d1", T.TransactionStart, S(""));
        await d.SendAsync("d1", T.Read, S("/t/x"), 1);
        await d.SendAsync("dom0", T.Write, "/t/x\0" + "2");
        await d.SendAsync("d1", T.Write, "data\0" + "d", 1);
        await d.SendAsync("d1", T.TransactionEnd, S("T"), 1);
        // Nested start, odd END payloads, aborts.
        await d.SendAsync("dom0", T.TransactionStart, S(""));
        await d.SendAsync("dom0", T.TransactionStart, S(""), 2);
        await d.SendAsync("dom0", T.TransactionEnd, S("X"), 2);
        await d.SendAsync("dom0", T.TransactionEnd, "T", 2);
        await d.SendAsync("dom0", T.TransactionEnd, S("T", "T"), 2);
        await d.SendAsync("dom0", T.TransactionEnd, S("F"), 2);
        await d.SendAsync("dom0", T.TransactionStart, S("junk"));
        await d.SendAsync("dom0", T.TransactionStart, S("a", "b"));
        // Transaction quota (3) and per-transaction node quota (20) for a domain.
        for (int i = 0; i < 4; i++)
            await d.SendAsync("d2", T.TransactionStart, S(""));
        for (int i = 0; i < 22; i++)
            await d.SendAsync("d2", T.Write, $"tq/n{i}\0v", 1);
        await d.SendAsync("d2", T.TransactionEnd, S("T"), 1);
        // Operations that are not allowed inside transactions, and deletes inside one.
        await d.SendAsync("dom0", T.TransactionStart, S(""));
        await d.SendAsync("dom0", T.Watch, S("/t", "tok"), 4);
        await d.SendAsync("dom0", T.Unwatch, S("/t", "tok"), 4);
        d.CreateDomain(3);
        await d.SendAsync("dom0", T.Introduce, S("3", "4096", "7"), 4);
        await d.SendAsync("dom0", T.GetDomainPath, S("1"), 4);
        await d.SendAsync("dom0", T.ResetWatches, S(""), 4);
        await d.SendAsync("dom0", T.Rm, S("/t"), 4);
        await d.SendAsync("dom0", T.Read, S("/t/x"), 4);
        await d.SendAsync("dom0", T.TransactionEnd, S("T"), 4);
        await d.SendAsync("dom0", T.Read, S("/t/x"));
    }

    [Fact]
    public async Task Watches()
    {
        await using var d = await WithGuestsAsync();
        await d.SendAsync("dom0", T.Watch, S("/", "root"));
        await d.SendAsync("dom0", T.Watch, S("/w", "abs"));
        await d.SendAsync("dom0", T.Watch, S("/w", "abs"));
        await d.SendAsync("d1", T.Watch, S("/w/a/b", "exact-child"));
        await d.SendAsync("dom0", T.Watch, S("/w", "abs2"));
        await d.SendAsync("dom0", T.Watch, S("rel", "r"));
        await d.SendAsync("d1", T.Watch, S("data", "d1rel"));
        await d.SendAsync("d1", T.Watch, S("/w", "d1abs"));
        await d.SendAsync("d2", T.Watch, S("/local/domain/1/data", "d2abs"));
        await d.SendAsync("dom0", T.Write, "/w/a/b\0x");
        await d.SendAsync("dom0", T.Write, "/w/a/b\0y");
        await d.SendAsync("dom0", T.SetPerms, S("/w/a/b", "n0", "r1"));
        await d.SendAsync("dom0", T.SetPerms, S("/w/a", "n0", "r1"));
        await d.SendAsync("dom0", T.Write, "/w/a/b\0z");
        await d.SendAsync("dom0", T.Write, "/local/domain/0/rel/x\0y");
        await d.SendAsync("d1", T.Write, "data/x\0y");
        await d.SendAsync("dom0", T.SetPerms, S("/local/domain/1/data/x", "n1", "r2"));
        await d.SendAsync("d1", T.Write, "data/x\0z");
        await d.SendAsync("dom0", T.Rm, S("/w"));
        await d.SendAsync("d1", T.Rm, S("data"));
        await d.SendAsync("dom0", T.Unwatch, S("/w", "abs"));
        await d.SendAsync("dom0", T.Unwatch, S("/w", "abs"));
        await d.SendAsync("dom0", T.Unwatch, S("/w", "nope"));
        await d.SendAsync("dom0", T.Unwatch, S("rel", "r"));
        await d.SendAsync("dom0", T.Unwatch, S("/local/domain/0/rel", "r"));
        // watch_permitted: an unreadable node's event still reaches those who may read its parent.
        await d.SendAsync("dom0", T.Write, "/pub/open\0x");
        await d.SendAsync("dom0", T.SetPerms, S("/pub", "n0", "r1"));
        await d.SendAsync("d1", T.Watch, S("/pub", "p"));
        await d.SendAsync("dom0", T.Write, "/pub/hidden\0s");
        await d.SendAsync("dom0", T.SetPerms, S("/pub/hidden", "n0"));
        await d.SendAsync("dom0", T.Write, "/pub/hidden\0s2");
        await d.SendAsync("dom0", T.Write, "/pub/hidden/deeper\0s3");
        await d.SendAsync("dom0", T.Rm, S("/pub/hidden"));
        // Bad watch paths and payloads.
        foreach (var p in new[] { S("", "t"), S("/a b", "t"), S("/x/", "t"), S("@other", "t"), S("/x"), "/x\0t", S("/x", "t", "extra") })
            await d.SendAsync("d2", T.Watch, p);
        // Special watches: privileged callers only see them fire.
        await d.SendAsync("dom0", T.Watch, S("@introduceDomain", "i"));
        await d.SendAsync("dom0", T.Watch, S("@releaseDomain", "r"));
        await d.SendAsync("d1", T.Watch, S("@introduceDomain", "i1"));
        await d.SendAsync("d1", T.Watch, S("@releaseDomain", "r1"));
        d.CreateDomain(3);
        await d.IntroduceAsync("dom0", "d3", 3);
        await d.SendAsync("dom0", T.Release, S("3"));
        // Watch quota (5) for a domain, then RESET_WATCHES drops them all.
        for (int i = 0; i < 7; i++)
            await d.SendAsync("d2", T.Watch, S($"/q{i}", "t"));
        await d.SendAsync("d2", T.ResetWatches, "\0");
        await d.SendAsync("d2", T.Watch, S("/q", "t"));
        await d.SendAsync("dom0", T.Write, "/q/x\0y");
        await d.SendAsync("d2", T.ResetWatches, S("junk"));
        await d.SendAsync("dom0", T.Write, "/q/x\0z");
    }

    [Fact]
    public async Task Domain_messages()
    {
        await using var d = await WithGuestsAsync();
        foreach (var id in new[] { "0", "1", "2", "3", "7", "abc", "", "-1", "32752", "65535", "0x10", " 1", "1x" })
        {
            await d.SendAsync("dom0", T.GetDomainPath, S(id));
            await d.SendAsync("dom0", T.IsDomainIntroduced, S(id));
            await d.SendAsync("d1", T.GetDomainPath, S(id));
        }
        await d.SendAsync("dom0", T.GetDomainPath, "1");
        await d.SendAsync("d1", T.IsDomainIntroduced, S("1"));
        // Unprivileged callers may not manage domains.
        await d.SendAsync("d1", T.Introduce, S("5", "4096", "7"));
        await d.SendAsync("d1", T.Release, S("2"));
        await d.SendAsync("d1", T.SetTarget, S("1", "2"));
        await d.SendAsync("d1", T.Resume, S("1"));
        // SET_TARGET: d1 acts with d2's rights on d2's nodes.
        await d.SendAsync("d1", T.Read, S("/local/domain/2"));
        await d.SendAsync("dom0", T.SetTarget, S("1", "2"));
        await d.SendAsync("d1", T.Read, S("/local/domain/2"));
        await d.SendAsync("d1", T.Write, "/local/domain/2/by-target\0x");
        await d.SendAsync("d1", T.GetPerms, S("/local/domain/2/by-target"));
        await d.SendAsync("dom0", T.SetTarget, S("1", "9"));
        await d.SendAsync("dom0", T.SetTarget, S("1"));
        await d.SendAsync("dom0", T.SetTarget, S("9", "1"));
        await d.SendAsync("dom0", T.Resume, S("1"));
        await d.SendAsync("dom0", T.Resume, S("9"));
        await d.SendAsync("dom0", T.Resume, S("0"));
        // INTRODUCE and RELEASE argument checks (domain 4 exists, so xenstored can map its ring).
        d.CreateDomain(4);
        foreach (var args in new[] { S("4"), S("4", "4096"), S("4", "4096", "0"), S("4", "4096", "x"), S("4", "4096", "7", "extra"),
                     S("0", "4096", "7"), S("abc", "4096", "7"), S("4", "x", "-1") })
            await d.SendAsync("dom0", T.Introduce, args);
        await d.SendAsync("dom0", T.Introduce, S("1", "4096", "8"));
        foreach (var args in new[] { S("0"), S("9"), S("abc"), S("1", "x") })
            await d.SendAsync("dom0", T.Release, args);
        // RELEASE of a domain that is nobody's SET_TARGET (xenstored 4.17 keeps a target's connection
        // referenced, so releasing it leaves it introduced: not imitated, README Known gaps).
        d.CreateDomain(3);
        await d.SendAsync("dom0", T.Mkdir, S("/local/domain/3"));
        await d.SendAsync("dom0", T.SetPerms, S("/local/domain/3", "n3", "r1"));
        await d.IntroduceAsync("dom0", "d3", 3);
        await d.SendAsync("d3", T.Write, "mine\0x");
        await d.SendAsync("dom0", T.IsDomainIntroduced, S("3"));
        await d.SendAsync("dom0", T.Release, S("3"));
        await d.SendAsync("dom0", T.IsDomainIntroduced, S("3"));
        await d.SendAsync("dom0", T.Release, S("3"));
        await d.SendAsync("dom0", T.GetPerms, S("/local/domain/3"));
        await d.SendAsync("dom0", T.GetPerms, S("/local/domain/3/mine"));
    }

    /// <summary>
    /// XSA-322 as xenstored 4.17 decides it, per access (domain.c chk_domain_generation): an entry naming a
    /// domain counts only while the domain has a struct not younger than the node. After a RELEASE, a
    /// SET_PERMS naming the domain (here one that fails) allocates a new struct stamped with the current
    /// generation, so the node written last before it (the root here) grants again, older ones do not, and
    /// nodes created from a parent read while the entry was stale inherit it stale.
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Stale_permission_entries_are_decided_per_access(bool referencedAgain)
    {
        await using var d = await WithGuestsAsync();
        d.CreateDomain(3);
        await d.IntroduceAsync("dom0", "d3", 3);
        await d.SendAsync("dom0", T.Write, "/r\0x");
        await d.SendAsync("dom0", T.SetPerms, S("/r", "n0", "r3"));
        await d.SendAsync("dom0", T.SetPerms, S("/", "n0", "r3"));
        await d.SendAsync("dom0", T.Release, S("3"));
        if (referencedAgain)
            await d.SendAsync("dom0", T.SetPerms, S("/nonexist", "n0", "r3"));
        await d.SendAsync("dom0", T.Write, "/q/b\0x");
        await d.SendAsync("dom0", T.Write, "/r/q/b\0x");
        await d.IntroduceAsync("dom0", "d3", 3);
        foreach (var p in new[] { "/", "/q", "/q/b", "/r", "/r/q", "/r/q/b" })
        {
            string reply = await d.SendAsync("d3", T.Read, S(p));
            Assert.Equal(referencedAgain && !p.StartsWith("/r", StringComparison.Ordinal), reply.StartsWith($"{T.Read} ", StringComparison.Ordinal));
        }
    }

    /// <summary>
    /// core.c delete_node reads each child only when the walk reaches it: a transaction whose copy of /t
    /// lists k while k itself was removed outside creates k again and so lists it twice; RM of /t then
    /// deletes k and finds it gone the second time (EIO).
    /// </summary>
    [Fact]
    public async Task Rm_in_a_transaction_reads_children_as_it_walks()
    {
        await using var d = await WithGuestsAsync();
        await d.AddSocketAsync("dom0b");
        await d.SendAsync("dom0", T.Write, "/t/k\0x");
        await d.SendAsync("dom0", T.TransactionStart, S(""));
        await d.SendAsync("dom0", T.Directory, S("/t"), 1);
        await d.SendAsync("dom0b", T.Rm, S("/t/k"));
        await d.SendAsync("dom0", T.Write, "/t/k\0y", 1);
        await d.SendAsync("dom0", T.Directory, S("/t"), 1);
        Assert.EndsWith("\"EIO|\"", await d.SendAsync("dom0", T.Rm, S("/t"), 1));
        await d.SendAsync("dom0", T.TransactionEnd, S("T"), 1);
    }

    /// <summary>
    /// Why zero-length payloads are left out of the comparison: once a domain has talked over its ring, an
    /// empty READ makes xenstored 4.17 fail an assertion and exit (from a domU's ring too, a guest-triggered
    /// crash); ours answers EINVAL and goes on (README Known gaps).
    /// </summary>
    [Fact]
    public async Task Zero_length_payload_aborts_xenstored_4_17_but_not_ours()
    {
        await using var d = await XsDifferential.StartAsync();
        d.CreateDomain(1);
        await d.SendAsync("dom0", T.Mkdir, S("/local/domain/1"));
        await d.SendAsync("dom0", T.SetPerms, S("/local/domain/1", "n1"));
        await d.IntroduceAsync("dom0", "d1", 1);
        var (xen, ours) = await d.SendUncomparedAsync("dom0", T.Read, []);
        Assert.Equal("closed", xen);
        Assert.True(await d.Xen.WaitForExitAsync());
        Assert.Contains("consider_message: Assertion", d.Xen.Log);
        Assert.Equal($"{T.Error} req=4 tx=0 \"EINVAL|\"", ours);
    }

    [Fact]
    public async Task Malformed_payloads_and_unknown_types()
    {
        await using var d = await WithGuestsAsync();
        foreach (var conn in new[] { "dom0", "d1" })
        {
            // One-argument requests unterminated or with extra strings are left out: xenstored 4.17 answers
            // them with a stale errno (README Known gaps); only the empty string is compared.
            foreach (var type in new[] { T.Read, T.Mkdir, T.Rm, T.Directory, T.GetPerms })
                await d.SendAsync(conn, type, "\0");
            foreach (var type in new[] { T.Write, T.DirectoryPart, T.SetPerms, T.Watch, T.Unwatch })
            {
                await d.SendAsync(conn, type, "\0");
                await d.SendAsync(conn, type, "/m");
                await d.SendAsync(conn, type, S("/m", "x", "y"));
            }
            foreach (var type in new[] { T.WatchEvent, T.Error, T.RestrictRemoved, (T)27, (T)99, (T)0xfffe })
            {
                await d.SendAsync(conn, type, S("/m"));
            }
        }
    }

    /// <summary>
    /// transaction.c do_transaction_end: the node counts of the domains a transaction changed are checked
    /// (transaction_fix_domains: ENOSPC once the count would reach the quota) before the generations (EAGAIN).
    /// </summary>
    [Fact]
    public async Task Transaction_end_checks_node_counts_before_conflicts()
    {
        await using var d = await WithGuestsAsync();
        for (int i = 0; i < 15; i++)
            await d.SendAsync("d2", T.Write, $"pre{i}\0v");
        // Exactly to the quota (30 with its home).
        await d.SendAsync("d2", T.TransactionStart, S(""));
        for (int i = 0; i < 14; i++)
            await d.SendAsync("d2", T.Write, $"t{i}\0v", 1);
        await d.SendAsync("d2", T.TransactionEnd, S("T"), 1);
        await d.SendAsync("dom0", T.Directory, S("/local/domain/2"));
        // Over the quota and in conflict.
        await d.SendAsync("d2", T.TransactionStart, S(""));
        await d.SendAsync("d2", T.Read, S("pre0"), 2);
        for (int i = 0; i < 16; i++)
            await d.SendAsync("d2", T.Write, $"u{i}\0v", 2);
        await d.SendAsync("dom0", T.Write, "/local/domain/2/pre0\0changed");
        await d.SendAsync("d2", T.TransactionEnd, S("T"), 2);
        await d.SendAsync("dom0", T.Directory, S("/local/domain/2"));
        // A privileged connection's commit is not checked (chk_quota needs an unprivileged one).
        await d.SendAsync("dom0", T.TransactionStart, S(""));
        for (int i = 0; i < 3; i++)
            await d.SendAsync("dom0", T.Write, $"/local/domain/2/by-dom0-{i}\0v", 1);
        Assert.StartsWith("TransactionEnd", await d.SendAsync("dom0", T.TransactionEnd, S("T"), 1), StringComparison.Ordinal);
        await d.SendAsync("d2", T.Write, "one-more\0v");
        await d.SendAsync("dom0", T.Directory, S("/local/domain/2"));
    }

    /// <summary>
    /// A node a transaction gave to a domain that is released before the commit (the domain still exists):
    /// xenstored 4.17 commits it (transaction_fix_domains allocates the domain's struct again), and the domain
    /// introduced again owns it.
    /// </summary>
    [Fact]
    public async Task Transaction_committed_after_release_of_the_owner()
    {
        await using var d = await WithGuestsAsync();
        d.CreateDomain(3);
        await d.SendAsync("dom0", T.Mkdir, S("/local/domain/3"));
        await d.SendAsync("dom0", T.SetPerms, S("/local/domain/3", "n3"));
        await d.IntroduceAsync("dom0", "d3", 3);
        await d.SendAsync("dom0", T.TransactionStart, S(""));
        await d.SendAsync("dom0", T.Write, "/t3\0x", 1);
        await d.SendAsync("dom0", T.SetPerms, S("/t3", "n3", "r1"), 1);
        await d.SendAsync("dom0", T.Write, "/local/domain/3/inner\0x", 1);
        await d.SendAsync("dom0", T.Release, S("3"));
        await d.SendAsync("dom0", T.TransactionEnd, S("T"), 1);
        await d.SendAsync("dom0", T.GetPerms, S("/t3"));
        await d.SendAsync("d1", T.Read, S("/t3"));
        await d.SendAsync("dom0", T.Mkdir, S("/local/domain/3"));
        await d.SendAsync("dom0", T.SetPerms, S("/local/domain/3", "n3"));
        await d.IntroduceAsync("dom0", "d3", 3);
        await d.SendAsync("d3", T.Write, "/t3\0mine");
        await d.SendAsync("d3", T.GetPerms, S("/t3"));
        await d.SendAsync("d1", T.Read, S("/t3"));
    }

    /// <summary>
    /// core.c do_set_perms: an owner that is no domain (domain_alloc_permrefs marks it XS_PERM_IGNORE) is
    /// ENOENT before the path is looked at, for "@" names too; other entries naming no domain are kept, ignored.
    /// </summary>
    [Fact]
    public async Task Set_perms_refuses_an_owner_that_is_no_domain_first()
    {
        await using var d = await WithGuestsAsync();
        await d.SendAsync("dom0", T.Write, "/sp\0x");
        foreach (var conn in new[] { "dom0", "d1" })
        {
            foreach (var owner in new[] { "n32752", "n32753", "b65535", "n70000" })
            {
                foreach (var path in new[] { "@introduceDomain", "@releaseDomain", "@other", "/sp", "/local/domain/1", "/local/domain/2", "/none/x", "a//b" })
                    await d.SendAsync(conn, T.SetPerms, S(path, owner, "r1"));
            }
            await d.SendAsync(conn, T.SetPerms, S("/local/domain/1/own", "n1", "r32752", "b70000"));
        }
        await d.SendAsync("dom0", T.Write, "/local/domain/1/own\0x");
        await d.SendAsync("d1", T.SetPerms, S("own", "n1", "r32752", "b70000", "r2"));
        await d.SendAsync("d1", T.GetPerms, S("own"));
        await d.SendAsync("d2", T.Read, S("/local/domain/1/own"));
    }

    /// <summary>control.c do_control: the commands xenstored 4.17 has, their argument counts and replies.</summary>
    [Fact]
    public async Task Control_commands()
    {
        await using var d = await WithGuestsAsync();
        string[][] commands =
        [
            ["check"], ["check", "x"], ["log", "on"], ["log", "off"], ["log"], ["log", "x"], ["print", "hello"], ["print"],
            ["print", "a", "b"], ["quota"], ["quota", "9"], ["quota", "1", "2"],
            ["quota", "set", "nodes", "40"], ["quota"], ["quota", "set", "nodes"], ["quota", "set", "nodes", "0"],
            ["quota", "set", "bogus", "5"], ["quota-soft"], ["quota-soft", "set", "memory", "1000000"], ["quota-soft"],
            ["quota-soft", "x"], ["quota-set", "nodes", "50"], ["help", "x"], ["nonsense"], [""],
        ];
        foreach (var command in commands)
            await d.SendAsync("dom0", T.Control, S(command));
        await d.SendAsync("d1", T.Control, S("check"));
        // A domain's report: the same lines but for memory, which this daemon counts its own way (README Known gaps).
        await d.SendAsync("d1", T.Watch, S("w", "t"));
        await d.SendAsync("d1", T.TransactionStart, S(""));
        await d.SendAsync("dom0", T.Watch, S("/w", "t"));
        foreach (var domid in new[] { "1", "2", "0", "x" })
        {
            var (xen, ours) = await d.SendUncomparedAsync("dom0", T.Control, System.Text.Encoding.ASCII.GetBytes(S("quota", domid)));
            Assert.StartsWith($"{T.Control} ", xen, StringComparison.Ordinal);
            static string WithoutMemory(string reply) => string.Join("\\x0a", reply.Split("\\x0a").Where(l => !l.StartsWith("memory", StringComparison.Ordinal)));
            Assert.Equal(WithoutMemory(xen), WithoutMemory(ours));
        }
    }
}
