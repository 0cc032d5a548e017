using System.Diagnostics;
using System.Text;
using T = VmmKit.XenStore.Wire.XsMessageType;

namespace VmmKit.XenStore.Tests.XenOracle;

/// <summary>
/// A seeded random mix of requests from dom0 (two socket connections) and two domUs (rings) for the
/// differential run: node operations over a small pool of paths (so they collide), permissions naming the
/// three domains, watches, transactions with real, stale and bogus ids, domain queries, and malformed
/// payloads; now and then dom0 introduces or releases a third domain (its nodes go, entries naming it are
/// ignored, @introduceDomain/@releaseDomain fire). Left out on purpose (README Known gaps): zero-length
/// payloads (xenstored 4.17 aborts), one-argument requests unterminated or with extra strings and SET_PERMS on
/// "@" names by the unprivileged or on other "@" names (stale errno), GET/SET_QUOTA and GET/SET_FEATURE (not
/// in 4.17), releasing a SET_TARGET domain, and permissions naming domains that do not exist.
/// </summary>
internal sealed class XsRandomWorkload(XsDifferential d, int seed)
{
    private static readonly string[] Connections = ["dom0", "dom0b", "d1", "d2", "d3"];
    private static readonly string[] Paths =
    [
        "/a", "/a/b", "/a/b/c", "/a/d", "/e", "/e/f", "/local/domain/1/x", "/local/domain/1/x/y", "/local/domain/2/z",
        "/local/domain/2", "/local/domain/1", "x", "x/y", "z", "data", "data/k", "/", "/tool/xenstored",
    ];
    private static readonly string[] BadPaths = ["/a//b", "/a/", "a b", "/a.b", "", "@introduceDomain", "@x"];
    private static readonly string[] WatchPaths = ["/a", "/a/b", "/e", "/", "x", "data", "/local/domain/1", "/local/domain/2/z", "@introduceDomain", "@releaseDomain"];

    private readonly Random _random = new(seed);
    private readonly Dictionary<string, List<uint>> _transactions = Connections.ToDictionary(c => c, _ => new List<uint>());
    private readonly Dictionary<string, List<(string Path, string Token)>> _watches = Connections.ToDictionary(c => c, _ => new List<(string, string)>());

    /// <summary>
    /// Runs at least <paramref name="minSteps"/> steps (however slow a loaded machine is), then more until
    /// <paramref name="budget"/> is spent or <paramref name="maxSteps"/> are done; returns the steps run.
    /// </summary>
    public async Task<int> RunAsync(TimeSpan budget, int minSteps, int maxSteps)
    {
        var clock = Stopwatch.StartNew();
        int steps = 0;
        while (steps < maxSteps && (steps < minSteps || clock.Elapsed < budget))
        {
            await StepAsync();
            steps++;
        }
        return steps;
    }

    private T Pick<T>(IReadOnlyList<T> items) => items[_random.Next(items.Count)];

    private bool Chance(int percent) => _random.Next(100) < percent;

    private static string S(params string[] parts) => string.Concat(parts.Select(p => p + "\0"));

    private string PathArg() => Chance(5) ? Pick(BadPaths) : Pick(Paths);

    private string Value() => Chance(10) ? new string('v', _random.Next(200, 320)) : $"v{_random.Next(1000)}";

    private string Perms()
    {
        var parts = new List<string> { $"{Pick(new[] { 'n', 'r', 'w', 'b' })}{_random.Next(4)}" };
        int extra = _random.Next(4);
        for (int i = 0; i < extra; i++)
            parts.Add($"{Pick(new[] { 'n', 'r', 'w', 'b' })}{_random.Next(4)}");
        return S([.. parts]);
    }

    private uint TxFor(string conn)
    {
        var open = _transactions[conn];
        if (open.Count > 0 && Chance(40))
            return Pick(open);
        return Chance(3) ? (uint)_random.Next(50, 60) : 0;
    }

