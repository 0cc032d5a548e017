using System.Globalization;
using System.Text;
using VmmKit.XenStore.Store;
using VmmKit.XenStore.Wire;

namespace VmmKit.XenStore.Daemon;

/// <summary>CONTROL (control.c), GET/SET_FEATURE and GET/SET_QUOTA.</summary>
internal sealed unsafe partial class XsProcessor
{
    /// <summary>The features this daemon offers in <c>server_features</c>.</summary>
    public const uint ServerFeatures = XsConstants.ServerFeatureReconnection | XsConstants.ServerFeatureError;

    private static readonly string[] ControlCommands = ["check", "help", "log", "memreport", "print", "quota", "quota-set"];

    /// <summary>CONTROL <c>&lt;command&gt;|[&lt;parameters&gt;|]</c>.</summary>
    private static XsError DoControl(XsProcessor p, XsConnection c, ref XsRequest r)
    {
        int count = XsPayload.CountStrings(r.Payload);
        if (count < 1)
            return XsError.EINVAL;
        int at = 0;
        var args = new string[count];
        for (int i = 0; i < count; i++)
        {
            XsPayload.TryNext(r.Payload, ref at, out var s);
            args[i] = Ascii(s);
        }
        string reply;
        switch (args[0])
        {
            case "help":
                reply = string.Join('\n', ControlCommands) + (p.LiveUpdateSupported ? "\nlive-update\n" : "\n");
                break;
            case "live-update":
                return p.ControlLiveUpdate(c, ref r, args);
            case "check":
                reply = p.CheckStore() ? "OK" : "corrupt";
                break;
            case "log":
                if (count != 2 || (args[1] != "on" && args[1] != "off"))
                    return XsError.EINVAL;
                reply = "OK";
                break;
            case "print":
                if (count != 2)
                    return XsError.EINVAL;
                XsLog.ControlPrint(p.Logger, args[1]);
                reply = "OK";
                break;
            case "memreport":
                reply = string.Create(CultureInfo.InvariantCulture,
                    $"nodes {p.Store.NodeCount}\nconnections {p._connections.Count}\ndomains {p._domains.Count}\n");
                break;
            case "quota":
                if (count == 1)
                {
                    var sb = new StringBuilder();
                    foreach (var name in XenStoreQuotas.Names)
                    {
                        p.GlobalQuotas.TryGet(name, out long v);
                        sb.Append(CultureInfo.InvariantCulture, $"{name} {v}\n");
                    }
                    reply = sb.ToString();
                }
                else if (uint.TryParse(args[1], NumberStyles.None, CultureInfo.InvariantCulture, out uint domid))
                {
                    int watches = 0, transactions = 0;
                    foreach (var conn in p._connections)
                    {
                        if (conn.DomainId == domid)
                        {
                            watches += conn.Watches.Count;
                            transactions += conn.Transactions.Count;
                        }
                    }
                    reply = string.Create(CultureInfo.InvariantCulture,
                        $"nodes {p.Store.NodesOwnedBy(domid)}\nmemory {p.Store.MemoryOf(domid)}\nwatches {watches}\ntransactions {transactions}\n");
                }
                else
                {
                    return XsError.EINVAL;
                }
                break;
            case "quota-set":
                if (count != 3 || !long.TryParse(args[2], NumberStyles.None, CultureInfo.InvariantCulture, out long value)
                    || !p.GlobalQuotas.TrySet(args[1], value))
                    return XsError.EINVAL;
                reply = "OK";
                break;
            default:
                return XsError.EINVAL;
        }
        var bytes = Encoding.ASCII.GetBytes(reply + "\0");
        return p.Reply(c, ref r, bytes);
    }

    /// <summary>Checks that every node's parent exists and lists it (CONTROL check).</summary>
    private bool CheckStore()
    {
        foreach (var n in Store.AllNodes)
        {
            if (n.Path == "/")
                continue;
            var parent = Store.Get(XsNode.ParentOf(n.Path), null);
            if (parent is null || !parent.Children.Contains(XsNode.BaseName(n.Path)))
                return false;
        }
        return true;
    }

