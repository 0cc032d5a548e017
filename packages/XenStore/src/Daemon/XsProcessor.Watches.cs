using VmmKit.XenStore.Store;
using VmmKit.XenStore.Watches;
using VmmKit.XenStore.Wire;

namespace VmmKit.XenStore.Daemon;

/// <summary>WATCH, UNWATCH and RESET_WATCHES (watch.c).</summary>
internal sealed unsafe partial class XsProcessor
{
    /// <summary>WATCH <c>&lt;wpath&gt;|&lt;token&gt;|</c>: acknowledged, then fired once at once with the path as given.</summary>
    private static XsError DoWatch(XsProcessor p, XsConnection c, ref XsRequest r)
    {
        if (!TwoStrings(r.Payload, out var rawPath, out var rawToken))
            return XsError.EINVAL;
        var quotas = p.QuotasFor(c);
        string path;
        bool relative = false;
        if (!rawPath.IsEmpty && rawPath[0] == (byte)'@')
        {
            // watch.c check_watch_path: any "@" name up to XENSTORE_REL_PATH_MAX, for any caller; only
            // @introduceDomain and @releaseDomain ever fire, and only for the privileged.
            if (rawPath.Length > XsConstants.RelPathMax)
                return XsError.EINVAL;
            path = Ascii(rawPath);
        }
        else
        {
            var err = XsPath.Canonicalize(rawPath, c.DomainId, allowSpecial: false, quotas.PathLength, out path, out relative);
            if (err != XsError.None)
                return err;
        }
        string token = Ascii(rawToken);
        foreach (var w in c.Watches)
        {
            if (w.Path == path && w.Token == token)
                return XsError.EEXIST;
        }
        // "if (domain_watch(conn) > quota_nb_watch_per_domain)": checked before counting the new one, over
        // all the domain's connections (domain->nbwatch), so another connection does not bring a fresh quota.
        if (!c.Privileged && p.WatchesOf(c.DomainId) > quotas.Watches)
            return XsError.E2BIG;
        var watch = new XsWatch(path, token, relative);
        // add_watch: a watch's path and token count against the domain's memory quota.
        if (!c.Privileged && p.Store.MemoryOf(c.DomainId) + WatchMemory(watch) > quotas.Memory)
            return XsError.ENOMEM;
        p.AddWatch(c, watch);
        var acked = p.Ack(c, ref r);
        if (acked != XsError.None)
            return acked;
        string reported = relative ? XsPath.MakeRelative(path, c.DomainId) : path;
        if (c.Output.AppendEvent(reported, token))
            XenStoreMetrics.EventSent();
        return XsError.None;
    }

    private static XsError DoUnwatch(XsProcessor p, XsConnection c, ref XsRequest r)
    {
        if (!TwoStrings(r.Payload, out var rawPath, out var rawToken))
            return XsError.EINVAL;
        // watch.c do_unwatch: only canonicalize (absolute and "@" names as given, others below the home), no
        // validation; a path no watch has is simply ENOENT.
        string path = !rawPath.IsEmpty && (rawPath[0] == (byte)'/' || rawPath[0] == (byte)'@')
            ? Ascii(rawPath)
            : XsPath.DomainPath(c.DomainId) + "/" + Ascii(rawPath);
        string token = Ascii(rawToken);
        for (int i = 0; i < c.Watches.Count; i++)
        {
            if (c.Watches[i].Path == path && c.Watches[i].Token == token)
            {
                p.Store.AddWatchMemory(c.DomainId, -WatchMemory(c.Watches[i]));
                p.CountWatches(c.DomainId, -1);
                c.Watches.RemoveAt(i);
                return p.Ack(c, ref r);
            }
        }
        return XsError.ENOENT;
    }

    /// <summary>
    /// RESET_WATCHES: drop all watches and transactions of the caller. Sent inside a transaction it would
    /// destroy the transaction it runs in, so that is refused with EINVAL.
    /// </summary>
    /// <summary>RESET_WATCHES (domain.c do_reset_watches): every watch and every transaction goes, even when sent inside one of them.</summary>
    private static XsError DoResetWatches(XsProcessor p, XsConnection c, ref XsRequest r)
    {
        p.ClearWatches(c);
        p.DropTransactions(c);
        return p.Ack(c, ref r);
    }

    private static long WatchMemory(XsWatch w) => w.Path.Length + w.Token.Length;

    /// <summary>The watches of all connections of <paramref name="domid"/> (xenstored's domain_watch).</summary>
    public int WatchesOf(uint domid) => _domainWatches.TryGetValue(domid, out int n) ? n : 0;

    private void CountWatches(uint domid, int delta)
    {
        int now = WatchesOf(domid) + delta;
        if (now == 0)
            _domainWatches.Remove(domid);
        else
            _domainWatches[domid] = now;
    }

    /// <summary>Adds a watch and accounts its memory to the connection's domain.</summary>
    public void AddWatch(XsConnection c, XsWatch watch)
    {
        c.Watches.Add(watch);
        Store.AddWatchMemory(c.DomainId, WatchMemory(watch));
        CountWatches(c.DomainId, 1);
    }

    /// <summary>Drops every watch of the connection and releases their memory.</summary>
    public void ClearWatches(XsConnection c)
    {
        foreach (var w in c.Watches)
            Store.AddWatchMemory(c.DomainId, -WatchMemory(w));
        CountWatches(c.DomainId, -c.Watches.Count);
        c.Watches.Clear();
    }

    /// <summary>Exactly two NUL-terminated strings (xenstored's get_strings(in, vec, 2) == 2).</summary>
    private static bool TwoStrings(ReadOnlySpan<byte> payload, out ReadOnlySpan<byte> a, out ReadOnlySpan<byte> b)
    {
        b = default;
        int at = 0;
        return XsPayload.CountStrings(payload) == 2
            & XsPayload.TryNext(payload, ref at, out a) && XsPayload.TryNext(payload, ref at, out b);
    }
}
