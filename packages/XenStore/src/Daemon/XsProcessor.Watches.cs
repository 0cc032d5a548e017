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
        var err = XsPath.Canonicalize(rawPath, c.DomainId, allowSpecial: true, c.Privileged ? int.MaxValue : quotas.PathLength, out var path, out bool relative);
        if (err != XsError.None)
            return err;
        // Special watches see every domain's birth and death: dom0 only.
        if (path[0] == '@' && !c.Privileged)
            return XsError.EACCES;
        if (path[0] == '@' && path != XsPath.IntroduceDomain && path != XsPath.ReleaseDomain)
            return XsError.EINVAL;
        string token = Ascii(rawToken);
        foreach (var w in c.Watches)
        {
            if (w.Path == path && w.Token == token)
                return XsError.EEXIST;
        }
        if (!c.Privileged && c.Watches.Count >= quotas.Watches)
            return XsError.E2BIG;
        var watch = new XsWatch(path, token, relative);
        // add_watch: a watch's path and token count against the domain's memory quota.
        if (!c.Privileged && p.Store.MemoryOf(c.DomainId) + WatchMemory(watch) > quotas.Memory)
            return XsError.ENOMEM;
        p.AddWatch(c, watch);
        err = p.Ack(c, ref r);
        if (err != XsError.None)
            return err;
        string reported = relative ? XsPath.MakeRelative(path, c.DomainId) : path;
        c.Output.AppendEvent(reported, token, int.MaxValue);
        return XsError.None;
    }

    private static XsError DoUnwatch(XsProcessor p, XsConnection c, ref XsRequest r)
    {
        if (!TwoStrings(r.Payload, out var rawPath, out var rawToken))
            return XsError.EINVAL;
        var err = XsPath.Canonicalize(rawPath, c.DomainId, allowSpecial: true, int.MaxValue, out var path, out _);
        if (err != XsError.None)
            return err;
        string token = Ascii(rawToken);
        for (int i = 0; i < c.Watches.Count; i++)
        {
            if (c.Watches[i].Path == path && c.Watches[i].Token == token)
            {
                p.Store.AddWatchMemory(c.DomainId, -WatchMemory(c.Watches[i]));
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
    private static XsError DoResetWatches(XsProcessor p, XsConnection c, ref XsRequest r)
    {
        if (r.Header.TransactionId != 0)
            return XsError.EINVAL;
        p.ClearWatches(c);
        c.Transactions.Clear();
        return p.Ack(c, ref r);
    }

    private static long WatchMemory(XsWatch w) => w.Path.Length + w.Token.Length;

    /// <summary>Adds a watch and accounts its memory to the connection's domain.</summary>
    public void AddWatch(XsConnection c, XsWatch watch)
    {
        c.Watches.Add(watch);
        Store.AddWatchMemory(c.DomainId, WatchMemory(watch));
    }

    /// <summary>Drops every watch of the connection and releases their memory.</summary>
    public void ClearWatches(XsConnection c)
    {
        foreach (var w in c.Watches)
            Store.AddWatchMemory(c.DomainId, -WatchMemory(w));
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
