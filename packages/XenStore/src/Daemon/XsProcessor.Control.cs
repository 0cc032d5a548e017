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

    // control.c cmds[]: name and parameters, as "help" lists them.
    private static readonly (string Name, string Parameters)[] ControlCommands =
    [
        ("check", ""), ("log", "on|off"), ("memreport", ""), ("print", "<string>"),
        ("quota", "[set <name> <val>|<domid>]"), ("quota-soft", "[set <name> <val>]"), ("help", ""),
    ];

    // control.c hard_quotas[]: the CONTROL "quota" names, in xenstored's order, with their descriptions.
    private static readonly (string Name, string Ours, string Description)[] HardQuotas =
    [
        ("nodes", "nodes", "Nodes per domain"), ("watches", "watches", "Watches per domain"),
        ("transactions", "transactions", "Transactions per domain"),
        ("outstanding", "outstanding", "Outstanding requests per domain"),
        ("transaction-nodes", "transaction-nodes", "Max. number of accessed nodes per transaction"),
        ("memory", "memory", "Total Xenstore memory per domain (error level)"),
        ("node-size", "node-size", "Max. size of a node"), ("path-max", "path-length", "Max. length of a node path"),
        ("permissions", "permissions", "Max. number of permissions per node"),
    ];

    /// <summary>control.c soft_quotas[]: <c>quota_memory_per_domain_soft</c> (only reported by xenstored, a log warning).</summary>
    public long SoftMemoryQuota { get; set; } = 2 * 1024 * 1024;

    /// <summary>CONTROL <c>&lt;command&gt;|[&lt;parameters&gt;|]</c> (control.c do_control: an unknown command is EINVAL).</summary>
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
                if (count != 1)
                    return XsError.EINVAL;
                var help = new StringBuilder();
                foreach (var (name, parameters) in ControlCommands)
                {
                    help.Append(name).Append('\t').Append(parameters).Append('\n');
                    if (name == "log" && p.LiveUpdateSupported)
                        help.Append("live-update\t[-c <cmdline>] [-F] [-t <timeout>] <file>\n    Default timeout is 60 seconds.\n");
                }
                reply = help.ToString();
                break;
            case "live-update":
                return p.ControlLiveUpdate(c, ref r, args);
            case "check":
                if (count != 1)
                    return XsError.EINVAL;
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
                    // quota_show_current
                    var sb = new StringBuilder("Quota settings:\n");
                    foreach (var (name, ours, description) in HardQuotas)
                    {
                        p.GlobalQuotas.TryGet(ours, out long v);
                        sb.Append(CultureInfo.InvariantCulture, $"{name,-17}: {v,8} {description}\n");
                    }
                    reply = sb.ToString();
                }
                else if (args[1] == "set")
                {
                    // quota_set: a name and a value atoi makes at least 1 of.
                    int i = count == 4 ? Array.FindIndex(HardQuotas, q => q.Name == args[2]) : -1;
                    int value = count == 4 ? (int)XsCNumber.Atoi(Encoding.Latin1.GetBytes(args[3])) : 0;
                    if (i < 0 || value < 1 || !p.GlobalQuotas.TrySet(HardQuotas[i].Ours, value))
                        return XsError.EINVAL;
                    reply = "OK";
                }
                else
                {
                    // quota_get, domain.c domain_get_quota: one domid (atoi), a domain with a struct.
                    if (count != 2)
                        return XsError.EINVAL;
                    uint domid = XsCNumber.Atoi(Encoding.Latin1.GetBytes(args[1]));
                    if (!p.Store.HasDomainStruct(domid) && !p._domains.ContainsKey(domid))
                        return XsError.ENOENT;
                    // The domain's ring connection (domain->conn): dom0's socket clients are not the domain's.
                    int transactions = 0, watches = 0;
                    foreach (var conn in p._connections)
                    {
                        if (conn.DomainId == domid && conn.Kind == XsConnectionKind.DomainRing)
                        {
                            transactions += conn.Transactions.Count;
                            watches += conn.Watches.Count;
                        }
                    }
                    reply = string.Create(CultureInfo.InvariantCulture,
                        $"Domain {domid}:\n{"nodes",-16}: {p.Store.NodesOwnedBy(domid),8}\n{"watches",-16}: {watches,8}\n"
                        + $"{"transactions",-16}: {transactions,8}\n{"outstanding",-16}: {0,8}\n{"memory",-16}: {p.Store.MemoryOf(domid),8}\n");
                }
                break;
            case "quota-soft":
                // do_control_quota_s: only "memory".
                if (count == 1)
                {
                    reply = string.Create(CultureInfo.InvariantCulture,
                        $"Quota settings:\n{"memory",-17}: {p.SoftMemoryQuota,8} Total Xenstore memory per domain (warning level)\n");
                }
                else if (args[1] == "set" && count == 4 && args[2] == "memory" && (int)XsCNumber.Atoi(Encoding.Latin1.GetBytes(args[3])) >= 1)
                {
                    p.SoftMemoryQuota = (int)XsCNumber.Atoi(Encoding.Latin1.GetBytes(args[3]));
                    reply = "OK";
                }
                else
                {
                    return XsError.EINVAL;
                }
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