    private async Task StepAsync()
    {
        string conn = Pick(Connections);
        if (!d.IsOpen(conn))
            return;
        uint tx = TxFor(conn);
        int op = _random.Next(100);
        string reply;
        switch (op)
        {
            case < 14:
                reply = await d.SendAsync(conn, T.Write, PathArg() + "\0" + Value(), tx);
                break;
            case < 24:
                reply = await d.SendAsync(conn, T.Read, S(PathArg()), tx);
                break;
            case < 30:
                reply = await d.SendAsync(conn, T.Mkdir, S(PathArg()), tx);
                break;
            case < 36:
                reply = await d.SendAsync(conn, T.Rm, S(PathArg()), tx);
                break;
            case < 42:
                reply = await d.SendAsync(conn, T.Directory, S(PathArg()), tx);
                break;
            case < 44:
                reply = await d.SendAsync(conn, T.DirectoryPart, S(PathArg(), _random.Next(4).ToString()), tx);
                break;
            case < 48:
                reply = await d.SendAsync(conn, T.GetPerms, S(PathArg()), tx);
                break;
            case < 56:
            {
                string path = Pick(Paths);
                string perms = Perms();
                // The root stays dom0's: xenstored 4.17 releasing a domain that owns "/" removes the whole
                // store below it (domain_tree_remove), a state not worth comparing further.
                if (path == "/")
                    perms = "n0" + perms[perms.IndexOf('\0')..];
                reply = await d.SendAsync(conn, T.SetPerms, S(path) + perms, tx);
                break;
            }
            case < 64:
            {
                var w = (Pick(WatchPaths), $"t{_random.Next(4)}");
                reply = await d.SendAsync(conn, T.Watch, S(w.Item1, w.Item2), tx);
                if (reply.StartsWith($"{T.Watch} ", StringComparison.Ordinal))
                    _watches[conn].Add(w);
                break;
            }
            case < 68:
            {
                var mine = _watches[conn];
                (string Path, string Token) w = mine.Count > 0 && Chance(80) ? Pick(mine) : (Pick(WatchPaths), "t9");
                reply = await d.SendAsync(conn, T.Unwatch, S(w.Path, w.Token), tx);
                if (reply.StartsWith($"{T.Unwatch} ", StringComparison.Ordinal))
                    mine.Remove(w);
                break;
            }
            case < 75:
                reply = await d.SendAsync(conn, T.TransactionStart, S(""), Chance(80) ? 0 : tx);
                if (reply.StartsWith($"{T.TransactionStart} ", StringComparison.Ordinal))
                    _transactions[conn].Add(uint.Parse(reply[(reply.IndexOf('"') + 1)..reply.IndexOf('|')]));
                break;
            case < 82:
            {
                var open = _transactions[conn];
                uint id = open.Count > 0 && Chance(90) ? Pick(open) : tx;
                reply = await d.SendAsync(conn, T.TransactionEnd, S(Chance(75) ? "T" : "F"), id);
                open.Remove(id);
                break;
            }
            case < 84:
                reply = await d.SendAsync(conn, T.ResetWatches, S(""), tx);
                if (reply.StartsWith($"{T.ResetWatches} ", StringComparison.Ordinal))
                {
                    _watches[conn].Clear();
                    _transactions[conn].Clear();
                }
                break;
            case < 87:
                reply = await d.SendAsync(conn, T.GetDomainPath, S(Pick(new[] { "0", "1", "2", "7", "x" })), tx);
                break;
            case < 89:
                reply = await d.SendAsync(conn, T.IsDomainIntroduced, S(Pick(new[] { "0", "1", "2", "7" })), tx);
                break;
            case < 90:
                // Targets only among domains 1 and 2, never released (README Known gaps: a target's release).
                reply = await d.SendAsync(conn, T.SetTarget, S(Pick(new[] { "1", "2" }), Pick(new[] { "1", "2" })), tx);
                break;
            case < 92 when conn.StartsWith("dom0", StringComparison.Ordinal):
                if (d.IsOpen("d3"))
                    reply = await d.SendAsync(conn, T.Release, S("3"), tx);
                else
                    reply = await d.IntroduceAsync(conn, "d3", 3);
                break;
            default:
                // Only requests with several arguments: a one-argument request that is unterminated or has
                // extra strings gets a stale errno from xenstored 4.17 (README Known gaps).
                reply = await d.SendAsync(conn, Pick(new[] { T.Write, T.Watch, T.SetPerms, (T)27, (T)77 }), Malformed(), tx);
                break;
        }
        _ = reply;
    }

    /// <summary>Payloads with a missing terminator, extra strings or nothing but NULs (never empty).</summary>
    private byte[] Malformed() => _random.Next(4) switch
    {
        0 => Encoding.ASCII.GetBytes(Pick(Paths)),
        1 => Encoding.ASCII.GetBytes(S(Pick(Paths), Pick(Paths), "extra")),
        2 => [0, 0],
        _ => Encoding.ASCII.GetBytes(Pick(Paths) + "\0" + Value() + "\0\0"),
    };
}
