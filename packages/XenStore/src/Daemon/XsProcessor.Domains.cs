using System.Text;
using VmmKit.XenStore.Store;
using VmmKit.XenStore.Wire;

namespace VmmKit.XenStore.Daemon;

/// <summary>INTRODUCE, RELEASE, GET_DOMAIN_PATH, IS_DOMAIN_INTRODUCED, RESUME, SET_TARGET (domain.c).</summary>
internal sealed unsafe partial class XsProcessor
{
    /// <summary>Called (under the lock) when a domain's ring must be served: the daemon starts its reader.</summary>
    public Action<XsConnection>? ServeConnection { get; set; }

    /// <summary>A real domain id: not dom0 and not a DOMID_* special value.</summary>
    private static bool TryDomid(ReadOnlySpan<byte> text, bool allowDom0, out uint domid)
    {
        domid = 0;
        if (!XsPayload.TryParseUInt(text, XsConstants.DomidFirstReserved - 1, out ulong v))
            return false;
        domid = (uint)v;
        return allowDom0 || domid != 0;
    }

    /// <summary>INTRODUCE <c>&lt;domid&gt;|&lt;mfn&gt;|&lt;evtchn&gt;|?</c>.</summary>
    private static XsError DoIntroduce(XsProcessor p, XsConnection c, ref XsRequest r)
    {
        if (XsPayload.CountStrings(r.Payload) < 3)
            return XsError.EINVAL;
        int at = 0;
        XsPayload.TryNext(r.Payload, ref at, out var domText);
        XsPayload.TryNext(r.Payload, ref at, out var mfnText);
        XsPayload.TryNext(r.Payload, ref at, out var portText);
        if (!TryDomid(domText, false, out uint domid) || !XsPayload.TryParseLong(mfnText, out long mfn)
            || !XsPayload.TryParseUInt(portText, uint.MaxValue, out ulong port))
            return XsError.EINVAL;
        bool fresh = !p._domains.TryGetValue(domid, out var domain);
        if (fresh)
        {
            domain = new XsDomain(domid);
            p._domains.Add(domid, domain);
        }
        domain!.Mfn = mfn;
        domain.EventChannel = (uint)port;
        if (p.DomainConnector is { } connector && domain.Connection is null)
            p.AttachDomainRing(domain, connector.Connect(domid, mfn, (uint)port));
        var err = p.Ack(c, ref r);
        if (err == XsError.None && fresh)
            p.Fire(XsPath.IntroduceDomain, [], null, true);
        return err;
    }

    /// <summary>Starts serving a domain's ring binding (on INTRODUCE, or when the host attaches it directly).</summary>
    public XsConnection? AttachDomainRing(XsDomain domain, Transports.XenStoreRingBinding? binding)
    {
        if (binding is null)
            return null;
        binding.Stream.InitializeServer(XsConstants.ServerFeatureReconnection | XsConstants.ServerFeatureError);
        domain.Binding = binding;
        var conn = domain.Connection;
        if (conn is null || conn.Closed)
        {
            conn = AddConnection(XsConnectionKind.DomainRing, domain.DomainId, binding.Stream);
            domain.Connection = conn;
        }
        else
        {
            conn.Transport = binding.Stream;
        }
        conn.Target = domain.Target;
        var reconnecting = conn;
        binding.Stream.Reconnected += () =>
        {
            // The guest restarted its side of the ring: its watches and transactions are gone.
            lock (Gate)
            {
                ClearWatches(reconnecting);
                reconnecting.Transactions.Clear();
            }
        };
        ServeConnection?.Invoke(conn);
        return conn;
    }

    public XsDomain GetOrAddDomain(uint domid)
    {
        if (!_domains.TryGetValue(domid, out var d))
        {
            d = new XsDomain(domid);
            _domains.Add(domid, d);
        }
        return d;
    }

    /// <summary>RELEASE <c>&lt;domid&gt;|</c>: disconnect, drop its watches and transactions, clean its permissions, fire @releaseDomain.</summary>
    private static XsError DoRelease(XsProcessor p, XsConnection c, ref XsRequest r)
    {
        if (!XsPayload.TryOneArg(r.Payload, out var text) || !TryDomid(text, false, out uint domid))
            return XsError.EINVAL;
        if (!p._domains.Remove(domid, out var domain))
            return XsError.ENOENT;
        if (domain.Connection is { } dc)
        {
            dc.Close();
            p.RemoveConnection(dc);
        }
        foreach (var other in p._domains.Values)
        {
            if (other.Target == domid)
                other.Target = null;
        }
        foreach (var conn in p._connections)
        {
            if (conn.Target == domid)
                conn.Target = null;
        }
        p.Store.ForgetDomain(domid);
        var err = p.Ack(c, ref r);
        if (err == XsError.None)
            p.Fire(XsPath.ReleaseDomain, [], null, true);
        return err;
    }

    private static XsError DoGetDomainPath(XsProcessor p, XsConnection c, ref XsRequest r)
    {
        if (!XsPayload.TryOneArg(r.Payload, out var text) || !XsPayload.TryParseUInt(text, 65535, out ulong domid))
            return XsError.EINVAL;
        string path = XsPath.DomainPath((uint)domid);
        Span<byte> reply = stackalloc byte[path.Length + 1];
        Encoding.ASCII.GetBytes(path, reply);
        reply[^1] = 0;
        return p.Reply(c, ref r, reply);
    }

    private static XsError DoIsDomainIntroduced(XsProcessor p, XsConnection c, ref XsRequest r)
    {
        if (!XsPayload.TryOneArg(r.Payload, out var text) || !TryDomid(text, true, out uint domid))
            return XsError.EINVAL;
        bool introduced = domid == 0 || p._domains.ContainsKey(domid);
        return p.Reply(c, ref r, introduced ? "T\0"u8 : "F\0"u8);
    }

    private static XsError DoResume(XsProcessor p, XsConnection c, ref XsRequest r)
    {
        if (!XsPayload.TryOneArg(r.Payload, out var text) || !TryDomid(text, false, out uint domid))
            return XsError.EINVAL;
        return p._domains.ContainsKey(domid) ? p.Ack(c, ref r) : XsError.ENOENT;
    }

    /// <summary>SET_TARGET <c>&lt;domid&gt;|&lt;tdomid&gt;|</c>: <c>domid</c> may act as <c>tdomid</c>'s owner.</summary>
    private static XsError DoSetTarget(XsProcessor p, XsConnection c, ref XsRequest r)
    {
        if (XsPayload.CountStrings(r.Payload) != 2)
            return XsError.EINVAL;
        int at = 0;
        XsPayload.TryNext(r.Payload, ref at, out var a);
        XsPayload.TryNext(r.Payload, ref at, out var b);
        if (!TryDomid(a, false, out uint domid) || !TryDomid(b, false, out uint target))
            return XsError.EINVAL;
        if (!p._domains.TryGetValue(domid, out var domain) || !p._domains.ContainsKey(target))
            return XsError.ENOENT;
        domain.Target = target;
        foreach (var conn in p._connections)
        {
            if (conn.DomainId == domid && conn.Kind == XsConnectionKind.DomainRing)
                conn.Target = target;
        }
        return p.Ack(c, ref r);
    }
}