    /// <summary>GET_FEATURE <c>[&lt;domid&gt;|]</c> → <c>&lt;value&gt;|</c>: the server's features, or a domain's.</summary>
    private static XsError DoGetFeature(XsProcessor p, XsConnection c, ref XsRequest r)
    {
        int count = XsPayload.CountStrings(r.Payload);
        uint value;
        if (r.Payload.IsEmpty || (count == 1 && r.Payload.Length == 1))
        {
            value = ServerFeatures;
        }
        else
        {
            if (!XsPayload.TryOneArg(r.Payload, out var text) || !TryDomid(text, true, out uint domid))
                return XsError.EINVAL;
            if (!p._domains.TryGetValue(domid, out var d))
                return domid == 0 ? p.ReplyNumber(c, ref r, ServerFeatures) : XsError.ENOENT;
            value = d.Features;
        }
        return p.ReplyNumber(c, ref r, value);
    }

    /// <summary>SET_FEATURE <c>&lt;domid&gt;|&lt;value&gt;|</c>: only features the server has may be set.</summary>
    private static XsError DoSetFeature(XsProcessor p, XsConnection c, ref XsRequest r)
    {
        if (XsPayload.CountStrings(r.Payload) != 2)
            return XsError.EINVAL;
        int at = 0;
        XsPayload.TryNext(r.Payload, ref at, out var a);
        XsPayload.TryNext(r.Payload, ref at, out var b);
        if (!TryDomid(a, false, out uint domid) || !XsPayload.TryParseUInt(b, uint.MaxValue, out ulong value))
            return XsError.EINVAL;
        if ((value & ~(ulong)ServerFeatures) != 0)
            return XsError.EINVAL;
        if (!p._domains.TryGetValue(domid, out var d))
            return XsError.ENOENT;
        d.Features = (uint)value;
        return p.Ack(c, ref r);
    }

    /// <summary>GET_QUOTA: no argument lists the quota names; <c>[&lt;domid&gt;|]&lt;quota&gt;|</c> reads one.</summary>
    private static XsError DoGetQuota(XsProcessor p, XsConnection c, ref XsRequest r)
    {
        int count = XsPayload.CountStrings(r.Payload);
        if (r.Payload.IsEmpty || (count == 1 && r.Payload.Length == 1))
        {
            var sb = new StringBuilder();
            foreach (var name in XenStoreQuotas.Names)
                sb.Append(name).Append('\0');
            return p.Reply(c, ref r, Encoding.ASCII.GetBytes(sb.ToString()));
        }
        if (!p.QuotaTarget(r.Payload, count, 1, out var quotas, out string quotaName, out _))
            return XsError.EINVAL;
        if (quotas is null)
            return XsError.ENOENT;
        if (!quotas.TryGet(quotaName, out long value))
            return XsError.EINVAL;
        return p.ReplyNumber(c, ref r, value);
    }

    /// <summary>SET_QUOTA <c>[&lt;domid&gt;|]&lt;quota&gt;|&lt;value&gt;|</c>.</summary>
    private static XsError DoSetQuota(XsProcessor p, XsConnection c, ref XsRequest r)
    {
        int count = XsPayload.CountStrings(r.Payload);
        if (!p.QuotaTarget(r.Payload, count, 2, out var quotas, out string quotaName, out var valueText))
            return XsError.EINVAL;
        if (quotas is null)
            return XsError.ENOENT;
        if (!XsPayload.TryParseUInt(valueText, int.MaxValue, out ulong value) || !quotas.TrySet(quotaName, (long)value))
            return XsError.EINVAL;
        return p.Ack(c, ref r);
    }

    /// <summary>Parses <c>[&lt;domid&gt;|]&lt;quota&gt;|</c> plus <paramref name="tail"/>-1 more strings; a domain's quotas are copied on first use.</summary>
    private bool QuotaTarget(ReadOnlySpan<byte> payload, int count, int tail, out XenStoreQuotas? quotas, out string name, out ReadOnlySpan<byte> extra)
    {
        quotas = GlobalQuotas;
        name = "";
        extra = default;
        if (count != tail && count != tail + 1)
            return false;
        int at = 0;
        if (count == tail + 1)
        {
            XsPayload.TryNext(payload, ref at, out var domText);
            if (!TryDomid(domText, false, out uint domid))
                return false;
            if (_domains.TryGetValue(domid, out var d))
                quotas = d.Quotas ??= GlobalQuotas.Clone();
            else
                quotas = null;
        }
        XsPayload.TryNext(payload, ref at, out var nameBytes);
        name = Ascii(nameBytes);
        if (tail == 2)
            XsPayload.TryNext(payload, ref at, out extra);
        return true;
    }

    private XsError ReplyNumber(XsConnection c, ref XsRequest r, long value)
    {
        Span<byte> text = stackalloc byte[24];
        value.TryFormat(text, out int n, default, CultureInfo.InvariantCulture);
        text[n++] = 0;
        return Reply(c, ref r, text[..n]);
    }
}
